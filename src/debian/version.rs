//! Debian package versions, compared exactly as dpkg compares them.
//!
//! Every decision the resolver makes is a version comparison: which of the versions an
//! archive offers is the candidate, whether `Depends: libc6 (>= 2.36)` is met, whether a
//! `Breaks` applies. If we ordered versions even slightly differently from dpkg and apt, the
//! same archive would resolve to a different package set here than under `apt-get`, and
//! nothing would notice until an image misbehaved. So the comparison is a line-by-line port of
//! dpkg's `verrevcmp` (`lib/dpkg/version.c`), and a property test checks it against the `dpkg`
//! binary itself.
//!
//! The syntax is deb-version(7): `[epoch:]upstream_version[-debian_revision]`.
//!
//! * The epoch is everything before the *first* `:`; so an upstream version may contain `:`
//!   only when an epoch is written (`0:` is the default).
//! * The revision is everything after the *last* `-`; so an upstream version may contain `-`
//!   only when a revision is written.
//! * The upstream version is made of ASCII letters, digits and `.+~-:`; the revision of ASCII
//!   letters, digits and `.+~`.
//!
//! Parsing is stricter than dpkg's lenient mode in three places, each on purpose:
//!
//! * Whitespace around the version is an error, not trimmed: the deb822 parser
//!   ([`control`](super::control)) already trims field values, so a space here means a
//!   caller bug.
//! * The epoch is ASCII digits only. dpkg reads it with `strtol`, which also takes `+1:` or
//!   `-0:`; no archive writes those and accepting them would make the text ambiguous.
//! * A character outside the sets above is an error. dpkg's lenient parser (its status
//!   database, `--compare-versions`) only warns, but its strict one (`dpkg-deb --build`,
//!   `--validate-version`) refuses, and such characters break the syntax around a version:
//!   `_` in pool file names (`name_version_arch.deb`), spaces, `,` and `()` in relationship
//!   fields.
//!
//! And more lenient in one: an upstream version that does not start with a digit
//! ([`Version`] explains why).
//!
//! Equality is dpkg's equality, not textual: see [`Version`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The largest epoch dpkg accepts (`INT_MAX`: it stores the epoch in a C `int`).
const MAX_EPOCH: u32 = i32::MAX as u32;

/// A Debian package version: `[epoch:]upstream_version[-debian_revision]`.
///
/// **Equality follows the ordering.** Two versions are equal when dpkg says they are (`dpkg
/// --compare-versions A eq B`), even when they are written differently: `1.0`, `01.0`,
/// `0:1.0` and `1.0-0` are all equal, because the default epoch is 0, digit runs compare
/// numerically (leading zeros do not count) and a missing revision compares like `0`. That
/// keeps `Eq`, `Ord` and `Hash` consistent, so a `BTreeMap<Version, _>` holds one entry per
/// version as dpkg sees it. The text as written is kept: [`Display`](fmt::Display), serde and
/// [`Version::as_str`] give it back unchanged, and that is what to compare when the spelling
/// matters (a file name, a digest input).
///
/// **An upstream version need not start with a digit.** deb-version(7) says it "should";
/// dpkg's strict parser (`dpkg-deb --build`, `dpkg --validate-version`) refuses one that does
/// not, but its lenient parser (its status database, `dpkg --compare-versions`) only warns,
/// unlike for an invalid character, which we reject. We accept it: such a version breaks no
/// syntax around it, the comparison is fully defined for it (a leading letter sorts after
/// every digit, so `a1` > `9`), and an archive index must not become unreadable over one odd
/// stanza. Whether dpkg will install the package is for the installer to check, not the
/// parser: `version.upstream().starts_with(|c: char| c.is_ascii_digit())`.
#[derive(Clone)]
pub struct Version {
    /// The version exactly as written.
    text: String,
    epoch: u32,
    /// Byte range of the upstream version in `text`; the revision, if any, follows the `-`
    /// at `upstream_end`.
    upstream_start: usize,
    upstream_end: usize,
}

