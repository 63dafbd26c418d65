//! [`EncryptedBlobs`]: envelope encryption at rest in front of any [`BlobStore`], and the
//! rotation of master keys over everything stored (kept versions included).
//!
//! Each `put` asks the [`KeyProvider`] for a fresh data key, encrypts the blob with AES-256-GCM
//! bound to its key, and stores the envelope ([`crate::envelope`]). Each `get` unwraps the data
//! key and decrypts; blobs stored before encryption existed (no magic) are returned as they are.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::envelope::{self, blob_context, FormatError};
use crate::keys::{KeyError, KeyProvider};
use crate::versions::{BlobVersion, BlobVersions, ExpiredVersions};
use crate::{BlobError, BlobStore, Result, Sealer, StoredObject};

/// A [`BlobStore`] that encrypts every blob it stores.
pub struct EncryptedBlobs<B> {
    inner: B,
    keys: Arc<dyn KeyProvider>,
    accept_plain: bool,
}

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// The master key every data key is now wrapped under.
    pub key_id: String,
    /// Objects whose data key was re-wrapped (the data untouched).
    pub rewrapped: usize,
    /// Plain objects from before encryption that were encrypted.
    pub encrypted_plain: usize,
    /// Objects already under the current key.
    pub unchanged: usize,
    /// Objects that changed while being rotated (written anew, so already current).
    pub skipped_changed: usize,
    /// Objects that could not be rotated, with the reason; the rest went on.
    pub failed: Vec<(String, String)>,
}

impl<B: BlobStore> EncryptedBlobs<B> {
    /// Encrypts what it stores into `inner`; plain blobs already there still read.
    pub fn new(inner: B, keys: Arc<dyn KeyProvider>) -> EncryptedBlobs<B> {
        EncryptedBlobs {
            inner,
            keys,
            accept_plain: true,
        }
    }

