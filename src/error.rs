//! The one error and hint path: a [`CheckFailed`] is a check that failed (exit 1), anything
//! else an error (exit 2); hints are data on the error, rendered once by `main` after the
//! cause chain, each on its own `hint:` line.

/// A check that failed (exit code 1), as opposed to an error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckFailed {
    pub message: String,
    pub hint: Option<String>,
}
