//! Channels: append-only, hash-chained logs of signed promotion records, and the policy
//! that says who may append what.
//!
//! A channel (`nightly`, `qualified`, `production` …) is a folder of records named by
//! sequence number (`00000001.json`, …). Each record is a DSSE envelope of an in-toto
//! Statement whose subject is the candidate's `manifest.json` (its sha256 *is* the candidate
//! id) and whose predicate (`urn:candidate:promotion:v1`) names the channel, the sequence
//! (from 1, +1 each time), the candidate, the sha256 of the previous record's statement, the
//! time, an optional note and expiry. The chain covers statements, not envelopes, so adding
//! a co-signature never breaks it. A promotion that needs more signatures than one waits in
//! `pending.json` until enough distinct trusted keys have signed the same statement.
//!
//! Verification re-derives everything: each record's signatures against the policy's keys
//! and threshold, its channel, its sequence (no gap, no reordering), its link to the
//! previous statement, and — against a record kept in the store of the highest sequence
//! seen — that the log was not rolled back or truncated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{KeyError, PublicKey};

pub const PROMOTION: &str = "urn:candidate:promotion:v1";
pub const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("failed to read policy `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid policy `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("policy `{}` defines no channel `{channel}`", path.display())]
    UnknownChannel { path: PathBuf, channel: String },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// `channels.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Keys that vouch for candidates' provenance (`manifest.intoto.json`).
    verify: TrustFile,
    #[serde(default)]
    channel: BTreeMap<String, ChannelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    keys: Vec<PathBuf>,
    #[serde(default = "one")]
    threshold: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ChannelFile {
    keys: Vec<PathBuf>,
    #[serde(default = "one")]
    threshold: usize,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    attestations: Vec<String>,
    /// Keys trusted to sign required attestations (default: the channel's and the
    /// verify keys).
    #[serde(default)]
    attestation_keys: Vec<PathBuf>,
    /// Records of this channel expire this many days after they are made.
    expires_after_days: Option<u64>,
    /// System files (relative to the policy) whose qualification must have PASSED for
    /// this candidate and the plan it makes with each (`candidate test --system`).
    #[serde(default)]
    system_tests: Vec<PathBuf>,
    /// Identical rebuild attestations required, each by a distinct key of `rebuilders`
    /// ([`crate::rebuild_attest`]).
    #[serde(default)]
    rebuilds: usize,
    #[serde(default)]
    rebuilders: Vec<PathBuf>,
    /// `[channel.NAME.budgets]`: limits against the channel's head ([`crate::budget`]).
    budgets: Option<crate::budget::BudgetsFile>,
}

fn one() -> usize {
    1
}

/// The loaded policy.
pub struct Policy {
    pub path: PathBuf,
    pub verify_keys: Vec<PublicKey>,
    pub verify_threshold: usize,
    pub channels: BTreeMap<String, ChannelPolicy>,
}

pub struct ChannelPolicy {
    pub keys: Vec<PublicKey>,
    pub threshold: usize,
    pub requires: Vec<String>,
    pub attestations: Vec<String>,
    pub attestation_keys: Vec<PublicKey>,
    pub expires_after_days: Option<u64>,
    /// System files, resolved against the policy's folder.
    pub system_tests: Vec<PathBuf>,
    /// Identical rebuilds required, by distinct keys of `rebuilders`.
    pub rebuilds: usize,
    pub rebuilders: Vec<PublicKey>,
    pub budgets: Option<crate::budget::Budgets>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            fs_err::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
        let file: PolicyFile = toml::from_str(&text)
            .map_err(|e| PolicyError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let load = |keys: &[PathBuf]| keys.iter().map(|k| PublicKey::load(&dir.join(k))).collect::<Result<Vec<_>, _>>();
        let verify_keys = load(&file.verify.keys)?;
        let mut channels = BTreeMap::new();
        for (name, c) in file.channel {
            for required in &c.requires {
                if required == &name {
                    return Err(PolicyError::Parse {
                        path: path.to_owned(),
                        message: format!("channel `{name}` requires itself"),
                    });
                }
            }
            let rebuilders = load(&c.rebuilders)?;
            let distinct: std::collections::BTreeSet<_> = rebuilders.iter().map(|k| k.id).collect();
            if c.rebuilds > distinct.len() {
                return Err(PolicyError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "channel `{name}` requires {} rebuilds by distinct keys but `rebuilders` names {} key(s)",
                        c.rebuilds,
                        distinct.len()
                    ),
                });
            }
            let keys = load(&c.keys)?;
            let budgets = c.budgets.map(|b| b.load(load)).transpose().map_err(|message| PolicyError::Parse {
                path: path.to_owned(),
                message: format!("channel `{name}`: {message}"),
            })?;
            let attestation_keys = if c.attestation_keys.is_empty() {
                [keys.clone(), verify_keys.clone()].concat()
            } else {
                load(&c.attestation_keys)?
            };
            channels.insert(
                name,
                ChannelPolicy {
                    keys,
                    threshold: c.threshold.max(1),
                    requires: c.requires,
                    attestations: c.attestations,
                    attestation_keys,
                    expires_after_days: c.expires_after_days,
                    system_tests: c.system_tests.iter().map(|p| dir.join(p)).collect(),
                    rebuilds: c.rebuilds,
                    rebuilders,
                    budgets,
                },
            );
        }
        Ok(Policy { path: path.to_owned(), verify_keys, verify_threshold: file.verify.threshold.max(1), channels })
    }

    pub fn channel(&self, name: &str) -> Result<&ChannelPolicy, PolicyError> {
        self.channels
            .get(name)
            .ok_or_else(|| PolicyError::UnknownChannel { path: self.path.clone(), channel: name.to_owned() })
    }
}

