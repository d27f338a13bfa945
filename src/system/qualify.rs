//! System qualification (`candidate test CANDIDATE --system FILE`): a fresh deployment, every
//! role's tests on every node of that role, the system tests from their nodes against the
//! others, a report folder per node, JUnit XML, and a signed test-result attestation whose
//! subjects are the candidate **and the plan**. The deployment is always torn down: on
//! success, on failure, and — through a watchdog process — when the builder is interrupted
//! or killed.
//!
//! * **Scripts** run as `/bin/sh -s` through `lxc-attach`, fed on stdin from the bytes that
//!   were hashed (so the digest attested is what ran), each under the time limit.
//! * **The watchdog** is `candidate undeploy NAME --when-stdin-closes`, started in its own
//!   process group before anything is made, holding the read end of a pipe whose write end
//!   only the builder holds. Whenever the builder ends — returning, Ctrl-C (which the
//!   watchdog, outside the terminal's process group, does not get), SIGKILL — the pipe
//!   closes and the watchdog removes the deployment if it is still there.
//! * **The report folder** (`--report DIR`, default `NAME_VERSION_ARCH.SYSTEM.test/` beside
//!   the candidate) holds `junit.xml`, `plan.json`, `deployment.json` and one folder per
//!   node: each script's output (`NAME.log`), LXC's log and the probe's last output, and the
//!   node's own `/var/log`, read from its root filesystem before teardown.
//! * **The attestation** `NAME_VERSION_ARCH.SYSTEM.system-test.intoto.json` beside the
//!   candidate: subjects `manifest.json` (the candidate id) and `plan/SYSTEM` (the plan
//!   digest); predicate test-result v0.1 with one configuration entry per node and script
//!   (annotations: node, role, kind, exit, duration, start, output tail). A policy whose
//!   channel lists `system-tests = ["systems/SYSTEM.toml"]` requires a PASSED one whose plan
//!   is the plan of this candidate and that file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::lxc::{self, Attached, DeployOptions, Deployment};
use super::plan::PLAN_SUBJECT_PREFIX;
use super::System;
use crate::context::Context;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::keys::PrivateKey;
use crate::qualify::{last_lines, Script};
use crate::sandbox::Exit;

/// What kind of test a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// One of its role's `tests`, on the node itself.
    Node,
    /// One of its role's `system-tests`, from the node against the others.
    System,
}

/// One script's run on one node.
pub struct NodeRun {
    pub node: String,
    pub role: String,
    pub kind: TestKind,
    pub script: Script,
    pub run: Attached,
}

impl NodeRun {
    pub fn passed(&self) -> bool {
        self.run.exit == Exit::Code(0)
    }

    /// `NODE/SCRIPT`, how the attestation and the lines name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.node, self.script.name)
    }
}

pub struct SystemTestOptions<'a> {
    pub system: &'a System,
    pub candidate_dir: &'a Path,
    pub candidate: Digest,
    pub manifest: &'a crate::manifest::Manifest,
    pub timeout: Duration,
    pub sign: &'a [PrivateKey],
    /// The report folder.
    pub report: PathBuf,
    pub backend: lxc::Backend,
}

/// What a system qualification did.
pub struct SystemTested {
    pub deployment: Deployment,
    pub plan: Digest,
    pub runs: Vec<NodeRun>,
    pub junit: PathBuf,
    pub attestation: Option<PathBuf>,
}

impl SystemTested {
    pub fn passed(&self) -> bool {
        self.runs.iter().all(NodeRun::passed)
    }
}

/// Holds an exclusive `flock` on `REPORT.lock` beside the report folder until dropped (the
/// kernel drops it if the process dies); refuses at once if another run holds it.
fn lock_report(report: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(parent) = report.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    match crate::store::lock_beside(report, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => anyhow::bail!(crate::error::Hinted::new(
            format!("another `test --system` is writing the report folder `{}` now", report.display()),
            "give this run a folder of its own with `--report DIR`",
        )),
        Err(e) => Err(e).with_context(|| format!("cannot lock the report folder `{}`", report.display())),
    }
}

/// The default report folder: `NAME_VERSION_ARCH.SYSTEM.test/` beside the candidate.
pub fn default_report(dir: &Path, system: &System) -> PathBuf {
    sibling(dir, &format!("{}.test", system.name))
}

