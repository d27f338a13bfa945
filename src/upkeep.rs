//! Keeping a store healthy: `store verify [--repair]` proves every object against its name,
//! and `store gc` removes what nothing needs any more and what dead processes left behind.
//!
//! `verify` re-hashes every blob (on every core), and checks every action-cache entry,
//! layer record and candidate registration against what it names: a blob it names with a
//! size or content other than the entry says, or a file that does not parse, is a bad
//! object. `--repair` removes the bad objects, so that the next build fetches (inputs) or
//! rebuilds (layers, outputs) them; nothing else is touched.
//!
//! `gc` keeps the blobs named by a live candidate (a registered one whose folder still holds
//! it, one a channel record names, or any candidate folder under `--root`), by a lockfile
//! under `--root`, by a deployment's record, and by every action-cache entry that names one
//! of those (so the layers and the other formats of a live candidate stay cached). It
//! removes every other blob, action entry and layer record, registrations whose folder is
//! gone, and the temporary files and staging folders of processes that no longer exist: their
//! names record the PID (`store::temp_prefix`, a publish's `store::sibling_prefix`). It runs with
//! the store's lock held exclusively, so no build writes meanwhile.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::context::Context;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::registry::Entry;
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum UpkeepError {
    #[error("cannot read `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot remove `{}`", path.display())]
    Remove { path: PathBuf, source: std::io::Error },
}

/// One object that does not match what it claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadObject {
    /// The object's path, relative to the store's `v1/` folder.
    pub object: String,
    pub reason: String,
}

/// What `store verify` found (and, with `--repair`, removed).
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub blobs: u64,
    pub bytes: u64,
    pub actions: u64,
    pub layers: u64,
    pub candidates: u64,
    pub bad: Vec<BadObject>,
    pub repaired: bool,
}

/// What `store gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub kept_blobs: u64,
    pub removed_blobs: u64,
    pub removed_actions: u64,
    pub removed_layers: u64,
    pub removed_candidates: u64,
    /// Temporary files and staging folders of dead processes, by path.
    pub removed_leftovers: Vec<PathBuf>,
    pub bytes_freed: u64,
}

/// Proves every object of the store; with `repair`, removes the bad ones.
pub fn verify(store: &Store, repair: bool) -> Result<VerifyReport, UpkeepError> {
    let root = store.root();
    let mut report = VerifyReport { repaired: repair, ..Default::default() };
    let blob_dir = root.join("blobs/sha256");
    let names = file_names(&blob_dir)?;
    let hashed = store::hash_paths(&names.iter().map(|n| blob_dir.join(n)).collect::<Vec<_>>());
    let mut corrupt = BTreeSet::new();
    for (name, result) in names.iter().zip(hashed) {
        let object = format!("blobs/sha256/{name}");
        let named = Digest::from_hex(name).ok();
        match result {
            Ok((actual, size)) => {
                report.blobs += 1;
                report.bytes += size;
                match named {
                    Some(d) if d == actual => {}
                    Some(d) => {
                        corrupt.insert(d);
                        report.bad.push(BadObject {
                            object,
                            reason: format!("its {size} bytes hash to {actual}, not to its name"),
                        });
                    }
                    None => report.bad.push(BadObject { object, reason: "not a sha256 blob name".into() }),
                }
            }
            Err(e) => report.bad.push(BadObject { object, reason: format!("cannot be read: {e}") }),
        }
    }
    for (folder, count) in [("actions", &mut report.actions), ("layers", &mut report.layers)] {
        for name in file_names(&root.join(folder))? {
            *count += 1;
            let object = format!("{folder}/{name}");
            if let Some(reason) = check_entry(store, &root.join(&object), &corrupt) {
                report.bad.push(BadObject { object, reason });
            }
        }
    }
    for name in file_names(&root.join("candidates"))? {
        report.candidates += 1;
        let object = format!("candidates/{name}");
        let entry = fs_err::read(root.join(&object)).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
        match entry {
            None => report.bad.push(BadObject { object, reason: "not a candidate registration".into() }),
            Some(e) if format!("{}.json", e.id.hex()) != name => {
                report.bad.push(BadObject { object, reason: format!("registers {}, not the id it is named by", e.id) })
            }
            Some(_) => {}
        }
    }
    if repair {
        for bad in &report.bad {
            remove_path(&root.join(&bad.object))?;
        }
        sync_folders(root);
    }
    Ok(report)
}

