//! The one error and hint path: a [`CheckFailed`] is a check that failed (exit 1), anything
//! else an error (exit 2); hints are data on the error ([`Hint`]), rendered once by
//! [`render::render`] after the cause chain, each on its own `hint:` line.
//!
//! The renderer is a submodule of the commands stage: it finds hints by downcasting to every
//! type that implements [`Hint`], and those modules import this one for the trait.
//!
//! A message never embeds a hint (`"\n\nhint: …"` would land in the middle of the chain as
//! soon as another error wraps it) and never repeats its `#[source]` (the chain prints it).

use std::borrow::Cow;

pub mod render;

/// An error that may carry user-facing hints (uv's `Hint`): suggestions for what to do
/// about it, rendered after the error output, each prefixed with `hint:`.
pub trait Hint {
    /// The hints of this error alone (not of its sources: [`render::render`] walks those).
    fn hints(&self) -> Vec<Cow<'_, str>> {
        Vec::new()
    }
}

/// A check that failed (exit code 1), as opposed to an error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckFailed {
    pub message: String,
    pub hint: Option<String>,
}

impl Hint for CheckFailed {
    fn hints(&self) -> Vec<Cow<'_, str>> {
        self.hint.iter().map(|h| Cow::Borrowed(h.as_str())).collect()
    }
}

/// An error (exit 2) with a hint, for refusals that have no error type of their own to carry
/// one (a `bail!` in `anyhow` code).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted { message: message.into(), hint: hint.into() }
    }
}

impl Hint for Hinted {
    fn hints(&self) -> Vec<Cow<'_, str>> {
        vec![Cow::Borrowed(self.hint.as_str())]
    }
}