/// The attestation beside the candidate for `system`.
pub fn attestation_path(dir: &Path, system: &System) -> PathBuf {
    sibling(dir, &format!("{}.system-test.intoto.json", system.name))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.parent().unwrap_or(Path::new(".")).join(format!("{name}.{suffix}"))
}

/// The scripts of a role's list, read and hashed once, relative to the system file.
fn load(system: &System, paths: &[PathBuf]) -> anyhow::Result<Vec<Script>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let resolved: Vec<PathBuf> = paths.iter().map(|p| system.resolve(p)).collect();
    crate::qualify::load_scripts(&resolved)
}

/// The watchdog: removes deployment `name` when this process ends, however it ends.
fn watchdog(ctx: &Context, name: &str) -> anyhow::Result<crate::qualify::Watchdog> {
    let exe = std::env::current_exe().context("cannot find the running `candidate` for its watchdog")?;
    let mut undeploy = Command::new(exe);
    undeploy.arg("--quiet").arg("--store").arg(ctx.store.root().parent().unwrap_or(ctx.store.root())).args([
        "undeploy",
        name,
        "--when-stdin-closes",
    ]);
    crate::qualify::Watchdog::start(undeploy, "the deployment's watchdog")
}

/// Deploys the system fresh, runs its tests, collects the report, tears down, writes JUnit
/// XML and (with keys) the attestation.
pub fn test_system(ctx: &Context, options: &SystemTestOptions<'_>) -> anyhow::Result<SystemTested> {
    let system = options.system;
    let mut scripts = Vec::new();
    for (name, role) in &system.roles {
        scripts.push((name.clone(), load(system, &role.tests)?, load(system, &role.system_tests)?));
    }
    // Unique on the machine and in the store: a test deployment is never one an operator made.
    let name = format!("test-{}-{}", std::process::id(), &options.candidate.hex()[..8]);
    // One run writes a report folder at a time: a second (the same candidate on another
    // runtime, with the default folder) would wipe the first's and mix their files.
    let _report_lock = lock_report(&options.report)?;
    if options.report.exists() {
        fs_err::remove_dir_all(&options.report)
            .with_context(|| format!("cannot replace the report folder `{}`", options.report.display()))?;
    }
    fs_err::create_dir_all(&options.report)?;
    let watchdog = watchdog(ctx, &name)?;
    let result = deploy_and_run(ctx, options, &name, &scripts);
    // Always torn down here; the watchdog covers the builder's end by signal.
    let teardown = match lxc::folder(ctx, &name) {
        Ok(dir) if dir.exists() => lxc::teardown(&dir),
        _ => Ok(()),
    };
    // Closed and waited for: it finds nothing left to remove.
    drop(watchdog);
    let (deployment, plan, runs) = result?;
    teardown?;

    let junit = options.report.join("junit.xml");
    fs_err::write(&junit, junit_xml(system, &deployment, &runs))?;
    let attestation = if options.sign.is_empty() {
        None
    } else {
        let path = attestation_path(options.candidate_dir, system);
        let payload = statement(options.candidate, system, &plan, &runs, &deployment.runtime);
        crate::qualify::write_envelope(&path, &payload, options.sign)?;
        Some(path)
    };
    Ok(SystemTested { deployment, plan, runs, junit, attestation })
}

type RoleScripts = (crate::recipe::Name, Vec<Script>, Vec<Script>);

fn deploy_and_run(
    ctx: &Context,
    options: &SystemTestOptions<'_>,
    name: &str,
    scripts: &[RoleScripts],
) -> anyhow::Result<(Deployment, Digest, Vec<NodeRun>)> {
    let deploy = DeployOptions {
        name,
        system: options.system,
        candidate_dir: options.candidate_dir,
        candidate: options.candidate,
        manifest: options.manifest,
        backend: options.backend,
        // The caller always tears down; kept until then, a node that never became ready
        // still has its logs collected.
        keep: true,
    };
    let (deployment, plan) = match lxc::deploy(ctx, &deploy) {
        Ok((deployment, plan)) => (deployment, plan.digest),
        Err(e) => return not_ready(ctx, options, name, e),
    };
    fs_err::copy(deployment.lxcpath.with_file_name(lxc::PLAN), options.report.join("plan.json"))?;
    let staged = tempfile::Builder::new().prefix("system-test-").tempdir_in(ctx.store.root().join("tmp"))?;
    let mut runs = Vec::new();
    let runtime = lxc::nodes(&deployment);
    for kind in [TestKind::Node, TestKind::System] {
        for node in &deployment.nodes {
            let (_, tests, system_tests) = scripts.iter().find(|(r, _, _)| r.as_str() == node.role).expect("a role");
            let list = if kind == TestKind::Node { tests } else { system_tests };
            for script in list {
                let source = staged.path().join(&script.name);
                fs_err::write(&source, &script.bytes)?;
                let run = runtime
                    .script(node, &source, options.timeout)
                    .with_context(|| format!("cannot run `{}` on node `{}`", script.name, node.name))?;
                let verdict = if run.exit == Exit::Code(0) { "PASSED" } else { "FAILED" };
                ctx.printer.detail(verdict, format_args!("{}/{} ({})", node.name, script.name, run.exit));
                let copy = Script { name: script.name.clone(), bytes: script.bytes.clone(), sha256: script.sha256 };
                runs.push(NodeRun { node: node.name.clone(), role: node.role.clone(), kind, script: copy, run });
            }
        }
    }
    drop(runtime);
    collect_reports(options, &deployment, &runs)?;
    Ok((deployment, plan, runs))
}

