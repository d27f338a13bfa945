//! Python package index pages, as they come from the network: the first byte chooses PEP 691
//! JSON (odd) or PEP 503 HTML (even); links resolved against the page, `#sha256=` fragments.
#![no_main]

use candidate::python::index::parse_page;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(body) = std::str::from_utf8(rest) else { return };
    let _ = parse_page("https://index.invalid/simple/demo/", body, mode % 2 == 1);
});
