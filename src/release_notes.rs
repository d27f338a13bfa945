//! Release notes: what a promotion changes, from the diff against the channel's previous
//! head ([`crate::diff`], the engine of `candidate diff`): Debian packages and Python wheels
//! added, removed, upgraded, downgraded (and rebuilt) with their versions, the Debian
//! changelog entries between the two versions of each upgraded or downgraded package that
//! ships its changelog, and the size change of each top-level folder.
//!
//! The note is a typed document carried inside the signed predicate of the promotion record
//! (`release-note`), so that it is as trustworthy as the record; `candidate channel show
//! --notes` renders it as text or Markdown ([`ReleaseNote::text`], [`ReleaseNote::markdown`]).
//!
//! Changelogs are read from the candidate's root filesystem (its layers in the store, else its
//! rootfs archive), at `usr/share/doc/PKG/` under the names Debian policy gives them
//! (`changelog.Debian.gz`, or `changelog.gz` for a native package), then uncompressed
//! `changelog.Debian` and `changelog`. A doc folder that is a symlink to another package's is
//! not followed: that package's entries are not the linking package's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::debian::packages::{Architecture, PackageName};
use crate::debian::version::Version;
use crate::diff::{PackageChange, PackageChangeKind, WheelChange};
use crate::digest::Digest;
use crate::dist::MANIFEST;
use crate::manifest::Manifest;

/// The names a package's changelog may have in its doc folder, in the order they are tried.
const CHANGELOGS: [&str; 4] = ["changelog.Debian.gz", "changelog.gz", "changelog.Debian", "changelog"];

/// At most this many bytes of one changelog are read (uncompressed): a release note is not
/// the place for a package's whole history, and a hostile `.gz` must not fill the memory.
const MAX_CHANGELOG: u64 = 4 << 20;

/// A candidate folder and its manifest.
#[derive(Debug)]
pub struct Candidate {
    pub dir: PathBuf,
    pub id: Digest,
    pub manifest: Manifest,
}

impl Candidate {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let bytes = fs_err::read(dir.join(MANIFEST))?;
        let manifest = Manifest::parse(&dir.join(MANIFEST), &bytes)?;
        Ok(Candidate { dir: dir.to_owned(), id: Digest::of(&bytes), manifest })
    }

    fn image(&self) -> Image {
        Image {
            id: self.id,
            name: self.manifest.image.name.to_string(),
            version: self.manifest.image.version.to_string(),
        }
    }
}

/// How `channel show --notes` renders notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoteFormat {
    Text,
    Markdown,
}

/// The release note of a promotion record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseNote {
    /// The channel's previous head; none for the channel's first record (then every package
    /// is `added`).
    pub from: Option<Image>,
    pub to: Image,
    pub packages: Vec<PackageNote>,
    pub wheels: Vec<WheelNote>,
    /// Top-level folders whose regular files' bytes changed, by path.
    pub sizes: Vec<FolderSize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub id: Digest,
    pub name: String,
    pub version: String,
}

/// A Debian package that changed, as `diff --json` lists it, with its changelog entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageNote {
    pub change: PackageChangeKind,
    pub name: PackageName,
    pub architecture: Architecture,
    pub a: Option<Version>,
    pub b: Option<Version>,
    /// Entries newer than the older version, up to the newer, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changelog: Vec<ChangelogEntry>,
}

/// One entry of a Debian changelog, verbatim from its header line to its trailer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangelogEntry {
    pub version: Version,
    pub text: String,
}

/// A Python wheel that changed, as `diff --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelNote {
    pub change: PackageChangeKind,
    pub name: crate::python::Name,
    pub layer: crate::recipe::Name,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// The bytes of a top-level folder's regular files before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSize {
    pub folder: String,
    pub a: u64,
    pub b: u64,
}

