//! Benchmarks of the blob layer, for `ecocityhub bench` (which prints them): photo processing,
//! the cost of encryption on reads, and upload URL signing. They return numbers, print nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use image::{Rgb, RgbImage};

use crate::keys::{random_key, LocalKeyProvider};
use crate::photos::{process_photo, PhotoLimits};
use crate::uploads::{LocalUploadSigner, UploadRequest, UploadSigner, UploadsConfig};
use crate::{BlobStore, EncryptedBlobs, ObjectBlobs, Result};

/// One photo processed end to end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhotoBench {
    pub width: u32,
    pub height: u32,
    pub input_bytes: usize,
    pub output_bytes: usize,
    /// Median of the runs: decode, orient, scale, re-encode, thumbnail (one core).
    pub median: Duration,
    pub fastest: Duration,
    pub runs: usize,
}

/// A photo-like 4000 × 3000 JPEG (smooth gradients and grain, quality 90, with EXIF and an
/// orientation tag), as a phone makes it.
pub fn twelve_megapixel_jpeg() -> Vec<u8> {
    let (width, height) = (4000u32, 3000u32);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let image = RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let grain = (state % 16) as i32 - 8;
        let channel = |base: i32| (base + grain).clamp(0, 255) as u8;
        Rgb([
            channel((x * 255 / width) as i32),
            channel((y * 255 / height) as i32),
            channel((((x + y) / 31) % 256) as i32),
        ])
    });
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&image)
        .expect("the benchmark JPEG encodes");
    let tagged = crate::photos::testing::jpeg_with_exif_gps(8, 8, 6);
    // Reuse the EXIF segment of the small tagged JPEG: it sits between SOI and its first JFIF.
    let exif_len = usize::from(u16::from_be_bytes([tagged[4], tagged[5]])) + 2;
    [&plain[..2], &tagged[2..2 + exif_len], &plain[2..]].concat()
}

/// Processes one 12-megapixel JPEG `runs` times (target: at most 1 s on one core).
pub fn photo_processing(runs: usize) -> PhotoBench {
    let input = twelve_megapixel_jpeg();
    let limits = PhotoLimits::default();
    let mut times = Vec::with_capacity(runs.max(1));
    let mut output_bytes = 0;
    let mut size = (0, 0);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let processed = process_photo(&input, &limits).expect("the benchmark photo processes");
        times.push(started.elapsed());
        output_bytes = processed.photo.len() + processed.thumbnail.len();
        size = (processed.width, processed.height);
    }
    times.sort();
    PhotoBench {
        width: size.0,
        height: size.1,
        input_bytes: input.len(),
        output_bytes,
        median: times[times.len() / 2],
        fastest: times[0],
        runs: times.len(),
    }
}

/// Reading (and writing) one blob from a local directory, plain and encrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncryptionBench {
    pub blob_bytes: usize,
    pub reads: usize,
    /// Median time of one read.
    pub plain_read: Duration,
    pub encrypted_read: Duration,
    /// How much slower an encrypted read is, in percent (target: under 10).
    pub read_overhead_percent: f64,
    pub plain_write: Duration,
    pub encrypted_write: Duration,
}

