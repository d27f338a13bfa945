//! What changed between two candidates: the engine behind `candidate diff` (and the one a
//! promotion's budgets would use), returning a typed [`Diff`] that the command renders as lines
//! or as JSON.
//!
//! Inputs (tarballs, local trees), Debian packages (added, removed, upgraded, downgraded by
//! dpkg's order), the root filesystem entry by entry (content digest, size, mode, owner, link
//! target, xattrs, type) summarised per top-level folder, and which layers the two share —
//! what a registry push of B after A would transfer.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::context::Context;
use crate::debian::packages::{Architecture, PackageName};
use crate::debian::version::Version;
use crate::digest::{Digest, HashingWriter};
use crate::dist::MANIFEST;
use crate::manifest::{Layer, Manifest, Package};
use crate::recipe::Name;
use crate::tar::reader::{EntryType, Limits, TarReader};
use crate::tree::{Content, Kind, Node};
use std::sync::Arc;

/// What the diff compares of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryFacts {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    content: Option<Digest>,
    link: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// What changed between candidates `a` and `b`: the `diff --json` document.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub a: Digest,
    pub b: Digest,
    pub identical: bool,
    pub inputs: Vec<InputChange>,
    pub packages: Vec<PackageChange>,
    /// Python wheels, by layer and name; always present (empty without Python).
    pub wheels: Vec<WheelChange>,
    pub rootfs: RootfsChanges,
    pub layers: LayerChanges,
    /// The two images' names and versions, for the human lines.
    #[serde(skip)]
    pub images: [(Name, String); 2],
}

/// How a thing differs between `a` and `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// A locked input (by layer, kind and origin) that differs.
#[derive(Debug, Serialize)]
pub struct InputChange {
    pub change: Change,
    pub layer: Name,
    pub kind: String,
    pub origin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_a: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_b: Option<u64>,
}

/// How a Debian package differs, by dpkg's version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageChangeKind {
    Added,
    Removed,
    Upgraded,
    Downgraded,
    /// Same version, other bytes.
    Rebuilt,
}

impl PackageChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageChangeKind::Added => "added",
            PackageChangeKind::Removed => "removed",
            PackageChangeKind::Upgraded => "upgraded",
            PackageChangeKind::Downgraded => "downgraded",
            PackageChangeKind::Rebuilt => "rebuilt",
        }
    }
}

/// A Debian package that differs, by (name, architecture), with the archive and layer it
/// came from (b's when both have it).
#[derive(Debug, Serialize)]
pub struct PackageChange {
    pub change: PackageChangeKind,
    pub name: PackageName,
    pub architecture: Architecture,
    pub a: Option<Version>,
    pub b: Option<Version>,
    pub archive: Name,
    pub layer: Name,
}

/// A Python wheel that differs, by (layer, name): versions compared by PEP 440's order,
/// as Debian packages are by dpkg's; the same version from another file is `rebuilt`.
#[derive(Debug, Serialize)]
pub struct WheelChange {
    pub change: PackageChangeKind,
    pub name: crate::python::Name,
    pub layer: Name,
    pub a: Option<String>,
    pub b: Option<String>,
    /// The wheel files (their tags can change with the version or alone).
    pub file_a: Option<String>,
    pub file_b: Option<String>,
}

/// The root filesystems' differences: counts per top-level folder, and every entry.
#[derive(Debug, Default, Serialize)]
pub struct RootfsChanges {
    pub summary: BTreeMap<String, BTreeMap<Change, u64>>,
    pub entries: Vec<EntryChange>,
}

/// One rootfs entry that differs.
#[derive(Debug, Serialize)]
pub struct EntryChange {
    pub path: String,
    pub change: Change,
    /// For a changed entry: which facts differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

impl EntryChange {
    fn new(path: String, change: Change, fields: Vec<FieldChange>) -> Self {
        EntryChange { path, change, fields }
    }
}

/// One fact of an entry, in `a` and in `b`.
#[derive(Debug, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub a: FieldValue,
    pub b: FieldValue,
}

/// A fact's value as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Text(String),
    Number(u64),
    /// A regular file's content digest (none for other types).
    Content(Option<Digest>),
    /// The names of the xattrs.
    Keys(Vec<String>),
}

