//! `ecocityhub bench` parts for the platform's layers, each measured through its own crate's
//! benchmark functions: `blobs` (photos, encryption at rest, upload URLs), `notify` (fan-out,
//! latency, rule cost), `observe` (audit append and verify, request layers), `edge` (the edge
//! against the bare handler, compression, TLS handshakes) and `waf` (inspection cost, corpus).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ecocityhub_store::Store;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A fresh store on SQLite in `dir`, or on a new database of the PostgreSQL `server`.
async fn fresh(dir: &Path, name: &str, server: Option<&str>) -> Result<Arc<dyn Store>> {
    let url = match server {
        Some(server) => ecocityhub_store::testing::create_database(server).await?,
        None => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
    };
    let store = ecocityhub_store::connect(&url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

pub async fn blobs_bench() -> Result<()> {
    use ecocityhub_blobs::bench;
    let photo = bench::photo_processing(5);
    println!(
        "photo processing (12 MP JPEG: decode, orient, re-encode, thumbnail; one core): {photo:?}"
    );
    let dir = tempfile::tempdir()?;
    let cost = bench::encryption_cost(dir.path(), 1_000_000, 200).await?;
    println!("encryption at rest, 1 MB blob, local files: {cost:?}");
    let uploads = bench::upload_urls(5_000).await;
    println!("presigned upload URLs: {uploads:?}");
    Ok(())
}

pub async fn notify_bench(backend: &str, server: Option<&str>) -> Result<()> {
    use ecocityhub_notify::bench;
    let dir = tempfile::tempdir()?;
    let fanout = bench::fanout(fresh(dir.path(), "fanout", server).await?, 10_000).await?;
    println!(
        "notify ({backend}): one alert to {} webhooks on loopback delivered in {:.2} s (publish {:.0} ms, {:.0} deliveries/s)",
        fanout.subscribers,
        fanout.all_delivered.as_secs_f64(),
        ms(fanout.publish),
        fanout.deliveries_per_second
    );
    let latency = bench::latency(fresh(dir.path(), "latency", server).await?, 200).await?;
    println!(
        "notify ({backend}): publish → webhook arrival p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        ms(latency.p50),
        ms(latency.p99),
        ms(latency.max),
        latency.samples
    );
    let through =
        crate::bench_alerts::ingest_to_webhook(fresh(dir.path(), "ingest", server).await?, 200)
            .await?;
    println!(
        "notify ({backend}): reading's 2xx → alert webhook arrival p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples, default worker settings)",
        ms(through.p50),
        ms(through.p99),
        ms(through.max),
        through.samples
    );
    let cost = bench::rule_cost(fresh(dir.path(), "rules", server).await?, 1_000, 400, 100).await?;
    println!(
        "notify ({backend}): ingest with {} alert rules {:.0} readings/s vs {:.0} without ({:+.1} %); rule evaluation {:.3} ms per batch of {} ({:.1} % of the time)",
        cost.rules,
        cost.throughput_with,
        cost.throughput_without,
        -cost.slowdown * 100.0,
        ms(cost.evaluation_per_batch),
        cost.batch_size,
        cost.evaluation_share * 100.0
    );
    Ok(())
}

pub async fn observe_bench(backend: &str, server: Option<&str>) -> Result<()> {
    use ecocityhub_observe::bench;
    let dir = tempfile::tempdir()?;
    let store = fresh(dir.path(), "audit", server).await?;
    for clients in [1, 64] {
        let rate = bench::audit_append_rate(store.clone(), 20_000, clients).await?;
        println!("audit ({backend}): append with {clients} client(s): {rate:.0} records/s");
    }
    let store = fresh(dir.path(), "verify", server).await?;
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let (time, report) = bench::verify_time(store, blobs, 1_000_000).await?;
    println!(
        "audit ({backend}): verify {} records in {:.2} s (intact: {})",
        report.records_checked,
        time.as_secs_f64(),
        report.is_intact()
    );
    Ok(())
}

pub async fn observe_layers_bench() -> Result<()> {
    let o = ecocityhub_observe::bench::layer_overhead(100_000, 64).await?;
    println!(
        "request layers on a trivial handler, 64 clients: bare {:.0} req/s, metrics {:.0} req/s, metrics + request id {:.0} req/s ({:.1} % overhead)",
        o.bare_per_second,
        o.metrics_per_second,
        o.both_per_second,
        o.overhead_percent()
    );
    Ok(())
}

pub async fn edge_bench() -> Result<()> {
    use ecocityhub_edge::bench::{
        compare_with_and_without_edge, compressed_sizes, synthetic_latest,
        tls_handshakes_per_second,
    };
    use ecocityhub_edge::config::{CompressionConfig, EdgeConfig};
    let (_, body) = synthetic_latest(2000);
    for s in compressed_sizes(
        body.clone(),
        "application/json",
        &CompressionConfig::default(),
    )
    .await
    {
        println!(
            "edge: /latest of 2,000 stations ({} bytes) as {}: {} bytes ({:.1} %) in {:.1} ms",
            body.len(),
            s.encoding,
            s.bytes,
            100.0 * s.bytes as f64 / body.len() as f64,
            ms(s.elapsed)
        );
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
            .await?;
            println!(
                "edge: {stations} stations, Accept-Encoding {accept:?}, 64 clients: without p50 {:.2} ms p99 {:.2} ms ({:.0} req/s) | with p50 {:.2} ms p99 {:.2} ms ({:.0} req/s)",
                ms(c.direct.p50),
                ms(c.direct.p99),
                c.direct.requests_per_second,
                ms(c.edge.p50),
                ms(c.edge.p99),
                c.edge.requests_per_second,
            );
        }
    }
    for clients in [1, 4, 16] {
        let rate = tls_handshakes_per_second(Duration::from_secs(3), clients).await?;
        println!("edge: TLS handshakes with {clients} client(s): {rate:.0}/s");
    }
    Ok(())
}

pub fn waf_bench(shared_data: &Path) -> Result<()> {
    use ecocityhub_waf::bench::{bench_corpus, bench_inspection};
    let started = std::time::Instant::now();
    let waf = ecocityhub_waf::Waf::new(ecocityhub_waf::WafConfig::default())?;
    println!("waf: rules compiled in {:.1} ms", ms(started.elapsed()));
    let b = bench_inspection(&waf, 2000);
    println!(
        "waf: inspection per request (µs): {}",
        serde_json::to_string(&b)?
    );
    let corpus = shared_data.join("waf-corpus.jsonl");
    let c = bench_corpus(&waf, &corpus).with_context(|| format!("replay {}", corpus.display()))?;
    println!(
        "waf: check of {}: {} requests in {:.2} s ({:.0} µs each)",
        corpus.display(),
        c.requests,
        c.seconds,
        c.per_request_us
    );
    Ok(())
}
