//! Rebuild attestations and the rebuilder quorum.
//!
//! `candidate verify CANDIDATE --rebuild --sign KEY` rebuilds a candidate from its recipe and
//! lockfile and writes what it found beside the candidate folder, as every attestation about
//! a candidate is kept (`NAME_VERSION_ARCH.rebuild.KEY.intoto.json`, [`dist::rebuild_attestation_path`]):
//! one file per rebuilder key, so that several rebuilders' attestations sit side by side and
//! the folder itself, which its provenance lists file by file, is never touched.
//!
//! Each is a DSSE envelope of an in-toto Statement v1 ([`Statement`]): its subjects are the
//! candidate's `manifest.json` (whose sha256 is the candidate id) and every output the
//! manifest lists; its predicate (`urn:candidate:rebuild:v1`, [`Predicate`]) says `IDENTICAL`
//! or `FAILED` (with the first file and archive entry that differ), which rebuilder made it
//! (the tool and its layer format) and from what (the recipe and lockfile digests and every
//! locked input, as the rebuild's own manifest states them). Nothing in it is a time or a
//! path: one rebuilder rebuilding the same candidate from the same inputs writes the same
//! statement.
//!
//! A channel's policy may require `rebuilds = N` identical rebuilds by distinct keys of its
//! `rebuilders` ([`count`]). Only a verified signature counts, only for a statement about this
//! candidate whose result is `IDENTICAL`, and each key once: [`Quorum`] keeps every attestation
//! that did not count with the reason, for the refusal to name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attest::{DigestSet, StatementSubject as Subject, STATEMENT_TYPE};
use crate::digest::Digest;
use crate::dist::{self, MANIFEST};
use crate::document::{self, DocumentError};
use crate::dsse::{DsseError, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{KeyId, PrivateKey, PublicKey};
use crate::manifest::{LockfileRef, Manifest, RecipeRef};

/// Our predicate type: a URI of ours, documented in the module docs and the README.
pub const REBUILD: &str = "urn:candidate:rebuild:v1";
/// How a rebuild attestation is made, for a refusal that lacks them.
pub const HINT: &str = "each rebuilder runs `candidate verify CANDIDATE --rebuild --sign KEY`, which writes \
                        `NAME_VERSION_ARCH.rebuild.KEY.intoto.json` beside the candidate folder";
/// What a [`DocumentError`] calls this document.
const WHAT: &str = "rebuild attestation";

#[derive(Debug, thiserror::Error)]
pub enum RebuildAttestError {
    #[error("cannot write the rebuild attestation `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the attestations beside `{}`: {message}", dir.display())]
    List { dir: PathBuf, message: String },
}

/// The statement of a rebuild attestation.
pub type Statement = crate::attest::Statement<Predicate>;

/// What a rebuilder found, and from what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    /// The candidate id: the sha256 of its `manifest.json` (also the first subject).
    pub candidate: Digest,
    pub result: Outcome,
    pub rebuilder: Rebuilder,
    pub inputs: Inputs,
    /// How many files of the candidate folder were compared.
    pub compared: u64,
    /// For `FAILED`: the first file, in name order, that the rebuild did not reproduce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<FileDifference>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// Every file of the candidate folder came out byte for byte the same.
    Identical,
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Identical => "IDENTICAL",
            Outcome::Failed => "FAILED",
        })
    }
}

/// The tool that rebuilt, as the rebuild's manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rebuilder {
    /// `urn:candidate:builder`, the provenance's builder id.
    pub id: String,
    pub version: String,
    pub layer_format: u32,
}

/// The inputs the rebuild used, as its own manifest states them: for an identical rebuild
/// the candidate's, for a failed one what the rebuilder had instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub recipe: RecipeRef,
    pub lockfile: LockfileRef,
    /// Every locked input: archives' `InRelease` files, Debian packages, tarballs and local
    /// trees, wheels; named as the provenance names them.
    pub locked: Vec<Locked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub name: String,
    pub digest: Digest,
}

