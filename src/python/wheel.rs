//! The wheel format (PEP 427, the binary distribution format of the Python packaging
//! specifications): the file name with its compressed tag sets, and the `.dist-info`
//! documents an installer reads — `WHEEL`, `METADATA`, `RECORD` and `entry_points.txt`.
//!
//! A [`Wheel`] is opened through the strict reader of [`super::zip`] and checked whole
//! before anything trusts it: exactly one `.dist-info` folder, named for the distribution
//! `METADATA` names; `Wheel-Version` 1.x; and a `RECORD` listing every member with its
//! size and hash. The hashes are checked as members are read ([`Wheel::read`]), so that an
//! installer reads each member once; [`Wheel::verify`] reads them all.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use sha2::Digest as _;

use super::zip::{Entry, Limits, Zip, ZipError};
use super::Name;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error("cannot read the wheel `{what}`")]
    Io { what: String, source: std::io::Error },
    #[error("`{file}` is not a wheel file name: {message}")]
    FileName { file: String, message: String },
    #[error("`{what}`: {message}")]
    Layout { what: String, message: String },
    #[error("`{what}`, member `{member}`: {message}")]
    Member { what: String, member: String, message: String },
}

/// A wheel's file name, parsed: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub name: Name,
    pub version: String,
    pub build: Option<String>,
    /// Every `(python, abi, platform)` triple of the compressed tag sets
    /// (`py2.py3-none-any` is two triples), in the order the name gives them.
    pub tags: Vec<(String, String, String)>,
}

impl WheelName {
    pub fn parse(file_name: &str) -> Result<WheelName, WheelError> {
        let bad = |message: &str| WheelError::FileName { file: file_name.to_owned(), message: message.to_owned() };
        let stem = file_name.strip_suffix(".whl").ok_or_else(|| bad("it does not end in `.whl`"))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, tags) = match parts.as_slice() {
            [n, v, p, a, pl] => (n, v, None, [p, a, pl]),
            [n, v, b, p, a, pl] => (n, v, Some(*b), [p, a, pl]),
            _ => return Err(bad("it does not have 5 or 6 `-`-separated parts")),
        };
        let name = name.parse::<Name>().map_err(|_| bad("its distribution name is not valid"))?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+!".contains(&b)) {
            return Err(bad("its version is not valid"));
        }
        if let Some(b) = build {
            if !b.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
                return Err(bad("its build tag does not begin with a digit"));
            }
        }
        let sets: Vec<Vec<&str>> = tags.iter().map(|t| t.split('.').collect()).collect();
        if sets.iter().flatten().any(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
            return Err(bad("a tag is empty or has characters other than letters, digits and `_`"));
        }
        let mut triples = Vec::new();
        for py in &sets[0] {
            for abi in &sets[1] {
                for platform in &sets[2] {
                    triples.push((py.to_string(), abi.to_string(), platform.to_string()));
                }
            }
        }
        Ok(WheelName { name, version: version.to_string(), build: build.map(str::to_owned), tags: triples })
    }
}

/// What `METADATA` says that locking and installing need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub name: Name,
    pub version: String,
    /// Raw PEP 508 strings, markers included.
    pub requires_dist: Vec<String>,
    pub requires_python: Option<String>,
}

/// `.dist-info/WHEEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelInfo {
    pub wheel_version: (u32, u32),
    pub root_is_purelib: bool,
    pub tags: Vec<String>,
}

