//! Budgets: how much a channel lets a candidate change against the candidate at its head, and
//! what it must and must not contain. A channel's `[channel.NAME.budgets]` table
//! (`channels.toml`) sets them; `candidate promote` measures the candidate with the diff
//! engine ([`crate::diff`]), refuses naming every budget it exceeds with the figures, and
//! lets a key listed in `override-keys` promote it anyway with `--override REASON`, which is
//! recorded (reason, key, the exceeded budgets) in the signed promotion record.
//!
//! Relative budgets (growth, packages added, packages removed) compare with the channel's
//! head and do not apply to its first record; absolute ones (size, forbidden, required)
//! always do. "Packages" are the candidate's Debian packages and Python wheels: added and
//! removed ones are counted as `diff` lists them (a package of two architectures twice),
//! forbidden and required ones are matched by name.
//!
//! [`gate`] is what `promote` calls: the diff against the head, the budgets' verdict and the
//! release note ([`crate::release_notes`]) from the same diff, so the two cannot disagree.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::diff::PackageChangeKind;
use crate::digest::Digest;
use crate::error::CheckFailed;
use crate::keys::{PrivateKey, PublicKey};
use crate::release_notes::{Candidate, ReleaseNote};

/// A size in bytes, written in a policy as a number of bytes or as text with a unit: `B`,
/// SI (`kB`, `MB`, `GB`, `TB`: powers of 1000) or IEC (`KiB`, `MiB`, `GiB`, `TiB`: powers
/// of 1024), e.g. `"512 MiB"`, `"1.5GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a size (bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)")]
pub struct ParseSizeError(String);

impl FromStr for Size {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSizeError(s.to_owned());
        let text = s.trim();
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        let unit: u64 = match unit {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "MB" => 1000u64.pow(2),
            "GB" => 1000u64.pow(3),
            "TB" => 1000u64.pow(4),
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(bad()),
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(unit).map(Size).ok_or_else(bad);
        }
        // A fraction ("1.5GB"): exact enough for a budget, rounded down to a byte.
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = value * unit as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Size(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes, or text such as \"512 MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[channel.NAME.budgets]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BudgetsFile {
    /// The root filesystem's size (its uncompressed tar, the manifest's `rootfs.size`).
    max_size: Option<Size>,
    /// How much larger than the head's root filesystem, in percent.
    max_growth_percent: Option<f64>,
    max_packages_added: Option<u64>,
    max_packages_removed: Option<u64>,
    /// Names or globs (`*` matches any run of characters) no package of the candidate may match.
    #[serde(default)]
    forbidden_packages: Vec<String>,
    /// Names or globs each of which some package of the candidate must match.
    #[serde(default)]
    required_packages: Vec<String>,
    /// Public keys (relative to the policy) whose holders may promote over budget.
    #[serde(default)]
    override_keys: Vec<PathBuf>,
}

impl BudgetsFile {
    /// The budgets, with their override keys loaded (`load` reads keys relative to the
    /// policy); an error names the bad value.
    pub fn load(
        self,
        load: impl Fn(&[PathBuf]) -> Result<Vec<PublicKey>, crate::keys::KeyError>,
    ) -> Result<Budgets, String> {
        if let Some(percent) = self.max_growth_percent {
            if !percent.is_finite() || percent < 0.0 {
                return Err(format!("`max-growth-percent` must be a number of percent >= 0, not {percent}"));
            }
        }
        let override_keys = load(&self.override_keys).map_err(|e| e.to_string())?;
        Ok(Budgets {
            max_size: self.max_size,
            max_growth_percent: self.max_growth_percent,
            max_packages_added: self.max_packages_added,
            max_packages_removed: self.max_packages_removed,
            forbidden_packages: self.forbidden_packages,
            required_packages: self.required_packages,
            override_keys,
        })
    }
}

/// A channel's budgets, loaded.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    pub max_size: Option<Size>,
    pub max_growth_percent: Option<f64>,
    pub max_packages_added: Option<u64>,
    pub max_packages_removed: Option<u64>,
    pub forbidden_packages: Vec<String>,
    pub required_packages: Vec<String>,
    pub override_keys: Vec<PublicKey>,
}

/// What budgets are measured on: the candidate, and what changed since the head.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    /// The candidate's root filesystem size, in bytes.
    pub size: u64,
    /// The head's; `None` when the channel has no head (its first record).
    pub head_size: Option<u64>,
    /// Packages and wheels added and removed since the head, as `diff` lists them (a package
    /// of two architectures twice).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Every package and wheel name of the candidate.
    pub installed: BTreeSet<String>,
}

