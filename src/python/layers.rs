//! The layer of a recipe `[[layer]]` with `python`: its venv and its locked wheels installed
//! into it ([`super::install`]), over whatever else the layer declares.
//!
//! Each wheel's installed tree is cached like a package's data tree: a tar blob in the store,
//! named in the action cache by the wheel's sha256 and everything that shapes its tree (file
//! name, venv, interpreter, `SOURCE_DATE_EPOCH`, the install format). The layer's own key is
//! over the same, for all its wheels, and the venv. Wheels are installed biggest first on
//! all cores; the trees installed now go into the layer from memory while their cache
//! copies are written, made durable and named on a thread of their own ([`Caching`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use super::install::{self, INSTALL_VERSION};
use super::venv::Venv;
use super::wheel::Wheel;
use crate::digest::{Digest, Hasher};
use crate::layer::{self, LayerInfo};
use crate::lockfile::{LockedWheel, Lockfile};
use crate::recipe::{Layer, Recipe};
use crate::store::{BatchedBlob, Store};
use crate::tree::Tree;

/// The venv a python layer installs into, for the image's interpreter.
pub fn venv(lockfile: &Lockfile, recipe: &Recipe, layer: &Layer) -> anyhow::Result<Option<Venv>> {
    let Some(spec) = &layer.python else { return Ok(None) };
    let target = super::target::Target::from_lockfile(lockfile, &recipe.image.architecture)
        .with_context(|| format!("layer `{}`: the venv needs the image's Python", layer.name))?;
    Ok(Some(Venv {
        prefix: spec.venv.as_rel().to_owned(),
        python_minor: target.python_minor,
        python_full: target.python_full,
    }))
}

/// The wheels of `layer`, in lockfile order (sorted by name there).
pub fn wheels<'a>(lockfile: &'a Lockfile, layer: &Layer) -> Vec<&'a LockedWheel> {
    lockfile.wheels.iter().filter(|w| w.layer == layer.name).collect()
}

fn venv_fields(h: &mut Hasher, venv: &Venv, sde: u64) {
    h.field(layer::FORMAT_VERSION.to_le_bytes()).field(INSTALL_VERSION.to_le_bytes()).field(sde.to_le_bytes());
    h.field(&venv.prefix).field(venv.python_minor.0.to_le_bytes()).field(venv.python_minor.1.to_le_bytes());
    h.field(&venv.python_full);
}

/// The layer's action key: its other inputs' key (`base`), the venv and its wheels.
pub fn action_key(base: &Digest, venv: &Venv, wheels: &[&LockedWheel], sde: u64) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-python-layer").field(base.as_bytes());
    venv_fields(&mut h, venv, sde);
    for w in wheels {
        h.field("wheel").field(w.sha256.as_bytes()).field(&w.filename);
    }
    h.finish()
}

fn wheel_key(wheel: &LockedWheel, venv: &Venv, sde: u64) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-wheel-tree").field(wheel.sha256.as_bytes()).field(&wheel.filename);
    venv_fields(&mut h, venv, sde);
    h.finish()
}

/// How many bytes of installed wheels a build keeps in memory until its layer is written
/// ([`wheel_tree`]); past it, a wheel's tree is written to the store first and read back.
const IN_MEMORY: u64 = 1 << 30;

/// A wheel's tree installed now, to be cached for later builds: already written to the
/// store (durable and named later, see [`tree`]), or still in memory, written by the
/// caching thread while the layer that uses it is written.
enum Fresh {
    Written(BatchedBlob, Digest, LayerInfo),
    /// The cache key, the tree, and the wheel's file name (for the caching thread's errors).
    InMemory(Digest, Tree, String),
}

/// A wheel's installed tree, and what is left to cache of it when it was installed now.
type WheelTree = (Tree, Option<Fresh>);

