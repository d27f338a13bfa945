//! `candidate test CANDIDATE --script PATH… [--timeout SECS] [--sign KEY]… [--runtime R]`:
//! runs each script in a fresh instance ([`crate::qualify`]), prints one line per script and
//! a verdict, and with `--sign` writes the test-result attestation beside the candidate.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::{CheckFailed, Context};
use crate::dist::MANIFEST;
use crate::qualify::{self, Runtime, Script, ScriptRun, TestOptions};
use crate::sandbox::Exit;

/// `candidate test`.
pub fn test(ctx: &Context, candidate: &str, options: &TestOptions) -> anyhow::Result<()> {
    let (dir, id) = crate::registry::resolve(&ctx.store, candidate)?;
    let manifest: Value = serde_json::from_slice(&fs_err::read(dir.join(MANIFEST))?)
        .with_context(|| format!("`{}` is not JSON", dir.join(MANIFEST).display()))?;
    let scripts = qualify::load_scripts(&options.scripts)?;
    let sde = manifest["source-date-epoch"].as_u64().unwrap_or_default();
    let mut runs = Vec::new();
    match options.runtime {
        Runtime::Sandbox => {
            let tree = qualify::read_rootfs(ctx, &dir, &manifest)?;
            for script in &scripts {
                let run = qualify::run_in_sandbox(ctx, &tree, script, sde, options.timeout)
                    .with_context(|| format!("script `{}` on candidate {id}", script.name))?;
                report_run(script, &run, options.timeout);
                runs.push(run);
            }
        }
        Runtime::Lxc => {
            for script in &scripts {
                let run = qualify::lxc::run(ctx, &dir, &manifest, script, options.timeout)
                    .with_context(|| format!("script `{}` on candidate {id} in LXC", script.name))?;
                report_run(script, &run, options.timeout);
                runs.push(run);
            }
        }
    }
    let failed = runs.iter().filter(|r| !r.passed()).count();
    if !options.sign.is_empty() {
        let path = qualify::write_attestation(&dir, &manifest, &id, &scripts, &runs, options)?;
        ctx.printer.status("Attested", format_args!("{}", path.display()));
    }
    if failed == 0 {
        println!("PASSED  {} of {} script(s) on {id}", runs.len(), runs.len());
        Ok(())
    } else {
        println!("FAILED  {failed} of {} script(s) on {id}", runs.len());
        Err(CheckFailed {
            message: format!("{failed} of {} qualification script(s) failed on `{}`", runs.len(), dir.display()),
            hint: None,
        }
        .into())
    }
}

/// One line per script; a failing one also shows the end of its output.
fn report_run(script: &Script, run: &ScriptRun, timeout: Duration) {
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
