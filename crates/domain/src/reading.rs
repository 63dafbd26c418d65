//! Readings: one value of one parameter at one station at one UTC instant, with a quality flag.
//! `IncomingReading::validate` is the single gate every reading passes before it is stored,
//! whether it arrives over HTTP or from an import.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::parameter::{Parameter, Unit, UnitError};
use crate::station::StationId;

/// How far in the future a reading's timestamp may lie (clock skew of a device).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(10);

/// The quality of a reading, as its device or our checks judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum QualityFlag {
    /// Nothing known against it.
    #[default]
    Valid,
    /// Plausible but doubtful (device warning, anomaly detector); kept and shown, marked.
    Suspect,
    /// Known bad (calibration, maintenance); kept for the record, left out of averages and indices.
    Invalid,
}

impl QualityFlag {
    /// Whether the reading counts towards averages, indices, trends and forecasts: only valid
    /// ones do. Suspect and invalid readings stay stored and shown, marked, until an operator
    /// confirms them valid.
    pub const fn counts(self) -> bool {
        matches!(self, QualityFlag::Valid)
    }

    pub const fn as_i16(self) -> i16 {
        match self {
            QualityFlag::Valid => 0,
            QualityFlag::Suspect => 1,
            QualityFlag::Invalid => 2,
        }
    }

    pub const fn from_i16(v: i16) -> Self {
        match v {
            0 => QualityFlag::Valid,
            1 => QualityFlag::Suspect,
            _ => QualityFlag::Invalid,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            QualityFlag::Valid => "valid",
            QualityFlag::Suspect => "suspect",
            QualityFlag::Invalid => "invalid",
        }
    }
}

impl std::str::FromStr for QualityFlag {
    type Err = String;

    /// `valid`, `suspect` or `invalid`, as clients write it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "valid" => Ok(QualityFlag::Valid),
            "suspect" => Ok(QualityFlag::Suspect),
            "invalid" => Ok(QualityFlag::Invalid),
            other => Err(format!(
                "flag {other:?} is not one of valid, suspect, invalid"
            )),
        }
    }
}

/// A stored reading; `value` is in the parameter's canonical unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reading {
    pub station: StationId,
    pub parameter: Parameter,
    pub time: DateTime<Utc>,
    pub value: f64,
    #[serde(default)]
    pub flag: QualityFlag,
}

/// A reading as a client or a file gives it: not yet checked, possibly in another unit.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingReading {
    pub station: StationId,
    pub parameter: Parameter,
    pub time: DateTime<Utc>,
    pub value: f64,
    /// `None` means the parameter's canonical unit.
    pub unit: Option<Unit>,
    pub flag: QualityFlag,
}

/// Why a reading is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadingError {
    #[error("value is not a finite number")]
    NotFinite,
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(
        "{parameter} value {value} {unit} is impossible: it must lie within {min}…{max} {unit}"
    )]
    OutOfRange {
        parameter: Parameter,
        value: f64,
        min: f64,
        max: f64,
        unit: &'static str,
    },
    #[error("time {time} is more than 10 minutes in the future (server time {now})")]
    InFuture {
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("time {0} is before 1970")]
    TooOld(DateTime<Utc>),
}

impl IncomingReading {
    /// Converts to the canonical unit and checks that the value is physically possible and the
    /// time not in the future. `now` is passed in so that this stays pure and testable.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Reading, ReadingError> {
        if !self.value.is_finite() {
            return Err(ReadingError::NotFinite);
        }
        let value = match self.unit {
            Some(unit) => self.parameter.to_canonical(self.value, unit)?,
            None => self.value,
        };
        let (min, max) = self.parameter.valid_range();
        if !(min..=max).contains(&value) {
            return Err(ReadingError::OutOfRange {
                parameter: self.parameter,
                value,
                min,
                max,
                unit: self.parameter.canonical_unit().symbol(),
            });
        }
        if self.time > now + MAX_CLOCK_SKEW {
            return Err(ReadingError::InFuture {
                time: self.time,
                now,
            });
        }
        if self.time.timestamp() < 0 {
            return Err(ReadingError::TooOld(self.time));
        }
        Ok(Reading {
            station: self.station,
            parameter: self.parameter,
            time: self.time,
            value,
            flag: self.flag,
        })
    }
}

/// Parses a timestamp as RFC 3339 (`2004-12-31T23:00:00Z`, with offset), as a date-time without
/// offset taken as UTC, or as a plain date (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!(
        "time {s:?} is not an ISO-8601 timestamp such as 2024-05-01T13:00:00Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn incoming(parameter: Parameter, value: f64, unit: Option<Unit>) -> IncomingReading {
        IncomingReading {
            station: StationId::parse("s1").unwrap(),
            parameter,
            time: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            value,
            unit,
            flag: QualityFlag::Valid,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn valid_readings_are_converted_to_the_canonical_unit() {
        let r = incoming(Parameter::No2, 10.0, Some(Unit::Ppb))
            .validate(now())
            .unwrap();
        assert!((r.value - 18.816).abs() < 0.01);
        let r = incoming(Parameter::Pm25, 12.5, None)
            .validate(now())
            .unwrap();
        assert_eq!(r.value, 12.5);
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(matches!(
            incoming(Parameter::Pm25, -1.0, None).validate(now()),
            Err(ReadingError::OutOfRange { .. })
        ));
        assert!(matches!(
            incoming(Parameter::Relativehumidity, 100.1, None).validate(now()),
            Err(ReadingError::OutOfRange { .. })
        ));
        assert!(incoming(Parameter::Relativehumidity, 100.0, None)
            .validate(now())
            .is_ok());
        assert_eq!(
            incoming(Parameter::O3, f64::NAN, None).validate(now()),
            Err(ReadingError::NotFinite)
        );
        assert!(matches!(
            incoming(Parameter::Pm10, 1.0, Some(Unit::Celsius)).validate(now()),
            Err(ReadingError::Unit(_))
        ));
    }

    #[test]
    fn future_timestamps_beyond_ten_minutes_are_refused() {
        let mut r = incoming(Parameter::Pm25, 1.0, None);
        r.time = now() + Duration::minutes(10);
        assert!(r.clone().validate(now()).is_ok());
        r.time = now() + Duration::minutes(11);
        let err = r.validate(now()).unwrap_err();
        assert!(err
            .to_string()
            .contains("more than 10 minutes in the future"));
    }

    #[test]
    fn times_parse_in_the_usual_shapes() {
        let t = Utc.with_ymd_and_hms(2004, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(parse_time("2004-12-31T23:00:00Z").unwrap(), t);
        assert_eq!(parse_time("2005-01-01T00:00:00+01:00").unwrap(), t);
        assert_eq!(parse_time("2004-12-31 23:00:00").unwrap(), t);
        assert_eq!(parse_time("2004-12-31").unwrap(), t - Duration::hours(23));
        assert!(parse_time("yesterday").is_err());
    }
}
