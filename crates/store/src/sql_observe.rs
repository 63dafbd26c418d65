//! [`ObserveStore`] on SQLite and PostgreSQL, in the SQL both understand (see `sql.rs`).
//!
//! The audit trail's appenders take turns on the single `audit_head` row: an `UPDATE` of it
//! opens every append and digest transaction, which on PostgreSQL locks the row until commit and
//! on SQLite takes the database's write lock, so writers in other processes (the CLI beside a
//! running server) queue behind it instead of forking the chain.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::observe::{
    AlarmDefinitionRow, AlarmHistoryRow, AlarmStateRow, AuditCheckpointRow, AuditDigestRow,
    AuditHead, AuditOutcome, AuditQuery, AuditRow, AuditSealer, DigestContext, DigestMaker,
    ObserveStore, PoolStatus, RollupRow,
};
use crate::sql::{opt_time, time};
use crate::{Backend, Result, SqlStore, StoreError};

const ROLLUP_COLUMNS: &str = "metric, labels, resolution, ts, source, count, sum, min, max, sketch";
const AUDIT_COLUMNS: &str = "seq, event_id, event_time, event_source, event_name, user_type, \
     user_id, error_code, read_only, request_id, record, prev_hash, hash";
const DIGEST_COLUMNS: &str = "number, blob_key, body, signature, last_seq, created_at, written_at";
const HISTORY_COLUMNS: &str =
    "id, name, at, old_state, new_state, reason, reason_data, notified_at";

/// Rows per multi-row INSERT (13 values a row for audit records stays far below both
/// backends' bind limits).
const CHUNK: usize = 200;

