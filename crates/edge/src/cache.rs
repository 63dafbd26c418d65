//! CloudFront's role: a shared in-process cache of public `GET` answers, with strong `ETag`s,
//! `304 Not Modified`, `stale-while-revalidate`, one origin call for concurrent misses of one
//! key, `Vary`, and precise invalidation by tags.
//!
//! **What is stored.** A `GET`/`HEAD` without credentials (`Authorization`, `X-Api-Key`, a
//! session cookie — the CSRF cookie alone is not one) and without `Range`, answered `200` with
//! a whole body (not streamed) of at most `max_entry_bytes`, without `Set-Cookie`, whose
//! `Cache-Control` (the origin's, or the route policy's — see
//! [`crate::config::CacheRoute`]) is neither `private`, `no-store` nor `no-cache` and gives a
//! lifetime (`s-maxage`, else `max-age`). Routes without a policy are stored only when the
//! origin says `public` (static files). Memory is bounded by `max_bytes` (TinyLFU eviction).
//!
//! **Keys.** Host, path and query, plus the request's values of the answer's `Vary` headers;
//! `Accept-Encoding` has already been reduced to the one encoding the answer gets
//! ([`crate::compression::NegotiateLayer`]), so there are at most four variants. A route that
//! proved uncacheable (private, streamed, too large) is remembered for 30 s and passed straight
//! to the origin meanwhile, so its concurrent requests do not wait on one another.
//!
//! **ETags.** Every whole `200` answer to a `GET` up to `etag_max_bytes` gets a strong `ETag`
//! (SHA-256 of the bytes sent) unless the origin set one, stored or not, and a matching
//! `If-None-Match` is answered `304`.
//!
//! **Tags.** Entries carry tags from their route policy (`station:{id}` filled from the path)
//! and from the origin's `x-cache-tags` header (space or comma separated; removed before the
//! answer leaves). [`EdgeCache::invalidate_tags`] drops exactly the entries carrying any of the
//! tags, including those being fetched at that moment. The vocabulary:
//!
//! | tag | carried by | invalidate when |
//! | --- | --- | --- |
//! | `latest` | `/api/v1/latest`, `/`, `/stations/{id}` | readings are written or flagged |
//! | `stations` | `/api/v1/stations`, `/api/v1/stations/{id}`, `/api/v1/latest`, `/`, `/stations/{id}` | a station is created, changed or removed |
//! | `station:ID` | `/api/v1/stations/ID`, `…/ID/readings`, `…/ID/anomalies`, `/stations/ID` | readings of ID are written or flagged; ID changes |
//! | `forecast:ID` | `/api/v1/stations/ID/forecast`, `/stations/ID` | ID's forecast is recomputed, a model for ID is promoted or rolled back |
//! | `models` | `/api/v1/ml/models…`, `/models/{id}` | a model is trained, promoted or rolled back |
//! | `parameters`, `openapi` | `/api/v1/parameters`, `/api/openapi.json` | never at run time (a new release) |

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::Response;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};

use crate::compression::OriginBody;
use crate::config::{CacheConfig, CacheRoute};
use crate::pattern::{fill, PathPattern, PatternError};
use crate::problem::problem;
use crate::rate_limit::session_cookie;

/// The response header through which the origin tags an answer.
pub const CACHE_TAGS_HEADER: &str = "x-cache-tags";
/// The response header telling how the cache answered: `hit`, `stale`, `miss` or `pass`.
pub const CACHE_STATUS_HEADER: &str = "x-edge-cache";
/// How long a route found uncacheable is passed to the origin without trying.
const PASS_MEMORY: Duration = Duration::from_secs(30);

/// A stored answer.
struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    etag: HeaderValue,
    stored_at: Instant,
    fresh_for: Duration,
    stale_for: Duration,
    tags: Vec<String>,
    /// The invalidation epoch when its origin call began.
    epoch: u64,
    /// The request's values of the answer's `Vary` headers.
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    refreshing: AtomicBool,
    weight: u32,
}

