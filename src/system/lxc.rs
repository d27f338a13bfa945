//! Deploying a system's plan on LXC, on one machine (`candidate deploy`, `status`,
//! `undeploy`, and the deployments `candidate test --system` makes).
//!
//! A deployment lives in the store's `deployments/NAME/`: `deployment.json` (the record:
//! candidate, plan digest, bridge, every node's container, address, start and ready times),
//! `plan.json`, `work/` (the candidate's checked `lxc` archives), `logs/` and `lxc/`, a
//! private lxcpath holding every container. The record is written before anything is
//! created, so `undeploy` can remove a deployment whose builder was killed at any point.
//!
//! * **One unpacked candidate.** `lxc-create -t local` unpacks the candidate's `lxc` format
//!   once, into a base container that never starts; each node is a container of its own
//!   whose root filesystem is an overlay (`lxc.rootfs.path = overlay:BASE:UPPER`) of that base
//!   and an upper folder holding exactly the node's delta ([`super::plan::NodeTree`]: its
//!   role's overlay and its generated files, written by [`crate::instance::materialize`]).
//!   An extra node costs its delta, not a copy of the image.
//! * **An isolated network.** One Linux bridge per deployment, made here and removed by
//!   `undeploy`: no uplink, no address on it (IPv6 disabled on it, IPv4 forwarding off), so
//!   nothing on the host routes into or out of it. Each node has one veth on it with the
//!   plan's address (`/24`, no gateway: no default route inside) and a MAC derived from it.
//! * **Tier by tier.** Nodes of a tier start together; each is ready when its role's probe
//!   (`/bin/sh -c PROBE` through `lxc-attach`) exits 0, or once RUNNING without a probe. A
//!   probe still failing at `ready-timeout` fails the deployment naming the node, the probe
//!   and its last output, and everything made is torn down unless `--keep`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::lxd;
use super::plan::{self, Plan};
use super::System;
use crate::context::Context;
use crate::digest::Digest;
use crate::sandbox::Exit;

/// The record of a deployment.
pub const RECORD: &str = "deployment.json";
pub const PLAN: &str = "plan.json";
/// Output kept of a probe or a test.
const OUTPUT_LIMIT: u64 = 64 * 1024;
/// The longest one probe attempt may take.
const PROBE_ATTEMPT: Duration = Duration::from_secs(10);
/// Pause between probe attempts.
const PROBE_PAUSE: Duration = Duration::from_millis(250);

/// Refusals a caller may want to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("a deployment named `{name}` already exists in this store")]
    Exists { name: String },
    #[error("no deployment named `{name}` in this store")]
    NotFound { name: String },
    #[error("node `{node}` was not ready within {seconds} s: its probe `{probe}` last gave {exit}{}", output_suffix(.output))]
    ProbeTimeout { node: String, probe: String, seconds: u64, exit: String, output: Vec<String> },
    #[error("node `{node}` stopped before it was ready")]
    Stopped { node: String },
    #[error("`{name}` is not a deployment name: use letters, digits and `-`, at most 32")]
    BadName { name: String },
}

fn output_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        " and no output".to_owned()
    } else {
        format!(", output:\n  | {}", lines.join("\n  | "))
    }
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Containers and the network are being made.
    Creating,
    /// Nodes are being started, tier by tier.
    Starting,
    /// Every node is ready.
    Ready,
    /// A node failed; what was made is kept (`--keep`).
    Failed,
}

/// `deployment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub version: u32,
    pub name: String,
    pub runtime: String,
    pub phase: Phase,
    /// The system file as given, and its name and sha256.
    pub system_file: PathBuf,
    pub system: String,
    pub system_sha256: Digest,
    pub candidate: Digest,
    pub candidate_dir: PathBuf,
    pub plan: Digest,
    pub bridge: String,
    pub subnet: String,
    /// The private lxcpath holding every container.
    pub lxcpath: PathBuf,
    /// The container the candidate is unpacked into once; it never starts.
    pub base: String,
    /// Milliseconds `lxc-create` took to unpack the candidate into the base.
    pub unpack_ms: Option<u64>,
    pub created: String,
    pub nodes: Vec<NodeRecord>,
    /// On LXD/Incus ([`super::lxd`]): the daemon and the image; absent on LXC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd: Option<LxdRecord>,
}

/// Where an LXD deployment lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxdRecord {
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// The image's fingerprint.
    pub image: Digest,
    /// Whether this deployment imported the image (so `undeploy` deletes it); an image
    /// already there is someone else's and is left.
    pub imported: bool,
    /// Which rootfs archive is beside the metadata in the deployment's folder
    /// ([`crate::manifest::Manifest::incus_rootfs`]; xz in records written before it could be zstd).
    #[serde(default)]
    pub rootfs: crate::recipe::IncusRootfs,
}

