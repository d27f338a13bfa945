//! Qualification: running scripts against fresh instances of a candidate (`candidate test
//! CANDIDATE --script PATH… [--timeout SECS] [--sign KEY]… [--runtime R]`), and the signed
//! test-result attestation of what they did.
//!
//! Each script runs in its own throwaway instance, so no script sees what another left:
//!
//! * **sandbox** (the default): the rootfs archive the manifest lists is checked against its
//!   sha256, read with the strict tar reader into a tree (once), and for each script
//!   [`materialize`](crate::instance::materialize)d into a fresh folder under the store's
//!   `tmp/`, where [`sandbox::run`] runs it; the folder is removed after the run.
//! * **lxc**: a real LXC container made from the candidate's `meta.tar.xz` + `lxc.rootfs.tar.xz`
//!   with `lxc-create -t local`, in a private lxcpath under the store's `tmp/`; each script
//!   runs through `lxc-attach` and the container is destroyed after it.
//!
//! A script runs as `/bin/sh /run/candidate/NAME` (bound read-only from a copy of the bytes
//! that were hashed, so the digest recorded is what ran); its shebang line is not used, so a
//! script needs no execute bit and the image's shell is what is qualified. Output (stdout and
//! stderr merged) is kept to its last 64 KiB; the last lines of a failing script are printed.
//!
//! `--sign KEY` writes `NAME_VERSION_ARCH.test.intoto.json` beside the candidate folder: a
//! DSSE envelope of an in-toto Statement v1 whose subjects are the candidate's `manifest.json`
//! (its sha256 is the candidate id) and every output the manifest lists, with the
//! test-result predicate (`result`, `configuration` = one resource per script with its
//! sha256, `passedTests`, `failedTests`, `warnedTests`). Each script's resource carries
//! annotations: the runtime, the exit, the time limit, the duration, the start time and the
//! tail of its output. Times are real: a test run is an event, and the attestation is not part
//! of the candidate's identity. It is what `promote` requires for a channel whose policy
//! lists `https://in-toto.io/attestation/test-result/v0.1`, and what `verify` reports.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::channel::TEST_RESULT;
use crate::context::Context;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::PrivateKey;
use crate::manifest::Manifest;
use crate::sandbox::{self, Exit};
use crate::tree::Tree;

pub mod lxc;

/// The hostname of every test instance.
pub const HOSTNAME: &str = "candidate-test";
/// Where a script appears inside the instance.
pub const SCRIPT_DIR: &str = "/run/candidate";
/// How much of a script's output is kept.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// How many trailing lines of a failing script's output are printed, and attested.
pub const SHOWN_LINES: usize = 10;
const ATTESTED_LINES: usize = 20;

/// Where the scripts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Our namespace sandbox over a materialised rootfs.
    Sandbox,
    /// A real LXC container from the candidate's `lxc` format.
    Lxc,
    /// An LXD/Incus daemon (`LXD_DIR`): for `test --system` only.
    Lxd,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Sandbox => "sandbox",
            Runtime::Lxc => "lxc",
            Runtime::Lxd => "lxd",
        }
    }
}

pub struct TestOptions {
    pub scripts: Vec<PathBuf>,
    pub timeout: Duration,
    pub sign: Vec<PrivateKey>,
    pub runtime: Runtime,
}

/// A script as it was read (and hashed) once.
pub struct Script {
    pub name: String,
    pub bytes: Vec<u8>,
    pub sha256: Digest,
}

/// What one script did.
pub struct ScriptRun {
    pub exit: Exit,
    pub duration: Duration,
    pub output: Vec<u8>,
    /// When it started, in seconds since the epoch.
    pub started: u64,
}