impl Entry {
    fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    fn varies_alike(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| headers.get(name) == value.as_ref())
    }
}

struct EntryExpiry;

impl moka::Expiry<Arc<str>, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _: &Arc<str>, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(e.fresh_for + e.stale_for)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        e: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.fresh_for + e.stale_for)
    }
}

struct CompiledRoute {
    pattern: PathPattern,
    cache_control: HeaderValue,
    tags: Vec<String>,
    override_origin: bool,
}

impl CompiledRoute {
    fn new(route: &CacheRoute) -> Result<CompiledRoute, PatternError> {
        let mut cc = format!(
            "public, max-age={}, s-maxage={}",
            route.max_age.as_secs(),
            route.s_maxage.as_secs()
        );
        if !route.stale_while_revalidate.is_zero() {
            cc.push_str(&format!(
                ", stale-while-revalidate={}",
                route.stale_while_revalidate.as_secs()
            ));
        }
        Ok(CompiledRoute {
            pattern: PathPattern::parse(&route.path)?,
            cache_control: HeaderValue::from_str(&cc).expect("digits and ASCII"),
            tags: route.tags.clone(),
            override_origin: route.override_origin,
        })
    }
}

/// How the cache has answered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub passes: u64,
    /// Requests the origin answered on the cache's behalf (misses and refreshes).
    pub origin_calls: u64,
    pub stored: u64,
    pub not_modified: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    stale_hits: AtomicU64,
    misses: AtomicU64,
    passes: AtomicU64,
    origin_calls: AtomicU64,
    stored: AtomicU64,
    not_modified: AtomicU64,
}

struct Inner {
    entries: moka::future::Cache<Arc<str>, Arc<Entry>>,
    /// The `Vary` header names last seen per primary key.
    vary: moka::sync::Cache<Arc<str>, Arc<Vec<HeaderName>>>,
    /// Primary keys found uncacheable recently.
    pass: moka::sync::Cache<Arc<str>, ()>,
    /// Tag → the epoch of its last invalidation.
    tag_epochs: RwLock<HashMap<String, u64>>,
    epoch: AtomicU64,
    routes: Vec<CompiledRoute>,
    config: CacheConfig,
    session_cookies: Vec<String>,
    assumed_vary: Arc<Vec<HeaderName>>,
    counters: Counters,
}

/// The shared cache; cheap to clone. The app keeps one to call [`EdgeCache::invalidate_tags`].
#[derive(Clone)]
pub struct EdgeCache {
    inner: Arc<Inner>,
}

/// A route policy that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cache route: {0}")]
pub struct CacheConfigError(#[from] PatternError);

impl EdgeCache {
    /// A cache with `config`; `vary_encoding`: answers vary by `Accept-Encoding` (compression
    /// is on).
    pub fn new(
        config: &CacheConfig,
        session_cookies: &[String],
        vary_encoding: bool,
    ) -> Result<EdgeCache, CacheConfigError> {
        let routes = config
            .routes
            .iter()
            .map(CompiledRoute::new)
            .collect::<Result<Vec<_>, _>>()?;
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_k: &Arc<str>, e: &Arc<Entry>| e.weight)
            .expire_after(EntryExpiry)
            .build();
        let assumed_vary = if vary_encoding {
            vec![header::ACCEPT_ENCODING]
        } else {
            Vec::new()
        };
        Ok(EdgeCache {
            inner: Arc::new(Inner {
                entries,
                vary: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
                pass: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(PASS_MEMORY)
                    .build(),
                tag_epochs: RwLock::new(HashMap::new()),
                epoch: AtomicU64::new(0),
                routes,
                config: config.clone(),
                session_cookies: session_cookies.to_vec(),
                assumed_vary: Arc::new(assumed_vary),
                counters: Counters::default(),
            }),
        })
    }

    /// Drops every entry carrying any of `tags`, also the ones whose origin call is under way.
    pub fn invalidate_tags<T: AsRef<str>>(&self, tags: &[T]) {
        let epoch = self.inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut map = self.inner.tag_epochs.write().expect("not poisoned");
        for tag in tags {
            map.insert(tag.as_ref().to_string(), epoch);
        }
        metrics::counter!("ecocityhub_edge_cache_invalidations_total").increment(tags.len() as u64);
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.entries.invalidate_all();
        self.inner.pass.invalidate_all();
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            stale_hits: get(&c.stale_hits),
            misses: get(&c.misses),
            passes: get(&c.passes),
            origin_calls: get(&c.origin_calls),
            stored: get(&c.stored),
            not_modified: get(&c.not_modified),
        }
    }

    /// Bytes held (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        self.inner.entries.run_pending_tasks().await;
        self.inner.entries.weighted_size()
    }

    pub async fn entry_count(&self) -> u64 {
        self.inner.entries.run_pending_tasks().await;
        self.inner.entries.entry_count()
    }
}

