//! The wheel tags (`cp311-cp311-manylinux_2_17_x86_64`) an interpreter accepts, best first,
//! as pip orders them for CPython on a glibc Linux (`packaging.tags.sys_tags()`, with pip's
//! `cpXY-none-any` added): a wheel is chosen by the first of these tags it carries.
//!
//! Computed from the image's interpreter, glibc and machine — not the host's — so that
//! locking on one machine chooses the wheels the image can run.

use std::collections::BTreeMap;
use std::fmt;

/// One `python-abi-platform` tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub python: String,
    pub abi: String,
    pub platform: String,
}

impl Tag {
    fn new(python: &str, abi: &str, platform: &str) -> Tag {
        Tag { python: python.to_owned(), abi: abi.to_owned(), platform: platform.to_owned() }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.python, self.abi, self.platform)
    }
}

/// The tags one interpreter accepts, in priority order (index 0 is the best).
#[derive(Debug, Clone)]
pub struct Tags {
    order: Vec<Tag>,
    rank: BTreeMap<Tag, usize>,
}

impl Tags {
    /// CPython `python_minor` on a glibc `glibc` Linux of `machine` (`x86_64`, `aarch64`, …).
    pub fn cpython_linux(python_minor: (u32, u32), glibc: (u32, u32), machine: &str) -> Tags {
        let (major, minor) = python_minor;
        let cp = format!("cp{major}{minor}");
        let platforms = platforms(glibc, machine);
        let mut order = Vec::new();
        // `cpython_tags`: the interpreter's own ABI, then the stable ABI (abi3, from 3.2),
        // then no ABI, then the stable ABI of every older minor down to 3.2.
        let abi3 = python_minor >= (3, 2);
        for (python, abi) in [(cp.as_str(), cp.as_str())]
            .into_iter()
            .chain(abi3.then_some((cp.as_str(), "abi3")))
            .chain([(cp.as_str(), "none")])
        {
            order.extend(platforms.iter().map(|p| Tag::new(python, abi, p)));
        }
        if abi3 {
            for older in (2..minor).rev() {
                let older = format!("cp{major}{older}");
                order.extend(platforms.iter().map(|p| Tag::new(&older, "abi3", p)));
            }
        }
        // `compatible_tags`: pure-Python tags for any platform of ours, then `-any`.
        let py = py_range(python_minor);
        for python in &py {
            order.extend(platforms.iter().map(|p| Tag::new(python, "none", p)));
        }
        order.push(Tag::new(&cp, "none", "any"));
        order.extend(py.iter().map(|python| Tag::new(python, "none", "any")));
        let rank = order.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        Tags { order, rank }
    }

    /// The tags, best first.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.order.iter()
    }

    /// Where `tag` ranks (lower is better); `None` when the interpreter cannot use it.
    pub fn rank(&self, tag: &Tag) -> Option<usize> {
        self.rank.get(tag).copied()
    }

    /// The best rank among a wheel's tags; `None` when none is compatible.
    pub fn best<'a>(&self, tags: impl IntoIterator<Item = &'a Tag>) -> Option<usize> {
        tags.into_iter().filter_map(|t| self.rank(t)).min()
    }
}

/// `py311`, `py3`, `py310`, …, `py30`.
fn py_range((major, minor): (u32, u32)) -> Vec<String> {
    let mut out = vec![format!("py{major}{minor}"), format!("py{major}")];
    out.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    out
}