impl ScriptRun {
    pub fn passed(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn load_scripts(paths: &[PathBuf]) -> anyhow::Result<Vec<Script>> {
    if paths.is_empty() {
        bail!("name at least one script with `--script`");
    }
    let mut scripts: Vec<Script> = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .with_context(|| format!("`{}`: a script needs a UTF-8 file name", path.display()))?
            .to_owned();
        if scripts.iter().any(|s| s.name == name) {
            bail!("two scripts are named `{name}`: the attestation names scripts by file name");
        }
        let bytes = fs_err::read(path).context("cannot read the script")?;
        scripts.push(Script { name, sha256: Digest::of(&bytes), bytes });
    }
    Ok(scripts)
}

/// The outputs the manifest lists, by name, with their sha256.
fn outputs(manifest: &Manifest) -> Vec<(String, Digest)> {
    manifest.outputs.iter().map(|o| (o.name.clone(), o.sha256)).collect()
}

/// Opens output `name` of the candidate and checks it against the manifest's sha256 before
/// anything reads it.
pub fn open_checked(dir: &Path, manifest: &Manifest, name: &str) -> anyhow::Result<fs_err::File> {
    let expected = manifest
        .output(name)
        .map(|o| o.sha256)
        .with_context(|| format!("`{}`: the manifest gives no sha256 for `{name}`", dir.display()))?;
    let path = dir.join(name);
    let mut file = fs_err::File::open(&path)?;
    let (actual, _) = Digest::of_reader(&mut file)?;
    if actual != expected {
        bail!("`{}` does not match the manifest: expected {expected}, actual {actual}", path.display());
    }
    std::io::Seek::rewind(&mut file)?;
    Ok(file)
}

/// The rootfs archive to deploy: the least compressed one the manifest lists.
fn rootfs_archive(dir: &Path, manifest: &Manifest) -> anyhow::Result<String> {
    let names: Vec<String> = outputs(manifest).into_iter().map(|(n, _)| n).collect();
    ["rootfs.tar", "rootfs.tar.zst", "rootfs.tar.gz", "rootfs.tar.xz"]
        .into_iter()
        .map(str::to_owned)
        .find(|n| names.contains(n))
        // The Proxmox template is the zstd rootfs under another name.
        .or_else(|| names.iter().find(|n| !n.contains('/') && n.ends_with(".tar.zst")).cloned())
        .with_context(|| {
            format!("`{}` has no rootfs archive (`rootfs.tar*` or a Proxmox template) to deploy", dir.display())
        })
}

/// The candidate's root filesystem as a tree, read once with the strict reader; compressed
/// archives are decompressed into an anonymous spool file under the store's `tmp/`.
pub fn read_rootfs(ctx: &Context, dir: &Path, manifest: &Manifest) -> anyhow::Result<Tree> {
    let name = rootfs_archive(dir, manifest)?;
    let file = open_checked(dir, manifest, &name)?;
    let (plain, _) = file.into_parts();
    let (encoding, mut decoded) = crate::compress::decoder(plain.try_clone()?)?;
    let backing = if encoding == crate::compress::Encoding::Plain {
        plain
    } else {
        let mut spool = tempfile::tempfile_in(ctx.store.root().join("tmp"))?;
        std::io::copy(&mut decoded, &mut spool).with_context(|| format!("cannot decompress `{name}`"))?;
        spool
    };
    let tree = crate::layer::read_tar(&name, &Arc::new(backing), 0)?;
    Ok(tree)
}

pub fn last_lines(output: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| (*l).to_owned()).collect()
}

