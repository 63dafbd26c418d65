//! Rollups and alarms on a real database (SQLite and PostgreSQL): statistics survive
//! downsampling and several writers, alarms go to ALARM and back with one history row each
//! way, a restart in the middle neither drops nor fakes a state, and the sink is retried.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_observe::alarms::{builtin_alarms, AlarmEngine, AlarmEvent, AlarmSink, AlarmState};
use ecocityhub_observe::names::{self, Kind};
use ecocityhub_observe::recorder::{Drained, SeriesKey};
use ecocityhub_observe::rollups::{align, MetricQuery, RollupConfig, RollupWriter, Rollups, View};
use ecocityhub_observe::service::{Observer, ObserverOptions};
use ecocityhub_observe::stats::{StatSet, Statistic};
use ecocityhub_observe::{stations, Exposition, ObserveConfig, Telemetry};
use ecocityhub_store::observe::ObserveStore;
use ecocityhub_store::{SqlStore, Store};

#[derive(Default)]
struct Recorded {
    events: Mutex<Vec<AlarmEvent>>,
    refuse: Mutex<bool>,
}

#[async_trait]
impl AlarmSink for Recorded {
    async fn alarm_changed(&self, event: &AlarmEvent) -> Result<(), String> {
        if *self.refuse.lock().unwrap() {
            return Err("topic unreachable".into());
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

fn counter(name: &str, labels: &[(&str, &str)], n: u64) -> Drained {
    let mut stats = StatSet::default();
    for _ in 0..n {
        stats.record(1.0, 1);
    }
    Drained {
        key: SeriesKey::new(name, labels),
        kind: Kind::Counter,
        stats,
    }
}

/// A minute of traffic: `total` requests of which `errors` answered 5xx.
fn traffic(total: u64, errors: u64) -> Vec<Drained> {
    let route = ("route", "/api/v1/latest");
    let mut d = vec![counter(
        names::HTTP_REQUESTS.name,
        &[route, ("status_class", "2xx")],
        total - errors,
    )];
    if errors > 0 {
        d.push(counter(
            names::HTTP_REQUESTS.name,
            &[route, ("status_class", "5xx")],
            errors,
        ));
    }
    d
}

fn telemetry() -> Telemetry {
    Telemetry::build(Exposition::None).0
}

/// About three hours ago, on the hour.
fn t0() -> i64 {
    align(Utc::now().timestamp() - 3 * 3600, 3600)
}

fn at(ts: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(ts, 0).unwrap()
}

struct Setup {
    store: Arc<dyn ObserveStore>,
    sink: Arc<Recorded>,
}

impl Setup {
    fn new(store: SqlStore) -> Setup {
        Setup {
            store: Arc::new(store),
            sink: Arc::new(Recorded::default()),
        }
    }

    fn writer(&self) -> RollupWriter {
        RollupWriter::new(self.store.clone(), telemetry(), RollupConfig::default())
    }

    fn rollups(&self) -> Rollups {
        Rollups::new(self.store.clone(), RollupConfig::default())
    }

    async fn engine(&self) -> AlarmEngine {
        let e = AlarmEngine::new(self.store.clone(), self.rollups(), self.sink.clone());
        e.install(&[], Utc::now()).await.unwrap();
        e
    }

    async fn state(&self, engine: &AlarmEngine, name: &str) -> AlarmState {
        engine
            .alarms()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.definition.name == name)
            .unwrap()
            .state
    }
}

async fn the_5xx_alarm_survives_a_restart_without_flapping(store: SqlStore) {
    let s = Setup::new(store);
    let base = t0();
    let minute = |i: i64| base + 60 * i;
    let mut writer = s.writer();
    let engine = s.engine().await;
    assert_eq!(
        s.state(&engine, "http-5xx-rate").await,
        AlarmState::InsufficientData
    );
    for i in 0..5 {
        writer.write(minute(i), traffic(100, 10)).await.unwrap();
    }
    let changes = engine.evaluate(minute(5), at(minute(5))).await.unwrap();
    let names: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.name.as_str(), c.new_state.as_str()))
        .collect();
    // The 5xx rate breached; the other built-ins decided OK on "notBreaching" minutes.
    assert!(names.contains(&("http-5xx-rate", "ALARM")), "{names:?}");
    assert_eq!(engine.deliver(at(minute(5))).await.unwrap(), changes.len());
    let event = s
        .sink
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.alarm_name == "http-5xx-rate")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            event.old_state_value.as_str(),
            event.new_state_value.as_str()
        ),
        ("INSUFFICIENT_DATA", "ALARM")
    );
    assert!(
        event
            .new_state_reason
            .contains("5 out of the last 5 datapoints"),
        "{}",
        event.new_state_reason
    );
    assert_eq!(
        event.trigger.divided_by.as_deref(),
        Some(names::HTTP_REQUESTS.name)
    );

    // Restart: a new process (new writer, new engine), ten minutes down.
    drop((writer, engine));
    let mut writer = s.writer();
    let engine = s.engine().await;
    assert!(
        engine
            .evaluate(minute(15), at(minute(15)))
            .await
            .unwrap()
            .is_empty(),
        "no change on restart"
    );
    assert_eq!(s.state(&engine, "http-5xx-rate").await, AlarmState::Alarm);
    writer.write(minute(15), traffic(100, 10)).await.unwrap();
    for i in 16..=18 {
        writer.write(minute(i), traffic(100, 0)).await.unwrap();
    }
    // Last five observed minutes at each end: 3,4,15 breach until two healthy minutes pass them.
    let mut seen = Vec::new();
    for end in 16..=19 {
        for c in engine.evaluate(minute(end), at(minute(end))).await.unwrap() {
            if c.name == "http-5xx-rate" {
                seen.push((end, c.new_state));
            }
        }
    }
    assert_eq!(seen, [(19, "OK".to_string())]);
    let history = engine
        .history(Some("http-5xx-rate"), None, 10)
        .await
        .unwrap();
    let states: Vec<&str> = history.iter().rev().map(|h| h.new_state.as_str()).collect();
    assert_eq!(states, ["ALARM", "OK"], "one change each way, no flap");
}

