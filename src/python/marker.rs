//! PEP 508: dependency specifiers (`name[extra]>=1.0 ; python_version < "3.12"`) and their
//! environment markers, evaluated as `packaging` (pip) evaluates them — for the image's
//! interpreter and platform, never the host's.
//!
//! A comparison whose operator and right-hand side make a PEP 440 specifier and whose left
//! side is a version compares versions (`python_version >= "3.9"` holds for `3.10`); any
//! other comparison compares strings, as Python's operators would.

use std::fmt;
use std::str::FromStr;

use super::version::{Specifier, Specifiers, Version};
use super::Name;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PEP 508 {what} `{text}`: {reason}")]
pub struct MarkerError {
    /// `marker` or `requirement`.
    pub what: &'static str,
    pub text: String,
    pub reason: String,
}

/// The variables a marker may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    OsName,
    SysPlatform,
    PlatformMachine,
    PlatformPythonImplementation,
    PlatformRelease,
    PlatformSystem,
    PlatformVersion,
    PythonVersion,
    PythonFullVersion,
    ImplementationName,
    ImplementationVersion,
    Extra,
}

const VARIABLES: &[(&str, Variable)] = &[
    ("os_name", Variable::OsName),
    ("sys_platform", Variable::SysPlatform),
    ("platform_machine", Variable::PlatformMachine),
    ("platform_python_implementation", Variable::PlatformPythonImplementation),
    // The old spelling `packaging` still accepts.
    ("python_implementation", Variable::PlatformPythonImplementation),
    ("platform_release", Variable::PlatformRelease),
    ("platform_system", Variable::PlatformSystem),
    ("platform_version", Variable::PlatformVersion),
    ("python_version", Variable::PythonVersion),
    ("python_full_version", Variable::PythonFullVersion),
    ("implementation_name", Variable::ImplementationName),
    ("implementation_version", Variable::ImplementationVersion),
    ("extra", Variable::Extra),
];

impl Variable {
    fn name(self) -> &'static str {
        VARIABLES.iter().find(|(_, v)| *v == self).map(|(n, _)| *n).expect("every variable is named")
    }
}

/// The values markers are evaluated against: the image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub os_name: String,
    pub sys_platform: String,
    pub platform_machine: String,
    pub platform_python_implementation: String,
    /// The kernel's release: not a property of an image (it runs on whatever kernel hosts
    /// it), so empty, as for any value that cannot be known ahead.
    pub platform_release: String,
    pub platform_system: String,
    pub platform_version: String,
    pub python_version: String,
    pub python_full_version: String,
    pub implementation_name: String,
    pub implementation_version: String,
}

impl Environment {
    /// CPython on Linux with this interpreter and machine.
    pub fn cpython_linux(python_minor: (u32, u32), python_full: &str, machine: &str) -> Environment {
        Environment {
            os_name: "posix".into(),
            sys_platform: "linux".into(),
            platform_machine: machine.into(),
            platform_python_implementation: "CPython".into(),
            platform_release: String::new(),
            platform_system: "Linux".into(),
            platform_version: String::new(),
            python_version: format!("{}.{}", python_minor.0, python_minor.1),
            python_full_version: python_full.into(),
            implementation_name: "cpython".into(),
            implementation_version: python_full.into(),
        }
    }

