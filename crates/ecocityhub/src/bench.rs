//! `ecocityhub bench`: measures the numbers the platform promises and prints them.
//!
//! - ingest through `import` (a shared data file) and straight into the store, on SQLite and,
//!   with `--postgres URL`, on PostgreSQL;
//! - ingest through HTTP batches against a server process;
//! - p50/p99 latency of `/latest` and of one year of hourly history at 64 concurrent clients;
//! - start-up time to the first answered request on an existing data directory;
//! - idle resident memory of the server;
//! - backup, verify and restore of 1,000,000 readings (`bench_backup`).
//!
//! Servers are separate processes of this same binary, so client and server do not share a
//! runtime. Nothing here is a pass/fail test; the numbers go into the issue notes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use clap::Args;
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::Store;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::import::{self, ImportOptions};

#[derive(Args)]
pub struct BenchArgs {
    /// The shared data directory (for the import benchmark and the one-year history).
    #[arg(long, default_value = "../shared/data")]
    shared_data: PathBuf,
    /// Also measure on this PostgreSQL server (an empty database is created on it).
    #[arg(long, env = "ECOCITYHUB_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent clients for latency measurements.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Only these parts (identity, anomalies, ml, store, import, http, latency, web, startup,
    /// blobs, notify, observe, edge, waf, backup); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn wants(args: &BenchArgs, part: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|p| p == part)
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let london = args.shared_data.join("london-marylebone-aq.csv");
    println!(
        "EcoCityHub benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut backends: Vec<(&str, Option<String>)> = vec![("sqlite", None)];
    if let Some(pg) = &args.postgres {
        backends.push(("postgres", Some(pg.clone())));
    }
    if wants(&args, "identity") {
        identity_bench().await?;
    }
    if wants(&args, "anomalies") {
        crate::bench_ml::anomaly_bench(&args.shared_data)?;
    }
    if wants(&args, "ml") {
        crate::bench_ml::ml_bench(&args.shared_data).await?;
    }
    if wants(&args, "blobs") {
        crate::bench_layers::blobs_bench().await?;
    }
    if wants(&args, "waf") {
        crate::bench_layers::waf_bench(&args.shared_data)?;
    }
    if wants(&args, "edge") {
        crate::bench_layers::edge_bench().await?;
    }
    if wants(&args, "observe") {
        crate::bench_layers::observe_layers_bench().await?;
    }
    for (name, server) in &backends {
        if wants(&args, "notify") {
            crate::bench_layers::notify_bench(name, server.as_deref()).await?;
        }
        if wants(&args, "observe") {
            crate::bench_layers::observe_bench(name, server.as_deref()).await?;
        }
    }
    if wants(&args, "backup") {
        crate::bench_backup::backup_bench(args.postgres.as_deref()).await?;
    }
    for (name, server) in &backends {
        if wants(&args, "store") {
            let dir = tempfile::tempdir()?;
            let store = fresh_store(dir.path(), server.as_deref()).await?;
            let rate = store_insert(store.as_ref(), 500_000).await?;
            println!("store insert ({name}): {rate:.0} readings/s (500,000 synthetic readings, 50,000 per transaction)");
        }
        let needs_data = ["import", "http", "latency", "web", "startup"]
            .iter()
            .any(|p| wants(&args, p));
        if !needs_data {
            continue;
        }
        // One data directory (or database) with the London series, used by every part below.
        let dir = tempfile::tempdir()?;
        let url = match server {
            None => ecocityhub_store::testing::sqlite_url(dir.path()),
            Some(s) => fresh_postgres(s).await?,
        };
        {
            let store = open(&url).await?;
            let f = std::fs::File::open(&london)
                .with_context(|| format!("open {}", london.display()))?;
            let report = import::import(
                store.as_ref(),
                f,
                None,
                &crate::demo::known_stations(),
                &ImportOptions::default(),
            )
            .await?;
            // The German network too, so that the home page's map has its 43 stations.
            let (_, germany) = crate::demo::FILES
                .iter()
                .find(|(n, _)| n.starts_with("germany"))
                .context("the demo's German file")?;
            import::import(
                store.as_ref(),
                std::io::Cursor::new(germany.as_bytes()),
                None,
                &crate::demo::known_stations(),
                &ImportOptions::default(),
            )
            .await?;
            if wants(&args, "import") {
                println!(
                    "import ({name}): {:.0} readings/s ({} readings of {} in {:.2} s)",
                    report.rate(),
                    report.stored,
                    london.display(),
                    report.elapsed.as_secs_f64()
                );
            }
        }
        if !["http", "latency", "web", "startup"]
            .iter()
            .any(|p| wants(&args, p))
        {
            continue;
        }
        if wants(&args, "web") {
            seed_reports(open(&url).await?.as_ref(), 10_000).await?;
        }
        let server_db = server.as_ref().map(|_| url.as_str());
        let (child, base, ready) = spawn_server(dir.path(), server_db).await?;
        let pid = child.id().context("server pid")?;
        if wants(&args, "startup") {
            println!(
                "start-up to first answer ({name}, existing data): {:.1} ms",
                ready.as_secs_f64() * 1000.0
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("idle RSS after start-up ({name}): {:.1} MB", rss_mb(pid)?);
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.clients)
            .build()?;
        if wants(&args, "latency") {
            let latest = format!("{base}/api/v1/latest");
            let (p50, p99) = latency(&client, &latest, args.requests, args.clients).await?;
            println!(
                "GET /latest ({name}, {} clients): p50 {:.2} ms, p99 {:.2} ms",
                args.clients, p50, p99
            );
            let year = format!(
                "{base}/api/v1/stations/marylebone_road/readings?parameter=no2&from=2004-01-01T00:00:00Z&to=2005-01-01T00:00:00Z&limit=10000"
            );
            let n = (args.requests / 10).max(args.clients);
            let (p50, p99) = latency(&client, &year, n, args.clients).await?;
            println!("GET one year of hourly NO2 ({name}, 8,784 h, {} clients): p50 {:.2} ms, p99 {:.2} ms", args.clients, p50, p99);
        }
        if wants(&args, "web") {
            web_bench(&client, &base, name, &args).await?;
        }
        if wants(&args, "http") {
            let store = open(&url).await?;
            let rate = http_ingest(&client, &base, store.as_ref()).await?;
            println!("HTTP batch ingest ({name}): {rate:.0} readings/s (100 batches of 5,000 JSON readings, 4 clients)");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("idle RSS after the load ({name}): {:.1} MB", rss_mb(pid)?);
        drop(child);
    }
    Ok(())
}

/// JWT verification rate on one core, the authorizer's cost per request (token check through
/// the API's identity layer, with its cache of verified tokens, plus the Cedar decision), and
/// sign-in latency through HTTP (argon2id dominates it on purpose).
async fn identity_bench() -> Result<()> {
    use ecocityhub_api::identity::{Identity, IdentityConfig, OutboxDelivery};
    use ecocityhub_identity::tokens::{self, Subject};
    use ecocityhub_identity::{
        password, Action, Authorizer, KeySet, Principal, Resource, Role, SigningKey, TokenConfig,
        TokenUse,
    };

    let config = TokenConfig::new("http://127.0.0.1:8080", "ecocityhub-web");
    let keys = KeySet::new(&[SigningKey::generate(Utc::now())])?;
    let groups = vec!["citizen".to_string()];
    let subject = Subject {
        id: "u1",
        email: "a@example.org",
        email_verified: true,
        groups: &groups,
        nonce: None,
        scope: tokens::scopes::FIRST_PARTY,
    };
    let (_, access) = tokens::issue(&config, &keys, &subject, Utc::now())?;
    let n = 5_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(tokens::verify(&config, &keys, &access, TokenUse::Access)?);
    }
    println!(
        "JWT (ES256) signature verifications: {:.0} per second on one core",
        n as f64 / started.elapsed().as_secs_f64()
    );

    let mut hashes = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        password::hash("Corr3ct-Horse");
        hashes.push(t.elapsed());
    }
    hashes.sort();
    println!(
        "argon2id (19 MiB, 6 passes) hash: median {:.0} ms",
        hashes[4].as_secs_f64() * 1000.0
    );

    let dir = tempfile::tempdir()?;
    let store = open(&ecocityhub_store::testing::sqlite_url(dir.path())).await?;
    let user = ecocityhub_store::identity::User {
        id: "bench-user".into(),
        email: "bench@example.org".into(),
        password_hash: password::hash("Corr3ct-Horse"),
        roles: vec![Role::Citizen],
        confirmed: true,
        created_at: Utc::now(),
    };
    store.insert_user(&user).await?;
    let identity = Identity::open(
        store.as_ref(),
        IdentityConfig::default(),
        Arc::new(OutboxDelivery {
            store: store.clone(),
        }),
        None,
    )
    .await?;
    let (_, access) = identity
        .issue(store.as_ref(), &user, None, tokens::scopes::FIRST_PARTY)
        .await?;
    let authorizer = Authorizer::builtin();
    let mut times = Vec::with_capacity(50_000);
    for _ in 0..50_000 {
        let t = Instant::now();
        let claims = identity.verify_access(store.as_ref(), &access).await?;
        let principal = Principal::User {
            id: claims.sub.clone(),
            roles: Authorizer::roles_of(&claims.groups),
        };
        std::hint::black_box(authorizer.is_allowed(
            &principal,
            Action::ReadAccount,
            &Resource::User(claims.sub),
        ));
        times.push(t.elapsed());
    }
    times.sort();
    let us = |p: f64| {
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1e6
    };
    println!("authorizer per request (token check + Cedar decision, same token): p50 {:.0} µs, p99 {:.0} µs", us(0.5), us(0.99));
    drop((identity, store));

    // Sign-in through HTTP against a server process.
    let (child, base, _) = spawn_server(dir.path(), None).await?;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        client
            .post(format!("{base}/api/v1/auth/sign-in"))
            .json(&serde_json::json!({"email": "bench@example.org", "password": "Corr3ct-Horse"}))
            .send()
            .await?
            .error_for_status()?;
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |p: f64| {
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "sign-in through HTTP (one client, 25 times): p50 {:.0} ms, p99 {:.0} ms",
        ms(0.5),
        ms(0.99)
    );
    drop(child);
    enumeration_timing(&user).await?;
    sign_up_flood(100).await?;
    sign_up_flood(250).await?;
    guessing_flood().await
}

/// A client whose requests come from `127.0.0.n`, so a flood can come from many addresses.
fn client_from(n: u32) -> Result<reqwest::Client> {
    let ip = std::net::Ipv4Addr::from(0x7f00_0000 + n.clamp(1, 0xff_fffe));
    Ok(reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(ip))
        .build()?)
}

