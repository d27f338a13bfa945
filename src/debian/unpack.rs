//! Unpacking a binary package without running anything from it: a `.deb` becomes the tree
//! of its `data.tar` and the metadata of its `control.tar`.
//!
//! Nothing from the package touches the host as a file of its own: [`deb`]
//! checks the ar container, each member is decompressed through a reader that counts what
//! it yields (a decompression bomb fails at [`UnpackLimits::max_bytes`], not when the disk is
//! full), and the strict [`TarReader`] parses the archive. `data.tar` entries become
//! [`Node`]s of a [`Tree`] under the within-layer rules of [`crate::tree`] (so a package that
//! writes through a symlink it made itself is refused), their contents held in memory
//! ([`Content::Bytes`]) up to [`UnpackLimits::in_memory`] bytes a package and appended to one anonymous
//! spool file beyond that ([`Content::Range`], as layers do for compressed tarballs): a
//! package's contents are written once more, to its layer blob, so writing a typical
//! package to a spool first would only double the writes of a cold build. Metadata is kept exactly (mode bits including setuid/setgid/sticky, numeric
//! owners, extended attributes such as `security.capability`); only mtimes are clamped to
//! `SOURCE_DATE_EPOCH`, so that the image does not depend on when the package was built.
//!
//! What dpkg would refuse, or what we could not represent faithfully, is refused rather
//! than guessed at: device nodes and fifos (an image built without privileges cannot make
//! them, and packages do not ship them), paths that climb with `..`, a path shipped twice,
//! a hard link to anything but an earlier regular file, control archives with anything but
//! plain top-level files, conffiles that the data does not hold as regular files.
//!
//! The root entry (`./`) of `data.tar` is not placed in the tree: dpkg never changes the
//! metadata of a directory that already exists, and the image root always does.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use md5::{Digest as _, Md5};

use super::control::{self, ControlError, Dialect};
use super::deb::{self, Compression, DebError, DebReader, MemberKind};
use super::packages::{Architecture, FieldError, PackageName};
use super::version::{ParseVersionError, Version};
use crate::recipe::ImagePath;
use crate::tar::reader::{self, EntryType, ReadError, TarReader};
use crate::tree::{Content, Kind, Node, Tree, TreeError};

/// The most entries a control archive may hold (a real one has at most a dozen).
const MAX_CONTROL_ENTRIES: u64 = 1000;

/// A package, unpacked into memory (large contents in the spool file).
#[derive(Debug)]
pub struct Unpacked {
    /// The `control` file, verbatim.
    pub control: String,
    pub name: PackageName,
    pub version: Version,
    pub architecture: Architecture,
    /// `data.tar`'s entries. Hard-link groups are numbered from 0; see
    /// [`Unpacked::offset_link_groups`] before merging several packages.
    pub tree: Tree,
    /// Every `data.tar` member path as `/a/b`, in archive order, without the root (`/.`):
    /// what dpkg records in `info/PKG.list`.
    pub paths: Vec<String>,
    /// The conffiles (absolute paths), each checked to be a regular file of the data.
    pub conffiles: Vec<String>,
    /// `md5sums` as shipped, or computed in dpkg's format when the package ships none.
    pub md5sums: String,
    /// Every other control member (maintainer scripts, `triggers`, `shlibs` …) by name.
    pub scripts: BTreeMap<String, Vec<u8>>,
}

impl Unpacked {
    /// Moves this package's hard-link groups to start at `base` (groups of different
    /// packages must be distinct before their trees are merged); returns the next free group.
    pub fn offset_link_groups(&mut self, base: u64) -> u64 {
        let mut next = base;
        let files: Vec<String> = self
            .tree
            .iter()
            .filter(|(_, n)| matches!(n.kind, Kind::File { link_group: Some(_), .. }))
            .map(|(p, _)| p.clone())
            .collect();
        for path in files {
            if let Some(Node { kind: Kind::File { link_group: Some(group), .. }, .. }) = self.tree.get_mut(&path) {
                *group += base;
                next = next.max(*group + 1);
            }
        }
        next
    }
}

/// Caps on what one package may make us do.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// The most `data.tar` entries.
    pub max_entries: u64,
    /// The most decompressed `data.tar` bytes (headers included).
    pub max_bytes: u64,
    /// The most decompressed `control.tar` bytes: it is read into memory.
    pub max_control_bytes: u64,
    /// How many content bytes are held in memory before the rest goes to the spool file.
    pub in_memory: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        // The largest Debian packages hold ~100k files and a few GB; control archives a few MB.
        // Debian's minbase packages all fit in memory (coreutils, the largest, holds ~18 MB);
        // one package per core unpacks at a time.
        UnpackLimits { max_entries: 200_000, max_bytes: 4 << 30, max_control_bytes: 64 << 20, in_memory: 64 << 20 }
    }
}

/// Why a package could not be unpacked. Every variant names the package (`label`), and
/// where it applies the member and the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("package `{label}`")]
    Deb { label: String, source: DebError },
    #[error("package `{label}`: cannot read it")]
    Io { label: String, source: io::Error },
    #[error("package `{label}`: cannot write to the spool file")]
    Spool { label: String, source: io::Error },
    #[error("package `{label}`, member `{member}`")]
    Tar { label: String, member: String, source: ReadError },
    #[error(
        "package `{label}`, member `{member}`: it decompresses to more than {limit} bytes; \
         refusing it as a likely decompression bomb"
    )]
    TooLarge { label: String, member: String, limit: u64 },
    #[error("package `{label}`, member `{member}`: it holds more than {limit} entries; refusing it")]
    TooManyEntries { label: String, member: String, limit: u64 },
    #[error("package `{label}`, member `{member}`: bytes other than zeros follow the end of the archive")]
    TrailingData { label: String, member: String },
    #[error("package `{label}`, member `{member}`, entry `{entry}`: {message}")]
    Entry { label: String, member: String, entry: String, message: String },
    #[error("package `{label}`, member `{member}`, entry `{entry}`")]
    Tree { label: String, member: String, entry: String, source: Box<TreeError> },
    #[error("package `{label}`, control file `{file}`: {message}")]
    Control { label: String, file: String, message: String },
    #[error("package `{label}`, control file `{file}`")]
    ControlSyntax { label: String, file: String, source: ControlError },
    #[error("package `{label}`, control file `control`, field `{field}`")]
    Field { label: String, field: &'static str, source: Box<FieldError> },
    /// Apart from [`UnpackError::Field`], unboxed: the version error must be an error of the
    /// chain itself for its hint to be found (a `Box` or a transparent variant hides it).
    #[error("package `{label}`, control file `control`, field `Version`")]
    Version { label: String, source: ParseVersionError },
    #[error("package `{label}`, control file `conffiles`")]
    Conffiles { label: String, source: ConffileError },
}

