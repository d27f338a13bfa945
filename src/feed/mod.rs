//! Signed image feeds: a channel's promoted candidates as a static folder that any web server
//! can serve, in the formats LXD/Incus, LXC and Proxmox VE read ([`index`]), with a signed
//! statement beside them that lets a site prove what it downloaded ([`verify`]).
//!
//! None of those consumers can check an image server's index beyond its transport: LXD checks
//! each file against the sha256 `images.json` gives, but nothing vouches for `images.json`;
//! LXC's download template (5.0) checks nothing but HTTPS; `pveam` checks a template's sha512
//! against an index it fetched the same way. So the feed carries `feed.intoto.json`: a DSSE
//! envelope of an in-toto statement whose subjects are **every file of the feed** (the
//! indexes and every image file, by sha256) and whose predicate binds them to the channel's
//! head: its name, its record sequence and the sha256 of the head record's statement (what the
//! channel's hash chain links). `verify-feed` then detects a changed index, a swapped image
//! file, and a feed rolled back to an older channel head (a lower sequence than one verified
//! before, remembered in the store like `channel verify` remembers logs).
//!
//! Layout of a feed folder:
//!
//! ```text
//! feed.intoto.json                        the signed statement
//! streams/v1/index.json, images.json      simplestreams (LXD/Incus)
//! meta/1.0/index-system                   LXC's download index
//! aplinfo.dat                             Proxmox VE's appliance index
//! images/OS/RELEASE/ARCH/NAME/SERIAL/     one folder per published candidate:
//!     lxd.tar.xz, root.tar.xz             the `incus` format (metadata, rootfs)
//!     meta.tar.xz, rootfs.tar.xz          the `lxc` format (LXC's own rootfs, LXC_NAME templated)
//!     OS-RELEASE-NAME_VERSION_ARCH.tar.zst  the `proxmox` format
//! ```
//!
//! A feed is written to a fresh folder beside the target and swapped in by one atomic
//! exchange ([`crate::dist::swap_in`]), so a web server serving it never shows a mix of two
//! publishes. Every image file is copied from the candidate folder and proved against the
//! candidate's manifest as it is copied.

pub mod index;
pub mod source;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attest::{DigestSet, StatementSubject};
use crate::channel::Record;
use crate::digest::{Digest, HashingWriter};
use crate::dsse::{DsseError, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::Manifest;
use crate::recipe::Format;
use index::{Image, LxdFiles, ProxmoxFile};
use source::{Source, SourceError};

/// The signed feed statement, at the feed's root.
pub const STATEMENT: &str = "feed.intoto.json";
/// The predicate type of a feed statement.
pub const PREDICATE: &str = "urn:candidate:feed:v1";
/// The largest feed statement or index read back (an index of thousands of images is a few
/// MiB); an image file is streamed and capped at [`crate::fetch::MAX_UNPINNED_BYTES`].
const INDEX_CAP: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "candidate {}: `{}` does not match its manifest (sha256 {}, {} bytes; expected {})",
        .0.candidate, .0.path.display(), .0.actual, .0.size, .0.expected
    )]
    Changed(Box<Mismatch>),
    #[error("candidate {candidate} (`{}`) has none of the formats a feed serves (`incus`, `lxc`, `proxmox`)", dir.display())]
    NoFormat { candidate: Digest, dir: PathBuf },
    #[error("candidate {candidate}: its manifest lists `{file}` for format `{format}`, but lists no such output")]
    MissingOutput { candidate: Digest, format: &'static str, file: String },
    #[error(
        "candidate {candidate}: its `incus` rootfs is `rootfs.tar.zst` (`[lxc] incus-rootfs = \"zstd\"`), and \
         LXD's simplestreams serves a split image's rootfs only as `root.tar.xz`: to publish it in a feed, \
         build it with `incus-rootfs = \"xz\"` or with the `rootfs.tar.xz` format too"
    )]
    IncusZstd { candidate: Digest },
    #[error("cannot write the feed at `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("`{0}` has no `{STATEMENT}`: it is not a signed feed")]
    Unsigned(String),
    #[error("`{STATEMENT}` is not a valid envelope")]
    Envelope(#[source] DsseError),
    #[error("`{STATEMENT}` is not signed by the trusted keys")]
    Signature(#[source] DsseError),
    #[error("`{STATEMENT}` holds no feed statement ({0})")]
    Statement(String),
}

/// A candidate file that is not what its manifest says (boxed: errors stay small).
#[derive(Debug)]
pub struct Mismatch {
    pub candidate: Digest,
    pub path: PathBuf,
    pub expected: Digest,
    pub actual: Digest,
    pub size: u64,
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> FeedError + '_ {
    move |source| FeedError::Write { path: path.to_owned(), source }
}

/// The in-toto statement of a feed: every file of the feed but the statement, sorted by
/// name, as its subjects.
pub type Statement = crate::attest::Statement<Predicate>;

/// What a feed is: a channel at one head record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Predicate {
    pub channel: String,
    /// The head record's sequence: what a rollback would lower.
    pub sequence: u64,
    /// sha256 of the head record's statement, the link the channel's hash chain uses.
    pub record: Digest,
    /// The head record's candidate.
    pub candidate: Digest,
    /// The indexes this feed holds (each also a subject).
    pub indexes: Vec<String>,
    /// Every candidate published, newest first.
    pub images: Vec<Published>,
    /// When the feed stops being valid (seconds since the epoch), if its publisher set a
    /// limit: a site is not kept on an old feed forever by a server that stops updating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// One candidate of a feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub candidate: Digest,
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The sequence of the newest record that promoted it into the channel.
    pub sequence: u64,
    pub serial: String,
    /// Its files in the feed.
    pub files: Vec<String>,
}

