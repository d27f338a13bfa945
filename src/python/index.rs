//! A simple repository API client: PEP 503 (HTML) and PEP 691 (JSON) project pages, read
//! over `http(s)://` (asking for JSON by `Accept`, reading whatever `Content-Type` comes
//! back), from `file://` URLs and from plain paths.
//!
//! A local index is a folder laid out as a static server would serve it: `ROOT/NAME/` holding
//! `index.json` (PEP 691) or `index.html` (PEP 503), `NAME` the normalised project name. When
//! both are there the JSON page is read, as an HTTP client asking for JSON first would get.
//!
//! A page lists files; each file's URL is resolved against the page's URL (after redirects,
//! or a `<base href>`), and a `#sha256=` fragment, or the JSON `hashes`, gives its sha256.
//! Nothing here trusts a listed hash: the lock keeps only files whose hash the requirements
//! list, and the fetch checks the bytes against it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Name;
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the Python index `{index}` has no project `{name}` ({url} not found)")]
    NotFound { index: String, name: Name, url: String },
    #[error("failed to read `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to get `{url}`: {message}")]
    Http { url: String, message: String },
    #[error("`{url}` is not a valid PEP 691 JSON project page: {message}")]
    Json { url: String, message: String },
    #[error("`{index}` is not an index URL: {reason}")]
    BadUrl { index: String, reason: &'static str },
}

/// Where the index is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The base URL, ending in `/`: `https://…/simple/` or `file:///…/`.
    base: String,
}

/// One file a project page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    /// Absolute, without its fragment.
    pub url: String,
    pub sha256: Option<Digest>,
    pub requires_python: Option<String>,
    pub yanked: bool,
}

impl Index {
    /// An index given as an `http(s)://` or `file://` URL, or a path (relative to `base_dir`).
    pub fn new(index: &str, base_dir: &Path) -> Result<Index, IndexError> {
        let bad = |reason| IndexError::BadUrl { index: index.to_owned(), reason };
        let url = if index.starts_with("http://") || index.starts_with("https://") {
            index.to_owned()
        } else if let Some(path) = index.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a `file://` URL must hold an absolute path"));
            }
            index.to_owned()
        } else if index.contains("://") {
            return Err(bad("only `http://`, `https://`, `file://` and paths are read"));
        } else {
            let path =
                std::path::absolute(base_dir.join(index)).map_err(|_| bad("the path cannot be made absolute"))?;
            format!("file://{}", percent_encode_path(&path.to_string_lossy()))
        };
        let base = if url.ends_with('/') { url } else { format!("{url}/") };
        Ok(Index { base })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The files of project `name`.
    pub fn files(&self, name: &Name) -> Result<Vec<IndexFile>, IndexError> {
        let page = format!("{}{}/", self.base, name);
        let (final_url, body, json) = match page.strip_prefix("file://") {
            Some(path) => {
                let dir = PathBuf::from(percent_decode(path));
                let not_found =
                    || IndexError::NotFound { index: self.base.clone(), name: name.clone(), url: page.clone() };
                if !dir.is_dir() {
                    return Err(not_found());
                }
                let (file, json) = match dir.join("index.json") {
                    j if j.is_file() => (j, true),
                    _ => (dir.join("index.html"), false),
                };
                if !file.is_file() {
                    return Err(not_found());
                }
                let body =
                    fs_err::read_to_string(&file).map_err(|source| IndexError::Read { path: file.clone(), source })?;
                (page.clone(), body, json)
            }
            None => self.get(&page, name)?,
        };
        parse_page(&final_url, &body, json)
    }

    fn get(&self, url: &str, name: &Name) -> Result<(String, String, bool), IndexError> {
        use ureq::ResponseExt as _;
        let http = |message: String| IndexError::Http { url: url.to_owned(), message };
        let response = ureq::get(url)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01",
            )
            .call();
        let mut response = match response {
            Ok(r) => r,
            Err(ureq::Error::StatusCode(404)) => {
                return Err(IndexError::NotFound { index: self.base.clone(), name: name.clone(), url: url.to_owned() })
            }
            Err(e) => return Err(http(e.to_string())),
        };
        let final_url = response.get_uri().to_string();
        let json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().starts_with("application/vnd.pypi.simple.v1+json"));
        let mut body = String::new();
        // A project page of a large project (numpy) is a few MB; 64 MB is far beyond any.
        response.body_mut().as_reader().take(64 << 20).read_to_string(&mut body).map_err(|e| http(e.to_string()))?;
        Ok((final_url, body, json))
    }
}

#[derive(Deserialize)]
struct JsonPage {
    meta: JsonMeta,
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: String,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    /// `false`, `true` or a reason.
    #[serde(default)]
    yanked: serde_json::Value,
}

/// The files a project page at `page` lists: `body` is PEP 691 JSON if `json`, else PEP 503
/// HTML. Public for the fuzz target of index pages (they come from the network).
#[doc(hidden)]
pub fn parse_page(page: &str, body: &str, json: bool) -> Result<Vec<IndexFile>, IndexError> {
    if json {
        parse_json(page, body)
    } else {
        Ok(parse_html(page, body))
    }
}