/// A file of the candidate that the rebuild did not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDifference {
    /// The path in the candidate folder.
    pub file: String,
    pub candidate: Digest,
    /// `None`: the rebuild made no such file.
    pub rebuilt: Option<Digest>,
    /// For an archive, the first entry that differs.
    pub entry: Option<EntryDifference>,
    /// The whole finding in words, as `verify` prints it after `rebuild: `.
    pub detail: String,
}

/// The first entry two tar archives disagree on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDifference {
    pub path: String,
    /// `presence` (in one archive only), `type`, `content`, `mode`, `owner`, `mtime`,
    /// `link target` or `xattrs`: the first field, in that order, that differs.
    pub field: String,
    /// The value here and in the rebuild (`absent` for an entry only in the other).
    pub candidate: String,
    pub rebuilt: String,
}

impl std::fmt::Display for EntryDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = &self.path;
        match (self.field.as_str(), self.rebuilt.as_str()) {
            ("presence", "absent") => write!(f, "entry `{path}` is only in this candidate"),
            ("presence", _) => write!(f, "entry `{path}` is only in the rebuild"),
            (field, rebuilt) => {
                write!(f, "entry `{path}`: {field} differs ({} here, {rebuilt} rebuilt)", self.candidate)
            }
        }
    }
}

impl FileDifference {
    /// The finding in a few words: the file, and the entry and field for an archive.
    pub fn summary(&self) -> String {
        match (&self.rebuilt, &self.entry) {
            (None, _) => format!("`{}` is not produced by the rebuild", self.file),
            (Some(_), Some(entry)) => {
                format!("`{}` differs, first at entry `{}` ({})", self.file, entry.path, entry.field)
            }
            (Some(_), None) => format!("`{}` differs", self.file),
        }
    }
}

impl crate::attest::Statement<Predicate> {
    /// The statement about the candidate whose manifest is `manifest` (its bytes hash to
    /// `id`), by a rebuild whose own manifest is `rebuilt`, which compared `compared` files
    /// and found `difference` first.
    pub fn new(
        manifest: &Manifest,
        id: Digest,
        rebuilt: &Manifest,
        compared: usize,
        difference: Option<FileDifference>,
    ) -> Self {
        let subject = std::iter::once(Subject { name: MANIFEST.to_owned(), digest: DigestSet { sha256: id } })
            .chain(
                manifest
                    .outputs
                    .iter()
                    .map(|o| Subject { name: o.name.clone(), digest: DigestSet { sha256: o.sha256 } }),
            )
            .collect();
        let archives = rebuilt
            .archives
            .iter()
            .flatten()
            .map(|a| Locked { name: format!("inrelease:{}", a.name), digest: a.inrelease });
        let packages = rebuilt
            .packages
            .iter()
            .flatten()
            .map(|p| Locked { name: format!("deb:{}_{}_{}", p.name, p.version, p.architecture), digest: p.sha256 });
        let inputs =
            rebuilt.inputs.iter().map(|i| Locked { name: format!("{}:{}", i.kind, i.origin), digest: i.sha256 });
        let wheels = rebuilt.wheels.iter().map(|w| Locked { name: format!("wheel:{}", w.filename), digest: w.sha256 });
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: REBUILD.to_owned(),
            predicate: Predicate {
                candidate: id,
                result: if difference.is_none() { Outcome::Identical } else { Outcome::Failed },
                rebuilder: Rebuilder {
                    id: crate::attest::BUILDER_ID.to_owned(),
                    version: rebuilt.tool.version.clone(),
                    layer_format: rebuilt.tool.layer_format,
                },
                inputs: Inputs {
                    recipe: rebuilt.recipe.clone(),
                    lockfile: rebuilt.lockfile.clone(),
                    locked: archives.chain(packages).chain(inputs).chain(wheels).collect(),
                },
                compared: compared as u64,
                difference,
            },
        }
    }

    /// The canonical bytes a rebuilder signs.
    pub fn to_canonical(&self) -> Vec<u8> {
        document::to_canonical(self)
    }

    /// The statement in `bytes`, the verified payload of the envelope at `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, DocumentError> {
        document::parse(WHAT, path, bytes)
    }
}

