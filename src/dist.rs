//! The candidate folder, `OUT/NAME_VERSION_ARCH/`: the names of the documents in it, the
//! attestations beside it, the subjects a statement lists for it, and publishing it.
//!
//! Publishing writes a fresh folder beside the final one and swaps it in with one atomic
//! exchange (`renameat2`), so that a reader sees the old candidate or the new one and never a
//! mix. Outputs share no inode with the store: a hard link would let a write through
//! `dist/` (root ignores the blobs' read-only mode) change the store's object, which later
//! builds would publish again under its old digest. Each output is a reflink of its blob
//! (`FICLONE`: no data copied) where the filesystem has them, else a copy that is hashed as
//! it is written and refused unless it is the blob's name. A rebuild whose candidate folder
//! already holds the same bytes touches nothing; it knows them by the stamps recorded when
//! they were written (a few `stat`s, see [`stamps_key`]) and re-hashes only an output whose
//! stat has changed since.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::context::Context;
use crate::digest::Digest;
use crate::local::{unix_now_ns, Fingerprint, Stat};
use crate::rootfs::Assembled;
use crate::store::{sibling_prefix, Sibling, Store};

/// A file of the candidate folder with its sha256: what a signed statement lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The path relative to the folder.
    pub name: String,
    pub sha256: Digest,
}

/// The signed in-toto statement about the folder (a DSSE envelope).
pub const ENVELOPE: &str = "manifest.intoto.json";
/// The candidate's manifest; its sha256 is the candidate id.
pub const MANIFEST: &str = "manifest.json";
/// The SPDX 2.3 SBOM.
pub const SBOM: &str = "sbom.spdx.json";
/// The CycloneDX 1.6 SBOM.
pub const CYCLONEDX: &str = "sbom.cdx.json";

/// The statement subjects of a candidate folder: every file but the envelope, hashed.
pub fn subjects(dir: &Path) -> anyhow::Result<Vec<Subject>> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read `{}`", dir.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under its root");
        let name = rel.to_str().ok_or_else(|| anyhow::anyhow!("`{}`: file names must be UTF-8", rel.display()))?;
        // Hashed through a symlink, the signed bytes would live outside the folder, where
        // they can change after the check (and a link to a fifo or `/dev/zero` never ends).
        if !entry.file_type().is_file() {
            let what = if entry.file_type().is_symlink() { "a symlink" } else { "not a regular file" };
            anyhow::bail!("`{name}` in `{}` is {what}: a candidate folder holds only files", dir.display());
        }
        if name != ENVELOPE {
            names.push(name.to_owned());
        }
    }
    // Bytewise order of the relative paths, the order the statement lists them in.
    names.sort();
    let digests = hash_files(&names.iter().map(|n| dir.join(n)).collect::<Vec<_>>())?;
    Ok(names.into_iter().zip(digests).map(|(name, sha256)| Subject { name, sha256 }).collect())
}

/// Hashes files on every core, results in input order; an error names its file.
pub fn hash_files(paths: &[PathBuf]) -> anyhow::Result<Vec<Digest>> {
    crate::store::hash_paths(paths)
        .into_iter()
        .zip(paths)
        .map(|(r, path)| Ok(r.with_context(|| format!("cannot hash `{}`", path.display()))?.0))
        .collect()
}

/// The attestation envelopes beside a candidate folder: `NAME_VERSION_ARCH.*.intoto.json`,
/// in name order.
pub fn attestation_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut files = Vec::new();
    for entry in fs_err::read_dir(parent)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&format!("{name}.")) && file.ends_with(".intoto.json") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Rebuild attestations beside a candidate folder are `NAME_VERSION_ARCH.rebuild.KEY.intoto.json`,
/// `KEY` the first 16 hex digits of the signer's key id: one file per rebuilder, side by side.
/// The name only says what a file claims to be; what counts is its verified content.
pub const REBUILD_INFIX: &str = "rebuild";

