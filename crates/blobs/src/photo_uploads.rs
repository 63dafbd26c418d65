//! The photo upload flow of reports, end to end: [`PhotoUploads::sign`] signs a URL for one
//! user and one declared file (and keeps a ticket of who asked for what under
//! `uploads/tickets/{id}`), [`PhotoUploads::accept_local`] takes a PUT to a local URL, and
//! [`PhotoUploads::attach`] turns an upload into a stored photo: the ticket's owner only, the
//! limits enforced again, the photo processed ([`crate::photos`]) and the raw upload removed.
//! Whether the URL points at EcoCityHub or at S3 is the [`UploadSigner`]'s business.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::photos::{store_photo, PhotoError, PhotoLimits, StoredPhoto};
use crate::uploads::{
    discard_upload, fetch_upload, LocalUploadSigner, SignedUpload, StoredUpload, UploadError,
    UploadRequest, UploadSigner,
};
use crate::BlobStore;

/// Where the tickets of signed uploads are kept.
pub const TICKETS_PREFIX: &str = "uploads/tickets";

/// Who asked for an upload and what they declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ticket {
    owner: String,
    content_type: String,
    size: u64,
    /// Hex SHA-256.
    sha256: String,
}

/// Why an upload could not become a photo.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Photo(#[from] PhotoError),
    #[error("upload {0} was not signed for you (or it expired)")]
    NotYours(String),
}

impl AttachError {
    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            AttachError::Upload(e) => e.status(),
            AttachError::Photo(e) => e.status(),
            AttachError::NotYours(_) => 404,
        }
    }
}

/// The signer, the blob store and the photo limits, together.
#[derive(Clone)]
pub struct PhotoUploads {
    blobs: Arc<dyn BlobStore>,
    signer: Arc<dyn UploadSigner>,
    /// Set when URLs point at EcoCityHub itself (`PUT /uploads/{id}`).
    local: Option<Arc<LocalUploadSigner>>,
    limits: PhotoLimits,
}

impl PhotoUploads {
    /// Uploads to URLs served by EcoCityHub.
    pub fn local(
        blobs: Arc<dyn BlobStore>,
        signer: LocalUploadSigner,
        limits: PhotoLimits,
    ) -> PhotoUploads {
        let signer = Arc::new(signer);
        PhotoUploads {
            blobs,
            signer: signer.clone(),
            local: Some(signer),
            limits,
        }
    }

    /// Uploads to another signer's URLs (S3).
    pub fn remote(
        blobs: Arc<dyn BlobStore>,
        signer: Arc<dyn UploadSigner>,
        limits: PhotoLimits,
    ) -> PhotoUploads {
        PhotoUploads {
            blobs,
            signer,
            local: None,
            limits,
        }
    }

