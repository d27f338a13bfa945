//! The typed model of a `Packages` index entry and of package relationships, read the way
//! apt and dpkg read them from a binary archive.
//!
//! [`control`](super::control) hands us stanzas of strings; this module turns one stanza into
//! a [`Package`] whose fields the resolver can trust: a [`PackageName`], a
//! [`Version`], an [`Architecture`], a [`Digest`], and the
//! relationship fields as [`Relations`]. Everything is checked once, here, so that no later
//! stage re-parses a `Depends` string or carries a sha256 as text.
//!
//! Relationship syntax is deb-control(5) / Debian Policy §7.1:
//! `name[:arch] [(op version)]`, alternatives separated by `|`, the list by `,`, whitespace
//! (continuation newlines included) allowed around every token. Choices where readers differ:
//!
//! * The deprecated operators `<` and `>` are read as dpkg and apt read them: `<` means `<=`
//!   and `>` means `>=` (not the strict comparisons their look suggests). They are kept as
//!   [`Operator::EarlierEqual`] / [`Operator::LaterEqual`] and print in the modern form.
//! * Architecture restriction lists (`[amd64 !i386]`) and build profiles (`<!nocheck>`) are
//!   syntax of *source* package build relationships only. apt parses binary `Packages`
//!   relationships with both turned off, so to apt such text in a `Packages` file is a parse
//!   error; we refuse it too, with an error that says which it is, rather than keep a
//!   restriction apt would never honour.
//! * `Provides` accepts only exact (`=`) versions and no alternatives, as dpkg requires.
//! * Empty list items (`a, , b`, a trailing comma) are refused, as dpkg refuses them; an
//!   entirely empty field (`Depends:` with nothing after it) is an empty list.
//! * An arch qualifier (`:any`, `:native`, `:amd64`) is kept as written; what it means for
//!   Multi-Arch resolution is the resolver's business.

use std::fmt;
use std::str::FromStr;

use super::control::{ControlError, Dialect, Stanza, Stanzas};
use super::version::{ParseVersionError, Version};
use crate::digest::{Digest, ParseDigestError};

/// A binary package name: lowercase ASCII letters, digits and `+-.`, at least two characters,
/// starting with a letter or digit (Debian Policy §5.6.7).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

/// Why a string is not a package name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid package name `{name}`: {reason}")]
pub struct ParsePackageNameError {
    pub name: String,
    pub reason: &'static str,
}

impl PackageName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PackageName {
    type Err = ParsePackageNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ParsePackageNameError { name: s.to_owned(), reason };
        if s.len() < 2 {
            return Err(bad("a package name has at least two characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(bad("a package name starts with a lowercase letter or a digit"));
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)) {
            return Err(bad("only lowercase ASCII letters, digits and `+-.` are allowed"));
        }
        Ok(PackageName(s.to_owned()))
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A concrete Debian architecture (`amd64`, `arm64`, …) or `all`, the architecture of
/// packages that run everywhere.
///
/// Names are lowercase ASCII letters, digits and `-`, starting with a letter or digit. That is
/// stricter than dpkg (which also takes uppercase) and matches every architecture Debian
/// defines. Wildcards (`any`, `linux-any`, `any-amd64`) are refused: they belong to source
/// packages, never to a binary package's `Architecture`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Architecture(String);

/// Why a string is not an architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid architecture `{name}`: {reason}")]
pub struct ParseArchitectureError {
    pub name: String,
    pub reason: &'static str,
}

impl Architecture {
    /// `all`: architecture-independent.
    pub fn all() -> Self {
        Architecture("all".to_owned())
    }

    pub fn is_all(&self) -> bool {
        self.0 == "all"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Architecture {
    type Err = ParseArchitectureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ParseArchitectureError { name: s.to_owned(), reason };
        if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(bad("an architecture starts with a lowercase letter or a digit"));
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad("only lowercase ASCII letters, digits and `-` are allowed"));
        }
        if s.split('-').any(|part| part == "any") {
            return Err(bad("it is a wildcard, which only source packages use"));
        }
        Ok(Architecture(s.to_owned()))
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Serde goes through `FromStr`, so a deserialised name or architecture is a checked one.
crate::serde_str::serde_via_from_str!(PackageName);
crate::serde_str::serde_via_from_str!(Architecture);

/// The `:qualifier` after a package name in a relationship.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArchQualifier {
    /// `:any`: a package of any architecture, if it is `Multi-Arch: allowed`.
    Any,
    /// `:native`: the build architecture (build relationships only, kept for completeness).
    Native,
    /// `:amd64` and the like: that architecture only.
    Arch(Architecture),
}

impl FromStr for ArchQualifier {
    type Err = ParseArchitectureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "any" => ArchQualifier::Any,
            "native" => ArchQualifier::Native,
            _ => ArchQualifier::Arch(s.parse()?),
        })
    }
}

impl fmt::Display for ArchQualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchQualifier::Any => f.write_str("any"),
            ArchQualifier::Native => f.write_str("native"),
            ArchQualifier::Arch(arch) => arch.fmt(f),
        }
    }
}

/// A version relation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `<<`
    Earlier,
    /// `<=`, and the deprecated `<`, which dpkg and apt read as `<=`.
    EarlierEqual,
    /// `=`
    Equal,
    /// `>=`, and the deprecated `>`, which dpkg and apt read as `>=`.
    LaterEqual,
    /// `>>`
    Later,
}

