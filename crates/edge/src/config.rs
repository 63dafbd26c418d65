//! [`EdgeConfig`]: every setting of the edge, read from the binary's TOML file (`[edge]`), with
//! defaults that just work — the edge is on, rate limits and the cache are on, TLS is off.
//!
//! Durations are written as seconds (`30`, `0.5`) or as text (`"500ms"`, `"5m"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Everything the edge does, in one place.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// `false`: [`crate::Edge::wrap`] hands the router back untouched.
    pub enabled: bool,
    /// Cookies that carry a signed-in session: a request with one is never answered from the
    /// cache and is rate limited per session as well as per address.
    pub session_cookies: Vec<String>,
    pub client_addr: ClientAddrConfig,
    pub shield: ShieldConfig,
    pub cache: CacheConfig,
    pub compression: CompressionConfig,
    pub server: ServerConfig,
    pub tls: TlsConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            enabled: true,
            // ecocityhub_web::session::{session_cookie, oauth_cookie}; the CSRF cookie alone does
            // not make a request private.
            session_cookies: vec![
                "ecch-session".into(),
                "__Host-ecch-session".into(),
                "ecch-oauth".into(),
                "__Host-ecch-oauth".into(),
            ],
            client_addr: ClientAddrConfig::default(),
            shield: ShieldConfig::default(),
            cache: CacheConfig::default(),
            compression: CompressionConfig::default(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Where the client address comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientAddrConfig {
    /// Proxies (CIDRs) whose `CloudFront-Viewer-Address` / `X-Forwarded-For` are believed.
    /// Empty (the default): those headers are ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
}

/// Shield: rate-based rules and load shedding.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShieldConfig {
    /// Requests served at once; one more is answered `503` at once. 0: no cap.
    pub max_concurrent_requests: usize,
    /// The `Retry-After` of an overload answer.
    #[serde(with = "duration")]
    pub overload_retry_after: Duration,
    /// Paths never shed (liveness checks).
    pub shed_exempt_paths: Vec<String>,
    pub rate_limits: RateLimitsConfig,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        ShieldConfig {
            max_concurrent_requests: 1024,
            overload_retry_after: Duration::from_secs(1),
            shed_exempt_paths: vec!["/healthz".into(), "/readyz".into()],
            rate_limits: RateLimitsConfig::default(),
        }
    }
}

/// Rate-based rules, evaluated like AWS WAF's: every rule whose scope matches a request counts
/// it, and the request is refused when any of them is over its limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    /// Clients tracked per rule at most (memory stays bounded: about 64 bytes each). Past it,
    /// clients not seen recently share one bucket per rule until the state is trimmed.
    pub max_tracked_keys: usize,
    /// Addresses never limited (e.g. a monitoring host). Empty by default.
    pub exempt: Vec<IpNet>,
    /// Send `RateLimit` / `RateLimit-Policy` on every answer a rule counted, not only on 429s.
    pub headers_on_success: bool,
    pub rules: Vec<RateRule>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            max_tracked_keys: 100_000,
            exempt: Vec::new(),
            headers_on_success: true,
            rules: default_rules(),
        }
    }
}

/// One rate-based rule: at most `limit` requests per `window` (a GCRA bucket: a burst of
/// `limit`, refilled one request every `window / limit`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// Its name in `RateLimit-Policy` and in the logs.
    pub name: String,
    /// Path patterns: `/exact`, `/api/v1/stations/{id}` (one segment), `/static/*` (the rest).
    pub paths: Vec<String>,
    /// Methods counted; empty: all.
    #[serde(default)]
    pub methods: Vec<String>,
    pub limit: u32,
    #[serde(with = "duration")]
    pub window: Duration,
    /// What is counted: the client address, or the credential (device key, bearer token,
    /// session) — requests without one are not counted by a `credential` rule.
    #[serde(default)]
    pub key: RateKey,
}

/// What a rate rule counts per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client address (IPv6 per /64, as one host usually holds a whole /64).
    #[default]
    Ip,
    /// A hash of the `X-Api-Key` / `Authorization` credential or session cookie.
    Credential,
}

fn rule(
    name: &str,
    methods: &[&str],
    paths: &[&str],
    limit: u32,
    secs: u64,
    key: RateKey,
) -> RateRule {
    RateRule {
        name: name.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        limit,
        window: Duration::from_secs(secs),
        key,
    }
}

