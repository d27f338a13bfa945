//! `candidate` turns a recipe into a bit-for-bit reproducible root filesystem template and a
//! manifest that proves what went in and what came out.
//!
//! The pipeline, one module a stage:
//!
//! ```text
//! recipe ──lock──▶ lockfile ──fetch──▶ store ──layer──▶ layers ──rootfs──▶ outputs + manifest
//!        ──attest──▶ SBOM + signed provenance ──verify──▶ verdict
//! ```
//!
//! * [`recipe`] — the typed recipe (`recipes/NAME.toml`): image, layers, outputs.
//! * [`debian`] — Debian archives: the signed index chain, the resolver, `.deb` unpacking and
//!   the dpkg database (package layers are built by `ops::packages` through `debian::install`).
//! * [`local`] — local inputs: scanning trees, tree digests, stat fingerprints.
//! * [`lockfile`] — the lockfile schema (`lockfiles/NAME.lock`).
//! * [`fetch`] — streaming inputs into the store, checked against their pins.
//! * [`store`] — the content-addressed store: blobs, action cache, atomic writes.
//! * [`tar`] — the strict reader of untrusted archives and the deterministic writer.
//! * [`tree`] — the in-memory image tree and its placement rules.
//! * [`layer`] — one recipe layer into one deterministic tar.
//! * [`compress`] — input decoders and pinned output encoders.
//! * [`rootfs`] — merging layers and writing the output archives.
//! * [`manifest`] — the canonical `manifest.json`.
//! * [`oci`] — the OCI image layout, one layer per recipe layer.
//! * [`lxc`] — LXC and LXD/Incus metadata beside `rootfs.tar.xz`.
//! * [`sbom`] — the SPDX 2.3 SBOM (`sbom.spdx.json`).
//! * [`keys`], [`dsse`], [`attest`] — ed25519 keys, DSSE envelopes, and the signed in-toto
//!   SLSA provenance (`manifest.intoto.json`) that `verify` checks.
//! * [`instance`], [`sandbox`] — a tree written onto a host folder, and a namespace sandbox
//!   that runs a command in it (`candidate test`, the configure mode).
//! * [`channel`] — channels: signed, hash-chained promotion logs, and their policy.
//! * [`ops`] — the commands (`lock`, `fetch`, `build`, `key`, `sign`, `verify`), thin layers
//!   over the above.
//! * [`digest`] — the sha256 type every identity is.
//! * `testing` (hidden) — what a test needs from the host (a tool, root), checked one way.
//!
//! The invariants every module keeps are in `DESIGN.md`: determinism, the hash chain, no host
//! extraction of untrusted archives, an atomic shared store, identity by uncompressed bytes,
//! and errors that name their culprit.

pub mod attest;
pub mod channel;
pub mod cli;
pub mod compress;
pub mod debian;
pub mod digest;
pub mod dsse;
pub mod fetch;
pub mod instance;
pub mod keys;
pub mod layer;
pub mod local;
pub mod lockfile;
pub mod lxc;
pub mod manifest;
pub mod oci;
pub mod ops;
pub mod printer;
pub mod recipe;
pub mod rootfs;
pub mod sandbox;
pub mod sbom;
pub mod store;
pub mod tar;
#[doc(hidden)]
pub mod testing;
pub mod tree;
