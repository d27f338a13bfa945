//! `candidate undeploy NAME`: removes every container of the deployment, its network and its
//! state, whatever phase it was left in (also after a killed `deploy`).

use super::Context;
use crate::system::lxc;

/// `candidate undeploy`.
pub fn undeploy(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let record = lxc::undeploy(ctx, name)?;
    let nodes = record.as_ref().map_or(0, |r| r.nodes.len());
    if ctx.printer.json() {
        return ctx.printer.data(&serde_json::json!({ "name": name, "removed": true, "nodes": nodes }));
    }
    println!("REMOVED  {name} ({nodes} node(s), its network and state)");
    Ok(())
}
