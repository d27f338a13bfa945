//! `candidate` turns a recipe into a bit-for-bit reproducible root filesystem template and a
//! manifest that proves what went in and what came out.
//!
//! The pipeline, stage by stage (`ARCHITECTURE.md` at the top of the repository is the full
//! account: invariants, the import rule that `architecture` checks, how to add a format):
//!
//! ```text
//! recipe ──lock──▶ lockfile ──fetch──▶ store ──layers──▶ rootfs ──outputs──▶ candidate folder
//!        ──attest──▶ signed statement ──release──▶ verify / promote / test / diff
//! ```
//!
//! * **foundation** — [`digest`] (the sha256 every identity is), [`document`] (canonical JSON
//!   out, one reader back in that names the file), [`compress`] (input decoders,
//!   pinned output encoders), [`tar`] (the strict reader of untrusted archives, the deterministic
//!   writer), [`tree`] (the in-memory image tree and its placement rules), [`store`] (blobs,
//!   action cache, atomic writes), [`keys`] and [`dsse`] (ed25519, DSSE envelopes),
//!   [`sandbox`] and [`instance`] (a namespace sandbox over a tree written to a host folder),
//!   [`printer`], [`context`], [`error`], [`serde_str`] (serde through `FromStr` for values
//!   that are text with a shape), and Debian's parsers in [`debian`].
//! * **recipe** — [`recipe`] (the typed, strict recipe), [`lockfile`] (the lockfile schema).
//! * **lock** — [`lock`] (pin a recipe's inputs; check a lockfile against its recipe),
//!   [`fetch`] (stream pinned inputs into the store; an archive's snapshot for what its mirror
//!   dropped), [`bundle`] (every locked input in one checked file, for a rebuild with no
//!   network), [`local`] (local trees and their digests), and in [`debian`]: the signed index chain, the resolver, [`debian::pin`].
//! * **layers** — [`layer`] (one recipe layer into one deterministic tar), [`rootfs`] (merging
//!   layers, writing the rootfs archives), and in [`debian`]: unpacking, the dpkg database,
//!   [`debian::layers`] and configure mode.
//! * **outputs** — [`manifest`], [`sbom`] (SPDX) and [`cyclonedx`], [`oci`], [`lxc`], and [`dist`] (the candidate
//!   folder's file names; publishing it atomically).
//! * **attest** — [`attest`] (the in-toto statement with SLSA provenance, signed),
//!   [`rebuild_attest`] (a rebuilder's signed verdict beside a candidate; the rebuilder quorum).
//! * **release** — [`build`] (the build orchestration), [`verify`] (checks and rebuilds),
//!   [`registry`] (the store's candidates), [`channel`] (promotion logs and policy),
//!   [`budget`] (a channel's budgets against its head, and the promotion gate),
//!   [`release_notes`] (the signed release note of each promotion),
//!   [`qualify`] (scripts in fresh instances, test-result attestations), [`feed`] (a channel
//!   published as a signed static feed for LXD/Incus, LXC and Proxmox VE, and its verifier),
//!   [`remote`] (candidates pushed to and pulled from an OCI registry).
//! * **commands** — [`ops`] (one thin file per command) and [`cli`] (the arguments).

pub mod attest;
pub mod budget;
pub mod build;
pub mod bundle;
pub mod channel;
pub mod cli;
pub mod compress;
pub mod context;
pub mod cyclonedx;
pub mod debian;
pub mod diff;
pub mod digest;
pub mod dist;
pub mod document;
pub mod dsse;
pub mod error;
pub mod feed;
pub mod fetch;
pub mod instance;
pub mod keys;
pub mod layer;
pub mod local;
pub mod lock;
pub mod lockfile;
pub mod lxc;
pub mod manifest;
pub mod oci;
pub mod ops;
pub mod printer;
pub mod python;
pub mod qualify;
pub mod rebuild_attest;
pub mod recipe;
pub mod registry;
pub mod release;
pub mod release_notes;
pub mod remote;
pub mod rootfs;
pub mod sandbox;
pub mod sbom;
pub mod serde_str;
pub mod store;
pub mod system;
pub mod tar;
#[doc(hidden)]
pub mod testing;
pub mod tree;
pub mod upkeep;
pub mod verify;

#[cfg(test)]
mod architecture;
