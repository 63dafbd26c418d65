//! Load shedding: at most N requests are served at once; one more is answered `503` with
//! `Retry-After` at once instead of waiting in a queue that only grows under overload.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::problem::{problem, retry_after_secs};

/// Caps concurrent requests (paths in `exempt` are never refused).
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    retry_after: Duration,
    exempt: Arc<Vec<String>>,
}

impl LoadShedLayer {
    pub fn new(max_concurrent: usize, retry_after: Duration, exempt: Vec<String>) -> Self {
        LoadShedLayer {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            retry_after,
            exempt: Arc::new(exempt),
        }
    }

    /// Requests that could start now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LoadShedService<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S> Service<Request> for LoadShedService<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.layer.exempt.iter().any(|p| p == request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match self.layer.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let future = self.inner.call(request);
                Box::pin(async move {
                    let response = future.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                metrics::counter!("ecocityhub_edge_shed_total").increment(1);
                let secs = retry_after_secs(self.layer.retry_after);
                Box::pin(async move { Ok(overloaded(secs)) })
            }
        }
    }
}

fn overloaded(secs: u64) -> Response {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        &format!("the service is answering as many requests as it can; try again in {secs} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_request_past_the_cap_is_refused_at_once_and_the_permit_comes_back() {
        let (release, wait) = tokio::sync::watch::channel(false);
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let mut wait = wait.clone();
                    async move {
                        let _ = wait.wait_for(|go| *go).await;
                        "done"
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }));
        let layer = LoadShedLayer::new(1, Duration::from_secs(2), vec!["/healthz".into()]);
        let svc = layer.layer(app.into_service::<Body>());
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let first = tokio::spawn(svc.clone().oneshot(get("/slow")));
        while layer.available() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = svc.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "2");
        let health = svc.clone().oneshot(get("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200, "liveness is never shed");
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        assert_eq!(layer.available(), 1);
    }
}
