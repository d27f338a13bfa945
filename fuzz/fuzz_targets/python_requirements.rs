//! What pins a layer's Python dependencies: hash-pinned requirements files and PEP 751
//! `pylock.toml` (the first byte chooses: even requirements, odd pylock), and the PEP 440 and
//! PEP 508 grammars inside them on every line of the rest.
#![no_main]

use std::path::Path;

use candidate::python::marker::{Marker, Requirement};
use candidate::python::pylock::Pylock;
use candidate::python::requirements::Requirements;
use candidate::python::version::{Specifiers, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if mode % 2 == 0 {
        let _ = Requirements::parse(Path::new("requirements.txt"), text);
    } else {
        let _ = Pylock::parse(Path::new("pylock.toml"), text);
    }
    for line in text.lines() {
        let _ = line.parse::<Requirement>();
        let _ = line.parse::<Marker>();
        let _ = line.parse::<Specifiers>();
        if let Ok(version) = line.parse::<Version>() {
            assert_eq!(version.to_string().parse::<Version>().ok(), Some(version), "a version survives display");
        }
    }
});
