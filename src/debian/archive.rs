//! An apt archive, read through its trust chain: `InRelease` → `Packages` indexes → packages.
//!
//! Every step is checked against the one before it, and only checked bytes are parsed:
//!
//! 1. `dists/SUITE/InRelease` is verified against the recipe's keyring ([`super::release`]).
//! 2. Each `COMPONENT/binary-ARCH/Packages{.xz,.gz,}` is fetched by the size and sha256 the
//!    signed `Release` lists for it (the first form listed, in that order), and only then
//!    decompressed (capped) and parsed.
//! 3. Each package is later fetched by the size and sha256 its index lists.
//!
//! Freshness is judged at lock time only ([`lock`]): `Valid-Until` in the past, a `Date` in
//! the future, a signing key expired or revoked today, and a `Date` older than one this store
//! has already seen for the same keyring and suite (a rollback: an attacker replaying an old,
//! correctly signed `InRelease` to hold back a security update) are refused. A build from a
//! lockfile ([`load_locked`]) checks the pinned `InRelease`'s signature and every hash as of
//! the `InRelease`'s own `Date`, so a candidate locked two years ago can still be rebuilt and
//! audited from its lockfile and the store.

use std::path::Path;

use anyhow::{bail, Context as _};

use crate::error::Hinted;

use super::control::{Dialect, Stanzas};
use super::packages::{Architecture, Package};
use super::release::{verify_inrelease, Keyring, Release};
use crate::digest::{Digest, Hasher};
use crate::fetch::{self, Network, Pin};
use crate::lockfile::{LockedArchive, LockedIndex};
use crate::recipe::{ArchiveSpec, Name, Origin};
use crate::store::Store;

/// How far in the future a `Date` may be before the clock (or the archive) is distrusted.
pub const DATE_SKEW_SECONDS: i64 = 600;

/// Decompressed `Packages` indexes larger than this are refused (Debian's biggest, bookworm
/// main amd64, is about 50 MB).
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// An archive as the recipe names it, at the location this run uses.
pub struct Source<'a> {
    pub name: &'a Name,
    pub spec: &'a ArchiveSpec,
    /// The archive root: the recipe's `url`, or the `--mirror` given for this archive.
    pub root: Origin,
    /// Where a pinned file the mirror no longer serves is fetched from: the archive's snapshot
    /// as of the locked `InRelease`'s `Date` (a build from a lockfile only; a new lock reads
    /// the archive as it is now).
    pub snapshot: Option<Snapshot>,
    pub keyring: &'a Keyring,
    pub keyring_digest: Digest,
}

/// An archive's snapshot at one time: its root (`dists/…`, `pool/…` below it) and the time
/// stamp it was taken for, `YYYYMMDDTHHMMSSZ`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: Origin,
    pub timestamp: String,
}

impl Source<'_> {
    fn origin(&self, rel: &str) -> Origin {
        self.root.join(rel)
    }

    /// Makes sure the store holds `rel` (below the archive root) by its pin, from the mirror
    /// or, where that no longer serves it, the snapshot ([`fetch_pinned`]).
    fn fetch(&self, store: &Store, rel: &str, pin: Pin, network: Network) -> anyhow::Result<(Digest, u64)> {
        fetch_pinned(store, self.name, &self.root, self.snapshot.as_ref(), rel, pin, network)
    }

    fn dists(&self, rel: &str) -> String {
        format!("dists/{}/{rel}", self.spec.suite)
    }
}

/// What reading an archive gives: its lock entry and its packages, index by index.
pub struct Read {
    pub locked: LockedArchive,
    pub packages: Vec<Package>,
}

/// Options for [`lock`].
pub struct Freshness {
    /// Now, in unix seconds.
    pub now: i64,
    /// Accept an `InRelease` older than one seen before (`--allow-rollback`).
    pub allow_rollback: bool,
}

