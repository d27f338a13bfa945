//! Renders an error as the user sees it: `error:`, one `caused by:` line per cause, then the
//! hints of the whole chain. It sits in the commands stage (see `src/architecture.rs`) because
//! it names every error type that carries hints, from any stage, to downcast to it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::Write as _;

use super::{CheckFailed, Hint, Hinted};

/// The hints of one error of a chain. `dyn Error` cannot be asked for a trait it may
/// implement, so this downcasts to each type that implements [`Hint`]: a new one is added
/// here (the test `every_hint_type_is_rendered` fails until it is).
fn hints_of<'a>(err: &'a (dyn StdError + 'static)) -> Vec<Cow<'a, str>> {
    use crate::debian::control::ControlError;
    use crate::debian::packages::{ParseRequestError, RelationError};
    use crate::debian::release::ReleaseError;
    use crate::debian::version::ParseVersionError;
    use crate::lockfile::LockError;
    use crate::python::lock::WheelLockError;
    use crate::recipe::RecipeError;
    use crate::remote::RemoteError;
    macro_rules! first_of {
        ($($ty:ty),+ $(,)?) => {
            $(if let Some(e) = err.downcast_ref::<$ty>() { return e.hints(); })+
        };
    }
    first_of!(
        CheckFailed,
        Hinted,
        ReleaseError,
        ParseVersionError,
        ControlError,
        RelationError,
        ParseRequestError,
        RecipeError,
        LockError,
        WheelLockError,
        RemoteError,
    );
    Vec::new()
}

/// The whole of an error as the user sees it: `error:` and the outermost message, one
/// `caused by:` line per cause, then every hint found anywhere in the chain (each once, in
/// chain order), after a blank line, each on its own `hint:` line.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut hints: Vec<Cow<'_, str>> = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        let prefix = if i == 0 { "error:" } else { "  caused by:" };
        let _ = writeln!(out, "{prefix} {cause}");
        for hint in hints_of(cause) {
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
    }
    // `anyhow`'s `.context(x)` shows up in the chain as its own wrapper type, which no
    // downcast above can see through; `anyhow` itself can, for the two carriers.
    let carried = err.downcast_ref::<CheckFailed>().map(Hint::hints).into_iter().flatten();
    for hint in carried.chain(err.downcast_ref::<Hinted>().map(Hint::hints).into_iter().flatten()) {
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    if !hints.is_empty() {
        out.push('\n');
        for hint in hints {
            let _ = writeln!(out, "hint: {hint}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::control::ControlError;

    /// An error of a lower layer with a hint, wrapped twice: its hint comes last, once,
    /// after every cause, not inside the chain.
    #[test]
    fn hints_come_once_after_the_whole_chain() {
        let inner = crate::debian::release::ReleaseError::Control(ControlError::WhitespaceLine { line: 3 });
        let err = anyhow::Error::new(inner).context("archive `test`").context("cannot lock `r.toml`");
        assert_eq!(
            render(&err),
            "error: cannot lock `r.toml`\n  caused by: archive `test`\n  caused by: the signed text is not a \
             valid `Release` stanza\n  caused by: line 3: a line of only spaces and tabs; it is not allowed \
             inside a stanza, and is not taken as a separator between stanzas either\n\n\
             hint: separate stanzas with empty lines\n"
        );
    }

    /// Hints of the chain first, in order; a carrier given as `anyhow` context is found too,
    /// and the same hint twice is printed once.
    #[test]
    fn hints_of_context_carriers_are_found_and_deduplicated() {
        let err = anyhow::Error::new(Hinted::new("inner", "run `candidate lock`"))
            .context(CheckFailed { message: "outer".into(), hint: Some("run `candidate lock`".into()) })
            .context(Hinted::new("outermost", "check the clock"));
        assert_eq!(
            render(&err),
            "error: outermost\n  caused by: outer\n  caused by: inner\n\nhint: run `candidate lock`\n\
             hint: check the clock\n"
        );
    }

    #[test]
    fn no_hint_no_blank_line() {
        let err = anyhow::anyhow!("plain").context("outer");
        assert_eq!(render(&err), "error: outer\n  caused by: plain\n");
    }

    /// A version error inside a package's error is a cause of its own, so its hint shows.
    #[test]
    fn a_bad_version_in_a_package_keeps_its_hint() {
        let source = "a:1".parse::<crate::debian::version::Version>().unwrap_err();
        let err = crate::debian::unpack::UnpackError::Version { label: "hello_1.0_amd64.deb".into(), source };
        assert_eq!(
            render(&anyhow::Error::new(err)),
            "error: package `hello_1.0_amd64.deb`, control file `control`, field `Version`\n  caused by: invalid \
             Debian version `a:1`: the epoch before the first `:` is not a number\n\nhint: `:` may appear in the \
             upstream version only after an explicit epoch (`0:` is the default)\n"
        );
    }

    /// Every `impl … Hint for T` in `src/` is one of the types `hints_of` downcasts to, so no
    /// hint is silently dropped.
    #[test]
    fn every_hint_type_is_rendered() {
        let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        let this = fs_err::read_to_string(src.join("error/render.rs")).unwrap();
        let listed = this.split("first_of!(").nth(1).and_then(|s| s.split(')').next()).expect("the list");
        let listed: Vec<&str> = listed.split(',').map(str::trim).collect();
        let mut missing = Vec::new();
        for entry in walkdir::WalkDir::new(src) {
            let entry = entry.unwrap();
            if entry.path().extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = fs_err::read_to_string(entry.path()).unwrap();
            for line in text.lines().filter(|l| l.starts_with("impl ") && l.contains("Hint for ")) {
                let ty = line.split("Hint for ").nth(1).unwrap().trim_end_matches(" {").trim();
                if !listed.contains(&ty) {
                    missing.push(format!("{}: {ty}", entry.path().display()));
                }
            }
        }
        assert!(missing.is_empty(), "types with hints that `hints_of` does not downcast to: {missing:?}");
    }
}
