//! The in-memory image tree.
//!
//! Nothing from an input is written to the host as it is read: entries of tarballs and local
//! trees become [`Node`]s in a [`Tree`], a sorted map from image path to metadata plus a
//! reference to where the content can be read (a host file, or a byte range of a store blob
//! or spool file). Every rule about what an entry may do is checked here, against this map:
//!
//! * **Within a layer** ([`Tree::insert`]): no entry may be written through a symlink made
//!   by the same layer (the classic tarball escape: `link -> /etc`, then `link/passwd`); a
//!   path cannot be a directory and a non-directory at once; missing parents are created as
//!   `0755 0:0` directories; a later non-directory replaces an earlier one.
//! * **Across layers** ([`Tree::merge`]): each path of the later layer is resolved in the
//!   merged tree the way the kernel resolves it inside a chroot — symlinks followed, absolute
//!   targets taken from the image root, `..` stopping at the root — so a layer that ships
//!   `/bin/sh` over an image where `/bin -> usr/bin` lands in `/usr/bin/sh`, and nothing can
//!   point outside the image. Then: a directory over a directory merges (the later metadata
//!   wins if the later layer declared the directory; an implicit one changes nothing);
//!   a directory over a symlink to a directory keeps the symlink (dpkg's rule, which keeps
//!   merged-/usr symlinks in place); anything else replaces what was there, and a
//!   non-directory that replaces a directory removes the directory's whole subtree.
//!
//! Paths are kept relative to the image root without a leading `/` (the root is `""`), and
//! the map is a `BTreeMap`, so iteration is bytewise path order: the order entries are
//! written to every tar, and parents always come before their children.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// Symlink hops allowed while resolving one path, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;

/// The longest path in an image, in bytes: Linux's `PATH_MAX` (4096, with its NUL). No
/// program in the image could open a longer one by name, and a cap on it is what keeps a
/// hostile archive's deep paths from costing more than a fixed multiple of their own size.
pub const MAX_PATH_BYTES: usize = 4096;

/// The longest name of one path component, in bytes: Linux's `NAME_MAX`. Longer names fail
/// `open(2)` with `ENAMETOOLONG` on every file system a candidate is unpacked on.
pub const MAX_NAME_BYTES: usize = 255;

/// The most components of a path. Every directory above an entry is an entry of its own in
/// the tree and in each output tar, so an entry costs up to its depth in directories: this
/// cap bounds that multiple. 256 is well beyond real trees (a Debian system stays under 20;
/// nested `node_modules` under 100).
pub const MAX_DEPTH: usize = 256;

/// `path` shortened for a message: a path near the caps would drown the error.
fn shown(path: &str) -> String {
    const SHOWN: usize = 120;
    if path.len() <= SHOWN {
        return path.to_owned();
    }
    let end = (0..=SHOWN).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes)", &path[..end], path.len())
}

/// Checks a path of the image (relative, `/`-separated) against [`MAX_PATH_BYTES`],
/// [`MAX_NAME_BYTES`] and [`MAX_DEPTH`], in one pass over its bytes.
pub fn check_path_limits(path: &str) -> Result<(), TreeError> {
    // First, so a NUL is named as such, not as whatever the path looks like around it.
    if path.contains('\0') {
        return Err(TreeError::NulInPath { path: shown(&path.escape_debug().to_string()) });
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(TreeError::PathTooLong { path: shown(path), len: path.len() });
    }
    let mut depth = 0;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        depth += 1;
        if name.len() > MAX_NAME_BYTES {
            return Err(TreeError::NameTooLong { path: shown(path), name: shown(name), len: name.len() });
        }
    }
    if depth > MAX_DEPTH {
        return Err(TreeError::TooDeep { path: shown(path), depth });
    }
    Ok(())
}

