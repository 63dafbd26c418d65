//! Anomaly checks on incoming readings. Each reading is judged against what came before it
//! (never after: a reading is scored as it arrives) and, where there are any, against other
//! stations nearby at the same time. A flagged reading is kept and marked suspect, never
//! dropped.
//!
//! - **spike**: far above the recent level — the value is more than `spike_ratio` times the
//!   median of the previous day's readings *and* more than `spike_z` robust deviations (MAD)
//!   away from it;
//! - **jump**: a change from the previous reading larger than `jump_z` times the typical
//!   hour-to-hour change of the previous day, larger than `min_jump` in absolute terms, and by a
//!   factor of more than `jump_ratio` (a drop-out to zero; a front clearing the air is fast,
//!   but not that fast);
//! - **stuck**: the same value `stuck_run` times in a row in a series that normally varies;
//! - **neighbours**: a value `neighbour_ratio` times above or below the median of at least three
//!   stations within the radius, at the same time.

use serde::{Deserialize, Serialize};

/// What made a reading suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Spike,
    Jump,
    Stuck,
    Neighbours,
}

impl AnomalyKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Spike => "spike",
            AnomalyKind::Jump => "jump",
            AnomalyKind::Stuck => "stuck",
            AnomalyKind::Neighbours => "neighbours",
        }
    }
}

/// A suspect reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub ts: i64,
    pub value: f64,
    pub kind: AnomalyKind,
    /// How far past the threshold (1.0 = at it).
    pub score: f64,
    pub detail: String,
}

/// Thresholds. The defaults are set from what the checks are for, not fitted to a data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyConfig {
    /// Readings of history each check looks back on.
    pub window: usize,
    pub spike_ratio: f64,
    pub spike_z: f64,
    pub jump_z: f64,
    pub min_jump: f64,
    pub jump_ratio: f64,
    pub stuck_run: usize,
    pub neighbour_ratio: f64,
    pub min_neighbours: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            window: 24,
            spike_ratio: 4.0,
            spike_z: 10.0,
            jump_z: 12.0,
            min_jump: 50.0,
            jump_ratio: 8.0,
            stuck_run: 8,
            neighbour_ratio: 4.0,
            min_neighbours: 3,
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn mad(values: &[f64], centre: f64) -> f64 {
    let mut dev: Vec<f64> = values.iter().map(|v| (v - centre).abs()).collect();
    median(&mut dev)
}

/// Checks the readings of one series from index `first_new` on, each against the readings
/// before it. `points` are time-ordered `(ts, value)`. The level and spread come from medians,
/// which a few bad readings do not move; the step a jump is measured from skips a reading
/// found suspect just before, so the return from a spike is not a "jump".
pub fn check_series(
    points: &[(i64, f64)],
    first_new: usize,
    config: &AnomalyConfig,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut suspect = vec![false; points.len()];
    for i in first_new..points.len() {
        let (ts, value) = points[i];
        // The last reading not found suspect, among the three before this one.
        let previous = (i.saturating_sub(3)..i)
            .rev()
            .find(|&j| !suspect[j])
            .or(i.checked_sub(1))
            .map(|j| points[j].1);
        if let Some(a) = check_one(ts, value, previous, &points[..=i], config) {
            suspect[i] = true;
            out.push(a);
        }
    }
    out
}

