//! The image's Python, as its own locked Debian packages say: the interpreter a venv is made
//! for and wheels are chosen for is the image's, never the host's.
//!
//! This is the one place that derives it (lock chooses wheel tags and evaluates markers with
//! it; the layers stage makes the venv with it):
//! - a locked `python3.X` or `python3.X-minimal` gives the minor version and the full version
//!   (the upstream part of its Debian version: `3.11.2-6+deb12u1` → `3.11.2`);
//! - `libc6` gives the glibc version, which bounds the `manylinux_2_Y` tags;
//! - the image architecture gives the machine name wheels and markers use.

use crate::debian::packages::Architecture;
use crate::lockfile::{LockedPackage, Lockfile};
use crate::python::marker::Environment;

/// The interpreter and platform of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `(3, 11)`.
    pub python_minor: (u32, u32),
    /// `3.11.2`: the upstream part of the interpreter package's Debian version.
    pub python_full: String,
    /// `(2, 36)`, from `libc6`.
    pub glibc: (u32, u32),
    /// The machine as Python names it (`platform.machine()`): `x86_64`, `aarch64`, …
    pub machine: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "the lockfile has no Python interpreter for `{architecture}`: no `python3.X` or `python3.X-minimal` \
         package is locked (python layers need one, e.g. by installing `python3` in a layer below)"
    )]
    NoInterpreter { architecture: String },
    #[error(
        "the lockfile has several Python interpreters ({found}) and no `python3` package says which is the default"
    )]
    SeveralInterpreters { found: String },
    #[error("the lockfile has no `libc6` for `{architecture}`: the glibc version bounds the `manylinux` wheel tags")]
    NoGlibc { architecture: String },
    #[error("cannot read a version from `{package}` `{version}`: expected `MAJOR.MINOR…` in its upstream version")]
    BadVersion { package: String, version: String },
    #[error("no Python machine name is known for the Debian architecture `{0}`")]
    UnknownArchitecture(String),
}

impl Target {
    /// The image's Python from the locked Debian packages of `architecture`.
    pub fn from_lockfile(lockfile: &Lockfile, architecture: &Architecture) -> Result<Target, TargetError> {
        Target::from_packages(&lockfile.packages, architecture)
    }

    /// The same, from the locked packages alone (while a lockfile is being made).
    pub fn from_packages(packages: &[LockedPackage], architecture: &Architecture) -> Result<Target, TargetError> {
        let machine = machine(architecture)?;
        let ours = |p: &&LockedPackage| p.architecture == *architecture || p.architecture.is_all();
        // Every locked interpreter: `python3.11` and `python3.11-minimal` are one.
        let mut interpreters: Vec<((u32, u32), &LockedPackage)> = Vec::new();
        for p in packages.iter().filter(ours) {
            let name = p.name.as_str();
            let Some(minor) = name.strip_prefix("python3.").map(|m| m.strip_suffix("-minimal").unwrap_or(m)) else {
                continue;
            };
            let Ok(minor) = minor.parse::<u32>() else { continue };
            if !interpreters.iter().any(|(m, _)| *m == (3, minor)) {
                interpreters.push(((3, minor), p));
            }
        }
        interpreters.sort_by_key(|(m, _)| *m);
        let (python_minor, package) = match interpreters.as_slice() {
            [] => return Err(TargetError::NoInterpreter { architecture: architecture.as_str().to_owned() }),
            [one] => *one,
            several => {
                // Debian's `python3` names the default interpreter by its own version.
                let default = packages
                    .iter()
                    .filter(ours)
                    .find(|p| p.name.as_str() == "python3")
                    .and_then(|p| major_minor(p.version.upstream()));
                match several.iter().find(|(m, _)| Some(*m) == default) {
                    Some(one) => *one,
                    None => {
                        let found = several.iter().map(|(_, p)| format!("`{}`", p.name)).collect::<Vec<_>>();
                        return Err(TargetError::SeveralInterpreters { found: found.join(", ") });
                    }
                }
            }
        };
        // Debian writes a pre-release `3.14.0~rc3` (sorting before `3.14.0`), PEP 440 `3.14.0rc3`.
        let python_full = package.version.upstream().replace('~', "");
        if major_minor(&python_full) != Some(python_minor)
            || python_full.parse::<crate::python::version::Version>().is_err()
        {
            return Err(TargetError::BadVersion {
                package: package.name.to_string(),
                version: package.version.as_str().to_owned(),
            });
        }
        let libc = packages
            .iter()
            .filter(ours)
            .find(|p| p.name.as_str() == "libc6")
            .ok_or_else(|| TargetError::NoGlibc { architecture: architecture.as_str().to_owned() })?;
        let glibc = major_minor(libc.version.upstream()).ok_or_else(|| TargetError::BadVersion {
            package: "libc6".into(),
            version: libc.version.as_str().to_owned(),
        })?;
        Ok(Target { python_minor, python_full, glibc, machine })
    }

