//! Rebuilds after the mirror has moved on (#17): an archive's snapshot serves the pinned files
//! its mirror dropped or replaced, and a bundle carries every locked input to a machine with
//! no network at all.
//!
//! The signed test archive (`fixtures/apt/archive`) is served over HTTP on 127.0.0.1 by the
//! store tests' server, twice: as the mirror (`/debian/…`) and in the layout of Debian's
//! snapshot archive (`/archive/debian/YYYYMMDDTHHMMSSZ/…`, at the locked `InRelease`'s
//! `Date`). The mirror then loses a pinned `.deb` and index, and serves a newer `InRelease`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use fs_err as fs;

use super::store::{id_of, store_blobs, store_temps, Route, Server};
use super::{copy_tree, fixture, run, sha256, snapshot, with_store, Run};

const PACKAGES: &[&str] = &["base-files", "dash", "libc6", "passwd"];
const CANDIDATE: &str = "fixture_1.0_amd64";

/// A recipe whose archive is the server's mirror, with its snapshot service, in a temporary
/// folder.
struct Project {
    dir: tempfile::TempDir,
    server: Server,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("candidate-moved-on-").tempdir().unwrap();
        let server = Server::start();
        server.route_dir("/debian", &fixture("apt/archive"));
        let p = Project { dir, server };
        fs::copy(fixture("apt/keys/test-archive.gpg"), p.root().join("keyring.gpg")).unwrap();
        let location = format!(
            "url = \"{}\"\nsnapshot = \"{}\"\n",
            p.server.url("/debian"),
            p.server.url("/archive/debian/{timestamp}/")
        );
        let recipe = super::debian::fixture_recipe(&location, PACKAGES);
        fs::create_dir_all(p.root().join("recipes")).unwrap();
        fs::write(p.recipe(), recipe).unwrap();
        p
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn recipe(&self) -> PathBuf {
        self.root().join("recipes/moved.toml")
    }

    fn store(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// `candidate --quiet --store STORE ARGS…` in the project.
    fn cmd(&self, store: &str, args: &[&OsStr]) -> Command {
        let mut cmd = with_store(self.root(), &self.store(store), args);
        cmd.arg("--quiet");
        cmd
    }

    fn build(&self, store: &str, out: &str, extra: &[&OsStr]) -> Run {
        let recipe = self.recipe();
        let args = [&[OsStr::new("build"), recipe.as_os_str(), "--out".as_ref(), out.as_ref()], extra].concat();
        run(self.cmd(store, &args))
    }

    /// The locked `[[archive]]`'s `Date` and the `[[package]]` `name`'s pool path and sha256.
    fn locked(&self, name: &str) -> (i64, String, String) {
        let lock: toml::Table =
            toml::from_str(&fs::read_to_string(self.root().join("lockfiles/moved.lock")).unwrap()).unwrap();
        let date = lock["archive"][0]["date"].as_integer().unwrap();
        let package = lock["package"].as_array().unwrap().iter().find(|p| p["name"].as_str() == Some(name)).unwrap();
        (date, package["filename"].as_str().unwrap().to_owned(), package["sha256"].as_str().unwrap().to_owned())
    }

    /// Output filtered for a snapshot: the temporary folder and the server's port.
    fn shown(&self, run: &Run) -> String {
        let code = run.code.map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string());
        let text = format!("exit code: {code}\n----- stderr -----\n{}", run.stderr);
        text.replace(self.root().to_str().unwrap(), "[TEMP]").replace(&self.server.url(""), "http://[SERVER]")
    }
}

/// The candidate folders under `a` and `b` hold the same files with the same bytes, but for
/// the signed envelope (`manifest.intoto.json`), which only `a`'s build wrote: the candidate
/// is its `manifest.json` and outputs, and the envelope signs that very manifest.
fn assert_same_files(a: &Path, b: &Path) {
    let unsigned = |dir: &Path| {
        let mut files = snapshot(dir);
        files.retain(|path, _| !path.ends_with("manifest.intoto.json"));
        files.into_iter().map(|(path, bytes)| (path, sha256(&bytes))).collect::<Vec<_>>()
    };
    let (ours, theirs) = (unsigned(a), unsigned(b));
    assert!(!ours.is_empty(), "no candidate under {}", a.display());
    assert_eq!(ours, theirs, "{} and {} differ", a.display(), b.display());
}

