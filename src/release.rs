//! Release management over channels ([`crate::channel`]): promotion, verified logs, and which
//! channels hold which candidate. The commands (`list`, `promote`, `channel show|verify`) are
//! in `ops::release`.
//!
//! A promotion never rebuilds or copies a candidate: it appends a signed record naming the
//! candidate's id to a channel's log, after checking the policy — the key is trusted for
//! the channel, the candidate verifies, it is already in the prerequisite channels, and it
//! carries the required attestations. Any unmet rule is a refusal (exit 1) that names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::Value;

use crate::channel::{self, Policy, Record};
use crate::context::Context;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::error::CheckFailed;
use crate::keys::PrivateKey;
use crate::manifest::Manifest;
use crate::registry::resolve as resolve_in;
use crate::verify::{self, Report};

/// Where channel logs live: `--channels DIR`, else the store.
pub fn channels_dir(ctx: &Context, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| ctx.store.root().join("channels"), Path::to_owned)
}

fn refuse(message: String) -> anyhow::Error {
    CheckFailed { message, hint: None }.into()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Which channels name which candidate ids, by id (unverified: for a listing, not a verdict).
pub fn memberships(ctx: &Context, channels: Option<&Path>) -> BTreeMap<Digest, Vec<String>> {
    let dir = channels_dir(ctx, channels);
    let mut in_channels: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let Ok(entries) = fs_err::read_dir(&dir) else { return in_channels };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        for file in channel::record_files(&entry.path()).unwrap_or_default() {
            let id = fs_err::read(&file)
                .ok()
                .and_then(|b| Envelope::parse(&b).ok())
                .and_then(|e| decode(&e.payload).ok())
                .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
                .and_then(|s| s["predicate"]["candidate"].as_str().and_then(|c| c.parse::<Digest>().ok()));
            if let Some(id) = id {
                let list = in_channels.entry(id).or_default();
                if !list.contains(&name) {
                    list.push(name.clone());
                }
            }
        }
    }
    in_channels
}

/// What a promotion did: appended a record, or left a pending one awaiting more signatures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Promotion {
    Promoted { sequence: u64 },
    Pending { signed: usize, threshold: usize },
}

