//! A store that proves and heals itself: inputs checked against their pin on every use,
//! `verify --rebuild` that does not trust the store it seeds from, `store verify [--repair]`,
//! `store gc`, and outputs in `dist/` that share no inode with a store blob.

use fs_err as fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, sha256, with_store, Run};

/// A project folder with one plain tarball input (`input/app.tar`, holding `app/hello.txt`)
/// and a recipe unpacking it, locked against a store at `store/`.
struct Project {
    _temp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    /// The pinned digest of the tarball, hex.
    input: String,
}

/// What `app/hello.txt` holds; a corruption of the store's copy flips it to upper case.
const HELLO: &[u8] = b"hello from the pinned tarball\n";

impl Project {
    fn new() -> Self {
        let temp = tempfile::Builder::new().prefix("candidate-heal-").tempdir().unwrap();
        let root = temp.path().to_owned();
        fs::create_dir_all(root.join("input/app")).unwrap();
        fs::write(root.join("input/app/hello.txt"), HELLO).unwrap();
        // A plain ustar: the content sits in the blob as it is, so a same-size change of it is
        // not caught by any decoder's own checksum.
        let input = pack_app(&root.join("input"));
        fs::create_dir_all(root.join("recipes")).unwrap();
        fs::write(
            root.join("recipes/app.toml"),
            format!(
                r#"[image]
name = "app"
version = "1.0"
architecture = "amd64"
os = "debian"
release = "bookworm"
description = "heal test"
source-date-epoch = 1700000000

[[layer]]
name = "app"
tarballs = [{{ url = '../input/app.tar', sha256 = "{input}", strip-components = 1, to = "/opt/app" }}]

[output]
formats = ["rootfs.tar"]
"#
            ),
        )
        .unwrap();
        let store = root.join("store");
        let project = Project { _temp: temp, root, store, input };
        project.cmd(&["lock", "recipes/app.toml"]).assert_ok();
        project
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(&self.root, &self.store, args))
    }

    fn build(&self, out: &str) -> Run {
        self.cmd(&["build", "recipes/app.toml", "--out", out])
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.store.join("v1/blobs/sha256").join(hex)
    }

    /// Changes `HELLO` to upper case inside the store's blob `hex`, in place, same size.
    fn corrupt(&self, hex: &str) {
        corrupt_in_place(&self.blob(hex));
    }
}

