//! The content-addressed store.
//!
//! Layout (the `v1` folder is the layout's version; a future layout lives beside it):
//!
//! ```text
//! STORE/v1/blobs/sha256/<hex>   immutable objects: fetched inputs, layers, outputs
//! STORE/v1/actions/<hex>        action cache: hash of a step's inputs -> its result (JSON)
//! STORE/v1/layers/<hex>.json    what a layer's tar does not say (its implicit folders)
//! STORE/v1/stat/<hex>           fingerprints of local input trees (size, mtime, inode -> sha256)
//! STORE/v1/tmp/                 objects being written
//! STORE/v1/candidates/<hex>.json the candidates built with this store (id, name, folder)
//! STORE/v1/channels/<name>/      channel logs (unless `--channels` puts them elsewhere)
//! STORE/v1/seen/<name>           the highest sequence verified per channel (rollback guard)
//! ```
//!
//! Every object is written to `tmp/`, hashed while it is written, fsynced, then renamed to
//! its final name, and the folder is fsynced: a build killed at any moment leaves at worst an
//! orphan in `tmp/`, never a partial object under a name a later build would trust. Objects
//! are named by their content, so two builds writing the same object race harmlessly: both
//! renames put identical bytes in place. Action-cache entries point at blobs and are written
//! the same way, after the blobs they name.

use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, HashingWriter};

const LAYOUT: &str = "v1";

