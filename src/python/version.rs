//! PEP 440 versions and version specifiers, as `packaging` (what pip uses) reads them.
//!
//! A version is parsed leniently in spelling and kept normalised (`1.0-ALPHA.1` is `1.0a1`,
//! `v2.0-r3` is `2.0.post3`), so two spellings of one version compare equal and print alike.
//! The order is PEP 440's: epoch, then release (trailing zeros do not count: `1.0 == 1`), then
//! `dev` < `a` < `b` < `rc` < final < `post`, a local version after its public one.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("`{text}` is not a PEP 440 version: {reason}")]
    Version { text: String, reason: &'static str },
    #[error("`{text}` is not a PEP 440 version specifier: {reason}")]
    Specifier { text: String, reason: &'static str },
}

/// The kind of a pre-release, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pre {
    Alpha,
    Beta,
    Rc,
}

/// One segment of a local version (`+ubuntu.1`): numbers sort after letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Number(u64),
    Text(String),
}

impl Ord for Local {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Local::Number(a), Local::Number(b)) => a.cmp(b),
            (Local::Text(a), Local::Text(b)) => a.cmp(b),
            (Local::Number(_), Local::Text(_)) => Ordering::Greater,
            (Local::Text(_), Local::Number(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for Local {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A PEP 440 version, normalised. Equality is PEP 440's (`1.0 == 1.0.0`), consistent with
/// its order.
#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub release: Vec<u64>,
    pub pre: Option<(Pre, u64)>,
    pub post: Option<u64>,
    pub dev: Option<u64>,
    pub local: Vec<Local>,
}

impl Version {
    /// A pre-release or a development release: `1.0a1`, `1.0.dev0`.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The version without its local part.
    pub fn public(&self) -> Version {
        Version { local: Vec::new(), ..self.clone() }
    }

    /// Epoch and release only: `1!2.0rc1.post3` → `1!2.0`.
    pub fn base(&self) -> Version {
        Version {
            epoch: self.epoch,
            release: self.release.clone(),
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        }
    }

    /// The key `packaging` sorts by. `None` sorts first in an `Option`, so "absent" is
    /// spelled with the variant that gives PEP 440's place.
    fn key(&self) -> (u64, &[u64], PreKey, Option<u64>, DevKey, &[Local]) {
        // Trailing zeros of the release do not count.
        let mut release = self.release.as_slice();
        while let [rest @ .., 0] = release {
            release = rest;
        }
        let pre = match (self.pre, self.post, self.dev) {
            // `1.0.dev0` sorts before `1.0a0`.
            (None, None, Some(_)) => PreKey::DevOnly,
            (None, _, _) => PreKey::Final,
            (Some(p), _, _) => PreKey::Pre(p),
        };
        let dev = match self.dev {
            Some(n) => DevKey::Dev(n),
            None => DevKey::None,
        };
        (self.epoch, release, pre, self.post, dev, &self.local)
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey {
    DevOnly,
    Pre((Pre, u64)),
    Final,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum DevKey {
    Dev(u64),
    None,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
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

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let release: Vec<String> = self.release.iter().map(u64::to_string).collect();
        f.write_str(&release.join("."))?;
        if let Some((kind, n)) = self.pre {
            let kind = match kind {
                Pre::Alpha => "a",
                Pre::Beta => "b",
                Pre::Rc => "rc",
            };
            write!(f, "{kind}{n}")?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        if !self.local.is_empty() {
            let local: Vec<String> = self
                .local
                .iter()
                .map(|l| match l {
                    Local::Number(n) => n.to_string(),
                    Local::Text(t) => t.clone(),
                })
                .collect();
            write!(f, "+{}", local.join("."))?;
        }
        Ok(())
    }
}

/// A small cursor over the lower-cased text of a version.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn separator(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Option<Result<u64, ()>> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        (self.at > start).then(|| std::str::from_utf8(&self.s[start..self.at]).unwrap().parse().map_err(|_| ()))
    }

    /// One of `words` (longest first), after an optional separator; the position is kept
    /// when none follows.
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let back = self.at;
        self.separator();
        for (i, w) in words.iter().enumerate() {
            if self.eat(w) {
                return Some(i);
            }
        }
        self.at = back;
        None
    }

    /// The number after a pre/post/dev word: an optional separator, an optional number (0).
    fn implicit_number(&mut self) -> Result<u64, ()> {
        let back = self.at;
        self.separator();
        match self.number() {
            Some(n) => n,
            None => {
                self.at = back;
                Ok(0)
            }
        }
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, VersionError> {
        let bad = |reason| VersionError::Version { text: text.to_owned(), reason };
        let too_big = || bad("a number is too large");
        let lower = text.trim().to_ascii_lowercase();
        let mut c = Cursor { s: lower.as_bytes(), at: 0 };
        c.eat("v");
        let first = c.number().ok_or_else(|| bad("it must begin with a number"))?.map_err(|_| too_big())?;
        let (epoch, first) = if c.eat("!") {
            (
                first,
                c.number()
                    .ok_or_else(|| bad("a release number must follow the epoch's `!`"))?
                    .map_err(|_| too_big())?,
            )
        } else {
            (0, first)
        };
        let mut release = vec![first];
        loop {
            let back = c.at;
            if !c.eat(".") {
                break;
            }
            match c.number() {
                Some(n) => release.push(n.map_err(|_| too_big())?),
                None => {
                    c.at = back;
                    break;
                }
            }
        }
        let mut version = Version { epoch, release, pre: None, post: None, dev: None, local: Vec::new() };
        let pre_words = ["preview", "alpha", "beta", "pre", "rc", "a", "b", "c"];
        if let Some(i) = c.word(&pre_words) {
            let kind = match pre_words[i] {
                "alpha" | "a" => Pre::Alpha,
                "beta" | "b" => Pre::Beta,
                _ => Pre::Rc,
            };
            version.pre = Some((kind, c.implicit_number().map_err(|_| too_big())?));
        }
        if c.word(&["post", "rev", "r"]).is_some() {
            version.post = Some(c.implicit_number().map_err(|_| too_big())?);
        } else {
            // The implicit post-release: `1.0-1`.
            let back = c.at;
            if c.eat("-") {
                match c.number() {
                    Some(n) => version.post = Some(n.map_err(|_| too_big())?),
                    None => c.at = back,
                }
            }
        }
        if c.word(&["dev"]).is_some() {
            version.dev = Some(c.implicit_number().map_err(|_| too_big())?);
        }
        if c.eat("+") {
            let rest = std::str::from_utf8(&c.s[c.at..]).unwrap();
            for part in rest.split(['.', '-', '_']) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad("a local version is letters and digits separated by `.`"));
                }
                version.local.push(match part.bytes().all(|b| b.is_ascii_digit()) {
                    true => Local::Number(part.parse().map_err(|_| too_big())?),
                    false => Local::Text(part.to_owned()),
                });
            }
            c.at = c.s.len();
        }
        if c.at != c.s.len() {
            return Err(bad("unexpected text after the version"));
        }
        Ok(version)
    }
}

