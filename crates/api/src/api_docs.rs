//! `GET /api/docs`: the OpenAPI document ([`crate::openapi::ApiDoc`]) as a page people can read —
//! rendered on the server from the same value `GET /api/openapi.json` serves, so the two never
//! disagree.
//!
//! The page has no JavaScript and loads nothing from another host: it works under a strict
//! Content-Security-Policy. Its one `<style>` element is allowed by its SHA-256 hash in the
//! page's own policy (`default-src 'none'; style-src 'sha256-…'`), and no element carries a
//! `style` attribute; under a policy without that hash (the site's `style-src 'self'`) the
//! page is still plain, readable HTML — headings, lists and tables.
//!
//! The page is the same for everyone and changes only with a release: it is rendered once, and
//! served with `Cache-Control: public` and a strong `ETag` (`If-None-Match` answers 304).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::OpenApi as _;

/// Where the page is served.
pub const PATH: &str = "/api/docs";

/// The page's only style sheet, inline, allowed by its hash.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f23;--bg:#fff;--muted:#57606a;--line:#d0d7de;--code:#f3f4f6;--link:#0b5cad}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--line:#30363d;--code:#161b22;--link:#58a6ff}}\
body{font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;padding:1rem;max-width:72rem}\
a{color:var(--link)}code{font:0.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--code);padding:0 .2em;border-radius:3px}\
h1{margin:.2em 0}h2{border-bottom:2px solid var(--line);padding-bottom:.2em;margin-top:2em}\
h3{margin:1.6em 0 .4em}h4{margin:1em 0 .3em;font-size:1em}\
.muted,.meta{color:var(--muted)}\
table{border-collapse:collapse;width:100%;margin:.3em 0 .8em;font-size:.95em}\
th,td{border:1px solid var(--line);padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:var(--code)}\
section.op,section.schema{border-top:1px solid var(--line)}\
.method{display:inline-block;min-width:4.2em;text-align:center;font:bold .85em ui-monospace,monospace;padding:.1em .4em;border-radius:4px;color:#fff;background:#57606a}\
.m-get{background:#1a7f37}.m-post{background:#0b5cad}.m-put,.m-patch{background:#9a6700}.m-delete{background:#cf222e}\
.auth{font-size:.95em}.auth-none{color:var(--muted)}\
nav ol{padding-left:1.4em}nav ol ol{font-size:.92em}\
nav li.ops{columns:2 22rem}\
.deprecated{color:#cf222e;font-weight:bold}\
@media print{.method{color:inherit;background:none;border:1px solid}}";

/// The methods an OpenAPI path item may have, in the order the page lists them.
const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// The rendered page and the headers that go with it.
pub struct DocsPage {
    pub html: String,
    /// A strong ETag of `html`.
    pub etag: String,
    /// The page's Content-Security-Policy (its style sheet allowed by hash).
    pub csp: String,
}

impl DocsPage {
    /// Renders `doc`.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> DocsPage {
        let html = render(doc);
        let etag = format!("\"{}\"", hex(&Sha256::digest(html.as_bytes())[..16]));
        DocsPage {
            html,
            etag,
            csp: content_security_policy(),
        }
    }
}

/// The API's page, rendered on first use.
pub fn docs_page() -> &'static DocsPage {
    static PAGE: LazyLock<DocsPage> =
        LazyLock::new(|| DocsPage::new(&crate::openapi::ApiDoc::openapi()));
    &PAGE
}

/// The policy the page is sent with: nothing but its own style sheet (by hash), same-origin
/// images (the favicon), no scripts, forms, frames or plugins.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'self'; form-action 'none'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        style_hash()
    )
}

/// The base64 SHA-256 of the page's style sheet, as CSP hash sources spell it.
pub fn style_hash() -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()))
}

/// This API's documentation.
///
/// The OpenAPI document rendered as one HTML page: the operations grouped by tag with their
/// parameters, request bodies, responses and authentication, and the schemas they use. No
/// scripts, nothing from other hosts. The machine-readable document is `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/docs", tag = "meta",
    responses(
        (status = 200, description = "The API documentation as an HTML page", content_type = "text/html"),
        (status = 304, description = "Not modified: `If-None-Match` named the page's current ETag"),
    ))]
