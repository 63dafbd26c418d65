//! HTTPS: a self-signed certificate made once and reused, requests with it trusted, HTTP/2 by
//! ALPN, a replaced certificate file served without a restart, the redirect listener, HSTS on
//! HTTPS only.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{origin, Calls};
use ecocityhub_edge::config::{EdgeConfig, ServerConfig, TlsConfig};
use ecocityhub_edge::{serve, serve_redirect, serve_tls, Edge, HstsLayer, Tls};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn app() -> axum::Router {
    let mut config = EdgeConfig::default();
    config.shield.rate_limits.enabled = false;
    Edge::new(config)
        .unwrap()
        .wrap(origin(Arc::new(Calls::default())))
}

/// An HTTPS server on 127.0.0.1:0; stops when the sender is dropped.
async fn https(tls: &Tls, http2: bool) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let tls = tls.clone();
    let hsts = HstsLayer::from_config(&TlsConfig::default());
    let config = ServerConfig {
        http2,
        ..ServerConfig::default()
    };
    tokio::spawn(async move {
        serve_tls(listener, app(), &config, &tls, hsts, async {
            let _ = stopped.await;
        })
        .await
    });
    (addr, stop)
}

fn trusting(pem_file: &Path) -> reqwest::Client {
    let pem = std::fs::read(pem_file).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

#[tokio::test]
async fn a_self_signed_certificate_serves_http2_with_hsts_and_is_kept_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        enabled: true,
        ..TlsConfig::default()
    };
    let tls = Tls::load(&config, dir.path()).unwrap();
    assert!(tls.is_self_signed());
    assert!(tls.certificate_path().starts_with(dir.path()));
    let (addr, stop) = https(&tls, true).await;
    let client = trusting(tls.certificate_path());
    let r = client.get(url(addr, "/echo-ip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "h2 through ALPN");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.text().await.unwrap(), "127.0.0.1 127.0.0.1");
    // By its address too (an IP SAN).
    let by_ip = client
        .get(format!("https://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_ip.status(), 200);
    // A client that does not trust it is refused.
    let stranger = reqwest::Client::builder()
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    assert!(stranger.get(url(addr, "/healthz")).send().await.is_err());
    drop(stop);

    // The next start uses the same certificate: the client trusting it still connects.
    let again = Tls::load(&config, dir.path()).unwrap();
    let (addr, _stop) = https(&again, false).await;
    let r = client.get(url(addr, "/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11, "ALPN without h2");
}

#[tokio::test]
async fn a_replaced_certificate_file_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Two certificates for localhost, made as self-signed ones in two directories.
    let first_dir = dir.path().join("a");
    let second_dir = dir.path().join("b");
    let base = TlsConfig {
        enabled: true,
        hosts: vec!["localhost".into()],
        ..TlsConfig::default()
    };
    let first = Tls::load(&base, &first_dir).unwrap();
    let second = Tls::load(&base, &second_dir).unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::copy(first.certificate_path(), &cert).unwrap();
    std::fs::copy(first_dir.join("tls/self-signed.key"), &key).unwrap();
    let config = TlsConfig {
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        reload_interval: Duration::from_millis(100),
        ..base
    };
    let tls = Tls::load(&config, dir.path()).unwrap();
    assert!(!tls.is_self_signed());
    let (addr, _stop) = https(&tls, true).await;
    let old_client = trusting(first.certificate_path());
    let new_client = trusting(second.certificate_path());
    assert_eq!(
        old_client
            .get(url(addr, "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(new_client.get(url(addr, "/healthz")).send().await.is_err());

    // Replace the files (key first, as a deploy script might; the half-new pair is refused).
    std::fs::copy(second_dir.join("tls/self-signed.key"), &key).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::copy(second.certificate_path(), &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // New connections each time, so each one sees the certificate served now.
        let fresh = trusting(second.certificate_path());
        if fresh.get(url(addr, "/healthz")).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(trusting(first.certificate_path())
        .get(url(addr, "/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_and_gets_no_hsts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve_redirect(listener, 8443, &ServerConfig::default(), async {
            let _ = stopped.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "http://localhost:{}/stations/a?range=week",
            addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        "https://localhost:8443/stations/a?range=week"
    );
    assert!(!r.headers().contains_key("strict-transport-security"));

    // The same app over plain HTTP: no HSTS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    let (_stop2, stopped2) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, app(), &ServerConfig::default(), async {
            let _ = stopped2.await;
        })
        .await
    });
    let r = client
        .get(format!("http://{plain}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("strict-transport-security"));
}
