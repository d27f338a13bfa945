//! Candidates in an OCI registry (the distribution spec): `push`, `pull`, `list --remote`.
//!
//! A pushed candidate is three kinds of manifest in one repository:
//!
//! * the candidate's **OCI image** (`oci/` of the folder, its manifest pushed byte for byte,
//!   so its digest is the one `oci/index.json` names), tagged `TAG`: what `podman pull` and
//!   `skopeo` get;
//! * the **candidate artifact** ([`CANDIDATE_ARTIFACT`]): every file of the candidate folder
//!   and the attestations beside it, one layer blob each, named by its
//!   `org.opencontainers.image.title` annotation (relative to the folder's parent), with
//!   `subject` = the image manifest;
//! * one small **referrer** per statement (provenance, each SBOM, each test attestation), each with
//!   `subject` = the image manifest, so that a registry's tooling finds them from the image.
//!
//! One reference finds both the image and the candidate: `TAG` names the image and the
//! artifacts are its referrers, found through the OCI 1.1 referrers API
//! (`/v2/R/referrers/DIGEST`) or, where the registry has none (distribution 2.8 here), through
//! the spec's tag-schema fallback: an image index tagged `sha256-<hex of the image digest>`
//! listing them. A folder without the `oci` format has no image: its artifact is tagged
//! directly.
//!
//! Blobs the registry has are not sent (`HEAD`), or are mounted from another repository
//! (`--mount-from`); the others are streamed from disk, in one request or in chunks. Every
//! manifest digest the registry returns is checked against ours. Pulling streams every blob
//! through sha256 into a staging folder and refuses the first that does not hash to its
//! descriptor, naming it; the staging folder is only moved into place once all is checked.

pub mod auth;
pub mod client;
pub mod transfer;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub use client::{Client, ClientOptions};

