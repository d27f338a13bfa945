//! `candidate fetch` and `candidate build`: thin wrappers over [`crate::build`].

use std::path::Path;

use super::Context;
use crate::build::BuildOptions;
use crate::digest::Digest;
use crate::fetch::Network;

/// `candidate fetch RECIPE`: makes sure the store holds every locked input.
pub fn fetch(ctx: &Context, recipe: &Path, lockfile: &Path) -> anyhow::Result<()> {
    crate::build::fetch(ctx, recipe, lockfile, Network::Allowed)
}

/// `candidate build RECIPE`: prints the candidate id on stdout.
pub fn build(ctx: &Context, recipe: &Path, lockfile: &Path, options: &BuildOptions) -> anyhow::Result<Digest> {
    let (id, _) = crate::build::build(ctx, recipe, lockfile, options)?;
    println!("{id}");
    Ok(id)
}
