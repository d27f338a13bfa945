//! Per-machine state: what each node of a system must make for itself, and the guard that
//! keeps anything else that varies out of a candidate.
//!
//! Many nodes are deployed from one candidate. Debian's maintainer scripts make state that
//! belongs to one machine: SSH host keys, the ssl-cert "snakeoil" key pair, dbus's machine
//! id, systemd's random seed, a PostgreSQL cluster (whose system identifier comes from the
//! clock and a PID). Shipped in a candidate, every node would hold the same private keys and
//! identities, and two builds would differ. So the configure run:
//!
//! 1. **leaves that state out** of the configure layer: every path matching an entry of
//!    [`BUILTIN`] or of the recipe's `[[configure.per-machine]]` (a directory with all under
//!    it), and every symlink the scripts made to such a path (ssl-cert's OpenSSL hash link);
//!    where the scripts make it only when it is missing, it is not made at all: empty
//!    [`stand_ins`] take its place before they run, and are left out the same way;
//! 2. **makes it at first boot**: the layer gains `/usr/lib/candidate/first-boot`, a shell
//!    script running the `first-boot` command of every entry that removed something, each
//!    once (a stamp in `/var/lib/candidate/first-boot/`; a failed one is retried at the next
//!    boot), and — when the image's init is systemd — `candidate-first-boot.service`, enabled
//!    in `sysinit.target`, so that it runs after the local filesystems and the random seed and
//!    before every ordinary service (`sshd -t`, nginx and PostgreSQL find their state). An
//!    image whose init is not systemd gets the script alone; the manifest says that nothing
//!    runs it, and whoever boots the node runs it once before the services start;
//! 3. **guards against the rest** ([`differences`]): the maintainer scripts run twice, side
//!    by side in two sandboxes, and any path whose result differs that no entry declares fails
//!    the build, naming each path with a `hint:` to declare it.
//!
//! ## Time and PIDs
//!
//! The sandbox cannot give the scripts a fixed clock (a time namespace offsets only the
//! monotonic and boot clocks; `CLOCK_REALTIME` is the host's) and the image carries no
//! libfaketime. Two inputs are made deterministic where they are inputs: `SOURCE_DATE_EPOCH`
//! is set to the candidate's (shadow's `useradd` dates new accounts by it), and the scripts run
//! as the only processes of a fresh PID namespace, one after the other, so the PIDs they see
//! follow from what runs, not from the host. State that is derived from the clock or from
//! randomness *and is an identity* (a database cluster's system identifier, keys) is not made
//! deterministic — fifty nodes sharing one PostgreSQL system identifier would be as wrong as
//! sharing a key — but moved to first boot. Whatever else reads the clock or a random source
//! is caught by the guard, which is why the guard compares two real runs rather than trusting
//! a list.
//!
//! ## What the guard costs
//!
//! Two runs side by side cost a second materialised image (memory on `/dev/shm`) and a second
//! core; on two cores the wall time grows far less than twofold (dpkg configures one package at
//! a time). The result is part of the configure layer's action key, so a warm build, or any
//! build whose layers did not change, pays nothing. `[configure] guard = false` skips it (and
//! the manifest says so). Its blind spot: content that changes more slowly than the two runs
//! are apart (a date in days) is equal in both; `SOURCE_DATE_EPOCH` covers the tools that honour
//! it, and a rebuild on another day (`candidate rebuild --check`) covers the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::digest::Hasher;
use crate::recipe::PerMachine;
use crate::tree::{Content, Kind, Node, Tree};

/// The script that makes each node's state, in the image.
pub const SCRIPT: &str = "usr/lib/candidate/first-boot";
/// The systemd unit that runs it, and where it is enabled.
pub const UNIT: &str = "usr/lib/systemd/system/candidate-first-boot.service";
const UNIT_WANTS: &str = "etc/systemd/system/sysinit.target.wants/candidate-first-boot.service";
/// Where the script keeps one stamp per action done on this node.
pub const STAMPS: &str = "/var/lib/candidate/first-boot";