    fn get(&self, variable: Variable, extra: &str) -> String {
        match variable {
            Variable::OsName => self.os_name.clone(),
            Variable::SysPlatform => self.sys_platform.clone(),
            Variable::PlatformMachine => self.platform_machine.clone(),
            Variable::PlatformPythonImplementation => self.platform_python_implementation.clone(),
            Variable::PlatformRelease => self.platform_release.clone(),
            Variable::PlatformSystem => self.platform_system.clone(),
            Variable::PlatformVersion => self.platform_version.clone(),
            Variable::PythonVersion => self.python_version.clone(),
            Variable::PythonFullVersion => self.python_full_version.clone(),
            Variable::ImplementationName => self.implementation_name.clone(),
            Variable::ImplementationVersion => self.implementation_version.clone(),
            Variable::Extra => extra.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Variable(Variable),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOp {
    /// A PEP 440 comparison operator, as written (`==`, `>=`, `~=`, `===`, …).
    Compare(&'static str),
    In,
    NotIn,
}

/// A parsed environment marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Compare { lhs: Value, op: MarkerOp, rhs: Value },
    And(Vec<Marker>),
    Or(Vec<Marker>),
}

impl Marker {
    /// Whether the marker holds in `env` with no extra requested.
    pub fn evaluate(&self, env: &Environment) -> bool {
        self.evaluate_with_extra(env, "")
    }

    /// Whether the marker holds in `env` for one of `extras` (or with none, when empty).
    pub fn evaluate_with_extras<'a>(&self, env: &Environment, extras: impl IntoIterator<Item = &'a Name>) -> bool {
        let mut extras = extras.into_iter().peekable();
        if extras.peek().is_none() {
            return self.evaluate(env);
        }
        extras.any(|e| self.evaluate_with_extra(env, e.as_str()))
    }

    fn evaluate_with_extra(&self, env: &Environment, extra: &str) -> bool {
        match self {
            Marker::And(all) => all.iter().all(|m| m.evaluate_with_extra(env, extra)),
            Marker::Or(any) => any.iter().any(|m| m.evaluate_with_extra(env, extra)),
            Marker::Compare { lhs, op, rhs } => {
                let is_extra =
                    matches!(lhs, Value::Variable(Variable::Extra)) || matches!(rhs, Value::Variable(Variable::Extra));
                let value = |v: &Value| match v {
                    Value::Variable(var) => env.get(*var, extra),
                    // Extras compare as normalised names (`Socks` is `socks`).
                    Value::String(s) if is_extra => {
                        s.parse::<Name>().map(|n| n.to_string()).unwrap_or_else(|_| s.clone())
                    }
                    Value::String(s) => s.clone(),
                };
                let (l, r) = (value(lhs), value(rhs));
                match op {
                    MarkerOp::In => r.contains(&l),
                    MarkerOp::NotIn => !r.contains(&l),
                    MarkerOp::Compare(o) => compare(&l, o, &r),
                }
            }
        }
    }
}

/// `packaging`'s `_eval_op`: a version comparison when `op rhs` is a specifier and `lhs` a
/// version, else Python's string comparison.
fn compare(lhs: &str, op: &str, rhs: &str) -> bool {
    if let (Ok(spec), Ok(version)) = (format!("{op}{rhs}").parse::<Specifier>(), lhs.parse::<Version>()) {
        return spec.contains(&version);
    }
    match op {
        "==" | "===" => lhs == rhs,
        "!=" => lhs != rhs,
        "<" => lhs < rhs,
        "<=" => lhs <= rhs,
        ">" => lhs > rhs,
        ">=" => lhs >= rhs,
        // `~=` between strings is undefined in `packaging` (an error there); it holds nowhere.
        _ => false,
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Variable(v) => f.write_str(v.name()),
            Value::String(s) if s.contains('"') => write!(f, "'{s}'"),
            Value::String(s) => write!(f, "\"{s}\""),
        }
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = |f: &mut fmt::Formatter<'_>, all: &[Marker], word: &str, parens: bool| {
            for (i, m) in all.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                // `and` binds tighter than `or`: only an `or` inside an `and` needs parentheses.
                if parens && matches!(m, Marker::Or(_)) {
                    write!(f, "({m})")?;
                } else {
                    write!(f, "{m}")?;
                }
            }
            Ok(())
        };
        match self {
            Marker::Compare { lhs, op, rhs } => {
                let op = match op {
                    MarkerOp::Compare(o) => o,
                    MarkerOp::In => "in",
                    MarkerOp::NotIn => "not in",
                };
                write!(f, "{lhs} {op} {rhs}")
            }
            Marker::And(all) => joined(f, all, "and", true),
            Marker::Or(any) => joined(f, any, "or", false),
        }
    }
}

