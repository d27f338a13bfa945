//! The lock stage: pin every input of a recipe (`candidate lock`); and the freshness check
//! `build` makes.
//!
//! Both compute the lockfile a recipe calls for. `lock` may download remote tarballs to
//! learn their digests (keeping the pins of an existing lockfile whose recipe entry did not
//! change, so relocking never re-downloads); the check never touches the network: a remote
//! input that the lockfile does not pin makes the lockfile stale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::context::Context;
use crate::debian::pin::Keyrings;
use crate::digest::{Digest, Hasher};
use crate::error::CheckFailed;
use crate::fetch::{self, Network};
use crate::local::LocalTree;
use crate::lockfile::{Entries, InputKind, LockError, LockMode, LockedInput, Lockfile, PackageRef, VERSION};
use crate::recipe::{Name, Origin, Recipe};

/// A local `files` input of a layer, scanned, with its tree digest.
pub struct ScannedFiles {
    pub tree: LocalTree,
    pub digest: Digest,
}

/// A recipe with the lockfile it calls for and its scanned local inputs, per layer.
pub struct Resolved {
    /// The recipe, its `source-date-epoch` settled (an `"archive"` one from the lockfile).
    pub recipe: Recipe,
    pub lockfile: Lockfile,
    pub files: Vec<Vec<ScannedFiles>>,
    pub keyrings: Keyrings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Writing a lockfile: remote inputs may be downloaded, archives are read as they are now.
    Lock { allow_rollback: bool },
    /// Checking one: never download.
    Check,
}

/// What `candidate lock` did, or (`--check`) would do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum LockOutcome {
    Unchanged,
    Written,
    /// `--check`: the lockfile would change, for this reason; nothing was written.
    WouldChange {
        reason: String,
    },
}

/// `candidate lock RECIPE [--check]`.
pub fn lock(
    ctx: &Context,
    recipe_path: &Path,
    lockfile_path: &Path,
    mode: LockMode,
    allow_rollback: bool,
) -> anyhow::Result<LockOutcome> {
    let recipe = Recipe::load(recipe_path)?;
    let existing_text = read_existing(lockfile_path)?;
    let existing = existing_text.as_deref().map(|t| Lockfile::parse(lockfile_path, t)).transpose()?;
    ctx.printer.status("Locking", recipe_path.display());
    let resolved = resolve(ctx, recipe, existing.as_ref(), Purpose::Lock { allow_rollback })?;
    let text = resolved.lockfile.render();
    if existing_text.as_deref() == Some(text.as_str()) {
        ctx.printer.status("Unchanged", lockfile_path.display());
        return Ok(LockOutcome::Unchanged);
    }
    if mode == LockMode::Check && existing.as_ref().is_some_and(|old| same_but_edges(old, &resolved.lockfile)) {
        // Written before dependency edges were recorded: its pins are current, so a build
        // takes it as it is (its SBOMs show no dependency graph); `lock` adds the edges.
        ctx.printer.status(
            "Unchanged",
            format_args!("{} (it records no dependency edges; `candidate lock` adds them)", lockfile_path.display()),
        );
        return Ok(LockOutcome::Unchanged);
    }
    if mode == LockMode::Check {
        let reason =
            existing.as_ref().map_or_else(|| "it does not exist".to_owned(), |old| explain(old, &resolved.lockfile));
        return Ok(LockOutcome::WouldChange { reason });
    }
    write_lockfile(lockfile_path, &text)?;
    ctx.printer.status("Wrote", lockfile_path.display());
    Ok(LockOutcome::Written)
}

