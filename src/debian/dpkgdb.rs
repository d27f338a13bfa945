//! The dpkg database (`/var/lib/dpkg`) for packages we unpacked ourselves, so that dpkg
//! inside the image (`dpkg -l`, `dpkg -L`, `dpkg --verify`, and a later `apt-get install`)
//! sees them as dpkg would have left them.
//!
//! The texts are what dpkg itself writes, byte for byte, because dpkg rewrites `status` on
//! its next run and an image whose database changes shape when first touched is not what
//! we built:
//!
//! * A `status` stanza lists the package's control fields in dpkg's own order (the
//!   `fieldinfos[]` table of dpkg's `lib/dpkg/parse.c`, checked against a Debian 12
//!   `/var/lib/dpkg/status`), with `Status:` after `Protected` and `Conffiles:` before
//!   `Description`, then the fields dpkg does not know, in their original order. Known
//!   fields are written the way dpkg's writers write them: canonical names, `Essential: no`
//!   and `Multi-Arch: no` and empty fields left out, relationship fields reformatted
//!   (`a (>= 1), b | c`) as dpkg prints its parsed relations.
//! * Stanzas are sorted by package name, then architecture, and each ends with an empty
//!   line, as `writedb` leaves them.
//! * `info/NAME.list` holds `/.` and then every path in archive order; `info/` files are
//!   named `NAME:ARCH` for `Multi-Arch: same` packages and `NAME` otherwise.
//!
//! A test runs the real `dpkg --unpack` on the same package and compares: `status`, every
//! `info/` file and the extracted files agree byte for byte, with one difference that is
//! the caller's to settle: dpkg leaves a new conffile at `PATH.dpkg-new` (and records its
//! hash as `newconffile`) until `dpkg --configure` moves it into place. An image that
//! records `install ok unpacked` should do the same; one that places conffiles at their
//! final paths should record their real md5 (as dpkg does once it has configured them).
//!
//! Fields that only dpkg may set (`Status`, `Config-Version`, `Conffiles`, triggers state)
//! and `Packages`-index fields (`Filename`, `Size`, `MD5sum`) are refused in a control file:
//! a package that ships them is trying to write the database itself.

use std::collections::BTreeMap;

use super::control::{self, ControlError, Dialect, Stanza};
use super::packages::{Alternatives, ArchQualifier, Operator, Provide, Relation, Relations};
use super::unpack::Unpacked;

/// One package as recorded in the database.
#[derive(Debug, Clone)]
pub struct DbPackage<'a> {
    /// The package's `control` file.
    pub control: &'a str,
    /// `want ok state`: `install ok unpacked` for a package unpacked but not configured.
    pub status: &'a str,
    /// Conffiles and their hashes (`newconffile` is what dpkg records before configuring).
    pub conffiles: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("control file of `{package}`")]
    Control { package: String, source: ControlError },
    #[error("control file of `{package}`, field `{field}`: {message}")]
    Field { package: String, field: String, message: String },
    #[error("package `{package}`: {message}")]
    Package { package: String, message: String },
}

/// dpkg's field order (`fieldinfos[]`). `Filename`, `Size`, `MD5sum` and `MSDOS-Filename`
/// sit between `Conffiles` and `Description` there but are written to `available` only.
const ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Fields a package's control file may not carry (see the module docs).
const RESERVED: &[&str] = &[
    "Status",
    "Config-Version",
    "Conffiles",
    "Triggers-Pending",
    "Triggers-Awaited",
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
];

/// Relationship fields, reformatted as dpkg prints them.
const RELATIONS: &[&str] =
    &["Replaces", "Depends", "Pre-Depends", "Recommends", "Suggests", "Breaks", "Conflicts", "Enhances"];

