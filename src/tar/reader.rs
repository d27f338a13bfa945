//! A strict reader for untrusted tar archives.
//!
//! It reads ustar, PAX (`x` local records; `g` global records are skipped) and GNU
//! long-name (`L`, `K`) archives from any [`Read`] — a decompressor or a file — and yields
//! one [`Entry`] per member, with the offset of the member's content in the stream so that a
//! caller holding a plain tar can point at the bytes instead of copying them. It checks every
//! header's checksum, refuses entry types it cannot represent faithfully (sparse files,
//! multi-volume parts), and insists on the end-of-archive marker, so that an archive cut at
//! a block boundary is reported as truncated instead of read as shorter. Caps on the number
//! of entries and on the total size bound what a decompression bomb can make us do.
//!
//! It does not interpret paths beyond decoding them: placing entries (and refusing `..`,
//! escapes through symlinks, and so on) is the caller's job, done against the image tree.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};

use super::BLOCK;

/// Limits that bound the work an archive can demand.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_total_size: u64,
    /// The largest PAX or GNU long-name record read into memory.
    pub max_metadata: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // Large enough for any real root filesystem (a full Debian desktop is ~300k entries
        // and a few GB); small enough that a bomb stops long before it exhausts the disk.
        Limits { max_entries: 2_000_000, max_total_size: 64 << 30, max_metadata: 1 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read the archive")]
    Io(#[from] io::Error),
    #[error("the archive is truncated (it ends {0})")]
    Truncated(&'static str),
    #[error("entry `{entry}`: the archive ends in the middle of its content")]
    TruncatedEntry { entry: String },
    #[error("entry `{entry}`: cannot read its content")]
    Content { entry: String, source: io::Error },
    #[error("bad header at byte {offset}: {message}")]
    BadHeader { offset: u64, message: String },
    #[error("entry `{path}`: {message}")]
    Unsupported { path: String, message: String },
    #[error("the archive holds more than {0} entries; refusing it as a likely decompression bomb")]
    TooManyEntries(u64),
    #[error("the archive's content exceeds {0} bytes; refusing it as a likely decompression bomb")]
    TooLarge(u64),
    /// A path, name or link target past the image's caps ([`crate::tree::MAX_PATH_BYTES`] …),
    /// refused as it is read, before any work is done for it.
    /// Boxed: the tree's errors are large, and this one is rare.
    #[error(transparent)]
    Path(Box<crate::tree::TreeError>),
    #[error("entry `{path}`: extended attribute `{name}`: {message}")]
    Xattr { path: String, name: String, message: String },
}

/// The longest extended attribute name Linux stores (`XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// The largest extended attribute value Linux stores (`XATTR_SIZE_MAX`, 64 KiB).
pub const MAX_XATTR_VALUE: usize = 65536;
/// The namespaces Linux knows; a name outside them is refused by `setxattr(2)`, so an image
/// carrying one could never be unpacked as it claims to be.
const XATTR_NAMESPACES: [&str; 4] = ["security.", "system.", "trusted.", "user."];

/// Refuses an extended attribute Linux cannot hold: an unknown namespace, a name or value
/// too long, a NUL in the name.
fn check_xattr(path: &str, name: &str, value: &[u8]) -> Result<(), ReadError> {
    let message = if !XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns) && name.len() > ns.len()) {
        Some(format!("Linux holds only names in the {} namespaces", XATTR_NAMESPACES.join(", ")))
    } else if name.len() > MAX_XATTR_NAME {
        Some(format!("the name is {} bytes, longer than the {MAX_XATTR_NAME} Linux allows", name.len()))
    } else if name.contains('\0') {
        Some("the name contains a NUL byte".to_owned())
    } else if value.len() > MAX_XATTR_VALUE {
        Some(format!("the value is {} bytes, larger than the {MAX_XATTR_VALUE} Linux allows", value.len()))
    } else {
        None
    };
    match message {
        Some(message) => {
            Err(ReadError::Xattr { path: path.to_owned(), name: name.escape_debug().to_string(), message })
        }
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    HardLink,
    Symlink,
    Directory,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl EntryType {
    pub fn describe(self) -> &'static str {
        match self {
            EntryType::File => "regular file",
            EntryType::HardLink => "hard link",
            EntryType::Symlink => "symlink",
            EntryType::Directory => "directory",
            EntryType::CharDevice => "character device",
            EntryType::BlockDevice => "block device",
            EntryType::Fifo => "fifo",
        }
    }
}

/// One archive member, as recorded (paths undecoded beyond PAX/GNU overrides).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub kind: EntryType,
    pub link: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub size: u64,
    /// Offset of the content in the (decompressed) stream.
    pub offset: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Reads members one by one. After [`TarReader::next_entry`], the caller either reads the
/// content with [`TarReader::copy_content`] or lets the next call skip it.
pub struct TarReader<R> {
    inner: R,
    pos: u64,
    /// Content bytes of the current entry not yet consumed (plus padding).
    pending: u64,
    entries: u64,
    total: u64,
    limits: Limits,
    done: bool,
    /// The path of the entry whose content comes next, for errors.
    current: String,
    /// Passes over content not read: reading it through, or seeking where `R` can.
    pass_over: fn(&mut R, u64) -> io::Result<u64>,
}

/// Passes over `n` bytes by reading them.
fn read_over<R: Read>(inner: &mut R, n: u64) -> io::Result<u64> {
    io::copy(&mut inner.take(n), &mut io::sink())
}

/// Passes over `n` bytes by seeking (kept in the buffer when they are in it). A seek past
/// the end is not seen here but by the next header's read, which then finds no
/// end-of-archive marker.
fn seek_over<S: Read + io::Seek>(inner: &mut BufReader<S>, n: u64) -> io::Result<u64> {
    inner.seek_relative(i64::try_from(n).map_err(io::Error::other)?)?;
    Ok(n)
}

impl<S: Read + io::Seek> TarReader<BufReader<S>> {
    /// A reader that seeks over the content it is not asked for: reading a tree of a big
    /// tar's headers reads little more than its headers.
    pub fn seeking(inner: BufReader<S>, limits: Limits) -> Self {
        TarReader { pass_over: seek_over::<S>, ..TarReader::new(inner, limits) }
    }
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        TarReader {
            inner,
            pos: 0,
            pending: 0,
            entries: 0,
            total: 0,
            limits,
            done: false,
            current: String::new(),
            pass_over: read_over::<R>,
        }
    }

    /// The next member, or `None` at the end-of-archive marker.
    ///
    /// Long by design: one loop over header blocks, because PAX and GNU long-name records apply
    /// to the member that follows them, and keeping that pending state in one function (not
    /// spread over helpers with `&mut` state) is what makes the limits and refusals auditable.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.pending)?;
        self.pending = 0;
        let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        loop {
            let offset = self.pos;
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                return Err(ReadError::Truncated("without its end-of-archive marker"));
            }
            if block.iter().all(|&b| b == 0) {
                if !pax.is_empty() || gnu_name.is_some() || gnu_link.is_some() {
                    return Err(ReadError::Truncated("after an extended header, before its entry"));
                }
                // One zero block ends the archive (GNU tar accepts a lone one too); whatever
                // follows is padding and is not read.
                self.done = true;
                return Ok(None);
            }
            let header = Header::parse(&block, offset)?;
            match header.typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if header.size > self.limits.max_metadata {
                        return Err(ReadError::BadHeader {
                            offset,
                            message: format!("an extended header of {} bytes is larger than allowed", header.size),
                        });
                    }
                    // Metadata records count against the caps like entries do: else an
                    // endless run of them (each under `max_metadata`) is read for ever.
                    self.count(header.size)?;
                    self.current = format!("(extended header at byte {offset})");
                    let data = self.read_data(header.size)?;
                    match header.typeflag {
                        b'x' => parse_pax(&data, offset, &mut pax)?,
                        b'g' => {
                            // Global records (git archive's `comment=`) carry nothing we keep;
                            // any other key GNU tar applies to every later member, so a reader
                            // ignoring it would read another archive than GNU tar does.
                            let mut global = std::collections::BTreeMap::new();
                            parse_pax(&data, offset, &mut global)?;
                            if let Some(key) = global.keys().find(|k| k.as_str() != "comment") {
                                return Err(ReadError::Unsupported {
                                    path: self.current.clone(),
                                    message: format!(
                                        "a global PAX record sets `{key}`, which would apply to every later member"
                                    ),
                                });
                            }
                        }
                        b'L' => gnu_name = Some(trim_nul(&data).to_vec()),
                        _ => gnu_link = Some(trim_nul(&data).to_vec()),
                    }
                    continue;
                }
                _ => {}
            }
            let path_bytes = pax.remove("path").or(gnu_name).unwrap_or(header.name);
            let link_bytes = pax.remove("linkpath").or(gnu_link).unwrap_or(header.link);
            let path = utf8(path_bytes, offset, "path")?;
            let link = utf8(link_bytes, offset, "link target")?;
            // Caps on the path and link are checked here, before anything is done for the
            // entry: a deep path refused at once costs only its own bytes.
            let limit = |e| ReadError::Path(Box::new(e));
            crate::tree::check_path_limits(&path).map_err(limit)?;
            if header.typeflag == b'1' {
                crate::tree::check_path_limits(&link).map_err(limit)?;
            } else if !link.is_empty() {
                crate::tree::check_link_target(&path, &link).map_err(limit)?;
            }
            let kind = match header.typeflag {
                // An old-style entry named `dir/` is a folder to GNU tar (when it has no data).
                b'0' | b'\0' | b'7' if path.ends_with('/') && header.size == 0 => EntryType::Directory,
                b'0' | b'\0' | b'7' if path.ends_with('/') => {
                    return Err(ReadError::BadHeader {
                        offset,
                        message: format!("`{path}` is a regular file named like a folder, with {} bytes", header.size),
                    });
                }
                b'0' | b'\0' | b'7' => EntryType::File,
                b'1' => EntryType::HardLink,
                b'2' => EntryType::Symlink,
                b'3' => EntryType::CharDevice,
                b'4' => EntryType::BlockDevice,
                b'5' => EntryType::Directory,
                b'6' => EntryType::Fifo,
                other => {
                    return Err(ReadError::Unsupported {
                        path,
                        message: format!(
                            "unsupported entry type `{}` (sparse and multi-volume members are refused)",
                            other as char
                        ),
                    })
                }
            };
            if pax.keys().any(|k| k.starts_with("GNU.sparse")) {
                return Err(ReadError::Unsupported { path, message: "sparse files are not supported".into() });
            }
            let num = |key: &str, fallback: u64| -> Result<u64, ReadError> {
                match pax.get(key) {
                    None => Ok(fallback),
                    Some(v) => {
                        let text = String::from_utf8_lossy(v);
                        let bad =
                            || ReadError::BadHeader { offset, message: format!("bad PAX `{key}` value `{text}`") };
                        // Only a time may carry a fraction (`1700000000.5`: whole seconds kept)
                        // or be negative (before 1970: clamped to 0). A size, uid or gid is
                        // digits alone: read as 0, `size=-1` made an empty file of a member
                        // whose data GNU tar skips, and those bytes were read as entries.
                        let whole = if key == "mtime" { text.split('.').next().unwrap_or_default() } else { &*text };
                        if key == "mtime" && whole.starts_with('-') {
                            return Ok(0);
                        }
                        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(bad());
                        }
                        whole.parse().map_err(|_| bad())
                    }
                }
            };
            let size = match kind {
                // Links, directories and devices have no content, whatever the header says
                // (a hard link's size field may repeat its target's size).
                EntryType::File => num("size", header.size)?,
                // But GNU tar skips the size a symlink, device or fifo claims as data, where we
                // would read it as members: the two would read two archives.
                EntryType::Symlink | EntryType::CharDevice | EntryType::BlockDevice | EntryType::Fifo
                    if num("size", header.size)? != 0 =>
                {
                    return Err(ReadError::BadHeader {
                        offset,
                        message: format!(
                            "`{path}`, a link, device or fifo, claims {} bytes of data",
                            num("size", header.size)?
                        ),
                    });
                }
                _ => 0,
            };
            let as_u32 = |v: u64, what: &str| {
                u32::try_from(v)
                    .map_err(|_| ReadError::BadHeader { offset, message: format!("{what} {v} is out of range") })
            };
            for (key, value) in &pax {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    check_xattr(&path, name, value)?;
                }
            }
            let entry = Entry {
                uid: as_u32(num("uid", header.uid)?, "uid")?,
                gid: as_u32(num("gid", header.gid)?, "gid")?,
                mtime: num("mtime", header.mtime)?,
                mode: (header.mode & 0o7777) as u32,
                size,
                offset: self.pos,
                xattrs: pax
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix("SCHILY.xattr.").map(|name| (name.to_owned(), v.clone())))
                    .collect(),
                path,
                kind,
                link,
            };
            // Only regular files are followed by data; counted (and so capped) before padded.
            self.count(size)?;
            self.pending = padded(size);
            self.current.clone_from(&entry.path);
            return Ok(Some(entry));
        }
    }

    /// Counts one member (an entry or a metadata record) of `size` bytes against the caps.
    fn count(&mut self, size: u64) -> Result<(), ReadError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ReadError::TooManyEntries(self.limits.max_entries));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_size {
            return Err(ReadError::TooLarge(self.limits.max_total_size));
        }
        Ok(())
    }

    /// Copies the current entry's `size` content bytes to `out`.
    pub fn copy_content(&mut self, size: u64, out: &mut impl Write) -> Result<(), ReadError> {
        let mut limited = (&mut self.inner).take(size);
        let n =
            io::copy(&mut limited, out).map_err(|source| ReadError::Content { entry: self.current.clone(), source })?;
        self.pos += n;
        if n != size {
            return Err(ReadError::TruncatedEntry { entry: self.current.clone() });
        }
        self.pending = self.pending.saturating_sub(size);
        Ok(())
    }

    /// Reads what follows the end-of-archive marker to the end of the stream, so that a
    /// decoder reaches and checks its trailer (gzip's CRC-32 and length, xz's and zstd's
    /// checks): a tar reader that stops at the marker never learns the content was corrupt.
    /// What follows counts against [`Limits::max_total_size`], like content.
    pub fn finish(mut self) -> Result<(), ReadError> {
        let room = self.limits.max_total_size.saturating_sub(self.total);
        let read = io::copy(&mut (&mut self.inner).take(room.saturating_add(1)), &mut io::sink())?;
        if read > room {
            return Err(ReadError::TooLarge(self.limits.max_total_size));
        }
        Ok(())
    }

    /// The position in the stream (bytes consumed).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying reader, positioned after the last block read (after the
    /// end-of-archive marker, once [`TarReader::next_entry`] has returned `None`), so a
    /// caller can check what follows.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, ReadError> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.inner.read(&mut block[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(ReadError::Truncated("inside a header block"));
            }
            filled += n;
        }
        self.pos += BLOCK as u64;
        Ok(true)
    }

    fn read_data(&mut self, size: u64) -> Result<Vec<u8>, ReadError> {
        let mut data = Vec::with_capacity(size as usize);
        self.copy_content(size, &mut data)?;
        self.skip(padded(size) - size)?;
        self.pending = 0;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> Result<(), ReadError> {
        if n == 0 {
            return Ok(());
        }
        let skipped = (self.pass_over)(&mut self.inner, n)
            .map_err(|source| ReadError::Content { entry: self.current.clone(), source })?;
        self.pos += skipped;
        if skipped != n {
            return Err(ReadError::TruncatedEntry { entry: self.current.clone() });
        }
        Ok(())
    }
}

