//! A strict reader for untrusted ZIP archives (wheels).
//!
//! Like the tar reader, it is ours so that we control every cap. It reads the archive from
//! memory: the end-of-central-directory record (and its ZIP64 form), then every central
//! directory entry, each checked against its local header (same name, method, flags, and —
//! unless a data descriptor follows — the same CRC and sizes). Only `stored` (0) and
//! `deflate` (8) members are read; encrypted ones are refused. Member data may not overlap
//! each other or the central directory (the trick of the overlapping-entry zip bombs).
//!
//! Names are refused when a wheel could not mean them: absolute, with a `..` component,
//! with a NUL or a backslash, not UTF-8, or present twice. Every content read is checked
//! against its declared size and CRC-32, and caps bound the number of entries, the length of
//! a name, the total uncompressed size and the compression ratio. Every error names the
//! archive (the `what` given by the caller), the member and, for a cap, the cap.

use std::collections::BTreeSet;
use std::sync::Arc;

/// Limits that bound the work an archive can demand.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_name_len: usize,
    pub max_total_size: u64,
    /// The largest uncompressed/compressed ratio of a member of more than
    /// [`RATIO_THRESHOLD`] bytes.
    pub max_ratio: u64,
}

/// Members up to this size are not held to the compression ratio: a small file of zeros
/// compresses 1000:1 and harms nobody.
pub const RATIO_THRESHOLD: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        // The largest wheels in use (CUDA builds of torch) hold ~30k members and ~5 GB; a
        // path longer than 1024 bytes is not a Python module. Deflate cannot exceed ~1032:1;
        // real code and data compress below 100:1, so 250:1 over a megabyte is a bomb.
        Limits { max_entries: 200_000, max_name_len: 1024, max_total_size: 16 << 30, max_ratio: 250 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("`{what}` is not a zip archive: {message}")]
    NotZip { what: String, message: String },
    #[error("`{what}`: {message}")]
    Corrupt { what: String, message: String },
    #[error("`{what}`, member `{member}`: {message}")]
    Member { what: String, member: String, message: String },
    #[error("`{what}`, member `{member}`: exceeds the cap `{cap}` ({limit})")]
    Cap { what: String, member: String, cap: &'static str, limit: u64 },
}

/// How a member's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflate,
}

/// One member, as the central directory describes it and its local header confirms.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub method: Method,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    /// A directory entry (its name ends in `/`); it has no content.
    pub is_dir: bool,
    /// Any execute bit in the Unix mode of the external attributes (when the archive was
    /// made on Unix); pip installs such files `0755`.
    pub executable: bool,
    data_offset: u64,
}

