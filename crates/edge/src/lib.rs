//! EcoCityHub's edge: what CloudFront, Shield and ACM do in front of the AWS deployment, as
//! tower layers around the whole site and as the embedded server, the same on one machine and
//! under Lambda.
//!
//! [`Edge::wrap`] puts the layers around a `Router`, outermost first:
//!
//! 1. [`client_addr`] — the client address (`ClientAddr`; proxies only when trusted);
//! 2. [`load_shed`] — a cap on requests in flight, quick `503`s past it;
//! 3. [`rate_limit`] — rate-based rules per address and credential, `429`s with `RateLimit`;
//! 4. the WAF slot ([`Edge::wrap_with`] takes any `tower::Layer`);
//! 5. [`compression::NegotiateLayer`] and [`cache`] — the shared response cache, ETags, `304`;
//! 6. [`compression`] — brotli / zstd / gzip of text answers, streamed ones included.
//!
//! [`server`] serves a `Router` with header and body read timeouts, HTTP/1.1 and HTTP/2, plain
//! or TLS ([`tls`]: files reloaded on change or a self-signed certificate, HSTS, an
//! HTTP → HTTPS redirect listener). [`config::EdgeConfig`] holds every setting. [`bench`] has
//! the measurements the binary's `bench` prints.

pub mod bench;
pub mod cache;
pub mod client_addr;
pub mod compression;
pub mod config;
pub mod load_shed;
pub mod pattern;
pub mod problem;
pub mod rate_limit;
pub mod server;
pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

pub use cache::{CacheStats, EdgeCache};
pub use client_addr::{AddrSource, ClientAddr};
pub use config::EdgeConfig;
pub use server::{serve, serve_redirect, serve_tls};
pub use tls::{HstsLayer, Tls, TlsError};

/// The service inside the WAF slot (cache, compression and the app), and the type every stage
/// is boxed to.
pub type EdgeService = BoxCloneSyncService<Request, Response, Infallible>;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    RateRule(#[from] rate_limit::RuleError),
    #[error(transparent)]
    Cache(#[from] cache::CacheConfigError),
}

/// The edge's shared state: one per process, cheap to clone.
#[derive(Clone)]
pub struct Edge {
    config: Arc<EdgeConfig>,
    cache: Option<EdgeCache>,
    limiter: Option<Arc<rate_limit::RateLimiter>>,
    shed: Option<load_shed::LoadShedLayer>,
}

impl Edge {
    /// Checks `config` and makes the shared state (rate-limit buckets, the cache).
    pub fn new(config: EdgeConfig) -> Result<Edge, EdgeError> {
        let on = config.enabled;
        let limits = &config.shield.rate_limits;
        let limiter = if on && limits.enabled && !limits.rules.is_empty() {
            Some(Arc::new(rate_limit::RateLimiter::new(
                limits,
                &config.session_cookies,
            )?))
        } else {
            None
        };
        let cache = if on && config.cache.enabled {
            Some(EdgeCache::new(
                &config.cache,
                &config.session_cookies,
                config.compression.enabled,
            )?)
        } else {
            None
        };
        let shed = (on && config.shield.max_concurrent_requests > 0).then(|| {
            load_shed::LoadShedLayer::new(
                config.shield.max_concurrent_requests,
                config.shield.overload_retry_after,
                config.shield.shed_exempt_paths.clone(),
            )
        });
        Ok(Edge {
            config: Arc::new(config),
            cache,
            limiter,
            shed,
        })
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// The cache, to invalidate by tags when data change (`None` when the cache is off).
    pub fn cache(&self) -> Option<&EdgeCache> {
        self.cache.as_ref()
    }

    pub fn rate_limiter(&self) -> Option<&Arc<rate_limit::RateLimiter>> {
        self.limiter.as_ref()
    }

    /// `app` behind every layer of the edge (none when `enabled = false`).
    pub fn wrap(&self, app: Router) -> Router {
        self.wrap_with(app, Identity::new())
    }

    /// `app` behind the edge with `waf` in its slot: after the rate limits (floods are refused
    /// before inspection), before the cache (cached answers are inspected requests too). `waf`
    /// is applied even when the edge itself is off.
    pub fn wrap_with<L>(&self, app: Router, waf: L) -> Router
    where
        L: Layer<EdgeService>,
        L::Service: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let c = &self.config;
        let on = c.enabled;
        let mut svc = EdgeService::new(compression::OriginBodyLayer.layer(app));
        if on && c.compression.enabled {
            let compressed = compression::compression_layer(&c.compression)
                .layer(svc)
                .map_response(|r| r.map(Body::new));
            svc = EdgeService::new(compressed);
        }
        if let Some(cache) = &self.cache {
            svc = EdgeService::new(cache::CacheLayer::new(cache.clone()).layer(svc));
        }
        if on && c.compression.enabled {
            let encodings = compression::Encodings::from_config(&c.compression);
            svc = EdgeService::new(compression::NegotiateLayer::new(encodings).layer(svc));
        }
        svc = EdgeService::new(waf.layer(svc));
        if let Some(limiter) = &self.limiter {
            svc = EdgeService::new(rate_limit::RateLimitLayer::new(limiter.clone()).layer(svc));
        }
        if let Some(shed) = &self.shed {
            svc = EdgeService::new(shed.layer(svc));
        }
        if on {
            svc = EdgeService::new(client_addr::ClientAddrLayer::new(&c.client_addr).layer(svc));
        }
        Router::new().fallback_service(svc)
    }
}
