//! The `InRelease` front end: framing, the cleartext-signed message and its armored
//! signatures, the keyring lookup — all of which run before any signature is verified — and
//! the `Release` stanza read from a text (the fuzzer cannot forge a signature, so the parser
//! of the signed text is fed the input directly as well).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use candidate::debian::release::{verify_inrelease, Keyring, Release};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let bytes = include_bytes!("../../fixtures/apt/keys/test-archive.gpg");
        Keyring::parse(Path::new("test-archive.gpg"), bytes).expect("the fixture keyring parses")
    })
}

fuzz_target!(|data: &[u8]| {
    // Only the fixture's own `InRelease` (a seed) verifies; its text is then parsed as the
    // builder parses it.
    if let Ok(verified) = verify_inrelease(data, keyring(), Some(candidate_fuzz::NOW)) {
        let _ = verified.release();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(release) = Release::parse(text) {
            let _ = release.check_freshness(candidate_fuzz::NOW, 300);
        }
    }
});
