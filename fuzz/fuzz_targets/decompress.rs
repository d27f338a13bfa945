//! The compressed-stream decoders we wrap: the first byte chooses the sniffing decoder that
//! reads inputs (indexes, tarballs, layers: gzip, multi-stream xz, zstd, plain) or the one a
//! `.deb` member's name calls for (gzip, xz, zstd, bzip2, none); the rest is the stream.
#![no_main]

use candidate::compress;
use candidate::debian::deb::Compression;
use candidate::debian::unpack::member_decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else { return };
    let member = match mode % 6 {
        0 => None,
        1 => Some(Compression::Gzip),
        2 => Some(Compression::Xz),
        3 => Some(Compression::Zstd),
        4 => Some(Compression::Bzip2),
        _ => Some(Compression::None),
    };
    let decoded = match member {
        None => compress::decoder(stream).map(|(_, decoded)| decoded),
        Some(compression) => member_decoder(compression, stream),
    };
    if let Ok(decoded) = decoded {
        let _ = candidate_fuzz::drain(decoded);
    }
});
