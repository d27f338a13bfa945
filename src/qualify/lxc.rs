//! `candidate test --runtime lxc`: each script in a real, privileged LXC container made from
//! the candidate's `lxc` format (`meta.tar.xz` + `lxc.rootfs.tar.xz`), as an operator deploys it.
//!
//! For each script: both archives are checked against the manifest and copied into a private
//! folder under the store's `tmp/` (so LXC reads the bytes that were checked), and a private
//! lxcpath there holds one container, made with `lxc-create -t local`. Its extra config gives
//! it no network (`lxc.net.0.type = empty`), the hostname `candidate-test`, a tmpfs `/run`
//! (mounted before init, so a systemd image keeps it) and the script bound read-only at
//! `/run/candidate/NAME`. An image without `/sbin/init` (resolved inside the image, through
//! its own symlinks) gets `lxc.init.cmd = /bin/sleep …`. Then `lxc-start`, `lxc-wait` for
//! RUNNING, and `lxc-attach --clear-env` with the fixed environment runs `/bin/sh
//! /run/candidate/NAME` under the time limit. `lxc-destroy -f` always runs (a guard), which
//! also kills whatever the script left running; then the private folder is removed.

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{open_checked, Script, ScriptRun, HOSTNAME, SCRIPT_DIR};
use crate::context::Context;
use crate::sandbox::default_env;

/// How long `lxc-wait` waits for the container to be RUNNING.
const START_TIMEOUT_SECS: &str = "10";
/// Output kept, as in the sandbox.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// A created container: destroyed (`lxc-destroy -f`, which stops it first) when dropped.
struct Container {
    lxcpath: PathBuf,
    name: String,
}

impl Container {
    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("-P").arg(&self.lxcpath).arg("-n").arg(&self.name);
        cmd
    }

    /// Runs an LXC tool to completion; a failure names the tool and shows its stderr.
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run `{tool}` (Debian package `lxc`)"))?;
        if !out.status.success() {
            bail!("`{tool}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.command("lxc-destroy").arg("-f").stdin(Stdio::null()).output();
    }
}

