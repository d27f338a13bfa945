//! Systems: `candidate deploy` of the ground-segment example (`recipes/ground.toml`,
//! `systems/ground.toml`) on real LXC, on an isolated bridge, tier by tier; `status`,
//! `undeploy`; refusals that leave nothing behind. The candidate is built once for the
//! module; every test deploys under its own name and removes it through a guard, even when
//! it panics.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fs_err as fs;
use serde_json::Value;

use super::{copy_project, run, with_store, Run};

const DIR: &str = "out/ground_1.0_amd64";

/// The example built once, in a folder of its own that lives as long as the test binary.
struct Project {
    root: PathBuf,
}

impl Project {
    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(&self.root, &self.store(), args))
    }

    /// `deploy DIR --system FILE --name NAME EXTRA…`, with a guard that undeploys `name`.
    fn deploy(&self, name: &str, system: &str, extra: &[&str]) -> (Run, Deployed<'_>) {
        self.deploy_arg(DIR, name, system, extra)
    }

    /// `deploy CANDIDATE --system FILE --name NAME EXTRA…`, with its guard.
    fn deploy_arg(&self, candidate: &str, name: &str, system: &str, extra: &[&str]) -> (Run, Deployed<'_>) {
        let guard = Deployed { project: self, name: name.to_owned() };
        let mut args = vec!["deploy", candidate, "--system", system, "--name", name];
        args.extend(extra);
        (self.cmd(&args), guard)
    }

    fn write(&self, rel: &str, text: &str) -> String {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        rel.to_owned()
    }

    fn deployment_dir(&self, name: &str) -> PathBuf {
        self.store().join("v1/deployments").join(name)
    }
}

/// Removes a deployment when dropped (also on a panic), if it is still there.
struct Deployed<'a> {
    project: &'a Project,
    name: String,
}

impl Drop for Deployed<'_> {
    fn drop(&mut self) {
        if self.project.deployment_dir(&self.name).exists() {
            let undeploy = self.project.cmd(&["undeploy", &self.name]);
            if !undeploy.ok() && !std::thread::panicking() {
                panic!("the guard could not undeploy `{}`\n{}", self.name, undeploy.describe());
            }
        }
    }
}

fn project() -> Option<&'static Project> {
    static PROJECT: OnceLock<Option<Project>> = OnceLock::new();
    PROJECT
        .get_or_init(|| {
            // The one helper for what a test needs: under CI a missing piece fails, elsewhere
            // it is a loud skip.
            if !(super::formats::lxc_available()
                && candidate::testing::root()
                && candidate::testing::file("/bin/busybox", "busybox-static"))
            {
                return None;
            }
            let root = tempfile::Builder::new().prefix("systems-").tempdir().unwrap().keep();
            remove_at_exit(&root);
            copy_project(&root, false);
            let p = Project { root };
            fs::create_dir_all(p.root.join("keys")).unwrap();
            for key in ["ci", "stranger"] {
                p.cmd(&["key", "generate", "--out", &format!("keys/{key}")]).assert_ok();
            }
            p.cmd(&["lock", "recipes/ground.toml"]).assert_ok();
            p.cmd(&["build", "recipes/ground.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
            Some(p)
        })
        .as_ref()
}

/// Removes the shared project when the test binary exits (a static is never dropped).
fn remove_at_exit(root: &Path) {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(root) = ROOT.get() {
            let _ = fs::remove_dir_all(root);
        }
    }
    ROOT.set(root.to_owned()).expect("set once");
    // SAFETY: registers a plain function, run once at exit.
    unsafe { libc::atexit(remove) };
}

/// Every network link's name on the machine.
fn links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_owned())
        .collect()
}

/// The record of a deployment, as `status NAME --json` gives it.
fn status(p: &Project, name: &str) -> Value {
    let s = p.cmd(&["status", name, "--json"]);
    s.assert_ok();
    serde_json::from_str(s.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()))
}

/// Asserts that nothing of deployment `name` is left: its folder, its bridge and veths (by
/// the names its record gave), its containers' processes and any mount under the store.
#[track_caller]
fn assert_gone(p: &Project, name: &str, record: Option<&Value>) {
    assert!(!p.deployment_dir(name).exists(), "the deployment folder of `{name}` is left");
    // Bridges and veths are named after this id of the deployment's folder.
    let id = candidate::digest::Digest::of(p.deployment_dir(name).as_os_str().as_encoded_bytes()).hex()[..8].to_owned();
    let left: Vec<String> = links().into_iter().filter(|l| l.contains(&id)).collect();
    assert!(left.is_empty(), "links of `{name}` left behind: {left:?}");
    if let Some(record) = record {
        let record = if record["deployment"].is_null() { record } else { &record["deployment"] };
        let mut ours = vec![record["bridge"].as_str().unwrap().to_owned()];
        ours.extend(record["nodes"].as_array().unwrap().iter().map(|n| n["veth"].as_str().unwrap().to_owned()));
        let left: Vec<String> = links().into_iter().filter(|l| ours.contains(l)).collect();
        assert!(left.is_empty(), "links left behind: {left:?}");
    }
    let store = p.store().to_string_lossy().into_owned();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&store), "a mount under the store is left:\n{mountinfo}");
    let dir = p.deployment_dir(name).to_string_lossy().into_owned();
    let procs: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(procs.is_empty(), "processes of `{name}` are left: {procs:?}");
}

