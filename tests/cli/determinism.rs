//! Determinism: the example builds to the same bytes whatever the host varies, and those
//! bytes are pinned.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{copy_project, repo, sha256, snapshot};

/// The example candidate's id and outputs. Any change to an output byte must change one of
/// these and fail here: update them only for a deliberate format change, and say so in the
/// commit.
const GOLDEN_ID: &str = "sha256:f8df419e1ccfbb021c588541b9bf7c2caabb49bbbb2879caaf9e8c08b61af829";
const GOLDEN_ROOTFS: &str = "sha256:c3820a5818b937227b93455dd462cec0d15cb000edd18a10a469e3d8518d5fbd";
const GOLDEN_OUTPUTS: &[(&str, &str)] = &[
    ("rootfs.tar.gz", "sha256:ca38ef7c112306bfd697b1fc94bc36c2f3e14bc8d1d3fa12bd9e3c4fd338f87a"),
    ("rootfs.tar.xz", "sha256:92153744cd967a32276e110f2e30820ec8e9c58d62dbceff13b6452a201af98b"),
    ("rootfs.tar.zst", "sha256:9980ea26bc3cc99d0a32e1353ae0b8c7d410a66164f97c3850e390ac93c0a01d"),
];

/// Builds the example in `project` with a fresh store and output folder under `scratch`,
/// through `sh -c` so that the umask can be set; returns the candidate id and the files.
fn build(
    project: &Path,
    scratch: &Path,
    umask: &str,
    env: &[(&str, &str)],
) -> (String, std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>) {
    let store = scratch.join("store");
    let out = scratch.join("out");
    let script = format!(
        "umask {umask} && exec \"$0\" --quiet --store '{}' build recipes/example.toml --offline --out '{}'",
        store.display(),
        out.display()
    );
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(super::BIN)
        .current_dir(project)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "build failed: {}", String::from_utf8_lossy(&output.stderr));
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    (id, snapshot(&out))
}

#[test]
fn the_example_is_byte_identical_whatever_the_host_varies() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    copy_project(a.path(), false);
    // The second copy: created in reverse order, at a deeper path, with other mtimes.
    let b_project = b.path().join("some/deeper/checkout");
    copy_project(&b_project, true);
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for entry in walkdir::WalkDir::new(b_project.join("fixtures/example")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            fs_err::File::options().write(true).open(entry.path()).unwrap().set_modified(past).unwrap();
        }
    }

    let first = build(a.path(), &a.path().join("s1"), "022", &[("TZ", "UTC"), ("LC_ALL", "C")]);
    let second = build(
        &b_project,
        &b.path().join("elsewhere/s2"),
        "077",
        &[("TZ", "Pacific/Auckland"), ("LC_ALL", "fr_FR.UTF-8"), ("HOME", "/nonexistent")],
    );
    assert_eq!(first.0, second.0, "candidate ids differ");
    assert_eq!(first.1.keys().collect::<Vec<_>>(), second.1.keys().collect::<Vec<_>>());
    for (path, bytes) in &first.1 {
        assert!(bytes == &second.1[path], "{} differs between the two builds", path.display());
    }
}

#[test]
fn the_example_matches_its_golden_digests() {
    let t = tempfile::tempdir().unwrap();
    let (id, files) = build(repo(), t.path(), "022", &[]);
    let dir = Path::new("example_1.0_amd64");
    let actual: Vec<(String, String)> =
        GOLDEN_OUTPUTS.iter().map(|(name, _)| (name.to_string(), sha256(&files[&dir.join(name)]))).collect();
    let expected: Vec<(String, String)> = GOLDEN_OUTPUTS.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect();
    assert_eq!(actual, expected, "an output byte changed");
    let manifest: serde_json::Value = serde_json::from_slice(&files[&dir.join("manifest.json")]).unwrap();
    assert_eq!(manifest["rootfs"]["diff_id"], GOLDEN_ROOTFS, "the uncompressed rootfs changed");
    assert_eq!(id, GOLDEN_ID, "the manifest changed");
    assert_eq!(sha256(&files[&dir.join("manifest.json")]), id, "the id is the manifest's sha256");
}
