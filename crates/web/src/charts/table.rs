//! A chart's data as a table (the pages put it in a `<details>` under the chart): what a
//! keyboard or screen-reader user reads instead of the picture. Times are UTC, as on the
//! charts' axes; a long series shows its newest [`MAX_ROWS`] rows and says so.

use super::{ForecastPoint, Line};

/// The most rows a table shows (the CSV link has them all).
pub const MAX_ROWS: usize = 1_000;

/// A table of a chart's data: the first column (the time) heads each row.
#[derive(Debug, Clone, Default)]
pub struct DataTable {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Said under the table (rows left out).
    pub note: Option<String>,
}

/// A time as the tables write it: `2008-12-31 23:00`.
pub fn time_cell(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

impl DataTable {
    /// Keeps the newest [`MAX_ROWS`] rows of `rows` and says how many there were.
    fn capped(caption: String, headers: Vec<String>, mut rows: Vec<Vec<String>>) -> DataTable {
        let total = rows.len();
        let note = (total > MAX_ROWS).then(|| {
            rows.drain(..total - MAX_ROWS);
            format!("The newest {MAX_ROWS} of {total} rows; the CSV download has them all.")
        });
        DataTable {
            caption,
            headers,
            rows,
            note,
        }
    }

    /// A series: time and value, each value written by `value`.
    pub fn series(
        caption: String,
        value_header: &str,
        points: &[(i64, f64)],
        value: impl Fn(f64) -> String,
    ) -> DataTable {
        let rows = points
            .iter()
            .map(|(t, v)| vec![time_cell(*t), value(*v)])
            .collect();
        DataTable::capped(
            caption,
            vec!["Time (UTC)".into(), value_header.to_string()],
            rows,
        )
    }

    /// Measurements then forecast hours, with the interval of each forecast.
    pub fn forecast(
        caption: String,
        measured: &[(i64, f64)],
        hours: &[ForecastPoint],
        value: impl Fn(f64) -> String,
    ) -> DataTable {
        let rows = measured
            .iter()
            .map(|(t, v)| vec![time_cell(*t), value(*v), String::new(), String::new()])
            .chain(hours.iter().map(|(t, v, lo, hi)| {
                vec![
                    time_cell(*t),
                    String::new(),
                    value(*v),
                    format!("{} – {}", value(*lo), value(*hi)),
                ]
            }))
            .collect();
        DataTable::capped(
            caption,
            ["Time (UTC)", "Measured", "Forecast", "Interval"]
                .map(String::from)
                .to_vec(),
            rows,
        )
    }

    /// Metric lines over the same periods: one column per line, empty where a period has no
    /// value.
    pub fn lines(caption: String, lines: &[Line], value: impl Fn(f64) -> String) -> DataTable {
        let Some(first) = lines.first() else {
            return DataTable::capped(caption, vec!["Time (UTC)".into()], Vec::new());
        };
        let rows = first
            .points
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                lines
                    .iter()
                    .any(|l| l.points.get(*i).is_some_and(|p| p.1.is_some()))
            })
            .map(|(i, (t, _))| {
                std::iter::once(time_cell(*t))
                    .chain(lines.iter().map(|l| {
                        l.points
                            .get(i)
                            .and_then(|p| p.1)
                            .map(&value)
                            .unwrap_or_default()
                    }))
                    .collect()
            })
            .collect();
        let headers = std::iter::once("Time (UTC)".to_string())
            .chain(lines.iter().map(|l| l.label.to_string()))
            .collect();
        DataTable::capped(caption, headers, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_the_charts_data_newest_rows_when_long() {
        let points: Vec<(i64, f64)> = (0..3).map(|h| (h * 3_600, h as f64)).collect();
        let t = DataTable::series("PM2.5".into(), "PM2.5 (µg/m³)", &points, |v| {
            format!("{v:.1}")
        });
        assert_eq!(t.headers, ["Time (UTC)", "PM2.5 (µg/m³)"]);
        assert_eq!(t.rows[2], ["1970-01-01 02:00", "2.0"]);
        assert!(t.note.is_none());
        let long: Vec<(i64, f64)> = (0..1_500).map(|h| (h * 3_600, 1.0)).collect();
        let t = DataTable::series("x".into(), "x", &long, |v| v.to_string());
        assert_eq!(t.rows.len(), MAX_ROWS);
        assert_eq!(t.rows[0][0], time_cell(500 * 3_600));
        assert!(t.note.unwrap().contains("1500"));
        let f = DataTable::forecast("f".into(), &points, &[(4 * 3_600, 5.0, 4.0, 6.0)], |v| {
            format!("{v:.0}")
        });
        assert_eq!(f.rows[3], ["1970-01-01 04:00", "", "5", "4 – 6"]);
        let a = [(0, Some(1.0)), (60, None), (120, None)];
        let b = [(0, None), (60, Some(2.0)), (120, None)];
        let lines = [
            Line {
                label: "a",
                points: &a,
            },
            Line {
                label: "b",
                points: &b,
            },
        ];
        let m = DataTable::lines("m".into(), &lines, |v| format!("{v}"));
        assert_eq!(m.headers, ["Time (UTC)", "a", "b"]);
        assert_eq!(m.rows.len(), 2, "the period without values is left out");
        assert_eq!(m.rows[1], ["1970-01-01 00:01", "", "2"]);
    }
}
