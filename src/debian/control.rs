//! Control data: the deb822 stanzas of `Packages` indexes, `Release`/`InRelease` bodies and
//! a binary package's `DEBIAN/control`.
//!
//! Everything the resolver believes about an archive — which packages exist, at which
//! version, under which digest — passes through this parser, so it is strict: where two
//! readers of the same bytes could disagree, we refuse instead of picking one reading. In
//! particular (deb822(5) is the reference; where it leaves a choice, the choice is noted):
//!
//! * Stanzas are separated by one or more empty lines. A line of only spaces and tabs is an
//!   error wherever it appears: deb822 forbids it inside a stanza and only *allows* parsers to
//!   take it as a separator, and apt and dpkg disagree on what it means, so we do not guess.
//! * A field is `Name: value`. Names are the printable ASCII deb822 allows (no space, no
//!   colon, not starting with `-`); they are kept as written and looked up ignoring ASCII
//!   case, and a name may appear only once per stanza (`Package` and `package` collide).
//! * Continuation lines start with a space or a tab. The value of a multi-line field is the
//!   text from after the colon to the end of its last continuation line, newlines and the
//!   continuation lines' leading whitespace included — byte for byte what dpkg and apt hand
//!   their callers. That leading space is syntax in some fields and content in others (in a
//!   `Description`, one space starts a wrapped line, two start a verbatim one, and ` .` is an
//!   empty line), so it is left for the field's reader to interpret; [`Field::lines`] strips
//!   exactly the one marker character for readers that want the logical lines.
//! * `#` comment lines are what deb822 says: allowed only in source package control files
//!   (`debian/control`) and deb-origin(5) files, only at the very start of a line, ignored even
//!   between two continuation lines. [`Dialect::Archive`], the default, refuses them (dpkg does
//!   too, for a binary package's control file; Debian's archive never writes them);
//!   [`Dialect::Source`] accepts them.
//! * Empty values (`Depends:` with nothing after it) are kept as `""`. deb822 reserves them
//!   for source control files, but dpkg builds binary packages that carry them, and the
//!   meaning is not in doubt, so refusing them would only make such packages unusable.
//! * Carriage returns are refused: control data uses LF line endings, and a CR left in a
//!   value (dpkg keeps one on all but a value's last line) is a silent difference between
//!   what we compare and what the archive meant.
//!
//! Parsing is zero-copy: a [`Stanza`] borrows its names and values from the input (the only
//! exception is a [`Dialect::Source`] value that a comment splits, which must be joined).
//! [`Stanzas`] yields one stanza at a time, so a full Debian `Packages` file (~63k stanzas,
//! ~50 MB) can be scanned without holding every stanza; [`Stanza::into_owned`] detaches a
//! stanza from its input when one must outlive it.

use std::borrow::Cow;

/// Why control data could not be parsed. Line numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control data is not UTF-8 (line {line})")]
    NotUtf8 { line: usize },
    #[error("line {line}: expected `Name: value`, found `{text}`")]
    MissingColon { line: usize, text: String },
    #[error("line {line}: invalid field name `{name}` ({reason})")]
    BadFieldName { line: usize, name: String, reason: &'static str },
    #[error("line {line}: field `{name}` appears twice in a stanza (first on line {first})")]
    DuplicateField { line: usize, name: String, first: usize },
    #[error("line {line}: continuation line `{text}` does not follow a field")]
    OrphanContinuation { line: usize, text: String },
    #[error(
        "line {line}: a line of only spaces and tabs; it is not allowed inside a stanza, and is not taken as a \
         separator between stanzas either"
    )]
    WhitespaceLine { line: usize },
    #[error(
        "line {line}: comment `{text}`; comments are only allowed in source package control files \
         (`debian/control`)"
    )]
    Comment { line: usize, text: String },
    #[error("line {line}: carriage return in `{text}`; control data uses LF line endings")]
    CarriageReturn { line: usize, text: String },
    #[error("the stanza starting on line {line} has no `{name}` field")]
    MissingField { line: usize, name: String },
    #[error("expected one stanza, found none")]
    NoStanza,
    #[error("line {line}: a second stanza where only one is expected")]
    ExtraStanza { line: usize },
}

