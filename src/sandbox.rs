//! A namespace sandbox that runs one command inside an image directory, made with the kernel's
//! interfaces directly (no container runtime): the qualification runs of `candidate test` and
//! the maintainer scripts of the configure mode run here.
//!
//! [`run`] clones a child into new mount, PID, UTS, IPC and network namespaces. The child is
//! PID 1 of its PID namespace and, before anything else, makes every mount private
//! (`MS_REC|MS_PRIVATE` on `/`), so nothing it mounts propagates to the host. It then:
//!
//! 1. bind-mounts the instance root onto itself (so it is a mount point `pivot_root` accepts);
//! 2. mounts, under it, a fresh procfs (it shows the new PID namespace), a minimal `/dev`
//!    (tmpfs; the host's `null`, `zero`, `full`, `random`, `urandom` and `tty` bound onto
//!    empty files; `fd`, `stdin`, `stdout`, `stderr` and `ptmx` symlinks; a `devpts`
//!    `newinstance` on `/dev/pts`; tmpfs `/dev/shm`), tmpfs `/tmp` and tmpfs `/run`, and the
//!    caller's [`Bind`]s inside that `/run` (created there, never in the image tree);
//! 3. sets the fixed hostname and brings `lo` up (the only interface of the new network
//!    namespace: no network);
//! 4. `pivot_root(".", ".")` and detaches the old root (`MNT_DETACH`): no host path is left;
//! 5. forks the command (stdin `/dev/null`, stdout and stderr into one pipe the parent reads,
//!    the environment exactly [`Spec::env`], umask 022, cwd `/`, signal dispositions and mask
//!    reset, every other descriptor closed, a few capabilities dropped from its bounding set
//!    ([`DROPPED_CAPABILITIES`])), then reaps every process until the command exits, reports
//!    the command's wait status to the parent and exits.
//!
//! Every mount lives only in the child's mount namespace: when its last process exits they
//! vanish, and the host directory never holds them. When PID 1 exits, the kernel kills
//! whatever else still runs in the PID namespace; on a timeout the parent SIGKILLs PID 1,
//! which does the same. `PR_SET_PDEATHSIG` kills PID 1 if the builder thread that started it
//! goes away (a sync pipe closes the race before the `prctl`): nothing outlives the builder.
//!
//! **Fork in a multi-threaded program.** Between `clone` and `execve` only async-signal-safe
//! system calls run: every path, argument, environment entry and mount option is a `CString`
//! prepared before the clone, the child's steps are a prepared list it walks, it never
//! allocates, and it clones its own child with the raw `clone` system call (glibc's `fork`
//! would take the allocator's locks, which another thread of the builder may have held at
//! the first clone). Failures are reported as `(step, errno)` over a close-on-exec pipe and
//! turned into a [`SandboxError`] naming the step by the parent.
//!
//! This isolates a run from the host (files, network, processes, hostname) so that it is
//! reproducible and cannot touch the machine by accident; it runs as real root and is not a
//! security boundary against code designed to escape (a root process keeps `CAP_MKNOD`, for
//! one). Needs root (`CAP_SYS_ADMIN`) on the host.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment's `PATH` (the one Debian's `/etc/login.defs` gives root).
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities removed from the command's bounding set (so from what its `execve` grants
/// root): loading modules, raw I/O, rebooting, setting clocks, mounting and the rest of
/// `CAP_SYS_ADMIN`, MAC policy, the kernel log, wake alarms. Installing and configuring
/// packages needs none of them; a qualification script that does is not testing the image.
pub const DROPPED_CAPABILITIES: &[(u32, &str)] = &[
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (21, "CAP_SYS_ADMIN"),
    (22, "CAP_SYS_BOOT"),
    (25, "CAP_SYS_TIME"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
];

/// Device nodes of the host bound into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Top-level folders of the image that get a fresh mount; the image may lack them (they are
/// made, empty), but one that is not a folder is refused: mounting onto a symlink would
/// follow it on the host.
const MOUNT_POINTS: [&str; 4] = ["proc", "dev", "tmp", "run"];

/// The size of the sandbox's `/tmp` tmpfs. A tmpfs lives in the host's memory, and without a
/// size it may take half of it: a maintainer script (or a qualification test) that fills
/// `/tmp` must hit `ENOSPC` in the sandbox, not push the build host into swap. 1 GiB is far
/// above what package configuration writes there (dpkg and debconf use a few MB).
pub const TMP_SIZE: &str = "1g";
/// The size of `/run` (and `/dev/shm`): sockets, PID files and lock files, a few KB on a real
/// system; 64 MiB leaves room for bound inputs' own folders and any service's state.
pub const RUN_SIZE: &str = "64m";

/// A host file or folder bound into the sandbox.
#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    /// Where it appears: an absolute path under `/run` (`/run/candidate/script`), created in
    /// the sandbox's `/run` tmpfs, never in the image tree.
    pub target: String,
    pub read_only: bool,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The instance root on the host, writable; it becomes `/`.
    pub root: &'a Path,
    /// The command, resolved inside the image: an absolute path, or a name looked up in the
    /// `PATH` of [`Spec::env`].
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub hostname: String,
    pub binds: Vec<Bind>,
    pub timeout: Duration,
    /// At most this many trailing bytes of stdout and stderr (merged) are kept.
    pub output_limit: usize,
    /// Let the command see what it is in: an image being built, not a booted system. PID 1
    /// roots itself in an empty folder, so the image's root is not init's and `ischroot`
    /// answers yes, as it does under debootstrap and mmdebstrap; maintainer scripts then
    /// leave init alone (libc6's `telinit u; sleep 1`, for one). Off for qualification runs,
    /// which deploy the candidate as a system.
    pub chroot: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command exited with this status.
    Code(i32),
    /// The command was killed by this signal.
    Signal(i32),
    /// The command ran past [`Spec::timeout`]; everything in the sandbox was killed.
    TimedOut,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
            Exit::TimedOut => write!(f, "killed at the time limit"),
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub exit: Exit,
    pub duration: Duration,
    /// The last [`Spec::output_limit`] bytes of stdout and stderr.
    pub output: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox needs a command to run")]
    NoCommand,
    #[error("`{value}` cannot be passed to the sandbox: it contains a NUL byte")]
    Nul { value: String },
    #[error("bind target `{target}` must be an absolute, normalised path under `/run`")]
    BindTarget { target: String },
    #[error("cannot bind `{}` into the sandbox", source_path.display())]
    BindSource { source_path: PathBuf, source: std::io::Error },
    #[error("the image's `/{name}` is a {kind}, not a folder: the sandbox mounts a fresh `/{name}` there")]
    MountPoint { name: &'static str, kind: &'static str },
    #[error("cannot prepare the instance root `{}`", root.display())]
    Root { root: PathBuf, source: std::io::Error },
    #[error("cannot start the sandbox ({step})")]
    Start { step: &'static str, source: std::io::Error },
    #[error("the sandbox could not {step}")]
    Setup { step: String, source: std::io::Error },
    #[error("cannot run `{program}` inside the image")]
    Exec { program: String, source: std::io::Error },
    #[error("the sandbox's init exited without reporting the command's status ({exit})")]
    Lost { exit: String },
}

/// The fixed environment of a sandboxed run, `SOURCE_DATE_EPOCH` = `sde`.
pub fn default_env(sde: u64) -> Vec<(String, String)> {
    [
        ("PATH", PATH.to_owned()),
        ("LC_ALL", "C.UTF-8".to_owned()),
        ("TZ", "UTC".to_owned()),
        ("SOURCE_DATE_EPOCH", sde.to_string()),
        ("DEBIAN_FRONTEND", "noninteractive".to_owned()),
        ("HOME", "/root".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One step of the child's setup, prepared before the clone.
enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mkdir`; an existing folder is fine when `exist_ok`.
    Mkdir {
        path: CString,
        mode: libc::mode_t,
        exist_ok: bool,
    },
    /// An empty file to bind a file onto.
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
}

/// The child's setup, and what each step is called in an error.
struct Plan {
    ops: Vec<Op>,
    names: Vec<String>,
}

impl Plan {
    fn push(&mut self, op: Op, name: String) {
        self.ops.push(op);
        self.names.push(name);
    }
}

fn cstring(value: impl AsRef<[u8]>) -> Result<CString, SandboxError> {
    let bytes = value.as_ref();
    CString::new(bytes).map_err(|_| SandboxError::Nul { value: String::from_utf8_lossy(bytes).into_owned() })
}

/// Whether `target` is `/run/…` with only normal components (no `.`, `..` or empty ones).
fn valid_bind_target(target: &str) -> bool {
    match target.strip_prefix("/run/") {
        Some(rest) => rest.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        None => false,
    }
}

/// The mounts and files the child makes, all under `root` (a canonical host path).
///
/// Long by design: the whole mount table of the sandbox, in the order the child applies it,
/// reads as one list; splitting it would hide which mount depends on which.
fn plan(root: &Path, binds: &[Bind]) -> Result<Plan, SandboxError> {
    let at = |rel: &str| cstring(root.join(rel).as_os_str().as_bytes());
    let mut p = Plan { ops: Vec::new(), names: Vec::new() };
    let mount = |source: Option<&str>, target: CString, fstype: Option<&str>, flags, data: Option<&str>| {
        Ok::<_, SandboxError>(Op::Mount {
            source: source.map(cstring).transpose()?,
            target,
            fstype: fstype.map(cstring).transpose()?,
            flags,
            data: data.map(cstring).transpose()?,
        })
    };
    p.push(
        mount(None, cstring("/")?, None, libc::MS_REC | libc::MS_PRIVATE, None)?,
        "make mount propagation private".into(),
    );
    let root_c = cstring(root.as_os_str().as_bytes())?;
    p.push(
        Op::Mount { source: Some(root_c.clone()), target: root_c, fstype: None, flags: libc::MS_BIND, data: None },
        "bind the root onto itself".into(),
    );
    let (nosuid_nodev, noexec) = (libc::MS_NOSUID | libc::MS_NODEV, libc::MS_NOEXEC);
    p.push(mount(Some("proc"), at("proc")?, Some("proc"), nosuid_nodev | noexec, None)?, "mount `/proc`".into());
    p.push(
        mount(Some("tmpfs"), at("dev")?, Some("tmpfs"), libc::MS_NOSUID | noexec, Some("mode=0755,size=4m"))?,
        "mount `/dev`".into(),
    );
    for device in DEVICES {
        let target = at(&format!("dev/{device}"))?;
        p.push(Op::Touch { path: target.clone() }, format!("create `/dev/{device}`"));
        p.push(
            mount(Some(&format!("/dev/{device}")), target, None, libc::MS_BIND, None)?,
            format!("bind the host's `/dev/{device}`"),
        );
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        p.push(
            Op::Symlink { target: cstring(target)?, link: at(&format!("dev/{link}"))? },
            format!("link `/dev/{link}`"),
        );
    }
    p.push(Op::Mkdir { path: at("dev/pts")?, mode: 0o755, exist_ok: false }, "create `/dev/pts`".into());
    p.push(
        mount(
            Some("devpts"),
            at("dev/pts")?,
            Some("devpts"),
            libc::MS_NOSUID | noexec,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?,
        "mount `/dev/pts`".into(),
    );
    p.push(Op::Mkdir { path: at("dev/shm")?, mode: 0o1777, exist_ok: false }, "create `/dev/shm`".into());
    p.push(
        mount(Some("tmpfs"), at("dev/shm")?, Some("tmpfs"), nosuid_nodev, Some(&format!("mode=1777,size={RUN_SIZE}")))?,
        "mount `/dev/shm`".into(),
    );
    let tmp = format!("mode=1777,size={TMP_SIZE}");
    p.push(mount(Some("tmpfs"), at("tmp")?, Some("tmpfs"), nosuid_nodev, Some(&tmp))?, "mount `/tmp`".into());
    let run = format!("mode=0755,size={RUN_SIZE}");
    p.push(mount(Some("tmpfs"), at("run")?, Some("tmpfs"), nosuid_nodev, Some(&run))?, "mount `/run`".into());
    for bind in binds {
        if !valid_bind_target(&bind.target) {
            return Err(SandboxError::BindTarget { target: bind.target.clone() });
        }
        let is_dir = fs_err::metadata(&bind.source)
            .map_err(|source| SandboxError::BindSource { source_path: bind.source.clone(), source })?
            .is_dir();
        let rel = bind.target.trim_start_matches('/');
        // Parents inside the fresh `/run` tmpfs: nothing there can be a symlink yet.
        let mut parent = String::from("run");
        let components: Vec<&str> = rel.split('/').collect();
        for component in &components[1..components.len() - 1] {
            parent = format!("{parent}/{component}");
            p.push(Op::Mkdir { path: at(&parent)?, mode: 0o755, exist_ok: true }, format!("create `/{parent}`"));
        }
        let target = at(rel)?;
        let made = if is_dir {
            Op::Mkdir { path: target.clone(), mode: 0o755, exist_ok: true }
        } else {
            Op::Touch { path: target.clone() }
        };
        p.push(made, format!("create `{}`", bind.target));
        let flags = if is_dir { libc::MS_BIND | libc::MS_REC } else { libc::MS_BIND };
        let source = cstring(bind.source.as_os_str().as_bytes())?;
        p.push(
            Op::Mount { source: Some(source), target: target.clone(), fstype: None, flags, data: None },
            format!("bind `{}` at `{}`", bind.source.display(), bind.target),
        );
        if bind.read_only {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev;
            p.push(
                Op::Mount { source: None, target, fstype: None, flags, data: None },
                format!("make `{}` read-only", bind.target),
            );
        }
    }
    Ok(p)
}

/// Makes sure each of [`MOUNT_POINTS`] is a real folder of the image (not a symlink).
fn prepare_mount_points(root: &Path) -> Result<(), SandboxError> {
    for name in MOUNT_POINTS {
        let path = root.join(name);
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let kind = if meta.file_type().is_symlink() { "symlink" } else { "file" };
                return Err(SandboxError::MountPoint { name, kind });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs_err::create_dir(&path).map_err(|source| SandboxError::Root { root: root.to_owned(), source })?;
            }
            Err(source) => return Err(SandboxError::Root { root: root.to_owned(), source }),
        }
    }
    Ok(())
}

// Messages from the child over the report pipe: `[kind, index, value]`, native-endian i32s.
/// A setup op failed: index into the plan, errno.
const MSG_OP: i32 = 1;
/// A fixed step failed: index into [`STEPS`], errno.
const MSG_STEP: i32 = 2;
/// `execve` failed: errno.
const MSG_EXEC: i32 = 3;
/// The command's wait status.
const MSG_STATUS: i32 = 4;

/// The child's fixed steps, by index, as errors name them.
const STEPS: [&str; 10] = [
    "set its parent-death signal",
    "start (the builder went away)",
    "set the hostname",
    "bring up `lo`",
    "enter the new root",
    "`pivot_root` into the new root",
    "detach the old root",
    "start the command",
    "drop capabilities from the command's bounding set",
    "set PID 1 apart from the image (`chroot` into an empty folder of `/run`)",
];
const STEP_PDEATHSIG: i32 = 0;
const STEP_SYNC: i32 = 1;
const STEP_HOSTNAME: i32 = 2;
const STEP_LOOPBACK: i32 = 3;
const STEP_CHDIR: i32 = 4;
const STEP_PIVOT: i32 = 5;
const STEP_DETACH: i32 = 6;
const STEP_FORK: i32 = 7;
const STEP_CAPS: i32 = 8;
const STEP_APART: i32 = 9;

/// Where PID 1 roots itself when [`Spec::chroot`] asks for it: an empty folder of the run's
/// own tmpfs `/run`, gone with it.
const APART: &std::ffi::CStr = c"/run/.candidate-init";

/// Everything the child reads, prepared before the clone.
struct Child<'a> {
    plan: &'a Plan,
    root: &'a CString,
    hostname: &'a CString,
    /// Paths to try for the command, in order (one unless it is looked up in `PATH`).
    programs: &'a [CString],
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    /// The report pipe's write end (close-on-exec).
    report: RawFd,
    /// The sync pipe's ends: the child closes the write end, then waits for EOF or a byte.
    sync_read: RawFd,
    sync_write: RawFd,
    /// The output pipe's write end: the command's stdout and stderr.
    output: RawFd,
    /// [`Spec::chroot`].
    apart: bool,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Writes one report message (async-signal-safe).
fn report(fd: RawFd, kind: i32, index: i32, value: i32) {
    let words = [kind, index, value];
    // SAFETY: writes 12 bytes from a live stack array; a short or failed write only loses the
    // message, and the parent then reports a lost child.
    unsafe { libc::write(fd, words.as_ptr().cast(), std::mem::size_of_val(&words)) };
}

/// Reports a failed step and exits the child. Async-signal-safe.
fn fail(fd: RawFd, kind: i32, index: i32) -> ! {
    report(fd, kind, index, errno());
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(125) }
}

fn ptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// Closes every descriptor from 3 up except `keep` (sorted ascending). Async-signal-safe.
fn close_all_but(keep: &[RawFd]) {
    let mut from: libc::c_uint = 3;
    for &fd in keep {
        let fd = fd as libc::c_uint;
        if fd >= from {
            if fd > from {
                // SAFETY: plain system call on integers.
                unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
            }
            from = fd + 1;
        }
    }
    // SAFETY: plain system call on integers.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
}

/// PID 1 of the sandbox. Runs between `clone` and `_exit`: async-signal-safe calls only, no
/// allocation, no panics.
///
/// Long by design: one straight-line sequence of raw system calls is what can be audited for
/// async-signal safety; helpers would invite allocation and hide the order of privileges dropped.
fn child_main(c: &Child<'_>) -> ! {
    // SAFETY (whole function): raw system calls on pointers to CStrings and arrays that the
    // parent prepared and that stay alive in this copy of its address space.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            fail(c.report, MSG_STEP, STEP_PDEATHSIG);
        }
        libc::close(c.sync_write);
        // The parent writes one byte once it knows our pid; EOF means it died before our
        // `prctl` took effect.
        let mut byte = 0u8;
        if libc::read(c.sync_read, (&mut byte as *mut u8).cast(), 1) != 1 {
            fail(c.report, MSG_STEP, STEP_SYNC);
        }
        libc::close(c.sync_read);
        let mut keep = [c.report, c.output];
        keep.sort_unstable();
        close_all_but(&keep);
        libc::umask(0o022);

        for (i, op) in c.plan.ops.iter().enumerate() {
            let ok = match op {
                Op::Mount { source, target, fstype, flags, data } => {
                    libc::mount(ptr(source), target.as_ptr(), ptr(fstype), *flags, ptr(data).cast()) == 0
                }
                Op::Mkdir { path, mode, exist_ok } => {
                    libc::mkdir(path.as_ptr(), *mode) == 0 || (*exist_ok && errno() == libc::EEXIST)
                }
                Op::Touch { path } => {
                    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                    let fd = libc::open(path.as_ptr(), flags, 0o644);
                    fd >= 0 && libc::close(fd) == 0
                }
                Op::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
            };
            if !ok {
                fail(c.report, MSG_OP, i as i32);
            }
        }
        if libc::sethostname(c.hostname.as_ptr(), c.hostname.as_bytes().len()) != 0 {
            fail(c.report, MSG_STEP, STEP_HOSTNAME);
        }
        loopback_up(c.report);
        if libc::chdir(c.root.as_ptr()) != 0 {
            fail(c.report, MSG_STEP, STEP_CHDIR);
        }
        // `pivot_root(".", ".")` stacks the old root on the new one; detaching it leaves the
        // new root alone, with no folder of the image used as a parking place.
        let dot = c".".as_ptr();
        if libc::syscall(libc::SYS_pivot_root, dot, dot) != 0 {
            fail(c.report, MSG_STEP, STEP_PIVOT);
        }
        if libc::umount2(dot, libc::MNT_DETACH) != 0 {
            fail(c.report, MSG_STEP, STEP_DETACH);
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            fail(c.report, MSG_STEP, STEP_CHDIR);
        }
        // Root ourselves in an empty folder while our working directory stays the image's
        // root: the command, forked next, takes that directory back as its root.
        if c.apart && (libc::mkdir(APART.as_ptr(), 0o500) != 0 || libc::chroot(APART.as_ptr()) != 0) {
            fail(c.report, MSG_STEP, STEP_APART);
        }

        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        if pid < 0 {
            fail(c.report, MSG_STEP, STEP_FORK);
        }
        if pid == 0 {
            command_main(c);
        }
        libc::close(c.output);
        // Reap everything (orphans are re-parented to us) until the command itself exits.
        loop {
            let mut status = 0;
            let reaped = libc::waitpid(-1, &mut status, 0);
            if reaped == pid as libc::pid_t {
                report(c.report, MSG_STATUS, 0, status);
                libc::_exit(0);
            }
            if reaped < 0 && errno() != libc::EINTR {
                fail(c.report, MSG_STEP, STEP_FORK);
            }
        }
    }
}

/// Sets `IFF_UP` on `lo`. Async-signal-safe.
fn loopback_up(report_fd: RawFd) {
    // SAFETY: `ifreq` is plain old data; the ioctls read and write it in place.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail(report_fd, MSG_STEP, STEP_LOOPBACK);
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            fail(report_fd, MSG_STEP, STEP_LOOPBACK);
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req) != 0 {
            fail(report_fd, MSG_STEP, STEP_LOOPBACK);
        }
        libc::close(sock);
    }
}

/// The command, in a child of PID 1. Async-signal-safe calls only.
fn command_main(c: &Child<'_>) -> ! {
    // SAFETY: as in `child_main`.
    unsafe {
        if c.apart && (libc::chroot(c".".as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0) {
            fail(c.report, MSG_STEP, STEP_APART);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(c.output, 1) < 0 || libc::dup2(c.output, 2) < 0 {
            fail(c.report, MSG_STEP, STEP_FORK);
        }
        close_all_but(&[c.report]);
        for &(cap, _) in DROPPED_CAPABILITIES {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 && errno() != libc::EINVAL {
                fail(c.report, MSG_STEP, STEP_CAPS);
            }
        }
        // The builder ignores SIGPIPE (Rust does) and may block signals in some thread:
        // the command starts as a fresh process would.
        for signal in 1..libc::SIGRTMIN() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut error = libc::ENOENT;
        for program in c.programs {
            libc::execve(program.as_ptr(), c.argv.as_ptr(), c.envp.as_ptr());
            // Like execvp: keep looking past missing files, remember a more telling error.
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                error = e;
            }
        }
        report(c.report, MSG_EXEC, 0, error);
        libc::_exit(127)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` fills the two descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::Start { step: "pipe", source: std::io::Error::last_os_error() });
    }
    // SAFETY: both are fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The paths `execve` tries for `program`: itself if it has a `/`, else each `PATH` entry.
fn programs(program: &str, env: &[(String, String)]) -> Result<Vec<CString>, SandboxError> {
    if program.contains('/') {
        return Ok(vec![cstring(program)?]);
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map_or(PATH, |(_, v)| v.as_str());
    path.split(':').filter(|d| !d.is_empty()).map(|dir| cstring(format!("{dir}/{program}"))).collect()
}

/// The trailing `limit` bytes of what the command wrote.
struct Tail {
    bytes: Vec<u8>,
    limit: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.limit.saturating_mul(2).max(64 * 1024) {
            let cut = self.bytes.len() - self.limit;
            self.bytes.drain(..cut);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let cut = self.bytes.len().saturating_sub(self.limit);
        self.bytes.drain(..cut);
        self.bytes
    }
}

/// Runs `spec.argv` in a fresh sandbox over `spec.root` (see the module docs).
///
/// Long by design: everything the child reads is prepared here, before `clone`, in one place,
/// so that nothing after the clone allocates; the steps follow the module docs one by one.
pub fn run(spec: &Spec<'_>) -> Result<Outcome, SandboxError> {
    let program = spec.argv.first().ok_or(SandboxError::NoCommand)?;
    let root =
        fs_err::canonicalize(spec.root).map_err(|source| SandboxError::Root { root: spec.root.to_owned(), source })?;
    prepare_mount_points(&root)?;
    let plan = plan(&root, &spec.binds)?;
    let root_c = cstring(root.as_os_str().as_bytes())?;
    let hostname = cstring(&spec.hostname)?;
    let programs = programs(program, &spec.env)?;
    let argv_c = spec.argv.iter().map(cstring).collect::<Result<Vec<_>, _>>()?;
    let env_c = spec.env.iter().map(|(k, v)| cstring(format!("{k}={v}"))).collect::<Result<Vec<_>, _>>()?;
    let argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = env_c.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();

    let (report_read, report_write) = pipe()?;
    let (sync_read, sync_write) = pipe()?;
    let (output_read, output_write) = pipe()?;
    let child = Child {
        plan: &plan,
        root: &root_c,
        hostname: &hostname,
        programs: &programs,
        argv: &argv,
        envp: &envp,
        report: report_write.as_raw_fd(),
        sync_read: sync_read.as_raw_fd(),
        sync_write: sync_write.as_raw_fd(),
        output: output_write.as_raw_fd(),
        apart: spec.chroot,
    };
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::SIGCHLD;
    let started = Instant::now();
    // SAFETY: a fork-like clone (no new stack, no shared memory). The child runs only
    // `child_main`, which keeps to async-signal-safe calls and never returns.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        let step = "clone into new namespaces, which needs root";
        return Err(SandboxError::Start { step, source: std::io::Error::last_os_error() });
    }
    if pid == 0 {
        child_main(&child);
    }
    let pid = pid as libc::pid_t;
    drop((report_write, sync_read, output_write));
    // SAFETY: `pid` is our unreaped child, so the pidfd names it.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    // SAFETY: a one-byte write to the pipe we own; then our end closes.
    let go = unsafe { libc::write(sync_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    drop(sync_write);
    if go != 1 || pidfd < 0 {
        let source = std::io::Error::last_os_error();
        kill_and_reap(pid);
        return Err(SandboxError::Start { step: "pidfd", source });
    }
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let watched = watch(spec, pid, &pidfd, &report_read, &output_read, started);
    let (timed_out, messages, output) = match watched {
        Ok(w) => w,
        Err(e) => {
            kill_and_reap(pid);
            return Err(e);
        }
    };
    let duration = started.elapsed();
    let mut status = 0;
    // SAFETY: reaps our own child (already exited or killed).
    unsafe { libc::waitpid(pid, &mut status, 0) };

    let exit = if timed_out {
        Exit::TimedOut
    } else {
        match decode(&messages, &plan, program)? {
            Some(status) if libc::WIFEXITED(status) => Exit::Code(libc::WEXITSTATUS(status)),
            Some(status) if libc::WIFSIGNALED(status) => Exit::Signal(libc::WTERMSIG(status)),
            _ => return Err(SandboxError::Lost { exit: describe_status(status) }),
        }
    };
    Ok(Outcome { exit, duration, output })
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: `pid` is our unreaped child: the pid cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {}", libc::WEXITSTATUS(status))
    }
}

/// The command's wait status from the child's messages, or the error it reported.
fn decode(messages: &[u8], plan: &Plan, program: &str) -> Result<Option<i32>, SandboxError> {
    for m in messages.chunks_exact(12) {
        let word = |i: usize| i32::from_ne_bytes(m[i * 4..i * 4 + 4].try_into().expect("four bytes"));
        let (kind, index, value) = (word(0), word(1), word(2));
        let source = std::io::Error::from_raw_os_error(value);
        match kind {
            MSG_OP => {
                let step = plan.names.get(index as usize).cloned().unwrap_or_else(|| format!("step {index}"));
                return Err(SandboxError::Setup { step, source });
            }
            MSG_STEP => {
                let step = STEPS.get(index as usize).copied().unwrap_or("set up").to_owned();
                return Err(SandboxError::Setup { step, source });
            }
            MSG_EXEC => return Err(SandboxError::Exec { program: program.to_owned(), source }),
            MSG_STATUS => return Ok(Some(value)),
            _ => {}
        }
    }
    Ok(None)
}

/// Reads the report and output pipes until the child exits or the time limit passes (then
/// kills it). Returns whether it timed out, the report bytes and the output tail.
fn watch(
    spec: &Spec<'_>,
    pid: libc::pid_t,
    pidfd: &OwnedFd,
    report: &OwnedFd,
    output: &OwnedFd,
    started: Instant,
) -> Result<(bool, Vec<u8>, Vec<u8>), SandboxError> {
    // A limit too far to represent (`--timeout` of u64::MAX seconds) is no limit.
    let deadline = started.checked_add(spec.timeout).unwrap_or(started + Duration::from_secs(100 * 365 * 86_400));
    let mut tail = Tail { bytes: Vec::new(), limit: spec.output_limit };
    let mut messages = Vec::new();
    let (mut report_open, mut output_open, mut exited, mut timed_out) = (true, true, false, false);
    // Once the child is gone every writer is dead, but another thread of the builder that
    // forked in between may hold a copy of a write end for a moment: wait for EOF a little.
    let mut drain_until = None;
    let mut buf = vec![0u8; 64 * 1024];
    while report_open || output_open {
        let now = Instant::now();
        let limit = match drain_until {
            Some(until) if now >= until => break,
            Some(until) => until,
            None if now >= deadline => {
                // SAFETY: our unreaped child; SIGKILL to a PID 1 from outside kills the
                // whole PID namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                timed_out = true;
                drain_until = Some(now + Duration::from_secs(2));
                continue;
            }
            None => deadline,
        };
        let wait = limit.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [
            libc::pollfd { fd: if report_open { report.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if output_open { output.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if exited { -1 } else { pidfd.as_raw_fd() }, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: polls three live pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.max(1)) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SandboxError::Start { step: "poll", source: e });
        }
        for (i, open) in [(0, &mut report_open), (1, &mut output_open)] {
            if fds[i].revents != 0 {
                // SAFETY: reads into our buffer from a descriptor we own.
                let got = unsafe { libc::read(fds[i].fd, buf.as_mut_ptr().cast(), buf.len()) };
                match got {
                    0 => *open = false,
                    n if n > 0 => {
                        let chunk = &buf[..n as usize];
                        if i == 0 {
                            messages.extend_from_slice(chunk);
                        } else {
                            tail.push(chunk);
                        }
                    }
                    _ if errno() == libc::EINTR => {}
                    _ => *open = false,
                }
            }
        }
        if fds[2].revents != 0 && !exited {
            exited = true;
            drain_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    Ok((timed_out, messages, tail.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_env_is_fixed() {
        let env = default_env(1_700_000_000);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "LC_ALL", "TZ", "SOURCE_DATE_EPOCH", "DEBIAN_FRONTEND", "HOME"]);
        assert!(env.contains(&("SOURCE_DATE_EPOCH".into(), "1700000000".into())));
        assert!(env.contains(&("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())));
    }

    #[test]
    fn bind_targets_stay_in_run() {
        assert!(valid_bind_target("/run/candidate/script"));
        assert!(valid_bind_target("/run/x"));
        for bad in ["/etc/passwd", "/run", "/run/", "/run/../etc", "/run/a/./b", "/run//a", "run/a", "/run/a/"] {
            assert!(!valid_bind_target(bad), "{bad}");
        }
    }

    #[test]
    fn programs_follow_path_like_execvp() {
        let env = vec![("PATH".to_owned(), "/usr/bin::/bin".to_owned())];
        let got: Vec<String> = programs("sh", &env).unwrap().into_iter().map(|c| c.into_string().unwrap()).collect();
        assert_eq!(got, ["/usr/bin/sh", "/bin/sh"]);
        assert_eq!(programs("/bin/sh", &env).unwrap(), [cstring("/bin/sh").unwrap()]);
        assert!(matches!(programs("a\0b", &[]), Err(SandboxError::Nul { .. })));
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Tail { bytes: Vec::new(), limit: 5 };
        for chunk in [&b"hello "[..], b"world", &[b'x'; 100_000]] {
            tail.push(chunk);
        }
        tail.push(b"12345678");
        assert_eq!(tail.finish(), b"45678");
        let mut short = Tail { bytes: Vec::new(), limit: 100 };
        short.push(b"abc");
        assert_eq!(short.finish(), b"abc");
    }

    #[test]
    fn reports_decode_to_named_errors() {
        let plan = plan(Path::new("/nonexistent-root"), &[]).unwrap();
        assert_eq!(plan.names[0], "make mount propagation private");
        let msg = |k: i32, i: i32, v: i32| [k, i, v].iter().flat_map(|w| w.to_ne_bytes()).collect::<Vec<u8>>();
        let err = decode(&msg(MSG_OP, 2, libc::EPERM), &plan, "/bin/sh").unwrap_err();
        assert_eq!(err.to_string(), "the sandbox could not mount `/proc`");
        let err = decode(&msg(MSG_EXEC, 0, libc::ENOENT), &plan, "/bin/sh").unwrap_err();
        assert!(matches!(err, SandboxError::Exec { ref program, .. } if program == "/bin/sh"), "{err}");
        assert_eq!(decode(&msg(MSG_STATUS, 0, 3 << 8), &plan, "x").unwrap(), Some(3 << 8));
        assert_eq!(decode(&[], &plan, "x").unwrap(), None);
    }

    #[test]
    fn a_bind_outside_run_is_refused() {
        let bind = Bind { source: "/".into(), target: "/etc/x".into(), read_only: true };
        assert!(matches!(plan(Path::new("/r"), &[bind]), Err(SandboxError::BindTarget { .. })));
    }

    /// A root with a static busybox as `/bin/sh`, or `None` (a skip, under CI a failure)
    /// without root or busybox.
    fn busybox_root() -> Option<tempfile::TempDir> {
        if !(crate::testing::root() && crate::testing::file("/bin/busybox", "busybox-static")) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("bin")).unwrap();
        fs_err::copy("/bin/busybox", dir.path().join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "hostname", "sleep", "ls", "echo", "stat"] {
            std::os::unix::fs::symlink("busybox", dir.path().join("bin").join(applet)).unwrap();
        }
        Some(dir)
    }

    fn spec<'a>(root: &'a Path, script: &str) -> Spec<'a> {
        Spec {
            root,
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: default_env(1),
            hostname: "sandbox".into(),
            binds: Vec::new(),
            timeout: Duration::from_secs(20),
            output_limit: 4096,
            chroot: false,
        }
    }

    #[test]
    fn a_chroot_run_sets_init_apart_from_the_image() {
        let Some(root) = busybox_root() else { return };
        fs_err::write(root.path().join("marker"), b"image\n").unwrap();
        // What `ischroot` compares: the root of the command and the root of PID 1.
        let script = "stat -L -c %d:%i / /proc/1/root; cat /marker";
        let roots = |chroot| {
            let outcome = run(&Spec { chroot, ..spec(root.path(), script) }).unwrap();
            let text = String::from_utf8_lossy(&outcome.output).into_owned();
            assert_eq!(outcome.exit, Exit::Code(0), "{text}");
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            assert_eq!(lines.len(), 3, "{text}");
            assert_eq!(lines[2], "image", "the command's root is the image: {text}");
            lines[0] != lines[1]
        };
        assert!(roots(true), "with `chroot`, PID 1's root is not the image's");
        assert!(!roots(false), "without it, PID 1 shares the image's root");
    }

    #[test]
    fn runs_a_command_in_its_own_namespaces() {
        let Some(root) = busybox_root() else { return };
        let script = "echo pid=$$; hostname; cat /proc/net/dev; echo err >&2; ls /run/candidate; \
                      cat /run/candidate/in; echo x > /run/candidate/in || echo read-only; exit 3";
        let input = tempfile::NamedTempFile::new().unwrap();
        fs_err::write(input.path(), b"bound\n").unwrap();
        let mut spec = spec(root.path(), script);
        spec.binds.push(Bind { source: input.path().to_owned(), target: "/run/candidate/in".into(), read_only: true });
        let outcome = run(&spec).unwrap();
        let text = String::from_utf8_lossy(&outcome.output);
        assert_eq!(outcome.exit, Exit::Code(3), "{text}");
        assert!(text.contains("pid=2\nsandbox\n"), "{text}");
        assert!(text.contains("lo:") && !text.contains("eth"), "{text}");
        assert!(text.contains("err\n") && text.contains("bound\n") && text.contains("read-only"), "{text}");
        // Nothing was left in the image: the mount points are empty folders.
        for name in MOUNT_POINTS {
            assert!(fs_err::read_dir(root.path().join(name)).unwrap().next().is_none(), "{name}");
        }
    }

    /// #16: `/tmp`, `/run` and `/dev/shm` were tmpfs without a size, so a script could fill
    /// the host's memory. Each reports its cap, and writing past it fails in the sandbox.
    #[test]
    fn the_sandbox_tmpfs_mounts_are_capped() {
        let Some(root) = busybox_root() else { return };
        let script = "df -k /tmp /run /dev/shm | tail -n +2 | while read fs size rest; do echo $size; done; \
                      dd if=/dev/zero of=/run/fill bs=1M count=100 2>/dev/null && echo filled || echo refused";
        let outcome = run(&spec(root.path(), script)).unwrap();
        let text = String::from_utf8_lossy(&outcome.output);
        assert_eq!(outcome.exit, Exit::Code(0), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["1048576", "65536", "65536", "refused"], "{text}");
    }

    #[test]
    fn init_reaps_orphans_and_takes_the_rest_down_with_the_command() {
        let Some(root) = busybox_root() else { return };
        // `true` is orphaned (its subshell does not wait): PID 1 must reap it, or it would
        // show as a zombie. The background `sleep` dies with the namespace when the command
        // exits, and the run does not wait for it.
        let script = "(true &); sleep 0.3; cat /proc/[0-9]*/stat; sleep 1021 & exit 5";
        let started = Instant::now();
        let outcome = run(&spec(root.path(), script)).unwrap();
        let text = String::from_utf8_lossy(&outcome.output);
        assert_eq!(outcome.exit, Exit::Code(5), "{text}");
        assert!(!text.contains(") Z "), "a zombie was left unreaped:\n{text}");
        // Far below the 1021 s the background `sleep` would take, and loose for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
        let leftover = fs_err::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| fs_err::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x001021\x00"));
        assert!(!leftover, "a background process outlived the sandbox");
        let killed = run(&spec(root.path(), "kill -9 $$")).unwrap();
        assert_eq!(killed.exit, Exit::Signal(9));
    }

    #[test]
    fn a_timeout_kills_everything() {
        let Some(root) = busybox_root() else { return };
        let mut spec = spec(root.path(), "sleep 1000 & sleep 1000");
        spec.timeout = Duration::from_millis(500);
        let outcome = run(&spec).unwrap();
        assert_eq!(outcome.exit, Exit::TimedOut);
        assert!(outcome.duration < Duration::from_secs(5), "{:?}", outcome.duration);
        // A missing program is an exec error, not a timeout: with the 500 ms limit left from
        // above, a loaded machine could time out before the exec fails, so it gets its own.
        let spec = Spec { argv: vec!["/bin/missing".into()], timeout: Duration::from_secs(60), ..spec };
        let err = run(&spec).unwrap_err();
        assert!(matches!(err, SandboxError::Exec { .. }), "{err}");
    }
}
