//! Browser uploads the S3 way: the server signs a URL, the browser PUTs the file to it, and the
//! report then refers to the upload by its id.
//!
//! [`UploadSigner`] signs: [`LocalUploadSigner`] makes URLs served by EcoCityHub itself
//! (`/uploads/{id}?expires=…&size=…&type=…&sha256=…&sig=…`, HMAC-SHA256, expiring, bound to the
//! exact size, the content type and the SHA-256 of the file) and checks them
//! ([`LocalUploadSigner::verify`], [`LocalUploadSigner::accept`]: constant-time signature check,
//! expiry, single use); `crate::s3::S3UploadSigner` (feature `aws`) presigns S3 PUTs binding the
//! content type and `x-amz-checksum-sha256`. Emulators and S3 itself do not enforce sizes on
//! presigned PUTs, so [`fetch_upload`] enforces the limits again when the upload is attached.
//!
//! Raw uploads live under `uploads/raw/{id}`, the single-use claims of local URLs under
//! `uploads/claims/{id}`; an id starts with the second it was signed, so [`expire_uploads`]
//! removes unattached uploads and old claims without any other record.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::keys::{random_key, SecretKey, KEY_LEN};
use crate::{BlobError, BlobStore};

/// The most a photo upload may be: 10 MB.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1000 * 1000;
/// Where raw uploads are stored.
pub const RAW_PREFIX: &str = "uploads/raw";
/// Where the single-use claims of local upload URLs are recorded.
pub const CLAIMS_PREFIX: &str = "uploads/claims";
/// The blob holding the local signing key when none is configured.
pub const SIGNING_KEY_BLOB: &str = "system/upload-signing-key";

/// How uploads are signed and limited.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// How long a signed URL is valid.
    pub url_lifetime_secs: u64,
    /// The largest upload accepted.
    pub max_bytes: u64,
    /// Content types a URL may be signed for.
    pub allowed_types: Vec<String>,
    /// How long an upload no report refers to is kept (at least the URL lifetime).
    pub unattached_ttl_secs: u64,
    /// Base64 of a 32-byte HMAC key for local URLs; by default a random key is made once and
    /// kept, encrypted, in the blob store (`system/upload-signing-key`).
    pub signing_key: Option<String>,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            url_lifetime_secs: 15 * 60,
            max_bytes: MAX_UPLOAD_BYTES,
            allowed_types: ["image/jpeg", "image/png", "image/webp"]
                .map(String::from)
                .to_vec(),
            unattached_ttl_secs: 24 * 3600,
            signing_key: None,
        }
    }
}

/// Why an upload was refused; [`UploadError::status`] is the HTTP status to answer.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is {size} bytes; at most {max} bytes are accepted")]
    TooLarge { size: u64, max: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("uploads of type {content_type:?} are not accepted (JPEG, PNG or WebP)")]
    UnsupportedType { content_type: String },
    #[error("the upload URL is malformed: {0}")]
    Malformed(String),
    #[error(
        "the upload URL's signature does not match: it was altered or signed by another server"
    )]
    BadSignature,
    #[error("the upload URL expired at {expired_at}; ask for a new one")]
    Expired { expired_at: DateTime<Utc> },
    #[error("the upload URL {id} was already used; ask for a new one")]
    Reused { id: String },
    #[error("the file is {received} bytes but the URL was signed for {declared}")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("the file was sent as {sent:?} but the URL was signed for {signed:?}")]
    TypeMismatch { signed: String, sent: String },
    #[error("the file's SHA-256 does not match the checksum the URL was signed for")]
    ChecksumMismatch,
    #[error("nothing was uploaded for {id} (or it expired)")]
    NotUploaded { id: String },
    #[error("{0} is not an upload id")]
    BadId(String),
    #[error("cannot sign upload URLs: {0}")]
    Signing(String),
    #[error(transparent)]
    Storage(#[from] BlobError),
}

