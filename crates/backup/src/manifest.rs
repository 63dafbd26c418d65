//! A backup's id and its manifest (`backups/{id}/manifest.json`), and the checks of stored
//! data against it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{BackupError, Result};

/// Where backups live in the blob store.
pub const PREFIX: &str = "backups";

/// The version of the manifest's layout.
pub const FORMAT: u32 = 1;

/// A backup's id: `YYYYMMDDTHHMMSSZ-xxxxxx` (UTC time, 6 hex digits), so ids sort by time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl BackupId {
    /// A new id for a backup taken at `at`.
    pub fn new(at: DateTime<Utc>) -> BackupId {
        let mut random = [0u8; 3];
        rand::rng().fill_bytes(&mut random);
        BackupId(format!(
            "{}-{}",
            at.format(TIME_FORMAT),
            hex::encode(random)
        ))
    }

    /// Reads an id; refuses anything else (it becomes part of blob keys).
    pub fn parse(text: &str) -> Result<BackupId> {
        let invalid = || BackupError::InvalidId(text.to_string());
        let (time, random) = text.split_once('-').ok_or_else(invalid)?;
        let random_ok = random.len() == 6
            && random
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !random_ok || NaiveDateTime::parse_from_str(time, TIME_FORMAT).is_err() {
            return Err(invalid());
        }
        Ok(BackupId(text.to_string()))
    }

    /// The time in the id (to the second).
    pub fn time(&self) -> DateTime<Utc> {
        let time = self.0.split_once('-').map_or("", |(t, _)| t);
        NaiveDateTime::parse_from_str(time, TIME_FORMAT)
            .expect("checked when made")
            .and_utc()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of the backup's data.
    pub fn data_key(&self) -> String {
        format!("{PREFIX}/{}/data", self.0)
    }

    /// The key of the backup's manifest.
    pub fn manifest_key(&self) -> String {
        format!("{PREFIX}/{}/manifest.json", self.0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BackupId {
    type Error = BackupError;
    fn try_from(text: String) -> Result<BackupId> {
        BackupId::parse(&text)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

/// What the data of a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An SQLite database file made by `VACUUM INTO`, compressed with zstd.
    SqliteSnapshot,
    /// A `pg_dump -Fc` archive (compressed by pg_dump).
    PgDump,
    /// A `pg_basebackup` tar stream of the whole server, compressed with zstd: the start of a
    /// point-in-time recovery with the WAL archive.
    PgBase,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::SqliteSnapshot => "sqlite-snapshot",
            Kind::PgDump => "pg-dump",
            Kind::PgBase => "pg-base",
        }
    }

    /// The database backend the kind restores into.
    pub const fn backend(self) -> &'static str {
        match self {
            Kind::SqliteSnapshot => "sqlite",
            Kind::PgDump | Kind::PgBase => "postgres",
        }
    }
}

/// What a backup holds, stored beside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout of this manifest ([`FORMAT`]).
    pub format: u32,
    pub id: BackupId,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub kind: Kind,
    /// Bytes of the stored data (as compressed, before the blob store's encryption).
    pub size: u64,
    /// Bytes of the database before compression (the SQLite snapshot; for pg_dump, the size).
    pub database_size: u64,
    /// SHA-256 of the stored data, hex.
    pub sha256: String,
    /// The newest applied migration (`_sqlx_migrations`), 0 when there is none.
    pub schema_version: i64,
    /// Rows per table at the snapshot (empty for a base backup, which is not counted: the
    /// server keeps writing while it is taken).
    pub tables: BTreeMap<String, i64>,
    /// Versions of what made the backup (`ecocityhub-backup`, `sqlite`, `zstd`, `pg_dump`,
    /// `postgres`).
    pub tools: BTreeMap<String, String>,
    /// How long taking the backup took, in milliseconds.
    pub duration_ms: u64,
    /// A base backup's first WAL segment: the archive must hold it and all after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_start: Option<String>,
}

