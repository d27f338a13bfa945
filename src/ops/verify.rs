//! `candidate verify DIR --key PUB… [--threshold N] [--rebuild]`: one line per check
//! ([`crate::verify`]), then a verdict.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{CheckFailed, Context};
use crate::keys::PublicKey;
use crate::verify::{check, check_attestations, Rebuild, Report};

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
    let mut report = Report::new(true);
    check(ctx, dir, &keys, threshold, rebuild, &mut report)?;
    check_attestations(dir, &keys, &mut report)?;
    verdict(dir, report)
}

fn verdict(dir: &Path, report: Report) -> anyhow::Result<()> {
    if report.failures.is_empty() {
        println!("verified {}", dir.display());
        Ok(())
    } else {
        Err(CheckFailed {
            message: format!("{} check(s) failed for `{}`", report.failures.len(), dir.display()),
            hint: None,
        }
        .into())
    }
}
