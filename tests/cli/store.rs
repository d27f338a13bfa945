//! The store under stress, end to end through the `candidate` binary: builds sharing one
//! store at the same time, builds killed with SIGKILL part-way, remote inputs served over
//! HTTP (fetched, checked, and refused when cut short or different), and where `--store`
//! may appear on the command line.
//!
//! Every test works in its own temporary folder, with a private `HOME` and
//! `XDG_CACHE_HOME` and no proxy variables, so that nothing touches the user's store.

use fs_err as fs;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{candidate, command_line, copy_project, fixture, run, sha256, snapshot, walk, with_store, Run};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A started run, with its output piped.
struct Running {
    what: String,
    child: Child,
}

fn spawn(mut cmd: Command) -> Running {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the candidate binary");
    Running { what: command_line(&cmd), child }
}

impl Running {
    fn wait(self) -> Run {
        let output = self.child.wait_with_output().expect("failed to wait for the candidate binary");
        Run::new(self.what, output)
    }
}

/// The candidate id a successful build printed.
#[track_caller]
pub(crate) fn id_of(run: &Run) -> String {
    run.assert_ok();
    let id = run.stdout.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == "sha256:".len() + 64,
        "no candidate id on stdout\n{}",
        run.describe()
    );
    id.to_owned()
}

/// Asserts that `dir` is a complete candidate folder for `id`: `manifest.json`, whose sha256
/// is `id`, and exactly the outputs it lists, each with its recorded size and sha256.
#[track_caller]
fn assert_complete(dir: &Path, id: &str, formats: &[&str]) {
    let manifest_bytes = fs::read(dir.join("manifest.json")).unwrap_or_else(|e| panic!("incomplete candidate: {e}"));
    assert_eq!(sha256(&manifest_bytes), id, "{}: manifest.json is not the one the build printed", dir.display());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let outputs = manifest["outputs"].as_array().expect("manifest lists its outputs");
    let listed: Vec<&str> = outputs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    for wanted in formats {
        assert!(listed.contains(wanted), "{}: the manifest does not list {wanted}", dir.display());
    }
    for output in outputs {
        let name = output["name"].as_str().unwrap();
        let bytes = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("incomplete candidate: {e}"));
        assert_eq!(output["size"].as_u64(), Some(bytes.len() as u64), "{}/{name}: size", dir.display());
        assert_eq!(output["sha256"].as_str(), Some(sha256(&bytes).as_str()), "{}/{name}: sha256", dir.display());
    }
    // Exactly the listed outputs, the manifest and the SBOMs: nothing missing, nothing stray.
    let mut present: Vec<String> = walk(dir)
        .into_iter()
        .filter(|p| !p.is_dir())
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = listed
        .iter()
        .map(|n| n.to_string())
        .chain(["manifest.json".into(), "sbom.spdx.json".into(), "sbom.cdx.json".into()])
        .collect();
    expected.sort();
    assert_eq!(present, expected, "{}: unexpected files in the candidate folder", dir.display());
}

/// Asserts that two output folders hold the same files with the same bytes.
#[track_caller]
fn assert_same_tree(a: &Path, b: &Path) {
    let (a_files, b_files) = (snapshot(a), snapshot(b));
    assert_eq!(a_files.keys().collect::<Vec<_>>(), b_files.keys().collect::<Vec<_>>(), "{a:?} and {b:?} differ");
    for (path, bytes) in &a_files {
        assert!(bytes == &b_files[path], "{} differs between {a:?} and {b:?}", path.display());
    }
}

