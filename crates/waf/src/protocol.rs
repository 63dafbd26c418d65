//! Protocol anomalies and size restrictions: checks of the request as a whole (method,
//! version, framing headers that enable request smuggling, host, content type and
//! charset, encodings, restricted files and headers, multipart framing) rather than of
//! one value's content.

use crate::engine::Run;
use crate::request::{multipart_boundary, Field, Loc, ParseAnomaly, Parsed};

/// The rules of this module, with what each one means.
pub const RULES: &[(&str, &str)] = &[
    ("protocol-method-not-allowed", "the method is not one the site accepts"),
    ("protocol-http-version", "the HTTP version is not one the site accepts"),
    ("protocol-request-line", "the request target is malformed (not a path, an absolute URL or `*`)"),
    ("protocol-content-length-invalid", "Content-Length is not a number, or is given twice with different values"),
    ("protocol-get-with-body", "a GET or HEAD request carries a body"),
    ("protocol-post-without-length", "an HTTP/1 POST has neither Content-Length nor Transfer-Encoding"),
    ("protocol-smuggling", "both Content-Length and Transfer-Encoding, or a Transfer-Encoding other than chunked (request smuggling)"),
    ("protocol-host-missing", "no Host header"),
    ("protocol-host-empty", "an empty Host header"),
    ("protocol-host-is-ip", "the Host header is a numeric address"),
    ("protocol-url-encoding", "an invalid %-escape in the target or a form body"),
    ("protocol-unicode-fullwidth", "%uFFxx full-width escapes, used to evade matching"),
    ("protocol-null-byte", "a NUL byte in the target, a header or an argument"),
    ("protocol-content-type-missing", "a body without Content-Type"),
    ("protocol-content-type-not-allowed", "a body media type the site does not accept"),
    ("protocol-content-type-malformed", "a malformed Content-Type header"),
    ("protocol-content-type-multiple", "more than one Content-Type header"),
    ("protocol-charset-not-allowed", "a charset the site does not accept, or more than one"),
    ("protocol-restricted-extension", "the path ends in a restricted file extension (.bak, .sql, .ini…)"),
    ("protocol-backup-file", "the path names an editor backup file (`file.php~`)"),
    ("protocol-restricted-header", "a header the site refuses (Proxy, X-HTTP-Method-Override…)"),
    ("protocol-range-invalid", "a Range whose end comes before its start"),
    ("protocol-connection-header", "a Connection header with conflicting or repeated options"),
    ("protocol-user-agent-empty", "an empty User-Agent header"),
    ("protocol-multipart-malformed", "a multipart body with no boundary, an unclosed or unmatched boundary, or a bad part header"),
    ("protocol-multipart-file-name", "a multipart file or field name with quotes, semicolons or other delimiters"),
    ("protocol-multipart-transfer-encoding", "a multipart part with Content-Transfer-Encoding (deprecated, used for evasion)"),
    ("size-uri-too-long", "the request target is longer than limits.max_uri_bytes"),
    ("size-too-many-args", "more query and form arguments than limits.max_args"),
    ("size-arg-name-too-long", "an argument name longer than limits.max_arg_name_bytes"),
    ("size-arg-too-long", "an argument value longer than limits.max_arg_bytes"),
    ("size-too-many-headers", "more headers than limits.max_headers"),
    ("size-header-too-long", "a header value longer than limits.max_header_bytes"),
    ("size-body-oversize", "the body is longer than body_limit and oversize = \"block\""),
];

fn request_field(value: &str) -> Field {
    Field {
        loc: Loc::RequestLine,
        name: String::new(),
        value: value.to_owned(),
    }
}

fn header_field(name: &str, value: &str) -> Field {
    Field {
        loc: Loc::Header,
        name: name.to_ascii_lowercase(),
        value: value.to_owned(),
    }
}

/// Checks of the request line and headers.
pub(crate) fn check_request(run: &mut Run) {
    method_and_version(run);
    framing(run);
    host(run);
    content_type(run);
    encodings(run);
    restricted(run);
    header_sizes(run);
}

