//! Riding through a database failover, as an RDS client does when its endpoint's DNS flips.
//!
//! sqlx connects to one host only, so a PostgreSQL failover looks to the store like a primary
//! that stops answering and, a few seconds later, an endpoint that answers again from the
//! promoted standby. [`classify`] tells such transient faults (a connection refused or reset,
//! SQLSTATE class 08, an administrator shutdown 57P01–57P03, a read-only server 25006, a pool
//! that could not hand out a connection in time; on SQLite a busy, locked, read-only or full
//! database) from real errors, and [`retry`] runs an idempotent call again with exponential
//! backoff and jitter for a bounded time. A call that still fails ends as
//! [`StoreError::Unavailable`], which the API answers with 503 and `Retry-After`, never 500.
//!
//! Each attempt on PostgreSQL also has a time limit ([`Resilience::attempt_timeout`]): a primary
//! that hangs, or a commit waiting for a synchronous standby that is gone (PostgreSQL then waits
//! forever, and `statement_timeout` does not bound that wait), fails the attempt instead of
//! hanging the request. Such a commit may still complete on the primary without having been
//! acknowledged; the retried writes are idempotent (readings are upserts), so a client's retry
//! stores it once.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::{Result, StoreError};

/// How long the store keeps trying through transient faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    /// How long a call is retried in all; after that it fails as unavailable.
    pub retry_for: Duration,
    /// The longest one attempt may take on PostgreSQL (SQLite is local and has its own
    /// `busy_timeout`). `None` waits as long as the database does.
    pub attempt_timeout: Option<Duration>,
    /// The longest a request waits for a free connection from the pool.
    pub acquire_timeout: Duration,
}

impl Default for Resilience {
    /// 10 s of retries with attempts of at most 10 s: within API Gateway's 29 s, and longer
    /// than the 0.3–3.4 s a promotion took on this machine.
    fn default() -> Self {
        Resilience {
            retry_for: Duration::from_secs(10),
            attempt_timeout: Some(Duration::from_secs(10)),
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a database error is transient — worth trying again on a new connection — or `None`
/// when it is a real error (a constraint, bad SQL, corrupt data).
pub fn classify(error: &sqlx::Error) -> Option<String> {
    use sqlx::Error as E;
    match error {
        E::Io(e) => Some(format!("the connection to the database failed: {e}")),
        E::Tls(e) => Some(format!("the TLS connection to the database failed: {e}")),
        E::PoolTimedOut => Some("no database connection could be had in time".into()),
        E::PoolClosed => Some("the database connection pool is closed".into()),
        E::WorkerCrashed => Some("the database connection's worker stopped".into()),
        E::Protocol(message) => Some(format!("the database connection broke: {message}")),
        E::Database(e) => {
            let code = e.code()?;
            let why = if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_transient(&code)
            } else {
                postgres_transient(&code)
            };
            why.map(|why| format!("{why} ({code}): {}", e.message()))
        }
        _ => None,
    }
}

/// SQLite result codes that a full disk, a read-only file system or a lock cause.
fn sqlite_transient(code: &str) -> Option<&'static str> {
    // Extended codes carry the primary code in their low byte.
    match code.parse::<i32>().ok()? & 0xff {
        5 => Some("the database is busy"),
        6 => Some("the database is locked"),
        8 => Some("the database is read-only"),
        10 => Some("the database could not read or write its file"),
        13 => Some("the disk holding the database is full"),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs that a failover, a restart or a full disk cause.
fn postgres_transient(code: &str) -> Option<&'static str> {
    match code {
        c if c.starts_with("08") => Some("the connection to the database failed"),
        "57P01" | "57P02" | "57P03" => Some("the database is shutting down or starting"),
        "25006" => Some("the database is read-only (a standby)"),
        "53100" => Some("the disk holding the database is full"),
        "53300" => Some("the database has too many connections"),
        "57014" => Some("the statement was cancelled (timeout)"),
        _ => None,
    }
}

/// Runs `attempt` until it succeeds, fails with a real error, or `policy.retry_for` has passed.
/// Only for idempotent calls: an attempt that timed out may have completed.
pub(crate) async fn retry<T, F, Fut>(
    policy: &Resilience,
    timed: bool,
    what: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 1u32;
    loop {
        let outcome = match policy.attempt_timeout.filter(|_| timed) {
            Some(limit) => tokio::time::timeout(limit, attempt())
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
            None => attempt().await,
        };
        let pause = jittered(backoff);
        match outcome {
            Err(e) if e.is_transient() && started.elapsed() + pause < policy.retry_for => {
                tracing::warn!(what, attempts, error = %e, "database unavailable; retrying");
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempts += 1;
            }
            Err(e) if e.is_transient() => {
                return Err(StoreError::Unavailable {
                    reason: format!("{e}; gave up {what} after {attempts} attempts"),
                })
            }
            other => return other,
        }
    }
}

fn timed_out(limit: Duration) -> StoreError {
    StoreError::Unavailable {
        reason: format!(
            "the database did not answer within {} s",
            limit.as_secs_f64()
        ),
    }
}

/// "Full jitter": a pause anywhere between half and all of the backoff, so that clients that
/// failed together do not all come back together.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn refused() -> StoreError {
        sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).into()
    }

    #[test]
    fn failover_faults_are_transient_and_real_errors_are_not() {
        assert!(refused().is_transient());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
        for code in ["08006", "08001", "57P01", "25006", "53100"] {
            assert!(postgres_transient(code).is_some(), "{code}");
        }
        for code in ["23505", "42P01", "40P01", "22P02"] {
            assert!(postgres_transient(code).is_none(), "{code}");
        }
        // SQLITE_BUSY_SNAPSHOT (517) and SQLITE_READONLY_DBMOVED (1032) by their primary code.
        assert!(sqlite_transient("517").is_some());
        assert!(sqlite_transient("1032").is_some());
        assert!(
            sqlite_transient("19").is_none(),
            "a constraint is not transient"
        );
        assert!(
            sqlite_transient("2067").is_none(),
            "nor a unique constraint"
        );
    }

    #[tokio::test]
    async fn a_transient_fault_is_retried_until_it_clears() {
        let calls = AtomicU32::new(0);
        let policy = Resilience::default();
        let answer = retry(&policy, true, "testing", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(refused()),
                _ => Ok(42),
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn real_errors_are_not_retried_and_lasting_faults_end_unavailable() {
        let calls = AtomicU32::new(0);
        let policy = Resilience {
            retry_for: Duration::from_millis(300),
            ..Resilience::default()
        };
        let real = retry(&policy, true, "testing", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Corrupt("bad row".into()))
        })
        .await;
        assert!(matches!(real, Err(StoreError::Corrupt(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let lasting = retry(&policy, true, "storing readings", || async {
            Err::<(), _>(refused())
        })
        .await;
        let Err(StoreError::Unavailable { reason }) = lasting else {
            panic!("expected unavailable, got {lasting:?}");
        };
        assert!(
            reason.contains("gave up storing readings after"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_hung_attempt_is_cut_off() {
        let policy = Resilience {
            retry_for: Duration::from_millis(100),
            attempt_timeout: Some(Duration::from_millis(50)),
            ..Resilience::default()
        };
        let hung = retry(&policy, true, "testing", || async {
            std::future::pending::<Result<()>>().await
        })
        .await;
        let Err(StoreError::Unavailable { reason }) = hung else {
            panic!("expected unavailable, got {hung:?}");
        };
        assert!(reason.contains("did not answer within 0.05 s"), "{reason}");
    }
}
