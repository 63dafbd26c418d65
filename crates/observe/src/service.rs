//! [`Observer`]: the observe layer's background work on one machine, started in one call.
//! Once a minute (just after the minute ends) it samples the gauges (database pool, silent
//! stations, the newest backup's age and any sampler given), writes the minute's rollups,
//! evaluates the alarms and hands their changes to the sink; every 10 minutes it expires old
//! rollups; every digest interval it signs a digest and applies audit retention. On shutdown it
//! writes the minute in progress, drains the audit queue and signs a last digest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ecocityhub_blobs::BlobStore;
use ecocityhub_store::Store;
use futures::future::BoxFuture;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::alarms::{AlarmEngine, AlarmSink, LogSink};
use crate::audit::{Audit, AuditKey, Digester};
use crate::config::ObserveConfig;
use crate::prometheus::{serve_metrics, MetricsServer};
use crate::recorder::Telemetry;
use crate::rollups::{align, RollupWriter, Rollups};
use crate::{figures, stations, Result};

/// Something to sample before each minute's rollup (it sets gauges through [`figures`]).
pub type Sampler = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The age of the newest backup, when there is one.
pub type BackupAge = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// What an [`Observer`] works with.
pub struct ObserverOptions {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub telemetry: Telemetry,
    pub config: ObserveConfig,
    /// Where alarm changes go (default: the log).
    pub sink: Arc<dyn AlarmSink>,
    pub samplers: Vec<Sampler>,
    /// Until backups exist, `None` (the backup alarm stays INSUFFICIENT_DATA).
    pub backup_age: Option<BackupAge>,
}