fn method_and_version(run: &mut Run) {
    let req = run.req;
    let line = format!("{} {} {}", req.method, req.uri, req.version);
    if !run.config().allowed_methods.contains(&req.method) {
        run.report("protocol-method-not-allowed", &request_field(&line));
    }
    if !run
        .config()
        .allowed_http_versions
        .iter()
        .any(|v| v.eq_ignore_ascii_case(&req.version))
    {
        run.report("protocol-http-version", &request_field(&line));
    }
    let uri = &req.uri;
    let target_ok = uri.starts_with('/')
        || (uri == "*" && req.method == "OPTIONS")
        || uri.starts_with("http://")
        || uri.starts_with("https://");
    let clean = !uri.bytes().any(|b| b <= b' ' || b == 0x7f);
    if !target_ok
        || !clean
        || req.method.is_empty()
        || !req
            .method
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
    {
        run.report("protocol-request-line", &request_field(&line));
    }
    if uri.len() > run.config().limits.max_uri_bytes {
        run.report("size-uri-too-long", &request_field(&line));
    }
}

fn framing(run: &mut Run) {
    let req = run.req;
    let lengths: Vec<&str> = req.header_values("content-length").collect();
    let te: Vec<&str> = req.header_values("transfer-encoding").collect();
    for cl in &lengths {
        if cl.is_empty() || !cl.bytes().all(|b| b.is_ascii_digit()) {
            run.report(
                "protocol-content-length-invalid",
                &header_field("content-length", cl),
            );
        }
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        run.report(
            "protocol-content-length-invalid",
            &header_field("content-length", &lengths.join(", ")),
        );
    }
    let has_body = lengths
        .iter()
        .any(|l| !l.trim_start_matches('0').is_empty())
        || !te.is_empty();
    if matches!(req.method.as_str(), "GET" | "HEAD") && has_body {
        let value = lengths.first().or(te.first()).copied().unwrap_or("");
        run.report(
            "protocol-get-with-body",
            &header_field("content-length", value),
        );
    }
    if req.method == "POST"
        && req.version.starts_with("HTTP/1")
        && lengths.is_empty()
        && te.is_empty()
    {
        run.report("protocol-post-without-length", &request_field(&req.method));
    }
    if !te.is_empty() && !lengths.is_empty() {
        run.report(
            "protocol-smuggling",
            &header_field("transfer-encoding", te[0]),
        );
    }
    for value in &te {
        if !value.trim().eq_ignore_ascii_case("chunked") {
            run.report(
                "protocol-smuggling",
                &header_field("transfer-encoding", value),
            );
        }
    }
    for value in req.header_values("connection") {
        let opts: Vec<String> = value
            .split(',')
            .map(|o| o.trim().to_ascii_lowercase())
            .collect();
        let keep = opts.iter().filter(|o| *o == "keep-alive").count();
        let close = opts.iter().filter(|o| *o == "close").count();
        if keep + close > 1 {
            run.report(
                "protocol-connection-header",
                &header_field("connection", value),
            );
        }
    }
    for name in ["range", "request-range"] {
        for value in req.header_values(name) {
            if range_is_backwards(value) {
                run.report("protocol-range-invalid", &header_field(name, value));
            }
        }
    }
}

fn range_is_backwards(value: &str) -> bool {
    let spec = value.trim().strip_prefix("bytes=").unwrap_or(value);
    spec.split(',').any(|r| match r.trim().split_once('-') {
        Some((a, b)) => match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            (Ok(a), Ok(b)) => b < a,
            _ => false,
        },
        None => false,
    })
}

fn host(run: &mut Run) {
    let req = run.req;
    let hosts: Vec<&str> = req.header_values("host").collect();
    if hosts.is_empty() && !req.version.starts_with("HTTP/2") && !req.version.starts_with("HTTP/3")
    {
        run.report("protocol-host-missing", &request_field(&req.uri));
    }
    for h in hosts {
        if h.trim().is_empty() {
            run.report("protocol-host-empty", &header_field("host", h));
        } else if h
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b':')
            || h.starts_with('[')
        {
            run.report("protocol-host-is-ip", &header_field("host", h));
        }
    }
    for ua in req.header_values("user-agent") {
        if ua.trim().is_empty() {
            run.report("protocol-user-agent-empty", &header_field("user-agent", ua));
        }
    }
}