/// A parsed archive, holding its bytes.
#[derive(Debug)]
pub struct Zip {
    what: String,
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// Little-endian reads at an offset, refusing to run past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Option<Self> {
        (pos <= bytes.len()).then_some(Cursor { bytes, pos })
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

/// The fields of a central directory entry that the ZIP64 extra field may widen.
struct Sizes {
    size: u64,
    compressed: u64,
    offset: u64,
}

impl Zip {
    /// Parses `bytes` as a zip archive; `what` names it in every error.
    pub fn parse(bytes: Vec<u8>, what: &str, limits: &Limits) -> Result<Zip, ZipError> {
        let entries = parse_entries(&bytes, what, limits)?;
        Ok(Zip { what: what.to_owned(), bytes, entries })
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// The members in central directory order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A member's content, decompressed and checked against its size and CRC-32.
    pub fn read(&self, entry: &Entry) -> Result<Arc<[u8]>, ZipError> {
        let err = |message: String| ZipError::Member { what: self.what.clone(), member: entry.name.clone(), message };
        let start = entry.data_offset as usize;
        let data = &self.bytes[start..start + entry.compressed_size as usize];
        let out = match entry.method {
            Method::Stored if data.len() as u64 == entry.size => Arc::from(data),
            Method::Stored => {
                return Err(err(format!("its content is not the {} bytes the archive declares", entry.size)))
            }
            Method::Deflate => inflate(data, entry.size).map_err(err)?,
        };
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        if crc.sum() != entry.crc32 {
            return Err(err(format!("CRC-32 mismatch: declared {:08x}, content has {:08x}", entry.crc32, crc.sum())));
        }
        Ok(out)
    }
}

/// Inflates the raw deflate stream `data` into exactly `size` bytes, in one call into a
/// buffer of that size (libdeflate; the members of a big wheel are most of an install's
/// time). The stream must end where `data` does: a member with bytes after its stream
/// is refused, as one whose stream is corrupt or yields other than `size` bytes.
fn inflate(data: &[u8], size: u64) -> Result<Arc<[u8]>, String> {
    let declared = || format!("its content is not the {size} bytes the archive declares");
    // The central directory's sizes are bounded by the archive's (`Limits::max_ratio`).
    let size = usize::try_from(size).map_err(|_| declared())?;
    let mut out = Arc::<[u8]>::new_uninit_slice(size);
    let buf = Arc::get_mut(&mut out).expect("a new Arc is not shared");
    let (mut used_in, mut used_out) = (0usize, 0usize);
    // SAFETY: the decompressor is checked and freed here; libdeflate reads `data` and
    // writes at most `buf.len()` bytes into `buf`, reporting how many through `used_out`.
    let result = unsafe {
        let decompressor = libdeflate_sys::libdeflate_alloc_decompressor();
        if decompressor.is_null() {
            return Err("no memory for a deflate decompressor".into());
        }
        let result = libdeflate_sys::libdeflate_deflate_decompress_ex(
            decompressor,
            data.as_ptr().cast(),
            data.len(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut used_in,
            &mut used_out,
        );
        libdeflate_sys::libdeflate_free_decompressor(decompressor);
        result
    };
    match result {
        libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_out != size => Err(declared()),
        libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_in != data.len() => {
            Err(format!("its deflate stream ends after {used_in} of its {} compressed bytes", data.len()))
        }
        // SAFETY: libdeflate wrote all `size` bytes.
        libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS => Ok(unsafe { out.assume_init() }),
        libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(declared()),
        _ => Err("its deflate stream is corrupt".into()),
    }
}

fn parse_entries(bytes: &[u8], what: &str, limits: &Limits) -> Result<Vec<Entry>, ZipError> {
    let not_zip = |message: &str| ZipError::NotZip { what: what.to_owned(), message: message.to_owned() };
    let corrupt = |message: String| ZipError::Corrupt { what: what.to_owned(), message };
    let member =
        |name: &str, message: String| ZipError::Member { what: what.to_owned(), member: name.to_owned(), message };
    let cap = |name: &str, cap: &'static str, limit: u64| ZipError::Cap {
        what: what.to_owned(),
        member: name.to_owned(),
        cap,
        limit,
    };

    // The end record is the last 22 bytes plus a comment of up to 64 KiB; the comment must
    // end exactly at the end of the file (no trailing bytes after the archive).
    if bytes.len() < EOCD_LEN {
        return Err(not_zip("it is shorter than an end-of-central-directory record"));
    }
    let lowest = bytes.len().saturating_sub(EOCD_LEN + 0xffff);
    let eocd = (lowest..=bytes.len() - EOCD_LEN)
        .rev()
        .find(|&pos| {
            let mut c = Cursor::at(bytes, pos).expect("in range");
            c.u32() == Some(EOCD_SIG) && {
                c.pos = pos + 20;
                c.u16().is_some_and(|len| pos + EOCD_LEN + len as usize == bytes.len())
            }
        })
        .ok_or_else(|| not_zip("no end-of-central-directory record"))?;
    let mut c = Cursor::at(bytes, eocd + 4).expect("in range");
    let (disk, cd_disk) = (c.u16().expect("in range"), c.u16().expect("in range"));
    let (on_disk, total) = (c.u16().expect("in range"), c.u16().expect("in range"));
    let (cd_size, cd_offset) = (c.u32().expect("in range"), c.u32().expect("in range"));
    let (mut count, mut cd_size, mut cd_offset) = (u64::from(total), u64::from(cd_size), u64::from(cd_offset));
    if disk != 0 || cd_disk != 0 || on_disk != total {
        return Err(corrupt("multi-disk archives are not supported".into()));
    }
    let mut cd_end = eocd;
    // ZIP64: a locator just before the end record points at the ZIP64 end record.
    if eocd >= 20 && Cursor::at(bytes, eocd - 20).and_then(|mut c| c.u32()) == Some(ZIP64_LOCATOR_SIG) {
        let mut l = Cursor::at(bytes, eocd - 16).expect("in range");
        let (disk, offset, disks) =
            (l.u32().expect("in range"), l.u64().expect("in range"), l.u32().expect("in range"));
        if disk != 0 || disks != 1 {
            return Err(corrupt("multi-disk archives are not supported".into()));
        }
        let bad = || corrupt("the ZIP64 end-of-central-directory record is missing or truncated".into());
        let offset = usize::try_from(offset).ok().filter(|&o| o <= eocd - 20).ok_or_else(bad)?;
        let mut z = Cursor::at(bytes, offset).ok_or_else(bad)?;
        if z.u32() != Some(ZIP64_EOCD_SIG) {
            return Err(bad());
        }
        let _record_size = z.u64().ok_or_else(bad)?;
        let _versions = z.u32().ok_or_else(bad)?;
        let (disk, cd_disk) = (z.u32().ok_or_else(bad)?, z.u32().ok_or_else(bad)?);
        let (on_disk, total) = (z.u64().ok_or_else(bad)?, z.u64().ok_or_else(bad)?);
        let (size, off) = (z.u64().ok_or_else(bad)?, z.u64().ok_or_else(bad)?);
        if disk != 0 || cd_disk != 0 || on_disk != total {
            return Err(corrupt("multi-disk archives are not supported".into()));
        }
        (count, cd_size, cd_offset) = (total, size, off);
        cd_end = offset;
    }
    if count > limits.max_entries {
        return Err(cap("*", "max_entries", limits.max_entries));
    }
    if cd_offset.checked_add(cd_size) != Some(cd_end as u64) {
        return Err(corrupt(format!(
            "the central directory ({cd_size} bytes at {cd_offset}) does not end where the end record begins ({cd_end})"
        )));
    }
    let cd_offset = cd_offset as usize;

    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut names = BTreeSet::new();
    let mut total_size = 0u64;
    let mut c = Cursor::at(bytes, cd_offset).expect("checked above");
    for index in 0..count {
        let truncated = || corrupt(format!("central directory entry {index} is truncated"));
        if c.pos + CENTRAL_LEN > cd_end || c.u32() != Some(CENTRAL_SIG) {
            return Err(truncated());
        }
        let fixed = c.take(CENTRAL_LEN - 4).ok_or_else(truncated)?;
        let mut f = Cursor::at(fixed, 0).expect("in range");
        let made_by = f.u16().expect("fixed");
        let _needed = f.u16().expect("fixed");
        let flags = f.u16().expect("fixed");
        let method = f.u16().expect("fixed");
        let _time_date = f.u32().expect("fixed");
        let crc32 = f.u32().expect("fixed");
        let compressed = f.u32().expect("fixed");
        let size = f.u32().expect("fixed");
        let (name_len, extra_len, comment_len) =
            (f.u16().expect("fixed"), f.u16().expect("fixed"), f.u16().expect("fixed"));
        let disk_start = f.u16().expect("fixed");
        let _internal = f.u16().expect("fixed");
        let external = f.u32().expect("fixed");
        let local_offset = f.u32().expect("fixed");
        let raw_name = c.take(name_len as usize).ok_or_else(truncated)?;
        let extra = c.take(extra_len as usize).ok_or_else(truncated)?;
        c.take(comment_len as usize).ok_or_else(truncated)?;
        if c.pos > cd_end {
            return Err(truncated());
        }
        let shown = String::from_utf8_lossy(raw_name).into_owned();
        if raw_name.len() > limits.max_name_len {
            return Err(cap(&shown, "max_name_len", limits.max_name_len as u64));
        }
        let name = std::str::from_utf8(raw_name).map_err(|_| member(&shown, "its name is not UTF-8".into()))?;
        check_name(name).map_err(|m| member(name, m))?;
        if !names.insert(name.to_owned()) {
            return Err(member(name, "the archive holds this name twice".into()));
        }
        if flags & 0x0001 != 0 || flags & 0x0040 != 0 {
            return Err(member(name, "it is encrypted".into()));
        }
        if disk_start != 0 {
            return Err(corrupt("multi-disk archives are not supported".into()));
        }
        let method = match method {
            0 => Method::Stored,
            8 => Method::Deflate,
            m => {
                return Err(member(name, format!("compression method {m} is not supported (only stored and deflate)")))
            }
        };
        let sizes = widen(extra, u64::from(size), u64::from(compressed), u64::from(local_offset))
            .map_err(|m| member(name, m))?;
        let is_dir = name.ends_with('/');
        if is_dir && sizes.size != 0 {
            return Err(member(name, "a directory entry with content".into()));
        }
        // Unix archivers put `st_mode` in the high half of the external attributes.
        let unix_mode = (made_by >> 8 == 3).then_some(external >> 16).filter(|&m| m != 0);
        if let Some(mode) = unix_mode {
            let kind = mode & 0o170000;
            let expected = if is_dir { 0o040000 } else { 0o100000 };
            if kind != 0 && kind != expected {
                return Err(member(name, format!("its Unix mode {mode:o} is not a regular file or a directory")));
            }
        }
        let executable = !is_dir && unix_mode.is_some_and(|m| m & 0o111 != 0);

        total_size = total_size.saturating_add(sizes.size);
        if total_size > limits.max_total_size {
            return Err(cap(name, "max_total_size", limits.max_total_size));
        }
        if sizes.size > RATIO_THRESHOLD && sizes.size / sizes.compressed.max(1) > limits.max_ratio {
            return Err(cap(name, "max_ratio", limits.max_ratio));
        }
        if method == Method::Stored && sizes.size != sizes.compressed {
            return Err(member(name, "a stored member whose compressed and uncompressed sizes differ".into()));
        }

        // The local header must agree with the central directory.
        let local_bad = |m: &str| member(name, format!("its local header {m}"));
        let offset = usize::try_from(sizes.offset).map_err(|_| local_bad("is out of range"))?;
        if offset.checked_add(LOCAL_LEN).is_none_or(|end| end > cd_offset) {
            return Err(local_bad("is out of range"));
        }
        let mut l = Cursor::at(bytes, offset).expect("checked");
        if l.u32() != Some(LOCAL_SIG) {
            return Err(local_bad("has a bad signature"));
        }
        let _needed = l.u16().expect("checked");
        let local_flags = l.u16().expect("checked");
        let local_method = l.u16().expect("checked");
        let _time_date = l.u32().expect("checked");
        let (l_crc, l_comp, l_size) = (l.u32().expect("checked"), l.u32().expect("checked"), l.u32().expect("checked"));
        let (l_name_len, l_extra_len) = (l.u16().expect("checked"), l.u16().expect("checked"));
        let l_name = l.take(l_name_len as usize).ok_or_else(|| local_bad("is truncated"))?;
        let l_extra = l.take(l_extra_len as usize).ok_or_else(|| local_bad("is truncated"))?;
        if l_name != raw_name {
            return Err(local_bad(&format!("names `{}`", String::from_utf8_lossy(l_name))));
        }
        if local_method != method_code(method) || local_flags & 0x0008 != flags & 0x0008 {
            return Err(local_bad("disagrees with the central directory on the method or flags"));
        }
        if flags & 0x0008 == 0 {
            // Without a data descriptor the local header carries the real CRC and sizes.
            let local = widen(l_extra, u64::from(l_size), u64::from(l_comp), 0).map_err(|m| member(name, m))?;
            if l_crc != crc32 || local.size != sizes.size || local.compressed != sizes.compressed {
                return Err(local_bad("disagrees with the central directory on the CRC-32 or the sizes"));
            }
        }
        let data_offset = l.pos as u64;
        if data_offset.checked_add(sizes.compressed).is_none_or(|end| end > cd_offset as u64) {
            return Err(member(name, "its data runs into the central directory".into()));
        }
        entries.push(Entry {
            name: name.to_owned(),
            method,
            crc32,
            compressed_size: sizes.compressed,
            size: sizes.size,
            is_dir,
            executable,
            data_offset,
        });
    }
    if c.pos != cd_end {
        return Err(corrupt("the central directory holds more than its declared entries".into()));
    }
    // No two members' data may share bytes.
    let mut spans: Vec<(u64, u64, &str)> =
        entries.iter().map(|e| (e.data_offset, e.data_offset + e.compressed_size, e.name.as_str())).collect();
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(member(pair[1].2, format!("its data overlaps the data of `{}`", pair[0].2)));
        }
    }
    Ok(entries)
}