/// One entry of the built-in list.
#[derive(Debug)]
pub struct Builtin {
    /// The action's name (also its stamp); the package whose scripts make the state.
    pub name: &'static str,
    /// Image paths (no leading `/`; `*` matches any part of one name).
    pub paths: &'static [&'static str],
    /// Shell run at first boot to make them; `None` when the system makes them itself.
    pub first_boot: Option<&'static str>,
    /// Empty files placed where the state would be made, before the scripts run, for scripts
    /// that make it only where it is missing ([`stand_ins`]).
    pub stand_ins: &'static [&'static str],
    /// Why it is per-machine, and who makes it otherwise (shown in the README).
    pub why: &'static str,
}

/// Per-machine state Debian 12's maintainer scripts make, by package. Order matters: actions
/// run in this order (ssl-cert before postgresql-common, whose `pg_createcluster` turns TLS
/// on only when the snakeoil pair exists).
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "openssh-server",
        paths: &["etc/ssh/ssh_host_*_key", "etc/ssh/ssh_host_*_key.pub"],
        first_boot: Some("ssh-keygen -A"),
        // The postinst makes each default host key only when `[ ! -f "$file" ]`: RSA 3072 alone
        // takes 0.2 to 1.3 s, for keys the candidate would leave out.
        stand_ins: &["etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_ecdsa_key", "etc/ssh/ssh_host_ed25519_key"],
        why: "the postinst makes the SSH host keys (RSA, ECDSA, Ed25519): a node's identity to every client",
    },
    Builtin {
        name: "ssl-cert",
        paths: &["etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem"],
        first_boot: Some("make-ssl-cert generate-default-snakeoil --force-overwrite"),
        // None: make-ssl-cert makes the pair again over one whose certificate does not pass its
        // `check_min_algo`, as an empty one would not.
        stand_ins: &[],
        why: "the postinst makes a self-signed TLS key and certificate (and its OpenSSL hash link), \
              used by nginx, PostgreSQL, postfix, dovecot … by default",
    },
    Builtin {
        name: "dbus",
        paths: &["var/lib/dbus/machine-id"],
        first_boot: None,
        stand_ins: &[],
        why: "the postinst makes a random machine id; left in place, systemd copies it into the empty \
              /etc/machine-id at boot, so every node would share one. dbus reads /etc/machine-id when \
              it is missing",
    },
    Builtin {
        name: "systemd",
        paths: &["var/lib/systemd/random-seed", "var/lib/systemd/credential.secret"],
        first_boot: None,
        stand_ins: &[],
        why: "the random seed and the credential-encryption secret; systemd makes both at boot when \
              missing (/etc/machine-id is emptied, not removed: systemd fills it at first boot)",
    },
    Builtin {
        name: "postgresql-common",
        paths: &["etc/postgresql/*/main", "var/lib/postgresql/*/main", "var/log/postgresql/postgresql-*-main.log"],
        first_boot: Some(
            "for initdb in /usr/lib/postgresql/*/bin/initdb; do\n\
             \x20   [ -x \"$initdb\" ] || continue\n\
             \x20   v=${initdb#/usr/lib/postgresql/}; v=${v%%/*}\n\
             \x20   [ -e \"/etc/postgresql/$v/main\" ] && continue\n\
             \x20   pg_createcluster \"$v\" main\n\
             \x20   # The generator that makes postgresql@VERSION-main.service ran before this cluster\n\
             \x20   # existed: run it again and queue the start (queued, as this runs before sysinit.target).\n\
             \x20   if [ -d /run/systemd/system ]; then\n\
             \x20       systemctl daemon-reload\n\
             \x20       systemctl --no-block start \"postgresql@$v-main.service\"\n\
             \x20   fi\n\
             done",
        ),
        // None: the postinst skips the cluster where `/etc/postgresql/V/main/postgresql.conf`
        // is, but `pg_createcluster` also makes `/etc/postgresql/V` and `/var/lib/postgresql/V`,
        // which the image keeps; a stand-in would change them.
        stand_ins: &[],
        why: "postgresql-NN's postinst creates the `main` cluster; its system identifier comes from the \
              clock and a PID, and initdb sizes it for the machine it runs on",
    },
    Builtin {
        name: "bind9",
        paths: &["etc/bind/rndc.key"],
        first_boot: Some("rndc-confgen -a\nchown root:bind /etc/bind/rndc.key\nchmod 0640 /etc/bind/rndc.key"),
        stand_ins: &[],
        why: "the postinst makes the rndc control key (a shared secret) with rndc-confgen -a",
    },
];

