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

use super::control::{Dialect, Stanzas};
use super::packages::Package;
use super::release::{verify_inrelease, Keyring, Release};
use crate::digest::{Digest, Hasher};
use crate::fetch::{self, Network, Pin};
use crate::lockfile::{LockedArchive, LockedIndex};
use crate::recipe::{ArchiveSpec, Origin};
use crate::store::Store;

/// How far in the future a `Date` may be before the clock (or the archive) is distrusted.
pub const DATE_SKEW_SECONDS: i64 = 600;

/// Decompressed `Packages` indexes larger than this are refused (Debian's biggest, bookworm
/// main amd64, is about 50 MB).
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// An archive as the recipe names it, at the location this run uses.
pub struct Source<'a> {
    pub name: &'a str,
    pub spec: &'a ArchiveSpec,
    /// The archive root: the recipe's `url`, or the `--mirror` given for this archive.
    pub root: Origin,
    pub keyring: &'a Keyring,
    pub keyring_digest: Digest,
}

impl Source<'_> {
    fn origin(&self, rel: &str) -> Origin {
        self.root.join(rel)
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
    architectures: &[String],
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
    let packages = read_indexes(store, source, &indexes, network, &|_| true)?;
    let locked = LockedArchive {
        name: source.name.to_owned(),
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
    wanted: &dyn Fn(&str) -> bool,
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
    let packages = read_indexes(store, source, &locked.indexes, network, wanted)?;
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

/// Fetches `InRelease` (the current one, or the pinned one), verifies it against the
/// keyring — key validity at the signature's time and, given `now`, today — and parses it.
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
    let (digest, size) =
        fetch::fetch(store, &origin, pin, network, &|_| {}).with_context(|| context("cannot be fetched"))?;
    let bytes = fs_err::read(store.blob_path(&digest))?;
    let verified = verify_inrelease(&bytes, source.keyring, now).with_context(|| context("is not trustworthy"))?;
    let release = verified.release().with_context(|| context("is not a valid `Release`"))?;
    Ok((digest, size, release))
}

/// The first form of `COMPONENT/binary-ARCH/Packages` the `Release` lists.
fn pick_index(source: &Source<'_>, release: &Release, component: &str, arch: &str) -> anyhow::Result<LockedIndex> {
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
fn read_indexes(
    store: &Store,
    source: &Source<'_>,
    indexes: &[LockedIndex],
    network: Network,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Package>> {
    let mut packages = Vec::new();
    for index in indexes {
        let path = source.dists(&index.path);
        let pin = Pin { sha256: index.sha256, size: Some(index.size) };
        fetch::fetch(store, &source.origin(&path), Some(pin), network, &|_| {})
            .with_context(|| format!("archive `{}`: index `{path}`", source.name))?;
        let text = decompress_index(store, &index.sha256)
            .with_context(|| format!("archive `{}`: index `{path}`", source.name))?;
        let context = || format!("archive `{}`: index `{path}`", source.name);
        for stanza in Stanzas::new(&text, Dialect::Archive) {
            let stanza = stanza.with_context(context)?;
            if wanted(stanza.get("Package").unwrap_or_default()) {
                packages.push(Package::from_stanza(&stanza).with_context(context)?);
            }
        }
    }
    Ok(packages)
}

fn decompress_index(store: &Store, digest: &Digest) -> anyhow::Result<String> {
    use std::io::Read as _;
    let file = fs_err::File::open(store.blob_path(digest))?;
    let (_, decoded) = crate::compress::decoder(file)?;
    let mut text = Vec::new();
    decoded.take(MAX_INDEX_BYTES + 1).read_to_end(&mut text).context("cannot decompress it")?;
    if text.len() as u64 > MAX_INDEX_BYTES {
        bail!("it decompresses to more than {MAX_INDEX_BYTES} bytes; refusing it");
    }
    String::from_utf8(text).map_err(|_| anyhow::anyhow!("it is not UTF-8"))
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
    let seen: Option<Seen> = fs_err::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(seen) = &seen {
        if release.date < seen.date && !allow {
            bail!(
                "archive `{}`: rollback refused: its `InRelease` is dated {} (unix time), older than {} already seen from this archive\n\nhint: a mirror is stale or replaying an old `InRelease`; pass `--allow-rollback` to lock against it knowingly",
                source.name,
                release.date,
                seen.date
            );
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
