//! Python dependencies: requirements pinned with hashes (`pip-compile --generate-hashes`,
//! `uv pip compile`) or a PEP 751 `pylock.toml`, locked to one wheel each for the image's own
//! interpreter and platform, and installed into a virtual environment in a layer without pip
//! and without the host's Python.
//!
//! The vocabulary (this file) is foundation; parsing the wheel format is foundation too;
//! choosing wheels from an index is the lock stage; installing them is the layers stage.

pub mod index;
pub mod install;
pub mod layers;
pub mod lock;
pub mod marker;
pub mod pylock;
pub mod requirements;
pub mod tags;
pub mod target;
pub mod venv;
pub mod version;
pub mod wheel;
pub mod zip;

use std::fmt;
use std::str::FromStr;

/// `f` of every item, on up to `threads` threads (fewer for fewer items); the results in
/// `items` order, whichever thread finished first. (`store::hash_paths` and the Debian
/// layer's `deb_layers` hold the same loop; they could share this one.)
pub(crate) fn map_on_threads<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: std::sync::Mutex<Vec<Option<R>>> = std::sync::Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                slots.lock().expect("no thread panics holding it")[i] = Some(result);
            });
        }
    });
    let slots = slots.into_inner().expect("no thread panicked");
    slots.into_iter().map(|slot| slot.expect("every item was done")).collect()
}

/// [`map_on_threads`], starting with the biggest items by `size` (one item is one thread's
/// work: a big one started last would leave the other threads idle while it finishes); the
/// results in `items` order.
pub(crate) fn map_biggest_first<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    size: impl Fn(&T) -> u64,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
    let done = map_on_threads(&order, threads, |&i| f(&items[i]));
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    for (i, result) in order.into_iter().zip(done) {
        results[i] = Some(result);
    }
    results.into_iter().map(|r| r.expect("every item was done")).collect()
}

/// The threads worth running: the cores this process may use.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A distribution's name, normalised as PEP 503 says (`PyYAML` and `pyyaml` and `py_yaml`
/// are one project): lower case, runs of `-`, `_` and `.` made one `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a valid Python distribution name")]
pub struct NameError(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        // PEP 508: letters, digits, `-`, `_`, `.`, beginning and ending with a letter or digit.
        let valid = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(NameError(s.to_owned()));
        }
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !out.ends_with('-') {
                    out.push('-');
                }
            } else {
                out.push(c.to_ascii_lowercase());
            }
        }
        Ok(Name(out))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::serde_str::serde_via_from_str!(Name);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_as_pep_503_says() {
        for (given, normal) in [("PyYAML", "pyyaml"), ("zope.interface", "zope-interface"), ("a__b-.c", "a-b-c")] {
            assert_eq!(given.parse::<Name>().unwrap().as_str(), normal);
        }
        for bad in ["", "-a", "a-", "a b", "a/b", "../x"] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?}");
        }
    }
}