/// A deployment whose node never became ready is a failed qualification, not an error: the
/// node's `ready` probe is its failing test (named `ready`, its command the script), and the
/// logs of every node made are collected. Any other failure to deploy is an error.
fn not_ready(
    ctx: &Context,
    options: &SystemTestOptions<'_>,
    name: &str,
    error: anyhow::Error,
) -> anyhow::Result<(Deployment, Digest, Vec<NodeRun>)> {
    let (node_name, probe, output) = match error.downcast_ref::<lxc::DeployError>() {
        Some(lxc::DeployError::ProbeTimeout { node, probe, output, .. }) => {
            (node.clone(), probe.clone(), output.join("\n"))
        }
        Some(lxc::DeployError::Stopped { node }) => (node.clone(), String::new(), "the node stopped".to_owned()),
        _ => return Err(error),
    };
    let dir = lxc::folder(ctx, name)?;
    let deployment = Deployment::read(&dir.join(lxc::RECORD))?;
    fs_err::copy(dir.join(lxc::PLAN), options.report.join("plan.json"))?;
    let node = deployment.node(&node_name).expect("the failing node is in the record");
    ctx.printer.status("Not ready", format_args!("{error:#}"));
    let run = Attached {
        exit: Exit::TimedOut,
        output: format!("{error}\n{output}\n").into_bytes(),
        duration: Duration::from_secs(options.system.roles[node.role.as_str()].ready_timeout()),
        started: node.started_ms.unwrap_or_default() / 1000,
    };
    let script = Script { name: "ready".into(), sha256: Digest::of(probe.as_bytes()), bytes: probe.into_bytes() };
    let runs = vec![NodeRun { node: node.name.clone(), role: node.role.clone(), kind: TestKind::Node, script, run }];
    collect_reports(options, &deployment, &runs)?;
    let plan = deployment.plan;
    Ok((deployment, plan, runs))
}

/// One folder per node: its scripts' output, LXC's and the probe's logs, its `/var/log`.
fn collect_reports(options: &SystemTestOptions<'_>, deployment: &Deployment, runs: &[NodeRun]) -> anyhow::Result<()> {
    let report = &options.report;
    let mut record = serde_json::to_vec_pretty(deployment).expect("serialises");
    record.push(b'\n');
    fs_err::write(report.join("deployment.json"), record)?;
    let logs = deployment.lxcpath.parent().unwrap_or(Path::new(".")).join("logs");
    for node in &deployment.nodes {
        let dir = report.join(&node.name);
        fs_err::create_dir_all(&dir)?;
        for run in runs.iter().filter(|r| r.node == node.name) {
            fs_err::write(dir.join(format!("{}.log", run.script.name)), &run.run.output)?;
        }
        for (from, to) in [("lxc.log", "lxc.log"), ("probe.log", "probe.log")] {
            let path = logs.join(format!("{}.{from}", node.name));
            if path.exists() {
                fs_err::copy(&path, dir.join(to))?;
            }
        }
        // The node's own logs, read through its init's root (the container is running). An
        // LXD node may run on another machine of a cluster: its logs stay in it.
        if deployment.lxd.is_some() {
            continue;
        }
        let pid = Command::new("lxc-info")
            .arg("-P")
            .arg(&deployment.lxcpath)
            .args(["-n", &node.container, "-p", "-H"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if let Some(pid) = pid {
            copy_node_logs(Path::new(&format!("/proc/{pid}/root")), &dir.join("var-log"))?;
        }
    }
    Ok(())
}

/// Copies the regular files under the node's `/var/log`, its root at `root` (its init's
/// `/proc/PID/root`). Every name is resolved inside the node: `/var/log` itself with
/// `RESOLVE_IN_ROOT` (a node's `/var -> /root` is its own `/root`; walked as a host path it
/// was the host's), then each entry by its descriptor, never through a symlink, and only
/// regular files are opened (not a node's fifo or device node). No `/var/log`: nothing.
fn copy_node_logs(root: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let Ok(root) = fs_err::File::open(root) else { return Ok(()) };
    let log = std::ffi::CString::new("var/log").expect("no NUL");
    // SAFETY: `open_how` is plain old data; zeroed is a valid value to fill in.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, C string and struct; the result is a descriptor we own.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root.as_raw_fd(), log.as_ptr(), &how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Ok(());
    }
    // SAFETY: a fresh descriptor, closed on drop.
    copy_regular_files_at(&std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }), to)
}

