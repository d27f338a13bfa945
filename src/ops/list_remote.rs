//! `candidate list --remote REF`: the tags a repository holds and the candidate each finds.

use super::Context;
use crate::remote::{self, transfer, Access, Reference};

/// `candidate list --remote HOST/REPOSITORY`.
pub fn list_remote(ctx: &Context, reference: &str, access: &Access) -> anyhow::Result<()> {
    let reference: Reference = reference.parse()?;
    let client = remote::connect(&reference, access, None)?;
    let listed = transfer::list(&client, &reference.repository)?;
    if ctx.printer.json() {
        return ctx.printer.data(&listed);
    }
    for l in &listed {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            l.tag,
            l.digest,
            l.kind,
            l.folder.as_deref().unwrap_or("-"),
            l.candidate_id.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