/// Signs `statement` with each key into its own envelope beside the candidate folder `dir`,
/// each written atomically (temp file, fsync, rename): a rebuilder that rebuilds again
/// replaces its own attestation and no other. Returns the files written.
pub fn write(dir: &Path, statement: &Statement, keys: &[PrivateKey]) -> Result<Vec<PathBuf>, RebuildAttestError> {
    let payload = statement.to_canonical();
    let mut written = Vec::with_capacity(keys.len());
    for key in keys {
        let path = dist::rebuild_attestation_path(dir, &key.public.id.to_string());
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, std::slice::from_ref(key));
        let error = |source| RebuildAttestError::Write { path: path.clone(), source };
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new().prefix(".rebuild-").tempfile_in(parent).map_err(error)?;
        std::io::Write::write_all(&mut temp, &envelope.to_json()).map_err(error)?;
        temp.as_file().sync_all().map_err(error)?;
        temp.persist(&path).map_err(|e| error(e.error))?;
        crate::store::sync_parent(&path).map_err(error)?;
        written.push(path);
    }
    Ok(written)
}

/// Why a rebuild attestation beside a candidate does not count towards its quorum. Each is
/// shown inside a refusal's sentence that names the file.
#[derive(Debug, thiserror::Error)]
pub enum NotCounted {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("its signature: {0}")]
    Signature(DsseError),
    #[error("{0}")]
    Malformed(String),
    #[error("it is not a rebuild attestation (predicate type `{0}`)")]
    NotRebuild(String),
    #[error("it is about another candidate ({0})")]
    OtherCandidate(Digest),
    #[error("its result is FAILED: {0}")]
    Failed(String),
    #[error("key `{key}` is counted already, for `{first}`")]
    Duplicate { key: String, first: String },
}

/// One key's identical rebuild that counted.
#[derive(Debug)]
pub struct Counted {
    pub file: String,
    pub key: KeyId,
    /// The key's file, as the policy names it.
    pub origin: String,
}

/// What the rebuild attestations beside a candidate add up to, against a set of trusted
/// rebuilder keys.
#[derive(Debug, Default)]
pub struct Quorum {
    pub counted: Vec<Counted>,
    /// Every rebuild attestation (by its file name) that did not count, with the reason.
    pub not_counted: Vec<(String, NotCounted)>,
}

/// Counts the identical rebuilds of candidate `id` (its folder `dir`) by distinct keys of
/// `rebuilders`, reading every `NAME.rebuild.*.intoto.json` beside the folder in name order.
pub fn count(dir: &Path, id: &Digest, rebuilders: &[PublicKey]) -> Result<Quorum, RebuildAttestError> {
    let files = dist::attestation_files(dir)
        .map_err(|e| RebuildAttestError::List { dir: dir.to_owned(), message: format!("{e:#}") })?;
    let mut quorum = Quorum::default();
    let mut first_by_key: BTreeMap<KeyId, String> = BTreeMap::new();
    for path in files.iter().filter(|f| dist::is_rebuild_attestation(dir, f)) {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let signers = match read_identical(path, id, rebuilders) {
            Ok(signers) => signers,
            Err(why) => {
                quorum.not_counted.push((file, why));
                continue;
            }
        };
        let mut counted_here = false;
        let mut duplicate = None;
        for key in signers {
            let origin = rebuilders.iter().find(|k| k.id == key).map(|k| k.origin.clone()).unwrap_or_default();
            match first_by_key.get(&key) {
                Some(first) => duplicate = Some(NotCounted::Duplicate { key: origin, first: first.clone() }),
                None => {
                    first_by_key.insert(key, file.clone());
                    quorum.counted.push(Counted { file: file.clone(), key, origin });
                    counted_here = true;
                }
            }
        }
        if let (false, Some(why)) = (counted_here, duplicate) {
            quorum.not_counted.push((file, why));
        }
    }
    Ok(quorum)
}

