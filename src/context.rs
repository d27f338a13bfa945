//! What every stage that touches the store gets: the store, the printer, the mirrors and
//! snapshots.
//!
//! It lives below the commands (cargo's `GlobalContext` likewise sits under `ops`) so that the
//! pipeline stages — lock, fetch, build, verify, qualify — take the same handle whether a
//! command calls them or another stage does (`verify --rebuild` builds into a fresh store).

use std::collections::BTreeMap;

use crate::printer::Printer;
use crate::store::Store;

pub struct Context {
    pub store: Store,
    pub printer: Printer,
    /// `--mirror NAME=URL`: where to read an archive from instead of the recipe's `url`.
    pub mirrors: BTreeMap<String, String>,
    /// `--snapshot NAME=URL`: the snapshot service an archive falls back to instead of the
    /// recipe's `snapshot` (a URL template with `{timestamp}`).
    pub snapshots: BTreeMap<String, String>,
    /// `--python-index` / `CANDIDATE_PYTHON_INDEX`: the simple index Python wheels are locked
    /// from instead of the recipe's `[python] index`.
    pub python_index: Option<String>,
}
