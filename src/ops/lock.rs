//! `candidate lock RECIPE [--check]`: pins every input ([`crate::lock::lock`]); with
//! `--check`, a lockfile that would change is a failed check (exit 1) that writes nothing.

use std::path::Path;

use super::{CheckFailed, Context};
use crate::lock::LockOutcome;
use crate::lockfile::LockMode;

/// What `lock --json` prints.
#[derive(serde::Serialize)]
struct Locked<'a> {
    lockfile: &'a Path,
    #[serde(flatten)]
    outcome: &'a LockOutcome,
}

pub fn lock(ctx: &Context, recipe: &Path, lockfile: &Path, mode: LockMode, allow_rollback: bool) -> anyhow::Result<()> {
    let outcome = crate::lock::lock(ctx, recipe, lockfile, mode, allow_rollback)?;
    if ctx.printer.json() {
        ctx.printer.data(&Locked { lockfile, outcome: &outcome })?;
    }
    match outcome {
        LockOutcome::Unchanged | LockOutcome::Written => Ok(()),
        LockOutcome::WouldChange { reason } => Err(CheckFailed {
            message: format!("lockfile `{}` would change: {reason}", lockfile.display()),
            hint: Some(format!("run `candidate lock {}` to update it", recipe.display())),
        }
        .into()),
    }
}
