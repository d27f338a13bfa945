//! The CycloneDX 1.6 software bill of materials (`sbom.cdx.json`): the same inventory as the
//! SPDX one ([`crate::sbom`]), in the format most vulnerability scanners read first.
//!
//! * `metadata.component` is the image (`type` `container`, `bom-ref` `image`);
//! * `components` lists, in manifest order, each input (`input-N`: a tarball as a `file` with
//!   its SHA-256 and a `pkg:generic` purl; a local tree or a requirements file as a `file`
//!   whose digest is a property, as a tree digest is no hash of one file), each Debian package
//!   (`package-N`, `library`, `pkg:deb` purl, SHA-256 of the `.deb`) and each wheel
//!   (`wheel-N`, `library`, `pkg:pypi` purl, SHA-256 of the wheel); the `-N` are those of the
//!   SPDX document's `SPDXRef-Input-N`, `-Package-N` and `-Wheel-N`;
//! * `dependencies`: the image depends on every component it ships; each Debian package on the
//!   packages the resolver met its `Pre-Depends`/`Depends` with (the lockfile's edges; a
//!   package with none has an entry without `dependsOn`, which the spec reads as "no
//!   dependencies"; a lockfile from before edges were recorded gives no entry, "unknown").
//!
//! Deterministic: `metadata.timestamp` is `SOURCE_DATE_EPOCH`, `serialNumber` a name-based
//! UUID of the candidate id ([`serial_number`]), `version` 1, canonical JSON. The document is
//! the [`Bom`] type with only the fields we write; [`Bom::read`] reads one back.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::digest::Digest;
use crate::document::{self, DocumentError};
use crate::lockfile::InputKind;
use crate::manifest::Manifest;
use crate::sbom::{deb_purl, package_edges, pypi_purl, rfc3339, tarball_purl};

/// What a [`DocumentError`] calls this document.
const WHAT: &str = "CycloneDX SBOM";

/// The image's `bom-ref`.
pub const IMAGE_REF: &str = "image";

/// A CycloneDX 1.6 BOM, as `candidate` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bom {
    /// `CycloneDX`.
    pub bom_format: String,
    /// `1.6`.
    pub spec_version: String,
    /// `urn:uuid:…`, derived from the candidate id ([`serial_number`]).
    pub serial_number: String,
    /// 1: a candidate's BOM is written once, never revised.
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    /// The image.
    pub component: Component,
}

/// The tools that made the BOM (1.5's `tools.components` form; the array form is deprecated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub components: Vec<Component>,
}

/// A component: the image, an input, a Debian package, a wheel, or the tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// `container`, `file`, `library` or `application`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hash {
    /// `SHA-256`.
    pub alg: String,
    /// Bare lowercase hex.
    pub content: String,
}

/// A name-value pair; ours are named `candidate:…` (the spec's namespacing convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    pub name: String,
    pub value: String,
}

/// One node of the dependency graph: `ref` depends on each of `dependsOn` (none: it has no
/// dependencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(rename = "dependsOn", default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// The `bom-ref` of the `i`th (from 0) input, Debian package and wheel of the manifest.
pub fn input_ref(i: usize) -> String {
    format!("input-{}", i + 1)
}
pub fn package_ref(i: usize) -> String {
    format!("package-{}", i + 1)
}
pub fn wheel_ref(i: usize) -> String {
    format!("wheel-{}", i + 1)
}

