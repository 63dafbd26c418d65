//! EcoCityHub's blob storage — the S3 layer.
//!
//! Everything that is a file rather than a row (model artifacts and their reports now; report
//! photos later) goes through [`BlobStore`]. [`ObjectBlobs`] implements it over any
//! `object_store` backend: a local directory by default, in memory for tests, and S3 in AWS
//! (object_store's `aws` feature) without the callers changing.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

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
}

fn object_path(key: &str) -> Result<ObjectPath> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(blobs: &dyn BlobStore) {
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
}
