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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use ecocityhub_blobs::{BlobStore, ObjectBlobs};
    use ecocityhub_domain::Parameter;
    use ecocityhub_store::ml::CancelOutcome;
    use ecocityhub_store::Store;

    use super::*;
    use crate::test_support::{
        add_series, add_station, fresh_registry, fresh_store, quick_options, station_with_series,
    };

    async fn queue(store: &dyn Store, request: &str) -> i64 {
        store
            .insert_job(request, Some("tester"), Utc::now())
            .await
            .unwrap()
            .id
    }

    async fn job(store: &dyn Store, id: i64) -> JobRecord {
        store.job(id).await.unwrap().expect("the job exists")
    }

    async fn models_of_job(store: &dyn Store, id: i64) -> usize {
        store
            .models(None, None)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.job_id == Some(id))
            .count()
    }

    /// Polls (bounded) until the job has finished.
    async fn finished(store: &dyn Store, id: i64) -> JobRecord {
        for _ in 0..1_200 {
            let j = job(store, id).await;
            if j.status.is_finished() {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish: {:?}", job(store, id).await);
    }

    #[tokio::test]
    async fn a_queued_job_is_claimed_trains_every_series_reports_progress_and_succeeds() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        station_with_series(store.as_ref(), "s2", Parameter::No2, 2).await;
        let id = queue(store.as_ref(), "{}").await;
        let runner = JobRunner::new(registry, quick_options());

        assert!(runner.run_next().await, "there was a queued job");
        let done = job(store.as_ref(), id).await;
        assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
        assert_eq!(done.message.as_deref(), Some("2 models trained"));
        assert_eq!(done.progress, 1.0);
        assert!(done.started_at.is_some() && done.finished_at.is_some());
        assert!(!done.cancel_requested);
        // The log: the plan, one line per series with its skill, the outcome.
        let lines: Vec<&str> = done.log.lines().collect();
        assert_eq!(lines.len(), 4, "{}", done.log);
        assert_eq!(lines[0], "training 2 series");
        assert!(
            lines[1].starts_with("s1/pm25 v1: 3 h ahead MAE") && lines[1].ends_with(", serving"),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with("s2/no2 v1:"), "{}", lines[2]);
        assert_eq!(lines[3], "2 models trained");

        // Both models are registered under the job and, being the first of their series, serve.
        let models = store.models(None, None).await.unwrap();
        assert_eq!(models.len(), 2);
        assert!(models
            .iter()
            .all(|m| m.job_id == Some(id) && m.status == "serving"));

        assert!(!runner.run_next().await, "nothing else is queued");
        assert_eq!(
            job(store.as_ref(), id).await,
            done,
            "a finished job stays as it was"
        );
    }

    #[tokio::test]
    async fn a_job_that_fails_records_why() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        // Three weeks from first to last reading but only a reading a day: the plan takes it,
        // training cannot.
        add_station(store.as_ref(), "sparse").await;
        let start = 1_700_000_000 / 3600 * 3600;
        let sparse = crate::HourlySeries::from_points((0..22).map(|d| (start + d * 86_400, 20.0)));
        add_series(store.as_ref(), "sparse", Parameter::Pm25, &sparse).await;
        let runner = JobRunner::new(registry, quick_options());

        let cases = [
            (
                r#"{"stations": ["nowhere"]}"#,
                "station \"nowhere\" does not exist",
            ),
            (
                r#"{"parameters": ["temperature"]}"#,
                "temperature is not forecast",
            ),
            (r#"{"bogus": true}"#, "invalid job request"),
            ("not json", "invalid job request"),
            (r#"{"stations": ["sparse"]}"#, "all 1 series failed"),
        ];
        for (request, why) in cases {
            let id = queue(store.as_ref(), request).await;
            assert!(runner.run_next().await);
            let failed = job(store.as_ref(), id).await;
            assert_eq!(failed.status, JobStatus::Failed, "{request}: {failed:?}");
            let message = failed.message.clone().unwrap_or_default();
            assert!(message.contains(why), "{request}: {message}");
            assert!(
                failed.log.ends_with(&format!("{message}\n")),
                "{}",
                failed.log
            );
            assert!(failed.finished_at.is_some());
            assert_eq!(models_of_job(store.as_ref(), id).await, 0);
        }
        // The sparse series' own line says why it failed.
        let sparse_job = store.jobs(1).await.unwrap().remove(0);
        assert!(
            sparse_job
                .log
                .contains("sparse/pm25: failed: not enough data"),
            "{}",
            sparse_job.log
        );

        // One series failing does not fail the job: the others are trained.
        let id = queue(store.as_ref(), "{}").await;
        assert!(runner.run_next().await);
        let mixed = job(store.as_ref(), id).await;
        assert_eq!(mixed.status, JobStatus::Succeeded, "{mixed:?}");
        assert_eq!(mixed.message.as_deref(), Some("1 models trained, 1 failed"));
        assert_eq!(models_of_job(store.as_ref(), id).await, 1);
    }

    /// Blobs that ask for the job to be cancelled when the first model artifact is written:
    /// the cancellation arrives while the job is running, in the middle of its first series.
    struct CancelDuringFirstSeries {
        inner: ObjectBlobs,
        store: Arc<dyn Store>,
        job: AtomicI64,
        fired: AtomicBool,
        outcome: Mutex<Option<CancelOutcome>>,
    }

    #[async_trait]
    impl BlobStore for CancelDuringFirstSeries {
        async fn put(&self, key: &str, bytes: Bytes) -> ecocityhub_blobs::Result<()> {
            if key.ends_with(crate::artifact::FILE_NAME) && !self.fired.swap(true, Ordering::SeqCst)
            {
                let id = self.job.load(Ordering::SeqCst);
                let outcome = self.store.cancel_job(id, Utc::now()).await.unwrap();
                *self.outcome.lock().unwrap() = Some(outcome);
            }
            self.inner.put(key, bytes).await
        }
        async fn get(&self, key: &str) -> ecocityhub_blobs::Result<Option<Bytes>> {
            self.inner.get(key).await
        }
        async fn delete(&self, key: &str) -> ecocityhub_blobs::Result<()> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: &str) -> ecocityhub_blobs::Result<Vec<String>> {
            self.inner.list(prefix).await
        }
        fn describe(&self) -> String {
            "memory, cancelling during the first series".into()
        }
    }

    #[tokio::test]
    async fn a_job_cancelled_while_running_stops_before_the_next_series() {
        let (_dir, store) = fresh_store().await;
        for (i, s) in ["s1", "s2", "s3"].into_iter().enumerate() {
            station_with_series(store.as_ref(), s, Parameter::Pm25, i as u64 + 1).await;
        }
        let blobs = Arc::new(CancelDuringFirstSeries {
            inner: ObjectBlobs::in_memory(),
            store: store.clone(),
            job: AtomicI64::new(0),
            fired: AtomicBool::new(false),
            outcome: Mutex::new(None),
        });
        let runner = JobRunner::new(Registry::new(store.clone(), blobs.clone()), quick_options());
        let id = queue(store.as_ref(), "{}").await;
        blobs.job.store(id, Ordering::SeqCst);

        assert!(runner.run_next().await);
        assert_eq!(
            *blobs.outcome.lock().unwrap(),
            Some(CancelOutcome::Requested),
            "the job was running when cancelled"
        );
        let cancelled = job(store.as_ref(), id).await;
        assert_eq!(cancelled.status, JobStatus::Cancelled, "{cancelled:?}");
        assert!(cancelled.cancel_requested);
        assert_eq!(
            cancelled.message.as_deref(),
            Some("cancelled after 1 of 3 series")
        );
        assert!(cancelled.finished_at.is_some());
        // The series under way finished; none was started after the request.
        assert_eq!(models_of_job(store.as_ref(), id).await, 1);
        assert!(
            (cancelled.progress - 1.0 / 3.0).abs() < 1e-9,
            "{}",
            cancelled.progress
        );
        assert_eq!(
            store.cancel_job(id, Utc::now()).await.unwrap(),
            CancelOutcome::AlreadyFinished
        );
    }

    #[tokio::test]
    async fn a_job_cancelled_while_queued_never_runs() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        let id = queue(store.as_ref(), "{}").await;
        assert_eq!(
            store.cancel_job(id, Utc::now()).await.unwrap(),
            CancelOutcome::Cancelled
        );
        let runner = JobRunner::new(registry, quick_options());
        assert!(!runner.run_next().await);
        let j = job(store.as_ref(), id).await;
        assert_eq!(j.status, JobStatus::Cancelled);
        assert!(j.started_at.is_none());
        assert!(store.models(None, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_worker_fails_interrupted_jobs_on_start_then_runs_queued_ones() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        // A job a dead process left running, and one still waiting.
        let interrupted = queue(store.as_ref(), "{}").await;
        let claimed = store.claim_job(Utc::now()).await.unwrap().unwrap();
        assert_eq!(
            (claimed.id, claimed.status),
            (interrupted, JobStatus::Running)
        );
        let waiting = queue(store.as_ref(), "{}").await;

        let runner = JobRunner::new(registry, quick_options());
        let worker = runner.clone().spawn();
        let ran = finished(store.as_ref(), waiting).await;
        assert_eq!(ran.status, JobStatus::Succeeded, "{ran:?}");
        let failed = job(store.as_ref(), interrupted).await;
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(
            failed
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("interrupted")),
            "{failed:?}"
        );
        assert_eq!(models_of_job(store.as_ref(), interrupted).await, 0);

        // Woken for a job queued later, the idle worker takes it.
        let later = queue(store.as_ref(), r#"{"promote": true}"#).await;
        runner.wake();
        let ran = finished(store.as_ref(), later).await;
        assert_eq!(ran.status, JobStatus::Succeeded, "{ran:?}");
        let models = store.models(None, None).await.unwrap();
        assert_eq!(
            models
                .iter()
                .find(|m| m.status == "serving")
                .map(|m| m.job_id),
            Some(Some(later)),
            "promote: true serves the new model"
        );
        worker.abort();

        // Nothing is left running, so a second start fails nothing.
        assert_eq!(runner.recover().await, 0);
    }
}
