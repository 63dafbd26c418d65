//! A trained model as a file: a gzip-compressed JSON document that names its format version,
//! the code that made it, its training window, features, data fingerprint and held-out scores,
//! followed by the model itself (the trees' JSON shrinks about tenfold). Readers check the
//! format before trusting the rest, and still read the uncompressed files of earlier builds.

use ecocityhub_domain::Parameter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::evaluate::HorizonScores;
use crate::model::{ForecastModel, TrainOptions};
use crate::MlError;

/// The format name every artifact carries.
pub const FORMAT: &str = "ecocityhub.forecast-model";
/// Bumped when a reader of the old format could not read the new one.
pub const FORMAT_VERSION: u32 = 1;
/// The version of the code that writes artifacts.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything known about a model besides the model itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub format: String,
    pub format_version: u32,
    pub code_version: String,
    /// Epoch seconds.
    pub created_at: i64,
    pub station: String,
    pub parameter: Parameter,
    /// First and last hour of the data the model saw.
    pub training_from: i64,
    pub training_to: i64,
    /// The held-out part (scores, intervals) starts here.
    pub holdout_from: i64,
    pub rows: usize,
    /// SHA-256 of the training series (see `HourlySeries::fingerprint`).
    pub data_fingerprint: String,
    pub features: Vec<String>,
    /// Weather series the station had.
    pub weather: Vec<String>,
    pub options: TrainOptions,
    pub trees: usize,
    pub holdout_scores: Vec<HorizonScores>,
}

/// A model with its description, as saved.
#[derive(Debug, Serialize, Deserialize)]
pub struct Artifact {
    pub meta: ArtifactMeta,
    pub model: ForecastModel,
}

#[derive(Deserialize)]
struct Header {
    meta: HeaderMeta,
}

#[derive(Deserialize)]
struct HeaderMeta {
    format: String,
    format_version: u32,
    code_version: String,
}

/// The name of an artifact file.
pub const FILE_NAME: &str = "model.json.gz";
/// Decompressed artifacts larger than this are refused as damaged.
const MAX_JSON_BYTES: u64 = 1 << 30;

impl Artifact {
    pub fn to_bytes(&self) -> Vec<u8> {
        use std::io::Write;
        let json = serde_json::to_vec(self).expect("an artifact always serializes");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).expect("writing to memory");
        gz.finish().expect("writing to memory")
    }

    /// Reads an artifact, telling a damaged file from one of another format or version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, MlError> {
        use std::io::Read;
        let json: std::borrow::Cow<[u8]> = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_JSON_BYTES)
                .read_to_end(&mut out)
                .map_err(|e| MlError::CorruptArtifact(format!("not a valid gzip stream ({e})")))?;
            out.into()
        } else {
            bytes.into()
        };
        let bytes = json.as_ref();
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| MlError::CorruptArtifact(format!("not a model artifact ({e})")))?;
        let meta = header.meta;
        if meta.format != FORMAT {
            return Err(MlError::IncompatibleArtifact(format!(
                "format {:?}, expected {FORMAT:?}",
                meta.format
            )));
        }
        if meta.format_version != FORMAT_VERSION {
            return Err(MlError::IncompatibleArtifact(format!(
                "format version {} written by ecocityhub {}, this build reads version {FORMAT_VERSION}",
                meta.format_version, meta.code_version
            )));
        }
        let artifact: Artifact =
            serde_json::from_slice(bytes).map_err(|e| MlError::CorruptArtifact(e.to_string()))?;
        let expected = artifact.model.horizon as usize;
        if artifact.model.feature_names.len() != crate::features::N_FEATURES
            || artifact.model.interval_log_ratios.len() != expected
        {
            return Err(MlError::IncompatibleArtifact(
                "its feature list or intervals do not match this build".into(),
            ));
        }
        Ok(artifact)
    }
}

/// SHA-256 of bytes, hex: the checksum the registry keeps for each artifact.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Weather;
    use crate::model::tests::synthetic;
    use crate::{train, TrainOptions};

    fn artifact() -> Artifact {
        let series = synthetic(30 * 24, 3);
        let options = TrainOptions {
            trees: 5,
            ..TrainOptions::default()
        };
        let trained = train(&series, &Weather::default(), &options).unwrap();
        Artifact {
            meta: ArtifactMeta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                code_version: CODE_VERSION.into(),
                created_at: 0,
                station: "s1".into(),
                parameter: Parameter::Pm25,
                training_from: trained.window.0,
                training_to: trained.window.1,
                holdout_from: trained.holdout_from,
                rows: trained.rows,
                data_fingerprint: series.fingerprint(),
                features: trained.model.feature_names.clone(),
                weather: vec![],
                options,
                trees: trained.model.trees(),
                holdout_scores: trained.holdout.scores(),
            },
            model: trained.model,
        }
    }

    #[test]
    fn artifacts_round_trip_compressed_and_old_plain_ones_still_load() {
        let a = artifact();
        let bytes = a.to_bytes();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");
        let json = serde_json::to_vec(&a).unwrap();
        assert!(
            bytes.len() * 4 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let series = synthetic(30 * 24, 3);
        let origin = series.last_observed().unwrap();
        let expected = a.model.forecast_from(&series, &Weather::default(), origin);
        for b in [&bytes, &json] {
            let back = Artifact::from_bytes(b).unwrap();
            assert_eq!(back.meta.data_fingerprint, a.meta.data_fingerprint);
            assert_eq!(
                back.model
                    .forecast_from(&series, &Weather::default(), origin),
                expected
            );
        }
    }

    #[test]
    fn damaged_and_foreign_artifacts_are_told_apart() {
        let bytes = artifact().to_bytes();
        assert!(matches!(
            Artifact::from_bytes(&bytes[..bytes.len() / 2]),
            Err(MlError::CorruptArtifact(_))
        ));
        assert!(matches!(
            Artifact::from_bytes(b"[1, 2]"),
            Err(MlError::CorruptArtifact(_))
        ));
        let foreign =
            br#"{"meta": {"format": "sklearn.pickle", "format_version": 1, "code_version": "x"}}"#;
        assert!(matches!(
            Artifact::from_bytes(foreign),
            Err(MlError::IncompatibleArtifact(_))
        ));
        let newer = format!(
            r#"{{"meta": {{"format": "{FORMAT}", "format_version": 99, "code_version": "9.0.0"}}}}"#
        );
        let err = Artifact::from_bytes(newer.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err}");
    }
}
