//! `ecocityhub serve`: the API and the web pages as a server on this machine, or as a Lambda
//! function.
//!
//! The same `Router` runs either way. When the Lambda runtime starts the process
//! (`AWS_LAMBDA_RUNTIME_API` is set) it is handed to `lambda_http::run`; otherwise it is served
//! with `axum::serve` until SIGTERM or Ctrl-C. Besides the requests, the server runs its periodic
//! tasks: forecasts every hour, housekeeping every minute and hour, and backups on the
//! `[backup]` schedule (`crate::backup::scheduled`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use ecocityhub_api::identity::TrustedIssuer;
use ecocityhub_api::{ApiConfig, AppState};
use ecocityhub_web::WebConfig;

use crate::config::{self, FileConfig};
use crate::platform::{LayerSettings, Platform};
use crate::{demo, open_store, StorageArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080, localhost:8080); port 0
    /// picks a free port, and the address is printed. Default: the config file's bind, else
    /// 127.0.0.1:8080
    #[arg(long, env = "ECOCITYHUB_BIND", value_name = "HOST:PORT", value_parser = config::parse_bind)]
    bind: Option<config::BindAddress>,
    // `serve` makes a new database where there is none (the Quick start: a fresh machine gets
    // the demo city), and says so.
    #[command(flatten)]
    storage: StorageArgs,
    /// Do not load the demo city into an empty database.
    #[arg(long, env = "ECOCITYHUB_NO_DEMO")]
    no_demo: bool,
    /// Load the demo with its time axis shifted to the present (clearly labelled as a replay).
    #[arg(long, env = "ECOCITYHUB_REPLAY")]
    replay: bool,
    /// The URL clients reach this service at: the issuer (`iss`) of its tokens.
    /// Default: http://ADDRESS it listens on.
    #[arg(long, env = "ECOCITYHUB_PUBLIC_URL")]
    public_url: Option<String>,
    /// Also accept access tokens of this Cognito user pool
    /// (https://cognito-idp.REGION.amazonaws.com/POOL_ID); needs --cognito-client-id.
    #[arg(
        long,
        env = "ECOCITYHUB_COGNITO_ISSUER",
        requires = "cognito_client_id"
    )]
    cognito_issuer: Option<String>,
    /// The app client id the Cognito tokens must be issued to.
    #[arg(long, env = "ECOCITYHUB_COGNITO_CLIENT_ID")]
    cognito_client_id: Option<String>,
    /// Cedar policies to use instead of the shipped ones (crates/identity/policies/ecocityhub.cedar).
    #[arg(long, env = "ECOCITYHUB_POLICIES")]
    policies: Option<std::path::PathBuf>,
    /// Draw map tiles under the stations from this URL template
    /// (`https://tile.example.org/{z}/{x}/{y}.png`); without it the map needs no network.
    #[arg(long, env = "ECOCITYHUB_MAP_TILE_URL")]
    map_tile_url: Option<String>,
    /// Attribution of the map tiles, shown under the map.
    #[arg(long, env = "ECOCITYHUB_MAP_TILE_ATTRIBUTION")]
    map_tile_attribution: Option<String>,
    /// The name in the pages' header and titles.
    #[arg(long, env = "ECOCITYHUB_SITE_NAME")]
    site_name: Option<String>,
    /// How often the token-signing keys are read again from the database, in seconds (a
    /// `keys rotate` by another process takes effect within this time). Default: 60.
    #[arg(long, env = "ECOCITYHUB_KEY_REFRESH_SECONDS")]
    key_refresh_seconds: Option<u64>,
    /// Send e-mail through this SMTP server (`smtp://host:port`, `smtps://user:pass@host`).
    /// Without it, mail goes to the log and stays in the outbox.
    #[arg(long, env = "ECOCITYHUB_SMTP_URL")]
    smtp_url: Option<String>,
    /// The sender of e-mail (`EcoCityHub <alerts@city.example>`).
    #[arg(long, env = "ECOCITYHUB_SMTP_FROM")]
    smtp_from: Option<String>,
    /// Serve Prometheus metrics at GET /metrics on this address (a listener of its own, never
    /// the public site). Default: off.
    #[arg(long, env = "ECOCITYHUB_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// Serve HTTPS (HTTP/2) with the certificate of `[edge.tls]`, or a self-signed one made
    /// for its host names and kept in the data directory.
    #[arg(long, env = "ECOCITYHUB_TLS")]
    tls: bool,
}

