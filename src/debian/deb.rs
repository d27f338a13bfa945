//! A strict, streaming reader of the deb(5) container.
//!
//! A `.deb` is an ar(5) archive: the magic `!<arch>\n`, then members, each a 60-byte text
//! header (name, mtime, uid, gid, mode, size, and the end marker `` `\n ``), the content, and
//! one `\n` after content of odd size so the next header starts on an even byte. deb(5) fixes
//! the members and their order: `debian-binary` (the format version, `2.0\n`), the control
//! archive `control.tar[.gz|.xz|.zst]`, the data archive `data.tar[.gz|.xz|.zst|.bz2]`.
//! Members whose names start with `_` (signatures such as `_gpgorigin`, `_gpgbuilder`) may
//! follow `debian-binary` anywhere and are skipped.
//!
//! The packages we read come from the network, and what we install is whatever this reader
//! says the package holds, so anything deb(5) does not describe is refused rather than
//! guessed at: an unknown or repeated member, members out of order, a header whose fields are
//! not numbers, a size the stream does not hold, a padding byte that is not `\n`, bytes after
//! the last member. deb(5) asks readers to tolerate new members when the format's minor
//! version grows; we refuse them instead, because a member we do not understand may change
//! what the package installs, and an image we cannot describe is not reproducible. (dpkg
//! itself still writes `2.0`.) The obsolete `data.tar.lzma` and the pre-ar `0.939` format
//! are refused too.
//!
//! The reader streams: only the magic, the headers and `debian-binary` are read into memory.
//! [`DebReader::content`] hands out the current member's content as a [`Read`] that ends
//! exactly at the member's end (and fails, rather than ending early, if the stream does), so
//! a decompressor can be stacked on it; whatever the caller leaves unread is skipped by the
//! next [`DebReader::next_member`]. [`Limits`] cap the size a header may claim and the number
//! of members, so a hostile header cannot make us read without end. (The members'
//! *decompressed* sizes are the tar reader's to bound.)

use std::io::{self, Read};

/// The ar(5) global header.
pub const MAGIC: &[u8; 8] = b"!<arch>\n";
/// The size of a member header.
const HEADER_LEN: usize = 60;
/// `debian-binary` is read into memory; `2.0\n` is 4 bytes, and nothing longer than this
/// is a version we could support.
const MAX_VERSION_LEN: u64 = 16;

/// Why a package could not be read. Offsets are bytes from the start of the package; a
/// member's offset is where its header starts.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("failed to read the package at byte {offset}")]
    Io { offset: u64, source: io::Error },
    #[error("not a Debian package: it starts with `{found}`, not the ar magic `!<arch>\\n`")]
    BadMagic { found: String },
    #[error("member header at byte {offset}: {message}")]
    BadHeader { offset: u64, message: String },
    #[error("member header at byte {offset}: the package ends after {got} of its {HEADER_LEN} bytes")]
    TruncatedHeader { offset: u64, got: usize },
    #[error("member `{member}` at byte {offset}: the package ends at byte {end}, before the member does")]
    Truncated { member: String, offset: u64, end: u64 },
    #[error("member `{member}` at byte {offset}: its padding byte is `{found}`, not a newline")]
    BadPadding { member: String, offset: u64, found: String },
    #[error("`debian-binary` at byte {offset}: unsupported format version `{found}` (expected `2.x` and a newline)")]
    BadVersion { offset: u64, found: String },
    #[error("member `{member}` at byte {offset}: expected {expected}")]
    Unexpected { member: String, offset: u64, expected: &'static str },
    #[error("member `{member}` at byte {offset}: a second {what} member (the first is at byte {first})")]
    Duplicate { member: String, offset: u64, what: &'static str, first: u64 },
    #[error("the package ends at byte {offset} without a {what} member")]
    Missing { offset: u64, what: &'static str },
    #[error("member `{member}` at byte {offset}: its size {size} exceeds the limit of {limit} bytes")]
    TooLarge { member: String, offset: u64, size: u64, limit: u64 },
    #[error("member header at byte {offset}: the package has more than {limit} members")]
    TooManyMembers { offset: u64, limit: usize },
    #[error("trailing junk at byte {offset}: {len} bytes after the last member")]
    TrailingJunk { offset: u64, len: usize },
}

/// How a control or data member is compressed, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// The suffix after `.tar` in a member name (`""` for an uncompressed member).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Bzip2 => ".bz2",
        }
    }
}

