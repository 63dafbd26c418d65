//! The AWS implementations against moto: KMS envelope keys and rotation, S3 blobs (with SSE-KMS,
//! versions and the whole encrypted stack), presigned S3 uploads. One test, one moto server, so
//! the `AWS_*` variables the SDK and object_store read are set once for the process.
#![cfg(feature = "aws")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use ecocityhub_blobs::config::{Backend, KeySource, S3Config};
use ecocityhub_blobs::kms::{sdk_config, KmsKeyProvider};
use ecocityhub_blobs::s3::{object_blobs, S3UploadSigner};
use ecocityhub_blobs::uploads::{fetch_upload, UploadError, UploadRequest, UploadSigner};
use ecocityhub_blobs::{
    open, BlobError, BlobStore, BlobVersions, BlobsConfig, EncryptedBlobs, KeyProvider,
    ObjectBlobs, VersionedBlobs, VersioningConfig,
};
use ecocityhub_testkit::{require_test_python, HelperServer};

fn start_moto() -> Option<HelperServer> {
    let python = require_test_python("moto (S3 and KMS)")?;
    let mut command = Command::new(python);
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/moto_server.py"));
    Some(
        HelperServer::start(command, "listening on", Duration::from_secs(60)).expect("moto starts"),
    )
}

async fn create_kms_key(client: &aws_sdk_kms::Client) -> String {
    let created = client.create_key().send().await.expect("CreateKey");
    created.key_metadata().unwrap().key_id().to_string()
}

/// moto routes a request to a service by its credential scope (and checks no signature).
const S3_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

