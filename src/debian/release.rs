//! `InRelease`: the signed root of an apt archive, verified against a pinned keyring.
//!
//! Everything the resolver believes about an archive hangs off this one file: it lists the
//! sha256 of every index (`main/binary-amd64/Packages.xz`, …), and each index lists the sha256
//! of every package. So the check here is the one that makes the rest trustworthy, and it is
//! strict — where apt or gpgv would accept something for compatibility, we refuse:
//!
//! * The input must be exactly one cleartext-signed message (RFC 9580 §7): nothing before
//!   `-----BEGIN PGP SIGNED MESSAGE-----`, nothing but whitespace after the signature block.
//!   Data outside the signed part is the classic way to make a verifier and a parser read
//!   different texts (apt's CVE-2013-1051 and CVE-2016-1252 family), and only the signed text
//!   is ever handed on.
//! * Carriage returns are refused. The signature covers the text with its line ends
//!   normalised to CRLF, so `a\rb`, `a\r\nb` and `a\nb` carry the same signature; refusing CR
//!   makes the bytes we parse the only reading of what was signed. Archives use LF.
//! * A signature counts only if it is by a key in the keyring: the primary key, or a subkey
//!   with a valid binding signature that allows signing (and a valid back-signature). Debian
//!   signs each `InRelease` with several keys and a keyring need not hold all of them, so a
//!   signature by an unknown key is ignored — but every signature by a *known* key must pass
//!   every check below, and at least one must exist. A known key that signs badly is a sign of
//!   tampering or of a broken archive, and either way we want to hear about it.
//! * Policy on the signature: the hash must not be MD5, SHA-1 or RIPEMD-160 (collisions are
//!   practical, or close); the key must not be DSA (FIPS 186-5 withdrew it, and Debian never
//!   signed archives with it after 2014) nor RSA under 2048 bits; the signature must be a text
//!   signature with a creation time.
//! * The signing key (and, for a subkey, its primary) must be neither expired nor revoked at the
//!   signature's creation time, and — when the caller passes the current time — not now either.
//!   A revocation with reason "key compromised" or no reason is a *hard* revocation and applies
//!   to all time (RFC 9580 §5.2.3.31); a "superseded" or "retired" revocation applies from its
//!   creation on.
//!
//! Key validity is computed from the newest valid self-signature (user ID certification or
//! direct-key signature) for a primary key and the newest valid binding signature for a
//! subkey; that is the "latest self-signature wins" rule gpg applies, without gpg's
//! refinements for self-signatures made after the time being checked (they do not arise in
//! archive keyrings, which are rebuilt, not edited in place).
//!
//! The verified text is then read as one deb822 stanza ([`Release`]), through the strict parser
//! in [`super::control`]. [`Release::check_freshness`] is the replay defence: an attacker who
//! cannot forge a signature can still serve an old, correctly signed `InRelease`, and only
//! `Valid-Until` (and a `Date` not far in the future) bounds how old.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use pgp::composed::cleartext::CleartextSignedMessage;
use pgp::composed::signed_key::{from_reader_many, PublicOrSecret};
use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{RevocationCode, Signature, SignatureType};
use pgp::types::{PublicKeyTrait, PublicParams, Tag};

use super::control::{self, ControlError, Dialect};
use crate::digest::Digest;

const BEGIN_SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const END_SIGNATURE: &str = "-----END PGP SIGNATURE-----";

/// The smallest RSA modulus we accept, in bits (NIST SP 800-131A; Debian's archive keys are
/// RSA-4096 or ed25519).
pub const MIN_RSA_BITS: u32 = 2048;