impl Operator {
    /// The modern spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Earlier => "<<",
            Operator::EarlierEqual => "<=",
            Operator::Equal => "=",
            Operator::LaterEqual => ">=",
            Operator::Later => ">>",
        }
    }

    /// Splits the operator off the start of `s`, longest match first so that `<<` is not
    /// read as `<` followed by `<`.
    fn split(s: &str) -> Option<(Operator, &str)> {
        const OPERATORS: [(&str, Operator); 7] = [
            ("<<", Operator::Earlier),
            ("<=", Operator::EarlierEqual),
            (">=", Operator::LaterEqual),
            (">>", Operator::Later),
            ("=", Operator::Equal),
            // Deprecated: dpkg warns and reads them as `<=` / `>=` (see the module docs).
            ("<", Operator::EarlierEqual),
            (">", Operator::LaterEqual),
        ];
        OPERATORS.iter().find_map(|&(text, op)| s.strip_prefix(text).map(|rest| (op, rest)))
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(op version)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionConstraint {
    pub op: Operator,
    pub version: Version,
}

impl VersionConstraint {
    /// Whether `candidate` meets the constraint, by dpkg's version ordering (epochs, `~`).
    pub fn satisfied_by(&self, candidate: &Version) -> bool {
        let wanted = &self.version;
        match self.op {
            Operator::Earlier => candidate < wanted,
            Operator::EarlierEqual => candidate <= wanted,
            Operator::Equal => candidate == wanted,
            Operator::LaterEqual => candidate >= wanted,
            Operator::Later => candidate > wanted,
        }
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

/// One package reference: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    pub name: PackageName,
    pub arch: Option<ArchQualifier>,
    pub version: Option<VersionConstraint>,
}

impl Relation {
    /// Whether a package at `version` meets this relation's version constraint (true when
    /// there is none). The name and architecture are for the caller to have matched.
    pub fn version_satisfied_by(&self, version: &Version) -> bool {
        self.version.as_ref().is_none_or(|c| c.satisfied_by(version))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some(constraint) = &self.version {
            write!(f, " ({constraint})")?;
        }
        Ok(())
    }
}

/// `a | b | c`: met when any one of them is. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alternatives(Vec<Relation>);

impl Alternatives {
    pub fn iter(&self) -> std::slice::Iter<'_, Relation> {
        self.0.iter()
    }

    /// The first alternative, the one apt prefers when none is installed.
    pub fn first(&self) -> &Relation {
        &self.0[0]
    }

    pub fn as_slice(&self) -> &[Relation] {
        &self.0
    }
}

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, relation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            relation.fmt(f)?;
        }
        Ok(())
    }
}

/// A relationship field: `a, b | c, d (>= 1)`, every item of which must be met.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Relations(Vec<Alternatives>);

impl Relations {
    /// Parses the value of relationship field `field` (the name only goes into errors).
    pub fn parse(field: &str, text: &str) -> Result<Self, RelationError> {
        let items = list_items(field, text)?;
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            if item.split('|').any(|one| one.trim_matches(is_space).is_empty()) {
                return Err(error(field, item, RelationErrorKind::Empty));
            }
            // Sized exactly: `collect` would start at four relations, and nearly every item
            // has one; over a full archive's 63k entries the slack was ~100 MB.
            let mut alternatives = Vec::with_capacity(1 + item.bytes().filter(|&b| b == b'|').count());
            for one in item.split('|') {
                alternatives.push(parse_relation(field, one)?);
            }
            list.push(Alternatives(alternatives));
        }
        Ok(Relations(list))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Alternatives> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Alternatives] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Relations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alternatives) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            alternatives.fmt(f)?;
        }
        Ok(())
    }
}

/// One `Provides` item: a virtual package, possibly at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provide {
    pub name: PackageName,
    pub arch: Option<ArchQualifier>,
    pub version: Option<Version>,
}

impl Provide {
    /// Parses a `Provides` value: a comma-separated list, no alternatives, `=` versions only.
    pub fn parse_list(field: &str, text: &str) -> Result<Vec<Provide>, RelationError> {
        list_items(field, text)?
            .into_iter()
            .map(|item| {
                if item.contains('|') {
                    return Err(error(field, item, RelationErrorKind::ProvidesAlternatives));
                }
                let relation = parse_relation(field, item)?;
                let version = match relation.version {
                    None => None,
                    Some(VersionConstraint { op: Operator::Equal, version }) => Some(version),
                    Some(VersionConstraint { op, .. }) => {
                        return Err(error(field, item, RelationErrorKind::ProvidesOperator(op)));
                    }
                };
                Ok(Provide { name: relation.name, arch: relation.arch, version })
            })
            .collect()
    }

    /// Whether this provided name meets `relation`, as apt and dpkg decide it: the names
    /// match, and either the relation is unversioned or the provide has a version that meets
    /// the constraint. An unversioned provide never meets a versioned relation.
    pub fn satisfies(&self, relation: &Relation) -> bool {
        self.name == relation.name
            && match (&relation.version, &self.version) {
                (None, _) => true,
                (Some(constraint), Some(version)) => constraint.satisfied_by(version),
                (Some(_), None) => false,
            }
    }
}

impl fmt::Display for Provide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some(version) = &self.version {
            write!(f, " (= {version})")?;
        }
        Ok(())
    }
}

/// Why a relationship field could not be parsed: the field, the offending text, the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}` relation `{text}`: {kind}")]
pub struct RelationError {
    pub field: String,
    pub text: String,
    pub kind: RelationErrorKind,
}

/// A version in a relation is shown inline (`{kind}`), not as a source, so its hint is
/// passed on here.
impl crate::error::Hint for RelationError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match &self.kind {
            RelationErrorKind::Version(e) => crate::error::Hint::hints(e),
            _ => Vec::new(),
        }
    }
}

/// What was wrong in a [`RelationError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationErrorKind {
    #[error("an empty item (a doubled or trailing `,` or `|`)")]
    Empty,
    #[error("{0}")]
    Name(ParsePackageNameError),
    #[error("bad architecture qualifier: {0}")]
    Arch(ParseArchitectureError),
    #[error("`(` without its closing `)`")]
    UnclosedParen,
    #[error("expected one of `<<`, `<=`, `=`, `>=`, `>>` after `(`")]
    NoOperator,
    #[error("no version after the operator")]
    NoVersion,
    #[error("{0}")]
    Version(ParseVersionError),
    #[error(
        "an architecture restriction list `[…]`; those belong to source package build relationships, and apt \
         refuses them in a binary `Packages` index"
    )]
    ArchRestriction,
    #[error(
        "a build profile `<…>`; those belong to source package build relationships, and apt refuses them in a \
         binary `Packages` index"
    )]
    BuildProfile,
    #[error("unexpected text after the relation")]
    Trailing,
    #[error("`Provides` allows only exact versions (`=`), not `{0}`")]
    ProvidesOperator(Operator),
    #[error("`Provides` does not allow alternatives (`|`)")]
    ProvidesAlternatives,
}

