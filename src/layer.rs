//! Layers: one recipe `[[layer]]` becomes one deterministic tar in the store.
//!
//! A layer's entries are gathered into a [`Tree`] in a fixed order — `directories`, then
//! `files`, then `tarballs`, then `symlinks`, each list in recipe order — under the
//! within-layer rules of [`crate::tree`], then serialised by [`crate::tar::writer`]. The tar's
//! sha256 is the layer's identity (its OCI `diff_id`).
//!
//! Tarball entries are parsed in memory and checked before they are placed: a path with a
//! `..` component is refused; an absolute path (`/etc/x`) is normalised under the tarball's
//! `to` like any other, as GNU tar does by default; device nodes and fifos are refused; a hard
//! link must name an earlier regular file of the same tarball. Their content is never written
//! to the host as files: a plain tarball's bytes are referenced in place in its store blob; a
//! compressed one is decompressed once into an anonymous spool file.
//!
//! Layers are cached by an action key over everything that determines their bytes: the
//! format version, `SOURCE_DATE_EPOCH`, the layer definition and the digests of its inputs.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compress::{self, Encoding};
use crate::digest::{Digest, Hasher};
use crate::local::{LocalKind, LocalTree};
use crate::recipe::{ImagePath, Layer, Owner, TarballSpec};
use crate::store::{PendingBlob, Store, StoreError};
use crate::tar::reader::{EntryType, Limits, ReadError, TarReader};
use crate::tar::writer::write_tree;
use crate::tree::{Content, Kind, Node, Tree, TreeError};

/// Bumped whenever the bytes of a layer for the same inputs would change.
pub const FORMAT_VERSION: u32 = 1;

/// Bumped whenever what the action cache records about a layer changes (not its bytes), so
/// that older entries are not misread.
const CACHE_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("tarball `{tarball}`, entry `{entry}`: {message}")]
    Entry { tarball: String, entry: String, message: String },
    #[error("tarball `{tarball}` cannot be read")]
    Tarball { tarball: String, source: ReadError },
    #[error("layer `{layer}`")]
    Tree { layer: String, source: TreeError },
    #[error("layer `{layer}`: the local input `{}` changed while the layer was built; build again", root.display())]
    Changed { layer: String, root: std::path::PathBuf, source: Option<crate::local::LocalError> },
    #[error("layer `{layer}`: failed to write the layer")]
    Write { layer: String, source: std::io::Error },
    #[error("layer `{layer}`")]
    Extend { layer: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("tarball `{tarball}` cannot be used")]
    Input { tarball: String, source: Box<StoreError> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A layer as built: its identity and shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
    /// Directories the layer holds only because something was placed inside them. The tar
    /// records them like any directory (extractors need parents); this list, kept in the
    /// action cache beside the blob, lets a merge know they change nothing that exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implicit: Vec<String>,
}

impl LayerInfo {
    /// What a merge over this layer depends on: its tar and which of its folders are implicit
    /// (one over an existing folder leaves it alone; an explicit one replaces its metadata).
    /// The keys of the steps that merge layers (rootfs archives, OCI, LXC, configure) hash this,
    /// not the `diff_id` alone: two layers with one tar can merge differently.
    pub fn merge_id(&self) -> Digest {
        let mut h = Hasher::new();
        h.field("candidate-merge").field(self.diff_id.as_bytes()).field((self.implicit.len() as u64).to_le_bytes());
        for path in &self.implicit {
            h.field(path);
        }
        h.finish()
    }
}

/// A local `files` input, scanned and digested.
pub struct FilesInput<'a> {
    pub tree: &'a LocalTree,
    pub digest: Digest,
}

/// A tarball input, held in the store.
pub struct TarballInput {
    pub origin: String,
    pub blob: Digest,
}

