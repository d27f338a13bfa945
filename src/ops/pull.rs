//! `candidate pull REF --out DIR [--key PUB…]`: the candidate folder back from a registry,
//! every blob checked by digest, then the checks of `verify`; it is moved into `DIR` only
//! when all of them pass, so a refused pull leaves nothing.

use std::path::{Path, PathBuf};

use super::{CheckFailed, Context};
use crate::keys::PublicKey;
use crate::remote::{self, transfer, Access, Reference, Target};
use crate::verify::{check, check_attestations, Report};

/// `candidate pull REF --out DIR [--key PUB…] [--threshold N]`.
pub fn pull(
    ctx: &Context,
    reference: &str,
    out: &Path,
    access: &Access,
    key_paths: &[PathBuf],
    threshold: usize,
) -> anyhow::Result<()> {
    let reference: Reference = reference.parse()?;
    let target = match &reference.target {
        Target::Tag(t) => t.clone(),
        Target::Digest(d) => d.to_string(),
        Target::None => anyhow::bail!("`{reference}`: name a tag or a digest to pull"),
    };
    let keys = key_paths.iter().map(|p| PublicKey::load(p)).collect::<Result<Vec<_>, _>>()?;
    let client = remote::connect(&reference, access, None)?;
    let found = transfer::find_candidate(&client, &reference.repository, &target)?;
    ctx.printer.status("Pulling", format_args!("{reference} (candidate artifact {})", found.0));
    let pulled = transfer::pull(&client, &reference.repository, found, out)?;
    ctx.printer
        .status("Pulled", format_args!("{} file(s), {} bytes, each matching its digest", pulled.files, pulled.bytes));
    let dir = pulled.dir();
    let mut report = Report::new(!ctx.printer.json());
    if keys.is_empty() {
        ctx.printer
            .status("Warning", "no `--key`: the blobs match the registry's digests, but no signature was checked");
    } else {
        check(ctx, &dir, &keys, threshold, None, &mut report)?;
        check_attestations(&ctx.printer, &dir, &keys, &mut report)?;
    }
    let verified = (!keys.is_empty()).then_some(report.failures.is_empty());
    let artifact = pulled.artifact;
    let (files, bytes) = (pulled.files, pulled.bytes);
    // A refused candidate is not placed: the staging folder goes with `pulled`.
    let placed = if verified == Some(false) { None } else { Some(pulled.place(out)?) };
    if ctx.printer.json() {
        let document = Pulled {
            reference: reference.to_string(),
            artifact,
            candidate: placed.as_deref(),
            files,
            bytes,
            verified,
            checks: &report.checks,
        };
        ctx.printer.data(&document)?;
    } else if let Some(placed) = &placed {
        println!("{}", placed.display());
    }
    match placed {
        Some(_) => Ok(()),
        None => Err(CheckFailed {
            message: format!("{} check(s) failed for the candidate pulled from `{reference}`", report.failures.len()),
            hint: Some(
                "nothing was written: the candidate in the registry is not signed by these keys, or was changed"
                    .to_owned(),
            ),
        }
        .into()),
    }
}

/// What `pull --json` prints.
#[derive(serde::Serialize)]
struct Pulled<'a> {
    reference: String,
    artifact: crate::digest::Digest,
    /// Where the candidate folder now is; `null` when a check failed.
    candidate: Option<&'a Path>,
    files: usize,
    bytes: u64,
    /// `null` without `--key`.
    verified: Option<bool>,
    checks: &'a [crate::verify::Check],
}
