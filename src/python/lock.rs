//! Locking a layer's Python requirements: one wheel per requirement, for the image.
//!
//! For each requirement whose marker holds for the image's environment, the files the index
//! (or the `pylock.toml`) offers are narrowed to those whose sha256 the requirements list;
//! of those, the wheel with the best tag for the image's interpreter is chosen, fetched into
//! the store by its sha256, and its `METADATA` read: its name and version must be the pinned
//! ones, its `Requires-Python` must admit the image's interpreter, and every `Requires-Dist`
//! that applies to the image (with the extras asked for) must be pinned in the same set at a
//! version it accepts — the requirements must be complete, as `pip-compile` makes them.
//!
//! A requirement whose marker excludes it from the image is reported, never dropped
//! silently; option lines of a requirements file are reported as not used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::index::{Index, IndexError};
use super::marker::{Environment, Requirement};
use super::pylock::{Location, Pylock, PylockError};
use super::requirements::{Requirements, RequirementsError};
use super::tags::{Tag, Tags};
use super::target::Target;
use super::version::{Specifiers, Version};
use super::wheel::{Wheel, WheelError, WheelName};
use super::Name;
use crate::context::Context;
use crate::digest::Digest;
use crate::fetch::{self, FetchError, Network};
use crate::lockfile::LockedWheel;
use crate::recipe::Origin;

#[derive(Debug, thiserror::Error)]
pub enum WheelLockError {
    #[error(transparent)]
    Requirements(#[from] RequirementsError),
    #[error(transparent)]
    Pylock(#[from] PylockError),
    #[error("{place}: cannot list the files of `{name}`")]
    Index { place: String, name: Name, source: IndexError },
    #[error("{place}: the requirements pin `{name}`, so they need an index to find its wheels, and none is given")]
    NoIndex { place: String, name: Name },
    #[error("{place}: `{name}=={version}`: no file the index lists for it has a sha256 the requirements name (the index lists {listed})")]
    NoHashedFile { place: String, name: Name, version: String, listed: String },
    #[error(
        "{place}: `{name}=={version}` has only an sdist among the files its hashes allow ({sdists}): \
         a wheel must be built from it and pinned"
    )]
    SdistOnly { place: String, name: Name, version: String, sdists: String },
    #[error(
        "{}: no wheel of `{}=={}` is compatible with the image ({}): it wants {}, …; the pinned wheels are {}",
        .0.place, .0.name, .0.version, .0.image, .0.wanted, .0.available
    )]
    Incompatible(Box<Incompatible>),
    #[error("wheel `{file}` of `{name}` (from `{url}`) cannot be fetched")]
    Fetch { file: String, name: Name, url: String, source: Box<FetchError> },
    #[error("wheel `{file}` of `{name}` (from `{url}`) is {actual}, which is none of the sha256 the requirements list for it")]
    HashMismatch { file: String, name: Name, url: String, actual: Digest },
    #[error("wheel `{file}` of `{name}` is not a valid wheel")]
    Wheel { file: String, name: Name, source: Box<WheelError> },
    #[error("wheel `{file}` is pinned as `{name}=={version}` but its METADATA says `{found}`")]
    WrongMetadata { file: String, name: Name, version: String, found: String },
    #[error("`{name}` {version} requires Python `{spec}`, and the image's interpreter is {python}")]
    RequiresPython { name: Name, version: String, spec: String, python: String },
    #[error(
        "`{name}` {version} requires `{requirement}`, which the requirements do not pin; they must be complete, \
         as `pip-compile` makes them"
    )]
    MissingDependency { name: Name, version: String, requirement: String },
    #[error("`{name}` {version} requires `{requirement}`, but the requirements pin `{dependency}` {pinned}")]
    Unsatisfied { name: Name, version: String, requirement: String, dependency: Name, pinned: String },
    /// The source names the text.
    #[error("`{name}` {version}: a `Requires-Dist` of its METADATA is not valid")]
    BadRequiresDist { name: Name, version: String, source: super::marker::MarkerError },
    #[error("{first} and {second} both pin `{name}` for the image")]
    Duplicate { name: Name, first: String, second: String },
    #[error("`{}`: no environment it was locked for (`environments`) matches the image", path.display())]
    Environments { path: PathBuf },
}

/// The details of [`WheelLockError::Incompatible`] (boxed: the error stays small).
#[derive(Debug)]
pub struct Incompatible {
    pub place: String,
    pub name: Name,
    pub version: String,
    /// `CPython 3.11.2, glibc 2.36, x86_64`.
    pub image: String,
    pub wanted: String,
    pub available: String,
}

