//! Determinism: the example builds to the same bytes whatever the host varies, and those
//! bytes are pinned.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{copy_project, repo, sha256, snapshot};

/// The example candidate's id and outputs, one per format (`oci/index.json` pins the OCI
/// manifest, config and layers through their digests), and the two SBOMs. Any change to an output
/// byte must change one of these and fail here: update them only for a deliberate format change, and say so in the
/// commit.
///
/// Changed deliberately when the `lxc` format got a rootfs of its own (`lxc.rootfs.tar.xz`,
/// holding LXC's `LXC_NAME` templates in `/etc/hostname` and `/etc/hosts`): that file is new,
/// and the manifest (so the id) and the SBOM list it; every other output kept its bytes.
///
/// Changed deliberately when xz moved to liblzma's multi-threaded encoder with 24 MiB blocks
/// (README.md, "Archives"): the four `.tar.xz` files (a block header now records its sizes),
/// the manifest (their digests, and the xz settings it records: `block_size` for `threads`)
/// and so the id and the SBOM that names it. The rootfs and every other output kept their bytes.
///
/// Changed deliberately when lockfiles recorded the resolver's dependency edges and the
/// candidate got a CycloneDX SBOM (`sbom.cdx.json`, new): `lockfiles/example.lock` gained each
/// package's `depends`, which the manifest lists (so the id moved), and the SPDX SBOM gained
/// the `DEPENDS_ON` relationships and a `pkg:generic` purl per tarball. Every image output
/// kept its bytes.
///
/// Changed deliberately when xz outputs became content-cut pieces, one xz stream each
/// (README.md, "Archives"; `compress::pieces`): the four `.tar.xz` files, the xz settings the
/// manifest records (`pieces` for `block_size`), so the id and the SBOMs that name the
/// outputs. The rootfs and every other output kept their bytes. In the same change gzip
/// outputs became pieces too (one member each; the example's are one piece, so
/// `rootfs.tar.gz` kept its bytes), and a caller's flush no longer ends a deflate block: the
/// OCI layers, written through a flushed buffer, lost an empty sync-flush block, so
/// `oci/index.json` moved.
///
/// Changed deliberately when the pieces became smaller (2 MiB minimum, a cut one byte in 2^21
/// after it, 8 MiB at most, for 4 MiB minimum, 2^22 and 16 MiB; README.md, "Archives"): the
/// xz and gzip settings the manifest records, so the id and the SBOMs that name it. The
/// example's tars are one piece either way, so every image output kept its bytes.
const GOLDEN_ID: &str = "sha256:6f42ab5334d6199a69af5f973c8967fa3e0532c1542961f373adc4a229211965";
const GOLDEN_ROOTFS: &str = "sha256:60049863c0e874c302dfc73b2654e2e8a626274452ce8d67912b7f6ff75d32f8";
const GOLDEN_OUTPUTS: &[(&str, &str)] = &[
    (
        "debian-bookworm-example_1.0_amd64.tar.zst",
        "sha256:c81b444907cd8f3f8635e85dc37973e5a1eba5dd0e7fedb9c3245b541d295cea",
    ),
    ("incus.meta.tar.xz", "sha256:1ea1ade644122d9494b76dc649c61337cbc2ad5d5dc6ba051436d47ffc49d668"),
    ("lxc.rootfs.tar.xz", "sha256:1b1e1efb4681a5214a2d659246abd98b9c275439e6e9b1c41ede1ba3133d5096"),
    ("meta.tar.xz", "sha256:5a98cba3cfa64c3d2b3691895cf08dc6c45b199ad82db2f0a40daf59252790f0"),
    ("oci/index.json", "sha256:1768727e8868a8107b855fdaeedc546ed143a88b16688914bddfd602498ceeee"),
    ("rootfs.tar.gz", "sha256:b43682290a28f21dd8abe286843ddcd6e468db86ee2bcea8a5c8fe2b084952d5"),
    ("rootfs.tar.xz", "sha256:0bd4c24292aa9c21b9360c39cf07a15ceea8c1db239d7269d680ba6b67e57447"),
    ("rootfs.tar.zst", "sha256:c81b444907cd8f3f8635e85dc37973e5a1eba5dd0e7fedb9c3245b541d295cea"),
    ("sbom.cdx.json", "sha256:05d1c6ed4db3b755cab2c682e9132282722122911b2d731696eddb489a7f49ce"),
    ("sbom.spdx.json", "sha256:1c0ad173f7de5eb32418d1d04b352486d9dc69ec5cf52e1b3e6c174005a926a4"),
];