/// Temporary files older than this are left over from killed builds and are removed when a
/// store is opened. Long enough that no live build could still be writing one.
const STALE_TEMP: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed")]
    Io(#[from] io::Error),
    #[error("{what} does not match its pin: expected {expected}{}, got {actual} ({actual_size} bytes)", expected_size.map(|n| format!(" ({n} bytes)")).unwrap_or_default())]
    Mismatch { what: String, expected: Digest, expected_size: Option<u64>, actual: Digest, actual_size: u64 },
    #[error("store blob `{}` is corrupt: it is named {expected} but its {size} bytes hash to {actual}; it was removed, so the next build fetches or builds it again", path.display())]
    Corrupt { path: PathBuf, expected: Digest, actual: Digest, size: u64 },
    #[error("cannot read store blob `{}`", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write `{}` in the store", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// A handle on a store folder. It holds a shared `flock` on `STORE/v1/lock` for as long as
/// any clone of it lives: `store gc` takes the lock exclusively, so it never removes an
/// object a running command has just written and not yet named in an action or a candidate.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock: std::sync::Arc<std::fs::File>,
    /// The blobs this process named with bytes it hashed as it wrote them.
    written: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<Digest>>>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let root = root.join(LAYOUT);
        for dir in ["blobs/sha256", "actions", "stat", "tmp", "candidates", "channels", "seen", "layers", "archives"] {
            fs_err::create_dir_all(root.join(dir))?;
        }
        let lock = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(root.join("lock"))?;
        flock(lock.file(), libc::LOCK_SH)?;
        let store = Store { root, lock: std::sync::Arc::new(lock.into_parts().0), written: Default::default() };
        store.remove_stale_temps();
        Ok(store)
    }

    /// Turns this process's shared lock on the store into an exclusive one: returns once no
    /// other command uses the store, and keeps them out until this process ends. Returns at
    /// once with `false` if `wait` is unset and another command holds it.
    pub fn lock_exclusive(&self, wait: bool) -> Result<bool, StoreError> {
        let flags = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        match flock(&self.lock, flags) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The default store: `$XDG_CACHE_HOME/candidate`, else `~/.cache/candidate`.
    pub fn default_root() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|cache| cache.join("candidate"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a stored blob, if present.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs_err::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }

    /// Opens the blob `digest` for reading, after hashing all of it: an input is proved
    /// against its name on every use, so a blob changed in place (bit rot, a write through a
    /// hard link, a careless operator) is never read as if it were the pinned content. One
    /// sequential read at sha256 speed, which leaves the file in the page cache for the read
    /// that follows. The returned handle is the very inode that was hashed. A blob this
    /// process named itself ([`Store::written_here`]) is not read twice.
    ///
    /// A blob that does not match is removed (a concurrent reader keeps its open handle), so
    /// that the next build fetches or rebuilds it instead of failing on it again.
    pub fn open_verified(&self, digest: &Digest) -> Result<std::fs::File, StoreError> {
        let path = self.blob_path(digest);
        let read_error = |source| StoreError::Read { path: path.clone(), source };
        let file = fs_err::File::open(&path).map_err(read_error)?.into_parts().0;
        if !self.written_here(digest) {
            let (actual, size) = hash_file(&file).map_err(read_error)?;
            self.prove(digest, actual, size, &file)?;
        }
        Ok(file)
    }

    /// Reads all of the blob `digest`, checked against its name like [`Store::open_verified`].
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let read_error = |source| StoreError::Read { path: path.clone(), source };
        let mut file = fs_err::File::open(&path).map_err(read_error)?.into_parts().0;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).map_err(read_error)?;
        if !self.written_here(digest) {
            self.prove(digest, Digest::of(&bytes), bytes.len() as u64, &file)?;
        }
        Ok(bytes)
    }

    /// Checks `clone`, a reflink of `blob` (the blob `digest`, open: the same extents), against
    /// the blob's name, unless this process wrote the blob; a mismatch removes the blob, as
    /// [`Store::open_verified`] does, and names it.
    pub fn verify_clone(&self, digest: &Digest, clone: &std::fs::File, blob: &std::fs::File) -> Result<(), StoreError> {
        if self.written_here(digest) {
            return Ok(());
        }
        let path = self.blob_path(digest);
        let (actual, size) = hash_file(clone).map_err(|source| StoreError::Read { path, source })?;
        self.prove(digest, actual, size, blob)
    }

    /// Whether this process (this handle or a clone) named the blob `digest` with bytes it
    /// hashed as it wrote them: proved already, and not worth reading again in this process
    /// (a fetch followed by its use; a rebuild's seeded inputs). A blob another process
    /// named, or one ours found already there, is not.
    fn written_here(&self, digest: &Digest) -> bool {
        self.written.lock().expect("no thread panics holding the set").contains(digest)
    }

    /// `Ok` if the blob `digest`, open as `hashed`, hashes to `actual`; else removes it (see
    /// [`Store::open_verified`]) and names it.
    fn prove(&self, digest: &Digest, actual: Digest, size: u64, hashed: &std::fs::File) -> Result<(), StoreError> {
        #[cfg(test)]
        BLOBS_PROVED.set(BLOBS_PROVED.get() + 1);
        if actual == *digest {
            return Ok(());
        }
        self.discard_corrupt(digest, hashed);
        Err(StoreError::Corrupt { path: self.blob_path(digest), expected: *digest, actual, size })
    }

    /// Removes the blob `digest` found not to match its name, open as `hashed`: only if its
    /// name still holds that file. Another build may have stored the right bytes there since
    /// (a blob of the wrong size is replaced), and those stay. Failing to remove it (a
    /// read-only store) changes nothing for the caller, who reports the corruption either way.
    pub fn discard_corrupt(&self, digest: &Digest, hashed: &std::fs::File) {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.blob_path(digest);
        let (Ok(hashed), Ok(named)) = (hashed.metadata(), fs_err::symlink_metadata(&path)) else { return };
        if (hashed.dev(), hashed.ino()) == (named.dev(), named.ino()) {
            let _ = fs_err::remove_file(&path);
            let _ = sync_parent(&path);
        }
    }

    /// A new object being written.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let temp = tempfile::Builder::new().prefix(&temp_prefix("blob")).tempfile_in(self.root.join("tmp"))?;
        let file = temp.as_file().try_clone()?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: Background::new(HashingWriter::new(WritebackFile::new(file, temp.path()))),
            temp,
        })
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let mut writer = self.writer()?;
        writer.write_all(bytes)?;
        Ok(writer.commit()?.0)
    }

    /// Reads an action-cache entry.
    pub fn action(&self, key: &Digest) -> Option<Vec<u8>> {
        fs_err::read(self.root.join("actions").join(key.hex())).ok()
    }

    /// Records an action-cache entry, atomically.
    pub fn put_action(&self, key: &Digest, value: &[u8]) -> Result<(), StoreError> {
        self.write_atomic(&self.root.join("actions").join(key.hex()), value)
    }

    /// The path of a local tree's fingerprint file.
    pub fn stat_path(&self, key: &Digest) -> PathBuf {
        self.root.join("stat").join(key.hex())
    }

    /// Writes `value` at `path` (inside the store) through a fsynced temporary file.
    pub fn write_atomic(&self, path: &Path, value: &[u8]) -> Result<(), StoreError> {
        let mut temp = tempfile::Builder::new().prefix(&temp_prefix("meta")).tempfile_in(self.root.join("tmp"))?;
        temp.write_all(value).map_err(|e| disk_full(e, path))?;
        temp.as_file().sync_all().map_err(|e| write_error(path, e))?;
        temp.persist(path).map_err(|e| write_error(path, e.error))?;
        sync_parent(path)?;
        Ok(())
    }

    fn remove_stale_temps(&self) {
        let Ok(entries) = fs_err::read_dir(self.root.join("tmp")) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|mtime| now.duration_since(mtime).unwrap_or_default() > STALE_TEMP);
            if stale {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }
}

