//! Local inputs: files and folders on the build host.
//!
//! A local tree is scanned without following symlinks, in bytewise name order, and
//! summarised by a **tree digest** over each entry's kind, relative path, size, executable
//! bit, content sha256 and link target — exactly what a layer takes from it, and nothing the
//! host varies (mtimes, owners, umask-dependent permission bits, inode order).
//!
//! Hashing a gigabyte on every build would make a no-op rebuild slow, so the store keeps a
//! fingerprint per tree, as git's index does: for each file its size, mtime, ctime, inode and
//! mode, and the sha256 they vouch for. A file whose stat matches is not read again. A file
//! modified within the clock's granularity of the fingerprint being written could keep its
//! old stat, so entries that recent are not recorded (git's "racy" rule).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// Entries modified this recently (seconds) are not fingerprinted.
const RACY_SECONDS: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("`{}` does not exist or cannot be read", path.display())]
    Missing { path: PathBuf, source: std::io::Error },
    #[error("failed to read `{}`", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{}` is a {kind}: only files, folders and symlinks can go into an image", path.display())]
    Special { path: PathBuf, kind: &'static str },
    #[error("`{}`: file names must be UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    /// A path deeper or longer than an image may hold (the caps of [`crate::tree`]).
    #[error("`{}` cannot go into an image", path.display())]
    Limit { path: PathBuf, source: Box<crate::tree::TreeError> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalKind {
    Directory,
    File { size: u64, executable: bool },
    Symlink { target: String },
}

/// One entry of a scanned tree.
#[derive(Debug, Clone)]
pub struct LocalEntry {
    /// Relative to the tree's root, `/`-separated; empty for the root itself.
    pub rel: String,
    pub kind: LocalKind,
    stat: Stat,
}

/// What a file's `stat` says that changes whenever its bytes may have: the key of a
/// fingerprint entry (here, and for the outputs of a candidate folder in [`crate::dist`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    mode: u32,
}

impl Stat {
    pub(crate) fn of(m: &std::fs::Metadata) -> Self {
        Stat {
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
        }
    }

    /// Whether the file changed so recently (`now`, unix seconds) that a write within the
    /// clock's granularity could still follow unseen: such a stat vouches for nothing yet.
    pub(crate) fn racy(&self, now: i64) -> bool {
        let recent = |ns: i128| ns / 1_000_000_000 >= i128::from(now - RACY_SECONDS);
        recent(self.mtime_ns) || recent(self.ctime_ns)
    }

    /// How long before a time `T` a file's ctime must be for a write after `T` to be sure to
    /// give it another ctime, on a file system with sub-second timestamps: the kernel stamps
    /// writes from a clock that advances in ticks of up to 10 ms (before Linux 6.13's
    /// multigrain timestamps), and exFAT keeps 10 ms.
    pub(crate) const SETTLE_NS: i128 = 20_000_000;

    /// Whether a write to the file after `now_ns` (unix nanoseconds, taken before this stat)
    /// is sure to change its ctime, so that this stat vouches for the bytes it was seen with.
    /// A ctime without a sub-second part is taken to come from a file system with whole (or
    /// two) seconds, which needs the racy rule's seconds.
    pub(crate) fn settled(&self, now_ns: i128) -> bool {
        if self.ctime_ns % 1_000_000_000 == 0 {
            return !self.racy((now_ns / 1_000_000_000) as i64);
        }
        self.ctime_ns < now_ns - Self::SETTLE_NS
    }

    /// How long to wait from `now_ns` until [`Stat::settled`] holds, if that is a wait of no
    /// more than [`Stat::SETTLE_NS`] (a file system with sub-second timestamps).
    pub(crate) fn settles_in(&self, now_ns: i128) -> Option<std::time::Duration> {
        let wait = self.ctime_ns + Self::SETTLE_NS - now_ns;
        let fine = self.ctime_ns % 1_000_000_000 != 0;
        (fine && wait <= Self::SETTLE_NS).then(|| std::time::Duration::from_nanos(wait.max(0) as u64))
    }
}

/// The current unix time in seconds, for [`Stat::racy`].
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The current unix time in nanoseconds, for [`Stat::settled`].
pub(crate) fn unix_now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// A scanned local input: a single file or a folder tree.
#[derive(Debug, Clone)]
pub struct LocalTree {
    pub root: PathBuf,
    pub entries: Vec<LocalEntry>,
}

impl LocalTree {
    /// Scans `root` (a file or a folder). Symlinks are kept as symlinks, never followed.
    pub fn scan(root: &Path) -> Result<Self, LocalError> {
        let meta =
            fs_err::symlink_metadata(root).map_err(|source| LocalError::Missing { path: root.to_owned(), source })?;
        let mut entries = vec![entry(root, String::new(), &meta)?];
        if meta.is_dir() {
            entries.extend(scan_parallel(root)?);
            // A full bytewise path sort is what the digest is over.
            entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        }
        Ok(LocalTree { root: root.to_owned(), entries })
    }

    /// Whether the tree on disk is still the one scanned: same paths, kinds and stat
    /// (size, mtime, ctime, inode). A layer is built from the files as they are when it is
    /// written; checking afterwards that none changed since they were digested (ctime moves
    /// on every write) is what ties the layer's bytes to the digest in the lockfile, at the
    /// cost of a walk instead of a second read of every byte.
    pub fn unchanged(&self) -> Result<bool, LocalError> {
        let now = Self::scan(&self.root)?;
        Ok(now.entries.len() == self.entries.len()
            && now
                .entries
                .iter()
                .zip(&self.entries)
                .all(|(a, b)| a.rel == b.rel && a.kind == b.kind && a.stat == b.stat))
    }

    /// The host path of an entry.
    pub fn host_path(&self, entry: &LocalEntry) -> PathBuf {
        if entry.rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&entry.rel)
        }
    }

    /// Total size of the regular files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| if let LocalKind::File { size, .. } = e.kind { size } else { 0 }).sum()
    }

    pub fn file_count(&self) -> u64 {
        self.entries.iter().filter(|e| matches!(e.kind, LocalKind::File { .. })).count() as u64
    }

    /// The tree digest, reading only the files the store's fingerprint cannot vouch for
    /// (all of them without a store), hashed on every core. Updates the fingerprint.
    pub fn digest(&self, store: Option<&Store>) -> Result<(Digest, Vec<Option<Digest>>), LocalError> {
        let key = fingerprint_key(&self.root);
        let cached = store.map(|s| Fingerprint::load(s, &key)).unwrap_or_default();

        let mut digests: Vec<Option<Digest>> = vec![None; self.entries.len()];
        let mut todo = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if let LocalKind::File { .. } = e.kind {
                match cached.get(&e.rel) {
                    Some((stat, digest)) if *stat == e.stat => digests[i] = Some(*digest),
                    _ => todo.push(i),
                }
            }
        }
        if !todo.is_empty() {
            self.hash_files(&todo, &mut digests)?;
        }

        let mut h = Hasher::new();
        h.field("candidate-tree-v1");
        for (e, digest) in self.entries.iter().zip(&digests) {
            h.field(&e.rel);
            match &e.kind {
                LocalKind::Directory => h.field("d"),
                LocalKind::File { size, executable } => {
                    h.field("f").field(size.to_le_bytes()).field([u8::from(*executable)]);
                    h.field(digest.expect("every file was hashed").as_bytes())
                }
                LocalKind::Symlink { target } => h.field("l").field(target),
            };
        }
        let tree_digest = h.finish();

        if let Some(store) = store {
            if !todo.is_empty() {
                let now = unix_now();
                let entries = self
                    .entries
                    .iter()
                    .zip(&digests)
                    .filter_map(|(e, d)| Some((e.rel.clone(), e.stat, (*d)?)))
                    .filter(|(_, stat, _)| !stat.racy(now))
                    .collect();
                Fingerprint { entries }.save(store, &key);
            }
        }
        Ok((tree_digest, digests))
    }

    fn hash_files(&self, todo: &[usize], digests: &mut [Option<Digest>]) -> Result<(), LocalError> {
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(todo.len()));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(todo.len());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let path = self.host_path(&self.entries[i]);
                    let result = fs_err::File::open(&path)
                        .and_then(Digest::of_reader)
                        .map_err(|source| LocalError::Io { path: path.clone(), source });
                    let stop = result.is_err();
                    results.lock().expect("no hashing thread panics").push((i, result));
                    if stop {
                        next.store(todo.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let mut results = results.into_inner().expect("no hashing thread panics");
        // Report the first failure in path order, whichever thread met it first.
        results.sort_by_key(|(i, _)| *i);
        for (i, result) in results {
            let (digest, len) = result?;
            if let LocalKind::File { size, .. } = self.entries[i].kind {
                if len != size {
                    let path = self.host_path(&self.entries[i]);
                    let source = std::io::Error::other("it changed size while being hashed");
                    return Err(LocalError::Io { path, source });
                }
            }
            digests[i] = Some(digest);
        }
        Ok(())
    }
}