fn parse_json(page: &str, body: &str) -> Result<Vec<IndexFile>, IndexError> {
    let bad = |message: String| IndexError::Json { url: page.to_owned(), message };
    let parsed: JsonPage = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    if parsed.meta.api_version.split('.').next() != Some("1") {
        return Err(bad(format!("API version `{}` (this candidate reads 1.x)", parsed.meta.api_version)));
    }
    let mut files = Vec::new();
    for f in parsed.files {
        let sha256 = match f.hashes.get("sha256") {
            Some(hex) => Some(
                Digest::from_hex(hex).map_err(|_| bad(format!("`{}` has an invalid sha256 `{hex}`", f.filename)))?,
            ),
            None => None,
        };
        let (url, _) = split_fragment(&resolve(page, &f.url));

        let yanked = !matches!(f.yanked, serde_json::Value::Null | serde_json::Value::Bool(false));
        files.push(IndexFile { filename: f.filename, url, sha256, requires_python: f.requires_python, yanked });
    }
    Ok(files)
}

/// The `<a>` elements of a PEP 503 page. Lenient, as browsers and pip are: what is not an
/// anchor with an `href` is skipped.
fn parse_html(page: &str, body: &str) -> Vec<IndexFile> {
    let lower = body.to_ascii_lowercase();
    let mut base = page.to_owned();
    if let Some(at) = lower.find("<base ") {
        if let Some(href) = attributes(&body[at + 5..]).into_iter().find(|(k, _)| k == "href").map(|(_, v)| v) {
            base = resolve(page, &href);
        }
    }
    let mut files = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<a").map(|i| i + from) {
        from = at + 2;
        // `<a` followed by whitespace: not `<abbr>`.
        if !lower[from..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let attrs = attributes(&body[from..]);
        let Some(href) = attrs.iter().find(|(k, _)| k == "href").map(|(_, v)| v.clone()) else { continue };
        let resolved = resolve(&base, &href);
        let (url, fragment) = split_fragment(&resolved);
        let text_start = body[from..].find('>').map(|i| from + i + 1).unwrap_or(body.len());
        let text_end = lower[text_start..].find("</a").map(|i| text_start + i).unwrap_or(text_start);
        let text = unescape(body[text_start..text_end].trim());
        let filename = if text.is_empty() { percent_decode(url.rsplit('/').next().unwrap_or_default()) } else { text };
        let sha256 = fragment.and_then(|f| f.strip_prefix("sha256=").and_then(|hex| Digest::from_hex(hex).ok()));
        let attr = |name: &str| attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        files.push(IndexFile {
            filename,
            url,
            sha256,
            requires_python: attr("data-requires-python"),
            yanked: attr("data-yanked").is_some(),
        });
    }
    files
}

/// The attributes of a tag, from just after its name up to its `>`: names lower-cased,
/// values unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'>' {
            return out;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'>') {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
                let quote = bytes[i];
                let end = tag[i + 1..].find(quote as char).map_or(bytes.len(), |e| i + 1 + e);
                value = unescape(&tag[i + 1..end]);
                i = (end + 1).min(bytes.len());
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = unescape(&tag[start..i]);
            }
        }
        out.push((name, value));
    }
}

/// HTML character references: the named ones a URL or file name holds, and numeric ones.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let entity = &rest[1..e];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `url` without and with its `#fragment`.
fn split_fragment(url: &str) -> (String, Option<&str>) {
    match url.split_once('#') {
        Some((u, f)) => (u.to_owned(), Some(f)),
        None => (url.to_owned(), None),
    }
}

/// RFC 3986 reference resolution, for the forms index pages use: absolute URLs,
/// scheme-relative `//host/…`, absolute paths `/…`, and relative paths with `.`/`..`.
pub(crate) fn resolve(base: &str, href: &str) -> String {
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let has_scheme = href.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !s.contains('/')
    });
    if has_scheme {
        return href.to_owned();
    }
    if let Some(rest) = href.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    // The authority ends at the first `/` after the scheme.
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let origin = &base[..authority_end];
    let base_path = base[authority_end..].split(['?', '#']).next().unwrap_or_default();
    if href.starts_with('#') {
        return format!("{}{href}", base.split('#').next().unwrap_or(base));
    }
    let (path, suffix) = match href.find(['?', '#']) {
        Some(at) => (&href[..at], &href[at..]),
        None => (href, ""),
    };
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{path}", if dir.is_empty() { "/" } else { dir })
    };
    // Remove dot segments.
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = joined.split('/').collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        match *seg {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    format!("{origin}{}{suffix}", segments.join("/"))
}

