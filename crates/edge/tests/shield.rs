//! Shield through a real server: a flood from one address is limited while another client is
//! served, proxies are believed only when trusted, and overload is shed at once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::{client, client_from, origin, test_config, Calls, Server};
use ecocityhub_edge::config::{EdgeConfig, RateKey, RateRule};
use ecocityhub_edge::Edge;

fn reads_limited_to(limit: u32) -> EdgeConfig {
    let mut c = test_config();
    c.shield.rate_limits.rules = vec![RateRule {
        name: "reads".into(),
        paths: vec!["/*".into()],
        methods: vec!["GET".into()],
        limit,
        window: Duration::from_secs(60),
        key: RateKey::Ip,
    }];
    c
}

async fn start(config: EdgeConfig) -> Server {
    let edge = Edge::new(config.clone()).unwrap();
    let app = edge.wrap(origin(Arc::new(Calls::default())));
    Server::start(app, &config.server).await
}

#[tokio::test]
async fn a_flood_from_one_address_is_limited_while_another_client_is_served() {
    let server = start(reads_limited_to(20)).await;
    let flooder = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");
    let url = server.url("/api/v1/latest");

    let flood = {
        let (flooder, url) = (flooder.clone(), url.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..200 {
                statuses.push(flooder.get(&url).send().await.unwrap());
            }
            statuses
        })
    };
    let mut others = Vec::new();
    for _ in 0..15 {
        others.push(other.get(&url).send().await.unwrap().status().as_u16());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flood = flood.await.unwrap();

    assert!(
        others.iter().all(|s| *s == 200),
        "the other client: {others:?}"
    );
    let ok = flood.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = flood.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(ok + limited.len(), 200);
    // A burst of 20, and maybe one more refilled while the flood ran (one every 3 s).
    assert!((20..=21).contains(&ok), "{ok} passed");
    let refused = limited[0];
    let h = refused.headers();
    assert_eq!(h["content-type"], "application/problem+json");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert_eq!(h["ratelimit-policy"], "\"reads\";q=20;w=60");
    assert_eq!(h["ratelimit"], format!("\"reads\";r=0;t={retry}"));

    // Allowed answers say how much is left.
    let fine = other.get(&url).send().await.unwrap();
    let state = fine.headers()["ratelimit"].to_str().unwrap().to_string();
    // 15 of the other client's 20 were used (one more may have come back meanwhile).
    assert!(
        state.starts_with("\"reads\";r=4;t=") || state.starts_with("\"reads\";r=5;t="),
        "{state}"
    );

    let body: serde_json::Value = flooder
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["code"], "too_many_requests");
    assert_eq!(body["status"], 429);
}

#[tokio::test]
async fn spoofed_forwarded_headers_change_nothing_by_default() {
    let server = start(reads_limited_to(5)).await;
    let c = client();
    let echo = c
        .get(server.url("/echo-ip"))
        .header("x-forwarded-for", "9.9.9.9")
        .header("cloudfront-viewer-address", "8.8.8.8:443")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(echo, "127.0.0.1 127.0.0.1");
    // A new made-up address on every request does not escape the limit.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = c
            .get(server.url("/healthz"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_believed_for_the_client_address_and_the_limits() {
    let mut config = reads_limited_to(2);
    config.client_addr.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let server = start(config).await;
    let c = client();
    let echo = c
        .get(server.url("/echo-ip"))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.4")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The ConnectInfo the app sees is the client too.
    assert_eq!(echo, "198.51.100.4 198.51.100.4");
    for viewer in ["198.51.100.7", "198.51.100.8"] {
        for expected in [200, 200, 429] {
            let r = c
                .get(server.url("/healthz"))
                .header("cloudfront-viewer-address", format!("{viewer}:5555"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), expected, "viewer {viewer}");
        }
    }
}

#[tokio::test]
async fn past_the_concurrency_cap_requests_are_refused_at_once() {
    let (release, wait) = tokio::sync::watch::channel(false);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    let app = Router::new().route(
        "/work",
        get(move || {
            let (mut wait, counter) = (wait.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = wait.wait_for(|go| *go).await;
                "done"
            }
        }),
    );
    let mut config = EdgeConfig::default();
    config.shield.max_concurrent_requests = 4;
    config.shield.rate_limits.enabled = false;
    let edge = Edge::new(config.clone()).unwrap();
    let server = Server::start(edge.wrap(app), &config.server).await;
    let c = client();
    let busy: Vec<_> = (0..4)
        .map(|_| tokio::spawn(c.get(server.url("/work")).send()))
        .collect();
    while in_flight.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The cap is reached: every further request is answered while the four still work.
    let mut refused = Vec::new();
    for _ in 0..16 {
        refused.push(c.get(server.url("/work")).send().await.unwrap());
    }
    assert_eq!(
        in_flight.load(Ordering::SeqCst),
        4,
        "none of them reached the handler"
    );
    for r in &refused {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    release.send(true).unwrap();
    for b in busy {
        assert_eq!(b.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        c.get(server.url("/work")).send().await.unwrap().status(),
        200
    );
}