impl crate::error::Hint for WheelLockError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match self {
            WheelLockError::NoIndex { .. } => vec![
                "set `[python] index` in the recipe, pass `--python-index URL`, or set `CANDIDATE_PYTHON_INDEX` (an `http(s)://` or `file://` URL, or a path)".into(),
            ],
            WheelLockError::MissingDependency { .. } => {
                vec!["compile the requirements with `pip-compile --generate-hashes` or `uv pip compile --generate-hashes`, for the image's Python".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// A file a requirement may be satisfied by.
#[derive(Debug, Clone)]
struct Listed {
    filename: String,
    url: String,
    size: Option<u64>,
    /// The sha256 the index or lock gives for it; `None` when the index gives none (the
    /// fetched bytes are then checked against every hash the requirement lists).
    sha256: Option<Digest>,
}

/// One requirement that applies to the image.
#[derive(Debug)]
struct Want {
    name: Name,
    version: Version,
    extras: Vec<Name>,
    /// Where it is written, for messages: `` `requirements.txt` line 4 ``.
    place: String,
    files: Vec<Listed>,
    /// The sha256 any chosen file must have.
    accept: Vec<Digest>,
}

/// What a layer's requirements lock to.
#[derive(Debug)]
pub struct Locked {
    /// Sorted by name: the lockfile's order.
    pub wheels: Vec<LockedWheel>,
    /// What the caller must report: requirements a marker excludes from the image, option
    /// lines not used. Data, so that the command prints them and tests read them.
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Excluded` or `Ignoring`.
    pub verb: &'static str,
    pub message: String,
}

/// Where a layer's Python requirements come from.
pub enum Source<'a> {
    Requirements { path: &'a Path, index: Option<&'a Index> },
    Pylock { path: &'a Path },
}

/// Locks one layer's requirements for `target`.
pub fn lock_layer(
    ctx: &Context,
    layer: &crate::recipe::Name,
    source: Source<'_>,
    target: &Target,
) -> Result<Locked, WheelLockError> {
    let env = target.environment();
    let tags = Tags::cpython_linux(target.python_minor, target.glibc, target.machine);
    let mut notes = Vec::new();
    let wants = match source {
        Source::Requirements { path, index } => wants_from_requirements(path, index, &env, &mut notes)?,
        Source::Pylock { path } => wants_from_pylock(path, &env, target, &mut notes)?,
    };
    let mut chosen: Vec<(Want, LockedWheel, Wheel)> = Vec::new();
    for want in wants {
        let listed = choose(&want, &tags, target)?;
        let (wheel_entry, wheel) = fetch_and_read(ctx, layer, &want, &listed)?;
        chosen.push((want, wheel_entry, wheel));
    }
    check_dependencies(&chosen, &env, target)?;
    let mut wheels: Vec<LockedWheel> = chosen.into_iter().map(|(_, w, _)| w).collect();
    // Determinism: the lockfile lists wheels by name, whatever order the file had.
    wheels.sort_by(|a, b| (&a.name, &a.filename).cmp(&(&b.name, &b.filename)));
    Ok(Locked { wheels, notes })
}

fn place(path: &Path, line: usize) -> String {
    format!("`{}` line {line}", path.display())
}

fn wants_from_requirements(
    path: &Path,
    index: Option<&Index>,
    env: &Environment,
    notes: &mut Vec<Note>,
) -> Result<Vec<Want>, WheelLockError> {
    let requirements = Requirements::load(path)?;
    for ignored in &requirements.ignored {
        notes.push(Note {
            verb: "Ignoring",
            message: format!(
                "{}: `{}` (wheels come from the recipe's index and are checked by their hashes)",
                place(path, ignored.line),
                ignored.text
            ),
        });
    }
    let mut seen: BTreeMap<Name, String> = BTreeMap::new();
    let mut wants = Vec::new();
    for pinned in requirements.pinned {
        let here = place(path, pinned.line);
        if let Some(marker) = pinned.marker.as_ref().filter(|m| !m.evaluate(env)) {
            notes.push(Note {
                verb: "Excluded",
                message: format!(
                    "{here}: `{}=={}` (its marker `{marker}` does not hold for the image)",
                    pinned.name, pinned.version
                ),
            });
            continue;
        }
        if let Some(first) = seen.insert(pinned.name.clone(), here.clone()) {
            return Err(WheelLockError::Duplicate { name: pinned.name, first, second: here });
        }
        let index = index.ok_or_else(|| WheelLockError::NoIndex { place: here.clone(), name: pinned.name.clone() })?;
        let all = index.files(&pinned.name).map_err(|source| WheelLockError::Index {
            place: here.clone(),
            name: pinned.name.clone(),
            source,
        })?;
        let listed_count = all.len();
        let files: Vec<Listed> = all
            .into_iter()
            .filter(|f| match f.sha256 {
                Some(sha) => pinned.hashes.contains(&sha),
                // No listed hash: a candidate if its name says it is this version; its bytes
                // are checked when fetched.
                None => file_version(&f.filename).is_some_and(|v| v == pinned.version),
            })
            .map(|f| Listed { filename: f.filename, url: f.url, size: None, sha256: f.sha256 })
            .collect();
        if files.is_empty() {
            return Err(WheelLockError::NoHashedFile {
                place: here,
                name: pinned.name,
                version: pinned.version.to_string(),
                listed: format!("{listed_count} files"),
            });
        }
        wants.push(Want {
            name: pinned.name,
            version: pinned.version,
            extras: pinned.extras,
            place: here,
            files,
            accept: pinned.hashes,
        });
    }
    Ok(wants)
}

/// The version a wheel's or sdist's file name gives (`name-1.0.tar.gz`, `name-1.0-py3-none-any.whl`).
fn file_version(filename: &str) -> Option<Version> {
    if filename.ends_with(".whl") {
        return WheelName::parse(filename).ok()?.version.parse().ok();
    }
    let stem = [".tar.gz", ".zip", ".tar.bz2"].iter().find_map(|ext| filename.strip_suffix(ext))?;
    stem.rsplit_once('-')?.1.parse().ok()
}

fn wants_from_pylock(
    path: &Path,
    env: &Environment,
    target: &Target,
    notes: &mut Vec<Note>,
) -> Result<Vec<Want>, WheelLockError> {
    let lock = Pylock::load(path)?;
    if !lock.environments.is_empty() && !lock.environments.iter().any(|m| m.evaluate(env)) {
        return Err(WheelLockError::Environments { path: path.to_owned() });
    }
    if let Some(spec) = &lock.requires_python {
        let python: Version = target.python_full.parse().expect("Target::from_lockfile proved it PEP 440");
        if !spec.contains(&python) {
            return Err(WheelLockError::Pylock(PylockError::Parse {
                path: path.to_owned(),
                message: format!("`requires-python = \"{spec}\"` does not admit the image's Python {python}"),
            }));
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut seen: BTreeMap<Name, String> = BTreeMap::new();
    let mut wants = Vec::new();
    for package in lock.packages {
        let here = format!("`{}` package `{}`", path.display(), package.name);
        if let Some(marker) = package.marker.as_ref().filter(|m| !m.evaluate(env)) {
            notes.push(Note {
                verb: "Excluded",
                message: format!("{here} {} (its marker `{marker}` does not hold for the image)", package.version),
            });
            continue;
        }
        if let Some(first) = seen.insert(package.name.clone(), here.clone()) {
            return Err(WheelLockError::Duplicate { name: package.name, first, second: here });
        }
        let files = package
            .wheels
            .iter()
            .map(|w| Listed {
                filename: w.name.clone(),
                url: match &w.location {
                    Location::Url(u) => u.clone(),
                    Location::Path(p) => {
                        let abs = std::path::absolute(dir.join(p)).unwrap_or_else(|_| dir.join(p));
                        format!("file://{}", abs.display())
                    }
                },
                size: w.size,
                sha256: Some(w.sha256),
            })
            .collect();
        let accept = package.wheels.iter().map(|w| w.sha256).collect();
        wants.push(Want {
            name: package.name,
            version: package.version,
            extras: Vec::new(),
            place: here,
            files,
            accept,
        });
    }
    Ok(wants)
}