/// One promotion record, as verified.
#[derive(Debug, Clone)]
pub struct Record {
    pub sequence: u64,
    pub candidate: Digest,
    pub name: String,
    pub version: String,
    pub time: String,
    pub note: Option<String>,
    pub expires: Option<u64>,
    /// sha256 of the statement (what the next record chains to).
    pub statement_digest: Digest,
    pub signers: usize,
    pub file: PathBuf,
    /// The budgets this promotion overrode, and why.
    pub overridden: Option<crate::budget::Override>,
    /// What it changed since the previous head (none in records made before release notes).
    pub release_note: Option<crate::release_notes::ReleaseNote>,
}

/// The statement of a new promotion record; `extra` adds predicate fields (the gate's
/// `override` and `release-note`, [`crate::budget::Gate::predicate_fields`]).
#[allow(clippy::too_many_arguments)]
pub fn statement(
    channel: &str,
    sequence: u64,
    candidate: &Digest,
    name: &str,
    version: &str,
    previous: Option<&Digest>,
    now: u64,
    note: Option<&str>,
    expires: Option<u64>,
    extra: serde_json::Map<String, Value>,
) -> Vec<u8> {
    let mut value = json!({
        "_type": crate::attest::STATEMENT_TYPE,
        "subject": [{ "name": "manifest.json", "digest": { "sha256": candidate.hex() } }],
        "predicateType": PROMOTION,
        "predicate": {
            "channel": channel,
            "sequence": sequence,
            "candidate": candidate,
            "name": name,
            "version": version,
            "previous": previous,
            "time": crate::sbom::rfc3339(now),
            "timestamp": now,
            "note": note,
            "expires": expires,
        },
    });
    value["predicate"].as_object_mut().expect("the predicate is an object").extend(extra);
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// Why a channel's log does not verify: the first bad record and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("record `{}`: {reason}", file.display())]
pub struct BadRecord {
    pub file: PathBuf,
    pub reason: String,
}

/// The record files of a channel folder, in sequence order (by file name).
pub fn record_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match fs_err::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.len() == 13 && n.ends_with(".json") && n[..8].bytes().all(|b| b.is_ascii_digit())
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}

/// The file name of record `sequence`.
pub fn record_name(sequence: u64) -> String {
    format!("{sequence:08}.json")
}

/// Parses and checks one envelope as a record of `channel` signed by `policy`'s keys.
pub fn read_record(file: &Path, channel: &str, policy: &ChannelPolicy) -> Result<(Record, Value), BadRecord> {
    let bytes = fs_err::read(file).map_err(|e| BadRecord { file: file.to_owned(), reason: e.to_string() })?;
    parse_record(file, &bytes, channel, policy)
}

