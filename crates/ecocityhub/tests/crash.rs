//! A reading acknowledged with 2xx survives a `kill -9` of the server right after the answer,
//! on SQLite and on PostgreSQL.

mod common;

use common::{Env, Server};
use serde_json::{json, Value};

async fn acknowledged_readings_survive_kill_9(env: Env) {
    let key = env.station_with_key();
    let server = Server::start(&env, &["--no-demo"]);
    let client = reqwest::Client::new();
    let mut acknowledged = 0u64;
    for batch in 0..20i64 {
        let rows: Vec<Value> = (0..100i64)
            .map(|i| {
                let minute = batch * 100 + i;
                json!({"parameter": "pm10", "time": format!("2024-02-{:02}T{:02}:{:02}:00Z", 1 + minute / 1440, (minute / 60) % 24, minute % 60), "value": minute})
            })
            .collect();
        let resp = client
            .post(server.url("/api/v1/readings"))
            .bearer_auth(&key)
            .json(&rows)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let summary: Value = resp.json().await.unwrap();
        acknowledged += summary["accepted"].as_u64().unwrap();
    }
    // Straight after the last answer: no graceful shutdown, nothing flushed by us.
    server.kill_9();

    let store = env.store().await;
    use ecocityhub_store::Store;
    assert_eq!(acknowledged, 2000);
    assert_eq!(
        store.count_readings().await.unwrap(),
        1 + acknowledged,
        "every acknowledged reading is stored"
    );

    // And the restarted server serves them.
    let server = Server::start(&env, &["--no-demo"]);
    let page: Value = client
        .get(server.url("/api/v1/stations/st1/readings?parameter=pm10&from=2024-02-01T00:00:00Z&to=2024-02-03T00:00:00Z&limit=5000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["readings"].as_array().unwrap().len(), 2000);
}

#[tokio::test]
async fn sqlite_acknowledged_readings_survive_kill_9() {
    acknowledged_readings_survive_kill_9(Env::sqlite().await).await;
}

#[tokio::test]
async fn postgres_acknowledged_readings_survive_kill_9() {
    let Some(env) = Env::postgres().await else {
        return;
    };
    acknowledged_readings_survive_kill_9(env).await;
}

/// A training job running when the server is killed is not left "running": the next server
/// marks it failed, with the reason, before it takes new jobs.
#[tokio::test]
async fn a_training_job_interrupted_by_a_crash_is_marked_failed_on_restart() {
    use ecocityhub_store::ml::JobStatus;
    use ecocityhub_store::MlStore;
    let env = Env::sqlite().await;
    // The first start loads the demo city and queues its training job.
    let server = Server::start(&env, &[]);
    let store = env.store().await;
    let mut running = false;
    for _ in 0..600 {
        if let Some(job) = store.jobs(1).await.unwrap().first() {
            assert_ne!(
                job.status,
                JobStatus::Succeeded,
                "the job ended before the test could interrupt it"
            );
            if job.status == JobStatus::Running {
                running = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(running, "the demo's training job never started");
    server.kill_9();
    let job = store.jobs(1).await.unwrap().remove(0);
    assert_eq!(
        job.status,
        JobStatus::Running,
        "left running by the dead process"
    );

    let server = Server::start(&env, &[]);
    let mut recovered = None;
    for _ in 0..250 {
        let job = store.job(job.id).await.unwrap().unwrap();
        if job.status != JobStatus::Running {
            recovered = Some(job);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let recovered = recovered.expect("the restarted server left the job running");
    assert_eq!(recovered.status, JobStatus::Failed);
    assert!(recovered.message.unwrap().contains("interrupted"));
    assert!(recovered.finished_at.is_some());
    drop(server);
}
