//! `ecocityhub bench --only notify`, end to end: the latency from a device's reading being
//! answered 2xx by the real API to the alert's webhook arriving at a receiver on loopback,
//! with the notifier, the rule engine and the delivery worker as `serve` runs them (default
//! worker settings). The rule fires on the first reading over its threshold (hold 0) and clears
//! on the next one below it, so every probe opens one episode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use ecocityhub_domain::{GeoPoint, Station, StationId};
use ecocityhub_notify::rules::{Measure, RuleSpec, Target, Trigger};
use ecocityhub_store::identity::User;
use ecocityhub_store::notify::{AlertRuleRow, SubscriptionRow};
use ecocityhub_store::Store;
use tokio::sync::mpsc;

/// Reading's 2xx → webhook arrival.
#[derive(Debug, Clone, Copy)]
pub struct IngestLatency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

async fn receiver() -> Result<(String, mpsc::UnboundedReceiver<Instant>)> {
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(tx): State<mpsc::UnboundedSender<Instant>>| async move {
                    let _ = tx.send(Instant::now());
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

/// A station, its device key, a citizen with a confirmed webhook channel and a rule on the
/// station's PM2.5 that fires at once; returns the device key.
async fn set_up(store: &Arc<dyn Store>, hook: &str) -> Result<String> {
    let id = StationId::parse("bench_alerts")?;
    let station = Station::new(
        id.clone(),
        "Bench alerts",
        GeoPoint::new(51.5, -0.1)?,
        None,
        "UTC",
    )?;
    store.upsert_station(&station).await?;
    let (key, record) = ecocityhub_api::device_auth::generate(&id, None, Utc::now());
    store.insert_device_key(&record).await?;
    let now = Utc::now();
    store
        .insert_user(&User {
            id: "bench_citizen".into(),
            email: "bench-citizen@example.org".into(),
            password_hash: "-".into(),
            roles: Vec::new(),
            confirmed: true,
            created_at: now,
        })
        .await?;
    let topic = ecocityhub_notify::Topic::station("bench_alerts");
    store.ensure_topic(&topic.to_row(now)).await?;
    store
        .insert_subscription(&SubscriptionRow {
            id: "sub_bench_hook".into(),
            topic_id: topic.id.clone(),
            owner: Some("bench_citizen".into()),
            protocol: "webhook".into(),
            endpoint: hook.into(),
            status: "confirmed".into(),
            confirm_token_hash: None,
            confirm_expires_at: None,
            filter_policy: None,
            secret: Some(ecocityhub_notify::signing::new_secret()),
            previous_secret: None,
            previous_secret_until: None,
            endpoint_keys: None,
            created_at: now,
            confirmed_at: Some(now),
        })
        .await?;
    let spec = RuleSpec {
        target: Target::Station("bench_alerts".into()),
        measure: Measure::Pollutant(ecocityhub_domain::Parameter::Pm25),
        threshold: ecocityhub_domain::aqi::us_epa::Category::Unhealthy,
        trigger: Trigger::Measured {
            hold_minutes: 0,
            clear_minutes: 0,
            notify_clear: false,
            cooldown_minutes: 0,
        },
        timezone: "UTC".into(),
        quiet_hours: None,
        digest_at: None,
        label: None,
    };
    store
        .insert_rule(&AlertRuleRow {
            id: "bench_rule".into(),
            user_id: "bench_citizen".into(),
            spec: serde_json::to_string(&spec)?,
            channels: vec!["sub_bench_hook".into()],
            paused: false,
            state: "{}".into(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok(key)
}

/// Serves the API with the notification layer on loopback; returns its address and the
/// delivery worker.
async fn serve_api(
    store: Arc<dyn Store>,
) -> Result<(std::net::SocketAddr, ecocityhub_notify::WorkerHandle)> {
    let mut config = ecocityhub_notify::NotifyConfig::default();
    config.webhooks.allow_loopback = true;
    let (notifier, worker) = ecocityhub_notify::open(store.clone(), &config).await?;
    let worker = worker.spawn();
    let rules =
        ecocityhub_notify::RuleEngine::load(store.clone(), notifier.clone(), Default::default())
            .await?;
    let services = ecocityhub_api::Services {
        notifier: Some(notifier),
        rules: Some(Arc::new(rules)),
        ..Default::default()
    };
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let state =
        ecocityhub_api::AppState::open_with(store, blobs, Default::default(), services).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = ecocityhub_api::router(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, worker))
}

/// Posts one PM2.5 reading as the device; fails unless it is answered 2xx.
async fn post_reading(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    hour: i64,
    value: f64,
) -> Result<()> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("t0")?;
    let time = t0 + chrono::Duration::hours(hour);
    let body =
        serde_json::json!([{"parameter": "pm25", "time": time.to_rfc3339(), "value": value}]);
    let resp = client.post(url).bearer_auth(key).json(&body).send().await?;
    if !resp.status().is_success() {
        bail!("ingest answered {}: {}", resp.status(), resp.text().await?);
    }
    Ok(())
}

/// `samples` probes: an hourly reading over the threshold (timed from its 2xx to the
/// webhook's arrival), then two below it that clear the episode. (PM2.5's NowCast wants two
/// of the last three hours, hence hourly readings and a first one below the threshold.)
pub async fn ingest_to_webhook(store: Arc<dyn Store>, samples: usize) -> Result<IngestLatency> {
    let (hook, mut arrivals) = receiver().await?;
    let key = set_up(&store, &hook).await?;
    let (addr, worker) = serve_api(store).await?;
    let url = format!("http://{addr}/api/v1/readings");
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(samples);
    post_reading(&client, &url, &key, 0, 5.0).await?;
    for i in 0..samples as i64 {
        post_reading(&client, &url, &key, 1 + i * 3, 250.0).await?;
        let answered = Instant::now();
        let arrived = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| format!("probe {i}: no webhook within 30 s"))?;
        times.push(arrived.saturating_duration_since(answered));
        // Two clean hours bring the NowCast back below the threshold: the episode clears.
        post_reading(&client, &url, &key, 2 + i * 3, 5.0).await?;
        post_reading(&client, &url, &key, 3 + i * 3, 5.0).await?;
    }
    worker.shutdown().await;
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(IngestLatency {
        samples,
        p50: at(0.5),
        p99: at(0.99),
        max: *times.last().unwrap_or(&Duration::ZERO),
    })
}
