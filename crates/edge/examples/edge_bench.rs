//! Prints the edge's measurements on this machine:
//! `cargo run --release -p ecocityhub-edge --example edge_bench`.

use std::time::Duration;

use ecocityhub_edge::bench::{
    compare_with_and_without_edge, compressed_sizes, synthetic_latest, tls_handshakes_per_second,
};
use ecocityhub_edge::config::{CompressionConfig, EdgeConfig};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "small") {
        let mut variants = Vec::new();
        let base = EdgeConfig::default();
        variants.push(("all", base.clone()));
        let mut c = base.clone();
        c.enabled = false;
        variants.push(("disabled", c));
        let mut c = base.clone();
        c.cache.enabled = false;
        variants.push(("no cache", c));
        let mut c = base.clone();
        c.shield.rate_limits.enabled = false;
        variants.push(("no limits", c));
        let mut c = base.clone();
        c.compression.enabled = false;
        variants.push(("no compression", c));
        for (name, config) in variants {
            let (app, _) = synthetic_latest(20);
            let c = compare_with_and_without_edge(app, config, "/api/v1/latest", None, 64, 60_000)
                .await
                .expect("bench");
            println!(
                "{name}: direct {:.0} req/s, edge {:.0} req/s",
                c.direct.requests_per_second, c.edge.requests_per_second
            );
        }
        return;
    }
    let (_, body) = synthetic_latest(2000);
    println!("latest view: {} bytes", body.len());
    for level in [1, 4, 6, 9] {
        let config = CompressionConfig {
            level,
            ..CompressionConfig::default()
        };
        for s in compressed_sizes(body.clone(), "application/json", &config).await {
            println!(
                "level {level} {:>8}: {:>9} bytes ({:5.1} %) in {:7.1} ms",
                s.encoding,
                s.bytes,
                100.0 * s.bytes as f64 / body.len() as f64,
                ms(s.elapsed)
            );
        }
    }
    for (stations, requests) in [(2000, 2_000), (20, 40_000)] {
        for accept in [None, Some("gzip, br")] {
            let (app, _) = synthetic_latest(stations);
            let c = compare_with_and_without_edge(
                app,
                EdgeConfig::default(),
                "/api/v1/latest",
                accept,
                64,
                requests,
            )
            .await
            .expect("bench");
            println!(
                "{stations} stations, accept {accept:?}, 64 clients: direct p50 {:.2} ms p99 {:.2} ms {:.0} req/s {} B | edge p50 {:.2} ms p99 {:.2} ms {:.0} req/s {} B",
                ms(c.direct.p50),
                ms(c.direct.p99),
                c.direct.requests_per_second,
                c.direct_bytes,
                ms(c.edge.p50),
                ms(c.edge.p99),
                c.edge.requests_per_second,
                c.edge_bytes
            );
        }
    }
    for clients in [1, 4, 16] {
        let rate = tls_handshakes_per_second(Duration::from_secs(3), clients)
            .await
            .expect("bench");
        println!("TLS handshakes, {clients} clients: {rate:.0}/s");
    }
}