impl UploadError {
    /// The HTTP status for this refusal: 4xx for the client's mistakes, 500 for ours.
    pub fn status(&self) -> u16 {
        match self {
            UploadError::TooLarge { .. } => 413,
            UploadError::UnsupportedType { .. } | UploadError::TypeMismatch { .. } => 415,
            UploadError::BadSignature | UploadError::Expired { .. } => 403,
            UploadError::Reused { .. } => 409,
            UploadError::NotUploaded { .. } => 404,
            UploadError::Signing(_) | UploadError::Storage(_) => 500,
            UploadError::Empty
            | UploadError::Malformed(_)
            | UploadError::SizeMismatch { .. }
            | UploadError::ChecksumMismatch
            | UploadError::BadId(_) => 400,
        }
    }
}

/// What the browser says it will upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub content_type: String,
    /// The exact size in bytes.
    pub size: u64,
    pub sha256: [u8; 32],
}

impl UploadRequest {
    /// `sha256` as 64 hex digits or as base64 (what S3's `x-amz-checksum-sha256` carries).
    pub fn new(content_type: &str, size: u64, sha256: &str) -> Result<UploadRequest, UploadError> {
        Ok(UploadRequest {
            content_type: normalize_type(content_type),
            size,
            sha256: parse_sha256(sha256)?,
        })
    }

    /// The request for bytes at hand (tests, benchmarks).
    pub fn for_bytes(content_type: &str, bytes: &[u8]) -> UploadRequest {
        UploadRequest {
            content_type: normalize_type(content_type),
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }

    fn check(&self, config: &UploadsConfig) -> Result<(), UploadError> {
        if self.size == 0 {
            return Err(UploadError::Empty);
        }
        if self.size > config.max_bytes {
            return Err(UploadError::TooLarge {
                size: self.size,
                max: config.max_bytes,
            });
        }
        if !config.allowed_types.contains(&self.content_type) {
            return Err(UploadError::UnsupportedType {
                content_type: self.content_type.clone(),
            });
        }
        Ok(())
    }
}

/// The refusals every signer makes before signing.
pub(crate) fn check_request(
    request: &UploadRequest,
    config: &UploadsConfig,
) -> Result<(), UploadError> {
    request.check(config)
}

fn normalize_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parse_sha256(text: &str) -> Result<[u8; 32], UploadError> {
    let text = text.trim();
    let bytes = if text.len() == 64 {
        hex::decode(text).ok()
    } else {
        BASE64.decode(text).ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            UploadError::Malformed("sha256 is 64 hex digits or base64 of 32 bytes".into())
        })
}

/// A signed upload for the browser: PUT the file to `url` with these `headers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedUpload {
    pub id: String,
    pub method: &'static str,
    pub url: String,
    /// Headers the PUT must carry (their values are bound by the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
    /// The blob key the upload lands under.
    pub key: String,
}

/// Signs upload URLs.
#[async_trait]
pub trait UploadSigner: Send + Sync + 'static {
    /// A URL the browser can PUT exactly this file to until it expires.
    async fn sign(
        &self,
        request: &UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<SignedUpload, UploadError>;
    /// The limits it signs under.
    fn config(&self) -> &UploadsConfig;
}

/// A fresh upload id: the second it was made, then 16 random hex digits.
pub fn new_upload_id(now: DateTime<Utc>) -> String {
    let mut random = [0u8; 8];
    rand::rng().fill_bytes(&mut random);
    format!("{}-{}", now.timestamp(), hex::encode(random))
}

/// When an upload id was made; `None` if it is not one.
pub fn upload_id_time(id: &str) -> Option<DateTime<Utc>> {
    let (secs, random) = id.split_once('-')?;
    let fine = !secs.is_empty()
        && secs.len() <= 12
        && secs.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 16
        && random
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    fine.then(|| DateTime::from_timestamp(secs.parse().ok()?, 0))
        .flatten()
}

fn check_id(id: &str) -> Result<(), UploadError> {
    upload_id_time(id)
        .map(|_| ())
        .ok_or_else(|| UploadError::BadId(id.chars().take(64).collect()))
}

/// The blob key of a raw upload.
pub fn raw_key(id: &str) -> String {
    format!("{RAW_PREFIX}/{id}")
}

/// What a verified local upload URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub id: String,
    pub request: UploadRequest,
    pub expires_at: DateTime<Utc>,
}