/// The BOM's `serialNumber` for candidate `id`: the RFC 9562 version 5 (SHA-1, name-based)
/// UUID of the URI `urn:candidate:sbom:<hex>` (the SPDX document's namespace) in the URL
/// namespace. CycloneDX's schema takes versions 1 to 5 only, so not a version 8 of sha256.
pub fn serial_number(id: &Digest) -> String {
    // `6ba7b811-9dad-11d1-80b4-00c04fd430c8`, RFC 9562's NameSpace_URL.
    const NAMESPACE_URL: [u8; 16] =
        [0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
    let h = hex::encode(uuid_v5(NAMESPACE_URL, &format!("urn:candidate:sbom:{}", id.hex())));
    format!("urn:uuid:{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// RFC 9562's version 5 UUID of `name` in `namespace`: SHA-1 of the two, first 16 bytes,
/// with the version and variant bits set.
fn uuid_v5(namespace: [u8; 16], name: &str) -> [u8; 16] {
    let mut sha1 = sha1::Sha1::new();
    sha1.update(namespace);
    sha1.update(name);
    let mut b: [u8; 16] = sha1.finalize()[..16].try_into().expect("sha1 is 20 bytes");
    b[6] = (b[6] & 0x0f) | 0x50; // version 5
    b[8] = (b[8] & 0x3f) | 0x80; // the RFC variant
    b
}

fn property(name: &str, value: impl ToString) -> Property {
    Property { name: format!("candidate:{name}"), value: value.to_string() }
}

fn sha256(d: &Digest) -> Vec<Hash> {
    vec![Hash { alg: "SHA-256".to_owned(), content: d.hex() }]
}

impl Bom {
    /// The BOM of a candidate whose manifest is `manifest` and id `id`.
    pub fn new(manifest: &Manifest, id: &Digest) -> Self {
        let image = &manifest.image;
        let component = |kind: &str, bom_ref: String, name: &str| Component {
            kind: kind.to_owned(),
            bom_ref: Some(bom_ref),
            name: name.to_owned(),
            version: None,
            description: None,
            purl: None,
            hashes: Vec::new(),
            properties: Vec::new(),
        };
        let mut components = Vec::new();
        for (i, input) in manifest.inputs.iter().enumerate() {
            let origin = input.origin.as_str();
            let file_name = origin.rsplit('/').next().unwrap_or(origin);
            let mut c = component("file", input_ref(i), file_name);
            c.properties = vec![
                property("kind", input.kind),
                property("origin", origin),
                property("layer", &input.layer),
                property("size", input.size),
            ];
            if input.kind == InputKind::Tarball {
                c.purl = Some(tarball_purl(input));
                c.hashes = sha256(&input.sha256);
            } else {
                // A tree digest (or a pinned requirements file's), not a hash CycloneDX
                // defines for a component: said as a property.
                c.properties.push(property("tree-digest", input.sha256));
                if let Some(files) = input.files {
                    c.properties.push(property("files", files));
                }
            }
            components.push(c);
        }
        for (i, p) in manifest.packages.iter().flatten().enumerate() {
            components.push(Component {
                version: Some(p.version.to_string()),
                purl: Some(deb_purl(p)),
                hashes: sha256(&p.sha256),
                properties: vec![property("layer", &p.layer), property("filename", &p.filename)],
                ..component("library", package_ref(i), p.name.as_str())
            });
        }
        for (i, w) in manifest.wheels.iter().enumerate() {
            components.push(Component {
                version: Some(w.version.clone()),
                purl: Some(pypi_purl(w)),
                hashes: sha256(&w.sha256),
                properties: vec![property("layer", &w.layer), property("filename", &w.filename)],
                ..component("library", wheel_ref(i), w.name.as_str())
            });
        }
        let mut dependencies = vec![Dependency {
            reference: IMAGE_REF.to_owned(),
            depends_on: components.iter().filter_map(|c| c.bom_ref.clone()).collect(),
        }];
        for (i, edges) in package_edges(manifest).into_iter().enumerate() {
            if let Some(edges) = edges {
                dependencies.push(Dependency {
                    reference: package_ref(i),
                    depends_on: edges.into_iter().map(package_ref).collect(),
                });
            }
        }
        Bom {
            bom_format: "CycloneDX".to_owned(),
            spec_version: "1.6".to_owned(),
            serial_number: serial_number(id),
            version: 1,
            metadata: Metadata {
                timestamp: rfc3339(manifest.source_date_epoch),
                tools: Tools {
                    components: vec![Component {
                        bom_ref: None,
                        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                        ..component("application", String::new(), "candidate")
                    }],
                },
                component: Component {
                    version: Some(image.version.to_string()),
                    description: Some(image.description.clone()),
                    properties: vec![property("architecture", &image.architecture), property("candidate-id", id)],
                    ..component("container", IMAGE_REF.to_owned(), image.name.as_str())
                },
            },
            components,
            dependencies,
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        document::to_canonical(self)
    }

    /// Reads the BOM at `path` (a `sbom.cdx.json`); the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read(WHAT, path)
    }
}

/// The BOM's canonical bytes for a candidate whose manifest is `manifest` and id `id`.
pub fn render(manifest: &Manifest, id: &Digest) -> Vec<u8> {
    Bom::new(manifest, id).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] = include_bytes!("../tests/data/example.manifest.json");

    #[test]
    fn the_example_bom_round_trips_and_names_its_candidate() {
        let manifest = Manifest::parse(Path::new("manifest.json"), MANIFEST).unwrap();
        let id = Digest::of(MANIFEST);
        let bytes = render(&manifest, &id);
        let bom: Bom = document::parse(WHAT, Path::new("sbom.cdx.json"), &bytes).unwrap();
        assert!(bom.to_bytes() == bytes, "parse then serialise changed the BOM");
        assert_eq!(bom.serial_number, serial_number(&id));
        insta::assert_json_snapshot!(bom);
    }

    /// RFC 9562's own example of a version 5 UUID (appendix A.4): `www.example.com` in the
    /// DNS namespace.
    #[test]
    fn serial_numbers_are_version_5_uuids_of_the_candidate_id() {
        const NAMESPACE_DNS: [u8; 16] =
            [0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
        assert_eq!(hex::encode(uuid_v5(NAMESPACE_DNS, "www.example.com")), "2ed6657de927568b95e12665a8aea6a2");

        let (a, b) = (serial_number(&Digest::of(b"a")), serial_number(&Digest::of(b"b")));
        assert_ne!(a, b);
        assert_eq!(a, serial_number(&Digest::of(b"a")));
        // The schema's pattern: version 1-5, variant 8-b.
        let parts: Vec<&str> = a.trim_start_matches("urn:uuid:").split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('5') && matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }
}
