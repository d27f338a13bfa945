//! The commands, each a thin layer over the library (cargo's `ops`): parse what the command
//! line gave, call the stage, print what it returned. No command imports another.

pub mod build;
pub mod deploy;
pub mod diff;
pub mod key;
pub mod list_remote;
pub mod lock;
pub mod publish;
pub mod pull;
pub mod push;
pub mod release;
pub mod status;
pub mod store_gc;
pub mod store_verify;
pub mod test;
pub mod test_system;
pub mod undeploy;
pub mod verify;
pub mod verify_feed;

use std::path::{Path, PathBuf};

pub use crate::context::Context;
pub use crate::error::CheckFailed;

/// The lockfile to use for a recipe.
pub fn lockfile_path(recipe: &Path, explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| crate::lockfile::Lockfile::default_path(recipe))
}