/// [`read_record`] of bytes already read from `file` (which only names the record): the
/// entry point of the fuzz target for channel records.
pub fn parse_record(
    file: &Path,
    bytes: &[u8],
    channel: &str,
    policy: &ChannelPolicy,
) -> Result<(Record, Value), BadRecord> {
    let bad = |reason: String| BadRecord { file: file.to_owned(), reason };
    let envelope = Envelope::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let verified = envelope
        .verify(IN_TOTO_PAYLOAD_TYPE, &policy.keys, policy.threshold)
        .map_err(|e| bad(format!("signatures: {e}")))?;
    let statement: Value = serde_json::from_slice(&verified.payload).map_err(|e| bad(format!("not JSON: {e}")))?;
    let p = &statement["predicate"];
    if statement["predicateType"] != PROMOTION {
        return Err(bad(format!("not a promotion record (predicate type {})", statement["predicateType"])));
    }
    if p["channel"] != channel {
        return Err(bad(format!("belongs to channel {}, not `{channel}`", p["channel"])));
    }
    let candidate: Digest =
        p["candidate"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("no candidate id".into()))?;
    let subject = statement["subject"][0]["digest"]["sha256"].as_str().unwrap_or_default();
    if subject != candidate.hex() {
        return Err(bad("its subject is not the candidate it names".into()));
    }
    let record = Record {
        sequence: p["sequence"].as_u64().ok_or_else(|| bad("no sequence number".into()))?,
        candidate,
        name: p["name"].as_str().unwrap_or_default().to_owned(),
        version: p["version"].as_str().unwrap_or_default().to_owned(),
        time: p["time"].as_str().unwrap_or_default().to_owned(),
        note: p["note"].as_str().map(str::to_owned),
        expires: p["expires"].as_u64(),
        statement_digest: Digest::of(&verified.payload),
        signers: verified.signers.len(),
        file: file.to_owned(),
        overridden: typed(&p["override"]).map_err(|e| bad(format!("its `override` is malformed: {e}")))?,
        release_note: typed(&p["release-note"]).map_err(|e| bad(format!("its `release-note` is malformed: {e}")))?,
    };
    Ok((record, statement))
}

/// A predicate field read as its type; absent (or null) is `None`.
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<Option<T>, serde_json::Error> {
    if value.is_null() {
        return Ok(None);
    }
    T::deserialize(value).map(Some)
}

/// Verifies a channel's whole log: returns its records in order, or the first bad one.
pub fn verify_log(dir: &Path, channel: &str, policy: &ChannelPolicy) -> Result<Vec<Record>, BadRecord> {
    let files = record_files(dir).map_err(|e| BadRecord { file: dir.to_owned(), reason: e.to_string() })?;
    let mut records: Vec<Record> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let expected = i as u64 + 1;
        let bad = |reason: String| BadRecord { file: file.clone(), reason };
        let (record, statement) = read_record(file, channel, policy)?;
        if file.file_name().and_then(|n| n.to_str()) != Some(record_name(expected).as_str()) {
            return Err(bad(format!("expected record {expected} here: a record is missing (a gap)")));
        }
        if record.sequence != expected {
            return Err(bad(format!(
                "holds sequence {}, expected {expected}: records were reordered or removed",
                record.sequence
            )));
        }
        let previous = statement["predicate"]["previous"].as_str().map(|s| s.to_owned());
        let want = records.last().map(|r| r.statement_digest.to_string());
        if previous != want {
            return Err(bad(format!(
                "links to {}, but the previous statement is {}: the chain is broken",
                previous.as_deref().unwrap_or("nothing"),
                want.as_deref().unwrap_or("nothing (this is the first record)")
            )));
        }
        records.push(record);
    }
    Ok(records)
}

