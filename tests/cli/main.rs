//! End-to-end tests of the `candidate` binary: one integration test binary (cargo's shape),
//! one module per area, sharing the small context below.

mod attest;
mod budgets;
mod configure;
mod debian;
mod determinism;
mod feed;
mod formats;
mod heal;
mod hostile;
mod moved_on;
mod per_machine;
mod python;
mod python_lock;
mod qualify;
mod rebuilds;
mod refusals;
mod release;
mod remote;
mod store;
mod systems;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_candidate");

/// The repository root, where `recipes/`, `lockfiles/` and `fixtures/` live.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the repository's `recipes/`, `lockfiles/`, `fixtures/` and `systems/` into `dest`, so a test
/// can build the example somewhere else (another path, other mtimes, another order).
pub fn copy_project(dest: &Path, reverse_order: bool) {
    for top in ["recipes", "lockfiles", "fixtures", "systems"] {
        copy_tree(&repo().join(top), &dest.join(top), reverse_order);
    }
}

pub fn copy_tree(from: &Path, to: &Path, reverse_order: bool) {
    fs_err::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = fs_err::read_dir(from).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    if reverse_order {
        entries.reverse();
    }
    for path in entries {
        let target = to.join(path.file_name().unwrap());
        let meta = fs_err::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            copy_tree(&path, &target, reverse_order);
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&path).unwrap(), &target).unwrap();
        } else {
            fs_err::copy(&path, &target).unwrap();
        }
    }
}

/// Every file under `dir`, relative path -> bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            out.insert(entry.path().strip_prefix(dir).unwrap().to_owned(), fs_err::read(entry.path()).unwrap());
        }
    }
    out
}

/// Every path below `root` (not `root` itself), symlinks not followed; empty if missing.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else { continue };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A file under the repository's `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("fixtures").join(rel)
}

/// `sha256:HEX` of `bytes`, as candidate ids and manifests spell digests.
pub fn sha256(bytes: &[u8]) -> String {
    candidate::digest::Digest::of(bytes).to_string()
}

/// What one run of the binary did.
pub struct Run {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// `what` is the command line, for assertion messages.
    pub fn new(what: String, output: Output) -> Self {
        Run {
            what,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// For assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "expected success\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "wrong exit code\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "stderr does not mention {needle:?}\n{}", self.describe());
        self
    }
}

/// `candidate` run in `dir`, with a private HOME and cache, no `CANDIDATE_STORE`,
/// `SOURCE_DATE_EPOCH` or proxy (ureq reads `*_PROXY`, which would divert 127.0.0.1).
pub fn candidate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env("HOME", dir.join("home")).env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    for var in [
        "CANDIDATE_STORE",
        "SOURCE_DATE_EPOCH",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `candidate --store STORE ARGS…` in `dir`.
/// `cmd` as a terminal starts it, with SIGINT and SIGQUIT at their defaults: a test suite run
/// from a background job (`cargo test &`, a CI runner) inherits them ignored, and then a
/// Ctrl-C a test sends to the builder does nothing.
pub fn interruptible(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `signal` is async-signal-safe, the only call between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        })
    }
}

pub fn with_store<I, S>(dir: &Path, store: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = candidate(dir);
    cmd.arg("--store").arg(store).args(args);
    cmd
}

/// The command line, for assertion messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(OsStr::new("candidate"))
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(mut cmd: Command) -> Run {
    let output = cmd.output().expect("failed to run the candidate binary");
    Run::new(command_line(&cmd), output)
}

/// A throwaway CA and a certificate for 127.0.0.1 signed by it, made by `openssl`: the feed
/// tests' HTTPS server and the registry tests' TLS registry.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// In `dir/tls`: `ca.pem`, `server.pem` and `server.key`; `None` (a SKIPPED line, a
    /// panic under CI) without `openssl`.
    pub fn make(dir: &Path) -> Option<Self> {
        if !candidate::testing::tool("openssl", "openssl") {
            return None;
        }
        let dir = dir.join("tls");
        fs_err::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=candidate test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
        );
        fs_err::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Some(Tls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") })
    }
}