fn content_type(run: &mut Run) {
    let req = run.req;
    let types: Vec<&str> = req.header_values("content-type").collect();
    if types.len() > 1 {
        run.report(
            "protocol-content-type-multiple",
            &header_field("content-type", &types.join(", ")),
        );
    }
    let has_body = !req.body.is_empty()
        || req
            .header_values("content-length")
            .any(|l| !l.trim_start_matches('0').is_empty());
    let Some(ct) = types.first().copied() else {
        if has_body {
            run.report("protocol-content-type-missing", &request_field(&req.uri));
        }
        return;
    };
    let field = header_field("content-type", ct);
    let lower = ct.to_ascii_lowercase();
    let media = lower.split(';').next().unwrap_or("").trim().to_owned();
    if !content_type_well_formed(&lower) {
        run.report("protocol-content-type-malformed", &field);
    }
    if !run.config().allowed_content_types.contains(&media) {
        run.report("protocol-content-type-not-allowed", &field);
    }
    let charsets: Vec<&str> = lower
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("charset"))
        .filter_map(|p| p.trim_start().strip_prefix('='))
        .map(|c| c.trim().trim_matches(['"', '\'']))
        .collect();
    let charset_bad = charsets.len() > 1
        || lower.matches("charset").count() > 1
        || charsets
            .iter()
            .any(|c| !run.config().allowed_charsets.iter().any(|a| a == c));
    if charset_bad {
        run.report("protocol-charset-not-allowed", &field);
    }
    if media.starts_with("multipart/")
        && multipart_boundary(ct).is_none_or(|b| b.is_empty() || b.contains(['"', '\'', ',', ';']))
        && media == "multipart/form-data"
    {
        run.report("protocol-multipart-malformed", &field);
    }
}

/// `type/subtype` followed by `; key=value` parameters (CRS 920470's shape).
fn content_type_well_formed(ct: &str) -> bool {
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let media_ok = match media.split_once('/') {
        Some((t, s)) => token(t) && token(s),
        None => false,
    };
    media_ok
        && parts.all(|p| {
            let p = p.trim();
            p.is_empty()
                || match p.split_once('=') {
                    Some((k, v)) => {
                        token(k.trim())
                            && (matches!(
                                k.trim(),
                                "boundary"
                                    | "charset"
                                    | "action"
                                    | "start"
                                    | "type"
                                    | "start-info"
                                    | "version"
                                    | "profile"
                            ) || !v.trim().is_empty())
                            && !v.contains(['(', ')', '<', '>', '@', ',', '\\', '[', ']', '{', '}'])
                    }
                    None => false,
                }
        })
}

fn encodings(run: &mut Run) {
    let req = run.req;
    if has_invalid_escape(&req.uri) {
        run.report("protocol-url-encoding", &request_field(&req.uri));
    }
    let form = req
        .media_type()
        .is_some_and(|m| m == "application/x-www-form-urlencoded");
    let body = String::from_utf8_lossy(&req.body[..req.body.len().min(run.config().body_limit)])
        .into_owned();
    if form && has_invalid_escape(&body) {
        run.report(
            "protocol-url-encoding",
            &Field {
                loc: Loc::Body,
                name: String::new(),
                value: body.clone(),
            },
        );
    }
    let fullwidth = |s: &str| {
        s.as_bytes().windows(4).any(|w| {
            (w[0] == b'%')
                && (w[1] | 0x20) == b'u'
                && (w[2] | 0x20) == b'f'
                && (w[3] | 0x20) == b'f'
        })
    };
    if fullwidth(&req.uri) {
        run.report("protocol-unicode-fullwidth", &request_field(&req.uri));
    }
    if fullwidth(&body) {
        run.report(
            "protocol-unicode-fullwidth",
            &Field {
                loc: Loc::Body,
                name: String::new(),
                value: body.clone(),
            },
        );
    }
    let decoded = crate::transform::apply(crate::transform::Transform::UrlDecodeUni, &req.uri);
    if decoded.contains('\0') {
        run.report("protocol-null-byte", &request_field(&req.uri));
    }
    for (name, value) in &req.headers {
        if value.contains('\0') || name.contains('\0') {
            run.report("protocol-null-byte", &header_field(name, value));
        }
    }
}

