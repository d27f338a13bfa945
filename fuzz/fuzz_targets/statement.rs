//! in-toto statements: the input is the payload of an envelope signed by a trusted key, so
//! that the statement is read as `verify` and `promote` read an attestation once its
//! signature checks (JSON, the subject naming the candidate).
#![no_main]

use candidate::channel::parse_attestation;
use candidate::digest::Digest;
use candidate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = candidate_fuzz::key();
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, data, std::slice::from_ref(key));
    let candidate = Digest::of(b"manifest.json");
    let _ = parse_attestation(&envelope.to_json(), &candidate, std::slice::from_ref(&key.public));
});
