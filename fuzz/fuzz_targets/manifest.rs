//! `manifest.json`: the typed document every candidate is identified by; one that parses
//! writes back canonical bytes that parse to the same manifest.
#![no_main]

use std::path::Path;

use candidate::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("manifest.json");
    if let Ok(manifest) = Manifest::parse(path, data) {
        let again = Manifest::parse(path, &manifest.to_bytes()).expect("canonical bytes parse");
        assert_eq!(again, manifest, "a manifest survives canonical serialisation");
    }
});