/// Runs one script in a fresh instance of `tree`, which is removed afterwards.
pub fn run_in_sandbox(
    ctx: &Context,
    tree: &Tree,
    script: &Script,
    sde: u64,
    timeout: Duration,
) -> anyhow::Result<ScriptRun> {
    let tmp = ctx.store.root().join("tmp");
    // The bytes that were hashed, outside the instance: the script cannot change under us.
    let staged = tempfile::Builder::new().prefix(&crate::store::temp_prefix("script")).tempdir_in(&tmp)?;
    let source = staged.path().join(&script.name);
    let mut file = fs_err::File::create(&source)?;
    file.write_all(&script.bytes)?;
    drop(file);
    let instance = tempfile::Builder::new().prefix(&crate::store::temp_prefix("instance")).tempdir_in(&tmp)?;
    crate::instance::materialize(tree, instance.path())?;
    let target = format!("{SCRIPT_DIR}/{}", script.name);
    let spec = sandbox::Spec {
        root: instance.path(),
        argv: vec!["/bin/sh".into(), target.clone()],
        env: sandbox::default_env(sde),
        hostname: HOSTNAME.into(),
        binds: vec![sandbox::Bind { source, target, read_only: true }],
        timeout,
        output_limit: OUTPUT_LIMIT,
        // A fresh deployment is a system, not an image being built.
        chroot: false,
    };
    let started = now();
    let outcome = sandbox::run(&spec);
    let path = instance.path().to_owned();
    instance.close().with_context(|| format!("cannot remove the instance `{}`", path.display()))?;
    staged.close()?;
    let outcome = match outcome {
        Err(e @ sandbox::SandboxError::Exec { .. }) => {
            return Err(anyhow::Error::new(e).context("the candidate's image has no usable `/bin/sh` to run scripts"))
        }
        other => other?,
    };
    Ok(ScriptRun { exit: outcome.exit, duration: outcome.duration, output: outcome.output, started })
}

