//! Debian packages end to end: `lock` and `build` against a copy of the signed test archive
//! (`fixtures/apt/archive`), tampered with and re-signed with the TEST key.
//!
//! Every refusal must exit with code 2, print an `error:` naming the culprit, and leave
//! nothing half-written: no lockfile (at `lock`), no candidate folder (at `build`), no regular
//! file under the store's `tmp/`.
//!
//! Archives are re-signed with the system `gpg` in a throwaway `GNUPGHOME`; hostile packages
//! are assembled with Python's `tarfile` and `ar`, indexes recompressed with `xz`/`gzip`.

use fs_err as fs;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{fixture, sha256, walk, Run, BIN};

const CANDIDATE_DIR: &str = "fixture_1.0_amd64";
const AMD64: &str = "dists/stable/main/binary-amd64";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A recipe of image `fixture` 1.0 (amd64, `rootfs.tar`) with one layer of exactly `packages`
/// from archive `test` (suite `stable`, `main`, the keyring at `../keyring.gpg`), whose
/// location is `location`: its `url = …` line and any other of its keys.
pub(crate) fn fixture_recipe(location: &str, packages: &[&str]) -> String {
    let list = packages.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"[image]
name = "fixture"
version = "1.0"
architecture = "amd64"
os = "debian"
release = "stable"
source-date-epoch = "archive"

[archive.test]
{location}suite = "stable"
components = ["main"]
keyring = "../keyring.gpg"

[[layer]]
name = "base"
packages = [{list}]

[output]
formats = ["rootfs.tar"]
"#
    )
}