/// Why a keyring or an `InRelease` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("failed to read keyring `{}`", path.display())]
    KeyringRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("keyring `{}` is not a valid OpenPGP public keyring", path.display())]
    KeyringParse {
        path: PathBuf,
        #[source]
        source: pgp::errors::Error,
    },
    #[error(
        "keyring `{}` holds a secret key ({fingerprint})",
        path.display()
    )]
    KeyringSecret { path: PathBuf, fingerprint: String },
    #[error("keyring `{}` holds no keys", path.display())]
    KeyringEmpty { path: PathBuf },

    #[error("`InRelease` is not a cleartext-signed message: it has no `{BEGIN_SIGNED}` line")]
    NotClearsigned,
    #[error("unsigned data around the signed part: {bytes} bytes {place} the signed message")]
    UnsignedData { place: &'static str, bytes: usize },
    #[error("`InRelease` contains a carriage return; the signed text must use LF line endings")]
    CarriageReturn,
    #[error("`InRelease` is not a well-formed cleartext-signed message")]
    Malformed(#[source] pgp::errors::Error),
    #[error("`InRelease` carries no signature")]
    NoSignature,
    #[error("the signed text of `InRelease` is not UTF-8")]
    NotUtf8,
    #[error("no signature is by a key in the keyring (signed by: {})", issuers.join(", "))]
    UnknownSigner { issuers: Vec<String> },
    #[error("signature by key {key} does not verify; the signed text or the signature was altered")]
    BadSignature {
        key: String,
        #[source]
        source: pgp::errors::Error,
    },
    #[error("signature by key {key} is a {typ:?} signature; a cleartext signature must be a text signature")]
    NotTextSignature { key: String, typ: Option<SignatureType> },
    #[error("signature by key {key} uses the {hash} hash algorithm, which is too weak (MD5, SHA-1 and RIPEMD-160 are refused)")]
    WeakHash { key: String, hash: String },
    #[error("signature by key {key} was made with a DSA key; DSA keys are refused")]
    DsaKey { key: String },
    #[error("signature by key {key} was made with a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required")]
    WeakRsaKey { key: String, bits: u32 },
    #[error("signature by key {key} was made with a {algorithm:?} key, which cannot make archive signatures")]
    UnsupportedKeyAlgorithm { key: String, algorithm: PublicKeyAlgorithm },
    #[error("signature by key {key} has no creation time")]
    NoCreationTime { key: String },
    #[error("signature by key {key} expired at {expired} (unix time), before {at} ({when})")]
    SignatureExpired { key: String, expired: i64, at: i64, when: &'static str },
    #[error("key {key} is not valid for signing: {reason}")]
    NotSigningKey { key: String, reason: &'static str },
    #[error("key {key} was created at {created} (unix time), after {at} ({when})")]
    KeyNotYetValid { key: String, created: i64, at: i64, when: &'static str },
    #[error("key {key} expired at {expired} (unix time), before {at} ({when})")]
    KeyExpired { key: String, expired: i64, at: i64, when: &'static str },
    #[error("key {key} is revoked (since {revoked}, reason: {reason}), at {at} ({when})")]
    KeyRevoked { key: String, revoked: i64, reason: String, at: i64, when: &'static str },

    #[error("the signed text is not a valid `Release` stanza")]
    Control(#[from] ControlError),
    #[error("field `{field}`: `{value}` is not an RFC 2822 date")]
    BadDate { field: &'static str, value: String },
    #[error("`SHA256` line `{line}` is not `<sha256> <size> <path>`")]
    BadSha256Line { line: String },
    #[error("`SHA256` lists `{path}` twice")]
    DuplicatePath { path: String },
    #[error("`Release` has no `SHA256` entries; archives without sha256 index digests are refused")]
    NoSha256,
    #[error("`Release` expired: `Valid-Until` is {valid_until} (unix time), now is {now}")]
    Expired { valid_until: i64, now: i64 },
    #[error("`Release` is dated {date} (unix time), in the future (now is {now}, allowed skew {skew}s)")]
    FromTheFuture { date: i64, now: i64, skew: i64 },
}

impl crate::error::Hint for ReleaseError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        let hint = match self {
            ReleaseError::KeyringSecret { .. } => "export only the public part, with `gpg --export`",
            ReleaseError::Expired { .. } => "the mirror is stale, or someone is replaying an old `InRelease`",
            ReleaseError::FromTheFuture { .. } => "check the system clock",
            _ => return Vec::new(),
        };
        vec![hint.into()]
    }
}

/// The public keys an archive may be signed with: one or more OpenPGP certificates.
#[derive(Debug, Clone)]
pub struct Keyring {
    certs: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a keyring file: binary (`gpg --export`, Debian's `*.gpg` keyrings) or armored
    /// (`*.asc`), holding one or more certificates. Secret keys are refused rather than
    /// quietly stripped: a keyring that holds one was assembled by mistake.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReleaseError> {
        let path = path.as_ref();
        let bytes = fs_err::read(path).map_err(|source| ReleaseError::KeyringRead { path: path.to_owned(), source })?;
        Self::parse(path, &bytes)
    }

    /// Reads a keyring already read from `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ReleaseError> {
        Self::from_bytes(bytes).map_err(|e| match e {
            KeyringError::Parse(source) => ReleaseError::KeyringParse { path: path.to_owned(), source },
            KeyringError::Secret(fingerprint) => ReleaseError::KeyringSecret { path: path.to_owned(), fingerprint },
            KeyringError::Empty => ReleaseError::KeyringEmpty { path: path.to_owned() },
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        let (items, _headers) = from_reader_many(bytes).map_err(KeyringError::Parse)?;
        let mut certs = Vec::new();
        for item in items {
            match item.map_err(KeyringError::Parse)? {
                PublicOrSecret::Public(cert) => certs.push(cert),
                PublicOrSecret::Secret(key) => {
                    return Err(KeyringError::Secret(fingerprint(&key.primary_key)));
                }
            }
        }
        if certs.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { certs })
    }

    /// The primary-key fingerprints, upper-case hex, in file order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.iter().map(|c| fingerprint(&c.primary_key)).collect()
    }
}

enum KeyringError {
    Parse(pgp::errors::Error),
    Secret(String),
    Empty,
}

/// A verified `InRelease`: the signed text and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Exactly the text the signature covers (dash-escaping undone, trailing spaces of each
    /// line removed as RFC 9580 prescribes), with LF line ends and no final newline.
    pub text: String,
    /// Fingerprint of the key that made the (first) accepted signature; a subkey's own.
    pub signing_key: String,
    /// Fingerprint of that key's primary key: the certificate in the keyring.
    pub primary_key: String,
    /// When that signature was made, in unix seconds.
    pub signed_at: i64,
}

impl Verified {
    /// Parses the signed text as a `Release` stanza.
    pub fn release(&self) -> Result<Release, ReleaseError> {
        Release::parse(&self.text)
    }
}

/// Verifies an `InRelease` file against `keyring` (see the module docs for the rules), checking
/// key expiry and revocation at each signature's creation time and, if given, at `now` (unix
/// seconds). Returns only the signed text.
pub fn verify_inrelease(bytes: &[u8], keyring: &Keyring, now: Option<i64>) -> Result<Verified, ReleaseError> {
    let message = &bytes[..check_framing(bytes)?];
    let (message, _headers) = CleartextSignedMessage::from_armor(message).map_err(ReleaseError::Malformed)?;
    if message.signatures().is_empty() {
        return Err(ReleaseError::NoSignature);
    }
    // What the signatures cover: CRLF line ends by definition. We refused CR in the input, so
    // every CRLF here is a line end we wrote as LF, and turning them back is exact.
    let signed = message.signed_text();

    let mut accepted = None;
    let mut unknown = BTreeSet::new();
    for sig in message.signatures().iter().map(|s| &s.signature) {
        match find_key(keyring, sig) {
            Some(key) => {
                let signed_at = check_signature(&key, sig, signed.as_bytes(), now)?;
                accepted.get_or_insert((key, signed_at));
            }
            None => {
                unknown.insert(describe_issuer(sig));
            }
        }
    }
    let Some((key, signed_at)) = accepted else {
        return Err(ReleaseError::UnknownSigner { issuers: unknown.into_iter().collect() });
    };
    Ok(Verified {
        text: signed.replace("\r\n", "\n"),
        signing_key: key.fingerprint(),
        primary_key: fingerprint(&key.cert.primary_key),
        signed_at,
    })
}

/// Refuses CR anywhere and anything but whitespace outside the one signed message; returns the
/// length of the message (up to and including the newline after its END line). The pgp crate
/// checks the same things, but with messages that do not say what was wrong — and its trailing
/// data check (0.15.0) also refuses trailing whitespace, so it is given only the message.
fn check_framing(bytes: &[u8]) -> Result<usize, ReleaseError> {
    if bytes.contains(&b'\r') {
        return Err(ReleaseError::CarriageReturn);
    }
    let begin = format!("{BEGIN_SIGNED}\n");
    let start = find(bytes, begin.as_bytes()).ok_or(ReleaseError::NotClearsigned)?;
    if start != 0 {
        return Err(ReleaseError::UnsignedData { place: "before", bytes: start });
    }
    // The signature block ends at the first END line: the cleartext cannot contain one (its
    // lines starting with `-` are dash-escaped) and armored base64 cannot either.
    let end_line = format!("\n{END_SIGNATURE}");
    let Some(pos) = find(bytes, end_line.as_bytes()) else {
        // No END line at all: the parser reports the truncated message.
        return Ok(bytes.len());
    };
    let end = pos + end_line.len();
    let rest = &bytes[end..];
    if let Some(first) = rest.iter().position(|b| !b.is_ascii_whitespace()) {
        return Err(ReleaseError::UnsignedData { place: "after", bytes: rest.len() - first });
    }
    Ok(if rest.first() == Some(&b'\n') { end + 1 } else { end })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A key in the keyring: a certificate's primary key, or one of its subkeys.
#[derive(Clone, Copy)]
struct Key<'a> {
    cert: &'a SignedPublicKey,
    sub: Option<&'a SignedPublicSubKey>,
}

impl Key<'_> {
    fn fingerprint(&self) -> String {
        match self.sub {
            Some(sub) => fingerprint(&sub.key),
            None => fingerprint(&self.cert.primary_key),
        }
    }
}

fn fingerprint(key: &impl PublicKeyTrait) -> String {
    hex::encode_upper(key.fingerprint().as_bytes())
}

/// The key a signature names as its issuer (by fingerprint, else by 64-bit key id).
fn find_key<'a>(keyring: &'a Keyring, sig: &Signature) -> Option<Key<'a>> {
    let fingerprints = sig.issuer_fingerprint();
    let ids = sig.issuer();
    let matches = |k: &dyn Fn() -> (pgp::types::Fingerprint, pgp::types::KeyId)| {
        let (fingerprint, id) = k();
        if fingerprints.is_empty() {
            ids.contains(&&id)
        } else {
            fingerprints.contains(&&fingerprint)
        }
    };
    keyring.certs.iter().find_map(|cert| {
        if matches(&|| (cert.primary_key.fingerprint(), cert.primary_key.key_id())) {
            return Some(Key { cert, sub: None });
        }
        cert.public_subkeys
            .iter()
            .find(|s| matches(&|| (s.key.fingerprint(), s.key.key_id())))
            .map(|sub| Key { cert, sub: Some(sub) })
    })
}

fn describe_issuer(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        hex::encode_upper(fp.as_bytes())
    } else if let Some(id) = sig.issuer().first() {
        hex::encode_upper(id.as_ref())
    } else {
        "a signature without an issuer".to_owned()
    }
}