/// The example's OCI layout with `[oci] layer-compression = "zstd"`: `oci/index.json` pins the
/// image manifest, which pins the config and the zstd layer blobs.
const GOLDEN_ZSTD_OCI_INDEX: &str = "sha256:7f70d5430a7b0538b75bfe44b0641b5ccb0696c298103a8ac11c54947d8bcc7a";

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

#[test]
fn the_example_with_zstd_oci_layers_matches_its_golden_digest() {
    let t = tempfile::tempdir().unwrap();
    let dir = super::formats::build_example_with_zstd_layers(t.path());
    let index = fs_err::read(dir.join("oci/index.json")).unwrap();
    assert_eq!(sha256(&index), GOLDEN_ZSTD_OCI_INDEX, "an OCI output byte changed");
}

/// A one-layer candidate is encoded while its layer is written; the same rootfs encoded
/// later from the stored layer (another format set, so the layer is cached but the outputs
/// are not) must give the same bytes.
#[test]
fn streamed_and_stored_layers_encode_to_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    fs_err::create_dir_all(data.join("sub")).unwrap();
    for i in 0..200u32 {
        let body: Vec<u8> =
            (0..20_000u32).map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8).collect();
        fs_err::write(data.join("sub").join(format!("f{i:03}")), body).unwrap();
    }
    fs_err::create_dir_all(t.path().join("recipes")).unwrap();
    fs_err::write(
        t.path().join("recipes/one.toml"),
        "[image]\nname = \"one\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
         source-date-epoch = 1700000000\n[[layer]]\nname = \"data\"\nfiles = [{ from = \"../data\", to = \"/data\" }]\n",
    )
    .unwrap();
    let store = t.path().join("store");
    let run = |args: &[&str]| {
        super::run(super::with_store(t.path(), &store, args)).assert_ok();
    };
    run(&["lock", "recipes/one.toml"]);
    run(&["build", "recipes/one.toml", "--out", "a", "--format", "rootfs.tar.zst", "--format", "rootfs.tar.gz"]);
    run(&[
        "build",
        "recipes/one.toml",
        "--out",
        "b",
        "--format",
        "rootfs.tar.zst",
        "--format",
        "rootfs.tar.gz",
        "--format",
        "rootfs.tar",
    ]);
    for name in ["rootfs.tar.zst", "rootfs.tar.gz"] {
        let a = fs_err::read(t.path().join("a/one_1_amd64").join(name)).unwrap();
        let b = fs_err::read(t.path().join("b/one_1_amd64").join(name)).unwrap();
        assert!(a == b, "{name} differs between the streamed and the stored path");
    }
}

/// A later layer that writes inside a directory an earlier layer declared leaves that
/// directory's metadata alone, whether the layers were just built or come from the cache.
#[test]
fn declared_directories_survive_later_layers() {
    let t = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(t.path().join("recipes")).unwrap();
    fs_err::write(t.path().join("note"), "x").unwrap();
    fs_err::write(
        t.path().join("recipes/dirs.toml"),
        "[image]\nname = \"dirs\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
         source-date-epoch = 1700000000\n\
         [[layer]]\nname = \"base\"\ndirectories = [{ path = \"/tmp\", mode = \"1777\" }, { path = \"/srv\", mode = \"0750\", owner = \"0:33\" }]\n\
         [[layer]]\nname = \"more\"\nfiles = [{ from = \"../note\", to = \"/tmp/note\" }, { from = \"../note\", to = \"/srv/www/note\" }]\n",
    )
    .unwrap();
    let store = t.path().join("store");
    let run = |args: &[&str]| {
        super::run(super::with_store(t.path(), &store, args)).assert_ok();
    };
    run(&["lock", "recipes/dirs.toml"]);
    run(&["build", "recipes/dirs.toml", "--out", "a", "--format", "rootfs.tar"]);
    run(&["build", "recipes/dirs.toml", "--out", "b", "--format", "rootfs.tar.gz"]);
    for archive in ["a/dirs_1_amd64/rootfs.tar", "b/dirs_1_amd64/rootfs.tar.gz"] {
        let listing = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf", archive])
            .current_dir(t.path())
            .output()
            .unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(
            listing.lines().any(|l| l.starts_with("drwxrwxrwt 0/0") && l.ends_with(" ./tmp/")),
            "{archive}:\n{listing}"
        );
        assert!(
            listing.lines().any(|l| l.starts_with("drwxr-x--- 0/33") && l.ends_with(" ./srv/")),
            "{archive}:\n{listing}"
        );
    }
}

