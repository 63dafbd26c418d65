//! The model registry: artifacts and reports in the blob store, their records (versions,
//! metrics, which one serves) in the store. Loading checks the checksum and the format before
//! a model may serve, so a damaged or foreign artifact never replaces a working one.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ecocityhub_blobs::{BlobError, BlobStore};
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_store::ml::{ModelRecord, NewModel};
use ecocityhub_store::{Store, StoreError};

use crate::artifact::{checksum, Artifact};
use crate::report::{Report, MARKDOWN_FILE};
use crate::MlError;

/// What can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("model {0} does not exist")]
    UnknownModel(i64),
    #[error("the artifact of model {id} is missing from blob storage ({key})")]
    MissingArtifact { id: i64, key: String },
    #[error(
        "the artifact of model {id} does not match its checksum: it was damaged after training"
    )]
    ChecksumMismatch { id: i64 },
    #[error("model {id} cannot be loaded: {source}")]
    Unloadable { id: i64, source: MlError },
    #[error("no earlier promotion of {station}/{parameter} to roll back to")]
    NothingToRollBack { station: String, parameter: String },
    #[error("model {id} has no report file {file:?}")]
    MissingReport { id: i64, file: String },
}

/// Registry over a store and a blob store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

/// The folder of a model's files: `models/<station>/<parameter>/<created>-<checksum prefix>`.
fn folder(station: &StationId, parameter: Parameter, created: DateTime<Utc>, sum: &str) -> String {
    format!(
        "models/{}/{}/{}-{}",
        station.as_str(),
        parameter.as_str(),
        created.format("%Y%m%dT%H%M%SZ"),
        &sum[..12]
    )
}

fn folder_of(record: &ModelRecord) -> &str {
    record
        .artifact_key
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir)
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Registry {
        Registry { store, blobs }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Stores the artifact and its report, then registers it as a candidate. The files are
    /// written first (under a name no other model has), so a record never points at nothing.
    pub async fn register(
        &self,
        artifact: &Artifact,
        report: &Report,
        job_id: Option<i64>,
    ) -> Result<ModelRecord, RegistryError> {
        let bytes = artifact.to_bytes();
        let sum = checksum(&bytes);
        let meta = &artifact.meta;
        let station =
            StationId::parse(&meta.station).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let created = DateTime::from_timestamp(meta.created_at, 0).unwrap_or_else(Utc::now);
        let dir = folder(&station, meta.parameter, created, &sum);
        let key = format!("{dir}/{}", crate::artifact::FILE_NAME);
        self.blobs.put(&key, Bytes::from(bytes.clone())).await?;
        self.blobs
            .put(
                &format!("{dir}/{MARKDOWN_FILE}"),
                Bytes::from(report.markdown.clone()),
            )
            .await?;
        for (name, svg) in &report.charts {
            self.blobs
                .put(&format!("{dir}/{name}"), Bytes::from(svg.clone()))
                .await?;
        }
        let time = |ts: i64| DateTime::from_timestamp(ts, 0).unwrap_or_default();
        let record = NewModel {
            station,
            parameter: meta.parameter,
            created_at: created,
            checksum: sum,
            size_bytes: bytes.len() as i64,
            training_from: time(meta.training_from),
            training_to: time(meta.training_to),
            data_fingerprint: meta.data_fingerprint.clone(),
            code_version: meta.code_version.clone(),
            metrics: serde_json::to_string(&meta.holdout_scores).expect("scores serialize"),
            job_id,
        };
        Ok(self.store.insert_model(&record, &|_| key.clone()).await?)
    }

    pub async fn record(&self, id: i64) -> Result<ModelRecord, RegistryError> {
        self.store
            .model(id)
            .await?
            .ok_or(RegistryError::UnknownModel(id))
    }

    /// Reads and checks a model's artifact.
    pub async fn load(&self, record: &ModelRecord) -> Result<Artifact, RegistryError> {
        let bytes = self.blobs.get(&record.artifact_key).await?.ok_or_else(|| {
            RegistryError::MissingArtifact {
                id: record.id,
                key: record.artifact_key.clone(),
            }
        })?;
        if checksum(&bytes) != record.checksum {
            return Err(RegistryError::ChecksumMismatch { id: record.id });
        }
        Artifact::from_bytes(&bytes).map_err(|source| RegistryError::Unloadable {
            id: record.id,
            source,
        })
    }

    /// Serves the model after checking its artifact loads; on any error the serving model
    /// stays as it was.
    pub async fn promote(&self, id: i64, actor: &str) -> Result<ModelRecord, RegistryError> {
        let record = self.record(id).await?;
        self.load(&record).await?;
        if !self.store.promote_model(id, actor, Utc::now()).await? {
            return Err(RegistryError::UnknownModel(id));
        }
        self.record(id).await
    }

    /// Serves the model that served before the latest promotion of the series.
    pub async fn rollback(
        &self,
        station: &StationId,
        parameter: Parameter,
        actor: &str,
    ) -> Result<ModelRecord, RegistryError> {
        self.store
            .rollback_model(station, parameter, actor, Utc::now())
            .await?
            .ok_or_else(|| RegistryError::NothingToRollBack {
                station: station.to_string(),
                parameter: parameter.to_string(),
            })
    }

    /// A file of the model's report (`report.md` or one of its charts).
    pub async fn report_file(
        &self,
        record: &ModelRecord,
        file: &str,
    ) -> Result<Bytes, RegistryError> {
        // Report files are named by us: letters, digits, `-`, `_` and one extension. Anything
        // else (control characters, separators, dots in front) names no file.
        let plain_name = file.len() <= 100
            && !file.starts_with('.')
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let allowed = plain_name && (file == MARKDOWN_FILE || file.ends_with(".svg"));
        let missing = || RegistryError::MissingReport {
            id: record.id,
            file: file.chars().filter(|c| !c.is_control()).take(100).collect(),
        };
        if !allowed {
            return Err(missing());
        }
        self.blobs
            .get(&format!("{}/{file}", folder_of(record)))
            .await?
            .ok_or_else(missing)
    }
}