/// Asserts what the store promises whatever happened to the builds that used it: every blob
/// is named by its content's sha256, and every action-cache entry is whole JSON.
#[track_caller]
fn assert_store_trustworthy(store: &Path, context: &str) {
    let blobs = store.join("v1/blobs/sha256");
    for path in walk(&blobs) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(path.is_file(), "{context}: {} in the blob folder is not a file", path.display());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{name}"),
            "{context}: blob {} is not its own digest",
            path.display()
        );
    }
    for path in walk(&store.join("v1/actions")) {
        let bytes = fs::read(&path).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{context}: action-cache entry {} is not valid JSON: {:?}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// What is in the store's `v1/tmp/` (orphans of killed or failed writes).
pub(crate) fn store_temps(store: &Path) -> Vec<PathBuf> {
    walk(&store.join("v1/tmp"))
}

/// The hex digests of the blobs in the store.
pub(crate) fn store_blobs(store: &Path) -> Vec<String> {
    walk(&store.join("v1/blobs/sha256")).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// The `[image]` table of the recipes written here, named `name`.
fn image_table(name: &str) -> String {
    format!(
        r#"[image]
name = "{name}"
version = "1.0"
architecture = "amd64"
os = "debian"
release = "bookworm"
description = "store test"
source-date-epoch = 1700000000
"#
    )
}

/// Writes `dir/recipes/STEM.toml`.
fn write_recipe(dir: &Path, stem: &str, body: &str) -> PathBuf {
    let path = dir.join("recipes").join(format!("{stem}.toml"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, body).unwrap();
    path
}

/// A one-layer recipe unpacking the tarball at `url` under `/opt/app`, writing `rootfs.tar`.
fn tarball_recipe(name: &str, url: &str, sha256_hex: &str) -> String {
    format!(
        r#"{}
[[layer]]
name = "app"
tarballs = [{{ url = '{url}', sha256 = "{sha256_hex}", strip-components = 1, to = "/opt/app" }}]

[output]
formats = ["rootfs.tar"]
"#,
        image_table(name)
    )
}

// ---------------------------------------------------------------------------------------------
// Two builds, one store
// ---------------------------------------------------------------------------------------------

const EXAMPLE_DIR: &str = "example_1.0_amd64";
const EXAMPLE_FORMATS: &[&str] = &["rootfs.tar.gz", "rootfs.tar.xz", "rootfs.tar.zst"];

#[test]
fn two_builds_share_one_store() {
    let t = tempfile::Builder::new().prefix("candidate-store-").tempdir().unwrap();
    let root = t.path();
    copy_project(root, false);
    let store = root.join("store");
    let build = |out: &Path| {
        with_store(
            root,
            &store,
            [OsStr::new("build"), "recipes/example.toml".as_ref(), "--out".as_ref(), out.as_os_str()],
        )
    };
    run(with_store(root, &store, ["lock", "recipes/example.toml"])).assert_ok();

    // Two cold builds at once, into different folders.
    let (out1, out2) = (root.join("out1"), root.join("out2"));
    let (a, b) = (spawn(build(&out1)), spawn(build(&out2)));
    let (a, b) = (a.wait(), b.wait());
    let id = id_of(&a);
    assert_eq!(id_of(&b), id, "two builds sharing a store printed different ids\n{}\n{}", a.describe(), b.describe());
    assert_complete(&out1.join(EXAMPLE_DIR), &id, EXAMPLE_FORMATS);
    assert_same_tree(&out1, &out2);
    assert_store_trustworthy(&store, "after two concurrent builds");
    assert!(store_temps(&store).is_empty(), "orphans in the store's tmp/: {:?}", store_temps(&store));

    // A third build into a folder that already holds the candidate.
    let third = run(build(&out1));
    assert_eq!(id_of(&third), id);
    assert_complete(&out1.join(EXAMPLE_DIR), &id, EXAMPLE_FORMATS);

    // Two builds at once into the same folder, alternately where there is no candidate yet
    // and over a stale one (an extra file makes it not current, so both builds republish it).
    // The store is warm by now, so both reach the publishing step at about the same time;
    // a few rounds give the race a chance to happen.
    let same = root.join("same");
    for round in 0..6 {
        let over_stale = round % 2 == 1;
        if over_stale {
            fs::write(same.join(EXAMPLE_DIR).join("stray"), "not part of the candidate").unwrap();
        } else if same.exists() {
            fs::remove_dir_all(&same).unwrap();
        }
        let (a, b) = (spawn(build(&same)), spawn(build(&same)));
        let (a, b) = (a.wait(), b.wait());
        assert_eq!(id_of(&a), id, "round {round}: first concurrent build");
        assert_eq!(id_of(&b), id, "round {round}: second concurrent build");
        assert_complete(&same.join(EXAMPLE_DIR), &id, EXAMPLE_FORMATS);
        // Nothing else is left beside it: no staging folder, no previous candidate moved aside.
        let leftovers: Vec<_> = walk(&same).into_iter().filter(|p| !p.starts_with(same.join(EXAMPLE_DIR))).collect();
        assert!(leftovers.is_empty(), "round {round}: two builds into one folder left {leftovers:?}");
    }
    assert_same_tree(&out1, &same);
}

// ---------------------------------------------------------------------------------------------
// Killed builds
// ---------------------------------------------------------------------------------------------

/// Writes `count` files of `size` bytes under `dir`, from a fixed-seed generator
/// (splitmix64): incompressible enough that xz takes a few seconds over them.
fn write_noise(dir: &Path, count: usize, size: usize) {
    fs::create_dir_all(dir).unwrap();
    let mut state: u64 = 0x05ee_d0fc_a4d1_da7e;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in 0..count {
        let bytes: Vec<u8> = (0..size.div_ceil(8)).flat_map(|_| next().to_le_bytes()).take(size).collect();
        fs::write(dir.join(format!("noise-{i:02}.bin")), bytes).unwrap();
    }
}

#[test]
fn a_killed_build_leaves_nothing_trusted() {
    let t = tempfile::Builder::new().prefix("candidate-killed-").tempdir().unwrap();
    let root = t.path();
    write_noise(&root.join("input/noise"), 24, 256 << 10);
    let formats = ["rootfs.tar.zst", "rootfs.tar.xz"];
    let recipe = write_recipe(
        root,
        "noise",
        &format!(
            r#"{}
[[layer]]
name = "noise"
files = [{{ from = "../input/noise", to = "/srv/noise" }}]

[output]
formats = ["rootfs.tar.zst", "rootfs.tar.xz"]
"#,
            image_table("noise")
        ),
    );
    let candidate_dir = "noise_1.0_amd64";
    let store = root.join("store");
    run(with_store(root, &store, [OsStr::new("lock"), recipe.as_os_str()])).assert_ok();
    let build = |store: &Path, out: &Path| {
        with_store(root, store, [OsStr::new("build"), recipe.as_os_str(), "--out".as_ref(), out.as_os_str()])
    };

    // On a 2-core machine the first few milliseconds go to starting and checking the lock,
    // the next ten or so to writing the layer, and the rest to compressing; the delays are
    // spread so that kills land in each phase whatever the machine's speed.
    for delay_ms in [5, 15, 50, 150, 400] {
        let out = root.join(format!("out-killed-{delay_ms}ms"));
        let mut running = spawn(build(&store, &out));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished_early = running.child.try_wait().unwrap();
        assert!(
            finished_early.is_none(),
            "the build ended within {delay_ms} ms ({finished_early:?}): the input is too small to test a kill\n{}",
            running.wait().describe()
        );
        running.child.kill().unwrap(); // SIGKILL
        let killed = running.wait();
        assert_eq!(killed.code, None, "the build was not killed\n{}", killed.describe());

        let context = format!("after a build killed at {delay_ms} ms");
        assert_store_trustworthy(&store, &context);
        // Staging folders (`.NAME_VERSION_ARCH.new-*`, `.….old-*`) may remain after a
        // SIGKILL: their names start with a dot, no build reads them, and a later build
        // publishes beside them, so they are ignored and harmless. What must hold is that no
        // candidate folder exists unless it is complete.
        for entry in walk(&out) {
            let rel = entry.strip_prefix(&out).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            if top.starts_with('.') {
                continue;
            }
            assert_eq!(top, candidate_dir, "{context}: unexpected {} in the output folder", entry.display());
            assert!(
                out.join(candidate_dir).join("manifest.json").is_file(),
                "{context}: {} exists without manifest.json",
                out.join(candidate_dir).display()
            );
        }
        if out.join(candidate_dir).exists() {
            let manifest = fs::read(out.join(candidate_dir).join("manifest.json")).unwrap();
            assert_complete(&out.join(candidate_dir), &sha256(&manifest), &formats);
        }
    }

    // The store the killed builds used still builds, to the same bytes as a fresh store.
    let out = root.join("out-after");
    let after = run(build(&store, &out));
    let id = id_of(&after);
    assert_complete(&out.join(candidate_dir), &id, &formats);
    assert_store_trustworthy(&store, "after the final build");

    let fresh_out = root.join("out-fresh");
    let fresh = run(build(&root.join("fresh-store"), &fresh_out));
    assert_eq!(id_of(&fresh), id, "a store that saw killed builds gives another candidate than a fresh one");
    assert_same_tree(&out, &fresh_out);
}

// ---------------------------------------------------------------------------------------------
// HTTP inputs
// ---------------------------------------------------------------------------------------------

/// What the test server answers for a path.
#[derive(Clone)]
pub(crate) enum Route {
    /// 200 with these bytes and their Content-Length.
    Full(Vec<u8>),
    /// 200 with the Content-Length of these bytes, but only the first half of them, then the
    /// connection is closed.
    Truncated(Vec<u8>),
}

/// A tiny HTTP/1.1 server on 127.0.0.1, one connection at a time, `Connection: close`; a
/// path without a route is a 404. Dropping it stops its thread.
pub(crate) struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<BTreeMap<String, Route>>>,
    /// Every request path, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(Mutex::new(BTreeMap::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // A client that hangs up early is its own problem; serve the next one.
                    if let Ok(stream) = stream {
                        let _ = serve(stream, &routes, &requests);
                    }
                }
            })
        };
        Server { addr, routes, requests, stop, thread: Some(thread) }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_owned(), route);
    }

    /// Serves every file below `dir` at `prefix` + its path below `dir` (bytes read now).
    pub(crate) fn route_dir(&self, prefix: &str, dir: &Path) {
        for entry in walkdir::WalkDir::new(dir) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(dir).unwrap().to_str().unwrap();
                self.route(&format!("{prefix}/{rel}"), Route::Full(fs::read(entry.path()).unwrap()));
            }
        }
    }

    /// From now on, `path` is not found (404).
    pub(crate) fn unroute(&self, path: &str) {
        self.routes.lock().unwrap().remove(path);
    }

    /// How many requests asked for `path`.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|p| *p == path).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks `accept`, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &Mutex<BTreeMap<String, Route>>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_owned());
    if path.is_empty() {
        return Ok(()); // the connection that unblocks `accept` on shutdown
    }
    requests.lock().unwrap().push(path.clone());
    let route = if method == "GET" { routes.lock().unwrap().get(&path).cloned() } else { None };
    let (body, sent) = match &route {
        Some(Route::Full(body)) => (body.as_slice(), body.len()),
        Some(Route::Truncated(body)) => (body.as_slice(), body.len() / 2),
        None => (&b"not found\n"[..], 10),
    };
    let status = if route.is_some() { "200 OK" } else { "404 Not Found" };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body[..sent])?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)?;
    Ok(())
}