/// A hash of `RECORD`: the algorithm and the digest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHash {
    pub algorithm: HashAlgorithm,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl RecordHash {
    /// The `sha256=…` of `bytes`, as `RECORD` writes it.
    pub fn sha256_of(bytes: &[u8]) -> RecordHash {
        RecordHash { algorithm: HashAlgorithm::Sha256, digest: sha2::Sha256::digest(bytes).to_vec() }
    }

    fn matches(&self, bytes: &[u8]) -> bool {
        let actual = match self.algorithm {
            HashAlgorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            HashAlgorithm::Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        };
        actual == self.digest
    }

    fn parse(text: &str) -> Result<RecordHash, String> {
        let (alg, value) = text.split_once('=').ok_or_else(|| format!("hash `{text}` is not `ALGORITHM=DIGEST`"))?;
        let algorithm = match alg {
            "sha256" => HashAlgorithm::Sha256,
            "sha384" => HashAlgorithm::Sha384,
            "sha512" => HashAlgorithm::Sha512,
            other => return Err(format!("hash algorithm `{other}` is not accepted (sha256, sha384, sha512 are)")),
        };
        // PEP 376 says urlsafe base64 without padding; tolerate padding some tools add.
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| format!("hash `{text}` is not urlsafe base64"))?;
        Ok(RecordHash { algorithm, digest })
    }
}

impl std::fmt::Display for RecordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let alg = match self.algorithm {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        };
        write!(f, "{alg}={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.digest))
    }
}

/// One row of `RECORD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub path: String,
    pub hash: Option<RecordHash>,
    pub size: Option<u64>,
}

/// Parses `RECORD` (CSV as Python's `csv` module writes it: `,` separated, `"` quoted with
/// `""` for a quote, rows ended by `\n` or `\r\n`).
pub fn parse_record(text: &str) -> Result<Vec<RecordRow>, String> {
    let mut rows = Vec::new();
    for (line, fields) in parse_csv(text)?.into_iter().enumerate() {
        let line = line + 1;
        let [path, hash, size] = <[String; 3]>::try_from(fields)
            .map_err(|f| format!("row {line} has {} fields, not 3 (path, hash, size)", f.len()))?;
        let hash =
            (!hash.is_empty()).then(|| RecordHash::parse(&hash)).transpose().map_err(|m| format!("row {line}: {m}"))?;
        let size = (!size.is_empty())
            .then(|| size.parse::<u64>())
            .transpose()
            .map_err(|_| format!("row {line}: size `{size}` is not a number"))?;
        rows.push(RecordRow { path, hash, size });
    }
    Ok(rows)
}

/// Writes rows as Python's `csv.writer` does, which is how pip writes an installed `RECORD`:
/// a field is quoted when it holds `,`, `"`, `\r` or `\n` (a quote doubled), and every row
/// ends in the writer's default terminator, `\r\n`.
pub fn write_record(rows: &[RecordRow]) -> String {
    let quote = |field: &str| {
        if field.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_owned()
        }
    };
    let mut out = String::new();
    for row in rows {
        let hash = row.hash.as_ref().map(|h| h.to_string()).unwrap_or_default();
        let size = row.size.map(|s| s.to_string()).unwrap_or_default();
        out.push_str(&format!("{},{},{}\r\n", quote(&row.path), quote(&hash), size));
    }
    out
}

fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    if quoted {
                        return Err(format!("row {} ends inside a quoted field", rows.len() + 1));
                    }
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if quoted => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                }
                Some('"') if field.is_empty() => quoted = true,
                Some(c) if quoted => field.push(c),
                Some(',') => fields.push(std::mem::take(&mut field)),
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        // Blank lines carry no row (Python's reader yields `[]` for them; pip skips them).
        if !(fields.len() == 1 && fields[0].is_empty()) {
            rows.push(fields);
        }
    }
    Ok(rows)
}

/// A console or GUI script of `entry_points.txt`: `name = module:attr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub name: String,
    pub module: String,
    pub attr: String,
    pub gui: bool,
}