/// [`copy_node_logs`] below its `/var/log`: the folder open as `dir` (`O_PATH`).
fn copy_regular_files_at(dir: &std::fs::File, to: &Path) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let listing = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let Ok(entries) = fs_err::read_dir(&listing) else { return Ok(()) };
    for entry in entries {
        let name = entry?.file_name();
        let c_name = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()))?;
        // SAFETY: a live descriptor and C string; O_NOFOLLOW|O_PATH opens no symlink's target
        // and no device; the result is a descriptor we own.
        let fd = unsafe {
            libc::openat(dir.as_raw_fd(), c_name.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        };
        if fd < 0 {
            continue;
        }
        // SAFETY: as above.
        let entry = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // The entry itself (a symlink is a symlink here), by its descriptor.
        let meta = entry.metadata()?;
        let reopen = format!("/proc/self/fd/{}", entry.as_raw_fd());
        let target = to.join(&name);
        if meta.is_dir() {
            copy_regular_files_at(&entry, &target)?;
        } else if meta.is_file() {
            fs_err::create_dir_all(to)?;
            // The very inode just looked at, reopened for reading through its descriptor.
            let mut from = fs_err::File::open(&reopen)?;
            std::io::copy(&mut from, &mut fs_err::File::create(&target)?)?;
        }
    }
    Ok(())
}

/// XML character data and attribute values: the five specials escaped, and characters XML
/// 1.0 cannot hold (most control characters) replaced, so any script output is well-formed.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML as Jenkins and GitLab read it: one `<testsuite>` per node (named `NODE (ROLE)`),
/// one `<testcase>` per script (`classname` = `SYSTEM.NODE`), a `<failure>` with the exit
/// and the output's tail for each failing one, the output in `<system-out>`.
pub fn junit_xml(system: &System, deployment: &Deployment, runs: &[NodeRun]) -> String {
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    let failures = runs.iter().filter(|r| !r.passed()).count();
    let total: Duration = runs.iter().map(|r| r.run.duration).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        xml(system.name.as_str()),
        runs.len(),
        secs(total)
    );
    for node in &deployment.nodes {
        let mine: Vec<&NodeRun> = runs.iter().filter(|r| r.node == node.name).collect();
        let node_time: Duration = mine.iter().map(|r| r.run.duration).sum();
        let timestamp = mine.first().map_or_else(String::new, |r| crate::sbom::rfc3339(r.run.started));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{} ({})\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\" timestamp=\"{}\" hostname=\"{}\">",
            xml(&node.name),
            xml(&node.role),
            mine.len(),
            mine.iter().filter(|r| !r.passed()).count(),
            secs(node_time),
            xml(timestamp.trim_end_matches('Z')),
            xml(&node.name)
        );
        out.push_str("    <properties>\n");
        for (key, value) in [
            ("candidate", deployment.candidate.to_string()),
            ("plan", deployment.plan.to_string()),
            ("role", node.role.clone()),
            ("address", node.address.to_string()),
        ] {
            let _ = writeln!(out, "      <property name=\"{key}\" value=\"{}\"/>", xml(&value));
        }
        out.push_str("    </properties>\n");
        for run in mine {
            let _ = write!(
                out,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{}\">",
                xml(system.name.as_str()),
                xml(&node.name),
                xml(&run.script.name),
                secs(run.run.duration)
            );
            let output = String::from_utf8_lossy(&run.run.output);
            if !run.passed() {
                let tail = last_lines(&run.run.output, crate::qualify::SHOWN_LINES).join("\n");
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    xml(&run.run.exit.to_string()),
                    kind_name(run.kind),
                    xml(&tail)
                );
            }
            let _ = writeln!(out, "\n      <system-out>{}</system-out>\n    </testcase>", xml(&output));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn kind_name(kind: TestKind) -> &'static str {
    match kind {
        TestKind::Node => "node-test",
        TestKind::System => "system-test",
    }
}