/// A tokenizer and recursive-descent parser over a marker's text.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> MarkerError {
        MarkerError { what: "marker", text: self.text.trim().to_owned(), reason: reason.into() }
    }

    fn skip_space(&mut self) {
        while self.text[self.at..].starts_with([' ', '\t']) {
            self.at += 1;
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    /// A keyword (`and`, `or`, `in`, `not`) followed by a non-identifier character.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with(word) && !rest[word.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Marker, MarkerError> {
        let mut any = vec![self.and()?];
        while self.keyword("or") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 { any.pop().unwrap() } else { Marker::Or(any) })
    }

    fn and(&mut self) -> Result<Marker, MarkerError> {
        let mut all = vec![self.atom()?];
        while self.keyword("and") {
            all.push(self.atom()?);
        }
        Ok(if all.len() == 1 { all.pop().unwrap() } else { Marker::And(all) })
    }

    fn atom(&mut self) -> Result<Marker, MarkerError> {
        self.skip_space();
        if self.rest().starts_with('(') {
            self.at += 1;
            let inner = self.or()?;
            self.skip_space();
            if !self.rest().starts_with(')') {
                return Err(self.error("a `(` is not closed"));
            }
            self.at += 1;
            return Ok(inner);
        }
        let lhs = self.value()?;
        let op = self.op()?;
        let rhs = self.value()?;
        if matches!((&lhs, &rhs), (Value::String(_), Value::String(_))) {
            return Err(self.error("a comparison must name a variable (`python_version`, `sys_platform`, …)"));
        }
        Ok(Marker::Compare { lhs, op, rhs })
    }

    fn value(&mut self) -> Result<Value, MarkerError> {
        self.skip_space();
        let rest = self.rest();
        if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = rest[1..].find(quote).ok_or_else(|| self.error("a quoted string is not closed"))?;
            let s = rest[1..1 + end].to_owned();
            self.at += end + 2;
            return Ok(Value::String(s));
        }
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        let word = &rest[..len];
        match VARIABLES.iter().find(|(n, _)| *n == word) {
            Some((_, v)) => {
                self.at += len;
                Ok(Value::Variable(*v))
            }
            None if word.is_empty() => {
                Err(self.error(format!("expected a variable or a quoted string at `{}`", rest.trim())))
            }
            None => Err(self.error(format!("`{word}` is not a marker variable"))),
        }
    }

    fn op(&mut self) -> Result<MarkerOp, MarkerError> {
        self.skip_space();
        for o in ["===", "==", "!=", "<=", ">=", "~=", "<", ">"] {
            if self.rest().starts_with(o) {
                self.at += o.len();
                return Ok(MarkerOp::Compare(o));
            }
        }
        if self.keyword("in") {
            return Ok(MarkerOp::In);
        }
        if self.keyword("not") {
            if self.keyword("in") {
                return Ok(MarkerOp::NotIn);
            }
            return Err(self.error("`not` must be followed by `in`"));
        }
        Err(self.error(format!("expected an operator at `{}`", self.rest().trim())))
    }
}

impl FromStr for Marker {
    type Err = MarkerError;

    fn from_str(text: &str) -> Result<Self, MarkerError> {
        let mut p = Parser { text, at: 0 };
        let marker = p.or()?;
        p.skip_space();
        if !p.rest().is_empty() {
            return Err(p.error(format!("unexpected `{}`", p.rest().trim())));
        }
        Ok(marker)
    }
}

/// A PEP 508 dependency specifier: `name[extra,…] specifiers ; marker` or `name @ url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub name: Name,
    pub extras: Vec<Name>,
    pub specifiers: Specifiers,
    pub url: Option<String>,
    pub marker: Option<Marker>,
}

impl FromStr for Requirement {
    type Err = MarkerError;

