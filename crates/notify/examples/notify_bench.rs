//! Runs the notification benchmarks on fresh SQLite stores (or PostgreSQL databases on the
//! server named by `ECOCITYHUB_TEST_DATABASE_URL`) and prints their numbers, until
//! `ecocityhub bench --only notify` does it:
//! `cargo run --release -p ecocityhub-notify --example notify_bench`.

use std::sync::Arc;

use ecocityhub_notify::bench;
use ecocityhub_store::Store;

async fn fresh(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Store> {
    let url = match std::env::var("ECOCITYHUB_TEST_DATABASE_URL") {
        Ok(server) if !server.is_empty() => ecocityhub_store::testing::create_database(&server)
            .await
            .expect("a fresh database"),
        _ => format!(
            "sqlite://{}",
            dir.path().join(format!("{name}.db")).display()
        ),
    };
    let store = ecocityhub_store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fanout = bench::fanout(fresh(&dir, "fanout").await, 10_000)
        .await
        .expect("fan-out");
    println!(
        "fan-out: {} webhooks delivered in {:.2} s (publish {:.0} ms, {:.0}/s)",
        fanout.subscribers,
        fanout.all_delivered.as_secs_f64(),
        fanout.publish.as_secs_f64() * 1e3,
        fanout.deliveries_per_second
    );
    let latency = bench::latency(fresh(&dir, "latency").await, 200)
        .await
        .expect("latency");
    println!(
        "latency publish -> webhook: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        latency.p50.as_secs_f64() * 1e3,
        latency.p99.as_secs_f64() * 1e3,
        latency.max.as_secs_f64() * 1e3,
        latency.samples
    );
    let cost = bench::rule_cost(fresh(&dir, "rules").await, 1_000, 400, 100)
        .await
        .expect("rules");
    println!(
        "ingest with {} rules: {:.0} readings/s vs {:.0} without ({:+.1} %), evaluation {:.3} ms per batch of {} ({:.1} % of the time)",
        cost.rules,
        cost.throughput_with,
        cost.throughput_without,
        -cost.slowdown * 100.0,
        cost.evaluation_per_batch.as_secs_f64() * 1e3,
        cost.batch_size,
        cost.evaluation_share * 100.0
    );
}
