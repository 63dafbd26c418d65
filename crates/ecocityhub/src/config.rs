//! Configuration: command-line flags, then environment variables (clap reads both), then an
//! optional TOML file (`--config`, `ECOCITYHUB_CONFIG`, or `./ecocityhub.toml` if present),
//! then defaults that work with no set-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Settings that may come from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
    pub demo: Option<bool>,
    pub replay: Option<bool>,
    pub public_url: Option<String>,
    pub blobs_dir: Option<PathBuf>,
}

impl FileConfig {
    /// Reads the file named by `explicit`, or `./ecocityhub.toml` when it exists.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new("ecocityhub.toml").exists() => PathBuf::from("ecocityhub.toml"),
            None => return Ok(FileConfig::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }
}

/// The database to use: `DATABASE_URL` if given, else an SQLite file `ecocityhub.db` in the
/// data directory (created if missing).
pub fn database_url(
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    file: &FileConfig,
) -> Result<String> {
    let data_dir = data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    match database_url.or_else(|| file.database_url.clone()) {
        Some(url) if !url.is_empty() => Ok(url),
        _ => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
            Ok(format!(
                "sqlite://{}",
                data_dir.join("ecocityhub.db").display()
            ))
        }
    }
}

/// The directory of blobs: the flag or variable, the file's `blobs_dir`, else `blobs` inside
/// the data directory.
pub fn blobs_dir(
    data_dir: Option<PathBuf>,
    blobs_dir: Option<PathBuf>,
    file: &FileConfig,
) -> PathBuf {
    blobs_dir
        .or_else(|| file.blobs_dir.clone())
        .unwrap_or_else(|| {
            data_dir
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("data"))
                .join("blobs")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_fills_what_flags_leave_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\ndatabase_url = \"postgres://x/y\"\n",
        )
        .unwrap();
        let file = FileConfig::load(Some(&path)).unwrap();
        assert_eq!(file.bind.unwrap().port(), 9000);
        assert_eq!(database_url(None, None, &file).unwrap(), "postgres://x/y");
        let url = database_url(
            Some(dir.path().to_path_buf()),
            Some(String::new()),
            &FileConfig::default(),
        )
        .unwrap();
        assert!(url.ends_with("ecocityhub.db"));
        std::fs::write(&path, "colour = 1\n").unwrap();
        assert!(FileConfig::load(Some(&path)).is_err());
    }
}
