//! A trained model as a file: a JSON document that names its format version, the code that
//! made it, its training window, features, data fingerprint and held-out scores, followed by
//! the model itself. Readers check the format before trusting the rest.

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

impl Artifact {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an artifact always serializes")
    }

    /// Reads an artifact, telling a damaged file from one of another format or version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, MlError> {
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