/// The `/var/lib/dpkg/status` text for these packages.
pub fn status(packages: &[DbPackage<'_>]) -> Result<String, DbError> {
    let mut stanzas = Vec::with_capacity(packages.len());
    for p in packages {
        let stanza = parse(p.control)?;
        let name = package_name(&stanza)?;
        let arch = required(&stanza, &name, "Architecture")?.to_owned();
        stanzas.push((name, arch, status_stanza(p)?));
    }
    stanzas.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for pair in stanzas.windows(2) {
        if (&pair[0].0, &pair[0].1) == (&pair[1].0, &pair[1].1) {
            let message = format!("listed twice for architecture `{}`", pair[0].1);
            return Err(DbError::Package { package: pair[0].0.clone(), message });
        }
    }
    Ok(stanzas.into_iter().map(|(_, _, s)| s).collect())
}

/// One status stanza, ending with its empty line.
///
/// Long by design: dpkg's status fields, in dpkg's order, each with its rule; one function
/// mirrors the field list it must agree with.
pub fn status_stanza(p: &DbPackage<'_>) -> Result<String, DbError> {
    let stanza = parse(p.control)?;
    let package = package_name(&stanza)?;
    let bad = |field: &str, message: String| DbError::Field { package: package.clone(), field: field.into(), message };
    for field in stanza.fields() {
        if let Some(reserved) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(field.name())) {
            return Err(bad(reserved, "only dpkg may set this field; a package's control file may not".into()));
        }
    }
    if p.status.split(' ').count() != 3 || p.status.split(' ').any(str::is_empty) {
        return Err(DbError::Package { package, message: format!("status `{}` is not `want flag state`", p.status) });
    }
    for (path, hash) in &p.conffiles {
        let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        if !path.starts_with('/') || !plain(path) || !plain(hash) {
            return Err(bad("Conffiles", format!("`{path} {hash}` is not an absolute path and a hash")));
        }
    }

    let mut out = String::new();
    for &name in ORDER {
        match name {
            "Status" => out.push_str(&format!("Status: {}\n", p.status)),
            "Conffiles" if !p.conffiles.is_empty() => {
                out.push_str("Conffiles:\n");
                for (path, hash) in &p.conffiles {
                    out.push_str(&format!(" {path} {hash}\n"));
                }
            }
            _ => {
                let Some(value) = stanza.get(name) else { continue };
                let value = value.trim_end();
                // dpkg reads these keywords ignoring case and writes its own spelling.
                let keyword = value.to_ascii_lowercase();
                let written = match name {
                    "Essential" | "Protected" => match keyword.as_str() {
                        "yes" => keyword,
                        "no" => continue,
                        _ => return Err(bad(name, format!("`{value}` is neither `yes` nor `no`"))),
                    },
                    "Multi-Arch" => match keyword.as_str() {
                        "same" | "foreign" | "allowed" => keyword,
                        "no" => continue,
                        _ => return Err(bad(name, format!("unknown value `{value}`"))),
                    },
                    "Priority" => match keyword.as_str() {
                        "required" | "important" | "standard" | "optional" | "extra" => keyword,
                        _ => value.to_owned(),
                    },
                    "Provides" => {
                        let list = Provide::parse_list(name, value).map_err(|e| bad(name, e.to_string()))?;
                        let item = |p: &Provide| {
                            let version = p.version.as_ref().map(|v| (Operator::Equal, v.to_string()));
                            relation_text(p.name.as_str(), p.arch.as_ref(), version)
                        };
                        list.iter().map(item).collect::<Vec<_>>().join(", ")
                    }
                    "Version" => nonambiguous(value).to_owned(),
                    _ if RELATIONS.contains(&name) => {
                        let relations = Relations::parse(name, value).map_err(|e| bad(name, e.to_string()))?;
                        let alternatives = |a: &Alternatives| {
                            let item = |r: &Relation| {
                                let version = r.version.as_ref().map(|c| (c.op, c.version.to_string()));
                                relation_text(r.name.as_str(), r.arch.as_ref(), version)
                            };
                            a.iter().map(item).collect::<Vec<_>>().join(" | ")
                        };
                        relations.iter().map(alternatives).collect::<Vec<_>>().join(", ")
                    }
                    _ => value.to_owned(),
                };
                if written.is_empty() {
                    continue;
                }
                push_field(&mut out, name, &written);
            }
        }
    }
    for field in stanza.fields() {
        if !ORDER.iter().any(|known| known.eq_ignore_ascii_case(field.name())) {
            push_field(&mut out, field.name(), field.value());
        }
    }
    out.push('\n');
    Ok(out)
}

