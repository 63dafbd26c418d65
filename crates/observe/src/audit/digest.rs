//! Signed digests and retention, as CloudTrail's digest files: every hour (and on shutdown) a
//! digest names the last record it covers with that record's hash, and the previous digest's
//! blob key and signature, and is signed with a key of its own (ECDSA P-256 over SHA-256).
//! Digests go to the blob store under `audit/digests/NNNNNNNNNN-YYYYMMDDTHHMMSSZ.json`; the
//! public key is published at `audit/keys/FINGERPRINT.pem` (in AWS: a bucket with Object Lock,
//! which is what makes the trail tamper-evident against someone who can write the database).
//!
//! Expiring old records keeps the chain verifiable: only whole digests expire, and a signed
//! checkpoint (`audit/checkpoints/…`) states the last expired sequence number and its hash,
//! which the first remaining record must name as its predecessor.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ecocityhub_blobs::BlobStore;
use ecocityhub_store::observe::{AuditCheckpointRow, AuditDigestRow, DigestContext, ObserveStore};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::chain::canonical_json;
use crate::{ObserveError, Result};

/// Where digests live in the blob store.
pub const DIGEST_PREFIX: &str = "audit/digests/";
/// Where public keys live in the blob store.
pub const KEY_PREFIX: &str = "audit/keys/";
/// Where checkpoints live in the blob store.
pub const CHECKPOINT_PREFIX: &str = "audit/checkpoints/";
/// The store key of the signing key when no file is given.
pub const STORE_KEY: &str = "audit.digest_signing_key";
/// The field of a digest or checkpoint blob holding the signature (over the rest).
pub const SIGNATURE_FIELD: &str = "digestSignature";
pub const ALGORITHM: &str = "SHA256withECDSA";

/// The key digests are signed with.
#[derive(Clone)]
pub struct AuditKey {
    key: SigningKey,
    fingerprint: String,
}

/// The fingerprint of a public key: hex SHA-256 of its SubjectPublicKeyInfo DER.
pub fn fingerprint_of(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("a P-256 key encodes");
    hex::encode(Sha256::digest(der.as_bytes()))
}

