//! The HTTP side of the audit trail (CloudTrail's role for EcoCityHub's own actions):
//! [`audit_requests`] writes one record per state-changing request — API and pages alike; an
//! ingest batch is one record — and one per request a policy denied. A record says who (the
//! identity the authorizer, the web session or the device key established, noted through
//! [`note_identity`]), from where, what was asked (the path, the query and small JSON or form
//! bodies, secrets redacted by the trail), and the outcome (the problem's code and detail, or
//! the small JSON answer). The answer goes out only after its record is committed.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use ecocityhub_observe::audit::{AuditContext, AuditEvent, UserIdentity};
use serde_json::{json, Map, Value};

use crate::state::AppState;

/// Bodies up to this size are read into the record (JSON and forms only).
const CAPTURE_LIMIT: usize = 16 * 1024;
/// Answers up to this size are kept as the record's response elements.
const RESPONSE_LIMIT: usize = 4 * 1024;
/// Routes whose bodies are data, not parameters: a batch of readings is counted, not copied.
const BODY_NOT_RECORDED: &[&str] = &["/api/v1/readings"];

tokio::task_local! {
    static NOTED: Arc<Mutex<Noted>>;
}

/// What the handlers of one request told the audit layer.
#[derive(Default)]
struct Noted {
    identity: Option<UserIdentity>,
    denied: Option<String>,
}

fn note(f: impl FnOnce(&mut Noted)) {
    let _ = NOTED.try_with(|n| f(&mut n.lock().expect("not poisoned")));
}

/// Who is acting in this request (called where a credential is verified).
pub fn note_identity(identity: UserIdentity) {
    note(|n| n.identity = Some(identity));
}

/// A policy denied `action` in this request: it is recorded even if the request only reads.
pub fn note_denied(action: &str) {
    note(|n| n.denied = Some(action.to_string()));
}

/// The middleware (on the API's router and around the whole site).
pub async fn audit_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(audit) = app.audit_trail().cloned() else {
        return next.run(request).await;
    };
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let (parts, body) = request.into_parts();
    let context = AuditContext::from_parts(&parts);
    let method = parts.method.clone();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let mut parameters = query_parameters(parts.uri.query());
    let body = if writes {
        capture_body(&parts.headers, &route, body, &mut parameters).await
    } else {
        body
    };
    let noted = Arc::new(Mutex::new(Noted::default()));
    let response = NOTED
        .scope(noted.clone(), next.run(Request::from_parts(parts, body)))
        .await;
    let noted = std::mem::take(&mut *noted.lock().expect("not poisoned"));
    if !writes && noted.denied.is_none() {
        return response;
    }
    let (response, outcome) = capture_response(response).await;
    let mut event = AuditEvent::new(
        event_source(&route),
        &event_name(&method, &route),
        noted.identity.unwrap_or_else(UserIdentity::anonymous),
    )
    .context(&context)
    .parameters(json!({"path": route, "request": Value::Object(parameters)}));
    event = match outcome {
        Outcome::Failed { code, message } => event.failed(&code, &message),
        Outcome::Answered(elements) => event.response(elements),
    };
    if let Some(action) = noted.denied {
        event = event.failed("AccessDenied", &format!("the policies deny {action}"));
    }
    if !writes {
        event = event.read_only();
    }
    if let Err(e) = audit.record(event).await {
        metrics::counter!("ecocityhub_audit_failures_total").increment(1);
        tracing::error!(error = %e, %route, "the audit record of a request was not written");
    }
    response
}

/// `api` for the API, the OAuth and discovery endpoints; `web` for the pages.
fn event_source(route: &str) -> &'static str {
    if ["/api/", "/oauth2/", "/.well-known/"]
        .iter()
        .any(|p| route.starts_with(p))
    {
        "api"
    } else {
        "web"
    }
}

fn query_parameters(query: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        out.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    out
}

/// Reads a small JSON or form body into `parameters` and gives the body back; other bodies
/// are described by type and size.
async fn capture_body(
    headers: &HeaderMap,
    route: &str,
    body: Body,
    parameters: &mut Map<String, Value>,
) -> Body {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let readable = content_type.starts_with("application/json")
        || content_type.starts_with("application/x-www-form-urlencoded");
    let small = length.is_some_and(|n| n <= CAPTURE_LIMIT);
    if !readable || !small || BODY_NOT_RECORDED.contains(&route) {
        if let Some(n) = length.filter(|n| *n > 0) {
            parameters.insert("contentType".into(), json!(content_type));
            parameters.insert("contentLength".into(), json!(n));
        }
        return body;
    }
    let Ok(bytes) = axum::body::to_bytes(body, CAPTURE_LIMIT).await else {
        // The declared length was a lie; the handler gets an empty body and answers 400.
        return Body::empty();
    };
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => parameters.extend(fields),
            Ok(other) => {
                parameters.insert("body".into(), other);
            }
            Err(_) => {
                parameters.insert("body".into(), json!("(not JSON)"));
            }
        }
    } else {
        parameters.extend(query_parameters(std::str::from_utf8(&bytes).ok()));
    }
    Body::from(bytes)
}

enum Outcome {
    Failed { code: String, message: String },
    Answered(Value),
}

