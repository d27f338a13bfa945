//! Recipes: what goes into a candidate.
//!
//! A recipe (`recipes/NAME.toml`) names the image and lists its layers in order; each layer
//! gathers local files, tarballs, directories and symlinks. Parsing is strict: an unknown key
//! is an error that names the key and its line (serde's `deny_unknown_fields`, with the TOML
//! parser's span), and every value that has a shape — a digest, a mode, an owner, a path in
//! the image — is parsed into its own type here, at the edge, so the rest of the pipeline never
//! re-validates strings.
//!
//! Relative paths in a recipe (`files.from`, tarball `url`s without a scheme) are relative to
//! the recipe file, so a checkout can live anywhere.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::debian::packages::Architecture;
use crate::digest::Digest;
use crate::serde_str::serde_via_from_str;

/// The largest recipe read: it is parsed in memory. The biggest real recipes are a few KB;
/// 1 MiB is room for any hand-written one and stops a runaway file before it is read.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;

/// The name of the layer that running the maintainer scripts makes, in manifests and OCI
/// history: reserved, so no recipe layer may take it.
pub const CONFIGURE_LAYER: &str = "configure";

/// Why a recipe could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("failed to read recipe `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid recipe `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid recipe `{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A layer's package request that is not one relation. Boxed (the error is large), so
    /// the chain sees a `Box` and its hint is passed on by [`RecipeError`]'s own `Hint`.
    #[error("invalid recipe `{}`: layer `{layer}`: package `{text}`", path.display())]
    Package { path: PathBuf, layer: Name, text: String, source: Box<crate::debian::packages::ParseRequestError> },
}

impl crate::error::Hint for RecipeError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match self {
            RecipeError::Package { source, .. } => crate::error::Hint::hints(source.as_ref()),
            _ => Vec::new(),
        }
    }
}

/// Why a value in a recipe is not what its key takes. Each message quotes the value; the TOML
/// parser adds the file's line and column around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not a valid name: use letters, digits, `-`, `.` and `+`, starting with a letter or digit")]
    Name(String),
    #[error("`{0}` is not a valid version: use letters, digits, `.`, `+`, `~` and `-`")]
    ImageVersion(String),
    #[error("`{0}` is not a concrete architecture: an image has one like `amd64` or `arm64` (`all` is for packages)")]
    ArchitectureAll(Architecture),
    #[error("`{0}` is not an octal mode like `0644` or `4755`")]
    Mode(String),
    #[error("`{0}` is not a numeric owner like `0:0` (names are not looked up)")]
    Owner(String),
    #[error("`{0}` is not an absolute path in the image (start it with `/`)")]
    RelativeImagePath(String),
    #[error("`{0}` contains a `..` component")]
    ClimbingPath(String),
    #[error("`{0}` contains a NUL byte")]
    NulInPath(String),
    #[error("`{0}`: a `file://` URL needs an absolute path (`file:///…`)")]
    RelativeFileUrl(String),
    #[error("`{0}`: unsupported URL scheme (use http://, https://, file:// or a path)")]
    UrlScheme(String),
    #[error("`{0}` is not a plain path below `/` (no empty, `.`, `..` or bare `*` components)")]
    PathPattern(String),
    #[error("`{0}` holds a control character")]
    ControlInPath(String),
    #[error("`{0}` is not a valid OCI `ref.name`: components of letters and digits joined by one of `-._:@+` or `--`, separated by `/`, at most {MAX_REF_NAME} bytes")]
    RefName(String),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error("`{0}` is not an environment entry `KEY=VALUE` (a non-empty key without `=`, spaces or control characters; no NUL)")]
    EnvVar(String),
    #[error("{0} is past {MAX_SOURCE_DATE_EPOCH} (2242-03-16), the latest time a tar header holds")]
    EpochTooLate(u64),
    #[error("`{0}` is not a snapshot URL: it must hold `{{timestamp}}` once, in an http://, https://, file:// URL or a path (`http://HOST/archive/NAME/{{timestamp}}/`)")]
    SnapshotTemplate(String),
}

/// A parsed recipe, with the bytes it was parsed from (they are part of the recipe digest).
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Where the recipe was read from, as given on the command line.
    pub path: PathBuf,
    /// The folder relative paths in the recipe are resolved against.
    pub dir: PathBuf,
    pub bytes: Vec<u8>,
    pub image: Image,
    pub layers: Vec<Layer>,
    pub output: Output,
    pub oci: OciConfig,
    pub lxc: LxcConfig,
    /// Debian archives the `packages` of layers are resolved from, by name.
    pub archives: std::collections::BTreeMap<Name, ArchiveSpec>,
    pub configure: ConfigureConfig,
    pub python: PythonConfig,
}

/// Whether the packages' maintainer scripts run (`[configure]`). Off, the image is extract
/// only: files in place, packages `unpacked`. On, the image's own dpkg configures them in a
/// sandbox and what that changed becomes the `configure` layer, on top of every recipe layer.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigureConfig {
    #[serde(default)]
    pub maintainer_scripts: bool,
    /// Seconds the whole configure run may take before it is killed (default 1800).
    pub timeout: Option<u64>,
    /// Whether the maintainer scripts run twice, side by side, and the build fails on any
    /// path whose result differs (default on; see [`crate::debian::per_machine`]).
    #[serde(default = "ConfigureConfig::default_guard")]
    pub guard: bool,
    /// Per-machine state beyond the built-in list (`[[configure.per-machine]]`): left out of
    /// the candidate and made on each node at first boot.
    #[serde(default)]
    pub per_machine: Vec<PerMachine>,
}

impl Default for ConfigureConfig {
    fn default() -> Self {
        ConfigureConfig { maintainer_scripts: false, timeout: None, guard: true, per_machine: Vec::new() }
    }
}

impl ConfigureConfig {
    fn default_guard() -> bool {
        true
    }
}

/// One `[[configure.per-machine]]` entry: paths the maintainer scripts make that belong to
/// one machine, and the shell command that makes them on a node at first boot.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PerMachine {
    /// Names the action in the manifest, the first-boot log and its done-stamp.
    pub name: Name,
    /// Absolute paths in the image; `*` matches any part of one name. A directory is removed
    /// with everything under it.
    pub paths: Vec<PathPattern>,
    /// Run by `/bin/sh -e` on each node at first boot, before any service starts. Without it
    /// the paths are only left out (for state that something else makes when missing).
    pub first_boot: Option<String>,
}

/// An apt archive (`[archive.NAME]`). The URL is a location, not an input: the lockfile pins
/// the signed `InRelease` and every index and package by hash, and `--mirror NAME=URL` may
/// point at any other copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchiveSpec {
    /// `http(s)://`, `file://`, or a path relative to the recipe.
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    /// OpenPGP public keys (armored or binary), relative to the recipe. The only trust root.
    pub keyring: PathBuf,
    /// Where the archive was as of a time: a snapshot service, asked for what the mirror no
    /// longer serves (see [`SnapshotTemplate`]). A location too: what it serves is checked
    /// against the same pins.
    pub snapshot: Option<SnapshotTemplate>,
}