/// Walks the folders below `root` on every core: a no-op rebuild of a 50k-file input is
/// dominated by one `lstat` per file, and those are independent. Each folder is read and its
/// entries stat'ed relative to it (`DirEntry::metadata` is `fstatat` on the folder's
/// descriptor, cheaper than resolving a full path each time). The order found is not the
/// order used: the caller sorts.
fn scan_parallel(root: &Path) -> Result<Vec<LocalEntry>, LocalError> {
    struct Queue {
        dirs: Vec<String>,
        busy: usize,
        failed: Option<LocalError>,
    }
    let queue = Mutex::new(Queue { dirs: vec![String::new()], busy: 0, failed: None });
    let wake = std::sync::Condvar::new();
    let found = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let read_dir = |rel: &str, out: &mut Vec<LocalEntry>, subdirs: &mut Vec<String>| -> Result<(), LocalError> {
        let dir = if rel.is_empty() { root.to_owned() } else { root.join(rel) };
        let io = |path: &Path, source| LocalError::Io { path: path.to_owned(), source };
        for item in fs_err::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let item = item.map_err(|e| io(&dir, e))?;
            let name = item.file_name();
            let path = item.path();
            let name = name.to_str().ok_or_else(|| LocalError::NotUtf8 { path: path.clone() })?;
            let child = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            // Checked before going deeper: a host tree nested past the caps stops here.
            crate::tree::check_path_limits(&child)
                .map_err(|e| LocalError::Limit { path: path.clone(), source: Box::new(e) })?;
            let meta = item.metadata().map_err(|e| io(&path, e))?;
            if meta.is_dir() {
                subdirs.push(child.clone());
            }
            out.push(entry(&path, child, &meta)?);
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let rel = {
                        let mut q = queue.lock().expect("no scanning thread panics");
                        loop {
                            if q.failed.is_some() || (q.dirs.is_empty() && q.busy == 0) {
                                wake.notify_all();
                                break None;
                            }
                            if let Some(rel) = q.dirs.pop() {
                                q.busy += 1;
                                break Some(rel);
                            }
                            q = wake.wait(q).expect("no scanning thread panics");
                        }
                    };
                    let Some(rel) = rel else { break };
                    let mut subdirs = Vec::new();
                    let result = read_dir(&rel, &mut mine, &mut subdirs);
                    let mut q = queue.lock().expect("no scanning thread panics");
                    q.busy -= 1;
                    match result {
                        Ok(()) => q.dirs.extend(subdirs),
                        Err(e) => {
                            q.failed.get_or_insert(e);
                        }
                    }
                    wake.notify_all();
                }
                found.lock().expect("no scanning thread panics").append(&mut mine);
            });
        }
    });
    let queue = queue.into_inner().expect("no scanning thread panics");
    match queue.failed {
        Some(e) => Err(e),
        None => Ok(found.into_inner().expect("no scanning thread panics")),
    }
}

