//! Shield's rate-based rules: per client address and per credential, a limit and a window per
//! route group, answered `429` problem+json with `Retry-After` and the IETF `RateLimit` /
//! `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers-09 syntax:
//! `RateLimit-Policy: "auth";q=20;w=60` and `RateLimit: "auth";r=0;t=3`).
//!
//! Each rule is a keyed GCRA limiter (`governor`): `limit` per `window` is a burst of `limit`
//! refilled one request every `window / limit`. Memory is bounded: state that has refilled is
//! dropped every minute (`retain_recent`), and past `max_tracked_keys` clients per rule, clients
//! share one overflow bucket of that rule until trimming frees room.
//!
//! A credential is never verified here: its key is a hash of the whole `X-Api-Key`,
//! `Authorization` or session-cookie value, so a forged key opens a bucket of its own instead of
//! draining the bucket of the device or user it names.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tower::{Layer, Service};

use crate::client_addr::ClientAddr;
use crate::config::{RateKey, RateLimitsConfig, RateRule};
use crate::pattern::{PathPattern, PatternError};
use crate::problem::{ceil_secs, problem, retry_after_secs};

type KeyedLimiter =
    governor::RateLimiter<u128, DashMapStateStore<u128>, DefaultClock, StateInformationMiddleware>;

/// A rule that cannot be used.
#[derive(Debug, Error)]
pub enum RuleError {
    #[error("rate rule {rule:?}: {source}")]
    Pattern {
        rule: String,
        #[source]
        source: PatternError,
    },
    #[error("rate rule {rule:?}: {reason}")]
    Invalid { rule: String, reason: String },
}

/// All clients over the limit of a saturated rule share this key.
const OVERFLOW_KEY: u128 = u128::MAX;
/// How often refilled state is dropped.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How often (in checks) a rule looks at its size.
const SIZE_CHECK_EVERY: u64 = 256;

struct CompiledRule {
    name: String,
    paths: Vec<PathPattern>,
    methods: Vec<Method>,
    key: RateKey,
    limit: u32,
    window: Duration,
    /// `window / limit`: the time one request's quota takes to come back.
    emission: Duration,
    limiter: KeyedLimiter,
    checks: AtomicU64,
    saturated: AtomicBool,
    policy: String,
}

impl CompiledRule {
    fn new(rule: &RateRule) -> Result<CompiledRule, RuleError> {
        let invalid = |reason: &str| RuleError::Invalid {
            rule: rule.name.clone(),
            reason: reason.to_string(),
        };
        if rule.name.is_empty() || !rule.name.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(invalid("the name must be printable ASCII without quotes"));
        }
        let limit = NonZeroU32::new(rule.limit).ok_or_else(|| invalid("limit must be above 0"))?;
        if rule.window.is_zero() {
            return Err(invalid("window must be above 0"));
        }
        let emission = rule.window / rule.limit;
        let quota = Quota::with_period(emission.max(Duration::from_nanos(1)))
            .ok_or_else(|| invalid("window / limit is too small"))?
            .allow_burst(limit);
        let paths = rule
            .paths
            .iter()
            .map(|p| PathPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| RuleError::Pattern {
                rule: rule.name.clone(),
                source,
            })?;
        let methods = rule
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid("a method is not an HTTP method"))?;
        Ok(CompiledRule {
            policy: format!(
                "\"{}\";q={};w={}",
                rule.name,
                rule.limit,
                retry_after_secs(rule.window)
            ),
            name: rule.name.clone(),
            paths,
            methods,
            key: rule.key,
            limit: rule.limit,
            window: rule.window,
            emission,
            limiter: governor::RateLimiter::<u128, DashMapStateStore<u128>, DefaultClock>::dashmap(
                quota,
            )
            .with_middleware::<StateInformationMiddleware>(),
            checks: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
        })
    }

    fn applies(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.paths.iter().any(|p| p.matches(path))
    }
}

/// How one rule judged a request.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    pub rule: String,
    pub policy: String,
    pub remaining: u32,
    /// Seconds until the quota is whole again (`t` of `RateLimit`), or until the next request
    /// is allowed when refused.
    pub reset: Duration,
    pub allowed: bool,
}

