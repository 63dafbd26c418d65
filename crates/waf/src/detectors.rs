//! Built-in detectors: checks written as code rather than as one pattern (the
//! libinjection tokenisers for SQL and HTML, and grammars of shells, lookups and
//! URLs). Each has a stable rule id and the request parts it reads.

use crate::request::Loc;

/// The forms of one value a detector may read.
pub struct Forms<'a> {
    /// As parsed (query and form values decoded once).
    pub raw: &'a str,
    /// URL-decoded until stable, full-width letters folded, NULs removed.
    pub decoded: &'a str,
    /// `decoded` with HTML entities and JavaScript escapes decoded too.
    pub normal: &'a str,
}

/// A built-in detector.
pub struct Detector {
    pub id: &'static str,
    pub description: &'static str,
    pub locs: u32,
    /// Header names it reads when `locs` has `Loc::Header`; empty for all headers.
    pub headers: &'static [&'static str],
    pub check: fn(&Forms) -> bool,
}

const ARGS: u32 = Loc::QueryArg.bit() | Loc::BodyArg.bit() | Loc::Xml.bit();
const NAMES: u32 = Loc::QueryArgName.bit() | Loc::BodyArgName.bit();
const COOKIES: u32 = Loc::Cookie.bit() | Loc::CookieName.bit();
const HEADERS: u32 = Loc::Header.bit();
const USER_INPUT: u32 = ARGS | NAMES | COOKIES;

/// Headers that carry text a client chose freely.
const FREE_HEADERS: &[&str] = &["user-agent", "referer", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "forwarded"];

/// Every built-in detector, in evaluation order.
pub const DETECTORS: &[Detector] = &[
    Detector {
        id: "sqli-libinjection",
        description: "SQL injection found by libinjection's SQL tokeniser and fingerprints",
        locs: USER_INPUT | HEADERS | Loc::Path.bit(),
        headers: FREE_HEADERS,
        check: |f| sqli(f.decoded),
    },
    Detector {
        id: "xss-libinjection",
        description: "Cross-site scripting found by libinjection's HTML5 tokeniser",
        locs: USER_INPUT | HEADERS | Loc::Path.bit(),
        headers: FREE_HEADERS,
        check: |f| xss(f.decoded) || (f.normal != f.decoded && xss(f.normal)),
    },
];

fn sqli(s: &str) -> bool {
    !s.is_empty() && libinjectionrs::detect_sqli(s.as_bytes()).is_injection()
}

fn xss(s: &str) -> bool {
    s.len() > 2 && libinjectionrs::detect_xss(s.as_bytes()).is_injection()
}
