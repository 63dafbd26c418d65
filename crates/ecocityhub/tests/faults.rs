//! Bad conditions under the server: a full disk and a locked database make ingest answer
//! 503 without acknowledging anything that was not stored, and the server recovers by itself
//! once they pass; a database migrated by a newer binary is refused at start with a message.
//!
//! The file systems are small tmpfs mounts made by the test (root only, as under CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Server};
use serde_json::{json, Value};
use sqlx::Connection;

/// A tmpfs of `megabytes`, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (skipped outside CI) where the test may not mount file systems.
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m")])
            .arg("tmpfs")
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        ecocityhub_testkit::require_that(
            mounted,
            "permission to mount a tmpfs",
            "run the test as root (CI does)",
        )
        .then_some(SmallDisk { mount, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Fills the file system holding `dir` with a file, to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.write_all(&[0u8; 512]);
    let _ = file.sync_all();
    path
}

/// Sends batches of readings until `enough` says stop; remembers what was acknowledged.
struct Device {
    client: reqwest::Client,
    key: String,
    next_minute: i64,
    acknowledged: Vec<i64>,
    statuses: Vec<u16>,
}

impl Device {
    fn new(key: String) -> Device {
        Device {
            client: reqwest::Client::new(),
            key,
            next_minute: 0,
            acknowledged: Vec::new(),
            statuses: Vec::new(),
        }
    }

    /// One batch of 500 new readings; returns the status.
    async fn send(&mut self, server: &Server) -> u16 {
        let start = self.next_minute;
        self.next_minute += 500;
        let rows: Vec<Value> = (start..start + 500)
            .map(|m| json!({"parameter": "pm10", "time": minute_time(m), "value": (m % 97) as f64}))
            .collect();
        let resp = self
            .client
            .post(server.url("/api/v1/readings"))
            .bearer_auth(&self.key)
            .json(&rows)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status == 503 {
            assert!(resp.headers().contains_key("retry-after"), "503 says when");
            let problem: Value = resp.json().await.unwrap();
            assert_eq!(problem["code"], "unavailable", "{problem}");
        }
        if status == 200 {
            self.acknowledged.extend(start..start + 500);
        }
        self.statuses.push(status);
        status
    }

    /// Sends until a batch gets `wanted`, at most `tries` batches.
    async fn until(&mut self, server: &Server, wanted: u16, tries: usize) -> bool {
        for _ in 0..tries {
            if self.send(server).await == wanted {
                return true;
            }
        }
        false
    }
}

fn minute_time(minute: i64) -> String {
    let t = chrono::DateTime::from_timestamp(1_704_067_200 + minute * 60, 0).unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every acknowledged reading is in the store.
async fn assert_all_stored(env: &Env, acknowledged: &[i64]) {
    use ecocityhub_store::Store;
    let store = env.store().await;
    let station = ecocityhub_domain::StationId::parse("st1").unwrap();
    let stored: std::collections::HashSet<i64> = store
        .readings(
            &station,
            ecocityhub_domain::Parameter::Pm10,
            0,
            i64::MAX,
            u32::MAX,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.ts - 1_704_067_200) / 60)
        .collect();
    let missing: Vec<&i64> = acknowledged
        .iter()
        .filter(|m| !stored.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings are missing",
        missing.len(),
        acknowledged.len()
    );
}

#[tokio::test]
async fn a_full_or_read_only_disk_answers_503_loses_nothing_and_recovers() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir_in(&disk.mount).unwrap(),
        database_url: None,
    };
    let key = env.station_with_key();
    let server = Server::start(&env, &["--no-demo"]);
    let mut device = Device::new(key);
    assert!(device.until(&server, 200, 1).await, "ingest works at first");

    let filler = fill(&disk.mount);
    assert!(
        device.until(&server, 503, 400).await,
        "a full disk is answered with 503 (statuses {:?})",
        device.statuses
    );
    std::fs::remove_file(filler).unwrap();
    let started = Instant::now();
    assert!(
        device.until(&server, 200, 20).await,
        "ingest resumes once space returns"
    );
    eprintln!(
        "full disk: resumed {:?} after space returned; statuses {:?}",
        started.elapsed(),
        device.statuses
    );

    // Another process holds the database's write lock for longer than the server waits.
    let db = env.data_dir().join("ecocityhub.db");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let refused = device.until(&server, 503, 1).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert!(refused, "a locked database is answered with 503");
    assert!(
        device.until(&server, 200, 5).await,
        "ingest resumes once the lock is released"
    );

    let unexpected: Vec<&u16> = device
        .statuses
        .iter()
        .filter(|s| **s != 200 && **s != 503)
        .collect();
    assert!(unexpected.is_empty(), "only 200 or 503: {unexpected:?}");
    server.kill_9();
    assert_all_stored(&env, &device.acknowledged).await;
}

#[tokio::test]
async fn serve_refuses_a_database_migrated_by_a_newer_binary() {
    let env = Env::sqlite().await;
    env.station_with_key();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        env.data_dir().join("ecocityhub.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', 1, X'00', 0)",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let started = Instant::now();
    let out = env
        .cmd(&["serve", "--bind", "127.0.0.1:0", "--no-demo"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must refuse to start");
    assert!(started.elapsed() < Duration::from_secs(60));
    let stderr = common::stderr(&out);
    assert!(
        stderr.contains("schema version 99990101000000, newer than this binary knows"),
        "{stderr}"
    );
}
