//! `candidate test --runtime lxc`: each script in a real LXC container (see `ops::qualify`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::qualify::{Script, ScriptRun};
use super::Context;

/// Runs one script in a fresh LXC container made from the candidate's `lxc` format.
pub fn run(
    _ctx: &Context,
    dir: &Path,
    _manifest: &Value,
    _script: &Script,
    _timeout: Duration,
) -> anyhow::Result<ScriptRun> {
    anyhow::bail!("`--runtime lxc` is not implemented yet for `{}`", dir.display())
}
