//! The build stage: from a recipe whose lockfile is current to a published candidate folder.
//!
//! `build` never resolves: it checks that the lockfile is the one the recipe calls for
//! ([`crate::lock::check`]), fetches what the store lacks (unless `--offline`, which forbids
//! the network only), builds or reuses each layer, assembles the outputs, writes the manifest,
//! the SPDX and CycloneDX SBOMs and (with keys) the signed statement, publishes the folder ([`crate::dist::publish`])
//! and records it in the store's registry.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::attest::{self, Subject};
use crate::context::Context;
use crate::debian::configure;
use crate::debian::per_machine;
use crate::digest::Digest;
use crate::dist::{CYCLONEDX, ENVELOPE, MANIFEST, SBOM};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::fetch::{self, Network, Pin};
use crate::keys::PrivateKey;
use crate::layer::{self, FilesInput, LayerInfo, TarballInput};
use crate::lock::{self, Resolved};
use crate::lockfile::InputKind;
use crate::manifest::{Manifest, ManifestInput};
use crate::recipe::CONFIGURE_LAYER as LAYER_NAME;
use crate::recipe::{Format, Origin};
use crate::rootfs::{self, Assembled};
use crate::sbom;
use crate::tree::Tree;

pub struct BuildOptions {
    /// Keys that sign the candidate's provenance (`manifest.intoto.json`); none: unsigned.
    pub sign: Vec<PrivateKey>,
    pub out: PathBuf,
    pub network: Network,
    /// Overrides the recipe's `[output] formats` for this build.
    pub formats: Option<Vec<Format>>,
}

/// Makes sure the store holds every locked input (`candidate fetch`); with `bundle`, then
/// writes them all into that file ([`crate::bundle::write`]).
pub fn fetch(
    ctx: &Context,
    recipe_path: &Path,
    lockfile_path: &Path,
    network: Network,
    bundle: Option<&Path>,
) -> anyhow::Result<()> {
    let (resolved, lockfile_digest) = lock::check(ctx, recipe_path, lockfile_path)?;
    fetch_inputs(ctx, &resolved, network)?;
    if let Some(path) = bundle {
        let wrote = crate::bundle::write(&ctx.store, &resolved.lockfile, lockfile_digest, path)?;
        ctx.printer.status(
            "Bundled",
            format_args!("{} locked inputs ({} bytes) into {}", wrote.blobs, wrote.bytes, path.display()),
        );
    }
    Ok(())
}

/// Imports a bundle's locked inputs into the store (`--from-bundle`), saying how many.
pub fn import_bundle(ctx: &Context, path: &Path) -> anyhow::Result<()> {
    let got = crate::bundle::import(&ctx.store, path)?;
    ctx.printer
        .status("Imported", format_args!("{} locked inputs ({} bytes) from {}", got.blobs, got.bytes, path.display()));
    Ok(())
}

/// Fetches every tarball (returned per layer) and wheel of the lockfile, each checked against
/// its pin.
fn fetch_inputs(ctx: &Context, resolved: &Resolved, network: Network) -> anyhow::Result<Vec<Vec<TarballInput>>> {
    let recipe = &resolved.recipe;
    if !recipe.archives.is_empty() {
        crate::debian::pin::check_locked(ctx, recipe, &resolved.keyrings, &resolved.lockfile, network)?;
        crate::debian::pin::fetch_packages(ctx, recipe, &resolved.lockfile, network)?;
    }
    let mut out = Vec::new();
    for layer in &recipe.layers {
        let mut tarballs = Vec::new();
        for spec in &layer.tarballs {
            let locked = resolved
                .lockfile
                .inputs
                .iter()
                .find(|i| i.layer == layer.name && i.kind == InputKind::Tarball && i.origin == spec.url)
                .expect("a checked lockfile pins every tarball");
            let pin = Pin { sha256: locked.sha256, size: Some(locked.size) };
            fetch_pinned(ctx, &recipe.dir, &spec.url, &spec.url, pin, network)
                .with_context(|| format!("layer `{}`: cannot fetch tarball", layer.name))?;
            tarballs.push(TarballInput { origin: spec.url.clone(), blob: pin.sha256 });
        }
        out.push(tarballs);
    }
    for wheel in &resolved.lockfile.wheels {
        let pin = Pin { sha256: wheel.sha256, size: Some(wheel.size) };
        fetch_pinned(ctx, &recipe.dir, &wheel.url, &wheel.filename, pin, network)
            .with_context(|| format!("layer `{}`: cannot fetch wheel `{}`", wheel.layer, wheel.filename))?;
    }
    Ok(out)
}

