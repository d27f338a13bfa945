//! Bundles: every locked input of a recipe in one file, for a rebuild with no network.
//!
//! `candidate fetch --bundle FILE` writes the blobs a lockfile pins — each archive's
//! `InRelease` and indexes, every `.deb`, tarball and wheel — as one deterministic tar (the
//! project's own writer: sorted members, numeric owners, mtime 0), with an index:
//!
//! ```text
//! ./blobs/sha256/<hex>   one per locked input, its bytes as the store holds them
//! ./index.json           {"blobs":[{"sha256","size","what"}…],"lockfile":"sha256:…","version":1}
//! ```
//!
//! The same lockfile and store give the same bundle bytes. `--from-bundle FILE` (on `fetch`,
//! `build` and `verify --rebuild`) imports one into a store. Nothing in it is trusted: the
//! strict tar reader reads it, a member named other than `index.json` or `blobs/sha256/HEX`
//! is refused, every blob is hashed against its name and the index, and only when every
//! member has passed is any of them stored — a corrupt member is refused naming it, with
//! nothing imported. (The import reads the file a second time to store the blobs, and checks
//! each again as it does: a file changed in between stops there, with only checked blobs
//! stored.) The recipe, the lockfile and the recipe's local files are not in a bundle: they
//! travel with the project's sources, and the build checks the bundle's inputs against them.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, HashingWriter};
use crate::document::DocumentError;
use crate::lockfile::{InputKind, Lockfile};
use crate::store::{Store, StoreError};
use crate::tar::reader::{EntryType, Limits, ReadError, TarReader};
use crate::tree::{Content, Kind, Node, Tree};

/// The index's name in the bundle.
pub const INDEX: &str = "index.json";
/// The folder of the blobs in the bundle.
const BLOBS: &str = "blobs/sha256";
/// The index lists a few thousand inputs at most; a bigger one is not a bundle we wrote.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write bundle `{}`", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read bundle `{}`", path.display())]
    Read { path: PathBuf, source: ReadError },
    #[error("bundle `{}`: member `{member}` is not one a bundle holds (`{INDEX}`, `{BLOBS}/HEX`)", path.display())]
    Unexpected { path: PathBuf, member: String },
    #[error("bundle `{}`: member `{member}` appears twice", path.display())]
    Duplicate { path: PathBuf, member: String },
    #[error("bundle `{}`: member `{member}` is corrupt: its {size} bytes hash to {actual}, not to its name; nothing was imported", path.display())]
    Corrupt { path: PathBuf, member: String, actual: Digest, size: u64 },
    #[error("bundle `{}` has no `{INDEX}`", path.display())]
    NoIndex { path: PathBuf },
    #[error("bundle `{}`: its `{INDEX}` is larger than {MAX_INDEX_BYTES} bytes", path.display())]
    IndexTooLarge { path: PathBuf },
    #[error(transparent)]
    Index(#[from] DocumentError),
    #[error("bundle `{}`: its `{INDEX}` has version {version}; this tool reads version {VERSION}", path.display())]
    Version { path: PathBuf, version: u32 },
    #[error("bundle `{}`: {what} {sha256} ({size} bytes) is listed in its `{INDEX}` but not held as listed; nothing was imported", path.display())]
    Missing { path: PathBuf, what: String, sha256: Digest, size: u64 },
    #[error("bundle `{}`: member `{member}` is not listed in its `{INDEX}`; nothing was imported", path.display())]
    Unlisted { path: PathBuf, member: String },
    #[error("the store lacks the locked {what} ({sha256}) to bundle")]
    NotFetched { what: String, sha256: Digest },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bundle's `index.json`: what each blob is, and the lockfile it was made for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub version: u32,
    /// The sha256 of the lockfile's text.
    pub lockfile: Digest,
    /// Sorted by sha256, each once.
    pub blobs: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub sha256: Digest,
    pub size: u64,
    /// The locked input, as a person reads it: `package `dash` 0.5.12-2 (amd64)` …
    pub what: String,
}

