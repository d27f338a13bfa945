//! A deployment's plan: what a system file and a candidate make, as content-addressed layers
//! and one document with a digest.
//!
//! Each role's `overlay` is built like a recipe layer ([`crate::layer`]: the same gathering
//! rules, the same deterministic tar, the same action cache), and each node's generated
//! files (hostname, `/etc/hosts`, the system description, its own `NAME`/`ROLE` lines) are
//! one more small layer. A node's root filesystem is the candidate's, then its role's
//! overlay, then its generated layer, merged by [`crate::tree`]'s rules, exactly as the
//! candidate's own layers were.
//!
//! The plan names the candidate id, the system file's sha256, every overlay and generated
//! layer's `diff_id`, every node's address and the start order; its digest is the sha256 of
//! its canonical JSON (fields in declaration order, lists in file or tier order, no maps), so
//! the same candidate and system file give the same digest on any path and in any store.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{NodeSpec, System};
use crate::digest::{Digest, Hasher};
use crate::layer::{self, FilesInput, LayerError, LayerInfo, TarballInput};
use crate::local::{LocalError, LocalTree};
use crate::recipe::{Layer, Name, Origin};
use crate::store::{Store, StoreError};
use crate::tree::{Content, Kind, Node, Tree, TreeError};

/// Bumped whenever the plan document or the bytes of a generated layer would change for the
/// same inputs.
pub const PLAN_VERSION: u32 = 1;

