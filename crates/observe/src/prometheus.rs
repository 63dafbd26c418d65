//! The Prometheus exposition on a listener of its own: `GET /metrics` and nothing else, never
//! on the public router. Off unless the operator gives an address (`--metrics-bind`).

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::recorder::Telemetry;
use crate::ObserveError;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A router answering `GET /metrics` with the exposition (404 when Prometheus is not the
/// exposition).
pub fn metrics_router(telemetry: Telemetry) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let telemetry = telemetry.clone();
            async move {
                telemetry.sample_process();
                match telemetry.prometheus() {
                    Some(p) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], p.render()).into_response(),
                    None => (
                        StatusCode::NOT_FOUND,
                        "metrics are not exposed for Prometheus",
                    )
                        .into_response(),
                }
            }
        }),
    )
}

/// The running metrics listener.
pub struct MetricsServer {
    /// The address it listens on (port 0 asked for any port).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Stops listening and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Serves `GET /metrics` on `bind` in a background task.
pub async fn serve_metrics(
    bind: SocketAddr,
    telemetry: Telemetry,
) -> Result<MetricsServer, ObserveError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| ObserveError::Config(format!("cannot listen for metrics on {bind}: {e}")))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| ObserveError::Config(format!("metrics listener: {e}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = metrics_router(telemetry);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(%local_addr, "metrics at http://{local_addr}/metrics");
    Ok(MetricsServer {
        local_addr,
        stop: Some(stop),
        task,
    })
}
