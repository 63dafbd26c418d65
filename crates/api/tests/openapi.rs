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
