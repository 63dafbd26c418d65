//! Benchmarks for `ecocityhub bench` (they print nothing and return numbers): the audit append
//! rate, the time `verify` takes over a large trail, and the cost of the request layers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use chrono::Utc;
use ecocityhub_blobs::BlobStore;
use ecocityhub_store::observe::ObserveStore;
use serde_json::json;

use crate::audit::chain::seal_all;
use crate::audit::writer::prepare;
use crate::audit::{
    verify, Audit, AuditEvent, AuditKey, Credential, Digester, UserIdentity, VerifyOptions,
    VerifyReport,
};
use crate::http::{HttpMetricsLayer, RequestIdLayer};
use crate::recorder::{Exposition, Telemetry};
use crate::{ObserveError, Result};

/// A typical record: a user changing another's roles.
pub fn sample_event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        "api",
        "UpdateUser",
        UserIdentity::user(
            &format!("user-{}", i % 97),
            &["admin"],
            Credential::AccessToken,
        ),
    )
    .parameters(json!({"id": format!("target-{i}"), "roles": ["operator"]}))
    .response(
        json!({"id": format!("target-{i}"), "roles": ["operator"], "email": "someone@example.org"}),
    );
    e.request_id = Some(crate::http::RequestId::generate().to_string());
    e.source_ip_address = Some("127.0.0.1".into());
    e.user_agent = Some("ecocityhub-bench".into());
    if i.is_multiple_of(10) {
        e = e.failed("forbidden", "the policies deny this");
    }
    e
}

/// Records per second through [`Audit::record`] from `clients` concurrent callers, each
/// waiting for its record to commit.
pub async fn audit_append_rate(
    store: Arc<dyn ObserveStore>,
    records: usize,
    clients: usize,
) -> Result<f64> {
    let audit = Audit::start(store);
    let clients = clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let audit = audit.clone();
        let n = records / clients + usize::from(c < records % clients);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                audit.record(sample_event(c * 1_000_000 + i)).await?;
            }
            Ok::<_, ObserveError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| ObserveError::Config(e.to_string()))??;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    audit.close().await;
    Ok(rate)
}

/// Appends `n` records straight to the store in batches of 1,000 (to build a large trail fast).
pub async fn fill_audit(store: &dyn ObserveStore, n: usize) -> Result<()> {
    let mut done = 0;
    while done < n {
        let batch: Vec<_> = (done..(done + 1000).min(n))
            .map(|i| prepare(sample_event(i)))
            .collect();
        store
            .append_audit(&mut |head| seal_all(&batch, head))
            .await?;
        done += batch.len();
    }
    Ok(())
}

/// Fills an empty trail with `n` records, signs a digest, and times [`verify`] over it.
pub async fn verify_time(
    store: Arc<dyn ObserveStore>,
    blobs: Arc<dyn BlobStore>,
    n: usize,
) -> Result<(Duration, VerifyReport)> {
    fill_audit(store.as_ref(), n).await?;
    let digester = Digester::open(
        store.clone(),
        blobs.clone(),
        AuditKey::in_store(store.as_ref()).await?,
    )
    .await?;
    digester.write_digest(Utc::now()).await?;
    let started = Instant::now();
    let report = verify(store, blobs, &VerifyOptions::default()).await?;
    Ok((started.elapsed(), report))
}

/// Requests per second of a trivial handler with and without the layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerOverhead {
    pub bare_per_second: f64,
    /// With [`HttpMetricsLayer`].
    pub metrics_per_second: f64,
    /// With [`HttpMetricsLayer`] and [`RequestIdLayer`].
    pub both_per_second: f64,
}

impl LayerOverhead {
    /// The cost of both layers in per cent of the bare rate.
    pub fn overhead_percent(&self) -> f64 {
        (1.0 - self.both_per_second / self.bare_per_second) * 100.0
    }
}

async fn served(app: Router) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ObserveError::Config(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ObserveError::Config(e.to_string()))?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/stations/s1"), task))
}

async fn hammer(url: &str, requests: usize, clients: usize) -> Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| ObserveError::Config(e.to_string()))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url) = (client.clone(), url.to_string());
        let n = requests / clients + usize::from(c < requests % clients);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let r = client.get(&url).send().await?;
                r.bytes().await?;
            }
            Ok::<_, reqwest::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| ObserveError::Config(e.to_string()))?
            .map_err(|e| ObserveError::Config(e.to_string()))?;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// Serves a trivial handler three ways on loopback and sends `requests` from `clients`
/// concurrent clients to each, twice in turn (the better run of each counts). Installs a global
/// Prometheus recorder if the process has none, so the layers do their real work.
pub async fn layer_overhead(requests: usize, clients: usize) -> Result<LayerOverhead> {
    let _ = Telemetry::install(Exposition::Prometheus);
    let handler = || Router::new().route("/stations/{id}", get(|| async { "ok" }));
    let (bare, t1) = served(handler()).await?;
    let (metrics, t2) = served(handler().layer(HttpMetricsLayer::new())).await?;
    let (both, t3) = served(
        handler()
            .layer(HttpMetricsLayer::new())
            .layer(RequestIdLayer),
    )
    .await?;
    hammer(&bare, requests / 10, clients).await?; // warm-up
    let mut best = [0.0f64; 3];
    for _ in 0..2 {
        for (i, url) in [&bare, &metrics, &both].into_iter().enumerate() {
            best[i] = best[i].max(hammer(url, requests, clients).await?);
        }
    }
    for t in [t1, t2, t3] {
        t.abort();
    }
    Ok(LayerOverhead {
        bare_per_second: best[0],
        metrics_per_second: best[1],
        both_per_second: best[2],
    })
}