fn method_code(method: Method) -> u16 {
    match method {
        Method::Stored => 0,
        Method::Deflate => 8,
    }
}

/// Applies the ZIP64 extended information extra field (`0x0001`): each field that is
/// `0xffffffff` in the header is given there, in order, as 64 bits.
fn widen(extra: &[u8], size: u64, compressed: u64, offset: u64) -> Result<Sizes, String> {
    let mut sizes = Sizes { size, compressed, offset };
    let mut c = Cursor::at(extra, 0).expect("in range");
    while c.pos < extra.len() {
        let (Some(id), Some(len)) = (c.u16(), c.u16()) else {
            return Err("its extra field is truncated".into());
        };
        let data = c.take(len as usize).ok_or("its extra field is truncated")?;
        if id != 0x0001 {
            continue;
        }
        let mut z = Cursor::at(data, 0).expect("in range");
        for field in [&mut sizes.size, &mut sizes.compressed, &mut sizes.offset] {
            if *field == 0xffff_ffff {
                *field = z.u64().ok_or("its ZIP64 extra field is truncated")?;
            }
        }
    }
    Ok(sizes)
}

/// Refuses names a wheel cannot mean (see the module docs).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.starts_with('/') {
        return Err("an absolute name".into());
    }
    if name.contains('\0') {
        return Err("a name with a NUL byte".into());
    }
    if name.contains('\\') {
        return Err("a name with a backslash".into());
    }
    let body = name.strip_suffix('/').unwrap_or(name);
    if body.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
        return Err("a name with a `..`, `.` or empty component".into());
    }
    Ok(())
}