impl Inner {
    fn count(&self, which: &AtomicU64, result: &'static str) {
        which.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ecocityhub_edge_cache_total", "result" => result).increment(1);
    }

    /// Is the entry still valid for its tags?
    fn untouched(&self, entry: &Entry) -> bool {
        if entry.tags.is_empty() {
            return true;
        }
        let map = self.tag_epochs.read().expect("not poisoned");
        entry
            .tags
            .iter()
            .all(|t| map.get(t).is_none_or(|e| *e <= entry.epoch))
    }

    fn route_of(&self, path: &str) -> Option<(&CompiledRoute, Vec<String>)> {
        self.routes.iter().find_map(|r| {
            let captures = r.pattern.captures(path)?;
            Some((r, r.tags.iter().map(|t| fill(t, &captures)).collect()))
        })
    }

    fn is_credentialed(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(header::AUTHORIZATION)
            || headers.contains_key("x-api-key")
            || session_cookie(headers, &self.session_cookies).is_some()
    }
}

/// What the cache does with a request.
enum Plan<'a> {
    /// Straight to the origin; the route policy still applies to public answers.
    Pass {
        route: Option<&'a CompiledRoute>,
        public: bool,
    },
    Lookup {
        primary: Arc<str>,
        route: Option<(&'a CompiledRoute, Vec<String>)>,
    },
}

fn plan<'a>(inner: &'a Inner, request: &Request) -> Plan<'a> {
    let headers = request.headers();
    let route = inner.route_of(request.uri().path());
    let public = !inner.is_credentialed(headers);
    let cacheable_method = matches!(*request.method(), Method::GET | Method::HEAD);
    if !public || !cacheable_method || headers.contains_key(header::RANGE) {
        return Plan::Pass {
            route: route.map(|r| r.0),
            public: public && cacheable_method,
        };
    }
    if route.is_none() && !inner.config.store_origin_public {
        return Plan::Pass {
            route: None,
            public,
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let primary: Arc<str> = Arc::from(format!("{}{target}", host.to_ascii_lowercase()));
    if inner.pass.contains_key(&primary) {
        return Plan::Pass {
            route: route.map(|r| r.0),
            public,
        };
    }
    Plan::Lookup { primary, route }
}

fn full_key(primary: &str, names: &[HeaderName], headers: &HeaderMap) -> Arc<str> {
    if names.is_empty() {
        return Arc::from(primary);
    }
    let mut key = primary.to_string();
    for name in names {
        key.push('\n');
        key.push_str(name.as_str());
        key.push('=');
        if let Some(v) = headers.get(name) {
            key.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }
    Arc::from(key)
}

/// The request again, without body and conditions, for an origin call made for the cache.
#[derive(Clone)]
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
}

impl Template {
    fn of(request: &Request) -> Template {
        let mut headers = request.headers().clone();
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
        Template {
            // The cache fills with GET answers; HEAD is answered from them.
            method: Method::GET,
            uri: request.uri().clone(),
            version: request.version(),
            headers,
            extensions: request.extensions().clone(),
        }
    }

    fn request(&self) -> Request {
        let mut r = Request::new(Body::empty());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        *r.extensions_mut() = self.extensions.clone();
        r
    }
}

/// Cache-Control directives that matter here.
#[derive(Debug, Default, PartialEq)]
struct Directives {
    no_store: bool,
    private: bool,
    no_cache: bool,
    public: bool,
    s_maxage: Option<u64>,
    max_age: Option<u64>,
    swr: Option<u64>,
}

fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let (name, arg) = match item.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (item.trim(), None),
            };
            let secs = || arg.and_then(|a| a.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "no-cache" => d.no_cache = true,
                "public" => d.public = true,
                "s-maxage" => d.s_maxage = secs(),
                "max-age" => d.max_age = secs(),
                "stale-while-revalidate" => d.swr = secs(),
                _ => {}
            }
        }
    }
    d
}

