//! Static assets (CSS, JavaScript, icons): embedded in the binary, named after their content by
//! `build.rs`, served under `/static/` with a year-long immutable cache lifetime. In AWS the
//! same files go to the S3 bucket behind CloudFront (`ecocityhub static export DIR`).

use std::path::Path;

use axum::extract::Path as UrlPath;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
pub struct Asset {
    /// The name in `static/`, as templates refer to it.
    pub name: &'static str,
    /// The served name, with a hash of the content.
    pub hashed: &'static str,
    /// `/static/<hashed>`.
    pub url: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The URL of an asset by its source name.
///
/// # Panics
/// If there is no such asset: templates name assets that exist (a test checks every one).
pub fn url(name: &str) -> &'static str {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.url)
        .unwrap_or_else(|| panic!("no static asset named {name}"))
}

/// The media type of a file name.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `/static/{file}`, and the service worker at `/sw.js` (a service worker's URL cannot change
/// with its content, and its scope is the site: `Service-Worker-Allowed: /`).
pub fn routes() -> Router {
    Router::new()
        .route("/static/{file}", get(serve))
        .route("/sw.js", get(service_worker))
}

async fn service_worker() -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == "sw.js") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(asset.name)),
            ),
            // Browsers check for a new worker at most daily anyway; always ask.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("service-worker-allowed"),
                HeaderValue::from_static("/"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

async fn serve(UrlPath(file): UrlPath<String>) -> Response {
    match ASSETS.iter().find(|a| a.hashed == file) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(asset.name)),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            "no such static file (asset names change with their content; reload the page)",
        )
            .into_response(),
    }
}

/// Writes every asset under its hashed name into `dir` (for `aws s3 sync` to the static
/// bucket, served with `Cache-Control: public, max-age=31536000, immutable`). Returns the names.
pub fn export(dir: &Path) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for asset in ASSETS {
        std::fs::write(dir.join(asset.hashed), asset.bytes)?;
        written.push(asset.hashed);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_after_its_content() {
        use std::collections::HashSet;
        let names: HashSet<_> = ASSETS.iter().map(|a| a.hashed).collect();
        assert_eq!(names.len(), ASSETS.len());
        for a in ASSETS {
            let (stem, ext) = a.name.rsplit_once('.').unwrap();
            assert!(a.hashed.starts_with(&format!("{stem}.")), "{}", a.hashed);
            assert!(a.hashed.ends_with(&format!(".{ext}")), "{}", a.hashed);
            assert_eq!(a.hashed.len(), a.name.len() + 13, "{}", a.hashed);
            assert_eq!(a.url, format!("/static/{}", a.hashed));
        }
        for name in ["app.css", "app.js", "reports.js", "favicon.svg", "sw.js"] {
            assert!(url(name).starts_with("/static/"));
        }
    }

    #[test]
    fn export_writes_the_hashed_files() {
        let dir = tempfile::tempdir().unwrap();
        let written = export(dir.path()).unwrap();
        assert_eq!(written.len(), ASSETS.len());
        let css = ASSETS.iter().find(|a| a.name == "app.css").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(css.hashed)).unwrap(),
            css.bytes
        );
    }
}
