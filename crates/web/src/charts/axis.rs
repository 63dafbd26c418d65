//! The charts' axes: time ticks on whole hours, days, weeks or months (UTC) whose labels name
//! the day and the year where a reader needs them, and value axes fitted to the data (a wind
//! direction on compass points).

use chrono::{DateTime, Datelike, Utc};

const M: i64 = 60;
const H: i64 = 3_600;
const D: i64 = 86_400;

/// Tick positions on a time axis: whole minutes, hours, days, weeks (Mondays) or months (UTC),
/// at most about `max`.
pub fn time_ticks(t0: i64, t1: i64, max: i64) -> Vec<i64> {
    let span = (t1 - t0).max(1);
    let step = [
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
        D,
        2 * D,
        7 * D,
        14 * D,
        30 * D,
        61 * D,
    ]
    .into_iter()
    .find(|s| span / s <= max)
    .unwrap_or(91 * D);
    if step >= 30 * D {
        return month_ticks(t0, t1, (step / (30 * D)) as u32);
    }
    // Weeks start on Mondays (1970-01-01 was a Thursday).
    let offset = if step == 7 * D || step == 14 * D {
        4 * D
    } else {
        0
    };
    let first = (t0 - offset).div_euclid(step) * step + offset;
    let first = if first < t0 { first + step } else { first };
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= t1)
        .collect()
}

/// The first of every `every`-th calendar month in `t0..=t1`.
fn month_ticks(t0: i64, t1: i64, every: u32) -> Vec<i64> {
    let mut out = Vec::new();
    let start = date(t0).date_naive();
    let mut m = chrono::NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or_default();
    while let Some(t) = m.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()) {
        if t > t1 {
            break;
        }
        if t >= t0 && m.month0().is_multiple_of(every.max(1)) {
            out.push(t);
        }
        m = m
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(chrono::NaiveDate::MAX);
    }
    out
}

fn date(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

/// A tick's label: the time, day or month, and under it (`context`) the day or year it falls
/// in where the reader needs that.
#[derive(Debug, Clone, PartialEq)]
pub struct TickLabel {
    pub t: i64,
    pub main: String,
    pub context: Option<String>,
}

/// What a tick's main label says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Grain {
    Time,
    Day,
    Month,
}

/// Whether the axis must name the year: the range crosses one, or is not in `current_year`.
pub fn shows_year(t0: i64, t1: i64, current_year: i32) -> bool {
    let (y0, y1) = (date(t0).year(), date(t1).year());
    y0 != y1 || y0 != current_year
}

/// The labels of [`time_ticks`]`(t0, t1, max)`. Times name their day where the day changes
/// (and at the first tick, unless the second names its own); days and months name their year
/// at the first tick and where it changes when [`shows_year`].
pub fn time_labels(t0: i64, t1: i64, max: i64, current_year: i32) -> Vec<TickLabel> {
    let ticks = time_ticks(t0, t1, max);
    let step = match ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => t1 - t0,
    };
    let grain = if step < D {
        Grain::Time
    } else if step < 28 * D {
        Grain::Day
    } else {
        Grain::Month
    };
    let year = shows_year(t0, t1, current_year) || grain == Grain::Month;
    let changes: Vec<bool> = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| i > 0 && changed(grain, ticks[i - 1], *t))
        .collect();
    ticks
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            // The first tick names its year; its day too, unless the next tick names its own
            // (two dates side by side would not fit).
            let next_names_day = grain == Grain::Time && changes.get(1).copied().unwrap_or(false);
            let first = i == 0 && !next_names_day;
            TickLabel {
                t,
                main: main_label(grain, t),
                context: (first || changes[i])
                    .then(|| context_label(grain, t, year))
                    .flatten(),
            }
        })
        .collect()
}

fn changed(grain: Grain, before: i64, t: i64) -> bool {
    match grain {
        Grain::Time => date(before).date_naive() != date(t).date_naive(),
        Grain::Day | Grain::Month => date(before).year() != date(t).year(),
    }
}

fn main_label(grain: Grain, t: i64) -> String {
    let format = match grain {
        Grain::Time => "%H:%M",
        Grain::Day => "%-d %b",
        Grain::Month => "%b",
    };
    date(t).format(format).to_string()
}