impl AuditKey {
    pub fn generate() -> AuditKey {
        loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
                return AuditKey::from_signing(key);
            }
        }
    }

    fn from_signing(key: SigningKey) -> AuditKey {
        let fingerprint = fingerprint_of(key.verifying_key());
        AuditKey { key, fingerprint }
    }

    pub fn from_pem(pem: &str) -> Result<AuditKey> {
        SigningKey::from_pkcs8_pem(pem)
            .map(AuditKey::from_signing)
            .map_err(|e| ObserveError::Key(format!("not a P-256 PKCS#8 key: {e}")))
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
            .to_string()
    }

    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key kept in the store, made on first use (two processes starting at once agree on
    /// the first one written).
    pub async fn in_store(store: &dyn ObserveStore) -> Result<AuditKey> {
        if let Some(pem) = store.observe_value(STORE_KEY).await? {
            return AuditKey::from_pem(&pem);
        }
        let pem = store
            .put_observe_value_if_absent(STORE_KEY, &AuditKey::generate().to_pem())
            .await?;
        AuditKey::from_pem(&pem)
    }

    /// The key in `path`, made (mode 0600) if the file does not exist.
    pub fn in_file(path: &Path) -> Result<AuditKey> {
        match std::fs::read_to_string(path) {
            Ok(pem) => AuditKey::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = AuditKey::generate();
                write_private(path, &key.to_pem()).map_err(|e| {
                    ObserveError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok(key)
            }
            Err(e) => Err(ObserveError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Signs `message`; hex of the DER signature.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.key.sign(message);
        hex::encode(sig.to_der().as_bytes())
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Checks a signature made by [`AuditKey::sign`] with a public key in PEM.
pub fn verify_signature(public_pem: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(key) = VerifyingKey::from_public_key_pem(public_pem) else {
        return false;
    };
    let Some(sig) = hex::decode(signature_hex)
        .ok()
        .and_then(|der| Signature::from_der(&der).ok())
    else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// The fingerprint of a public key in PEM.
pub fn fingerprint_of_pem(public_pem: &str) -> Option<String> {
    VerifyingKey::from_public_key_pem(public_pem)
        .ok()
        .map(|k| fingerprint_of(&k))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The blob key of digest `number` made at `at`.
pub fn digest_key(number: i64, at: DateTime<Utc>) -> String {
    format!(
        "{DIGEST_PREFIX}{number:010}-{}.json",
        at.format("%Y%m%dT%H%M%SZ")
    )
}

/// The blob text: the body with its signature added.
pub fn signed_blob(body: &str, signature: &str) -> String {
    let mut v: Value = serde_json::from_str(body).expect("bodies are JSON objects");
    v[SIGNATURE_FIELD] = json!(signature);
    canonical_json(&v)
}

/// Splits a blob into the canonical body the signature covers and the signature.
pub fn split_blob(text: &str) -> Option<(Value, String, String)> {
    let mut v: Value = serde_json::from_str(text).ok()?;
    let signature = v
        .as_object_mut()?
        .remove(SIGNATURE_FIELD)?
        .as_str()?
        .to_string();
    let body = canonical_json(&v);
    Some((v, body, signature))
}

/// What one retention pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub through_seq: i64,
    pub deleted: u64,
}

/// Makes, signs and writes digests; expires old records.
pub struct Digester {
    store: Arc<dyn ObserveStore>,
    blobs: Arc<dyn BlobStore>,
    key: AuditKey,
}

impl Digester {
    /// Publishes the key's public half (once) and writes digests left pending by a crash.
    pub async fn open(
        store: Arc<dyn ObserveStore>,
        blobs: Arc<dyn BlobStore>,
        key: AuditKey,
    ) -> Result<Digester> {
        let d = Digester { store, blobs, key };
        let key_blob = format!("{KEY_PREFIX}{}.pem", d.key.fingerprint());
        if d.blobs.get(&key_blob).await?.is_none() {
            d.blobs
                .put(&key_blob, Bytes::from(d.key.public_pem()))
                .await?;
        }
        d.write_pending(Utc::now()).await?;
        Ok(d)
    }

    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// Signs the next digest, covering every record committed so far, and writes its blob.
    pub async fn write_digest(&self, now: DateTime<Utc>) -> Result<AuditDigestRow> {
        let key = self.key.clone();
        let mut make = |c: &DigestContext| make_digest(&key, c, now);
        let row = self.store.create_audit_digest(&mut make).await?;
        self.put_blob(&row, now).await?;
        tracing::info!(number = row.number, last_seq = row.last_seq, key = %row.blob_key, "audit digest written");
        Ok(row)
    }

    async fn put_blob(&self, row: &AuditDigestRow, now: DateTime<Utc>) -> Result<()> {
        let text = signed_blob(&row.body, &row.signature);
        self.blobs.put(&row.blob_key, Bytes::from(text)).await?;
        self.store
            .mark_audit_digest_written(row.number, now)
            .await?;
        Ok(())
    }

    /// Writes the blobs of digests stored but not yet written (a crash between the two).
    pub async fn write_pending(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        for row in self.store.audit_digests().await? {
            if row.written_at.is_none() {
                self.put_blob(&row, now).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// When the newest digest was made.
    pub async fn last_digest_at(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .store
            .audit_digests()
            .await?
            .last()
            .map(|d| d.created_at))
    }

    /// Expires the records of every digest made before `cutoff` (whole digests only) behind a
    /// signed checkpoint. Returns what it did, `None` when nothing was old enough.
    pub async fn expire(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Expiry>> {
        let done = self
            .store
            .audit_checkpoint()
            .await?
            .map_or(0, |c| c.through_seq);
        let digests = self.store.audit_digests().await?;
        let Some(d) = digests
            .iter()
            .rev()
            .find(|d| d.created_at < cutoff && d.last_seq > done && d.written_at.is_some())
        else {
            return Ok(None);
        };
        let (digest, _, _) = split_blob(&signed_blob(&d.body, &d.signature))
            .ok_or_else(|| ObserveError::Key(format!("digest {} is not readable", d.number)))?;
        let body = canonical_json(&json!({
            "checkpointFormatVersion": "1.0",
            "throughSequence": d.last_seq,
            "lastExpiredHash": digest["lastRecordHash"],
            "digestNumber": d.number,
            "digestBlobKey": d.blob_key,
            "createdAt": rfc3339(now),
            "digestPublicKeyFingerprint": self.key.fingerprint(),
            "digestSignatureAlgorithm": ALGORITHM,
        }));
        let signature = self.key.sign(body.as_bytes());
        let blob_key = format!("{CHECKPOINT_PREFIX}{:012}.json", d.last_seq);
        self.blobs
            .put(&blob_key, Bytes::from(signed_blob(&body, &signature)))
            .await?;
        let deleted = self
            .store
            .expire_audit(&AuditCheckpointRow {
                through_seq: d.last_seq,
                body,
                signature,
                created_at: now,
            })
            .await?;
        tracing::info!(
            through = d.last_seq,
            deleted,
            "expired audit records behind a checkpoint"
        );
        Ok(Some(Expiry {
            through_seq: d.last_seq,
            deleted,
        }))
    }
}

/// The digest made from `c` at `now`.
fn make_digest(key: &AuditKey, c: &DigestContext, now: DateTime<Utc>) -> AuditDigestRow {
    let blob_key = digest_key(c.number, now);
    let first = c.previous.as_ref().map_or(1, |p| p.last_seq + 1);
    let start = c.previous.as_ref().map(|p| rfc3339(p.created_at));
    let body = canonical_json(&json!({
        "digestFormatVersion": "1.0",
        "digestNumber": c.number,
        "digestStartTime": start,
        "digestEndTime": rfc3339(now),
        "digestBlobKey": blob_key,
        "firstSequence": first,
        "lastSequence": c.head.seq,
        "lastRecordHash": c.head.hash,
        "previousDigestBlobKey": c.previous.as_ref().map(|p| p.blob_key.clone()),
        "previousDigestSignature": c.previous.as_ref().map(|p| p.signature.clone()),
        "previousDigestHash": c.previous.as_ref().map(|p| hex::encode(Sha256::digest(p.body.as_bytes()))),
        "digestPublicKeyFingerprint": key.fingerprint(),
        "digestSignatureAlgorithm": ALGORITHM,
    }));
    AuditDigestRow {
        number: c.number,
        signature: key.sign(body.as_bytes()),
        body,
        blob_key,
        last_seq: c.head.seq,
        created_at: now,
        written_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_public_key_only() {
        let key = AuditKey::generate();
        let sig = key.sign(b"digest body");
        assert!(verify_signature(&key.public_pem(), b"digest body", &sig));
        assert!(!verify_signature(&key.public_pem(), b"digest bodY", &sig));
        assert!(!verify_signature(
            &AuditKey::generate().public_pem(),
            b"digest body",
            &sig
        ));
        assert!(!verify_signature(&key.public_pem(), b"digest body", "00"));
        assert_eq!(
            fingerprint_of_pem(&key.public_pem()).as_deref(),
            Some(key.fingerprint())
        );
        let again = AuditKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert!(AuditKey::from_pem("not a key").is_err());
    }

    #[test]
    fn a_key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.pem");
        let a = AuditKey::in_file(&path).unwrap();
        let b = AuditKey::in_file(&path).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_blob_splits_back_into_the_signed_body() {
        let body = canonical_json(&json!({"b": 1, "a": "x"}));
        let blob = signed_blob(&body, "abcd");
        let (_, back, sig) = split_blob(&blob).unwrap();
        assert_eq!((back, sig.as_str()), (body, "abcd"));
        assert!(split_blob("{}").is_none());
    }
}
