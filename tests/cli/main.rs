//! End-to-end tests of the `candidate` binary: one integration test binary (cargo's shape),
//! one module per area, sharing the small context below.

mod determinism;
mod hostile;

use std::path::{Path, PathBuf};

pub const BIN: &str = env!("CARGO_BIN_EXE_candidate");

/// The repository root, where `recipes/`, `lockfiles/` and `fixtures/` live.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the repository's `recipes/`, `lockfiles/` and `fixtures/` into `dest`, so a test
/// can build the example somewhere else (another path, other mtimes, another order).
pub fn copy_project(dest: &Path, reverse_order: bool) {
    for top in ["recipes", "lockfiles", "fixtures"] {
        copy_tree(&repo().join(top), &dest.join(top), reverse_order);
    }
}

fn copy_tree(from: &Path, to: &Path, reverse_order: bool) {
    fs_err::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = fs_err::read_dir(from).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    if reverse_order {
        entries.reverse();
    }
    for path in entries {
        let target = to.join(path.file_name().unwrap());
        let meta = fs_err::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            copy_tree(&path, &target, reverse_order);
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&path).unwrap(), &target).unwrap();
        } else {
            fs_err::copy(&path, &target).unwrap();
        }
    }
}

/// Every file under `dir`, relative path -> bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            out.insert(entry.path().strip_prefix(dir).unwrap().to_owned(), fs_err::read(entry.path()).unwrap());
        }
    }
    out
}
