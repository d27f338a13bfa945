//! Systems: one candidate deployed as many nodes by role (`systems/NAME.toml`).
//!
//! A system file names its nodes and the role of each; a role says when its nodes may start
//! (`after`: every node of those roles is ready), how to tell that a node is ready (`ready`,
//! a command run inside it until it exits 0, within `ready-timeout` seconds), what is laid
//! over the candidate for it (`overlay`, with a recipe layer's `files`, `directories`,
//! `symlinks` and `tarballs`) and how it is qualified (`tests` on each of its nodes,
//! `system-tests` run from each of its nodes against the others).
//!
//! Parsing is strict like the recipe's: an unknown key is an error naming the key and its
//! line; a duplicate node, a node of an unknown role, an `after` naming an unknown role and a
//! cycle of `after` are errors naming the culprit. Everything derived from the file —
//! the start order, the network, the generated files — is a function of its bytes alone, so
//! the same file always gives the same deployment plan ([`plan`]).
//!
//! This module is the document; [`plan`] turns it and a candidate into content-addressed
//! layers and a plan with a digest, and [`lxc`] deploys the plan on LXC.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::recipe::{DirectorySpec, FileSpec, ImagePath, Name, SymlinkSpec};

pub mod lxc;
pub mod lxd;
pub mod plan;
pub mod qualify;

/// Where the generated description of the whole system is written in every node.
pub const SYSTEM_FILE: &str = "etc/candidate/system.json";
/// Where the generated `NAME=…`/`ROLE=…`/`ADDRESS=…` lines of the node itself, and
/// `NODES="name:role:address …"`, are written for the image's own shell scripts
/// (`. /etc/candidate/node`).
pub const NODE_FILE: &str = "etc/candidate/node";
/// How long a probe may take to succeed when the role gives no `ready-timeout`.
pub const DEFAULT_READY_TIMEOUT: u64 = 60;

/// Roles whose `after` lists lead back to the first: `a -> b -> a`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`after` has a cycle: {}", .0.join(" -> "))]
pub struct Cycle(pub Vec<String>);

/// Why a system file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("failed to read system file `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid system file `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid system file `{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// A parsed system file, with the bytes it was parsed from (their sha256 is in the plan).
#[derive(Debug, Clone)]
pub struct System {
    pub path: PathBuf,
    /// The folder relative paths in the file (overlay `from`, tests) are resolved against.
    pub dir: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: Digest,
    pub name: Name,
    pub description: String,
    pub roles: BTreeMap<Name, Role>,
    /// In file order: addresses are given in this order.
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    system: Header,
    #[serde(default, rename = "role")]
    roles: BTreeMap<Name, Role>,
    #[serde(default, rename = "node")]
    nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Header {
    name: Name,
    #[serde(default)]
    description: String,
}

/// A role (`[role.NAME]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Role {
    /// Roles every node of which must be ready before a node of this role starts.
    #[serde(default)]
    pub after: Vec<Name>,
    /// A command run with `/bin/sh -c` inside the node until it exits 0.
    pub ready: Option<String>,
    /// Seconds the probe may take to succeed, from the node's start.
    pub ready_timeout: Option<u64>,
    #[serde(default)]
    pub overlay: Overlay,
    /// Scripts run on every node of this role, relative to the system file.
    #[serde(default)]
    pub tests: Vec<PathBuf>,
    /// Scripts run from every node of this role against the others.
    #[serde(default)]
    pub system_tests: Vec<PathBuf>,
}

impl Role {
    pub fn ready_timeout(&self) -> u64 {
        self.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT)
    }
}

/// What is laid over the candidate for a role: a recipe layer's file kinds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overlay {
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Local tarballs only, each with its `sha256`: a system file has no lockfile.
    #[serde(default)]
    pub tarballs: Vec<crate::recipe::TarballSpec>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.directories.is_empty() && self.symlinks.is_empty() && self.tarballs.is_empty()
    }
}

/// A node (`[[node]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSpec {
    /// Its hostname, and its name in `/etc/hosts` of every node.
    pub name: Name,
    pub role: Name,
    /// Where a cluster engine should place it (LXD/Incus `target`); unused on one machine.
    pub target: Option<String>,
}

