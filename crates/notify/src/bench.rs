//! Benchmark functions for `ecocityhub bench --only notify`: they print nothing and return
//! numbers. Each takes a fresh, migrated store and runs the real notifier, worker and rule engine
//! against a webhook receiver on loopback that this module starts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, TimeZone, Utc};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::identity::User;
use ecocityhub_store::notify::{AlertRuleRow, SubscriptionRow};
use ecocityhub_store::Store;
use tokio::sync::mpsc;

use crate::message::{Message, Protocol, Topic};
use crate::notifier::{NotifyConfig, Publisher};
use crate::rules::{Measure, RuleSpec, Target, Trigger};
use crate::{ids, signing, RuleEngine};

/// What went wrong in a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setup: {0}")]
    Setup(#[from] crate::SetupError),
    #[error("notify: {0}")]
    Notify(#[from] crate::NotifyError),
    #[error("store: {0}")]
    Store(#[from] ecocityhub_store::StoreError),
    #[error("receiver: {0}")]
    Io(#[from] std::io::Error),
    #[error("only {got} of {want} deliveries arrived within {timeout:?}")]
    Timeout {
        got: usize,
        want: usize,
        timeout: Duration,
    },
}

/// A webhook receiver on loopback that counts what arrives and reports each arrival's time.
struct Receiver {
    count: Arc<AtomicUsize>,
    arrivals: mpsc::UnboundedReceiver<(String, Instant)>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    count: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<(String, Instant)>,
}

async fn hook(State(s): State<ReceiverState>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.count.fetch_add(1, Ordering::Relaxed);
    let _ = s.tx.send((id, Instant::now()));
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> std::io::Result<Receiver> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, arrivals) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook/{n}", post(hook))
        .with_state(ReceiverState {
            count: count.clone(),
            tx,
        });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Receiver {
        count,
        arrivals,
        url: format!("http://{addr}/hook"),
        task,
    })
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bench_config() -> NotifyConfig {
    let mut config = NotifyConfig::default();
    config.webhooks.allow_loopback = true;
    config
}

fn webhook_subscription(topic: &Topic, url: String) -> SubscriptionRow {
    let now = Utc::now();
    SubscriptionRow {
        id: ids::new_id("sub_"),
        topic_id: topic.id.clone(),
        owner: None,
        protocol: Protocol::Webhook.as_str().into(),
        endpoint: url,
        status: "confirmed".into(),
        confirm_token_hash: None,
        confirm_expires_at: None,
        filter_policy: None,
        secret: Some(signing::new_secret()),
        previous_secret: None,
        previous_secret_until: None,
        endpoint_keys: None,
        created_at: now,
        confirmed_at: Some(now),
    }
}

/// One alert fanned out to many webhook subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanoutResult {
    pub subscribers: usize,
    /// Writing the message and its deliveries (the publish call).
    pub publish: Duration,
    /// From the publish call until the receiver had every delivery.
    pub all_delivered: Duration,
    pub deliveries_per_second: f64,
}

/// Publishes one alert to `subscribers` webhook subscriptions on loopback and waits until all
/// arrive (target: 10,000 within 10 s).
pub async fn fanout(store: Arc<dyn Store>, subscribers: usize) -> Result<FanoutResult, BenchError> {
    let receiver = start_receiver().await?;
    let (notifier, worker) = crate::open(store.clone(), &bench_config()).await?;
    let topic = Topic::station("bench_fanout");
    notifier.create_topic(&topic).await?;
    let subs: Vec<SubscriptionRow> = (0..subscribers)
        .map(|i| webhook_subscription(&topic, format!("{}/{i}", receiver.url)))
        .collect();
    store.insert_subscriptions(&subs).await?;
    let handle = worker.spawn();
    let message = Message::new(
        &topic,
        "alert.opened",
        "Benchmark alert",
        "PM2.5 is unhealthy",
    )
    .attribute("aqi", 160);
    let start = Instant::now();
    notifier.publish(&topic, &message).await?;
    let publish = start.elapsed();
    let timeout = Duration::from_secs(120);
    while receiver.count.load(Ordering::Relaxed) < subscribers {
        if start.elapsed() > timeout {
            handle.shutdown().await;
            return Err(BenchError::Timeout {
                got: receiver.count.load(Ordering::Relaxed),
                want: subscribers,
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all_delivered = start.elapsed();
    handle.shutdown().await;
    Ok(FanoutResult {
        subscribers,
        publish,
        all_delivered,
        deliveries_per_second: subscribers as f64 / all_delivered.as_secs_f64(),
    })
}

/// Latency from publishing to the webhook's arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyResult {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Publishes `samples` messages one after another to one webhook subscriber with the default
/// worker settings and measures each from the publish call to its arrival (target p99 ≤ 1 s).
pub async fn latency(store: Arc<dyn Store>, samples: usize) -> Result<LatencyResult, BenchError> {
    let mut receiver = start_receiver().await?;
    let (notifier, worker) = crate::open(store.clone(), &bench_config()).await?;
    let topic = Topic::station("bench_latency");
    notifier.create_topic(&topic).await?;
    store
        .insert_subscription(&webhook_subscription(&topic, format!("{}/0", receiver.url)))
        .await?;
    let handle = worker.spawn();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let message = Message::new(
            &topic,
            "alert.opened",
            "Latency probe",
            &format!("probe {i}"),
        );
        let start = Instant::now();
        notifier.publish(&topic, &message).await?;
        loop {
            let arrival = tokio::time::timeout(Duration::from_secs(30), receiver.arrivals.recv())
                .await
                .ok()
                .flatten();
            match arrival {
                Some((id, at)) if id == message.id => {
                    times.push(at - start);
                    break;
                }
                Some(_) => continue,
                None => {
                    handle.shutdown().await;
                    return Err(BenchError::Timeout {
                        got: i,
                        want: samples,
                        timeout: Duration::from_secs(30),
                    });
                }
            }
        }
    }
    handle.shutdown().await;
    times.sort();
    Ok(LatencyResult {
        samples,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: *times.last().unwrap_or(&Duration::ZERO),
    })
}

/// Ingest with and without active rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleCostResult {
    pub rules: usize,
    pub batches: usize,
    pub batch_size: usize,
    /// Readings per second, storing and evaluating, with no rule.
    pub throughput_without: f64,
    /// The same with `rules` active rules.
    pub throughput_with: f64,
    /// Mean time the engine spent per batch with the rules.
    pub evaluation_per_batch: Duration,
    /// `1 - with / without`: the share of throughput the rules cost (target ≤ 0.10); noisy on a
    /// shared machine, since the two runs' store times differ by chance.
    pub slowdown: f64,
    /// The engine's share of the time with rules (evaluation / (store + evaluation)): the same
    /// cost, free of the store's noise.
    pub evaluation_share: f64,
}

fn bench_station(i: usize) -> Station {
    let lat = 51.40 + (i % 10) as f64 * 0.02;
    let lon = -0.30 + (i / 10) as f64 * 0.02;
    Station::new(
        StationId::parse(&format!("bench_{i:03}")).expect("valid id"),
        format!("Bench {i}"),
        GeoPoint::new(lat, lon).expect("valid"),
        None,
        "Europe/London",
    )
    .expect("valid station")
}

/// One device-sized batch: an hour of minute readings of PM2.5 and NO2 at one station.
fn batch(station: &Station, hour: i64, size: usize, t0: DateTime<Utc>) -> Vec<Reading> {
    (0..size)
        .map(|i| Reading {
            station: station.id.clone(),
            parameter: if i % 2 == 0 {
                Parameter::Pm25
            } else {
                Parameter::No2
            },
            time: t0 + chrono::Duration::seconds(hour * 3600 + (i as i64 * 3600 / size as i64)),
            value: 20.0 + ((hour + i as i64) % 40) as f64,
            flag: QualityFlag::Valid,
        })
        .collect()
}

/// Times of storing and evaluating batches, alternating between two engines (so that drift in
/// the machine's or the database's speed falls on both alike): `(total, evaluation)` of each.
async fn ingest_alternating(
    store: &Arc<dyn Store>,
    engines: [&RuleEngine; 2],
    stations: &[Station],
    batches: usize,
    batch_size: usize,
    hour0: i64,
) -> Result<[(Duration, Duration); 2], BenchError> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let mut times = [(Duration::ZERO, Duration::ZERO); 2];
    for b in 0..batches * 2 {
        let station = &stations[b % stations.len()];
        let readings = batch(station, hour0 + (b / stations.len()) as i64, batch_size, t0);
        let which = b % 2;
        let start = Instant::now();
        store.insert_readings(&readings).await?;
        let eval = Instant::now();
        engines[which].on_readings(&readings).await?;
        times[which].1 += eval.elapsed();
        times[which].0 += start.elapsed();
    }
    Ok(times)
}

/// Ingest throughput (store + rule evaluation) with `rules` active rules compared with none,
/// over `batches` batches of `batch_size` readings each way, spread over 100 stations and
/// alternating between the two; half the rules watch a station, half an area of 3 km.
pub async fn rule_cost(
    store: Arc<dyn Store>,
    rules: usize,
    batches: usize,
    batch_size: usize,
) -> Result<RuleCostResult, BenchError> {
    let stations: Vec<Station> = (0..100).map(bench_station).collect();
    for s in &stations {
        store.upsert_station(s).await?;
    }
    let (notifier, _worker) = crate::open(store.clone(), &bench_config()).await?;
    // An engine loaded before any rule exists: it evaluates nothing.
    let none = RuleEngine::load(store.clone(), notifier.clone(), Default::default()).await?;

    store
        .insert_user(&User {
            id: "bench_user".into(),
            email: "bench@example.org".into(),
            password_hash: "-".into(),
            roles: Vec::new(),
            confirmed: true,
            created_at: Utc::now(),
        })
        .await?;
    let now = Utc::now();
    for i in 0..rules {
        let station = &stations[i % stations.len()];
        let target = if i % 2 == 0 {
            Target::Station(station.id.as_str().to_string())
        } else {
            Target::Area {
                lat: station.location.lat,
                lon: station.location.lon,
                radius_km: 3.0,
            }
        };
        let spec = RuleSpec {
            target,
            measure: if i % 3 == 0 {
                Measure::Pollutant(Parameter::Pm25)
            } else {
                Measure::Aqi
            },
            threshold: ecocityhub_domain::aqi::us_epa::Category::Unhealthy,
            trigger: Trigger::default(),
            timezone: "Europe/London".into(),
            quiet_hours: None,
            digest_at: None,
            label: None,
        };
        store
            .insert_rule(&AlertRuleRow {
                id: format!("bench_rule_{i}"),
                user_id: "bench_user".into(),
                spec: serde_json::to_string(&spec).expect("plain struct"),
                channels: Vec::new(),
                paused: false,
                state: "{}".into(),
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    let engine = RuleEngine::load(store.clone(), notifier.clone(), Default::default()).await?;
    // Warm up the store's series cache and the engine's windows, then measure.
    ingest_alternating(
        &store,
        [&none, &engine],
        &stations,
        stations.len(),
        batch_size,
        0,
    )
    .await?;
    let [(without, _), (with, evaluation)] =
        ingest_alternating(&store, [&none, &engine], &stations, batches, batch_size, 24).await?;
    let readings = (batches * batch_size) as f64;
    let throughput_without = readings / without.as_secs_f64();
    let throughput_with = readings / with.as_secs_f64();
    Ok(RuleCostResult {
        rules,
        batches,
        batch_size,
        throughput_without,
        throughput_with,
        evaluation_per_batch: evaluation / batches.max(1) as u32,
        slowdown: 1.0 - throughput_with / throughput_without,
        evaluation_share: evaluation.as_secs_f64() / with.as_secs_f64(),
    })
}