pub async fn page(headers: HeaderMap) -> Response {
    let page = docs_page();
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &page.etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            page.html.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if let Ok(etag) = HeaderValue::from_str(&page.etag) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(csp) = HeaderValue::from_str(&page.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Does an `If-None-Match` value name `etag` (weak comparison, RFC 9110 §13.1.2)?
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---- rendering --------------------------------------------------------------------------------

/// The page for `doc`.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    Renderer {
        doc: &doc,
        ids: HashSet::new(),
    }
    .page()
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of prose (a description from the document): escaped, with Markdown's `code`
/// spans as `<code>` and line breaks as spaces.
fn inline(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    // An unmatched backtick stays a backtick.
    let spans = if parts.len() % 2 == 1 {
        parts.len()
    } else {
        parts.len() - 1
    };
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let text = escape(&part.replace('\n', " "));
        if i >= spans {
            out.push('`');
            out.push_str(&text);
        } else if i % 2 == 1 {
            let _ = write!(out, "<code>{text}</code>");
        } else {
            out.push_str(&text);
        }
    }
    out
}

/// A description as paragraphs (blank lines separate them).
fn prose(s: &str) -> String {
    s.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>\n", inline(p)))
        .collect()
}

/// A description inside a table cell: paragraphs separated by line breaks.
fn cell_prose(s: &str) -> String {
    s.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(inline)
        .collect::<Vec<_>>()
        .join("<br>")
}

/// A fragment-safe form of a name.
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The anchor of a component schema.
pub fn schema_anchor(name: &str) -> String {
    format!("schema-{}", slug(name))
}

/// The anchor of an operation.
pub fn operation_anchor(method: &str, path: &str) -> String {
    format!("op-{}-{}", method.to_ascii_lowercase(), slug(path))
}

fn tag_anchor(name: &str) -> String {
    format!("tag-{}", slug(name))
}

fn scheme_anchor(name: &str) -> String {
    format!("auth-{}", slug(name))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An operation of the document.
struct Op<'a> {
    method: &'static str,
    path: &'a str,
    op: &'a Value,
    /// The path item's own parameters (apply to every method).
    shared_parameters: &'a [Value],
}

struct Renderer<'a> {
    doc: &'a Value,
    /// Anchors given out so far (each id is unique on the page).
    ids: HashSet<String>,
}