/// Runs `cmd`, panicking with its stderr if it fails; returns stdout.
#[track_caller]
fn sh(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn hex(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_owned()
}

/// A temporary folder holding `archive/` (a copy of the fixture archive), `keyring.gpg`,
/// `recipes/`, a store and an output folder.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("candidate-debian-").tempdir().expect("tempdir");
        let sb = Sandbox { dir };
        fs::create_dir_all(sb.root().join("recipes")).unwrap();
        copy_dir(&fixture("apt/archive"), &sb.archive());
        fs::copy(fixture("apt/keys/test-archive.gpg"), sb.root().join("keyring.gpg")).unwrap();
        sb
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn archive(&self) -> PathBuf {
        self.root().join("archive")
    }

    fn store(&self) -> PathBuf {
        self.root().join("store")
    }

    fn dist(&self) -> PathBuf {
        self.root().join("dist")
    }

    fn candidate_dir(&self) -> PathBuf {
        self.dist().join(CANDIDATE_DIR)
    }

    fn lockfile(&self, stem: &str) -> PathBuf {
        self.root().join("lockfiles").join(format!("{stem}.lock"))
    }

    fn release(&self) -> PathBuf {
        self.archive().join("dists/stable/Release")
    }

    fn in_release(&self) -> PathBuf {
        self.archive().join("dists/stable/InRelease")
    }

    /// Writes `recipes/STEM.toml`: one layer with exactly `packages` from `archive_dir`.
    fn recipe_from(&self, stem: &str, archive_dir: &str, packages: &[&str]) -> PathBuf {
        let path = self.root().join("recipes").join(format!("{stem}.toml"));
        fs::write(&path, fixture_recipe(&format!("url = \"../{archive_dir}\"\n"), packages)).unwrap();
        path
    }

    fn recipe(&self, stem: &str, packages: &[&str]) -> PathBuf {
        self.recipe_from(stem, "archive", packages)
    }

    fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = Command::new(BIN);
        cmd.arg("--store").arg(self.store()).args(&args);
        cmd.current_dir(self.root())
            .env("HOME", self.root().join("home"))
            .env("XDG_CACHE_HOME", self.root().join("xdg-cache"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("CANDIDATE_STORE");
        let out = cmd.output().expect("failed to run the candidate binary");
        let what = format!(
            "candidate --store {} {}",
            self.store().display(),
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        Run::new(what, out)
    }

    fn lock(&self, recipe: &Path) -> Run {
        self.run([OsStr::new("lock"), recipe.as_os_str()])
    }

    fn build(&self, recipe: &Path) -> Run {
        self.run([OsStr::new("build"), recipe.as_os_str(), OsStr::new("--out"), self.dist().as_os_str()])
    }

    /// Regular files (not directories) under the store's `tmp/` folders.
    fn store_tmp_files(&self) -> Vec<PathBuf> {
        walk(&self.store())
            .into_iter()
            .filter(|p| {
                p.strip_prefix(self.store()).unwrap().components().any(|c| c.as_os_str() == "tmp") && !p.is_dir()
            })
            .collect()
    }

    /// A refused `lock`: exit 2, `error:` naming every `needles`, no lockfile, nothing in tmp.
    #[track_caller]
    fn assert_lock_refused(&self, recipe: &Path, needles: &[&str]) -> Run {
        let stem = recipe.file_stem().unwrap().to_str().unwrap();
        let before = fs::read(self.lockfile(stem)).ok();
        let run = self.lock(recipe);
        run.assert_code(2).assert_stderr_has("error:");
        for needle in needles {
            run.assert_stderr_has(needle);
        }
        assert_eq!(
            fs::read(self.lockfile(stem)).ok(),
            before,
            "a refused lock changed the lockfile\n{}",
            run.describe()
        );
        self.assert_no_tmp_files(&run);
        run
    }

    /// A refused `build`: exit 2, `error:` naming every `needles`, no candidate folder.
    #[track_caller]
    fn assert_build_refused(&self, recipe: &Path, needles: &[&str]) -> Run {
        let run = self.build(recipe);
        run.assert_code(2).assert_stderr_has("error:");
        for needle in needles {
            run.assert_stderr_has(needle);
        }
        assert!(!run.stdout.contains("sha256:"), "a refused build printed a candidate id\n{}", run.describe());
        assert!(!self.candidate_dir().exists(), "a refused build left {}", self.candidate_dir().display());
        let outputs: Vec<_> = walk(&self.dist()).into_iter().filter(|p| !p.is_dir()).collect();
        assert!(outputs.is_empty(), "a refused build left files under dist: {outputs:?}");
        self.assert_no_tmp_files(&run);
        run
    }

    #[track_caller]
    fn assert_no_tmp_files(&self, run: &Run) {
        let tmp = self.store_tmp_files();
        assert!(tmp.is_empty(), "refusal left files in the store's tmp/: {tmp:?}\n{}", run.describe());
    }

    // --- archive surgery ------------------------------------------------------------------

    fn release_text(&self) -> String {
        fs::read_to_string(self.release()).unwrap()
    }

    /// Sets (or adds, after `Date:`) a field of `Release`. Call `resign` afterwards.
    fn set_release_field(&self, name: &str, value: &str) {
        let text = self.release_text();
        let prefix = format!("{name}: ");
        let mut out = String::new();
        // Replaced where it is; added after `Date:` only if it is nowhere (`Suite` comes after).
        let mut done = false;
        let present = text.lines().any(|l| l.starts_with(&prefix));
        for line in text.lines() {
            if line.starts_with(&prefix) {
                out.push_str(&format!("{prefix}{value}\n"));
                done = true;
            } else {
                out.push_str(line);
                out.push('\n');
                if !present && !done && line.starts_with("Date: ") {
                    out.push_str(&format!("{prefix}{value}\n"));
                    done = true;
                }
            }
        }
        assert!(done);
        fs::write(self.release(), out).unwrap();
    }

    /// Rewrites `Release`'s hash lists from the files on disk: keeps the header, drops
    /// MD5Sum/SHA1/SHA512, regenerates `SHA256:` (same files, same order).
    fn rehash_release(&self) {
        let text = self.release_text();
        let mut header = String::new();
        let mut files = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            if let Some(entry) = line.strip_prefix(' ') {
                if section == "SHA256" {
                    files.push(entry.split_whitespace().nth(2).unwrap().to_owned());
                }
            } else if let Some(name) = line.strip_suffix(':') {
                section = name.to_owned();
            } else {
                header.push_str(line);
                header.push('\n');
            }
        }
        header.push_str("SHA256:\n");
        for rel in files {
            let bytes = fs::read(self.archive().join("dists/stable").join(&rel)).unwrap();
            header.push_str(&format!(" {} {:>16} {rel}\n", hex(&sha256(&bytes)), bytes.len()));
        }
        fs::write(self.release(), header).unwrap();
    }

    /// Clear-signs `Release` into `InRelease` with the test key (removes `Release.gpg`).
    fn resign(&self) {
        let home = gnupg_home();
        sh(Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--quiet", "--import"])
            .arg(fixture("apt/keys/test-archive.key")));
        self.clearsign(home.path());
    }

    fn clearsign(&self, home: &Path) {
        let _ = fs::remove_file(self.archive().join("dists/stable/Release.gpg"));
        sh(Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--quiet", "--yes", "--digest-algo", "SHA512", "--clearsign", "-o"])
            .arg(self.in_release())
            .arg(self.release()));
    }

    fn packages_text(&self) -> String {
        fs::read_to_string(self.archive().join(AMD64).join("Packages")).unwrap()
    }

    /// Replaces the amd64 `Packages` (and its .gz/.xz), rehashes `Release` and re-signs.
    fn set_packages(&self, text: &str) {
        let dir = self.archive().join(AMD64);
        fs::write(dir.join("Packages"), text).unwrap();
        let xz = sh(Command::new("xz").args(["-c", "-T1"]).arg(dir.join("Packages")));
        fs::write(dir.join("Packages.xz"), xz).unwrap();
        let gz = sh(Command::new("gzip").args(["-n", "-c"]).arg(dir.join("Packages")));
        fs::write(dir.join("Packages.gz"), gz).unwrap();
        self.rehash_release();
        self.resign();
    }

    /// Puts `deb` into the pool as `NAME_1.0-1_amd64.deb` and returns its Packages stanza.
    fn pool_deb(&self, name: &str, deb: &[u8]) -> String {
        self.pool_deb_version(name, "1.0-1", deb)
    }

    /// Puts `deb` into the pool as `NAME_VERSION_amd64.deb` and returns its Packages stanza.
    fn pool_deb_version(&self, name: &str, version: &str, deb: &[u8]) -> String {
        let rel = format!("pool/main/h/{name}/{name}_{version}_amd64.deb");
        let path = self.archive().join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, deb).unwrap();
        format!(
            "Package: {name}\nArchitecture: amd64\nVersion: {version}\nPriority: optional\nSection: misc\n\
             Maintainer: Hostile <hostile@candidate.invalid>\nInstalled-Size: 1\nFilename: {rel}\n\
             Size: {}\nSHA256: {}\nDescription: hostile test package\n hostile test package\n",
            deb.len(),
            hex(&sha256(deb))
        )
    }

    /// Adds hostile packages `(name, deb bytes)` to the archive, rehashed and re-signed.
    fn add_packages(&self, debs: &[(&str, Vec<u8>)]) {
        let mut text = self.packages_text();
        for (name, deb) in debs {
            if !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(&self.pool_deb(name, deb));
        }
        self.set_packages(&text);
    }

    /// The pinned `Filename` of `package` in the fixture's amd64 Packages.
    fn pool_path(&self, package: &str) -> PathBuf {
        self.archive().join(stanza_field(&self.packages_text(), package, "Filename"))
    }
}

fn stanza_field(packages: &str, package: &str, field: &str) -> String {
    let stanza = packages
        .split("\n\n")
        .find(|s| s.lines().any(|l| l == format!("Package: {package}")))
        .unwrap_or_else(|| panic!("no stanza for {package}"));
    let prefix = format!("{field}: ");
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{package} has no {field}"))
        .to_owned()
}

