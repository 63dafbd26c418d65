//! The delivery worker: a tokio task that leases due deliveries from the store, sends them
//! through the channels (many at once), and records every outcome of a batch in one commit.
//! Failures are retried with exponential backoff and full jitter; after the last attempt a
//! delivery becomes a dead letter. A worker killed mid-batch loses nothing: its leases expire
//! and another worker (or itself, restarted) takes the rows again. Deliveries sent but not yet
//! recorded at a crash are sent again with the same message id (receivers dedupe by it).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ecocityhub_store::notify::{ClaimedDelivery, DeliveryOutcome};
use ecocityhub_store::{Store, StoreError};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::backoff::RetryPolicy;
use crate::channels::{Channels, SendError};

/// Worker settings; the defaults suit one machine.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Deliveries sent at once.
    pub concurrency: usize,
    /// Deliveries leased per claim.
    pub batch: u32,
    /// How long a lease lasts, in milliseconds (longer than the slowest send).
    pub lease_ms: u64,
    /// The longest sleep when nothing is due, in milliseconds (publishers wake it sooner).
    pub idle_poll_ms: u64,
    pub retry: RetryPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 64,
            batch: 256,
            lease_ms: 60_000,
            idle_poll_ms: 1_000,
            retry: RetryPolicy::default(),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub claimed: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    pub gone: usize,
    /// Outcomes not recorded because the lease had expired and the row was taken again.
    pub lost_leases: usize,
}

/// The delivery worker.
pub struct DeliveryWorker {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    heartbeat: Heartbeat,
}

/// When the worker's loop last came round (for readiness checks): it comes round at least
/// every `idle_poll_ms` while idle, and after each batch while busy.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<std::sync::atomic::AtomicI64>);

impl Heartbeat {
    fn beat(&self) {
        self.0.store(
            chrono::Utc::now().timestamp_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The last beat; `None` before the worker first ran.
    pub fn last(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            ms => chrono::DateTime::from_timestamp_millis(ms),
        }
    }
}

/// A running worker: stop it with [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops after the batch in flight is recorded.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl DeliveryWorker {
    /// `wake` is the notifier's [`crate::Notifier::wake_handle`]: publishing wakes the worker.
    pub fn new(
        store: Arc<dyn Store>,
        channels: Arc<Channels>,
        config: WorkerConfig,
        wake: Arc<Notify>,
    ) -> DeliveryWorker {
        DeliveryWorker {
            store,
            channels,
            config,
            wake,
            heartbeat: Heartbeat::default(),
        }
    }

    /// The worker's heartbeat, to watch it from elsewhere.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    pub fn channels(&self) -> &Arc<Channels> {
        &self.channels
    }

    /// Claims one batch, sends it and records the outcomes.
    pub async fn run_once(&self) -> Result<BatchStats, StoreError> {
        let now = Utc::now().timestamp_millis();
        let claimed = self
            .store
            .claim_deliveries(now, self.config.lease_ms as i64, self.config.batch)
            .await?;
        let mut stats = BatchStats {
            claimed: claimed.len(),
            ..BatchStats::default()
        };
        if claimed.is_empty() {
            return Ok(stats);
        }
        let channels = &self.channels;
        let outcomes: Vec<(i64, String, DeliveryOutcome)> = futures::stream::iter(claimed)
            .map(|d| async move {
                let started = std::time::Instant::now();
                let result = channels.send(&d).await;
                metrics::histogram!("ecocityhub_notify_send_seconds", "protocol" => d.protocol.clone())
                    .record(started.elapsed().as_secs_f64());
                (d.id, d.lease_token.clone(), self.outcome(&d, result))
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (_, _, o) in &outcomes {
            match o {
                DeliveryOutcome::Delivered => stats.delivered += 1,
                DeliveryOutcome::Retry { .. } => stats.retried += 1,
                DeliveryOutcome::Dead { .. } => stats.dead += 1,
                DeliveryOutcome::Gone { .. } => stats.gone += 1,
            }
        }
        let recorded = self
            .store
            .complete_deliveries(&outcomes, Utc::now())
            .await?;
        stats.lost_leases = recorded.iter().filter(|r| !**r).count();
        metrics::counter!("ecocityhub_notify_delivered_total").increment(stats.delivered as u64);
        metrics::counter!("ecocityhub_notify_retries_total").increment(stats.retried as u64);
        metrics::counter!("ecocityhub_notify_dead_letters_total").increment(stats.dead as u64);
        Ok(stats)
    }

    fn outcome(&self, d: &ClaimedDelivery, result: Result<(), SendError>) -> DeliveryOutcome {
        match result {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(SendError::Gone(error)) => DeliveryOutcome::Gone { error },
            Err(SendError::Permanent(error)) => {
                tracing::warn!(delivery = d.id, message = %d.message.id, %error, "delivery failed for good");
                DeliveryOutcome::Dead { error }
            }
            Err(SendError::Retry(error)) => {
                let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
                match self.config.retry.jittered_delay_after(attempts) {
                    Some(delay) => DeliveryOutcome::Retry {
                        at_ms: Utc::now().timestamp_millis() + delay.as_millis() as i64,
                        error,
                    },
                    None => {
                        tracing::warn!(delivery = d.id, message = %d.message.id, %error, attempts, "delivery is a dead letter");
                        DeliveryOutcome::Dead { error }
                    }
                }
            }
        }
    }

    /// How long to sleep when nothing was due: until the next due row, at most the idle poll.
    async fn idle_wait(&self) -> Duration {
        let cap = Duration::from_millis(self.config.idle_poll_ms);
        match self.store.next_due_ms().await {
            Ok(Some(due)) => {
                let wait = due - Utc::now().timestamp_millis();
                Duration::from_millis(wait.clamp(0, cap.as_millis() as i64) as u64)
            }
            _ => cap,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            self.heartbeat.beat();
            match self.run_once().await {
                Ok(stats) if stats.claimed as u32 >= self.config.batch => continue,
                Ok(stats) if stats.claimed > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivery worker: store unavailable"),
            }
            let wait = self.idle_wait().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Starts the worker on the runtime.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(self.run(rx));
        WorkerHandle { stop, task }
    }
}