impl System {
    pub fn load(path: &Path) -> Result<Self, SystemError> {
        let bytes = fs_err::read(path).map_err(|source| SystemError::Read { path: path.to_owned(), source })?;
        Self::parse(path, bytes)
    }

    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, SystemError> {
        let parse_error = |message: String| SystemError::Parse { path: path.to_owned(), message };
        let text = std::str::from_utf8(&bytes).map_err(|e| parse_error(format!("not UTF-8: {e}")))?;
        // The TOML error says "at line L, column C" and quotes the line: the culprit, placed.
        let file: SystemFile = toml::from_str(text).map_err(|e| parse_error(e.to_string().trim_end().to_owned()))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let system = System {
            path: path.to_owned(),
            dir,
            sha256: Digest::of(&bytes),
            bytes,
            name: file.system.name,
            description: file.system.description,
            roles: file.roles,
            nodes: file.nodes,
        };
        system.validate()?;
        Ok(system)
    }

    fn validate(&self) -> Result<(), SystemError> {
        let invalid = |message: String| SystemError::Invalid { path: self.path.clone(), message };
        if self.nodes.is_empty() {
            return Err(invalid("it has no `[[node]]`: a system needs at least one".into()));
        }
        // Addresses are .10 to .249 of one /24.
        if self.nodes.len() > 240 {
            return Err(invalid(format!("it has {} nodes; one network holds at most 240", self.nodes.len())));
        }
        let mut names = BTreeSet::new();
        for node in &self.nodes {
            if !hostname_ok(node.name.as_str()) {
                return Err(invalid(format!(
                    "node name `{}` is not a hostname: use lower-case letters, digits and `-`, at most 63",
                    node.name
                )));
            }
            if !names.insert(node.name.as_str()) {
                return Err(invalid(format!("node name `{}` is used twice", node.name)));
            }
            if !self.roles.contains_key(node.role.as_str()) {
                return Err(invalid(format!("node `{}` has the unknown role `{}`", node.name, node.role)));
            }
        }
        for (name, role) in &self.roles {
            for after in &role.after {
                if !self.roles.contains_key(after.as_str()) {
                    return Err(invalid(format!("role `{name}`: `after` names the unknown role `{after}`")));
                }
            }
            if role.ready_timeout == Some(0) {
                return Err(invalid(format!("role `{name}`: `ready-timeout` must be at least 1 second")));
            }
            if role.ready_timeout.is_some() && role.ready.is_none() {
                return Err(invalid(format!("role `{name}` has `ready-timeout` but no `ready` probe")));
            }
            for tarball in &role.overlay.tarballs {
                match crate::recipe::Origin::parse(&tarball.url, &self.dir) {
                    Ok(crate::recipe::Origin::Local(_)) => {}
                    Ok(crate::recipe::Origin::Remote(_)) => {
                        return Err(invalid(format!(
                            "role `{name}`: tarball `{}` is remote; an overlay takes local tarballs only",
                            tarball.url
                        )))
                    }
                    Err(e) => return Err(invalid(format!("role `{name}`: {e}"))),
                }
                if tarball.sha256.is_none() {
                    return Err(invalid(format!("role `{name}`: tarball `{}` needs its `sha256`", tarball.url)));
                }
            }
            for test in role.tests.iter().chain(&role.system_tests) {
                let file_name = test.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if file_name.is_empty() || file_name.starts_with('.') {
                    return Err(invalid(format!("role `{name}`: test `{}` needs a file name", test.display())));
                }
            }
        }
        self.tiers().map(|_| ()).map_err(|cycle| invalid(cycle.to_string()))
    }

