//! [`MlStore`] on SQLite and PostgreSQL, in the SQL both understand (see `sql.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_domain::{Parameter, StationId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::ml::{
    AnomalyRecord, CancelOutcome, JobRecord, JobStatus, MlStore, ModelRecord, NewModel,
};
use crate::sql::{opt_time, time};
use crate::{Result, SqlStore, StoreError};

const MODEL_COLUMNS: &str = "id, station_id, parameter, version, created_at, artifact_key, checksum, size_bytes, \
     training_from, training_to, data_fingerprint, code_version, metrics, job_id, status, promoted_at";
const JOB_COLUMNS: &str =
    "id, status, request, progress, message, log, created_by, created_at, started_at, \
     finished_at, cancel_requested";

fn model_from_row(row: &AnyRow) -> Result<ModelRecord> {
    let station: String = row.try_get("station_id")?;
    let parameter: String = row.try_get("parameter")?;
    Ok(ModelRecord {
        id: row.try_get("id")?,
        station: StationId::parse(&station).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        parameter: parameter
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("unknown parameter {parameter:?}")))?,
        version: row.try_get("version")?,
        created_at: time(row.try_get("created_at")?)?,
        artifact_key: row.try_get("artifact_key")?,
        checksum: row.try_get("checksum")?,
        size_bytes: row.try_get("size_bytes")?,
        training_from: time(row.try_get("training_from")?)?,
        training_to: time(row.try_get("training_to")?)?,
        data_fingerprint: row.try_get("data_fingerprint")?,
        code_version: row.try_get("code_version")?,
        metrics: row.try_get("metrics")?,
        job_id: row.try_get("job_id")?,
        status: row.try_get("status")?,
        promoted_at: opt_time(row.try_get("promoted_at")?)?,
    })
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord> {
    let status: String = row.try_get("status")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?,
        request: row.try_get("request")?,
        progress: row.try_get("progress")?,
        message: row.try_get("message")?,
        log: row.try_get("log")?,
        created_by: row.try_get("created_by")?,
        created_at: time(row.try_get("created_at")?)?,
        started_at: opt_time(row.try_get("started_at")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
    })
}