/// What the LXC and LXD/Incus metadata say (`[lxc]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LxcConfig {
    /// Files in which `LXC_NAME` is replaced by the container's name (LXC), or which are
    /// rendered from a template with the instance name (LXD/Incus).
    #[serde(default = "LxcConfig::default_templates")]
    pub templates: Vec<ImagePath>,
    /// Seconds since the epoch after which LXC considers the image expired.
    pub expiry: Option<u64>,
    /// The image variant LXD/Incus shows (`default`, `cloud` …).
    #[serde(default = "LxcConfig::default_variant")]
    pub variant: String,
    /// How the `incus` format's rootfs is compressed.
    #[serde(default, skip_serializing_if = "IncusRootfs::is_default")]
    pub incus_rootfs: IncusRootfs,
}

impl Default for LxcConfig {
    fn default() -> Self {
        LxcConfig {
            templates: Self::default_templates(),
            expiry: None,
            variant: Self::default_variant(),
            incus_rootfs: IncusRootfs::default(),
        }
    }
}

/// The rootfs archive of the `incus` format (`[lxc] incus-rootfs`). LXD imports either
/// beside the xz metadata (tested with LXD 5.0, from the command line and through its
/// API). LXC's own `lxc-create -t local` does not: its template extracts with `tar -xpJf`,
/// which forces xz, so the `lxc` format stays xz.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncusRootfs {
    /// `rootfs.tar.xz`, what LXD's and Incus's own images use (the default).
    #[default]
    Xz,
    /// `rootfs.tar.zst`, the candidate's zstd rootfs (the default format, so an `incus`
    /// image beside it costs no compression of its own).
    Zstd,
}

impl IncusRootfs {
    fn is_default(&self) -> bool {
        *self == IncusRootfs::default()
    }

    /// The candidate's file that is the `incus` format's rootfs.
    pub fn file_name(self) -> &'static str {
        match self {
            IncusRootfs::Xz => Format::RootfsTarXz.file_name(),
            IncusRootfs::Zstd => Format::RootfsTarZst.file_name(),
        }
    }
}

impl LxcConfig {
    fn default_templates() -> Vec<ImagePath> {
        vec![
            ImagePath::from_rel("etc/hostname").expect("a plain path"),
            ImagePath::from_rel("etc/hosts").expect("a plain path"),
        ]
    }

    fn default_variant() -> String {
        "default".to_owned()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    image: Image,
    #[serde(default, rename = "layer")]
    layers: Vec<Layer>,
    #[serde(default)]
    output: Output,
    #[serde(default)]
    oci: OciConfig,
    #[serde(default)]
    lxc: LxcConfig,
    #[serde(default, rename = "archive")]
    archives: std::collections::BTreeMap<Name, ArchiveSpec>,
    #[serde(default)]
    configure: ConfigureConfig,
    #[serde(default)]
    python: PythonConfig,
}

/// Where Python wheels are found (`[python]`): a PEP 503/691 simple index. No index is
/// built in; `--python-index` and `CANDIDATE_PYTHON_INDEX` override this one.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonConfig {
    /// An `http(s)://` or `file://` URL, or a path relative to the recipe.
    pub index: Option<String>,
}

/// A layer's Python dependencies (`python = { requirements = "…", venv = "/opt/app/venv" }`):
/// exactly one of `requirements` (pip-compile's `--generate-hashes` format) or `lock` (a
/// PEP 751 `pylock.toml`), installed into a virtual environment at `venv`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonSpec {
    pub requirements: Option<PathBuf>,
    pub lock: Option<PathBuf>,
    pub venv: ImagePath,
}

/// What the OCI image's config says beyond the filesystem (`[oci]`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciConfig {
    /// The `org.opencontainers.image.ref.name` of the image in `index.json` (default: the
    /// image version).
    pub tag: Option<RefName>,
    #[serde(default)]
    pub entrypoint: Vec<NoNul>,
    #[serde(default)]
    pub cmd: Vec<NoNul>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<NoNul, NoNul>,
    pub working_dir: Option<NoNul>,
    pub user: Option<NoNul>,
    /// How OCI layers are compressed: `gzip` (the default, read everywhere) or `zstd`.
    #[serde(default)]
    pub layer_compression: LayerCompression,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    #[default]
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Image {
    pub name: Name,
    pub version: ImageVersion,
    #[serde(deserialize_with = "concrete_architecture")]
    pub architecture: Architecture,
    /// Part of file names (the Proxmox template's, LXC's metadata): a plain [`Name`], so an
    /// absolute or `../` value is refused here, with its line, rather than written through.
    pub os: Name,
    pub release: Name,
    #[serde(default)]
    pub description: String,
    /// The time every timestamp of the candidate is set to.
    pub source_date_epoch: SourceDateEpoch,
    /// Other architectures whose packages may be installed (`dpkg --add-architecture`).
    #[serde(default, deserialize_with = "concrete_architectures")]
    pub foreign_architectures: Vec<Architecture>,
}

/// An image's architecture is a real one: `all` is what architecture-independent *packages*
/// say, never what an image runs on.
fn concrete(arch: Architecture) -> Result<Architecture, ValueError> {
    if arch.is_all() {
        return Err(ValueError::ArchitectureAll(arch));
    }
    Ok(arch)
}

