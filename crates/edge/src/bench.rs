//! Measurements the binary's `bench` prints (nothing here prints): a request through the edge
//! with a warm cache against the same handler without it, TLS handshakes per second, and what
//! compression makes of a large answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

use crate::config::{CompressionConfig, EdgeConfig, ServerConfig, TlsConfig};
use crate::{serve, serve_tls, Edge, Tls};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench server: {0}")]
    Io(#[from] std::io::Error),
    #[error("bench request: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bench: the answer was {status}, not 200")]
    Status { status: u16 },
    #[error("bench edge: {0}")]
    Edge(#[from] crate::EdgeError),
    #[error("bench TLS: {0}")]
    Tls(#[from] crate::TlsError),
    #[error("bench TLS client: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Latencies of one side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub requests: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub requests_per_second: f64,
}

/// The same handler served bare and behind the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeComparison {
    pub path: String,
    pub clients: usize,
    pub direct: Latency,
    pub edge: Latency,
    /// Bytes of one answer as sent without and with the edge (compression, when asked for).
    pub direct_bytes: usize,
    pub edge_bytes: usize,
}

/// A running bench server.
struct BenchServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(app: Router) -> Result<BenchServer, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, app, &ServerConfig::default(), async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(BenchServer { addr, _stop: stop })
}

/// `config` with every rate limit out of reach (still evaluated, so their cost is measured).
fn unreachable_limits(mut config: EdgeConfig) -> EdgeConfig {
    for rule in &mut config.shield.rate_limits.rules {
        rule.limit = 1_000_000_000;
    }
    config
}

/// Serves `app` on loopback bare and behind the edge (`config`, its rate limits raised out of
/// reach), warms the cache, then sends `requests` GETs of `path` to each from `clients`
/// concurrent clients, in alternating rounds. `accept_encoding` is sent to both.
pub async fn compare_with_and_without_edge(
    app: Router,
    config: EdgeConfig,
    path: &str,
    accept_encoding: Option<&str>,
    clients: usize,
    requests: usize,
) -> Result<EdgeComparison, BenchError> {
    let edge = Edge::new(unreachable_limits(config))?;
    let direct = start(app.clone()).await?;
    let behind = start(edge.wrap(app)).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let direct_url = format!("http://{}{path}", direct.addr);
    let edge_url = format!("http://{}{path}", behind.addr);
    let direct_bytes = fetch(&client, &direct_url, accept_encoding).await?;
    let edge_bytes = fetch(&client, &edge_url, accept_encoding).await?;
    let rounds = 4;
    let per_round = requests.div_ceil(rounds).max(clients);
    let (mut d, mut e) = (Vec::new(), Vec::new());
    let (mut d_time, mut e_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let started = Instant::now();
        d.extend(load(&client, &direct_url, accept_encoding, clients, per_round).await?);
        d_time += started.elapsed();
        let started = Instant::now();
        e.extend(load(&client, &edge_url, accept_encoding, clients, per_round).await?);
        e_time += started.elapsed();
    }
    Ok(EdgeComparison {
        path: path.to_string(),
        clients,
        direct: summarize(d, d_time),
        edge: summarize(e, e_time),
        direct_bytes,
        edge_bytes,
    })
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    accept_encoding: Option<&str>,
) -> Result<usize, BenchError> {
    let mut r = client.get(url);
    if let Some(a) = accept_encoding {
        r = r.header(header::ACCEPT_ENCODING, a);
    }
    let r = r.send().await?;
    if r.status() != 200 {
        return Err(BenchError::Status {
            status: r.status().as_u16(),
        });
    }
    Ok(r.bytes().await?.len())
}

/// `total` requests from `clients` concurrent tasks; each request's latency.
async fn load(
    client: &reqwest::Client,
    url: &str,
    accept_encoding: Option<&str>,
    clients: usize,
    total: usize,
) -> Result<Vec<Duration>, BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let n = total / clients + usize::from(c < total % clients);
        let (client, url) = (client.clone(), url.to_string());
        let accept = accept_encoding.map(str::to_string);
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                fetch(&client, &url, accept.as_deref()).await?;
                times.push(started.elapsed());
            }
            Ok::<_, BenchError>(times)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("bench task panicked")?);
    }
    Ok(all)
}

fn summarize(mut times: Vec<Duration>, elapsed: Duration) -> Latency {
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Latency {
        requests: times.len(),
        p50: at(0.50),
        p99: at(0.99),
        requests_per_second: times.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    }
}

