//! Versions of blobs, as S3 versioning keeps them: [`VersionedBlobs`] keeps what an overwrite,
//! a delete or a restore replaced, for a retention period, listable ([`BlobVersions::versions`])
//! and restorable ([`BlobVersions::restore`]); [`BlobVersions::expire_versions`] removes those
//! past retention (the server calls it periodically).
//!
//! The previous content is copied, as stored (still encrypted), to
//! `.versions/{key}/{version id}` before it is replaced: a hard link on a local directory, a
//! server-side copy on S3. The version id is `{milliseconds since 1970, 13 digits}-{8 hex
//! digits}-{o|d|r}`: when the content stopped being current, a random part, and whether an
//! overwrite, a delete or a restore replaced it. Nothing else is stored, so the same layout works
//! on every backend. In S3's terms: `versions` is `ListObjectVersions` of one key without the
//! current version, `restore` is copying a version over the current one, a delete keeps the
//! content as a version (S3 adds a delete marker), and `expire_versions` is the lifecycle rule
//! `NoncurrentVersionExpiration` with `NoncurrentDays` = the retention.

use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::Deserialize;

use crate::{object_path, BlobError, BlobStore, Result, StoredObject};

/// Where kept versions live, in the store underneath.
pub const VERSIONS_PREFIX: &str = ".versions";

/// How versions are kept.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct VersioningConfig {
    /// Keep previous versions at all.
    pub enabled: bool,
    /// Days a replaced version is kept (S3's `NoncurrentDays`).
    pub retention_days: u32,
    /// Key prefixes whose blobs keep no versions (raw uploads are temporary by design).
    pub unversioned_prefixes: Vec<String>,
}

impl Default for VersioningConfig {
    fn default() -> Self {
        VersioningConfig {
            enabled: true,
            retention_days: 30,
            unversioned_prefixes: vec!["uploads/".into()],
        }
    }
}

/// What replaced a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    Overwritten,
    Deleted,
    Restored,
}

impl Replaced {
    fn letter(self) -> char {
        match self {
            Replaced::Overwritten => 'o',
            Replaced::Deleted => 'd',
            Replaced::Restored => 'r',
        }
    }
}

/// One kept (non-current) version of a blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobVersion {
    pub id: String,
    /// When this content stopped being current.
    pub superseded_at: DateTime<Utc>,
    pub replaced_by: Replaced,
}

impl BlobVersion {
    /// A new version id: its milliseconds strictly increase within the process, so versions
    /// made in the same millisecond still sort in the order they were made.
    fn new(at: DateTime<Utc>, replaced_by: Replaced) -> BlobVersion {
        static LAST_MILLIS: AtomicI64 = AtomicI64::new(0);
        let wanted = at.timestamp_millis();
        let millis = LAST_MILLIS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(wanted.max(last + 1))
            })
            .map_or(wanted, |last| wanted.max(last + 1));
        let at = DateTime::from_timestamp_millis(millis).unwrap_or(at);
        let mut random = [0u8; 4];
        rand::rng().fill_bytes(&mut random);
        BlobVersion {
            id: format!(
                "{:013}-{}-{}",
                at.timestamp_millis(),
                hex::encode(random),
                replaced_by.letter()
            ),
            superseded_at: at,
            replaced_by,
        }
    }

    /// Reads a version id; `None` if it is not one.
    pub fn parse(id: &str) -> Option<BlobVersion> {
        let mut parts = id.split('-');
        let (millis, random, letter) = (parts.next()?, parts.next()?, parts.next()?);
        let well_formed = parts.next().is_none()
            && millis.len() == 13
            && millis.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 8
            && random.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return None;
        }
        let replaced_by = match letter {
            "o" => Replaced::Overwritten,
            "d" => Replaced::Deleted,
            "r" => Replaced::Restored,
            _ => return None,
        };
        Some(BlobVersion {
            id: id.to_string(),
            superseded_at: DateTime::from_timestamp_millis(millis.parse().ok()?)?,
            replaced_by,
        })
    }
}

/// What an expiry run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiredVersions {
    pub removed: usize,
    pub kept: usize,
}

/// A [`BlobStore`] whose replaced blobs can be listed and restored.
#[async_trait]
pub trait BlobVersions: BlobStore {
    /// The kept versions of `key`, newest first (the current content is `get`'s).
    async fn versions(&self, key: &str) -> Result<Vec<BlobVersion>>;
    /// The content of one kept version.
    async fn get_version(&self, key: &str, version: &str) -> Result<Option<Bytes>>;
    /// Makes a kept version current again; what was current is kept as a version.
    async fn restore(&self, key: &str, version: &str) -> Result<()>;
    /// Removes versions replaced longer than the retention period before `now`.
    async fn expire_versions(&self, now: DateTime<Utc>) -> Result<ExpiredVersions>;
}

