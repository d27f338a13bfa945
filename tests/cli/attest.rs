//! Keys, signed provenance, the SBOMs and `candidate verify`: checked with standard tools
//! (openssl, the SPDX and CycloneDX validators) and against every tampering an auditor must
//! catch.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use fs_err as fs;

use super::{copy_project, run, with_store, Run};

const DIR: &str = "example_1.0_amd64";

/// A project copy with a store, keys `ci` and `rm`, and the example built and signed by
/// `ci` into `out/`.
struct Signed {
    root: tempfile::TempDir,
}

impl Signed {
    fn new(sign_with: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_project(root.path(), false);
        let s = Signed { root };
        for key in ["ci", "rm", "stranger"] {
            s.cmd(&["key", "generate", "--out", key]).assert_ok();
        }
        let mut args: Vec<String> = ["build", "recipes/example.toml", "--out", "out"].map(String::from).to_vec();
        for key in sign_with {
            args.extend(["--sign".to_owned(), format!("{key}.key")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.cmd(&args).assert_ok();
        s
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn candidate(&self) -> PathBuf {
        self.path().join("out").join(DIR)
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    /// `candidate verify` of `dir` trusting `keys` (public key names), with `extra` args.
    fn verify(&self, dir: &Path, keys: &[&str], extra: &[&str]) -> Run {
        let dir = dir.to_str().unwrap().to_owned();
        let pubs: Vec<String> = keys.iter().map(|k| format!("{k}.pub")).collect();
        let mut args = vec!["verify", dir.as_str()];
        for p in &pubs {
            args.extend(["--key", p.as_str()]);
        }
        args.extend(extra);
        self.cmd(&args)
    }

    /// A copy of the signed candidate folder to tamper with (writable, unlike the original,
    /// whose files are links to read-only store blobs).
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.path().join(name);
        for entry in walkdir::WalkDir::new(self.candidate()) {
            let entry = entry.unwrap();
            let target = to.join(entry.path().strip_prefix(self.candidate()).unwrap());
            if entry.file_type().is_dir() {
                fs::create_dir_all(&target).unwrap();
                continue;
            }
            fs::copy(entry.path(), &target).unwrap();
            let mut perms = fs::metadata(&target).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
            fs::set_permissions(&target, perms).unwrap();
        }
        to
    }
}

#[track_caller]
fn assert_fails_naming(run: &Run, needles: &[&str]) {
    run.assert_code(1);
    for needle in needles {
        assert!(
            run.stdout.contains(needle) || run.stderr.contains(needle),
            "output does not name {needle:?}\n{}",
            run.describe()
        );
    }
}

#[test]
fn openssl_reads_our_keys_and_accepts_our_signatures() {
    let s = Signed::new(&["ci"]);
    let derived =
        Command::new("openssl").args(["pkey", "-in", "ci.key", "-pubout"]).current_dir(s.path()).output().unwrap();
    assert!(
        derived.status.success(),
        "openssl cannot read the private key: {}",
        String::from_utf8_lossy(&derived.stderr)
    );
    assert_eq!(derived.stdout, fs::read(s.path().join("ci.pub")).unwrap(), "openssl derives another public key");

    // Build the PAE here, by the DSSE specification, not with our code.
    let envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(s.candidate().join("manifest.intoto.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let payload_type = envelope["payloadType"].as_str().unwrap();
    assert_eq!(payload_type, "application/vnd.in-toto+json");
    let mut pae = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    let sig = b64.decode(envelope["signatures"][0]["sig"].as_str().unwrap()).unwrap();
    fs::write(s.path().join("pae"), &pae).unwrap();
    fs::write(s.path().join("sig"), &sig).unwrap();
    let check = |message: &str| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey", "ci.pub", "-rawin", "-in", message, "-sigfile", "sig"])
            .current_dir(s.path())
            .output()
            .unwrap()
    };
    let good = check("pae");
    assert!(good.status.success(), "openssl rejects our signature: {}", String::from_utf8_lossy(&good.stdout));
    pae[10] ^= 1;
    fs::write(s.path().join("pae-flipped"), &pae).unwrap();
    assert!(!check("pae-flipped").status.success(), "openssl accepts a signature over other bytes");
}

#[test]
fn verify_accepts_the_candidate_and_names_every_tampering() {
    let s = Signed::new(&["ci"]);
    let out = s.verify(&s.candidate(), &["ci"], &[]);
    out.assert_ok();
    assert!(out.stdout.contains("verified") && out.stdout.contains("ok      rootfs.tar.zst"), "{}", out.describe());

    // One flipped byte in an output.
    let dir = s.copy("flipped");
    let mut bytes = fs::read(dir.join("rootfs.tar.gz")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(dir.join("rootfs.tar.gz"), &bytes).unwrap();
    let actual = super::sha256(&bytes);
    assert_fails_naming(&s.verify(&dir, &["ci"], &[]), &["FAILED  rootfs.tar.gz: expected sha256:", &actual]);

    // A changed manifest.
    let dir = s.copy("manifest");
    let manifest =
        fs::read_to_string(dir.join("manifest.json")).unwrap().replace("candidate's example", "candidate's exampl3");
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    assert_fails_naming(&s.verify(&dir, &["ci"], &[]), &["FAILED  manifest.json: expected"]);

    // An untrusted signer.
    assert_fails_naming(&s.verify(&s.candidate(), &["stranger"], &[]), &["not by a trusted key"]);

    // A missing and an extra file.
    let dir = s.copy("missing");
    fs::remove_file(dir.join("rootfs.tar.xz")).unwrap();
    fs::write(dir.join("notes.txt"), "added later").unwrap();
    assert_fails_naming(
        &s.verify(&dir, &["ci"], &[]),
        &["rootfs.tar.xz: missing", "notes.txt: not in the signed statement"],
    );

    // No signatures at all.
    let dir = s.copy("unsigned");
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.intoto.json")).unwrap()).unwrap();
    envelope["signatures"] = serde_json::json!([]);
    fs::write(dir.join("manifest.intoto.json"), serde_json::to_vec(&envelope).unwrap()).unwrap();
    assert_fails_naming(&s.verify(&dir, &["ci"], &[]), &["no signature"]);

    // Two signatures required, one given.
    assert_fails_naming(
        &s.verify(&s.candidate(), &["ci", "rm"], &["--threshold", "2"]),
        &["1 valid signature(s) by trusted keys, 2 required"],
    );

    // A payload swapped in from another candidate (signed by a trusted key too).
    let other = s.path().join("other");
    s.cmd(&["build", "recipes/example.toml", "--out", "other", "--format", "rootfs.tar", "--sign", "ci.key"])
        .assert_ok();
    let dir = s.copy("swapped");
    fs::copy(other.join(DIR).join("manifest.intoto.json"), dir.join("manifest.intoto.json")).unwrap();
    assert_fails_naming(
        &s.verify(&dir, &["ci"], &[]),
        &["rootfs.tar: missing", "rootfs.tar.zst: not in the signed statement"],
    );

    // Could not run: a missing key file, a folder that was never signed.
    s.verify(&s.candidate(), &["nobody"], &[]).assert_code(2).assert_stderr_has("nobody.pub");
    s.cmd(&["build", "recipes/example.toml", "--out", "plain"]).assert_ok();
    let plain = s.path().join("plain").join(DIR);
    s.verify(&plain, &["ci"], &[]).assert_code(2).assert_stderr_has("manifest.intoto.json");
}

#[test]
fn several_signers_meet_a_threshold() {
    let s = Signed::new(&["ci", "rm"]);
    s.verify(&s.candidate(), &["ci", "rm"], &["--threshold", "2"]).assert_ok();
    // `candidate sign` adds a signature over the same statement to an existing candidate.
    let single = Signed::new(&["ci"]);
    let dir = single.copy("cosigned");
    single.cmd(&["sign", dir.to_str().unwrap(), "--key", "rm.key"]).assert_ok();
    single.verify(&dir, &["ci", "rm"], &["--threshold", "2"]).assert_ok();
    // Signing twice with the same key does not count twice.
    single.cmd(&["sign", dir.to_str().unwrap(), "--key", "rm.key"]).assert_ok();
    assert_fails_naming(
        &single.verify(&dir, &["ci", "rm", "stranger"], &["--threshold", "3"]),
        &["2 valid signature(s)"],
    );
}

#[test]
fn the_sboms_pass_independent_spdx_and_cyclonedx_validators() {
    let s = Signed::new(&[]);
    let sbom = s.candidate().join("sbom.spdx.json");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z", "creation time is SOURCE_DATE_EPOCH");
    let tarball =
        doc["packages"].as_array().unwrap().iter().find(|p| p["name"] == "app.tar.gz").expect("a package per tarball");
    const APP: &str = "e2958fa30c9395b2b0f050ad6d2303af359032bf291a18464591e3532106d0e8";
    assert_eq!(tarball["checksums"][0]["checksumValue"], APP);
    let cdx: serde_json::Value =
        serde_json::from_slice(&fs::read(s.candidate().join("sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!((&cdx["bomFormat"], &cdx["specVersion"]), (&"CycloneDX".into(), &"1.6".into()));
    assert_eq!(cdx["metadata"]["timestamp"], "2023-11-14T22:13:20Z", "the timestamp is SOURCE_DATE_EPOCH");
    let tarball = cdx["components"].as_array().unwrap().iter().find(|c| c["name"] == "app.tar.gz").unwrap();
    assert_eq!(tarball["purl"], format!("pkg:generic/app.tar.gz?checksum=sha256:{APP}"));
    assert_eq!(tarball["hashes"][0], serde_json::json!({ "alg": "SHA-256", "content": APP }));
    validate_sboms(&s.candidate());
}

/// A signer who re-signs an altered SBOM still fails `verify`: each SBOM must say what the
/// manifest (and the lockfile behind it) says, component by component and edge by edge.
#[test]
fn verify_catches_an_sbom_that_disagrees_with_the_manifest_even_when_re_signed() {
    let s = Signed::new(&["ci"]);
    let ok = s.verify(&s.candidate(), &["ci"], &[]);
    let line = "ok      sbom.cdx.json: its dependency graph is the image's components and the lockfile's 8 edge(s)";
    assert!(ok.assert_ok().stdout.contains(line), "{}", ok.describe());
    let edit = |name: &str, file: &str, from: &str, to: &str, needles: &[&str]| {
        let dir = s.copy(name);
        let text = fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        fs::write(dir.join(file), text.replacen(from, to, 1)).unwrap();
        fs::remove_file(dir.join("manifest.intoto.json")).unwrap();
        s.cmd(&["sign", dir.to_str().unwrap(), "--key", "ci.key"]).assert_ok();
        assert_fails_naming(&s.verify(&dir, &["ci"], &[]), needles);
    };
    // An edge dropped from each SBOM; a Debian package's purl changed in the CycloneDX one.
    edit(
        "spdx-edge",
        "sbom.spdx.json",
        r#""relationshipType":"DEPENDS_ON""#,
        r#""relationshipType":"OTHER""#,
        &["FAILED  sbom.spdx.json: its DEPENDS_ON relationships are the lockfile's 8 edge(s)"],
    );
    edit(
        "cdx-edge",
        "sbom.cdx.json",
        r#"{"dependsOn":["package-5"],"ref":"package-2"}"#,
        r#"{"ref":"package-2"}"#,
        &["FAILED  sbom.cdx.json: its dependency graph"],
    );
    edit(
        "cdx-purl",
        "sbom.cdx.json",
        "pkg:deb/debian/libc6@2.36-9?arch=amd64",
        "pkg:deb/debian/libc6@2.36-10?arch=amd64",
        &["FAILED  sbom.cdx.json: lists the manifest's", "component `package-5` differs"],
    );
}

/// Runs the independent validators on the two SBOMs of the candidate folder `dir`: SPDX's
/// `pyspdxtools` and the CycloneDX Python library's strict JSON schema validation for 1.6
/// (its schemas are bundled: nothing is fetched).
pub(super) fn validate_sboms(dir: &Path) {
    let spdx = dir.join("sbom.spdx.json");
    match Command::new("pyspdxtools").arg("-i").arg(&spdx).output() {
        Ok(out) => assert!(
            out.status.success(),
            "the SPDX validator rejects our SBOM:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            candidate::testing::missing("`pyspdxtools`", "install the PyPI package `spdx-tools`");
        }
    }
    if !candidate::testing::tool("python3", "python3") {
        return;
    }
    let probe = ["-c", "import cyclonedx.validation.json, jsonschema, referencing"];
    if !Command::new("python3").args(probe).output().unwrap().status.success() {
        candidate::testing::missing(
            "the Python modules `cyclonedx`, `jsonschema`, `referencing`",
            "install the PyPI package `cyclonedx-python-lib[json-validation]`",
        );
        return;
    }
    let out =
        Command::new("python3").arg("-c").arg(VALIDATE_CYCLONEDX).arg(dir.join("sbom.cdx.json")).output().unwrap();
    assert!(
        out.status.success(),
        "the CycloneDX validator rejects our SBOM:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CycloneDX library's strict validator (no property outside the 1.6 schema) on the file
/// `argv[1]`: exit 1 with the first error's message and where it is.
const VALIDATE_CYCLONEDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    data = error.data
    sys.exit("%s at %s" % (getattr(data, "message", data), getattr(data, "json_path", "?")))
"#;

#[test]
fn verify_rebuild_passes_and_names_an_altered_entry() {
    let s = Signed::new(&["ci"]);
    let candidate = s.candidate();
    let candidate = candidate.to_str().unwrap();
    let ok = s.cmd(&["verify", candidate, "--key", "ci.pub", "--rebuild"]);
    ok.assert_ok();
    assert!(ok.stdout.contains("ok      rebuild: rootfs.tar.zst is identical"), "{}", ok.describe());

    // Alter one file's content inside rootfs.tar.gz, recompress, and re-sign: the signature
    // holds, but the rebuild does not match, and the entry is named.
    let dir = s.copy("altered");
    let gz = fs::read(dir.join("rootfs.tar.gz")).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
    let at = tar.windows(7).position(|w| w == b"Welcome").expect("the motd is in the rootfs");
    tar[at] = b'w';
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &tar).unwrap();
    fs::write(dir.join("rootfs.tar.gz"), encoder.finish().unwrap()).unwrap();
    s.cmd(&["sign", dir.to_str().unwrap(), "--key", "ci.key"]).assert_ok();
    let altered = s.cmd(&["verify", dir.to_str().unwrap(), "--key", "ci.pub", "--rebuild"]);
    assert_fails_naming(
        &altered,
        &["ok      signatures", "rebuild: rootfs.tar.gz differs", "entry `./etc/motd`: content differs"],
    );
    // Re-signing made the statement agree with the altered file, but the manifest does not.
    assert!(
        altered.stdout.contains("FAILED  manifest.json: lists output rootfs.tar.gz as sha256:"),
        "{}",
        altered.describe()
    );
    assert!(!altered.stdout.contains("every listed output matches"), "{}", altered.describe());
}

#[test]
fn verify_rebuild_runs_offline_from_the_inputs_this_store_holds() {
    let s = Signed::new(&["ci"]);
    let candidate = s.candidate();
    // The apt archive (InRelease, indexes, .debs) is gone: only the store still holds what the
    // lockfile pins. The rebuild takes those inputs by hash and derives everything again.
    fs::remove_dir_all(s.path().join("fixtures/apt/archive")).unwrap();
    let ok = s.cmd(&["verify", candidate.to_str().unwrap(), "--key", "ci.pub", "--rebuild"]);
    ok.assert_ok();
    assert!(ok.stdout.contains("ok      rebuild: rootfs.tar.zst is identical"), "{}", ok.describe());
    // With a store that lacks them, the same rebuild needs the archive and says so.
    let empty = s.path().join("empty-store");
    let refused =
        run(with_store(s.path(), &empty, ["verify", candidate.to_str().unwrap(), "--key", "ci.pub", "--rebuild"]));
    assert_eq!(refused.code, Some(2), "{}", refused.describe());
    assert!(refused.stderr.contains("cannot rebuild"), "{}", refused.describe());
}

/// A `manifest.json` that does not parse: `verify` fails a check that names the file and
/// why, `diff` and `sign` stop with an error that does.
#[test]
fn a_malformed_manifest_is_named_by_verify_diff_and_sign() {
    let s = Signed::new(&["ci"]);
    let broken = s.copy("broken");
    let manifest = broken.join("manifest.json");
    fs::write(&manifest, br#"{"manifest-version":1,"#).unwrap();
    let why = "EOF while parsing a value at line 1 column 22";

    let verified = s.verify(&broken, &["ci"], &[]);
    verified.assert_code(1);
    let line = format!("FAILED  `{}` is not a valid manifest: {why}\n", manifest.display());
    assert!(verified.stdout.contains(&line), "no {line:?}\n{}", verified.describe());

    let error = format!("error: `{}` is not a valid manifest\n  caused by: {why}\n", manifest.display());
    let diff = s.cmd(&["diff", broken.to_str().unwrap(), s.candidate().to_str().unwrap()]);
    diff.assert_code(2);
    assert_eq!(diff.stderr, error, "{}", diff.describe());
    let sign = s.cmd(&["sign", broken.to_str().unwrap(), "--key", "ci.key"]);
    sign.assert_code(2);
    assert_eq!(sign.stderr, error, "{}", sign.describe());
}