/// A candidate to publish: its newest record in the channel, its folder and manifest.
pub struct Member<'a> {
    pub record: &'a Record,
    pub dir: &'a Path,
    pub manifest: &'a Manifest,
}

/// Writes the feed of `channel` at head `head` with `members` (newest first) to `to`,
/// signed with `keys`, valid until `expires` (seconds since the epoch) if given, and swaps it
/// in. Returns the statement.
pub fn publish(
    channel: &str,
    head: &Record,
    members: &[Member<'_>],
    to: &Path,
    keys: &[PrivateKey],
    expires: Option<u64>,
) -> Result<Statement, FeedError> {
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "feed".into());
    fs_err::create_dir_all(&parent).map_err(write_error(&parent))?;
    // The staging name of candidate folders (`store gc` knows it): removed on any error below.
    let staging = tempfile::Builder::new()
        .prefix(&crate::store::sibling_prefix(&name, crate::store::Sibling::New))
        .tempdir_in(&parent)
        .map_err(write_error(&parent))?;
    let root = staging.path();

    let mut images = Vec::new();
    let mut published = Vec::new();
    for member in members {
        let (image, files) = place_member(root, member)?;
        published.push(Published {
            candidate: image.candidate,
            name: image.name.clone(),
            version: image.version.clone(),
            architecture: image.architecture.clone(),
            sequence: member.record.sequence,
            serial: image.serial.clone(),
            files,
        });
        images.push(image);
    }

    let mut indexes = Vec::new();
    let mut write_index = |rel: &str, bytes: &[u8]| -> Result<(), FeedError> {
        write_file(&root.join(rel), bytes)?;
        indexes.push(rel.to_owned());
        Ok(())
    };
    if let Some((stream, products)) = index::simplestreams(&images, &head.time) {
        write_index(index::SIMPLESTREAMS_INDEX, &crate::document::to_canonical(&stream))?;
        write_index(index::SIMPLESTREAMS_IMAGES, &crate::document::to_canonical(&products))?;
    }
    if let Some(text) = index::lxc_index(&images) {
        write_index(index::LXC_INDEX, text.as_bytes())?;
    }
    if let Some(text) = index::proxmox_index(&images, channel) {
        write_index(index::PROXMOX_INDEX, text.as_bytes())?;
    }

    let statement = Statement {
        statement_type: crate::attest::STATEMENT_TYPE.to_owned(),
        subject: subjects(root)?,
        predicate_type: PREDICATE.to_owned(),
        predicate: Predicate {
            channel: channel.to_owned(),
            sequence: head.sequence,
            record: head.statement_digest,
            candidate: head.candidate,
            indexes,
            images: published,
            expires,
        },
    };
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &crate::document::to_canonical(&statement), keys);
    write_file(&root.join(STATEMENT), &envelope.to_json())?;
    // Every folder made in it too (`images/…/SERIAL`, `streams/v1`): every file durable at its name.
    crate::store::sync_folders(root).map_err(write_error(root))?;

    let staging = staging.keep();
    if let Err(e) = crate::dist::swap_in(&staging, to) {
        let _ = fs_err::remove_dir_all(&staging);
        return Err(write_error(to)(e));
    }
    if staging.exists() {
        // After an exchange the staging path holds the previous feed.
        fs_err::remove_dir_all(&staging).map_err(write_error(&staging))?;
    }
    Ok(statement)
}

