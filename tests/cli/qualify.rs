//! Qualification: `candidate test` runs scripts in fresh sandboxed instances of a candidate,
//! attests the result, and `verify` and `promote` read the attestation. The example image
//! has no real binaries, so these tests build it with one more layer: the host's static
//! busybox as `/usr/bin/sh` and a few applets.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fs_err as fs;

use super::{copy_project, run, with_store, Run};

const DIR: &str = "out/example_1.0_amd64";
const ATTESTATION: &str = "out/example_1.0_amd64.test.intoto.json";
const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// Whether the sandbox can run here (root and a static busybox); `false` is a skip, and
/// under CI a failure.
fn sandbox_available() -> bool {
    candidate::testing::root() && candidate::testing::file("/bin/busybox", "busybox-static")
}

/// A copy of the project in a temporary folder, or `None` (a skip) without the sandbox.
fn project_copy() -> Option<tempfile::TempDir> {
    if !sandbox_available() {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    copy_project(t.path(), false);
    Some(t)
}

/// The example project plus a busybox layer, built and signed by `ci`, with a policy whose
/// `qualified` channel requires a passing test attestation.
struct Qualify {
    root: tempfile::TempDir,
}

impl Qualify {
    fn new() -> Option<Self> {
        let q = Qualify { root: project_copy()? };
        fs::create_dir_all(q.path().join("keys")).unwrap();
        for key in ["ci", "stranger"] {
            q.cmd(&["key", "generate", "--out", &format!("keys/{key}")]).assert_ok();
        }
        fs::write(
            q.path().join("channels.toml"),
            format!(
                "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.qualified]\nkeys = [\"keys/ci.pub\"]\n\
                 attestations = [\"{TEST_RESULT}\"]\n"
            ),
        )
        .unwrap();
        let applets = ["sh", "cat", "echo", "grep", "hostname", "ls", "sleep", "test", "wc", "true", "false"];
        let links: Vec<String> =
            applets.iter().map(|a| format!("{{ path = \"/usr/bin/{a}\", target = \"busybox\" }}")).collect();
        let recipe = q.path().join("recipes/example.toml");
        let mut text = fs::read_to_string(&recipe).unwrap();
        text.push_str(&format!(
            "\n[[layer]]\nname = \"busybox\"\nfiles = [{{ from = \"/bin/busybox\", to = \"/usr/bin/busybox\", mode = \"0755\" }}]\n\
             symlinks = [{}]\n",
            links.join(", ")
        ));
        fs::write(&recipe, text).unwrap();
        q.cmd(&["lock", "recipes/example.toml"]).assert_ok();
        q.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
        Some(q)
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    fn script(&self, name: &str, body: &str) -> String {
        fs::create_dir_all(self.path().join("scripts")).unwrap();
        fs::write(self.path().join("scripts").join(name), body).unwrap();
        format!("scripts/{name}")
    }

    /// `candidate test DIR --script S… EXTRA…`.
    fn test(&self, scripts: &[&str], extra: &[&str]) -> Run {
        let mut args = vec!["test", DIR];
        for s in scripts {
            args.extend(["--script", s]);
        }
        args.extend(extra);
        self.cmd(&args)
    }

    fn statement(&self) -> serde_json::Value {
        use base64::Engine as _;
        let envelope: serde_json::Value =
            serde_json::from_slice(&fs::read(self.path().join(ATTESTATION)).unwrap()).unwrap();
        let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    /// Nothing of a run is left: no instance or script folder in the store's `tmp/`, and no
    /// mount of this test process under it.
    #[track_caller]
    fn assert_torn_down(&self) {
        let tmp = self.path().join("store/v1/tmp");
        let left: Vec<PathBuf> =
            fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        assert!(left.is_empty(), "instances left behind: {left:?}");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.path().to_string_lossy().into_owned();
        assert!(!mountinfo.contains(&root), "a mount under the test's folder leaked to the host:\n{mountinfo}");
    }
}

/// Pids of processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<String> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_passing_script_is_attested_verified_and_promotable() {
    let Some(q) = Qualify::new() else { return };
    // Everything this script checks is what the sandbox promises; any failure exits non-zero.
    let host_dir = q.path().display().to_string();
    let script = q.script(
        "isolation.sh",
        &format!(
            "set -e\n\
             echo \"pid $$\"\n\
             test \"$$\" -le 3\n\
             test \"$(hostname)\" = candidate-test\n\
             cat /proc/net/dev\n\
             test \"$(grep -c : /proc/net/dev)\" = 1\n\
             grep -q 'lo:' /proc/net/dev\n\
             test ! -e '{host_dir}'\n\
             test ! -e '{host_dir}/store'\n\
             test \"$SOURCE_DATE_EPOCH\" -gt 0\n\
             test \"$LC_ALL\" = C.UTF-8\n\
             test \"$HOME\" = /root\n\
             if echo tamper >> /run/candidate/isolation.sh; then exit 1; fi\n\
             echo ok > /tmp/scratch\n\
             test -c /dev/null\n\
             test -x /usr/bin/hello\n\
             echo all good\n"
        ),
    );
    let started = Instant::now();
    let t = q.test(&[&script], &["--sign", "keys/ci.key"]);
    t.assert_ok();
    eprintln!("one script in a fresh instance: {:?}", started.elapsed());
    assert!(t.stdout.contains("PASSED  isolation.sh  exit code 0"), "{}", t.describe());
    assert!(t.stdout.contains("PASSED  1 of 1 script(s)"), "{}", t.describe());
    q.assert_torn_down();

    let statement = q.statement();
    let predicate = &statement["predicate"];
    assert_eq!(statement["predicateType"], TEST_RESULT);
    assert_eq!(predicate["result"], "PASSED");
    assert_eq!(predicate["passedTests"], serde_json::json!(["isolation.sh"]));
    let digest = candidate::digest::Digest::of(&fs::read(q.path().join(&script)).unwrap()).hex();
    assert_eq!(predicate["configuration"][0]["digest"]["sha256"], digest.as_str());
    assert_eq!(predicate["configuration"][0]["annotations"]["runtime"], "sandbox");
    assert!(predicate["configuration"][0]["annotations"]["output"].as_str().unwrap().ends_with("all good"));
    let manifest_id = super::sha256(&fs::read(q.path().join(DIR).join("manifest.json")).unwrap());
    let names_candidate = statement["subject"].as_array().unwrap().iter().any(|s| {
        s["name"] == "manifest.json"
            && Some(s["digest"]["sha256"].as_str().unwrap()) == manifest_id.strip_prefix("sha256:")
    });
    assert!(names_candidate, "{statement}");

    let verify = q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    verify.assert_ok();
    assert!(
        verify.stdout.contains("ok      attestation example_1.0_amd64.test.intoto.json: test result PASSED"),
        "{}",
        verify.describe()
    );
    q.cmd(&["promote", DIR, "--channel", "qualified", "--key", "keys/ci.key"]).assert_ok();

    // An attestation by a key `verify` does not trust is a failure of verification.
    q.test(&[&script], &["--sign", "keys/stranger.key"]).assert_ok();
    let verify = q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    verify.assert_code(1);
    assert!(verify.stdout.contains("FAILED  attestation example_1.0_amd64.test.intoto.json"), "{}", verify.describe());
    q.assert_torn_down();

    // One about another candidate (made with openssl, as release.rs does) is a failure too.
    q.test(&[&script], &["--sign", "keys/ci.key"]).assert_ok();
    q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]).assert_ok();
    super::release::write_test_attestation(q.path(), &format!("sha256:{}", "0".repeat(64)), "PASSED");
    let verify = q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    verify.assert_code(1);
    assert!(
        verify
            .stdout
            .contains("FAILED  attestation example_1.0_amd64.test-result.intoto.json: it is not about this candidate"),
        "{}",
        verify.describe()
    );
}