/// Waits for `child` (started at `started`) to exit, killing it at `timeout`.
pub fn wait_limited(
    child: &mut std::process::Child,
    started: std::time::Instant,
    timeout: Duration,
) -> std::io::Result<Exit> {
    loop {
        if let Some(status) = child.try_wait()? {
            use std::os::unix::process::ExitStatusExt as _;
            return Ok(match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            });
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Exit::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An exit as the attestation's annotations give it: (`exitCode`, `signal`).
pub fn exit_parts(exit: Exit) -> (Option<i32>, Option<i32>) {
    match exit {
        Exit::Code(c) => (Some(c), None),
        Exit::Signal(s) => (None, Some(s)),
        Exit::TimedOut => (None, None),
    }
}

/// The canonical bytes of a test-result statement over `subject`, with one `configuration`
/// entry per test; `result` is PASSED when nothing failed.
pub fn test_result_statement(
    subject: Vec<Value>,
    configuration: Vec<Value>,
    passed: Vec<String>,
    failed: Vec<String>,
) -> Vec<u8> {
    let result = if failed.is_empty() { "PASSED" } else { "FAILED" };
    let value = json!({
        "_type": crate::attest::STATEMENT_TYPE,
        "subject": subject,
        "predicateType": TEST_RESULT,
        "predicate": {
            "result": result,
            "configuration": configuration,
            "passedTests": passed,
            "warnedTests": [],
            "failedTests": failed,
        },
    });
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// Signs `payload` (an in-toto statement) into a DSSE envelope at `path`, atomically.
pub fn write_envelope(path: &Path, payload: &[u8], keys: &[PrivateKey]) -> anyhow::Result<()> {
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, keys);
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new().prefix(".attestation-").tempfile_in(parent)?;
    temp.write_all(&envelope.to_json())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    crate::store::sync_parent(path)?;
    Ok(())
}

/// The attestation's file beside the candidate folder.
pub fn attestation_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.parent().unwrap_or(Path::new(".")).join(format!("{name}.test.intoto.json"))
}

/// The statement's canonical bytes.
fn statement(
    manifest: &Manifest,
    id: &Digest,
    scripts: &[Script],
    runs: &[ScriptRun],
    options: &TestOptions,
) -> Vec<u8> {
    let mut subjects = vec![(MANIFEST.to_owned(), *id)];
    subjects.extend(outputs(manifest));
    subjects.sort();
    let subject: Vec<Value> =
        subjects.iter().map(|(name, d)| json!({ "name": name, "digest": { "sha256": d.hex() } })).collect();
    let configuration: Vec<Value> = scripts
        .iter()
        .zip(runs)
        .map(|(s, r)| {
            let (code, signal) = exit_parts(r.exit);
            json!({
                "name": s.name,
                "digest": { "sha256": s.sha256.hex() },
                "annotations": {
                    "runtime": options.runtime.name(),
                    "exitCode": code,
                    "signal": signal,
                    "timedOut": r.exit == Exit::TimedOut,
                    "timeoutSeconds": options.timeout.as_secs(),
                    "durationMs": r.duration.as_millis() as u64,
                    "startedOn": crate::sbom::rfc3339(r.started),
                    "output": last_lines(&r.output, ATTESTED_LINES).join("\n"),
                },
            })
        })
        .collect();
    let names = |passed: bool| -> Vec<String> {
        scripts.iter().zip(runs).filter(|(_, r)| r.passed() == passed).map(|(s, _)| s.name.clone()).collect()
    };
    test_result_statement(subject, configuration, names(true), names(false))
}

pub fn write_attestation(
    dir: &Path,
    manifest: &Manifest,
    id: &Digest,
    scripts: &[Script],
    runs: &[ScriptRun],
    options: &TestOptions,
) -> anyhow::Result<PathBuf> {
    let payload = statement(manifest, id, scripts, runs, options);
    let path = attestation_path(dir);
    write_envelope(&path, &payload, &options.sign)?;
    Ok(path)
}

/// A process that cleans up after this one if it ends without doing so (a signal: no `Drop`
/// runs): it reads its stdin, which only this process holds (the pipe is close-on-exec), and
/// when that closes does its work. Out of the terminal's process group, so Ctrl-C stops this
/// process, not it. Dropped, its stdin is closed and it is waited for (with nothing left to
/// clean by then, it ends at once).
pub struct Watchdog {
    child: std::process::Child,
}

impl Watchdog {
    /// Starts `command` as the watchdog; `what` names it in an error.
    pub fn start(mut command: std::process::Command, what: &str) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Watchdog { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_MANIFEST: &[u8] = include_bytes!("../../tests/data/example.manifest.json");

    #[test]
    fn the_last_lines_are_kept() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines(b"one", 5), ["one"]);
        assert!(last_lines(b"", 3).is_empty());
    }

    #[test]
    fn the_rootfs_archive_prefers_the_least_compressed() {
        // The example's manifest, with only the outputs named.
        let with_outputs = |names: &[&str]| {
            let mut manifest = Manifest::parse(Path::new("example.manifest.json"), EXAMPLE_MANIFEST).unwrap();
            let listed = |name: &&str| crate::manifest::Output {
                name: (*name).to_owned(),
                size: 0,
                sha256: Digest::of(b""),
                compression: None,
            };
            manifest.outputs = names.iter().map(listed).collect();
            manifest
        };
        let manifest = with_outputs(&["debian-12-x_1_amd64.tar.zst", "rootfs.tar.xz", "rootfs.tar.zst"]);
        assert_eq!(rootfs_archive(Path::new("d"), &manifest).unwrap(), "rootfs.tar.zst");
        let proxmox = with_outputs(&["debian-12-x_1_amd64.tar.zst", "oci/index.json"]);
        assert_eq!(rootfs_archive(Path::new("d"), &proxmox).unwrap(), "debian-12-x_1_amd64.tar.zst");
        assert!(rootfs_archive(Path::new("d"), &with_outputs(&["oci/index.json"])).is_err());
    }

    #[test]
    fn scripts_need_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("check.sh"), dir.path().join("sub"));
        fs_err::create_dir(&b).unwrap();
        fs_err::write(&a, b"true\n").unwrap();
        fs_err::write(b.join("check.sh"), b"false\n").unwrap();
        let scripts = load_scripts(std::slice::from_ref(&a)).unwrap();
        assert_eq!(scripts[0].sha256, Digest::of(b"true\n"));
        assert!(load_scripts(&[a, b.join("check.sh")]).is_err());
        assert!(load_scripts(&[]).is_err());
    }
}
