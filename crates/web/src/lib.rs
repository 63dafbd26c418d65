//! EcoCityHub's web pages — the dynamic web that Lambda serves behind API Gateway, with its
//! static assets (the part CloudFront serves from S3).
//!
//! [`app`] is the whole site: the API's routes, the pages and `/static/*`, under one fallback
//! that answers problem+json below `/api/` and an HTML page elsewhere. Pages are rendered on the
//! server from askama templates (checked at compile time); the little JavaScript there is
//! ([`assets`]) only enhances them. Every page is sent with a strict Content-Security-Policy
//! (no inline scripts or styles).
//!
//! - [`pages`]: the handlers — public map and station pages, accounts, operator/admin pages.
//! - [`session`]: cookie sessions on the identity layer's refresh tokens, and CSRF protection.
//! - [`map`] and [`charts`]: the SVG map of stations and the charts (SVG a phone can read);
//!   [`basemap`]: the offline Natural Earth basemap under the stations.
//! - [`indices`]: why the US AQI and the European index disagree, in one sentence.
//! - [`replay`]: a replay of historical data said as such on every page.
//! - [`error`]: error pages that never show internals.

pub mod assets;
pub mod basemap;
pub mod charts;
pub mod error;
pub mod indices;
pub mod map;
pub mod pages;
pub mod replay;
pub mod session;
pub mod view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ecocityhub_api::AppState;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::WebError;

/// Settings of the web pages.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where the site is reached (the token issuer), without a trailing slash.
    pub public_url: String,
    /// A map tile URL template (`https://tile.example.org/{z}/{x}/{y}.png`) drawn under the
    /// stations; `None`: the map is drawn from the stations' coordinates alone (no network).
    pub tile_url: Option<String>,
    /// Attribution shown under the map when tiles are drawn.
    pub tile_attribution: Option<String>,
    /// The name shown in the title and header.
    pub site_name: String,
    /// Other origins (`https://bucket.s3.eu-west-1.amazonaws.com`) the pages' scripts may send
    /// to: where photos of reports are uploaded when the signed URLs are not this site's.
    pub connect_origins: Vec<String>,
    /// The index the city has chosen as its headline: named when the US AQI and the
    /// European index disagree, and shown first (large) on the station pages.
    pub headline_index: HeadlineIndex,
}

/// The air quality index a city puts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadlineIndex {
    /// The US EPA Air Quality Index (the default).
    #[default]
    UsAqi,
    /// The European Environment Agency's European Air Quality Index.
    Eaqi,
}

impl HeadlineIndex {
    /// The index's name as the pages say it.
    pub const fn name(self) -> &'static str {
        match self {
            HeadlineIndex::UsAqi => "the US AQI",
            HeadlineIndex::Eaqi => "the European index",
        }
    }
}

impl std::str::FromStr for HeadlineIndex {
    type Err = String;

    /// `us_aqi` (or `aqi`, `us`) and `eaqi` (or `eu`, `european`), in any case.
    fn from_str(s: &str) -> Result<HeadlineIndex, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "us_aqi" | "aqi" | "us" | "epa" => Ok(HeadlineIndex::UsAqi),
            "eaqi" | "eu" | "european" | "eea" => Ok(HeadlineIndex::Eaqi),
            other => Err(format!(
                "the headline index {other:?} is not known: use us_aqi or eaqi"
            )),
        }
    }
}

impl WebConfig {
    pub fn new(public_url: &str) -> WebConfig {
        WebConfig {
            public_url: public_url.trim_end_matches('/').to_string(),
            tile_url: None,
            tile_attribution: None,
            site_name: "EcoCityHub".into(),
            connect_origins: Vec::new(),
            headline_index: HeadlineIndex::default(),
        }
    }

    /// Cookies are `Secure` (and `__Host-` prefixed) when the site is served over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The origin (`scheme://host[:port]`) forms must come from.
    pub fn origin(&self) -> &str {
        let after_scheme = self.public_url.find("://").map(|i| i + 3).unwrap_or(0);
        match self.public_url[after_scheme..].find('/') {
            Some(i) => &self.public_url[..after_scheme + i],
            None => &self.public_url,
        }
    }
}

/// What every page handler gets: the API's state and the web settings.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub config: Arc<WebConfig>,
    pub cache: Arc<pages::home::HomeCache>,
    /// Whether the site shows a replay (the banner of every page).
    pub replay: Arc<replay::ReplayState>,
}

impl axum::extract::FromRef<WebState> for AppState {
    fn from_ref(web: &WebState) -> AppState {
        web.app.clone()
    }
}