/// Why a string is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseVersionError {
    #[error("a Debian version cannot be empty")]
    Empty,
    #[error("invalid Debian version `{version}`: the epoch before `:` is empty")]
    EmptyEpoch { version: String },
    #[error("invalid Debian version `{version}`: the epoch before the first `:` is not a number")]
    EpochNotNumber { version: String },
    #[error("invalid Debian version `{version}`: the epoch is larger than dpkg allows ({MAX_EPOCH})")]
    EpochTooBig { version: String },
    #[error("invalid Debian version `{version}`: the upstream version is empty")]
    EmptyUpstream { version: String },
    #[error("invalid Debian version `{version}`: the revision after the last `-` is empty")]
    EmptyRevision { version: String },
    #[error(
        "invalid Debian version `{version}`: {character:?} is not allowed in the upstream version \
         (only ASCII letters, digits and `.+~-:`)"
    )]
    InvalidUpstreamCharacter { version: String, character: char },
    #[error(
        "invalid Debian version `{version}`: {character:?} is not allowed in the revision \
         (only ASCII letters, digits and `.+~`)"
    )]
    InvalidRevisionCharacter { version: String, character: char },
}

impl crate::error::Hint for ParseVersionError {
    fn hints(&self) -> Vec<std::borrow::Cow<'_, str>> {
        match self {
            ParseVersionError::EpochNotNumber { .. } => {
                vec!["`:` may appear in the upstream version only after an explicit epoch (`0:` is the default)".into()]
            }
            _ => Vec::new(),
        }
    }
}

impl Version {
    /// The epoch; 0 when none is written.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version: after the epoch's `:`, before the revision's `-`.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream_start..self.upstream_end]
    }

    /// The Debian revision after the last `-`; empty when there is none (a native package).
    pub fn revision(&self) -> &str {
        self.text.get(self.upstream_end + 1..).unwrap_or("")
    }

    /// The version exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let version = || s.to_owned();
        if s.is_empty() {
            return Err(ParseVersionError::Empty);
        }
        // The first `:` ends the epoch, as in dpkg's `parseversion`: a `:` in the upstream
        // version is therefore only possible after an explicit epoch.
        let (epoch, upstream_start) = match s.split_once(':') {
            None => (0, 0),
            Some((digits, _)) => {
                if digits.is_empty() {
                    return Err(ParseVersionError::EmptyEpoch { version: version() });
                }
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseVersionError::EpochNotNumber { version: version() });
                }
                // Leading zeros are fine (dpkg's `strtol` takes them); an overflowing `u32` is
                // too big as surely as one above `MAX_EPOCH`.
                let epoch = digits.parse::<u32>().ok().filter(|&e| e <= MAX_EPOCH);
                let epoch = epoch.ok_or_else(|| ParseVersionError::EpochTooBig { version: version() })?;
                (epoch, digits.len() + 1)
            }
        };
        // The last `-` starts the revision: a `-` in the upstream version is therefore only
        // possible when a revision follows.
        let upstream_end = match s[upstream_start..].rfind('-') {
            None => s.len(),
            Some(hyphen) if upstream_start + hyphen + 1 == s.len() => {
                return Err(ParseVersionError::EmptyRevision { version: version() });
            }
            Some(hyphen) => upstream_start + hyphen,
        };
        let upstream = &s[upstream_start..upstream_end];
        if upstream.is_empty() {
            return Err(ParseVersionError::EmptyUpstream { version: version() });
        }
        let upstream_char = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if let Some(character) = upstream.chars().find(|&c| !upstream_char(c)) {
            return Err(ParseVersionError::InvalidUpstreamCharacter { version: version(), character });
        }
        let revision = s.get(upstream_end + 1..).unwrap_or("");
        let revision_char = |c: char| c.is_ascii_alphanumeric() || ".+~".contains(c);
        if let Some(character) = revision.chars().find(|&c| !revision_char(c)) {
            return Err(ParseVersionError::InvalidRevisionCharacter { version: version(), character });
        }
        Ok(Version { text: s.to_owned(), epoch, upstream_start, upstream_end })
    }
}