/// Which runtime a deployment's nodes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// LXC on this machine, from the candidate's `lxc` format.
    Lxc,
    /// An LXD/Incus daemon (`LXD_DIR`), through its REST API, from the `incus` format.
    Lxd,
}

/// How the stages reach the nodes of a deployment, whatever runs them.
pub trait Nodes: Sync {
    /// Starts the node (its address is set before its init runs); returns once it runs.
    fn start(&self, node: &NodeRecord, log: &Path, timeout: Duration) -> anyhow::Result<()>;
    /// Its state in capitals (`RUNNING`, `STOPPED` …), if the runtime knows it.
    fn state(&self, node: &NodeRecord) -> Option<String>;
    /// Runs `argv` in the node, killed (or abandoned) at `timeout`.
    fn exec(&self, node: &NodeRecord, argv: &[&str], timeout: Duration) -> anyhow::Result<Attached>;
    /// Runs a shell script (the exact bytes in `source`) in the node.
    fn script(&self, node: &NodeRecord, source: &Path, timeout: Duration) -> anyhow::Result<Attached>;
}

/// LXC's nodes: containers of the deployment's lxcpath.
pub struct LxcNodes<'a> {
    pub lxcpath: &'a Path,
}

impl Nodes for LxcNodes<'_> {
    fn start(&self, node: &NodeRecord, log: &Path, timeout: Duration) -> anyhow::Result<()> {
        tool(lxc("lxc-start", self.lxcpath, &node.container).arg("-d").arg("-o").arg(log))
            .with_context(|| format!("cannot start node `{}`", node.name))?;
        let wait_secs = timeout.as_secs().clamp(1, 30).to_string();
        tool(lxc("lxc-wait", self.lxcpath, &node.container).args(["-s", "RUNNING", "-t", &wait_secs]))
            .with_context(|| format!("node `{}` did not reach RUNNING", node.name))?;
        Ok(())
    }

    fn state(&self, node: &NodeRecord) -> Option<String> {
        container_state(self.lxcpath, &node.container)
    }

    fn exec(&self, node: &NodeRecord, argv: &[&str], timeout: Duration) -> anyhow::Result<Attached> {
        attach(self.lxcpath, &node.container, argv, None, timeout)
    }

    fn script(&self, node: &NodeRecord, source: &Path, timeout: Duration) -> anyhow::Result<Attached> {
        attach(self.lxcpath, &node.container, &["/bin/sh", "-s"], Some(source), timeout)
    }
}

/// The nodes of `record`, on the runtime that made them.
pub fn nodes(record: &Deployment) -> Box<dyn Nodes + '_> {
    match &record.lxd {
        Some(lxd) => Box::new(LxdNodes { lxd: lxd::Lxd::at(lxd.socket.clone()) }),
        None => Box::new(LxcNodes { lxcpath: &record.lxcpath }),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub name: String,
    pub role: String,
    pub container: String,
    pub address: std::net::Ipv4Addr,
    /// The host end of its veth.
    pub veth: String,
    pub tier: usize,
    pub probe: Option<String>,
    /// Milliseconds since the epoch when `lxc-start` was called, and when the node was ready.
    pub started_ms: Option<u64>,
    pub ready_ms: Option<u64>,
    /// Microseconds it took to make the node's container over the base (its delta, its config).
    pub create_us: Option<u64>,
}

impl Deployment {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = fs_err::read(path)?;
        serde_json::from_slice(&bytes).with_context(|| format!("`{}` is not a deployment record", path.display()))
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a record serialises");
        bytes.push(b'\n');
        write_atomic(&dir.join(RECORD), &bytes)
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The first node's start: the origin of the times a deployment prints.
    pub fn origin_ms(&self) -> u64 {
        self.nodes.iter().filter_map(|n| n.started_ms).min().unwrap_or(0)
    }
}

impl NodeRecord {
    /// `NAME  ROLE  ADDRESS  tier T  started +S s  ready +R s`, times from `origin`.
    pub fn line(&self, origin: u64) -> String {
        let at = |ms: Option<u64>| {
            ms.map_or("-".to_owned(), |ms| format!("+{:.2} s", ms.saturating_sub(origin) as f64 / 1000.0))
        };
        format!(
            "  {:<16} {:<10} {:<15} tier {}  started {}  ready {}",
            self.name,
            self.role,
            self.address,
            self.tier,
            at(self.started_ms),
            at(self.ready_ms)
        )
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut temp =
        tempfile::Builder::new().prefix(".record-").permissions(crate::store::public_mode()).tempfile_in(parent)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The store's folder of deployments.
pub fn deployments(ctx: &Context) -> PathBuf {
    ctx.store.root().join("deployments")
}

/// The folder of deployment `name`.
pub fn folder(ctx: &Context, name: &str) -> anyhow::Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(DeployError::BadName { name: name.to_owned() }.into());
    }
    Ok(deployments(ctx).join(name))
}