/// Sets the route's `Cache-Control` on a public `200` without cookies, where the origin set
/// none (or the route overrides it, `no-store` excepted).
fn apply_policy(response: &mut Response, route: Option<&CompiledRoute>) {
    let Some(route) = route else { return };
    let headers = response.headers();
    if response.status() != StatusCode::OK || headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let origin = headers.contains_key(header::CACHE_CONTROL);
    if !origin || (route.override_origin && !directives(headers).no_store) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, route.cache_control.clone());
    }
}

/// Takes the origin's tags off the answer.
fn take_tags(headers: &mut HeaderMap) -> Vec<String> {
    let tags = headers
        .get_all(CACHE_TAGS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([' ', ',']))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    headers.remove(CACHE_TAGS_HEADER);
    tags
}

fn strong_etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]);
    HeaderValue::from_str(&format!("\"{tag}\"")).expect("base64 is a valid header")
}

/// Does `If-None-Match` name this ETag (weak comparison, as RFC 9110 asks for it)?
fn none_match(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(text) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = etag.to_str().unwrap_or("");
    let ours = ours.strip_prefix("W/").unwrap_or(ours);
    text.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == ours)
}

/// A `304` carrying the fields RFC 9110 asks for (and any cookie of the full answer).
fn not_modified(headers: &HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [
        header::ETAG,
        header::CACHE_CONTROL,
        header::VARY,
        header::EXPIRES,
        header::CONTENT_LOCATION,
        header::DATE,
        header::SET_COOKIE,
        header::AGE,
        HeaderName::from_static(CACHE_STATUS_HEADER),
    ] {
        for value in headers.get_all(&name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// The body whole if it has at most `limit` bytes, else a body that replays what was read
/// and streams the rest.
async fn collect_limited(mut body: Body, limit: u64) -> Result<Result<Bytes, Body>, axum::Error> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() as u64 > limit {
            let prefix = futures::stream::once(async move { Ok::<_, axum::Error>(buf.freeze()) });
            let rest = body.into_data_stream();
            use futures::StreamExt;
            return Ok(Err(Body::from_stream(prefix.chain(rest))));
        }
    }
    Ok(Ok(buf.freeze()))
}

fn broken_origin(e: axum::Error) -> Response {
    tracing::warn!(error = %e, "the origin's answer broke off");
    problem(
        StatusCode::BAD_GATEWAY,
        "origin_failed",
        "the answer could not be read whole; please try again",
    )
}

/// What became of an origin answer.
enum Admission {
    Stored(Arc<Entry>),
    /// Not storable; `remember`: the route itself is uncacheable for now.
    Passed {
        response: Response,
        remember: bool,
    },
}

/// The layer; build it from an [`EdgeCache`].
#[derive(Clone)]
pub struct CacheLayer {
    cache: EdgeCache,
}

impl CacheLayer {
    pub fn new(cache: EdgeCache) -> CacheLayer {
        CacheLayer { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            cache: self.cache.inner.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Arc<Inner>,
}

impl<S> Service<Request> for CacheService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        Box::pin(async move { Ok(serve(cache, inner, request).await) })
    }
}

async fn origin<S>(inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

async fn serve<S>(cache: Arc<Inner>, inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let (primary, route) = match plan(&cache, &request) {
        Plan::Pass { route, public } => {
            return pass(&cache, inner, request, route.filter(|_| public)).await
        }
        Plan::Lookup { primary, route } => (primary, route),
    };
    let names = cache
        .vary
        .get(&primary)
        .unwrap_or_else(|| cache.assumed_vary.clone());
    let key = full_key(&primary, &names, request.headers());
    if let Some(entry) = cache.entries.get(&key).await {
        if entry.varies_alike(request.headers()) && cache.untouched(&entry) {
            if entry.age() <= entry.fresh_for {
                cache.count(&cache.counters.hits, "hit");
                return answer(&cache, &entry, &request, "hit");
            }
            cache.count(&cache.counters.stale_hits, "stale");
            refresh_in_background(&cache, &entry, key.clone(), &inner, &request);
            return answer(&cache, &entry, &request, "stale");
        }
        cache.entries.invalidate(&key).await;
    }
    if route.is_none() {
        // No policy: stored when the origin says public, but concurrent requests are not held
        // back for a route that may well be personal or slow.
        return fill_alone(&cache, inner, request, primary, key, names).await;
    }
    miss(&cache, inner, request, primary, key, names, route).await
}

/// A miss of a route without a policy: one origin call per request, the answer stored when
/// it may be.
async fn fill_alone<S>(
    cache: &Arc<Inner>,
    inner: S,
    request: Request,
    primary: Arc<str>,
    key: Arc<str>,
    names: Arc<Vec<HeaderName>>,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let template = Template::of(&request);
    let conditions = ConditionalRequest::of(&request);
    let epoch = cache.epoch.load(Ordering::SeqCst);
    cache.count(&cache.counters.misses, "miss");
    match fetch(cache, inner, &template, None, epoch).await {
        Admission::Stored(entry) => {
            store(cache, &primary, key, &names, &template, entry.clone()).await;
            answer(cache, &entry, &request, "miss")
        }
        Admission::Passed { response, remember } => {
            if remember {
                cache.pass.insert(primary, ());
            }
            finish(cache, response, conditions).await
        }
    }
}

/// Inserts `entry` under `key` when its Vary is the one assumed there, else under the key of
/// the Vary it has.
async fn store(
    cache: &Inner,
    primary: &Arc<str>,
    key: Arc<str>,
    names: &[HeaderName],
    template: &Template,
    entry: Arc<Entry>,
) {
    if same_names(&entry, names) {
        cache.entries.insert(key, entry).await;
    } else {
        store_learnt(cache, primary, template, entry).await;
    }
}

/// Inserts `entry` under the key of its own Vary, and remembers that Vary for its route.
async fn store_learnt(cache: &Inner, primary: &Arc<str>, template: &Template, entry: Arc<Entry>) {
    let learnt: Vec<HeaderName> = entry.vary.iter().map(|v| v.0.clone()).collect();
    let real = full_key(primary, &learnt, &template.headers);
    cache.vary.insert(primary.clone(), Arc::new(learnt));
    cache.entries.insert(real, entry).await;
}

/// Fetches a missing entry once for all concurrent requests of its key.
async fn miss<S>(
    cache: &Arc<Inner>,
    inner: S,
    request: Request,
    primary: Arc<str>,
    key: Arc<str>,
    names: Arc<Vec<HeaderName>>,
    route: Option<(&CompiledRoute, Vec<String>)>,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let template = Template::of(&request);
    let epoch = cache.epoch.load(Ordering::SeqCst);
    let own: Arc<Mutex<Option<Response>>> = Arc::new(Mutex::new(None));
    let ran = Arc::new(AtomicBool::new(false));
    let init = {
        let (cache, inner, own, ran) = (cache.clone(), inner.clone(), own.clone(), ran.clone());
        let (template, primary, route) = (template.clone(), primary.clone(), route.clone());
        async move {
            ran.store(true, Ordering::Relaxed);
            cache.count(&cache.counters.misses, "miss");
            let response = fetch(&cache, inner, &template, route.as_ref(), epoch).await;
            match response {
                Admission::Stored(entry) if same_names(&entry, &names) => Ok(entry),
                Admission::Stored(entry) => {
                    // Its Vary differs from what was assumed: keep it under its real key.
                    store_learnt(&cache, &primary, &template, entry.clone()).await;
                    *own.lock().expect("not poisoned") = Some(entry_response(&entry, "miss"));
                    Err(())
                }
                Admission::Passed { response, remember } => {
                    if remember {
                        cache.pass.insert(primary.clone(), ());
                    }
                    *own.lock().expect("not poisoned") = Some(response);
                    Err(())
                }
            }
        }
    };
    match cache.entries.try_get_with(key, init).await {
        Ok(entry) if entry.varies_alike(request.headers()) => {
            let ran = ran.load(Ordering::Relaxed);
            if !ran {
                cache.count(&cache.counters.hits, "hit");
            }
            answer(cache, &entry, &request, if ran { "miss" } else { "hit" })
        }
        Ok(_) => pass(cache, inner, request, route.map(|r| r.0)).await,
        Err(_) => {
            let mine = own.lock().expect("not poisoned").take();
            match mine {
                Some(response) => {
                    let conditions = ConditionalRequest::of(&request);
                    finish(cache, response, conditions).await
                }
                None => pass(cache, inner, request, route.map(|r| r.0)).await,
            }
        }
    }
}

fn same_names(entry: &Entry, names: &[HeaderName]) -> bool {
    entry.vary.len() == names.len() && entry.vary.iter().all(|(n, _)| names.contains(n))
}

/// Calls the origin for the cache and decides whether its answer is stored.
async fn fetch<S>(
    cache: &Inner,
    inner: S,
    template: &Template,
    route: Option<&(&CompiledRoute, Vec<String>)>,
    epoch: u64,
) -> Admission
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    cache.counters.origin_calls.fetch_add(1, Ordering::Relaxed);
    let mut response = origin(inner, template.request()).await;
    let mut tags = take_tags(response.headers_mut());
    apply_policy(&mut response, route.map(|r| r.0));
    if let Some((_, route_tags)) = route {
        tags.extend(route_tags.iter().cloned());
    }
    let headers = response.headers();
    let d = directives(headers);
    let lifetime = d.s_maxage.or(d.max_age).unwrap_or(0);
    let vary_all = headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|p| p.trim_ascii() == b"*")
    });
    let streamed = response
        .extensions()
        .get::<OriginBody>()
        .map(|o| o.exact_len.is_none())
        .unwrap_or_else(|| {
            http_body::Body::size_hint(response.body())
                .exact()
                .is_none()
        });
    let route_uncacheable = d.no_store
        || d.private
        || d.no_cache
        || lifetime == 0
        || vary_all
        || streamed
        || (route.is_none() && !d.public && d.s_maxage.is_none());
    if route_uncacheable
        || response.status() != StatusCode::OK
        || headers.contains_key(header::SET_COOKIE)
    {
        return Admission::Passed {
            response,
            remember: route_uncacheable,
        };
    }
    let (mut parts, body) = response.into_parts();
    let body = match collect_limited(body, cache.config.max_entry_bytes).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(rest)) => {
            return Admission::Passed {
                response: Response::from_parts(parts, rest),
                remember: true,
            }
        }
        Err(e) => {
            return Admission::Passed {
                response: broken_origin(e),
                remember: false,
            }
        }
    };
    let etag = match parts.headers.get(header::ETAG) {
        Some(e) => e.clone(),
        None => {
            let e = strong_etag(&body);
            parts.headers.insert(header::ETAG, e.clone());
            e
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let vary = vary_values(&parts.headers, &template.headers);
    let weight = weigh(&parts.headers, &body);
    cache.counters.stored.fetch_add(1, Ordering::Relaxed);
    Admission::Stored(Arc::new(Entry {
        status: parts.status,
        headers: parts.headers,
        body,
        etag,
        stored_at: Instant::now(),
        fresh_for: Duration::from_secs(lifetime),
        stale_for: Duration::from_secs(d.swr.unwrap_or(0)),
        tags,
        epoch,
        vary,
        refreshing: AtomicBool::new(false),
        weight,
    }))
}

fn vary_values(
    response: &HeaderMap,
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut out: Vec<(HeaderName, Option<HeaderValue>)> = Vec::new();
    for value in response.get_all(header::VARY) {
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                if !out.iter().any(|(n, _)| *n == name) {
                    let v = request.get(&name).cloned();
                    out.push((name, v));
                }
            }
        }
    }
    out
}

