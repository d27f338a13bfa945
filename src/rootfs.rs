//! Assembling the root filesystem and its output archives.
//!
//! The layers are merged in recipe order ([`Tree::merge`]: later layers win, paths resolve
//! through earlier symlinks inside the image) and the merged tree is serialised once; that
//! one stream feeds every requested output encoder at the same time, so the rootfs is never
//! written out uncompressed unless `rootfs.tar` is asked for. A rootfs made of one layer *is*
//! that layer — the merge of a single self-consistent layer changes nothing — so its bytes
//! are streamed straight from the layer's blob and its `diff_id` is the layer's.
//!
//! Outputs are blobs in the store like everything else, cached by an action key over the
//! layers' `diff_id`s and the codecs' settings, and linked into `dist/` by the build.

use std::io::{self, BufReader, Write};

use serde::{Deserialize, Serialize};

use crate::compress::{Codec, StoreEncoder};
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::layer::{self, Built, LayerError, LayerInfo};
use crate::recipe::{Format, IncusRootfs, Recipe};
use crate::store::{Store, StoreError};
use crate::tar::reader::ReadAt;
use crate::tar::writer::write_tree;
use crate::tree::{Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to merge layer `{layer}` into the root filesystem")]
    Merge { layer: String, source: TreeError },
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("failed to write the root filesystem archives")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The merged root filesystem's identity and its output files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assembled {
    pub rootfs: LayerInfo,
    pub outputs: Vec<OutputFile>,
}

/// One file of a candidate folder (`name` may have folders: `oci/blobs/sha256/…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    /// How the file was compressed, for the manifest (`None` for plain files).
    pub codec: Codec,
}

/// A rootfs archive to write: its file name in the candidate folder and its codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub name: String,
    pub codec: Codec,
}

