//! Requirements files as `pip-compile --generate-hashes` and `uv pip compile
//! --generate-hashes` write them: one exactly pinned requirement per logical line with its
//! `--hash=sha256:…` options, backslash continuations, `#` comments (the `# via` blocks).
//!
//! Only a complete, pinned, hashed set is accepted: a requirement that is not `==` a full
//! version, or has no sha256, is refused naming the file and line, as are editables, URLs
//! and paths, and `-r`/`-c` includes (the file must be the whole set by itself).
//!
//! Option lines are never silently used. Those about *where* files come from (`--index-url`,
//! `--extra-index-url`, `--find-links`, `--trusted-host`) or that say what we do anyway
//! (`--require-hashes`, `--only-binary`, `--prefer-binary`) are returned as [`Ignored`] for
//! the caller to report: the index is the recipe's and every file is checked against the
//! listed hashes, so where it came from cannot change what is installed. Any other option
//! changes what pip would install (`--no-binary`, `--pre`, …) and is refused.

use std::path::{Path, PathBuf};

use super::marker::{Marker, Requirement};
use super::version::{Operator, Version};
use super::Name;
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    #[error("failed to read requirements file `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{}` line {line}: {reason}", path.display())]
    Line { path: PathBuf, line: usize, reason: String },
}

/// One pinned requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub name: Name,
    pub extras: Vec<Name>,
    pub version: Version,
    pub marker: Option<Marker>,
    /// The sha256 of every file (wheel or sdist) the requirement accepts, as listed.
    pub hashes: Vec<Digest>,
    /// The (first) line it is written on.
    pub line: usize,
}

/// An option line kept for the caller to report, not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    pub pinned: Vec<Pinned>,
    pub ignored: Vec<Ignored>,
}

/// Options reported and not used (see the module's documentation), with their short forms.
const IGNORED: &[&str] = &[
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--trusted-host",
    "--require-hashes",
    "--only-binary",
    "--prefer-binary",
];

impl Requirements {
    pub fn load(path: &Path) -> Result<Requirements, RequirementsError> {
        let text =
            fs_err::read_to_string(path).map_err(|source| RequirementsError::Read { path: path.to_owned(), source })?;
        Requirements::parse(path, &text)
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Requirements, RequirementsError> {
        let mut out = Requirements::default();
        for (line, logical) in logical_lines(text) {
            let bad = |reason: String| RequirementsError::Line { path: path.to_owned(), line, reason };
            let content = strip_comment(&logical);
            let content = content.trim();
            if content.is_empty() {
                continue;
            }
            if content.starts_with('-') {
                let option = content.split([' ', '\t', '=']).next().unwrap_or(content);
                match option {
                    "-e" | "--editable" => return Err(bad(format!("`{content}`: editable requirements cannot be pinned by hash; build a wheel and pin it"))),
                    "-r" | "--requirement" | "-c" | "--constraint" => {
                        return Err(bad(format!("`{content}`: includes are not followed; the requirements must be one complete file (as `pip-compile` writes it)")))
                    }
                    o if IGNORED.contains(&o) => out.ignored.push(Ignored { line, text: content.to_owned() }),
                    _ => return Err(bad(format!("`{option}` is not supported: it would change what pip installs"))),
                }
                continue;
            }
            out.pinned.push(pinned(content).map_err(bad)?.with_line(line));
        }
        Ok(out)
    }
}

impl Pinned {
    fn with_line(mut self, line: usize) -> Pinned {
        self.line = line;
        self
    }
}

/// Physical lines joined at a trailing `\`, each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut joined) = current.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                current = Some((start, joined));
            }
            None => {
                joined.push_str(raw);
                out.push((start, joined));
            }
        }
    }
    // A `\` on the last line continues into nothing, which pip accepts.
    out.extend(current);
    out
}