/// A raw upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    pub id: String,
    pub key: String,
    pub size: u64,
    pub content_type: String,
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks URLs served by EcoCityHub itself (`PUT /uploads/{id}`).
pub struct LocalUploadSigner {
    key: SecretKey,
    base_url: String,
    config: UploadsConfig,
}

impl LocalUploadSigner {
    /// `base_url` is the server's public URL (`http://127.0.0.1:8080`).
    pub fn new(key: SecretKey, base_url: &str, config: UploadsConfig) -> LocalUploadSigner {
        LocalUploadSigner {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
            config,
        }
    }

    /// The configured key, else the one kept in `blobs` (made on first use). Pass the
    /// encrypting store so the key is stored encrypted.
    pub async fn open(
        blobs: &dyn BlobStore,
        base_url: &str,
        config: UploadsConfig,
    ) -> Result<LocalUploadSigner, UploadError> {
        let key = match &config.signing_key {
            Some(encoded) => decode_signing_key(encoded)?,
            None => stored_signing_key(blobs).await?,
        };
        Ok(LocalUploadSigner::new(key, base_url, config))
    }

    fn signature(&self, id: &str, expires: i64, request: &UploadRequest) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.as_ref()).expect("HMAC takes any key");
        let text = format!(
            "PUT\n/uploads/{id}\n{expires}\n{}\n{}\n{}",
            request.size,
            request.content_type,
            hex::encode(request.sha256)
        );
        mac.update(text.as_bytes());
        mac
    }

    /// Checks a URL's query for upload `id`: well-formed, signed by this server, not expired.
    /// (Single use is checked by [`LocalUploadSigner::accept`], which claims the id.)
    pub fn verify(
        &self,
        id: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<UploadGrant, UploadError> {
        check_id(id)?;
        let mut fields = std::collections::HashMap::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if fields.insert(name.to_string(), value.to_string()).is_some() {
                return Err(UploadError::Malformed(format!("{name} is given twice")));
            }
        }
        let field = |name: &str| {
            fields
                .get(name)
                .map(String::as_str)
                .ok_or_else(|| UploadError::Malformed(format!("{name} is missing")))
        };
        let number = |name: &str| {
            field(name)?
                .parse::<i64>()
                .map_err(|_| UploadError::Malformed(format!("{name} is not a number")))
        };
        let expires = number("expires")?;
        let size = u64::try_from(number("size")?)
            .map_err(|_| UploadError::Malformed("size is negative".into()))?;
        let request = UploadRequest {
            content_type: field("type")?.to_string(),
            size,
            sha256: parse_sha256(field("sha256")?)?,
        };
        let sig = hex::decode(field("sig")?)
            .map_err(|_| UploadError::Malformed("sig is not hex".into()))?;
        self.signature(id, expires, &request)
            .verify_slice(&sig)
            .map_err(|_| UploadError::BadSignature)?;
        let expires_at = DateTime::from_timestamp(expires, 0)
            .ok_or_else(|| UploadError::Malformed("expires is out of range".into()))?;
        if now >= expires_at {
            return Err(UploadError::Expired {
                expired_at: expires_at,
            });
        }
        Ok(UploadGrant {
            id: id.to_string(),
            request,
            expires_at,
        })
    }

    /// Takes the uploaded bytes for a verified grant: checks the size (at most the limit and
    /// exactly the signed size), the content type sent (if any) and the checksum, claims the id
    /// (a reused URL is refused), and stores the raw upload. A refused body stores nothing.
    pub async fn accept(
        &self,
        blobs: &dyn BlobStore,
        grant: &UploadGrant,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<StoredUpload, UploadError> {
        check_body(&grant.request, self.config.max_bytes, &body)?;
        if let Some(sent) = content_type.map(normalize_type) {
            if sent != grant.request.content_type {
                return Err(UploadError::TypeMismatch {
                    signed: grant.request.content_type.clone(),
                    sent,
                });
            }
        }
        let claim = format!("{CLAIMS_PREFIX}/{}", grant.id);
        if !blobs.put_new(&claim, Bytes::new()).await? {
            metrics::counter!("ecocityhub_uploads_refused_total", "reason" => "reused")
                .increment(1);
            return Err(UploadError::Reused {
                id: grant.id.clone(),
            });
        }
        let key = raw_key(&grant.id);
        blobs.put(&key, body).await?;
        metrics::counter!("ecocityhub_uploads_accepted_total").increment(1);
        Ok(StoredUpload {
            id: grant.id.clone(),
            key,
            size: grant.request.size,
            content_type: grant.request.content_type.clone(),
        })
    }
}