/// Checks one signature by a known key; returns its creation time.
fn check_signature(key: &Key<'_>, sig: &Signature, signed: &[u8], now: Option<i64>) -> Result<i64, ReleaseError> {
    let id = key.fingerprint();
    let hash = Some(sig.hash_alg());
    if !matches!(
        hash,
        Some(
            HashAlgorithm::SHA2_256
                | HashAlgorithm::SHA2_384
                | HashAlgorithm::SHA2_512
                | HashAlgorithm::SHA2_224
                | HashAlgorithm::SHA3_256
                | HashAlgorithm::SHA3_512
        )
    ) {
        let hash = hash.map_or_else(|| "unknown".to_owned(), |h| format!("{h:?}"));
        return Err(ReleaseError::WeakHash { key: id, hash });
    }
    match key.sub {
        Some(sub) => check_key_strength(sub.key.public_params(), sub.key.algorithm(), &id)?,
        None => check_key_strength(key.cert.primary_key.public_params(), key.cert.primary_key.algorithm(), &id)?,
    }
    if sig.typ() != SignatureType::Text {
        return Err(ReleaseError::NotTextSignature { key: id, typ: Some(sig.typ()) });
    }
    let verified = match key.sub {
        Some(sub) => sig.verify(&sub.key, signed),
        None => sig.verify(&key.cert.primary_key, signed),
    };
    verified.map_err(|source| ReleaseError::BadSignature { key: id.clone(), source })?;

    let created = sig.created().ok_or_else(|| ReleaseError::NoCreationTime { key: id.clone() })?;
    let created = created.timestamp();
    let mut times = vec![(created, "at the signature's creation")];
    times.extend(now.map(|now| (now, "now")));
    if let (Some(lifetime), Some(now)) = (sig.signature_expiration_time(), now) {
        let expired = created + lifetime.num_seconds();
        if lifetime.num_seconds() != 0 && expired <= now {
            return Err(ReleaseError::SignatureExpired { key: id, expired, at: now, when: "now" });
        }
    }

    // The primary key must be valid for a subkey's signature to count, and its own validity
    // (not the subkey's) is what a primary-key signature needs.
    let primary = primary_validity(key.cert)?;
    let subkey = key.sub.map(|sub| subkey_validity(key.cert, sub)).transpose()?;
    let signer = subkey.as_ref().unwrap_or(&primary);
    if !signer.can_sign {
        return Err(ReleaseError::NotSigningKey { key: id, reason: "its self-signature does not allow signing" });
    }
    for &(at, when) in &times {
        primary.check(at, when)?;
        if let Some(subkey) = &subkey {
            subkey.check(at, when)?;
        }
    }
    Ok(created)
}

