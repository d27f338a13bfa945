//! `candidate store verify [--repair]`: every blob re-hashed, every action-cache entry,
//! layer record and candidate registration checked against what it names
//! ([`crate::upkeep::verify`]). Exit 1 naming each bad object; `--repair` removes them.

use super::{CheckFailed, Context};

pub fn store_verify(ctx: &Context, repair: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let report = crate::upkeep::verify(&ctx.store, repair)?;
    if ctx.printer.json() {
        ctx.printer.data(&report)?;
    } else {
        for bad in &report.bad {
            println!("BAD     {}: {}{}", bad.object, bad.reason, if repair { " (removed)" } else { "" });
        }
    }
    ctx.printer.status(
        "Verified",
        format_args!(
            "{} blob(s), {} bytes, {} action(s), {} layer record(s), {} candidate(s) in {:.2} s: {} bad",
            report.blobs,
            report.bytes,
            report.actions,
            report.layers,
            report.candidates,
            started.elapsed().as_secs_f64(),
            report.bad.len()
        ),
    );
    if report.bad.is_empty() || repair {
        return Ok(());
    }
    Err(CheckFailed {
        message: format!("{} bad object(s) in the store `{}`", report.bad.len(), ctx.store.root().display()),
        hint: Some("`candidate store verify --repair` removes them; the next build fetches or rebuilds them".into()),
    }
    .into())
}
