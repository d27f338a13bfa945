//! Release management: registering, promoting under a policy, channel logs that detect
//! tampering, and diffs between candidates.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use fs_err as fs;

use super::{copy_project, run, snapshot, walk, with_store, Run};

const DIR: &str = "out/example_1.0_amd64";

/// A project copy with keys `ci`, `rm1`…`rm3`, `stranger`, a policy, and the example built
/// and signed by `ci`.
struct Release {
    root: tempfile::TempDir,
}

impl Release {
    fn new(policy_extra: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_project(root.path(), false);
        let r = Release { root };
        fs::create_dir_all(r.path().join("keys")).unwrap();
        for key in ["ci", "rm1", "rm2", "rm3", "stranger"] {
            r.cmd(&["key", "generate", "--out", &format!("keys/{key}")]).assert_ok();
        }
        fs::write(
            r.path().join("channels.toml"),
            format!(
                "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.nightly]\nkeys = [\"keys/ci.pub\"]\n\n\
                 [channel.qualified]\nkeys = [\"keys/rm1.pub\", \"keys/rm2.pub\", \"keys/rm3.pub\"]\nthreshold = 2\nrequires = [\"nightly\"]\n{policy_extra}"
            ),
        )
        .unwrap();
        r.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
        r
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    fn promote(&self, candidate: &str, channel: &str, key: &str) -> Run {
        self.cmd(&["promote", candidate, "--channel", channel, "--key", &format!("keys/{key}.key")])
    }

    fn log(&self, channel: &str) -> PathBuf {
        self.path().join("store/v1/channels").join(channel)
    }
}

#[track_caller]
fn refused(run: &Run, rule: &str) {
    run.assert_code(1);
    assert!(run.stderr.contains(rule), "the refusal does not name {rule:?}\n{}", run.describe());
}

#[test]
fn two_of_three_promotion_copies_nothing_and_lists_channels() {
    let r = Release::new("");
    let blobs = |r: &Release| walk(&r.path().join("store/v1/blobs")).len();
    let before_blobs = blobs(&r);
    let before = snapshot(&r.path().join(DIR));

    r.promote(DIR, "nightly", "ci").assert_ok();
    let pending = r.promote(DIR, "qualified", "rm1");
    pending.assert_ok();
    assert!(pending.stderr.contains("1 of 2 signatures"), "{}", pending.describe());
    assert!(r.log("qualified").join("pending.json").exists());
    let first_pending = fs::read(r.log("qualified").join("pending.json")).unwrap();
    // The same key twice is still one signature.
    r.promote(DIR, "qualified", "rm1").assert_ok();
    assert!(!r.log("qualified").join("00000001.json").exists());
    r.promote(DIR, "qualified", "rm3").assert_ok();
    assert!(r.log("qualified").join("00000001.json").exists() && !r.log("qualified").join("pending.json").exists());
    // A promote killed after writing its record but before removing the pending statement
    // left that statement behind: it is the record's, and the next promote sets it aside
    // instead of refusing every candidate for a promotion already made.
    fs::write(r.log("qualified").join("pending.json"), &first_pending).unwrap();
    let again = r.promote(DIR, "qualified", "rm2");
    again.assert_ok();
    assert!(again.stderr.contains("1 of 2 signatures"), "{}", again.describe());
    let pending: serde_json::Value =
        serde_json::from_slice(&fs::read(r.log("qualified").join("pending.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(pending["payload"].as_str().unwrap()).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["predicate"]["sequence"], 2, "{statement}");
    fs::remove_file(r.log("qualified").join("pending.json")).unwrap();

    let verify = r.cmd(&["channel", "verify", "qualified"]);
    verify.assert_ok();
    let show = r.cmd(&["channel", "show", "qualified", "--json"]);
    show.assert_ok();
    let show: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(show["history"][0]["signatures"], 2);
    let list = r.cmd(&["list"]);
    assert!(list.stdout.contains("nightly,qualified"), "{}", list.describe());

    assert_eq!(blobs(&r), before_blobs, "a promotion stored blobs");
    assert!(snapshot(&r.path().join(DIR)) == before, "a promotion changed the candidate's bytes");
    // The candidate can be named by an id prefix too.
    let id = show["current"].as_str().unwrap().trim_start_matches("sha256:")[..10].to_owned();
    refused(&r.promote(&id, "qualified", "stranger"), "is not trusted for channel `qualified`");
}

#[test]
fn every_unmet_rule_is_a_refusal_that_names_it() {
    let r = Release::new(
        "\n[channel.production]\nkeys = [\"keys/rm1.pub\"]\nrequires = [\"qualified\"]\n\
         attestations = [\"https://in-toto.io/attestation/test-result/v0.1\"]\n",
    );
    refused(&r.promote(DIR, "nightly", "stranger"), "not trusted for channel `nightly`");
    refused(&r.promote(DIR, "qualified", "rm1"), "is not in the prerequisite channel `nightly`");

    // A candidate that fails verification (one output byte flipped, in a copy).
    let copy = r.path().join("tampered/example_1.0_amd64");
    for entry in walkdir::WalkDir::new(r.path().join(DIR)) {
        let entry = entry.unwrap();
        let target = copy.join(entry.path().strip_prefix(r.path().join(DIR)).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            let mut bytes = fs::read(entry.path()).unwrap();
            if entry.file_name() == "rootfs.tar.gz" {
                bytes[100] ^= 1;
            }
            fs::write(&target, bytes).unwrap();
        }
    }
    refused(&r.promote(copy.to_str().unwrap(), "nightly", "ci"), "fails verification: rootfs.tar.gz");

    // Production needs qualified, and a passing test attestation beside the candidate.
    r.promote(DIR, "nightly", "ci").assert_ok();
    r.promote(DIR, "qualified", "rm1").assert_ok();
    r.promote(DIR, "qualified", "rm2").assert_ok();
    refused(
        &r.promote(DIR, "production", "rm1"),
        "required attestation `https://in-toto.io/attestation/test-result/v0.1` is missing",
    );
    let id = super::sha256(&fs::read(r.path().join(DIR).join("manifest.json")).unwrap());
    write_test_attestation(r.path(), &id, "FAILED");
    refused(&r.promote(DIR, "production", "rm1"), "its result is \"FAILED\"");
    write_test_attestation(r.path(), &id, "PASSED");
    r.promote(DIR, "production", "rm1").assert_ok();
}

/// A test-result attestation signed with openssl (not our code), next to the candidate.
pub fn write_test_attestation(root: &Path, id: &str, result: &str) {
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "manifest.json", "digest": { "sha256": id.trim_start_matches("sha256:") } }],
        "predicateType": "https://in-toto.io/attestation/test-result/v0.1",
        "predicate": { "result": result, "passedTests": [], "failedTests": [], "configuration": [] },
    });
    let payload = serde_json::to_vec(&statement).unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    fs::write(root.join("pae"), &pae).unwrap();
    let signed = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey", "keys/ci.key", "-rawin", "-in", "pae", "-out", "sig"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = serde_json::json!({
        "payload": b64.encode(&payload),
        "payloadType": payload_type,
        "signatures": [{ "keyid": "", "sig": b64.encode(fs::read(root.join("sig")).unwrap()) }],
    });
    fs::write(root.join("out/example_1.0_amd64.test-result.intoto.json"), serde_json::to_vec(&envelope).unwrap())
        .unwrap();
}

