//! Metadata for LXC (`lxc-create -t local`) and LXD/Incus (split images).
//!
//! Both sit beside `rootfs.tar.xz`, built like every archive here: a tree in memory,
//! serialised by the deterministic tar writer, xz-compressed with the pinned settings.
//!
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
use crate::recipe::Recipe;
use crate::rootfs::OutputFile;
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
}

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

/// Writes the metadata archive of `flavour` into the store.
pub fn metadata(store: &Store, recipe: &Recipe, flavour: Flavour) -> Result<OutputFile, LxcError> {
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
    let mut encoder = Codec::Xz.encoder(store.writer()?)?;
    write_tree(&tree, &mut encoder)?;
    let (sha256, size) = encoder.finish()?.commit()?;
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
