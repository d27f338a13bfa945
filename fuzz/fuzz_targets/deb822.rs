//! deb822 (`control`, `Packages`, `Release`, `status`): stanzas, fields, continuation lines,
//! comments in the source dialect, UTF-8 errors named by line.
#![no_main]

use candidate::debian::control::{self, Dialect, Stanzas};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = control::from_utf8(data) else { return };
    for dialect in [Dialect::Archive, Dialect::Source] {
        for stanza in Stanzas::new(text, dialect) {
            let Ok(stanza) = stanza else { break };
            for field in stanza.fields() {
                let _ = (field.name(), field.value(), field.line(), field.lines().count());
            }
        }
        let _ = control::parse_one(text, dialect);
    }
    let _ = control::parse_stanzas(text);
});
