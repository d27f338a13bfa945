//! `candidate test CANDIDATE --script PATH… [--timeout SECS] [--sign KEY]… [--runtime R]`:
//! runs each script in a fresh instance ([`crate::qualify`]), prints one line per script and
//! a verdict, and with `--sign` writes the test-result attestation beside the candidate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::{CheckFailed, Context};
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::manifest::Manifest;
use crate::qualify::{self, Runtime, Script, ScriptRun, TestOptions};
use crate::sandbox::Exit;

/// `candidate test`.
pub fn test(ctx: &Context, candidate: &str, options: &TestOptions) -> anyhow::Result<()> {
    let (dir, id) = crate::registry::resolve(&ctx.store, candidate)?;
    let manifest = Manifest::read(&dir.join(MANIFEST))?;
    let scripts = qualify::load_scripts(&options.scripts)?;
    let sde = manifest.source_date_epoch;
    let mut runs = Vec::new();
    match options.runtime {
        Runtime::Sandbox => {
            let tree = qualify::read_rootfs(ctx, &dir, &manifest)?;
            for script in &scripts {
                let run = qualify::run_in_sandbox(ctx, &tree, script, sde, options.timeout)
                    .with_context(|| format!("script `{}` on candidate {id}", script.name))?;
                report_run(ctx, script, &run, options.timeout);
                runs.push(run);
            }
        }
        Runtime::Lxd => anyhow::bail!("`--runtime lxd` qualifies systems (`test --system`), not scripts"),
        Runtime::Lxc => {
            for script in &scripts {
                let run = qualify::lxc::run(ctx, &dir, &manifest, script, options.timeout)
                    .with_context(|| format!("script `{}` on candidate {id} in LXC", script.name))?;
                report_run(ctx, script, &run, options.timeout);
                runs.push(run);
            }
        }
    }
    let failed = runs.iter().filter(|r| !r.passed()).count();
    let mut attestation = None;
    if !options.sign.is_empty() {
        let path = qualify::write_attestation(&dir, &manifest, &id, &scripts, &runs, options)?;
        ctx.printer.status("Attested", format_args!("{}", path.display()));
        attestation = Some(path);
    }
    let result = if failed == 0 { "PASSED" } else { "FAILED" };
    if ctx.printer.json() {
        let scripts = scripts.iter().zip(&runs).map(|(s, r)| Ran::new(s, r)).collect();
        ctx.printer.data(&Tested { candidate: id, runtime: options.runtime, result, scripts, attestation })?;
    } else {
        println!("{result}  {} of {} script(s) on {id}", runs.len() - failed, runs.len());
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CheckFailed {
            message: format!("{failed} of {} qualification script(s) failed on `{}`", runs.len(), dir.display()),
            hint: None,
        }
        .into())
    }
}

/// What `test --json` prints.
#[derive(serde::Serialize)]
struct Tested<'a> {
    candidate: Digest,
    runtime: Runtime,
    /// `PASSED` when every script exited 0, else `FAILED`.
    result: &'a str,
    scripts: Vec<Ran<'a>>,
    /// The signed test-result attestation written beside the candidate (`--sign`).
    attestation: Option<PathBuf>,
}

/// One script's run, as `test --json` gives it.
#[derive(serde::Serialize)]
struct Ran<'a> {
    name: &'a str,
    sha256: Digest,
    passed: bool,
    /// The exit code, when it exited.
    exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    signal: Option<i32>,
    timed_out: bool,
    duration_ms: u64,
    /// The last lines of its output (stdout and stderr merged).
    output: Vec<String>,
}

impl<'a> Ran<'a> {
    fn new(script: &'a Script, run: &ScriptRun) -> Self {
        let (exit_code, signal) = match run.exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
            Exit::TimedOut => (None, None),
        };
        Ran {
            name: &script.name,
            sha256: script.sha256,
            passed: run.passed(),
            exit_code,
            signal,
            timed_out: run.exit == Exit::TimedOut,
            duration_ms: run.duration.as_millis() as u64,
            output: qualify::last_lines(&run.output, qualify::SHOWN_LINES),
        }
    }
}

/// One line per script; a failing one also shows the end of its output.
fn report_run(ctx: &Context, script: &Script, run: &ScriptRun, timeout: Duration) {
    if ctx.printer.json() {
        return;
    }
    let verdict = if run.passed() { "PASSED" } else { "FAILED" };
    let how = match run.exit {
        Exit::TimedOut => format!("killed at the {} s time limit", timeout.as_secs()),
        exit => format!("{exit} in {:.2} s", run.duration.as_secs_f64()),
    };
    println!("{verdict}  {}  {how}  (sha256 {})", script.name, script.sha256.hex());
    if !run.passed() {
        for line in qualify::last_lines(&run.output, qualify::SHOWN_LINES) {
            println!("        | {line}");
        }
    }
}
