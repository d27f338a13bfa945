//! `candidate list`, `promote`, `channel show` and `channel verify`: the commands over
//! [`crate::release`] and [`crate::registry`], each printing lines or, with `--json`, one
//! document.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use crate::channel::Record;
use crate::digest::Digest;
use crate::release::{self, Promotion};
use crate::release_notes::NoteFormat;

/// One candidate of `candidate list --json`.
#[derive(Serialize)]
struct Listed {
    id: Digest,
    name: String,
    version: String,
    architecture: String,
    /// `SOURCE_DATE_EPOCH` as RFC 3339: when the candidate says it was built.
    built: String,
    dir: PathBuf,
    /// The channels whose logs name it (unverified: a listing, not a verdict).
    channels: Vec<String>,
}

/// `candidate list`.
pub fn list(ctx: &Context, channels: Option<&Path>) -> anyhow::Result<()> {
    let in_channels = release::memberships(ctx, channels);
    let listed: Vec<Listed> = crate::registry::entries(&ctx.store)?
        .into_iter()
        .map(|c| Listed {
            built: crate::sbom::rfc3339(c.source_date_epoch),
            channels: in_channels.get(&c.id).cloned().unwrap_or_default(),
            id: c.id,
            // Text: the table pads them to columns, which their own `Display` does not do.
            name: c.name.to_string(),
            version: c.version.to_string(),
            architecture: c.architecture.to_string(),
            dir: c.dir,
        })
        .collect();
    if ctx.printer.json() {
        return ctx.printer.data(&listed);
    }
    println!("{:<20} {:<12} {:<14} {:<22} CHANNELS", "NAME", "VERSION", "ID", "BUILT");
    for c in &listed {
        let channels = if c.channels.is_empty() { "-".to_owned() } else { c.channels.join(",") };
        println!("{:<20} {:<12} {:<14} {:<22} {channels}", c.name, c.version, &c.id.hex()[..12], c.built);
    }
    Ok(())
}

/// `candidate promote CANDIDATE --channel NAME --key KEY [--note TEXT] [--override REASON]`.
#[allow(clippy::too_many_arguments)] // the command's arguments, each needed once
pub fn promote(
    ctx: &Context,
    candidate: &str,
    channel: &str,
    key: &Path,
    note: Option<&str>,
    override_reason: Option<&str>,
    policy: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<()> {
    let (id, promotion) = release::promote(ctx, candidate, channel, key, note, override_reason, policy, channels)?;
    match promotion {
        Promotion::Promoted { sequence } => {
            ctx.printer.status("Promoted", format_args!("{id} to `{channel}` as record {sequence}"))
        }
        Promotion::Pending { signed, threshold } => {
            ctx.printer.status("Pending", format_args!("{id} to `{channel}`: {signed} of {threshold} signatures"))
        }
    }
    if ctx.printer.json() {
        #[derive(Serialize)]
        struct Promoted<'a> {
            candidate: Digest,
            channel: &'a str,
            #[serde(flatten)]
            promotion: Promotion,
        }
        ctx.printer.data(&Promoted { candidate: id, channel, promotion })?;
    }
    Ok(())
}

/// One record of a channel's history, as `--json` shows it.
#[derive(Serialize)]
struct Shown<'a> {
    sequence: u64,
    candidate: Digest,
    name: &'a str,
    version: &'a str,
    time: &'a str,
    note: Option<&'a str>,
    expires: Option<u64>,
    signatures: usize,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    overridden: Option<&'a crate::budget::Override>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release_note: Option<&'a crate::release_notes::ReleaseNote>,
}

impl<'a> From<&'a Record> for Shown<'a> {
    fn from(r: &'a Record) -> Self {
        Shown {
            sequence: r.sequence,
            candidate: r.candidate,
            name: &r.name,
            version: &r.version,
            time: &r.time,
            note: r.note.as_deref(),
            expires: r.expires,
            signatures: r.signers,
            overridden: r.overridden.as_ref(),
            release_note: r.release_note.as_ref(),
        }
    }
}