/// Where the rebuild attestation of the rebuilder with key id `key` (hex) goes.
pub fn rebuild_attestation_path(dir: &Path, key: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.join(format!("{name}.{REBUILD_INFIX}.{}.intoto.json", &key[..key.len().min(16)]))
}

/// Whether `file`, one of [`attestation_files`], is named as a rebuild attestation.
pub fn is_rebuild_attestation(dir: &Path, file: &Path) -> bool {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    file.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&format!("{name}.{REBUILD_INFIX}.")))
}

/// Publishes the candidate folder: a fresh folder beside the final one, swapped in by rename.
pub fn publish(ctx: &Context, dir: &Path, assembled: &Assembled, documents: &[(&str, Vec<u8>)]) -> anyhow::Result<()> {
    if is_current(&ctx.store, dir, assembled, documents) {
        return Ok(());
    }
    let parent = dir.parent().expect("a candidate folder has a parent");
    let name = dir.file_name().expect("a candidate folder has a name").to_string_lossy().into_owned();
    if !parent.exists() {
        fs_err::create_dir_all(parent)?;
        // Its own name durable too: the swap below syncs only `parent` itself.
        crate::store::sync_parent(parent)?;
    }
    let staging = tempfile::Builder::new().prefix(&sibling_prefix(&name, Sibling::New)).tempdir_in(parent)?;
    let mut stamps = Vec::with_capacity(assembled.outputs.len());
    for output in &assembled.outputs {
        let blob = ctx.store.blob_path(&output.sha256);
        let target = staging.path().join(&output.name);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let stat = place_output(&ctx.store, &output.sha256, &blob, &target)?;
        stamps.push((output.name.clone(), stat, output.sha256));
    }
    for (name, bytes) in documents {
        let path = staging.path().join(name);
        fs_err::write(&path, bytes)?;
        fs_err::File::open(&path)?.sync_all()?;
    }
    // The folders made in it too (`oci/blobs/sha256`): every file durable at its name.
    crate::store::sync_folders(staging.path())?;
    // A stamp vouches for its output only if a write after the swap is sure to change the
    // output's ctime: wait the few milliseconds that takes, where that is all it takes.
    let written_by = unix_now_ns();
    if let Some(wait) = stamps.iter().filter_map(|(_, stat, _)| stat.settles_in(written_by)).max() {
        std::thread::sleep(wait);
    }
    let swapped_after = unix_now_ns();
    stamps.retain(|(_, stat, _)| stat.settled(swapped_after));

    // Swap the new folder in with one atomic exchange (or a rename that refuses to replace,
    // when there is nothing yet), so a reader always finds a whole candidate at `dir`. Two
    // builds publishing the same folder race harmlessly: whichever lands, the content is the
    // same, and the loser's exchange or rename is retried against the winner's folder.
    let staging = staging.keep();
    let mut attempt = 0;
    loop {
        match swap_in(&staging, dir) {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                attempt += 1;
                ctx.printer.detail("Retrying", format_args!("publishing {}: {e}", dir.display()));
            }
            Err(e) => {
                let _ = fs_err::remove_dir_all(&staging);
                return Err(e).with_context(|| format!("failed to publish `{}`", dir.display()));
            }
        }
    }
    // After an exchange, the staging path holds the previous candidate (or nothing).
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    crate::store::sync_parent(dir)?;
    // The exchange moved the folder, not its files: their stamps hold at `dir`. Those not
    // yet settled (a file system with whole seconds) are left to the next check.
    Fingerprint { entries: stamps }.save(&ctx.store, &stamps_key(dir));
    Ok(())
}

/// Puts the folder `staging` at `dir`: one atomic exchange when `dir` exists (`staging` then
/// holds the previous folder), else a rename that refuses to replace. A reader of `dir` sees
/// the old folder or the new one, never a mix (a published feed is swapped in the same way).
pub fn swap_in(staging: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        exchange(staging, dir)
    } else {
        rename_noreplace(staging, dir)
    }
}

