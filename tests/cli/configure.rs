//! Configure mode (`[configure] maintainer-scripts = true`) end to end.
//!
//! The refusals run against the fixture archive (synthetic packages: no dpkg to run). The
//! real runs need a local Debian 12 mirror made by `benches/make-mirror.sh`
//! (`CANDIDATE_DEBIAN_MIRROR`, default `/tmp/bench/mirror-signed`)
//! and are `#[ignore]`d: `.ci/run` makes the mirror and runs them with `--ignored real_`.
//! The boot test also adds systemd-sysv's packages to that mirror's pool
//! (`benches/extend-mirror.sh`, from the archive the machine's apt configuration names).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fs_err as fs;

use super::formats::ok;
use super::{fixture, repo, run, with_store};

fn recipe(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir.join("recipes")).unwrap();
    let path = dir.join("recipes").join(format!("{name}.toml"));
    fs::write(&path, body).unwrap();
    path
}

fn fixture_archive() -> String {
    format!(
        "[archive.test]\nurl = \"{}\"\nsuite = \"stable\"\ncomponents = [\"main\"]\nkeyring = \"{}\"\n",
        fixture("apt/archive").display(),
        fixture("apt/keys/test-archive.gpg").display()
    )
}

/// Configure instances left under the store's `tmp/` and in `/dev/shm` by a build that has
/// ended. Instances are named `configure-PID-…` after their builder: one whose builder still
/// runs (another test, in parallel) is not a leftover.
pub(super) fn leftovers(store: &Path) -> Vec<PathBuf> {
    let ended = |name: &str| {
        let pid = name.strip_prefix("configure-").and_then(|n| n.split('-').next());
        pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists())
    };
    let mut out = Vec::new();
    for dir in [store.join("v1/tmp"), PathBuf::from("/dev/shm")] {
        if let Ok(entries) = fs::read_dir(&dir) {
            out.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| ended(&n.to_string_lossy()))),
            );
        }
    }
    out
}

/// Locks a configured recipe for `architecture` installing `package` from the fixture archive,
/// then builds it: the build's result, and the folder and store it used.
fn build_fixture_configured(architecture: &str, package: &str) -> (super::Run, tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "[image]\nname = \"c\"\nversion = \"1\"\narchitecture = \"{architecture}\"\nos = \"debian\"\n\
         release = \"bookworm\"\nsource-date-epoch = \"archive\"\n\n{}\n[[layer]]\nname = \"base\"\n\
         packages = [\"{package}\"]\n\n[configure]\nmaintainer-scripts = true\n",
        fixture_archive()
    );
    let path = recipe(t.path(), "c", &body);
    let store = t.path().join("store");
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()])).assert_ok();
    let build = run(with_store(t.path(), &store, ["build".as_ref(), path.as_os_str()]));
    (build, t, store)
}

#[test]
fn configure_refuses_an_image_without_dpkg_and_writes_nothing() {
    let (build, t, store) = build_fixture_configured("amd64", "web");
    build.assert_code(2).assert_stderr_has("the image has no dpkg (`/usr/bin/dpkg`)");
    assert!(!t.path().join("dist/c_1_amd64").exists(), "no candidate folder after a refusal");
    assert_eq!(leftovers(&store), Vec::<PathBuf>::new());
}

#[test]
fn configure_is_for_the_host_architecture_only() {
    // The fixture archive's i386 index holds libc6 and an `all` package.
    let (build, _t, _) = build_fixture_configured("i386", "libc6");
    build.assert_code(2).assert_stderr_has("this recipe is for `i386`").assert_stderr_has("build it extract-only");
}

#[test]
fn configure_needs_packages_and_reserves_its_layer_name() {
    let t = tempfile::tempdir().unwrap();
    let path = recipe(
        t.path(),
        "c",
        "[image]\nname = \"c\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\nsource-date-epoch = 1\n\
         [[layer]]\nname = \"configure\"\ndirectories = [{ path = \"/x\" }]\n[configure]\nmaintainer-scripts = true\n",
    );
    let store = t.path().join("store");
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()]))
        .assert_code(2)
        .assert_stderr_has("needs a layer that installs Debian packages");
    let path = recipe(
        t.path(),
        "d",
        &format!(
            "[image]\nname = \"d\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\nsource-date-epoch = 1\n\n{}\n\
             [[layer]]\nname = \"configure\"\npackages = [\"web\"]\n",
            fixture_archive()
        ),
    );
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()]))
        .assert_code(2)
        .assert_stderr_has("the layer name `configure` is reserved");
}