impl crate::error::Hint for ControlError {
    fn hints(&self) -> Vec<Cow<'_, str>> {
        match self {
            ControlError::WhitespaceLine { .. } => vec!["separate stanzas with empty lines".into()],
            _ => Vec::new(),
        }
    }
}

/// Which deb822 files the input is: the rules differ in comments only (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// `Packages`, `Release`/`InRelease`, a binary package's `DEBIAN/control`: no comments.
    #[default]
    Archive,
    /// A source package's `debian/control`, deb-origin(5): `#` comment lines are ignored.
    Source,
}

/// One `Name: value` field, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, str>,
    line: usize,
}

impl<'a> Field<'a> {
    /// The name, in the case it was written in.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value without surrounding spaces and tabs; a multi-line value keeps its newlines
    /// and the leading whitespace of its continuation lines (so a value whose first line is
    /// empty, like `Release`'s `SHA256`, starts with `\n`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The line the field's name is on.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The logical lines of the value: the first line (possibly empty), then each
    /// continuation line without its leading space or tab. A ` .` line comes out as `.`;
    /// what it means is the field's business.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        let mut lines = self.value.split('\n');
        let first = lines.next();
        first.into_iter().chain(lines.map(|l| l.strip_prefix([' ', '\t']).unwrap_or(l)))
    }

    /// Detaches the field from the text it was parsed from.
    pub fn into_owned(self) -> Field<'static> {
        Field { name: Cow::Owned(self.name.into_owned()), value: Cow::Owned(self.value.into_owned()), line: self.line }
    }
}

/// One stanza: its fields in file order, no two with the same (case-folded) name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza<'a> {
    fields: Vec<Field<'a>>,
    line: usize,
}

impl<'a> Stanza<'a> {
    /// The value of field `name`, whatever the case of `name` or of the field as written.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(Field::value)
    }

    /// Like [`Stanza::get`], but a missing field is an error naming the field and the stanza.
    pub fn require(&self, name: &str) -> Result<&str, ControlError> {
        self.get(name).ok_or_else(|| ControlError::MissingField { line: self.line, name: name.to_owned() })
    }

    /// The field `name` (case-insensitive), with its name as written and its line.
    pub fn field(&self, name: &str) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// All fields, in the order they were written.
    pub fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The line the stanza's first field is on.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Detaches the stanza from the text it was parsed from.
    pub fn into_owned(self) -> Stanza<'static> {
        Stanza { fields: self.fields.into_iter().map(Field::into_owned).collect(), line: self.line }
    }
}

/// Parses every stanza of `text` ([`Dialect::Archive`]).
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza<'_>>, ControlError> {
    Stanzas::new(text, Dialect::Archive).collect()
}

/// Parses a file that holds exactly one stanza (a `DEBIAN/control`, a `Release` body).
pub fn parse_one(text: &str, dialect: Dialect) -> Result<Stanza<'_>, ControlError> {
    let mut stanzas = Stanzas::new(text, dialect);
    let first = stanzas.next().ok_or(ControlError::NoStanza)??;
    match stanzas.next() {
        None => Ok(first),
        Some(Ok(extra)) => Err(ControlError::ExtraStanza { line: extra.line }),
        Some(Err(e)) => Err(e),
    }
}

/// Checks that `bytes` are UTF-8 (deb822 requires it), naming the line of the first bad byte.
pub fn from_utf8(bytes: &[u8]) -> Result<&str, ControlError> {
    std::str::from_utf8(bytes).map_err(|e| ControlError::NotUtf8 {
        line: 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
    })
}

/// The stanzas of a text, one at a time. After an error it yields nothing more: what follows
/// a syntax error cannot be trusted to be where it seems.
#[derive(Debug, Clone)]
pub struct Stanzas<'a> {
    text: &'a str,
    dialect: Dialect,
    /// Byte offset of the next line.
    pos: usize,
    /// Number of the next line.
    line: usize,
    failed: bool,
    /// Whether the text holds a carriage return at all: one scan of the whole text is much
    /// cheaper than one per line, and only then do lines need checking.
    has_cr: bool,
}

/// A field being read: its value is `text[start..end]` until a comment splits it, after which
/// it is accumulated in `joined`.
struct Pending<'a> {
    name: &'a str,
    line: usize,
    start: usize,
    end: usize,
    joined: Option<String>,
}

