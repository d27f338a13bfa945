//! Output formats, proven with the real consumers: `oci-image-tool`, `skopeo`, `umoci` and
//! `runc`, podman, a registry, LXC and LXD. A consumer that is missing fails the test under CI
//! (`CI` set) and skips it loudly elsewhere, naming the package to install
//! ([`candidate::testing`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use candidate::testing::{self, tool as require};
use fs_err as fs;

use super::{copy_project, run, with_store};

#[track_caller]
pub fn ok(mut cmd: impl std::borrow::BorrowMut<Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `find`'s view of a tree: path, mode, owner, link target, and content digest.
fn describe_tree(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let rel = entry.path().strip_prefix(root).unwrap().display().to_string();
        let detail = if meta.file_type().is_symlink() {
            format!("-> {}", fs::read_link(entry.path()).unwrap().display())
        } else if meta.is_file() {
            super::sha256(&fs::read(entry.path()).unwrap())
        } else {
            String::new()
        };
        lines.push(format!("{rel} {:o} {}:{} {detail}", meta.mode(), meta.uid(), meta.gid()));
    }
    lines
}

fn build_example(root: &Path, out: &str, formats: &[&str]) -> PathBuf {
    let mut args = vec!["build", "recipes/example.toml", "--out", out];
    for f in formats {
        args.extend(["--format", f]);
    }
    run(with_store(root, &root.join("store"), args)).assert_ok();
    root.join(out).join("example_1.0_amd64")
}

