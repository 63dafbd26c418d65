//! The layers of one running EcoCityHub, put together for `serve`: the store and the blob
//! store, the notification layer (its delivery worker and the alert rules), monitoring and the
//! audit trail, and the edge (firewall, rate limits, cache, compression) around the site.
//! `serve` opens a [`Platform`], serves [`Platform::site`], and [`Platform::shutdown`]s it.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use ecocityhub_api::AppState;
use ecocityhub_blobs::photo_uploads::PhotoUploads;
use ecocityhub_blobs::uploads::LocalUploadSigner;
use ecocityhub_blobs::OpenedBlobs;
use ecocityhub_notify::{Message, Notifier, Publisher, RuleEngine, Topic, WorkerHandle};
use ecocityhub_observe::alarms::{AlarmEvent, AlarmSink};
use ecocityhub_observe::service::{Observer, ObserverOptions};
use ecocityhub_observe::{Exposition, HttpMetricsLayer, RequestIdLayer, Telemetry};
use ecocityhub_store::Store;

use crate::config::FileConfig;

/// Settings of the layers that flags may override.
pub struct LayerSettings {
    pub public_url: String,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub metrics_bind: Option<std::net::SocketAddr>,
    pub tls: bool,
    pub lambda: bool,
}

/// Everything `serve` runs besides the router.
pub struct Platform {
    pub blobs: OpenedBlobs,
    pub notifier: Arc<Notifier>,
    pub rules: Arc<RuleEngine>,
    pub observer: Arc<Observer>,
    pub edge: ecocityhub_edge::Edge,
    pub waf: Arc<ecocityhub_waf::Waf>,
    /// Photo uploads of reports (signed URLs, local or S3).
    pub uploads: PhotoUploads,
    worker: tokio::sync::Mutex<Option<WorkerHandle>>,
    worker_heartbeat: ecocityhub_notify::Heartbeat,
}

/// Uploads the blob configuration asks for: S3 presigned PUTs for an S3 bucket (feature `aws`),
/// else URLs served by EcoCityHub at `public_url`.
async fn photo_uploads(
    blobs: &OpenedBlobs,
    file: &FileConfig,
    public_url: &str,
) -> Result<PhotoUploads> {
    let config = file.blobs.clone().unwrap_or_default();
    #[cfg(feature = "aws")]
    if config.backend == ecocityhub_blobs::config::Backend::S3 {
        let signer = ecocityhub_blobs::s3::S3UploadSigner::from_config(&config.s3, config.uploads)
            .context("S3 upload URLs")?;
        return Ok(PhotoUploads::remote(
            blobs.store(),
            Arc::new(signer),
            config.photos,
        ));
    }
    let signer = LocalUploadSigner::open(blobs.blobs.as_ref(), public_url, config.uploads)
        .await
        .context("upload URLs")?;
    Ok(PhotoUploads::local(blobs.store(), signer, config.photos))
}

/// Alarm changes go to the operators' alarm topic of the notification layer.
struct AlarmsToOperators {
    notifier: Arc<Notifier>,
}