#[test]
fn an_image_without_a_shell_is_an_error() {
    // The example alone: its `/bin/sh` (the fixture archive's dash) is not a real program.
    let Some(t) = project_copy() else { return };
    let store = t.path().join("store");
    run(with_store(t.path(), &store, ["build", "recipes/example.toml", "--out", "out"])).assert_ok();
    fs::write(t.path().join("check.sh"), "true\n").unwrap();
    let test = run(with_store(t.path(), &store, ["test", DIR, "--script", "check.sh"]));
    test.assert_code(2).assert_stderr_has("no usable `/bin/sh`").assert_stderr_has("check.sh");
    let left = fs::read_dir(store.join("v1/tmp")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    assert_eq!(left, 0, "an instance was left behind");
}

#[test]
fn a_failing_script_is_attested_failed_and_refused() {
    let Some(q) = Qualify::new() else { return };
    let pass = q.script("pass.sh", "true\n");
    let fail = q.script("fail.sh", "echo first line\necho broken >&2\nexit 3\n");
    let t = q.test(&[&pass, &fail], &["--sign", "keys/ci.key"]);
    t.assert_code(1);
    assert!(t.stdout.contains("PASSED  pass.sh"), "{}", t.describe());
    assert!(t.stdout.contains("FAILED  fail.sh  exit code 3"), "{}", t.describe());
    assert!(t.stdout.contains("| broken"), "the failing script's last lines are shown\n{}", t.describe());
    assert!(t.stdout.contains("FAILED  1 of 2 script(s)"), "{}", t.describe());
    q.assert_torn_down();

    let predicate = q.statement()["predicate"].clone();
    assert_eq!(predicate["result"], "FAILED");
    assert_eq!(predicate["passedTests"], serde_json::json!(["pass.sh"]));
    assert_eq!(predicate["failedTests"], serde_json::json!(["fail.sh"]));
    assert_eq!(predicate["configuration"][1]["annotations"]["exitCode"], 3);

    // `--json`: the same runs as one document, from the same values as the lines.
    let j = q.test(&[&pass, &fail], &["--json"]);
    j.assert_code(1);
    let doc: serde_json::Value =
        serde_json::from_str(j.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", j.describe()));
    assert_eq!(doc["result"], "FAILED", "{doc}");
    assert_eq!(doc["runtime"], "sandbox", "{doc}");
    assert!(doc["candidate"].as_str().unwrap().starts_with("sha256:"), "{doc}");
    assert_eq!(doc["scripts"][0]["name"], "pass.sh", "{doc}");
    assert_eq!(doc["scripts"][0]["passed"], true, "{doc}");
    assert_eq!(doc["scripts"][1]["name"], "fail.sh", "{doc}");
    assert_eq!(doc["scripts"][1]["exit_code"], 3, "{doc}");
    assert_eq!(doc["scripts"][1]["output"], serde_json::json!(["first line", "broken"]), "{doc}");
    assert!(doc["attestation"].is_null(), "{doc}");

    // A FAILED result is reported by `verify`, not a failure of the candidate.
    let verify = q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    verify.assert_ok();
    assert!(verify.stdout.contains("test result FAILED (passed: pass.sh; failed: fail.sh)"), "{}", verify.describe());
    let promote = q.cmd(&["promote", DIR, "--channel", "qualified", "--key", "keys/ci.key"]);
    promote.assert_code(1).assert_stderr_has("its result is \"FAILED\"");

    // Errors (exit 2) name their culprit: a missing candidate, a missing script, a rootfs
    // archive that does not match the manifest.
    q.cmd(&["test", "out/nothing-here", "--script", &pass]).assert_code(2).assert_stderr_has("out/nothing-here");
    q.test(&["scripts/missing.sh"], &[]).assert_code(2).assert_stderr_has("scripts/missing.sh");
    let copy = q.path().join("tampered/example_1.0_amd64");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(q.path().join(DIR)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let mut bytes = fs::read(entry.path()).unwrap();
            if entry.file_name() == "rootfs.tar.zst" {
                let at = bytes.len() / 2;
                bytes[at] ^= 1;
            }
            fs::write(copy.join(entry.file_name()), bytes).unwrap();
        }
    }
    let tampered = q.cmd(&["test", copy.to_str().unwrap(), "--script", &pass]);
    tampered.assert_code(2).assert_stderr_has("rootfs.tar.zst` does not match the manifest");
    q.assert_torn_down();
}

#[test]
fn a_hanging_script_is_killed_at_its_limit() {
    let Some(q) = Qualify::new() else { return };
    // An odd duration, so that no other process on the machine looks like ours; one in the
    // background too, which PID 1's death must take down as well.
    let hang = q.script("hang.sh", "sleep 1013 &\necho started\nsleep 1013\n");
    let started = Instant::now();
    let t = q.test(&[&hang], &["--timeout", "2", "--sign", "keys/ci.key"]);
    let took = started.elapsed();
    t.assert_code(1);
    assert!(t.stdout.contains("FAILED  hang.sh  killed at the 2 s time limit"), "{}", t.describe());
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    assert!(processes(&["sleep", "1013"]).is_empty(), "a `sleep` outlived its sandbox");
    q.assert_torn_down();
    let predicate = q.statement()["predicate"].clone();
    assert_eq!(predicate["result"], "FAILED");
    assert_eq!(predicate["configuration"][0]["annotations"]["timedOut"], true);
    let duration = predicate["configuration"][0]["annotations"]["durationMs"].as_u64().unwrap();
    assert!((2000..30_000).contains(&duration), "{duration} ms");

    // Nothing outlives the builder: kill `candidate` itself mid-run, and its sandbox goes too.
    let hang = q.script("hang-long.sh", "sleep 1031\n");
    let mut builder = with_store(q.path(), &q.path().join("store"), ["test", DIR, "--script", &hang])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = Instant::now();
    while processes(&["sleep", "1031"]).is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(20), "the script never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    builder.kill().unwrap();
    builder.wait().unwrap();
    let killed = Instant::now();
    while !processes(&["sleep", "1031"]).is_empty() {
        assert!(killed.elapsed() < Duration::from_secs(30), "the sandbox outlived the builder");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stat` lines (type and mode, owner, size, mtime, link count) of every entry under `dir`,
/// and `getcap` of every file, for comparing two extractions.
fn describe(dir: &Path) -> (String, String) {
    let stat = Command::new("sh")
        .arg("-c")
        .arg("find . -mindepth 1 | LC_ALL=C sort | xargs -d '\\n' stat -c '%n %f %u:%g %s %Y %h'")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(stat.status.success(), "{}", String::from_utf8_lossy(&stat.stderr));
    let caps = Command::new("sh").arg("-c").arg("getcap -r . | LC_ALL=C sort").current_dir(dir).output().unwrap();
    (String::from_utf8(stat.stdout).unwrap(), String::from_utf8(caps.stdout).unwrap())
}

#[test]
fn materialize_reproduces_what_gnu_tar_extracts() {
    let Some(t) = project_copy() else { return };
    // A tarball made by GNU tar with what a real image holds: a file capability, setuid and
    // setgid files, a sticky folder, foreign owners, hard links, symlinks.
    let src = t.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("shared")).unwrap();
    fs::write(src.join("bin/ping"), b"ping\n").unwrap();
    fs::write(src.join("bin/su"), b"su\n").unwrap();
    fs::write(src.join("bin/wall"), b"wall\n").unwrap();
    fs::hard_link(src.join("bin/su"), src.join("bin/su-link")).unwrap();
    std::os::unix::fs::symlink("su", src.join("bin/become")).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(&src).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("chown 1000:1000 bin/ping && setcap cap_net_raw+ep bin/ping && chmod 4755 bin/su && \
        chown 0:5 bin/wall && chmod 2755 bin/wall && chown 1234:5678 shared && chmod 1777 shared");
    sh("tar --xattrs --xattrs-include='*' --numeric-owner -cf ../caps.tar .");
    let recipe = fs::read_to_string(t.path().join("recipes/example.toml")).unwrap().replace(
        "[output]\nformats = [",
        "[[layer]]\nname = \"caps\"\ntarballs = [{ url = \"../caps.tar\", to = \"/opt/caps\" }]\n\n[output]\nformats = [\"rootfs.tar\", ",
    );
    fs::write(t.path().join("recipes/example.toml"), recipe).unwrap();
    let store = t.path().join("store");
    run(with_store(t.path(), &store, ["lock", "recipes/example.toml"])).assert_ok();
    run(with_store(t.path(), &store, ["build", "recipes/example.toml", "--out", "out"])).assert_ok();

    // Ours: the strict reader's tree of the whole rootfs, materialised.
    let rootfs = t.path().join(DIR).join("rootfs.tar");
    let file = std::sync::Arc::new(fs::File::open(&rootfs).unwrap().into_parts().0);
    let tree = candidate::layer::read_tar("rootfs.tar", &file, 0).unwrap();
    let ours = t.path().join("ours");
    fs::create_dir(&ours).unwrap();
    let written = candidate::instance::materialize(&tree, &ours).unwrap();
    assert!(written.files > 10 && written.hard_links >= 2 && written.symlinks > 3, "{written:?}");
    // GNU tar's, as root with every attribute.
    let reference = t.path().join("reference");
    fs::create_dir(&reference).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&rootfs)
        .arg("-C")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (stat_ours, caps_ours) = describe(&ours);
    let (stat_ref, caps_ref) = describe(&reference);
    assert_eq!(stat_ours, stat_ref, "materialize and GNU tar disagree");
    assert_eq!(caps_ours, caps_ref);
    assert!(caps_ours.contains("./opt/caps/bin/ping cap_net_raw=ep"), "{caps_ours}");
    let meta = |p: &str| fs::symlink_metadata(ours.join(p)).unwrap();
    assert_eq!(meta("opt/caps/bin/su").mode() & 0o7777, 0o4755);
    assert_eq!((meta("opt/caps/bin/wall").gid(), meta("opt/caps/bin/wall").mode() & 0o7777), (5, 0o2755));
    assert_eq!((meta("opt/caps/shared").uid(), meta("opt/caps/shared").mode() & 0o7777), (1234, 0o1777));
    assert_eq!(meta("opt/caps/bin/su").ino(), meta("opt/caps/bin/su-link").ino());
    assert_eq!(meta("opt/caps/bin/ping").uid(), 1000);
}

/// `test --runtime lxc` killed (SIGINT from a terminal, or SIGKILL) while its script runs:
/// the container, its processes and its folder go with it (no `Drop` runs on a signal, and
/// `lxc-start -d` puts the container in a session Ctrl-C does not reach).
#[test]
fn a_killed_lxc_test_leaves_no_container() {
    if !super::formats::lxc_available() {
        return;
    }
    let Some(q) = Qualify::new() else { return };
    let hang = q.script("lxc-killed.sh", "sleep 1033\n");
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let mut command =
            with_store(q.path(), &q.path().join("store"), ["test", DIR, "--script", &hang, "--runtime", "lxc"]);
        let mut builder = super::interruptible(&mut command)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let waited = std::time::Instant::now();
        while processes(&["sleep", "1033"]).is_empty() {
            assert!(waited.elapsed() < std::time::Duration::from_secs(60), "the script never started");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(builder.id() as i32, signal) };
        builder.wait().unwrap();
        let killed = std::time::Instant::now();
        while !processes(&["sleep", "1033"]).is_empty()
            || fs::read_dir(q.path().join("store/v1/tmp")).unwrap().any(|e| e.unwrap().path().is_dir())
        {
            assert!(
                killed.elapsed() < std::time::Duration::from_secs(30),
                "signal {signal}: the container outlived its builder"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        q.assert_torn_down();
    }
}

#[test]
fn scripts_run_in_a_real_lxc_container_too() {
    if !super::formats::lxc_available() {
        return;
    }
    let Some(q) = Qualify::new() else { return };
    let pass = q.script(
        "lxc-pass.sh",
        "set -e\ntest \"$(hostname)\" = candidate-test\ntest \"$TZ\" = UTC\ntest -r /run/candidate/lxc-pass.sh\n\
         if echo x >> /run/candidate/lxc-pass.sh; then exit 1; fi\necho in lxc\n",
    );
    let hang = q.script("lxc-hang.sh", "sleep 1017 &\nsleep 1017\n");
    let t = q.test(&[&pass, &hang], &["--runtime", "lxc", "--timeout", "3", "--sign", "keys/ci.key"]);
    t.assert_code(1);
    assert!(t.stdout.contains("PASSED  lxc-pass.sh  exit code 0"), "{}", t.describe());
    assert!(t.stdout.contains("FAILED  lxc-hang.sh  killed at the 3 s time limit"), "{}", t.describe());
    assert!(processes(&["sleep", "1017"]).is_empty(), "a `sleep` outlived its container");
    q.assert_torn_down();
    let predicate = q.statement()["predicate"].clone();
    assert_eq!(predicate["configuration"][0]["annotations"]["runtime"], "lxc");
    assert_eq!(predicate["passedTests"], serde_json::json!(["lxc-pass.sh"]));
    assert!(predicate["configuration"][0]["annotations"]["output"].as_str().unwrap().ends_with("in lxc"));
}
