//! The rebuilder quorum: `verify --rebuild --sign KEY` writes a signed rebuild attestation
//! beside the candidate, and a channel's `rebuilds = N` admits a candidate only with N
//! identical rebuilds by distinct `rebuilders` keys. Every attestation here is made by a real
//! rebuild; the failed one by rebuilding from a changed input.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use fs_err as fs;

use super::{copy_project, repo, run, with_store, Run};

const DIR: &str = "out/example_1.0_amd64";

/// A project copy with keys `ci`, `rb1`, `rb2`, `stranger`, a policy whose `nightly` needs two
/// rebuilds by `rb1` and `rb2`, and the example built and signed by `ci`.
struct Quorum {
    root: tempfile::TempDir,
}

impl Quorum {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_project(root.path(), false);
        let q = Quorum { root };
        fs::create_dir_all(q.path().join("keys")).unwrap();
        for key in ["ci", "rb1", "rb2", "stranger"] {
            q.cmd(&["key", "generate", "--out", &format!("keys/{key}")]).assert_ok();
        }
        fs::write(
            q.path().join("channels.toml"),
            "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.nightly]\nkeys = [\"keys/ci.pub\"]\nrebuilds = 2\n\
             rebuilders = [\"keys/rb1.pub\", \"keys/rb2.pub\"]\n",
        )
        .unwrap();
        q.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
        q
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    /// `verify --rebuild`, signed by `keys`.
    fn rebuild(&self, keys: &[&str]) -> Run {
        let keys: Vec<String> = keys.iter().map(|k| format!("keys/{k}.key")).collect();
        let mut args = vec!["verify", DIR, "--key", "keys/ci.pub", "--rebuild"];
        for key in &keys {
            args.extend(["--sign", key.as_str()]);
        }
        self.cmd(&args)
    }

    fn promote(&self) -> Run {
        self.cmd(&["promote", DIR, "--channel", "nightly", "--key", "keys/ci.key"])
    }

    /// The rebuild attestation of `key` beside the candidate, and its signature's key id.
    fn attestation(&self, key: &str) -> (PathBuf, String) {
        let der = openssl_der(&self.path().join(format!("keys/{key}.pub")));
        let id = super::sha256(&der).trim_start_matches("sha256:").to_owned();
        (self.path().join(format!("{DIR}.rebuild.{}.intoto.json", &id[..16])), id)
    }
}

