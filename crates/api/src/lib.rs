//! EcoCityHub's HTTP API — the API Gateway + Lambda layer.
//!
//! [`router`] builds one axum `Router` that the binary serves with `axum::serve` on a machine
//! and hands to `lambda_http` on AWS Lambda: the same handlers, the same errors
//! (problem+json, see [`error`]), the same OpenAPI document ([`openapi`]).

pub mod device_auth;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod latest;
pub mod openapi;
pub mod routes;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ApiResult};
pub use state::{ApiConfig, AppState};

/// The whole API.
pub fn router(state: AppState) -> Router {
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
            "/api/v1/readings",
            post(routes::ingest::post_readings)
                .layer(DefaultBodyLimit::max(ingest::MAX_BATCH_BYTES)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "there is no resource at {}; see /api/openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
