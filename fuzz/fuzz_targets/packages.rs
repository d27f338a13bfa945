//! `Packages` indexes: each stanza into a typed package (names, versions, architectures,
//! relations, provides, sizes, digests, file names), and the relation and version grammars
//! on their own.
#![no_main]

use candidate::debian::packages::{parse_index, Provide, Relations, Requested};
use candidate::debian::version::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_index(text);
    let _ = Relations::parse("Depends", text);
    let _ = Provide::parse_list("Provides", text);
    let _ = Requested::parse(text);
    // Versions compare by dpkg's rules; the first line against the rest.
    let mut lines = text.lines();
    if let Some(Ok(first)) = lines.next().map(str::parse::<Version>) {
        for other in lines.filter_map(|l| l.parse::<Version>().ok()) {
            let _ = first.cmp(&other);
            assert_eq!(first.cmp(&other), other.cmp(&first).reverse(), "version order is antisymmetric");
        }
    }
});