/// Copies one candidate's feed formats into its folder under `root`; returns what the
/// indexes say about it and its files (relative to `root`).
fn place_member(root: &Path, member: &Member<'_>) -> Result<(Image, Vec<String>), FeedError> {
    let manifest = member.manifest;
    let candidate = member.record.candidate;
    let i = &manifest.image;
    let serial = index::serial(&member.record.time, member.record.sequence);
    let folder = format!("images/{}/{}/{}/{}/{serial}", i.os, i.release, i.architecture, i.name);
    let mut files = Vec::new();
    let mut copy = |from: &str, to: &str, format: &'static str| -> Result<(String, Digest, u64), FeedError> {
        let output = manifest.output(from).ok_or_else(|| FeedError::MissingOutput {
            candidate,
            format,
            file: from.to_owned(),
        })?;
        let rel = format!("{folder}/{to}");
        copy_checked(candidate, &member.dir.join(from), &root.join(&rel), output.sha256)?;
        files.push(rel.clone());
        Ok((rel, output.sha256, output.size))
    };
    let has = |f: Format| manifest.formats.contains(&f);
    let lxd = if has(Format::Incus) {
        if manifest.incus_rootfs() != crate::recipe::IncusRootfs::Xz {
            return Err(FeedError::IncusZstd { candidate });
        }
        let meta = copy("incus.meta.tar.xz", "lxd.tar.xz", "incus")?;
        let rootfs = copy("rootfs.tar.xz", "root.tar.xz", "incus")?;
        let combined = combined_sha256(&[root.join(&meta.0), root.join(&rootfs.0)])?;
        Some(LxdFiles { meta, rootfs, combined })
    } else {
        None
    };
    let lxc = has(Format::Lxc);
    if lxc {
        // LXC's download template fetches exactly these two names from the folder.
        copy("meta.tar.xz", "meta.tar.xz", "lxc")?;
        copy(crate::lxc::ROOTFS, "rootfs.tar.xz", "lxc")?;
    }
    let proxmox = if has(Format::Proxmox) {
        let name = format!("{}-{}-{}_{}_{}.tar.zst", i.os, i.release, i.name, i.version, i.architecture);
        let (path, _, _) = copy(&name, &name, "proxmox")?;
        let (md5, sha512) = md5_sha512(&root.join(&path))?;
        Some(ProxmoxFile { path, md5, sha512 })
    } else {
        None
    };
    if lxd.is_none() && !lxc && proxmox.is_none() {
        return Err(FeedError::NoFormat { candidate, dir: member.dir.to_owned() });
    }
    let image = Image {
        os: i.os.clone(),
        release: i.release.clone(),
        architecture: i.architecture.to_string(),
        name: i.name.to_string(),
        version: i.version.to_string(),
        description: i.description.clone(),
        serial,
        candidate,
        folder,
        lxd,
        lxc,
        proxmox,
    };
    Ok((image, files))
}

/// Copies `from` to `to`, hashing on the way: anything but `expected` is refused (a candidate
/// folder changed since it was verified), and nothing of it stays in the feed.
fn copy_checked(candidate: Digest, from: &Path, to: &Path, expected: Digest) -> Result<(), FeedError> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent).map_err(write_error(parent))?;
    }
    let source = fs_err::File::open(from).map_err(|source| FeedError::Read { path: from.to_owned(), source })?;
    let out = fs_err::File::create(to).map_err(write_error(to))?;
    let mut writer = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, source), &mut writer).map_err(write_error(to))?;
    let (actual, size, buffered) = writer.finish();
    let out = buffered.into_inner().map_err(|e| FeedError::Write { path: to.to_owned(), source: e.into_error() })?;
    if actual != expected {
        let _ = fs_err::remove_file(to);
        return Err(FeedError::Changed(Box::new(Mismatch {
            candidate,
            path: from.to_owned(),
            expected,
            actual,
            size,
        })));
    }
    // Read-only, as a candidate's outputs are: a feed is replaced, never edited in place.
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444)).map_err(write_error(to))?;
    out.sync_all().map_err(write_error(to))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FeedError> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(write_error(parent))?;
    }
    let mut file = fs_err::File::create(path).map_err(write_error(path))?;
    std::io::Write::write_all(&mut file, bytes).map_err(write_error(path))?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444)).map_err(write_error(path))?;
    file.sync_all().map_err(write_error(path))
}

