//! EcoCityHub's blob storage — the S3 and KMS layer.
//!
//! Everything that is a file rather than a row (model artifacts and their reports, report photos,
//! raw uploads, backups) goes through [`BlobStore`]. The layers, from the bottom:
//!
//! - [`ObjectBlobs`]: any `object_store` backend — a local directory by default, memory for
//!   tests, S3 in AWS ([`s3`], feature `aws`).
//! - [`VersionedBlobs`]: overwritten and deleted blobs keep their previous versions for a
//!   retention period, listable and restorable ([`BlobVersions`]), as S3 versioning does.
//! - [`EncryptedBlobs`]: envelope encryption at rest — a fresh AES-256-GCM data key per object,
//!   wrapped by a master key of a [`KeyProvider`] (a local key file, or AWS KMS).
//!
//! [`open`] stacks them from a [`BlobsConfig`]. Beside them: [`Sealer`] (the same envelope for
//! secrets kept elsewhere), [`uploads`] (presigned browser uploads), [`photos`] (sniffing,
//! decoding with limits, stripping EXIF, thumbnails), [`photo_uploads`] (the two together, as
//! reports use them) and [`bench`].

pub mod bench;
pub mod config;
pub mod encrypted;
pub mod envelope;
pub mod keys;
#[cfg(feature = "aws")]
pub mod kms;
pub mod photo_uploads;
pub mod photos;
#[cfg(feature = "aws")]
pub mod s3;
pub mod uploads;
pub mod versions;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub use config::{open, BlobsConfig, OpenedBlobs};
pub use encrypted::{EncryptedBlobs, RotationReport};
pub use envelope::{is_sealed, Sealer};
pub use keys::{KeyError, KeyProvider, LocalKeyProvider};
pub use versions::{BlobVersion, BlobVersions, ExpiredVersions, VersionedBlobs, VersioningConfig};

/// The blob store the binary uses: encrypted, versioned, over `object_store`.
pub type Blobs = EncryptedBlobs<VersionedBlobs<ObjectBlobs>>;

/// What can go wrong storing or reading a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("blob storage failed: {0}")]
    Storage(#[from] object_store::Error),
    #[error("cannot use {path} for blobs: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    /// The stored bytes of an encrypted blob do not authenticate: altered or damaged on disk.
    #[error("blob {key} is damaged or was tampered with: {reason}")]
    Tampered { key: String, reason: String },
    /// The data key of a blob could not be made or unwrapped.
    #[error("blob {key}: {source}")]
    Key {
        key: String,
        #[source]
        source: KeyError,
    },
    /// The key provider could not be set up.
    #[error(transparent)]
    KeyProvider(#[from] KeyError),
    /// A plain (unencrypted) blob was read while plain blobs are refused.
    #[error("blob {key} is stored unencrypted and plain blobs are not accepted")]
    Unencrypted { key: String },
    #[error("blob {key} has no version {version:?}")]
    UnknownVersion { key: String, version: String },
    #[error("blob configuration: {0}")]
    Config(String),
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// One stored object as maintenance sees it: where it is (`path`) and which blob key its
/// content belongs to (`key`; differs from `path` for kept versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub path: String,
    pub key: String,
}

/// Keyed bytes: keys are `/`-separated relative paths such as `models/s1/pm25/v3/model.json`.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the bytes under `key`, replacing what was there; readers never see half a blob.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// The bytes under `key`, or `None` if there are none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// Removes the blob; removing a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Keys under a prefix (a folder), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Where the blobs live, for logs.
    fn describe(&self) -> String;

    /// Stores the bytes only if nothing is stored under `key` yet; `false` when something was.
    /// Backends with conditional writes do it atomically; the default checks first.
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        if self.get(key).await?.is_some() {
            return Ok(false);
        }
        self.put(key, bytes).await?;
        Ok(true)
    }

    /// Copies the blob as stored (no decryption); `false` when `from` does not exist.
    async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        match self.get(from).await? {
            Some(bytes) => self.put(to, bytes).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Maintenance only: every stored object under `prefix`, including kept versions.
    async fn list_stored(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|key| StoredObject {
                path: key.clone(),
                key,
            })
            .collect())
    }

    /// Maintenance only: an object's bytes as stored, bypassing encryption and versioning.
    async fn get_stored(&self, path: &str) -> Result<Option<Bytes>> {
        self.get(path).await
    }

    /// Maintenance only: replaces an object's bytes as stored, keeping no version of them.
    async fn put_stored(&self, path: &str, bytes: Bytes) -> Result<()> {
        self.put(path, bytes).await
    }
}