/// The `console_scripts` and `gui_scripts` of `entry_points.txt` (an INI file), sorted by
/// name within each; other groups are plugin registrations, not scripts.
pub fn parse_entry_points(text: &str) -> Result<Vec<EntryPoint>, String> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section =
                s.strip_suffix(']').ok_or_else(|| format!("line {}: `{line}` is not a section", n + 1))?.trim().into();
            continue;
        }
        let gui = match section.as_str() {
            "console_scripts" => false,
            "gui_scripts" => true,
            _ => continue,
        };
        let (name, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: `{line}` is not `name = value`", n + 1))?;
        let (name, value) = (name.trim(), value.trim());
        // Extras (`mod:f [extra]`) select optional dependencies; the script is the same.
        let value = value.split_once('[').map_or(value, |(v, _)| v).trim();
        let (module, attr) = value.split_once(':').map(|(m, a)| (m.trim(), a.trim())).unwrap_or((value, ""));
        let dotted = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|p| {
                    p.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                        && p.chars().all(|c| c.is_alphanumeric() || c == '_')
                })
        };
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
            return Err(format!("line {}: script name `{name}` is not a file name", n + 1));
        }
        if !dotted(module) || !dotted(attr) {
            return Err(format!("line {}: `{value}` is not `module:function`", n + 1));
        }
        out.push(EntryPoint { name: name.into(), module: module.into(), attr: attr.into(), gui });
    }
    out.sort_by(|a, b| (a.gui, &a.name).cmp(&(b.gui, &b.name)));
    if let Some(pair) = out.windows(2).find(|p| p[0].gui == p[1].gui && p[0].name == p[1].name) {
        return Err(format!("script `{}` is defined twice", pair[0].name));
    }
    Ok(out)
}

/// Headers of an email-format document (`METADATA`, `WHEEL`): each `Key: value` in order,
/// continuation lines (beginning with a space or tab) joined to the value with `\n`; the body
/// after the first blank line is not read.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            let (_, value) = out.last_mut().ok_or_else(|| format!("line {} continues no header", n + 1))?;
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let (key, value) =
            line.split_once(':').ok_or_else(|| format!("line {}: `{line}` is not `Key: value`", n + 1))?;
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

fn header<'a>(headers: &'a [(String, String)], key: &str) -> impl Iterator<Item = &'a str> + 'a {
    let key = key.to_ascii_lowercase();
    headers.iter().filter(move |(k, _)| k.to_ascii_lowercase() == key).map(|(_, v)| v.as_str())
}

/// Parses `METADATA`; `raw_name` gets the `Name` as written.
pub fn parse_metadata(text: &str) -> Result<(Metadata, String), String> {
    let headers = parse_headers(text)?;
    let one = |key: &str| -> Result<Option<&str>, String> {
        let mut values = header(&headers, key);
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("`{key}` is given more than once"));
        }
        Ok(first)
    };
    let raw_name = one("Name")?.ok_or("it has no `Name`")?;
    let name = raw_name.parse::<Name>().map_err(|e| e.to_string())?;
    let version = one("Version")?.ok_or("it has no `Version`")?.to_owned();
    let requires_dist = header(&headers, "Requires-Dist").map(str::to_owned).collect();
    let requires_python = one("Requires-Python")?.map(str::to_owned);
    Ok((Metadata { name, version, requires_dist, requires_python }, raw_name.to_owned()))
}

/// Parses `WHEEL`.
pub fn parse_wheel_info(text: &str) -> Result<WheelInfo, String> {
    let headers = parse_headers(text)?;
    let version = header(&headers, "Wheel-Version").next().ok_or("it has no `Wheel-Version`")?;
    let wheel_version = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("`Wheel-Version: {version}` is not `MAJOR.MINOR`"))?;
    if wheel_version.0 != 1 {
        return Err(format!("`Wheel-Version: {version}` is not 1.x, the only version this installer knows"));
    }
    let purelib = header(&headers, "Root-Is-Purelib").next().ok_or("it has no `Root-Is-Purelib`")?;
    let root_is_purelib = match purelib.to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(format!("`Root-Is-Purelib: {purelib}` is neither `true` nor `false`")),
    };
    let tags = header(&headers, "Tag").map(str::to_owned).collect();
    Ok(WheelInfo { wheel_version, root_is_purelib, tags })
}

