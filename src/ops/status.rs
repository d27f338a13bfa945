//! `candidate status [NAME]`: a deployment's record (candidate, plan, every node with its
//! role, address, container state, start and ready times), or every deployment's phase.

use super::Context;
use crate::system::lxc::{self, Deployment, NodeRecord};

/// `candidate status`.
pub fn status(ctx: &Context, name: Option<&str>) -> anyhow::Result<()> {
    let Some(name) = name else {
        let all = lxc::list(ctx)?;
        if ctx.printer.json() {
            return ctx.printer.data(&all);
        }
        for d in &all {
            println!("{:<20} {:<9} {} node(s)  {}  plan {}", d.name, phase(d), d.nodes.len(), d.candidate, d.plan);
        }
        return Ok(());
    };
    let (_, record) = lxc::open(ctx, name)?;
    let runtime = lxc::nodes(&record);
    let states: Vec<String> =
        record.nodes.iter().map(|n| runtime.state(n).unwrap_or_else(|| "MISSING".into())).collect();
    if ctx.printer.json() {
        let nodes = record.nodes.iter().zip(&states).map(|(node, state)| Node { node, state }).collect();
        return ctx.printer.data(&Status { deployment: &record, nodes });
    }
    println!("{}  {}  system {} ({})", record.name, phase(&record), record.system, record.system_file.display());
    println!(
        "  candidate {}\n  plan      {}\n  network   {} on bridge {}\n  runtime   {}",
        record.candidate, record.plan, record.subnet, record.bridge, record.runtime
    );
    for (node, state) in record.nodes.iter().zip(&states) {
        println!("{}  {state}", node.line(record.origin_ms()));
    }
    Ok(())
}

fn phase(d: &Deployment) -> String {
    serde_json::to_value(d.phase).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default()
}

/// What `status NAME --json` prints: the record, and each node's container state now.
#[derive(serde::Serialize)]
struct Status<'a> {
    deployment: &'a Deployment,
    nodes: Vec<Node<'a>>,
}

#[derive(serde::Serialize)]
struct Node<'a> {
    #[serde(flatten)]
    node: &'a NodeRecord,
    state: &'a str,
}