/// Keeps the versions of the blobs of the store underneath.
pub struct VersionedBlobs<B> {
    inner: B,
    config: VersioningConfig,
}

impl<B: BlobStore> VersionedBlobs<B> {
    pub fn new(inner: B, config: VersioningConfig) -> VersionedBlobs<B> {
        VersionedBlobs { inner, config }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn is_versioned(&self, key: &str) -> bool {
        self.config.enabled
            && !self
                .config
                .unversioned_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str()))
    }

    /// Keeps what is stored under `key` as a version, if anything is.
    async fn keep(&self, key: &str, replaced_by: Replaced) -> Result<Option<BlobVersion>> {
        if !self.is_versioned(key) {
            return Ok(None);
        }
        let version = BlobVersion::new(Utc::now(), replaced_by);
        let kept = self
            .inner
            .copy(key, &version_path(key, &version.id))
            .await?;
        if kept {
            metrics::counter!("ecocityhub_blobs_versions_kept_total").increment(1);
        }
        Ok(kept.then_some(version))
    }
}

fn version_path(key: &str, id: &str) -> String {
    format!("{VERSIONS_PREFIX}/{key}/{id}")
}

/// The blob key a stored path holds the content of (differs for kept versions).
pub fn key_of_stored_path(path: &str) -> String {
    path.strip_prefix(VERSIONS_PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.rsplit_once('/'))
        .filter(|(_, id)| BlobVersion::parse(id).is_some())
        .map(|(key, _)| key.to_string())
        .unwrap_or_else(|| path.to_string())
}

fn check_key(key: &str) -> Result<()> {
    object_path(key)?;
    if key == VERSIONS_PREFIX || key.starts_with(&format!("{VERSIONS_PREFIX}/")) {
        return Err(BlobError::InvalidKey {
            key: key.into(),
            reason: format!("{VERSIONS_PREFIX}/ is reserved for kept versions"),
        });
    }
    Ok(())
}

#[async_trait]
impl<B: BlobStore> BlobStore for VersionedBlobs<B> {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_key(key)?;
        self.keep(key, Replaced::Overwritten).await?;
        self.inner.put(key, bytes).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        self.inner.get(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.keep(key, Replaced::Deleted).await?;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = self.inner.list(prefix).await?;
        keys.retain(|k| !k.starts_with(&format!("{VERSIONS_PREFIX}/")));
        Ok(keys)
    }

    fn describe(&self) -> String {
        if self.config.enabled {
            format!(
                "{}, versions kept {} days",
                self.inner.describe(),
                self.config.retention_days
            )
        } else {
            self.inner.describe()
        }
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        check_key(key)?;
        self.inner.put_new(key, bytes).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        check_key(from)?;
        check_key(to)?;
        self.keep(to, Replaced::Overwritten).await?;
        self.inner.copy(from, to).await
    }

    async fn list_stored(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        Ok(self
            .inner
            .list(prefix)
            .await?
            .into_iter()
            .map(|path| StoredObject {
                key: key_of_stored_path(&path),
                path,
            })
            .collect())
    }

    async fn get_stored(&self, path: &str) -> Result<Option<Bytes>> {
        self.inner.get(path).await
    }

    async fn put_stored(&self, path: &str, bytes: Bytes) -> Result<()> {
        self.inner.put(path, bytes).await
    }
}