/// The `artifactType` of a whole candidate.
pub const CANDIDATE_ARTIFACT: &str = "application/vnd.candidate.candidate.v1";
/// The `artifactType` of a provenance or test statement (a DSSE envelope of in-toto).
pub const INTOTO_ARTIFACT: &str = "application/vnd.in-toto+json";
/// The `artifactType` of the SPDX SBOM.
pub const SPDX_ARTIFACT: &str = "application/spdx+json";
/// The `artifactType` of the CycloneDX SBOM (its IANA media type).
pub const CYCLONEDX_ARTIFACT: &str = "application/vnd.cyclonedx+json";
/// The media type of a file blob of a candidate (its bytes, as they are in the folder).
pub const FILE_MEDIA_TYPE: &str = "application/octet-stream";
/// The OCI 1.1 empty config of an artifact, `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The annotation naming a file of an artifact.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The annotation of the candidate artifact naming the candidate folder.
pub const FOLDER: &str = "dev.candidate.folder";
/// The annotation of the candidate artifact giving the candidate id (sha256 of `manifest.json`).
pub const CANDIDATE_ID: &str = "dev.candidate.id";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("`{0}` is not a registry reference: expected `HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]`")]
    Reference(String),
    #[error("cannot reach the registry at `{url}`")]
    Connect { url: String, source: Box<ureq::Error> },
    #[error("the registry answered `{method} {url}` with http status {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status { method: &'static str, url: String, status: u16, detail: Option<String> },
    #[error("the registry `{host}` refused the credentials for `{url}` (http status 401): they are not valid, or give no access to that repository")]
    Unauthorized { host: String, url: String },
    #[error("cannot read the registry's answer to `{url}`")]
    Body { url: String, source: Box<ureq::Error> },
    #[error("the registry's `{what}` at `{url}` is not valid JSON of its kind")]
    Document { what: &'static str, url: String, source: serde_json::Error },
    #[error("the registry's tag list does not end: its next page `{url}` was read already, or is one past 10,000")]
    Paging { url: String },
    #[error("the token server at `{realm}` gave no token")]
    Token { realm: String },
    #[error("the registry stored manifest `{reference}` under digest {actual}, not {expected}")]
    ManifestDigest { reference: String, expected: Digest, actual: String },
    #[error("blob {digest} (`{name}`) from the registry hashes to {actual} ({size} bytes), not to its digest")]
    BlobDigest { digest: Digest, name: String, actual: Digest, size: u64 },
    #[error("blob {digest} (`{name}`) from the registry is {actual} bytes, not {expected}")]
    BlobSize { digest: Digest, name: String, expected: u64, actual: u64 },
    #[error("cannot read the CA certificates in `{path}`")]
    Ca { path: String, source: std::io::Error },
    #[error("`{path}` holds no PEM certificate")]
    CaEmpty { path: String },
    #[error("cannot read the registry credentials in `{path}`")]
    AuthFile { path: String, source: std::io::Error },
    #[error("the registry credentials in `{path}` are not valid")]
    AuthFormat { path: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl crate::error::Hint for RemoteError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match self {
            RemoteError::Unauthorized { host, .. } => vec![format!(
                "log in with `podman login {host}` (auth.json) or set `CANDIDATE_REGISTRY_USERNAME` and `CANDIDATE_REGISTRY_PASSWORD`"
            )
            .into()],
            RemoteError::Connect { .. } => {
                vec!["a registry without TLS needs `--plain-http`; one with a private CA needs `--ca FILE`".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// `HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]`: where a candidate is in a registry. There is
/// no default registry: the host is always named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]`.
    pub host: String,
    pub repository: String,
    pub target: Target,
}

/// What a reference points at in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Tag(String),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RemoteError::Reference(s.to_owned());
        let (host, rest) = s.split_once('/').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(bad());
        }
        let (name, target) = if let Some((name, digest)) = rest.split_once('@') {
            (name, Target::Digest(digest.parse().map_err(|_| bad())?))
        } else {
            // A tag follows the last `:` of the last path component.
            let last = rest.rfind('/').map_or(0, |i| i + 1);
            match rest[last..].split_once(':') {
                Some((n, tag)) => {
                    if !valid_tag(tag) {
                        return Err(bad());
                    }
                    (&rest[..last + n.len()], Target::Tag(tag.to_owned()))
                }
                None => (rest, Target::None),
            }
        };
        if !valid_repository(name) {
            return Err(bad());
        }
        Ok(Reference { host: host.to_owned(), repository: name.to_owned(), target })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        match &self.target {
            Target::None => Ok(()),
            Target::Tag(t) => write!(f, ":{t}"),
            Target::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// The distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The distribution spec's repository grammar: lower-case components `[a-z0-9]+` joined by
/// `.`, `_`, `__` or `-`s, separated by `/`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            !component.is_empty()
                && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
                && !component.contains("..")
        })
}

/// How the command line says to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `http://`, not `https://`.
    pub plain_http: bool,
    /// A PEM file of the CA certificates to trust (a private CA).
    pub ca: Option<std::path::PathBuf>,
}

/// A client for the registry of `reference`, with the credentials the environment has for it.
pub fn connect(reference: &Reference, access: &Access, chunk_size: Option<u64>) -> Result<Client, RemoteError> {
    let credentials = auth::Sources::from_env().lookup(&reference.host)?;
    let options = ClientOptions {
        plain_http: access.plain_http,
        ca: access.ca.clone(),
        credentials,
        chunk_size: chunk_size.unwrap_or(client::DEFAULT_CHUNK_SIZE),
    };
    Client::new(&reference.host, &options)
}

/// A descriptor as registries write them: any media type (ours or another tool's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest, the artifact's or another tool's: what pulling needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index: the referrers API's answer and the fallback tag's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// The tag-schema fallback's tag for the referrers of `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_port_tag_and_digest() {
        let r: Reference = "127.0.0.1:5000/candidate/box:1.0".parse().unwrap();
        assert_eq!((r.host.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "candidate/box"));
        assert_eq!(r.target, Target::Tag("1.0".into()));
        assert_eq!(r.to_string(), "127.0.0.1:5000/candidate/box:1.0");
        let hex = "a".repeat(64);
        let r: Reference = format!("reg.example:443/box@sha256:{hex}").parse().unwrap();
        assert!(matches!(r.target, Target::Digest(_)));
        let r: Reference = "127.0.0.1:5000/box".parse().unwrap();
        assert_eq!(r.target, Target::None);
        for bad in ["box:1", "127.0.0.1:5000/Box:1", "h/box:-x", "h/box@sha256:zz", "h//box", "h/a..b", "/box"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} parsed");
        }
    }
}
