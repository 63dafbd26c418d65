//! S3 (feature `aws`): [`object_blobs`] is an [`ObjectBlobs`] over a bucket, optionally with
//! SSE-KMS, and [`S3UploadSigner`] presigns browser PUTs binding the content type and
//! `x-amz-checksum-sha256`.
//!
//! object_store's own `aws` feature brings reqwest 0.13 and aws-lc-rs; this module uses its
//! transport-less `aws-base` with ring for signing and [`ReqwestConnector`] over the workspace's
//! reqwest 0.12 (rustls + ring), so no second HTTP or TLS stack is built.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::ClientOptions;

use crate::config::S3Config;
use crate::uploads::{
    new_upload_id, raw_key, SignedUpload, UploadError, UploadRequest, UploadSigner, UploadsConfig,
};
use crate::{object_path, BlobError, ObjectBlobs, Result};

/// object_store's HTTP transport over reqwest 0.12.
#[derive(Debug, Clone)]
pub struct ReqwestConnector {
    client: reqwest::Client,
}

impl ReqwestConnector {
    pub fn new() -> ReqwestConnector {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client builds with rustls");
        ReqwestConnector { client }
    }
}

impl Default for ReqwestConnector {
    fn default() -> Self {
        ReqwestConnector::new()
    }
}

impl HttpConnector for ReqwestConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(ReqwestService(self.client.clone())))
    }
}

#[derive(Debug)]
struct ReqwestService(reqwest::Client);

fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Request
    };
    HttpError::new(kind, e.without_url())
}

#[async_trait]
impl HttpService for ReqwestService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        *outgoing.body_mut() = Some(body.into());
        let response: http::Response<reqwest::Body> =
            self.0.execute(outgoing).await.map_err(http_error)?.into();
        let (parts, body) = response.into_parts();
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(body.map_err(http_error)),
        ))
    }
}

/// The bucket as object_store's `AmazonS3`: credentials, region and `AWS_ENDPOINT_URL` from the
/// environment, then what `config` sets.
pub fn amazon_s3(config: &S3Config) -> Result<AmazonS3> {
    if config.bucket.is_empty() {
        return Err(BlobError::Config("backend = \"s3\" needs s3.bucket".into()));
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_http_connector(ReqwestConnector::new());
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    let endpoint = config
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    if let Some(key) = &config.sse_kms_key_id {
        builder = builder.with_sse_kms_encryption(key);
    }
    Ok(builder.build()?)
}

/// An [`ObjectBlobs`] over the bucket.
pub fn object_blobs(config: &S3Config) -> Result<ObjectBlobs> {
    let s3 = amazon_s3(config)?;
    let sse = match &config.sse_kms_key_id {
        Some(key) => format!(", SSE-KMS {key}"),
        None => String::new(),
    };
    Ok(ObjectBlobs::new(
        Arc::new(s3),
        format!("S3 bucket {}{sse}", config.bucket),
    ))
}

/// Presigned S3 PUTs for browser uploads, landing under `uploads/raw/{id}`. S3 checks the
/// signed content type and the `x-amz-checksum-sha256`; the size is enforced when the upload is
/// attached ([`crate::uploads::fetch_upload`]).
#[derive(Debug)]
pub struct S3UploadSigner {
    s3: Arc<AmazonS3>,
    config: UploadsConfig,
}

impl S3UploadSigner {
    pub fn new(s3: Arc<AmazonS3>, config: UploadsConfig) -> S3UploadSigner {
        S3UploadSigner { s3, config }
    }

    pub fn from_config(s3: &S3Config, config: UploadsConfig) -> Result<S3UploadSigner> {
        Ok(S3UploadSigner::new(Arc::new(amazon_s3(s3)?), config))
    }
}

#[async_trait]
impl UploadSigner for S3UploadSigner {
    async fn sign(
        &self,
        request: &UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<SignedUpload, UploadError> {
        request_check(request, &self.config)?;
        let id = new_upload_id(now);
        let key = raw_key(&id);
        let checksum = BASE64.encode(request.sha256);
        let header =
            |v: &str| HeaderValue::from_str(v).map_err(|e| UploadError::Malformed(e.to_string()));
        let options = SignedUrlOptions::default()
            .with_signed_header(
                HeaderName::from_static("content-type"),
                header(&request.content_type)?,
            )
            .with_signed_header(
                HeaderName::from_static("x-amz-checksum-sha256"),
                header(&checksum)?,
            );
        let lifetime = Duration::from_secs(self.config.url_lifetime_secs);
        let url = self
            .s3
            .signed_url_opts(Method::PUT, &object_path(&key)?, lifetime, &options)
            .await
            .map_err(|e| UploadError::Signing(e.to_string()))?;
        Ok(SignedUpload {
            id,
            method: "PUT",
            url: url.to_string(),
            headers: vec![
                ("content-type".into(), request.content_type.clone()),
                ("x-amz-checksum-sha256".into(), checksum),
            ],
            expires_at: now + lifetime,
            key,
        })
    }

    fn config(&self) -> &UploadsConfig {
        &self.config
    }
}

fn request_check(request: &UploadRequest, config: &UploadsConfig) -> Result<(), UploadError> {
    // The same refusals as the local signer: nothing is signed that could never be accepted.
    crate::uploads::check_request(request, config)
}
