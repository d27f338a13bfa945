//! Provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate, signed in a DSSE
//! envelope (`manifest.intoto.json`).
//!
//! Everything the statement says is derived from the candidate's `manifest.json` and the
//! digests of its files, so an existing candidate can be signed later (`candidate sign`) and
//! every signer of one candidate signs the very same payload. The payload is canonical JSON.
//!
//! How to read it (the `buildType` below names this description):
//! * `subject`: every file of the candidate folder but the envelope, with its sha256;
//! * `externalParameters.recipe` / `.lockfile`: the recipe's file name and digest (its bytes
//!   plus every local input, see the lockfile docs) and the lockfile's sha256;
//! * `internalParameters`: `SOURCE_DATE_EPOCH` and the layer format version;
//! * `resolvedDependencies`: every locked input, by origin, with its sha256 (a tree digest
//!   for local folders), then every wheel by file name;
//! * `runDetails.builder`: the tool and the compressor libraries that made the outputs;
//! * `byproducts`: the layers and the merged rootfs, by `diff_id`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::dist::{subjects, ENVELOPE, MANIFEST};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::PrivateKey;
use crate::manifest::Manifest;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
/// Our build type: a URI of ours, documented in the module docs and the README.
pub const BUILD_TYPE: &str = "urn:candidate:build-type:rootfs:v1";
pub const BUILDER_ID: &str = "urn:candidate:builder";

/// A file of the candidate, as a statement subject.
pub use crate::dist::Subject;

/// An in-toto Statement v1 with a typed predicate: the shape the statements we read back share
/// (a feed's, a rebuild's), each with its own predicate type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement<P> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// A statement's subject: a name and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementSubject {
    pub name: String,
    pub digest: DigestSet,
}

/// An in-toto digest set: hex, without the algorithm prefix our own documents carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSet {
    #[serde(with = "bare_hex")]
    pub sha256: Digest,
}

mod bare_hex {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::digest::Digest;

    pub fn serialize<S: Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&digest.hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

fn sha256_map(digest: &Digest) -> Value {
    json!({ "sha256": digest.hex() })
}

/// The statement's canonical bytes for a candidate whose manifest is `manifest`.
pub fn statement(manifest: &Manifest, subjects: &[Subject]) -> Vec<u8> {
    let inputs: Vec<Value> = manifest
        .inputs
        .iter()
        .map(|i| {
            let origin = &i.origin;
            let mut d = json!({
                "name": format!("{}:{origin}", i.kind),
                "digest": sha256_map(&i.sha256),
                "annotations": { "layer": i.layer, "size": i.size, "origin": origin },
            });
            // Only URLs are URIs; a path relative to the recipe stays an annotation.
            if origin.contains("://") {
                d["uri"] = json!(origin);
            }
            d
        })
        .collect();
    // Wheels after the inputs, by their index URL's file name; nothing when there are none,
    // so that statements of candidates without Python keep their bytes.
    let inputs: Vec<Value> = inputs
        .into_iter()
        .chain(manifest.wheels.iter().map(|w| {
            json!({
                "name": format!("wheel:{}", w.filename),
                "digest": sha256_map(&w.sha256),
                "annotations": { "layer": w.layer, "name": w.name, "version": w.version },
            })
        }))
        .collect();
    let mut byproducts: Vec<Value> = manifest
        .layers
        .iter()
        .map(|l| json!({ "name": format!("layer:{}", l.name), "digest": sha256_map(&l.diff_id) }))
        .collect();
    byproducts.push(json!({ "name": "rootfs", "digest": sha256_map(&manifest.rootfs.diff_id) }));
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects.iter().map(|s| json!({ "name": s.name, "digest": sha256_map(&s.sha256) })).collect::<Vec<_>>(),
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": { "name": manifest.recipe.name, "digest": sha256_map(&manifest.recipe.digest) },
                    "lockfile": { "digest": sha256_map(&manifest.lockfile.digest) },
                },
                "internalParameters": {
                    "sourceDateEpoch": manifest.source_date_epoch,
                    "layerFormat": manifest.tool.layer_format,
                },
                "resolvedDependencies": inputs,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": { "candidate": manifest.tool.version },
                    "builderDependencies": manifest.compressors.iter().map(|c| json!({
                        "name": c.name(), "annotations": c,
                    })).collect::<Vec<_>>(),
                },
                "byproducts": byproducts,
            },
        },
    });
    serde_json::to_vec(&statement).expect("a JSON value serialises")
}

/// The signed statement of a candidate folder, with `keys`' signatures.
pub fn envelope(dir: &Path, keys: &[PrivateKey]) -> anyhow::Result<Envelope> {
    let manifest = Manifest::read(&dir.join(MANIFEST))?;
    let payload = statement(&manifest, &subjects(dir)?);
    Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, keys))
}

/// Signs a candidate folder's statement with `keys` into its envelope, written atomically:
/// signatures already there over the same statement are kept (several signers, one
/// payload); an envelope over another statement is replaced. Returns the envelope's path and
/// how many signatures it holds.
pub fn sign_folder(dir: &Path, keys: &[PrivateKey]) -> anyhow::Result<(PathBuf, usize)> {
    let mut fresh = envelope(dir, keys)?;
    let path = dir.join(ENVELOPE);
    if let Ok(existing) = fs_err::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(Envelope::parse(&b)?)) {
        if existing.payload == fresh.payload && existing.payload_type == fresh.payload_type {
            let mut signatures = existing.signatures;
            for s in fresh.signatures {
                if !signatures.contains(&s) {
                    signatures.push(s);
                }
            }
            fresh.signatures = signatures;
        }
    }
    let mut temp = tempfile::Builder::new().prefix(".envelope-").tempfile_in(dir)?;
    std::io::Write::write_all(&mut temp, &fresh.to_json())?;
    temp.as_file().sync_all()?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok((path, fresh.signatures.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's manifest, and the statement a build signed with it at the commit that
    /// typed the manifest.
    const EXAMPLE_MANIFEST: &[u8] = include_bytes!("../tests/data/example.manifest.json");
    const STATEMENT: &[u8] = include_bytes!("../tests/data/example.provenance.json");

    #[test]
    fn the_example_statement_is_rebuilt_from_its_manifest() {
        let manifest = Manifest::parse(Path::new("manifest.json"), EXAMPLE_MANIFEST).unwrap();
        let signed: Value = serde_json::from_slice(STATEMENT).unwrap();
        let subjects: Vec<Subject> = signed["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Subject {
                name: s["name"].as_str().unwrap().to_owned(),
                sha256: Digest::from_hex(s["digest"]["sha256"].as_str().unwrap()).unwrap(),
            })
            .collect();
        assert!(statement(&manifest, &subjects) == STATEMENT, "the statement of the example manifest changed");
    }
}