#[async_trait]
impl<B: BlobStore> BlobVersions for VersionedBlobs<B> {
    async fn versions(&self, key: &str) -> Result<Vec<BlobVersion>> {
        check_key(key)?;
        let prefix = format!("{VERSIONS_PREFIX}/{key}/");
        let mut versions: Vec<BlobVersion> = self
            .inner
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|path| path.strip_prefix(&prefix))
            .filter_map(BlobVersion::parse)
            .collect();
        versions.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(versions)
    }

    async fn get_version(&self, key: &str, version: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        if BlobVersion::parse(version).is_none() {
            return Ok(None);
        }
        self.inner.get(&version_path(key, version)).await
    }

    async fn restore(&self, key: &str, version: &str) -> Result<()> {
        check_key(key)?;
        let unknown = || BlobError::UnknownVersion {
            key: key.into(),
            version: version.into(),
        };
        BlobVersion::parse(version).ok_or_else(unknown)?;
        let Some(content) = self.inner.get(&version_path(key, version)).await? else {
            return Err(unknown());
        };
        self.keep(key, Replaced::Restored).await?;
        self.inner.put(key, content).await?;
        tracing::info!(blob = key, version, "restored a kept version");
        Ok(())
    }

    async fn expire_versions(&self, now: DateTime<Utc>) -> Result<ExpiredVersions> {
        let cutoff = now - Duration::days(i64::from(self.config.retention_days));
        let mut result = ExpiredVersions::default();
        for path in self.inner.list(VERSIONS_PREFIX).await? {
            let Some(version) = path.rsplit('/').next().and_then(BlobVersion::parse) else {
                continue;
            };
            if version.superseded_at < cutoff {
                self.inner.delete(&path).await?;
                result.removed += 1;
            } else {
                result.kept += 1;
            }
        }
        metrics::counter!("ecocityhub_blobs_versions_expired_total")
            .increment(result.removed as u64);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectBlobs;

    fn versioned(dir: &std::path::Path) -> VersionedBlobs<ObjectBlobs> {
        VersionedBlobs::new(
            ObjectBlobs::local(dir).unwrap(),
            VersioningConfig::default(),
        )
    }

    #[tokio::test]
    async fn overwrites_and_deletes_keep_versions_that_restore() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = versioned(dir.path());
        crate::tests::round_trip(&blobs).await;
        let key = "reports/7/photo.jpg";
        blobs.put(key, Bytes::from_static(b"v1")).await.unwrap();
        blobs.put(key, Bytes::from_static(b"v2")).await.unwrap();
        blobs.put(key, Bytes::from_static(b"v3")).await.unwrap();
        let versions = blobs.versions(key).await.unwrap();
        assert_eq!(versions.len(), 2);
        assert!(versions[0].id > versions[1].id, "newest first");
        assert_eq!(
            blobs
                .get_version(key, &versions[1].id)
                .await
                .unwrap()
                .unwrap(),
            "v1"
        );
        assert_eq!(blobs.list("reports").await.unwrap(), vec![key]);

        blobs.delete(key).await.unwrap();
        assert_eq!(blobs.get(key).await.unwrap(), None);
        let versions = blobs.versions(key).await.unwrap();
        assert_eq!(versions.len(), 3);
        assert_eq!(versions[0].replaced_by, Replaced::Deleted);

        blobs.restore(key, &versions[2].id).await.unwrap();
        assert_eq!(blobs.get(key).await.unwrap().unwrap(), "v1");
        blobs.restore(key, &versions[0].id).await.unwrap();
        assert_eq!(blobs.get(key).await.unwrap().unwrap(), "v3");
        let versions = blobs.versions(key).await.unwrap();
        assert_eq!(versions[0].replaced_by, Replaced::Restored);
        assert!(matches!(
            blobs.restore(key, "0000000000000-00000000-o").await,
            Err(BlobError::UnknownVersion { .. })
        ));
        assert!(matches!(
            blobs.put(".versions/x/y", Bytes::new()).await,
            Err(BlobError::InvalidKey { .. })
        ));
    }

    #[tokio::test]
    async fn old_versions_expire_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = versioned(dir.path());
        blobs.put("a", Bytes::from_static(b"1")).await.unwrap();
        blobs.put("a", Bytes::from_static(b"2")).await.unwrap();
        blobs.put("a", Bytes::from_static(b"3")).await.unwrap();
        let now = Utc::now();
        let kept = blobs
            .expire_versions(now + Duration::days(29))
            .await
            .unwrap();
        assert_eq!((kept.removed, kept.kept), (0, 2));
        let gone = blobs
            .expire_versions(now + Duration::days(31))
            .await
            .unwrap();
        assert_eq!((gone.removed, gone.kept), (2, 0));
        assert!(blobs.versions("a").await.unwrap().is_empty());
        assert_eq!(blobs.get("a").await.unwrap().unwrap(), "3");
        assert!(!dir.path().join(".versions").exists(), "emptied folders go");
    }

    #[tokio::test]
    async fn uploads_keep_no_versions_and_stored_paths_name_their_keys() {
        let blobs = VersionedBlobs::new(ObjectBlobs::in_memory(), VersioningConfig::default());
        blobs
            .put("uploads/raw/1", Bytes::from_static(b"a"))
            .await
            .unwrap();
        blobs
            .put("uploads/raw/1", Bytes::from_static(b"b"))
            .await
            .unwrap();
        blobs.delete("uploads/raw/1").await.unwrap();
        assert!(blobs.versions("uploads/raw/1").await.unwrap().is_empty());
        blobs.put("m/x", Bytes::from_static(b"a")).await.unwrap();
        blobs.put("m/x", Bytes::from_static(b"b")).await.unwrap();
        let stored = blobs.list_stored("").await.unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|o| o.key == "m/x"), "{stored:?}");
        // A key that is also another key's folder (possible on S3) keeps its own versions.
        blobs.put("m/x/y", Bytes::from_static(b"c")).await.unwrap();
        blobs.put("m/x/y", Bytes::from_static(b"d")).await.unwrap();
        assert_eq!(blobs.versions("m/x").await.unwrap().len(), 1);
        assert_eq!(blobs.versions("m/x/y").await.unwrap().len(), 1);
    }
}