/// The sha256 of `bytes` as a recipe pins it: bare hex.
fn hex_of(bytes: &[u8]) -> String {
    sha256(bytes).trim_start_matches("sha256:").to_owned()
}

#[test]
fn http_inputs_are_fetched_checked_and_truncation_refused() {
    let t = tempfile::Builder::new().prefix("candidate-http-").tempdir().unwrap();
    let root = t.path();
    let app = fs::read(fixture("example/app.tar.gz")).unwrap();
    let app_hex = hex_of(&app);
    // Different bytes of the same length: a size check alone cannot tell them apart.
    let mut tampered = app.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let tampered_hex = hex_of(&tampered);

    let server = Server::start();
    server.route("/good.tar.gz", Route::Full(app.clone()));
    server.route("/short.tar.gz", Route::Truncated(app.clone()));
    server.route("/tampered.tar.gz", Route::Full(tampered.clone()));
    server.route("/changing.tar.gz", Route::Full(app.clone()));

    // --- A good remote tarball: locked with its size, built, and refused offline when the
    // store lacks it.
    let good_url = server.url("/good.tar.gz");
    let good = write_recipe(root, "good", &tarball_recipe("remote", &good_url, &app_hex));
    let store = root.join("store");
    run(with_store(root, &store, [OsStr::new("lock"), good.as_os_str()])).assert_ok();
    assert_eq!(server.hits("/good.tar.gz"), 1, "lock did not download the tarball once");
    let lockfile: toml::Table = toml::from_str(&fs::read_to_string(root.join("lockfiles/good.lock")).unwrap()).unwrap();
    let input = &lockfile["input"].as_array().unwrap()[0];
    assert_eq!(input["origin"].as_str(), Some(good_url.as_str()), "{lockfile:#?}");
    assert_eq!(input["size"].as_integer(), Some(app.len() as i64), "the lockfile does not record the size");
    assert_eq!(input["sha256"].as_str(), Some(sha256(&app).as_str()));
    assert!(store_blobs(&store).contains(&app_hex), "lock did not keep the download in the store");

    let build = |store: &Path, out: &Path, recipe: &Path, offline: bool| {
        let mut cmd =
            with_store(root, store, [OsStr::new("build"), recipe.as_os_str(), "--out".as_ref(), out.as_os_str()]);
        if offline {
            cmd.arg("--offline");
        }
        run(cmd)
    };
    let id = id_of(&build(&store, &root.join("out"), &good, false));
    assert_eq!(server.hits("/good.tar.gz"), 1, "build downloaded what the store held");
    let rootfs_of = |out: &Path| -> serde_json::Value {
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("remote_1.0_amd64/manifest.json")).unwrap()).unwrap();
        manifest["rootfs"]["diff_id"].clone()
    };
    let remote_rootfs = rootfs_of(&root.join("out"));

    // A fresh store fetches it again, checked against the lock, to the same candidate.
    let fresh = build(&root.join("store-fresh"), &root.join("out-fresh"), &good, false);
    assert_eq!(id_of(&fresh), id);
    assert_eq!(server.hits("/good.tar.gz"), 2);

    let empty_store = root.join("store-empty");
    let offline = build(&empty_store, &root.join("out-offline"), &good, true);
    offline.assert_code(2).assert_stderr_has("error:").assert_stderr_has(&good_url).assert_stderr_has("--offline");
    assert!(!offline.stdout.contains("sha256:"), "an offline build printed an id\n{}", offline.describe());
    assert!(!root.join("out-offline/remote_1.0_amd64").exists(), "a failed build published a candidate");
    assert_eq!(server.hits("/good.tar.gz"), 2, "--offline used the network");

    // Local paths and file:// URLs are not the network: they build offline from an empty
    // store, to the same root filesystem as the download.
    let local_path = fixture("example/app.tar.gz").display().to_string();
    for (stem, url) in [("local", local_path.clone()), ("file-url", format!("file://{local_path}"))] {
        let recipe = write_recipe(root, stem, &tarball_recipe("remote", &url, &app_hex));
        run(with_store(root, &root.join(format!("store-lock-{stem}")), [OsStr::new("lock"), recipe.as_os_str()]))
            .assert_ok();
        let out = root.join(format!("out-{stem}"));
        let offline = build(&root.join(format!("store-offline-{stem}")), &out, &recipe, true);
        id_of(&offline);
        assert_eq!(rootfs_of(&out), remote_rootfs, "{url}: another root filesystem than the download");
    }

    // --- A download cut short: lock refuses it and keeps nothing of it.
    let short_url = server.url("/short.tar.gz");
    let short = write_recipe(root, "short", &tarball_recipe("remote", &short_url, &app_hex));
    let short_store = root.join("store-short");
    let refused = run(with_store(root, &short_store, [OsStr::new("lock"), short.as_os_str()]));
    refused.assert_code(2).assert_stderr_has("error:").assert_stderr_has(&short_url);
    // A cut body is a transient fault: retried (4 attempts in all by default), then refused.
    assert_eq!(server.hits("/short.tar.gz"), 4);
    assert!(store_temps(&short_store).is_empty(), "a cut download left {:?}", store_temps(&short_store));
    assert!(store_blobs(&short_store).is_empty(), "a cut download left blobs {:?}", store_blobs(&short_store));
    assert!(!root.join("lockfiles/short.lock").exists(), "a refused lock wrote a lockfile");

    // --- Different bytes than the recipe's pin: refused at lock, naming both digests.
    let tampered_url = server.url("/tampered.tar.gz");
    let recipe = write_recipe(root, "tampered", &tarball_recipe("remote", &tampered_url, &app_hex));
    let tampered_store = root.join("store-tampered");
    let refused = run(with_store(root, &tampered_store, [OsStr::new("lock"), recipe.as_os_str()]));
    refused
        .assert_code(2)
        .assert_stderr_has("error:")
        .assert_stderr_has(&tampered_url)
        .assert_stderr_has(&app_hex)
        .assert_stderr_has(&tampered_hex);
    assert!(store_temps(&tampered_store).is_empty(), "a refused download left {:?}", store_temps(&tampered_store));
    // `lock` stores the download before comparing it with the recipe's pin, so the tampered
    // bytes may stay in the store under their own digest (harmless: content-addressed); what
    // must never exist is a blob under the pinned name.
    assert!(!store_blobs(&tampered_store).contains(&app_hex), "tampered bytes stored under the pinned digest");
    assert!(!root.join("lockfiles/tampered.lock").exists(), "a refused lock wrote a lockfile");

    // --- A locked URL whose server changes: `build` (with a store that lacks the tarball)
    // refuses a cut download and different bytes against the lockfile's pin.
    let changing_url = server.url("/changing.tar.gz");
    let recipe = write_recipe(root, "changing", &tarball_recipe("remote", &changing_url, &app_hex));
    run(with_store(root, &root.join("store-changing"), [OsStr::new("lock"), recipe.as_os_str()])).assert_ok();
    for (what, route, names) in [
        ("cut short", Route::Truncated(app.clone()), vec![changing_url.clone()]),
        ("different", Route::Full(tampered.clone()), vec![changing_url.clone(), app_hex.clone(), tampered_hex.clone()]),
    ] {
        server.route("/changing.tar.gz", route);
        let build_store = root.join(format!("store-changing-{}", what.replace(' ', "-")));
        let out = root.join("out-changing");
        let refused = build(&build_store, &out, &recipe, false);
        refused.assert_code(2).assert_stderr_has("error:");
        for name in &names {
            refused.assert_stderr_has(name);
        }
        assert!(!out.join("remote_1.0_amd64").exists(), "{what}: a refused build published a candidate");
        assert!(store_temps(&build_store).is_empty(), "{what}: left {:?}", store_temps(&build_store));
        assert!(store_blobs(&build_store).is_empty(), "{what}: left blobs {:?}", store_blobs(&build_store));
    }

    // --- Not found: named.
    let missing_url = server.url("/missing.tar.gz");
    let recipe = write_recipe(root, "missing", &tarball_recipe("remote", &missing_url, &app_hex));
    run(with_store(root, &root.join("store-missing"), [OsStr::new("lock"), recipe.as_os_str()]))
        .assert_code(2)
        .assert_stderr_has(&missing_url)
        .assert_stderr_has("404");

    drop(server);
}

