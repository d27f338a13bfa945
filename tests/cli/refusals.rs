//! Snapshots of refusals: the whole output (exit code, stdout, stderr) of each command that
//! refuses, across recipe, lock, build, verify, promote and test, so that the shape of every
//! message (its `error:` line, its `caused by:` chain, its `hint:` lines) is reviewed as a
//! whole, not only the phrase a test looks for.
//!
//! Only the temporary folder and durations are filtered; digests, paths inside the project
//! and exit codes are kept, because they are what is under test. The snapshots live in
//! `tests/cli/snapshots/`; `cargo insta review` accepts a change. Under CI (`CI` set) insta
//! writes no new snapshot: a missing or different one fails.

use std::path::{Path, PathBuf};

use fs_err as fs;

use super::{copy_project, run, with_store, Run};

const DIR: &str = "out/example_1.0_amd64";
const LOCK: &[&str] = &["lock", "recipes/example.toml"];
const BUILD: &[&str] = &["build", "recipes/example.toml", "--out", "out"];

/// Fixed ed25519 keys (PKCS#8 and SPKI, base64 of the DER; made once by `candidate key
/// generate`), so that key ids and signatures in the snapshots are the same on every run.
/// Test keys only: they sign nothing outside these temporary folders.
pub const KEYS: [(&str, &str, &str); 3] = [
    (
        "ci",
        "MC4CAQAwBQYDK2VwBCIEIBOqWnFssKng7LeXwV/2eRVrsdQhcfSdbkPR/BxLoena",
        "MCowBQYDK2VwAyEAfRwLM2A9ikW7spWdvaFiM56Mms5p5dczPdU5iKzPkzs=",
    ),
    (
        "rm1",
        "MC4CAQAwBQYDK2VwBCIEIMue3YZPS4NBYPSc4ldAERcjKD4eYY0x8eQw5ABo9/Mp",
        "MCowBQYDK2VwAyEAHK3OqFtoko3ChslIPZWPY5wYibOeXIjcz1UUijQIhkE=",
    ),
    (
        "stranger",
        "MC4CAQAwBQYDK2VwBCIEIHKMlNEjsBda4TaeqlnqRW2iHiX0boJGqeUCoypVYkHJ",
        "MCowBQYDK2VwAyEAWF8nJGiNIbzXjz75mmNvRg0uc6z4BJmS6JDn4f7Wjjg=",
    ),
];

fn pem(kind: &str, base64: &str) -> String {
    format!("-----BEGIN {kind} KEY-----\n{base64}\n-----END {kind} KEY-----\n")
}

/// Writes [`KEYS`] as `ROOT/keys/NAME.key` (0600) and `ROOT/keys/NAME.pub`.
pub fn write_keys(root: &Path) {
    fs::create_dir_all(root.join("keys")).unwrap();
    for (name, private, public) in KEYS {
        let key = root.join(format!("keys/{name}.key"));
        fs::write(&key, pem("PRIVATE", private)).unwrap();
        let mut mode = fs::metadata(&key).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o600);
        fs::set_permissions(&key, mode).unwrap();
        fs::write(root.join(format!("keys/{name}.pub")), pem("PUBLIC", public)).unwrap();
    }
}