/// The action-cache key of a layer.
pub fn action_key(layer: &Layer, files: &[FilesInput<'_>], tarballs: &[TarballInput], sde: u64) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-layer").field(FORMAT_VERSION.to_le_bytes()).field(CACHE_VERSION.to_le_bytes());
    h.field(sde.to_le_bytes());
    for d in &layer.directories {
        h.field("dir").field(d.path.as_rel()).field(d.mode.0.to_le_bytes()).field(d.owner.to_string());
    }
    for (spec, input) in layer.files.iter().zip(files) {
        h.field("files").field(spec.to.as_rel()).field(input.digest.as_bytes()).field(spec.owner.to_string());
        h.field(spec.mode.map_or(String::new(), |m| format!("{:o}", m.0)));
    }
    for (spec, input) in layer.tarballs.iter().zip(tarballs) {
        h.field("tarball")
            .field(input.blob.as_bytes())
            .field(spec.to.as_rel())
            .field(spec.strip_components.to_le_bytes());
        h.field(spec.owner.map_or(String::new(), |o| o.to_string()));
    }
    for s in &layer.symlinks {
        h.field("symlink").field(s.path.as_rel()).field(&s.target).field(s.owner.to_string());
    }
    h.finish()
}

/// A layer ready to be read: found in the action cache, or just built — in which case its
/// blob may still be being made durable (see [`Built::finish`]).
pub struct Built {
    pub info: LayerInfo,
    pub cached: bool,
    /// The layer's bytes, readable whether or not the blob is named yet.
    pub reader: Arc<File>,
    pending: Option<(PendingBlob, Digest)>,
}

impl Built {
    /// Waits for the blob to be durable, then records the action-cache entry that names it.
    pub fn finish(self, store: &Store) -> Result<LayerInfo, LayerError> {
        if let Some((blob, key)) = self.pending {
            blob.wait()?;
            let bytes = serde_json::to_vec(&self.info).expect("layer info serialises");
            store.write_atomic(&info_path(store, &self.info.diff_id), &bytes)?;
            store.put_action(&key, &bytes)?;
        }
        Ok(self.info)
    }
}

/// Where the store keeps what it knows of a layer by its `diff_id` (its implicit
/// directories, which its tar alone does not say), so a layer named in a manifest can be
/// read back as it was merged.
fn info_path(store: &Store, diff_id: &Digest) -> std::path::PathBuf {
    store.root().join("layers").join(format!("{}.json", diff_id.hex()))
}

/// A stored layer's info by `diff_id`, if the store built it and still holds its blob.
pub fn stored(store: &Store, diff_id: &Digest) -> Option<LayerInfo> {
    let info: LayerInfo = serde_json::from_slice(&fs_err::read(info_path(store, diff_id)).ok()?).ok()?;
    (store.blob_size(diff_id) == Some(info.size)).then_some(info)
}

/// The layer from the action cache, if it is there and its blob is intact.
pub fn lookup(store: &Store, key: &Digest) -> Option<Built> {
    let info: LayerInfo = serde_json::from_slice(&store.action(key)?).ok()?;
    let file = fs_err::File::open(store.blob_path(&info.diff_id)).ok()?.into_parts().0;
    let intact = file.metadata().is_ok_and(|m| m.len() == info.size);
    intact.then(|| Built { info, cached: true, reader: Arc::new(file), pending: None })
}

/// Returns the layer from the action cache, or builds it.
pub fn build(
    store: &Store,
    layer: &Layer,
    files: &[FilesInput<'_>],
    tarballs: &[TarballInput],
    sde: u64,
) -> Result<Built, LayerError> {
    let key = action_key(layer, files, tarballs, sde);
    match lookup(store, &key) {
        Some(built) => Ok(built),
        None => write(store, layer, files, tarballs, sde, key, &mut io::sink(), &Ok),
    }
}

/// What the layer's own entries leave to others (its `python` venv): applied to the tree of
/// its entries before it is serialised (`&Ok` for none).
pub type Extend<'a> = dyn Fn(Tree) -> anyhow::Result<Tree> + 'a;

/// Builds the layer (whose action key is `key`), streaming its tar to the store and to
/// `tee` at once: a one-layer rootfs is its layer, so its outputs can be encoded in the same
/// pass, with the layer's disk writes overlapping the encoders' work.
#[allow(clippy::too_many_arguments)]
pub fn write(
    store: &Store,
    layer: &Layer,
    files: &[FilesInput<'_>],
    tarballs: &[TarballInput],
    sde: u64,
    key: Digest,
    tee: &mut dyn Write,
    extend: &Extend<'_>,
) -> Result<Built, LayerError> {
    let tree = gather(store, layer, files, tarballs, sde)?;
    let tree = extend(tree).map_err(|e| LayerError::Extend { layer: layer.name.to_string(), source: e.into() })?;
    let unchanged = || {
        for input in files {
            let changed =
                |source| LayerError::Changed { layer: layer.name.to_string(), root: input.tree.root.clone(), source };
            if !input.tree.unchanged().map_err(|e| changed(Some(e)))? {
                return Err(changed(None));
            }
        }
        Ok(())
    };
    write_tree_blob(store, layer.name.as_str(), &tree, key, tee, &unchanged)
}

/// Serialises a layer's tree into the store (and `tee`), checking `unchanged` between the
/// last byte and the commit (local inputs must not have changed while they were read).
pub fn write_tree_blob(
    store: &Store,
    layer: &str,
    tree: &Tree,
    key: Digest,
    tee: &mut dyn Write,
    unchanged: &dyn Fn() -> Result<(), LayerError>,
) -> Result<Built, LayerError> {
    // Tar headers and padding are small writes; batching them keeps the hashers and the
    // encoders on large buffers (per-call overhead is real at 50k files).
    let mut writer = io::BufWriter::with_capacity(1 << 20, Tee(store.writer()?, tee));
    let write_error = |source| LayerError::Write { layer: layer.to_owned(), source };
    let written = write_tree(tree, &mut writer).map_err(write_error)?;
    let writer = writer.into_inner().map_err(|e| write_error(e.into_error()))?;
    unchanged()?;
    let blob = writer.0.commit_in_background()?;
    let implicit = tree.iter().filter(|(_, n)| n.implicit).map(|(p, _)| p.clone()).collect();
    let info = LayerInfo { diff_id: blob.digest, size: blob.size, entries: written.entries, implicit };
    Ok(Built { info, cached: false, reader: blob.reader.clone(), pending: Some((blob, key)) })
}

/// Writes to a blob and a second sink.
struct Tee<'a>(crate::store::BlobWriter, &'a mut dyn Write);

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

fn gather(
    store: &Store,
    layer: &Layer,
    files: &[FilesInput<'_>],
    tarballs: &[TarballInput],
    sde: u64,
) -> Result<Tree, LayerError> {
    let tree_error = |source| LayerError::Tree { layer: layer.name.to_string(), source };
    let mut tree = Tree::new(sde);
    let node = |kind, mode, owner: Owner| Node {
        implicit: false,
        kind,
        mode,
        uid: owner.uid,
        gid: owner.gid,
        mtime: sde,
        xattrs: Default::default(),
    };

    for d in &layer.directories {
        tree.insert(d.path.as_rel(), node(Kind::Directory, d.mode.0, d.owner)).map_err(tree_error)?;
    }
    for (spec, input) in layer.files.iter().zip(files) {
        for entry in &input.tree.entries {
            let rel = ImagePath::from_rel(&entry.rel).expect("scanned paths have no `..`");
            let dest = spec.to.join(&rel);
            let n = match &entry.kind {
                LocalKind::Directory => node(Kind::Directory, 0o755, spec.owner),
                LocalKind::File { size, executable } => {
                    let mode = spec.mode.map_or(if *executable { 0o755 } else { 0o644 }, |m| m.0);
                    let content = Content::Host(Arc::new(input.tree.host_path(entry)));
                    node(Kind::File { size: *size, content, link_group: None }, mode, spec.owner)
                }
                LocalKind::Symlink { target } => node(Kind::Symlink { target: target.clone() }, 0o777, spec.owner),
            };
            tree.insert(dest.as_rel(), n).map_err(tree_error)?;
        }
    }
    for (spec, input) in layer.tarballs.iter().zip(tarballs) {
        add_tarball(store, &mut tree, spec, input, sde)?;
    }
    for s in &layer.symlinks {
        tree.insert(s.path.as_rel(), node(Kind::Symlink { target: s.target.to_string() }, 0o777, s.owner))
            .map_err(tree_error)?;
    }
    Ok(tree)
}

/// Where a tarball's file contents can be read back from.
enum Backing {
    /// The tarball is plain: content is read in place from its blob.
    InPlace(Arc<File>),
    /// Decompressed content is appended to an anonymous temporary file.
    Spool { file: Arc<File>, writer: BufWriter<File>, len: u64 },
}

/// Adds one tarball's entries to `tree`, under its `to` with `strip-components`, `owner` and
/// the epoch applied.
///
/// Long by design: one streaming pass over an untrusted archive — decode, validate each entry,
/// place it, keep its content where it can be read back — with the backing chosen up front.
fn add_tarball(
    store: &Store,
    tree: &mut Tree,
    spec: &TarballSpec,
    input: &TarballInput,
    sde: u64,
) -> Result<(), LayerError> {
    let tarball = input.origin.clone();
    let io_error =
        |source: std::io::Error| LayerError::Tarball { tarball: tarball.clone(), source: ReadError::Io(source) };
    // Proved against its pin here, where it is used, not only when it was fetched.
    let blob = store
        .open_verified(&input.blob)
        .map_err(|source| LayerError::Input { tarball: tarball.clone(), source: Box::new(source) })?;
    let (encoding, decoded) = compress::decoder(blob.try_clone().map_err(io_error)?).map_err(io_error)?;
    let mut backing = if encoding == Encoding::Plain {
        Backing::InPlace(Arc::new(blob))
    } else {
        let spool = tempfile::tempfile_in(store.root().join("tmp")).map_err(io_error)?;
        let writer = BufWriter::with_capacity(1 << 20, spool.try_clone().map_err(io_error)?);
        Backing::Spool { file: Arc::new(spool), writer, len: 0 }
    };
    let mut reader = TarReader::new(BufReader::with_capacity(1 << 20, decoded), Limits::default());
    // Regular files of this tarball by destination, for hard links: (size, content, group).
    let mut files: std::collections::HashMap<String, (u64, Content, u64)> = Default::default();
    let mut next_group = 0u64;

    loop {
        let entry = match reader.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(source) => return Err(LayerError::Tarball { tarball, source }),
        };
        let fail = |message: String| LayerError::Entry { tarball: tarball.clone(), entry: entry.path.clone(), message };
        let Some(dest) = map_path(&entry.path, spec).map_err(|e| fail(e.to_string()))? else { continue };
        let owner = spec.owner.unwrap_or(Owner { uid: entry.uid, gid: entry.gid });
        let kind = match entry.kind {
            EntryType::Directory => Kind::Directory,
            EntryType::Symlink => Kind::Symlink { target: entry.link.clone() },
            EntryType::File => {
                let content = match &mut backing {
                    Backing::InPlace(file) => Content::Range { file: file.clone(), offset: entry.offset },
                    Backing::Spool { file, writer, len } => {
                        let offset = *len;
                        reader
                            .copy_content(entry.size, writer)
                            .map_err(|source| LayerError::Tarball { tarball: tarball.clone(), source })?;
                        *len += entry.size;
                        Content::Range { file: file.clone(), offset }
                    }
                };
                files.insert(dest.as_rel().to_owned(), (entry.size, content.clone(), u64::MAX));
                Kind::File { size: entry.size, content, link_group: None }
            }
            EntryType::HardLink => {
                let target = map_path(&entry.link, spec).map_err(|e| fail(e.to_string()))?;
                let found = target.as_ref().and_then(|t| files.get_mut(t.as_rel()));
                let Some((size, content, group)) = found else {
                    return Err(fail(format!(
                        "hard link to `{}`, which is not an earlier regular file of this tarball",
                        entry.link
                    )));
                };
                if *group == u64::MAX {
                    *group = next_group;
                    next_group += 1;
                    // Mark the target too, so that both names stay one inode.
                    let target = target.expect("found above");
                    if let Some(Node { kind: Kind::File { link_group, .. }, .. }) = tree.get_mut(target.as_rel()) {
                        *link_group = Some(*group);
                    }
                }
                Kind::File { size: *size, content: content.clone(), link_group: Some(*group) }
            }
            other => {
                return Err(fail(format!(
                    "it is a {}: device nodes and fifos are not allowed in tarballs",
                    other.describe()
                )))
            }
        };
        let node = Node {
            implicit: false,
            kind,
            mode: entry.mode,
            uid: owner.uid,
            gid: owner.gid,
            mtime: entry.mtime.min(sde),
            xattrs: entry.xattrs.clone(),
        };
        tree.insert(dest.as_rel(), node).map_err(|e| fail(e.to_string()))?;
    }
    reader.finish().map_err(|source| LayerError::Tarball { tarball: tarball.clone(), source })?;
    if let Backing::Spool { mut writer, .. } = backing {
        writer.flush().map_err(io_error)?;
    }
    Ok(())
}

/// A tarball member name that climbs out of its destination with `..`; [`LayerError::Entry`]
/// names the tarball and the entry.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("its path climbs with `..`; refusing it")]
struct Climbs;

/// Maps a tarball member name to its place in the image: a leading `/` is dropped (absolute
/// names are normalised under `to`), `..` is refused, `strip-components` applied. `None`
/// when stripping leaves nothing (the entry is skipped, as tar does).
fn map_path(name: &str, spec: &TarballSpec) -> Result<Option<ImagePath>, Climbs> {
    let rel = ImagePath::from_rel(name.trim_start_matches('/')).map_err(|_| Climbs)?;
    let mut components = rel.as_rel().split('/').filter(|c| !c.is_empty());
    for _ in 0..spec.strip_components {
        if components.next().is_none() {
            return Ok(None);
        }
    }
    let rest: Vec<&str> = components.collect();
    if rest.is_empty() && spec.strip_components > 0 {
        return Ok(None);
    }
    let rest = ImagePath::from_rel(&rest.join("/")).expect("components of a normalised path");
    Ok(Some(spec.to.join(&rest)))
}

/// Reads a layer back as a tree whose contents point into the layer's bytes.
pub fn read(info: &LayerInfo, blob: &Arc<File>, link_offset: u64) -> Result<Tree, LayerError> {
    let mut tree = read_tar(&info.diff_id.to_string(), blob, link_offset)?;
    for path in &info.implicit {
        if let Some(node) = tree.get_mut(path) {
            node.implicit = node.is_dir();
        }
    }
    Ok(tree)
}

/// Reads a plain tar of ours (a layer, or a rootfs archive once decompressed) with the strict
/// reader into a tree whose contents point into `blob`; hard-link groups are numbered from
/// `link_offset`. `tarball` names it in errors.
pub fn read_tar(tarball: &str, blob: &Arc<File>, link_offset: u64) -> Result<Tree, LayerError> {
    let tarball = tarball.to_owned();
    let reader = crate::tar::reader::ReadAt::new(blob.clone());
    // Small reads: between two headers, the content is sought over, not read.
    let mut reader = TarReader::seeking(BufReader::with_capacity(8 << 10, reader), Limits::default());
    let mut tree = Tree::new(0);
    let mut groups: std::collections::HashMap<String, u64> = Default::default();
    while let Some(entry) =
        reader.next_entry().map_err(|source| LayerError::Tarball { tarball: tarball.clone(), source })?
    {
        let fail = |message: String| LayerError::Entry { tarball: tarball.clone(), entry: entry.path.clone(), message };
        let path = ImagePath::from_rel(&entry.path).map_err(|e| fail(e.to_string()))?;
        let kind = match entry.kind {
            EntryType::Directory => Kind::Directory,
            EntryType::Symlink => Kind::Symlink { target: entry.link.clone() },
            // Layers are our own tars, where only a whiteout carries a `.wh.` name (inputs
            // with one are refused when gathered).
            EntryType::File
                if entry.size == 0
                    && path
                        .as_rel()
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with(crate::tree::WHITEOUT_PREFIX)) =>
            {
                Kind::Whiteout
            }
            EntryType::File => Kind::File {
                size: entry.size,
                content: Content::Range { file: blob.clone(), offset: entry.offset },
                link_group: None,
            },
            EntryType::HardLink => {
                let target = ImagePath::from_rel(&entry.link).map_err(|e| fail(e.to_string()))?;
                let next = link_offset + groups.len() as u64;
                let group = *groups.entry(target.as_rel().to_owned()).or_insert(next);
                let Some(Node { kind: Kind::File { size, content, link_group }, .. }) = tree.get_mut(target.as_rel())
                else {
                    return Err(fail("hard link to a missing file".into()));
                };
                *link_group = Some(group);
                Kind::File { size: *size, content: content.clone(), link_group: Some(group) }
            }
            other => return Err(fail(format!("unexpected {} in a layer", other.describe()))),
        };
        let node = Node {
            implicit: false,
            kind,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            xattrs: entry.xattrs.clone(),
        };
        tree.insert(path.as_rel(), node).map_err(|e| fail(e.to_string()))?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strip: u32, to: &str) -> TarballSpec {
        TarballSpec { url: "x.tar".into(), sha256: None, strip_components: strip, to: to.parse().unwrap(), owner: None }
    }

    #[test]
    fn paths_map_under_the_destination() {
        let s = spec(1, "/opt/app");
        assert_eq!(map_path("app-1.0/bin/x", &s).unwrap().unwrap().as_rel(), "opt/app/bin/x");
        assert_eq!(map_path("app-1.0/", &s).unwrap(), None);
        assert_eq!(map_path("/etc/abs", &spec(0, "/opt")).unwrap().unwrap().as_rel(), "opt/etc/abs");
        assert_eq!(map_path("./a/./b", &spec(0, "/")).unwrap().unwrap().as_rel(), "a/b");
        assert!(map_path("../../etc/evil", &spec(0, "/")).is_err());
        assert!(map_path("a/../../b", &spec(0, "/")).is_err());
    }
}