/// Checks that the lockfile at `lockfile_path` is the one `recipe_path` calls for, without
/// network. A stale or missing lockfile is a [`CheckFailed`] naming what changed.
pub fn check(ctx: &Context, recipe_path: &Path, lockfile_path: &Path) -> anyhow::Result<(Resolved, Digest)> {
    let recipe = Recipe::load(recipe_path)?;
    let hint = Some(format!("run `candidate lock {}` to update it", recipe_path.display()));
    let Some(text) = read_existing(lockfile_path)? else {
        return Err(CheckFailed {
            message: format!("recipe `{}` has no lockfile at `{}`", recipe_path.display(), lockfile_path.display()),
            hint: Some(format!("run `candidate lock {}` to write it", recipe_path.display())),
        }
        .into());
    };
    let existing = Lockfile::parse(lockfile_path, &text)?;
    check_placement(&recipe, &existing, &text, lockfile_path)?;
    let resolved = match resolve(ctx, recipe, Some(&existing), Purpose::Check) {
        Err(e) if e.is::<Unpinned>() => {
            return Err(CheckFailed {
                message: format!("lockfile `{}` is out of date: {e}", lockfile_path.display()),
                hint,
            }
            .into())
        }
        other => other?,
    };
    if resolved.lockfile.render() != text {
        let reason = explain(&existing, &resolved.lockfile);
        return Err(CheckFailed {
            message: format!("lockfile `{}` is out of date: {reason}", lockfile_path.display()),
            hint,
        }
        .into());
    }
    check_selection(&resolved.recipe, &existing, &text, lockfile_path)?;
    Ok((resolved, Digest::of(text.as_bytes())))
}

/// The packages of each layer are the ones its request selects, as far as the lockfile alone
/// can tell: no excluded name, and every `reason` one the layer gives (a request it makes,
/// the essential set or `priority: required` it takes, or a dependency of another package of
/// the layer that is itself there for a reason, down to one of those), no request met twice.
/// The recipe digest does not cover the packages, so without this a `[[package]]` added or
/// removed by hand (a bad merge) was built as locked. That every request is met, and that the
/// essential and required packages are, is [`crate::debian::pin::check_locked`]'s part: it
/// needs the archive's entries (`Provides`, `Essential`, `Priority`).
fn check_selection(recipe: &Recipe, lockfile: &Lockfile, text: &str, path: &Path) -> Result<(), LockError> {
    let unasked = |i: usize, what: String| LockError::Unrequested {
        path: path.to_owned(),
        line: crate::lockfile::layer_line(text, Entries::Package, i),
        what,
        recipe: recipe.path.clone(),
    };
    for layer in recipe.layers.iter().filter(|l| l.has_packages()) {
        let entries: Vec<(usize, &crate::lockfile::LockedPackage)> =
            lockfile.packages.iter().enumerate().filter(|(_, p)| p.layer == layer.name).collect();
        let by_name: HashMap<&str, &str> = entries.iter().map(|(_, p)| (p.name.as_str(), p.reason.as_str())).collect();
        let requests: Vec<&str> = layer.packages.iter().map(|r| r.trim()).collect();
        let mut met: HashMap<&str, usize> = HashMap::new();
        for &(i, package) in &entries {
            let entry = format!("`[[package]]` `{}` {} in layer `{}`", package.name, package.version, layer.name);
            if layer.exclude.iter().any(|x| x == package.name.as_str()) {
                return Err(unasked(i, format!("{entry}, which excludes it")));
            }
            // Up the chain of reasons to the layer's own: each link a package of the layer.
            let mut seen = std::collections::HashSet::new();
            let mut at = (package.name.as_str(), package.reason.as_str());
            loop {
                let why = crate::debian::pin::Why::parse(at.1).ok_or_else(|| {
                    unasked(i, format!("{entry} has the reason `{}`, which `lock` never writes", at.1))
                })?;
                use crate::debian::pin::Why;
                let unsupported = match why {
                    Why::Requested(request) if requests.contains(&request) => {
                        if at.0 == package.name.as_str() {
                            if let Some(first) = met.insert(request, i) {
                                let other = &lockfile.packages[first].name;
                                return Err(unasked(
                                    i,
                                    format!("{entry} and `{other}` both meet the request `{request}`"),
                                ));
                            }
                        }
                        break;
                    }
                    Why::Requested(request) => format!("the request `{request}`, which the layer does not make"),
                    Why::Essential if layer.essential => break,
                    Why::Essential => "the essential set, which the layer does not take".to_owned(),
                    Why::Priority if layer.priority.is_some() => break,
                    Why::Priority => "`priority: required`, which the layer does not take".to_owned(),
                    Why::DependencyOf(of) => match by_name.get(of) {
                        Some(reason) if seen.insert(of) => {
                            at = (of, reason);
                            continue;
                        }
                        Some(_) => format!("a dependency of `{of}`, whose own reasons come back to it"),
                        None => format!("a dependency of `{of}`, which the layer does not lock"),
                    },
                };
                return Err(unasked(i, format!("{entry} is there for {unsupported}")));
            }
        }
    }
    Ok(())
}

