//! [`NotifyStore`] on SQLite and PostgreSQL, in the SQL both understand (see `sql.rs`).
//!
//! The delivery queue is this table: a worker leases due rows with one `UPDATE … RETURNING`
//! (on PostgreSQL its candidate rows are picked `FOR UPDATE SKIP LOCKED`, so concurrent workers
//! never take one row; SQLite has one writer at a time anyway). A lease that expires makes the
//! row due again, so a killed worker loses nothing; only the lease's holder can record an outcome.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::identity::VerificationCode;
use crate::notify::{
    AlertRuleRow, ClaimedDelivery, DeliveryCounts, DeliveryOutcome, DeliveryRow, DeliveryStatus,
    DigestItemRow, EpisodeChange, EpisodeNotice, EpisodeRow, LiveEventRow, MessageRow, NewDelivery,
    NotifyStore, SubscriptionRow, TopicRow,
};
use crate::sql::{opt_time, time};
use crate::{Backend, Result, SqlStore, Store, StoreError};

const SUBSCRIPTION_COLUMNS: &str = "id, topic_id, owner, protocol, endpoint, status, \
     confirm_token_hash, confirm_expires_at, filter_policy, secret, previous_secret, \
     previous_secret_until, endpoint_keys, created_at, confirmed_at";
const MESSAGE_COLUMNS: &str =
    "message_id, topic_id, channel, recipient, subject, body, html, attributes, payload, created_at";
const DELIVERY_COLUMNS: &str = "d.id, o.message_id, o.topic_id, o.subject, d.subscription_id, \
     d.protocol, d.endpoint, d.user_id, d.status, d.attempts, d.next_attempt_ms, d.last_error, \
     d.created_at, d.finished_at";
const RULE_COLUMNS: &str = "id, user_id, spec, channels, paused, state, created_at, updated_at";
const EPISODE_COLUMNS: &str = "id, key, opened_at, closed_at, detail";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn subscription_from_row(r: &AnyRow) -> Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        topic_id: r.try_get("topic_id")?,
        owner: r.try_get("owner")?,
        protocol: r.try_get("protocol")?,
        endpoint: r.try_get("endpoint")?,
        status: r.try_get("status")?,
        confirm_token_hash: r.try_get("confirm_token_hash")?,
        confirm_expires_at: opt_time(r.try_get("confirm_expires_at")?)?,
        filter_policy: r.try_get("filter_policy")?,
        secret: r.try_get("secret")?,
        previous_secret: r.try_get("previous_secret")?,
        previous_secret_until: opt_time(r.try_get("previous_secret_until")?)?,
        endpoint_keys: r.try_get("endpoint_keys")?,
        created_at: time(r.try_get("created_at")?)?,
        confirmed_at: opt_time(r.try_get("confirmed_at")?)?,
    })
}

fn message_from_row(r: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get("message_id")?,
        topic_id: r
            .try_get::<Option<String>, _>("topic_id")?
            .unwrap_or_default(),
        channel: r.try_get("channel")?,
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        html: r.try_get("html")?,
        attributes: r.try_get("attributes")?,
        payload: r.try_get("payload")?,
        created_at: time(r.try_get("created_at")?)?,
    })
}

fn delivery_from_row(r: &AnyRow) -> Result<DeliveryRow> {
    let status: String = r.try_get("status")?;
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        topic_id: r
            .try_get::<Option<String>, _>("topic_id")?
            .unwrap_or_default(),
        subject: r.try_get("subject")?,
        subscription_id: r.try_get("subscription_id")?,
        protocol: r.try_get("protocol")?,
        endpoint: r.try_get("endpoint")?,
        user_id: r.try_get("user_id")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("delivery status {status:?}")))?,
        attempts: r.try_get("attempts")?,
        next_attempt_ms: r.try_get("next_attempt_ms")?,
        last_error: r.try_get("last_error")?,
        created_at: time(r.try_get("created_at")?)?,
        finished_at: opt_time(r.try_get("finished_at")?)?,
    })
}