/// Reads the archive as it is now, for a new lock: verifies `InRelease` against the keyring
/// with today's key validity, checks freshness and rollback, and fetches every index the
/// architectures need.
pub fn lock(
    store: &Store,
    source: &Source<'_>,
    architectures: &[Architecture],
    freshness: &Freshness,
    network: Network,
) -> anyhow::Result<Read> {
    let (inrelease, inrelease_size, release) = read_inrelease(store, source, None, Some(freshness.now), network)?;
    release
        .check_freshness(freshness.now, DATE_SKEW_SECONDS)
        .with_context(|| format!("archive `{}`: its `InRelease` is not fresh", source.name))?;
    check_rollback(store, source, &release, inrelease, freshness.allow_rollback)?;

    let mut indexes = Vec::new();
    for component in &source.spec.components {
        for arch in architectures {
            indexes.push(pick_index(source, &release, component, arch)?);
        }
    }
    let packages = read_indexes(store, source, &release, &indexes, network, &|_| true)?;
    let locked = LockedArchive {
        name: source.name.clone(),
        suite: source.spec.suite.clone(),
        inrelease,
        inrelease_size,
        date: release.date,
        keyring: source.keyring_digest,
        indexes,
    };
    Ok(Read { locked, packages })
}

/// Reads a locked archive for a build: the pinned `InRelease` (from the store, or fetched by
/// its hash) verified as of its own `Date`, and the pinned indexes checked against it.
pub fn load_locked(
    store: &Store,
    source: &Source<'_>,
    locked: &LockedArchive,
    network: Network,
    wanted: &Wanted<'_>,
) -> anyhow::Result<Read> {
    let name = source.name;
    if locked.keyring != source.keyring_digest {
        bail!(
            "archive `{name}`: the keyring `{}` is not the one the lockfile was made with (locked {}, now {})",
            source.spec.keyring.display(),
            locked.keyring,
            source.keyring_digest
        );
    }
    let release = verified_release(store, source, locked, network)?;
    for index in &locked.indexes {
        match release.file(&index.path) {
            Some((size, sha256)) if size == index.size && sha256 == index.sha256 => {}
            _ => bail!(
                "archive `{name}`: the locked index `{}` is not the one its `InRelease` lists; the lockfile was altered",
                index.path
            ),
        }
    }
    let packages = read_indexes(store, source, &release, &locked.indexes, network, wanted)?;
    Ok(Read { locked: locked.clone(), packages })
}

/// The pinned `InRelease`, verified (key validity judged at the signature's own time) and
/// parsed, and checked to be the one the lockfile describes.
fn verified_release(
    store: &Store,
    source: &Source<'_>,
    locked: &LockedArchive,
    network: Network,
) -> anyhow::Result<Release> {
    let pin = Pin { sha256: locked.inrelease, size: Some(locked.inrelease_size) };
    let (_, _, release) = read_inrelease(store, source, Some(pin), None, network)?;
    if release.date != locked.date {
        bail!(
            "archive `{}`: the lockfile says `Date` {}, the locked `InRelease` says {}",
            source.name,
            locked.date,
            release.date
        );
    }
    Ok(release)
}

/// Makes sure the store holds the file `rel` of archive `name` by its pin: fetched from the
/// mirror at `root`; where the mirror no longer serves it ([`fetch::FetchError::moved_on`]:
/// not found, or other bytes), from `snapshot`, checked against the same pin. The error names
/// the file, both URLs and what each said; without a snapshot, a hint says how to give one.
pub fn fetch_pinned(
    store: &Store,
    name: &Name,
    root: &Origin,
    snapshot: Option<&Snapshot>,
    rel: &str,
    pin: Pin,
    network: Network,
) -> anyhow::Result<(Digest, u64)> {
    let at_mirror = root.join(rel);
    let mirror_fault = match fetch::fetch(store, &at_mirror, Some(pin), network, &|_| {}) {
        Ok(got) => return Ok(got),
        Err(e) if e.moved_on() => e,
        Err(e) => return Err(e.into()),
    };
    let Some(snapshot) = snapshot else {
        return Err(anyhow::Error::new(mirror_fault).context(Hinted::new(
            format!("archive `{name}`: the mirror no longer serves the pinned `{rel}`, and the archive has no snapshot"),
            format!(
                "give archive `{name}` a `snapshot = \"URL/{{timestamp}}/\"` in the recipe (or `--snapshot {name}=URL`) \
                 to fetch what the mirror dropped from a snapshot archive as of the lockfile's `Date`"
            ),
        )));
    };
    let at_snapshot = snapshot.root.join(rel);
    // The mirror's fault goes into the message whole (its causes too: a missing file's
    // `No such file or directory`); the snapshot's is the cause.
    let mirror_fault = format!("{:#}", anyhow::Error::new(mirror_fault));
    fetch::fetch(store, &at_snapshot, Some(pin), network, &|_| {}).with_context(|| {
        format!(
            "archive `{name}`: the mirror no longer serves the pinned `{rel}` ({mirror_fault}), \
             nor does its snapshot as of {}",
            snapshot.timestamp
        )
    })
}

