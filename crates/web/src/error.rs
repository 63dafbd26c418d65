//! Errors of the web pages, answered as HTML pages that say what to do next and never show
//! internals (those go to the log). A handler returns a [`WebError`]; its response carries a
//! [`Pending`] marker that the site's outer layer turns into a full page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use ecocityhub_api::ApiError;

use crate::view::Layout;
use crate::WebState;

/// A failed page request.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    /// The page needs a signed-in user: go to the sign-in page, then back to `next`.
    #[error("sign in to see this page")]
    SignIn { next: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Busy for a moment (a queue is full).
    #[error("{0}")]
    Busy(String),
    #[error("internal error")]
    Internal(String),
}

pub type WebResult<T> = Result<T, WebError>;

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::SignIn { .. } => StatusCode::SEE_OTHER,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            WebError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the page tells the visitor.
    pub fn message(&self) -> String {
        match self {
            WebError::Internal(_) => "Something went wrong on our side. It has been logged; \
                                      please try again in a moment."
                .into(),
            other => ecocityhub_identity::account::shorten(&other.to_string(), 500),
        }
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        let message = e.to_string();
        match e {
            ApiError::NotFound(_) => WebError::NotFound(message),
            ApiError::Forbidden(_) => WebError::Forbidden(message),
            ApiError::Unauthorized { .. } => WebError::SignIn { next: "/".into() },
            ApiError::TooManyRequests(_) => WebError::TooManyRequests(message),
            ApiError::Internal(detail) => WebError::Internal(detail),
            ApiError::Unavailable(_) => WebError::Busy(message),
            ApiError::Busy(_) => WebError::Busy(message),
            _ => WebError::BadRequest(message),
        }
    }
}

impl From<ecocityhub_store::StoreError> for WebError {
    fn from(e: ecocityhub_store::StoreError) -> Self {
        if e.is_transient() {
            // A failover or a restart: a 503 page that says to try again, not a 500.
            tracing::warn!(error = %e, "database unavailable");
            return WebError::Busy(
                "The database cannot take requests for a moment; please try again shortly.".into(),
            );
        }
        WebError::Internal(e.to_string())
    }
}

impl From<ecocityhub_observe::ObserveError> for WebError {
    fn from(e: ecocityhub_observe::ObserveError) -> Self {
        WebError::Internal(format!("observe: {e}"))
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

/// Marks a response whose page is still to be drawn by the outer layer.
#[derive(Debug, Clone)]
pub struct Pending {
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::SignIn { next } = &self {
            let to = format!("/account/sign-in?next={}", crate::view::url_encode(next));
            return Redirect::to(&to).into_response();
        }
        let status = self.status();
        if let WebError::Internal(detail) = &self {
            tracing::error!(error = %detail, "page failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Page not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Busy for a moment",
            StatusCode::METHOD_NOT_ALLOWED => "Not allowed",
            _ => "Something went wrong",
        };
        let pending = Pending {
            title,
            message: self.message(),
        };
        // A plain body in case no outer layer draws the page.
        let mut response = (status, pending.message.clone()).into_response();
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response.extensions_mut().insert(pending);
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    message: &'a str,
    status: u16,
}

/// The full error page.
pub fn render_page(web: &WebState, error: &Pending, status: StatusCode) -> Response {
    let page = ErrorPage {
        layout: Layout::anonymous(web, error.title),
        message: &error.message,
        status: status.as_u16(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the error page failed to render");
            (status, error.message.clone()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_of_ours_says_nothing_of_its_cause() {
        let response = WebError::Internal("database error: password authentication failed".into())
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let pending = response.extensions().get::<Pending>().unwrap();
        assert!(!pending.message.contains("database") && pending.message.contains("our side"));
        let api: WebError = ApiError::Internal("pool timed out".into()).into();
        assert!(!api.message().contains("pool"));
    }

    #[test]
    fn a_page_that_needs_a_user_sends_to_the_sign_in_page_and_back() {
        let response = WebError::SignIn {
            next: "/admin/jobs?x=1".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()["location"],
            "/account/sign-in?next=/admin/jobs%3Fx%3D1"
        );
    }
}