/// A channel as `channel show --json` and `channel verify --json` give it: its current
/// candidate and its history, newest first.
#[derive(Serialize)]
struct Channel<'a> {
    channel: &'a str,
    current: Option<Digest>,
    history: Vec<Shown<'a>>,
}

impl<'a> Channel<'a> {
    fn new(channel: &'a str, records: &'a [Record]) -> Self {
        Channel {
            channel,
            current: records.last().map(|r| r.candidate),
            history: records.iter().rev().map(Shown::from).collect(),
        }
    }
}

/// `candidate channel show NAME [--notes [--format text|markdown]]`.
pub fn show_channel(
    ctx: &Context,
    name: &str,
    notes: Option<NoteFormat>,
    policy: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<()> {
    let records = release::verified_log(ctx, name, policy, channels)?;
    if ctx.printer.json() {
        return ctx.printer.data(&Channel::new(name, &records));
    }
    if let Some(format) = notes {
        return print_notes(name, &records, format);
    }
    match records.last() {
        Some(head) => println!("channel `{name}`: current {} ({} {})", head.candidate, head.name, head.version),
        None => println!("channel `{name}`: empty"),
    }
    for r in records.iter().rev() {
        let note = r.note.as_deref().map(|n| format!("  {n}")).unwrap_or_default();
        println!(
            "{:>6}  {}  {} {}  {}  {} signature(s){note}",
            r.sequence,
            &r.candidate.hex()[..12],
            r.name,
            r.version,
            r.time,
            r.signers
        );
        if let Some(o) = &r.overridden {
            let exceeded: Vec<String> = o.exceeded.iter().map(ToString::to_string).collect();
            let exceeded = if exceeded.is_empty() { "within every budget".to_owned() } else { exceeded.join("; ") };
            println!("        override by key {}: {} ({exceeded})", o.key.hex(), o.reason);
        }
    }
    Ok(())
}

/// `channel show --notes`: each record's release note, newest first, under a line naming
/// the record (or saying it has none: records made before release notes existed).
fn print_notes(name: &str, records: &[Record], format: NoteFormat) -> anyhow::Result<()> {
    let mut out = String::new();
    for r in records.iter().rev() {
        let heading = format!("record {} of channel `{name}`: {} {}", r.sequence, r.name, r.version);
        out.push_str(&match format {
            NoteFormat::Text => format!("{heading}\n"),
            NoteFormat::Markdown => format!("# {heading}\n\n"),
        });
        match (&r.release_note, format) {
            (Some(note), NoteFormat::Text) => out.push_str(&note.text()),
            (Some(note), NoteFormat::Markdown) => out.push_str(&note.markdown()),
            (None, _) => out.push_str("(no release note: the record predates them)\n"),
        }
        if let Some(o) = &r.overridden {
            let exceeded: Vec<String> = o.exceeded.iter().map(ToString::to_string).collect();
            let line = format!("budgets overridden by key {}: {} ({})", o.key.hex(), o.reason, exceeded.join("; "));
            out.push_str(&match format {
                NoteFormat::Text => format!("{line}\n"),
                NoteFormat::Markdown => format!("**{line}**\n\n"),
            });
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

/// `candidate channel verify NAME`.
pub fn verify_channel(ctx: &Context, name: &str, policy: &Path, channels: Option<&Path>) -> anyhow::Result<()> {
    let records = release::verify_channel(ctx, name, policy, channels)?;
    if ctx.printer.json() {
        return ctx.printer.data(&Channel::new(name, &records));
    }
    match records.last() {
        Some(head) => println!(
            "verified channel `{name}`: {} record(s), head {} ({} {})",
            head.sequence, head.candidate, head.name, head.version
        ),
        None => println!("verified channel `{name}`: empty"),
    }
    Ok(())
}