/// A version as dpkg prints it (`vdew_nonambig`): the epoch only when it is not 0, or when
/// the rest holds a `:` and needs it.
fn nonambiguous(version: &str) -> &str {
    match version.strip_prefix("0:") {
        Some(rest) if !rest.contains(':') => rest,
        _ => version,
    }
}

/// One relation as dpkg prints it: `name[:arch] [(op version)]`, the version nonambiguous.
fn relation_text(name: &str, arch: Option<&ArchQualifier>, version: Option<(Operator, String)>) -> String {
    let mut out = name.to_owned();
    if let Some(arch) = arch {
        out.push_str(&format!(":{arch}"));
    }
    if let Some((op, version)) = version {
        out.push_str(&format!(" ({op} {})", nonambiguous(&version)));
    }
    out
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    // A value whose first line is empty starts with its newline.
    if !value.starts_with('\n') {
        out.push(' ');
    }
    out.push_str(value);
    out.push('\n');
}

/// The `info/` file name prefix for a package: `NAME:ARCH` if it is `Multi-Arch: same`.
pub fn info_name(control: &str) -> Result<String, DbError> {
    let stanza = parse(control)?;
    let name = package_name(&stanza)?;
    let arch = required(&stanza, &name, "Architecture")?;
    match stanza.get("Multi-Arch").map(|m| m.trim().to_ascii_lowercase()).as_deref() {
        Some("same") if arch == "all" => Err(DbError::Field {
            package: name,
            field: "Multi-Arch".into(),
            message: "`same` with architecture `all`, which dpkg refuses".into(),
        }),
        Some("same") => Ok(format!("{name}:{arch}")),
        _ => Ok(name),
    }
}

/// The `info/NAME.list` text: `/.`, then `paths` (`/a/b` form, archive order).
pub fn list_file(paths: &[String]) -> String {
    let mut out = String::from("/.\n");
    for path in paths {
        out.push_str(path);
        out.push('\n');
    }
    out
}

/// What a package's `info/` files are made of.
pub struct InfoSource<'a> {
    /// The `control` file.
    pub control: &'a str,
    /// The paths it owns, `/a/b` form, archive order.
    pub paths: &'a [String],
    /// `md5sums` text.
    pub md5sums: &'a str,
    /// Conffile paths.
    pub conffiles: &'a [String],
    /// Every other control member by name (`postinst`, `triggers` …).
    pub scripts: &'a BTreeMap<String, Vec<u8>>,
}

impl<'a> From<&'a Unpacked> for InfoSource<'a> {
    fn from(u: &'a Unpacked) -> Self {
        InfoSource {
            control: &u.control,
            paths: &u.paths,
            md5sums: &u.md5sums,
            conffiles: &u.conffiles,
            scripts: &u.scripts,
        }
    }
}

/// The files dpkg keeps in `info/` for an unpacked package, named relative to `info/`:
/// `NAME.list`, `NAME.md5sums`, `NAME.conffiles` (if any), and every other control member
/// (`NAME.postinst`, `NAME.triggers`, `NAME.shlibs` …) as shipped, as `dpkg --unpack`
/// leaves them; with the mode dpkg gives each (maintainer scripts are executable).
pub fn info_files(info: &InfoSource<'_>) -> Result<Vec<(String, Vec<u8>, u32)>, DbError> {
    let name = info_name(info.control)?;
    let mut files = vec![(format!("{name}.list"), list_file(info.paths).into_bytes(), 0o644)];
    if !info.md5sums.is_empty() {
        files.push((format!("{name}.md5sums"), info.md5sums.as_bytes().to_vec(), 0o644));
    }
    if !info.conffiles.is_empty() {
        let text: String = info.conffiles.iter().map(|c| format!("{c}\n")).collect();
        files.push((format!("{name}.conffiles"), text.into_bytes(), 0o644));
    }
    for (member, content) in info.scripts {
        let executable = MAINTAINER_SCRIPTS.contains(&member.as_str());
        files.push((format!("{name}.{member}"), content.clone(), if executable { 0o755 } else { 0o644 }));
    }
    files.sort();
    Ok(files)
}