/// One budget a candidate exceeds, with the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "exceeds", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Exceeded {
    MaxSize { size: u64, budget: u64 },
    MaxGrowthPercent { from: u64, to: u64, budget: f64 },
    MaxPackagesAdded { added: u64, budget: u64 },
    MaxPackagesRemoved { removed: u64, budget: u64 },
    ForbiddenPackage { package: String, pattern: String },
    RequiredPackage { pattern: String },
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::MaxSize { size, budget } => write!(f, "rootfs size: {size} bytes > budget {budget} bytes"),
            Exceeded::MaxGrowthPercent { from, to, budget } => {
                write!(f, "rootfs growth: {:.2}% ({from} -> {to} bytes) > budget {budget}%", growth(*from, *to))
            }
            Exceeded::MaxPackagesAdded { added, budget } => write!(f, "packages added: {added} > budget {budget}"),
            Exceeded::MaxPackagesRemoved { removed, budget } => {
                write!(f, "packages removed: {removed} > budget {budget}")
            }
            Exceeded::ForbiddenPackage { package, pattern } => {
                write!(f, "forbidden package: `{package}` (matches `{pattern}`)")
            }
            Exceeded::RequiredPackage { pattern } => write!(f, "required package missing: `{pattern}`"),
        }
    }
}

/// Growth from `from` to `to` bytes, in percent.
fn growth(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) * 100.0 / from.max(1) as f64
}

/// Whether a package name matches a name or glob of the policy.
fn matches(pattern: &str, name: &str) -> bool {
    // Package names hold no `/`: a path pattern of one component is a name glob.
    crate::debian::per_machine::matches(pattern, name)
}

impl Budgets {
    /// Every budget the measured candidate exceeds, in the policy's order of keys: size,
    /// growth, added, removed, then each forbidden match and each missing requirement.
    pub fn evaluate(&self, m: &Measure) -> Vec<Exceeded> {
        let mut out = Vec::new();
        if let Some(Size(budget)) = self.max_size {
            if m.size > budget {
                out.push(Exceeded::MaxSize { size: m.size, budget });
            }
        }
        if let Some(head_size) = m.head_size {
            if let Some(budget) = self.max_growth_percent {
                if growth(head_size, m.size) > budget {
                    out.push(Exceeded::MaxGrowthPercent { from: head_size, to: m.size, budget });
                }
            }
            let count = |v: &[String]| v.len() as u64;
            if let Some(budget) = self.max_packages_added.filter(|b| count(&m.added) > *b) {
                out.push(Exceeded::MaxPackagesAdded { added: count(&m.added), budget });
            }
            if let Some(budget) = self.max_packages_removed.filter(|b| count(&m.removed) > *b) {
                out.push(Exceeded::MaxPackagesRemoved { removed: count(&m.removed), budget });
            }
        }
        for package in &m.installed {
            if let Some(pattern) = self.forbidden_packages.iter().find(|p| matches(p, package)) {
                out.push(Exceeded::ForbiddenPackage { package: package.clone(), pattern: pattern.clone() });
            }
        }
        for pattern in &self.required_packages {
            if !m.installed.iter().any(|p| matches(pattern, p)) {
                out.push(Exceeded::RequiredPackage { pattern: pattern.clone() });
            }
        }
        out
    }
}

/// An override of a channel's budgets, as its promotion record carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub reason: String,
    /// The id of the key that overrode them (the sha256 of its SPKI DER).
    pub key: Digest,
    /// The budgets it overrode (none when the candidate was within them all).
    pub exceeded: Vec<Exceeded>,
}

/// What a promotion's gate adds to its record's predicate.
#[derive(Debug)]
pub struct Gate {
    pub overridden: Option<Override>,
    pub release_note: ReleaseNote,
}

impl Gate {
    /// The predicate's fields for it: `override` (when there is one) and `release-note`.
    pub fn predicate_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        if let Some(o) = &self.overridden {
            fields.insert("override".into(), serde_json::to_value(o).expect("an override serialises"));
        }
        fields.insert(
            "release-note".into(),
            serde_json::to_value(&self.release_note).expect("a release note serialises"),
        );
        fields
    }
}

