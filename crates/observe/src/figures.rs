//! One function per figure the other layers report, so that names and labels stay as
//! [`crate::names`] defines them. Each is a few atomic operations on the installed recorder
//! (nothing happens without one).

use std::time::Duration;

use crate::names::*;

/// Readings of one ingest batch: how many were stored and, per reason, how many were rejected.
pub fn readings(accepted: u64, rejected_by_reason: &[(&str, u64)]) {
    if accepted > 0 {
        metrics::counter!(READINGS.name, "outcome" => "accepted", "reason" => "")
            .increment(accepted);
    }
    let mut rejected = 0;
    for (reason, n) in rejected_by_reason {
        if *n > 0 {
            rejected += n;
            metrics::counter!(READINGS.name, "outcome" => "rejected", "reason" => reason.to_string())
                .increment(*n);
        }
    }
    let outcome = match (accepted, rejected) {
        (0, _) => "refused",
        (_, 0) => "stored",
        _ => "partial",
    };
    metrics::counter!(INGEST_BATCHES.name, "outcome" => outcome).increment(1);
}

/// A reading flagged by an anomaly check of this kind (`spike`, `stuck`, `range`…).
pub fn anomaly_flagged(kind: &str, n: u64) {
    metrics::counter!(ANOMALY_FLAGS.name, "kind" => kind.to_string()).increment(n);
}

/// A queue's figures (`outbox`, `jobs`): items waiting, age of the oldest, dead letters.
pub fn queue(queue: &str, depth: u64, oldest_age: Option<Duration>, dead_letters: u64) {
    let q = queue.to_string();
    metrics::gauge!(QUEUE_DEPTH.name, "queue" => q.clone()).set(depth as f64);
    metrics::gauge!(QUEUE_OLDEST_AGE.name, "queue" => q.clone())
        .set(oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    metrics::gauge!(QUEUE_DEAD_LETTERS.name, "queue" => q).set(dead_letters as f64);
}

/// A notification delivery attempt: channel `email`, `webhook`, `push`, `sms`; outcome
/// `delivered`, `failed` or `retried`.
pub fn delivery(channel: &str, outcome: &str) {
    metrics::counter!(DELIVERIES.name, "channel" => channel.to_string(), "outcome" => outcome.to_string())
        .increment(1);
}

/// A sign-in attempt: `success`, `wrong_password`, `locked`, `throttled`, `federated`…
pub fn sign_in(outcome: &str) {
    metrics::counter!(SIGN_INS.name, "outcome" => outcome.to_string()).increment(1);
}

/// An address was locked out.
pub fn lock_out() {
    metrics::counter!(LOCK_OUTS.name).increment(1);
}

/// A cache look-up.
pub fn cache(cache: &str, hit: bool) {
    metrics::counter!(CACHE_REQUESTS.name, "cache" => cache.to_string(), "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// The database pool's figures.
pub fn db_pool(status: ecocityhub_store::observe::PoolStatus) {
    metrics::gauge!(DB_POOL_CONNECTIONS.name, "state" => "open").set(f64::from(status.size));
    metrics::gauge!(DB_POOL_CONNECTIONS.name, "state" => "idle").set(f64::from(status.idle));
    metrics::gauge!(DB_POOL_CONNECTIONS.name, "state" => "max").set(f64::from(status.max));
}

/// A serving model's freshness (age of the end of its training data) and held-out skill.
pub fn model(station: &str, parameter: &str, age: Duration, skill: Option<f64>) {
    let (s, p) = (station.to_string(), parameter.to_string());
    metrics::gauge!(MODEL_AGE.name, "station" => s.clone(), "parameter" => p.clone())
        .set(age.as_secs_f64());
    if let Some(skill) = skill {
        metrics::gauge!(MODEL_SKILL.name, "station" => s, "parameter" => p).set(skill);
    }
}

/// How many active stations are silent (see [`crate::stations::silent_stations`]).
pub fn stations_silent(n: u64) {
    metrics::gauge!(STATIONS_SILENT.name).set(n as f64);
}

/// The age of the newest backup.
pub fn backup_age(age: Duration) {
    metrics::gauge!(BACKUP_NEWEST_AGE.name).set(age.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Exposition, Telemetry};

    #[test]
    fn an_ingest_batch_counts_accepted_and_rejected_readings_by_reason() {
        let (t, r) = Telemetry::build(Exposition::Prometheus);
        metrics::with_local_recorder(&r, || {
            readings(8, &[("negative value", 2), ("unknown parameter", 0)]);
            readings(0, &[("future time", 3)]);
        });
        let text = t.prometheus().unwrap().render();
        assert!(
            text.contains(r#"ecocityhub_readings_total{outcome="accepted",reason=""} 8"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ecocityhub_readings_total{outcome="rejected",reason="negative value"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("unknown parameter"), "{text}");
        assert!(
            text.contains(r#"ecocityhub_ingest_batches_total{outcome="partial"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ecocityhub_ingest_batches_total{outcome="refused"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn queue_figures_are_gauges() {
        let (t, r) = Telemetry::build(Exposition::Prometheus);
        metrics::with_local_recorder(&r, || {
            queue("outbox", 4, Some(Duration::from_secs(90)), 1);
            queue("outbox", 3, None, 1);
        });
        let text = t.prometheus().unwrap().render();
        assert!(
            text.contains(r#"ecocityhub_queue_depth{queue="outbox"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ecocityhub_queue_oldest_age_seconds{queue="outbox"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ecocityhub_queue_dead_letters{queue="outbox"} 1"#),
            "{text}"
        );
    }
}