/// `n` concurrent sign-ups, each from its own client address (so the per-address throttle
/// does not hide the hashing pool): the answers, the server's memory before, at its peak and
/// after, and how long `/healthz` takes meanwhile.
async fn sign_up_flood(n: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (child, base, _) = spawn_server(dir.path(), None).await?;
    let pid = child.id().context("server pid")?;
    let before = rss_mb(pid)?;
    let peak = Arc::new(std::sync::Mutex::new(before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mb) = rss_mb(pid) {
                    let mut p = peak.lock().expect("not poisoned");
                    *p = p.max(mb);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let sign_ups = (0..n).map(|i| {
        let base = base.clone();
        async move {
            let resp = client_from(i + 2)?
                .post(format!("{base}/api/v1/auth/sign-up"))
                .json(&json!({"email": format!("flood{i}@example.org"), "password": "Corr3ct-Horse!"}))
                .send()
                .await?;
            Ok::<u16, anyhow::Error>(resp.status().as_u16())
        }
    });
    let health = async {
        let client = client_from(1)?;
        let mut worst = Duration::ZERO;
        while started.elapsed() < Duration::from_secs(2) {
            let t = Instant::now();
            client
                .get(format!("{base}/healthz"))
                .send()
                .await?
                .error_for_status()?;
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<Duration, anyhow::Error>(worst)
    };
    let (answers, worst_health) = tokio::join!(futures::future::join_all(sign_ups), health);
    let elapsed = started.elapsed();
    let mut counts = std::collections::BTreeMap::new();
    for status in answers {
        *counts.entry(status?).or_insert(0u32) += 1;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.await?;
    let after = rss_mb(pid)?;
    let peak = *peak.lock().expect("not poisoned");
    println!(
        "sign-up flood ({n} at once, one per client address): answers {counts:?} in {:.1} s; RSS before {before:.0} MB, peak {peak:.0} MB, 1 s after {after:.0} MB; slowest /healthz meanwhile {:.0} ms",
        elapsed.as_secs_f64(),
        worst_health?.as_secs_f64() * 1000.0
    );
    drop(child);
    Ok(())
}

/// The reset-code guessing attack of the security review for 10 s: forgot-password and wrong
/// reset codes in a loop, from one client address and then rotating over many; how many
/// guesses were checked and how many codes the victim was sent.
async fn guessing_flood() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (child, base, _) = spawn_server(dir.path(), None).await?;
    let store = open(&ecocityhub_store::testing::sqlite_url(dir.path())).await?;
    let victim = ecocityhub_store::identity::User {
        id: "victim".into(),
        email: "victim@example.org".into(),
        password_hash: ecocityhub_identity::password::hash("Corr3ct-Horse!"),
        roles: vec![ecocityhub_identity::Role::Citizen],
        confirmed: true,
        created_at: Utc::now(),
    };
    store.insert_user(&victim).await?;
    for (label, addresses) in [("one client address", 1u32), ("256 client addresses", 256)] {
        let started = Instant::now();
        let (mut checked, mut refused, mut i) = (0u32, 0u32, 0u32);
        while started.elapsed() < Duration::from_secs(10) {
            let client = client_from(2 + i % addresses)?;
            i += 1;
            let path = if i % 5 == 0 {
                "forgot-password"
            } else {
                "reset-password"
            };
            let body = json!({"email": "victim@example.org", "code": format!("{:06}", i % 1_000_000), "new_password": "N3w-passphrase!"});
            let status = client
                .post(format!("{base}/api/v1/auth/{path}"))
                .json(&body)
                .send()
                .await?
                .status();
            if path == "reset-password" {
                match status.as_u16() {
                    429 => refused += 1,
                    _ => checked += 1,
                }
            }
        }
        let sent = store.outbox("victim@example.org").await?.len();
        println!(
            "reset-code guessing for 10 s from {label}: {checked} guesses answered, {refused} refused with 429; codes sent to the victim so far: {sent}"
        );
    }
    drop(child);
    Ok(())
}

/// Whether an account exists must not show in how long sign-in and password reset take: the
/// medians of each answer, requests interleaved, on a fresh server (its own throttle).
async fn enumeration_timing(template: &ecocityhub_store::identity::User) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&ecocityhub_store::testing::sqlite_url(dir.path())).await?;
    let rounds = 6;
    for i in 0..rounds {
        let mut user = template.clone();
        user.id = format!("timing-{i}");
        user.email = format!("timing-{i}@example.org");
        store.insert_user(&user).await?;
    }
    drop(store);
    let (child, base, _) = spawn_server(dir.path(), None).await?;
    let mut samples: [Vec<f64>; 4] = Default::default();
    for i in 0..rounds {
        // Each round from its own client address, under the per-address throttles.
        let client = client_from(100 + i as u32)?;
        let requests = [
            (
                "sign-in",
                json!({"email": format!("timing-{i}@example.org"), "password": "Wr0ng-Horse!"}),
            ),
            (
                "sign-in",
                json!({"email": format!("nobody-{i}@example.org"), "password": "Wr0ng-Horse!"}),
            ),
            (
                "forgot-password",
                json!({"email": format!("timing-{i}@example.org")}),
            ),
            (
                "forgot-password",
                json!({"email": format!("nobody-{i}@example.org")}),
            ),
        ];
        for (k, (path, body)) in requests.iter().enumerate() {
            let t = Instant::now();
            let status = client
                .post(format!("{base}/api/v1/auth/{path}"))
                .json(body)
                .send()
                .await?
                .status();
            samples[k].push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                status != reqwest::StatusCode::TOO_MANY_REQUESTS,
                "throttled during the timing run"
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [a, b, c, d] = &mut samples;
    println!(
        "user enumeration by timing ({rounds} rounds, medians): sign-in with a wrong password {:.0} ms vs unknown address {:.0} ms; forgot-password existing {:.0} ms vs unknown {:.0} ms",
        median(a),
        median(b),
        median(c),
        median(d)
    );
    drop(child);
    Ok(())
}

pub(crate) async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let store = ecocityhub_store::connect(url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

pub(crate) async fn fresh_postgres(server: &str) -> Result<String> {
    ecocityhub_store::testing::create_database(server)
        .await
        .context("create a PostgreSQL database for the benchmark")
}

/// Resident memory of a process, from /proc (Linux).
fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb / 1024.0)
}

/// `n` citizens' reports spread over London (a tenth of them closed), filed by one user, for
/// the home page's report layer.
async fn seed_reports(store: &dyn Store, n: usize) -> Result<()> {
    use ecocityhub_store::reports::{ReportEventRow, ReportRow};
    let now = chrono::Utc::now();
    store
        .insert_user(&ecocityhub_store::identity::User {
            id: "bench_reporter".into(),
            email: "bench-reporter@example.org".into(),
            password_hash: "-".into(),
            roles: Vec::new(),
            confirmed: true,
            created_at: now,
        })
        .await?;
    let categories = ecocityhub_domain::Categories::default();
    for i in 0..n {
        let category = &categories.0[i % categories.0.len()].key;
        let report = ReportRow {
            id: format!("rep_bench_{i:05}"),
            reporter: "bench_reporter".into(),
            category: category.clone(),
            title: format!("Bench report {i}"),
            description: String::new(),
            lat: 51.40 + (i % 100) as f64 * 0.0025,
            lon: -0.30 + (i / 100) as f64 * 0.004,
            station_id: None,
            state: if i % 10 == 0 { "fixed" } else { "submitted" }.into(),
            duplicate_of: None,
            assignee: None,
            hidden: false,
            version: 1,
            created_at: now,
            updated_at: now,
            photos: Vec::new(),
        };
        let event = ReportEventRow {
            id: 0,
            report_id: report.id.clone(),
            author: Some("bench_reporter".into()),
            kind: "filed".into(),
            public: true,
            body: String::new(),
            changes: "{}".into(),
            created_at: now,
        };
        store.create_report(&report, &event, &[]).await?;
    }
    Ok(())
}

/// The web pages: server-rendered HTML latency under load (with 10,000 reports on the home
/// page's map), and what the home page weighs.
async fn web_bench(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    args: &BenchArgs,
) -> Result<()> {
    let home = format!("{base}/");
    let (p50, p99) = latency(client, &home, args.requests, args.clients).await?;
    println!(
        "GET / home page HTML with 10,000 reports ({name}, {} clients, through the edge cache): p50 {:.2} ms, p99 {:.2} ms",
        args.clients, p50, p99
    );
    // Every request another query string: the cache misses and each page is rendered afresh.
    let n = (args.requests / 10).max(args.clients);
    let (p50, p99) = latency_uncached(client, &home, n, args.clients).await?;
    println!(
        "GET / home page HTML with 10,000 reports ({name}, {} clients, rendered each time): p50 {:.2} ms, p99 {:.2} ms",
        args.clients, p50, p99
    );
    let station = format!("{base}/stations/marylebone_road?parameter=no2&range=week");
    let n = (args.requests / 10).max(args.clients);
    let (p50, p99) = latency(client, &station, n, args.clients).await?;
    println!(
        "GET a station page with its week chart ({name}, {} clients): p50 {:.2} ms, p99 {:.2} ms",
        args.clients, p50, p99
    );
    let html = client.get(&home).send().await?.text().await?;
    let mut total = html.len();
    for asset in ["app.css", "app.js", "favicon.svg"] {
        let url = format!("{base}{}", ecocityhub_web::assets::url(asset));
        total += client.get(&url).send().await?.bytes().await?.len();
    }
    println!(
        "home page weight ({name}): {:.1} KB in all ({:.1} KB HTML with its map), without tiles",
        total as f64 / 1024.0,
        html.len() as f64 / 1024.0
    );
    Ok(())
}

/// p50 and p99 (ms) of `n` GETs of `url` by `clients` concurrent clients.
async fn latency(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    clients: usize,
) -> Result<(f64, f64)> {
    let url = url.to_string();
    latency_of(client, n, clients, move |_| url.clone()).await
}

/// [`latency`] with another query string on every request, so no cache answers.
async fn latency_uncached(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    clients: usize,
) -> Result<(f64, f64)> {
    let url = url.to_string();
    latency_of(client, n, clients, move |i| format!("{url}?fresh={i}")).await
}

/// p50 and p99 (ms) of `n` GETs of `url_of(i)` by `clients` concurrent clients.
async fn latency_of(
    client: &reqwest::Client,
    n: usize,
    clients: usize,
    url_of: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<(f64, f64)> {
    // Warm up: connections and the server's caches.
    for i in 0..clients.min(8) {
        client
            .get(url_of(n + i))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
    let url_of = Arc::new(url_of);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url_of, next) = (client.clone(), url_of.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let url = url_of(i);
                let t = Instant::now();
                client
                    .get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                times.push(t.elapsed());
            }
            Ok::<_, reqwest::Error>(times)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Ok((pct(0.50), pct(0.99)))
}

/// Readings per second through `POST /api/v1/readings`: 100 batches of 5,000 readings from
/// 4 concurrent clients, each batch a different time range of one station.
async fn http_ingest(client: &reqwest::Client, base: &str, store: &dyn Store) -> Result<f64> {
    let station = StationId::parse("bench_http")?;
    store
        .upsert_station(&Station::new(
            station.clone(),
            "HTTP bench",
            GeoPoint::new(51.5, 0.0)?,
            None,
            "UTC",
        )?)
        .await?;
    let (key, record) =
        ecocityhub_api::device_auth::generate(&station, Some("bench".into()), Utc::now());
    store.insert_device_key(&record).await?;
    let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let bodies: Vec<String> = (0..100)
        .map(|b| {
            let rows: Vec<serde_json::Value> = (0..5000)
                .map(|i| {
                    let minute = b * 5000 + i;
                    serde_json::json!({
                        "parameter": "pm25",
                        "time": (t0 + chrono::Duration::minutes(minute)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "value": (minute % 500) as f64 / 10.0
                    })
                })
                .collect();
            serde_json::to_string(&rows).expect("serializable")
        })
        .collect();
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let url = format!("{base}/api/v1/readings");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, key, bodies) = (client.clone(), url.clone(), key.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut stored = 0u64;
            loop {
                let Some(body) = bodies.lock().expect("not poisoned").pop() else {
                    break;
                };
                let resp = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                let summary: serde_json::Value = resp.json().await?;
                stored += summary["accepted"].as_u64().unwrap_or(0);
            }
            Ok::<_, reqwest::Error>(stored)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??;
    }
    if stored != 500_000 {
        bail!("only {stored} of 500,000 readings were accepted");
    }
    Ok(stored as f64 / started.elapsed().as_secs_f64())
}

/// A migrated, empty store: SQLite in `dir`, or a new database on the PostgreSQL `server`.
async fn fresh_store(dir: &Path, server: Option<&str>) -> Result<Arc<dyn Store>> {
    let url = match server {
        None => ecocityhub_store::testing::sqlite_url(dir),
        Some(server) => fresh_postgres(server).await?,
    };
    open(&url).await
}

pub(crate) async fn store_insert(store: &dyn Store, n: usize) -> Result<f64> {
    let stations: Vec<Station> = (0..10)
        .map(|i| {
            Station::new(
                StationId::parse(&format!("b{i}")).unwrap(),
                format!("Bench {i}"),
                GeoPoint::new(50.0, 8.0).unwrap(),
                None,
                "UTC",
            )
            .unwrap()
        })
        .collect();
    for s in &stations {
        store.upsert_station(s).await?;
    }
    let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let readings: Vec<Reading> = (0..n)
        .map(|i| Reading {
            station: stations[i % 10].id.clone(),
            parameter: Parameter::ALL[(i / 10) % 8],
            time: t0 + chrono::Duration::hours((i / 80) as i64),
            value: (i % 997) as f64 / 10.0,
            flag: QualityFlag::Valid,
        })
        .collect();
    let started = Instant::now();
    for chunk in readings.chunks(50_000) {
        store.insert_readings(chunk).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn spawn_server(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<(tokio::process::Child, String, Duration)> {
    let exe = std::env::current_exe()?;
    // The benchmark's clients all come from loopback: the edge's per-address rate limits would
    // measure themselves (`--only edge` measures the edge on its own).
    let config = data_dir.join("bench.toml");
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(
        &config,
        "[edge.shield.rate_limits]\nexempt = [\"127.0.0.0/8\", \"::1/128\"]\n",
    )?;
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--no-demo", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    } else {
        cmd.env_remove("DATABASE_URL");
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.strip_prefix("listening on ") {
            // Ready means answering, not just listening.
            reqwest::get(format!("{addr}/healthz"))
                .await?
                .error_for_status()?;
            return Ok((child, addr.to_string(), started.elapsed()));
        }
    }
    bail!("the server exited before listening")
}
