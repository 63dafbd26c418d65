//! Shared state of the API: the store, configuration, and the cached "latest" snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecocityhub_blobs::BlobStore;
use ecocityhub_ml::forecast::Forecaster;
use ecocityhub_ml::jobs::JobRunner;
use ecocityhub_ml::registry::Registry;
use ecocityhub_ml::TrainOptions;
use ecocityhub_store::Store;
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiResult;
use crate::identity::{Identity, IdentityConfig, OutboxDelivery};
use crate::latest::{self, LatestStation};

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long a computed `/latest` snapshot may be served when no reading arrived through
    /// this process (readings written by other processes — an import, another Lambda instance —
    /// show up within this time).
    pub latest_ttl: Duration,
    /// A station whose latest reading is older than this is marked `stale`.
    pub stale_after: chrono::Duration,
    pub identity: IdentityConfig,
    /// How training jobs train.
    pub training: TrainOptions,
    /// Citizens' reports: categories and rate limits.
    pub reports: crate::reports::ReportsConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            latest_ttl: Duration::from_secs(15),
            stale_after: chrono::Duration::hours(3),
            identity: IdentityConfig::default(),
            training: TrainOptions::default(),
            reports: crate::reports::ReportsConfig::default(),
        }
    }
}

/// What the API runs on beside the store and the blobs; each has a default, so a test can
/// start the API with none of them.
#[derive(Default)]
pub struct Services {
    /// How codes reach users; default: through `notifier` when there is one, else the
    /// outbox table and the log.
    pub delivery: Option<Arc<dyn crate::identity::CodeDelivery>>,
    /// Seals secrets kept in the database (the signing keys); default: none, they stay as
    /// they are stored.
    pub sealer: Option<ecocityhub_blobs::Sealer>,
    /// The notification layer (SNS's role): topics, subscriptions, the outbox worker's queue.
    pub notifier: Option<Arc<ecocityhub_notify::Notifier>>,
    /// Citizens' alert rules and operators' alarms, evaluated after each ingest.
    pub rules: Option<Arc<ecocityhub_notify::RuleEngine>>,
    /// The audit trail (CloudTrail's role); default: none, nothing is recorded.
    pub audit: Option<ecocityhub_observe::audit::Audit>,
    /// The edge's shared response cache, told precisely what a write outdates.
    pub cache: Option<ecocityhub_edge::EdgeCache>,
    /// What `GET /readyz` checks beside the store and the blobs (the workers' heartbeats).
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// Photo uploads of reports; default: URLs served by this server under the public URL,
    /// signed with a key kept in the blob store.
    pub uploads: Option<ecocityhub_blobs::photo_uploads::PhotoUploads>,
}

/// One part of the service that `GET /readyz` asks whether it is working.
pub trait ReadinessCheck: Send + Sync {
    /// The part's name in the answer (`delivery_worker`).
    fn name(&self) -> &'static str;
    /// `Err` with what is wrong.
    fn check(&self) -> Result<(), String>;
}

/// A worker is ready while its loop has come round within `max_gap`.
pub struct HeartbeatCheck {
    pub name: &'static str,
    pub heartbeat: ecocityhub_notify::Heartbeat,
    pub max_gap: std::time::Duration,
}

impl ReadinessCheck for HeartbeatCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> Result<(), String> {
        let Some(last) = self.heartbeat.last() else {
            return Err("has not started".into());
        };
        let gap = (chrono::Utc::now() - last).to_std().unwrap_or_default();
        if gap > self.max_gap {
            return Err(format!(
                "last came round {} s ago (more than {} s)",
                gap.as_secs(),
                self.max_gap.as_secs()
            ));
        }
        Ok(())
    }
}

/// The computed latest view, ready to serve.
pub struct Snapshot {
    pub generation: u64,
    pub computed_at: Instant,
    pub stations: Vec<LatestStation>,
    /// `stations` serialized once, so every request is a copy of bytes.
    pub json: Bytes,
}

/// Cheap to clone; every handler gets one.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    config: ApiConfig,
    services: Services,
    identity: Identity,
    forecaster: Forecaster,
    jobs: JobRunner,
    /// Bumped whenever readings are written through this process.
    generation: AtomicU64,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    rebuilding: Mutex<()>,
}

