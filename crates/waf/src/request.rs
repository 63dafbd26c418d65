//! The request as the firewall sees it, and its split into the named parts that rules
//! inspect (ModSecurity's variables: `ARGS`, `REQUEST_COOKIES`, `REQUEST_HEADERS`, …).
//!
//! Bodies are parsed by content type: URL-encoded forms, JSON (and NDJSON), multipart
//! forms, XML and CSV; anything else is inspected as raw text. Only the first
//! `body_limit` bytes are parsed, as AWS WAF inspects only the first 16 KiB.

use crate::transform::{percent_decode, url_decode_once};

/// One request to inspect. Header names keep the case they were sent with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectedRequest {
    pub method: String,
    /// The request target exactly as sent (`/path?query`, percent-encoded).
    pub uri: String,
    /// `HTTP/1.1`, `HTTP/2.0`…
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The body, or its first bytes when it is longer than the inspection limit.
    pub body: Vec<u8>,
    /// False when the body continued past `body`.
    pub body_complete: bool,
}

impl InspectedRequest {
    /// A request without a body.
    pub fn new(method: &str, uri: &str) -> Self {
        InspectedRequest {
            method: method.to_owned(),
            uri: uri.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: vec![("Host".to_owned(), "localhost".to_owned())],
            body: Vec::new(),
            body_complete: true,
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a complete body (builder style).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.body_complete = true;
        self
    }

    /// The values of a header, by case-insensitive name.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn header_value<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The path part of the target, as sent.
    pub fn raw_path(&self) -> &str {
        let end = self.uri.find(['?', '#']).unwrap_or(self.uri.len());
        &self.uri[..end]
    }

    /// The query string, as sent.
    pub fn raw_query(&self) -> &str {
        match self.uri.find('?') {
            Some(i) => {
                let q = &self.uri[i + 1..];
                &q[..q.find('#').unwrap_or(q.len())]
            }
            None => "",
        }
    }

    /// The media type of the body, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let ct = self.header_value("content-type")?;
        Some(
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
        )
    }
}

/// Where a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Loc {
    Method,
    RequestLine,
    Protocol,
    Uri,
    Path,
    Basename,
    Query,
    QueryArgName,
    QueryArg,
    BodyArgName,
    BodyArg,
    Cookie,
    CookieName,
    Header,
    HeaderName,
    Body,
    Xml,
    FileName,
    FileField,
    MultipartHeader,
}

impl Loc {
    pub const fn bit(self) -> u32 {
        1 << self as u8
    }

    /// How a location is named in matches, samples and exclusions.
    pub fn label(self) -> &'static str {
        match self {
            Loc::Method => "method",
            Loc::RequestLine => "request_line",
            Loc::Protocol => "protocol",
            Loc::Uri => "uri",
            Loc::Path => "path",
            Loc::Basename => "path",
            Loc::Query => "query",
            Loc::QueryArgName => "query_arg_name",
            Loc::QueryArg => "query_arg",
            Loc::BodyArgName => "body_arg_name",
            Loc::BodyArg => "body_arg",
            Loc::Cookie => "cookie",
            Loc::CookieName => "cookie_name",
            Loc::Header => "header",
            Loc::HeaderName => "header_name",
            Loc::Body => "body",
            Loc::Xml => "body_xml",
            Loc::FileName => "file_name",
            Loc::FileField => "file_field",
            Loc::MultipartHeader => "multipart_header",
        }
    }

    /// Whether the value came from the body.
    pub fn in_body(self) -> bool {
        matches!(
            self,
            Loc::BodyArg
                | Loc::BodyArgName
                | Loc::Body
                | Loc::Xml
                | Loc::FileName
                | Loc::FileField
                | Loc::MultipartHeader
        )
    }
}

/// One inspected value: where it is, the name it has there (argument, cookie or header
/// name, lower-cased for headers), and the value itself.
#[derive(Debug, Clone)]
pub struct Field {
    pub loc: Loc,
    pub name: String,
    pub value: String,
}

