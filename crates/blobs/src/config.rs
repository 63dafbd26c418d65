//! Configuration of the blob layer and [`open`], which stacks the store the binary uses:
//! `EncryptedBlobs<VersionedBlobs<ObjectBlobs>>` over a local directory or S3, with master
//! keys from the key file, configuration or AWS KMS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::keys::{KeyError, KeyProvider, LocalKeyProvider, MasterKey, KEY_FILE_NAME};
use crate::photos::PhotoLimits;
use crate::uploads::UploadsConfig;
use crate::versions::{BlobVersions, VersionedBlobs, VersioningConfig};
use crate::{BlobError, BlobStore, Blobs, EncryptedBlobs, ObjectBlobs, Result, Sealer};

/// Where blobs live.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files under `dir` (default `DATA_DIR/blobs`).
    #[default]
    Local,
    /// An S3 bucket (needs the `aws` feature).
    S3,
}

/// An S3 bucket. Credentials and region come from the usual `AWS_*` variables (Lambda sets them).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Default: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Another endpoint (moto, MinIO); default: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// Server-side encryption with this KMS key (in addition to the envelope).
    pub sse_kms_key_id: Option<String>,
}

/// Which master keys wrap the data keys.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// A key file (`key_file`, default `DATA_DIR/master-keys.json`) or `master_key`.
    #[default]
    Local,
    /// AWS KMS key `kms_key_id` (needs the `aws` feature).
    Kms,
}

/// Master key configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    pub source: KeySource,
    /// The key file; default `DATA_DIR/master-keys.json`, made on first start (mode 0600).
    pub key_file: Option<PathBuf>,
    /// Instead of the key file: the current master key, `ID:BASE64` or `BASE64` (32 bytes).
    pub master_key: Option<String>,
    /// Older configured keys that still unwrap until `rotate-master` re-wrapped everything.
    pub previous_master_keys: Vec<String>,
    /// The KMS key (id, ARN or `alias/…`) new data keys are made under.
    pub kms_key_id: Option<String>,
}

/// The blob layer's configuration (`[blobs]` in the TOML file).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    pub backend: Backend,
    /// The local directory; default `DATA_DIR/blobs` (the existing `blobs_dir` setting).
    pub dir: Option<PathBuf>,
    pub s3: S3Config,
    pub keys: KeysConfig,
    pub versioning: VersioningConfig,
    pub uploads: UploadsConfig,
    pub photos: PhotoLimits,
    /// Read blobs stored before encryption existed (turn off once a rotation encrypted them).
    pub accept_plain: bool,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            backend: Backend::Local,
            dir: None,
            s3: S3Config::default(),
            keys: KeysConfig::default(),
            versioning: VersioningConfig::default(),
            uploads: UploadsConfig::default(),
            photos: PhotoLimits::default(),
            accept_plain: true,
        }
    }
}

/// The opened blob layer.
#[derive(Clone)]
pub struct OpenedBlobs {
    pub blobs: Arc<Blobs>,
    pub keys: Arc<dyn KeyProvider>,
}

impl OpenedBlobs {
    /// The store as callers use it.
    pub fn store(&self) -> Arc<dyn BlobStore> {
        self.blobs.clone()
    }

    /// The store with its versions.
    pub fn versions(&self) -> Arc<dyn BlobVersions> {
        self.blobs.clone()
    }

    /// Seals secrets under the same master keys.
    pub fn sealer(&self) -> Sealer {
        Sealer::new(self.keys.clone())
    }
}

/// The master keys `config` names; `data_dir` holds the default key file.
pub async fn open_keys(config: &KeysConfig, data_dir: &Path) -> Result<Arc<dyn KeyProvider>> {
    match config.source {
        KeySource::Local => Ok(Arc::new(local_keys(config, data_dir)?)),
        KeySource::Kms => kms_keys(config).await,
    }
}

fn local_keys(config: &KeysConfig, data_dir: &Path) -> Result<LocalKeyProvider, KeyError> {
    if let Some(current) = &config.master_key {
        let previous = config
            .previous_master_keys
            .iter()
            .map(|k| MasterKey::parse(k))
            .collect::<Result<Vec<_>, _>>()?;
        return LocalKeyProvider::from_keys(MasterKey::parse(current)?, previous);
    }
    if !config.previous_master_keys.is_empty() {
        return Err(KeyError::Invalid(
            "previous_master_keys needs master_key (the key file keeps its own old keys)".into(),
        ));
    }
    let path = config
        .key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(KEY_FILE_NAME));
    LocalKeyProvider::open_or_create_at(&path)
}