/// One entry as the configure run applies it: built-in or from the recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Image paths without the leading `/`.
    pub paths: Vec<String>,
    pub first_boot: Option<String>,
    /// Built-in only ([`Builtin::stand_ins`]).
    pub stand_ins: Vec<String>,
    pub from_recipe: bool,
}

/// The built-in entries followed by the recipe's.
pub fn rules(recipe: &[PerMachine]) -> Vec<Rule> {
    let builtin = BUILTIN.iter().map(|b| Rule {
        name: b.name.to_owned(),
        paths: b.paths.iter().map(|p| (*p).to_owned()).collect(),
        first_boot: b.first_boot.map(str::to_owned),
        stand_ins: b.stand_ins.iter().map(|p| (*p).to_owned()).collect(),
        from_recipe: false,
    });
    let declared = recipe.iter().map(|p| Rule {
        name: p.name.as_str().to_owned(),
        paths: p.paths.iter().map(|p| p.as_rel().to_owned()).collect(),
        first_boot: p.first_boot.clone(),
        stand_ins: Vec::new(),
        from_recipe: true,
    });
    builtin.chain(declared).collect()
}

/// Feeds the rules into an action key: a changed list must configure again.
pub fn hash_rules(h: &mut Hasher, rules: &[Rule]) {
    h.field((rules.len() as u64).to_le_bytes());
    for rule in rules {
        h.field(&rule.name).field([u8::from(rule.from_recipe)]);
        h.field((rule.paths.len() as u64).to_le_bytes());
        for path in &rule.paths {
            h.field(path);
        }
        h.field(rule.first_boot.as_deref().unwrap_or("\0none"));
        h.field((rule.stand_ins.len() as u64).to_le_bytes());
        for path in &rule.stand_ins {
            h.field(path);
        }
    }
}

/// The stand-ins to place before the maintainer scripts run, with the entry each is for:
/// those of every entry named after a package that is `installed`, where `image` has the
/// folder and not the path.
///
/// Some scripts make per-machine state only where it is missing (`[ ! -f "$file" ]`). An empty
/// file there makes them leave it alone, so a build does not make what the candidate would
/// leave out: no private key is ever made in a build, and none of the time it takes. A stand-in
/// is per-machine state like what it stands for, so it is left out by the same entry, and its
/// entry's first-boot action is kept even if the scripts removed it.
pub fn stand_ins<'r>(rules: &'r [Rule], image: &Tree, installed: impl Fn(&str) -> bool) -> Vec<(&'r str, &'r str)> {
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| !r.stand_ins.is_empty() && installed(&r.name)) {
        for path in &rule.stand_ins {
            let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
            let folder = parent.is_empty() || matches!(image.get(parent).map(|n| &n.kind), Some(Kind::Directory));
            if folder && image.get(path).is_none() {
                out.push((rule.name.as_str(), path.as_str()));
            }
        }
    }
    out
}

/// An empty file, root's, mode 0600 (what it stands for is secret), dated `sde`.
pub fn stand_in(sde: u64) -> Node {
    ours(0o600, Vec::new(), sde)
}

/// A file we write into the configure layer: root's, dated `sde` (the candidate's own date,
/// like every clamped entry).
fn ours(mode: u32, bytes: Vec<u8>, sde: u64) -> Node {
    Node {
        kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(Arc::from(bytes)), link_group: None },
        mode,
        uid: 0,
        gid: 0,
        mtime: sde,
        xattrs: BTreeMap::new(),
        implicit: false,
    }
}

/// Whether one name matches one pattern component, `*` matching any run of characters.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `path` is the pattern's path or lies under it (a listed directory takes its contents).
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut names = path.split('/');
    pattern.split('/').all(|p| names.next().is_some_and(|n| name_matches(p, n)))
}

