//! The candidate manifest: what went in and what came out.
//!
//! `manifest.json` is canonical JSON: object keys sorted bytewise, no insignificant
//! whitespace, no trailing newline, integers only (no floats anywhere), UTF-8. This is the
//! form `serde_json` gives a [`serde_json::Value`] whose maps are `BTreeMap`s (the crate's
//! default, without `preserve_order`). The candidate's id is the sha256 of these bytes, so
//! the same inputs must give the same bytes on every machine: nothing here comes from the
//! host, the clock or the paths the build ran in.

use serde_json::{json, Value};

use crate::compress::Codec;
use crate::digest::Digest;
use crate::layer::{self, LayerInfo};
use crate::lockfile::Lockfile;
use crate::recipe::Recipe;
use crate::rootfs::Assembled;

pub const MANIFEST_VERSION: u32 = 1;

/// Everything the manifest states, gathered by the build.
pub struct ManifestInput<'a> {
    pub recipe: &'a Recipe,
    pub lockfile: &'a Lockfile,
    pub lockfile_digest: Digest,
    pub layers: &'a [(String, LayerInfo)],
    pub assembled: &'a Assembled,
    /// The formats built (one may make several files, and files may serve several formats).
    pub formats: &'a [crate::recipe::Format],
    /// Files one package took over from another by `Replaces`: (path, by, from).
    pub replaced: &'a [(String, String, String)],
    /// In configure mode: the per-machine paths left out and the first-boot actions.
    pub per_machine: Option<&'a crate::debian::per_machine::Record>,
}

/// The manifest's canonical bytes.
pub fn render(input: &ManifestInput<'_>) -> Vec<u8> {
    let image = &input.recipe.image;
    let layer_json = |info: &LayerInfo| json!({ "diff_id": info.diff_id, "size": info.size, "entries": info.entries });
    let compressors: Vec<Value> = [Codec::Gzip, Codec::Xz, Codec::Zstd]
        .into_iter()
        .filter(|c| input.assembled.outputs.iter().any(|o| o.codec == *c))
        .filter_map(Codec::describe)
        .collect();
    let mut manifest = json!({
        "manifest-version": MANIFEST_VERSION,
        "tool": { "name": "candidate", "version": env!("CARGO_PKG_VERSION"), "layer-format": layer::FORMAT_VERSION },
        "image": {
            "name": image.name,
            "version": image.version,
            "architecture": image.architecture,
            "os": image.os,
            "release": image.release,
            "description": image.description,
        },
        "source-date-epoch": image.source_date_epoch,
        // The recipe is named by file name only: the folder it was built from is not an input.
        "recipe": {
            "name": input.recipe.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            "digest": input.lockfile.recipe,
        },
        "lockfile": { "digest": input.lockfile_digest, "version": input.lockfile.version },
        "inputs": input.lockfile.inputs.iter().map(|i| {
            let mut v = json!({ "layer": i.layer, "kind": i.kind.to_string(), "origin": i.origin, "size": i.size, "sha256": i.sha256 });
            if let Some(files) = i.files {
                v["files"] = json!(files);
            }
            v
        }).collect::<Vec<_>>(),
        "layers": input.layers.iter().map(|(name, info)| {
            let mut v = layer_json(info);
            v["name"] = json!(name);
            v
        }).collect::<Vec<_>>(),
        "rootfs": layer_json(&input.assembled.rootfs),
        "formats": input.formats.iter().map(|f| f.file_name()).collect::<Vec<_>>(),
        "outputs": input.assembled.outputs.iter().map(|o| json!({
            "name": o.name,
            "size": o.size,
            "sha256": o.sha256,
            "compression": o.codec.describe().unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "compressors": compressors,
    });
    if !input.lockfile.archives.is_empty() {
        let lock = input.lockfile;
        manifest["archives"] = json!(lock.archives.iter().map(|a| json!({
            "name": a.name, "suite": a.suite, "inrelease": a.inrelease, "date": a.date, "keyring": a.keyring,
            "indexes": a.indexes.iter().map(|i| json!({ "path": i.path, "size": i.size, "sha256": i.sha256 })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>());
        manifest["packages"] = json!(lock
            .packages
            .iter()
            .map(|p| json!({
                "name": p.name, "version": p.version, "architecture": p.architecture, "archive": p.archive,
                "layer": p.layer, "filename": p.filename, "size": p.size, "sha256": p.sha256,
            }))
            .collect::<Vec<_>>());
        manifest["file-conflicts"] = json!({
            "rule": "a file shipped by two packages is an error unless the later declares Replaces on the earlier",
            "replaced": input.replaced.iter().map(|(path, by, from)| json!({ "path": path, "by": by, "from": from })).collect::<Vec<_>>(),
        });
        manifest["mode"] = json!(if input.recipe.configure.maintainer_scripts { "configure" } else { "extract-only" });
        if let Some(record) = input.per_machine {
            // What each node adds to the candidate, for auditors: sorted paths, actions in order.
            manifest["per-machine"] = json!(record);
        }
    }
    serde_json::to_vec(&manifest).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_serialise_with_sorted_keys_and_no_whitespace() {
        let v = serde_json::json!({ "b": 1, "a": { "d": [1, 2], "c": "x" } });
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }
}