/// The keys of `rebuilders` whose signatures over the envelope at `path` verify, once its
/// statement is a rebuild of candidate `id` with the result `IDENTICAL`.
fn read_identical(path: &Path, id: &Digest, rebuilders: &[PublicKey]) -> Result<Vec<KeyId>, NotCounted> {
    let bytes = fs_err::read(path).map_err(|e| NotCounted::Read(e.to_string()))?;
    let envelope = Envelope::parse(&bytes).map_err(NotCounted::Signature)?;
    let verified = envelope.verify(IN_TOTO_PAYLOAD_TYPE, rebuilders, 1).map_err(NotCounted::Signature)?;
    // Everything below reads the verified payload bytes.
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "predicateType")]
        predicate_type: Option<String>,
    }
    let kind: Option<Kind> = serde_json::from_slice(&verified.payload).ok();
    if let Some(other) = kind.and_then(|k| k.predicate_type).filter(|t| t != REBUILD) {
        return Err(NotCounted::NotRebuild(other));
    }
    let statement = Statement::parse(path, &verified.payload).map_err(|e| {
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
        NotCounted::Malformed(format!("its statement is not a valid {WHAT}{cause}"))
    })?;
    let names = statement.subject.iter().any(|s| s.name == MANIFEST && s.digest.sha256 == *id);
    if statement.predicate.candidate != *id || !names {
        return Err(NotCounted::OtherCandidate(statement.predicate.candidate));
    }
    if statement.predicate.result != Outcome::Identical {
        let what =
            statement.predicate.difference.as_ref().map_or("no difference named".to_owned(), FileDifference::summary);
        return Err(NotCounted::Failed(what));
    }
    Ok(verified.signers.into_iter().collect())
}

