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
    let mut temp = tempfile::Builder::new().prefix(".record-").tempfile_in(parent)?;
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
fn tool(cmd: &mut Command) -> anyhow::Result<String> {
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
fn make_bridge(name: &str) -> anyhow::Result<()> {
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
    let lxcpath = dir.join("lxc");
    let mut containers: Vec<String> = fs_err::read_dir(&lxcpath)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    containers.sort();
    // Nodes before the base their root filesystems lie over.
    if let Some(base) = record.as_ref().map(|r| r.base.clone()) {
        containers.retain(|c| *c != base);
        containers.push(base);
    }
    for container in &containers {
        let config = lxcpath.join(container).join("config");
        if config.exists() {
            note(tool(lxc("lxc-destroy", &lxcpath, container).arg("-f")).map(|_| ()));
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
        runtime: "lxc".into(),
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
    };
    record.write(&dir)?;
    write_atomic(&dir.join(PLAN), &planned.document.canonical())?;
    for sub in ["work", "logs", "lxc"] {
        fs_err::create_dir(dir.join(sub))?;
    }

    make_bridge(&record.bridge)?;
    let common = unpack_base(&dir, &lxcpath, options, &mut record)?;
    create_nodes(&lxcpath, &common, &node_trees, &mut record)?;
    if let Err(e) = start_tiers(&dir, &lxcpath, system, &tiers, &mut record) {
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
        let mut checked =
            crate::qualify::open_checked(options.candidate_dir, options.manifest, name).with_context(|| {
                format!("the `lxc` format of `{}` is needed to deploy", options.candidate_dir.display())
            })?;
        std::io::copy(&mut checked, &mut fs_err::File::create(dir.join("work").join(name))?)?;
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
        let [_, a, b, c] = node.address.octets();
        let mut config = common.to_owned();
        config.push_str(&format!(
            "\n# Node `{}` (role `{}`) of system `{}`, plan {}\n\
             lxc.rootfs.path = overlay:{}:{}\n\
             lxc.uts.name = {}\n\
             lxc.net.0.type = veth\nlxc.net.0.link = {}\nlxc.net.0.name = eth0\nlxc.net.0.flags = up\n\
             lxc.net.0.veth.pair = {}\nlxc.net.0.hwaddr = 02:ca:00:{a:02x}:{b:02x}:{c:02x}\n\
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
fn start_tiers(
    dir: &Path,
    lxcpath: &Path,
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
            let node = &mut record.nodes[i];
            node.started_ms = Some(now_ms());
            let log = logs.join(format!("{}.lxc.log", node.name));
            tool(lxc("lxc-start", lxcpath, &node.container).arg("-d").arg("-o").arg(&log))
                .with_context(|| format!("cannot start node `{}`", node.name))?;
        }
        record.write(dir)?;
        let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = indices
                .iter()
                .map(|&i| {
                    let node = &record.nodes[i];
                    let timeout = Duration::from_secs(system.roles[node.role.as_str()].ready_timeout());
                    let (lxcpath, logs) = (&lxcpath, &logs);
                    scope.spawn(move || wait_ready(lxcpath, node, timeout, logs))
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
fn wait_ready(lxcpath: &Path, node: &NodeRecord, timeout: Duration, logs: &Path) -> anyhow::Result<u64> {
    let started = Instant::now();
    let wait_secs = timeout.as_secs().clamp(1, 30).to_string();
    tool(lxc("lxc-wait", lxcpath, &node.container).args(["-s", "RUNNING", "-t", &wait_secs]))
        .with_context(|| format!("node `{}` did not reach RUNNING", node.name))?;
    let Some(probe) = &node.probe else { return Ok(now_ms()) };
    let probe_log = logs.join(format!("{}.probe.log", node.name));
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let attempt = attach(lxcpath, &node.container, &["/bin/sh", "-c", probe], None, left.min(PROBE_ATTEMPT))?;
        fs_err::write(&probe_log, &attempt.output)?;
        if attempt.exit == Exit::Code(0) {
            return Ok(now_ms());
        }
        if !state_is(lxcpath, &node.container, "RUNNING") {
            return Err(DeployError::Stopped { node: node.name.clone() }.into());
        }
        if started.elapsed() + PROBE_PAUSE >= timeout {
            return Err(DeployError::ProbeTimeout {
                node: node.name.clone(),
                probe: probe.clone(),
                seconds: timeout.as_secs(),
                exit: attempt.exit.to_string(),
                output: crate::qualify::last_lines(&attempt.output, crate::qualify::SHOWN_LINES),
            }
            .into());
        }
        std::thread::sleep(PROBE_PAUSE);
    }
}

/// Whether the container is in `state` (`lxc-info -s`).
pub fn state_is(lxcpath: &Path, container: &str, state: &str) -> bool {
    container_state(lxcpath, container).is_some_and(|s| s == state)
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