/// `YYYYMMDDTHHMMSSZ` of unix time `date`, by `date(1)`: what the snapshot's URL must hold,
/// worked out apart from the code under test.
fn timestamp(date: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{date}"), "+%Y%m%dT%H%M%SZ"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A copy of store `from` without the blob `sha256`: a store that has everything but one
/// `.deb`, so that a build fetches just that.
fn store_without(p: &Project, from: &str, to: &str, sha256: &str) {
    copy_tree(&p.store(from), &p.store(to), false);
    fs::remove_file(p.store(to).join("v1/blobs/sha256").join(sha256.trim_start_matches("sha256:"))).unwrap();
}

#[test]
fn a_build_takes_what_the_mirror_dropped_from_the_snapshot_checked_against_the_pins() {
    let p = Project::new();
    run(p.cmd("store-a", &["lock".as_ref(), p.recipe().as_os_str()])).assert_ok();
    let id = id_of(&p.build("store-a", "out-a", &[]));
    let (date, dash, dash_sha256) = p.locked("dash");
    let snapshot_root = format!("/archive/debian/{}", timestamp(date));
    p.server.route_dir(&snapshot_root, &fixture("apt/archive"));

    // The mirror moves on: a newer `InRelease` (other bytes than the pin), a new index layout
    // (the pinned `Packages.xz` gone), and the locked `dash` dropped from the pool.
    p.server.route("/debian/dists/stable/InRelease", Route::Full(b"a newer InRelease\n".to_vec()));
    p.server.unroute("/debian/dists/stable/main/binary-amd64/Packages.xz");
    p.server.unroute(&format!("/debian/{dash}"));
    let rebuilt = p.build("store-b", "out-b", &[]);
    assert_eq!(id_of(&rebuilt), id, "the snapshot's inputs gave another candidate");
    assert_same_files(&p.root().join("out-a"), &p.root().join("out-b"));
    for rel in ["dists/stable/InRelease", "dists/stable/main/binary-amd64/Packages.xz", dash.as_str()] {
        assert_eq!(
            p.server.hits(&format!("{snapshot_root}/{rel}")),
            1,
            "`{rel}` was not fetched from the snapshot once"
        );
    }
    assert_eq!(p.server.hits(&format!("{snapshot_root}/pool/main/l/libc6/libc6_2.36-9_amd64.deb")), 0);

    // A snapshot serving other bytes for the `.deb` (here one given by `--snapshot`, which
    // overrides the recipe's) is refused, naming the file, and stores nothing of them.
    let altered = {
        let mut bytes = fs::read(fixture("apt/archive").join(&dash)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes
    };
    let altered_root = format!("/altered/{}", timestamp(date));
    p.server.route(&format!("{altered_root}/{dash}"), Route::Full(altered.clone()));
    store_without(&p, "store-b", "store-c", &dash_sha256);
    let override_arg = format!("test={}", p.server.url("/altered/{timestamp}"));
    let refused = p.build("store-c", "out-c", &["--snapshot".as_ref(), override_arg.as_ref()]);
    refused
        .assert_code(2)
        .assert_stderr_has(&p.server.url(&format!("{altered_root}/{dash}")))
        .assert_stderr_has("does not match its pin")
        .assert_stderr_has(&dash_sha256)
        .assert_stderr_has(&sha256(&altered));
    assert!(!p.root().join("out-c").join(CANDIDATE).exists(), "a refused build published a candidate");
    assert!(!store_blobs(&p.store("store-c")).contains(&sha256(&altered)[7..].to_owned()));
    assert!(store_temps(&p.store("store-c")).is_empty(), "{:?}", store_temps(&p.store("store-c")));

    // Neither the mirror nor the snapshot: the error names the package, both URLs and what
    // each answered.
    p.server.unroute(&format!("{snapshot_root}/{dash}"));
    store_without(&p, "store-b", "store-d", &dash_sha256);
    let refused = p.build("store-d", "out-d", &[]);
    refused.assert_code(2);
    insta::assert_snapshot!("build_package_gone_from_mirror_and_snapshot", p.shown(&refused));
    assert!(!p.root().join("out-d").join(CANDIDATE).exists(), "a refused build published a candidate");
}

/// Where to flip a byte to corrupt the bundle member that holds `sha256`: its content's
/// offset in the tar, found with the crate's own reader.
fn member_offset(bundle: &Path, sha256: &str) -> (String, u64) {
    use candidate::tar::reader::{Limits, TarReader};
    let mut reader = TarReader::new(fs::File::open(bundle).unwrap(), Limits::default());
    let hex = sha256.trim_start_matches("sha256:");
    while let Some(entry) = reader.next_entry().unwrap() {
        if entry.path.ends_with(hex) {
            return (entry.path, entry.offset);
        }
    }
    panic!("no member for {sha256} in {}", bundle.display());
}

/// `cmd` run in a new network namespace, which has nothing but a loopback link (down): no
/// route to any server, this test's included.
fn in_netns(cmd: &Command) -> Command {
    let mut netns = Command::new("unshare");
    netns.arg("--net").arg("--").arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => netns.env(key, value),
            None => netns.env_remove(key),
        };
    }
    netns.current_dir(cmd.get_current_dir().unwrap());
    netns
}