#[cfg(feature = "aws")]
async fn kms_keys(config: &KeysConfig) -> Result<Arc<dyn KeyProvider>> {
    let key_id = config
        .kms_key_id
        .clone()
        .ok_or_else(|| BlobError::Config("keys.source = \"kms\" needs keys.kms_key_id".into()))?;
    Ok(Arc::new(
        crate::kms::KmsKeyProvider::from_env(&key_id).await?,
    ))
}

#[cfg(not(feature = "aws"))]
async fn kms_keys(_: &KeysConfig) -> Result<Arc<dyn KeyProvider>> {
    Err(BlobError::Config(
        "keys.source = \"kms\" needs a build with the `aws` feature".into(),
    ))
}

/// The object store underneath, without versions or encryption.
pub async fn open_objects(config: &BlobsConfig, data_dir: &Path) -> Result<ObjectBlobs> {
    match config.backend {
        Backend::Local => {
            let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("blobs"));
            ObjectBlobs::local(&dir)
        }
        Backend::S3 => open_s3(&config.s3),
    }
}

#[cfg(feature = "aws")]
fn open_s3(config: &S3Config) -> Result<ObjectBlobs> {
    crate::s3::object_blobs(config)
}

#[cfg(not(feature = "aws"))]
fn open_s3(_: &S3Config) -> Result<ObjectBlobs> {
    Err(BlobError::Config(
        "backend = \"s3\" needs a build with the `aws` feature".into(),
    ))
}

/// Opens the blob layer: the object store, versions, and encryption under the master keys.
pub async fn open(config: &BlobsConfig, data_dir: &Path) -> Result<OpenedBlobs> {
    let keys = open_keys(&config.keys, data_dir).await?;
    let objects = open_objects(config, data_dir).await?;
    let versioned = VersionedBlobs::new(objects, config.versioning.clone());
    let mut encrypted = EncryptedBlobs::new(versioned, keys.clone());
    if !config.accept_plain {
        encrypted = encrypted.refusing_plain();
    }
    tracing::info!(blobs = %encrypted.describe(), "blob store open");
    Ok(OpenedBlobs {
        blobs: Arc::new(encrypted),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn the_default_configuration_makes_a_key_file_and_encrypted_versioned_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let config: BlobsConfig = toml_like_default();
        let opened = open(&config, dir.path()).await.unwrap();
        assert!(dir.path().join(KEY_FILE_NAME).is_file());
        let store = opened.store();
        store.put("a/b", Bytes::from_static(b"one")).await.unwrap();
        store.put("a/b", Bytes::from_static(b"two")).await.unwrap();
        let versions = opened.versions();
        let kept = versions.versions("a/b").await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            versions
                .get_version("a/b", &kept[0].id)
                .await
                .unwrap()
                .unwrap(),
            "one"
        );
        let raw = std::fs::read(dir.path().join("blobs/a/b")).unwrap();
        assert!(crate::is_sealed(&raw));
        let sealed = opened.sealer().seal(b"x", b"secret").await.unwrap();
        let again = open(&config, dir.path()).await.unwrap();
        assert_eq!(
            again.sealer().open(b"x", &sealed).await.unwrap().as_slice(),
            b"secret"
        );
        assert_eq!(again.store().get("a/b").await.unwrap().unwrap(), "two");
    }

    fn toml_like_default() -> BlobsConfig {
        serde_json::from_str("{}").unwrap()
    }

    #[tokio::test]
    async fn configured_keys_and_missing_features_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let config: BlobsConfig = serde_json::from_value(serde_json::json!({
            "keys": {"master_key": "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
                     "previous_master_keys": ["k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="]},
            "versioning": {"retention_days": 7}
        }))
        .unwrap();
        let opened = open(&config, dir.path()).await.unwrap();
        assert_eq!(opened.keys.current_key_id(), "k2");
        assert!(!dir.path().join(KEY_FILE_NAME).exists());
        #[cfg(not(feature = "aws"))]
        {
            let s3: BlobsConfig =
                serde_json::from_value(serde_json::json!({"backend": "s3"})).unwrap();
            let err = open(&s3, dir.path()).await.err().unwrap();
            assert!(err.to_string().contains("`aws` feature"), "{err}");
        }
        assert!(
            serde_json::from_value::<BlobsConfig>(serde_json::json!({"bakend": "s3"})).is_err()
        );
    }
}