/// Writes a new blob: hashes as it writes, and only [`BlobWriter::commit`] gives it a name.
/// Dropped without a commit, the temporary file is removed.
pub struct BlobWriter {
    store: Store,
    inner: Background,
    temp: tempfile::NamedTempFile,
}

impl BlobWriter {
    /// The temporary file's path, readable before the commit (for reading back a layer
    /// while its fsync runs).
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// Makes the blob durable and gives it its name. Returns its digest and size.
    pub fn commit(self) -> Result<(Digest, u64), StoreError> {
        self.commit_checked(None)
    }

    /// Like [`BlobWriter::commit`], but refuses (and discards) content that does not match a
    /// pinned digest and, when known, size. `what` names the input in the error.
    pub fn commit_expecting(
        self,
        what: &str,
        expected: Digest,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        self.commit_checked(Some((what, expected, expected_size)))
    }

    fn commit_checked(self, expected: Option<(&str, Digest, Option<u64>)>) -> Result<(Digest, u64), StoreError> {
        let store = self.store.clone();
        let (staged, digest, len) = self.stage(expected)?;
        if staged.publish()? {
            store.written.lock().expect("no thread panics holding the set").insert(digest);
        }
        Ok((digest, len))
    }

    /// Commits the blob on a background thread — the fsync of a large layer is disk-bound
    /// and can overlap with the CPU-bound compression that reads it next — and returns at
    /// once with its digest, size, and a read handle that stays valid across the rename.
    /// [`PendingBlob::wait`] must be called before anything names the blob (an action-cache
    /// entry) or hands it out.
    pub fn commit_in_background(self) -> Result<PendingBlob, StoreError> {
        let (staged, digest, size) = self.stage(None)?;
        let reader = std::sync::Arc::new(staged.temp.reopen()?);
        let handle = std::thread::spawn(move || staged.publish().map(drop));
        Ok(PendingBlob { digest, size, reader, handle: Some(handle) })
    }

    /// Finishes the blob without making it durable: many small blobs (one per package) are
    /// made durable together by [`Store::publish_batch`], with one `syncfs` instead of one
    /// fsync each. The returned handle reads the bytes before they are named.
    pub fn commit_batched(self) -> Result<BatchedBlob, StoreError> {
        let (staged, digest, size) = self.stage(None)?;
        let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o444);
        staged.file.set_permissions(read_only).map_err(|e| write_error(staged.temp.path(), e))?;
        let reader = std::sync::Arc::new(staged.temp.reopen()?);
        Ok(BatchedBlob { digest, size, reader, staged })
    }

    /// Finishes writing and checks the pin; what is left is making it durable and named.
    fn stage(self, expected: Option<(&str, Digest, Option<u64>)>) -> Result<(Staged, Digest, u64), StoreError> {
        let (digest, len, file) = self.inner.finish()?.finish();
        if let Some((what, expected, expected_size)) = expected {
            if digest != expected || expected_size.is_some_and(|size| size != len) {
                return Err(StoreError::Mismatch {
                    what: what.to_owned(),
                    expected,
                    expected_size,
                    actual: digest,
                    actual_size: len,
                });
            }
        }
        let staged = Staged { file: file.file, temp: self.temp, target: self.store.blob_path(&digest) };
        Ok((staged, digest, len))
    }
}

