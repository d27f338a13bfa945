//! The SPDX 2.3 software bill of materials (`sbom.spdx.json`).
//!
//! One package for the image (the root, `DESCRIBES`d by the document), one per input it
//! `CONTAINS` — tarballs and local file trees now, Debian packages when archives come —
//! each with its sha256. Deterministic like everything else: the creation time is the
//! candidate's `SOURCE_DATE_EPOCH`, the document namespace is derived from the candidate id,
//! and the JSON is canonical.

use serde_json::{json, Value};

use crate::digest::Digest;

/// The SBOM's canonical bytes for a candidate whose manifest is `manifest` and id `id`.
pub fn render(manifest: &Value, id: &Digest) -> Vec<u8> {
    let image = &manifest["image"];
    let name = image["name"].as_str().unwrap_or_default();
    let version = image["version"].as_str().unwrap_or_default();
    let sde = manifest["source-date-epoch"].as_u64().unwrap_or_default();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "description": image["description"],
        "supplier": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, input) in manifest["inputs"].as_array().into_iter().flatten().enumerate() {
        let origin = input["origin"].as_str().unwrap_or_default();
        let digest = input["sha256"].as_str().and_then(|s| s.parse::<Digest>().ok());
        let spdx_id = format!("SPDXRef-Input-{}", i + 1);
        let file_name = origin.rsplit('/').next().unwrap_or(origin);
        let mut package = json!({
            "SPDXID": spdx_id,
            "name": file_name,
            "downloadLocation": if origin.starts_with("http://") || origin.starts_with("https://") { origin } else { "NOASSERTION" },
            "filesAnalyzed": false,
            "supplier": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": format!("{} input `{origin}` of layer `{}`", input["kind"].as_str().unwrap_or_default(), input["layer"].as_str().unwrap_or_default()),
        });
        // A tarball's sha256 is its file's; a folder's is a tree digest, not a checksum of
        // any one file, so it goes in the comment rather than `checksums`.
        if let Some(d) = digest {
            if input["kind"] == "tarball" {
                package["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": d.hex() }]);
            } else {
                package["comment"] =
                    json!(format!("{}; tree digest {d}", package["comment"].as_str().unwrap_or_default()));
            }
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": spdx_id,
        }));
    }
    let sbom = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}-{version}"),
        "documentNamespace": format!("urn:candidate:sbom:{}", id.hex()),
        "creationInfo": {
            "created": rfc3339(sde),
            "creators": [format!("Tool: candidate-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "relationships": relationships,
    });
    serde_json::to_vec(&sbom).expect("a JSON value serialises")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC; the civil-from-days algorithm).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
