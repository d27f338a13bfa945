//! `candidate push CANDIDATE REF`: the candidate's image and the whole candidate to a
//! registry ([`crate::remote`]).

use anyhow::bail;

use super::Context;
use crate::remote::{self, transfer, Access, Reference, Target};

/// `candidate push CANDIDATE REF [--mount-from REPO…] [--chunk-size BYTES]`.
pub fn push(
    ctx: &Context,
    candidate: &str,
    reference: &str,
    access: &Access,
    mount_from: &[String],
    chunk_size: Option<u64>,
) -> anyhow::Result<()> {
    let (dir, id) = crate::registry::resolve(&ctx.store, candidate)?;
    let reference: Reference = reference.parse()?;
    let tag = match &reference.target {
        Target::Tag(tag) => tag.clone(),
        // The image's own tag (the recipe's `[oci] tag`, else its version), as `oci/` names it.
        Target::None => default_tag(&dir)?,
        Target::Digest(_) => bail!("`{reference}`: push to a tag, not a digest (the digest is the registry's answer)"),
    };
    let client = remote::connect(&reference, access, chunk_size)?;
    ctx.printer
        .status("Pushing", format_args!("{} to {}/{}:{tag}", dir.display(), reference.host, reference.repository));
    let pushed = transfer::push(&client, &dir, &reference.repository, &tag, mount_from)?;
    let s = pushed.stats;
    ctx.printer.status(
        "Pushed",
        format_args!(
            "candidate {id}: {} blob(s) uploaded ({} bytes), {} already there, {} mounted{}",
            s.uploaded,
            s.uploaded_bytes,
            s.present,
            s.mounted,
            pushed.fallback_tag.as_ref().map(|t| format!("; referrers listed under tag `{t}`")).unwrap_or_default()
        ),
    );
    if ctx.printer.json() {
        ctx.printer.data(&pushed)?;
    } else {
        let shown = pushed.image.unwrap_or(pushed.artifact);
        println!("{}/{}:{tag}@{shown}", reference.host, reference.repository);
    }
    Ok(())
}

fn default_tag(dir: &std::path::Path) -> anyhow::Result<String> {
    let index_path = dir.join("oci/index.json");
    if index_path.exists() {
        let index = crate::oci::ImageIndex::read(&index_path)?;
        if let Some(tag) =
            index.manifests.first().and_then(|m| m.annotations.as_ref()?.get("org.opencontainers.image.ref.name"))
        {
            return Ok(tag.clone());
        }
    }
    let manifest = crate::manifest::Manifest::read(&dir.join(crate::dist::MANIFEST))?;
    let version = manifest.image.version.to_string();
    if !remote::valid_tag(&version) {
        bail!("the candidate's version `{version}` is not a valid tag: name one (`REF:TAG`)");
    }
    Ok(version)
}
