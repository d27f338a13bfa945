//! DSSE envelopes (Dead Simple Signing Envelope, v1).
//!
//! A signature covers the *pre-authentication encoding* of the payload type and the payload
//! bytes, `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, never a re-serialisation of
//! a parsed payload: [`Envelope::verify`] checks the exact bytes carried in the envelope, and
//! only then may a caller parse them.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, PrivateKey, PublicKey};

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope is not valid DSSE JSON: {0}")]
    Malformed(String),
    #[error("the envelope's payload type is `{found}`, expected `{expected}`")]
    PayloadType { found: String, expected: String },
    #[error("the envelope carries no signature")]
    Unsigned,
    #[error("{valid} valid signature(s) by trusted keys, {threshold} required{}", describe_rejected(.rejected))]
    Threshold { valid: usize, threshold: usize, rejected: Vec<String> },
}

fn describe_rejected(rejected: &[String]) -> String {
    if rejected.is_empty() {
        String::new()
    } else {
        format!("; rejected: {}", rejected.join("; "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// The pre-authentication encoding that signatures cover.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// What a verified envelope vouches for.
#[derive(Debug)]
pub struct Verified {
    /// The exact payload bytes the signatures cover.
    pub payload: Vec<u8>,
    /// The distinct trusted keys whose signatures are valid.
    pub signers: BTreeSet<KeyId>,
}

impl Envelope {
    /// Signs `payload` with every key (one signature each).
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[PrivateKey]) -> Self {
        let message = pae(payload_type, payload);
        Envelope {
            payload: BASE64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: keys
                .iter()
                .map(|k| Signature { keyid: k.public.id.to_string(), sig: BASE64.encode(k.sign(&message)) })
                .collect(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))
    }

    /// Canonical JSON (sorted keys, no whitespace), as written next to a candidate.
    pub fn to_json(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("an envelope serialises");
        serde_json::to_vec(&value).expect("a JSON value serialises")
    }

    /// Checks that at least `threshold` distinct `trusted` keys signed this payload.
    pub fn verify(&self, expected_type: &str, trusted: &[PublicKey], threshold: usize) -> Result<Verified, DsseError> {
        if self.payload_type != expected_type {
            return Err(DsseError::PayloadType {
                found: self.payload_type.clone(),
                expected: expected_type.to_owned(),
            });
        }
        if self.signatures.is_empty() {
            return Err(DsseError::Unsigned);
        }
        let payload = BASE64.decode(&self.payload).map_err(|e| DsseError::Malformed(format!("payload: {e}")))?;
        let message = pae(&self.payload_type, &payload);
        let mut signers = BTreeSet::new();
        let mut rejected = Vec::new();
        for (i, signature) in self.signatures.iter().enumerate() {
            let Ok(sig) = BASE64.decode(&signature.sig) else {
                rejected.push(format!("signature {i} is not base64"));
                continue;
            };
            // The key id is a hint; a signature counts only for a trusted key it verifies under.
            match trusted.iter().find(|k| k.verify(&message, &sig)) {
                Some(key) => {
                    signers.insert(key.id);
                }
                // A signature naming a trusted key that fails is an invalid signature (an
                // altered payload or signature), not a stranger's: saying "untrusted key"
                // would send the operator hunting for a key problem.
                None => match trusted.iter().find(|k| k.id.to_string() == signature.keyid) {
                    Some(key) => rejected.push(format!(
                        "signature {i} by trusted key `{}` ({}) is invalid: it does not verify over this payload",
                        signature.keyid, key.origin
                    )),
                    None => {
                        rejected.push(format!("signature {i} (keyid `{}`) is not by a trusted key", signature.keyid))
                    }
                },
            }
        }
        if signers.len() < threshold.max(1) {
            return Err(DsseError::Threshold { valid: signers.len(), threshold: threshold.max(1), rejected });
        }
        Ok(Verified { payload, signers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_vector() {
        // From the DSSE protocol specification.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn thresholds_count_distinct_trusted_keys() {
        let a = PrivateKey::generate().unwrap();
        let b = PrivateKey::generate().unwrap();
        let stranger = PrivateKey::generate().unwrap();
        let trusted = [a.public.clone(), b.public.clone()];
        let both = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &[a, b]);
        assert_eq!(both.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 2).unwrap().signers.len(), 2);

        let mut doubled = both.clone();
        doubled.signatures[1] = doubled.signatures[0].clone();
        assert!(matches!(
            doubled.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 2),
            Err(DsseError::Threshold { valid: 1, .. })
        ));

        let foreign = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &[stranger]);
        assert!(matches!(
            foreign.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1),
            Err(DsseError::Threshold { valid: 0, .. })
        ));

        let mut tampered = both.clone();
        tampered.payload = BASE64.encode(b"{ }");
        assert!(tampered.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1).is_err());

        let mut unsigned = both;
        unsigned.signatures.clear();
        assert!(matches!(unsigned.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1), Err(DsseError::Unsigned)));
    }

    /// #16 wrong-reason refusal: a signature by a trusted key that does not verify (the
    /// payload or the signature altered) was reported as "not by a trusted key".
    #[test]
    fn a_bad_signature_by_a_trusted_key_is_reported_as_invalid() {
        let key = PrivateKey::generate().unwrap();
        let stranger = PrivateKey::generate().unwrap();
        let trusted = [key.public.clone()];
        let id = key.public.id.to_string();
        let signed = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &[key]);

        let mut tampered = signed.clone();
        tampered.payload = BASE64.encode(b"{ }");
        let err = tampered.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "0 valid signature(s) by trusted keys, 1 required; rejected: signature 0 by trusted key `{id}` ({}) is \
                 invalid: it does not verify over this payload",
                trusted[0].origin
            )
        );

        let mut flipped = signed;
        let mut sig = BASE64.decode(&flipped.signatures[0].sig).unwrap();
        sig[0] ^= 1;
        flipped.signatures[0].sig = BASE64.encode(sig);
        let err = flipped.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1).unwrap_err().to_string();
        assert!(err.contains("is invalid: it does not verify") && !err.contains("not by a trusted key"), "{err}");

        // A stranger's signature is still reported as such.
        let foreign = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &[stranger]);
        let err = foreign.verify(IN_TOTO_PAYLOAD_TYPE, &trusted, 1).unwrap_err().to_string();
        assert!(err.ends_with("is not by a trusted key"), "{err}");
    }
}
