//! `candidate verify DIR --key PUB… [--threshold N] [--rebuild]`: one line per check
//! ([`crate::verify`]), then a verdict.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{CheckFailed, Context};
use crate::keys::PublicKey;
use crate::verify::{check, check_attestations, Check, Rebuild, Report};

/// `candidate verify DIR --key PUB… [--threshold N] [--rebuild]`.
pub fn verify(
    ctx: &Context,
    dir: &Path,
    key_paths: &[PathBuf],
    threshold: usize,
    rebuild: Option<&Rebuild>,
) -> anyhow::Result<()> {
    if key_paths.is_empty() {
        bail!("name at least one trusted public key with `--key`");
    }
    let keys = key_paths.iter().map(|p| PublicKey::load(p)).collect::<Result<Vec<_>, _>>()?;
    let mut report = Report::new(!ctx.printer.json());
    check(ctx, dir, &keys, threshold, rebuild, &mut report)?;
    check_attestations(dir, &keys, &mut report)?;
    verdict(ctx, dir, report)
}

/// What `verify --json` prints: every check and the verdict.
#[derive(serde::Serialize)]
struct Verdict<'a> {
    candidate: &'a Path,
    verified: bool,
    checks: &'a [Check],
}

fn verdict(ctx: &Context, dir: &Path, report: Report) -> anyhow::Result<()> {
    let verified = report.failures.is_empty();
    if ctx.printer.json() {
        ctx.printer.data(&Verdict { candidate: dir, verified, checks: &report.checks })?;
    } else if verified {
        println!("verified {}", dir.display());
    }
    if verified {
        Ok(())
    } else {
        Err(CheckFailed {
            message: format!("{} check(s) failed for `{}`", report.failures.len(), dir.display()),
            hint: None,
        }
        .into())
    }
}