fn check_body(request: &UploadRequest, max: u64, body: &[u8]) -> Result<(), UploadError> {
    let received = body.len() as u64;
    if received > max {
        return Err(UploadError::TooLarge {
            size: received,
            max,
        });
    }
    if received != request.size {
        return Err(UploadError::SizeMismatch {
            declared: request.size,
            received,
        });
    }
    let digest: [u8; 32] = Sha256::digest(body).into();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &digest[..],
        &request.sha256[..],
    )) {
        return Err(UploadError::ChecksumMismatch);
    }
    Ok(())
}

#[async_trait]
impl UploadSigner for LocalUploadSigner {
    async fn sign(
        &self,
        request: &UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<SignedUpload, UploadError> {
        check_request(request, &self.config)?;
        let id = new_upload_id(now);
        let expires_at = now + Duration::from_secs(self.config.url_lifetime_secs);
        let expires = expires_at.timestamp();
        let sig = hex::encode(
            self.signature(&id, expires, request)
                .finalize()
                .into_bytes(),
        );
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("expires", &expires.to_string())
            .append_pair("size", &request.size.to_string())
            .append_pair("type", &request.content_type)
            .append_pair("sha256", &hex::encode(request.sha256))
            .append_pair("sig", &sig)
            .finish();
        Ok(SignedUpload {
            url: format!("{}/uploads/{id}?{query}", self.base_url),
            key: raw_key(&id),
            id,
            method: "PUT",
            headers: vec![("content-type".into(), request.content_type.clone())],
            expires_at: DateTime::from_timestamp(expires, 0).unwrap_or(expires_at),
        })
    }

    fn config(&self) -> &UploadsConfig {
        &self.config
    }
}

fn decode_signing_key(encoded: &str) -> Result<SecretKey, UploadError> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| UploadError::Signing("uploads.signing_key is not base64".into()))?;
    let array: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| UploadError::Signing("uploads.signing_key must be 32 bytes".into()))?;
    Ok(zeroize::Zeroizing::new(array))
}

async fn stored_signing_key(blobs: &dyn BlobStore) -> Result<SecretKey, UploadError> {
    let fresh = random_key();
    blobs
        .put_new(SIGNING_KEY_BLOB, Bytes::copy_from_slice(fresh.as_ref()))
        .await?;
    let stored = blobs
        .get(SIGNING_KEY_BLOB)
        .await?
        .ok_or_else(|| UploadError::Signing(format!("{SIGNING_KEY_BLOB} vanished")))?;
    let array: [u8; KEY_LEN] = stored
        .as_ref()
        .try_into()
        .map_err(|_| UploadError::Signing(format!("{SIGNING_KEY_BLOB} is not 32 bytes")))?;
    Ok(zeroize::Zeroizing::new(array))
}

/// Reads a raw upload to attach it, enforcing the limits again (S3 and its emulators do not
/// enforce sizes on presigned PUTs): present, at most `max_bytes`, exactly the declared size
/// and checksum.
pub async fn fetch_upload(
    blobs: &dyn BlobStore,
    id: &str,
    declared: &UploadRequest,
    max_bytes: u64,
) -> Result<Bytes, UploadError> {
    check_id(id)?;
    let body = blobs
        .get(&raw_key(id))
        .await?
        .ok_or_else(|| UploadError::NotUploaded { id: id.into() })?;
    check_body(declared, max_bytes, &body)?;
    Ok(body)
}

/// Removes a raw upload once it is processed (its claim stays until it expires, so the URL
/// cannot be used again).
pub async fn discard_upload(blobs: &dyn BlobStore, id: &str) -> Result<(), UploadError> {
    check_id(id)?;
    Ok(blobs.delete(&raw_key(id)).await?)
}

/// What an expiry run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiredUploads {
    pub uploads: usize,
    pub claims: usize,
    /// Tickets of who asked for an upload ([`crate::photo_uploads`]).
    pub tickets: usize,
}

