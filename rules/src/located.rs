//! Where a value sits in TOML text, for validators that report `file:line: field.path: message`: the
//! line of an offset, the span of the value at a field path (or of its nearest parent present in the
//! text), and the deserialization of one top-level section with the path and span of its first error.
//! Shared by the rule file validator and the daemon's configuration validator, which report with the one
//! [`Diagnostic`] type.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One problem in a file, shown as `file:line: field.path: message`: a rule file's or a configuration
/// file's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// The file's name as the caller gave it.
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Field path, e.g. `collectors.inventory.regions[1]`; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, line: Option<usize>, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: file.to_string(), line, path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One step of a field path, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders steps as `budgets[2].thresholds.forecast_percent`.
pub fn render<'a>(steps: impl IntoIterator<Item = Step<'a>>) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The span of the value at `path` in `doc`, or of its nearest parent present; `None` when not even the
/// first step is there.
pub fn span_of<'a>(doc: &DeTable<'_>, path: impl IntoIterator<Item = Step<'a>>) -> Option<Range<usize>> {
    let mut best = None;
    let mut table: Option<&DeTable> = Some(doc);
    let mut value: Option<&Spanned<DeValue>> = None;
    for step in path {
        let next = match (step, table, value) {
            (Step::Key(k), Some(t), _) => t.get(k),
            (Step::Index(i), _, Some(v)) => match v.get_ref() {
                DeValue::Array(a) => a.get(i),
                _ => None,
            },
            _ => None,
        };
        let Some(v) = next else { break };
        best = Some(v.span());
        value = Some(v);
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

/// The first error deserializing a section: its field path from the top (`key`, `key.field`,
/// `key[2].field`), the span of the offending value (else of the section), and serde's message as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError {
    pub path: String,
    pub span: Range<usize>,
    pub message: String,
}

/// Deserializes the top-level section `key` (its `value`) on its own, so an error in one section does not
/// hide those of the others.
pub fn deserialize_section<T: DeserializeOwned>(key: &str, value: &Spanned<DeValue<'_>>) -> Result<T, SectionError> {
    let mut owned = value.get_ref().clone();
    owned.make_owned();
    let de = ValueDeserializer::from(Spanned::new(value.span(), owned));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." | "" => key.to_string(),
            p if p.starts_with('[') => format!("{key}{p}"),
            p => format!("{key}.{p}"),
        };
        SectionError { path, span: e.inner().span().unwrap_or(value.span()), message: e.inner().message().to_string() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_lines_and_paths() {
        let text = "[a]\nx = 1\nlist = [\n  { y = 2 },\n  { y = 3 },\n]\n";
        let doc = DeTable::parse(text).unwrap();
        let doc = doc.get_ref();
        let line = |path: &[Step]| span_of(doc, path.iter().copied()).map(|s| line_of(text, s.start));
        assert_eq!(line(&[Step::Key("a"), Step::Key("x")]), Some(2));
        assert_eq!(line(&[Step::Key("a"), Step::Key("list"), Step::Index(1), Step::Key("y")]), Some(5));
        // Missing below `a`: the nearest parent's line.
        assert_eq!(line(&[Step::Key("a"), Step::Key("missing")]), Some(1));
        assert_eq!(line(&[Step::Key("nothing")]), None);
        assert_eq!(render([Step::Key("a"), Step::Key("list"), Step::Index(1), Step::Key("y")]), "a.list[1].y");
    }

    #[test]
    fn a_section_error_has_the_path_from_the_top() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            items: Vec<u32>,
        }
        let text = "[s]\nitems = [1, \"two\"]\n";
        let doc = DeTable::parse(text).unwrap();
        let e = deserialize_section::<S>("s", doc.get_ref().get("s").unwrap()).unwrap_err();
        assert_eq!(e.path, "s.items[1]");
        assert_eq!(line_of(text, e.span.start), 2);
    }
}