/// Test support: a small zip writer, so tests make the archives they read.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write as _;

    /// One member: name, content, Unix mode (0 for none), deflated or stored.
    pub struct Member<'a> {
        pub name: &'a str,
        pub data: &'a [u8],
        pub mode: u32,
        pub deflate: bool,
    }

    impl<'a> Member<'a> {
        pub fn file(name: &'a str, data: &'a [u8]) -> Self {
            Member { name, data, mode: 0o100644, deflate: true }
        }
    }

    /// Writes a zip of `members`, with the ZIP64 end records when `zip64`.
    pub fn write(members: &[Member<'_>], zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for m in members {
            let mut crc = flate2::Crc::new();
            crc.update(m.data);
            let data = if m.deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(m.data).unwrap();
                e.finish().unwrap()
            } else {
                m.data.to_vec()
            };
            let method: u16 = if m.deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend(20u16.to_le_bytes());
            out.extend(0x0800u16.to_le_bytes());
            out.extend(method.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(crc.sum().to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((m.data.len() as u32).to_le_bytes());
            out.extend((m.name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(m.name.as_bytes());
            out.extend(&data);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend((3u16 << 8 | 20).to_le_bytes());
            central.extend(20u16.to_le_bytes());
            central.extend(0x0800u16.to_le_bytes());
            central.extend(method.to_le_bytes());
            central.extend(0u32.to_le_bytes());
            central.extend(crc.sum().to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((m.data.len() as u32).to_le_bytes());
            central.extend((m.name.len() as u16).to_le_bytes());
            central.extend([0u8; 4]);
            central.extend([0u8; 4]);
            central.extend((m.mode << 16).to_le_bytes());
            central.extend(offset.to_le_bytes());
            central.extend(m.name.as_bytes());
        }
        let cd_offset = out.len();
        out.extend(&central);
        let n = members.len();
        if zip64 {
            let z = out.len();
            out.extend(0x0606_4b50u32.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend([0u8; 8]);
            out.extend((n as u64).to_le_bytes());
            out.extend((n as u64).to_le_bytes());
            out.extend((central.len() as u64).to_le_bytes());
            out.extend((cd_offset as u64).to_le_bytes());
            out.extend(0x0706_4b50u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend((z as u64).to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        let count = if zip64 { 0xffff } else { n as u16 };
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        let (size, off) = if zip64 { (0xffff_ffff, 0xffff_ffff) } else { (central.len() as u32, cd_offset as u32) };
        out.extend(size.to_le_bytes());
        out.extend(off.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{write, Member};
    use super::*;

    fn parse(bytes: Vec<u8>) -> Result<Zip, ZipError> {
        Zip::parse(bytes, "t.whl", &Limits::default())
    }

    #[test]
    fn reads_stored_and_deflated_members_with_modes() {
        for zip64 in [false, true] {
            let bytes = write(
                &[
                    Member::file("a/b.py", b"print(1)\n"),
                    Member { name: "bin/x", data: b"#!python\n", mode: 0o100755, deflate: false },
                    Member { name: "d/", data: b"", mode: 0o040755, deflate: false },
                ],
                zip64,
            );
            let zip = parse(bytes).unwrap();
            let e = zip.entries();
            assert_eq!(e.len(), 3);
            assert_eq!((e[0].name.as_str(), e[0].method, e[0].executable), ("a/b.py", Method::Deflate, false));
            assert_eq!(*zip.read(&e[0]).unwrap(), *b"print(1)\n");
            assert_eq!((e[1].method, e[1].executable), (Method::Stored, true));
            assert_eq!(*zip.read(&e[1]).unwrap(), *b"#!python\n");
            assert!(e[2].is_dir);
        }
    }

    #[test]
    fn refuses_names_a_wheel_cannot_mean() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\\b", "a\0b", "a//b", "./a"] {
            let err = parse(write(&[Member::file(bad, b"x")], false)).unwrap_err().to_string();
            assert!(err.starts_with("`t.whl`, member `"), "{bad:?}: {err}");
        }
        let err = parse(write(&[Member::file("a", b"1"), Member::file("a", b"2")], false)).unwrap_err();
        assert_eq!(err.to_string(), "`t.whl`, member `a`: the archive holds this name twice");
    }

    #[test]
    fn a_corrupted_byte_is_caught_by_the_crc() {
        let mut bytes = write(&[Member { name: "a", data: b"hello", mode: 0o100644, deflate: false }], false);
        bytes[30 + 1] ^= 0xff; // the second byte of the content, after a 30-byte header and `a`
        let zip = parse(bytes).unwrap();
        let err = zip.read(&zip.entries()[0]).unwrap_err().to_string();
        assert!(err.contains("CRC-32 mismatch"), "{err}");
    }

    #[test]
    fn caps_name_the_member_and_the_cap() {
        let zeros = vec![0u8; 4 << 20];
        let err = parse(write(&[Member::file("bomb", &zeros)], false)).unwrap_err();
        assert_eq!(err.to_string(), "`t.whl`, member `bomb`: exceeds the cap `max_ratio` (250)");
        let limits = Limits { max_total_size: 10, ..Limits::default() };
        let err = Zip::parse(write(&[Member::file("a", b"0123456789x")], false), "t.whl", &limits).unwrap_err();
        assert_eq!(err.to_string(), "`t.whl`, member `a`: exceeds the cap `max_total_size` (10)");
        let limits = Limits { max_entries: 1, ..Limits::default() };
        let err =
            Zip::parse(write(&[Member::file("a", b""), Member::file("b", b"")], false), "t.whl", &limits).unwrap_err();
        assert!(err.to_string().contains("max_entries"), "{err}");
        let limits = Limits { max_name_len: 3, ..Limits::default() };
        let err = Zip::parse(write(&[Member::file("abcd", b"")], false), "t.whl", &limits).unwrap_err();
        assert!(err.to_string().contains("max_name_len"), "{err}");
    }

    #[test]
    fn a_deflate_stream_gives_exactly_its_declared_bytes_and_ends_with_the_member() {
        use std::io::Write as _;
        let deflated = |data: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let text = b"hello hello hello world".repeat(100);
        let stream = deflated(&text);
        assert_eq!(*inflate(&stream, text.len() as u64).unwrap(), *text);
        assert!(inflate(&deflated(b""), 0).unwrap().is_empty());
        let declared = |n: usize| format!("its content is not the {n} bytes the archive declares");
        for n in [text.len() + 1, text.len() - 1, 0] {
            assert_eq!(inflate(&stream, n as u64).unwrap_err(), declared(n));
        }
        let mut trailing = stream.clone();
        trailing.extend([0, 0, 0]);
        assert_eq!(
            inflate(&trailing, text.len() as u64).unwrap_err(),
            format!("its deflate stream ends after {} of its {} compressed bytes", stream.len(), trailing.len())
        );
        assert_eq!(inflate(&[0xff; 16], 100).unwrap_err(), "its deflate stream is corrupt");
        assert_eq!(
            inflate(&stream[..stream.len() / 2], text.len() as u64).unwrap_err(),
            "its deflate stream is corrupt"
        );
    }

    #[test]
    fn a_local_header_that_disagrees_is_refused() {
        let mut bytes = write(&[Member::file("a", b"hello")], false);
        bytes[30] = b'b'; // the local header's name
        let err = parse(bytes).unwrap_err().to_string();
        assert_eq!(err, "`t.whl`, member `a`: its local header names `b`");
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let bytes = write(&[Member::file("a/b", b"hello"), Member::file("c", b"world")], true);
        for cut in 0..bytes.len() {
            let _ = parse(bytes[..cut].to_vec());
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0x55;
            if let Ok(zip) = parse(flipped) {
                for e in zip.entries() {
                    let _ = zip.read(e);
                }
            }
        }
        assert!(parse(b"not a zip at all, just text".to_vec()).unwrap_err().to_string().contains("not a zip"));
    }
}