/// The default rules: sign-in and account flows tight, ingest per device, reads generous.
pub fn default_rules() -> Vec<RateRule> {
    vec![
        rule(
            "auth",
            &["POST"],
            &[
                "/api/v1/auth/sign-in",
                "/api/v1/auth/sign-up",
                "/api/v1/auth/confirm",
                "/api/v1/auth/resend-code",
                "/api/v1/auth/forgot-password",
                "/api/v1/auth/reset-password",
                "/oauth2/authorize",
                "/account/sign-in",
                "/account/sign-up",
                "/account/confirm",
                "/account/resend-code",
                "/account/forgot-password",
                "/account/reset-password",
            ],
            20,
            60,
            RateKey::Ip,
        ),
        rule(
            "tokens",
            &["POST"],
            &["/oauth2/token", "/api/v1/auth/refresh"],
            60,
            60,
            RateKey::Ip,
        ),
        rule(
            "ingest-device",
            &["POST"],
            &["/api/v1/readings"],
            120,
            60,
            RateKey::Credential,
        ),
        rule(
            "writes",
            &["POST", "PUT", "PATCH", "DELETE"],
            &["/*"],
            600,
            60,
            RateKey::Ip,
        ),
        rule("reads", &["GET", "HEAD"], &["/*"], 3000, 60, RateKey::Ip),
    ]
}

/// The shared response cache (CloudFront's role).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of stored answers at most (bodies, headers and keys).
    pub max_bytes: u64,
    /// A larger answer is served but not stored.
    pub max_entry_bytes: u64,
    /// Answers up to this size get a strong `ETag` (and `304`s) even when not stored.
    pub etag_max_bytes: u64,
    /// Store answers of routes without a policy when the origin marks them `public` with a
    /// lifetime (static files).
    pub store_origin_public: bool,
    /// Per-route policies; the first whose path matches applies.
    pub routes: Vec<CacheRoute>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            etag_max_bytes: 16 * 1024 * 1024,
            store_origin_public: true,
            routes: default_cache_routes(),
        }
    }
}

/// How one route's public `GET`s are cached: the `Cache-Control` the edge sets when the origin
/// set none, and the tags its entries carry (`{name}` is replaced by that path segment).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRoute {
    pub path: String,
    /// How long the edge serves it without asking the origin (`s-maxage`).
    #[serde(with = "duration")]
    pub s_maxage: Duration,
    /// How long browsers keep it (`max-age`; 0: they revalidate with the `ETag` each time).
    #[serde(default, with = "duration")]
    pub max_age: Duration,
    /// How long past `s_maxage` a stale copy is served while one request refreshes it.
    #[serde(default, with = "duration")]
    pub stale_while_revalidate: Duration,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Replace the origin's own `Cache-Control` (except `no-store`) by this policy. For pages
    /// whose framework marks every answer `no-cache, private` by default although an anonymous
    /// visitor's copy is the same for all; answers that set a cookie, and requests with a
    /// session or credential, are still never stored.
    #[serde(default)]
    pub override_origin: bool,
}

fn route(path: &str, s_maxage: u64, swr: u64, tags: &[&str]) -> CacheRoute {
    CacheRoute {
        path: path.into(),
        s_maxage: Duration::from_secs(s_maxage),
        max_age: Duration::ZERO,
        stale_while_revalidate: Duration::from_secs(swr),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        override_origin: false,
    }
}

/// A page route: the web crate marks pages `no-cache, private` unless told otherwise, while an
/// anonymous visitor's home, station and model pages carry nothing of the visitor (no CSRF
/// token, no name), so the policy replaces that default.
fn page(path: &str, s_maxage: u64, swr: u64, tags: &[&str]) -> CacheRoute {
    CacheRoute {
        override_origin: true,
        ..route(path, s_maxage, swr, tags)
    }
}