fn rule_from_row(r: &AnyRow) -> Result<AlertRuleRow> {
    let channels: String = r.try_get("channels")?;
    Ok(AlertRuleRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        spec: r.try_get("spec")?,
        channels: serde_json::from_str(&channels).map_err(corrupt)?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        state: r.try_get("state")?,
        created_at: time(r.try_get("created_at")?)?,
        updated_at: time(r.try_get("updated_at")?)?,
    })
}

fn episode_from_row(r: &AnyRow) -> Result<EpisodeRow> {
    Ok(EpisodeRow {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        opened_at: time(r.try_get("opened_at")?)?,
        closed_at: opt_time(r.try_get("closed_at")?)?,
        detail: r.try_get("detail")?,
    })
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token no other claim has (unique, not secret): 128 bits, as hex.
fn lease_prefix() -> String {
    use std::fmt::Write;
    let mut bytes = [0u8; 16];
    unique_bytes(&mut bytes);
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Fills `buf` with bytes that differ between calls and processes: std's randomly keyed hasher
/// over a counter, the process id and the clock.
fn unique_bytes(buf: &mut [u8]) {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

pub(crate) async fn insert_message(tx: &mut Transaction<'_, Any>, m: &MessageRow) -> Result<i64> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO outbox (message_id, topic_id, channel, recipient, subject, body, html, \
         attributes, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (message_id) DO NOTHING RETURNING id",
    )
    .bind(&m.id)
    .bind(&m.topic_id)
    .bind(&m.channel)
    .bind(&m.recipient)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(m.html.as_deref())
    .bind(&m.attributes)
    .bind(&m.payload)
    .bind(m.created_at.timestamp())
    .fetch_optional(&mut **tx)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => Ok(
            sqlx::query_scalar("SELECT id FROM outbox WHERE message_id = $1")
                .bind(&m.id)
                .fetch_one(&mut **tx)
                .await?,
        ),
    }
}

pub(crate) async fn insert_deliveries(
    tx: &mut Transaction<'_, Any>,
    outbox_id: i64,
    deliveries: &[NewDelivery],
    created_at: i64,
) -> Result<u64> {
    const ROWS: usize = 100;
    let mut written = 0;
    for chunk in deliveries.chunks(ROWS) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO notify_deliveries (outbox_id, subscription_id, protocol, endpoint, user_id, \
             idempotency_key, status, attempts, next_attempt_ms, created_at) VALUES {values} \
             ON CONFLICT (idempotency_key) DO NOTHING"
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(outbox_id)
                .bind(d.subscription_id.as_deref())
                .bind(&d.protocol)
                .bind(&d.endpoint)
                .bind(d.user_id.as_deref())
                .bind(d.idempotency_key.as_deref())
                .bind(d.not_before_ms)
                .bind(created_at);
        }
        written += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(written)
}