/// The web pages' settings.
fn web_config(public_url: &str, args: &ServeArgs, file: &FileConfig) -> anyhow::Result<WebConfig> {
    let mut config = WebConfig::new(public_url);
    if let Some(index) = &file.headline_index {
        config.headline_index = index.parse().map_err(anyhow::Error::msg)?;
    }
    config.tile_url = args
        .map_tile_url
        .clone()
        .or_else(|| file.map_tile_url.clone());
    config.tile_attribution = args
        .map_tile_attribution
        .clone()
        .or_else(|| file.map_tile_attribution.clone());
    if let Some(name) = args.site_name.clone().or_else(|| file.site_name.clone()) {
        config.site_name = name;
    }
    config.connect_origins = upload_origins(file);
    Ok(config)
}

/// Where browsers PUT photo uploads other than this server (an S3 bucket), for the pages'
/// `connect-src`. (The bucket needs a CORS rule allowing PUT from the public URL too.)
fn upload_origins(file: &FileConfig) -> Vec<String> {
    let Some(blobs) = &file.blobs else {
        return Vec::new();
    };
    if blobs.backend != ecocityhub_blobs::config::Backend::S3 {
        return Vec::new();
    }
    let s3 = &blobs.s3;
    let endpoint = s3
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    match endpoint {
        Some(e) => vec![e.trim_end_matches('/').to_string()],
        None => {
            let region = s3
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            vec![
                format!("https://{}.s3.{region}.amazonaws.com", s3.bucket),
                format!("https://s3.{region}.amazonaws.com"),
            ]
        }
    }
}

/// The API's settings for a service reachable at `public_url`.
fn api_config(public_url: &str, args: &ServeArgs, file: &FileConfig) -> Result<ApiConfig> {
    let mut config = ApiConfig::default();
    if let Some(path) = &args.policies {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policies {}", path.display()))?;
        config.identity.policies = Some(text);
    }
    config.identity.tokens.issuer = public_url.trim_end_matches('/').to_string();
    file.reports
        .categories
        .check()
        .map_err(|e| anyhow::anyhow!("[reports] {e}"))?;
    config.reports = file.reports.clone();
    if let Some(seconds) = args.key_refresh_seconds.or(file.key_refresh_seconds) {
        config.identity.key_refresh = std::time::Duration::from_secs(seconds);
    }
    // The web pages' "sign in with" flow comes back here.
    config.identity.redirect_uris.push(format!(
        "{}/account/callback",
        config.identity.tokens.issuer
    ));
    if let (Some(issuer), Some(client)) = (&args.cognito_issuer, &args.cognito_client_id) {
        config.identity.trusted_issuer = Some(TrustedIssuer::cognito(issuer, client));
    }
    config.identity.oidc_providers = config::oidc_providers(file, |k| std::env::var(k).ok())?;
    for p in &config.identity.oidc_providers {
        tracing::info!(provider = %p.name, issuer = %p.issuer, "sign-in through an outside OIDC provider enabled");
    }
    Ok(config)
}

/// Is this process running under the AWS Lambda runtime?
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// The address to listen on: the flag or variable, the file's `bind`, else 127.0.0.1:8080.
fn bind_address(args: &ServeArgs, file: &FileConfig) -> Result<config::BindAddress> {
    match (&args.bind, &file.bind) {
        (Some(bind), _) => Ok(bind.clone()),
        (None, Some(text)) => {
            config::parse_bind(text).map_err(|e| anyhow::anyhow!("bind in the config file: {e}"))
        }
        (None, None) => Ok(config::parse_bind("127.0.0.1:8080").expect("valid address")),
    }
}