fn has_invalid_escape(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            && !(matches!(b.get(i + 1), Some(b'u') | Some(b'U'))
                && b.len() >= i + 6
                && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit))
    })
}

fn restricted(run: &mut Run) {
    let req = run.req;
    let path = crate::transform::percent_decode(req.raw_path()).to_ascii_lowercase();
    let basename = path.rsplit('/').next().unwrap_or("").to_owned();
    if let Some(dot) = basename.rfind('.') {
        let ext = &basename[dot..];
        if run.config().restricted_extensions.iter().any(|e| e == ext) {
            run.report(
                "protocol-restricted-extension",
                &Field {
                    loc: Loc::Path,
                    name: String::new(),
                    value: path.clone(),
                },
            );
        }
    }
    if basename.contains('.') && basename.ends_with('~') {
        run.report(
            "protocol-backup-file",
            &Field {
                loc: Loc::Path,
                name: String::new(),
                value: path.clone(),
            },
        );
    }
    for (name, value) in &req.headers {
        let lname = name.to_ascii_lowercase();
        if run.config().restricted_headers.contains(&lname) {
            run.report("protocol-restricted-header", &header_field(name, value));
        }
    }
}

fn header_sizes(run: &mut Run) {
    let req = run.req;
    let limits = run.config().limits.clone();
    if req.headers.len() > limits.max_headers {
        run.report(
            "size-too-many-headers",
            &request_field(&req.headers.len().to_string()),
        );
    }
    for (name, value) in &req.headers {
        if value.len() > limits.max_header_bytes {
            run.report("size-header-too-long", &header_field(name, value));
        }
    }
}

/// Checks that need the parsed request (argument counts and sizes, multipart framing).
pub(crate) fn check_parsed(run: &mut Run, parsed: &Parsed) {
    let limits = run.config().limits.clone();
    let args = parsed
        .fields
        .iter()
        .filter(|f| matches!(f.loc, Loc::QueryArg | Loc::BodyArg));
    // Counted over the query and form fields (the hash-flooding concern of form parsers);
    // a JSON, NDJSON or CSV batch of readings has thousands of values by design.
    let form = is_multipart(run)
        || run
            .req
            .media_type()
            .is_some_and(|m| m == "application/x-www-form-urlencoded");
    let counted = args
        .clone()
        .filter(|f| f.loc == Loc::QueryArg || form)
        .count();
    if counted > limits.max_args {
        run.report("size-too-many-args", &request_field("arguments"));
    }
    for f in args {
        if f.name.len() > limits.max_arg_name_bytes {
            run.report("size-arg-name-too-long", f);
        }
        if f.value.len() > limits.max_arg_bytes {
            run.report("size-arg-too-long", f);
        }
    }
    for f in &parsed.fields {
        match f.loc {
            Loc::QueryArg | Loc::BodyArg | Loc::QueryArgName | Loc::BodyArgName
                if f.value.contains('\0') =>
            {
                run.report("protocol-null-byte", f)
            }
            Loc::FileName | Loc::FileField if f.value.contains(['"', '\'', ';', '=', '\\']) => {
                run.report("protocol-multipart-file-name", f)
            }
            Loc::BodyArgName
                if f.value.contains(['"', '\'', ';', '=', '\\']) && is_multipart(run) =>
            {
                run.report("protocol-multipart-file-name", f)
            }
            Loc::MultipartHeader if f.name == "content-transfer-encoding" => {
                run.report("protocol-multipart-transfer-encoding", f)
            }
            _ => {}
        }
    }
    for a in &parsed.anomalies {
        let field = Field {
            loc: Loc::Body,
            name: String::new(),
            value: format!("{a:?}"),
        };
        match a {
            ParseAnomaly::XmlMalformed => {}
            _ => run.report("protocol-multipart-malformed", &field),
        }
    }
}

fn is_multipart(run: &Run) -> bool {
    run.req
        .media_type()
        .is_some_and(|m| m.starts_with("multipart/"))
}