impl Quorum {
    /// The refusal of a candidate with fewer than `needed` counted rebuilds, for `channel`.
    pub fn refusal(&self, candidate: &Digest, channel: &str, needed: usize) -> String {
        let counted: Vec<String> = self.counted.iter().map(|c| format!("`{}` by key `{}`", c.file, c.origin)).collect();
        let not_counted: Vec<String> = self.not_counted.iter().map(|(file, why)| format!("`{file}`: {why}")).collect();
        let list = |items: &[String]| if items.is_empty() { "none".to_owned() } else { items.join("; ") };
        format!(
            "candidate {candidate} has {} of the {needed} identical rebuilds by distinct `rebuilders` keys that channel \
             `{channel}` requires (counted: {}; not counted: {})",
            self.counted.len(),
            list(&counted),
            list(&not_counted)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_MANIFEST: &[u8] = include_bytes!("../tests/data/example.manifest.json");
    const FOLDER: &str = "example_1.0_amd64";

    fn example() -> Manifest {
        Manifest::parse(Path::new(MANIFEST), EXAMPLE_MANIFEST).unwrap()
    }

    fn failed_difference() -> FileDifference {
        let digest = |b: &[u8]| Digest::of(b);
        FileDifference {
            file: "rootfs.tar.gz".to_owned(),
            candidate: digest(b"here"),
            rebuilt: Some(digest(b"rebuilt")),
            entry: Some(EntryDifference {
                path: "./usr/bin/hello".to_owned(),
                field: "content".to_owned(),
                candidate: digest(b"a").to_string(),
                rebuilt: digest(b"b").to_string(),
            }),
            detail: "rootfs.tar.gz differs (…)".to_owned(),
        }
    }

    /// The predicate is a typed document: written canonically, read back to the same value,
    /// and the same bytes again; an unknown key is refused naming the file.
    #[test]
    fn the_statement_round_trips_as_a_typed_document() {
        let manifest = example();
        let id = Digest::of(EXAMPLE_MANIFEST);
        let statement = Statement::new(&manifest, id, &manifest, 12, Some(failed_difference()));
        assert_eq!(statement.predicate.result, Outcome::Failed);
        assert_eq!(statement.subject.len(), manifest.outputs.len() + 1);
        let bytes = statement.to_canonical();
        let back = Statement::parse(Path::new("a.intoto.json"), &bytes).unwrap();
        assert_eq!(back, statement);
        assert!(back.to_canonical() == bytes, "parsing and writing again changed the bytes");
        insta::assert_json_snapshot!(statement);

        let identical = Statement::new(&manifest, id, &manifest, 12, None);
        let text = String::from_utf8(identical.to_canonical()).unwrap();
        assert!(text.contains(r#""result":"IDENTICAL""#) && !text.contains("difference"), "{text}");

        let extra = text.replacen(r#""compared":12"#, r#""compared":12,"extra":1"#, 1);
        let err = Statement::parse(Path::new("b.intoto.json"), extra.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "`b.intoto.json` is not a valid rebuild attestation");
        let bare = text.replacen(&id.hex(), &id.to_string(), 1);
        assert!(Statement::parse(Path::new("c.intoto.json"), bare.as_bytes()).is_err(), "a prefixed subject digest");
    }

    /// An envelope of `payload` signed by `key`, beside the candidate as `NAME.rebuild.TAG.intoto.json`.
    fn put(dir: &Path, tag: &str, payload: &[u8], key: &PrivateKey) {
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, std::slice::from_ref(key));
        let path = dir.parent().unwrap().join(format!("{FOLDER}.rebuild.{tag}.intoto.json"));
        fs_err::write(path, envelope.to_json()).unwrap();
    }

    #[test]
    fn only_verified_identical_rebuilds_of_this_candidate_count_once_per_key() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(FOLDER);
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join(MANIFEST), EXAMPLE_MANIFEST).unwrap();
        let (a, b, stranger) =
            (PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap());
        let trusted = [a.public.clone(), b.public.clone()];
        let manifest = example();
        let id = Digest::of(EXAMPLE_MANIFEST);
        let identical = Statement::new(&manifest, id, &manifest, 12, None);

        // Nothing beside the candidate: nothing counted, nothing to name.
        let none = count(&dir, &id, &trusted).unwrap();
        assert!(none.counted.is_empty() && none.not_counted.is_empty());

        let written = write(&dir, &identical, std::slice::from_ref(&a)).unwrap();
        assert_eq!(written, [dist::rebuild_attestation_path(&dir, &a.public.id.to_string())]);
        // The same key's statement under another name; `a` again over another payload.
        fs_err::copy(&written[0], temp.path().join(format!("{FOLDER}.rebuild.0-copy.intoto.json"))).unwrap();
        put(&dir, "zz-again", &identical.to_canonical(), &a);
        put(
            &dir,
            "failed",
            &Statement::new(&manifest, id, &manifest, 12, Some(failed_difference())).to_canonical(),
            &b,
        );
        put(&dir, "stranger", &identical.to_canonical(), &stranger);
        let other = Statement::new(&manifest, Digest::of(b"another manifest"), &manifest, 12, None);
        put(&dir, "other", &other.to_canonical(), &b);
        let mut not_rebuild: serde_json::Value = serde_json::from_slice(&identical.to_canonical()).unwrap();
        not_rebuild["predicateType"] = "https://in-toto.io/attestation/test-result/v0.1".into();
        put(&dir, "test", &serde_json::to_vec(&not_rebuild).unwrap(), &b);
        // Signed by `b`, then the payload changed.
        put(&dir, "tampered", &identical.to_canonical(), &b);
        let tampered = dir.parent().unwrap().join(format!("{FOLDER}.rebuild.tampered.intoto.json"));
        let mut envelope = Envelope::parse(&fs_err::read(&tampered).unwrap()).unwrap();
        use base64::Engine as _;
        let changed =
            String::from_utf8(identical.to_canonical()).unwrap().replace(r#""compared":12"#, r#""compared":13"#);
        envelope.payload = base64::engine::general_purpose::STANDARD.encode(changed);
        fs_err::write(&tampered, envelope.to_json()).unwrap();
        // Not a rebuild attestation by its name: not read at all.
        fs_err::write(temp.path().join(format!("{FOLDER}.test.intoto.json")), b"{}").unwrap();

        let quorum = count(&dir, &id, &trusted).unwrap();
        let counted: Vec<(&str, KeyId)> = quorum.counted.iter().map(|c| (c.file.as_str(), c.key)).collect();
        assert_eq!(counted, [(format!("{FOLDER}.rebuild.0-copy.intoto.json").as_str(), a.public.id)]);
        let why: BTreeMap<&str, String> = quorum
            .not_counted
            .iter()
            .map(|(f, w)| {
                (f.trim_start_matches(&format!("{FOLDER}.rebuild.")).trim_end_matches(".intoto.json"), w.to_string())
            })
            .collect();
        let a16 = &a.public.id.to_string()[..16];
        let expected = [
            (a16, "key `generated` is counted already, for `example_1.0_amd64.rebuild.0-copy.intoto.json`".to_owned()),
            ("failed", "its result is FAILED: `rootfs.tar.gz` differs, first at entry `./usr/bin/hello` (content)".to_owned()),
            ("other", format!("it is about another candidate ({})", Digest::of(b"another manifest"))),
            (
                "stranger",
                format!(
                    "its signature: 0 valid signature(s) by trusted keys, 1 required; rejected: signature 0 (keyid `{}`) is not \
                     by a trusted key",
                    stranger.public.id
                ),
            ),
            (
                "tampered",
                format!(
                    "its signature: 0 valid signature(s) by trusted keys, 1 required; rejected: signature 0 by trusted key \
                     `{}` (generated) is invalid: it does not verify over this payload",
                    b.public.id
                ),
            ),
            ("test", "it is not a rebuild attestation (predicate type `https://in-toto.io/attestation/test-result/v0.1`)".to_owned()),
            ("zz-again", "key `generated` is counted already, for `example_1.0_amd64.rebuild.0-copy.intoto.json`".to_owned()),
        ];
        assert_eq!(why, expected.into_iter().collect::<BTreeMap<_, _>>());
    }

    /// The refusal a promotion prints, from a quorum of fixed names.
    #[test]
    fn the_refusal_names_the_count_and_every_attestation_not_counted() {
        let key = KeyId(Digest::of(b"rb1"));
        let first = format!("{FOLDER}.rebuild.{}.intoto.json", &key.to_string()[..16]);
        let quorum = Quorum {
            counted: vec![Counted { file: first.clone(), key, origin: "keys/rb1.pub".to_owned() }],
            not_counted: vec![
                (
                    format!("{FOLDER}.rebuild.copy.intoto.json"),
                    NotCounted::Duplicate { key: "keys/rb1.pub".to_owned(), first },
                ),
                (
                    format!("{FOLDER}.rebuild.2222222222222222.intoto.json"),
                    NotCounted::Failed(failed_difference().summary()),
                ),
                (
                    format!("{FOLDER}.rebuild.3333333333333333.intoto.json"),
                    NotCounted::Signature(DsseError::Threshold {
                        valid: 0,
                        threshold: 1,
                        rejected: vec!["signature 0 (keyid `3333`) is not by a trusted key".to_owned()],
                    }),
                ),
            ],
        };
        insta::assert_snapshot!(quorum.refusal(&Digest::of(EXAMPLE_MANIFEST), "production", 2));
    }
}
