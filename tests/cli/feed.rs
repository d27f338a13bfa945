//! Signed feeds (`publish`, `verify-feed`), proven with their real consumers: LXD (a private
//! `LXD_DIR`) adds the published folder as a simplestreams remote and launches the image, and
//! `lxc-create -t download` creates a container from LXC's index, both over HTTPS from a
//! server this test runs on 127.0.0.1; and `verify-feed` refuses a changed index, a swapped
//! image file and an older feed replayed.
//!
//! The server is a few lines of Rust over rustls (a dev-dependency; ureq already builds it),
//! on a thread of the test: it serves one folder read-only, logs each request, and stops when
//! dropped. HTTPS because both consumers insist on it (LXD takes only `https://`
//! simplestreams remotes; LXC's template always fetches `https://SERVER/…`); its certificate
//! comes from a throwaway CA that `openssl` makes, given to LXD as `SSL_CERT_FILE`, to LXC's
//! `wget` through `WGETRC`, and to `verify-feed` as `--ca`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candidate::testing;
use fs_err as fs;

use super::{copy_project, run, with_store, Run, Tls};

/// A project with keys, a policy and a `production` channel, in a temporary folder.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Run {
        run(with_store(self.root(), &self.root().join("store"), args))
    }

    /// Keys `ci` (builds), `rm` (promotes), `feed` (publishes), and the policy naming them.
    fn with_keys(dir: tempfile::TempDir) -> Self {
        let p = Project { dir };
        fs::create_dir_all(p.root().join("keys")).unwrap();
        for key in ["ci", "rm", "feed", "stranger"] {
            p.run(&["key", "generate", "--out", &format!("keys/{key}")]).assert_ok();
        }
        fs::write(
            p.root().join("channels.toml"),
            "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.production]\nkeys = [\"keys/rm.pub\"]\n",
        )
        .unwrap();
        p
    }

    /// Signs the candidate folder `dir` and promotes it to `production`.
    fn sign_and_promote(&self, dir: &Path) {
        let dir = dir.to_str().unwrap();
        self.run(&["sign", dir, "--key", "keys/ci.key"]).assert_ok();
        self.run(&["promote", dir, "--channel", "production", "--key", "keys/rm.key"]).assert_ok();
    }

    fn publish(&self, to: &str) -> Run {
        self.run(&["publish", "production", "--to", to, "--key", "keys/feed.key"])
    }

    fn verify_feed(&self, feed: &str, extra: &[&str]) -> Run {
        let mut args = vec!["verify-feed", feed, "--key", "keys/feed.pub"];
        args.extend(extra);
        self.run(&args)
    }
}

/// The example (every format), built from the repository's recipe with `version` as its
/// version: another version is another candidate.
fn build_example(p: &Project, version: &str) -> PathBuf {
    let recipe = p.root().join("recipes/example.toml");
    let text = fs::read_to_string(&recipe).unwrap().replace("version = \"1.0\"", &format!("version = \"{version}\""));
    fs::write(&recipe, text).unwrap();
    p.run(&["lock", "recipes/example.toml"]).assert_ok();
    p.run(&["build", "recipes/example.toml", "--out", "out"]).assert_ok();
    p.root().join(format!("out/example_{version}_amd64"))
}

fn copy_dir(from: &Path, to: &Path) {
    assert!(Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success());
}

