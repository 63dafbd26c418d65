//! EcoCityHub's HTTP API — the API Gateway + Lambda layer.
//!
//! [`router`] builds one axum `Router` that the binary serves with `axum::serve` on a machine
//! and hands to `lambda_http` on AWS Lambda: the same handlers, the same errors
//! (problem+json, see [`error`]), the same OpenAPI document ([`openapi`]).

pub mod api_docs;
pub mod audit;
pub mod device_auth;
pub mod error;
pub mod extract;
pub mod federation;
pub mod identity;
pub mod ingest;
pub mod job_audit;
pub mod keys_at_rest;
pub mod latest;
pub mod openapi;
pub mod reports;
pub mod routes;
pub mod signed_in;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::post;
use axum::Router;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::{ApiError, ApiResult};
pub use state::{ApiConfig, AppState, HeartbeatCheck, ReadinessCheck, Services};

/// The whole API, answering unknown paths with problem+json.
pub fn router(state: AppState) -> Router {
    let https = state.is_https();
    routes(state.clone())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state,
            audit::audit_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            https,
            transport_headers,
        ))
        // A 5xx answer is a warning here: faults of ours are logged as errors with their
        // cause where they happen; a 503 of load shedding or a busy hash pool is not one.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
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
    let admin = admin_table()
        .router
        .route_layer(axum::middleware::from_fn(signed_in::require_admin_scope));
    let signed_in =
        signed_in_table()
            .router
            .merge(admin)
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                signed_in::require_access_token,
            ));
    public_table().router.merge(signed_in).with_state(state)
}

/// Every (method, path) the API serves, read from the same tables the router is built from —
/// what the test of the OpenAPI document compares the document with.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    [public_table(), signed_in_table(), admin_table()]
        .into_iter()
        .flat_map(|t| t.served)
        .collect()
}

/// Routes being added to a router, each also written down with its method and path. The only
/// way routes reach the API's router, so the list cannot miss one.
struct RouteTable {
    router: Router<AppState>,
    served: Vec<(Method, &'static str)>,
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    /// Adds `method` on `path` (several methods on one path merge into one route).
    fn on<H, T>(mut self, method: Method, path: &'static str, handler: H) -> RouteTable
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone())
            .expect("the API uses standard methods");
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.served.push((method, path));
        self
    }

    fn get<H: axum::handler::Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
    ) -> Self {
        self.on(Method::GET, path, h)
    }

    fn post<H: axum::handler::Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
    ) -> Self {
        self.on(Method::POST, path, h)
    }

    fn patch<H: axum::handler::Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
    ) -> Self {
        self.on(Method::PATCH, path, h)
    }

    fn put<H: axum::handler::Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
    ) -> Self {
        self.on(Method::PUT, path, h)
    }

    fn delete<H: axum::handler::Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
    ) -> Self {
        self.on(Method::DELETE, path, h)
    }

    /// A route with a layer of its own (a body limit).
    fn post_limited<H: axum::handler::Handler<T, AppState>, T: 'static>(
        mut self,
        path: &'static str,
        h: H,
        limit: usize,
    ) -> Self {
        self.router = self
            .router
            .route(path, post(h).layer(DefaultBodyLimit::max(limit)));
        self.served.push((Method::POST, path));
        self
    }

    /// A PUT route with a body limit of its own.
    fn put_limited<H: axum::handler::Handler<T, AppState>, T: 'static>(
        mut self,
        path: &'static str,
        h: H,
        limit: usize,
    ) -> Self {
        self.router = self.router.route(
            path,
            axum::routing::put(h).layer(DefaultBodyLimit::max(limit)),
        );
        self.served.push((Method::PUT, path));
        self
    }
}

