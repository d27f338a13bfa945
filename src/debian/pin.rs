//! The Debian side of `lock` and `fetch`: archives read through their trust chain, packages
//! resolved into the lockfile at lock time, and re-checked against the signed indexes (never
//! re-resolved) and fetched at build time. The layers they become are [`super::layers`].

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};

use crate::error::Hinted;

use crate::context::Context;
use crate::debian::archive::{self, Freshness, Snapshot, Source};
use crate::debian::packages::Requested;
use crate::debian::packages::{Architecture, PackageName, Priority};
use crate::debian::release::Keyring;
use crate::debian::resolve::{self, Reason, Request, Universe};
use crate::digest::{Digest, Hasher};
use crate::fetch::{Network, Pin};
use crate::lockfile::{LockedArchive, LockedPackage, Lockfile, PackageRef};
use crate::recipe::{Name, Origin, Recipe, SnapshotTemplate};

/// Where each archive of a recipe is read from in this run: `--mirror NAME=URL`, else
/// `CANDIDATE_MIRROR_NAME` (upper case, `-`, `.` and `+` as `_`), else the recipe's `url`.
pub fn archive_root(ctx: &Context, recipe: &Recipe, name: &str) -> anyhow::Result<Origin> {
    let url = overridden(&ctx.mirrors, "MIRROR", name).unwrap_or_else(|| recipe.archives[name].url.clone());
    Origin::parse(&url, &recipe.dir).map_err(|e| anyhow::anyhow!("archive `{name}`: {e}"))
}

/// Where a build fetches what archive `name`'s mirror no longer serves: the snapshot service
/// of `--snapshot NAME=URL`, else `CANDIDATE_SNAPSHOT_NAME`, else the recipe's `snapshot`,
/// as of `date` (the locked `InRelease`'s); none without one.
pub fn snapshot_root(ctx: &Context, recipe: &Recipe, name: &str, date: i64) -> anyhow::Result<Option<Snapshot>> {
    let template = match overridden(&ctx.snapshots, "SNAPSHOT", name) {
        Some(text) => Some(text.parse::<SnapshotTemplate>().map_err(|e| anyhow::anyhow!("archive `{name}`: {e}"))?),
        None => recipe.archives[name].snapshot.clone(),
    };
    let Some(template) = template else { return Ok(None) };
    let root = Origin::parse(&template.at(date), &recipe.dir).map_err(|e| anyhow::anyhow!("archive `{name}`: {e}"))?;
    Ok(Some(Snapshot { root, timestamp: crate::recipe::snapshot_timestamp(date) }))
}

/// The command line's location for archive `name`, else the environment's
/// (`CANDIDATE_{KIND}_NAME`, upper case, `-`, `.` and `+` as `_`).
fn overridden(given: &BTreeMap<String, String>, kind: &str, name: &str) -> Option<String> {
    let env_name = format!("CANDIDATE_{kind}_{}", name.to_uppercase().replace(['-', '.', '+'], "_"));
    given.get(name).cloned().or_else(|| std::env::var(&env_name).ok().filter(|v| !v.is_empty()))
}

/// The keyrings of a recipe's archives, by archive name, with their digests.
pub struct Keyrings(BTreeMap<String, (Keyring, Digest)>);

impl Keyrings {
    pub fn load(recipe: &Recipe) -> anyhow::Result<Self> {
        let mut out = BTreeMap::new();
        for (name, spec) in &recipe.archives {
            let loaded =
                archive::keyring(&recipe.resolve(&spec.keyring)).with_context(|| format!("archive `{name}`"))?;
            out.insert(name.to_string(), loaded);
        }
        Ok(Keyrings(out))
    }

    /// Adds every keyring's digest to a recipe digest: a keyring is a local input.
    pub fn digest_into(&self, h: &mut Hasher) {
        for (name, (_, digest)) in &self.0 {
            h.field("keyring").field(name).field(digest.as_bytes());
        }
    }

    /// Archive `name` as this run reads it; with the `Date` a lockfile locked it at, with its
    /// snapshot as of then.
    fn source<'a>(
        &'a self,
        ctx: &Context,
        recipe: &'a Recipe,
        name: &'a Name,
        locked_date: Option<i64>,
    ) -> anyhow::Result<Source<'a>> {
        let spec = &recipe.archives[name];
        let (keyring, keyring_digest) = &self.0[name.as_str()];
        let snapshot = match locked_date {
            Some(date) => snapshot_root(ctx, recipe, name.as_str(), date)?,
            None => None,
        };
        Ok(Source {
            name,
            spec,
            root: archive_root(ctx, recipe, name.as_str())?,
            snapshot,
            keyring,
            keyring_digest: *keyring_digest,
        })
    }
}