/// One wheel's installed tree: from the cache, or installed from its store blob now. A new
/// tree stays in memory (its bytes go into the layer without a copy, and the cache's copy
/// is written beside the layer's, see [`Caching`]) while the wheels installed now hold no
/// more than `in_memory` bytes together (`held` counts them; [`IN_MEMORY`] in a build);
/// past that, it is written to the store now and read back, pointing into its blob: a
/// CUDA stack installs to gigabytes, which must not all be held at once.
fn wheel_tree(
    store: &Store,
    wheel: &LockedWheel,
    venv: &Venv,
    sde: u64,
    held: &AtomicU64,
    in_memory: u64,
) -> anyhow::Result<WheelTree> {
    let key = wheel_key(wheel, venv, sde);
    if let Some(info) = store.action(&key).and_then(|b| serde_json::from_slice::<LayerInfo>(&b).ok()) {
        if store.blob_size(&info.diff_id) == Some(info.size) {
            let blob = Arc::new(fs_err::File::open(store.blob_path(&info.diff_id))?.into_parts().0);
            return Ok((layer::read(&info, &blob, 0)?, None));
        }
    }
    // Proved against its pin here, where it is used, not only when it was fetched: RECORD
    // only proves the members against a list the wheel itself carries.
    let file = store.open_verified(&wheel.sha256).with_context(|| format!("`{}`", wheel.filename))?;
    let opened = Wheel::open(file, &wheel.filename)?;
    if opened.metadata().name != wheel.name {
        anyhow::bail!(
            "`{}`: its METADATA names `{}`, the lockfile `{}`",
            wheel.filename,
            opened.metadata().name,
            wheel.name
        );
    }
    let tree = install::install(&opened, &wheel.filename, venv, sde)?;
    let size: u64 = opened.files().map(|e| e.size).sum();
    if held.fetch_add(size, Ordering::Relaxed) + size <= in_memory {
        return Ok((tree.clone(), Some(Fresh::InMemory(key, tree, wheel.filename.clone()))));
    }
    let (blob, info) = write_tree(store, &tree).with_context(|| format!("`{}`", wheel.filename))?;
    let read = layer::read(&info, &blob.reader, 0)?;
    Ok((read, Some(Fresh::Written(blob, key, info))))
}

/// Writes an installed tree to the store, not yet durable (see [`Store::publish_batch`]).
fn write_tree(store: &Store, tree: &Tree) -> anyhow::Result<(BatchedBlob, LayerInfo)> {
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, store.writer()?);
    let written = crate::tar::writer::write_tree(tree, &mut writer)?;
    let blob = writer.into_inner().map_err(|e| e.into_error())?.commit_batched()?;
    let implicit = tree.iter().filter(|(_, n)| n.implicit).map(|(p, _)| p.clone()).collect();
    let info = LayerInfo { diff_id: blob.digest, size: blob.size, entries: written.entries, implicit };
    Ok((blob, info))
}