fn weigh(headers: &HeaderMap, body: &Bytes) -> u32 {
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    u32::try_from(body.len() + header_bytes + 256).unwrap_or(u32::MAX)
}

/// Serves a stale entry now and refreshes it with one background origin call.
fn refresh_in_background<S>(
    cache: &Arc<Inner>,
    entry: &Arc<Entry>,
    key: Arc<str>,
    inner: &S,
    request: &Request,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    if entry.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let (cache, inner, template) = (cache.clone(), inner.clone(), Template::of(request));
    let path = request.uri().path().to_string();
    tokio::spawn(async move {
        let route = cache.route_of(&path);
        let epoch = cache.epoch.load(Ordering::SeqCst);
        match fetch(&cache, inner, &template, route.as_ref(), epoch).await {
            Admission::Stored(fresh) => cache.entries.insert(key, fresh).await,
            Admission::Passed { .. } => cache.entries.invalidate(&key).await,
        }
    });
}

/// An entry as a full answer.
fn entry_response(entry: &Entry, status: &'static str) -> Response {
    let mut response = Response::new(Body::from(entry.body.clone()));
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.headers.clone();
    let headers = response.headers_mut();
    headers.insert(CACHE_STATUS_HEADER, HeaderValue::from_static(status));
    headers.insert(header::AGE, HeaderValue::from(entry.age().as_secs()));
    response
}