/// A wheel, opened and checked (see the module docs).
#[derive(Debug)]
pub struct Wheel {
    zip: Zip,
    dist_info: String,
    metadata: Metadata,
    raw_name: String,
    info: WheelInfo,
    /// `RECORD` by path.
    record: BTreeMap<String, RecordRow>,
    entry_points: Vec<EntryPoint>,
}

/// Below this many bytes of members, inflating them on more threads than one costs more
/// than it saves (most wheels; numpy's are ~60 MB).
const PARALLEL_READ_BYTES: u64 = 8 << 20;

/// The largest wheel read into memory (the biggest in use, CUDA builds, are ~2.5 GB).
const MAX_WHEEL_SIZE: u64 = 4 << 30;

impl Wheel {
    /// Reads and checks a wheel file; `what` names it in every error.
    pub fn open(file: std::fs::File, what: &str) -> Result<Wheel, WheelError> {
        use std::io::Read as _;
        let io = |source| WheelError::Io { what: what.to_owned(), source };
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_WHEEL_SIZE {
            return Err(WheelError::Layout {
                what: what.into(),
                message: format!("larger than {MAX_WHEEL_SIZE} bytes"),
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_WHEEL_SIZE).read_to_end(&mut bytes).map_err(io)?;
        Wheel::from_bytes(bytes, what)
    }

    /// Parses and checks a wheel held in memory.
    pub fn from_bytes(bytes: Vec<u8>, what: &str) -> Result<Wheel, WheelError> {
        let zip = Zip::parse(bytes, what, &Limits::default())?;
        let layout = |message: String| WheelError::Layout { what: what.to_owned(), message };
        let member = |member: &str, message: String| WheelError::Member {
            what: what.to_owned(),
            member: member.to_owned(),
            message,
        };
        let mut dirs: Vec<&str> = zip
            .entries()
            .iter()
            .filter_map(|e| e.name.split_once('/').map(|(top, _)| top))
            .filter(|top| top.ends_with(".dist-info"))
            .collect();
        dirs.dedup();
        dirs.sort_unstable();
        dirs.dedup();
        let dist_info = match dirs.as_slice() {
            [one] => one.to_string(),
            [] => return Err(layout("it has no `.dist-info` folder".into())),
            many => return Err(layout(format!("it has more than one `.dist-info` folder: `{}`", many.join("`, `")))),
        };
        let text = |name: &str| -> Result<Option<String>, WheelError> {
            let path = format!("{dist_info}/{name}");
            let Some(entry) = zip.entries().iter().find(|e| e.name == path) else { return Ok(None) };
            let bytes = zip.read(entry)?;
            String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| member(&path, "it is not UTF-8".into()))
        };
        let required = |name: &str| -> Result<String, WheelError> {
            text(name)?.ok_or_else(|| layout(format!("it has no `{dist_info}/{name}`")))
        };
        let info = parse_wheel_info(&required("WHEEL")?).map_err(|m| member(&format!("{dist_info}/WHEEL"), m))?;
        let (metadata, raw_name) =
            parse_metadata(&required("METADATA")?).map_err(|m| member(&format!("{dist_info}/METADATA"), m))?;
        let record_path = format!("{dist_info}/RECORD");
        let rows = parse_record(&required("RECORD")?).map_err(|m| member(&record_path, m))?;
        let entry_points = match text("entry_points.txt")? {
            Some(t) => parse_entry_points(&t).map_err(|m| member(&format!("{dist_info}/entry_points.txt"), m))?,
            None => Vec::new(),
        };
        // The folder is `{name}-{version}.dist-info`, for the distribution METADATA names.
        let folder_name = dist_info.trim_end_matches(".dist-info").split('-').next().unwrap_or_default();
        if folder_name.parse::<Name>().ok().as_ref() != Some(&metadata.name) {
            return Err(layout(format!(
                "its `{dist_info}` folder is not for `{}`, which METADATA names",
                metadata.name
            )));
        }

        let mut record = BTreeMap::new();
        for row in rows {
            let path = row.path.clone();
            if record.insert(path.clone(), row).is_some() {
                return Err(member(&path, "RECORD lists it twice".into()));
            }
        }
        // Every member but RECORD and its signatures needs a row with its hash and size;
        // a row naming no member is a lie about the wheel too.
        let unsigned = [record_path.clone(), format!("{record_path}.jws"), format!("{record_path}.p7s")];
        for entry in zip.entries().iter().filter(|e| !e.is_dir && !unsigned.contains(&e.name)) {
            let row = record.get(&entry.name).ok_or_else(|| member(&entry.name, "RECORD does not list it".into()))?;
            if row.hash.is_none() {
                return Err(member(&entry.name, "RECORD gives it no hash".into()));
            }
            if row.size.is_some_and(|s| s != entry.size) {
                return Err(member(
                    &entry.name,
                    format!("RECORD says {} bytes, it has {}", row.size.unwrap_or(0), entry.size),
                ));
            }
        }
        for path in record.keys() {
            let present = zip.entries().iter().any(|e| &e.name == path);
            if !present && record[path].hash.is_some() {
                return Err(member(path, "RECORD lists it with a hash, but the wheel does not hold it".into()));
            }
        }
        Ok(Wheel { zip, dist_info, metadata, raw_name, info, record, entry_points })
    }

    pub fn what(&self) -> &str {
        self.zip.what()
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `Name` as `METADATA` spells it (pip names the headers folder so).
    pub fn raw_name(&self) -> &str {
        &self.raw_name
    }

    pub fn info(&self) -> &WheelInfo {
        &self.info
    }

    /// The `.dist-info` folder's name.
    pub fn dist_info(&self) -> &str {
        &self.dist_info
    }

    /// The `.data` folder's name (it may be absent).
    pub fn data_dir(&self) -> String {
        format!("{}.data", self.dist_info.trim_end_matches(".dist-info"))
    }

    pub fn entry_points(&self) -> &[EntryPoint] {
        &self.entry_points
    }

    /// The members that are files (not directory entries), in archive order.
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.zip.entries().iter().filter(|e| !e.is_dir)
    }

    /// Refuses a wheel whose content is not the distribution its file name says.
    pub fn check_name(&self, name: &WheelName) -> Result<(), WheelError> {
        // Versions are equal as PEP 440 versions (`1.0rc1` is `1.0-rc1`), as the lock and pip
        // compare them; text that is no version must match as written.
        let version = |v: &str| v.parse::<crate::python::version::Version>().ok();
        let same_version = match (version(&name.version), version(&self.metadata.version)) {
            (Some(a), Some(b)) => a == b,
            _ => name.version == self.metadata.version,
        };
        if name.name != self.metadata.name || !same_version {
            return Err(WheelError::Layout {
                what: self.what().to_owned(),
                message: format!(
                    "its file name says `{} {}`, its METADATA `{} {}`",
                    name.name, name.version, self.metadata.name, self.metadata.version
                ),
            });
        }
        Ok(())
    }

    /// A member's content, checked against its `RECORD` hash (and the archive's CRC-32).
    pub fn read(&self, entry: &Entry) -> Result<Arc<[u8]>, WheelError> {
        let bytes = self.zip.read(entry)?;
        if let Some(hash) = self.record.get(&entry.name).and_then(|r| r.hash.as_ref()) {
            if !hash.matches(&bytes) {
                return Err(WheelError::Member {
                    what: self.what().to_owned(),
                    member: entry.name.clone(),
                    message: format!("its content does not match its RECORD hash `{hash}`"),
                });
            }
        }
        Ok(bytes)
    }

    /// The contents of `entries`, in their order, each checked as [`Wheel::read`] checks
    /// it. A big wheel's members are inflated on all cores, the biggest first (a 30 MB
    /// shared library started last would leave the other cores idle); the error is the first failing member's in `entries`
    /// order, whichever thread met it first.
    pub fn read_all(&self, entries: &[&Entry]) -> Result<Vec<Arc<[u8]>>, WheelError> {
        let total: u64 = entries.iter().map(|e| e.size).sum();
        let threads = if total < PARALLEL_READ_BYTES { 1 } else { super::cores() };
        super::map_biggest_first(entries, threads, |e| e.size, |e| self.read(e)).into_iter().collect()
    }

    /// Reads every member, checking each against `RECORD`.
    pub fn verify(&self) -> Result<(), WheelError> {
        self.files().try_for_each(|e| self.read(e).map(drop))
    }
}

/// Parses and fully checks a wheel from memory: the entry point for fuzzing.
pub fn check(bytes: &[u8]) -> Result<(), WheelError> {
    Wheel::from_bytes(bytes.to_vec(), "fuzz.whl")?.verify()
}

/// Test support: wheels the tests make.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::zip::testing::{write, Member};
    use super::*;