impl<'a> Renderer<'a> {
    fn schemas(&self) -> Option<&'a Map<String, Value>> {
        self.doc.get("components").and_then(|c| obj(c, "schemas"))
    }

    fn security_schemes(&self) -> Option<&'a Map<String, Value>> {
        self.doc
            .get("components")
            .and_then(|c| obj(c, "securitySchemes"))
    }

    /// `id` if not yet used, else `id-2`, `id-3`…
    fn unique_id(&mut self, id: String) -> String {
        if self.ids.insert(id.clone()) {
            return id;
        }
        let mut n = 2;
        loop {
            let candidate = format!("{id}-{n}");
            if self.ids.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }

    fn operations(&self) -> Vec<Op<'a>> {
        let mut ops = Vec::new();
        if let Some(paths) = obj(self.doc, "paths") {
            for (path, item) in paths {
                for method in METHODS {
                    if let Some(op) = item.get(method).filter(|o| o.is_object()) {
                        ops.push(Op {
                            method,
                            path,
                            op,
                            shared_parameters: arr(item, "parameters"),
                        });
                    }
                }
            }
        }
        ops
    }

    /// The operations by tag: the document's tags in its order, then tags only operations
    /// name, then the untagged ones. An operation is listed under its first tag.
    fn by_tag(&self, ops: Vec<Op<'a>>) -> Vec<(String, Option<&'a str>, Vec<Op<'a>>)> {
        let mut groups: Vec<(String, Option<&'a str>, Vec<Op<'a>>)> = arr(self.doc, "tags")
            .iter()
            .filter_map(|t| {
                Some((
                    str_of(t, "name")?.to_string(),
                    str_of(t, "description"),
                    Vec::new(),
                ))
            })
            .collect();
        let mut untagged = Vec::new();
        for op in ops {
            let Some(tag) = arr(op.op, "tags").first().and_then(Value::as_str) else {
                untagged.push(op);
                continue;
            };
            match groups.iter_mut().find(|(name, _, _)| name == tag) {
                Some(group) => group.2.push(op),
                None => groups.push((tag.to_string(), None, vec![op])),
            }
        }
        if !untagged.is_empty() {
            groups.push(("other".into(), Some("Operations without a tag"), untagged));
        }
        groups.retain(|(_, _, ops)| !ops.is_empty());
        groups
    }

    fn page(mut self) -> String {
        let doc = self.doc;
        let info = doc.get("info").cloned().unwrap_or(Value::Null);
        let title = str_of(&info, "title").unwrap_or("API");
        let version = str_of(&info, "version").unwrap_or("");
        let groups = self.by_tag(self.operations());

        let mut out = String::with_capacity(256 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"color-scheme\" content=\"light dark\">\n\
             <title>{} {} — API documentation</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            escape(title),
            escape(version),
        );

        // The header: what this is, and the machine-readable document.
        out.push_str("<header>\n<p><a href=\"/\">← Back to the site</a></p>\n");
        let _ = writeln!(out, "<h1>{}</h1>", escape(title));
        let mut meta = Vec::new();
        if !version.is_empty() {
            meta.push(format!("Version <code>{}</code>", escape(version)));
        }
        if let Some(v) = str_of(doc, "openapi") {
            meta.push(format!("OpenAPI {}", escape(v)));
        }
        if let Some(license) = info.get("license").and_then(|l| str_of(l, "name")) {
            meta.push(format!("License: {}", escape(license)));
        }
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", meta.join(" · "));
        let _ = writeln!(
            out,
            "<p>The machine-readable OpenAPI document: <a href=\"/api/openapi.json\" \
             type=\"application/json\"><code>/api/openapi.json</code></a>.</p>\n</header>"
        );

        // Contents.
        out.push_str(
            "<nav aria-labelledby=\"contents\">\n<h2 id=\"contents\">Contents</h2>\n<ol>\n",
        );
        out.push_str("<li><a href=\"#overview\">Overview</a></li>\n");
        out.push_str("<li><a href=\"#authentication\">Authentication</a></li>\n");
        out.push_str("<li><a href=\"#operations\">Operations</a>\n<ol>\n");
        let mut op_ids = BTreeMap::new();
        let mut tag_ids = Vec::new();
        for (tag, _, ops) in &groups {
            let tag_id = self.unique_id(tag_anchor(tag));
            let _ = writeln!(
                out,
                "<li><a href=\"#{tag_id}\">{}</a> <span class=\"muted\">({})</span>\n<ol>",
                escape(tag),
                ops.len()
            );
            for op in ops {
                let id = self.unique_id(operation_anchor(op.method, op.path));
                let _ = writeln!(
                    out,
                    "<li><a href=\"#{id}\"><code>{}</code> <code>{}</code></a></li>",
                    op.method.to_ascii_uppercase(),
                    escape(op.path)
                );
                op_ids.insert((op.method, op.path), id);
            }
            out.push_str("</ol></li>\n");
            tag_ids.push(tag_id);
        }
        out.push_str("</ol></li>\n");
        let schemas = self.schemas();
        let mut schema_ids = Vec::new();
        if let Some(schemas) = schemas {
            out.push_str("<li><a href=\"#schemas\">Schemas</a>\n<ol>\n");
            for name in schemas.keys() {
                let id = self.unique_id(schema_anchor(name));
                let _ = writeln!(
                    out,
                    "<li><a href=\"#{id}\"><code>{}</code></a></li>",
                    escape(name)
                );
                schema_ids.push(id);
            }
            out.push_str("</ol></li>\n");
        }
        out.push_str("</ol>\n</nav>\n<main>\n");

        // Overview.
        out.push_str("<section id=\"overview\">\n<h2>Overview</h2>\n");
        if let Some(d) = str_of(&info, "description") {
            out.push_str(&prose(d));
        }
        let servers = arr(doc, "servers");
        if !servers.is_empty() {
            out.push_str("<p>Servers:</p>\n<ul>\n");
            for s in servers {
                let _ = writeln!(
                    out,
                    "<li><code>{}</code>{}</li>",
                    escape(str_of(s, "url").unwrap_or("")),
                    str_of(s, "description")
                        .map(|d| format!(" — {}", inline(d)))
                        .unwrap_or_default()
                );
            }
            out.push_str("</ul>\n");
        }
        let _ = writeln!(
            out,
            "<p>{} operations on {} paths; {} schemas.</p>\n</section>",
            groups.iter().map(|g| g.2.len()).sum::<usize>(),
            obj(doc, "paths").map(Map::len).unwrap_or(0),
            schemas.map(Map::len).unwrap_or(0)
        );

        // Authentication.
        out.push_str("<section id=\"authentication\">\n<h2>Authentication</h2>\n");
        match self.security_schemes() {
            Some(schemes) if !schemes.is_empty() => {
                out.push_str(
                    "<p>Operations that need authentication name one of these schemes; the others \
                     anyone may call.</p>\n<dl>\n",
                );
                for (name, scheme) in schemes {
                    let id = self.unique_id(scheme_anchor(name));
                    let _ = writeln!(
                        out,
                        "<dt id=\"{id}\"><code>{}</code></dt>\n<dd>{}{}</dd>",
                        escape(name),
                        scheme_kind(scheme),
                        str_of(scheme, "description")
                            .map(|d| format!("<br>{}", cell_prose(d)))
                            .unwrap_or_default()
                    );
                }
                out.push_str("</dl>\n");
            }
            _ => out.push_str("<p>The document names no authentication schemes.</p>\n"),
        }
        out.push_str("</section>\n");

        // Operations.
        out.push_str("<section id=\"operations\">\n<h2>Operations</h2>\n");
        for ((tag, description, ops), tag_id) in groups.iter().zip(&tag_ids) {
            let _ = writeln!(
                out,
                "<section class=\"tag\">\n<h2 id=\"{tag_id}\">{}</h2>",
                escape(tag)
            );
            if let Some(d) = description {
                out.push_str(&prose(d));
            }
            for op in ops {
                let id = &op_ids[&(op.method, op.path)];
                out.push_str(&self.operation(op, id));
            }
            out.push_str("</section>\n");
        }
        out.push_str("</section>\n");

        // Schemas.
        if let Some(schemas) = schemas {
            out.push_str("<section id=\"schemas\">\n<h2>Schemas</h2>\n");
            for ((name, schema), id) in schemas.iter().zip(&schema_ids) {
                let _ = writeln!(
                    out,
                    "<section class=\"schema\" id=\"{id}\">\n<h3><code>{}</code></h3>",
                    escape(name)
                );
                if let Some(d) = str_of(schema, "description") {
                    out.push_str(&prose(d));
                }
                out.push_str(&self.schema_body(schema, 0));
                out.push_str("</section>\n");
            }
            out.push_str("</section>\n");
        }

        let _ = writeln!(
            out,
            "</main>\n<footer>\n<p class=\"muted\">Rendered from <a href=\"/api/openapi.json\">\
             /api/openapi.json</a>.</p>\n</footer>\n</body>\n</html>"
        );
        out
    }

    fn operation(&self, op: &Op<'a>, id: &str) -> String {
        let o = op.op;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<section class=\"op\" id=\"{id}\">\n<h3><span class=\"method m-{}\">{}</span> <code>{}</code></h3>",
            op.method,
            op.method.to_ascii_uppercase(),
            escape(op.path)
        );
        if let Some(s) = str_of(o, "summary") {
            out.push_str(&prose(s));
        }
        if let Some(d) = str_of(o, "description") {
            out.push_str(&prose(d));
        }
        if o.get("deprecated").and_then(Value::as_bool) == Some(true) {
            out.push_str("<p class=\"deprecated\">Deprecated.</p>\n");
        }
        out.push_str(&self.security(o));

        // Parameters: the path item's, unless the operation redefines one.
        let own = arr(o, "parameters");
        let mut parameters: Vec<&Value> = op
            .shared_parameters
            .iter()
            .filter(|p| {
                !own.iter().any(|q| {
                    str_of(q, "name") == str_of(p, "name") && str_of(q, "in") == str_of(p, "in")
                })
            })
            .collect();
        parameters.extend(own);
        if !parameters.is_empty() {
            out.push_str(
                "<h4>Parameters</h4>\n<table>\n<thead><tr><th>Name</th><th>In</th><th>Required</th>\
                 <th>Type</th><th>Description</th></tr></thead>\n<tbody>\n",
            );
            for p in parameters {
                if let Some(r) = str_of(p, "$ref") {
                    let _ = writeln!(out, "<tr><td colspan=\"5\">{}</td></tr>", self.ref_link(r));
                    continue;
                }
                let required = p.get("required").and_then(Value::as_bool).unwrap_or(false)
                    || str_of(p, "in") == Some("path");
                let mut description = str_of(p, "description").map(cell_prose).unwrap_or_default();
                if p.get("deprecated").and_then(Value::as_bool) == Some(true) {
                    description.push_str(" <span class=\"deprecated\">Deprecated.</span>");
                }
                let _ =
                    writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(str_of(p, "name").unwrap_or("")),
                    escape(str_of(p, "in").unwrap_or("")),
                    if required { "yes" } else { "no" },
                    p.get("schema").map(|s| self.type_html(s, 0)).unwrap_or_default(),
                    join_notes(description, p.get("schema"))
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }

        // The request body.
        if let Some(body) = o.get("requestBody").filter(|b| b.is_object()) {
            out.push_str("<h4>Request body</h4>\n");
            if let Some(r) = str_of(body, "$ref") {
                let _ = writeln!(out, "<p>{}</p>", self.ref_link(r));
            } else {
                let required = body
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let _ = writeln!(
                    out,
                    "<p>{}{}</p>",
                    if required { "Required." } else { "Optional." },
                    str_of(body, "description")
                        .map(|d| format!(" {}", cell_prose(d)))
                        .unwrap_or_default()
                );
                out.push_str(&self.content_list(body));
            }
        }

        // Responses.
        if let Some(responses) = obj(o, "responses").filter(|r| !r.is_empty()) {
            out.push_str(
                "<h4>Responses</h4>\n<table>\n<thead><tr><th>Status</th><th>Description</th>\
                 <th>Content</th></tr></thead>\n<tbody>\n",
            );
            for (status, response) in responses {
                if let Some(r) = str_of(response, "$ref") {
                    let _ = writeln!(
                        out,
                        "<tr><td><code>{}</code></td><td colspan=\"2\">{}</td></tr>",
                        escape(status),
                        self.ref_link(r)
                    );
                    continue;
                }
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    escape(status),
                    match str_of(response, "description") {
                        Some(d) => cell_prose(d),
                        // Undescribed: the status's reason phrase.
                        None => StatusCode::from_bytes(status.as_bytes())
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .map(|r| format!("<span class=\"muted\">{}</span>", escape(r)))
                            .unwrap_or_default(),
                    },
                    self.content_inline(response)
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str("</section>\n");
        out
    }

    /// Who may call an operation.
    fn security(&self, op: &Value) -> String {
        let requirements = op
            .get("security")
            .or_else(|| self.doc.get("security"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if requirements.is_empty() {
            return "<p class=\"auth auth-none\">Authentication: none — anyone may call it.</p>\n"
                .into();
        }
        let mut optional = false;
        let alternatives: Vec<String> = requirements
            .iter()
            .filter_map(Value::as_object)
            .filter_map(|req| {
                if req.is_empty() {
                    optional = true;
                    return None;
                }
                Some(
                    req.iter()
                        .map(|(name, scopes)| {
                            let scopes: Vec<String> = scopes
                                .as_array()
                                .map(|s| {
                                    s.iter()
                                        .filter_map(Value::as_str)
                                        .map(|s| format!("<code>{}</code>", escape(s)))
                                        .collect()
                                })
                                .unwrap_or_default();
                            let link = if self
                                .security_schemes()
                                .is_some_and(|s| s.contains_key(name))
                            {
                                format!(
                                    "<a href=\"#{}\"><code>{}</code></a>",
                                    scheme_anchor(name),
                                    escape(name)
                                )
                            } else {
                                format!("<code>{}</code>", escape(name))
                            };
                            if scopes.is_empty() {
                                link
                            } else {
                                format!("{link} (scopes {})", scopes.join(", "))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" and "),
                )
            })
            .collect();
        if alternatives.is_empty() {
            return "<p class=\"auth auth-none\">Authentication: none — anyone may call it.</p>\n"
                .into();
        }
        format!(
            "<p class=\"auth\">Authentication: {}{}.</p>\n",
            if optional {
                "optional — "
            } else {
                "required — "
            },
            alternatives.join(" or ")
        )
    }

    /// A request body's or response's content types with their schemas, as a list.
    fn content_list(&self, holder: &Value) -> String {
        let Some(content) = obj(holder, "content").filter(|c| !c.is_empty()) else {
            return String::new();
        };
        let mut out = String::from("<ul>\n");
        for (media_type, c) in content {
            let _ = writeln!(
                out,
                "<li><code>{}</code>{}</li>",
                escape(media_type),
                c.get("schema")
                    .map(|s| format!(": {}", self.type_html(s, 0)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</ul>\n");
        out
    }

    /// A response's content types with their schemas, for a table cell.
    fn content_inline(&self, holder: &Value) -> String {
        let Some(content) = obj(holder, "content") else {
            return String::new();
        };
        content
            .iter()
            .map(|(media_type, c)| {
                format!(
                    "<code>{}</code>{}",
                    escape(media_type),
                    c.get("schema")
                        .map(|s| format!(": {}", self.type_html(s, 0)))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    }

    /// A link to what a `$ref` names: an in-page link for a schema of the document.
    fn ref_link(&self, reference: &str) -> String {
        if let Some(name) = reference.strip_prefix("#/components/schemas/") {
            if self.schemas().is_some_and(|s| s.contains_key(name)) {
                return format!(
                    "<a href=\"#{}\"><code>{}</code></a>",
                    schema_anchor(name),
                    escape(name)
                );
            }
        }
        format!("<code>{}</code>", escape(reference))
    }

    /// A compact rendering of a schema's type: `string (date-time) | null`, `array of Station`,
    /// with in-page links for references.
    fn type_html(&self, schema: &Value, depth: usize) -> String {
        if depth > 5 {
            return "…".into();
        }
        if let Some(r) = str_of(schema, "$ref") {
            return self.ref_link(r);
        }
        if let Some(v) = schema.get("const") {
            return format!("<code>{}</code>", escape(&v.to_string()));
        }
        for (key, sep) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")] {
            let parts = arr(schema, key);
            if !parts.is_empty() {
                let inner: Vec<String> =
                    parts.iter().map(|p| self.type_html(p, depth + 1)).collect();
                let joined = inner.join(sep);
                return if depth > 0 && inner.len() > 1 {
                    format!("({joined})")
                } else {
                    joined
                };
            }
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ if schema.get("properties").is_some() => vec!["object"],
            _ if schema.get("items").is_some() => vec!["array"],
            _ => Vec::new(),
        };
        let enumerated = arr(schema, "enum");
        if !enumerated.is_empty() {
            let mut values: Vec<String> = enumerated
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect();
            if types.contains(&"null") && !enumerated.iter().any(Value::is_null) {
                values.push("null".into());
            }
            return format!("one of {}", values.join(", "));
        }
        if types.is_empty() {
            return "any".into();
        }
        types
            .iter()
            .map(|t| match *t {
                "array" => match schema.get("items") {
                    Some(items) => format!("array of {}", self.type_html(items, depth + 1)),
                    None => "array".into(),
                },
                "object" => {
                    if let Some(props) = obj(schema, "properties").filter(|p| !p.is_empty()) {
                        let names: Vec<String> = props
                            .keys()
                            .map(|k| format!("<code>{}</code>", escape(k)))
                            .collect();
                        format!("object {{{}}}", names.join(", "))
                    } else if let Some(values) =
                        schema.get("additionalProperties").filter(|v| v.is_object())
                    {
                        format!("map of {}", self.type_html(values, depth + 1))
                    } else {
                        "object".into()
                    }
                }
                other => match str_of(schema, "format") {
                    Some(f) if other != "null" => format!("{} ({})", escape(other), escape(f)),
                    _ => escape(other),
                },
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// The body of a schema's section: its properties as a table, its variants, or its type.
    fn schema_body(&self, schema: &Value, depth: usize) -> String {
        let mut out = String::new();
        if depth > 3 {
            let _ = writeln!(out, "<p>Type: {}</p>", self.type_html(schema, 0));
            return out;
        }
        if let Some(props) = obj(schema, "properties") {
            let required: Vec<&str> = arr(schema, "required")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            out.push_str(
                "<table>\n<thead><tr><th>Property</th><th>Type</th><th>Required</th>\
                 <th>Description</th></tr></thead>\n<tbody>\n",
            );
            for (name, prop) in props {
                let description = str_of(prop, "description")
                    .or_else(|| {
                        // A described reference may be wrapped (`allOf: [$ref]` / `oneOf`).
                        ["allOf", "oneOf", "anyOf"].iter().find_map(|k| {
                            arr(prop, k).iter().find_map(|p| str_of(p, "description"))
                        })
                    })
                    .map(cell_prose)
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(name),
                    self.type_html(prop, 0),
                    if required.contains(&name.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    join_notes(description, Some(prop))
                );
            }
            out.push_str("</tbody>\n</table>\n");
            if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                let _ = writeln!(out, "<p>Other properties: {}</p>", self.type_html(extra, 0));
            }
            return out;
        }
        for (key, intro) in [
            ("allOf", "All of:"),
            ("oneOf", "One of:"),
            ("anyOf", "Any of:"),
        ] {
            let parts = arr(schema, key);
            if parts.is_empty() {
                continue;
            }
            let _ = writeln!(out, "<p>{intro}</p>\n<ul>");
            for part in parts {
                out.push_str("<li>");
                if let Some(d) = str_of(part, "description") {
                    let _ = write!(out, "{} ", cell_prose(d));
                }
                if obj(part, "properties").is_some() {
                    out.push_str(&self.schema_body(part, depth + 1));
                } else {
                    out.push_str(&self.type_html(part, 0));
                }
                out.push_str("</li>\n");
            }
            out.push_str("</ul>\n");
            return out;
        }
        let _ = writeln!(out, "<p>Type: {}</p>", self.type_html(schema, 0));
        let notes = join_notes(String::new(), Some(schema));
        if !notes.is_empty() {
            let _ = writeln!(out, "<p>{notes}</p>");
        }
        out
    }
}

/// A description with the schema's constraints and default after it.
fn join_notes(description: String, schema: Option<&Value>) -> String {
    let Some(schema) = schema else {
        return description;
    };
    let mut notes = Vec::new();
    for (key, label) in [
        ("default", "Default"),
        ("minimum", "Minimum"),
        ("maximum", "Maximum"),
        ("exclusiveMinimum", "Above"),
        ("exclusiveMaximum", "Below"),
        ("minLength", "Min length"),
        ("maxLength", "Max length"),
        ("minItems", "Min items"),
        ("maxItems", "Max items"),
        ("pattern", "Pattern"),
    ] {
        if let Some(v) = schema.get(key) {
            let shown = match v {
                Value::String(s) if key == "pattern" => s.clone(),
                v => v.to_string(),
            };
            notes.push(format!("{label}: <code>{}</code>", escape(&shown)));
        }
    }
    if notes.is_empty() {
        return description;
    }
    let notes = format!("<span class=\"muted\">{}.</span>", notes.join("; "));
    if description.is_empty() {
        notes
    } else {
        format!("{description}<br>{notes}")
    }
}

/// What kind of credential a security scheme is.
fn scheme_kind(scheme: &Value) -> String {
    match str_of(scheme, "type") {
        Some("http") => {
            let s = str_of(scheme, "scheme").unwrap_or("");
            let mut out = if s.eq_ignore_ascii_case("bearer") {
                "HTTP bearer token (<code>Authorization: Bearer …</code>)".to_string()
            } else {
                format!("HTTP <code>{}</code> authentication", escape(s))
            };
            if let Some(f) = str_of(scheme, "bearerFormat") {
                let _ = write!(out, ", format {}", escape(f));
            }
            out
        }
        Some("apiKey") => format!(
            "API key in the {} <code>{}</code>",
            escape(str_of(scheme, "in").unwrap_or("header")),
            escape(str_of(scheme, "name").unwrap_or(""))
        ),
        Some("oauth2") => "OAuth 2.0".into(),
        Some("openIdConnect") => format!(
            "OpenID Connect (<code>{}</code>)",
            escape(str_of(scheme, "openIdConnectUrl").unwrap_or(""))
        ),
        Some("mutualTLS") => "Mutual TLS".into(),
        Some(other) => escape(other),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> utoipa::openapi::OpenApi {
        crate::openapi::ApiDoc::openapi()
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(
            inline("use `<b>` & go"),
            "use <code>&lt;b&gt;</code> &amp; go"
        );
        assert_eq!(inline("a `b"), "a `b");
    }

    #[test]
    fn descriptions_titles_and_names_from_the_document_are_escaped() {
        let mut doc = doc();
        doc.info.title = "Air <Quality> & \"Weather\"".into();
        doc.info.description = Some("<script>alert('x')</script> & <img src=x onerror=y>".into());
        doc.tags.as_mut().unwrap()[0].description = Some("Tag <em>one</em>".into());
        let (_, item) = doc.paths.paths.iter_mut().next().unwrap();
        item.get
            .as_mut()
            .or(item.post.as_mut())
            .unwrap()
            .description = Some("An operation <b>bold</b> & <i>more</i>".into());
        let html = render(&doc);
        assert!(html.contains("Air &lt;Quality&gt; &amp; &quot;Weather&quot;"));
        assert!(html.contains(
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img src=x onerror=y&gt;"
        ));
        assert!(html.contains("An operation &lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;more&lt;/i&gt;"));
        assert!(html.contains("Tag &lt;em&gt;one&lt;/em&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<em>"));
        assert!(!html.contains("<b>bold"));
    }

    #[test]
    fn the_style_sheet_is_allowed_by_its_hash_and_nothing_else_inline_is() {
        let page = DocsPage::new(&doc());
        let style = format!("<style>{STYLE}</style>");
        assert_eq!(page.html.matches("<style>").count(), 1);
        assert!(page.html.contains(&style));
        assert!(page
            .csp
            .contains(&format!("style-src 'sha256-{}';", style_hash())));
        assert!(page.csp.starts_with("default-src 'none';"));
        assert!(!page.csp.contains("unsafe"));
        assert!(!page.csp.contains("script-src"));
        // Known answer: the hash is over the exact bytes between the tags.
        let digest = Sha256::digest(STYLE.as_bytes());
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(style_hash())
                .unwrap(),
            digest.as_slice()
        );
        assert!(!page.html.contains(" style="), "an inline style attribute");
        assert!(!page.html.contains("<script"));
    }

    #[test]
    fn if_none_match_is_compared_weakly() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn slugs_are_fragment_safe() {
        assert_eq!(slug("/api/v1/stations/{id}"), "api-v1-stations-id");
        assert_eq!(
            operation_anchor("GET", "/api/v1/stations/{id}"),
            "op-get-api-v1-stations-id"
        );
        assert_eq!(schema_anchor("Page<Station>"), "schema-Page-Station");
    }
}
