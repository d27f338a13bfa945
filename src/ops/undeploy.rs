//! `candidate undeploy NAME`: removes every container of the deployment, its network and its
//! state, whatever phase it was left in (also after a killed `deploy`). With the hidden
//! `--when-stdin-closes` it is the watchdog `test --system` starts: it waits for its stdin to
//! close (the builder ended, however) and removes the deployment if it is still there.

use std::io::Read as _;

use super::Context;
use crate::system::lxc;

/// `candidate undeploy`.
pub fn undeploy(ctx: &Context, name: &str, when_stdin_closes: bool) -> anyhow::Result<()> {
    if when_stdin_closes {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        if !lxc::folder(ctx, name)?.exists() {
            return Ok(());
        }
    }
    let record = lxc::undeploy(ctx, name)?;
    let nodes = record.as_ref().map_or(0, |r| r.nodes.len());
    if ctx.printer.json() {
        return ctx.printer.data(&serde_json::json!({ "name": name, "removed": true, "nodes": nodes }));
    }
    println!("REMOVED  {name} ({nodes} node(s), its network and state)");
    Ok(())
}