/// The rootfs archives `formats` call for. Formats that share an encoding share one encoder
/// (`incus` uses `rootfs.tar.xz`; `proxmox` is the zstd rootfs under its own name). `lxc`
/// has a rootfs of its own, with LXC's name templates in it ([`crate::lxc`]).
pub fn archives(formats: &[Format], recipe: &Recipe) -> Vec<Archive> {
    let mut out: Vec<Archive> = Vec::new();
    for format in formats {
        let (name, codec) = match format {
            Format::RootfsTar => ("rootfs.tar".to_owned(), Codec::None),
            Format::RootfsTarGz => ("rootfs.tar.gz".to_owned(), Codec::Gzip),
            Format::RootfsTarXz => ("rootfs.tar.xz".to_owned(), Codec::Xz),
            Format::RootfsTarZst => ("rootfs.tar.zst".to_owned(), Codec::Zstd),
            Format::Incus => match recipe.lxc.incus_rootfs {
                IncusRootfs::Xz => ("rootfs.tar.xz".to_owned(), Codec::Xz),
                IncusRootfs::Zstd => ("rootfs.tar.zst".to_owned(), Codec::Zstd),
            },
            Format::Proxmox => (recipe.proxmox_name(), Codec::Zstd),
            Format::Oci | Format::Lxc => continue,
        };
        if !out.iter().any(|a| a.name == name) {
            out.push(Archive { name, codec });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn action_key(diff_ids: &[Digest], archives: &[Archive]) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-rootfs").field(layer::FORMAT_VERSION.to_le_bytes());
    for diff_id in diff_ids {
        h.field(diff_id.as_bytes());
    }
    for archive in archives {
        h.field(&archive.name);
        // The manifest's canonical description of the codec, as the key's bytes have always been.
        h.field(archive.codec.canonical());
    }
    h.finish()
}

/// The outputs of the rootfs made of these layers, if the action cache has them.
pub fn cached(store: &Store, diff_ids: &[Digest], archives: &[Archive]) -> Option<Assembled> {
    let done: Assembled = serde_json::from_slice(&store.action(&action_key(diff_ids, archives))?).ok()?;
    done.outputs.iter().all(|o| store.blob_size(&o.sha256) == Some(o.size)).then_some(done)
}

/// Records the outputs of the rootfs made of these layers.
pub fn record(store: &Store, diff_ids: &[Digest], archives: &[Archive], done: &Assembled) -> Result<(), RootfsError> {
    let bytes = serde_json::to_vec(done).expect("outputs serialise");
    Ok(store.put_action(&action_key(diff_ids, archives), &bytes)?)
}

/// One encoder per codec, fed one rootfs stream (a [`Write`]).
pub struct Outputs {
    archives: Vec<Archive>,
    sinks: Vec<(Codec, StoreEncoder)>,
    /// The rootfs is one layer's tar, so an uncompressed archive is that layer's blob.
    single_layer: bool,
}

impl Outputs {
    /// Encoders for `archives`. When the rootfs is a single layer, its uncompressed archive
    /// is that layer's blob and is not written again.
    pub fn new(store: &Store, archives: &[Archive], single_layer: bool) -> Result<Self, RootfsError> {
        let mut sinks: Vec<(Codec, StoreEncoder)> = Vec::new();
        for archive in archives {
            if (archive.codec == Codec::None && single_layer) || sinks.iter().any(|(c, _)| *c == archive.codec) {
                continue;
            }
            sinks.push((archive.codec, archive.codec.to_store(store)?));
        }
        Ok(Outputs { archives: archives.to_vec(), sinks, single_layer })
    }

    /// Finishes every encoder and stores its output; `rootfs` is what was streamed.
    pub fn finish(self, rootfs: LayerInfo) -> Result<Assembled, RootfsError> {
        let mut encoded = Vec::new();
        for (codec, encoder) in self.sinks {
            encoded.push((codec, encoder.commit()?));
        }
        if self.single_layer {
            encoded.push((Codec::None, (rootfs.diff_id, rootfs.size)));
        }
        let outputs = self
            .archives
            .into_iter()
            .filter_map(|a| {
                let &(_, (sha256, size)) = encoded.iter().find(|(c, _)| *c == a.codec)?;
                Some(OutputFile { name: a.name, sha256, size, codec: a.codec })
            })
            .collect();
        Ok(Assembled { rootfs, outputs })
    }
}

impl Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (_, sink) in &mut self.sinks {
            sink.write_all(buf)?;
        }
        Ok(buf.len())
    }

    /// Deliberately nothing: flushing an encoder mid-stream ends a compressed block early,
    /// so the output bytes would depend on where callers happen to flush. Each stream is
    /// ended exactly once, by [`Outputs::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every format of the merged layers (merged now unless they were already), or takes
/// them from the action cache.
pub fn assemble(
    store: &Store,
    merged: &MergedLayers<'_>,
    archives: &[Archive],
) -> Result<(Assembled, bool), RootfsError> {
    let layers = merged.layers;
    let diff_ids: Vec<Digest> = layers.iter().map(|(_, l)| l.info.merge_id()).collect();
    if let Some(done) = cached(store, &diff_ids, archives) {
        return Ok((done, true));
    }
    let mut outputs = Outputs::new(store, archives, layers.len() == 1)?;
    let rootfs = match layers {
        // A one-layer rootfs is that layer, byte for byte.
        [(_, only)] => {
            let mut bytes = BufReader::with_capacity(1 << 20, ReadAt::new(only.reader.clone()));
            io::copy(&mut bytes, &mut outputs).map_err(RootfsError::Write)?;
            only.info.clone()
        }
        _ => {
            let tree = merged.tree()?;
            let mut hashing = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &mut outputs));
            let written = write_tree(tree, &mut hashing).map_err(RootfsError::Write)?;
            let (diff_id, size, buffered) = hashing.finish();
            buffered.into_inner().map_err(|e| RootfsError::Write(e.into_error()))?;
            LayerInfo { diff_id, size, entries: written.entries, implicit: Vec::new() }
        }
    };
    let done = outputs.finish(rootfs)?;
    record(store, &diff_ids, archives, &done)?;
    Ok((done, false))
}

/// Merges layers in order into one tree, over an empty root dated `sde`.
pub fn merge(layers: &[(String, Built)], sde: u64) -> Result<Tree, RootfsError> {
    merge_onto(Tree::new(sde), layers, 0)
}