/// A stand-in for `/api/v1/latest` of `stations` stations (about 1.75 KB each, so 2,000 make
/// the 3.5 MB of the real view), served from bytes made once as the real handler does.
pub fn synthetic_latest(stations: usize) -> (Router, Bytes) {
    let body = Bytes::from(synthetic_latest_json(stations));
    let served = body.clone();
    let app = Router::new().route(
        "/api/v1/latest",
        get(move || {
            let body = served.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    (app, body)
}

/// JSON shaped like the latest view: names, coordinates, six values with units, times and
/// flags, and both indices per station; values from a fixed pseudo-random sequence.
pub fn synthetic_latest_json(stations: usize) -> String {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let params = [
        ("pm25", "µg/m³"),
        ("pm10", "µg/m³"),
        ("no2", "µg/m³"),
        ("o3", "µg/m³"),
        ("so2", "µg/m³"),
        ("co", "mg/m³"),
    ];
    let mut out = Vec::with_capacity(stations);
    for i in 0..stations {
        let minute = next() % 60;
        let time = format!("2026-12-01T10:{minute:02}:00Z");
        let values: Vec<_> = params
            .iter()
            .map(|(p, unit)| {
                serde_json::json!({
                    "parameter": p, "value": (next() % 100_000) as f64 / 1000.0, "unit": unit,
                    "time": time, "flag": if next() % 20 == 0 { "suspect" } else { "valid" },
                    "period_seconds": 3600,
                })
            })
            .collect();
        let aqi = next() % 300;
        let road = ["High", "Park", "Mill", "Church"][i % 4];
        let aqi_parts = ["pm25", "pm10", "o3", "no2"].map(|p| {
            serde_json::json!({"parameter": p, "index": next() % 300,
                "concentration": (next() % 100_000) as f64 / 1000.0, "averaging": "nowcast_12h"})
        });
        let eaqi_parts = ["pm25", "pm10", "no2"].map(|p| {
            serde_json::json!({"parameter": p, "level": 1 + next() % 6,
                "concentration": (next() % 100_000) as f64 / 1000.0, "averaging": "24h"})
        });
        let area = ["North", "South", "East", "West", "Centre"][i % 5];
        out.push(serde_json::json!({
            "station": format!("city_{i:04}"),
            "name": format!("Station {i} — {road} Road"),
            "location": {"lat": 51.0 + (next() % 100_000) as f64 / 100_000.0,
                         "lon": -0.5 + (next() % 100_000) as f64 / 100_000.0},
            "area": area,
            "time": time, "stale": next() % 10 == 0, "values": values,
            "aqi": {"value": aqi, "category": "Moderate", "dominant": "pm25",
                    "advice": "Unusually sensitive people should consider reducing prolonged or heavy exertion.",
                    "pollutants": aqi_parts},
            "eaqi": {"level": 1 + next() % 6, "label": "Fair", "dominant": "pm10",
                     "pollutants": eaqi_parts},
        }));
    }
    serde_json::Value::Array(out).to_string()
}

/// One encoding's result on a body.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedSize {
    pub encoding: &'static str,
    pub bytes: usize,
    /// Time to compress it once, as the edge does (through its layer, in this process).
    pub elapsed: Duration,
}

/// What the edge's compression (at `config.level`) makes of `body` sent as `content_type`:
/// identity, gzip, br and zstd.
pub async fn compressed_sizes(
    body: Bytes,
    content_type: &'static str,
    config: &CompressionConfig,
) -> Vec<CompressedSize> {
    let served = body.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let body = served.clone();
            async move { ([(header::CONTENT_TYPE, content_type)], body) }
        }),
    );
    let service = crate::compression::compression_layer(config).layer(app);
    let mut out = Vec::new();
    for encoding in ["identity", "gzip", "br", "zstd"] {
        let request = Request::get("/")
            .header(header::ACCEPT_ENCODING, encoding)
            .body(Body::empty())
            .expect("a valid request");
        let started = Instant::now();
        let response = service.clone().oneshot(request).await.expect("infallible");
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
            .await
            .map(|b| b.len())
            .unwrap_or(0);
        out.push(CompressedSize {
            encoding,
            bytes,
            elapsed: started.elapsed(),
        });
    }
    out
}

/// Full TLS handshakes (no resumption) per second against [`serve_tls`] with a self-signed
/// ECDSA P-256 certificate, from `clients` concurrent loopback clients for `duration` (the
/// clients' work runs on the same machine).
pub async fn tls_handshakes_per_second(
    duration: Duration,
    clients: usize,
) -> Result<f64, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "ecocityhub-edge-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    let tls = Tls::load(&TlsConfig::default(), &dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server_tls = tls.clone();
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(async move {
        serve_tls(
            listener,
            app,
            &ServerConfig::default(),
            &server_tls,
            None,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let connector = tls_client(&tls)?;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let connector = connector.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let tcp = TcpStream::connect(addr).await?;
                let name =
                    rustls_pki_types::ServerName::try_from("localhost").expect("a valid name");
                connector.connect(name, tcp).await?;
                done += 1;
            }
            Ok::<_, std::io::Error>(done)
        });
    }
    let mut total = 0u64;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("bench task panicked")?;
    }
    let elapsed = started.elapsed();
    drop(stop);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(total as f64 / elapsed.as_secs_f64())
}

fn tls_client(tls: &Tls) -> Result<tokio_rustls::TlsConnector, BenchError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls.current_chain() {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_latest_view_has_the_size_of_the_real_one() {
        let json = synthetic_latest_json(2000);
        assert!(
            (3_000_000..4_200_000).contains(&json.len()),
            "{} bytes",
            json.len()
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2000);
    }

    #[tokio::test]
    async fn the_bench_functions_return_numbers() {
        let (app, _) = synthetic_latest(20);
        let c = compare_with_and_without_edge(
            app,
            EdgeConfig::default(),
            "/api/v1/latest",
            Some("gzip"),
            4,
            40,
        )
        .await
        .unwrap();
        assert_eq!(c.direct.requests, 40);
        assert_eq!(c.edge.requests, 40);
        assert!(c.edge_bytes < c.direct_bytes, "{c:?}");
        let sizes = compressed_sizes(
            Bytes::from(synthetic_latest_json(50)),
            "application/json",
            &CompressionConfig::default(),
        )
        .await;
        assert_eq!(sizes.len(), 4);
        assert!(
            sizes[1..].iter().all(|s| s.bytes < sizes[0].bytes / 3),
            "{sizes:?}"
        );
        let rate = tls_handshakes_per_second(Duration::from_millis(200), 2)
            .await
            .unwrap();
        assert!(rate > 0.0);
    }
}
