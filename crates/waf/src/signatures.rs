//! Signature rules: a pattern (regex or phrase list) matched against the request parts a
//! rule names, after the transformations it names. Two files ship in the crate: the Core
//! Rule Set's signatures (`rules/crs.toml`, converted by `tools/import_crs.py`) and this
//! crate's own (`rules/signatures.toml`); both use the same format.
//!
//! Regexes are compiled as byte regexes without Unicode classes, which is how
//! ModSecurity's PCRE reads them (ASCII `\w`, `\b` and case folding, one byte per `.`).

use crate::request::{Field, Loc};
use crate::transform::Transform;
use crate::WafError;
use aho_corasick::AhoCorasick;
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

/// The Core Rule Set's signatures.
pub const CRS_RULES: &str = include_str!("../rules/crs.toml");
/// This crate's own signatures.
pub const OWN_RULES: &str = include_str!("../rules/signatures.toml");

/// The phrase lists the rule files name, by file name.
const DATA_FILES: &[(&str, &str)] = &[
    (
        "crawlers-user-agents.data",
        include_str!("../rules/crs/crawlers-user-agents.data"),
    ),
    (
        "java-classes.data",
        include_str!("../rules/crs/java-classes.data"),
    ),
    (
        "lfi-os-files.data",
        include_str!("../rules/crs/lfi-os-files.data"),
    ),
    (
        "php-config-directives.data",
        include_str!("../rules/crs/php-config-directives.data"),
    ),
    (
        "php-function-names-933150.data",
        include_str!("../rules/crs/php-function-names-933150.data"),
    ),
    (
        "php-function-names-933151.data",
        include_str!("../rules/crs/php-function-names-933151.data"),
    ),
    (
        "php-variables.data",
        include_str!("../rules/crs/php-variables.data"),
    ),
    (
        "restricted-files.data",
        include_str!("../rules/crs/restricted-files.data"),
    ),
    (
        "restricted-upload.data",
        include_str!("../rules/crs/restricted-upload.data"),
    ),
    (
        "scanners-headers.data",
        include_str!("../rules/crs/scanners-headers.data"),
    ),
    (
        "scanners-urls.data",
        include_str!("../rules/crs/scanners-urls.data"),
    ),
    (
        "scanners-user-agents.data",
        include_str!("../rules/crs/scanners-user-agents.data"),
    ),
    (
        "scripting-user-agents.data",
        include_str!("../rules/crs/scripting-user-agents.data"),
    ),
    (
        "unix-shell.data",
        include_str!("../rules/crs/unix-shell.data"),
    ),
    (
        "windows-powershell-commands.data",
        include_str!("../rules/crs/windows-powershell-commands.data"),
    ),
];

/// The phrases of a shipped list (comments and blank lines dropped).
pub fn data_file(name: &str) -> Option<Vec<&'static str>> {
    let (_, text) = DATA_FILES.iter().find(|(n, _)| *n == name)?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// One rule as written in a rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub crs: Option<u32>,
    #[serde(default = "one")]
    pub paranoia: u8,
    pub targets: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<String>,
    #[serde(default)]
    pub rx: Option<String>,
    #[serde(default)]
    pub pm: Option<Vec<String>>,
    #[serde(default)]
    pub pm_file: Option<String>,
    /// Further regexes the transformed value must also match (ModSecurity chains on
    /// `MATCHED_VAR`).
    #[serde(default)]
    pub require: Vec<String>,
    /// Also run on values made only of word characters and `.:+,@-` (skipped otherwise).
    #[serde(default)]
    pub inert: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn one() -> u8 {
    1
}

enum Matcher {
    Regex(Regex),
    Phrases(AhoCorasick),
}

/// A compiled signature.
pub struct Signature {
    pub id: String,
    pub description: String,
    pub paranoia: u8,
    locs: u32,
    all_headers: bool,
    headers: Vec<String>,
    header_excludes: Vec<String>,
    cookie_excludes: Vec<Regex>,
    pub transforms: Vec<Transform>,
    matcher: Matcher,
    require: Vec<Regex>,
    pub runs_on_inert: bool,
}

/// Compiles a regex the way ModSecurity's PCRE reads it.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&pcre_to_rust(pattern))
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
}

