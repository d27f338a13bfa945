//! `candidate publish CHANNEL --to DIR --key KEY…`: the channel's newest candidates as a
//! signed static feed ([`crate::feed`]) that LXD/Incus, LXC and Proxmox VE read.
//!
//! Nothing is published that does not verify: the channel's log against the policy (every
//! signature, the hash chain), and each candidate against the policy's `[verify]` keys (every
//! check of `verify`), before a byte is copied.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::{CheckFailed, Context};
use crate::channel::{Policy, Record};
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::error::Hinted;
use crate::feed::{self, Member};
use crate::keys::PrivateKey;
use crate::manifest::Manifest;

/// What `publish` is asked.
pub struct Options<'a> {
    pub channel: &'a str,
    pub to: &'a Path,
    pub keys: &'a [PathBuf],
    /// How many distinct candidates, newest first.
    pub keep: usize,
    /// The feed expires this many days after it is published.
    pub expires_after_days: Option<u64>,
}

/// What `publish --json` prints.
#[derive(Serialize)]
struct Done<'a> {
    channel: &'a str,
    sequence: u64,
    record: Digest,
    candidate: Digest,
    to: &'a Path,
    indexes: &'a [String],
    images: &'a [feed::Published],
    files: usize,
}

/// `candidate publish`.
pub fn publish(ctx: &Context, options: &Options<'_>, policy: &Path, channels: Option<&Path>) -> anyhow::Result<()> {
    let Options { channel, to, keys, keep, expires_after_days } = *options;
    let keys = keys.iter().map(|k| PrivateKey::load(k)).collect::<Result<Vec<_>, _>>()?;
    let records = crate::release::verified_log(ctx, channel, policy, channels)?;
    let head =
        records.last().with_context(|| format!("channel `{channel}` holds no candidate yet: nothing to publish"))?;
    let chosen = newest_distinct(&records, keep.max(1));
    let policy = Policy::load(policy)?;
    let mut folders = Vec::new();
    for (place, record) in chosen.iter().enumerate() {
        let (dir, id) = crate::registry::resolve(&ctx.store, &record.candidate.hex()).map_err(|e| {
            let hint = match place {
                0 => "build or restore it: the channel's head must be published".to_owned(),
                n => format!("build or restore it, or publish only the newer ones: `--keep {n}`"),
            };
            Hinted::new(
                format!(
                    "record {} of channel `{channel}` names candidate {}, which this store does not hold: {e:#}",
                    record.sequence, record.candidate
                ),
                hint,
            )
        })?;
        let mut report = crate::verify::Report::new(false);
        crate::verify::check(ctx, &dir, &policy.verify_keys, policy.verify_threshold, None, &mut report)?;
        if let Some(first) = report.failures.first() {
            return Err(CheckFailed {
                message: format!("candidate {id} fails verification, so it is not published: {first}"),
                hint: None,
            }
            .into());
        }
        let manifest = Manifest::read(&dir.join(MANIFEST))?;
        folders.push((*record, dir, manifest));
    }
    let members: Vec<Member<'_>> =
        folders.iter().map(|(record, dir, manifest)| Member { record, dir, manifest }).collect();
    // The one value a feed takes from the clock, on purpose: an expiry counts from when the
    // feed was signed (without one, the same channel publishes the same bytes).
    let expires = expires_after_days.map(|days| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        now + days * 86_400
    });
    let statement = feed::publish(channel, head, &members, to, &keys, expires)
        .with_context(|| format!("cannot publish channel `{channel}` to `{}`", to.display()))?;
    let p = &statement.predicate;
    if ctx.printer.json() {
        return ctx.printer.data(&Done {
            channel,
            sequence: p.sequence,
            record: p.record,
            candidate: p.candidate,
            to,
            indexes: &p.indexes,
            images: &p.images,
            files: statement.subject.len(),
        });
    }
    ctx.printer.status(
        "Published",
        format_args!("channel `{channel}` at record {} ({}) to `{}`", p.sequence, p.candidate, to.display()),
    );
    for image in &p.images {
        println!(
            "{}  {} {} {}  record {}  {}",
            image.serial, image.name, image.version, image.architecture, image.sequence, image.candidate
        );
    }
    println!("indexes: {}; {} file(s) signed in `{}`", p.indexes.join(", "), statement.subject.len(), feed::STATEMENT);
    Ok(())
}

/// The newest record of each of the `keep` most recently promoted distinct candidates,
/// newest first (a candidate promoted again counts once, at its newest record).
fn newest_distinct(records: &[Record], keep: usize) -> Vec<&Record> {
    let mut chosen: Vec<&Record> = Vec::new();
    for record in records.iter().rev() {
        if chosen.len() == keep {
            break;
        }
        if !chosen.iter().any(|c| c.candidate == record.candidate) {
            chosen.push(record);
        }
    }
    chosen
}
