//! Fetching inputs into the store.
//!
//! Every input is streamed into a [`BlobWriter`](crate::store::BlobWriter): hashed while it
//! is written, checked against the lock's size and sha256, and only then named. A download
//! that is cut short, too long, or different is refused with both digests named, and leaves
//! nothing behind. Local paths and `file://` URLs are read the same way, so that `--offline`
//! (which forbids the network only) still builds from them.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::digest::Digest;
use crate::recipe::Origin;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to read `{origin}`")]
    Local { origin: String, source: io::Error },
    #[error("failed to download `{origin}`: {message}")]
    Remote { origin: String, message: String },
    /// The server says the file is not there (404) or gone for good (410).
    #[error("failed to download `{origin}`: http status: {status}")]
    Gone { origin: String, status: u16 },
    #[error("failed to download `{origin}` after {attempts} attempts: {fault}")]
    Retried { origin: String, attempts: u32, fault: String },
    #[error("`{origin}` is not in the store and `--offline` forbids downloading it")]
    Offline { origin: String },
    #[error("`{origin}` is larger than the {cap} bytes an input without a pinned size may have")]
    TooLarge { origin: String, cap: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FetchError {
    /// Whether the location no longer serves the pinned input: not found there (HTTP 404 or
    /// 410, or a missing file), or other bytes than the pin (after the retries). What an
    /// archive's mirror says of a file it dropped or replaced since the lock; another copy
    /// (a snapshot of the archive as of the lock) may still have it.
    pub fn moved_on(&self) -> bool {
        match self {
            FetchError::Gone { .. } | FetchError::Store(StoreError::Mismatch { .. }) => true,
            FetchError::Local { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// The most bytes read for an input whose size nothing pins yet (`candidate lock` learning a
/// new tarball's digest): without it an endless or huge response would fill the store's disk.
/// 8 GiB is beyond any vendor tarball we expect; a bigger one is pinned by size in the recipe's
/// lockfile after a download by other means.
pub const MAX_UNPINNED_BYTES: u64 = 8 << 30;

/// How a download copes with a faulty network: transient faults (connection refused or
/// reset, a body cut short, HTTP 5xx, a stalled server, wrong bytes for a pin) are retried
/// `attempts` times in all, waiting `backoff`, then twice as long each time (at most
/// `max_backoff`); then the last fault is reported with the number of attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetPolicy {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Connecting, TLS included.
    pub connect: Duration,
    /// From the request sent to the response headers received.
    pub response: Duration,
    /// The longest wait for any one read of the body. ureq's body timeout bounds the whole
    /// body, which would cut a slow but live multi-gigabyte download; a per-read deadline
    /// catches a server that sent the headers and then nothing, however big the input.
    pub stall: Duration,
}

impl Default for NetPolicy {
    /// 4 attempts with 1 s, 2 s, 4 s between them ride out a mirror's restart or a proxy's
    /// brief hiccup in about 7 s, without hammering a server that is really down. 30 s to
    /// connect and 60 s for headers or for any one read are far beyond a healthy server and
    /// short enough that a hung one fails a CI job in minutes, not hours.
    fn default() -> Self {
        NetPolicy {
            attempts: 4,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect: Duration::from_secs(30),
            response: Duration::from_secs(60),
            stall: Duration::from_secs(60),
        }
    }
}

impl NetPolicy {
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect))
            .timeout_recv_response(Some(self.response))
            .timeout_per_read(Some(self.stall))
            .build()
            .new_agent()
    }

    /// The wait after failed attempt `attempt` (1-based).
    fn backoff_after(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.max_backoff)
    }
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
    fetch_capped(store, origin, pin, network, progress, MAX_UNPINNED_BYTES, &NetPolicy::default())
}

/// [`fetch`] of an input without a pin that is small by nature (an archive's `InRelease`: a few
/// hundred kilobytes), refused past `cap` bytes instead of [`MAX_UNPINNED_BYTES`] (a server
/// could otherwise make a lock write gigabytes, and with gzip transfer send few of them).
pub fn fetch_small(store: &Store, origin: &Origin, network: Network, cap: u64) -> Result<(Digest, u64), FetchError> {
    fetch_capped(store, origin, None, network, &|_| {}, cap, &NetPolicy::default())
}

