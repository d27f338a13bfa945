//! The deterministic tar writer.
//!
//! Every byte is chosen on purpose, so that the same [`Tree`] always serialises to the same
//! archive, on any host:
//!
//! * entries in bytewise path order (the tree's order), named `./path` (`./path/` for
//!   directories; the root is `./`), the member names LXC's and Proxmox's templates use;
//! * ustar headers (`ustar\0` `00`), numeric owners only: `uname`/`gname` stay empty so no
//!   extractor maps names through its host's `/etc/passwd`; device numbers zero;
//! * `mtime` from the tree (already clamped to `SOURCE_DATE_EPOCH`); no atime or ctime;
//! * a PAX extended header (`x`, named `././@PaxHeader`, so that its name does not vary
//!   with the entry) only when the ustar fields cannot hold a value: a path or link target
//!   over 100 bytes, a size, uid or gid too large for octal, or extended attributes
//!   (`SCHILY.xattr.*`, as GNU tar and libarchive read them); records sorted by key;
//! * hard links: of the names sharing a link group, the first in path order carries the
//!   content and the others are `1` entries pointing at it, so that every link follows its
//!   target whatever the input order was;
//! * two zero blocks, then zero padding to a 10240-byte record, as GNU tar writes.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::BLOCK;
use crate::tree::{Content, Kind, Node, Tree};

const RECORD: u64 = 10240;

/// What a written archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub entries: u64,
}

/// Serialises `tree` to `out`.
pub fn write_tree(tree: &Tree, out: &mut impl Write) -> io::Result<Written> {
    let mut w = Writer { out, pos: 0 };
    // Hard-link groups: the first name (in path order) of each group.
    let mut first_of_group: HashMap<u64, String> = HashMap::new();
    let mut entries = 0;
    let mut buf = vec![0u8; 256 << 10];
    for (path, node) in tree.iter() {
        entries += 1;
        let name = member_name(path, node.is_dir());
        match &node.kind {
            Kind::Directory => w.header(&name, node, b'5', 0, "")?,
            Kind::Symlink { target } => w.header(&name, node, b'2', 0, target)?,
            // OCI's whiteout: an empty regular file named `.wh.NAME` (the tree's own name).
            Kind::Whiteout => w.header(&name, node, b'0', 0, "")?,
            Kind::File { size, content, link_group } => {
                if let Some(group) = link_group {
                    if let Some(first) = first_of_group.get(group) {
                        w.header(&name, node, b'1', 0, first)?;
                        continue;
                    }
                    first_of_group.insert(*group, name.clone());
                }
                w.header(&name, node, b'0', *size, "")?;
                w.content(path, content, *size, &mut buf)?;
            }
        }
    }
    w.finish()?;
    Ok(Written { entries })
}

/// The tar member name of an image path.
pub fn member_name(path: &str, is_dir: bool) -> String {
    match (path.is_empty(), is_dir) {
        (true, _) => "./".to_owned(),
        (false, true) => format!("./{path}/"),
        (false, false) => format!("./{path}"),
    }
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    pos: u64,
}

impl<W: Write> Writer<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.pos % BLOCK as u64) as usize;
        if rem != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(&mut self, name: &str, node: &Node, typeflag: u8, size: u64, link: &str) -> io::Result<()> {
        let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if name.len() > 100 {
            pax.insert("path".into(), name.as_bytes().to_vec());
        }
        if link.len() > 100 {
            pax.insert("linkpath".into(), link.as_bytes().to_vec());
        }
        if size > MAX_OCTAL_11 {
            pax.insert("size".into(), size.to_string().into_bytes());
        }
        if u64::from(node.uid) > MAX_OCTAL_7 {
            pax.insert("uid".into(), node.uid.to_string().into_bytes());
        }
        if u64::from(node.gid) > MAX_OCTAL_7 {
            pax.insert("gid".into(), node.gid.to_string().into_bytes());
        }
        for (key, value) in &node.xattrs {
            pax.insert(format!("SCHILY.xattr.{key}"), value.clone());
        }
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let pax_node = Node { mode: 0o644, uid: 0, gid: 0, xattrs: BTreeMap::new(), ..node.clone() };
            let block = ustar_header("././@PaxHeader", &pax_node, b'x', records.len() as u64, "");
            self.write(&block)?;
            self.write(&records)?;
            self.pad()?;
        }
        let block = ustar_header(name, node, typeflag, size, link);
        self.write(&block)
    }

    fn content(&mut self, path: &str, content: &Content, size: u64, buf: &mut [u8]) -> io::Result<()> {
        let changed = |what: &str| io::Error::other(format!("`/{path}`: its source {what} while it was being read"));
        match content {
            Content::Host(host) => {
                let mut file = fs_err::File::open(host.as_path())?;
                let mut left = size;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(changed("shrank"));
                    }
                    self.write(&buf[..n])?;
                    left -= n as u64;
                }
                if file.read(&mut buf[..1])? != 0 {
                    return Err(changed("grew"));
                }
            }
            Content::Range { file, offset } => {
                let mut done = 0u64;
                while done < size {
                    let want = (size - done).min(buf.len() as u64) as usize;
                    let n = file.read_at(&mut buf[..want], offset + done)?;
                    if n == 0 {
                        return Err(changed("ended early"));
                    }
                    self.write(&buf[..n])?;
                    done += n as u64;
                }
            }
            Content::Bytes(bytes) => {
                if bytes.len() as u64 != size {
                    return Err(changed("has another size"));
                }
                self.write(bytes)?;
            }
        }
        self.pad()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write(&[0u8; 2 * BLOCK])?;
        let rem = self.pos % RECORD;
        if rem != 0 {
            let zeros = vec![0u8; (RECORD - rem) as usize];
            self.write(&zeros)?;
        }
        self.out.flush()
    }
}