/// Removes raw uploads, claims and tickets signed longer than the unattached TTL ago (never less than
/// the URL lifetime, so a claim outlives its URL). The server calls it periodically.
pub async fn expire_uploads(
    blobs: &dyn BlobStore,
    config: &UploadsConfig,
    now: DateTime<Utc>,
) -> Result<ExpiredUploads, UploadError> {
    let ttl = config
        .unattached_ttl_secs
        .max(config.url_lifetime_secs + 60);
    let cutoff = now - Duration::from_secs(ttl);
    let mut expired = ExpiredUploads::default();
    for (prefix, count) in [
        (RAW_PREFIX, &mut expired.uploads),
        (CLAIMS_PREFIX, &mut expired.claims),
        (crate::photo_uploads::TICKETS_PREFIX, &mut expired.tickets),
    ] {
        for key in blobs.list(prefix).await? {
            let made = key.rsplit('/').next().and_then(upload_id_time);
            if made.is_some_and(|t| t < cutoff) {
                blobs.delete(&key).await?;
                *count += 1;
            }
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectBlobs;

    fn new_signer() -> LocalUploadSigner {
        LocalUploadSigner::new(
            random_key(),
            "http://127.0.0.1:8080/",
            UploadsConfig::default(),
        )
    }

    fn split(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://127.0.0.1:8080/uploads/").unwrap();
        let (id, query) = rest.split_once('?').unwrap();
        (id.to_string(), query.to_string())
    }

    const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 pretend jpeg";

    #[tokio::test]
    async fn a_signed_url_takes_its_file_once() {
        let blobs = ObjectBlobs::in_memory();
        let signer = new_signer();
        let now = Utc::now();
        let signed = signer
            .sign(&UploadRequest::for_bytes("image/jpeg", PHOTO), now)
            .await
            .unwrap();
        assert_eq!(signed.method, "PUT");
        let (id, query) = split(&signed.url);
        assert_eq!(id, signed.id);
        let grant = signer.verify(&id, &query, now).unwrap();
        let stored = signer
            .accept(
                &blobs,
                &grant,
                Some("image/jpeg"),
                Bytes::from_static(PHOTO),
            )
            .await
            .unwrap();
        assert_eq!(blobs.get(&stored.key).await.unwrap().unwrap(), PHOTO);
        let again = signer
            .accept(&blobs, &grant, None, Bytes::from_static(PHOTO))
            .await
            .unwrap_err();
        assert!(matches!(again, UploadError::Reused { .. }), "{again}");
        assert_eq!(again.status(), 409);
        let request = UploadRequest::for_bytes("image/jpeg", PHOTO);
        assert_eq!(
            fetch_upload(&blobs, &id, &request, MAX_UPLOAD_BYTES)
                .await
                .unwrap(),
            PHOTO
        );
        discard_upload(&blobs, &id).await.unwrap();
        assert!(matches!(
            fetch_upload(&blobs, &id, &request, MAX_UPLOAD_BYTES).await,
            Err(UploadError::NotUploaded { .. })
        ));
    }

    #[tokio::test]
    async fn altered_expired_and_mismatched_uploads_are_refused_and_store_nothing() {
        let blobs = ObjectBlobs::in_memory();
        let signer = new_signer();
        let now = Utc::now();
        let signed = signer
            .sign(&UploadRequest::for_bytes("image/png", PHOTO), now)
            .await
            .unwrap();
        let (id, query) = split(&signed.url);
        for (what, query) in [
            (
                "a bigger size",
                query.replace(&format!("size={}", PHOTO.len()), "size=9999"),
            ),
            ("another type", query.replace("image%2Fpng", "image%2Fjpeg")),
            ("a flipped signature bit", {
                let at = query.find("sig=").unwrap() + 4;
                let mut q = query.clone().into_bytes();
                q[at] = if q[at] == b'0' { b'1' } else { b'0' };
                String::from_utf8(q).unwrap()
            }),
        ] {
            let err = signer.verify(&id, &query, now).unwrap_err();
            assert!(matches!(err, UploadError::BadSignature), "{what}: {err}");
            assert_eq!(err.status(), 403);
        }
        let other_id = new_upload_id(now);
        assert!(matches!(
            signer.verify(&other_id, &query, now),
            Err(UploadError::BadSignature)
        ));
        assert!(matches!(
            signer.verify(&id, "expires=1", now),
            Err(UploadError::Malformed(_))
        ));
        assert!(matches!(
            signer.verify("../x", &query, now),
            Err(UploadError::BadId(_))
        ));
        let late = now + Duration::from_secs(16 * 60);
        assert!(matches!(
            signer.verify(&id, &query, late),
            Err(UploadError::Expired { .. })
        ));
        let another = new_signer()
            .verify(&id, &query, now)
            .expect_err("another server's key");
        assert!(matches!(another, UploadError::BadSignature));

        let grant = signer.verify(&id, &query, now).unwrap();
        let mut wrong = PHOTO.to_vec();
        wrong[3] ^= 1;
        let cases = [
            (Bytes::from(wrong), None, "checksum"),
            (Bytes::from_static(&PHOTO[1..]), None, "size"),
            (Bytes::from_static(PHOTO), Some("image/jpeg"), "type"),
        ];
        for (body, content_type, what) in cases {
            let err = signer
                .accept(&blobs, &grant, content_type, body)
                .await
                .unwrap_err();
            assert!(err.status() >= 400 && err.status() < 500, "{what}: {err}");
        }
        assert!(
            blobs.list("uploads").await.unwrap().is_empty(),
            "nothing stored"
        );
        // The refusals did not burn the URL.
        signer
            .accept(&blobs, &grant, Some("image/png"), Bytes::from_static(PHOTO))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn signing_refuses_what_could_never_be_accepted() {
        let signer = new_signer();
        let now = Utc::now();
        let big = UploadRequest {
            content_type: "image/jpeg".into(),
            size: MAX_UPLOAD_BYTES + 1,
            sha256: [0; 32],
        };
        let err = signer.sign(&big, now).await.unwrap_err();
        assert_eq!(err.status(), 413);
        let pdf = UploadRequest::for_bytes("application/pdf", b"%PDF-1.7");
        assert_eq!(signer.sign(&pdf, now).await.unwrap_err().status(), 415);
        let empty = UploadRequest::for_bytes("image/jpeg", b"");
        assert_eq!(signer.sign(&empty, now).await.unwrap_err().status(), 400);
        let hex = hex::encode(Sha256::digest(PHOTO));
        let b64 = BASE64.encode(Sha256::digest(PHOTO));
        assert_eq!(
            UploadRequest::new("Image/JPEG; q=1", 5, &hex).unwrap(),
            UploadRequest::new("image/jpeg", 5, &b64).unwrap()
        );
    }

    #[tokio::test]
    async fn unattached_uploads_and_old_claims_expire() {
        let blobs = ObjectBlobs::in_memory();
        let signer = new_signer();
        let then = Utc::now() - Duration::from_secs(2 * 24 * 3600);
        let now = Utc::now();
        for at in [then, now] {
            let signed = signer
                .sign(&UploadRequest::for_bytes("image/jpeg", PHOTO), at)
                .await
                .unwrap();
            let (id, query) = split(&signed.url);
            let grant = signer.verify(&id, &query, at).unwrap();
            signer
                .accept(&blobs, &grant, None, Bytes::from_static(PHOTO))
                .await
                .unwrap();
        }
        let expired = expire_uploads(&blobs, &UploadsConfig::default(), now)
            .await
            .unwrap();
        assert_eq!(
            expired,
            ExpiredUploads {
                uploads: 1,
                claims: 1,
                tickets: 0
            }
        );
        assert_eq!(blobs.list(RAW_PREFIX).await.unwrap().len(), 1);
        assert_eq!(blobs.list(CLAIMS_PREFIX).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_kept_signing_key_is_made_once() {
        let blobs = ObjectBlobs::in_memory();
        let config = UploadsConfig::default();
        let a = LocalUploadSigner::open(&blobs, "http://h", config.clone())
            .await
            .unwrap();
        let b = LocalUploadSigner::open(&blobs, "http://h", config)
            .await
            .unwrap();
        assert_eq!(*a.key, *b.key);
    }
}