/// Why an action-cache entry or layer record at `path` is bad, if it is: it does not parse,
/// it names a blob found corrupt, or it gives a size for a blob the store holds with another.
fn check_entry(store: &Store, path: &Path, corrupt: &BTreeSet<Digest>) -> Option<String> {
    let Some(value) = fs_err::read(path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
        return Some("not a JSON document".into());
    };
    let mut named = BTreeSet::new();
    digests_in(&value, &mut named);
    if let Some(d) = named.iter().find(|d| corrupt.contains(d)) {
        return Some(format!("names the corrupt blob {d}"));
    }
    let mut sized = Vec::new();
    sized_blobs(&value, &mut sized);
    sized.into_iter().find_map(|(digest, size)| {
        let have = store.blob_size(&digest)?;
        (have != size).then(|| format!("says blob {digest} has {size} bytes; the store's has {have}"))
    })
}

/// Every `sha256:HEX` string anywhere in `value`.
fn digests_in(value: &Value, out: &mut BTreeSet<Digest>) {
    match value {
        Value::String(s) => {
            if let Some(d) = s.strip_prefix("sha256:").and_then(|h| Digest::from_hex(h).ok()) {
                out.insert(d);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| digests_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| digests_in(v, out)),
        _ => {}
    }
}

/// Every object that gives a blob's digest (`sha256` or `diff_id`) with its `size`.
fn sized_blobs(value: &Value, out: &mut Vec<(Digest, u64)>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| sized_blobs(v, out)),
        Value::Object(map) => {
            let digest = ["sha256", "diff_id"]
                .iter()
                .find_map(|k| map.get(*k)?.as_str()?.strip_prefix("sha256:").and_then(|h| Digest::from_hex(h).ok()));
            if let (Some(digest), Some(size)) = (digest, map.get("size").and_then(Value::as_u64)) {
                out.push((digest, size));
            }
            map.values().for_each(|v| sized_blobs(v, out));
        }
        _ => {}
    }
}

/// Removes what nothing under `roots` (and the store's own candidates, channels and
/// deployments) still needs, and the leftovers of dead processes.
pub fn gc(ctx: &Context, roots: &[PathBuf], channels: Option<&Path>) -> Result<GcReport, UpkeepError> {
    let store = &ctx.store;
    let root = store.root();
    let mut report = GcReport::default();
    let mut live = BTreeSet::new();

    // Candidates: registered ones whose folder still holds them, and those a channel names.
    // Beside each registered folder, a publish may have left a staging folder.
    let mut output_folders: BTreeSet<PathBuf> = BTreeSet::new();
    let in_channels = crate::release::memberships(ctx, channels);
    for name in file_names(&root.join("candidates"))? {
        let path = root.join("candidates").join(&name);
        let entry = fs_err::read(&path).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
        output_folders.extend(entry.as_ref().and_then(|e| e.dir.parent()).map(Path::to_owned));
        let holds = entry.as_ref().is_some_and(|e| candidate_digests(&e.dir, Some(&e.id), &mut live));
        if !holds && !entry.is_some_and(|e| in_channels.contains_key(&e.id)) {
            report.bytes_freed += remove_path(&path)?;
            report.removed_candidates += 1;
        }
    }
    // Deployments' records name the plan's layers.
    for file in walkdir::WalkDir::new(root.join("deployments")).into_iter().flatten() {
        if file.file_type().is_file() {
            if let Some(v) = fs_err::read(file.path()).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                digests_in(&v, &mut live);
            }
        }
    }
    // Lockfiles and candidate folders under the roots; staging folders of dead publishes.
    for top in roots {
        let mut walk = walkdir::WalkDir::new(top).into_iter();
        while let Some(Ok(entry)) = walk.next() {
            let name = entry.file_name().to_string_lossy();
            if entry.file_type().is_dir() {
                if entry.depth() > 0 && name.starts_with('.') {
                    output_folders.extend(entry.path().parent().map(Path::to_owned));
                    walk.skip_current_dir();
                } else if entry.path().join(MANIFEST).is_file() {
                    candidate_digests(entry.path(), None, &mut live);
                    walk.skip_current_dir();
                }
            } else if name.ends_with(".lock") {
                if let Ok(lockfile) = crate::lockfile::Lockfile::load(entry.path()) {
                    live.extend(lockfile_digests(&lockfile));
                }
            }
        }
    }

    // Action entries that name a live blob are live, and so is every blob they name.
    let mut dead_actions = Vec::new();
    let mut from_actions = BTreeSet::new();
    for name in file_names(&root.join("actions"))? {
        let path = root.join("actions").join(&name);
        let mut named = BTreeSet::new();
        if let Some(v) = fs_err::read(&path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            digests_in(&v, &mut named);
        }
        // An entry that names no blob (a verdict cached by its inputs' digests) is kept: it
        // is a few bytes, and nothing says which inputs it was about.
        if named.is_empty() || named.iter().any(|d| live.contains(d)) {
            from_actions.extend(named);
        } else {
            dead_actions.push(path);
        }
    }
    live.extend(from_actions);
    for path in dead_actions {
        report.bytes_freed += remove_path(&path)?;
        report.removed_actions += 1;
    }
    for name in file_names(&root.join("layers"))? {
        let hex = name.strip_suffix(".json").unwrap_or(&name);
        if !Digest::from_hex(hex).is_ok_and(|d| live.contains(&d)) {
            report.bytes_freed += remove_path(&root.join("layers").join(&name))?;
            report.removed_layers += 1;
        }
    }
    for name in file_names(&root.join("blobs/sha256"))? {
        if Digest::from_hex(&name).is_ok_and(|d| live.contains(&d)) {
            report.kept_blobs += 1;
        } else {
            report.bytes_freed += remove_path(&root.join("blobs/sha256").join(&name))?;
            report.removed_blobs += 1;
        }
    }

    // Leftovers of dead processes: the store's temporaries, and what a publish puts beside a
    // candidate folder (its staging folder, the old folder moved aside).
    let leftovers = std::iter::once((root.join("tmp"), store::recorded_pid as fn(&str) -> Option<u32>))
        .chain(output_folders.into_iter().map(|folder| (folder, store::sibling_pid as fn(&str) -> Option<u32>)));
    for (folder, recorded_pid) in leftovers {
        let Ok(entries) = fs_err::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if recorded_pid(&name).is_some_and(|pid| !store::pid_alive(pid)) {
                report.bytes_freed += remove_path(&entry.path())?;
                report.removed_leftovers.push(entry.path());
            }
        }
    }
    sync_folders(root);
    Ok(report)
}