/// What the rules decided.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcomes: Vec<RuleOutcome>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.outcomes.iter().all(|o| o.allowed)
    }

    /// The longest wait among the refusing rules.
    pub fn retry_after(&self) -> Option<Duration> {
        self.outcomes
            .iter()
            .filter(|o| !o.allowed)
            .map(|o| o.reset)
            .max()
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        if self.outcomes.is_empty() {
            return;
        }
        let policy = join(self.outcomes.iter().map(|o| o.policy.clone()));
        let state = join(
            self.outcomes
                .iter()
                .map(|o| format!("\"{}\";r={};t={}", o.rule, o.remaining, ceil_secs(o.reset))),
        );
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(", ")
}

/// The compiled rules with their state; shared by every clone of the layer.
pub struct RateLimiter {
    rules: Vec<CompiledRule>,
    exempt: Vec<IpNet>,
    session_cookies: Vec<String>,
    max_keys: usize,
    headers_on_success: bool,
    started: Instant,
    last_trim_ms: AtomicU64,
    warned_unknown: AtomicBool,
}

impl RateLimiter {
    pub fn new(
        config: &RateLimitsConfig,
        session_cookies: &[String],
    ) -> Result<RateLimiter, RuleError> {
        let rules = config
            .rules
            .iter()
            .map(CompiledRule::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RateLimiter {
            rules,
            exempt: config.exempt.clone(),
            session_cookies: session_cookies.to_vec(),
            max_keys: config.max_tracked_keys.max(1),
            headers_on_success: config.headers_on_success,
            started: Instant::now(),
            last_trim_ms: AtomicU64::new(0),
            warned_unknown: AtomicBool::new(false),
        })
    }

    /// Counts `request` in every rule that applies to it.
    pub fn check(&self, request: &Request) -> Decision {
        self.trim_now_and_then();
        let ip = request.extensions().get::<ClientAddr>().and_then(|c| c.ip);
        if ip.is_some_and(|ip| self.exempt.iter().any(|n| n.contains(&ip))) {
            return Decision {
                outcomes: Vec::new(),
            };
        }
        let path = request.uri().path();
        let mut credential = None;
        let mut outcomes = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.applies(request.method(), path))
        {
            let key = match rule.key {
                RateKey::Ip => match ip {
                    Some(ip) => ip_key(ip),
                    None => {
                        self.warn_unknown_address();
                        continue;
                    }
                },
                RateKey::Credential => {
                    let found = credential.get_or_insert_with(|| {
                        credential_key(request.headers(), &self.session_cookies)
                    });
                    match found {
                        Some(k) => *k,
                        None => continue,
                    }
                }
            };
            outcomes.push(self.check_rule(rule, key));
        }
        Decision { outcomes }
    }

    fn check_rule(&self, rule: &CompiledRule, key: u128) -> RuleOutcome {
        let key = self.bounded_key(rule, key);
        match rule.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RuleOutcome {
                    rule: rule.name.clone(),
                    policy: rule.policy.clone(),
                    remaining,
                    reset: rule.emission * rule.limit.saturating_sub(remaining),
                    allowed: true,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(rule.limiter.clock().now());
                metrics::counter!("ecocityhub_edge_rate_limited_total", "rule" => rule.name.clone())
                    .increment(1);
                tracing::debug!(rule = %rule.name, wait_ms = wait.as_millis() as u64, "rate limited");
                RuleOutcome {
                    rule: rule.name.clone(),
                    policy: rule.policy.clone(),
                    remaining: 0,
                    reset: wait,
                    allowed: false,
                }
            }
        }
    }

    /// `key`, or the overflow key while the rule tracks too many clients.
    fn bounded_key(&self, rule: &CompiledRule, key: u128) -> u128 {
        if rule
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SIZE_CHECK_EVERY)
        {
            let mut full = rule.limiter.len() >= self.max_keys;
            if full {
                rule.limiter.retain_recent();
                full = rule.limiter.len() >= self.max_keys;
                if full && !rule.saturated.load(Ordering::Relaxed) {
                    tracing::warn!(rule = %rule.name, tracked = rule.limiter.len(),
                        "rate rule tracks too many clients: new ones share one bucket");
                }
            }
            rule.saturated.store(full, Ordering::Relaxed);
        }
        if rule.saturated.load(Ordering::Relaxed) {
            OVERFLOW_KEY
        } else {
            key
        }
    }

    /// Drops refilled state about once a minute (the caller's request pays for it).
    fn trim_now_and_then(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_trim_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TRIM_EVERY.as_millis() as u64
            || self
                .last_trim_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for rule in &self.rules {
            rule.limiter.retain_recent();
            rule.limiter.shrink_to_fit();
        }
    }

    fn warn_unknown_address(&self) {
        if !self.warned_unknown.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "requests without a client address (no ConnectInfo, no Lambda context): \
                 per-address rate rules do not count them"
            );
        }
    }

    /// Clients tracked by each rule (for tests and metrics).
    pub fn tracked(&self) -> Vec<(String, usize)> {
        self.rules
            .iter()
            .map(|r| (r.name.clone(), r.limiter.len()))
            .collect()
    }

    /// Drops refilled state now.
    pub fn trim(&self) {
        for rule in &self.rules {
            rule.limiter.retain_recent();
        }
    }

    /// The rule's window, for the documentation of answers.
    pub fn window_of(&self, rule: &str) -> Option<Duration> {
        self.rules.iter().find(|r| r.name == rule).map(|r| r.window)
    }
}

