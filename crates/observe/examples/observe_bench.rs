//! Runs the observe layer's benchmarks and prints their numbers (the lead wires the same
//! functions into `ecocityhub bench`):
//! `cargo run --release -p ecocityhub-observe --example observe_bench [RECORDS_TO_VERIFY]`
//! with `ECOCITYHUB_TEST_DATABASE_URL` set for the PostgreSQL figures.

use std::sync::Arc;

use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_observe::bench;
use ecocityhub_store::observe::ObserveStore;
use ecocityhub_store::Store;

async fn open(url: &str) -> Arc<dyn ObserveStore> {
    let store = ecocityhub_store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

#[tokio::main]
async fn main() {
    let verify_n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // `observe_bench N verify`: only the verification figures.
    let only_verify = std::env::args().nth(2).as_deref() == Some("verify");
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![("sqlite", ecocityhub_store::testing::sqlite_url(dir.path()))];
    if let Some(pg) = ecocityhub_store::testing::fresh_postgres_url().await {
        urls.push(("postgres", pg));
    }
    for (name, url) in urls.iter().filter(|_| !only_verify) {
        let store = open(url).await;
        for clients in [1, 64] {
            let rate = bench::audit_append_rate(store.clone(), 20_000, clients)
                .await
                .unwrap();
            println!("{name}: audit append, {clients} client(s): {rate:.0} records/s");
        }
    }
    for (name, _) in &urls {
        let url = if *name == "sqlite" {
            ecocityhub_store::testing::sqlite_url(&dir.path().join("verify"))
        } else {
            ecocityhub_store::testing::fresh_postgres_url()
                .await
                .unwrap()
        };
        std::fs::create_dir_all(dir.path().join("verify")).unwrap();
        let store = open(&url).await;
        let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
        let started = std::time::Instant::now();
        let (time, report) = bench::verify_time(store, blobs, verify_n).await.unwrap();
        println!(
            "{name}: verify {} records: {:.2} s (intact: {}; filling took {:.1} s)",
            report.records_checked,
            time.as_secs_f64(),
            report.is_intact(),
            (started.elapsed() - time).as_secs_f64()
        );
    }
    if only_verify {
        return;
    }
    let o = bench::layer_overhead(100_000, 64).await.unwrap();
    println!(
        "trivial handler, 64 clients: bare {:.0} req/s, metrics layer {:.0} req/s, metrics + request id {:.0} req/s: overhead {:.1} %",
        o.bare_per_second,
        o.metrics_per_second,
        o.both_per_second,
        o.overhead_percent()
    );
}
