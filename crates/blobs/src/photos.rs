//! Photos of citizens' reports: what an upload becomes before anyone sees it.
//!
//! [`process_photo`] sniffs the type from the bytes (JPEG, PNG or WebP — never the name or the
//! header), decodes under limits (at most 8,000 pixels a side and 256 MiB, so a 20,000 × 20,000
//! PNG is refused from its header without allocating it), applies the EXIF orientation,
//! re-encodes as JPEG (which writes no EXIF: GPS and camera data are gone) and makes a
//! thumbnail. [`store_photo`] stores both under content-addressed names. Every refusal is a
//! [`PhotoError`] with a message fit for a 4xx.

use std::io::Cursor;

use bytes::Bytes;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{BlobError, BlobStore};

/// The content type of every processed photo and thumbnail.
pub const PHOTO_CONTENT_TYPE: &str = "image/jpeg";
/// Where processed photos are stored (`photos/{sha256}.jpg`).
pub const PHOTOS_PREFIX: &str = "photos";
/// Where thumbnails are stored (`photos/thumbnails/{sha256}.jpg`).
pub const THUMBNAILS_PREFIX: &str = "photos/thumbnails";

/// Limits and sizes of photo processing.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PhotoLimits {
    /// The largest upload accepted, in bytes.
    pub max_bytes: u64,
    /// The widest and tallest image decoded.
    pub max_side: u32,
    /// The most memory the decoder may allocate.
    pub max_alloc_bytes: u64,
    /// Photos larger than this on their long side are scaled down to it.
    pub stored_side: u32,
    /// The long side of thumbnails.
    pub thumbnail_side: u32,
    /// JPEG quality of the re-encoded photo and thumbnail (1-100).
    pub jpeg_quality: u8,
}

impl Default for PhotoLimits {
    fn default() -> Self {
        PhotoLimits {
            max_bytes: crate::uploads::MAX_UPLOAD_BYTES,
            max_side: 8000,
            max_alloc_bytes: 256 * 1024 * 1024,
            stored_side: 2560,
            thumbnail_side: 320,
            jpeg_quality: 85,
        }
    }
}

/// The image types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoKind {
    Jpeg,
    Png,
    Webp,
}

impl PhotoKind {
    fn format(self) -> ImageFormat {
        match self {
            PhotoKind::Jpeg => ImageFormat::Jpeg,
            PhotoKind::Png => ImageFormat::Png,
            PhotoKind::Webp => ImageFormat::WebP,
        }
    }
}

/// Why a photo was refused. All are the sender's fault (4xx) but `Storage`.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("the photo is {size} bytes; at most {max} bytes are accepted")]
    TooLarge { size: u64, max: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the file is a {detected}, not a photo: JPEG, PNG and WebP are accepted")]
    Unsupported { detected: &'static str },
    #[error("the photo is {width} × {height} pixels; at most {max} pixels a side are accepted")]
    TooManyPixels { width: u32, height: u32, max: u32 },
    #[error("the photo would need more than {max_bytes} bytes of memory to decode")]
    TooMuchMemory { max_bytes: u64 },
    #[error("the {kind:?} file is truncated: it ends before the image does")]
    Truncated { kind: PhotoKind },
    #[error("the {kind:?} file cannot be decoded: {reason}")]
    Undecodable { kind: PhotoKind, reason: String },
    #[error(transparent)]
    Storage(#[from] BlobError),
}

impl PhotoError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            PhotoError::TooLarge { .. } => 413,
            PhotoError::Unsupported { .. } => 415,
            PhotoError::Storage(_) => 500,
            _ => 422,
        }
    }
}

/// What the bytes are, from their first bytes alone.
pub fn sniff(bytes: &[u8]) -> Result<PhotoKind, PhotoError> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(PhotoKind::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(PhotoKind::Png);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(PhotoKind::Webp);
    }
    let brand = bytes.get(4..12);
    let detected = if starts(b"%PDF") {
        "PDF document"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "GIF image"
    } else if brand.is_some_and(|b| {
        [
            b"ftypheic",
            b"ftypheix",
            b"ftypmif1",
            b"ftyphevc",
            b"ftypmsf1",
        ]
        .iter()
        .any(|m| b == *m)
    }) {
        "HEIC/HEIF photo (convert it to JPEG first)"
    } else if brand.is_some_and(|b| b == b"ftypavif") {
        "AVIF image"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "TIFF image"
    } else if starts(b"BM") {
        "BMP image"
    } else if starts(b"PK\x03\x04") {
        "ZIP archive or office document"
    } else if starts(b"<svg") || starts(b"<?xml") {
        "SVG or XML document"
    } else {
        "file of unknown type"
    };
    Err(PhotoError::Unsupported { detected })
}

