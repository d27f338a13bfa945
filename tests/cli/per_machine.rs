//! Per-machine state and the nondeterminism guard of configure mode, against a real Debian 12
//! mirror (`#[ignore]`d like the other `real_` tests; `.ci/run` runs them with the mirror).
//!
//! * `recipes/server.toml` (SSH, nginx, PostgreSQL 15, numpy, yaml; systemd) is built twice —
//!   another build path, store, umask and TZ — and must come out byte-identical, with no
//!   private key anywhere in its rootfs; then two nodes boot from that one candidate
//!   (`systemd-nspawn -b`), and each must have made its own keys and machine id, pass `sshd
//!   -t`, answer SQL and serve nginx's page on its loopback.
//! * A package whose postinst writes random bytes to a path on no list fails the build naming
//!   that path, and builds once the recipe declares it per-machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fs_err as fs;

use super::configure::{extract, leftovers, mirror, unsafe_umask, wait_running};
use super::formats::ok;
use super::{fixture, repo, run, with_store};

/// Every regular file under `root` that holds PEM or OpenSSH private key material: a `-----BEGIN
/// … PRIVATE KEY-----` line followed by a line of base64. (Programs that write keys hold the
/// header as a string constant, never followed by key text.)
fn private_keys(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && holds_private_key(&fs::read(entry.path()).unwrap()) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

fn holds_private_key(bytes: &[u8]) -> bool {
    let begin = b"-----BEGIN ";
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(begin.len()).position(|w| w == begin) {
        let start = at + i + begin.len();
        at = start;
        let Some(end) = bytes[start..].iter().take(64).position(|&b| b == b'\n') else { continue };
        let header = String::from_utf8_lossy(&bytes[start..start + end]);
        if !header.trim_end_matches('\r').ends_with("PRIVATE KEY-----") {
            continue;
        }
        let body = &bytes[start + end + 1..];
        let line = body.iter().take_while(|&&b| b != b'\n').count();
        let base64 = body[..line].iter().all(|b| b.is_ascii_alphanumeric() || b"+/=\r".contains(b));
        if line >= 40 && base64 {
            return true;
        }
    }
    false
}

#[test]
fn the_key_scan_finds_keys_and_not_the_programs_that_write_them() {
    let key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
    assert!(holds_private_key(key));
    let pkcs8 =
        b"junk\n-----BEGIN PRIVATE KEY-----\r\nMC4CAQAwBQYDK2VwBCIEIH0Xh1cYj6M9yN0a8f4P3cQ1nqGxW2ZkLqJ8bT7s9wXy\r\n";
    assert!(holds_private_key(pkcs8));
    // ssh-keygen's string constants; a public key.
    assert!(!holds_private_key(b"\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH PRIVATE KEY-----\n\0"));
    assert!(!holds_private_key(
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    ));
}

/// Every file a package shipped (path without the leading `/`, merged-/usr aliases too) and
/// its md5sum, from `/var/lib/dpkg/info/*.md5sums`.
fn shipped_md5sums(root: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for entry in fs::read_dir(root.join("var/lib/dpkg/info")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md5sums") {
            for line in fs::read_to_string(&path).unwrap().lines() {
                if let Some((sum, file)) = line.split_once("  ") {
                    // Packages name `lib/…` and `bin/…`; merged /usr puts them under `usr/`.
                    for alias in [file.to_owned(), format!("usr/{file}")] {
                        out.insert(alias, sum.to_owned());
                    }
                }
            }
        }
    }
    out
}

/// A booted `systemd-nspawn -b` node, stopped (one SIGTERM, then SIGKILL) when dropped, so a
/// failed assertion never leaves it running.
pub(super) struct Node {
    child: Child,
    init: String,
}

impl Node {
    pub(super) fn boot(root: &Path) -> Node {
        let mut child = Command::new("systemd-nspawn")
            .args(["-q", "--register=no", "--keep-unit", "--private-network", "--console=pipe", "-b", "-D"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn (Debian package systemd-container) runs");
        let pid = child.id();
        // nspawn's first child only sets up and exits; the container's init is the child that
        // has become `systemd`.
        let init = (0..300).find_map(|_| {
            let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            let init = children.split_whitespace().find(|child| {
                fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|comm| comm.trim() == "systemd")
            });
            if init.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            init.map(str::to_owned)
        });
        match init {
            Some(init) => Node { child, init },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nspawn did not start systemd in {} within 30 s", root.display());
            }
        }
    }