fn concrete_architecture<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Architecture, D::Error> {
    concrete(Architecture::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn concrete_architectures<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Architecture>, D::Error> {
    Vec::<Architecture>::deserialize(deserializer)?
        .into_iter()
        .map(|arch| concrete(arch).map_err(serde::de::Error::custom))
        .collect()
}

/// The latest `source-date-epoch`: the largest mtime a ustar header's 11 octal digits hold
/// (2242-03-16). The tar writer would clamp a later one, so every file's time would silently
/// differ from the epoch the manifest claims; refused instead.
pub const MAX_SOURCE_DATE_EPOCH: u64 = 0o77777777777;

/// `source-date-epoch`: seconds since the epoch, or `"archive"`, the newest `Date` of the
/// locked `InRelease` files, which only the lock stage knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDateEpoch {
    /// Seconds since the epoch, as the recipe writes them.
    Fixed(u64),
    /// `"archive"`: `None` until the lock stage settles it ([`SourceDateEpoch::settle`]) from
    /// the archives it pinned.
    Archive(Option<u64>),
}

impl SourceDateEpoch {
    /// Whether the recipe takes the epoch from its archives.
    pub fn is_archive(self) -> bool {
        matches!(self, SourceDateEpoch::Archive(_))
    }

    /// Settles an `"archive"` epoch to the archives' newest `Date`; a fixed one stays.
    pub fn settle(&mut self, archive_date: u64) {
        if let SourceDateEpoch::Archive(date) = self {
            *date = Some(archive_date);
        }
    }

    /// The seconds every timestamp of the candidate is set to.
    ///
    /// # Panics
    ///
    /// On an `"archive"` epoch the lock stage has not settled. Every stage after it takes its
    /// recipe from [`crate::lock`]'s `Resolved`, whose epoch is settled; a panic here is a
    /// bug in that order, and it stops the build rather than stamp a made-up time into it.
    pub fn seconds(self) -> u64 {
        match self {
            SourceDateEpoch::Fixed(seconds) | SourceDateEpoch::Archive(Some(seconds)) => seconds,
            SourceDateEpoch::Archive(None) => {
                panic!("`source-date-epoch = \"archive\"` read before the lock stage settled it")
            }
        }
    }
}

impl<'de> Deserialize<'de> for SourceDateEpoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SourceDateEpoch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds since the epoch, or \"archive\"")
            }
            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<SourceDateEpoch, E> {
                if seconds > MAX_SOURCE_DATE_EPOCH {
                    return Err(E::custom(ValueError::EpochTooLate(seconds)));
                }
                Ok(SourceDateEpoch::Fixed(seconds))
            }
            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<SourceDateEpoch, E> {
                u64::try_from(seconds)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(seconds), &self))
                    .and_then(|seconds| self.visit_u64(seconds))
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<SourceDateEpoch, E> {
                match word {
                    "archive" => Ok(SourceDateEpoch::Archive(None)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(word), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layer {
    pub name: Name,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub tarballs: Vec<TarballSpec>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Debian packages: `"bash"`, `"python3 (>= 3.11)"`, `"libc6:i386"`, resolved with their
    /// dependencies from the recipe's archives.
    #[serde(default)]
    pub packages: Vec<String>,
    /// `"required"`: every package of that priority, as debootstrap's and mmdebstrap's minbase.
    pub priority: Option<PrioritySelection>,
    /// Every `Essential: yes` package.
    #[serde(default)]
    pub essential: bool,
    /// Packages never to install; a dependency only they could meet is an error.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Python wheels installed into a virtual environment.
    pub python: Option<PythonSpec>,
}

impl Layer {
    /// Whether the layer installs Debian packages.
    pub fn has_packages(&self) -> bool {
        !self.packages.is_empty() || self.priority.is_some() || self.essential
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrioritySelection {
    Required,
}

/// Local files or a local directory tree, copied into the image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    pub from: PathBuf,
    pub to: ImagePath,
    /// Mode of regular files; by default 0755 when the host file has any execute bit, else
    /// 0644 (git's model: the only permission a checkout reliably carries is "executable").
    pub mode: Option<Mode>,
    #[serde(default)]
    pub owner: Owner,
}

/// A tarball, local or remote, unpacked (in memory, validated) under `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TarballSpec {
    pub url: String,
    #[serde(default, deserialize_with = "optional_hex_digest")]
    pub sha256: Option<Digest>,
    #[serde(default)]
    pub strip_components: u32,
    #[serde(default)]
    pub to: ImagePath,
    /// Replaces the owners recorded in the tarball, for vendor tarballs made as a build user.
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirectorySpec {
    pub path: ImagePath,
    #[serde(default = "Mode::directory")]
    pub mode: Mode,
    #[serde(default)]
    pub owner: Owner,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SymlinkSpec {
    pub path: ImagePath,
    /// Any text a symlink may hold but a NUL, which no file system stores (it would end the
    /// target early: a different link than the recipe says).
    pub target: NoNul,
    #[serde(default)]
    pub owner: Owner,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Output {
    #[serde(default = "Output::default_formats")]
    pub formats: Vec<Format>,
}

impl Default for Output {
    fn default() -> Self {
        Self { formats: Self::default_formats() }
    }
}

impl Output {
    fn default_formats() -> Vec<Format> {
        vec![Format::RootfsTarZst]
    }
}

/// An output format of a candidate: `[output] formats` in the recipe, `--format` on the
/// command line, spelt the same in both (serde's and clap's names are one list, checked by
/// a test), so `--help` and a refusal list every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize, clap::ValueEnum)]
pub enum Format {
    /// An uncompressed tar of the root filesystem.
    #[serde(rename = "rootfs.tar")]
    #[value(name = "rootfs.tar")]
    RootfsTar,
    /// The rootfs tar, gzip-compressed.
    #[serde(rename = "rootfs.tar.gz")]
    #[value(name = "rootfs.tar.gz")]
    RootfsTarGz,
    /// The rootfs tar, xz-compressed.
    #[serde(rename = "rootfs.tar.xz")]
    #[value(name = "rootfs.tar.xz")]
    RootfsTarXz,
    /// The rootfs tar, zstd-compressed (the default).
    #[serde(rename = "rootfs.tar.zst")]
    #[value(name = "rootfs.tar.zst")]
    RootfsTarZst,
    /// An OCI image layout in `oci/`, one layer per recipe layer.
    #[serde(rename = "oci")]
    #[value(name = "oci")]
    Oci,
    /// The Proxmox VE template name for the zstd rootfs: `OS-RELEASE-NAME_VERSION_ARCH.tar.zst`.
    #[serde(rename = "proxmox")]
    #[value(name = "proxmox")]
    Proxmox,
    /// LXC's `lxc-create -t local` pair: `meta.tar.xz` and `lxc.rootfs.tar.xz`, a rootfs of
    /// its own holding LXC's `LXC_NAME` templates (see [`crate::lxc`]).
    #[serde(rename = "lxc")]
    #[value(name = "lxc")]
    Lxc,
    /// The LXD/Incus split image: `incus.meta.tar.xz` and `rootfs.tar.xz`.
    #[serde(rename = "incus")]
    #[value(name = "incus")]
    Incus,
}

impl Format {
    /// The file name the format is written to in the candidate directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::RootfsTar => "rootfs.tar",
            Format::RootfsTarGz => "rootfs.tar.gz",
            Format::RootfsTarXz => "rootfs.tar.xz",
            Format::RootfsTarZst => "rootfs.tar.zst",
            Format::Oci => "oci",
            Format::Proxmox => "proxmox",
            Format::Lxc => "lxc",
            Format::Incus => "incus",
        }
    }
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let bytes = crate::document::read_capped(path, MAX_RECIPE_BYTES)
            .map_err(|source| RecipeError::Read { path: path.to_owned(), source })?;
        Self::parse(path, bytes)
    }

    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, RecipeError> {
        let parse_error = |message: String| RecipeError::Parse { path: path.to_owned(), message };
        let text = std::str::from_utf8(&bytes).map_err(|e| parse_error(format!("not UTF-8: {e}")))?;
        // The TOML error already says "at line L, column C" and quotes the offending line;
        // trim its trailing newline so it sits well inside ours.
        let file: RecipeFile = toml::from_str(text).map_err(|e| parse_error(e.to_string().trim_end().to_owned()))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let recipe = Recipe {
            lxc: file.lxc,
            path: path.to_owned(),
            dir,
            bytes,
            image: file.image,
            layers: file.layers,
            output: file.output,
            oci: file.oci,
            archives: file.archives,
            configure: file.configure,
            python: file.python,
        };
        recipe.validate()?;
        Ok(recipe)
    }

    /// The rules that tie keys together (each key's own shape is its type's).
    ///
    /// Long by design: one rule after another, each with its own message, in the order the
    /// README documents the recipe; splitting them would scatter that list.
    fn validate(&self) -> Result<(), RecipeError> {
        let invalid = |message: String| RecipeError::Invalid { path: self.path.clone(), message };
        if self.layers.is_empty() {
            return Err(invalid("it has no `[[layer]]`: a candidate needs at least one".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for layer in &self.layers {
            if !names.insert(layer.name.as_str()) {
                return Err(invalid(format!("layer name `{}` is used twice", layer.name)));
            }
            for tarball in &layer.tarballs {
                Origin::parse(&tarball.url, &self.dir).map_err(|e| invalid(format!("layer `{}`: {e}", layer.name)))?;
            }
            if let Some(python) = &layer.python {
                if python.requirements.is_some() == python.lock.is_some() {
                    return Err(invalid(format!(
                        "layer `{}`: `python` takes exactly one of `requirements` (a pinned requirements file) and `lock` (a `pylock.toml`)",
                        layer.name
                    )));
                }
                if layer.has_packages() {
                    return Err(invalid(format!(
                        "layer `{}` has both Debian packages and `python`: install the interpreter in a layer below the python layer",
                        layer.name
                    )));
                }
            }
            if layer.has_packages() {
                let mixed = !(layer.files.is_empty()
                    && layer.tarballs.is_empty()
                    && layer.directories.is_empty()
                    && layer.symlinks.is_empty());
                if mixed {
                    return Err(invalid(format!(
                        "layer `{}` has both packages and files, tarballs, directories or symlinks: put them in two layers",
                        layer.name
                    )));
                }
                if self.archives.is_empty() {
                    return Err(invalid(format!(
                        "layer `{}` installs packages, but the recipe has no `[archive.NAME]`",
                        layer.name
                    )));
                }
                for text in &layer.packages {
                    crate::debian::packages::Requested::parse(text).map_err(|e| RecipeError::Package {
                        path: self.path.clone(),
                        layer: layer.name.clone(),
                        text: text.clone(),
                        source: Box::new(e),
                    })?;
                }
                for name in &layer.exclude {
                    name.parse::<crate::debian::packages::PackageName>()
                        .map_err(|e| invalid(format!("layer `{}`: exclude `{name}`: {e}", layer.name)))?;
                }
            } else if !layer.exclude.is_empty() {
                return Err(invalid(format!("layer `{}` has `exclude` but installs no packages", layer.name)));
            }
        }
        if self.configure.maintainer_scripts && !self.layers.iter().any(Layer::has_packages) {
            return Err(invalid(
                "`[configure] maintainer-scripts = true` needs a layer that installs Debian packages".into(),
            ));
        }
        if !self.configure.per_machine.is_empty() && !self.configure.maintainer_scripts {
            return Err(invalid(
                "`[[configure.per-machine]]` lists what maintainer scripts make: it needs `[configure] maintainer-scripts = true`"
                    .into(),
            ));
        }
        let mut actions = std::collections::BTreeSet::new();
        for entry in &self.configure.per_machine {
            if !actions.insert(entry.name.as_str()) {
                return Err(invalid(format!("`[[configure.per-machine]]` name `{}` is used twice", entry.name)));
            }
            if entry.paths.is_empty() {
                return Err(invalid(format!("`[[configure.per-machine]]` `{}` lists no `paths`", entry.name)));
            }
            if entry.first_boot.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err(invalid(format!(
                    "`[[configure.per-machine]]` `{}` has an empty `first-boot`: leave the key out instead",
                    entry.name
                )));
            }
        }
        if self.layers.iter().any(|l| l.name.as_str() == CONFIGURE_LAYER) {
            return Err(invalid(format!(
                "the layer name `{}` is reserved for what the maintainer scripts change",
                CONFIGURE_LAYER
            )));
        }
        if self.image.source_date_epoch.is_archive() && self.archives.is_empty() {
            return Err(invalid("`source-date-epoch = \"archive\"` needs an `[archive.NAME]`".into()));
        }
        for (name, archive) in &self.archives {
            Origin::parse(&archive.url, &self.dir).map_err(|e| invalid(format!("archive `{name}`: {e}")))?;
            if archive.components.is_empty() {
                return Err(invalid(format!("archive `{name}` lists no `components`")));
            }
            let plain =
                |s: &str| !s.is_empty() && !s.contains("..") && !s.starts_with('/') && !s.contains(char::is_whitespace);
            if !plain(&archive.suite) || !archive.components.iter().all(|c| plain(c)) {
                return Err(invalid(format!("archive `{name}`: `suite` and `components` must be plain names")));
            }
        }
        if self.output.formats.contains(&Format::Oci) && self.oci.tag.is_none() {
            // The version is the default `ref.name`; it allows a `~` that the OCI grammar does not.
            RefName::from_str(self.image.version.to_string().as_str()).map_err(|e| {
                invalid(format!(
                    "`[image] version` is the OCI tag when `[oci] tag` is not set, and {e}: set `[oci] tag`"
                ))
            })?;
        }
        if self.output.formats.is_empty() {
            return Err(invalid("`[output] formats` is empty: name at least one format".into()));
        }
        let mut formats = self.output.formats.clone();
        formats.sort();
        if formats.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("`[output] formats` names a format twice".into()));
        }
        Ok(())
    }

    /// The Proxmox VE template file name: `OS-RELEASE-NAME_VERSION_ARCH.tar.zst`.
    pub fn proxmox_name(&self) -> String {
        let i = &self.image;
        format!("{}-{}-{}_{}_{}.tar.zst", i.os, i.release, i.name, i.version, i.architecture)
    }

    /// The directory name of this candidate's outputs: `NAME_VERSION_ARCH`.
    pub fn dist_name(&self) -> String {
        format!("{}_{}_{}", self.image.name, self.image.version, self.image.architecture)
    }

    /// A path from the recipe, resolved against the recipe's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.dir.join(path)
    }
}

/// Where a tarball comes from. A location, not an identity: the lock pins the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `http://` or `https://`.
    Remote(String),
    /// `file://` or a path (relative to the recipe).
    Local(PathBuf),
}

impl Origin {
    pub fn parse(url: &str, recipe_dir: &Path) -> Result<Self, ValueError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(Origin::Remote(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(ValueError::RelativeFileUrl(url.to_owned()));
            }
            Ok(Origin::Local(PathBuf::from(path)))
        } else if url.contains("://") {
            Err(ValueError::UrlScheme(url.to_owned()))
        } else {
            Ok(Origin::Local(recipe_dir.join(url)))
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Origin::Remote(_))
    }

    /// A path below this location (an archive root): `rel` must already be checked to stay
    /// inside it (archive `Filename`s are, by the `Packages` parser).
    pub fn join(&self, rel: &str) -> Origin {
        match self {
            Origin::Remote(url) => Origin::Remote(format!("{}/{rel}", url.trim_end_matches('/'))),
            Origin::Local(path) => Origin::Local(path.join(rel)),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Remote(url) => f.write_str(url),
            Origin::Local(path) => write!(f, "{}", path.display()),
        }
    }
}