impl<'a> Stanzas<'a> {
    pub fn new(text: &'a str, dialect: Dialect) -> Self {
        Self::starting_at_line(text, dialect, 1)
    }

    /// The stanzas of a piece of a larger text that starts on line `line` of it (a piece
    /// that starts at a line's start): line numbers in errors and stanzas are the whole
    /// text's.
    pub fn starting_at_line(text: &'a str, dialect: Dialect, line: usize) -> Self {
        Stanzas { text, dialect, pos: 0, line, failed: false, has_cr: text.as_bytes().contains(&b'\r') }
    }

    /// The next line, without its `\n`, with its start offset and number.
    fn next_line(&mut self) -> Option<(&'a str, usize, usize)> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let (line, advance) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], i + 1),
            // The last line may lack its newline; that is harmless, so it is accepted.
            None => (rest, rest.len()),
        };
        let found = (line, self.pos, self.line);
        self.pos += advance;
        self.line += 1;
        Some(found)
    }

    fn parse_next(&mut self) -> Result<Option<Stanza<'a>>, ControlError> {
        let text = self.text;
        let mut fields: Vec<Field<'a>> = Vec::new();
        let mut pending: Option<Pending<'a>> = None;
        // Whether a comment came since the last line of `pending`; a continuation after it
        // cannot extend the borrowed value and must be joined.
        let mut comment_since = false;
        let mut first_line = 0;
        while let Some((line, start, number)) = self.next_line() {
            if self.has_cr && line.as_bytes().contains(&b'\r') {
                return Err(ControlError::CarriageReturn { line: number, text: excerpt(line) });
            }
            let Some(&first) = line.as_bytes().first() else {
                // An empty line ends the stanza, if one has begun; runs of them are one separator.
                if pending.is_some() {
                    break;
                }
                continue;
            };
            if line.bytes().all(|b| b == b' ' || b == b'\t') {
                return Err(ControlError::WhitespaceLine { line: number });
            }
            match first {
                b'#' => {
                    if self.dialect == Dialect::Archive {
                        return Err(ControlError::Comment { line: number, text: excerpt(line) });
                    }
                    comment_since = true;
                }
                b' ' | b'\t' => {
                    let Some(field) = pending.as_mut() else {
                        return Err(ControlError::OrphanContinuation { line: number, text: excerpt(line) });
                    };
                    let content = line.trim_end_matches([' ', '\t']);
                    if comment_since || field.joined.is_some() {
                        let joined = field.joined.get_or_insert_with(|| text[field.start..field.end].to_owned());
                        joined.push('\n');
                        joined.push_str(content);
                    } else {
                        field.end = start + content.len();
                    }
                    comment_since = false;
                }
                _ => {
                    if let Some(done) = pending.take() {
                        fields.push(finish(text, done));
                    }
                    comment_since = false;
                    let field = parse_field_line(line, start, number)?;
                    if let Some(earlier) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(field.name)) {
                        return Err(ControlError::DuplicateField {
                            line: number,
                            name: field.name.to_owned(),
                            first: earlier.line,
                        });
                    }
                    if fields.is_empty() {
                        first_line = number;
                    }
                    pending = Some(field);
                }
            }
        }
        match pending {
            Some(done) => {
                fields.push(finish(text, done));
                Ok(Some(Stanza { fields, line: first_line }))
            }
            None => Ok(None),
        }
    }
}

impl<'a> Iterator for Stanzas<'a> {
    type Item = Result<Stanza<'a>, ControlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = self.parse_next();
        self.failed = result.is_err();
        result.transpose()
    }
}

impl std::iter::FusedIterator for Stanzas<'_> {}

fn finish<'a>(text: &'a str, field: Pending<'a>) -> Field<'a> {
    let value = match field.joined {
        Some(joined) => Cow::Owned(joined),
        None => Cow::Borrowed(&text[field.start..field.end]),
    };
    Field { name: Cow::Borrowed(field.name), value, line: field.line }
}

