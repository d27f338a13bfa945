//! Debian archives (issue #3, in progress): the pieces that read what an apt archive serves.
//!
//! * [`version`] — Debian version numbers, compared exactly as dpkg compares them.
//! * [`control`] — deb822 control stanzas (`Packages`, `Release`, a package's `control`).
//! * [`deb`] — a strict reader of the deb(5) ar container.
//! * [`release`] — `InRelease` verified against a pinned OpenPGP keyring, and its `Release` fields.
//! * [`packages`] — `Packages` index entries and package relationships (`Depends`, `Provides`, …).
//! * [`resolve`] — which packages `apt-get install --no-install-recommends` would pick.
//!
//! Not yet wired into recipes; the chain from a verified `InRelease` to its `Packages`
//! indexes and the package layers come next.

pub mod control;
pub mod deb;
pub mod packages;
pub mod release;
pub mod resolve;
pub mod version;
