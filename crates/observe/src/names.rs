//! Every metric EcoCityHub reports: its name, kind, unit, labels and help text, in one place.
//! [`describe_all`] hands the help texts to the installed recorder (Prometheus shows them as
//! `# HELP`); the recording helpers in [`crate::figures`] and the layers use these names only.

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The unit, as CloudWatch names it (EMF's `Unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Bytes,
    None,
}

impl Unit {
    pub const fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::None => "None",
        }
    }
}

/// One metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// The labels it carries.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, $unit:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: MetricDef = MetricDef {
                name: $name,
                kind: Kind::$kind,
                unit: Unit::$unit,
                labels: &[$($label),*],
                help: $help,
            };
        )*
        /// Every metric, in the order above.
        pub const ALL: &[MetricDef] = &[$($id),*];
    };
}

metrics! {
    HTTP_REQUESTS = "ecocityhub_http_requests_total", Counter, Count,
        ["method", "route", "status_class"],
        "HTTP requests answered, by route template (never the raw path) and status class (2xx, 4xx, 5xx).";
    HTTP_DURATION = "ecocityhub_http_request_duration_seconds", Histogram, Seconds,
        ["method", "route", "status_class"],
        "Time from a request's arrival to its response head, by route template and status class.";
    HTTP_IN_FLIGHT = "ecocityhub_http_requests_in_flight", Gauge, Count, [],
        "HTTP requests being handled now.";
    READINGS = "ecocityhub_readings_total", Counter, Count, ["outcome", "reason"],
        "Readings received by ingest: outcome accepted (reason \"\") or rejected with the reason.";
    INGEST_BATCHES = "ecocityhub_ingest_batches_total", Counter, Count, ["outcome"],
        "Ingest batches: stored, partial (some rows rejected) or refused.";
    ANOMALY_FLAGS = "ecocityhub_anomaly_flags_total", Counter, Count, ["kind"],
        "Readings the anomaly checks flagged as suspect, by kind of check.";
    QUEUE_DEPTH = "ecocityhub_queue_depth", Gauge, Count, ["queue"],
        "Items waiting in a queue (outbox, jobs).";
    QUEUE_OLDEST_AGE = "ecocityhub_queue_oldest_age_seconds", Gauge, Seconds, ["queue"],
        "Age of the oldest item waiting in a queue; 0 when it is empty.";
    QUEUE_DEAD_LETTERS = "ecocityhub_queue_dead_letters", Gauge, Count, ["queue"],
        "Items a queue gave up on (dead letters) and that no one has dealt with.";
    DELIVERIES = "ecocityhub_deliveries_total", Counter, Count, ["channel", "outcome"],
        "Notification deliveries by channel (email, webhook, push, sms) and outcome (delivered, failed, retried).";
    SIGN_INS = "ecocityhub_sign_ins_total", Counter, Count, ["outcome"],
        "Sign-in attempts by outcome (success, wrong_password, locked, throttled, federated).";
    LOCK_OUTS = "ecocityhub_lock_outs_total", Counter, Count, [],
        "Addresses locked out after too many wrong passwords.";
    CACHE_REQUESTS = "ecocityhub_cache_requests_total", Counter, Count, ["cache", "result"],
        "Cache look-ups by cache and result (hit, miss).";
    DB_POOL_CONNECTIONS = "ecocityhub_db_pool_connections", Gauge, Count, ["state"],
        "Database pool connections: open, idle and max.";
    MODEL_AGE = "ecocityhub_model_age_seconds", Gauge, Seconds, ["station", "parameter"],
        "Age of the serving model's training data end, per series (model freshness).";
    MODEL_SKILL = "ecocityhub_model_skill", Gauge, None, ["station", "parameter"],
        "Held-out skill of the serving model against the best baseline (1 - MAE/MAE_baseline).";
    STATIONS_SILENT = "ecocityhub_stations_silent", Gauge, Count, [],
        "Active stations that reported in the last 30 days but not within the silence threshold.";
    BACKUP_NEWEST_AGE = "ecocityhub_backup_newest_age_seconds", Gauge, Seconds, [],
        "Age of the newest database backup.";
    AUDIT_RECORDS = "ecocityhub_audit_records_total", Counter, Count, ["outcome"],
        "Audit records appended, by outcome of the audited action (success, error).";
    AUDIT_APPEND_FAILURES = "ecocityhub_audit_append_failures_total", Counter, Count, [],
        "Audit batches the store refused (their callers got an error).";
    PROCESS_RSS = "ecocityhub_process_resident_memory_bytes", Gauge, Bytes, [],
        "Resident set size of the process.";
    PROCESS_UPTIME = "ecocityhub_process_uptime_seconds", Gauge, Seconds, [],
        "Seconds since the process installed its metrics.";
    /// Written once a minute by the rollup writer: a period with none was not observed.
    HEARTBEAT = "ecocityhub_observe_flushes_total", Counter, Count, [],
        "Minutes the rollup writer flushed (one per minute per process).";
}

/// Hands every help text and unit to the installed recorder.
pub fn describe_all() {
    for m in ALL {
        let unit = match m.unit {
            Unit::Count => Some(metrics::Unit::Count),
            Unit::Seconds => Some(metrics::Unit::Seconds),
            Unit::Bytes => Some(metrics::Unit::Bytes),
            Unit::None => None,
        };
        match (m.kind, unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The definition of a metric name, if it is one of ours.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_prometheus_safe() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("ecocityhub_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert!(!m.help.is_empty());
        }
        assert_eq!(find("ecocityhub_readings_total"), Some(&READINGS));
    }
}
