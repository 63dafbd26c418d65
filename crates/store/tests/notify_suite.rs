//! The notification tables on both backends: subscriptions and their confirmation, messages
//! written with their causes, the delivery queue's leases, retries, dead letters, re-drives and
//! idempotency keys, live replay, alert rules, episodes and digests.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ecocityhub_identity::Role;
use ecocityhub_store::identity::{OutboxMessage, User, VerificationCode};
use ecocityhub_store::notify::{
    AlertRuleRow, DeliveryOutcome, DeliveryStatus, EpisodeChange, EpisodeNotice, EpisodeRow,
    MessageRow, NewDelivery, SubscriptionRow, TopicRow,
};
use ecocityhub_store::{testing, IdentityStore, NotifyStore, SqlStore};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

async fn user(store: &SqlStore, id: &str) {
    store
        .insert_user(&User {
            id: id.into(),
            email: format!("{id}@example.org"),
            password_hash: "x".into(),
            roles: vec![Role::Citizen],
            confirmed: true,
            created_at: t0(),
        })
        .await
        .unwrap();
}

async fn topic(store: &SqlStore, id: &str) {
    store
        .ensure_topic(&TopicRow {
            id: id.into(),
            kind: "station_alerts".into(),
            name: format!("Alerts of {id}"),
            created_at: t0(),
        })
        .await
        .unwrap();
}

fn subscription(
    id: &str,
    topic: &str,
    owner: &str,
    protocol: &str,
    endpoint: &str,
) -> SubscriptionRow {
    SubscriptionRow {
        id: id.into(),
        topic_id: topic.into(),
        owner: Some(owner.into()),
        protocol: protocol.into(),
        endpoint: endpoint.into(),
        status: "confirmed".into(),
        confirm_token_hash: None,
        confirm_expires_at: None,
        filter_policy: None,
        secret: None,
        previous_secret: None,
        previous_secret_until: None,
        endpoint_keys: None,
        created_at: t0(),
        confirmed_at: Some(t0()),
    }
}

fn message(id: &str, topic: &str) -> MessageRow {
    MessageRow {
        id: id.into(),
        topic_id: topic.into(),
        channel: "topic".into(),
        recipient: topic.into(),
        subject: format!("subject {id}"),
        body: format!("body {id}"),
        html: Some("<p>hi</p>".into()),
        attributes: r#"{"station":"s1"}"#.into(),
        payload: r#"{"kind":"test"}"#.into(),
        created_at: t0(),
    }
}

fn delivery(sub: &SubscriptionRow, key: Option<&str>, at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        subscription_id: Some(sub.id.clone()),
        protocol: sub.protocol.clone(),
        endpoint: sub.endpoint.clone(),
        user_id: sub.owner.clone(),
        idempotency_key: key.map(str::to_string),
        not_before_ms: ms(at),
    }
}