/// A fully written temporary blob, not yet durable or named.
struct Staged {
    file: std::fs::File,
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl Staged {
    /// Makes the blob durable and named; returns whether the name now holds our bytes (not a
    /// copy another build stored first).
    fn publish(self) -> Result<bool, StoreError> {
        // Objects are read-only: nothing may change an object in place, and a tool that
        // opens one for writing by mistake is refused (unless it runs as root).
        let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o444);
        self.file.set_permissions(read_only).map_err(|e| write_error(self.temp.path(), e))?;
        self.file.sync_all().map_err(|e| write_error(self.temp.path(), e))?;
        // Objects are immutable: if another build already stored this one, keep it and let
        // our temporary file go — unless what is there cannot be it (another size: a
        // truncated blob), which our checked bytes replace in one atomic rename.
        if self.target_holds_same_size()? {
            return Ok(false);
        }
        self.temp.persist(&self.target).map_err(|e| write_error(&self.target, e.error))?;
        sync_parent(&self.target).map_err(|e| write_error(&self.target, e))?;
        Ok(true)
    }

    /// Whether the final name already holds a file of this blob's size.
    fn target_holds_same_size(&self) -> io::Result<bool> {
        let ours = self.file.metadata()?.len();
        Ok(fs_err::metadata(&self.target).is_ok_and(|m| m.is_file() && m.len() == ours))
    }
}

/// A finished blob waiting for [`Store::publish_batch`].
pub struct BatchedBlob {
    pub digest: Digest,
    pub size: u64,
    pub reader: std::sync::Arc<std::fs::File>,
    staged: Staged,
}

impl Store {
    /// Makes every blob of the batch durable — one `syncfs` of the store's filesystem — and
    /// only then names them, so a crash never leaves a named blob with missing bytes.
    pub fn publish_batch(&self, blobs: Vec<BatchedBlob>) -> Result<(), StoreError> {
        if blobs.is_empty() {
            return Ok(());
        }
        let blobs_dir = self.root.join("blobs/sha256");
        let dir = fs_err::File::open(&blobs_dir)?;
        // SAFETY: syncfs only reads the descriptor, which `dir` owns and keeps open.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(write_error(&blobs_dir, io::Error::last_os_error()));
        }
        for blob in blobs {
            if !blob.staged.target_holds_same_size()? {
                let target = &blob.staged.target;
                blob.staged.temp.persist(target).map_err(|e| write_error(target, e.error))?;
            }
        }
        dir.sync_all().map_err(|e| write_error(&blobs_dir, e))?;
        Ok(())
    }
}

/// A blob being made durable on another thread (see [`BlobWriter::commit_in_background`]).
pub struct PendingBlob {
    pub digest: Digest,
    pub size: u64,
    /// Reads the blob's bytes, before and after it is named.
    pub reader: std::sync::Arc<std::fs::File>,
    handle: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
}

impl PendingBlob {
    /// Waits until the blob is durable and named.
    pub fn wait(mut self) -> Result<(), StoreError> {
        let handle = self.handle.take().expect("only `wait` and `drop` take the thread");
        handle.join().expect("the commit thread does not panic")
    }
}

/// Dropped without [`PendingBlob::wait`] (a build refused after this blob was written), the
/// commit is still waited for: the process would otherwise exit under the thread and leave
/// its temporary file in `tmp/`, one orphan per refused build. The blob it names is whole
/// and named by its content, so finishing the commit is as safe as a completed build's.
impl Drop for PendingBlob {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What [`Background`] writes through: the blob's hasher, then its file.
type Sink = HashingWriter<WritebackFile>;

/// Hashes and writes to a file a chunk at a time on a thread of its own, so that hashing
/// and the `write` calls (copying every byte into the page cache) run beside the
/// serialising of the caller instead of after each chunk of it. The bytes reach the
/// file in the order they were given; a blob smaller than a chunk never starts the thread.
/// [`Background::flush`] and [`Background::finish`] return once every byte is written.
struct Background {
    chunk: Vec<u8>,
    state: Option<BackgroundState>,
}

enum BackgroundState {
    Here(Sink),
    Thread {
        full: std::sync::mpsc::SyncSender<Vec<u8>>,
        /// Written chunks come back to be filled again (a fresh megabyte each time would be
        /// page faults for every byte).
        empty: std::sync::mpsc::Receiver<Vec<u8>>,
        handle: std::thread::JoinHandle<io::Result<Sink>>,
    },
}

/// How much the caller fills before the thread writes it.
const BACKGROUND_CHUNK: usize = 1 << 20;

impl Background {
    fn new(file: Sink) -> Self {
        Background { chunk: Vec::with_capacity(BACKGROUND_CHUNK), state: Some(BackgroundState::Here(file)) }
    }