/// The SPKI DER of a public key, by openssl (our key id is its sha256).
fn openssl_der(public: &Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(public)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn statement(envelope: &Path) -> serde_json::Value {
    let envelope: serde_json::Value = serde_json::from_slice(&fs::read(envelope).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[track_caller]
fn refused(run: &Run, needles: &[&str]) {
    run.assert_code(1);
    for needle in needles {
        assert!(run.stderr.contains(needle), "the refusal does not say {needle:?}\n{}", run.describe());
    }
}

#[test]
fn two_rebuilders_admit_a_candidate_and_nothing_else_counts() {
    let q = Quorum::new();
    let id = super::sha256(&fs::read(q.path().join(DIR).join("manifest.json")).unwrap());
    refused(&q.promote(), &[&format!("candidate {id} has 0 of the 2 identical rebuilds"), "hint: each rebuilder runs"]);

    // rb1 and a stranger rebuild: identical, one attestation each, side by side.
    let first = q.rebuild(&["rb1", "stranger"]);
    first.assert_ok();
    assert!(first.stdout.contains("ok      rebuild: rootfs.tar.zst is identical"), "{}", first.describe());
    let (rb1, rb1_id) = q.attestation("rb1");
    let (stranger, stranger_id) = q.attestation("stranger");
    assert!(first.stderr.contains(&format!("rebuild IDENTICAL: {}", rb1.strip_prefix(q.path()).unwrap().display())));
    let said = statement(&rb1);
    assert_eq!(said["predicateType"], "urn:candidate:rebuild:v1");
    assert_eq!(said["predicate"]["result"], "IDENTICAL");
    assert_eq!(said["predicate"]["candidate"], id.as_str());
    assert_eq!(said["subject"][0]["digest"]["sha256"], id.trim_start_matches("sha256:"));
    assert_eq!(
        said["predicate"]["inputs"]["lockfile"]["digest"],
        super::sha256(&fs::read(q.path().join("lockfiles/example.lock")).unwrap())
    );
    assert!(said["predicate"].get("difference").is_none(), "{said}");
    // The same candidate from the same inputs: the two rebuilders signed the same statement.
    assert_eq!(statement(&stranger), said);

    // The candidate still verifies with the attestations beside it; their signers are not
    // `--key`s, so they are named as not checked. With rb1's key, rb1's is checked.
    let plain = q.cmd(&["verify", DIR, "--key", "keys/ci.pub"]);
    plain.assert_ok();
    assert!(
        plain.stderr.contains("a rebuild attestation by none of the `--key` keys, not checked"),
        "{}",
        plain.describe()
    );
    let with_rb1 = q.cmd(&["verify", DIR, "--key", "keys/ci.pub", "--key", "keys/rb1.pub"]);
    with_rb1.assert_ok();
    let line = format!("ok      attestation {}: rebuild IDENTICAL", rb1.file_name().unwrap().to_string_lossy());
    assert!(with_rb1.stdout.contains(&line), "{}", with_rb1.describe());

    // One key twice: rb1 signing the same rebuild again gives these very bytes (ed25519 and
    // the statement are deterministic), under another name.
    // (`z-`: after any key's file in name order, so it is the one not counted.) The stranger's
    // identical rebuild does not count either.
    let again = q.path().join(format!("{DIR}.rebuild.z-again.intoto.json"));
    fs::copy(&rb1, &again).unwrap();
    refused(
        &q.promote(),
        &[
            "has 1 of the 2 identical rebuilds",
            &format!("counted: `example_1.0_amd64.rebuild.{}.intoto.json` by key `keys/rb1.pub`;", &rb1_id[..16]),
            "`example_1.0_amd64.rebuild.z-again.intoto.json`: key `keys/rb1.pub` is counted already, for \
             `example_1.0_amd64.rebuild.",
            &format!(
                "`example_1.0_amd64.rebuild.{}.intoto.json`: its signature: 0 valid signature(s) by trusted keys, 1 \
                 required; rejected: signature 0 (keyid `{stranger_id}`) is not by a trusted key",
                &stranger_id[..16]
            ),
        ],
    );
    // Its point made, the stranger's file goes: the snapshot below lists files in name order,
    // and key ids (random) would order it differently on each run.
    fs::remove_file(&stranger).unwrap();

    // rb2 rebuilds from a changed input (a local file, locked again): the rebuild really
    // differs, verify fails, and rb2 signs a FAILED attestation naming the first difference.
    let hello = q.path().join("fixtures/example/bin/hello");
    fs::write(&hello, b"#!/bin/sh\necho 'hello, changed'\n").unwrap();
    q.cmd(&["lock", "recipes/example.toml"]).assert_ok();
    let failed = q.rebuild(&["rb2"]);
    failed.assert_code(1);
    assert!(failed.stdout.contains("FAILED  rebuild: rootfs.tar.gz differs"), "{}", failed.describe());
    let (rb2, rb2_id) = q.attestation("rb2");
    let said = statement(&rb2);
    assert_eq!(said["predicate"]["result"], "FAILED", "{said}");
    let difference = &said["predicate"]["difference"];
    assert_eq!(difference["entry"]["path"], "./usr/bin/hello", "{said}");
    assert_eq!(difference["entry"]["field"], "content", "{said}");
    let refusal = q.promote();
    refused(&refusal, &["has 1 of the 2 identical rebuilds", "its result is FAILED: `"]);
    let shown =
        refusal.stderr.replace(&id, "[candidate id]").replace(&rb1_id[..16], "[rb1]").replace(&rb2_id[..16], "[rb2]");
    insta::assert_snapshot!("promote_without_a_quorum", shown);

    // rb2 rebuilds from the candidate's own inputs: identical, its FAILED attestation replaced.
    fs::copy(repo().join("fixtures/example/bin/hello"), &hello).unwrap();
    fs::copy(repo().join("lockfiles/example.lock"), q.path().join("lockfiles/example.lock")).unwrap();
    q.rebuild(&["rb2"]).assert_ok();
    assert_eq!(statement(&rb2)["predicate"]["result"], "IDENTICAL");

    // A tampered attestation (its payload changed after signing) does not count, by name.
    let good = fs::read(&rb2).unwrap();
    let mut envelope: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(envelope["payload"].as_str().unwrap()).unwrap()).unwrap();
    envelope["payload"] = b64.encode(payload.replace("\"compared\":", "\"compared\":1")).into();
    fs::write(&rb2, serde_json::to_vec(&envelope).unwrap()).unwrap();
    refused(
        &q.promote(),
        &[
            "has 1 of the 2 identical rebuilds",
            &format!(
                "`example_1.0_amd64.rebuild.{}.intoto.json`: its signature: 0 valid signature(s) by trusted keys, 1 \
                 required; rejected: signature 0 by trusted key `{rb2_id}` (keys/rb2.pub) is invalid",
                &rb2_id[..16]
            ),
        ],
    );

    // rb1 and rb2: two distinct trusted keys, two identical rebuilds.
    fs::write(&rb2, good).unwrap();
    q.promote().assert_ok();
    assert!(q.path().join("store/v1/channels/nightly/00000001.json").exists());
}

/// A policy that asks for more rebuilds than it names rebuilders can never be met: refused
/// when it is read.
#[test]
fn a_quorum_larger_than_its_rebuilders_is_a_policy_error() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    run(with_store(p, &p.join("store"), ["key", "generate", "--out", "rb1"])).assert_ok();
    fs::write(
        p.join("channels.toml"),
        "[verify]\nkeys = [\"rb1.pub\"]\n\n[channel.nightly]\nkeys = [\"rb1.pub\"]\nrebuilds = 2\nrebuilders = [\"rb1.pub\", \"rb1.pub\"]\n",
    )
    .unwrap();
    let run = run(with_store(p, &p.join("store"), ["promote", "x", "--channel", "nightly", "--key", "rb1.key"]));
    run.assert_code(2);
    run.assert_stderr_has("channel `nightly` requires 2 rebuilds by distinct keys but `rebuilders` names 1 key(s)");
}