impl SqlStore {
    /// Serves `model_id` for its series inside `tx`, retiring the one serving before.
    async fn serve_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        model_id: i64,
        station: &str,
        parameter: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE ml_models SET status = 'retired' WHERE station_id = $1 AND parameter = $2 AND status = 'serving'",
        )
        .bind(station)
        .bind(parameter)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE ml_models SET status = 'serving', promoted_at = $1 WHERE id = $2")
            .bind(at)
            .bind(model_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl MlStore for SqlStore {
    async fn insert_model(
        &self,
        m: &NewModel,
        artifact_key: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<ModelRecord> {
        let _turn = self.write_turn().await;
        // Two writers may pick the same next version; the unique key turns the loser away and
        // it tries the next one.
        for _ in 0..5 {
            let next: i64 = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM ml_models WHERE station_id = $1 AND parameter = $2",
            )
            .bind(m.station.as_str())
            .bind(m.parameter.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get("next")?;
            let inserted = sqlx::query(&format!(
                "INSERT INTO ml_models (station_id, parameter, version, created_at, artifact_key, checksum, size_bytes, \
                 training_from, training_to, data_fingerprint, code_version, metrics, job_id, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'candidate') \
                 ON CONFLICT (station_id, parameter, version) DO NOTHING RETURNING {MODEL_COLUMNS}"
            ))
            .bind(m.station.as_str())
            .bind(m.parameter.as_str())
            .bind(next)
            .bind(m.created_at.timestamp())
            .bind(artifact_key(next))
            .bind(&m.checksum)
            .bind(m.size_bytes)
            .bind(m.training_from.timestamp())
            .bind(m.training_to.timestamp())
            .bind(&m.data_fingerprint)
            .bind(&m.code_version)
            .bind(&m.metrics)
            .bind(m.job_id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = inserted {
                return model_from_row(&row);
            }
        }
        Err(StoreError::Corrupt(
            "could not assign a model version after 5 attempts".into(),
        ))
    }

    async fn model(&self, id: i64) -> Result<Option<ModelRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM ml_models WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    async fn models(
        &self,
        station: Option<&StationId>,
        parameter: Option<Parameter>,
    ) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM ml_models \
             WHERE ($1 IS NULL OR station_id = $1) AND ($2 IS NULL OR parameter = $2) \
             ORDER BY station_id, parameter, version DESC"
        ))
        .bind(station.map(|s| s.as_str().to_string()))
        .bind(parameter.map(|p| p.as_str().to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn serving_models(&self) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM ml_models WHERE status = 'serving' ORDER BY station_id, parameter"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn promote_model(&self, id: i64, actor: &str, at: DateTime<Utc>) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT station_id, parameter FROM ml_models WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let station: String = row.try_get("station_id")?;
        let parameter: String = row.try_get("parameter")?;
        Self::serve_in(&mut tx, id, &station, &parameter, at.timestamp()).await?;
        sqlx::query(
            "INSERT INTO ml_promotions (station_id, parameter, model_id, actor, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&station)
        .bind(&parameter)
        .bind(id)
        .bind(actor)
        .bind(at.timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rollback_model(
        &self,
        station: &StationId,
        parameter: Parameter,
        _actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ModelRecord>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let live = sqlx::query(
            "SELECT id, model_id FROM ml_promotions WHERE station_id = $1 AND parameter = $2 AND reverted_at IS NULL \
             ORDER BY id DESC LIMIT 2",
        )
        .bind(station.as_str())
        .bind(parameter.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let [latest, previous] = live.as_slice() else {
            return Ok(None);
        };
        let latest_id: i64 = latest.try_get("id")?;
        let previous_model: i64 = previous.try_get("model_id")?;
        sqlx::query("UPDATE ml_promotions SET reverted_at = $1 WHERE id = $2")
            .bind(at.timestamp())
            .bind(latest_id)
            .execute(&mut *tx)
            .await?;
        Self::serve_in(
            &mut tx,
            previous_model,
            station.as_str(),
            parameter.as_str(),
            at.timestamp(),
        )
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM ml_models WHERE id = $1"
        ))
        .bind(previous_model)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        model_from_row(&row).map(Some)
    }

    async fn insert_job(
        &self,
        request: &str,
        created_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "INSERT INTO ml_jobs (status, request, created_by, created_at) VALUES ('queued', $1, $2, $3) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(request)
        .bind(created_by)
        .bind(at.timestamp())
        .fetch_one(&self.pool)
        .await?;
        job_from_row(&row)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM ml_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs(&self, limit: i64) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM ml_jobs ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn claim_job(&self, at: DateTime<Utc>) -> Result<Option<JobRecord>> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "UPDATE ml_jobs SET status = 'running', started_at = $1 \
             WHERE id = (SELECT id FROM ml_jobs WHERE status = 'queued' ORDER BY id LIMIT 1) AND status = 'queued' \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(at.timestamp())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn job_progress(&self, id: i64, progress: f64, line: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE ml_jobs SET progress = $1, message = $2, log = log || $3 WHERE id = $4",
        )
        .bind(progress.clamp(0.0, 1.0))
        .bind(line)
        .bind(format!("{line}\n"))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish_job(
        &self,
        id: i64,
        status: JobStatus,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE ml_jobs SET status = $1, message = $2, log = log || $3, finished_at = $4, \
             progress = CASE WHEN $1 = 'succeeded' THEN 1.0 ELSE progress END WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(message)
        .bind(format!("{message}\n"))
        .bind(at.timestamp())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cancel_job(&self, id: i64, at: DateTime<Utc>) -> Result<CancelOutcome> {
        let _turn = self.write_turn().await;
        let cancelled = sqlx::query(
            "UPDATE ml_jobs SET status = 'cancelled', finished_at = $1, message = 'cancelled before it started', \
             log = log || 'cancelled before it started\n' WHERE id = $2 AND status = 'queued'",
        )
        .bind(at.timestamp())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if cancelled.rows_affected() > 0 {
            return Ok(CancelOutcome::Cancelled);
        }
        let requested = sqlx::query(
            "UPDATE ml_jobs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if requested.rows_affected() > 0 {
            return Ok(CancelOutcome::Requested);
        }
        let exists = sqlx::query("SELECT id FROM ml_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if exists.is_some() {
            CancelOutcome::AlreadyFinished
        } else {
            CancelOutcome::NotFound
        })
    }

    async fn fail_interrupted_jobs(&self, at: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE ml_jobs SET status = 'failed', finished_at = $1, \
             message = 'interrupted: the process running it stopped; start the job again', \
             log = log || 'interrupted: the process running it stopped; start the job again\n' \
             WHERE status = 'running'",
        )
        .bind(at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn record_anomalies(&self, anomalies: &[AnomalyRecord]) -> Result<()> {
        if anomalies.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        for a in anomalies {
            sqlx::query(
                "INSERT INTO anomalies (station_id, parameter, ts, kind, value, score, detail, detected_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (station_id, parameter, ts, kind) DO NOTHING",
            )
            .bind(a.station.as_str())
            .bind(a.parameter.as_str())
            .bind(a.time.timestamp())
            .bind(&a.kind)
            .bind(a.value)
            .bind(a.score)
            .bind(&a.detail)
            .bind(a.detected_at.timestamp())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE readings SET flag = 1 WHERE flag = 0 AND ts = $1 AND series_id = \
                 (SELECT id FROM series WHERE station_id = $2 AND parameter = $3)",
            )
            .bind(a.time.timestamp())
            .bind(a.station.as_str())
            .bind(a.parameter.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn anomalies(
        &self,
        station: &StationId,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<AnomalyRecord>> {
        let rows = sqlx::query(
            "SELECT station_id, parameter, ts, kind, value, score, detail, detected_at FROM anomalies \
             WHERE station_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts DESC, kind LIMIT $4",
        )
        .bind(station.as_str())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let station: String = row.try_get("station_id")?;
                let parameter: String = row.try_get("parameter")?;
                Ok(AnomalyRecord {
                    station: StationId::parse(&station)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    parameter: parameter.parse().map_err(|_| {
                        StoreError::Corrupt(format!("unknown parameter {parameter:?}"))
                    })?,
                    time: time(row.try_get("ts")?)?,
                    kind: row.try_get("kind")?,
                    value: row.try_get("value")?,
                    score: row.try_get("score")?,
                    detail: row.try_get("detail")?,
                    detected_at: time(row.try_get("detected_at")?)?,
                })
            })
            .collect()
    }
}
