//! Development aid: prints the benchmark numbers. `cargo run -p ecocityhub-waf --release --example bench -- CORPUS`
use ecocityhub_waf::bench::{bench_corpus, bench_inspection};
use ecocityhub_waf::{Waf, WafConfig};

fn main() {
    let start = std::time::Instant::now();
    let waf = Waf::new(WafConfig::default()).expect("default rules compile");
    println!(
        "rules compiled in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&bench_inspection(&waf, 2000)).unwrap_or_default()
    );
    if let Some(path) = std::env::args().nth(1) {
        let b = bench_corpus(&waf, std::path::Path::new(&path)).expect("corpus");
        println!(
            "corpus: {} requests in {:.2} s ({:.0} µs each)",
            b.requests, b.seconds, b.per_request_us
        );
    }
}