async fn subscriptions_confirm_within_three_days(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    topic(&store, "station:s2").await;
    let mut pending = subscription("sub1", "station:s1", "u1", "webhook", "https://h.example/x");
    pending.status = "pending".into();
    pending.confirm_token_hash = Some("hash1".into());
    pending.confirm_expires_at = Some(t0() + Duration::days(3));
    pending.confirmed_at = None;
    store.insert_subscription(&pending).await.unwrap();
    let mut second = pending.clone();
    second.id = "sub2".into();
    second.topic_id = "station:s2".into();
    second.confirm_token_hash = Some("hash2".into());
    store.insert_subscription(&second).await.unwrap();
    assert!(store
        .confirmed_subscriptions("station:s1")
        .await
        .unwrap()
        .is_empty());
    assert!(!store
        .endpoint_confirmed("u1", "webhook", "https://h.example/x")
        .await
        .unwrap());

    // An expired token confirms nothing; a wrong one neither.
    assert!(store
        .confirm_subscription("hash1", t0() + Duration::days(3) + Duration::seconds(1))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .confirm_subscription("nope", t0())
        .await
        .unwrap()
        .is_none());
    let confirmed = store
        .confirm_subscription("hash1", t0() + Duration::days(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(confirmed.status, "confirmed");
    // Confirming the destination confirms the owner's other pending subscription to it.
    assert_eq!(
        store.subscription("sub2").await.unwrap().unwrap().status,
        "confirmed"
    );
    assert!(store
        .endpoint_confirmed("u1", "webhook", "https://h.example/x")
        .await
        .unwrap());
    // A token works once.
    assert!(store
        .confirm_subscription("hash1", t0())
        .await
        .unwrap()
        .is_none());

    assert!(store
        .set_filter_policy("sub1", Some(r#"{"aqi":[{"numeric":[">=",101]}]}"#))
        .await
        .unwrap());
    assert!(store
        .rotate_secret("sub1", "whsec_new", t0() + Duration::days(1))
        .await
        .unwrap());
    let s = store.subscription("sub1").await.unwrap().unwrap();
    assert_eq!(s.secret.as_deref(), Some("whsec_new"));
    assert_eq!(s.previous_secret, None);
    assert_eq!(s.previous_secret_until, Some(t0() + Duration::days(1)));
    assert_eq!(store.subscriptions_of("u1").await.unwrap().len(), 2);

    // Unconfirmed subscriptions whose token expired are purged.
    let mut stale = pending.clone();
    stale.id = "sub3".into();
    stale.endpoint = "https://other.example/".into();
    stale.confirm_token_hash = Some("hash3".into());
    store.insert_subscription(&stale).await.unwrap();
    assert_eq!(
        store
            .purge_unconfirmed(t0() + Duration::days(4))
            .await
            .unwrap(),
        1
    );
    assert!(store.subscription("sub3").await.unwrap().is_none());
    assert!(store.delete_subscription("sub2").await.unwrap());
    assert!(!store.delete_subscription("sub2").await.unwrap());
}

async fn publish_keeps_ids_and_drops_repeated_keys(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    let sub = subscription("sub1", "station:s1", "u1", "webhook", "https://h.example/x");
    store.insert_subscription(&sub).await.unwrap();
    let m = message("m1", "station:s1");
    let d = delivery(&sub, Some("rule1:ep1:sub1"), t0());
    assert_eq!(
        store.publish(&m, std::slice::from_ref(&d)).await.unwrap(),
        1
    );
    // The rule fires again for the same episode: same key, nothing new.
    let mut again = message("m2", "station:s1");
    again.subject = "again".into();
    assert_eq!(
        store
            .publish(&again, std::slice::from_ref(&d))
            .await
            .unwrap(),
        0
    );
    // The same message id again keeps the first message.
    assert_eq!(
        store
            .publish(&m, &[delivery(&sub, None, t0())])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.message("m1").await.unwrap().unwrap(), m);
    let claimed = store.claim_deliveries(ms(t0()), 30_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.message.id == "m1"));
    assert_eq!(claimed[0].subscription.as_ref().unwrap().id, "sub1");
}

async fn leases_retries_dead_letters_and_redrives(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    let sub = subscription("sub1", "station:s1", "u1", "webhook", "https://h.example/x");
    store.insert_subscription(&sub).await.unwrap();
    store
        .publish(&message("m1", "station:s1"), &[delivery(&sub, None, t0())])
        .await
        .unwrap();
    // Deferred deliveries are not due before their time.
    store
        .publish(
            &message("m2", "station:s1"),
            &[delivery(&sub, None, t0() + Duration::hours(1))],
        )
        .await
        .unwrap();
    assert_eq!(
        store.next_due_ms().await.unwrap(),
        Some(ms(t0())),
        "the earliest due delivery"
    );

    let now = ms(t0());
    let first = store.claim_deliveries(now, 30_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    // Within the lease nobody else gets it.
    assert!(store
        .claim_deliveries(now + 29_999, 30_000, 10)
        .await
        .unwrap()
        .is_empty());
    // The lease expires (the worker was killed): the row is claimed again, the old holder's
    // outcome is refused.
    let second = store
        .claim_deliveries(now + 30_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 2);
    assert_ne!(first[0].lease_token, second[0].lease_token);
    assert!(!store
        .complete_delivery(
            first[0].id,
            &first[0].lease_token,
            &DeliveryOutcome::Delivered,
            t0()
        )
        .await
        .unwrap());
    // A failure schedules a retry with its error.
    let retry_at = now + 60_000;
    assert!(store
        .complete_delivery(
            second[0].id,
            &second[0].lease_token,
            &DeliveryOutcome::Retry {
                at_ms: retry_at,
                error: "HTTP 503".into()
            },
            t0(),
        )
        .await
        .unwrap());
    assert!(store
        .claim_deliveries(retry_at - 1, 30_000, 10)
        .await
        .unwrap()
        .is_empty());
    let third = store.claim_deliveries(retry_at, 30_000, 10).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    let counts = store.delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.retrying), (2, 1));
    // The last attempt fails: a dead letter the admin lists.
    assert!(store
        .complete_delivery(
            third[0].id,
            &third[0].lease_token,
            &DeliveryOutcome::Dead {
                error: "HTTP 500".into()
            },
            t0(),
        )
        .await
        .unwrap());
    let dead = store
        .deliveries(Some(DeliveryStatus::Dead), None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "m1");
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(dead[0].attempts, 3);
    // A dead letter is not due: ten days on, only the deferred delivery is.
    let later = store
        .claim_deliveries(now + 10 * 86_400_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].message.id, "m2");
    // Re-driven, it is due again with a fresh count, and the same message id.
    assert!(store.redrive(dead[0].id, retry_at).await.unwrap());
    assert!(
        !store.redrive(dead[0].id, retry_at).await.unwrap(),
        "no longer dead"
    );
    let again = store.claim_deliveries(retry_at, 30_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].message.id, "m1");
    assert!(store
        .complete_delivery(
            again[0].id,
            &again[0].lease_token,
            &DeliveryOutcome::Delivered,
            t0()
        )
        .await
        .unwrap());
    let row = store.delivery(again[0].id).await.unwrap().unwrap();
    assert_eq!(row.status, DeliveryStatus::Delivered);
    // A delivered row is never claimed again.
    assert!(store
        .claim_deliveries(retry_at + 10_000_000, 30_000, 10)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != row.id));
    assert_eq!(store.deliveries(None, None, 10).await.unwrap().len(), 2);
}

