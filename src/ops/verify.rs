//! `candidate verify DIR --key PUB… [--threshold N] [--rebuild [--sign KEY…]]`: one line per
//! check ([`crate::verify`]), then a verdict; with `--sign`, the rebuild's signed attestation
//! beside the candidate ([`crate::rebuild_attest`]).

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{CheckFailed, Context};
use crate::dist::MANIFEST;
use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::Manifest;
use crate::rebuild_attest;
use crate::verify::{check, check_attestations, Check, Rebuild, Report};

/// `candidate verify DIR --key PUB… [--threshold N] [--rebuild [--sign KEY…]]`.
pub fn verify(
    ctx: &Context,
    dir: &Path,
    key_paths: &[PathBuf],
    threshold: usize,
    rebuild: Option<&Rebuild>,
    sign: &[PathBuf],
) -> anyhow::Result<()> {
    if key_paths.is_empty() {
        bail!("name at least one trusted public key with `--key`");
    }
    let keys = key_paths.iter().map(|p| PublicKey::load(p)).collect::<Result<Vec<_>, _>>()?;
    // Loaded before the rebuild, so that a wrong key path does not cost a rebuild.
    let signers = sign.iter().map(|p| PrivateKey::load(p)).collect::<Result<Vec<_>, _>>()?;
    let mut report = Report::new(!ctx.printer.json());
    let rebuilt = check(ctx, dir, &keys, threshold, rebuild, &mut report)?;
    check_attestations(&ctx.printer, dir, &keys, &mut report)?;
    if !signers.is_empty() {
        match rebuilt {
            Some(rebuilt) => {
                let bytes = fs_err::read(dir.join(MANIFEST))?;
                let manifest = Manifest::parse(&dir.join(MANIFEST), &bytes)?;
                let id = crate::digest::Digest::of(&bytes);
                let statement = rebuild_attest::Statement::new(
                    &manifest,
                    id,
                    &rebuilt.manifest,
                    rebuilt.compared,
                    rebuilt.first_difference,
                );
                let result = statement.predicate.result;
                for path in rebuild_attest::write(dir, &statement, &signers)? {
                    ctx.printer.status("Attested", format_args!("rebuild {result}: {}", path.display()));
                }
            }
            None => ctx.printer.status(
                "Warning",
                "no rebuild attestation written: the checks before the rebuild failed, so it did not run",
            ),
        }
    }
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