    /// Runs a command in the node: (exit code, stdout + stderr).
    pub(super) fn exec(&self, args: &[&str]) -> (Option<i32>, String) {
        let out =
            Command::new("nsenter").args(["-t", &self.init, "-a"]).args(args).stdin(Stdio::null()).output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    /// Stdout of a command that must succeed in the node.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, text) = self.exec(args);
        assert_eq!(code, Some(0), "{args:?} in the node:\n{text}");
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: a plain signal to the child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.wait();
    }
}

/// Polls `probe` (a command in the node) until it exits 0, for up to 60 s: its last output.
fn until_ok(node: &Node, args: &[&str]) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        let result = node.exec(args);
        if result.0 == Some(0) || start.elapsed() > Duration::from_secs(60) {
            return result;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The recipe and lockfile of `recipes/server.toml` copied into `dir`.
fn server_project(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("recipes")).unwrap();
    fs::create_dir_all(dir.join("lockfiles")).unwrap();
    fs::copy(repo().join("recipes/server.toml"), dir.join("recipes/server.toml")).unwrap();
    fs::copy(repo().join("lockfiles/server.lock"), dir.join("lockfiles/server.lock")).unwrap();
    dir.join("recipes/server.toml")
}

/// The server recipe: reproducible, keyless, and every node its own. One build pair covers
/// reproducibility, the key scan and both boots (the configured build takes ~40 s).
#[test]
#[ignore = "needs a local Debian 12 mirror (benches/make-mirror.sh), the archive to add the server packages, and systemd-nspawn; .ci/run runs it"]
fn real_server_is_reproducible_keyless_and_each_node_makes_its_own_keys() {
    ok(Command::new(repo().join("benches/extend-mirror.sh")).arg(repo().join("lockfiles/server.lock")).arg(mirror()));
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::Builder::new().prefix("elsewhere-").tempdir().unwrap();
    let (ra, rb) = (server_project(a.path()), server_project(b.path()));
    let (sa, sb) = (a.path().join("store"), b.path().join("store"));
    let url = format!("file://{}", mirror().display());
    // The lockfile in the repository is current for the recipe.
    let mut check = with_store(a.path(), &sa, ["lock".as_ref(), "--check".as_ref(), ra.as_os_str()]);
    check.env("CANDIDATE_MIRROR_DEBIAN", &url);
    run(check).assert_ok();

    // One format: the rootfs the nodes boot from (xz for LXC would add a minute of CI).
    let mut first = with_store(
        a.path(),
        &sa,
        ["-v".as_ref(), "build".as_ref(), "--format".as_ref(), "rootfs.tar.zst".as_ref(), ra.as_os_str()],
    );
    first.env("TZ", "UTC").env("CANDIDATE_MIRROR_DEBIAN", &url);
    unsafe_umask(&mut first, 0o022);
    let first = run(first);
    first.assert_ok();
    assert!(first.stderr.contains("(twice, side by side)"), "the guard ran\n{}", first.describe());
    let mirror_arg = format!("debian={url}");
    let second_args = [
        "--mirror".as_ref(),
        mirror_arg.as_ref(),
        "build".as_ref(),
        "--format".as_ref(),
        "rootfs.tar.zst".as_ref(),
        rb.as_os_str(),
    ];
    let mut second = with_store(b.path(), &sb, second_args);
    second.env("TZ", "Pacific/Auckland").env("LC_ALL", "C");
    unsafe_umask(&mut second, 0o077);
    run(second).assert_ok();
    let (da, db) = (a.path().join("dist/server_1_amd64"), b.path().join("dist/server_1_amd64"));
    for file in ["manifest.json", "rootfs.tar.zst"] {
        assert!(
            fs::read(da.join(file)).unwrap() == fs::read(db.join(file)).unwrap(),
            "{file} differs between the builds"
        );
    }

    // The manifest tells auditors what each node adds.
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(da.join("manifest.json")).unwrap()).unwrap();
    let record = &manifest["per-machine"];
    let removed: Vec<(&str, &str)> = record["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["by"].as_str().unwrap()))
        .collect();
    // The host keys were never made: their stand-ins kept openssh-server's postinst from it
    // (it would have made the `.pub` halves too), and are what is left out.
    let ssh: Vec<&str> = removed.iter().filter(|(_, by)| *by == "openssh-server").map(|(path, _)| *path).collect();
    assert_eq!(ssh, ["/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]);
    for (path, by) in [
        ("/etc/ssl/private/ssl-cert-snakeoil.key", "ssl-cert"),
        ("/etc/ssl/certs/ssl-cert-snakeoil.pem", "ssl-cert"),
        ("/var/lib/postgresql/15/main", "postgresql-common"),
        ("/etc/postgresql/15/main", "postgresql-common"),
    ] {
        assert!(removed.contains(&(path, by)), "{path} by {by} not in {removed:?}");
    }
    let actions: Vec<&str> =
        record["first-boot"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(actions, ["openssh-server", "ssl-cert", "postgresql-common"]);
    assert_eq!(record["runner"], "systemd: candidate-first-boot.service, in sysinit.target");
    assert_eq!(record["guard"], true);
    assert_eq!(record["emptied"], serde_json::json!(["/etc/machine-id"]));

    // No private key anywhere in the candidate, but those a Debian package ships as is (the
    // archive publishes them: libgnutls's self-test keys), checked against dpkg's md5sums.
    let root = a.path().join("root1");
    extract(&da.join("rootfs.tar.zst"), &root);
    let shipped = shipped_md5sums(&root);
    let (published, secret): (Vec<PathBuf>, Vec<PathBuf>) = private_keys(&root).into_iter().partition(|path| {
        let rel = path.strip_prefix(&root).unwrap().to_str().unwrap().to_owned();
        let md5 = ok(Command::new("md5sum").arg(path));
        shipped.get(&rel).is_some_and(|sum| md5.starts_with(sum.as_str()))
    });
    assert_eq!(secret, Vec::<PathBuf>::new(), "private keys in the rootfs (besides packaged ones: {published:?})");
    for gone in ["etc/ssh/ssh_host_ed25519_key", "var/lib/dbus/machine-id", "var/lib/postgresql/15/main"] {
        assert!(!root.join(gone).exists(), "/{gone} is in the candidate");
    }
    assert_eq!(fs::read(root.join("etc/machine-id")).unwrap(), b"");
    let other = a.path().join("root2");
    extract(&da.join("rootfs.tar.zst"), &other);

    // Two nodes from the one candidate, side by side.
    let nodes = [Node::boot(&root), Node::boot(&other)];
    let mut seen: Vec<[String; 3]> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let state = wait_running(|| node.exec(&["/bin/systemctl", "is-system-running"]).1);
        let failed = node.exec(&["/bin/systemctl", "--failed", "--no-legend"]).1;
        let journal = node.exec(&["/bin/journalctl", "-b", "-u", "candidate-first-boot", "--no-pager"]).1;
        assert_eq!(state, "running", "node {i}: failed units:\n{failed}\nfirst boot:\n{journal}");
        node.ok(&["/usr/sbin/sshd", "-t"]);
        let (ready, text) = until_ok(node, &["/usr/bin/pg_isready", "-q"]);
        assert_eq!(ready, Some(0), "node {i}: pg_isready: {text}\n{journal}");
        let answer = node.ok(&["/usr/sbin/runuser", "-u", "postgres", "--", "/usr/bin/psql", "-tAc", "select 6 * 7"]);
        assert_eq!(answer.trim(), "42");
        let page = node.ok(&[
            "/usr/bin/python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1/', timeout=10).read().decode())",
        ]);
        assert!(page.contains("Welcome to nginx"), "node {i}: {page}");
        let fingerprints = ["ed25519", "rsa", "ecdsa"]
            .map(|kind| node.ok(&["/usr/bin/ssh-keygen", "-lf", &format!("/etc/ssh/ssh_host_{kind}_key.pub")]))
            .join("");
        let snakeoil = node.ok(&[
            "/usr/bin/openssl",
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            "/etc/ssl/certs/ssl-cert-snakeoil.pem",
        ]);
        let machine_id = node.ok(&["/bin/cat", "/etc/machine-id"]);
        assert_eq!(machine_id.trim().len(), 32, "node {i}: machine id {machine_id:?}");
        seen.push([fingerprints, snakeoil, machine_id]);
    }
    drop(nodes);
    for (k, what) in ["SSH host key fingerprints", "snakeoil certificates", "machine ids"].iter().enumerate() {
        assert_ne!(seen[0][k], seen[1][k], "both nodes have the same {what}");
    }
    assert_eq!(leftovers(&sa), Vec::<PathBuf>::new());
    assert_eq!(leftovers(&sb), Vec::<PathBuf>::new());
}

/// A recipe: the minbase set from the mirror and `node-token` from a local archive (its
/// postinst writes random bytes), configured; `declare` adds it as per-machine state.
fn token_recipe(dir: &Path, archive: &Path, declare: bool) -> PathBuf {
    let mut body = format!(
        "[image]\nname = \"token\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
         source-date-epoch = \"archive\"\n\n[archive.debian]\nurl = \"file://{}\"\nsuite = \"bookworm\"\n\
         components = [\"main\"]\nkeyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\n\n\
         [archive.local]\nurl = \"file://{}\"\nsuite = \"stable\"\ncomponents = [\"main\"]\nkeyring = \"{}\"\n\n\
         [[layer]]\nname = \"base\"\npriority = \"required\"\npackages = [\"apt\", \"node-token\"]\n\n\
         [configure]\nmaintainer-scripts = true\n",
        mirror().display(),
        archive.display(),
        fixture("apt/keys/test-archive.gpg").display()
    );
    if declare {
        body.push_str(
            "\n[[configure.per-machine]]\nname = \"node-token\"\npaths = [\"/var/lib/node-token/token\"]\n\
             first-boot = \"mkdir -p /var/lib/node-token && head -c 32 /dev/urandom > /var/lib/node-token/token\"\n",
        );
    }
    body.push_str("\n[output]\nformats = [\"rootfs.tar.zst\"]\n");
    fs::create_dir_all(dir.join("recipes")).unwrap();
    let path = dir.join("recipes/token.toml");
    fs::write(&path, body).unwrap();
    path
}

#[test]
#[ignore = "needs a local Debian 12 mirror (benches/make-mirror.sh), dpkg-deb and apt-ftparchive; .ci/run runs it"]
fn real_random_postinst_fails_the_guard_until_declared() {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("archive");
    ok(Command::new(fixture("per-machine/make-archive.sh")).arg(&archive));
    let store = t.path().join("store");
    let path = token_recipe(t.path(), &archive, false);
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()])).assert_ok();
    let refused = run(with_store(t.path(), &store, ["build".as_ref(), path.as_os_str()]));
    refused
        .assert_code(1)
        .assert_stderr_has(
            "error: what the maintainer scripts made differs between two runs of the same image at one path: \
             /var/lib/node-token/token",
        )
        .assert_stderr_has("hint: ")
        .assert_stderr_has("paths = [\"/var/lib/node-token/token\"]");
    assert!(!t.path().join("dist/token_1_amd64").exists(), "no candidate after a refusal");
    assert_eq!(leftovers(&store), Vec::<PathBuf>::new());

    let path = token_recipe(t.path(), &archive, true);
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()])).assert_ok();
    run(with_store(t.path(), &store, ["build".as_ref(), path.as_os_str()])).assert_ok();
    let dist = t.path().join("dist/token_1_amd64");
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(dist.join("manifest.json")).unwrap()).unwrap();
    let record = &manifest["per-machine"];
    assert_eq!(record["removed"], serde_json::json!([{ "path": "/var/lib/node-token/token", "by": "node-token" }]));
    assert_eq!(record["first-boot"][0]["name"], "node-token");
    assert_eq!(record["first-boot"][0]["origin"], "recipe");
    // minbase has no systemd: the script is there, and the manifest says nothing runs it.
    assert!(record["runner"].as_str().unwrap().starts_with("none: the image's init is not systemd"), "{record}");
    let root = t.path().join("root");
    extract(&dist.join("rootfs.tar.zst"), &root);
    assert!(!root.join("var/lib/node-token/token").exists());
    let script = fs::read_to_string(root.join("usr/lib/candidate/first-boot")).unwrap();
    assert!(script.contains("action 'node-token'"), "{script}");
    // Run in the image, the script makes the token, once.
    // (`/dev` bound in a mount namespace of its own: nothing stays mounted.)
    ok(Command::new("unshare")
        .args([
            "--mount",
            "--fork",
            "sh",
            "-c",
            r#"mount --rbind /dev "$1/dev" && chroot "$1" /usr/lib/candidate/first-boot"#,
            "sh",
        ])
        .arg(&root));
    assert_eq!(fs::read(root.join("var/lib/node-token/token")).unwrap().len(), 32);
    assert!(root.join("var/lib/candidate/first-boot/node-token.done").exists());
    assert_eq!(leftovers(&store), Vec::<PathBuf>::new());
}