    /// Hands the filled chunk to the thread (starting it if need be).
    fn send(&mut self) -> io::Result<()> {
        let state = self.state.take().ok_or_else(|| io::Error::other("a failed blob writer was written to"))?;
        let (full, empty, handle) = match state {
            BackgroundState::Here(mut file) => {
                let (full, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
                let (back, empty) = std::sync::mpsc::channel();
                let handle = std::thread::spawn(move || {
                    for mut chunk in chunks {
                        file.write_all(&chunk)?;
                        chunk.clear();
                        let _ = back.send(chunk);
                    }
                    Ok(file)
                });
                (full, empty, handle)
            }
            BackgroundState::Thread { full, empty, handle } => (full, empty, handle),
        };
        let next = empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(BACKGROUND_CHUNK));
        if full.send(std::mem::replace(&mut self.chunk, next)).is_err() {
            // The thread stopped on a write error: that error is the one to report.
            drop(full);
            return Err(join(handle).err().unwrap_or_else(|| io::Error::other("the blob writer thread stopped")));
        }
        self.state = Some(BackgroundState::Thread { full, empty, handle });
        Ok(())
    }

    /// Every byte given so far written to the file, which is returned.
    fn finish(mut self) -> io::Result<Sink> {
        let mut file = match self.state.take() {
            Some(BackgroundState::Here(file)) => file,
            Some(BackgroundState::Thread { full, handle, .. }) => {
                drop(full);
                join(handle)?
            }
            None => return Err(io::Error::other("a failed blob writer was finished")),
        };
        file.write_all(&self.chunk)?;
        self.chunk.clear();
        Ok(file)
    }
}

fn join(handle: std::thread::JoinHandle<io::Result<Sink>>) -> io::Result<Sink> {
    handle.join().expect("the blob writer thread does not panic")
}

impl Write for Background {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BACKGROUND_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == BACKGROUND_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Waits until every byte given so far is in the file (the thread, if any, is stopped;
    /// a later write starts another).
    fn flush(&mut self) -> io::Result<()> {
        match self.state.take() {
            Some(BackgroundState::Thread { full, handle, .. }) => {
                drop(full);
                self.state = Some(BackgroundState::Here(join(handle)?));
            }
            other => self.state = other,
        }
        let Some(BackgroundState::Here(file)) = &mut self.state else {
            return Err(io::Error::other("a failed blob writer was flushed"));
        };
        file.write_all(&self.chunk)?;
        self.chunk.clear();
        file.flush()
    }
}

/// Dropped unfinished (a blob abandoned, or an error), the thread is stopped and waited for
/// before the temporary file is removed.
impl Drop for Background {
    fn drop(&mut self) {
        if let Some(BackgroundState::Thread { full, handle, .. }) = self.state.take() {
            drop(full);
            let _ = handle.join();
        }
    }
}

/// A file that asks the kernel to start writing back every few megabytes, so that the fsync
/// at commit finds most of the data already on disk instead of stalling for all of it at
/// once. The data written is unchanged; this only moves I/O earlier, overlapping it with the
/// hashing and compression that produce it.
struct WritebackFile {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
    flushed: u64,
}

const WRITEBACK_CHUNK: u64 = 8 << 20;

impl WritebackFile {
    fn new(file: std::fs::File, path: &Path) -> Self {
        Self { file, path: path.to_owned(), written: 0, flushed: 0 }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf).map_err(|e| disk_full(e, &self.path))?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK_CHUNK {
            // SAFETY: sync_file_range only reads its integer arguments; the descriptor is
            // owned by `self.file` and open. Failure is harmless (fsync still follows), so
            // the result is ignored.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(|e| disk_full(e, &self.path))
    }
}

/// A store whose filesystem is full, named: the bare `ENOSPC` says neither that it is the
/// store's disk (not the input being read) nor where that disk is.
#[derive(Debug, thiserror::Error)]
#[error("the disk is full: no space left on the filesystem of the store at `{}` (writing `{}`)", store.display(), path.display())]
pub struct DiskFull {
    pub store: PathBuf,
    pub path: PathBuf,
    source: io::Error,
}

/// `error`, named as the store's full disk if it is one (`ENOSPC`, `EDQUOT`).
/// A failed write, rename or sync of `path` in the store, named; a full disk says which store.
fn write_error(path: &Path, error: io::Error) -> StoreError {
    StoreError::Write { path: path.to_owned(), source: disk_full(error, path) }
}

fn disk_full(error: io::Error, path: &Path) -> io::Error {
    if !matches!(error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        return error;
    }
    // `STORE/v1/tmp/NAME` or `STORE/v1/blobs/sha256/HEX`: the store is the folder above `v1`.
    let store = path.ancestors().find(|a| a.file_name().is_some_and(|n| n == LAYOUT)).and_then(Path::parent);
    let store = store.unwrap_or(path).to_owned();
    io::Error::new(error.kind(), DiskFull { store, path: path.to_owned(), source: error })
}

/// The name prefix of a temporary file or folder of kind `kind` made by this process,
/// `KIND-PID-`: `store gc` removes one whose process is gone ([`recorded_pid`]).
pub fn temp_prefix(kind: &str) -> String {
    format!("{kind}-{}-", std::process::id())
}

/// The PID a temporary's name records: `KIND-PID-…` ([`temp_prefix`]).
pub fn recorded_pid(name: &str) -> Option<u32> {
    name.split_once('-')?.1.split('-').next()?.parse().ok().filter(|&pid| pid > 0)
}

/// What a publish puts beside a candidate folder `NAME` for a moment, as a name prefix
/// `.NAME.WHAT-PID-`: its staging folder (`new`) and, where the file system has no atomic
/// exchange, the old folder moved aside (`old`). `store gc` removes one whose process is gone
/// ([`sibling_pid`]); a kill between two renames must not leave a candidate's worth of files.
pub fn sibling_prefix(name: &str, what: Sibling) -> String {
    let what = match what {
        Sibling::New => "new",
        Sibling::Old => "old",
    };
    format!(".{name}.{}", temp_prefix(what))
}

/// The kinds of [`sibling_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sibling {
    New,
    Old,
}

/// The PID a publish's sibling of a candidate folder records ([`sibling_prefix`]).
pub fn sibling_pid(name: &str) -> Option<u32> {
    // The folder's own name has dots (`example_1.0_amd64`); the kind is after the last one.
    let (_, tail) = name.strip_prefix('.')?.rsplit_once('.')?;
    if !(tail.starts_with("new-") || tail.starts_with("old-")) {
        return None;
    }
    recorded_pid(tail)
}

/// Whether process `pid` exists (in this PID namespace: a store shared between machines or
/// containers must be collected from one that sees every process using it).
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Holds `flock` `operation` on `PATH.lock` beside `path` (made if missing) until the returned
/// file is dropped (or the process dies): for a file read, compared and written in turn.
pub fn lock_beside(path: &Path, operation: libc::c_int) -> io::Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(PathBuf::from(name))?;
    let file = file.into_parts().0;
    flock(&file, operation)?;
    Ok(file)
}