/// The wheel with the best tag for the image among a requirement's files.
fn choose(want: &Want, tags: &Tags, target: &Target) -> Result<Listed, WheelLockError> {
    let (wheels, sdists): (Vec<&Listed>, Vec<&Listed>) = want.files.iter().partition(|f| f.filename.ends_with(".whl"));
    if wheels.is_empty() {
        let sdists: Vec<String> = sdists.iter().map(|f| format!("`{}`", f.filename)).collect();
        return Err(WheelLockError::SdistOnly {
            place: want.place.clone(),
            name: want.name.clone(),
            version: want.version.to_string(),
            sdists: sdists.join(", "),
        });
    }
    // pip's order among files of one version: the best tag, then the highest build tag (none
    // lowest; compared as its number, then the rest), then, for a choice that does not depend
    // on the index's order, the smaller file name.
    type Key<'a> = (usize, std::cmp::Reverse<Option<(u64, String)>>, &'a str);
    let mut best: Option<(Key<'_>, &Listed)> = None;
    let mut available = BTreeSet::new();
    for file in wheels {
        // A file name that is not a wheel's is no candidate, but it is shown with the others.
        let Ok(parsed) = WheelName::parse(&file.filename) else {
            available.insert(format!("`{}` (not a wheel file name)", file.filename));
            continue;
        };
        let file_tags: Vec<Tag> = parsed
            .tags
            .iter()
            .map(|(p, a, pl)| Tag { python: p.clone(), abi: a.clone(), platform: pl.clone() })
            .collect();
        available.extend(file_tags.iter().map(|t| format!("`{t}`")));
        if let Some(rank) = tags.best(&file_tags) {
            let build = parsed.build.as_deref().map(|b| {
                let digits = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                (b[..digits].parse().unwrap_or(u64::MAX), b[digits..].to_owned())
            });
            let key = (rank, std::cmp::Reverse(build), file.filename.as_str());
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, file));
            }
        }
    }
    match best {
        Some((_, file)) => Ok(file.clone()),
        None => Err(WheelLockError::Incompatible(Box::new(Incompatible {
            place: want.place.clone(),
            name: want.name.clone(),
            version: want.version.to_string(),
            image: format!(
                "CPython {}, glibc {}.{}, {}",
                target.python_full, target.glibc.0, target.glibc.1, target.machine
            ),
            wanted: tags.iter().take(4).map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
            available: available.into_iter().collect::<Vec<_>>().join(", "),
        }))),
    }
}

