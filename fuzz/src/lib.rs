//! What the fuzz targets share: a fixed clock, a signing key, an anonymous file for parsers
//! that read from a `File`, and a bounded drain for decoders.
//!
//! Every target feeds its bytes to the same public function the builder calls on untrusted
//! input, and only checks that it returns (an `Err` is a good answer to garbage); a panic, an
//! abort, a timeout or an allocation past libFuzzer's `-rss_limit_mb` is a finding.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::sync::OnceLock;

use candidate::keys::PrivateKey;

/// The time the targets check signatures and freshness against: fixed, so that a crash
/// reproduces whenever it is replayed (2026-01-01T00:00:00Z).
pub const NOW: i64 = 1_767_225_600;

/// The most decoded bytes a target reads from one input. Bombs are the caps' business in the
/// builder (and tested there); here they would only make runs slow.
pub const DRAIN_CAP: u64 = 4 << 20;

/// Reads `reader` to its end or to [`DRAIN_CAP`] bytes, whichever is first.
pub fn drain(reader: impl Read) -> io::Result<u64> {
    io::copy(&mut reader.take(DRAIN_CAP), &mut io::sink())
}

/// One signing key for the whole run. Its bytes change from run to run, but no target's
/// path depends on them: a target signs what the fuzzer gives it and verifies under this key,
/// so that the parsing *after* the signature check is reached.
pub fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().expect("the operating system gives randomness"))
}

/// An anonymous file holding exactly `data`, for parsers that read a `File` (by position, as
/// the builder reads the store's blobs). One per thread, rewritten for each input.
pub fn file_with(data: &[u8]) -> &'static File {
    thread_local! {
        static FILE: &'static File = Box::leak(Box::new(tempfile::tempfile().expect("an anonymous temporary file")));
    }
    let file = FILE.with(|f| *f);
    let mut writer: &File = file;
    writer.set_len(0).expect("truncate the input file");
    writer.rewind().expect("rewind the input file");
    writer.write_all(data).expect("write the input file");
    file
}
