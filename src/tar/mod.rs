//! Tar, both ways: a strict reader for untrusted archives and a deterministic writer.
//!
//! The reader ([`reader`]) parses ustar, PAX and GNU long-name archives header by header and
//! never touches the host: it yields entries whose paths and links the caller places in a
//! [`crate::tree::Tree`]. The writer ([`writer`]) serialises a tree so that the same tree
//! always gives the same bytes (see its docs for every header field and why).

pub mod reader;
pub mod writer;

/// The tar block size.
pub const BLOCK: usize = 512;
