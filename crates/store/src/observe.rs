//! What the observe layer stores (the CloudWatch and CloudTrail roles): per-period metric
//! rollups, alarm definitions with their state and history, and the audit trail with its signed
//! digests and retention checkpoint. [`ObserveStore`] is part of every [`crate::Store`]; the
//! rules (hash chain, signatures, statistics) live in `ecocityhub-observe`, which hands the
//! store finished rows through the closures of [`ObserveStore::append_audit`] and
//! [`ObserveStore::create_audit_digest`] so that they run while the appender holds its turn.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// The `prev_hash` of the first audit record ever written.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// One rollup of one metric series over one period, as written by one process (`source`).
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub metric: String,
    /// The series' labels as canonical JSON (sorted keys); `{}` for none.
    pub labels: String,
    /// Length of the period in seconds (60, 600, 3600…).
    pub resolution: i64,
    /// Start of the period, epoch seconds, a multiple of `resolution`.
    pub ts: i64,
    pub source: String,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The samples' distribution, encoded by the observe crate.
    pub sketch: String,
}

/// A stored alarm definition (JSON, as the observe crate serialises it).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDefinitionRow {
    pub name: String,
    pub definition: String,
    /// `builtin`, `config` or `admin`.
    pub origin: String,
    pub updated_at: DateTime<Utc>,
}

/// The current state of an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStateRow {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
    /// JSON: the datapoints behind the reason.
    pub reason_data: String,
    pub updated_at: DateTime<Utc>,
    /// End (epoch seconds) of the last period the alarm evaluated.
    pub evaluated_through: Option<i64>,
}

/// One change of an alarm's state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmHistoryRow {
    /// Assigned by the store.
    pub id: i64,
    pub name: String,
    pub at: DateTime<Utc>,
    pub old_state: String,
    pub new_state: String,
    pub reason: String,
    pub reason_data: String,
    /// When the notification for this change was handed on; `None` while it is pending.
    pub notified_at: Option<DateTime<Utc>>,
}

/// The end of the audit chain as the appenders see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last sequence number written (0 before the first record).
    pub seq: i64,
    /// Its hash (hex), [`AUDIT_GENESIS_HASH`] before the first record.
    pub hash: String,
}

/// One audit record as stored: searchable columns beside the canonical JSON the hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub event_id: String,
    /// Epoch milliseconds.
    pub event_time: i64,
    pub event_source: String,
    pub event_name: String,
    pub user_type: String,
    pub user_id: Option<String>,
    /// `None` for a success.
    pub error_code: Option<String>,
    pub read_only: bool,
    pub request_id: Option<String>,
    pub record: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Success or failure of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Success,
    Error,
}

/// A search of the audit trail, newest first. Every filter is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub user_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    /// Epoch milliseconds, inclusive.
    pub from: Option<i64>,
    /// Epoch milliseconds, exclusive.
    pub to: Option<i64>,
    pub outcome: Option<AuditOutcome>,
    /// Paging: only records with a smaller sequence number.
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A signed digest of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDigestRow {
    /// 1, 2, … in the order they were made.
    pub number: i64,
    pub blob_key: String,
    /// Canonical JSON of the digest.
    pub body: String,
    /// The signature over `body` (encoded by the observe crate).
    pub signature: String,
    /// The last record the digest covers (0 when the trail was empty).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    /// When the blob was written; `None` while that is still to do.
    pub written_at: Option<DateTime<Utc>>,
}

/// What a digest is made from, read while the maker holds the appenders' turn.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestContext {
    pub head: AuditHead,
    /// The number the new digest gets.
    pub number: i64,
    pub previous: Option<AuditDigestRow>,
}

/// The signed statement of what retention expired: every record up to `through_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCheckpointRow {
    pub through_seq: i64,
    pub body: String,
    pub signature: String,
    pub created_at: DateTime<Utc>,
}

/// The database connection pool's figures, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// Makes the rows of an audit batch from the chain's head: sequence numbers `head.seq + 1…`,
/// each row's `prev_hash` the hash of the one before.
pub type AuditSealer<'a> = dyn FnMut(&AuditHead) -> Vec<AuditRow> + Send + 'a;

