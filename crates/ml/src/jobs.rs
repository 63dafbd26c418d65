//! Training jobs (the SageMaker training-job part): a worker takes queued jobs from the store
//! one at a time, trains series after series, records progress and a log line per series, and
//! stops between series when the job is cancelled. A job left `running` by a process that died
//! is marked failed when the next worker starts.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ecocityhub_store::ml::{JobRecord, JobStatus};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::model::TrainOptions;
use crate::registry::Registry;
use crate::training::{plan, train_series, TrainRequest};

/// Takes and runs queued training jobs.
#[derive(Clone)]
pub struct JobRunner {
    registry: Registry,
    options: TrainOptions,
    wake: Arc<Notify>,
}

impl JobRunner {
    pub fn new(registry: Registry, options: TrainOptions) -> JobRunner {
        JobRunner {
            registry,
            options,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Marks jobs a dead process left running as failed; returns how many.
    pub async fn recover(&self) -> u64 {
        match self
            .registry
            .store()
            .fail_interrupted_jobs(Utc::now())
            .await
        {
            Ok(n) => {
                if n > 0 {
                    tracing::warn!(
                        jobs = n,
                        "marked training jobs interrupted by a restart as failed"
                    );
                }
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "could not recover interrupted training jobs");
                0
            }
        }
    }

    /// Runs the worker until the process ends: recovers, then takes jobs as they come (woken
    /// by [`JobRunner::wake`], and every few seconds for jobs queued by other processes).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            self.recover().await;
            loop {
                while self.run_next().await {}
                let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
            }
        })
    }

    /// Runs the oldest queued job, if any; returns whether there was one.
    pub async fn run_next(&self) -> bool {
        match self.registry.store().claim_job(Utc::now()).await {
            Ok(Some(job)) => {
                self.run(job).await;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "could not take a training job");
                false
            }
        }
    }

    async fn cancelled(&self, id: i64) -> bool {
        matches!(self.registry.store().job(id).await, Ok(Some(j)) if j.cancel_requested)
    }

    async fn run(&self, job: JobRecord) {
        let span = tracing::info_span!("training_job", job = job.id);
        self.run_in_span(job).instrument(span).await
    }

    async fn run_in_span(&self, job: JobRecord) {
        let store = self.registry.store().clone();
        let id = job.id;
        let finish = |status: JobStatus, message: String| {
            let store = store.clone();
            async move {
                tracing::info!(status = status.as_str(), %message, "training job finished");
                if let Err(e) = store.finish_job(id, status, &message, Utc::now()).await {
                    tracing::error!(error = %e, "could not record the end of a training job");
                }
            }
        };
        let request: TrainRequest = match serde_json::from_str(&job.request) {
            Ok(r) => r,
            Err(e) => return finish(JobStatus::Failed, format!("invalid job request: {e}")).await,
        };
        let series = match plan(&self.registry, &request).await {
            Ok(s) => s,
            Err(e) => return finish(JobStatus::Failed, e.to_string()).await,
        };
        let actor = format!("training job {id}");
        let total = series.len();
        let _ = store
            .job_progress(id, 0.0, &format!("training {total} series"))
            .await;
        let (mut trained, mut failed) = (0, 0);
        for (i, target) in series.iter().enumerate() {
            if self.cancelled(id).await {
                return finish(
                    JobStatus::Cancelled,
                    format!("cancelled after {trained} of {total} series"),
                )
                .await;
            }
            let line = match train_series(
                &self.registry,
                target,
                &self.options,
                request.promote,
                Some(id),
                &actor,
            )
            .await
            {
                Ok(outcome) => {
                    trained += 1;
                    outcome.summary
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(series = %target, error = %e, "training a series failed");
                    format!("{target}: failed: {e}")
                }
            };
            let _ = store
                .job_progress(id, (i + 1) as f64 / total as f64, &line)
                .await;
        }
        if trained == 0 {
            finish(JobStatus::Failed, format!("all {failed} series failed")).await
        } else {
            let failures = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            finish(
                JobStatus::Succeeded,
                format!("{trained} models trained{failures}"),
            )
            .await
        }
    }
}