    /// A wheel of `files` (path, content, executable) for `name` `version`, with a correct
    /// `RECORD` unless `lie` names a member whose recorded hash is wrong.
    pub fn make(name: &str, version: &str, purelib: bool, files: &[(&str, &[u8], bool)], lie: Option<&str>) -> Vec<u8> {
        let dist_info = format!("{name}-{version}.dist-info");
        let mut owned: Vec<(String, Vec<u8>, bool)> =
            files.iter().map(|(p, c, x)| (p.to_string(), c.to_vec(), *x)).collect();
        owned.push((
            format!("{dist_info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Dist: idna (>=2.5)\n\nbody\n")
                .into_bytes(),
            false,
        ));
        owned.push((
            format!("{dist_info}/WHEEL"),
            format!("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {purelib}\nTag: py3-none-any\n")
                .into_bytes(),
            false,
        ));
        let rows: Vec<RecordRow> = owned
            .iter()
            .map(|(p, c, _)| RecordRow {
                path: p.clone(),
                hash: Some(RecordHash::sha256_of(if lie == Some(p.as_str()) { b"lie" } else { c })),
                size: Some(c.len() as u64),
            })
            .chain([RecordRow { path: format!("{dist_info}/RECORD"), hash: None, size: None }])
            .collect();
        owned.push((format!("{dist_info}/RECORD"), write_record(&rows).into_bytes(), false));
        let members: Vec<Member<'_>> = owned
            .iter()
            .map(|(p, c, x)| Member { name: p, data: c, mode: if *x { 0o100755 } else { 0o100644 }, deflate: true })
            .collect();
        write(&members, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_expand_their_tag_sets() {
        let n = WheelName::parse("PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").unwrap();
        assert_eq!((n.name.as_str(), n.version.as_str(), n.build.as_deref()), ("pyyaml", "6.0.1", None));
        assert_eq!(
            n.tags,
            [
                ("cp311".into(), "cp311".into(), "manylinux_2_17_x86_64".into()),
                ("cp311".into(), "cp311".into(), "manylinux2014_x86_64".into())
            ]
        );
        let n = WheelName::parse("six-1.16.0-1build-py2.py3-none-any.whl").unwrap();
        assert_eq!(n.build.as_deref(), Some("1build"));
        assert_eq!(n.tags.len(), 2);
        for bad in [
            "six-1.16.0-py3-none.whl",
            "six-1.16.0-py3-none-any.zip",
            "six-1.0-x-py3-none-any.whl",
            "-1-py3-none-any.whl",
        ] {
            assert!(WheelName::parse(bad).is_err(), "{bad}");
        }
        insta::assert_snapshot!(WheelName::parse("a-1-b-py3-none-any.whl").unwrap_err(), @"`a-1-b-py3-none-any.whl` is not a wheel file name: its build tag does not begin with a digit");
    }

    #[test]
    fn metadata_headers_with_continuations() {
        let text = "Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.0\nRequires-Dist: a>=1\nRequires-Dist: b ; python_version < \"3.8\"\nRequires-Python: >=3.8\nDescription: first\n  second\n\nRequires-Dist: not-a-header\n";
        let (m, raw) = parse_metadata(text).unwrap();
        assert_eq!(raw, "Foo.Bar");
        assert_eq!(m.name.as_str(), "foo-bar");
        assert_eq!(m.requires_dist, ["a>=1", "b ; python_version < \"3.8\""]);
        assert_eq!(m.requires_python.as_deref(), Some(">=3.8"));
        let headers = parse_headers(text).unwrap();
        assert_eq!(header(&headers, "description").next(), Some("first\nsecond"));
        assert!(parse_metadata("Name: a\n").unwrap_err().contains("Version"));
    }

    #[test]
    fn wheel_info_is_checked() {
        let info =
            parse_wheel_info("Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n").unwrap();
        assert_eq!(
            info,
            WheelInfo { wheel_version: (1, 0), root_is_purelib: false, tags: vec!["cp311-cp311-linux_x86_64".into()] }
        );
        assert!(parse_wheel_info("Wheel-Version: 2.0\nRoot-Is-Purelib: true\n").unwrap_err().contains("not 1.x"));
        assert!(parse_wheel_info("Wheel-Version: 1.0\nRoot-Is-Purelib: yes\n").is_err());
    }

    #[test]
    fn record_csv_round_trips_with_quoting() {
        let rows = vec![
            RecordRow { path: "a,b.py".into(), hash: Some(RecordHash::sha256_of(b"x")), size: Some(1) },
            RecordRow { path: "q\"uote".into(), hash: None, size: None },
        ];
        let text = write_record(&rows);
        assert_eq!(text, "\"a,b.py\",sha256=LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE,1\r\n\"q\"\"uote\",,\r\n");
        assert_eq!(parse_record(&text).unwrap(), rows);
        assert!(parse_record("a,b\n").unwrap_err().contains("2 fields"));
        assert!(parse_record("a,md5=abc,1\n").unwrap_err().contains("md5"));
    }

    #[test]
    fn entry_points_give_scripts() {
        let text = "[console_scripts]\nfoo = foo.cli:main [extra]\n# c\n[gui_scripts]\nfoo-gui=foo.gui:App.run\n[other]\nx = y:z\n";
        let eps = parse_entry_points(text).unwrap();
        assert_eq!(
            eps,
            [
                EntryPoint { name: "foo".into(), module: "foo.cli".into(), attr: "main".into(), gui: false },
                EntryPoint { name: "foo-gui".into(), module: "foo.gui".into(), attr: "App.run".into(), gui: true },
            ]
        );
        assert!(parse_entry_points("[console_scripts]\nx = mod\n").is_err());
        assert!(parse_entry_points("[console_scripts]\n../x = mod:f\n").is_err());
    }

    #[test]
    fn a_wheel_opens_and_verifies() {
        let bytes = testing::make("demo", "1.0", true, &[("demo/__init__.py", b"x = 1\n", false)], None);
        check(&bytes).unwrap();
        let wheel = Wheel::from_bytes(bytes, "demo-1.0-py3-none-any.whl").unwrap();
        assert_eq!(wheel.metadata().name.as_str(), "demo");
        assert_eq!(wheel.metadata().requires_dist, ["idna (>=2.5)"]);
        assert_eq!(wheel.dist_info(), "demo-1.0.dist-info");
        wheel.check_name(&WheelName::parse("demo-1.0-py3-none-any.whl").unwrap()).unwrap();
        assert!(wheel.check_name(&WheelName::parse("demo-2.0-py3-none-any.whl").unwrap()).is_err());
        // One PEP 440 version, two spellings: the name's `1.0rc1`, METADATA's `1.0-rc1`.
        let bytes = testing::make("demo", "1.0-rc1", true, &[("demo/__init__.py", b"x = 1\n", false)], None);
        let wheel = Wheel::from_bytes(bytes, "demo-1.0rc1-py3-none-any.whl").unwrap();
        wheel.check_name(&WheelName::parse("demo-1.0rc1-py3-none-any.whl").unwrap()).unwrap();
    }

    #[test]
    fn a_big_wheel_is_read_on_all_cores_in_order_and_refused_by_a_lie() {
        // Over the threshold (12 MiB of members), so that the threads share them.
        let big: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 1 << 20]).collect();
        let names: Vec<String> = (0..12).map(|i| format!("demo/m{i:02}.bin")).collect();
        let files: Vec<(&str, &[u8], bool)> =
            names.iter().zip(&big).map(|(n, c)| (n.as_str(), c.as_slice(), false)).collect();
        let wheel = Wheel::from_bytes(testing::make("demo", "1.0", true, &files, None), "demo.whl").unwrap();
        let entries: Vec<&Entry> = wheel.files().collect();
        let contents = wheel.read_all(&entries).unwrap();
        let expected: Vec<Arc<[u8]>> = entries.iter().map(|e| wheel.read(e).unwrap()).collect();
        assert_eq!(contents, expected);
        assert!(contents[..12].iter().zip(&big).all(|(c, b)| **c == **b));
        // A lying member refuses the whole read, naming it, whichever thread met it.
        let lying = testing::make("demo", "1.0", true, &files, Some("demo/m03.bin"));
        let wheel = Wheel::from_bytes(lying, "demo.whl").unwrap();
        let entries: Vec<&Entry> = wheel.files().collect();
        for _ in 0..4 {
            let err = wheel.read_all(&entries).unwrap_err().to_string();
            assert!(err.starts_with("`demo.whl`, member `demo/m03.bin`: its content does not match"), "{err}");
        }
    }

