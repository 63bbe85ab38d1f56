//! Rule files: TOML text in, a validated [`RuleFile`] out, or every error at once, each as
//! `file:line: field.path: message`. This module reads no file: the daemon passes the text and the name
//! to report. Several files merge into one rule set with [`RuleFile::merge`].
//!
//! Sections: `[[tagging]]`, `[[budgets]]`, `[cost_anomaly]`, `[drift]`, `[cleanup]` (see `docs/rules.md`).

mod pattern;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

pub use pattern::{Exemptions, Glob, TagMatch};
pub use schema::{CleanupSection, DriftSection, PricesEntry, TaggingEntry, ThresholdEntry};

use crate::cleanup::CleanupSettings;
use crate::drift::DriftSettings;
use crate::tagging::TaggingRule;

/// One thing wrong with a rule file, and everything wrong with one or more rule files (sorted by file order
/// and line): the diagnostics the configuration file reports with too.
pub use crate::located::{Diagnostic as RuleFileError, Diagnostics as RuleFileErrors};

/// Where a named rule was defined, to report duplicates across files.
#[derive(Debug, Clone, PartialEq)]
struct Named {
    family: &'static str,
    name: String,
    file: String,
    line: Option<usize>,
}

/// Where a single-instance section (`[drift]`, `[cleanup]`, `[cost_anomaly]`) was set.
#[derive(Debug, Clone, PartialEq)]
struct SectionAt {
    section: &'static str,
    file: String,
    line: Option<usize>,
}

/// A validated rule set: from one file, or several merged.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// `[[tagging]]` rules, in file order.
    pub tagging: Vec<TaggingRule>,
    /// `[[budgets]]` rules, in file order.
    pub budgets: Vec<crate::budget::BudgetRule>,
    /// `[cost_anomaly]`, when a file sets it: cost anomalies are detected only then.
    pub cost_anomaly: Option<crate::anomaly::cost::CostAnomalySettings>,
    /// `[drift]`; enabled with no ignore list when no file sets it.
    pub drift: DriftSettings,
    /// `[cleanup]`; every rule enabled with its default threshold when no file sets it.
    pub cleanup: CleanupSettings,
    names: Vec<Named>,
    sections: Vec<SectionAt>,
}

impl Default for RuleFile {
    /// No tagging rules or budgets, no cost anomaly detection, drift and cleanup with their defaults.
    fn default() -> RuleFile {
        RuleFile {
            tagging: Vec::new(),
            budgets: Vec::new(),
            cost_anomaly: None,
            drift: DriftSettings::enabled(),
            cleanup: CleanupSettings::default(),
            names: Vec::new(),
            sections: Vec::new(),
        }
    }
}

/// Validates the rule file `text`; `file_name` is only used in error messages.
pub fn parse_rule_file(file_name: &str, text: &str) -> Result<RuleFile, RuleFileErrors> {
    validate::parse(file_name, text)
}

impl RuleFile {
    /// Merges rule files into one set: rule lists are concatenated in the given order; a single-instance
    /// section (`[drift]`, `[cleanup]`, `[cost_anomaly]`) may be set by one file only. A rule name defined
    /// twice within a family, or a section set twice, is an error at the second place.
    pub fn merge(files: impl IntoIterator<Item = RuleFile>) -> Result<RuleFile, RuleFileErrors> {
        let mut out = RuleFile::default();
        let mut errors = Vec::new();
        for f in files {
            for n in f.names {
                if let Some(first) = out.names.iter().find(|m| m.family == n.family && m.name == n.name) {
                    errors.push(RuleFileError {
                        file: n.file.clone(),
                        line: n.line,
                        path: String::new(),
                        message: format!(
                            "duplicate {} rule name {:?}, first defined at {}",
                            n.family,
                            n.name,
                            place(&first.file, first.line)
                        ),
                    });
                } else {
                    out.names.push(n);
                }
            }
            for s in f.sections {
                if let Some(first) = out.sections.iter().find(|t| t.section == s.section) {
                    errors.push(RuleFileError {
                        file: s.file.clone(),
                        line: s.line,
                        path: s.section.to_string(),
                        message: format!(
                            "section already set at {}: set each of drift, cleanup and cost_anomaly in one file only",
                            place(&first.file, first.line)
                        ),
                    });
                    continue;
                }
                match s.section {
                    "drift" => out.drift = f.drift.clone(),
                    "cleanup" => out.cleanup = f.cleanup.clone(),
                    "cost_anomaly" => out.cost_anomaly = f.cost_anomaly.clone(),
                    _ => {}
                }
                out.sections.push(s);
            }
            out.tagging.extend(f.tagging);
            out.budgets.extend(f.budgets);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(RuleFileErrors(errors))
        }
    }
}

fn place(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}
