//! Channel records: the first byte chooses whether the rest is a whole envelope (read as a
//! record file is) or the statement of a record signed by the channel's key (so that the
//! predicate is read: channel, candidate, subject, sequence, links).
#![no_main]

use std::path::Path;

use candidate::channel::{parse_record, ChannelPolicy};
use candidate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let key = candidate_fuzz::key();
    let policy = ChannelPolicy {
        keys: vec![key.public.clone()],
        threshold: 1,
        requires: Vec::new(),
        attestations: Vec::new(),
        attestation_keys: Vec::new(),
        expires_after_days: None,
        system_tests: Vec::new(),
        rebuilds: 0,
        rebuilders: Vec::new(),
        budgets: None,
    };
    let file = Path::new("channels/nightly/00000001.json");
    if mode % 2 == 0 {
        let _ = parse_record(file, rest, "nightly", &policy);
    } else {
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, rest, std::slice::from_ref(key));
        let _ = parse_record(file, &envelope.to_json(), "nightly", &policy);
    }
});