    #[test]
    fn a_lying_record_refuses_the_wheel_naming_the_member() {
        let bytes =
            testing::make("demo", "1.0", true, &[("demo/__init__.py", b"x = 1\n", false)], Some("demo/__init__.py"));
        let err = check(&bytes).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "`fuzz.whl`, member `demo/__init__.py`: its content does not match its RECORD hash `sha256="
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unlisted_member_refuses_the_wheel() {
        use super::super::zip::testing::{write, Member};
        let good = testing::make("demo", "1.0", true, &[], None);
        let zip = Zip::parse(good, "x", &Limits::default()).unwrap();
        let mut contents: Vec<(String, Vec<u8>)> =
            zip.entries().iter().map(|e| (e.name.clone(), zip.read(e).unwrap().to_vec())).collect();
        contents.push(("demo/extra.py".into(), b"evil".to_vec()));
        let members: Vec<Member<'_>> = contents.iter().map(|(n, c)| Member::file(n, c)).collect();
        let err = check(&write(&members, false)).unwrap_err().to_string();
        assert_eq!(err, "`fuzz.whl`, member `demo/extra.py`: RECORD does not list it");
    }

    #[test]
    fn reads_a_wheel_made_by_python_zipfile() {
        // A wheel made by another zip writer than ours (CPython's `zipfile`, as `wheel` and
        // build backends use), so that the reader is not only tested against its own writer.
        if !crate::testing::tool("python3", "python3") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ours = testing::make("demo", "1.0", true, &[("demo/__init__.py", b"x = 1\n", false)], None);
        fs_err::write(dir.path().join("in.whl"), &ours).unwrap();
        let script = "import zipfile,sys\nsrc=zipfile.ZipFile(sys.argv[1])\nwith zipfile.ZipFile(sys.argv[2],'w',zipfile.ZIP_DEFLATED) as out:\n    for i in src.infolist(): out.writestr(i.filename, src.read(i))\n";
        let status = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(dir.path().join("in.whl"))
            .arg(dir.path().join("out.whl"))
            .status()
            .unwrap();
        assert!(status.success());
        check(&fs_err::read(dir.path().join("out.whl")).unwrap()).unwrap();
    }
}