    /// The roles in start order, tier by tier: a role's tier is one more than the highest
    /// tier of the roles it is `after` (0 with none); roles of a tier sorted by name. An
    /// `after` cycle is an error naming it (`a -> b -> a`).
    pub fn role_tiers(&self) -> Result<Vec<Vec<Name>>, Cycle> {
        let mut tier_of: BTreeMap<&str, usize> = BTreeMap::new();
        // Depth-first, with the path on a stack so that a cycle can be named.
        fn visit<'a>(
            roles: &'a BTreeMap<Name, Role>,
            name: &'a str,
            path: &mut Vec<&'a str>,
            tier_of: &mut BTreeMap<&'a str, usize>,
        ) -> Result<usize, Cycle> {
            if let Some(&t) = tier_of.get(name) {
                return Ok(t);
            }
            if let Some(at) = path.iter().position(|p| *p == name) {
                let mut cycle: Vec<&str> = path[at..].to_vec();
                cycle.push(name);
                return Err(Cycle(cycle.into_iter().map(str::to_owned).collect()));
            }
            path.push(name);
            let mut tier = 0;
            let role = &roles[name];
            for after in &role.after {
                tier = tier.max(visit(roles, after.as_str(), path, tier_of)? + 1);
            }
            path.pop();
            tier_of.insert(name, tier);
            Ok(tier)
        }
        for name in self.roles.keys() {
            visit(&self.roles, name.as_str(), &mut Vec::new(), &mut tier_of)?;
        }
        let mut tiers: Vec<Vec<Name>> = Vec::new();
        for (name, &tier) in &tier_of {
            if tiers.len() <= tier {
                tiers.resize(tier + 1, Vec::new());
            }
            tiers[tier].push(name.parse().expect("a role name"));
        }
        Ok(tiers)
    }

    /// The nodes in start order, tier by tier (file order within a tier); tiers without a
    /// node (a role nobody has) are dropped.
    pub fn tiers(&self) -> Result<Vec<Vec<&NodeSpec>>, Cycle> {
        let tiers = self.role_tiers()?;
        Ok(tiers
            .iter()
            .map(|roles| self.nodes.iter().filter(|n| roles.contains(&n.role)).collect::<Vec<_>>())
            .filter(|t| !t.is_empty())
            .collect())
    }

    /// The node's address: `10.A.B.(10 + its index in the file)`, where `A.B` are the first
    /// two bytes of the sha256 of the system name. A function of the file alone, so a plan
    /// names it; two systems rarely share a /24, and when they do their bridges still keep
    /// them apart (no address on the host routes into either).
    pub fn address(&self, node: &NodeSpec) -> Ipv4Addr {
        let index = self.nodes.iter().position(|n| n.name == node.name).expect("a node of this system");
        let [a, b] = self.subnet_bytes();
        Ipv4Addr::new(10, a, b, 10 + index as u8)
    }

    fn subnet_bytes(&self) -> [u8; 2] {
        let h = Digest::of(self.name.as_str().as_bytes());
        [h.as_bytes()[0], h.as_bytes()[1]]
    }

    /// The network's prefix, `10.A.B.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b] = self.subnet_bytes();
        format!("10.{a}.{b}.0/24")
    }

    /// The description of the whole system every node gets at [`SYSTEM_FILE`].
    pub fn description_for(&self, node: &NodeSpec) -> SystemDescription {
        SystemDescription {
            version: 1,
            system: self.name.to_string(),
            system_sha256: self.sha256,
            subnet: self.subnet(),
            this: NodeEntry::new(self, node),
            nodes: self.nodes.iter().map(|n| NodeEntry::new(self, n)).collect(),
        }
    }

    /// `/etc/hosts` of every node: loopback, then every node in file order.
    pub fn hosts(&self) -> String {
        let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for n in &self.nodes {
            let _ = writeln!(out, "{}\t{}", self.address(n), n.name);
        }
        out
    }

    /// The files generated for `node`, by path in the image: its hostname, the hosts file,
    /// the system description and the node's own shell-readable lines.
    pub fn generated_files(&self, node: &NodeSpec) -> Vec<(ImagePath, Vec<u8>)> {
        let mut description = serde_json::to_vec_pretty(&self.description_for(node)).expect("serialises");
        description.push(b'\n');
        let nodes: Vec<String> =
            self.nodes.iter().map(|n| format!("{}:{}:{}", n.name, n.role, self.address(n))).collect();
        let env = format!(
            "# Generated by candidate from the system file; read with `. /etc/candidate/node`.\n\
             NAME={}\nROLE={}\nADDRESS={}\nSYSTEM={}\nNODES=\"{}\"\n",
            node.name,
            node.role,
            self.address(node),
            self.name,
            nodes.join(" ")
        );
        let path = |p: &str| ImagePath::from_rel(p).expect("a plain path");
        vec![
            (path("etc/hostname"), format!("{}\n", node.name).into_bytes()),
            (path("etc/hosts"), self.hosts().into_bytes()),
            (path(SYSTEM_FILE), description),
            (path(NODE_FILE), env.into_bytes()),
        ]
    }

    /// A path from the file, resolved against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.dir.join(path)
    }
}

/// Whether `s` is a valid hostname label (RFC 1123, lower case).
fn hostname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `/etc/candidate/system.json`: the whole system, and which node this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDescription {
    pub version: u32,
    pub system: String,
    /// The sha256 of the system file the deployment was made from.
    pub system_sha256: Digest,
    pub subnet: String,
    /// This node.
    pub this: NodeEntry,
    /// Every node, in file order.
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    pub role: String,
    pub address: Ipv4Addr,
}

