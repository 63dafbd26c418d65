//! Transformations applied to a value before it is matched: the decoders and
//! foldings of ModSecurity (`t:urlDecodeUni`, `t:htmlEntityDecode`, …) that the Core
//! Rule Set's signatures name, and the full normal form the built-in detectors use.
//!
//! URL decoding is repeated until the value stops changing (at most four rounds), so
//! a payload encoded twice or three times is seen as the application would finally see it.

use base64::Engine as _;
use std::str::FromStr;

/// One transformation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    UrlDecode,
    UrlDecodeUni,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    Lowercase,
    RemoveNulls,
    RemoveWhitespace,
    CompressWhitespace,
    ReplaceComments,
    RemoveComments,
    CmdLine,
    NormalizePath,
    NormalizePathWin,
    Utf8ToUnicode,
    Base64Decode,
    EscapeSeqDecode,
    SqlHexDecode,
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "urlDecode" => Transform::UrlDecode,
            "urlDecodeUni" => Transform::UrlDecodeUni,
            "htmlEntityDecode" => Transform::HtmlEntityDecode,
            "jsDecode" => Transform::JsDecode,
            "cssDecode" => Transform::CssDecode,
            "lowercase" => Transform::Lowercase,
            "removeNulls" => Transform::RemoveNulls,
            "removeWhitespace" => Transform::RemoveWhitespace,
            "compressWhitespace" => Transform::CompressWhitespace,
            "replaceComments" => Transform::ReplaceComments,
            "removeComments" => Transform::RemoveComments,
            "cmdLine" => Transform::CmdLine,
            "normalizePath" | "normalisePath" => Transform::NormalizePath,
            "normalizePathWin" | "normalisePathWin" => Transform::NormalizePathWin,
            "utf8toUnicode" => Transform::Utf8ToUnicode,
            "base64Decode" => Transform::Base64Decode,
            "escapeSeqDecode" => Transform::EscapeSeqDecode,
            "sqlHexDecode" => Transform::SqlHexDecode,
            other => return Err(format!("unknown transformation `{other}`")),
        })
    }
}

/// Applies `steps` in order.
pub fn apply_all(steps: &[Transform], value: &str) -> String {
    let mut out = value.to_owned();
    for step in steps {
        out = apply(*step, &out);
    }
    out
}

/// Applies one step.
pub fn apply(step: Transform, s: &str) -> String {
    match step {
        Transform::UrlDecode | Transform::UrlDecodeUni => url_decode_repeated(s),
        Transform::HtmlEntityDecode => html_entity_decode(s),
        Transform::JsDecode | Transform::EscapeSeqDecode => js_decode(s),
        Transform::CssDecode => css_decode(s),
        Transform::Lowercase => s.to_lowercase(),
        Transform::RemoveNulls => s.replace('\0', ""),
        Transform::RemoveWhitespace => s.chars().filter(|c| !c.is_whitespace()).collect(),
        Transform::CompressWhitespace => compress_whitespace(s),
        Transform::ReplaceComments => replace_comments(s),
        Transform::RemoveComments => remove_comments(s),
        Transform::CmdLine => cmd_line(s),
        Transform::NormalizePath => normalize_path(s),
        Transform::NormalizePathWin => normalize_path(&s.replace('\\', "/")),
        Transform::Utf8ToUnicode => fold_fullwidth(s),
        Transform::Base64Decode => base64_decode(s),
        Transform::SqlHexDecode => sql_hex_decode(s),
    }
}

