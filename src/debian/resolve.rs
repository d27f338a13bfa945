//! A deterministic dependency resolver that picks the packages `apt-get install
//! --no-install-recommends` would pick from the same archives (apt 2.6, Debian 12).
//!
//! A recipe names packages; the lockfile must name every `.deb` that goes into the image. apt
//! itself cannot be asked (it is not on every build host, and its answer depends on its
//! configuration and state), so this module re-implements the part of apt's `pkgDepCache`
//! behaviour that a fresh extract-mode image needs, and explains every failure with the chain of
//! packages that led to it.
//!
//! # What is implemented, and how it maps to apt
//!
//! * **Candidates.** For each `(name, architecture)` the candidate is the highest version in any
//!   archive (all archives have the same pin priority); on a tie the archive added first wins.
//!   Dependencies are met only by candidates, as apt never falls back to an older version. A
//!   requested relation with a version (`hello (= 1.0-1)`, `foo (<< 2)`) selects the highest
//!   version that meets it, like `apt install hello=1.0-1`.
//! * **Hard dependencies only.** `Depends` and `Pre-Depends` are followed (both as hard
//!   dependencies: we unpack, so ordering does not matter). `Recommends` and `Suggests` are
//!   ignored, as with `--no-install-recommends`; a recipe that wants a recommended package names
//!   it.
//! * **Order of work.** First every seed is marked — the requested packages in the order given,
//!   then `Essential: yes` packages, then `Priority: required` ones (each of these two groups
//!   sorted by name and architecture) — without its dependencies, as `apt-get install` marks all
//!   command-line packages before it auto-installs dependencies. Then each seed's dependencies are
//!   resolved in that same order, depth-first in the order of the `Pre-Depends` field followed by
//!   the `Depends` field, as apt's `MarkInstall` recurses. Like `MarkInstall`, each package's
//!   dependencies that leave no choice (one relation, met by a real package) are marked before
//!   any of them is recursed into, so that a deeper alternatives group sees them as chosen.
//! * **Alternatives** (`a | b`): nothing is done when any alternative is already met by a chosen
//!   or installed package. Otherwise the targets of each alternative are tried in turn: the first
//!   whose installation (with its own dependencies, recursively) succeeds is kept. A failed try is
//!   undone completely before the next one, so backtracking is local to that alternatives point; a
//!   choice that succeeded is never revisited because of a later, unrelated failure (apt does not
//!   revisit it either).
//! * **Virtual packages.** For one relation the real package of that name (its candidate, of a
//!   matching architecture and version) comes first; after it the candidates that `Provide` the
//!   name, ordered by the rule apt's `CompareProviders` mostly follows: a provider already chosen
//!   first, then `Essential: yes` or `Priority: required` providers, then by `Priority`
//!   (required, important, standard, optional, extra, none), then by name and architecture (apt
//!   falls back to its cache order here, which is not stable; the name is). A versioned relation is
//!   met by a provide only when the provided version meets it; an unversioned provide never meets
//!   a versioned relation ([`Provide::satisfies`](super::packages::Provide::satisfies)). A virtual name requested directly is taken
//!   only when exactly one package provides it, as `apt-get install` does.
//! * **Conflicts and Breaks** both forbid co-installation (we unpack everything at once, so there
//!   is no window in which a broken package could be fixed up). A package never conflicts with
//!   itself or with another architecture of itself (that is the Multi-Arch rule below). An
//!   unversioned `Conflicts` on a virtual name hits every chosen provider of it; a versioned one
//!   only matches real package versions. Unqualified conflicts apply to every architecture, as in
//!   apt and dpkg.
//! * **Multi-Arch.** Installable architectures are the native one, `all`, and the foreign ones
//!   given to [`Universe::new`]; a foreign package only arrives when it is requested as `name:arch`
//!   or pulled by a dependency of a package of that architecture or qualified with it. A plain
//!   `foo` from a package of architecture X is met by `foo` of X (an `all` package counts as
//!   native, and its dependencies resolve as native), or by `foo` of any architecture if it is
//!   `Multi-Arch: foreign`. `foo:any` is met by `foo` of X, or of any architecture when it is
//!   `Multi-Arch: allowed`. `:native` is the native architecture. Two architectures of one package
//!   co-install only when both are `Multi-Arch: same` at the same version.
//! * **Seeds.** `priority_required` takes every candidate with `Priority: required` of the native
//!   architecture or `all` (mmdebstrap's `minbase`, debootstrap's base); `essential` every
//!   `Essential: yes` candidate of those architectures. An excluded package is silently left out
//!   of these two sets (that is what `exclude` is for); it is an error when it is requested, or
//!   when a dependency can only be met by it.
//!
//! # Determinism
//!
//! Hash maps are used for lookup only; everything that is iterated is a `Vec` in a fixed order
//! (the order of a relation field, of the request, or sorted by package name, architecture and
//! version). Package ids reflect the order packages were added and never decide anything but the
//! tie between identical versions, which is resolved by archive order. The same archives and
//! request therefore give the same packages and reasons on every run.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use super::packages::{
    Alternatives, ArchQualifier, Architecture, MultiArch, Package, PackageName, Priority, Relation, Requested,
};

/// Index of a package in a [`Universe`], in the order packages were added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(u32);

impl PackageId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// All packages of the locked archives, indexed for lookup. `archive` is an index the caller
/// assigns (its order decides version ties: the archive added first wins).
#[derive(Debug)]
pub struct Universe {
    native: Architecture,
    foreign: Vec<Architecture>,
    packages: Vec<Package>,
    archives: Vec<usize>,
    /// Whether the package is the candidate of its `(name, architecture)`.
    candidate: Vec<bool>,
    /// Package name → every version of it (all architectures) and the candidates among them.
    names: NameMap<NameEntry>,
    /// Virtual name → every package (any version) that provides it. Filtered to candidates when
    /// used, because candidates may change as archives are added.
    providers: NameMap<Vec<PackageId>>,
}

/// A map keyed by package name, hashed with FNV-1a: names are short, and SipHash's
/// flood resistance buys nothing for names that come from signed, pinned archives, while its cost
/// is most of the time spent indexing a full archive. Lookup only, never iterated.
type NameMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

#[derive(Debug, Default)]
struct NameEntry {
    versions: Vec<PackageId>,
    /// One per architecture.
    candidates: Vec<PackageId>,
}

impl Universe {
    /// An empty universe for an image of architecture `native`, which may also install packages
    /// of the `foreign` architectures (dpkg's `--add-architecture`).
    pub fn new(native: Architecture, foreign: Vec<Architecture>) -> Self {
        Universe {
            native,
            foreign,
            packages: Vec::new(),
            archives: Vec::new(),
            candidate: Vec::new(),
            names: NameMap::default(),
            providers: NameMap::default(),
        }
    }