async fn create_bucket(base: &str, bucket: &str) {
    let response = reqwest::Client::new()
        .put(format!("{base}/{bucket}"))
        .header("authorization", S3_AUTHORIZATION)
        .send()
        .await
        .expect("moto answers");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The raw object as stored in the bucket (moto does not check signatures on plain GETs).
async fn raw_object(base: &str, bucket: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/{bucket}/{key}"))
        .header("authorization", S3_AUTHORIZATION)
        .send()
        .await
        .expect("moto answers")
}

#[tokio::test]
async fn the_aws_implementations_work_against_moto() {
    let Some(moto) = start_moto() else { return };
    let base = moto.base_url();
    std::env::set_var("AWS_ENDPOINT_URL", &base);
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_PROFILE");

    let kms = aws_sdk_kms::Client::new(&sdk_config().await);
    let first_key = create_kms_key(&kms).await;
    let second_key = create_kms_key(&kms).await;

    kms_wraps_unwraps_and_rotates(&first_key, &second_key).await;
    create_bucket(&base, "blobs").await;
    s3_blobs_round_trip_with_sse_kms(&base, &first_key).await;
    the_whole_stack_runs_on_s3_and_kms(&base, &first_key).await;
    presigned_s3_uploads_are_checked_again_on_attach(&base).await;
}

async fn kms_wraps_unwraps_and_rotates(first_key: &str, second_key: &str) {
    let first = Arc::new(KmsKeyProvider::from_env(first_key).await.unwrap());
    assert!(
        first.current_key_id().starts_with("arn:aws:kms:"),
        "{}",
        first.current_key_id()
    );
    let data = first.generate_data_key().await.unwrap();
    assert_eq!(*first.unwrap(&data.wrapped).await.unwrap(), *data.plaintext);

    let store = Arc::new(ObjectBlobs::in_memory());
    let blobs = EncryptedBlobs::new(store.clone(), first.clone());
    blobs
        .put(
            "models/m/model.json.gz",
            Bytes::from_static(b"artifact bytes"),
        )
        .await
        .unwrap();
    let sealed = store.get("models/m/model.json.gz").await.unwrap().unwrap();
    assert!(ecocityhub_blobs::is_sealed(&sealed));
    assert!(!sealed.windows(8).any(|w| w == b"artifact"));

    // A fresh provider (empty cache) decrypts through KMS.
    let cold = Arc::new(KmsKeyProvider::from_env(first_key).await.unwrap());
    let reader = EncryptedBlobs::new(store.clone(), cold);
    assert_eq!(
        reader.get("models/m/model.json.gz").await.unwrap().unwrap(),
        "artifact bytes"
    );

    // A changed wrapped key is refused by KMS and reported as tampering of that blob.
    let mut damaged = sealed.to_vec();
    let wrapped_at = 8 + 1 + 1 + usize::from(damaged[9]) + 2 + 10;
    damaged[wrapped_at] ^= 0x55;
    store
        .put("models/m/damaged", Bytes::from(damaged))
        .await
        .unwrap();
    let fresh = Arc::new(KmsKeyProvider::from_env(first_key).await.unwrap());
    let err = EncryptedBlobs::new(store.clone(), fresh)
        .get("models/m/damaged")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BlobError::Tampered { key, .. } | BlobError::Key { key, .. } if key == "models/m/damaged"),
        "{err:?}"
    );
    store.delete("models/m/damaged").await.unwrap();

    // Rotation to the second key: ReEncrypt, data untouched, still reads.
    let second = Arc::new(KmsKeyProvider::from_env(second_key).await.unwrap());
    let rotated = EncryptedBlobs::new(store.clone(), second.clone());
    let report = rotated.rewrap_all(true).await.unwrap();
    assert_eq!(
        (report.rewrapped, report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    let after = store.get("models/m/model.json.gz").await.unwrap().unwrap();
    assert_eq!(
        &after[after.len() - 30..],
        &sealed[sealed.len() - 30..],
        "data not re-encrypted"
    );
    assert_eq!(
        rotated
            .get("models/m/model.json.gz")
            .await
            .unwrap()
            .unwrap(),
        "artifact bytes"
    );
    let sealer = rotated.sealer();
    let secret = sealer.seal(b"signing-key:1", b"private").await.unwrap();
    assert_eq!(
        sealer
            .open(b"signing-key:1", &secret)
            .await
            .unwrap()
            .as_slice(),
        b"private"
    );
}

async fn s3_blobs_round_trip_with_sse_kms(base: &str, kms_key: &str) {
    let s3 = object_blobs(&S3Config {
        bucket: "blobs".into(),
        sse_kms_key_id: Some(kms_key.into()),
        ..S3Config::default()
    })
    .unwrap();
    assert!(s3.describe().contains("SSE-KMS"));
    s3.put("a/one", Bytes::from_static(b"1")).await.unwrap();
    s3.put("a/two", Bytes::from_static(b"2")).await.unwrap();
    s3.put("b/three", Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(s3.get("a/two").await.unwrap().unwrap(), "2");
    assert_eq!(s3.get("a/none").await.unwrap(), None);
    assert_eq!(s3.list("a").await.unwrap(), vec!["a/one", "a/two"]);
    s3.delete("a/one").await.unwrap();
    s3.delete("a/one").await.unwrap();
    assert_eq!(s3.list("a/").await.unwrap(), vec!["a/two"]);
    assert!(s3.copy("a/two", "c/copy").await.unwrap());
    assert!(!s3.copy("a/none", "c/none").await.unwrap());
    assert_eq!(s3.get("c/copy").await.unwrap().unwrap(), "2");
    assert!(s3
        .put_new("once", Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!s3
        .put_new("once", Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_eq!(s3.get("once").await.unwrap().unwrap(), "first");

    let raw = raw_object(base, "blobs", "a/two").await;
    assert_eq!(
        raw.headers()
            .get("x-amz-server-side-encryption")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("aws:kms".to_string())
    );

    let versioned = VersionedBlobs::new(s3, VersioningConfig::default());
    versioned
        .put("v/x", Bytes::from_static(b"old"))
        .await
        .unwrap();
    versioned
        .put("v/x", Bytes::from_static(b"new"))
        .await
        .unwrap();
    versioned.delete("v/x").await.unwrap();
    let kept = versioned.versions("v/x").await.unwrap();
    assert_eq!(kept.len(), 2);
    versioned.restore("v/x", &kept[1].id).await.unwrap();
    assert_eq!(versioned.get("v/x").await.unwrap().unwrap(), "old");
    assert!(!versioned
        .list("")
        .await
        .unwrap()
        .iter()
        .any(|k| k.starts_with(".versions")));
    let expired = versioned
        .expire_versions(Utc::now() + chrono::Duration::days(31))
        .await
        .unwrap();
    assert_eq!(
        expired.removed, 2,
        "nothing was current when the restore ran"
    );
}

async fn the_whole_stack_runs_on_s3_and_kms(base: &str, kms_key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BlobsConfig {
        backend: Backend::S3,
        ..BlobsConfig::default()
    };
    config.s3.bucket = "blobs".into();
    config.keys.source = KeySource::Kms;
    config.keys.kms_key_id = Some(kms_key.into());
    let opened = open(&config, dir.path()).await.unwrap();
    let store = opened.store();
    let photo = Bytes::from(ecocityhub_blobs::photos::testing::jpeg_with_exif_gps(
        64, 48, 6,
    ));
    let stored = ecocityhub_blobs::photos::store_photo(&*store, photo, &config.photos)
        .await
        .unwrap();
    let raw = raw_object(base, "blobs", &stored.key)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(
        ecocityhub_blobs::is_sealed(&raw),
        "envelope-encrypted in the bucket"
    );
    let back = store.get(&stored.key).await.unwrap().unwrap();
    assert_eq!(image_size(&back), (48, 64));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no key file with KMS"
    );
}

fn image_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).unwrap();
    (image.width(), image.height())
}

async fn presigned_s3_uploads_are_checked_again_on_attach(_base: &str) {
    let s3_config = S3Config {
        bucket: "blobs".into(),
        ..S3Config::default()
    };
    let signer = S3UploadSigner::from_config(&s3_config, Default::default()).unwrap();
    let blobs = object_blobs(&s3_config).unwrap();
    let body = ecocityhub_blobs::photos::testing::jpeg(32, 32);
    let request = UploadRequest::for_bytes("image/jpeg", &body);
    let signed = signer.sign(&request, Utc::now()).await.unwrap();
    assert!(signed.url.contains("X-Amz-Signature"), "{}", signed.url);
    assert!(
        signed.url.contains("x-amz-checksum-sha256") || signed.url.contains("X-Amz-SignedHeaders")
    );
    let put = |bytes: Vec<u8>| {
        let mut builder = reqwest::Client::new().put(&signed.url).body(bytes);
        for (name, value) in &signed.headers {
            builder = builder.header(name, value);
        }
        builder.send()
    };
    let response = put(body.clone()).await.unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let fetched = fetch_upload(&blobs, &signed.id, &request, request.size)
        .await
        .unwrap();
    assert_eq!(fetched, body);

    // Whatever the emulator lets through, attaching checks the bytes against what was signed.
    let signed_again = signer.sign(&request, Utc::now()).await.unwrap();
    let mut other = body.clone();
    other[100] ^= 1;
    let _ = reqwest::Client::new()
        .put(&signed_again.url)
        .header("content-type", "image/jpeg")
        .header("x-amz-checksum-sha256", &signed_again.headers[1].1)
        .body(other)
        .send()
        .await;
    let err = fetch_upload(&blobs, &signed_again.id, &request, request.size)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::ChecksumMismatch | UploadError::NotUploaded { .. }
        ),
        "{err}"
    );
    let too_big = UploadRequest {
        size: 20_000_000,
        ..request.clone()
    };
    assert_eq!(
        signer
            .sign(&too_big, Utc::now())
            .await
            .unwrap_err()
            .status(),
        413
    );
}