fn gnupg_home() -> tempfile::TempDir {
    let home = tempfile::Builder::new().prefix("candidate-gnupg-").tempdir().unwrap();
    let mut perms = fs::metadata(home.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    fs::set_permissions(home.path(), perms).unwrap();
    home
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Python that writes a .deb: argv = out, package, JSON list of data.tar entries
/// `{"name", "type": "file"|"dir"|"symlink", "data"?, "target"?}`.
const MAKE_DEB: &str = r#"
import io, json, sys, tarfile
out, pkg, entries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", format=tarfile.GNU_FORMAT) as t:
        for m in members:
            info = tarfile.TarInfo(m["name"])
            info.mtime = 1700000000
            data = m.get("data", "").encode()
            if m["type"] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif m["type"] == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, m["target"], 0o777
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()

import os
control = ("Package: %s\nVersion: " + os.environ.get("DEB_VERSION", "1.0-1") + "\nArchitecture: amd64\n"
           "Maintainer: Hostile <hostile@candidate.invalid>\n"
           "Description: hostile test package\n hostile test package\n") % pkg
members = [("debian-binary", b"2.0\n"),
           ("control.tar.xz", tar([{"name": "./", "type": "dir"},
                                   {"name": "./control", "type": "file", "data": control}])),
           ("data.tar.xz", open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else tar(entries))]
with open(out, "wb") as f:
    f.write(b"!<arch>\n")
    for name, data in members:
        f.write(("%-16s%-12s%-6s%-6s%-8s%-10s" % (name, 0, 0, 0, "100644", len(data))).encode() + b"`\n")
        f.write(data)
        if len(data) % 2:
            f.write(b"\n")
"#;

/// A .deb for `package` whose data.tar holds `entries` (JSON, see `MAKE_DEB`).
fn make_deb(package: &str, entries: &str) -> Vec<u8> {
    make_deb_with(package, entries, None)
}

/// A .deb for `package`; its data.tar.xz is the file `data` if given, else built from `entries`.
fn make_deb_with(package: &str, entries: &str, data: Option<&Path>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.deb");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(MAKE_DEB).arg(&out).arg(package).arg(entries);
    if let Some(data) = data {
        cmd.arg(data);
    }
    sh(&mut cmd);
    fs::read(&out).unwrap()
}

/// `tar -tvvf` of a tar file.
fn tar_verbose(archive: &Path) -> String {
    String::from_utf8(sh(Command::new("tar").arg("-tvvf").arg(archive))).unwrap()
}

fn tar_names(archive: &Path) -> Vec<String> {
    String::from_utf8(sh(Command::new("tar").arg("-tf").arg(archive))).unwrap().lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Happy path
// ---------------------------------------------------------------------------------------------

const FOUR: &[&str] = &["base-files", "dash", "libc6", "passwd"];

#[test]
fn lock_and_build_four_packages() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("four", FOUR);
    sb.lock(&recipe).assert_ok();
    let lock = fs::read_to_string(sb.lockfile("four")).unwrap();
    for pkg in FOUR {
        let pinned = stanza_field(&sb.packages_text(), pkg, "SHA256");
        assert!(lock.contains(&pinned), "lockfile does not pin {pkg}'s sha256 {pinned}:\n{lock}");
    }
    let build = sb.build(&recipe);
    build.assert_ok();
    assert!(build.stdout.contains("sha256:"), "build printed no candidate id\n{}", build.describe());
    let rootfs = sb.candidate_dir().join("rootfs.tar");
    let names = tar_names(&rootfs);
    let listing = tar_verbose(&rootfs);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .map(str::to_owned)
    };
    assert!(names.iter().any(|n| n == "./usr/bin/sh"), "./usr/bin/sh missing:\n{listing}");
    let bin = line("./bin").unwrap_or_else(|| panic!("./bin missing:\n{listing}"));
    assert!(bin.starts_with('l') && bin.ends_with("./bin -> usr/bin"), "./bin is not a symlink to usr/bin: {bin}");
    assert!(!names.iter().any(|n| n.starts_with("./bin/")), "entries under ./bin/ (a real dir?):\n{listing}");
    let passwd = line("./usr/bin/passwd").unwrap_or_else(|| panic!("passwd missing:\n{listing}"));
    assert!(passwd.starts_with("-rwsr-xr-x"), "passwd is not setuid 4755: {passwd}");

    // Extracting with the owners and capabilities the archive records needs root.
    let have = candidate::testing::tool;
    if !(candidate::testing::root() && have("getcap", "libcap2-bin") && have("dpkg", "dpkg")) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    sh(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&rootfs)
        .arg("-C")
        .arg(root.path()));
    let meta = fs::metadata(root.path().join("usr/bin/passwd")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777, 0o4755);
    let caps = String::from_utf8(sh(Command::new("getcap").arg(root.path().join("usr/bin/pinger")))).unwrap();
    assert!(caps.contains("cap_net_raw") && caps.contains("ep"), "pinger lost security.capability: {caps:?}");
    let list =
        String::from_utf8(sh(Command::new("dpkg").arg(format!("--root={}", root.path().display())).arg("-l"))).unwrap();
    for pkg in FOUR {
        assert!(
            list.lines().any(|l| l.starts_with("iU")
                && l.split_whitespace().nth(1).is_some_and(|n| n.split(':').next() == Some(*pkg))),
            "dpkg -l does not list {pkg} as iU:\n{list}"
        );
    }
    let verify =
        Command::new("dpkg").arg(format!("--root={}", root.path().display())).arg("--verify").output().unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "dpkg --verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals at lock: the signed Release and the indexes it vouches for
// ---------------------------------------------------------------------------------------------

#[test]
fn lock_refuses_inrelease_signed_by_an_untrusted_key() {
    let sb = Sandbox::new();
    let home = gnupg_home();
    sh(Command::new("gpg").arg("--homedir").arg(home.path()).args([
        "--batch",
        "--quiet",
        "--passphrase",
        "",
        "--quick-generate-key",
        "stranger <stranger@candidate.invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    sb.clearsign(home.path());
    let recipe = sb.recipe("r", FOUR);
    let run = sb.assert_lock_refused(&recipe, &["InRelease"]);
    let text = run.stderr.to_lowercase();
    assert!(text.contains("keyring") && text.contains("signature"), "no word of signature/keyring\n{}", run.describe());
}

#[test]
fn lock_refuses_tampered_signed_text() {
    let sb = Sandbox::new();
    let text = fs::read_to_string(sb.in_release()).unwrap();
    assert!(text.contains("Origin: candidate-test\n"));
    fs::write(sb.in_release(), text.replacen("Origin: candidate-test\n", "Origin: candidate-tesT\n", 1)).unwrap();
    let recipe = sb.recipe("r", FOUR);
    sb.assert_lock_refused(&recipe, &["InRelease"]);
}

#[test]
fn lock_refuses_data_appended_after_the_signature() {
    let sb = Sandbox::new();
    let mut text = fs::read_to_string(sb.in_release()).unwrap();
    assert!(text.trim_end().ends_with("-----END PGP SIGNATURE-----"));
    text.push_str(&format!("SHA256:\n {} 1 main/binary-amd64/Packages\n", "0".repeat(64)));
    fs::write(sb.in_release(), text).unwrap();
    let recipe = sb.recipe("r", FOUR);
    sb.assert_lock_refused(&recipe, &["InRelease"]);
}

#[test]
fn lock_refuses_packages_xz_not_matching_release() {
    let sb = Sandbox::new();
    // A valid xz of a different Packages (dash removed), Release left as signed.
    let dir = sb.archive().join(AMD64);
    let text = sb.packages_text();
    let without: Vec<_> = text.split("\n\n").filter(|s| !s.starts_with("Package: hello\n")).collect();
    let other = dir.join("other");
    fs::write(&other, without.join("\n\n")).unwrap();
    fs::write(dir.join("Packages.xz"), sh(Command::new("xz").arg("-c").arg(&other))).unwrap();
    fs::remove_file(&other).unwrap();
    let recipe = sb.recipe("r", FOUR);
    sb.assert_lock_refused(&recipe, &["Packages.xz"]);
}

const EARLIER: &str = "Mon, 13 Nov 2023 22:13:20 UTC";

#[test]
fn lock_refuses_rollback_unless_allowed() {
    let sb = Sandbox::new();
    // First lock: the fixture as published, from `orig/`.
    copy_dir(&sb.archive(), &sb.root().join("orig"));
    sb.lock(&sb.recipe_from("r", "orig", FOUR)).assert_ok();
    // Then an older, validly signed state of the archive, locked against the same store.
    sb.set_release_field("Date", EARLIER);
    sb.resign();
    let old_recipe = sb.recipe("r", FOUR);

    let run = sb.assert_lock_refused(&old_recipe, &["rollback"]);
    assert!(
        run.stderr.contains("InRelease") && run.stderr.contains("older"),
        "rollback error does not say what\n{}",
        run.describe()
    );

    sb.run([OsStr::new("lock"), old_recipe.as_os_str(), OsStr::new("--allow-rollback")]).assert_ok();
}

#[test]
fn lock_refuses_expired_valid_until() {
    let sb = Sandbox::new();
    sb.set_release_field("Valid-Until", "Wed, 15 Nov 2023 22:13:20 UTC");
    sb.resign();
    let recipe = sb.recipe("r", FOUR);
    let run = sb.assert_lock_refused(&recipe, &["Valid-Until"]);
    assert!(run.stderr.to_lowercase().contains("expire"), "not called expired\n{}", run.describe());
}

/// The record of the newest `InRelease` seen, garbled: an error naming it, not a rollback
/// check turned off (and the record overwritten).
#[test]
fn a_garbled_rollback_record_is_an_error() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("r", FOUR);
    sb.lock(&recipe).assert_ok();
    let records: Vec<PathBuf> = fs::read_dir(sb.store().join("v1/archives"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    fs::write(&records[0], "garbage").unwrap();
    fs::remove_file(sb.lockfile("r")).unwrap();
    let run = sb.lock(&recipe);
    run.assert_code(2).assert_stderr_has("its rollback record").assert_stderr_has("is not valid");
    assert_eq!(fs::read(&records[0]).unwrap(), b"garbage");
}

/// A validly signed `InRelease` of another suite, served under the recipe's suite (a mirror
/// answering `dists/stable/` with sid's): refused, naming both.
#[test]
fn lock_refuses_another_suite_s_inrelease() {
    let sb = Sandbox::new();
    sb.set_release_field("Suite", "unstable");
    sb.set_release_field("Codename", "sid");
    sb.resign();
    let recipe = sb.recipe("r", FOUR);
    let run =
        sb.assert_lock_refused(&recipe, &["signed for suite `unstable` (codename `sid`), not the recipe's `stable`"]);
    assert!(!sb.lockfile("r").exists(), "{}", run.describe());
}

#[test]
fn resigned_copy_still_locks() {
    // The control for the surgery above: rehashing and re-signing an untouched copy is accepted.
    let sb = Sandbox::new();
    sb.set_packages(&sb.packages_text());
    let recipe = sb.recipe("r", FOUR);
    sb.lock(&recipe).assert_ok();
    sb.build(&recipe).assert_ok();
}

// ---------------------------------------------------------------------------------------------
// Refusals at build: fetched .debs against the pins and the signed indexes
// ---------------------------------------------------------------------------------------------

#[test]
fn build_refuses_a_replaced_deb() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("r", FOUR);
    sb.lock(&recipe).assert_ok();
    let pinned = stanza_field(&sb.packages_text(), "dash", "SHA256");
    let dash = sb.pool_path("dash");
    fs::copy(sb.pool_path("hello"), &dash).unwrap();
    let actual = hex(&sha256(&fs::read(&dash).unwrap()));
    let run = sb.assert_build_refused(&recipe, &["dash"]);
    assert!(run.stderr.contains(&pinned[..12]), "the pinned digest is not named\n{}", run.describe());
    assert!(run.stderr.contains(&actual[..12]), "the fetched digest is not named\n{}", run.describe());
}

#[test]
fn build_refuses_a_lockfile_pin_no_signed_index_vouches_for() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("r", FOUR);
    sb.lock(&recipe).assert_ok();
    let packages = sb.packages_text();
    let (old_sha, old_size) = (stanza_field(&packages, "dash", "SHA256"), stanza_field(&packages, "dash", "Size"));
    let other = fs::read(sb.pool_path("hello")).unwrap();
    let (new_sha, new_size) = (hex(&sha256(&other)), other.len().to_string());
    // The file served now matches the edited pin: only the signed index can tell.
    fs::write(sb.pool_path("dash"), &other).unwrap();

    let lockfile = sb.lockfile("r");
    let text = fs::read_to_string(&lockfile).unwrap();
    assert!(text.contains(&old_sha), "lockfile does not pin dash's sha256:\n{text}");
    // Within dash's table only: its sha256 and its size.
    let edited: Vec<String> = text
        .split("\n\n")
        .map(|block| {
            if block.contains(&old_sha) {
                block
                    .replace(&old_sha, &new_sha)
                    .replace(&format!("size = {old_size}\n"), &format!("size = {new_size}\n"))
            } else {
                block.to_owned()
            }
        })
        .collect();
    let edited = edited.join("\n\n");
    assert_ne!(edited, text);
    fs::write(&lockfile, edited).unwrap();
    let run = sb.build(&recipe);
    run.assert_code(2).assert_stderr_has("error:").assert_stderr_has("dash");
    assert!(!sb.candidate_dir().exists(), "a refused build left {}", sb.candidate_dir().display());
    sb.assert_no_tmp_files(&run);
}

// ---------------------------------------------------------------------------------------------
// Hostile packages: signed, indexed, pinned, and still refused by the unpacker
// ---------------------------------------------------------------------------------------------

/// Adds `debs` to the archive, locks `packages` (base-files first, for the merged-/usr
/// symlinks) and asserts the build is refused naming every `needles`.
#[track_caller]
fn assert_hostile_refused(debs: &[(&str, Vec<u8>)], needles: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    sb.add_packages(debs);
    let mut packages = vec!["base-files"];
    packages.extend(debs.iter().map(|(n, _)| *n));
    let recipe = sb.recipe("hostile", &packages);
    sb.lock(&recipe).assert_ok();
    sb.assert_build_refused(&recipe, needles);
    sb
}

#[test]
fn hostile_dotdot_entry_is_refused() {
    let deb = make_deb(
        "evil-dotdot",
        r#"[{"name": "./", "type": "dir"}, {"name": "./../../etc/candidate-evil", "type": "file", "data": "x"}]"#,
    );
    assert_hostile_refused(&[("evil-dotdot", deb)], &["evil-dotdot", "../../etc/candidate-evil"]);
}

#[test]
fn hostile_write_through_own_symlink_is_refused() {
    let deb = make_deb(
        "evil-link",
        r#"[{"name": "./", "type": "dir"}, {"name": "./evil", "type": "symlink", "target": "/etc"},
            {"name": "./evil/passwd", "type": "file", "data": "root::0:0::/:/bin/sh\n"}]"#,
    );
    assert_hostile_refused(&[("evil-link", deb)], &["evil-link", "evil/passwd"]);
}

#[test]
fn hostile_write_through_another_packages_escaping_symlink_stays_inside() {
    let marker = format!("candidate-pwned-{}", std::process::id());
    let host = Path::new("/tmp").join(&marker);
    let link = make_deb(
        "evil-a-link",
        r#"[{"name": "./", "type": "dir"}, {"name": "./usr/", "type": "dir"}, {"name": "./usr/lib/", "type": "dir"},
            {"name": "./usr/lib/x", "type": "symlink", "target": "../../../../../../tmp"}]"#,
    );
    let write = make_deb(
        "evil-b-write",
        &format!(
            r#"[{{"name": "./", "type": "dir"}}, {{"name": "./usr/", "type": "dir"}}, {{"name": "./usr/lib/", "type": "dir"}},
                {{"name": "./usr/lib/x/", "type": "dir"}}, {{"name": "./usr/lib/x/{marker}", "type": "file", "data": "pwned"}}]"#
        ),
    );
    let sb = Sandbox::new();
    sb.add_packages(&[("evil-a-link", link), ("evil-b-write", write)]);
    let recipe = sb.recipe("hostile", &["base-files", "evil-a-link", "evil-b-write"]);
    sb.lock(&recipe).assert_ok();
    let run = sb.build(&recipe);
    assert!(!host.exists(), "a package wrote {} on the host\n{}", host.display(), run.describe());
    if run.ok() {
        let names = tar_names(&sb.candidate_dir().join("rootfs.tar"));
        assert!(!names.iter().any(|n| n.split('/').any(|c| c == "..")), "a rootfs path escapes: {names:?}");
        let landed: Vec<_> = names.iter().filter(|n| n.ends_with(&marker)).collect();
        assert!(landed == [&format!("./tmp/{marker}")], "the file did not land inside the image's /tmp: {landed:?}");
    } else {
        run.assert_code(2).assert_stderr_has("error:").assert_stderr_has("usr/lib/x");
        assert!(!sb.candidate_dir().exists(), "a refused build left {}", sb.candidate_dir().display());
        sb.assert_no_tmp_files(&run);
    }
}