/// A processed photo, ready to store.
#[derive(Debug, Clone)]
pub struct ProcessedPhoto {
    pub source: PhotoKind,
    /// The re-encoded JPEG, oriented, without metadata.
    pub photo: Bytes,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Bytes,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

/// Sniffs, decodes under `limits`, orients, re-encodes and makes the thumbnail. CPU-bound
/// (about 0.2-0.5 s for 12 megapixels): call it off the async threads, as [`store_photo`] does.
pub fn process_photo(bytes: &[u8], limits: &PhotoLimits) -> Result<ProcessedPhoto, PhotoError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(PhotoError::TooLarge {
            size: bytes.len() as u64,
            max: limits.max_bytes,
        });
    }
    let kind = sniff(bytes)?;
    if kind == PhotoKind::Jpeg && !jpeg_has_end(bytes) {
        return Err(PhotoError::Truncated { kind });
    }
    let image = decode(bytes, kind, limits)?;
    let photo = if image.width().max(image.height()) > limits.stored_side {
        image.resize(
            limits.stored_side,
            limits.stored_side,
            image::imageops::FilterType::Triangle,
        )
    } else {
        image
    };
    let photo = flatten(photo);
    let thumbnail = photo.thumbnail(limits.thumbnail_side, limits.thumbnail_side);
    let encoded = encode_jpeg(&photo, limits.jpeg_quality, kind)?;
    let encoded_thumbnail = encode_jpeg(&thumbnail, limits.jpeg_quality, kind)?;
    Ok(ProcessedPhoto {
        source: kind,
        width: photo.width(),
        height: photo.height(),
        photo: encoded.into(),
        thumbnail_width: thumbnail.width(),
        thumbnail_height: thumbnail.height(),
        thumbnail: encoded_thumbnail.into(),
    })
}

fn decode(bytes: &[u8], kind: PhotoKind, limits: &PhotoLimits) -> Result<DynamicImage, PhotoError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(image_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(e, kind, limits))?;
    let (width, height) = decoder.dimensions();
    if width > limits.max_side || height > limits.max_side {
        return Err(PhotoError::TooManyPixels {
            width,
            height,
            max: limits.max_side,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| decode_error(e, kind, limits))?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn decode_error(error: ImageError, kind: PhotoKind, limits: &PhotoLimits) -> PhotoError {
    match error {
        ImageError::Limits(_) => PhotoError::TooMuchMemory {
            max_bytes: limits.max_alloc_bytes,
        },
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            PhotoError::Truncated { kind }
        }
        other => {
            let reason = other.to_string();
            let lower = reason.to_ascii_lowercase();
            if ["eof", "end of", "truncat", "no more data", "unexpected end"]
                .iter()
                .any(|s| lower.contains(s))
            {
                PhotoError::Truncated { kind }
            } else {
                PhotoError::Undecodable { kind, reason }
            }
        }
    }
}

/// Does a JPEG end with its end-of-image marker (allowing trailing padding or a trailer that
/// cameras add after it)? A truncated JPEG decodes to a grey-filled picture otherwise.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let Some(scan) = find_last_scan_start(bytes) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Where the image data of the main picture starts: after the header segments (whose lengths
/// are walked, so an embedded EXIF thumbnail's markers are skipped).
fn find_last_scan_start(bytes: &[u8]) -> Option<usize> {
    let mut at = 2;
    loop {
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if bytes.get(at) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        if marker == 0xDA {
            let start = at + 2 + length;
            return (start <= bytes.len()).then_some(start);
        }
        at += 2 + length;
    }
}

/// JPEG has no alpha: transparent parts become white.
fn flatten(image: DynamicImage) -> DynamicImage {
    if !image.color().has_alpha() {
        return DynamicImage::ImageRgb8(image.into_rgb8());
    }
    let rgba = image.into_rgba8();
    let mut rgb = image::RgbImage::new(rgba.width(), rgba.height());
    for (out, pixel) in rgb.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = pixel.0;
        let over = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        *out = image::Rgb([over(r), over(g), over(b)]);
    }
    DynamicImage::ImageRgb8(rgb)
}

fn encode_jpeg(image: &DynamicImage, quality: u8, kind: PhotoKind) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::with_capacity((image.width() * image.height() / 4) as usize);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .map_err(|e| PhotoError::Undecodable {
            kind,
            reason: format!("re-encoding failed: {e}"),
        })?;
    Ok(out)
}

