//! PEP 751 lock files (`pylock.toml`, `pylock.NAME.toml`): `[[packages]]` with their
//! `[[packages.wheels]]`, each wheel named with its URL (or path), size and hashes.
//!
//! Only what installs wheels is read: a package that offers no wheel (an sdist, a VCS
//! checkout, a directory or an archive alone) is refused, naming it. Keys this reader does
//! not need (`upload-time`, `index`, `dependencies`, `[tool]`, …) are ignored, as PEP 751 lets
//! a reader do; a lock version of another major is refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::marker::Marker;
use super::version::{Specifiers, Version};
use super::Name;
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum PylockError {
    #[error("failed to read `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("`{}` has `lock-version = \"{found}\"`; this candidate reads version 1", path.display())]
    Version { path: PathBuf, found: String },
    #[error("`{}`, package `{package}`: {reason}", path.display())]
    Package { path: PathBuf, package: String, reason: String },
}

/// A wheel a package offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFile {
    /// The file name (`attrs-25.1.0-py3-none-any.whl`).
    pub name: String,
    /// Where to get it: an absolute URL, or a path relative to the lock file.
    pub location: Location,
    pub size: Option<u64>,
    pub sha256: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Url(String),
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: Name,
    pub version: Version,
    pub marker: Option<Marker>,
    pub requires_python: Option<Specifiers>,
    pub wheels: Vec<WheelFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pylock {
    /// The environments the lock was made for; empty when it does not say.
    pub environments: Vec<Marker>,
    pub requires_python: Option<Specifiers>,
    pub packages: Vec<Package>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawLock {
    lock_version: String,
    #[serde(default)]
    environments: Vec<String>,
    requires_python: Option<String>,
    #[serde(default)]
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    requires_python: Option<String>,
    #[serde(default)]
    wheels: Vec<RawWheel>,
    sdist: Option<toml::Value>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawWheel {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
}

impl Pylock {
    pub fn load(path: &Path) -> Result<Pylock, PylockError> {
        let text =
            fs_err::read_to_string(path).map_err(|source| PylockError::Read { path: path.to_owned(), source })?;
        Pylock::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Pylock, PylockError> {
        let raw: RawLock = toml::from_str(text)
            .map_err(|e| PylockError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        if raw.lock_version.split('.').next() != Some("1") {
            return Err(PylockError::Version { path: path.to_owned(), found: raw.lock_version });
        }
        let parse_error = |message: String| PylockError::Parse { path: path.to_owned(), message };
        let environments = raw
            .environments
            .iter()
            .map(|m| m.parse::<Marker>().map_err(|e| parse_error(format!("`environments`: {e}"))))
            .collect::<Result<_, _>>()?;
        let requires_python = match &raw.requires_python {
            Some(s) => Some(s.parse::<Specifiers>().map_err(|e| parse_error(format!("`requires-python`: {e}")))?),
            None => None,
        };
        let packages = raw.packages.into_iter().map(|p| package(path, p)).collect::<Result<_, _>>()?;
        Ok(Pylock { environments, requires_python, packages })
    }
}

fn package(path: &Path, raw: RawPackage) -> Result<Package, PylockError> {
    let bad = |reason: String| PylockError::Package { path: path.to_owned(), package: raw.name.clone(), reason };
    let name: Name = raw.name.parse().map_err(|e: super::NameError| bad(e.to_string()))?;
    let version = raw
        .version
        .as_deref()
        .ok_or_else(|| bad("it has no `version`; only packages from an index are installed".into()))?;
    let version: Version = version.parse().map_err(|e: super::version::VersionError| bad(e.to_string()))?;
    let marker = match &raw.marker {
        Some(m) => Some(m.parse::<Marker>().map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    let requires_python = match &raw.requires_python {
        Some(s) => Some(s.parse::<Specifiers>().map_err(|e| bad(format!("`requires-python`: {e}")))?),
        None => None,
    };
    if raw.wheels.is_empty() {
        let what = if raw.sdist.is_some() {
            "it has only an sdist; a wheel must be built from it and pinned"
        } else if raw.vcs.is_some() || raw.directory.is_some() || raw.archive.is_some() {
            "it comes from a VCS, a directory or an archive; only wheels are installed: build a wheel and pin it"
        } else {
            "it lists no `[[packages.wheels]]`"
        };
        return Err(bad(what.into()));
    }
    let mut wheels = Vec::new();
    for w in raw.wheels {
        let location = match (w.url, w.path) {
            (Some(url), _) => Location::Url(url),
            (None, Some(p)) => Location::Path(p),
            (None, None) => return Err(bad("a wheel has neither `url` nor `path`".into())),
        };
        let from_location = match &location {
            Location::Url(u) | Location::Path(u) => u.rsplit('/').next().unwrap_or(u).to_owned(),
        };
        let file = w.name.unwrap_or(from_location);
        if !file.ends_with(".whl") {
            return Err(bad(format!("`{file}` is not a wheel (`.whl`)")));
        }
        let hex =
            w.hashes.get("sha256").ok_or_else(|| bad(format!("wheel `{file}` has no `sha256` in its `hashes`")))?;
        let sha256 = Digest::from_hex(hex)
            .map_err(|_| bad(format!("wheel `{file}`: `{hex}` is not a sha256 (64 hex digits)")))?;
        wheels.push(WheelFile { name: file, location, size: w.size, sha256 });
    }
    Ok(Package { name, version, marker, requires_python, wheels })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0569859f95fc761b18b45ef421b1290a0f65f147e92a1e5eb3e635f9a5e4e66f";

    fn parse(text: &str) -> Result<Pylock, PylockError> {
        Pylock::parse(Path::new("pylock.toml"), text)
    }

    #[test]
    fn a_pep_751_lock_is_read() {
        let text = format!(
            "lock-version = '1.0'\nrequires-python = '>=3.9'\ncreated-by = 'uv'\nenvironments = [\"sys_platform == 'linux'\"]\n\n\
             [[packages]]\nname = 'Attrs'\nversion = '25.1.0'\nmarker = \"python_version >= '3.8'\"\nindex = 'https://example.invalid/simple'\n\
             [[packages.wheels]]\nname = 'attrs-25.1.0-py3-none-any.whl'\nupload-time = 2025-02-11T00:00:00Z\n\
             url = 'https://example.invalid/attrs-25.1.0-py3-none-any.whl'\nsize = 63152\nhashes = {{sha256 = '{H}'}}\n\n\
             [[packages]]\nname = 'local'\nversion = '1.0'\n[[packages.wheels]]\npath = 'wheels/local-1.0-py3-none-any.whl'\nhashes = {{sha256 = '{H}', sha512 = 'ab'}}\n\
             [packages.sdist]\nurl = 'https://example.invalid/local-1.0.tar.gz'\nhashes = {{sha256 = '{H}'}}\n\n[tool.x]\ny = 1\n"
        );
        let lock = parse(&text).unwrap();
        assert_eq!(lock.environments.len(), 1);
        assert_eq!(lock.requires_python.unwrap().to_string(), ">=3.9");
        let a = &lock.packages[0];
        assert_eq!(
            (a.name.as_str(), a.version.to_string().as_str(), a.wheels[0].size),
            ("attrs", "25.1.0", Some(63152))
        );
        assert_eq!(a.wheels[0].location, Location::Url("https://example.invalid/attrs-25.1.0-py3-none-any.whl".into()));
        let l = &lock.packages[1];
        assert_eq!(
            (l.wheels[0].name.as_str(), &l.wheels[0].location),
            ("local-1.0-py3-none-any.whl", &Location::Path("wheels/local-1.0-py3-none-any.whl".into()))
        );
        assert_eq!(l.wheels[0].sha256.hex(), H);
    }

    #[test]
    fn what_cannot_be_installed_as_a_wheel_is_refused_naming_the_package() {
        let head = "lock-version = '1.0'\n[[packages]]\nname = 'p'\n";
        let wheel = format!("[[packages.wheels]]\nurl = 'https://example.invalid/p-1.0-py3-none-any.whl'\nhashes = {{sha256 = '{H}'}}\n");
        for (body, reason) in [
            (format!("version = '1.0'\n[packages.sdist]\nurl = 'https://example.invalid/p-1.0.tar.gz'\nhashes = {{sha256 = '{H}'}}\n"), "only an sdist; a wheel must be built from it and pinned"),
            ("version = '1.0'\n[packages.vcs]\ntype = 'git'\nurl = 'x'\ncommit-id = 'y'\n".into(), "comes from a VCS"),
            (wheel.clone(), "has no `version`"),
            (format!("version = '1.0'\n{}", wheel.replace(&format!("sha256 = '{H}'"), "md5 = 'x'")), "has no `sha256`"),
            (format!("version = '1.0'\n{}", wheel.replace(H, "xyz")), "not a sha256"),
            (format!("version = '1.0'\nmarker = 'bogus'\n{wheel}"), "invalid PEP 508 marker"),
            (format!("version = '1.0'\n{}", wheel.replace(".whl", ".tar.gz")), "is not a wheel"),
        ] {
            let e = parse(&format!("{head}{body}")).unwrap_err().to_string();
            assert!(e.starts_with("`pylock.toml`, package `p`: ") && e.contains(reason), "{body}: {e}");
        }
        let e = parse("lock-version = '2.0'\n").unwrap_err().to_string();
        assert!(e.contains("`lock-version = \"2.0\"`"), "{e}");
        let e = parse("packages = []\n").unwrap_err().to_string();
        assert!(e.contains("invalid `pylock.toml`") && e.contains("lock-version"), "{e}");
    }
}