/// The stat fingerprint of a tree, in a small binary form: it is read on every build, and
/// for 50k files JSON costs more to parse than the walk it saves. Kept in the store's stat
/// cache under a key naming what it fingerprints (a local input's path; a candidate folder's).
pub(crate) struct Fingerprint {
    /// Relative path, the stat it had when its sha256 was known, that sha256.
    pub(crate) entries: Vec<(String, Stat, Digest)>,
}

impl Fingerprint {
    const MAGIC: &'static [u8] = b"candidate-fingerprint-1\n";

    /// The fingerprint kept under `key`, by relative path; empty if there is none or it does
    /// not decode (a cache: a bad one is a miss).
    pub(crate) fn load(store: &Store, key: &str) -> HashMap<String, (Stat, Digest)> {
        fs_err::read(store.stat_path(&Digest::of(key.as_bytes())))
            .ok()
            .and_then(|bytes| Fingerprint::decode(&bytes))
            .map(|f| f.entries.into_iter().map(|(rel, stat, digest)| (rel, (stat, digest))).collect())
            .unwrap_or_default()
    }

    /// Keeps this fingerprint under `key`. It is only a cache: failing to save it costs time,
    /// not correctness.
    pub(crate) fn save(&self, store: &Store, key: &str) {
        let _ = store.write_atomic(&store.stat_path(&Digest::of(key.as_bytes())), &self.encode());
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Self::MAGIC.to_vec();
        for (rel, st, digest) in &self.entries {
            out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
            out.extend_from_slice(rel.as_bytes());
            out.extend_from_slice(&st.size.to_le_bytes());
            out.extend_from_slice(&st.mtime_ns.to_le_bytes());
            out.extend_from_slice(&st.ctime_ns.to_le_bytes());
            out.extend_from_slice(&st.ino.to_le_bytes());
            out.extend_from_slice(&st.dev.to_le_bytes());
            out.extend_from_slice(&st.mode.to_le_bytes());
            out.extend_from_slice(digest.as_bytes());
        }
        out
    }