/// Fetches `InRelease` (the current one, or the pinned one), verifies it against the
/// keyring — key validity at the signature's time and, given `now`, today — and parses it.
/// The largest `InRelease` read unpinned: Debian's is ~150 KB, one listing every index of a
/// large archive a few megabytes.
const MAX_INRELEASE_BYTES: u64 = 64 << 20;

fn read_inrelease(
    store: &Store,
    source: &Source<'_>,
    pin: Option<Pin>,
    now: Option<i64>,
    network: Network,
) -> anyhow::Result<(Digest, u64, Release)> {
    let path = source.dists("InRelease");
    let origin = source.origin(&path);
    let context = |what: &str| format!("archive `{}`: `{origin}` {what}", source.name);
    let (digest, size) = match pin {
        // The pinned one may be gone from the mirror (replaced by a newer one): the snapshot's.
        Some(pin) => source.fetch(store, &path, pin, network),
        None => Ok(fetch::fetch_small(store, &origin, network, MAX_INRELEASE_BYTES)?),
    }
    .with_context(|| context("cannot be fetched"))?;
    let bytes = store.read_verified(&digest).with_context(|| context("cannot be read from the store"))?;
    let verified = verify_inrelease(&bytes, source.keyring, now).with_context(|| context("is not trustworthy"))?;
    let release = verified.release().with_context(|| context("is not a valid `Release`"))?;
    // The archive's keys sign every suite: a mirror (or anyone on a plain-http path to it)
    // could serve sid's valid `InRelease` as bookworm's. One that names its suite must name
    // the recipe's, as `Suite` or `Codename`.
    let wanted = source.spec.suite.as_str();
    let named: Vec<&str> = [&release.suite, &release.codename].into_iter().flatten().map(String::as_str).collect();
    if !named.is_empty() && !named.contains(&wanted) {
        bail!(
            "{}: it is signed for suite {}, not the recipe's `{wanted}`: the mirror serves another suite under this name",
            context("is not the suite asked for"),
            named.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" (codename ") + if named.len() > 1 { ")" } else { "" }
        );
    }
    Ok((digest, size, release))
}

/// The first form of `COMPONENT/binary-ARCH/Packages` the `Release` lists.
fn pick_index(
    source: &Source<'_>,
    release: &Release,
    component: &str,
    arch: &Architecture,
) -> anyhow::Result<LockedIndex> {
    let base = format!("{component}/binary-{arch}/Packages");
    for ext in [".xz", ".gz", ""] {
        let path = format!("{base}{ext}");
        if let Some((size, sha256)) = release.file(&path) {
            return Ok(LockedIndex { path, size, sha256 });
        }
    }
    bail!(
        "archive `{}`: its `InRelease` lists no `{base}` (.xz, .gz or plain); is component `{component}` or architecture `{arch}` in it?",
        source.name
    )
}

