//! The candidate manifest: what went in and what came out.
//!
//! `manifest.json` is the [`Manifest`] type in canonical JSON ([`crate::document`]): object
//! keys sorted bytewise, no insignificant whitespace, no trailing newline, integers only, UTF-8.
//! The candidate's id is the sha256 of these bytes, so the same inputs must give the same
//! bytes on every machine: nothing here comes from the host, the clock or the paths the build
//! ran in. Every command reads a manifest back through [`Manifest::read`] (or
//! [`Manifest::parse`] when it holds the bytes already), and parsing then serialising gives
//! the same bytes: the type holds every key, and refuses keys it does not know.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compress::{Codec, Compression};
use crate::debian::packages::{Architecture, PackageName};
use crate::debian::version::Version;
use crate::digest::Digest;
use crate::document::{self, DocumentError};
use crate::layer::{self, LayerInfo};
use crate::lockfile::{LockedIndex, LockedInput, Lockfile, PackageRef};
use crate::recipe::{Format, ImageVersion, IncusRootfs, Name, Recipe};
use crate::rootfs::Assembled;

pub const MANIFEST_VERSION: u32 = 1;

/// What a [`DocumentError`] calls this document.
const WHAT: &str = "manifest";

/// `manifest.json`. The four Debian keys (`archives`, `packages`, `file-conflicts`, `mode`)
/// are present together, and only for a candidate built from an apt archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u32,
    pub tool: Tool,
    pub image: Image,
    pub source_date_epoch: u64,
    pub recipe: RecipeRef,
    pub lockfile: LockfileRef,
    /// The lockfile's inputs, verbatim: the same type, so that the manifest cannot state
    /// them otherwise (a change to that type moves the golden candidate id in the tests).
    pub inputs: Vec<LockedInput>,
    pub layers: Vec<Layer>,
    pub rootfs: Rootfs,
    pub formats: Vec<Format>,
    pub outputs: Vec<Output>,
    /// Each codec some output uses, once, in the order gzip, xz, zstd.
    pub compressors: Vec<Compression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives: Option<Vec<Archive>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<Package>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_conflicts: Option<FileConflicts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// In configure mode: what each node adds to the candidate (the per-machine paths left out
    /// of it, sorted, and the first-boot actions that make them, in order), for auditors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_machine: Option<crate::debian::per_machine::Record>,
    /// The Python wheels installed into the layers' venvs, in lockfile order. Left out when
    /// there are none, so that candidates without Python keep their bytes (and ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<Wheel>,
}

/// A Python wheel of the candidate, as the lockfile pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    pub name: crate::python::Name,
    pub version: String,
    pub filename: String,
    pub sha256: Digest,
    pub layer: Name,
}

/// The program that built the candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
    pub layer_format: u32,
}

/// The recipe's `[image]`, as built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: Name,
    pub version: ImageVersion,
    pub architecture: Architecture,
    pub os: String,
    pub release: String,
    pub description: String,
}

/// The recipe, by file name only: the folder it was built from is not an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeRef {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockfileRef {
    pub digest: Digest,
    pub version: u32,
}

/// One layer, by the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub name: String,
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
}

/// The merged root filesystem's uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rootfs {
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
}

/// One file of the candidate folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// `null` for a file that is not compressed.
    pub compression: Option<Compression>,
}

/// An apt archive as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub name: Name,
    pub suite: String,
    pub inrelease: Digest,
    pub date: i64,
    pub keyring: Digest,
    /// The lockfile's indexes of the archive, verbatim.
    pub indexes: Vec<LockedIndex>,
}

/// A Debian package of the candidate, as the lockfile pins it (the same typed fields, written
/// as the lockfile writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: PackageName,
    pub version: Version,
    pub architecture: Architecture,
    pub archive: Name,
    pub layer: Name,
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
    /// The lockfile's dependency edges of the package, verbatim (left out when the lockfile
    /// records none, so that such candidates keep their bytes); the SBOMs' graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<Vec<PackageRef>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConflicts {
    /// [`FILE_CONFLICT_RULE`], stated for a reader of the manifest.
    pub rule: String,
    pub replaced: Vec<Replaced>,
}

pub const FILE_CONFLICT_RULE: &str =
    "a file shipped by two packages is an error unless the later declares Replaces on the earlier";

/// A file one package took over from another by `Replaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replaced {
    pub path: String,
    pub by: String,
    pub from: String,
}

/// How packages were installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Maintainer scripts ran (`[configure] maintainer-scripts = true`).
    Configure,
    /// Packages unpacked, no script run.
    ExtractOnly,
}

/// Everything the manifest states, gathered by the build.
pub struct ManifestInput<'a> {
    pub recipe: &'a Recipe,
    pub lockfile: &'a Lockfile,
    pub lockfile_digest: Digest,
    pub layers: &'a [(String, LayerInfo)],
    pub assembled: &'a Assembled,
    /// The formats built (one may make several files, and files may serve several formats).
    pub formats: &'a [Format],
    /// Files one package took over from another by `Replaces`: (path, by, from).
    pub replaced: &'a [(String, String, String)],
    /// In configure mode: the per-machine paths left out and the first-boot actions.
    pub per_machine: Option<&'a crate::debian::per_machine::Record>,
}