async fn redrive_all_and_gone_destinations(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    let push = subscription(
        "push1",
        "station:s1",
        "u1",
        "webpush",
        "http://push.example/1",
    );
    store.insert_subscription(&push).await.unwrap();
    let hook = subscription(
        "hook1",
        "station:s1",
        "u1",
        "webhook",
        "https://h.example/x",
    );
    store.insert_subscription(&hook).await.unwrap();
    store
        .publish(
            &message("m1", "station:s1"),
            &[delivery(&push, None, t0()), delivery(&hook, None, t0())],
        )
        .await
        .unwrap();
    let claimed = store.claim_deliveries(ms(t0()), 30_000, 10).await.unwrap();
    let (p, h) = (&claimed[0], &claimed[1]);
    assert_eq!(p.protocol, "webpush");
    // The push service says 410: the subscription is removed.
    assert!(store
        .complete_delivery(
            p.id,
            &p.lease_token,
            &DeliveryOutcome::Gone {
                error: "HTTP 410".into()
            },
            t0()
        )
        .await
        .unwrap());
    assert!(store.subscription("push1").await.unwrap().is_none());
    assert!(store
        .complete_delivery(
            h.id,
            &h.lease_token,
            &DeliveryOutcome::Dead {
                error: "timeout".into()
            },
            t0()
        )
        .await
        .unwrap());
    assert_eq!(store.redrive_all(ms(t0())).await.unwrap(), 1);
    assert_eq!(
        store
            .claim_deliveries(ms(t0()), 30_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn concurrent_claimers_never_share_a_delivery(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    let sub = subscription("sub1", "station:s1", "u1", "webhook", "https://h.example/x");
    store.insert_subscription(&sub).await.unwrap();
    let deliveries: Vec<NewDelivery> = (0..300)
        .map(|i| delivery(&sub, Some(&format!("k{i}")), t0()))
        .collect();
    store
        .publish(&message("m1", "station:s1"), &deliveries)
        .await
        .unwrap();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_deliveries(ms(t0()), 60_000, 7).await.unwrap();
                if batch.is_empty() {
                    break mine;
                }
                for c in batch {
                    assert!(store
                        .complete_delivery(c.id, &c.lease_token, &DeliveryOutcome::Delivered, t0())
                        .await
                        .unwrap());
                    mine.push(c.id);
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(
                seen.insert(id),
                "delivery {id} claimed twice within its lease"
            );
        }
    }
    assert_eq!(total, 300);
    assert_eq!(store.delivery_counts().await.unwrap().delivered, 300);
}

async fn codes_and_their_mail_commit_together(store: SqlStore) {
    // A row written the old way stays readable.
    let legacy = OutboxMessage {
        channel: "email".into(),
        recipient: "a@example.org".into(),
        subject: "old".into(),
        body: "old code".into(),
        created_at: t0(),
    };
    store.push_outbox(&legacy).await.unwrap();
    let code = VerificationCode {
        email: "a@example.org".into(),
        purpose: "confirm".into(),
        code_hash: "h".into(),
        expires_at: t0() + Duration::hours(24),
        attempts: 0,
    };
    let mail = MessageRow {
        id: "mail1".into(),
        topic_id: "account-mail".into(),
        channel: "email".into(),
        recipient: "a@example.org".into(),
        subject: "Your code".into(),
        body: "Your code is 123456".into(),
        html: None,
        attributes: "{}".into(),
        payload: "{}".into(),
        created_at: t0(),
    };
    let d = NewDelivery {
        subscription_id: None,
        protocol: "email".into(),
        endpoint: "a@example.org".into(),
        user_id: None,
        idempotency_key: None,
        not_before_ms: ms(t0()),
    };
    store.put_code_with_mail(&code, &mail, &d).await.unwrap();
    assert_eq!(
        store.code("a@example.org", "confirm").await.unwrap(),
        Some(code)
    );
    let outbox = store.outbox("a@example.org").await.unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[0], legacy);
    assert_eq!(outbox[1].body, "Your code is 123456");
    let claimed = store.claim_deliveries(ms(t0()), 30_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message, mail);
    assert!(claimed[0].subscription.is_none());
}

async fn live_events_replay_after_an_id(store: SqlStore) {
    user(&store, "u1").await;
    user(&store, "u2").await;
    topic(&store, "station:s1").await;
    let live1 = subscription("live1", "station:s1", "u1", "live", "u1");
    let live2 = subscription("live2", "station:s1", "u2", "live", "u2");
    store.insert_subscription(&live1).await.unwrap();
    store.insert_subscription(&live2).await.unwrap();
    for i in 0..3 {
        store
            .publish(
                &message(&format!("m{i}"), "station:s1"),
                &[delivery(&live1, None, t0()), delivery(&live2, None, t0())],
            )
            .await
            .unwrap();
    }
    for c in store.claim_deliveries(ms(t0()), 30_000, 100).await.unwrap() {
        store
            .complete_delivery(c.id, &c.lease_token, &DeliveryOutcome::Delivered, t0())
            .await
            .unwrap();
    }
    let all = store.live_events_after("u1", 0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.message.id.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    let after = store.live_events_after("u1", all[0].id, 100).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].message.id, "m1");
    assert_eq!(
        store.live_events_after("u2", 0, 100).await.unwrap().len(),
        3
    );
}

