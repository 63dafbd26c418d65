//! The edge's own answers (429, 503, 400, 502) in the API's RFC 9457 shape: `type`, `title`,
//! `status`, `detail` and a stable `code` (see `ecocityhub_api::error`).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json answer.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whole seconds, rounded up.
pub fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Seconds for `Retry-After`: at least 1, rounded up.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    ceil_secs(wait).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problems_have_the_api_shape() {
        let r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "slow down",
        );
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["title"], "Too Many Requests");
        assert_eq!(v["status"], 429);
        assert_eq!(v["code"], "too_many_requests");
        assert_eq!(v["type"], "about:blank");
    }

    #[test]
    fn retry_after_rounds_up() {
        use std::time::Duration;
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
