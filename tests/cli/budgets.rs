//! A channel's budgets against its head and the signed release note of each promotion
//! (`[channel.NAME.budgets]`, `promote --override`, `channel show --notes`), on candidates
//! built from the fixture archive with different package sets: the refusals name every
//! exceeded budget with its figures, an override is recorded only for a key the policy lists,
//! and the note lists exactly the package changes `diff --json` finds between the same two
//! candidates.

use std::path::{Path, PathBuf};

use fs_err as fs;

use super::refusals::{write_keys, KEYS};
use super::{copy_project, run, with_store, Run};

const DIR: &str = "out/example_1.0_amd64";

/// A folder with the fixed keys (`ci`, `rm1`, `stranger`: their ids are in the snapshots), a
/// policy, one store, and candidates built from copies of the project.
struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn new(policy: &str) -> Self {
        let root = tempfile::Builder::new().prefix("candidate-budgets-").tempdir().unwrap();
        let site = Site { root };
        write_keys(site.path());
        site.write("channels.toml", &format!("[verify]\nkeys = [\"keys/ci.pub\"]\n\n{policy}"));
        site
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    /// The example with `packages` in its base layer instead of `web` alone, locked, built
    /// into this site's store and signed by `ci`; returns its folder.
    fn candidate(&self, name: &str, packages: &str) -> String {
        let dir = self.path().join(name);
        copy_project(&dir, false);
        let recipe = fs::read_to_string(dir.join("recipes/example.toml")).unwrap();
        assert!(recipe.contains("packages = [\"web\"]"));
        fs::write(dir.join("recipes/example.toml"), recipe.replace("packages = [\"web\"]", packages)).unwrap();
        let store = self.path().join("store");
        run(with_store(&dir, &store, ["lock", "recipes/example.toml"])).assert_ok();
        let key = self.path().join("keys/ci.key");
        let key = key.to_str().unwrap();
        run(with_store(&dir, &store, ["build", "recipes/example.toml", "--out", "out", "--sign", key])).assert_ok();
        dir.join(DIR).to_str().unwrap().to_owned()
    }

    fn promote(&self, candidate: &str, channel: &str, key: &str, extra: &[&str]) -> Run {
        let key = format!("keys/{key}.key");
        let mut args = vec!["promote", candidate, "--channel", channel, "--key", &key];
        args.extend_from_slice(extra);
        self.cmd(&args)
    }

    /// A run as a snapshot shows it: the exit code, stdout and stderr, the temporary folder
    /// filtered (digests and key ids are kept: they are what is under test).
    fn shown(&self, run: &Run) -> String {
        let root = self.path().to_str().unwrap();
        let code = run.code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        let mut out = format!("exit code: {code}\n");
        if !run.stdout.is_empty() {
            out.push_str(&format!("----- stdout -----\n{}", run.stdout.replace(root, "[TEMP]")));
        }
        out.push_str(&format!("----- stderr -----\n{}", run.stderr.replace(root, "[TEMP]")));
        out
    }
}

/// The key id `candidate` gives `name`'s public key: the sha256 of its SPKI DER.
fn key_id(name: &str) -> String {
    use base64::Engine as _;
    let public = KEYS.iter().find(|k| k.0 == name).unwrap().2;
    let der = base64::engine::general_purpose::STANDARD.decode(public).unwrap();
    super::sha256(&der).trim_start_matches("sha256:").to_owned()
}

const OLD: &str = "packages = [\"web\", \"hello (= 1.0-1)\"]";
const NEW: &str = "packages = [\"web\", \"hello\", \"tilde\", \"editor-b\"]";

#[test]
fn over_budget_is_refused_with_figures_and_only_an_override_key_may_promote_it() {
    let site = Site::new(
        "[channel.nightly]\nkeys = [\"keys/ci.pub\", \"keys/rm1.pub\", \"keys/stranger.pub\"]\n\n\
         [channel.nightly.budgets]\nmax-packages-added = 1\nmax-packages-removed = 0\nmax-growth-percent = 50\n\
         required-packages = [\"web\"]\noverride-keys = [\"keys/rm1.pub\"]\n\n\
         [channel.pair]\nkeys = [\"keys/ci.pub\", \"keys/rm1.pub\"]\nthreshold = 2\n\n\
         [channel.pair.budgets]\noverride-keys = [\"keys/rm1.pub\"]\n",
    );
    let old = site.candidate("old", OLD);
    let new = site.candidate("new", NEW);

    // The first record: relative budgets have no head to compare with.
    site.promote(&old, "nightly", "ci", &[]).assert_ok();
    let refused = site.promote(&new, "nightly", "ci", &[]);
    refused.assert_code(1);
    assert!(refused.stderr.contains("packages added: 2 > budget 1"), "{}", refused.describe());
    insta::assert_snapshot!("budgets_packages_added_refused", site.shown(&refused));

    // A key the policy trusts for the channel, but not for overrides.
    let stranger = site.promote(&new, "nightly", "stranger", &["--override", "I say so"]);
    stranger.assert_code(1);
    insta::assert_snapshot!("budgets_override_by_another_key_refused", site.shown(&stranger));

    let reason = "hotfix: the site needs tilde and editor-b";
    site.promote(&new, "nightly", "rm1", &["--override", reason]).assert_ok();
    assert!(!site.path().join("store/v1/channels/nightly/00000003.json").exists());

    let show = site.cmd(&["channel", "show", "nightly"]);
    show.assert_ok();
    let line = format!("override by key {}: {reason} (packages added: 2 > budget 1)", key_id("rm1"));
    assert!(show.stdout.contains(&line), "{}", show.describe());
    let json: serde_json::Value =
        serde_json::from_str(&site.cmd(&["channel", "show", "nightly", "--json"]).stdout).unwrap();
    let recorded = &json["history"][0]["override"];
    assert_eq!(recorded["reason"], reason);
    assert_eq!(recorded["key"], format!("sha256:{}", key_id("rm1")));
    assert_eq!(recorded["exceeded"], serde_json::json!([{ "exceeds": "max-packages-added", "added": 2, "budget": 1 }]));
    assert!(json["history"][1].get("override").is_none(), "{json}");
    // The record is signed with the override in it: `channel verify` checks it.
    site.cmd(&["channel", "verify", "nightly"]).assert_ok();

    // A co-signer signs the pending statement as its first signer made it: no override then.
    site.promote(&old, "pair", "ci", &[]).assert_ok();
    let late = site.promote(&old, "pair", "rm1", &["--override", "late"]);
    late.assert_code(1);
    late.assert_stderr_has("channel `pair` has a pending record awaiting signatures");
    site.promote(&old, "pair", "rm1", &[]).assert_ok();
    assert!(site.path().join("store/v1/channels/pair/00000001.json").exists());
}