/// The default policies and their tags (see [`crate::cache`] for the tag vocabulary).
pub fn default_cache_routes() -> Vec<CacheRoute> {
    vec![
        route("/api/v1/latest", 15, 30, &["latest", "stations"]),
        route("/api/v1/stations", 60, 60, &["stations"]),
        route(
            "/api/v1/stations/{id}",
            60,
            60,
            &["stations", "station:{id}"],
        ),
        route("/api/v1/stations/{id}/readings", 60, 60, &["station:{id}"]),
        route("/api/v1/stations/{id}/anomalies", 60, 60, &["station:{id}"]),
        route(
            "/api/v1/stations/{id}/forecast",
            300,
            300,
            &["forecast:{id}"],
        ),
        route("/api/v1/parameters", 3600, 3600, &["parameters"]),
        route("/api/v1/ml/models", 60, 60, &["models"]),
        route("/api/v1/ml/models/{id}", 60, 60, &["models"]),
        route("/api/v1/ml/models/{id}/report", 300, 300, &["models"]),
        route(
            "/api/v1/ml/models/{id}/report/{file}",
            300,
            300,
            &["models"],
        ),
        route("/api/openapi.json", 3600, 3600, &["openapi"]),
        route("/api/docs", 3600, 3600, &["openapi"]),
        route("/api/v1/reports/pins", 15, 30, &["reports"]),
        page("/", 15, 30, &["latest", "stations", "reports"]),
        page(
            "/stations/{id}",
            30,
            30,
            &["latest", "stations", "station:{id}", "forecast:{id}"],
        ),
        page("/models/{id}", 60, 60, &["models"]),
    ]
}

/// Compression of text answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    pub enabled: bool,
    pub gzip: bool,
    pub br: bool,
    pub zstd: bool,
    /// The level of every algorithm (gzip 1–9, brotli 0–11, zstd 1–22); the default 4 costs
    /// little CPU on large dynamic answers and gives most of the gain.
    pub level: i32,
    /// Smaller answers are sent as they are.
    pub min_bytes: u16,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            gzip: true,
            br: true,
            zstd: true,
            level: 4,
            min_bytes: 256,
        }
    }
}

/// The embedded server's connection handling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// A connection that has not sent a whole request head within this time (also while idle
    /// between keep-alive requests) is closed: the slow-loris defence.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time of its first read.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// A TLS handshake must finish within this time.
    #[serde(with = "duration")]
    pub tls_handshake_timeout: Duration,
    /// On shutdown, requests in flight get this long to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Speak HTTP/2 (ALPN `h2` over TLS, prior knowledge on plain TCP).
    pub http2: bool,
    pub http2_max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            http2: true,
            http2_max_concurrent_streams: 128,
        }
    }
}

/// HTTPS (ACM's role).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM certificate chain and private key; reloaded when they change. Without them a
    /// self-signed certificate for `hosts` is made once and kept in the data directory.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Names (and addresses) of the self-signed certificate.
    pub hosts: Vec<String>,
    /// How often the certificate files are checked for a change.
    #[serde(with = "duration")]
    pub reload_interval: Duration,
    /// Also listen here for plain HTTP and answer `308` to the HTTPS address.
    pub redirect_http: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age` on HTTPS answers; 0: no header.
    #[serde(with = "duration")]
    pub hsts_max_age: Duration,
    pub hsts_include_subdomains: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            cert: None,
            key: None,
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            reload_interval: Duration::from_secs(10),
            redirect_http: None,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
            hsts_include_subdomains: false,
        }
    }
}

/// Serde for durations: a number of seconds or a humantime string (`"250ms"`, `"5m"`).
pub mod duration {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration: seconds (30, 0.5) or text (\"500ms\", \"5m\")")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| E::custom(format!("{v} is not a duration in seconds")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim())
                .map_err(|e| E::custom(format!("{v:?} is not a duration: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults_and_the_edge_is_on() {
        let c: EdgeConfig = toml::from_str("").unwrap();
        assert!(c.enabled && c.cache.enabled && c.shield.rate_limits.enabled);
        assert!(!c.tls.enabled);
        assert!(c.client_addr.trusted_proxies.is_empty());
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn durations_are_seconds_or_text_and_typos_are_refused() {
        let c: EdgeConfig = toml::from_str(
            "[server]\nheader_read_timeout = 0.5\nbody_read_timeout = \"2m\"\n\
             [client_addr]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(120));
        assert_eq!(c.client_addr.trusted_proxies.len(), 1);
        let e = toml::from_str::<EdgeConfig>("[server]\nheader_read_timout = 1\n").unwrap_err();
        assert!(e.to_string().contains("header_read_timout"), "{e}");
        let e =
            toml::from_str::<EdgeConfig>("[server]\nheader_read_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn the_configuration_round_trips() {
        let c = EdgeConfig::default();
        let text = toml::to_string(&c).unwrap();
        let back: EdgeConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            back.shield.rate_limits.rules.len(),
            c.shield.rate_limits.rules.len()
        );
        assert_eq!(back.cache.routes[0].s_maxage, Duration::from_secs(15));
    }
}
