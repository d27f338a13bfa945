//! LXC's image (`lxc-create -t local`) and the metadata of LXD/Incus split images.
//!
//! Every archive here is built like the others: a tree in memory, serialised by the
//! deterministic tar writer, xz-compressed with the pinned settings.
//!
//! * `lxc.rootfs.tar.xz` (LXC) is the root filesystem with LXC's name templates written in.
//!   LXC's `local` template names a container only by text substitution: it replaces
//!   `LXC_NAME` in the rootfs files its `templates` list names, and it has no other way to
//!   put the name into a file. So, as LXC's own images do (distrobuilder's `hostname` and
//!   `hosts` generators for LXC targets), `/etc/hostname` becomes `LXC_NAME` and `/etc/hosts`
//!   maps `127.0.1.1` to `LXC_NAME` — in this archive only: the shared `rootfs.tar.xz` (the
//!   `rootfs.tar.xz` and `incus` formats; Incus templates through its metadata) keeps the
//!   image's own files, so a container made from it would be called what the image says.
//! * `meta.tar.xz` (LXC) holds `config` (the distribution's common configuration, which the
//!   `local` template appends to the container's), `config-user` (its user-namespace
//!   variant, for unprivileged containers), `excludes-user` (member-name patterns an
//!   unprivileged container does not extract: device nodes it cannot create), `templates`
//!   (files in which `LXC_NAME` becomes the container's name), `create-message`, and
//!   `expiry` when the recipe sets one.
//! * `incus.meta.tar.xz` (LXD/Incus) holds `metadata.yaml` (architecture, `creation_date` =
//!   `SOURCE_DATE_EPOCH`, never 0, which LXD refuses; the image properties; templates that
//!   write the hostname and hosts on create and copy) and `templates/*.tpl` — and never LXC's
//!   `config`, which breaks an LXD instance.

use std::sync::Arc;