/// `flock(2)` on `file`, retried when a signal interrupts it (`LOCK_NB`: `WouldBlock` if held).
pub fn flock(file: &std::fs::File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads its integer arguments; the descriptor is owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Hashes files on every core ([`hash_file`] each); results in input order.
pub fn hash_paths(paths: &[PathBuf]) -> Vec<io::Result<(Digest, u64)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(paths.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                // Never through a symlink: what is hashed is the file at that name.
                use fs_err::os::unix::fs::OpenOptionsExt as _;
                let result = fs_err::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(path)
                    .and_then(|f| hash_file(f.file()));
                results.lock().expect("no hashing thread panics").insert(i, result);
            });
        }
    });
    results.into_inner().expect("no hashing thread panics").into_values().collect()
}

/// The mode for a file made with `tempfile` and renamed into place where people and other
/// tools read it (a lockfile, a bundle, a pending promotion, a system's record): what any new
/// file gets, 0666 less the umask, instead of a temporary file's 0600.
pub fn public_mode() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o666)
}

/// The sha256 of a whole file and its length, read with positioned reads (the file's offset
/// is left alone) in 1 MiB chunks.
pub fn hash_file(file: &std::fs::File) -> io::Result<(Digest, u64)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = HashingWriter::new(io::sink());
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = match file.read_at(&mut buf, pos) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.write_all(&buf[..n])?;
        pos += n as u64;
    }
    let (digest, len, _) = hasher.finish();
    Ok((digest, len))
}