/// Escapes the `{` that PCRE reads as a literal (not a `{n}`, `{n,}`, `{n,m}` quantifier).
fn pcre_to_rust(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i] as char;
        if c == '\\' && i + 1 < b.len() {
            let next = p[i + 1..].chars().next().unwrap_or('\\');
            out.push('\\');
            out.push(next);
            i += 1 + next.len_utf8();
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            if (c == '[' && !p[i..].starts_with("[:")) || c == '&' || c == '~' {
                out.push('\\');
            }
        } else if c == '[' {
            in_class = true;
            out.push('[');
            i += 1;
            if b.get(i) == Some(&b'^') {
                out.push('^');
                i += 1;
            }
            if b.get(i) == Some(&b']') {
                out.push_str("\\]");
                i += 1;
            }
            continue;
        } else if c == '{' && !is_quantifier(&p[i..]) {
            out.push_str("\\{");
            i += 1;
            continue;
        } else if c == '}' {
            // A `}` that closes a quantifier was consumed with it; any other is literal.
            out.push_str("\\}");
            i += 1;
            continue;
        }
        if c == '{' {
            let end = p[i..].find('}').unwrap_or(0);
            out.push_str(&p[i..=i + end]);
            i += end + 1;
            continue;
        }
        let ch = p[i..].chars().next().unwrap_or(' ');
        if ch.is_ascii() {
            out.push(ch);
        } else {
            // PCRE without UTF mode reads a multi-byte character as its bytes.
            let mut buf = [0u8; 4];
            for byte in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02X}"));
            }
        }
        i += ch.len_utf8();
    }
    out
}

fn is_quantifier(s: &str) -> bool {
    let Some(end) = s.find('}') else { return false };
    let inner = &s[1..end];
    let (lo, hi) = match inner.split_once(',') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (inner, None),
    };
    !lo.is_empty()
        && lo.bytes().all(|c| c.is_ascii_digit())
        && hi.is_none_or(|h| h.bytes().all(|c| c.is_ascii_digit()))
}

fn loc_bits(target: &str) -> Option<u32> {
    Some(match target {
        "args" => Loc::QueryArg.bit() | Loc::BodyArg.bit(),
        "arg_names" => Loc::QueryArgName.bit() | Loc::BodyArgName.bit(),
        "query_args" => Loc::QueryArg.bit(),
        "query_arg_names" => Loc::QueryArgName.bit(),
        "cookies" => Loc::Cookie.bit(),
        "cookie_names" => Loc::CookieName.bit(),
        "headers" => Loc::Header.bit(),
        "header_names" => Loc::HeaderName.bit(),
        "path" => Loc::Path.bit(),
        "basename" => Loc::Basename.bit(),
        "uri" => Loc::Uri.bit(),
        "request_line" => Loc::RequestLine.bit(),
        "query" => Loc::Query.bit(),
        "body" => Loc::Body.bit(),
        "xml" => Loc::Xml.bit(),
        "file_names" => Loc::FileName.bit(),
        "file_fields" => Loc::FileField.bit(),
        "multipart_headers" => Loc::MultipartHeader.bit(),
        "method" => Loc::Method.bit(),
        "protocol" => Loc::Protocol.bit(),
        _ => return None,
    })
}