crate::serde_str::serde_via_from_str!(Version);

/// A comparison operator of a specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `==`; with `wildcard`, `==1.2.*`.
    Equal,
    NotEqual,
    LessEqual,
    GreaterEqual,
    Less,
    Greater,
    /// `~=`
    Compatible,
    /// `===`: string identity.
    Arbitrary,
}

impl Operator {
    fn as_str(self) -> &'static str {
        match self {
            Operator::Equal => "==",
            Operator::NotEqual => "!=",
            Operator::LessEqual => "<=",
            Operator::GreaterEqual => ">=",
            Operator::Less => "<",
            Operator::Greater => ">",
            Operator::Compatible => "~=",
            Operator::Arbitrary => "===",
        }
    }
}

/// One specifier: `>=1.0`, `==2.*`, `~=1.4.2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specifier {
    pub operator: Operator,
    /// The version as written (what `===` compares).
    pub text: String,
    /// `==1.2.*` / `!=1.2.*`.
    pub wildcard: bool,
    /// `None` only for `===` of a text that is not a version.
    pub version: Option<Version>,
}

impl FromStr for Specifier {
    type Err = VersionError;

    fn from_str(spec: &str) -> Result<Self, VersionError> {
        let bad = |reason| VersionError::Specifier { text: spec.trim().to_owned(), reason };
        let s = spec.trim();
        // Longest operators first.
        let operators = [
            ("===", Operator::Arbitrary),
            ("==", Operator::Equal),
            ("!=", Operator::NotEqual),
            ("<=", Operator::LessEqual),
            (">=", Operator::GreaterEqual),
            ("~=", Operator::Compatible),
            ("<", Operator::Less),
            (">", Operator::Greater),
        ];
        let (operator, rest) = operators
            .iter()
            .find_map(|(o, op)| s.strip_prefix(o).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| bad("it must begin with `==`, `!=`, `<=`, `>=`, `<`, `>`, `~=` or `===`"))?;
        if rest.is_empty() {
            return Err(bad("no version follows the operator"));
        }
        if operator == Operator::Arbitrary {
            return Ok(Specifier { operator, text: rest.to_owned(), wildcard: false, version: rest.parse().ok() });
        }
        let (body, wildcard) = match rest.strip_suffix(".*") {
            Some(body) => (body, true),
            None => (rest, false),
        };
        if wildcard && !matches!(operator, Operator::Equal | Operator::NotEqual) {
            return Err(bad("a `.*` wildcard is allowed only with `==` and `!=`"));
        }
        let version: Version = body.parse().map_err(|_| bad("the version is not a PEP 440 version"))?;
        if wildcard
            && (version.pre.is_some() || version.post.is_some() || version.dev.is_some() || !version.local.is_empty())
        {
            return Err(bad("a `.*` wildcard may follow only a release (`==1.2.*`)"));
        }
        if !version.local.is_empty() && !matches!(operator, Operator::Equal | Operator::NotEqual) {
            return Err(bad("a local version is allowed only with `==` and `!=`"));
        }
        if operator == Operator::Compatible && version.release.len() < 2 {
            return Err(bad("`~=` needs at least two release numbers (`~=1.4`)"));
        }
        Ok(Specifier { operator, text: rest.to_owned(), wildcard, version: Some(version) })
    }
}

