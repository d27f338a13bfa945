//! `candidate deploy CANDIDATE --system FILE [--name NAME] [--keep]`: verifies the candidate,
//! deploys its system on LXC ([`crate::system::lxc`]) or, with `--runtime lxd`, on an
//! LXD/Incus daemon ([`crate::system::lxd`]) and prints every node with its address
//! and when it started and was ready.

use std::path::Path;

use anyhow::Context as _;

use super::Context;
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::system::lxc::{self, Backend, DeployOptions, NodeRecord};
use crate::system::System;

/// What `deploy` is asked besides the candidate.
pub struct Options<'a> {
    pub system: &'a Path,
    pub name: Option<&'a str>,
    pub keep: bool,
    pub backend: Backend,
}

/// `candidate deploy`.
pub fn deploy(
    ctx: &Context,
    candidate: &str,
    options: &Options<'_>,
    policy: &Path,
    channels: Option<&Path>,
) -> anyhow::Result<()> {
    let Options { system, name, keep, backend } = *options;
    let system = System::load(system)?;
    let (dir, id) = lxc::resolve_candidate(ctx, candidate, policy, channels)?;
    lxc::check_candidate(ctx, &dir, &id, policy)?;
    let manifest = crate::manifest::Manifest::read(&dir.join(MANIFEST))?;
    let name = name.unwrap_or(system.name.as_str());
    let options =
        DeployOptions { name, system: &system, candidate_dir: &dir, candidate: id, manifest: &manifest, keep, backend };
    let (record, _) = lxc::deploy(ctx, &options).with_context(|| format!("cannot deploy system `{}`", system.name))?;
    if ctx.printer.json() {
        return ctx.printer.data(&Deployed {
            name: &record.name,
            candidate: id,
            plan: record.plan,
            nodes: &record.nodes,
        });
    }
    println!("READY  {} ({} node(s)) of {id}, plan {}", record.name, record.nodes.len(), record.plan);
    for node in &record.nodes {
        println!("{}", node.line(record.origin_ms()));
    }
    Ok(())
}

/// What `deploy --json` prints.
#[derive(serde::Serialize)]
struct Deployed<'a> {
    name: &'a str,
    candidate: Digest,
    plan: Digest,
    nodes: &'a [NodeRecord],
}