#[async_trait]
impl AlarmSink for AlarmsToOperators {
    async fn alarm_changed(&self, event: &AlarmEvent) -> std::result::Result<(), String> {
        let topic = Topic::operator_alarms();
        let text = format!(
            "{} is {} (was {}): {}",
            event.alarm_name, event.new_state_value, event.old_state_value, event.new_state_reason
        );
        let message = Message::new(&topic, "alarm", &event.subject(), &text)
            .attribute("alarm", event.alarm_name.clone())
            .attribute("state", event.new_state_value.clone())
            .data(serde_json::to_value(event).map_err(|e| e.to_string())?);
        self.notifier
            .publish(&topic, &message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Platform {
    /// Opens every layer over the store and the blobs.
    pub async fn open(
        store: Arc<dyn Store>,
        blobs: OpenedBlobs,
        file: &FileConfig,
        settings: &LayerSettings,
    ) -> Result<Platform> {
        let exposition = if settings.lambda {
            Exposition::Emf {
                namespace: file.observe.emf_namespace.clone(),
            }
        } else {
            Exposition::Prometheus
        };
        let telemetry = Telemetry::install(exposition).context("metrics")?;
        let mut notify = file.notify.clone();
        notify.public_url = settings.public_url.clone();
        if settings.smtp_url.is_some() {
            notify.mail.smtp_url = settings.smtp_url.clone();
        }
        if settings.smtp_from.is_some() {
            notify.mail.from = settings.smtp_from.clone();
        }
        let (notifier, worker) = ecocityhub_notify::open(store.clone(), &notify)
            .await
            .context("the notification layer")?;
        for topic in [Topic::operator_alarms(), Topic::account_mail()] {
            notifier.create_topic(&topic).await?;
        }
        let rules = Arc::new(
            RuleEngine::load(store.clone(), notifier.clone(), notify.alarms)
                .await
                .context("the alert rules")?,
        );
        let mut observe = file.observe.clone();
        if settings.metrics_bind.is_some() {
            observe.metrics_bind = settings.metrics_bind;
        }
        let mut options = ObserverOptions::new(store.clone(), blobs.store(), telemetry, observe);
        options.sink = Arc::new(AlarmsToOperators {
            notifier: notifier.clone(),
        });
        let observer = Arc::new(Observer::start(options).await.context("monitoring")?);
        let mut edge_config = file.edge.clone();
        edge_config.tls.enabled |= settings.tls;
        let edge = ecocityhub_edge::Edge::new(edge_config).context("the edge")?;
        let waf = Arc::new(ecocityhub_waf::Waf::new(file.waf.clone()).context("the firewall")?);
        let uploads = photo_uploads(&blobs, file, &settings.public_url).await?;
        Ok(Platform {
            uploads,
            blobs,
            worker_heartbeat: worker.heartbeat(),
            worker: tokio::sync::Mutex::new(Some(worker.spawn())),
            notifier,
            rules,
            observer,
            edge,
            waf,
        })
    }

    /// What the API runs on.
    pub fn services(&self) -> ecocityhub_api::Services {
        ecocityhub_api::Services {
            sealer: Some(self.blobs.sealer()),
            notifier: Some(self.notifier.clone()),
            rules: Some(self.rules.clone()),
            audit: Some(self.observer.audit().clone()),
            cache: self.edge.cache().cloned(),
            delivery: None,
            uploads: Some(self.uploads.clone()),
            readiness: vec![Arc::new(ecocityhub_api::HeartbeatCheck {
                name: "delivery_worker",
                heartbeat: self.worker_heartbeat.clone(),
                // The loop comes round every second when idle; a batch may take up to a lease.
                max_gap: std::time::Duration::from_secs(120),
            })],
        }
    }

    /// The whole site behind the edge: firewall outermost, then rate limits, cache and
    /// compression; request ids, metrics and the audit of every write around every route.
    pub fn site(&self, state: AppState, web: ecocityhub_web::WebConfig) -> axum::Router {
        let app = ecocityhub_web::app(state.clone(), web)
            .layer(axum::middleware::from_fn_with_state(
                state,
                ecocityhub_api::audit::audit_requests,
            ))
            .layer(HttpMetricsLayer::new())
            .layer(RequestIdLayer);
        self.edge
            .wrap_with(app, ecocityhub_waf::WafLayer::new(self.waf.clone()))
    }

    /// Stops the delivery worker after its batch, writes the last metrics and signs the audit
    /// trail's digest.
    pub async fn shutdown(&self) {
        if let Some(worker) = self.worker.lock().await.take() {
            worker.shutdown().await;
        }
        if let Err(e) = self.observer.shutdown().await {
            tracing::warn!(error = %e, "monitoring did not shut down cleanly");
        }
    }
}