fn optional_hex_digest<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Digest>, D::Error> {
    let s = String::deserialize(deserializer)?;
    s.parse::<Digest>().map(Some).map_err(serde::de::Error::custom)
}

/// Displays a string newtype as its string.
macro_rules! display_as_str {
    ($ty:ty) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A name of an image or layer: it becomes part of file names, so it is kept plain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        plain_token(s, b"-.+").map(Name).ok_or_else(|| ValueError::Name(s.to_owned()))
    }
}
display_as_str!(Name);
serde_via_from_str!(Name);

/// So that maps keyed by name (`[archive.NAME]`) can be looked up with a `&str`.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `s` if it is 1 to 128 ASCII letters, digits and `extra` bytes, starting with a letter or
/// digit: safe in file names and folder names everywhere.
fn plain_token(s: &str, extra: &[u8]) -> Option<String> {
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    ok.then(|| s.to_owned())
}

/// The version of an image, as it appears in `NAME_VERSION_ARCH`, the OCI tag and LXD's
/// `serial`: a label the author chooses, not a Debian version.
///
/// Not [`crate::debian::version::Version`], on purpose: an image version is part of file and
/// folder names, so it has no epoch (`1:2.0` would put a `:` in them) and nothing else that is
/// unsafe there; and nothing compares two image versions, so dpkg's ordering (where `1.0` and
/// `1.0-0` are equal but name different folders) would only mislead. What the two share is the
/// spelling of the versions most people write (`1.0`, `2024.06+1`, `1.0~rc1`).
///
/// Ordered as text: only to list versions in a stable order, never to say which is newer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageVersion(String);