#[test]
fn the_oci_layout_validates_and_unpacks_to_the_rootfs() {
    let t = tempfile::tempdir().unwrap();
    copy_project(t.path(), false);
    let dir = build_example(t.path(), "out", &["oci", "rootfs.tar"]);
    let layout = dir.join("oci");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1.0");

    // Built again in a fresh store: the same bytes.
    let again = tempfile::tempdir().unwrap();
    copy_project(again.path(), true);
    let other = build_example(again.path(), "elsewhere", &["oci", "rootfs.tar"]);
    assert_eq!(super::snapshot(&layout), super::snapshot(&other.join("oci")), "the OCI layout is not reproducible");

    if require("oci-image-tool", "oci-image-tool") {
        let layout_ref = layout.to_str().unwrap();
        ok(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=1.0", layout_ref]));
    }
    if require("skopeo", "skopeo") {
        let inspect = ok(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:1.0", layout.display())));
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(inspect["Digest"], manifest_digest.as_str());
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    }
    if require("umoci", "umoci") {
        let bundle = t.path().join("bundle");
        ok(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:1.0", layout.display())).arg(&bundle));
        let reference = t.path().join("reference");
        fs::create_dir_all(&reference).unwrap();
        ok(Command::new("tar").args(["--numeric-owner", "-xf"]).arg(dir.join("rootfs.tar")).arg("-C").arg(&reference));
        assert_eq!(
            describe_tree(&bundle.join("rootfs")),
            describe_tree(&reference),
            "OCI layers applied in order are not the rootfs"
        );
    }
}

/// The example with `[oci] layer-compression = "zstd"` added, locked and built (OCI layout
/// only: the other formats do not depend on the setting) under `root`.
pub fn build_example_with_zstd_layers(root: &Path) -> PathBuf {
    copy_project(root, false);
    let recipe = root.join("recipes/example.toml");
    let mut text = fs::read_to_string(&recipe).unwrap();
    // The line is appended, so `[oci]` must be the recipe's last table.
    assert_eq!(text.rfind("\n["), text.find("\n[oci]\n"), "`[oci]` is no longer the example's last table");
    text.push_str("layer-compression = \"zstd\"\n");
    fs::write(&recipe, text).unwrap();
    run(with_store(root, &root.join("store"), ["lock", "recipes/example.toml"])).assert_ok();
    build_example(root, "out", &["oci"])
}

/// Decodes every layer of the OCI layout at `layout` with the codec its media type names
/// (not by sniffing its bytes) and checks that the result hashes to the config's diff_id for
/// it. Returns the layers' media types.
pub fn check_oci_layers_decode_as_labelled(layout: &Path) -> Vec<String> {
    use std::io::Read;
    let json = |path: PathBuf| -> serde_json::Value { serde_json::from_slice(&fs::read(path).unwrap()).unwrap() };
    let blob = |digest: &serde_json::Value| layout.join("blobs/sha256").join(&digest.as_str().unwrap()[7..]);
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    let config = json(blob(&manifest["config"]["digest"]));
    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");
    let mut types = Vec::new();
    for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let media_type = layer["mediaType"].as_str().unwrap().to_owned();
        let file = fs::File::open(blob(&layer["digest"])).unwrap();
        let mut decoded: Box<dyn Read> = match media_type.as_str() {
            "application/vnd.oci.image.layer.v1.tar+zstd" => Box::new(zstd::stream::read::Decoder::new(file).unwrap()),
            "application/vnd.oci.image.layer.v1.tar+gzip" => Box::new(flate2::read::GzDecoder::new(file)),
            other => panic!("layer {i}: unexpected media type `{other}`"),
        };
        let mut hashing = candidate::digest::HashingWriter::new(std::io::sink());
        if let Err(e) = std::io::copy(&mut decoded, &mut hashing) {
            panic!("layer {i} ({}) is labelled `{media_type}` but does not decode as such: {e}", layer["digest"]);
        }
        assert_eq!(hashing.finish().0.to_string(), diff_id.as_str().unwrap(), "layer {i}: decoded, not its diff_id");
        types.push(media_type);
    }
    types
}

/// The bug this guards against: layers labelled zstd that were gzip inside. Runtimes that
/// sniff the compression (podman) ran them anyway; one that trusts the label does not.
#[test]
fn zstd_labelled_oci_layers_are_zstd_and_hash_to_their_diff_ids() {
    let t = tempfile::tempdir().unwrap();
    let dir = build_example_with_zstd_layers(t.path());
    let types = check_oci_layers_decode_as_labelled(&dir.join("oci"));
    assert!(!types.is_empty());
    assert!(types.iter().all(|t| t.ends_with("+zstd")), "{types:?}");
}

/// A tiny bootable-enough image: a static busybox, a merged-/usr skeleton, and `/etc/hostname`
/// and `/etc/hosts` naming the host `box`, as an ordinary image does (the `lxc` format must
/// put LXC's `LXC_NAME` in itself). `None` (a skip, under CI a failure) without busybox.
pub fn busybox_project(dir: &Path, oci_extra: &str) -> Option<PathBuf> {
    if !testing::file("/bin/busybox", "busybox-static") {
        return None;
    }
    fs::create_dir_all(dir.join("recipes")).unwrap();
    fs::create_dir_all(dir.join("files/etc")).unwrap();
    fs::write(dir.join("files/etc/hostname"), "box\n").unwrap();
    fs::write(dir.join("files/etc/hosts"), "127.0.0.1 localhost\n127.0.1.1 box\n").unwrap();
    let applets: Vec<String> = ["sh", "cat", "sleep", "echo", "hostname"]
        .iter()
        .map(|a| format!("{{ path = \"/usr/bin/{a}\", target = \"busybox\" }}"))
        .collect();
    let recipe = format!(
        "[image]\nname = \"box\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
         description = \"busybox test image\"\nsource-date-epoch = 1700000000\n\
         [[layer]]\nname = \"base\"\n\
         directories = [{{ path = \"/usr/bin\" }}, {{ path = \"/usr/sbin\" }}, {{ path = \"/tmp\", mode = \"1777\" }}, \
         {{ path = \"/proc\" }}, {{ path = \"/sys\" }}, {{ path = \"/dev\" }}, {{ path = \"/run\" }}, {{ path = \"/root\", mode = \"0700\" }}]\n\
         symlinks = [{{ path = \"/bin\", target = \"usr/bin\" }}, {{ path = \"/sbin\", target = \"usr/sbin\" }}]\n\
         files = [{{ from = \"../files/etc\", to = \"/etc\" }}]\n\
         [[layer]]\nname = \"busybox\"\nfiles = [{{ from = \"{}\", to = \"/bin/busybox\", mode = \"0755\" }}]\n\
         symlinks = [{}]\n\
         [oci]\ncmd = [\"/bin/sh\", \"-c\", \"echo hello from candidate\"]\n{}\n\
         [output]\nformats = [\"oci\", \"lxc\", \"incus\", \"proxmox\"]\n",
        "/bin/busybox",
        applets.join(", "),
        oci_extra
    );
    let path = dir.join("recipes/box.toml");
    fs::write(&path, recipe).unwrap();
    run(with_store(dir, &dir.join("store"), ["lock", "recipes/box.toml"])).assert_ok();
    run(with_store(dir, &dir.join("store"), ["build", "recipes/box.toml", "--out", "out"])).assert_ok();
    Some(dir.join("out/box_1_amd64"))
}

#[test]
fn runc_runs_a_command_in_our_oci_image() {
    if !(require("umoci", "umoci") && require("runc", "runc")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(candidate) = busybox_project(t.path(), "") else { return };
    let bundle = t.path().join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", candidate.join("oci").display()))
        .arg(&bundle));
    // The command comes from our image config; only the terminal is switched off for a test.
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][0], "/bin/sh");
    config["process"]["terminal"] = serde_json::json!(false);
    fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let id = format!("candidate-test-{}", std::process::id());
    let out = Command::new("runc").args(["run", "--bundle"]).arg(&bundle).arg(&id).output().unwrap();
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert!(out.status.success(), "runc failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from candidate");
}