/// Writes `target` as a reflink or a checked copy of the store's blob `digest` at `blob`,
/// read-only and durable; returns its stamp ([`stamps_key`]), taken from our own handle
/// after our last change to it. Until the folder is swapped in, only we know of it.
fn place_output(store: &Store, digest: &Digest, blob: &Path, target: &Path) -> anyhow::Result<Stat> {
    use std::os::unix::io::AsRawFd;
    let source = fs_err::File::open(blob)?;
    let mut out = fs_err::File::create(target)?;
    // SAFETY: FICLONE reads two descriptors, both owned by open files that outlive the call.
    let cloned = unsafe { libc::ioctl(out.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) } == 0;
    if cloned {
        // The same extents as the blob: proved unless this process wrote the blob, as a copy
        // would be (a warm build takes a cached blob on its size alone).
        if let Err(e) = store.verify_clone(digest, out.file(), source.file()) {
            drop(out);
            let _ = fs_err::remove_file(target);
            return Err(e).with_context(|| format!("cannot publish `{}`", target.display()));
        }
    } else {
        // No reflinks here (ext4, tmpfs, another filesystem): copy, proving the bytes on the way.
        let mut writer = crate::digest::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, &mut out));
        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, source.file()), &mut writer)?;
        let (actual, size, buffered) = writer.finish();
        buffered.into_inner().map_err(|e| e.into_error())?;
        if actual != *digest {
            store.discard_corrupt(digest, source.file());
            return Err(crate::store::StoreError::Corrupt { path: blob.to_owned(), expected: *digest, actual, size })
                .with_context(|| format!("cannot publish `{}`", target.display()));
        }
    }
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))?;
    out.sync_all()?;
    Ok(Stat::of(&out.metadata()?))
}

/// Atomically exchanges two paths (`renameat2(RENAME_EXCHANGE)`). On a file system without
/// the flag (FUSE such as disorderfs, some network file systems: `EINVAL`), falls back to
/// three plain renames: `b` aside, `a` to `b`, the old `b` to `a`. A reader then may find no
/// folder at `b` for an instant, but never a mix of two candidates, which is what matters.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    match renameat2(a, b, libc::RENAME_EXCHANGE) {
        Err(e) if unsupported(&e) => {
            let aside = sibling(b, Sibling::Old);
            fs_err::rename(b, &aside)?;
            if let Err(e) = fs_err::rename(a, b) {
                // Put the old candidate back: `b` must not stay empty because of us.
                let _ = fs_err::rename(&aside, b);
                return Err(e);
            }
            fs_err::rename(&aside, a)
        }
        other => other,
    }
}

/// Renames `from` to `to`, failing if `to` exists (`renameat2(RENAME_NOREPLACE)`). Without the
/// flag (`EINVAL`, as for [`exchange`]), checks that `to` is absent and renames: the window
/// between the two only lets a concurrent publisher of the same folder win, which the caller
/// retries against anyway.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    match renameat2(from, to, libc::RENAME_NOREPLACE) {
        Err(e) if unsupported(&e) => {
            if fs_err::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("cannot move `{}` to `{}`: it exists", from.display(), to.display()),
                ));
            }
            fs_err::rename(from, to)
        }
        other => other,
    }
}

/// Whether a `renameat2` error means the file system does not take the flag (not that the
/// move itself is wrong): `EINVAL` from FUSE and network file systems, `ENOSYS` from old
/// kernels or seccomp filters.
fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// A free name beside `path` for a moment's use: `.NAME.WHAT-PID-N` ([`sibling_prefix`], so
/// that `store gc` removes it if this process dies before it is gone).
fn sibling(path: &Path, what: Sibling) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!("{}{n}", sibling_prefix(&name, what)))
}