    /// Adds the packages of one index of archive `archive`. May be called once per archive or
    /// once per index; a version already present stays the candidate on a tie.
    pub fn add(&mut self, archive: usize, packages: Vec<Package>) {
        let base = self.packages.len();
        self.archives.reserve(packages.len());
        self.candidate.reserve(packages.len());
        self.names.reserve(packages.len());
        // Index from the caller's vector, then append it whole: moving 60k large `Package`s one
        // by one costs as much as all the indexing.
        let existing = &self.packages;
        let get = |id: PackageId| if id.index() < base { &existing[id.index()] } else { &packages[id.index() - base] };
        for (i, package) in packages.iter().enumerate() {
            let id = PackageId(u32::try_from(base + i).expect("fewer than 2^32 packages"));
            // Look up before inserting: allocating a key for every package only to drop it
            // when the name is known costs more than the second hash.
            let entry = match self.names.get_mut(package.name.as_str()) {
                Some(entry) => entry,
                None => self.names.entry(package.name.as_str().to_owned()).or_default(),
            };
            entry.versions.push(id);
            let same_arch = entry.candidates.iter_mut().find(|c| get(**c).architecture == package.architecture);
            let is_candidate = match same_arch {
                Some(current) if get(*current).version < package.version => {
                    self.candidate[current.index()] = false;
                    *current = id;
                    true
                }
                Some(_) => false,
                None => {
                    entry.candidates.push(id);
                    true
                }
            };
            for provide in &package.provides {
                match self.providers.get_mut(provide.name.as_str()) {
                    Some(list) => list.push(id),
                    None => drop(self.providers.insert(provide.name.as_str().to_owned(), vec![id])),
                }
            }
            self.archives.push(archive);
            self.candidate.push(is_candidate);
        }
        if self.packages.is_empty() {
            self.packages = packages;
        } else {
            self.packages.extend(packages);
        }
    }

    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id.index()]
    }

    pub fn archive_of(&self, id: PackageId) -> usize {
        self.archives[id.index()]
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    pub fn native(&self) -> &Architecture {
        &self.native
    }

    /// Whether `id` is the candidate (highest version) of its name and architecture.
    pub fn is_candidate(&self, id: PackageId) -> bool {
        self.candidate[id.index()]
    }

    /// The candidates named `name`, one per architecture, sorted by architecture.
    pub fn candidates(&self, name: &str) -> Vec<PackageId> {
        let mut ids = self.names.get(name).map(|e| e.candidates.clone()).unwrap_or_default();
        ids.sort_by(|a, b| self.package(*a).architecture.cmp(&self.package(*b).architecture));
        ids
    }

    fn versions(&self, name: &str) -> &[PackageId] {
        self.names.get(name).map_or(&[], |e| &e.versions)
    }

    fn providers(&self, name: &str) -> &[PackageId] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The architecture a package acts as: `all` counts as native.
    fn effective_arch<'a>(&'a self, package: &'a Package) -> &'a str {
        if package.architecture.is_all() {
            self.native.as_str()
        } else {
            package.architecture.as_str()
        }
    }

    /// Whether packages of this architecture may be installed at all.
    fn installable_arch(&self, arch: &Architecture) -> bool {
        arch.is_all() || *arch == self.native || self.foreign.contains(arch)
    }

    /// Preference among architectures when several could meet a relation: native first (a
    /// `Multi-Arch: foreign` tool runs natively, as apt prefers), then the depending package's
    /// own, then the foreign ones in the order given.
    fn arch_rank(&self, from: &str, package: &Package) -> usize {
        let arch = self.effective_arch(package);
        if arch == self.native.as_str() {
            0
        } else if arch == from {
            1
        } else {
            2 + self.foreign.iter().position(|f| f.as_str() == arch).unwrap_or(usize::MAX - 2)
        }
    }

    /// Whether `package` (as a real package or as a provider) has an architecture that meets
    /// `relation` written by a package of architecture `from` (see the module docs).
    fn dependency_arch_ok(&self, from: &str, relation: &Relation, package: &Package) -> bool {
        let arch = self.effective_arch(package);
        match &relation.arch {
            None => arch == from || package.multi_arch == MultiArch::Foreign,
            Some(ArchQualifier::Any) => arch == from || package.multi_arch == MultiArch::Allowed,
            Some(ArchQualifier::Native) => arch == self.native.as_str(),
            Some(ArchQualifier::Arch(a)) => arch == a.as_str(),
        }
    }

    /// Whether a `Conflicts`/`Breaks` relation's architecture covers `package`: unqualified
    /// and `:any` cover every architecture.
    fn conflict_arch_ok(&self, relation: &Relation, package: &Package) -> bool {
        match &relation.arch {
            None | Some(ArchQualifier::Any) => true,
            Some(ArchQualifier::Native) => self.effective_arch(package) == self.native.as_str(),
            Some(ArchQualifier::Arch(a)) => self.effective_arch(package) == a.as_str(),
        }
    }

    /// `name` or `name:arch` when the architecture is not the native one.
    fn display(&self, id: PackageId) -> String {
        let p = self.package(id);
        if self.effective_arch(p) == self.native.as_str() {
            p.name.to_string()
        } else {
            format!("{}:{}", p.name, p.architecture)
        }
    }
}

/// What to install on top of `installed`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub packages: Vec<Requested>,
    /// Take every `Priority: required` package of the native architecture or `all`, like
    /// mmdebstrap's `minbase` variant and debootstrap.
    pub priority_required: bool,
    /// Take every `Essential: yes` package.
    pub essential: bool,
    /// Never install these; a dependency that can only be met by one is an error.
    pub exclude: Vec<PackageName>,
}

/// The packages to install, sorted by (name, architecture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub chosen: Vec<Chosen>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub id: PackageId,
    pub reason: Reason,
    /// The packages (chosen here or installed by an earlier layer) that meet its `Pre-Depends`
    /// and `Depends` in the final set: for each item, every package that meets the first of its
    /// alternatives met, as the walk judges an item met. Sorted by id, without repeats or
    /// the package itself (an item it meets on its own). These are the edges an SBOM's dependency graph shows.
    pub depends: Vec<PackageId>,
}

/// Why a package is in the image: the first reason the resolver's walk found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Named by the request (its text as written).
    Requested(String),
    Essential,
    Priority,
    /// Needed by `of`'s `Depends`/`Pre-Depends` item `relation` (the whole alternatives group).
    Dependency {
        of: PackageName,
        relation: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested(text) => write!(f, "requested as `{text}`"),
            Reason::Essential => f.write_str("Essential: yes"),
            Reason::Priority => f.write_str("Priority: required"),
            Reason::Dependency { of, relation } => write!(f, "`{of}` depends on `{relation}`"),
        }
    }
}

/// Why no set of packages meets the request. Every message carries the chain from the request
/// (or from the essential/required set) to the problem, written `a` (requested) → `b` → `c`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid request `{text}`: {reason}")]
    BadRequest { text: String, reason: String },
    #[error("no package `{name}` ({chain})")]
    NoPackage { name: String, chain: String },
    #[error("`{text}` was requested, but the archive has {available}")]
    RequestUnsatisfiable { text: String, available: String },
    #[error("`{name}` is a virtual package provided by {providers}; request one of them ({text} requested)")]
    VirtualRequest { name: String, text: String, providers: String },
    #[error("`{package}` needs `{relation}`, but the archive has {available} ({chain})")]
    Unsatisfiable { package: String, relation: String, available: String, chain: String },
    #[error("`{a}` conflicts with `{b}` (`{field}`), both needed: `{a}` because {a_chain}, `{b}` because {b_chain}")]
    Conflict { a: String, b: String, field: String, a_chain: String, b_chain: String },
    #[error("`{name}` is excluded but {needed_by} needs it ({chain})")]
    Excluded { name: String, needed_by: String, chain: String },
}

/// Resolves `request` against `universe`, on top of the packages already `installed` by
/// earlier layers (they meet dependencies and take part in conflicts, but are not returned).
pub fn resolve(universe: &Universe, installed: &[PackageId], request: &Request) -> Result<Resolution, ResolveError> {
    let mut solver = Solver::new(universe, request);
    for &id in installed {
        solver.mark_unchecked(id, Why { reason: None, parent: None });
    }
    let mut seeds = Vec::new();
    for requested in &request.packages {
        let id = solver.select_requested(requested)?;
        seeds.push((id, Reason::Requested(requested.text.clone())));
    }
    for (wanted, reason) in [(request.essential, Reason::Essential), (request.priority_required, Reason::Priority)] {
        if !wanted {
            continue;
        }
        let mut ids: Vec<PackageId> = (0..universe.len())
            .map(|i| PackageId(i as u32))
            .filter(|&id| {
                let p = universe.package(id);
                universe.is_candidate(id)
                    && (p.architecture.is_all() || p.architecture == universe.native)
                    && !solver.excluded.contains(p.name.as_str())
                    && match reason {
                        Reason::Essential => p.essential,
                        _ => p.priority == Some(Priority::Required),
                    }
            })
            .collect();
        ids.sort_by(|a, b| universe.package(*a).name.cmp(&universe.package(*b).name).then_with(|| a.cmp(b)));
        seeds.extend(ids.into_iter().map(|id| (id, reason.clone())));
    }
    for (id, reason) in &seeds {
        solver.mark(*id, Why { reason: Some(reason.clone()), parent: None })?;
    }
    for (id, _) in &seeds {
        solver.resolve_dependencies(*id)?;
    }
    let mut chosen: Vec<Chosen> = solver
        .trail
        .iter()
        .filter_map(|&id| match &solver.why[id.index()] {
            Some(Why { reason: Some(reason), .. }) => {
                Some(Chosen { id, reason: reason.clone(), depends: solver.dependencies(id) })
            }
            _ => None,
        })
        .collect();
    chosen.sort_by(|a, b| {
        let (pa, pb) = (universe.package(a.id), universe.package(b.id));
        (&pa.name, &pa.architecture, &pa.version).cmp(&(&pb.name, &pb.architecture, &pb.version))
    });
    Ok(Resolution { chosen })
}

/// Why a package is chosen: `reason` is `None` for an installed package; `parent` is the
/// package whose dependency pulled it in.
#[derive(Debug, Clone)]
struct Why {
    reason: Option<Reason>,
    parent: Option<PackageId>,
}

/// A `Conflicts` or `Breaks` item of a chosen package, indexed by the name it targets.
#[derive(Debug, Clone, Copy)]
struct Negative<'u> {
    by: PackageId,
    field: &'static str,
    relation: &'u Relation,
}

struct Solver<'u> {
    universe: &'u Universe,
    excluded: HashSet<&'u str>,
    why: Vec<Option<Why>>,
    /// Chosen packages in the order they were chosen; undoing a failed try pops it.
    trail: Vec<PackageId>,
    by_name: HashMap<&'u str, Vec<PackageId>>,
    by_provide: HashMap<&'u str, Vec<PackageId>>,
    negatives: HashMap<&'u str, Vec<Negative<'u>>>,
}

