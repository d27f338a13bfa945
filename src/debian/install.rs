//! Extract-only installation: pinned `.deb` files become one layer of the image.
//!
//! Two levels of cache, both content-addressed:
//!
//! * **Per package** ([`deb_layer`]): a `.deb`'s `data.tar` is validated and re-serialised
//!   into a deterministic tar blob, keyed by the `.deb`'s sha256 (and `SOURCE_DATE_EPOCH`,
//!   which clamps its mtimes); its control data (the `control` file, the paths as shipped,
//!   conffiles, md5sums, maintainer scripts) is kept beside it in the action cache. The
//!   blobs of one build are made durable together (one `syncfs`), not one fsync each.
//! * **Per layer**: the recipe layer's tar, keyed by its packages and the layers below it.
//!
//! Installing a layer merges its packages, in a fixed order, into the image as the layers
//! below left it, resolving each path the way dpkg resolves it in a chroot (a package's
//! `/bin/sh` lands in `/usr/bin/sh` when `/bin` is the image's symlink to `usr/bin`), in the
//! in-memory tree, never on the host. What the packages placed, plus the dpkg database, is
//! the layer. dpkg's rules on shared paths apply: a file shipped by two packages is an error
//! unless the later one declares `Replaces` on the earlier (identical files of one
//! `Multi-Arch: same` package in several architectures excepted), and a package may not
//! replace a directory with a file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::control::{self, Dialect};
use super::dpkgdb::{self, DbPackage, InfoSource};
use super::packages::{Architecture, Relations};
use super::unpack::{self, UnpackLimits, Unpacked};
use super::version::Version;
use crate::digest::{Digest, Hasher};
use crate::layer::{self, LayerInfo};
use crate::lockfile::LockedPackage;
use crate::store::{BatchedBlob, Store};
use crate::tar::writer::write_tree;
use crate::tree::{Content, Kind, Node, Tree, TreeError};

/// Bumped whenever what a package layer holds, or what is cached about it, changes.
const DEB_CACHE_VERSION: u32 = 2;

/// Bumped whenever the bytes of a package layer for the same packages would change (the
/// install rules or the dpkg database format).
pub const LAYER_VERSION: u32 = 3;

/// The status dpkg gives a package unpacked but not configured.
pub const STATUS_UNPACKED: &str = "install ok unpacked";

/// What the cache keeps about one `.deb`, beside its data tar blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebMeta {
    pub info: LayerInfo,
    pub control: String,
    pub paths: Vec<String>,
    pub conffiles: Vec<String>,
    /// The md5 of each conffile's content, in `conffiles` order. dpkg would leave an
    /// unconfigured conffile at `PATH.dpkg-new`, recorded as `newconffile`; an extract-only
    /// image puts it in place, so its status records the real hash (and `dpkg --verify` in
    /// the image checks it).
    pub conffile_md5s: Vec<String>,
    pub md5sums: String,
    /// Control members other than `control`, `md5sums` and `conffiles`.
    #[serde(with = "base64_map")]
    pub scripts: BTreeMap<String, Vec<u8>>,
}