/// A malformation noticed while parsing (reported by the protocol rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseAnomaly {
    MultipartNoBoundary,
    MultipartMalformed,
    MultipartUnmatchedBoundary,
    MultipartBadPartHeader,
    XmlMalformed,
}

/// A request split into fields.
#[derive(Debug, Default)]
pub struct Parsed {
    pub fields: Vec<Field>,
    pub anomalies: Vec<ParseAnomaly>,
}

impl Parsed {
    fn push(&mut self, loc: Loc, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push(Field {
            loc,
            name: name.into(),
            value: value.into(),
        });
    }
}

/// Splits `req` into fields; at most `body_limit` bytes of the body are read.
pub fn parse(req: &InspectedRequest, body_limit: usize) -> Parsed {
    let mut p = Parsed::default();
    p.push(Loc::Method, "", req.method.clone());
    p.push(Loc::Protocol, "", req.version.clone());
    p.push(
        Loc::RequestLine,
        "",
        format!("{} {} {}", req.method, req.uri, req.version),
    );
    p.push(Loc::Uri, "", req.uri.clone());
    let path = percent_decode(req.raw_path());
    let basename = path.rsplit('/').next().unwrap_or("").to_owned();
    p.push(Loc::Path, "", path);
    p.push(Loc::Basename, "", basename);
    let query = req.raw_query();
    if !query.is_empty() {
        p.push(Loc::Query, "", query);
        parse_urlencoded(&mut p, query, Loc::QueryArgName, Loc::QueryArg);
    }
    for (name, value) in &req.headers {
        let lname = name.to_ascii_lowercase();
        p.push(Loc::HeaderName, lname.clone(), lname.clone());
        if lname == "cookie" {
            parse_cookies(&mut p, value);
        }
        p.push(Loc::Header, lname, value.clone());
    }
    let body = &req.body[..req.body.len().min(body_limit)];
    if !body.is_empty() {
        let text = String::from_utf8_lossy(body).into_owned();
        // A body parsed into fields is inspected as those fields (so that exclusions of
        // one field hold); any other body is inspected whole.
        if !parse_body(&mut p, req, &text) {
            p.push(Loc::Body, "", text);
        }
    }
    p
}

fn parse_urlencoded(p: &mut Parsed, s: &str, name_loc: Loc, value_loc: Loc) {
    for pair in s.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let name = url_decode_once(name);
        p.push(name_loc, name.clone(), name.clone());
        p.push(value_loc, name, url_decode_once(value));
    }
}

fn parse_cookies(p: &mut Parsed, header: &str) {
    for pair in header.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        p.push(Loc::CookieName, name, name);
        p.push(Loc::Cookie, name, value);
    }
}

/// Parses the body by its media type; false when the type is not one that is parsed.
fn parse_body(p: &mut Parsed, req: &InspectedRequest, text: &str) -> bool {
    let ct = req.header_value("content-type").unwrap_or("").to_owned();
    let media = req.media_type().unwrap_or_default();
    if media == "application/x-www-form-urlencoded" {
        parse_urlencoded(
            p,
            text.trim_end_matches(['\r', '\n']),
            Loc::BodyArgName,
            Loc::BodyArg,
        );
    } else if media.starts_with("multipart/") {
        parse_multipart(p, &ct, text);
    } else if media.contains("ndjson") || media.contains("jsonl") || media.contains("json-seq") {
        for line in text.lines() {
            parse_json_text(p, line);
        }
    } else if media.ends_with("json") {
        parse_json_text(p, text);
    } else if media.ends_with("xml") {
        parse_xml(p, text);
    } else if media == "text/csv" {
        parse_csv(p, text);
    } else {
        return false;
    }
    true
}

fn parse_json_text(p: &mut Parsed, text: &str) {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => walk_json(p, "", &v),
        Err(_) => {
            // A truncated or invalid document: its strings are still inspected.
            for s in json_strings(text) {
                p.push(Loc::BodyArg, "json", s);
            }
        }
    }
}