/// The release note of promoting `to` over `from` (the channel's head, if any), from the
/// package and wheel changes the diff engine found between them.
pub fn generate(
    ctx: &Context,
    from: Option<&Candidate>,
    to: &Candidate,
    packages: &[PackageChange],
    wheels: &[WheelChange],
) -> anyhow::Result<ReleaseNote> {
    // Changelogs of upgraded packages come from the new candidate, of downgraded ones from
    // the old: the entries that the promotion brings, or takes away.
    let wanted = |kind: PackageChangeKind| -> BTreeSet<String> {
        packages
            .iter()
            .filter(|p| p.change == kind)
            .flat_map(|p| CHANGELOGS.iter().map(move |n| format!("usr/share/doc/{}/{n}", p.name)))
            .collect()
    };
    let (want_new, want_old) = (wanted(PackageChangeKind::Upgraded), wanted(PackageChangeKind::Downgraded));
    let new = crate::diff::read_rootfs(ctx, &to.dir, &to.manifest, &|p| want_new.contains(p))?;
    let old = match from {
        Some(from) => crate::diff::read_rootfs(ctx, &from.dir, &from.manifest, &|p| want_old.contains(p))?,
        None => crate::diff::RootfsReading::default(),
    };

    let mut notes = Vec::new();
    for p in packages {
        let changelog = match (p.change, &p.a, &p.b) {
            (PackageChangeKind::Upgraded, Some(a), Some(b)) => entries_between(&new.files, &p.name, a, b),
            (PackageChangeKind::Downgraded, Some(a), Some(b)) => entries_between(&old.files, &p.name, b, a),
            _ => Vec::new(),
        };
        notes.push(PackageNote {
            change: p.change,
            name: p.name.clone(),
            architecture: p.architecture.clone(),
            a: p.a.clone(),
            b: p.b.clone(),
            changelog,
        });
    }
    let folders: BTreeSet<&String> = old.sizes.keys().chain(new.sizes.keys()).collect();
    let sizes = folders
        .into_iter()
        .map(|f| FolderSize {
            folder: f.clone(),
            a: old.sizes.get(f).copied().unwrap_or(0),
            b: new.sizes.get(f).copied().unwrap_or(0),
        })
        .filter(|s| s.a != s.b)
        .collect();
    Ok(ReleaseNote {
        from: from.map(Candidate::image),
        to: to.image(),
        packages: notes,
        wheels: wheels
            .iter()
            .map(|w| WheelNote {
                change: w.change,
                name: w.name.clone(),
                layer: w.layer.clone(),
                a: w.a.clone(),
                b: w.b.clone(),
            })
            .collect(),
        sizes,
    })
}

/// The entries of `name`'s changelog (the first of [`CHANGELOGS`] that `files` holds) with a
/// version above `low` and up to `high`, in the changelog's order.
fn entries_between(
    files: &BTreeMap<String, Vec<u8>>,
    name: &PackageName,
    low: &Version,
    high: &Version,
) -> Vec<ChangelogEntry> {
    let found = CHANGELOGS.iter().find_map(|n| files.get(&format!("usr/share/doc/{name}/{n}")).map(|b| (n, b)));
    let Some((file, bytes)) = found else { return Vec::new() };
    let mut text = Vec::new();
    let read = if file.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes.as_slice()).take(MAX_CHANGELOG).read_to_end(&mut text)
    } else {
        bytes.as_slice().take(MAX_CHANGELOG).read_to_end(&mut text)
    };
    // A changelog that stops decompressing gives the entries before the damage: the note
    // informs, the package's bytes were verified when the candidate was built.
    drop(read);
    parse_changelog(&String::from_utf8_lossy(&text))
        .into_iter()
        .filter(|e| e.version > *low && e.version <= *high)
        .collect()
}

/// The entries of a Debian changelog (deb-changelog(5)): each from its header line
/// (`package (version) distributions; urgency=…` at the start of a line) to the line before
/// the next, trailing blank lines dropped. Reading stops at the first other line that starts
/// in column one (an old-format section, editor variables); an entry whose version does not
/// parse is left out.
pub fn parse_changelog(text: &str) -> Vec<ChangelogEntry> {
    fn header_version(line: &str) -> Option<&str> {
        let (name, rest) = line.split_once(' ')?;
        if name.is_empty() || !rest.starts_with('(') {
            return None;
        }
        rest[1..].split_once(')').map(|(v, _)| v)
    }
    let mut entries: Vec<(Option<Version>, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let starts_in_column_one = line.chars().next().is_some_and(|c| !c.is_whitespace());
        if starts_in_column_one {
            match header_version(line) {
                Some(v) => entries.push((v.parse().ok(), vec![line])),
                None => break,
            }
        } else if let Some((_, lines)) = entries.last_mut() {
            lines.push(line);
        }
    }
    entries
        .into_iter()
        .filter_map(|(version, mut lines)| {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            Some(ChangelogEntry { version: version?, text: lines.join("\n") })
        })
        .collect()
}

