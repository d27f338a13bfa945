//! What a test needs from the host, checked one way for the unit tests and the CLI tests.
//!
//! Some tests prove our output against the real thing (`gpg`, `dpkg`, a static busybox, LXC)
//! or need root (owners, namespaces). When that is missing, a test cannot check anything, and
//! must not pass as if it had: under CI (the `CI` variable set to anything non-empty) a
//! missing need is a failure that names it and the Debian package providing it; elsewhere
//! the test prints one loud `SKIPPED: <test>: <what> missing (<remedy>)` line on stderr and
//! the caller returns early. Every such check in the tests goes through here.
//!
//! Public (the CLI tests are another crate) but hidden from the documentation: not an API.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Whether `tool` is an executable on `PATH`; `package` is the Debian package providing it.
pub fn tool(tool: &str, package: &str) -> bool {
    on_path(tool, std::env::var_os("PATH").as_deref())
        || missing(&format!("`{tool}`"), &format!("install the Debian package `{package}`"))
}

/// Whether the file `path` exists; `package` is the Debian package providing it.
pub fn file(path: &str, package: &str) -> bool {
    Path::new(path).exists() || missing(&format!("`{path}`"), &format!("install the Debian package `{package}`"))
}

/// Whether the tests run as root (effective uid 0).
pub fn root() -> bool {
    // SAFETY: no arguments, cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0 || missing("root", "run the tests as root")
}

/// Reports `what` as missing, `remedy` saying how to get it: under CI a panic, elsewhere a
/// `SKIPPED` line on stderr. Returns `false`, for `tool(…) || missing(…)` chains and for
/// needs the functions above do not cover.
pub fn missing(what: &str, remedy: &str) -> bool {
    match verdict(under_ci(), &current_test(), what, remedy) {
        // Straight to the process's stderr, not `eprintln!`: libtest captures the print
        // macros of a passing test, and a skip must show in a plain `cargo test` run.
        Ok(line) => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        Err(failure) => panic!("{failure}"),
    }
    false
}

/// The `SKIPPED` line to print, or under CI the failure to panic with.
fn verdict(ci: bool, test: &str, what: &str, remedy: &str) -> Result<String, String> {
    if ci {
        Err(format!("{test}: {what} missing under CI (`CI` is set): {remedy}"))
    } else {
        Ok(format!("SKIPPED: {test}: {what} missing ({remedy})"))
    }
}

/// `CI` set to anything non-empty, as CI services set it.
fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The running test's name: libtest runs each test on a thread named after it.
fn current_test() -> String {
    std::thread::current().name().unwrap_or("this test").to_owned()
}

/// What `Command::new(tool)` would find: an executable file in a folder of `path`.
fn on_path(tool: &str, path: Option<&OsStr>) -> bool {
    let Some(path) = path else { return false };
    std::env::split_paths(path)
        .any(|dir| fs_err::metadata(dir.join(tool)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_a_path_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        fs_err::write(&exe, "#!/bin/sh\n").unwrap();
        fs_err::write(dir.path().join("plain"), "").unwrap();
        fs_err::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert!(on_path("tool", Some(&path)));
        assert!(!on_path("plain", Some(&path)), "not executable");
        assert!(!on_path("absent", Some(&path)));
        assert!(!on_path("tool", None));
    }

    #[test]
    fn a_missing_need_fails_under_ci_and_is_loud_elsewhere() {
        let remedy = "install the Debian package `gnupg`";
        assert_eq!(
            verdict(true, "a::test", "`gpg`", remedy),
            Err("a::test: `gpg` missing under CI (`CI` is set): install the Debian package `gnupg`".to_owned())
        );
        assert_eq!(
            verdict(false, "a::test", "`gpg`", remedy),
            Ok("SKIPPED: a::test: `gpg` missing (install the Debian package `gnupg`)".to_owned())
        );
    }

    #[test]
    fn names_the_running_test() {
        // libtest names each test's thread after the test (unless run on the main thread).
        let name = current_test();
        assert!(name == "testing::tests::names_the_running_test" || name == "main", "{name}");
    }
}
