//! What the ML layer stores: the model registry (versions, their metrics and where their
//! artifacts are, which one serves, the promotion history for rollbacks) and training jobs.
//! [`MlStore`] is part of every [`crate::Store`]; the artifacts themselves are blobs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_domain::{Parameter, StationId};

use crate::Result;

/// A registered model version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub id: i64,
    pub station: StationId,
    pub parameter: Parameter,
    /// 1, 2, … per (station, parameter).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// Blob key of the artifact; the report sits beside it.
    pub artifact_key: String,
    /// SHA-256 of the artifact bytes.
    pub checksum: String,
    pub size_bytes: i64,
    pub training_from: DateTime<Utc>,
    pub training_to: DateTime<Utc>,
    pub data_fingerprint: String,
    pub code_version: String,
    /// JSON: the held-out scores per horizon.
    pub metrics: String,
    pub job_id: Option<i64>,
    /// `candidate`, `serving` or `retired`.
    pub status: String,
    pub promoted_at: Option<DateTime<Utc>>,
}

/// A model about to be registered (the store assigns id and version).
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub station: StationId,
    pub parameter: Parameter,
    pub created_at: DateTime<Utc>,
    pub checksum: String,
    pub size_bytes: i64,
    pub training_from: DateTime<Utc>,
    pub training_to: DateTime<Utc>,
    pub data_fingerprint: String,
    pub code_version: String,
    pub metrics: String,
    pub job_id: Option<i64>,
}

/// The status of a training job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A training job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub status: JobStatus,
    /// JSON: what to train.
    pub request: String,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// The latest step, or why it failed.
    pub message: Option<String>,
    /// One line per step.
    pub log: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
}

/// A reading the anomaly checks found suspect.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRecord {
    pub station: StationId,
    pub parameter: Parameter,
    pub time: DateTime<Utc>,
    /// spike, jump, stuck or neighbours.
    pub kind: String,
    pub value: f64,
    pub score: f64,
    pub detail: String,
    pub detected_at: DateTime<Utc>,
}

/// What came of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Cancelled,
    /// It is running; the worker stops at its next step.
    Requested,
    /// It had already finished.
    AlreadyFinished,
    NotFound,
}

#[async_trait]
pub trait MlStore: Send + Sync {
    /// Registers a model as a `candidate` with the next version of its series.
    /// `artifact_key(version)` names where its artifact is stored.
    async fn insert_model(
        &self,
        model: &NewModel,
        artifact_key: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<ModelRecord>;

    async fn model(&self, id: i64) -> Result<Option<ModelRecord>>;

    /// Models, newest first, optionally of one station and/or parameter.
    async fn models(
        &self,
        station: Option<&StationId>,
        parameter: Option<Parameter>,
    ) -> Result<Vec<ModelRecord>>;

    /// The serving model of every series that has one.
    async fn serving_models(&self) -> Result<Vec<ModelRecord>>;

    /// Makes the model the serving one of its series (the previous one is retired) and records
    /// the promotion. Returns false if there is no such model.
    async fn promote_model(&self, id: i64, actor: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Undoes the latest promotion of the series: the model serving before it serves again.
    /// Returns the model now serving, or `None` if there is no earlier promotion to return to.
    async fn rollback_model(
        &self,
        station: &StationId,
        parameter: Parameter,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ModelRecord>>;

    async fn insert_job(
        &self,
        request: &str,
        created_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<JobRecord>;

    async fn job(&self, id: i64) -> Result<Option<JobRecord>>;

    /// The latest jobs, newest first.
    async fn jobs(&self, limit: i64) -> Result<Vec<JobRecord>>;

    /// Takes the oldest queued job and marks it running.
    async fn claim_job(&self, at: DateTime<Utc>) -> Result<Option<JobRecord>>;

    /// Records progress of a running job and appends a line to its log.
    async fn job_progress(&self, id: i64, progress: f64, line: &str) -> Result<()>;

    /// Ends a job with a final status and message (appended to its log).
    async fn finish_job(
        &self,
        id: i64,
        status: JobStatus,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;

    async fn cancel_job(&self, id: i64, at: DateTime<Utc>) -> Result<CancelOutcome>;

    /// Marks every job left `running` (by a process that died) as failed. Returns how many.
    async fn fail_interrupted_jobs(&self, at: DateTime<Utc>) -> Result<u64>;

    /// Records suspect readings and flags them `suspect` (readings flagged otherwise keep
    /// their flag). Recording the same finding twice changes nothing.
    async fn record_anomalies(&self, anomalies: &[AnomalyRecord]) -> Result<()>;

    /// A station's suspect readings with `from <= time < to`, newest first.
    async fn anomalies(
        &self,
        station: &StationId,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<AnomalyRecord>>;
}