/// A process the test started, stopped by its PID when dropped.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released for the daemon to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `http://127.0.0.1:port/path` until it answers 200, for up to 10 s.
pub fn wait_http(port: u16, path: &str) {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port}{path}");
}

#[test]
fn a_registry_round_trip_keeps_the_manifest_digest() {
    if !(require("docker-registry", "docker-registry") && require("skopeo", "skopeo")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    copy_project(t.path(), false);
    let dir = build_example(t.path(), "out", &["oci"]);
    let port = free_port();
    let config = t.path().join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            t.path().join("registry").display()
        ),
    )
    .unwrap();
    let _registry = Daemon(Command::new("docker-registry").arg("serve").arg(&config).spawn().unwrap());
    wait_http(port, "/v2/");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("oci/index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let remote = format!("docker://127.0.0.1:{port}/candidate/example:1.0");
    ok(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.0", dir.join("oci").display()))
        .arg(&remote));
    let inspect = ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &remote]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str(), "the registry holds another manifest");
    let pulled = t.path().join("pulled");
    ok(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &remote])
        .arg(format!("oci:{}:1.0", pulled.display())));
    let back: serde_json::Value = serde_json::from_slice(&fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(back["manifests"][0]["digest"], digest.as_str(), "the manifest digest changed on the way back");
}

#[test]
fn podman_runs_our_image_without_network() {
    if !(require("podman", "podman") && require("runc", "runc")) {
        return;
    }
    // podman names an `oci:` image after its path, and names must be lowercase: tempfile's
    // random names are not, so this test makes (and removes) its own folder.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("candidate-podman-{}", std::process::id())));
    let t = scratch.0.as_path();
    fs::create_dir_all(t).unwrap();
    // Layers compressed with zstd, which podman reads (umoci and oci-image-tool here do not).
    let Some(candidate) = busybox_project(t, "layer-compression = \"zstd\"") else { return };
    // podman sniffs a layer's compression rather than trusting its label, so running is no
    // proof that the label is right: the layers are decoded as labelled first.
    let types = check_oci_layers_decode_as_labelled(&candidate.join("oci"));
    assert!(types.iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar+zstd"), "{types:?}");
    let podman = podman_in(t);
    let layout = format!("oci:{}:1", candidate.join("oci").display());
    let id = ok(&mut podman(&["pull", "-q", &layout])).trim().to_owned();
    let out = ok(&mut podman(&["run", "--rm", "--network", "none", &id]));
    assert_eq!(out.trim(), "hello from candidate");
    let _ = podman(&["rmi", "-af"]).output();
}

/// `podman ARGS…` with its own root, runroot and configuration under `dir`: runc, cgroupfs,
/// the vfs driver and file events, as podman runs on these machines (RUNTIMES.md).
pub fn podman_in(dir: &Path) -> impl Fn(&[&str]) -> Command + '_ {
    let conf = dir.join("containers.conf");
    fs::write(
        &conf,
        "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         [containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n",
    )
    .unwrap();
    move |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.join("podman-root"))
            .arg("--runroot")
            .arg(dir.join("podman-runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }
}

/// Runs `f` with `root:100000:65536` in /etc/subuid and /etc/subgid, putting them back after.
fn with_subids<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(Vec<(PathBuf, Vec<u8>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            for (path, bytes) in &self.0 {
                let _ = fs::write(path, bytes);
            }
        }
    }
    let mut saved = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let path = PathBuf::from(file);
        let before = fs::read(&path).unwrap_or_default();
        let mut after = before.clone();
        after.extend_from_slice(b"root:100000:65536\n");
        fs::write(&path, after).unwrap();
        saved.push((path, before));
    }
    let _restore = Restore(saved);
    f()
}

/// `lxc-create`'s arguments (after `-n NAME`) for a container from a candidate folder's `lxc`
/// format, with the extra configuration `conf`.
pub fn lxc_create_local(conf: &Path, candidate: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("UTF-8 test paths").to_owned();
    let mut args: Vec<String> = ["-t", "local", "-f"].map(String::from).to_vec();
    args.push(path(conf));
    args.extend(["--".to_owned(), "-m".to_owned(), path(&candidate.join("meta.tar.xz")), "-f".to_owned()]);
    args.push(path(&candidate.join(candidate::lxc::ROOTFS)));
    args
}

