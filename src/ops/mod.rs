//! The commands, each a thin layer over the library (cargo's `ops`).

pub mod build;
pub mod diff;
pub mod lock;
pub mod packages;
pub mod qualify;
pub mod qualify_lxc;
pub mod release;
pub mod verify;

use std::path::PathBuf;

use crate::printer::Printer;
use crate::store::Store;

/// What every command gets: the store and the printer.
pub struct Context {
    pub store: Store,
    pub printer: Printer,
    /// `--mirror NAME=URL`: where to read an archive from instead of the recipe's `url`.
    pub mirrors: std::collections::BTreeMap<String, String>,
}

/// A check that failed (exit code 1), as opposed to an error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckFailed {
    pub message: String,
    pub hint: Option<String>,
}

/// The lockfile to use for a recipe.
pub fn lockfile_path(recipe: &std::path::Path, explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| crate::lockfile::Lockfile::default_path(recipe))
}