/// Records one attempt's outcome if `lease_token` still holds the lease.
async fn apply_outcome(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    lease_token: &str,
    outcome: &DeliveryOutcome,
    now: i64,
) -> Result<bool> {
    let held = "WHERE id = $1 AND lease_token = $2 AND status = 'pending'";
    let done = match outcome {
        DeliveryOutcome::Delivered => {
            sqlx::query(&format!(
                "UPDATE notify_deliveries SET status = 'delivered', lease_until_ms = NULL, \
                 lease_token = NULL, last_error = NULL, finished_at = $3 {held}"
            ))
            .bind(id)
            .bind(lease_token)
            .bind(now)
            .execute(&mut **tx)
            .await?
        }
        DeliveryOutcome::Retry { at_ms, error } => {
            sqlx::query(&format!(
                "UPDATE notify_deliveries SET next_attempt_ms = $3, lease_until_ms = NULL, \
                 lease_token = NULL, last_error = $4 {held}"
            ))
            .bind(id)
            .bind(lease_token)
            .bind(*at_ms)
            .bind(error)
            .execute(&mut **tx)
            .await?
        }
        DeliveryOutcome::Dead { error } => {
            sqlx::query(&format!(
                "UPDATE notify_deliveries SET status = 'dead', lease_until_ms = NULL, \
                 lease_token = NULL, last_error = $3, finished_at = $4 {held}"
            ))
            .bind(id)
            .bind(lease_token)
            .bind(error)
            .bind(now)
            .execute(&mut **tx)
            .await?
        }
        DeliveryOutcome::Gone { error } => {
            let sub: Option<Option<String>> = sqlx::query_scalar(&format!(
                "UPDATE notify_deliveries SET status = 'discarded', lease_until_ms = NULL, \
                 lease_token = NULL, last_error = $3, finished_at = $4 {held} \
                 RETURNING subscription_id"
            ))
            .bind(id)
            .bind(lease_token)
            .bind(error)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(Some(sub)) = &sub {
                sqlx::query("DELETE FROM notify_subscriptions WHERE id = $1")
                    .bind(sub)
                    .execute(&mut **tx)
                    .await?;
            }
            return Ok(sub.is_some());
        }
    };
    Ok(done.rows_affected() > 0)
}