/// Whether LXC and its distribution configs (which our `meta.tar.xz` includes) are installed;
/// a loud skip without them, under CI a failure.
pub fn lxc_available() -> bool {
    require("lxc-create", "lxc") && testing::file("/usr/share/lxc/config/debian.common.conf", "lxc-templates")
}

/// A container `lxc-create` may have made, destroyed (`lxc-destroy -f`, by its name) when
/// dropped: after the test's checks, and when one of them panics.
struct Container<'a> {
    lxcpath: &'a Path,
    name: String,
}

impl Container<'_> {
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("-P").arg(self.lxcpath).args(["-n", &self.name]).args(args);
        cmd
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if self.lxcpath.join(&self.name).exists() {
            let _ = self.command("lxc-destroy", &["-f"]).output();
        }
    }
}

/// The EXAMPLE candidate's `lxc` format (whose image names its host `candidate`), created
/// twice under two names: LXC's templating gives each container its own name in its
/// `/etc/hostname` and on the `127.0.1.1` line of its `/etc/hosts`.
#[test]
fn lxc_names_each_container_of_the_example_after_itself() {
    if !lxc_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    copy_project(t.path(), false);
    let dir = build_example(t.path(), "out", &["lxc"]);
    let lxcpath = t.path().join("lxc");
    fs::create_dir_all(&lxcpath).unwrap();
    let conf = t.path().join("extra.conf");
    fs::write(&conf, "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n").unwrap();
    let create = lxc_create_local(&conf, &dir);
    let containers: Vec<Container<'_>> = ["one", "two"]
        .iter()
        .map(|n| Container { lxcpath: &lxcpath, name: format!("cand-{n}-{}", std::process::id()) })
        .collect();
    for container in &containers {
        ok(container.command("lxc-create", &create.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    for container in &containers {
        let rootfs = lxcpath.join(&container.name).join("rootfs");
        let hostname = fs::read_to_string(rootfs.join("etc/hostname")).unwrap();
        assert_eq!(hostname, format!("{}\n", container.name), "/etc/hostname of `{}`", container.name);
        let hosts = fs::read_to_string(rootfs.join("etc/hosts")).unwrap();
        let mapped: Vec<Vec<&str>> = hosts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| fields.first() == Some(&"127.0.1.1"))
            .collect();
        assert_eq!(mapped, [["127.0.1.1", container.name.as_str()]], "/etc/hosts of `{}`:\n{hosts}", container.name);
    }
}

#[test]
fn lxc_creates_and_starts_our_template_privileged_and_unprivileged() {
    if !lxc_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(candidate) = busybox_project(t.path(), "") else { return };
    let extra = "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep 600\n";
    let lxcpath = t.path().join("lxc");
    fs::create_dir_all(&lxcpath).unwrap();
    for (mode, idmap) in
        [("privileged", ""), ("unprivileged", "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n")]
    {
        let name = format!("cand-{mode}-{}", std::process::id());
        let conf = t.path().join(format!("{mode}.conf"));
        fs::write(&conf, format!("{extra}{idmap}")).unwrap();
        let check = || {
            let container = Container { lxcpath: &lxcpath, name: name.clone() };
            let create = lxc_create_local(&conf, &candidate);
            ok(container.command("lxc-create", &create.iter().map(String::as_str).collect::<Vec<_>>()));
            ok(container.command("lxc-start", &["-d"]));
            ok(container.command("lxc-wait", &["-s", "RUNNING", "-t", "10"]));
            container.command("lxc-attach", &["--clear-env", "--", "/bin/cat", "/etc/hostname"]).output().unwrap()
        };
        let attached = if idmap.is_empty() { check() } else { with_subids(check) };
        assert!(attached.status.success(), "{mode}: lxc-attach: {}", String::from_utf8_lossy(&attached.stderr));
        let hostname = String::from_utf8_lossy(&attached.stdout);
        assert_eq!(hostname.trim(), name, "{mode}: LXC did not template /etc/hostname");
    }
}

#[test]
fn lxd_imports_launches_and_templates_the_hostname_with_an_xz_or_a_zstd_rootfs() {
    if !require("lxd", "lxd") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(candidate) = busybox_project(&t.path().join("xz"), "") else { return };
    // The same image with `[lxc] incus-rootfs = "zstd"`: its `incus` rootfs is the zstd one,
    // and nothing is xz-compressed but the metadata.
    let zstd = busybox_project(&t.path().join("zstd"), "[lxc]\nincus-rootfs = \"zstd\"\n").unwrap();
    assert!(zstd.join("rootfs.tar.zst").is_file() && !zstd.join("rootfs.tar.xz").exists());
    let lxd_dir = t.path().join("lxd");
    fs::create_dir_all(&lxd_dir).unwrap();
    let client = |args: &[&str]| {
        let mut cmd = Command::new("lxc");
        cmd.env("LXD_DIR", &lxd_dir).args(args);
        cmd
    };
    let daemon = Daemon(Command::new("lxd").args(["--group", "root"]).env("LXD_DIR", &lxd_dir).spawn().unwrap());
    ok(Command::new("lxd").args(["waitready", "--timeout", "60"]).env("LXD_DIR", &lxd_dir));
    let mut init = Command::new("lxd")
        .args(["init", "--preseed"])
        .env("LXD_DIR", &lxd_dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        init.stdin.as_mut().unwrap(),
        b"config: {}\nnetworks: []\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n",
    )
    .unwrap();
    assert!(init.wait().unwrap().success(), "lxd init --preseed failed");
    let result = std::panic::catch_unwind(|| {
        let mut hostnames = Vec::new();
        for (dir, rootfs, name) in [(&candidate, "rootfs.tar.xz", "c1"), (&zstd, "rootfs.tar.zst", "c2")] {
            let meta = dir.join("incus.meta.tar.xz");
            let rootfs = dir.join(rootfs);
            ok(&mut client(&["image", "import", meta.to_str().unwrap(), rootfs.to_str().unwrap(), "--alias", name]));
            ok(&mut client(&["launch", name, name, "-c", "raw.lxc=lxc.init.cmd = /bin/sleep 600"]));
            let hostname = ok(&mut client(&["exec", name, "--", "/bin/cat", "/etc/hostname"]));
            let _ = client(&["delete", "--force", name]).output();
            let _ = client(&["image", "delete", name]).output();
            hostnames.push((name, hostname));
        }
        hostnames
    });
    let _ = Command::new("lxd").args(["shutdown", "--timeout", "60"]).env("LXD_DIR", &lxd_dir).output();
    drop(daemon);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(lxd_dir.to_str().unwrap()), "LXD left mounts under {}", lxd_dir.display());
    for (name, hostname) in result.unwrap_or_else(|e| std::panic::resume_unwind(e)) {
        assert_eq!(hostname.trim(), name, "LXD did not template /etc/hostname");
    }
}

#[test]
fn the_proxmox_template_is_the_zstd_rootfs_under_its_own_name() {
    let t = tempfile::tempdir().unwrap();
    copy_project(t.path(), false);
    let dir = build_example(t.path(), "out", &["proxmox", "rootfs.tar.zst"]);
    let proxmox = fs::read(dir.join("debian-bookworm-example_1.0_amd64.tar.zst")).unwrap();
    assert!(proxmox == fs::read(dir.join("rootfs.tar.zst")).unwrap());
}

/// `--format` takes exactly the recipe's spellings, and a refusal (and `--help`) lists all
/// of them, not the four rootfs tars alone.
#[test]
fn an_unknown_format_is_refused_naming_every_format() {
    const ALL: [&str; 8] =
        ["rootfs.tar", "rootfs.tar.gz", "rootfs.tar.xz", "rootfs.tar.zst", "oci", "proxmox", "lxc", "incus"];
    let dir = tempfile::tempdir().unwrap();
    let refused = run(with_store(
        dir.path(),
        &dir.path().join("store"),
        ["build", "recipes/example.toml", "--format", "rootfs.tar.bz2"],
    ));
    refused.assert_code(2).assert_stderr_has("'rootfs.tar.bz2'");
    let listed = refused
        .stderr
        .split_once("[possible values: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list.split(", ").collect::<Vec<_>>())
        .unwrap_or_else(|| panic!("no list of formats\n{}", refused.describe()));
    assert_eq!(listed, ALL, "{}", refused.describe());
    let help = run(with_store(dir.path(), &dir.path().join("store"), ["build", "--help"]));
    help.assert_ok();
    for format in ALL {
        assert!(help.stdout.contains(&format!("- {format}:")), "`--help` does not list {format}\n{}", help.stdout);
    }
    // Case matters, as in the recipe.
    run(with_store(dir.path(), &dir.path().join("store"), ["build", "x.toml", "--format", "OCI"])).assert_code(2);
}
