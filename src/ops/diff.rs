//! `candidate diff A B [--json]`: what changed between two candidates.
//!
//! Inputs (tarballs, local trees; Debian packages when archives come), the root filesystem
//! entry by entry (content digest, size, mode, owner, link target, xattrs, type), summarised
//! per top-level folder, and which layers the two share — what a registry push of B after A
//! would transfer. Exit 0 when the candidates are identical, 1 when they differ.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{CheckFailed, Context};
use crate::digest::{Digest, HashingWriter};
use crate::tar::reader::{EntryType, Limits, TarReader};

/// What the diff compares of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryFacts {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    content: Option<Digest>,
    link: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// The entries of a candidate's rootfs, read from its least-compressed archive.
fn rootfs_entries(dir: &Path, manifest: &Value) -> anyhow::Result<BTreeMap<String, EntryFacts>> {
    let outputs: Vec<&str> =
        manifest["outputs"].as_array().into_iter().flatten().filter_map(|o| o["name"].as_str()).collect();
    let archive = ["rootfs.tar", "rootfs.tar.zst", "rootfs.tar.gz", "rootfs.tar.xz"]
        .into_iter()
        .find(|n| outputs.contains(n))
        .with_context(|| format!("`{}` has no rootfs archive to compare", dir.display()))?;
    let (_, decoded) = crate::compress::decoder(fs_err::File::open(dir.join(archive))?)?;
    let mut reader = TarReader::new(decoded, Limits::default());
    let mut entries = BTreeMap::new();
    while let Some(entry) = reader.next_entry()? {
        let content = if entry.kind == EntryType::File {
            let mut hashing = HashingWriter::new(std::io::sink());
            reader.copy_content(entry.size, &mut hashing)?;
            Some(hashing.finish().0)
        } else {
            None
        };
        let path = entry.path.trim_start_matches("./").trim_end_matches('/').to_owned();
        entries.insert(
            format!("/{path}"),
            EntryFacts {
                kind: entry.kind.describe(),
                mode: entry.mode,
                owner: (entry.uid, entry.gid),
                size: entry.size,
                content,
                link: entry.link.clone(),
                xattrs: entry.xattrs.clone(),
            },
        );
    }
    Ok(entries)
}

fn changed_fields(a: &EntryFacts, b: &EntryFacts) -> Vec<Value> {
    let mut out = Vec::new();
    let mut field = |name: &str, x: Value, y: Value| {
        if x != y {
            out.push(json!({ "field": name, "a": x, "b": y }));
        }
    };
    field("type", json!(a.kind), json!(b.kind));
    field("content", json!(a.content), json!(b.content));
    field("size", json!(a.size), json!(b.size));
    field("mode", json!(format!("{:o}", a.mode)), json!(format!("{:o}", b.mode)));
    field("owner", json!(format!("{}:{}", a.owner.0, a.owner.1)), json!(format!("{}:{}", b.owner.0, b.owner.1)));
    field("link target", json!(a.link), json!(b.link));
    field("xattrs", json!(a.xattrs.keys().collect::<Vec<_>>()), json!(b.xattrs.keys().collect::<Vec<_>>()));
    if out.iter().all(|f| f["field"] != "xattrs") && a.xattrs != b.xattrs {
        out.push(json!({ "field": "xattrs", "a": "values differ", "b": "values differ" }));
    }
    out
}

fn top_level(path: &str) -> String {
    let rest = path.trim_start_matches('/');
    match rest.split_once('/') {
        Some((top, _)) => format!("/{top}"),
        None => "/".to_owned(),
    }
}