    /// Refuses to read plain blobs (once every blob has been encrypted by a rotation).
    pub fn refusing_plain(mut self) -> EncryptedBlobs<B> {
        self.accept_plain = false;
        self
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    /// A [`Sealer`] over the same key provider, for secrets kept elsewhere.
    pub fn sealer(&self) -> Sealer {
        Sealer::new(self.keys.clone())
    }

    async fn encrypt(&self, key: &str, bytes: &[u8]) -> Result<Bytes> {
        let data_key = self
            .keys
            .generate_data_key()
            .await
            .map_err(|source| BlobError::Key {
                key: key.to_string(),
                source,
            })?;
        Ok(envelope::seal_with(
            &data_key.plaintext,
            &data_key.wrapped,
            &blob_context(key),
            bytes,
        )
        .into())
    }

    async fn decrypt(&self, key: &str, stored: Bytes) -> Result<Bytes> {
        if !envelope::is_sealed(&stored) {
            if !self.accept_plain {
                return Err(BlobError::Unencrypted { key: key.into() });
            }
            metrics::counter!("ecocityhub_blobs_plain_reads_total").increment(1);
            return Ok(stored);
        }
        let tampered = |reason: String| {
            metrics::counter!("ecocityhub_blobs_tampered_total").increment(1);
            tracing::warn!(blob = key, %reason, "a blob failed to decrypt");
            BlobError::Tampered {
                key: key.to_string(),
                reason,
            }
        };
        let parsed = envelope::parse(&stored).map_err(|e| tampered(format_reason(e)))?;
        let data_key = self
            .keys
            .unwrap(&parsed.wrapped)
            .await
            .map_err(|source| match source {
                KeyError::Unwrap { key_id } => tampered(format!(
                    "its data key does not unwrap under master key {key_id:?}"
                )),
                source => BlobError::Key {
                    key: key.to_string(),
                    source,
                },
            })?;
        let header_len = stored.len() - parsed.sealed.len();
        let nonce = parsed.nonce;
        envelope::open_stored(&data_key, stored, header_len, &nonce, &blob_context(key))
            .ok_or_else(|| {
                tampered(
                    "its authentication tag (a cryptographic checksum) does not match the stored bytes"
                        .into(),
                )
            })
    }

    /// Makes a new master key current (the key file can; configured and KMS keys are changed
    /// in the configuration, then [`EncryptedBlobs::rewrap_all`]) and re-wraps everything.
    pub async fn rotate_master(&self) -> Result<RotationReport> {
        let key_id = self.keys.create_master_key().await?;
        tracing::info!(%key_id, "rotating every blob to a new master key");
        self.rewrap_all(true).await
    }

    /// Re-wraps the data key of every stored object (kept versions too) under the current
    /// master key without re-encrypting the data; with `encrypt_plain`, plain objects from
    /// before encryption are encrypted. An object written while this runs is skipped (it was
    /// written under the current key). Failures are collected, not fatal.
    pub async fn rewrap_all(&self, encrypt_plain: bool) -> Result<RotationReport> {
        let mut report = RotationReport {
            key_id: self.keys.current_key_id(),
            ..RotationReport::default()
        };
        for object in self.inner.list_stored("").await? {
            match self
                .rotate_one(&object, encrypt_plain, &report.key_id)
                .await
            {
                Ok(outcome) => outcome.count(&mut report),
                Err(e) => report.failed.push((object.path.clone(), e.to_string())),
            }
        }
        tracing::info!(?report, "master key rotation done");
        Ok(report)
    }

    async fn rotate_one(
        &self,
        object: &StoredObject,
        encrypt_plain: bool,
        current: &str,
    ) -> Result<Outcome> {
        let Some(stored) = self.inner.get_stored(&object.path).await? else {
            return Ok(Outcome::Changed);
        };
        let replacement = if envelope::is_sealed(&stored) {
            let parsed = envelope::parse(&stored).map_err(|e| BlobError::Tampered {
                key: object.key.clone(),
                reason: format_reason(e),
            })?;
            if parsed.wrapped.key_id == current {
                return Ok(Outcome::Unchanged);
            }
            let wrapped =
                self.keys
                    .rewrap(&parsed.wrapped)
                    .await
                    .map_err(|source| BlobError::Key {
                        key: object.key.clone(),
                        source,
                    })?;
            (
                envelope::with_wrapped(&parsed, &wrapped),
                Outcome::Rewrapped,
            )
        } else if encrypt_plain {
            (
                self.encrypt(&object.key, &stored).await?.to_vec(),
                Outcome::Encrypted,
            )
        } else {
            return Ok(Outcome::Unchanged);
        };
        if self.inner.get_stored(&object.path).await?.as_ref() != Some(&stored) {
            return Ok(Outcome::Changed);
        }
        self.inner
            .put_stored(&object.path, replacement.0.into())
            .await?;
        Ok(replacement.1)
    }
}

enum Outcome {
    Rewrapped,
    Encrypted,
    Unchanged,
    Changed,
}

impl Outcome {
    fn count(self, report: &mut RotationReport) {
        match self {
            Outcome::Rewrapped => report.rewrapped += 1,
            Outcome::Encrypted => report.encrypted_plain += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Changed => report.skipped_changed += 1,
        }
    }
}

fn format_reason(e: FormatError) -> String {
    match e {
        FormatError::UnknownVersion(v) => {
            format!("its envelope has format version {v}, unknown to this build")
        }
        other => format!("its envelope header is damaged ({other})"),
    }
}

#[async_trait]
impl<B: BlobStore> BlobStore for EncryptedBlobs<B> {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        crate::object_path(key)?;
        let sealed = self.encrypt(key, &bytes).await?;
        self.inner.put(key, sealed).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.inner.get(key).await? {
            Some(stored) => self.decrypt(key, stored).await.map(Some),
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    fn describe(&self) -> String {
        format!(
            "{}, encrypted under {}",
            self.inner.describe(),
            self.keys.describe()
        )
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        crate::object_path(key)?;
        let sealed = self.encrypt(key, &bytes).await?;
        self.inner.put_new(key, sealed).await
    }

    /// Copying re-encrypts: the data is bound to its key.
    async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        match self.get(from).await? {
            Some(bytes) => self.put(to, bytes).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn list_stored(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        self.inner.list_stored(prefix).await
    }

    async fn get_stored(&self, path: &str) -> Result<Option<Bytes>> {
        self.inner.get_stored(path).await
    }

    async fn put_stored(&self, path: &str, bytes: Bytes) -> Result<()> {
        self.inner.put_stored(path, bytes).await
    }
}

#[async_trait]
impl<B: BlobVersions> BlobVersions for EncryptedBlobs<B> {
    async fn versions(&self, key: &str) -> Result<Vec<BlobVersion>> {
        self.inner.versions(key).await
    }

    async fn get_version(&self, key: &str, version: &str) -> Result<Option<Bytes>> {
        match self.inner.get_version(key, version).await? {
            Some(stored) => self.decrypt(key, stored).await.map(Some),
            None => Ok(None),
        }
    }

    async fn restore(&self, key: &str, version: &str) -> Result<()> {
        self.inner.restore(key, version).await
    }

    async fn expire_versions(&self, now: chrono::DateTime<chrono::Utc>) -> Result<ExpiredVersions> {
        self.inner.expire_versions(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::LocalKeyProvider;
    use crate::ObjectBlobs;

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    fn local(dir: &std::path::Path) -> EncryptedBlobs<ObjectBlobs> {
        let keys = Arc::new(LocalKeyProvider::open_or_create(dir).unwrap());
        EncryptedBlobs::new(ObjectBlobs::local(&dir.join("blobs")).unwrap(), keys)
    }

    const SECRET: &[u8] = b"a citizen's photo, in the clear: EXIF GPS 51.52N 0.15W";

    #[tokio::test]
    async fn the_files_on_disk_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = local(dir.path());
        crate::tests::round_trip(&blobs).await;
        blobs
            .put("photos/p.jpg", Bytes::from_static(SECRET))
            .await
            .unwrap();
        assert_eq!(blobs.get("photos/p.jpg").await.unwrap().unwrap(), SECRET);
        let files = walk(&dir.path().join("blobs"));
        assert!(files.len() >= 4, "{files:?}");
        for file in files {
            let raw = std::fs::read(&file).unwrap();
            assert!(envelope::is_sealed(&raw), "{file:?} is not sealed");
            for needle in [&SECRET[..16], b"[1]".as_slice(), b"EXIF GPS"] {
                assert!(
                    !raw.windows(needle.len()).any(|w| w == needle),
                    "{file:?} holds plaintext"
                );
            }
        }
    }

    #[tokio::test]
    async fn tampered_data_and_headers_fail_naming_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = local(dir.path());
        blobs
            .put("models/m/model.json.gz", Bytes::from_static(SECRET))
            .await
            .unwrap();
        let path = dir.path().join("blobs/models/m/model.json.gz");
        let good = std::fs::read(&path).unwrap();
        let header_len = good.len() - SECRET.len() - 16;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a ciphertext byte", {
                let mut b = good.clone();
                b[header_len + 3] ^= 0x20;
                b
            }),
            ("the tag", {
                let mut b = good.clone();
                *b.last_mut().unwrap() ^= 1;
                b
            }),
            ("the nonce", {
                let mut b = good.clone();
                b[header_len - 1] ^= 1;
                b
            }),
            ("the wrapped key", {
                let mut b = good.clone();
                b[header_len - 20] ^= 1;
                b
            }),
            ("the version", {
                let mut b = good.clone();
                b[8] = 9;
                b
            }),
            ("half the file", good[..good.len() / 2].to_vec()),
            ("the header alone", good[..30].to_vec()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = blobs.get("models/m/model.json.gz").await.unwrap_err();
            assert!(
                matches!(&err, BlobError::Tampered { key, .. } if key == "models/m/model.json.gz"),
                "{what}: {err:?}"
            );
            assert!(err.to_string().contains("models/m/model.json.gz"), "{err}");
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            blobs.get("models/m/model.json.gz").await.unwrap().unwrap(),
            SECRET
        );
        // The data is bound to its key: moved under another name, it does not open.
        std::fs::create_dir_all(dir.path().join("blobs/models/n")).unwrap();
        std::fs::copy(&path, dir.path().join("blobs/models/n/model.json.gz")).unwrap();
        assert!(matches!(
            blobs.get("models/n/model.json.gz").await,
            Err(BlobError::Tampered { .. })
        ));
    }

