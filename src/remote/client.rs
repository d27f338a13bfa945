//! The distribution-spec client: blobs (exists, mount, streamed upload, streamed download),
//! manifests, tags and referrers, over ureq (its rustls, `--ca` for a private CA), with the
//! registry's auth challenge answered as it comes (anonymous first; basic; or the bearer token
//! flow, with the credentials of [`super::auth`] if there are any).

use std::cell::{Cell, RefCell};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::auth::{parse_challenge, Challenge, Credentials};
use super::{Descriptor, Index, RemoteError, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::digest::{Digest, HashingWriter};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `http://` instead of `https://` (a loopback registry without TLS).
    pub plain_http: bool,
    /// Trust only the CA certificates of this PEM file (a private CA).
    pub ca: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Blobs larger than this are uploaded in `PATCH` chunks of this size; others in one `PUT`.
    pub chunk_size: u64,
}

/// The default chunk size: most layers go in one request (the fastest: no round trip per
/// chunk); a multi-gigabyte rootfs archive goes in pieces a proxy will not time out on.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

/// What a push sent and what it did not have to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Blobs uploaded, and their bytes.
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// Blobs the registry already had in the repository.
    pub present: u64,
    /// Blobs mounted from another repository.
    pub mounted: u64,
    /// Requests made.
    pub requests: u64,
}

/// One registry host.
pub struct Client {
    agent: ureq::Agent,
    /// `SCHEME://HOST[:PORT]`.
    base: String,
    host: String,
    credentials: Option<Credentials>,
    chunk_size: u64,
    /// The `Authorization` value that the last challenge called for.
    authorization: RefCell<Option<String>>,
    pub stats: Cell<Stats>,
}