impl DebMeta {
    fn new(info: LayerInfo, unpacked: Unpacked) -> anyhow::Result<Self> {
        use md5::Digest as _;
        let conffile_md5s = unpacked
            .conffiles
            .iter()
            .map(|path| match unpacked.tree.get(path.trim_start_matches('/')).map(|n| &n.kind) {
                // The unpacker checked that each conffile is a regular file of the data.
                Some(Kind::File { size, content, .. }) => Ok(hex::encode(md5::Md5::digest(content.read_all(*size)?))),
                _ => bail!("package `{}`: conffile `{path}` is not a regular file of its data", unpacked.name),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(DebMeta {
            info,
            control: unpacked.control,
            paths: unpacked.paths,
            conffiles: unpacked.conffiles,
            conffile_md5s,
            md5sums: unpacked.md5sums,
            scripts: unpacked.scripts,
        })
    }
}

/// Maintainer scripts are bytes; the cache record is JSON, so they are kept there as base64.
mod base64_map {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k, STANDARD.encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, STANDARD.decode(v).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

/// A package's data tar, ready to merge.
pub struct DebLayer {
    pub meta: DebMeta,
    pub blob: Arc<std::fs::File>,
    pending: Option<(BatchedBlob, Digest)>,
}

fn deb_key(deb: &Digest, sde: u64) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-deb").field(layer::FORMAT_VERSION.to_le_bytes()).field(DEB_CACHE_VERSION.to_le_bytes());
    h.field(deb.as_bytes()).field(sde.to_le_bytes());
    h.finish()
}

/// The package's data tar from the cache, or unpacked from the `.deb` blob now.
pub fn deb_layer(store: &Store, package: &LockedPackage, sde: u64) -> anyhow::Result<DebLayer> {
    let key = deb_key(&package.sha256, sde);
    if let Some(meta) = store.action(&key).and_then(|b| serde_json::from_slice::<DebMeta>(&b).ok()) {
        if store.blob_size(&meta.info.diff_id) == Some(meta.info.size) {
            let blob = fs_err::File::open(store.blob_path(&meta.info.diff_id))?.into_parts().0;
            return Ok(DebLayer { meta, blob: Arc::new(blob), pending: None });
        }
    }
    let label = package.filename.rsplit('/').next().unwrap_or(&package.filename).to_owned();
    // Proved against its pin here, where it is used, not only when it was fetched.
    let deb = store.open_verified(&package.sha256).with_context(|| format!("package `{label}`"))?;
    let unpacked = unpack::unpack(&deb, &label, &store.root().join("tmp"), sde, UnpackLimits::default())?;
    // The version as written, not dpkg's equality: `1.0` and `0:1.0` are one version to dpkg
    // but two different control files.
    if unpacked.name != package.name || unpacked.version.as_str() != package.version.as_str() {
        bail!(
            "package `{label}`: its control file says `{} {}`, the index said `{} {}`",
            unpacked.name,
            unpacked.version,
            package.name,
            package.version
        );
    }
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, store.writer()?);
    let written = write_tree(&unpacked.tree, &mut writer).with_context(|| format!("package `{label}`"))?;
    let blob = writer.into_inner().map_err(|e| e.into_error())?.commit_batched()?;
    let implicit = unpacked.tree.iter().filter(|(_, n)| n.implicit).map(|(p, _)| p.clone()).collect();
    let info = LayerInfo { diff_id: blob.digest, size: blob.size, entries: written.entries, implicit };
    let meta = DebMeta::new(info, unpacked)?;
    Ok(DebLayer { meta, blob: blob.reader.clone(), pending: Some((blob, key)) })
}

/// Unpacks (or finds) every package, on all cores; the results are in the given order.
pub fn deb_layers(store: &Store, packages: &[&LockedPackage], sde: u64) -> anyhow::Result<Vec<DebLayer>> {
    // The largest packages first, so that no core is left alone with a large one at the end
    // (the server set's libllvm14 and postgresql-15 are in the middle and near the end of
    // the lock's order). Only the order of the work changes: each result goes to its slot.
    let mut work: Vec<usize> = (0..packages.len()).collect();
    work.sort_by_key(|&i| std::cmp::Reverse(packages[i].size));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(packages.len().max(1));
    let mut slots: Vec<Option<anyhow::Result<DebLayer>>> = (0..packages.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&i) = work.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    let result = deb_layer(store, packages[i], sde);
                    results.lock().expect("no panics while holding it")[i] = Some(result);
                }
            });
        }
    });
    slots.into_iter().map(|r| r.expect("every package was done")).collect()
}

/// Makes the new package blobs durable (together), then records them in the cache.
pub fn finish_debs(store: &Store, layers: &mut [DebLayer]) -> anyhow::Result<()> {
    let (blobs, records): (Vec<BatchedBlob>, Vec<(Digest, Vec<u8>)>) = layers
        .iter_mut()
        .filter_map(|l| {
            let (blob, key) = l.pending.take()?;
            Some((blob, (key, serde_json::to_vec(&l.meta).expect("serialises"))))
        })
        .unzip();
    store.publish_batch(blobs)?;
    for (key, value) in records {
        store.put_action(&key, &value)?;
    }
    Ok(())
}

/// What installing a layer's packages gives.
pub struct Installed {
    /// The layer: every entry the packages and the dpkg database placed.
    pub tree: Tree,
    /// Files one package took over from another by `Replaces`: (path, winner, loser).
    pub replaced: Vec<(String, String, String)>,
    /// Which package owns each non-directory path of the image after this layer, and the
    /// path it ships it as: (package, shipped path).
    pub owners: BTreeMap<String, (String, String)>,
}

/// One package being installed: its identity and relationships, read from its control file.
struct Unit<'a> {
    name: String,
    arch: String,
    version: Version,
    multi_arch_same: bool,
    replaces: Relations,
    layer: &'a DebLayer,
}

