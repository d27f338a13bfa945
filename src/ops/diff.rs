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
use crate::tree::{Content, Kind, Node};
use std::sync::Arc;

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

/// The merged rootfs of a candidate built from its layers in the store, with contents left
/// as references into the layer blobs (`blobs` opens each layer once, so two candidates that
/// share a layer share its references). `None` when the store lacks a layer.
fn layered_tree(
    ctx: &Context,
    manifest: &Value,
    blobs: &mut BTreeMap<Digest, Arc<std::fs::File>>,
) -> anyhow::Result<Option<crate::tree::Tree>> {
    let sde = manifest["source-date-epoch"].as_u64().unwrap_or_default();
    let mut tree = crate::tree::Tree::new(sde);
    for (i, layer) in manifest["layers"].as_array().into_iter().flatten().enumerate() {
        let Some(diff_id) = layer["diff_id"].as_str().and_then(|d| d.parse::<Digest>().ok()) else { return Ok(None) };
        let Some(info) = crate::layer::stored(&ctx.store, &diff_id) else { return Ok(None) };
        let blob = match blobs.get(&diff_id) {
            Some(blob) => blob.clone(),
            None => {
                let file = Arc::new(fs_err::File::open(ctx.store.blob_path(&diff_id))?.into_parts().0);
                blobs.insert(diff_id, file.clone());
                file
            }
        };
        let layer = crate::layer::read(&info, &blob, (i as u64) << 40)?;
        tree.merge(layer)?;
    }
    Ok(Some(tree))
}

/// The facts of a tree node; content is hashed only when `hash` says so.
fn node_facts(node: &Node, hash: bool) -> anyhow::Result<EntryFacts> {
    let (kind, size, content, link) = match &node.kind {
        Kind::Directory => ("directory", 0, None, String::new()),
        Kind::Symlink { target } => ("symlink", 0, None, target.clone()),
        // A merged tree holds none; a whiteout only ever deletes.
        Kind::Whiteout => ("whiteout", 0, None, String::new()),
        Kind::File { size, content, .. } => {
            let digest = if hash { Some(hash_content(content, *size)?) } else { None };
            ("regular file", *size, digest, String::new())
        }
    };
    Ok(EntryFacts {
        kind,
        mode: node.mode,
        owner: (node.uid, node.gid),
        size,
        content,
        link,
        xattrs: node.xattrs.clone(),
    })
}

fn hash_content(content: &Content, size: u64) -> anyhow::Result<Digest> {
    let mut hashing = HashingWriter::new(std::io::sink());
    match content {
        Content::Range { file, offset } => {
            let mut reader = crate::tar::reader::ReadAt::new(file.clone());
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(*offset))?;
            std::io::copy(&mut std::io::Read::take(reader, size), &mut hashing)?;
        }
        Content::Bytes(bytes) => std::io::Write::write_all(&mut hashing, bytes)?,
        Content::Host(path) => {
            std::io::copy(&mut fs_err::File::open(path.as_path())?, &mut hashing)?;
        }
    }
    Ok(hashing.finish().0)
}

/// Whether two contents are the same bytes of the same stored layer (no need to read them).
fn same_source(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (
            Kind::File { content: Content::Range { file: fa, offset: oa }, .. },
            Kind::File { content: Content::Range { file: fb, offset: ob }, .. },
        ) => Arc::ptr_eq(fa, fb) && oa == ob,
        _ => false,
    }
}