/// PRIME and BACKUP in one tier, CLIENT after it; CLIENT started only once PRIME was ready;
/// every node runs. Returns the three nodes of `status --json`.
#[track_caller]
fn assert_started_in_tiers(record: &Value) -> (&Value, &Value, &Value) {
    let (prime, backup, client) = (node(record, "prime1"), node(record, "backup1"), node(record, "client1"));
    assert_eq!((prime["tier"].as_u64(), backup["tier"].as_u64(), client["tier"].as_u64()), (Some(0), Some(0), Some(1)));
    let ms = |n: &Value, k: &str| n[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {n}"));
    assert!(ms(client, "started_ms") >= ms(prime, "ready_ms"), "CLIENT started before PRIME was ready: {record}");
    assert!(ms(backup, "started_ms") < ms(prime, "ready_ms"), "BACKUP did not start with PRIME: {record}");
    for n in [prime, backup, client] {
        assert_eq!(n["state"], "RUNNING", "{record}");
    }
    (prime, backup, client)
}

fn node<'a>(record: &'a Value, name: &str) -> &'a Value {
    // `status --json`: each node's record with its container's state now.
    record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}: {record}"))
}

fn attach(record: &Value, node_name: &str, script: &str) -> std::process::Output {
    let d = &record["deployment"];
    Command::new("lxc-attach")
        .args(["-P", d["lxcpath"].as_str().unwrap(), "-n", node(record, node_name)["container"].as_str().unwrap()])
        .args(["--clear-env", "--set-var", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "--", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What one entry of a root filesystem is, for comparing: kind, mode, owner, size, mtime
/// (not of directories, which a running node writes into) and content or target.
fn entry_of_node(n: &candidate::tree::Node) -> String {
    use candidate::tree::Kind;
    let owner = format!("{:o} {}:{}", n.mode, n.uid, n.gid);
    match &n.kind {
        Kind::Directory => format!("dir {owner}"),
        Kind::File { size, content, .. } => {
            let bytes = content.read_all(*size).unwrap();
            format!("file {owner} {size} {} {}", n.mtime, super::sha256(&bytes))
        }
        Kind::Symlink { target } => format!("symlink {}:{} -> {target}", n.uid, n.gid),
        Kind::Whiteout => "whiteout".into(),
    }
}

fn entry_on_disk(path: &Path) -> String {
    let m = fs::symlink_metadata(path).unwrap();
    let owner = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
    if m.is_dir() {
        format!("dir {owner}")
    } else if m.file_type().is_symlink() {
        format!("symlink {}:{} -> {}", m.uid(), m.gid(), fs::read_link(path).unwrap().display())
    } else if m.is_file() {
        let bytes = fs::read(path).unwrap();
        format!("file {owner} {} {} {}", m.len(), m.mtime(), super::sha256(&bytes))
    } else {
        format!("special {owner}")
    }
}

/// Paths a running node may add to its image: its runtime's mounts, and what its services
/// write.
const RUNTIME: &[&str] = &["dev", "proc", "sys", "run", "tmp", "var/log", "srv/backup"];

fn runtime_path(rel: &str) -> bool {
    RUNTIME.iter().any(|r| rel.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// Every entry under `root` (read from the host through `/proc/PID/root`), by relative path,
/// not descending into the runtime's mounts.
fn read_back(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = if rel.is_empty() { root.join(".") } else { root.join(&rel) };
        out.insert(rel.clone(), entry_on_disk(&path));
        if ["dev", "proc", "sys"].contains(&rel.as_str()) || !fs::symlink_metadata(&path).unwrap().is_dir() {
            continue;
        }
        for entry in fs::read_dir(&path).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            stack.push(if rel.is_empty() { name } else { format!("{rel}/{name}") });
        }
    }
    out
}

/// The node's root filesystem as the plan says it must be: the candidate's rootfs, read
/// with our strict reader, plus the node's overlay and generated layers.
fn expected_tree(p: &Project, index: usize) -> candidate::tree::Tree {
    let store = candidate::store::Store::open(&p.store()).unwrap();
    let system = candidate::system::System::load(&p.root.join("systems/ground.toml")).unwrap();
    let manifest_bytes = fs::read(p.root.join(DIR).join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let id = candidate::digest::Digest::of(&manifest_bytes);
    let sde = manifest["source-date-epoch"].as_u64().unwrap();
    let plan = candidate::system::plan::plan(&store, &system, id, sde).unwrap();
    let plain = tempfile::tempfile().unwrap();
    let out = Command::new("zstd")
        .args(["-dc"])
        .arg(p.root.join(DIR).join("rootfs.tar.zst"))
        .stdout(plain.try_clone().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let rootfs = candidate::layer::read_tar("rootfs.tar", &Arc::new(plain), 0).unwrap();
    plan.node_tree(&rootfs, index).unwrap().full
}

#[test]
fn the_example_system_deploys_tier_by_tier_on_an_isolated_network() {
    let Some(p) = project() else { return };
    let before = links();
    let started = Instant::now();
    let (deploy, guard) = p.deploy("ground-a", "systems/ground.toml", &[]);
    deploy.assert_ok();
    eprintln!("deploy to all ready, 3 nodes: {:?}", started.elapsed());
    assert!(deploy.stdout.contains("READY  ground-a (3 node(s))"), "{}", deploy.describe());
    let record = status(p, "ground-a");
    let d = &record["deployment"];
    assert_eq!(d["phase"], "ready", "{record}");
    assert!(d["plan"].as_str().unwrap().starts_with("sha256:"));
    let manifest = fs::read(p.root.join(DIR).join("manifest.json")).unwrap();
    assert_eq!(d["candidate"], super::sha256(&manifest), "{record}");

    // PRIME and BACKUP in one tier, CLIENT after it; CLIENT started only once PRIME was ready.
    assert_started_in_tiers(&record);

    // CLIENT reaches PRIME by name over the bridge; no node has a route off it, and the host
    // has no address on the bridge.
    let out = attach(&record, "client1", "wget -q -O - http://prime1/value && ip route && hostname");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("42\n"), "{text}");
    assert!(!text.contains("default"), "a node has a default route:\n{text}");
    assert!(text.trim_end().ends_with("client1"), "{text}");
    let bridge = d["bridge"].as_str().unwrap();
    let addr = Command::new("ip").args(["-o", "addr", "show", "dev", bridge]).output().unwrap();
    assert!(addr.status.success());
    assert!(String::from_utf8_lossy(&addr.stdout).trim().is_empty(), "the bridge has an address");
    for (knob, want) in [("ipv4/conf/{}/forwarding", "0"), ("ipv6/conf/{}/disable_ipv6", "1")] {
        let path = format!("/proc/sys/net/{}", knob.replace("{}", bridge));
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), want, "{path}");
    }
    let listed = p.cmd(&["status", "--json"]);
    let listed: Value = serde_json::from_str(listed.assert_ok().stdout.trim()).unwrap();
    assert!(listed.as_array().unwrap().iter().any(|d| d["name"] == "ground-a"), "{listed}");
    let ours: Vec<String> = links().into_iter().filter(|l| !before.contains(l)).collect();
    assert!(ours.iter().any(|l| l == bridge), "{ours:?}");

    // Homogeneous nodes: each one's root filesystem, read back from the running container,
    // is the candidate's plus exactly its overlay and generated files.
    for (index, name) in ["prime1", "backup1", "client1"].into_iter().enumerate() {
        let pid = Command::new("lxc-info")
            .args(["-P", d["lxcpath"].as_str().unwrap(), "-n", node(&record, name)["container"].as_str().unwrap()])
            .args(["-p", "-H"])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
        let actual = read_back(&PathBuf::from(format!("/proc/{pid}/root")));
        let expected: BTreeMap<String, String> =
            expected_tree(p, index).iter().map(|(path, n)| (path.clone(), entry_of_node(n))).collect();
        for (path, want) in &expected {
            if runtime_path(path) {
                continue;
            }
            assert_eq!(actual.get(path), Some(want), "node {name}: `/{path}` differs from the plan");
        }
        let extra: Vec<&String> = actual
            .keys()
            .filter(|k| !expected.contains_key(*k) && !runtime_path(k) && !RUNTIME.contains(&k.as_str()))
            .collect();
        assert!(extra.is_empty(), "node {name} has entries the plan does not: {extra:?}");
        assert!(expected.get("etc/hostname").unwrap().ends_with(&super::sha256(format!("{name}\n").as_bytes())));
        assert!(expected.len() > 30 && expected.contains_key("etc/candidate/system.json"), "{expected:?}");
        assert_eq!(expected.contains_key("srv/www/value"), name == "prime1", "only PRIME has its overlay");
    }

    // The overlay clones share the unpacked candidate: each node's own folder holds only its delta.
    let lxcpath = PathBuf::from(d["lxcpath"].as_str().unwrap());
    let size = |dir: &Path| -> u64 {
        super::walk(dir).iter().filter_map(|p| fs::symlink_metadata(p).ok()).map(|m| m.len()).sum()
    };
    let base = size(&lxcpath.join(d["base"].as_str().unwrap()));
    for name in ["prime1", "backup1", "client1"] {
        let own = size(&lxcpath.join(node(&record, name)["container"].as_str().unwrap()));
        assert!(own * 20 < base, "node {name} holds {own} bytes of its own against the base's {base}");
    }

    // The same candidate and system file give the same plan from another path and store.
    let elsewhere = tempfile::tempdir().unwrap();
    super::copy_project(&elsewhere.path().join("deep/er"), true);
    let other_store = candidate::store::Store::open(&elsewhere.path().join("other-store")).unwrap();
    let system = candidate::system::System::load(&elsewhere.path().join("deep/er/systems/ground.toml")).unwrap();
    let manifest_value: Value = serde_json::from_slice(&manifest).unwrap();
    let sde = manifest_value["source-date-epoch"].as_u64().unwrap();
    let id = candidate::digest::Digest::of(&manifest);
    let replanned = candidate::system::plan::plan(&other_store, &system, id, sde).unwrap();
    assert_eq!(d["plan"], replanned.digest.to_string(), "another path and store planned differently");

    // A second deployment under the same name is refused; `undeploy` removes everything.
    let (again, _) = (p.cmd(&["deploy", DIR, "--system", "systems/ground.toml", "--name", "ground-a"]), ());
    again.assert_code(2).assert_stderr_has("a deployment named `ground-a` already exists");
    let undeploy = p.cmd(&["undeploy", "ground-a"]);
    undeploy.assert_ok();
    assert!(undeploy.stdout.contains("REMOVED  ground-a (3 node(s)"), "{}", undeploy.describe());
    assert_gone(p, "ground-a", Some(&record));
    drop(guard);
    p.cmd(&["status", "ground-a"]).assert_code(2).assert_stderr_has("no deployment named `ground-a`");
}

#[test]
fn bad_system_files_are_refused_before_anything_is_made() {
    let Some(p) = project() else { return };
    let base = fs::read_to_string(p.root.join("systems/ground.toml")).unwrap();
    for (name, from, to, culprit) in [
        (
            "cycle",
            "[role.backup]\n",
            "[role.backup]\nafter = [\"client\"]\n[role.x]\nafter = [\"x\"]\n",
            "`after` has a cycle: x -> x",
        ),
        ("unknown", "role = \"backup\"", "role = \"standby\"", "node `backup1` has the unknown role `standby`"),
        ("duplicate", "name = \"client1\"", "name = \"prime1\"", "node name `prime1` is used twice"),
        ("key", "[role.backup]\n", "[role.backup]\nreadiness = \"true\"\n", "unknown field `readiness`"),
    ] {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{name}");
        let file = p.write(&format!("systems/bad-{name}.toml"), &text);
        let (deploy, _guard) = p.deploy(&format!("bad-{name}"), &file, &[]);
        deploy.assert_code(2).assert_stderr_has(culprit).assert_stderr_has(&file);
        assert_gone(p, &format!("bad-{name}"), None);
    }
}

#[test]
fn a_probe_that_never_succeeds_fails_at_its_timeout_and_leaves_nothing() {
    let Some(p) = project() else { return };
    let text = fs::read_to_string(p.root.join("systems/ground.toml")).unwrap().replace(
        "ready = \"test -s /srv/backup/value\"\nready-timeout = 60",
        // 10 s, not less: on a loaded machine one `lxc-attach` alone can take seconds. Each
        // attempt takes 3 s, so the last one is cut short by the deadline and prints nothing:
        // the message must carry what the last attempt that ran to its end printed.
        "ready = \"echo waiting for godot; sleep 3; false\"\nready-timeout = 10",
    );
    let file = p.write("systems/never.toml", &text);
    let started = Instant::now();
    let (deploy, _guard) = p.deploy("never", &file, &[]);
    deploy.assert_code(2);
    deploy
        .assert_stderr_has("node `backup1` was not ready within 10 s")
        .assert_stderr_has("`echo waiting for godot; sleep 3; false`")
        .assert_stderr_has("last gave exit code 1")
        .assert_stderr_has("| waiting for godot");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert_gone(p, "never", None);

    // With `--keep`, what was made stays for a look, and `undeploy` removes it.
    let (kept, _guard) = p.deploy("never-kept", &file, &["--keep"]);
    kept.assert_code(2).assert_stderr_has("node `backup1` was not ready");
    let record = status(p, "never-kept");
    assert_eq!(record["deployment"]["phase"], "failed", "{record}");
    assert_eq!(node(&record, "prime1")["state"], "RUNNING", "{record}");
    p.cmd(&["undeploy", "never-kept"]).assert_ok();
    assert_gone(p, "never-kept", Some(&record));
}

#[test]
fn a_builder_killed_mid_deploy_is_cleaned_up_by_undeploy() {
    let Some(p) = project() else { return };
    let text = fs::read_to_string(p.root.join("systems/ground.toml"))
        .unwrap()
        .replace("ready = \"test -s /srv/backup/value\"\nready-timeout = 60", "ready = \"false\"\nready-timeout = 600");
    let file = p.write("systems/killed.toml", &text);
    let guard = Deployed { project: p, name: "killed".into() };
    let mut builder = with_store(&p.root, &p.store(), ["deploy", DIR, "--system", &file, "--name", "killed"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until its first tier runs, then kill it where no cleanup can run.
    let record_path = p.deployment_dir("killed").join("deployment.json");
    let waited = Instant::now();
    loop {
        let phase = fs::read(&record_path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if phase.is_some_and(|r| r["nodes"][0]["started_ms"].is_u64()) {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "the deployment never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    builder.kill().unwrap();
    builder.wait().unwrap();
    let record = status(p, "killed");
    assert_eq!(record["deployment"]["phase"], "starting", "{record}");
    assert_eq!(node(&record, "prime1")["state"], "RUNNING", "the killed builder's node is not running: {record}");
    let undeploy = p.cmd(&["undeploy", "killed"]);
    undeploy.assert_ok();
    assert_gone(p, "killed", Some(&record));
    drop(guard);
}

#[test]
fn a_candidate_that_fails_verification_is_not_deployed() {
    let Some(p) = project() else { return };
    // A policy trusting only a key that never signed the candidate.
    let policy = p.write("policy-stranger.toml", "[verify]\nkeys = [\"keys/stranger.pub\"]\n");
    let deploy =
        p.cmd(&["--policy", &policy, "deploy", DIR, "--system", "systems/ground.toml", "--name", "unverified"]);
    deploy.assert_code(1).assert_stderr_has("fails verification, so it is not deployed");
    assert_gone(p, "unverified", None);
    // The key that signed it lets it through.
    let policy = p.write("policy-ci.toml", "[verify]\nkeys = [\"keys/ci.pub\"]\n");
    let (ok, _guard) = p.deploy("verified", "systems/ground.toml", &["--policy", &policy]);
    ok.assert_ok().assert_stderr_has("Verified");
}

/// Parses a JUnit XML file with `junitparser` (PyPI), as a CI server would read it: one line
/// per test case, `SUITE|CLASSNAME|NAME|passed` or `…|failed: MESSAGE`. `None` (a skip, and
/// under CI a failure) without it.
fn junit_cases(path: &Path) -> Option<Vec<String>> {
    let script = "import sys\nfrom junitparser import JUnitXml, Failure\n\
                  for suite in JUnitXml.fromfile(sys.argv[1]):\n\
                  \x20   for case in suite:\n\
                  \x20       failed = [r for r in case.result if isinstance(r, Failure)]\n\
                  \x20       verdict = 'failed: ' + failed[0].message if failed else 'passed'\n\
                  \x20       print(f'{suite.name}|{case.classname}|{case.name}|{verdict}')\n";
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named 'junitparser'") {
        candidate::testing::missing("the Python module `junitparser`", "python3 -m pip install junitparser");
        return None;
    }
    assert!(
        out.status.success(),
        "junitparser cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

fn statement_of(path: &Path) -> Value {
    use base64::Engine as _;
    let envelope: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn system_qualification_reports_per_node_attests_the_plan_and_gates_promotion() {
    let Some(p) = project() else { return };
    let policy = p.write(
        "policy-system.toml",
        "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.qualified]\nkeys = [\"keys/ci.pub\"]\n\
         system-tests = [\"systems/ground.toml\"]\n",
    );
    let attestation = p.root.join("out/ground_1.0_amd64.ground.system-test.intoto.json");
    // Without a system test, the channel refuses the candidate.
    let promote = p.cmd(&["--policy", &policy, "promote", DIR, "--channel", "qualified", "--key", "keys/ci.key"]);
    promote.assert_code(1).assert_stderr_has("a PASSED system test of").assert_stderr_has("none found");

    let t = p.cmd(&[
        "--policy",
        &policy,
        "test",
        DIR,
        "--system",
        "systems/ground.toml",
        "--report",
        "report-pass",
        "--sign",
        "keys/ci.key",
    ]);
    t.assert_ok();
    for line in [
        "PASSED  prime1/serves.sh  prime",
        "PASSED  backup1/backup.sh  backup",
        "PASSED  client1/reaches-prime.sh  client",
        "PASSED  3 of 3 test(s) of system ground",
    ] {
        assert!(t.stdout.contains(line), "{line}\n{}", t.describe());
    }
    // Per-node reports: each script's output, LXC's and the probe's logs, the node's own logs.
    let report = p.root.join("report-pass");
    let log = fs::read_to_string(report.join("client1/reaches-prime.sh.log")).unwrap();
    assert!(log.contains("client client1 reached prime1 by name"), "{log}");
    assert!(report.join("prime1/lxc.log").is_file() && report.join("backup1/probe.log").is_file());
    let backup_log = fs::read_to_string(report.join("backup1/var-log/ground.log")).unwrap();
    assert!(backup_log.contains("backup of prime1 ready"), "{backup_log}");
    let plan: Value = serde_json::from_slice(&fs::read(report.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["tiers"], serde_json::json!([["prime1", "backup1"], ["client1"]]));
    // JUnit XML, read by a real consumer.
    if let Some(cases) = junit_cases(&report.join("junit.xml")) {
        assert_eq!(
            cases,
            [
                "prime1 (prime)|ground.prime1|serves.sh|passed",
                "backup1 (backup)|ground.backup1|backup.sh|passed",
                "client1 (client)|ground.client1|reaches-prime.sh|passed",
            ]
        );
    }
    // The attestation is about the candidate and the plan; `verify` accepts it, `promote`
    // requires it.
    let statement = statement_of(&attestation);
    let subjects: Vec<&str> =
        statement["subject"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["manifest.json", "plan/ground"]);
    let plan_digest = statement["subject"][1]["digest"]["sha256"].as_str().unwrap();
    assert!(t.stdout.contains(&format!("plan sha256:{plan_digest}")), "{}", t.describe());
    assert_eq!(statement["predicate"]["result"], "PASSED");
    assert_eq!(statement["predicate"]["configuration"][2]["annotations"]["node"], "client1");
    assert_eq!(statement["predicate"]["configuration"][2]["annotations"]["kind"], "system-test");
    assert_eq!(statement["predicate"]["configuration"][2]["annotations"]["runtime"], "lxc");
    let verify = p.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    verify.assert_ok();
    assert!(verify.stdout.contains("ground.system-test.intoto.json: test result PASSED"), "{}", verify.describe());
    p.cmd(&["--policy", &policy, "promote", DIR, "--channel", "qualified", "--key", "keys/ci.key"]).assert_ok();
    assert_no_test_deployment(p, "report-pass");
    // What a channel holds deploys by its name.
    let (latest, _guard) = p.deploy_arg("qualified@latest", "latest", "systems/ground.toml", &["--policy", &policy]);
    latest.assert_ok().assert_stderr_has("Verified");
    assert!(latest.stdout.contains(&format!("plan sha256:{plan_digest}")), "{}", latest.describe());
    p.cmd(&["undeploy", "latest"]).assert_ok();

    // A failing system test: FAILED overall, the node named, exit 1; the attestation says
    // FAILED and the channel refuses it.
    let failing = fs::read_to_string(p.root.join("systems/ground.toml"))
        .unwrap()
        .replace("ground/tests/reaches-prime.sh", "ground/tests/fails.sh");
    p.write("systems/ground/tests/fails.sh", "echo looking for prime9\nwget -q -O - http://prime9/value\n");
    let file = p.write("systems/ground-failing.toml", &failing);
    let t = p.cmd(&["test", DIR, "--system", &file, "--report", "report-fail", "--sign", "keys/ci.key", "--json"]);
    t.assert_code(1).assert_stderr_has("system `ground` failed qualification: client1/fails.sh");
    let doc: Value = serde_json::from_str(t.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", t.describe()));
    assert_eq!(doc["result"], "FAILED", "{doc}");
    assert_eq!(doc["runs"][2]["node"], "client1", "{doc}");
    assert_eq!(doc["runs"][2]["passed"], false, "{doc}");
    if let Some(cases) = junit_cases(&p.root.join("report-fail/junit.xml")) {
        assert_eq!(cases[2], "client1 (client)|ground.client1|fails.sh|failed: exit code 1", "{cases:?}");
    }
    assert_eq!(statement_of(&attestation)["predicate"]["failedTests"], serde_json::json!(["client1/fails.sh"]));
    let promote = p.cmd(&["--policy", &policy, "promote", DIR, "--channel", "qualified", "--key", "keys/ci.key"]);
    promote.assert_code(1).assert_stderr_has("a PASSED system test of");
    assert_no_test_deployment(p, "report-fail");

    // A node that never becomes ready fails the qualification the same way: its probe is
    // its failing test, and its logs are collected.
    let never = fs::read_to_string(p.root.join("systems/ground.toml")).unwrap().replace(
        "ready = \"test -s /srv/backup/value\"\nready-timeout = 60",
        // 10 s, not 2: on a loaded machine one `lxc-attach` can take seconds, and the report
        // must carry what the probe printed.
        "ready = \"echo not yet; false\"\nready-timeout = 10",
    );
    let file = p.write("systems/ground-never.toml", &never);
    let t = p.cmd(&["test", DIR, "--system", &file, "--report", "report-never"]);
    t.assert_code(1).assert_stderr_has("system `ground` failed qualification: backup1/ready");
    assert!(t.stdout.contains("FAILED  backup1/ready  backup"), "{}", t.describe());
    assert!(t.stdout.contains("| not yet"), "{}", t.describe());
    if let Some(cases) = junit_cases(&p.root.join("report-never/junit.xml")) {
        assert_eq!(cases, ["backup1 (backup)|ground.backup1|ready|failed: killed at the time limit"]);
    }
    assert!(p.root.join("report-never/backup1/probe.log").is_file());
    assert_no_test_deployment(p, "report-never");
}

/// The deployment a `test --system` made (named in its report) is gone, with its links.
#[track_caller]
fn assert_no_test_deployment(p: &Project, report: &str) {
    let record: Value =
        serde_json::from_slice(&fs::read(p.root.join(report).join("deployment.json")).unwrap()).unwrap();
    assert_gone(p, record["name"].as_str().unwrap(), Some(&record));
}

#[test]
fn an_interrupted_or_killed_system_test_leaves_nothing_running() {
    let Some(p) = project() else { return };
    let hanging = fs::read_to_string(p.root.join("systems/ground.toml"))
        .unwrap()
        .replace("ground/tests/reaches-prime.sh", "ground/tests/hangs.sh")
        .replace("name = \"ground\"", "name = \"hanging\"");
    p.write("systems/ground/tests/hangs.sh", "sleep 1009\n");
    let file = p.write("systems/hanging.toml", &hanging);
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let mut command = with_store(&p.root, &p.store(), ["test", DIR, "--system", &file, "--report", "report-hang"]);
        let mut builder =
            super::interruptible(&mut command).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let name = format!("test-{}-", builder.id());
        let deployments = p.store().join("v1/deployments");
        let find = || -> Option<PathBuf> {
            fs::read_dir(&deployments)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|d| d.file_name().unwrap().to_string_lossy().starts_with(&name))
        };
        // Wait until the hanging system test runs on a ready deployment.
        let waited = Instant::now();
        let dir = loop {
            if let Some(dir) = find() {
                let record =
                    fs::read(dir.join("deployment.json")).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                if record.is_some_and(|r| r["phase"] == "ready") {
                    break dir;
                }
            }
            assert!(waited.elapsed() < Duration::from_secs(60), "the system test never got going");
            std::thread::sleep(Duration::from_millis(100));
        };
        let record: Value = serde_json::from_slice(&fs::read(dir.join("deployment.json")).unwrap()).unwrap();
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(builder.id() as i32, signal) };
        builder.wait().unwrap();
        let killed = Instant::now();
        while dir.exists() {
            assert!(killed.elapsed() < Duration::from_secs(30), "signal {signal}: the deployment outlived its builder");
            std::thread::sleep(Duration::from_millis(100));
        }
        let ours = [record["bridge"].as_str().unwrap().to_owned()];
        assert!(!links().iter().any(|l| ours.contains(l)), "signal {signal}: the bridge outlived the builder");
        let sleeping = fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x001009\x00"));
        assert!(!sleeping, "signal {signal}: the hanging test outlived its node");
    }
}

/// A private LXD daemon (`LXD_DIR` of its own, a `dir` pool, no network), stopped by its PID
/// and its folder removed when dropped, also on a panic.
pub struct LxdDaemon {
    pub dir: PathBuf,
    child: std::process::Child,
}

impl LxdDaemon {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// [`LxdDaemon::start`] with more environment for the daemon (`SSL_CERT_FILE`, for an
    /// image server with a private CA).
    pub fn start_with_env(env: &[(&str, &Path)]) -> Self {
        // Short: the socket's path must fit a `sockaddr_un`.
        let dir = tempfile::Builder::new().prefix("lxd-").tempdir_in("/tmp").unwrap().keep();
        let log = fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new("lxd")
            .args(["--group", "root"])
            .envs(env.iter().copied())
            .env("LXD_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap().into_parts().0)
            .stderr(log.into_parts().0)
            .spawn()
            .expect("cannot start `lxd`");
        let daemon = LxdDaemon { dir, child };
        let ready = daemon.lxd(&["waitready", "--timeout", "60"]);
        assert!(ready.status.success(), "lxd did not become ready: {}", daemon.log());
        let preseed = "storage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root: {path: /, pool: default, type: disk}\n";
        let mut init = Command::new("lxd")
            .args(["init", "--preseed"])
            .env("LXD_DIR", &daemon.dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut init.stdin.take().unwrap(), preseed.as_bytes()).unwrap();
        assert!(init.wait().unwrap().success(), "lxd init --preseed failed: {}", daemon.log());
        daemon
    }

    fn lxd(&self, args: &[&str]) -> std::process::Output {
        Command::new("lxd").args(args).env("LXD_DIR", &self.dir).stdin(Stdio::null()).output().unwrap()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// `lxc` (the LXD client) against this daemon.
    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("lxc").args(args).env("LXD_DIR", &self.dir).stdin(Stdio::null()).output().unwrap()
    }
}

impl Drop for LxdDaemon {
    fn drop(&mut self) {
        let _ = self.lxd(&["shutdown", "--timeout", "30"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // LXD leaves its `shmounts` and `devlxd` tmpfs mounted: unmount what is under its
        // folder, deepest first, before removing it.
        let dir = self.dir.to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> =
            mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&dir)).collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").arg(mount).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.dir.with_extension("log"));
    }
}

#[test]
fn the_example_system_deploys_and_qualifies_on_lxd_through_its_api() {
    let Some(p) = project() else { return };
    if !candidate::testing::tool("lxd", "lxd") || !candidate::testing::tool("lxc", "lxd-client") {
        return;
    }
    let daemon = LxdDaemon::start();
    let lxd_dir = daemon.dir.to_string_lossy().into_owned();
    let on_lxd = |args: &[&str]| {
        let mut cmd = with_store(&p.root, &p.store(), args);
        cmd.env("LXD_DIR", &lxd_dir);
        run(cmd)
    };
    let instances = || {
        let out = daemon.client(&["list", "--format", "csv", "-c", "n"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let images = || String::from_utf8_lossy(&daemon.client(&["image", "list", "--format", "csv"]).stdout).into_owned();
    let guard = Deployed { project: p, name: "ground-lxd".into() };
    let started = Instant::now();
    let deploy =
        on_lxd(&["deploy", DIR, "--system", "systems/ground.toml", "--name", "ground-lxd", "--runtime", "lxd"]);
    deploy.assert_ok();
    eprintln!("deploy on LXD to all ready, 3 nodes: {:?}", started.elapsed());
    assert!(deploy.stdout.contains("READY  ground-lxd (3 node(s))"), "{}", deploy.describe());
    let record = status(p, "ground-lxd");
    let d = &record["deployment"];
    assert_eq!((d["phase"].as_str(), d["runtime"].as_str()), (Some("ready"), Some("lxd")), "{record}");
    let (prime, backup, client) = assert_started_in_tiers(&record);
    let mut names = instances();
    names.sort();
    let mut expected: Vec<String> =
        [prime, backup, client].iter().map(|n| n["container"].as_str().unwrap().to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected, "LXD's instances are not the deployment's nodes");
    let fingerprint = d["lxd"]["image"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    assert!(images().contains(&fingerprint[..12]), "the image {fingerprint} is not in LXD:\n{}", images());

    // CLIENT reaches PRIME by name over the deployment's own bridge, with no route off it.
    let out = daemon.client(&[
        "exec",
        client["container"].as_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "wget -q -O - http://prime1/value && ip route && hostname && cat /run/value",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("42\n"), "{text}");
    assert!(!text.contains("default"), "a node has a default route:\n{text}");
    assert!(text.contains(&format!("dev eth0 scope link  src {}", client["address"].as_str().unwrap())), "{text}");
    assert!(text.trim_end().ends_with("client1\n42"), "{text}");
    let bridge = d["bridge"].as_str().unwrap();
    let host = Command::new("ip").args(["-o", "addr", "show", "dev", bridge]).output().unwrap();
    assert!(String::from_utf8_lossy(&host.stdout).trim().is_empty(), "the host has an address on {bridge}");

    // `undeploy` removes the instances, the image, the bridge and the state.
    on_lxd(&["undeploy", "ground-lxd"]).assert_ok();
    assert_gone(p, "ground-lxd", Some(&record));
    drop(guard);
    assert!(instances().is_empty(), "instances left: {:?}", instances());
    assert!(!images().contains(&fingerprint[..12]), "the image is left:\n{}", images());

    // `test --system --runtime lxd`: a fresh deployment, every test, torn down.
    let report = "out/ground-lxd.test";
    let tested = on_lxd(&[
        "test",
        DIR,
        "--system",
        "systems/ground.toml",
        "--runtime",
        "lxd",
        "--report",
        report,
        "--sign",
        "keys/ci.key",
    ]);
    tested.assert_ok();
    // Its attestation says the nodes ran on LXD (it once said `lxc` whatever ran them).
    let attestation = p.root.join("out/ground_1.0_amd64.ground.system-test.intoto.json");
    let statement = statement_of(&attestation);
    assert_eq!(statement["predicate"]["configuration"][0]["annotations"]["runtime"], "lxd");
    assert!(tested.stdout.contains("PASSED  3 of 3 test(s) of system ground"), "{}", tested.describe());
    assert!(tested.stdout.contains("PASSED  client1/reaches-prime.sh"), "{}", tested.describe());
    let junit = fs::read_to_string(p.root.join(report).join("junit.xml")).unwrap();
    assert!(junit.contains("reaches-prime.sh"), "{junit}");
    assert!(instances().is_empty(), "instances left by `test --system`: {:?}", instances());
    assert!(!images().contains(&fingerprint[..12]), "the image is left by `test --system`:\n{}", images());
    // Its bridge and veths, by the names its record in the report gives (other tests of this
    // module make links of their own meanwhile).
    let tested_record: Value =
        serde_json::from_slice(&fs::read(p.root.join(report).join("deployment.json")).unwrap()).unwrap();
    let mut ours = vec![tested_record["bridge"].as_str().unwrap().to_owned()];
    ours.extend(tested_record["nodes"].as_array().unwrap().iter().map(|n| n["veth"].as_str().unwrap().to_owned()));
    let left: Vec<String> = links().into_iter().filter(|l| ours.contains(l)).collect();
    assert!(left.is_empty(), "links of `test --system` left behind: {left:?}");
    drop(daemon);
}