#[cfg(test)]
thread_local! {
    /// An errno [`renameat2`] fails with instead of making the call, for tests of the fallback.
    static RENAMEAT2_ERRNO: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
    /// How many outputs [`is_current`] re-hashed, for the test that a warm build reads none.
    static OUTPUTS_HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let call = || unsafe { libc::renameat2(libc::AT_FDCWD, from_c.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), flags) };
    #[cfg(test)]
    let call = || match RENAMEAT2_ERRNO.get() {
        Some(errno) => {
            // SAFETY: `__errno_location` is the calling thread's errno, always valid.
            unsafe { *libc::__errno_location() = errno };
            -1
        }
        None => call(),
    };
    if call() == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if unsupported(&e) {
        // Bare, so that the callers see the errno and fall back.
        return Err(e);
    }
    Err(std::io::Error::new(e.kind(), format!("cannot move `{}` to `{}`: {e}", from.display(), to.display())))
}

/// Whether `dir` already holds exactly this candidate: the same documents (manifest, SBOMs,
/// envelope), nothing else, and every output with its size and sha256. An output whose stat
/// is the stamp recorded when its bytes were known ([`stamps_key`]) is taken to hold them
/// still; any other is re-hashed, and stamped if it matches. Anything less is republished.
fn is_current(store: &Store, dir: &Path, assembled: &Assembled, documents: &[(&str, Vec<u8>)]) -> bool {
    if documents.iter().any(|(name, bytes)| fs_err::read(dir.join(name)).ok().as_ref() != Some(bytes)) {
        return false;
    }
    let expected: usize = assembled.outputs.len() + documents.len();
    let present =
        walkdir::WalkDir::new(dir).into_iter().filter(|e| e.as_ref().is_ok_and(|e| !e.file_type().is_dir())).count();
    if present != expected {
        return false;
    }
    // Before any stat: a write after this is one a stat may not show (see `Stat::settled`).
    let checked_after = unix_now_ns();
    let key = stamps_key(dir);
    let stamps = Fingerprint::load(store, &key);
    let mut stats = Vec::with_capacity(assembled.outputs.len());
    let mut unstamped = Vec::new();
    for o in &assembled.outputs {
        let path = dir.join(&o.name);
        let Ok(meta) = fs_err::metadata(&path) else { return false };
        if meta.len() != o.size {
            return false;
        }
        let stat = Stat::of(&meta);
        if stamps.get(&o.name) != Some(&(stat, o.sha256)) {
            unstamped.push((path, o));
        }
        stats.push((o.name.clone(), stat, o.sha256));
    }
    if unstamped.is_empty() {
        return true;
    }
    #[cfg(test)]
    OUTPUTS_HASHED.set(OUTPUTS_HASHED.get() + unstamped.len());
    let paths: Vec<PathBuf> = unstamped.iter().map(|(path, _)| path.clone()).collect();
    let held = hash_files(&paths).is_ok_and(|digests| digests.iter().zip(&unstamped).all(|(d, (_, o))| *d == o.sha256));
    if held {
        // Proved by their bytes just now: stamped, so that the next check need not read them
        // (unless so recent that a write in the same clock tick could still follow unseen).
        let entries = stats.into_iter().filter(|(_, stat, _)| stat.settled(checked_after)).collect();
        Fingerprint { entries }.save(store, &key);
    }
    held
}

