//! What the page suites share: a visitor driving the site like a browser without JavaScript
//! (a cookie jar, redirects not followed, forms posted with the page's CSRF token).

#![allow(dead_code)]

use reqwest::{redirect, StatusCode};

/// A visitor of the site at `base`.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub csrf: String,
}

/// The value of the first `name="csrf"` hidden field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl Browser {
    /// A new visitor with an empty cookie jar.
    pub fn new(base: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            csrf: String::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs a page and keeps its CSRF token, if it has a form.
    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if body.contains(r#"name="csrf" value=""#) {
            self.csrf = csrf_of(&body);
        }
        (status, body)
    }

    /// Posts a form with the page's CSRF token; returns the status, the Location, the body.
    pub async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        if self.csrf.is_empty() {
            self.get("/").await;
        }
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        let resp = self
            .client
            .post(self.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, resp.text().await.unwrap())
    }
}