/// Splits `Name: value` (the line starts at `start` in the text).
fn parse_field_line(line: &str, start: usize, number: usize) -> Result<Pending<'_>, ControlError> {
    // Names are short: a plain scan beats a searcher's setup.
    let Some(colon) = line.bytes().position(|b| b == b':') else {
        return Err(ControlError::MissingColon { line: number, text: excerpt(line) });
    };
    let name = &line[..colon];
    let bad = |reason| ControlError::BadFieldName { line: number, name: excerpt(name), reason };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.starts_with('-') {
        return Err(bad("it starts with `-`"));
    }
    if let Some(b) = name.bytes().find(|b| !matches!(b, b'!'..=b'~')) {
        return Err(bad(match b {
            b' ' | b'\t' => "it contains whitespace",
            _ => "only printable ASCII is allowed",
        }));
    }
    let after = &line[colon + 1..];
    let value = after.trim_matches([' ', '\t']);
    let value_start = if value.is_empty() {
        // An empty first line: the value (if continuation lines follow) starts with the
        // newline, as dpkg and apt give it.
        start + line.len()
    } else {
        start + colon + 1 + (after.len() - after.trim_start_matches([' ', '\t']).len())
    };
    Ok(Pending { name, line: number, start: value_start, end: value_start + value.len(), joined: None })
}

/// The offending text for an error message: a line of a 50 MB file may be long.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: hello
Version: 2.10-3
Architecture: amd64
Description: example package based on GNU hello
 The GNU hello program produces a familiar, friendly greeting.
 .
  verbatim line
SHA256: 5ba3c0b9b8a1ab2b9b2a3e6a7b0d1c5e