fn check_key_strength(params: &PublicParams, algorithm: PublicKeyAlgorithm, id: &str) -> Result<(), ReleaseError> {
    match params {
        PublicParams::RSA { n, .. } => {
            let n = n.as_bytes();
            let skip = n.iter().take_while(|&&b| b == 0).count();
            let bits = match n.get(skip) {
                Some(first) => (n.len() - skip - 1) as u32 * 8 + (8 - first.leading_zeros()),
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(ReleaseError::WeakRsaKey { key: id.to_owned(), bits });
            }
            Ok(())
        }
        PublicParams::DSA { .. } => Err(ReleaseError::DsaKey { key: id.to_owned() }),
        PublicParams::ECDSA(_) | PublicParams::EdDSALegacy { .. } | PublicParams::Ed25519 { .. } => Ok(()),
        _ => Err(ReleaseError::UnsupportedKeyAlgorithm { key: id.to_owned(), algorithm }),
    }
}

/// What the self-signatures say about one key.
struct Validity {
    fingerprint: String,
    created: i64,
    expires: Option<i64>,
    can_sign: bool,
    /// (since, hard, reason)
    revocations: Vec<(i64, bool, String)>,
}

impl Validity {
    fn check(&self, at: i64, when: &'static str) -> Result<(), ReleaseError> {
        let key = || self.fingerprint.clone();
        if at < self.created {
            return Err(ReleaseError::KeyNotYetValid { key: key(), created: self.created, at, when });
        }
        if let Some(expired) = self.expires.filter(|&e| e <= at) {
            return Err(ReleaseError::KeyExpired { key: key(), expired, at, when });
        }
        if let Some((revoked, _, reason)) = self.revocations.iter().find(|(since, hard, _)| *hard || *since <= at) {
            return Err(ReleaseError::KeyRevoked { key: key(), revoked: *revoked, reason: reason.clone(), at, when });
        }
        Ok(())
    }
}

fn sig_time(sig: &Signature) -> i64 {
    sig.created().map_or(0, |t| t.timestamp())
}

fn validity(key: &impl PublicKeyTrait, newest: &Signature, revocations: Vec<&Signature>) -> Validity {
    let created = key.created_at().timestamp();
    Validity {
        fingerprint: fingerprint(key),
        created,
        // A key expiration time is relative to the key's creation; zero means "never".
        expires: newest.key_expiration_time().map(|d| d.num_seconds()).filter(|&d| d != 0).map(|d| created + d),
        can_sign: newest.key_flags().sign(),
        revocations: revocations
            .into_iter()
            .map(|r| {
                let code = r.revocation_reason_code();
                // RFC 9580 §5.2.3.31: only "superseded" and "retired" are soft.
                let hard = !matches!(code, Some(RevocationCode::KeySuperseded | RevocationCode::KeyRetired));
                let reason = match (code, r.revocation_reason_string()) {
                    (Some(code), Some(text)) if !text.is_empty() => {
                        format!("{code:?}: {}", String::from_utf8_lossy(text.as_ref()))
                    }
                    (Some(code), _) => format!("{code:?}"),
                    (None, _) => "none given".to_owned(),
                };
                (sig_time(r), hard, reason)
            })
            .collect(),
    }
}

fn primary_validity(cert: &SignedPublicKey) -> Result<Validity, ReleaseError> {
    let primary = &cert.primary_key;
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |sig| {
            matches!(
                sig.typ(),
                SignatureType::CertGeneric
                    | SignatureType::CertPersona
                    | SignatureType::CertCasual
                    | SignatureType::CertPositive
            ) && sig.verify_certification(primary, Tag::UserId, &user.id).is_ok()
        })
    });
    let direct = cert.details.direct_signatures.iter().filter(|sig| sig.verify_key(primary).is_ok());
    let newest = certifications.chain(direct).max_by_key(|sig| sig_time(sig)).ok_or_else(|| {
        ReleaseError::NotSigningKey { key: fingerprint(primary), reason: "it has no valid self-signature" }
    })?;
    let revocations = cert
        .details
        .revocation_signatures
        .iter()
        .filter(|sig| sig.typ() == SignatureType::KeyRevocation && sig.verify_key(primary).is_ok())
        .collect();
    Ok(validity(primary, newest, revocations))
}