/// The wheel trees installed by [`tree`], written (those held in memory), made durable and
/// named on another thread while the layer that uses them is written and the build goes
/// on: one `syncfs` and an action-cache entry each, which need not hold up the layer (its
/// tree holds the bytes, or reads the blobs through handles that stay valid across their
/// renames). The build calls [`Caching::wait`] at its end, which reports how that went;
/// dropped without it (the build failed), the thread is still waited for, so that no
/// temporary file is left behind by an exiting process.
pub struct Caching {
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Caching {
    /// Waits until every new wheel tree is durable and named.
    pub fn wait(mut self) -> anyhow::Result<()> {
        match self.handle.take() {
            Some(handle) => handle.join().expect("the caching thread does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for Caching {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The layer's tree: `base` (what else the layer declares), the venv, and every wheel,
/// installed on all cores and merged in lockfile order; and the wheel trees installed now,
/// being cached (see [`Caching`]).
pub fn tree(
    store: &Store,
    base: Tree,
    venv: &Venv,
    wheels: &[&LockedWheel],
    sde: u64,
) -> anyhow::Result<(Tree, Caching)> {
    tree_holding(store, base, venv, wheels, sde, IN_MEMORY)
}

/// [`tree`], holding at most `in_memory` bytes of new wheel trees in memory.
fn tree_holding(
    store: &Store,
    base: Tree,
    venv: &Venv,
    wheels: &[&LockedWheel],
    sde: u64,
    in_memory: u64,
) -> anyhow::Result<(Tree, Caching)> {
    // The biggest wheels first: one wheel is one thread's work, and a big one started last
    // would leave the other cores idle while it finishes (numpy is most of the bytes of a
    // typical set). The results go back to lockfile order, and so does the first error.
    let held = AtomicU64::new(0);
    let done = super::map_biggest_first(
        wheels,
        super::cores(),
        |w| w.size,
        |w| wheel_tree(store, w, venv, sde, &held, in_memory),
    );
    let mut trees = Vec::new();
    let mut fresh = Vec::new();
    for (wheel, result) in wheels.iter().zip(done) {
        let (tree, new) = result?;
        trees.push((wheel.filename.clone(), tree));
        fresh.extend(new);
    }
    // The new wheel trees are written (those still in memory), made durable together (one
    // `syncfs`), and only then named.
    let caching = Caching {
        handle: (!fresh.is_empty()).then(|| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut blobs = Vec::new();
                let mut records = Vec::new();
                for new in fresh {
                    let (blob, key, info) = match new {
                        Fresh::Written(blob, key, info) => (blob, key, info),
                        Fresh::InMemory(key, tree, wheel) => {
                            let (blob, info) = write_tree(&store, &tree)
                                .with_context(|| format!("caching the installed tree of `{wheel}`"))?;
                            (blob, key, info)
                        }
                    };
                    blobs.push(blob);
                    records.push((key, info));
                }
                store.publish_batch(blobs)?;
                for (key, info) in records {
                    store.put_action(&key, &serde_json::to_vec(&info).expect("layer info serialises"))?;
                }
                Ok(())
            })
        }),
    };
    let mut out = install::combine(venv.tree(sde)?, trees)?;
    // What else the layer declares goes under the venv: it cannot be overwritten by a wheel.
    for (path, node) in base.iter() {
        if path.is_empty() || (node.implicit && out.get(path).is_some()) {
            continue;
        }
        if out.get(path).is_some_and(|n| !n.is_dir() || !node.is_dir()) {
            anyhow::bail!("`/{path}` is both in the layer's venv and among its other entries");
        }
        out.insert(path, node.clone())?;
    }
    Ok((out, caching))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::wheel::testing::make;
    use crate::tree::{Content, Kind};

    fn locked(store: &Store, name: &str, bytes: &[u8]) -> LockedWheel {
        LockedWheel {
            name: name.parse().unwrap(),
            version: "1.0".into(),
            layer: "app".parse().unwrap(),
            filename: format!("{name}-1.0-py3-none-any.whl"),
            url: format!("file:///nonexistent/{name}-1.0-py3-none-any.whl"),
            size: bytes.len() as u64,
            sha256: store.put_bytes(bytes).unwrap(),
        }
    }

    fn tar_of(tree: &Tree) -> Vec<u8> {
        let mut out = Vec::new();
        crate::tar::writer::write_tree(tree, &mut out).unwrap();
        out
    }

    #[test]
    fn the_layer_tree_is_the_same_installed_or_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let venv = Venv { prefix: "opt/app/venv".into(), python_minor: (3, 11), python_full: "3.11.2".into() };
        let a = locked(&store, "alpha", &make("alpha", "1.0", true, &[("alpha.py", b"a", false)], None));
        let b = locked(&store, "beta", &make("beta", "1.0", true, &[("beta/__init__.py", b"b", false)], None));
        let wheels = [&a, &b];
        let (first, caching) = tree(&store, Tree::new(5), &venv, &wheels, 5).unwrap();
        caching.wait().unwrap();
        assert!(store.action(&wheel_key(&a, &venv, 5)).is_some(), "the wheel's tree is cached");
        let (second, caching) = tree(&store, Tree::new(5), &venv, &wheels, 5).unwrap();
        assert!(caching.handle.is_none(), "nothing was installed again");
        assert_eq!(tar_of(&first), tar_of(&second));
        // Past the memory budget a tree is written first and read back from its blob: the
        // same layer, and the same cache entries (here for `alpha` only; `beta`, the
        // biggest, was held in memory).
        let fresh = tempfile::tempdir().unwrap();
        let other = Store::open(fresh.path()).unwrap();
        let bytes = |w: &LockedWheel| fs_err::read(store.blob_path(&w.sha256)).unwrap();
        let (a2, b2) = (locked(&other, "alpha", &bytes(&a)), locked(&other, "beta", &bytes(&b)));
        let beta_size = super::super::wheel::Wheel::open(other.open_verified(&b2.sha256).unwrap(), &b2.filename)
            .unwrap()
            .files()
            .map(|e| e.size)
            .sum();
        let (third, caching) = tree_holding(&other, Tree::new(5), &venv, &[&a2, &b2], 5, beta_size).unwrap();
        caching.wait().unwrap();
        assert_eq!(tar_of(&first), tar_of(&third));
        assert!(third.iter().any(|(_, n)| matches!(&n.kind, Kind::File { content: Content::Range { .. }, .. })));
        for w in [&a, &b] {
            let key = wheel_key(w, &venv, 5);
            assert_eq!(store.action(&key), other.action(&key), "{}", w.filename);
        }
        let paths: Vec<&str> = first.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"opt/app/venv/lib/python3.11/site-packages/alpha.py"));
        assert!(paths.contains(&"opt/app/venv/lib/python3.11/site-packages/beta/__init__.py"));
        assert!(paths.contains(&"opt/app/venv/pyvenv.cfg"));
        // The key moves with every wheel and with the venv.
        let base = Digest::of(b"base");
        let key = action_key(&base, &venv, &wheels, 5);
        assert_ne!(key, action_key(&base, &venv, &[&a], 5));
        assert_ne!(key, action_key(&base, &Venv { prefix: "opt/b".into(), ..venv.clone() }, &wheels, 5));
        assert_ne!(key, action_key(&base, &venv, &wheels, 6));
    }

    #[test]
    fn a_wheel_blob_changed_in_the_store_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let venv = Venv { prefix: "v".into(), python_minor: (3, 11), python_full: "3.11.2".into() };
        let w = locked(&store, "alpha", &make("alpha", "1.0", true, &[("alpha.py", b"a", false)], None));
        // Another wheel under the pinned name: whole and consistent (its RECORD matches its
        // members), so only the pin can tell.
        let path = store.blob_path(&w.sha256);
        fs_err::remove_file(&path).unwrap();
        fs_err::write(&path, make("alpha", "1.0", true, &[("alpha.py", b"evil", false)], None)).unwrap();
        // A later build: the process that stored a blob has proved it already (`Store`).
        let store = Store::open(dir.path()).unwrap();
        let err = tree(&store, Tree::new(0), &venv, &[&w], 0).err().unwrap();
        let text = format!("{err:#}");
        assert!(text.starts_with("`alpha-1.0-py3-none-any.whl`: store blob `"), "{text}");
        assert!(text.contains(&format!("is corrupt: it is named {}", w.sha256)), "{text}");
        assert!(!path.exists(), "the corrupt blob is removed");
    }

    #[test]
    fn a_wheel_whose_content_is_not_the_locked_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let venv = Venv { prefix: "v".into(), python_minor: (3, 11), python_full: "3.11.2".into() };
        let mut w = locked(&store, "alpha", &make("alpha", "1.0", true, &[], None));
        w.name = "other".parse().unwrap();
        let err = tree(&store, Tree::new(0), &venv, &[&w], 0).err().unwrap();
        assert_eq!(err.to_string(), "`alpha-1.0-py3-none-any.whl`: its METADATA names `alpha`, the lockfile `other`");
    }
}