/// What the candidate's manifest says about per-machine state (`per-machine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// Paths the maintainer scripts made, or stand-ins kept them from making, that the
    /// candidate leaves out, each with the entry that claimed it (sorted by path; a directory
    /// stands for everything under it).
    pub removed: Vec<RemovedPath>,
    /// Emptied rather than removed (systemd fills an empty `/etc/machine-id` at first boot).
    pub emptied: Vec<String>,
    /// What each node runs at first boot, in order.
    pub first_boot: Vec<Action>,
    /// What runs the first-boot script.
    pub runner: String,
    /// Whether the two-run guard checked this configure layer.
    pub guard: bool,
    /// Recipe entries that matched nothing the scripts made (a warning at build time).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub unmatched: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RemovedPath {
    pub path: String,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Action {
    pub name: String,
    pub origin: String,
    pub command: String,
}

/// Leaves the per-machine state out of `layer` (what the scripts changed) and adds the
/// first-boot script, and unit when `systemd` is the image's init. `stood_in` names the entries
/// whose stand-ins were placed (each keeps its first-boot action); `emptied` are the paths the
/// caller emptied.
pub fn apply(
    layer: Tree,
    rules: &[Rule],
    stood_in: &BTreeSet<&str>,
    emptied: &[&str],
    systemd: bool,
    guard: bool,
    sde: u64,
) -> (Tree, Record) {
    let (mut kept, removed) = split(layer, rules);
    // A removed directory stands for everything under it (a cluster is ~1000 files).
    let topmost =
        removed.iter().filter(|(path, _)| !path.match_indices('/').any(|(i, _)| removed.contains_key(&path[..i])));
    let mut record = Record {
        removed: topmost.map(|(path, by)| RemovedPath { path: format!("/{path}"), by: by.clone() }).collect(),
        emptied: emptied.iter().filter(|p| kept.get(p).is_some()).map(|p| format!("/{p}")).collect(),
        guard,
        ..Record::default()
    };
    let claimed: BTreeSet<&str> = removed.values().map(String::as_str).chain(stood_in.iter().copied()).collect();
    for rule in rules {
        match &rule.first_boot {
            Some(command) if claimed.contains(rule.name.as_str()) => record.first_boot.push(Action {
                name: rule.name.clone(),
                origin: if rule.from_recipe { "recipe" } else { "built-in" }.to_owned(),
                command: command.clone(),
            }),
            _ => {}
        }
        if rule.from_recipe && !claimed.contains(rule.name.as_str()) {
            record.unmatched.push(rule.name.clone());
        }
    }
    if record.first_boot.is_empty() {
        record.runner = "none needed".to_owned();
        return (kept, record);
    }
    let file = |mode: u32, text: String| ours(mode, text.into_bytes(), sde);
    kept.insert(SCRIPT, file(0o755, script(&record.first_boot))).expect("a plain path in a layer without links there");
    if systemd {
        kept.insert(UNIT, file(0o644, unit())).expect("a plain path");
        let link = Node { kind: Kind::Symlink { target: format!("/{UNIT}") }, ..file(0o777, String::new()) };
        kept.insert(UNIT_WANTS, link).expect("a plain path");
        record.runner = "systemd: candidate-first-boot.service, in sysinit.target".to_owned();
    } else {
        record.runner =
            format!("none: the image's init is not systemd; run /{SCRIPT} once on each node before its services start");
    }
    (kept, record)
}

/// `layer` without the paths the rules claim, and those paths with the rule that claimed each.
fn split(layer: Tree, rules: &[Rule]) -> (Tree, BTreeMap<String, String>) {
    let mut removed: BTreeMap<String, String> = BTreeMap::new();
    for (path, _) in layer.iter() {
        if let Some(rule) = rules.iter().find(|r| r.paths.iter().any(|p| matches(p, path))) {
            removed.insert(path.clone(), rule.name.clone());
        }
    }
    // A symlink the scripts made to a removed path belongs to the same machine (ssl-cert's
    // `/etc/ssl/certs/HASH.0`, named after the certificate it points to).
    let mut links = Vec::new();
    for (path, node) in layer.iter() {
        if let Kind::Symlink { target } = &node.kind {
            let resolved = lexical_target(path, target);
            if let Some(by) = removed.get(&resolved) {
                links.push((path.clone(), by.clone()));
            }
        }
    }
    removed.extend(links);
    let kept = Tree::from_entries(
        layer.iter().filter(|(p, _)| !removed.contains_key(*p)).map(|(p, n)| (p.clone(), n.clone())),
    );
    (kept, removed)
}