/// The outcome of an answer, and the answer given back whole.
async fn capture_response(response: Response) -> (Response, Outcome) {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    let small = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .is_some_and(|n| n as usize <= RESPONSE_LIMIT);
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (parts, body) = response.into_parts();
    let bytes = if json && small {
        axum::body::to_bytes(body, RESPONSE_LIMIT)
            .await
            .unwrap_or_default()
    } else {
        return (
            Response::from_parts(parts, body),
            outcome_without_body(status, location),
        );
    };
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let outcome = if status.is_client_error() || status.is_server_error() {
        Outcome::Failed {
            code: value["code"]
                .as_str()
                .map_or_else(|| status_code_name(status), str::to_string),
            message: value["detail"].as_str().unwrap_or("").to_string(),
        }
    } else {
        Outcome::Answered(json!({"status": status.as_u16(), "body": value}))
    };
    (Response::from_parts(parts, Body::from(bytes)), outcome)
}

fn outcome_without_body(status: StatusCode, location: Option<String>) -> Outcome {
    if status.is_client_error() || status.is_server_error() {
        Outcome::Failed {
            code: status_code_name(status),
            message: String::new(),
        }
    } else {
        Outcome::Answered(json!({"status": status.as_u16(), "location": location}))
    }
}

fn status_code_name(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Error")
        .replace(' ', "")
}

/// CloudTrail-style event names from the method and the route: `POST /api/v1/me/channels` is
/// `CreateChannel`, `DELETE …/alert-rules/{id}` is `DeleteAlertRule`, `POST
/// /api/v1/ml/models/{id}/promote` is `PromoteModel`, `POST /api/v1/auth/sign-in` is `SignIn`.
pub fn event_name(method: &Method, route: &str) -> String {
    if let Some(name) = NAMED.iter().find(|(m, r, _)| m == method && *r == route) {
        return name.2.to_string();
    }
    let segments: Vec<&str> = route
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{') && !["api", "v1"].contains(s))
        .collect();
    let last = segments.last().copied().unwrap_or("root");
    let before = segments.len().checked_sub(2).map(|i| segments[i]);
    let noun = |s: &str| pascal(&singular(s));
    match *method {
        Method::DELETE => format!("Delete{}", noun(last)),
        Method::PATCH | Method::PUT => format!("Update{}", noun(last)),
        Method::POST if is_collection(last) => format!("Create{}", noun(last)),
        Method::GET | Method::HEAD => format!("Get{}", pascal(last)),
        _ => match before.filter(|b| is_collection(b)) {
            Some(b) => format!("{}{}", pascal(last), noun(b)),
            None => pascal(last),
        },
    }
}

/// Routes whose name the rule above would not get right.
const NAMED: &[(Method, &str, &str)] = &[
    (Method::POST, "/api/v1/readings", "PostReadings"),
    (Method::POST, "/oauth2/token", "CreateToken"),
    (Method::DELETE, "/api/v1/me", "DeleteAccount"),
    (Method::POST, "/account/password", "ChangePassword"),
    (Method::POST, "/account/delete", "DeleteAccount"),
    (Method::POST, "/admin/stations/{id}/keys", "CreateDeviceKey"),
    (
        Method::POST,
        "/admin/stations/{id}/keys/{prefix}/revoke",
        "RevokeDeviceKey",
    ),
];

fn is_collection(segment: &str) -> bool {
    segment.ends_with('s') && !segment.ends_with("ss") && segment != "status"
}

fn singular(segment: &str) -> String {
    if let Some(stem) = segment.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = segment.strip_suffix('s').filter(|_| is_collection(segment)) {
        stem.to_string()
    } else {
        segment.to_string()
    }
}

fn pascal(segment: &str) -> String {
    segment
        .split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_read_like_cloudtrail_ones() {
        for (method, route, name) in [
            (Method::POST, "/api/v1/me/channels", "CreateChannel"),
            (Method::DELETE, "/api/v1/me/channels/{id}", "DeleteChannel"),
            (
                Method::PATCH,
                "/api/v1/me/alert-rules/{id}",
                "UpdateAlertRule",
            ),
            (
                Method::POST,
                "/api/v1/me/alert-rules/{id}/test",
                "TestAlertRule",
            ),
            (
                Method::POST,
                "/api/v1/ml/models/{id}/promote",
                "PromoteModel",
            ),
            (Method::POST, "/api/v1/ml/models/rollback", "RollbackModel"),
            (Method::POST, "/api/v1/ml/jobs/{id}/cancel", "CancelJob"),
            (
                Method::POST,
                "/api/v1/admin/deliveries/redrive",
                "RedriveDelivery",
            ),
            (Method::PATCH, "/api/v1/admin/users/{id}", "UpdateUser"),
            (Method::POST, "/api/v1/auth/sign-in", "SignIn"),
            (
                Method::POST,
                "/api/v1/auth/forgot-password",
                "ForgotPassword",
            ),
            (Method::POST, "/api/v1/readings", "PostReadings"),
            (Method::POST, "/admin/stations/{id}/keys", "CreateDeviceKey"),
            (
                Method::POST,
                "/admin/stations/{id}/keys/{prefix}/revoke",
                "RevokeDeviceKey",
            ),
            (Method::POST, "/admin/jobs", "CreateJob"),
            (Method::POST, "/account/password", "ChangePassword"),
            (Method::GET, "/api/v1/admin/users", "GetUsers"),
        ] {
            assert_eq!(event_name(&method, route), name, "{method} {route}");
        }
    }

    #[test]
    fn pages_and_api_are_told_apart() {
        assert_eq!(event_source("/api/v1/me"), "api");
        assert_eq!(event_source("/oauth2/token"), "api");
        assert_eq!(event_source("/account/sign-in"), "web");
    }
}
