//! `candidate store gc [--root PATH…]`: removes what no candidate, channel record, lockfile
//! or deployment still needs, and the leftovers of dead processes ([`crate::upkeep::gc`]),
//! with the store to itself; reports the bytes freed.

use std::path::{Path, PathBuf};

use super::Context;

pub fn store_gc(ctx: &Context, roots: &[PathBuf], channels: Option<&Path>) -> anyhow::Result<()> {
    if !ctx.store.lock_exclusive(false)? {
        ctx.printer.status("Waiting", "for the other commands using this store to finish");
        ctx.store.lock_exclusive(true)?;
    }
    let report = crate::upkeep::gc(ctx, roots, channels)?;
    if ctx.printer.json() {
        return ctx.printer.data(&report);
    }
    for path in &report.removed_leftovers {
        println!("removed {}", path.display());
    }
    println!(
        "freed {} bytes: {} blob(s), {} action(s), {} layer record(s), {} registration(s), {} leftover(s); kept {} blob(s)",
        report.bytes_freed,
        report.removed_blobs,
        report.removed_actions,
        report.removed_layers,
        report.removed_candidates,
        report.removed_leftovers.len(),
        report.kept_blobs
    );
    Ok(())
}