Package: base-files
version: 12.4
";

    #[test]
    fn reads_stanzas_fields_and_multiline_values() {
        let stanzas = parse_stanzas(PACKAGES).unwrap();
        assert_eq!(stanzas.len(), 2);
        let hello = &stanzas[0];
        assert_eq!(hello.line(), 1);
        assert_eq!(hello.get("Package"), Some("hello"));
        assert_eq!(
            hello.get("Description"),
            Some(
                "example package based on GNU hello\n The GNU hello program produces a familiar, friendly \
                 greeting.\n .\n  verbatim line"
            )
        );
        let lines: Vec<_> = hello.field("description").unwrap().lines().collect();
        assert_eq!(
            lines,
            [
                "example package based on GNU hello",
                "The GNU hello program produces a familiar, friendly greeting.",
                ".",
                " verbatim line"
            ]
        );
        let names: Vec<_> = hello.fields().iter().map(Field::name).collect();
        assert_eq!(names, ["Package", "Version", "Architecture", "Description", "SHA256"]);
        assert_eq!(hello.field("sha256").unwrap().line(), 8);
        assert_eq!(stanzas[1].line(), 10);
    }

    #[test]
    fn lookup_ignores_case_but_names_keep_theirs() {
        let stanzas = parse_stanzas(PACKAGES).unwrap();
        let base = &stanzas[1];
        assert_eq!(base.get("VERSION"), Some("12.4"));
        assert_eq!(base.get("Version"), Some("12.4"));
        assert_eq!(base.fields()[1].name(), "version");
        assert_eq!(base.get("Description"), None);
        let err = base.require("Description").unwrap_err();
        assert_eq!(err, ControlError::MissingField { line: 10, name: "Description".into() });
        assert_eq!(err.to_string(), "the stanza starting on line 10 has no `Description` field");
    }

    #[test]
    fn release_checksum_fields_start_with_a_newline() {
        let release = "Origin: Debian\nSHA256:  \n abc 12 main/Packages\n def 34 main/Sources\t\nDate: x\n";
        let stanza = parse_one(release, Dialect::Archive).unwrap();
        assert_eq!(stanza.get("sha256"), Some("\n abc 12 main/Packages\n def 34 main/Sources"));
        let lines: Vec<_> = stanza.field("SHA256").unwrap().lines().collect();
        assert_eq!(lines, ["", "abc 12 main/Packages", "def 34 main/Sources"]);
        assert_eq!(stanza.get("Date"), Some("x"));
    }

    #[test]
    fn whitespace_around_values_is_not_part_of_them() {
        let stanza = parse_one("A:b\nB: \t c d \t\nC:\nD:   \n", Dialect::Archive).unwrap();
        assert_eq!(stanza.get("A"), Some("b"));
        assert_eq!(stanza.get("B"), Some("c d"));
        assert_eq!(stanza.get("C"), Some(""));
        assert_eq!(stanza.get("D"), Some(""));
    }

    #[test]
    fn separators_and_file_ends() {
        // Several empty lines, empty lines before the first stanza, no final newline.
        let stanzas = parse_stanzas("\n\nA: 1\n\n\n\nA: 2\nB: x\n y").unwrap();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0].line(), 3);
        assert_eq!(stanzas[1].get("b"), Some("x\n y"));
        assert!(parse_stanzas("").unwrap().is_empty());
        assert!(parse_stanzas("\n\n").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_text() {
        let cases: &[(&str, ControlError)] = &[
            ("A: 1\nnot a field\n", ControlError::MissingColon { line: 2, text: "not a field".into() }),
            ("A: 1\nB: 2\na: 3\n", ControlError::DuplicateField { line: 3, name: "a".into(), first: 1 }),
            (" orphan\nA: 1\n", ControlError::OrphanContinuation { line: 1, text: " orphan".into() }),
            ("A: 1\n\n continued?\n", ControlError::OrphanContinuation { line: 3, text: " continued?".into() }),
            ("A: 1\n \nB: 2\n", ControlError::WhitespaceLine { line: 2 }),
            ("A: 1\n\n\t\nB: 2\n", ControlError::WhitespaceLine { line: 3 }),
            ("A: 1\n# note\n", ControlError::Comment { line: 2, text: "# note".into() }),
            ("A: 1\r\nB: 2\n", ControlError::CarriageReturn { line: 1, text: "A: 1\r".into() }),
            (
                "My Field: 1\n",
                ControlError::BadFieldName { line: 1, name: "My Field".into(), reason: "it contains whitespace" },
            ),
            ("A : 1\n", ControlError::BadFieldName { line: 1, name: "A ".into(), reason: "it contains whitespace" }),
            (": 1\n", ControlError::BadFieldName { line: 1, name: "".into(), reason: "it is empty" }),
            ("-A: 1\n", ControlError::BadFieldName { line: 1, name: "-A".into(), reason: "it starts with `-`" }),
            (
                "\u{feff}A: 1\n",
                ControlError::BadFieldName {
                    line: 1,
                    name: "\u{feff}A".into(),
                    reason: "only printable ASCII is allowed",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse_stanzas(text).unwrap_err(), expected, "{text:?}");
        }
        let message = parse_stanzas("A: 1\nB: 2\na: 3\n").unwrap_err().to_string();
        assert_eq!(message, "line 3: field `a` appears twice in a stanza (first on line 1)");
    }

    #[test]
    fn long_offending_lines_are_cut_in_messages() {
        let text = format!("A: 1\n{}\n", "é".repeat(1000));
        let ControlError::MissingColon { text, .. } = parse_stanzas(&text).unwrap_err() else { panic!() };
        assert!(text.len() < 100 && text.ends_with('…'), "{text}");
    }

    #[test]
    fn the_same_name_in_different_stanzas_is_fine() {
        assert_eq!(parse_stanzas("A: 1\n\nA: 2\n").unwrap().len(), 2);
    }

    #[test]
    fn source_dialect_ignores_comments_even_inside_values() {
        let text = "# header\nSource: x\n# between fields\nDescription: short\n line one\n# inside\n line two\n \
                    line three\n#\n\nPackage: y\n";
        assert!(matches!(parse_stanzas(text), Err(ControlError::Comment { line: 1, .. })));
        let stanzas: Vec<_> = Stanzas::new(text, Dialect::Source).collect::<Result<_, _>>().unwrap();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0].line(), 2);
        assert_eq!(stanzas[0].get("description"), Some("short\n line one\n line two\n line three"));
        assert_eq!(stanzas[0].get("source"), Some("x"));
        assert_eq!(stanzas[1].get("Package"), Some("y"));
        // A comment does not end a stanza; a stanza of comments only is no stanza.
        assert_eq!(parse_one("#a\n#b\n\nA: 1\n#c\nB: 2\n", Dialect::Source).unwrap().fields().len(), 2);
        // A comment does not give a continuation line a field to continue.
        assert!(matches!(
            parse_one("#a\n x\n", Dialect::Source),
            Err(ControlError::OrphanContinuation { line: 2, .. })
        ));
    }

    #[test]
    fn exactly_one_stanza() {
        assert_eq!(parse_one("\n", Dialect::Archive), Err(ControlError::NoStanza));
        assert_eq!(parse_one("A: 1\n\nB: 2\n", Dialect::Archive), Err(ControlError::ExtraStanza { line: 3 }));
        assert!(matches!(parse_one("A: 1\n\nB\n", Dialect::Archive), Err(ControlError::MissingColon { .. })));
    }

    #[test]
    fn the_iterator_stops_after_an_error() {
        let mut stanzas = Stanzas::new("A: 1\n\nbad\n\nA: 3\n", Dialect::Archive);
        assert!(stanzas.next().unwrap().is_ok());
        assert!(stanzas.next().unwrap().is_err());
        assert!(stanzas.next().is_none());
    }

    #[test]
    fn values_borrow_from_the_input_and_can_be_detached() {
        let text = String::from("Package: a\nDescription: b\n c\n");
        let stanza = parse_one(&text, Dialect::Archive).unwrap();
        let value = stanza.get("description").unwrap();
        assert!(text.as_bytes().as_ptr_range().contains(&value.as_ptr()));
        let owned: Stanza<'static> = stanza.clone().into_owned();
        drop(text);
        assert_eq!(owned.get("Description"), Some("b\n c"));
        assert_eq!(owned.fields()[0].name(), "Package");
    }

    #[test]
    fn utf8_errors_name_the_line() {
        assert_eq!(from_utf8(b"A: 1\nB: \xff\n"), Err(ControlError::NotUtf8 { line: 2 }));
        assert_eq!(from_utf8(b"A: 1\n"), Ok("A: 1\n"));
    }

    #[test]
    fn a_large_index_parses_whole() {
        // A Packages-sized input (tens of MB). Its speed is measured by the benchmark
        // (benches/debian-minbase.sh, the `lock` row), not here: shared machines are noisy.
        let stanza = "Package: p\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libc6 (>= 2.36)\nDescription: d\n \
                      long text\n .\n more\nSHA256: 0123456789abcdef\n\n";
        let text = stanza.repeat(100_000);
        let count = Stanzas::new(&text, Dialect::Archive).map(|s| s.unwrap().fields().len()).sum::<usize>();
        assert_eq!(count, 600_000);
    }

    /// Renders fields as deb822; the inverse of the parser for well-formed input.
    fn render(stanzas: &[Vec<(String, Vec<String>)>]) -> String {
        let mut out = String::new();
        for (i, stanza) in stanzas.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            for (name, lines) in stanza {
                out.push_str(&format!("{name}: {}\n", lines[0]));
                for line in &lines[1..] {
                    out.push_str(&format!(" {line}\n"));
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[A-Za-z: \t\n#.\r-]{0,300}") {
            let _ = parse_stanzas(&text);
            let _ = Stanzas::new(&text, Dialect::Source).count();
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(text) = from_utf8(&bytes) {
                let _ = parse_stanzas(text);
                let _ = Stanzas::new(text, Dialect::Source).count();
            }
            let lossy = String::from_utf8_lossy(&bytes);
            let _ = parse_stanzas(&lossy);
            let _ = Stanzas::new(&lossy, Dialect::Source).count();
        }

        #[test]
        fn rendered_stanzas_parse_back(
            stanzas in proptest::collection::vec(
                proptest::collection::btree_map(
                    "[A-Z][a-z0-9-]{0,8}",
                    proptest::collection::vec("[!-~]([ !-~]{0,10}[!-~])?", 1..4),
                    1..6,
                ),
                0..5,
            )
        ) {
            // The map keeps names distinct, and their shape (an upper-case letter, then no
            // upper case) keeps them distinct ignoring case too.
            let stanzas: Vec<Vec<(String, Vec<String>)>> =
                stanzas.into_iter().map(|m| m.into_iter().collect()).collect();
            let text = render(&stanzas);
            let parsed = parse_stanzas(&text).unwrap();
            proptest::prop_assert_eq!(parsed.len(), stanzas.len());
            for (stanza, expected) in parsed.iter().zip(&stanzas) {
                proptest::prop_assert_eq!(stanza.fields().len(), expected.len());
                for (name, lines) in expected {
                    let field = stanza.field(&name.to_uppercase()).unwrap();
                    proptest::prop_assert_eq!(field.name(), name.as_str());
                    let got: Vec<&str> = field.lines().collect();
                    proptest::prop_assert_eq!(got, lines.iter().map(String::as_str).collect::<Vec<_>>());
                }
            }
        }
    }
}
