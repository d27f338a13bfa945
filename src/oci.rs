//! The OCI image layout (`oci/`), for podman, skopeo, umoci and registries.
//!
//! One OCI layer per recipe layer. A runtime applies OCI layers by plain extraction, not by
//! our chroot-style merge, so each OCI layer holds what its recipe layer *changed in the
//! merged tree*, at the paths it landed on ([`Tree::merge_recording`]): a file shipped to
//! `/bin/x` over `/bin -> usr/bin` is `usr/bin/x` in the OCI layer, and a directory kept as an
//! earlier symlink is not in it at all, so extraction cannot replace that symlink. Applying
//! the layers in order gives the candidate's rootfs.
//!
//! Every JSON document is a type here ([`ImageIndex`], [`ImageManifest`], [`ImageConfig`],
//! their [`Descriptor`]s), written canonical ([`crate::document`]: sorted keys, no
//! whitespace). Layers are gzip (or zstd, with `[oci] layer-compression = "zstd"`) with the
//! pinned settings of [`crate::compress`]; a [`Layer`] is written with its compression and
//! gives its own descriptor, whose media type is derived from that same compression, so the
//! label cannot name another codec than the bytes. Dates come from `SOURCE_DATE_EPOCH`. Each
//! blob is a store blob, linked into `oci/blobs/sha256/`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compress::Codec;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::document::{self, DocumentError};
use crate::layer::{self, Built};
use crate::recipe::{LayerCompression, Recipe};
use crate::rootfs::OutputFile;
use crate::sbom::rfc3339;
use crate::store::{Store, StoreError};
use crate::tar::writer::write_tree;
use crate::tree::{Node, Tree, TreeError};

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

/// The media types of the documents and blobs we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaType {
    #[serde(rename = "application/vnd.oci.image.index.v1+json")]
    ImageIndex,
    #[serde(rename = "application/vnd.oci.image.manifest.v1+json")]
    ImageManifest,
    #[serde(rename = "application/vnd.oci.image.config.v1+json")]
    ImageConfig,
    #[serde(rename = "application/vnd.oci.image.layer.v1.tar+gzip")]
    LayerGzip,
    #[serde(rename = "application/vnd.oci.image.layer.v1.tar+zstd")]
    LayerZstd,
}

impl MediaType {
    /// The media type of a layer compressed with `compression`.
    pub fn layer(compression: LayerCompression) -> Self {
        match compression {
            LayerCompression::Gzip => MediaType::LayerGzip,
            LayerCompression::Zstd => MediaType::LayerZstd,
        }
    }

    /// The compression a layer's media type names; `None` for a document.
    pub fn layer_compression(self) -> Option<LayerCompression> {
        match self {
            MediaType::LayerGzip => Some(LayerCompression::Gzip),
            MediaType::LayerZstd => Some(LayerCompression::Zstd),
            MediaType::ImageIndex | MediaType::ImageManifest | MediaType::ImageConfig => None,
        }
    }
}

/// The output codec (with its pinned settings) of a layer compression.
fn codec(compression: LayerCompression) -> Codec {
    match compression {
        LayerCompression::Gzip => Codec::Gzip,
        LayerCompression::Zstd => Codec::Zstd,
    }
}

/// A reference to a blob: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What an image runs on, in OCI's (Go's) names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `oci/index.json`: the image manifest, tagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageIndex {
    pub schema_version: u32,
    pub media_type: MediaType,
    pub manifests: Vec<Descriptor>,
}

/// The image manifest: the config and the layers, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageManifest {
    pub schema_version: u32,
    pub media_type: MediaType,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// The image config: platform, runtime defaults, and the layers' `diff_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub created: String,
    pub config: RuntimeConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

/// The recipe's `[oci]` runtime settings; each is left out when the recipe does not set it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub created: String,
    pub created_by: String,
}

/// `oci/oci-layout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageLayout {
    pub image_layout_version: String,
}

impl Descriptor {
    /// A plain descriptor (no platform, no annotations) of the blob `(digest, size)`.
    pub fn new(media_type: MediaType, (digest, size): (Digest, u64)) -> Self {
        Descriptor { media_type, digest, size, platform: None, annotations: None }
    }
}

impl ImageIndex {
    /// Reads `oci/index.json`; the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read("OCI image index", path)
    }
}

impl ImageManifest {
    /// Reads an image manifest blob; the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read("OCI image manifest", path)
    }
}

impl ImageConfig {
    /// Reads an image config blob; the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read("OCI image config", path)
    }
}

/// One layer blob in the store. It is only made by [`Layer::write`], which encodes with the
/// codec of its compression, and it gives its own [`Layer::descriptor`], whose media type is
/// derived from that compression: the label and the bytes cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    compression: LayerCompression,
    digest: Digest,
    size: u64,
    diff_id: Digest,
}