/// The test-result statement: about the candidate and the plan, results per node and role,
/// and the runtime the nodes ran on (`lxc` or `lxd`, as the deployment records it).
fn statement(candidate: Digest, system: &System, plan: &Digest, runs: &[NodeRun], runtime: &str) -> Vec<u8> {
    let configuration: Vec<Value> = runs
        .iter()
        .map(|r| {
            let (code, signal) = crate::qualify::exit_parts(r.run.exit);
            json!({
                "name": r.id(),
                "digest": { "sha256": r.script.sha256.hex() },
                "annotations": {
                    "runtime": runtime,
                    "node": r.node,
                    "role": r.role,
                    "kind": kind_name(r.kind),
                    "exitCode": code,
                    "signal": signal,
                    "timedOut": r.run.exit == Exit::TimedOut,
                    "durationMs": r.run.duration.as_millis() as u64,
                    "startedOn": crate::sbom::rfc3339(r.run.started),
                    "output": last_lines(&r.run.output, 20).join("\n"),
                },
            })
        })
        .collect();
    let names =
        |passed: bool| -> Vec<String> { runs.iter().filter(|r| r.passed() == passed).map(NodeRun::id).collect() };
    let subject = vec![
        json!({ "name": MANIFEST, "digest": { "sha256": candidate.hex() } }),
        json!({ "name": format!("{PLAN_SUBJECT_PREFIX}{}", system.name), "digest": { "sha256": plan.hex() } }),
    ];
    crate::qualify::test_result_statement(subject, configuration, names(true), names(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs on one report folder: the second is refused while the first holds it, and
    /// takes it once the first is done.
    #[test]
    fn one_run_writes_a_report_folder_at_a_time() {
        let t = tempfile::tempdir().unwrap();
        let report = t.path().join("out/box.ground.test");
        let first = lock_report(&report).unwrap();
        let err = lock_report(&report).unwrap_err().to_string();
        assert!(err.contains("another `test --system` is writing the report folder"), "{err}");
        drop(first);
        lock_report(&report).unwrap();
    }

    /// A node's logs are read inside the node: its `/var/log` pointing at an absolute path,
    /// or a log that is a symlink, never reaches the host's file of that name; a fifo is
    /// left alone (not opened, so nothing blocks); regular files and folders are copied.
    #[test]
    fn node_logs_never_lead_out_of_the_node() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        fs_err::create_dir_all(&host).unwrap();
        fs_err::write(host.join("secret"), "the host's").unwrap();
        let node = t.path().join("node");
        fs_err::create_dir_all(node.join("var")).unwrap();
        std::os::unix::fs::symlink(&host, node.join("var/log")).unwrap();
        copy_node_logs(&node, &t.path().join("report-a")).unwrap();
        assert!(!t.path().join("report-a").exists(), "the host's folder was copied");

        fs_err::remove_file(node.join("var/log")).unwrap();
        fs_err::create_dir_all(node.join("var/log/sub")).unwrap();
        fs_err::write(node.join("var/log/a.log"), "a").unwrap();
        fs_err::write(node.join("var/log/sub/b.log"), "b").unwrap();
        std::os::unix::fs::symlink(host.join("secret"), node.join("var/log/secret")).unwrap();
        std::os::unix::fs::symlink(&host, node.join("var/log/hostdir")).unwrap();
        let fifo = std::ffi::CString::new(node.join("var/log/fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let report = t.path().join("report-b");
        copy_node_logs(&node, &report).unwrap();
        let mut copied: Vec<String> = walkdir(&report);
        copied.sort();
        assert_eq!(copied, ["a.log", "sub/b.log"]);
    }

    fn walkdir(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.extend(walkdir(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
            } else {
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn xml_escapes_everything_a_script_may_print() {
        assert_eq!(xml("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\n");
    }
}