/// The control members dpkg runs, and so keeps executable.
const MAINTAINER_SCRIPTS: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

/// The fixed part of an admin directory that dpkg expects besides `status` and `info/`
/// files: paths relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skeleton {
    pub directories: Vec<&'static str>,
    pub files: Vec<(&'static str, String)>,
}

/// The admin directory's skeleton. `arch` lists the native architecture, then the foreign
/// ones (what `dpkg --add-architecture` records); `info/format` says the database uses the
/// multiarch layout (`NAME:ARCH` info files), as dpkg ≥ 1.16.2 writes it.
pub fn skeleton(native: &str, foreign: &[&str]) -> Skeleton {
    let mut arch = format!("{native}\n");
    for f in foreign {
        arch.push_str(f);
        arch.push('\n');
    }
    Skeleton {
        directories: vec![
            "var/lib/dpkg",
            "var/lib/dpkg/alternatives",
            "var/lib/dpkg/info",
            "var/lib/dpkg/parts",
            "var/lib/dpkg/triggers",
            "var/lib/dpkg/updates",
        ],
        files: vec![
            ("var/lib/dpkg/arch", arch),
            ("var/lib/dpkg/available", String::new()),
            ("var/lib/dpkg/diversions", String::new()),
            ("var/lib/dpkg/info/format", "1\n".into()),
            ("var/lib/dpkg/statoverride", String::new()),
        ],
    }
}

fn parse(control: &str) -> Result<Stanza<'_>, DbError> {
    control::parse_one(control, Dialect::Archive)
        .map_err(|source| DbError::Control { package: guess_name(control), source })
}

/// The package name for an error about a control file that may not parse.
fn guess_name(control: &str) -> String {
    control.lines().find_map(|l| l.strip_prefix("Package:")).map_or("(unnamed)".into(), |n| n.trim().to_owned())
}

fn package_name(stanza: &Stanza<'_>) -> Result<String, DbError> {
    let name = stanza.require("Package").map_err(|source| DbError::Control { package: "(unnamed)".into(), source })?;
    name.trim().parse::<super::packages::PackageName>().map(|n| n.to_string()).map_err(|e| DbError::Field {
        package: name.trim().into(),
        field: "Package".into(),
        message: e.to_string(),
    })
}

