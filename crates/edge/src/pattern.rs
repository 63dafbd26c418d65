//! Path patterns of the configuration: `/exact`, `/stations/{id}` (one segment, captured) and
//! `/static/*` (any rest, also none). Shared by the rate rules and the cache policies.

use thiserror::Error;

#[derive(Debug, Error)]
#[error("the path pattern {pattern:?} is not valid: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest,
}

/// A parsed path pattern.
#[derive(Debug, Clone)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<PathPattern, PatternError> {
        let fail = |reason| PatternError {
            pattern: pattern.to_string(),
            reason,
        };
        let rest = pattern
            .strip_prefix('/')
            .ok_or_else(|| fail("it must start with /"))?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(fail("* may only be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() {
                    return Err(fail("a {name} needs a name"));
                }
                Segment::Param(name.to_string())
            } else if part.contains(['{', '}', '*']) {
                return Err(fail("{, } and * stand alone in a segment"));
            } else {
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        Ok(PathPattern { segments })
    }

    /// The captured `{name}` segments when `path` matches, in order (no allocation unless
    /// something is captured: every request is matched against every rule).
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let rest = path.strip_prefix('/')?;
        // A trailing slash does not make another resource here.
        let rest = match rest.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => rest,
        };
        let mut parts = (!rest.is_empty())
            .then(|| rest.split('/'))
            .into_iter()
            .flatten();
        let mut captured = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return Some(captured),
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => match parts.next() {
                    Some(v) if !v.is_empty() => captured.push((name.as_str(), v)),
                    _ => return None,
                },
            }
        }
        parts.next().is_none().then_some(captured)
    }

    pub fn matches(&self, path: &str) -> bool {
        self.captures(path).is_some()
    }
}

/// Replaces `{name}` in `template` by the captured segment of that name (percent-decoded).
pub fn fill(template: &str, captures: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in captures {
        out = out.replace(&format!("{{{name}}}"), &percent_decode(value));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_params_and_rest_match_as_written() {
        let p = PathPattern::parse("/api/v1/stations/{id}/readings").unwrap();
        assert_eq!(
            p.captures("/api/v1/stations/london_1/readings"),
            Some(vec![("id", "london_1")])
        );
        assert!(!p.matches("/api/v1/stations/london_1"));
        assert!(!p.matches("/api/v1/stations//readings"));
        assert!(!p.matches("/api/v1/stations/a/readings/x"));
        let root = PathPattern::parse("/").unwrap();
        assert!(root.matches("/") && !root.matches("/x"));
        let any = PathPattern::parse("/*").unwrap();
        assert!(any.matches("/") && any.matches("/a/b/c"));
        let statics = PathPattern::parse("/static/*").unwrap();
        assert!(statics.matches("/static/app.css") && !statics.matches("/staticx"));
        assert!(PathPattern::parse("/api/v1/stations/{id}")
            .unwrap()
            .matches("/api/v1/stations/x/"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert!(PathPattern::parse("api").is_err());
        assert!(PathPattern::parse("/a/*/b").is_err());
        assert!(PathPattern::parse("/a/{}").is_err());
        assert!(PathPattern::parse("/a/x{id}").is_err());
    }

    #[test]
    fn templates_take_the_decoded_segment() {
        assert_eq!(
            fill("station:{id}", &[("id", "a%20b")]),
            "station:a b".to_string()
        );
        assert_eq!(fill("latest", &[("id", "x")]), "latest");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%é1"), "%é1");
    }
}
