//! Where `verify-feed` reads a feed from: a folder, or the URL a web server serves it at
//! (`http://` or `https://`, through ureq and its rustls, with `--ca FILE` for a private CA).
//! Files are addressed by their path relative to the feed's root, as the feed statement
//! names them; a path is checked before it is joined to anything.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch `{url}`: {message}")]
    Fetch { url: String, message: String },
    #[error("`{url}` answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("`{what}` is larger than the {cap} bytes allowed")]
    TooLarge { what: String, cap: u64 },
    #[error("`{0}` is not a path inside the feed")]
    BadPath(String),
    #[error("cannot read the CA certificate `{}`: {message}", path.display())]
    Ca { path: PathBuf, message: String },
}

/// A feed to read.
pub enum Source {
    Dir(PathBuf),
    Url { base: String, agent: ureq::Agent },
}

impl Source {
    /// `location` is a URL (`http://`, `https://`) or a folder. `ca` (PEM) replaces the
    /// built-in roots for HTTPS: a private feed is vouched for by its own CA, not by every
    /// public one.
    pub fn open(location: &str, ca: Option<&Path>) -> Result<Self, SourceError> {
        if !(location.starts_with("http://") || location.starts_with("https://")) {
            return Ok(Source::Dir(PathBuf::from(location)));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            // A missing file is an answer (`None`), not an error.
            .http_status_as_error(false);
        if let Some(ca) = ca {
            let bad = |message: String| SourceError::Ca { path: ca.to_owned(), message };
            let pem = fs_err::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(bad(e.to_string()))),
                })
                .collect::<Result<_, _>>()?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
            config = config.tls_config(tls);
        }
        Ok(Source::Url { base: location.trim_end_matches('/').to_owned(), agent: config.build().new_agent() })
    }

    /// Where `rel` is, for messages.
    pub fn describe(&self, rel: &str) -> String {
        match self {
            Source::Dir(dir) => dir.join(rel).display().to_string(),
            Source::Url { base, .. } => format!("{base}/{rel}"),
        }
    }

    /// Every file under a folder feed, relative and sorted; `None` for a URL (a web server
    /// lists nothing).
    pub fn list(&self) -> Result<Option<Vec<String>>, SourceError> {
        let Source::Dir(dir) = self else { return Ok(None) };
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(|e| SourceError::Read { path: dir.clone(), source: e.into() })?;
            if entry.file_type().is_dir() {
                continue;
            }
            let rel = entry.path().strip_prefix(dir).expect("walkdir stays under its root");
            files.push(rel.to_string_lossy().into_owned());
        }
        Ok(Some(files))
    }

    /// The bytes of `rel` (at most `cap`), or `None` when the feed has no such file.
    pub fn read(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(reader) = self.open_file(rel)? else { return Ok(None) };
        let mut bytes = Vec::new();
        let what = self.describe(rel);
        reader
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| SourceError::Read { path: PathBuf::from(&what), source })?;
        if bytes.len() as u64 > cap {
            return Err(SourceError::TooLarge { what, cap });
        }
        Ok(Some(bytes))
    }

    /// The sha256 and size of `rel`, streamed (at most `cap` bytes), or `None` when missing.
    pub fn hash(&self, rel: &str, cap: u64) -> Result<Option<(Digest, u64)>, SourceError> {
        let Some(reader) = self.open_file(rel)? else { return Ok(None) };
        let what = self.describe(rel);
        let mut reader = reader.take(cap + 1);
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(SourceError::Read { path: PathBuf::from(&what), source }),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        if size > cap {
            return Err(SourceError::TooLarge { what, cap });
        }
        Ok(Some((hasher.finish(), size)))
    }

    fn open_file(&self, rel: &str) -> Result<Option<Box<dyn Read + Send>>, SourceError> {
        // Only plain relative paths: a signed name is still checked before it is used, so a
        // statement cannot make us read outside the feed.
        if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(SourceError::BadPath(rel.to_owned()));
        }
        match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                match fs_err::File::open(&path) {
                    Ok(file) => Ok(Some(Box::new(file.into_file()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(SourceError::Read { path, source }),
                }
            }
            Source::Url { base, agent } => {
                let url = format!("{base}/{rel}");
                let response = agent
                    .get(&url)
                    .call()
                    .map_err(|e| SourceError::Fetch { url: url.clone(), message: e.to_string() })?;
                match response.status().as_u16() {
                    200 => Ok(Some(Box::new(response.into_body().into_reader()))),
                    404 | 410 => Ok(None),
                    status => Err(SourceError::Status { url, status }),
                }
            }
        }
    }
}
