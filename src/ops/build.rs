//! `candidate fetch` and `candidate build`: thin wrappers over [`crate::build`].

use std::path::{Path, PathBuf};

use super::Context;
use crate::build::BuildOptions;
use crate::digest::Digest;
use crate::fetch::Network;

/// `fetch --bundle FILE` and `--from-bundle FILE`.
pub struct Bundles<'a> {
    /// Write every locked input into this bundle.
    pub write: Option<&'a Path>,
    /// Take the locked inputs from this bundle.
    pub read: Option<&'a Path>,
}

/// `candidate fetch RECIPE`: makes sure the store holds every locked input. From a bundle,
/// the bundle is the only source: what it lacks is an error, not a download.
pub fn fetch(ctx: &Context, recipe: &Path, lockfile: &Path, bundles: &Bundles<'_>) -> anyhow::Result<()> {
    let network = match bundles.read {
        Some(bundle) => {
            crate::build::import_bundle(ctx, bundle)?;
            Network::Offline
        }
        None => Network::Allowed,
    };
    crate::build::fetch(ctx, recipe, lockfile, network, bundles.write)
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
/// With a bundle, its inputs are imported into the store first.
pub fn build(
    ctx: &Context,
    recipe: &Path,
    lockfile: &Path,
    options: &BuildOptions,
    from_bundle: Option<&Path>,
) -> anyhow::Result<Digest> {
    if let Some(bundle) = from_bundle {
        crate::build::import_bundle(ctx, bundle)?;
    }
    let (id, dir) = crate::build::build(ctx, recipe, lockfile, options)?;
    if ctx.printer.json() {
        ctx.printer.data(&Built { id, dir: &dir })?;
    } else {
        println!("{id}");
    }
    Ok(id)
}
