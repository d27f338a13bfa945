//! usrmerge's conversion done in memory: an image that installs `usrmerge` is written for its
//! maintainer scripts already merged (`/bin`, `/sbin`, `/lib`, `/lib64` … links into `/usr`),
//! so that the package's `postinst` finds nothing to convert.
//!
//! In a configured build the conversion (`/usr/lib/usrmerge/convert-usrmerge`, one `cp` per
//! file: 1,192 of them for the server set) is the most expensive script there is: about 0.9 s
//! of the server set's 10 s of scripts, 0.45 s of minbase's 2 s, measured side by side.
//! mmdebstrap avoids it the same way (its `merged-usr` hook lays the links out
//! before extraction). The conversion is only taken over where it is plain: every entry of a
//! merged directory moves to the same path under `/usr`, and where both exist they must be
//! directories (merged) — any other collision (two files, a file over a link …) is a case
//! the conversion resolves by its own rules or refuses, so it is left to it and the image is
//! written as it is. Extract-only images are never laid out this way: they are what the
//! packages hold.
//!
//! What differs from the conversion's result is only what the conversion itself does not
//! keep: hard links inside a moved directory stay hard links (its `cp` copies each name).
//! `postinst` sees a merged system and skips its `update-shells`; `debianutils`' own
//! `update-shells` already lists the `/usr` names of the shells on a merged system.

use std::collections::BTreeMap;

use crate::tree::{Kind, Node, Tree};

/// The top-level directories the conversion merges into `/usr` (`directories_to_merge`).
pub const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libo32", "libx32"];