/// [`fetch`], with the cap on an input without a pinned size and the network policy given
/// (tests make them small).
fn fetch_capped(
    store: &Store,
    origin: &Origin,
    pin: Option<Pin>,
    network: Network,
    progress: &dyn Fn(u64),
    unpinned_cap: u64,
    policy: &NetPolicy,
) -> Result<(Digest, u64), FetchError> {
    if let Some(pin) = pin {
        if let Some(size) = store.blob_size(&pin.sha256).filter(|&have| pin.size.is_none_or(|want| want == have)) {
            return Ok((pin.sha256, size));
        }
    }
    let keep = |reader: &mut dyn Read, read_error: &dyn Fn(io::Error) -> FetchError| {
        store_body(store, reader, read_error, origin, pin, unpinned_cap, progress)
    };
    match origin {
        Origin::Local(path) => {
            let local_error = |source| FetchError::Local { origin: origin.to_string(), source };
            let mut file = fs_err::File::open(path).map_err(local_error)?;
            keep(&mut file, &local_error)
        }
        Origin::Remote(url) => {
            if network == Network::Offline {
                return Err(FetchError::Offline { origin: url.clone() });
            }
            let agent = policy.agent();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let retried = |fault| FetchError::Retried { origin: url.clone(), attempts: attempt, fault };
                let failure = match request(&agent, url) {
                    Err(Failure::Transient(fault)) => retried(fault),
                    Err(Failure::Fatal(e)) => return Err(e),
                    // A body cut short or stalled is the server's or the network's fault.
                    Ok(mut response) => match keep(&mut response.body_mut().as_reader(), &|e| {
                        retried(format!("reading the body failed: {e}"))
                    }) {
                        Ok(got) => return Ok(got),
                        // Wrong bytes may be a proxy's or mirror's passing fault: retried like
                        // one, then reported as the digest error it is (which names the URL).
                        Err(e @ (FetchError::Retried { .. } | FetchError::Store(StoreError::Mismatch { .. }))) => e,
                        Err(e) => return Err(e),
                    },
                };
                if attempt >= policy.attempts {
                    return Err(failure);
                }
                std::thread::sleep(policy.backoff_after(attempt));
            }
        }
    }
}

/// Why a request failed.
enum Failure {
    /// The network's or the server's fault, described: worth another attempt.
    Transient(String),
    Fatal(FetchError),
}

/// Sends the request for `url`; a fault worth another attempt is [`Failure::Transient`].
fn request(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, Failure> {
    agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) if code >= 500 || code == 408 || code == 429 => {
            Failure::Transient(format!("http status {code}"))
        }
        ureq::Error::StatusCode(status @ (404 | 410)) => {
            Failure::Fatal(FetchError::Gone { origin: url.to_owned(), status })
        }
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => Failure::Transient(e.to_string()),
        e => Failure::Fatal(FetchError::Remote { origin: url.to_owned(), message: e.to_string() }),
    })
}

