//! Backups through the binary, on SQLite and on PostgreSQL: `backup create` while devices
//! ingest through a running server, `restore` into a fresh data directory or database holds
//! every reading acknowledged before the backup began, `verify` passes, a flipped byte and a
//! truncated data blob are refused with the reason, a non-empty target is refused without
//! `--force`; `serve` takes backups on its schedule; bad input is refused.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{stderr, stdout, Env, Server};
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_store::Store;
use serde_json::{json, Value};

/// Readings per ingest batch.
const BATCH: i64 = 20;
/// 2024-03-01T00:00:00Z: readings are one a minute from here.
const BASE_TS: i64 = 1_709_251_200;

/// Devices posting batches of readings until stopped; the batches answered 2xx, in order.
struct Ingest {
    acked: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Ingest {
    fn start(server: &Server, key: &str) -> Ingest {
        let (acked, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (url, key) = (server.url("/api/v1/readings"), key.to_string());
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Bounded: at most 3,000 batches, whatever happens.
            for batch in 0..3_000i64 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let rows: Vec<Value> = (0..BATCH)
                    .map(|i| {
                        let ts = BASE_TS + (batch * BATCH + i) * 60;
                        let time = chrono::DateTime::from_timestamp(ts, 0).unwrap();
                        json!({"parameter": "pm10", "time": time.to_rfc3339(), "value": i})
                    })
                    .collect();
                let sent = client.post(&url).bearer_auth(&key).json(&rows).send().await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    a.lock().unwrap().push(batch);
                }
            }
        });
        Ingest { acked, stop, task }
    }

    fn acked(&self) -> Vec<i64> {
        self.acked.lock().unwrap().clone()
    }

    async fn wait_for(&self, batches: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked().len() < batches {
            assert!(Instant::now() < deadline, "ingest stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        let acked = self.acked.clone();
        self.task.await.unwrap();
        let all = acked.lock().unwrap().clone();
        all
    }
}

/// Runs the binary in `env` without blocking the runtime (the ingest runs meanwhile).
async fn run(env: &Env, args: &[&str]) -> std::process::Output {
    tokio::process::Command::from(env.cmd(args))
        .output()
        .await
        .unwrap()
}

/// The configuration of a fresh place to restore into: the blob store's master key file of
/// `from` (a restore on a new machine needs the key kept apart from the data).
fn restore_config(target: &Env, from: &Env) -> PathBuf {
    target.file(
        "restore.toml",
        &format!(
            "[blobs.keys]\nkey_file = \"{}\"\n[backup]\nevery = \"off\"\n",
            from.data_dir().join("master-keys.json").display()
        ),
    )
}

fn blobs_dir(env: &Env) -> PathBuf {
    env.data_dir().join("blobs")
}

/// The minutes (since `BASE_TS`) of the st1 pm10 readings in `env`'s store.
async fn stored_minutes(env: &Env) -> std::collections::HashSet<i64> {
    let store = env.store().await;
    let station = StationId::parse("st1").unwrap();
    store
        .readings(
            &station,
            Parameter::Pm10,
            BASE_TS,
            BASE_TS + 10_000_000,
            1_000_000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.ts - BASE_TS) / 60)
        .collect()
}