/// Reads a shared file sequentially through positioned reads, so that several readers (and
/// [`crate::tree::Content::Range`]s) can share one descriptor without sharing an offset.
pub struct ReadAt {
    file: std::sync::Arc<std::fs::File>,
    pos: u64,
}

impl ReadAt {
    pub fn new(file: std::sync::Arc<std::fs::File>) -> Self {
        ReadAt { file, pos: 0 }
    }
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for ReadAt {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let base = match to {
            io::SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            io::SeekFrom::Current(delta) => (self.pos, delta),
            io::SeekFrom::End(delta) => (self.file.metadata()?.len(), delta),
        };
        self.pos = base.0.checked_add_signed(base.1).ok_or_else(|| io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

fn trim_nul(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    &data[..end]
}

fn utf8(bytes: Vec<u8>, offset: u64, what: &str) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| ReadError::BadHeader {
        offset,
        message: format!("the {what} `{}` is not UTF-8", String::from_utf8_lossy(e.as_bytes())),
    })
}

struct Header {
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
}

impl Header {
    fn parse(b: &[u8; BLOCK], offset: u64) -> Result<Self, ReadError> {
        let bad = |message: String| ReadError::BadHeader { offset, message };
        let recorded = parse_numeric(&b[148..156]).ok_or_else(|| bad("unreadable checksum".into()))?;
        let unsigned: u64 =
            b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { u64::from(x) }).sum();
        let signed: i64 =
            b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { i64::from(x as i8) }).sum();
        if recorded != unsigned && recorded as i64 != signed {
            return Err(bad(format!(
                "checksum mismatch (recorded {recorded}, computed {unsigned}): not a tar archive, or corrupt"
            )));
        }
        let field = |range: std::ops::Range<usize>, what: &str| {
            parse_numeric(&b[range]).ok_or_else(|| bad(format!("unreadable {what} field")))
        };
        let ustar = &b[257..263] == b"ustar\0";
        let mut name = trim_nul(&b[0..100]).to_vec();
        let prefix = trim_nul(&b[345..500]);
        if ustar && !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
        Ok(Header {
            name,
            link: trim_nul(&b[157..257]).to_vec(),
            mode: field(100..108, "mode")?,
            uid: field(108..116, "uid")?,
            gid: field(116..124, "gid")?,
            size: field(124..136, "size")?,
            mtime: field(136..148, "mtime")?,
            typeflag: b[156],
        })
    }
}