/// The normal form the built-in detectors read: full-width letters folded to ASCII, URL
/// (`%XX`, `%uXXXX`), HTML entity and JavaScript escapes decoded until stable, NULs removed.
pub fn normal_form(s: &str) -> String {
    let mut cur = fold_fullwidth(s);
    for _ in 0..4 {
        let next = js_decode(&html_entity_decode(&url_decode_repeated(&cur)));
        if next == cur {
            break;
        }
        cur = next;
    }
    cur.replace('\0', "")
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    let c = fold_fullwidth_char(char::from_u32(c).unwrap_or('\u{FFFD}'));
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// One round of `%XX`, `%uXXXX` and `+` decoding; invalid escapes stay as they are.
pub fn url_decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 5 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') => {
                let hex: Option<Vec<u8>> = b[i + 2..i + 6].iter().map(|&h| hex_val(h)).collect();
                match hex {
                    Some(h) => {
                        let v = h.iter().fold(0u32, |acc, &d| acc * 16 + d as u32);
                        push_char(&mut out, v);
                        i += 6;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'%' => {
                match (
                    b.get(i + 1).and_then(|&h| hex_val(h)),
                    b.get(i + 2).and_then(|&h| hex_val(h)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes once without turning `+` into a space (for paths).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn url_decode_repeated(s: &str) -> String {
    if !s.contains('%') && !s.contains('+') {
        return s.to_owned();
    }
    let mut cur = url_decode_once(s);
    for _ in 0..3 {
        if !cur.contains('%') {
            break;
        }
        let next = url_decode_once(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

const ENTITIES: &[(&str, char)] = &[
    ("lt", '<'),
    ("gt", '>'),
    ("amp", '&'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("colon", ':'),
    ("tab", '\t'),
    ("newline", '\n'),
    ("lpar", '('),
    ("rpar", ')'),
    ("sol", '/'),
    ("bsol", '\\'),
    ("grave", '`'),
    ("equals", '='),
    ("plus", '+'),
    ("excl", '!'),
    ("num", '#'),
    ("dollar", '$'),
    ("percnt", '%'),
    ("period", '.'),
    ("comma", ','),
    ("semi", ';'),
    ("lsqb", '['),
    ("rsqb", ']'),
    ("lbrack", '['),
    ("rbrack", ']'),
    ("lcub", '{'),
    ("rcub", '}'),
    ("lbrace", '{'),
    ("rbrace", '}'),
    ("ast", '*'),
    ("quest", '?'),
    ("commat", '@'),
    ("hat", '^'),
    ("lowbar", '_'),
    ("verbar", '|'),
    ("vert", '|'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("Tab", '\t'),
];

/// Decodes `&#NN;`, `&#xHH;` (the `;` optional) and the common named entities.
pub fn html_entity_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'&' {
            if let Some((c, len)) = entity_at(&s[i..]) {
                out.push(c);
                i += len;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{FFFD}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn entity_at(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let (radix, start) = if matches!(b.get(2), Some(b'x') | Some(b'X')) {
            (16, 3)
        } else {
            (10, 2)
        };
        let digits = b[start..]
            .iter()
            .take_while(|c| {
                if radix == 16 {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 || digits > 8 {
            return None;
        }
        let v = u32::from_str_radix(&s[start..start + digits], radix).ok()?;
        let mut len = start + digits;
        if b.get(len) == Some(&b';') {
            len += 1;
        }
        return Some((
            fold_fullwidth_char(char::from_u32(v).unwrap_or('\u{FFFD}')),
            len,
        ));
    }
    let name_len = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &s[1..1 + name_len];
    let (_, c) = ENTITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    let mut len = 1 + name_len;
    if b.get(len) == Some(&b';') {
        len += 1;
    }
    Some((*c, len))
}

/// Decodes JavaScript escapes: `\uXXXX`, `\u{X…}`, `\xHH`, octal and single-character escapes.
pub fn js_decode(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let n = b[i + 1];
        let hex_run = |from: usize, len: usize| -> Option<u32> {
            if from + len > b.len() {
                return None;
            }
            b[from..from + len]
                .iter()
                .try_fold(0u32, |acc, &h| hex_val(h).map(|d| acc * 16 + d as u32))
        };
        match n {
            b'u' | b'U' => {
                if b.get(i + 2) == Some(&b'{') {
                    let end = b[i + 3..].iter().position(|&c| c == b'}');
                    if let Some(v) = end.and_then(|e| hex_run(i + 3, e)) {
                        push_char(&mut out, v);
                        i += 4 + end.unwrap_or(0);
                        continue;
                    }
                } else if let Some(v) = hex_run(i + 2, 4) {
                    push_char(&mut out, v);
                    i += 6;
                    continue;
                }
                out.push(n);
                i += 2;
            }
            b'x' | b'X' => match hex_run(i + 2, 2) {
                Some(v) => {
                    push_char(&mut out, v);
                    i += 4;
                }
                None => {
                    out.push(n);
                    i += 2;
                }
            },
            b'0'..=b'7' => {
                let len = b[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .count();
                let v = b[i + 1..i + 1 + len]
                    .iter()
                    .fold(0u32, |a, &d| a * 8 + (d - b'0') as u32);
                push_char(&mut out, v);
                i += 1 + len;
            }
            b'n' => {
                out.push(b'\n');
                i += 2;
            }
            b'r' => {
                out.push(b'\r');
                i += 2;
            }
            b't' => {
                out.push(b'\t');
                i += 2;
            }
            b'v' => {
                out.push(0x0b);
                i += 2;
            }
            b'f' => {
                out.push(0x0c);
                i += 2;
            }
            b'b' => {
                out.push(0x08);
                i += 2;
            }
            _ => {
                out.push(n);
                i += 2;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn css_decode(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let len = b[i + 1..]
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if len == 0 {
            if b[i + 1] != b'\n' {
                out.push(b[i + 1]);
            }
            i += 2;
            continue;
        }
        let v = b[i + 1..i + 1 + len]
            .iter()
            .fold(0u32, |a, &h| a * 16 + hex_val(h).unwrap_or(0) as u32);
        push_char(&mut out, v);
        i += 1 + len;
        if b.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn compress_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{0b}' || c == '\u{a0}' {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// `/* … */` (also an unterminated one) becomes one space.
pub fn replace_comments(s: &str) -> String {
    if !s.contains("/*") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        out.push(' ');
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn remove_comments(s: &str) -> String {
    let replaced = replace_comments(s);
    let mut out = String::with_capacity(replaced.len());
    for line in replaced.split_inclusive('\n') {
        let cut = [line.find("--"), line.find('#')]
            .into_iter()
            .flatten()
            .min();
        match cut {
            Some(at) => {
                out.push_str(&line[..at]);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The command-line folding of ModSecurity: drops `\ " ' ^`, drops spaces before `/` and `(`,
/// turns `,` and `;` into spaces, compresses whitespace and lower-cases.
pub fn cmd_line(s: &str) -> String {
    let mut tmp = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '"' | '\'' | '^' => {}
            ',' | ';' => tmp.push(' '),
            c if c.is_whitespace() => tmp.push(' '),
            c => tmp.extend(c.to_lowercase()),
        }
    }
    let compressed = compress_whitespace(&tmp);
    let mut out = String::with_capacity(compressed.len());
    let chars: Vec<char> = compressed.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' && matches!(chars.get(i + 1), Some('/') | Some('(')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Removes `.` segments and doubled slashes and resolves `..` against earlier segments.
pub fn normalize_path(s: &str) -> String {
    if !s.contains("./") && !s.contains("//") && !s.ends_with("/.") && !s.ends_with("/..") {
        return s.to_owned();
    }
    let absolute = s.starts_with('/');
    let trailing = s.ends_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(p) if *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let mut out = String::new();
    if absolute {
        out.push('/');
    }
    out.push_str(&parts.join("/"));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    out
}

fn fold_fullwidth_char(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// Folds full-width forms (U+FF01–U+FF5E) to their ASCII letters, as IIS and
/// ModSecurity's best-fit Unicode map do.
pub fn fold_fullwidth(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    s.chars().map(fold_fullwidth_char).collect()
}

fn base64_decode(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_'))
        .collect();
    let engine = base64::engine::general_purpose::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let std = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, engine);
    let url = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, engine);
    let trimmed = &cleaned[..cleaned.len() - cleaned.len() % 4
        + if cleaned.len() % 4 >= 2 {
            cleaned.len() % 4
        } else {
            0
        }];
    match std.decode(trimmed).or_else(|_| url.decode(trimmed)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => s.to_owned(),
    }
}

fn sql_hex_decode(s: &str) -> String {
    let re_hex = |w: &str| -> Option<String> {
        let h = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X"))?;
        if h.len() < 2 || h.len() % 2 != 0 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: Vec<u8> = h
            .as_bytes()
            .chunks(2)
            .map(|p| hex_val(p[0]).unwrap_or(0) * 16 + hex_val(p[1]).unwrap_or(0))
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    s.split_inclusive(|c: char| !c.is_ascii_alphanumeric())
        .map(|w| {
            let (word, sep) = w.split_at(
                w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .len(),
            );
            match re_hex(word) {
                Some(d) => d + sep,
                None => w.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding_repeats_until_stable() {
        assert_eq!(apply(Transform::UrlDecodeUni, "%2527%20or%201"), "' or 1");
        assert_eq!(apply(Transform::UrlDecodeUni, "%u003cscript"), "<script");
        assert_eq!(apply(Transform::UrlDecodeUni, "100%"), "100%");
        assert_eq!(apply(Transform::UrlDecodeUni, "%uff1cx"), "<x");
    }

    #[test]
    fn entities_and_escapes_decode() {
        assert_eq!(html_entity_decode("&lt;a&#62;&#x3c;b&colon;"), "<a><b:");
        assert_eq!(js_decode(r"\u0061\x62\143\n"), "abc\n");
        assert_eq!(normal_form("%26lt%3Bscript%26gt%3B"), "<script>");
        assert_eq!(normal_form("c\\u006fnsole"), "console");
    }

    #[test]
    fn foldings() {
        assert_eq!(cmd_line("C^a\"t /e'tc/pas,swd"), "cat/etc/pas swd");
        assert_eq!(normalize_path("/a/./b/../../../etc//passwd"), "/etc/passwd");
        assert_eq!(normalize_path("../../etc/passwd"), "../../etc/passwd");
        assert_eq!(replace_comments("un/**/ion/*x"), "un ion ");
        assert_eq!(apply(Transform::Base64Decode, "amF2YS5sYW5n"), "java.lang");
        assert_eq!(
            apply(Transform::SqlHexDecode, "select 0x414243"),
            "select ABC"
        );
    }
}