async fn backups_while_ingesting_restore_every_acknowledged_reading(env: Env, target: Env) {
    let key = env.station_with_key();
    let config = env.file("ecocityhub.toml", "[backup]\nevery = \"off\"\n");
    let server = Server::start(&env, &["--no-demo", "--config", config.to_str().unwrap()]);
    let ingest = Ingest::start(&server, &key);
    ingest.wait_for(20).await;

    let before = ingest.acked();
    let created = run(&env, &["backup", "create"]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let during = ingest.acked().len() - before.len();
    ingest.wait_for(ingest.acked().len() + 5).await;
    let all = ingest.stop().await;
    drop(server);
    let id = stdout(&created).lines().last().unwrap().trim().to_string();
    eprintln!(
        "backup {id}: {} batches acknowledged before it began, {during} while it ran, {} in all",
        before.len(),
        all.len()
    );
    assert!(during > 0, "ingest went on while the backup was taken");

    let verified = run(&env, &["backup", "verify", &id]).await;
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("verified"),
        "{}",
        stdout(&verified)
    );
    let listed = run(&env, &["backup", "list", "--json"]).await;
    let manifests: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(manifests[0]["id"], json!(id));
    assert!(manifests[0]["tables"]["readings"].as_i64().unwrap() > before.len() as i64 * BATCH);

    let refused = run(&env, &["backup", "restore", &id]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not empty"),
        "{}",
        stderr(&refused)
    );

    let restore_config = restore_config(&target, &env);
    let blobs = blobs_dir(&env);
    let restore = [
        "backup",
        "--blobs-dir",
        blobs.to_str().unwrap(),
        "restore",
        &id,
    ];
    let mut with_config = vec!["--config", restore_config.to_str().unwrap()];
    with_config.extend(restore);
    let restored = run(&target, &with_config).await;
    assert!(restored.status.success(), "{}", stderr(&restored));
    let minutes = stored_minutes(&target).await;
    let missing: Vec<i64> = before
        .iter()
        .flat_map(|b| b * BATCH..(b + 1) * BATCH)
        .filter(|m| !minutes.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} readings acknowledged before the backup are missing from the restore",
        missing.len()
    );
    // The restored data directory serves.
    let server = Server::start(
        &target,
        &["--no-demo", "--config", restore_config.to_str().unwrap()],
    );
    let latest = server.get_json("/api/v1/latest?station=st1").await;
    assert!(!latest.to_string().is_empty());
    drop(server);
    damaged_backups_are_refused(&env, &id).await;
}