/// Fetches each index by its pin, then decompresses and parses the entries whose package
/// name `wanted` accepts (a build checks a few hundred pins against 63k entries: it need not
/// hold them all).
///
/// The decompressed text is kept as a blob too, named by its sha256 — but only when the
/// signed `Release` lists the uncompressed index with that very hash and size (apt archives
/// list both forms). A later read finds it there, trusted the same way as the compressed
/// one, and skips the decompression (on Debian's main index, most of a cold build's check).
fn read_indexes(
    store: &Store,
    source: &Source<'_>,
    release: &Release,
    indexes: &[LockedIndex],
    network: Network,
    wanted: &Wanted<'_>,
) -> anyhow::Result<Vec<Package>> {
    let mut packages = Vec::new();
    for index in indexes {
        let path = source.dists(&index.path);
        let context = || format!("archive `{}`: index `{path}`", source.name);
        let plain =
            [".xz", ".gz"].iter().find_map(|ext| index.path.strip_suffix(ext)).and_then(|plain| release.file(plain));
        // A kept text that no longer matches its hash was removed by the check; the compressed
        // index below is read instead (and the text kept again).
        if let Some((_, sha256)) = plain.filter(|(size, sha256)| store.blob_size(sha256) == Some(*size)) {
            if let Ok(file) = store.open_verified(&sha256) {
                let file = fs_err::File::from_parts(file, store.blob_path(&sha256));
                packages.extend(parse_index(file, None, wanted).with_context(context)?.0);
                continue;
            }
        }
        let pin = Pin { sha256: index.sha256, size: Some(index.size) };
        source.fetch(store, &path, pin, network).with_context(context)?;
        let file = fs_err::File::from_parts(
            store.open_verified(&index.sha256).with_context(context)?,
            store.blob_path(&index.sha256),
        );
        let keep = match plain {
            Some(_) => Some(store.writer()?),
            None => None,
        };
        let (parsed, kept) = parse_index(file, keep, wanted).with_context(context)?;
        packages.extend(parsed);
        if let (Some(writer), Some((size, sha256))) = (kept, plain) {
            // A text that is not what `Release` lists is simply not kept: the compressed
            // index it came from was checked, and is what was parsed.
            let _ = writer.commit_expecting("the decompressed index", sha256, Some(size));
        }
    }
    Ok(packages)
}

/// Which entries of an index to parse, by package name.
pub type Wanted<'a> = dyn Fn(&str) -> bool + Sync + 'a;

/// About this much decompressed text is parsed at a time (then cut at the next stanza
/// boundary): large enough that handing chunks between threads costs nothing, small enough
/// that a few in flight hold little memory.
const CHUNK_BYTES: usize = 1 << 20;

/// A run of whole stanzas of an index, with the number of its first line.
struct Chunk {
    index: usize,
    first_line: usize,
    bytes: Vec<u8>,
}

/// Why a chunk could not be parsed.
enum ChunkError {
    NotUtf8,
    Parse(anyhow::Error),
}

/// Decompresses an index and parses its entries, on every core: one thread decompresses
/// and cuts the text into chunks at stanza boundaries (empty lines), the others parse the
/// chunks as they come. The whole decompressed index (~50 MB for Debian's largest) is never
/// held at once, and the entries come out in index order whatever the number of cores.
///
/// Errors are those of reading the whole text first, then parsing it in order: a
/// decompression error or an oversized index, then text that is not UTF-8, then the first
/// syntax or field error, with its line number in the whole index.
///
/// The decompressed text is also written to `keep`, if given, which is handed back.
fn parse_index(
    file: fs_err::File,
    keep: Option<crate::store::BlobWriter>,
    wanted: &Wanted<'_>,
) -> anyhow::Result<(Vec<Package>, Option<crate::store::BlobWriter>)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    // A few chunks in flight per parser: the decoder never waits for a slow one to finish.
    let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<Chunk>(2 * workers);
    let chunks_rx = std::sync::Mutex::new(chunks_rx);
    let (results_tx, results_rx) = std::sync::mpsc::channel();
    // Parsed chunks are appended in index order as they arrive, each freed at once: holding
    // them all until the end, then copying, would hold every entry twice.
    let mut packages = Vec::new();
    let mut waiting = std::collections::BTreeMap::new();
    let mut first_error: Option<ChunkError> = None;
    let mut next = 0;
    let decoded = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || cut_chunks(file, chunks_tx, keep));
        for _ in 0..workers {
            let (chunks_rx, results_tx) = (&chunks_rx, results_tx.clone());
            scope.spawn(move || loop {
                // The lock is held only to take a chunk, not to parse it.
                let next = chunks_rx.lock().expect("no panics while holding it").recv();
                let Ok(chunk) = next else { break };
                let parsed = parse_chunk(&chunk, wanted);
                if results_tx.send((chunk.index, parsed)).is_err() {
                    break;
                }
            });
        }
        drop(results_tx);
        for (index, parsed) in &results_rx {
            waiting.insert(index, parsed);
            while let Some(parsed) = waiting.remove(&next) {
                next += 1;
                match parsed {
                    Ok(parsed) if first_error.is_none() => packages.extend(parsed),
                    Ok(_) => {}
                    Err(e) => {
                        // The first error in index order, but text that is not UTF-8 anywhere
                        // comes first, as when the whole text was checked before parsing.
                        let first =
                            matches!((&first_error, &e), (None, _) | (Some(ChunkError::Parse(_)), ChunkError::NotUtf8));
                        if first {
                            first_error = Some(e);
                        }
                    }
                }
            }
        }
        decoder.join().expect("the index decoder does not panic")
    });
    let (count, kept) = decoded?;
    assert_eq!(next, count, "every chunk was parsed");
    match first_error {
        None => Ok((packages, kept)),
        Some(ChunkError::NotUtf8) => bail!("it is not UTF-8"),
        Some(ChunkError::Parse(e)) => Err(e),
    }
}

