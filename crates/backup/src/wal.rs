//! The WAL archive of point-in-time recovery (what RDS keeps as transaction logs): PostgreSQL's
//! `archive_command` hands each finished segment to `ecocityhub backup wal-push`, which stores it
//! compressed with zstd under `backups/wal/` in the (envelope-encrypted) blob store; while a
//! restored base backup replays, `restore_command` fetches them back with `backup wal-fetch`.
//!
//! Pushing is idempotent: a segment already stored with the same content is accepted again (a
//! promoted standby archives the segments it received once more, and an archive command that
//! failed there would stop archiving for good), while different content under the same name is
//! refused, so that two servers writing one archive cannot overwrite each other's history.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ecocityhub_blobs::BlobStore;

use crate::{io, BackupError, Result};

/// Where the segments are, in the blob store.
pub const WAL_PREFIX: &str = "backups/wal/";

/// zstd level of stored segments: fast, and a mostly-empty segment still shrinks to little.
const WAL_ZSTD_LEVEL: i32 = 1;

/// The name of a file PostgreSQL archives: a segment (`000000010000000A000000FF`), a partial
/// segment of a timeline left by a promotion (`….partial`), a backup history file
/// (`….00000028.backup`) or a timeline history file (`00000002.history`). Anything else (a
/// path, a `..`) is refused, so a name can never point outside the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct WalName(String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