/// A photo stored: where, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPhoto {
    /// `photos/{sha256}.jpg`
    pub key: String,
    /// `photos/thumbnails/{sha256}.jpg`
    pub thumbnail_key: String,
    /// Hex SHA-256 of the stored photo (what its key is named after).
    pub sha256: String,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

/// The content-addressed key of processed photo bytes.
pub fn photo_key(photo: &[u8]) -> String {
    format!("{PHOTOS_PREFIX}/{}.jpg", hex::encode(Sha256::digest(photo)))
}

/// The content-addressed key of thumbnail bytes.
pub fn thumbnail_key(thumbnail: &[u8]) -> String {
    format!(
        "{THUMBNAILS_PREFIX}/{}.jpg",
        hex::encode(Sha256::digest(thumbnail))
    )
}

/// Processes an upload (on a blocking thread) and stores the photo and its thumbnail under
/// content-addressed names; the same photo uploaded twice is stored once. A refused upload
/// stores nothing.
pub async fn store_photo(
    blobs: &dyn BlobStore,
    upload: Bytes,
    limits: &PhotoLimits,
) -> Result<StoredPhoto, PhotoError> {
    let limits_for_task = limits.clone();
    let started = std::time::Instant::now();
    let processed = tokio::task::spawn_blocking(move || process_photo(&upload, &limits_for_task))
        .await
        .map_err(|e| PhotoError::Undecodable {
            kind: PhotoKind::Jpeg,
            reason: format!("the processing task failed: {e}"),
        })?;
    let processed = match processed {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!("ecocityhub_photos_refused_total").increment(1);
            return Err(e);
        }
    };
    metrics::histogram!("ecocityhub_photo_processing_seconds")
        .record(started.elapsed().as_secs_f64());
    let key = photo_key(&processed.photo);
    let thumbnail_key = thumbnail_key(&processed.thumbnail);
    blobs
        .put_new(&thumbnail_key, processed.thumbnail.clone())
        .await?;
    blobs.put_new(&key, processed.photo.clone()).await?;
    Ok(StoredPhoto {
        sha256: key[PHOTOS_PREFIX.len() + 1..key.len() - 4].to_string(),
        key,
        thumbnail_key,
        content_type: PHOTO_CONTENT_TYPE,
        width: processed.width,
        height: processed.height,
        bytes: processed.photo.len() as u64,
        thumbnail_width: processed.thumbnail_width,
        thumbnail_height: processed.thumbnail_height,
    })
}

/// Real test images: a JPEG carrying EXIF with GPS and an orientation, as a phone writes it.
/// Public so the application's browser test can upload one.
pub mod testing {
    use image::{Rgb, RgbImage};