impl fmt::Display for Specifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.operator.as_str(), self.text)
    }
}

/// `candidate`'s release starts with `prefix` (zero-padded, as `packaging` compares).
fn release_starts_with(candidate: &Version, prefix: &Version) -> bool {
    candidate.epoch == prefix.epoch
        && prefix.release.iter().enumerate().all(|(i, n)| candidate.release.get(i).copied().unwrap_or(0) == *n)
}

impl Specifier {
    /// Whether `v` satisfies this specifier. Pre-releases are not excluded: this checks pinned
    /// versions (as `pip check` does), it does not choose among candidates.
    pub fn contains(&self, v: &Version) -> bool {
        let Some(spec) = &self.version else {
            return v.to_string().eq_ignore_ascii_case(&self.text);
        };
        match self.operator {
            // String identity (of the normalised text: the original spelling is not kept).
            Operator::Arbitrary => v.to_string().eq_ignore_ascii_case(&self.text),
            Operator::Equal | Operator::NotEqual => {
                let equal = if self.wildcard {
                    release_starts_with(&v.public(), spec)
                } else if spec.local.is_empty() {
                    v.public() == *spec
                } else {
                    v == spec
                };
                equal == (self.operator == Operator::Equal)
            }
            Operator::LessEqual => v.public() <= *spec,
            Operator::GreaterEqual => v.public() >= *spec,
            Operator::Less => {
                // `<1.0` excludes `1.0rc1` unless the specifier is itself a pre-release.
                v.public() < *spec && (spec.is_prerelease() || !v.is_prerelease() || v.base() != spec.base())
            }
            Operator::Greater => {
                // `>1.0` excludes `1.0.post1` and `1.0+local` unless the specifier is a post-release.
                v.public() > *spec
                    && (spec.post.is_some() || v.post.is_none() || v.base() != spec.base())
                    && (v.local.is_empty() || v.base() != spec.base())
            }
            Operator::Compatible => {
                let mut prefix = spec.base();
                prefix.release.pop();
                v.public() >= *spec && release_starts_with(v, &prefix)
            }
        }
    }
}

/// Specifiers joined by `,`: all must hold. Empty holds for every version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Specifiers(pub Vec<Specifier>);

impl FromStr for Specifiers {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, VersionError> {
        if s.trim().is_empty() {
            return Ok(Specifiers(Vec::new()));
        }
        s.split(',').map(str::parse).collect::<Result<_, _>>().map(Specifiers)
    }
}

