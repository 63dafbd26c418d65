//! Compression of text answers (JSON, GeoJSON, problem+json, CSV, HTML, SVG, JS, CSS) with
//! brotli, zstd or gzip, streamed answers included; images and answers already encoded are
//! sent as they are.
//!
//! [`NegotiateLayer`] runs before the cache: it rewrites `Accept-Encoding` to the one encoding
//! the answer will have (`br`, `zstd`, `gzip`, or none for identity), so the cache keys each
//! variant by it and a client without gzip gets identity. tower-http's compression (inside the
//! cache) then encodes with it and adds `Vary: Accept-Encoding` to every compressible answer.
//! [`OriginBodyLayer`], innermost, notes whether the origin's body had a known length, so the
//! cache can tell a streamed answer from a whole one after compression has wrapped it.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use http_body::Body as _;
use tower::{Layer, Service};
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::config::CompressionConfig;

/// The encodings in the server's order of preference.
const PREFERENCE: [&str; 3] = ["br", "zstd", "gzip"];

/// The encodings this edge may use.
#[derive(Debug, Clone, Copy)]
pub struct Encodings {
    pub br: bool,
    pub zstd: bool,
    pub gzip: bool,
}

impl Encodings {
    pub fn from_config(c: &CompressionConfig) -> Encodings {
        Encodings {
            br: c.br && c.enabled,
            zstd: c.zstd && c.enabled,
            gzip: c.gzip && c.enabled,
        }
    }

    fn enabled(&self, name: &str) -> bool {
        match name {
            "br" => self.br,
            "zstd" => self.zstd,
            "gzip" => self.gzip,
            _ => false,
        }
    }

    /// The encoding to answer a request's `Accept-Encoding` with; `None`: identity.
    pub fn choose(&self, accept: &HeaderMap) -> Option<&'static str> {
        let mut offered: Vec<(String, f32)> = Vec::new();
        for value in accept.get_all(header::ACCEPT_ENCODING) {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if name.is_empty() {
                    continue;
                }
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                offered.push((name, q));
            }
        }
        let q_of = |name: &str| {
            offered
                .iter()
                .find(|(n, _)| n == name || (name == "gzip" && n == "x-gzip"))
                .or_else(|| offered.iter().find(|(n, _)| n == "*"))
                .map(|(_, q)| *q)
                .unwrap_or(0.0)
        };
        let mut best: Option<(&'static str, f32)> = None;
        for name in PREFERENCE {
            let q = q_of(name);
            if self.enabled(name) && q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((name, q));
            }
        }
        best.map(|(name, _)| name)
    }
}

/// Rewrites `Accept-Encoding` to the chosen encoding (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct NegotiateLayer {
    encodings: Encodings,
}

impl NegotiateLayer {
    pub fn new(encodings: Encodings) -> NegotiateLayer {
        NegotiateLayer { encodings }
    }
}

impl<S> Layer<S> for NegotiateLayer {
    type Service = Negotiate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Negotiate {
            inner,
            encodings: self.encodings,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Negotiate<S> {
    inner: S,
    encodings: Encodings,
}

impl<S: Service<Request>> Service<Request> for Negotiate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let chosen = self.encodings.choose(request.headers());
        let headers = request.headers_mut();
        headers.remove(header::ACCEPT_ENCODING);
        if let Some(name) = chosen {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(name));
        }
        self.inner.call(request)
    }
}

/// Is an answer of this `Content-Type` text worth compressing?
pub fn is_compressible(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = mime.split_once('/') else {
        return false;
    };
    match kind {
        "text" => sub != "event-stream",
        "application" => {
            matches!(
                sub,
                "json" | "javascript" | "ecmascript" | "xml" | "x-ndjson" | "csv" | "wasm"
            ) || sub.ends_with("+json")
                || sub.ends_with("+xml")
        }
        "image" => sub == "svg+xml",
        _ => false,
    }
}

/// tower-http's predicate: compressible types, at least `min_bytes` (or of unknown length),
/// and not marked `no-transform`.
#[derive(Debug, Clone, Copy)]
pub struct TextAnswers {
    min_bytes: u16,
}

impl Predicate for TextAnswers {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        let headers = response.headers();
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-transform"));
        let big_enough = response
            .body()
            .size_hint()
            .exact()
            .is_none_or(|n| n >= u64::from(self.min_bytes));
        !no_transform && big_enough && is_compressible(headers.get(header::CONTENT_TYPE))
    }
}

/// The compression layer of `config`.
pub fn compression_layer(config: &CompressionConfig) -> CompressionLayer<TextAnswers> {
    let e = Encodings::from_config(config);
    CompressionLayer::new()
        .br(e.br)
        .zstd(e.zstd)
        .gzip(e.gzip)
        .no_deflate()
        .quality(CompressionLevel::Precise(config.level))
        .compress_when(TextAnswers {
            min_bytes: config.min_bytes,
        })
}

/// The length of the origin's body (`None`: streamed), noted before compression wraps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginBody {
    pub exact_len: Option<u64>,
}

/// Notes [`OriginBody`] on every answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginBodyLayer;

impl<S> Layer<S> for OriginBodyLayer {
    type Service = OriginBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginBodyService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct OriginBodyService<S> {
    inner: S,
}

impl<S> Service<Request> for OriginBodyService<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(Response) -> Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::TryFutureExt;
        self.inner
            .call(request)
            .map_ok(mark_origin_body as fn(_) -> _)
    }
}

fn mark_origin_body(mut response: Response) -> Response {
    let exact_len = response.body().size_hint().exact();
    response.extensions_mut().insert(OriginBody { exact_len });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    const ALL: Encodings = Encodings {
        br: true,
        zstd: true,
        gzip: true,
    };

    #[test]
    fn the_best_accepted_encoding_is_chosen() {
        assert_eq!(ALL.choose(&accept("gzip, deflate, br, zstd")), Some("br"));
        assert_eq!(ALL.choose(&accept("gzip, zstd")), Some("zstd"));
        assert_eq!(ALL.choose(&accept("gzip;q=1, br;q=0.5")), Some("gzip"));
        assert_eq!(ALL.choose(&accept("br;q=0, gzip")), Some("gzip"));
        assert_eq!(ALL.choose(&accept("identity")), None);
        assert_eq!(ALL.choose(&accept("*")), Some("br"));
        assert_eq!(ALL.choose(&accept("x-gzip")), Some("gzip"));
        assert_eq!(ALL.choose(&HeaderMap::new()), None);
        let gzip_only = Encodings {
            br: false,
            zstd: false,
            gzip: true,
        };
        assert_eq!(gzip_only.choose(&accept("br, zstd")), None);
    }

    #[test]
    fn only_text_types_are_compressible() {
        let yes = [
            "application/json",
            "application/problem+json",
            "application/geo+json",
            "text/csv; charset=utf-8",
            "text/html; charset=utf-8",
            "image/svg+xml",
            "application/javascript",
            "text/css",
        ];
        for t in yes {
            assert!(is_compressible(Some(&HeaderValue::from_static(t))), "{t}");
        }
        for t in [
            "image/png",
            "image/webp",
            "application/octet-stream",
            "text/event-stream",
        ] {
            assert!(!is_compressible(Some(&HeaderValue::from_static(t))), "{t}");
        }
        assert!(!is_compressible(None));
    }
}