    /// A `width` × `height` picture whose left half is red and right half blue, top rows
    /// green (so a rotation shows), encoded as JPEG.
    pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| {
            if y < height / 8 {
                Rgb([0, 200, 0])
            } else if x < width / 2 {
                Rgb([220, 20, 20])
            } else {
                Rgb([20, 20, 220])
            }
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&image)
            .expect("a test JPEG encodes");
        out
    }

    /// [`jpeg`] with an EXIF APP1 segment after SOI: IFD0 with `Orientation` = `orientation`,
    /// `Make` = "EcoCityHubCam" and a GPS IFD at 51° 31' 12" N, 0° 9' 0" W.
    pub fn jpeg_with_exif_gps(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        let plain = jpeg(width, height);
        let exif = exif_segment(orientation);
        let mut out = Vec::with_capacity(plain.len() + exif.len());
        out.extend_from_slice(&plain[..2]);
        out.extend_from_slice(&exif);
        out.extend_from_slice(&plain[2..]);
        out
    }

    /// A little-endian TIFF structure inside `Exif\0\0`, wrapped as an APP1 segment.
    fn exif_segment(orientation: u16) -> Vec<u8> {
        fn entry(tiff: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
            tiff.extend_from_slice(&tag.to_le_bytes());
            tiff.extend_from_slice(&kind.to_le_bytes());
            tiff.extend_from_slice(&count.to_le_bytes());
            tiff.extend_from_slice(&value);
        }
        const SHORT: u16 = 3;
        const LONG: u16 = 4;
        const ASCII: u16 = 2;
        const RATIONAL: u16 = 5;
        // Layout: header (8) | IFD0: 3 entries (2 + 36 + 4 = 42) at 8 | "EcoCityHubCam\0" (14)
        // at 50 | GPS IFD: 4 entries (2 + 48 + 4 = 54) at 64 | latitude (24) at 118 |
        // longitude (24) at 142.
        let (make_at, gps_at, lat_at, lon_at) = (50u32, 64u32, 118u32, 142u32);
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        entry(&mut tiff, 0x010F, ASCII, 14, make_at.to_le_bytes());
        let mut value = [0u8; 4];
        value[..2].copy_from_slice(&orientation.to_le_bytes());
        entry(&mut tiff, 0x0112, SHORT, 1, value);
        entry(&mut tiff, 0x8825, LONG, 1, gps_at.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(b"EcoCityHubCam\0");
        assert_eq!(tiff.len() as u32, gps_at);
        tiff.extend_from_slice(&4u16.to_le_bytes());
        entry(&mut tiff, 0x0001, ASCII, 2, *b"N\0\0\0");
        entry(&mut tiff, 0x0002, RATIONAL, 3, lat_at.to_le_bytes());
        entry(&mut tiff, 0x0003, ASCII, 2, *b"W\0\0\0");
        entry(&mut tiff, 0x0004, RATIONAL, 3, lon_at.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(tiff.len() as u32, lat_at);
        for (num, den) in [(51u32, 1u32), (31, 1), (12, 1), (0, 1), (9, 1), (0, 1)] {
            tiff.extend_from_slice(&num.to_le_bytes());
            tiff.extend_from_slice(&den.to_le_bytes());
        }
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut segment = vec![0xFF, 0xE1];
        segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        segment.extend_from_slice(&payload);
        segment
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{jpeg, jpeg_with_exif_gps};
    use super::*;
    use crate::ObjectBlobs;

    fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
        exif::Reader::new()
            .read_from_container(&mut Cursor::new(bytes))
            .ok()
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_pixel(width, height, image::Rgba([0, 0, 0, 0]));
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn the_test_jpeg_really_carries_gps_and_orientation() {
        let bytes = jpeg_with_exif_gps(64, 32, 6);
        let exif = exif_of(&bytes).expect("EXIF is readable");
        let gps = exif
            .get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
            .expect("GPS latitude");
        assert!(
            gps.display_value().to_string().starts_with("51 deg"),
            "{}",
            gps.display_value()
        );
        let orientation = exif
            .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0));
        assert_eq!(orientation, Some(6));
        assert!(image::load_from_memory(&bytes).is_ok());
    }

    #[test]
    fn processing_strips_exif_and_gps_and_applies_the_orientation() {
        // Orientation 6: the camera was turned; the picture shows rotated 90° clockwise.
        let bytes = jpeg_with_exif_gps(128, 64, 6);
        let processed = process_photo(&bytes, &PhotoLimits::default()).unwrap();
        assert_eq!(processed.source, PhotoKind::Jpeg);
        assert_eq!((processed.width, processed.height), (64, 128), "rotated");
        for output in [&processed.photo, &processed.thumbnail] {
            assert!(exif_of(output).is_none(), "EXIF survived");
            assert!(!output.windows(4).any(|w| w == b"Exif"));
            assert!(!output.windows(13).any(|w| w == b"EcoCityHubCam"));
        }
        // Rotated clockwise, the green top rows are now on the right, red (left) on top.
        let decoded = image::load_from_memory(&processed.photo)
            .unwrap()
            .into_rgb8();
        let top_left = decoded.get_pixel(8, 8).0;
        let right_middle = decoded.get_pixel(60, 64).0;
        let bottom_left = decoded.get_pixel(8, 120).0;
        assert!(
            top_left[0] > 150 && top_left[2] < 100,
            "red on top: {top_left:?}"
        );
        assert!(
            right_middle[1] > 150,
            "green on the right: {right_middle:?}"
        );
        assert!(
            bottom_left[2] > 150 && bottom_left[0] < 100,
            "blue below: {bottom_left:?}"
        );
        // Orientation 1 changes nothing.
        let upright =
            process_photo(&jpeg_with_exif_gps(64, 32, 1), &PhotoLimits::default()).unwrap();
        assert_eq!((upright.width, upright.height), (64, 32));
    }

    #[test]
    fn large_photos_are_scaled_and_thumbnailed() {
        let processed = process_photo(&jpeg(3000, 1500), &PhotoLimits::default()).unwrap();
        assert_eq!((processed.width, processed.height), (2560, 1280));
        assert_eq!(
            (processed.thumbnail_width, processed.thumbnail_height),
            (320, 160)
        );
        let transparent = process_photo(&png(40, 20), &PhotoLimits::default()).unwrap();
        assert_eq!(transparent.source, PhotoKind::Png);
        let pixel = image::load_from_memory(&transparent.photo)
            .unwrap()
            .into_rgb8();
        assert!(
            pixel.get_pixel(10, 10).0.iter().all(|&c| c > 240),
            "white, not black"
        );
    }

    #[test]
    fn webp_photos_are_accepted() {
        let image = image::RgbaImage::from_pixel(16, 8, image::Rgba([10, 200, 10, 255]));
        let mut webp = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut webp), ImageFormat::WebP)
            .unwrap();
        let processed = process_photo(&webp, &PhotoLimits::default()).unwrap();
        assert_eq!(processed.source, PhotoKind::Webp);
        assert_eq!((processed.width, processed.height), (16, 8));
    }

    #[test]
    fn fakes_bombs_and_broken_files_are_refused_clearly() {
        let limits = PhotoLimits::default();
        let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
        let err = process_photo(&pdf, &limits).unwrap_err();
        assert!(matches!(
            err,
            PhotoError::Unsupported {
                detected: "PDF document"
            }
        ));
        assert_eq!(err.status(), 415);
        assert!(err.to_string().contains("PDF"), "{err}");

        let gif = b"GIF89a\x01\x00\x01\x00".to_vec();
        assert!(matches!(
            process_photo(&gif, &limits),
            Err(PhotoError::Unsupported { .. })
        ));
        assert!(matches!(
            process_photo(b"", &limits),
            Err(PhotoError::Empty)
        ));

        let started = std::time::Instant::now();
        let bomb = png_bomb(20_000, 20_000);
        assert!(bomb.len() < 2_000_000, "the bomb is small: {}", bomb.len());
        let err = process_photo(&bomb, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                PhotoError::TooManyPixels {
                    width: 20_000,
                    height: 20_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("20000 × 20000"), "{err}");
        assert!(started.elapsed().as_secs() < 20);

        let whole = jpeg_with_exif_gps(400, 300, 1);
        let err = process_photo(&whole[..whole.len() * 2 / 3], &limits).unwrap_err();
        assert!(
            matches!(
                err,
                PhotoError::Truncated {
                    kind: PhotoKind::Jpeg
                }
            ),
            "{err}"
        );
        let whole_png = png(300, 300);
        let err = process_photo(&whole_png[..whole_png.len() / 2], &limits).unwrap_err();
        assert!(
            matches!(
                err,
                PhotoError::Truncated {
                    kind: PhotoKind::Png
                }
            ),
            "{err}"
        );
        assert_eq!(err.status(), 422);

        let mut garbage = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\0".to_vec();
        garbage.extend_from_slice(&[0x55; 200]);
        assert!(process_photo(&garbage, &limits).is_err());

        let big = vec![0u8; (limits.max_bytes + 1) as usize];
        assert_eq!(process_photo(&big, &limits).unwrap_err().status(), 413);
    }

    /// A PNG header claiming `width` × `height` with a tiny, valid-looking IDAT: what a
    /// decompression bomb's first bytes look like.
    fn png_bomb(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        let mut writer = encoder.write_header().unwrap();
        let row = (width as usize).div_ceil(8);
        let zeros = vec![0u8; row * height as usize];
        writer.write_image_data(&zeros).unwrap();
        writer.finish().unwrap();
        out
    }

    #[tokio::test]
    async fn stored_photos_are_content_addressed_and_encrypted_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            std::sync::Arc::new(crate::LocalKeyProvider::open_or_create(dir.path()).unwrap());
        let blobs = crate::EncryptedBlobs::new(
            ObjectBlobs::local(&dir.path().join("blobs")).unwrap(),
            keys,
        );
        let upload = Bytes::from(jpeg_with_exif_gps(200, 100, 8));
        let stored = store_photo(&blobs, upload.clone(), &PhotoLimits::default())
            .await
            .unwrap();
        assert_eq!((stored.width, stored.height), (100, 200));
        assert_eq!(stored.key, format!("photos/{}.jpg", stored.sha256));
        let photo = blobs.get(&stored.key).await.unwrap().unwrap();
        assert_eq!(hex::encode(Sha256::digest(&photo)), stored.sha256);
        let thumbnail = blobs.get(&stored.thumbnail_key).await.unwrap().unwrap();
        assert!(image::load_from_memory(&thumbnail).is_ok());
        let again = store_photo(&blobs, upload, &PhotoLimits::default())
            .await
            .unwrap();
        assert_eq!(again, stored);
        assert_eq!(blobs.list("photos").await.unwrap().len(), 2);
        let raw = std::fs::read(dir.path().join("blobs").join(&stored.key)).unwrap();
        assert!(crate::is_sealed(&raw));
        let err = store_photo(
            &blobs,
            Bytes::from_static(b"%PDF-1.4"),
            &PhotoLimits::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.status(), 415);
        assert_eq!(
            blobs.list("photos").await.unwrap().len(),
            2,
            "nothing stored"
        );
    }
}