fn walk_json(p: &mut Parsed, path: &str, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => p.push(Loc::BodyArg, path, s.clone()),
        Value::Number(n) => p.push(Loc::BodyArg, path, n.to_string()),
        Value::Bool(_) | Value::Null => {}
        Value::Array(items) => {
            for item in items {
                walk_json(p, path, item);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                p.push(Loc::BodyArgName, k.clone(), k.clone());
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk_json(p, &child, item);
            }
        }
    }
}

/// The string literals of a possibly truncated JSON text, unescaped.
fn json_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let end = (i + 1).min(b.len());
            let lit = &text[start..end.max(start)];
            let lit = if lit.ends_with('"') && lit.len() > 1 {
                lit.to_owned()
            } else {
                format!("{lit}\"")
            };
            if let Ok(s) = serde_json::from_str::<String>(&lit) {
                out.push(s);
            }
        }
        i += 1;
    }
    out
}

fn parse_csv(p: &mut Parsed, text: &str) {
    for line in text.lines() {
        for cell in line.split(',') {
            let cell = cell.trim().trim_matches('"');
            if !cell.is_empty() {
                p.push(Loc::BodyArg, "csv", cell);
            }
        }
    }
}

/// The boundary parameter of a multipart content type.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned(),
        )
    })
}

fn parse_multipart(p: &mut Parsed, content_type: &str, text: &str) {
    let Some(boundary) = multipart_boundary(content_type).filter(|b| !b.is_empty()) else {
        p.anomalies.push(ParseAnomaly::MultipartNoBoundary);
        return;
    };
    let delim = format!("--{boundary}");
    let mut parts = text.split(delim.as_str());
    let preamble = parts.next().unwrap_or("");
    if !preamble.trim().is_empty() && !text.contains(&delim) {
        p.anomalies.push(ParseAnomaly::MultipartUnmatchedBoundary);
    }
    let mut closed = false;
    for part in parts {
        if part.starts_with("--") {
            closed = true;
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, content) = split_part(part);
        let mut name = String::new();
        let mut filename = None;
        for line in head.lines().filter(|l| !l.trim().is_empty()) {
            let Some((hname, hvalue)) = line.split_once(':') else {
                p.anomalies.push(ParseAnomaly::MultipartBadPartHeader);
                continue;
            };
            p.push(
                Loc::MultipartHeader,
                hname.trim().to_ascii_lowercase(),
                line.trim(),
            );
            if hname.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(hvalue, "name").unwrap_or_default();
                filename = disposition_param(hvalue, "filename");
            }
        }
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(content);
        match filename {
            Some(f) => {
                p.push(Loc::FileField, name.clone(), name.clone());
                p.push(Loc::FileName, name, f);
            }
            None => {
                p.push(Loc::BodyArgName, name.clone(), name.clone());
                p.push(Loc::BodyArg, name, content);
            }
        }
    }
    if !closed {
        p.anomalies.push(ParseAnomaly::MultipartMalformed);
    }
}

fn split_part(part: &str) -> (&str, &str) {
    if let Some(i) = part.find("\r\n\r\n") {
        (&part[..i], &part[i + 4..])
    } else if let Some(i) = part.find("\n\n") {
        (&part[..i], &part[i + 2..])
    } else {
        (part, "")
    }
}

fn disposition_param(value: &str, key: &str) -> Option<String> {
    let mut rest = value;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case(key) {
            continue;
        }
        let v = v.trim_start();
        return Some(match v.strip_prefix('"') {
            Some(q) => q[..q.find('"').unwrap_or(q.len())].to_owned(),
            None => v[..v.find(';').unwrap_or(v.len())].trim().to_owned(),
        });
    }
    None
}

