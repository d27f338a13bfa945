//! Lockfiles: the version check, then the schema; a lockfile that parses renders to a text
//! that parses to the same lockfile (what `lock` relies on to not rewrite an unchanged one).
#![no_main]

use std::path::Path;

use candidate::lockfile::Lockfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("lockfiles/fuzz.lock");
    if let Ok(lockfile) = Lockfile::parse(path, text) {
        let rendered = lockfile.render();
        let again = Lockfile::parse(path, &rendered).expect("a rendered lockfile parses");
        assert_eq!(again, lockfile, "a lockfile survives render and parse");
    }
});
