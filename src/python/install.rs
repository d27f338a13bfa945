//! Installing wheels into a virtual environment of the image, as pip 23 installs them
//! (`pip._internal.operations.install.wheel`), without pip and without Python.
//!
//! * Root files go to `site-packages` (purelib and platlib are one folder in a venv);
//!   `NAME.data/{purelib,platlib,scripts,headers,data}/…` to the venv's scheme
//!   ([`Venv`]); any other `.data` key refuses the wheel.
//! * A `.data/scripts` file whose first line begins `#!python` (also `#!pythonw`) has that
//!   line replaced by `#!/VENV/bin/python`; a script that is also an entry point's name is
//!   not installed (setuptools' own wrappers), as pip does.
//! * Console and GUI entry points become the wrapper scripts pip's `ScriptMaker` writes,
//!   byte for byte, mode `0755`.
//! * `RECORD` is rewritten for the installed paths (relative to `site-packages`, rows sorted
//!   as pip sorts them, RECORD's own row empty), and `INSTALLER` says `candidate`.
//! * Modes are `0755` for members with an execute bit, `0644` otherwise; owner `0:0`; mtime
//!   the candidate's `SOURCE_DATE_EPOCH`. Nothing about the host enters the tree.
//!
//! Each member's content is checked against `RECORD` as it is read, and the tree is returned
//! only when every member passed: a wheel is installed whole or not at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::venv::{file_node, Venv};
use super::wheel::{parse_record, write_record, RecordHash, RecordRow, Wheel, WheelError, WheelName};
use super::zip::Entry;
use crate::tree::{Kind, Tree, TreeError};

/// Bumped whenever the tree installed from the same wheel would change.
pub const INSTALL_VERSION: u32 = 1;

/// What `INSTALLER` says (PEP 376: the tool that installed the distribution).
const INSTALLER: &[u8] = b"candidate\n";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error("`{wheel}`, member `{member}`: {message}")]
    Member { wheel: String, member: String, message: String },
    #[error("`{wheel}`: cannot place `/{path}`")]
    Tree { wheel: String, path: String, source: TreeError },
    #[error("`/{path}` is installed by both `{first}` and `{second}`")]
    Conflict { path: String, first: String, second: String },
}