/// Fsyncs every folder under `root`, deepest first, and `root` itself: every name made in a
/// staging folder is durable before the folder is swapped in.
pub fn sync_folders(root: &Path) -> io::Result<()> {
    for entry in fs_err::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_folders(&entry.path())?;
        }
    }
    fs_err::File::open(root)?.sync_all()
}

/// Fsyncs the folder holding `path`, so that a rename into it is durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        // A bare name (`out`) is in the working directory.
        Some(parent) if parent.as_os_str().is_empty() => fs_err::File::open(".")?.sync_all(),
        Some(parent) => fs_err::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
thread_local! {
    /// How many blobs [`Store::open_verified`] and [`Store::read_verified`] hashed.
    static BLOBS_PROVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename into the store that fails says which file, not only the system's error; and
    /// leaves no temporary behind.
    #[test]
    fn a_failed_write_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let target = store.root().join("missing/record");
        let err = store.write_atomic(&target, b"v").unwrap_err();
        let shown = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(shown.starts_with(&format!("cannot write `{}` in the store: ", target.display())), "{shown}");
        assert_eq!(fs_err::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    /// A blob found corrupt is removed only while its name holds the file that was hashed:
    /// another build may have stored the right bytes there since.
    #[test]
    fn a_corrupt_blob_is_removed_only_while_its_name_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put_bytes(b"right").unwrap();
        let path = store.blob_path(&digest);
        let replace = |bytes: &[u8]| {
            fs_err::remove_file(&path).unwrap();
            fs_err::write(&path, bytes).unwrap();
        };
        replace(b"wrong");
        let hashed = fs_err::File::open(&path).unwrap().into_parts().0;
        replace(b"right");
        store.discard_corrupt(&digest, &hashed);
        assert_eq!(fs_err::read(&path).unwrap(), b"right");
        replace(b"wrong");
        let hashed = fs_err::File::open(&path).unwrap().into_parts().0;
        store.discard_corrupt(&digest, &hashed);
        assert!(!path.exists());
    }

    #[test]
    fn blobs_are_named_by_content_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.put_bytes(b"hello").unwrap();
        let b = store.put_bytes(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Digest::of(b"hello"));
        assert_eq!(fs_err::read(store.blob_path(&a)).unwrap(), b"hello");
        assert_eq!(fs_err::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_blob_of_many_chunks_is_written_whole_and_in_order() {
        // More than the writer thread's queue holds, in writes that straddle its chunks,
        // with a flush (which waits for the thread) half way.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..BACKGROUND_CHUNK * 5 + 12345).map(|i| (i % 251) as u8).collect();
        let mut writer = store.writer().unwrap();
        let (first, second) = bytes.split_at(bytes.len() / 2);
        for piece in first.chunks(70_001) {
            writer.write_all(piece).unwrap();
        }
        writer.flush().unwrap();
        assert_eq!(fs_err::read(writer.temp_path()).unwrap(), first, "a flush waits for every byte");
        for piece in second.chunks(BACKGROUND_CHUNK + 3) {
            writer.write_all(piece).unwrap();
        }
        let (digest, size) = writer.commit().unwrap();
        assert_eq!((digest, size), (Digest::of(&bytes), bytes.len() as u64));
        assert!(fs_err::read(store.blob_path(&digest)).unwrap() == bytes);
    }

    #[test]
    fn a_mismatch_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"tampered").unwrap();
        let err = w.commit_expecting("tarball `a.tar`", Digest::of(b"original"), Some(8)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&Digest::of(b"original").to_string()) && msg.contains(&Digest::of(b"tampered").to_string()),
            "{msg}"
        );
        assert!(!store.has_blob(&Digest::of(b"tampered")));
        assert_eq!(fs_err::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    /// Makes the blob `digest` writable and overwrites it with `bytes`, in place.
    fn overwrite(store: &Store, digest: &Digest, bytes: &[u8]) {
        let path = store.blob_path(digest);
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        fs_err::write(&path, bytes).unwrap();
    }

    #[test]
    fn a_blob_changed_in_place_is_refused_on_use_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Store::open(dir.path()).unwrap().put_bytes(b"pinned content").unwrap();
        // A later build (this handle did not write the blob).
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(io::read_to_string(store.open_verified(&digest).unwrap()).unwrap(), "pinned content");
        overwrite(&store, &digest, b"PINNED content");
        let err = store.open_verified(&digest).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { actual, size: 14, .. } if *actual == Digest::of(b"PINNED content"))
        );
        assert!(err.to_string().contains(&digest.to_string()), "{err}");
        assert!(!store.has_blob(&digest), "the corrupt blob is removed");
        assert!(matches!(store.read_verified(&digest), Err(StoreError::Read { .. })));
    }

    /// An input fetched and then used in one build was hashed twice in a row (on the write,
    /// then on the use); a rebuild's seeded inputs likewise. A blob this process wrote and
    /// named is proved already; one found in the store is hashed on use.
    #[test]
    fn a_blob_named_by_this_process_is_not_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = Digest::of(b"pinned content");
        // How many blobs one open and one read of `digest` hashed.
        let proved = |store: &Store| {
            BLOBS_PROVED.set(0);
            drop(store.open_verified(&digest).unwrap());
            assert_eq!(store.read_verified(&digest).unwrap(), b"pinned content");
            BLOBS_PROVED.get()
        };
        let mut w = store.clone().writer().unwrap();
        w.write_all(b"pinned content").unwrap();
        w.commit_expecting("the input", digest, Some(14)).unwrap();
        assert_eq!(proved(&store), 0);
        // Another process (a store opened again) did not write it: it proves it on use.
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(proved(&other), 2);
        // Nor did a writer that found it there already.
        let mut w = other.writer().unwrap();
        w.write_all(b"pinned content").unwrap();
        w.commit().unwrap();
        assert_eq!(proved(&other), 2);
    }

    #[test]
    fn a_commit_replaces_a_truncated_blob_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put_bytes(b"the whole blob").unwrap();
        overwrite(&store, &digest, b"the whole");
        let mut w = store.writer().unwrap();
        w.write_all(b"the whole blob").unwrap();
        w.commit_expecting("the input", digest, Some(14)).unwrap();
        assert_eq!(store.read_verified(&digest).unwrap(), b"the whole blob");
    }

    #[test]
    fn leftovers_name_their_process() {
        assert_eq!(recorded_pid(&format!("{}abc123", temp_prefix("blob"))), Some(std::process::id()));
        assert_eq!(recorded_pid("instance-4242-Xy12ab"), Some(4242));
        assert_eq!(recorded_pid("blob-Xy12ab"), None, "an older, unnamed temp");
        let name = "example_1.0_amd64";
        for what in [Sibling::New, Sibling::Old] {
            assert_eq!(sibling_pid(&format!("{}Ab12cd", sibling_prefix(name, what))), Some(std::process::id()));
        }
        assert_eq!(sibling_pid(".example_1.0_amd64.new-77-Ab12cd"), Some(77));
        assert_eq!(sibling_pid(".example_1.0_amd64.old-77-0"), Some(77), "the fallback's folder moved aside");
        assert_eq!(sibling_pid(".example_1.0_amd64.new-Ab12cd"), None, "an older, unnamed staging folder");
        assert_eq!(sibling_pid(".example_1.0_amd64.cache-77-0"), None, "not a publish's");
        assert_eq!(sibling_pid("example_1.0_amd64.new-77-0"), None, "not hidden: not ours");
        assert!(pid_alive(std::process::id()));
    }

    #[test]
    fn an_uncommitted_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(&vec![7u8; 3 << 20]).unwrap();
        drop(w);
        assert_eq!(fs_err::read_dir(store.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs_err::read_dir(store.root().join("blobs/sha256")).unwrap().count(), 0);
    }
}