/// What a member holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// The control archive (`control`, maintainer scripts, `md5sums`, `conffiles` …).
    Control(Compression),
    /// The files the package installs.
    Data(Compression),
}

impl MemberKind {
    pub fn compression(self) -> Compression {
        match self {
            MemberKind::Control(c) | MemberKind::Data(c) => c,
        }
    }

    /// Which member a name is, if it is the control or data member. dpkg accepts bzip2 for
    /// the data member only.
    fn from_name(name: &str) -> Option<MemberKind> {
        let (kind, rest): (fn(Compression) -> MemberKind, _) = if let Some(rest) = name.strip_prefix("control.tar") {
            (MemberKind::Control, rest)
        } else if let Some(rest) = name.strip_prefix("data.tar") {
            (MemberKind::Data, rest)
        } else {
            return None;
        };
        let compression = match rest {
            "" => Compression::None,
            ".gz" => Compression::Gzip,
            ".xz" => Compression::Xz,
            ".zst" => Compression::Zstd,
            ".bz2" if name.starts_with("data.") => Compression::Bzip2,
            _ => return None,
        };
        Some(kind(compression))
    }
}

/// A control or data member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub kind: MemberKind,
    /// The content's size, in bytes.
    pub size: u64,
    /// Where the content starts (after the header), so that a caller holding the file can
    /// point at the bytes instead of copying them.
    pub offset: u64,
}

/// Limits that bound the work a package can demand.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest control member (and ignored `_` member). Control archives hold scripts
    /// and `md5sums`: a few MB for the largest packages in Debian.
    pub max_control_size: u64,
    /// The largest data member. ar's ten-digit size field cannot claim more than
    /// 9 999 999 999 bytes, so the default cap is the format's own; callers who know the
    /// expected size (a `Packages` index has it) can set a tighter one.
    pub max_data_size: u64,
    /// The most members (counting `debian-binary` and the ignored ones).
    pub max_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_control_size: 256 << 20, max_data_size: 16 << 30, max_members: 64 }
    }
}

/// Where the reader is in the sequence deb(5) prescribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ExpectControl,
    ExpectData,
    AfterData,
    Done,
}

/// The member whose content is being read, for skipping it and for errors.
#[derive(Debug, Clone, Default)]
struct Current {
    name: String,
    header_offset: u64,
    /// Content bytes not yet consumed.
    remaining: u64,
    /// Whether a padding byte follows the content.
    padded: bool,
}

/// Reads a package's members in order. [`DebReader::new`] checks the magic and
/// `debian-binary`; [`DebReader::next_member`] then yields the control member, then the data
/// member, then `None` once it has checked that nothing follows. Read a member's content with
/// [`DebReader::content`] before asking for the next one.
#[derive(Debug)]
pub struct DebReader<R> {
    inner: R,
    pos: u64,
    state: State,
    current: Current,
    limits: Limits,
    members: usize,
    minor: u32,
    /// Where the control and data members' headers are, for naming duplicates.
    control_at: u64,
    data_at: u64,
    ignored: Vec<String>,
}

struct Header {
    name: String,
    size: u64,
}