/// Checks a symlink target: at most [`MAX_PATH_BYTES`] (`symlink(2)` refuses longer ones),
/// and no NUL, which would end it early in every C string it goes through.
pub fn check_link_target(path: &str, target: &str) -> Result<(), TreeError> {
    if target.len() > MAX_PATH_BYTES {
        return Err(TreeError::TargetTooLong { path: shown(path), len: target.len() });
    }
    if target.contains('\0') {
        return Err(TreeError::NulInTarget { path: shown(path), target: target.escape_debug().to_string() });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("`/{path}` would be written through the symlink `/{link}`, which the same layer created")]
    ThroughOwnSymlink { path: String, link: String },
    #[error("`/{path}` needs `/{parent}` to be a directory, but it is a {kind}")]
    ParentNotDirectory { path: String, parent: String, kind: &'static str },
    #[error("`/{path}` is both a directory and a {kind} in the same layer")]
    DirectoryConflict { path: String, kind: &'static str },
    #[error("`/{path}`: the symlink `/{link}` leads to `/{target}`, which does not exist in the image")]
    DanglingParent { path: String, link: String, target: String },
    #[error("`/{path}`: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("`/{path}`: {message}")]
    Refused { path: String, message: String },
    #[error("`/{path}`: the path is {len} bytes, longer than the {MAX_PATH_BYTES} a path may have")]
    PathTooLong { path: String, len: usize },
    #[error("`/{path}`: the name `{name}` is {len} bytes, longer than the {MAX_NAME_BYTES} a file name may have")]
    NameTooLong { path: String, name: String, len: usize },
    #[error("`/{path}`: the path is {depth} levels deep, deeper than the {MAX_DEPTH} allowed")]
    TooDeep { path: String, depth: usize },
    #[error("`/{path}`: the symlink target is {len} bytes, longer than the {MAX_PATH_BYTES} a path may have")]
    TargetTooLong { path: String, len: usize },
    #[error("`/{path}`: the path contains a NUL byte")]
    NulInPath { path: String },
    #[error("`/{path}`: the symlink target `{target}` contains a NUL byte")]
    NulInTarget { path: String, target: String },
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// A file on the host (local `files` inputs), read when the tar is written.
    Host(Arc<PathBuf>),
    /// A byte range of an open file: a store blob or a spool of decompressed content.
    Range { file: Arc<File>, offset: u64 },
    /// Bytes we generated (image metadata), held in memory.
    Bytes(Arc<[u8]>),
}

impl Content {
    /// The whole content (`size` bytes) in memory; for small files and comparisons.
    pub fn read_all(&self, size: u64) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        match self {
            Content::Range { file, offset } => {
                let mut buf = vec![0; size as usize];
                file.read_exact_at(&mut buf, *offset)?;
                Ok(buf)
            }
            Content::Bytes(bytes) => Ok(bytes.to_vec()),
            Content::Host(path) => fs_err::read(path.as_path()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Directory,
    File {
        size: u64,
        content: Content,
        /// Files sharing a link group are one inode with several names (hard links).
        link_group: Option<u64>,
    },
    Symlink {
        target: String,
    },
    /// An OCI whiteout: the layer deletes what an earlier layer put at this name. Kept in the
    /// tree at its tar name (`dir/.wh.NAME`), so that a layer's tar is its OCI layer as is;
    /// a merge removes `dir/NAME` (and its subtree) and never places the whiteout itself.
    Whiteout,
}

/// The prefix OCI gives a whiteout's name (image-spec, "Whiteouts").
pub const WHITEOUT_PREFIX: &str = ".wh.";

impl Kind {
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
            Kind::Whiteout => "whiteout",
        }
    }
}

/// One entry of the image, with every field that goes into its tar header.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, already clamped to the candidate's `SOURCE_DATE_EPOCH`.
    pub mtime: u64,
    /// Extended attributes (`security.capability` …), sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// A directory nobody declared, made because something was placed inside it. Over an
    /// existing directory it changes nothing: a layer that writes `/tmp/x` must not reset
    /// the `1777` an earlier layer gave `/tmp`.
    pub implicit: bool,
}

impl Node {
    /// A directory made implicitly (a missing parent): root-owned, 0755, at `mtime`.
    pub fn implicit_directory(mtime: u64) -> Self {
        Node { kind: Kind::Directory, mode: 0o755, uid: 0, gid: 0, mtime, xattrs: BTreeMap::new(), implicit: true }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Directory)
    }
}