pub async fn run(mut args: ServeArgs, file: &FileConfig) -> Result<()> {
    let started = Instant::now();
    // Checked before anything is opened or created.
    let bind = bind_address(&args, file)?;
    args.storage = args.storage.creating();
    let store = open_store(&args.storage, file).await?;
    let demo_loaded = load_demo_if_empty(&args, file, store.as_ref()).await?;
    let opened = crate::open_blobs(&args.storage, file).await?;
    tracing::info!(blobs = %opened.store().describe(), keys = %opened.keys.describe(), "blob store open");
    let tls = args.tls || file.edge.tls.enabled;
    let public_url = args.public_url.clone().or_else(|| file.public_url.clone());

    if in_lambda() {
        let public_url = public_url.context(
            "set ECOCITYHUB_PUBLIC_URL to the API's URL: it is the issuer of the tokens",
        )?;
        let (platform, state) =
            open_platform(&store, opened, file, &args, &public_url, tls, true).await?;
        let app = platform.site(state, web_config(&public_url, &args, file)?);
        tracing::info!(store = store.backend().name(), "running under AWS Lambda");
        return lambda_http::run(app)
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }

    let listener = tokio::net::TcpListener::bind(&bind.addrs[..])
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls { "https" } else { "http" };
    let public_url = public_url.unwrap_or_else(|| format!("{scheme}://{addr}"));
    let (platform, state) =
        open_platform(&store, opened, file, &args, &public_url, tls, false).await?;
    if demo_loaded {
        // The demo city comes with forecasts: train its models in the background.
        let job = store
            .insert_job(
                r#"{"stations":[],"parameters":[],"promote":false}"#,
                Some("demo"),
                chrono::Utc::now(),
            )
            .await?;
        tracing::info!(job = job.id, "queued the demo city's first training job");
    }
    state.jobs().clone().spawn();
    tokio::spawn(refresh_forecasts_hourly(
        state.clone(),
        platform.rules.clone(),
    ));
    tokio::spawn(housekeeping(
        state.clone(),
        platform.blobs.clone(),
        platform.rules.clone(),
    ));
    if let Some(backups) = crate::backup::scheduled(&args.storage, file, &platform.blobs)? {
        tokio::spawn(backups);
    }
    let app = platform.site(state, web_config(&public_url, &args, file)?);
    // Tests and scripts read this line to find the port.
    println!("listening on {scheme}://{addr}");
    if let Some(metrics) = platform.observer.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    tracing::info!(%addr, %public_url, store = store.backend().name(), startup_ms = started.elapsed().as_millis() as u64, "serving");
    serve_site(listener, app, file, &args, tls).await?;
    platform.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn settings(args: &ServeArgs, public_url: &str, tls: bool, lambda: bool) -> LayerSettings {
    LayerSettings {
        public_url: public_url.trim_end_matches('/').to_string(),
        smtp_url: args.smtp_url.clone(),
        smtp_from: args.smtp_from.clone(),
        metrics_bind: args.metrics_bind,
        tls,
        lambda,
    }
}

/// Loads the demo city into an empty database unless told not to; returns whether it did.
async fn load_demo_if_empty(
    args: &ServeArgs,
    file: &FileConfig,
    store: &dyn ecocityhub_store::Store,
) -> Result<bool> {
    let wanted = !args.no_demo && file.demo.unwrap_or(true) && !in_lambda();
    if !wanted || !store.stations().await?.is_empty() {
        return Ok(false);
    }
    let replay = args.replay || file.replay.unwrap_or(false);
    tracing::info!(replay, "empty database: loading the demo city");
    demo::load(store, replay)
        .await
        .context("loading the demo data")?;
    Ok(true)
}

/// Serves the site until SIGTERM or Ctrl-C: HTTP, or HTTPS with an optional redirect
/// listener, through the edge's server (header and body read timeouts, HTTP/2).
async fn serve_site(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    file: &FileConfig,
    args: &ServeArgs,
    tls: bool,
) -> Result<()> {
    let server = file.edge.server.clone();
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown_signal()));
    if !tls {
        return Ok(ecocityhub_edge::serve(listener, app, &server, shutdown).await?);
    }
    let mut tls_config = file.edge.tls.clone();
    tls_config.enabled = true;
    let data_dir = config::data_dir(args.storage.data_dir.clone(), file);
    let certificate =
        ecocityhub_edge::Tls::load(&tls_config, &data_dir).context("the TLS certificate")?;
    if let Some(redirect) = tls_config.redirect_http {
        let redirect_listener = tokio::net::TcpListener::bind(redirect)
            .await
            .with_context(|| format!("cannot listen on {redirect} for the HTTP redirect"))?;
        let port = listener.local_addr()?.port();
        let (server, shutdown) = (server.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) =
                ecocityhub_edge::serve_redirect(redirect_listener, port, &server, shutdown).await
            {
                tracing::warn!(error = %e, "the HTTP redirect listener stopped");
            }
        });
    }
    let hsts = ecocityhub_edge::HstsLayer::from_config(&tls_config);
    Ok(ecocityhub_edge::serve_tls(listener, app, &server, &certificate, hsts, shutdown).await?)
}

