//! The store's registry of built candidates (`STORE/candidates/ID.json`): what `list` shows,
//! and how a command line names a candidate by id prefix instead of by folder.
//!
//! An entry is a pointer, not a proof: whatever it names is read back and checked by the
//! command that uses it (the id is the sha256 of the folder's `manifest.json`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::debian::packages::Architecture;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::recipe::{ImageVersion, Name};
use crate::store::Store;

/// One built candidate. Fields in alphabetical order: the bytes are the ones earlier versions
/// wrote, so an unchanged entry is never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub architecture: Architecture,
    /// The candidate folder, absolute.
    pub dir: PathBuf,
    pub id: Digest,
    pub name: Name,
    /// The settled epoch, in seconds.
    #[serde(rename = "source-date-epoch")]
    pub source_date_epoch: u64,
    pub version: ImageVersion,
}

fn entries_dir(store: &Store) -> PathBuf {
    store.root().join("candidates")
}

/// Records a built candidate in the store's registry.
pub fn register(store: &Store, entry: &Entry) -> anyhow::Result<()> {
    let entry = Entry { dir: std::path::absolute(&entry.dir)?, ..entry.clone() };
    let path = entries_dir(store).join(format!("{}.json", entry.id.hex()));
    let bytes = serde_json::to_vec(&entry)?;
    if fs_err::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
        store.write_atomic(&path, &bytes)?;
    }
    Ok(())
}

/// Every registered candidate, by name, version and id. An entry that does not parse is
/// passed over: the registry is a cache of pointers, rebuilt by the next build.
pub fn entries(store: &Store) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(entries_dir(store))? {
        let path = entry?.path();
        if let Ok(entry) = serde_json::from_slice::<Entry>(&fs_err::read(&path)?) {
            out.push(entry);
        }
    }
    out.sort_by(|a, b| (&a.name, &a.version, &a.id).cmp(&(&b.name, &b.version, &b.id)));
    Ok(out)
}

/// A candidate named on the command line: a folder, or an id (prefix) in the registry.
/// Returns the folder and the candidate id.
pub fn resolve(store: &Store, arg: &str) -> anyhow::Result<(PathBuf, Digest)> {
    let path = Path::new(arg);
    let dir = if path.join(MANIFEST).is_file() {
        path.to_owned()
    } else {
        let prefix = arg.strip_prefix("sha256:").unwrap_or(arg).to_ascii_lowercase();
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("`{arg}` is neither a candidate folder nor an id (at least 4 hex digits)");
        }
        let matches: Vec<Entry> = entries(store)?.into_iter().filter(|e| e.id.hex().starts_with(&prefix)).collect();
        match matches.as_slice() {
            [one] => one.dir.clone(),
            [] => bail!("no candidate in the store has an id starting with `{prefix}`"),
            _ => bail!("`{prefix}` names {} candidates; give more of the id", matches.len()),
        }
    };
    let manifest =
        fs_err::read(dir.join(MANIFEST)).with_context(|| format!("`{}` is not a candidate folder", dir.display()))?;
    Ok((dir, Digest::of(&manifest)))
}
