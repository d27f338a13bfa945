//! Signing keys.
//!
//! Keys are ed25519, stored in the formats every standard tool reads: the private key as
//! PKCS#8 PEM (`PREFIX.key`, mode 0600), the public key as SPKI PEM (`PREFIX.pub`), so that
//! `openssl pkey -in PREFIX.key -pubout` gives `PREFIX.pub` and `openssl pkeyutl -verify`
//! checks our signatures. A key's id is the sha256 of its SPKI DER encoding: the same id
//! whoever computes it from the public key, with no registry of names.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to read key `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{}` is not an ed25519 {what} key in PEM ({message})", path.display())]
    Parse { path: PathBuf, what: &'static str, message: String },
    #[error("failed to write key `{}`", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no randomness from the operating system")]
    Random(String),
}

/// A key id: the sha256 of the public key's SPKI DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.hex())
    }
}

/// A public key, trusted for verification.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    pub id: KeyId,
    /// Where it was read from, for messages.
    pub origin: String,
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let key = read_pem(path, "public", VerifyingKey::from_public_key_pem)?;
        Ok(Self::new(key, path.display().to_string()))
    }

    fn new(key: VerifyingKey, origin: String) -> Self {
        let der = key.to_public_key_der().expect("an ed25519 key encodes");
        PublicKey { key, id: KeyId(Digest::of(der.as_bytes())), origin }
    }

    /// Checks an ed25519 signature (strictly: no malleable or small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return false };
        self.key.verify_strict(message, &signature).is_ok()
    }

    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).expect("an ed25519 key encodes")
    }
}

/// A private signing key.
pub struct PrivateKey {
    key: SigningKey,
    pub public: PublicKey,
}

impl PrivateKey {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let key = read_pem(path, "private (PKCS#8)", SigningKey::from_pkcs8_pem)?;
        Ok(Self::new(key, path.display().to_string()))
    }

    fn new(key: SigningKey, origin: String) -> Self {
        let public = PublicKey::new(key.verifying_key(), origin);
        PrivateKey { key, public }
    }

    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::new(SigningKey::from_bytes(&seed), "generated".into()))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// Writes `PREFIX.key` (0600, never overwriting) and `PREFIX.pub`.
    pub fn write(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let private = with_suffix(prefix, "key");
        let public = with_suffix(prefix, "pub");
        let pem = self.pkcs8_v1_pem();
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Write { path, source }
        };
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&private)
            .map_err(write_error(&private))?;
        file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(write_error(&private))?;
        let mut file =
            fs_err::OpenOptions::new().write(true).create_new(true).open(&public).map_err(write_error(&public))?;
        file.write_all(self.public.to_pem().as_bytes()).map_err(write_error(&public))?;
        Ok((private, public))
    }
}

impl PrivateKey {
    /// The key as RFC 8410 PKCS#8 *v1* (no embedded public key). Version 2, which the
    /// `pkcs8` crate writes, is refused by OpenSSL 3.0 (`openssl pkey` says "unsupported"),
    /// and auditors must be able to use standard tools.
    fn pkcs8_v1_pem(&self) -> String {
        use base64::Engine as _;
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        const PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(self.key.as_bytes());
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    }
}

/// Reads a PEM key file with `parse`; errors name the file and the kind of key expected.
fn read_pem<T, E: fmt::Display>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, KeyError> {
    let text = fs_err::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|e| KeyError::Parse { path: path.to_owned(), what, message: e.to_string() })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_have_stable_ids() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate().unwrap();
        let (private, public) = key.write(&dir.path().join("ci")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(&private).unwrap().permissions()) & 0o777,
            0o600
        );
        let loaded = PrivateKey::load(&private).unwrap();
        let public = PublicKey::load(&public).unwrap();
        assert_eq!(loaded.public.id, key.public.id);
        assert_eq!(public.id, key.public.id);
        let sig = loaded.sign(b"message");
        assert!(public.verify(b"message", &sig));
        assert!(!public.verify(b"messagE", &sig));
        assert!(key.write(&dir.path().join("ci")).is_err(), "never overwrites a key");
    }
}