// ---------------------------------------------------------------------------------------------
// Against a real Debian 12 mirror (ignored by default)
// ---------------------------------------------------------------------------------------------

pub(super) fn mirror() -> PathBuf {
    let mirror =
        PathBuf::from(std::env::var_os("CANDIDATE_DEBIAN_MIRROR").unwrap_or_else(|| "/tmp/bench/mirror-signed".into()));
    assert!(
        mirror.join("dists/bookworm/InRelease").is_file(),
        "no signed Debian 12 mirror at {}: run benches/make-mirror.sh",
        mirror.display()
    );
    mirror
}

fn real_recipe(dir: &Path, name: &str, packages: &str, formats: &str) -> PathBuf {
    recipe(
        dir,
        name,
        &format!(
            "[image]\nname = \"{name}\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
             source-date-epoch = \"archive\"\n\n[archive.debian]\nurl = \"file://{}\"\nsuite = \"bookworm\"\n\
             components = [\"main\"]\nkeyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\n\n\
             [[layer]]\nname = \"base\"\npriority = \"required\"\npackages = [{packages}]\n\n\
             [configure]\nmaintainer-scripts = true\n\n[output]\nformats = [{formats}]\n",
            mirror().display()
        ),
    )
}

pub(super) fn extract(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    ok(Command::new("tar").arg("--zstd").arg("-xpf").arg(archive).arg("-C").arg(into).args([
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
    ]));
}