/// `candidate diff A B [--json]`.
pub fn diff(ctx: &Context, a: &str, b: &str, as_json: bool) -> anyhow::Result<()> {
    let (dir_a, id_a) = super::release::resolve(ctx, a)?;
    let (dir_b, id_b) = super::release::resolve(ctx, b)?;
    let read = |dir: &Path| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&fs_err::read(dir.join("manifest.json"))?)?)
    };
    let (ma, mb) = (read(&dir_a)?, read(&dir_b)?);

    // Inputs, keyed by (layer, kind, origin).
    let inputs = |m: &Value| -> BTreeMap<(String, String, String), (String, u64)> {
        m["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let key = (
                    i["layer"].as_str().unwrap_or_default().to_owned(),
                    i["kind"].as_str().unwrap_or_default().to_owned(),
                    i["origin"].as_str().unwrap_or_default().to_owned(),
                );
                (key, (i["sha256"].as_str().unwrap_or_default().to_owned(), i["size"].as_u64().unwrap_or_default()))
            })
            .collect()
    };
    let (ia, ib) = (inputs(&ma), inputs(&mb));
    let mut input_changes = Vec::new();
    for (key, (sha, size)) in &ia {
        match ib.get(key) {
            None => input_changes.push(json!({ "change": "removed", "layer": key.0, "kind": key.1, "origin": key.2, "a": sha, "size_a": size })),
            Some((sb, zb)) if sb != sha => input_changes.push(json!({ "change": "changed", "layer": key.0, "kind": key.1, "origin": key.2, "a": sha, "b": sb, "size_a": size, "size_b": zb })),
            Some(_) => {}
        }
    }
    for (key, (sha, size)) in &ib {
        if !ia.contains_key(key) {
            input_changes.push(
                json!({ "change": "added", "layer": key.0, "kind": key.1, "origin": key.2, "b": sha, "size_b": size }),
            );
        }
    }

    // The root filesystems, entry by entry (skipped when their diff_ids agree).
    let mut entry_changes = Vec::new();
    if ma["rootfs"]["diff_id"] != mb["rootfs"]["diff_id"] {
        let (ea, eb) = (rootfs_entries(&dir_a, &ma)?, rootfs_entries(&dir_b, &mb)?);
        let paths: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
        for path in paths {
            match (ea.get(path), eb.get(path)) {
                (Some(_), None) => entry_changes.push(json!({ "path": path, "change": "removed" })),
                (None, Some(_)) => entry_changes.push(json!({ "path": path, "change": "added" })),
                (Some(x), Some(y)) if x != y => {
                    entry_changes.push(json!({ "path": path, "change": "changed", "fields": changed_fields(x, y) }))
                }
                _ => {}
            }
        }
    }
    let mut per_top: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for c in &entry_changes {
        let top = top_level(c["path"].as_str().unwrap_or_default());
        let change = match c["change"].as_str() {
            Some("added") => "added",
            Some("removed") => "removed",
            _ => "changed",
        };
        *per_top.entry(top).or_default().entry(change).or_default() += 1;
    }

    // Layers shared, and what B adds over A.
    let layers = |m: &Value| -> Vec<(String, String, u64)> {
        m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["name"].as_str().unwrap_or_default().to_owned(),
                    l["diff_id"].as_str().unwrap_or_default().to_owned(),
                    l["size"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let (la, lb) = (layers(&ma), layers(&mb));
    let in_a: BTreeSet<&String> = la.iter().map(|l| &l.1).collect();
    let shared: Vec<&(String, String, u64)> = lb.iter().filter(|l| in_a.contains(&l.1)).collect();
    let new_in_b: Vec<&(String, String, u64)> = lb.iter().filter(|l| !in_a.contains(&l.1)).collect();
    let transfer: u64 = new_in_b.iter().map(|l| l.2).sum();

    let identical = id_a == id_b;
    if as_json {
        let report = json!({
            "a": id_a, "b": id_b, "identical": identical,
            "inputs": input_changes,
            "rootfs": { "summary": per_top, "entries": entry_changes },
            "layers": {
                "shared": shared.iter().map(|l| json!({ "name": l.0, "diff_id": l.1, "size": l.2 })).collect::<Vec<_>>(),
                "only_in_b": new_in_b.iter().map(|l| json!({ "name": l.0, "diff_id": l.1, "size": l.2 })).collect::<Vec<_>>(),
                "transfer_bytes": transfer,
            },
        });
        println!("{report}");
    } else {
        println!(
            "a: {id_a} ({} {})",
            ma["image"]["name"].as_str().unwrap_or_default(),
            ma["image"]["version"].as_str().unwrap_or_default()
        );
        println!(
            "b: {id_b} ({} {})",
            mb["image"]["name"].as_str().unwrap_or_default(),
            mb["image"]["version"].as_str().unwrap_or_default()
        );
        for c in &input_changes {
            let kind = c["kind"].as_str().unwrap_or_default();
            let origin = c["origin"].as_str().unwrap_or_default();
            match c["change"].as_str().unwrap_or_default() {
                "changed" => println!(
                    "input  changed  {kind} {origin} (layer {}): {} -> {}",
                    c["layer"].as_str().unwrap_or_default(),
                    c["a"].as_str().unwrap_or_default(),
                    c["b"].as_str().unwrap_or_default()
                ),
                change => {
                    println!("input  {change:<8} {kind} {origin} (layer {})", c["layer"].as_str().unwrap_or_default())
                }
            }
        }
        for (top, counts) in &per_top {
            let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!("rootfs {top}: {}", counts.join(", "));
        }
        for c in &entry_changes {
            let fields: Vec<&str> =
                c["fields"].as_array().into_iter().flatten().filter_map(|f| f["field"].as_str()).collect();
            let detail = if fields.is_empty() { String::new() } else { format!(" ({})", fields.join(", ")) };
            println!(
                "  {:<8} {}{detail}",
                c["change"].as_str().unwrap_or_default(),
                c["path"].as_str().unwrap_or_default()
            );
        }
        println!("layers: {} shared, {} only in b ({transfer} bytes to push)", shared.len(), new_in_b.len());
    }
    if identical {
        Ok(())
    } else {
        Err(CheckFailed {
            message: format!(
                "the candidates differ ({} input(s), {} rootfs entr(ies))",
                input_changes.len(),
                entry_changes.len()
            ),
            hint: None,
        }
        .into())
    }
}