fn error(field: &str, text: &str, kind: RelationErrorKind) -> RelationError {
    RelationError { field: field.to_owned(), text: text.trim_matches(is_space).to_owned(), kind }
}

/// Whitespace between relationship tokens: a multi-line value also holds the newlines and
/// leading spaces of its continuation lines.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n')
}

/// The comma-separated items of a field; an all-blank field has none.
fn list_items<'t>(field: &str, text: &'t str) -> Result<Vec<&'t str>, RelationError> {
    if text.trim_matches(is_space).is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = text.split(',').collect();
    if items.iter().any(|item| item.trim_matches(is_space).is_empty()) {
        return Err(error(field, text, RelationErrorKind::Empty));
    }
    Ok(items)
}

/// Parses one `name[:arch] [(op version)]`, surrounding whitespace allowed.
fn parse_relation(field: &str, text: &str) -> Result<Relation, RelationError> {
    let fail = |kind| Err(error(field, text, kind));
    let s = text.trim_matches(is_space);
    if s.is_empty() {
        return fail(RelationErrorKind::Empty);
    }
    let end = s.find(|c: char| is_space(c) || matches!(c, '(' | '[' | '<')).unwrap_or(s.len());
    let (token, mut rest) = s.split_at(end);
    let (name, arch) = match token.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (token, None),
    };
    let name = match name.parse::<PackageName>() {
        Ok(name) => name,
        Err(e) => return fail(RelationErrorKind::Name(e)),
    };
    let arch = match arch.map(str::parse::<ArchQualifier>).transpose() {
        Ok(arch) => arch,
        Err(e) => return fail(RelationErrorKind::Arch(e)),
    };
    rest = rest.trim_start_matches(is_space);
    let mut version = None;
    if let Some(inner) = rest.strip_prefix('(') {
        let Some((inner, after)) = inner.split_once(')') else {
            return fail(RelationErrorKind::UnclosedParen);
        };
        let Some((op, v)) = Operator::split(inner.trim_start_matches(is_space)) else {
            return fail(RelationErrorKind::NoOperator);
        };
        let v = v.trim_matches(is_space);
        if v.is_empty() {
            return fail(RelationErrorKind::NoVersion);
        }
        // A space inside the version is refused by `Version` itself.
        match v.parse::<Version>() {
            Ok(v) => version = Some(VersionConstraint { op, version: v }),
            Err(e) => return fail(RelationErrorKind::Version(e)),
        }
        rest = after.trim_start_matches(is_space);
    }
    match rest.chars().next() {
        None => Ok(Relation { name, arch, version }),
        Some('[') => fail(RelationErrorKind::ArchRestriction),
        Some('<') => fail(RelationErrorKind::BuildProfile),
        Some(_) => fail(RelationErrorKind::Trailing),
    }
}

/// `Multi-Arch`: how a package may be co-installed with and satisfy other architectures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MultiArch {
    /// No `Multi-Arch` field, or `no`.
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// `Priority`. `extra` is deprecated (folded into `optional` by Policy 4.0.1) but still in
/// Debian 12's index, so it is kept as its own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Required,
    Important,
    Standard,
    Optional,
    Extra,
}

/// `Source: name` or `Source: name (version)`, when the source differs from the binary's
/// name or version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub name: PackageName,
    pub version: Option<Version>,
}

/// One entry of a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: PackageName,
    pub version: Version,
    pub architecture: Architecture,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: Option<Priority>,
    pub section: Option<String>,
    /// The pool path relative to the archive root, checked to stay under it.
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
    /// `Installed-Size`, in KiB.
    pub installed_size: Option<u64>,
    /// `Source`, when present; [`Package::source_name`] applies the default.
    pub source: Option<Source>,
    /// The synopsis: the first line of `Description`.
    pub description: Option<String>,
    pub depends: Relations,
    pub pre_depends: Relations,
    pub recommends: Relations,
    pub suggests: Relations,
    pub conflicts: Relations,
    pub breaks: Relations,
    pub replaces: Relations,
    pub provides: Vec<Provide>,
}

/// Why a stanza is not a valid `Packages` entry. Every message names the package (or, when
/// its `Package` field is missing, the stanza's line) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("the stanza on line {line} has no `Package` field")]
    NoPackage { line: usize },
    #[error("the stanza on line {line} has an invalid `Package` field")]
    BadName {
        line: usize,
        #[source]
        source: ParsePackageNameError,
    },
    #[error("package `{package}` (line {line}) has no `{field}` field")]
    MissingField { package: String, line: usize, field: &'static str },
    #[error("package `{package}` (line {line}): invalid `{field}` field")]
    Invalid {
        package: String,
        line: usize,
        field: &'static str,
        // Boxed: a field error holds a version error, and would make every `Result` large.
        #[source]
        source: Box<FieldError>,
    },
}