/// Fetches the chosen wheel into the store by its sha256 and reads it.
fn fetch_and_read(
    ctx: &Context,
    layer: &crate::recipe::Name,
    want: &Want,
    file: &Listed,
) -> Result<(LockedWheel, Wheel), WheelLockError> {
    let fetch_error = |source| WheelLockError::Fetch {
        file: file.filename.clone(),
        name: want.name.clone(),
        url: file.url.clone(),
        source: Box::new(source),
    };
    let origin = match file.url.strip_prefix("file://") {
        Some(path) => Origin::Local(PathBuf::from(super::index::percent_decode(path))),
        None => Origin::Remote(file.url.clone()),
    };
    ctx.printer.detail("Fetching", &file.filename);
    let pin = file.sha256.map(|sha256| fetch::Pin { sha256, size: file.size });
    let (sha256, size) = fetch::fetch(&ctx.store, &origin, pin, Network::Allowed, &|_| {}).map_err(fetch_error)?;
    if !want.accept.contains(&sha256) {
        return Err(WheelLockError::HashMismatch {
            file: file.filename.clone(),
            name: want.name.clone(),
            url: file.url.clone(),
            actual: sha256,
        });
    }
    let blob = ctx.store.blob_path(&sha256);
    let opened = fs_err::File::open(&blob)
        .map_err(|e| WheelError::Io { what: file.filename.clone(), source: e })
        .and_then(|f| Wheel::open(f.into_parts().0, &file.filename))
        .map_err(|source| WheelLockError::Wheel {
            file: file.filename.clone(),
            name: want.name.clone(),
            source: Box::new(source),
        })?;
    let metadata = opened.metadata();
    if metadata.name != want.name || metadata.version.parse::<Version>().ok().as_ref() != Some(&want.version) {
        return Err(WheelLockError::WrongMetadata {
            file: file.filename.clone(),
            name: want.name.clone(),
            version: want.version.to_string(),
            found: format!("{}=={}", metadata.name, metadata.version),
        });
    }
    let entry = LockedWheel {
        name: want.name.clone(),
        // The normalised version: two spellings of one pin lock alike.
        version: want.version.to_string(),
        layer: layer.clone(),
        filename: file.filename.clone(),
        url: file.url.clone(),
        size,
        sha256,
    };
    Ok((entry, opened))
}