impl Layer {
    /// Writes `tree` as a tar compressed with `compression` into the store.
    pub fn write(store: &Store, tree: &Tree, compression: LayerCompression) -> Result<Self, OciError> {
        let encoder = codec(compression).to_store(store)?;
        let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, encoder));
        write_tree(tree, &mut writer)?;
        let (diff_id, _, buffered) = writer.finish();
        let encoder = buffered.into_inner().map_err(|e| e.into_error())?;
        let (digest, size) = encoder.commit()?;
        Ok(Layer { compression, digest, size, diff_id })
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(MediaType::layer(self.compression), (self.digest, self.size))
    }

    /// The layer as a file of the candidate folder.
    fn output(&self) -> OutputFile {
        OutputFile {
            name: blob_name(&self.digest),
            sha256: self.digest,
            size: self.size,
            codec: codec(self.compression),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Cached {
    files: Vec<OutputFile>,
}

/// The recipe's checked values as the plain strings the OCI config holds.
fn strings<T: fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
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

/// Where a blob goes in the candidate folder.
fn blob_name(digest: &Digest) -> String {
    format!("oci/blobs/sha256/{}", digest.hex())
}

/// Writes (or takes from the action cache) the OCI layout of `layers`.
pub fn write(store: &Store, recipe: &Recipe, layers: &[(String, Built)]) -> Result<Vec<OutputFile>, OciError> {
    let sde = recipe.image.source_date_epoch.seconds();
    let mut key = Hasher::new();
    // v2: v1 entries of `layer-compression = "zstd"` layouts list gzip blobs labelled zstd.
    // v3: the architecture, which the config and the index's platform say, is in the key (an
    // image of files only, built for another architecture, took the first one's layout).
    key.field("candidate-oci-v3").field(layer::FORMAT_VERSION.to_le_bytes()).field(sde.to_le_bytes());
    key.field(recipe.image.architecture.as_str());
    key.field(serde_json::to_vec(&recipe.oci).expect("the OCI config serialises"));
    // What the codec does (levels, crate versions, pieces), which the manifest describes too.
    key.field(codec(recipe.oci.layer_compression).canonical());
    key.field(document::to_canonical(&annotations(recipe)));
    for (name, built) in layers {
        key.field(name).field(built.info.merge_id().as_bytes());
    }
    let key = key.finish();
    if let Some(cached) = store.action(&key).and_then(|b| serde_json::from_slice::<Cached>(&b).ok()) {
        if cached.files.iter().all(|f| store.blob_size(&f.sha256) == Some(f.size)) {
            return Ok(cached.files);
        }
    }

    let mut files = Vec::new();
    let mut merged = Tree::new(sde);
    let mut oci_layers = Vec::new();
    let mut history = Vec::new();
    for (i, (name, built)) in layers.iter().enumerate() {
        let tree = layer::read(&built.info, &built.reader, (i as u64) << 40)?;
        let mut changed: Vec<(String, Node)> = Vec::new();
        merged
            .merge_recording(tree, &mut |path, node| changed.push((path.to_owned(), node.clone())))
            .map_err(|source| OciError::Merge { layer: name.clone(), source })?;
        let oci_layer = Layer::write(store, &Tree::from_entries(changed), recipe.oci.layer_compression)?;
        files.push(oci_layer.output());
        oci_layers.push(oci_layer);
        history.push(History { created: rfc3339(sde), created_by: format!("candidate layer {name}") });
    }

    let debian_architecture = recipe.image.architecture.to_string();
    let (architecture, variant) = platform(&debian_architecture);
    let oci = &recipe.oci;
    let config = ImageConfig {
        architecture: architecture.to_owned(),
        variant: variant.map(str::to_owned),
        os: "linux".to_owned(),
        created: rfc3339(sde),
        config: RuntimeConfig {
            entrypoint: strings(&oci.entrypoint),
            cmd: strings(&oci.cmd),
            env: strings(&oci.env),
            labels: oci.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            working_dir: oci.working_dir.as_ref().map(ToString::to_string),
            user: oci.user.as_ref().map(ToString::to_string),
        },
        rootfs: RootFs { kind: "layers".to_owned(), diff_ids: oci_layers.iter().map(|l| l.diff_id).collect() },
        history,
    };
    let config = Descriptor::new(MediaType::ImageConfig, put_json(store, &config, &mut files, &blob_name)?);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MediaType::ImageManifest,
        config,
        layers: oci_layers.iter().map(Layer::descriptor).collect(),
        annotations: annotations(recipe),
    };
    let manifest = Descriptor::new(MediaType::ImageManifest, put_json(store, &manifest, &mut files, &blob_name)?);
    // The recipe checked that the version is a valid `ref.name` when there is no tag.
    let tag = oci.tag.as_ref().map_or_else(|| recipe.image.version.to_string(), ToString::to_string);
    let index = ImageIndex {
        schema_version: 2,
        media_type: MediaType::ImageIndex,
        manifests: vec![Descriptor {
            platform: Some(Platform {
                architecture: architecture.to_owned(),
                os: "linux".to_owned(),
                variant: variant.map(str::to_owned),
            }),
            annotations: Some(BTreeMap::from([("org.opencontainers.image.ref.name".to_owned(), tag)])),
            ..manifest
        }],
    };
    put_json(store, &index, &mut files, &|_| "oci/index.json".to_owned())?;
    let layout = ImageLayout { image_layout_version: "1.0.0".to_owned() };
    put_json(store, &layout, &mut files, &|_| "oci/oci-layout".to_owned())?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files.dedup_by(|a, b| a.name == b.name);
    store.put_action(&key, &serde_json::to_vec(&Cached { files: files.clone() }).expect("outputs serialise"))?;
    Ok(files)
}

/// The `org.opencontainers.image.*` annotations of the image.
fn annotations(recipe: &Recipe) -> BTreeMap<String, String> {
    let image = &recipe.image;
    BTreeMap::from([
        ("org.opencontainers.image.created".to_owned(), rfc3339(image.source_date_epoch.seconds())),
        ("org.opencontainers.image.title".to_owned(), image.name.to_string()),
        ("org.opencontainers.image.version".to_owned(), image.version.to_string()),
        ("org.opencontainers.image.description".to_owned(), image.description.clone()),
    ])
}

/// Stores `document` as canonical JSON and lists it at the name `name` gives its digest;
/// returns the digest and size.
fn put_json<T: Serialize>(
    store: &Store,
    document: &T,
    files: &mut Vec<OutputFile>,
    name: &dyn Fn(&Digest) -> String,
) -> Result<(Digest, u64), OciError> {
    let bytes = document::to_canonical(document);
    let mut writer = store.writer()?;
    writer.write_all(&bytes)?;
    let (digest, size) = writer.commit()?;
    files.push(OutputFile { name: name(&digest), sha256: digest, size, codec: Codec::None });
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's OCI documents as built at the commit that typed them (their digests are
    /// pinned through `oci/index.json` in `tests/cli/determinism.rs`).
    const INDEX: &[u8] = include_bytes!("../tests/data/example.oci-index.json");
    const MANIFEST: &[u8] = include_bytes!("../tests/data/example.oci-manifest.json");
    const CONFIG: &[u8] = include_bytes!("../tests/data/example.oci-config.json");

    fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        document::parse("OCI document", Path::new("fixture"), bytes).unwrap()
    }

    #[test]
    fn the_example_documents_round_trip_to_the_same_bytes() {
        let index: ImageIndex = parse(INDEX);
        assert!(document::to_canonical(&index) == INDEX);
        let manifest: ImageManifest = parse(MANIFEST);
        assert!(document::to_canonical(&manifest) == MANIFEST);
        let config: ImageConfig = parse(CONFIG);
        assert!(document::to_canonical(&config) == CONFIG);
        // The chain of digests holds: index -> manifest -> config.
        assert_eq!(index.manifests[0].digest, Digest::of(MANIFEST));
        assert_eq!(manifest.config.digest, Digest::of(CONFIG));
        assert_eq!(manifest.layers.len(), config.rootfs.diff_ids.len());
        insta::assert_json_snapshot!("example_oci_documents", (index, manifest, config));
    }

    /// A layer is labelled with the codec it was written with: its blob starts with that
    /// codec's magic and decodes, with that codec, to its diff_id.
    #[test]
    fn a_layer_is_written_with_the_codec_its_media_type_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let etc = Node { implicit: false, ..Node::implicit_directory(1_700_000_000) };
        let tree =
            Tree::from_entries(vec![(String::new(), Node::implicit_directory(1_700_000_000)), ("etc".to_owned(), etc)]);
        for (compression, media_type, magic) in [
            (LayerCompression::Gzip, MediaType::LayerGzip, &[0x1f, 0x8b][..]),
            (LayerCompression::Zstd, MediaType::LayerZstd, &[0x28, 0xb5, 0x2f, 0xfd][..]),
        ] {
            let layer = Layer::write(&store, &tree, compression).unwrap();
            let descriptor = layer.descriptor();
            assert_eq!(descriptor.media_type, media_type);
            assert_eq!(descriptor.media_type.layer_compression(), Some(compression));
            let blob = fs_err::read(store.blob_path(&descriptor.digest)).unwrap();
            assert!(blob.starts_with(magic), "{compression:?}: the blob starts {:02x?}", &blob[..4]);
            let plain: Vec<u8> = match compression {
                LayerCompression::Gzip => {
                    let mut out = Vec::new();
                    io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut out).unwrap();
                    out
                }
                LayerCompression::Zstd => zstd::decode_all(&blob[..]).unwrap(),
            };
            assert_eq!(Digest::of(&plain), layer.diff_id);
            assert_eq!(layer.output().codec, codec(compression));
        }
    }
}
