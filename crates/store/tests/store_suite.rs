//! One suite, two backends: every test runs against an SQLite file and against a fresh
//! PostgreSQL database.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::ml::{CancelOutcome, JobStatus, NewModel};
use ecocityhub_store::{testing, DeviceKey, MlStore, SqlStore, Store, StoreError};

fn station(id: &str) -> Station {
    Station::new(
        StationId::parse(id).unwrap(),
        format!("Station {id}"),
        GeoPoint::new(51.5, -0.15).unwrap(),
        Some("London".into()),
        "Europe/London",
    )
    .unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
}

fn reading(st: &str, p: Parameter, hour: i64, value: f64) -> Reading {
    Reading {
        station: StationId::parse(st).unwrap(),
        parameter: p,
        time: t0() + Duration::hours(hour),
        value,
        flag: QualityFlag::Valid,
    }
}

async fn stations_round_trip(store: SqlStore) {
    let mut s = station("s1");
    s.metadata = serde_json::json!({"operator": "LAQN"});
    store.upsert_station(&s).await.unwrap();
    assert_eq!(store.station(&s.id).await.unwrap(), Some(s.clone()));
    assert!(!store
        .insert_station_if_missing(&station("s1"))
        .await
        .unwrap());
    assert!(store
        .insert_station_if_missing(&station("s0"))
        .await
        .unwrap());
    s.name = "Renamed".into();
    s.active = false;
    store.upsert_station(&s).await.unwrap();
    let all = store.stations().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s0", "s1"]
    );
    assert_eq!(all[1].name, "Renamed");
    assert!(!all[1].active);
    assert_eq!(
        store
            .station(&StationId::parse("nope").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn readings_are_idempotent_and_ordered(store: SqlStore) {
    store.upsert_station(&station("s1")).await.unwrap();
    let batch: Vec<Reading> = (0..1200)
        .map(|h| reading("s1", Parameter::Pm25, h, h as f64))
        .collect();
    let first = store.insert_readings(&batch).await.unwrap();
    assert_eq!((first.rows, first.changed), (1200, 1200));
    // The same batch again changes nothing, and says so.
    let again = store.insert_readings(&batch).await.unwrap();
    assert_eq!(
        (again.rows, again.changed, again.unchanged()),
        (1200, 0, 1200)
    );
    // The same batch again changes nothing.
    store.insert_readings(&batch).await.unwrap();
    assert_eq!(store.count_readings().await.unwrap(), 1200);
    // A correction replaces the value; a duplicate inside a batch keeps the last.
    let fix = vec![
        reading("s1", Parameter::Pm25, 5, 50.0),
        reading("s1", Parameter::Pm25, 5, 55.0),
    ];
    let fixed = store.insert_readings(&fix).await.unwrap();
    assert_eq!((fixed.rows, fixed.changed), (1, 1));
    let id = StationId::parse("s1").unwrap();
    let from = t0().timestamp();
    let pts = store
        .readings(&id, Parameter::Pm25, from, from + 10 * 3600, 1000)
        .await
        .unwrap();
    assert_eq!(pts.len(), 10);
    assert_eq!(pts[5].value, 55.0);
    assert!(pts.windows(2).all(|w| w[0].ts < w[1].ts));
    // Limit and half-open range.
    let pts = store
        .readings(&id, Parameter::Pm25, from + 3600, from + 7200, 10)
        .await
        .unwrap();
    assert_eq!(pts.len(), 1);
    let pts = store
        .readings(&id, Parameter::Pm25, from, i64::MAX, 7)
        .await
        .unwrap();
    assert_eq!(pts.len(), 7);
    // No such series: empty, not an error.
    assert!(store
        .readings(&id, Parameter::O3, from, i64::MAX, 7)
        .await
        .unwrap()
        .is_empty());
    // The series knows its span.
    let series = store.series().await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].first, Some(t0()));
    assert_eq!(series[0].last, Some(t0() + Duration::hours(1199)));
    assert_eq!(series[0].period_seconds, None);
    store
        .set_series_period(&id, Parameter::Pm25, 3600)
        .await
        .unwrap();
    assert_eq!(store.series().await.unwrap()[0].period_seconds, Some(3600));
}