/// What was wrong with one field of a [`Package`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error(transparent)]
    Version(#[from] ParseVersionError),
    #[error(transparent)]
    Architecture(#[from] ParseArchitectureError),
    #[error(transparent)]
    Name(#[from] ParsePackageNameError),
    #[error(transparent)]
    Relation(#[from] RelationError),
    #[error("`{0}` is not a sha256 digest (64 hex digits)")]
    Digest(String),
    #[error("`{0}` is not a whole number")]
    Number(String),
    #[error("`{value}` is not one of {expected}")]
    Word { value: String, expected: &'static str },
    #[error("`{0}` is not a relative path inside the archive")]
    Filename(String),
    #[error("`{0}` is not `name` or `name (version)`")]
    Source(String),
}

impl From<ParseDigestError> for FieldError {
    fn from(e: ParseDigestError) -> Self {
        FieldError::Digest(match e {
            ParseDigestError::Malformed(s) | ParseDigestError::Algorithm(s) => s,
        })
    }
}

impl Package {
    /// Reads one `Packages` stanza. Required: `Package`, `Version`, `Architecture`,
    /// `Filename`, `Size`, `SHA256` — what it takes to fetch and verify the file. The rest is
    /// optional, as apt treats it.
    pub fn from_stanza(stanza: &Stanza<'_>) -> Result<Package, PackageError> {
        let line = stanza.line();
        let name = stanza.get("Package").ok_or(PackageError::NoPackage { line })?;
        let name = name.parse::<PackageName>().map_err(|source| PackageError::BadName { line, source })?;
        let r = FieldReader { stanza, package: name.as_str(), line };
        let relations = |field| Ok(r.optional(field, |v| Relations::parse(field, v))?.unwrap_or_default());
        let package = Package {
            version: r.required("Version", |v| v.parse::<Version>())?,
            architecture: r.required("Architecture", |v| v.parse::<Architecture>())?,
            multi_arch: r.optional("Multi-Arch", multi_arch)?.unwrap_or_default(),
            essential: r.optional("Essential", yes_no)?.unwrap_or(false),
            priority: r.optional("Priority", priority)?,
            section: stanza.get("Section").map(str::to_owned),
            filename: r.required("Filename", |v| check_filename(v).map(|()| v.to_owned()))?,
            size: r.required("Size", number)?,
            sha256: r.required("SHA256", Digest::from_hex)?,
            installed_size: r.optional("Installed-Size", number)?,
            source: r.optional("Source", source)?,
            description: stanza.get("Description").and_then(|d| d.split('\n').next()).map(str::to_owned),
            depends: relations("Depends")?,
            pre_depends: relations("Pre-Depends")?,
            recommends: relations("Recommends")?,
            suggests: relations("Suggests")?,
            conflicts: relations("Conflicts")?,
            breaks: relations("Breaks")?,
            replaces: relations("Replaces")?,
            provides: r.optional("Provides", |v| Provide::parse_list("Provides", v))?.unwrap_or_default(),
            name: name.clone(),
        };
        Ok(package)
    }

    /// The source package's name: `Source`'s, or the binary's own when `Source` is absent.
    pub fn source_name(&self) -> &PackageName {
        self.source.as_ref().map_or(&self.name, |s| &s.name)
    }

    /// The source package's version: `Source`'s `(version)`, or the binary's own.
    pub fn source_version(&self) -> &Version {
        self.source.as_ref().and_then(|s| s.version.as_ref()).unwrap_or(&self.version)
    }
}

/// Reads the fields of one stanza, turning a field's error into one that names the package.
struct FieldReader<'s, 'a> {
    stanza: &'s Stanza<'a>,
    package: &'s str,
    line: usize,
}

impl FieldReader<'_, '_> {
    fn invalid(&self, field: &'static str, source: FieldError) -> PackageError {
        PackageError::Invalid { package: self.package.to_owned(), line: self.line, field, source: Box::new(source) }
    }

    fn required<T, E: Into<FieldError>>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, PackageError> {
        let value = self.stanza.get(field).ok_or_else(|| PackageError::MissingField {
            package: self.package.to_owned(),
            line: self.line,
            field,
        })?;
        parse(value).map_err(|e| self.invalid(field, e.into()))
    }

    fn optional<T, E: Into<FieldError>>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, PackageError> {
        self.stanza.get(field).map(parse).transpose().map_err(|e| self.invalid(field, e.into()))
    }
}

fn number(value: &str) -> Result<u64, FieldError> {
    // `u64::from_str` takes a leading `+`; an index never writes one.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::Number(value.to_owned()));
    }
    value.parse().map_err(|_| FieldError::Number(value.to_owned()))
}

fn yes_no(value: &str) -> Result<bool, FieldError> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(FieldError::Word { value: value.to_owned(), expected: "`yes`, `no`" }),
    }
}

fn multi_arch(value: &str) -> Result<MultiArch, FieldError> {
    Ok(match value {
        "no" => MultiArch::No,
        "same" => MultiArch::Same,
        "foreign" => MultiArch::Foreign,
        "allowed" => MultiArch::Allowed,
        _ => {
            let expected = "`same`, `foreign`, `allowed`, `no`";
            return Err(FieldError::Word { value: value.to_owned(), expected });
        }
    })
}

fn priority(value: &str) -> Result<Priority, FieldError> {
    Ok(match value {
        "required" => Priority::Required,
        "important" => Priority::Important,
        "standard" => Priority::Standard,
        "optional" => Priority::Optional,
        "extra" => Priority::Extra,
        _ => {
            let expected = "`required`, `important`, `standard`, `optional`, `extra`";
            return Err(FieldError::Word { value: value.to_owned(), expected });
        }
    })
}

fn source(value: &str) -> Result<Source, FieldError> {
    let bad = || FieldError::Source(value.to_owned());
    let (name, version) = match value.split_once(' ') {
        None => (value, None),
        Some((name, rest)) => {
            let inner = rest.trim_start_matches(' ').strip_prefix('(').and_then(|r| r.strip_suffix(')'));
            (name, Some(inner.ok_or_else(bad)?.trim_matches(' ')))
        }
    };
    Ok(Source { name: name.parse()?, version: version.map(str::parse).transpose()? })
}

/// The file will be fetched from, and may be stored under, this path: refuse anything that
/// could leave the archive root (absolute, `..`) or be read two ways (empty components,
/// whitespace, backslashes).
fn check_filename(value: &str) -> Result<(), FieldError> {
    let ok = !value.starts_with('/')
        && !value.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\')
        && value.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(FieldError::Filename(value.to_owned()))
    }
}

/// Why a `Packages` index could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the `Packages` index is not valid control data")]
    Control(#[from] ControlError),
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// Reads every entry of a `Packages` index, one stanza at a time; the first error stops it.
pub fn parse_index(text: &str) -> Result<Vec<Package>, IndexError> {
    Stanzas::new(text, Dialect::Archive).map(|stanza| Ok(Package::from_stanza(&stanza?)?)).collect()
}

/// One requested package: `bash`, `python3 (>= 3.11)`, `libc6:i386`, `hello (= 1.0-1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub relation: Relation,
    /// The text as the recipe wrote it, for reasons and errors.
    pub text: String,
}