/// Answers `request` from `entry`: `304`, `HEAD` or the whole answer.
fn answer(cache: &Inner, entry: &Entry, request: &Request, status: &'static str) -> Response {
    let mut response = entry_response(entry, status);
    if none_match(request.headers().get(header::IF_NONE_MATCH), &entry.etag) {
        cache.counters.not_modified.fetch_add(1, Ordering::Relaxed);
        return not_modified(response.headers());
    }
    if request.method() == Method::HEAD {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        *response.body_mut() = Body::empty();
    }
    response
}

/// Straight to the origin: the route policy (for public requests), tags removed, an ETag and
/// `304` for whole answers.
async fn pass<S>(
    cache: &Inner,
    inner: S,
    request: Request,
    route: Option<&CompiledRoute>,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    cache.count(&cache.counters.passes, "pass");
    let conditions = ConditionalRequest::of(&request);
    let mut response = origin(inner, request).await;
    take_tags(response.headers_mut());
    apply_policy(&mut response, route);
    response
        .headers_mut()
        .insert(CACHE_STATUS_HEADER, HeaderValue::from_static("pass"));
    conditions.finish(cache, response).await
}

/// Finishes an answer fetched for this request that was not stored.
async fn finish(cache: &Inner, response: Response, conditions: ConditionalRequest) -> Response {
    let mut response = response;
    if !response.headers().contains_key(CACHE_STATUS_HEADER) {
        response
            .headers_mut()
            .insert(CACHE_STATUS_HEADER, HeaderValue::from_static("pass"));
    }
    conditions.finish(cache, response).await
}

