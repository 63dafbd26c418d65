//! One error type for the whole API, answered as RFC 9457 `application/problem+json`.
//!
//! Every client mistake maps to a 4xx with a `detail` a person can act on; only a fault of ours
//! is a 500, and its detail never leaks internals (they go to the log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ecocityhub_store::StoreError;
use serde::Serialize;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Unauthorized { detail: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Understood, but no row could be accepted; `errors` lists why.
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        errors: Vec<RowProblem>,
    },
    /// Understood, but the content is not acceptable (`code` names what, such as
    /// `webhook_url_internal`).
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("the service is not ready: {0}")]
    Unavailable(String),
    /// Too much work at once (a queue is full): try again in a moment.
    #[error("{0}")]
    Busy(String),
    #[error("internal error")]
    Internal(String),
}

/// Why one row of a batch was rejected.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RowProblem {
    /// Position of the row in the batch, from 0 (for CSV and NDJSON: data rows, header excluded).
    pub index: usize,
    pub reason: String,
}

/// The body of an error answer (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `title` is the HTTP status phrase and `code` says more.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// A stable, machine-readable name of the problem.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RowProblem>,
    /// The request's id (also in the `X-Request-Id` header, the logs and the audit trail).
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable { .. } | ApiError::Invalid { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unprocessable { .. } => "no_valid_rows",
            ApiError::Invalid { code, .. } => code,
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy(_) => "busy",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownStation(id) => {
                ApiError::NotFound(format!("station {id} does not exist"))
            }
            // A failover, a restart or a full disk: nothing was acknowledged, try again.
            StoreError::Unavailable { reason } => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::Unavailable(
                    "the database cannot take requests for a moment (a failover or a restart); \
                     nothing of this request was stored, try again shortly"
                        .into(),
                )
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ecocityhub_notify::NotifyError> for ApiError {
    fn from(e: ecocityhub_notify::NotifyError) -> Self {
        use ecocityhub_notify::NotifyError as N;
        match e {
            N::Store(e) => e.into(),
            N::UnknownSubscription => {
                ApiError::NotFound("no such channel: a rule sends only to your own channels".into())
            }
            N::NotAWebhook => ApiError::Conflict(e.to_string()),
            N::PushUnavailable | N::Aws(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Invalid {
                code: other.code(),
                detail: other.to_string(),
            },
        }
    }
}

impl From<ecocityhub_ml::registry::RegistryError> for ApiError {
    fn from(e: ecocityhub_ml::registry::RegistryError) -> Self {
        use ecocityhub_ml::registry::RegistryError as R;
        match e {
            R::UnknownModel(_) | R::MissingReport { .. } => ApiError::NotFound(e.to_string()),
            R::NothingToRollBack { .. } => ApiError::Conflict(e.to_string()),
            R::MissingArtifact { .. } | R::ChecksumMismatch { .. } | R::Unloadable { .. } => {
                ApiError::Conflict(format!("{e}; the serving model is unchanged"))
            }
            R::Store(e) => e.into(),
            R::Blob(ecocityhub_blobs::BlobError::InvalidKey { .. }) => {
                ApiError::NotFound("there is no such file".into())
            }
            R::Blob(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ecocityhub_ml::forecast::ForecastError> for ApiError {
    fn from(e: ecocityhub_ml::forecast::ForecastError) -> Self {
        use ecocityhub_ml::forecast::ForecastError as F;
        match e {
            F::NoModel { .. } | F::NoData { .. } => ApiError::NotFound(e.to_string()),
            F::Registry(e) => e.into(),
            F::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "Something went wrong on our side; it has been logged. Please try again later."
                    .to_string()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "unavailable");
                self.to_string()
            }
            other => capped(other.to_string()),
        };
        let code = self.code();
        let errors = match self {
            ApiError::Unprocessable { errors, .. } => errors,
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code,
            errors,
            request_id: ecocityhub_observe::current_request_id().map(|r| r.to_string()),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS => Some("60"),
            StatusCode::SERVICE_UNAVAILABLE => Some("2"),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ecocityhub\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The longest `detail` an answer carries: messages that repeat a client's input are cut, so a
/// megabyte of input never comes back.
pub const MAX_DETAIL_CHARS: usize = 500;

fn capped(detail: String) -> String {
    ecocityhub_identity::account::shorten(&detail, MAX_DETAIL_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_details_are_cut() {
        let response = ApiError::BadRequest("x".repeat(100_000)).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(capped("short".into()), "short");
        assert!(capped("é".repeat(1000)).chars().count() < MAX_DETAIL_CHARS + 30);
    }

    #[test]
    fn busy_and_unavailable_say_when_to_come_back() {
        for e in [
            ApiError::Busy("queue full".into()),
            ApiError::Unavailable("db".into()),
        ] {
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
    }
}