impl FromStr for ImageVersion {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        plain_token(s, b"-.+~").map(ImageVersion).ok_or_else(|| ValueError::ImageVersion(s.to_owned()))
    }
}
display_as_str!(ImageVersion);
serde_via_from_str!(ImageVersion);

/// An OCI `org.opencontainers.image.ref.name` (`[oci] tag`), in the image spec's grammar:
///
/// ```text
/// ref       ::= component ("/" component)*
/// component ::= alphanum (separator alphanum)*
/// alphanum  ::= [A-Za-z0-9]+
/// separator ::= [-._:@+] | "--"
/// ```
///
/// Tools name files and references after it (`oci:DIR:TAG`), so anything else is refused
/// where the recipe is read rather than by the first tool that meets it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefName(String);

/// The longest `ref.name` accepted: the spec sets none, but registries cap a tag at 128 bytes
/// and a repository path at 255, so a longer one could never be pushed anywhere.
pub const MAX_REF_NAME: usize = 255;

impl RefName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_valid(s: &str) -> bool {
        let component = |c: &str| {
            let bytes = c.as_bytes();
            let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
            if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
                return false;
            }
            // Each run of non-alphanumerics between two alphanumerics is one separator.
            c.split(|ch: char| ch.is_ascii_alphanumeric())
                .filter(|run| !run.is_empty())
                .all(|run| run == "--" || (run.len() == 1 && b"-._:@+".contains(&run.as_bytes()[0])))
        };
        s.len() <= MAX_REF_NAME && s.split('/').all(component)
    }
}

impl FromStr for RefName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if RefName::is_valid(s) {
            Ok(RefName(s.to_owned()))
        } else {
            Err(ValueError::RefName(s.escape_debug().to_string()))
        }
    }
}
display_as_str!(RefName);
serde_via_from_str!(RefName);

/// A snapshot service's URL for an archive, with `{timestamp}` where the time goes
/// (`snapshot = "http://HOST/archive/debian/{timestamp}/"`): the layout of Debian's snapshot
/// archive, `/archive/NAME/YYYYMMDDTHHMMSSZ/` holding `dists/…` and `pool/…` as the archive
/// did at that time. The time is the locked `InRelease`'s `Date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTemplate(String);

impl SnapshotTemplate {
    const PLACEHOLDER: &'static str = "{timestamp}";

    /// The archive root as of `date` (unix seconds), as an http(s) URL, file:// URL or path.
    pub fn at(&self, date: i64) -> String {
        self.0.replace(Self::PLACEHOLDER, &snapshot_timestamp(date))
    }
}

/// `YYYYMMDDTHHMMSSZ` (UTC), the time stamp a snapshot archive's URLs take.
pub fn snapshot_timestamp(date: i64) -> String {
    crate::document::rfc3339(date.max(0) as u64).replace(['-', ':'], "")
}

impl FromStr for SnapshotTemplate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        // The scheme is checked as a URL `Origin::parse` takes; a relative path is resolved
        // against the recipe's folder when it is used.
        let url_like = Origin::parse(&s.replace(Self::PLACEHOLDER, "0"), Path::new("")).is_ok();
        if s.matches(Self::PLACEHOLDER).count() == 1 && url_like && !s.contains('\0') {
            Ok(SnapshotTemplate(s.to_owned()))
        } else {
            Err(ValueError::SnapshotTemplate(s.escape_debug().to_string()))
        }
    }
}
display_as_str!(SnapshotTemplate);
serde_via_from_str!(SnapshotTemplate);

/// Text that holds no NUL byte: what the OCI config's strings and a symlink's target become
/// in C strings (a runtime's `execve`, `symlink(2)`), where a NUL would silently cut them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoNul(String);

impl NoNul {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NoNul {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s.contains('\0') {
            return Err(ValueError::Nul(s.escape_debug().to_string()));
        }
        Ok(NoNul(s.to_owned()))
    }
}
display_as_str!(NoNul);
serde_via_from_str!(NoNul);

impl AsRef<[u8]> for NoNul {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// One `[oci] env` entry, `KEY=VALUE`: the key non-empty, without `=`, whitespace or control
/// characters (a runtime splits at the first `=`; anything else in a key is a name no shell
/// can use), the value without NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar(String);

impl EnvVar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EnvVar {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::EnvVar(s.escape_debug().to_string());
        let (key, value) = s.split_once('=').ok_or_else(bad)?;
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) || value.contains('\0') {
            return Err(bad());
        }
        Ok(EnvVar(s.to_owned()))
    }
}
display_as_str!(EnvVar);
serde_via_from_str!(EnvVar);

/// Permission bits, setuid, setgid and sticky included (`0o7777` at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mode(pub u32);

impl Mode {
    pub fn directory() -> Self {
        Mode(0o755)
    }
}

impl FromStr for Mode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o7777 && !s.is_empty() => Ok(Mode(m)),
            _ => Err(ValueError::Mode(s.to_owned())),
        }
    }
}
serde_via_from_str!(Mode, deserialize);