/// The image path a symlink at `path` names, `..` and `.` folded, without following others.
fn lexical_target(path: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        path.rsplit_once('/').map_or(Vec::new(), |(dir, _)| dir.split('/').collect())
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts.join("/")
}

/// Paths whose entries differ between two configure layers made from the same image: present
/// in one only, or another kind, content, mode, owner, xattrs, mtime or hard-link partners.
pub fn differences(a: &Tree, b: &Tree) -> std::io::Result<Vec<String>> {
    let (links_a, links_b) = (link_partners(a), link_partners(b));
    let paths: BTreeSet<&String> = a.iter().map(|(p, _)| p).chain(b.iter().map(|(p, _)| p)).collect();
    let mut out = Vec::new();
    for path in paths {
        let equal = match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) => same_entry(x, y)? && links_a.get(path) == links_b.get(path),
            _ => false,
        };
        if !equal {
            out.push(format!("/{path}"));
        }
    }
    Ok(out)
}

fn same_entry(x: &Node, y: &Node) -> std::io::Result<bool> {
    if (x.mode, x.uid, x.gid, x.mtime, &x.xattrs) != (y.mode, y.uid, y.gid, y.mtime, &y.xattrs) {
        return Ok(false);
    }
    Ok(match (&x.kind, &y.kind) {
        (Kind::Directory, Kind::Directory) | (Kind::Whiteout, Kind::Whiteout) => true,
        (Kind::Symlink { target: s }, Kind::Symlink { target: t }) => s == t,
        (Kind::File { size: sa, content: ca, .. }, Kind::File { size: sb, content: cb, .. }) => {
            sa == sb && ca.read_all(*sa)? == cb.read_all(*sb)?
        }
        _ => false,
    })
}

/// For each hard-linked file, the first path of its group: group numbers themselves are arbitrary.
fn link_partners(tree: &Tree) -> BTreeMap<&String, &String> {
    let mut first: BTreeMap<u64, &String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (path, node) in tree.iter() {
        if let Kind::File { link_group: Some(group), .. } = node.kind {
            out.insert(path, *first.entry(group).or_insert(path));
        }
    }
    out
}

/// Why a configure run is refused.
#[derive(Debug, thiserror::Error)]
pub enum PerMachineError {
    #[error(
        "what the maintainer scripts made differs between two runs of the same image at {}: {}",
        if paths.len() == 1 { "one path".to_owned() } else { format!("{} paths", paths.len()) },
        paths.join(", ")
    )]
    Nondeterministic { paths: Vec<String> },
}

