//! Instances: an in-memory image [`Tree`] written onto a real host folder, for the sandbox
//! to run in (qualification tests, the configure mode's maintainer scripts).
//!
//! This is the one place the tool writes an image onto the host, so it keeps to the tree's
//! guarantees on the way down: every entry is created relative to a descriptor of its parent
//! folder opened `O_DIRECTORY|O_NOFOLLOW` (walking from the instance root, never through a
//! symlink), with `O_EXCL`/`mkdirat`/`symlinkat`/`linkat`, so nothing is ever written
//! through a symlink or outside the instance, even if the tree held a hostile entry. The
//! folder must be empty.
//!
//! Metadata is exact, in the order the kernel requires: content first (a write clears
//! `security.capability`), then the numeric owner (`chown` clears setuid, setgid and
//! capabilities), then the mode (setuid, setgid and sticky included), then the xattrs, then
//! the mtime. Folders get their mtime last, deepest first, so creating their children does
//! not move it. A hard-link group is one inode: its first name (in path order) is written,
//! the others are `linkat`s to it. Needs root for the owners and `security.*` xattrs.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use crate::tree::{Content, Kind, Node, Tree};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("the instance folder `{}` must exist and be empty", dir.display())]
    NotEmpty { dir: PathBuf },
    #[error("cannot {action} `/{path}` in the instance `{}`", dir.display())]
    Io { dir: PathBuf, path: String, action: &'static str, source: std::io::Error },
    #[error("cannot read the content of `/{path}`")]
    Content { path: String, source: std::io::Error },
    #[error("`/{path}` is not a valid entry name")]
    Name { path: String },
}

/// What [`materialize`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub directories: usize,
    pub files: usize,
    pub symlinks: usize,
    pub hard_links: usize,
    pub bytes: u64,
    /// Each folder's inode (device, number), by path: a folder found at a path later with
    /// another inode was moved or made there, whatever its contents' own times say.
    pub folders: HashMap<String, (u64, u64)>,
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_name(path: &str, name: &str) -> Result<CString, InstanceError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(InstanceError::Name { path: path.to_owned() });
    }
    CString::new(name).map_err(|_| InstanceError::Name { path: path.to_owned() })
}

/// An I/O error about `path` (allocates only when there is one).
fn io<'p>(dir: &'p Path, path: &'p str, action: &'static str) -> impl FnOnce(std::io::Error) -> InstanceError + 'p {
    move |source| InstanceError::Io { dir: dir.to_owned(), path: path.to_owned(), action, source }
}

fn open_dir_at(parent: RawFd, name: &CString) -> std::io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid C string; the result is a fresh descriptor we own.
    let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
    check(fd)?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes `tree` into the empty host folder `dir` (rules in the module docs).
pub fn materialize(tree: &Tree, dir: &Path) -> Result<Written, InstanceError> {
    let mut w = Writer::open(dir)?;
    let mut directories = Vec::new();
    for (path, node) in tree.iter() {
        match &node.kind {
            Kind::Directory => {
                w.directory(path, node)?;
                directories.push((path.as_str(), node.mtime));
            }
            Kind::File { size, content, link_group } => w.file(path, node, *size, content, *link_group)?,
            Kind::Symlink { target } => w.symlink(path, node, target)?,
            // A merged image holds no whiteouts; a layer's own would mean nothing here.
            Kind::Whiteout => {}
        }
    }
    // Deepest first: reverse path order puts every child before its parent.
    for (path, mtime) in directories.into_iter().rev() {
        let (parent, name) = w.parent_of(path)?;
        let name = match name {
            Some(name) => name,
            None => c".".to_owned(),
        };
        w.times(path, parent, &name, mtime)?;
    }
    Ok(w.written)
}

struct Writer<'a> {
    dir: &'a Path,
    root: OwnedFd,
    /// The last parent folder opened, by path: consecutive entries mostly share it.
    cached: Option<(String, OwnedFd)>,
    /// The first name of each hard-link group written.
    groups: BTreeMap<u64, String>,
    written: Written,
}

