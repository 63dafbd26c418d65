//! Training jobs (the SageMaker training-job part): a worker takes queued jobs from the store
//! one at a time, trains series after series, records progress and a log line per series, and
//! stops between series when the job is cancelled. A job left `running` by a process that died
//! is marked failed when the next worker starts.
//!
//! When a job ends (or is found interrupted) the worker tells its [`JobObserver`], if it has
//! one, what the job did: the platform writes that into the audit trail.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use ecocityhub_store::ml::{JobRecord, JobStatus, ModelRecord};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::model::TrainOptions;
use crate::registry::Registry;
use crate::training::{plan, train_series, TrainRequest};

/// What a training run did, told to the [`JobObserver`] when a job ends (the command line's
/// `ml train` describes its runs the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// `Succeeded`, `Failed` or `Cancelled`.
    pub status: JobStatus,
    /// Why it did not succeed, as a short stable name (`InvalidJobRequest`, `UnknownStation`,
    /// `NotForecastable`, `NothingToTrain`, `AllSeriesFailed`, `JobCancelled`,
    /// `JobInterrupted`…); `None` when it succeeded.
    pub error_code: Option<&'static str>,
    /// The job's final message (`2 models trained`, or why it failed).
    pub message: String,
    /// What it was asked to train, when the request could be read.
    pub request: Option<TrainRequest>,
    /// How many series the plan had.
    pub series: usize,
    /// The models registered, in order.
    pub models: Vec<TrainedModel>,
    /// The series that failed, with why (`s1/pm25: not enough data…`).
    pub failures: Vec<String>,
}

impl JobOutcome {
    fn ended(status: JobStatus, code: Option<&'static str>, message: String) -> JobOutcome {
        JobOutcome {
            status,
            error_code: code,
            message,
            request: None,
            series: 0,
            models: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The end of a run that trained `series` series: succeeded if any model was trained.
    pub fn of_run(
        request: TrainRequest,
        series: usize,
        models: Vec<TrainedModel>,
        failures: Vec<String>,
    ) -> JobOutcome {
        let (trained, failed) = (models.len(), failures.len());
        let (status, code, message) = if trained == 0 {
            (
                JobStatus::Failed,
                Some("AllSeriesFailed"),
                format!("all {failed} series failed"),
            )
        } else {
            let failures = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            (
                JobStatus::Succeeded,
                None,
                format!("{trained} models trained{failures}"),
            )
        };
        JobOutcome {
            status,
            error_code: code,
            message,
            request: Some(request),
            series,
            models,
            failures,
        }
    }

    /// A run that failed before training anything (its request or its plan).
    pub fn failed(
        code: &'static str,
        message: String,
        request: Option<TrainRequest>,
    ) -> JobOutcome {
        JobOutcome {
            request,
            ..JobOutcome::ended(JobStatus::Failed, Some(code), message)
        }
    }
}

/// A model a run registered, and whether the run made it serve.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub model: ModelRecord,
    pub promoted: bool,
}

/// Told when a training job ends (the audit trail's writer, in the platform).
#[async_trait]
pub trait JobObserver: Send + Sync {
    /// `job` as it was claimed (its request, who queued it, when it started); `outcome`, what
    /// it did. Called once per job, after its end is stored (not when storing it failed: the
    /// job is then told as interrupted by the next worker's start).
    async fn job_finished(&self, job: &JobRecord, outcome: &JobOutcome);
}

/// Takes and runs queued training jobs.
#[derive(Clone)]
pub struct JobRunner {
    registry: Registry,
    options: TrainOptions,
    wake: Arc<Notify>,
    observer: Option<Arc<dyn JobObserver>>,
}

/// Running jobs looked at when a worker starts, at most (the interrupted ones among them are
/// told to the observer; any beyond are failed all the same).
const INTERRUPTED_SCAN: i64 = 1_000;

impl JobRunner {
    pub fn new(registry: Registry, options: TrainOptions) -> JobRunner {
        JobRunner {
            registry,
            options,
            wake: Arc::new(Notify::new()),
            observer: None,
        }
    }

    /// This worker tells `observer` how each job it runs (or finds interrupted) ended.
    pub fn observed_by(mut self, observer: Arc<dyn JobObserver>) -> JobRunner {
        self.observer = Some(observer);
        self
    }