/// What is wrong with a package's `conffiles`, line by line.
#[derive(Debug, thiserror::Error)]
pub enum ConffileError {
    // dpkg ≥ 1.20 allows a `remove-on-upgrade` flag before the path; it asks for a file to be
    // removed, which an image build has no earlier version to do on.
    #[error("`{line}` is not an absolute path (flags such as `remove-on-upgrade` are not supported)")]
    NotAbsolute { line: String },
    #[error("conffile {message}")]
    BadPath { message: String },
    #[error("conffile `{line}` is a {kind} in the data, not a regular file")]
    NotAFile { line: String, kind: &'static str },
    #[error("conffile `{line}` is not in the package's data")]
    Missing { line: String },
    #[error("conffile `{line}` is listed twice")]
    Twice { line: String },
}

/// Unpacks the package in `deb` (read from its start, whatever the file's offset), which the
/// caller has proved against its pinned sha256: xz members are decoded without computing their
/// own check ([`member_decoder`]). `label` names it in errors; decompressed contents go to an
/// anonymous file in `spool_dir`; mtimes are clamped to `sde`.
pub fn unpack(
    deb: &File,
    label: &str,
    spool_dir: &Path,
    sde: u64,
    limits: UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let deb_error = |source| UnpackError::Deb { label: label.to_owned(), source };
    let ar_limits = deb::Limits { max_control_size: limits.max_control_bytes, ..deb::Limits::default() };
    let mut ar =
        DebReader::with_limits(BufReader::with_capacity(1 << 20, PositionedRead { file: deb, pos: 0 }), ar_limits)
            .map_err(deb_error)?;

    // The reader yields the control member, then the data member, or fails.
    let member = ar.next_member().map_err(deb_error)?.expect("deb reader yields a control member or fails");
    let MemberKind::Control(compression) = member.kind else { unreachable!("deb reader yields control first") };
    let mut files = read_control(&mut ar, label, &member.name, compression, limits)?;

    let control_error =
        |file: &str, message: String| UnpackError::Control { label: label.to_owned(), file: file.to_owned(), message };
    let text = |file: &str, bytes: Vec<u8>| {
        control::from_utf8(&bytes).map_err(|source| UnpackError::ControlSyntax {
            label: label.to_owned(),
            file: file.to_owned(),
            source,
        })?;
        Ok::<_, UnpackError>(String::from_utf8(bytes).expect("checked to be UTF-8"))
    };

    let control = text(
        "control",
        files.remove("control").ok_or_else(|| control_error("control", "missing: every package needs one".into()))?,
    )?;
    let syntax = |source| UnpackError::ControlSyntax { label: label.to_owned(), file: "control".into(), source };
    let stanza = control::parse_one(&control, Dialect::Archive).map_err(syntax)?;
    let field = |name: &str| stanza.require(name).map(str::trim).map_err(syntax);
    let bad = |field: &'static str, source: FieldError| UnpackError::Field {
        label: label.to_owned(),
        field,
        source: Box::new(source),
    };
    let name: PackageName = field("Package")?.parse().map_err(|e| bad("Package", FieldError::from(e)))?;
    let version: Version =
        field("Version")?.parse().map_err(|source| UnpackError::Version { label: label.to_owned(), source })?;
    let architecture: Architecture =
        field("Architecture")?.parse().map_err(|e| bad("Architecture", FieldError::from(e)))?;

    // The control file is checked before the data is read: a package whose control is
    // wrong is refused without decompressing what may be gigabytes.
    let member = ar.next_member().map_err(deb_error)?.expect("deb reader yields a data member or fails");
    let MemberKind::Data(compression) = member.kind else { unreachable!("deb reader yields data second") };
    // A package that ships `md5sums` (nearly all do) needs no md5 of its own: hashing every
    // byte again would cost as much as a third of the decompression.
    let compute_md5s = !files.contains_key("md5sums");
    let data = read_data(&mut ar, label, &member.name, compression, spool_dir, sde, limits, compute_md5s)?;
    if ar.next_member().map_err(deb_error)?.is_some() {
        unreachable!("deb reader yields nothing after the data member");
    }

    let conffiles = match files.remove("conffiles") {
        None => Vec::new(),
        Some(bytes) => parse_conffiles(&text("conffiles", bytes)?, &data.tree)
            .map_err(|source| UnpackError::Conffiles { label: label.to_owned(), source })?,
    };
    let md5sums = match files.remove("md5sums") {
        Some(bytes) => text("md5sums", bytes)?,
        None => data.md5sums,
    };
    Ok(Unpacked {
        control,
        name,
        version,
        architecture,
        tree: data.tree,
        paths: data.paths,
        conffiles,
        md5sums,
        scripts: files,
    })
}

/// `conffiles`: one absolute path a line; each must be a regular file of the data.
fn parse_conffiles(text: &str, tree: &Tree) -> Result<Vec<String>, ConffileError> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('/') {
            return Err(ConffileError::NotAbsolute { line: line.to_owned() });
        }
        let rel = ImagePath::from_rel(line).map_err(|e| ConffileError::BadPath { message: e.to_string() })?;
        match tree.get(rel.as_rel()).map(|n| &n.kind) {
            Some(Kind::File { .. }) => {}
            Some(kind) => return Err(ConffileError::NotAFile { line: line.to_owned(), kind: kind.describe() }),
            None => return Err(ConffileError::Missing { line: line.to_owned() }),
        }
        let path = format!("/{}", rel.as_rel());
        if out.contains(&path) {
            return Err(ConffileError::Twice { line: line.to_owned() });
        }
        out.push(path);
    }
    Ok(out)
}

