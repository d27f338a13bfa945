//! DSSE envelopes: the JSON, then the checks before and around each signature (payload type,
//! base64 of payload and signatures, the threshold) against a trusted key.
#![no_main]

use candidate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::parse(data) else { return };
    let trusted = [candidate_fuzz::key().public.clone()];
    if envelope.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1).is_ok() {
        panic!("an envelope the fuzzer made verified under a key it never saw");
    }
    let _ = envelope.verify(IN_TOTO_PAYLOAD_TYPE, &[], 0);
    // What is written back is what was read.
    assert_eq!(Envelope::parse(&envelope.to_json()).expect("our JSON parses"), envelope);
});