/// Every input `lockfile` pins by sha256, each once (the first description of a blob wins).
pub fn locked_inputs(lockfile: &Lockfile) -> BTreeMap<Digest, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut add = |sha256: Digest, size: u64, what: String| {
        out.entry(sha256).or_insert((size, what));
    };
    for a in &lockfile.archives {
        add(a.inrelease, a.inrelease_size, format!("archive `{}` `InRelease`", a.name));
        for i in &a.indexes {
            add(i.sha256, i.size, format!("archive `{}` index `{}`", a.name, i.path));
        }
    }
    for p in &lockfile.packages {
        add(p.sha256, p.size, format!("package `{}` {} ({})", p.name, p.version, p.architecture));
    }
    for i in lockfile.inputs.iter().filter(|i| i.kind == InputKind::Tarball) {
        add(i.sha256, i.size, format!("tarball `{}`", i.origin));
    }
    for w in &lockfile.wheels {
        add(w.sha256, w.size, format!("wheel `{}`", w.filename));
    }
    out
}

/// What a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub blobs: usize,
    pub bytes: u64,
}

/// Writes the bundle of `lockfile` (whose text hashes to `lockfile_digest`) from `store`,
/// which must hold every input (`fetch` first), to `path`: written beside it and renamed
/// over it, so that a failure leaves no half-written bundle.
pub fn write(store: &Store, lockfile: &Lockfile, lockfile_digest: Digest, path: &Path) -> Result<Summary, BundleError> {
    let inputs = locked_inputs(lockfile);
    // Entries and their headers are chosen here, each for the same bytes every time: mtime
    // 0 (a bundle is a function of its lockfile, not of when it was made), owner 0:0,
    // read-only files, the tree's implicit folders.
    let mut tree = Tree::new(0);
    let mut blobs = Vec::new();
    let mut bytes = 0;
    for (sha256, (size, what)) in &inputs {
        if store.blob_size(sha256) != Some(*size) {
            return Err(BundleError::NotFetched { what: what.clone(), sha256: *sha256 });
        }
        // Proved against its name as it goes out, as every input is where it is used; then
        // read again by name as the tar is written (store objects are read-only), so that a
        // bundle of thousands of inputs does not hold thousands of files open.
        drop(store.open_verified(sha256)?);
        let content = Content::Host(Arc::new(store.blob_path(sha256)));
        let member = format!("{BLOBS}/{}", sha256.hex());
        tree.insert(&member, file(*size, content)).expect("a digest's hex is a plain name");
        blobs.push(Member { sha256: *sha256, size: *size, what: what.clone() });
        bytes += size;
    }
    let index = crate::document::to_canonical(&Index { version: VERSION, lockfile: lockfile_digest, blobs });
    tree.insert(INDEX, file(index.len() as u64, Content::Bytes(index.into()))).expect("a plain name");

    let write_error = |source| BundleError::Write { path: path.to_owned(), source };
    // A bare file name is in the working directory.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        return Err(write_error(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")));
    };
    let target = dir.join(file_name);
    let name = file_name.to_string_lossy();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .permissions(crate::store::public_mode())
        .tempfile_in(dir)
        .map_err(write_error)?;
    let mut out = BufWriter::new(temp.as_file());
    crate::tar::writer::write_tree(&tree, &mut out).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    drop(out);
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(&target).map_err(|e| write_error(e.error))?;
    crate::store::sync_parent(&target).map_err(write_error)?;
    Ok(Summary { blobs: inputs.len(), bytes })
}

/// A member of a bundle: a read-only file of root's at time 0.
fn file(size: u64, content: Content) -> Node {
    Node {
        kind: Kind::File { size, content, link_group: None },
        mode: 0o444,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
        implicit: false,
    }
}

/// Imports the bundle at `path` into `store`: every member checked first (module docs),
/// then the blobs the store lacks stored, each checked again as it is written.
pub fn import(store: &Store, path: &Path) -> Result<Summary, BundleError> {
    let index = check(path)?;
    let sizes: BTreeMap<Digest, u64> = index.blobs.iter().map(|m| (m.sha256, m.size)).collect();
    let read_error = |source| BundleError::Read { path: path.to_owned(), source };
    let mut reader = open(path)?;
    while let Some(entry) = reader.next_entry().map_err(read_error)? {
        let Some(Part::Blob(sha256)) = part(path, &entry.path, entry.kind)? else { continue };
        if store.blob_size(&sha256) == Some(entry.size) {
            continue; // the store's own copy is proved where it is used
        }
        let mut writer = store.writer()?;
        reader.copy_content(entry.size, &mut writer).map_err(read_error)?;
        let what = format!("bundle `{}` member `{}`", path.display(), entry.path);
        writer.commit_expecting(&what, sha256, sizes.get(&sha256).copied())?;
    }
    Ok(Summary { blobs: index.blobs.len(), bytes: sizes.values().sum() })
}