/// Three records in `nightly` (the same candidate promoted three times, with notes).
fn three_records() -> Release {
    let r = Release::new("");
    for note in ["one", "two", "three"] {
        r.cmd(&["promote", DIR, "--channel", "nightly", "--key", "keys/ci.key", "--note", note]).assert_ok();
    }
    r.cmd(&["channel", "verify", "nightly"]).assert_ok();
    r
}

#[test]
fn forged_removed_swapped_and_truncated_logs_are_detected() {
    // A forged record: its statement edited after signing.
    let r = three_records();
    let file = r.log("nightly").join("00000002.json");
    let mut envelope: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(envelope["payload"].as_str().unwrap()).unwrap()).unwrap();
    envelope["payload"] = serde_json::json!(b64.encode(payload.replace("\"two\"", "\"TWO\"")));
    fs::write(&file, serde_json::to_vec(&envelope).unwrap()).unwrap();
    refused(&r.cmd(&["channel", "verify", "nightly"]), "00000002.json`: signatures");

    // A removed record.
    let r = three_records();
    fs::remove_file(r.log("nightly").join("00000002.json")).unwrap();
    refused(&r.cmd(&["channel", "verify", "nightly"]), "00000003.json`: expected record 2 here");

    // Two records swapped.
    let r = three_records();
    let (one, two) = (r.log("nightly").join("00000001.json"), r.log("nightly").join("00000002.json"));
    let (a, b) = (fs::read(&one).unwrap(), fs::read(&two).unwrap());
    fs::write(&one, b).unwrap();
    fs::write(&two, a).unwrap();
    refused(&r.cmd(&["channel", "verify", "nightly"]), "00000001.json`: holds sequence 2, expected 1");

    // A truncated log (the head removed) after the verifier has seen record 3.
    let r = three_records();
    fs::remove_file(r.log("nightly").join("00000003.json")).unwrap();
    refused(&r.cmd(&["channel", "verify", "nightly"]), "ends at record 2, but record 3 was verified before");

    // No record goes on top of it from this store either, nor does `channel show` take it.
    let promote = ["promote", DIR, "--channel", "nightly", "--key", "keys/ci.key", "--note", "other"];
    refused(&r.cmd(&promote), "ends at record 2, but record 3 was verified before");
    refused(&r.cmd(&["channel", "show", "nightly"]), "ends at record 2, but record 3 was verified before");

    // A rewritten log: another record 3 promoted in its place by a promoter that never saw the
    // first (here, this store with what it saw set aside, then put back). Its length is what
    // this store verified, but not its record 3.
    let seen = r.path().join("store/v1/seen/nightly");
    let saw = fs::read(&seen).unwrap();
    fs::remove_file(&seen).unwrap();
    r.cmd(&promote).assert_ok();
    fs::write(&seen, saw).unwrap();
    refused(&r.cmd(&["channel", "verify", "nightly"]), "but record 3 was verified before as sha256:");

    // What the verifier saw, garbled, is an error naming it, not a protection turned off.
    let r = three_records();
    fs::write(r.path().join("store/v1/seen/nightly"), "three\n").unwrap();
    let garbled = r.cmd(&["channel", "verify", "nightly"]);
    garbled.assert_code(2).assert_stderr_has("seen/nightly` is not `SEQUENCE DIGEST`");
}