/// Every layer, and the API's state on them: the same for the server and under Lambda.
async fn open_platform(
    store: &Arc<dyn ecocityhub_store::Store>,
    opened: ecocityhub_blobs::OpenedBlobs,
    file: &FileConfig,
    args: &ServeArgs,
    public_url: &str,
    tls: bool,
    lambda: bool,
) -> Result<(Platform, AppState)> {
    let platform = Platform::open(
        store.clone(),
        opened,
        file,
        &settings(args, public_url, tls, lambda),
    )
    .await?;
    let state = AppState::open_with(
        store.clone(),
        platform.blobs.store(),
        api_config(public_url, args, file)?,
        platform.services(),
    )
    .await?;
    Ok((platform, state))
}

/// The hourly batch (the future Lambda worker on a schedule): recompute every serving model's
/// forecast so requests find it ready.
async fn refresh_forecasts_hourly(state: AppState, rules: Arc<ecocityhub_notify::RuleEngine>) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    every_hour.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every_hour.tick().await;
        let started = Instant::now();
        let (done, failures) = state.forecaster().refresh_all(state.generation()).await;
        tracing::info!(
            forecasts = done,
            failed = failures.len(),
            ms = started.elapsed().as_millis() as u64,
            "hourly forecast refresh"
        );
        for f in failures {
            tracing::debug!(failure = %f, "forecast not refreshed");
        }
        forecast_alerts(&state, &rules).await;
    }
}

/// The forecast alert rules look at every refreshed forecast (its hourly AQI); the cached
/// answers of each refreshed station are dropped.
async fn forecast_alerts(state: &AppState, rules: &ecocityhub_notify::RuleEngine) {
    let now = chrono::Utc::now();
    let Ok(models) = state.store().serving_models().await else {
        return;
    };
    for model in models {
        state.forecasts_changed(model.station.as_str());
        let Ok(forecast) = state
            .forecaster()
            .forecast(&model.station, model.parameter, state.generation())
            .await
        else {
            continue;
        };
        let hours: Vec<(chrono::DateTime<chrono::Utc>, u32)> = forecast
            .hours
            .iter()
            .filter_map(|h| {
                let time = chrono::DateTime::parse_from_rfc3339(&h.time).ok()?;
                Some((time.with_timezone(&chrono::Utc), h.aqi.as_ref()?.aqi))
            })
            .collect();
        if let Err(e) = rules.on_forecast(model.station.as_str(), &hours, now).await {
            tracing::warn!(error = %e, station = %model.station, "forecast alerts not checked");
        }
    }
}

/// Upkeep every minute: silent stations and digests (alert rules); every hour: expired
/// attempt counters, old blob versions, unconfirmed subscriptions past three days.
async fn housekeeping(
    state: AppState,
    blobs: ecocityhub_blobs::OpenedBlobs,
    rules: Arc<ecocityhub_notify::RuleEngine>,
) {
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    every_minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut minutes = 0u64;
    loop {
        every_minute.tick().await;
        let now = chrono::Utc::now();
        if let Err(e) = rules.check_silent_stations(now).await {
            tracing::warn!(error = %e, "silent stations not checked");
        }
        if let Err(e) = rules.send_digests(now).await {
            tracing::warn!(error = %e, "digests not sent");
        }
        minutes += 1;
        if minutes % 60 != 1 {
            continue;
        }
        if let Err(e) = state.store().purge_unconfirmed(now).await {
            tracing::warn!(error = %e, "unconfirmed subscriptions not purged");
        }
        match state
            .store()
            .purge_attempts(now - chrono::Duration::days(2))
            .await
        {
            Ok(n) => tracing::debug!(purged = n, "old attempt counters forgotten"),
            Err(e) => tracing::warn!(error = %e, "could not purge attempt counters"),
        }
        match blobs.versions().expire_versions(now).await {
            Ok(expired) => tracing::debug!(?expired, "old blob versions expired"),
            Err(e) => tracing::warn!(error = %e, "could not expire blob versions"),
        }
        if let Some(uploads) = state.photo_uploads() {
            let blobs = uploads.blobs().clone();
            match ecocityhub_blobs::uploads::expire_uploads(blobs.as_ref(), uploads.config(), now)
                .await
            {
                Ok(expired) => tracing::debug!(?expired, "unattached uploads expired"),
                Err(e) => tracing::warn!(error = %e, "could not expire unattached uploads"),
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