/// Reads every member of the bundle at `path`, hashing each blob against its name, and
/// returns its index once every blob it lists is held as listed and nothing else is.
pub fn check(path: &Path) -> Result<Index, BundleError> {
    let read_error = |source| BundleError::Read { path: path.to_owned(), source };
    let mut reader = open(path)?;
    let mut held: BTreeMap<Digest, (u64, String)> = BTreeMap::new();
    let mut index_bytes: Option<Vec<u8>> = None;
    while let Some(entry) = reader.next_entry().map_err(read_error)? {
        let duplicate = || BundleError::Duplicate { path: path.to_owned(), member: entry.path.clone() };
        match part(path, &entry.path, entry.kind)? {
            None => {}
            Some(Part::Index) => {
                if index_bytes.is_some() {
                    return Err(duplicate());
                }
                if entry.size > MAX_INDEX_BYTES {
                    return Err(BundleError::IndexTooLarge { path: path.to_owned() });
                }
                let mut bytes = Vec::with_capacity(entry.size as usize);
                reader.copy_content(entry.size, &mut bytes).map_err(read_error)?;
                index_bytes = Some(bytes);
            }
            Some(Part::Blob(sha256)) => {
                if held.contains_key(&sha256) {
                    return Err(duplicate());
                }
                let mut hashing = HashingWriter::new(io::sink());
                reader.copy_content(entry.size, &mut hashing).map_err(read_error)?;
                let (actual, size, _) = hashing.finish();
                if actual != sha256 {
                    return Err(BundleError::Corrupt { path: path.to_owned(), member: entry.path, actual, size });
                }
                held.insert(sha256, (size, entry.path));
            }
        }
    }
    reader.finish().map_err(read_error)?;
    let bytes = index_bytes.ok_or_else(|| BundleError::NoIndex { path: path.to_owned() })?;
    let index: Index = crate::document::parse("bundle index", &path.join(INDEX), &bytes)?;
    if index.version != VERSION {
        return Err(BundleError::Version { path: path.to_owned(), version: index.version });
    }
    for m in &index.blobs {
        if held.get(&m.sha256).map(|(size, _)| *size) != Some(m.size) {
            let (what, sha256, size) = (m.what.clone(), m.sha256, m.size);
            return Err(BundleError::Missing { path: path.to_owned(), what, sha256, size });
        }
    }
    let listed: std::collections::BTreeSet<Digest> = index.blobs.iter().map(|m| m.sha256).collect();
    if let Some((_, (_, member))) = held.iter().find(|(sha256, _)| !listed.contains(sha256)) {
        return Err(BundleError::Unlisted { path: path.to_owned(), member: member.clone() });
    }
    Ok(index)
}

fn open(path: &Path) -> Result<TarReader<BufReader<fs_err::File>>, BundleError> {
    let file = fs_err::File::open(path).map_err(|e| BundleError::Read { path: path.to_owned(), source: e.into() })?;
    Ok(TarReader::new(BufReader::with_capacity(256 << 10, file), Limits::default()))
}

/// What a member of a bundle is.
enum Part {
    Blob(Digest),
    Index,
}