    /// Signs a URL for `owner` to upload exactly the declared file.
    pub async fn sign(
        &self,
        owner: &str,
        request: &UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<SignedUpload, UploadError> {
        let signed = self.signer.sign(request, now).await?;
        let ticket = Ticket {
            owner: owner.into(),
            content_type: request.content_type.clone(),
            size: request.size,
            sha256: hex::encode(request.sha256),
        };
        let json = serde_json::to_vec(&ticket).expect("a ticket serializes");
        self.blobs
            .put(&ticket_key(&signed.id), Bytes::from(json))
            .await?;
        Ok(signed)
    }

    /// Takes a PUT to a local upload URL (`query` is the URL's query string). `None` when URLs
    /// are not local (S3 takes the PUTs).
    pub async fn accept_local(
        &self,
        id: &str,
        query: &str,
        content_type: Option<&str>,
        body: Bytes,
        now: DateTime<Utc>,
    ) -> Option<Result<StoredUpload, UploadError>> {
        let local = self.local.as_ref()?;
        Some(match local.verify(id, query, now) {
            Ok(grant) => {
                local
                    .accept(self.blobs.as_ref(), &grant, content_type, body)
                    .await
            }
            Err(e) => Err(e),
        })
    }

    /// Makes `owner`'s upload `id` a stored photo (content-addressed, EXIF gone, thumbnail
    /// made) and removes the raw upload and its ticket. A refused upload stores nothing.
    pub async fn attach(&self, owner: &str, id: &str) -> Result<StoredPhoto, AttachError> {
        let ticket = self.ticket(id).await?;
        if ticket.as_ref().is_none_or(|t| t.owner != owner) {
            return Err(AttachError::NotYours(id.chars().take(40).collect()));
        }
        let ticket = ticket.expect("checked above");
        let declared = UploadRequest::new(&ticket.content_type, ticket.size, &ticket.sha256)?;
        let body = fetch_upload(
            self.blobs.as_ref(),
            id,
            &declared,
            self.signer.config().max_bytes,
        )
        .await?;
        let photo = store_photo(self.blobs.as_ref(), body, &self.limits).await?;
        discard_upload(self.blobs.as_ref(), id).await?;
        self.blobs
            .delete(&ticket_key(id))
            .await
            .map_err(UploadError::from)?;
        Ok(photo)
    }

    async fn ticket(&self, id: &str) -> Result<Option<Ticket>, UploadError> {
        crate::uploads::upload_id_time(id)
            .ok_or_else(|| UploadError::BadId(id.chars().take(40).collect()))?;
        let Some(bytes) = self.blobs.get(&ticket_key(id)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The limits URLs are signed under.
    pub fn config(&self) -> &crate::uploads::UploadsConfig {
        self.signer.config()
    }

    /// The blob store photos are kept in.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }
}

fn ticket_key(id: &str) -> String {
    format!("{TICKETS_PREFIX}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::random_key;
    use crate::photos::testing::jpeg_with_exif_gps;
    use crate::uploads::UploadsConfig;
    use crate::ObjectBlobs;

    fn uploads() -> PhotoUploads {
        let signer = LocalUploadSigner::new(
            random_key(),
            "http://127.0.0.1:8080",
            UploadsConfig::default(),
        );
        PhotoUploads::local(
            Arc::new(ObjectBlobs::in_memory()),
            signer,
            PhotoLimits::default(),
        )
    }

    fn query_of(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://127.0.0.1:8080/uploads/").unwrap();
        let (id, query) = rest.split_once('?').unwrap();
        (id.into(), query.into())
    }

    #[tokio::test]
    async fn an_upload_becomes_a_photo_for_its_owner_only_and_once() {
        let uploads = uploads();
        let jpeg = jpeg_with_exif_gps(64, 48, 1);
        let now = Utc::now();
        let signed = uploads
            .sign("alice", &UploadRequest::for_bytes("image/jpeg", &jpeg), now)
            .await
            .unwrap();
        let (id, query) = query_of(&signed.url);
        uploads
            .accept_local(&id, &query, Some("image/jpeg"), Bytes::from(jpeg), now)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            uploads.attach("bob", &id).await,
            Err(AttachError::NotYours(_))
        ));
        let photo = uploads.attach("alice", &id).await.unwrap();
        assert!(uploads.blobs().get(&photo.key).await.unwrap().is_some());
        assert!(uploads
            .blobs()
            .get(&photo.thumbnail_key)
            .await
            .unwrap()
            .is_some());
        let again = uploads.attach("alice", &id).await.unwrap_err();
        assert_eq!(again.status(), 404, "{again}");
    }

    #[tokio::test]
    async fn a_fake_photo_is_refused_and_stores_nothing() {
        let uploads = uploads();
        let pdf = b"%PDF-1.7 pretending to be a photo".to_vec();
        let now = Utc::now();
        let signed = uploads
            .sign("alice", &UploadRequest::for_bytes("image/jpeg", &pdf), now)
            .await
            .unwrap();
        let (id, query) = query_of(&signed.url);
        uploads
            .accept_local(&id, &query, None, Bytes::from(pdf), now)
            .await
            .unwrap()
            .unwrap();
        let refused = uploads.attach("alice", &id).await.unwrap_err();
        assert_eq!(refused.status(), 415, "{refused}");
        assert!(uploads.blobs().list("photos").await.unwrap().is_empty());
    }
}