/// A shared store is a store (so wrappers can sit over an `Arc` others also hold).
#[async_trait]
impl<T: BlobStore + ?Sized> BlobStore for Arc<T> {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        (**self).put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        (**self).get(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        (**self).list(prefix).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        (**self).put_new(key, bytes).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        (**self).copy(from, to).await
    }
    async fn list_stored(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        (**self).list_stored(prefix).await
    }
    async fn get_stored(&self, path: &str) -> Result<Option<Bytes>> {
        (**self).get_stored(path).await
    }
    async fn put_stored(&self, path: &str, bytes: Bytes) -> Result<()> {
        (**self).put_stored(path, bytes).await
    }
}

/// A [`BlobStore`] over an `object_store` backend.
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl ObjectBlobs {
    /// Blobs as files under `dir` (created if missing).
    pub fn local(dir: &Path) -> Result<ObjectBlobs> {
        let directory = |source| BlobError::Directory {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(directory)?;
        let dir = dir.canonicalize().map_err(directory)?;
        Ok(ObjectBlobs {
            store: Arc::new(LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true)),
            description: format!("local directory {}", dir.display()),
        })
    }

    /// Blobs in memory (tests, throw-away runs).
    pub fn in_memory() -> ObjectBlobs {
        ObjectBlobs {
            store: Arc::new(InMemory::new()),
            description: "memory".into(),
        }
    }

    /// Blobs in any other backend (S3 in AWS).
    pub fn new(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> ObjectBlobs {
        ObjectBlobs {
            store,
            description: description.into(),
        }
    }

    /// The `object_store` underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// Checks a key and turns it into an `object_store` path.
pub fn object_path(key: &str) -> Result<ObjectPath> {
    let invalid = |reason: &str| BlobError::InvalidKey {
        key: key.into(),
        reason: reason.into(),
    };
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return Err(invalid("keys are relative paths of non-empty parts"));
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("empty, '.' and '..' parts are not allowed"));
    }
    ObjectPath::parse(key).map_err(|e| invalid(&e.to_string()))
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&object_path(key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&object_path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&object_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(object_path(prefix)?)
        };
        let mut keys: Vec<String> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&object_path(key)?, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        match self
            .store
            .copy(&object_path(from)?, &object_path(to)?)
            .await
        {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) async fn round_trip(blobs: &dyn BlobStore) {
        assert_eq!(blobs.get("models/a/v1/model.json").await.unwrap(), None);
        blobs
            .put("models/a/v1/model.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        blobs
            .put("models/a/v2/model.json", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        blobs
            .put("models/b/v1/model.json", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            blobs.get("models/a/v2/model.json").await.unwrap().unwrap(),
            Bytes::from_static(b"[1]")
        );
        assert_eq!(
            blobs.list("models/a").await.unwrap(),
            vec!["models/a/v1/model.json", "models/a/v2/model.json"]
        );
        blobs.delete("models/a/v1/model.json").await.unwrap();
        blobs.delete("models/a/v1/model.json").await.unwrap();
        assert_eq!(
            blobs.list("models/a/").await.unwrap(),
            vec!["models/a/v2/model.json"]
        );
        assert!(blobs
            .put_new("once/a", Bytes::from_static(b"1"))
            .await
            .unwrap());
        assert!(!blobs
            .put_new("once/a", Bytes::from_static(b"2"))
            .await
            .unwrap());
        assert_eq!(
            blobs.get("once/a").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        for bad in ["", "/abs", "a/../b", "a//b", "dir/"] {
            assert!(
                matches!(
                    blobs.put(bad, Bytes::new()).await,
                    Err(BlobError::InvalidKey { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[tokio::test]
    async fn local_files_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::local(&dir.path().join("blobs")).unwrap();
        round_trip(&blobs).await;
        assert!(dir.path().join("blobs/models/a/v2/model.json").is_file());
        let reopened = ObjectBlobs::local(&dir.path().join("blobs")).unwrap();
        assert_eq!(
            reopened
                .get("models/b/v1/model.json")
                .await
                .unwrap()
                .unwrap(),
            Bytes::from_static(b"x")
        );
    }

    #[tokio::test]
    async fn memory_round_trip() {
        round_trip(&ObjectBlobs::in_memory()).await;
    }

    #[tokio::test]
    async fn copy_keeps_the_bytes_and_reports_a_missing_source() {
        let blobs = ObjectBlobs::in_memory();
        blobs.put("a", Bytes::from_static(b"x")).await.unwrap();
        assert!(blobs.copy("a", "b/c").await.unwrap());
        assert!(!blobs.copy("missing", "d").await.unwrap());
        assert_eq!(blobs.get("b/c").await.unwrap().unwrap(), "x");
        assert_eq!(blobs.get("d").await.unwrap(), None);
    }
}
