//! A small origin with the kinds of answers the edge must tell apart, served by the crate's own
//! `serve` on port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ecocityhub_edge::config::{CacheRoute, EdgeConfig, ServerConfig};
use ecocityhub_edge::ClientAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How often each origin route was called.
#[derive(Default)]
pub struct Calls {
    pub latest: AtomicUsize,
    pub station: AtomicUsize,
    pub slow: AtomicUsize,
    pub private: AtomicUsize,
    pub cookie: AtomicUsize,
    pub vary: AtomicUsize,
    pub tagged: AtomicUsize,
    pub csv: AtomicUsize,
    pub page: AtomicUsize,
    pub sized: AtomicUsize,
}

impl Calls {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// A JSON body of about `n` bytes.
pub fn json_body(n: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"station":"london_{i}","pm25":{:.1},"no2":{:.1},"stale":false}}"#,
            (i % 97) as f64 / 3.0,
            (i % 61) as f64 / 7.0
        ));
        i += 1;
    }
    out.push(']');
    out
}

pub fn origin(calls: Arc<Calls>) -> Router {
    let c = calls.clone();
    let latest = get(move || {
        c.latest.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                json_body(20_000),
            )
        }
    });
    let c = calls.clone();
    let station = get(move |Path(id): Path<String>| {
        let n = c.station.fetch_add(1, Ordering::SeqCst);
        async move { Json(serde_json::json!({"id": id, "version": n})) }
    });
    let c = calls.clone();
    let slow = get(move || {
        c.slow.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (
                [(header::CONTENT_TYPE, "application/json")],
                json_body(2_000),
            )
        }
    });
    let c = calls.clone();
    let private = get(move || {
        c.private.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [(header::CACHE_CONTROL, "private, max-age=60")],
                json_body(1_000),
            )
        }
    });
    let c = calls.clone();
    let cookie = get(move || {
        c.cookie.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [(header::SET_COOKIE, "ecch-csrf=abc; Path=/")],
                json_body(1_000),
            )
        }
    });
    let c = calls.clone();
    let vary = get(move |headers: HeaderMap| {
        c.vary.fetch_add(1, Ordering::SeqCst);
        async move {
            let csv = headers
                .get(header::ACCEPT)
                .is_some_and(|a| a.as_bytes().starts_with(b"text/csv"));
            let (ct, body) = if csv {
                ("text/csv", "a,b\n1,2\n".to_string())
            } else {
                ("application/json", r#"{"a":1,"b":2}"#.to_string())
            };
            ([(header::CONTENT_TYPE, ct), (header::VARY, "accept")], body)
        }
    });
    let c = calls.clone();
    let tagged = get(move || {
        let n = c.tagged.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [
                    ("x-cache-tags", "custom other"),
                    ("cache-control", "public, s-maxage=60"),
                ],
                format!("tagged {n}"),
            )
        }
    });
    let c = calls.clone();
    let csv = get(move || {
        c.csv.fetch_add(1, Ordering::SeqCst);
        async move { csv_stream(2_000) }
    });
    let c = calls.clone();
    let page = get(move || {
        c.page.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [
                    (header::CACHE_CONTROL, "no-cache, private"),
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                ],
                format!(
                    "<!doctype html><title>home</title>{}",
                    "<p>hello</p>".repeat(100)
                ),
            )
        }
    });
    let c = calls.clone();
    let sized = get(move |Path(n): Path<usize>| {
        c.sized.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                vec![b'x'; n],
            )
        }
    });
    Router::new()
        .route("/api/v1/latest", latest)
        .route("/api/v1/stations/{id}", station)
        .route("/slow", slow)
        .route("/private", private)
        .route("/cookie", cookie)
        .route("/vary", vary)
        .route("/tagged", tagged)
        .route("/csv", csv)
        .route("/", page)
        .route("/sized/{n}", sized)
        .route(
            "/image",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 5_000]) }),
        )
        .route("/echo-ip", get(echo_ip))
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// CSV rows sent as a stream, as the readings export does.
pub fn csv_stream(rows: usize) -> Response {
    let lines = futures::stream::iter((0..rows).map(|i| {
        Ok::<_, std::io::Error>(Bytes::from(format!(
            "2026-01-01T00:{:02}:00Z,london_1,pm25,{}.5\n",
            i % 60,
            i % 50
        )))
    }));
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn echo_ip(request: Request) -> String {
    let client = request.extensions().get::<ClientAddr>().and_then(|c| c.ip);
    let connect = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    format!("{} {}", opt(client), opt(connect))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// An edge configuration for tests: everything on, with the test routes' cache policies.
pub fn test_config() -> EdgeConfig {
    let mut c = EdgeConfig::default();
    c.cache.routes = vec![
        CacheRoute {
            path: "/api/v1/latest".into(),
            s_maxage: Duration::from_secs(60),
            max_age: Duration::ZERO,
            stale_while_revalidate: Duration::from_secs(30),
            tags: vec!["latest".into()],
            override_origin: false,
        },
        CacheRoute {
            path: "/api/v1/stations/{id}".into(),
            s_maxage: Duration::from_secs(60),
            max_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            tags: vec!["stations".into(), "station:{id}".into()],
            override_origin: false,
        },
        policy("/slow"),
        policy("/private"),
        policy("/cookie"),
        policy("/vary"),
        policy("/csv"),
        policy("/sized/{n}"),
        CacheRoute {
            override_origin: true,
            ..policy("/")
        },
    ];
    c
}

pub fn policy(path: &str) -> CacheRoute {
    CacheRoute {
        path: path.into(),
        s_maxage: Duration::from_secs(60),
        max_age: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        tags: Vec::new(),
        override_origin: false,
    }
}

/// A server of `app` on 127.0.0.1:0, stopped when dropped or by [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(app: Router, config: &ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = config.clone();
        let task = tokio::spawn(async move {
            ecocityhub_edge::serve(listener, app, &config, async {
                let _ = stopped.await;
            })
            .await
        });
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A client that sends exactly the headers it is given (no compression of its own).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client whose connections come from `ip` (another loopback address: another client).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

pub fn status_is(status: reqwest::StatusCode, expected: StatusCode) -> bool {
    status.as_u16() == expected.as_u16()
}
