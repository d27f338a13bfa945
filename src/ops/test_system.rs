//! `candidate test CANDIDATE --system FILE [--report DIR] [--timeout SECS] [--sign KEY]…`:
//! qualifies a whole system ([`crate::system::qualify`]): a fresh deployment, every role's
//! tests and system tests, one line per node and script, a verdict, per-node reports, JUnit
//! XML, and with `--sign` the attestation about the candidate and the plan. Exit 1 when any
//! test failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::{CheckFailed, Context};
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::keys::PrivateKey;
use crate::system::lxc;
use crate::system::qualify::{self, SystemTestOptions, TestKind};
use crate::system::System;

pub struct Options {
    pub system: PathBuf,
    pub report: Option<PathBuf>,
    pub timeout: Duration,
    pub sign: Vec<PrivateKey>,
    pub backend: lxc::Backend,
}

/// `candidate test --system`.
pub fn test_system(
    ctx: &Context,
    candidate: &str,
    options: &Options,
    policy: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<()> {
    let system = System::load(&options.system)?;
    let (dir, id) = lxc::resolve_candidate(ctx, candidate, policy, channels)?;
    lxc::check_candidate(ctx, &dir, &id, policy)?;
    let manifest = crate::manifest::Manifest::read(&dir.join(MANIFEST))?;
    let report = options.report.clone().unwrap_or_else(|| qualify::default_report(&dir, &system));
    let test_options = SystemTestOptions {
        system: &system,
        candidate_dir: &dir,
        candidate: id,
        manifest: &manifest,
        timeout: options.timeout,
        sign: &options.sign,
        report,
        backend: options.backend,
    };
    let tested = qualify::test_system(ctx, &test_options)
        .with_context(|| format!("cannot qualify system `{}` on candidate {id}", system.name))?;
    let failed: Vec<String> = tested.runs.iter().filter(|r| !r.passed()).map(|r| r.id()).collect();
    let result = if failed.is_empty() { "PASSED" } else { "FAILED" };
    if let Some(path) = &tested.attestation {
        ctx.printer.status("Attested", format_args!("{}", path.display()));
    }
    if ctx.printer.json() {
        let runs = tested
            .runs
            .iter()
            .map(|r| Ran {
                node: &r.node,
                role: &r.role,
                kind: r.kind,
                name: &r.script.name,
                sha256: r.script.sha256,
                passed: r.passed(),
                exit: r.run.exit.to_string(),
                duration_ms: r.run.duration.as_millis() as u64,
                output: crate::qualify::last_lines(&r.run.output, crate::qualify::SHOWN_LINES),
            })
            .collect();
        ctx.printer.data(&Tested {
            candidate: id,
            system: system.name.as_str(),
            plan: tested.plan,
            result,
            runs,
            report: &test_options.report,
            junit: &tested.junit,
            attestation: tested.attestation.as_deref(),
        })?;
    } else {
        for r in &tested.runs {
            let verdict = if r.passed() { "PASSED" } else { "FAILED" };
            println!("{verdict}  {}  {}  {} in {:.2} s", r.id(), r.role, r.run.exit, r.run.duration.as_secs_f64());
            if !r.passed() {
                for line in crate::qualify::last_lines(&r.run.output, crate::qualify::SHOWN_LINES) {
                    println!("        | {line}");
                }
            }
        }
        println!(
            "{result}  {} of {} test(s) of system {} on {id}, plan {}; report {}",
            tested.runs.len() - failed.len(),
            tested.runs.len(),
            system.name,
            tested.plan,
            test_options.report.display()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed {
            message: format!("system `{}` failed qualification: {}", system.name, failed.join(", ")),
            hint: None,
        }
        .into())
    }
}

/// What `test --system --json` prints.
#[derive(serde::Serialize)]
struct Tested<'a> {
    candidate: Digest,
    system: &'a str,
    plan: Digest,
    /// `PASSED` when every test on every node exited 0, else `FAILED`.
    result: &'a str,
    runs: Vec<Ran<'a>>,
    report: &'a Path,
    junit: &'a Path,
    attestation: Option<&'a Path>,
}

#[derive(serde::Serialize)]
struct Ran<'a> {
    node: &'a str,
    role: &'a str,
    kind: TestKind,
    name: &'a str,
    sha256: Digest,
    passed: bool,
    exit: String,
    duration_ms: u64,
    output: Vec<String>,
}
