//! From rule file text to [`RuleFile`], collecting every error with its line and field path: syntax
//! first (nothing else is checked when the TOML does not parse), then each section's shape (serde, with
//! the path inside the section), then each definition's semantic checks ([`Check`]).

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::schema::{CleanupSection, DriftSection, TaggingEntry};
use super::{Named, RuleFile, RuleFileError, RuleFileErrors, SectionAt};
use crate::check::{render_path, Check, Problem, Seg};
use crate::located::{deserialize_section, line_of, span_of};

/// The top-level sections a rule file may have.
const SECTIONS: &str = "`tagging`, `budgets`, `cost_anomaly`, `drift`, `cleanup`";

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    doc: &'a DeTable<'a>,
    errors: Vec<RuleFileError>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The span of the value at `path`, or of its nearest parent present in the file.
    fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        span_of(self.doc, path.iter().map(Seg::step))
    }

    fn line(&self, path: &[Seg]) -> Option<usize> {
        self.span(path).map(|s| self.line_of(s.start))
    }

    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        let line = self.line(path);
        self.errors.push(RuleFileError {
            file: self.file.to_string(),
            line,
            path: render_path(path),
            message: message.into(),
        });
    }

    /// Records `problems` of the definition at `prefix`.
    fn problems(&mut self, prefix: &[Seg], problems: Vec<Problem>) {
        for p in problems {
            let p = p.under(prefix);
            self.error(&p.path, p.message);
        }
    }

    /// Deserializes one top-level section, recording its error (with the path inside the section).
    fn section<T: DeserializeOwned>(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match deserialize_section(key, value) {
            Ok(v) => Some(v),
            Err(e) => {
                let line = Some(self.line_of(e.span.start));
                self.errors.push(RuleFileError {
                    file: self.file.to_string(),
                    line,
                    path: e.path,
                    message: e.message.trim().to_string(),
                });
                None
            }
        }
    }

    /// Deserializes each entry of the array section `key` on its own, so a shape error in one entry does
    /// not hide those of the others. `None` for an entry with an error.
    fn entries<T: DeserializeOwned>(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Vec<Option<T>> {
        match value.get_ref() {
            DeValue::Array(items) => {
                items.iter().enumerate().map(|(i, item)| self.section::<T>(&format!("{key}[{i}]"), item)).collect()
            }
            // Not an array: let serde say what it expected.
            _ => self.section::<Vec<T>>(key, value).map(|v| v.into_iter().map(Some).collect()).unwrap_or_default(),
        }
    }

    /// `name` of the `i`th entry of the array `key`, with its line, straight from the document (so it
    /// works for every family, whatever its struct looks like).
    fn name_at(&self, key: &str, i: usize) -> Option<(String, Option<usize>)> {
        let path = [Seg::Key(key.to_string()), Seg::Index(i), Seg::Key("name".to_string())];
        let entry = match self.doc.get(key)?.get_ref() {
            DeValue::Array(a) => a.get(i)?,
            _ => return None,
        };
        let DeValue::Table(t) = entry.get_ref() else {
            return None;
        };
        match t.get("name")?.get_ref() {
            DeValue::String(s) => Some((s.to_string(), self.line(&path))),
            _ => None,
        }
    }

    /// Records the names of the array `key`'s entries, reporting duplicates within the file.
    fn names(&mut self, family: &'static str, key: &str, count: usize, out: &mut Vec<Named>) {
        for i in 0..count {
            let Some((name, line)) = self.name_at(key, i) else {
                continue;
            };
            if let Some(first) = out.iter().find(|n| n.family == family && n.name == name) {
                let at = first.line.map(|l| format!("line {l}")).unwrap_or_else(|| "this file".into());
                self.error(
                    &[Seg::Key(key.to_string()), Seg::Index(i), Seg::Key("name".to_string())],
                    format!("duplicate {family} rule name {name:?}, first defined at {at}"),
                );
                continue;
            }
            out.push(Named { family, name, file: self.file.to_string(), line });
        }
    }
}

pub(super) fn parse(file: &str, text: &str) -> Result<RuleFile, RuleFileErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(RuleFileErrors(
            syntax
                .iter()
                .map(|e| RuleFileError {
                    file: file.to_string(),
                    line: e.span().map(|s| line_of(text, s.start)),
                    path: String::new(),
                    message: e.message().trim().to_string(),
                })
                .collect(),
        ));
    }
    let doc = doc.into_inner();
    let mut cx = Ctx { file, text, doc: &doc, errors: Vec::new() };
    let mut out = RuleFile::default();

    for (key, value) in doc.iter() {
        let name: &str = key.get_ref().as_ref();
        let section_line = Some(cx.line_of(key.span().start));
        let here = |section: &'static str| SectionAt { section, file: file.to_string(), line: section_line };
        match name {
            "tagging" => {
                let entries = cx.entries::<TaggingEntry>("tagging", value);
                cx.names("tagging", "tagging", entries.len(), &mut out.names);
                for (i, entry) in entries.iter().enumerate() {
                    let Some(entry) = entry else { continue };
                    match entry.compile() {
                        Ok(rule) => out.tagging.push(rule),
                        Err(problems) => cx.problems(&[Seg::Key("tagging".into()), Seg::Index(i)], problems),
                    }
                }
            }
            "budgets" => {
                let entries = cx.entries::<crate::budget::BudgetRule>("budgets", value);
                cx.names("budget", "budgets", entries.len(), &mut out.names);
                for (i, entry) in entries.iter().enumerate() {
                    let Some(entry) = entry else { continue };
                    cx.problems(&[Seg::Key("budgets".into()), Seg::Index(i)], entry.check());
                }
                out.budgets = entries.into_iter().flatten().collect();
            }
            "cost_anomaly" => {
                out.sections.push(here("cost_anomaly"));
                let Some(settings) = cx.section::<crate::anomaly::cost::CostAnomalySettings>("cost_anomaly", value)
                else {
                    continue;
                };
                cx.problems(&[Seg::Key("cost_anomaly".into())], settings.check());
                out.cost_anomaly = Some(settings);
            }
            "drift" => {
                out.sections.push(here("drift"));
                let Some(section) = cx.section::<DriftSection>("drift", value) else {
                    continue;
                };
                match section.compile() {
                    Ok(settings) => out.drift = settings,
                    Err(problems) => cx.problems(&[Seg::Key("drift".into())], problems),
                }
            }
            "cleanup" => {
                out.sections.push(here("cleanup"));
                let Some(section) = cx.section::<CleanupSection>("cleanup", value) else {
                    continue;
                };
                match section.compile() {
                    Ok(settings) => out.cleanup = settings,
                    Err(problems) => cx.problems(&[Seg::Key("cleanup".into())], problems),
                }
            }
            other => {
                cx.errors.push(RuleFileError {
                    file: file.to_string(),
                    line: section_line,
                    path: other.to_string(),
                    message: format!("unknown section `{other}`, expected one of {SECTIONS}"),
                });
            }
        }
    }
    if cx.errors.is_empty() {
        Ok(out)
    } else {
        let mut errors = cx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(RuleFileErrors(errors))
    }
}
