//! `candidate diff A B [--json]`: what changed between two candidates ([`crate::diff`]), as
//! lines or one JSON document. Exit 0 when the candidates are identical, 1 when they differ.

use super::{CheckFailed, Context};
use crate::diff::{Change, Diff};

pub fn diff(ctx: &Context, a: &str, b: &str) -> anyhow::Result<()> {
    let diff = crate::diff::diff(ctx, a, b)?;
    if ctx.printer.json() {
        ctx.printer.data(&diff)?;
    } else {
        print_lines(&diff);
    }
    if diff.identical {
        return Ok(());
    }
    Err(CheckFailed {
        message: format!(
            "the candidates differ ({} input(s), {} package(s), {} wheel(s), {} rootfs entr(ies))",
            diff.inputs.len(),
            diff.packages.len(),
            diff.wheels.len(),
            diff.rootfs.entries.len()
        ),
        hint: None,
    }
    .into())
}

fn print_lines(diff: &Diff) {
    for (label, id, (name, version)) in [("a", &diff.a, &diff.images[0]), ("b", &diff.b, &diff.images[1])] {
        println!("{label}: {id} ({name} {version})");
    }
    for c in &diff.inputs {
        let (kind, origin, layer) = (&c.kind, &c.origin, &c.layer);
        match (c.change, c.a, c.b) {
            (Change::Changed, Some(a), Some(b)) => {
                println!("input  changed  {kind} {origin} (layer {layer}): {a} -> {b}")
            }
            (change, ..) => println!("input  {:<8} {kind} {origin} (layer {layer})", change.as_str()),
        }
    }
    for c in &diff.packages {
        let versions = match (&c.a, &c.b) {
            (Some(a), Some(b)) => format!("{a} -> {b}"),
            (Some(v), None) | (None, Some(v)) => v.to_string(),
            (None, None) => String::new(),
        };
        println!(
            "package {:<10} {}:{} {versions} (archive {}, layer {})",
            c.change.as_str(),
            c.name,
            c.architecture,
            c.archive,
            c.layer
        );
    }
    for c in &diff.wheels {
        let versions = match (&c.a, &c.b) {
            (Some(a), Some(b)) if a == b => {
                format!("{a} ({} -> {})", c.file_a.as_deref().unwrap_or(""), c.file_b.as_deref().unwrap_or(""))
            }
            (Some(a), Some(b)) => format!("{a} -> {b}"),
            (Some(v), None) | (None, Some(v)) => v.clone(),
            (None, None) => String::new(),
        };
        println!("wheel   {:<10} {} {versions} (layer {})", c.change.as_str(), c.name, c.layer);
    }
    for (top, counts) in &diff.rootfs.summary {
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {}", k.as_str())).collect();
        println!("rootfs {top}: {}", counts.join(", "));
    }
    for c in &diff.rootfs.entries {
        let fields: Vec<&str> = c.fields.iter().map(|f| f.field).collect();
        let detail = if fields.is_empty() { String::new() } else { format!(" ({})", fields.join(", ")) };
        println!("  {:<8} {}{detail}", c.change.as_str(), c.path);
    }
    let layers = &diff.layers;
    println!(
        "layers: {} shared, {} only in b ({} bytes to push)",
        layers.shared.len(),
        layers.only_in_b.len(),
        layers.transfer_bytes
    );
}
