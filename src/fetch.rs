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
    #[error("`{origin}` is larger than the {cap} bytes an input without a pinned size may have")]
    TooLarge { origin: String, cap: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most bytes read for an input whose size nothing pins yet (`candidate lock` learning a
/// new tarball's digest): without it an endless or huge response would fill the store's disk.
/// 8 GiB is beyond any vendor tarball we expect; a bigger one is pinned by size in the recipe's
/// lockfile after a download by other means.
pub const MAX_UNPINNED_BYTES: u64 = 8 << 30;

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
    fetch_capped(store, origin, pin, network, progress, MAX_UNPINNED_BYTES)
}

/// [`fetch`], with the cap on an input without a pinned size given (tests make it small).
fn fetch_capped(
    store: &Store,
    origin: &Origin,
    pin: Option<Pin>,
    network: Network,
    progress: &dyn Fn(u64),
    unpinned_cap: u64,
) -> Result<(Digest, u64), FetchError> {
    let cap = pin.and_then(|p| p.size).unwrap_or(unpinned_cap).saturating_add(1);
    let too_large = |read: u64| match pin.and_then(|p| p.size) {
        None if read > unpinned_cap => Err(FetchError::TooLarge { origin: origin.to_string(), cap: unpinned_cap }),
        _ => Ok(()),
    };
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
            too_large(copy_limited(file, &mut writer, cap, progress).map_err(local_error)?)?;
        }
        Origin::Remote(url) => {
            if network == Network::Offline {
                return Err(FetchError::Offline { origin: url.clone() });
            }
            let remote_error = |message: String| FetchError::Remote { origin: url.clone(), message };
            let mut response = ureq::get(url).call().map_err(|e| remote_error(e.to_string()))?;
            let body = response.body_mut().as_reader();
            too_large(copy_limited(body, &mut writer, cap, progress).map_err(|e| remote_error(e.to_string()))?)?;
        }
    }
    Ok(match pin {
        Some(pin) => writer.commit_expecting(&what, pin.sha256, pin.size)?,
        None => writer.commit()?,
    })
}

/// Copies at most `limit` bytes: one more than the pinned size, so an endless or oversized
/// response is cut off and then reported as a size mismatch; or, without a pinned size, one
/// more than the cap, so that it is reported as too large.
fn copy_limited(reader: impl Read, out: &mut impl Write, limit: u64, progress: &dyn Fn(u64)) -> io::Result<u64> {
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

    /// #16: an unpinned `http` download had no size cap: an endless response filled the
    /// store's disk. A loopback server (started and stopped here) sends bytes for ever; the
    /// fetch stops one byte past the cap, names the URL and the cap, and stores nothing.
    #[test]
    fn an_unpinned_download_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/endless.tar", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            // Until the client hangs up.
            while stream.write_all(&[b'x'; 64 << 10]).is_ok() {}
        });
        let err =
            fetch_capped(&store, &Origin::Remote(url.clone()), None, Network::Allowed, &|_| {}, 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`{url}` is larger than the 1048576 bytes an input without a pinned size may have")
        );
        drop(store);
        server.join().unwrap();
        let blobs = walkdir::WalkDir::new(dir.path().join("store"))
            .into_iter()
            .map(Result::unwrap)
            // The store's own lock file (`v1/lock`) is not content.
            .filter(|e| e.file_type().is_file() && e.file_name() != "lock");
        assert_eq!(blobs.count(), 0, "a refused download left a file in the store");
        // A local input, the same.
        let file = dir.path().join("big");
        fs_err::write(&file, vec![0u8; 100]).unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let err = fetch_capped(&store, &Origin::Local(file), None, Network::Offline, &|_| {}, 99).unwrap_err();
        assert!(
            err.to_string().ends_with("is larger than the 99 bytes an input without a pinned size may have"),
            "{err}"
        );
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