/// `INSERT INTO table (columns) VALUES (…),(…)` for `rows` rows of `width` values; SQLite gets
/// anonymous placeholders (see `insert_sql` in `sql.rs` for why).
fn multi_insert(backend: Backend, head: &str, width: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 0..width {
            if j > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", i * width + j + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

fn rollup_from_row(row: &AnyRow) -> Result<RollupRow> {
    Ok(RollupRow {
        metric: row.try_get("metric")?,
        labels: row.try_get("labels")?,
        resolution: row.try_get("resolution")?,
        ts: row.try_get("ts")?,
        source: row.try_get("source")?,
        count: row.try_get("count")?,
        sum: row.try_get("sum")?,
        min: row.try_get("min")?,
        max: row.try_get("max")?,
        sketch: row.try_get("sketch")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        event_time: row.try_get("event_time")?,
        event_source: row.try_get("event_source")?,
        event_name: row.try_get("event_name")?,
        user_type: row.try_get("user_type")?,
        user_id: row.try_get("user_id")?,
        error_code: row.try_get("error_code")?,
        read_only: row.try_get::<i64, _>("read_only")? != 0,
        request_id: row.try_get("request_id")?,
        record: row.try_get("record")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn digest_from_row(row: &AnyRow) -> Result<AuditDigestRow> {
    Ok(AuditDigestRow {
        number: row.try_get("number")?,
        blob_key: row.try_get("blob_key")?,
        body: row.try_get("body")?,
        signature: row.try_get("signature")?,
        last_seq: row.try_get("last_seq")?,
        created_at: time(row.try_get("created_at")?)?,
        written_at: opt_time(row.try_get("written_at")?)?,
    })
}

fn history_from_row(row: &AnyRow) -> Result<AlarmHistoryRow> {
    Ok(AlarmHistoryRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        at: time(row.try_get("at")?)?,
        old_state: row.try_get("old_state")?,
        new_state: row.try_get("new_state")?,
        reason: row.try_get("reason")?,
        reason_data: row.try_get("reason_data")?,
        notified_at: opt_time(row.try_get("notified_at")?)?,
    })
}

/// Takes the appenders' turn inside `tx` and reads the head and the digest counter.
async fn lock_head(tx: &mut Transaction<'_, Any>) -> Result<(AuditHead, i64)> {
    sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT last_seq, last_hash, digest_number FROM audit_head WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok((
        AuditHead {
            seq: row.try_get("last_seq")?,
            hash: row.try_get("last_hash")?,
        },
        row.try_get("digest_number")?,
    ))
}

impl SqlStore {
    async fn insert_audit_rows(
        &self,
        tx: &mut Transaction<'_, Any>,
        rows: &[AuditRow],
    ) -> Result<()> {
        let head = format!("INSERT INTO audit_records ({AUDIT_COLUMNS})");
        for chunk in rows.chunks(CHUNK) {
            let sql = multi_insert(crate::Store::backend(self), &head, 13, chunk.len());
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.seq)
                    .bind(&r.event_id)
                    .bind(r.event_time)
                    .bind(&r.event_source)
                    .bind(&r.event_name)
                    .bind(&r.user_type)
                    .bind(r.user_id.as_deref())
                    .bind(r.error_code.as_deref())
                    .bind(i64::from(r.read_only))
                    .bind(r.request_id.as_deref())
                    .bind(&r.record)
                    .bind(&r.prev_hash)
                    .bind(&r.hash);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// One audit row as SQLite's `json_array` packs it, in [`AUDIT_COLUMNS`] order.
type PackedAuditRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    String,
    String,
    String,
);

impl SqlStore {
    /// `audit_records` on SQLite: sqlx hands SQLite rows over one at a time from a worker
    /// thread, which for a million records cost more than checking them; one JSON array per
    /// page (the same idea as `readings` in `sql.rs`) takes one hand-over.
    async fn packed_audit_records(&self, from_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let packed: Option<String> = sqlx::query_scalar(&format!(
            "SELECT json_group_array(json_array({AUDIT_COLUMNS}) ORDER BY seq) FROM \
             (SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2)"
        ))
        .bind(from_seq)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<PackedAuditRow> = match packed {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("packed audit records: {e}")))?,
            None => Vec::new(),
        };
        Ok(rows
            .into_iter()
            .map(|r| AuditRow {
                seq: r.0,
                event_id: r.1,
                event_time: r.2,
                event_source: r.3,
                event_name: r.4,
                user_type: r.5,
                user_id: r.6,
                error_code: r.7,
                read_only: r.8 != 0,
                request_id: r.9,
                record: r.10,
                prev_hash: r.11,
                hash: r.12,
            })
            .collect())
    }
}

/// Checks that `rows` continue the chain at `head` (the sealer's contract).
fn check_sealed(head: &AuditHead, rows: &[AuditRow]) -> Result<()> {
    for (expected, r) in (head.seq + 1..).zip(rows) {
        if r.seq != expected {
            return Err(StoreError::Corrupt(format!(
                "audit batch out of order: sequence {} where {expected} was due",
                r.seq
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl ObserveStore for SqlStore {
    fn pool_status(&self) -> PoolStatus {
        PoolStatus {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn put_rollups(&self, rows: &[RollupRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // The last row of a key wins; PostgreSQL refuses to update one row twice in a statement.
        let mut latest: HashMap<(&str, i64, i64, &str, &str), &RollupRow> = HashMap::new();
        for r in rows {
            latest.insert((&r.metric, r.resolution, r.ts, &r.labels, &r.source), r);
        }
        let rows: Vec<&RollupRow> = latest.into_values().collect();
        let head = format!("INSERT INTO metric_rollups ({ROLLUP_COLUMNS})");
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut sql = multi_insert(crate::Store::backend(self), &head, 10, chunk.len());
            sql.push_str(
                " ON CONFLICT (metric, resolution, ts, labels, source) DO UPDATE SET \
                 count = excluded.count, sum = excluded.sum, min = excluded.min, \
                 max = excluded.max, sketch = excluded.sketch",
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.metric)
                    .bind(&r.labels)
                    .bind(r.resolution)
                    .bind(r.ts)
                    .bind(&r.source)
                    .bind(r.count)
                    .bind(r.sum)
                    .bind(r.min)
                    .bind(r.max)
                    .bind(&r.sketch);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rollups(
        &self,
        metric: &str,
        resolution: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLLUP_COLUMNS} FROM metric_rollups \
             WHERE metric = $1 AND resolution = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, labels, source"
        ))
        .bind(metric)
        .bind(resolution)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollup_from_row).collect()
    }

    async fn rollup_series(&self, resolution: i64, from: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT metric, labels FROM metric_rollups WHERE resolution = $1 AND ts >= $2 \
             ORDER BY metric, labels",
        )
        .bind(resolution)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("metric")?, r.try_get("labels")?)))
            .collect()
    }

    async fn expire_rollups(&self, resolution: i64, before: i64) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM metric_rollups WHERE resolution = $1 AND ts < $2")
            .bind(resolution)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn put_alarm_definition(&self, row: &AlarmDefinitionRow) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO alarm_definitions (name, definition, origin, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
             origin = excluded.origin, updated_at = excluded.updated_at",
        )
        .bind(&row.name)
        .bind(&row.definition)
        .bind(&row.origin)
        .bind(row.updated_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn alarm_definitions(&self) -> Result<Vec<AlarmDefinitionRow>> {
        let rows = sqlx::query(
            "SELECT name, definition, origin, updated_at FROM alarm_definitions ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlarmDefinitionRow {
                    name: r.try_get("name")?,
                    definition: r.try_get("definition")?,
                    origin: r.try_get("origin")?,
                    updated_at: time(r.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    async fn delete_alarm_definition(&self, name: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM alarm_definitions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM alarm_states WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn alarm_states(&self) -> Result<Vec<AlarmStateRow>> {
        let rows = sqlx::query(
            "SELECT name, state, reason, reason_data, updated_at, evaluated_through \
             FROM alarm_states ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlarmStateRow {
                    name: r.try_get("name")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    reason_data: r.try_get("reason_data")?,
                    updated_at: time(r.try_get("updated_at")?)?,
                    evaluated_through: r.try_get("evaluated_through")?,
                })
            })
            .collect()
    }

    async fn save_alarm_state(
        &self,
        s: &AlarmStateRow,
        change: Option<&AlarmHistoryRow>,
    ) -> Result<Option<i64>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO alarm_states (name, state, reason, reason_data, updated_at, evaluated_through) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET state = excluded.state, \
             reason = excluded.reason, reason_data = excluded.reason_data, \
             updated_at = excluded.updated_at, evaluated_through = excluded.evaluated_through",
        )
        .bind(&s.name)
        .bind(&s.state)
        .bind(&s.reason)
        .bind(&s.reason_data)
        .bind(s.updated_at.timestamp())
        .bind(s.evaluated_through)
        .execute(&mut *tx)
        .await?;
        let id = match change {
            None => None,
            Some(h) => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO alarm_history (name, at, old_state, new_state, reason, reason_data, notified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(&h.name)
                .bind(h.at.timestamp())
                .bind(&h.old_state)
                .bind(&h.new_state)
                .bind(&h.reason)
                .bind(&h.reason_data)
                .bind(h.notified_at.map(|t| t.timestamp()))
                .fetch_one(&mut *tx)
                .await?,
            ),
        };
        tx.commit().await?;
        Ok(id)
    }

    async fn alarm_history(
        &self,
        name: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AlarmHistoryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {HISTORY_COLUMNS} FROM alarm_history \
             WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(name)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history_from_row).collect()
    }

    async fn unnotified_alarm_changes(&self, limit: u32) -> Result<Vec<AlarmHistoryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {HISTORY_COLUMNS} FROM alarm_history WHERE notified_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history_from_row).collect()
    }

    async fn mark_alarm_notified(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE alarm_history SET notified_at = $1 WHERE id = $2")
            .bind(at.timestamp())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn append_audit(&self, seal: &mut AuditSealer<'_>) -> Result<AuditHead> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let (head, _) = lock_head(&mut tx).await?;
        let rows = seal(&head);
        let Some(last) = rows.last() else {
            return Ok(head);
        };
        check_sealed(&head, &rows)?;
        self.insert_audit_rows(&mut tx, &rows).await?;
        sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
            .bind(last.seq)
            .bind(&last.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AuditHead {
            seq: last.seq,
            hash: last.hash.clone(),
        })
    }

    async fn audit_head(&self) -> Result<AuditHead> {
        let row = sqlx::query("SELECT last_seq, last_hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(AuditHead {
            seq: row.try_get("last_seq")?,
            hash: row.try_get("last_hash")?,
        })
    }

    async fn audit_records(&self, from_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        if crate::Store::backend(self) == Backend::Sqlite {
            return self.packed_audit_records(from_seq, limit).await;
        }
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(from_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_record(&self, seq: i64) -> Result<Option<AuditRow>> {
        let row = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq = $1"
        ))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(audit_from_row).transpose()
    }

    async fn audit_bounds(&self) -> Result<Option<(i64, i64, i64)>> {
        let row =
            sqlx::query("SELECT MIN(seq) AS lo, MAX(seq) AS hi, COUNT(*) AS n FROM audit_records")
                .fetch_one(&self.pool)
                .await?;
        let lo: Option<i64> = row.try_get("lo")?;
        let hi: Option<i64> = row.try_get("hi")?;
        let n: i64 = row.try_get("n")?;
        Ok(lo.zip(hi).map(|(lo, hi)| (lo, hi, n)))
    }

    async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        // Text parameters first ($1…), then numbers, so binding needs no bookkeeping.
        for (column, value) in [
            ("user_id", &q.user_id),
            ("event_name", &q.event_name),
            ("event_source", &q.event_source),
        ] {
            if let Some(v) = value {
                texts.push(v);
                clauses.push(format!("{column} = ${}", texts.len()));
            }
        }
        let mut number_clause = |clause: &str, value: i64| {
            numbers.push(value);
            clause.replace('#', &format!("${}", texts.len() + numbers.len()))
        };
        let mut numeric = Vec::new();
        if let Some(from) = q.from {
            numeric.push(number_clause("event_time >= #", from));
        }
        if let Some(to) = q.to {
            numeric.push(number_clause("event_time < #", to));
        }
        if let Some(before) = q.before_seq {
            numeric.push(number_clause("seq < #", before));
        }
        let limit = number_clause("#", i64::from(q.limit));
        clauses.extend(numeric);
        match q.outcome {
            Some(AuditOutcome::Success) => clauses.push("error_code IS NULL".into()),
            Some(AuditOutcome::Error) => clauses.push("error_code IS NOT NULL".into()),
            None => {}
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_records {filter} ORDER BY seq DESC LIMIT {limit}"
        );
        let mut query = sqlx::query(&sql);
        for t in texts {
            query = query.bind(t);
        }
        for n in numbers {
            query = query.bind(n);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn create_audit_digest(&self, make: &mut DigestMaker<'_>) -> Result<AuditDigestRow> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let (head, last_number) = lock_head(&mut tx).await?;
        let previous = sqlx::query(&format!(
            "SELECT {DIGEST_COLUMNS} FROM audit_digests ORDER BY number DESC LIMIT 1"
        ))
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(digest_from_row)
        .transpose()?;
        let number = last_number.max(previous.as_ref().map_or(0, |p| p.number)) + 1;
        let digest = make(&DigestContext {
            head,
            number,
            previous,
        });
        if digest.number != number {
            return Err(StoreError::Corrupt(format!(
                "digest numbered {} where {number} was due",
                digest.number
            )));
        }
        sqlx::query(&format!(
            "INSERT INTO audit_digests ({DIGEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(digest.number)
        .bind(&digest.blob_key)
        .bind(&digest.body)
        .bind(&digest.signature)
        .bind(digest.last_seq)
        .bind(digest.created_at.timestamp())
        .bind(digest.written_at.map(|t| t.timestamp()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET digest_number = $1 WHERE id = 1")
            .bind(number)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(digest)
    }

    async fn mark_audit_digest_written(&self, number: i64, at: DateTime<Utc>) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE audit_digests SET written_at = $1 WHERE number = $2")
            .bind(at.timestamp())
            .bind(number)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_digests(&self) -> Result<Vec<AuditDigestRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DIGEST_COLUMNS} FROM audit_digests ORDER BY number"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(digest_from_row).collect()
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpointRow>> {
        let row = sqlx::query(
            "SELECT through_seq, body, signature, created_at FROM audit_checkpoint WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AuditCheckpointRow {
                through_seq: r.try_get("through_seq")?,
                body: r.try_get("body")?,
                signature: r.try_get("signature")?,
                created_at: time(r.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn expire_audit(&self, c: &AuditCheckpointRow) -> Result<u64> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoint (id, through_seq, body, signature, created_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET through_seq = excluded.through_seq, \
             body = excluded.body, signature = excluded.signature, created_at = excluded.created_at",
        )
        .bind(c.through_seq)
        .bind(&c.body)
        .bind(&c.signature)
        .bind(c.created_at.timestamp())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
            .bind(c.through_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn observe_value(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM observe_values WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn put_observe_value_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO observe_values (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM observe_values WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
