//! The embedded server: slow-loris connections are closed after the header timeout and do not
//! stop normal answers, slow bodies are cut off, HTTP/2 with prior knowledge, the peer address,
//! graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, origin, Calls, Server};
use ecocityhub_edge::config::{EdgeConfig, ServerConfig};
use ecocityhub_edge::Edge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

async fn start(config: ServerConfig) -> Server {
    let mut edge = EdgeConfig::default();
    edge.shield.rate_limits.enabled = false;
    let app = Edge::new(edge)
        .unwrap()
        .wrap(origin(Arc::new(Calls::default())));
    Server::start(app, &config).await
}

/// Reads until the server closes the connection; `true` if it did within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn three_hundred_slow_loris_connections_neither_stop_answers_nor_stay_open() {
    let server = start(quick_timeouts()).await;
    let mut loris = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // Half a request head, never finished; every tenth sends nothing at all.
        if i % 10 != 0 {
            s.write_all(b"GET /api/v1/latest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        loris.push(s);
    }
    let c = client();
    for _ in 0..50 {
        let r = c.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Trickling more header bytes does not extend the deadline.
    for s in loris.iter_mut().skip(1).step_by(10) {
        let _ = s.write_all(b"a").await;
    }
    let started = Instant::now();
    let mut open = 0;
    for s in &mut loris {
        if !closed_within(s, Duration::from_secs(5).saturating_sub(started.elapsed())).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} slow connections still open");
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off_at_the_deadline() {
    let server = start(quick_timeouts()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection stayed open past the body deadline"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // A body that arrives in time is read.
    let ok = client()
        .post(server.url("/upload"))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "100000 bytes");
}

#[tokio::test]
async fn http2_with_prior_knowledge_and_the_peer_address_are_served() {
    let server = start(ServerConfig::default()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(server.url("/echo-ip")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "127.0.0.1 127.0.0.1");
    let r = client().get(server.url("/echo-ip")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_takes_no_new_ones() {
    let server = start(ServerConfig::default()).await;
    let url = server.url("/slow");
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await.unwrap();
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with('['));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