/// The layers B shares with A, those only B has, and what pushing B after A transfers.
#[derive(Debug, Serialize)]
pub struct LayerChanges {
    pub shared: Vec<LayerRef>,
    pub only_in_b: Vec<LayerRef>,
    pub transfer_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct LayerRef {
    pub name: String,
    pub diff_id: Digest,
    pub size: u64,
}

impl From<&Layer> for LayerRef {
    fn from(l: &Layer) -> Self {
        LayerRef { name: l.name.clone(), diff_id: l.diff_id, size: l.size }
    }
}

/// A reader of a candidate's least-compressed rootfs archive.
fn rootfs_archive(dir: &Path, manifest: &Manifest) -> anyhow::Result<TarReader<Box<dyn std::io::Read>>> {
    let outputs: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    let archive = ["rootfs.tar", "rootfs.tar.zst", "rootfs.tar.gz", "rootfs.tar.xz"]
        .into_iter()
        .find(|n| outputs.contains(n))
        .with_context(|| format!("`{}` has no rootfs archive to read", dir.display()))?;
    let (_, decoded) = crate::compress::decoder(fs_err::File::open(dir.join(archive))?)?;
    Ok(TarReader::new(decoded, Limits::default()))
}

/// The entries of a candidate's rootfs, read from its least-compressed archive.
fn rootfs_entries(dir: &Path, manifest: &Manifest) -> anyhow::Result<BTreeMap<String, EntryFacts>> {
    let mut reader = rootfs_archive(dir, manifest)?;
    let mut entries = BTreeMap::new();
    while let Some(entry) = reader.next_entry()? {
        let content = if entry.kind == EntryType::File {
            let mut hashing = HashingWriter::new(std::io::sink());
            reader.copy_content(entry.size, &mut hashing)?;
            Some(hashing.finish().0)
        } else {
            None
        };
        let path = entry.path.trim_start_matches("./").trim_end_matches('/').to_owned();
        entries.insert(
            format!("/{path}"),
            EntryFacts {
                kind: entry.kind.describe(),
                mode: entry.mode,
                owner: (entry.uid, entry.gid),
                size: entry.size,
                content,
                link: entry.link.clone(),
                xattrs: entry.xattrs.clone(),
            },
        );
    }
    Ok(entries)
}

/// The merged rootfs of a candidate built from its layers in the store, with contents left
/// as references into the layer blobs (`blobs` opens each layer once, so two candidates that
/// share a layer share its references). `None` when the store lacks a layer.
fn layered_tree(
    ctx: &Context,
    manifest: &Manifest,
    blobs: &mut BTreeMap<Digest, Arc<std::fs::File>>,
) -> anyhow::Result<Option<crate::tree::Tree>> {
    let mut tree = crate::tree::Tree::new(manifest.source_date_epoch);
    for (i, layer) in manifest.layers.iter().enumerate() {
        let diff_id = layer.diff_id;
        let Some(info) = crate::layer::stored(&ctx.store, &diff_id) else { return Ok(None) };
        let blob = match blobs.get(&diff_id) {
            Some(blob) => blob.clone(),
            None => {
                let file = Arc::new(fs_err::File::open(ctx.store.blob_path(&diff_id))?.into_parts().0);
                blobs.insert(diff_id, file.clone());
                file
            }
        };
        let layer = crate::layer::read(&info, &blob, (i as u64) << 40)?;
        tree.merge(layer)?;
    }
    Ok(Some(tree))
}

/// The facts of a tree node; content is hashed only when `hash` says so.
fn node_facts(node: &Node, hash: bool) -> anyhow::Result<EntryFacts> {
    let (kind, size, content, link) = match &node.kind {
        Kind::Directory => ("directory", 0, None, String::new()),
        Kind::Symlink { target } => ("symlink", 0, None, target.clone()),
        // A merged tree holds none; a whiteout only ever deletes.
        Kind::Whiteout => ("whiteout", 0, None, String::new()),
        Kind::File { size, content, .. } => {
            let digest = if hash { Some(hash_content(content, *size)?) } else { None };
            ("regular file", *size, digest, String::new())
        }
    };
    Ok(EntryFacts {
        kind,
        mode: node.mode,
        owner: (node.uid, node.gid),
        size,
        content,
        link,
        xattrs: node.xattrs.clone(),
    })
}

fn hash_content(content: &Content, size: u64) -> anyhow::Result<Digest> {
    let mut hashing = HashingWriter::new(std::io::sink());
    match content {
        Content::Range { file, offset } => {
            let mut reader = crate::tar::reader::ReadAt::new(file.clone());
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(*offset))?;
            std::io::copy(&mut std::io::Read::take(reader, size), &mut hashing)?;
        }
        Content::Bytes(bytes) => std::io::Write::write_all(&mut hashing, bytes)?,
        Content::Host(path) => {
            std::io::copy(&mut fs_err::File::open(path.as_path())?, &mut hashing)?;
        }
    }
    Ok(hashing.finish().0)
}

