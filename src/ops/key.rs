//! `candidate key generate` and `candidate sign`.

use std::path::{Path, PathBuf};

use super::Context;
use crate::keys::PrivateKey;

/// `candidate key generate --out PREFIX`.
pub fn generate_key(ctx: &Context, prefix: &Path) -> anyhow::Result<()> {
    let key = PrivateKey::generate()?;
    let (private, public) = key.write(prefix)?;
    ctx.printer.status("Generated", format_args!("{} and {}", private.display(), public.display()));
    println!("{}", key.public.id);
    Ok(())
}

/// `candidate sign DIR --key KEY…`: adds signatures to the candidate's envelope, or writes
/// one (see [`crate::attest::sign_folder`]).
pub fn sign(ctx: &Context, dir: &Path, key_paths: &[PathBuf]) -> anyhow::Result<()> {
    let keys = key_paths.iter().map(|p| PrivateKey::load(p)).collect::<Result<Vec<_>, _>>()?;
    let (path, signatures) = crate::attest::sign_folder(dir, &keys)?;
    ctx.printer.status("Signed", format_args!("{} ({signatures} signature(s))", path.display()));
    Ok(())
}