/// Reads `path` through in 1 MiB pieces, giving each to `f`.
fn for_each_chunk(path: &Path, mut f: impl FnMut(&[u8])) -> Result<(), FeedError> {
    let read_error = |source| FeedError::Read { path: path.to_owned(), source };
    let mut file = fs_err::File::open(path).map_err(read_error)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FeedError::Read { path: path.to_owned(), source }),
        }
    }
}

/// sha256 of the files' bytes one after the other (LXD's split-image fingerprint).
fn combined_sha256(paths: &[PathBuf]) -> Result<Digest, FeedError> {
    let mut hasher = crate::digest::Hasher::new();
    for path in paths {
        for_each_chunk(path, |chunk| {
            hasher.update(chunk);
        })?;
    }
    Ok(hasher.finish())
}

/// md5 and sha512 of a file, hex: what `aplinfo.dat` gives `pveam` to check.
fn md5_sha512(path: &Path) -> Result<(String, String), FeedError> {
    use sha2::Digest as _;
    let (mut md5, mut sha512) = (md5::Md5::new(), sha2::Sha512::new());
    for_each_chunk(path, |chunk| {
        md5.update(chunk);
        sha512.update(chunk);
    })?;
    Ok((hex::encode(md5.finalize()), hex::encode(sha512.finalize())))
}

/// Every file under `root` but the statement, hashed, sorted by name.
fn subjects(root: &Path) -> Result<Vec<StatementSubject>, FeedError> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| FeedError::Read { path: root.to_owned(), source: e.into() })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).expect("walkdir stays under its root");
        let name = rel.to_string_lossy().into_owned();
        if name != STATEMENT {
            names.push(name);
        }
    }
    names.sort();
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    let mut subjects = Vec::new();
    for (name, hashed) in names.into_iter().zip(crate::store::hash_paths(&paths)) {
        let (digest, _) = hashed.map_err(|source| FeedError::Read { path: root.join(&name), source })?;
        subjects.push(StatementSubject { name, digest: DigestSet { sha256: digest } });
    }
    Ok(subjects)
}

/// One line of a feed verification.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub check: String,
}