/// Destroys the container and removes its folder if this process ends without doing so: on
/// a signal no `Drop` runs, and `lxc-start -d` put the container in a session of its own,
/// where Ctrl-C does not reach it.
fn guard(work: &Path, lxcpath: &Path, name: &str) -> anyhow::Result<super::Watchdog> {
    let mut sh = Command::new("sh");
    sh.args(["-c", r#"read -r _; lxc-destroy -P "$1" -n "$2" -f; rm -rf -- "$3""#, "sh"])
        .arg(lxcpath)
        .arg(name)
        .arg(work);
    super::Watchdog::start(sh, "the container's guard (`sh`)")
}

/// Whether `path` exists in the image at `rootfs`, its symlinks resolved inside the image.
fn exists_in_image(rootfs: &Path, path: &str) -> anyhow::Result<bool> {
    let root = fs_err::File::open(rootfs)?;
    let path = std::ffi::CString::new(path)?;
    // SAFETY: `open_how` is plain old data; zeroed is a valid value to fill in.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: valid descriptor, C string and struct; the result is a descriptor we own.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root.as_raw_fd(), path.as_ptr(), &how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Ok(false);
    }
    // SAFETY: a fresh descriptor, closed on drop.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(true)
}

/// A pipe for the attached command's stdout and stderr: (read end, write end).
fn output_pipe() -> std::io::Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` fills two fresh descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs one script in a fresh LXC container (see the module docs).
///
/// Long by design: the module docs' steps in order, with the container guard alive across all
/// of them, so that every early return still destroys the container.
pub fn run(
    ctx: &Context,
    dir: &Path,
    manifest: &crate::manifest::Manifest,
    script: &Script,
    timeout: Duration,
) -> anyhow::Result<ScriptRun> {
    let work = tempfile::Builder::new().prefix("lxc-").tempdir_in(ctx.store.root().join("tmp"))?;
    if work.path().to_string_lossy().contains(char::is_whitespace) {
        bail!("the store's path `{}` has whitespace, which LXC's mount entries cannot hold", work.path().display());
    }
    for name in ["meta.tar.xz", crate::lxc::ROOTFS] {
        let mut checked = open_checked(dir, manifest, name)
            .with_context(|| format!("the `lxc` format of `{}` is needed for `--runtime lxc`", dir.display()))?;
        std::io::copy(&mut checked, &mut fs_err::File::create(work.path().join(name))?)?;
    }
    let script_path = work.path().join("script").join(&script.name);
    fs_err::create_dir(work.path().join("script"))?;
    fs_err::write(&script_path, &script.bytes)?;
    let target = format!("{SCRIPT_DIR}/{}", script.name);
    let conf = work.path().join("extra.conf");
    fs_err::write(
        &conf,
        format!(
            "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n\
             lxc.mount.entry = tmpfs run tmpfs rw,nosuid,nodev,mode=755,create=dir 0 0\n\
             lxc.mount.entry = {} {} none bind,ro,create=file 0 0\n",
            script_path.display(),
            target.trim_start_matches('/')
        ),
    )?;
    let lxcpath = work.path().join("containers");
    fs_err::create_dir(&lxcpath)?;
    // Unique on the machine: LXC names cgroups after containers.
    let name =
        format!("{HOSTNAME}-{}-{}", std::process::id(), work.path().file_name().unwrap_or_default().to_string_lossy());
    // Dropped after the container (declared before it): destroys it if this process is killed.
    let _guard = guard(work.path(), &lxcpath, &name)?;
    let container = Container { lxcpath: lxcpath.clone(), name: name.clone() };
    let (meta, rootfs) = (work.path().join("meta.tar.xz"), work.path().join(crate::lxc::ROOTFS));
    container.run(
        "lxc-create",
        &[
            "-t",
            "local",
            "-f",
            &conf.to_string_lossy(),
            "--",
            "-m",
            &meta.to_string_lossy(),
            "-f",
            &rootfs.to_string_lossy(),
        ],
    )?;
    // After what `lxc-create` wrote, which names the host after the container.
    let config = lxcpath.join(&name).join("config");
    let mut text = fs_err::read_to_string(&config)?;
    text.push_str(&format!("lxc.uts.name = {HOSTNAME}\n"));
    if !exists_in_image(&lxcpath.join(&name).join("rootfs"), "sbin/init")? {
        text.push_str("lxc.init.cmd = /bin/sleep 2147483647\n");
    }
    fs_err::write(&config, text)?;
    container.run("lxc-start", &["-d"])?;
    container.run("lxc-wait", &["-s", "RUNNING", "-t", START_TIMEOUT_SECS])?;

    let (mut output, write) = output_pipe()?;
    let mut attach = container.command("lxc-attach");
    attach.arg("--clear-env");
    for (key, value) in default_env(manifest.source_date_epoch) {
        attach.arg("--set-var").arg(format!("{key}={value}"));
    }
    attach.args(["--", "/bin/sh", &target]).stdin(Stdio::null()).stdout(write.try_clone()?).stderr(write);
    let started_at = super::now();
    let started = Instant::now();
    let mut child = attach.spawn().context("cannot run `lxc-attach` (Debian package `lxc`)")?;
    drop(attach);
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * OUTPUT_LIMIT {
                tail.drain(..tail.len() - OUTPUT_LIMIT);
            }
        }
        tail
    });
    let exit = super::wait_limited(&mut child, started, timeout)?;
    let duration = started.elapsed();
    // Destroying the container kills what the script left behind, which closes the pipe.
    drop(container);
    let mut tail = reader.join().unwrap_or_default();
    tail.drain(..tail.len().saturating_sub(OUTPUT_LIMIT));
    let path = work.path().to_owned();
    work.close().with_context(|| format!("cannot remove `{}`", path.display()))?;
    Ok(ScriptRun { exit, duration, output: tail, started: started_at })
}