/// A failed attempt: either nothing could be found for a relation, or something was found and
/// failed (the error says why).
type Attempt = Result<(), ResolveError>;

impl<'u> Solver<'u> {
    fn new(universe: &'u Universe, request: &'u Request) -> Self {
        Solver {
            universe,
            excluded: request.exclude.iter().map(PackageName::as_str).collect(),
            why: vec![None; universe.len()],
            trail: Vec::new(),
            by_name: HashMap::new(),
            by_provide: HashMap::new(),
            negatives: HashMap::new(),
        }
    }

    fn package(&self, id: PackageId) -> &'u Package {
        self.universe.package(id)
    }

    fn is_chosen(&self, id: PackageId) -> bool {
        self.why[id.index()].is_some()
    }

    /// The chain that led to a chosen package: "`web` (requested) → `app`".
    fn chain(&self, id: PackageId) -> String {
        let mut links = Vec::new();
        let mut current = Some(id);
        let mut root = String::new();
        while let Some(id) = current {
            let why = self.why[id.index()].as_ref().expect("chain of a chosen package");
            links.push(format!("`{}`", self.universe.display(id)));
            current = why.parent;
            if current.is_none() {
                root = match &why.reason {
                    None => " (installed)".to_owned(),
                    Some(Reason::Requested(text)) => {
                        links.pop();
                        links.push(format!("`{text}`"));
                        " (requested)".to_owned()
                    }
                    Some(Reason::Essential) => " (Essential: yes)".to_owned(),
                    Some(Reason::Priority) => " (Priority: required)".to_owned(),
                    Some(Reason::Dependency { .. }) => String::new(),
                };
            }
        }
        links.reverse();
        links[0].push_str(&root);
        links.join(" → ")
    }

    /// The chain of a package about to be chosen for `why`.
    fn chain_of_new(&self, id: PackageId, why: &Why) -> String {
        let me = format!("`{}`", self.universe.display(id));
        match (why.parent, &why.reason) {
            (Some(parent), _) => format!("{} → {me}", self.chain(parent)),
            (None, Some(Reason::Requested(text))) => format!("`{text}` (requested)"),
            (None, Some(Reason::Essential)) => format!("{me} (Essential: yes)"),
            (None, Some(Reason::Priority)) => format!("{me} (Priority: required)"),
            (None, _) => format!("{me} (installed)"),
        }
    }

    /// The package a request names (see the module docs for versioned and virtual requests).
    fn select_requested(&self, requested: &Requested) -> Result<PackageId, ResolveError> {
        let u = self.universe;
        let relation = &requested.relation;
        let name = relation.name.as_str();
        let arch: &str = match &relation.arch {
            None | Some(ArchQualifier::Any) | Some(ArchQualifier::Native) => u.native.as_str(),
            Some(ArchQualifier::Arch(a)) => {
                if !u.installable_arch(a) {
                    return Err(ResolveError::BadRequest {
                        text: requested.text.clone(),
                        reason: format!("architecture `{a}` is not enabled for this image"),
                    });
                }
                a.as_str()
            }
        };
        if self.excluded.contains(name) {
            return Err(ResolveError::Excluded {
                name: name.to_owned(),
                needed_by: "the request".to_owned(),
                chain: format!("`{}` (requested)", requested.text),
            });
        }
        let of_arch = |id: &&PackageId| u.effective_arch(u.package(**id)) == arch;
        let versions: Vec<PackageId> = u.versions(name).iter().filter(of_arch).copied().collect();
        if !versions.is_empty() {
            let best = if relation.version.is_none() {
                versions.iter().copied().find(|&id| u.is_candidate(id))
            } else {
                // The highest version that meets the constraint; the earliest added on a tie.
                versions
                    .iter()
                    .copied()
                    .filter(|&id| relation.version_satisfied_by(&u.package(id).version))
                    .max_by(|a, b| u.package(*a).version.cmp(&u.package(*b).version).then_with(|| b.cmp(a)))
            };
            return best.ok_or_else(|| ResolveError::RequestUnsatisfiable {
                text: requested.text.clone(),
                available: self.describe_available(std::slice::from_ref(relation)),
            });
        }
        let mut providers: Vec<PackageId> = u
            .providers(name)
            .iter()
            .copied()
            .filter(|&id| {
                let p = u.package(id);
                u.is_candidate(id)
                    && u.effective_arch(p) == arch
                    && !self.excluded.contains(p.name.as_str())
                    && p.provides.iter().any(|provide| provide.satisfies(relation))
            })
            .collect();
        self.sort_providers(arch, &mut providers);
        providers.dedup();
        match providers.as_slice() {
            [] => Err(ResolveError::NoPackage { name: relation.to_string(), chain: "requested".to_owned() }),
            [one] => Ok(*one),
            several => Err(ResolveError::VirtualRequest {
                name: name.to_owned(),
                text: format!("`{}`", requested.text),
                providers: several.iter().map(|&id| format!("`{}`", u.display(id))).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// What the archive offers for a relation, for error messages: "`libfoo 1.4`", or "no
    /// `libfoo`".
    fn describe_available(&self, relations: &[Relation]) -> String {
        let u = self.universe;
        let mut parts = Vec::new();
        for relation in relations {
            for id in u.candidates(relation.name.as_str()) {
                parts.push(format!("`{} {}`", u.display(id), u.package(id).version));
            }
            let mut providers: Vec<PackageId> =
                u.providers(relation.name.as_str()).iter().copied().filter(|&id| u.is_candidate(id)).collect();
            self.sort_providers(u.native.as_str(), &mut providers);
            providers.dedup();
            for id in providers {
                let p = u.package(id);
                for provide in p.provides.iter().filter(|pr| pr.name == relation.name) {
                    parts.push(format!("`{} {}` providing `{provide}`", u.display(id), p.version));
                }
            }
        }
        if parts.is_empty() {
            let names: Vec<String> = relations.iter().map(|r| format!("`{}`", r.name)).collect();
            format!("no {}", names.join(" or "))
        } else {
            parts.join(", ")
        }
    }

    /// Orders providers by the rule in the module docs.
    fn sort_providers(&self, from: &str, ids: &mut [PackageId]) {
        let u = self.universe;
        ids.sort_by_cached_key(|&id| {
            let p = u.package(id);
            let rank = p.priority.map_or(5, |priority| priority as u8);
            (
                !self.is_chosen(id),
                !(p.essential || p.priority == Some(Priority::Required)),
                rank,
                p.name.clone(),
                u.arch_rank(from, p),
                p.architecture.clone(),
                id,
            )
        });
    }

    /// Whether a chosen (or installed) package meets `relation`, written by a package of
    /// architecture `from`.
    fn satisfied(&self, from: &str, relation: &Relation) -> bool {
        let u = self.universe;
        let name = relation.name.as_str();
        let real = self.by_name.get(name).into_iter().flatten().any(|&id| {
            let p = u.package(id);
            u.dependency_arch_ok(from, relation, p) && relation.version_satisfied_by(&p.version)
        });
        real || self.by_provide.get(name).into_iter().flatten().any(|&id| {
            let p = u.package(id);
            u.dependency_arch_ok(from, relation, p) && p.provides.iter().any(|provide| provide.satisfies(relation))
        })
    }

    /// The chosen (or installed) packages that meet `relation`, written by a package of
    /// architecture `from`: the real packages of its name, then its providers (the two halves
    /// of [`Self::satisfied`]).
    fn satisfiers(&self, from: &str, relation: &Relation) -> Vec<PackageId> {
        let u = self.universe;
        let name = relation.name.as_str();
        let real = self.by_name.get(name).into_iter().flatten().filter(|&&id| {
            let p = u.package(id);
            u.dependency_arch_ok(from, relation, p) && relation.version_satisfied_by(&p.version)
        });
        let provided = self.by_provide.get(name).into_iter().flatten().filter(|&&id| {
            let p = u.package(id);
            u.dependency_arch_ok(from, relation, p) && p.provides.iter().any(|provide| provide.satisfies(relation))
        });
        real.chain(provided).copied().collect()
    }

    /// What chosen package `id` depends on in the final set (see [`Chosen::depends`]). Called
    /// once the walk is over, so that an item met by a package chosen later still counts.
    fn dependencies(&self, id: PackageId) -> Vec<PackageId> {
        let p = self.package(id);
        let from = self.universe.effective_arch(p);
        let mut depends: Vec<PackageId> = p
            .pre_depends
            .iter()
            .chain(p.depends.iter())
            .flat_map(|alternatives| {
                alternatives.iter().map(|relation| self.satisfiers(from, relation)).find(|s| !s.is_empty())
            })
            .flatten()
            .filter(|&target| target != id)
            .collect();
        depends.sort();
        depends.dedup();
        depends
    }

    /// The packages that could be chosen for `relation`, best first, and whether an excluded
    /// package was left out.
    fn targets(&self, from: &str, relation: &Relation) -> (Vec<PackageId>, Option<String>) {
        let u = self.universe;
        let name = relation.name.as_str();
        let mut excluded = None;
        let mut real: Vec<PackageId> = u
            .names
            .get(name)
            .map(|e| e.candidates.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&id| {
                let p = u.package(id);
                u.installable_arch(&p.architecture)
                    && u.dependency_arch_ok(from, relation, p)
                    && relation.version_satisfied_by(&p.version)
            })
            .collect();
        if !real.is_empty() && self.excluded.contains(name) {
            excluded = Some(name.to_owned());
            real.clear();
        }
        real.sort_by_cached_key(|&id| (u.arch_rank(from, u.package(id)), u.package(id).architecture.clone()));
        let mut providers: Vec<PackageId> = Vec::new();
        for &id in u.providers(name) {
            let p = u.package(id);
            if p.name == relation.name
                || !u.is_candidate(id)
                || !u.installable_arch(&p.architecture)
                || !u.dependency_arch_ok(from, relation, p)
                || !p.provides.iter().any(|provide| provide.satisfies(relation))
            {
                continue;
            }
            if self.excluded.contains(p.name.as_str()) {
                excluded.get_or_insert_with(|| p.name.to_string());
                continue;
            }
            providers.push(id);
        }
        self.sort_providers(from, &mut providers);
        providers.dedup();
        real.extend(providers);
        (real, excluded)
    }

    /// Records `id` as chosen without any check (installed packages).
    fn mark_unchecked(&mut self, id: PackageId, why: Why) {
        if self.is_chosen(id) {
            return;
        }
        let p = self.package(id);
        self.why[id.index()] = Some(why);
        self.trail.push(id);
        self.by_name.entry(p.name.as_str()).or_default().push(id);
        for provide in &p.provides {
            let list = self.by_provide.entry(provide.name.as_str()).or_default();
            if list.last() != Some(&id) {
                list.push(id);
            }
        }
        for (field, relations) in [("Conflicts", &p.conflicts), ("Breaks", &p.breaks)] {
            for relation in relations.iter().flat_map(Alternatives::iter) {
                self.negatives.entry(relation.name.as_str()).or_default().push(Negative { by: id, field, relation });
            }
        }
    }

    /// Takes back every choice made after the trail had `len` entries.
    fn undo(&mut self, len: usize) {
        while self.trail.len() > len {
            let id = self.trail.pop().expect("trail longer than len");
            let p = self.package(id);
            self.why[id.index()] = None;
            let pop = |list: Option<&mut Vec<PackageId>>| {
                if let Some(list) = list {
                    list.retain(|&other| other != id);
                }
            };
            pop(self.by_name.get_mut(p.name.as_str()));
            for provide in &p.provides {
                pop(self.by_provide.get_mut(provide.name.as_str()));
            }
            for relation in p.conflicts.iter().chain(p.breaks.iter()).flat_map(Alternatives::iter) {
                if let Some(list) = self.negatives.get_mut(relation.name.as_str()) {
                    list.retain(|n| n.by != id);
                }
            }
        }
    }

    /// Chooses `id` for `why` after checking it is not excluded and conflicts with nothing
    /// chosen. Returns whether it was newly chosen.
    fn mark(&mut self, id: PackageId, why: Why) -> Result<bool, ResolveError> {
        if self.is_chosen(id) {
            return Ok(false);
        }
        self.check_conflicts(id, &why)?;
        self.mark_unchecked(id, why);
        Ok(true)
    }

    fn conflict(&self, a: PackageId, a_chain: String, b: PackageId, b_chain: String, field: String) -> ResolveError {
        ResolveError::Conflict { a: self.universe.display(a), b: self.universe.display(b), field, a_chain, b_chain }
    }

    /// Whether the `Conflicts`/`Breaks` item `relation` of package `by` hits `target`.
    fn hits(&self, by: PackageId, relation: &Relation, target: PackageId) -> bool {
        let u = self.universe;
        let (conflictor, p) = (u.package(by), u.package(target));
        if conflictor.name == p.name {
            return false;
        }
        if p.name == relation.name {
            return u.conflict_arch_ok(relation, p) && relation.version_satisfied_by(&p.version);
        }
        relation.version.is_none() && p.provides.iter().any(|provide| provide.name == relation.name)
    }

    fn check_conflicts(&self, id: PackageId, why: &Why) -> Attempt {
        let u = self.universe;
        let p = self.package(id);
        let new_chain = || self.chain_of_new(id, why);
        // Another version or architecture of the same package.
        for &other in self.by_name.get(p.name.as_str()).into_iter().flatten() {
            let o = u.package(other);
            let same_arch = u.effective_arch(o) == u.effective_arch(p);
            let coinstallable = !same_arch
                && o.multi_arch == MultiArch::Same
                && p.multi_arch == MultiArch::Same
                && o.version == p.version;
            if !coinstallable {
                let field = if same_arch {
                    format!("another version: {} and {}", p.version, o.version)
                } else {
                    "two architectures, not both `Multi-Arch: same` at one version".to_owned()
                };
                return Err(self.conflict(id, new_chain(), other, self.chain(other), field));
            }
        }
        // What this package conflicts with or breaks.
        for (field, relations) in [("Conflicts", &p.conflicts), ("Breaks", &p.breaks)] {
            for relation in relations.iter().flat_map(Alternatives::iter) {
                let name = relation.name.as_str();
                let real = self.by_name.get(name).into_iter().flatten();
                let virtual_ = self.by_provide.get(name).into_iter().flatten();
                if let Some(&other) = real.chain(virtual_).find(|&&other| self.hits(id, relation, other)) {
                    let field = format!("{field}: {relation}");
                    return Err(self.conflict(id, new_chain(), other, self.chain(other), field));
                }
            }
        }
        // What chosen packages conflict with or break.
        let names = std::iter::once(p.name.as_str()).chain(p.provides.iter().map(|pr| pr.name.as_str()));
        for name in names {
            for negative in self.negatives.get(name).into_iter().flatten() {
                if self.hits(negative.by, negative.relation, id) {
                    let field = format!("{}: {}", negative.field, negative.relation);
                    return Err(self.conflict(negative.by, self.chain(negative.by), id, new_chain(), field));
                }
            }
        }
        Ok(())
    }

    /// Chooses `id` and, if it is new, everything it depends on.
    fn install(&mut self, id: PackageId, why: Why) -> Attempt {
        if self.mark(id, why)? {
            self.resolve_dependencies(id)?;
        }
        Ok(())
    }

    /// Meets every `Pre-Depends` and `Depends` item of chosen package `id`, in field order.
    ///
    /// Like apt's `MarkInstall`, this first marks the targets of the items that leave no
    /// choice (one relation, met by a real package), without their dependencies, and only then
    /// recurses item by item. Without that, an alternatives group deeper down could pick a
    /// package that conflicts with one of these direct dependencies: `libreoffice-base` depends
    /// on `libreoffice-core` and on `libreoffice-base-core`, which depends on
    /// `libreoffice-core-nogui | libreoffice-core`; apt takes `libreoffice-core` for both.
    fn resolve_dependencies(&mut self, id: PackageId) -> Attempt {
        let p = self.package(id);
        let from = self.universe.effective_arch(p);
        let items: Vec<&'u Alternatives> = p.pre_depends.iter().chain(p.depends.iter()).collect();
        let mut marked: Vec<Option<PackageId>> = vec![None; items.len()];
        for (slot, alternatives) in marked.iter_mut().zip(&items) {
            let [relation] = alternatives.as_slice() else { continue };
            if self.satisfied(from, relation) {
                continue;
            }
            let (targets, _) = self.targets(from, relation);
            let Some(&target) = targets.first() else { continue };
            if self.package(target).name != relation.name {
                continue;
            }
            let why = self.dependency_why(id, alternatives);
            // A failure here is left for the item-by-item pass to report (or work around).
            if let Ok(true) = self.mark(target, why) {
                *slot = Some(target);
            }
        }
        for (alternatives, marked) in items.into_iter().zip(marked) {
            match marked {
                Some(target) => self.resolve_dependencies(target)?,
                None => self.satisfy(id, alternatives)?,
            }
        }
        Ok(())
    }

    fn dependency_why(&self, parent: PackageId, alternatives: &Alternatives) -> Why {
        Why {
            reason: Some(Reason::Dependency {
                of: self.package(parent).name.clone(),
                relation: alternatives.to_string(),
            }),
            parent: Some(parent),
        }
    }

    /// Meets one dependency item of `parent`, trying alternatives and their targets in order.
    fn satisfy(&mut self, parent: PackageId, alternatives: &'u Alternatives) -> Attempt {
        let u = self.universe;
        let from = u.effective_arch(u.package(parent));
        if alternatives.iter().any(|relation| self.satisfied(from, relation)) {
            return Ok(());
        }
        let mut first_error = None;
        let mut excluded = None;
        for relation in alternatives.iter() {
            let (targets, left_out) = self.targets(from, relation);
            if excluded.is_none() {
                excluded = left_out;
            }
            for target in targets {
                let mark = self.trail.len();
                let why = self.dependency_why(parent, alternatives);
                match self.install(target, why) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        self.undo(mark);
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let chain = format!("{} → `{alternatives}`", self.chain(parent));
        if let Some(name) = excluded {
            return Err(ResolveError::Excluded { name, needed_by: format!("`{}`", u.display(parent)), chain });
        }
        let relations = alternatives.as_slice();
        let nothing =
            relations.iter().all(|r| u.versions(r.name.as_str()).is_empty() && u.providers(r.name.as_str()).is_empty());
        if let ([relation], true) = (relations, nothing) {
            return Err(ResolveError::NoPackage { name: relation.name.to_string(), chain });
        }
        Err(ResolveError::Unsatisfiable {
            package: u.display(parent),
            relation: alternatives.to_string(),
            available: self.describe_available(relations),
            chain,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::packages::{parse_index, ParseRequestError};
    use super::*;

    const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    /// Parses short stanzas: `Version` defaults to `1.0` and `Architecture` to `amd64`, and the
    /// fetch fields every index entry needs are filled in.
    fn index(text: &str) -> Vec<Package> {
        let mut full = String::new();
        for stanza in text.split("\n\n").map(str::trim).filter(|s| !s.is_empty()) {
            let lines: Vec<&str> = stanza.lines().map(str::trim).collect();
            full.push_str(&lines.join("\n"));
            full.push('\n');
            if !stanza.contains("Version:") {
                full.push_str("Version: 1.0\n");
            }
            if !stanza.contains("Architecture:") {
                full.push_str("Architecture: amd64\n");
            }
            full.push_str(&format!("Filename: pool/xx.deb\nSize: 1\nSHA256: {HASH}\n\n"));
        }
        parse_index(&full).unwrap_or_else(|ee| panic!("{ee}: {:?}", std::error::Error::source(&ee)))
    }

    fn universe(text: &str) -> Universe {
        let mut u = Universe::new("amd64".parse().unwrap(), vec!["i386".parse().unwrap()]);
        u.add(0, index(text));
        u
    }

    fn request(items: &[&str]) -> Request {
        Request { packages: items.iter().map(|s| Requested::parse(s).unwrap()).collect(), ..Request::default() }
    }

    /// `name version arch` of each chosen package.
    fn names(u: &Universe, r: &Resolution) -> Vec<String> {
        r.chosen
            .iter()
            .map(|cc| {
                let p = u.package(cc.id);
                format!("{} {} {}", p.name, p.version, p.architecture)
            })
            .collect()
    }

    /// Just the names (with `:arch` when foreign), for tests where versions do not matter.
    fn short(u: &Universe, r: &Resolution) -> Vec<String> {
        r.chosen.iter().map(|cc| u.display(cc.id)).collect()
    }

    fn ok(u: &Universe, items: &[&str]) -> Vec<String> {
        short(u, &resolve(u, &[], &request(items)).unwrap_or_else(|ee| panic!("{ee}")))
    }

    fn err(u: &Universe, items: &[&str]) -> String {
        match resolve(u, &[], &request(items)) {
            Ok(r) => panic!("resolved to {:?}", short(u, &r)),
            Err(ee) => ee.to_string(),
        }
    }

    fn id(u: &Universe, name: &str, version: &str) -> PackageId {
        (0..u.len())
            .map(|i| PackageId(i as u32))
            .find(|&id| u.package(id).name.as_str() == name && u.package(id).version.as_str() == version)
            .unwrap()
    }

    /// The edges of each chosen package: every package that meets an item's first met
    /// alternative (a real package, or each provider of a virtual name), including packages an
    /// earlier layer installed; not the package itself.
    #[test]
    fn dependency_edges_are_the_packages_that_meet_each_item() {
        let u = universe(
            "Package: web\nPre-Depends: libc\nDepends: app, nosuch | mawk, awk, web\n\n\
             Package: app\nDepends: libc (>= 1), awk\n\n\
             Package: mawk\nProvides: awk\n\n\
             Package: gawk\nProvides: awk\n\n\
             Package: libc\n",
        );
        let base = resolve(&u, &[], &request(&["libc"])).unwrap();
        assert!(base.chosen[0].depends.is_empty());
        let installed: Vec<PackageId> = base.chosen.iter().map(|c| c.id).collect();
        let r = resolve(&u, &installed, &request(&["web", "gawk"])).unwrap();
        let edges: Vec<(String, Vec<String>)> =
            r.chosen.iter().map(|c| (u.display(c.id), c.depends.iter().map(|&d| u.display(d)).collect())).collect();
        let edge = |of: &str, to: &[&str]| (of.to_owned(), to.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        assert_eq!(
            edges,
            [
                // `awk` is provided by both chosen packages: both are edges.
                edge("app", &["mawk", "gawk", "libc"]),
                edge("gawk", &[]),
                edge("mawk", &[]),
                edge("web", &["app", "mawk", "gawk", "libc"]),
            ]
        );
    }

    #[test]
    fn simple_chain_with_reasons() {
        let u = universe(
            "Package: web\nDepends: app\n\n\
             Package: app\nPre-Depends: libc\nDepends: libfoo (>= 2)\n\n\
             Package: libfoo\nVersion: 2.1\nDepends: libc\n\n\
             Package: libc\n\n\
             Package: unrelated\n",
        );
        let r = resolve(&u, &[], &request(&["web"])).unwrap();
        assert_eq!(names(&u, &r), ["app 1.0 amd64", "libc 1.0 amd64", "libfoo 2.1 amd64", "web 1.0 amd64"]);
        let reasons: Vec<&Reason> = r.chosen.iter().map(|cc| &cc.reason).collect();
        let dep = |of: &str, relation: &str| Reason::Dependency { of: of.parse().unwrap(), relation: relation.into() };
        assert_eq!(
            reasons,
            [&dep("web", "app"), &dep("app", "libc"), &dep("app", "libfoo (>= 2)"), &Reason::Requested("web".into())]
        );
    }

    #[test]
    fn requests_parse_one_relation() {
        let r = Requested::parse(" python3 (>= 3.11) ").unwrap();
        assert_eq!((r.relation.to_string().as_str(), r.text.as_str()), ("python3 (>= 3.11)", "python3 (>= 3.11)"));
        assert_eq!(
            Requested::parse("libc6:i386").unwrap().relation.arch,
            Some(ArchQualifier::Arch("i386".parse().unwrap()))
        );
        assert!(matches!(Requested::parse("aa | bb"), Err(ParseRequestError::NotOne(_))));
        assert!(matches!(Requested::parse("aa, bb"), Err(ParseRequestError::NotOne(_))));
        assert!(matches!(Requested::parse("A"), Err(ParseRequestError::Relation(_))));
    }

    #[test]
    fn alternatives_take_the_first_installable() {
        let u = universe(
            "Package: xx\nDepends: missing | old (>= 2) | bb | cc\n\n\
             Package: old\n\n\
             Package: bb\n\n\
             Package: cc\n",
        );
        assert_eq!(ok(&u, &["xx"]), ["bb", "xx"]);
    }

    #[test]
    fn alternatives_prefer_what_is_already_chosen() {
        let u = universe("Package: xx\nDepends: bb | cc\n\nPackage: bb\n\nPackage: cc\n");
        // Requested packages are all marked before any dependency is resolved, as apt-get does.
        assert_eq!(ok(&u, &["xx", "cc"]), ["cc", "xx"]);
        let installed = [id(&u, "cc", "1.0")];
        let r = resolve(&u, &installed, &request(&["xx"])).unwrap();
        assert_eq!(short(&u, &r), ["xx"], "installed packages count as chosen but are not returned");
    }

    #[test]
    fn alternatives_skip_a_conflicting_one_and_backtrack() {
        let u = universe(
            "Package: yy\nConflicts: bb\n\n\
             Package: xx\nDepends: bb | cc\n\n\
             Package: bb\n\n\
             Package: cc\n",
        );
        assert_eq!(ok(&u, &["yy", "xx"]), ["cc", "xx", "yy"]);

        // The conflict is two levels below the alternatives point: `a` is taken, then its
        // dependency `d` breaks `y`; everything `a` pulled in is taken back and `b` is used.
        let u = universe(
            "Package: yy\n\n\
             Package: xx\nDepends: aa | bb\n\n\
             Package: aa\nDepends: ee, dd\n\n\
             Package: ee\n\n\
             Package: dd\nBreaks: yy (<< 2)\n\n\
             Package: bb\n",
        );
        assert_eq!(ok(&u, &["yy", "xx"]), ["bb", "xx", "yy"]);
    }

    #[test]
    fn direct_dependencies_are_marked_before_deeper_alternatives() {
        // libreoffice-base's shape: the deeper `nogui | core` must not pick `nogui`, which
        // conflicts with the `core` that base needs directly.
        let u = universe(
            "Package: base\nDepends: base-core, core\n\n\
             Package: base-core\nDepends: core-nogui | core\n\n\
             Package: core\nConflicts: core-nogui\n\n\
             Package: core-nogui\nConflicts: core\n",
        );
        let r = resolve(&u, &[], &request(&["base"])).unwrap();
        assert_eq!(short(&u, &r), ["base", "base-core", "core"]);
        let dep = |of: &str, relation: &str| Reason::Dependency { of: of.parse().unwrap(), relation: relation.into() };
        assert_eq!(r.chosen[2].reason, dep("base", "core"));
    }

    #[test]
    fn conflicts_without_a_way_out_name_both_chains() {
        let u = universe(
            "Package: web\nDepends: app\n\n\
             Package: app\nDepends: aa\n\n\
             Package: aa\nConflicts: bb\n\n\
             Package: db\nDepends: bb\n\n\
             Package: bb\n",
        );
        assert_eq!(
            err(&u, &["web", "db"]),
            "`aa` conflicts with `bb` (`Conflicts: bb`), both needed: `aa` because `web` (requested) → `app` → `aa`, \
             `bb` because `db` (requested) → `bb`"
        );
        // The other way round: `b` is chosen first and `a`'s conflict is found from `a`'s side.
        assert_eq!(
            err(&u, &["db", "web"]),
            "`aa` conflicts with `bb` (`Conflicts: bb`), both needed: `aa` because `web` (requested) → `app` → `aa`, \
             `bb` because `db` (requested) → `bb`"
        );
        // Breaks are a conflict too, and a versioned one only hits the versions it names.
        let u =
            universe("Package: aa\nBreaks: bb (<< 2)\n\nPackage: bb\nVersion: 1.5\n\nPackage: cc\nBreaks: bb (<< 1)\n");
        assert_eq!(
            err(&u, &["aa", "bb"]),
            "`aa` conflicts with `bb` (`Breaks: bb (<< 2)`), both needed: `aa` because `aa` (requested), \
             `bb` because `bb` (requested)"
        );
        assert_eq!(ok(&u, &["cc", "bb"]), ["bb", "cc"]);
    }

    #[test]
    fn conflicts_on_virtual_names() {
        let u = universe(
            "Package: postfix\nProvides: mail-transport-agent\nConflicts: mail-transport-agent\n\n\
             Package: exim\nProvides: mail-transport-agent\nConflicts: mail-transport-agent\n\n\
             Package: old\nConflicts: mail-transport-agent (<< 2)\n",
        );
        // A package does not conflict with itself through its own provide.
        assert_eq!(ok(&u, &["postfix"]), ["postfix"]);
        assert_eq!(
            err(&u, &["postfix", "exim"]),
            "`exim` conflicts with `postfix` (`Conflicts: mail-transport-agent`), both needed: \
             `exim` because `exim` (requested), `postfix` because `postfix` (requested)"
        );
        // A versioned conflict does not hit a provide.
        assert_eq!(ok(&u, &["old", "exim"]), ["exim", "old"]);
    }

    #[test]
    fn versioned_dependencies() {
        let text = "Package: web\nDepends: app\n\n\
                    Package: app\nDepends: libfoo (>= 2)\n\n\
                    Package: libfoo\nVersion: 1.4\n";
        let u = universe(text);
        assert_eq!(
            err(&u, &["web"]),
            "`app` needs `libfoo (>= 2)`, but the archive has `libfoo 1.4` (`web` (requested) → `app` → `libfoo (>= 2)`)"
        );
        // Met by the candidate when a newer version is added from a second archive …
        let mut u = universe(text);
        u.add(1, index("Package: libfoo\nVersion: 2.0\n\nPackage: libfoo\nVersion: 1:0.1\n"));
        let r = resolve(&u, &[], &request(&["web"])).unwrap();
        assert_eq!(names(&u, &r), ["app 1.0 amd64", "libfoo 1:0.1 amd64", "web 1.0 amd64"]);
        // … but never by an older version than the candidate.
        let u = universe("Package: aa\nDepends: bb (<< 2)\n\nPackage: bb\nVersion: 1\n\nPackage: bb\nVersion: 3\n");
        assert_eq!(
            err(&u, &["aa"]),
            "`aa` needs `bb (<< 2)`, but the archive has `bb 3` (`aa` (requested) → `bb (<< 2)`)"
        );
        // A versioned request selects the highest version that meets it, and installs that.
        let r = resolve(&u, &[], &request(&["bb (<< 2)", "aa"])).unwrap();
        assert_eq!(names(&u, &r), ["aa 1.0 amd64", "bb 1 amd64"]);
        let u = universe("Package: hello\nVersion: 1.0-1\n\nPackage: hello\nVersion: 2.0-1\n");
        let r = resolve(&u, &[], &request(&["hello (= 1.0-1)"])).unwrap();
        assert_eq!(names(&u, &r), ["hello 1.0-1 amd64"]);
        assert_eq!(r.chosen[0].reason, Reason::Requested("hello (= 1.0-1)".into()));
        assert_eq!(err(&u, &["hello (= 3)"]), "`hello (= 3)` was requested, but the archive has `hello 2.0-1`");
        assert_eq!(err(&u, &["nosuch"]), "no package `nosuch` (requested)");
        let u = universe("Package: aa\nDepends: bb\n\nPackage: bb\nDepends: nosuch (>= 1)\n");
        assert_eq!(err(&u, &["aa"]), "no package `nosuch` (`aa` (requested) → `bb` → `nosuch (>= 1)`)");
    }

    #[test]
    fn version_ties_go_to_the_first_archive() {
        let mut u = universe("Package: aa\nVersion: 1\nDepends: bb\n\nPackage: bb\nVersion: 1\n");
        u.add(1, index("Package: aa\nVersion: 1\n\nPackage: bb\nVersion: 1\n"));
        let r = resolve(&u, &[], &request(&["aa"])).unwrap();
        assert!(r.chosen.iter().all(|cc| u.archive_of(cc.id) == 0));
        let r = resolve(&u, &[], &request(&["aa (= 1)"])).unwrap();
        assert!(r.chosen.iter().all(|cc| u.archive_of(cc.id) == 0));
    }

    #[test]
    fn virtual_packages() {
        // One provider.
        let u = universe("Package: xx\nDepends: awk\n\nPackage: mawk\nProvides: awk\n");
        assert_eq!(ok(&u, &["xx"]), ["mawk", "xx"]);
        assert_eq!(ok(&u, &["awk"]), ["mawk"], "aa virtual request with one provider takes it");
        // Several: required/essential first, then by priority, then by name.
        let u = universe(
            "Package: xx\nDepends: awk\n\n\
             Package: yy\nDepends: mta\n\n\
             Package: zz\nDepends: shell\n\n\
             Package: gawk\nPriority: optional\nProvides: awk\n\n\
             Package: mawk\nPriority: required\nProvides: awk\n\n\
             Package: aawk\nProvides: awk\n\n\
             Package: postfix\nPriority: optional\nProvides: mta\n\n\
             Package: exim\nPriority: standard\nProvides: mta\n\n\
             Package: zsh\nPriority: optional\nProvides: shell\n\n\
             Package: fish\nPriority: optional\nProvides: shell\n\n\
             Package: ysh\nEssential: yes\nPriority: optional\nProvides: shell\n",
        );
        assert_eq!(ok(&u, &["xx"]), ["mawk", "xx"]);
        assert_eq!(ok(&u, &["yy"]), ["exim", "yy"]);
        assert_eq!(ok(&u, &["zz"]), ["ysh", "zz"]);
        assert_eq!(ok(&u, &["zz", "fish"]), ["fish", "zz"], "an already chosen provider wins");
        assert_eq!(
            err(&u, &["awk"]),
            "`awk` is a virtual package provided by `mawk`, `gawk`, `aawk`; request one of them (`awk` requested)"
        );
        // A real package beats a provider.
        let u = universe("Package: xx\nDepends: awk\n\nPackage: awk\nPriority: extra\n\nPackage: mawk\nPriority: required\nProvides: awk\n");
        assert_eq!(ok(&u, &["xx"]), ["awk", "xx"]);
        // Versioned provides meet versioned relations only when the version does.
        let u = universe(
            "Package: xx\nDepends: libfoo-api (>= 2)\n\n\
             Package: old\nProvides: libfoo-api (= 1)\n\n\
             Package: bare\nPriority: required\nProvides: libfoo-api\n\n\
             Package: new\nProvides: libfoo-api (= 2.5)\n",
        );
        assert_eq!(ok(&u, &["xx"]), ["new", "xx"]);
        let u = universe(
            "Package: xx\nDepends: api (>= 2)\n\nPackage: bare\nProvides: api\n\nPackage: old\nProvides: api (= 1)\n",
        );
        assert_eq!(
            err(&u, &["xx"]),
            "`xx` needs `api (>= 2)`, but the archive has `bare 1.0` providing `api`, `old 1.0` providing `api (= 1)` \
             (`xx` (requested) → `api (>= 2)`)"
        );
    }

    #[test]
    fn exclude() {
        let u = universe(
            "Package: web\nDepends: app\n\n\
             Package: app\nDepends: libfoo\n\n\
             Package: libfoo\n\n\
             Package: xx\nDepends: aa | bb\n\n\
             Package: aa\n\nPackage: bb\n",
        );
        let mut req = request(&["web"]);
        req.exclude = vec!["libfoo".parse().unwrap()];
        assert_eq!(
            resolve(&u, &[], &req).unwrap_err().to_string(),
            "`libfoo` is excluded but `app` needs it (`web` (requested) → `app` → `libfoo`)"
        );
        let mut req = request(&["xx"]);
        req.exclude = vec!["aa".parse().unwrap()];
        assert_eq!(short(&u, &resolve(&u, &[], &req).unwrap()), ["bb", "xx"]);
        let mut req = request(&["aa"]);
        req.exclude = vec!["aa".parse().unwrap()];
        assert_eq!(
            resolve(&u, &[], &req).unwrap_err().to_string(),
            "`aa` is excluded but the request needs it (`aa` (requested))"
        );
    }

    #[test]
    fn priority_required_and_essential() {
        let mut u = universe(
            "Package: base-files\nEssential: yes\nPriority: required\nPre-Depends: awk\n\n\
             Package: mawk\nPriority: required\nProvides: awk\n\n\
             Package: gawk\nPriority: optional\nProvides: awk\n\n\
             Package: bash\nEssential: yes\nPriority: required\nDepends: base-files\n\n\
             Package: tzdata\nPriority: required\nArchitecture: all\n\n\
             Package: apt\nPriority: important\nDepends: libapt\n\n\
             Package: libapt\nPriority: optional\n\n\
             Package: sysvinit\nEssential: yes\nPriority: optional\nDepends: libapt\n\n\
             Package: old\nPriority: required\nVersion: 1\n\n\
             Package: old\nPriority: optional\nVersion: 2\n\n\
             Package: libc6\nPriority: required\nArchitecture: i386\n",
        );
        let mut req = request(&[]);
        req.priority_required = true;
        let r = resolve(&u, &[], &req).unwrap();
        assert_eq!(short(&u, &r), ["base-files", "bash", "mawk", "tzdata"]);
        assert_eq!(r.chosen[0].reason, Reason::Priority);
        req.essential = true;
        req.packages = vec![Requested::parse("apt").unwrap()];
        let r = resolve(&u, &[], &req).unwrap();
        assert_eq!(short(&u, &r), ["apt", "base-files", "bash", "libapt", "mawk", "sysvinit", "tzdata"]);
        let reasons: Vec<String> = r.chosen.iter().map(|cc| cc.reason.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "requested as `apt`",
                "Essential: yes",
                "Essential: yes",
                "`apt` depends on `libapt`",
                "Priority: required",
                "Essential: yes",
                "Priority: required"
            ]
        );
        // Excluded packages are left out of these sets.
        req.exclude = vec!["sysvinit".parse().unwrap()];
        assert!(!short(&u, &resolve(&u, &[], &req).unwrap()).contains(&"sysvinit".to_owned()));
        u.add(1, index("Package: mawk\nVersion: 2\nPriority: optional\nProvides: awk\n"));
        req = request(&[]);
        req.priority_required = true;
        // mawk's candidate is no longer required, so the `awk` providers tie on priority and
        // the name decides.
        let r = resolve(&u, &[], &req).unwrap();
        assert_eq!(names(&u, &r)[2], "gawk 1.0 amd64");
    }

    #[test]
    fn multi_arch() {
        let u = universe(
            "Package: app\nDepends: libc6, python3, perl:any, tool:native, data\n\n\
             Package: libc6\nMulti-Arch: same\n\n\
             Package: libc6\nMulti-Arch: same\nArchitecture: i386\n\n\
             Package: python3\nMulti-Arch: allowed\nArchitecture: i386\n\n\
             Package: perl\nMulti-Arch: allowed\nArchitecture: i386\n\n\
             Package: tool\nMulti-Arch: foreign\nArchitecture: i386\n\n\
             Package: tool\nMulti-Arch: foreign\nVersion: 0.9\n\n\
             Package: data\nArchitecture: all\nDepends: libc6\n\n\
             Package: game\nArchitecture: i386\nDepends: libc6, tool, gzip:amd64\n\n\
             Package: gzip\nMulti-Arch: foreign\nVersion: 1\n\n\
             Package: gzip\nMulti-Arch: foreign\nVersion: 2\nArchitecture: i386\n\n\
             Package: single\n\n\
             Package: single\nArchitecture: i386\n\n\
             Package: arm\nArchitecture: arm64\n",
        );
        // `python3` of i386 is not `Multi-Arch: foreign`, so a plain amd64 dependency misses it.
        assert_eq!(
            err(&u, &["app"]),
            "`app` needs `python3`, but the archive has `python3:i386 1.0` (`app` (requested) → `python3`)"
        );
        let u2 = {
            let mut u2 = universe("");
            u2.add(0, u.packages.iter().filter(|p| p.name.as_str() != "python3").cloned().collect());
            u2.add(0, index("Package: python3\nMulti-Arch: allowed\n"));
            u2
        };
        // `perl:any` takes the i386 `Multi-Arch: allowed` perl; `tool:native` the amd64 tool,
        // and `data` (all) resolves `libc6` as native.
        assert_eq!(ok(&u2, &["app"]), ["app", "data", "libc6", "perl:i386", "python3", "tool"]);
        // A foreign package is installed when asked for; its plain dependencies are of its own
        // architecture, `Multi-Arch: foreign` ones of the native architecture first.
        assert_eq!(ok(&u, &["game:i386"]), ["game:i386", "gzip", "libc6:i386", "tool"]);
        // `Multi-Arch: same` co-installs; other packages do not.
        assert_eq!(ok(&u, &["libc6", "libc6:i386"]), ["libc6", "libc6:i386"]);
        assert!(err(&u, &["single", "single:i386"])
            .starts_with("`single:i386` conflicts with `single` (`two architectures"));
        // Only enabled architectures are installable.
        assert_eq!(
            err(&u, &["arm:arm64"]),
            "invalid request `arm:arm64`: architecture `arm64` is not enabled for this image"
        );
    }

    #[test]
    fn installed_packages_take_part_in_conflicts() {
        let u = universe("Package: aa\nConflicts: bb\n\nPackage: bb\n\nPackage: cc\nDepends: bb\n");
        let installed = [id(&u, "bb", "1.0")];
        let ee = resolve(&u, &installed, &request(&["aa"])).unwrap_err().to_string();
        assert_eq!(ee, "`aa` conflicts with `bb` (`Conflicts: bb`), both needed: `aa` because `aa` (requested), `bb` because `bb` (installed)");
        assert_eq!(short(&u, &resolve(&u, &installed, &request(&["cc"])).unwrap()), ["cc"]);
        assert_eq!(short(&u, &resolve(&u, &installed, &request(&["bb"])).unwrap()), Vec::<String>::new());
    }

    const MIXED: &str = "\
Package: web\nDepends: app | other, mta, awk\n\n\
Package: app\nDepends: libfoo (>= 2), libc6\n\n\
Package: other\n\n\
Package: libfoo\nVersion: 1\n\n\
Package: libfoo\nVersion: 2\nDepends: libc6\n\n\
Package: libc6\nMulti-Arch: same\nPriority: required\n\n\
Package: postfix\nPriority: optional\nProvides: mta\nConflicts: mta\n\n\
Package: exim\nPriority: optional\nProvides: mta\nConflicts: mta\n\n\
Package: mawk\nPriority: required\nProvides: awk\n\n\
Package: gawk\nPriority: optional\nProvides: awk\n\n\
Package: dash\nEssential: yes\nPriority: required\nPre-Depends: libc6\n\n\
Package: tzdata\nArchitecture: all\nPriority: required\n";

    fn summary(u: &Universe, r: &Resolution) -> Vec<(String, Reason)> {
        names(u, r).into_iter().zip(r.chosen.iter().map(|cc| cc.reason.clone())).collect()
    }

    #[test]
    fn deterministic_whatever_the_order_packages_are_added() {
        let packages = index(MIXED);
        let mut req = request(&["web"]);
        req.priority_required = true;
        req.essential = true;
        let mut expected = None;
        for rotation in 0..packages.len() {
            for reverse in [false, true] {
                let mut shuffled = packages.clone();
                shuffled.rotate_left(rotation);
                if reverse {
                    shuffled.reverse();
                }
                let mut u = Universe::new("amd64".parse().unwrap(), vec![]);
                u.add(0, shuffled);
                let got = summary(&u, &resolve(&u, &[], &req).unwrap());
                match &expected {
                    None => expected = Some(got),
                    Some(expected) => assert_eq!(&got, expected, "rotation {rotation}, reverse {reverse}"),
                }
            }
        }
        let expected = expected.unwrap();
        assert_eq!(
            expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            [
                "app 1.0 amd64",
                "dash 1.0 amd64",
                "exim 1.0 amd64",
                "libc6 1.0 amd64",
                "libfoo 2 amd64",
                "mawk 1.0 amd64",
                "tzdata 1.0 all",
                "web 1.0 amd64"
            ]
        );
    }

    /// An independent check of a resolution: every dependency is met by chosen or installed
    /// packages, and no two of them conflict. Single architecture only, so the rules are short.
    fn check_closed_and_conflict_free(
        u: &Universe,
        installed: &[PackageId],
        r: &Resolution,
    ) -> Result<(), TestCaseError> {
        let all: Vec<&Package> =
            installed.iter().chain(r.chosen.iter().map(|cc| &cc.id)).map(|&id| u.package(id)).collect();
        let meets = |relation: &Relation, p: &Package| {
            (p.name == relation.name && relation.version_satisfied_by(&p.version))
                || p.provides.iter().any(|provide| provide.satisfies(relation))
        };
        for cc in &r.chosen {
            let p = u.package(cc.id);
            for alternatives in p.depends.iter().chain(p.pre_depends.iter()) {
                if !alternatives.iter().any(|relation| all.iter().any(|q| meets(relation, q))) {
                    return Err(TestCaseError::fail(format!("{} {}: `{alternatives}` not met", p.name, p.version)));
                }
            }
        }
        for aa in &all {
            for bb in &all {
                if std::ptr::eq(*aa, *bb) {
                    continue;
                }
                if aa.name == bb.name {
                    return Err(TestCaseError::fail(format!("two versions of {}", aa.name)));
                }
                for relation in aa.conflicts.iter().chain(aa.breaks.iter()).flat_map(Alternatives::iter) {
                    let hit = (bb.name == relation.name && relation.version_satisfied_by(&bb.version))
                        || (relation.version.is_none() && bb.provides.iter().any(|pr| pr.name == relation.name));
                    if hit {
                        return Err(TestCaseError::fail(format!(
                            "{} {} conflicts with {} {}",
                            aa.name, aa.version, bb.name, bb.version
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn relation_strategy() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec!["pa", "pb", "pc", "pd", "pe", "pf", "va", "vb", "zz"]);
        let constraint = prop::option::of((prop::sample::select(vec![">=", "<<", "="]), 1..4u8));
        (name, constraint).prop_map(|(name, cc)| match cc {
            Some((op, v)) => format!("{name} ({op} {v})"),
            None => name.to_owned(),
        })
    }

    fn stanza_strategy() -> impl Strategy<Value = String> {
        let depends = prop::collection::vec(prop::collection::vec(relation_strategy(), 1..3), 0..3);
        let conflicts = prop::collection::vec(relation_strategy(), 0..2);
        let provides = prop::option::of((prop::sample::select(vec!["va", "vb"]), prop::option::of(1..4u8)));
        (
            prop::sample::select(vec!["pa", "pb", "pc", "pd", "pe", "pf"]),
            1..4u8,
            depends,
            conflicts,
            any::<bool>(),
            provides,
        )
            .prop_map(|(name, version, depends, conflicts, breaks, provides)| {
                let mut s = format!("Package: {name}\nVersion: {version}\n");
                if !depends.is_empty() {
                    let items: Vec<String> = depends.iter().map(|alts| alts.join(" | ")).collect();
                    s.push_str(&format!("Depends: {}\n", items.join(", ")));
                }
                if !conflicts.is_empty() {
                    s.push_str(&format!("{}: {}\n", if breaks { "Breaks" } else { "Conflicts" }, conflicts.join(", ")));
                }
                if let Some((virtual_, version)) = provides {
                    match version {
                        Some(v) => s.push_str(&format!("Provides: {virtual_} (= {v})\n")),
                        None => s.push_str(&format!("Provides: {virtual_}\n")),
                    }
                }
                s
            })
    }

    proptest! {
        /// Whatever the universe, a successful resolution is closed under dependencies and free
        /// of conflicts, and resolving again gives the same answer.
        #[test]
        fn successful_resolutions_are_closed_and_conflict_free(
            stanzas in prop::collection::vec(stanza_strategy(), 1..14),
            wanted in prop::collection::vec(relation_strategy(), 1..4),
            installed_count in 0..2usize,
        ) {
            let u = universe(&stanzas.join("\n"));
            let installed: Vec<PackageId> = (0..u.len().min(installed_count))
                .map(|i| PackageId(i as u32))
                .filter(|&id| u.package(id).depends.is_empty() && u.is_candidate(id))
                .collect();
            let req = Request { packages: wanted.iter().map(|w| Requested::parse(w).unwrap()).collect(), ..Request::default() };
            if let Ok(r) = resolve(&u, &installed, &req) {
                if let Err(ee) = check_closed_and_conflict_free(&u, &installed, &r) {
                    return Err(TestCaseError::fail(format!("{ee}\n{}\n{:?}", stanzas.join("\n"), names(&u, &r))));
                }
                prop_assert_eq!(resolve(&u, &installed, &req).unwrap(), r);
            }
        }
    }

    /// Resolves the essential, apt and minbase sets against a full Debian 12 amd64 index (the
    /// signed one `benches/make-mirror.sh` copies) and prints how they differ from lists of
    /// mmdebstrap's (and debootstrap's) choices for the same archive, where such lists are in
    /// `/tmp/bench/pkglists/` (`NAME.txt`, one `package version arch` or name per line).
    /// `benches/apt-agreement.sh` is the check that runs apt itself; this is a diagnostic.
    /// Run with `cargo test --release --lib -- --ignored --nocapture full_index_minbase`.
    #[test]
    #[ignore = "needs benches/make-mirror.sh's mirror on this machine"]
    fn full_index_minbase() {
        let index_path = "/tmp/bench/mirror-signed/dists/bookworm/main/binary-amd64/Packages.xz";
        let mut text = String::new();
        let (_, mut decoded) = crate::compress::decoder(fs_err::File::open(index_path).unwrap()).unwrap();
        std::io::Read::read_to_string(&mut decoded, &mut text).unwrap();
        let start = std::time::Instant::now();
        let packages = parse_index(&text).unwrap();
        let parsed = start.elapsed();
        let count = packages.len();
        let start = std::time::Instant::now();
        let mut u = Universe::new("amd64".parse().unwrap(), vec![]);
        u.add(0, packages);
        let indexed = start.elapsed();
        eprintln!("{count} packages: parsed in {parsed:?}, indexed in {indexed:?}");
        let cases: [(&str, &[&str], bool, bool); 5] = [
            // No list: shows the time and recursion depth of a large desktop request are fine.
            ("large", &["gnome-core", "libreoffice", "texlive-full", "apt"], true, false),
            ("mmdebstrap-minbase", &["apt"], true, false),
            ("debootstrap-minbase", &["apt"], true, false),
            ("mmdebstrap-essential", &[], false, true),
            ("mmdebstrap-apt", &["apt"], false, true),
        ];
        for (list, items, priority_required, essential) in cases {
            let mut req = request(items);
            req.priority_required = priority_required;
            req.essential = essential;
            let start = std::time::Instant::now();
            let r = resolve(&u, &[], &req).unwrap_or_else(|ee| panic!("{ee}"));
            eprintln!("{list}: resolved {} packages in {:?}", r.chosen.len(), start.elapsed());
            let theirs: std::collections::BTreeSet<String> =
                match fs_err::read_to_string(format!("/tmp/bench/pkglists/{list}.txt")) {
                    Ok(text) => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
                    Err(ee) => {
                        eprintln!("  no comparison: {ee}");
                        continue;
                    }
                };
            // Some lists hold names only (debootstrap's); compare what they hold.
            let names_only = theirs.iter().all(|line| !line.contains(' '));
            let ours: std::collections::BTreeSet<String> = names(&u, &r)
                .into_iter()
                .map(|line| if names_only { line.split(' ').next().unwrap().to_owned() } else { line })
                .collect();
            for line in ours.difference(&theirs) {
                let name = line.split(' ').next().unwrap();
                let why = r.chosen.iter().find(|c| u.package(c.id).name.as_str() == name).map(|c| c.reason.to_string());
                eprintln!("  only ours:       {line} ({})", why.unwrap_or_default());
            }
            for line in theirs.difference(&ours) {
                eprintln!("  only in the list: {line}");
            }
            eprintln!(
                "  {} in common, {} only ours, {} only in the list",
                ours.intersection(&theirs).count(),
                ours.difference(&theirs).count(),
                theirs.difference(&ours).count()
            );
        }
    }
}