/// The same files-only recipe built for arm64 and then for amd64 on one store: the second OCI
/// layout says amd64 (its cache key once left the architecture out, and the arm64 layout,
/// config and platform, came back for the amd64 candidate).
#[test]
fn an_oci_layout_is_for_its_own_architecture() {
    let t = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(t.path().join("recipes")).unwrap();
    let recipe = |arch: &str| {
        format!(
            "[image]\nname = \"files\"\nversion = \"1\"\narchitecture = \"{arch}\"\nos = \"debian\"\n\
             release = \"bookworm\"\nsource-date-epoch = 1700000000\n\
             [[layer]]\nname = \"base\"\ndirectories = [{{ path = \"/srv\" }}]\n"
        )
    };
    let store = t.path().join("store");
    let run = |args: &[&str]| {
        super::run(super::with_store(t.path(), &store, args)).assert_ok();
    };
    for arch in ["arm64", "amd64"] {
        fs_err::write(t.path().join("recipes/files.toml"), recipe(arch)).unwrap();
        run(&["lock", "recipes/files.toml"]);
        run(&["build", "recipes/files.toml", "--out", "out", "--format", "oci"]);
        let index = fs_err::read_to_string(t.path().join(format!("out/files_1_{arch}/oci/index.json"))).unwrap();
        assert!(index.contains(&format!("\"architecture\":\"{arch}\"")), "{arch}: {index}");
    }
}

/// A layer that declares a folder another layer below made (an explicit `/srv` over base's
/// `0700 1000:1000` one) writes the same tar as one that only holds files in it, but merges
/// differently: the warm build gives what a cold one does (the merge keys once held only the
/// layers' tars, and the rootfs of the first build came back).
#[test]
fn declaring_a_folder_changes_the_merge_whatever_the_tar() {
    let t = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(t.path().join("recipes")).unwrap();
    fs_err::write(t.path().join("app"), "x").unwrap();
    let recipe = |declared: &str| {
        format!(
            "[image]\nname = \"srv\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\n\
             release = \"bookworm\"\nsource-date-epoch = 1700000000\n\
             [[layer]]\nname = \"base\"\ndirectories = [{{ path = \"/srv\", mode = \"0700\", owner = \"1000:1000\" }}]\n\
             [[layer]]\nname = \"app\"\nfiles = [{{ from = \"../app\", to = \"/srv/app\" }}]\n{declared}"
        )
    };
    let store = t.path().join("store");
    let run = |args: &[&str]| {
        super::run(super::with_store(t.path(), &store, args)).assert_ok();
    };
    let srv = |out: &str| {
        let listing = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf", &format!("{out}/srv_1_amd64/rootfs.tar")])
            .current_dir(t.path())
            .output()
            .unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        listing
            .lines()
            .find(|l| l.ends_with(" ./srv/"))
            .unwrap_or_default()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    fs_err::write(t.path().join("recipes/srv.toml"), recipe("")).unwrap();
    run(&["lock", "recipes/srv.toml"]);
    run(&["build", "recipes/srv.toml", "--out", "a", "--format", "rootfs.tar"]);
    assert_eq!(srv("a"), "drwx------ 1000/1000");
    fs_err::write(t.path().join("recipes/srv.toml"), recipe("directories = [{ path = \"/srv\" }]\n")).unwrap();
    run(&["lock", "recipes/srv.toml"]);
    run(&["build", "recipes/srv.toml", "--out", "b", "--format", "rootfs.tar"]);
    let cold = t.path().join("cold-store");
    super::run(super::with_store(
        t.path(),
        &cold,
        ["build", "recipes/srv.toml", "--out", "c", "--format", "rootfs.tar"],
    ))
    .assert_ok();
    assert_eq!(srv("b"), srv("c"), "warm and cold builds of one recipe differ");
    assert_eq!(srv("c"), "drwxr-xr-x 0/0");
}
