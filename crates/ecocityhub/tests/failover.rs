//! The server rides through a PostgreSQL failover, as an RDS Multi-AZ client does.
//!
//! A primary and a standby (`.ci/postgres ha`), the server reaching them through a TCP forwarder
//! that plays the RDS endpoint, devices ingesting all along. The standby's replication link runs
//! through a second forwarder, frozen for the last second before the primary is killed with -9,
//! as a standby that lags. Then the standby is promoted and the endpoint re-pointed at it.
//!
//! With the synchronous standby, every reading acknowledged with 2xx is on the new primary
//! (RPO 0) and ingest resumes by itself; clients see only 2xx, 503 or connection errors. The
//! asynchronous control runs the same script and must lose acknowledged readings, so the test
//! is seen to detect a loss.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, Server};
use ecocityhub_testkit::forwarder::Forwarder;
use serde_json::{json, Value};

const DEVICES: i64 = 4;
const ROWS_PER_BATCH: i64 = 20;

/// A primary and a standby started by `.ci/postgres ha`, stopped when dropped.
struct Pair {
    dir: tempfile::TempDir,
    primary: u16,
    standby: u16,
    mode: &'static str,
    replication: Forwarder,
}

impl Pair {
    /// `None` (skipped outside CI) without PostgreSQL's server binaries.
    fn start(mode: &'static str) -> Option<Pair> {
        let found = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some());
        if !ecocityhub_testkit::require_that(
            found,
            "PostgreSQL's server binaries",
            "apt-get install postgresql (bash .ci/postgres start installs them)",
        ) {
            return None;
        }
        let (primary, standby) = (free_port(), free_port());
        let replication = Forwarder::start(local(primary)).unwrap();
        let pair = Pair {
            dir: tempfile::tempdir().unwrap(),
            primary,
            standby,
            mode,
            replication,
        };
        let out = pair.script(&["ha", "start"]);
        assert!(out.status.success(), "ha start: {}", common::stderr(&out));
        Some(pair)
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(ecocityhub_testkit::pg_ha_script())
            .args(args)
            .env("ECOCITYHUB_PG_HA_PORT", self.primary.to_string())
            .env("ECOCITYHUB_PG_HA_STANDBY_PORT", self.standby.to_string())
            .env("ECOCITYHUB_PG_HA_DIR", self.dir.path().join("pg"))
            .env("ECOCITYHUB_PG_HA_MODE", self.mode)
            .env(
                "ECOCITYHUB_PG_HA_UPSTREAM_PORT",
                self.replication.addr().port().to_string(),
            )
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) {
        let out = self.script(args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    }

    fn url(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.script(&["ha", "stop"]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What the devices saw.
#[derive(Default)]
struct Seen {
    /// Minutes of the readings acknowledged with 2xx.
    acknowledged: Vec<i64>,
    ok: u64,
    unavailable: u64,
    connection_errors: u64,
    /// Anything else: a failure of the test.
    unexpected: Vec<String>,
    /// When each acknowledged request was sent, and when its 2xx arrived.
    ok_at: Vec<(Instant, Instant)>,
}

/// One device: batches of new readings until `stop`.
async fn device(
    server: String,
    key: String,
    id: i64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut next = id * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        let minutes: Vec<i64> = (next..next + ROWS_PER_BATCH).collect();
        next += ROWS_PER_BATCH;
        let rows: Vec<Value> = minutes
            .iter()
            .map(
                |m| json!({"parameter": "pm10", "time": minute_time(*m), "value": (m % 89) as f64}),
            )
            .collect();
        let sent = Instant::now();
        let answer = client
            .post(format!("{server}/api/v1/readings"))
            .bearer_auth(&key)
            .json(&rows)
            .send()
            .await;
        let status = answer.map(|r| r.status().as_u16());
        let acknowledged = record(&seen, status, minutes, sent);
        if !acknowledged {
            // A device backs off a little before it tries again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Notes one answer; says whether it acknowledged the readings.
fn record(
    seen: &Mutex<Seen>,
    status: reqwest::Result<u16>,
    minutes: Vec<i64>,
    sent: Instant,
) -> bool {
    let mut seen = seen.lock().unwrap();
    match status {
        Ok(200) => {
            seen.ok += 1;
            seen.ok_at.push((sent, Instant::now()));
            seen.acknowledged.extend(minutes);
            return true;
        }
        Ok(503) => seen.unavailable += 1,
        Ok(other) => seen.unexpected.push(format!("status {other}")),
        Err(e) if e.is_connect() || e.is_request() => seen.connection_errors += 1,
        Err(e) => seen.unexpected.push(e.to_string()),
    }
    false
}

fn minute_time(minute: i64) -> String {
    let t = chrono::DateTime::from_timestamp(1_262_304_000 + minute * 60, 0).unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The result of one failover.
struct Failover {
    seen: Seen,
    lost: usize,
    /// From the primary's death to the first 2xx of a request sent after it (RTO).
    recovery: Option<Duration>,
    promoted_ms: String,
}

async fn failover(mode: &'static str) -> Option<Failover> {
    let pair = Pair::start(mode)?;
    let endpoint = Forwarder::start(local(pair.primary)).unwrap();
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        database_url: Some(Pair::url(endpoint.addr().port())),
    };
    let key = env.station_with_key();
    // Four devices on one address would meet the edge's per-address rate limit.
    let config = env.file(
        "ecocityhub.toml",
        "[edge.shield.rate_limits]\nexempt = [\"127.0.0.0/8\"]\n",
    );
    let server = Server::start(&env, &["--no-demo", "--config", config.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let devices: Vec<_> = (0..DEVICES)
        .map(|id| {
            tokio::spawn(device(
                server.base.clone(),
                key.clone(),
                id,
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    // The standby falls behind, then the primary dies.
    pair.replication.freeze(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pair.run(&["ha", "kill-primary"]);
    let killed = Instant::now();
    pair.replication.point_to(local(free_port()));
    let promote = pair.script(&["ha", "promote"]);
    assert!(promote.status.success(), "{}", common::stderr(&promote));
    endpoint.point_to(local(pair.standby));
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for d in devices {
        d.await.unwrap();
    }
    server.kill_9();

    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    let recovery = seen
        .ok_at
        .iter()
        .filter(|(sent, _)| *sent > killed)
        .map(|(_, done)| *done - killed)
        .min();
    let lost = missing_on(&Pair::url(pair.standby), &seen.acknowledged).await;
    Some(Failover {
        seen,
        lost,
        recovery,
        promoted_ms: common::stdout(&promote).trim().to_string(),
    })
}

/// How many of the acknowledged readings the database at `url` lacks.
async fn missing_on(url: &str, acknowledged: &[i64]) -> usize {
    use ecocityhub_store::Store;
    let store = ecocityhub_store::connect(url).await.unwrap();
    let station = ecocityhub_domain::StationId::parse("st1").unwrap();
    let stored: HashSet<i64> = store
        .readings(
            &station,
            ecocityhub_domain::Parameter::Pm10,
            1_262_304_000,
            i64::MAX,
            u32::MAX,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.ts - 1_262_304_000) / 60)
        .collect();
    acknowledged.iter().filter(|m| !stored.contains(m)).count()
}

fn report(mode: &str, f: &Failover) {
    eprintln!(
        "{mode}: {} readings acknowledged, {} lost; answers: {} ok, {} 503, {} connection errors; \
         death to first 2xx {:?}; {}",
        f.seen.acknowledged.len(),
        f.lost,
        f.seen.ok,
        f.seen.unavailable,
        f.seen.connection_errors,
        f.recovery,
        f.promoted_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_standby_loses_no_acknowledged_reading_through_a_failover() {
    let Some(f) = failover("sync").await else {
        return;
    };
    report("sync", &f);
    assert!(f.seen.unexpected.is_empty(), "{:?}", f.seen.unexpected);
    assert!(
        f.seen.acknowledged.len() > 100,
        "the devices got readings in"
    );
    assert_eq!(f.lost, 0, "RPO 0: no acknowledged reading is lost");
    assert!(
        f.recovery.is_some(),
        "ingest resumed by itself after the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asynchronous_control_is_seen_to_lose_acknowledged_readings() {
    let Some(f) = failover("async").await else {
        return;
    };
    report("async", &f);
    assert!(f.seen.unexpected.is_empty(), "{:?}", f.seen.unexpected);
    assert!(
        f.lost > 0,
        "without a synchronous standby the readings acknowledged while it lagged are lost, \
         and the test must see that"
    );
}
