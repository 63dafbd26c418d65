//! In-process cost of the edge per request (no network): `cargo run --release -p ecocityhub-edge --example edge_overhead`.
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use ecocityhub_edge::bench::synthetic_latest;
use ecocityhub_edge::config::EdgeConfig;
use ecocityhub_edge::Edge;
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (app, _) = synthetic_latest(20);
    let mut config = EdgeConfig::default();
    for r in &mut config.shield.rate_limits.rules {
        r.limit = 1_000_000_000;
    }
    let variants: Vec<(&str, EdgeConfig)> = vec![
        ("all", config.clone()),
        ("no rate limits", {
            let mut c = config.clone();
            c.shield.rate_limits.enabled = false;
            c
        }),
        ("no cache", {
            let mut c = config.clone();
            c.cache.enabled = false;
            c
        }),
        ("no shed", {
            let mut c = config.clone();
            c.shield.max_concurrent_requests = 0;
            c
        }),
        ("no compression", {
            let mut c = config.clone();
            c.compression.enabled = false;
            c
        }),
    ];
    let n = 200_000;
    let time = |router: axum::Router| async move {
        let started = Instant::now();
        for _ in 0..n {
            let mut r = Request::get("/api/v1/latest")
                .header("host", "x")
                .body(Body::empty())
                .unwrap();
            r.extensions_mut().insert(ConnectInfo(
                "127.0.0.1:5000".parse::<std::net::SocketAddr>().unwrap(),
            ));
            let resp = router.clone().oneshot(r).await.unwrap();
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    println!("bare: {:.2} µs", time(app.clone()).await);
    for (name, c) in variants {
        let edge = Edge::new(c).unwrap();
        println!("{name}: {:.2} µs", time(edge.wrap(app.clone())).await);
    }
}