impl<R: Read> DebReader<R> {
    /// Reads the magic and `debian-binary`, with the default [`Limits`].
    pub fn new(inner: R) -> Result<Self, DebError> {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Result<Self, DebError> {
        let mut deb = DebReader {
            inner,
            pos: 0,
            state: State::ExpectControl,
            current: Current::default(),
            limits,
            members: 0,
            minor: 0,
            control_at: 0,
            data_at: 0,
            ignored: Vec::new(),
        };
        let mut magic = [0u8; MAGIC.len()];
        let got = deb.read_full(&mut magic)?;
        if &magic != MAGIC {
            return Err(DebError::BadMagic { found: magic[..got].escape_ascii().to_string() });
        }
        let offset = deb.pos;
        let header = deb.read_header()?.ok_or(DebError::Missing { offset, what: "`debian-binary`" })?;
        if header.name != "debian-binary" {
            return Err(DebError::Unexpected { member: header.name, offset, expected: "`debian-binary` first" });
        }
        if header.size > MAX_VERSION_LEN {
            return Err(DebError::TooLarge { member: header.name, offset, size: header.size, limit: MAX_VERSION_LEN });
        }
        deb.members = 1;
        deb.current =
            Current { name: header.name, header_offset: offset, remaining: header.size, padded: header.size % 2 == 1 };
        let mut version = Vec::with_capacity(header.size as usize);
        deb.content().read_to_end(&mut version).map_err(|source| deb.content_error(source))?;
        deb.minor = parse_version(&version)
            .ok_or_else(|| DebError::BadVersion { offset, found: version.escape_ascii().to_string() })?;
        Ok(deb)
    }

    /// The minor format version (`0` for `2.0`).
    pub fn format_minor(&self) -> u32 {
        self.minor
    }

    /// The names of the `_` members skipped so far.
    pub fn ignored_members(&self) -> &[String] {
        &self.ignored
    }

    /// The position in the stream (bytes consumed).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying reader, positioned wherever reading stopped.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next control or data member, or `None` after the last one (once the end of the
    /// stream has been checked). Skips what is left of the previous member's content.
    ///
    /// After an error the position in the stream is unspecified: stop reading.
    pub fn next_member(&mut self) -> Result<Option<Member>, DebError> {
        self.finish_current()?;
        loop {
            if self.state == State::Done {
                return Ok(None);
            }
            let offset = self.pos;
            let Some(header) = self.read_header()? else {
                return match self.state {
                    State::ExpectControl => Err(DebError::Missing { offset, what: "control (`control.tar*`)" }),
                    State::ExpectData => Err(DebError::Missing { offset, what: "data (`data.tar*`)" }),
                    _ => {
                        self.state = State::Done;
                        Ok(None)
                    }
                };
            };
            self.members += 1;
            if self.members > self.limits.max_members {
                return Err(DebError::TooManyMembers { offset, limit: self.limits.max_members });
            }
            let Header { name, size } = header;
            if name.starts_with('_') {
                self.check_size(&name, offset, size, self.limits.max_control_size)?;
                self.ignored.push(name.clone());
                self.current = Current { name, header_offset: offset, remaining: size, padded: size % 2 == 1 };
                self.finish_current()?;
                continue;
            }
            let kind = match MemberKind::from_name(&name) {
                Some(kind) => kind,
                None if name == "debian-binary" => {
                    return Err(DebError::Duplicate { member: name, offset, what: "`debian-binary`", first: 8 })
                }
                None => {
                    return Err(DebError::Unexpected {
                        member: name,
                        offset,
                        expected: "`control.tar[.gz|.xz|.zst]`, `data.tar[.gz|.xz|.zst|.bz2]` or a `_` member",
                    })
                }
            };
            match (kind, self.state) {
                (MemberKind::Control(_), State::ExpectControl) => {
                    self.check_size(&name, offset, size, self.limits.max_control_size)?;
                    self.state = State::ExpectData;
                    self.control_at = offset;
                }
                (MemberKind::Data(_), State::ExpectData) => {
                    self.check_size(&name, offset, size, self.limits.max_data_size)?;
                    self.state = State::AfterData;
                    self.data_at = offset;
                }
                (MemberKind::Data(_), State::ExpectControl) => {
                    return Err(DebError::Unexpected {
                        member: name,
                        offset,
                        expected: "the control member (`control.tar*`) before the data member",
                    })
                }
                (MemberKind::Control(_), _) => {
                    return Err(DebError::Duplicate { member: name, offset, what: "control", first: self.control_at })
                }
                (MemberKind::Data(_), _) => {
                    return Err(DebError::Duplicate { member: name, offset, what: "data", first: self.data_at })
                }
            }
            self.current =
                Current { name: name.clone(), header_offset: offset, remaining: size, padded: size % 2 == 1 };
            return Ok(Some(Member { name, kind, size, offset: self.pos }));
        }
    }

    fn check_size(&self, name: &str, offset: u64, size: u64, limit: u64) -> Result<(), DebError> {
        if size > limit {
            return Err(DebError::TooLarge { member: name.to_owned(), offset, size, limit });
        }
        Ok(())
    }

    /// The current member's content: a reader that ends at the member's end, and fails with
    /// [`io::ErrorKind::UnexpectedEof`] (naming the member) if the stream ends first.
    pub fn content(&mut self) -> Content<'_, R> {
        Content { deb: self }
    }