/// Routes anyone may call.
fn public_table() -> RouteTable {
    use routes as r;
    RouteTable::new()
        .get("/healthz", r::health::healthz)
        .get("/readyz", r::health::readyz)
        .get("/api/openapi.json", openapi::document)
        .get(api_docs::PATH, api_docs::page)
        .get("/api/v1/parameters", r::health::parameters)
        .get("/api/v1/stations", r::stations::list)
        .get("/api/v1/stations/{id}", r::stations::get)
        .get("/api/v1/stations/{id}/readings", r::readings::history)
        .get("/api/v1/latest", r::latest::latest)
        .get("/api/v1/stations/{id}/forecast", r::ml::station_forecast)
        .get("/api/v1/stations/{id}/anomalies", r::ml::station_anomalies)
        .get("/api/v1/ml/models", r::ml::list_models)
        .get("/api/v1/ml/models/{id}", r::ml::get_model)
        .get("/api/v1/ml/models/{id}/report", r::ml::model_report)
        .get(
            "/api/v1/ml/models/{id}/report/{file}",
            r::ml::model_report_file,
        )
        .post_limited(
            "/api/v1/readings",
            r::ingest::post_readings,
            crate::ingest::MAX_BATCH_BYTES,
        )
        .get("/.well-known/jwks.json", r::well_known::jwks)
        .get(
            "/.well-known/openid-configuration",
            r::well_known::openid_configuration,
        )
        .get("/oauth2/authorize", r::oauth::authorize_form)
        .post("/oauth2/authorize", r::oauth::authorize_submit)
        .post("/oauth2/token", r::oauth::token)
        .get("/oauth2/idpresponse", r::federation::idp_response)
        .get("/api/v1/auth/providers", r::federation::providers)
        .post("/api/v1/auth/sign-up", r::auth::sign_up)
        .post("/api/v1/auth/confirm", r::auth::confirm)
        .post("/api/v1/auth/resend-code", r::auth::resend_code)
        .post("/api/v1/auth/sign-in", r::auth::sign_in)
        .post("/api/v1/auth/refresh", r::auth::refresh)
        .post("/api/v1/auth/sign-out", r::auth::sign_out)
        .post("/api/v1/auth/forgot-password", r::auth::forgot_password)
        .post("/api/v1/auth/reset-password", r::auth::reset_password)
        .post("/api/v1/notify/confirm", r::alerts::confirm)
        .get("/api/v1/report-categories", r::reports::categories)
        .get("/api/v1/reports", r::reports::list)
        .get("/api/v1/reports/pins", r::reports::pins)
        .get("/api/v1/reports/nearby", r::reports::nearby)
        .get("/api/v1/reports/{id}", r::reports::get)
        .get("/api/v1/reports/{id}/photos/{position}", r::reports::photo)
        .put_limited(
            "/uploads/{id}",
            r::reports::put_upload,
            // The signed size is checked exactly; this only stops a body far beyond any.
            ecocityhub_blobs::uploads::MAX_UPLOAD_BYTES as usize + 64 * 1024,
        )
}

/// Routes that need a signed-in user (behind the JWT authorizer layer).
fn signed_in_table() -> RouteTable {
    use routes as r;
    RouteTable::new()
        .post("/api/v1/auth/change-password", r::auth::change_password)
        .get("/api/v1/me", r::auth::me)
        .delete("/api/v1/me", r::auth::delete_me)
        .post("/api/v1/stations", r::stations::create)
        .patch("/api/v1/stations/{id}", r::stations::update)
        .post("/api/v1/stations/{id}/readings/flag", r::readings::set_flag)
        .get("/api/v1/me/channels", r::alerts::list_channels)
        .post("/api/v1/me/channels", r::alerts::create_channel)
        .delete("/api/v1/me/channels/{id}", r::alerts::delete_channel)
        .post("/api/v1/me/channels/{id}/test", r::alerts::test_channel)
        .post(
            "/api/v1/me/channels/{id}/rotate-secret",
            r::alerts::rotate_channel_secret,
        )
        .get("/api/v1/me/alert-rules", r::alerts::list_rules)
        .post("/api/v1/me/alert-rules", r::alerts::create_rule)
        .patch("/api/v1/me/alert-rules/{id}", r::alerts::update_rule)
        .delete("/api/v1/me/alert-rules/{id}", r::alerts::delete_rule)
        .post("/api/v1/me/alert-rules/{id}/test", r::alerts::test_rule)
        .get("/api/v1/me/events", r::alerts::events)
        .post("/api/v1/uploads", r::reports::sign_upload)
        .post("/api/v1/reports", r::reports::create)
        .post("/api/v1/reports/bulk", r::reports::bulk)
        .patch("/api/v1/reports/{id}", r::reports::update)
        .post("/api/v1/reports/{id}/comments", r::reports::comment)
        .put("/api/v1/reports/{id}/follow", r::reports::follow)
        .delete("/api/v1/reports/{id}/follow", r::reports::unfollow)
        .put("/api/v1/me/report-watch", r::reports::watch)
}

/// The administration routes: a signed-in user whose token has the admin scope (and the
/// policies decide on the group).
fn admin_table() -> RouteTable {
    use routes as r;
    RouteTable::new()
        .get("/api/v1/admin/users", r::admin::list_users)
        .patch("/api/v1/admin/users/{id}", r::admin::update_user)
        .post("/api/v1/ml/models/{id}/promote", r::ml::promote_model)
        .post("/api/v1/ml/models/rollback", r::ml::rollback_model)
        .get("/api/v1/ml/jobs", r::ml::list_jobs)
        .post("/api/v1/ml/jobs", r::ml::create_job)
        .get("/api/v1/ml/jobs/{id}", r::ml::get_job)
        .post("/api/v1/ml/jobs/{id}/cancel", r::ml::cancel_job)
        .get("/api/v1/admin/deliveries", r::alerts::list_deliveries)
        .post("/api/v1/admin/deliveries/redrive", r::alerts::redrive_all)
        .post(
            "/api/v1/admin/deliveries/{id}/redrive",
            r::alerts::redrive_delivery,
        )
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