/// Why an attestation beside a candidate does not count for it. Each is reported on one line
/// of a verdict (`verify`, `promote`), inside a sentence naming the file, so the detail of a
/// JSON error is in the message rather than a `#[source]` that line would not show.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Envelope(#[from] crate::dsse::DsseError),
    #[error("its statement is not JSON: {0}")]
    Statement(String),
    #[error("it is not about this candidate (no `manifest.json` subject with its id)")]
    NotAboutCandidate,
    #[error("its predicate type is {0}")]
    PredicateType(Value),
    #[error("its result is {0}")]
    NotPassed(Value),
}

/// Verifies a test-result (or any required) attestation envelope for a candidate.
pub fn check_attestation(
    file: &Path,
    predicate_type: &str,
    candidate: &Digest,
    keys: &[PublicKey],
) -> Result<(), AttestationError> {
    let statement = read_attestation(file, candidate, keys)?;
    if statement["predicateType"] != predicate_type {
        return Err(AttestationError::PredicateType(statement["predicateType"].clone()));
    }
    if predicate_type == TEST_RESULT && statement["predicate"]["result"] != "PASSED" {
        return Err(AttestationError::NotPassed(statement["predicate"]["result"].clone()));
    }
    Ok(())
}

/// The statement of an attestation envelope about `candidate`, once a trusted key's signature
/// over its exact payload checks and its subject names the candidate's `manifest.json`.
pub fn read_attestation(file: &Path, candidate: &Digest, keys: &[PublicKey]) -> Result<Value, AttestationError> {
    parse_attestation(&fs_err::read(file)?, candidate, keys)
}

/// [`read_attestation`] of an envelope's bytes: the entry point of the fuzz target for
/// statements.
pub fn parse_attestation(bytes: &[u8], candidate: &Digest, keys: &[PublicKey]) -> Result<Value, AttestationError> {
    let envelope = Envelope::parse(bytes)?;
    let verified = envelope.verify(IN_TOTO_PAYLOAD_TYPE, keys, 1)?;
    let statement: Value =
        serde_json::from_slice(&verified.payload).map_err(|e| AttestationError::Statement(e.to_string()))?;
    let names_candidate = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["name"] == "manifest.json" && s["digest"]["sha256"] == candidate.hex().as_str());
    if !names_candidate {
        return Err(AttestationError::NotAboutCandidate);
    }
    Ok(statement)
}

/// The highest head of a signed log this machine verified (a channel's records, a feed's
/// statement), kept as `SEQUENCE DIGEST` in one file: a later check refuses an older head (a
/// rollback) or another record at the same sequence (a rewrite). Held under an exclusive
/// `flock` on `FILE.lock` from [`Seen::open`] until dropped, so two checks at once cannot
/// move it back. A file of the older form, `SEQUENCE` alone, has no digest to compare.
pub struct Seen {
    path: PathBuf,
    _lock: std::fs::File,
    /// The sequence and record digest verified before, if any.
    pub head: Option<(u64, Option<Digest>)>,
}

impl Seen {
    /// Locks and reads the file at `path` (missing: nothing verified yet). Content that is
    /// not `SEQUENCE [DIGEST]` is an error naming the file: read as nothing, it would turn the
    /// protection off.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs_err::create_dir_all(parent)?;
        let lock = crate::store::lock_beside(path, libc::LOCK_EX)?;
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let garbled = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "`{}` is not `SEQUENCE DIGEST`: {text:?} (remove it to trust the log as it is now)",
                    path.display()
                ),
            )
        };
        let mut fields = text.split_whitespace();
        let head = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => None,
            (Some(n), digest, None) => {
                let n = n.parse().map_err(|_| garbled())?;
                Some((n, digest.map(|d| d.parse().map_err(|_| garbled())).transpose()?))
            }
            _ => return Err(garbled()),
        };
        Ok(Seen { path: path.to_owned(), _lock: lock, head })
    }

    /// Records `sequence` and its `record` as the highest head verified: written whole and
    /// synced beside the file, renamed over it, the folder synced.
    pub fn record(&self, sequence: u64, record: &Digest) -> std::io::Result<()> {
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new().prefix(".seen-").tempfile_in(parent)?;
        std::io::Write::write_all(&mut temp, format!("{sequence} {record}\n").as_bytes())?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        crate::store::sync_parent(&self.path)
    }
}
