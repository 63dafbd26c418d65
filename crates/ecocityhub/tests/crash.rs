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

/// The real webhook receiver of the notification tests (checks Standard Webhooks signatures
/// with the `standardwebhooks` package), under the one rule for skipping.
fn webhook_receiver() -> Option<ecocityhub_testkit::HelperServer> {
    let python = ecocityhub_testkit::require_test_python("the standardwebhooks receiver")?;
    let mut cmd = std::process::Command::new(python);
    cmd.arg(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../notify/tests/webhook_receiver.py"),
    );
    Some(
        ecocityhub_testkit::HelperServer::start(
            cmd,
            "listening on",
            std::time::Duration::from_secs(30),
        )
        .expect("the receiver starts"),
    )
}

/// Writes one confirmed webhook subscription and `n` messages due to it, as publishing does.
async fn due_webhooks(
    store: &dyn ecocityhub_store::Store,
    endpoint: &str,
    secret: &str,
    n: usize,
) -> Vec<String> {
    use chrono::Utc;
    use ecocityhub_notify::{Message, Topic};
    use ecocityhub_store::notify::{NewDelivery, SubscriptionRow};
    let topic = Topic::station("st1");
    store.ensure_topic(&topic.to_row(Utc::now())).await.unwrap();
    let subscription = SubscriptionRow {
        id: "sub_crash".into(),
        topic_id: topic.id.clone(),
        owner: None,
        protocol: "webhook".into(),
        endpoint: endpoint.into(),
        status: "confirmed".into(),
        confirm_token_hash: None,
        confirm_expires_at: None,
        filter_policy: None,
        secret: Some(secret.into()),
        previous_secret: None,
        previous_secret_until: None,
        endpoint_keys: None,
        created_at: Utc::now(),
        confirmed_at: Some(Utc::now()),
    };
    store.insert_subscription(&subscription).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let message = Message::new(
            &topic,
            "alert.opened",
            &format!("Alert {i}"),
            "PM2.5 is high",
        );
        let delivery = NewDelivery {
            subscription_id: Some(subscription.id.clone()),
            protocol: "webhook".into(),
            endpoint: endpoint.into(),
            user_id: None,
            idempotency_key: Some(format!("crash:{i}")),
            not_before_ms: Utc::now().timestamp_millis(),
        };
        store
            .publish(&message.to_row("topic", &topic.id), &[delivery])
            .await
            .unwrap();
        ids.push(message.id);
    }
    ids
}

/// The message ids the receiver accepted, in order of arrival.
async fn received(http: &reqwest::Client, receiver: &str) -> Vec<String> {
    let log: Value = http
        .get(format!("{receiver}/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|w| w["verified"] == json!([true]))
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

/// 1,000 notifications are due and the server is killed with SIGKILL three times while it
/// delivers them: after the restarts every message reaches the receiver, and a message
/// reaches it twice only where the receiver acknowledged it but the kill came before the
/// delivery was recorded (the receiver drops those by id; they are counted here).
async fn due_notifications_survive_kill_9(env: Env) {
    use std::collections::{HashMap, HashSet};
    use std::time::{Duration, Instant};
    let Some(receiver) = webhook_receiver() else {
        return;
    };
    let http = reqwest::Client::new();
    let secret = ecocityhub_notify::signing::new_secret();
    http.post(format!("{}/control/secrets", receiver.base_url()))
        .json(&json!([secret]))
        .send()
        .await
        .unwrap();
    let migrated = env.run(&["migrate"]);
    assert!(migrated.status.success(), "{}", common::stderr(&migrated));
    let store = env.store().await;
    use ecocityhub_store::NotifyStore;
    let endpoint = format!("{}/hook", receiver.base_url());
    let ids = due_webhooks(&store, &endpoint, &secret, 1000).await;
    let config = env.file(
        "ecocityhub.toml",
        "[notify.webhooks]\nallow_loopback = true\n[notify.worker]\nconcurrency = 16\nbatch = 32\nlease_ms = 5000\n",
    );
    let config = config.to_str().unwrap();
    let serve = ["--no-demo", "--config", config];

    // Kill at points chosen by the clock (the delivery rate varies), each after some more
    // deliveries arrived.
    let mut kills = 0;
    for (round, after) in [120usize, 400, 700].into_iter().enumerate() {
        let server = Server::start(&env, &serve);
        let deadline = Instant::now() + Duration::from_secs(60);
        while received(&http, &receiver.base_url()).await.len() < after {
            assert!(
                Instant::now() < deadline,
                "round {round}: deliveries stalled"
            );
            tokio::time::sleep(Duration::from_millis(
                5 + (after as u64 * 7 + round as u64 * 13) % 40,
            ))
            .await;
        }
        server.kill_9();
        kills += 1;
    }

    let server = Server::start(&env, &serve);
    let deadline = Instant::now() + Duration::from_secs(120);
    let wanted: HashSet<&String> = ids.iter().collect();
    let arrived = loop {
        let arrived = received(&http, &receiver.base_url()).await;
        let distinct: HashSet<&String> = arrived.iter().collect();
        if wanted.is_subset(&distinct) {
            break arrived;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 1,000 messages arrived after {kills} kills",
            wanted.intersection(&distinct).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(server);
    let mut times: HashMap<&String, usize> = HashMap::new();
    for id in &arrived {
        *times.entry(id).or_default() += 1;
    }
    let repeated = times.values().filter(|n| **n > 1).count();
    assert!(
        times.keys().all(|id| wanted.contains(id)),
        "nothing but the due messages arrived"
    );
    // Only deliveries in flight at a kill can repeat: at most one batch per kill.
    assert!(
        repeated <= kills * 32,
        "{repeated} messages arrived twice after {kills} kills"
    );
    eprintln!(
        "1,000 due notifications, {kills} kills: all delivered; {repeated} acknowledged by the receiver but not yet recorded arrived twice"
    );
    let dead = store
        .deliveries(
            Some(ecocityhub_store::notify::DeliveryStatus::Dead),
            None,
            10,
        )
        .await
        .unwrap();
    assert!(dead.is_empty(), "no dead letters: {dead:?}");
}

#[tokio::test]
async fn sqlite_due_notifications_survive_kill_9() {
    due_notifications_survive_kill_9(Env::sqlite().await).await;
}

#[tokio::test]
async fn postgres_due_notifications_survive_kill_9() {
    let Some(env) = Env::postgres().await else {
        return;
    };
    due_notifications_survive_kill_9(env).await;
}