impl<'a> Unit<'a> {
    fn new(layer: &'a DebLayer) -> anyhow::Result<Self> {
        let stanza = control::parse_one(&layer.meta.control, Dialect::Archive)?;
        let field = |name: &str| stanza.get(name).unwrap_or_default().to_owned();
        let name = field("Package");
        let replaces = match stanza.get("Replaces") {
            Some(text) => Relations::parse("Replaces", text).with_context(|| format!("package `{name}`"))?,
            None => Relations::default(),
        };
        Ok(Unit {
            version: field("Version").parse().with_context(|| format!("package `{name}`: Version"))?,
            arch: field("Architecture"),
            multi_arch_same: field("Multi-Arch") == "same",
            replaces,
            name,
            layer,
        })
    }

    fn label(&self) -> String {
        format!("{}:{}", self.name, self.arch)
    }

    /// Whether this package's `Replaces` names `other` at its version.
    fn replaces(&self, other: &Unit<'_>) -> bool {
        self.replaces
            .iter()
            .flat_map(|alternatives| alternatives.iter())
            .any(|r| r.name.as_str() == other.name && r.version_satisfied_by(&other.version))
    }
}

/// The install of one layer's packages.
pub struct LayerInstall<'a> {
    /// The packages of this layer, and of every layer below it (for the status file).
    pub packages: &'a [DebLayer],
    pub below: &'a [DebLayer],
    /// Who owns what after the layers below: path → (package, shipped path).
    pub owners: BTreeMap<String, (String, String)>,
    pub native: &'a Architecture,
    pub foreign: &'a [Architecture],
    pub sde: u64,
}

