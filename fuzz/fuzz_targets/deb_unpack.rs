//! A whole package: the ar container, the members' decompression (gzip, xz, zstd, bzip2,
//! none), `control.tar` and `data.tar` through the strict tar reader, the control file,
//! `conffiles`, `md5sums`, and the tree the entries are placed in.
#![no_main]

use candidate::debian::unpack::{unpack, UnpackLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = candidate_fuzz::file_with(data);
    // Small caps: a decompression bomb stops at them (which is what the builder does, with
    // larger ones) instead of slowing the run; contents past `in_memory` go to the spool.
    let limits = UnpackLimits { max_entries: 4096, max_bytes: 8 << 20, max_control_bytes: 1 << 20, in_memory: 1 << 16 };
    let _ = unpack(file, "fuzz.deb", &std::env::temp_dir(), 1_700_000_000, limits);
});