use crate::compress::Codec;
use crate::digest::{Digest, Hasher};
use crate::layer;
use crate::recipe::{ImagePath, Recipe};
use crate::rootfs::{self, OutputFile, RootfsError};
use crate::store::{Store, StoreError};
use crate::tar::writer::write_tree;
use crate::tree::{Content, Kind, Node, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum LxcError {
    #[error("`source-date-epoch` is 0: LXD and Incus refuse an image created at 0")]
    ZeroDate,
    #[error("failed to write the container metadata")]
    Write(#[from] std::io::Error),
    #[error("failed to lay out the container metadata")]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("`{path}` is listed in `[lxc] templates` but is a {kind} in the image: LXC rewrites a file in place")]
    TemplateNotAFile { path: ImagePath, kind: &'static str },
    #[error("cannot read `{path}` of the image to write LXC's name template into it")]
    TemplateRead {
        path: ImagePath,
        #[source]
        source: std::io::Error,
    },
}

/// The word LXC's `local` template replaces by the container's name.
const NAME: &str = "LXC_NAME";
/// The LXC rootfs archive of the `lxc` format.
pub const ROOTFS: &str = "lxc.rootfs.tar.xz";
/// Bumped when what [`template`] writes changes, so cached LXC rootfs archives are not reused.
const TEMPLATING_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Lxc,
    Incus,
}

/// Distributions whose configuration LXC ships as `<os>.common.conf`.
const LXC_CONFIGS: &[&str] = &[
    "alpine",
    "archlinux",
    "centos",
    "debian",
    "fedora",
    "gentoo",
    "opensuse",
    "oracle",
    "plamo",
    "slackware",
    "ubuntu",
];

/// The kernel's name for a Debian architecture, as LXC and LXD write it.
fn kernel_architecture(debian: &str) -> &str {
    match debian {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "armhf" => "armv7l",
        "armel" => "armv5tel",
        "i386" => "i686",
        "ppc64el" => "ppc64le",
        "mips64el" => "mips64",
        other => other,
    }
}

/// Writes the files of `flavour` beside the shared rootfs archives: for LXC its own rootfs
/// (see the module docs) and `meta.tar.xz`, for LXD/Incus `incus.meta.tar.xz`.
pub fn write(
    store: &Store,
    recipe: &Recipe,
    flavour: Flavour,
    merged: &rootfs::MergedLayers<'_>,
) -> Result<Vec<OutputFile>, LxcError> {
    let mut out = vec![metadata(store, recipe, flavour)?];
    if flavour == Flavour::Lxc {
        out.push(lxc_rootfs(store, recipe, merged)?);
    }
    Ok(out)
}

/// The merged layers with LXC's name templates written in, xz-compressed; from the action
/// cache when these layers were templated the same way before.
fn lxc_rootfs(store: &Store, recipe: &Recipe, merged: &rootfs::MergedLayers<'_>) -> Result<OutputFile, LxcError> {
    let layers = merged.layers();
    let sde = recipe.image.source_date_epoch.seconds();
    let templates = &recipe.lxc.templates;
    let mut h = Hasher::new();
    h.field("candidate-lxc-rootfs").field(layer::FORMAT_VERSION.to_le_bytes());
    h.field(TEMPLATING_VERSION.to_le_bytes()).field(sde.to_le_bytes());
    for (_, built) in layers {
        h.field(built.info.merge_id().as_bytes());
    }
    for path in templates {
        h.field(path.as_rel());
    }
    h.field(Codec::Xz.canonical());
    let key: Digest = h.finish();
    if let Some(done) = store.action(&key).and_then(|bytes| serde_json::from_slice::<OutputFile>(&bytes).ok()) {
        if store.blob_size(&done.sha256) == Some(done.size) {
            return Ok(done);
        }
    }
    let mut tree = merged.tree()?.clone();
    template(&mut tree, templates, sde)?;
    let mut encoder = Codec::Xz.to_store(store)?;
    write_tree(&tree, &mut encoder)?;
    let (sha256, size) = encoder.commit()?;
    let done = OutputFile { name: ROOTFS.to_owned(), sha256, size, codec: Codec::Xz };
    store.put_action(&key, &serde_json::to_vec(&done).expect("an output file serialises"))?;
    Ok(done)
}

/// Writes `LXC_NAME` into the image's `/etc/hostname` and `/etc/hosts` when `templates`
/// lists them (LXC substitutes only in listed files). Other listed files are the recipe's
/// own templates and stay as they are. A listed file the image lacks is created, root's,
/// `0644`, dated `sde` (what an installer writes), if its folder is there; without the
/// folder there is nothing to name, and LXC skips a listed file that does not exist.
fn template(tree: &mut Tree, templates: &[ImagePath], sde: u64) -> Result<(), LxcError> {
    for path in templates {
        let rel = path.as_rel();
        let rewrite: fn(Option<&str>) -> String = match rel {
            "etc/hostname" => |_| format!("{NAME}\n"),
            "etc/hosts" => hosts,
            _ => continue,
        };
        let existing = match tree.get(rel) {
            Some(Node { kind: Kind::File { size, content, .. }, .. }) => {
                let bytes =
                    content.read_all(*size).map_err(|source| LxcError::TemplateRead { path: path.clone(), source })?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            Some(other) => return Err(LxcError::TemplateNotAFile { path: path.clone(), kind: other.kind.describe() }),
            None => None,
        };
        let parent = rel.rsplit_once('/').map_or("", |(parent, _)| parent);
        if existing.is_none() && !tree.get(parent).is_some_and(Node::is_dir) {
            continue;
        }
        let bytes: Arc<[u8]> = rewrite(existing.as_deref()).into_bytes().into();
        let kind = Kind::File { size: bytes.len() as u64, content: Content::Bytes(bytes), link_group: None };
        match tree.get_mut(rel) {
            // Owner, mode, date and xattrs stay the image's; only the text changes. A hard
            // link would now differ from its other names, so it becomes a file of its own.
            Some(node) => node.kind = kind,
            None => {
                let node =
                    Node { kind, mode: 0o644, uid: 0, gid: 0, mtime: sde, xattrs: Default::default(), implicit: false };
                tree.insert(rel, node)?;
            }
        }
    }
    Ok(())
}

/// `/etc/hosts` mapping `127.0.1.1` to `LXC_NAME`, the address Debian's installer gives the
/// host's own name: the image's first `127.0.1.1` line is replaced, or the mapping is added
/// after its `127.0.0.1` lines. A file that already says `LXC_NAME` was written for LXC and
/// is kept; a missing one gets the same lines the Incus template writes.
fn hosts(existing: Option<&str>) -> String {
    let mapping = format!("127.0.1.1 {NAME}\n");
    let Some(text) = existing else {
        return format!("127.0.0.1 localhost\n{mapping}::1 localhost ip6-localhost ip6-loopback\n");
    };
    if text.contains(NAME) {
        return text.to_owned();
    }
    let address = |line: &str| line.split_whitespace().next().map(str::to_owned);
    let mut lines: Vec<String> =
        text.split_inclusive('\n').map(|l| if l.ends_with('\n') { l.to_owned() } else { format!("{l}\n") }).collect();
    if let Some(i) = lines.iter().position(|l| address(l).as_deref() == Some("127.0.1.1")) {
        lines[i] = mapping;
    } else {
        let after = lines.iter().rposition(|l| address(l).as_deref() == Some("127.0.0.1")).map_or(0, |i| i + 1);
        lines.insert(after, mapping);
    }
    lines.concat()
}

/// Writes the metadata archive of `flavour` into the store.
///
/// Long by design: the archive's members (LXC's `config`, `templates`, `create-message`, or
/// Incus's `metadata.yaml` and its templates) are written in the order they appear in it, each
/// with the value it must hold, so the two flavours can be read side by side.
fn metadata(store: &Store, recipe: &Recipe, flavour: Flavour) -> Result<OutputFile, LxcError> {
    let image = &recipe.image;
    let sde = image.source_date_epoch.seconds();
    let arch = image.architecture.to_string();
    let mut files: Vec<(String, String)> = Vec::new();
    let templates = &recipe.lxc.templates;
    match flavour {
        Flavour::Lxc => {
            let base = if LXC_CONFIGS.contains(&image.os.as_str()) { image.os.as_str() } else { "common" };
            let (common, userns) = if base == "common" {
                ("common.conf".to_owned(), "userns.conf".to_owned())
            } else {
                (format!("{base}.common.conf"), format!("{base}.userns.conf"))
            };
            let arch_line = format!("lxc.arch = {}\n", kernel_architecture(&arch));
            files.push(("config".into(), format!("lxc.include = LXC_TEMPLATE_CONFIG/{common}\n{arch_line}")));
            files.push((
                "config-user".into(),
                format!("lxc.include = LXC_TEMPLATE_CONFIG/{common}\nlxc.include = LXC_TEMPLATE_CONFIG/{userns}\n{arch_line}"),
            ));
            files.push(("excludes-user".into(), "./dev/*\n".into()));
            let list: String = templates.iter().map(|t| format!("{t}\n")).collect();
            files.push(("templates".into(), list));
            files.push((
                "create-message".into(),
                format!(
                    "You just created a {} {} container from the candidate {} {} ({}).\n",
                    image.os, image.release, image.name, image.version, image.architecture
                ),
            ));
            if let Some(expiry) = recipe.lxc.expiry {
                files.push(("expiry".into(), format!("{expiry}\n")));
            }
        }
        Flavour::Incus => {
            if sde == 0 {
                return Err(LxcError::ZeroDate);
            }
            let mut yaml = format!("architecture: {}\ncreation_date: {sde}\nproperties:\n", kernel_architecture(&arch));
            for (key, value) in [
                ("architecture", arch.as_str()),
                ("description", image.description.as_str()),
                ("name", &format!("{}-{}", image.name, image.version)),
                ("os", image.os.as_str()),
                ("release", image.release.as_str()),
                ("serial", &image.version.to_string()),
                ("variant", recipe.lxc.variant.as_str()),
            ] {
                yaml.push_str(&format!("  {key}: {}\n", quote(value)));
            }
            yaml.push_str("templates:\n");
            for path in templates {
                let name = path.as_rel().rsplit('/').next().unwrap_or_default();
                let template = format!("{name}.tpl");
                yaml.push_str(&format!(
                    "  {}:\n    when:\n    - create\n    - copy\n    template: {template}\n",
                    quote(&path.to_string())
                ));
                let body = match name {
                    "hosts" => {
                        "127.0.0.1 localhost\n127.0.1.1 {{ instance.name }}\n::1 localhost ip6-localhost ip6-loopback\n"
                            .to_owned()
                    }
                    _ => "{{ instance.name }}\n".to_owned(),
                };
                files.push((format!("templates/{template}"), body));
            }
            files.push(("metadata.yaml".into(), yaml));
        }
    }

    let mut tree = Tree::new(sde);
    for (path, body) in files {
        let bytes: Arc<[u8]> = body.into_bytes().into();
        let kind = Kind::File { size: bytes.len() as u64, content: Content::Bytes(bytes), link_group: None };
        let node = Node { kind, mode: 0o644, uid: 0, gid: 0, mtime: sde, xattrs: Default::default(), implicit: false };
        tree.insert(&path, node)?;
    }
    let mut encoder = Codec::Xz.to_store(store)?;
    write_tree(&tree, &mut encoder)?;
    let (sha256, size) = encoder.commit()?;
    let name = match flavour {
        Flavour::Lxc => "meta.tar.xz",
        Flavour::Incus => "incus.meta.tar.xz",
    };
    Ok(OutputFile { name: name.to_owned(), sha256, size, codec: Codec::Xz })
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn quote(value: &str) -> String {
    serde_json::to_string(value).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32, uid: u32) -> Node {
        let bytes: Arc<[u8]> = text.as_bytes().into();
        let kind = Kind::File { size: bytes.len() as u64, content: Content::Bytes(bytes), link_group: Some(3) };
        Node { kind, mode, uid, gid: uid, mtime: 5, xattrs: Default::default(), implicit: false }
    }

    fn text(tree: &Tree, path: &str) -> String {
        match &tree.get(path).unwrap().kind {
            Kind::File { size, content, .. } => String::from_utf8(content.read_all(*size).unwrap()).unwrap(),
            other => panic!("{path} is a {}", other.describe()),
        }
    }

    fn paths(list: &[&str]) -> Vec<ImagePath> {
        list.iter().map(|p| ImagePath::from_rel(p).unwrap()).collect()
    }

    #[test]
    fn hosts_maps_127_0_1_1_to_the_container() {
        assert_eq!(hosts(None), "127.0.0.1 localhost\n127.0.1.1 LXC_NAME\n::1 localhost ip6-localhost ip6-loopback\n");
        // The image's own name is replaced, everything else kept.
        assert_eq!(
            hosts(Some("127.0.0.1\tlocalhost\n127.0.1.1\tcandidate.example candidate\n::1 localhost\n")),
            "127.0.0.1\tlocalhost\n127.0.1.1 LXC_NAME\n::1 localhost\n"
        );
        // No mapping: added after the loopback lines; a last line without newline gets one.
        assert_eq!(
            hosts(Some("# hosts\n127.0.0.1 localhost\n::1 localhost")),
            "# hosts\n127.0.0.1 localhost\n127.0.1.1 LXC_NAME\n::1 localhost\n"
        );
        assert_eq!(hosts(Some("")), "127.0.1.1 LXC_NAME\n");
        // Written for LXC already: kept as it is.
        assert_eq!(hosts(Some("127.0.1.1 LXC_NAME.lan LXC_NAME\n")), "127.0.1.1 LXC_NAME.lan LXC_NAME\n");
    }

    #[test]
    fn templates_hostname_and_hosts_and_leaves_the_rest() {
        let mut tree = Tree::new(1);
        tree.insert("etc", Node::implicit_directory(1)).unwrap();
        tree.insert("etc/hostname", file("candidate\n", 0o640, 7)).unwrap();
        tree.insert("etc/motd", file("welcome to LXC_NAME\n", 0o644, 0)).unwrap();
        tree.insert("etc/issue", file("candidate\n", 0o644, 0)).unwrap();
        template(&mut tree, &paths(&["etc/hostname", "etc/hosts", "etc/motd"]), 9).unwrap();
        assert_eq!(text(&tree, "etc/hostname"), "LXC_NAME\n");
        let hostname = tree.get("etc/hostname").unwrap();
        assert_eq!((hostname.mode, hostname.uid, hostname.mtime), (0o640, 7, 5), "the image's metadata stays");
        assert!(matches!(hostname.kind, Kind::File { link_group: None, .. }), "no longer a hard link");
        // Missing, with its folder there: written as an installer does.
        assert_eq!(text(&tree, "etc/hosts"), hosts(None));
        let created = tree.get("etc/hosts").unwrap();
        assert_eq!((created.mode, created.uid, created.gid, created.mtime), (0o644, 0, 0, 9));
        // The recipe's own template, and an unlisted file: untouched.
        assert_eq!(text(&tree, "etc/motd"), "welcome to LXC_NAME\n");
        assert_eq!(text(&tree, "etc/issue"), "candidate\n");
        // Unlisted: not templated, since LXC would not substitute in it.
        let mut tree = Tree::new(1);
        tree.insert("etc/hostname", file("candidate\n", 0o644, 0)).unwrap();
        template(&mut tree, &paths(&["etc/hosts"]), 9).unwrap();
        assert_eq!(text(&tree, "etc/hostname"), "candidate\n");
    }

    #[test]
    fn an_image_without_etc_gets_nothing_and_a_symlink_is_refused() {
        let mut tree = Tree::new(1);
        template(&mut tree, &paths(&["etc/hostname", "etc/hosts"]), 9).unwrap();
        assert_eq!(tree.len(), 1, "only the root");
        let mut tree = Tree::new(1);
        let link = Node {
            kind: Kind::Symlink { target: "/run/hostname".into() },
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 1,
            xattrs: Default::default(),
            implicit: false,
        };
        tree.insert("etc/hostname", link).unwrap();
        let err = template(&mut tree, &paths(&["etc/hostname"]), 9).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/etc/hostname` is listed in `[lxc] templates` but is a symlink in the image: LXC rewrites a file in place"
        );
    }
}