/// A copy of the project (`recipes/`, `lockfiles/`, `fixtures/`) in a temporary folder, with
/// its own store.
struct Project {
    root: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let root = tempfile::Builder::new().prefix("candidate-refusals-").tempdir().unwrap();
        copy_project(root.path(), false);
        Project { root }
    }

    /// The example built into `out/` and signed by `ci`, with keys `ci`, `rm1` and
    /// `stranger`, and a policy: `nightly` trusts `ci`, `qualified` trusts `rm1` and requires
    /// `nightly`.
    fn signed() -> Self {
        let p = Project::new();
        write_keys(p.path());
        p.write(
            "channels.toml",
            "[verify]\nkeys = [\"keys/ci.pub\"]\n\n[channel.nightly]\nkeys = [\"keys/ci.pub\"]\n\n\
             [channel.qualified]\nkeys = [\"keys/rm1.pub\"]\nrequires = [\"nightly\"]\n",
        );
        p.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
        p
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Run {
        run(with_store(self.path(), &self.path().join("store"), args))
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// Replaces the first `from` in the file at `rel` by `to`; `from` must be there.
    #[track_caller]
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path().join(rel);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "`{rel}` does not hold {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// A writable copy of the signed candidate folder (its files are links to read-only
    /// store blobs), to tamper with.
    fn copy_candidate(&self, to: &str) -> PathBuf {
        let from = self.path().join(DIR);
        let to = self.path().join(to);
        for entry in walkdir::WalkDir::new(&from) {
            let entry = entry.unwrap();
            let target = to.join(entry.path().strip_prefix(&from).unwrap());
            if entry.file_type().is_dir() {
                fs::create_dir_all(&target).unwrap();
            } else {
                fs::write(&target, fs::read(entry.path()).unwrap()).unwrap();
            }
        }
        to
    }

    /// The run as a snapshot: exit code, then stdout and stderr in full, with the temporary
    /// folder and durations filtered out.
    fn shown(&self, run: &Run) -> String {
        let root = self.path().to_str().unwrap();
        let filter = |text: &str| durations(&text.replace(root, "[TEMP]"));
        let code = run.code.map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string());
        let mut out = format!("exit code: {code}\n");
        if !run.stdout.is_empty() {
            out.push_str(&format!("----- stdout -----\n{}", filter(&run.stdout)));
        }
        out.push_str(&format!("----- stderr -----\n{}", filter(&run.stderr)));
        out
    }
}