/// Every chosen wheel's `Requires-Python` admits the image's Python, and every
/// `Requires-Dist` that applies to the image is pinned at a version it accepts.
fn check_dependencies(
    chosen: &[(Want, LockedWheel, Wheel)],
    env: &Environment,
    target: &Target,
) -> Result<(), WheelLockError> {
    let python: Version = target.python_full.parse().expect("a Debian upstream version of Python is PEP 440");
    let pinned: BTreeMap<&Name, &Version> = chosen.iter().map(|(w, _, _)| (&w.name, &w.version)).collect();
    let mut requires: BTreeMap<&Name, Vec<Requirement>> = BTreeMap::new();
    for (want, _, wheel) in chosen {
        let m = wheel.metadata();
        if let Some(spec) = m.requires_python.as_deref().filter(|s| !s.trim().is_empty()) {
            let ok = spec.parse::<Specifiers>().map(|s| s.contains(&python));
            if !ok.unwrap_or(false) {
                return Err(WheelLockError::RequiresPython {
                    name: want.name.clone(),
                    version: want.version.to_string(),
                    spec: spec.to_owned(),
                    python: target.python_full.clone(),
                });
            }
        }
        let mut list = Vec::new();
        for text in &m.requires_dist {
            let r = text.parse::<Requirement>().map_err(|source| WheelLockError::BadRequiresDist {
                name: want.name.clone(),
                version: want.version.to_string(),
                source,
            })?;
            list.push(r);
        }
        requires.insert(&want.name, list);
    }
    // The extras each package is asked for: those the requirements name, then those its
    // dependents ask for, until nothing changes (`requests[socks]` pulls in PySocks).
    let mut extras: BTreeMap<&Name, BTreeSet<Name>> =
        chosen.iter().map(|(w, _, _)| (&w.name, w.extras.iter().cloned().collect())).collect();
    loop {
        let mut changed = false;
        for (name, list) in &requires {
            let own = extras.get(name).cloned().unwrap_or_default();
            for r in list.iter().filter(|r| r.marker.as_ref().is_none_or(|m| m.evaluate_with_extras(env, &own))) {
                if let Some(set) = extras.get_mut(&r.name) {
                    for e in &r.extras {
                        changed |= set.insert(e.clone());
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (want, _, _) in chosen {
        let own = extras.get(&want.name).cloned().unwrap_or_default();
        for r in
            requires[&want.name].iter().filter(|r| r.marker.as_ref().is_none_or(|m| m.evaluate_with_extras(env, &own)))
        {
            let text = format!("{}{}", r.name, r.specifiers);
            match pinned.get(&r.name) {
                None => {
                    return Err(WheelLockError::MissingDependency {
                        name: want.name.clone(),
                        version: want.version.to_string(),
                        requirement: text,
                    })
                }
                Some(v) if !r.specifiers.contains(v) => {
                    return Err(WheelLockError::Unsatisfied {
                        name: want.name.clone(),
                        version: want.version.to_string(),
                        requirement: text,
                        dependency: r.name.clone(),
                        pinned: v.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::python::wheel::{write_record, RecordHash, RecordRow};
    use crate::python::zip::testing::{write, Member};

    /// A wheel file named `file` for `name` `version` whose METADATA lists `requires`.
    fn wheel(file: &str, name: &str, version: &str, requires: &[&str], requires_python: Option<&str>) -> Vec<u8> {
        let dist_info = format!("{name}-{version}.dist-info");
        let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for r in requires {
            metadata.push_str(&format!("Requires-Dist: {r}\n"));
        }
        if let Some(p) = requires_python {
            metadata.push_str(&format!("Requires-Python: {p}\n"));
        }
        let tag = file.trim_end_matches(".whl").splitn(3, '-').nth(2).unwrap().to_owned();
        let members: Vec<(String, Vec<u8>)> = vec![
            (format!("{name}/__init__.py"), b"x = 1\n".to_vec()),
            (format!("{dist_info}/METADATA"), metadata.into_bytes()),
            (
                format!("{dist_info}/WHEEL"),
                format!("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n").into_bytes(),
            ),
        ];
        let mut rows: Vec<RecordRow> = members
            .iter()
            .map(|(p, c)| RecordRow {
                path: p.clone(),
                hash: Some(RecordHash::sha256_of(c)),
                size: Some(c.len() as u64),
            })
            .collect();
        rows.push(RecordRow { path: format!("{dist_info}/RECORD"), hash: None, size: None });
        let record = write_record(&rows).into_bytes();
        let mut all: Vec<Member<'_>> = members.iter().map(|(p, c)| Member::file(p, c)).collect();
        let record_name = format!("{dist_info}/RECORD");
        all.push(Member::file(&record_name, &record));
        write(&all, false)
    }

    /// A folder with `files/` (the files) and `simple/NAME/index.html` (links with
    /// `#sha256=`), for files of any projects; returns the sha256 of each file by name.
    struct Fixture {
        dir: tempfile::TempDir,
        hashes: BTreeMap<String, Digest>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture { dir: tempfile::tempdir().unwrap(), hashes: BTreeMap::new() }
        }

        fn add(&mut self, project: &str, file: &str, bytes: &[u8]) {
            let files = self.dir.path().join("files");
            fs_err::create_dir_all(&files).unwrap();
            fs_err::write(files.join(file), bytes).unwrap();
            let digest = Digest::of(bytes);
            self.hashes.insert(file.to_owned(), digest);
            let page = self.dir.path().join("simple").join(project);
            fs_err::create_dir_all(&page).unwrap();
            let index = page.join("index.html");
            let mut html = fs_err::read_to_string(&index).unwrap_or_default();
            html.push_str(&format!("<a href=\"../../files/{file}#sha256={}\">{file}</a>\n", digest.hex()));
            fs_err::write(index, html).unwrap();
        }

        fn requirements(&self, text: &str) -> PathBuf {
            let path = self.dir.path().join("requirements.txt");
            fs_err::write(&path, text).unwrap();
            path
        }

        fn hash(&self, file: &str) -> String {
            format!("--hash=sha256:{}", self.hashes[file].hex())
        }
    }

    fn target() -> Target {
        Target { python_minor: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), machine: "x86_64" }
    }

    fn context(dir: &Path) -> Context {
        Context {
            store: crate::store::Store::open(&dir.join("store")).unwrap(),
            printer: crate::printer::Printer::new(true, false, false),
            mirrors: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            python_index: None,
        }
    }

    fn lock(f: &Fixture, requirements: &str, index: &str) -> Result<Locked, WheelLockError> {
        let path = f.requirements(requirements);
        let ctx = context(f.dir.path());
        let index = Index::new(index, f.dir.path()).unwrap();
        lock_layer(&ctx, &"app".parse().unwrap(), Source::Requirements { path: &path, index: Some(&index) }, &target())
    }

    /// `requests` needing `idna`, with wheels for several platforms, one marker-excluded pin.
    fn requests_fixture() -> Fixture {
        let mut f = Fixture::new();
        let r = "requests-2.31.0-py3-none-any.whl";
        f.add(
            "requests",
            r,
            &wheel(
                r,
                "requests",
                "2.31.0",
                &["idna<4,>=2.5", "PySocks!=1.5.7,>=1.5.6 ; extra == 'socks'", "chardet<6 ; python_version < '3'"],
                Some(">=3.7"),
            ),
        );
        for file in [
            "idna-3.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "idna-3.6-cp311-abi3-manylinux_2_28_x86_64.whl",
            "idna-3.6-cp311-cp311-manylinux_2_38_x86_64.whl",
            "idna-3.6-py3-none-any.whl",
        ] {
            f.add("idna", file, &wheel(file, "idna", "3.6", &[], None));
        }
        let other = "idna-3.6-cp311-cp311-musllinux_1_1_x86_64.whl";
        f.add("idna", other, &wheel(other, "idna", "3.6", &[], None));
        f
    }

    fn requests_requirements(f: &Fixture, idna_files: &[&str]) -> String {
        let idna: Vec<String> = idna_files.iter().map(|file| f.hash(file)).collect();
        format!(
            "# via pip-compile\nrequests==2.31.0 \\\n    {}\nidna==3.6 \\\n    {}\n    # via requests\n\
             colorama==0.4.6 ; sys_platform == \"win32\" \\\n    --hash=sha256:{}\n",
            f.hash("requests-2.31.0-py3-none-any.whl"),
            idna.join(" \\\n    "),
            "0".repeat(64),
        )
    }

    #[test]
    fn the_best_tagged_hashed_wheel_is_chosen_and_exclusions_are_reported() {
        let f = requests_fixture();
        let all = [
            "idna-3.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "idna-3.6-cp311-abi3-manylinux_2_28_x86_64.whl",
            "idna-3.6-cp311-cp311-manylinux_2_38_x86_64.whl",
            "idna-3.6-py3-none-any.whl",
        ];
        let locked = lock(&f, &requests_requirements(&f, &all), "simple").unwrap();
        let chosen: Vec<(&str, &str, &str)> =
            locked.wheels.iter().map(|w| (w.name.as_str(), w.version.as_str(), w.filename.as_str())).collect();
        // cp311-cp311 on glibc ≤ 2.36 beats abi3 and none; the 2_38 wheel needs a newer glibc.
        assert_eq!(chosen, [("idna", "3.6", all[0]), ("requests", "2.31.0", "requests-2.31.0-py3-none-any.whl")]);
        let idna = &locked.wheels[0];
        assert_eq!(idna.sha256, f.hashes[all[0]]);
        assert_eq!(idna.url, format!("file://{}/files/{}", f.dir.path().display(), all[0]));
        assert!(context(f.dir.path()).store.has_blob(&idna.sha256), "the chosen wheel is in the store");
        assert_eq!(
            locked.notes,
            [Note {
                verb: "Excluded",
                message: format!(
                    "`{}` line 10: `colorama==0.4.6` (its marker `sys_platform == \"win32\"` does not hold for the image)",
                    f.dir.path().join("requirements.txt").display()
                )
            }]
        );
        // Only the hashes the requirements list count: without the cp311 one, abi3 wins.
        let locked = lock(&f, &requests_requirements(&f, &all[1..]), "simple").unwrap();
        assert_eq!(locked.wheels[0].filename, all[1]);
        // The same through a `file://` URL.
        let url = format!("file://{}/simple/", f.dir.path().display());
        assert_eq!(lock(&f, &requests_requirements(&f, &all[1..]), &url).unwrap().wheels[0].filename, all[1]);
    }

    /// Files of one version with the same best tag: pip takes the highest build tag, compared
    /// as a number (10 over 2, where the smallest name would take 1 and text order 2; none is
    /// lowest), and so does the lock.
    #[test]
    fn among_equal_tags_the_highest_build_tag_is_chosen() {
        let mut f = requests_fixture();
        let builds = ["idna-3.6-1-py3-none-any.whl", "idna-3.6-2-py3-none-any.whl", "idna-3.6-10-py3-none-any.whl"];
        for file in builds {
            f.add("idna", file, &wheel(file, "idna", "3.6", &[], None));
        }
        let offered = ["idna-3.6-py3-none-any.whl", builds[0], builds[1], builds[2]];
        let locked = lock(&f, &requests_requirements(&f, &offered), "simple").unwrap();
        assert_eq!(locked.wheels[0].filename, builds[2]);
    }

    #[test]
    fn no_compatible_wheel_lists_the_tags_wanted_and_available() {
        let f = requests_fixture();
        let reqs = requests_requirements(
            &f,
            &["idna-3.6-cp311-cp311-manylinux_2_38_x86_64.whl", "idna-3.6-cp311-cp311-musllinux_1_1_x86_64.whl"],
        );
        let err = lock(&f, &reqs, "simple").unwrap_err().to_string();
        assert!(err.ends_with(
            "line 4: no wheel of `idna==3.6` is compatible with the image (CPython 3.11.2, glibc 2.36, x86_64): it wants \
             `cp311-cp311-manylinux_2_36_x86_64`, `cp311-cp311-manylinux_2_35_x86_64`, `cp311-cp311-manylinux_2_34_x86_64`, \
             `cp311-cp311-manylinux_2_33_x86_64`, …; the pinned wheels are `cp311-cp311-manylinux_2_38_x86_64`, `cp311-cp311-musllinux_1_1_x86_64`"
        ), "{err}");
    }

    #[test]
    fn sdist_only_and_unlisted_hashes_are_refused_naming_the_package() {
        let mut f = requests_fixture();
        f.add("idna", "idna-3.6.tar.gz", b"an sdist");
        let reqs = requests_requirements(&f, &["idna-3.6.tar.gz"]);
        let err = lock(&f, &reqs, "simple").unwrap_err().to_string();
        assert!(err.ends_with("line 4: `idna==3.6` has only an sdist among the files its hashes allow (`idna-3.6.tar.gz`): a wheel must be built from it and pinned"), "{err}");
        let reqs = reqs.replace(&f.hashes["idna-3.6.tar.gz"].hex(), &"a".repeat(64));
        let err = lock(&f, &reqs, "simple").unwrap_err().to_string();
        assert!(err.ends_with("line 4: `idna==3.6`: no file the index lists for it has a sha256 the requirements name (the index lists 6 files)"), "{err}");
    }

    #[test]
    fn a_wheel_whose_bytes_differ_from_its_hash_is_refused_naming_the_file() {
        let f = requests_fixture();
        let file = "idna-3.6-py3-none-any.whl";
        let reqs = requests_requirements(&f, &[file]);
        // The index and the requirements agree on a hash; the file served is another.
        fs_err::write(f.dir.path().join("files").join(file), wheel(file, "idna", "3.6", &["x"], None)).unwrap();
        let err = lock(&f, &reqs, "simple").unwrap_err();
        let chain = anyhow::Error::from(err);
        let text = format!("{chain:#}");
        assert!(text.starts_with(&format!("wheel `{file}` of `idna` (from `file://")), "{text}");
        assert!(text.contains(&format!("does not match its pin: expected {}", f.hashes[file])), "{text}");
    }

    #[test]
    fn incomplete_requirements_are_refused_naming_both_packages() {
        let f = requests_fixture();
        let reqs = format!("requests==2.31.0 {}\n", f.hash("requests-2.31.0-py3-none-any.whl"));
        let err = lock(&f, &reqs, "simple").unwrap_err();
        assert!(matches!(err, WheelLockError::MissingDependency { .. }));
        assert_eq!(
            err.to_string(),
            "`requests` 2.31.0 requires `idna<4,>=2.5`, which the requirements do not pin; they must be complete, as `pip-compile` makes them"
        );
        // An extra asked for brings its own requirements in.
        let all = requests_requirements(&f, &["idna-3.6-py3-none-any.whl"])
            .replace("requests==2.31.0", "requests[socks]==2.31.0");
        let err = lock(&f, &all, "simple").unwrap_err().to_string();
        assert!(err.contains("requires `pysocks!=1.5.7,>=1.5.6`, which the requirements do not pin"), "{err}");
    }

    #[test]
    fn a_pinned_dependency_outside_the_range_and_requires_python_are_refused() {
        let mut f = requests_fixture();
        let file = "idna-4.0-py3-none-any.whl";
        f.add("idna", file, &wheel(file, "idna", "4.0", &[], None));
        let reqs = requests_requirements(&f, &[file]).replace("idna==3.6", "idna==4.0");
        let err = lock(&f, &reqs, "simple").unwrap_err().to_string();
        assert_eq!(err, "`requests` 2.31.0 requires `idna<4,>=2.5`, but the requirements pin `idna` 4.0");
        let file = "new-1.0-py3-none-any.whl";
        f.add("new", file, &wheel(file, "new", "1.0", &[], Some(">=3.12")));
        let err = lock(&f, &format!("new==1.0 {}\n", f.hash(file)), "simple").unwrap_err().to_string();
        assert_eq!(err, "`new` 1.0 requires Python `>=3.12`, and the image's interpreter is 3.11.2");
    }

    /// A static file server on loopback, stopped (and joined) when dropped.
    struct Server {
        port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Server {
        fn start(root: PathBuf) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = stop.clone();
            let thread = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut line = String::new();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    reader.read_line(&mut line).unwrap();
                    // The rest of the request head.
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap() <= 2 {
                            break;
                        }
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
                    let mut file = root.join(&path);
                    if path.ends_with('/') {
                        file = file.join("index.html");
                    }
                    let (status, body) = match fs_err::read(&file) {
                        Ok(b) => ("200 OK", b),
                        Err(_) => ("404 Not Found", b"not found".to_vec()),
                    };
                    let kind = if file.extension().is_some_and(|e| e == "html") {
                        "text/html"
                    } else {
                        "application/octet-stream"
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
                }
            });
            Server { port, stop, thread: Some(thread) }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so that it sees the flag.
            let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn an_http_index_on_loopback_is_read_and_its_wheels_fetched() {
        let f = requests_fixture();
        let server = Server::start(f.dir.path().to_owned());
        let all = ["idna-3.6-cp311-abi3-manylinux_2_28_x86_64.whl", "idna-3.6-py3-none-any.whl"];
        let url = format!("http://127.0.0.1:{}/simple", server.port);
        let locked = lock(&f, &requests_requirements(&f, &all), &url).unwrap();
        assert_eq!(locked.wheels[0].url, format!("http://127.0.0.1:{}/files/{}", server.port, all[0]));
        assert_eq!(locked.wheels[0].size, fs_err::metadata(f.dir.path().join("files").join(all[0])).unwrap().len());
        let err = lock(&f, &format!("nothere==1.0 --hash=sha256:{}\n", "1".repeat(64)), &url).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(text.contains("has no project `nothere`"), "{text}");
        drop(server);
    }

    #[test]
    fn a_pylock_is_locked_from_its_own_wheels() {
        let f = requests_fixture();
        let idna = "idna-3.6-py3-none-any.whl";
        let req = "requests-2.31.0-py3-none-any.whl";
        let text = format!(
            "lock-version = '1.0'\n\
             [[packages]]\nname = 'idna'\nversion = '3.6'\n[[packages.wheels]]\npath = 'files/{idna}'\nhashes = {{sha256 = '{}'}}\n\
             [[packages]]\nname = 'requests'\nversion = '2.31.0'\n[[packages.wheels]]\nurl = 'file://{}/files/{req}'\nhashes = {{sha256 = '{}'}}\n\
             [[packages]]\nname = 'pywin32'\nversion = '306'\nmarker = \"sys_platform == 'win32'\"\n[[packages.wheels]]\nurl = 'https://example.invalid/pywin32-306-cp311-cp311-win_amd64.whl'\nhashes = {{sha256 = '{}'}}\n",
            f.hashes[idna].hex(),
            f.dir.path().display(),
            f.hashes[req].hex(),
            "2".repeat(64)
        );
        let path = f.dir.path().join("pylock.toml");
        fs_err::write(&path, text).unwrap();
        let ctx = context(f.dir.path());
        let locked = lock_layer(&ctx, &"app".parse().unwrap(), Source::Pylock { path: &path }, &target()).unwrap();
        let names: Vec<&str> = locked.wheels.iter().map(|w| w.filename.as_str()).collect();
        assert_eq!(names, [idna, req]);
        assert_eq!(locked.notes.len(), 1);
        assert!(locked.notes[0].message.contains("package `pywin32` 306 (its marker"), "{:?}", locked.notes);
    }
}