impl NodeEntry {
    fn new(system: &System, node: &NodeSpec) -> Self {
        NodeEntry { name: node.name.to_string(), role: node.role.to_string(), address: system.address(node) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[system]
name = "ground"

[role.prime]
ready = "true"
ready-timeout = 5
overlay = { directories = [{ path = "/srv/prime" }] }

[role.backup]

[role.client]
after = ["prime"]

[[node]]
name = "prime1"
role = "prime"

[[node]]
name = "backup1"
role = "backup"

[[node]]
name = "client1"
role = "client"
"#;

    fn parse(text: &str) -> Result<System, SystemError> {
        System::parse(Path::new("systems/ground.toml"), text.as_bytes().to_vec())
    }

    #[test]
    fn tiers_follow_after() {
        let system = parse(EXAMPLE).unwrap();
        let tiers: Vec<Vec<&str>> =
            system.tiers().unwrap().iter().map(|t| t.iter().map(|n| n.name.as_str()).collect()).collect();
        assert_eq!(tiers, [vec!["prime1", "backup1"], vec!["client1"]]);
        assert_eq!(system.roles["prime"].ready_timeout(), 5);
        assert_eq!(system.roles["client"].ready_timeout(), DEFAULT_READY_TIMEOUT);
    }

    #[test]
    fn addresses_and_generated_files_come_from_the_file() {
        let system = parse(EXAMPLE).unwrap();
        let [prime, backup, client] = [&system.nodes[0], &system.nodes[1], &system.nodes[2]];
        let base = system.address(prime).octets();
        assert_eq!(base[0], 10);
        assert_eq!(base[3], 10);
        assert_eq!(system.address(client).octets()[3], 12);
        assert_eq!(system.subnet(), format!("10.{}.{}.0/24", base[1], base[2]));
        let files = system.generated_files(backup);
        let text = |p: &str| String::from_utf8(files.iter().find(|(f, _)| f.as_rel() == p).unwrap().1.clone()).unwrap();
        assert_eq!(text("etc/hostname"), "backup1\n");
        assert!(text("etc/hosts").contains(&format!("{}\tprime1\n", system.address(prime))), "{}", text("etc/hosts"));
        let description: SystemDescription = serde_json::from_str(&text(SYSTEM_FILE)).unwrap();
        assert_eq!(description.this.name, "backup1");
        assert_eq!(description.this.role, "backup");
        assert_eq!(description.nodes.len(), 3);
        assert!(text(NODE_FILE).contains("ROLE=backup\n"));
        let nodes = format!("NODES=\"prime1:prime:{} backup1", system.address(prime));
        assert!(text(NODE_FILE).contains(&nodes), "{}", text(NODE_FILE));
        // The same bytes give the same everything; another name another network.
        assert_eq!(parse(EXAMPLE).unwrap().hosts(), system.hosts());
        let other = parse(&EXAMPLE.replace("name = \"ground\"", "name = \"space\"")).unwrap();
        assert_ne!(other.subnet(), system.subnet());
    }

    #[test]
    fn refusals_name_their_culprit() {
        for (from, to, culprit) in [
            ("after = [\"prime\"]", "after = [\"client\"]", "`after` has a cycle: client -> client"),
            ("[role.prime]", "[role.prime]\nafter = [\"client\"]", "client -> prime -> client"),
            ("role = \"backup\"", "role = \"standby\"", "node `backup1` has the unknown role `standby`"),
            ("name = \"client1\"", "name = \"prime1\"", "node name `prime1` is used twice"),
            ("after = [\"prime\"]", "after = [\"primary\"]", "unknown role `primary`"),
            ("ready-timeout = 5", "ready-timeout = 5\nreadiness = 3", "readiness"),
            ("name = \"client1\"", "name = \"Client_1\"", "Client_1"),
        ] {
            let text = EXAMPLE.replace(from, to);
            assert_ne!(text, EXAMPLE, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(culprit), "{culprit}: {err}");
            assert!(err.contains("systems/ground.toml"), "{err}");
        }
        // An unknown key is named with its line.
        let err = parse(&EXAMPLE.replace("[role.backup]", "[role.backup]\ncolour = 1")).unwrap_err().to_string();
        assert!(err.contains("colour") && err.contains("line 11"), "{err}");
        let err = parse(&EXAMPLE.replace("[role.prime]", "[role.prime]\nafter = [\"prime\"]")).unwrap_err();
        assert!(err.to_string().contains("prime -> prime"), "{err}");
    }
}