/// A numeric `uid:gid`. Names are never used: they would be looked up on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl FromStr for Owner {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let parse = || -> Option<Owner> {
            let (u, g) = s.split_once(':')?;
            Some(Owner { uid: u.parse().ok()?, gid: g.parse().ok()? })
        };
        parse().ok_or_else(|| ValueError::Owner(s.to_owned()))
    }
}
serde_via_from_str!(Owner, deserialize);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// An absolute path inside the image, normalised: no `.`, no empty components, no `..`.
/// Stored without the leading `/`; the root is the empty path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ImagePath(String);

impl ImagePath {
    /// The path relative to the image root (`etc/passwd`; `` for the root).
    pub fn as_rel(&self) -> &str {
        &self.0
    }

    /// Normalises a relative path from an archive or a walk: `.` and empty components are
    /// dropped, and a `..` is refused rather than resolved, since it could only be meant to
    /// climb somewhere it should not.
    pub fn from_rel(rel: &str) -> Result<Self, ValueError> {
        let mut out = String::with_capacity(rel.len());
        for component in rel.split('/') {
            match component {
                "" | "." => {}
                ".." => return Err(ValueError::ClimbingPath(rel.to_owned())),
                c => {
                    if c.contains('\0') {
                        return Err(ValueError::NulInPath(rel.to_owned()));
                    }
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(c);
                }
            }
        }
        Ok(ImagePath(out))
    }

    pub fn join(&self, rel: &ImagePath) -> ImagePath {
        match (self.0.is_empty(), rel.0.is_empty()) {
            (true, _) => rel.clone(),
            (_, true) => self.clone(),
            _ => ImagePath(format!("{}/{}", self.0, rel.0)),
        }
    }
}

impl FromStr for ImagePath {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if !s.starts_with('/') {
            return Err(ValueError::RelativeImagePath(s.to_owned()));
        }
        ImagePath::from_rel(s)
    }
}
serde_via_from_str!(ImagePath);

/// A path in the image where `*` matches any part of one name (`/etc/ssh/ssh_host_*_key`).
/// Kept relative to the root, like [`ImagePath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathPattern(String);

impl PathPattern {
    /// Without the leading `/`.
    pub fn as_rel(&self) -> &str {
        &self.0
    }
}

impl FromStr for PathPattern {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let rel = s.strip_prefix('/').ok_or_else(|| ValueError::RelativeImagePath(s.to_owned()))?;
        let components: Vec<&str> = rel.split('/').collect();
        if rel.is_empty() || components.iter().any(|c| c.is_empty() || *c == "." || *c == ".." || *c == "*") {
            return Err(ValueError::PathPattern(s.to_owned()));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(ValueError::ControlInPath(s.escape_debug().to_string()));
        }
        Ok(PathPattern(rel.to_owned()))
    }
}
serde_via_from_str!(PathPattern);

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[image]
name = "demo"
version = "1.0"
architecture = "amd64"
os = "debian"
release = "bookworm"
source-date-epoch = 1700000000