/// What `verify-feed` found: the statement (once its signature checked) and every check.
#[derive(Debug)]
pub struct Verdict {
    pub statement: Statement,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// Verifies the feed at `source`: the statement's signatures (`threshold` distinct `keys`),
/// then every file it names against its sha256, that every index the feed serves is one it
/// names, and (for a folder) that the feed holds no file it does not name. A statement that
/// does not verify is an error; a file that does not match is a failed check in the verdict.
pub fn verify(source: &Source, keys: &[PublicKey], threshold: usize) -> Result<Verdict, FeedError> {
    let bytes = source.read(STATEMENT, INDEX_CAP)?.ok_or_else(|| FeedError::Unsigned(source.describe("")))?;
    let envelope = Envelope::parse(&bytes).map_err(FeedError::Envelope)?;
    let verified = envelope.verify(IN_TOTO_PAYLOAD_TYPE, keys, threshold).map_err(FeedError::Signature)?;
    let statement: Statement =
        serde_json::from_slice(&verified.payload).map_err(|e| FeedError::Statement(e.to_string()))?;
    if statement.predicate_type != PREDICATE {
        return Err(FeedError::Statement(format!("predicate type `{}`", statement.predicate_type)));
    }
    let mut checks = vec![Check {
        ok: true,
        check: format!(
            "{STATEMENT}: {} trusted signature(s) of {threshold} required; channel `{}` at record {} ({})",
            verified.signers.len(),
            statement.predicate.channel,
            statement.predicate.sequence,
            statement.predicate.candidate
        ),
    }];
    let mut check = |ok: bool, check: String| checks.push(Check { ok, check });
    if let Some(expires) = statement.predicate.expires {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let at = crate::sbom::rfc3339(expires);
        if now < expires {
            check(true, format!("expiry: valid until {at}"));
        } else {
            check(false, format!("expiry: the feed expired at {at}: its publisher has not signed a newer one"));
        }
    }
    for subject in &statement.subject {
        let cap =
            if index::INDEXES.contains(&subject.name.as_str()) { INDEX_CAP } else { crate::fetch::MAX_UNPINNED_BYTES };
        match source.hash(&subject.name, cap) {
            Ok(Some((digest, _))) if digest == subject.digest.sha256 => {
                check(true, format!("{}: {}", subject.name, subject.digest.sha256));
            }
            Ok(Some((digest, size))) => check(
                false,
                format!("{}: changed: sha256 {digest} ({size} bytes), signed {}", subject.name, subject.digest.sha256),
            ),
            Ok(None) => check(false, format!("{}: missing from the feed", subject.name)),
            Err(e) => check(false, format!("{}: {e}", subject.name)),
        }
    }
    let named = |rel: &str| statement.subject.iter().any(|s| s.name == rel);
    for rel in &statement.predicate.indexes {
        if !named(rel) {
            check(false, format!("{rel}: an index of the feed that the statement does not sign"));
        }
    }
    match source.list()? {
        // A folder: nothing may be there that the statement does not name.
        Some(files) => {
            for file in files.iter().filter(|f| f.as_str() != STATEMENT && !named(f)) {
                check(false, format!("{file}: not signed by the feed statement"));
            }
        }
        // A web server lists nothing, but every index a consumer reads must be signed or absent.
        None => {
            for rel in index::INDEXES.iter().filter(|r| !named(r)) {
                if source.hash(rel, INDEX_CAP)?.is_some() {
                    check(false, format!("{rel}: served, but not signed by the feed statement"));
                }
            }
        }
    }
    Ok(Verdict { statement, checks })
}

/// Whether a verified feed is older than one verified before: the highest head this store
/// has verified for the channel is kept in `seen` (`SEQUENCE RECORD-DIGEST`). A lower sequence
/// is a rollback; the same sequence with another record is a rewritten channel. Returns the
/// refusal, or records the feed's head when it is the newest yet.
pub fn check_fresh(seen: &Path, predicate: &Predicate) -> Result<Option<String>, FeedError> {
    let path = seen;
    let seen = crate::channel::Seen::open(path).map_err(|source| FeedError::Read { path: path.to_owned(), source })?;
    let before = seen.head;
    let channel = &predicate.channel;
    match before {
        Some((n, _)) if predicate.sequence < n => {
            return Ok(Some(format!(
                "the feed of channel `{channel}` is at record {}, but record {n} was verified before: an older feed was replayed (a rollback)",
                predicate.sequence
            )));
        }
        Some((n, Some(record))) if predicate.sequence == n && record != predicate.record => {
            return Ok(Some(format!(
                "the feed of channel `{channel}` names record {n} as {}, but record {n} was verified before as {record}: the channel was rewritten",
                predicate.record
            )));
        }
        Some((n, _)) if predicate.sequence == n => return Ok(None),
        _ => {}
    }
    seen.record(predicate.sequence, &predicate.record).map_err(write_error(path))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predicate(sequence: u64, record: u8) -> Predicate {
        Predicate {
            channel: "production".into(),
            sequence,
            record: Digest::from_bytes([record; 32]),
            candidate: Digest::from_bytes([9; 32]),
            indexes: Vec::new(),
            images: Vec::new(),
            expires: None,
        }
    }

    #[test]
    fn freshness_refuses_an_older_head_and_a_rewritten_one_and_remembers_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen-feeds/production");
        assert_eq!(check_fresh(&seen, &predicate(2, 2)).unwrap(), None, "first sight");
        assert_eq!(check_fresh(&seen, &predicate(2, 2)).unwrap(), None, "the same head again");
        let rollback = check_fresh(&seen, &predicate(1, 1)).unwrap().unwrap();
        assert!(rollback.contains("is at record 1, but record 2 was verified before"), "{rollback}");
        let rewritten = check_fresh(&seen, &predicate(2, 7)).unwrap().unwrap();
        assert!(rewritten.contains("the channel was rewritten"), "{rewritten}");
        // A refusal changes nothing; a newer head moves what is remembered.
        assert_eq!(check_fresh(&seen, &predicate(3, 3)).unwrap(), None);
        assert!(check_fresh(&seen, &predicate(2, 2)).unwrap().is_some());
        assert!(fs_err::read_to_string(&seen).unwrap().starts_with("3 sha256:0303"));
    }

    #[test]
    fn a_signed_name_cannot_leave_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::Dir(dir.path().to_owned());
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a/../../b", ""] {
            assert!(matches!(source.read(bad, 10), Err(SourceError::BadPath(_))), "{bad}");
        }
        assert!(source.read("missing", 10).unwrap().is_none());
    }
}