#[test]
fn release_notes_list_exactly_what_diff_finds_and_render_as_text_and_markdown() {
    let site = Site::new("[channel.nightly]\nkeys = [\"keys/ci.pub\"]\n\n[channel.mirror]\nkeys = [\"keys/ci.pub\"]\n");
    let old = site.candidate("old", OLD);
    let new = site.candidate("new", NEW);
    site.promote(&old, "nightly", "ci", &[]).assert_ok();
    site.promote(&new, "nightly", "ci", &[]).assert_ok();

    let json: serde_json::Value =
        serde_json::from_str(&site.cmd(&["channel", "show", "nightly", "--json"]).stdout).unwrap();
    let note = &json["history"][0]["release_note"];
    let diff = site.cmd(&["diff", &old, &new, "--json"]);
    diff.assert_code(1);
    let diff: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    assert_eq!(note["from"]["id"], diff["a"]);
    assert_eq!(note["to"]["id"], diff["b"]);
    let keyed = |v: &serde_json::Value, fields: &[&str]| -> Vec<Vec<serde_json::Value>> {
        v.as_array().unwrap().iter().map(|p| fields.iter().map(|f| p[*f].clone()).collect()).collect()
    };
    let fields = ["change", "name", "architecture", "a", "b"];
    assert_eq!(keyed(&note["packages"], &fields), keyed(&diff["packages"], &fields));
    assert_eq!(
        keyed(&note["packages"], &["change", "name", "a", "b"]),
        serde_json::from_value::<Vec<Vec<serde_json::Value>>>(serde_json::json!([
            ["added", "editor-b", null, "1.0-1"],
            ["upgraded", "hello", "1.0-1", "1.1-1"],
            ["added", "tilde", null, "1:1.0-1"],
        ]))
        .unwrap()
    );
    let wheel_fields = ["change", "name", "layer", "a", "b"];
    assert_eq!(keyed(&note["wheels"], &wheel_fields), keyed(&diff["wheels"], &wheel_fields));
    // hello ships its changelog: the entry of 1.1-1, newer than 1.0-1.
    let hello = note["packages"].as_array().unwrap().iter().find(|p| p["name"] == "hello").unwrap();
    assert_eq!(hello["changelog"][0]["version"], "1.1-1");
    assert!(hello["changelog"][0]["text"].as_str().unwrap().starts_with("hello (1.1-1) stable; urgency=medium"));
    assert_eq!(hello["changelog"].as_array().unwrap().len(), 1);
    // Every folder whose size changed has a rootfs change in the diff's summary.
    for size in note["sizes"].as_array().unwrap() {
        let folder = size["folder"].as_str().unwrap();
        assert!(diff["rootfs"]["summary"].get(folder).is_some(), "{folder} changed size but not in the diff");
    }

    let text = site.cmd(&["channel", "show", "nightly", "--notes"]);
    text.assert_ok();
    insta::assert_snapshot!("release_notes_text", site.shown(&text));
    let markdown = site.cmd(&["channel", "show", "nightly", "--notes", "--format", "markdown"]);
    markdown.assert_ok();
    insta::assert_snapshot!("release_notes_markdown", site.shown(&markdown));
    let short = site.cmd(&["channel", "show", "nightly", "--notes", "--markdown"]);
    assert_eq!(short.stdout, markdown.stdout);

    // Without the layers in the store, the notes are read from the rootfs archives: the same.
    fs::remove_dir_all(site.path().join("store/v1/layers")).unwrap();
    site.promote(&old, "mirror", "ci", &[]).assert_ok();
    site.promote(&new, "mirror", "ci", &[]).assert_ok();
    let mirror: serde_json::Value =
        serde_json::from_str(&site.cmd(&["channel", "show", "mirror", "--json"]).stdout).unwrap();
    for i in 0..2 {
        assert_eq!(mirror["history"][i]["release_note"], json["history"][i]["release_note"], "record {}", 2 - i);
    }
}

#[test]
fn forbidden_and_required_packages_are_refused_even_for_a_first_record() {
    let site = Site::new(
        "[channel.production]\nkeys = [\"keys/ci.pub\"]\n\n[channel.production.budgets]\n\
         max-packages-added = 0\nmax-size = \"1 MiB\"\nforbidden-packages = [\"til*\"]\n\
         required-packages = [\"editor-*\", \"openssh-server\"]\n",
    );
    let new = site.candidate("new", NEW);
    let refused = site.promote(&new, "production", "ci", &[]);
    refused.assert_code(1);
    insta::assert_snapshot!("budgets_forbidden_and_required_refused", site.shown(&refused));
    assert!(!site.path().join("store/v1/channels/production/00000001.json").exists());
}