/// Decompresses `file` (capped at [`MAX_INDEX_BYTES`]) and sends its text in chunks that end
/// after an empty line (or at the end), writing the text to `keep` too; returns how many it
/// sent, and `keep`.
fn cut_chunks(
    file: fs_err::File,
    chunks: std::sync::mpsc::SyncSender<Chunk>,
    mut keep: Option<crate::store::BlobWriter>,
) -> anyhow::Result<(usize, Option<crate::store::BlobWriter>)> {
    use std::io::{Read as _, Write as _};
    let (_, decoded) = crate::compress::decoder(file)?;
    let mut decoded = decoded.take(MAX_INDEX_BYTES + 1);
    let (mut index, mut first_line, mut total) = (0, 1, 0u64);
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK_BYTES);
    loop {
        // Fill to at least a chunk's worth; then cut after the last empty line in it.
        let start = buf.len();
        buf.resize(start.max(CHUNK_BYTES) + CHUNK_BYTES, 0);
        let mut filled = start;
        while filled < buf.len() {
            match decoded.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(anyhow::Error::new(e).context("cannot decompress it")),
            }
        }
        buf.truncate(filled);
        total += (filled - start) as u64;
        if total > MAX_INDEX_BYTES {
            bail!("it decompresses to more than {MAX_INDEX_BYTES} bytes; refusing it");
        }
        let at_end = filled == start;
        let cut = match buf.windows(2).rposition(|w| w == b"\n\n") {
            _ if at_end => buf.len(),
            Some(i) => i + 2,
            // No empty line yet: one stanza larger than a chunk. Read on.
            None => continue,
        };
        let rest = buf.split_off(cut);
        let bytes = std::mem::replace(&mut buf, rest);
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        if let Some(writer) = &mut keep {
            writer.write_all(&bytes).context("cannot keep the decompressed index")?;
        }
        if !bytes.is_empty() {
            let chunk = Chunk { index, first_line, bytes };
            if chunks.send(chunk).is_err() {
                break;
            }
            index += 1;
        }
        first_line += lines;
        if at_end {
            break;
        }
    }
    Ok((index, keep))
}

fn parse_chunk(chunk: &Chunk, wanted: &Wanted<'_>) -> Result<Vec<Package>, ChunkError> {
    let text = std::str::from_utf8(&chunk.bytes).map_err(|_| ChunkError::NotUtf8)?;
    let mut packages = Vec::new();
    for stanza in Stanzas::starting_at_line(text, Dialect::Archive, chunk.first_line) {
        let stanza = stanza.map_err(|e| ChunkError::Parse(e.into()))?;
        if wanted(stanza.get("Package").unwrap_or_default()) {
            packages.push(Package::from_stanza(&stanza).map_err(|e| ChunkError::Parse(e.into()))?);
        }
    }
    Ok(packages)
}

/// The newest `Date` this store has accepted for an archive (keyed by keyring and suite, not
/// by the recipe's name for it nor its URL: any mirror of the same archive counts).
#[derive(serde::Serialize, serde::Deserialize)]
struct Seen {
    date: i64,
    inrelease: Digest,
}

fn seen_path(store: &Store, source: &Source<'_>) -> std::path::PathBuf {
    let mut h = Hasher::new();
    h.field("candidate-archive-seen").field(source.keyring_digest.as_bytes()).field(&source.spec.suite);
    store.root().join("archives").join(format!("{}.json", h.finish().hex()))
}

