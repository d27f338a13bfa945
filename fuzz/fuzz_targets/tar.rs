//! Tar entries: the strict reader over untrusted archives (ustar, GNU long names and links,
//! PAX records and xattrs, numeric fields), then the same bytes read as a layer into a tree.
#![no_main]

use std::sync::Arc;

use candidate::tar::reader::{EntryType, Limits, TarReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_entries: 4096, max_total_size: 8 << 20, max_metadata: 1 << 16 };
    let mut reader = TarReader::new(data, limits);
    while let Ok(Some(entry)) = reader.next_entry() {
        // Contents are read for files and skipped (by the next call) otherwise.
        if entry.kind == EntryType::File && reader.copy_content(entry.size, &mut std::io::sink()).is_err() {
            break;
        }
    }
    // A layer (or a decompressed rootfs archive) is read back into a tree whose contents
    // point into the file: paths, hard links and placement rules on top of the reader.
    let file = candidate_fuzz::file_with(data).try_clone().expect("duplicate the input file");
    let _ = candidate::layer::read_tar("fuzz.tar", &Arc::new(file), 0);
});