/// Octal (NUL/space terminated) or GNU base-256 (high bit of the first byte set).
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn parse_pax(data: &[u8], offset: u64, out: &mut BTreeMap<String, Vec<u8>>) -> Result<(), ReadError> {
    let bad = |message: &str| ReadError::BadHeader { offset, message: format!("malformed PAX record: {message}") };
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("no length"))?;
        let len: usize =
            std::str::from_utf8(&rest[..space]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("length does not match the record"));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("no `=`"))?;
        let key = String::from_utf8(record[..eq].to_vec()).map_err(|_| bad("key is not UTF-8"))?;
        out.insert(key, record[eq + 1..].to_vec());
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Content, Kind, Node, Tree};
    use std::sync::Arc;

    fn read_all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, ReadError> {
        let mut r = TarReader::new(bytes, Limits::default());
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            if e.kind == EntryType::File {
                r.copy_content(e.size, &mut data)?;
            }
            out.push((e, data));
        }
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs_err::write(&p, b"content").unwrap();
        let mut tree = Tree::new(5);
        let mut node = Node {
            implicit: false,
            kind: Kind::File { size: 7, content: Content::Host(Arc::new(p)), link_group: None },
            mode: 0o2755,
            uid: 7,
            gid: 8,
            mtime: 9,
            xattrs: BTreeMap::new(),
        };
        node.xattrs.insert("security.capability".into(), vec![0, 1, 2]);
        tree.insert(&format!("deep/{}", "n".repeat(150)), node).unwrap();
        let mut out = Vec::new();
        crate::tar::writer::write_tree(&tree, &mut out).unwrap();
        out
    }

    /// One checksummed GNU-magic header block.
    fn header(name: &str, typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        for (at, width, value) in [(100, 8, 0o644), (108, 8, 0), (116, 8, 0), (124, 12, size), (136, 12, 0)] {
            h[at..at + width].copy_from_slice(format!("{value:0w$o}\0", w = width - 1).as_bytes());
        }
        h[156] = typeflag;
        h[257..265].copy_from_slice(b"ustar  \0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// A member of `typeflag` with `data` as its padded content.
    fn member(out: &mut Vec<u8>, name: &str, typeflag: u8, data: &[u8]) {
        out.extend_from_slice(&header(name, typeflag, data.len() as u64));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let records = records.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect();
        crate::tar::writer::pax_records(&records)
    }

    /// Where GNU tar would read another archive than we do, the archive is refused: a symlink,
    /// device or fifo claiming data (GNU tar skips it), a global PAX record setting anything
    /// but a comment (GNU tar applies it to every later member); an old-style regular entry
    /// named `dir/` is the folder GNU tar makes of it.
    #[test]
    fn what_gnu_tar_reads_otherwise_is_refused_or_read_its_way() {
        let one = |name: &str, typeflag: u8, data: &[u8]| {
            let mut tar = Vec::new();
            member(&mut tar, name, typeflag, data);
            member(&mut tar, "f", b'0', b"x");
            tar.extend_from_slice(&[0; 2 * BLOCK]);
            read_all(&tar).map_err(|e| e.to_string())
        };
        for typeflag in [b'2', b'3', b'4', b'6'] {
            let err = one("l", typeflag, &[b'h'; BLOCK]).unwrap_err();
            assert!(err.contains("a link, device or fifo, claims 512 bytes of data"), "{err}");
        }
        let err = one("PaxHeaders/global", b'g', &pax(&[("uid", b"0")])).unwrap_err();
        assert!(err.contains("a global PAX record sets `uid`"), "{err}");
        assert_eq!(one("PaxHeaders/global", b'g', &pax(&[("comment", b"c0ffee")])).unwrap().len(), 1);
        let entries = one("opt/app/", b'\0', b"").unwrap();
        assert_eq!(entries[0].0.kind, EntryType::Directory);
        assert!(one("opt/app/", b'0', b"data").unwrap_err().contains("a regular file named like a folder"));
    }

    /// A PAX size, uid or gid that is not plain digits is refused: `size=-1` once read as 0,
    /// an empty file whose 1024 data bytes (a header GNU tar skips as data) were then read as
    /// a member of their own, and `uid=-1` as root. A time keeps its whole seconds; a size near
    /// 2^64 is refused by the caps (its padding once overflowed first).
    #[test]
    fn pax_numbers_are_digits_and_huge_sizes_are_capped() {
        let with = |key: &str, value: &[u8], size: usize| {
            let mut tar = Vec::new();
            member(&mut tar, "PaxHeaders/f", b'x', &pax(&[(key, value)]));
            let mut hidden = Vec::new();
            member(&mut hidden, "etc/cron.d/x", b'0', b"* * * * * root true\n");
            let data: Vec<u8> = hidden.iter().copied().chain(std::iter::repeat(0)).take(size).collect();
            member(&mut tar, "f", b'0', &data);
            tar.extend_from_slice(&[0; 2 * BLOCK]);
            read_all(&tar).map_err(|e| e.to_string())
        };
        for (key, value) in [("size", &b"-1"[..]), ("uid", b"-1"), ("gid", b"+5"), ("size", b"5.9"), ("uid", b"")] {
            let err = with(key, value, 1024).unwrap_err();
            assert!(err.contains(&format!("bad PAX `{key}` value")), "{key}={value:?}: {err}");
        }
        let entries = with("mtime", b"1700000000.5", 1024).unwrap();
        assert_eq!(entries.iter().map(|(e, _)| (e.path.as_str(), e.mtime)).collect::<Vec<_>>(), [("f", 1_700_000_000)]);
        let err = with("size", b"18446744073709551615", 0).unwrap_err();
        assert!(err.contains("exceeds") || err.contains("larger"), "{err}");
    }

    /// #16: GNU and PAX metadata records escaped the entry and size caps (an endless run of
    /// them was read for ever); paths and names past Linux's caps, and xattrs Linux cannot
    /// hold, were accepted.
    #[test]
    fn metadata_records_paths_and_xattrs_are_capped() {
        let mut tar = Vec::new();
        for _ in 0..10 {
            member(&mut tar, "././@LongLink", b'g', &pax(&[("comment", b"x")]));
        }
        member(&mut tar, "f", b'0', b"");
        tar.extend_from_slice(&[0; 2 * BLOCK]);
        let limits = Limits { max_entries: 5, ..Limits::default() };
        let mut reader = TarReader::new(tar.as_slice(), limits);
        let err = reader.next_entry().unwrap_err().to_string();
        assert_eq!(err, "the archive holds more than 5 entries; refusing it as a likely decompression bomb");
        let limits = Limits { max_total_size: 100, ..Limits::default() };
        let err = TarReader::new(tar.as_slice(), limits).next_entry().unwrap_err().to_string();
        assert!(err.contains("exceeds 100 bytes"), "{err}");

        let long_name = |name: &str| {
            let mut tar = Vec::new();
            member(&mut tar, "././@LongLink", b'L', name.as_bytes());
            member(&mut tar, "f", b'0', b"");
            tar.extend_from_slice(&[0; 2 * BLOCK]);
            read_all(&tar).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(long_name(&format!("a/{}", "n".repeat(255))).is_ok());
        // A NUL inside a PAX path is named as a NUL, not as the `..` beside it.
        let mut tar = Vec::new();
        member(&mut tar, "PaxHeaders/f", b'x', &pax(&[("path", b"../a\0b")]));
        member(&mut tar, "f", b'0', b"");
        tar.extend_from_slice(&[0; 2 * BLOCK]);
        let err = read_all(&tar).unwrap_err().to_string();
        assert_eq!(err, "`/../a\\0b`: the path contains a NUL byte");
        let err = long_name(&format!("a/{}", "n".repeat(256))).unwrap_err();
        assert!(err.contains("is 256 bytes, longer than the 255 a file name may have"), "{err}");
        let err = long_name(&"a/".repeat(40_000)).unwrap_err();
        assert!(err.contains("the path is 80000 bytes, longer than the 4096 a path may have"), "{err}");
        let err = long_name(&"a/".repeat(300)).unwrap_err();
        assert!(err.contains("is 300 levels deep, deeper than the 256 allowed"), "{err}");

        let xattr = |name: &str, value: &[u8]| {
            let mut tar = Vec::new();
            member(&mut tar, "PaxHeaders/f", b'x', &pax(&[(&format!("SCHILY.xattr.{name}"), value)]));
            member(&mut tar, "f", b'0', b"");
            tar.extend_from_slice(&[0; 2 * BLOCK]);
            read_all(&tar).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(xattr("user.mime", b"text/plain").is_ok());
        assert!(xattr("security.capability", &[1, 2]).is_ok());
        for (name, value, message) in [
            ("mime", &b"x"[..], "Linux holds only names in the security., system., trusted., user. namespaces"),
            ("user.", &b"x"[..], "Linux holds only names in the"),
            (&format!("user.{}", "n".repeat(251)), &b"x"[..], "the name is 256 bytes, longer than the 255"),
            ("user.big", &vec![0; MAX_XATTR_VALUE + 1][..], "the value is 65537 bytes, larger than the 65536"),
        ] {
            let err = xattr(name, value).unwrap_err();
            assert!(err.starts_with("entry `f`: extended attribute") && err.contains(message), "{err}");
        }
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let entries = read_all(&sample()).unwrap();
        let paths: Vec<_> = entries.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(paths, ["./", "./deep/", &format!("./deep/{}", "n".repeat(150))]);
        let (file, data) = &entries[2];
        assert_eq!(data, b"content");
        assert_eq!((file.mode, file.uid, file.gid, file.mtime), (0o2755, 7, 8, 9));
        assert_eq!(file.xattrs["security.capability"], vec![0, 1, 2]);
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let bytes = sample();
        // Cut inside the content, at a header boundary, and just before the end marker.
        for cut in [BLOCK * 4 + 3, BLOCK * 3, BLOCK * 5] {
            let err = read_all(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, ReadError::Truncated(_) | ReadError::TruncatedEntry { .. }), "cut {cut}: {err}");
        }
    }

    #[test]
    fn a_seeking_reader_passes_over_content_and_still_sees_truncation() {
        let bytes = sample();
        let headers = |bytes: &[u8]| -> Result<Vec<Entry>, ReadError> {
            // A buffer of one block: every content byte is sought over, never read.
            let inner = BufReader::with_capacity(BLOCK, io::Cursor::new(bytes.to_vec()));
            let mut r = TarReader::seeking(inner, Limits::default());
            let mut out = Vec::new();
            while let Some(e) = r.next_entry()? {
                out.push(e);
            }
            Ok(out)
        };
        let read: Vec<Entry> = read_all(&bytes).unwrap().into_iter().map(|(e, _)| e).collect();
        assert_eq!(format!("{:?}", headers(&bytes).unwrap()), format!("{read:?}"));
        for cut in [BLOCK * 4 + 3, BLOCK * 3, BLOCK * 5] {
            let err = headers(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, ReadError::Truncated(_) | ReadError::TruncatedEntry { .. }), "cut {cut}: {err}");
        }
    }

    #[test]
    fn a_corrupt_header_is_named() {
        let mut bytes = sample();
        bytes[10] ^= 0x55;
        assert!(matches!(read_all(&bytes), Err(ReadError::BadHeader { offset: 0, .. })));
    }

    #[test]
    fn limits_stop_bombs() {
        let bytes = sample();
        let mut r = TarReader::new(&bytes[..], Limits { max_entries: 2, ..Limits::default() });
        let mut result = Ok(());
        while let Some(next) = r.next_entry().transpose() {
            if let Err(e) = next {
                result = Err(e);
                break;
            }
        }
        assert!(matches!(result, Err(ReadError::TooManyEntries(2))));
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"     12 "), Some(0o12));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_numeric(b"0008\0"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let _ = read_all(&bytes);
        }
    }
}