    /// Tells the worker a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Marks jobs a dead process left running as failed; returns how many.
    pub async fn recover(&self) -> u64 {
        let store = self.registry.store();
        // The jobs about to be failed, for the observer.
        let running: Vec<JobRecord> = match &self.observer {
            Some(_) => store
                .jobs(INTERRUPTED_SCAN)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|j| j.status == JobStatus::Running)
                .collect(),
            None => Vec::new(),
        };
        match store.fail_interrupted_jobs(Utc::now()).await {
            Ok(n) => {
                if n > 0 {
                    tracing::warn!(
                        jobs = n,
                        "marked training jobs interrupted by a restart as failed"
                    );
                }
                if let Some(observer) = &self.observer {
                    for job in &running {
                        let Ok(Some(now)) = store.job(job.id).await else {
                            continue;
                        };
                        if now.status != JobStatus::Failed {
                            continue;
                        }
                        let outcome = JobOutcome::failed(
                            "JobInterrupted",
                            now.message.clone().unwrap_or_default(),
                            serde_json::from_str(&job.request).ok(),
                        );
                        observer.job_finished(job, &outcome).await;
                    }
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

    /// Runs the job, stores its end, tells the observer.
    async fn run_in_span(&self, job: JobRecord) {
        let outcome = self.execute(&job).await;
        let message = &outcome.message;
        tracing::info!(status = outcome.status.as_str(), %message, "training job finished");
        if let Err(e) = self
            .registry
            .store()
            .finish_job(job.id, outcome.status, message, Utc::now())
            .await
        {
            // Still `running` in the store: the next worker's start fails it as interrupted
            // and tells the observer then, so the trail never says two different things.
            tracing::error!(error = %e, "could not record the end of a training job");
            return;
        }
        if let Some(observer) = &self.observer {
            observer.job_finished(&job, &outcome).await;
        }
    }

    async fn execute(&self, job: &JobRecord) -> JobOutcome {
        let store = self.registry.store().clone();
        let id = job.id;
        let request: TrainRequest = match serde_json::from_str(&job.request) {
            Ok(r) => r,
            Err(e) => {
                return JobOutcome::failed(
                    "InvalidJobRequest",
                    format!("invalid job request: {e}"),
                    None,
                )
            }
        };
        let series = match plan(&self.registry, &request).await {
            Ok(s) => s,
            Err(e) => return JobOutcome::failed(e.code(), e.to_string(), Some(request)),
        };
        let actor = format!("training job {id}");
        let total = series.len();
        let _ = store
            .job_progress(id, 0.0, &format!("training {total} series"))
            .await;
        let (mut models, mut failures) = (Vec::new(), Vec::new());
        for (i, target) in series.iter().enumerate() {
            if self.cancelled(id).await {
                let trained = models.len();
                return JobOutcome {
                    request: Some(request),
                    series: total,
                    models,
                    failures,
                    ..JobOutcome::ended(
                        JobStatus::Cancelled,
                        Some("JobCancelled"),
                        format!("cancelled after {trained} of {total} series"),
                    )
                };
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
                    models.push(TrainedModel {
                        model: outcome.record,
                        promoted: outcome.promoted,
                    });
                    outcome.summary
                }
                Err(e) => {
                    tracing::warn!(series = %target, error = %e, "training a series failed");
                    failures.push(format!("{target}: {e}"));
                    format!("{target}: failed: {e}")
                }
            };
            let _ = store
                .job_progress(id, (i + 1) as f64 / total as f64, &line)
                .await;
        }
        JobOutcome::of_run(request, total, models, failures)
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

    /// An observer that keeps what it is told.
    #[derive(Default)]
    struct Told(Mutex<Vec<(JobRecord, JobOutcome)>>);

    #[async_trait]
    impl JobObserver for Told {
        async fn job_finished(&self, job: &JobRecord, outcome: &JobOutcome) {
            self.0.lock().unwrap().push((job.clone(), outcome.clone()));
        }
    }

    impl Told {
        fn take(&self) -> Vec<(JobRecord, JobOutcome)> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn the_observer_is_told_once_how_each_job_ended() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        station_with_series(store.as_ref(), "s2", Parameter::No2, 2).await;
        let told = Arc::new(Told::default());
        let runner = JobRunner::new(registry, quick_options()).observed_by(told.clone());

        // Success: both models trained and, the first of their series, promoted.
        let id = queue(store.as_ref(), r#"{"stations": ["s1", "s2"]}"#).await;
        assert!(runner.run_next().await);
        let heard = told.take();
        assert_eq!(heard.len(), 1, "{heard:?}");
        let (job, outcome) = &heard[0];
        assert_eq!(job.id, id);
        assert_eq!(job.created_by.as_deref(), Some("tester"));
        assert_eq!(outcome.status, JobStatus::Succeeded);
        assert_eq!(outcome.error_code, None);
        assert_eq!(outcome.message, "2 models trained");
        assert_eq!(outcome.series, 2);
        assert_eq!(
            outcome.request.as_ref().map(|r| r.stations.clone()),
            Some(vec!["s1".to_string(), "s2".to_string()])
        );
        let stored = store.models(None, None).await.unwrap();
        let mut told_ids: Vec<i64> = outcome.models.iter().map(|m| m.model.id).collect();
        let mut stored_ids: Vec<i64> = stored.iter().map(|m| m.id).collect();
        told_ids.sort();
        stored_ids.sort();
        assert_eq!(told_ids, stored_ids);
        assert!(outcome
            .models
            .iter()
            .all(|m| m.promoted && m.model.status == "serving" && m.model.job_id == Some(id)));
        assert!(outcome.failures.is_empty());

        // Again without promote: candidates, not promoted.
        queue(store.as_ref(), r#"{"parameters": ["pm25"]}"#).await;
        assert!(runner.run_next().await);
        let heard = told.take();
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].1.models.len(), 1);
        assert!(!heard[0].1.models[0].promoted);
        assert_eq!(heard[0].1.models[0].model.status, "candidate");

        // Failures: each one told once, with its code and the stored message.
        for (request, code) in [
            (r#"{"stations": ["nowhere"]}"#, "UnknownStation"),
            (r#"{"parameters": ["temperature"]}"#, "NotForecastable"),
            ("not json", "InvalidJobRequest"),
        ] {
            let id = queue(store.as_ref(), request).await;
            assert!(runner.run_next().await);
            let heard = told.take();
            assert_eq!(heard.len(), 1, "{request}: {heard:?}");
            let (job, outcome) = &heard[0];
            assert_eq!(job.id, id);
            assert_eq!(outcome.status, JobStatus::Failed, "{request}");
            assert_eq!(outcome.error_code, Some(code), "{request}");
            assert_eq!(
                Some(outcome.message.clone()),
                self::job(store.as_ref(), id).await.message,
                "{request}"
            );
            assert!(outcome.models.is_empty());
        }

        // Nothing queued: nothing told.
        assert!(!runner.run_next().await);
        assert!(told.take().is_empty());
    }

    #[tokio::test]
    async fn a_job_whose_every_series_fails_is_told_with_each_failure() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        add_station(store.as_ref(), "sparse").await;
        let start = 1_700_000_000 / 3600 * 3600;
        let sparse = crate::HourlySeries::from_points((0..22).map(|d| (start + d * 86_400, 20.0)));
        add_series(store.as_ref(), "sparse", Parameter::Pm25, &sparse).await;
        let told = Arc::new(Told::default());
        let runner = JobRunner::new(registry, quick_options()).observed_by(told.clone());
        queue(store.as_ref(), "{}").await;
        assert!(runner.run_next().await);
        let heard = told.take();
        assert_eq!(heard.len(), 1);
        let outcome = &heard[0].1;
        assert_eq!(outcome.status, JobStatus::Failed);
        assert_eq!(outcome.error_code, Some("AllSeriesFailed"));
        assert_eq!(outcome.message, "all 1 series failed");
        assert_eq!(outcome.series, 1);
        assert_eq!(outcome.failures.len(), 1);
        assert!(
            outcome.failures[0].starts_with("sparse/pm25: not enough data"),
            "{:?}",
            outcome.failures
        );
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
        let told = Arc::new(Told::default());
        let runner = JobRunner::new(Registry::new(store.clone(), blobs.clone()), quick_options())
            .observed_by(told.clone());
        let id = queue(store.as_ref(), "{}").await;
        blobs.job.store(id, Ordering::SeqCst);

        assert!(runner.run_next().await);
        let heard = told.take();
        assert_eq!(heard.len(), 1, "{heard:?}");
        let outcome = &heard[0].1;
        assert_eq!(outcome.status, JobStatus::Cancelled);
        assert_eq!(outcome.error_code, Some("JobCancelled"));
        assert_eq!(outcome.message, "cancelled after 1 of 3 series");
        assert_eq!((outcome.series, outcome.models.len()), (3, 1));
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

        let told = Arc::new(Told::default());
        let runner = JobRunner::new(registry, quick_options()).observed_by(told.clone());
        let worker = runner.clone().spawn();
        let ran = finished(store.as_ref(), waiting).await;
        assert_eq!(ran.status, JobStatus::Succeeded, "{ran:?}");
        // Told of both: the interrupted one first, on start (the observer hears of a job just
        // after its end is stored, so wait for it, bounded).
        let mut heard = told.take();
        for _ in 0..100 {
            if heard.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            heard.extend(told.take());
        }
        let ends: Vec<_> = heard
            .iter()
            .map(|(j, o)| (j.id, o.status, o.error_code))
            .collect();
        assert_eq!(
            ends,
            vec![
                (interrupted, JobStatus::Failed, Some("JobInterrupted")),
                (waiting, JobStatus::Succeeded, None)
            ]
        );
        assert!(heard[0].1.message.starts_with("interrupted"), "{heard:?}");
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