/// ` in 0.01 s` (how long a script ran) → ` in [TIME] s`: the one measured value in output.
fn durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" in ") {
        let (before, after) = rest.split_at(at + 4);
        out.push_str(before);
        let number = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(after.len());
        if number > 0 && after[number..].starts_with(" s") {
            out.push_str("[TIME]");
            rest = &after[number..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Asserts the exit code (so a wrong one fails with the whole output), then the snapshot.
macro_rules! assert_refusal {
    ($project:expr, $run:expr, $code:expr, $name:expr) => {{
        let run = $run;
        run.assert_code($code);
        insta::assert_snapshot!($name, $project.shown(&run));
    }};
}

#[test]
fn durations_are_filtered_and_nothing_else() {
    assert_eq!(durations("exit code 3 in 0.01 s  (x)"), "exit code 3 in [TIME] s  (x)");
    assert_eq!(durations("pinned in 1156 bytes in 12 s"), "pinned in 1156 bytes in [TIME] s");
    assert_eq!(durations("layer in `base` in sha256:0a"), "layer in `base` in sha256:0a");
}

/// A refusal that one edit of the copied project provokes: in `file`, `from` becomes `to`,
/// then `args` must exit with `code`; `name` is the snapshot's.
struct OneEdit {
    name: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    args: &'static [&'static str],
    code: i32,
}

const RECIPE: &str = "recipes/example.toml";
const LOCKFILE: &str = "lockfiles/example.lock";

const ONE_EDIT: &[OneEdit] = &[
    // An unknown key: the refusal names the key and its line.
    OneEdit {
        name: "recipe_unknown_key",
        file: RECIPE,
        from: "release = \"bookworm\"\n",
        to: "release = \"bookworm\"\nrelase = \"trixie\"\n",
        args: LOCK,
        code: 2,
    },
    // An invalid value: the refusal names the value and its line.
    OneEdit {
        name: "recipe_invalid_value",
        file: RECIPE,
        from: "mode = \"0700\"",
        to: "mode = \"0999\"",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "recipe_package_with_a_bad_version_keeps_its_hint",
        file: RECIPE,
        from: "packages = [\"web\"]",
        to: "packages = [\"web (>= x:1)\"]",
        args: LOCK,
        code: 2,
    },
    OneEdit {
        name: "lock_check_changed_recipe",
        file: RECIPE,
        from: "packages = [\"web\"]",
        to: "packages = []",
        args: &["lock", "recipes/example.toml", "--check"],
        code: 1,
    },
    // base-files' pin, one hex digit changed: no signed index vouches for it.
    OneEdit {
        name: "build_altered_package_pin",
        file: LOCKFILE,
        from: "sha256:8ad530ceefdc01e7e654d2f961ce36767796717400a63b57735f712b5f07bebf",
        to: "sha256:8ad531ceefdc01e7e654d2f961ce36767796717400a63b57735f712b5f07bebf",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "build_damaged_lockfile",
        file: LOCKFILE,
        from: "name = \"base-files\"",
        to: "name = base-files",
        args: BUILD,
        code: 2,
    },
    // #16 hole 4: a `[[package]]` moved by hand to a layer the recipe does not have, or to
    // one without packages, was built without it (exit 0) while the manifest listed it.
    OneEdit {
        name: "build_package_moved_to_an_unknown_layer",
        file: LOCKFILE,
        from: "layer = \"base\"\nfilename = \"pool/main/b/base-files/",
        to: "layer = \"nowhere\"\nfilename = \"pool/main/b/base-files/",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "build_package_moved_to_a_layer_without_packages",
        file: LOCKFILE,
        from: "layer = \"base\"\nfilename = \"pool/main/b/base-files/",
        to: "layer = \"config\"\nfilename = \"pool/main/b/base-files/",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "build_input_moved_to_a_layer_without_tarballs",
        file: LOCKFILE,
        from: "layer = \"app\"\nkind = \"tarball\"\norigin = \"../fixtures/example/app.tar.gz\"",
        to: "layer = \"config\"\nkind = \"tarball\"\norigin = \"../fixtures/example/app.tar.gz\"",
        args: BUILD,
        code: 2,
    },
    // A `[[package]]` added or removed by hand (a bad merge) was built as locked: the recipe
    // digest does not cover the packages. A reason the layer does not give, a reason the
    // archive does not vouch for, a dependency of a package no longer locked.
    OneEdit {
        name: "build_package_for_a_request_the_layer_does_not_make",
        file: LOCKFILE,
        from: "reason = \"web depends on data-all\"",
        to: "reason = \"requested: data-all\"",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "build_package_claimed_required",
        file: LOCKFILE,
        from: "reason = \"web depends on data-all\"",
        to: "reason = \"priority: required\"",
        args: BUILD,
        code: 2,
    },
    OneEdit {
        name: "build_dependency_of_a_package_removed_by_hand",
        file: LOCKFILE,
        from: "\n[[package]]\nname = \"web\"\nversion = \"1.0-1\"\narchitecture = \"amd64\"\narchive = \"test\"\nlayer = \"base\"\nfilename = \"pool/main/w/web/web_1.0-1_amd64.deb\"\nsize = 1176\nsha256 = \"sha256:469ae3eccfb4bb7d7137e10e6ed01c4821eec55b87262bcad36bde294a299635\"\nreason = \"requested: web\"\ndepends = [\"base-files:amd64\", \"data-all:all\", \"libc6:amd64\", \"mawk:amd64\"]\n",
        to: "",
        args: BUILD,
        code: 2,
    },
    // The archive's secret key given as its keyring (the hint comes from `ReleaseError`).
    OneEdit {
        name: "lock_secret_keyring",
        file: RECIPE,
        from: "keys/test-archive.gpg",
        to: "keys/test-archive.key",
        args: LOCK,
        code: 2,
    },
];

#[test]
fn refusals_after_one_edit() {
    for edit in ONE_EDIT {
        let p = Project::new();
        p.edit(edit.file, edit.from, edit.to);
        let run = p.cmd(edit.args);
        assert_refusal!(p, run, edit.code, edit.name);
    }
}

/// The requested package and what only it needed, both removed by hand: every entry left
/// has a reason the layer gives, but the request is met by nothing locked.
#[test]
fn build_refuses_a_lockfile_that_meets_no_package_for_a_request() {
    let p = Project::new();
    p.edit(LOCKFILE, "\n[[package]]\nname = \"web\"\nversion = \"1.0-1\"\narchitecture = \"amd64\"\narchive = \"test\"\nlayer = \"base\"\nfilename = \"pool/main/w/web/web_1.0-1_amd64.deb\"\nsize = 1176\nsha256 = \"sha256:469ae3eccfb4bb7d7137e10e6ed01c4821eec55b87262bcad36bde294a299635\"\nreason = \"requested: web\"\ndepends = [\"base-files:amd64\", \"data-all:all\", \"libc6:amd64\", \"mawk:amd64\"]\n", "");
    p.edit(LOCKFILE, "\n[[package]]\nname = \"data-all\"\nversion = \"2024a-1\"\narchitecture = \"all\"\narchive = \"test\"\nlayer = \"base\"\nfilename = \"pool/main/d/data-all/data-all_2024a-1_all.deb\"\nsize = 924\nsha256 = \"sha256:ac1628857a73071ff617d50313d88d66e1f173d34699c4da7b3ef5bc092902e1\"\nreason = \"web depends on data-all\"\ndepends = []\n", "");
    assert_refusal!(p, p.cmd(BUILD), 2, "build_request_met_by_nothing_locked");
}

#[test]
fn build_refuses_a_stale_lockfile_with_a_hint() {
    let p = Project::new();
    // A local input edited after the lock.
    p.write("fixtures/example/etc/motd", "edited after the lock\n");
    assert_refusal!(p, p.cmd(BUILD), 1, "build_stale_lockfile");
}

#[test]
fn build_refuses_a_missing_lockfile() {
    let p = Project::new();
    fs::remove_file(p.path().join("lockfiles/example.lock")).unwrap();
    assert_refusal!(p, p.cmd(BUILD), 1, "build_missing_lockfile");
}

#[test]
fn build_refuses_an_input_that_does_not_match_its_pin() {
    let p = Project::new();
    let mut bytes = fs::read(p.path().join("fixtures/example/app.tar.gz")).unwrap();
    bytes.push(0);
    fs::write(p.path().join("fixtures/example/app.tar.gz"), bytes).unwrap();
    assert_refusal!(p, p.cmd(BUILD), 2, "build_corrupted_input");
}

#[test]
fn build_refuses_a_layer_that_writes_through_its_own_symlink() {
    let p = Project::new();
    let mut recipe = fs::read_to_string(p.path().join("recipes/example.toml")).unwrap();
    recipe.push_str(
        "\n[[layer]]\nname = \"links\"\nsymlinks = [{ path = \"/srv/www\", target = \"/var/www\" }, \
         { path = \"/srv/www/index.html\", target = \"/dev/null\" }]\n",
    );
    p.write("recipes/example.toml", &recipe);
    p.cmd(LOCK).assert_ok();
    assert_refusal!(p, p.cmd(BUILD), 2, "build_layer_tree_conflict");
}

/// A signed file replaced by a symlink to a copy of it outside the folder: the bytes hash
/// the same, but they live where the check does not reach (and may change after it).
#[test]
fn verify_refuses_a_symlink_in_the_folder() {
    let p = Project::signed();
    let copy = p.copy_candidate("linked/example_1.0_amd64");
    let outside = p.path().join("elsewhere.tar.gz");
    fs::copy(copy.join("rootfs.tar.gz"), &outside).unwrap();
    fs::remove_file(copy.join("rootfs.tar.gz")).unwrap();
    std::os::unix::fs::symlink(&outside, copy.join("rootfs.tar.gz")).unwrap();
    let run = p.cmd(&["verify", "linked/example_1.0_amd64", "--key", "keys/ci.pub"]);
    run.assert_code(2).assert_stderr_has("`rootfs.tar.gz` in `linked/example_1.0_amd64` is a symlink");
}

#[test]
fn verify_refuses_a_tampered_file_and_an_untrusted_signer() {
    let p = Project::signed();
    let copy = p.copy_candidate("tampered/example_1.0_amd64");
    let mut bytes = fs::read(copy.join("rootfs.tar.gz")).unwrap();
    bytes[100] ^= 1;
    fs::write(copy.join("rootfs.tar.gz"), bytes).unwrap();
    let run = p.cmd(&["verify", "tampered/example_1.0_amd64", "--key", "keys/ci.pub"]);
    assert_refusal!(p, run, 1, "verify_tampered_file");

    let run = p.cmd(&["verify", DIR, "--key", "keys/stranger.pub"]);
    assert_refusal!(p, run, 1, "verify_untrusted_signer");
}

#[test]
fn verify_refuses_a_missing_key() {
    let p = Project::signed();
    assert_refusal!(p, p.cmd(&["verify", DIR, "--key", "keys/missing.pub"]), 2, "verify_missing_key");
}

#[test]
fn promote_refuses_an_untrusted_key_and_a_missing_prerequisite() {
    let p = Project::signed();
    let run = p.cmd(&["promote", DIR, "--channel", "nightly", "--key", "keys/stranger.key"]);
    assert_refusal!(p, run, 1, "promote_untrusted_key");

    let run = p.cmd(&["promote", DIR, "--channel", "qualified", "--key", "keys/rm1.key"]);
    assert_refusal!(p, run, 1, "promote_missing_prerequisite");
}

/// #16: two promotes to one channel at once made one fail (both claimed the same record
/// number, or read a record another was still writing). They take turns on the channel's
/// lock: all succeed, the log numbered 1..=N. (With 4 at once main passed by luck; 12 fail it.)
#[test]
fn concurrent_promotes_to_one_channel_take_turns() {
    let p = Project::signed();
    const N: usize = 12;
    let children: Vec<_> = (0..N)
        .map(|_| {
            let mut cmd = with_store(
                p.path(),
                &p.path().join("store"),
                ["promote", DIR, "--channel", "nightly", "--key", "keys/ci.key", "--channels", "chans"],
            );
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent promote failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut records: Vec<String> = fs::read_dir(p.path().join("chans/nightly"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    records.sort();
    let expected: Vec<String> = (1..=N).map(|i| format!("{i:08}.json")).collect();
    assert_eq!(records, expected);
}

#[test]
fn test_refuses_a_failing_script() {
    // The namespace sandbox needs root; the example image has no shell of its own, so the
    // host's static busybox is added as one.
    if !(candidate::testing::root() && candidate::testing::file("/bin/busybox", "busybox-static")) {
        return;
    }
    let p = Project::signed();
    let busybox = "\n[[layer]]\nname = \"busybox\"\n\
                   files = [{ from = \"/bin/busybox\", to = \"/usr/bin/busybox\", mode = \"0755\" }]\n\
                   symlinks = [{ path = \"/usr/bin/sh\", target = \"busybox\" }, \
                   { path = \"/usr/bin/echo\", target = \"busybox\" }]\n";
    let mut recipe = fs::read_to_string(p.path().join("recipes/example.toml")).unwrap();
    recipe.push_str(busybox);
    p.write("recipes/example.toml", &recipe);
    p.cmd(LOCK).assert_ok();
    p.cmd(&["build", "recipes/example.toml", "--out", "out", "--sign", "keys/ci.key"]).assert_ok();
    p.write("scripts/serves.sh", "#!/bin/sh\necho ok\n");
    p.write("scripts/answers.sh", "#!/bin/sh\necho 'asking the web server'\necho 'no answer on port 80' >&2\nexit 3\n");
    let run = p.cmd(&["test", DIR, "--script", "scripts/serves.sh", "--script", "scripts/answers.sh"]);
    run.assert_code(1);
    // This candidate holds the host's busybox, so its id differs from host to host: it is
    // replaced by what it must be, the sha256 of the manifest, not filtered as any digest.
    let id = super::sha256(&fs::read(p.path().join(DIR).join("manifest.json")).unwrap());
    assert!(run.stdout.contains(&id), "the verdict does not name the candidate {id}\n{}", run.describe());
    insta::assert_snapshot!("test_failing_script", p.shown(&run).replace(&id, "[sha256 of its manifest.json]"));
}