/// Whether two contents are the same bytes of the same stored layer (no need to read them).
fn same_source(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (
            Kind::File { content: Content::Range { file: fa, offset: oa }, .. },
            Kind::File { content: Content::Range { file: fb, offset: ob }, .. },
        ) => Arc::ptr_eq(fa, fb) && oa == ob,
        _ => false,
    }
}

/// Entry changes between two merged trees: only contents that do not come from the same
/// place in a shared layer are read, so the cost follows the layers that changed.
fn diff_trees(a: &crate::tree::Tree, b: &crate::tree::Tree) -> anyhow::Result<Vec<EntryChange>> {
    let paths: BTreeSet<&String> = a.iter().map(|(p, _)| p).chain(b.iter().map(|(p, _)| p)).collect();
    let mut changes = Vec::new();
    for path in paths {
        let shown = format!("/{path}");
        match (a.get(path), b.get(path)) {
            (Some(_), None) => changes.push(EntryChange::new(shown, Change::Removed, Vec::new())),
            (None, Some(_)) => changes.push(EntryChange::new(shown, Change::Added, Vec::new())),
            (Some(x), Some(y)) => {
                let hash = !same_source(x, y);
                let (fx, fy) = (node_facts(x, hash)?, node_facts(y, hash)?);
                if fx != fy {
                    changes.push(EntryChange::new(shown, Change::Changed, changed_fields(&fx, &fy)));
                }
            }
            (None, None) => unreachable!("the path came from one of the trees"),
        }
    }
    Ok(changes)
}

fn changed_fields(a: &EntryFacts, b: &EntryFacts) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, x: FieldValue, y: FieldValue| {
        if x != y {
            out.push(FieldChange { field: name, a: x, b: y });
        }
    };
    use FieldValue::{Content, Keys, Number, Text};
    field("type", Text(a.kind.into()), Text(b.kind.into()));
    field("content", Content(a.content), Content(b.content));
    field("size", Number(a.size), Number(b.size));
    field("mode", Text(format!("{:o}", a.mode)), Text(format!("{:o}", b.mode)));
    field("owner", Text(format!("{}:{}", a.owner.0, a.owner.1)), Text(format!("{}:{}", b.owner.0, b.owner.1)));
    field("link target", Text(a.link.clone()), Text(b.link.clone()));
    let keys = |f: &EntryFacts| Keys(f.xattrs.keys().cloned().collect());
    field("xattrs", keys(a), keys(b));
    if out.iter().all(|f| f.field != "xattrs") && a.xattrs != b.xattrs {
        out.push(FieldChange { field: "xattrs", a: Text("values differ".into()), b: Text("values differ".into()) });
    }
    out
}

fn top_level(path: &str) -> String {
    let rest = path.trim_start_matches('/');
    match rest.split_once('/') {
        Some((top, _)) => format!("/{top}"),
        None => "/".to_owned(),
    }
}

