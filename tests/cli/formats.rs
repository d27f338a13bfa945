//! Output formats, proven with the real consumers: `oci-image-tool`, `skopeo`, `umoci` and
//! `runc`. A consumer that is missing fails the test under CI (`CI` set) and skips it
//! elsewhere, naming the package to install.

use std::path::{Path, PathBuf};
use std::process::Command;

use fs_err as fs;

use super::{copy_project, run, with_store};

/// Whether `tool` can run here; under CI its absence is a failure naming `package`.
fn require(tool: &str, package: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{tool}` is missing under CI: install the Debian package `{package}`"
        );
        eprintln!("skipping: `{tool}` is not installed (Debian package `{package}`)");
    }
    found
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
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

#[test]
fn runc_runs_a_command_in_our_oci_image() {
    if !(require("umoci", "umoci") && require("runc", "runc")) {
        return;
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        assert!(std::env::var_os("CI").is_none(), "/bin/busybox is missing under CI: install `busybox-static`");
        eprintln!("skipping: /bin/busybox is not installed (Debian package `busybox-static`)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("recipes")).unwrap();
    fs::write(
        t.path().join("recipes/box.toml"),
        format!(
            "[image]\nname = \"box\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"busybox\"\nrelease = \"1\"\n\
             source-date-epoch = 1700000000\n\
             [[layer]]\nname = \"base\"\ndirectories = [{{ path = \"/usr/bin\" }}, {{ path = \"/tmp\", mode = \"1777\" }}]\n\
             symlinks = [{{ path = \"/bin\", target = \"usr/bin\" }}]\n\
             [[layer]]\nname = \"busybox\"\nfiles = [{{ from = \"{}\", to = \"/bin/busybox\", mode = \"0755\" }}]\n\
             symlinks = [{{ path = \"/usr/bin/sh\", target = \"busybox\" }}]\n\
             [oci]\ncmd = [\"/bin/sh\", \"-c\", \"echo hello from $(cat /etc/os-name 2>/dev/null || echo candidate)\"]\n\
             [output]\nformats = [\"oci\"]\n",
            busybox.display()
        ),
    )
    .unwrap();
    run(with_store(t.path(), &t.path().join("store"), ["lock", "recipes/box.toml"])).assert_ok();
    run(with_store(t.path(), &t.path().join("store"), ["build", "recipes/box.toml", "--out", "out"])).assert_ok();
    let bundle = t.path().join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", t.path().join("out/box_1_amd64/oci").display()))
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