/// Every locked entry lands where the recipe puts it: a layer the recipe has, which takes
/// that kind of entry (`[[package]]` a layer with packages, `[[input]]` one with files or
/// tarballs, `[[wheel]]` one with `python`), and a package's archive is one the recipe names.
/// The build takes packages from the lockfile as they are, so a hand-moved entry was left out
/// of the image while the manifest still listed it (#16, hole 4).
fn check_placement(recipe: &Recipe, lockfile: &Lockfile, text: &str, path: &Path) -> Result<(), LockError> {
    // The line is looked up only for the entry refused: it means parsing the text again.
    let misplaced = |entries: Entries, i: usize, entry: String, layer: &Name, why: &'static str| LockError::Misplaced {
        path: path.to_owned(),
        line: crate::lockfile::layer_line(text, entries, i),
        entry,
        layer: layer.clone(),
        why,
        recipe: recipe.path.clone(),
    };
    let layer = |name: &Name| recipe.layers.iter().find(|l| l.name == *name);
    const UNKNOWN: &str = "which the recipe does not have";
    for (i, package) in lockfile.packages.iter().enumerate() {
        let entry = format!("`[[package]]` `{}` {}", package.name, package.version);
        let why = match layer(&package.layer) {
            None => Some(UNKNOWN),
            Some(l) if !l.has_packages() => Some("which installs no packages"),
            Some(_) if !recipe.archives.contains_key(package.archive.as_str()) => {
                Some("but its archive is not one of the recipe's `[archive.NAME]`")
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(misplaced(Entries::Package, i, entry, &package.layer, why));
        }
    }
    let locked: std::collections::BTreeSet<PackageRef> = lockfile.packages.iter().map(|p| p.reference()).collect();
    for (i, package) in lockfile.packages.iter().enumerate() {
        if let Some(dependency) = package.depends.iter().flatten().find(|d| !locked.contains(d)) {
            return Err(LockError::UnknownDependency {
                path: path.to_owned(),
                line: crate::lockfile::layer_line(text, Entries::Package, i),
                edge: format!("`[[package]]` `{}` {} depends on `{dependency}`", package.name, package.version),
                recipe: recipe.path.clone(),
            });
        }
    }
    for (i, input) in lockfile.inputs.iter().enumerate() {
        let entry = format!("`[[input]]` {} `{}`", input.kind, input.origin);
        let why = match (layer(&input.layer), input.kind) {
            (None, _) => Some(UNKNOWN),
            (Some(l), InputKind::Files) if l.files.is_empty() => Some("which has no `files`"),
            (Some(l), InputKind::Tarball) if l.tarballs.is_empty() => Some("which has no `tarballs`"),
            (Some(l), InputKind::Python) if l.python.is_none() => Some("which has no `python`"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(misplaced(Entries::Input, i, entry, &input.layer, why));
        }
    }
    for (i, wheel) in lockfile.wheels.iter().enumerate() {
        let entry = format!("`[[wheel]]` `{}` {}", wheel.name, wheel.version);
        let why = match layer(&wheel.layer) {
            None => Some(UNKNOWN),
            Some(l) if l.python.is_none() => Some("which has no `python`"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(misplaced(Entries::Wheel, i, entry, &wheel.layer, why));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unpinned(String);

fn resolve(ctx: &Context, recipe: Recipe, existing: Option<&Lockfile>, purpose: Purpose) -> anyhow::Result<Resolved> {
    let mut recipe = recipe;
    let keyrings = Keyrings::load(&recipe)?;
    let (archives, packages) = match (purpose, existing) {
        (Purpose::Lock { allow_rollback }, _) => crate::debian::pin::lock(ctx, &recipe, &keyrings, allow_rollback)?,
        // The build never resolves: it takes the pinned packages, which `build` then checks
        // against the signed indexes.
        (Purpose::Check, Some(existing)) => (existing.archives.clone(), existing.packages.clone()),
        (Purpose::Check, None) => (Vec::new(), Vec::new()),
    };
    if purpose == Purpose::Check && !recipe.archives.is_empty() && archives.is_empty() {
        return Err(Unpinned("the recipe's archives are not locked in it".into()).into());
    }
    recipe.image.source_date_epoch.settle(crate::debian::pin::newest_date(&archives));
    let mut inputs = Vec::new();
    let mut files = Vec::new();
    let mut wheels = Vec::new();
    for (at, layer) in recipe.layers.iter().enumerate() {
        let mut layer_files = Vec::new();
        for spec in &layer.files {
            let (input, scanned) = pin_files(ctx, &recipe, layer, spec)?;
            inputs.push(input);
            layer_files.push(scanned);
        }
        files.push(layer_files);
        for spec in &layer.tarballs {
            inputs.push(pin_tarball(ctx, &recipe, layer, spec, existing, purpose)?);
        }
        if let Some(spec) = &layer.python {
            let (input, layer_wheels) = pin_python(ctx, &recipe, at, spec, &packages, existing, purpose)?;
            inputs.push(input);
            wheels.extend(layer_wheels);
        }
    }
    let recipe_digest = recipe_digest(&recipe, &inputs, &keyrings);
    let lockfile = Lockfile { version: VERSION, recipe: recipe_digest, archives, inputs, packages, wheels };
    Ok(Resolved { recipe, lockfile, files, keyrings })
}

/// A layer's `files` input: the local tree scanned and its digest.
fn pin_files(
    ctx: &Context,
    recipe: &Recipe,
    layer: &crate::recipe::Layer,
    spec: &crate::recipe::FileSpec,
) -> anyhow::Result<(LockedInput, ScannedFiles)> {
    let path = recipe.resolve(&spec.from);
    let tree = LocalTree::scan(&path).with_context(|| format!("layer `{}`: cannot read `files` input", layer.name))?;
    let (digest, _) = tree.digest(Some(&ctx.store))?;
    let input = LockedInput {
        layer: layer.name.clone(),
        kind: InputKind::Files,
        origin: spec.from.display().to_string(),
        size: tree.size(),
        sha256: digest,
        files: Some(tree.file_count()),
    };
    Ok((input, ScannedFiles { tree, digest }))
}

/// A layer's tarball, pinned: a remote one keeps the existing lockfile's pin while the recipe
/// pins nothing else (and, when locking, is downloaded to learn its digest; a check never
/// downloads); a local one is hashed. A recipe `sha256` must match.
fn pin_tarball(
    ctx: &Context,
    recipe: &Recipe,
    layer: &crate::recipe::Layer,
    spec: &crate::recipe::TarballSpec,
    existing: Option<&Lockfile>,
    purpose: Purpose,
) -> anyhow::Result<LockedInput> {
    let origin = Origin::parse(&spec.url, &recipe.dir)?;
    let locked = existing.and_then(|l| {
        l.inputs.iter().find(|i| i.layer == layer.name && i.kind == InputKind::Tarball && i.origin == spec.url)
    });
    let (sha256, size) = match (&origin, locked) {
        // A remote pin stays as long as the recipe does not pin something else.
        (Origin::Remote(_), Some(l)) if spec.sha256.is_none_or(|pin| pin == l.sha256) => (l.sha256, l.size),
        (Origin::Remote(url), _) if purpose == Purpose::Check => {
            return Err(Unpinned(format!("tarball `{url}` of layer `{}` is not pinned by it", layer.name)).into())
        }
        (Origin::Remote(_), _) => {
            ctx.printer.status("Fetching", &spec.url);
            let bar = ctx.printer.bytes_bar(None, "Downloading".into());
            // With a recipe pin, bytes that do not match it never reach the store.
            let pin = spec.sha256.map(|sha256| fetch::Pin { sha256, size: None });
            let got = fetch::fetch(&ctx.store, &origin, pin, Network::Allowed, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            got
        }
        (Origin::Local(path), _) => {
            let tree = LocalTree::scan(path).with_context(|| format!("layer `{}`: cannot read tarball", layer.name))?;
            if tree.entries.len() != 1 || tree.file_count() != 1 {
                bail!("layer `{}`: tarball `{}` is not a regular file", layer.name, path.display());
            }
            let (_, digests) = tree.digest(Some(&ctx.store))?;
            (digests[0].expect("a file is hashed"), tree.size())
        }
    };
    if let Some(pin) = spec.sha256 {
        if pin != sha256 {
            bail!(
                "layer `{}`: tarball `{}` does not match the recipe's pin: expected {pin}, got {sha256} ({size} bytes)",
                layer.name,
                spec.url
            );
        }
    }
    Ok(LockedInput {
        layer: layer.name.clone(),
        kind: InputKind::Tarball,
        origin: spec.url.clone(),
        size,
        sha256,
        files: None,
    })
}

/// A python layer: its requirements file (or `pylock.toml`) pinned as an input, and, when
/// locking, one wheel per requirement chosen for the image (see [`crate::python::lock`]). A
/// check takes the wheels the lockfile has: they stand as long as the file they were locked
/// from is the same (the input's digest, which the recipe digest covers) and so are the
/// Debian packages the interpreter comes from.
fn pin_python(
    ctx: &Context,
    recipe: &Recipe,
    at: usize,
    spec: &crate::recipe::PythonSpec,
    packages: &[crate::lockfile::LockedPackage],
    existing: Option<&Lockfile>,
    purpose: Purpose,
) -> anyhow::Result<(LockedInput, Vec<crate::lockfile::LockedWheel>)> {
    use crate::python::lock::Source;
    let layer = &recipe.layers[at];
    let rel = spec.requirements.as_ref().or(spec.lock.as_ref()).expect("the recipe has one of them");
    let path = recipe.resolve(rel);
    let bytes =
        fs_err::read(&path).with_context(|| format!("layer `{}`: cannot read its `python` input", layer.name))?;
    let input = LockedInput {
        layer: layer.name.clone(),
        kind: InputKind::Python,
        origin: rel.display().to_string(),
        size: bytes.len() as u64,
        sha256: Digest::of(&bytes),
        files: None,
    };
    if purpose == Purpose::Check {
        let wheels = existing.map(|l| l.wheels.iter().filter(|w| w.layer == layer.name).cloned().collect());
        return Ok((input, wheels.unwrap_or_default()));
    }
    let arch = &recipe.image.architecture;
    let target = crate::python::target::Target::from_packages(packages, arch)
        .with_context(|| format!("layer `{}` installs Python wheels", layer.name))?;
    // The venv's interpreter must be in the image below the python layer.
    let interpreter = |p: &&crate::lockfile::LockedPackage| {
        let name = p.name.as_str();
        let minor = format!("python{}.{}", target.python_minor.0, target.python_minor.1);
        (name == minor || name.strip_suffix("-minimal") == Some(minor.as_str())) && p.architecture == *arch
    };
    let below = |p: &&crate::lockfile::LockedPackage| recipe.layers[..at].iter().any(|l| l.name == p.layer);
    if let Some(p) = packages.iter().filter(interpreter).find(|p| !below(p)) {
        if !packages.iter().filter(interpreter).any(|p| below(&p)) {
            bail!(
                "layer `{}` installs Python wheels, but its interpreter `{}` is installed by layer `{}`, which is not below it",
                layer.name,
                p.name,
                p.layer
            );
        }
    }
    ctx.printer.status(
        "Locking",
        format_args!("Python wheels of layer `{}` for CPython {} ({})", layer.name, target.python_full, target.machine),
    );
    let index = match (&ctx.python_index, &recipe.python.index) {
        (Some(url), _) => Some(crate::python::index::Index::new(url, Path::new("."))?),
        (None, Some(url)) => Some(crate::python::index::Index::new(url, &recipe.dir)?),
        (None, None) => None,
    };
    let source = match (&spec.requirements, &spec.lock) {
        (Some(_), _) => Source::Requirements { path: &path, index: index.as_ref() },
        (None, _) => Source::Pylock { path: &path },
    };
    let locked = crate::python::lock::lock_layer(ctx, &layer.name, source, &target)?;
    for note in &locked.notes {
        ctx.printer.status(note.verb, &note.message);
    }
    Ok((input, locked.wheels))
}

/// The recipe digest: its bytes and the digest of every local input it includes (remote
/// inputs are pinned by the lockfile's own entries).
fn recipe_digest(recipe: &Recipe, inputs: &[LockedInput], keyrings: &Keyrings) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-recipe-v1").field(&recipe.bytes);
    keyrings.digest_into(&mut h);
    for input in inputs {
        let local = match input.kind {
            InputKind::Files | InputKind::Python => true,
            InputKind::Tarball => !Origin::parse(&input.origin, &recipe.dir).is_ok_and(|o| o.is_remote()),
        };
        if local {
            h.field(&input.origin).field(input.sha256.as_bytes());
        }
    }
    h.finish()
}

/// Whether `old` is `new` written before lockfiles recorded dependency edges: no package of
/// it has `depends`, and it pins exactly what `new` pins.
fn same_but_edges(old: &Lockfile, new: &Lockfile) -> bool {
    if old.packages.iter().any(|p| p.depends.is_some()) {
        return false;
    }
    let mut stripped = new.clone();
    stripped.packages.iter_mut().for_each(|p| p.depends = None);
    *old == stripped
}

/// Says what differs between a lockfile and the one the recipe now calls for.
fn explain(old: &Lockfile, new: &Lockfile) -> String {
    if old.version != new.version {
        return format!("it has schema version {}; this candidate writes version {}", old.version, new.version);
    }
    let package = |p: &crate::lockfile::LockedPackage| (p.layer.clone(), p.name.clone(), p.architecture.clone());
    for n in &new.packages {
        match old.packages.iter().find(|o| package(o) == package(n)) {
            None => return format!("package `{}` ({}) of layer `{}` is not in it", n.name, n.version, n.layer),
            Some(o) if o.version.as_str() != n.version.as_str() || o.sha256 != n.sha256 => {
                return format!(
                    "package `{}` of layer `{}` changed: locked {}, now {}",
                    n.name, n.layer, o.version, n.version
                )
            }
            Some(o) if o.depends != n.depends => {
                return match o.depends {
                    None => "it records no dependency edges (locked before they were)".to_owned(),
                    Some(_) => format!("package `{}` of layer `{}` depends on other packages now", n.name, n.layer),
                }
            }
            Some(_) => {}
        }
    }
    if let Some(o) = old.packages.iter().find(|o| !new.packages.iter().any(|n| package(n) == package(o))) {
        return format!("package `{}` of layer `{}` is no longer needed", o.name, o.layer);
    }
    let wheel = |w: &crate::lockfile::LockedWheel| (w.layer.clone(), w.name.clone());
    for n in &new.wheels {
        match old.wheels.iter().find(|o| wheel(o) == wheel(n)) {
            None => return format!("wheel `{}` ({}) of layer `{}` is not in it", n.name, n.version, n.layer),
            Some(o) if o != n => {
                return format!(
                    "wheel `{}` of layer `{}` changed: locked `{}`, now `{}`",
                    n.name, n.layer, o.filename, n.filename
                )
            }
            Some(_) => {}
        }
    }
    if let Some(o) = old.wheels.iter().find(|o| !new.wheels.iter().any(|n| wheel(n) == wheel(o))) {
        return format!("wheel `{}` of layer `{}` is no longer needed", o.name, o.layer);
    }
    if old.archives != new.archives {
        return "an archive's signed index changed since it was locked".to_owned();
    }
    let key = |i: &LockedInput| (i.layer.clone(), i.kind, i.origin.clone());
    for n in &new.inputs {
        match old.inputs.iter().find(|o| key(o) == key(n)) {
            None => return format!("{} `{}` of layer `{}` is not in it", n.kind, n.origin, n.layer),
            Some(o) if o.sha256 != n.sha256 || o.size != n.size => {
                return format!(
                    "{} `{}` of layer `{}` changed: locked {}, now {}",
                    n.kind, n.origin, n.layer, o.sha256, n.sha256
                )
            }
            Some(_) => {}
        }
    }
    if let Some(o) = old.inputs.iter().find(|o| !new.inputs.iter().any(|n| key(n) == key(o))) {
        return format!("{} `{}` of layer `{}` is no longer in the recipe", o.kind, o.origin, o.layer);
    }
    "the recipe changed since it was locked".to_owned()
}

fn read_existing(path: &Path) -> anyhow::Result<Option<String>> {
    match crate::lockfile::read(path) {
        Ok(text) => Ok(Some(text)),
        Err(LockError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes a lockfile atomically, beside its final name.
fn write_lockfile(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&dir)?;
    // A new lockfile gets the mode any new file would, a relocked one keeps its own.
    let mut temp =
        tempfile::Builder::new().prefix(".lock-").permissions(crate::store::public_mode()).tempfile_in(&dir)?;
    if let Ok(existing) = fs_err::metadata(path) {
        temp.as_file().set_permissions(existing.permissions())?;
    }
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to write lockfile `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's lockfile as `lock` wrote it passes; one that locks an excluded name, or
    /// whose reasons go round in a circle instead of down to the layer's own, is refused,
    /// naming the package and its line.
    #[test]
    fn the_locked_packages_are_the_ones_their_layer_asks_for() {
        let recipe = Recipe::load(Path::new("recipes/example.toml")).unwrap();
        let path = Path::new("lockfiles/example.lock");
        let text = fs_err::read_to_string(path).unwrap();
        let check = |recipe: &Recipe, text: &str| {
            check_selection(recipe, &Lockfile::parse(path, text).unwrap(), text, path).map_err(|e| e.to_string())
        };
        check(&recipe, &text).unwrap();
        let mut excluding = recipe.clone();
        excluding.layers[0].exclude.push("data-all".into());
        let err = check(&excluding, &text).unwrap_err();
        assert!(err.contains("line 90: `[[package]]` `data-all` 2024a-1 in layer `base`, which excludes it"), "{err}");
        let circle = text
            .replace("reason = \"requested: web\"", "reason = \"data-all depends on web\"")
            .replace("reason = \"web depends on data-all\"", "reason = \"web depends on data-all (>= 1)\"");
        let err = check(&recipe, &circle).unwrap_err();
        assert!(err.contains("`data-all` 2024a-1 in layer `base` is there for a dependency of `web`, whose own reasons come back to it"), "{err}");
        let unknown = text.replace("reason = \"requested: web\"", "reason = \"wanted\"");
        let err = check(&recipe, &unknown).unwrap_err();
        assert!(err.contains("has the reason `wanted`, which `lock` never writes"), "{err}");
    }

    /// A lockfile is read by whoever builds from the checkout: it gets the mode any new file
    /// gets (not a temporary file's 0600), and a relock keeps the one it has.
    #[test]
    fn a_lockfile_has_a_new_file_s_mode_and_keeps_its_own_when_relocked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o7777;
        let (lock, plain) = (dir.path().join("a.lock"), dir.path().join("plain"));
        write_lockfile(&lock, "one\n").unwrap();
        fs_err::write(&plain, "x").unwrap();
        assert_eq!(mode(&lock), mode(&plain));
        fs_err::set_permissions(&lock, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_lockfile(&lock, "two\n").unwrap();
        assert_eq!((mode(&lock), fs_err::read_to_string(&lock).unwrap().as_str()), (0o640, "two\n"));
    }

    /// The requirements file of a python layer is an input: changing it makes the lockfile
    /// stale, and the check says which file of which layer changed (no network, no index).
    #[test]
    fn a_changed_requirements_file_makes_the_lockfile_stale() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("py.toml");
        let requirements = dir.path().join("requirements.txt");
        fs_err::write(&requirements, format!("six==1.16.0 --hash=sha256:{}\n", "1".repeat(64))).unwrap();
        fs_err::write(
            &recipe,
            "[image]\nname = \"py\"\nversion = \"1.0\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"stable\"\n\
             source-date-epoch = 0\n\n[[layer]]\nname = \"app\"\n\
             python = { requirements = \"requirements.txt\", venv = \"/opt/app/venv\" }\n\n[output]\nformats = [\"rootfs.tar\"]\n",
        )
        .unwrap();
        let ctx = Context {
            store: crate::store::Store::open(&dir.path().join("store")).unwrap(),
            printer: crate::printer::Printer::new(true, false, false),
            mirrors: Default::default(),
            snapshots: Default::default(),
            python_index: None,
        };
        let resolved = resolve(&ctx, Recipe::load(&recipe).unwrap(), None, Purpose::Check).unwrap();
        let input = &resolved.lockfile.inputs[0];
        assert_eq!((input.kind, input.origin.as_str()), (InputKind::Python, "requirements.txt"));
        assert_eq!(input.sha256, Digest::of(&fs_err::read(&requirements).unwrap()));
        let lockfile = dir.path().join("py.lock");
        fs_err::write(&lockfile, resolved.lockfile.render()).unwrap();
        check(&ctx, &recipe, &lockfile).unwrap();

        let old = input.sha256;
        fs_err::write(&requirements, format!("six==1.17.0 --hash=sha256:{}\n", "2".repeat(64))).unwrap();
        let new = Digest::of(&fs_err::read(&requirements).unwrap());
        let err = check(&ctx, &recipe, &lockfile).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "lockfile `{}` is out of date: python `requirements.txt` of layer `app` changed: locked {old}, now {new}",
                lockfile.display()
            )
        );
    }
}