#[test]
fn an_expired_head_is_reported() {
    let r = Release::new("\n[channel.daily]\nkeys = [\"keys/ci.pub\"]\nexpires-after-days = 0\n");
    r.promote(DIR, "daily", "ci").assert_ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    refused(&r.cmd(&["channel", "verify", "daily"]), "has expired");
}

#[test]
fn diff_names_exactly_the_changed_input_and_file() {
    let r = Release::new("");
    // Candidate B: the same recipe with a changed file and a changed tarball.
    let b = r.path().join("b");
    copy_project(&b, false);
    fs::write(b.join("fixtures/example/etc/motd"), "Welcome to candidate 2.\n").unwrap();
    let tools = b.join("fixtures/example/tools-src/tools/bin");
    fs::create_dir_all(&tools).unwrap();
    fs::write(tools.join("tool-a"), "#!/bin/sh\necho a2\n").unwrap();
    let tar = Command::new("tar")
        .args(["--sort=name", "--mtime=@1600000000", "--owner=0", "--group=0", "--numeric-owner", "-cJf"])
        .arg(b.join("fixtures/example/tools.tar.xz"))
        .args(["-C", b.join("fixtures/example/tools-src").to_str().unwrap(), "tools"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let recipe = fs::read_to_string(b.join("recipes/example.toml")).unwrap();
    let recipe = recipe.replace("sha256 = \"078792f8f9ec7fb7f0b93e90fcc22411a77b5bb9bde7ecd3af5266b78517f9ab\", ", "");
    fs::write(b.join("recipes/example.toml"), recipe).unwrap();
    let store = r.path().join("store");
    run(with_store(&b, &store, ["lock", "recipes/example.toml"])).assert_ok();
    run(with_store(&b, &store, ["build", "recipes/example.toml", "--out", "out"])).assert_ok();

    let same = r.cmd(&["diff", DIR, DIR]);
    same.assert_ok();
    let diff = r.cmd(&["diff", DIR, b.join(DIR).to_str().unwrap(), "--json"]);
    diff.assert_code(1);
    let d: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    let mut inputs: Vec<(String, String)> = d["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["change"].as_str().unwrap().to_owned(), i["origin"].as_str().unwrap().to_owned()))
        .collect();
    inputs.sort();
    assert_eq!(
        inputs,
        [
            ("changed".to_owned(), "../fixtures/example/etc".to_owned()),
            ("changed".to_owned(), "../fixtures/example/tools.tar.xz".to_owned())
        ]
    );
    let entries: Vec<(String, String)> = d["rootfs"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_owned(), e["change"].as_str().unwrap().to_owned()))
        .collect();
    assert!(entries.contains(&("/etc/motd".to_owned(), "changed".to_owned())), "{entries:?}");
    assert!(entries.contains(&("/usr/local/tools/bin/tool-a".to_owned(), "changed".to_owned())), "{entries:?}");
    // tools-b and the README are gone from the new tarball; nothing else changed.
    for (path, change) in &entries {
        assert!(
            matches!(
                path.as_str(),
                "/etc/motd" | "/usr/local/tools/bin/tool-a" | "/usr/local/tools/bin/tool-b" | "/usr/local/tools/README"
            ),
            "unexpected change {change} {path}"
        );
    }
    // Read from the layers in the store, or (another store, without them) from the rootfs
    // archives: the same answer.
    let elsewhere = run(with_store(
        r.path(),
        &r.path().join("empty-store"),
        ["diff", DIR, b.join(DIR).to_str().unwrap(), "--json"],
    ));
    elsewhere.assert_code(1);
    let e: serde_json::Value = serde_json::from_str(&elsewhere.stdout).unwrap();
    assert_eq!(e["rootfs"], d["rootfs"], "the layered and archive diffs disagree");
    let motd = d["rootfs"]["entries"].as_array().unwrap().iter().find(|e| e["path"] == "/etc/motd").unwrap();
    let fields: Vec<&str> = motd["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["content", "size"]);
    let shared: Vec<&str> =
        d["layers"]["shared"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(shared, ["base"], "only the package layer is shared");
    assert_eq!(d["packages"].as_array().unwrap().len(), 0, "no package changed");
}

#[test]
fn diff_of_one_package_version_and_one_file_names_exactly_those() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let build = |name: &str, hello: &str, motd: &str| -> PathBuf {
        let dir = root.path().join(name);
        copy_project(&dir, false);
        fs::write(dir.join("fixtures/example/etc/motd"), motd).unwrap();
        let recipe = fs::read_to_string(dir.join("recipes/example.toml")).unwrap();
        let recipe = recipe.replace("packages = [\"web\"]", &format!("packages = [\"web\", \"{hello}\"]"));
        fs::write(dir.join("recipes/example.toml"), recipe).unwrap();
        run(with_store(&dir, &store, ["lock", "recipes/example.toml"])).assert_ok();
        run(with_store(&dir, &store, ["build", "recipes/example.toml", "--out", "out"])).assert_ok();
        dir.join(DIR)
    };
    let a = build("a", "hello (= 1.0-1)", "Welcome.\n");
    let b = build("b", "hello", "Welcome to the new one.\n");
    let diff = run(with_store(root.path(), &store, ["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]));
    diff.assert_code(1);
    let d: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    let packages: Vec<(String, String, String, String)> = d["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (s("change"), s("name"), s("a"), s("b"))
        })
        .collect();
    assert_eq!(packages, [("upgraded".into(), "hello".into(), "1.0-1".into(), "1.1-1".into())]);
    let inputs: Vec<&str> = d["inputs"].as_array().unwrap().iter().map(|i| i["origin"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["../fixtures/example/etc"], "only the configuration files changed");
    let paths: Vec<&str> =
        d["rootfs"]["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/etc/motd") && paths.contains(&"/usr/share/doc/hello/changelog"), "{paths:?}");
    for path in &paths {
        let expected = *path == "/etc/motd"
            || path.starts_with("/usr/bin/hello")
            || path.starts_with("/usr/share/doc/hello/")
            || path.starts_with("/var/lib/dpkg/");
        assert!(expected, "unexpected change at {path} ({paths:?})");
    }
    // In the text form, as a release manager reads it.
    let text = run(with_store(root.path(), &store, ["diff", a.to_str().unwrap(), b.to_str().unwrap()]));
    assert!(text.stdout.contains("package upgraded   hello:amd64 1.0-1 -> 1.1-1"), "{}", text.stdout);
}

/// The `--json` output of a command, parsed.
#[track_caller]
fn json_of(run: &Run) -> serde_json::Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{}", run.describe()))
}

#[test]
fn every_reporting_command_prints_its_json_shape() {
    let r = Release::new("");
    // build: the id and the folder (the folder already holds this candidate: nothing rewritten).
    let built = r.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key", "--json"]);
    let built = json_of(built.assert_ok());
    let id = built["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{built}");
    assert!(built["dir"].as_str().unwrap().ends_with(DIR), "{built}");
    assert_eq!(super::sha256(&fs::read(r.path().join(DIR).join("manifest.json")).unwrap()), id);

    // lock --check: unchanged, then (a configuration file changed) would change, exit 1.
    let locked = json_of(r.cmd(&["lock", "recipes/example.toml", "--check", "--json"]).assert_ok());
    assert_eq!(locked["outcome"], "unchanged", "{locked}");
    assert!(locked["lockfile"].as_str().unwrap().ends_with("lockfiles/example.lock"), "{locked}");
    fs::write(r.path().join("fixtures/example/etc/motd"), "changed\n").unwrap();
    let stale = r.cmd(&["lock", "recipes/example.toml", "--check", "--json"]);
    stale.assert_code(1);
    let stale = json_of(&stale);
    assert_eq!(stale["outcome"], "would-change", "{stale}");
    assert!(stale["reason"].as_str().is_some_and(|r| r.contains("config")), "{stale}");

    // verify: every check and the verdict; a tampered file fails one check, named.
    let verified = json_of(r.cmd(&["verify", DIR, "--key", "keys/ci.pub", "--json"]).assert_ok());
    assert_eq!(verified["verified"], true, "{verified}");
    let checks = verified["checks"].as_array().unwrap();
    assert!(checks.len() > 5 && checks.iter().all(|c| c["ok"] == true), "{verified}");

    // promote, list, channel show and channel verify agree on the id.
    let promoted =
        json_of(r.cmd(&["promote", DIR, "--channel", "nightly", "--key", "keys/ci.key", "--json"]).assert_ok());
    assert_eq!(promoted["outcome"], "promoted", "{promoted}");
    assert_eq!(promoted["sequence"], 1, "{promoted}");
    assert_eq!(promoted["candidate"], id.as_str(), "{promoted}");
    let listed = json_of(r.cmd(&["list", "--json"]).assert_ok());
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "example");
    assert_eq!(listed[0]["version"], "1.0");
    assert_eq!(listed[0]["channels"], serde_json::json!(["nightly"]));
    for action in ["show", "verify"] {
        let channel = json_of(r.cmd(&["channel", action, "nightly", "--json"]).assert_ok());
        assert_eq!(channel["channel"], "nightly", "{channel}");
        assert_eq!(channel["current"], id.as_str(), "{channel}");
        assert_eq!(channel["history"].as_array().unwrap().len(), 1, "{channel}");
        assert_eq!(channel["history"][0]["signatures"], 1, "{channel}");
    }

    fs::write(r.path().join(DIR).join("rootfs.tar.gz"), b"tampered").unwrap();
    let failed = r.cmd(&["verify", DIR, "--key", "keys/ci.pub", "--json"]);
    failed.assert_code(1);
    let failed = json_of(&failed);
    assert_eq!(failed["verified"], false, "{failed}");
    let bad: Vec<&str> = failed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(!bad.is_empty() && bad.iter().all(|c| c.contains("rootfs.tar.gz")), "{bad:?}");
}