/// Copies `reader` (what `origin` gives; its failures are `read_error`'s) into a new blob and
/// names it, if it is what `pin` says or, without a pinned size, no larger than
/// `unpinned_cap`. Refused, it leaves nothing.
fn store_body(
    store: &Store,
    reader: &mut dyn Read,
    read_error: &dyn Fn(io::Error) -> FetchError,
    origin: &Origin,
    pin: Option<Pin>,
    unpinned_cap: u64,
    progress: &dyn Fn(u64),
) -> Result<(Digest, u64), FetchError> {
    let pinned_size = pin.and_then(|p| p.size);
    let mut writer = store.writer()?;
    let limit = pinned_size.unwrap_or(unpinned_cap).saturating_add(1);
    let read = copy_limited(reader, &mut writer, limit, progress).map_err(|e| match e {
        CopyError::Read(e) => read_error(e),
        // The store's disk, not the input: a full store was reported as a failure to read the
        // input (#16). The store's writer names a full disk as such.
        CopyError::Write(e) => StoreError::Io(e).into(),
    })?;
    if pinned_size.is_none() && read > unpinned_cap {
        return Err(FetchError::TooLarge { origin: origin.to_string(), cap: unpinned_cap });
    }
    Ok(match pin {
        Some(pin) => writer.commit_expecting(&format!("`{origin}`"), pin.sha256, pin.size),
        None => writer.commit(),
    }?)
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies at most `limit` bytes: one more than the pinned size, so an endless or oversized
/// response is cut off and then reported as a size mismatch; or, without a pinned size, one
/// more than the cap, so that it is reported as too large.
fn copy_limited(reader: impl Read, out: &mut impl Write, limit: u64, progress: &dyn Fn(u64)) -> Result<u64, CopyError> {
    let mut reader = reader.take(limit);
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
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
        let err = fetch_capped(&store, &Origin::Remote(url.clone()), None, Network::Allowed, &|_| {}, 1 << 20, &fast())
            .unwrap_err();
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
        let err = fetch_capped(&store, &Origin::Local(file), None, Network::Offline, &|_| {}, 99, &fast()).unwrap_err();
        assert!(
            err.to_string().ends_with("is larger than the 99 bytes an input without a pinned size may have"),
            "{err}"
        );
    }

    /// Millisecond timeouts and backoff, 3 attempts: the network tests take well under a second.
    fn fast() -> NetPolicy {
        NetPolicy {
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
            stall: Duration::from_millis(200),
        }
    }

    /// A loopback HTTP server: answers each connection (one request each) with
    /// `respond(n, stream)`, `n` counting from 0, until [`Server::stop`], which joins its
    /// thread and returns how many requests it served.
    struct Server {
        url: String,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<usize>,
    }

    impl Server {
        fn start(respond: impl Fn(usize, &mut std::net::TcpStream) + Send + 'static) -> Server {
            use std::sync::atomic::Ordering;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}/input.tar", listener.local_addr().unwrap());
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopped = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut served = 0;
                while !stopped.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            // A safety net: no test waits on a client for long.
                            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut request = [0u8; 4096];
                            let _ = stream.read(&mut request);
                            respond(served, &mut stream);
                            served += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                served
            });
            Server { url, stop, thread }
        }

        fn stop(self) -> usize {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            self.thread.join().unwrap()
        }
    }

    /// The headers of a 200 response announcing `len` bytes.
    fn ok_head(stream: &mut std::net::TcpStream, len: usize) {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
    }

    fn ok(stream: &mut std::net::TcpStream, body: &[u8]) {
        ok_head(stream, body.len());
        let _ = stream.write_all(body);
    }

    fn status_500(stream: &mut std::net::TcpStream) {
        let _ =
            stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }

    /// Runs a pinned fetch of `BODY` against `server`; returns its result, the number of
    /// requests served, and the files left in the store (its `v1/lock` is not content).
    fn fetch_from(server: Server) -> (Result<(Digest, u64), FetchError>, usize, Vec<std::path::PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let pin = Pin { sha256: Digest::of(BODY), size: Some(BODY.len() as u64) };
        let origin = Origin::Remote(server.url.clone());
        let got = fetch_capped(&store, &origin, Some(pin), Network::Allowed, &|_| {}, 1 << 20, &fast());
        let served = server.stop();
        drop(store);
        let left = walkdir::WalkDir::new(dir.path().join("store"))
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file() && e.file_name() != "lock")
            .map(|e| e.path().strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        (got, served, left)
    }

    const BODY: &[u8] = b"the right bytes of a pinned input";

    /// #16 network faults: a body cut short of its Content-Length is retried, then reported
    /// with the URL and the attempts, and leaves nothing in the store.
    #[test]
    fn a_truncated_body_is_retried_then_refused() {
        let server = Server::start(|_, stream| {
            ok_head(stream, BODY.len());
            let _ = stream.write_all(&BODY[..10]);
        });
        let url = server.url.clone();
        let (got, served, left) = fetch_from(server);
        let err = got.unwrap_err().to_string();
        assert!(err.starts_with(&format!("failed to download `{url}` after 3 attempts: ")), "{err}");
        eprintln!("{err}");
        assert_eq!(served, 3);
        assert_eq!(left, Vec::<std::path::PathBuf>::new());
    }

    /// A server that sends the headers and then nothing: each attempt gives up after the
    /// stall deadline instead of hanging the build.
    #[test]
    fn a_stalled_body_times_out() {
        let server = Server::start(|_, stream| {
            ok_head(stream, BODY.len());
            let _ = stream.write_all(&BODY[..5]);
            // Until the client hangs up (or the 5 s safety net).
            let _ = stream.read(&mut [0u8; 16]);
        });
        let url = server.url.clone();
        let started = std::time::Instant::now();
        let (got, served, left) = fetch_from(server);
        let took = started.elapsed();
        let err = got.unwrap_err().to_string();
        assert!(err.starts_with(&format!("failed to download `{url}` after 3 attempts: ")), "{err}");
        assert!(err.contains("timeout") || err.contains("timed out"), "{err}");
        eprintln!("{err} ({took:?})");
        assert_eq!(served, 3);
        // The client gave up, not the server: its 5 s safety net would end each attempt with
        // a short body, not a timeout, and three of them would take 15 s.
        assert!(took < Duration::from_secs(15), "took {took:?}");
        assert_eq!(left, Vec::<std::path::PathBuf>::new());
    }

    /// Two 500s, then the right bytes: the third attempt succeeds.
    #[test]
    fn server_errors_are_retried_until_success() {
        let server = Server::start(|n, stream| if n < 2 { status_500(stream) } else { ok(stream, BODY) });
        let (got, served, left) = fetch_from(server);
        assert_eq!(got.unwrap(), (Digest::of(BODY), BODY.len() as u64));
        assert_eq!(served, 3);
        let blob = std::path::Path::new("store/v1/blobs/sha256").join(Digest::of(BODY).hex());
        assert_eq!(left, vec![blob]);
    }

    /// A server that always fails: bounded attempts, then an error naming the status.
    #[test]
    fn a_server_that_always_fails_is_given_up() {
        let server = Server::start(|_, stream| status_500(stream));
        let url = server.url.clone();
        let (got, served, left) = fetch_from(server);
        assert_eq!(
            got.unwrap_err().to_string(),
            format!("failed to download `{url}` after 3 attempts: http status 500")
        );
        assert_eq!(served, 3);
        assert_eq!(left, Vec::<std::path::PathBuf>::new());
    }

    /// Wrong bytes for a pin: retried a bounded number of times, then the digest error;
    /// nothing corrupt is stored.
    #[test]
    fn wrong_bytes_for_a_pin_are_refused_after_the_retries() {
        let wrong = b"the wrong bytes of a pinned input";
        assert_eq!(wrong.len(), BODY.len());
        let server = Server::start(move |_, stream| ok(stream, wrong));
        let (got, served, left) = fetch_from(server);
        let err = got.unwrap_err();
        assert!(matches!(err, FetchError::Store(StoreError::Mismatch { .. })), "{err:?}");
        let err = err.to_string();
        assert!(err.contains(&Digest::of(BODY).to_string()) && err.contains(&Digest::of(wrong).to_string()), "{err}");
        assert_eq!(served, 3);
        assert_eq!(left, Vec::<std::path::PathBuf>::new());
    }

    /// 404 and 410 say the file is not there (a mirror that moved on): one request, no
    /// retries, and an error that says so, as a missing local file does; a mismatch too
    /// (`wrong_bytes_…` above), a server error not.
    #[test]
    fn not_found_and_gone_are_told_apart() {
        for status in [404, 410] {
            let server = Server::start(move |_, stream| {
                let head = format!("HTTP/1.1 {status} Gone\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(head.as_bytes());
            });
            let url = server.url.clone();
            let (got, served, left) = fetch_from(server);
            let err = got.unwrap_err();
            assert!(err.moved_on(), "{err:?}");
            assert_eq!(err.to_string(), format!("failed to download `{url}`: http status: {status}"));
            assert_eq!(served, 1);
            assert_eq!(left, Vec::<std::path::PathBuf>::new());
        }
        let (got, _, _) = fetch_from(Server::start(|_, stream| status_500(stream)));
        assert!(!got.unwrap_err().moved_on());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let pin = Pin { sha256: Digest::of(BODY), size: None };
        let missing = Origin::Local(dir.path().join("missing"));
        assert!(fetch(&store, &missing, Some(pin), Network::Offline, &|_| {}).unwrap_err().moved_on());
        let wrong = dir.path().join("wrong");
        fs_err::write(&wrong, b"other").unwrap();
        assert!(fetch(&store, &Origin::Local(wrong), Some(pin), Network::Offline, &|_| {}).unwrap_err().moved_on());
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