/// Decides, for [`Tree::merge_checked`], whether an entry is placed: given its path in the
/// layer, the path it lands on, the entry, and what is there now.
pub type Placer<'a> = dyn FnMut(&str, &str, &Node, Option<&Node>) -> Result<bool, TreeError> + 'a;

/// A set of image entries keyed by path, always holding the root directory.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Metadata of implicitly created directories.
    mtime: u64,
}

impl Tree {
    /// An empty tree: just the root, `0755 0:0` at `mtime`.
    pub fn new(mtime: u64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), Node::implicit_directory(mtime));
        Tree { nodes, mtime }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.nodes.get_mut(path)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Entries in bytewise path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Adds an entry of the layer this tree is building (rules in the module docs).
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        // `.wh.` names mean deletion to every OCI runtime: only a whiteout may carry one.
        let whiteout_name = path.rsplit('/').next().is_some_and(|name| name.starts_with(WHITEOUT_PREFIX));
        if whiteout_name != matches!(node.kind, Kind::Whiteout) {
            let message = if whiteout_name {
                format!(
                    "names beginning with `{WHITEOUT_PREFIX}` are OCI whiteouts; refusing this {}",
                    node.kind.describe()
                )
            } else {
                format!("a whiteout must be named `{WHITEOUT_PREFIX}NAME`")
            };
            return Err(TreeError::Refused { path: path.to_owned(), message });
        }
        check_path_limits(path)?;
        if let Kind::Symlink { target } = &node.kind {
            check_link_target(path, target)?;
        }
        // Every ancestor must be a directory of this layer; missing ones are created. The
        // ancestors are looked up from the nearest: the first one that exists is a directory
        // whose own ancestors all exist (this function only ever adds a path with its
        // parents), so the walk stops there, and each entry costs a lookup or two rather
        // than one per level (which made deep archives quadratic, #16 hole 3).
        let mut missing = Vec::new();
        for (i, _) in path.rmatch_indices('/') {
            let parent = &path[..i];
            match self.nodes.get(parent) {
                None => missing.push(parent),
                Some(n) => match &n.kind {
                    Kind::Directory => break,
                    Kind::Symlink { .. } => {
                        return Err(TreeError::ThroughOwnSymlink { path: path.to_owned(), link: parent.to_owned() })
                    }
                    kind => {
                        return Err(TreeError::ParentNotDirectory {
                            path: path.to_owned(),
                            parent: parent.to_owned(),
                            kind: kind.describe(),
                        })
                    }
                },
            }
        }
        for parent in missing {
            self.nodes.insert(parent.to_owned(), Node::implicit_directory(self.mtime));
        }
        match self.nodes.get_mut(path) {
            Some(existing) if existing.is_dir() != node.is_dir() => {
                let kind = if existing.is_dir() { node.kind.describe() } else { existing.kind.describe() };
                Err(TreeError::DirectoryConflict { path: path.to_owned(), kind })
            }
            // A declared directory over an implicit one gives it metadata; an implicit one
            // over anything already there changes nothing.
            Some(_) if node.implicit && node.is_dir() => Ok(()),
            Some(existing) => {
                *existing = node;
                Ok(())
            }
            None => {
                self.nodes.insert(path.to_owned(), node);
                Ok(())
            }
        }
    }

    /// Applies `layer` over this tree (rules in the module docs). Hard-link groups of
    /// different layers must already be distinct.
    pub fn merge(&mut self, layer: Tree) -> Result<(), TreeError> {
        self.merge_recording(layer, &mut |_, _| {})
    }

    /// Like [`Tree::merge`], telling `placed` every entry the layer changed, at the path it
    /// landed on: the layer as an image runtime must apply it (an OCI layer) to reach the
    /// same tree. Entries that change nothing — an implicit directory over an existing one,
    /// a directory kept as an earlier symlink — are not told.
    pub fn merge_recording(&mut self, layer: Tree, placed: &mut dyn FnMut(&str, &Node)) -> Result<(), TreeError> {
        self.merge_checked(layer, &mut |_, path, node, _| {
            placed(path, node);
            Ok(true)
        })
    }

    /// Like [`Tree::merge_recording`], showing `place` each entry's path in the layer, where it
    /// lands, and what it replaces there (`None` when the path is new) before it is placed:
    /// `place` says whether to place it (`false` keeps
    /// what is there), and its error stops the merge. Package layers use it to enforce dpkg's
    /// rules on files two packages ship.
    pub fn merge_checked(&mut self, layer: Tree, place: &mut Placer<'_>) -> Result<(), TreeError> {
        for (path, node) in layer.nodes {
            if path.is_empty() {
                // The layer's root directory: if declared, its metadata applies to the image root.
                if !node.implicit && place(&path, &path, &node, self.nodes.get(&path))? {
                    self.nodes.insert(path, node);
                }
                continue;
            }
            let (parent, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (parent, name),
                None => ("", path.as_str()),
            };
            let parent = self.resolve_directory(parent, &path)?;
            let join = |name: &str| if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") };
            if let Kind::Whiteout = node.kind {
                // Deletes what is there (nothing to do if nothing is); the placer is told at
                // the whiteout's own landed name, as an OCI layer must carry it.
                let deleted = join(&name[WHITEOUT_PREFIX.len()..]);
                if self.nodes.contains_key(&deleted) && place(&path, &join(name), &node, self.nodes.get(&deleted))? {
                    self.remove_subtree(&deleted);
                    self.nodes.remove(&deleted);
                }
                continue;
            }
            let target = join(name);
            match self.nodes.get(&target).map(|n| &n.kind) {
                Some(Kind::Directory) if node.is_dir() && node.implicit => {}
                Some(Kind::Symlink { .. }) if node.is_dir() && self.resolves_to_directory(&target) => {
                    // Keep the symlink; the layer's children resolve through it.
                }
                Some(Kind::Directory) if !node.is_dir() => {
                    if place(&path, &target, &node, self.nodes.get(&target))? {
                        self.remove_subtree(&target);
                        self.nodes.insert(target, node);
                    }
                }
                _ => {
                    if place(&path, &target, &node, self.nodes.get(&target))? {
                        self.nodes.insert(target, node);
                    }
                }
            }
        }
        Ok(())
    }

    /// A tree of exactly these entries: no root or parents are implied (an OCI layer holds
    /// only what it changes).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Node)>) -> Self {
        Tree { nodes: entries.into_iter().collect(), mtime: 0 }
    }

    /// Resolves `dir` to the path of an existing directory, following symlinks as a chroot
    /// would. `for_path` names the entry being placed, for errors.
    fn resolve_directory(&self, dir: &str, for_path: &str) -> Result<String, TreeError> {
        let mut hops = 0;
        let mut pending: Vec<String> = dir.split('/').filter(|c| !c.is_empty()).rev().map(str::to_owned).collect();
        let mut current = String::new();
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => continue,
                ".." => {
                    // `..` at the root stays at the root, as in a chroot.
                    current = current.rsplit_once('/').map(|(p, _)| p.to_owned()).unwrap_or_default();
                    continue;
                }
                _ => {}
            }
            let candidate = if current.is_empty() { component } else { format!("{current}/{component}") };
            match self.nodes.get(&candidate).map(|n| &n.kind) {
                Some(Kind::Directory) => current = candidate,
                Some(Kind::Symlink { target }) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(TreeError::SymlinkLoop { path: for_path.to_owned() });
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    // `current` stays the symlink's folder: relative targets start there.
                    pending.extend(target.split('/').filter(|c| !c.is_empty()).rev().map(str::to_owned));
                }
                Some(kind) => {
                    return Err(TreeError::ParentNotDirectory {
                        path: for_path.to_owned(),
                        parent: candidate,
                        kind: kind.describe(),
                    })
                }
                None => {
                    return Err(TreeError::DanglingParent {
                        path: for_path.to_owned(),
                        link: dir.to_owned(),
                        target: candidate,
                    })
                }
            }
        }
        Ok(current)
    }

    /// The entry `path` leads to inside the image, following every symlink (the last
    /// component's too) the way a chroot would; `None` when it leads nowhere.
    pub fn resolve(&self, path: &str) -> Option<&Node> {
        let mut path = path.trim_matches('/').to_owned();
        for _ in 0..MAX_SYMLINK_HOPS {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            let parent = self.resolve_directory(parent, &path).ok()?;
            let target = if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") };
            match self.nodes.get(&target) {
                Some(Node { kind: Kind::Symlink { target: link }, .. }) if link.starts_with('/') => {
                    path = link.trim_start_matches('/').to_owned();
                }
                Some(Node { kind: Kind::Symlink { target: link }, .. }) => {
                    path = if parent.is_empty() { link.clone() } else { format!("{parent}/{link}") };
                }
                found => return found,
            }
        }
        None
    }

    fn resolves_to_directory(&self, path: &str) -> bool {
        self.resolve_directory(path, path).is_ok()
    }

    fn remove_subtree(&mut self, dir: &str) {
        let prefix = format!("{dir}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Node {
        Node { implicit: false, ..Node::implicit_directory(0) }
    }

    fn symlink(target: &str) -> Node {
        Node { kind: Kind::Symlink { target: target.into() }, ..dir() }
    }

    fn file(tag: u64) -> Node {
        // A file's identity in these tests is its size.
        let content = Content::Host(Arc::new(PathBuf::from("/nonexistent")));
        Node { kind: Kind::File { size: tag, content, link_group: None }, mode: 0o644, ..dir() }
    }

    fn size_of(tree: &Tree, path: &str) -> Option<u64> {
        match tree.get(path)?.kind {
            Kind::File { size, .. } => Some(size),
            _ => None,
        }
    }

    /// #16 hole 3: paths past `PATH_MAX`, `NAME_MAX` or the depth cap are refused naming
    /// the cap; at the caps they go in, and their parents are made once.
    #[test]
    fn paths_are_capped_in_length_name_and_depth() {
        let mut tree = Tree::new(0);
        let deepest = vec!["d"; MAX_DEPTH].join("/");
        tree.insert(&deepest, file(1)).unwrap();
        assert_eq!(tree.len(), MAX_DEPTH + 1, "the root, {} parents and the file", MAX_DEPTH - 1);
        let longest = format!("{}/{}", "n".repeat(MAX_NAME_BYTES), "m".repeat(MAX_NAME_BYTES));
        tree.insert(&longest, file(2)).unwrap();
        for (path, message) in [
            (format!("{deepest}/x"), format!("is {} levels deep, deeper than the 256 allowed", MAX_DEPTH + 1)),
            (format!("a/{}", "n".repeat(256)), "is 256 bytes, longer than the 255 a file name may have".to_owned()),
            (
                format!("{}/{}", "a".repeat(200), vec!["b".repeat(200); 20].join("/")),
                "the path is 4220 bytes, longer than the 4096 a path may have".to_owned(),
            ),
        ] {
            let err = tree.insert(&path, file(3)).unwrap_err().to_string();
            assert!(err.contains(&message) && err.len() < 400, "{err}");
        }
        let err = tree.insert("l", symlink(&"t/".repeat(2049))).unwrap_err().to_string();
        assert!(err.contains("the symlink target is 4098 bytes"), "{err}");
        // A NUL is named as a NUL, even where the path also climbs (#16: it was reported as `..`).
        let err = tree.insert("../a\0b", file(1)).unwrap_err().to_string();
        assert_eq!(err, "`/../a\\0b`: the path contains a NUL byte");
        let err = tree.insert("l", symlink("a\0b")).unwrap_err().to_string();
        assert_eq!(err, "`/l`: the symlink target `a\\0b` contains a NUL byte");
    }

    fn paths(tree: &Tree) -> Vec<&str> {
        tree.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn insert_creates_parents_and_refuses_own_symlinks() {
        let mut t = Tree::new(0);
        t.insert("a/b/c", file(1)).unwrap();
        assert_eq!(paths(&t), ["", "a", "a/b", "a/b/c"]);
        t.insert("link", symlink("/etc")).unwrap();
        let err = t.insert("link/passwd", file(2)).unwrap_err();
        assert!(matches!(err, TreeError::ThroughOwnSymlink { .. }), "{err}");
        assert!(t.get("link/passwd").is_none());
        assert!(matches!(t.insert("a/b/c/d", file(3)), Err(TreeError::ParentNotDirectory { .. })));
        assert!(matches!(t.insert("a/b", file(3)), Err(TreeError::DirectoryConflict { .. })));
        t.insert("a/b/c", file(4)).unwrap();
        assert_eq!(size_of(&t, "a/b/c"), Some(4));
    }

    #[test]
    fn merge_resolves_through_earlier_symlinks_inside_the_image() {
        let mut base = Tree::new(0);
        base.insert("usr/bin", dir()).unwrap();
        base.insert("bin", symlink("usr/bin")).unwrap();
        base.insert("escape", symlink("../../../../..")).unwrap();
        base.insert("abs", symlink("/usr")).unwrap();

        let mut layer = Tree::new(0);
        layer.insert("bin/sh", file(7)).unwrap();
        layer.insert("escape/etc-file", file(8)).unwrap();
        layer.insert("abs/lib/x", file(9)).unwrap();
        base.merge(layer).unwrap();

        // The directory `bin` of the layer keeps the image's symlink (dpkg's rule).
        assert!(matches!(base.get("bin").unwrap().kind, Kind::Symlink { .. }));
        assert_eq!(size_of(&base, "usr/bin/sh"), Some(7));
        // `..` cannot climb above the image root.
        assert_eq!(size_of(&base, "etc-file"), Some(8));
        assert_eq!(size_of(&base, "usr/lib/x"), Some(9));
        assert!(base.get("bin/sh").is_none());
    }

    #[test]
    fn a_file_over_a_directory_removes_the_subtree_and_back() {
        let mut base = Tree::new(0);
        base.insert("opt/app/bin/tool", file(1)).unwrap();
        base.insert("opt/app-data", file(2)).unwrap();
        let mut layer = Tree::new(0);
        layer.insert("opt/app", file(3)).unwrap();
        base.merge(layer).unwrap();
        assert_eq!(paths(&base), ["", "opt", "opt/app", "opt/app-data"]);
        assert_eq!(size_of(&base, "opt/app"), Some(3));

        let mut layer = Tree::new(0);
        layer.insert("opt/app/new", file(4)).unwrap();
        base.merge(layer).unwrap();
        assert!(base.get("opt/app").unwrap().is_dir());
        assert_eq!(size_of(&base, "opt/app/new"), Some(4));
    }

    #[test]
    fn implicit_directories_keep_what_an_earlier_layer_declared() {
        let mut base = Tree::new(0);
        base.insert("tmp", Node { mode: 0o1777, implicit: false, ..dir() }).unwrap();
        let mut layer = Tree::new(0);
        layer.insert("tmp/x", file(1)).unwrap();
        base.merge(layer).unwrap();
        assert_eq!(base.get("tmp").unwrap().mode, 0o1777);
        let mut layer = Tree::new(0);
        layer.insert("tmp", Node { mode: 0o700, implicit: false, ..dir() }).unwrap();
        base.merge(layer).unwrap();
        assert_eq!(base.get("tmp").unwrap().mode, 0o700, "a declared directory's metadata wins");
    }

    #[test]
    fn a_directory_replaces_a_symlink_that_leads_nowhere() {
        // Looping and dangling symlinks do not resolve to a directory, so a layer's
        // directory replaces them (only a symlink to a directory is kept).
        let mut base = Tree::new(0);
        base.insert("a", symlink("b")).unwrap();
        base.insert("b", symlink("a")).unwrap();
        base.insert("d", symlink("/missing/dir")).unwrap();
        let mut layer = Tree::new(0);
        layer.insert("a/x", file(1)).unwrap();
        layer.insert("d/y", file(2)).unwrap();
        base.merge(layer).unwrap();
        assert!(base.get("a").unwrap().is_dir() && base.get("d").unwrap().is_dir());
        assert_eq!(size_of(&base, "a/x"), Some(1));
        assert_eq!(size_of(&base, "d/y"), Some(2));
        assert!(matches!(base.get("b").unwrap().kind, Kind::Symlink { .. }));
    }

    #[test]
    fn resolution_reports_loops() {
        let mut base = Tree::new(0);
        base.insert("a", symlink("b")).unwrap();
        base.insert("b", symlink("a")).unwrap();
        base.insert("d", symlink("/missing/dir")).unwrap();
        assert!(matches!(base.resolve_directory("a/x", "a/x/f"), Err(TreeError::SymlinkLoop { .. })));
        assert!(matches!(base.resolve_directory("d", "d/f"), Err(TreeError::DanglingParent { .. })));
    }

    fn whiteout() -> Node {
        Node { kind: Kind::Whiteout, ..file(0) }
    }

    #[test]
    fn whiteouts_delete_through_earlier_symlinks_and_are_never_placed() {
        let mut base = Tree::new(0);
        base.insert("usr/bin/x", file(1)).unwrap();
        base.insert("usr/share/doc/x/a", file(2)).unwrap();
        base.insert("bin", symlink("usr/bin")).unwrap();
        let mut layer = Tree::new(0);
        layer.insert("bin/.wh.x", whiteout()).unwrap();
        layer.insert("usr/share/doc/.wh.x", whiteout()).unwrap();
        layer.insert("usr/.wh.nothing-there", whiteout()).unwrap();
        let mut told = Vec::new();
        base.merge_recording(layer, &mut |path, node| told.push((path.to_owned(), node.kind.describe()))).unwrap();
        assert_eq!(paths(&base), ["", "bin", "usr", "usr/bin", "usr/share", "usr/share/doc"]);
        // What an OCI layer must carry: the whiteouts at the paths they landed on, and only
        // those that deleted something.
        assert!(told.contains(&("usr/bin/.wh.x".to_owned(), "whiteout")), "{told:?}");
        assert!(told.contains(&("usr/share/doc/.wh.x".to_owned(), "whiteout")), "{told:?}");
        assert!(!told.iter().any(|(p, _)| p.contains("nothing-there")));
    }

    #[test]
    fn resolve_follows_every_link_inside_the_image() {
        let mut tree = Tree::new(0);
        tree.insert("usr/bin/dash", file(7)).unwrap();
        tree.insert("usr/bin/sh", symlink("dash")).unwrap();
        tree.insert("bin", symlink("usr/bin")).unwrap();
        tree.insert("etc/shell", symlink("/bin/sh")).unwrap();
        tree.insert("etc/up", symlink("../../../usr/bin/sh")).unwrap();
        tree.insert("loop", symlink("loop")).unwrap();
        for path in ["bin/sh", "/etc/shell", "etc/up", "usr/bin/dash"] {
            assert!(matches!(tree.resolve(path).map(|n| &n.kind), Some(Kind::File { size: 7, .. })), "{path}");
        }
        assert!(tree.resolve("bin/bash").is_none());
        assert!(tree.resolve("loop").is_none());
        assert!(tree.resolve("usr/bin").is_some_and(Node::is_dir));
    }

    #[test]
    fn only_whiteouts_may_carry_whiteout_names() {
        let mut tree = Tree::new(0);
        let refused = tree.insert("etc/.wh.passwd", file(1)).unwrap_err();
        assert!(refused.to_string().contains("OCI whiteouts"), "{refused}");
        assert!(tree.insert("etc/passwd", whiteout()).is_err());
        tree.insert("etc/.wh.passwd", whiteout()).unwrap();
    }
}