/// `upto`: every reading up to and including this one.
fn check_one(
    ts: i64,
    value: f64,
    previous: Option<f64>,
    upto: &[(i64, f64)],
    config: &AnomalyConfig,
) -> Option<Anomaly> {
    // Stuck: the same value `stuck_run` times in a row, in a series that otherwise varies.
    let run = upto.iter().rev().take_while(|(_, v)| *v == value).count();
    if run >= config.stuck_run {
        let before = &upto[..upto.len() - run];
        let varies = before
            .iter()
            .rev()
            .take(config.window)
            .any(|(_, v)| *v != value);
        if varies {
            return Some(Anomaly {
                ts,
                value,
                kind: AnomalyKind::Stuck,
                score: run as f64 / config.stuck_run as f64,
                detail: format!("the same value {value} {run} times in a row"),
            });
        }
    }
    let before = &upto[..upto.len() - 1];
    let past = &before[before.len().saturating_sub(config.window)..];
    if past.len() < config.window / 2 {
        return None;
    }
    let mut values: Vec<f64> = past.iter().map(|p| p.1).collect();
    let centre = median(&mut values);
    let spread = mad(&values, centre).max(1.0);
    let z = (value - centre) / (1.4826 * spread);
    if value > config.spike_ratio * centre.max(1.0) && z > config.spike_z {
        return Some(Anomaly {
            ts,
            value,
            kind: AnomalyKind::Spike,
            score: (z / config.spike_z).min(value / (config.spike_ratio * centre.max(1.0))),
            detail: format!(
                "{value:.1} against a median of {centre:.1} over the previous {} readings",
                past.len()
            ),
        });
    }
    let previous = previous?;
    let mut steps: Vec<f64> = past.windows(2).map(|w| (w[1].1 - w[0].1).abs()).collect();
    let typical = median(&mut steps).max(1.0);
    let change = (value - previous).abs();
    let factor = (value + 1.0).max(previous + 1.0) / (value + 1.0).min(previous + 1.0);
    if change > config.min_jump && change > config.jump_z * typical && factor > config.jump_ratio {
        return Some(Anomaly {
            ts,
            value,
            kind: AnomalyKind::Jump,
            score: (change / (config.jump_z * typical)).min(change / config.min_jump),
            detail: format!(
                "changed by {change:.1} since the previous reading; a typical change is {typical:.1}"
            ),
        });
    }
    None
}

/// Checks one reading against other stations' readings of the same time.
pub fn check_neighbours(
    ts: i64,
    value: f64,
    neighbours: &[f64],
    config: &AnomalyConfig,
) -> Option<Anomaly> {
    if neighbours.len() < config.min_neighbours {
        return None;
    }
    let mut values = neighbours.to_vec();
    let centre = median(&mut values);
    let ratio = (value + 1.0) / (centre + 1.0);
    let off = ratio.max(1.0 / ratio);
    (off > config.neighbour_ratio).then(|| Anomaly {
        ts,
        value,
        kind: AnomalyKind::Neighbours,
        score: off / config.neighbour_ratio,
        detail: format!(
            "{value:.1} against a median of {centre:.1} at {} stations nearby",
            neighbours.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hourly(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 3600, *v))
            .collect()
    }

    fn wavy(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 30.0 + 10.0 * ((i % 24) as f64 / 4.0).sin() + (i % 7) as f64)
            .collect()
    }

    #[test]
    fn a_spike_is_flagged_and_ordinary_days_are_not() {
        let mut v = wavy(72);
        assert!(check_series(&hourly(&v), 24, &AnomalyConfig::default()).is_empty());
        v[50] = 400.0;
        let found = check_series(&hourly(&v), 24, &AnomalyConfig::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].ts, found[0].kind),
            (50 * 3600, AnomalyKind::Spike)
        );
    }

    #[test]
    fn a_stuck_sensor_is_flagged_from_the_run_length_on() {
        let mut v = wavy(72);
        for x in v.iter_mut().skip(40).take(12) {
            *x = 33.0;
        }
        let found = check_series(&hourly(&v), 24, &AnomalyConfig::default());
        let stuck: Vec<i64> = found
            .iter()
            .filter(|a| a.kind == AnomalyKind::Stuck)
            .map(|a| a.ts / 3600)
            .collect();
        assert_eq!(stuck, (47..52).collect::<Vec<_>>());
        // A series that never varies (a constant test signal) is not "stuck".
        assert!(check_series(&hourly(&[5.0; 48]), 24, &AnomalyConfig::default()).is_empty());
    }

    #[test]
    fn a_drop_to_near_zero_is_a_jump() {
        let mut v: Vec<f64> = (0..48).map(|i| 150.0 + (i % 5) as f64).collect();
        v[40] = 2.0;
        let found = check_series(&hourly(&v), 24, &AnomalyConfig::default());
        assert_eq!(found[0].kind, AnomalyKind::Jump);
        assert_eq!(found[0].ts, 40 * 3600);
    }

    #[test]
    fn neighbours_need_a_quorum_and_a_big_difference() {
        let c = AnomalyConfig::default();
        assert!(check_neighbours(0, 100.0, &[20.0, 22.0], &c).is_none());
        assert!(check_neighbours(0, 30.0, &[20.0, 22.0, 25.0], &c).is_none());
        let a = check_neighbours(0, 100.0, &[20.0, 22.0, 25.0], &c).unwrap();
        assert_eq!(a.kind, AnomalyKind::Neighbours);
        assert!(check_neighbours(0, 2.0, &[20.0, 22.0, 25.0], &c).is_some());
    }
}
