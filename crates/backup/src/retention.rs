//! Which backups to keep, as RDS keeps automated snapshots: every backup younger than the
//! retention period (1 to 35 days, default 7), plus the newest backup of each of the last few
//! calendar weeks before the current one (ISO weeks, Monday 00:00 UTC; default 4), plus always
//! the newest backup of all, so that a server that stopped taking backups never loses its last.
//!
//! Calendar weeks rather than sliding ones: once a week is over its newest backup is fixed, so
//! pruning every day never deletes the copy it will want to keep tomorrow.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};

use crate::manifest::BackupId;
use crate::{BackupError, Result};

/// The longest retention period RDS allows, in days.
pub const MAX_DAYS: u32 = 35;
/// The most weekly copies kept (ten years).
pub const MAX_WEEKLY: u32 = 520;

/// How long backups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
    weekly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { days: 7, weekly: 4 }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Younger than the retention period.
    Recent,
    /// The newest of a calendar week.
    Weekly,
    /// The newest backup of all.
    Newest,
}

/// What a retention policy does to a set of backups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Kept, newest first, with the first reason that keeps each.
    pub keep: Vec<(BackupId, Reason)>,
    /// To delete, newest first.
    pub delete: Vec<BackupId>,
}

impl Retention {
    /// Keep `days` days (1 to 35) and `weekly` weekly copies (0 to 520).
    pub fn new(days: u32, weekly: u32) -> Result<Retention> {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(BackupError::Config(format!(
                "retention_days is {days}: it must be 1 to {MAX_DAYS} days, as on RDS"
            )));
        }
        if weekly > MAX_WEEKLY {
            return Err(BackupError::Config(format!(
                "weekly is {weekly}: at most {MAX_WEEKLY} weekly copies are kept"
            )));
        }
        Ok(Retention { days, weekly })
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    pub fn weekly(&self) -> u32 {
        self.weekly
    }

    /// Sorts `backups` (id, time taken) into kept and deleted at `now`.
    pub fn plan(&self, backups: &[(BackupId, DateTime<Utc>)], now: DateTime<Utc>) -> Plan {
        let mut sorted = backups.to_vec();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let weeks = self.weekly_windows(now);
        let mut week_taken = vec![false; weeks.len()];
        let mut plan = Plan::default();
        for (i, (id, at)) in sorted.into_iter().enumerate() {
            // Newest first: the first backup seen in a week is that week's newest.
            let week = weeks.iter().position(|(s, e)| *s <= at && at < *e);
            let newest_of_week = week.is_some_and(|w| !std::mem::replace(&mut week_taken[w], true));
            if now - at < Duration::days(self.days.into()) {
                plan.keep.push((id, Reason::Recent));
            } else if newest_of_week {
                plan.keep.push((id, Reason::Weekly));
            } else if i == 0 {
                plan.keep.push((id, Reason::Newest));
            } else {
                plan.delete.push(id);
            }
        }
        plan
    }

    /// The calendar weeks whose newest backup is kept: `[start, end)`, the week before the
    /// current one first.
    fn weekly_windows(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let today = now.date_naive();
        let monday = today - Duration::days(today.weekday().num_days_from_monday().into());
        let this_week = monday.and_time(NaiveTime::MIN).and_utc();
        (1..=i64::from(self.weekly))
            .map(|k| {
                (
                    this_week - Duration::weeks(k),
                    this_week - Duration::weeks(k - 1),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        // January 2026: the 5th, 12th, 19th and 26th are Mondays.
        Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
    }

    fn ids(backups: &[(BackupId, DateTime<Utc>)], pick: &[usize]) -> Vec<BackupId> {
        pick.iter().map(|&i| backups[i].0.clone()).collect()
    }

    fn daily(from: u32, to: u32) -> Vec<(BackupId, DateTime<Utc>)> {
        (from..=to)
            .map(|d| (BackupId::new(at(d, 3)), at(d, 3)))
            .collect()
    }

    #[test]
    fn the_period_must_be_one_to_35_days() {
        assert!(Retention::new(0, 4).is_err());
        assert!(Retention::new(36, 4).is_err());
        assert!(Retention::new(1, 0).is_ok());
        assert!(Retention::new(35, 520).is_ok());
        let err = Retention::new(40, 4).unwrap_err().to_string();
        assert!(err.contains("1 to 35"), "{err}");
        assert_eq!(Retention::default(), Retention::new(7, 4).unwrap());
    }

    #[test]
    fn daily_backups_keep_a_week_and_the_newest_of_four_weeks_before() {
        // Daily backups at 03:00 from Thursday 1 January to Friday 30 January; pruned on
        // Friday 30 January at noon.
        let backups = daily(1, 30);
        let plan = Retention::default().plan(&backups, at(30, 12));
        let kept: Vec<BackupId> = plan.keep.iter().map(|(id, _)| id.clone()).collect();
        // The last 7 days (24th to 30th), and the newest of each of the four weeks before the
        // current one (from Monday the 26th): Sundays the 18th, 11th and 4th (the newest of
        // the week of the 19th, Sunday the 25th, is recent anyway).
        let mut want = ids(&backups, &[29, 28, 27, 26, 25, 24, 23, 17, 10, 3]);
        want.sort();
        want.reverse();
        assert_eq!(kept, want);
        assert!(plan.keep[..7].iter().all(|(_, r)| *r == Reason::Recent));
        assert!(plan.keep[7..].iter().all(|(_, r)| *r == Reason::Weekly));
        assert_eq!(plan.delete.len(), 30 - 10);
        assert!(
            plan.delete.contains(&backups[0].0),
            "the 1st of January goes"
        );
    }

    #[test]
    fn pruning_every_day_keeps_the_same_weekly_copies() {
        let retention = Retention::new(3, 2).unwrap();
        let mut kept: Vec<(BackupId, DateTime<Utc>)> = Vec::new();
        for day in 1..=30 {
            kept.push((BackupId::new(at(day, 3)), at(day, 3)));
            let plan = retention.plan(&kept, at(day, 4));
            kept.retain(|(id, _)| plan.keep.iter().any(|(k, _)| k == id));
        }
        let days: Vec<u32> = kept.iter().map(|(_, t)| t.day()).collect();
        // 28th to 30th are recent; Sunday 25th and Sunday 18th close the two weeks before.
        assert_eq!(days, vec![18, 25, 28, 29, 30]);
    }

    #[test]
    fn the_newest_backup_is_kept_however_old() {
        let backups = daily(1, 2);
        let plan = Retention::new(1, 0).unwrap().plan(&backups, at(30, 0));
        assert_eq!(plan.keep, vec![(backups[1].0.clone(), Reason::Newest)]);
        assert_eq!(plan.delete, vec![backups[0].0.clone()]);
        assert_eq!(Retention::default().plan(&[], at(30, 0)), Plan::default());
    }

    #[test]
    fn a_backup_from_a_clock_ahead_is_recent() {
        let backups = vec![(BackupId::new(at(31, 0)), at(31, 0))];
        let plan = Retention::new(1, 0).unwrap().plan(&backups, at(30, 0));
        assert_eq!(plan.keep[0].1, Reason::Recent);
    }
}
