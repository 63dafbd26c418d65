//! Benchmarks (numbers returned, nothing printed, no timed tests): the inspection cost
//! of a typical page GET and of a 16 KiB JSON ingest body, and the time of a corpus check.

use crate::corpus::{check_file, CorpusError, CorpusReport, Split};
use crate::{InspectedRequest, Waf};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Latencies of repeated inspections of one request, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyStats {
    pub iterations: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Inspection cost per request (target: p99 ≤ 200 µs).
#[derive(Debug, Clone, Serialize)]
pub struct InspectionBench {
    /// A station page GET with a browser's headers and the site's cookies.
    pub typical_get: LatencyStats,
    /// A history query of the API with a bearer token.
    pub api_get: LatencyStats,
    /// `POST /api/v1/readings` with a 16 KiB JSON array of readings.
    pub json_16k: LatencyStats,
}

/// The time of a full corpus check.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusBench {
    pub requests: u64,
    pub seconds: f64,
    pub per_request_us: f64,
    pub report: CorpusReport,
}

/// A browser's GET of a station page.
pub fn typical_get() -> InspectedRequest {
    InspectedRequest::new("GET", "/stations/marylebone_road?parameter=no2&range=7d")
        .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
        .header("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
        .header("Accept-Language", "en-GB,en;q=0.9")
        .header("Accept-Encoding", "gzip, deflate, br, zstd")
        .header("Referer", "http://127.0.0.1:8080/")
        .header("Cookie", "ecocityhub_session=Q2hhbmdlLW1lLXRvLWEtcmVhbC1zZXNzaW9uLWlk.x7Hq2; ecocityhub_csrf=4f0c1d2e3b4a59687766554433221100")
        .header("Sec-Fetch-Site", "same-origin")
}

/// An API history query with a bearer token.
pub fn api_get() -> InspectedRequest {
    InspectedRequest::new("GET", "/api/v1/stations/marylebone_road/readings?parameter=no2&from=2004-12-01T00:00:00Z&to=2005-01-01T00:00:00Z&interval=1d")
        .header("User-Agent", "curl/8.5.0")
        .header("Accept", "application/json")
        .header("Authorization", "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1LTEyMyIsImlzcyI6Imh0dHA6Ly8xMjcuMC4wLjE6ODA4MCIsInRva2VuX3VzZSI6ImFjY2VzcyJ9.MEUCIQDx3nq2v8k0bR1sZy7pL4wq_5mQm3T0aB8cD9eF-gHiJA")
}

/// A device's batch of readings as a JSON array of about `bytes` bytes.
pub fn json_readings(bytes: usize) -> InspectedRequest {
    let mut body = String::from("[");
    let mut i = 0u32;
    while body.len() + 100 < bytes {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"parameter":"no2","time":"2026-11-{:02}T{:02}:{:02}:00Z","value":{}.{},"unit":"ppb","flag":"valid"}}"#,
            1 + (i / 1440) % 28,
            (i / 60) % 24,
            i % 60,
            20 + i % 17,
            i % 10
        ));
        i += 1;
    }
    body.push(']');
    let len = body.len().to_string();
    InspectedRequest::new("POST", "/api/v1/readings")
        .header(
            "Authorization",
            "Bearer ech_dk_3f9a1c2b.q8Zt7RkLmN2pXv4sYw6uAe1oBc5dHf0g",
        )
        .header("Content-Type", "application/json")
        .header("Content-Length", &len)
        .header("User-Agent", "ecocityhub-sensor/1.4")
        .body(body)
}

fn measure(waf: &Waf, req: &InspectedRequest, iterations: usize) -> LatencyStats {
    let mut times: Vec<f64> = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        let verdict = waf.inspect(req);
        times.push(start.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(verdict);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    LatencyStats {
        iterations: times.len(),
        mean_us: times.iter().sum::<f64>() / times.len() as f64,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: at(1.0),
    }
}

/// Inspection cost of the typical requests, `iterations` times each (after a warm-up).
pub fn bench_inspection(waf: &Waf, iterations: usize) -> InspectionBench {
    let (get, api, json) = (typical_get(), api_get(), json_readings(16 * 1024));
    measure(waf, &json, 20);
    InspectionBench {
        typical_get: measure(waf, &get, iterations),
        api_get: measure(waf, &api, iterations),
        json_16k: measure(waf, &json, iterations),
    }
}

/// Times a full check of a corpus file.
pub fn bench_corpus(waf: &Waf, path: &Path) -> Result<CorpusBench, CorpusError> {
    let start = Instant::now();
    let report = check_file(waf, path, Split::All)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(CorpusBench {
        requests: report.requests,
        seconds,
        per_request_us: seconds * 1e6 / report.requests.max(1) as f64,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WafConfig;

    #[test]
    fn the_benchmark_requests_pass_and_are_measured() {
        let waf = Waf::new(WafConfig::default()).unwrap();
        for req in [typical_get(), api_get(), json_readings(16 * 1024)] {
            let v = waf.inspect(&req);
            assert!(
                !v.is_blocked(),
                "{} {}: {:?}",
                req.method,
                req.uri,
                v.matches
            );
        }
        let json = json_readings(16 * 1024);
        assert!(json.body.len() > 15 * 1024 && json.body.len() <= 16 * 1024);
        let b = bench_inspection(&waf, 5);
        assert_eq!(b.json_16k.iterations, 5);
        assert!(b.json_16k.p50_us > 0.0 && b.json_16k.p99_us >= b.json_16k.p50_us);
    }
}