/// What `deploy` is given.
pub struct DeployOptions<'a> {
    pub name: &'a str,
    pub system: &'a System,
    pub candidate_dir: &'a Path,
    pub candidate: Digest,
    pub manifest: &'a crate::manifest::Manifest,
    /// Keep what was made when a node fails.
    pub keep: bool,
    pub backend: Backend,
}

/// Removes a deployment when dropped, unless disarmed.
struct Guard<'a> {
    dir: &'a Path,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = teardown(self.dir);
        }
    }
}

/// Runs a tool to completion; a failure names it and shows its stderr.
pub(super) fn tool(cmd: &mut Command) -> anyhow::Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run `{program}`"))?;
    if !out.status.success() {
        bail!("`{program}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lxc(tool_name: &str, lxcpath: &Path, container: &str) -> Command {
    let mut cmd = Command::new(tool_name);
    cmd.arg("-P").arg(lxcpath).arg("-n").arg(container);
    cmd
}

/// Whether a network link of this name exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Makes the deployment's bridge: no uplink, no address, IPv6 off, no forwarding.
pub(super) fn make_bridge(name: &str) -> anyhow::Result<()> {
    tool(Command::new("ip").args(["link", "add", name, "type", "bridge"]))
        .context("cannot make the deployment's bridge")?;
    // No link-local IPv6 address on the host side, no routing from it: the bridge is only
    // the nodes' wire.
    for (knob, value) in [("ipv6/conf/{}/disable_ipv6", "1"), ("ipv4/conf/{}/forwarding", "0")] {
        let path = Path::new("/proc/sys/net").join(knob.replace("{}", name));
        if path.exists() {
            fs_err::write(&path, value)?;
        }
    }
    tool(Command::new("ip").args(["link", "set", name, "up"]))?;
    Ok(())
}

/// Removes everything of the deployment in `dir`: every container of its lxcpath (stopped
/// and destroyed), its bridge and any veth of its nodes left behind, and the folder. Each
/// step runs whatever the one before did; the first error is returned at the end.
pub fn teardown(dir: &Path) -> anyhow::Result<()> {
    let record = Deployment::read(&dir.join(RECORD)).ok();
    let mut first: Option<anyhow::Error> = None;
    let mut note = |r: anyhow::Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if let Some(lxd) = record.as_ref().and_then(|r| r.lxd.as_ref().map(|l| (r, l))) {
        note(remove_lxd(lxd.0, lxd.1));
    }
    let lxcpath = dir.join("lxc");
    let mut containers: Vec<String> = fs_err::read_dir(&lxcpath)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    containers.sort();
    // Nodes before the base their root filesystems lie over.
    if let Some(base) = record.as_ref().map(|r| r.base.clone()).filter(|b| !b.is_empty()) {
        containers.retain(|c| *c != base);
        containers.push(base);
    }
    for container in &containers {
        let config = lxcpath.join(container).join("config");
        if config.exists() {
            if let Err(e) = tool(lxc("lxc-destroy", &lxcpath, container).arg("-f")) {
                // Its folder stays, its config with it: the container may still run, and
                // only with its config can a later `undeploy` stop it.
                note(Err(e));
                continue;
            }
        }
        let leftover = lxcpath.join(container);
        if leftover.exists() {
            note(fs_err::remove_dir_all(&leftover).map_err(Into::into));
        }
    }
    if let Some(record) = &record {
        for link in record.nodes.iter().map(|n| n.veth.as_str()).chain([record.bridge.as_str()]) {
            if link_exists(link) {
                note(tool(Command::new("ip").args(["link", "del", link])).map(|_| ()));
            }
        }
    }
    if first.is_none() && dir.exists() {
        if let Err(e) = fs_err::remove_dir_all(dir) {
            first = Some(e.into());
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err(e.context(format!("cannot remove the deployment in `{}`", dir.display()))),
    }
}

/// A short id of this deployment on the machine: bridges, veths and containers are named
/// from it, so two stores deploying the same name never collide.
fn machine_id(dir: &Path) -> String {
    Digest::of(dir.as_os_str().as_encoded_bytes()).hex()[..8].to_owned()
}

/// Deploys the plan of `options.system` over the candidate, and waits until every node is
/// ready (module docs). The deployment is torn down on failure unless `keep`.
pub fn deploy(ctx: &Context, options: &DeployOptions<'_>) -> anyhow::Result<(Deployment, Plan)> {
    let system = options.system;
    let dir = folder(ctx, options.name)?;
    let sde = options.manifest.source_date_epoch;
    // Everything that can fail without touching the machine comes first.
    let planned = plan::plan(&ctx.store, system, options.candidate, sde)?;
    let candidate_tree = crate::qualify::read_rootfs(ctx, options.candidate_dir, options.manifest)?;
    let node_trees =
        (0..system.nodes.len()).map(|i| planned.node_tree(&candidate_tree, i)).collect::<Result<Vec<_>, _>>()?;
    drop(candidate_tree);

    fs_err::create_dir_all(deployments(ctx))?;
    match fs_err::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(DeployError::Exists { name: options.name.to_owned() }.into())
        }
        Err(e) => return Err(e.into()),
    }
    if dir.to_string_lossy().contains(char::is_whitespace) {
        let _ = fs_err::remove_dir(&dir);
        bail!("the store's path `{}` has whitespace, which LXC's config cannot hold", dir.display());
    }
    let mut guard = Guard { dir: &dir, armed: true };
    let id = machine_id(&dir);
    let lxcpath = dir.join("lxc");
    let tiers = system.tiers().expect("validated when parsed");
    let mut record = Deployment {
        version: 1,
        name: options.name.to_owned(),
        runtime: match options.backend {
            Backend::Lxc => "lxc".into(),
            Backend::Lxd => "lxd".into(),
        },
        phase: Phase::Creating,
        system_file: system.path.clone(),
        system: system.name.to_string(),
        system_sha256: system.sha256,
        candidate: options.candidate,
        candidate_dir: options.candidate_dir.to_owned(),
        plan: planned.digest,
        bridge: format!("cand{id}"),
        subnet: system.subnet(),
        lxcpath: lxcpath.clone(),
        base: format!("c{id}-base"),
        unpack_ms: None,
        created: crate::sbom::rfc3339(now_ms() / 1000),
        nodes: planned
            .document
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeRecord {
                name: n.name.clone(),
                role: n.role.clone(),
                container: format!("c{id}-{}", n.name),
                address: n.address,
                veth: format!("cv{id}{i:02x}"),
                tier: n.tier,
                probe: system.roles[n.role.as_str()].ready.clone(),
                started_ms: None,
                ready_ms: None,
                create_us: None,
            })
            .collect(),
        lxd: None,
    };
    if options.backend == Backend::Lxd {
        // Everything `undeploy` needs to find what it makes, before anything is made.
        record.base = String::new();
        let rootfs = options.manifest.incus_rootfs();
        for name in [lxd::META, rootfs.file_name()] {
            copy_checked(options, &dir.join(name), name, "incus")?;
        }
        record.lxd = Some(prepare_lxd(&dir, rootfs)?);
    }
    record.write(&dir)?;
    write_atomic(&dir.join(PLAN), &planned.document.canonical())?;
    for sub in ["work", "logs", "lxc"] {
        fs_err::create_dir(dir.join(sub))?;
    }

    make_bridge(&record.bridge)?;
    let started = match options.backend {
        Backend::Lxc => {
            let common = unpack_base(&dir, &lxcpath, options, &mut record)?;
            create_nodes(&lxcpath, &common, &node_trees, &mut record)?;
            start_tiers(&dir, &LxcNodes { lxcpath: &lxcpath }, system, &tiers, &mut record)
        }
        Backend::Lxd => {
            let lxd = create_lxd(&dir, system, &node_trees, &mut record)?;
            start_tiers(&dir, &lxd, system, &tiers, &mut record)
        }
    };
    if let Err(e) = started {
        record.phase = Phase::Failed;
        record.write(&dir)?;
        if options.keep {
            guard.armed = false;
        }
        return Err(e);
    }
    record.phase = Phase::Ready;
    record.write(&dir)?;
    guard.armed = false;
    Ok((record, planned))
}

