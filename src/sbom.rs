//! The SPDX 2.3 software bill of materials (`sbom.spdx.json`), and what it shares with the
//! CycloneDX one ([`crate::cyclonedx`]): the package URLs and the dependency edges.
//!
//! One package for the image (the root, `DESCRIBES`d by the document), one per input it
//! `CONTAINS` — tarballs and local file trees, Debian packages and Python wheels (all but the
//! trees with their purl) — each with its sha256, and a `DEPENDS_ON` relationship for each
//! dependency edge the lockfile records between Debian packages. Deterministic like
//! everything else: the creation time is the candidate's `SOURCE_DATE_EPOCH`, the document
//! namespace is derived from the candidate id, and the JSON is canonical
//! ([`crate::document`]). The document is the [`Sbom`] type, with only the SPDX fields we
//! write; [`Sbom::read`] reads one back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::document::{self, DocumentError};
use crate::lockfile::{InputKind, LockedInput};
use crate::manifest::{Manifest, Package, Wheel};

/// The SPDX value for "not stated", used for every field we have nothing true to say in.
const NOASSERTION: &str = "NOASSERTION";

/// An SPDX 2.3 document, as `candidate` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sbom {
    pub spdx_version: String,
    pub data_license: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    /// `urn:candidate:sbom:<candidate id hex>`.
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub document_describes: Vec<String>,
    pub packages: Vec<SpdxPackage>,
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

/// An SPDX package: the image, or one input. Fields only one of them has are optional and
/// left out when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    pub download_location: String,
    pub files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub supplier: String,
    pub license_concluded: String,
    pub license_declared: String,
    pub copyright_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_refs: Option<Vec<ExternalRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<Vec<Checksum>>,
}

/// An SPDX external reference: the purl of a Debian package or a wheel. The image lists an
/// empty `externalRefs`, which a reader of the SPDX spec expects on a package it may refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRef {
    pub reference_category: String,
    pub reference_type: String,
    pub reference_locator: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checksum {
    pub algorithm: String,
    /// Bare hex, as SPDX spells it.
    pub checksum_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: String,
    pub related_spdx_element: String,
}

