//! The import rule of `ARCHITECTURE.md`, checked: every module sits in one stage of the
//! pipeline, may import only modules of its own stage or an earlier one, and no group of
//! modules imports itself in a cycle. Run it with `cargo test --lib architecture`.
//!
//! It reads `src/` as text: `crate::a::b` and `super::…` paths outside `#[cfg(test)]`
//! modules, mapped to the longest module they name. Test code may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The stages in import order, each with its modules. A module not listed fails the test:
/// a new module must be placed in a stage on purpose.
const STAGES: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "compress",
            "compress::pieces",
            "context",
            "debian",
            "debian::control",
            "debian::deb",
            "debian::packages",
            "debian::release",
            "debian::version",
            "digest",
            "document",
            "dsse",
            "error",
            "instance",
            "keys",
            "printer",
            "python",
            "python::marker",
            "python::pylock",
            "python::requirements",
            "python::tags",
            "python::version",
            "python::wheel",
            "python::zip",
            "sandbox",
            "serde_str",
            "store",
            "tar",
            "tar::reader",
            "tar::writer",
            "testing",
            "tree",
        ],
    ),
    ("recipe", &["lockfile", "recipe", "system"]),
    (
        "lock",
        &[
            "bundle",
            "debian::archive",
            "debian::pin",
            "debian::resolve",
            "fetch",
            "local",
            "lock",
            "python::index",
            "python::lock",
            "python::target",
        ],
    ),
    (
        "layers",
        &[
            "debian::configure",
            "debian::per_machine",
            "debian::usrmerge",
            "debian::dpkgdb",
            "debian::install",
            "debian::layers",
            "debian::unpack",
            "layer",
            "python::install",
            "python::layers",
            "python::venv",
            "rootfs",
            "system::plan",
        ],
    ),
    ("outputs", &["cyclonedx", "dist", "lxc", "manifest", "oci", "sbom"]),
    ("attest", &["attest", "rebuild_attest"]),
    (
        "release",
        &[
            "budget",
            "build",
            "channel",
            "diff",
            "feed",
            "feed::index",
            "feed::source",
            "qualify",
            "qualify::lxc",
            "registry",
            "release",
            "release_notes",
            "remote",
            "remote::auth",
            "remote::client",
            "remote::transfer",
            "system::lxc",
            "system::lxd",
            "system::qualify",
            "upkeep",
            "verify",
        ],
    ),
    (
        "commands",
        &[
            "cli",
            "error::render",
            "ops",
            "ops::build",
            "ops::deploy",
            "ops::diff",
            "ops::key",
            "ops::list_remote",
            "ops::lock",
            "ops::publish",
            "ops::pull",
            "ops::push",
            "ops::release",
            "ops::status",
            "ops::store_gc",
            "ops::store_verify",
            "ops::test",
            "ops::test_system",
            "ops::undeploy",
            "ops::verify",
            "ops::verify_feed",
        ],
    ),
];

/// Modules that are not part of the pipeline: the crate root and this test.
const OUTSIDE: &[&str] = &["lib", "architecture"];

fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file");
    let stem = last.trim_end_matches(".rs").to_owned();
    if stem != "mod" {
        parts.push(stem);
    }
    parts.join("::")
}

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// The modules a file's non-test code names, each mapped to the longest known module.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    // Non-test code: everything before the first `#[cfg(test)]` (test modules close a file).
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    // Comments (doc links included) name modules without importing them.
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let code = code.as_str();
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            // Part of a longer identifier (`my_crate::`)?
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut path: Vec<String> = if start == "super::" {
                let mut base: Vec<String> = module.split("::").map(str::to_owned).collect();
                base.pop();
                base
            } else {
                Vec::new()
            };
            let mut rest = &code[at + start.len()..];
            loop {
                while let Some(r) = rest.strip_prefix("super::") {
                    path.pop();
                    rest = r;
                }
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                path.push(rest[..end].to_owned());
                match rest[end..].strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            // The longest prefix that is a module.
            while !path.is_empty() && !known.contains(&path.join("::")) {
                path.pop();
            }
            let target = path.join("::");
            if !target.is_empty() && target != module && !module.starts_with(&format!("{target}::")) {
                out.insert(target);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_earlier_stages_and_form_no_cycle() {
    let stage: BTreeMap<&str, usize> =
        STAGES.iter().enumerate().flat_map(|(i, (_, modules))| modules.iter().map(move |m| (*m, i))).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files: Vec<_> = walkdir::WalkDir::new(src())
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.expect("readable src").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let known: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut problems = Vec::new();
    for path in &files {
        let module = module_of(path);
        if module == "main" || OUTSIDE.contains(&module.as_str()) {
            continue;
        }
        let Some(&own) = stage.get(module.as_str()) else {
            problems.push(format!("`{module}` is in no stage: place it in `STAGES` and ARCHITECTURE.md"));
            continue;
        };
        let text = fs_err::read_to_string(path).expect("readable source");
        let deps = imports(&module, &text, &known);
        for dep in &deps {
            match stage.get(dep.as_str()) {
                Some(&theirs) if theirs > own => problems.push(format!(
                    "`{module}` ({}) imports `{dep}` ({}), a later stage",
                    STAGES[own].0, STAGES[theirs].0
                )),
                _ => {}
            }
        }
        graph.insert(module, deps);
    }
    // Cycles: a depth-first search that reports the first back edge's cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == node) {
            cycles.push(format!("import cycle: {} -> {node}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, path, done, cycles);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut problems);
    }
    assert!(problems.is_empty(), "the import rule of ARCHITECTURE.md is broken:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    let known: BTreeSet<String> = ["a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let text = "use crate::c::Thing;\nuse super::b::X;\nfn f() { crate::a::b::g(); my_crate::c::h(); }\n#[cfg(test)]\nmod tests { use crate::z; }";
    let got = imports("a::d", text, &known);
    assert_eq!(got, ["a::b", "c"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
}