/// Compares candidates `a` and `b` (folders or id prefixes).
pub fn diff(ctx: &Context, a: &str, b: &str) -> anyhow::Result<Diff> {
    let (dir_a, id_a) = crate::registry::resolve(&ctx.store, a)?;
    let (dir_b, id_b) = crate::registry::resolve(&ctx.store, b)?;
    let (ma, mb) = (Manifest::read(&dir_a.join(MANIFEST))?, Manifest::read(&dir_b.join(MANIFEST))?);
    let entries = if ma.rootfs.diff_id == mb.rootfs.diff_id {
        Vec::new()
    } else {
        rootfs_changes(ctx, (&dir_a, &ma), (&dir_b, &mb))?
    };
    let mut summary: BTreeMap<String, BTreeMap<Change, u64>> = BTreeMap::new();
    for c in &entries {
        *summary.entry(top_level(&c.path)).or_default().entry(c.change).or_default() += 1;
    }
    Ok(Diff {
        a: id_a,
        b: id_b,
        identical: id_a == id_b,
        inputs: input_changes(&ma, &mb),
        packages: package_changes(&ma, &mb),
        wheels: wheel_changes(&ma, &mb),
        rootfs: RootfsChanges { summary, entries },
        layers: layer_changes(&ma, &mb),
        images: [
            (ma.image.name.clone(), ma.image.version.to_string()),
            (mb.image.name.clone(), mb.image.version.to_string()),
        ],
    })
}

/// The package and wheel changes of a candidate against nothing (a channel's first
/// record): every package and wheel is added, found the way [`diff`] finds them.
pub fn changes_from_nothing(m: &Manifest) -> (Vec<PackageChange>, Vec<WheelChange>) {
    let mut nothing = m.clone();
    nothing.packages = None;
    nothing.wheels.clear();
    (package_changes(&nothing, m), wheel_changes(&nothing, m))
}