fn check_rollback(
    store: &Store,
    source: &Source<'_>,
    release: &Release,
    inrelease: Digest,
    allow: bool,
) -> anyhow::Result<()> {
    let path = seen_path(store, source);
    // Read, compared and written under an exclusive lock: two locks at once (two recipes of
    // one archive in CI) could otherwise write the older date last.
    let _lock = crate::store::lock_beside(&path, libc::LOCK_EX)
        .with_context(|| format!("cannot lock the rollback record `{}`", path.display()))?;
    // A record that cannot be read or parsed is an error, not "never seen": that would turn
    // the check off and overwrite it.
    let seen: Option<Seen> = match fs_err::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "archive `{}`: its rollback record `{}` is not valid; remove it to trust the archive as it is now",
                source.name,
                path.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(seen) = &seen {
        if release.date < seen.date && !allow {
            bail!(Hinted::new(
                format!(
                    "archive `{}`: rollback refused: its `InRelease` is dated {} (unix time), older than {} already \
                     seen from this archive",
                    source.name, release.date, seen.date
                ),
                "a mirror is stale or replaying an old `InRelease`; pass `--allow-rollback` to lock against it knowingly",
            ));
        }
        if release.date <= seen.date {
            return Ok(());
        }
    }
    let record = serde_json::to_vec(&Seen { date: release.date, inrelease }).expect("serialises");
    store.write_atomic(&path, &record)?;
    Ok(())
}