fn required<'s>(stanza: &'s Stanza<'_>, package: &str, field: &str) -> Result<&'s str, DbError> {
    stanza.require(field).map(str::trim).map_err(|source| DbError::Control { package: package.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const SCRAMBLED: &str = "\
Description: greets
 The classic.
 .
 Really.
Depends: libc6 (>=2.36),  libfoo | libbar (<< 2)
Version: 1.0-1
Homepage: https://example.org/hello
Essential: no
Maintainer: M <m@example.org>
Package: hello
Built-Using: gcc (= 12)
Multi-Arch: no
Architecture: amd64
Provides: greeter (=1.0)
Installed-Size: 12
Priority: optional
Section: misc
";

    fn pkg(control: &str) -> DbPackage<'_> {
        DbPackage { control, status: "install ok unpacked", conffiles: vec![] }
    }

    #[test]
    fn stanzas_follow_dpkgs_field_order() {
        let p = DbPackage { conffiles: vec![("/etc/hello.conf".into(), "newconffile".into())], ..pkg(SCRAMBLED) };
        assert_eq!(
            status_stanza(&p).unwrap(),
            "\
Package: hello
Status: install ok unpacked
Priority: optional
Section: misc
Installed-Size: 12
Maintainer: M <m@example.org>
Architecture: amd64
Version: 1.0-1
Provides: greeter (= 1.0)
Depends: libc6 (>= 2.36), libfoo | libbar (<< 2)
Conffiles:
 /etc/hello.conf newconffile
Description: greets
 The classic.
 .
 Really.
Homepage: https://example.org/hello
Built-Using: gcc (= 12)

"
        );
    }

    #[test]
    fn status_sorts_by_name_then_architecture_and_refuses_reserved_fields() {
        let b = "Package: bb\nVersion: 1\nArchitecture: amd64\n";
        let a_i386 = "Package: aa\nVersion: 1\nArchitecture: i386\nMulti-Arch: same\n";
        let a_amd64 = "Package: aa\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\n";
        let text = status(&[pkg(b), pkg(a_i386), pkg(a_amd64)]).unwrap();
        let order: Vec<&str> = text.lines().filter(|l| l.starts_with("Architecture")).collect();
        assert!(text.starts_with("Package: aa\n") && text.contains("\n\nPackage: bb\n"), "{text}");
        assert_eq!(order, ["Architecture: amd64", "Architecture: i386", "Architecture: amd64"]);
        assert!(status(&[pkg(b), pkg(b)]).unwrap_err().to_string().contains("twice"));
        let sneaky = "Package: aa\nVersion: 1\nArchitecture: all\nStatus: hold ok installed\n";
        let e = status_stanza(&pkg(sneaky)).unwrap_err().to_string();
        assert!(e.contains("`aa`") && e.contains("Status"), "{e}");
    }

    #[test]
    fn a_zero_epoch_is_dropped_as_dpkg_does() {
        let stanza = |version: &str| {
            let control = format!("Package: aa\nVersion: {version}\nArchitecture: all\n");
            status_stanza(&pkg(&control)).unwrap()
        };
        assert!(stanza("0:1.0-1").contains("\nVersion: 1.0-1\n"));
        assert!(stanza("0:1:2").contains("\nVersion: 0:1:2\n"));
        assert!(stanza("2:1.0").contains("\nVersion: 2:1.0\n"));
        // The same in relations, as `dpkg --unpack` writes them.
        let control = "Package: aa\nVersion: 1\nArchitecture: all\nProvides: xx (=0:1)\n\
                       Depends: foo (>= 0:1.0), bar (< 2), baz:any, qux (>>3), ee (= 2:1)\n";
        let text = status_stanza(&pkg(control)).unwrap();
        assert!(
            text.contains("\nProvides: xx (= 1)\nDepends: foo (>= 1.0), bar (<= 2), baz:any, qux (>> 3), ee (= 2:1)\n"),
            "{text}"
        );
    }

    #[test]
    fn keywords_are_written_in_dpkgs_spelling() {
        let control =
            "Package: aa\nVersion: 1\nArchitecture: amd64\nEssential: Yes\nMulti-Arch: Same\nPriority: Optional\n";
        let text = status_stanza(&pkg(control)).unwrap();
        assert!(text.contains("\nEssential: yes\n") && text.contains("\nMulti-Arch: same\n"), "{text}");
        assert!(text.contains("\nPriority: optional\n"), "{text}");
        assert_eq!(info_name(control).unwrap(), "aa:amd64");
        let control = "Package: aa\nVersion: 1\nArchitecture: amd64\nEssential: maybe\n";
        assert!(status_stanza(&pkg(control)).unwrap_err().to_string().contains("Essential"));
    }

    #[test]
    fn multi_arch_same_packages_are_named_with_their_architecture() {
        assert_eq!(info_name("Package: libc6\nArchitecture: amd64\nMulti-Arch: same\n").unwrap(), "libc6:amd64");
        assert_eq!(info_name("Package: bash\nArchitecture: amd64\nMulti-Arch: foreign\n").unwrap(), "bash");
        assert_eq!(info_name("Package: base-files\nArchitecture: amd64\n").unwrap(), "base-files");
        assert_eq!(info_name("Package: tzdata\nArchitecture: all\nMulti-Arch: foreign\n").unwrap(), "tzdata");
        assert!(info_name("Package: odd\nArchitecture: all\nMulti-Arch: same\n").is_err());
    }

    #[test]
    fn list_files_start_at_the_root() {
        assert_eq!(list_file(&["/etc".into(), "/etc/x".into()]), "/.\n/etc\n/etc/x\n");
        let s = skeleton("amd64", &["i386"]);
        assert!(s.files.contains(&("var/lib/dpkg/arch", "amd64\ni386\n".into())));
    }

    fn dpkg(root: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(args)
            .env("COLUMNS", "120")
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The real dpkg reads a database we wrote.
    #[test]
    fn dpkg_reads_the_database() {
        if !crate::testing::tool("dpkg", "dpkg") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let skeleton = skeleton("amd64", &[]);
        for d in &skeleton.directories {
            fs_err::create_dir_all(root.join(d)).unwrap();
        }
        for (path, text) in &skeleton.files {
            fs_err::write(root.join(path), text).unwrap();
        }
        fs_err::create_dir_all(root.join("etc")).unwrap();
        fs_err::create_dir_all(root.join("usr/bin")).unwrap();
        fs_err::write(root.join("usr/bin/hello"), "hello\n").unwrap();
        fs_err::write(root.join("etc/hello.conf"), "a=1\n").unwrap();
        let conf_md5 = format!("{:x}", <md5::Md5 as md5::Digest>::digest(b"a=1\n"));

        let control =
            "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: M <m@example.org>\nDescription: greets\n";
        let p = DbPackage { conffiles: vec![("/etc/hello.conf".into(), conf_md5)], ..pkg(control) };
        fs_err::write(root.join("var/lib/dpkg/status"), status(&[p]).unwrap()).unwrap();
        let name = info_name(control).unwrap();
        let paths: Vec<String> =
            ["/etc", "/etc/hello.conf", "/usr", "/usr/bin", "/usr/bin/hello"].map(String::from).into();
        fs_err::write(root.join(format!("var/lib/dpkg/info/{name}.list")), list_file(&paths)).unwrap();
        fs_err::write(
            root.join(format!("var/lib/dpkg/info/{name}.md5sums")),
            "b1946ac92492d2347c6235b4d2611184  usr/bin/hello\n",
        )
        .unwrap();

        let listed = dpkg(root, &["-l"]);
        let row = listed.lines().find(|l| l.contains("hello")).unwrap_or_else(|| panic!("{listed}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[..4], ["iU", "hello", "1.0-1", "amd64"], "{listed}");
        assert_eq!(dpkg(root, &["-L", "hello"]), "/.\n/etc\n/etc/hello.conf\n/usr\n/usr/bin\n/usr/bin/hello\n");
        assert_eq!(dpkg(root, &["--verify", "hello"]), "");

        fs_err::write(root.join("usr/bin/hello"), "tampered\n").unwrap();
        fs_err::write(root.join("etc/hello.conf"), "a=2\n").unwrap();
        assert_eq!(dpkg(root, &["--verify", "hello"]), "??5?????? c /etc/hello.conf\n??5??????   /usr/bin/hello\n");
    }

    /// What we write for a package is what `dpkg --unpack` itself writes: the status file,
    /// every `info/` file, and the files with their modes, owners, sizes and link targets.
    #[test]
    fn we_write_what_dpkg_unpack_writes() {
        use crate::testing::{root, tool};
        // `dpkg --unpack` must chown, so it needs root.
        if !(tool("dpkg", "dpkg") && tool("dpkg-deb", "dpkg") && tool("tar", "tar") && root()) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        for d in ["DEBIAN", "etc", "usr/bin", "usr/lib/hello"] {
            fs_err::create_dir_all(src.join(d)).unwrap();
        }
        let control = "Package: hello\nVersion: 0:2.0-1\nDescription: greets\n more\nArchitecture: amd64\n\
                       Depends: libc6 (>=2.36)|libc7\nMulti-Arch: same\nMaintainer: M <m@example.org>\n\
                       Homepage: https://example.org/\nEssential: no\nPriority: optional\n";
        fs_err::write(src.join("DEBIAN/control"), control).unwrap();
        fs_err::write(src.join("DEBIAN/conffiles"), "/etc/hello.conf\n").unwrap();
        fs_err::write(src.join("DEBIAN/postrm"), "#!/bin/sh\nexit 0\n").unwrap();
        fs_err::write(src.join("etc/hello.conf"), "a=1\n").unwrap();
        fs_err::write(src.join("usr/bin/hello"), "hi\n").unwrap();
        fs_err::hard_link(src.join("usr/bin/hello"), src.join("usr/bin/hello2")).unwrap();
        std::os::unix::fs::symlink("hello", src.join("usr/bin/hi")).unwrap();
        std::os::unix::fs::symlink("/etc/hello.conf", src.join("usr/lib/hello/conf")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [("DEBIAN/postrm", 0o755), ("usr/bin/hello", 0o4755), ("usr/lib/hello", 0o2775)] {
            fs_err::set_permissions(src.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let deb = tmp.path().join("hello.deb");
        let built = Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&src).arg(&deb).output();
        let built = built.unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        // dpkg's own result.
        let theirs = tmp.path().join("theirs");
        fs_err::create_dir_all(theirs.join("var/lib/dpkg/info")).unwrap();
        fs_err::create_dir_all(theirs.join("var/lib/dpkg/updates")).unwrap();
        fs_err::write(theirs.join("var/lib/dpkg/status"), "").unwrap();
        let out = Command::new("dpkg")
            .arg(format!("--root={}", theirs.display()))
            .args(["--force-all", "--unpack"])
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // Ours.
        let file = fs_err::File::open(&deb).unwrap().into_parts().0;
        let u = super::super::unpack::unpack(&file, "hello.deb", tmp.path(), u64::MAX, Default::default()).unwrap();
        let conffiles = u.conffiles.iter().map(|c| (c.clone(), "newconffile".to_owned())).collect();
        let p = DbPackage { control: &u.control, status: "install ok unpacked", conffiles };
        let db = theirs.join("var/lib/dpkg");
        assert_eq!(status(&[p]).unwrap(), fs_err::read_to_string(db.join("status")).unwrap());
        let ours = info_files(&(&u).into()).unwrap();
        let mut dpkgs: Vec<String> = fs_err::read_dir(db.join("info"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "format")
            .collect();
        dpkgs.sort();
        assert_eq!(ours.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>(), dpkgs);
        for (name, content, _) in &ours {
            assert_eq!(content, &fs_err::read(db.join("info").join(name)).unwrap(), "info/{name}");
        }

        // The files, extracted from our tree by tar, against dpkg's.
        let mine = tmp.path().join("mine");
        fs_err::create_dir_all(&mine).unwrap();
        let tar = tmp.path().join("layer.tar");
        crate::tar::writer::write_tree(&u.tree, &mut fs_err::File::create(&tar).unwrap()).unwrap();
        let x = Command::new("tar")
            .args(["--same-permissions", "--same-owner", "-xf"])
            .arg(&tar)
            .arg("-C")
            .arg(&mine)
            .output();
        assert!(x.unwrap().status.success());
        let shape = |root: &std::path::Path| {
            let out = Command::new("find")
                .arg(root)
                .args(["-path", "*/var/lib/dpkg", "-prune", "-o", "-printf", "%P %y %m %U %G %s %l %n\\n"])
                .output()
                .unwrap();
            let mut lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
            // Not compared: the root (dpkg's holds `var/`) and the admin directory. dpkg
            // leaves a new conffile as `.dpkg-new` until it configures the package.
            lines.retain(|l| !l.starts_with("var") && !l.starts_with(' '));
            let lines = lines.iter().map(|l| l.replacen(".dpkg-new ", " ", 1));
            let mut lines: Vec<String> = lines.collect();
            lines.sort();
            lines
        };
        let (theirs_shape, mine_shape) = (shape(&theirs), shape(&mine));
        assert!(theirs_shape.iter().any(|l| l.starts_with("usr/bin/hello f 4755 0 0 3  2")), "{theirs_shape:#?}");
        assert_eq!(mine_shape, theirs_shape);
    }

    /// A package built by dpkg-deb, unpacked by us into a root with its database: dpkg
    /// finds every file it expects, unchanged.
    #[test]
    fn dpkg_accepts_what_we_unpack() {
        use crate::testing::tool;
        if !(tool("dpkg", "dpkg") && tool("dpkg-deb", "dpkg") && tool("tar", "tar")) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        for d in ["DEBIAN", "etc/hello", "usr/bin", "usr/share/doc/hello"] {
            fs_err::create_dir_all(src.join(d)).unwrap();
        }
        let control = "Package: hello\nVersion: 0:2.0-1\nArchitecture: amd64\nMulti-Arch: same\n\
                       Maintainer: M <m@example.org>\nDescription: greets\n";
        fs_err::write(src.join("DEBIAN/control"), control).unwrap();
        fs_err::write(src.join("DEBIAN/conffiles"), "/etc/hello/hello.conf\n").unwrap();
        fs_err::write(src.join("etc/hello/hello.conf"), "a=1\n").unwrap();
        fs_err::write(src.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        fs_err::write(src.join("usr/share/doc/hello/README"), "read me\n").unwrap();
        std::os::unix::fs::symlink("hello", src.join("usr/bin/hi")).unwrap();
        let deb = tmp.path().join("hello.deb");
        let built =
            Command::new("dpkg-deb").args(["--build", "--root-owner-group", "-Zzstd"]).arg(&src).arg(&deb).output();
        let built = built.unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        let file = fs_err::File::open(&deb).unwrap().into_parts().0;
        let u =
            super::super::unpack::unpack(&file, "hello.deb", tmp.path(), 1_700_000_000, Default::default()).unwrap();
        let root = tmp.path().join("root");
        fs_err::create_dir_all(&root).unwrap();
        let tar = tmp.path().join("layer.tar");
        crate::tar::writer::write_tree(&u.tree, &mut fs_err::File::create(&tar).unwrap()).unwrap();
        let x = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&root).output().unwrap();
        assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));

        let s = skeleton("amd64", &[]);
        for d in &s.directories {
            fs_err::create_dir_all(root.join(d)).unwrap();
        }
        for (path, text) in &s.files {
            fs_err::write(root.join(path), text).unwrap();
        }
        let conffiles = u
            .conffiles
            .iter()
            .map(|c| {
                let line = u.md5sums.lines().find(|l| l.ends_with(&format!("  {}", &c[1..]))).unwrap();
                (c.clone(), line[..32].to_owned())
            })
            .collect();
        let p = DbPackage { control: &u.control, status: "install ok unpacked", conffiles };
        fs_err::write(root.join("var/lib/dpkg/status"), status(&[p]).unwrap()).unwrap();
        let name = info_name(&u.control).unwrap();
        assert_eq!(name, "hello:amd64");
        let info = root.join("var/lib/dpkg/info");
        fs_err::write(info.join(format!("{name}.list")), list_file(&u.paths)).unwrap();
        fs_err::write(info.join(format!("{name}.md5sums")), &u.md5sums).unwrap();

        let row = dpkg(&root, &["-l", "hello"]);
        assert!(row.lines().any(|l| l.split_whitespace().take(4).eq(["iU", "hello:amd64", "2.0-1", "amd64"])), "{row}");
        let listed = dpkg(&root, &["-L", "hello"]);
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            [
                "/.",
                "/etc",
                "/etc/hello",
                "/etc/hello/hello.conf",
                "/usr",
                "/usr/bin",
                "/usr/bin/hello",
                "/usr/share",
                "/usr/share/doc",
                "/usr/share/doc/hello",
                "/usr/share/doc/hello/README",
                // dpkg-deb puts symlinks after everything else; the list keeps archive order.
                "/usr/bin/hi",
            ]
        );
        assert_eq!(dpkg(&root, &["--verify"]), "");
        fs_err::write(root.join("usr/share/doc/hello/README"), "changed\n").unwrap();
        assert_eq!(dpkg(&root, &["--verify"]), "??5??????   /usr/share/doc/hello/README\n");
    }
}