/// Makes a file of a published feed (read-only, as published) writable and gives it `bytes`.
fn overwrite(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

/// An `incus` image whose rootfs is zstd has no name in LXD's simplestreams (`root.tar.xz`
/// only): the feed refuses it, naming the candidate and the two ways out, and writes nothing.
#[test]
fn a_feed_refuses_an_incus_image_whose_rootfs_is_zstd() {
    let p = Project::with_keys(tempfile::tempdir().unwrap());
    copy_project(p.root(), false);
    let recipe = p.root().join("recipes/example.toml");
    let text = fs::read_to_string(&recipe).unwrap() + "\n[lxc]\nincus-rootfs = \"zstd\"\n";
    fs::write(&recipe, text).unwrap();
    p.run(&["lock", "recipes/example.toml"]).assert_ok();
    let args = ["build", "recipes/example.toml", "--out", "out", "--format", "incus", "--format", "lxc"];
    p.run(&args).assert_ok();
    let dir = p.root().join("out/example_1.0_amd64");
    assert!(dir.join("rootfs.tar.zst").is_file() && !dir.join("rootfs.tar.xz").exists());
    p.sign_and_promote(&dir);
    let refused = p.publish("feed");
    refused.assert_code(2);
    refused.assert_stderr_has("its `incus` rootfs is `rootfs.tar.zst` (`[lxc] incus-rootfs = \"zstd\"`)");
    refused.assert_stderr_has("build it with `incus-rootfs = \"xz\"` or with the `rootfs.tar.xz` format too");
    assert!(!p.root().join("feed/streams").exists(), "a refused feed was written");
}

#[test]
fn a_feed_is_reproducible_and_verify_feed_refuses_tampering_and_rollback() {
    let p = Project::with_keys(tempfile::tempdir().unwrap());
    copy_project(p.root(), false);
    let first = build_example(&p, "1.0");
    p.sign_and_promote(&first);

    let published = p.publish("feed");
    published.assert_ok();
    for file in
        ["feed.intoto.json", "streams/v1/index.json", "streams/v1/images.json", "meta/1.0/index-system", "aplinfo.dat"]
    {
        assert!(p.root().join("feed").join(file).is_file(), "{file} missing\n{}", published.describe());
    }
    // The same channel published again, elsewhere: the same bytes (nothing from the clock).
    p.publish("again").assert_ok();
    assert_eq!(super::snapshot(&p.root().join("feed")), super::snapshot(&p.root().join("again")));
    // The LXD item's fingerprint is LXD's: sha256 of the metadata then the rootfs archive.
    let images: serde_json::Value =
        serde_json::from_slice(&fs::read(p.root().join("feed/streams/v1/images.json")).unwrap()).unwrap();
    let product = &images["products"]["debian:bookworm:amd64:example"];
    let (serial, version) = product["versions"].as_object().unwrap().iter().next().unwrap();
    let mut combined = fs::read(first.join("incus.meta.tar.xz")).unwrap();
    combined.extend(fs::read(first.join("rootfs.tar.xz")).unwrap());
    let fingerprint = super::sha256(&combined);
    assert_eq!(format!("sha256:{}", version["items"]["lxd.tar.xz"]["combined_sha256"].as_str().unwrap()), fingerprint);
    let index = fs::read_to_string(p.root().join("feed/meta/1.0/index-system")).unwrap();
    assert_eq!(
        index,
        format!("debian;bookworm;amd64;example;{serial};/images/debian/bookworm/amd64/example/{serial}/\n")
    );
    // Proxmox VE's index names the template with the digests `pveam` checks, as coreutils
    // computes them.
    let aplinfo = fs::read_to_string(p.root().join("feed/aplinfo.dat")).unwrap();
    let field = |name: &str| {
        aplinfo
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name}: {aplinfo}"))
    };
    assert_eq!(
        (field("Package"), field("Version"), field("Type"), field("OS")),
        ("example", "1.0", "lxc", "debian-bookworm")
    );
    let template = p.root().join("feed").join(field("Location"));
    assert_eq!(template.file_name().unwrap(), "debian-bookworm-example_1.0_amd64.tar.zst");
    for (tool, name) in [("sha512sum", "sha512sum"), ("md5sum", "md5sum")] {
        let out = super::formats::ok(Command::new(tool).arg(&template));
        assert_eq!(out.split_whitespace().next(), Some(field(name)), "{tool}");
    }
    p.verify_feed("feed", &[]).assert_ok();
    let old = p.root().join("feed-at-record-1");
    copy_dir(&p.root().join("feed"), &old);

    // A second candidate promoted: the feed moves to record 2 and carries both.
    let second = build_example(&p, "2.0");
    p.sign_and_promote(&second);
    p.publish("feed").assert_ok();
    let ok = p.verify_feed("feed", &["--json"]);
    ok.assert_ok();
    let verdict: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!((verdict["sequence"].as_u64(), verdict["verified"].as_bool()), (Some(2), Some(true)));
    let statement = fs::read(p.root().join("feed/feed.intoto.json")).unwrap();
    let images: serde_json::Value =
        serde_json::from_slice(&fs::read(p.root().join("feed/streams/v1/images.json")).unwrap()).unwrap();
    assert_eq!(images["products"]["debian:bookworm:amd64:example"]["versions"].as_object().unwrap().len(), 2);

    // Tampered copies of the current feed, each refused naming the file.
    let tampered = |name: &str, change: &dyn Fn(&Path)| -> Run {
        let dir = p.root().join(name);
        copy_dir(&p.root().join("feed"), &dir);
        change(&dir);
        p.verify_feed(name, &[])
    };
    let images_json = "streams/v1/images.json";
    let changed = tampered("changed-index", &|d| {
        let path = d.join(images_json);
        let text = fs::read_to_string(&path).unwrap().replace("\"example,", "\"examp1e,");
        overwrite(&path, text.as_bytes());
    });
    changed.assert_code(1).assert_stderr_has(&format!("{images_json}: changed"));
    let rootfs = fs::read_dir(p.root().join("feed/images/debian/bookworm/amd64/example"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap()
        .join("root.tar.xz");
    let rel = rootfs.strip_prefix(p.root().join("feed")).unwrap().to_str().unwrap().to_owned();
    let swapped = tampered("swapped-image", &|d| {
        overwrite(&d.join(&rel), &fs::read(first.join(candidate::lxc::ROOTFS)).unwrap())
    });
    swapped.assert_code(1).assert_stderr_has(&format!("{rel}: changed"));
    let extra = tampered("extra-file", &|d| fs::write(d.join("meta/1.0/index-system.7"), "debian;x\n").unwrap());
    extra.assert_code(1).assert_stderr_has("meta/1.0/index-system.7: not signed by the feed statement");
    // Another channel's feed (signed by the same key) where `production` is expected.
    p.verify_feed("feed", &["--channel", "nightly"])
        .assert_code(1)
        .assert_stderr_has("the feed is of channel `production`, not `nightly`");
    // A feed past its expiry is refused (0 days: it expires as it is signed).
    p.run(&["publish", "production", "--to", "expiring", "--key", "keys/feed.key", "--expires-after-days", "0"])
        .assert_ok();
    p.verify_feed("expiring", &[]).assert_code(1).assert_stderr_has("expiry: the feed expired at");
    p.run(&["publish", "production", "--to", "expiring", "--key", "keys/feed.key", "--expires-after-days", "30"])
        .assert_ok();
    assert!(p.verify_feed("expiring", &[]).assert_ok().stdout.contains("ok      expiry: valid until "));
    // Signed by someone else: refused as not signed by the trusted key.
    p.run(&["verify-feed", "feed", "--key", "keys/stranger.pub"])
        .assert_code(1)
        .assert_stderr_has("`feed.intoto.json` is not signed by the trusted keys");

    // The feed of record 1, replayed: every file is as signed, but it is older than what
    // this store verified.
    let replayed = p.verify_feed("feed-at-record-1", &[]);
    replayed.assert_code(1);
    assert_eq!(
        replayed.stderr,
        "error: the feed at `feed-at-record-1` does not verify: 1 failed check(s), the first: the feed of channel \
         `production` is at record 1, but record 2 was verified before: an older feed was replayed (a rollback)\n"
    );
    // Nothing above moved what is remembered: the current feed still verifies.
    p.verify_feed("feed", &[]).assert_ok();
    assert_eq!(fs::read(p.root().join("feed/feed.intoto.json")).unwrap(), statement);

    // An older candidate this store no longer holds: refused, with the way out.
    let aside = p.root().join("first-aside");
    fs::rename(&first, &aside).unwrap();
    p.publish("feed-head")
        .assert_code(2)
        .assert_stderr_has("which this store does not hold")
        .assert_stderr_has("hint: build or restore it, or publish only the newer ones: `--keep 1`");
    assert!(!p.root().join("feed-head").exists());
    p.run(&["publish", "production", "--to", "feed-head", "--key", "keys/feed.key", "--keep", "1"]).assert_ok();
    fs::rename(&aside, &first).unwrap();

    // A candidate changed after it was signed is not published, and the feed stays as it was.
    let before = super::snapshot(&p.root().join("feed"));
    let lxd_meta = second.join("incus.meta.tar.xz");
    let mut bytes = fs::read(&lxd_meta).unwrap();
    bytes[100] ^= 1;
    overwrite(&lxd_meta, &bytes);
    let refused = p.publish("feed");
    refused
        .assert_code(1)
        .assert_stderr_has("fails verification, so it is not published")
        .assert_stderr_has("incus.meta.tar.xz");
    assert_eq!(super::snapshot(&p.root().join("feed")), before, "a refused publish changed the feed");
    let staging: Vec<_> = fs::read_dir(p.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".feed."))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");

    // Served over HTTPS: the same verdicts through the URL.
    let Some(tls) = Tls::make(p.root()) else { return };
    let server = Server::start(p.root().join("feed"), &tls);
    let url = server.url();
    let ca = tls.ca.to_str().unwrap();
    p.verify_feed(&url, &["--ca", ca]).assert_ok();
    let replayed_server = Server::start(old, &tls);
    p.verify_feed(&replayed_server.url(), &["--ca", ca]).assert_code(1).assert_stderr_has("was verified before");
    let changed_server = Server::start(p.root().join("changed-index"), &tls);
    p.verify_feed(&changed_server.url(), &["--ca", ca])
        .assert_code(1)
        .assert_stderr_has(&format!("{images_json}: changed"));
    // Without the CA the server is not trusted at all.
    let untrusted = p.verify_feed(&url, &[]);
    assert_eq!(untrusted.code, Some(2), "{}", untrusted.describe());
    assert!(server.requests().iter().any(|r| r == &format!("GET /{rel}")), "{:?}", server.requests());
}

/// The busybox image (bootable enough for LXD and LXC), signed, promoted and published; the
/// project and the feed folder. `None` (a skip; under CI a failure) without busybox.
fn busybox_feed(dir: tempfile::TempDir) -> Option<(Project, PathBuf)> {
    let p = Project::with_keys(dir);
    let candidate = super::formats::busybox_project(p.root(), "")?;
    p.sign_and_promote(&candidate);
    p.publish("feed").assert_ok();
    let feed = p.root().join("feed");
    Some((p, feed))
}

#[test]
fn lxd_launches_an_image_from_the_published_simplestreams_feed() {
    if !(testing::root() && testing::tool("lxd", "lxd") && testing::tool("lxc", "lxd-client")) {
        return;
    }
    let Some((p, feed)) = busybox_feed(tempfile::tempdir().unwrap()) else { return };
    let Some(tls) = Tls::make(p.root()) else { return };
    let server = Server::start(feed, &tls);
    // The daemon downloads the image itself: it must trust the feed's CA, and only it.
    let daemon = super::systems::LxdDaemon::start_with_env(&[("SSL_CERT_FILE", &tls.ca)]);
    let conf = p.root().join("lxc-conf");
    fs::create_dir_all(&conf).unwrap();
    let lxc = |args: &[&str]| -> std::process::Output {
        Command::new("lxc")
            .args(args)
            .env("LXD_DIR", &daemon.dir)
            .env("LXD_CONF", &conf)
            .env("SSL_CERT_FILE", &tls.ca)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |out: std::process::Output| -> String {
        assert!(
            out.status.success(),
            "{}{}\n--- lxd log ---\n{}\n--- requests ---\n{:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemon.log(),
            server.requests()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(lxc(&["remote", "add", "feed", &server.url(), "--protocol", "simplestreams", "--public"]));
    let listed = ok(lxc(&["image", "list", "feed:", "--format", "csv", "-c", "lf"]));
    assert!(listed.contains("box"), "the remote does not list the image: {listed}");
    ok(lxc(&["launch", "feed:box", "c1", "-c", "raw.lxc=lxc.init.cmd = /bin/sleep 600"]));
    let hostname = lxc(&["exec", "c1", "--", "/bin/cat", "/etc/hostname"]);
    let fingerprint = ok(lxc(&["image", "list", "--format", "csv", "-c", "F"]));
    let _ = lxc(&["delete", "--force", "c1"]);
    let hostname = ok(hostname);
    assert_eq!(hostname.trim(), "c1", "LXD did not template /etc/hostname");
    // The image LXD holds is the one the feed's statement signs (LXD's fingerprint).
    let images: serde_json::Value =
        serde_json::from_slice(&fs::read(p.root().join("feed/streams/v1/images.json")).unwrap()).unwrap();
    let versions = &images["products"]["debian:bookworm:amd64:box"]["versions"];
    let version = versions.as_object().unwrap().values().next().unwrap();
    assert_eq!(fingerprint.trim(), version["items"]["lxd.tar.xz"]["combined_sha256"].as_str().unwrap());
    let requests = server.requests();
    for wanted in ["GET /streams/v1/index.json", "GET /streams/v1/images.json"] {
        assert!(requests.iter().any(|r| r == wanted), "LXD never asked for {wanted}: {requests:?}");
    }
    assert!(requests.iter().any(|r| r.ends_with("/root.tar.xz")), "{requests:?}");
}

#[test]
fn lxc_download_creates_a_container_from_the_published_index() {
    if !(testing::root() && super::formats::lxc_available() && testing::tool("wget", "wget")) {
        return;
    }
    let Some((p, feed)) = busybox_feed(tempfile::tempdir().unwrap()) else { return };
    let Some(tls) = Tls::make(p.root()) else { return };
    let server = Server::start(feed, &tls);
    // LXC 5.0's download template checks no signature (it dropped GPG for HTTPS): it trusts
    // the server's certificate through wget, so wget is given the feed's CA and nothing else.
    let wgetrc = p.root().join("wgetrc");
    fs::write(&wgetrc, format!("ca_certificate = {}\n", tls.ca.display())).unwrap();
    let lxcpath = p.root().join("lxc");
    let cache = p.root().join("lxc-cache");
    fs::create_dir_all(&lxcpath).unwrap();
    let conf = p.root().join("extra.conf");
    fs::write(&conf, "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep 600\n")
        .unwrap();
    let name = format!("cand-feed-{}", std::process::id());
    let lxc = |tool: &str, args: &[&str]| -> std::process::Output {
        Command::new(tool)
            .arg("-P")
            .arg(&lxcpath)
            .args(["-n", &name])
            .args(args)
            .env("WGETRC", &wgetrc)
            .env("LXC_CACHE_PATH", &cache)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    struct Destroy<'a>(&'a dyn Fn());
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let destroy = || {
        if lxcpath.join(&name).exists() {
            let _ = lxc("lxc-destroy", &["-f"]);
        }
    };
    let _destroy = Destroy(&destroy);
    let server_arg = format!("127.0.0.1:{}", server.port);
    let create = lxc(
        "lxc-create",
        &[
            "-t",
            "download",
            "-f",
            conf.to_str().unwrap(),
            "--",
            "--server",
            &server_arg,
            "-d",
            "debian",
            "-r",
            "bookworm",
            "-a",
            "amd64",
            "--variant",
            "box",
        ],
    );
    assert!(
        create.status.success(),
        "lxc-create -t download failed:\n{}{}\nrequests: {:?}",
        String::from_utf8_lossy(&create.stdout),
        String::from_utf8_lossy(&create.stderr),
        server.requests()
    );
    let start = lxc("lxc-start", &["-d"]);
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let wait = lxc("lxc-wait", &["-s", "RUNNING", "-t", "10"]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    let attached = lxc("lxc-attach", &["--clear-env", "--", "/bin/cat", "/etc/hostname"]);
    assert!(attached.status.success(), "{}", String::from_utf8_lossy(&attached.stderr));
    assert_eq!(String::from_utf8_lossy(&attached.stdout).trim(), name, "LXC did not name the container");
    let requests = server.requests();
    assert!(requests.iter().any(|r| r == "GET /meta/1.0/index-system"), "{requests:?}");
    assert!(requests.iter().any(|r| r.ends_with("/meta.tar.xz")), "{requests:?}");
}

/// A static HTTPS server of one folder on 127.0.0.1, on threads of this test: GET and HEAD,
/// `Connection: close`, repeated slashes merged (as web servers do), nothing outside the
/// folder. Every request line is kept. Stopped (and joined) when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(root: PathBuf, tls: &Tls) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        let certs: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(&tls.cert).unwrap().map(|c| c.unwrap()).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&tls.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (root, config, requests) = (root.clone(), config.clone(), requests2.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, config, &requests);
                });
            }
        });
        Server { port, stop, requests, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    config: Arc<rustls::ServerConfig>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut head = Vec::new();
    {
        let mut reader = BufReader::new(&mut tls);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
    }
    let Some(request) = head.first() else { return Ok(()) };
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let merged: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    requests.lock().unwrap().push(format!("{method} /{}", merged.join("/")));
    let file = root.join(merged.join("/"));
    let found = !merged.contains(&"..") && file.is_file();
    if !found || !(method == "GET" || method == "HEAD") {
        let status = if found { "405 Method Not Allowed" } else { "404 Not Found" };
        write!(tls, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    } else {
        let mut body = fs::File::open(&file)?;
        let length = body.metadata()?.len();
        write!(tls, "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")?;
        if method == "GET" {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = body.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n])?;
            }
        }
    }
    tls.conn.send_close_notify();
    tls.flush()
}