async fn a_refused_notification_is_offered_again(store: SqlStore) {
    let s = Setup::new(store);
    let mut writer = s.writer();
    let engine = s.engine().await;
    for i in 0..5 {
        writer.write(t0() + 60 * i, traffic(50, 25)).await.unwrap();
    }
    *s.sink.refuse.lock().unwrap() = true;
    let changes = engine.evaluate(t0() + 300, Utc::now()).await.unwrap();
    assert!(!changes.is_empty());
    assert_eq!(engine.deliver(Utc::now()).await.unwrap(), 0);
    assert!(s.sink.events.lock().unwrap().is_empty());
    *s.sink.refuse.lock().unwrap() = false;
    assert_eq!(engine.deliver(Utc::now()).await.unwrap(), changes.len());
    assert_eq!(
        engine.deliver(Utc::now()).await.unwrap(),
        0,
        "delivered once"
    );
    // Re-evaluating the same minute changes nothing.
    assert!(engine
        .evaluate(t0() + 300, Utc::now())
        .await
        .unwrap()
        .is_empty());
}

async fn rollups_keep_statistics_across_writers_and_resolutions(store: SqlStore) {
    let s = Setup::new(store);
    let (mut a, mut b) = (s.writer(), s.writer());
    let mut all = StatSet::default();
    for m in 0..20 {
        for (writer, r, scale) in [(&mut a, "/a", 0.001), (&mut b, "/b", 0.01)] {
            let mut stats = StatSet::default();
            for i in 0..50 {
                let v = scale * (1 + (i * 7 + m) % 50) as f64;
                stats.record(v, 1);
                all.record(v, 1);
            }
            let labels = [("method", "GET"), ("route", r), ("status_class", "2xx")];
            let d = Drained {
                key: SeriesKey::new(names::HTTP_DURATION.name, &labels),
                kind: Kind::Histogram,
                stats,
            };
            writer.write(t0() + 60 * m, vec![d]).await.unwrap();
        }
    }
    let rollups = s.rollups();
    let q = MetricQuery::new(names::HTTP_DURATION.name);
    let now = Utc::now().timestamp();
    // One 20-minute period, from minute rows and from 10-minute rows.
    for step in [1200, 600] {
        let points = rollups
            .series(&q, Statistic::SampleCount, t0(), t0() + 1200, step, now)
            .await
            .unwrap();
        let total: f64 = points.iter().filter_map(|p| p.value).sum();
        assert_eq!(total, 2000.0, "step {step}");
    }
    let p = rollups
        .periods(&q, t0(), t0() + 1200, 1200, now)
        .await
        .unwrap();
    assert_eq!(p.len(), 1);
    assert!(p[0].observed);
    let (got, want) = (
        p[0].stats.quantile(0.99).unwrap(),
        all.quantile(0.99).unwrap(),
    );
    assert_eq!(got, want, "merging rows loses nothing");
    assert!((p[0].stats.sum - all.sum).abs() < 1e-9);
    assert_eq!(rollups.resolution_for(1200, t0(), now), 600);
    assert_eq!(rollups.resolution_for(60, t0(), now), 60);
    // Per route.
    let by = rollups
        .series_by(&q, "route", Statistic::Maximum, t0(), t0() + 600, 600, now)
        .await
        .unwrap();
    assert_eq!(
        by.keys().map(String::as_str).collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    assert!(by["/a"][0].value.unwrap() < by["/b"][0].value.unwrap());
    // Dimension filters.
    let only_b = q.clone().with("route", "/b");
    let points = rollups
        .series(&only_b, Statistic::SampleCount, t0(), t0() + 600, 600, now)
        .await
        .unwrap();
    assert_eq!(points[0].value, Some(500.0));
    // A dashboard view: a week by hour has 168 points, the hour of our data observed.
    let week = rollups
        .view(&q, Statistic::Percentile(99.0), View::Week, now)
        .await
        .unwrap();
    assert_eq!(week.len(), 168);
    assert!(week.iter().any(|p| p.value.is_some()));
    assert!(rollups
        .series_names(t0())
        .await
        .unwrap()
        .iter()
        .any(|(m, l)| m == names::HTTP_DURATION.name && l["route"] == "/a"));
    // Expiry two days on drops the minute rows but keeps the hours.
    a.expire(now + 3 * 86_400).await.unwrap();
    let minute = rollups
        .series(&q, Statistic::SampleCount, t0(), t0() + 600, 60, now)
        .await
        .unwrap();
    assert!(minute.iter().all(|p| p.value.is_none()));
    let hour = rollups
        .series(
            &q,
            Statistic::SampleCount,
            align(t0(), 3600),
            align(t0(), 3600) + 7200,
            3600,
            now,
        )
        .await
        .unwrap();
    assert_eq!(hour.iter().filter_map(|p| p.value).sum::<f64>(), 2000.0);
}

async fn a_ratio_with_no_errors_is_zero_and_without_traffic_is_missing(store: SqlStore) {
    let s = Setup::new(store);
    let mut writer = s.writer();
    let engine = s.engine().await;
    let def = builtin_alarms()
        .into_iter()
        .find(|a| a.name == "http-5xx-rate")
        .unwrap();
    writer.write(t0(), traffic(100, 0)).await.unwrap();
    writer.write(t0() + 60, Vec::new()).await.unwrap();
    let points = engine.datapoints(&def, t0() + 120).await.unwrap();
    assert_eq!(points, [(t0(), Some(0.0)), (t0() + 60, None)]);
}

async fn silent_stations_are_counted(store: SqlStore) {
    let now = Utc::now();
    let station = |id: &str, active: bool| {
        let mut s = Station::new(
            StationId::parse(id).unwrap(),
            id,
            GeoPoint::new(51.5, 0.0).unwrap(),
            None,
            "UTC",
        )
        .unwrap();
        s.active = active;
        s
    };
    for (id, active, age_hours) in [
        ("fresh", true, 1),
        ("silent", true, 3),
        ("retired", true, 24 * 40),
        ("off", false, 3),
    ] {
        store.upsert_station(&station(id, active)).await.unwrap();
        store
            .insert_readings(&[Reading {
                station: StationId::parse(id).unwrap(),
                parameter: Parameter::Pm25,
                time: now - Duration::hours(age_hours),
                value: 5.0,
                flag: QualityFlag::Valid,
            }])
            .await
            .unwrap();
    }
    let silent = stations::silent_stations(&store, now, 7200, 30 * 86_400)
        .await
        .unwrap();
    assert_eq!(silent, [StationId::parse("silent").unwrap()]);
}

async fn the_observer_runs_a_minute_and_signs_on_shutdown(store: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(store);
    let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
    // One global recorder for the test binary (both backends' runs share it).
    static INSTALLED: std::sync::OnceLock<Telemetry> = std::sync::OnceLock::new();
    let telemetry = INSTALLED
        .get_or_init(|| Telemetry::install(Exposition::Prometheus).unwrap())
        .clone();
    let config = ObserveConfig {
        metrics_bind: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let mut options = ObserverOptions::new(store.clone(), blobs.clone(), telemetry, config);
    options.backup_age = Some(Arc::new(|| Some(std::time::Duration::from_secs(30 * 3600))));
    let observer = Observer::start(options).await.unwrap();
    let addr = observer.metrics_addr().unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("ecocityhub_process_uptime_seconds"), "{text}");
    let event = ecocityhub_observe::audit::AuditEvent::new(
        "cli",
        "RotateKeys",
        ecocityhub_observe::audit::UserIdentity::cli(),
    );
    observer.audit().record(event).await.unwrap();
    observer.tick(Utc::now()).await;
    let alarms = observer.alarms().alarms().await.unwrap();
    assert_eq!(alarms.len(), 6);
    let store_o: Arc<dyn ObserveStore> = store.clone();
    let heartbeat = store_o
        .rollups(names::HEARTBEAT.name, 60, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(heartbeat.len(), 1);
    observer.shutdown().await.unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .is_err(),
        "the listener is closed"
    );
    let report = ecocityhub_observe::audit::verify(store_o.clone(), blobs, &Default::default())
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!((report.records_checked, report.uncovered_records), (1, 0));
    assert!(report.digests_checked >= 2, "one at start, one on shutdown");
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use ecocityhub_store::Store;
                    let dir = tempfile::tempdir().unwrap();
                    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path())).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use ecocityhub_store::Store;
                    let Some(url) = ecocityhub_store::testing::fresh_postgres_url().await else { return };
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    the_5xx_alarm_survives_a_restart_without_flapping,
    a_refused_notification_is_offered_again,
    rollups_keep_statistics_across_writers_and_resolutions,
    a_ratio_with_no_errors_is_zero_and_without_traffic_is_missing,
    silent_stations_are_counted,
    the_observer_runs_a_minute_and_signs_on_shutdown,
);