/// Entry changes between two merged trees: only contents that do not come from the same
/// place in a shared layer are read, so the cost follows the layers that changed.
fn diff_trees(a: &crate::tree::Tree, b: &crate::tree::Tree) -> anyhow::Result<Vec<Value>> {
    let paths: BTreeSet<&String> = a.iter().map(|(p, _)| p).chain(b.iter().map(|(p, _)| p)).collect();
    let mut changes = Vec::new();
    for path in paths {
        let shown = format!("/{path}");
        match (a.get(path), b.get(path)) {
            (Some(_), None) => changes.push(json!({ "path": shown, "change": "removed" })),
            (None, Some(_)) => changes.push(json!({ "path": shown, "change": "added" })),
            (Some(x), Some(y)) => {
                let hash = !same_source(x, y);
                let (fx, fy) = (node_facts(x, hash)?, node_facts(y, hash)?);
                if fx != fy {
                    changes.push(json!({ "path": shown, "change": "changed", "fields": changed_fields(&fx, &fy) }));
                }
            }
            (None, None) => unreachable!("the path came from one of the trees"),
        }
    }
    Ok(changes)
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
    let (dir_a, id_a) = crate::registry::resolve(&ctx.store, a)?;
    let (dir_b, id_b) = crate::registry::resolve(&ctx.store, b)?;
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

    let package_changes = package_changes(&ma, &mb);

    // The root filesystems, entry by entry (skipped when their diff_ids agree): from the
    // layers in the store when it has them all, else from the rootfs archives.
    let mut entry_changes = Vec::new();
    if ma["rootfs"]["diff_id"] != mb["rootfs"]["diff_id"] {
        let mut blobs = BTreeMap::new();
        match (layered_tree(ctx, &ma, &mut blobs)?, layered_tree(ctx, &mb, &mut blobs)?) {
            (Some(ta), Some(tb)) => entry_changes = diff_trees(&ta, &tb)?,
            _ => {
                let (ea, eb) = (rootfs_entries(&dir_a, &ma)?, rootfs_entries(&dir_b, &mb)?);
                let paths: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
                for path in paths {
                    match (ea.get(path), eb.get(path)) {
                        (Some(_), None) => entry_changes.push(json!({ "path": path, "change": "removed" })),
                        (None, Some(_)) => entry_changes.push(json!({ "path": path, "change": "added" })),
                        (Some(x), Some(y)) if x != y => entry_changes
                            .push(json!({ "path": path, "change": "changed", "fields": changed_fields(x, y) })),
                        _ => {}
                    }
                }
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
            "packages": package_changes,
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
        for c in &package_changes {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            let versions = match (c["a"].as_str(), c["b"].as_str()) {
                (Some(a), Some(b)) => format!("{a} -> {b}"),
                (Some(a), None) => a.to_owned(),
                (None, b) => b.unwrap_or_default().to_owned(),
            };
            println!(
                "package {:<10} {}:{} {versions} (archive {}, layer {})",
                field("change"),
                field("name"),
                field("architecture"),
                field("archive"),
                field("layer")
            );
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
                "the candidates differ ({} input(s), {} package(s), {} rootfs entr(ies))",
                input_changes.len(),
                package_changes.len(),
                entry_changes.len()
            ),
            hint: None,
        }
        .into())
    }
}

/// Debian packages added, removed, upgraded or downgraded (dpkg version order), by
/// (name, architecture), with the archive and layer they came from.
fn package_changes(a: &Value, b: &Value) -> Vec<Value> {
    let packages = |m: &Value| -> BTreeMap<(String, String), Value> {
        m["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let key = (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    p["architecture"].as_str().unwrap_or_default().to_owned(),
                );
                (key, p.clone())
            })
            .collect()
    };
    let (pa, pb) = (packages(a), packages(b));
    let version = |p: &Value| p["version"].as_str().unwrap_or_default().parse::<crate::debian::version::Version>().ok();
    let mut out = Vec::new();
    let keys: BTreeSet<&(String, String)> = pa.keys().chain(pb.keys()).collect();
    for key in keys {
        let (x, y) = (pa.get(key), pb.get(key));
        let change = match (x, y) {
            (Some(_), None) => "removed",
            (None, Some(_)) => "added",
            (Some(x), Some(y)) if x["sha256"] == y["sha256"] => continue,
            (Some(x), Some(y)) => match (version(x), version(y)) {
                (Some(vx), Some(vy)) if vy > vx => "upgraded",
                (Some(vx), Some(vy)) if vy < vx => "downgraded",
                _ => "rebuilt",
            },
            (None, None) => continue,
        };
        let from = y.or(x).expect("one side has it");
        out.push(json!({
            "change": change, "name": key.0, "architecture": key.1,
            "a": x.map(|p| p["version"].clone()), "b": y.map(|p| p["version"].clone()),
            "archive": from["archive"], "layer": from["layer"],
        }));
    }
    out
}