impl SqlStore {
    async fn messages_by_outbox_id(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, MessageRow>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, {MESSAGE_COLUMNS} FROM outbox WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.insert(row.try_get::<i64, _>("id")?, message_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn subscriptions_by_id(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, SubscriptionRow>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscriptions WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for row in q.fetch_all(&self.pool).await? {
                let s = subscription_from_row(&row)?;
                out.insert(s.id.clone(), s);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl NotifyStore for SqlStore {
    async fn ensure_topic(&self, t: &TopicRow) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO notify_topics (id, kind, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.kind)
        .bind(&t.name)
        .bind(t.created_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn topic(&self, id: &str) -> Result<Option<TopicRow>> {
        let row = sqlx::query("SELECT id, kind, name, created_at FROM notify_topics WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TopicRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                name: r.try_get("name")?,
                created_at: time(r.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn topics(&self) -> Result<Vec<TopicRow>> {
        let rows = sqlx::query("SELECT id, kind, name, created_at FROM notify_topics ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TopicRow {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    created_at: time(r.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<()> {
        self.insert_subscriptions(std::slice::from_ref(s)).await
    }

    async fn insert_subscriptions(&self, subscriptions: &[SubscriptionRow]) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        for s in subscriptions {
            sqlx::query(&format!(
                "INSERT INTO notify_subscriptions ({SUBSCRIPTION_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(&s.id)
            .bind(&s.topic_id)
            .bind(s.owner.as_deref())
            .bind(&s.protocol)
            .bind(&s.endpoint)
            .bind(&s.status)
            .bind(s.confirm_token_hash.as_deref())
            .bind(s.confirm_expires_at.map(|t| t.timestamp()))
            .bind(s.filter_policy.as_deref())
            .bind(s.secret.as_deref())
            .bind(s.previous_secret.as_deref())
            .bind(s.previous_secret_until.map(|t| t.timestamp()))
            .bind(s.endpoint_keys.as_deref())
            .bind(s.created_at.timestamp())
            .bind(s.confirmed_at.map(|t| t.timestamp()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(subscription_from_row).transpose()
    }

    async fn confirmed_subscriptions(&self, topic_id: &str) -> Result<Vec<SubscriptionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscriptions \
             WHERE topic_id = $1 AND status = 'confirmed' ORDER BY created_at, id"
        ))
        .bind(topic_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn subscriptions_of(&self, owner: &str) -> Result<Vec<SubscriptionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscriptions \
             WHERE owner = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn endpoint_confirmed(
        &self,
        owner: &str,
        protocol: &str,
        endpoint: &str,
    ) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM notify_subscriptions WHERE owner = $1 AND protocol = $2 \
             AND endpoint = $3 AND status = 'confirmed' LIMIT 1",
        )
        .bind(owner)
        .bind(protocol)
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn confirm_subscription(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriptionRow>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscriptions \
             WHERE confirm_token_hash = $1 AND status = 'pending' AND confirm_expires_at >= $2"
        ))
        .bind(token_hash)
        .bind(now.timestamp())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut s = subscription_from_row(&row)?;
        sqlx::query(
            "UPDATE notify_subscriptions SET status = 'confirmed', confirmed_at = $1, \
             confirm_token_hash = NULL, confirm_expires_at = NULL \
             WHERE status = 'pending' AND (id = $2 OR (owner = $3 AND protocol = $4 AND endpoint = $5))",
        )
        .bind(now.timestamp())
        .bind(&s.id)
        .bind(s.owner.as_deref())
        .bind(&s.protocol)
        .bind(&s.endpoint)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        s.status = "confirmed".into();
        s.confirmed_at = Some(time(now.timestamp())?);
        s.confirm_token_hash = None;
        s.confirm_expires_at = None;
        Ok(Some(s))
    }

    async fn set_filter_policy(&self, id: &str, policy: Option<&str>) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE notify_subscriptions SET filter_policy = $1 WHERE id = $2")
            .bind(policy)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_secret(
        &self,
        id: &str,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE notify_subscriptions SET previous_secret = secret, previous_secret_until = $1, \
             secret = $2 WHERE id = $3",
        )
        .bind(previous_until.timestamp())
        .bind(secret)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM notify_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_unconfirmed(&self, now: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "DELETE FROM notify_subscriptions WHERE status = 'pending' AND confirm_expires_at < $1",
        )
        .bind(now.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn publish(&self, message: &MessageRow, deliveries: &[NewDelivery]) -> Result<u64> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let outbox_id = insert_message(&mut tx, message).await?;
        let written = insert_deliveries(
            &mut tx,
            outbox_id,
            deliveries,
            message.created_at.timestamp(),
        )
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn put_code_with_mail(
        &self,
        c: &VerificationCode,
        mail: &MessageRow,
        delivery: &NewDelivery,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO verification_codes (email, purpose, code_hash, expires_at, attempts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (email, purpose) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = excluded.attempts",
        )
        .bind(&c.email)
        .bind(&c.purpose)
        .bind(&c.code_hash)
        .bind(c.expires_at.timestamp())
        .bind(c.attempts)
        .execute(&mut *tx)
        .await?;
        let outbox_id = insert_message(&mut tx, mail).await?;
        insert_deliveries(
            &mut tx,
            outbox_id,
            std::slice::from_ref(delivery),
            mail.created_at.timestamp(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn message(&self, id: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE message_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE notify_deliveries SET lease_until_ms = $1, lease_token = $2 || id, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM notify_deliveries WHERE status = 'pending' \
                 AND next_attempt_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY next_attempt_ms, id LIMIT $4{lock}) \
             RETURNING id, lease_token, attempts, protocol, endpoint, user_id, outbox_id, subscription_id"
        );
        let rows = {
            let _turn = self.write_turn().await;
            sqlx::query(&sql)
                .bind(now_ms + lease_ms)
                .bind(format!("{}-", lease_prefix()))
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut outbox_ids = Vec::with_capacity(rows.len());
        let mut sub_ids = Vec::new();
        for r in &rows {
            outbox_ids.push(r.try_get::<i64, _>("outbox_id")?);
            if let Some(s) = r.try_get::<Option<String>, _>("subscription_id")? {
                sub_ids.push(s);
            }
        }
        outbox_ids.sort_unstable();
        outbox_ids.dedup();
        sub_ids.sort_unstable();
        sub_ids.dedup();
        let messages = self.messages_by_outbox_id(&outbox_ids).await?;
        let subscriptions = self.subscriptions_by_id(&sub_ids).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let outbox_id: i64 = r.try_get("outbox_id")?;
            let message = messages
                .get(&outbox_id)
                .cloned()
                .ok_or_else(|| corrupt(format!("delivery without its message {outbox_id}")))?;
            let subscription = r
                .try_get::<Option<String>, _>("subscription_id")?
                .and_then(|id| subscriptions.get(&id).cloned());
            claimed.push(ClaimedDelivery {
                id: r.try_get("id")?,
                lease_token: r.try_get("lease_token")?,
                attempts: r.try_get("attempts")?,
                protocol: r.try_get("protocol")?,
                endpoint: r.try_get("endpoint")?,
                user_id: r.try_get("user_id")?,
                message,
                subscription,
            });
        }
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    async fn complete_delivery(
        &self,
        id: i64,
        lease_token: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = self
            .complete_deliveries(&[(id, lease_token.to_string(), outcome.clone())], now)
            .await?;
        Ok(done[0])
    }

    async fn complete_deliveries(
        &self,
        outcomes: &[(i64, String, DeliveryOutcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (id, token, outcome) in outcomes {
            recorded.push(apply_outcome(&mut tx, *id, token, outcome, now.timestamp()).await?);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM notify_deliveries d JOIN outbox o ON o.id = d.outbox_id \
             WHERE ($1 = '' OR d.status = $1) AND d.id < $2 ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(status.map_or("", DeliveryStatus::as_str))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM notify_deliveries d JOIN outbox o ON o.id = d.outbox_id \
             WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn delivery_counts(&self) -> Result<DeliveryCounts> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n, SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS tried \
             FROM notify_deliveries GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut c = DeliveryCounts::default();
        for r in &rows {
            let n = r.try_get::<i64, _>("n")? as u64;
            match DeliveryStatus::parse(&r.try_get::<String, _>("status")?) {
                Some(DeliveryStatus::Pending) => {
                    c.pending = n;
                    c.retrying = r.try_get::<i64, _>("tried")? as u64;
                }
                Some(DeliveryStatus::Delivered) => c.delivered = n,
                Some(DeliveryStatus::Dead) => c.dead = n,
                Some(DeliveryStatus::Discarded) => c.discarded = n,
                None => {}
            }
        }
        Ok(c)
    }

    async fn redrive(&self, id: i64, now_ms: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE notify_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = $1, \
             finished_at = NULL WHERE id = $2 AND status = 'dead'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn redrive_all(&self, now_ms: i64) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE notify_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = $1, \
             finished_at = NULL WHERE status = 'dead'",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until_ms IS NOT NULL AND lease_until_ms > next_attempt_ms \
             THEN lease_until_ms ELSE next_attempt_ms END) FROM notify_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn live_events_after(
        &self,
        user_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LiveEventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT d.id AS delivery_id, {} FROM notify_deliveries d JOIN outbox o ON o.id = d.outbox_id \
             WHERE d.user_id = $1 AND d.protocol = 'live' AND d.id > $2 AND d.status = 'delivered' \
             ORDER BY d.id LIMIT $3",
            MESSAGE_COLUMNS
                .split(", ")
                .map(|c| format!("o.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(user_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveEventRow {
                    id: r.try_get("delivery_id")?,
                    message: message_from_row(r)?,
                })
            })
            .collect()
    }

    async fn insert_rule(&self, rule: &AlertRuleRow) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(&format!(
            "INSERT INTO notify_alert_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&rule.id)
        .bind(&rule.user_id)
        .bind(&rule.spec)
        .bind(serde_json::to_string(&rule.channels).map_err(corrupt)?)
        .bind(i64::from(rule.paused))
        .bind(&rule.state)
        .bind(rule.created_at.timestamp())
        .bind(rule.updated_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_rule(&self, rule: &AlertRuleRow) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE notify_alert_rules SET spec = $1, channels = $2, paused = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(&rule.spec)
        .bind(serde_json::to_string(&rule.channels).map_err(corrupt)?)
        .bind(i64::from(rule.paused))
        .bind(rule.updated_at.timestamp())
        .bind(&rule.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_rule(&self, id: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM notify_alert_rules WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rule(&self, id: &str) -> Result<Option<AlertRuleRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM notify_alert_rules WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from_row).transpose()
    }

    async fn rules_of(&self, user_id: &str) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM notify_alert_rules WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn active_rules(&self) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM notify_alert_rules WHERE paused = 0 ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn record_episode(
        &self,
        rule_state: Option<(&str, &str)>,
        change: &EpisodeChange,
        notice: &EpisodeNotice,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        if let Some((rule_id, state)) = rule_state {
            sqlx::query("UPDATE notify_alert_rules SET state = $1 WHERE id = $2")
                .bind(state)
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
        }
        match change {
            EpisodeChange::Open(e) => {
                sqlx::query(&format!(
                    "INSERT INTO notify_episodes ({EPISODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(&e.id)
                .bind(&e.key)
                .bind(e.opened_at.timestamp())
                .bind(e.closed_at.map(|t| t.timestamp()))
                .bind(&e.detail)
                .execute(&mut *tx)
                .await?;
            }
            EpisodeChange::Close { id, closed_at } => {
                sqlx::query(
                    "UPDATE notify_episodes SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL",
                )
                .bind(closed_at.timestamp())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            EpisodeChange::None => {}
        }
        match notice {
            EpisodeNotice::Message {
                message,
                deliveries,
            } => {
                let outbox_id = insert_message(&mut tx, message).await?;
                insert_deliveries(
                    &mut tx,
                    outbox_id,
                    deliveries,
                    message.created_at.timestamp(),
                )
                .await?;
            }
            EpisodeNotice::DigestLine { rule_id, line } => {
                sqlx::query(
                    "INSERT INTO notify_digest_items (rule_id, line, created_at) VALUES ($1, $2, $3)",
                )
                .bind(rule_id)
                .bind(line)
                .bind(Utc::now().timestamp())
                .execute(&mut *tx)
                .await?;
            }
            EpisodeNotice::Silent => {}
        }
        tx.commit().await?;
        Ok(())
    }

    async fn open_episodes(&self) -> Result<Vec<EpisodeRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EPISODE_COLUMNS} FROM notify_episodes WHERE closed_at IS NULL ORDER BY opened_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(episode_from_row).collect()
    }

    async fn episodes_of(&self, key: &str, limit: u32) -> Result<Vec<EpisodeRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EPISODE_COLUMNS} FROM notify_episodes WHERE key = $1 \
             ORDER BY opened_at DESC, id DESC LIMIT $2"
        ))
        .bind(key)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(episode_from_row).collect()
    }

    async fn unsent_digest_items(&self) -> Result<Vec<DigestItemRow>> {
        let rows = sqlx::query(
            "SELECT id, rule_id, line, created_at FROM notify_digest_items \
             WHERE sent_at IS NULL ORDER BY rule_id, created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DigestItemRow {
                    id: r.try_get("id")?,
                    rule_id: r.try_get("rule_id")?,
                    line: r.try_get("line")?,
                    created_at: time(r.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    async fn send_digest(
        &self,
        item_ids: &[i64],
        message: &MessageRow,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        for chunk in item_ids.chunks(500) {
            let sql = format!(
                "UPDATE notify_digest_items SET sent_at = $1 WHERE sent_at IS NULL AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now.timestamp());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let outbox_id = insert_message(&mut tx, message).await?;
        insert_deliveries(&mut tx, outbox_id, deliveries, now.timestamp()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM notify_settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        {
            let _turn = self.write_turn().await;
            sqlx::query(
                "INSERT INTO notify_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        }
        self.setting(key)
            .await?
            .ok_or_else(|| corrupt(format!("setting {key} vanished")))
    }
}