/// Installs `wheel` (whose file name is `file_name`) into `venv`: the tree of the files it
/// adds, paths relative to the image root.
pub fn install(wheel: &Wheel, file_name: &str, venv: &Venv, mtime: u64) -> Result<Tree, InstallError> {
    let name = WheelName::parse(file_name)?;
    wheel.check_name(&name)?;
    let member_err = |member: &str, message: String| InstallError::Member {
        wheel: file_name.to_owned(),
        member: member.to_owned(),
        message,
    };
    let site = venv.site_packages();
    // pip names the headers folder after the requirement, which for a wheel file is the
    // file name's distribution with `_` made `-`.
    let file_dist = file_name.split('-').next().unwrap_or_default().replace('_', "-");
    let data_dir = format!("{}/", wheel.data_dir());
    let record_member = format!("{}/RECORD", wheel.dist_info());
    let wrappers: Vec<&str> = wheel.entry_points().iter().map(|e| e.name.as_str()).collect();

    let mut tree = Tree::new(mtime);
    // Archive path -> installed path relative to site-packages, and which were changed.
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    let mut changed: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    let mut place = |tree: &mut Tree, path: String, bytes: Arc<[u8]>, mode: u32, member: &str| {
        if let Some(first) = placed.insert(path.clone(), member.to_owned()) {
            return Err(member_err(member, format!("it installs to `/{path}`, as `{first}` does")));
        }
        tree.insert(&path, file_node(bytes, mode, mtime)).map_err(|source| InstallError::Tree {
            wheel: file_name.to_owned(),
            path,
            source,
        })
    };
    // Every member inflated and checked before anything is placed (on all cores for a big
    // wheel): RECORD's own bytes are kept for its rewrite below.
    let entries: Vec<&Entry> = wheel.files().collect();
    let contents = wheel.read_all(&entries)?;
    let mut old_record = None;
    for (entry, mut bytes) in entries.into_iter().zip(contents) {
        let mode = if entry.executable { 0o755 } else { 0o644 };
        let dest = match entry.name.strip_prefix(&data_dir) {
            None => format!("{site}/{}", entry.name),
            Some(rest) => {
                let (key, sub) = rest
                    .split_once('/')
                    .ok_or_else(|| member_err(&entry.name, "`.data` files must be in `KEY/PATH`".into()))?;
                match key {
                    "purelib" | "platlib" => format!("{site}/{sub}"),
                    "headers" => format!("{}/{sub}", venv.headers(&file_dist)),
                    "data" => format!("{}/{sub}", venv.data()),
                    "scripts" => {
                        if wrappers.contains(&sub) {
                            continue;
                        }
                        if bytes.starts_with(b"#!python") {
                            let rest = bytes.iter().position(|&b| b == b'\n').map_or(&[][..], |i| &bytes[i + 1..]);
                            let mut fixed = format!("#!{}\n", venv.interpreter()).into_bytes();
                            fixed.extend_from_slice(rest);
                            bytes = fixed.into();
                            changed.insert(entry.name.clone(), bytes.clone());
                        }
                        format!("{}/{sub}", venv.scripts())
                    }
                    other => {
                        return Err(member_err(
                            &entry.name,
                            format!("`.data` key `{other}` is not one of purelib, platlib, scripts, headers, data"),
                        ))
                    }
                }
            }
        };
        installed.insert(entry.name.clone(), relative_to(&dest, &site));
        // RECORD is written anew below.
        if entry.name == record_member {
            old_record = Some(bytes);
        } else {
            place(&mut tree, dest, bytes, mode, &entry.name)?;
        }
    }

    // Entry points, then INSTALLER: generated files, recorded with their hashes.
    let mut generated = Vec::new();
    for ep in wheel.entry_points() {
        let path = format!("{}/{}", venv.scripts(), ep.name);
        let script = wrapper_script(&venv.interpreter(), &ep.module, &ep.attr);
        generated.push(row_for(&relative_to(&path, &site), &script));
        place(&mut tree, path, script.into(), 0o755, &format!("entry point `{}`", ep.name))?;
    }
    let dist_info = format!("{site}/{}", wheel.dist_info());
    generated.push(row_for(&relative_to(&format!("{dist_info}/INSTALLER"), &site), INSTALLER));
    place(&mut tree, format!("{dist_info}/INSTALLER"), INSTALLER.into(), 0o644, "INSTALLER")?;

    // RECORD: the wheel's rows with their installed paths (changed files rehashed), then
    // the generated files; sorted as pip's `_normalized_outrows` sorts them.
    let old_record = old_record.expect("a wheel has a RECORD");
    let old = std::str::from_utf8(&old_record).expect("RECORD was read as text when the wheel was opened");
    let mut rows: Vec<RecordRow> = parse_record(old)
        .expect("RECORD was parsed when the wheel was opened")
        .into_iter()
        .map(|row| match changed.get(&row.path) {
            Some(bytes) => row_for(&installed[&row.path], bytes),
            None => RecordRow { path: installed.get(&row.path).cloned().unwrap_or(row.path.clone()), ..row },
        })
        .chain(generated)
        .collect();
    let key = |r: &RecordRow| {
        (
            r.path.clone(),
            r.hash.as_ref().map(|h| h.to_string()).unwrap_or_default(),
            r.size.map(|s| s.to_string()).unwrap_or_default(),
        )
    };
    rows.sort_by_key(key);
    let record_path = format!("{dist_info}/RECORD");
    place(&mut tree, record_path, write_record(&rows).into_bytes().into(), 0o644, &record_member)?;
    Ok(tree)
}

fn row_for(path: &str, bytes: &[u8]) -> RecordRow {
    RecordRow { path: path.to_owned(), hash: Some(RecordHash::sha256_of(bytes)), size: Some(bytes.len() as u64) }
}

/// `path` relative to the folder `base` (both image paths), as `os.path.relpath` gives it.
fn relative_to(path: &str, base: &str) -> String {
    let p: Vec<&str> = path.split('/').collect();
    let b: Vec<&str> = base.split('/').collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out: Vec<&str> = std::iter::repeat_n("..", b.len() - common).collect();
    out.extend(&p[common..]);
    out.join("/")
}

/// The script pip 23 writes for an entry point (its `PipScriptMaker` template through
/// distlib's `ScriptMaker`, which puts the shebang first and, when the interpreter's path is
/// too long for the kernel's 127-byte shebang or has a space, a `/bin/sh` trampoline).
pub fn wrapper_script(interpreter: &str, module: &str, attr: &str) -> Vec<u8> {
    let shebang = if interpreter.len() + 3 <= 127 && !interpreter.contains(' ') {
        format!("#!{interpreter}\n")
    } else {
        format!("#!/bin/sh\n'''exec' {interpreter} \"$0\" \"$@\"\n' '''")
    };
    let import_name = attr.split('.').next().unwrap_or(attr);
    format!(
        "{shebang}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit({attr}())\n"
    )
    .into_bytes()
}

