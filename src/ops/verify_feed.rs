//! `candidate verify-feed URL|DIR --key PUB…`: proves a published feed ([`crate::feed`]):
//! its statement's signatures, every file it names, nothing unsigned, and that it is not
//! older than a feed of the same channel this store verified before.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CheckFailed, Context};
use crate::feed::{self, source::Source, Check};
use crate::keys::PublicKey;

/// What `verify-feed --json` prints.
#[derive(Serialize)]
struct Verdict<'a> {
    feed: &'a str,
    channel: &'a str,
    sequence: u64,
    candidate: crate::digest::Digest,
    verified: bool,
    checks: &'a [Check],
}

/// What `verify-feed` is asked besides the feed.
pub struct Options<'a> {
    pub keys: &'a [PathBuf],
    pub threshold: usize,
    pub ca: Option<&'a Path>,
    /// The channel the feed must be of.
    pub channel: Option<&'a str>,
}

/// `candidate verify-feed`.
pub fn verify_feed(ctx: &Context, location: &str, options: &Options<'_>) -> anyhow::Result<()> {
    let Options { keys, threshold, ca, channel: wanted } = *options;
    let keys = keys.iter().map(|k| PublicKey::load(k)).collect::<Result<Vec<_>, _>>()?;
    let source = Source::open(location, ca)?;
    let mut verdict = match feed::verify(&source, &keys, threshold) {
        Ok(verdict) => verdict,
        // A statement that is not what the trusted keys signed is a failed check (exit 1).
        Err(e @ (feed::FeedError::Signature(_) | feed::FeedError::Envelope(_) | feed::FeedError::Statement(_))) => {
            return Err(anyhow::Error::new(e)
                .context(CheckFailed { message: format!("the feed at `{location}` does not verify"), hint: None }));
        }
        Err(e) => return Err(e.into()),
    };
    let predicate = verdict.statement.predicate.clone();
    if let Some(wanted) = wanted.filter(|w| *w != predicate.channel) {
        verdict.checks.push(Check {
            ok: false,
            check: format!("channel: the feed is of channel `{}`, not `{wanted}`", predicate.channel),
        });
    }
    // Only a feed whose every file checks may move what this store remembers.
    if verdict.failures().next().is_none() {
        let channel = &predicate.channel;
        if channel.is_empty()
            || channel.starts_with('.')
            || !channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            anyhow::bail!("the feed names channel `{channel}`, which is not a channel name");
        }
        let seen = ctx.store.root().join("seen-feeds").join(channel);
        let refusal = feed::check_fresh(&seen, &predicate)?;
        verdict.checks.push(Check {
            ok: refusal.is_none(),
            check: refusal.unwrap_or_else(|| {
                format!(
                    "freshness: record {} is the newest this store has verified for `{channel}`",
                    predicate.sequence
                )
            }),
        });
    }
    let ok = verdict.failures().next().is_none();
    if ctx.printer.json() {
        ctx.printer.data(&Verdict {
            feed: location,
            channel: &predicate.channel,
            sequence: predicate.sequence,
            candidate: predicate.candidate,
            verified: ok,
            checks: &verdict.checks,
        })?;
    } else {
        for check in &verdict.checks {
            println!("{}  {}", if check.ok { "ok    " } else { "FAILED" }, check.check);
        }
    }
    let first = verdict.failures().next().cloned();
    match first {
        None => {
            if !ctx.printer.json() {
                println!(
                    "verified feed of channel `{}` at record {} ({})",
                    predicate.channel, predicate.sequence, predicate.candidate
                );
            }
            Ok(())
        }
        Some(first) => Err(CheckFailed {
            message: format!(
                "the feed at `{location}` does not verify: {} failed check(s), the first: {}",
                verdict.failures().count(),
                first.check
            ),
            hint: None,
        }
        .into()),
    }
}