fn subkey_validity(cert: &SignedPublicKey, sub: &SignedPublicSubKey) -> Result<Validity, ReleaseError> {
    let primary = &cert.primary_key;
    let newest = sub
        .signatures
        .iter()
        .filter(|sig| {
            sig.typ() == SignatureType::SubkeyBinding
                && sig.verify_key_binding(primary, &sub.key).is_ok()
                // A signing subkey must sign the primary back, or anyone could bind our
                // subkey to their certificate (RFC 9580 §5.2.1).
                && (!sig.key_flags().sign()
                    || sig.embedded_signature().is_some_and(|back| back.verify_backwards_key_binding(&sub.key, primary).is_ok()))
        })
        .max_by_key(|sig| sig_time(sig))
        .ok_or_else(|| ReleaseError::NotSigningKey {
            key: fingerprint(&sub.key),
            reason: "it has no valid binding signature from its primary key",
        })?;
    let revocations = sub
        .signatures
        .iter()
        .filter(|sig| sig.typ() == SignatureType::SubkeyRevocation && sig.verify_key_binding(primary, &sub.key).is_ok())
        .collect();
    Ok(validity(&sub.key, newest, revocations))
}

/// The fields of a `Release` stanza that the archive reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// `Date`, in unix seconds.
    pub date: i64,
    /// `Valid-Until`, in unix seconds.
    pub valid_until: Option<i64>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// The `SHA256` entries as written: (path relative to the `Release` file, size, digest).
    pub sha256: Vec<(String, u64, Digest)>,
}

impl Release {
    /// Parses the (already verified) text of a `Release` file.
    pub fn parse(text: &str) -> Result<Self, ReleaseError> {
        let stanza = control::parse_one(text, Dialect::Archive)?;
        let owned = |name: &str| stanza.get(name).map(str::to_owned);
        let words =
            |name: &str| stanza.get(name).map_or_else(Vec::new, |v| v.split_whitespace().map(str::to_owned).collect());
        let date = stanza.require("Date")?;
        let date =
            parse_rfc2822(date).ok_or_else(|| ReleaseError::BadDate { field: "Date", value: date.to_owned() })?;
        let valid_until = stanza
            .get("Valid-Until")
            .map(|v| {
                parse_rfc2822(v).ok_or_else(|| ReleaseError::BadDate { field: "Valid-Until", value: v.to_owned() })
            })
            .transpose()?;

        let mut sha256 = Vec::new();
        let mut seen = BTreeSet::new();
        if let Some(field) = stanza.field("SHA256") {
            // The first line (after `SHA256:`) is empty; each continuation line is one file.
            for line in field.lines().filter(|l| !l.is_empty()) {
                let bad = || ReleaseError::BadSha256Line { line: line.to_owned() };
                let [digest, size, path] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                    return Err(bad());
                };
                let digest = Digest::from_hex(digest).map_err(|_| bad())?;
                // `u64::from_str` accepts a leading `+`; a size is digits only.
                if !size.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let size = size.parse::<u64>().map_err(|_| bad())?;
                if !seen.insert(path) {
                    return Err(ReleaseError::DuplicatePath { path: path.to_owned() });
                }
                sha256.push((path.to_owned(), size, digest));
            }
        }
        if sha256.is_empty() {
            return Err(ReleaseError::NoSha256);
        }
        Ok(Release {
            origin: owned("Origin"),
            label: owned("Label"),
            suite: owned("Suite"),
            codename: owned("Codename"),
            date,
            valid_until,
            architectures: words("Architectures"),
            components: words("Components"),
            sha256,
        })
    }

    /// Refuses a `Release` past its `Valid-Until`, or dated more than `skew_seconds` after
    /// `now` (a clock that far off makes the expiry check meaningless).
    pub fn check_freshness(&self, now: i64, skew_seconds: i64) -> Result<(), ReleaseError> {
        if let Some(valid_until) = self.valid_until.filter(|&v| v < now) {
            return Err(ReleaseError::Expired { valid_until, now });
        }
        if self.date > now.saturating_add(skew_seconds) {
            return Err(ReleaseError::FromTheFuture { date: self.date, now, skew: skew_seconds });
        }
        Ok(())
    }

    /// The size and sha256 the `Release` file lists for `path` (e.g. `main/binary-amd64/Packages.xz`).
    pub fn file(&self, path: &str) -> Option<(u64, Digest)> {
        self.sha256.iter().find(|(p, _, _)| p == path).map(|&(_, size, digest)| (size, digest))
    }
}

