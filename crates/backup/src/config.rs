//! The `[backup]` table of the configuration file: how often `serve` takes a backup, how long
//! backups are kept, and where the PostgreSQL client tools are.
//!
//! ```toml
//! [backup]
//! every = "24h"          # humantime ("6h", "1day", "30m"), or "off"; default daily
//! retention_days = 7     # 1 to 35
//! weekly = 4             # newest backup of each of the 4 calendar weeks before this one
//! # pg_bin_dir = "/usr/lib/postgresql/15/bin"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::retention::Retention;
use crate::Result;

/// A server that has just started waits at most this long before its first due backup, so a
/// process that restarts often does not back up on every start.
pub const FIRST_BACKUP_DELAY: Duration = Duration::from_secs(300);

/// When `serve` takes backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Off,
    Every(Duration),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Every(Duration::from_secs(24 * 3600))
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Schedule, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Schedule::Off);
        }
        let every = humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like \"24h\" or \"off\": {e}"))?;
        if every < Duration::from_secs(1) {
            return Err(format!(
                "{text:?} is too short: backups at most once a second"
            ));
        }
        Ok(Schedule::Every(every))
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Schedule, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Schedule {
    /// When the next backup is due: `every` after the newest backup, and never sooner than
    /// [`FIRST_BACKUP_DELAY`] (or `every`, if shorter) after `started`, so that a process that
    /// restarts often does not back up on every start. `None` when off.
    pub fn next_due(
        self,
        newest: Option<DateTime<Utc>>,
        started: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let Schedule::Every(every) = self else {
            return None;
        };
        let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        let first_delay = chrono::Duration::from_std(FIRST_BACKUP_DELAY).expect("small");
        let first = started + first_delay.min(every);
        let after_newest = newest.map(|n| {
            n.checked_add_signed(every)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
        Some(after_newest.map_or(first, |due| due.max(first)))
    }
}

/// The `[backup]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// How often `serve` takes a backup (default daily; `"off"` disables).
    pub every: Schedule,
    /// Days every backup is kept (1 to 35, default 7).
    pub retention_days: u32,
    /// Calendar weeks before the current one whose newest backup is also kept (default 4).
    pub weekly: u32,
    /// Where `pg_dump` and `pg_restore` are; default the newest
    /// `/usr/lib/postgresql/*/bin`, else `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// zstd level of SQLite snapshots and base backups (1 to 19, default 3).
    pub zstd_level: i32,
    /// What a scheduled backup of PostgreSQL is: `"dump"` (pg_dump, the default) or `"base"`
    /// (a base backup, for point-in-time recovery with the WAL archive).
    pub postgres: PgMethod,
}

/// How PostgreSQL is backed up on the schedule.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PgMethod {
    /// `pg_dump -Fc` of the database.
    #[default]
    Dump,
    /// `pg_basebackup` of the server.
    Base,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            every: Schedule::default(),
            retention_days: 7,
            weekly: 4,
            pg_bin_dir: None,
            zstd_level: 3,
            postgres: PgMethod::Dump,
        }
    }
}

impl BackupConfig {
    /// The retention policy, checked.
    pub fn retention(&self) -> Result<Retention> {
        Retention::new(self.retention_days, self.weekly)
    }

    /// Refuses settings that cannot work, before anything runs.
    pub fn check(&self) -> Result<()> {
        self.retention()?;
        if !(1..=19).contains(&self.zstd_level) {
            return Err(crate::BackupError::Config(format!(
                "zstd_level is {}: it must be 1 to 19",
                self.zstd_level
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_table_reads_durations_and_off() {
        let config: BackupConfig = toml_table("every = \"6h\"\nretention_days = 14\nweekly = 2\n");
        assert_eq!(config.every, Schedule::Every(Duration::from_secs(6 * 3600)));
        assert_eq!(config.retention().unwrap(), Retention::new(14, 2).unwrap());
        assert_eq!(
            toml_table::<BackupConfig>("every = \"off\"").every,
            Schedule::Off
        );
        assert_eq!(
            toml_table::<BackupConfig>("").every,
            Schedule::Every(Duration::from_secs(86_400))
        );
        for bad in ["every = \"often\"", "every = \"0s\"", "evry = \"1h\""] {
            assert!(toml::from_str::<BackupConfig>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<BackupConfig>("every = \"often\"").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let long = toml_table::<BackupConfig>("retention_days = 36");
        assert!(long.check().unwrap_err().to_string().contains("1 to 35"));
        BackupConfig::default().check().unwrap();
    }

    fn toml_table<T: serde::de::DeserializeOwned>(text: &str) -> T {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_next_backup_is_due_every_period_after_the_newest() {
        let daily = Schedule::default();
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let minutes = |m| start + chrono::Duration::minutes(m);
        // None yet: five minutes after the start.
        assert_eq!(daily.next_due(None, start), Some(minutes(5)));
        // The last one an hour before the start: a day after it.
        assert_eq!(
            daily.next_due(Some(minutes(-60)), start),
            Some(minutes(23 * 60))
        );
        // Overdue (the server was down): five minutes after the start.
        assert_eq!(
            daily.next_due(Some(minutes(-3 * 24 * 60)), start),
            Some(minutes(5))
        );
        // A short period waits only that long after the start.
        let often = Schedule::Every(Duration::from_secs(2));
        assert_eq!(
            often.next_due(None, start),
            Some(start + chrono::Duration::seconds(2))
        );
        assert_eq!(Schedule::Off.next_due(None, start), None);
    }
}