    /// The marker environment of this interpreter on this machine.
    pub fn environment(&self) -> Environment {
        Environment::cpython_linux(self.python_minor, &self.python_full, self.machine)
    }
}

/// `3.11.2` → `(3, 11)`; `2.36` → `(2, 36)`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

/// The machine name Python reports on a Debian architecture.
fn machine(architecture: &Architecture) -> Result<&'static str, TargetError> {
    Ok(match architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        "armhf" => "armv7l",
        "ppc64el" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => return Err(TargetError::UnknownArchitecture(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str, arch: &str) -> LockedPackage {
        LockedPackage {
            name: name.parse().unwrap(),
            version: version.parse().unwrap(),
            architecture: arch.parse().unwrap(),
            archive: "debian".parse().unwrap(),
            layer: "base".parse().unwrap(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: crate::digest::Digest::of(name.as_bytes()),
            reason: "requested".into(),
            depends: None,
        }
    }

    fn lockfile(packages: Vec<LockedPackage>) -> Lockfile {
        Lockfile {
            version: crate::lockfile::VERSION,
            recipe: crate::digest::Digest::of(b"r"),
            archives: vec![],
            inputs: vec![],
            packages,
            wheels: vec![],
        }
    }

    #[test]
    fn the_interpreter_and_glibc_come_from_the_locked_packages() {
        let lock = lockfile(vec![
            package("libc6", "2.36-9+deb12u4", "amd64"),
            package("python3.11-minimal", "3.11.2-6+deb12u1", "amd64"),
            package("python3.11", "3.11.2-6+deb12u1", "amd64"),
        ]);
        let t = Target::from_lockfile(&lock, &"amd64".parse().unwrap()).unwrap();
        assert_eq!(
            t,
            Target { python_minor: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), machine: "x86_64" }
        );
    }

    /// Debian's pre-release `3.14.0~rc3` is PEP 440's `3.14.0rc3` (it once panicked the lock).
    #[test]
    fn a_pre_release_interpreter_has_its_pep_440_version() {
        let lock = lockfile(vec![package("libc6", "2.41-6", "amd64"), package("python3.14", "3.14.0~rc3-1", "amd64")]);
        let t = Target::from_lockfile(&lock, &"amd64".parse().unwrap()).unwrap();
        assert_eq!(t.python_full, "3.14.0rc3");
        assert!(t.python_full.parse::<crate::python::version::Version>().is_ok());
    }

    #[test]
    fn several_interpreters_are_settled_by_python3_or_refused() {
        let mut packages = vec![
            package("libc6", "2.36-9", "arm64"),
            package("python3.11", "3.11.2-6", "arm64"),
            package("python3.12-minimal", "3.12.1-1", "arm64"),
        ];
        let arm: Architecture = "arm64".parse().unwrap();
        let err = Target::from_lockfile(&lockfile(packages.clone()), &arm).unwrap_err().to_string();
        assert!(err.contains("`python3.11`, `python3.12-minimal`"), "{err}");
        packages.push(package("python3", "3.12.1-1", "arm64"));
        let t = Target::from_lockfile(&lockfile(packages), &arm).unwrap();
        assert_eq!((t.python_minor, t.python_full.as_str(), t.machine), ((3, 12), "3.12.1", "aarch64"));
    }

    #[test]
    fn missing_pieces_are_named() {
        let amd: Architecture = "amd64".parse().unwrap();
        let err = Target::from_lockfile(&lockfile(vec![package("libc6", "2.36-9", "amd64")]), &amd).unwrap_err();
        assert!(err.to_string().contains("no `python3.X` or `python3.X-minimal` package is locked"), "{err}");
        // Another architecture's interpreter is not the image's.
        let lock = lockfile(vec![package("libc6", "2.36-9", "amd64"), package("python3.11", "3.11.2-6", "i386")]);
        assert!(matches!(Target::from_lockfile(&lock, &amd), Err(TargetError::NoInterpreter { .. })));
        let lock = lockfile(vec![package("python3.11", "3.11.2-6", "amd64")]);
        let err = Target::from_lockfile(&lock, &amd).unwrap_err();
        assert!(err.to_string().contains("no `libc6` for `amd64`"), "{err}");
    }
}
