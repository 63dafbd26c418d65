//! The embedded server: an axum `Router` on a `TcpListener`, HTTP/1.1 and HTTP/2, plain or TLS,
//! with the slow-loris defences `axum::serve` lacks — a header read timeout (which also closes
//! idle keep-alive connections), a whole-body read deadline, a TLS handshake timeout — the
//! peer's `ConnectInfo<SocketAddr>` on every request, and graceful shutdown on a future.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::tls::Tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Http1,
    Http2,
}

/// The connection settings every connection of a server shares.
struct Settings {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    config: ServerConfig,
}

impl Settings {
    fn new(config: &ServerConfig) -> Settings {
        let mut base = auto::Builder::new(TokioExecutor::new());
        base.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        base.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Settings {
            http1: base.clone().http1_only(),
            http2: base.http2_only(),
            config: config.clone(),
        }
    }

    fn builder(&self, protocol: Protocol) -> &auto::Builder<TokioExecutor> {
        match protocol {
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
        }
    }
}

/// Serves `app` on `listener` (plain HTTP/1.1, and HTTP/2 with prior knowledge) until
/// `shutdown` completes; then waits up to `shutdown_grace` for requests in flight.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    accept_loop(
        listener,
        app,
        Arc::new(Settings::new(config)),
        None,
        shutdown,
    )
    .await
}

/// Serves `app` over TLS with `tls`'s certificate (reloaded when its files change), HTTP/2
/// through ALPN, `Strict-Transport-Security` on every answer when `hsts` is given.
pub async fn serve_tls<F>(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    tls: &Tls,
    hsts: Option<crate::tls::HstsLayer>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let app = match hsts {
        Some(layer) => app.layer(layer),
        None => app,
    };
    let acceptor = tls.acceptor(config.http2);
    let reloader = tls.spawn_reloader();
    let result = accept_loop(
        listener,
        app,
        Arc::new(Settings::new(config)),
        Some(acceptor),
        shutdown,
    )
    .await;
    reloader.abort();
    result
}

/// Answers every plain-HTTP request with `308 Permanent Redirect` to the same path on
/// `https://host:https_port`.
pub async fn serve_redirect<F>(
    listener: TcpListener,
    https_port: u16,
    config: &ServerConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let app = Router::new()
        .fallback(move |request: Request| async move { redirect_to_https(&request, https_port) });
    let mut config = config.clone();
    config.http2 = false;
    accept_loop(
        listener,
        app,
        Arc::new(Settings::new(&config)),
        None,
        shutdown,
    )
    .await
}

fn redirect_to_https(request: &Request, https_port: u16) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed").into_response();
    };
    let name = host_without_port(host);
    let authority = if https_port == 443 {
        name.to_string()
    } else {
        format!("{name}:{https_port}")
    };
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{authority}{target}");
    match (location.parse::<Uri>(), HeaderValue::from_str(&location)) {
        (Ok(_), Ok(value)) => {
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            r.headers_mut().insert(header::LOCATION, value);
            r
        }
        _ => (StatusCode::BAD_REQUEST, "the request's target is not valid").into_response(),
    }
}

/// `example.org:8080` → `example.org`, `[::1]:8080` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

async fn accept_loop<F>(
    listener: TcpListener,
    app: Router,
    settings: Arc<Settings>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (app, settings, tls) = (app.clone(), settings.clone(), tls.clone());
                let watcher = graceful.watcher();
                connections.spawn(connection(tcp, peer, app, settings, tls, watcher));
            }
        }
    }
    drop(listener);
    let grace = settings.config.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "connections still open after the grace period: closing them");
        }
    }
    connections.abort_all();
    Ok(())
}

/// One connection: TLS handshake or protocol sniffing, under their timeouts, then HTTP.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    settings: Arc<Settings>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    watcher: Watcher,
) {
    metrics::gauge!("ecocityhub_edge_open_connections").increment(1.0);
    let config = &settings.config;
    match tls {
        Some(acceptor) => {
            match tokio::time::timeout(config.tls_handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                    http(
                        TokioIo::new(stream),
                        protocol,
                        peer,
                        app,
                        &settings,
                        watcher,
                    )
                    .await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => {
            let protocol = if config.http2 {
                match tokio::time::timeout(config.header_read_timeout, sniff(&tcp)).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        tracing::debug!(%peer, "no request within the header timeout");
                        None
                    }
                }
            } else {
                Some(Protocol::Http1)
            };
            if let Some(protocol) = protocol {
                http(TokioIo::new(tcp), protocol, peer, app, &settings, watcher).await;
            }
        }
    }
    metrics::gauge!("ecocityhub_edge_open_connections").decrement(1.0);
}

/// HTTP/2 with prior knowledge starts with its preface; anything else is HTTP/1.
async fn sniff(tcp: &TcpStream) -> io::Result<Protocol> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(Protocol::Http1);
        }
        if n == PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // A part of the preface: wait for the rest (peek would return at once again).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn http<I>(
    io: I,
    protocol: Protocol,
    peer: SocketAddr,
    app: Router,
    settings: &Settings,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let body_timeout = settings.config.body_read_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|b| Body::new(TimedBody::new(b, body_timeout)));
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = settings
        .builder(protocol)
        .serve_connection(io, service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The request body failed to arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that must arrive whole within a deadline counted from its first read.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            timeout,
            deadline: None,
        }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(host: &str, target: &str, port: u16) -> (u16, Option<String>) {
        let request = Request::builder()
            .uri(target)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let r = redirect_to_https(&request, port);
        (
            r.status().as_u16(),
            r.headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_string()),
        )
    }

    #[test]
    fn redirects_keep_host_path_and_query_and_take_the_https_port() {
        assert_eq!(
            redirect("example.org:8080", "/a/b?c=d", 8443),
            (308, Some("https://example.org:8443/a/b?c=d".into()))
        );
        assert_eq!(
            redirect("example.org", "/", 443),
            (308, Some("https://example.org/".into()))
        );
        assert_eq!(
            redirect("[::1]:8080", "/x", 8443),
            (308, Some("https://[::1]:8443/x".into()))
        );
        assert_eq!(redirect("evil\"host", "/", 443).0, 400);
    }
}