impl Manifest {
    /// The manifest of a build.
    ///
    /// Long by design: one struct literal, field by field in the document's own order, is the
    /// clearest statement of where each value of the manifest comes from.
    pub fn new(input: &ManifestInput<'_>) -> Self {
        let image = &input.recipe.image;
        let lock = input.lockfile;
        let debian = !lock.archives.is_empty();
        Manifest {
            manifest_version: MANIFEST_VERSION,
            tool: Tool {
                name: "candidate".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                layer_format: layer::FORMAT_VERSION,
            },
            image: Image {
                name: image.name.clone(),
                version: image.version.clone(),
                architecture: image.architecture.clone(),
                os: image.os.to_string(),
                release: image.release.to_string(),
                description: image.description.clone(),
            },
            source_date_epoch: image.source_date_epoch.seconds(),
            recipe: RecipeRef {
                name: input.recipe.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                digest: lock.recipe,
            },
            lockfile: LockfileRef { digest: input.lockfile_digest, version: lock.version },
            inputs: lock.inputs.clone(),
            layers: input
                .layers
                .iter()
                .map(|(name, info)| Layer {
                    name: name.clone(),
                    diff_id: info.diff_id,
                    size: info.size,
                    entries: info.entries,
                })
                .collect(),
            rootfs: {
                let info = &input.assembled.rootfs;
                Rootfs { diff_id: info.diff_id, size: info.size, entries: info.entries }
            },
            formats: input.formats.to_vec(),
            outputs: input
                .assembled
                .outputs
                .iter()
                .map(|o| Output {
                    name: o.name.clone(),
                    size: o.size,
                    sha256: o.sha256,
                    compression: o.codec.describe(),
                })
                .collect(),
            compressors: [Codec::Gzip, Codec::Xz, Codec::Zstd]
                .into_iter()
                .filter(|c| input.assembled.outputs.iter().any(|o| o.codec == *c))
                .filter_map(Codec::describe)
                .collect(),
            archives: debian.then(|| {
                lock.archives
                    .iter()
                    .map(|a| Archive {
                        name: a.name.clone(),
                        suite: a.suite.clone(),
                        inrelease: a.inrelease,
                        date: a.date,
                        keyring: a.keyring,
                        indexes: a.indexes.clone(),
                    })
                    .collect()
            }),
            packages: debian.then(|| {
                lock.packages
                    .iter()
                    .map(|p| Package {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        architecture: p.architecture.clone(),
                        archive: p.archive.clone(),
                        layer: p.layer.clone(),
                        filename: p.filename.clone(),
                        size: p.size,
                        sha256: p.sha256,
                        depends: p.depends.clone(),
                    })
                    .collect()
            }),
            file_conflicts: debian.then(|| FileConflicts {
                rule: FILE_CONFLICT_RULE.to_owned(),
                replaced: input
                    .replaced
                    .iter()
                    .map(|(path, by, from)| Replaced { path: path.clone(), by: by.clone(), from: from.clone() })
                    .collect(),
            }),
            mode: debian.then_some(if input.recipe.configure.maintainer_scripts {
                Mode::Configure
            } else {
                Mode::ExtractOnly
            }),
            per_machine: input.per_machine.cloned(),
            wheels: lock
                .wheels
                .iter()
                .map(|w| Wheel {
                    name: w.name.clone(),
                    version: w.version.clone(),
                    filename: w.filename.clone(),
                    sha256: w.sha256,
                    layer: w.layer.clone(),
                })
                .collect(),
        }
    }

    /// The canonical bytes; their sha256 is the candidate's id.
    pub fn to_bytes(&self) -> Vec<u8> {
        document::to_canonical(self)
    }

    /// Parses the bytes of `path`, already read (a caller that also hashes them).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, DocumentError> {
        document::parse(WHAT, path, bytes)
    }

    /// Reads the manifest at `path` (a `manifest.json`); the error names the file.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        document::read(WHAT, path)
    }

    /// The output called `name`, if the manifest lists one.
    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Which of the candidate's rootfs archives is its `incus` format's: `rootfs.tar.xz`,
    /// or `rootfs.tar.zst` when it was built with `[lxc] incus-rootfs = "zstd"` and without
    /// the xz rootfs (with both, they hold one tree, and the xz one is taken).
    pub fn incus_rootfs(&self) -> IncusRootfs {
        if self.output(IncusRootfs::Xz.file_name()).is_some() {
            IncusRootfs::Xz
        } else {
            IncusRootfs::Zstd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's `manifest.json` as built at the commit that typed it: the bytes whose
    /// sha256 is the golden candidate id in `tests/cli/determinism.rs`.
    const EXAMPLE: &[u8] = include_bytes!("../tests/data/example.manifest.json");

    #[test]
    fn the_example_manifest_round_trips_to_the_same_bytes() {
        let manifest = Manifest::parse(Path::new("example.manifest.json"), EXAMPLE).unwrap();
        assert!(manifest.to_bytes() == EXAMPLE, "parse then serialise changed the manifest");
        assert_eq!(
            Digest::of(EXAMPLE).to_string(),
            "sha256:831a1f61575292f2ab6135e1f5cdd9b017eb6e45ae9859243ef0d1b0b014097e",
            "the fixture is not the golden example manifest"
        );
        insta::assert_json_snapshot!(manifest);
    }

    #[test]
    fn unknown_keys_and_bad_digests_are_refused_with_the_file_name() {
        let path = Path::new("some/dir/manifest.json");
        let text = std::str::from_utf8(EXAMPLE).unwrap();
        let extra = text.replacen("\"manifest-version\"", "\"extra\":1,\"manifest-version\"", 1);
        let err = Manifest::parse(path, extra.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "`some/dir/manifest.json` is not a valid manifest");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.starts_with("unknown field `extra`"), "{cause}");
        let short = text.replacen("\"diff_id\":\"sha256:", "\"diff_id\":\"sha256:0", 1);
        let cause =
            std::error::Error::source(&Manifest::parse(path, short.as_bytes()).unwrap_err()).unwrap().to_string();
        assert!(cause.contains("is not a sha256 digest"), "{cause}");
    }
}