// ---------------------------------------------------------------------------------------------
// The global --store flag
// ---------------------------------------------------------------------------------------------

#[test]
fn global_store_flag_goes_before_or_after_the_subcommand() {
    let t = tempfile::Builder::new().prefix("candidate-flag-").tempdir().unwrap();
    let root = t.path();
    fs::create_dir_all(root.join("input/etc")).unwrap();
    fs::write(root.join("input/etc/hostname"), "candidate\n").unwrap();
    let recipe = write_recipe(
        root,
        "flag",
        &format!(
            r#"{}
[[layer]]
name = "base"
files = [{{ from = "../input/etc", to = "/etc" }}]

[output]
formats = ["rootfs.tar"]
"#,
            image_table("flag")
        ),
    );
    let (before, after) = (root.join("store-before"), root.join("store-after"));

    let mut cmd = candidate(root);
    cmd.arg("--store").arg(&before).arg("lock").arg(&recipe);
    run(cmd).assert_ok();
    assert!(before.join("v1").is_dir(), "`--store S lock` did not use S");

    let mut cmd = candidate(root);
    cmd.arg("lock").arg(&recipe).arg("--store").arg(&after);
    run(cmd).assert_ok();
    assert!(after.join("v1").is_dir(), "`lock --store S` did not use S");

    // The same for build, between its own options.
    let built = root.join("store-build");
    let mut cmd = candidate(root);
    cmd.arg("build").arg(&recipe).arg("--store").arg(&built).arg("--out").arg(root.join("out"));
    id_of(&run(cmd));
    assert!(built.join("v1/blobs/sha256").is_dir(), "`build --store S` did not use S");
    assert!(!store_blobs(&built).is_empty(), "`build --store S` stored nothing in S");

    // None of them fell back to the default store.
    for default in [root.join("xdg-cache"), root.join("home")] {
        assert!(!default.exists(), "{} was created: the default store was used", default.display());
    }
}