    fn from_str(text: &str) -> Result<Self, MarkerError> {
        let bad = |reason: String| MarkerError { what: "requirement", text: text.trim().to_owned(), reason };
        let s = text.trim();
        let name_len =
            s.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(s.len());
        let name: Name = s[..name_len].parse().map_err(|e: super::NameError| bad(e.to_string()))?;
        let mut rest = s[name_len..].trim_start();
        let mut extras = Vec::new();
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad("a `[` of extras is not closed".into()))?;
            for extra in after[..end].split(',').map(str::trim).filter(|e| !e.is_empty()) {
                extras.push(extra.parse().map_err(|e: super::NameError| bad(e.to_string()))?);
            }
            rest = after[end + 1..].trim_start();
        }
        let (body, marker) = if let Some(url) = rest.strip_prefix('@') {
            // In a URL a `;` is part of it unless a space precedes it.
            match url.find(" ;") {
                Some(at) => (&rest[..at + 1], Some(&url[at + 2..])),
                None => (rest, None),
            }
        } else {
            match rest.split_once(';') {
                Some((body, marker)) => (body, Some(marker)),
                None => (rest, None),
            }
        };
        let body = body.trim();
        let (specifiers, url) = if let Some(url) = body.strip_prefix('@') {
            let url = url.trim();
            if url.is_empty() {
                return Err(bad("no URL follows `@`".into()));
            }
            (Specifiers::default(), Some(url.to_owned()))
        } else {
            let inner =
                body.strip_prefix('(').map(|b| b.strip_suffix(')').ok_or_else(|| bad("a `(` is not closed".into())));
            let specs = match inner {
                Some(inner) => inner?,
                None => body,
            };
            (specs.parse::<Specifiers>().map_err(|e| bad(e.to_string()))?, None)
        };
        let marker = match marker {
            Some(m) => Some(m.parse::<Marker>().map_err(|e| bad(e.reason))?),
            None => None,
        };
        Ok(Requirement { name, extras, specifiers, url, marker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::cpython_linux((3, 11), "3.11.2", "x86_64")
    }

    fn holds(marker: &str) -> bool {
        marker.parse::<Marker>().unwrap_or_else(|e| panic!("{e}")).evaluate(&env())
    }

    #[test]
    fn markers_evaluate_for_the_environment() {
        for yes in [
            "python_version >= '3.8'",
            "python_version > '3.9'",
            "python_version < \"3.12\"",
            "python_full_version == '3.11.2'",
            "python_version == '3.11.*'",
            "python_version ~= '3.10'",
            "sys_platform == 'linux' and platform_machine == 'x86_64'",
            "sys_platform == 'win32' or os_name == 'posix'",
            "(sys_platform == 'win32' or sys_platform == 'linux') and python_version >= '3'",
            "'linux' in sys_platform",
            "platform_machine not in 'arm64 aarch64'",
            "implementation_name == 'cpython' and platform_python_implementation != 'PyPy'",
            "python_implementation == 'CPython'",
            "platform_system == 'Linux'",
            "'3.8' < python_version",
        ] {
            assert!(holds(yes), "{yes}");
        }
        for no in [
            "python_version < '3.8'",
            // Versions, not strings: `3.11` > `3.9`.
            "python_version < '3.9'",
            "sys_platform == 'win32'",
            "sys_platform == 'linux' and python_version < '3.10'",
            "extra == 'socks'",
            "platform_machine in 'arm64 aarch64'",
        ] {
            assert!(!holds(no), "{no}");
        }
    }

    #[test]
    fn extras_are_evaluated_as_normalised_names() {
        let m: Marker = "extra == 'Socks_Proxy' and python_version >= '3.7'".parse().unwrap();
        let socks: Name = "socks-proxy".parse().unwrap();
        let other: Name = "other".parse().unwrap();
        assert!(m.evaluate_with_extras(&env(), [&socks]));
        assert!(m.evaluate_with_extras(&env(), [&other, &socks]));
        assert!(!m.evaluate_with_extras(&env(), [&other]));
        assert!(!m.evaluate_with_extras(&env(), []));
    }

    #[test]
    fn markers_print_back_parseable() {
        for text in ["python_version < \"3.12\"", "(os_name == \"nt\" or os_name == \"posix\") and extra == \"x\""] {
            let m: Marker = text.parse().unwrap();
            assert_eq!(m.to_string(), text);
            assert_eq!(m.to_string().parse::<Marker>().unwrap(), m);
        }
    }

    #[test]
    fn malformed_markers_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("python_version", "expected an operator"),
            ("python_version >=", "expected a variable or a quoted string"),
            ("pyth_version == '3'", "`pyth_version` is not a marker variable"),
            ("(python_version == '3'", "`(` is not closed"),
            ("python_version == '3", "quoted string is not closed"),
            ("'a' == 'b'", "must name a variable"),
            ("os_name not 'x'", "`not` must be followed by `in`"),
            ("os_name == 'x' os_name", "unexpected `os_name`"),
        ] {
            let err = bad.parse::<Marker>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains("invalid PEP 508 marker"), "{bad}: {err}");
        }
    }

    #[test]
    fn requirements_parse_as_pep_508_says() {
        let r: Requirement =
            "PySocks[Extra_A, b] (>=1.5.6,!=1.5.7) ; python_version >= '3.7' and extra == 'socks'".parse().unwrap();
        assert_eq!(r.name.as_str(), "pysocks");
        assert_eq!(r.extras.iter().map(Name::as_str).collect::<Vec<_>>(), ["extra-a", "b"]);
        assert_eq!(r.specifiers.to_string(), ">=1.5.6,!=1.5.7");
        assert_eq!(r.marker.unwrap().to_string(), "python_version >= \"3.7\" and extra == \"socks\"");
        let r: Requirement = "idna<4,>=2.5".parse().unwrap();
        assert!(r.specifiers.contains(&"3.7".parse().unwrap()) && !r.specifiers.contains(&"4.0".parse().unwrap()));
        let r: Requirement = "pkg @ https://example.invalid/p.whl;x ; os_name == 'posix'".parse().unwrap();
        assert_eq!(r.url.as_deref(), Some("https://example.invalid/p.whl;x"));
        assert!(r.marker.is_some());
        let r: Requirement = "numpy".parse().unwrap();
        assert!(r.specifiers.0.is_empty() && r.marker.is_none());
        for (bad, reason) in [
            ("-x", "not a valid Python distribution name"),
            ("a[b", "not closed"),
            ("a >= 1.0 ; os_nam == 'x'", "not a marker variable"),
            ("a =1.0", "must begin with"),
        ] {
            let err = bad.parse::<Requirement>().unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