fn versions(a: Option<&str>, b: Option<&str>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a} -> {b}"),
        (Some(v), None) | (None, Some(v)) => v.to_owned(),
        (None, None) => String::new(),
    }
}

fn signed(a: u64, b: u64) -> String {
    if b >= a {
        format!("+{}", b - a)
    } else {
        format!("-{}", a - b)
    }
}

impl ReleaseNote {
    fn title(&self) -> String {
        let to = format!("{} {} ({})", self.to.name, self.to.version, self.to.id);
        match &self.from {
            Some(from) => format!("{to}, after {} {} ({})", from.name, from.version, from.id),
            None => format!("{to}, the channel's first record"),
        }
    }

    /// The note as plain text: a heading line, then one line per package, wheel and folder,
    /// each changelog entry indented under its package.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "release note: {}", self.title());
        if !self.packages.is_empty() {
            let _ = writeln!(out, "debian packages:");
        }
        for p in &self.packages {
            let v = versions(p.a.as_ref().map(Version::as_str), p.b.as_ref().map(Version::as_str));
            let _ = writeln!(out, "  {:<10} {}:{} {v}", p.change.as_str(), p.name, p.architecture);
            for (i, entry) in p.changelog.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                for line in entry.text.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
        if !self.wheels.is_empty() {
            let _ = writeln!(out, "python wheels:");
        }
        for w in &self.wheels {
            let v = versions(w.a.as_deref(), w.b.as_deref());
            let _ = writeln!(out, "  {:<10} {} {v} (layer {})", w.change.as_str(), w.name, w.layer);
        }
        if !self.sizes.is_empty() {
            let _ = writeln!(out, "size by top-level folder (bytes):");
        }
        for s in &self.sizes {
            let _ = writeln!(out, "  {:<10} {} -> {} ({})", s.folder, s.a, s.b, signed(s.a, s.b));
        }
        if self.packages.is_empty() && self.wheels.is_empty() && self.sizes.is_empty() {
            let _ = writeln!(out, "no package, wheel or folder size changed");
        }
        // Trailing spaces of empty changelog lines are not part of the note.
        out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
    }

    /// The note as Markdown: tables of packages, wheels and sizes, and each package's
    /// changelog entries in a fenced block.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {} {}\n", self.to.name, self.to.version);
        match &self.from {
            Some(from) => {
                let _ = writeln!(
                    out,
                    "Candidate `{}`, after {} {} (`{}`).\n",
                    self.to.id, from.name, from.version, from.id
                );
            }
            None => {
                let _ = writeln!(out, "Candidate `{}`, the channel's first record.\n", self.to.id);
            }
        }
        if !self.packages.is_empty() {
            let _ = writeln!(out, "### Debian packages\n\n| change | package | from | to |\n|---|---|---|---|");
            for p in &self.packages {
                let v = |v: &Option<Version>| v.as_ref().map_or(String::new(), |v| format!("`{v}`"));
                let _ = writeln!(
                    out,
                    "| {} | `{}:{}` | {} | {} |",
                    p.change.as_str(),
                    p.name,
                    p.architecture,
                    v(&p.a),
                    v(&p.b)
                );
            }
            out.push('\n');
            for p in self.packages.iter().filter(|p| !p.changelog.is_empty()) {
                let _ = writeln!(out, "#### Changes in {}:{}\n\n```text", p.name, p.architecture);
                let entries: Vec<&str> = p.changelog.iter().map(|e| e.text.as_str()).collect();
                let _ = writeln!(out, "{}", entries.join("\n\n"));
                let _ = writeln!(out, "```\n");
            }
        }
        if !self.wheels.is_empty() {
            let _ = writeln!(out, "### Python wheels\n\n| change | wheel | layer | from | to |\n|---|---|---|---|---|");
            for w in &self.wheels {
                let v = |v: &Option<String>| v.as_ref().map_or(String::new(), |v| format!("`{v}`"));
                let _ =
                    writeln!(out, "| {} | `{}` | {} | {} | {} |", w.change.as_str(), w.name, w.layer, v(&w.a), v(&w.b));
            }
            out.push('\n');
        }
        if !self.sizes.is_empty() {
            let _ = writeln!(
                out,
                "### Size by top-level folder\n\n| folder | from (bytes) | to (bytes) | change |\n|---|--:|--:|--:|"
            );
            for s in &self.sizes {
                let _ = writeln!(out, "| `{}` | {} | {} | {} |", s.folder, s.a, s.b, signed(s.a, s.b));
            }
            out.push('\n');
        }
        if self.packages.is_empty() && self.wheels.is_empty() && self.sizes.is_empty() {
            let _ = writeln!(out, "No package, wheel or folder size changed.\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "\
hello (1.3-1) unstable; urgency=medium

  * New upstream release.
  * Fixes a crash.

 -- Jane Doe <jane@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000

hello (1.2-1) unstable; urgency=low

  * Second release.

 -- Jane Doe <jane@example.invalid>  Sun, 01 Oct 2023 00:00:00 +0000

hello (1.1-1) unstable; urgency=low

  * First packaged release.

 -- Jane Doe <jane@example.invalid>  Fri, 01 Sep 2023 00:00:00 +0000

Local variables:
mode: debian-changelog
End:
";

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut out, bytes).unwrap();
        out.finish().unwrap()
    }