#[test]
fn hostile_truncated_deb_is_refused() {
    let payload: String = (0..1000).map(|i| format!("line {i} of a file long enough to cut\n")).collect();
    let entries = serde_json_entries(&[
        ("./", "dir", ""),
        ("./usr/", "dir", ""),
        ("./usr/share/", "dir", ""),
        ("./usr/share/cut.txt", "file", &payload),
    ]);
    let mut deb = make_deb("evil-cut", &entries);
    deb.truncate(deb.len() / 2);
    assert_hostile_refused(&[("evil-cut", deb)], &["evil-cut"]);
}

/// A JSON list of `(name, type, data)` entries for `make_deb`.
fn serde_json_entries(entries: &[(&str, &str, &str)]) -> String {
    let items: Vec<_> = entries
        .iter()
        .map(|(name, kind, data)| format!("{{\"name\": {name:?}, \"type\": {kind:?}, \"data\": {data:?}}}"))
        .collect();
    format!("[{}]", items.join(", "))
}

/// One file of 5 GiB of zeros (the unpacker caps a package at 4 GiB decompressed). Compressing
/// 5 GiB takes minutes on a small host, so the `data.tar.xz` is assembled instead: xz streams
/// may follow one another (a decoder reads them as one), and a tar of one zero-filled file is
/// its header and then nothing but zeros. So: one stream for the header, then one stream of
/// 64 MiB of zeros, compressed once and repeated, then one for the rest (about a second).
#[test]
fn hostile_decompression_bomb_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data.tar.xz");
    const SIZE: u64 = 5 << 30;
    // A ustar header for `./zero` (SIZE fits the 11 octal digits), then SIZE zero bytes of
    // content and the two zero blocks that end the archive.
    let script = format!(
        r#"
import lzma, sys, tarfile
i = tarfile.TarInfo("./zero"); i.size = {SIZE}; i.mode = 0o644; i.mtime = 1700000000
chunk = 64 << 20
zeros = {SIZE} + 1024
with open(sys.argv[1], "wb") as out:
    out.write(lzma.compress(i.tobuf(tarfile.USTAR_FORMAT), preset=1))
    stream = lzma.compress(bytes(chunk), preset=1)
    for _ in range(zeros // chunk):
        out.write(stream)
    out.write(lzma.compress(bytes(zeros % chunk), preset=1))
"#
    );
    sh(Command::new("python3").arg("-c").arg(script).arg(&data));
    // What the unpacker will decompress: more than its cap, checked with another decoder.
    let listed = sh(Command::new("xz").args(["--robot", "--list"]).arg(&data));
    let totals = String::from_utf8(listed).unwrap();
    let uncompressed: u64 = totals
        .lines()
        .find_map(|l| l.strip_prefix("totals\t"))
        .and_then(|l| l.split('\t').nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no totals in `xz --robot --list`:\n{totals}"));
    assert_eq!(uncompressed, 512 + SIZE + 1024, "the bomb is not what it should be");
    let deb = make_deb_with("evil-bomb", "[]", Some(&data));
    let sb = assert_hostile_refused(&[("evil-bomb", deb)], &["evil-bomb", "4294967296", "decompression bomb"]);
    drop(sb);
}

// ---------------------------------------------------------------------------------------------
// Files shipped by two packages
// ---------------------------------------------------------------------------------------------

/// `tools-new` declares `Replaces: tools-old`; both ship `/usr/bin/tool`. Whichever order they
/// are merged in, the replacing package's file wins, the manifest records it, and the loser's
/// `.list`/`md5sums` no longer claim the file (dpkg's own bookkeeping).
#[test]
fn replaces_lets_a_package_take_a_file_over() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("replaces", &["base-files", "tools-new", "tools-old"]);
    sb.lock(&recipe).assert_ok();
    sb.build(&recipe).assert_ok();
    let dir = sb.candidate_dir();
    let names = tar_names(&dir.join("rootfs.tar"));
    let extract = |path: &str| {
        let out = Command::new("tar").arg("-xOf").arg(dir.join("rootfs.tar")).arg(path).output().unwrap();
        assert!(out.status.success(), "{path} is not in the rootfs");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(extract("./usr/bin/tool").contains("tools-new"), "the replaced file won: {}", extract("./usr/bin/tool"));
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["file-conflicts"]["replaced"],
        serde_json::json!([{ "path": "/usr/bin/tool", "by": "tools-new:amd64", "from": "tools-old:amd64" }])
    );
    assert!(!extract("./var/lib/dpkg/info/tools-old.list").contains("/usr/bin/tool"));
    // tools-old ships nothing else, so its md5sums is left empty, and then not written at all.
    let md5sums = "./var/lib/dpkg/info/tools-old.md5sums";
    assert!(!names.iter().any(|n| n == md5sums) || !extract(md5sums).contains("usr/bin/tool"));
    assert!(extract("./var/lib/dpkg/info/tools-new.list").contains("/usr/bin/tool"));
}