/// The subject name under which a system test's attestation names the plan: `plan/SYSTEM`.
pub const PLAN_SUBJECT_PREFIX: &str = "plan/";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("role `{role}`: cannot read the overlay input `{}`", path.display())]
    Local { role: String, path: std::path::PathBuf, source: LocalError },
    #[error("role `{role}`: cannot read the overlay tarball `{}`", path.display())]
    Tarball { role: String, path: std::path::PathBuf, source: std::io::Error },
    #[error("role `{role}`: the overlay tarball `{}` has sha256 {actual}, not the {expected} the system file gives", path.display())]
    TarballDigest { role: String, path: std::path::PathBuf, expected: Digest, actual: Digest },
    #[error("role `{role}`: the overlay cannot be built")]
    Layer { role: String, source: Box<LayerError> },
    #[error("node `{node}`: its files cannot be generated")]
    Generated { node: String, source: Box<LayerError> },
    #[error("node `{node}`: {layer} does not fit over the candidate")]
    Merge { node: String, layer: String, source: Box<TreeError> },
    #[error("node `{node}`: the overlay puts a {kind} where the candidate has the directory `/{path}`, which a shared clone cannot express")]
    ReplacesDirectory { node: String, path: String, kind: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The plan document (`plan.json` of a deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDocument {
    pub version: u32,
    pub system: String,
    pub system_sha256: Digest,
    /// The candidate id (the sha256 of its `manifest.json`).
    pub candidate: Digest,
    pub subnet: String,
    /// Roles by name, each with its overlay layer's `diff_id` (none for an empty overlay).
    pub roles: Vec<RolePlan>,
    /// Nodes in file order.
    pub nodes: Vec<NodePlan>,
    /// Node names tier by tier: the start order.
    pub tiers: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePlan {
    pub name: String,
    pub overlay: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePlan {
    pub name: String,
    pub role: String,
    pub address: Ipv4Addr,
    pub tier: usize,
    /// The `diff_id` of the node's generated files.
    pub generated: Digest,
}

impl PlanDocument {
    /// The plan's identity: the sha256 of its canonical JSON.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical())
    }

    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a plan serialises")
    }
}

/// A built layer and its bytes.
#[derive(Clone)]
pub struct PlannedLayer {
    pub info: LayerInfo,
    pub reader: Arc<File>,
}

impl PlannedLayer {
    fn from_built(store: &Store, built: layer::Built) -> Result<Self, LayerError> {
        let reader = built.reader.clone();
        Ok(PlannedLayer { info: built.finish(store)?, reader })
    }

    fn tree(&self, link_offset: u64) -> Result<Tree, LayerError> {
        layer::read(&self.info, &self.reader, link_offset)
    }
}

/// A plan with its layers.
pub struct Plan {
    pub document: PlanDocument,
    pub digest: Digest,
    /// By role name, in `document.roles` order.
    pub overlays: Vec<Option<PlannedLayer>>,
    /// By node, in file order.
    pub generated: Vec<PlannedLayer>,
}

/// Builds (or finds in the action cache) every layer of the plan and the plan itself. `sde`
/// is the candidate's `SOURCE_DATE_EPOCH`: overlay and generated entries get its times, as
/// the candidate's own do.
pub fn plan(store: &Store, system: &System, candidate: Digest, sde: u64) -> Result<Plan, PlanError> {
    let mut roles = Vec::new();
    let mut overlays = Vec::new();
    for (name, role) in &system.roles {
        let built = if role.overlay.is_empty() { None } else { Some(overlay_layer(store, system, name, role, sde)?) };
        roles.push(RolePlan { name: name.to_string(), overlay: built.as_ref().map(|b| b.info.diff_id) });
        overlays.push(built);
    }
    let tiers = system.tiers().expect("validated when parsed");
    let tier_of = |node: &NodeSpec| tiers.iter().position(|t| t.iter().any(|n| n.name == node.name)).expect("placed");
    let mut nodes = Vec::new();
    let mut generated = Vec::new();
    for node in &system.nodes {
        let built = generated_layer(store, system, node, sde)?;
        nodes.push(NodePlan {
            name: node.name.to_string(),
            role: node.role.to_string(),
            address: system.address(node),
            tier: tier_of(node),
            generated: built.info.diff_id,
        });
        generated.push(built);
    }
    let document = PlanDocument {
        version: PLAN_VERSION,
        system: system.name.to_string(),
        system_sha256: system.sha256,
        candidate,
        subnet: system.subnet(),
        roles,
        nodes,
        tiers: tiers.iter().map(|t| t.iter().map(|n| n.name.to_string()).collect()).collect(),
    };
    Ok(Plan { digest: document.digest(), document, overlays, generated })
}

fn overlay_layer(
    store: &Store,
    system: &System,
    name: &Name,
    role: &super::Role,
    sde: u64,
) -> Result<PlannedLayer, PlanError> {
    let overlay = &role.overlay;
    let layer = Layer {
        name: format!("overlay-{name}").parse().expect("a role name makes a layer name"),
        files: overlay.files.clone(),
        tarballs: overlay.tarballs.clone(),
        directories: overlay.directories.clone(),
        symlinks: overlay.symlinks.clone(),
        packages: Vec::new(),
        priority: None,
        essential: false,
        exclude: Vec::new(),
        python: None,
    };
    let mut trees = Vec::new();
    for spec in &overlay.files {
        let path = system.resolve(&spec.from);
        let local = |source| PlanError::Local { role: name.to_string(), path: path.clone(), source };
        let tree = LocalTree::scan(&path).map_err(local)?;
        let (digest, _) = tree.digest(Some(store)).map_err(local)?;
        trees.push((tree, digest));
    }
    let files: Vec<FilesInput<'_>> = trees.iter().map(|(tree, digest)| FilesInput { tree, digest: *digest }).collect();
    let mut tarballs = Vec::new();
    for spec in &overlay.tarballs {
        let Ok(Origin::Local(path)) = Origin::parse(&spec.url, &system.dir) else {
            unreachable!("only local tarballs pass validation")
        };
        let bytes = fs_err::read(&path).map_err(|source| PlanError::Tarball {
            role: name.to_string(),
            path: path.clone(),
            source,
        })?;
        let (expected, actual) = (spec.sha256.expect("validated"), Digest::of(&bytes));
        if expected != actual {
            return Err(PlanError::TarballDigest { role: name.to_string(), path, expected, actual });
        }
        store.put_bytes(&bytes)?;
        tarballs.push(TarballInput { origin: spec.url.clone(), blob: actual });
    }
    let layer_error = |source| PlanError::Layer { role: name.to_string(), source: Box::new(source) };
    let built = layer::build(store, &layer, &files, &tarballs, sde).map_err(layer_error)?;
    PlannedLayer::from_built(store, built).map_err(layer_error)
}

/// The generated files of a node as a layer: regular files `0644 0:0` at `sde`.
fn generated_layer(store: &Store, system: &System, node: &NodeSpec, sde: u64) -> Result<PlannedLayer, PlanError> {
    let files = system.generated_files(node);
    let mut h = Hasher::new();
    h.field("candidate-system-generated").field(PLAN_VERSION.to_le_bytes()).field(sde.to_le_bytes());
    h.field(layer::FORMAT_VERSION.to_le_bytes());
    for (path, bytes) in &files {
        h.field(path.as_rel()).field(bytes);
    }
    let key = h.finish();
    let error = |source| PlanError::Generated { node: node.name.to_string(), source: Box::new(source) };
    if let Some(built) = layer::lookup(store, &key) {
        return PlannedLayer::from_built(store, built).map_err(error);
    }
    let mut tree = Tree::new(sde);
    for (path, bytes) in files {
        let node = Node {
            kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(bytes.into()), link_group: None },
            // Readable by every user of the node: nothing in them is secret.
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: sde,
            xattrs: Default::default(),
            implicit: false,
        };
        tree.insert(path.as_rel(), node)
            .map_err(|e| error(LayerError::Tree { layer: "generated".into(), source: e }))?;
    }
    let built = layer::write_tree_blob(store, "generated", &tree, key, &mut io::sink(), &|| Ok(())).map_err(error)?;
    PlannedLayer::from_built(store, built).map_err(error)
}

/// A node's root filesystem from the plan: `full` is the candidate's tree with the node's
/// overlay and generated layers merged over it; `delta` holds exactly what they changed
/// (with every ancestor, as `full` has it), what an overlay clone's upper folder holds.
pub struct NodeTree {
    pub full: Tree,
    pub delta: Tree,
}

impl Plan {
    /// The node's trees over `candidate` (the candidate's merged rootfs).
    pub fn node_tree(&self, candidate: &Tree, index: usize) -> Result<NodeTree, PlanError> {
        let node = &self.document.nodes[index];
        let role = self.document.roles.iter().position(|r| r.name == node.role).expect("a role of the plan");
        let mut full = candidate.clone();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        let mut replaced: Option<(String, &'static str)> = None;
        let layers = [
            ("its role's overlay", self.overlays[role].as_ref()),
            ("its generated files", Some(&self.generated[index])),
        ];
        for (i, (what, layer)) in layers.into_iter().enumerate() {
            let Some(layer) = layer else { continue };
            // Hard-link groups of the candidate's rootfs are numbered from 0.
            let tree = layer
                .tree((i as u64 + 1) << 40)
                .map_err(|source| PlanError::Generated { node: node.name.clone(), source: Box::new(source) })?;
            let merge_error =
                |source| PlanError::Merge { node: node.name.clone(), layer: what.into(), source: Box::new(source) };
            full.merge_checked(tree, &mut |_, path, new, old| {
                if old.is_some_and(Node::is_dir) && !new.is_dir() && replaced.is_none() {
                    replaced = Some((path.to_owned(), new.kind.describe()));
                }
                placed.insert(path.to_owned());
                Ok(true)
            })
            .map_err(merge_error)?;
        }
        if let Some((path, kind)) = replaced {
            return Err(PlanError::ReplacesDirectory { node: node.name.clone(), path, kind });
        }
        let mut wanted: BTreeSet<&str> = BTreeSet::from([""]);
        for path in &placed {
            wanted.insert(path);
            for (i, _) in path.match_indices('/') {
                wanted.insert(&path[..i]);
            }
        }
        let delta = Tree::from_entries(wanted.into_iter().filter_map(|p| Some((p.to_owned(), full.get(p)?.clone()))));
        Ok(NodeTree { full, delta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SYSTEM: &str = r#"
[system]
name = "ground"

[role.prime]
ready = "true"
overlay = { directories = [{ path = "/srv/prime", mode = "0750" }], files = [{ from = "prime", to = "/etc/prime" }], symlinks = [{ path = "/usr/bin/serve", target = "busybox" }] }

[role.client]
after = ["prime"]

[[node]]
name = "prime1"
role = "prime"

[[node]]
name = "client1"
role = "client"
"#;

    fn setup(root: &Path) -> System {
        fs_err::create_dir_all(root.join("systems/prime")).unwrap();
        fs_err::write(root.join("systems/prime/value"), b"42\n").unwrap();
        fs_err::write(root.join("systems/ground.toml"), SYSTEM).unwrap();
        System::load(&root.join("systems/ground.toml")).unwrap()
    }

    #[test]
    fn the_same_inputs_give_the_same_plan_anywhere() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (Store::open(&a.path().join("store")).unwrap(), Store::open(&b.path().join("s")).unwrap());
        let candidate = Digest::of(b"manifest");
        let pa = plan(&sa, &setup(a.path()), candidate, 1_700_000_000).unwrap();
        let pb = plan(&sb, &setup(&b.path().join("elsewhere")), candidate, 1_700_000_000).unwrap();
        assert_eq!(pa.document, pb.document);
        assert_eq!(pa.digest, pb.digest);
        assert_eq!(pa.document.tiers, [vec!["prime1"], vec!["client1"]]);
        assert!(pa.document.roles.iter().any(|r| r.name == "prime" && r.overlay.is_some()));
        assert!(pa.document.roles.iter().any(|r| r.name == "client" && r.overlay.is_none()));
        // Cached the second time, same bytes.
        let again = plan(&sa, &setup(a.path()), candidate, 1_700_000_000).unwrap();
        assert_eq!(again.digest, pa.digest);
        // Another candidate, another overlay byte, another time: another plan.
        assert_ne!(plan(&sa, &setup(a.path()), Digest::of(b"other"), 1_700_000_000).unwrap().digest, pa.digest);
        let system = setup(a.path());
        fs_err::write(a.path().join("systems/prime/value"), b"43\n").unwrap();
        let changed = plan(&sa, &system, candidate, 1_700_000_000).unwrap();
        assert_ne!(changed.document.roles, pa.document.roles);
        assert_ne!(changed.digest, pa.digest);
    }

    #[test]
    fn a_node_tree_is_the_candidate_plus_its_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let p = plan(&store, &setup(dir.path()), Digest::of(b"m"), 1_700_000_000).unwrap();
        let mut candidate = Tree::new(1_600_000_000);
        let dir_node = |mode| Node { mode, ..Node::implicit_directory(1_600_000_000) };
        candidate.insert("etc", Node { implicit: false, ..dir_node(0o755) }).unwrap();
        candidate.insert("usr", Node { implicit: false, ..dir_node(0o755) }).unwrap();
        candidate.insert("usr/bin", Node { implicit: false, ..dir_node(0o755) }).unwrap();
        let bytes: Arc<[u8]> = Arc::from(&b"old\n"[..]);
        let file = Node {
            kind: Kind::File { size: 4, content: Content::Bytes(bytes), link_group: None },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            xattrs: Default::default(),
            implicit: false,
        };
        candidate.insert("etc/hostname", file.clone()).unwrap();
        candidate.insert("etc/passwd", file).unwrap();
        let prime = p.node_tree(&candidate, 0).unwrap();
        let paths = |t: &Tree| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        // The delta: what the overlay and generated layers placed, and their ancestors as the
        // full tree has them (`etc` keeps the candidate's time), never the untouched passwd.
        let delta = paths(&prime.delta);
        for wanted in ["", "etc", "etc/hostname", "etc/hosts", "etc/prime/value", "srv/prime", "usr/bin/serve"] {
            assert!(delta.iter().any(|p| p == wanted), "{wanted} missing from {delta:?}");
        }
        assert!(!delta.iter().any(|p| p == "etc/passwd"), "{delta:?}");
        assert_eq!(prime.delta.get("etc").unwrap().mtime, 1_600_000_000);
        assert_eq!(prime.full.get("srv/prime").unwrap().mode, 0o750);
        let hostname = match &prime.full.get("etc/hostname").unwrap().kind {
            Kind::File { content, size, .. } => content.read_all(*size).unwrap(),
            _ => panic!("not a file"),
        };
        assert_eq!(hostname, b"prime1\n");
        assert!(prime.full.get("etc/passwd").is_some());
        // The client has no overlay: only generated files.
        let client = p.node_tree(&candidate, 1).unwrap();
        assert!(client.full.get("srv/prime").is_none());
    }
}