/// Reads a 1 MB blob `reads` times through a plain and an encrypted local store under `dir`.
pub async fn encryption_cost(
    dir: &Path,
    blob_bytes: usize,
    reads: usize,
) -> Result<EncryptionBench> {
    let keys = Arc::new(LocalKeyProvider::open_or_create(dir)?);
    let plain = ObjectBlobs::local(&dir.join("plain"))?;
    let encrypted = EncryptedBlobs::new(ObjectBlobs::local(&dir.join("encrypted"))?, keys);
    let payload: Bytes = (0..blob_bytes)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let plain_write = median_of(reads.min(50), || plain.put("bench/blob", payload.clone())).await?;
    let encrypted_write = median_of(reads.min(50), || {
        encrypted.put("bench/blob", payload.clone())
    })
    .await?;
    // Interleave so both see the same page cache and CPU frequency.
    let mut plain_times = Vec::with_capacity(reads);
    let mut encrypted_times = Vec::with_capacity(reads);
    for _ in 0..reads.max(1) {
        plain_times.push(timed(plain.get("bench/blob")).await?);
        encrypted_times.push(timed(encrypted.get("bench/blob")).await?);
    }
    let (plain_read, encrypted_read) = (median(plain_times), median(encrypted_times));
    Ok(EncryptionBench {
        blob_bytes,
        reads: reads.max(1),
        read_overhead_percent: (encrypted_read.as_secs_f64() / plain_read.as_secs_f64() - 1.0)
            * 100.0,
        plain_read,
        encrypted_read,
        plain_write,
        encrypted_write,
    })
}

async fn timed<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<Duration> {
    let started = Instant::now();
    future.await?;
    Ok(started.elapsed())
}

async fn median_of<F, Fut>(runs: usize, mut run: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        times.push(timed(run()).await?);
    }
    Ok(median(times))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Local upload URLs: signing, verifying, and the whole accept path (verify, checks, claim,
/// store) into memory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadUrlBench {
    pub urls: usize,
    pub signed_per_second: f64,
    pub verified_per_second: f64,
    /// Verify + accept of a `body_bytes` upload into an in-memory encrypted store.
    pub accepted_per_second: f64,
    pub body_bytes: usize,
}

/// Signs and verifies `urls` local upload URLs, and accepts a 100 kB upload through each.
pub async fn upload_urls(urls: usize) -> UploadUrlBench {
    let urls = urls.max(1);
    let signer = LocalUploadSigner::new(
        random_key(),
        "http://127.0.0.1:8080",
        UploadsConfig::default(),
    );
    let body = Bytes::from(vec![7u8; 100_000]);
    let request = UploadRequest::for_bytes("image/jpeg", &body);
    let now = Utc::now();

    let started = Instant::now();
    let mut signed = Vec::with_capacity(urls);
    for _ in 0..urls {
        signed.push(signer.sign(&request, now).await.expect("signs"));
    }
    let signing = started.elapsed();

    let parts: Vec<(String, String)> = signed
        .iter()
        .map(|s| {
            let (_, rest) = s.url.split_once("/uploads/").expect("local URL");
            let (id, query) = rest.split_once('?').expect("query");
            (id.to_string(), query.to_string())
        })
        .collect();
    let started = Instant::now();
    for (id, query) in &parts {
        signer.verify(id, query, now).expect("verifies");
    }
    let verifying = started.elapsed();

    let keys = Arc::new(
        LocalKeyProvider::from_keys(
            crate::keys::MasterKey::new("bench", random_key()).expect("id"),
            vec![],
        )
        .expect("keys"),
    );
    let store = EncryptedBlobs::new(ObjectBlobs::in_memory(), keys);
    let started = Instant::now();
    for (id, query) in &parts {
        let grant = signer.verify(id, query, now).expect("verifies");
        signer
            .accept(&store, &grant, Some("image/jpeg"), body.clone())
            .await
            .expect("accepts");
    }
    let accepting = started.elapsed();
    let rate = |d: Duration| urls as f64 / d.as_secs_f64().max(1e-9);
    UploadUrlBench {
        urls,
        signed_per_second: rate(signing),
        verified_per_second: rate(verifying),
        accepted_per_second: rate(accepting),
        body_bytes: body.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_benchmarks_run_and_return_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let cost = encryption_cost(dir.path(), 64 * 1024, 5).await.unwrap();
        assert!(cost.plain_read > Duration::ZERO && cost.encrypted_read > Duration::ZERO);
        let uploads = upload_urls(20).await;
        assert!(uploads.signed_per_second > 0.0 && uploads.accepted_per_second > 0.0);
    }
}