/// The part a member is (`None`: one of the folders a bundle holds), or the refusal of a
/// member no bundle holds: any other name, type, or a blob name that is not a digest.
fn part(path: &Path, member: &str, kind: EntryType) -> Result<Option<Part>, BundleError> {
    let name = member.strip_prefix("./").unwrap_or(member);
    let unexpected = || BundleError::Unexpected { path: path.to_owned(), member: member.to_owned() };
    match kind {
        EntryType::Directory if ["", "blobs", BLOBS].contains(&name.trim_end_matches('/')) => Ok(None),
        EntryType::File if name == INDEX => Ok(Some(Part::Index)),
        EntryType::File => {
            let hex = name.strip_prefix(BLOBS).and_then(|rest| rest.strip_prefix('/')).ok_or_else(unexpected)?;
            // Lower-case hex only: the name a store and `sha256sum` give it, and one name per blob.
            if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(unexpected());
            }
            Digest::from_hex(hex).map(|d| Some(Part::Blob(d))).map_err(|_| unexpected())
        }
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lockfile pinning two tarballs, and a store holding them.
    fn fixture(dir: &Path) -> (Store, Lockfile, [Vec<u8>; 2]) {
        let store = Store::open(&dir.join("store")).unwrap();
        let blobs = [b"the first tarball".to_vec(), b"the second one".to_vec()];
        let mut text = format!("version = 2\nrecipe = \"{}\"\n", Digest::of(b"recipe"));
        for (i, blob) in blobs.iter().enumerate() {
            store.put_bytes(blob).unwrap();
            text.push_str(&format!(
                "\n[[input]]\nlayer = \"base\"\nkind = \"tarball\"\norigin = \"https://example.invalid/{i}.tar\"\nsize = {}\nsha256 = \"{}\"\n",
                blob.len(),
                Digest::of(blob)
            ));
        }
        (store, Lockfile::parse(Path::new("test.lock"), &text).unwrap(), blobs)
    }

    /// Writes `tree` as a tar at `path`.
    fn tar(path: &Path, members: &[(&str, &[u8])]) {
        let mut tree = Tree::new(0);
        for (name, bytes) in members {
            tree.insert(name, file(bytes.len() as u64, Content::Bytes((*bytes).into()))).unwrap();
        }
        crate::tar::writer::write_tree(&tree, &mut fs_err::File::create(path).unwrap()).unwrap();
    }

    #[test]
    fn a_bundle_round_trips_and_is_the_same_bytes_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, lockfile, blobs) = fixture(dir.path());
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let lockfile_digest = Digest::of(b"lockfile");
        let wrote = write(&store, &lockfile, lockfile_digest, &a).unwrap();
        assert_eq!(wrote, Summary { blobs: 2, bytes: (blobs[0].len() + blobs[1].len()) as u64 });
        write(&store, &lockfile, lockfile_digest, &b).unwrap();
        assert_eq!(fs_err::read(&a).unwrap(), fs_err::read(&b).unwrap());
        let index = check(&a).unwrap();
        assert_eq!(index.lockfile, lockfile_digest);
        assert_eq!(index.blobs.iter().map(|m| m.what.as_str()).collect::<Vec<_>>().len(), 2);

        let other = Store::open(&dir.path().join("other")).unwrap();
        assert_eq!(import(&other, &a).unwrap(), wrote);
        for blob in &blobs {
            assert_eq!(other.read_verified(&Digest::of(blob)).unwrap(), *blob);
        }
        // Nothing but the bundle's own files is left beside it.
        let names: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn members_no_bundle_holds_are_refused_and_nothing_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let good = b"good bytes";
        let member = format!("{BLOBS}/{}", Digest::of(good).hex());
        let index = |blobs: &[&[u8]]| {
            let blobs = blobs.iter().map(|b| Member { sha256: Digest::of(b), size: b.len() as u64, what: "x".into() });
            crate::document::to_canonical(&Index { version: 1, lockfile: Digest::of(b""), blobs: blobs.collect() })
        };
        let (listed, unlisted) = (index(&[good]), index(&[]));
        let upper = member.to_uppercase().replace("BLOBS/SHA256", BLOBS);
        // (case, the bundle's members, what the refusal says)
        type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, String);
        let cases: Vec<Case<'_>> = vec![
            (
                "stray",
                vec![(&member, good), (INDEX, &listed), ("etc/passwd", b"x")],
                "member `./etc/` is not one a bundle holds".into(),
            ),
            ("upper", vec![(&upper, good), (INDEX, &listed)], "is not one a bundle holds".into()),
            ("corrupt", vec![(&member, b"evil bytes"), (INDEX, &listed)], format!("member `./{member}` is corrupt")),
            ("unlisted", vec![(&member, good), (INDEX, &unlisted)], format!("member `./{member}` is not listed")),
            ("missing", vec![(INDEX, &listed)], "is listed in its `index.json` but not held".into()),
            ("no-index", vec![(&member, good)], "has no `index.json`".into()),
        ];
        for (name, members, expected) in cases {
            let path = dir.path().join(format!("{name}.tar"));
            tar(&path, &members);
            let store = Store::open(&dir.path().join(format!("store-{name}"))).unwrap();
            let err = import(&store, &path).unwrap_err().to_string();
            assert!(err.contains(&expected), "{name}: {err}");
            assert!(!store.has_blob(&Digest::of(good)), "{name}: imported");
        }
    }
}
