//! The observe layer's storage, on both backends: rollups, alarms, the audit trail's rows,
//! digests, checkpoint and values. (The rules — hashes, signatures, statistics — are tested in
//! `ecocityhub-observe`; here the rows go in and come out as given.)

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ecocityhub_store::observe::{
    AlarmDefinitionRow, AlarmHistoryRow, AlarmStateRow, AuditCheckpointRow, AuditDigestRow,
    AuditHead, AuditOutcome, AuditQuery, AuditRow, ObserveStore, RollupRow, AUDIT_GENESIS_HASH,
};
use ecocityhub_store::{testing, SqlStore, StoreError};

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_764_000_000 + s, 0).unwrap()
}

fn rollup(
    metric: &str,
    labels: &str,
    resolution: i64,
    ts: i64,
    source: &str,
    sum: f64,
) -> RollupRow {
    RollupRow {
        metric: metric.into(),
        labels: labels.into(),
        resolution,
        ts,
        source: source.into(),
        count: 1,
        sum,
        min: sum,
        max: sum,
        sketch: "3:1".into(),
    }
}

async fn rollups_replace_by_key_and_expire(store: SqlStore) {
    let rows = vec![
        rollup("m", "{}", 60, 0, "a", 1.0),
        rollup("m", "{}", 60, 60, "a", 2.0),
        rollup("m", r#"{"route":"/x"}"#, 60, 60, "a", 3.0),
        rollup("m", "{}", 60, 60, "b", 4.0),
        rollup("m", "{}", 600, 0, "a", 3.0),
        rollup("other", "{}", 60, 60, "a", 9.0),
        // A duplicate key in one call: the last wins.
        rollup("m", "{}", 60, 0, "a", 1.5),
    ];
    store.put_rollups(&rows).await.unwrap();
    store
        .put_rollups(&[rollup("m", "{}", 60, 60, "a", 2.5)])
        .await
        .unwrap();
    let got = store.rollups("m", 60, 0, 120).await.unwrap();
    let sums: Vec<(i64, &str, &str, f64)> = got
        .iter()
        .map(|r| (r.ts, r.labels.as_str(), r.source.as_str(), r.sum))
        .collect();
    assert_eq!(
        sums,
        [
            (0, "{}", "a", 1.5),
            (60, r#"{"route":"/x"}"#, "a", 3.0),
            (60, "{}", "a", 2.5),
            (60, "{}", "b", 4.0)
        ]
    );
    assert_eq!(got[0].sketch, "3:1");
    assert_eq!(store.rollups("m", 60, 60, 61).await.unwrap().len(), 3);
    assert_eq!(store.rollups("m", 600, 0, 600).await.unwrap().len(), 1);
    let series = store.rollup_series(60, 0).await.unwrap();
    assert_eq!(series.len(), 3, "{series:?}");
    assert_eq!(store.expire_rollups(60, 60).await.unwrap(), 1);
    assert_eq!(store.rollups("m", 60, 0, 120).await.unwrap().len(), 3);
    assert_eq!(
        store.rollups("m", 600, 0, 600).await.unwrap().len(),
        1,
        "other resolutions stay"
    );
}

async fn alarms_definitions_states_and_history(store: SqlStore) {
    let def = |name: &str, origin: &str| AlarmDefinitionRow {
        name: name.into(),
        definition: format!(r#"{{"name":"{name}"}}"#),
        origin: origin.into(),
        updated_at: t(0),
    };
    store
        .put_alarm_definition(&def("b", "builtin"))
        .await
        .unwrap();
    store
        .put_alarm_definition(&def("a", "config"))
        .await
        .unwrap();
    store
        .put_alarm_definition(&def("b", "admin"))
        .await
        .unwrap();
    let defs = store.alarm_definitions().await.unwrap();
    assert_eq!(
        defs.iter()
            .map(|d| (d.name.as_str(), d.origin.as_str()))
            .collect::<Vec<_>>(),
        [("a", "config"), ("b", "admin")]
    );

    let state = |s: &str, through: i64| AlarmStateRow {
        name: "a".into(),
        state: s.into(),
        reason: format!("now {s}"),
        reason_data: "{}".into(),
        updated_at: t(through),
        evaluated_through: Some(through),
    };
    let change = |from: &str, to: &str, at: i64| AlarmHistoryRow {
        id: 0,
        name: "a".into(),
        at: t(at),
        old_state: from.into(),
        new_state: to.into(),
        reason: "r".into(),
        reason_data: "{}".into(),
        notified_at: None,
    };
    assert_eq!(
        store
            .save_alarm_state(&state("INSUFFICIENT_DATA", 60), None)
            .await
            .unwrap(),
        None
    );
    let first = store
        .save_alarm_state(
            &state("ALARM", 120),
            Some(&change("INSUFFICIENT_DATA", "ALARM", 120)),
        )
        .await
        .unwrap()
        .unwrap();
    let second = store
        .save_alarm_state(&state("OK", 180), Some(&change("ALARM", "OK", 180)))
        .await
        .unwrap()
        .unwrap();
    assert!(second > first);
    let states = store.alarm_states().await.unwrap();
    assert_eq!(
        (states[0].state.as_str(), states[0].evaluated_through),
        ("OK", Some(180))
    );

    let history = store.alarm_history(Some("a"), None, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.new_state.as_str())
            .collect::<Vec<_>>(),
        ["OK", "ALARM"]
    );
    assert_eq!(
        store
            .alarm_history(None, Some(second), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .alarm_history(Some("b"), None, 10)
        .await
        .unwrap()
        .is_empty());

    let pending = store.unnotified_alarm_changes(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|h| h.id).collect::<Vec<_>>(),
        [first, second]
    );
    store.mark_alarm_notified(first, t(200)).await.unwrap();
    assert_eq!(
        store.unnotified_alarm_changes(10).await.unwrap()[0].id,
        second
    );

    assert!(store.delete_alarm_definition("a").await.unwrap());
    assert!(!store.delete_alarm_definition("a").await.unwrap());
    assert!(store.alarm_states().await.unwrap().is_empty());
    assert_eq!(
        store
            .alarm_history(Some("a"), None, 10)
            .await
            .unwrap()
            .len(),
        2,
        "history stays"
    );
}

fn audit_row(
    seq: i64,
    prev: &str,
    user: Option<&str>,
    name: &str,
    error: Option<&str>,
    ms: i64,
) -> AuditRow {
    AuditRow {
        seq,
        event_id: format!("e{seq}"),
        event_time: ms,
        event_source: "api".into(),
        event_name: name.into(),
        user_type: "User".into(),
        user_id: user.map(str::to_string),
        error_code: error.map(str::to_string),
        read_only: seq % 2 == 0,
        request_id: Some(format!("r{seq}")),
        record: format!(r#"{{"seq":{seq}}}"#),
        prev_hash: prev.into(),
        hash: format!("h{seq}"),
    }
}

/// Seals rows for `n` events: users alternate u1/u2, every third an error.
fn sealer(n: i64) -> impl FnMut(&AuditHead) -> Vec<AuditRow> + Send {
    move |head: &AuditHead| {
        let mut prev = head.hash.clone();
        (1..=n)
            .map(|i| {
                let seq = head.seq + i;
                let user = if seq % 2 == 0 { "u2" } else { "u1" };
                let name = if seq % 4 == 0 { "SignIn" } else { "UpdateUser" };
                let error = (seq % 3 == 0).then_some("forbidden");
                let row = audit_row(seq, &prev, Some(user), name, error, seq * 1000);
                prev = row.hash.clone();
                row
            })
            .collect()
    }
}

async fn audit_rows_append_in_order_and_search(store: SqlStore) {
    assert_eq!(
        store.audit_head().await.unwrap(),
        AuditHead {
            seq: 0,
            hash: AUDIT_GENESIS_HASH.into()
        }
    );
    assert_eq!(store.audit_bounds().await.unwrap(), None);
    let head = store.append_audit(&mut sealer(5)).await.unwrap();
    assert_eq!(
        head,
        AuditHead {
            seq: 5,
            hash: "h5".into()
        }
    );
    let head = store.append_audit(&mut sealer(7)).await.unwrap();
    assert_eq!(head.seq, 12);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.audit_bounds().await.unwrap(), Some((1, 12, 12)));
    let rows = store.audit_records(4, 3).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(
        rows[2].prev_hash, "h5",
        "the second batch continues the chain"
    );
    assert_eq!(
        rows[0],
        audit_row(4, "h3", Some("u2"), "SignIn", None, 4000)
    );
    assert_eq!(store.audit_record(12).await.unwrap().unwrap().hash, "h12");
    assert_eq!(store.audit_record(13).await.unwrap(), None);

    // An empty batch changes nothing; a batch out of order is refused whole.
    assert_eq!(
        store
            .append_audit(&mut |_: &AuditHead| Vec::new())
            .await
            .unwrap()
            .seq,
        12
    );
    let err = store
        .append_audit(&mut |h: &AuditHead| vec![audit_row(h.seq + 2, &h.hash, None, "X", None, 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(store.audit_bounds().await.unwrap(), Some((1, 12, 12)));

    let search = |q: AuditQuery| {
        let store = &store;
        async move {
            store
                .search_audit(&q)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    let q = |limit| AuditQuery {
        limit,
        ..Default::default()
    };
    assert_eq!(search(q(3)).await, [12, 11, 10]);
    assert_eq!(
        search(AuditQuery {
            before_seq: Some(10),
            ..q(3)
        })
        .await,
        [9, 8, 7]
    );
    assert_eq!(
        search(AuditQuery {
            user_id: Some("u2".into()),
            ..q(100)
        })
        .await,
        [12, 10, 8, 6, 4, 2]
    );
    assert_eq!(
        search(AuditQuery {
            event_name: Some("SignIn".into()),
            ..q(100)
        })
        .await,
        [12, 8, 4]
    );
    assert_eq!(
        search(AuditQuery {
            outcome: Some(AuditOutcome::Error),
            ..q(100)
        })
        .await,
        [12, 9, 6, 3]
    );
    assert_eq!(
        search(AuditQuery {
            outcome: Some(AuditOutcome::Success),
            user_id: Some("u1".into()),
            ..q(100)
        })
        .await,
        [11, 7, 5, 1]
    );
    assert_eq!(
        search(AuditQuery {
            from: Some(3000),
            to: Some(6000),
            ..q(100)
        })
        .await,
        [5, 4, 3]
    );
    assert_eq!(
        search(AuditQuery {
            event_source: Some("api".into()),
            user_id: Some("u2".into()),
            event_name: Some("UpdateUser".into()),
            from: Some(5000),
            before_seq: Some(10),
            ..q(100)
        })
        .await,
        [6]
    );
    assert!(search(AuditQuery {
        event_source: Some("cli".into()),
        ..q(100)
    })
    .await
    .is_empty());
}

async fn concurrent_appenders_take_turns(store: SqlStore) {
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    store.append_audit(&mut sealer(3)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rows = store.audit_records(1, 1000).await.unwrap();
    assert_eq!(rows.len(), 240);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        let prev = if i == 0 {
            AUDIT_GENESIS_HASH.to_string()
        } else {
            rows[i - 1].hash.clone()
        };
        assert_eq!(r.prev_hash, prev, "record {} continues the chain", r.seq);
    }
}

async fn digests_checkpoint_and_values(store: SqlStore) {
    store.append_audit(&mut sealer(4)).await.unwrap();
    let make = |previous_expected: Option<i64>| {
        move |c: &ecocityhub_store::observe::DigestContext| {
            assert_eq!(c.previous.as_ref().map(|p| p.number), previous_expected);
            AuditDigestRow {
                number: c.number,
                blob_key: format!("audit/digests/{}", c.number),
                body: format!(r#"{{"last":{}}}"#, c.head.seq),
                signature: format!("sig{}", c.number),
                last_seq: c.head.seq,
                created_at: t(c.number * 3600),
                written_at: None,
            }
        }
    };
    let d1 = store.create_audit_digest(&mut make(None)).await.unwrap();
    assert_eq!((d1.number, d1.last_seq), (1, 4));
    store.append_audit(&mut sealer(2)).await.unwrap();
    let d2 = store.create_audit_digest(&mut make(Some(1))).await.unwrap();
    assert_eq!((d2.number, d2.last_seq), (2, 6));
    store.mark_audit_digest_written(1, t(10)).await.unwrap();
    let all = store.audit_digests().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].written_at, all[1].written_at), (Some(t(10)), None));
    assert_eq!(all[1].body, r#"{"last":6}"#);
    let wrong = store
        .create_audit_digest(
            &mut |c: &ecocityhub_store::observe::DigestContext| AuditDigestRow {
                number: c.number + 1,
                ..d2.clone()
            },
        )
        .await;
    assert!(wrong.is_err(), "a digest must take the number it is given");
    assert_eq!(store.audit_digests().await.unwrap().len(), 2);

    assert_eq!(store.audit_checkpoint().await.unwrap(), None);
    let checkpoint = AuditCheckpointRow {
        through_seq: 4,
        body: "{}".into(),
        signature: "s".into(),
        created_at: t(99),
    };
    assert_eq!(store.expire_audit(&checkpoint).await.unwrap(), 4);
    assert_eq!(store.audit_checkpoint().await.unwrap(), Some(checkpoint));
    assert_eq!(store.audit_bounds().await.unwrap(), Some((5, 6, 2)));
    // The chain goes on after an expiry.
    assert_eq!(store.append_audit(&mut sealer(1)).await.unwrap().seq, 7);

    assert_eq!(store.observe_value("k").await.unwrap(), None);
    assert_eq!(
        store
            .put_observe_value_if_absent("k", "first")
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        store
            .put_observe_value_if_absent("k", "second")
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        store.observe_value("k").await.unwrap().as_deref(),
        Some("first")
    );

    let pool = store.pool_status();
    assert!(
        pool.max >= 1 && pool.size <= pool.max && pool.idle <= pool.size,
        "{pool:?}"
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use ecocityhub_store::Store;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    rollups_replace_by_key_and_expire,
    alarms_definitions_states_and_history,
    audit_rows_append_in_order_and_search,
    concurrent_appenders_take_turns,
    digests_checkpoint_and_values,
);