/// The platforms of a glibc Linux, best first: `manylinux_2_Y` from the glibc down to 2_17
/// (2_5 on x86), each legacy alias right after its PEP 600 name, then `linux_ARCH`.
fn platforms(glibc: (u32, u32), machine: &str) -> Vec<String> {
    // The oldest manylinux: glibc 2.17 everywhere, 2.5 on x86 (manylinux1's baseline).
    let oldest = if matches!(machine, "x86_64" | "i686") { 5 } else { 17 };
    let mut out = Vec::new();
    // glibc has only ever had major version 2; a later major would need `packaging`'s table
    // of last minors, which does not exist yet.
    if glibc.0 == 2 {
        for minor in (oldest..=glibc.1).rev() {
            out.push(format!("manylinux_2_{minor}_{machine}"));
            let legacy = match minor {
                17 => Some("manylinux2014"),
                12 => Some("manylinux2010"),
                5 => Some("manylinux1"),
                _ => None,
            };
            if let Some(legacy) = legacy {
                out.push(format!("{legacy}_{machine}"));
            }
        }
    }
    out.push(format!("linux_{machine}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_begins_and_ends_as_pip_orders_it() {
        let tags = Tags::cpython_linux((3, 11), (2, 36), "x86_64");
        let all: Vec<String> = tags.iter().map(Tag::to_string).collect();
        assert_eq!(all[0], "cp311-cp311-manylinux_2_36_x86_64");
        assert_eq!(
            &all[19..23],
            [
                "cp311-cp311-manylinux_2_17_x86_64",
                "cp311-cp311-manylinux2014_x86_64",
                "cp311-cp311-manylinux_2_16_x86_64",
                "cp311-cp311-manylinux_2_15_x86_64"
            ]
        );
        assert!(all.contains(&"cp37-abi3-manylinux1_x86_64".to_owned()));
        assert!(!all.contains(&"cp311-cp311-manylinux_2_37_x86_64".to_owned()));
        assert_eq!(all.last().unwrap(), "py30-none-any");
        // aarch64 stops at 2_17 and has no manylinux2010/manylinux1.
        let arm: Vec<String> = Tags::cpython_linux((3, 12), (2, 36), "aarch64").iter().map(Tag::to_string).collect();
        assert!(arm.contains(&"cp312-abi3-manylinux2014_aarch64".to_owned()));
        assert!(!arm
            .iter()
            .any(|t| t.contains("manylinux_2_16") || t.contains("manylinux2010") || t.contains("x86_64")));
        let t = |s: &str| {
            let mut p = s.split('-');
            Tag::new(p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        };
        assert!(tags.rank(&t("cp311-abi3-manylinux_2_17_x86_64")) < tags.rank(&t("cp311-none-manylinux_2_36_x86_64")));
        assert_eq!(tags.best([&t("py2-none-any"), &t("py3-none-any")]), tags.rank(&t("py3-none-any")));
        assert_eq!(tags.rank(&t("cp312-cp312-manylinux_2_17_x86_64")), None);
    }

    /// The host's pip, asked for its own interpreter: our list must be its list, tag for tag.
    #[test]
    fn the_order_is_pips_for_the_host_interpreter() {
        if !crate::testing::tool("python3", "python3-pip") {
            return;
        }
        let script = "import sys, os, platform\n\
            from pip._internal.utils.compatibility_tags import get_supported\n\
            from pip._vendor.packaging import tags\n\
            print(sys.version_info[0], sys.version_info[1], platform.machine(), *os.confstr('CS_GNU_LIBC_VERSION').split()[1].split('.')[:2])\n\
            print(' '.join(str(t) for t in get_supported()))\n\
            print(' '.join(str(t) for t in tags.sys_tags()))\n";
        let out = std::process::Command::new("python3").args(["-c", script]).output().expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split(' ').collect();
        let n = |i: usize| head[i].parse::<u32>().unwrap();
        let ours: Vec<String> =
            Tags::cpython_linux((n(0), n(1)), (n(3), n(4)), head[2]).iter().map(Tag::to_string).collect();
        let pip: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(ours, pip);
        // `packaging` alone lacks only pip's `cpXY-none-any`.
        let packaging: Vec<&str> = lines.next().unwrap().split(' ').collect();
        let cp_any = format!("cp{}{}-none-any", n(0), n(1));
        assert_eq!(ours.iter().filter(|t| **t != cp_any).collect::<Vec<_>>(), packaging);
    }
}