/// Builds the configured Debian 12 minbase set twice — different build path, store, umask,
/// TZ and hostname — and checks the outputs are byte-identical and the image configured:
/// every package `ii`, `dpkg --audit` silent, `apt-get check` passing.
#[test]
#[ignore = "needs a local Debian 12 mirror (benches/make-mirror.sh); .ci/run runs it"]
fn real_configured_minbase_is_reproducible_and_fully_configured() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::Builder::new().prefix("elsewhere-").tempdir().unwrap();
    let formats = "\"rootfs.tar.zst\", \"oci\"";
    let (ra, rb) =
        (real_recipe(a.path(), "minbase", "\"apt\"", formats), real_recipe(b.path(), "minbase", "\"apt\"", formats));
    let (sa, sb) = (a.path().join("store"), b.path().join("store"));
    run(with_store(a.path(), &sa, ["lock".as_ref(), ra.as_os_str()])).assert_ok();
    fs::create_dir_all(b.path().join("lockfiles")).unwrap();
    fs::copy(a.path().join("lockfiles/minbase.lock"), b.path().join("lockfiles/minbase.lock")).unwrap();

    let mut first = with_store(a.path(), &sa, ["build".as_ref(), ra.as_os_str()]);
    first.env("TZ", "UTC");
    unsafe_umask(&mut first, 0o022);
    let first = run(first);
    first.assert_ok();
    assert!(first.stderr.contains("Configured layer configure"), "{}", first.describe());
    // The second build: another path and store, umask 077, another TZ, and another hostname
    // (in a UTS namespace of its own).
    let mut second = with_store(b.path(), &sb, ["build".as_ref(), rb.as_os_str()]);
    second.env("TZ", "Pacific/Auckland").env("LC_ALL", "C");
    unsafe_umask(&mut second, 0o077);
    unsafe {
        second.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let name = b"some-other-host";
            if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(second).assert_ok();
    let (da, db) = (a.path().join("dist/minbase_1_amd64"), b.path().join("dist/minbase_1_amd64"));
    for file in ["manifest.json", "rootfs.tar.zst", "oci/index.json"] {
        assert_eq!(
            fs::read(da.join(file)).unwrap(),
            fs::read(db.join(file)).unwrap(),
            "{file} differs between the builds"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(da.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["mode"], "configure");
    let layers: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(layers, ["base", "configure"]);

    // Warm: the configure step is not run again.
    let warm = run(with_store(a.path(), &sa, ["build".as_ref(), ra.as_os_str()]));
    warm.assert_ok();
    assert!(warm.stderr.contains("Fresh layer configure"), "{}", warm.describe());
    // A cold build merges the rootfs onto the image the scripts ran over; a warm one, with the
    // configure layer from the cache, merges the layers read back from the store (a plain tar
    // is an output the cache does not hold yet, so it is written now). The same bytes: the
    // rootfs's diff_id (the sha256 of the tar as written), size and entries agree.
    let plain = a.path().join("plain");
    let warm_plain = run(with_store(
        a.path(),
        &sa,
        [
            "build".as_ref(),
            "--format".as_ref(),
            "rootfs.tar".as_ref(),
            "--out".as_ref(),
            plain.as_os_str(),
            ra.as_os_str(),
        ],
    ));
    warm_plain.assert_ok();
    assert!(warm_plain.stderr.contains("Fresh layer configure"), "{}", warm_plain.describe());
    assert!(warm_plain.stderr.contains("Assembled rootfs"), "{}", warm_plain.describe());
    let read_back: serde_json::Value =
        serde_json::from_slice(&fs::read(plain.join("minbase_1_amd64/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        read_back["rootfs"], manifest["rootfs"],
        "the rootfs merged from the layers read back differs from the one merged over the configured image"
    );

    // Qualified by deploying it fresh: the image's own tools, in the sandbox, signed.
    run(with_store(a.path(), &sa, ["key", "generate", "--out", "qa"])).assert_ok();
    let script = a.path().join("configured.sh");
    fs::write(&script, "set -e\ntest -z \"$(dpkg --audit)\"\napt-get check -q\ngetent passwd root\ntest \"$(hostname)\" = candidate-test\n")
        .unwrap();
    let dist = da.to_str().unwrap();
    let tested =
        run(with_store(a.path(), &sa, ["test", dist, "--script", script.to_str().unwrap(), "--sign", "qa.key"]));
    tested.assert_ok();
    run(with_store(a.path(), &sa, ["sign", dist, "--key", "qa.key"])).assert_ok();
    let verified = run(with_store(a.path(), &sa, ["verify", dist, "--key", "qa.pub"]));
    verified.assert_ok();
    assert!(
        verified.stdout.contains("ok      attestation minbase_1_amd64.test.intoto.json: test result PASSED"),
        "{}",
        verified.describe()
    );

    let root = a.path().join("root");
    extract(&da.join("rootfs.tar.zst"), &root);
    // Before anything runs in the extracted image: the OCI layers (the configure layer's
    // whiteouts, and usrmerge's `/bin` link over the base layer's directory) applied by a real
    // runtime give exactly the rootfs.
    let unpacked = a.path().join("umoci");
    ok(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:1", da.join("oci").display())).arg(&unpacked));
    let listing = |root: &Path| {
        ok(Command::new("find").arg(".").args(["-mindepth", "1", "-printf", "%p %y %m %U:%G %l\n"]).current_dir(root))
            .lines()
            .filter(|l| !l.starts_with("./dev/") && !l.starts_with("./proc/"))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (oci, tar) = (listing(&unpacked.join("rootfs")), listing(&root));
    let only_oci: Vec<_> = oci.difference(&tar).collect();
    let only_tar: Vec<_> = tar.difference(&oci).collect();
    assert!(
        only_oci.is_empty() && only_tar.is_empty(),
        "umoci unpack differs: only there {only_oci:?}, only in the rootfs {only_tar:?}"
    );
    let statuses =
        ok(Command::new("chroot").arg(&root).args(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}\n"]));
    let not_installed: Vec<&str> = statuses.lines().filter(|l| !l.starts_with("ii ")).collect();
    assert!(not_installed.is_empty(), "packages not installed: {not_installed:?}");
    assert!(statuses.lines().count() >= 90, "{statuses}");
    assert_eq!(ok(Command::new("chroot").arg(&root).args(["dpkg", "--audit"])), "");
    ok(Command::new("chroot").arg(&root).args(["apt-get", "check", "-q"]));
    // usrmerge's conversion was done before the scripts ran, and left what it leaves: `/bin`
    // a link into `/usr`, and both names of every shell in /etc/shells.
    assert_eq!(fs::read_link(root.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(fs::read_link(root.join("lib64")).unwrap(), Path::new("usr/lib64"));
    let shells = fs::read_to_string(root.join("etc/shells")).unwrap();
    for shell in ["/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/dash", "/usr/bin/dash"] {
        assert!(shells.lines().any(|l| l == shell), "{shell} is not in /etc/shells:\n{shells}");
    }
    // Laid out, not converted: the conversion copies file by file, which splits gzip's hard
    // links (`/bin/gunzip`, `/bin/uncompress`); moved in memory they stay one inode.
    let inode = |path: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(root.join(path)).unwrap());
    assert_eq!(inode("usr/bin/gunzip"), inode("usr/bin/uncompress"));
    // Normalised: no dpkg log, no aux-cache, no policy-rc.d left behind.
    for gone in ["var/log/dpkg.log", "var/cache/ldconfig/aux-cache", "usr/sbin/policy-rc.d", "var/lib/dpkg/status-old"]
    {
        assert!(!root.join(gone).exists(), "/{gone} is in the image");
    }
    assert_eq!(leftovers(&sa), Vec::<PathBuf>::new());
    assert_eq!(leftovers(&sb), Vec::<PathBuf>::new());
}

pub(super) fn unsafe_umask(cmd: &mut Command, mask: libc::mode_t) {
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
}

/// Polls `systemctl is-system-running` through `probe` until it says `running` (or 60 s).
pub(super) fn wait_running(mut probe: impl FnMut() -> String) -> String {
    let start = Instant::now();
    let mut state = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        state = probe().trim().to_owned();
        if state == "running" || state == "degraded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    state
}

/// The configured minbase set plus systemd-sysv boots: in LXC (`lxc-create -t local` from the
/// candidate's own `lxc` format, `lxc-start`) and under `systemd-nspawn -b`, systemd reaching
/// `running`, with `dpkg --audit` silent inside.
#[test]
#[ignore = "needs a local Debian 12 mirror (benches/make-mirror.sh) and the archive to add systemd; .ci/run runs it"]
fn real_configured_image_with_systemd_boots_in_lxc_and_nspawn() {
    let t = tempfile::tempdir().unwrap();
    let path = real_recipe(t.path(), "boot", "\"apt\", \"systemd-sysv\"", "\"rootfs.tar.zst\", \"lxc\"");
    let store = t.path().join("store");
    run(with_store(t.path(), &store, ["lock".as_ref(), path.as_os_str()])).assert_ok();
    ok(Command::new(repo().join("benches/extend-mirror.sh")).arg(t.path().join("lockfiles/boot.lock")).arg(mirror()));
    run(with_store(t.path(), &store, ["build".as_ref(), path.as_os_str()])).assert_ok();
    let dist = t.path().join("dist/boot_1_amd64");

    // LXC, privileged, from the candidate's meta.tar.xz + rootfs.tar.xz.
    let lxcpath = t.path().join("lxc");
    fs::create_dir_all(&lxcpath).unwrap();
    let conf = t.path().join("extra.conf");
    fs::write(&conf, "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n").unwrap();
    let name = format!("cand-boot-{}", std::process::id());
    let lxc = |tool: &str, args: &[&str]| {
        let mut cmd = Command::new(tool);
        cmd.arg("-P").arg(&lxcpath).args(["-n", &name]).args(args);
        cmd
    };
    let create = super::formats::lxc_create_local(&conf, &dist);
    ok(&mut lxc("lxc-create", &create.iter().map(String::as_str).collect::<Vec<_>>()));
    // No panic between start and destroy: the container is always torn down.
    let attach = |args: &[&str]| {
        let mut a = vec!["--clear-env", "--"];
        a.extend_from_slice(args);
        let out = lxc("lxc-attach", &a).stdin(Stdio::null()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let started = lxc("lxc-start", &["-d"]).status().is_ok_and(|s| s.success())
        && lxc("lxc-wait", &["-s", "RUNNING", "-t", "20"]).status().is_ok_and(|s| s.success());
    let booted = if started {
        let state = wait_running(|| attach(&["/bin/systemctl", "is-system-running"]));
        (state, attach(&["/usr/bin/dpkg", "--audit"]), attach(&["/bin/systemctl", "--failed", "--no-legend"]))
    } else {
        ("not started".to_owned(), String::new(), String::new())
    };
    let _ = lxc("lxc-stop", &["-k"]).output();
    ok(&mut lxc("lxc-destroy", &["-f"]));
    assert_eq!(booted.0, "running", "LXC: systemd did not reach `running`; failed units:\n{}", booted.2);
    assert_eq!(booted.1, "", "LXC: dpkg --audit");

    // systemd-nspawn -b on the extracted rootfs; stopped with one SIGTERM.
    let root = t.path().join("nspawn-root");
    extract(&dist.join("rootfs.tar.zst"), &root);
    let node = super::per_machine::Node::boot(&root);
    let state = wait_running(|| node.exec(&["/bin/systemctl", "is-system-running"]).1);
    let audit = node.exec(&["/usr/bin/dpkg", "--audit"]).1;
    let failed = node.exec(&["/bin/systemctl", "--failed", "--no-legend"]).1;
    // Stopped with one SIGTERM (then SIGKILL after 30 s).
    drop(node);
    assert_eq!(state, "running", "nspawn: systemd did not reach `running`; failed units:\n{failed}");
    assert_eq!(audit, "", "nspawn: dpkg --audit");
    assert_eq!(leftovers(&store), Vec::<PathBuf>::new());
}