/// A request body that can be sent again (after an auth challenge).
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset`.
    File {
        file: &'a fs_err::File,
        offset: u64,
        len: u64,
    },
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

type Response = ureq::http::Response<ureq::Body>;

/// The most bytes of a manifest, index or token answer read into memory: real ones are a few
/// kilobytes (a candidate artifact lists one descriptor per file); a registry that sends
/// more is broken or hostile.
const DOCUMENT_CAP: u64 = 16 << 20;

impl Client {
    pub fn new(host: &str, options: &ClientOptions) -> Result<Self, RemoteError> {
        let mut config = ureq::Agent::config_builder()
            // Statuses are answers to act on (401 → authenticate, 404 → absent), not errors.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            // A redirect of a blob to storage is followed; one of a PUT is the registry's
            // business to answer itself.
            .max_redirects(10);
        if let Some(ca) = &options.ca {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(load_ca(ca)?)))
                    .build(),
            );
        }
        let scheme = if options.plain_http { "http" } else { "https" };
        Ok(Client {
            agent: config.build().new_agent(),
            base: format!("{scheme}://{host}"),
            host: host.to_owned(),
            credentials: options.credentials.clone(),
            chunk_size: options.chunk_size.max(1),
            authorization: RefCell::new(None),
            stats: Cell::new(Stats::default()),
        })
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// A path under the registry (`/v2/…`) or a `Location` the registry gave, as a URL.
    fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Whether `url` is on the registry itself (same scheme, host and port): only there does a
    /// request carry the registry's `Authorization`. A `Location` or `Link` may point
    /// elsewhere (blob storage with its own signed URL, or a proxy's plain-HTTP address).
    fn on_registry(&self, url: &str) -> bool {
        url.strip_prefix(self.base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    }

    /// One request, sent again once with the `Authorization` a `401` challenge calls for.
    fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<Response, RemoteError> {
        let send = || -> Result<Response, RemoteError> {
            self.count(|s| s.requests += 1);
            let authorization = self.authorization.borrow().clone().filter(|_| self.on_registry(url));
            macro_rules! with_headers {
                ($builder:expr) => {{
                    let mut b = $builder;
                    for (k, v) in headers {
                        b = b.header(*k, *v);
                    }
                    if let Some(a) = &authorization {
                        b = b.header("Authorization", a.as_str());
                    }
                    b
                }};
            }
            let connect = |source| RemoteError::Connect { url: url.to_owned(), source: Box::new(source) };
            let with_body = |b: ureq::RequestBuilder<ureq::typestate::WithBody>| -> Result<Response, RemoteError> {
                match body {
                    Body::Empty => b.header("Content-Length", "0").send_empty().map_err(connect),
                    Body::Bytes(bytes) => b.send(*bytes).map_err(connect),
                    Body::File { file, offset, len } => {
                        let mut f = file.file();
                        f.seek(SeekFrom::Start(*offset))?;
                        let mut reader = f.take(*len);
                        b.header("Content-Length", len.to_string())
                            .send(ureq::SendBody::from_reader(&mut reader))
                            .map_err(connect)
                    }
                }
            };
            match method {
                Method::Get => with_headers!(self.agent.get(url)).call().map_err(connect),
                Method::Head => with_headers!(self.agent.head(url)).call().map_err(connect),
                Method::Post => with_body(with_headers!(self.agent.post(url))),
                Method::Put => with_body(with_headers!(self.agent.put(url))),
                Method::Patch => with_body(with_headers!(self.agent.patch(url))),
            }
        };
        let mut answered = false;
        loop {
            let response = send()?;
            if response.status() != 401 {
                return Ok(response);
            }
            let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
            if answered || !self.authenticate(challenge)? {
                return Err(RemoteError::Unauthorized { host: self.host.clone(), url: url.to_owned() });
            }
            answered = true;
        }
    }

    /// Sets the `Authorization` a challenge calls for; `false` if there is nothing new to try.
    fn authenticate(&self, challenge: &str) -> Result<bool, RemoteError> {
        let value = match parse_challenge(challenge) {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => c.basic(),
                None => return Ok(false),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let mut request = self.agent.get(&realm);
                if let Some(s) = &service {
                    request = request.query("service", s);
                }
                if let Some(s) = &scope {
                    request = request.query("scope", s);
                }
                if let Some(c) = &self.credentials {
                    request = request.header("Authorization", c.basic());
                }
                self.count(|s| s.requests += 1);
                let mut response =
                    request.call().map_err(|e| RemoteError::Connect { url: realm.clone(), source: Box::new(e) })?;
                if response.status() == 401 || response.status() == 403 {
                    return Err(RemoteError::Unauthorized { host: self.host.clone(), url: realm.clone() });
                }
                if !response.status().is_success() {
                    return Err(status(Method::Get, &realm, &mut response));
                }
                let bytes = read_capped(&realm, &mut response)?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&bytes).map_err(|source| RemoteError::Document {
                    what: "token",
                    url: realm.clone(),
                    source,
                })?;
                let token = token.token.or(token.access_token).filter(|t| !t.is_empty());
                format!("Bearer {}", token.ok_or(RemoteError::Token { realm })?)
            }
            None => return Ok(false),
        };
        let mut current = self.authorization.borrow_mut();
        if current.as_deref() == Some(value.as_str()) {
            return Ok(false);
        }
        *current = Some(value);
        Ok(true)
    }

    /// Whether the repository has blob `digest`.
    pub fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RemoteError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut response = self.call(Method::Head, &url, &[], &Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status(Method::Head, &url, &mut response)),
        }
    }

    /// Makes sure the repository has the blob at `path` (`digest`, `size`): already there,
    /// mounted from one of `mount_from`, or uploaded.
    pub fn ensure_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        mount_from: &[String],
    ) -> Result<(), RemoteError> {
        if self.has_blob(repository, digest)? {
            self.count(|s| s.present += 1);
            return Ok(());
        }
        // Mount from the first repository that has the blob (a `HEAD` there first: a mount
        // the registry cannot make opens an upload instead, which is then used).
        let mut location = None;
        for from in mount_from.iter().filter(|f| *f != repository) {
            if !self.has_blob(from, digest)? {
                continue;
            }
            let url = self.url(&format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"));
            let mut response = self.call(Method::Post, &url, &[], &Body::Empty)?;
            match response.status().as_u16() {
                201 => {
                    self.count(|s| s.mounted += 1);
                    return Ok(());
                }
                202 => location = Some(self.location(Method::Post, &url, &mut response)?),
                _ => return Err(status(Method::Post, &url, &mut response)),
            }
            break;
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
                let mut response = self.call(Method::Post, &url, &[], &Body::Empty)?;
                if response.status() != 202 {
                    return Err(status(Method::Post, &url, &mut response));
                }
                self.location(Method::Post, &url, &mut response)?
            }
        };
        let file = fs_err::File::open(path)?;
        let mut offset = 0;
        if size > self.chunk_size {
            // Chunked: each PATCH sends the next range, and the registry gives the next location.
            while offset < size {
                let len = self.chunk_size.min(size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let headers = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
                let mut response =
                    self.call(Method::Patch, &location, &headers, &Body::File { file: &file, offset, len })?;
                if response.status() != 202 {
                    return Err(status(Method::Patch, &location, &mut response));
                }
                location = self.location(Method::Patch, &location, &mut response)?;
                offset += len;
            }
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let body = Body::File { file: &file, offset, len: size - offset };
        let mut response = self.call(Method::Put, &url, &[("Content-Type", "application/octet-stream")], &body)?;
        if response.status() != 201 {
            return Err(status(Method::Put, &url, &mut response));
        }
        self.count(|s| {
            s.uploaded += 1;
            s.uploaded_bytes += size;
        });
        Ok(())
    }

    fn location(&self, method: Method, url: &str, response: &mut Response) -> Result<String, RemoteError> {
        match response.headers().get("location").and_then(|v| v.to_str().ok()) {
            Some(l) => Ok(self.url(l)),
            None => Err(RemoteError::Status {
                method: method.name(),
                url: url.to_owned(),
                status: response.status().as_u16(),
                detail: Some("no `Location` header".to_owned()),
            }),
        }
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest) and checks the digest
    /// the registry stored it under. Returns whether the registry handled its `subject` (the
    /// `OCI-Subject` header of OCI 1.1 registries with a referrers API).
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<bool, RemoteError> {
        let expected = Digest::of(bytes);
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let mut response = self.call(Method::Put, &url, &[("Content-Type", media_type)], &Body::Bytes(bytes))?;
        if response.status() != 201 {
            return Err(status(Method::Put, &url, &mut response));
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let subject = header("oci-subject").is_some();
        match header("docker-content-digest") {
            Some(actual) if actual != expected.to_string() => {
                Err(RemoteError::ManifestDigest { reference: format!("{repository}:{reference}"), expected, actual })
            }
            Some(_) => Ok(subject),
            // A registry that does not say: what it serves under our digest must be our bytes.
            None => match self.get_manifest(repository, &expected.to_string())? {
                Some((_, got)) if Digest::of(&got) == expected => Ok(subject),
                _ => Err(RemoteError::ManifestDigest {
                    reference: format!("{repository}:{reference}"),
                    expected,
                    actual: "(none)".to_owned(),
                }),
            },
        }
    }

    /// The manifest or index under `reference`: its media type and exact bytes; `None` if absent.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<Option<(String, Vec<u8>)>, RemoteError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
        let mut response = self.call(Method::Get, &url, &[("Accept", accept.as_str())], &Body::Empty)?;
        match response.status().as_u16() {
            200 => {
                let media_type =
                    response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                Ok(Some((media_type, read_capped(&url, &mut response)?)))
            }
            404 => Ok(None),
            _ => Err(status(Method::Get, &url, &mut response)),
        }
    }

    /// Streams blob `digest` into `out`, hashing it; refuses bytes that are not the blob,
    /// naming it as `name`. Reads at most one byte past `size`.
    pub fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        name: &str,
        out: &mut impl Write,
    ) -> Result<(), RemoteError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut response = self.call(Method::Get, &url, &[], &Body::Empty)?;
        if response.status() != 200 {
            return Err(status(Method::Get, &url, &mut response));
        }
        let mut writer = HashingWriter::new(out);
        let reader = response.body_mut().as_reader();
        std::io::copy(&mut reader.take(size.saturating_add(1)), &mut writer)?;
        let (actual, read, _) = writer.finish();
        if read != size {
            return Err(RemoteError::BlobSize { digest: *digest, name: name.to_owned(), expected: size, actual: read });
        }
        if actual != *digest {
            return Err(RemoteError::BlobDigest { digest: *digest, name: name.to_owned(), actual, size: read });
        }
        Ok(())
    }

    /// The repository's tags, every page.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("/v2/{repository}/tags/list"));
        let mut all = Vec::new();
        // A registry (or a proxy) that ignores `last=` sends the same page, or the same next
        // link, for ever: a page with no tag ends the listing, and one asked for twice, or
        // more pages than any registry serves, is an error.
        const MAX_PAGES: usize = 10_000;
        let mut asked = std::collections::HashSet::new();
        loop {
            if asked.len() == MAX_PAGES || !asked.insert(url.clone()) {
                return Err(RemoteError::Paging { url });
            }
            let mut response = self.call(Method::Get, &url, &[], &Body::Empty)?;
            if response.status() == 404 {
                return Ok(all);
            }
            if response.status() != 200 {
                return Err(status(Method::Get, &url, &mut response));
            }
            let next = response.headers().get("link").and_then(|v| v.to_str().ok()).and_then(next_link);
            let bytes = read_capped(&url, &mut response)?;
            let tags: Tags = serde_json::from_slice(&bytes).map_err(|source| RemoteError::Document {
                what: "tag list",
                url: url.clone(),
                source,
            })?;
            let page = tags.tags.unwrap_or_default();
            let empty = page.is_empty();
            all.extend(page);
            match next {
                Some(n) if !empty => url = self.url(&n),
                _ => break,
            }
        }
        all.sort();
        Ok(all)
    }

    /// The referrers of `digest`: through the referrers API, or the tag-schema fallback where
    /// the registry has none.
    pub fn referrers(&self, repository: &str, digest: &Digest) -> Result<Vec<Descriptor>, RemoteError> {
        let url = self.url(&format!("/v2/{repository}/referrers/{digest}"));
        let mut response = self.call(Method::Get, &url, &[("Accept", INDEX_MEDIA_TYPE)], &Body::Empty)?;
        let is_index = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(INDEX_MEDIA_TYPE));
        let mut found = if response.status() == 200 && is_index {
            let bytes = read_capped(&url, &mut response)?;
            parse_index(&url, &bytes)?.manifests
        } else {
            Vec::new()
        };
        // Also the fallback tag: a registry that gained the API later still has what was
        // pushed to it before.
        let tag = super::fallback_tag(digest);
        if let Some((_, bytes)) = self.get_manifest(repository, &tag)? {
            for d in parse_index(&tag, &bytes)?.manifests {
                if !found.iter().any(|f| f.digest == d.digest) {
                    found.push(d);
                }
            }
        }
        Ok(found)
    }
}

fn parse_index(url: &str, bytes: &[u8]) -> Result<Index, RemoteError> {
    serde_json::from_slice(bytes).map_err(|source| RemoteError::Document {
        what: "image index",
        url: url.to_owned(),
        source,
    })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
}

fn read_capped(url: &str, response: &mut Response) -> Result<Vec<u8>, RemoteError> {
    response
        .body_mut()
        .with_config()
        .limit(DOCUMENT_CAP)
        .read_to_vec()
        .map_err(|e| RemoteError::Body { url: url.to_owned(), source: Box::new(e) })
}

/// An unexpected status, with the registry's own error message if it gave one.
fn status(method: Method, url: &str, response: &mut Response) -> RemoteError {
    let code = response.status().as_u16();
    let detail = response.body_mut().with_config().limit(64 << 10).read_to_string().ok().and_then(|body| {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            code: Option<String>,
            message: Option<String>,
        }
        let errors: Errors = serde_json::from_str(&body).ok()?;
        let items: Vec<String> = errors
            .errors
            .into_iter()
            .map(|e| format!("{} {}", e.code.unwrap_or_default(), e.message.unwrap_or_default()).trim().to_owned())
            .collect();
        (!items.is_empty()).then(|| items.join("; "))
    });
    RemoteError::Status { method: method.name(), url: url.to_owned(), status: code, detail }
}

/// The certificates of a PEM file.
fn load_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, RemoteError> {
    let shown = path.display().to_string();
    let bytes = fs_err::read(path).map_err(|source| RemoteError::Ca { path: shown.clone(), source })?;
    let certs: Vec<_> = ureq::tls::parse_pem(&bytes)
        .filter_map(Result::ok)
        .filter_map(|item| match item {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(RemoteError::CaEmpty { path: shown });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that ignores `last=` links every page to the same next page: the listing
    /// ends with an error naming it instead of asking for ever. (A loopback server that
    /// answers every request the same, stopped with the test.)
    #[test]
    fn a_tag_list_that_never_ends_is_an_error() {
        use std::io::{BufRead as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let body = r#"{"name":"app","tags":["a"]}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nLink: </v2/app/tags/list?last=a>; rel=\"next\"\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let options = ClientOptions { plain_http: true, ca: None, credentials: None, chunk_size: DEFAULT_CHUNK_SIZE };
        let client = Client::new(&format!("127.0.0.1:{port}"), &options).unwrap();
        let err = client.tags("app").unwrap_err().to_string();
        assert!(err.contains(&format!("`http://127.0.0.1:{port}/v2/app/tags/list?last=a` was read already")), "{err}");
        server.join().unwrap();
    }

    /// The registry's `Authorization` goes to the registry only: not to another host, another
    /// port, plain HTTP when the registry is HTTPS, or a host whose name merely starts alike.
    #[test]
    fn credentials_stay_on_the_registry() {
        let options = ClientOptions { plain_http: false, ca: None, credentials: None, chunk_size: DEFAULT_CHUNK_SIZE };
        let client = Client::new("registry.test:5000", &options).unwrap();
        assert!(client.on_registry("https://registry.test:5000/v2/app/blobs/uploads/1?state=x"));
        assert!(client.on_registry(&client.url("/v2/app/tags/list?last=b")));
        for elsewhere in [
            "http://registry.test:5000/v2/app/blobs/uploads/1",
            "https://registry.test:5001/v2/",
            "https://registry.test:50001/v2/",
            "https://storage.test/blob?signature=s",
            "https://registry.test:5000.evil.test/v2/",
        ] {
            assert!(!client.on_registry(elsewhere), "{elsewhere}");
        }
    }
}