/// Installs `install.packages` over `image` (the layers below, merged).
///
/// Long by design: packages are laid over the image in one ordered pass (top-level symlink
/// packages first, then name order), and the ownership rules of that pass — directories kept,
/// `Replaces` take-overs, shared Multi-Arch files — depend on state it builds as it goes.
pub fn install(mut image: Tree, install: LayerInstall<'_>) -> anyhow::Result<Installed> {
    // Each package's tree is read once. Hard-link groups get a range per package, apart
    // from the layers' below (numbered from 0 by `rootfs::merge`).
    let mut units = Vec::new();
    for (i, deb) in install.packages.iter().enumerate() {
        let unit = Unit::new(deb)?;
        let tree = layer::read(&deb.meta.info, &deb.blob, (1 << 32) + ((i as u64) << 20))
            .with_context(|| format!("package `{}`", unit.label()))?;
        units.push((unit, tree));
    }
    // Name order, except that packages shipping symlinks at the top of the image (`/bin ->
    // usr/bin`) go first, so that the others' paths resolve through the links rather than
    // making real folders that the links could not replace.
    let top_symlink = |tree: &Tree| {
        tree.iter().any(|(p, n)| !p.is_empty() && !p.contains('/') && matches!(n.kind, Kind::Symlink { .. }))
    };
    units.sort_by_cached_key(|(u, tree)| (!top_symlink(tree), u.name.clone(), u.arch.clone()));
    let (units, trees): (Vec<Unit<'_>>, Vec<Tree>) = units.into_iter().unzip();
    let below: Vec<Unit<'_>> = install.below.iter().map(Unit::new).collect::<anyhow::Result<_>>()?;

    let mut owners = install.owners;
    let mut placed: BTreeMap<String, Node> = BTreeMap::new();
    let mut replaced = Vec::new();
    // Paths each package no longer owns (shipped form), dropped from its `.list`/`md5sums`
    // as dpkg does when another package takes a file over.
    let mut disowned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (index, (unit, tree)) in units.iter().zip(trees).enumerate() {
        image
            .merge_checked(tree, &mut |source, path, node, existing| {
                let shipped = format!("/{source}");
                let refuse = |message: String| Err(TreeError::Refused { path: path.to_owned(), message });
                match existing {
                    // dpkg never changes an existing directory's metadata.
                    Some(existing) if existing.is_dir() && node.is_dir() => return Ok(false),
                    Some(existing) if existing.is_dir() => {
                        return refuse(format!("a {} would replace a directory", node.kind.describe()));
                    }
                    Some(existing) if !node.is_dir() => {
                        if let Some((owner, owner_path)) = owners.get(path) {
                            let other = units[..index].iter().chain(&below).find(|u| &u.label() == owner);
                            match other {
                                Some(other) if unit.replaces(other) => {
                                    replaced.push((format!("/{path}"), unit.label(), other.label()));
                                    disowned.entry(other.label()).or_default().insert(owner_path.clone());
                                }
                                // The owner replaces the newcomer: its file stays, whichever came first.
                                Some(other) if other.replaces(unit) => {
                                    replaced.push((format!("/{path}"), other.label(), unit.label()));
                                    disowned.entry(unit.label()).or_default().insert(shipped);
                                    return Ok(false);
                                }
                                Some(other)
                                    if unit.multi_arch_same
                                        && other.multi_arch_same
                                        && other.name == unit.name
                                        && same_content(existing, node) => {}
                                _ => {
                                    let owner_name = owner.split(':').next().unwrap_or(owner);
                                    return refuse(format!(
                                        "shipped by `{owner}` too, and `{}` does not declare `Replaces: {owner_name}`",
                                        unit.name
                                    ));
                                }
                            }
                        }
                    }
                    _ => {}
                }
                if !node.is_dir() {
                    owners.insert(path.to_owned(), (unit.label(), shipped));
                }
                placed.insert(path.to_owned(), node.clone());
                Ok(true)
            })
            .with_context(|| format!("cannot install package `{}`", unit.label()))?;
    }

    let database = database(&units, &below, &disowned, install.native, install.foreign, install.sde)?;
    image
        .merge_checked(database, &mut |_, path, node, _| {
            placed.insert(path.to_owned(), node.clone());
            Ok(true)
        })
        .context("cannot write the dpkg database")?;

    let mut tree = Tree::new(install.sde);
    for (path, node) in placed {
        tree.insert(&path, node)?;
    }
    Ok(Installed { tree, replaced, owners })
}

/// Whether two files hold the same bytes (Multi-Arch: same packages may share such files).
fn same_content(a: &Node, b: &Node) -> bool {
    let (Kind::File { size: sa, content: ca, .. }, Kind::File { size: sb, content: cb, .. }) = (&a.kind, &b.kind)
    else {
        return false;
    };
    sa == sb && a.mode == b.mode && ca.read_all(*sa).ok() == cb.read_all(*sb).ok()
}

/// The dpkg database entries for the packages of this layer (and of packages below that
/// lost files to them), and the status of every package so far.
fn database(
    units: &[Unit<'_>],
    below: &[Unit<'_>],
    disowned: &BTreeMap<String, BTreeSet<String>>,
    native: &Architecture,
    foreign: &[Architecture],
    sde: u64,
) -> anyhow::Result<Tree> {
    let mut tree = Tree::new(sde);
    let file = |bytes: Vec<u8>, mode: u32| Node {
        kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(bytes.into()), link_group: None },
        mode,
        uid: 0,
        gid: 0,
        mtime: sde,
        xattrs: Default::default(),
        implicit: false,
    };
    let dir = Node { implicit: false, ..Node::implicit_directory(sde) };
    let foreign: Vec<&str> = foreign.iter().map(Architecture::as_str).collect();
    let skeleton = dpkgdb::skeleton(native.as_str(), &foreign);
    for d in ["var", "var/lib"].iter().chain(&skeleton.directories) {
        tree.insert(d, dir.clone())?;
    }
    for (path, text) in skeleton.files {
        tree.insert(path, file(text.into_bytes(), 0o644))?;
    }
    let db: Vec<DbPackage<'_>> = below
        .iter()
        .chain(units)
        .map(|u| {
            let meta = &u.layer.meta;
            let conffiles = meta.conffiles.iter().cloned().zip(meta.conffile_md5s.iter().cloned()).collect();
            DbPackage { control: &meta.control, status: STATUS_UNPACKED, conffiles }
        })
        .collect();
    tree.insert("var/lib/dpkg/status", file(dpkgdb::status(&db)?.into_bytes(), 0o644))?;
    let empty = BTreeSet::new();
    let losers = below.iter().filter(|u| disowned.contains_key(&u.label()));
    for unit in units.iter().chain(losers) {
        let meta = &unit.layer.meta;
        let gone = disowned.get(&unit.label()).unwrap_or(&empty);
        let paths: Vec<String> = meta.paths.iter().filter(|p| !gone.contains(*p)).cloned().collect();
        let md5sums: String = meta
            .md5sums
            .lines()
            .filter(|l| l.split_once("  ").is_none_or(|(_, p)| !gone.contains(&format!("/{p}"))))
            .map(|l| format!("{l}\n"))
            .collect();
        let source = InfoSource {
            control: &meta.control,
            paths: &paths,
            md5sums: &md5sums,
            conffiles: &meta.conffiles,
            scripts: &meta.scripts,
        };
        for (name, bytes, mode) in dpkgdb::info_files(&source)? {
            tree.insert(&format!("var/lib/dpkg/info/{name}"), file(bytes, mode))?;
        }
    }
    Ok(tree)
}