    #[test]
    fn changelog_entries_are_split_at_headers_and_stop_at_trailing_sections() {
        let entries = parse_changelog(CHANGELOG);
        let versions: Vec<&str> = entries.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["1.3-1", "1.2-1", "1.1-1"]);
        insta::assert_snapshot!(entries[0].text, @r"
        hello (1.3-1) unstable; urgency=medium

          * New upstream release.
          * Fixes a crash.

         -- Jane Doe <jane@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000
        ");
        assert!(entries[2].text.ends_with("+0000"), "{:?}", entries[2].text);
    }

    #[test]
    fn entries_between_two_versions_come_from_the_first_changelog_found() {
        let name: PackageName = "hello".parse().unwrap();
        let mut files = BTreeMap::new();
        files.insert("usr/share/doc/hello/changelog.Debian.gz".to_owned(), gzip(CHANGELOG.as_bytes()));
        // A lower-priority name is not read when the policy's name is there.
        files.insert("usr/share/doc/hello/changelog".to_owned(), b"hello (9.9-1) x; urgency=low\n".to_vec());
        let got = |low: &str, high: &str| -> Vec<String> {
            entries_between(&files, &name, &v(low), &v(high)).into_iter().map(|e| e.version.to_string()).collect()
        };
        assert_eq!(got("1.1-1", "1.3-1"), ["1.3-1", "1.2-1"]);
        assert_eq!(got("1.2-1", "1.2-1"), Vec::<String>::new());
        assert_eq!(got("1.0-1", "1.2-1"), ["1.2-1", "1.1-1"]);
        let other: PackageName = "other".parse().unwrap();
        assert!(entries_between(&files, &other, &v("0"), &v("9")).is_empty());
    }

    fn note() -> ReleaseNote {
        let entries = parse_changelog(CHANGELOG);
        ReleaseNote {
            from: Some(Image { id: Digest::of(b"a"), name: "example".into(), version: "1.0".into() }),
            to: Image { id: Digest::of(b"b"), name: "example".into(), version: "1.1".into() },
            packages: vec![
                PackageNote {
                    change: PackageChangeKind::Added,
                    name: "tilde".parse().unwrap(),
                    architecture: "amd64".parse().unwrap(),
                    a: None,
                    b: Some(v("1:1.0-1")),
                    changelog: Vec::new(),
                },
                PackageNote {
                    change: PackageChangeKind::Upgraded,
                    name: "hello".parse().unwrap(),
                    architecture: "amd64".parse().unwrap(),
                    a: Some(v("1.1-1")),
                    b: Some(v("1.3-1")),
                    changelog: entries[..2].to_vec(),
                },
            ],
            wheels: vec![WheelNote {
                change: PackageChangeKind::Downgraded,
                name: "idna".parse().unwrap(),
                layer: "app".parse().unwrap(),
                a: Some("3.10".into()),
                b: Some("3.9".into()),
            }],
            sizes: vec![
                FolderSize { folder: "/etc".into(), a: 100, b: 90 },
                FolderSize { folder: "/usr".into(), a: 1000, b: 1200 },
            ],
        }
    }

    #[test]
    fn a_note_renders_as_text_and_markdown() {
        let note = note();
        insta::assert_snapshot!("note_text", note.text());
        insta::assert_snapshot!("note_markdown", note.markdown());
        let back: ReleaseNote = serde_json::from_value(serde_json::to_value(&note).unwrap()).unwrap();
        assert_eq!(back, note);
    }
}