/// `%XX` decoding of a URL path (invalid escapes are kept as written).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if let (b'%', Some(Some(hi)), Some(Some(lo))) =
            (bytes[i], bytes.get(i + 1).map(|b| hex(*b)), bytes.get(i + 2).map(|b| hex(*b)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX` encoding of the bytes of a path that a URL path cannot hold as they are.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0569859f95fc761b18b45ef421b1290a0f65f147e92a1e5eb3e635f9a5e4e66f";

    #[test]
    fn urls_resolve_as_rfc_3986_says() {
        let page = "https://example.invalid/simple/numpy/";
        for (href, url) in [
            ("../../files/numpy-1.whl", "https://example.invalid/files/numpy-1.whl"),
            ("numpy-1.whl#sha256=ab", "https://example.invalid/simple/numpy/numpy-1.whl#sha256=ab"),
            ("/p/n.whl", "https://example.invalid/p/n.whl"),
            ("//other.invalid/n.whl", "https://other.invalid/n.whl"),
            ("https://x.invalid/a/./b/../n.whl", "https://x.invalid/a/./b/../n.whl"),
            ("./n.whl?x=1", "https://example.invalid/simple/numpy/n.whl?x=1"),
            ("../../../../n.whl", "https://example.invalid/n.whl"),
        ] {
            assert_eq!(resolve(page, href), url, "{href}");
        }
        assert_eq!(resolve("file:///srv/index/numpy/", "../../wheels/n.whl"), "file:///srv/wheels/n.whl");
    }

    #[test]
    fn html_pages_give_files_with_their_hashes() {
        let page = format!(
            "<!DOCTYPE html><html><body><h1>Links for numpy</h1>\n\
             <a href=\"../../files/numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl#sha256={H}\" data-requires-python=\"&gt;=3.9\">numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl</a><br/>\n\
             <A HREF='numpy-1.0.tar.gz#md5=00' data-yanked=\"\">numpy-1.0.tar.gz</A>\n\
             <abbr>not a link</abbr><a name=x>no href</a>\n\
             <a href=\"n%2B1-2.0-py3-none-any.whl\"></a></body></html>"
        );
        let files = parse_html("https://example.invalid/simple/numpy/", &page);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].url, "https://example.invalid/files/numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl");
        assert_eq!(files[0].sha256.unwrap().hex(), H);
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.9"));
        assert!(!files[0].yanked && files[1].yanked && files[1].sha256.is_none());
        assert_eq!(files[2].filename, "n+1-2.0-py3-none-any.whl");
        // A `<base href>` moves relative links.
        let files = parse_html(
            "https://a.invalid/simple/x/",
            "<base href=\"https://b.invalid/w/\"><a href=\"x.whl\">x.whl</a>",
        );
        assert_eq!(files[0].url, "https://b.invalid/w/x.whl");
    }

    #[test]
    fn json_pages_give_files_with_their_hashes() {
        let body = format!(
            "{{\"meta\": {{\"api-version\": \"1.1\"}}, \"name\": \"numpy\", \"files\": [\
             {{\"filename\": \"numpy-1.0-py3-none-any.whl\", \"url\": \"../../f/numpy-1.0-py3-none-any.whl\", \"hashes\": {{\"sha256\": \"{H}\"}}, \"requires-python\": \">=3.9\", \"yanked\": \"broken\"}},\
             {{\"filename\": \"numpy-1.0.tar.gz\", \"url\": \"https://x.invalid/numpy-1.0.tar.gz#sha256={H}\", \"hashes\": {{}}}}]}}"
        );
        let files = parse_json("https://example.invalid/simple/numpy/", &body).unwrap();
        assert_eq!(files[0].url, "https://example.invalid/f/numpy-1.0-py3-none-any.whl");
        assert!(files[0].yanked && !files[1].yanked);
        assert_eq!(files[1].url, "https://x.invalid/numpy-1.0.tar.gz");
        let err = parse_json("u", "{\"meta\": {\"api-version\": \"2.0\"}, \"files\": []}").unwrap_err().to_string();
        assert!(err.contains("API version `2.0`"), "{err}");
    }

    #[test]
    fn local_indexes_are_read_from_folders() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("simple/pyyaml")).unwrap();
        fs_err::write(
            dir.path().join("simple/pyyaml/index.html"),
            format!("<a href=\"../../w/PyYAML-6.0-py3-none-any.whl#sha256={H}\">PyYAML-6.0-py3-none-any.whl</a>"),
        )
        .unwrap();
        let name: Name = "PyYAML".parse().unwrap();
        let root = dir.path().join("simple");
        for index in [
            Index::new("simple", dir.path()).unwrap(),
            Index::new(&format!("file://{}", root.display()), Path::new("/")).unwrap(),
        ] {
            let files = index.files(&name).unwrap();
            assert_eq!(files[0].url, format!("file://{}/w/PyYAML-6.0-py3-none-any.whl", dir.path().display()));
        }
        let err = Index::new("simple", dir.path()).unwrap().files(&"numpy".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("has no project `numpy`"), "{err}");
        assert!(Index::new("ftp://x", dir.path()).unwrap_err().to_string().contains("only `http://`"));
    }
}
