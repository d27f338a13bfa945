//! Fetching inputs into the store.
//!
//! Every input is streamed into a [`BlobWriter`](crate::store::BlobWriter): hashed while it
//! is written, checked against the lock's size and sha256, and only then named. A download
//! that is cut short, too long, or different is refused with both digests named, and leaves
//! nothing behind. Local paths and `file://` URLs are read the same way, so that `--offline`
//! (which forbids the network only) still builds from them.

use std::io::{self, Read, Write};

use crate::digest::Digest;
use crate::recipe::Origin;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to read `{origin}`")]
    Local { origin: String, source: io::Error },
    #[error("failed to download `{origin}`: {message}")]
    Remote { origin: String, message: String },
    #[error("`{origin}` is not in the store and `--offline` forbids downloading it")]
    Offline { origin: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the lock says an input must be.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    pub sha256: Digest,
    /// Unknown when a recipe pins only a digest and the lockfile does not exist yet.
    pub size: Option<u64>,
}

/// Network policy for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Allowed,
    Offline,
}

/// Makes sure the store holds `origin`'s bytes. With a pin, a blob already in the store is
/// used as it is and anything else is refused; without one (at lock time), the bytes are
/// fetched and their digest returned. `progress` is told how many bytes arrived.
pub fn fetch(
    store: &Store,
    origin: &Origin,
    pin: Option<Pin>,
    network: Network,
    progress: &dyn Fn(u64),
) -> Result<(Digest, u64), FetchError> {
    if let Some(pin) = pin {
        if let Some(size) = store.blob_size(&pin.sha256).filter(|&have| pin.size.is_none_or(|want| want == have)) {
            return Ok((pin.sha256, size));
        }
    }
    let what = format!("`{origin}`");
    let mut writer = store.writer()?;
    match origin {
        Origin::Local(path) => {
            let local_error = |source| FetchError::Local { origin: origin.to_string(), source };
            let file = fs_err::File::open(path).map_err(local_error)?;
            copy_limited(file, &mut writer, pin, progress).map_err(local_error)?;
        }
        Origin::Remote(url) => {
            if network == Network::Offline {
                return Err(FetchError::Offline { origin: url.clone() });
            }
            let remote_error = |message: String| FetchError::Remote { origin: url.clone(), message };
            let mut response = ureq::get(url).call().map_err(|e| remote_error(e.to_string()))?;
            let body = response.body_mut().as_reader();
            copy_limited(body, &mut writer, pin, progress).map_err(|e| remote_error(e.to_string()))?;
        }
    }
    Ok(match pin {
        Some(pin) => writer.commit_expecting(&what, pin.sha256, pin.size)?,
        None => writer.commit()?,
    })
}

/// Copies at most one byte more than the pinned size, so an endless or oversized response
/// is cut off and then reported as a size mismatch.
fn copy_limited(reader: impl Read, out: &mut impl Write, pin: Option<Pin>, progress: &dyn Fn(u64)) -> io::Result<u64> {
    let limit = pin.and_then(|p| p.size).map_or(u64::MAX, |size| size.saturating_add(1));
    let mut reader = reader.take(limit);
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_fetch_checks_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let file = dir.path().join("input");
        fs_err::write(&file, b"payload").unwrap();
        let origin = Origin::Local(file.clone());
        let good = Pin { sha256: Digest::of(b"payload"), size: Some(7) };
        assert_eq!(fetch(&store, &origin, Some(good), Network::Offline, &|_| {}).unwrap(), (good.sha256, 7));

        fs_err::write(&file, b"payloaX").unwrap();
        let other = Pin { sha256: Digest::of(b"other!!"), size: Some(7) };
        let err = fetch(&store, &origin, Some(other), Network::Offline, &|_| {}).unwrap_err().to_string();
        assert!(err.contains(&other.sha256.to_string()) && err.contains(&Digest::of(b"payloaX").to_string()), "{err}");
        assert!(!store.has_blob(&Digest::of(b"payloaX")));
    }

    #[test]
    fn offline_refuses_remote() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let origin = Origin::Remote("http://127.0.0.1:9/x.tar".into());
        let err = fetch(&store, &origin, None, Network::Offline, &|_| {}).unwrap_err();
        assert!(matches!(err, FetchError::Offline { .. }));
    }
}
