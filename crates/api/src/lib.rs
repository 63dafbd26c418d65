//! EcoCityHub's HTTP API — the API Gateway + Lambda layer.
//!
//! [`router`] builds one axum `Router` that the binary serves with `axum::serve` on a machine
//! and hands to `lambda_http` on AWS Lambda: the same handlers, the same errors
//! (problem+json, see [`error`]), the same OpenAPI document ([`openapi`]).

pub mod device_auth;
pub mod error;
pub mod extract;
pub mod federation;
pub mod identity;
pub mod ingest;
pub mod latest;
pub mod openapi;
pub mod routes;
pub mod signed_in;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ApiResult};
pub use state::{ApiConfig, AppState};

/// The whole API, answering unknown paths with problem+json.
pub fn router(state: AppState) -> Router {
    let https = state.is_https();
    routes(state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            https,
            transport_headers,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Headers every answer carries, pages and API alike: `X-Content-Type-Options: nosniff` (a JSON
/// or CSV answer is never run as a script or page) and, when the service is reached over HTTPS
/// (`https`: its public URL), HSTS so browsers never try plain HTTP again.
pub async fn transport_headers(
    axum::extract::State(https): axum::extract::State<bool>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// The API's routes with their state and no fallback, for a caller that serves them beside
/// other routes (the web pages) under one fallback of its own.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route(
            "/api/openapi.json",
            get(|| async { Json(openapi::ApiDoc::openapi()) }),
        )
        .route("/api/v1/parameters", get(routes::health::parameters))
        .route("/api/v1/stations", get(routes::stations::list))
        .route("/api/v1/stations/{id}", get(routes::stations::get))
        .route(
            "/api/v1/stations/{id}/readings",
            get(routes::readings::history),
        )
        .route("/api/v1/latest", get(routes::latest::latest))
        .route(
            "/api/v1/stations/{id}/forecast",
            get(routes::ml::station_forecast),
        )
        .route(
            "/api/v1/stations/{id}/anomalies",
            get(routes::ml::station_anomalies),
        )
        .route("/api/v1/ml/models", get(routes::ml::list_models))
        .route("/api/v1/ml/models/{id}", get(routes::ml::get_model))
        .route(
            "/api/v1/ml/models/{id}/report",
            get(routes::ml::model_report),
        )
        .route(
            "/api/v1/ml/models/{id}/report/{file}",
            get(routes::ml::model_report_file),
        )
        .route(
            "/api/v1/readings",
            post(routes::ingest::post_readings)
                .layer(DefaultBodyLimit::max(ingest::MAX_BATCH_BYTES)),
        )
        .route("/.well-known/jwks.json", get(routes::well_known::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(routes::well_known::openid_configuration),
        )
        .route(
            "/oauth2/authorize",
            get(routes::oauth::authorize_form).post(routes::oauth::authorize_submit),
        )
        .route("/oauth2/token", post(routes::oauth::token))
        .route("/oauth2/idpresponse", get(routes::federation::idp_response))
        .route("/api/v1/auth/providers", get(routes::federation::providers))
        .route("/api/v1/auth/sign-up", post(routes::auth::sign_up))
        .route("/api/v1/auth/confirm", post(routes::auth::confirm))
        .route("/api/v1/auth/resend-code", post(routes::auth::resend_code))
        .route("/api/v1/auth/sign-in", post(routes::auth::sign_in))
        .route("/api/v1/auth/refresh", post(routes::auth::refresh))
        .route("/api/v1/auth/sign-out", post(routes::auth::sign_out))
        .route(
            "/api/v1/auth/forgot-password",
            post(routes::auth::forgot_password),
        )
        .route(
            "/api/v1/auth/reset-password",
            post(routes::auth::reset_password),
        )
        .merge(signed_in_routes(state.clone()))
        .with_state(state)
}

/// The routes that need a signed-in user, behind the JWT authorizer layer; the administration
/// routes also need the admin scope (and the policies decide on the group).
fn signed_in_routes(state: AppState) -> Router<AppState> {
    let admin = Router::new()
        .route("/api/v1/admin/users", get(routes::admin::list_users))
        .route(
            "/api/v1/admin/users/{id}",
            patch(routes::admin::update_user),
        )
        .route(
            "/api/v1/ml/models/{id}/promote",
            post(routes::ml::promote_model),
        )
        .route(
            "/api/v1/ml/models/rollback",
            post(routes::ml::rollback_model),
        )
        .route(
            "/api/v1/ml/jobs",
            get(routes::ml::list_jobs).post(routes::ml::create_job),
        )
        .route("/api/v1/ml/jobs/{id}", get(routes::ml::get_job))
        .route("/api/v1/ml/jobs/{id}/cancel", post(routes::ml::cancel_job))
        .route_layer(axum::middleware::from_fn(signed_in::require_admin_scope));
    Router::new()
        .route(
            "/api/v1/auth/change-password",
            post(routes::auth::change_password),
        )
        .route(
            "/api/v1/me",
            get(routes::auth::me).delete(routes::auth::delete_me),
        )
        .merge(admin)
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            signed_in::require_access_token,
        ))
}

/// The API's answer for a path it does not know.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "there is no resource at {}; see /api/openapi.json",
        uri.path()
    ))
}

/// The API's answer for a method a path does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
