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
    NoHashedFile { place: String, name: Name, version: Version, listed: String },
    #[error(
        "{place}: `{name}=={version}` has only an sdist among the files its hashes allow ({sdists}): \
         a wheel must be built from it and pinned"
    )]
    SdistOnly { place: String, name: Name, version: Version, sdists: String },
    #[error(
        "{place}: no wheel of `{name}=={version}` is compatible with the image (CPython {python}, glibc {glibc}, {machine}): \
         it wants {wanted}, …; the pinned wheels are {available}"
    )]
    Incompatible {
        place: String,
        name: Name,
        version: Version,
        python: String,
        glibc: String,
        machine: String,
        wanted: String,
        available: String,
    },
    #[error("wheel `{file}` of `{name}` (from `{url}`) cannot be fetched")]
    Fetch { file: String, name: Name, url: String, source: FetchError },
    #[error("wheel `{file}` of `{name}` (from `{url}`) is {actual}, which is none of the sha256 the requirements list for it")]
    HashMismatch { file: String, name: Name, url: String, actual: Digest },
    #[error("wheel `{file}` of `{name}` is not a valid wheel")]
    Wheel { file: String, name: Name, source: WheelError },
    #[error("wheel `{file}` is pinned as `{name}=={version}` but its METADATA says `{found}`")]
    WrongMetadata { file: String, name: Name, version: Version, found: String },
    #[error("`{name}` {version} requires Python `{spec}`, and the image's interpreter is {python}")]
    RequiresPython { name: Name, version: Version, spec: String, python: String },
    #[error(
        "`{name}` {version} requires `{requirement}`, which the requirements do not pin; they must be complete, \
         as `pip-compile` makes them"
    )]
    MissingDependency { name: Name, version: Version, requirement: String },
    #[error("`{name}` {version} requires `{requirement}`, but the requirements pin `{dependency}` {pinned}")]
    Unsatisfied { name: Name, version: Version, requirement: String, dependency: Name, pinned: Version },
    #[error("`{name}` {version}: its `Requires-Dist` `{text}` is not valid")]
    BadRequiresDist { name: Name, version: Version, text: String, source: super::marker::MarkerError },
    #[error("{first} and {second} both pin `{name}` for the image")]
    Duplicate { name: Name, first: String, second: String },
    #[error("`{}`: no environment it was locked for (`environments`) matches the image", path.display())]
    Environments { path: PathBuf },
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
                version: pinned.version,
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
        let python: Version = target.python_full.parse().expect("a Debian upstream version of Python is PEP 440");
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
            version: want.version.clone(),
            sdists: sdists.join(", "),
        });
    }
    let mut best: Option<(usize, &Listed)> = None;
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
            // Ties (one tag in two files) go to the smaller file name: stable, whatever order
            // the index lists them in.
            if best.is_none_or(|(r, f)| (rank, &file.filename) < (r, &f.filename)) {
                best = Some((rank, file));
            }
        }
    }
    match best {
        Some((_, file)) => Ok(file.clone()),
        None => Err(WheelLockError::Incompatible {
            place: want.place.clone(),
            name: want.name.clone(),
            version: want.version.clone(),
            python: target.python_full.clone(),
            glibc: format!("{}.{}", target.glibc.0, target.glibc.1),
            machine: target.machine.to_owned(),
            wanted: tags.iter().take(4).map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
            available: available.into_iter().collect::<Vec<_>>().join(", "),
        }),
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
        source,
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
        .map_err(|source| WheelLockError::Wheel { file: file.filename.clone(), name: want.name.clone(), source })?;
    let metadata = opened.metadata();
    if metadata.name != want.name || metadata.version.parse::<Version>().ok().as_ref() != Some(&want.version) {
        return Err(WheelLockError::WrongMetadata {
            file: file.filename.clone(),
            name: want.name.clone(),
            version: want.version.clone(),
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
                    version: want.version.clone(),
                    spec: spec.to_owned(),
                    python: target.python_full.clone(),
                });
            }
        }
        let mut list = Vec::new();
        for text in &m.requires_dist {
            let r = text.parse::<Requirement>().map_err(|source| WheelLockError::BadRequiresDist {
                name: want.name.clone(),
                version: want.version.clone(),
                text: text.clone(),
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
                        version: want.version.clone(),
                        requirement: text,
                    })
                }
                Some(v) if !r.specifiers.contains(v) => {
                    return Err(WheelLockError::Unsatisfied {
                        name: want.name.clone(),
                        version: want.version.clone(),
                        requirement: text,
                        dependency: r.name.clone(),
                        pinned: (*v).clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