/// What release notes read of a candidate's root filesystem: the bytes of its regular files
/// per top-level folder (as [`Diff`]'s summary names them: `/usr`, `/` for files at the top),
/// a file with several names (hard links) counted once, and the contents of the files that
/// `wanted` picks (by path without the leading `/`).
#[derive(Debug, Default)]
pub struct RootfsReading {
    pub sizes: BTreeMap<String, u64>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Reads a candidate's root filesystem as [`diff`] does: from its layers in the store when
/// it has them all, else from its rootfs archive.
pub fn read_rootfs(
    ctx: &Context,
    dir: &Path,
    manifest: &Manifest,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<RootfsReading> {
    let mut out = RootfsReading::default();
    if let Some(tree) = layered_tree(ctx, manifest, &mut BTreeMap::new())? {
        let mut groups = BTreeSet::new();
        for (path, node) in tree.iter() {
            let Kind::File { size, content, link_group } = &node.kind else { continue };
            if link_group.is_none_or(|g| groups.insert(g)) {
                *out.sizes.entry(top_level(&format!("/{path}"))).or_default() += size;
            }
            if wanted(path) {
                out.files.insert(path.clone(), content.read_all(*size)?);
            }
        }
        return Ok(out);
    }
    let mut reader = rootfs_archive(dir, manifest)?;
    while let Some(entry) = reader.next_entry()? {
        if entry.kind != EntryType::File {
            continue;
        }
        // A hard link's entry has no content of its own: its bytes are counted with the first
        // name, as the layered tree counts a link group once.
        let path = entry.path.trim_start_matches("./").to_owned();
        *out.sizes.entry(top_level(&format!("/{path}"))).or_default() += entry.size;
        if wanted(&path) {
            let mut bytes = Vec::new();
            reader.copy_content(entry.size, &mut bytes)?;
            out.files.insert(path, bytes);
        }
    }
    Ok(out)
}

/// Locked inputs that differ, keyed by (layer, kind, origin).
fn input_changes(ma: &Manifest, mb: &Manifest) -> Vec<InputChange> {
    type Key = (Name, String, String);
    let inputs = |m: &Manifest| -> BTreeMap<Key, (Digest, u64)> {
        m.inputs.iter().map(|i| ((i.layer.clone(), i.kind.to_string(), i.origin.clone()), (i.sha256, i.size))).collect()
    };
    let (ia, ib) = (inputs(ma), inputs(mb));
    let change = |change, key: &Key, a: Option<&(Digest, u64)>, b: Option<&(Digest, u64)>| InputChange {
        change,
        layer: key.0.clone(),
        kind: key.1.clone(),
        origin: key.2.clone(),
        a: a.map(|x| x.0),
        b: b.map(|x| x.0),
        size_a: a.map(|x| x.1),
        size_b: b.map(|x| x.1),
    };
    let mut out = Vec::new();
    for (key, x) in &ia {
        match ib.get(key) {
            None => out.push(change(Change::Removed, key, Some(x), None)),
            Some(y) if y.0 != x.0 => out.push(change(Change::Changed, key, Some(x), Some(y))),
            Some(_) => {}
        }
    }
    for (key, y) in &ib {
        if !ia.contains_key(key) {
            out.push(change(Change::Added, key, None, Some(y)));
        }
    }
    out
}

/// The root filesystems, entry by entry: from the layers in the store when it has them all
/// (reading only contents that do not come from a shared layer), else from the rootfs
/// archives.
fn rootfs_changes(
    ctx: &Context,
    (dir_a, ma): (&Path, &Manifest),
    (dir_b, mb): (&Path, &Manifest),
) -> anyhow::Result<Vec<EntryChange>> {
    let mut blobs = BTreeMap::new();
    if let (Some(ta), Some(tb)) = (layered_tree(ctx, ma, &mut blobs)?, layered_tree(ctx, mb, &mut blobs)?) {
        return diff_trees(&ta, &tb);
    }
    let (ea, eb) = (rootfs_entries(dir_a, ma)?, rootfs_entries(dir_b, mb)?);
    let paths: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        match (ea.get(path), eb.get(path)) {
            (Some(_), None) => out.push(EntryChange::new(path.clone(), Change::Removed, Vec::new())),
            (None, Some(_)) => out.push(EntryChange::new(path.clone(), Change::Added, Vec::new())),
            (Some(x), Some(y)) if x != y => {
                out.push(EntryChange::new(path.clone(), Change::Changed, changed_fields(x, y)))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Layers B shares with A, and what B adds over A.
fn layer_changes(ma: &Manifest, mb: &Manifest) -> LayerChanges {
    let in_a: BTreeSet<&Digest> = ma.layers.iter().map(|l| &l.diff_id).collect();
    let (shared, only_in_b): (Vec<&Layer>, Vec<&Layer>) = mb.layers.iter().partition(|l| in_a.contains(&l.diff_id));
    LayerChanges {
        transfer_bytes: only_in_b.iter().map(|l| l.size).sum(),
        shared: shared.into_iter().map(LayerRef::from).collect(),
        only_in_b: only_in_b.into_iter().map(LayerRef::from).collect(),
    }
}

/// How a package (or wheel) differs from `x` in a to `y` in b, versions compared by `order`;
/// `None` when both have the same bytes.
fn classify<T>(
    x: Option<&T>,
    y: Option<&T>,
    sha256: impl Fn(&T) -> Digest,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Option<PackageChangeKind> {
    Some(match (x, y) {
        (Some(_), None) => PackageChangeKind::Removed,
        (None, Some(_)) => PackageChangeKind::Added,
        (Some(x), Some(y)) if sha256(x) == sha256(y) => return None,
        (Some(x), Some(y)) => match order(x, y) {
            std::cmp::Ordering::Less => PackageChangeKind::Upgraded,
            std::cmp::Ordering::Greater => PackageChangeKind::Downgraded,
            std::cmp::Ordering::Equal => PackageChangeKind::Rebuilt,
        },
        (None, None) => return None,
    })
}

/// Wheels added, removed, upgraded or downgraded (PEP 440 order), by (layer, name).
fn wheel_changes(a: &Manifest, b: &Manifest) -> Vec<WheelChange> {
    type Key = (Name, crate::python::Name);
    fn wheels(m: &Manifest) -> BTreeMap<Key, &crate::manifest::Wheel> {
        m.wheels.iter().map(|w| ((w.layer.clone(), w.name.clone()), w)).collect()
    }
    // A version that is not PEP 440 (a lockfile written by hand) still compares, as text.
    fn order(x: &str, y: &str) -> std::cmp::Ordering {
        match (x.parse::<crate::python::version::Version>(), y.parse::<crate::python::version::Version>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        }
    }
    let (wa, wb) = (wheels(a), wheels(b));
    let keys: BTreeSet<&Key> = wa.keys().chain(wb.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (wa.get(key).copied(), wb.get(key).copied());
        let Some(change) = classify(x, y, |w| w.sha256, |x, y| order(&x.version, &y.version)) else { continue };
        out.push(WheelChange {
            change,
            name: key.1.clone(),
            layer: key.0.clone(),
            a: x.map(|w| w.version.clone()),
            b: y.map(|w| w.version.clone()),
            file_a: x.map(|w| w.filename.clone()),
            file_b: y.map(|w| w.filename.clone()),
        });
    }
    out
}

/// Debian packages added, removed, upgraded or downgraded (dpkg version order), by
/// (name, architecture), with the archive and layer they came from.
fn package_changes(a: &Manifest, b: &Manifest) -> Vec<PackageChange> {
    fn packages(m: &Manifest) -> BTreeMap<(PackageName, Architecture), &Package> {
        m.packages.iter().flatten().map(|p| ((p.name.clone(), p.architecture.clone()), p)).collect()
    }
    let (pa, pb) = (packages(a), packages(b));
    let mut out = Vec::new();
    let keys: BTreeSet<&(PackageName, Architecture)> = pa.keys().chain(pb.keys()).collect();
    for key in keys {
        let (x, y) = (pa.get(key).copied(), pb.get(key).copied());
        let Some(change) = classify(x, y, |p| p.sha256, |x, y| x.version.cmp(&y.version)) else { continue };
        let from = y.or(x).expect("one side has it");
        out.push(PackageChange {
            change,
            name: key.0.clone(),
            architecture: key.1.clone(),
            a: x.map(|p| p.version.clone()),
            b: y.map(|p| p.version.clone()),
            archive: from.archive.clone(),
            layer: from.layer.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_wheels(wheels: &[(&str, &str, &str)]) -> Manifest {
        let mut m =
            Manifest::parse(Path::new("m.json"), include_bytes!("../tests/data/example.manifest.json")).unwrap();
        m.wheels = wheels
            .iter()
            .map(|(name, version, layer)| crate::manifest::Wheel {
                name: name.parse().unwrap(),
                version: (*version).into(),
                filename: format!("{name}-{version}-py3-none-any.whl"),
                sha256: Digest::of(format!("{name}{version}").as_bytes()),
                layer: layer.parse().unwrap(),
            })
            .collect();
        m
    }

    #[test]
    fn wheels_are_upgraded_and_downgraded_by_pep_440_order() {
        let a = with_wheels(&[
            ("numpy", "1.26.4", "app"),
            ("idna", "3.10", "app"),
            ("six", "1.16.0", "app"),
            ("pyyaml", "6.0.1", "app"),
        ]);
        let mut b = with_wheels(&[
            ("numpy", "2.0.0rc1", "app"),
            ("idna", "3.9", "app"),
            ("certifi", "2024.2.2", "app"),
            ("pyyaml", "6.0.1", "app"),
        ]);
        // The same version from another file.
        b.wheels[3].sha256 = Digest::of(b"rebuilt");
        let changes = wheel_changes(&a, &b);
        let changes: Vec<(&str, &str, Option<&str>, Option<&str>)> =
            changes.iter().map(|c| (c.name.as_str(), c.change.as_str(), c.a.as_deref(), c.b.as_deref())).collect();
        assert_eq!(
            changes,
            [
                ("certifi", "added", None, Some("2024.2.2")),
                // 3.10 > 3.9 as versions (as text it would be the other way).
                ("idna", "downgraded", Some("3.10"), Some("3.9")),
                ("numpy", "upgraded", Some("1.26.4"), Some("2.0.0rc1")),
                ("pyyaml", "rebuilt", Some("6.0.1"), Some("6.0.1")),
                ("six", "removed", Some("1.16.0"), None),
            ]
        );
        assert!(wheel_changes(&a, &a).is_empty());
        let json = serde_json::to_value(&wheel_changes(&a, &b)[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"change": "downgraded", "name": "idna", "layer": "app", "a": "3.10", "b": "3.9",
                "file_a": "idna-3.10-py3-none-any.whl", "file_b": "idna-3.9-py3-none-any.whl"})
        );
    }
}