#[test]
fn a_bundle_rebuilds_the_candidate_bit_for_bit_with_no_network() {
    let p = Project::new();
    run(p.cmd("store-a", &["key".as_ref(), "generate".as_ref(), "--out".as_ref(), "ci".as_ref()])).assert_ok();
    run(p.cmd("store-a", &["lock".as_ref(), p.recipe().as_os_str()])).assert_ok();
    let id = id_of(&p.build("store-a", "out-a", &["--sign".as_ref(), "ci.key".as_ref()]));
    let recipe = p.recipe();
    let fetch = |store: &str, args: &[&str]| {
        let args: Vec<&OsStr> =
            [OsStr::new("fetch"), recipe.as_os_str()].into_iter().chain(args.iter().map(OsStr::new)).collect();
        run(p.cmd(store, &args))
    };
    fetch("store-a", &["--bundle", "bundle.tar"]).assert_ok();
    let bundle = p.root().join("bundle.tar");
    // The same lockfile gives the same bundle, from another store that fetched it all anew.
    fetch("store-x", &["--bundle", "again.tar"]).assert_ok();
    assert!(fs::read(&bundle).unwrap() == fs::read(p.root().join("again.tar")).unwrap(), "bundles differ");
    // Every locked input is in it: the InRelease, the index, each package.
    let lock = fs::read_to_string(p.root().join("lockfiles/moved.lock")).unwrap();
    let listed = String::from_utf8_lossy(&fs::read(&bundle).unwrap()).into_owned();
    for line in lock.lines().filter(|l| l.starts_with("sha256 = ") || l.starts_with("inrelease = ")) {
        let digest = line.split('"').nth(1).unwrap();
        assert!(listed.contains(&format!("blobs/sha256/{}", &digest[7..])), "the bundle lacks {line}");
    }
    drop(p.server);
    let p = Project { server: Server::start(), ..p };

    // An empty store, offline, from the bundle alone: the same candidate, file for file.
    let from_bundle =
        p.build("store-b", "out-b", &["--offline".as_ref(), "--from-bundle".as_ref(), bundle.as_os_str()]);
    assert_eq!(id_of(&from_bundle), id);
    assert_same_files(&p.root().join("out-a"), &p.root().join("out-b"));

    // With no network at all: in a network namespace, `build` and `verify --rebuild` from the
    // bundle into empty stores, without `--offline`.
    if candidate::testing::root() && candidate::testing::tool("unshare", "util-linux") {
        let recipe = p.recipe();
        let build = |out: &'static str| [OsStr::new("build"), recipe.as_os_str(), "--out".as_ref(), out.as_ref()];
        let mut cmd = p.cmd("store-netns", &build("out-netns"));
        cmd.arg("--from-bundle").arg(&bundle);
        let isolated = run(in_netns(&cmd));
        assert_eq!(id_of(&isolated), id);
        assert_same_files(&p.root().join("out-a"), &p.root().join("out-netns"));
        // Without the bundle, the same namespace cannot fetch: the network really is gone.
        run(in_netns(&p.cmd("store-netns-empty", &build("out-netns-empty"))))
            .assert_code(2)
            .assert_stderr_has("failed to download");

        let candidate_dir = p.root().join("out-a").join(CANDIDATE);
        let verify = [
            OsStr::new("verify"),
            candidate_dir.as_os_str(),
            "--key".as_ref(),
            "ci.pub".as_ref(),
            "--rebuild".as_ref(),
            "--recipe".as_ref(),
            recipe.as_os_str(),
            "--from-bundle".as_ref(),
            bundle.as_os_str(),
        ];
        let verified = run(in_netns(&p.cmd("store-verify", &verify)));
        verified.assert_ok();
        assert!(verified.stdout.contains("rebuild: rootfs.tar is identical"), "{}", verified.describe());
    }

    // One corrupted member: refused naming it, nothing imported, nothing half-written.
    let (_, _, dash_sha256) = p.locked("dash");
    let (member, offset) = member_offset(&bundle, &dash_sha256);
    let mut bytes = fs::read(&bundle).unwrap();
    bytes[offset as usize + 100] ^= 0xff;
    let corrupted = p.root().join("corrupted.tar");
    fs::write(&corrupted, bytes).unwrap();
    for (command, out) in [("fetch", None), ("build", Some("out-corrupted"))] {
        let store = format!("store-corrupted-{command}");
        let recipe = p.recipe();
        let mut args = vec![OsStr::new(command), recipe.as_os_str(), "--from-bundle".as_ref(), corrupted.as_os_str()];
        if let Some(out) = out {
            args.extend([OsStr::new("--out"), OsStr::new(out)]);
        }
        let refused = run(p.cmd(&store, &args));
        refused
            .assert_code(2)
            .assert_stderr_has(&format!("member `{member}` is corrupt"))
            .assert_stderr_has("nothing was imported");
        assert_eq!(store_blobs(&p.store(&store)), Vec::<String>::new(), "{command}: a refused bundle left blobs");
        assert!(store_temps(&p.store(&store)).is_empty(), "{command}: {:?}", store_temps(&p.store(&store)));
    }
    assert!(!p.root().join("out-corrupted").join(CANDIDATE).exists(), "a refused build published a candidate");
}

/// An `InRelease` far larger than any archive's (a hostile or broken server): the lock stops
/// reading it at 64 MiB and names it, instead of storing gigabytes before the signature check.
#[test]
fn an_oversized_inrelease_is_refused_unread() {
    let p = Project::new();
    p.server.route("/debian/dists/stable/InRelease", Route::Full(vec![b'x'; (64 << 20) + 1]));
    let lock = run(p.cmd("store-a", &["lock".as_ref(), p.recipe().as_os_str()]));
    lock.assert_code(2).assert_stderr_has("InRelease` is larger than the 67108864 bytes");
}