/// Packs `dir/app` into `dir/app.tar` (plain ustar, fixed owners and mtime); returns its
/// sha256 in hex.
fn pack_app(dir: &Path) -> String {
    let tar = Command::new("tar")
        .args(["--format=ustar", "--owner=0", "--group=0", "--mtime=@1700000000", "-cf", "app.tar", "app"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(tar.success(), "tar failed");
    sha256(&fs::read(dir.join("app.tar")).unwrap()).trim_start_matches("sha256:").to_owned()
}

/// Upper-cases the first `HELLO` in the file at `path`, writing through the same inode.
fn corrupt_in_place(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let bytes = fs::read(path).unwrap();
    let at = bytes.windows(HELLO.len()).position(|w| w == HELLO).expect("the file holds the text");
    let mut perms = fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(path, perms).unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    file.write_all(&HELLO.to_ascii_uppercase()).unwrap();
}

/// The candidate id a successful build printed.
#[track_caller]
fn id_of(run: &Run) -> String {
    run.assert_ok();
    run.stdout.trim().to_owned()
}

/// Hole 2: an input changed in place in the store (same size) is refused where it is used,
/// naming it, and the next build fetches it again and gives the candidate a fresh store gives.
#[test]
fn a_corrupt_input_in_the_store_is_refused_and_fetched_again() {
    let p = Project::new();
    let good = id_of(&p.build("out-good"));
    // Only the input is there: the layer has to be made from it again.
    fs::remove_dir_all(p.store.join("v1")).unwrap();
    p.cmd(&["fetch", "recipes/app.toml"]).assert_ok();
    p.corrupt(&p.input);

    let refused = p.build("out-bad");
    refused.assert_code(2).assert_stderr_has(&p.input).assert_stderr_has("corrupt");
    assert!(
        !Path::new(&p.root.join("out-bad/app_1.0_amd64")).exists(),
        "a candidate was published\n{}",
        refused.describe()
    );

    // The corrupt blob is gone; the next build fetches the input again from its origin.
    let healed = p.build("out-healed");
    assert_eq!(id_of(&healed), good, "the build after the refusal differs from the first\n{}", healed.describe());
    assert_eq!(sha256(&fs::read(p.blob(&p.input)).unwrap()), format!("sha256:{}", p.input));
}

/// Hole 2: `verify --rebuild` re-hashes what it takes from this store, so a corrupt copy of
/// an input is not carried into the rebuild (which fetches the input from its origin).
#[test]
fn verify_rebuild_does_not_trust_the_store_it_seeds_from() {
    let p = Project::new();
    fs::create_dir_all(p.root.join("keys")).unwrap();
    p.cmd(&["key", "generate", "--out", "keys/ci"]).assert_ok();
    p.cmd(&["build", "recipes/app.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
    p.corrupt(&p.input);
    let verified =
        p.cmd(&["verify", "out/app_1.0_amd64", "--key", "keys/ci.pub", "--rebuild", "--recipe", "recipes/app.toml"]);
    verified.assert_ok().assert_stderr_has(&p.input);
}

/// What is in the store's `v1/tmp/`.
fn temps(store: &Path) -> Vec<PathBuf> {
    fs::read_dir(store.join("v1/tmp")).unwrap().map(|e| e.unwrap().path()).collect()
}

/// A PID no process has: one that just exited (PIDs are not reused so soon).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn store_verify_names_each_bad_object_and_repair_heals_it() {
    let p = Project::new();
    let good = id_of(&p.build("out"));
    p.cmd(&["store", "verify"]).assert_ok();

    p.corrupt(&p.input);
    let junk_action = format!("{:064}", 1);
    fs::write(p.store.join("v1/actions").join(&junk_action), "{\"diff_id\": \"sha256:").unwrap();
    fs::write(p.store.join("v1/candidates").join(format!("{:064}.json", 2)), "not a registration").unwrap();

    let found = p.cmd(&["store", "verify"]);
    found.assert_code(1);
    for object in
        [format!("blobs/sha256/{}", p.input), format!("actions/{junk_action}"), format!("candidates/{:064}.json", 2)]
    {
        assert!(found.stdout.contains(&object), "`store verify` does not name {object}\n{}", found.describe());
    }
    let json = p.cmd(&["--json", "store", "verify"]);
    json.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["bad"].as_array().map(Vec::len), Some(3), "{}", json.describe());

    p.cmd(&["store", "verify", "--repair"]).assert_ok();
    p.cmd(&["store", "verify"]).assert_ok();
    // The input is fetched again from its origin; the candidate is the one built before.
    assert_eq!(id_of(&p.build("out-again")), good);
    assert!(temps(&p.store).is_empty(), "leftovers in tmp/: {:?}", temps(&p.store));
}

#[test]
fn store_gc_keeps_what_is_needed_and_removes_the_rest_and_dead_leftovers() {
    let p = Project::new();
    let id = id_of(&p.build("out"));

    // Another project, built with the same store, then deleted with its candidate.
    let other = tempfile::Builder::new().prefix("candidate-heal-other-").tempdir().unwrap();
    fs::create_dir_all(other.path().join("recipes")).unwrap();
    fs::create_dir_all(other.path().join("input/app")).unwrap();
    fs::write(other.path().join("input/app/other.txt"), b"another project\n").unwrap();
    let body = fs::read_to_string(p.root.join("recipes/app.toml"))
        .unwrap()
        .replace("name = \"app\"\nversion", "name = \"other\"\nversion");
    let other_tar = pack_app(&other.path().join("input"));
    fs::write(other.path().join("recipes/other.toml"), body.replace(&p.input, &other_tar)).unwrap();
    run(with_store(other.path(), &p.store, ["lock", "recipes/other.toml"])).assert_ok();
    run(with_store(other.path(), &p.store, ["build", "recipes/other.toml", "--out", "out"])).assert_ok();
    assert!(p.blob(&other_tar).is_file());
    drop(other);

    // Leftovers of a dead process (its PID in their names), and one of a live process.
    let dead = dead_pid();
    let tmp = p.store.join("v1/tmp");
    fs::write(tmp.join(format!("blob-{dead}-aB3dE5")), vec![7u8; 100_000]).unwrap();
    fs::create_dir_all(tmp.join(format!("instance-{dead}-xY1zZ2/etc"))).unwrap();
    fs::write(tmp.join(format!("instance-{dead}-xY1zZ2/etc/hostname")), "x\n").unwrap();
    fs::create_dir_all(tmp.join(format!("script-{dead}-qQ9wW8"))).unwrap();
    let staging = p.root.join(format!("out/.app_1.0_amd64.new-{dead}-Zz0yY1"));
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("rootfs.tar"), vec![1u8; 50_000]).unwrap();
    // The old folder a publish without `renameat2` flags moves aside, killed before it was gone.
    let aside = p.root.join(format!("out/.app_1.0_amd64.old-{dead}-0"));
    fs::create_dir_all(&aside).unwrap();
    fs::write(aside.join("rootfs.tar"), vec![2u8; 50_000]).unwrap();
    let live = tmp.join(format!("blob-{}-liveAA", std::process::id()));
    fs::write(&live, "being written").unwrap();

    let gc = p.cmd(&["--json", "store", "gc", "--root", "."]);
    gc.assert_ok();
    let doc: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    assert!(doc["bytes_freed"].as_u64().unwrap() >= 200_000, "{}", gc.describe());
    assert_eq!(doc["removed_candidates"], 1, "{}", gc.describe());
    assert_eq!(doc["removed_leftovers"].as_array().map(Vec::len), Some(5), "{}", gc.describe());
    assert!(!p.blob(&other_tar).exists(), "the deleted project's input is still there");
    assert!(p.blob(&p.input).is_file(), "the live lockfile's input was removed");
    assert!(!staging.exists() && !aside.exists() && live.exists());
    assert_eq!(temps(&p.store), vec![live.clone()]);
    fs::remove_file(&live).unwrap();

    // What is left verifies, and the live candidate builds again, offline, to the same id.
    p.cmd(&["store", "verify"]).assert_ok();
    let again = p.cmd(&["build", "recipes/app.toml", "--out", "out", "--offline"]);
    assert_eq!(id_of(&again), id);
}

/// Also found in #16: an output written to through `dist/` changed the store's blob (a hard
/// link), and later builds published the wrong bytes under the right digest. Outputs now
/// share no inode with the store, and a changed output is republished.
#[test]
fn an_output_changed_in_dist_does_not_reach_the_store() {
    use std::os::unix::fs::MetadataExt;
    let p = Project::new();
    let id = id_of(&p.build("out"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(p.root.join("out/app_1.0_amd64/manifest.json")).unwrap()).unwrap();
    let digest = manifest["outputs"][0]["sha256"].as_str().unwrap().to_owned();
    let output = p.root.join("out/app_1.0_amd64/rootfs.tar");
    let blob = p.blob(digest.trim_start_matches("sha256:"));
    let (o, b) = (fs::metadata(&output).unwrap(), fs::metadata(&blob).unwrap());
    assert_ne!((o.dev(), o.ino()), (b.dev(), b.ino()), "the output is the store's blob");

    corrupt_in_place(&output);
    p.cmd(&["store", "verify"]).assert_ok();
    assert_eq!(id_of(&p.build("out2")), id);
    assert_eq!(sha256(&fs::read(p.root.join("out2/app_1.0_amd64/rootfs.tar")).unwrap()), digest);
    // The changed folder is not taken for current: it is published again, whole.
    assert_eq!(id_of(&p.build("out")), id);
    assert_eq!(sha256(&fs::read(&output).unwrap()), digest);
}

// ---------------------------------------------------------------------------------------------
// Crashes, concurrency, a full disk
// ---------------------------------------------------------------------------------------------

/// A copy of the repository's example project, with its own store.
fn example_project() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new().prefix("candidate-crash-").tempdir().unwrap();
    super::copy_project(t.path(), false);
    let store = t.path().join("store");
    (t, store)
}

/// Everything under `out` that is not the candidate folder `name` (staging folders of killed
/// publishes, stray files).
fn strays(out: &Path, name: &str) -> Vec<PathBuf> {
    super::walk(out).into_iter().filter(|p| !p.starts_with(out.join(name))).collect()
}

/// Crash consistency: at least 50 SIGKILLs spread over the example's cold build (whose
/// action cache is emptied before each), each followed by `store verify` (clean), a build
/// that completes to the very candidate, and `store gc`, after which nothing is left over.
#[test]
fn fifty_kills_spread_over_a_build_leave_a_store_that_verifies() {
    use std::time::Instant;
    let (t, store) = example_project();
    let root = t.path();
    let cmd = |args: &[&str]| with_store(root, &store, args);
    run(cmd(&["lock", "recipes/example.toml"])).assert_ok();
    let cold = || {
        for folder in ["actions", "layers"] {
            let _ = fs::remove_dir_all(store.join("v1").join(folder));
        }
    };
    // One format keeps each round short enough for 50 rounds in about a minute.
    let build = || cmd(&["build", "recipes/example.toml", "--out", "out", "--format", "rootfs.tar.zst"]);
    // Inputs fetched, indexes kept.
    let id = id_of(&run(build()));
    // The reference: the shortest of three cold builds from stored inputs, to spread the
    // kills over (one slow round on a busy machine would put most kills after the end).
    let length = (0..3)
        .map(|_| {
            cold();
            let started = Instant::now();
            assert_eq!(id_of(&run(build())), id);
            started.elapsed()
        })
        .min()
        .unwrap();
    let (mut kills, mut attempts) = (0, 0);
    while kills < 50 {
        attempts += 1;
        assert!(attempts <= 200, "only {kills} of {attempts} builds could be killed before they ended");
        cold();
        // Delays from 0 to the whole cold build, in 50 steps, golden-ratio interleaved.
        let fraction = (attempts as f64 * 0.618_033_988_7).fract();
        let mut child =
            build().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(length.mul_f64(fraction * 0.9));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let context = format!("after kill {kills} at {:.0}% of the build", fraction * 100.0);
        let verify = run(cmd(&["store", "verify"]));
        assert!(verify.ok(), "{context}: the store does not verify\n{}", verify.describe());
        let again = run(build());
        assert_eq!(id_of(&again), id, "{context}: the build after the kill gives another candidate");
        run(cmd(&["store", "gc", "--root", "."])).assert_ok();
        assert!(temps(&store).is_empty(), "{context}: leftovers in tmp/ after gc: {:?}", temps(&store));
        assert!(
            strays(&root.join("out"), "example_1.0_amd64").is_empty(),
            "{context}: {:?}",
            strays(&root.join("out"), "example_1.0_amd64")
        );
    }
    eprintln!("{kills} kills of {attempts} builds survived (cold build {:.2} s)", length.as_secs_f64());
}

/// Eight builds at once on one cold store: four of the example (into four folders) and four
/// of other recipes. Each gives the candidate a fresh store gives it, and the store verifies.
#[test]
fn eight_concurrent_builds_on_one_store_agree() {
    let (t, store) = example_project();
    let root = t.path();
    let mut recipes = vec!["example".to_owned(); 4];
    for i in 0..4 {
        let name = format!("small{i}");
        fs::create_dir_all(root.join(format!("input/{name}"))).unwrap();
        fs::write(root.join(format!("input/{name}/data.txt")), format!("recipe {i}\n").repeat(1000 * (i + 1))).unwrap();
        fs::write(
            root.join(format!("recipes/{name}.toml")),
            format!(
                "[image]\nname = \"{name}\"\nversion = \"1.0\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
                 description = \"concurrency\"\nsource-date-epoch = 1700000000\n\n[[layer]]\nname = \"data\"\n\
                 files = [{{ from = \"../input/{name}\", to = \"/srv/data\" }}]\n\n[output]\nformats = [\"rootfs.tar.zst\", \"oci\"]\n"
            ),
        )
        .unwrap();
        recipes.push(name);
    }
    for name in ["example", "small0", "small1", "small2", "small3"] {
        run(with_store(root, &store, ["lock", &format!("recipes/{name}.toml")])).assert_ok();
    }
    let spawn = |store: &Path, name: &str, out: &str| {
        let mut cmd = with_store(root, store, ["build", &format!("recipes/{name}.toml"), "--out", out]);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        (super::command_line(&cmd), cmd.spawn().unwrap())
    };
    let running: Vec<_> = recipes.iter().enumerate().map(|(i, name)| spawn(&store, name, &format!("out{i}"))).collect();
    let ids: Vec<String> =
        running.into_iter().map(|(what, child)| id_of(&Run::new(what, child.wait_with_output().unwrap()))).collect();
    let fresh = root.join("fresh-store");
    for (i, name) in recipes.iter().enumerate() {
        let (what, child) = spawn(&fresh, name, &format!("fresh{i}"));
        let alone = id_of(&Run::new(what, child.wait_with_output().unwrap()));
        assert_eq!(ids[i], alone, "build {i} of `{name}` among eight differs from one alone in a fresh store");
    }
    assert!(ids[..4].iter().all(|id| *id == ids[0]));
    run(with_store(root, &store, ["store", "verify"])).assert_ok();
    assert!(temps(&store).is_empty(), "leftovers in tmp/: {:?}", temps(&store));
}

/// A tmpfs of `size` bytes mounted on a fresh folder; unmounted when dropped (also when the
/// test panics), so nothing stays mounted.
struct SmallDisk {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn mount(size: u64) -> Self {
        let dir = tempfile::Builder::new().prefix("candidate-full-").tempdir().unwrap();
        let path = dir.path().to_owned();
        Self::call(&path, 0, size);
        SmallDisk { _dir: dir, path }
    }

    /// Gives the filesystem `size` bytes, keeping what is on it.
    fn resize(&self, size: u64) {
        Self::call(&self.path, libc::MS_REMOUNT, size);
    }

    fn call(path: &Path, flags: libc::c_ulong, size: u64) {
        use std::os::unix::ffi::OsStrExt;
        let c = |s: &[u8]| std::ffi::CString::new(s).unwrap();
        let (source, target, kind, options) =
            (c(b"tmpfs"), c(path.as_os_str().as_bytes()), c(b"tmpfs"), c(format!("size={size},mode=0755").as_bytes()));
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc =
            unsafe { libc::mount(source.as_ptr(), target.as_ptr(), kind.as_ptr(), flags, options.as_ptr().cast()) };
        assert_eq!(rc, 0, "mount tmpfs on {}: {}", path.display(), std::io::Error::last_os_error());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(self.path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call. MNT_DETACH: even a process
        // still holding a file there does not keep the mount.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Disk full: a store on a 3 MiB filesystem, a build whose layer does not fit. A clean error
/// that says the disk is full and names where; the store verifies and holds no temporary;
/// with room, the same store builds.
#[test]
fn a_full_disk_fails_cleanly_and_the_store_survives() {
    if !candidate::testing::root() {
        return;
    }
    let p = Project::new();
    // 2 MiB that do not compress, in the tarball: the layer (2 MiB more) does not fit.
    let noise: Vec<u8> = (0u32..(2 << 20) / 4).flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()).collect();
    fs::write(p.root.join("input/app/noise.bin"), noise).unwrap();
    let new = pack_app(&p.root.join("input"));
    let recipe = fs::read_to_string(p.root.join("recipes/app.toml")).unwrap().replace(&p.input, &new);
    fs::write(p.root.join("recipes/app.toml"), recipe).unwrap();

    let disk = SmallDisk::mount(3 << 20);
    let store = disk.path.join("store");
    let cmd = |args: &[&str]| run(with_store(&p.root, &store, args));
    cmd(&["lock", "recipes/app.toml"]).assert_ok();
    // First the input itself does not fit: the store's disk is blamed, not the input (a full
    // store was reported as a failure to read the tarball).
    disk.resize(1 << 20);
    let refused = cmd(&["build", "recipes/app.toml", "--out", "out"]);
    refused.assert_code(2).assert_stderr_has("disk is full").assert_stderr_has(&store.display().to_string());
    assert!(!refused.stderr.contains("failed to read"), "{}", refused.describe());
    assert!(temps(&store).is_empty(), "leftovers in tmp/: {:?}", temps(&store));
    disk.resize(3 << 20);
    let full = cmd(&["build", "recipes/app.toml", "--out", "out"]);
    full.assert_code(2).assert_stderr_has("No space left on device").assert_stderr_has(&store.display().to_string());
    assert!(!p.root.join("out/app_1.0_amd64").exists());
    cmd(&["store", "verify"]).assert_ok();
    assert!(temps(&store).is_empty(), "leftovers in tmp/: {:?}", temps(&store));

    disk.resize(16 << 20);
    id_of(&cmd(&["build", "recipes/app.toml", "--out", "out"]));
    cmd(&["store", "verify"]).assert_ok();
}

/// Also found in #16: a build refused after a layer was written left that layer's temporary
/// blob in `tmp/` (its commit ran on a thread the exiting process cut short), once per run.
#[test]
fn a_refused_build_leaves_no_temporary_blob() {
    let p = Project::new();
    fs::create_dir_all(p.root.join("input/big")).unwrap();
    let noise: Vec<u8> = (0u32..(24 << 20) / 4).flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()).collect();
    fs::write(p.root.join("input/big/noise.bin"), noise).unwrap();
    let hostile = super::fixture("hostile/dotdot.tar");
    let pin = sha256(&fs::read(&hostile).unwrap()).trim_start_matches("sha256:").to_owned();
    let body = fs::read_to_string(p.root.join("recipes/app.toml")).unwrap();
    let (image, _) = body.split_once("[[layer]]").unwrap();
    fs::write(
        p.root.join("recipes/app.toml"),
        format!(
            "{image}[[layer]]\nname = \"big\"\nfiles = [{{ from = \"../input/big\", to = \"/big\" }}]\n\n\
             [[layer]]\nname = \"app\"\ntarballs = [{{ url = '{}', sha256 = \"{pin}\" }}]\n\n[output]\nformats = [\"rootfs.tar\"]\n",
            hostile.display()
        ),
    )
    .unwrap();
    p.cmd(&["lock", "recipes/app.toml"]).assert_ok();
    for round in 0..3 {
        let _ = fs::remove_dir_all(p.store.join("v1/actions"));
        p.build("out").assert_code(2).assert_stderr_has("dotdot.tar");
        assert!(temps(&p.store).is_empty(), "round {round}: a refusal left {:?}", temps(&p.store));
    }
}