impl Signature {
    fn compile(spec: RuleSpec) -> Result<Signature, WafError> {
        let bad = |why: String| WafError::Rule {
            id: spec.id.clone(),
            reason: why,
        };
        let mut locs = 0;
        let mut all_headers = false;
        let mut headers = Vec::new();
        for t in &spec.targets {
            if let Some(name) = t.strip_prefix("header:") {
                headers.push(name.to_ascii_lowercase());
                locs |= Loc::Header.bit();
            } else {
                let bits = loc_bits(t).ok_or_else(|| bad(format!("unknown target `{t}`")))?;
                all_headers |= t == "headers";
                locs |= bits;
            }
        }
        let mut header_excludes = Vec::new();
        let mut cookie_excludes = Vec::new();
        for e in &spec.exclude {
            if let Some(name) = e.strip_prefix("header:") {
                header_excludes.push(name.to_ascii_lowercase());
            } else if let Some(rx) = e.strip_prefix("cookie~") {
                cookie_excludes.push(compile_regex(rx).map_err(|err| bad(err.to_string()))?);
            } else if let Some(name) = e.strip_prefix("cookie:") {
                cookie_excludes.push(
                    compile_regex(&format!("^{}$", regex::escape(name)))
                        .map_err(|err| bad(err.to_string()))?,
                );
            } else {
                return Err(bad(format!("unknown exclusion `{e}`")));
            }
        }
        let transforms = spec
            .transforms
            .iter()
            .map(|t| t.parse::<Transform>().map_err(&bad))
            .collect::<Result<Vec<_>, _>>()?;
        let phrases = |words: Vec<String>| -> Result<Matcher, WafError> {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(words)
                .map(Matcher::Phrases)
                .map_err(|e| bad(e.to_string()))
        };
        let (matcher, is_pm) = match (&spec.rx, &spec.pm, &spec.pm_file) {
            (Some(rx), None, None) => (
                Matcher::Regex(compile_regex(rx).map_err(|e| bad(e.to_string()))?),
                false,
            ),
            (None, Some(words), None) => (phrases(words.clone())?, true),
            (None, None, Some(file)) => {
                let words =
                    data_file(file).ok_or_else(|| bad(format!("no phrase list `{file}`")))?;
                (
                    phrases(words.into_iter().map(str::to_owned).collect())?,
                    true,
                )
            }
            _ => return Err(bad("needs exactly one of rx, pm, pm_file".into())),
        };
        let require = spec
            .require
            .iter()
            .map(|r| compile_regex(r).map_err(|e| bad(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Signature {
            paranoia: spec.paranoia,
            locs,
            all_headers,
            headers,
            header_excludes,
            cookie_excludes,
            transforms,
            matcher,
            require,
            runs_on_inert: spec.inert || is_pm,
            description: match (spec.description, spec.crs) {
                (Some(d), _) => d,
                (None, Some(crs)) => format!("OWASP Core Rule Set 3.3.4, rule {crs}"),
                (None, None) => String::new(),
            },
            id: spec.id,
        })
    }

    /// Whether this rule inspects `field`.
    pub fn applies_to(&self, field: &Field) -> bool {
        if self.locs & field.loc.bit() == 0 {
            return false;
        }
        match field.loc {
            Loc::Header => {
                (self.all_headers || self.headers.contains(&field.name))
                    && !self.header_excludes.contains(&field.name)
            }
            Loc::Cookie | Loc::CookieName => !self
                .cookie_excludes
                .iter()
                .any(|r| r.is_match(field.name.as_bytes())),
            _ => true,
        }
    }

    /// Whether the (already transformed) value matches.
    pub fn matches(&self, value: &str) -> bool {
        let hay = value.as_bytes();
        let hit = match &self.matcher {
            Matcher::Regex(r) => r.is_match(hay),
            Matcher::Phrases(ac) => ac.is_match(hay),
        };
        hit && self.require.iter().all(|r| r.is_match(hay))
    }
}

/// Parses and compiles a rule file.
pub fn load(text: &str, source: &str) -> Result<Vec<Signature>, WafError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| WafError::RuleFile {
        file: source.to_owned(),
        reason: e.to_string(),
    })?;
    file.rule.into_iter().map(Signature::compile).collect()
}

/// Values made only of ASCII word characters and `.:+,@-`: no quote, bracket, operator,
/// separator or space, so none of the syntax the regex signatures look for.
pub fn is_inert(value: &str) -> bool {
    value.bytes().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'+' | b',' | b'@' | b'-')
    })
}

/// Whether `id` is a shipped signature (loaded or not at the configured paranoia level).
pub fn known_above_paranoia(id: &str) -> bool {
    let needle = format!("id = \"{id}\"");
    CRS_RULES
        .lines()
        .chain(OWN_RULES.lines())
        .any(|l| l.trim() == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_rule_compiles() {
        let crs = load(CRS_RULES, "crs.toml").unwrap();
        assert!(crs.len() > 100, "{}", crs.len());
        load(OWN_RULES, "signatures.toml").unwrap();
    }

    #[test]
    fn pcre_literal_braces_are_escaped() {
        let r = compile_regex(r"[oc]:\d+:\x22.+?\x22:\d+:{.*}").unwrap();
        assert!(r.is_match(br#"o:8:"stdClass":0:{}"#));
        let r = compile_regex(r"a{2,3}").unwrap();
        assert!(r.is_match(b"aa") && !r.is_match(b"a"));
        let r = compile_regex(r"[{}\]]x").unwrap();
        assert!(r.is_match(b"}x"));
    }
}