/// IPv4 addresses as themselves; IPv6 per /64.
fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

/// A hash of the request's credential: `X-Api-Key`, `Authorization`, or a session cookie.
pub fn credential_key(headers: &HeaderMap, session_cookies: &[String]) -> Option<u128> {
    let credential = headers
        .get("x-api-key")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| session_cookie(headers, session_cookies).map(|c| c.into_bytes()))?;
    let digest = Sha256::digest(&credential);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    Some(u128::from_be_bytes(first))
}

/// The value of the first session cookie the request carries.
pub fn session_cookie(headers: &HeaderMap, names: &[String]) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| !value.is_empty() && names.iter().any(|n| n == name))
        .map(|(name, value)| format!("{name}={value}"))
}

/// Applies the rate rules.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<RateLimiter>) -> RateLimitLayer {
        RateLimitLayer { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
}

impl<S> Service<Request> for RateLimitService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let decision = self.limiter.check(&request);
        if let Some(wait) = decision.retry_after() {
            return Box::pin(async move { Ok(too_many_requests(&decision, wait)) });
        }
        let future = self.inner.call(request);
        let headers_on_success = self.limiter.headers_on_success;
        Box::pin(async move {
            let mut response = future.await?;
            if headers_on_success {
                decision.write_headers(response.headers_mut());
            }
            Ok(response)
        })
    }
}