impl Sbom {
    /// The SBOM of a candidate whose manifest is `manifest` and id `id`.
    pub fn new(manifest: &Manifest, id: &Digest) -> Self {
        let image = &manifest.image;
        let (name, version) = (image.name.to_string(), image.version.to_string());
        let package = |spdx_id: String, name: &str, download_location: &str| SpdxPackage {
            spdx_id,
            name: name.to_owned(),
            version_info: None,
            download_location: download_location.to_owned(),
            files_analyzed: false,
            primary_package_purpose: None,
            description: None,
            supplier: NOASSERTION.to_owned(),
            license_concluded: NOASSERTION.to_owned(),
            license_declared: NOASSERTION.to_owned(),
            copyright_text: NOASSERTION.to_owned(),
            external_refs: None,
            comment: None,
            checksums: None,
        };
        let relationship = |from: &str, kind: &str, to: &str| Relationship {
            spdx_element_id: from.to_owned(),
            relationship_type: kind.to_owned(),
            related_spdx_element: to.to_owned(),
        };
        let mut packages = vec![SpdxPackage {
            version_info: Some(version.clone()),
            primary_package_purpose: Some("CONTAINER".to_owned()),
            description: Some(image.description.clone()),
            external_refs: Some(Vec::new()),
            ..package("SPDXRef-Image".to_owned(), &name, NOASSERTION)
        }];
        let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")];
        for (i, input) in manifest.inputs.iter().enumerate() {
            let origin = input.origin.as_str();
            let spdx_id = format!("SPDXRef-Input-{}", i + 1);
            let file_name = origin.rsplit('/').next().unwrap_or(origin);
            let remote = origin.starts_with("http://") || origin.starts_with("https://");
            let mut p = package(spdx_id.clone(), file_name, if remote { origin } else { NOASSERTION });
            let comment = format!("{} input `{origin}` of layer `{}`", input.kind, input.layer);
            // A tarball's sha256 is its file's; a folder's is a tree digest, not a checksum of
            // any one file, so it goes in the comment rather than `checksums`.
            if input.kind == InputKind::Tarball {
                p.checksums =
                    Some(vec![Checksum { algorithm: "SHA256".to_owned(), checksum_value: input.sha256.hex() }]);
                p.external_refs = Some(vec![purl_ref(tarball_purl(input))]);
                p.comment = Some(comment);
            } else {
                p.comment = Some(format!("{comment}; tree digest {}", input.sha256));
            }
            packages.push(p);
            relationships.push(relationship("SPDXRef-Image", "CONTAINS", &spdx_id));
        }
        let purl = |locator: String| Some(vec![purl_ref(locator)]);
        let sha256 = |d: &Digest| Some(vec![Checksum { algorithm: "SHA256".to_owned(), checksum_value: d.hex() }]);
        // Debian packages and wheels, by their file's sha256 and their package URL (see
        // [`deb_purl`], [`pypi_purl`]), in manifest order.
        for (i, p) in manifest.packages.iter().flatten().enumerate() {
            let spdx_id = format!("SPDXRef-Package-{}", i + 1);
            packages.push(SpdxPackage {
                version_info: Some(p.version.to_string()),
                external_refs: purl(deb_purl(p)),
                checksums: sha256(&p.sha256),
                comment: Some(format!("Debian package `{}` of layer `{}`", p.filename, p.layer)),
                ..package(spdx_id.clone(), &p.name.to_string(), NOASSERTION)
            });
            relationships.push(relationship("SPDXRef-Image", "CONTAINS", &spdx_id));
        }
        for (i, w) in manifest.wheels.iter().enumerate() {
            let spdx_id = format!("SPDXRef-Wheel-{}", i + 1);
            packages.push(SpdxPackage {
                version_info: Some(w.version.clone()),
                external_refs: purl(pypi_purl(w)),
                checksums: sha256(&w.sha256),
                comment: Some(format!("Python wheel `{}` of layer `{}`", w.filename, w.layer)),
                ..package(spdx_id.clone(), w.name.as_str(), NOASSERTION)
            });
            relationships.push(relationship("SPDXRef-Image", "CONTAINS", &spdx_id));
        }
        // The resolver's edges, after every `CONTAINS`: package `i` `DEPENDS_ON` package `j`.
        for (from, to) in package_edges(manifest).iter().enumerate() {
            for to in to.iter().flatten() {
                let (from, to) = (format!("SPDXRef-Package-{}", from + 1), format!("SPDXRef-Package-{}", to + 1));
                relationships.push(relationship(&from, "DEPENDS_ON", &to));
            }
        }
        Sbom {
            spdx_version: "SPDX-2.3".to_owned(),
            data_license: "CC0-1.0".to_owned(),
            spdx_id: "SPDXRef-DOCUMENT".to_owned(),
            name: format!("{name}-{version}"),
            document_namespace: format!("urn:candidate:sbom:{}", id.hex()),
            creation_info: CreationInfo {
                created: rfc3339(manifest.source_date_epoch),
                creators: vec![format!("Tool: candidate-{}", env!("CARGO_PKG_VERSION"))],
            },
            document_describes: vec!["SPDXRef-Image".to_owned()],
            packages,
            relationships,
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        document::to_canonical(self)
    }

    /// Reads the SBOM at `path` (a `sbom.spdx.json`); the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read("SBOM", path)
    }
}

fn purl_ref(locator: String) -> ExternalRef {
    ExternalRef {
        reference_category: "PACKAGE-MANAGER".to_owned(),
        reference_type: "purl".to_owned(),
        reference_locator: locator,
    }
}

/// A Debian package's package URL (purl spec, `deb` type): `pkg:deb/debian/NAME@VERSION?arch=ARCH`.
pub fn deb_purl(p: &Package) -> String {
    format!("pkg:deb/debian/{}@{}?arch={}", p.name, purl_escape(&p.version.to_string()), p.architecture)
}

/// A wheel's package URL (`pypi` type, with the PEP 503 normalised name): `pkg:pypi/NAME@VERSION`.
pub fn pypi_purl(w: &Wheel) -> String {
    format!("pkg:pypi/{}@{}", w.name, purl_escape(&w.version))
}

/// A tarball's package URL. Nothing names a vendor tarball in an ecosystem, so it is the purl
/// spec's `generic` type, named by its file name and identified by its sha256 (the `checksum`
/// qualifier), with the URL it was fetched from as `download_url` when it is one (a path
/// relative to the recipe is not): `pkg:generic/app.tar.gz?checksum=sha256:HEX`. Qualifiers
/// in the spec's canonical (sorted) order.
pub fn tarball_purl(input: &LockedInput) -> String {
    let origin = input.origin.as_str();
    let file_name = origin.rsplit('/').next().unwrap_or(origin);
    let mut purl = format!("pkg:generic/{}?checksum=sha256:{}", purl_escape(file_name), input.sha256.hex());
    if origin.starts_with("http://") || origin.starts_with("https://") {
        purl.push_str("&download_url=");
        purl.push_str(&escape(origin, b":/"));
    }
    purl
}