/// Reads `control.tar`: its plain top-level files, by name.
fn read_control<R: Read>(
    ar: &mut DebReader<R>,
    label: &str,
    member: &str,
    compression: Compression,
    limits: UnpackLimits,
) -> Result<BTreeMap<String, Vec<u8>>, UnpackError> {
    let cap = limits.max_control_bytes;
    let exceeded = Rc::new(Cell::new(false));
    let decoded = decoder(compression, ar.content(), cap, exceeded.clone())
        .map_err(|source| UnpackError::Io { label: label.to_owned(), source })?;
    let tar_limits = reader::Limits { max_entries: MAX_CONTROL_ENTRIES, max_total_size: cap, max_metadata: 1 << 20 };
    let mut tar = TarReader::new(decoded, tar_limits);
    let errors = Errors { label, member, exceeded: &exceeded, cap };
    let mut files = BTreeMap::new();
    while let Some(entry) = tar.next_entry().map_err(|e| errors.tar(e))? {
        let fail = |message: &str| errors.entry(&entry.path, message.to_owned());
        let name = entry.path.strip_prefix("./").unwrap_or(&entry.path);
        match entry.kind {
            EntryType::Directory if name.is_empty() || name == "." => continue,
            EntryType::File => {}
            other => {
                return Err(fail(&format!("a {} in the control archive, which holds only files", other.describe())))
            }
        }
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '\n']) {
            return Err(fail("not a plain file name at the top of the control archive"));
        }
        let mut content = Vec::new();
        tar.copy_content(entry.size, &mut content).map_err(|e| errors.tar(e))?;
        if files.insert(name.to_owned(), content).is_some() {
            return Err(fail("the control archive holds this file twice"));
        }
    }
    drain(tar, &errors)?;
    Ok(files)
}

struct Data {
    tree: Tree,
    paths: Vec<String>,
    md5sums: String,
}

/// Reads `data.tar` into a tree, its contents into memory and, past [`UnpackLimits::in_memory`] bytes,
/// into a spool file. The md5sums of the data are computed only if `compute_md5s`.
///
/// Long by design: each entry is validated, placed in the tree, hashed and its content kept in
/// one pass over the stream (a `data.tar` cannot be rewound), and the per-entry rules read
/// best in the order dpkg applies them.
#[allow(clippy::too_many_arguments)]
fn read_data<R: Read>(
    ar: &mut DebReader<R>,
    label: &str,
    member: &str,
    compression: Compression,
    spool_dir: &Path,
    sde: u64,
    limits: UnpackLimits,
    compute_md5s: bool,
) -> Result<Data, UnpackError> {
    let spool_error = |source| UnpackError::Spool { label: label.to_owned(), source };
    let mut spool = Spool { dir: spool_dir, file: None, spooled: 0, in_memory: 0 };

    let exceeded = Rc::new(Cell::new(false));
    let decoded = decoder(compression, ar.content(), limits.max_bytes, exceeded.clone())
        .map_err(|source| UnpackError::Io { label: label.to_owned(), source })?;
    let tar_limits =
        reader::Limits { max_entries: limits.max_entries, max_total_size: limits.max_bytes, max_metadata: 1 << 20 };
    let mut tar = TarReader::new(BufReader::with_capacity(1 << 20, decoded), tar_limits);
    let errors = Errors { label, member, exceeded: &exceeded, cap: limits.max_bytes };

    let mut tree = Tree::new(sde);
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    let mut md5sums = String::new();
    // Regular files so far, by path: (size, content, md5 if computed, link group).
    let mut files: HashMap<String, (u64, Content, Option<String>, Option<u64>)> = HashMap::new();
    let mut next_group = 0u64;

    while let Some(entry) = tar.next_entry().map_err(|e| errors.tar(e))? {
        let fail = |message: String| errors.entry(&entry.path, message);
        let path =
            ImagePath::from_rel(&entry.path).map_err(|_| fail("its path climbs with `..`; refusing it".into()))?;
        let rel = path.as_rel().to_owned();
        // dpkg's `.list` and `md5sums` are line-based: dpkg-deb refuses such names, and so do we.
        if rel.contains('\n') || entry.link.contains('\n') {
            return Err(fail("a newline in its path or link target; dpkg's file lists cannot hold it".into()));
        }
        if rel.is_empty() {
            if entry.kind != EntryType::Directory {
                return Err(fail(format!("the image root cannot be a {}", entry.kind.describe())));
            }
            continue;
        }
        if !seen.insert(rel.clone()) {
            return Err(fail("the package ships this path twice".into()));
        }
        let kind = match entry.kind {
            EntryType::Directory => Kind::Directory,
            EntryType::Symlink => {
                if entry.link.is_empty() {
                    return Err(fail("a symlink with an empty target".into()));
                }
                Kind::Symlink { target: entry.link.clone() }
            }
            EntryType::File => {
                let mut md5 = compute_md5s.then(Md5::new);
                let content = if spool.in_memory + entry.size <= limits.in_memory {
                    spool.in_memory += entry.size;
                    let mut bytes = Vec::with_capacity(entry.size as usize);
                    tar.copy_content(entry.size, &mut bytes).map_err(|e| errors.tar(e))?;
                    if let Some(md5) = &mut md5 {
                        md5.update(&bytes);
                    }
                    Content::Bytes(bytes.into())
                } else {
                    let offset = spool.spooled;
                    spool.spooled += entry.size;
                    let (file, writer) = spool.writer().map_err(spool_error)?;
                    let mut hashing = HashingWriter { inner: writer, md5: md5.as_mut() };
                    tar.copy_content(entry.size, &mut hashing).map_err(|e| errors.tar(e))?;
                    Content::Range { file, offset }
                };
                let md5 = md5.map(|m| hex::encode(m.finalize()));
                if let Some(md5) = &md5 {
                    md5sums.push_str(&format!("{md5}  {rel}\n"));
                }
                files.insert(rel.clone(), (entry.size, content.clone(), md5, None));
                Kind::File { size: entry.size, content, link_group: None }
            }
            EntryType::HardLink => {
                let target = ImagePath::from_rel(&entry.link)
                    .map_err(|_| fail(format!("hard link to `{}`, which climbs with `..`", entry.link)))?;
                let Some((size, content, md5, group)) = files.get_mut(target.as_rel()) else {
                    return Err(fail(format!(
                        "hard link to `{}`, which is not an earlier regular file of this package",
                        entry.link
                    )));
                };
                let group = *group.get_or_insert_with(|| {
                    next_group += 1;
                    next_group - 1
                });
                if let Some(Node { kind: Kind::File { link_group, .. }, .. }) = tree.get_mut(target.as_rel()) {
                    *link_group = Some(group);
                }
                if let Some(md5) = md5.as_ref() {
                    md5sums.push_str(&format!("{md5}  {rel}\n"));
                }
                let kind = Kind::File { size: *size, content: content.clone(), link_group: Some(group) };
                let linked = (*size, content.clone(), md5.clone(), Some(group));
                files.insert(rel.clone(), linked);
                kind
            }
            other => {
                return Err(fail(format!("it is a {}: packages may not ship device nodes or fifos", other.describe())))
            }
        };
        let node = Node {
            kind,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime.min(sde),
            xattrs: entry.xattrs.clone(),
            implicit: false,
        };
        tree.insert(&rel, node).map_err(|source| UnpackError::Tree {
            label: label.to_owned(),
            member: member.to_owned(),
            entry: entry.path.clone(),
            source: Box::new(source),
        })?;
        paths.push(format!("/{rel}"));
    }
    drain(tar, &errors)?;
    spool.flush().map_err(spool_error)?;
    Ok(Data { tree, paths, md5sums })
}