impl PerMachineError {
    /// What to do about it, rendered after the error as `hint:`.
    pub fn hint(&self) -> String {
        match self {
            PerMachineError::Nondeterministic { paths } => format!(
                "if they belong to one machine (keys, ids, state made from the clock), declare them so that \
                 each node makes its own at first boot: `[[configure.per-machine]]` with `name = \"…\"`, \
                 `paths = [{}]` and `first-boot = \"the command that makes them\"`; otherwise make the \
                 package's output deterministic",
                paths.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The first-boot script: each action once, in order.
fn script(actions: &[Action]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut out = format!(
        "#!/bin/sh\n\
         # Written by candidate: makes this node's own per-machine state, which the candidate\n\
         # does not ship (see `per-machine` in its manifest). Each action runs once; its stamp\n\
         # in {STAMPS}/ says it did. A failed action is retried at the next boot.\n\
         set -u\n\
         stamps={STAMPS}\n\
         mkdir -p \"$stamps\"\n\
         status=0\n\
         action() {{\n\
         \x20   [ -e \"$stamps/$1.done\" ] && return 0\n\
         \x20   echo \"candidate-first-boot: $1\"\n\
         \x20   if /bin/sh -ec \"$2\"; then\n\
         \x20       : > \"$stamps/$1.done\"\n\
         \x20   else\n\
         \x20       echo \"candidate-first-boot: $1 failed\" >&2\n\
         \x20       status=1\n\
         \x20   fi\n\
         }}\n"
    );
    for action in actions {
        out.push_str(&format!("action {} {}\n", quote(&action.name), quote(&action.command)));
    }
    out.push_str("exit $status\n");
    out
}

/// The unit: after the local filesystems and the random seed, before `sysinit.target` and
/// so before every service with default dependencies (ssh's `sshd -t`, PostgreSQL, nginx).
fn unit() -> String {
    format!(
        "# Written by candidate: makes this node's per-machine state (see /{SCRIPT}).\n\
         [Unit]\n\
         Description=Per-machine state of this node (candidate first boot)\n\
         DefaultDependencies=no\n\
         Wants=local-fs.target\n\
         After=local-fs.target systemd-remount-fs.service systemd-tmpfiles-setup.service systemd-sysusers.service systemd-random-seed.service\n\
         Before=sysinit.target shutdown.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart=/{SCRIPT}\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind) -> Node {
        Node { kind, mode: 0o644, uid: 0, gid: 0, mtime: 5, xattrs: BTreeMap::new(), implicit: false }
    }

    fn bytes(b: &[u8]) -> Kind {
        Kind::File { size: b.len() as u64, content: Content::Bytes(Arc::from(b)), link_group: None }
    }

    #[test]
    fn patterns_match_names_and_what_lies_under_them() {
        assert!(matches("etc/ssh/ssh_host_*_key", "etc/ssh/ssh_host_ed25519_key"));
        assert!(!matches("etc/ssh/ssh_host_*_key", "etc/ssh/ssh_host_ed25519_key.pub"));
        assert!(!matches("etc/ssh/ssh_host_*_key", "etc/ssh/sshd_config"));
        assert!(matches("var/lib/postgresql/*/main", "var/lib/postgresql/15/main/global/pg_control"));
        assert!(!matches("var/lib/postgresql/*/main", "var/lib/postgresql/15"));
        assert!(!matches("var/lib/postgresql/*/main", "var/lib/postgresql/15/mainx"));
        assert!(matches("a/*x*y*", "a/1x2y3"));
        assert!(!matches("a/*x*y*", "a/1y2x3"));
        assert!(!matches("a/b*", "a"));
    }

    #[test]
    fn links_resolve_lexically() {
        assert_eq!(
            lexical_target("etc/ssl/certs/ab.0", "ssl-cert-snakeoil.pem"),
            "etc/ssl/certs/ssl-cert-snakeoil.pem"
        );
        assert_eq!(lexical_target("etc/x/l", "../y/./z"), "etc/y/z");
        assert_eq!(lexical_target("etc/x/l", "/etc/ssl/k"), "etc/ssl/k");
    }

    #[test]
    fn per_machine_paths_and_links_to_them_are_left_out_and_made_at_first_boot() {
        let mut layer = Tree::new(5);
        layer.insert("etc/ssh/ssh_host_rsa_key", node(bytes(b"secret"))).unwrap();
        layer.insert("etc/ssh/sshd_config", node(bytes(b"Port 22"))).unwrap();
        layer.insert("etc/ssl/certs/ssl-cert-snakeoil.pem", node(bytes(b"cert"))).unwrap();
        layer
            .insert("etc/ssl/certs/0a1b2c3d.0", node(Kind::Symlink { target: "ssl-cert-snakeoil.pem".into() }))
            .unwrap();
        layer.insert("etc/ssl/certs/ca.pem", node(bytes(b"ca"))).unwrap();
        layer.insert("etc/ssl/certs/11111111.0", node(Kind::Symlink { target: "ca.pem".into() })).unwrap();
        layer.insert("etc/machine-id", node(bytes(b""))).unwrap();
        layer.insert("srv/token", node(bytes(b"random"))).unwrap();
        layer.insert("var/lib/postgresql/15/main", node(Kind::Directory)).unwrap();
        layer.insert("var/lib/postgresql/15/main/PG_VERSION", node(bytes(b"15"))).unwrap();
        let declared: PerMachine = toml::from_str(
            "name = \"token\"\npaths = [\"/srv/token\"]\nfirst-boot = \"head -c 16 /dev/urandom > /srv/token\"",
        )
        .unwrap();
        let unused: PerMachine = toml::from_str("name = \"unused\"\npaths = [\"/nowhere\"]").unwrap();
        let (kept, record) =
            apply(layer, &rules(&[declared, unused]), &BTreeSet::new(), &["etc/machine-id"], true, true, 5);
        let paths: Vec<&str> = kept.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "",
                "etc",
                "etc/machine-id",
                "etc/ssh",
                "etc/ssh/sshd_config",
                "etc/ssl",
                "etc/ssl/certs",
                "etc/ssl/certs/11111111.0",
                "etc/ssl/certs/ca.pem",
                "etc/systemd",
                "etc/systemd/system",
                "etc/systemd/system/sysinit.target.wants",
                UNIT_WANTS,
                "srv",
                "usr",
                "usr/lib",
                "usr/lib/candidate",
                SCRIPT,
                "usr/lib/systemd",
                "usr/lib/systemd/system",
                UNIT,
                "var",
                "var/lib",
                "var/lib/postgresql",
                "var/lib/postgresql/15",
            ]
        );
        let postgresql = BUILTIN.iter().find(|b| b.name == "postgresql-common").unwrap().first_boot.unwrap();
        let json =
            serde_json::to_string(&record).unwrap().replace(&serde_json::to_string(postgresql).unwrap(), "\"PG\"");
        assert_eq!(
            json,
            r#"{"removed":[{"path":"/etc/ssh/ssh_host_rsa_key","by":"openssh-server"},{"path":"/etc/ssl/certs/0a1b2c3d.0","by":"ssl-cert"},{"path":"/etc/ssl/certs/ssl-cert-snakeoil.pem","by":"ssl-cert"},{"path":"/srv/token","by":"token"},{"path":"/var/lib/postgresql/15/main","by":"postgresql-common"}],"emptied":["/etc/machine-id"],"first-boot":[{"name":"openssh-server","origin":"built-in","command":"ssh-keygen -A"},{"name":"ssl-cert","origin":"built-in","command":"make-ssl-cert generate-default-snakeoil --force-overwrite"},{"name":"postgresql-common","origin":"built-in","command":"PG"},{"name":"token","origin":"recipe","command":"head -c 16 /dev/urandom > /srv/token"}],"runner":"systemd: candidate-first-boot.service, in sysinit.target","guard":true,"unmatched":["unused"]}"#
        );
        let Some(Node { kind: Kind::File { size, content, .. }, mode: 0o755, .. }) = kept.get(SCRIPT) else { panic!() };
        let script = String::from_utf8(content.read_all(*size).unwrap()).unwrap();
        assert!(script.contains("action 'token' 'head -c 16 /dev/urandom > /srv/token'\n"), "{script}");
        assert!(script.find("action 'openssh-server'").unwrap() < script.find("action 'ssl-cert'").unwrap());
    }

    #[test]
    fn first_boot_script_runs_each_action_once_and_retries_failures() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = dir.path().join("stamps");
        let out = dir.path().join("count");
        let actions = [
            Action { name: "a".into(), origin: "recipe".into(), command: format!("echo x >> '{}'", out.display()) },
            Action { name: "b".into(), origin: "recipe".into(), command: "false".into() },
        ];
        let text = script(&actions).replace(STAMPS, stamps.to_str().unwrap());
        let run = || std::process::Command::new("/bin/sh").arg("-c").arg(&text).output().unwrap();
        for _ in 0..2 {
            let o = run();
            assert_eq!(o.status.code(), Some(1), "{o:?}");
        }
        assert_eq!(fs_err::read_to_string(&out).unwrap(), "x\n");
        assert!(stamps.join("a.done").exists() && !stamps.join("b.done").exists());
    }

    #[test]
    fn stand_ins_go_where_their_package_would_make_the_state_and_keep_its_first_boot_action() {
        let mut image = Tree::new(5);
        image.insert("etc/ssh", node(Kind::Directory)).unwrap();
        image.insert("etc/ssh/ssh_host_ecdsa_key", node(bytes(b"the image's own"))).unwrap();
        let rules = rules(&[]);
        // Only for an installed package, only in a folder the image has, never over a file.
        assert!(stand_ins(&rules, &image, |_| false).is_empty());
        assert_eq!(
            stand_ins(&rules, &image, |name| name == "openssh-server"),
            [("openssh-server", "etc/ssh/ssh_host_rsa_key"), ("openssh-server", "etc/ssh/ssh_host_ed25519_key")]
        );
        assert!(stand_ins(&rules, &Tree::new(5), |_| true).is_empty());
        // The built-in entries that have none say why (the scripts would not skip, or the image
        // would change): every stand-in is a path its entry leaves out.
        for rule in &rules {
            for path in &rule.stand_ins {
                assert!(rule.paths.iter().any(|p| matches(p, path)), "{path} is not left out by {}", rule.name);
            }
        }
        // Even where the scripts removed every stand-in, the entry's first-boot action stays.
        let stood_in = BTreeSet::from(["openssh-server"]);
        let (kept, record) = apply(Tree::new(5), &rules, &stood_in, &[], true, true, 5);
        assert_eq!(record.first_boot.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["openssh-server"]);
        assert!(kept.get(SCRIPT).is_some());
        let mut layer = Tree::new(5);
        layer.insert("etc/ssh/ssh_host_rsa_key", stand_in(5)).unwrap();
        let (kept, record) = apply(layer, &rules, &stood_in, &[], true, true, 5);
        assert!(kept.get("etc/ssh/ssh_host_rsa_key").is_none());
        assert_eq!(
            record.removed,
            [RemovedPath { path: "/etc/ssh/ssh_host_rsa_key".into(), by: "openssh-server".into() }]
        );
    }

    #[test]
    fn an_image_without_systemd_gets_the_script_and_says_nothing_runs_it() {
        let mut layer = Tree::new(5);
        layer.insert("etc/ssh/ssh_host_ed25519_key", node(bytes(b"k"))).unwrap();
        let (kept, record) = apply(layer, &rules(&[]), &BTreeSet::new(), &[], false, false, 5);
        assert!(kept.get(SCRIPT).is_some() && kept.get(UNIT).is_none() && kept.get(UNIT_WANTS).is_none());
        assert!(record.runner.starts_with("none: the image's init is not systemd"), "{}", record.runner);
        // Nothing per-machine: nothing added.
        let mut plain = Tree::new(5);
        plain.insert("etc/hostname", node(bytes(b"x"))).unwrap();
        let (kept, record) = apply(plain, &rules(&[]), &BTreeSet::new(), &[], true, true, 5);
        assert_eq!(kept.len(), 3);
        assert!(record.first_boot.is_empty() && record.removed.is_empty());
    }

    #[test]
    fn differences_name_every_differing_path_but_not_link_group_numbers() {
        let mut a = Tree::new(5);
        let mut b = Tree::new(5);
        for t in [&mut a, &mut b] {
            t.insert("etc/same", node(bytes(b"x"))).unwrap();
        }
        a.insert("etc/random", node(bytes(b"1"))).unwrap();
        b.insert("etc/random", node(bytes(b"2"))).unwrap();
        a.insert("etc/only-a", node(bytes(b""))).unwrap();
        a.insert("etc/mode", node(bytes(b"m"))).unwrap();
        b.insert("etc/mode", Node { mode: 0o600, ..node(bytes(b"m")) }).unwrap();
        let linked = |g| Kind::File { size: 1, content: Content::Bytes(Arc::from(&b"l"[..])), link_group: Some(g) };
        for (t, g) in [(&mut a, 3), (&mut b, 9)] {
            t.insert("etc/l1", node(linked(g))).unwrap();
            t.insert("etc/l2", node(linked(g))).unwrap();
        }
        assert_eq!(differences(&a, &b).unwrap(), ["/etc/mode", "/etc/only-a", "/etc/random"]);
        let e = PerMachineError::Nondeterministic { paths: vec!["/etc/random".into()] };
        assert_eq!(
            e.to_string(),
            "what the maintainer scripts made differs between two runs of the same image at one path: /etc/random"
        );
        assert!(e.hint().contains("paths = [\"/etc/random\"]"), "{}", e.hint());
    }
}
