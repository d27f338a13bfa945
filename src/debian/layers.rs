//! The Debian package layers of a recipe: each layer's pinned packages unpacked
//! ([`super::install`]) over the layers below it, cached by the packages' hashes.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::pin::architectures;
use crate::context::Context;
use crate::digest::{Digest, Hasher};
use crate::lockfile::{LockedPackage, Lockfile};
use crate::recipe::Recipe;

/// Builds the package layers of a recipe, in order, carrying what each needs from the ones
/// below it: their packages (for the dpkg status file) and who owns which file.
pub struct PackageLayers<'a> {
    lockfile: &'a Lockfile,
    below: Vec<&'a LockedPackage>,
    owners: BTreeMap<String, (String, String)>,
    /// Files taken over by `Replaces`: (path, by, from). Recorded in the manifest.
    pub replaced: Vec<(String, String, String)>,
}

/// A package layer the cache does not hold: what [`PackageLayers::build`] needs.
pub struct PendingLayer<'a> {
    layer: &'a crate::recipe::Layer,
    this: Vec<&'a LockedPackage>,
    key: Digest,
    record_key: Digest,
}

/// What the cache keeps beside a package layer: what the next layers and the manifest need.
#[derive(serde::Serialize, serde::Deserialize)]
struct LayerRecord {
    owners: BTreeMap<String, (String, String)>,
    replaced: Vec<(String, String, String)>,
}

impl<'a> PackageLayers<'a> {
    pub fn new(lockfile: &'a Lockfile) -> Self {
        PackageLayers { lockfile, below: Vec::new(), owners: BTreeMap::new(), replaced: Vec::new() }
    }

    /// The layer from the cache, or what it takes to build it ([`PackageLayers::build`]).
    pub fn lookup(
        &mut self,
        ctx: &Context,
        recipe: &Recipe,
        layer: &'a crate::recipe::Layer,
        layers_below: &[(String, crate::layer::Built)],
    ) -> anyhow::Result<Result<crate::layer::Built, PendingLayer<'a>>> {
        let this: Vec<&LockedPackage> = self.lockfile.packages.iter().filter(|p| p.layer == layer.name).collect();
        let mut h = Hasher::new();
        h.field("candidate-package-layer")
            .field(crate::layer::FORMAT_VERSION.to_le_bytes())
            .field(crate::debian::install::LAYER_VERSION.to_le_bytes())
            .field(recipe.image.source_date_epoch.seconds().to_le_bytes());
        for arch in architectures(recipe) {
            h.field(arch.as_str());
        }
        for (_, built) in layers_below {
            h.field("below").field(built.info.diff_id.as_bytes());
        }
        for p in &this {
            h.field("package").field(p.sha256.as_bytes());
        }
        let key = h.finish();
        let record_key = {
            let mut h = Hasher::new();
            h.field("candidate-package-layer-record").field(key.as_bytes());
            h.finish()
        };
        let record: Option<LayerRecord> = ctx.store.action(&record_key).and_then(|b| serde_json::from_slice(&b).ok());
        if let (Some(built), Some(record)) = (crate::layer::lookup(&ctx.store, &key), record) {
            self.accept(this, record);
            return Ok(Ok(built));
        }
        Ok(Err(PendingLayer { layer, this, key, record_key }))
    }

    /// Installs the layer's packages, streaming its tar to `tee` as it is written.
    pub fn build(
        &mut self,
        ctx: &Context,
        recipe: &Recipe,
        pending: PendingLayer<'a>,
        layers_below: &[(String, crate::layer::Built)],
        tee: &mut dyn std::io::Write,
    ) -> anyhow::Result<crate::layer::Built> {
        use crate::debian::install;
        let PendingLayer { layer, this, key, record_key } = pending;
        let sde = recipe.image.source_date_epoch.seconds();
        let archs = architectures(recipe);
        let mut debs = install::deb_layers(&ctx.store, &this, sde)?;
        let mut debs_below = install::deb_layers(&ctx.store, &self.below, sde)?;
        let image = crate::rootfs::merge(layers_below, sde)?;
        let installed = install::install(
            image,
            install::LayerInstall {
                packages: &debs,
                below: &debs_below,
                owners: self.owners.clone(),
                native: &archs[0],
                foreign: &archs[1..],
                sde,
            },
        )
        .with_context(|| format!("layer `{}`", layer.name))?;
        // The new package blobs are made durable (a `syncfs`, disk-bound) while the layer is
        // written (CPU-bound); nothing names the layer before both are done.
        let (durable, built) = std::thread::scope(|scope| {
            let durable = scope.spawn(|| {
                install::finish_debs(&ctx.store, &mut debs)?;
                install::finish_debs(&ctx.store, &mut debs_below)
            });
            let built =
                crate::layer::write_tree_blob(&ctx.store, layer.name.as_str(), &installed.tree, key, tee, &|| Ok(()));
            (durable.join().expect("making package blobs durable does not panic"), built)
        });
        durable?;
        let built = built?;
        let record = LayerRecord { owners: installed.owners, replaced: installed.replaced };
        ctx.store.put_action(&record_key, &serde_json::to_vec(&record).expect("serialises"))?;
        self.accept(this, record);
        Ok(built)
    }

    fn accept(&mut self, this: Vec<&'a LockedPackage>, record: LayerRecord) {
        self.below.extend(this);
        self.owners = record.owners;
        self.replaced.extend(record.replaced);
    }
}
