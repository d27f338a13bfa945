//! Content digests.
//!
//! Every identity in `candidate` is a sha256: blobs in the store, layers (`diff_id`), inputs,
//! the recipe, the candidate itself. [`Digest`] is the one type that carries it, so that no
//! function takes a bare string it must trust to be a well-formed hex digest. It prints and
//! parses as `sha256:<64 lowercase hex>` (the OCI form); [`Digest::hex`] is the bare hex used
//! in store paths and in recipes, where the algorithm is implied by the key name.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error)]
pub enum ParseDigestError {
    #[error("`{0}` is not a sha256 digest: expected 64 hex digits, optionally after `sha256:`")]
    Malformed(String),
    #[error("`{0}` uses an unsupported digest algorithm: only `sha256` is supported")]
    Algorithm(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields, with the number of bytes read.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut writer = HashingWriter::new(io::sink());
        let n = io::copy(&mut reader, &mut writer)?;
        Ok((writer.finish().0, n))
    }

    /// Lowercase hex, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses bare hex, 64 digits; [`Digest::from_str`] takes the `sha256:` form as well.
    pub fn from_hex(s: &str) -> Result<Self, ParseDigestError> {
        let mut bytes = [0u8; 32];
        if s.len() != 64
            || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b.to_ascii_lowercase()))
            || hex::decode_to_slice(s, &mut bytes).is_err()
        {
            return Err(ParseDigestError::Malformed(s.to_owned()));
        }
        Ok(Self(bytes))
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Self::from_hex(hex),
            Some((algorithm, _)) => Err(ParseDigestError::Algorithm(algorithm.to_owned())),
            None => Self::from_hex(s),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

crate::serde_str::serde_via_from_str!(Digest);

/// Incremental sha256, for digests of structured data built piece by piece.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.0.update(bytes.as_ref());
        self
    }

    /// Adds a length-prefixed field, so that concatenations cannot collide
    /// (`"ab" + "c"` and `"a" + "bc"` hash differently).
    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest(self.hasher.finalize().into()), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_both_forms_and_rejects_junk() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let a: Digest = hex.parse().unwrap();
        let b: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hex(), hex);
        assert!(Digest::from_str(&format!("sha256:{}", hex.to_uppercase())).is_ok());
        assert!(matches!(format!("sha512:{hex}").parse::<Digest>(), Err(ParseDigestError::Algorithm(_))));
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(format!("{}g", &hex[..63]).parse::<Digest>().is_err());
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut a = Hasher::new();
        a.field("ab").field("c");
        let mut b = Hasher::new();
        b.field("a").field("bc");
        assert_ne!(a.finish(), b.finish());
    }
}
