//! The OpenAPI document and the router describe the same API: every (method, path) the router
//! serves — read from the same tables the router is built from — is documented with its
//! responses, every documented operation is served, and no other method answers on those paths.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let responses = op["responses"].as_object().map(|r| r.len()).unwrap_or(0);
                assert!(responses > 0, "{method} {path} documents no responses");
                assert!(
                    op["responses"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .any(|status| status.starts_with('2') || status.starts_with('3')),
                    "{method} {path} documents no success"
                );
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete URL for a templated path.
fn concrete(path: &str) -> String {
    path.replace("{id}", "s1").replace("{file}", "report.md")
}

#[tokio::test]
async fn the_document_and_the_router_list_the_same_operations() {
    let (store, dir) = sqlite_store().await;
    let app = spawn_app(Arc::new(store), Some(dir)).await;
    let doc = app.get_json("/api/openapi.json").await;
    let documented = documented(&doc);
    let served: BTreeSet<(String, String)> = ecocityhub_api::served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert!(served.len() >= 40, "{} routes", served.len());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );

    // Every listed route is really routed: none answers with the router's own 404 or 405.
    let paths: BTreeSet<&str> = served.iter().map(|(_, p)| p.as_str()).collect();
    for path in &paths {
        for method in METHODS {
            let method_upper = method.to_uppercase();
            let listed = served.contains(&(method_upper.clone(), path.to_string()));
            let resp = app
                .client
                .request(
                    Method::from_bytes(method_upper.as_bytes()).unwrap(),
                    app.url(&concrete(path)),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if listed {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method_upper} {path}"
                );
                assert!(
                    !body.contains("there is no resource at"),
                    "{method_upper} {path} fell through to the fallback"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method_upper} {path} answers but is not listed"
                );
            }
        }
    }
}

/// Every value of `attr="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').expect("a closed attribute")]
        })
        .collect()
}

#[tokio::test]
async fn the_documentation_page_renders_every_operation_of_the_document() {
    use ecocityhub_api::api_docs::{escape, operation_anchor, schema_anchor};

    let (store, dir) = sqlite_store().await;
    let app = spawn_app(Arc::new(store), Some(dir)).await;
    let doc = app.get_json("/api/openapi.json").await;
    let resp = app.get("/api/docs").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(
        !csp.contains("unsafe") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(header("cache-control").starts_with("public"));
    let etag = header("etag");
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    eprintln!("/api/docs: {} bytes", html.len());

    // Nothing runs and nothing comes from elsewhere: no scripts, no inline style attributes,
    // no external resources, every link in the page or on this site.
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(!html.contains(" style="));
    assert!(!html.contains("<link") && !html.contains(" src="));
    let hrefs = attribute_values(&html, "href");
    for href in &hrefs {
        assert!(
            href.starts_with('#') || (href.starts_with('/') && !href.starts_with("//")),
            "{href}"
        );
    }
    assert!(hrefs.contains(&"/api/openapi.json"));

    // Every in-page link lands on an element, and no id is given twice.
    let ids = attribute_values(&html, "id");
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an id is used twice");
    for href in hrefs.iter().filter(|h| h.starts_with('#')) {
        assert!(unique.contains(&href[1..]), "{href} leads nowhere");
    }

    // Every operation of the document has its section, with its method, path and responses.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let anchor = operation_anchor(method, path);
            let start = html
                .find(&format!("id=\"{anchor}\""))
                .unwrap_or_else(|| panic!("{method} {path} has no section"));
            let section = &html[start..start + html[start..].find("</section>").unwrap()];
            assert!(
                section.contains(&format!(
                    ">{}</span> <code>{}</code></h3>",
                    method.to_uppercase(),
                    escape(path)
                )),
                "{method} {path}: {section}"
            );
            assert!(
                hrefs.contains(&format!("#{anchor}").as_str()),
                "{method} {path} is not in the contents"
            );
            if let Some(summary) = op["summary"].as_str().filter(|s| !s.contains('`')) {
                // Line breaks of the source are spaces on the page.
                let summary = escape(&summary.replace('\n', " "));
                assert!(section.contains(&summary), "{method} {path}: {summary}");
            }
            for status in op["responses"].as_object().unwrap().keys() {
                assert!(
                    section.contains(&format!("<td><code>{status}</code></td>")),
                    "{method} {path} {status}"
                );
            }
            let needs_auth = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            });
            assert_eq!(
                section.contains("Authentication: none"),
                !needs_auth,
                "{method} {path}: {section}"
            );
        }
    }
    assert!(operations >= 40, "{operations}");
    assert!(html.contains(&format!("id=\"{}\"", operation_anchor("get", "/api/docs"))));

    // Every schema has its section, and a reference is a working in-page link.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            unique.contains(schema_anchor(name).as_str()),
            "schema {name} has no section"
        );
    }
    let healthz = operation_anchor("get", "/healthz");
    let start = html.find(&format!("id=\"{healthz}\"")).unwrap();
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    let problem = format!("href=\"#{}\"", schema_anchor("Problem"));
    assert!(section.contains(&problem), "{section}");
    assert!(unique.contains(schema_anchor("Problem").as_str()));
    for scheme in doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            html.contains(&format!("<code>{}</code>", escape(scheme))),
            "{scheme}"
        );
    }

    // The same page again is not sent again.
    let again = app
        .client
        .get(app.url("/api/docs"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.text().await.unwrap().is_empty());
    let other = app
        .client
        .get(app.url("/api/docs"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}
