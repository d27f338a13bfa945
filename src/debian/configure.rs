//! Configure mode: the image's own `dpkg` runs the maintainer scripts in a sandbox, and what
//! they changed becomes the `configure` layer.
//!
//! The merged image (every recipe layer) is written to a fresh directory under the store's
//! `tmp/` ([`crate::instance::materialize`]: our own validated tree, never an archive
//! unpacked by someone else's code; with `/usr` already merged when the image installs
//! `usrmerge`, [`super::usrmerge`]), then [`crate::sandbox::run`] runs, inside new mount,
//! PID, UTS, IPC and network namespaces with a fixed environment and hostname, a driver
//! script that installs a `policy-rc.d` (no service starts), runs each package's `preinst
//! install` in the order apt would (essential packages and `Pre-Depends` first, every
//! package after what it depends on), then `dpkg --configure -a`.
//!
//! The change is read back by comparing trees: an entry whose inode changed after a marker
//! taken just before the run (its `ctime`, which no script can set back) is read again and
//! compared with what was written; entries that are gone become OCI whiteouts. Then it is
//! normalised: mtimes clamped to `SOURCE_DATE_EPOCH`, logs and caches known to vary
//! ([`VARYING`]) left out, `/etc/machine-id` emptied (systemd makes one at first boot), and
//! per-machine state (host keys, snakeoil certificates, database clusters …) left out and made
//! on each node at first boot instead ([`super::per_machine`]). Unless the recipe turns the
//! guard off, the scripts run twice, side by side, and what still differs between the two runs
//! fails the build, path by path: it is a bug to fix where it comes from, or per-machine state
//! to declare, never a file to add to [`VARYING`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use super::control;
use super::packages::Relations;
use super::per_machine::{self, PerMachineError, Record, Rule};
use super::usrmerge;
use crate::digest::{Digest, Hasher};
use crate::sandbox::{self, Bind, Exit, Spec};
use crate::tree::{Content, Kind, Node, Tree, WHITEOUT_PREFIX};

/// Bumped whenever the configure run or its normalisation changes.
const VERSION: u32 = 6;

/// The hostname the scripts see.
pub const HOSTNAME: &str = "candidate";

/// Where the driver script is bound inside the sandbox (a tmpfs, not the image).
const DRIVER: &str = "/run/candidate/configure.sh";