fn too_many_requests(decision: &Decision, wait: Duration) -> Response {
    let rules: Vec<&str> = decision
        .outcomes
        .iter()
        .filter(|o| !o.allowed)
        .map(|o| o.rule.as_str())
        .collect();
    let secs = retry_after_secs(wait);
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        &format!(
            "too many requests from this client (rule {}); try again in {secs} s",
            rules.join(", ")
        ),
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    decision.write_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_addr::AddrSource;
    use axum::body::Body;

    fn config(limit: u32, key: RateKey) -> RateLimitsConfig {
        RateLimitsConfig {
            rules: vec![RateRule {
                name: "t".into(),
                paths: vec!["/api/*".into()],
                methods: vec!["post".into()],
                limit,
                window: Duration::from_secs(60),
                key,
            }],
            ..RateLimitsConfig::default()
        }
    }

    fn request(ip: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method("POST").uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.body(Body::empty()).unwrap();
        r.extensions_mut().insert(ClientAddr {
            ip: Some(ip.parse().unwrap()),
            peer: None,
            source: AddrSource::Peer,
        });
        r
    }

    #[test]
    fn a_burst_of_the_limit_passes_and_the_next_is_refused_with_the_wait() {
        let l = RateLimiter::new(&config(3, RateKey::Ip), &[]).unwrap();
        for remaining in [2, 1, 0] {
            let d = l.check(&request("192.0.2.1", "/api/x", &[]));
            assert!(d.allowed());
            assert_eq!(d.outcomes[0].remaining, remaining);
        }
        let d = l.check(&request("192.0.2.1", "/api/x", &[]));
        assert!(!d.allowed());
        let wait = d.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another address, another method or path: not counted together.
        assert!(l.check(&request("192.0.2.2", "/api/x", &[])).allowed());
        assert!(l
            .check(&request("192.0.2.1", "/other", &[]))
            .outcomes
            .is_empty());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let l = RateLimiter::new(&config(1, RateKey::Ip), &[]).unwrap();
        assert!(l
            .check(&request("2001:db8:1:2::1", "/api/x", &[]))
            .allowed());
        assert!(!l
            .check(&request("2001:db8:1:2::ffff", "/api/x", &[]))
            .allowed());
        assert!(l
            .check(&request("2001:db8:1:3::1", "/api/x", &[]))
            .allowed());
    }

    #[test]
    fn credentials_are_counted_by_their_hash_and_requests_without_one_are_not() {
        let l = RateLimiter::new(&config(1, RateKey::Credential), &["s".into()]).unwrap();
        let key = [("x-api-key", "ech_abc_secret1")];
        assert!(l.check(&request("192.0.2.1", "/api/x", &key)).allowed());
        assert!(!l.check(&request("192.0.2.9", "/api/x", &key)).allowed());
        // A forged secret with the same public prefix has its own bucket.
        let forged = [("x-api-key", "ech_abc_forged")];
        assert!(l.check(&request("192.0.2.1", "/api/x", &forged)).allowed());
        assert!(l
            .check(&request("192.0.2.1", "/api/x", &[]))
            .outcomes
            .is_empty());
        let cookie = [("cookie", "ecch-csrf=a; s=token1")];
        assert!(l.check(&request("192.0.2.1", "/api/x", &cookie)).allowed());
        assert!(!l.check(&request("192.0.2.1", "/api/x", &cookie)).allowed());
    }

    #[test]
    fn exempt_addresses_are_not_counted() {
        let mut c = config(1, RateKey::Ip);
        c.exempt = vec!["192.0.2.0/24".parse().unwrap()];
        let l = RateLimiter::new(&c, &[]).unwrap();
        for _ in 0..5 {
            assert!(l.check(&request("192.0.2.1", "/api/x", &[])).allowed());
        }
    }

    #[test]
    fn past_the_key_cap_new_clients_share_one_bucket() {
        let mut c = config(2, RateKey::Ip);
        c.max_tracked_keys = 100;
        let l = RateLimiter::new(&c, &[]).unwrap();
        for i in 0..2000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            l.check(&request(&ip, "/api/x", &[]));
        }
        let tracked = l.tracked()[0].1;
        assert!(
            tracked <= 100 + SIZE_CHECK_EVERY as usize + 1,
            "{tracked} keys"
        );
    }

    #[test]
    fn rules_are_checked_when_built() {
        let mut c = config(0, RateKey::Ip);
        assert!(RateLimiter::new(&c, &[]).is_err());
        c.rules[0].limit = 1;
        c.rules[0].paths = vec!["nope".into()];
        let e = RateLimiter::new(&c, &[]).err().unwrap().to_string();
        assert!(e.contains("must start with /"), "{e}");
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let d = Decision {
            outcomes: vec![RuleOutcome {
                rule: "auth".into(),
                policy: "\"auth\";q=20;w=60".into(),
                remaining: 0,
                reset: Duration::from_millis(2500),
                allowed: false,
            }],
        };
        let mut h = HeaderMap::new();
        d.write_headers(&mut h);
        assert_eq!(h["ratelimit-policy"], "\"auth\";q=20;w=60");
        assert_eq!(h["ratelimit"], "\"auth\";r=0;t=3");
    }
}