/// Uploads to this server's own URLs (`PUT /uploads/{id}`) under its public URL.
async fn default_uploads(
    blobs: &Arc<dyn BlobStore>,
    config: &ApiConfig,
    services: &Services,
) -> ApiResult<ecocityhub_blobs::photo_uploads::PhotoUploads> {
    use ecocityhub_blobs::uploads::{LocalUploadSigner, UploadsConfig};
    let base = services
        .notifier
        .as_ref()
        .map_or(config.identity.tokens.issuer.as_str(), |n| {
            n.public_url.as_str()
        });
    let signer = LocalUploadSigner::open(blobs.as_ref(), base, UploadsConfig::default())
        .await
        .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
    Ok(ecocityhub_blobs::photo_uploads::PhotoUploads::local(
        blobs.clone(),
        signer,
        ecocityhub_blobs::photos::PhotoLimits::default(),
    ))
}

impl AppState {
    /// The state over a migrated store and a blob store (model artifacts); makes the first
    /// signing key when there is none.
    pub async fn open(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        config: ApiConfig,
    ) -> ApiResult<Self> {
        Self::open_with(store, blobs, config, Services::default()).await
    }

    /// [`AppState::open`] with the services given.
    pub async fn open_with(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        config: ApiConfig,
        services: Services,
    ) -> ApiResult<Self> {
        let delivery = services
            .delivery
            .clone()
            .unwrap_or_else(|| match &services.notifier {
                Some(notifier) => Arc::new(crate::identity::NotifyDelivery {
                    notifier: notifier.clone(),
                }) as Arc<dyn crate::identity::CodeDelivery>,
                None => Arc::new(OutboxDelivery {
                    store: store.clone(),
                }),
            });
        let identity = Identity::open(
            store.as_ref(),
            config.identity.clone(),
            delivery,
            services.sealer.clone(),
        )
        .await?;
        let mut services = services;
        if services.uploads.is_none() {
            services.uploads = Some(default_uploads(&blobs, &config, &services).await?);
        }
        let registry = Registry::new(store.clone(), blobs.clone());
        let forecaster = Forecaster::new(registry.clone(), config.latest_ttl);
        let mut jobs = JobRunner::new(registry, config.training.clone());
        if let Some(audit) = &services.audit {
            jobs = jobs.observed_by(crate::job_audit::AuditJobs::new(audit.clone()));
        }
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                blobs,
                config,
                services,
                identity,
                forecaster,
                jobs,
                generation: AtomicU64::new(0),
                snapshot: RwLock::new(None),
                rebuilding: Mutex::new(()),
            }),
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The photo upload flow of reports.
    pub fn photo_uploads(&self) -> Option<&ecocityhub_blobs::photo_uploads::PhotoUploads> {
        self.inner.services.uploads.as_ref()
    }

    /// The blob store (model artifacts, reports, photos).
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// The notification layer, when the API runs with one.
    pub fn notifier(&self) -> Option<&Arc<ecocityhub_notify::Notifier>> {
        self.inner.services.notifier.as_ref()
    }

    /// The alert rules, when the API runs with them.
    pub fn rules(&self) -> Option<&Arc<ecocityhub_notify::RuleEngine>> {
        self.inner.services.rules.as_ref()
    }

    /// Records an audit event, when the API keeps an audit trail; an event that cannot be
    /// recorded is a 500 (an action must not go unaudited silently).
    pub async fn audit(&self, event: ecocityhub_observe::audit::AuditEvent) -> ApiResult<()> {
        if let Some(audit) = &self.inner.services.audit {
            audit
                .record(event)
                .await
                .map_err(|e| crate::error::ApiError::Internal(format!("audit: {e}")))?;
        }
        Ok(())
    }

    /// The audit trail, when there is one.
    pub fn audit_trail(&self) -> Option<&ecocityhub_observe::audit::Audit> {
        self.inner.services.audit.as_ref()
    }

    /// Drops cached answers carrying any of `tags` (the edge's cache vocabulary: `latest`,
    /// `stations`, `station:ID`, `forecast:ID`, `models`).
    pub fn invalidate(&self, tags: &[String]) {
        if let Some(cache) = &self.inner.services.cache {
            cache.invalidate_tags(tags);
        }
    }

    /// A station's forecasts changed (a promotion, a rollback, a refresh): its forecast, its
    /// page and the model registry's answers are outdated.
    pub fn forecasts_changed(&self, station: &str) {
        self.invalidate(&[
            format!("forecast:{station}"),
            format!("station:{station}"),
            "models".to_string(),
        ]);
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The parts `GET /readyz` checks beside the store and the blobs.
    pub fn readiness(&self) -> &[Arc<dyn ReadinessCheck>] {
        &self.inner.services.readiness
    }

    /// The store, shared (for streams that outlive the request's borrow).
    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The forecast engine over the model registry.
    pub fn forecaster(&self) -> &Forecaster {
        &self.inner.forecaster
    }

    /// The training-job worker (start it with `jobs().clone().spawn()` where jobs should run).
    pub fn jobs(&self) -> &JobRunner {
        &self.inner.jobs
    }

    /// Runs the anomaly checks on readings just stored, in the background; suspect readings
    /// are recorded and flagged (see `ecocityhub_ml::screening`).
    pub fn screen_in_background(&self, readings: Vec<ecocityhub_domain::Reading>) {
        let app = self.clone();
        tokio::spawn(async move {
            let config = ecocityhub_ml::anomaly::AnomalyConfig::default();
            match ecocityhub_ml::screening::screen(app.store(), &readings, &config).await {
                Ok(found) if !found.is_empty() => {
                    tracing::info!(
                        suspect = found.len(),
                        "readings flagged by the anomaly checks"
                    );
                    app.readings_changed();
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "anomaly screening failed"),
            }
        });
    }

    /// Changes whenever readings are written through this process.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Is the service reached over HTTPS (its public URL, the tokens' issuer)?
    pub fn is_https(&self) -> bool {
        self.inner
            .config
            .identity
            .tokens
            .issuer
            .starts_with("https://")
    }

    /// Marks cached views as outdated after a write.
    pub fn readings_changed(&self) {
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// After readings were stored: outdated views are dropped (this process's snapshot and
    /// the edge cache's answers about those stations), and the alert rules look at them in the
    /// background (an ingest is never delayed or failed by them).
    pub fn readings_stored(&self, readings: Vec<ecocityhub_domain::Reading>) {
        self.readings_changed();
        let mut tags: Vec<String> = vec!["latest".into(), "stations".into()];
        for r in &readings {
            let tag = format!("station:{}", r.station);
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        self.invalidate(&tags);
        if let Some(rules) = self.rules().cloned() {
            let readings = readings.clone();
            tokio::spawn(async move {
                if let Err(e) = rules.on_readings(&readings).await {
                    tracing::warn!(error = %e, "alert rules could not look at new readings");
                }
            });
        }
        self.screen_in_background(readings);
    }

    fn is_fresh(&self, s: &Snapshot) -> bool {
        s.generation == self.inner.generation.load(Ordering::Acquire)
            && s.computed_at.elapsed() < self.inner.config.latest_ttl
    }

    async fn fresh_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner
            .snapshot
            .read()
            .await
            .as_ref()
            .filter(|s| self.is_fresh(s))
            .cloned()
    }

    /// The latest snapshot, rebuilt by one request at a time when outdated.
    pub async fn latest(&self) -> ApiResult<Arc<Snapshot>> {
        if let Some(s) = self.fresh_snapshot().await {
            return Ok(s);
        }
        let _one_at_a_time = self.inner.rebuilding.lock().await;
        if let Some(s) = self.fresh_snapshot().await {
            return Ok(s);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let stations = latest::compute(
            self.store(),
            chrono::Utc::now(),
            self.inner.config.stale_after,
        )
        .await?;
        let json = Bytes::from(
            serde_json::to_vec(&stations)
                .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?,
        );
        let snapshot = Arc::new(Snapshot {
            generation,
            computed_at: Instant::now(),
            stations,
            json,
        });
        *self.inner.snapshot.write().await = Some(snapshot.clone());
        Ok(snapshot)
    }
}