/// Makes a digest from what it covers.
pub type DigestMaker<'a> = dyn FnMut(&DigestContext) -> AuditDigestRow + Send + 'a;

/// Storage of the observe layer.
#[async_trait]
pub trait ObserveStore: Send + Sync {
    /// The connection pool's current figures.
    fn pool_status(&self) -> PoolStatus;

    /// Writes rollups, replacing rows with the same series, resolution, period and source.
    async fn put_rollups(&self, rows: &[RollupRow]) -> Result<()>;

    /// Every row of `metric` at `resolution` with `from <= ts < to`, all labels and sources,
    /// ordered by `ts`.
    async fn rollups(
        &self,
        metric: &str,
        resolution: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>>;

    /// The distinct `(metric, labels)` series with rows at `resolution` since `from`.
    async fn rollup_series(&self, resolution: i64, from: i64) -> Result<Vec<(String, String)>>;

    /// Deletes rows at `resolution` older than `before`; returns how many.
    async fn expire_rollups(&self, resolution: i64, before: i64) -> Result<u64>;

    /// Creates or replaces an alarm definition.
    async fn put_alarm_definition(&self, row: &AlarmDefinitionRow) -> Result<()>;

    async fn alarm_definitions(&self) -> Result<Vec<AlarmDefinitionRow>>;

    /// Deletes a definition and its state (its history stays); false if there was none.
    async fn delete_alarm_definition(&self, name: &str) -> Result<bool>;

    async fn alarm_states(&self) -> Result<Vec<AlarmStateRow>>;

    /// Saves an alarm's state and, when it changed, its history row in the same transaction.
    /// Returns the history row's id.
    async fn save_alarm_state(
        &self,
        state: &AlarmStateRow,
        change: Option<&AlarmHistoryRow>,
    ) -> Result<Option<i64>>;

    /// History, newest first; of one alarm or all; `before_id` pages.
    async fn alarm_history(
        &self,
        name: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AlarmHistoryRow>>;

    /// Changes whose notification is still pending, oldest first.
    async fn unnotified_alarm_changes(&self, limit: u32) -> Result<Vec<AlarmHistoryRow>>;

    async fn mark_alarm_notified(&self, id: i64, at: DateTime<Utc>) -> Result<()>;

    /// Appends a batch to the audit trail in one transaction: takes the appenders' turn (a row
    /// lock that also holds off other processes), calls `seal` with the head, inserts what it
    /// returns and moves the head to its last row. Returns the new head.
    async fn append_audit(&self, seal: &mut AuditSealer<'_>) -> Result<AuditHead>;

    /// The head as the appenders last left it (not proof of anything).
    async fn audit_head(&self) -> Result<AuditHead>;

    /// Records with `seq >= from_seq` in sequence order, at most `limit`.
    async fn audit_records(&self, from_seq: i64, limit: u32) -> Result<Vec<AuditRow>>;

    /// The record with this sequence number.
    async fn audit_record(&self, seq: i64) -> Result<Option<AuditRow>>;

    /// The smallest and largest sequence numbers stored and how many rows there are.
    async fn audit_bounds(&self) -> Result<Option<(i64, i64, i64)>>;

    /// A filtered page of the trail, newest first.
    async fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;

    /// Makes and stores the next digest while holding the appenders' turn, so that it covers
    /// exactly the records committed before it. Its blob is still to be written.
    async fn create_audit_digest(&self, make: &mut DigestMaker<'_>) -> Result<AuditDigestRow>;

    async fn mark_audit_digest_written(&self, number: i64, at: DateTime<Utc>) -> Result<()>;

    /// Every digest, in order of number.
    async fn audit_digests(&self) -> Result<Vec<AuditDigestRow>>;

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpointRow>>;

    /// Stores the checkpoint and deletes the records it covers, in one transaction. Returns the
    /// number of records deleted.
    async fn expire_audit(&self, checkpoint: &AuditCheckpointRow) -> Result<u64>;

    async fn observe_value(&self, key: &str) -> Result<Option<String>>;

    /// Stores `value` under `key` unless one is there; returns the value stored (the existing
    /// one if another writer was first).
    async fn put_observe_value_if_absent(&self, key: &str, value: &str) -> Result<String>;
}