    /// `None` for anything unreadable: a fingerprint is a cache, and a bad one is a miss.
    fn decode(bytes: &[u8]) -> Option<Self> {
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head)
        }
        fn array<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
            take(rest, N)?.try_into().ok()
        }
        let mut rest = bytes.strip_prefix(Self::MAGIC)?;
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_le_bytes(array(&mut rest)?) as usize;
            let rel = std::str::from_utf8(take(&mut rest, len)?).ok()?.to_owned();
            let stat = Stat {
                size: u64::from_le_bytes(array(&mut rest)?),
                mtime_ns: i128::from_le_bytes(array(&mut rest)?),
                ctime_ns: i128::from_le_bytes(array(&mut rest)?),
                ino: u64::from_le_bytes(array(&mut rest)?),
                dev: u64::from_le_bytes(array(&mut rest)?),
                mode: u32::from_le_bytes(array(&mut rest)?),
            };
            let digest = Digest::from_bytes(array(&mut rest)?);
            entries.push((rel, stat, digest));
        }
        Some(Fingerprint { entries })
    }
}

fn fingerprint_key(root: &Path) -> String {
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    format!("candidate-fingerprint-v1\0{}", absolute.display())
}

/// What a host entry that is neither a file, a directory nor a symlink is, for errors.
pub fn special_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "device node"
    }
}

fn entry(path: &Path, rel: String, meta: &std::fs::Metadata) -> Result<LocalEntry, LocalError> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        LocalKind::Directory
    } else if ft.is_file() {
        LocalKind::File { size: meta.len(), executable: meta.mode() & 0o111 != 0 }
    } else if ft.is_symlink() {
        let target = fs_err::read_link(path).map_err(|source| LocalError::Io { path: path.to_owned(), source })?;
        let target =
            target.into_os_string().into_string().map_err(|_| LocalError::NotUtf8 { path: path.to_owned() })?;
        LocalKind::Symlink { target }
    } else {
        return Err(LocalError::Special { path: path.to_owned(), kind: special_kind(ft) });
    };
    Ok(LocalEntry { rel, kind, stat: Stat::of(meta) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn make(dir: &Path) {
        fs_err::create_dir_all(dir.join("a/b")).unwrap();
        fs_err::write(dir.join("a/b/f"), b"one").unwrap();
        fs_err::write(dir.join("x"), b"two").unwrap();
        std::os::unix::fs::symlink("a/b/f", dir.join("link")).unwrap();
    }

    /// A stamp vouches for a file only once a later write must give it another ctime: 20 ms
    /// on a file system with sub-second timestamps (a wait worth making), the racy rule's
    /// seconds on one with whole seconds (not worth waiting for).
    #[test]
    fn a_stat_settles_once_a_later_write_must_change_its_ctime() {
        let second = 1_000_000_000;
        let at = |ctime_ns: i128| Stat { size: 1, mtime_ns: ctime_ns, ctime_ns, ino: 1, dev: 1, mode: 0o100444 };
        let now = 1_700_000_000 * second + 500_000_000;
        let fine = at(now - 5_000_000);
        assert!(!fine.settled(now), "written 5 ms ago: a write in the same clock tick could keep its ctime");
        assert_eq!(fine.settles_in(now), Some(std::time::Duration::from_millis(15)));
        assert!(fine.settled(now + 16_000_000));
        assert_eq!(at(now - second).settles_in(now), Some(std::time::Duration::ZERO));
        let whole = at(now - now % second - second);
        assert!(!whole.settled(now), "whole seconds: a write in this second could keep its ctime");
        assert_eq!(whole.settles_in(now), None, "seconds are not worth waiting for");
        assert!(whole.settled(now + 3 * second));
    }

    #[test]
    fn the_digest_ignores_what_the_host_varies() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        make(t1.path());
        make(t2.path());
        fs_err::set_permissions(t2.path().join("x"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let d1 = LocalTree::scan(t1.path()).unwrap().digest(None).unwrap().0;
        let d2 = LocalTree::scan(t2.path()).unwrap().digest(None).unwrap().0;
        assert_eq!(d1, d2);
        fs_err::set_permissions(t2.path().join("x"), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(d1, LocalTree::scan(t2.path()).unwrap().digest(None).unwrap().0, "the executable bit counts");
    }

    #[test]
    fn the_fingerprint_spares_reads_but_sees_changes() {
        let t = tempfile::tempdir().unwrap();
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        make(t.path());
        let tree = LocalTree::scan(t.path()).unwrap();
        let first = tree.digest(Some(&store)).unwrap().0;
        assert_eq!(first, tree.digest(Some(&store)).unwrap().0);
        fs_err::write(t.path().join("x"), b"three").unwrap();
        let changed = LocalTree::scan(t.path()).unwrap().digest(Some(&store)).unwrap().0;
        assert_ne!(first, changed);
    }

    #[test]
    fn special_files_are_named() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = LocalTree::scan(t.path()).unwrap_err().to_string();
        assert!(err.contains("sock") && err.contains("socket"), "{err}");
    }
}