    /// Skips the rest of the current member and checks its padding byte.
    fn finish_current(&mut self) -> Result<(), DebError> {
        let remaining = self.current.remaining;
        if remaining > 0 {
            let skipped = io::copy(&mut (&mut self.inner).take(remaining), &mut io::sink())
                .map_err(|source| DebError::Io { offset: self.pos, source })?;
            self.pos += skipped;
            self.current.remaining -= skipped;
            if skipped != remaining {
                return Err(self.truncated());
            }
        }
        if std::mem::take(&mut self.current.padded) {
            let offset = self.pos;
            let mut pad = [0u8; 1];
            if self.read_full(&mut pad)? == 0 {
                return Err(self.truncated());
            }
            if pad[0] != b'\n' {
                return Err(DebError::BadPadding {
                    member: self.current.name.clone(),
                    offset,
                    found: pad.escape_ascii().to_string(),
                });
            }
        }
        Ok(())
    }

    fn truncated(&self) -> DebError {
        DebError::Truncated { member: self.current.name.clone(), offset: self.current.header_offset, end: self.pos }
    }

    /// Turns an error from [`Content`] back into a [`DebError`].
    fn content_error(&self, source: io::Error) -> DebError {
        if source.kind() == io::ErrorKind::UnexpectedEof && self.current.remaining > 0 {
            self.truncated()
        } else {
            DebError::Io { offset: self.pos, source }
        }
    }

    /// Reads a member header; `None` at a clean end of the stream.
    fn read_header(&mut self) -> Result<Option<Header>, DebError> {
        let offset = self.pos;
        let mut block = [0u8; HEADER_LEN];
        match self.read_full(&mut block)? {
            0 => Ok(None),
            HEADER_LEN => parse_header(&block, offset).map(Some),
            got if self.state == State::AfterData => Err(DebError::TrailingJunk { offset, len: got }),
            got => Err(DebError::TruncatedHeader { offset, got }),
        }
    }

    /// Fills `buf` unless the stream ends first; returns how much was read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DebError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(DebError::Io { offset: self.pos, source }),
            }
        }
        Ok(filled)
    }
}

/// The content of the current member; see [`DebReader::content`].
pub struct Content<'a, R> {
    deb: &'a mut DebReader<R>,
}

impl<R> Content<'_, R> {
    /// Bytes of the member not yet read.
    pub fn remaining(&self) -> u64 {
        self.deb.current.remaining
    }
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deb = &mut *self.deb;
        let remaining = deb.current.remaining;
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = deb.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, deb.truncated()));
        }
        deb.pos += n as u64;
        deb.current.remaining -= n as u64;
        Ok(n)
    }
}

/// `2.<minor>\n`, returning the minor version.
fn parse_version(content: &[u8]) -> Option<u32> {
    let minor = content.strip_prefix(b"2.")?.strip_suffix(b"\n")?;
    if minor.is_empty() || !minor.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(minor).ok()?.parse().ok()
}

fn parse_header(b: &[u8; HEADER_LEN], offset: u64) -> Result<Header, DebError> {
    let bad = |message: String| DebError::BadHeader { offset, message };
    if &b[58..60] != b"`\n" {
        return Err(bad(format!(
            "its end marker is `{}`, not `` `\\n ``: not an ar member, or a size field of an earlier member is wrong",
            b[58..60].escape_ascii()
        )));
    }
    // Names are padded with spaces; GNU ar ends them with `/`, dpkg does not.
    let raw = &b[0..16];
    let mut name = &raw[..raw.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1)];
    if name.len() > 1 {
        name = name.strip_suffix(b"/").unwrap_or(name);
    }
    if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
        return Err(bad(format!("its name `{}` is not printable ASCII", raw.escape_ascii())));
    }
    let name = String::from_utf8(name.to_vec()).expect("checked to be ASCII");
    let number = |range: std::ops::Range<usize>, what: &str, radix: u32, required: bool| {
        let field = &b[range];
        parse_number(field, radix, required)
            .ok_or_else(|| bad(format!("member `{name}`: its {what} field `{}` is not a number", field.escape_ascii())))
    };
    // mtime, uid, gid and mode mean nothing to a package, but a header whose fields are not
    // numbers is corrupt, and is refused as such.
    number(16..28, "mtime", 10, false)?;
    number(28..34, "uid", 10, false)?;
    number(34..40, "gid", 10, false)?;
    number(40..48, "mode", 8, false)?;
    let size = number(48..58, "size", 10, true)?;
    Ok(Header { name, size })
}