impl Manifest {
    /// The manifest as stored.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serializes")
    }

    /// Reads a stored manifest of backup `id`.
    pub fn from_json(id: &BackupId, bytes: &[u8]) -> Result<Manifest> {
        let bad = |reason: String| BackupError::BadManifest {
            id: id.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "format {} is not {FORMAT}: made by another version",
                manifest.format
            )));
        }
        if &manifest.id != id {
            return Err(bad(format!("it names backup {}", manifest.id)));
        }
        Ok(manifest)
    }

    /// Refuses data that is not exactly what was stored: truncated, extended or altered.
    pub fn check_data(&self, data: &[u8]) -> Result<()> {
        let damaged = |reason: String| BackupError::Damaged {
            id: self.id.to_string(),
            reason,
        };
        let len = data.len() as u64;
        if len < self.size {
            return Err(damaged(format!(
                "the data is truncated: {len} of {} bytes",
                self.size
            )));
        }
        if len > self.size {
            return Err(damaged(format!(
                "the data is {len} bytes, the manifest says {}",
                self.size
            )));
        }
        let actual = sha256_hex(data);
        if actual != self.sha256 {
            return Err(damaged(format!(
                "the data's SHA-256 is {actual}, the manifest says {}",
                self.sha256
            )));
        }
        Ok(())
    }

    /// Refuses a restored database whose row counts differ from the manifest's.
    pub fn check_counts(&self, counts: &BTreeMap<String, i64>) -> Result<()> {
        let mut differences = Vec::new();
        for (table, want) in &self.tables {
            match counts.get(table) {
                Some(got) if got == want => {}
                Some(got) => differences.push(format!("{table}: {got} rows, expected {want}")),
                None => differences.push(format!("{table}: missing, expected {want} rows")),
            }
        }
        for table in counts.keys().filter(|t| !self.tables.contains_key(*t)) {
            differences.push(format!("{table}: not in the manifest"));
        }
        if differences.is_empty() {
            return Ok(());
        }
        Err(BackupError::Mismatch {
            id: self.id.to_string(),
            reason: differences.join("; "),
        })
    }

    /// Rows of all tables.
    pub fn total_rows(&self) -> i64 {
        self.tables.values().sum()
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample(data: &[u8]) -> Manifest {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 3, 15, 0).unwrap();
        Manifest {
            format: FORMAT,
            id: BackupId::new(at),
            created_at: at,
            backend: "sqlite".into(),
            kind: Kind::SqliteSnapshot,
            size: data.len() as u64,
            database_size: 4096,
            sha256: sha256_hex(data),
            schema_version: 13,
            tables: [("readings".to_string(), 1_000), ("stations".into(), 3)].into(),
            tools: [("sqlite".to_string(), "3.46.0".to_string())].into(),
            duration_ms: 12,
            wal_start: None,
        }
    }

    #[test]
    fn ids_sort_by_time_and_refuse_anything_else() {
        let early = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 5, 3, 15, 0).unwrap());
        let late = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 5, 3, 15, 1).unwrap());
        assert!(early < late);
        assert!(early.as_str().starts_with("20260105T031500Z-"));
        assert_eq!(BackupId::parse(early.as_str()).unwrap(), early);
        assert_eq!(
            early.time(),
            Utc.with_ymd_and_hms(2026, 1, 5, 3, 15, 0).unwrap()
        );
        assert_eq!(early.data_key(), format!("backups/{}/data", early.as_str()));
        for bad in [
            "",
            "20260105T031500Z",
            "20260105T031500Z-3FA9C1",
            "20260105T031500Z-3fa9c",
            "20261305T031500Z-3fa9c1",
            "../20260105T031500Z-3fa9c1",
            "20260105T031500Z-3fa9c1/..",
        ] {
            assert!(
                matches!(BackupId::parse(bad), Err(BackupError::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_manifest_round_trips_and_names_its_backup() {
        let manifest = sample(b"data");
        let json = manifest.to_json();
        assert_eq!(Manifest::from_json(&manifest.id, &json).unwrap(), manifest);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"kind\": \"sqlite-snapshot\""), "{text}");
        let other = BackupId::new(Utc::now());
        let err = Manifest::from_json(&other, &json).unwrap_err().to_string();
        assert!(err.contains("it names backup"), "{err}");
        let err = Manifest::from_json(&manifest.id, b"{\"format\": 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("manifest of backup"), "{err}");
        let newer = text.replace("\"format\": 1", "\"format\": 2");
        let err = Manifest::from_json(&manifest.id, newer.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("format 2"), "{err}");
    }

    #[test]
    fn damaged_or_truncated_data_is_refused_with_the_reason() {
        let data = b"the compressed snapshot".to_vec();
        let manifest = sample(&data);
        manifest.check_data(&data).unwrap();

        let truncated = manifest.check_data(&data[..10]).unwrap_err().to_string();
        assert!(
            truncated.contains("damaged") && truncated.contains("truncated: 10 of 23 bytes"),
            "{truncated}"
        );
        let mut flipped = data.clone();
        flipped[5] ^= 0x01;
        let flipped = manifest.check_data(&flipped).unwrap_err().to_string();
        assert!(flipped.contains("SHA-256"), "{flipped}");
        let mut longer = data.clone();
        longer.push(0);
        let longer = manifest.check_data(&longer).unwrap_err().to_string();
        assert!(
            longer.contains("24 bytes, the manifest says 23"),
            "{longer}"
        );
    }

    #[test]
    fn row_counts_are_compared_table_by_table() {
        let manifest = sample(b"x");
        let mut counts = manifest.tables.clone();
        manifest.check_counts(&counts).unwrap();
        counts.insert("readings".into(), 999);
        counts.insert("extra".into(), 1);
        counts.remove("stations");
        let err = manifest.check_counts(&counts).unwrap_err().to_string();
        assert!(err.contains("readings: 999 rows, expected 1000"), "{err}");
        assert!(err.contains("stations: missing"), "{err}");
        assert!(err.contains("extra: not in the manifest"), "{err}");
    }
}
