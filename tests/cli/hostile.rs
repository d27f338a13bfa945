//! Hostile and example tarballs, run end to end through the `candidate` binary.
//!
//! Every hostile fixture (`fixtures/hostile/*.tar`, made by `fixtures/make-fixtures.py`) must
//! be refused with exit code 2 and an `error:` that names both the tarball and the offending
//! entry, and a refused build must leave nothing behind: no candidate folder, no file under
//! the output folder, no orphan under the store's `tmp/`, and no blob other than the input
//! tarball itself. `lock` may refuse a hostile tarball already (if it validates tarballs);
//! either step failing is accepted, the messages are required.
//!
//! The rest covers the recipe and lockfile errors a user meets first: a sha256 pin that does
//! not match, an unknown key, a missing `files.from`, a stale lockfile, `lock --check`.
//!
//! Archives are listed with the system `tar`, digests computed with
//! the system `sha256sum`.

use fs_err as fs;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{fixture, walk, Run, BIN};

/// Image name/version/architecture used by every recipe here, and the candidate folder they
/// produce under `--out`.
const IMAGE: &str = "fixture";
const CANDIDATE_DIR: &str = "fixture_1.0_amd64";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A temporary folder with `recipes/`, a store and an output folder, and a way to run the
/// binary against them.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("candidate-hostile-").tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("recipes")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
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

    /// Writes `recipes/STEM.toml`.
    fn recipe(&self, stem: &str, body: &str) -> PathBuf {
        let path = self.root().join("recipes").join(format!("{stem}.toml"));
        fs::write(&path, body).unwrap();
        path
    }

    /// The default lockfile of `recipes/STEM.toml`.
    fn lockfile(&self, stem: &str) -> PathBuf {
        self.root().join("lockfiles").join(format!("{stem}.lock"))
    }

    /// Writes a file under the sandbox, creating its parents.
    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.root().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    /// Runs `candidate --store STORE ARGS...` in the sandbox, with a private HOME and cache.
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
            .env_remove("SOURCE_DATE_EPOCH");
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

    fn lock_check(&self, recipe: &Path) -> Run {
        self.run([OsStr::new("lock"), recipe.as_os_str(), OsStr::new("--check")])
    }

    fn build(&self, recipe: &Path) -> Run {
        self.run([OsStr::new("build"), recipe.as_os_str(), OsStr::new("--out"), self.dist().as_os_str()])
    }

    /// `lock` then, if it succeeded, `build`; returns the run that failed (or the build).
    fn lock_then_build(&self, recipe: &Path) -> Run {
        let lock = self.lock(recipe);
        if !lock.ok() {
            return lock;
        }
        self.build(recipe)
    }

    /// Asserts a refused build left nothing behind. `allowed_blob` is the hex digest of the
    /// input tarball, which the store may legitimately hold.
    #[track_caller]
    fn assert_nothing_left(&self, allowed_blob: &str) {
        assert!(!self.candidate_dir().exists(), "{} exists after a refused build", self.candidate_dir().display());
        let outputs: Vec<_> = walk(&self.dist()).into_iter().filter(|p| !p.is_dir()).collect();
        assert!(outputs.is_empty(), "a refused build left files under dist: {outputs:?}");

        let store = walk(&self.store());
        let in_tmp: Vec<_> = store
            .iter()
            .filter(|p| {
                p.strip_prefix(self.store())
                    .unwrap()
                    .parent()
                    .is_some_and(|parent| parent.components().any(|c| c.as_os_str() == "tmp"))
            })
            .collect();
        assert!(in_tmp.is_empty(), "a refused build left entries in the store's tmp/: {in_tmp:?}");

        let blobs: Vec<_> = store
            .iter()
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("blobs/sha256")) && !p.is_dir())
            .filter(|p| p.file_name() != Some(OsStr::new(allowed_blob)))
            .collect();
        assert!(blobs.is_empty(), "a refused build left blobs other than its input in the store: {blobs:?}");
    }
}

/// `sha256sum FILE`, as lowercase hex.
fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap().to_owned();
    assert_eq!(hex.len(), 64);
    hex
}

