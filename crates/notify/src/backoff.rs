//! When to try a failed delivery again: exponential backoff with full jitter (a uniformly random
//! delay between zero and the capped exponential), and how many attempts before a dead letter.

use std::time::Duration;

use serde::Deserialize;

/// How a failed delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last a delivery is a dead letter.
    pub max_attempts: u32,
    /// The cap of the first retry's delay, doubled for each retry after it.
    #[serde(with = "millis")]
    pub base: Duration,
    /// No delay is longer than this (SNS caps at an hour).
    #[serde(with = "millis")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_secs(10),
            max: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1 for the first), given `unit`, a random
    /// number in [0, 1); `None` when that was the last attempt.
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = attempt.saturating_sub(1).min(40);
        let cap = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        Some(cap.mul_f64(unit.clamp(0.0, 1.0)))
    }

    /// [`RetryPolicy::delay_after`] with a fresh random number.
    pub fn jittered_delay_after(&self, attempt: u32) -> Option<Duration> {
        self.delay_after(attempt, rand::random::<f64>())
    }
}

/// Durations as milliseconds in configuration files.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stop_after_the_last_attempt() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let top = |a| p.delay_after(a, 0.999_999).unwrap().as_secs_f64();
        assert!((top(1) - 1.0).abs() < 1e-3);
        assert!((top(2) - 2.0).abs() < 1e-3);
        assert!((top(3) - 4.0).abs() < 1e-3);
        assert!((top(4) - 5.0).abs() < 1e-3, "capped");
        assert_eq!(
            p.delay_after(5, 0.5),
            None,
            "the fifth attempt was the last"
        );
        assert_eq!(
            p.delay_after(1, 0.0),
            Some(Duration::ZERO),
            "full jitter starts at zero"
        );
    }

    #[test]
    fn jitter_spreads_delays_over_the_whole_range() {
        let p = RetryPolicy::default();
        let delays: Vec<f64> = (0..2000)
            .map(|_| p.jittered_delay_after(3).unwrap().as_secs_f64())
            .collect();
        let cap = 40.0;
        assert!(delays.iter().all(|d| (0.0..=cap).contains(d)));
        let low = delays.iter().filter(|d| **d < cap / 4.0).count();
        let high = delays.iter().filter(|d| **d > cap * 3.0 / 4.0).count();
        assert!(low > 300 && high > 300, "low {low}, high {high}");
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        };
        assert!(p.delay_after(1000, 0.5).unwrap() <= p.max);
    }
}