/// Text nodes, CDATA and attribute values of an XML document (entities decoded).
fn parse_xml(p: &mut Parsed, text: &str) {
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        push_xml_text(p, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            push_xml_text(p, &cdata[..end]);
            rest = cdata.get(end + 3..).unwrap_or("");
            continue;
        }
        let Some(gt) = rest.find('>') else {
            p.anomalies.push(ParseAnomaly::XmlMalformed);
            push_xml_text(p, rest);
            return;
        };
        let tag = &rest[1..gt];
        if tag.starts_with("!DOCTYPE")
            || tag.starts_with("!doctype")
            || tag.starts_with("!ENTITY")
            || tag.starts_with("!entity")
        {
            // Document type declarations are where external entities (XXE) are declared.
            p.push(Loc::Xml, "doctype", &rest[..=gt]);
        } else if !tag.starts_with('!') && !tag.starts_with('?') {
            for value in attribute_values(tag) {
                push_xml_text(p, &value);
            }
        }
        rest = &rest[gt + 1..];
    }
    push_xml_text(p, rest);
}

fn push_xml_text(p: &mut Parsed, s: &str) {
    let t = s.trim();
    if !t.is_empty() {
        p.push(Loc::Xml, "xml", crate::transform::html_entity_decode(t));
    }
}

fn attribute_values(tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next();
        match quote {
            Some(q @ ('"' | '\'')) => {
                let body = &after[1..];
                let end = body.find(q).unwrap_or(body.len());
                out.push(body[..end].to_owned());
                rest = body.get(end + 1..).unwrap_or("");
            }
            _ => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                out.push(after[..end].to_owned());
                rest = &after[end..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: &Parsed, loc: Loc) -> Vec<(String, String)> {
        p.fields
            .iter()
            .filter(|f| f.loc == loc)
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect()
    }

    #[test]
    fn query_cookies_and_headers_split() {
        let req = InspectedRequest::new("GET", "/a%20b/c.php?x=1+2&y=%27&flag")
            .header("Cookie", "sid=abc; theme=dark");
        let p = parse(&req, 1024);
        assert_eq!(values(&p, Loc::Path), [("".into(), "/a b/c.php".into())]);
        assert_eq!(values(&p, Loc::Basename)[0].1, "c.php");
        assert_eq!(
            values(&p, Loc::QueryArg),
            [
                ("x".into(), "1 2".into()),
                ("y".into(), "'".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            values(&p, Loc::Cookie),
            [
                ("sid".into(), "abc".into()),
                ("theme".into(), "dark".into())
            ]
        );
        assert!(values(&p, Loc::Header).iter().any(|(n, _)| n == "cookie"));
    }

    #[test]
    fn bodies_parse_by_content_type() {
        let json = InspectedRequest::new("POST", "/")
            .header("Content-Type", "application/json")
            .body(r#"{"a":{"b":["x",2]},"c":"y"}"#);
        assert_eq!(values(&parse(&json, 1024), Loc::BodyArg).len(), 3);
        let truncated = InspectedRequest::new("POST", "/")
            .header("Content-Type", "application/json")
            .body(r#"{"a":"<script>","b":"tru"#);
        assert!(values(&parse(&truncated, 1024), Loc::BodyArg)
            .iter()
            .any(|(_, v)| v == "<script>"));
        let mp = InspectedRequest::new("POST", "/")
            .header("Content-Type", "multipart/form-data; boundary=XX")
            .body("--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php\r\n--XX--\r\n");
        let p = parse(&mp, 1024);
        assert_eq!(values(&p, Loc::BodyArg), [("a".into(), "hello".into())]);
        assert_eq!(values(&p, Loc::FileName), [("f".into(), "x.php".into())]);
        assert!(p.anomalies.is_empty());
        let xml = InspectedRequest::new("POST", "/")
            .header("Content-Type", "text/xml")
            .body("<a x='1'><b>t&lt;</b><![CDATA[c]]></a>");
        let got: Vec<String> = values(&parse(&xml, 1024), Loc::Xml)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, ["1", "t<", "c"]);
    }

    #[test]
    fn only_the_limit_is_parsed() {
        let req = InspectedRequest::new("POST", "/")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("a=1&b=2");
        let p = parse(&req, 3);
        assert_eq!(values(&p, Loc::BodyArg), [("a".into(), "1".into())]);
    }
}
