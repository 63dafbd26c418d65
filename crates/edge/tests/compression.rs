//! Compression through a real server: negotiation of br, zstd and gzip, identity for clients
//! without them (also from the cache), streamed answers, images left alone.

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{client, json_body, origin, test_config, Calls, Server};
use ecocityhub_edge::Edge;

async fn start() -> (Server, Arc<Calls>) {
    let mut config = test_config();
    config.shield.rate_limits.enabled = false;
    let calls = Arc::new(Calls::default());
    let app = Edge::new(config.clone())
        .unwrap()
        .wrap(origin(calls.clone()));
    (Server::start(app, &config.server).await, calls)
}

fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(bytes).unwrap(),
        "identity" => out = bytes.to_vec(),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

async fn fetch(server: &Server, path: &str, accept: Option<&str>) -> (String, String, Vec<u8>) {
    let mut r = client().get(server.url(path));
    if let Some(a) = accept {
        r = r.header("accept-encoding", a);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let encoding = r
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| "identity".into());
    let vary = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    let body = r.bytes().await.unwrap().to_vec();
    (encoding, vary, body)
}

#[tokio::test]
async fn json_goes_out_in_the_best_encoding_the_client_takes() {
    let (server, calls) = start().await;
    let plain = json_body(20_000).into_bytes();
    for (accept, expected) in [
        (Some("gzip, deflate, br, zstd"), "br"),
        (Some("gzip, zstd"), "zstd"),
        (Some("gzip"), "gzip"),
        (Some("identity"), "identity"),
        (None, "identity"),
        (Some("br;q=0, gzip;q=0.5"), "gzip"),
    ] {
        let (encoding, vary, body) = fetch(&server, "/api/v1/latest", accept).await;
        assert_eq!(encoding, expected, "Accept-Encoding {accept:?}");
        assert!(vary.contains("accept-encoding"), "{vary}");
        assert_eq!(decode(&encoding, &body), plain, "{accept:?}");
        if expected != "identity" {
            assert!(
                body.len() * 3 < plain.len(),
                "{expected}: {} bytes",
                body.len()
            );
        }
    }
    // One origin call per encoding, whatever the spelling of the header.
    assert_eq!(Calls::get(&calls.latest), 4);
    let (encoding, _, _) = fetch(&server, "/api/v1/latest", Some("gzip;q=1.0")).await;
    assert_eq!(encoding, "gzip");
    assert_eq!(Calls::get(&calls.latest), 4);
}

#[tokio::test]
async fn a_streamed_csv_is_compressed_as_it_streams() {
    let (server, _) = start().await;
    let (encoding, _, body) = fetch(&server, "/csv", Some("gzip")).await;
    assert_eq!(encoding, "gzip");
    let text = String::from_utf8(decode("gzip", &body)).unwrap();
    assert_eq!(text.lines().count(), 2_000);
    assert!(text.starts_with("2026-01-01T00:00:00Z,london_1,pm25,0.5\n"));
    let (encoding, _, body) = fetch(&server, "/csv", Some("zstd")).await;
    assert_eq!(encoding, "zstd");
    assert_eq!(decode("zstd", &body), text.as_bytes());
}

#[tokio::test]
async fn images_and_small_answers_are_sent_as_they_are() {
    let (server, _) = start().await;
    let (encoding, vary, body) = fetch(&server, "/image", Some("gzip, br")).await;
    assert_eq!(encoding, "identity");
    assert!(!vary.contains("accept-encoding"));
    assert_eq!(body.len(), 5_000);
    let (encoding, _, body) = fetch(&server, "/healthz", Some("gzip")).await;
    assert_eq!(
        (encoding.as_str(), body.as_slice()),
        ("identity", b"ok".as_slice())
    );
}