/// The architectures a recipe installs packages for: the image's, then its foreign ones.
pub(crate) fn architectures(recipe: &Recipe) -> Vec<Architecture> {
    let mut out = vec![recipe.image.architecture.clone()];
    out.extend(recipe.image.foreign_architectures.iter().cloned());
    out
}

/// Locks a recipe's archives and resolves its package layers against them, in layer order:
/// each layer's request is resolved with the packages of the layers below it installed.
pub fn lock(
    ctx: &Context,
    recipe: &Recipe,
    keyrings: &Keyrings,
    allow_rollback: bool,
) -> anyhow::Result<(Vec<LockedArchive>, Vec<LockedPackage>)> {
    if recipe.archives.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let freshness = Freshness { now, allow_rollback };
    let archs = architectures(recipe);
    let mut universe = Universe::new(recipe.image.architecture.clone(), recipe.image.foreign_architectures.clone());
    let mut archives = Vec::new();
    let names: Vec<Name> = recipe.archives.keys().cloned().collect();
    for (index, name) in names.iter().enumerate() {
        let source = keyrings.source(ctx, recipe, name, None)?;
        ctx.printer.status("Reading", format_args!("archive {name} ({})", source.root));
        let read = archive::lock(&ctx.store, &source, &archs, &freshness, Network::Allowed)?;
        ctx.printer.detail("Verified", format_args!("{name}: {} packages", read.packages.len()));
        universe.add(index, read.packages);
        archives.push(read.locked);
    }

    let mut installed = Vec::new();
    let mut packages = Vec::new();
    for layer in recipe.layers.iter().filter(|l| l.has_packages()) {
        let request = Request {
            packages: layer
                .packages
                .iter()
                .map(|text| Requested::parse(text).map_err(|e| anyhow::anyhow!("layer `{}`: {e}", layer.name)))
                .collect::<anyhow::Result<_>>()?,
            priority_required: layer.priority.is_some(),
            essential: layer.essential,
            exclude: layer
                .exclude
                .iter()
                .map(|n| n.parse::<PackageName>().map_err(|e| anyhow::anyhow!("{e}")))
                .collect::<anyhow::Result<_>>()?,
        };
        let resolution = resolve::resolve(&universe, &installed, &request)
            .with_context(|| format!("layer `{}`: cannot resolve its packages", layer.name))?;
        ctx.printer.status("Resolved", format_args!("layer {}: {} packages", layer.name, resolution.chosen.len()));
        for chosen in &resolution.chosen {
            let p = universe.package(chosen.id);
            packages.push(LockedPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                archive: names[universe.archive_of(chosen.id)].clone(),
                layer: layer.name.clone(),
                filename: p.filename.clone(),
                size: p.size,
                sha256: p.sha256,
                reason: describe(&chosen.reason),
                depends: Some(references(&universe, &chosen.depends)),
            });
            installed.push(chosen.id);
        }
    }
    // Freeing a full archive's entries one by one takes ~0.1 s of a lock; nothing reads them
    // any more, so another thread frees them while the lockfile is written (or the process
    // exits first, which frees them all at once).
    std::thread::spawn(move || drop(universe));
    Ok((archives, packages))
}

/// The lockfile's names of `ids`, sorted (the resolver sorts them by its own ids).
fn references(universe: &Universe, ids: &[resolve::PackageId]) -> Vec<PackageRef> {
    let mut refs: Vec<PackageRef> = ids
        .iter()
        .map(|&id| {
            let p = universe.package(id);
            PackageRef { name: p.name.clone(), architecture: p.architecture.clone() }
        })
        .collect();
    refs.sort();
    refs.dedup();
    refs
}