/// Paths (image-relative; a `*` matches any part of one name) that vary from run
/// to run for reasons that are no part of the system: logs, caches and backups.
pub const VARYING: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/apt/*",
    "var/log/bootstrap.log",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/cache/apt/*.bin",
];

/// Emptied rather than dropped: an empty `/etc/machine-id` tells systemd to make one at boot.
pub const EMPTIED: &[&str] = &["etc/machine-id"];

fn varying(path: &str) -> bool {
    VARYING.iter().any(|pattern| match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            path.len() >= prefix.len() + suffix.len()
                && path.starts_with(prefix)
                && path.ends_with(suffix)
                && !path[prefix.len()..path.len() - suffix.len()].contains('/')
        }
        None => path == *pattern,
    })
}

/// The action-cache key of the configure layer over these layers, with these per-machine
/// rules and guard setting (a layer the guard did not check is not one it did).
pub fn action_key(diff_ids: &[Digest], sde: u64, architecture: &str, rules: &[Rule], guard: bool) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-configure").field(crate::layer::FORMAT_VERSION.to_le_bytes()).field(VERSION.to_le_bytes());
    h.field(sde.to_le_bytes()).field(architecture);
    for diff_id in diff_ids {
        h.field(diff_id.as_bytes());
    }
    per_machine::hash_rules(&mut h, rules);
    h.field([u8::from(guard)]);
    h.finish()
}

/// The action-cache key under which the [`Record`] of the configure layer `key` is kept.
pub fn record_key(key: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-configure-per-machine").field(key.as_bytes());
    h.finish()
}

/// The dpkg architecture of the machine we run on, if we know its name.
pub fn host_architecture() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" if cfg!(target_endian = "little") => "mips64el",
        _ => return None,
    })
}

/// Settings of one configure run.
pub struct Run<'a> {
    /// Where instance directories are made (the store's `tmp/`).
    pub scratch: &'a Path,
    pub architecture: &'a str,
    pub foreign: &'a [String],
    pub sde: u64,
    pub timeout: std::time::Duration,
    /// Per-machine state: the built-in list and the recipe's ([`per_machine::rules`]).
    pub rules: &'a [Rule],
    /// Run the scripts twice and refuse what differs.
    pub guard: bool,
    /// The image's Python venvs, byte-compiled by the image's own interpreter after dpkg.
    pub venvs: &'a [crate::python::venv::Venv],
}

/// How long each step of a configure run took (shown with `--verbose`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub materialize: std::time::Duration,
    pub scripts: std::time::Duration,
    pub changes: std::time::Duration,
    /// Comparing the two runs (zero without the guard).
    pub compare: std::time::Duration,
}

/// Runs the maintainer scripts over `image` (every recipe layer, merged) and returns the
/// configure layer: what they changed, normalised, per-machine state left out and the
/// first-boot script added; with what the manifest says of it. The tree's contents point into
/// `instance`, which must outlive the layer's serialisation. With the guard, a second instance
/// is made beside it (and removed before this returns).
pub fn configure(image: &Tree, run: &Run<'_>, instance: &Path) -> anyhow::Result<(Tree, Timings, Record)> {
    match host_architecture() {
        Some(host) if host == run.architecture && run.foreign.is_empty() => {}
        host => bail!(
            "configure mode runs the image's own dpkg, so the image must be for this machine's architecture \
             ({}), with no foreign architectures; this recipe is for `{}`{}: build it extract-only (drop \
             `[configure] maintainer-scripts`) or on a `{}` machine",
            host.unwrap_or("unknown"),
            run.architecture,
            if run.foreign.is_empty() { String::new() } else { format!(" plus {}", run.foreign.join(", ")) },
            run.architecture,
        ),
    }
    for (path, what) in [("usr/bin/dpkg", "dpkg"), ("bin/sh", "a shell at /bin/sh")] {
        if !image.resolve(path).is_some_and(|n| matches!(n.kind, Kind::File { .. })) {
            bail!("configure mode runs the image's own dpkg, but the image has no {what} (`/{path}`): install it in a layer");
        }
    }
    let status = match image.get("var/lib/dpkg/status").map(|n| &n.kind) {
        Some(Kind::File { size, content, .. }) => {
            String::from_utf8(content.read_all(*size)?).context("the image's /var/lib/dpkg/status is not UTF-8")?
        }
        _ => bail!("the image has no /var/lib/dpkg/status: configure mode needs Debian packages installed"),
    };
    for venv in run.venvs {
        let python = format!("usr/bin/{}", venv.python_name());
        if !image.resolve(&python).is_some_and(|n| matches!(n.kind, Kind::File { .. })) {
            bail!(
                "the venv `/{}` is byte-compiled by the image's own interpreter, but the image has no `/{python}`: \
                 install `{}` in a layer below it",
                venv.prefix,
                venv.python_name()
            );
        }
    }
    // The status file, read once: the driver's preinst order, and whether usrmerge is in it.
    let installed = preinst_order(&status)?;
    let mut driver = driver_script(&installed, image.get("usr/sbin/policy-rc.d").is_none());
    driver.push_str(&byte_compile_script(run.venvs));
    let systemd = init_is_systemd(image);
    // What the scripts start from: the image, or the image with /usr merged already; with the
    // stand-ins of per-machine state where the scripts would make it ([`per_machine::stand_ins`]).
    let merged = installed.iter().any(|p| p.name == "usrmerge").then(|| usrmerge::lay_out(image, run.sde)).flatten();
    let packages: BTreeSet<&str> = installed.iter().map(|p| p.name.as_str()).collect();
    let stand_ins = per_machine::stand_ins(run.rules, merged.as_ref().unwrap_or(image), |name| packages.contains(name));
    let stood_in: BTreeSet<&str> = stand_ins.iter().map(|(rule, _)| *rule).collect();
    let merged = if stand_ins.is_empty() {
        merged
    } else {
        let mut tree = merged.unwrap_or_else(|| image.clone());
        for (_, path) in &stand_ins {
            tree.insert(path, per_machine::stand_in(run.sde))
                .with_context(|| format!("cannot place a per-machine stand-in at `/{path}`"))?;
        }
        Some(tree)
    };
    let start = Start { image, laid_out: merged.as_ref().unwrap_or(image) };
    let finish = |layer: Tree| per_machine::apply(layer, run.rules, &stood_in, EMPTIED, systemd, run.guard, run.sde);
    if !run.guard {
        let (layer, timings) = run_scripts(&start, run, instance, &driver)?;
        let (layer, record) = finish(layer);
        return Ok((layer, timings, record));
    }
    // The guard: a second, independent run of the same image, side by side (dpkg configures
    // one package at a time, so the second run mostly takes another core, not more time).
    let twin = instance_dir(run.scratch)?;
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| run_scripts(&start, run, twin.path(), &driver));
        let first = run_scripts(&start, run, instance, &driver);
        (first, second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let ((layer, mut timings), (other, other_timings)) = (first?, second?);
    timings.scripts = timings.scripts.max(other_timings.scripts);
    let started = std::time::Instant::now();
    let (layer, record) = finish(layer);
    let (other, _) = finish(other);
    let differing = per_machine::differences(&layer, &other)?;
    timings.compare = started.elapsed();
    drop(other);
    twin.close()
        .with_context(|| format!("cannot remove the second configure instance under `{}`", run.scratch.display()))?;
    if !differing.is_empty() {
        return Err(PerMachineError::Nondeterministic { paths: differing }.into());
    }
    Ok((layer, timings, record))
}

/// Whether the image boots systemd: its `/sbin/init` is a link to systemd.
fn init_is_systemd(image: &Tree) -> bool {
    ["usr/sbin/init", "sbin/init"].iter().any(|path| {
        matches!(image.get(path).map(|n| &n.kind), Some(Kind::Symlink { target }) if target.ends_with("/systemd/systemd"))
    })
}

/// What a run of the scripts starts from.
struct Start<'a> {
    /// The image the configure layer goes over.
    image: &'a Tree,
    /// What is written for the scripts: the image, or the image with `/usr` merged by
    /// [`usrmerge::lay_out`] (a change the configure layer then holds, as the conversion's).
    laid_out: &'a Tree,
}

/// One run of the maintainer scripts: the image laid out in `instance`, the driver run over
/// it in a sandbox, and what it changed read back and normalised.
fn run_scripts(start: &Start<'_>, run: &Run<'_>, instance: &Path, driver: &str) -> anyhow::Result<(Tree, Timings)> {
    let mut timings = Timings::default();
    let started = std::time::Instant::now();
    let written = crate::instance::materialize(start.laid_out, instance)
        .with_context(|| format!("cannot write the image to `{}` for its maintainer scripts", instance.display()))?;
    timings.materialize = started.elapsed();
    let marker = change_marker(run.scratch)?;
    let driver_file = tempfile::NamedTempFile::new_in(run.scratch)?;
    fs_err::write(driver_file.path(), driver.as_bytes())?;
    let spec = Spec {
        root: instance,
        argv: vec!["/bin/sh".into(), DRIVER.into()],
        env: sandbox::default_env(run.sde),
        hostname: HOSTNAME.into(),
        binds: vec![Bind { source: driver_file.path().to_owned(), target: DRIVER.into(), read_only: true }],
        timeout: run.timeout,
        output_limit: 64 << 10,
        // Scripts see an image being built (`ischroot` says yes) and leave init alone.
        chroot: true,
    };
    let outcome = sandbox::run(&spec).context("cannot run the maintainer scripts in a sandbox")?;
    timings.scripts = outcome.duration;
    let tail = || {
        let text = String::from_utf8_lossy(&outcome.output);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    match outcome.exit {
        Exit::Code(0) => {}
        Exit::Code(code) => bail!("the maintainer scripts failed (exit code {code}); their last lines:\n{}", tail()),
        Exit::Signal(signal) => {
            bail!("the maintainer scripts were killed by signal {signal}; their last lines:\n{}", tail())
        }
        Exit::TimedOut => bail!(
            "the maintainer scripts did not finish within {} s and were killed; their last lines:\n{}",
            run.timeout.as_secs(),
            tail()
        ),
    }
    let started = std::time::Instant::now();
    let layer = changes(start.image, instance, marker, run.sde, &written.folders)?;
    timings.changes = started.elapsed();
    Ok((layer, timings))
}

/// One installed package, as the status file says.
struct Installed {
    /// The `info/` prefix (`NAME` or `NAME:ARCH`).
    info: String,
    name: String,
    arch: String,
    essential: bool,
    pre_depends: Vec<Vec<String>>,
    depends: Vec<Vec<String>>,
}

/// The packages of a dpkg status file, in the order their `preinst` would run: essential
/// packages first, then the rest; within each, every package after what it pre-depends and
/// depends on (the first alternative that is installed), ties by name; cycles broken by name.
fn preinst_order(status: &str) -> anyhow::Result<Vec<Installed>> {
    let mut packages = Vec::new();
    for stanza in control::parse_stanzas(status).context("cannot read the image's /var/lib/dpkg/status")? {
        let field = |name: &str| stanza.get(name).unwrap_or_default().trim().to_owned();
        let name = field("Package");
        let relations = |field: &str| -> anyhow::Result<Vec<Vec<String>>> {
            let Some(text) = stanza.get(field) else { return Ok(Vec::new()) };
            let relations = Relations::parse(field, text).with_context(|| format!("package `{name}`: {field}"))?;
            Ok(relations.iter().map(|alts| alts.iter().map(|r| r.name.as_str().to_owned()).collect()).collect())
        };
        let arch = field("Architecture");
        let info = if field("Multi-Arch") == "same" { format!("{name}:{arch}") } else { name.clone() };
        packages.push(Installed {
            info,
            essential: field("Essential") == "yes",
            pre_depends: relations("Pre-Depends")?,
            depends: relations("Depends")?,
            name,
            arch,
        });
    }
    packages.sort_by(|a, b| (!a.essential, &a.name, &a.arch).cmp(&(!b.essential, &b.name, &b.arch)));
    let index: HashMap<&str, Vec<usize>> = packages.iter().enumerate().fold(HashMap::new(), |mut m, (i, p)| {
        m.entry(p.name.as_str()).or_default().push(i);
        m
    });
    // Depth-first, dependencies before dependents, over the essential set and then the rest.
    let mut order = Vec::new();
    let mut state = vec![0u8; packages.len()]; // 0 new, 1 in progress, 2 done
    fn visit(
        i: usize,
        packages: &[Installed],
        index: &HashMap<&str, Vec<usize>>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for alternatives in packages[i].pre_depends.iter().chain(&packages[i].depends) {
            if let Some(deps) = alternatives.iter().find_map(|name| index.get(name.as_str())) {
                for &d in deps {
                    visit(d, packages, index, state, order);
                }
            }
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..packages.len() {
        visit(i, &packages, &index, &mut state, &mut order);
    }
    let mut slots: Vec<Option<Installed>> = packages.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| slots[i].take().expect("each visited once")).collect())
}

/// The shell script the sandbox runs: `policy-rc.d` (unless the image has one), each
/// `preinst install` in the order given ([`preinst_order`]), `dpkg --configure -a`, then `policy-rc.d` removed again.
fn driver_script(installed: &[Installed], own_policy_rc_d: bool) -> String {
    let mut script = String::from("#!/bin/sh\n# Written by candidate: configures the image's packages.\nset -e\n");
    if own_policy_rc_d {
        script.push_str("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\nchmod 0755 /usr/sbin/policy-rc.d\n");
    }
    for p in installed {
        let preinst = format!("/var/lib/dpkg/info/{}.preinst", p.info);
        script.push_str(&format!(
            "if [ -x {q} ]; then echo \"candidate: preinst install {name}\"; DPKG_MAINTSCRIPT_PACKAGE={name} \
             DPKG_MAINTSCRIPT_ARCH={arch} DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 \
             DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= {q} install; fi\n",
            q = shell_quote(&preinst),
            name = shell_quote(&p.name),
            arch = shell_quote(&p.arch),
        ));
    }
    script.push_str("echo 'candidate: dpkg --configure -a'\ndpkg --configure -a\n");
    if own_policy_rc_d {
        script.push_str("rm -f /usr/sbin/policy-rc.d\n");
    }
    script
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The driver's tail that byte-compiles each venv's `site-packages` with the image's own
/// interpreter, after dpkg (which may have configured that interpreter): hash-based `.pyc`
/// that are never checked against their source (`unchecked-hash`: an image's files do not
/// change), no timestamps in them, and `PYTHONHASHSEED=0` so that sets marshal in one order.
/// As pip, a file that does not compile (Python 2 test data in a wheel) is left without its
/// `.pyc` rather than failing the build.
fn byte_compile_script(venvs: &[crate::python::venv::Venv]) -> String {
    let mut script = String::new();
    for venv in venvs {
        let site = shell_quote(&format!("/{}", venv.site_packages()));
        let python = shell_quote(&format!("/usr/bin/{}", venv.python_name()));
        script.push_str(&format!(
            "echo 'candidate: byte-compile /{prefix}'\nPYTHONHASHSEED=0 {python} -m compileall -q \
             --invalidation-mode unchecked-hash {site} || echo 'candidate: some files of /{prefix} did not compile; \
             they have no .pyc'\n",
            prefix = venv.prefix.replace('\'', ""),
        ));
    }
    script
}

/// A ctime every later change of an inode on this filesystem is newer than: a file touched
/// now, with a pause on both sides of it longer than the kernel's timestamp granularity.
fn change_marker(dir: &Path) -> anyhow::Result<(i64, i64)> {
    std::thread::sleep(std::time::Duration::from_millis(30));
    let marker = tempfile::NamedTempFile::new_in(dir)?;
    let meta = marker.as_file().metadata()?;
    std::thread::sleep(std::time::Duration::from_millis(30));
    Ok((meta.ctime(), meta.ctime_nsec()))
}

/// What the run changed under `root` relative to `before`, normalised, as a layer. `folders`:
/// each folder's inode as [`crate::instance::materialize`] made it.
///
/// Long by design: one walk of the instance decides, per path, changed or not, normalises
/// what it keeps and notes hard links, then whiteouts and link groups follow from what the
/// walk saw.
pub fn changes(
    before: &Tree,
    root: &Path,
    marker: (i64, i64),
    sde: u64,
    folders: &HashMap<String, (u64, u64)>,
) -> anyhow::Result<Tree> {
    let mut layer = Tree::new(sde);
    // Folders not the inode written at their path (moved there, or made): a rename changes
    // the moved folder's ctime, not its contents', so everything under one is compared.
    let mut moved: HashSet<String> = HashSet::new();
    // Every path there is now, and whether it is a directory.
    let mut seen: HashMap<String, bool> = HashMap::new();
    // Every regular file with more than one link, by inode, changed or not: a link the scripts
    // add to an unchanged file puts that file in the layer too, in the new link's group.
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let under_moved = moved.contains(&dir);
        let host_dir = if dir.is_empty() { root.to_owned() } else { root.join(&dir) };
        let mut names: Vec<_> =
            fs_err::read_dir(&host_dir)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let Some(name) = name.to_str() else {
                bail!("the maintainer scripts made `/{dir}/{}`, whose name is not UTF-8", name.to_string_lossy());
            };
            let path = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
            let host = root.join(&path);
            let meta = fs_err::symlink_metadata(&host)?;
            if meta.is_dir() {
                if under_moved || folders.get(&path) != Some(&(meta.dev(), meta.ino())) {
                    moved.insert(path.clone());
                }
                pending.push(path.clone());
            }
            seen.insert(path.clone(), meta.is_dir());
            if varying(&path) {
                continue;
            }
            if meta.is_file() && meta.nlink() > 1 {
                inodes.entry((meta.dev(), meta.ino())).or_default().push(path.clone());
            }
            let old = before.get(&path);
            // Top-level entries are always compared: the instance may have been written
            // with `/bin` … already links ([`usrmerge::lay_out`]), before the marker.
            let touched = !path.contains('/') || under_moved || (meta.ctime(), meta.ctime_nsec()) > marker;
            if old.is_some() && !touched {
                continue;
            }
            let mut node = scan(&host, &path, &meta, sde)?;
            if EMPTIED.contains(&path.as_str()) {
                if let Kind::File { size, content, .. } = &mut node.kind {
                    *size = 0;
                    *content = Content::Bytes(Arc::from(&[][..]));
                }
            }
            if old.is_some_and(|old| same(old, &node).unwrap_or(false)) {
                continue;
            }
            layer.insert(&path, node).with_context(|| format!("the maintainer scripts' change at `/{path}`"))?;
        }
    }
    // Groups numbered in path order, not the map's: the writer only needs them distinct, but
    // nothing that reaches a layer may depend on a HashMap's iteration order.
    let in_layer = |layer: &Tree, path: &String| matches!(layer.get(path).map(|n| &n.kind), Some(Kind::File { .. }));
    let mut groups: Vec<Vec<String>> =
        inodes.into_values().filter(|paths| paths.len() > 1 && paths.iter().any(|p| in_layer(&layer, p))).collect();
    for paths in &mut groups {
        paths.sort();
    }
    groups.sort();
    for (group, paths) in groups.into_iter().enumerate() {
        for path in paths {
            if !in_layer(&layer, &path) {
                let host = root.join(&path);
                let node = scan(&host, &path, &fs_err::symlink_metadata(&host)?, sde)?;
                layer.insert(&path, node).with_context(|| format!("the maintainer scripts' link at `/{path}`"))?;
            }
            if let Some(Node { kind: Kind::File { link_group, .. }, .. }) = layer.get_mut(&path) {
                *link_group = Some(group as u64);
            }
        }
    }
    // What is gone: a whiteout for each topmost missing path, unless its parent is no longer a
    // directory (usrmerge turns `/bin` into a link): a non-directory over a directory removes
    // the whole subtree when layers merge, and when an OCI runtime extracts them.
    let mut gone: Vec<&String> = Vec::new();
    for (path, _) in before.iter() {
        if path.is_empty() || seen.contains_key(path) || varying(path) {
            continue;
        }
        if gone.last().is_some_and(|g| path.starts_with(&format!("{g}/"))) {
            continue;
        }
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        if !parent.is_empty() && seen.get(parent) != Some(&true) {
            continue;
        }
        gone.push(path);
    }
    for path in gone {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let whiteout = if parent.is_empty() {
            format!("{WHITEOUT_PREFIX}{name}")
        } else {
            format!("{parent}/{WHITEOUT_PREFIX}{name}")
        };
        let node = Node {
            kind: Kind::Whiteout,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: sde,
            xattrs: BTreeMap::new(),
            implicit: false,
        };
        // The parent still exists (the path is the topmost one gone), so it is implicit here.
        layer.insert(&whiteout, node)?;
    }
    Ok(layer)
}

/// A node for a host entry the scripts made or changed.
fn scan(host: &Path, path: &str, meta: &std::fs::Metadata, sde: u64) -> anyhow::Result<Node> {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        Kind::Directory
    } else if file_type.is_symlink() {
        let target = fs_err::read_link(host)?;
        let target = target
            .to_str()
            .with_context(|| format!("the maintainer scripts made `/{path}`, a symlink whose target is not UTF-8"))?
            .to_owned();
        Kind::Symlink { target }
    } else if file_type.is_file() {
        Kind::File { size: meta.len(), content: Content::Host(Arc::new(host.to_owned())), link_group: None }
    } else {
        let what = crate::local::special_kind(file_type);
        bail!("the maintainer scripts left a {what} at `/{path}`; an image may hold none outside /dev, /run and /tmp");
    };
    Ok(Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: u64::try_from(meta.mtime()).unwrap_or(0).min(sde),
        xattrs: xattrs(host).with_context(|| format!("cannot read the extended attributes of `/{path}`"))?,
        implicit: false,
    })
}

/// Whether a rescanned entry is what was written before it (the mtime aside: one clamped to
/// `SOURCE_DATE_EPOCH` tells nothing).
fn same(old: &Node, new: &Node) -> std::io::Result<bool> {
    if (old.mode, old.uid, old.gid, &old.xattrs) != (new.mode, new.uid, new.gid, &new.xattrs) {
        return Ok(false);
    }
    match (&old.kind, &new.kind) {
        (Kind::Directory, Kind::Directory) => Ok(true),
        (Kind::Symlink { target: a }, Kind::Symlink { target: b }) => Ok(a == b),
        (Kind::File { size: sa, content: ca, .. }, Kind::File { size: sb, content: cb, .. }) => {
            Ok(sa == sb && ca.read_all(*sa)? == cb.read_all(*sb)?)
        }
        _ => Ok(false),
    }
}

/// The extended attributes of a host entry (not following symlinks), but the host's own
/// SELinux label.
fn xattrs(path: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated and the buffer's length is passed with it.
    let len = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) { Ok(BTreeMap::new()) } else { Err(e) };
    }
    names.truncate(len as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_str = String::from_utf8_lossy(name).into_owned();
        if name_str == "security.selinux" {
            continue;
        }
        let c_name = CString::new(name).map_err(std::io::Error::other)?;
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated and the buffer's length is passed with it.
        let n = unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        value.truncate(n as usize);
        out.insert(name_str, value);
    }
    Ok(out)
}

/// Where to make the instance: `/dev/shm` when it is a tmpfs with room for the image twice
/// over, else `fallback` (the store's `tmp/`). The instance is thrown away, and dpkg syncs
/// its database after every package: on a disk those syncs are most of a configure run.
pub fn scratch_dir(image: &Tree, fallback: &Path) -> std::path::PathBuf {
    let bytes: u64 = image.iter().map(|(_, n)| if let Kind::File { size, .. } = n.kind { size } else { 0 }).sum();
    let shm = Path::new("/dev/shm");
    let Ok(c_path) = CString::new("/dev/shm") else { return fallback.to_owned() };
    // SAFETY: a NUL-terminated path and a zeroed struct the call fills in.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } == 0;
    let free = (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64);
    if ok && fs.f_type == libc::TMPFS_MAGIC && free / 2 > bytes + (256 << 20) && shm.is_dir() {
        shm.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// A fresh, empty instance directory under `scratch`, removed when dropped.
/// The folder is named after this process (`configure-PID-…`), so that one left by a build
/// that was killed (its PID gone) is removed here, by the next configure run: on `/dev/shm` it
/// would otherwise hold memory until reboot.
pub fn instance_dir(scratch: &Path) -> anyhow::Result<tempfile::TempDir> {
    if let Ok(entries) = fs_err::read_dir(scratch) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("configure-")).and_then(|n| n.split('-').next())
            else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = fs_err::remove_dir_all(entry.path());
            }
        }
    }
    Ok(tempfile::Builder::new().prefix(&format!("configure-{}-", std::process::id())).tempdir_in(scratch)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: web\nStatus: install ok unpacked\nArchitecture: amd64\nVersion: 1\n\
Depends: libc6, mawk | gawk\n\nPackage: libc6\nStatus: install ok unpacked\nArchitecture: amd64\n\
Multi-Arch: same\nVersion: 2\n\nPackage: dash\nEssential: yes\nStatus: install ok unpacked\n\
Architecture: amd64\nVersion: 1\nPre-Depends: libc6 (>= 2)\n\nPackage: mawk\nStatus: install ok unpacked\n\
Architecture: amd64\nVersion: 1\nDepends: libc6\n";

    #[test]
    fn preinst_runs_essential_first_and_dependencies_before_dependents() {
        let order: Vec<String> = preinst_order(STATUS).unwrap().into_iter().map(|p| p.info).collect();
        assert_eq!(order, ["libc6:amd64", "dash", "mawk", "web"]);
    }

    #[test]
    fn the_driver_quotes_and_runs_dpkg_last() {
        let script = driver_script(&preinst_order(STATUS).unwrap(), true);
        assert!(script.contains("'/var/lib/dpkg/info/libc6:amd64.preinst' install"), "{script}");
        let dpkg = script.find("dpkg --configure -a\n").unwrap();
        assert!(script.find("web.preinst").unwrap() < dpkg);
        assert!(script.trim_end().ends_with("rm -f /usr/sbin/policy-rc.d"));
        assert!(!driver_script(&preinst_order(STATUS).unwrap(), false).contains("policy-rc.d"));
    }

    /// The byte-compile step, run for real (with the host's Debian interpreter, standing in
    /// for the image's) twice over the same venv: the `.pyc` are bit-identical.
    #[test]
    fn byte_compiled_venvs_are_bit_identical_across_runs() {
        if !crate::testing::file("/usr/bin/python3.11", "python3.11-minimal") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let venv = crate::python::venv::Venv {
            prefix: dir.path().join("venv").to_str().unwrap().trim_start_matches('/').to_owned(),
            python_minor: (3, 11),
            python_full: "3.11.2".into(),
        };
        let site = Path::new("/").join(venv.site_packages());
        fs_err::create_dir_all(site.join("pkg")).unwrap();
        let source = "S = {'a', 'b', 'c', frozenset({1, 2})}\nD = {'x': (1, 2.5, b'y')}\ndef f(*a, **k):\n    return [x for x in a if x in S]\n";
        fs_err::write(site.join("pkg/__init__.py"), source).unwrap();
        fs_err::write(site.join("py2only.py"), "print 'no'\n").unwrap();
        let compile = |umask: &str, tz: &str| {
            let _ = fs_err::remove_dir_all(site.join("pkg/__pycache__"));
            let script = format!("umask {umask}; {}", byte_compile_script(std::slice::from_ref(&venv)));
            let out = std::process::Command::new("sh").args(["-c", &script]).env("TZ", tz).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let pyc = site.join("pkg/__pycache__/__init__.cpython-311.pyc");
            (fs_err::read(pyc).unwrap(), String::from_utf8(out.stdout).unwrap())
        };
        let (first, said) = compile("022", "UTC");
        let (second, _) = compile("077", "Asia/Tokyo");
        assert!(first == second, "the .pyc differ between runs");
        // Flags 0b01: hash-based, not checked against the source.
        assert_eq!(first[4..8], [1, 0, 0, 0]);
        assert!(said.contains("did not compile"), "{said}");
        assert!(!site.join("__pycache__/py2only.cpython-311.pyc").exists());
    }

    #[test]
    fn venvs_are_byte_compiled_by_the_image_s_interpreter() {
        let venv = crate::python::venv::Venv {
            prefix: "opt/app/venv".into(),
            python_minor: (3, 11),
            python_full: "3.11.2".into(),
        };
        assert_eq!(byte_compile_script(&[]), "");
        insta::assert_snapshot!(byte_compile_script(&[venv]), @r"
        echo 'candidate: byte-compile /opt/app/venv'
        PYTHONHASHSEED=0 '/usr/bin/python3.11' -m compileall -q --invalidation-mode unchecked-hash '/opt/app/venv/lib/python3.11/site-packages' || echo 'candidate: some files of /opt/app/venv did not compile; they have no .pyc'
        ");
    }

    #[test]
    fn instances_of_dead_builds_are_swept() {
        let scratch = tempfile::tempdir().unwrap();
        // PIDs never exceed the kernel's limit (at most 2^22).
        let stale = scratch.path().join("configure-4194999-abc");
        let foreign = scratch.path().join("configure-x");
        fs_err::create_dir_all(stale.join("etc")).unwrap();
        fs_err::create_dir_all(&foreign).unwrap();
        let live = instance_dir(scratch.path()).unwrap();
        assert!(!stale.exists() && foreign.exists() && live.path().exists());
        assert!(live
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("configure-{}-", std::process::id())));
    }

    #[test]
    fn varying_paths_match_their_folder_only() {
        assert!(varying("var/log/dpkg.log"));
        assert!(varying("var/lib/dpkg/status-old"));
        assert!(varying("var/log/apt/history.log"));
        assert!(!varying("var/lib/dpkg/status"));
        assert!(!varying("var/lib/dpkg/info/x-old/y"));
    }

    /// An entry of an image as the tests write it: root's, at time 50.
    fn node(kind: Kind, mode: u32) -> Node {
        Node { kind, mode, uid: 0, gid: 0, mtime: 50, xattrs: BTreeMap::new(), implicit: false }
    }

    fn bytes(b: &[u8]) -> Kind {
        Kind::File { size: b.len() as u64, content: Content::Bytes(Arc::from(b)), link_group: None }
    }

    /// An image of these entries, at time 100.
    fn image(entries: Vec<(&str, Kind, u32)>) -> Tree {
        let mut tree = Tree::new(100);
        for (path, kind, mode) in entries {
            tree.insert(path, node(kind, mode)).unwrap();
        }
        tree
    }

    /// `rm -rf /etc/x && mv /etc/y /etc/x`: the moved folder's files keep their old ctimes,
    /// and `etc/x/conf` is a path the image has, but what is there now is `y`'s.
    #[test]
    fn a_folder_moved_over_another_is_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir(&root).unwrap();
        let before = image(vec![
            ("etc", Kind::Directory, 0o755),
            ("etc/x", Kind::Directory, 0o755),
            ("etc/x/conf", bytes(b"A"), 0o644),
            ("etc/x/same", bytes(b"S"), 0o644),
            ("etc/y", Kind::Directory, 0o755),
            ("etc/y/conf", bytes(b"B"), 0o644),
            ("etc/y/same", bytes(b"S"), 0o644),
        ]);
        let written = crate::instance::materialize(&before, &root).unwrap();
        let marker = change_marker(dir.path()).unwrap();
        fs_err::remove_dir_all(root.join("etc/x")).unwrap();
        fs_err::rename(root.join("etc/y"), root.join("etc/x")).unwrap();
        let layer = changes(&before, &root, marker, 100, &written.folders).unwrap();
        let paths: Vec<&str> = layer.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["", "etc", "etc/.wh.y", "etc/x", "etc/x/conf"], "{paths:?}");
        match &layer.get("etc/x/conf").unwrap().kind {
            Kind::File { size, content, .. } => assert_eq!(content.read_all(*size).unwrap(), b"B"),
            other => panic!("{other:?}"),
        }
    }

    /// `ln /etc/a /etc/b` over an unchanged `/etc/a`: the layer holds both, as one file.
    #[test]
    fn a_link_added_to_an_unchanged_file_keeps_them_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir(&root).unwrap();
        let before = image(vec![("etc", Kind::Directory, 0o755), ("etc/a", bytes(b"A"), 0o644)]);
        let written = crate::instance::materialize(&before, &root).unwrap();
        let marker = change_marker(dir.path()).unwrap();
        fs_err::hard_link(root.join("etc/a"), root.join("etc/b")).unwrap();
        let layer = changes(&before, &root, marker, 100, &written.folders).unwrap();
        let group = |path: &str| match &layer.get(path).map(|n| &n.kind) {
            Some(Kind::File { link_group, .. }) => *link_group,
            other => panic!("{path}: {other:?}"),
        };
        assert!(group("etc/a").is_some() && group("etc/a") == group("etc/b"));
    }

    #[test]
    fn changes_finds_new_changed_and_deleted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = &dir.path().join("root");
        fs_err::create_dir(root).unwrap();
        let before = image(vec![
            ("etc", Kind::Directory, 0o755),
            ("etc/keep", bytes(b"same"), 0o644),
            ("etc/edit", bytes(b"old"), 0o644),
            ("etc/gone", Kind::Directory, 0o755),
            ("etc/gone/inner", bytes(b"x"), 0o644),
            ("etc/chmod", bytes(b"c"), 0o644),
        ]);
        let written = crate::instance::materialize(&before, root).unwrap();
        let marker = change_marker(dir.path()).unwrap();
        fs_err::write(root.join("etc/edit"), b"new").unwrap();
        fs_err::write(root.join("etc/keep"), b"same").unwrap(); // rewritten, unchanged
        fs_err::remove_dir_all(root.join("etc/gone")).unwrap();
        fs_err::write(root.join("etc/machine-id"), b"0123\n").unwrap();
        fs_err::create_dir_all(root.join("var/log")).unwrap();
        fs_err::write(root.join("var/log/dpkg.log"), b"noise").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(root.join("etc/chmod"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let layer = changes(&before, root, marker, 100, &written.folders).unwrap();
        let paths: Vec<(&str, &str)> = layer.iter().map(|(p, n)| (p.as_str(), n.kind.describe())).collect();
        assert_eq!(
            paths,
            [
                ("", "directory"),
                ("etc", "directory"),
                ("etc/.wh.gone", "whiteout"),
                ("etc/chmod", "file"),
                ("etc/edit", "file"),
                ("etc/machine-id", "file"),
                ("var", "directory"),
                ("var/log", "directory"),
            ]
        );
        assert!(matches!(layer.get("etc/machine-id").unwrap().kind, Kind::File { size: 0, .. }));
        assert_eq!(layer.get("etc/chmod").unwrap().mode, 0o600);
        // Merged over the image, the whiteout deletes the folder and its contents.
        let mut merged = before.clone();
        merged.merge(layer).unwrap();
        assert!(merged.get("etc/gone").is_none() && merged.get("etc/gone/inner").is_none());
        assert!(merged.get("etc/.wh.gone").is_none());
    }
}