/// The key of a candidate folder's output stamps in the store's stat cache: for each output,
/// the stat (device, inode, size, mtime, ctime, mode) it had when its bytes were known, and
/// their sha256. Outputs share no inode with the store, so only a write in the folder itself
/// can change one, and such a write moves its ctime, which no writer can set back; replacing
/// the file changes its inode. A warm build thus proves a gigabyte candidate by a few `stat`s
/// instead of reading it all.
fn stamps_key(dir: &Path) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    format!("candidate-dist-stamps-v1\0{}", absolute.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate folder of one output, `rootfs.tar` holding `bytes`, with its store.
    fn one_output(dir: &Path, bytes: &[u8]) -> (Context, Assembled) {
        let ctx = Context {
            store: Store::open(&dir.join("store")).unwrap(),
            printer: crate::printer::Printer::new(true, false, false),
            mirrors: Default::default(),
            snapshots: Default::default(),
            python_index: None,
        };
        let sha256 = ctx.store.put_bytes(bytes).unwrap();
        let size = bytes.len() as u64;
        let output =
            crate::rootfs::OutputFile { name: "rootfs.tar".into(), sha256, size, codec: crate::compress::Codec::None };
        let rootfs = crate::layer::LayerInfo { diff_id: sha256, size, entries: 0, implicit: Vec::new() };
        (ctx, Assembled { rootfs, outputs: vec![output] })
    }

    /// A warm publish read every output again (a 600 MB image paid seconds for a no-op). It
    /// now reads none whose stamp holds, re-hashes one without a stamp (and keeps it), and
    /// republishes one changed in place.
    #[test]
    fn a_warm_publish_knows_its_outputs_by_their_stamps() {
        use std::os::unix::fs::MetadataExt;
        let temp = tempfile::tempdir().unwrap();
        let (ctx, assembled) = one_output(temp.path(), b"the rootfs bytes");
        let documents = [(MANIFEST, b"{}".to_vec())];
        let dir = temp.path().join("out/x_1_amd64");
        let output = dir.join("rootfs.tar");
        let publish_counting = || {
            OUTPUTS_HASHED.set(0);
            publish(&ctx, &dir, &assembled, &documents).unwrap();
            (OUTPUTS_HASHED.get(), fs_err::metadata(&output).unwrap().ino())
        };
        let (hashed, ino) = publish_counting();
        assert_eq!(hashed, 0, "nothing to check in an empty folder");

        assert_eq!(publish_counting(), (0, ino), "a warm publish read an output, or republished");

        // No stamps (a store from before them, a lost cache): proved by hashing, kept as is.
        fs_err::remove_file(ctx.store.stat_path(&Digest::of(stamps_key(&dir).as_bytes()))).unwrap();
        assert_eq!(publish_counting(), (1, ino));

        // Changed in place, same size: re-hashed, found wrong, published again.
        fs_err::set_permissions(&output, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        fs_err::write(&output, b"THE rootfs bytes").unwrap();
        let (hashed, new_ino) = publish_counting();
        assert_eq!(hashed, 1);
        assert_ne!(new_ino, ino, "the changed folder was taken for current");
        assert_eq!(fs_err::read(&output).unwrap(), b"the rootfs bytes");
        assert_eq!(publish_counting(), (0, new_ino), "the republished output has its stamp");
    }

    /// #16: publishing into a folder on a file system without `renameat2` flags (FUSE such as
    /// disorderfs, some network file systems) failed with `Invalid argument`. With the call
    /// made to fail so, the exchange and the no-replace rename still do what they promise.
    #[test]
    fn without_renameat2_flags_publishing_falls_back_to_plain_renames() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (path, text) in [(&a, "new"), (&b, "old")] {
            fs_err::create_dir(path).unwrap();
            fs_err::write(path.join("f"), text).unwrap();
        }
        for errno in [libc::EINVAL, libc::ENOSYS] {
            RENAMEAT2_ERRNO.set(Some(errno));
            exchange(&a, &b).unwrap();
            assert_eq!(fs_err::read_to_string(b.join("f")).unwrap(), if errno == libc::EINVAL { "new" } else { "old" });
            assert_eq!(fs_err::read_to_string(a.join("f")).unwrap(), if errno == libc::EINVAL { "old" } else { "new" });
        }
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        let c = dir.path().join("c");
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists() && c.join("f").is_file());
        // Nothing was left beside them.
        let mut names: Vec<_> =
            fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["b", "c"]);
        // Any other error is the move's own, named.
        RENAMEAT2_ERRNO.set(Some(libc::EXDEV));
        let err = exchange(&b, &c).unwrap_err().to_string();
        assert!(err.starts_with("cannot move `") && err.contains("cross-device"), "{err}");
        RENAMEAT2_ERRNO.set(None);
        exchange(&b, &c).unwrap();
    }
}