/// What of the request decides a `304`.
struct ConditionalRequest {
    method: Method,
    if_none_match: Option<HeaderValue>,
}

impl ConditionalRequest {
    fn of(request: &Request) -> ConditionalRequest {
        ConditionalRequest {
            method: request.method().clone(),
            if_none_match: request.headers().get(header::IF_NONE_MATCH).cloned(),
        }
    }

    /// Adds a strong ETag to a whole `200` and answers `304` when it matches.
    async fn finish(self, cache: &Inner, response: Response) -> Response {
        let whole = response
            .extensions()
            .get::<OriginBody>()
            .map(|o| o.exact_len)
            .unwrap_or_else(|| http_body::Body::size_hint(response.body()).exact())
            .is_some_and(|n| n <= cache.config.etag_max_bytes);
        if response.status() != StatusCode::OK
            || !matches!(self.method, Method::GET | Method::HEAD)
            || !whole
            || response.headers().contains_key(header::CONTENT_RANGE)
        {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let etag = match parts.headers.get(header::ETAG) {
            Some(e) => e.clone(),
            None => {
                let bytes = match collect_limited(body, cache.config.etag_max_bytes).await {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(rest)) => return Response::from_parts(parts, rest),
                    Err(e) => return broken_origin(e),
                };
                let e = strong_etag(&bytes);
                parts.headers.insert(header::ETAG, e.clone());
                if none_match(self.if_none_match.as_ref(), &e) {
                    cache.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                    return not_modified(&parts.headers);
                }
                return Response::from_parts(parts, Body::from(bytes));
            }
        };
        if none_match(self.if_none_match.as_ref(), &etag) {
            cache.counters.not_modified.fetch_add(1, Ordering::Relaxed);
            return not_modified(&parts.headers);
        }
        Response::from_parts(parts, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=0, s-maxage=15, stale-while-revalidate=30"),
        );
        let d = directives(&h);
        assert!(d.public && !d.private && !d.no_store);
        assert_eq!(
            (d.max_age, d.s_maxage, d.swr),
            (Some(0), Some(15), Some(30))
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        let d = directives(&h);
        assert!(d.private && d.no_cache);
    }

    #[test]
    fn if_none_match_compares_weakly_and_knows_star() {
        let e = HeaderValue::from_static("\"abc\"");
        let inm = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(none_match(inm("\"abc\"").as_ref(), &e));
        assert!(none_match(inm("W/\"abc\"").as_ref(), &e));
        assert!(none_match(inm("\"x\", \"abc\"").as_ref(), &e));
        assert!(none_match(inm("*").as_ref(), &e));
        assert!(!none_match(inm("\"abd\"").as_ref(), &e));
        assert!(!none_match(None, &e));
    }

    #[test]
    fn etags_are_strong_and_follow_the_bytes() {
        let a = strong_etag(b"hello");
        assert_eq!(a, strong_etag(b"hello"));
        assert_ne!(a, strong_etag(b"hellp"));
        let s = a.to_str().unwrap();
        assert!(s.starts_with('"') && s.ends_with('"') && !s.starts_with("W/"));
    }

    #[test]
    fn origin_tags_are_taken_off() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_TAGS_HEADER,
            HeaderValue::from_static("station:a latest,x"),
        );
        assert_eq!(take_tags(&mut h), vec!["station:a", "latest", "x"]);
        assert!(!h.contains_key(CACHE_TAGS_HEADER));
    }

    #[tokio::test]
    async fn a_long_body_is_given_back_whole_when_over_the_limit() {
        let body = Body::from_stream(futures::stream::iter(
            (0..10).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![i as u8; 100]))),
        ));
        let rest = collect_limited(body, 250).await.unwrap().unwrap_err();
        let all = axum::body::to_bytes(rest, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 1000);
        assert_eq!(all[999], 9);
        let small = collect_limited(Body::from("abc"), 250)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(small, "abc");
    }
}