/// The layer's tree: the venv and every wheel's installed tree, refusing two wheels that
/// write one path (a directory both create is not a conflict).
pub fn combine(venv_tree: Tree, wheels: Vec<(String, Tree)>) -> Result<Tree, InstallError> {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut out = venv_tree;
    for (wheel, tree) in wheels {
        for (path, node) in tree.iter() {
            if node.is_dir() {
                continue;
            }
            if let Some(first) = owners.insert(path.clone(), wheel.clone()) {
                return Err(InstallError::Conflict { path: path.clone(), first, second: wheel });
            }
            if out.get(path).is_some_and(|n| !n.is_dir()) {
                return Err(InstallError::Conflict { path: path.clone(), first: "the venv".into(), second: wheel });
            }
        }
        for (path, node) in tree.iter() {
            if path.is_empty() || (node.implicit && out.get(path).is_some()) {
                continue;
            }
            let placed = out.insert(path, node.clone());
            placed.map_err(|source| InstallError::Tree { wheel: wheel.clone(), path: path.clone(), source })?;
        }
    }
    Ok(out)
}

/// Whether a tree entry is a regular file (for tests and listings).
pub fn is_file(node: &crate::tree::Node) -> bool {
    matches!(node.kind, Kind::File { .. })
}

#[cfg(test)]
mod tests {
    use super::super::wheel::testing::make;
    use super::*;

    fn venv() -> Venv {
        Venv { prefix: "opt/x/venv".into(), python_minor: (3, 11), python_full: "3.11.2".into() }
    }

    fn open(bytes: Vec<u8>, file: &str) -> Wheel {
        Wheel::from_bytes(bytes, file).unwrap()
    }

    /// Every entry: path, mode, and for files their text (or size for binaries).
    fn listing(tree: &Tree) -> String {
        let mut out = String::new();
        for (path, node) in tree.iter() {
            assert_eq!((node.uid, node.gid, node.mtime), (0, 0, 9), "{path}");
            match &node.kind {
                Kind::File { size, content, .. } => {
                    let bytes = content.read_all(*size).unwrap();
                    out.push_str(&format!("{path} {:o}\n", node.mode));
                    if path.ends_with("RECORD") || path.contains("/bin/") || path.ends_with("INSTALLER") {
                        for line in String::from_utf8(bytes).unwrap().lines() {
                            out.push_str(&format!("  | {line}\n"));
                        }
                    }
                }
                Kind::Directory => out.push_str(&format!("{path}/ {:o}\n", node.mode)),
                other => out.push_str(&format!("{path} {other:?}\n")),
            }
        }
        out
    }

    fn full_wheel() -> Vec<u8> {
        make(
            "demo",
            "1.0",
            false,
            &[
                ("demo/__init__.py", b"x = 1\n", false),
                ("demo/_speedups.so", b"\x7fELF", true),
                ("demo-1.0.data/scripts/tool", b"#!python\nprint('tool')\n", true),
                ("demo-1.0.data/scripts/gui", b"#!pythonw\nprint('gui')\n", true),
                ("demo-1.0.data/scripts/plain.sh", b"#!/bin/sh\necho\n", false),
                ("demo-1.0.data/scripts/demo-cli", b"setuptools wrapper", true),
                ("demo-1.0.data/headers/demo.h", b"int x;\n", false),
                ("demo-1.0.data/data/share/demo/x.txt", b"data\n", false),
                ("demo-1.0.data/purelib/demo/extra.py", b"y = 2\n", false),
                (
                    "demo-1.0.dist-info/entry_points.txt",
                    b"[console_scripts]\ndemo-cli = demo.cli:main\n[gui_scripts]\ndemo-gui = demo.gui:App.run\n",
                    false,
                ),
                ("demo-1.0.dist-info/sboms/demo.cdx.json", b"{}\n", false),
            ],
            None,
        )
    }

    #[test]
    fn installs_a_wheel_entry_by_entry() {
        let wheel = open(full_wheel(), "demo-1.0-cp311-cp311-linux_x86_64.whl");
        let tree = install(&wheel, "demo-1.0-cp311-cp311-linux_x86_64.whl", &venv(), 9).unwrap();
        insta::assert_snapshot!(listing(&tree));
    }