/// For each Debian package of the manifest (in order), the indexes of the packages it depends
/// on, as the lockfile recorded its edges; `None` where the lockfile recorded none (locked
/// before edges were): then nothing is known, which is not the same as no dependency.
pub fn package_edges(manifest: &Manifest) -> Vec<Option<Vec<usize>>> {
    let packages = manifest.packages.as_deref().unwrap_or_default();
    let index: std::collections::BTreeMap<(&str, &str), usize> = packages
        .iter()
        .enumerate()
        .rev() // the first of two equal names wins, as in the lockfile's check
        .map(|(i, p)| ((p.name.as_str(), p.architecture.as_str()), i))
        .collect();
    packages
        .iter()
        .map(|p| {
            p.depends.as_ref().map(|depends| {
                depends.iter().filter_map(|d| index.get(&(d.name.as_str(), d.architecture.as_str())).copied()).collect()
            })
        })
        .collect()
}

/// A purl version or name: percent-encoded except the characters the purl spec leaves as they
/// are (`+` is encoded: `1.0+dfsg` is `1.0%2Bdfsg`; the spec leaves an epoch's `:` as it is).
fn purl_escape(s: &str) -> String {
    escape(s, b":")
}

/// Percent-encodes all but ASCII letters, digits, `.-_~` and the bytes of `keep`.
fn escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SBOM's canonical bytes for a candidate whose manifest is `manifest` and id `id`.
pub fn render(manifest: &Manifest, id: &Digest) -> Vec<u8> {
    Sbom::new(manifest, id).to_bytes()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC); a foundation function, here
/// where the SBOM's and the other documents' callers have always found it.
pub use crate::document::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's manifest as built at the commit that typed it, and its SBOM as this
    /// version writes it (tarball purls were added with the CycloneDX SBOM; the manifest has
    /// no dependency edges, so neither has the SBOM). The example's SBOM as built today is
    /// pinned in `tests/cli/determinism.rs`.
    const MANIFEST: &[u8] = include_bytes!("../tests/data/example.manifest.json");
    const SBOM: &[u8] = include_bytes!("../tests/data/example.sbom.spdx.json");

    #[test]
    fn the_example_sbom_is_rebuilt_from_its_manifest_and_round_trips() {
        let manifest = Manifest::parse(Path::new("manifest.json"), MANIFEST).unwrap();
        assert!(render(&manifest, &Digest::of(MANIFEST)) == SBOM, "the SBOM of the example manifest changed");
        let sbom: Sbom = document::parse("SBOM", Path::new("sbom.spdx.json"), SBOM).unwrap();
        assert!(sbom.to_bytes() == SBOM, "parse then serialise changed the SBOM");
        insta::assert_json_snapshot!(sbom);
    }

    #[test]
    fn wheels_are_listed_with_their_purl_and_round_trip_through_the_manifest() {
        let mut manifest = Manifest::parse(Path::new("manifest.json"), MANIFEST).unwrap();
        manifest.wheels.push(crate::manifest::Wheel {
            name: "PyYAML".parse().unwrap(),
            version: "6.0.1+local".into(),
            filename: "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.whl".into(),
            sha256: Digest::of(b"wheel"),
            layer: "app".parse().unwrap(),
        });
        let bytes = manifest.to_bytes();
        assert_eq!(Manifest::parse(Path::new("manifest.json"), &bytes).unwrap(), manifest);
        let sbom = Sbom::new(&manifest, &Digest::of(&bytes));
        let wheel = sbom.packages.iter().find(|p| p.spdx_id == "SPDXRef-Wheel-1").unwrap();
        let purl = &wheel.external_refs.as_ref().unwrap()[0].reference_locator;
        assert_eq!(purl, "pkg:pypi/pyyaml@6.0.1%2Blocal");
        assert_eq!(wheel.checksums.as_ref().unwrap()[0].checksum_value, Digest::of(b"wheel").hex());
        assert!(sbom.relationships.iter().any(|r| r.related_spdx_element == "SPDXRef-Wheel-1"));
        let statement = crate::attest::statement(&manifest, &[]);
        assert!(String::from_utf8(statement)
            .unwrap()
            .contains("\"wheel:PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.whl\""));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