/// The channel's head, as the gate compares with it.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub sequence: u64,
    pub candidate: Digest,
}

/// A promotion's gate: diffs the candidate (folder `dir`) against the channel's head,
/// evaluates the channel's budgets on that diff, and writes the release note from it. A
/// candidate over budget is refused naming every exceeded budget, unless `override_reason`
/// comes with a key listed in `override-keys`.
pub fn gate(
    ctx: &Context,
    channel: &str,
    budgets: Option<&Budgets>,
    head: Option<Head>,
    dir: &Path,
    key: &PrivateKey,
    override_reason: Option<&str>,
) -> anyhow::Result<Gate> {
    let refuse = |message: String, hint: Option<String>| -> anyhow::Error { CheckFailed { message, hint }.into() };
    if override_reason.is_some() && !budgets.is_some_and(|b| b.override_keys.iter().any(|k| k.id == key.public.id)) {
        return Err(refuse(
            format!(
                "key {} (`{}`) may not override the budgets of channel `{channel}`: it is not in its `override-keys`",
                key.public.id, key.public.origin
            ),
            None,
        ));
    }
    let to = Candidate::read(dir)?;
    let from = head
        .map(|h| {
            let (dir, _) = crate::registry::resolve(&ctx.store, &h.candidate.to_string()).with_context(|| {
                format!(
                    "cannot read channel `{channel}`'s head, record {} ({}), to compare with",
                    h.sequence, h.candidate
                )
            })?;
            Candidate::read(&dir)
        })
        .transpose()?;
    let diff = from.as_ref().map(|from| crate::diff::diff(ctx, &path_arg(&from.dir), &path_arg(dir))).transpose()?;
    let (packages, wheels) = match diff {
        Some(d) => (d.packages, d.wheels),
        None => crate::diff::changes_from_nothing(&to.manifest),
    };
    let release_note = crate::release_notes::generate(ctx, from.as_ref(), &to, &packages, &wheels)?;

    let Some(budgets) = budgets else {
        return Ok(Gate { overridden: None, release_note });
    };
    let names = |kind: PackageChangeKind| -> Vec<String> {
        let debian = packages.iter().filter(|p| p.change == kind).map(|p| p.name.to_string());
        debian.chain(wheels.iter().filter(|w| w.change == kind).map(|w| w.name.to_string())).collect()
    };
    let measure = Measure {
        size: to.manifest.rootfs.size,
        head_size: from.as_ref().map(|f| f.manifest.rootfs.size),
        added: if from.is_some() { names(PackageChangeKind::Added) } else { Vec::new() },
        removed: names(PackageChangeKind::Removed),
        installed: to
            .manifest
            .packages
            .iter()
            .flatten()
            .map(|p| p.name.to_string())
            .chain(to.manifest.wheels.iter().map(|w| w.name.to_string()))
            .collect(),
    };
    let exceeded = budgets.evaluate(&measure);
    let overridden = match override_reason {
        Some(reason) => Some(Override { reason: reason.to_owned(), key: key.public.id.0, exceeded }),
        None if exceeded.is_empty() => None,
        None => {
            let against = match head {
                Some(h) => format!("against its head, record {} ({})", h.sequence, h.candidate),
                None => "(its first record: only absolute budgets apply)".to_owned(),
            };
            let list: Vec<String> = exceeded.iter().map(ToString::to_string).collect();
            return Err(refuse(
                format!("candidate {} is over the budgets of channel `{channel}` {against}: {}", to.id, list.join("; ")),
                Some(
                    "a key in the channel's `override-keys` may promote it anyway: `candidate promote … --key KEY --override REASON`"
                        .to_owned(),
                ),
            ));
        }
    };
    Ok(Gate { overridden, release_note })
}

