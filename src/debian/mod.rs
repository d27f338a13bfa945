//! Debian archives : the pieces that read what an apt archive serves.
//!
//! * [`version`] — Debian version numbers, compared exactly as dpkg compares them.
//! * [`control`] — deb822 control stanzas (`Packages`, `Release`, a package's `control`).
//! * [`deb`] — a strict reader of the deb(5) ar container.
//! * [`release`] — `InRelease` verified against a pinned OpenPGP keyring, and its `Release` fields.
//! * [`packages`] — `Packages` index entries and package relationships (`Depends`, `Provides`, …).
//! * [`dpkgdb`] — the dpkg database (`/var/lib/dpkg`) for packages we unpacked.
//! * [`unpack`] — a `.deb` unpacked into an image tree and its control metadata, running nothing.
//!
//! * [`archive`] — the trust chain: `InRelease` → `Packages` indexes, with rollback records.
//! * [`resolve`] — the dependency resolver that picks what apt would.
//! * [`install`] — extract-only installation of pinned packages into a layer.
//! * [`pin`] — the lock and fetch stages for a recipe's archives and packages.
//! * [`layers`] — each recipe layer's packages, unpacked over the layers below, cached.
//! * [`configure`] — configure mode: the image's own dpkg runs the maintainer scripts in the
//!   namespace sandbox, and what they changed becomes the `configure` layer.
//! * [`per_machine`] — per-machine state left out of a candidate and made at first boot, and
//!   the guard that runs the scripts twice and refuses what differs.

pub mod archive;
pub mod configure;
pub mod control;
pub mod deb;
pub mod dpkgdb;
pub mod install;
pub mod layers;
pub mod packages;
pub mod per_machine;
pub mod pin;
pub mod release;
pub mod resolve;
pub mod unpack;
pub mod usrmerge;
pub mod version;
