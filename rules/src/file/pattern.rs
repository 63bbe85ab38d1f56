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
        } else {
            GlobKind::General
        };
        Glob {
            text: text.to_string(),
            kind,
        }
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
        Ok(TagMatch {
            key: key.to_string(),
            value,
        })
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
            (
                "arn:aws:ec2:*:111111111111:instance/*",
                "arn:aws:ec2:eu-west-1:111111111111:instance/i-1",
                true,
            ),
            (
                "arn:aws:ec2:*:111111111111:instance/*",
                "arn:aws:ec2:eu-west-1:222222222222:instance/i-1",
                false,
            ),
            ("module.*.aws_instance.web[?]", "module.app.aws_instance.web[0]", true),
            ("module.*.aws_instance.web[?]", "module.app.aws_instance.web[10]", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("é?", "éü", true),
            ("**", "x", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), *want, "{p} vs {s}");
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
