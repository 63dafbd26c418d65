//! The two tower layers every request passes: [`RequestIdLayer`] (an id per request, in a
//! tracing span, the `X-Request-Id` response header, a request extension and a task-local for
//! error answers) and [`HttpMetricsLayer`] (request count, in-flight gauge and duration
//! histogram per route template and status class).
//!
//! ```ignore
//! let app = router
//!     .layer(HttpMetricsLayer::new())   // Router::layer: sees axum's MatchedPath
//!     .layer(RequestIdLayer);    // outermost, so every log line of the request carries the id
//! ```

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response};
use futures::future::BoxFuture;
use metrics::{Counter, Gauge, Histogram};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::names::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS};

/// The header a request id arrives in and is answered with.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The tracing header of AWS load balancers and API Gateway, whose `Root` is used as the id.
pub const AMZN_TRACE_HEADER: &str = "x-amzn-trace-id";

/// A request's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new random id (UUID version 4 text).
    pub fn generate() -> RequestId {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        RequestId(
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
            .into(),
        )
    }

    /// An id offered by a client or proxy, if it is well formed: 1–128 characters of letters,
    /// digits and `-_.:/+=@`.
    pub fn parse(s: &str) -> Option<RequestId> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
        ok.then(|| RequestId(s.into()))
    }

    /// The id from `X-Request-Id`, else the `Root` of `X-Amzn-Trace-Id`, when well formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<RequestId> {
        if let Some(id) = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RequestId::parse(v.trim()))
        {
            return Some(id);
        }
        let trace = headers.get(AMZN_TRACE_HEADER)?.to_str().ok()?;
        trace_root(trace).map(|root| RequestId(root.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Root=1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy` of an X-Ray trace header, if well formed.
fn trace_root(header: &str) -> Option<&str> {
    let root = header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))?;
    let mut parts = root.split('-');
    let well_formed = parts.next() == Some("1")
        && parts
            .next()
            .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts
            .next()
            .is_some_and(|r| r.len() == 24 && r.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts.next().is_none();
    well_formed.then_some(root)
}

tokio::task_local! {
    static CURRENT_REQUEST_ID: RequestId;
}

/// The id of the request being handled by this task (inside [`RequestIdLayer`]), for answers
/// built without the request at hand, such as `ApiError::into_response`.
pub fn current_request_id() -> Option<RequestId> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Gives each request its [`RequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = RequestId::from_headers(req.headers()).unwrap_or_else(RequestId::generate);
        req.extensions_mut().insert(id.clone());
        let span = tracing::info_span!("request", request_id = %id);
        let future = {
            let _entered = span.enter();
            CURRENT_REQUEST_ID.sync_scope(id.clone(), || self.inner.call(req))
        };
        Box::pin(CURRENT_REQUEST_ID.scope(id.clone(), async move {
            let mut response = future.instrument(span).await?;
            if let Ok(value) = HeaderValue::from_str(id.as_str()) {
                response
                    .headers_mut()
                    .entry(REQUEST_ID_HEADER)
                    .or_insert(value);
            }
            Ok(response)
        }))
    }
}

/// Counts and times requests per route template (axum's `MatchedPath`; `unmatched` for the
/// fallback, never the raw path), method and status class. Apply it with `Router::layer`.
///
/// The metric handles are looked up once per (route, method, status class) and kept by the
/// layer, on the recorder installed when its first request came (install the telemetry before
/// serving).
#[derive(Debug, Clone, Default)]
pub struct HttpMetricsLayer {
    handles: Arc<Handles>,
}

impl HttpMetricsLayer {
    pub fn new() -> HttpMetricsLayer {
        HttpMetricsLayer::default()
    }
}

type Series = ((&'static str, &'static str), Counter, Histogram);

#[derive(Default)]
struct Handles {
    in_flight: OnceLock<Gauge>,
    by_route: RwLock<HashMap<Box<str>, Vec<Series>>>,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handles")
    }
}

