//! `candidate lock RECIPE [--check]`: a thin wrapper over [`crate::lock::lock`].

use std::path::Path;

use super::Context;
use crate::lock::LockOutcome;
use crate::lockfile::LockMode;

pub fn lock(
    ctx: &Context,
    recipe: &Path,
    lockfile: &Path,
    mode: LockMode,
    allow_rollback: bool,
) -> anyhow::Result<LockOutcome> {
    crate::lock::lock(ctx, recipe, lockfile, mode, allow_rollback)
}
