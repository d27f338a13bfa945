//! `candidate fetch` and `candidate build`: thin wrappers over [`crate::build`].

use std::path::{Path, PathBuf};

use super::Context;
use crate::build::BuildOptions;
use crate::digest::Digest;
use crate::fetch::Network;

/// `candidate fetch RECIPE`: makes sure the store holds every locked input.
pub fn fetch(ctx: &Context, recipe: &Path, lockfile: &Path) -> anyhow::Result<()> {
    crate::build::fetch(ctx, recipe, lockfile, Network::Allowed)
}

/// What `build --json` prints.
#[derive(serde::Serialize)]
struct Built<'a> {
    /// The candidate id: the sha256 of its `manifest.json`.
    id: Digest,
    /// The candidate folder.
    dir: &'a PathBuf,
}

/// `candidate build RECIPE`: prints the candidate id on stdout (`--json`: the id and folder).
pub fn build(ctx: &Context, recipe: &Path, lockfile: &Path, options: &BuildOptions) -> anyhow::Result<Digest> {
    let (id, dir) = crate::build::build(ctx, recipe, lockfile, options)?;
    if ctx.printer.json() {
        ctx.printer.data(&Built { id, dir: &dir })?;
    } else {
        println!("{id}");
    }
    Ok(id)
}