/// The whole site: API, pages and static assets.
pub fn app(state: AppState, config: WebConfig) -> Router {
    let https = config.secure_cookies();
    let web = WebState {
        app: state.clone(),
        config: Arc::new(config),
        cache: Arc::new(pages::home::HomeCache::default()),
        replay: Arc::new(replay::ReplayState::default()),
    };
    let pages = pages::routes()
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            replay::refresh,
        ))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            session::ensure_csrf_cookie,
        ))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            security_headers,
        ))
        .with_state(web.clone());
    ecocityhub_api::routes(state)
        .merge(pages)
        .merge(assets::routes())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        // A 5xx answer is a warning here: faults of ours are logged as errors with their
        // cause where they happen; a 503 of load shedding or a busy hash pool is not one.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(axum::middleware::from_fn_with_state(web, html_errors))
        .layer(axum::middleware::from_fn_with_state(
            https,
            ecocityhub_api::transport_headers,
        ))
}

/// The Content-Security-Policy of every page: only first-party scripts and styles, no
/// inline code, no framing; map tiles from their host and uploads to their origins when
/// configured.
fn content_security_policy(config: &WebConfig) -> String {
    let tiles = config
        .tile_url
        .as_deref()
        .and_then(|u| {
            let rest = u.split_once("://")?;
            Some(format!(" {}://{}", rest.0, rest.1.split('/').next()?))
        })
        .unwrap_or_default();
    let connect: String = config
        .connect_origins
        .iter()
        .filter(|o| {
            o.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'\''))
        })
        .map(|o| format!(" {}", o.trim_end_matches('/')))
        .collect();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
         connect-src 'self'{connect}; font-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

/// Security headers on every page.
async fn security_headers(State(web): State<WebState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&web.config)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
    }
    response
}

fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/")
        || path.starts_with("/oauth2/")
        || path.starts_with("/.well-known/")
        || path == "/healthz"
}

async fn fallback(uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        ecocityhub_api::not_found(uri).await.into_response()
    } else {
        WebError::NotFound(format!("There is no page at {}.", uri.path())).into_response()
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        ecocityhub_api::method_not_allowed(method, uri)
            .await
            .into_response()
    } else {
        WebError::MethodNotAllowed(format!("{method} is not allowed on {}.", uri.path()))
            .into_response()
    }
}

/// Renders a [`WebError`] a handler returned as a full page (with the site's header and the
/// security headers), now that the request's session is known.
async fn html_errors(State(web): State<WebState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<error::Pending>() {
        let status = response.status();
        let mut page = error::render_page(&web, &error, status);
        for (name, value) in response.headers() {
            if name == header::SET_COOKIE {
                page.headers_mut().append(name, value.clone());
            }
        }
        let headers = page.headers_mut();
        if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&web.config)) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return page;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            WebConfig::new("https://air.example.org/").origin(),
            "https://air.example.org"
        );
        assert_eq!(
            WebConfig::new("http://127.0.0.1:8080").origin(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            WebConfig::new("https://example.org/city").origin(),
            "https://example.org"
        );
        assert!(WebConfig::new("https://x.org").secure_cookies());
        assert!(!WebConfig::new("http://127.0.0.1:8080").secure_cookies());
    }

    #[test]
    fn the_headline_index_is_the_us_aqi_unless_chosen() {
        assert_eq!(
            WebConfig::new("http://x").headline_index,
            HeadlineIndex::UsAqi
        );
        assert_eq!("EAQI".parse::<HeadlineIndex>(), Ok(HeadlineIndex::Eaqi));
        assert_eq!("us-aqi".parse::<HeadlineIndex>(), Ok(HeadlineIndex::UsAqi));
        assert!("pm25".parse::<HeadlineIndex>().is_err());
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_the_tile_host_only_for_images() {
        let mut config = WebConfig::new("http://127.0.0.1:8080");
        let csp = content_security_policy(&config);
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        config.tile_url = Some("https://tile.example.org/{z}/{x}/{y}.png".into());
        let csp = content_security_policy(&config);
        assert!(csp.contains("img-src 'self' data: https://tile.example.org;"));
        assert!(csp.contains("connect-src 'self';"));
        config.connect_origins = vec![
            "https://photos.s3.eu-west-1.amazonaws.com/".into(),
            "https://x.org; script-src *".into(),
        ];
        let csp = content_security_policy(&config);
        assert!(csp.contains("connect-src 'self' https://photos.s3.eu-west-1.amazonaws.com;"));
        assert!(!csp.contains("script-src *"));
    }
}
