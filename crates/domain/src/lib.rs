//! EcoCityHub's domain: the pure core every layer stands on.
//!
//! It owns the vocabulary of the platform — stations, the parameter catalogue and its units,
//! readings and their validation, the US EPA and European air-quality indices, and the
//! aggregation of raw readings into hourly or daily values with their coverage, and citizens'
//! reports with their states. Nothing here does I/O: the store persists these types, the API
//! speaks them, and both can be tested without the other.

pub mod aggregate;
pub mod aqi;
pub mod parameter;
pub mod reading;
pub mod report;
pub mod station;

pub use aggregate::{Aggregate, AggregateFn, Bucket, Interval};
pub use parameter::{Parameter, Unit};
pub use reading::{QualityFlag, Reading, ReadingError};
pub use report::{Categories, Category, ReportDraft, ReportError, ReportState};
pub use station::{GeoPoint, Station, StationError, StationId};
