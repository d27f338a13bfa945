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

use crate::compress::{Codec, Encoder};
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::layer::{self, Built, LayerError, LayerInfo};
use crate::recipe::Format;
use crate::store::{BlobWriter, Store, StoreError};
use crate::tar::reader::ReadAt;
use crate::tar::writer::write_tree;
use crate::tree::{Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to merge layer `{layer}` into the root filesystem: {source}")]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub format: Format,
    pub sha256: Digest,
    pub size: u64,
}

pub fn codec(format: Format) -> Codec {
    match format {
        Format::RootfsTar => Codec::None,
        Format::RootfsTarGz => Codec::Gzip,
        Format::RootfsTarXz => Codec::Xz,
        Format::RootfsTarZst => Codec::Zstd,
    }
}

fn action_key(layers: &[(String, Built)], formats: &[Format]) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-rootfs").field(layer::FORMAT_VERSION.to_le_bytes());
    for (_, layer) in layers {
        h.field(layer.info.diff_id.as_bytes());
    }
    for format in formats {
        h.field(format.file_name());
        h.field(codec(*format).describe().map(|d| d.to_string()).unwrap_or_default());
    }
    h.finish()
}

/// Merges `layers` and writes every format, or takes them from the action cache.
pub fn assemble(
    store: &Store,
    layers: &[(String, Built)],
    formats: &[Format],
) -> Result<(Assembled, bool), RootfsError> {
    let key = action_key(layers, formats);
    if let Some(done) = store.action(&key).and_then(|b| serde_json::from_slice::<Assembled>(&b).ok()) {
        if done.outputs.iter().all(|o| store.blob_size(&o.sha256) == Some(o.size)) {
            return Ok((done, true));
        }
    }

    // Encoders for every format; `rootfs.tar` of a single layer is that layer's blob.
    let single = match layers {
        [(_, only)] => Some(only),
        _ => None,
    };
    let mut sinks: Vec<(Format, Encoder<'static, BlobWriter>)> = Vec::new();
    for &format in formats {
        if format == Format::RootfsTar && single.is_some() {
            continue;
        }
        sinks.push((format, codec(format).encoder(store.writer()?).map_err(RootfsError::Write)?));
    }
    let mut fanout = Fanout(sinks);

    let rootfs = match &single {
        Some(only) => {
            let mut bytes = BufReader::with_capacity(1 << 20, ReadAt::new(only.reader.clone()));
            io::copy(&mut bytes, &mut fanout).map_err(RootfsError::Write)?;
            only.info.clone()
        }
        None => {
            let tree = merge(layers)?;
            let mut hashing = HashingWriter::new(&mut fanout);
            let written = write_tree(&tree, &mut hashing).map_err(RootfsError::Write)?;
            let (diff_id, size, _) = hashing.finish();
            LayerInfo { diff_id, size, entries: written.entries }
        }
    };

    let mut outputs = Vec::new();
    for (format, encoder) in fanout.0 {
        let (sha256, size) = encoder.finish().map_err(RootfsError::Write)?.commit()?;
        outputs.push(OutputFile { format, sha256, size });
    }
    if let (Some(only), true) = (single, formats.contains(&Format::RootfsTar)) {
        outputs.push(OutputFile { format: Format::RootfsTar, sha256: only.info.diff_id, size: only.info.size });
    }
    outputs.sort_by_key(|o| o.format.file_name());
    let done = Assembled { rootfs, outputs };
    store.put_action(&key, &serde_json::to_vec(&done).expect("outputs serialise"))?;
    Ok((done, false))
}

/// Merges layers in order into one tree.
pub fn merge(layers: &[(String, Built)]) -> Result<Tree, RootfsError> {
    let mut tree = Tree::new(0);
    for (i, (name, built)) in layers.iter().enumerate() {
        // Hard-link groups are numbered per layer; give each layer its own range.
        let layer = layer::read(&built.info, &built.reader, (i as u64) << 40)?;
        tree.merge(layer).map_err(|source| RootfsError::Merge { layer: name.clone(), source })?;
    }
    Ok(tree)
}

/// Writes the same bytes to every encoder.
struct Fanout(Vec<(Format, Encoder<'static, BlobWriter>)>);

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (_, sink) in &mut self.0 {
            sink.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        for (_, sink) in &mut self.0 {
            sink.flush()?;
        }
        Ok(())
    }
}