/// Merges `layers`, the recipe's layers from index `first` on, onto `tree` (the merge of
/// those below `first`).
fn merge_onto(mut tree: Tree, layers: &[(String, Built)], first: usize) -> Result<Tree, RootfsError> {
    for (i, (name, built)) in layers.iter().enumerate() {
        // Hard-link groups are numbered per layer; give each layer its own range.
        let layer = layer::read(&built.info, &built.reader, ((first + i) as u64) << 40)?;
        tree.merge(layer).map_err(|source| RootfsError::Merge { layer: name.clone(), source })?;
    }
    Ok(tree)
}

/// A build's layers merged into one tree, made at most once: the rootfs archives and LXC's
/// own rootfs both start from it. In configure mode it starts from the image the maintainer
/// scripts ran over (every layer but the configure layer, merged already), so the package
/// layers are not read back from the store again.
pub struct MergedLayers<'a> {
    layers: &'a [(String, Built)],
    sde: u64,
    /// The merge of every layer but the last, when the build has it.
    below: std::cell::Cell<Option<Tree>>,
    tree: std::cell::OnceCell<Tree>,
}

impl<'a> MergedLayers<'a> {
    /// Merged from the store when first asked for.
    pub fn new(layers: &'a [(String, Built)], sde: u64) -> Self {
        MergedLayers { layers, sde, below: std::cell::Cell::new(None), tree: std::cell::OnceCell::new() }
    }

    /// `below` is [`merge`] of every layer but the last: the last is merged onto it when the
    /// tree is first asked for, which gives what [`merge`] of them all would.
    pub fn over(layers: &'a [(String, Built)], sde: u64, below: Tree) -> Self {
        let merged = MergedLayers::new(layers, sde);
        if !layers.is_empty() {
            merged.below.set(Some(below));
        }
        merged
    }

    /// The layers.
    pub fn layers(&self) -> &'a [(String, Built)] {
        self.layers
    }

    /// The merged tree.
    pub fn tree(&self) -> Result<&Tree, RootfsError> {
        if let Some(tree) = self.tree.get() {
            return Ok(tree);
        }
        let tree = match self.below.take() {
            Some(below) => {
                let last = self.layers.len() - 1;
                merge_onto(below, &self.layers[last..], last)?
            }
            None => merge(self.layers, self.sde)?,
        };
        Ok(self.tree.get_or_init(|| tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::RecipeError;

    fn recipe(extra: &str) -> Result<Recipe, RecipeError> {
        let text = format!(
            "[image]\nname = \"demo\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\n\
             release = \"bookworm\"\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"base\"\n\
             directories = [{{ path = \"/srv\" }}]\n{extra}"
        );
        Recipe::parse(std::path::Path::new("recipes/demo.toml"), text.into_bytes())
    }

    #[test]
    fn the_incus_rootfs_is_xz_unless_the_recipe_says_zstd() {
        let of = |recipe: &Recipe, formats: &[Format]| -> Vec<(String, Vec<u8>)> {
            archives(formats, recipe).into_iter().map(|a| (a.name, a.codec.canonical())).collect()
        };
        let xz = recipe("").unwrap();
        assert_eq!(xz.lxc.incus_rootfs, IncusRootfs::Xz);
        assert_eq!(of(&xz, &[Format::Incus]), [("rootfs.tar.xz".into(), Codec::Xz.canonical())]);
        let zstd = recipe("[lxc]\nincus-rootfs = \"zstd\"\n").unwrap();
        assert_eq!(of(&zstd, &[Format::Incus]), [("rootfs.tar.zst".into(), Codec::Zstd.canonical())]);
        // Beside the default format it is that format's archive: one zstd pass for both.
        assert_eq!(of(&zstd, &[Format::Incus, Format::RootfsTarZst]).len(), 1);
        let err = recipe("[lxc]\nincus-rootfs = \"gzip\"\n").unwrap_err().to_string();
        assert!(err.contains("gzip") && err.contains("xz") && err.contains("zstd"), "{err}");
    }
}