fn context_label(grain: Grain, t: i64, year: bool) -> Option<String> {
    match (grain, year) {
        (Grain::Time, true) => Some(date(t).format("%-d %b %Y").to_string()),
        (Grain::Time, false) => Some(date(t).format("%-d %b").to_string()),
        (_, true) => Some(date(t).format("%Y").to_string()),
        (_, false) => None,
    }
}

/// A value axis: its range and its labelled ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueAxis {
    pub v0: f64,
    pub v1: f64,
    pub ticks: Vec<(f64, String)>,
}

/// How far beyond the data (as a share of the data's span) a threshold may lie and still be
/// drawn: the axis stretches to show it.
pub const NEAR: f64 = 0.25;

/// A "nice" step (1, 2, 2.5 or 5 × 10ⁿ) of about `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0]
        .into_iter()
        .find(|n| norm <= *n * 1.000_001)
        .unwrap_or(10.0);
    nice * magnitude
}

/// Decimals a tick label needs at `step`.
fn decimals(step: f64) -> usize {
    let mut d = 0;
    while d < 6
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-6
    {
        d += 1;
    }
    d
}

fn tick_text(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".into()
    } else {
        s
    }
}

/// The data's range, stretched to zero when zero is near (a non-negative series whose minimum
/// is at most half its maximum) and to the thresholds just beyond it (within [`NEAR`]).
fn stretch(data_min: f64, data_max: f64, thresholds: &[f64]) -> (f64, f64) {
    let mut lo = if data_min >= 0.0 && data_min <= data_max / 2.0 {
        0.0
    } else {
        data_min
    };
    let mut hi = data_max;
    let reach = (hi - lo).max(hi.abs() * 0.1).max(1e-9) * NEAR;
    if let Some(t) = thresholds
        .iter()
        .copied()
        .filter(|t| *t > hi && *t <= hi + reach)
        .reduce(f64::max)
    {
        hi = t;
    }
    if let Some(t) = thresholds
        .iter()
        .copied()
        .filter(|t| *t < lo && *t >= lo - reach)
        .reduce(f64::min)
    {
        lo = t;
    }
    if hi - lo < 1e-9 {
        let pad = (hi.abs() * 0.1).max(1.0);
        lo = if data_min >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        };
        hi += pad;
    }
    (lo, hi)
}

/// An axis fitted to values in `data_min..=data_max` (see [`stretch`]), on 4–6 nice ticks;
/// the top tick carries the unit.
pub fn fitted(data_min: f64, data_max: f64, thresholds: &[f64], unit: &str) -> ValueAxis {
    let (lo, hi) = stretch(data_min, data_max, thresholds);
    let step = nice_step((hi - lo) / 4.0);
    let v0 = (lo / step + 1e-9).floor() * step;
    let v1 = (hi / step - 1e-9).ceil() * step;
    let v1 = if v1 <= v0 { v0 + step } else { v1 };
    let d = decimals(step);
    let n = ((v1 - v0) / step).round() as usize;
    let ticks = (0..=n)
        .map(|i| {
            let v = v0 + i as f64 * step;
            let text = tick_text(v, d);
            (
                v,
                if i == n {
                    format!("{text} {unit}")
                } else {
                    text
                },
            )
        })
        .collect();
    ValueAxis { v0, v1, ticks }
}