async fn values_round_trip_exactly(store: SqlStore) {
    store.upsert_station(&station("s1")).await.unwrap();
    let values = [
        0.1 + 0.2,
        37.623_456_789_012_34,
        1e-300,
        123_456_789.123_456_79,
        0.0,
    ];
    let readings: Vec<Reading> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Reading {
            flag: if i == 1 {
                QualityFlag::Suspect
            } else {
                QualityFlag::Valid
            },
            ..reading("s1", Parameter::No2, i as i64, *v)
        })
        .collect();
    store.insert_readings(&readings).await.unwrap();
    let id = StationId::parse("s1").unwrap();
    let from = t0().timestamp();
    let back = store
        .readings(&id, Parameter::No2, from, from + 86_400, 100)
        .await
        .unwrap();
    assert_eq!(back.iter().map(|p| p.value).collect::<Vec<_>>(), values);
    assert_eq!(back[1].flag, QualityFlag::Suspect);
    assert_eq!(back[4].ts, from + 4 * 3600);
    // An empty range, and a limit.
    assert!(store
        .readings(&id, Parameter::No2, from - 100, from, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .readings(&id, Parameter::No2, from, from + 86_400, 2)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn a_batch_with_an_unknown_station_stores_nothing(store: SqlStore) {
    store.upsert_station(&station("s1")).await.unwrap();
    let batch = vec![
        reading("s1", Parameter::No2, 0, 1.0),
        reading("ghost", Parameter::No2, 0, 1.0),
    ];
    match store.insert_readings(&batch).await {
        Err(StoreError::UnknownStation(id)) => assert_eq!(id.as_str(), "ghost"),
        other => panic!("expected UnknownStation, got {other:?}"),
    }
    assert_eq!(store.count_readings().await.unwrap(), 0);
    // And the series created inside the failed transaction is gone, so later writes work.
    store.insert_readings(&batch[..1]).await.unwrap();
    assert_eq!(store.count_readings().await.unwrap(), 1);
}

async fn recent_returns_the_window_before_each_latest_reading(store: SqlStore) {
    store.upsert_station(&station("a")).await.unwrap();
    store.upsert_station(&station("b")).await.unwrap();
    let mut batch: Vec<Reading> = (0..48)
        .map(|h| reading("a", Parameter::Pm25, h, h as f64))
        .collect();
    batch.extend((0..10).map(|h| reading("a", Parameter::No2, h, 1.0)));
    batch.extend((100..130).map(|h| reading("b", Parameter::Pm10, h, 2.0)));
    store.insert_readings(&batch).await.unwrap();
    let recent = store.recent(24 * 3600).await.unwrap();
    let summary: Vec<(String, Parameter, usize, f64)> = recent
        .iter()
        .map(|r| {
            (
                r.station.to_string(),
                r.parameter,
                r.points.len(),
                r.points.last().unwrap().value,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".to_string(), Parameter::No2, 10, 1.0),
            ("a".to_string(), Parameter::Pm25, 24, 47.0),
            ("b".to_string(), Parameter::Pm10, 24, 2.0),
        ]
    );
    // Inactive stations are left out.
    let mut b = station("b");
    b.active = false;
    store.upsert_station(&b).await.unwrap();
    assert_eq!(store.recent(3600).await.unwrap().len(), 2);
}

async fn device_keys_lifecycle(store: SqlStore) {
    store.upsert_station(&station("s1")).await.unwrap();
    let key = DeviceKey {
        prefix: "abcd1234".into(),
        station: StationId::parse("s1").unwrap(),
        secret_hash: "00ff".into(),
        label: Some("roof sensor".into()),
        created_at: t0(),
        last_used_at: None,
        revoked_at: None,
    };
    store.insert_device_key(&key).await.unwrap();
    assert_eq!(
        store.device_key("abcd1234").await.unwrap(),
        Some(key.clone())
    );
    store
        .touch_device_key("abcd1234", t0() + Duration::hours(1))
        .await
        .unwrap();
    assert!(store
        .revoke_device_key("abcd1234", t0() + Duration::hours(2))
        .await
        .unwrap());
    assert!(!store
        .revoke_device_key("abcd1234", t0() + Duration::hours(3))
        .await
        .unwrap());
    let got = store.device_keys(&key.station).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].last_used_at, Some(t0() + Duration::hours(1)));
    assert_eq!(got[0].revoked_at, Some(t0() + Duration::hours(2)));
    let orphan = DeviceKey {
        prefix: "zz".into(),
        station: StationId::parse("ghost").unwrap(),
        ..key
    };
    assert!(matches!(
        store.insert_device_key(&orphan).await,
        Err(StoreError::UnknownStation(_))
    ));
}

async fn users_codes_tokens_keys_and_outbox(store: SqlStore) {
    use ecocityhub_identity::Role;
    use ecocityhub_store::identity::{
        IdentityStore, OutboxMessage, RefreshToken, SigningKey, User, VerificationCode,
    };
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut u = User {
        id: "u1".into(),
        email: "a@example.org".into(),
        password_hash: "$argon2id$x".into(),
        roles: vec![Role::Citizen],
        confirmed: false,
        created_at: now,
    };
    assert!(store.insert_user(&u).await.unwrap());
    assert!(
        !store
            .insert_user(&User {
                id: "u2".into(),
                ..u.clone()
            })
            .await
            .unwrap(),
        "e-mails are unique"
    );
    u.roles = vec![Role::Operator, Role::Admin];
    u.confirmed = true;
    store.update_user(&u).await.unwrap();
    assert_eq!(
        store.user_by_email("a@example.org").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(store.users().await.unwrap().len(), 1);

    let code = VerificationCode {
        email: u.email.clone(),
        purpose: "confirm".into(),
        code_hash: "h1".into(),
        expires_at: now,
        attempts: 0,
    };
    store.put_code(&code).await.unwrap();
    store.bump_code_attempts(&u.email, "confirm").await.unwrap();
    assert_eq!(
        store
            .code(&u.email, "confirm")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        1
    );
    store
        .put_code(&VerificationCode {
            code_hash: "h2".into(),
            ..code.clone()
        })
        .await
        .unwrap();
    let replaced = store.code(&u.email, "confirm").await.unwrap().unwrap();
    assert_eq!((replaced.code_hash.as_str(), replaced.attempts), ("h2", 0));
    store.delete_code(&u.email, "confirm").await.unwrap();
    assert!(store.code(&u.email, "confirm").await.unwrap().is_none());

    for (hash, family) in [("t1", "f1"), ("t2", "f1"), ("t3", "f2")] {
        let t = RefreshToken {
            token_hash: hash.into(),
            family: family.into(),
            user_id: "u1".into(),
            expires_at: now,
            used_at: None,
            revoked_at: None,
            created_at: now,
            scope: "openid ecocityhub/api".into(),
        };
        store.insert_refresh_token(&t).await.unwrap();
        assert_eq!(store.refresh_token(hash).await.unwrap(), Some(t.clone()));
    }
    assert!(store.use_refresh_token("t1", now).await.unwrap());
    assert!(
        !store.use_refresh_token("t1", now).await.unwrap(),
        "a token is used once"
    );
    assert_eq!(store.revoke_refresh_family("f1", now).await.unwrap(), 2);
    assert!(store
        .refresh_token("t2")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(store
        .refresh_token("t3")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    assert_eq!(
        store.revoke_user_refresh_tokens("u1", now).await.unwrap(),
        1
    );

    let k1 = SigningKey::generate(now);
    let k2 = SigningKey::generate(now + Duration::seconds(1));
    store.insert_signing_key(&k1).await.unwrap();
    store.insert_signing_key(&k2).await.unwrap();
    assert!(store.retire_signing_key(&k1.kid, now).await.unwrap());
    assert!(
        !store.retire_signing_key(&k1.kid, now).await.unwrap(),
        "already retired"
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .find(|k| k.kid == k1.kid)
        .unwrap()
        .retired_at
        .is_some());
    assert_eq!(keys.iter().find(|k| k.kid == k2.kid).unwrap(), &k2);

    let m = OutboxMessage {
        channel: "email".into(),
        recipient: u.email.clone(),
        subject: "Code".into(),
        body: "123456".into(),
        created_at: now,
    };
    store.push_outbox(&m).await.unwrap();
    assert_eq!(store.outbox(&u.email).await.unwrap(), vec![m]);

    assert!(store.delete_user("u1").await.unwrap());
    assert!(
        store.refresh_token("t3").await.unwrap().is_none(),
        "tokens go with their user"
    );
}

fn new_model(st: &str, p: Parameter) -> NewModel {
    NewModel {
        station: StationId::parse(st).unwrap(),
        parameter: p,
        created_at: t0(),
        checksum: "abc".into(),
        size_bytes: 1234,
        training_from: t0() - Duration::days(30),
        training_to: t0(),
        data_fingerprint: "f".into(),
        code_version: "0.1.0".into(),
        metrics: "[]".into(),
        job_id: None,
    }
}

async fn model_registry_versions_promotions_and_rollbacks(store: SqlStore) {
    let key = |v: i64| format!("models/s1/pm25/v{v}/model.json");
    let v1 = store
        .insert_model(&new_model("s1", Parameter::Pm25), &key)
        .await
        .unwrap();
    let v2 = store
        .insert_model(&new_model("s1", Parameter::Pm25), &key)
        .await
        .unwrap();
    let other = store
        .insert_model(&new_model("s1", Parameter::No2), &|v| {
            format!("models/s1/no2/v{v}/model.json")
        })
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version, other.version), (1, 2, 1));
    assert_eq!(v2.artifact_key, "models/s1/pm25/v2/model.json");
    assert_eq!(v1.status, "candidate");
    assert!(store.serving_models().await.unwrap().is_empty());

    let st = StationId::parse("s1").unwrap();
    // Nothing to roll back to yet.
    assert_eq!(
        store
            .rollback_model(&st, Parameter::Pm25, "admin", t0())
            .await
            .unwrap(),
        None
    );
    assert!(store.promote_model(v1.id, "admin", t0()).await.unwrap());
    assert_eq!(
        store
            .rollback_model(&st, Parameter::Pm25, "admin", t0())
            .await
            .unwrap(),
        None
    );
    assert!(store.promote_model(v2.id, "admin", t0()).await.unwrap());
    assert!(!store.promote_model(9_999, "admin", t0()).await.unwrap());
    let serving = store.serving_models().await.unwrap();
    assert_eq!(serving.iter().map(|m| m.id).collect::<Vec<_>>(), [v2.id]);
    assert_eq!(store.model(v1.id).await.unwrap().unwrap().status, "retired");

    // Roll back: v1 serves again; a second rollback has nowhere to go.
    let back = store
        .rollback_model(&st, Parameter::Pm25, "admin", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.id, v1.id);
    assert_eq!(back.status, "serving");
    assert_eq!(store.model(v2.id).await.unwrap().unwrap().status, "retired");
    assert_eq!(
        store
            .rollback_model(&st, Parameter::Pm25, "admin", t0())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.serving_models().await.unwrap()[0].id, v1.id);

    let listed = store
        .models(Some(&st), Some(Parameter::Pm25))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|m| m.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(store.models(None, None).await.unwrap().len(), 3);
}

async fn jobs_queue_run_cancel_and_recover(store: SqlStore) {
    let a = store
        .insert_job(r#"{"all":true}"#, Some("u1"), t0())
        .await
        .unwrap();
    let b = store.insert_job("{}", None, t0()).await.unwrap();
    let c = store.insert_job("{}", None, t0()).await.unwrap();
    assert_eq!(a.status, JobStatus::Queued);
    assert_eq!(a.created_by.as_deref(), Some("u1"));

    let claimed = store.claim_job(t0()).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.status), (a.id, JobStatus::Running));
    store
        .job_progress(a.id, 0.5, "trained s1/pm25")
        .await
        .unwrap();
    store
        .finish_job(a.id, JobStatus::Succeeded, "2 models", t0())
        .await
        .unwrap();
    let done = store.job(a.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.log, "trained s1/pm25\n2 models\n");
    assert!(done.finished_at.is_some());

    assert_eq!(
        store.cancel_job(c.id, t0()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        store.cancel_job(a.id, t0()).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    assert_eq!(
        store.cancel_job(424_242, t0()).await.unwrap(),
        CancelOutcome::NotFound
    );
    let running = store.claim_job(t0()).await.unwrap().unwrap();
    assert_eq!(running.id, b.id);
    assert_eq!(
        store.cancel_job(b.id, t0()).await.unwrap(),
        CancelOutcome::Requested
    );
    assert!(store.job(b.id).await.unwrap().unwrap().cancel_requested);
    assert_eq!(store.claim_job(t0()).await.unwrap(), None);

    // A process dies with b running: on restart it is marked failed, never left running.
    assert_eq!(store.fail_interrupted_jobs(t0()).await.unwrap(), 1);
    let b = store.job(b.id).await.unwrap().unwrap();
    assert_eq!(b.status, JobStatus::Failed);
    assert!(b.message.unwrap().contains("interrupted"));
    assert_eq!(
        store
            .jobs(10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        [c.id, b.id, a.id]
    );
}

async fn federated_sign_ins_and_links(store: SqlStore) {
    use ecocityhub_identity::Role;
    use ecocityhub_store::identity::{FederatedIdentity, FederatedLogin, IdentityStore, User};
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let login = FederatedLogin {
        state_hash: "s1".into(),
        provider: "google".into(),
        nonce: "n1".into(),
        code_verifier: "v1".into(),
        client_id: "ecocityhub-web".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        client_state: Some("client-state".into()),
        client_nonce: None,
        code_challenge: "c1".into(),
        expires_at: now + Duration::minutes(10),
        client_scope: "openid ecocityhub/api".into(),
    };
    store.insert_federated_login(&login).await.unwrap();
    let stale = FederatedLogin {
        state_hash: "s0".into(),
        expires_at: now - Duration::seconds(1),
        ..login.clone()
    };
    store.insert_federated_login(&stale).await.unwrap();
    assert_eq!(store.purge_federated_logins(now).await.unwrap(), 1);
    assert_eq!(store.take_federated_login("s0").await.unwrap(), None);
    assert_eq!(store.take_federated_login("s1").await.unwrap(), Some(login));
    assert_eq!(
        store.take_federated_login("s1").await.unwrap(),
        None,
        "a state comes back once"
    );

    let user = User {
        id: "u1".into(),
        email: "jane@example.org".into(),
        password_hash: ecocityhub_identity::password::NO_PASSWORD.into(),
        roles: vec![Role::Citizen],
        confirmed: true,
        created_at: now,
    };
    assert!(store.insert_user(&user).await.unwrap());
    let google = FederatedIdentity {
        provider: "google".into(),
        subject: "1076915035".into(),
        user_id: "u1".into(),
        email: "jane@example.org".into(),
        linked_at: now,
    };
    assert!(store.insert_federated_identity(&google).await.unwrap());
    assert!(
        !store
            .insert_federated_identity(&FederatedIdentity {
                user_id: "u1".into(),
                email: "other@example.org".into(),
                ..google.clone()
            })
            .await
            .unwrap(),
        "one identity links to one user"
    );
    let facebook = FederatedIdentity {
        provider: "facebook".into(),
        subject: "1076915035".into(),
        linked_at: now + Duration::seconds(1),
        ..google.clone()
    };
    assert!(store.insert_federated_identity(&facebook).await.unwrap());
    assert_eq!(
        store
            .federated_identity("google", "1076915035")
            .await
            .unwrap(),
        Some(google.clone())
    );
    assert_eq!(
        store.federated_identity("google", "other").await.unwrap(),
        None
    );
    assert_eq!(
        store.federated_identities_of("u1").await.unwrap(),
        vec![google, facebook]
    );
    assert!(store.delete_user("u1").await.unwrap());
    assert_eq!(
        store.federated_identities_of("u1").await.unwrap(),
        vec![],
        "links go with their user"
    );
}

async fn migrations_are_idempotent(store: SqlStore) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use ecocityhub_store::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path())).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            use ecocityhub_store::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = super::testing::fresh_postgres_url().await else { return };
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    stations_round_trip,
    readings_are_idempotent_and_ordered,
    a_batch_with_an_unknown_station_stores_nothing,
    values_round_trip_exactly,
    recent_returns_the_window_before_each_latest_reading,
    device_keys_lifecycle,
    migrations_are_idempotent,
    users_codes_tokens_keys_and_outbox,
    model_registry_versions_promotions_and_rollbacks,
    jobs_queue_run_cancel_and_recover,
    federated_sign_ins_and_links,
);

#[tokio::test]
async fn sqlite_data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = testing::sqlite_url(dir.path());
    {
        let store = ecocityhub_store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.upsert_station(&station("s1")).await.unwrap();
        store
            .insert_readings(&[reading("s1", Parameter::O3, 0, 3.0)])
            .await
            .unwrap();
    }
    let store = ecocityhub_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.count_readings().await.unwrap(), 1);
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        ecocityhub_store::connect("mysql://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}