/// Where contents past [`UnpackLimits::in_memory`] go: an anonymous file, made when first needed.
struct Spool<'a> {
    dir: &'a Path,
    file: Option<(Arc<File>, BufWriter<File>)>,
    spooled: u64,
    in_memory: u64,
}

impl Spool<'_> {
    fn writer(&mut self) -> io::Result<(Arc<File>, &mut BufWriter<File>)> {
        if self.file.is_none() {
            let file = tempfile::tempfile_in(self.dir)?;
            let writer = BufWriter::with_capacity(1 << 20, file.try_clone()?);
            self.file = Some((Arc::new(file), writer));
        }
        let (file, writer) = self.file.as_mut().expect("made above");
        Ok((file.clone(), writer))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |(_, writer)| writer.flush())
    }
}

/// What every error of one member needs to name.
struct Errors<'a> {
    label: &'a str,
    member: &'a str,
    exceeded: &'a Cell<bool>,
    cap: u64,
}

impl Errors<'_> {
    fn tar(&self, source: ReadError) -> UnpackError {
        let (label, member) = (self.label.to_owned(), self.member.to_owned());
        // The cap trips inside the decoder, so it surfaces as whatever error the tar reader
        // made of the failed read: the flag says what it really was.
        if self.exceeded.get() {
            return UnpackError::TooLarge { label, member, limit: self.cap };
        }
        match source {
            ReadError::TooLarge(limit) => UnpackError::TooLarge { label, member, limit },
            ReadError::TooManyEntries(limit) => UnpackError::TooManyEntries { label, member, limit },
            source => UnpackError::Tar { label, member, source },
        }
    }

    fn entry(&self, entry: &str, message: String) -> UnpackError {
        UnpackError::Entry {
            label: self.label.to_owned(),
            member: self.member.to_owned(),
            entry: entry.to_owned(),
            message,
        }
    }
}

/// Reads what follows the end-of-archive marker to the end of the compressed stream, so
/// that the decoder checks its trailer (gzip's CRC, xz's index and footer), and insists it
/// is zeros (the padding tar writes).
fn drain<R: Read>(tar: TarReader<R>, errors: &Errors<'_>) -> Result<(), UnpackError> {
    let mut rest = tar.into_inner();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(errors.tar(ReadError::Io(e))),
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(UnpackError::TrailingData { label: errors.label.to_owned(), member: errors.member.to_owned() });
        }
    }
}

/// The decoder a member's name calls for, capped at `cap` decompressed bytes.
fn decoder<'a>(
    compression: Compression,
    raw: impl Read + 'a,
    cap: u64,
    exceeded: Rc<Cell<bool>>,
) -> io::Result<Capped<Box<dyn Read + 'a>>> {
    Ok(Capped { inner: member_decoder(compression, raw)?, left: cap, exceeded })
}

/// The decoder a member's name calls for, uncapped (the caller bounds what it reads). Public
/// for the fuzz target of the decoders; [`unpack`] is the way to read a package.
#[doc(hidden)]
pub fn member_decoder<'a>(compression: Compression, raw: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        // xz's own integrity check (a CRC64 of each block, for Debian's packages) is not
        // computed: every package reaches here proven by its pinned sha256 (`deb_layer` opens
        // it with `Store::open_verified`), which rules out the corruption an unkeyed checksum
        // is for, and computing it was a tenth of decoding. The stream's structure (index,
        // footer, sizes) is still checked.
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_stream(
            raw,
            liblzma::stream::Stream::new_stream_decoder(
                u64::MAX,
                liblzma::stream::CONCATENATED | liblzma_sys::LZMA_IGNORE_CHECK,
            )
            .map_err(io::Error::other)?,
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
    })
}

/// Fails once more than the cap has been read, and says so through `exceeded`.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed size exceeds the cap"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Passes writes through, hashing them if asked to.
struct HashingWriter<'m, W> {
    inner: W,
    md5: Option<&'m mut Md5>,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(md5) = &mut self.md5 {
            md5.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a shared file from a position of its own, leaving the file's offset alone.