async fn rules_episodes_and_digests(store: SqlStore) {
    user(&store, "u1").await;
    topic(&store, "station:s1").await;
    let sub = subscription("sub1", "station:s1", "u1", "email", "u1@example.org");
    store.insert_subscription(&sub).await.unwrap();
    let mut rule = AlertRuleRow {
        id: "r1".into(),
        user_id: "u1".into(),
        spec: r#"{"target":{"station":"s1"}}"#.into(),
        channels: vec!["sub1".into()],
        paused: false,
        state: "{}".into(),
        created_at: t0(),
        updated_at: t0(),
    };
    store.insert_rule(&rule).await.unwrap();
    assert_eq!(store.rule("r1").await.unwrap(), Some(rule.clone()));
    assert_eq!(store.active_rules().await.unwrap().len(), 1);

    // Opening an episode writes the state, the episode and its message at once.
    let episode = EpisodeRow {
        id: "r1:1".into(),
        key: "r1".into(),
        opened_at: t0(),
        closed_at: None,
        detail: r#"{"aqi":160}"#.into(),
    };
    let notice = EpisodeNotice::Message {
        message: Box::new(message("r1:1:open", "station:s1")),
        deliveries: vec![delivery(&sub, Some("r1:r1:1:open:sub1"), t0())],
    };
    store
        .record_episode(
            Some(("r1", r#"{"open":"r1:1"}"#)),
            &EpisodeChange::Open(episode.clone()),
            &notice,
        )
        .await
        .unwrap();
    // The same transition again (a crash before the evaluator saw it commit) sends nothing new.
    store
        .record_episode(
            Some(("r1", r#"{"open":"r1:1"}"#)),
            &EpisodeChange::Open(episode.clone()),
            &notice,
        )
        .await
        .unwrap();
    assert_eq!(store.open_episodes().await.unwrap(), vec![episode.clone()]);
    assert_eq!(
        store.rule("r1").await.unwrap().unwrap().state,
        r#"{"open":"r1:1"}"#
    );
    assert_eq!(store.delivery_counts().await.unwrap().pending, 1);
    store
        .record_episode(
            Some(("r1", "{}")),
            &EpisodeChange::Close {
                id: "r1:1".into(),
                closed_at: t0() + Duration::hours(3),
            },
            &EpisodeNotice::DigestLine {
                rule_id: "r1".into(),
                line: "cleared".into(),
            },
        )
        .await
        .unwrap();
    assert!(store.open_episodes().await.unwrap().is_empty());
    let history = store.episodes_of("r1", 10).await.unwrap();
    assert_eq!(history[0].closed_at, Some(t0() + Duration::hours(3)));

    let items = store.unsent_digest_items().await.unwrap();
    assert_eq!(items.len(), 1);
    store
        .send_digest(
            &[items[0].id],
            &message("digest:r1:2026-03-01", "station:s1"),
            &[delivery(&sub, Some("digest:r1:2026-03-01:sub1"), t0())],
            t0(),
        )
        .await
        .unwrap();
    assert!(store.unsent_digest_items().await.unwrap().is_empty());
    assert_eq!(store.delivery_counts().await.unwrap().pending, 2);

    rule.paused = true;
    rule.channels = vec![];
    assert!(store.update_rule(&rule).await.unwrap());
    assert!(store.active_rules().await.unwrap().is_empty());
    assert_eq!(
        store.rules_of("u1").await.unwrap()[0].channels,
        Vec::<String>::new()
    );
    assert!(store.delete_rule("r1").await.unwrap());
    assert!(store.rule("r1").await.unwrap().is_none());
}

async fn settings_keep_the_first_value(store: SqlStore) {
    assert_eq!(store.setting("vapid").await.unwrap(), None);
    assert_eq!(store.init_setting("vapid", "a").await.unwrap(), "a");
    assert_eq!(store.init_setting("vapid", "b").await.unwrap(), "a");
    assert_eq!(store.setting("vapid").await.unwrap().as_deref(), Some("a"));
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
    subscriptions_confirm_within_three_days,
    publish_keeps_ids_and_drops_repeated_keys,
    leases_retries_dead_letters_and_redrives,
    redrive_all_and_gone_destinations,
    concurrent_claimers_never_share_a_delivery,
    codes_and_their_mail_commit_together,
    live_events_replay_after_an_id,
    rules_episodes_and_digests,
    settings_keep_the_first_value,
);
