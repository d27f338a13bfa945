//! Canonical JSON documents: one way out, one way back in.
//!
//! Every JSON document a candidate hashes (`manifest.json`, the SBOM, the OCI index, image
//! manifest and config) is a Rust type in its own module ([`crate::manifest`], [`crate::sbom`],
//! [`crate::oci`]); this module holds what they share. [`to_canonical`] writes the canonical
//! form: object keys sorted bytewise, no insignificant whitespace, no trailing newline,
//! integers only, UTF-8. [`read`] reads a document back and names the file when it cannot.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a document could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read {what} `{}`", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a valid {what}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The canonical bytes of `document`.
///
/// The document goes through a [`serde_json::Value`] first: its objects are `BTreeMap`s
/// (serde_json without `preserve_order`, which a unit test below holds us to), so keys come
/// out sorted whatever order a type declares its fields in. A struct's field order is then
/// free to follow the reader, and no field added in the "wrong" place can change a digest.
pub fn to_canonical<T: Serialize>(document: &T) -> Vec<u8> {
    let value = serde_json::to_value(document).expect("documents hold no maps with non-string keys, and no floats");
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// Parses a `what` (`"manifest"`, `"SBOM"`, …) from `bytes` read from `path`.
pub fn parse<T: DeserializeOwned>(what: &'static str, path: &Path, bytes: &[u8]) -> Result<T, DocumentError> {
    serde_json::from_slice(bytes).map_err(|source| DocumentError::Parse { what, path: path.to_owned(), source })
}

/// Reads the whole file at `path`, refusing one larger than `cap` bytes without reading
/// past the cap: a text we parse in memory (a recipe, a lockfile) is bounded before it is
/// read, so a `/dev/zero` or a runaway file fails with a message naming the file and the cap.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    fs_err::File::open(path)?.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("`{}` is larger than the {cap} bytes allowed", path.display()),
        ));
    }
    Ok(bytes)
}

/// Reads and parses the `what` at `path`.
pub fn read<T: DeserializeOwned>(what: &'static str, path: &Path) -> Result<T, DocumentError> {
    let bytes = fs_err::read(path).map_err(|source| DocumentError::Read { what, path: path.to_owned(), source })?;
    parse(what, path, &bytes)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC; the civil-from-days algorithm).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_sorted_bytewise_without_whitespace() {
        #[derive(Serialize)]
        struct Doc {
            b: u32,
            #[serde(rename = "a-b")]
            a_dash: u32,
            #[serde(rename = "A")]
            upper: Vec<u32>,
            a: Inner,
        }
        #[derive(Serialize)]
        struct Inner {
            d: &'static str,
            c: Option<u32>,
        }
        let doc = Doc { b: 1, a_dash: 2, upper: vec![1, 2], a: Inner { d: "x", c: None } };
        assert_eq!(
            String::from_utf8(to_canonical(&doc)).unwrap(),
            r#"{"A":[1,2],"a":{"c":null,"d":"x"},"a-b":2,"b":1}"#
        );
    }

    #[test]
    fn a_bad_document_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        fs_err::write(&path, b"{ not json").unwrap();
        let err = read::<serde_json::Value>("manifest", &path).unwrap_err();
        assert_eq!(err.to_string(), format!("`{}` is not a valid manifest", path.display()));
        let err = read::<serde_json::Value>("manifest", &dir.path().join("absent.json")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read manifest `"), "{err}");
    }
}