impl<'a> Writer<'a> {
    fn open(dir: &'a Path) -> Result<Self, InstanceError> {
        let not_empty = || InstanceError::NotEmpty { dir: dir.to_owned() };
        let mut entries = fs_err::read_dir(dir).map_err(|_| not_empty())?;
        if entries.next().is_some() {
            return Err(not_empty());
        }
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| not_empty())?;
        let root = open_dir_at(libc::AT_FDCWD, &c).map_err(|_| not_empty())?;
        Ok(Writer { dir, root, cached: None, groups: BTreeMap::new(), written: Written::default() })
    }

    /// The descriptor of `path`'s parent folder and `path`'s last component (`None` for the
    /// root itself, whose "parent" is the root descriptor).
    fn parent_of(&mut self, path: &str) -> Result<(RawFd, Option<CString>), InstanceError> {
        if path.is_empty() {
            return Ok((self.root.as_raw_fd(), None));
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let name = c_name(path, name)?;
        if parent.is_empty() {
            return Ok((self.root.as_raw_fd(), Some(name)));
        }
        if self.cached.as_ref().is_none_or(|(p, _)| p != parent) {
            let mut fd: Option<OwnedFd> = None;
            for component in parent.split('/') {
                let c = c_name(path, component)?;
                let at = fd.as_ref().map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
                fd = Some(open_dir_at(at, &c).map_err(io(self.dir, parent, "open the folder"))?);
            }
            self.cached = Some((parent.to_owned(), fd.expect("a non-empty parent has a component")));
        }
        let fd = self.cached.as_ref().map(|(_, fd)| fd.as_raw_fd()).expect("just cached");
        Ok((fd, Some(name)))
    }

    fn directory(&mut self, path: &str, node: &Node) -> Result<(), InstanceError> {
        let (parent, name) = self.parent_of(path)?;
        let fd = match name {
            None => self.root.try_clone().map_err(io(self.dir, path, "open the folder"))?,
            Some(name) => {
                // SAFETY: `name` is a valid C string.
                check(unsafe { libc::mkdirat(parent, name.as_ptr(), 0o700) }).map_err(io(
                    self.dir,
                    path,
                    "create the folder",
                ))?;
                open_dir_at(parent, &name).map_err(io(self.dir, path, "open the folder"))?
            }
        };
        self.metadata(path, fd.as_raw_fd(), node)?;
        let meta = std::fs::File::from(fd).metadata().map_err(io(self.dir, path, "read the folder's inode"))?;
        self.written.folders.insert(path.to_owned(), (meta.dev(), meta.ino()));
        self.written.directories += 1;
        Ok(())
    }

    fn file(
        &mut self,
        path: &str,
        node: &Node,
        size: u64,
        content: &Content,
        link_group: Option<u64>,
    ) -> Result<(), InstanceError> {
        let (parent, name) = self.parent_of(path)?;
        let name = name.ok_or_else(|| InstanceError::Name { path: path.to_owned() })?;
        if let Some(group) = link_group {
            if let Some(first) = self.groups.get(&group).cloned() {
                let (first_parent, first_name) = self.parent_of(&first)?;
                let first_name = first_name.expect("a file is never the root");
                // Keep the first name's folder open while `path`'s folder replaces it in the cache.
                // SAFETY: duplicates a live descriptor into a fresh one we own.
                let dup = unsafe { libc::fcntl(first_parent, libc::F_DUPFD_CLOEXEC, 0) };
                check(dup).map_err(io(self.dir, &first, "open the folder"))?;
                // SAFETY: as above.
                let first_parent = unsafe { OwnedFd::from_raw_fd(dup) };
                let (parent, name) = self.parent_of(path)?;
                let name = name.expect("a file is never the root");
                // SAFETY: valid descriptors and C strings; flags 0: never follows a symlink.
                check(unsafe { libc::linkat(first_parent.as_raw_fd(), first_name.as_ptr(), parent, name.as_ptr(), 0) })
                    .map_err(io(self.dir, path, "hard-link"))?;
                self.written.hard_links += 1;
                return Ok(());
            }
            self.groups.insert(group, path.to_owned());
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `name` is a valid C string; the result is a fresh descriptor we own.
        let fd = unsafe { libc::openat(parent, name.as_ptr(), flags, 0o600 as libc::c_uint) };
        check(fd).map_err(io(self.dir, path, "create the file"))?;
        // SAFETY: as above.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        copy_content(content, size, &mut file)
            .map_err(|source| InstanceError::Content { path: path.to_owned(), source })?;
        self.metadata(path, file.as_raw_fd(), node)?;
        let times = [timespec(node.mtime), timespec(node.mtime)];
        // SAFETY: a live descriptor and a two-element array.
        check(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) }).map_err(io(
            self.dir,
            path,
            "set the mtime of",
        ))?;
        self.written.files += 1;
        self.written.bytes += size;
        Ok(())
    }

    fn symlink(&mut self, path: &str, node: &Node, target: &str) -> Result<(), InstanceError> {
        let (parent, name) = self.parent_of(path)?;
        let name = name.ok_or_else(|| InstanceError::Name { path: path.to_owned() })?;
        let target = CString::new(target).map_err(|_| InstanceError::Name { path: path.to_owned() })?;
        // SAFETY: valid C strings and descriptor.
        check(unsafe { libc::symlinkat(target.as_ptr(), parent, name.as_ptr()) }).map_err(io(
            self.dir,
            path,
            "create the symlink",
        ))?;
        // SAFETY: as above; AT_SYMLINK_NOFOLLOW acts on the link itself.
        check(unsafe { libc::fchownat(parent, name.as_ptr(), node.uid, node.gid, libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(io(self.dir, path, "set the owner of"))?;
        if !node.xattrs.is_empty() {
            // There is no `fsetxattr` for a symlink: name it through the parent's descriptor.
            let at = CString::new(format!("/proc/self/fd/{parent}/{}", name.to_string_lossy()))
                .map_err(|_| InstanceError::Name { path: path.to_owned() })?;
            for (key, value) in &node.xattrs {
                let key = CString::new(key.as_str()).map_err(|_| InstanceError::Name { path: path.to_owned() })?;
                // SAFETY: valid C strings and a live buffer.
                check(unsafe { libc::lsetxattr(at.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
                    .map_err(io(self.dir, path, "set an xattr of"))?;
            }
        }
        self.times(path, parent, &name, node.mtime)?;
        self.written.symlinks += 1;
        Ok(())
    }

    /// Owner, then mode, then xattrs, on an open file or folder.
    fn metadata(&self, path: &str, fd: RawFd, node: &Node) -> Result<(), InstanceError> {
        // SAFETY: plain system calls on a live descriptor.
        check(unsafe { libc::fchown(fd, node.uid, node.gid) }).map_err(io(self.dir, path, "set the owner of"))?;
        check(unsafe { libc::fchmod(fd, node.mode & 0o7777) }).map_err(io(self.dir, path, "set the mode of"))?;
        for (key, value) in &node.xattrs {
            let key = CString::new(key.as_str()).map_err(|_| InstanceError::Name { path: path.to_owned() })?;
            // SAFETY: valid C string and a live buffer.
            check(unsafe { libc::fsetxattr(fd, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map_err(io(
                self.dir,
                path,
                "set an xattr of",
            ))?;
        }
        Ok(())
    }

    fn times(&self, path: &str, parent: RawFd, name: &CString, mtime: u64) -> Result<(), InstanceError> {
        let times = [timespec(mtime), timespec(mtime)];
        // SAFETY: valid descriptor, C string and array.
        check(unsafe { libc::utimensat(parent, name.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }).map_err(io(
            self.dir,
            path,
            "set the mtime of",
        ))
    }
}

/// atime = mtime: the tree has no atime, and the entry's own mtime is the only fixed choice.
fn timespec(seconds: u64) -> libc::timespec {
    libc::timespec { tv_sec: seconds.min(i64::MAX as u64) as libc::time_t, tv_nsec: 0 }
}

fn copy_content(content: &Content, size: u64, out: &mut std::fs::File) -> std::io::Result<()> {
    match content {
        Content::Bytes(bytes) => out.write_all(bytes),
        Content::Host(path) => {
            let mut source = fs_err::File::open(path.as_path())?;
            let copied = std::io::copy(&mut std::io::Read::take(&mut source, size), out)?;
            if copied != size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("`{}` is shorter than the {size} bytes recorded", path.display()),
                ));
            }
            Ok(())
        }
        Content::Range { file, offset } => {
            // In the kernel, page cache to page cache: no copy through our memory (most of an
            // image is here, and configure mode writes it twice with the guard).
            let mut done = 0u64;
            while done < size {
                let mut at = (offset + done) as libc::off_t;
                let want = (size - done).min(1 << 30) as usize;
                // SAFETY: two live descriptors and an offset we own; the kernel reads from
                // `file` at `at` without moving its position, and writes at `out`'s.
                let sent = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut at, want) };
                match sent {
                    0 => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("the source ends {} bytes before the {size} recorded", size - done),
                        ))
                    }
                    1.. => done += sent as u64,
                    _ => match std::io::Error::last_os_error() {
                        e if e.kind() == std::io::ErrorKind::Interrupted => {}
                        // Files that cannot be spliced (none the store or `/dev/shm` hold): copy.
                        e if done == 0 && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => break,
                        e => return Err(e),
                    },
                }
            }
            let mut buf = vec![0u8; ((size - done) as usize).min(1 << 20)];
            while done < size {
                let want = ((size - done) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..want], offset + done)?;
                out.write_all(&buf[..want])?;
                done += want as u64;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    fn node(kind: Kind, mode: u32, uid: u32, mtime: u64) -> Node {
        Node { kind, mode, uid, gid: uid, mtime, xattrs: Default::default(), implicit: false }
    }

    fn bytes(b: &[u8], group: Option<u64>) -> Kind {
        Kind::File { size: b.len() as u64, content: Content::Bytes(Arc::from(b)), link_group: group }
    }

    #[test]
    fn refuses_a_folder_that_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("x"), b"").unwrap();
        let err = materialize(&Tree::new(0), dir.path()).unwrap_err();
        assert!(matches!(err, InstanceError::NotEmpty { .. }), "{err}");
        assert!(materialize(&Tree::new(0), &dir.path().join("missing")).is_err());
    }

    #[test]
    fn writes_modes_owners_links_and_mtimes() {
        // materialize sets owners, which needs root.
        if !crate::testing::root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(100);
        tree.insert("usr/bin/su", node(bytes(b"su", Some(7)), 0o4755, 0, 200)).unwrap();
        tree.insert("usr/bin/su-again", node(bytes(b"su", Some(7)), 0o4755, 0, 200)).unwrap();
        tree.insert("tmp", node(Kind::Directory, 0o1777, 0, 300)).unwrap();
        tree.insert("home/u", node(Kind::Directory, 0o2750, 1000, 400)).unwrap();
        tree.insert("home/u/f", node(bytes(b"data", None), 0o640, 1000, 500)).unwrap();
        tree.insert("bin", node(Kind::Symlink { target: "usr/bin".into() }, 0o777, 0, 600)).unwrap();
        let written = materialize(&tree, dir.path()).unwrap();
        assert_eq!((written.files, written.hard_links, written.symlinks), (2, 1, 1));

        let meta = |p: &str| fs_err::symlink_metadata(dir.path().join(p)).unwrap();
        assert_eq!(meta("usr/bin/su").permissions().mode() & 0o7777, 0o4755);
        assert_eq!(meta("usr/bin/su").ino(), meta("usr/bin/su-again").ino());
        assert_eq!(meta("usr/bin/su").nlink(), 2);
        assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
        assert_eq!(meta("tmp").mtime(), 300);
        assert_eq!((meta("home/u").uid(), meta("home/u").mode() & 0o7777), (1000, 0o2750));
        assert_eq!(meta("home/u").mtime(), 400, "a folder's mtime survives its children");
        assert_eq!(meta("home").mtime(), 100);
        assert_eq!(fs_err::read(dir.path().join("home/u/f")).unwrap(), b"data");
        assert_eq!(fs_err::read_link(dir.path().join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(meta("bin").mtime(), 600);
        assert_eq!(meta("").mtime(), 100);
    }

    #[test]
    fn never_writes_through_a_symlink() {
        // materialize sets owners, which needs root.
        if !crate::testing::root() {
            return;
        }
        // A tree made of raw entries can hold what `Tree::insert` refuses: `link/x` under a
        // symlink `link`. The walk opens parents with O_NOFOLLOW, so it stops there.
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = node(Kind::Symlink { target: outside.path().to_string_lossy().into_owned() }, 0o777, 0, 0);
        let tree = Tree::from_entries([
            (String::new(), node(Kind::Directory, 0o755, 0, 0)),
            ("link".to_owned(), link),
            ("link/x".to_owned(), node(bytes(b"x", None), 0o644, 0, 0)),
        ]);
        let err = materialize(&tree, dir.path()).unwrap_err();
        assert!(matches!(err, InstanceError::Io { action: "open the folder", .. }), "{err}");
        assert!(fs_err::read_dir(outside.path()).unwrap().next().is_none());
    }
}