/// Loads the keyring a recipe names, with the digest of its bytes.
pub fn keyring(path: &Path) -> anyhow::Result<(Keyring, Digest)> {
    let bytes = fs_err::read(path).with_context(|| format!("cannot read keyring `{}`", path.display()))?;
    Ok((Keyring::parse(path, &bytes)?, Digest::of(&bytes)))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::compress::Codec;

    /// A file the mirror dropped comes from the snapshot, checked against the pin; without a
    /// snapshot the error says so with a hint; other bytes at the snapshot are refused naming
    /// its URL; a fault other than "moved on" is not taken to the snapshot.
    #[test]
    fn a_file_the_mirror_dropped_comes_from_the_snapshot_by_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let (mirror, snapshot_dir) = (dir.path().join("mirror"), dir.path().join("snapshot"));
        let rel = "pool/main/h/hello/hello_1.0-1_amd64.deb";
        fs_err::create_dir_all(snapshot_dir.join("pool/main/h/hello")).unwrap();
        fs_err::create_dir_all(&mirror).unwrap();
        let bytes = b"the pinned package";
        let pin = Pin { sha256: Digest::of(bytes), size: Some(bytes.len() as u64) };
        let name: Name = "test".parse().unwrap();
        let snapshot = Snapshot { root: Origin::Local(snapshot_dir.clone()), timestamp: "20231114T221320Z".into() };
        let fetch = |snapshot: Option<&Snapshot>| {
            fetch_pinned(&store, &name, &Origin::Local(mirror.clone()), snapshot, rel, pin, Network::Offline)
        };

        let err = fetch(None).unwrap_err();
        assert!(err.to_string().contains("the mirror no longer serves the pinned"), "{err:#}");
        let hinted = err.downcast_ref::<Hinted>().expect("a hint on giving a snapshot");
        assert!(hinted.hint.contains("snapshot = "), "{}", hinted.hint);

        fs_err::write(snapshot_dir.join(rel), b"other bytes, same size").unwrap();
        let err = format!("{:#}", fetch(Some(&snapshot)).unwrap_err());
        assert!(err.contains("nor does its snapshot as of 20231114T221320Z"), "{err}");
        assert!(err.contains(&format!("`{}` does not match its pin", snapshot_dir.join(rel).display())), "{err}");
        assert!(err.contains("No such file or directory"), "the mirror's fault is not told: {err}");
        assert!(!store.has_blob(&pin.sha256));

        fs_err::write(snapshot_dir.join(rel), bytes).unwrap();
        assert_eq!(fetch(Some(&snapshot)).unwrap(), (pin.sha256, bytes.len() as u64));

        // Offline with a remote mirror is not the mirror moving on: no snapshot is asked.
        let other = Store::open(&dir.path().join("other")).unwrap();
        let remote = Origin::Remote("http://127.0.0.1:9/debian".into());
        let err = fetch_pinned(&other, &name, &remote, Some(&snapshot), rel, pin, Network::Offline).unwrap_err();
        assert!(matches!(err.downcast_ref::<fetch::FetchError>(), Some(fetch::FetchError::Offline { .. })), "{err:#}");
        assert!(!other.has_blob(&pin.sha256));
    }

    /// An index of `n` entries, some with long multi-line descriptions, one of which is larger
    /// than a chunk.
    fn index(n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "Package: pkg{i}\nVersion: 1.{i}-1\nArchitecture: amd64\nDepends: libc6 (>= 2.36), pkg{} | other\n\
                 Filename: pool/main/p/pkg{i}_1.{i}-1_amd64.deb\nSize: {i}\nSHA256: {:064x}\nDescription: entry {i}\n",
                i + 1,
                i
            ));
            let lines = if i == 7 { CHUNK_BYTES / 20 } else { i % 13 };
            for l in 0..lines {
                text.push_str(&format!(" line {l} of a long description\n"));
            }
            // Runs of empty lines are one separator.
            text.push_str(if i % 5 == 0 { "\n\n\n" } else { "\n" });
        }
        text
    }

    fn parse(text: &str, codec: Codec, wanted: &Wanted<'_>) -> anyhow::Result<Vec<Package>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Packages");
        let mut encoder = codec.encoder(Vec::new()).unwrap();
        encoder.write_all(text.as_bytes()).unwrap();
        fs_err::write(&path, encoder.finish().unwrap()).unwrap();
        parse_index(fs_err::File::open(&path).unwrap(), None, wanted).map(|(packages, _)| packages)
    }

    #[test]
    fn the_decompressed_text_is_kept_byte_for_byte() {
        let text = index(3_000);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let path = dir.path().join("Packages.xz");
        let mut encoder = Codec::Xz.encoder(Vec::new()).unwrap();
        encoder.write_all(text.as_bytes()).unwrap();
        fs_err::write(&path, encoder.finish().unwrap()).unwrap();
        let (_, kept) =
            parse_index(fs_err::File::open(&path).unwrap(), Some(store.writer().unwrap()), &|_| true).unwrap();
        let expected = Digest::of(text.as_bytes());
        let (digest, size) = kept.unwrap().commit_expecting("index", expected, Some(text.len() as u64)).unwrap();
        assert_eq!((digest, size), (expected, text.len() as u64));
        assert_eq!(fs_err::read(store.blob_path(&digest)).unwrap(), text.as_bytes());
    }

    #[test]
    fn chunked_parsing_gives_what_one_pass_gives() {
        let text = index(40_000);
        assert!(text.len() > 4 * CHUNK_BYTES);
        let whole = crate::debian::packages::parse_index(&text).unwrap();
        for codec in [Codec::None, Codec::Xz, Codec::Gzip] {
            assert!(parse(&text, codec, &|_| true).unwrap() == whole, "{codec:?}");
        }
        let some = parse(&text, Codec::None, &|name| name.ends_with('7')).unwrap();
        let expected: Vec<_> = whole.into_iter().filter(|p| p.name.as_str().ends_with('7')).collect();
        assert!(some == expected);
    }

    #[test]
    fn errors_name_the_line_of_the_whole_index() {
        let good = index(30_000);
        for (bad_line, bad) in [("Size: 29990\n", "Size: 29990\nsize: 1\n"), ("Size: 29999\n", "Size: x\n")] {
            // Corrupt the last entry that has the line, far past the first chunk.
            let at = good.rfind(bad_line).unwrap();
            let text = format!("{}{bad}{}", &good[..at], &good[at + bad_line.len()..]);
            let whole = crate::debian::packages::parse_index(&text).unwrap_err();
            let chunked = parse(&text, Codec::None, &|_| true).unwrap_err();
            let chunked = chunked.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ");
            // The message that names the line: the index error's own, or its source's.
            let texts = [Some(whole.to_string()), std::error::Error::source(&whole).map(|e| e.to_string())];
            let named = texts.iter().flatten().find(|t| t.contains("line 5")).expect("a line is named");
            assert!(chunked.contains(named.as_str()), "{chunked} / {named}");
        }
        let not_utf8 = [good.as_bytes(), b"Package: \xff\n"].concat();
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("P"), not_utf8).unwrap();
        let Err(e) = parse_index(fs_err::File::open(dir.path().join("P")).unwrap(), None, &|_| true) else {
            panic!("an error was expected")
        };
        assert_eq!(e.to_string(), "it is not UTF-8");
    }
}