impl Specifiers {
    pub fn contains(&self, v: &Version) -> bool {
        self.0.iter().all(|s| s.contains(v))
    }
}

impl fmt::Display for Specifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Specifier::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn spellings_are_normalised() {
        for (given, normal) in [
            ("1.0", "1.0"),
            ("v1.0", "1.0"),
            ("1.0-ALPHA.1", "1.0a1"),
            ("1.0alpha", "1.0a0"),
            ("1.0c1", "1.0rc1"),
            ("1.0.preview-2", "1.0rc2"),
            ("1.0-r3", "1.0.post3"),
            ("1.0-1", "1.0.post1"),
            ("1.0.post", "1.0.post0"),
            ("1.0_dev", "1.0.dev0"),
            ("1!2.0b2.post3.dev4", "1!2.0b2.post3.dev4"),
            ("1.0+Ubuntu-1_2", "1.0+ubuntu.1.2"),
            (" 2024.10.1 ", "2024.10.1"),
        ] {
            assert_eq!(v(given).to_string(), normal, "{given}");
        }
    }

    #[test]
    fn invalid_versions_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("", "it must begin with a number"),
            ("abc", "it must begin with a number"),
            ("1.0x", "unexpected text"),
            ("1.0+", "local version"),
            ("1.0+a..b", "local version"),
            ("1!", "release number must follow"),
            ("99999999999999999999999", "too large"),
        ] {
            let err = bad.parse::<Version>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn the_order_is_pep_440s() {
        // From PEP 440's own example, plus epochs and locals.
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "2!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1"), v("1.0.0.0"));
        assert_ne!(v("1.0"), v("1.0+local"));
    }

    fn holds(spec: &str, version: &str) -> bool {
        spec.parse::<Specifiers>().unwrap_or_else(|e| panic!("{e}")).contains(&v(version))
    }

    #[test]
    fn specifiers_hold_as_packaging_says() {
        for (spec, yes, no) in [
            ("==1.0", &["1.0", "1.0.0", "1.0+local"][..], &["1.0.1", "1.0rc1"][..]),
            ("==1.0+local", &["1.0+local"], &["1.0", "1.0+other"]),
            ("==1.1.*", &["1.1", "1.1.0", "1.1.5", "1.1.0rc1", "1.1.post1"], &["1.10", "1.2", "1.0"]),
            ("!=1.1.*", &["1.2", "1.10"], &["1.1.3"]),
            ("!=1.0", &["1.1"], &["1.0", "1.0.0+x"]),
            (">=1.0", &["1.0", "2.0", "1.0+x"], &["0.9", "1.0rc1"]),
            ("<=1.0", &["1.0", "0.5", "1.0+x"], &["1.0.post1"]),
            ("<1.0", &["0.9", "0.9.9rc1"], &["1.0", "1.0rc1", "1.0.dev1"]),
            ("<1.0rc2", &["1.0rc1"], &["1.0rc2"]),
            (">1.0", &["1.1", "1.0.1"], &["1.0", "1.0.post1", "1.0+local"]),
            (">1.0.post1", &["1.0.post2"], &["1.0.post1"]),
            ("~=1.4.2", &["1.4.2", "1.4.9"], &["1.5", "1.4.1"]),
            ("~=2.2", &["2.2", "2.9"], &["3.0", "2.1"]),
            ("~=1.4.5.0", &["1.4.5.0", "1.4.5.9"], &["1.4.6", "1.4.4"]),
            (">=2.0,<3", &["2.0", "2.9"], &["3.0", "1.9"]),
            ("===1.0", &["1.0"], &["1.0.0"]),
            ("", &["0", "9.9"], &[]),
        ] {
            for y in yes {
                assert!(holds(spec, y), "{y} must satisfy {spec:?}");
            }
            for n in no {
                assert!(!holds(spec, n), "{n} must not satisfy {spec:?}");
            }
        }
    }

    #[test]
    fn invalid_specifiers_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("1.0", "must begin with"),
            (">=1.*", "wildcard is allowed only"),
            ("==1.0a1.*", "only a release"),
            ("~=1", "at least two release"),
            (">=1.0+local", "local version"),
            ("==", "no version"),
            ("==x", "not a PEP 440 version"),
        ] {
            let err = bad.parse::<Specifier>().unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