struct PositionedRead<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PositionedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const CONTROL: &str =
        "Package: hello\nVersion: 1:1.0-1\nArchitecture: amd64\nMaintainer: M <m@example.org>\nDescription: greets\n";

    /// An ar archive of these members, as dpkg-deb writes it.
    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, content) in members {
            out.extend(format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, "100644", content.len()).bytes());
            out.extend_from_slice(content);
            if content.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    /// One ustar entry (`typeflag` as tar has it), preceded by a PAX header if `pax` is set.
    fn entry(
        out: &mut Vec<u8>,
        name: &str,
        typeflag: u8,
        mode: u32,
        content: &[u8],
        link: &str,
        pax: &[(&str, &[u8])],
    ) {
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in pax {
                // The length counts itself: try a width until it fits.
                let body = format!(" {key}=").len() + value.len() + 1;
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                records.extend(format!("{len} {key}=").bytes());
                records.extend_from_slice(value);
                records.push(b'\n');
            }
            entry(out, "././@PaxHeader", b'x', 0o644, &records, "", &[]);
        }
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0width$o}\0", width = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, content.len() as u64);
        octal(&mut h, 136, 12, 1_800_000_000);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn file(out: &mut Vec<u8>, name: &str, content: &[u8]) {
        entry(out, name, b'0', 0o644, content, "", &[]);
    }

    fn dir(out: &mut Vec<u8>, name: &str) {
        entry(out, name, b'5', 0o755, b"", "", &[]);
    }

    fn end(mut tar: Vec<u8>) -> Vec<u8> {
        tar.extend([0u8; 1024]);
        tar
    }

    fn control_tar(extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut t = Vec::new();
        dir(&mut t, "./");
        file(&mut t, "./control", CONTROL.as_bytes());
        for (name, content) in extra {
            file(&mut t, &format!("./{name}"), content);
        }
        end(t)
    }

    fn data_tar() -> Vec<u8> {
        let mut t = Vec::new();
        dir(&mut t, "./");
        dir(&mut t, "./etc/");
        file(&mut t, "./etc/hello.conf", b"greeting=hi\n");
        dir(&mut t, "./usr/");
        dir(&mut t, "./usr/bin/");
        file(&mut t, "./usr/bin/hello", b"hello\n");
        entry(&mut t, "./usr/bin/hi", b'1', 0o644, b"", "./usr/bin/hello", &[]);
        entry(&mut t, "./usr/bin/greet", b'2', 0o777, b"", "/usr/bin/hello", &[]);
        end(t)
    }

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }

    fn deb(control: &[u8], data: &[u8]) -> Vec<u8> {
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &compress(Compression::Gzip, control)),
            ("data.tar", data),
        ])
    }

    fn unpack_bytes(bytes: &[u8], limits: UnpackLimits) -> Result<Unpacked, UnpackError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello_1.0-1_amd64.deb");
        fs_err::write(&path, bytes).unwrap();
        let file = fs_err::File::open(&path).unwrap().into_parts().0;
        unpack(&file, "hello_1.0-1_amd64.deb", dir.path(), 1_700_000_000, limits)
    }

    fn ok(bytes: &[u8]) -> Unpacked {
        unpack_bytes(bytes, UnpackLimits::default()).unwrap()
    }

    fn err(bytes: &[u8]) -> String {
        let e = unpack_bytes(bytes, UnpackLimits::default()).unwrap_err();
        // The whole chain, as `main` shows it: the package, then each cause.
        let text = format!("{:#}", anyhow::Error::new(e));
        assert!(text.contains("hello_1.0-1_amd64.deb"), "the error names the package: {text}");
        text
    }

    fn content(u: &Unpacked, path: &str) -> Vec<u8> {
        let Kind::File { size, content, .. } = &u.tree.get(path).unwrap().kind else {
            panic!("{path} is not a regular file")
        };
        read(content, *size)
    }

    /// The bytes of an unpacked file, held in memory or spooled.
    pub(super) fn read(content: &Content, size: u64) -> Vec<u8> {
        match content {
            Content::Bytes(bytes) => bytes.to_vec(),
            Content::Range { file, offset } => {
                let mut buf = vec![0u8; size as usize];
                file.read_exact_at(&mut buf, *offset).unwrap();
                buf
            }
            Content::Host(_) => panic!("unpacking never reads host files"),
        }
    }

    #[test]
    fn every_compression_unpacks() {
        for c in [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd, Compression::Bzip2] {
            let control_c = if c == Compression::Bzip2 { Compression::Xz } else { c };
            let bytes = ar(&[
                ("debian-binary", b"2.0\n"),
                (&format!("control.tar{}", control_c.extension()), &compress(control_c, &control_tar(&[]))),
                (&format!("data.tar{}", c.extension()), &compress(c, &data_tar())),
            ]);
            let u = ok(&bytes);
            assert_eq!(
                (u.name.as_str(), u.version.to_string(), u.architecture.as_str()),
                ("hello", "1:1.0-1".into(), "amd64")
            );
            assert_eq!(u.control, CONTROL);
            assert_eq!(content(&u, "usr/bin/hello"), b"hello\n", "{c:?}");
            assert_eq!(content(&u, "etc/hello.conf"), b"greeting=hi\n", "{c:?}");
            assert_eq!(
                u.paths,
                ["/etc", "/etc/hello.conf", "/usr", "/usr/bin", "/usr/bin/hello", "/usr/bin/hi", "/usr/bin/greet"]
            );
            assert!(u.scripts.is_empty() && u.conffiles.is_empty());
            assert!(u.tree.get("").unwrap().implicit, "the package's `./` does not touch the image root");
        }
    }

    #[test]
    fn md5sums_are_computed_in_dpkg_format_when_not_shipped() {
        let u = ok(&deb(&control_tar(&[]), &data_tar()));
        // `printf 'hello\n' | md5sum` and `printf 'greeting=hi\n' | md5sum`.
        let hello = "b1946ac92492d2347c6235b4d2611184";
        let conf = format!("{:x}", Md5::digest(b"greeting=hi\n"));
        assert_eq!(u.md5sums, format!("{conf}  etc/hello.conf\n{hello}  usr/bin/hello\n{hello}  usr/bin/hi\n"));

        let shipped = "0123  usr/bin/hello\n";
        let u = ok(&deb(&control_tar(&[("md5sums", shipped.as_bytes())]), &data_tar()));
        assert_eq!(u.md5sums, shipped, "a shipped md5sums is kept verbatim");
    }

    #[test]
    fn contents_past_the_memory_budget_are_spooled_and_read_back_the_same() {
        let in_memory = UnpackLimits::default();
        // `etc/hello.conf` (12 bytes) fits, `usr/bin/hello` (6 more) does not.
        let spilling = UnpackLimits { in_memory: 14, ..UnpackLimits::default() };
        let bytes = deb(&control_tar(&[]), &data_tar());
        let (a, b) = (unpack_bytes(&bytes, in_memory).unwrap(), unpack_bytes(&bytes, spilling).unwrap());
        let kind = |u: &Unpacked, path: &str| match &u.tree.get(path).unwrap().kind {
            Kind::File { content: Content::Bytes(_), .. } => "memory",
            Kind::File { content: Content::Range { .. }, .. } => "spool",
            _ => "other",
        };
        assert_eq!((kind(&a, "etc/hello.conf"), kind(&a, "usr/bin/hello")), ("memory", "memory"));
        assert_eq!((kind(&b, "etc/hello.conf"), kind(&b, "usr/bin/hello")), ("memory", "spool"));
        for path in ["etc/hello.conf", "usr/bin/hello", "usr/bin/hi"] {
            assert_eq!(content(&a, path), content(&b, path), "{path}");
        }
        assert_eq!(a.md5sums, b.md5sums);
    }

    #[test]
    fn scripts_and_conffiles() {
        let u = ok(&deb(
            &control_tar(&[
                ("postinst", b"#!/bin/sh\nexit 0\n"),
                ("conffiles", b"/etc/hello.conf\n"),
                ("triggers", b""),
            ]),
            &data_tar(),
        ));
        assert_eq!(u.conffiles, ["/etc/hello.conf"]);
        assert_eq!(u.scripts.keys().collect::<Vec<_>>(), ["postinst", "triggers"]);
        assert_eq!(u.scripts["postinst"], b"#!/bin/sh\nexit 0\n");

        for (conffiles, why) in [
            ("/etc/missing.conf\n", "not in the package's data"),
            ("/usr/bin\n", "is a directory"),
            ("/usr/bin/greet\n", "is a symlink"),
            ("etc/hello.conf\n", "not an absolute path"),
            ("/etc/hello.conf\n/etc/hello.conf\n", "listed twice"),
        ] {
            let e = err(&deb(&control_tar(&[("conffiles", conffiles.as_bytes())]), &data_tar()));
            assert!(e.contains("conffiles") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_control_archive_holds_plain_files_and_a_control() {
        let mut t = Vec::new();
        file(&mut t, "./control", CONTROL.as_bytes());
        file(&mut t, "./sub/postinst", b"x");
        assert!(err(&deb(&end(t), &data_tar())).contains("not a plain file name"));
        let mut t = Vec::new();
        file(&mut t, "./control", CONTROL.as_bytes());
        entry(&mut t, "./postinst", b'2', 0o777, b"", "/etc/shadow", &[]);
        assert!(err(&deb(&end(t), &data_tar())).contains("symlink in the control archive"));
        let mut t = Vec::new();
        file(&mut t, "./postinst", b"x");
        assert!(err(&deb(&end(t), &data_tar())).contains("control file `control`: missing"));
        let mut t = Vec::new();
        file(&mut t, "./control", b"Package: hello\nVersion: 1.0\n");
        assert!(err(&deb(&end(t), &data_tar())).contains("Architecture"));
    }

    #[test]
    fn modes_owners_xattrs_and_links_are_kept() {
        let mut t = Vec::new();
        dir(&mut t, "./");
        entry(
            &mut t,
            "./usr/bin/ping",
            b'0',
            0o4755,
            b"ping",
            "",
            &[("SCHILY.xattr.security.capability", b"\x01\0\0\x02\0\x20")],
        );
        entry(&mut t, "./tmp/", b'5', 0o1777, b"", "", &[]);
        entry(&mut t, "./usr/bin/ping6", b'1', 0o4755, b"", "./usr/bin/ping", &[]);
        entry(&mut t, "./usr/bin/p", b'2', 0o777, b"", "../../etc/far/away", &[]);
        let u = ok(&deb(&control_tar(&[]), &end(t)));
        let ping = u.tree.get("usr/bin/ping").unwrap();
        assert_eq!(ping.mode, 0o4755);
        assert_eq!(ping.mtime, 1_700_000_000, "mtime clamped to SOURCE_DATE_EPOCH");
        assert_eq!(ping.xattrs["security.capability"], b"\x01\0\0\x02\0\x20");
        assert_eq!(u.tree.get("tmp").unwrap().mode, 0o1777);
        let group = |p: &str| match u.tree.get(p).unwrap().kind {
            Kind::File { link_group, .. } => link_group,
            _ => panic!(),
        };
        assert!(group("usr/bin/ping").is_some() && group("usr/bin/ping") == group("usr/bin/ping6"));
        assert!(
            matches!(&u.tree.get("usr/bin/p").unwrap().kind, Kind::Symlink { target } if target == "../../etc/far/away")
        );
        assert_eq!(content(&u, "usr/bin/ping6"), b"ping");
        let mut u = u;
        assert_eq!(u.offset_link_groups(10), 11);
        for p in ["usr/bin/ping", "usr/bin/ping6"] {
            assert!(matches!(u.tree.get(p).unwrap().kind, Kind::File { link_group: Some(10), .. }), "{p}");
        }
    }

    #[test]
    fn hostile_data_entries_are_refused() {
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut t = Vec::new();
            dir(&mut t, "./");
            f(&mut t);
            err(&deb(&control_tar(&[]), &end(t)))
        };
        let e = with(&|t| file(t, "./usr/../../etc/passwd", b"x"));
        assert!(e.contains("`./usr/../../etc/passwd`") && e.contains("climbs"), "{e}");
        let e = with(&|t| entry(t, "./dev/sda", b'4', 0o660, b"", "", &[]));
        assert!(e.contains("`./dev/sda`") && e.contains("block device"), "{e}");
        let e = with(&|t| entry(t, "./dev/null", b'3', 0o666, b"", "", &[]));
        assert!(e.contains("character device"), "{e}");
        let e = with(&|t| entry(t, "./run/fifo", b'6', 0o666, b"", "", &[]));
        assert!(e.contains("fifo"), "{e}");
        let e = with(&|t| {
            entry(t, "./etc", b'2', 0o777, b"", "/host-etc", &[]);
            file(t, "./etc/passwd", b"root::0:0::/:/bin/sh\n");
        });
        assert!(e.contains("`./etc/passwd`") && e.contains("symlink"), "{e}");
        let e = with(&|t| entry(t, "./usr/bin/hi", b'1', 0o644, b"", "./etc/shadow", &[]));
        assert!(e.contains("not an earlier regular file"), "{e}");
        let e = with(&|t| file(t, "./usr/bin/evil\nname", b"x"));
        assert!(e.contains("newline"), "{e}");
        let e = with(&|t| {
            file(t, "./a", b"1");
            file(t, "./a", b"2");
        });
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn decompression_bombs_stop_at_the_cap() {
        let mut t = Vec::new();
        file(&mut t, "./zeros", &vec![0u8; 1 << 20]);
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &compress(Compression::Gzip, &control_tar(&[]))),
            ("data.tar.gz", &compress(Compression::Gzip, &end(t))),
        ]);
        let limits = UnpackLimits { max_bytes: 64 << 10, ..UnpackLimits::default() };
        let e = unpack_bytes(&bytes, limits).unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { limit: 65536, .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("hello_1.0-1_amd64.deb") && text.contains("data.tar.gz") && text.contains("65536"),
            "{text}"
        );

        // The cap counts decompressed bytes, not what tar headers claim: 1 MiB of zeros after
        // the end marker trips it inside the decoder.
        let mut padded = end(Vec::new());
        padded.resize(1 << 20, 0);
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &compress(Compression::Gzip, &control_tar(&[]))),
            ("data.tar.xz", &compress(Compression::Xz, &padded)),
        ]);
        let e = unpack_bytes(&bytes, limits).unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { limit: 65536, .. }), "{e:?}");
        assert!(unpack_bytes(&bytes, UnpackLimits::default()).is_ok(), "zero padding is fine under the cap");

        // Many small entries stop at the entry cap.
        let limits = UnpackLimits { max_entries: 3, ..UnpackLimits::default() };
        let e = unpack_bytes(&deb(&control_tar(&[]), &data_tar()), limits).unwrap_err();
        assert!(matches!(e, UnpackError::TooManyEntries { limit: 3, .. }), "{e:?}");
        // A compressed member that does not decode is an error, not a short archive.
        let mut gz = compress(Compression::Gzip, &data_tar());
        let at = gz.len() - 12;
        gz[at] ^= 0xff;
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &compress(Compression::Gzip, &control_tar(&[]))),
            ("data.tar.gz", &gz),
        ]);
        err(&bytes);
    }

    #[test]
    fn xz_streams_are_checked_for_structure_not_for_their_crc() {
        let xz = |data: &[u8]| {
            let bytes = ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &compress(Compression::Gzip, &control_tar(&[]))),
                ("data.tar.xz", data),
            ]);
            unpack_bytes(&bytes, UnpackLimits::default())
        };
        let good = compress(Compression::Xz, &data_tar());
        assert!(xz(&good).is_ok());
        // A stream cut short is refused, and so is a damaged footer ...
        assert!(xz(&good[..good.len() - 12]).is_err(), "a stream without its footer is an error");
        let mut footer = good.clone();
        let at = footer.len() - 3;
        footer[at] ^= 0xff;
        assert!(xz(&footer).is_err(), "a damaged footer is an error");
        // ... while the block's CRC64 (the 8 bytes before the index) is not computed: the
        // package's pinned sha256 is what proves its bytes.
        let index = good.len() - 12 - index_size(&good);
        let mut crc = good.clone();
        crc[index - 1] ^= 0xff;
        let unpacked = xz(&crc).expect("the block's check is not computed");
        assert_eq!(content(&unpacked, "usr/bin/hello"), b"hello\n");
    }

    /// The size of an xz stream's index, from its footer's Backward Size field.
    fn index_size(xz: &[u8]) -> usize {
        let footer = &xz[xz.len() - 12..];
        (u32::from_le_bytes(footer[4..8].try_into().unwrap()) as usize + 1) * 4
    }

    #[test]
    fn the_container_is_checked() {
        let control = compress(Compression::Gzip, &control_tar(&[]));
        let data = data_tar();
        let good = ar(&[("debian-binary", b"2.0\n"), ("control.tar.gz", &control), ("data.tar", &data)]);
        ok(&good);
        let e = err(&good[..good.len() - 100]);
        assert!(e.contains("data.tar"), "{e}");
        let e = err(&ar(&[("debian-binary", b"2.0\n"), ("data.tar", &data), ("control.tar.gz", &control)]));
        assert!(e.contains("before the data member"), "{e}");
        let e =
            err(&ar(&[("debian-binary", b"2.0\n"), ("control.tar.gz", &control), ("evil", b""), ("data.tar", &data)]));
        assert!(e.contains("`evil`"), "{e}");
        let e = err(&ar(&[("debian-binary", b"3.0\n"), ("control.tar.gz", &control), ("data.tar", &data)]));
        assert!(e.contains("version"), "{e}");
        let mut corrupt = good.clone();
        corrupt[8 + 48] = b'x'; // debian-binary's size field
        err(&corrupt);
        let signed = ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgbuilder", b"signature"),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ]);
        assert_eq!(ok(&signed).paths, ok(&good).paths);
        // Junk after the tar's end marker inside the member.
        let mut junk = data.clone();
        junk.extend(b"more");
        let e = err(&ar(&[("debian-binary", b"2.0\n"), ("control.tar.gz", &control), ("data.tar", &junk)]));
        assert!(e.contains("follow the end"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// A corrupted package is refused, never a panic: uncompressed members put most bytes
        /// in ar and tar headers, control text and paths.
        #[test]
        fn mutated_packages_never_panic(at in 0usize..8192, byte in proptest::num::u8::ANY) {
            let mut bytes = ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control_tar(&[("conffiles", b"/etc/hello.conf\n")])), ("data.tar", &data_tar())]);
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = unpack_bytes(&bytes, UnpackLimits::default());
        }
    }

    /// A package as dpkg-deb builds it, when dpkg-deb is installed.
    #[test]
    fn reads_what_dpkg_deb_builds() {
        if !crate::testing::tool("dpkg-deb", "dpkg") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pkg");
        fs_err::create_dir_all(root.join("DEBIAN")).unwrap();
        fs_err::create_dir_all(root.join("etc")).unwrap();
        fs_err::create_dir_all(root.join("usr/bin")).unwrap();
        fs_err::write(root.join("DEBIAN/control"), CONTROL).unwrap();
        fs_err::write(root.join("DEBIAN/conffiles"), "/etc/hello.conf\n").unwrap();
        fs_err::write(root.join("DEBIAN/postinst"), "#!/bin/sh\nexit 0\n").unwrap();
        fs_err::write(root.join("etc/hello.conf"), "greeting=hi\n").unwrap();
        fs_err::write(root.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [("DEBIAN/postinst", 0o755), ("usr/bin/hello", 0o4755)] {
            fs_err::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("hello", root.join("usr/bin/hi")).unwrap();
        let out = tmp.path().join("hello.deb");
        let status = std::process::Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zxz"])
            .arg(&root)
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let u = unpack(
            &fs_err::File::open(&out).unwrap().into_parts().0,
            "hello.deb",
            tmp.path(),
            1_700_000_000,
            UnpackLimits::default(),
        )
        .unwrap();
        assert_eq!(u.name.as_str(), "hello");
        assert_eq!(u.conffiles, ["/etc/hello.conf"]);
        assert_eq!(u.scripts.keys().collect::<Vec<_>>(), ["postinst"]);
        assert_eq!(u.paths, ["/etc", "/etc/hello.conf", "/usr", "/usr/bin", "/usr/bin/hello", "/usr/bin/hi"]);
        let hello = u.tree.get("usr/bin/hello").unwrap();
        assert_eq!((hello.mode, hello.uid, hello.gid), (0o4755, 0, 0));
        assert_eq!(content(&u, "usr/bin/hello"), b"#!/bin/sh\necho hello\n");
        // Our md5sums agree with md5sum(1) run in the package root.
        let md5sum =
            std::process::Command::new("md5sum").args(["etc/hello.conf", "usr/bin/hello"]).current_dir(&root).output();
        if let Ok(md5sum) = md5sum {
            assert_eq!(u.md5sums, String::from_utf8(md5sum.stdout).unwrap());
        }
    }
}

/// Checks against real packages, when a folder of them is at hand:
/// `CANDIDATE_DEB_DIR=/some/debs cargo test --lib real_packages -- --ignored`.
#[cfg(test)]
mod real {
    use super::*;
    use crate::debian::dpkgdb;
    use std::process::Command;

    #[test]
    #[ignore = "needs CANDIDATE_DEB_DIR"]
    fn real_packages_match_dpkg() {
        let Ok(dir) = std::env::var("CANDIDATE_DEB_DIR") else { return };
        let installed = fs_err::read_to_string("/var/lib/dpkg/status").unwrap_or_default();
        let spool = tempfile::tempdir().unwrap();
        let (mut debs, mut compared) = (0, 0);
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let path = entry.unwrap().into_path();
            if path.extension().is_none_or(|e| e != "deb") {
                continue;
            }
            debs += 1;
            let label = path.file_name().unwrap().to_string_lossy().into_owned();
            let file = fs_err::File::open(&path).unwrap().into_parts().0;
            let u = unpack(&file, &label, spool.path(), 1_700_000_000, UnpackLimits::default()).unwrap();
            // Paths as dpkg-deb lists them.
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("dpkg-deb --fsys-tarfile '{}' | tar -t", path.display()))
                .output()
                .unwrap();
            let listed: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| format!("/{}", l.trim_start_matches("./").trim_end_matches('/')))
                .filter(|l| l != "/")
                .collect();
            assert_eq!(u.paths, listed, "{label}");
            // The contents we spooled hash to what the package's own md5sums says.
            for line in u.md5sums.lines() {
                let (md5, rel) = line.split_once("  ").unwrap();
                let Some(Node { kind: Kind::File { size, content, .. }, .. }) = u.tree.get(rel) else {
                    panic!("{label}: md5sums names `{rel}`, which is not a regular file")
                };
                let buf = super::tests::read(content, *size);
                assert_eq!(format!("{:x}", Md5::digest(&buf)), md5, "{label}: {rel}");
            }
            // The status stanza, if this machine has the same version installed.
            let name = u.name.as_str();
            let arch = u.architecture.as_str();
            let stanza = installed.split("\n\n").find(|s| {
                s.starts_with(&format!("Package: {name}\n"))
                    && s.contains(&format!("\nVersion: {}\n", u.version))
                    && s.contains(&format!("\nArchitecture: {arch}\n"))
            });
            if let Some(real) = stanza {
                let conffiles = real
                    .split("\nConffiles:\n")
                    .nth(1)
                    .map(|rest| {
                        rest.lines()
                            .take_while(|l| l.starts_with(' '))
                            .map(|l| {
                                let mut w = l.split_whitespace();
                                (w.next().unwrap().to_owned(), w.next().unwrap().to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let p = dpkgdb::DbPackage { control: &u.control, status: "install ok installed", conffiles };
                // Installers record the archive's override Priority and Section, which may
                // differ from the package's own: compare those fields by name only.
                let normalise = |text: &str| -> Vec<String> {
                    text.lines()
                        .map(|l| match l.split_once(':') {
                            Some((name @ ("Priority" | "Section"), _)) => name.to_owned(),
                            _ => l.to_owned(),
                        })
                        .collect()
                };
                let ours = dpkgdb::status_stanza(&p).unwrap();
                let ours = ours.strip_suffix("\n\n").expect("a stanza ends with an empty line");
                assert_eq!(normalise(ours), normalise(real.trim_end_matches('\n')), "{label}");
                compared += 1;
            }
        }
        eprintln!("{debs} packages unpacked, {compared} status stanzas compared");
    }
}