/// The axis of a wind direction: 0–360° on the four cardinal points.
pub fn compass() -> ValueAxis {
    ValueAxis {
        v0: 0.0,
        v1: 360.0,
        ticks: [
            (0.0, "N"),
            (90.0, "E"),
            (180.0, "S"),
            (270.0, "W"),
            (360.0, "N"),
        ]
        .into_iter()
        .map(|(v, s)| (v, s.to_string()))
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    /// 2023-11-14 22:15:23 UTC.
    const T0: i64 = 1_700_000_123;

    #[test]
    fn time_ticks_fall_on_whole_hours_days_weeks_and_months() {
        let hours = time_ticks(T0, T0 + DAY, 8);
        assert!(hours.len() <= 8 && hours.len() >= 4, "{hours:?}");
        assert!(hours.iter().all(|t| t % (3 * 3_600) == 0));
        assert!(time_ticks(T0, T0 + DAY, 4).len() <= 4);
        let week = time_ticks(T0, T0 + 7 * DAY, 8);
        assert!(week.iter().all(|t| t % DAY == 0), "{week:?}");
        let hour = time_ticks(T0, T0 + 3_600, 8);
        assert!(
            hour.len() >= 4 && hour.iter().all(|t| t % 600 == 0),
            "{hour:?}"
        );
        for max in [4, 8] {
            let year = time_ticks(T0, T0 + 365 * DAY, max);
            assert!(year.len() as i64 <= max, "{year:?}");
            for t in &year {
                assert_eq!(date(*t).format("%d %H:%M").to_string(), "01 00:00");
            }
        }
        let two_months = time_ticks(T0, T0 + 60 * DAY, 8);
        assert!(
            two_months.iter().all(|t| (t - 4 * DAY) % (7 * DAY) == 0),
            "Mondays"
        );
    }

    #[test]
    fn labels_name_the_year_when_the_range_is_not_this_year_or_crosses_one() {
        // A week of 2023 seen in 2023: days without a year.
        let week = time_labels(T0, T0 + 7 * DAY, 8, 2023);
        assert_eq!(week[0].main, "15 Nov");
        assert!(week.iter().all(|l| l.context.is_none()), "{week:?}");
        // The same week seen later: the year under the first tick.
        let week = time_labels(T0, T0 + 7 * DAY, 8, 2026);
        assert_eq!(week[0].context.as_deref(), Some("2023"));
        assert!(week[1..].iter().all(|l| l.context.is_none()));
        // Across New Year: the year where it changes.
        let dec_28 = 1_703_721_600; // 2023-12-28 00:00 UTC
        let new_year = time_labels(dec_28, dec_28 + 7 * DAY, 8, 2024);
        let jan = new_year.iter().find(|l| l.main == "1 Jan").unwrap();
        assert_eq!(jan.context.as_deref(), Some("2024"));
        assert_eq!(new_year[0].context.as_deref(), Some("2023"));
        // A day: times, with the date (and year) where the day changes.
        let day = time_labels(T0, T0 + DAY, 8, 2023);
        assert_eq!(day[0].main, "00:00");
        assert_eq!(day[0].context.as_deref(), Some("15 Nov"));
        let old = time_labels(T0, T0 + DAY, 8, 2030);
        assert_eq!(old[0].context.as_deref(), Some("15 Nov 2023"));
        // A year: months, with the year at the first tick and at January.
        let year = time_labels(T0, T0 + 365 * DAY, 8, 2024);
        assert_eq!(
            (year[0].main.as_str(), year[0].context.as_deref()),
            ("Jan", Some("2024"))
        );
        let narrow = time_labels(T0 - 60 * DAY, T0 + 305 * DAY, 4, 2024);
        assert_eq!(narrow[0].context.as_deref(), Some("2023"), "{narrow:?}");
        let jan = narrow.iter().find(|l| l.main == "Jan").unwrap();
        assert_eq!(jan.context.as_deref(), Some("2024"));
    }

    #[test]
    fn value_axes_fit_the_data_and_reach_only_near_thresholds() {
        // Pressure: nowhere near zero.
        let p = fitted(1003.2, 1021.7, &[], "hPa");
        assert!(p.v0 >= 995.0 && p.v0 <= 1003.2, "{p:?}");
        assert!(p.v1 >= 1021.7 && p.v1 <= 1030.0, "{p:?}");
        assert_eq!(p.ticks.last().unwrap().1, format!("{} hPa", p.v1));
        assert!((4..=7).contains(&p.ticks.len()), "{p:?}");
        // Temperature below zero.
        let t = fitted(-4.5, 6.0, &[], "°C");
        assert!(t.v0 <= -4.5 && t.v0 > -10.0, "{t:?}");
        // A pollutant from zero; a threshold just above the data is brought in, one far
        // above is not.
        let pm = fitted(3.0, 30.0, &[9.0, 35.4, 55.4], "µg/m³");
        assert_eq!(pm.v0, 0.0);
        assert!(pm.v1 >= 35.4 && pm.v1 < 55.4, "{pm:?}");
        let clean = fitted(1.0, 5.0, &[9.0, 35.4], "µg/m³");
        assert!(clean.v1 < 9.0, "{clean:?}");
        // A flat series still has a range.
        let flat = fitted(20.0, 20.0, &[], "µg/m³");
        assert!(flat.v0 < 20.0 && flat.v1 > 20.0, "{flat:?}");
        assert_eq!(tick_text(-0.0, 1), "0");
        assert_eq!(decimals(2.5), 1);
        assert_eq!(decimals(0.05), 2);
    }
}