/// A flipped byte and a truncated data blob, on disk and as stored content, are refused by
/// `verify` and `restore` with the reason; the good blob verifies again.
async fn damaged_backups_are_refused(env: &Env, id: &str) {
    let path = blobs_dir(env).join(format!("backups/{id}/data"));
    let good = std::fs::read(&path).unwrap();
    let refused = |out: &std::process::Output, reason: &str| {
        assert!(!out.status.success(), "accepted a damaged backup");
        assert!(stderr(out).contains(reason), "{}", stderr(out));
    };
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&path, &flipped).unwrap();
    refused(
        &run(env, &["backup", "verify", id]).await,
        "is damaged and was refused",
    );
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    refused(
        &run(env, &["backup", "verify", id]).await,
        "is damaged and was refused",
    );
    std::fs::write(&path, &good).unwrap();

    // Content stored through the blob store (so it decrypts) but cut short.
    let blobs = open_blobs(env).await;
    let key = format!("backups/{id}/data");
    let content = blobs.get(&key).await.unwrap().unwrap();
    blobs
        .put(&key, content.slice(..content.len() - 1))
        .await
        .unwrap();
    let out = run(env, &["backup", "verify", id]).await;
    refused(&out, "the data is truncated");
    let fresh = tempfile::tempdir().unwrap();
    let elsewhere = format!("sqlite://{}", fresh.path().join("x.db").display());
    // The data is checked before anything else, whatever the target.
    let to_fresh = ["backup", "--database-url", &elsewhere, "restore", id];
    refused(&run(env, &to_fresh).await, "the data is truncated");
    assert!(!fresh.path().join("x.db").exists());
    let mut flipped = content.to_vec();
    flipped[content.len() / 3] ^= 0x80;
    blobs.put(&key, flipped.into()).await.unwrap();
    refused(&run(env, &["backup", "verify", id]).await, "SHA-256");
    blobs.put(&key, content).await.unwrap();
    let out = run(env, &["backup", "verify", id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The blob store as `serve` opens it for `env` (encrypted under its key file).
async fn open_blobs(env: &Env) -> std::sync::Arc<dyn ecocityhub_blobs::BlobStore> {
    let config = ecocityhub_blobs::BlobsConfig {
        dir: Some(blobs_dir(env)),
        ..Default::default()
    };
    ecocityhub_blobs::open(&config, &env.data_dir())
        .await
        .unwrap()
        .store()
}

#[tokio::test]
async fn sqlite_backups_while_ingesting_restore_every_acknowledged_reading() {
    backups_while_ingesting_restore_every_acknowledged_reading(
        Env::sqlite().await,
        Env::sqlite().await,
    )
    .await;
}

#[tokio::test]
async fn postgres_backups_while_ingesting_restore_every_acknowledged_reading() {
    let Some(env) = Env::postgres().await else {
        return;
    };
    let target = Env::postgres().await.unwrap();
    backups_while_ingesting_restore_every_acknowledged_reading(env, target).await;
}

#[tokio::test]
async fn serve_takes_backups_on_its_schedule() {
    let env = Env::sqlite().await;
    let config = env.file(
        "ecocityhub.toml",
        "[backup]\nevery = \"2s\"\nretention_days = 1\n",
    );
    let server = Server::start(&env, &["--no-demo", "--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let manifests = loop {
        let out = run(
            &env,
            &[
                "--config",
                config.to_str().unwrap(),
                "backup",
                "list",
                "--json",
            ],
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let manifests: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if manifests.len() >= 2 {
            break manifests;
        }
        assert!(
            Instant::now() < deadline,
            "{} scheduled backups in 60 s",
            manifests.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    drop(server);
    let first =
        chrono::DateTime::parse_from_rfc3339(manifests[0]["created_at"].as_str().unwrap()).unwrap();
    let second =
        chrono::DateTime::parse_from_rfc3339(manifests[1]["created_at"].as_str().unwrap()).unwrap();
    assert!(
        second - first >= chrono::Duration::milliseconds(1_900),
        "{first} {second}"
    );
    assert_eq!(manifests[0]["kind"], "sqlite-snapshot");
}

#[tokio::test]
async fn backup_commands_have_help_and_refuse_bad_input() {
    let env = Env::sqlite().await;
    for args in [
        vec!["backup", "--help"],
        vec!["backup", "create", "--help"],
        vec!["backup", "list", "--help"],
        vec!["backup", "verify", "--help"],
        vec!["backup", "restore", "--help"],
        vec!["backup", "prune", "--help"],
    ] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let refused = |args: &[&str], reason: &str| {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(reason), "{args:?}: {}", stderr(&out));
    };
    refused(&["backup", "verify", "yesterday"], "is not a backup id");
    refused(&["backup", "restore", "../../etc"], "is not a backup id");
    refused(&["backup", "create"], "no such database file");
    assert!(env.run(&["migrate"]).status.success());
    refused(
        &["backup", "verify", "20260105T031500Z-3fa9c1"],
        "there is no backup",
    );
    refused(&["backup", "prune", "--retention-days", "36"], "1 to 35");
    let bad = env.file("bad.toml", "[backup]\nevery = \"sometimes\"\n");
    refused(
        &["--config", bad.to_str().unwrap(), "backup", "list"],
        "not a duration",
    );
    let out = env.run(&["backup", "create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).lines().last().unwrap().to_string();
    let pruned = env.run(&["backup", "prune", "--dry-run", "--json"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let pruned: Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(pruned["kept"][0], json!([id, "recent"]));
    let listed = env.run(&["backup", "list"]);
    assert!(stdout(&listed).contains(&id), "{}", stdout(&listed));
}

/// `wal-fetch` as PostgreSQL's `restore_command`: exit 1 only for a file the archive does not
/// have (recovery ends there), another status for a failure (recovery stops instead of
/// promoting with data missing), and nothing written when it fails.
#[tokio::test]
async fn wal_fetch_tells_a_missing_file_from_a_broken_archive() {
    let env = Env::sqlite().await;
    assert!(env.run(&["migrate"]).status.success());
    let segment = "000000010000000000000003";
    let content = "not really WAL, but archived all the same";
    let wal = env.file("wal-segment", content);
    let out = env.run(&["backup", "wal-push", wal.to_str().unwrap(), segment]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = env.data_dir().join("fetched");
    let fetch = |name: &str| env.run(&["backup", "wal-fetch", name, dest.to_str().unwrap()]);
    let out = fetch(segment);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), content);
    std::fs::remove_file(&dest).unwrap();

    let out = fetch("000000010000000000000004");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not in the WAL archive"),
        "{}",
        stderr(&out)
    );

    // A copy that decrypts but is not what was pushed.
    let blobs = open_blobs(&env).await;
    let key = format!("backups/wal/{segment}.zst");
    blobs.put(&key, b"not zstd".to_vec().into()).await.unwrap();
    let out = fetch(segment);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    assert!(!dest.exists(), "nothing is written for a failed fetch");
}