/// Unpacks the candidate's own `lxc` format (checked against its manifest) once, as the base
/// container every node's overlay sits on; returns what the base's config says about the
/// distribution, without what is the base's own (rootfs, name, network).
fn unpack_base(
    dir: &Path,
    lxcpath: &Path,
    options: &DeployOptions<'_>,
    record: &mut Deployment,
) -> anyhow::Result<String> {
    // The candidate's own `lxc` format, checked against its manifest, unpacked once.
    for name in ["meta.tar.xz", crate::lxc::ROOTFS] {
        copy_checked(options, &dir.join("work").join(name), name, "lxc")?;
    }
    let extra = dir.join("work/extra.conf");
    fs_err::write(&extra, "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")?;
    let (meta, rootfs) = (dir.join("work/meta.tar.xz"), dir.join("work").join(crate::lxc::ROOTFS));
    let unpacking = Instant::now();
    tool(lxc("lxc-create", lxcpath, &record.base).arg("-t").arg("local").arg("-f").arg(&extra).arg("--").args([
        "-m".as_ref(),
        meta.as_os_str(),
        "-f".as_ref(),
        rootfs.as_os_str(),
    ]))
    .context("cannot unpack the candidate with `lxc-create -t local` (Debian packages `lxc`, `lxc-templates`)")?;
    record.unpack_ms = Some(unpacking.elapsed().as_millis() as u64);
    for name in ["meta.tar.xz", crate::lxc::ROOTFS] {
        fs_err::remove_file(dir.join("work").join(name))?;
    }
    let base_config = fs_err::read_to_string(lxcpath.join(&record.base).join("config"))?;
    // What the base's config says about the distribution, without what is the base's own.
    let common: String = base_config
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            !(key.starts_with("lxc.rootfs") || key.starts_with("lxc.uts") || key.starts_with("lxc.net"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(common)
}

/// Copies the candidate's `name`, checked against its manifest as it is read, to `to`.
fn copy_checked(options: &DeployOptions<'_>, to: &Path, name: &str, format: &str) -> anyhow::Result<()> {
    let mut checked =
        crate::qualify::open_checked(options.candidate_dir, options.manifest, name).with_context(|| {
            format!("the `{format}` format of `{}` is needed to deploy", options.candidate_dir.display())
        })?;
    std::io::copy(&mut checked, &mut fs_err::File::create(to)?)?;
    Ok(())
}

/// Writes each node's container: its overlay folder (what the node adds to the base) and its
/// config (the base's distribution lines, the overlay rootfs, its name and its veth on the
/// deployment's bridge with a fixed address and MAC, no gateway).
fn create_nodes(
    lxcpath: &Path,
    common: &str,
    node_trees: &[plan::NodeTree],
    record: &mut Deployment,
) -> anyhow::Result<()> {
    let base_rootfs = lxcpath.join(&record.base).join("rootfs");
    for (node, tree) in record.nodes.iter_mut().zip(node_trees) {
        let creating = Instant::now();
        let container = lxcpath.join(&node.container);
        let upper = container.join("overlay/delta0");
        fs_err::create_dir_all(&upper)?;
        crate::instance::materialize(&tree.delta, &upper)
            .with_context(|| format!("cannot write the files of node `{}`", node.name))?;
        let mut config = common.to_owned();
        config.push_str(&format!(
            "\n# Node `{}` (role `{}`) of system `{}`, plan {}\n\
             lxc.rootfs.path = overlay:{}:{}\n\
             lxc.uts.name = {}\n\
             lxc.net.0.type = veth\nlxc.net.0.link = {}\nlxc.net.0.name = eth0\nlxc.net.0.flags = up\n\
             lxc.net.0.veth.pair = {}\nlxc.net.0.hwaddr = {}\n\
             lxc.net.0.ipv4.address = {}/24\n",
            node.name,
            node.role,
            record.system,
            record.plan,
            base_rootfs.display(),
            upper.display(),
            node.name,
            record.bridge,
            node.veth,
            hwaddr(node.address),
            node.address,
        ));
        if tree.full.resolve("sbin/init").is_none() {
            config.push_str("lxc.init.cmd = /bin/sleep 2147483647\n");
        }
        fs_err::write(container.join("config"), config)?;
        node.create_us = Some(creating.elapsed().as_micros() as u64);
    }

    Ok(())
}

/// Starts the nodes tier by tier, a tier's nodes together, and waits for each one's probe;
/// the first failure of a tier is returned once the whole tier has answered.
pub(super) fn start_tiers(
    dir: &Path,
    runtime: &dyn Nodes,
    system: &System,
    tiers: &[Vec<&crate::system::NodeSpec>],
    record: &mut Deployment,
) -> anyhow::Result<()> {
    record.phase = Phase::Starting;
    record.write(dir)?;
    let logs = dir.join("logs");
    for tier in tiers {
        let indices: Vec<usize> =
            tier.iter().map(|n| record.nodes.iter().position(|r| r.name == n.name.as_str()).expect("a node")).collect();
        for &i in &indices {
            record.nodes[i].started_ms = Some(now_ms());
            let node = &record.nodes[i];
            let log = logs.join(format!("{}.lxc.log", node.name));
            let timeout = Duration::from_secs(system.roles[node.role.as_str()].ready_timeout());
            runtime.start(node, &log, timeout)?;
        }
        record.write(dir)?;
        let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = indices
                .iter()
                .map(|&i| {
                    let node = &record.nodes[i];
                    let timeout = Duration::from_secs(system.roles[node.role.as_str()].ready_timeout());
                    let logs = &logs;
                    scope.spawn(move || wait_ready(runtime, node, timeout, logs))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a probe panicked")))).collect()
        });
        let mut failure = None;
        for (&i, result) in indices.iter().zip(results) {
            match result {
                Ok(at) => record.nodes[i].ready_ms = Some(at),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        record.write(dir)?;
    }
    Ok(())
}

/// Waits until `node` runs and its probe passes; returns when it was ready (ms since epoch).
fn wait_ready(runtime: &dyn Nodes, node: &NodeRecord, timeout: Duration, logs: &Path) -> anyhow::Result<u64> {
    let started = Instant::now();
    let Some(probe) = &node.probe else { return Ok(now_ms()) };
    let probe_log = logs.join(format!("{}.probe.log", node.name));
    // What the error reports: the last attempt that ran to its end, because the final one is
    // usually cut short by the deadline and says nothing.
    let mut reported: Option<Attached> = None;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let attempt = match runtime.exec(node, &["/bin/sh", "-c", probe], left.min(PROBE_ATTEMPT)) {
            Ok(attempt) => attempt,
            // LXD refuses to run a command in a stopped instance: that is the node stopping,
            // the failure a qualification reports as the node's, not an error of the tool.
            Err(_) if runtime.state(node).is_none_or(|s| s != "RUNNING") => {
                return Err(DeployError::Stopped { node: node.name.clone() }.into());
            }
            Err(e) => return Err(e.context(format!("node `{}`: cannot run its readiness probe", node.name))),
        };
        fs_err::write(&probe_log, &attempt.output)?;
        if attempt.exit == Exit::Code(0) {
            return Ok(now_ms());
        }
        if runtime.state(node).is_none_or(|s| s != "RUNNING") {
            return Err(DeployError::Stopped { node: node.name.clone() }.into());
        }
        if attempt.exit != Exit::TimedOut || reported.is_none() {
            reported = Some(attempt);
        }
        if started.elapsed() + PROBE_PAUSE >= timeout {
            let last = reported.expect("one attempt ran");
            return Err(DeployError::ProbeTimeout {
                node: node.name.clone(),
                probe: probe.clone(),
                seconds: timeout.as_secs(),
                exit: last.exit.to_string(),
                output: crate::qualify::last_lines(&last.output, crate::qualify::SHOWN_LINES),
            }
            .into());
        }
        std::thread::sleep(PROBE_PAUSE);
    }
}

/// A node's MAC: locally administered, derived from its address, so a plan gives the same.
pub(super) fn hwaddr(address: std::net::Ipv4Addr) -> String {
    let [_, a, b, c] = address.octets();
    format!("02:ca:00:{a:02x}:{b:02x}:{c:02x}")
}

/// The container's state (`RUNNING`, `STOPPED` …), if LXC knows it.
pub fn container_state(lxcpath: &Path, container: &str) -> Option<String> {
    let out = tool(lxc("lxc-info", lxcpath, container).args(["-s", "-H"])).ok()?;
    Some(out.trim().to_owned())
}

/// What a command run in a node did.
pub struct Attached {
    pub exit: Exit,
    pub output: Vec<u8>,
    pub duration: Duration,
    /// Seconds since the epoch.
    pub started: u64,
}

/// Runs `argv` in the container (`lxc-attach --clear-env`, the qualification environment),
/// stdin from `stdin` (a script) or nothing, stdout and stderr merged into a spool file, and
/// killed at `timeout`.
pub fn attach(
    lxcpath: &Path,
    container: &str,
    argv: &[&str],
    stdin: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<Attached> {
    let spool = tempfile::tempfile()?;
    let mut cmd = lxc("lxc-attach", lxcpath, container);
    cmd.arg("--clear-env");
    for (key, value) in crate::sandbox::default_env(0) {
        if key != "SOURCE_DATE_EPOCH" {
            cmd.arg("--set-var").arg(format!("{key}={value}"));
        }
    }
    cmd.arg("--").args(argv);
    cmd.stdout(spool.try_clone()?).stderr(spool.try_clone()?);
    match stdin {
        Some(path) => cmd.stdin(fs_err::File::open(path)?.into_parts().0),
        None => cmd.stdin(Stdio::null()),
    };
    let started_at = now_ms() / 1000;
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot run `lxc-attach` (Debian package `lxc`)")?;
    let exit = crate::qualify::wait_limited(&mut child, started, timeout)?;
    let duration = started.elapsed();
    let mut output = Vec::new();
    let mut spool = spool;
    let len = spool.metadata()?.len();
    std::io::Seek::seek(&mut spool, std::io::SeekFrom::Start(len.saturating_sub(OUTPUT_LIMIT)))?;
    std::io::Read::read_to_end(&mut spool, &mut output)?;
    Ok(Attached { exit, output, duration, started: started_at })
}

/// The body of `POST /1.0/instances` for a node: from the image, on the deployment's bridge
/// with its host end and MAC fixed, its address set by a start hook inside the node.
fn instance_request(node: &NodeRecord, image: &Digest, bridge: &str) -> Value {
    // LXD hands its NIC to LXC as `lxc.net.0` (type `phys`, the veth's container end);
    // `raw.lxc` is appended after it, so LXC sets the address inside the node's namespace
    // before its init runs, as on the LXC backend. No gateway: no default route.
    // Likewise its hostname is the node's name, not the instance's (`c<id>-NAME`).
    let raw = format!("lxc.net.0.ipv4.address = {}/24\nlxc.uts.name = {}\n", node.address, node.name);
    json!({
        "name": node.container,
        "source": { "type": "image", "fingerprint": image.hex() },
        "config": { "raw.lxc": raw },
        "devices": {
            "eth0": {
                "type": "nic",
                "nictype": "bridged",
                "parent": bridge,
                "name": "eth0",
                "host_name": node.veth,
                "hwaddr": hwaddr(node.address),
            },
        },
    })
}

/// The daemon of `LXD_DIR` and the image of the candidate's `incus` archives in `dir`
/// (copied there, checked): what the record must hold before anything is made.
fn prepare_lxd(dir: &Path, rootfs: crate::recipe::IncusRootfs) -> anyhow::Result<LxdRecord> {
    let lxd = lxd::Lxd::from_env();
    let image = lxd::fingerprint(&dir.join(lxd::META), &dir.join(rootfs.file_name()))?;
    let imported = !lxd.has_image(&image)?;
    Ok(LxdRecord { socket: lxd.socket().to_owned(), image, imported, rootfs })
}

/// Imports the image (unless it was there), makes every node's instance from it on the
/// deployment's bridge, and pushes each node's delta into it.
fn create_lxd(
    dir: &Path,
    system: &System,
    node_trees: &[plan::NodeTree],
    record: &mut Deployment,
) -> anyhow::Result<LxdNodes> {
    let lxd_record = record.lxd.clone().expect("an LXD deployment");
    let lxd = lxd::Lxd::at(lxd_record.socket.clone());
    let (meta, rootfs) = (dir.join(lxd::META), dir.join(lxd_record.rootfs.file_name()));
    if lxd_record.imported {
        let answer = lxd.import_image(&meta, &rootfs).context("cannot import the candidate's `incus` image")?;
        let got = answer["metadata"]["fingerprint"].as_str().unwrap_or_default();
        if got != lxd_record.image.hex() {
            bail!("LXD imported the image as `{got}`, not as its fingerprint {}", lxd_record.image.hex());
        }
    }
    fs_err::remove_file(&meta)?;
    fs_err::remove_file(&rootfs)?;
    for (node, tree) in record.nodes.iter_mut().zip(node_trees) {
        let creating = Instant::now();
        let spec = system.nodes.iter().find(|n| n.name.as_str() == node.name).expect("a node of the system");
        let path = match &spec.target {
            // Placement on a cluster member; a standalone daemon refuses any target.
            Some(target) => format!("/1.0/instances?target={}", lxd::query(target)),
            None => "/1.0/instances".to_owned(),
        };
        let request = instance_request(node, &lxd_record.image, &record.bridge);
        lxd.json("POST", &path, Some(&request)).with_context(|| format!("cannot make node `{}`", node.name))?;
        // The image's `create` templates write the hostname and hosts file from the
        // instance's name; the plan's generated ones (the node's name, every node) win.
        let instance = format!("/1.0/instances/{}", node.container);
        let mut config = lxd.json("GET", &instance, None)?;
        if let Some(keys) = config["config"].as_object_mut() {
            keys.remove("volatile.apply_template");
        }
        lxd.json("PUT", &instance, Some(&config)).with_context(|| format!("cannot configure node `{}`", node.name))?;
        lxd.push_tree(&node.container, &tree.delta)
            .with_context(|| format!("cannot write the files of node `{}`", node.name))?;
        node.create_us = Some(creating.elapsed().as_micros() as u64);
    }
    Ok(LxdNodes { lxd })
}

/// Removes what an LXD deployment made: its instances (stopped first) and the image if it
/// imported it. What is already gone is not an error; an unreachable daemon is.
fn remove_lxd(record: &Deployment, lxd_record: &LxdRecord) -> anyhow::Result<()> {
    let lxd = lxd::Lxd::at(lxd_record.socket.clone());
    let gone = |r: Result<Value, lxd::LxdError>| match r {
        Ok(_) | Err(lxd::LxdError::Refused { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    };
    for node in &record.nodes {
        let instance = format!("/1.0/instances/{}", node.container);
        if lxd.status(&node.container).is_some_and(|s| s != "Stopped") {
            let stop = json!({ "action": "stop", "force": true, "timeout": 30 });
            gone(lxd.json("PUT", &format!("{instance}/state"), Some(&stop)))?;
        }
        gone(lxd.json("DELETE", &instance, None)).with_context(|| format!("cannot delete node `{}`", node.name))?;
    }
    if lxd_record.imported {
        gone(lxd.json("DELETE", &format!("/1.0/images/{}", lxd_record.image.hex()), None))
            .context("cannot delete the deployment's image")?;
    }
    Ok(())
}

/// The nodes of an LXD deployment.
pub struct LxdNodes {
    pub lxd: lxd::Lxd,
}

impl Nodes for LxdNodes {
    fn start(&self, node: &NodeRecord, log: &Path, timeout: Duration) -> anyhow::Result<()> {
        let start = json!({ "action": "start", "timeout": timeout.as_secs().clamp(1, 30) });
        let started = self.lxd.json("PUT", &format!("/1.0/instances/{}/state", node.container), Some(&start));
        // LXD's own log of the start, kept like LXC's.
        if let Ok(text) = self.lxd.get_bytes(&format!("/1.0/instances/{}/logs/lxc.log", node.container)) {
            fs_err::write(log, text)?;
        }
        started.with_context(|| format!("cannot start node `{}`", node.name))?;
        Ok(())
    }

    fn state(&self, node: &NodeRecord) -> Option<String> {
        self.lxd.status(&node.container).map(|s| s.to_uppercase())
    }

    fn exec(&self, node: &NodeRecord, argv: &[&str], timeout: Duration) -> anyhow::Result<Attached> {
        timed(|| self.lxd.exec(&node.container, argv, timeout))
    }

    /// The script is pushed as `/run/candidate/NAME` (exactly the bytes hashed) and run
    /// with `/bin/sh`: an exec without a websocket has no stdin.
    fn script(&self, node: &NodeRecord, source: &Path, timeout: Duration) -> anyhow::Result<Attached> {
        let name = source.file_name().context("a script has a name")?.to_string_lossy();
        let path = format!("/run/candidate/{name}");
        self.lxd.push(&node.container, "/run/candidate", "directory", 0o755, (0, 0), &[])?;
        self.lxd.push(&node.container, &path, "file", 0o644, (0, 0), &fs_err::read(source)?)?;
        timed(|| self.lxd.exec(&node.container, &["/bin/sh", &path], timeout))
    }
}

/// A command's run, with when it started and how long it took.
fn timed(run: impl FnOnce() -> anyhow::Result<(Exit, Vec<u8>)>) -> anyhow::Result<Attached> {
    let started_at = now_ms() / 1000;
    let started = Instant::now();
    let (exit, output) = run()?;
    Ok(Attached { exit, output, duration: started.elapsed(), started: started_at })
}

/// Every deployment in the store, by name.
pub fn list(ctx: &Context) -> anyhow::Result<Vec<Deployment>> {
    let mut out = Vec::new();
    let Ok(entries) = fs_err::read_dir(deployments(ctx)) else { return Ok(out) };
    for entry in entries {
        let record = entry?.path().join(RECORD);
        if record.exists() {
            out.push(Deployment::read(&record)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The record of deployment `name`.
pub fn open(ctx: &Context, name: &str) -> anyhow::Result<(PathBuf, Deployment)> {
    let dir = folder(ctx, name)?;
    let record = dir.join(RECORD);
    if !dir.exists() {
        return Err(DeployError::NotFound { name: name.to_owned() }.into());
    }
    if !record.exists() {
        // Killed before its record was written: nothing was made yet but the folder.
        bail!(
            "deployment `{name}` has no record (its builder was stopped before making anything); `undeploy` removes it"
        );
    }
    Ok((dir, Deployment::read(&record)?))
}

/// Removes deployment `name` ([`teardown`]).
pub fn undeploy(ctx: &Context, name: &str) -> anyhow::Result<Option<Deployment>> {
    let dir = folder(ctx, name)?;
    if !dir.exists() {
        return Err(DeployError::NotFound { name: name.to_owned() }.into());
    }
    let record = Deployment::read(&dir.join(RECORD)).ok();
    teardown(&dir)?;
    Ok(record)
}

/// Verifies the candidate before it is deployed: with a policy (`channels.toml`), every
/// check of `candidate verify` with the policy's `[verify]` keys; without one, the `lxc`
/// archives are still checked against the manifest when they are read.
pub fn check_candidate(ctx: &Context, dir: &Path, id: &Digest, policy: &Path) -> anyhow::Result<()> {
    if !policy.exists() {
        ctx.printer.detail("Unverified", format_args!("no policy at `{}`: signatures not checked", policy.display()));
        return Ok(());
    }
    let policy = crate::channel::Policy::load(policy)?;
    let mut report = crate::verify::Report::new(false);
    crate::verify::check(ctx, dir, &policy.verify_keys, policy.verify_threshold, None, &mut report)?;
    if let Some(first) = report.failures.first() {
        return Err(crate::error::CheckFailed {
            message: format!("candidate {id} fails verification, so it is not deployed: {first}"),
            hint: None,
        }
        .into());
    }
    ctx.printer.status("Verified", format_args!("candidate {id} with the keys of `{}`", policy.path.display()));
    Ok(())
}

/// A candidate named for a deployment: a folder, an id prefix, or `CHANNEL@latest` (the
/// newest candidate of a channel whose log verifies under the policy).
pub fn resolve_candidate(
    ctx: &Context,
    arg: &str,
    policy: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<(PathBuf, Digest)> {
    match arg.strip_suffix("@latest") {
        Some(channel) if !Path::new(arg).exists() => {
            let records = crate::release::verified_log(ctx, channel, policy, channels)?;
            let latest = records.last().with_context(|| format!("channel `{channel}` holds no candidate yet"))?;
            crate::registry::resolve(&ctx.store, &latest.candidate.hex())
        }
        _ => crate::registry::resolve(&ctx.store, arg),
    }
}