/// Promotes `candidate` into `channel_name` (`candidate promote`): checks the policy
/// (`admit`), then the channel's budgets against its head (`budget::gate`, which also writes
/// the release note), then signs the record (`sign_record`) and appends it once enough
/// trusted keys have signed. Returns the candidate id and what happened.
#[allow(clippy::too_many_arguments)] // the command's arguments, each needed once
pub fn promote(
    ctx: &Context,
    candidate: &str,
    channel_name: &str,
    key: &Path,
    note: Option<&str>,
    override_reason: Option<&str>,
    policy_path: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<(Digest, Promotion)> {
    let policy = Policy::load(policy_path)?;
    let rules = policy.channel(channel_name)?;
    let key = PrivateKey::load(key)?;
    let (dir, id) = resolve_in(&ctx.store, candidate)?;
    let root = channels_dir(ctx, channels);
    admit(ctx, &policy, channel_name, &key, &dir, &id, &root)?;
    let manifest = Manifest::read(&dir.join(MANIFEST))?;
    let version = manifest.image.version.to_string();
    let image = (manifest.image.name.as_str(), version.as_str());

    let log_dir = root.join(channel_name);
    fs_err::create_dir_all(&log_dir)?;
    // Held until the record is written: the next record's number is read from the log, so
    // two promotes to one channel must take turns, not both claim the same number.
    let _turn = take_turn(&log_dir)?;
    let records = channel::verify_log(&log_dir, channel_name, rules)
        .map_err(|e| refuse(format!("channel `{channel_name}` does not verify: {e}")))?;
    // Never a record on top of a log older than, or other than, one this store verified.
    not_rolled_back(ctx, channel_name, &records)?;
    let pending_path = log_dir.join("pending.json");
    // A pending record's statement (its override and release note with it) was made by its
    // first signer: later signers co-sign it as it is.
    let extra = if pending_path.exists() {
        if override_reason.is_some() {
            return Err(refuse(format!(
                "channel `{channel_name}` has a pending record awaiting signatures: `--override` belongs to the promote that starts a record"
            )));
        }
        serde_json::Map::new()
    } else {
        let head = records.last().map(|r| crate::budget::Head { sequence: r.sequence, candidate: r.candidate });
        crate::budget::gate(ctx, channel_name, rules.budgets.as_ref(), head, &dir, &key, override_reason)?
            .predicate_fields()
    };
    let envelope = sign_record(&pending_path, channel_name, rules, &records, &id, image, note, extra, &key)?;
    let signed = envelope.verify(IN_TOTO_PAYLOAD_TYPE, &rules.keys, 1).map(|v| v.signers.len()).unwrap_or(0);
    if signed < rules.threshold {
        let mut temp = tempfile::Builder::new()
            .prefix(".pending-")
            .permissions(crate::store::public_mode())
            .tempfile_in(&log_dir)?;
        std::io::Write::write_all(&mut temp, &envelope.to_json())?;
        temp.as_file().sync_all()?;
        temp.persist(&pending_path).map_err(|e| e.error)?;
        return Ok((id, Promotion::Pending { signed, threshold: rules.threshold }));
    }
    let statement: Value = serde_json::from_slice(&decode(&envelope.payload)?)?;
    let sequence = statement["predicate"]["sequence"].as_u64().unwrap_or_default();
    let path = log_dir.join(channel::record_name(sequence));
    // Written whole and synced beside it, then linked to its name: a record is never seen
    // half-written (a killed promote or a full disk left one that wedged the channel), and
    // never overwritten, even by a concurrent promotion (the link fails if the name exists).
    let mut temp =
        tempfile::Builder::new().prefix(".record-").permissions(crate::store::public_mode()).tempfile_in(&log_dir)?;
    std::io::Write::write_all(&mut temp, &envelope.to_json()).and_then(|()| temp.as_file().sync_all()).with_context(
        || format!("cannot write record {sequence} of channel `{channel_name}` in `{}`", log_dir.display()),
    )?;
    match fs_err::hard_link(temp.path(), &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("record {sequence} of channel `{channel_name}` already exists (`{}`)", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write record {sequence} of channel `{channel_name}`")),
    }
    drop(temp);
    crate::store::sync_parent(&path)?;
    let _ = fs_err::remove_file(&pending_path);
    Ok((id, Promotion::Promoted { sequence }))
}

/// Waits for, then holds, the channel's lock (`flock` on `CHANNEL/.lock`, released when the
/// file is dropped, or by the kernel if the process dies: a killed promote never wedges a
/// channel). The file is not a record: [`channel::record_files`] lists only `NNNNNNNN.json`.
fn take_turn(log_dir: &Path) -> anyhow::Result<fs_err::File> {
    let path = log_dir.join(".lock");
    let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    crate::store::flock(file.file(), libc::LOCK_EX).with_context(|| format!("cannot lock `{}`", path.display()))?;
    Ok(file)
}

/// The policy's admission rules for one channel, each unmet one a refusal naming it: the key
/// is trusted for the channel, the candidate verifies, it is already in every prerequisite
/// channel, and it carries every required attestation.
fn admit(
    ctx: &Context,
    policy: &Policy,
    channel_name: &str,
    key: &PrivateKey,
    dir: &Path,
    id: &Digest,
    root: &Path,
) -> anyhow::Result<()> {
    let rules = policy.channel(channel_name)?;
    if !rules.keys.iter().any(|k| k.id == key.public.id) {
        return Err(refuse(format!(
            "key {} (`{}`) is not trusted for channel `{channel_name}`",
            key.public.id, key.public.origin
        )));
    }
    let mut report = Report::new(false);
    verify::check(ctx, dir, &policy.verify_keys, policy.verify_threshold, None, &mut report)?;
    if let Some(first) = report.failures.first() {
        return Err(refuse(format!("candidate {id} fails verification: {first}")));
    }
    for required in &rules.requires {
        let rules = policy.channel(required)?;
        let records = channel::verify_log(&root.join(required), required, rules)
            .map_err(|e| refuse(format!("prerequisite channel `{required}` does not verify: {e}")))?;
        not_rolled_back(ctx, required, &records)?;
        if !records.iter().any(|r| r.candidate == *id) {
            return Err(refuse(format!("candidate {id} is not in the prerequisite channel `{required}`")));
        }
    }
    for predicate_type in &rules.attestations {
        check_required_attestation(dir, predicate_type, id, &rules.attestation_keys)?;
    }
    for system in &rules.system_tests {
        check_system_attestation(ctx, dir, system, id, &rules.attestation_keys)?;
    }
    if rules.rebuilds > 0 {
        let quorum = crate::rebuild_attest::count(dir, id, &rules.rebuilders)?;
        if quorum.counted.len() < rules.rebuilds {
            return Err(CheckFailed {
                message: quorum.refusal(id, channel_name, rules.rebuilds),
                hint: Some(crate::rebuild_attest::HINT.to_owned()),
            }
            .into());
        }
    }
    Ok(())
}

/// A PASSED system qualification of this candidate whose plan is the plan this candidate
/// and the system file make now (so a test of an older system file does not count).
fn check_system_attestation(
    ctx: &Context,
    dir: &Path,
    system_file: &Path,
    id: &Digest,
    keys: &[crate::keys::PublicKey],
) -> anyhow::Result<()> {
    let system = crate::system::System::load(system_file)?;
    let manifest: serde_json::Value = serde_json::from_slice(&fs_err::read(dir.join(crate::dist::MANIFEST))?)?;
    let sde = manifest["source-date-epoch"].as_u64().unwrap_or_default();
    let plan = crate::system::plan::plan(&ctx.store, &system, *id, sde)?.digest;
    let subject = format!("{}{}", crate::system::plan::PLAN_SUBJECT_PREFIX, system.name);
    let mut problems = Vec::new();
    for path in crate::dist::attestation_files(dir)? {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let statement = match channel::read_attestation(&path, id, keys) {
            Ok(statement) => statement,
            Err(e) => {
                problems.push(format!("`{file}`: {e}"));
                continue;
            }
        };
        let names_plan = statement["subject"].as_array().into_iter().flatten().find(|s| s["name"] == subject.as_str());
        let Some(named) = names_plan else { continue };
        if named["digest"]["sha256"] != plan.hex().as_str() {
            problems.push(format!(
                "`{file}`: it tested plan sha256:{}, not {plan}",
                named["digest"]["sha256"].as_str().unwrap_or("?")
            ));
        } else if statement["predicateType"] != channel::TEST_RESULT || statement["predicate"]["result"] != "PASSED" {
            problems.push(format!("`{file}`: its result is {}", statement["predicate"]["result"]));
        } else {
            return Ok(());
        }
    }
    let detail = if problems.is_empty() { "none found".to_owned() } else { problems.join("; ") };
    Err(refuse(format!("a PASSED system test of `{}` (plan {plan}) is required ({detail})", system_file.display())))
}

/// The record's envelope with `key`'s signature: added to the pending record when one awaits
/// signatures for this candidate, else a new statement chained to the log's last record.
#[allow(clippy::too_many_arguments)] // the record's fields, each needed once
fn sign_record(
    pending_path: &Path,
    channel_name: &str,
    rules: &channel::ChannelPolicy,
    records: &[Record],
    id: &Digest,
    (name, version): (&str, &str),
    note: Option<&str>,
    extra: serde_json::Map<String, Value>,
    key: &PrivateKey,
) -> anyhow::Result<Envelope> {
    let head = records.last();
    let pending = match fs_err::read(pending_path) {
        Ok(bytes) => {
            let pending = Envelope::parse(&bytes)?;
            let statement: Value = serde_json::from_slice(&decode(&pending.payload)?)?;
            let sequence = statement["predicate"]["sequence"].as_u64();
            let previous = statement["predicate"]["previous"].as_str().map(str::to_owned);
            if sequence.is_some_and(|s| head.is_some_and(|h| s <= h.sequence)) {
                // Its record was written, and the promote ended before removing it: the
                // record is the promotion, the pending statement a leftover.
                fs_err::remove_file(pending_path)?;
                None
            } else if sequence != Some(head.map_or(1, |h| h.sequence + 1))
                || previous != head.map(|h| h.statement_digest.to_string())
            {
                return Err(refuse(format!(
                    "the pending promotion `{}` of channel `{channel_name}` does not follow the log's head \
                     (it is for sequence {}, after {}; the head is {}): remove it, or restore the log",
                    pending_path.display(),
                    sequence.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                    previous.as_deref().unwrap_or("nothing"),
                    head.map_or_else(|| "empty".to_owned(), |h| format!("{} ({})", h.sequence, h.statement_digest)),
                )));
            } else {
                Some((pending, statement))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    match pending {
        Some((mut pending, statement)) => {
            if statement["predicate"]["candidate"] != id.to_string() {
                return Err(refuse(format!(
                    "channel `{channel_name}` has a pending promotion of {} awaiting signatures",
                    statement["predicate"]["candidate"]
                )));
            }
            let mine = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &decode(&pending.payload)?, std::slice::from_ref(key));
            if !pending.signatures.iter().any(|s| s.keyid == mine.signatures[0].keyid) {
                pending.signatures.extend(mine.signatures);
            }
            Ok(pending)
        }
        None => {
            let previous: Option<&Record> = head;
            let time = now();
            let expires = rules.expires_after_days.map(|d| time + d * 86_400);
            let statement = channel::statement(
                channel_name,
                previous.map_or(1, |r| r.sequence + 1),
                id,
                name,
                version,
                previous.map(|r| &r.statement_digest),
                time,
                note,
                expires,
                extra,
            );
            Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement, std::slice::from_ref(key)))
        }
    }
}

fn decode(payload: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(payload)?)
}

/// Attestations live beside the candidate folder: `NAME_VERSION_ARCH.*.intoto.json`.
fn check_required_attestation(
    dir: &Path,
    predicate_type: &str,
    id: &Digest,
    keys: &[crate::keys::PublicKey],
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for path in crate::dist::attestation_files(dir)? {
        match channel::check_attestation(&path, predicate_type, id, keys) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                problems.push(format!("`{file}`: {e}"));
            }
        }
    }
    let detail = if problems.is_empty() { "none found".to_owned() } else { problems.join("; ") };
    Err(refuse(format!("required attestation `{predicate_type}` is missing or failed ({detail})")))
}

