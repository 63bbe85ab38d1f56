//! The patterns rule files write: globs (resource types, ARNs, Terraform addresses) and tag matchers
//! (`key=value` or `key`), compiled once when the file is read so evaluation only compares bytes.

use std::collections::BTreeMap;
use std::fmt;

/// A glob: `*` matches any run of characters (`/` and `:` included), `?` exactly one character, anything
/// else itself. Matching is case-sensitive and anchored at both ends.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    kind: GlobKind,
}

#[derive(Clone, PartialEq, Eq)]
enum GlobKind {
    /// `*`
    Any,
    /// No wildcard.
    Exact,
    /// `prefix*`: the common `ec2:*` and `arn:aws:s3:::logs-*`.
    Prefix(usize),
    /// Several `*` and no `?`, like `arn:aws:ec2:*:111111111111:*`: the literal head and tail are
    /// compared in place and the literal runs between stars searched for in order, without backtracking.
    Stars,
    /// Anything else: matched by backtracking.
    General,
}

impl Glob {
    /// Compiles a glob. Every string is a valid glob.
    pub fn new(text: &str) -> Glob {
        let wild = |c: char| c == '*' || c == '?';
        let kind = if text == "*" {
            GlobKind::Any
        } else if !text.contains(wild) {
            GlobKind::Exact
        } else if text.ends_with('*') && !text[..text.len() - 1].contains(wild) {
            GlobKind::Prefix(text.len() - 1)
        } else if !text.contains('?') {
            GlobKind::Stars
        } else {
            GlobKind::General
        };
        Glob { text: text.to_string(), kind }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        match self.kind {
            GlobKind::Any => true,
            GlobKind::Exact => self.text == s,
            GlobKind::Prefix(n) => s.as_bytes().starts_with(&self.text.as_bytes()[..n]),
            GlobKind::Stars => stars_match(&self.text, s),
            GlobKind::General => wildcard_match(self.text.as_bytes(), s.as_bytes()),
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

/// Length of the UTF-8 sequence starting with byte `b` (1 for a stray continuation byte).
fn char_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Match of a pattern whose only wildcard is `*` (at least one): the text before the first star must
/// start `s`, the text after the last one end it, and the runs between stars appear in order in what is
/// left, each at its leftmost place (taking the leftmost never loses a match).
fn stars_match(p: &str, s: &str) -> bool {
    let (Some(first), Some(last)) = (p.find('*'), p.rfind('*')) else {
        return p == s;
    };
    let (head, tail) = (&p[..first], &p[last + 1..]);
    if s.len() < head.len() + tail.len() || !s.starts_with(head) || !s.ends_with(tail) {
        return false;
    }
    let mut rest = &s[head.len()..s.len() - tail.len()];
    for run in p[first..=last].split('*').filter(|run| !run.is_empty()) {
        match find(rest.as_bytes(), run.as_bytes()) {
            Some(at) => rest = &rest[at + run.len()..],
            None => return false,
        }
    }
    true
}

/// The first position of `needle` (not empty) in `hay`: candidates by first byte, then compared. For the
/// short texts of ARNs and globs this beats a general substring search, whose setup dominates.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| hay[i] == first && hay[i + 1..i + needle.len()] == *rest)
}

/// Iterative glob match with single-star backtracking: linear in practice, never exponential.
fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            si += char_len(s[si]);
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            let next = ss + char_len(s[ss]);
            star = Some((sp, next));
            pi = sp + 1;
            si = next;
        } else {
            return false;
        }
    }
    si == s.len() && p[pi..].iter().all(|b| *b == b'*')
}

/// A tag condition: `key=value` (that exact value) or `key` (any value). Keys and values compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    pub key: String,
    /// `None`: any value.
    pub value: Option<String>,
}

impl TagMatch {
    /// Reads `key=value` or `key`; the key must not be empty. Only the first `=` separates.
    pub fn parse(s: &str) -> Result<TagMatch, String> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (s, None),
        };
        if key.trim().is_empty() {
            return Err(format!("expected key=value or key, got {s:?}"));
        }
        Ok(TagMatch { key: key.to_string(), value })
    }

    /// True when `tags` has the key (with the value, if one is given).
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match (tags.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
            (None, _) => false,
        }
    }
}

/// Resources a rule leaves alone: any matching tag or any matching ARN glob exempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub tags: Vec<TagMatch>,
    pub arns: Vec<Glob>,
}

impl Exemptions {
    /// True when the resource with these tags and ARN is exempt.
    pub fn exempts(&self, arn: &str, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().any(|t| t.matches(tags)) || self.arns.iter().any(|g| g.matches(arn))
    }

    /// True when nothing is exempt.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.arns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("ec2:*", "ec2:instance", true),
            ("ec2:*", "ec2:", true),
            ("ec2:*", "rds:db", false),
            ("ec2:instance", "ec2:instance", true),
            ("ec2:instance", "ec2:instances", false),
            ("*:volume", "ec2:volume", true),
            ("*:volume", "ec2:volumes", false),
            ("arn:aws:ec2:*:111111111111:instance/*", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1", true),
            ("arn:aws:ec2:*:111111111111:instance/*", "arn:aws:ec2:eu-west-1:222222222222:instance/i-1", false),
            ("module.*.aws_instance.web[?]", "module.app.aws_instance.web[0]", true),
            ("module.*.aws_instance.web[?]", "module.app.aws_instance.web[10]", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("ab*ba", "aba", false),
            ("*x*y*", "yx", false),
            ("*x*y*", "axbyc", true),
            ("*é*", "aéb", true),
            ("é?", "éü", true),
            ("**", "x", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), *want, "{p} vs {s}");
            assert_eq!(wildcard_match(p.as_bytes(), s.as_bytes()), *want, "{p} vs {s} (backtracking)");
        }
    }

    /// The star-only matcher agrees with the backtracking one on every pattern and string over a small
    /// alphabet.
    #[test]
    fn star_matcher_agrees_with_backtracking() {
        let words = |max: usize, alphabet: &[char]| {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last.iter().flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}"))).collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let patterns: Vec<String> = words(5, &['a', 'b', '*']).into_iter().filter(|p| p.contains('*')).collect();
        for p in &patterns {
            for s in words(5, &['a', 'b']) {
                assert_eq!(stars_match(p, &s), wildcard_match(p.as_bytes(), s.as_bytes()), "{p} vs {s}");
            }
        }
    }

    #[test]
    fn tag_matches() {
        let tags: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        assert!(TagMatch::parse("env").unwrap().matches(&tags));
        assert!(TagMatch::parse("env=prod").unwrap().matches(&tags));
        assert!(!TagMatch::parse("env=dev").unwrap().matches(&tags));
        assert!(!TagMatch::parse("team").unwrap().matches(&tags));
        assert_eq!(TagMatch::parse("a=b=c").unwrap().value.as_deref(), Some("b=c"));
        assert!(TagMatch::parse("=x").is_err());
    }
}