impl ObserverOptions {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        telemetry: Telemetry,
        config: ObserveConfig,
    ) -> Self {
        ObserverOptions {
            store,
            blobs,
            telemetry,
            config,
            sink: Arc::new(LogSink),
            samplers: Vec::new(),
            backup_age: None,
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: ObserveConfig,
    writer: Mutex<RollupWriter>,
    alarms: AlarmEngine,
    digester: Digester,
    samplers: Vec<Sampler>,
    backup_age: Option<BackupAge>,
    last_digest: Mutex<Option<DateTime<Utc>>>,
    ticks: Mutex<u64>,
}

/// The running observe layer.
pub struct Observer {
    inner: Arc<Inner>,
    audit: Audit,
    rollups: Rollups,
    telemetry: Telemetry,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    metrics: Mutex<Option<MetricsServer>>,
    metrics_addr: Option<SocketAddr>,
}

impl Observer {
    /// Validates the configuration, opens the digest key (the file, or the store's), installs
    /// the alarms, starts the audit writer, the metrics listener (when configured and the
    /// telemetry exposes Prometheus) and the minute loop.
    pub async fn start(o: ObserverOptions) -> Result<Observer> {
        o.config.validate()?;
        let key = match &o.config.audit.signing_key_file {
            Some(path) => AuditKey::in_file(path)?,
            None => AuditKey::in_store(o.store.as_ref()).await?,
        };
        let digester = Digester::open(o.store.clone(), o.blobs.clone(), key).await?;
        let rollups = Rollups::new(o.store.clone(), o.config.rollups.clone());
        let alarms = AlarmEngine::new(o.store.clone(), rollups.clone(), o.sink.clone());
        alarms.install(&o.config.alarms, Utc::now()).await?;
        let audit = Audit::start(o.store.clone());
        let (metrics, metrics_addr) = match (o.config.metrics_bind, o.telemetry.prometheus()) {
            (Some(bind), Some(_)) => {
                let server = serve_metrics(bind, o.telemetry.clone()).await?;
                let addr = server.local_addr;
                (Some(server), Some(addr))
            }
            _ => (None, None),
        };
        let last_digest = digester.last_digest_at().await?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(RollupWriter::new(
                o.store.clone(),
                o.telemetry.clone(),
                o.config.rollups.clone(),
            )),
            store: o.store,
            config: o.config,
            alarms,
            digester,
            samplers: o.samplers,
            backup_age: o.backup_age,
            last_digest: Mutex::new(last_digest),
            ticks: Mutex::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(every_minute(inner.clone(), stopped));
        Ok(Observer {
            inner,
            audit,
            rollups,
            telemetry: o.telemetry,
            stop,
            task: Mutex::new(Some(task)),
            metrics: Mutex::new(metrics),
            metrics_addr,
        })
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn alarms(&self) -> &AlarmEngine {
        &self.inner.alarms
    }

    pub fn rollups(&self) -> &Rollups {
        &self.rollups
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn digester(&self) -> &Digester {
        &self.inner.digester
    }

    /// Where `GET /metrics` listens, when it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// One round of the minute loop at `now`, writing the minute before it (tests call it).
    pub async fn tick(&self, now: DateTime<Utc>) {
        self.inner.tick(now, align(now.timestamp(), 60) - 60).await;
    }

    /// Stops the loop, writes the minute in progress, drains the audit queue, signs a last
    /// digest and closes the metrics listener.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
        let now = Utc::now();
        self.inner.flush(align(now.timestamp(), 60)).await;
        self.audit.close().await;
        self.inner.digester.write_digest(now).await?;
        if let Some(server) = self.metrics.lock().await.take() {
            server.stop().await;
        }
        Ok(())
    }
}

async fn every_minute(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    loop {
        let now = Utc::now();
        let next = align(now.timestamp(), 60) + 60;
        // Two seconds into the new minute, so the minute before is complete.
        let wait = Duration::from_millis(
            ((next - now.timestamp()) * 1000 + 2000 - i64::from(now.timestamp_subsec_millis()))
                .max(0) as u64,
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
        let now = Utc::now();
        inner.tick(now, align(now.timestamp(), 60) - 60).await;
    }
}

impl Inner {
    async fn sample(&self, now: DateTime<Utc>) {
        figures::db_pool(self.store.pool_status());
        match stations::silent_stations(
            self.store.as_ref(),
            now,
            self.config.silent_station_seconds,
            self.config.retired_station_seconds,
        )
        .await
        {
            Ok(silent) => figures::stations_silent(silent.len() as u64),
            Err(e) => tracing::warn!(error = %e, "could not count silent stations"),
        }
        if let Some(age) = self.backup_age.as_ref().and_then(|f| f()) {
            figures::backup_age(age);
        }
        for s in &self.samplers {
            s().await;
        }
    }

    async fn flush(&self, minute: i64) {
        if !self.config.rollups.enabled {
            return;
        }
        if let Err(e) = self.writer.lock().await.flush(minute).await {
            tracing::warn!(error = %e, "metric rollups not written");
        }
    }

    async fn tick(&self, now: DateTime<Utc>, minute: i64) {
        self.sample(now).await;
        self.flush(minute).await;
        if self.config.rollups.enabled {
            if let Err(e) = self.alarms.evaluate(minute + 60, now).await {
                tracing::warn!(error = %e, "alarms not evaluated");
            }
            if let Err(e) = self.alarms.deliver(now).await {
                tracing::warn!(error = %e, "alarm changes not delivered");
            }
        }
        let tick = {
            let mut t = self.ticks.lock().await;
            *t += 1;
            *t
        };
        if tick % 10 == 1 {
            if let Err(e) = self.writer.lock().await.expire(now.timestamp()).await {
                tracing::warn!(error = %e, "old rollups not expired");
            }
        }
        self.audit_maintenance(now).await;
    }

    async fn audit_maintenance(&self, now: DateTime<Utc>) {
        let interval = chrono::Duration::seconds(self.config.audit.digest_interval_seconds as i64);
        let mut last = self.last_digest.lock().await;
        if last.is_some_and(|t| now - t < interval) {
            return;
        }
        match self.digester.write_digest(now).await {
            Ok(d) => *last = Some(d.created_at),
            Err(e) => {
                tracing::error!(error = %e, "audit digest not written");
                return;
            }
        }
        if self.config.audit.retention_days > 0 {
            let cutoff = now - chrono::Duration::days(i64::from(self.config.audit.retention_days));
            if let Err(e) = self.digester.expire(cutoff, now).await {
                tracing::warn!(error = %e, "audit retention not applied");
            }
        }
    }
}