/// `clash` ships `/usr/bin/tool` too, without `Replaces`: refused, naming the path and both
/// packages, and nothing is published.
#[test]
fn a_file_shipped_twice_without_replaces_is_refused() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("clash", &["base-files", "clash", "tools-old"]);
    sb.lock(&recipe).assert_ok();
    sb.assert_build_refused(&recipe, &["/usr/bin/tool", "clash", "tools-old", "Replaces"]);
}

// ---------------------------------------------------------------------------------------------
// Python: a venv layer of locked wheels over the packages
// ---------------------------------------------------------------------------------------------

/// Python that writes a wheel: argv = out, name, version, then `path=content` members; a
/// `console_scripts` entry point `NAME-cli = NAME:main` and a RECORD of every member.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, name, version, members = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
info = "%s-%s.dist-info" % (name, version)
files = [m.split("=", 1) for m in members]
files.append((info + "/METADATA", "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)))
files.append((info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
files.append((info + "/entry_points.txt", "[console_scripts]\n%s-cli = %s:main\n" % (name, name)))
record = ""
for path, data in files:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b"=").decode()
    record += "%s,sha256=%s,%d\n" % (path, digest, len(data.encode()))
record += info + "/RECORD,,\n"
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path, data in files + [(info + "/RECORD", record)]:
        z.writestr(path, data)
"#;

/// A recipe whose `app` layer installs `demo` from a local simple index into `/opt/app/venv`,
/// over packages with a `python3.11-minimal` of version `3.11.2-6`.
fn python_sandbox() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let python = serde_json_entries(&[("./usr/bin/python3.11", "file", "#!/bin/sh\n")]);
    let deb = std::process::Command::new("python3")
        .env("DEB_VERSION", "3.11.2-6")
        .arg("-c")
        .arg(MAKE_DEB)
        .arg(sb.root().join("py.deb"))
        .arg("python3.11-minimal")
        .arg(&python)
        .status()
        .unwrap();
    assert!(deb.success());
    let deb = fs::read(sb.root().join("py.deb")).unwrap();
    let mut text = sb.packages_text();
    text.push('\n');
    text.push_str(&sb.pool_deb_version("python3.11-minimal", "3.11.2-6", &deb));
    sb.set_packages(&text);

    let files = sb.root().join("index/files");
    fs::create_dir_all(&files).unwrap();
    let file = "demo-1.0-py3-none-any.whl";
    sh(Command::new("python3").arg("-c").arg(MAKE_WHEEL).arg(files.join(file)).args([
        "demo",
        "1.0",
        "demo.py=def main():\n    print('demo')\n",
    ]));
    let digest = hex(&sha256(&fs::read(files.join(file)).unwrap()));
    fs::create_dir_all(sb.root().join("index/simple/demo")).unwrap();
    fs::write(
        sb.root().join("index/simple/demo/index.html"),
        format!("<a href=\"../../files/{file}#sha256={digest}\">{file}</a>\n"),
    )
    .unwrap();
    fs::write(sb.root().join("requirements.txt"), format!("demo==1.0 \\\n    --hash=sha256:{digest}\n")).unwrap();
    let recipe = sb.recipe("py", &["base-files", "dash", "libc6", "passwd", "python3.11-minimal"]);
    let mut body = fs::read_to_string(&recipe).unwrap();
    body.push_str(
        "\n[[layer]]\nname = \"app\"\npython = { requirements = \"../requirements.txt\", venv = \"/opt/app/venv\" }\n\n\
         [python]\nindex = \"../index/simple\"\n",
    );
    fs::write(&recipe, body).unwrap();
    (sb, recipe)
}

#[test]
fn a_python_layer_installs_its_locked_wheels_into_a_venv() {
    let (sb, recipe) = python_sandbox();
    sb.lock(&recipe).assert_ok();
    let lock = fs::read_to_string(sb.lockfile("py")).unwrap();
    assert!(lock.contains("[[wheel]]") && lock.contains("demo-1.0-py3-none-any.whl"), "{lock}");
    let first = sb.build(&recipe);
    first.assert_ok();
    let listing = tar_verbose(&sb.candidate_dir().join("rootfs.tar"));
    for (mode, name) in [
        ("-rwxr-xr-x", "./opt/app/venv/bin/demo-cli"),
        ("lrwxrwxrwx", "./opt/app/venv/bin/python3.11 -> /usr/bin/python3.11"),
        ("-rw-r--r--", "./opt/app/venv/lib/python3.11/site-packages/demo.py"),
        ("-rw-r--r--", "./opt/app/venv/lib/python3.11/site-packages/demo-1.0.dist-info/INSTALLER"),
        ("-rw-r--r--", "./opt/app/venv/pyvenv.cfg"),
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with(mode) && l.contains(" 0/0 ") && l.ends_with(name)),
            "no `{mode} … {name}`:\n{listing}"
        );
    }
    assert!(!listing.contains(".pyc"), "an extract-only build ships no .pyc:\n{listing}");
    let manifest = fs::read_to_string(sb.candidate_dir().join("manifest.json")).unwrap();
    assert!(manifest.contains("\"wheels\":[{\"filename\":\"demo-1.0-py3-none-any.whl\""), "{manifest}");
    let sbom = fs::read_to_string(sb.candidate_dir().join("sbom.spdx.json")).unwrap();
    assert!(sbom.contains("pkg:pypi/demo@1.0") && sbom.contains("pkg:deb/debian/libc6@2.36-9?arch=amd64"));
    // Built again from the cache: the same candidate.
    let second = sb.build(&recipe);
    second.assert_ok();
    assert_eq!(first.stdout, second.stdout);
    assert!(second.stderr.contains("Fresh") && second.stderr.contains("layer app"), "{}", second.describe());
}