/// `image` laid out as usrmerge's conversion leaves it, or `None` when there is nothing to
/// convert or a collision the conversion decides by its own rules (see the module docs).
pub fn lay_out(image: &Tree, sde: u64) -> Option<Tree> {
    let is_dir = |path: &str| image.get(path).is_some_and(Node::is_dir);
    let moving: Vec<&str> = MERGED.iter().copied().filter(|top| is_dir(top)).collect();
    // Without a `/usr` directory the conversion has nowhere to move to (it fails).
    if moving.is_empty() || !is_dir("usr") {
        return None;
    }
    let link = |top: &str| Node {
        kind: Kind::Symlink { target: format!("usr/{top}") },
        mode: 0o777,
        uid: 0,
        gid: 0,
        mtime: sde,
        xattrs: BTreeMap::new(),
        implicit: false,
    };
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for (path, node) in image.iter() {
        let top = path.split('/').next().unwrap_or_default();
        if !moving.contains(&top) {
            nodes.insert(path.clone(), node.clone());
            continue;
        }
        if path.len() == top.len() {
            continue;
        }
        let to = format!("usr/{path}");
        match image.get(&to) {
            None => {
                nodes.insert(to, node.clone());
            }
            // Both directories: merged, `/usr`'s own stays (it is in `nodes` by its own path).
            Some(there) if there.is_dir() && node.is_dir() => {}
            Some(_) => return None,
        }
    }
    for top in MERGED {
        let usr = format!("usr/{top}");
        if moving.contains(top) {
            // The conversion makes a missing `/usr` directory afresh (`mkdir`, umask 022).
            if image.get(&usr).is_none() {
                nodes.insert(usr, Node { implicit: false, ..Node::implicit_directory(sde) });
            }
            nodes.insert((*top).to_owned(), link(top));
        } else if image.get(top).is_none() && image.get(&usr).is_some() {
            // Absent from `/` but present in `/usr`: the conversion links it too.
            nodes.insert((*top).to_owned(), link(top));
        }
    }
    Some(Tree::from_entries(nodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Content;
    use std::sync::Arc;

    fn node(kind: Kind, mode: u32) -> Node {
        Node { kind, mode, uid: 0, gid: 0, mtime: 7, xattrs: BTreeMap::new(), implicit: false }
    }
    fn dir() -> Node {
        node(Kind::Directory, 0o755)
    }
    fn file(bytes: &'static [u8], link_group: Option<u64>) -> Node {
        let content = Content::Bytes(Arc::from(bytes));
        node(Kind::File { size: bytes.len() as u64, content, link_group }, 0o755)
    }
    fn symlink(target: &str) -> Node {
        node(Kind::Symlink { target: target.into() }, 0o777)
    }
    fn image(entries: Vec<(&str, Node)>) -> Tree {
        let mut tree = Tree::new(7);
        for (path, node) in entries {
            tree.insert(path, node).unwrap();
        }
        tree
    }
    fn kinds(tree: &Tree) -> Vec<String> {
        tree.iter()
            .map(|(path, node)| match &node.kind {
                Kind::Symlink { target } => format!("{path} -> {target}"),
                kind => format!("{path} {}", kind.describe()),
            })
            .collect()
    }

    #[test]
    fn moves_every_entry_under_usr_and_links_the_directories() {
        let before = image(vec![
            ("bin", dir()),
            ("bin/sh", symlink("dash")),
            ("bin/dash", file(b"dash", None)),
            ("bin/bunzip2", file(b"bz", Some(1))),
            ("bin/bzcat", file(b"bz", Some(1))),
            ("lib", dir()),
            ("lib/x86_64-linux-gnu", dir()),
            ("lib/x86_64-linux-gnu/libc.so.6", file(b"libc", None)),
            ("lib/systemd", dir()),
            ("lib/systemd/systemd", file(b"init", None)),
            ("lib64", dir()),
            ("lib64/ld-linux-x86-64.so.2", symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
            ("usr", dir()),
            ("usr/bin", node(Kind::Directory, 0o700)),
            ("usr/bin/perl", file(b"perl", None)),
            ("usr/lib", dir()),
            ("usr/lib/x86_64-linux-gnu", dir()),
            ("usr/lib/x86_64-linux-gnu/libperl.so", file(b"perl", None)),
            ("usr/lib32", dir()),
            ("etc", dir()),
        ]);
        let after = lay_out(&before, 9).unwrap();
        assert_eq!(
            kinds(&after),
            [
                " directory",
                "bin -> usr/bin",
                "etc directory",
                "lib -> usr/lib",
                "lib32 -> usr/lib32",
                "lib64 -> usr/lib64",
                "usr directory",
                "usr/bin directory",
                "usr/bin/bunzip2 file",
                "usr/bin/bzcat file",
                "usr/bin/dash file",
                "usr/bin/perl file",
                "usr/bin/sh -> dash",
                "usr/lib directory",
                "usr/lib/systemd directory",
                "usr/lib/systemd/systemd file",
                "usr/lib/x86_64-linux-gnu directory",
                "usr/lib/x86_64-linux-gnu/libc.so.6 file",
                "usr/lib/x86_64-linux-gnu/libperl.so file",
                "usr/lib32 directory",
                "usr/lib64 directory",
                "usr/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ]
        );
        // `/usr/bin` keeps its own metadata; a made one is root's 0755 at the epoch; hard
        // links stay linked; the links are root's.
        assert_eq!(after.get("usr/bin").unwrap().mode, 0o700);
        let made = after.get("usr/lib64").unwrap();
        assert_eq!((made.mode, made.uid, made.mtime, made.implicit), (0o755, 0, 9, false));
        let group = |path| match after.get(path).unwrap().kind {
            Kind::File { link_group, .. } => link_group,
            _ => panic!("{path} is not a file"),
        };
        assert_eq!((group("usr/bin/bunzip2"), group("usr/bin/bzcat")), (Some(1), Some(1)));
        assert_eq!(after.get("bin").unwrap().mtime, 9);
    }

    #[test]
    fn collisions_other_than_two_directories_are_left_to_the_conversion() {
        for (ours, theirs) in [
            (file(b"a", None), file(b"a", None)),
            (symlink("dash"), symlink("dash")),
            (file(b"a", None), dir()),
            (symlink("/usr/bin/x"), file(b"a", None)),
        ] {
            let before = image(vec![("bin", dir()), ("bin/x", ours), ("usr/bin", dir()), ("usr/bin/x", theirs)]);
            assert!(lay_out(&before, 9).is_none(), "{:?}", kinds(&before));
        }
    }

    #[test]
    fn an_image_already_merged_or_without_those_directories_is_left_alone() {
        let merged = image(vec![("bin", symlink("usr/bin")), ("usr/bin/sh", file(b"sh", None))]);
        assert!(lay_out(&merged, 9).is_none());
        assert!(lay_out(&image(vec![("etc/hostname", file(b"h", None))]), 9).is_none());
        assert!(lay_out(&image(vec![("bin/sh", file(b"sh", None)), ("usr", symlink("/elsewhere"))]), 9).is_none());
    }
}
