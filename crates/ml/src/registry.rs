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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ERROR_CHART_FILE, TRACE_CHART_FILE};
    use crate::test_support::{fresh_registry, station_id, trained_artifact};

    async fn serving_ids(registry: &Registry) -> Vec<i64> {
        registry
            .store()
            .serving_models()
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    }

    async fn status(registry: &Registry, id: i64) -> String {
        registry.record(id).await.unwrap().status
    }

    #[tokio::test]
    async fn register_promote_and_roll_back_choose_the_serving_model() {
        let (_dir, registry) = fresh_registry().await;
        let s1 = station_id("s1");
        let (first, report) = trained_artifact("s1", Parameter::Pm25, 1);
        let a = registry.register(&first, &report, Some(7)).await.unwrap();
        assert_eq!((a.version, a.status.as_str()), (1, "candidate"));
        assert_eq!(a.job_id, Some(7));
        assert_eq!(a.checksum, checksum(&first.to_bytes()));
        assert!(
            a.artifact_key.starts_with("models/s1/pm25/")
                && a.artifact_key.ends_with(crate::artifact::FILE_NAME),
            "{}",
            a.artifact_key
        );
        assert!(
            serving_ids(&registry).await.is_empty(),
            "registering does not serve"
        );

        let promoted = registry.promote(a.id, "test").await.unwrap();
        assert_eq!(promoted.status, "serving");
        assert!(promoted.promoted_at.is_some());

        let (second, report) = trained_artifact("s1", Parameter::Pm25, 2);
        let b = registry.register(&second, &report, None).await.unwrap();
        assert_eq!(b.version, 2);
        assert_ne!(a.artifact_key, b.artifact_key);
        assert_eq!(
            serving_ids(&registry).await,
            vec![a.id],
            "a candidate waits"
        );

        registry.promote(b.id, "test").await.unwrap();
        assert_eq!(serving_ids(&registry).await, vec![b.id]);
        assert_eq!(status(&registry, a.id).await, "retired");

        let back = registry
            .rollback(&s1, Parameter::Pm25, "test")
            .await
            .unwrap();
        assert_eq!(back.id, a.id);
        assert_eq!(serving_ids(&registry).await, vec![a.id]);
        assert_eq!(status(&registry, b.id).await, "retired");

        // Only the first promotion is left: there is nothing before it to return to.
        let err = registry
            .rollback(&s1, Parameter::Pm25, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NothingToRollBack { .. }),
            "{err}"
        );
        assert_eq!(serving_ids(&registry).await, vec![a.id]);

        // Another series is not touched by any of this.
        let err = registry
            .rollback(&station_id("s2"), Parameter::Pm25, "test")
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::NothingToRollBack { .. }));
        assert!(matches!(
            registry.promote(9_999, "test").await,
            Err(RegistryError::UnknownModel(9_999))
        ));
    }

    #[tokio::test]
    async fn each_series_has_its_own_versions_and_serving_model() {
        let (_dir, registry) = fresh_registry().await;
        let (pm25, report) = trained_artifact("s1", Parameter::Pm25, 1);
        let (no2, report_no2) = trained_artifact("s1", Parameter::No2, 2);
        let a = registry.register(&pm25, &report, None).await.unwrap();
        let b = registry.register(&no2, &report_no2, None).await.unwrap();
        assert_eq!((a.version, b.version), (1, 1));
        registry.promote(a.id, "test").await.unwrap();
        registry.promote(b.id, "test").await.unwrap();
        let mut serving = serving_ids(&registry).await;
        serving.sort();
        assert_eq!(serving, vec![a.id, b.id]);
    }

    #[tokio::test]
    async fn a_damaged_missing_or_foreign_artifact_never_replaces_the_serving_model() {
        let (_dir, registry) = fresh_registry().await;
        let (good, report) = trained_artifact("s1", Parameter::Pm25, 1);
        let serving = registry.register(&good, &report, None).await.unwrap();
        registry.promote(serving.id, "test").await.unwrap();

        // Damaged after training: the bytes no longer match the recorded checksum (here a
        // valid artifact of another model, so only the checksum can tell).
        let (other, report) = trained_artifact("s1", Parameter::Pm25, 2);
        let damaged = registry.register(&other, &report, None).await.unwrap();
        registry
            .blobs()
            .put(&damaged.artifact_key, Bytes::from(good.to_bytes()))
            .await
            .unwrap();
        let err = registry.promote(damaged.id, "test").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::ChecksumMismatch { id } if id == damaged.id),
            "{err}"
        );
        assert!(matches!(
            registry.load(&damaged).await,
            Err(RegistryError::ChecksumMismatch { .. })
        ));
        assert_eq!(serving_ids(&registry).await, vec![serving.id]);
        assert_eq!(status(&registry, damaged.id).await, "candidate");

        // Missing from blob storage.
        let (third, report) = trained_artifact("s1", Parameter::Pm25, 3);
        let missing = registry.register(&third, &report, None).await.unwrap();
        registry
            .blobs()
            .delete(&missing.artifact_key)
            .await
            .unwrap();
        let err = registry.promote(missing.id, "test").await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::MissingArtifact { id, key } if *id == missing.id && *key == missing.artifact_key),
            "{err}"
        );
        assert_eq!(serving_ids(&registry).await, vec![serving.id]);

        // Bytes that match their checksum but are no model of this build: the record says
        // exactly these bytes, so only reading them can tell.
        let foreign =
            br#"{"meta": {"format": "sklearn.pickle", "format_version": 1, "code_version": "x"}}"#;
        let record = NewModel {
            station: station_id("s1"),
            parameter: Parameter::Pm25,
            created_at: Utc::now(),
            checksum: checksum(foreign),
            size_bytes: foreign.len() as i64,
            training_from: Utc::now(),
            training_to: Utc::now(),
            data_fingerprint: "x".into(),
            code_version: "x".into(),
            metrics: "[]".into(),
            job_id: None,
        };
        let key = "models/s1/pm25/foreign/model.json.gz".to_string();
        registry
            .blobs()
            .put(&key, Bytes::from_static(foreign))
            .await
            .unwrap();
        let unloadable = registry
            .store()
            .insert_model(&record, &|_| key.clone())
            .await
            .unwrap();
        let err = registry.promote(unloadable.id, "test").await.unwrap_err();
        assert!(
            matches!(
                &err,
                RegistryError::Unloadable { id, source: MlError::IncompatibleArtifact(_) } if *id == unloadable.id
            ),
            "{err}"
        );
        assert_eq!(serving_ids(&registry).await, vec![serving.id]);

        // The serving model itself still loads, byte for byte what was registered.
        let loaded = registry.load(&serving).await.unwrap();
        assert_eq!(loaded.meta.data_fingerprint, good.meta.data_fingerprint);
        assert_eq!(checksum(&loaded.to_bytes()), serving.checksum);
    }

    #[tokio::test]
    async fn report_files_are_served_by_their_plain_names_only() {
        let (_dir, registry) = fresh_registry().await;
        let (artifact, report) = trained_artifact("s1", Parameter::Pm25, 1);
        let record = registry.register(&artifact, &report, None).await.unwrap();

        let markdown = registry.report_file(&record, MARKDOWN_FILE).await.unwrap();
        assert_eq!(markdown, Bytes::from(report.markdown.clone()));
        assert!(std::str::from_utf8(&markdown)
            .unwrap()
            .contains(ERROR_CHART_FILE));
        for (name, svg) in &report.charts {
            assert_eq!(
                registry.report_file(&record, name).await.unwrap(),
                Bytes::from(svg.clone()),
                "{name}"
            );
        }
        let names: Vec<&str> = report.charts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec![ERROR_CHART_FILE, TRACE_CHART_FILE]);

        let long = format!("{}.svg", "a".repeat(100));
        for refused in [
            // The artifact sits in the same folder but is not a report file.
            crate::artifact::FILE_NAME,
            "../report.md",
            "a/error-by-horizon.svg",
            ".svg",
            ".hidden.svg",
            "report.md\n",
            "report.txt",
            "error-by-horizon.svg?x=1",
            "",
            long.as_str(),
            // Allowed as a name, but the report has no such chart.
            "missing.svg",
        ] {
            let err = registry.report_file(&record, refused).await.unwrap_err();
            match err {
                RegistryError::MissingReport { id, file } => {
                    assert_eq!(id, record.id);
                    assert!(!file.chars().any(char::is_control), "{file:?}");
                    assert!(file.chars().count() <= 100, "{file:?}");
                }
                other => panic!("{refused:?}: {other}"),
            }
        }

        // Each model reads its own report, not another version's.
        let (second, mut report2) = trained_artifact("s1", Parameter::Pm25, 2);
        report2.markdown = "# the second model".into();
        let record2 = registry.register(&second, &report2, None).await.unwrap();
        assert_eq!(
            registry.report_file(&record2, MARKDOWN_FILE).await.unwrap(),
            Bytes::from("# the second model")
        );
        assert_eq!(
            registry.report_file(&record, MARKDOWN_FILE).await.unwrap(),
            markdown
        );
    }
}