const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// One ustar header block. Values that do not fit are written as zero (their PAX record,
/// written just before, is what readers use); names over 100 bytes are cut at 100 bytes.
fn ustar_header(name: &str, node: &Node, typeflag: u8, size: u64, link: &str) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    copy_field(&mut h[0..100], name.as_bytes());
    octal(&mut h[100..108], u64::from(node.mode & 0o7777));
    octal(&mut h[108..116], fits(u64::from(node.uid), MAX_OCTAL_7));
    octal(&mut h[116..124], fits(u64::from(node.gid), MAX_OCTAL_7));
    octal(&mut h[124..136], fits(size, MAX_OCTAL_11));
    octal(&mut h[136..148], node.mtime.min(MAX_OCTAL_11));
    h[156] = typeflag;
    copy_field(&mut h[157..257], link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // uname, gname: empty on purpose. devmajor, devminor: written as octal zero.
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    h
}

/// `value`, or zero when it needs a PAX record.
fn fits(value: u64, max: u64) -> u64 {
    if value > max {
        0
    } else {
        value
    }
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal filling all but the last byte of the field, then NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    field[..width].copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
    field[width] = 0;
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record, itself
/// included.
pub(super) fn pax_records(pax: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in pax {
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [1usize, 5, 90, 94, 95, 96, 990, 995, 996] {
            let mut pax = BTreeMap::new();
            pax.insert("path".to_owned(), vec![b'a'; n]);
            let rec = pax_records(&pax);
            let text = String::from_utf8(rec.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), rec.len(), "n={n}");
        }
    }

    #[test]
    fn gnu_tar_reads_what_we_write() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs_err::write(&data, b"hello\n").unwrap();
        let mut tree = Tree::new(1_700_000_000);
        let long = format!("opt/{}/file", "x".repeat(120));
        let file = |group| Node {
            implicit: false,
            kind: Kind::File { size: 6, content: Content::Host(Arc::new(data.clone())), link_group: group },
            mode: 0o4755,
            uid: 1000,
            gid: 3_000_000,
            mtime: 1_600_000_000,
            xattrs: BTreeMap::new(),
        };
        tree.insert("z/first", file(Some(1))).unwrap();
        tree.insert("a/second", file(Some(1))).unwrap();
        tree.insert(&long, file(None)).unwrap();
        let mut with_cap = file(None);
        with_cap.xattrs.insert("security.capability".into(), vec![1, 0, 0, 2, 0, 32, 0, 0]);
        tree.insert("bin/ping", with_cap).unwrap();
        let mut out = Vec::new();
        write_tree(&tree, &mut out).unwrap();
        assert_eq!(out.len() as u64 % RECORD, 0);
        let archive = dir.path().join("t.tar");
        fs_err::write(&archive, &out).unwrap();
        let listing =
            std::process::Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(&archive).output().unwrap();
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(listing.contains(&format!("./{long}")), "{listing}");
        assert!(listing.contains("-rwsr-xr-x 1000/3000000"), "{listing}");
        // The first name in path order carries the content; the other links to it.
        assert!(listing.contains("./z/first link to ./a/second"), "{listing}");
        let x = std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(x.status.success());
    }
}