    #[tokio::test]
    async fn plain_blobs_from_before_encryption_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let plain = ObjectBlobs::local(&dir.path().join("blobs")).unwrap();
        let gzip = Bytes::from_static(b"\x1f\x8b\x08\x00legacy artifact");
        plain
            .put("models/old/model.json.gz", gzip.clone())
            .await
            .unwrap();
        plain
            .put("models/old/report.md", Bytes::from_static(b"# Report"))
            .await
            .unwrap();
        let blobs = local(dir.path());
        assert_eq!(
            blobs
                .get("models/old/model.json.gz")
                .await
                .unwrap()
                .unwrap(),
            gzip
        );
        assert_eq!(
            blobs.get("models/old/report.md").await.unwrap().unwrap(),
            "# Report"
        );
        let strict = local(dir.path()).refusing_plain();
        assert!(matches!(
            strict.get("models/old/report.md").await,
            Err(BlobError::Unencrypted { .. })
        ));
    }

    #[tokio::test]
    async fn rotation_rewraps_without_reencrypting_and_old_data_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let plain = ObjectBlobs::local(&dir.path().join("blobs")).unwrap();
        plain
            .put("legacy/report.md", Bytes::from_static(b"# plain"))
            .await
            .unwrap();
        let blobs = local(dir.path());
        blobs
            .put("a/one", Bytes::from_static(SECRET))
            .await
            .unwrap();
        blobs
            .put("a/two", Bytes::from_static(b"two"))
            .await
            .unwrap();
        let before = std::fs::read(dir.path().join("blobs/a/one")).unwrap();
        let old_id = blobs.keys().current_key_id();

        let report = blobs.rotate_master().await.unwrap();
        assert_ne!(report.key_id, old_id);
        assert_eq!(
            (report.rewrapped, report.encrypted_plain, report.unchanged),
            (2, 1, 0),
            "{report:?}"
        );
        assert!(report.failed.is_empty());
        let after = std::fs::read(dir.path().join("blobs/a/one")).unwrap();
        let (b, a) = (
            envelope::parse(&before).unwrap(),
            envelope::parse(&after).unwrap(),
        );
        assert_eq!(a.wrapped.key_id, report.key_id);
        assert_eq!(
            (a.nonce, a.sealed),
            (b.nonce, b.sealed),
            "the data was not re-encrypted"
        );
        assert!(envelope::is_sealed(
            &std::fs::read(dir.path().join("blobs/legacy/report.md")).unwrap()
        ));
        for (key, want) in [
            ("a/one", SECRET),
            ("a/two", b"two"),
            ("legacy/report.md", b"# plain"),
        ] {
            assert_eq!(blobs.get(key).await.unwrap().unwrap(), want);
        }
        let again = blobs.rewrap_all(true).await.unwrap();
        assert_eq!((again.rewrapped, again.unchanged), (0, 3));
    }
}
