//! The OCI image layout (`oci/`), for podman, skopeo, umoci and registries.
//!
//! One OCI layer per recipe layer. A runtime applies OCI layers by plain extraction, not by
//! our chroot-style merge, so each OCI layer holds what its recipe layer *changed in the
//! merged tree*, at the paths it landed on ([`Tree::merge_recording`]): a file shipped to
//! `/bin/x` over `/bin -> usr/bin` is `usr/bin/x` in the OCI layer, and a directory kept as an
//! earlier symlink is not in it at all, so extraction cannot replace that symlink. Applying
//! the layers in order gives the candidate's rootfs.
//!
//! Every JSON document is canonical (sorted keys, no whitespace); layers are gzip (or zstd,
//! with `[oci] layer-compression = "zstd"`) with the pinned settings of [`crate::compress`]; dates come from `SOURCE_DATE_EPOCH`. Each blob is
//! a store blob, linked into `oci/blobs/sha256/`.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::compress::Codec;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::layer::{self, Built};
use crate::recipe::{LayerCompression, Recipe};
use crate::rootfs::OutputFile;
use crate::sbom::rfc3339;
use crate::store::{Store, StoreError};
use crate::tar::writer::write_tree;
use crate::tree::{Node, Tree, TreeError};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("failed to merge layer `{layer}` for the OCI image")]
    Merge { layer: String, source: TreeError },
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error("failed to write the OCI layout")]
    Write(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
struct Cached {
    files: Vec<OutputFile>,
}

/// The OCI platform of a Debian architecture: (architecture, variant).
fn platform(debian: &str) -> (&str, Option<&str>) {
    match debian {
        "amd64" => ("amd64", None),
        "arm64" => ("arm64", Some("v8")),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "i386" => ("386", None),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        other => (other, None),
    }
}

/// Writes (or takes from the action cache) the OCI layout of `layers`.
pub fn write(store: &Store, recipe: &Recipe, layers: &[(String, Built)]) -> Result<Vec<OutputFile>, OciError> {
    let sde = recipe.image.source_date_epoch;
    let mut key = Hasher::new();
    key.field("candidate-oci-v1").field(layer::FORMAT_VERSION.to_le_bytes()).field(sde.to_le_bytes());
    key.field(serde_json::to_vec(&recipe.oci).expect("the OCI config serialises"));
    key.field(image_fields(recipe).to_string());
    for (name, built) in layers {
        key.field(name).field(built.info.diff_id.as_bytes());
    }
    let key = key.finish();
    if let Some(cached) = store.action(&key).and_then(|b| serde_json::from_slice::<Cached>(&b).ok()) {
        if cached.files.iter().all(|f| store.blob_size(&f.sha256) == Some(f.size)) {
            return Ok(cached.files);
        }
    }

    let mut files = Vec::new();
    let blob = |digest: &Digest| format!("oci/blobs/sha256/{}", digest.hex());
    let (layer_codec, layer_type) = match recipe.oci.layer_compression {
        LayerCompression::Gzip => (Codec::Gzip, LAYER_GZIP),
        LayerCompression::Zstd => (Codec::Zstd, LAYER_ZSTD),
    };
    let mut merged = Tree::new(sde);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (i, (name, built)) in layers.iter().enumerate() {
        let tree = layer::read(&built.info, &built.reader, (i as u64) << 40)?;
        let mut changed: Vec<(String, Node)> = Vec::new();
        merged
            .merge_recording(tree, &mut |path, node| changed.push((path.to_owned(), node.clone())))
            .map_err(|source| OciError::Merge { layer: name.clone(), source })?;
        let changed = Tree::from_entries(changed);
        let mut writer =
            HashingWriter::new(io::BufWriter::with_capacity(1 << 20, Codec::Gzip.encoder(store.writer()?)?));
        write_tree(&changed, &mut writer)?;
        let (diff_id, _, buffered) = writer.finish();
        let encoder = buffered.into_inner().map_err(|e| e.into_error())?;
        let (digest, size) = encoder.finish()?.commit()?;
        files.push(OutputFile { name: blob(&digest), sha256: digest, size, codec: layer_codec });
        descriptors.push(json!({ "mediaType": layer_type, "digest": digest, "size": size }));
        diff_ids.push(diff_id);
        history.push(json!({ "created": rfc3339(sde), "created_by": format!("candidate layer {name}") }));
    }

    let debian_architecture = recipe.image.architecture.to_string();
    let (architecture, variant) = platform(&debian_architecture);
    let oci = &recipe.oci;
    let mut runtime = serde_json::Map::new();
    let mut set = |key: &str, value: serde_json::Value, present: bool| {
        if present {
            runtime.insert(key.to_owned(), value);
        }
    };
    set("Entrypoint", json!(oci.entrypoint), !oci.entrypoint.is_empty());
    set("Cmd", json!(oci.cmd), !oci.cmd.is_empty());
    set("Env", json!(oci.env), !oci.env.is_empty());
    set("Labels", json!(oci.labels), !oci.labels.is_empty());
    set("WorkingDir", json!(oci.working_dir), oci.working_dir.is_some());
    set("User", json!(oci.user), oci.user.is_some());
    let mut config = json!({
        "architecture": architecture,
        "os": "linux",
        "created": rfc3339(sde),
        "config": runtime,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    let config = put_json(store, &config, &mut files, &blob)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": config.0, "size": config.1 },
        "layers": descriptors,
        "annotations": image_fields(recipe),
    });
    let manifest = put_json(store, &manifest, &mut files, &blob)?;
    let tag = oci.tag.clone().unwrap_or_else(|| recipe.image.version.to_string());
    let mut platform = json!({ "architecture": architecture, "os": "linux" });
    if let Some(variant) = variant {
        platform["variant"] = json!(variant);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest.0,
            "size": manifest.1,
            "platform": platform,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    put_json(store, &index, &mut files, &|_| "oci/index.json".to_owned())?;
    put_json(store, &json!({ "imageLayoutVersion": "1.0.0" }), &mut files, &|_| "oci/oci-layout".to_owned())?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files.dedup_by(|a, b| a.name == b.name);
    store.put_action(&key, &serde_json::to_vec(&Cached { files: files.clone() }).expect("outputs serialise"))?;
    Ok(files)
}

/// The `org.opencontainers.image.*` annotations of the image.
fn image_fields(recipe: &Recipe) -> serde_json::Value {
    let image = &recipe.image;
    json!({
        "org.opencontainers.image.created": rfc3339(image.source_date_epoch),
        "org.opencontainers.image.title": image.name,
        "org.opencontainers.image.version": image.version,
        "org.opencontainers.image.description": image.description,
    })
}

/// Stores a canonical JSON document and lists it at the name `name` gives its digest.
fn put_json(
    store: &Store,
    value: &serde_json::Value,
    files: &mut Vec<OutputFile>,
    name: &dyn Fn(&Digest) -> String,
) -> Result<(Digest, u64), OciError> {
    let bytes = serde_json::to_vec(value).expect("a JSON value serialises");
    let mut writer = store.writer()?;
    writer.write_all(&bytes)?;
    let (digest, size) = writer.commit()?;
    files.push(OutputFile { name: name(&digest), sha256: digest, size, codec: Codec::None });
    Ok((digest, size))
}