/// A channel's records, verified against the policy (a bad log is a refusal naming the
/// first bad record) and against what this store verified before ([`not_rolled_back`]).
pub fn verified_log(
    ctx: &Context,
    channel_name: &str,
    policy_path: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<Vec<Record>> {
    let policy = Policy::load(policy_path)?;
    let rules = policy.channel(channel_name)?;
    let dir = channels_dir(ctx, channels).join(channel_name);
    let records =
        channel::verify_log(&dir, channel_name, rules).map_err(|e| refuse(format!("channel `{channel_name}`: {e}")))?;
    not_rolled_back(ctx, channel_name, &records)?;
    Ok(records)
}

/// Refuses a channel log shorter than one this store verified before (rolled back or
/// truncated), or holding another record at the sequence it verified (rewritten: its length
/// can be the same), then remembers a newer head. Every reader of a log goes through it —
/// `channel verify` and `show`, promote, publish, deploy from a channel — so that an older or
/// rewritten log is refused wherever this store meets it.
fn not_rolled_back(ctx: &Context, channel_name: &str, records: &[Record]) -> anyhow::Result<()> {
    let seen_path = ctx.store.root().join("seen").join(channel_name);
    let seen = channel::Seen::open(&seen_path)
        .with_context(|| format!("cannot read the head of channel `{channel_name}` verified before"))?;
    let head = records.last();
    let length = head.map_or(0, |r| r.sequence);
    if let Some((n, digest)) = seen.head {
        if length < n {
            return Err(refuse(format!(
                "channel `{channel_name}` ends at record {length}, but record {n} was verified before: the log was rolled back or truncated"
            )));
        }
        // Records chain by digest: the one verified before, unchanged, vouches for all below it.
        let then = n.checked_sub(1).and_then(|i| records.get(i as usize)).map(|r| r.statement_digest);
        if let (Some(before), Some(now)) = (digest, then) {
            if before != now {
                return Err(refuse(format!(
                    "channel `{channel_name}` holds record {n} as {now}, but record {n} was verified before as {before}: the log was rewritten"
                )));
            }
        }
    }
    if let Some(head) = head.filter(|h| seen.head.is_none_or(|(n, d)| h.sequence > n || d.is_none())) {
        seen.record(head.sequence, &head.statement_digest).with_context(|| {
            format!("cannot record the head of channel `{channel_name}` in `{}`", seen_path.display())
        })?;
    }
    Ok(())
}

/// A channel's records, verified against the policy and against rollback
/// ([`verified_log`]); a head that has expired is a refusal too (`candidate channel verify`).
pub fn verify_channel(
    ctx: &Context,
    channel_name: &str,
    policy_path: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<Vec<Record>> {
    let records = verified_log(ctx, channel_name, policy_path, channels)?;
    if let Some(head) = records.last() {
        if head.expires.is_some_and(|e| e < now()) {
            return Err(refuse(format!("channel `{channel_name}`: its head, record {}, has expired", head.sequence)));
        }
    }
    Ok(records)
}
