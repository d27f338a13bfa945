//! Serde for values that are text with a shape: one macro, so that every such type is
//! deserialised through its `FromStr` (a malformed value is refused by the same parser, with
//! the same message, whether it comes from a recipe, a lockfile or the command line) and
//! serialised as its `Display` (what `FromStr` reads back).
//!
//! The document parsers (TOML, JSON) wrap the `FromStr` error with the line, the column and
//! the offending line, so the culprit is named without each type knowing where it was read.

/// Implements `Serialize` through `Display` and `Deserialize` through `FromStr` for `$ty`;
/// `serde_via_from_str!(T, deserialize)` implements only `Deserialize`, for types whose
/// serialised form is not text.
macro_rules! serde_via_from_str {
    ($ty:ty) => {
        $crate::serde_str::serde_via_from_str!($ty, deserialize);

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
    ($ty:ty, deserialize) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use serde_via_from_str;

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    /// A value that is only ever `"ok"`.
    #[derive(Debug, PartialEq)]
    struct Ok;

    impl FromStr for Ok {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            if s == "ok" {
                Result::Ok(Ok)
            } else {
                Err(format!("`{s}` is not `ok`"))
            }
        }
    }

    impl fmt::Display for Ok {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ok")
        }
    }

    super::serde_via_from_str!(Ok);

    #[test]
    fn goes_through_from_str_both_ways() {
        assert_eq!(serde_json::to_string(&Ok).unwrap(), "\"ok\"");
        assert_eq!(serde_json::from_str::<Ok>("\"ok\"").unwrap(), Ok);
        let err = serde_json::from_str::<Ok>("\"no\"").unwrap_err().to_string();
        assert!(err.contains("`no` is not `ok`"), "{err}");
        // Not a string at all: serde's own message.
        assert!(serde_json::from_str::<Ok>("7").is_err());
    }
}
