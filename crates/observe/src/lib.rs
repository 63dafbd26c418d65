//! EcoCityHub's monitoring and audit — the CloudWatch and CloudTrail layers.
//!
//! - **Metrics** ([`recorder`], [`names`], [`figures`], [`http`]): the `metrics` facade's
//!   recorder, the metric names with their help texts, one helper per figure of the other layers,
//!   and the tower layers for request ids and per-route request metrics. Exposed on one machine
//!   as Prometheus text on a listener of its own ([`prometheus`]), under Lambda as CloudWatch
//!   Embedded Metric Format lines on stdout ([`emf`]).
//! - **Rollups** ([`rollups`]): per-minute statistic sets of every series written to the store,
//!   downsampled to 10 minutes and an hour, queried as series for the dashboard and the alarms.
//! - **Alarms** ([`alarms`]): CloudWatch-shaped alarms over the rollups (statistic, period,
//!   threshold, M out of N, missing data), state and history in the store, changes handed to an
//!   [`alarms::AlarmSink`].
//! - **Audit** ([`audit`]): a CloudTrail-shaped, append-only, hash-chained trail with hourly
//!   signed digests in the blob store, verification, search and retention.
//! - [`Observer`] starts the background work (rollups, alarms, digests, retention) in one call.

pub mod alarms;
pub mod audit;
pub mod bench;
pub mod config;
pub mod emf;
pub mod figures;
pub mod http;
pub mod names;
pub mod process;
pub mod prometheus;
pub mod recorder;
pub mod rollups;
pub mod service;
pub mod stations;
pub mod stats;

pub use config::ObserveConfig;
pub use http::{current_request_id, HttpMetricsLayer, RequestId, RequestIdLayer};
pub use recorder::{Exposition, Telemetry};
pub use service::Observer;

/// What can go wrong in the observe layer.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Store(#[from] ecocityhub_store::StoreError),
    #[error(transparent)]
    Blob(#[from] ecocityhub_blobs::BlobError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid alarm {name}: {reason}")]
    InvalidAlarm { name: String, reason: String },
    #[error("audit key: {0}")]
    Key(String),
    #[error("the audit writer has stopped")]
    AuditClosed,
}

pub type Result<T, E = ObserveError> = std::result::Result<T, E>;
