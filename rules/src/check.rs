//! Semantic checks of rule definitions, shared by every rule family: each definition says what is wrong
//! with it as [`Problem`]s with a field path relative to itself; the rule file parser prefixes the path
//! (`budgets[2].`) and finds the line.

use std::fmt;

use crate::located::Step;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Something wrong with a rule definition, at `path` inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Problem {
    /// A problem at `key` (a dotted path such as `thresholds.forecast_percent` is split on dots).
    pub fn at(key: &str, message: impl Into<String>) -> Problem {
        Problem {
            path: key.split('.').filter(|k| !k.is_empty()).map(|k| Seg::Key(k.to_string())).collect(),
            message: message.into(),
        }
    }

    /// A problem at `key[index]`.
    pub fn at_index(key: &str, index: usize, message: impl Into<String>) -> Problem {
        let mut p = Problem::at(key, message);
        p.path.push(Seg::Index(index));
        p
    }

    /// The same problem with `prefix` in front of its path.
    pub fn under(mut self, prefix: &[Seg]) -> Problem {
        let mut path = prefix.to_vec();
        path.append(&mut self.path);
        self.path = path;
        self
    }
}

impl Seg {
    /// The step this segment is, for [`crate::located`].
    pub fn step(&self) -> Step<'_> {
        match self {
            Seg::Key(k) => Step::Key(k),
            Seg::Index(i) => Step::Index(*i),
        }
    }
}

/// Renders a path as `budgets[2].thresholds.forecast_percent`.
pub fn render_path(path: &[Seg]) -> String {
    crate::located::render(path.iter().map(Seg::step))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", render_path(&self.path), self.message)
    }
}

/// A rule definition that can say what is wrong with it.
pub trait Check {
    fn check(&self) -> Vec<Problem>;
}