/// Why a request string is not one relation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseRequestError {
    #[error(transparent)]
    Relation(#[from] RelationError),
    #[error("`{0}` is not one package: a request names one package, without alternatives or commas")]
    NotOne(String),
}

/// A transparent [`RelationError`] is not a cause of its own in the chain: its hint is
/// passed on here.
impl crate::error::Hint for ParseRequestError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match self {
            ParseRequestError::Relation(e) => crate::error::Hint::hints(e),
            ParseRequestError::NotOne(_) => Vec::new(),
        }
    }
}

impl Requested {
    /// Parses one relation with the `Packages` relationship syntax; alternatives and lists are
    /// refused, since a recipe lists its packages one by one.
    pub fn parse(text: &str) -> Result<Self, ParseRequestError> {
        let relations = Relations::parse("request", text)?;
        match relations.as_slice() {
            [alternatives] if alternatives.as_slice().len() == 1 => {
                Ok(Requested { relation: alternatives.first().clone(), text: text.trim().to_owned() })
            }
            _ => Err(ParseRequestError::NotOne(text.trim().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::control::parse_one;
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn rel(field: &str, s: &str) -> Relations {
        Relations::parse(field, s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn one(s: &str) -> Relation {
        let list = rel("Depends", s);
        assert_eq!(list.len(), 1, "{s}");
        let alternatives = list.as_slice()[0].as_slice();
        assert_eq!(alternatives.len(), 1, "{s}");
        alternatives[0].clone()
    }

    fn err(field: &str, s: &str) -> RelationError {
        match Relations::parse(field, s) {
            Ok(parsed) => panic!("`{s}` parsed as `{parsed}`"),
            Err(e) => e,
        }
    }

    #[test]
    fn package_names() {
        for ok in ["libc6", "g++", "libstdc++6", "0ad", "python3.11", "node-acorn", "xz-utils"] {
            assert_eq!(ok.parse::<PackageName>().unwrap().as_str(), ok);
        }
        for bad in ["", "a", "-foo", ".foo", "+foo", "Foo", "foo_bar", "foo bar", "föö"] {
            let e = bad.parse::<PackageName>().unwrap_err();
            assert_eq!(e.name, bad);
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn architectures_and_qualifiers() {
        assert!("all".parse::<Architecture>().unwrap().is_all());
        assert!(!"amd64".parse::<Architecture>().unwrap().is_all());
        assert_eq!(Architecture::all().as_str(), "all");
        for bad in ["any", "linux-any", "any-amd64", "", "AMD64", "-x", "amd 64"] {
            assert!(bad.parse::<Architecture>().is_err(), "{bad}");
        }
        assert_eq!("any".parse::<ArchQualifier>().unwrap(), ArchQualifier::Any);
        assert_eq!("native".parse::<ArchQualifier>().unwrap(), ArchQualifier::Native);
        assert_eq!("i386".parse::<ArchQualifier>().unwrap(), ArchQualifier::Arch("i386".parse().unwrap()));
    }

    #[test]
    fn parses_relations_with_alternatives_versions_and_qualifiers() {
        let list = rel("Depends", "node-xtend, nodejs:any | nodejs (<< 12.22.5~dfsg-4~), libc6 (>= 2.36)");
        assert_eq!(list.len(), 3);
        let second = list.as_slice()[1].as_slice();
        assert_eq!(second.len(), 2);
        assert_eq!(second[0].name.as_str(), "nodejs");
        assert_eq!(second[0].arch, Some(ArchQualifier::Any));
        assert_eq!(second[0].version, None);
        let constraint = second[1].version.as_ref().unwrap();
        assert_eq!((constraint.op, constraint.version.as_str()), (Operator::Earlier, "12.22.5~dfsg-4~"));
        assert_eq!(list.as_slice()[1].first().name.as_str(), "nodejs");
        assert_eq!(list.to_string(), "node-xtend, nodejs:any | nodejs (<< 12.22.5~dfsg-4~), libc6 (>= 2.36)");

        let cases = [
            ("foo", "foo", None, None),
            ("foo:amd64", "foo", Some("amd64"), None),
            ("foo:native", "foo", Some("native"), None),
            ("foo(>=1.0)", "foo", None, Some((Operator::LaterEqual, "1.0"))),
            ("foo ( <<  2:1.0~rc1-1 )", "foo", None, Some((Operator::Earlier, "2:1.0~rc1-1"))),
            ("foo:any (= 1)", "foo", Some("any"), Some((Operator::Equal, "1"))),
            ("foo (<= 1)", "foo", None, Some((Operator::EarlierEqual, "1"))),
            ("foo (>> 1)", "foo", None, Some((Operator::Later, "1"))),
            // Deprecated: dpkg reads `<` as `<=` and `>` as `>=`.
            ("foo (< 1)", "foo", None, Some((Operator::EarlierEqual, "1"))),
            ("foo (> 1)", "foo", None, Some((Operator::LaterEqual, "1"))),
        ];
        for (text, name, arch, version) in cases {
            let r = one(text);
            assert_eq!(r.name.as_str(), name, "{text}");
            assert_eq!(r.arch.map(|a| a.to_string()).as_deref(), arch, "{text}");
            let got = r.version.as_ref().map(|c| (c.op, c.version.as_str()));
            assert_eq!(got, version, "{text}");
        }
        assert_eq!(one("foo (< 1)").to_string(), "foo (<= 1)");
    }

    #[test]
    fn tolerates_whitespace_and_continuation_lines() {
        // The value as `control` hands it over: newlines and continuation indentation kept.
        let text = "libc6 (>= 2.36),\n libgcc-s1\t(>= 3.0) ,\n\tdebconf\n | debconf-2.0 ,zlib1g";
        let list = rel("Depends", text);
        assert_eq!(list.to_string(), "libc6 (>= 2.36), libgcc-s1 (>= 3.0), debconf | debconf-2.0, zlib1g");
        assert!(rel("Depends", "").is_empty());
        assert!(rel("Depends", " \n ").is_empty());
    }

    #[test]
    fn relations_from_a_multi_line_stanza() {
        let stanza = parse_one("Package: xx\nDepends: aa,\n bb (>= 1) |\n  cc\n", Dialect::Archive).unwrap();
        let list = rel("Depends", stanza.get("Depends").unwrap());
        assert_eq!(list.to_string(), "aa, bb (>= 1) | cc");
    }

    #[test]
    fn bad_relations_name_the_field_and_the_text() {
        use RelationErrorKind as K;
        type Expected = fn(&RelationErrorKind) -> bool;
        let cases: &[(&str, &str, Expected)] = &[
            ("aa, , bb", "aa, , bb", |k| matches!(k, K::Empty)),
            ("aa,", "aa,", |k| matches!(k, K::Empty)),
            ("aa | | bb", "aa | | bb", |k| matches!(k, K::Empty)),
            ("aa, bb | ", "bb |", |k| matches!(k, K::Empty)),
            ("Foo", "Foo", |k| matches!(k, K::Name(_))),
            ("x", "x", |k| matches!(k, K::Name(_))),
            ("foo:", "foo:", |k| matches!(k, K::Arch(_))),
            ("foo:AMD64", "foo:AMD64", |k| matches!(k, K::Arch(_))),
            ("foo (>= 1", "foo (>= 1", |k| matches!(k, K::UnclosedParen)),
            ("foo (1.0)", "foo (1.0)", |k| matches!(k, K::NoOperator)),
            ("foo (>= )", "foo (>= )", |k| matches!(k, K::NoVersion)),
            ("foo (>= 1 2)", "foo (>= 1 2)", |k| matches!(k, K::Version(_))),
            ("foo (>= 1_2)", "foo (>= 1_2)", |k| matches!(k, K::Version(_))),
            ("foo (=> 1)", "foo (=> 1)", |k| matches!(k, K::Version(_))),
            ("foo [amd64 !i386]", "foo [amd64 !i386]", |k| matches!(k, K::ArchRestriction)),
            ("foo (>= 1) [amd64]", "foo (>= 1) [amd64]", |k| matches!(k, K::ArchRestriction)),
            ("foo <!nocheck>", "foo <!nocheck>", |k| matches!(k, K::BuildProfile)),
            ("foo bar", "foo bar", |k| matches!(k, K::Trailing)),
            ("foo (>= 1) x", "foo (>= 1) x", |k| matches!(k, K::Trailing)),
        ];
        for &(text, offending, expected) in cases {
            let e = err("Pre-Depends", text);
            assert!(expected(&e.kind), "{text}: {e:?}");
            assert_eq!(e.field, "Pre-Depends");
            assert_eq!(e.text, offending, "{text}");
            assert!(e.to_string().starts_with("invalid `Pre-Depends` relation"), "{e}");
        }
    }

    #[test]
    fn satisfaction_follows_dpkg_ordering() {
        let c = |s: &str| one(s).version.unwrap();
        let cases = [
            ("xx (>= 2.36)", "2.36-9+deb12u4", true),
            ("xx (>= 2.36)", "2.35", false),
            ("xx (>= 2.36)", "2.36~rc1", false),
            ("xx (>= 1.0~)", "1.0~rc1", true),
            ("xx (<< 1.0)", "1.0~rc1", true),
            ("xx (<< 1.0)", "1.0", false),
            ("xx (<= 1.0)", "1.0", true),
            ("xx (>> 1.0)", "1.0", false),
            ("xx (>> 1.0)", "1.0-1", true),
            ("xx (= 1.0)", "1.0-0", true),
            ("xx (= 1.0)", "0:1.0", true),
            ("xx (= 1.0)", "1:1.0", false),
            // An epoch outweighs any upstream version.
            ("xx (>= 1:0.1)", "9.9", false),
            ("xx (<< 1:0.1)", "9.9", true),
            ("xx (>= 2:6.2.1+dfsg1)", "2:6.2.1+dfsg1-1.1", true),
            // The deprecated operators include equality, as in dpkg.
            ("xx (< 1.0)", "1.0", true),
            ("xx (> 1.0)", "1.0", true),
            ("xx (> 1.0)", "0.9", false),
        ];
        for (relation, version, expected) in cases {
            assert_eq!(c(relation).satisfied_by(&v(version)), expected, "{version} vs {relation}");
            assert_eq!(one(relation).version_satisfied_by(&v(version)), expected);
        }
        assert!(one("xx").version_satisfied_by(&v("0~")));
    }

    #[test]
    fn provides_with_versions() {
        let provides = Provide::parse_list(
            "Provides",
            "adwaita-icon-theme-full (= 43-1), gnome-icon-theme-symbolic,\n node-debbundle-acorn (= 8.8.1+ds+~cs25.17.7-2)",
        )
        .unwrap();
        assert_eq!(provides.len(), 3);
        assert_eq!(provides[0].version.as_ref().unwrap().as_str(), "43-1");
        assert_eq!(provides[1].version, None);
        assert_eq!(provides[2].to_string(), "node-debbundle-acorn (= 8.8.1+ds+~cs25.17.7-2)");

        let versioned = &provides[0];
        assert!(versioned.satisfies(&one("adwaita-icon-theme-full")));
        assert!(versioned.satisfies(&one("adwaita-icon-theme-full (>= 43)")));
        assert!(!versioned.satisfies(&one("adwaita-icon-theme-full (>> 43-1)")));
        assert!(!versioned.satisfies(&one("adwaita-icon-theme (>= 43)")));
        // An unversioned provide meets only unversioned relations.
        let bare = &provides[1];
        assert!(bare.satisfies(&one("gnome-icon-theme-symbolic")));
        assert!(!bare.satisfies(&one("gnome-icon-theme-symbolic (>= 0)")));

        for (text, expected) in [
            ("foo (>= 1)", RelationErrorKind::ProvidesOperator(Operator::LaterEqual)),
            ("foo (< 1)", RelationErrorKind::ProvidesOperator(Operator::EarlierEqual)),
            ("foo | bar", RelationErrorKind::ProvidesAlternatives),
        ] {
            let e = Provide::parse_list("Provides", &format!("ok, {text}")).unwrap_err();
            assert_eq!((e.field.as_str(), e.text.as_str(), &e.kind), ("Provides", text, &expected));
        }
    }

    /// Debian 12's `base-files` and `libc6` stanzas (`Breaks` shortened), as they are in
    /// `bookworm/main/binary-amd64/Packages`.
    const INDEX: &str = "\
Package: base-files
Version: 12.4+deb12u15
Essential: yes
Installed-Size: 341
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Replaces: base, dpkg (<= 1.15.0), miscutils
Provides: base
Pre-Depends: awk
Breaks: debian-security-support (<< 2019.04.25), initscripts (<< 2.88dsf-13.3), sendfile (<< 2.1b.20080616-5.2~)
Description: Debian base system miscellaneous files
Multi-Arch: foreign
Description-md5: 6d16337f57b84c4747f56438355b2395
Tag: admin::configuring, admin::filesystem, admin::install, admin::login,
 role::app-data, suite::debian
Section: admin
Priority: required
Filename: pool/main/b/base-files/base-files_12.4+deb12u15_amd64.deb
Size: 70936
MD5sum: 0d863c1ee183c8e006bd085d63f4874f
SHA256: 3eb1ea6d85488f488cc2a163b98ad640ef88cee4c79287cf14e361aaf6206f47

Package: libc6
Source: glibc
Version: 2.36-9+deb12u14
Installed-Size: 13001
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Replaces: libc6-amd64
Depends: libgcc-s1
Recommends: libidn2-0 (>= 2.0.5~)
Suggests: glibc-doc, debconf | debconf-2.0, libc-l10n, locales, libnss-nis, libnss-nisplus
Breaks: aide (<< 0.17.3-4+b3), busybox (<< 1.30.1-6), gnumach-image-1.8-486 (<< 2:1.8+git20210923~),
 hurd (<< 1:0.9.git20220301-2), locales (<< 2.36)
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
Multi-Arch: same
Homepage: https://www.gnu.org/software/libc/libc.html
Description-md5: fc3001b0b90a1c8e6690b283a619d57f
Tag: role::shared-lib
Section: libs
Priority: optional
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb
Size: 2759320
MD5sum: 8d98f0c882f269aaee8437bcfe89346e
SHA256: ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf

Package: 2048-qt
Source: 2048-qt (0.1.6-2)
Version: 0.1.6-2+b2
Architecture: all
Filename: pool/main/2/2048-qt/2048-qt_0.1.6-2+b2_amd64.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
";

    #[test]
    fn reads_real_stanzas() {
        let packages = parse_index(INDEX).unwrap();
        assert_eq!(packages.len(), 3);

        let base = &packages[0];
        assert_eq!(base.name.as_str(), "base-files");
        assert_eq!(base.version, v("12.4+deb12u15"));
        assert!(base.essential);
        assert_eq!(base.multi_arch, MultiArch::Foreign);
        assert_eq!(base.priority, Some(Priority::Required));
        assert_eq!(base.installed_size, Some(341));
        assert_eq!(base.pre_depends.to_string(), "awk");
        assert_eq!(base.replaces.to_string(), "base, dpkg (<= 1.15.0), miscutils");
        assert_eq!(base.provides.len(), 1);
        assert_eq!(base.breaks.len(), 3);
        assert!(base.depends.is_empty());
        assert_eq!(base.source, None);
        assert_eq!(base.source_name(), &base.name);
        assert_eq!(base.source_version(), &base.version);

        let libc = &packages[1];
        assert_eq!(libc.name.as_str(), "libc6");
        assert_eq!(libc.architecture.as_str(), "amd64");
        assert!(!libc.essential);
        assert_eq!(libc.multi_arch, MultiArch::Same);
        assert_eq!(libc.priority, Some(Priority::Optional));
        assert_eq!(libc.section.as_deref(), Some("libs"));
        assert_eq!(libc.filename, "pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb");
        assert_eq!(libc.size, 2_759_320);
        assert_eq!(libc.sha256.hex(), "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf");
        assert_eq!(libc.description.as_deref(), Some("GNU C Library: Shared libraries"));
        assert_eq!(libc.source_name().as_str(), "glibc");
        assert_eq!(libc.source_version(), &v("2.36-9+deb12u14"));
        assert_eq!(libc.depends.to_string(), "libgcc-s1");
        assert_eq!(libc.recommends.to_string(), "libidn2-0 (>= 2.0.5~)");
        assert_eq!(libc.suggests.as_slice()[1].as_slice().len(), 2);
        assert_eq!(libc.breaks.len(), 5);
        assert_eq!(libc.breaks.as_slice()[3].to_string(), "hurd (<< 1:0.9.git20220301-2)");

        let qt = &packages[2];
        assert!(qt.architecture.is_all());
        assert_eq!(qt.multi_arch, MultiArch::No);
        assert_eq!(qt.priority, None);
        assert_eq!(qt.source_name().as_str(), "2048-qt");
        assert_eq!(qt.source_version(), &v("0.1.6-2"));
        assert_ne!(qt.source_version(), &qt.version);
    }

    #[test]
    fn bad_stanzas_name_the_package_and_the_field() {
        let good = "Package: foo\nVersion: 1.0\nArchitecture: amd64\nFilename: pool/f/foo.deb\nSize: 1\n\
                    SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n";
        assert_eq!(parse_index(good).unwrap().len(), 1);
        for field in ["Version", "Architecture", "Filename", "Size", "SHA256"] {
            let text: String = good.lines().filter(|l| !l.starts_with(field)).map(|l| format!("{l}\n")).collect();
            let e = parse_index(&text).unwrap_err();
            assert_eq!(e.to_string(), format!("package `foo` (line 1) has no `{field}` field"));
        }
        let e = parse_index("Version: 1\n").unwrap_err();
        assert_eq!(e, IndexError::Package(PackageError::NoPackage { line: 1 }));
        assert!(matches!(parse_index("Package: F\n").unwrap_err(), IndexError::Package(PackageError::BadName { .. })));
        assert!(matches!(parse_index("Package foo\n").unwrap_err(), IndexError::Control(_)));

        let cases = [
            ("Version: 1.0", "Version: 1_0", "Version"),
            ("Architecture: amd64", "Architecture: any", "Architecture"),
            ("Size: 1", "Size: +1", "Size"),
            ("Size: 1", "Size: 99999999999999999999", "Size"),
            ("Filename: pool/f/foo.deb", "Filename: /etc/passwd", "Filename"),
            ("Filename: pool/f/foo.deb", "Filename: pool/../../x.deb", "Filename"),
            ("Filename: pool/f/foo.deb", "Filename: pool//foo.deb", "Filename"),
            ("SHA256: 0000000000000000000000000000000000000000000000000000000000000000", "SHA256: 00", "SHA256"),
            ("Size: 1", "Size: 1\nMulti-Arch: maybe", "Multi-Arch"),
            ("Size: 1", "Size: 1\nEssential: true", "Essential"),
            ("Size: 1", "Size: 1\nPriority: high", "Priority"),
            ("Size: 1", "Size: 1\nInstalled-Size: 1k", "Installed-Size"),
            ("Size: 1", "Size: 1\nSource: foo 1.0", "Source"),
            ("Size: 1", "Size: 1\nSource: foo (1_0)", "Source"),
            ("Size: 1", "Size: 1\nDepends: bar (>= 1", "Depends"),
            ("Size: 1", "Size: 1\nBreaks: bar [amd64]", "Breaks"),
            ("Size: 1", "Size: 1\nProvides: bar (>= 1)", "Provides"),
        ];
        for (from, to, field) in cases {
            let text = good.replace(from, to);
            match parse_index(&text).unwrap_err() {
                IndexError::Package(PackageError::Invalid { package, line: 1, field: f, .. }) => {
                    assert_eq!((package.as_str(), f), ("foo", field), "{to}");
                }
                other => panic!("{to}: {other:?}"),
            }
        }
        let e = parse_index(&good.replace("Size: 1", "Size: 1\nDepends: bar (>= 1")).unwrap_err();
        assert_eq!(e.to_string(), "package `foo` (line 1): invalid `Depends` field");
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), "invalid `Depends` relation `bar (>= 1`: `(` without its closing `)`");
    }

    proptest! {
        #[test]
        fn arbitrary_relation_strings_never_panic(s in "\\PC{0,80}") {
            let _ = Relations::parse("Depends", &s);
            let _ = Provide::parse_list("Provides", &s);
        }

        /// Over text made of relation syntax: parsing never panics, and whatever parses prints
        /// as text that parses back to the same relations.
        #[test]
        fn relation_syntax_round_trips(s in "[a-c0-9:|,()<>=!~+.\\[\\] \n-]{0,60}") {
            if let Ok(parsed) = Relations::parse("Depends", &s) {
                let printed = parsed.to_string();
                prop_assert_eq!(Relations::parse("Depends", &printed).unwrap(), parsed);
            }
            if let Ok(parsed) = Provide::parse_list("Provides", &s) {
                let printed = parsed.iter().map(Provide::to_string).collect::<Vec<_>>().join(", ");
                prop_assert_eq!(Provide::parse_list("Provides", &printed).unwrap(), parsed);
            }
        }
    }

    /// A well-formed relation, written with arbitrary (allowed) whitespace.
    fn relation_text() -> impl Strategy<Value = String> {
        let space = "[ \t]{0,2}(\n[ \t])?";
        let op = prop::sample::select(vec!["<<", "<=", "=", ">=", ">>", "<", ">"]);
        let version = "([1-9]:)?[0-9]{1,3}(\\.[0-9]{1,2})?(~rc1|\\+b1)?(-[0-9]{1,2})?";
        let constraint = (space, op, space, version, space)
            .prop_map(|(s1, op, s2, version, s3)| format!("({s1}{op}{s2}{version}{s3})"));
        let qualifier = prop::option::of(prop::sample::select(vec![":any", ":native", ":amd64"]));
        ("[a-z0-9][a-z0-9+.-]{1,8}", qualifier, space, prop::option::of(constraint)).prop_map(
            |(name, qualifier, space, constraint)| {
                format!("{name}{}{space}{}", qualifier.unwrap_or(""), constraint.unwrap_or_default())
            },
        )
    }

    proptest! {
        /// Well-formed fields always parse, keep their shape, and print as text that parses back
        /// to the same relations.
        #[test]
        fn well_formed_relations_parse_and_round_trip(
            items in prop::collection::vec(prop::collection::vec(relation_text(), 1..4), 1..5),
            space in "[ \t]{0,2}(\n[ \t])?",
        ) {
            let text = items.iter().map(|alts| alts.join(&format!("{space}|{space}"))).collect::<Vec<_>>()
                .join(&format!("{space},{space}"));
            let parsed = Relations::parse("Depends", &text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let shape: Vec<usize> = parsed.iter().map(|alts| alts.as_slice().len()).collect();
            prop_assert_eq!(shape, items.iter().map(Vec::len).collect::<Vec<_>>());
            prop_assert_eq!(Relations::parse("Depends", &parsed.to_string()).unwrap(), parsed);
        }
    }

    /// Parses a full `Packages` index: `CANDIDATE_PACKAGES_INDEX` (uncompressed), or else
    /// apt's Debian 12 `main/binary-amd64` list in `/var/lib/apt/lists`, through `lz4cat`.
    /// Run with `cargo test --release -- --ignored --nocapture full_index`.
    #[test]
    #[ignore = "needs a full Packages index on this machine"]
    fn parses_a_full_index() {
        let text = match std::env::var_os("CANDIDATE_PACKAGES_INDEX") {
            Some(path) => fs_err::read_to_string(path).unwrap(),
            None => {
                let lists = "/var/lib/apt/lists";
                let plain = format!("{lists}/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages");
                if std::path::Path::new(&plain).exists() {
                    fs_err::read_to_string(plain).unwrap()
                } else {
                    let output = std::process::Command::new("lz4cat").arg(format!("{plain}.lz4")).output().unwrap();
                    assert!(output.status.success(), "lz4cat failed");
                    String::from_utf8(output.stdout).unwrap()
                }
            }
        };
        let start = std::time::Instant::now();
        let packages = parse_index(&text).unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
        let elapsed = start.elapsed();
        eprintln!("parsed {} packages ({} bytes) in {elapsed:?}", packages.len(), text.len());
        assert!(!packages.is_empty());
    }
}