/// pip's comment rule: `#` at the start or after whitespace begins a comment (a `#` inside
/// a URL fragment does not).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// One requirement line: `name[extras]==version ; marker --hash=sha256:…`.
fn pinned(content: &str) -> Result<Pinned, String> {
    // The requirement ends where the first option begins.
    let (requirement, options) = match content.find(" -").or_else(|| content.find("\t-")) {
        Some(at) => (&content[..at], &content[at..]),
        None => (content, ""),
    };
    let r = requirement.trim();
    let looks_like_path = !r.contains('@')
        && (r.contains('/') && !r.contains(';') || [".whl", ".tar.gz", ".zip"].iter().any(|ext| r.ends_with(ext)));
    if looks_like_path {
        return Err(format!(
            "`{}`: URLs and paths are not accepted; pin the package by name, version and hash",
            requirement.trim()
        ));
    }
    let r: Requirement = requirement.parse().map_err(|e: super::marker::MarkerError| e.to_string())?;
    if let Some(url) = &r.url {
        return Err(format!(
            "`{}` is a URL requirement (`@ {url}`); pin the package by name, version and hash",
            r.name
        ));
    }
    let exact = match r.specifiers.0.as_slice() {
        [s] if s.operator == Operator::Equal && !s.wildcard => s.version.clone(),
        _ => None,
    };
    let Some(version) = exact else {
        let spec = if r.specifiers.0.is_empty() { "no version".to_owned() } else { format!("`{}`", r.specifiers) };
        return Err(format!("`{}` is not pinned ({spec}); every requirement must be `=={{version}}` with its hashes, as `pip-compile --generate-hashes` writes", r.name));
    };
    let mut hashes = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let value = match word.strip_prefix("--hash") {
            Some(rest) if rest.starts_with('=') => rest[1..].to_owned(),
            Some("") => words.next().ok_or_else(|| format!("`--hash` of `{}` has no value", r.name))?.to_owned(),
            _ => return Err(format!("`{word}` is not supported on a requirement (only `--hash`)")),
        };
        let (algorithm, hex) =
            value.split_once(':').ok_or_else(|| format!("`--hash={value}` of `{}` is not `ALGORITHM:HEX`", r.name))?;
        if algorithm != "sha256" {
            return Err(format!("`--hash={value}` of `{}`: only `sha256` hashes are read", r.name));
        }
        let digest = Digest::from_hex(hex)
            .map_err(|_| format!("`--hash={value}` of `{}` is not a sha256 (64 hex digits)", r.name))?;
        if !hashes.contains(&digest) {
            hashes.push(digest);
        }
    }
    if hashes.is_empty() {
        return Err(format!(
            "`{}=={version}` has no `--hash=sha256:…`; generate the file with `--generate-hashes`",
            r.name
        ));
    }
    Ok(Pinned { name: r.name, extras: r.extras, version, marker: r.marker, hashes, line: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "0569859f95fc761b18b45ef421b1290a0f65f147e92a1e5eb3e635f9a5e4e66f";
    const H2: &str = "dc383c07b76109f368f6106eee2b593b04a011ea4d55f652c6ca24a754d1cdd1";

    fn parse(text: &str) -> Result<Requirements, RequirementsError> {
        Requirements::parse(Path::new("req.txt"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn pip_compile_and_uv_output_is_read() {
        let text = format!(
            "#\n# This file is autogenerated by pip-compile with Python 3.11\n#\n\
             --index-url https://example.invalid/simple\n\n\
             certifi==2024.2.2 \\\n    --hash=sha256:{H1} \\\n    --hash=sha256:{H2}\n    # via requests\n\
             PySocks[Extra]==1.7.1 ; python_version >= \"3.7\" \\\n    --hash sha256:{H1}\n\
             numpy==1.26.4 --hash=sha256:{H2}  # trailing comment\n"
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.ignored, [Ignored { line: 4, text: "--index-url https://example.invalid/simple".into() }]);
        let names: Vec<_> =
            r.pinned.iter().map(|p| (p.name.as_str(), p.version.to_string(), p.line, p.hashes.len())).collect();
        assert_eq!(
            names,
            [
                ("certifi", "2024.2.2".into(), 6, 2),
                ("pysocks", "1.7.1".into(), 10, 1),
                ("numpy", "1.26.4".into(), 12, 1)
            ]
        );
        assert_eq!(r.pinned[1].extras[0].as_str(), "extra");
        assert_eq!(r.pinned[1].marker.as_ref().unwrap().to_string(), "python_version >= \"3.7\"");
        assert_eq!(r.pinned[0].hashes[1].hex(), H2);
    }

    #[test]
    fn anything_not_pinned_with_hashes_is_refused_naming_file_and_line() {
        let h = format!("--hash=sha256:{H1}");
        for (text, line, reason) in [
            (format!("a==1.0 {h}\nb>=1.0 {h}\n"), 2, "`b` is not pinned (`>=1.0`)"),
            (format!("b {h}\n"), 1, "`b` is not pinned (no version)"),
            (format!("b==1.* {h}\n"), 1, "`b` is not pinned (`==1.*`)"),
            (format!("b==1.0,!=1.1 {h}\n"), 1, "is not pinned"),
            ("\n\nb==1.0\n".into(), 3, "`b==1.0` has no `--hash=sha256:…`"),
            ("b==1.0 --hash=md5:abc\n".into(), 1, "only `sha256` hashes"),
            ("b==1.0 --hash=sha256:abc\n".into(), 1, "not a sha256"),
            ("b==1.0 \\\n  --hash\n".into(), 1, "has no value"),
            (format!("-e ./src {h}\n"), 1, "editable"),
            ("-r other.txt\n".into(), 1, "includes are not followed"),
            ("--constraint c.txt\n".into(), 1, "includes are not followed"),
            ("--no-binary :all:\n".into(), 1, "`--no-binary` is not supported"),
            (format!("b @ https://example.invalid/b-1.0.whl {h}\n"), 1, "URL requirement"),
            (format!("./wheels/b-1.0-py3-none-any.whl {h}\n"), 1, "URLs and paths"),
            (format!("b==1.0 --config-settings x=y {h}\n"), 1, "`--config-settings` is not supported"),
            (format!("b==1.0 ; pyth == '3' {h}\n"), 1, "`pyth` is not a marker variable"),
        ] {
            let e = err(&text);
            assert!(e.starts_with(&format!("`req.txt` line {line}: ")) && e.contains(reason), "{text:?}: {e}");
        }
    }
}