/// Both SBOMs list exactly what the lockfile pins — Debian packages, wheels, tarballs and local
/// trees, with their purls — and the dependency edges the resolver used: `passwd` depends on
/// `libc6` and `base-files` in the fixture archive.
#[test]
fn both_sboms_list_what_the_lockfile_pins_and_the_resolvers_edges() {
    use std::collections::BTreeMap;
    let (sb, recipe) = python_sandbox();
    let extras = sb.root().join("extras");
    fs::create_dir_all(extras.join("etc")).unwrap();
    fs::write(extras.join("etc/site.conf"), "site = 1\n").unwrap();
    sh(Command::new("tar").arg("-czf").arg(extras.join("vendor.tar.gz")).arg("-C").arg(&extras).arg("etc"));
    let vendor = hex(&sha256(&fs::read(extras.join("vendor.tar.gz")).unwrap()));
    let mut body = fs::read_to_string(&recipe).unwrap();
    body.push_str(&format!(
        "\n[[layer]]\nname = \"extras\"\nfiles = [{{ from = \"../extras/etc\", to = \"/etc/extras\" }}]\n\
         tarballs = [{{ url = \"../extras/vendor.tar.gz\", sha256 = \"{vendor}\", to = \"/opt/vendor\" }}]\n"
    ));
    fs::write(&recipe, body).unwrap();
    sb.lock(&recipe).assert_ok();
    sb.build(&recipe).assert_ok();

    // What the lockfile pins, as purls, and the edges it records, as (purl, purl).
    let lock: toml::Value = toml::from_str(&fs::read_to_string(sb.lockfile("py")).unwrap()).unwrap();
    let table = |name: &str| lock.get(name).and_then(toml::Value::as_array).cloned().unwrap_or_default();
    let field = |v: &toml::Value, k: &str| v[k].as_str().unwrap().to_owned();
    let (packages, wheels, inputs) = (table("package"), table("wheel"), table("input"));
    let by_ref: BTreeMap<String, String> = packages
        .iter()
        .map(|p| {
            let (name, arch) = (field(p, "name"), field(p, "architecture"));
            let version = field(p, "version").replace('+', "%2B");
            (format!("{name}:{arch}"), format!("pkg:deb/debian/{name}@{version}?arch={arch}"))
        })
        .collect();
    let mut purls: Vec<String> = by_ref.values().cloned().collect();
    purls.extend(wheels.iter().map(|w| format!("pkg:pypi/{}@{}", field(w, "name"), field(w, "version"))));
    let kind = |k: &str| inputs.iter().filter(|i| i["kind"].as_str() == Some(k)).cloned().collect::<Vec<_>>();
    let (tarballs, trees) = (kind("tarball"), kind("files"));
    purls.extend(
        tarballs.iter().map(|t| format!("pkg:generic/vendor.tar.gz?checksum=sha256:{}", hex(&field(t, "sha256")))),
    );
    purls.sort();
    assert_eq!((tarballs.len(), trees.len(), wheels.len()), (1, 1, 1), "the fixture has one of each");
    assert!(packages.len() >= 5, "{packages:?}");
    let components = packages.len() + wheels.len() + inputs.len();
    let passwd = packages.iter().find(|p| p["name"].as_str() == Some("passwd")).unwrap();
    let depends: Vec<&str> = passwd["depends"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert_eq!(depends, ["base-files:amd64", "libc6:amd64"]);
    let mut edges: Vec<(String, String)> = Vec::new();
    for p in &packages {
        let from = &by_ref[&format!("{}:{}", field(p, "name"), field(p, "architecture"))];
        for to in p["depends"].as_array().unwrap() {
            edges.push((from.clone(), by_ref[to.as_str().unwrap()].clone()));
        }
    }
    edges.sort();
    for dep in ["libc6:amd64", "base-files:amd64"] {
        assert!(edges.contains(&(by_ref["passwd:amd64"].clone(), by_ref[dep].clone())), "{edges:?}");
    }

    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(sb.candidate_dir().join(name)).unwrap()).unwrap()
    };
    // SPDX: the image and one package per locked component, their purls, DEPENDS_ON = the edges.
    let spdx = read("sbom.spdx.json");
    let spdx_packages = spdx["packages"].as_array().unwrap();
    assert_eq!(spdx_packages.len(), components + 1);
    let spdx_purl: BTreeMap<String, String> = spdx_packages
        .iter()
        .filter_map(|p| {
            let purl = p["externalRefs"].as_array()?.iter().find(|r| r["referenceType"] == "purl")?;
            Some((p["SPDXID"].as_str()?.to_owned(), purl["referenceLocator"].as_str()?.to_owned()))
        })
        .collect();
    let mut listed: Vec<String> = spdx_purl.values().cloned().collect();
    listed.sort();
    assert_eq!(listed, purls);
    let mut spdx_edges: Vec<(String, String)> = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "DEPENDS_ON")
        .map(|r| {
            let purl = |k: &str| spdx_purl[r[k].as_str().unwrap()].clone();
            (purl("spdxElementId"), purl("relatedSpdxElement"))
        })
        .collect();
    spdx_edges.sort();
    assert_eq!(spdx_edges, edges);

    // CycloneDX: the same components and purls, the same graph under `dependencies`, and the
    // image depending on every component it ships.
    let cdx = read("sbom.cdx.json");
    let cdx_components = cdx["components"].as_array().unwrap();
    assert_eq!(cdx_components.len(), components);
    let cdx_purl: BTreeMap<String, String> = cdx_components
        .iter()
        .filter_map(|c| Some((c["bom-ref"].as_str()?.to_owned(), c["purl"].as_str()?.to_owned())))
        .collect();
    let mut listed: Vec<String> = cdx_purl.values().cloned().collect();
    listed.sort();
    assert_eq!(listed, purls);
    let is_tree = |c: &&serde_json::Value| {
        c["properties"].as_array().unwrap().iter().any(|p| p["name"] == "candidate:kind" && p["value"] == "files")
    };
    assert_eq!(cdx_components.iter().filter(is_tree).count(), trees.len());
    let mut cdx_edges: Vec<(String, String)> = Vec::new();
    for d in cdx["dependencies"].as_array().unwrap() {
        let from = d["ref"].as_str().unwrap();
        let to = d["dependsOn"].as_array().cloned().unwrap_or_default();
        if from == "image" {
            assert_eq!(to.len(), components, "the image depends on each component it ships");
            continue;
        }
        cdx_edges.extend(to.iter().map(|to| (cdx_purl[from].clone(), cdx_purl[to.as_str().unwrap()].clone())));
    }
    cdx_edges.sort();
    assert_eq!(cdx_edges, edges);

    super::attest::validate_sboms(&sb.candidate_dir());
}