/// Why a package is locked, read back from its lockfile `reason` ([`describe`] writes it).
pub enum Why<'a> {
    Requested(&'a str),
    Essential,
    Priority,
    /// A dependency of the package of this name (locked in the same layer).
    DependencyOf(&'a str),
}

impl<'a> Why<'a> {
    pub fn parse(reason: &'a str) -> Option<Self> {
        match reason {
            "essential" => Some(Why::Essential),
            "priority: required" => Some(Why::Priority),
            _ => match reason.strip_prefix("requested: ") {
                Some(text) => Some(Why::Requested(text)),
                None => reason.split_once(" depends on ").map(|(of, _)| Why::DependencyOf(of)),
            },
        }
    }
}

fn describe(reason: &Reason) -> String {
    match reason {
        Reason::Requested(text) => format!("requested: {text}"),
        Reason::Essential => "essential".to_owned(),
        Reason::Priority => "priority: required".to_owned(),
        Reason::Dependency { of, relation } => format!("{of} depends on {relation}"),
    }
}

/// Every request of every package layer is met by a package locked in it or below, by name
/// or by what it provides, at a version the request allows; a package locked as `essential`
/// is essential, one locked for `priority: required` is required, as the archive says. With
/// `lock::check_selection` (no package the layer does not ask for), a `[[package]]` removed
/// or added by hand is refused. `entries`: each locked package's archive entry.
fn check_requests(
    recipe: &Recipe,
    lockfile: &Lockfile,
    entries: &[Option<crate::debian::packages::Package>],
) -> anyhow::Result<()> {
    let hint = format!(
        "the lockfile does not match its recipe (edited by hand?): run `candidate lock {}` to write it again",
        recipe.path.display()
    );
    let mut available: Vec<&crate::debian::packages::Package> = Vec::new();
    for layer in recipe.layers.iter().filter(|l| l.has_packages()) {
        for (pinned, entry) in lockfile.packages.iter().zip(entries).filter(|(p, _)| p.layer == layer.name) {
            let Some(entry) = entry else { continue };
            let claimed = match Why::parse(&pinned.reason) {
                Some(Why::Essential) if !entry.essential => Some("essential"),
                Some(Why::Priority) if entry.priority != Some(Priority::Required) => Some("`Priority: required`"),
                _ => None,
            };
            if let Some(claimed) = claimed {
                bail!(Hinted::new(
                    format!(
                        "package `{}` {} is locked in layer `{}` as {claimed}, which the archive does not say it is",
                        pinned.name, pinned.version, layer.name
                    ),
                    hint.clone(),
                ));
            }
            available.push(entry);
        }
        for text in &layer.packages {
            let request = Requested::parse(text).map_err(|e| anyhow::anyhow!("layer `{}`: {e}", layer.name))?;
            let relation = &request.relation;
            let met = available.iter().any(|p| {
                (p.name == relation.name && relation.version_satisfied_by(&p.version))
                    || p.provides.iter().any(|provide| provide.satisfies(relation))
            });
            if !met {
                bail!(Hinted::new(
                    format!(
                        "layer `{}` requests `{}`, and no package the lockfile locks in it or below meets that",
                        layer.name, request.text
                    ),
                    hint.clone(),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a lockfile's archives and packages at build time, without resolving: every
/// pinned `InRelease` verifies (as of its `Date`) with the recipe's keyring, every pinned
/// index is the one it lists, and every pinned package is an entry of those indexes with the
/// same name, version, architecture, file, size and sha256. A passing check is remembered
/// in the action cache, so a warm build does not parse the indexes again.
pub fn check_locked(
    ctx: &Context,
    recipe: &Recipe,
    keyrings: &Keyrings,
    lockfile: &Lockfile,
    network: Network,
) -> anyhow::Result<()> {
    let names: Vec<String> = recipe.archives.keys().map(|n| n.to_string()).collect();
    let locked_names: Vec<&str> = lockfile.archives.iter().map(|a| a.name.as_str()).collect();
    if names.iter().map(String::as_str).ne(locked_names.iter().copied()) {
        bail!("the lockfile's archives ({}) are not the recipe's ({})", locked_names.join(", "), names.join(", "));
    }
    let key = check_key(keyrings, lockfile);
    if ctx.store.action(&key).is_some() {
        return Ok(());
    }
    // What the archives say of each pinned package, by its index in the lockfile.
    let mut entries: Vec<Option<crate::debian::packages::Package>> = vec![None; lockfile.packages.len()];
    for locked in &lockfile.archives {
        let source = keyrings.source(ctx, recipe, &locked.name, Some(locked.date))?;
        let pinned: std::collections::BTreeSet<&str> =
            lockfile.packages.iter().filter(|p| p.archive == locked.name).map(|p| p.name.as_str()).collect();
        let read = archive::load_locked(&ctx.store, &source, locked, network, &|name| pinned.contains(name))?;
        let mut index: BTreeMap<(&str, &str, &str), &crate::debian::packages::Package> = BTreeMap::new();
        for p in &read.packages {
            index.insert((p.name.as_str(), p.architecture.as_str(), p.filename.as_str()), p);
        }
        for (i, pinned) in lockfile.packages.iter().enumerate().filter(|(_, p)| p.archive == locked.name) {
            let found = index.get(&(pinned.name.as_str(), pinned.architecture.as_str(), pinned.filename.as_str()));
            let vouched = found.is_some_and(|p| {
                p.version.as_str() == pinned.version.as_str() && p.size == pinned.size && p.sha256 == pinned.sha256
            });
            if !vouched {
                bail!(Hinted::new(
                    format!(
                        "package `{}` {} ({}) is pinned to {} ({} bytes), which no signed index of archive `{}` \
                         vouches for; the lockfile was altered",
                        pinned.name, pinned.version, pinned.architecture, pinned.sha256, pinned.size, locked.name
                    ),
                    "run `candidate lock` to pin what the archive serves",
                ));
            }
            entries[i] = found.map(|p| (*p).clone());
        }
    }
    check_requests(recipe, lockfile, &entries)?;
    ctx.store.put_action(&key, br#"{"verified":true}"#)?;
    Ok(())
}

fn check_key(keyrings: &Keyrings, lockfile: &Lockfile) -> Digest {
    let mut h = Hasher::new();
    // v2: what `check_requests` reads is in the key too: the recipe (its requests), and each
    // package's layer and reason.
    h.field("candidate-archive-check-v2").field(lockfile.recipe.as_bytes());
    keyrings.digest_into(&mut h);
    for a in &lockfile.archives {
        h.field(a.name.as_str()).field(a.inrelease.as_bytes()).field(a.date.to_le_bytes());
        for i in &a.indexes {
            h.field(&i.path).field(i.sha256.as_bytes());
        }
    }
    for p in &lockfile.packages {
        h.field(p.archive.as_str())
            .field(p.name.as_str())
            .field(p.version.as_str())
            .field(p.architecture.as_str())
            .field(&p.filename)
            .field(p.layer.as_str())
            .field(&p.reason);
        h.field(p.size.to_le_bytes()).field(p.sha256.as_bytes());
    }
    h.finish()
}

/// Makes sure the store holds every locked package, fetched by its pin.
pub fn fetch_packages(ctx: &Context, recipe: &Recipe, lockfile: &Lockfile, network: Network) -> anyhow::Result<()> {
    let missing: Vec<&LockedPackage> = lockfile.packages.iter().filter(|p| !ctx.store.has_blob(&p.sha256)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let total: u64 = missing.iter().map(|p| p.size).sum();
    ctx.printer.status("Fetching", format_args!("{} packages ({} bytes)", missing.len(), total));
    let mut roots = BTreeMap::new();
    for p in missing {
        if !roots.contains_key(&p.archive) {
            let date = lockfile.archives.iter().find(|a| a.name == p.archive).map(|a| a.date);
            let snapshot = match date {
                Some(date) => snapshot_root(ctx, recipe, p.archive.as_str(), date)?,
                None => None,
            };
            roots.insert(p.archive.clone(), (archive_root(ctx, recipe, p.archive.as_str())?, snapshot));
        }
        let (root, snapshot) = &roots[&p.archive];
        let pin = Pin { sha256: p.sha256, size: Some(p.size) };
        archive::fetch_pinned(&ctx.store, &p.archive, root, snapshot.as_ref(), &p.filename, pin, network)
            .with_context(|| format!("package `{}` {} ({})", p.name, p.version, p.architecture))?;
    }
    Ok(())
}

/// The newest `Date` of the locked archives: the candidate's `SOURCE_DATE_EPOCH` when the
/// recipe says `source-date-epoch = "archive"`.
pub fn newest_date(archives: &[LockedArchive]) -> u64 {
    archives.iter().map(|a| a.date.max(0) as u64).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `describe` writes into a lockfile, `Why::parse` reads back as the same reason: the
    /// format lives here, on both sides.
    #[test]
    fn reasons_read_back_as_written() {
        let of: PackageName = "web".parse().unwrap();
        let cases = [
            (Reason::Requested("web (>= 1)".into()), "requested web (>= 1)"),
            (Reason::Essential, "essential"),
            (Reason::Priority, "priority"),
            (Reason::Dependency { of, relation: "libc6 (>= 2.36)".into() }, "dependency of web"),
        ];
        for (reason, expected) in cases {
            let read = match Why::parse(&describe(&reason)) {
                Some(Why::Requested(text)) => format!("requested {text}"),
                Some(Why::Essential) => "essential".into(),
                Some(Why::Priority) => "priority".into(),
                Some(Why::DependencyOf(of)) => format!("dependency of {of}"),
                None => "nothing".into(),
            };
            assert_eq!(read, expected);
        }
    }
}