/// The member names of a tar archive, from the system `tar -tf`.
fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(archive).output().expect("run tar");
    assert!(out.status.success(), "tar -tf {} failed: {}", archive.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// The `[image]` table every recipe here starts with.
fn image_table() -> String {
    format!(
        r#"[image]
name = "{IMAGE}"
version = "1.0"
architecture = "amd64"
os = "debian"
release = "bookworm"
description = "hostile fixture test"
source-date-epoch = 1700000000
"#
    )
}

/// A one-layer recipe unpacking `tarball` (absolute path, no pin) with the extra inline-table
/// keys `extra` (e.g. `to = "/opt/x"`), writing a plain `rootfs.tar`.
fn tarball_recipe(tarball: &Path, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    format!(
        r#"{}
[[layer]]
name = "base"
tarballs = [{{ url = '{}'{extra} }}]

[output]
formats = ["rootfs.tar"]
"#,
        image_table(),
        tarball.display()
    )
}

// ---------------------------------------------------------------------------------------------
// Hostile tarballs
// ---------------------------------------------------------------------------------------------

/// Locks and builds a recipe unpacking `fixtures/hostile/NAME` under `/opt/hostile`, and
/// asserts it is refused with exit 2 naming the tarball and `entry`, leaving nothing behind.
#[track_caller]
fn assert_refused(name: &str, entry: &str) {
    let sb = Sandbox::new();
    let tarball = fixture(&format!("hostile/{name}"));
    assert!(tarball.is_file(), "missing fixture {}: run fixtures/make-fixtures.py", tarball.display());
    let recipe = sb.recipe("hostile", &tarball_recipe(&tarball, r#"to = "/opt/hostile""#));

    let run = sb.lock_then_build(&recipe);
    assert!(!run.ok(), "hostile tarball {name} was accepted\n{}", run.describe());
    run.assert_code(2).assert_stderr_has("error:").assert_stderr_has(name).assert_stderr_has(entry);
    assert!(!run.stdout.contains("sha256:"), "a refused build printed a candidate id\n{}", run.describe());
    sb.assert_nothing_left(&sha256_hex(&tarball));
}

#[test]
fn dotdot_is_refused() {
    assert_refused("dotdot.tar", "../../etc/evil");
}

#[test]
fn dotdot_inside_a_path_is_refused() {
    assert_refused("dotdot-inner.tar", "a/../../b");
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    assert_refused("symlink-escape.tar", "link/passwd");
}

#[test]
fn write_through_relative_escaping_symlink_is_refused() {
    assert_refused("symlink-relative-escape.tar", "up/tmp/evil");
}

#[test]
fn hardlink_to_missing_entry_is_refused() {
    assert_refused("hardlink-missing.tar", "dangling-hardlink");
}

#[test]
fn hardlink_to_later_entry_is_refused() {
    assert_refused("hardlink-later.tar", "early-link");
}

#[test]
fn character_device_is_refused() {
    assert_refused("chardev.tar", "dev/null");
}

#[test]
fn block_device_is_refused() {
    assert_refused("blockdev.tar", "dev/sda");
}

#[test]
fn fifo_is_refused() {
    assert_refused("fifo.tar", "run/pipe");
}

#[test]
fn truncated_gzip_tarball_is_refused() {
    // Cut in the middle of big.bin's data: the entry being read when the stream ends.
    assert_refused("truncated.tar.gz", "big.bin");
}

/// One tar header block (GNU magic), checksummed: `typeflag` `L` is a GNU long name whose
/// `size` bytes follow.
fn tar_header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, value: u64| {
        let text = format!("{value:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(text.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[156] = typeflag;
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar of one empty file whose name, `components` times `a/` then `f`, is carried by a GNU
/// long-name record: the shape of #16's hole 3.
fn deep_tar(components: usize) -> Vec<u8> {
    let name = format!("{}f", "a/".repeat(components));
    let mut tar = tar_header("././@LongLink", b'L', name.len() as u64 + 1).to_vec();
    tar.extend_from_slice(name.as_bytes());
    tar.push(0);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&tar_header("f", b'0', 0));
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// #16 hole 3: one GNU long-name entry of 40,000 `a/` components (an 80 KB tar) took 46 s,
/// 4.7 GB of memory and wrote a 1.65 GB rootfs; 100,000 in a few hundred bytes of `.tar.gz`
/// aborted on allocation. Both are refused as the entry is read, naming the tarball and the
/// cap (the time is not asserted; the refusal is what makes it fast).
#[test]
fn deep_paths_are_refused_at_the_cap() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &deep_tar(100_000)).unwrap();
    let gz = encoder.finish().unwrap();
    assert!(gz.len() < 2048, "the .tar.gz is meant to be tiny: {} bytes", gz.len());
    for (name, bytes, len) in [("deep.tar", deep_tar(40_000), 80_001), ("deeper.tar.gz", gz, 200_001)] {
        // A sandbox each, so the store holds only this tarball.
        let sb = Sandbox::new();
        let tarball = &sb.root().join(name);
        fs::write(tarball, bytes).unwrap();
        let recipe = sb.recipe("deep", &tarball_recipe(tarball, ""));
        let run = sb.lock_then_build(&recipe);
        assert!(!run.ok(), "{} was accepted\n{}", tarball.display(), run.describe());
        run.assert_code(2)
            .assert_stderr_has(&tarball.file_name().unwrap().to_string_lossy())
            .assert_stderr_has(&format!("the path is {len} bytes, longer than the 4096 a path may have"));
        sb.assert_nothing_left(&sha256_hex(tarball));
    }
}

/// #16: the tar reader stopped at the end-of-archive marker, so a `.tar.gz` whose gzip
/// trailer (CRC-32, length) did not match its content was never found out, and corrupt
/// content was shipped. Now the stream is read to its end and the decoder's check refuses it.
#[test]
fn a_gzip_tarball_whose_crc_does_not_match_is_refused() {
    let sb = Sandbox::new();
    let mut bytes = fs::read(fixture("example/app.tar.gz")).unwrap();
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    let tarball = sb.root().join("bad-crc.tar.gz");
    fs::write(&tarball, &bytes).unwrap();
    let recipe = sb.recipe("crc", &tarball_recipe(&tarball, ""));
    let run = sb.lock_then_build(&recipe);
    assert!(!run.ok(), "a tarball with a wrong gzip CRC was accepted\n{}", run.describe());
    run.assert_code(2).assert_stderr_has("bad-crc.tar.gz").assert_stderr_has("checksum");
    sb.assert_nothing_left(&sha256_hex(&tarball));
}

#[test]
fn absolute_entry_is_normalised_under_destination() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("absolute", &tarball_recipe(&fixture("hostile/absolute.tar"), r#"to = "/opt/x""#));
    sb.lock(&recipe).assert_ok();
    let build = sb.build(&recipe);
    build.assert_ok();
    assert!(build.stdout.contains("sha256:"), "build printed no candidate id\n{}", build.describe());

    let rootfs = sb.candidate_dir().join("rootfs.tar");
    assert!(rootfs.is_file(), "{} missing\n{}", rootfs.display(), build.describe());
    assert!(sb.candidate_dir().join("manifest.json").is_file(), "manifest.json missing");
    let names = tar_list(&rootfs);
    assert!(
        names.iter().any(|n| n == "./opt/x/etc/absolute-file"),
        "./opt/x/etc/absolute-file not in rootfs.tar: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.trim_start_matches("./").starts_with("etc/absolute-file")),
        "absolute entry escaped `to`: {names:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The example tarballs: gz with strip-components, xz detected by content
// ---------------------------------------------------------------------------------------------

#[test]
fn example_tarballs_unpack() {
    let sb = Sandbox::new();
    let body = format!(
        r#"{}
[[layer]]
name = "base"
files = [{{ from = '{}', to = "/etc" }}]
tarballs = [
  {{ url = '{}', strip-components = 1, to = "/opt/app" }},
  {{ url = '{}', to = "/opt" }},
]

[output]
formats = ["rootfs.tar"]
"#,
        image_table(),
        fixture("example/etc").display(),
        fixture("example/app.tar.gz").display(),
        fixture("example/tools.tar.xz").display(),
    );
    let recipe = sb.recipe("example", &body);
    sb.lock(&recipe).assert_ok();
    sb.build(&recipe).assert_ok();

    let names = tar_list(&sb.candidate_dir().join("rootfs.tar"));
    for want in [
        "./etc/hostname",
        "./etc/motd",
        "./etc/app/app.conf",
        "./opt/app/bin/app",
        "./opt/app/bin/app-setuid",
        "./opt/app/lib/libapp.so",
        "./opt/app/lib/libapp.so.1",
        "./opt/app/share/doc/README",
        "./opt/app/share/doc/README.copy",
        "./opt/app/share/doc/licenses/a-deliberately-long-file-name-that-pushes-this-entry-path-past-the-one-hundred-byte-ustar-name-field.txt",
        "./opt/tools/README",
        "./opt/tools/bin/tool-a",
        "./opt/tools/bin/tool-b",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in rootfs.tar: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("app-1.0")), "strip-components = 1 not applied: {names:?}");
}

// ---------------------------------------------------------------------------------------------
// Recipe and lockfile errors
// ---------------------------------------------------------------------------------------------

#[test]
fn sha256_pin_mismatch_names_both_digests() {
    let sb = Sandbox::new();
    let tarball = fixture("example/tools.tar.xz");
    let actual = sha256_hex(&tarball);
    // A well-formed digest that is not the tarball's: the other example's.
    let pinned = sha256_hex(&fixture("example/app.tar.gz"));
    assert_ne!(actual, pinned);
    let recipe = sb.recipe("pinned", &tarball_recipe(&tarball, &format!(r#"sha256 = "{pinned}", to = "/opt""#)));

    let run = sb.lock_then_build(&recipe);
    run.assert_code(2)
        .assert_stderr_has("error:")
        .assert_stderr_has(&pinned)
        .assert_stderr_has(&actual)
        .assert_stderr_has("tools.tar.xz");
    sb.assert_nothing_left(&actual);
}

#[test]
fn unknown_recipe_key_is_named_with_its_line() {
    let sb = Sandbox::new();
    // `colour` sits on line 9, right after the 8 lines of the [image] table.
    let body = tarball_recipe(&fixture("example/tools.tar.xz"), "").replacen(
        "\n\n[[layer]]",
        "\ncolour = \"blue\"\n\n[[layer]]",
        1,
    );
    assert_eq!(body.lines().nth(8), Some("colour = \"blue\""), "test recipe layout changed:\n{body}");
    let recipe = sb.recipe("unknown-key", &body);

    let run = sb.lock(&recipe);
    run.assert_code(2).assert_stderr_has("error:").assert_stderr_has("colour").assert_stderr_has("unknown-key.toml");
    assert!(
        run.stderr.contains("line 9") || run.stderr.contains(":9"),
        "stderr does not give line 9\n{}",
        run.describe()
    );
    assert!(!sb.lockfile("unknown-key").exists(), "a lockfile was written for an invalid recipe");
}

/// Hole 1 of #16: the Proxmox template is named `OS-RELEASE-NAME_VERSION_ARCH.tar.zst`, and
/// `os`/`release` were not checked, so an absolute or `../` value hard-linked a store blob to
/// a path of the recipe's choosing (exit 0). Now the recipe is refused at `lock`, naming the
/// key's line, and nothing is written anywhere.
#[test]
fn a_recipe_cannot_name_a_file_outside_the_output_folder() {
    let sb = Sandbox::new();
    let escape = sb.root().join("escaped");
    for (key, value, outside) in [
        ("os", format!("{}/x", escape.display()), escape.join("x-bookworm-fixture_1.0_amd64.tar.zst")),
        ("release", "../../escaped".to_owned(), escape.join("-fixture_1.0_amd64.tar.zst")),
    ] {
        fs::create_dir_all(&escape).unwrap();
        let body = format!(
            "{}\n[[layer]]\nname = \"base\"\ndirectories = [{{ path = \"/srv\" }}]\n\n[output]\nformats = [\"proxmox\"]\n",
            image_table()
        )
        .replace(&format!("{key} = "), &format!("{key} = \"{value}\"\nunused-{key} = "));
        let body =
            body.replace(&format!("\nunused-{key} = \"{}\"", if key == "os" { "debian" } else { "bookworm" }), "");
        let line = body.lines().position(|l| l.starts_with(&format!("{key} = "))).unwrap() + 1;
        let recipe = sb.recipe("escape", &body);
        let run = sb.lock_then_build(&recipe);
        assert!(!run.ok(), "`{key} = {value:?}` was accepted\n{}", run.describe());
        run.assert_code(2)
            .assert_stderr_has(&format!("`{value}` is not a valid name"))
            .assert_stderr_has(&format!("line {line}"))
            .assert_stderr_has(&format!("{key} = "));
        let written: Vec<_> = walk(&escape).into_iter().filter(|p| !p.is_dir()).collect();
        assert!(written.is_empty() && !outside.exists(), "the recipe wrote outside the output folder: {written:?}");
    }
}

#[test]
fn unknown_tarball_key_is_named() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("unknown-tarball-key", &tarball_recipe(&fixture("example/tools.tar.xz"), r#"strip = 1"#));
    sb.lock(&recipe).assert_code(2).assert_stderr_has("error:").assert_stderr_has("strip");
}

#[test]
fn missing_files_from_is_named() {
    let sb = Sandbox::new();
    let body = format!(
        r#"{}
[[layer]]
name = "base"
files = [{{ from = "../no-such-config-dir", to = "/etc" }}]

[output]
formats = ["rootfs.tar"]
"#,
        image_table()
    );
    let recipe = sb.recipe("missing-from", &body);
    let run = sb.lock_then_build(&recipe);
    run.assert_code(2).assert_stderr_has("error:").assert_stderr_has("no-such-config-dir");
    assert!(!sb.candidate_dir().exists());
}

/// A recipe copying the sandbox's `input/etc` to `/etc`.
fn local_files_recipe(sb: &Sandbox) -> String {
    sb.write("input/etc/hostname", "candidate\n");
    sb.write("input/etc/motd", "hello\n");
    format!(
        r#"{}
[[layer]]
name = "base"
files = [{{ from = "../input/etc", to = "/etc" }}]

[output]
formats = ["rootfs.tar"]
"#,
        image_table()
    )
}

#[test]
fn stale_lockfile_is_refused_with_a_hint() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("stale", &local_files_recipe(&sb));
    sb.lock(&recipe).assert_ok();
    assert!(sb.lockfile("stale").is_file(), "lock did not write {}", sb.lockfile("stale").display());
    sb.build(&recipe).assert_ok();

    // Edit a local input after locking (different size, so no fingerprint can miss it).
    sb.write("input/etc/motd", "hello, this file changed after the lock\n");
    let _ = fs::remove_dir_all(sb.dist());
    let run = sb.build(&recipe);
    run.assert_code(1);
    let hint = run.stderr.lines().find(|l| l.starts_with("hint:"));
    assert!(
        hint.is_some_and(|h| h.contains("candidate lock")),
        "no `hint:` line naming `candidate lock`\n{}",
        run.describe()
    );
    assert!(!sb.candidate_dir().exists(), "a stale lockfile still produced a candidate");

    // Relocking fixes it.
    sb.lock_check(&recipe).assert_code(1);
    sb.lock(&recipe).assert_ok();
    sb.lock_check(&recipe).assert_code(0);
    sb.build(&recipe).assert_ok();
}

#[test]
fn lock_check_exit_codes() {
    let sb = Sandbox::new();
    let recipe = sb.recipe("check", &local_files_recipe(&sb));
    let lockfile = sb.lockfile("check");

    // No lockfile yet: the lock would change; nothing is written.
    sb.lock_check(&recipe).assert_code(1);
    assert!(!lockfile.exists(), "lock --check wrote {}", lockfile.display());

    sb.lock(&recipe).assert_ok();
    assert!(lockfile.is_file(), "lock did not write {}", lockfile.display());
    sb.lock_check(&recipe).assert_code(0);

    // Relocking an unchanged recipe does not rewrite the lockfile.
    let bytes = fs::read(&lockfile).unwrap();
    let mtime = fs::metadata(&lockfile).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    sb.lock(&recipe).assert_ok();
    assert_eq!(fs::read(&lockfile).unwrap(), bytes);
    assert_eq!(fs::metadata(&lockfile).unwrap().modified().unwrap(), mtime, "an unchanged lockfile was rewritten");

    // A new input makes the lock stale: --check says so and leaves the file alone.
    let changed = local_files_recipe(&sb).replacen(
        "to = \"/etc\" }]",
        &format!(
            "to = \"/etc\" }}]\ntarballs = [{{ url = '{}', to = \"/opt\" }}]",
            fixture("example/tools.tar.xz").display()
        ),
        1,
    );
    assert_ne!(changed, local_files_recipe(&sb));
    sb.recipe("check", &changed);
    sb.lock_check(&recipe).assert_code(1);
    assert_eq!(fs::read(&lockfile).unwrap(), bytes, "lock --check modified the lockfile");

    sb.lock(&recipe).assert_ok();
    assert_ne!(fs::read(&lockfile).unwrap(), bytes, "lock did not record the new tarball");
    sb.lock_check(&recipe).assert_code(0);
}