/// Parses the RFC 2822 dates `Release` files carry (`Sat, 10 Aug 2024 09:15:40 UTC`) into unix
/// seconds. Accepted: an optional weekday (which must match the date), a one- or two-digit day,
/// an English month abbreviation, a four-digit year, `HH:MM:SS`, and a zone of `UTC`, `GMT`,
/// `Z` or `±hhmm`. That covers what dak, reprepro and aptly write; apt accepts more, but a
/// date we might misread is better refused.
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday

    let (weekday, rest) = match s.split_once(", ") {
        Some((w, rest)) => (Some(w), rest),
        None => (None, s),
    };
    let [day, month, year, time, zone] = rest.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    let digits =
        |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(day, 1, 2) || !digits(year, 4, 4) {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let month = MONTHS.iter().position(|&m| m == month)? as i64 + 1;
    let days_in_month = match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    let [h, m, sec] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    if ![h, m, sec].iter().all(|p| digits(p, 2, 2)) {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    // 60 is a leap second, which unix time folds into the next one.
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        _ => {
            let (sign, hhmm) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            if !digits(hhmm, 4, 4) {
                return None;
            }
            let (oh, om): (i64, i64) = (hhmm[..2].parse().ok()?, hhmm[2..].parse().ok()?);
            if om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    if let Some(weekday) = weekday {
        if WEEKDAYS[days.rem_euclid(7) as usize] != weekday {
            return None;
        }
    }
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::OnceLock;

    use super::*;

    const RELEASE: &str = "\
Origin: Test
Label: Test Archive
Suite: stable
Codename: trixie
Date: Sat, 10 Aug 2024 09:15:40 UTC
Valid-Until: Sat, 17 Aug 2024 09:15:40 UTC
Architectures: amd64 arm64
Components: main contrib
Description: a test archive
SHA256:
 0b0e8c7f6a2bd0a3b8e4e6a3a2f3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5 1234 main/binary-amd64/Packages
 1111111111111111111111111111111111111111111111111111111111111111  567 main/binary-amd64/Packages.xz
";

    /// Keys, keyrings and signed messages made once with gpg, shared by the tests (key
    /// generation from a parameter file is fast; gpg's agent start-up is not).
    struct Fixture {
        _dir: tempfile::TempDir,
        keyring: PathBuf,
        armored: PathBuf,
        secret: PathBuf,
        good: Vec<u8>,
        sha1: Vec<u8>,
        other: Vec<u8>,
        expired: Vec<u8>,
        revoked: Vec<u8>,
        rsa1024: Vec<u8>,
        dsa: Vec<u8>,
    }

    fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The keys and signatures gpg made, or `None` (a skip, under CI a failure) without gpg:
    /// checked at every call, so each test that skips says so.
    fn fixture() -> Option<&'static Fixture> {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        crate::testing::tool("gpg", "gnupg").then(|| FIXTURE.get_or_init(make_fixture))
    }

    fn make_fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        fs_err::create_dir(&home).unwrap();
        fs_err::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let params = dir.path().join("params");
        fs_err::write(
            &params,
            "%no-protection\n\
             Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: cert\n\
             Subkey-Type: eddsa\nSubkey-Curve: ed25519\nSubkey-Usage: sign\n\
             Name-Real: Archive\nName-Email: archive@test\nExpire-Date: 0\n%commit\n\
             Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Email: other@test\nExpire-Date: 0\n%commit\n\
             Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Email: revoked@test\nExpire-Date: 0\n%commit\n\
             Key-Type: RSA\nKey-Length: 1024\nKey-Usage: sign\nName-Email: rsa1024@test\nExpire-Date: 0\n%commit\n\
             Key-Type: DSA\nKey-Length: 1024\nKey-Usage: sign\nName-Email: dsa@test\nExpire-Date: 0\n%commit\n",
        )
        .unwrap();
        gpg(&home, &["--gen-key", params.to_str().unwrap()]);
        // Made on 2020-01-01 (gpg refuses an expiry date in the past), expired 150 days later.
        let expired = dir.path().join("expired-params");
        fs_err::write(
            &expired,
            "%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Email: expired@test\n\
             Expire-Date: 150d\n%commit\n",
        )
        .unwrap();
        gpg(&home, &["--faked-system-time", "20200101T000000!", "--gen-key", expired.to_str().unwrap()]);
        let release = dir.path().join("Release");
        fs_err::write(&release, RELEASE).unwrap();
        let sign = |user: &str, extra: &[&str]| {
            let mut args = vec!["--local-user", user, "--digest-algo", "SHA512"];
            args.extend(extra);
            args.extend(["--clearsign", "--output", "-", release.to_str().unwrap()]);
            gpg(&home, &args)
        };
        let good = sign("archive@test", &[]);
        let sha1 = sign("archive@test", &["--digest-algo", "SHA1", "--allow-weak-digest-algos"]);
        let other = sign("other@test", &[]);
        let expired = sign("expired@test", &["--faked-system-time", "20200301T000000!"]);
        let revoked = sign("revoked@test", &[]);
        let rsa1024 = sign("rsa1024@test", &[]);
        let dsa = sign("dsa@test", &[]);

        // Revoke `revoked@test` with the certificate gpg made when it generated the key.
        let colons = String::from_utf8(gpg(&home, &["--with-colons", "--list-keys", "revoked@test"])).unwrap();
        let fpr = colons.lines().find_map(|l| l.strip_prefix("fpr:::::::::")).unwrap().trim_end_matches(':');
        let cert = fs_err::read_to_string(home.join(format!("openpgp-revocs.d/{fpr}.rev"))).unwrap();
        let cert_path = dir.path().join("revocation.asc");
        fs_err::write(&cert_path, cert.replace(":-----BEGIN", "-----BEGIN")).unwrap();
        gpg(&home, &["--import", cert_path.to_str().unwrap()]);

        let in_keyring = ["archive@test", "expired@test", "revoked@test", "rsa1024@test", "dsa@test"];
        let keyring = dir.path().join("keyring.gpg");
        fs_err::write(&keyring, gpg(&home, &[&["--export"][..], &in_keyring].concat())).unwrap();
        let armored = dir.path().join("keyring.asc");
        fs_err::write(&armored, gpg(&home, &["--armor", "--export", "archive@test"])).unwrap();
        let secret = dir.path().join("secret.gpg");
        fs_err::write(&secret, gpg(&home, &["--export-secret-keys", "archive@test"])).unwrap();
        // Stop the agent this GNUPGHOME started; the directory is about to go.
        let _ = Command::new("gpgconf").env("GNUPGHOME", &home).args(["--kill", "gpg-agent"]).status();
        Fixture { _dir: dir, keyring, armored, secret, good, sha1, other, expired, revoked, rsa1024, dsa }
    }

    fn verify(f: &Fixture, bytes: &[u8], now: Option<i64>) -> Result<Verified, ReleaseError> {
        verify_inrelease(bytes, &Keyring::load(&f.keyring).unwrap(), now)
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[test]
    fn verifies_and_parses_a_signed_release() {
        let Some(f) = fixture() else { return };
        for keyring in [&f.keyring, &f.armored] {
            let keyring = Keyring::load(keyring).unwrap();
            let verified = verify_inrelease(&f.good, &keyring, Some(now())).unwrap();
            assert_eq!(verified.text, RELEASE.trim_end_matches('\n'));
            // Signed by the subkey, which is not the certificate's primary key.
            assert_ne!(verified.signing_key, verified.primary_key);
            assert!(keyring.fingerprints().contains(&verified.primary_key));
            assert!((verified.signed_at - now()).abs() < 3600);

            let release = verified.release().unwrap();
            assert_eq!(release.origin.as_deref(), Some("Test"));
            assert_eq!(release.label.as_deref(), Some("Test Archive"));
            assert_eq!(release.suite.as_deref(), Some("stable"));
            assert_eq!(release.codename.as_deref(), Some("trixie"));
            assert_eq!(release.date, 1_723_281_340);
            assert_eq!(release.valid_until, Some(1_723_281_340 + 7 * 86_400));
            assert_eq!(release.architectures, ["amd64", "arm64"]);
            assert_eq!(release.components, ["main", "contrib"]);
            assert_eq!(release.sha256.len(), 2);
            assert_eq!(
                release.file("main/binary-amd64/Packages.xz"),
                Some((567, Digest::from_hex(&"1".repeat(64)).unwrap()))
            );
            assert_eq!(release.file("main/binary-amd64/Packages.gz"), None);
        }
    }

    #[test]
    fn trailing_whitespace_is_allowed() {
        let Some(f) = fixture() else { return };
        let bytes = [&f.good[..], b"\n\n \t\n"].concat();
        verify(f, &bytes, None).unwrap();
    }

    #[test]
    fn tampered_text_is_refused() {
        let Some(f) = fixture() else { return };
        let text = String::from_utf8(f.good.clone()).unwrap();
        let tampered = text.replace("Suite: stable", "Suite: stablf");
        assert_ne!(text, tampered);
        let err = verify(f, tampered.as_bytes(), None).unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn unsigned_data_around_the_signed_part_is_refused() {
        let Some(f) = fixture() else { return };
        let cases: [(Vec<u8>, &str); 4] = [
            ([&f.good[..], b"Suite: evil\n"].concat(), "after"),
            ([b"Suite: evil\n\n", &f.good[..]].concat(), "before"),
            ([b"\n", &f.good[..]].concat(), "before"),
            // A second, validly signed message after the first.
            ([&f.good[..], &f.good[..]].concat(), "after"),
        ];
        for (bytes, place) in cases {
            let err = verify(f, &bytes, None).unwrap_err();
            assert!(matches!(err, ReleaseError::UnsignedData { place: p, .. } if p == place), "{err}");
            assert!(err.to_string().starts_with("unsigned data around the signed part"), "{err}");
        }
    }

    #[test]
    fn carriage_returns_are_refused() {
        let Some(f) = fixture() else { return };
        let text = String::from_utf8(f.good.clone()).unwrap().replace("Suite: stable\n", "Suite: stable\r\n");
        assert!(matches!(verify(f, text.as_bytes(), None), Err(ReleaseError::CarriageReturn)));
    }

    #[test]
    fn unknown_signer_is_refused() {
        let Some(f) = fixture() else { return };
        let err = verify(f, &f.other, None).unwrap_err();
        assert!(matches!(&err, ReleaseError::UnknownSigner { issuers } if issuers.len() == 1), "{err}");
    }

    #[test]
    fn weak_hashes_and_keys_are_refused() {
        let Some(f) = fixture() else { return };
        let err = verify(f, &f.sha1, None).unwrap_err();
        assert!(matches!(&err, ReleaseError::WeakHash { hash, .. } if hash == "SHA1"), "{err}");
        let err = verify(f, &f.rsa1024, None).unwrap_err();
        assert!(matches!(err, ReleaseError::WeakRsaKey { bits: 1024, .. }), "{err}");
        let err = verify(f, &f.dsa, None).unwrap_err();
        assert!(matches!(err, ReleaseError::DsaKey { .. }), "{err}");
    }

    #[test]
    fn expired_keys_are_refused_now() {
        let Some(f) = fixture() else { return };
        // Valid when it signed (2020-03-01), expired since 2020-06-01.
        assert!(verify(f, &f.expired, None).is_ok());
        let err = verify(f, &f.expired, Some(now())).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyExpired { when: "now", .. }), "{err}");
        // Checking "now" as a date inside the key's lifetime passes.
        assert!(verify(f, &f.expired, Some(1_583_020_800 + 86_400)).is_ok());
    }

    #[test]
    fn revoked_keys_are_refused() {
        let Some(f) = fixture() else { return };
        // gpg's generated revocation certificate gives no reason: a hard revocation, which
        // applies even to signatures made before it.
        let err = verify(f, &f.revoked, None).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyRevoked { .. }), "{err}");
    }

    #[test]
    fn keyring_errors_name_the_file() {
        let Some(f) = fixture() else { return };
        let missing = f.keyring.with_file_name("missing.gpg");
        let err = Keyring::load(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.gpg"), "{err}");
        let garbage = f.keyring.with_file_name("garbage.gpg");
        fs_err::write(&garbage, b"this is not a keyring\n").unwrap();
        let err = Keyring::load(&garbage).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyringParse { .. } | ReleaseError::KeyringEmpty { .. }), "{err}");
        assert!(err.to_string().contains("garbage.gpg"), "{err}");
        let err = Keyring::load(&f.secret).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyringSecret { .. }), "{err}");
    }

    #[test]
    fn not_clearsigned_is_refused() {
        let Some(f) = fixture() else { return };
        assert!(matches!(verify(f, RELEASE.as_bytes(), None), Err(ReleaseError::NotClearsigned)));
    }

    #[test]
    fn rfc2822_dates() {
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_rfc2822("Sat, 10 Aug 2024 09:15:40 UTC"), Some(1_723_281_340));
        assert_eq!(parse_rfc2822("10 Aug 2024 09:15:40 GMT"), Some(1_723_281_340));
        assert_eq!(parse_rfc2822("Sat, 10 Aug 2024 11:15:40 +0200"), Some(1_723_281_340));
        assert_eq!(parse_rfc2822("Sat, 10 Aug 2024 08:45:40 -0030"), Some(1_723_281_340));
        assert_eq!(parse_rfc2822("Thu, 29 Feb 2024 00:00:00 UTC"), Some(1_709_164_800));
        assert_eq!(parse_rfc2822("Sat, 9 Aug 2025 00:00:00 UTC"), Some(1_754_697_600));
        for bad in [
            "",
            "Sun, 10 Aug 2024 09:15:40 UTC", // wrong weekday
            "Thu, 29 Feb 2023 00:00:00 UTC", // not a leap year
            "Sat, 10 Aug 2024 09:15 UTC",
            "Sat, 10 Aug 2024 24:00:00 UTC",
            "Sat, 10 aug 2024 09:15:40 UTC",
            "Sat, 10 Aug 2024 09:15:40 CEST",
            "Sat, 10 Aug 2024 09:15:40 +02",
            "Sat, 10 Aug 2024  09:15:40 UTC",
            "Sat, 10 Aug 24 09:15:40 UTC",
        ] {
            assert_eq!(parse_rfc2822(bad), None, "{bad}");
        }
    }

    #[test]
    fn freshness() {
        let release = Release::parse(RELEASE).unwrap();
        let date = release.date;
        assert!(release.check_freshness(date + 3600, 0).is_ok());
        assert!(matches!(release.check_freshness(date + 8 * 86_400, 0), Err(ReleaseError::Expired { .. })));
        assert!(matches!(release.check_freshness(date - 600, 300), Err(ReleaseError::FromTheFuture { .. })));
        assert!(release.check_freshness(date - 200, 300).is_ok());
    }

    #[test]
    fn release_parse_errors() {
        let without_date = RELEASE.replace("Date: Sat, 10 Aug 2024 09:15:40 UTC\n", "");
        assert!(matches!(Release::parse(&without_date), Err(ReleaseError::Control(ControlError::MissingField { .. }))));
        let duplicate = RELEASE.replace("main/binary-amd64/Packages.xz", "main/binary-amd64/Packages");
        assert!(matches!(Release::parse(&duplicate), Err(ReleaseError::DuplicatePath { .. })));
        let bad_size = RELEASE.replace(" 1234 ", " +1234 ");
        assert!(matches!(Release::parse(&bad_size), Err(ReleaseError::BadSha256Line { .. })));
        let no_sha = RELEASE.split("SHA256:").next().unwrap().to_owned();
        assert!(matches!(Release::parse(&no_sha), Err(ReleaseError::NoSha256)));
        let bad_date = RELEASE.replace("Valid-Until: Sat,", "Valid-Until: Sun,");
        assert!(matches!(Release::parse(&bad_date), Err(ReleaseError::BadDate { field: "Valid-Until", .. })));
    }

    /// Verifies this machine's own apt lists against Debian's keyring. Depends on the host
    /// (and on `apt-get update` having run), so it is not part of the normal run.
    #[test]
    #[ignore]
    fn verifies_debian_inrelease_on_this_machine() {
        let keyring = Keyring::load("/usr/share/keyrings/debian-archive-keyring.gpg").unwrap();
        let mut checked = 0;
        for entry in fs_err::read_dir("/var/lib/apt/lists").unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with("_InRelease") {
                continue;
            }
            let bytes = fs_err::read(&path).unwrap();
            let verified =
                verify_inrelease(&bytes, &keyring, Some(now())).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let release = verified.release().unwrap();
            assert!(!release.sha256.is_empty());
            eprintln!(
                "{}: signed by {} ({}), {} files",
                path.display(),
                verified.signing_key,
                release.suite.as_deref().unwrap_or("?"),
                release.sha256.len()
            );
            checked += 1;
        }
        assert!(checked > 0, "no InRelease files in /var/lib/apt/lists");
    }
}