impl Handles {
    fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(HTTP_IN_FLIGHT.name))
    }

    fn record(&self, route: &str, method: &'static str, class: &'static str, seconds: f64) {
        let key = (method, class);
        let found = |series: &Vec<Series>| {
            series
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, c, h)| (c.clone(), h.clone()))
        };
        let cached = self
            .by_route
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .and_then(found);
        let (counter, histogram) = cached.unwrap_or_else(|| {
            let labels = [
                ("method", method.to_string()),
                ("route", route.to_string()),
                ("status_class", class.to_string()),
            ];
            let made = (
                metrics::counter!(HTTP_REQUESTS.name, &labels),
                metrics::histogram!(HTTP_DURATION.name, &labels),
            );
            self.by_route
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(route.into())
                .or_default()
                .push((key, made.0.clone(), made.1.clone()));
            made
        });
        counter.increment(1);
        histogram.record(seconds);
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            handles: self.handles.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    handles: Arc<Handles>,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `2xx`, `4xx`… for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl<S, B, R> Service<Request<B>> for HttpMetricsService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        let handles = self.handles.clone();
        handles.in_flight().increment(1.0);
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            handles.in_flight().decrement(1.0);
            let class = match &result {
                Ok(r) => status_class(r.status().as_u16()),
                Err(_) => "5xx",
            };
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            handles.record(route, method, class, started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Exposition, Telemetry};
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[test]
    fn offered_ids_are_taken_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        assert_eq!(RequestId::from_headers(&h).unwrap().as_str(), "abc-123");
        h.insert(REQUEST_ID_HEADER, "has space".parse().unwrap());
        assert_eq!(RequestId::from_headers(&h), None);
        h.insert(
            AMZN_TRACE_HEADER,
            "Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            RequestId::from_headers(&h).unwrap().as_str(),
            "1-5759e988-bd862e3fe1be46a994272793"
        );
        let mut bad = HeaderMap::new();
        bad.insert(AMZN_TRACE_HEADER, "Root=1-xyz-123".parse().unwrap());
        assert_eq!(RequestId::from_headers(&bad), None);
        assert_eq!(RequestId::parse(&"a".repeat(129)), None);
        let g = RequestId::generate();
        assert_eq!(g.as_str().len(), 36);
        assert_ne!(g, RequestId::generate());
    }

    async fn echo_id(req: Request<Body>) -> String {
        let from_extension = req.extensions().get::<RequestId>().unwrap().to_string();
        let from_task = current_request_id().unwrap().to_string();
        assert_eq!(from_extension, from_task);
        from_task
    }

    #[tokio::test]
    async fn every_request_gets_an_id_in_the_extension_task_local_and_header() {
        let app = Router::new()
            .route("/id", get(echo_id))
            .layer(RequestIdLayer);
        let res = app
            .clone()
            .oneshot(
                Request::get("/id")
                    .header(REQUEST_ID_HEADER, "given-1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.headers()[REQUEST_ID_HEADER], "given-1");
        let body = axum::body::to_bytes(res.into_body(), 1000).await.unwrap();
        assert_eq!(&body[..], b"given-1");

        let res = app
            .oneshot(Request::get("/id").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = res.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(res.into_body(), 1000).await.unwrap();
        assert_eq!(header.as_bytes(), &body[..]);
        assert_eq!(header.len(), 36);
        assert_eq!(
            current_request_id(),
            None,
            "outside a request there is none"
        );
    }

    #[tokio::test]
    async fn requests_are_counted_per_route_template_never_the_raw_path() {
        let (telemetry, recorder) = Telemetry::build(Exposition::Prometheus);
        let app = Router::new()
            .route("/stations/{id}", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .layer(HttpMetricsLayer::new());
        let _guard = metrics::set_default_local_recorder(&recorder);
        for path in [
            "/stations/a",
            "/stations/b",
            "/boom",
            "/nowhere/secret-token",
        ] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let text = telemetry.prometheus().unwrap().render();
        assert!(
            text.contains(r#"ecocityhub_http_requests_total{method="GET",route="/stations/{id}",status_class="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"route="/boom",status_class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"route="unmatched",status_class="4xx"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("secret-token") && !text.contains("/stations/a"),
            "{text}"
        );
        assert!(
            text.contains("ecocityhub_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("ecocityhub_http_requests_in_flight 0"),
            "{text}"
        );
    }
}