/// A left-aligned number padded with spaces. Blank is `0` unless `required`.
fn parse_number(field: &[u8], radix: u32, required: bool) -> Option<u64> {
    let digits = field.trim_ascii_end();
    if digits.is_empty() {
        return (!required).then_some(0);
    }
    if !digits.iter().all(|&c| char::from(c).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ar member: header, content, padding.
    fn member(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out =
            format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 1700000000, 0, 0, "100644", content.len()).into_bytes();
        assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(content);
        if content.len() % 2 == 1 {
            out.push(b'\n');
        }
        out
    }

    /// Members by name and content.
    type Members<'a> = &'a [(&'a str, &'a [u8])];

    fn deb(members: Members) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, content) in members {
            out.extend(member(name, content));
        }
        out
    }

    fn valid() -> Vec<u8> {
        deb(&[("debian-binary", b"2.0\n"), ("control.tar.xz", b"control!"), ("data.tar.zst", b"odd data")])
    }

    /// Reads every member's content; returns (member, content) pairs.
    fn read_all(bytes: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, DebError> {
        let mut reader = DebReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(member) = reader.next_member()? {
            let mut content = Vec::new();
            reader.content().read_to_end(&mut content).map_err(|e| reader.content_error(e))?;
            out.push((member, content));
        }
        Ok(out)
    }

    #[test]
    fn reads_a_valid_package() {
        let bytes = valid();
        let members = read_all(&bytes).unwrap();
        assert_eq!(members.len(), 2);
        let (control, content) = &members[0];
        assert_eq!(control.name, "control.tar.xz");
        assert_eq!(control.kind, MemberKind::Control(Compression::Xz));
        assert_eq!((control.size, control.offset), (8, 8 + 60 + 4 + 60));
        assert_eq!(content, b"control!");
        let (data, content) = &members[1];
        assert_eq!(data.kind, MemberKind::Data(Compression::Zstd));
        assert_eq!(&bytes[data.offset as usize..][..data.size as usize], b"odd data");
        assert_eq!(content, b"odd data");
    }

    #[test]
    fn unread_content_is_skipped_and_the_end_is_checked() {
        let bytes = deb(&[("debian-binary", b"2.0\n"), ("control.tar", b"abc"), ("data.tar.gz", b"defgh")]);
        let mut reader = DebReader::new(&bytes[..]).unwrap();
        let control = reader.next_member().unwrap().unwrap();
        let mut first = [0u8; 1];
        reader.content().read_exact(&mut first).unwrap();
        assert_eq!((&first, reader.content().remaining()), (b"a", 2));
        assert_eq!(control.kind.compression(), Compression::None);
        assert_eq!(reader.next_member().unwrap().unwrap().kind, MemberKind::Data(Compression::Gzip));
        assert!(reader.next_member().unwrap().is_none());
        assert!(reader.next_member().unwrap().is_none());
        assert_eq!(reader.position(), bytes.len() as u64);
    }

    #[test]
    fn every_compression_is_recognised() {
        for c in [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd, Compression::Bzip2] {
            let data = format!("data.tar{}", c.extension());
            assert_eq!(MemberKind::from_name(&data), Some(MemberKind::Data(c)), "{}", c.name());
            let control = format!("control.tar{}", c.extension());
            let expected = (c != Compression::Bzip2).then_some(MemberKind::Control(c));
            assert_eq!(MemberKind::from_name(&control), expected, "{}", c.name());
        }
        assert_eq!(MemberKind::from_name("data.tar.lzma"), None);
        assert_eq!(MemberKind::from_name("data.tarx"), None);
    }

    #[test]
    fn gnu_ar_names_and_minor_versions_are_accepted() {
        // GNU ar ends names with `/`; a future `2.1` is still format 2.
        let bytes = deb(&[("debian-binary/", b"2.1\n"), ("control.tar.gz/", b"c"), ("data.tar.xz/", b"d")]);
        let mut reader = DebReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.format_minor(), 1);
        assert_eq!(reader.next_member().unwrap().unwrap().name, "control.tar.gz");
    }

    #[test]
    fn underscore_members_are_ignored_after_debian_binary() {
        let bytes = deb(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgbuilder", b"sig"),
            ("control.tar.gz", b"c"),
            ("_gpgorigin", b"signature"),
            ("data.tar.xz", b"d"),
            ("_trailer", b""),
        ]);
        let mut reader = DebReader::new(&bytes[..]).unwrap();
        let names: Vec<_> = std::iter::from_fn(|| reader.next_member().unwrap()).map(|m| m.name).collect();
        assert_eq!(names, ["control.tar.gz", "data.tar.xz"]);
        assert_eq!(reader.ignored_members(), ["_gpgbuilder", "_gpgorigin", "_trailer"]);

        let first = deb(&[("_gpgorigin", b"sig"), ("debian-binary", b"2.0\n")]);
        assert!(matches!(DebReader::new(&first[..]), Err(DebError::Unexpected { offset: 8, .. })));
    }

    #[test]
    fn wrong_magic() {
        let mut bytes = valid();
        bytes[1] = b'?';
        let err = DebReader::new(&bytes[..]).unwrap_err();
        assert!(matches!(&err, DebError::BadMagic { found } if found == "!?arch>\\n"), "{err}");
        assert!(matches!(DebReader::new(&b"!<ar"[..]), Err(DebError::BadMagic { .. })));
        assert!(matches!(DebReader::new(&b"0.939000\n"[..]), Err(DebError::BadMagic { .. })));
    }

    #[test]
    fn bad_format_versions() {
        for version in [&b"3.0\n"[..], b"2.0", b"2.0\n\n", b"2.\n", b"2.0 \n", b"20\n", b"2.x\n"] {
            let bytes = deb(&[("debian-binary", version), ("control.tar", b""), ("data.tar", b"")]);
            let err = DebReader::new(&bytes[..]).unwrap_err();
            assert!(matches!(err, DebError::BadVersion { offset: 8, .. }), "{version:?}: {err}");
        }
        let long = deb(&[("debian-binary", &[b'2'; 17])]);
        assert!(matches!(DebReader::new(&long[..]), Err(DebError::TooLarge { size: 17, .. })));
    }

    #[test]
    fn wrong_order_duplicates_and_unknown_members() {
        let cases: &[(Members, &str)] = &[
            (&[("data.tar.xz", b"d"), ("control.tar.xz", b"c")], "data.tar.xz"),
            (&[("control.tar.xz", b"c"), ("control.tar.gz", b"c"), ("data.tar", b"")], "control.tar.gz"),
            (&[("control.tar.xz", b"c"), ("data.tar", b""), ("data.tar.xz", b"")], "data.tar.xz"),
            (&[("control.tar.xz", b"c"), ("data.tar", b""), ("control.tar", b"")], "control.tar"),
            (&[("control.tar.xz", b"c"), ("debian-binary", b"2.0\n")], "debian-binary"),
            (&[("control.tar.xz", b"c"), ("data.tar.lzma", b"")], "data.tar.lzma"),
            (&[("control.tar.bz2", b"c")], "control.tar.bz2"),
            (&[("control.tar", b"c"), ("data.tar", b""), ("extra", b"")], "extra"),
            (&[("/", b""), ("control.tar", b"c")], "/"),
        ];
        for (members, culprit) in cases {
            let mut all = vec![("debian-binary", &b"2.0\n"[..])];
            all.extend_from_slice(members);
            let err = read_all(&deb(&all)).unwrap_err();
            match &err {
                DebError::Unexpected { member, .. } | DebError::Duplicate { member, .. } => {
                    assert_eq!(member, culprit, "{err}")
                }
                other => panic!("{culprit}: {other}"),
            }
            assert!(err.to_string().contains(&format!("`{culprit}` at byte ")), "{err}");
        }
        let err = read_all(&deb(&[("debian-binary", b"2.0\n"), ("control.tar.xz", b"c"), ("control.tar.gz", b"c")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "member `control.tar.gz` at byte 134: a second control member (the first is at byte 72)"
        );
    }

    #[test]
    fn missing_members() {
        let no_data = deb(&[("debian-binary", b"2.0\n"), ("control.tar.gz", b"c"), ("_sig", b"")]);
        let err = read_all(&no_data).unwrap_err();
        assert!(
            matches!(err, DebError::Missing { what: "data (`data.tar*`)", offset } if offset == no_data.len() as u64)
        );
        let no_control = deb(&[("debian-binary", b"2.0\n")]);
        assert!(matches!(read_all(&no_control), Err(DebError::Missing { what: "control (`control.tar*`)", .. })));
        assert!(matches!(read_all(MAGIC), Err(DebError::Missing { offset: 8, .. })));
    }

    #[test]
    fn odd_size_with_bad_padding() {
        let mut bytes = deb(&[("debian-binary", b"2.0\n"), ("control.tar", b"abc"), ("data.tar", b"")]);
        let pad = 8 + 60 + 4 + 60 + 3;
        assert_eq!(bytes[pad], b'\n');
        bytes[pad] = b'x';
        let err = read_all(&bytes).unwrap_err();
        assert!(
            matches!(&err, DebError::BadPadding { member, offset, found } if member == "control.tar" && *offset == pad as u64 && found == "x"),
            "{err}"
        );
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let bytes = deb(&[("debian-binary", b"2.0\n"), ("control.tar", b"abc"), ("data.tar", b"0123456789")]);
        for cut in 0..bytes.len() {
            let result = read_all(&bytes[..cut]);
            let err = result.unwrap_err();
            assert!(
                matches!(
                    err,
                    DebError::BadMagic { .. }
                        | DebError::Truncated { .. }
                        | DebError::TruncatedHeader { .. }
                        | DebError::Missing { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
        // Cut in the data member's content: the error names it, where its header is, and
        // where the stream ended — whether the caller reads the content or skips it.
        let cut = &bytes[..bytes.len() - 4];
        let err = read_all(cut).unwrap_err();
        let data_header = (8 + 64 + 64) as u64;
        assert!(
            matches!(&err, DebError::Truncated { member, offset, end } if member == "data.tar" && *offset == data_header && *end == cut.len() as u64),
            "{err}"
        );
        let mut reader = DebReader::new(cut).unwrap();
        reader.next_member().unwrap();
        reader.next_member().unwrap();
        assert!(matches!(reader.next_member(), Err(DebError::Truncated { .. })));
        // Read through `content()`, the error is an `UnexpectedEof` that names the member.
        let mut reader = DebReader::new(cut).unwrap();
        reader.next_member().unwrap();
        reader.next_member().unwrap();
        let err = reader.content().read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("`data.tar`"), "{err}");
    }

    #[test]
    fn trailing_junk_is_an_error() {
        let mut bytes = valid();
        bytes.extend_from_slice(b"junk\n");
        let err = read_all(&bytes).unwrap_err();
        assert!(matches!(err, DebError::TrailingJunk { len: 5, offset } if offset == valid().len() as u64), "{err}");
        let mut bytes = valid();
        bytes.extend_from_slice(&[0u8; 200]);
        assert!(matches!(read_all(&bytes), Err(DebError::BadHeader { .. })));
    }

    #[test]
    fn bad_headers() {
        let good = valid();
        let control_header = 8 + 64;
        let corrupt = |at: usize, with: &[u8]| {
            let mut bytes = good.clone();
            bytes[control_header + at..][..with.len()].copy_from_slice(with);
            read_all(&bytes).unwrap_err()
        };
        let err = corrupt(48, b"12x       ");
        assert_eq!(
            err.to_string(),
            "member header at byte 72: member `control.tar.xz`: its size field `12x       ` is not a number"
        );
        assert!(matches!(corrupt(48, b"          "), DebError::BadHeader { offset: 72, .. }));
        assert!(matches!(corrupt(48, b" 8        "), DebError::BadHeader { offset: 72, .. }));
        assert!(matches!(corrupt(40, b"100844  "), DebError::BadHeader { .. }));
        assert!(matches!(corrupt(58, b"`x"), DebError::BadHeader { .. }));
        assert!(matches!(corrupt(0, b"con\ttrol"), DebError::BadHeader { .. }));
        // A size larger than the member is caught when the next header does not line up,
        // or the stream ends first.
        let err = corrupt(48, b"10        ");
        assert!(matches!(err, DebError::BadHeader { .. } | DebError::Truncated { .. }), "{err}");
    }

    #[test]
    fn limits_bound_claimed_sizes_and_member_counts() {
        let mut bytes = valid();
        // Claim the largest size ar can express for the data member.
        let data_header = 8 + 64 + 68;
        bytes[data_header + 48..][..10].copy_from_slice(b"9999999999");
        let limits = Limits { max_data_size: 1 << 30, ..Limits::default() };
        let mut reader = DebReader::with_limits(&bytes[..], limits).unwrap();
        reader.next_member().unwrap();
        let err = reader.next_member().unwrap_err();
        assert!(
            matches!(&err, DebError::TooLarge { member, size: 9_999_999_999, .. } if member == "data.tar.zst"),
            "{err}"
        );

        let mut members = vec![("debian-binary", &b"2.0\n"[..])];
        members.extend(std::iter::repeat_n(("_x", &b""[..]), 100));
        let err = read_all(&deb(&members)).unwrap_err();
        assert!(matches!(err, DebError::TooManyMembers { limit: 64, .. }), "{err}");
    }

    /// Decompresses a member with the project's decoders (bzip2 is not among them).
    fn decompress(reader: impl Read) -> Vec<u8> {
        let (_, mut decoded) = crate::compress::decoder(reader).unwrap();
        let mut out = Vec::new();
        decoded.read_to_end(&mut out).unwrap();
        out
    }

    /// The regular files of a tar, by path.
    fn tar_files(tar: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
        use crate::tar::reader::{EntryType, Limits, TarReader};
        let mut reader = TarReader::new(tar, Limits::default());
        let mut files = std::collections::BTreeMap::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            if entry.kind == EntryType::File {
                let mut content = Vec::new();
                reader.copy_content(entry.size, &mut content).unwrap();
                files.insert(entry.path, content);
            }
        }
        files
    }

    #[test]
    fn reads_what_dpkg_deb_builds() {
        if !crate::testing::tool("dpkg-deb", "dpkg") {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir_all(root.join("DEBIAN")).unwrap();
        fs_err::create_dir_all(root.join("usr/share/doc/demo")).unwrap();
        // dpkg-deb insists on 0755..0775 for the control directory; a temp dir is 0700.
        for path in [root.clone(), root.join("DEBIAN")] {
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs_err::write(
            root.join("DEBIAN/control"),
            "Package: demo\nVersion: 1.0-1\nArchitecture: all\nMaintainer: A <a@example.invalid>\n\
             Description: a demo\n Built by a test.\n",
        )
        .unwrap();
        fs_err::write(root.join("usr/share/doc/demo/README"), b"odd-sized content").unwrap();

        for (flag, compression) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("xz", Compression::Xz),
            ("zstd", Compression::Zstd),
        ] {
            let out = dir.path().join(format!("demo-{flag}.deb"));
            let status = std::process::Command::new("dpkg-deb")
                .args(["--root-owner-group", &format!("-Z{flag}"), "--build"])
                .arg(&root)
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "dpkg-deb -Z{flag} failed");

            let file = fs_err::File::open(&out).unwrap();
            let mut reader = DebReader::new(io::BufReader::new(file)).unwrap();
            assert_eq!(reader.format_minor(), 0);
            let control = reader.next_member().unwrap().unwrap();
            assert_eq!(control.kind, MemberKind::Control(compression), "{flag}");
            let control_tar = decompress(reader.content());
            let files = tar_files(&control_tar);
            let text = crate::debian::control::from_utf8(&files["./control"]).unwrap();
            let stanza = crate::debian::control::parse_one(text, Default::default()).unwrap();
            assert_eq!(stanza.get("package"), Some("demo"));
            assert_eq!(stanza.get("Description"), Some("a demo\n Built by a test."));

            let data = reader.next_member().unwrap().unwrap();
            assert_eq!(data.kind, MemberKind::Data(compression), "{flag}");
            let files = tar_files(&decompress(reader.content()));
            assert_eq!(files["./usr/share/doc/demo/README"], b"odd-sized content");
            assert!(reader.next_member().unwrap().is_none());
            assert_eq!(reader.position(), fs_err::metadata(&out).unwrap().len());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let _ = read_all(&bytes);
        }

        #[test]
        fn arbitrary_members_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            // Past the magic and `debian-binary`, so the bytes reach the member parser.
            let mut bytes = deb(&[("debian-binary", b"2.0\n")]);
            bytes.extend(tail);
            let _ = read_all(&bytes);
        }

        #[test]
        fn mutated_packages_never_panic(at in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut bytes = valid();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = read_all(&bytes);
        }
    }
}