/// A folder as [`crate::diff::diff`] takes it (it also takes ids).
fn path_arg(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(toml_text: &str) -> Budgets {
        let file: BudgetsFile = toml::from_str(toml_text).unwrap();
        file.load(|_| Ok(Vec::new())).unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sizes_read_bytes_and_units() {
        let parse = |s: &str| s.parse::<Size>().map(|s| s.0).map_err(|e| e.to_string());
        assert_eq!(parse("1024"), Ok(1024));
        assert_eq!(parse("512 MiB"), Ok(512 << 20));
        assert_eq!(parse("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse("2 kB"), Ok(2000));
        assert_eq!(parse("3KiB"), Ok(3072));
        insta::assert_snapshot!(parse("12 parsecs").unwrap_err(), @"`12 parsecs` is not a size (bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)");
        assert!(parse("99999999999 TiB").is_err());
        let from_toml = |t: &str| toml::from_str::<BudgetsFile>(t).map(|f| f.max_size).map_err(|e| e.to_string());
        assert_eq!(from_toml("max-size = 4096").unwrap(), Some(Size(4096)));
        assert_eq!(from_toml("max-size = \"4 KiB\"").unwrap(), Some(Size(4096)));
        insta::assert_snapshot!(from_toml("max-size = -1").unwrap_err(), @r"
        TOML parse error at line 1, column 12
          |
        1 | max-size = -1
          |            ^^
        a size cannot be negative (-1)
        ");
    }

    #[test]
    fn a_policy_key_that_is_not_a_budget_is_refused() {
        let err = toml::from_str::<BudgetsFile>("max-pakages-added = 3").unwrap_err().to_string();
        assert!(err.contains("unknown field `max-pakages-added`"), "{err}");
        let file: BudgetsFile = toml::from_str("max-growth-percent = -5").unwrap();
        assert_eq!(
            file.load(|_| Ok(Vec::new())).unwrap_err(),
            "`max-growth-percent` must be a number of percent >= 0, not -5"
        );
    }

    #[test]
    fn every_exceeded_budget_is_named_with_its_figures() {
        let b = budgets(
            "max-size = \"1 kB\"\nmax-growth-percent = 10\nmax-packages-added = 1\nmax-packages-removed = 0\n\
             forbidden-packages = [\"telnet*\", \"rsh\"]\nrequired-packages = [\"openssh-server\", \"libc6\"]\n",
        );
        let m = Measure {
            size: 1200,
            head_size: Some(1000),
            added: names(&["telnetd", "hello", "rsh"]),
            removed: names(&["gone"]),
            installed: ["libc6", "telnetd", "hello", "rsh"].into_iter().map(String::from).collect(),
        };
        let exceeded = b.evaluate(&m);
        let lines: Vec<String> = exceeded.iter().map(ToString::to_string).collect();
        insta::assert_debug_snapshot!(lines, @r#"
        [
            "rootfs size: 1200 bytes > budget 1000 bytes",
            "rootfs growth: 20.00% (1000 -> 1200 bytes) > budget 10%",
            "packages added: 3 > budget 1",
            "packages removed: 1 > budget 0",
            "forbidden package: `rsh` (matches `rsh`)",
            "forbidden package: `telnetd` (matches `telnet*`)",
            "required package missing: `openssh-server`",
        ]
        "#);
        // As the record carries them: typed, and read back the same.
        let json = serde_json::to_string(&exceeded[1]).unwrap();
        assert_eq!(json, r#"{"exceeds":"max-growth-percent","from":1000,"to":1200,"budget":10.0}"#);
        let back: Vec<Exceeded> = serde_json::from_str(&serde_json::to_string(&exceeded).unwrap()).unwrap();
        assert_eq!(back, exceeded);
    }

    #[test]
    fn within_budget_is_no_refusal_and_limits_are_inclusive() {
        let b = budgets("max-size = 1200\nmax-growth-percent = 20\nmax-packages-added = 3\nmax-packages-removed = 1\n");
        let m = Measure {
            size: 1200,
            head_size: Some(1000),
            added: names(&["a", "b", "c"]),
            removed: names(&["d"]),
            installed: BTreeSet::new(),
        };
        assert_eq!(b.evaluate(&m), []);
    }

    #[test]
    fn without_a_head_only_absolute_budgets_apply() {
        let b = budgets(
            "max-size = 100\nmax-growth-percent = 0\nmax-packages-added = 0\nmax-packages-removed = 0\n\
             forbidden-packages = [\"x*\"]\nrequired-packages = [\"lib*\"]\n",
        );
        let m = Measure {
            size: 5000,
            head_size: None,
            added: Vec::new(),
            removed: Vec::new(),
            installed: ["x1", "web"].into_iter().map(String::from).collect(),
        };
        let lines: Vec<String> = b.evaluate(&m).iter().map(ToString::to_string).collect();
        insta::assert_debug_snapshot!(lines, @r#"
        [
            "rootfs size: 5000 bytes > budget 100 bytes",
            "forbidden package: `x1` (matches `x*`)",
            "required package missing: `lib*`",
        ]
        "#);
    }
}