/// A lockfile from before dependency edges were recorded is still current for `lock --check`
/// and builds (its SBOMs then show no graph); a `depends` naming a package the lockfile does
/// not lock is refused, naming the package, the line and the culprit.
#[test]
fn lockfiles_without_edges_still_build_and_an_edge_to_nothing_is_refused() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("four", FOUR);
    sb.lock(&recipe).assert_ok();
    let path = sb.lockfile("four");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("depends = [\"base-files:amd64\", \"libc6:amd64\"]"), "{text}");
    let old: String = text.lines().filter(|l| !l.starts_with("depends = ")).map(|l| format!("{l}\n")).collect();
    fs::write(&path, &old).unwrap();
    sb.run([OsStr::new("lock"), recipe.as_os_str(), OsStr::new("--check")])
        .assert_ok()
        .assert_stderr_has("records no dependency edges");
    assert_eq!(fs::read_to_string(&path).unwrap(), old, "a check writes nothing");
    sb.build(&recipe).assert_ok();
    let cdx: serde_json::Value =
        serde_json::from_slice(&fs::read(sb.candidate_dir().join("sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!(cdx["dependencies"].as_array().unwrap().len(), 1, "only the image's: the edges are not known");
    // `lock` adds them.
    sb.lock(&recipe).assert_ok();
    assert_eq!(fs::read_to_string(&path).unwrap(), text);

    fs::remove_dir_all(sb.dist()).unwrap();
    fs::write(&path, text.replace("\"base-files:amd64\", \"libc6:amd64\"", "\"base-files:amd64\", \"nosuch:amd64\""))
        .unwrap();
    sb.assert_build_refused(&recipe, &["four.lock", "`passwd`", "depends on `nosuch:amd64`", "candidate lock"]);
}