/// Adds the digests a candidate folder's manifest names to `live`, if the folder holds a
/// manifest (and, given `id`, that very candidate). Returns whether it did.
fn candidate_digests(dir: &Path, id: Option<&Digest>, live: &mut BTreeSet<Digest>) -> bool {
    let Ok(bytes) = fs_err::read(dir.join(MANIFEST)) else { return false };
    if id.is_some_and(|id| *id != Digest::of(&bytes)) {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else { return false };
    digests_in(&value, live);
    true
}

/// Every blob a lockfile pins: signed `InRelease` files, indexes, packages, tarballs.
fn lockfile_digests(lockfile: &crate::lockfile::Lockfile) -> Vec<Digest> {
    let archives =
        lockfile.archives.iter().flat_map(|a| std::iter::once(a.inrelease).chain(a.indexes.iter().map(|i| i.sha256)));
    archives.chain(lockfile.packages.iter().map(|p| p.sha256)).chain(lockfile.inputs.iter().map(|i| i.sha256)).collect()
}

/// The names in `dir`, sorted; none if it does not exist.
fn file_names(dir: &Path) -> Result<Vec<String>, UpkeepError> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(UpkeepError::Read { path: dir.to_owned(), source }),
    };
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

/// Removes a file or a folder with what is in it; returns the bytes it held (blocks on disk).
fn remove_path(path: &Path) -> Result<u64, UpkeepError> {
    let Ok(meta) = fs_err::symlink_metadata(path) else { return Ok(0) };
    let remove_error = |source| UpkeepError::Remove { path: path.to_owned(), source };
    if meta.is_dir() {
        let bytes = walkdir::WalkDir::new(path)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| !m.is_dir())
            .map(|m| m.blocks() * 512)
            .sum();
        fs_err::remove_dir_all(path).map_err(remove_error)?;
        Ok(bytes)
    } else {
        fs_err::remove_file(path).map_err(remove_error)?;
        Ok(meta.blocks() * 512)
    }
}

/// Makes the removals durable: a crash after `gc` must not bring back an entry whose blob
/// is gone. Failure changes nothing for the caller (the next `verify` sees the state).
fn sync_folders(root: &Path) {
    for folder in ["blobs/sha256", "actions", "layers", "candidates", "tmp"] {
        if let Ok(dir) = fs_err::File::open(root.join(folder)) {
            let _ = dir.sync_all();
        }
    }
}