impl WalName {
    /// Checks a name as PostgreSQL gives it (`%f`).
    pub fn parse(name: &str) -> Result<WalName> {
        let valid = match name.split_once('.') {
            None => is_hex(name, 24),
            Some((tli, "history")) => is_hex(tli, 8),
            Some((segment, "partial")) => is_hex(segment, 24),
            Some((segment, rest)) => {
                is_hex(segment, 24)
                    && rest
                        .strip_suffix(".backup")
                        .is_some_and(|offset| is_hex(offset, 8))
            }
        };
        match valid {
            true => Ok(WalName(name.to_string())),
            false => Err(BackupError::InvalidWalName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The position in the log of the segment the file belongs to (log and segment number, the
    /// timeline left out); `None` for a timeline history file.
    pub fn position(&self) -> Option<u64> {
        if self.0.ends_with(".history") {
            return None;
        }
        u64::from_str_radix(&self.0[8..24], 16).ok()
    }

    fn key(&self) -> String {
        format!("{WAL_PREFIX}{}.zst", self.0)
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The file was stored: its size, and what it took once compressed.
    Stored { bytes: u64, stored: u64 },
    /// The archive already held the same content under that name.
    AlreadyStored,
}

/// The WAL archive in a blob store.
#[derive(Clone)]
pub struct WalArchive {
    blobs: Arc<dyn BlobStore>,
}

impl WalArchive {
    pub fn new(blobs: Arc<dyn BlobStore>) -> WalArchive {
        WalArchive { blobs }
    }

    /// Stores the file at `path` as `name` (`archive_command`'s `%p` and `%f`).
    pub async fn push(&self, path: &Path, name: &str) -> Result<Pushed> {
        let name = WalName::parse(name)?;
        let data = tokio::fs::read(path)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        let bytes = data.len() as u64;
        let data = Bytes::from(data);
        let compressed = compress(data.clone()).await?;
        let stored = compressed.len() as u64;
        if self.blobs.put_new(&name.key(), compressed).await? {
            tracing::info!(wal = %name, bytes, stored, "WAL file archived");
            return Ok(Pushed::Stored { bytes, stored });
        }
        match self.read(&name).await? {
            Some(existing) if existing == data => {
                tracing::info!(wal = %name, "WAL file already archived with the same content");
                Ok(Pushed::AlreadyStored)
            }
            Some(existing) => Err(BackupError::WalConflict {
                name: name.to_string(),
                reason: format!(
                    "the archive holds a different file of {} bytes under that name (this one has {bytes}); is a second server archiving into the same place?",
                    existing.len()
                ),
            }),
            None => Err(BackupError::WalConflict {
                name: name.to_string(),
                reason: "it was being written by someone else at the same time; retry".into(),
            }),
        }
    }

    /// Writes the archived `name` to `dest` (`restore_command`'s `%f` and `%p`); `false` when
    /// the archive does not hold it (which is how a recovery learns the archive's end).
    pub async fn fetch(&self, name: &str, dest: &Path) -> Result<bool> {
        let name = WalName::parse(name)?;
        let Some(data) = self.read(&name).await? else {
            return Ok(false);
        };
        // Written beside `dest` and renamed, so that PostgreSQL never reads half a file.
        let partial = dest.with_extension("ecocityhub-partial");
        tokio::fs::write(&partial, &data)
            .await
            .map_err(io(format!("writing {}", partial.display())))?;
        tokio::fs::rename(&partial, dest).await.map_err(io(format!(
            "renaming {} to {}",
            partial.display(),
            dest.display()
        )))?;
        Ok(true)
    }

    /// The archived file `name`, decompressed.
    async fn read(&self, name: &WalName) -> Result<Option<Bytes>> {
        let Some(stored) = self.blobs.get(&name.key()).await? else {
            return Ok(None);
        };
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            zstd::stream::decode_all(&stored[..])
                .map(|d| Some(Bytes::from(d)))
                .map_err(|e| BackupError::WalConflict {
                    name,
                    reason: format!("the archived copy is damaged: {e}"),
                })
        })
        .await
        .expect("decompressing does not panic")
    }

    /// The archived files, sorted.
    pub async fn names(&self) -> Result<Vec<WalName>> {
        let mut names: Vec<WalName> = self
            .blobs
            .list(WAL_PREFIX)
            .await?
            .iter()
            .filter_map(|key| key.strip_prefix(WAL_PREFIX)?.strip_suffix(".zst"))
            .filter_map(|name| WalName::parse(name).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the files of segments before `oldest` (the first segment the oldest kept base
    /// backup needs); timeline history files are kept. The names deleted (or, with `dry_run`,
    /// that would be).
    pub async fn prune_before(&self, oldest: &WalName, dry_run: bool) -> Result<Vec<WalName>> {
        let Some(oldest) = oldest.position() else {
            return Ok(Vec::new());
        };
        let old: Vec<WalName> = self
            .names()
            .await?
            .into_iter()
            .filter(|n| n.position().is_some_and(|p| p < oldest))
            .collect();
        if !dry_run {
            for name in &old {
                self.blobs.delete(&name.key()).await?;
            }
        }
        Ok(old)
    }
}

async fn compress(data: Bytes) -> Result<Bytes> {
    tokio::task::spawn_blocking(move || zstd::stream::encode_all(&data[..], WAL_ZSTD_LEVEL))
        .await
        .expect("compressing does not panic")
        .map(Bytes::from)
        .map_err(io("compressing a WAL file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_blobs::ObjectBlobs;

    fn archive() -> WalArchive {
        WalArchive::new(Arc::new(ObjectBlobs::in_memory()))
    }

    const SEGMENT: &str = "000000010000000A000000FF";

    #[test]
    fn names_are_the_files_postgres_archives_and_nothing_else() {
        for good in [
            SEGMENT,
            "000000020000000A000000FF.partial",
            "000000010000000A000000FF.00000028.backup",
            "00000002.history",
        ] {
            assert!(WalName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../000000010000000A000000FF",
            "000000010000000a000000ff",
            "000000010000000A000000F",
            "000000010000000A000000FF.zst",
            "0000000Z.history",
            "000000010000000A000000FF.0028.backup",
            "x/000000010000000A000000FF",
        ] {
            assert!(
                matches!(WalName::parse(bad), Err(BackupError::InvalidWalName(_))),
                "{bad}"
            );
        }
        assert_eq!(
            WalName::parse(SEGMENT).unwrap().position(),
            Some(0x0000_000A_0000_00FF)
        );
        assert_eq!(WalName::parse("00000002.history").unwrap().position(), None);
    }

    #[tokio::test]
    async fn a_segment_pushed_twice_with_the_same_content_is_accepted_and_a_different_one_refused()
    {
        let dir = tempfile::tempdir().unwrap();
        let archive = archive();
        let path = dir.path().join(SEGMENT);
        let mut segment = vec![0u8; 16 << 20];
        segment[..5].copy_from_slice(b"hello");
        std::fs::write(&path, &segment).unwrap();

        let first = archive.push(&path, SEGMENT).await.unwrap();
        let Pushed::Stored { bytes, stored } = first else {
            panic!("{first:?}")
        };
        assert_eq!(bytes, 16 << 20);
        assert!(
            stored < 10_000,
            "a mostly empty segment compresses: {stored}"
        );
        assert_eq!(
            archive.push(&path, SEGMENT).await.unwrap(),
            Pushed::AlreadyStored
        );

        segment[0] = b'j';
        std::fs::write(&path, &segment).unwrap();
        let err = archive.push(&path, SEGMENT).await.unwrap_err();
        assert!(matches!(err, BackupError::WalConflict { .. }), "{err}");
        assert!(err.to_string().contains("different file"), "{err}");

        // The first content is what stays archived.
        let back = dir.path().join("RECOVERYXLOG");
        assert!(archive.fetch(SEGMENT, &back).await.unwrap());
        assert_eq!(&std::fs::read(&back).unwrap()[..5], b"hello");
    }

    #[tokio::test]
    async fn fetching_what_the_archive_lacks_says_so_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let back = dir.path().join("RECOVERYXLOG");
        assert!(!archive().fetch(SEGMENT, &back).await.unwrap());
        assert!(!back.exists());
        let err = archive()
            .fetch("../../etc/passwd", &back)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not the name of a WAL file"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn pruning_deletes_segments_before_the_oldest_base_backup_and_keeps_histories() {
        let dir = tempfile::tempdir().unwrap();
        let archive = archive();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        for name in [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000004",
        ] {
            archive.push(&path, name).await.unwrap();
        }
        let oldest = WalName::parse("000000010000000000000003").unwrap();
        let would = archive.prune_before(&oldest, true).await.unwrap();
        assert_eq!(would.len(), 3);
        assert_eq!(archive.names().await.unwrap().len(), 6);
        let deleted = archive.prune_before(&oldest, false).await.unwrap();
        assert_eq!(deleted, would);
        let left: Vec<String> = archive
            .names()
            .await
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            left,
            [
                "000000010000000000000003",
                "00000002.history",
                "000000020000000000000004"
            ]
        );
    }
}
