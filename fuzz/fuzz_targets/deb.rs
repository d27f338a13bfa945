//! The `.deb` container (ar, `debian-binary`, member order and names): every member's content
//! read, as the unpacker reads them.
#![no_main]

use candidate::debian::deb::{DebReader, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small caps, so that the size checks are reached by small inputs too.
    let limits = Limits { max_control_size: 1 << 16, max_data_size: 1 << 20, max_members: 8 };
    let Ok(mut reader) = DebReader::with_limits(data, limits) else { return };
    // Alternate reading a member's content and leaving it for `next_member` to skip.
    let mut read = data.len() % 2 == 0;
    while let Ok(Some(_member)) = reader.next_member() {
        if read {
            let _ = candidate_fuzz::drain(reader.content());
        }
        read = !read;
    }
});