impl Ord for Version {
    /// dpkg's `dpkg_version_compare`: the epoch numerically, then the upstream version, then
    /// the revision, each with dpkg's `verrevcmp`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream(), other.upstream()))
            .then_with(|| verrevcmp(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    /// Hashes what [`Ord`] looks at, so that equal versions hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        hash_canonical(self.upstream(), state);
        hash_canonical(self.revision(), state);
    }
}

/// dpkg's `order`: the weight of a character in a non-digit run; `0` stands for the end of
/// the string (and for a digit, which ends the run).
///
/// `~` sorts before everything, even the end of the string (so `1.0~rc1` < `1.0`); then the
/// end; then ASCII letters; then every other character, in ASCII order, after all letters
/// (so `1.0a` < `1.0+`).
fn order(c: u8) -> i32 {
    match c {
        b'~' => -1,
        0 | b'0'..=b'9' => 0,
        c if c.is_ascii_alphabetic() => i32::from(c),
        c => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`, which compares an upstream version or a revision.
///
/// Both strings are read as alternating runs: a non-digit run (possibly empty), compared
/// character by character by [`order`], then a digit run, compared numerically (leading
/// zeros skipped, an empty run is 0), until one differs. Kept close to the C, index for
/// pointer, so that it can be checked against it line by line.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Reading past the end yields the C string's terminating NUL.
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit run. It never steps past the end of either string: there `order` is
        // 0, and the other side, being a non-digit here, weighs something else.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(at(a, i)), order(at(b, j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // The digit run, numerically: without leading zeros, the longer run is the larger
        // number; of two as long, the first differing digit decides.
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Feeds `hasher` a form of `s` that is the same for all strings [`verrevcmp`] finds equal.
///
/// [`verrevcmp`] reads `s` as pairs (non-digit run, digit run). Two strings are equal when
/// their non-digit runs are identical and their digit runs are numerically equal, where a
/// missing run is 0. So: each non-digit run as is, each digit run without leading zeros, and
/// no pair that is empty on both sides. That last pair can only be the whole string when it
/// is all zeros (after the first pair every non-digit run is non-empty), which is how the
/// revision `0` hashes like no revision.
fn hash_canonical<H: Hasher>(s: &str, hasher: &mut H) {
    let mut rest = s;
    let mut pairs = 0usize;
    while !rest.is_empty() {
        let split = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let (non_digits, tail) = rest.split_at(split);
        let split = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        let (digits, tail) = tail.split_at(split);
        let digits = digits.trim_start_matches('0');
        if !(non_digits.is_empty() && digits.is_empty()) {
            non_digits.hash(hasher);
            digits.hash(hasher);
            pairs += 1;
        }
        rest = tail;
    }
    hasher.write_usize(pairs);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Version").field(&self.text).finish()
    }
}

crate::serde_str::serde_via_from_str!(Version);

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::process::{Command, Stdio};

    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn hash_of(version: &Version) -> u64 {
        let mut hasher = DefaultHasher::new();
        version.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn splits_into_epoch_upstream_and_revision() {
        let cases = [
            ("1.0", 0, "1.0", ""),
            ("1:2.30-4ubuntu1", 1, "2.30", "4ubuntu1"),
            ("2.36-9+deb12u4", 0, "2.36", "9+deb12u4"),
            // The first `:` ends the epoch, the last `-` starts the revision.
            ("1:1.0:2-rc-3", 1, "1.0:2-rc", "3"),
            ("01:1.0", 1, "1.0", ""),
            ("2147483647:1", MAX_EPOCH, "1", ""),
            ("1.0-~bpo1", 0, "1.0", "~bpo1"),
            // Accepted although dpkg's strict parser refuses it: see `Version`.
            ("a1.0", 0, "a1.0", ""),
        ];
        for (text, epoch, upstream, revision) in cases {
            let version = v(text);
            assert_eq!(
                (version.epoch(), version.upstream(), version.revision()),
                (epoch, upstream, revision),
                "{text}"
            );
            assert_eq!(version.to_string(), text);
            assert_eq!(version.as_str(), text);
        }
    }

    #[test]
    fn rejects_what_dpkg_rejects_and_says_why() {
        use ParseVersionError::*;
        type Expected = fn(&ParseVersionError) -> bool;
        let cases: &[(&str, Expected)] = &[
            ("", |e| matches!(e, Empty)),
            (":1.0", |e| matches!(e, EmptyEpoch { .. })),
            ("a:1.0", |e| matches!(e, EpochNotNumber { .. })),
            // A `:` in the upstream version without an epoch reads as a bad epoch, as in dpkg.
            ("1.0:2", |e| matches!(e, EpochNotNumber { .. })),
            ("1.0-1:2", |e| matches!(e, EpochNotNumber { .. })),
            // dpkg's `strtol` takes a sign; we do not.
            ("+1:1.0", |e| matches!(e, EpochNotNumber { .. })),
            ("2147483648:1", |e| matches!(e, EpochTooBig { .. })),
            ("99999999999999999999:1", |e| matches!(e, EpochTooBig { .. })),
            ("1:", |e| matches!(e, EmptyUpstream { .. })),
            ("1:-1", |e| matches!(e, EmptyUpstream { .. })),
            ("-1", |e| matches!(e, EmptyUpstream { .. })),
            ("1.0-", |e| matches!(e, EmptyRevision { .. })),
            ("1.0-1-", |e| matches!(e, EmptyRevision { .. })),
            ("1.0_1", |e| matches!(e, InvalidUpstreamCharacter { character: '_', .. })),
            (" 1.0", |e| matches!(e, InvalidUpstreamCharacter { character: ' ', .. })),
            ("1.0\n", |e| matches!(e, InvalidUpstreamCharacter { character: '\n', .. })),
            ("1.0é", |e| matches!(e, InvalidUpstreamCharacter { character: 'é', .. })),
            ("1.0-1_2", |e| matches!(e, InvalidRevisionCharacter { character: '_', .. })),
            // `:` is allowed in the upstream version after an epoch, never in the revision.
            ("1:1.0-1:2", |e| matches!(e, InvalidRevisionCharacter { character: ':', .. })),
        ];
        for (text, expected) in cases {
            let error = text.parse::<Version>().expect_err(text);
            assert!(expected(&error), "`{text}`: unexpected {error:?}");
            let message = error.to_string();
            if !text.is_empty() {
                assert!(message.contains(&format!("`{text}`")), "`{text}`: message does not name it: {message}");
            }
        }
        assert_eq!(
            "1.0_1".parse::<Version>().unwrap_err().to_string(),
            "invalid Debian version `1.0_1`: '_' is not allowed in the upstream version \
             (only ASCII letters, digits and `.+~-:`)"
        );
    }

    /// Known comparisons, from deb-version(7), Debian policy §5.6.12 and dpkg's own tests.
    /// Each was also checked with `dpkg --compare-versions`, which `compares_like_dpkg`
    /// repeats when the test runs.
    const KNOWN: &[(&str, Ordering, &str)] = &[
        // `~` sorts before everything, even the end of the string.
        ("1.0~rc1", Ordering::Less, "1.0"),
        ("1.0~~", Ordering::Less, "1.0~"),
        ("1.0~~a", Ordering::Less, "1.0~"),
        ("1.0~~", Ordering::Less, "1.0~~a"),
        ("1.0~rc1", Ordering::Less, "1.0~rc2"),
        ("1.0-1~bpo12+1", Ordering::Less, "1.0-1"),
        // Then the end of the string, then letters, then everything else.
        ("1.0", Ordering::Less, "1.0a"),
        ("1.0a", Ordering::Less, "1.0+"),
        ("1.0", Ordering::Less, "1.0+"),
        ("1.0", Ordering::Less, "1.0."),
        ("1.0+1", Ordering::Less, "1.0.1"),
        ("1.0A", Ordering::Less, "1.0a"),
        ("1.0a", Ordering::Less, "1.0b"),
        ("1.0z", Ordering::Less, "1.0.1"),
        ("1:1.0", Ordering::Less, "1:1.0:1"),
        // Digit runs compare numerically.
        ("1.9", Ordering::Less, "1.10"),
        ("2.6.9", Ordering::Less, "2.6.32"),
        ("1.0", Ordering::Less, "1.0.1"),
        ("9", Ordering::Less, "10"),
        // Leading zeros do not count.
        ("01.0", Ordering::Equal, "1.0"),
        ("1.001", Ordering::Equal, "1.1"),
        ("1.00", Ordering::Equal, "1.0"),
        ("1.010", Ordering::Greater, "1.9"),
        ("1.0a", Ordering::Equal, "1.0a0"),
        // The epoch outweighs everything.
        ("0:1.0", Ordering::Equal, "1.0"),
        ("1:0.1", Ordering::Greater, "9.9"),
        ("2:1.0", Ordering::Greater, "1:9.0"),
        ("10:1", Ordering::Greater, "9:1"),
        ("01:1.0", Ordering::Equal, "1:1.0"),
        // Revisions: compared last, with the same rules; none is like `0`.
        ("1.0", Ordering::Equal, "1.0-0"),
        ("1.0", Ordering::Less, "1.0-1"),
        ("1.0-1", Ordering::Less, "1.0-2"),
        ("1.0-9", Ordering::Less, "1.0-10"),
        ("1.2.3-1", Ordering::Less, "1.2.3-1.1"),
        ("1.0-1", Ordering::Less, "1.0-1+deb12u1"),
        ("1.0-1ubuntu1", Ordering::Greater, "1.0-1"),
        ("1.0-a-2", Ordering::Less, "1.0-b-1"),
        ("1.0-1-1", Ordering::Greater, "1.0-1"),
        // Upstream decides before the revision.
        ("1.1-1", Ordering::Greater, "1.0-9"),
        ("7.6p2-4", Ordering::Greater, "7.6-0"),
        // Versions that do not start with a digit compare too (see `Version`), after every
        // version of the same epoch that does: a letter outweighs the digit run's empty
        // non-digit prefix.
        ("a", Ordering::Less, "b"),
        ("a1", Ordering::Greater, "9"),
    ];

    #[test]
    fn known_comparisons() {
        for &(a, expected, b) in KNOWN {
            let (a, b) = (v(a), v(b));
            assert_eq!(a.cmp(&b), expected, "{a} vs {b}");
            assert_eq!(b.cmp(&a), expected.reverse(), "{b} vs {a}");
            assert_eq!(a == b, expected == Ordering::Equal, "{a} == {b}");
            if expected == Ordering::Equal {
                assert_eq!(hash_of(&a), hash_of(&b), "{a} and {b} are equal but hash differently");
            }
        }
    }

    #[test]
    fn equal_versions_keep_their_spelling() {
        let a = v("0:1.0");
        let b = v("1.0-0");
        assert_eq!(a, b);
        assert_eq!((a.to_string(), b.to_string()), ("0:1.0".to_owned(), "1.0-0".to_owned()));
        let set: std::collections::BTreeSet<Version> = ["1.0", "01.0", "0:1.0", "1.0-0", "1.0-1"].map(v).into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn serde_goes_through_the_string() {
        let version = v("1:2.30-4");
        assert_eq!(serde_json::to_string(&version).unwrap(), r#""1:2.30-4""#);
        let back: Version = serde_json::from_str(r#""01:2.30-4""#).unwrap();
        assert_eq!(back, version);
        assert_eq!(back.as_str(), "01:2.30-4");
        let error = serde_json::from_str::<Version>(r#""1.0_1""#).unwrap_err().to_string();
        assert!(error.contains("invalid Debian version `1.0_1`"), "{error}");
    }

    // ---- Against the real dpkg --------------------------------------------------------

    /// Whether `dpkg` can be run (a loud skip without it, under CI a failure).
    fn dpkg_available() -> bool {
        crate::testing::tool("dpkg", "dpkg")
    }

    /// `dpkg --compare-versions a op b`. Its warnings (a version not starting with a digit)
    /// go to stderr, which is discarded; an error (exit status 2) fails the test.
    fn dpkg_compare(a: &str, op: &str, b: &str) -> bool {
        let status = Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .stderr(Stdio::null())
            .status()
            .expect("run `dpkg --compare-versions`");
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("`dpkg --compare-versions {a} {op} {b}` failed: {status}"),
        }
    }

    /// dpkg's answer, asked all three ways so that dpkg's own consistency is checked too.
    fn dpkg_ordering(a: &str, b: &str) -> Ordering {
        let answers = [dpkg_compare(a, "lt", b), dpkg_compare(a, "eq", b), dpkg_compare(a, "gt", b)];
        match answers {
            [true, false, false] => Ordering::Less,
            [false, true, false] => Ordering::Equal,
            [false, false, true] => Ordering::Greater,
            _ => panic!("dpkg gives no single answer for `{a}` vs `{b}`: lt/eq/gt = {answers:?}"),
        }
    }

    fn runner() -> TestRunner {
        // A fixed case count (each case runs dpkg three times), and no regression files
        // written into the source tree.
        TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() })
    }

    /// Digit runs with and without leading zeros, so that numeric comparison and zero
    /// skipping are both exercised, and few enough that equal values come up often.
    const DIGITS: &[&str] = &["0", "00", "1", "01", "2", "9", "10", "010", "20"];
    /// Non-digit runs from every class `order` weighs differently: `~`, letters of both
    /// cases, `+` and `.`; some doubled, so that runs of unequal length meet.
    const NON_DIGITS: &[&str] = &[".", "+", "~", "~~", "a", "b", "A", "z", ".~", "a.", "+a", "~a"];

    /// Up to three (non-digit run, digit run?) pairs.
    fn runs(non_digits: Vec<&'static str>) -> impl Strategy<Value = String> {
        let pair = (select(non_digits), proptest::option::of(select(DIGITS)));
        proptest::collection::vec(pair, 0..4).prop_map(|pairs| {
            pairs.into_iter().map(|(non_digits, digits)| format!("{non_digits}{}", digits.unwrap_or(""))).collect()
        })
    }

    /// What an upstream version starts with: mostly a digit run; one in ten times a letter,
    /// which dpkg warns about but compares (and which we accept).
    fn upstream_start() -> impl Strategy<Value = &'static str> {
        prop_oneof![9 => select(DIGITS), 1 => select(&["a", "b", "Z"][..])]
    }

    /// A revision may start with anything it may contain.
    fn revision_start() -> impl Strategy<Value = &'static str> {
        select([DIGITS, NON_DIGITS].concat())
    }

    /// The parts of a version that decide which characters its upstream version may hold.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        epoch: Option<&'static str>,
        revision: bool,
    }

    impl Shape {
        /// The non-digit runs this version's upstream version may use: `:` only after an
        /// epoch, `-` only before a revision.
        fn upstream_non_digits(self) -> Vec<&'static str> {
            let mut non_digits = NON_DIGITS.to_vec();
            non_digits.extend(self.epoch.map(|_| ":"));
            non_digits.extend(self.revision.then_some("-"));
            non_digits
        }

        fn render(self, upstream: &str, revision: &str) -> String {
            let epoch = self.epoch.map(|e| format!("{e}:")).unwrap_or_default();
            let revision = if self.revision { format!("-{revision}") } else { String::new() };
            format!("{epoch}{upstream}{revision}")
        }
    }

    /// Epochs that are often equal (none, `0`; `1`, `01`), sometimes not.
    fn shape() -> impl Strategy<Value = Shape> {
        let epoch = proptest::option::of(select(&["0", "1", "01", "2"][..]));
        (epoch, any::<bool>()).prop_map(|(epoch, revision)| Shape { epoch, revision })
    }

    /// A version valid for dpkg by construction (`Shape` keeps `:` and `-` in their place).
    fn version_text() -> impl Strategy<Value = String> {
        shape().prop_flat_map(|shape| {
            let upstream = (upstream_start(), runs(shape.upstream_non_digits()));
            let revision = (revision_start(), runs(NON_DIGITS.to_vec()));
            (upstream, revision)
                .prop_map(move |((u, us), (r, rs))| shape.render(&format!("{u}{us}"), &format!("{r}{rs}")))
        })
    }

    /// Two versions that share a prefix in both the upstream version and the revision, so
    /// that they meet where the comparison is decided by a single run: `~` against the end,
    /// a letter against a `+`, `01` against `1`.
    fn similar_versions() -> impl Strategy<Value = (String, String)> {
        (shape(), shape()).prop_flat_map(|(a, b)| {
            let upstream = (
                upstream_start(),
                runs(NON_DIGITS.to_vec()),
                runs(a.upstream_non_digits()),
                runs(b.upstream_non_digits()),
            );
            let revision =
                (revision_start(), runs(NON_DIGITS.to_vec()), runs(NON_DIGITS.to_vec()), runs(NON_DIGITS.to_vec()));
            (upstream, revision).prop_map(move |((u, shared, ua, ub), (r, rshared, ra, rb))| {
                (
                    a.render(&format!("{u}{shared}{ua}"), &format!("{r}{rshared}{ra}")),
                    b.render(&format!("{u}{shared}{ub}"), &format!("{r}{rshared}{rb}")),
                )
            })
        })
    }

    /// A respelling of a version: strips or adds a leading zero, appends a `0` or a `~`, or
    /// changes one digit; mostly equal pairs, and the nearest unequal ones.
    fn respelled_versions() -> impl Strategy<Value = (String, String)> {
        (version_text(), 0..5).prop_map(|(text, how)| {
            let respelled = match how {
                0 => text.replacen("01", "1", 1),
                1 => text.replacen('1', "01", 1),
                2 => format!("{text}0"),
                3 => format!("{text}~"),
                _ => text.replacen('1', "2", 1),
            };
            (text, respelled)
        })
    }

    #[test]
    fn known_comparisons_agree_with_dpkg() {
        if !dpkg_available() {
            return;
        }
        for &(a, expected, b) in KNOWN {
            assert_eq!(dpkg_ordering(a, b), expected, "the table is wrong about `{a}` vs `{b}`");
        }
    }

    #[test]
    fn compares_like_dpkg() {
        if !dpkg_available() {
            return;
        }
        let pairs = prop_oneof![(version_text(), version_text()), similar_versions(), respelled_versions()];
        runner()
            .run(&pairs, |(a_text, b_text)| {
                let a: Version = a_text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let b: Version = b_text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let ours = a.cmp(&b);
                prop_assert_eq!(ours, dpkg_ordering(&a_text, &b_text), "`{}` vs `{}`", a_text, b_text);
                prop_assert_eq!(b.cmp(&a), ours.reverse());
                if ours == Ordering::Equal {
                    prop_assert_eq!(hash_of(&a), hash_of(&b), "`{}` == `{}` but hashes differ", a_text, b_text);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn parses_like_dpkg_validate_version() {
        if !dpkg_available() {
            return;
        }
        // Short strings over the version alphabet plus invalid characters, `:` and `-` in any
        // position. Never a leading `+` or `-` (dpkg would read `-…` as an option and `+1:`
        // as an epoch, a documented difference) and no whitespace (dpkg trims it; another).
        // Half of them start like a version, epoch and all, so that valid ones come up often.
        let anything = "[0-9az~._:é][0-9az~.+_:é-]{0,7}";
        let version_like = "([0-9]{1,2}:)?[0-9][0-9az~.+_:é-]{0,6}";
        runner()
            .run(&prop_oneof![anything, version_like], |text| {
                let output = Command::new("dpkg").args(["--validate-version", &text]).output().unwrap();
                let ours = text.parse::<Version>();
                let stderr = String::from_utf8_lossy(&output.stderr);
                if output.status.success() {
                    prop_assert!(ours.is_ok(), "dpkg accepts `{}`, we say: {}", text, ours.unwrap_err());
                } else if stderr.contains("does not start with digit") {
                    // We accept these (see `Version`), as long as the rest is valid, which
                    // dpkg stops checking at that point.
                } else {
                    prop_assert!(ours.is_err(), "dpkg rejects `{}` ({}), we accept it", text, stderr.trim());
                }
                Ok(())
            })
            .unwrap();
    }
}