    #[test]
    fn a_pure_wheel_goes_to_site_packages() {
        let bytes = make("pure_pkg", "2.0", true, &[("pure_pkg.py", b"", false)], None);
        let wheel = open(bytes, "pure_pkg-2.0-py3-none-any.whl");
        let tree = install(&wheel, "pure_pkg-2.0-py3-none-any.whl", &venv(), 9).unwrap();
        let files: Vec<&String> = tree.iter().filter(|(_, n)| is_file(n)).map(|(p, _)| p).collect();
        assert_eq!(
            files,
            [
                "opt/x/venv/lib/python3.11/site-packages/pure_pkg-2.0.dist-info/INSTALLER",
                "opt/x/venv/lib/python3.11/site-packages/pure_pkg-2.0.dist-info/METADATA",
                "opt/x/venv/lib/python3.11/site-packages/pure_pkg-2.0.dist-info/RECORD",
                "opt/x/venv/lib/python3.11/site-packages/pure_pkg-2.0.dist-info/WHEEL",
                "opt/x/venv/lib/python3.11/site-packages/pure_pkg.py",
            ]
        );
    }

    #[test]
    fn a_lying_record_refuses_the_wheel() {
        let bytes = make("demo", "1.0", true, &[("demo/a.py", b"a", false)], Some("demo/a.py"));
        let err = install(&open(bytes, "demo-1.0-py3-none-any.whl"), "demo-1.0-py3-none-any.whl", &venv(), 9)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`demo-1.0-py3-none-any.whl`, member `demo/a.py`: its content does not match"),
            "{err}"
        );
    }

    #[test]
    fn a_dot_dot_member_refuses_the_wheel() {
        let bytes = make("demo", "1.0", true, &[("demo-1.0.data/data/../../../etc/passwd", b"x", false)], None);
        let err = Wheel::from_bytes(bytes, "demo-1.0-py3-none-any.whl").unwrap_err().to_string();
        assert_eq!(
            err,
            "`demo-1.0-py3-none-any.whl`, member `demo-1.0.data/data/../../../etc/passwd`: a name with a `..`, `.` or empty component"
        );
    }

    #[test]
    fn an_unknown_data_key_refuses_the_wheel() {
        let bytes = make("demo", "1.0", true, &[("demo-1.0.data/lib/x", b"x", false)], None);
        let err = install(&open(bytes, "demo-1.0-py3-none-any.whl"), "demo-1.0-py3-none-any.whl", &venv(), 9)
            .unwrap_err()
            .to_string();
        assert!(err.contains("member `demo-1.0.data/lib/x`: `.data` key `lib`"), "{err}");
    }

    #[test]
    fn two_wheels_writing_one_path_are_refused_naming_both() {
        let v = venv();
        let a = make("a", "1.0", true, &[("shared/x.py", b"a", false)], None);
        let b = make("b", "1.0", true, &[("shared/x.py", b"b", false)], None);
        let ta = install(&open(a, "a-1.0-py3-none-any.whl"), "a-1.0-py3-none-any.whl", &v, 9).unwrap();
        let tb = install(&open(b, "b-1.0-py3-none-any.whl"), "b-1.0-py3-none-any.whl", &v, 9).unwrap();
        let err = combine(
            v.tree(9).unwrap(),
            vec![("a-1.0-py3-none-any.whl".into(), ta), ("b-1.0-py3-none-any.whl".into(), tb)],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/opt/x/venv/lib/python3.11/site-packages/shared/x.py` is installed by both `a-1.0-py3-none-any.whl` and `b-1.0-py3-none-any.whl`"
        );
    }

    #[test]
    fn a_long_venv_path_gets_the_sh_trampoline() {
        let long = format!("/{}/bin/python", "v".repeat(130));
        let text = String::from_utf8(wrapper_script(&long, "m", "f")).unwrap();
        assert!(text.starts_with(&format!("#!/bin/sh\n'''exec' {long} \"$0\" \"$@\"\n' '''# -*- coding")), "{text}");
    }

    #[test]
    fn relative_paths_are_relpaths() {
        assert_eq!(relative_to("v/bin/x", "v/lib/p/site-packages"), "../../../bin/x");
        assert_eq!(relative_to("v/lib/p/site-packages/a/b", "v/lib/p/site-packages"), "a/b");
    }

    /// The installed file set is what `pip install --no-deps --target` gives for the same
    /// wheels: the RECORD paths (modulo the scheme prefix, and pip's own `direct_url.json`
    /// and `REQUESTED`), the files' bytes (scripts compared past the shebang, which names
    /// each one's interpreter) and their execute bits.
    #[test]
    fn the_installed_files_are_what_pip_installs() {
        use std::os::unix::fs::PermissionsExt as _;
        if !crate::testing::tool("pip3", "python3-pip") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let wheels = [
            ("demo-1.0-py3-none-any.whl", full_wheel()),
            ("pure_pkg-2.0-py3-none-any.whl", make("pure_pkg", "2.0", true, &[("pure_pkg.py", b"", false)], None)),
        ];
        let v = venv();
        let mut ours: BTreeMap<String, (Vec<u8>, bool)> = BTreeMap::new();
        let site = v.site_packages();
        for (file, bytes) in &wheels {
            fs_err::write(dir.path().join(file), bytes).unwrap();
            let tree = install(&open(bytes.clone(), file), file, &v, 9).unwrap();
            for (path, node) in tree.iter() {
                if let Kind::File { size, content, .. } = &node.kind {
                    let rel = relative_to(path, &site);
                    let key = match rel.strip_prefix("../../../") {
                        Some(root) => format!("ROOT/{}", root.replace("include/site/python3.11/", "HEADERS/")),
                        None => rel,
                    };
                    ours.insert(key, (content.read_all(*size).unwrap(), node.mode & 0o111 != 0));
                }
            }
        }
        let target = dir.path().join("target");
        let output = std::process::Command::new("pip3")
            .args(["install", "--quiet", "--no-deps", "--no-compile", "--no-index", "--disable-pip-version-check"])
            .arg("--target")
            .arg(&target)
            .args(wheels.iter().map(|(f, _)| dir.path().join(f)))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut theirs: BTreeMap<String, (Vec<u8>, bool)> = BTreeMap::new();
        for dist_info in ["demo-1.0.dist-info", "pure_pkg-2.0.dist-info"] {
            let record = fs_err::read_to_string(target.join(dist_info).join("RECORD")).unwrap();
            for row in parse_record(&record).unwrap() {
                if row.path.ends_with("/direct_url.json") || row.path.ends_with("/REQUESTED") {
                    continue;
                }
                // pip's `--target` installs through the `home` scheme: `lib/python` is the
                // target, scripts and data two levels up, headers in `include/python/NAME`.
                let (key, on_disk) = match row.path.strip_prefix("../../") {
                    Some(root) => (format!("ROOT/{}", root.replace("include/python/", "HEADERS/")), target.join(root)),
                    None => (row.path.clone(), target.join(&row.path)),
                };
                let present = on_disk.is_file();
                let bytes = if present { fs_err::read(&on_disk).unwrap() } else { Vec::new() };
                let exec = present && fs_err::metadata(&on_disk).unwrap().permissions().mode() & 0o111 != 0;
                theirs.insert(key, (bytes, exec));
            }
        }
        // RECORD keeps the row of a member neither installs (setuptools' own wrapper in
        // `.data/scripts`); our tree has no file for it.
        let mut our_keys: Vec<&str> = ours.keys().map(String::as_str).collect();
        our_keys.push("demo-1.0.data/scripts/demo-cli");
        our_keys.sort_unstable();
        assert_eq!(our_keys, theirs.keys().map(String::as_str).collect::<Vec<_>>());
        let past_shebang = |b: &[u8]| b.iter().position(|&c| c == b'\n').map_or(Vec::new(), |i| b[i..].to_vec());
        for (key, (bytes, exec)) in &ours {
            let (their_bytes, their_exec) = &theirs[key];
            assert_eq!(exec, their_exec, "execute bit of {key}");
            if key.ends_with("/INSTALLER") {
                assert_eq!((bytes.as_slice(), their_bytes.as_slice()), (&b"candidate\n"[..], &b"pip\n"[..]));
            } else if key.ends_with("/RECORD") {
                continue; // the installed paths, compared above
            } else if key.starts_with("ROOT/bin/") && bytes.starts_with(b"#!/") {
                assert_eq!(past_shebang(bytes), past_shebang(their_bytes), "{key}");
                assert!(their_bytes.starts_with(b"#!/"), "{key}");
            } else {
                assert_eq!(bytes, their_bytes, "{key}");
            }
        }
    }
}