/// Makes sure the store holds the pinned `url` (relative to the recipe's folder), saying so
/// with a progress bar when it must be fetched.
fn fetch_pinned(
    ctx: &Context,
    recipe_dir: &Path,
    url: &str,
    shown: &str,
    pin: Pin,
    network: Network,
) -> anyhow::Result<()> {
    let origin = Origin::parse(url, recipe_dir).map_err(anyhow::Error::msg)?;
    if !ctx.store.has_blob(&pin.sha256) {
        ctx.printer.status("Fetching", shown);
    }
    let bar = ctx.printer.bytes_bar(pin.size, "Fetching".into());
    fetch::fetch(&ctx.store, &origin, Some(pin), network, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(())
}

/// `candidate build`: returns the candidate id and the folder it was written to.
pub fn build(
    ctx: &Context,
    recipe_path: &Path,
    lockfile_path: &Path,
    options: &BuildOptions,
) -> anyhow::Result<(Digest, PathBuf)> {
    let (resolved, lockfile_digest) = lock::check(ctx, recipe_path, lockfile_path)?;
    let tarballs = fetch_inputs(ctx, &resolved, options.network)?;
    let recipe = &resolved.recipe;
    let sde = recipe.image.source_date_epoch.seconds();

    let mut formats = options.formats.clone().unwrap_or_else(|| recipe.output.formats.clone());
    formats.sort();
    formats.dedup();
    let archives = rootfs::archives(&formats, recipe);

    let built = build_layers(ctx, &resolved, &tarballs, &archives)?;
    let merged = match built.below_configure {
        Some(below) => rootfs::MergedLayers::over(&built.layers, sde, below),
        None => rootfs::MergedLayers::new(&built.layers, sde),
    };
    let assembled = assemble(ctx, recipe, &formats, &archives, &merged, built.streamed)?;
    // The merged tree is done with: its memory goes before the documents are made.
    drop(merged);
    // The layers' blobs were made durable while the outputs were compressed.
    let layers: Vec<(String, LayerInfo)> = built
        .layers
        .into_iter()
        .map(|(name, built)| Ok((name, built.finish(&ctx.store)?)))
        .collect::<anyhow::Result<_>>()?;
    for caching in built.caching {
        caching.wait()?;
    }

    let manifest = Manifest::new(&ManifestInput {
        per_machine: built.per_machine.as_ref(),
        replaced: &built.replaced,
        recipe,
        lockfile: &resolved.lockfile,
        lockfile_digest,
        layers: &layers,
        assembled: &assembled,
        formats: &formats,
    });
    let (id, documents) = documents(&manifest, &assembled, &options.sign);
    let dir = options.out.join(recipe.dist_name());
    crate::dist::publish(ctx, &dir, &assembled, &documents)?;
    let entry = crate::registry::Entry {
        architecture: recipe.image.architecture.clone(),
        dir: dir.clone(),
        id,
        name: recipe.image.name.clone(),
        source_date_epoch: sde,
        version: recipe.image.version.clone(),
    };
    crate::registry::register(&ctx.store, &entry)?;
    ctx.printer.status("Finished", format_args!("{} {}", dir.display(), id));
    Ok((id, dir))
}

/// A recipe's layers, built or from the cache, with what the manifest needs of them.
struct BuiltLayers {
    layers: Vec<(String, layer::Built)>,
    /// The assembled outputs, when the one layer of the rootfs streamed into them.
    streamed: Option<Assembled>,
    /// Files one package took over from another by `Replaces`: (path, by, from).
    replaced: Vec<(String, String, String)>,
    /// In configure mode: what each node adds to the candidate.
    per_machine: Option<per_machine::Record>,
    /// When the maintainer scripts ran now: the image they ran over, every layer below the
    /// configure layer merged (the rootfs is that and the configure layer).
    below_configure: Option<Tree>,
    /// The wheel trees installed now, still being made durable and named for later builds:
    /// nothing of this build waits for them but its end.
    caching: Vec<crate::python::layers::Caching>,
}

/// Builds (or takes from the action cache) every recipe layer in order, then the configure
/// layer in configure mode.
fn build_layers(
    ctx: &Context,
    resolved: &Resolved,
    tarballs: &[Vec<TarballInput>],
    archives: &[rootfs::Archive],
) -> anyhow::Result<BuiltLayers> {
    let recipe = &resolved.recipe;
    let sde = recipe.image.source_date_epoch.seconds();
    let mut layers: Vec<(String, layer::Built)> = Vec::new();
    // A one-layer rootfs is its layer: when that layer must be built, its tar streams to the
    // output encoders in the same pass.
    let mut streamed: Option<Assembled> = None;
    let mut packages = crate::debian::layers::PackageLayers::new(&resolved.lockfile);
    let single = recipe.layers.len() == 1 && !recipe.configure.maintainer_scripts;
    let caching = std::cell::RefCell::new(Vec::new());
    for ((layer, files), tarballs) in recipe.layers.iter().zip(&resolved.files).zip(tarballs) {
        let spinner = ctx.printer.spinner(format!("layer {}", layer.name));
        let mut streaming = Streaming { ctx, archives, single, streamed: &mut streamed };
        let built = if layer.has_packages() {
            match packages.lookup(ctx, recipe, layer, &layers)? {
                Ok(built) => built,
                Err(pending) => streaming.write(|tee| packages.build(ctx, recipe, pending, &layers, tee))?,
            }
        } else {
            let files: Vec<FilesInput<'_>> =
                files.iter().map(|f| FilesInput { tree: &f.tree, digest: f.digest }).collect();
            let key = layer::action_key(layer, &files, tarballs, sde);
            match crate::python::layers::venv(&resolved.lockfile, recipe, layer)? {
                None => match layer::lookup(&ctx.store, &key) {
                    Some(built) => built,
                    None => streaming
                        .write(|tee| Ok(layer::write(&ctx.store, layer, &files, tarballs, sde, key, tee, &Ok)?))?,
                },
                Some(venv) => {
                    let wheels = crate::python::layers::wheels(&resolved.lockfile, layer);
                    let key = crate::python::layers::action_key(&key, &venv, &wheels, sde);
                    match layer::lookup(&ctx.store, &key) {
                        Some(built) => built,
                        None => streaming.write(|tee| {
                            // The wheel trees installed now are cached while the layer is
                            // written and the build goes on, and waited for at its end.
                            let extend = |base| {
                                let (tree, cache) = crate::python::layers::tree(&ctx.store, base, &venv, &wheels, sde)?;
                                caching.borrow_mut().push(cache);
                                Ok(tree)
                            };
                            Ok(layer::write(&ctx.store, layer, &files, tarballs, sde, key, tee, &extend)?)
                        })?,
                    }
                }
            }
        };
        spinner.finish_and_clear();
        let verb = if built.cached { "Fresh" } else { "Built" };
        let info = &built.info;
        ctx.printer.status(verb, format_args!("layer {} {} ({} entries)", layer.name, info.diff_id, info.entries));
        layers.push((layer.name.to_string(), built));
    }
    let mut per_machine = None;
    let mut below_configure = None;
    if recipe.configure.maintainer_scripts {
        let venvs = recipe
            .layers
            .iter()
            .map(|l| crate::python::layers::venv(&resolved.lockfile, recipe, l))
            .filter_map(Result::transpose)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (built, record, image) = configure_layer(ctx, recipe, &layers, &venvs)?;
        below_configure = image;
        warn_per_machine(ctx, &record);
        per_machine = Some(record);
        let verb = if built.cached { "Fresh" } else { "Configured" };
        let info = &built.info;
        ctx.printer.status(verb, format_args!("layer {LAYER_NAME} {} ({} entries)", info.diff_id, info.entries));
        layers.push((LAYER_NAME.to_owned(), built));
    }
    Ok(BuiltLayers {
        layers,
        streamed,
        replaced: packages.replaced,
        per_machine,
        below_configure,
        caching: caching.into_inner(),
    })
}

/// What a configure run's per-machine record should make a user look at.
fn warn_per_machine(ctx: &Context, record: &per_machine::Record) {
    for name in &record.unmatched {
        ctx.printer.status(
            "Warning",
            format_args!("`[[configure.per-machine]]` `{name}` matched nothing the maintainer scripts made"),
        );
    }
    if !record.first_boot.is_empty() && record.runner.starts_with("none") {
        ctx.printer
            .status("Warning", format_args!("nothing in this image runs its first-boot actions: {}", record.runner));
    }
}

/// The rootfs archives (streamed already, cached, or merged from the layers now), then the
/// OCI layout and the LXC and Incus formats, outputs in name order.
fn assemble(
    ctx: &Context,
    recipe: &crate::recipe::Recipe,
    formats: &[Format],
    archives: &[rootfs::Archive],
    merged: &rootfs::MergedLayers<'_>,
    streamed: Option<Assembled>,
) -> anyhow::Result<Assembled> {
    let layers = merged.layers();
    let spinner = ctx.printer.spinner("root filesystem".into());
    let (mut assembled, cached) = match streamed {
        Some(done) => (done, false),
        None => rootfs::assemble(&ctx.store, merged, archives)?,
    };
    spinner.finish_and_clear();
    ctx.printer.status(if cached { "Fresh" } else { "Assembled" }, format_args!("rootfs {}", assembled.rootfs.diff_id));
    if formats.contains(&Format::Oci) {
        assembled.outputs.extend(crate::oci::write(&ctx.store, recipe, layers)?);
        ctx.printer.status("Assembled", "OCI image layout");
    }
    for (format, flavour) in [(Format::Lxc, crate::lxc::Flavour::Lxc), (Format::Incus, crate::lxc::Flavour::Incus)] {
        if formats.contains(&format) {
            assembled.outputs.extend(crate::lxc::write(&ctx.store, recipe, flavour, merged)?);
        }
    }
    assembled.outputs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(assembled)
}

/// The candidate id and the folder's documents: the manifest, the two SBOMs and, with keys, the
/// signed statement whose subjects are every file of the folder but the envelope, by name
/// (the same list `candidate sign` hashes from a published folder).
fn documents(
    manifest: &Manifest,
    assembled: &Assembled,
    keys: &[PrivateKey],
) -> (Digest, Vec<(&'static str, Vec<u8>)>) {
    let manifest_bytes = manifest.to_bytes();
    let id = Digest::of(&manifest_bytes);
    let sbom = sbom::render(manifest, &id);
    let cyclonedx = crate::cyclonedx::render(manifest, &id);
    let mut documents = vec![(MANIFEST, manifest_bytes), (SBOM, sbom), (CYCLONEDX, cyclonedx)];
    if !keys.is_empty() {
        let mut subjects: Vec<Subject> = assembled
            .outputs
            .iter()
            .map(|o| Subject { name: o.name.clone(), sha256: o.sha256 })
            .chain(
                documents.iter().map(|(name, bytes)| Subject { name: (*name).to_owned(), sha256: Digest::of(bytes) }),
            )
            .collect();
        subjects.sort_by(|a, b| a.name.cmp(&b.name));
        let payload = attest::statement(manifest, &subjects);
        documents.push((ENVELOPE, Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, keys).to_json()));
    }
    (id, documents)
}

/// The `configure` layer over `layers`, and what the manifest says of its per-machine state:
/// from the action cache, or by running the image's maintainer scripts in a sandbox (see
/// [`crate::debian::configure`]), then with the image they ran over (`layers` merged).
fn configure_layer(
    ctx: &Context,
    recipe: &crate::recipe::Recipe,
    layers: &[(String, layer::Built)],
    venvs: &[crate::python::venv::Venv],
) -> anyhow::Result<(layer::Built, per_machine::Record, Option<Tree>)> {
    let sde = recipe.image.source_date_epoch.seconds();
    let architecture = recipe.image.architecture.to_string();
    let diff_ids: Vec<Digest> = layers.iter().map(|(_, l)| l.info.merge_id()).collect();
    let rules = per_machine::rules(&recipe.configure.per_machine);
    let guard = recipe.configure.guard;
    let key = configure::action_key(&diff_ids, sde, &architecture, &rules, guard);
    let record_key = configure::record_key(&key);
    // Both halves or neither: a layer without its record is configured again.
    let cached_record = ctx.store.action(&record_key).and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let (Some(built), Some(record)) = (layer::lookup(&ctx.store, &key), cached_record) {
        return Ok((built, record, None));
    }
    let spinner = ctx.printer.spinner("maintainer scripts".into());
    let image = rootfs::merge(layers, sde)?;
    let scratch = configure::scratch_dir(&image, &ctx.store.root().join("tmp"));
    let instance = configure::instance_dir(&scratch)?;
    let timeout = std::time::Duration::from_secs(recipe.configure.timeout.unwrap_or(1800));
    let foreign: Vec<String> = recipe.image.foreign_architectures.iter().map(|a| a.to_string()).collect();
    let run = configure::Run {
        scratch: &scratch,
        architecture: &architecture,
        foreign: &foreign,
        sde,
        timeout,
        rules: &rules,
        guard,
        venvs,
    };
    let (tree, timings, record) = configure::configure(&image, &run, instance.path()).map_err(|e| {
        match e.downcast::<per_machine::PerMachineError>() {
            Ok(refused) => anyhow::Error::new(crate::error::CheckFailed {
                hint: Some(refused.hint()),
                message: refused.to_string(),
            }),
            Err(e) => e,
        }
    })?;
    ctx.printer.detail(
        "Configured",
        format_args!(
            "image written in {:.2} s, maintainer scripts ran in {:.2} s{}, changes read in {:.2} s, compared in {:.2} s",
            timings.materialize.as_secs_f64(),
            timings.scripts.as_secs_f64(),
            if guard { " (twice, side by side)" } else { "" },
            timings.changes.as_secs_f64(),
            timings.compare.as_secs_f64(),
        ),
    );
    let built = layer::write_tree_blob(&ctx.store, LAYER_NAME, &tree, key, &mut std::io::sink(), &|| Ok(()))?;
    ctx.store.put_action(&record_key, &serde_json::to_vec(&record).expect("a record serialises"))?;
    // The layer's bytes are in the store now; the instance goes.
    instance.close().with_context(|| format!("cannot remove the configure instance under `{}`", scratch.display()))?;
    spinner.finish_and_clear();
    Ok((built, record, Some(image)))
}

/// Where a layer being written also streams: nowhere, or — when the rootfs is that one
/// layer — the output encoders, whose result is recorded.
struct Streaming<'a> {
    ctx: &'a Context,
    archives: &'a [rootfs::Archive],
    single: bool,
    streamed: &'a mut Option<Assembled>,
}

impl Streaming<'_> {
    fn write(
        &mut self,
        write_layer: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<layer::Built>,
    ) -> anyhow::Result<layer::Built> {
        if !self.single {
            return write_layer(&mut std::io::sink());
        }
        let mut outputs = rootfs::Outputs::new(&self.ctx.store, self.archives, true)?;
        let built = write_layer(&mut outputs)?;
        let done = outputs.finish(built.info.clone())?;
        rootfs::record(&self.ctx.store, &[built.info.merge_id()], self.archives, &done)?;
        *self.streamed = Some(done);
        Ok(built)
    }
}