[[layer]]
name = "base"
directories = [{ path = "/srv", mode = "0750" }]
tarballs = [{ url = "https://example.invalid/a.tar.gz", sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", to = "/opt/a", strip-components = 1 }]
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(Path::new("recipes/demo.toml"), text.as_bytes().to_vec())
    }

    #[test]
    fn parses_a_minimal_recipe_with_defaults() {
        let recipe = parse(MINIMAL).unwrap();
        assert_eq!(recipe.dist_name(), "demo_1.0_amd64");
        assert_eq!(recipe.output.formats, vec![Format::RootfsTarZst]);
        let layer = &recipe.layers[0];
        assert_eq!(layer.directories[0].mode, Mode(0o750));
        assert_eq!(layer.directories[0].owner, Owner { uid: 0, gid: 0 });
        assert_eq!(layer.tarballs[0].to.as_rel(), "opt/a");
        assert_eq!(recipe.dir, Path::new("recipes"));
        // A tarball's pin as the lockfile writes digests, `sha256:` first, is the same pin.
        let prefixed = parse(&MINIMAL.replace("sha256 = \"ba78", "sha256 = \"sha256:ba78")).unwrap();
        assert_eq!(prefixed.layers[0].tarballs[0].sha256, layer.tarballs[0].sha256);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("release = \"bookworm\"", "release = \"bookworm\"\ncolour = \"blue\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("recipes/demo.toml"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, culprit) in [
            ("mode = \"0750\"", "mode = \"0980\"", "0980"),
            ("to = \"/opt/a\"", "to = \"opt/a\"", "opt/a"),
            ("to = \"/opt/a\"", "to = \"/opt/../a\"", ".."),
            ("name = \"demo\"", "name = \"de mo\"", "de mo"),
            ("sha256 = \"ba78", "sha256 = \"zz78", "zz78"),
            ("sha256 = \"ba78", "sha256 = \"md5:ba78", "md5"),
            ("https://example.invalid", "ftp://example.invalid", "ftp://"),
        ] {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(culprit), "{culprit}: {err}");
        }
    }

    #[test]
    fn image_paths_normalise() {
        assert_eq!("/a//b/./c/".parse::<ImagePath>().unwrap().as_rel(), "a/b/c");
        assert_eq!("/".parse::<ImagePath>().unwrap().as_rel(), "");
        assert!(ImagePath::from_rel("a/../../b").is_err());
        assert_eq!(ImagePath::from_rel("./x/y").unwrap().join(&ImagePath::default()).as_rel(), "x/y");
    }

    #[test]
    fn the_image_architecture_is_debian_s_and_concrete() {
        let recipe = parse(
            &MINIMAL
                .replace("architecture = \"amd64\"", "architecture = \"arm64\"\nforeign-architectures = [\"i386\"]"),
        )
        .unwrap();
        assert_eq!(recipe.image.architecture, "arm64".parse::<Architecture>().unwrap());
        assert_eq!(recipe.image.foreign_architectures, ["i386".parse::<Architecture>().unwrap()]);
        for (to, culprit, line) in [
            ("architecture = \"all\"", "`all` is not a concrete architecture", 5),
            ("architecture = \"any\"", "invalid architecture `any`", 5),
            ("architecture = \"linux-any\"", "invalid architecture `linux-any`", 5),
            ("architecture = \"AMD64\"", "invalid architecture `AMD64`", 5),
            ("architecture = \"amd64\"\nforeign-architectures = [\"i386\", \"all\"]", "`all` is not a concrete", 6),
        ] {
            let err = parse(&MINIMAL.replace("architecture = \"amd64\"", to)).unwrap_err().to_string();
            assert!(err.contains(culprit) && err.contains(&format!("line {line}")), "{to}: {err}");
        }
    }

    #[test]
    fn image_versions_are_plain_labels_not_debian_versions() {
        for good in ["1.0", "2024.06+1", "1.0~rc1", "1.0-2"] {
            assert_eq!(good.parse::<ImageVersion>().unwrap().to_string(), good);
        }
        // An epoch would put a `:` into file names; a leading `-` or `.` would hide them.
        for bad in ["1:2.0", "", "-1", ".1", "1 0", "1/0"] {
            assert_eq!(bad.parse::<ImageVersion>(), Err(ValueError::ImageVersion(bad.to_owned())), "{bad}");
        }
        let err = parse(&MINIMAL.replace("version = \"1.0\"", "version = \"1:1.0\"")).unwrap_err().to_string();
        assert!(err.contains("`1:1.0` is not a valid version") && err.contains("line 4"), "{err}");
    }

    #[test]
    fn source_date_epoch_is_fixed_or_settled_from_the_archive() {
        assert_eq!(parse(MINIMAL).unwrap().image.source_date_epoch, SourceDateEpoch::Fixed(1700000000));
        assert_eq!(SourceDateEpoch::Fixed(7).seconds(), 7);
        let mut fixed = SourceDateEpoch::Fixed(7);
        fixed.settle(9);
        assert_eq!(fixed.seconds(), 7, "a fixed epoch is not the archive's");
        let mut archive = SourceDateEpoch::Archive(None);
        archive.settle(9);
        assert_eq!(archive, SourceDateEpoch::Archive(Some(9)));
        assert_eq!(archive.seconds(), 9);
        // The latest time a tar header holds is the latest epoch; one second more is refused
        // with its line (it used to be clamped in every header, silently).
        let max = MINIMAL.replace("1700000000", &MAX_SOURCE_DATE_EPOCH.to_string());
        assert_eq!(parse(&max).unwrap().image.source_date_epoch, SourceDateEpoch::Fixed(MAX_SOURCE_DATE_EPOCH));
        for late in [MAX_SOURCE_DATE_EPOCH + 1, i64::MAX as u64] {
            let err = parse(&MINIMAL.replace("1700000000", &late.to_string())).unwrap_err().to_string();
            assert!(err.contains(&format!("{late} is past 8589934591")) && err.contains("line 8"), "{err}");
        }
        for bad in ["\"yesterday\"", "-1", "1.5"] {
            let err = parse(&MINIMAL.replace("1700000000", bad)).unwrap_err().to_string();
            assert!(
                err.contains(bad) && err.contains("expected seconds since the epoch, or \"archive\""),
                "{bad}: {err}"
            );
        }
        // `"archive"` needs an archive to take the date from.
        let err = parse(&MINIMAL.replace("1700000000", "\"archive\"")).unwrap_err().to_string();
        assert!(err.contains("needs an `[archive.NAME]`"), "{err}");
    }

    #[test]
    #[should_panic(expected = "before the lock stage settled it")]
    fn an_unsettled_archive_epoch_cannot_be_read() {
        SourceDateEpoch::Archive(None).seconds();
    }

    #[test]
    fn value_parsers_refuse_with_typed_errors() {
        assert_eq!("de mo".parse::<Name>(), Err(ValueError::Name("de mo".into())));
        assert_eq!("-x".parse::<Name>(), Err(ValueError::Name("-x".into())));
        assert_eq!("a".repeat(129).parse::<Name>(), Err(ValueError::Name("a".repeat(129))));
        assert_eq!("0644".parse::<Mode>(), Ok(Mode(0o644)));
        for bad in ["", "0980", "17777", "rwx"] {
            assert_eq!(bad.parse::<Mode>(), Err(ValueError::Mode(bad.into())), "{bad}");
        }
        for bad in ["root:root", "0", "0:", ":0", "-1:0"] {
            assert_eq!(bad.parse::<Owner>(), Err(ValueError::Owner(bad.into())), "{bad}");
        }
        assert_eq!("etc".parse::<ImagePath>(), Err(ValueError::RelativeImagePath("etc".into())));
        assert_eq!("/a/../b".parse::<ImagePath>(), Err(ValueError::ClimbingPath("/a/../b".into())));
        assert_eq!(ImagePath::from_rel("a\0b"), Err(ValueError::NulInPath("a\0b".into())));
        let dir = Path::new("/r");
        assert_eq!(Origin::parse("a.tar", dir), Ok(Origin::Local(PathBuf::from("/r/a.tar"))));
        assert_eq!(Origin::parse("file:///a.tar", dir), Ok(Origin::Local(PathBuf::from("/a.tar"))));
        assert_eq!(Origin::parse("file://a.tar", dir), Err(ValueError::RelativeFileUrl("file://a.tar".into())));
        assert_eq!(Origin::parse("ftp://h/a.tar", dir), Err(ValueError::UrlScheme("ftp://h/a.tar".into())));
        // The messages quote the culprit, as the recipe's error shows them.
        assert_eq!(
            ValueError::Owner("root:root".into()).to_string(),
            "`root:root` is not a numeric owner like `0:0` (names are not looked up)"
        );
    }

    #[test]
    fn a_format_is_spelt_alike_in_recipes_on_the_command_line_and_on_disk() {
        use clap::ValueEnum;
        for format in Format::value_variants() {
            let cli = format.to_possible_value().expect("no format is hidden");
            let serde = serde_json::to_value(format).unwrap();
            assert_eq!(serde.as_str(), Some(cli.get_name()), "{format:?}");
            assert_eq!(format.file_name(), cli.get_name(), "{format:?}");
            assert_eq!(Format::from_str(cli.get_name(), false), Ok(*format));
        }
        assert_eq!(Format::value_variants().len(), 8);
        assert!(Format::from_str("rootfs.tar.bz2", false).is_err());
        // Case matters, as in the recipe.
        assert!(Format::from_str("OCI", false).is_err());
    }

    #[test]
    fn per_machine_entries_parse_strictly() {
        let configured = format!(
            "{MINIMAL}\n[archive.d]\nurl = \"https://example.invalid/debian\"\nsuite = \"bookworm\"\n\
             components = [\"main\"]\nkeyring = \"k.gpg\"\n\n[[layer]]\nname = \"pkgs\"\npackages = [\"apt\"]\n\n\
             [configure]\nmaintainer-scripts = true\n"
        );
        let recipe = parse(&configured).unwrap();
        assert!(recipe.configure.guard && recipe.configure.per_machine.is_empty());
        let entry =
            "\n[[configure.per-machine]]\nname = \"tok\"\npaths = [\"/var/lib/x/*.key\"]\nfirst-boot = \"mk\"\n";
        let recipe = parse(&format!("{configured}guard = false\n{entry}")).unwrap();
        assert!(!recipe.configure.guard);
        let declared = &recipe.configure.per_machine[0];
        assert_eq!((declared.name.as_str(), declared.paths[0].as_rel()), ("tok", "var/lib/x/*.key"));
        assert_eq!(declared.paths[0].to_string(), "/var/lib/x/*.key");
        let line_of_colour = configured.lines().count() + 6;
        for (text, culprits) in [
            (format!("{configured}{entry}colour = 1\n"), vec!["colour".to_owned(), format!("line {line_of_colour}")]),
            (
                format!("{configured}{}", entry.replace("/var/lib/x/*.key", "var/x")),
                vec!["`var/x` is not an absolute path".into()],
            ),
            (
                format!("{configured}{}", entry.replace("/var/lib/x/*.key", "/var/../x")),
                vec!["`/var/../x` is not a plain path".into()],
            ),
            (format!("{configured}{}", entry.replace("/var/lib/x/*.key", "/var/*")), vec!["bare `*`".into()]),
            (format!("{configured}{entry}{entry}"), vec!["name `tok` is used twice".into()]),
            (
                format!("{configured}{}", entry.replace("\"mk\"", "\" \"")),
                vec!["`tok` has an empty `first-boot`".into()],
            ),
            (
                format!("{configured}{}", entry.replace("[\"/var/lib/x/*.key\"]", "[]")),
                vec!["`tok` lists no `paths`".into()],
            ),
            (
                format!("{}{entry}", configured.replace("maintainer-scripts = true", "")),
                vec!["needs `[configure] maintainer-scripts = true`".into()],
            ),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            for culprit in culprits {
                assert!(err.contains(&culprit), "{culprit:?} not in: {err}");
            }
        }
    }

    /// Hole 1 of #16: `os` and `release` made the Proxmox template's file name, unchecked, so
    /// `os = "/tmp/x"` or `release = "../../.."` wrote outside the output folder. Every string
    /// that reaches a file name or a C string is refused here, with its key's line quoted.
    #[test]
    fn strings_that_reach_file_names_are_refused_with_their_key_and_line() {
        for (from, to, key, culprit) in [
            ("os = \"debian\"", "os = \"/tmp/escape\"", "os = ", "`/tmp/escape` is not a valid name"),
            ("os = \"debian\"", "os = \"../../x\"", "os = ", "`../../x` is not a valid name"),
            ("release = \"bookworm\"", "release = \"../../..\"", "release = ", "`../../..` is not a valid name"),
            ("release = \"bookworm\"", "release = \"a/b\"", "release = ", "`a/b` is not a valid name"),
            ("release = \"bookworm\"", "release = \"\"", "release = ", "`` is not a valid name"),
            ("name = \"demo\"", "name = \"..\"", "name = ", "`..` is not a valid name"),
            ("version = \"1.0\"", "version = \"../1\"", "version = ", "`../1` is not a valid version"),
        ] {
            let text = MINIMAL.replace(from, to);
            let line = text.lines().position(|l| l == to).unwrap() + 1;
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(culprit) && err.contains(&format!("line {line}")) && err.contains(key), "{to}: {err}");
        }
        let with_oci = |section: &str| format!("{MINIMAL}\n[output]\nformats = [\"oci\"]\n\n[oci]\n{section}\n");
        for (section, culprit) in [
            ("tag = \"../x\"", "`../x` is not a valid OCI `ref.name`"),
            ("tag = \"/x\"", "`/x` is not a valid OCI `ref.name`"),
            ("tag = \"a b\"", "`a b` is not a valid OCI `ref.name`"),
            ("tag = \"a..b\"", "`a..b` is not a valid OCI `ref.name`"),
            ("tag = \"a-\"", "`a-` is not a valid OCI `ref.name`"),
            ("tag = \"\"", "`` is not a valid OCI `ref.name`"),
            ("env = [\"PATH\"]", "`PATH` is not an environment entry"),
            ("env = [\"=x\"]", "`=x` is not an environment entry"),
            ("env = [\"A B=x\"]", "`A B=x` is not an environment entry"),
            ("env = [\"A=x\\u0000y\"]", "`A=x\\0y` is not an environment entry"),
            ("cmd = [\"/bin/sh\\u0000x\"]", "`/bin/sh\\0x` contains a NUL byte"),
            ("working-dir = \"/a\\u0000\"", "`/a\\0` contains a NUL byte"),
        ] {
            let text = with_oci(section);
            let line = text.lines().position(|l| l == section).unwrap() + 1;
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(culprit) && err.contains(&format!("line {line}")), "{section}: {err}");
        }
        for good in ["1.0", "latest", "a/b:c@d+e", "x--y", "registry.local:5000/team/app"] {
            let recipe = parse(&with_oci(&format!("tag = \"{good}\"\nenv = [\"PATH=/bin\", \"EMPTY=\"]"))).unwrap();
            assert_eq!(recipe.oci.tag.unwrap().to_string(), good);
        }
        let tilde = with_oci("").replace("version = \"1.0\"", "version = \"1.0~rc1\"");
        let err = parse(&tilde).unwrap_err().to_string();
        assert!(err.contains("`[image] version` is the OCI tag") && err.contains("`1.0~rc1`"), "{err}");
        let text = format!("{MINIMAL}symlinks = [{{ path = \"/l\", target = \"a\\u0000b\" }}]\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`a\\0b` contains a NUL byte") && err.contains("line 14"), "{err}");
    }

    /// #16: recipe and lockfile reads were unbounded (`/dev/zero` was read until memory ran
    /// out). Both stop at their cap, naming the file and the cap.
    #[test]
    fn recipe_and_lockfile_reads_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        fs_err::write(&big, format!("{MINIMAL}#{}\n", "x".repeat(MAX_RECIPE_BYTES as usize))).unwrap();
        for path in [big.as_path(), Path::new("/dev/zero")] {
            let err = Recipe::load(path).unwrap_err();
            let source = std::error::Error::source(&err).unwrap().to_string();
            assert!(source.ends_with("is larger than the 1048576 bytes allowed"), "{source}");
        }
        let err = crate::lockfile::Lockfile::load(Path::new("/dev/zero")).unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "`/dev/zero` is larger than the 67108864 bytes allowed");
        let mut at_cap = format!("{MINIMAL}#");
        at_cap.push_str(&"x".repeat(MAX_RECIPE_BYTES as usize - at_cap.len() - 1));
        at_cap.push('\n');
        fs_err::write(&big, at_cap).unwrap();
        Recipe::load(&big).unwrap();
    }

    #[test]
    fn owners_are_numeric() {
        assert_eq!("1000:50".parse::<Owner>().unwrap(), Owner { uid: 1000, gid: 50 });
        assert!("root:root".parse::<Owner>().is_err());
    }

    #[test]
    fn snapshot_templates_hold_one_timestamp_in_a_url() {
        let t: SnapshotTemplate = "http://127.0.0.1:8080/archive/debian/{timestamp}/".parse().unwrap();
        // 2023-11-14 22:13:20 UTC.
        assert_eq!(t.at(1_700_000_000), "http://127.0.0.1:8080/archive/debian/20231114T221320Z/");
        assert_eq!(snapshot_timestamp(0), "19700101T000000Z");
        for bad in ["http://h/archive/debian/", "http://h/{timestamp}/{timestamp}", "ftp://h/{timestamp}/"] {
            let err = bad.parse::<SnapshotTemplate>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{bad}` is not a snapshot URL")), "{err}");
        }
        assert!("../snapshot/{timestamp}".parse::<SnapshotTemplate>().is_ok());
    }
}
