//! Python wheels: the first byte chooses the input. 0: a whole wheel (our zip reader, then
//! WHEEL, METADATA, RECORD, entry points, every member against RECORD) as `python::wheel::check`
//! reads it; else the rest is one text the zip would carry, parsed directly (a fuzzer cannot
//! keep CRCs and RECORD hashes right): 1 RECORD, 2 METADATA, 3 entry_points.txt, 4 WHEEL,
//! 5 a wheel's file name.
#![no_main]

use candidate::python::wheel::{self, WheelName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 6 == 0 {
        let _ = wheel::check(rest);
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 6 {
        1 => drop(wheel::parse_record(text)),
        2 => drop(wheel::parse_metadata(text)),
        3 => drop(wheel::parse_entry_points(text)),
        4 => drop(wheel::parse_wheel_info(text)),
        _ => drop(WheelName::parse(text)),
    }
});
