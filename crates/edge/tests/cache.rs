//! The shared cache through a real server: hits and misses, ETags and 304s, Vary, requests
//! with credentials, cookies, precise invalidation, coalesced misses, stale-while-revalidate,
//! streamed answers and the byte bound.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, origin, policy, test_config, Calls, Server};

use ecocityhub_edge::config::EdgeConfig;
use ecocityhub_edge::{Edge, EdgeCache};

struct Site {
    server: Server,
    calls: Arc<Calls>,
    cache: EdgeCache,
    http: reqwest::Client,
}

impl Site {
    async fn start(config: EdgeConfig) -> Site {
        let calls = Arc::new(Calls::default());
        let edge = Edge::new(config.clone()).unwrap();
        let server = Server::start(edge.wrap(origin(calls.clone())), &config.server).await;
        Site {
            server,
            calls,
            cache: edge.cache().unwrap().clone(),
            http: client(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.server.url(path)).send().await.unwrap()
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.http.get(self.server.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }
}

fn no_limits() -> EdgeConfig {
    let mut c = test_config();
    c.shield.rate_limits.enabled = false;
    c
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()["x-edge-cache"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_public_get_is_fetched_once_then_served_with_policy_etag_and_age() {
    let s = Site::start(no_limits()).await;
    let first = s.get("/api/v1/latest").await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "miss");
    let cc = first.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cc,
        "public, max-age=0, s-maxage=60, stale-while-revalidate=30"
    );
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let body = first.text().await.unwrap();

    let second = s.get("/api/v1/latest").await;
    assert_eq!(cache_status(&second), "hit");
    assert!(second.headers().contains_key("age"));
    assert_eq!(second.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(second.text().await.unwrap(), body);
    assert_eq!(Calls::get(&s.calls.latest), 1);

    // HEAD is answered from the same entry.
    let head = s
        .http
        .head(s.server.url("/api/v1/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(Calls::get(&s.calls.latest), 1);
}

#[tokio::test]
async fn if_none_match_gets_304_from_the_cache_and_from_the_origin() {
    let s = Site::start(no_limits()).await;
    let etag = s.get("/api/v1/latest").await.headers()["etag"].clone();
    let etag = etag.to_str().unwrap();
    let r = s
        .get_with("/api/v1/latest", &[("if-none-match", etag)])
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.headers().contains_key("cache-control"));
    assert!(r.bytes().await.unwrap().is_empty());
    let r = s
        .get_with("/api/v1/latest", &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(r.status(), 200);

    // Not stored (private), still validated: the origin works, the bytes do not travel.
    let first = s.get("/private").await;
    assert_eq!(cache_status(&first), "pass");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let r = s.get_with("/private", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert_eq!(Calls::get(&s.calls.private), 2);
    assert_eq!(r.headers()["cache-control"], "private, max-age=60");
}

#[tokio::test]
async fn answers_that_vary_are_kept_apart() {
    let s = Site::start(no_limits()).await;
    let json = [("accept", "application/json")];
    let csv = [("accept", "text/csv")];
    let a = s.get_with("/vary", &json).await.text().await.unwrap();
    let b = s.get_with("/vary", &csv).await.text().await.unwrap();
    assert_eq!(a, r#"{"a":1,"b":2}"#);
    assert_eq!(b, "a,b\n1,2\n");
    let c = s.get_with("/vary", &json).await;
    assert_eq!(cache_status(&c), "hit");
    assert_eq!(c.text().await.unwrap(), a);
    let d = s.get_with("/vary", &csv).await;
    assert_eq!(cache_status(&d), "hit");
    assert_eq!(d.text().await.unwrap(), b);
    assert!(
        Calls::get(&s.calls.vary) <= 3,
        "learning the Vary costs at most one more call"
    );
}

#[tokio::test]
async fn requests_with_credentials_or_a_session_are_neither_served_from_nor_stored() {
    let s = Site::start(no_limits()).await;
    for headers in [
        [("authorization", "Bearer eyJ.x.y")],
        [("x-api-key", "ech_abc_def")],
        [("cookie", "ecch-csrf=t; ecch-session=secret")],
        [("cookie", "__Host-ecch-session=secret")],
    ] {
        let r = s.get_with("/api/v1/stations/s1", &headers).await;
        assert_eq!(cache_status(&r), "pass", "{headers:?}");
        // The policy is not applied to a personal answer.
        assert!(!r.headers().contains_key("cache-control"), "{headers:?}");
    }
    assert_eq!(Calls::get(&s.calls.station), 4);
    // Nothing of theirs was stored: the first anonymous request is a miss.
    let anonymous = s.get("/api/v1/stations/s1").await;
    assert_eq!(cache_status(&anonymous), "miss");
    // The CSRF cookie alone is not a session.
    let csrf_only = s
        .get_with("/api/v1/stations/s1", &[("cookie", "ecch-csrf=t")])
        .await;
    assert_eq!(cache_status(&csrf_only), "hit");
    // And with a session, the cached copy is not served either.
    let r = s
        .get_with("/api/v1/stations/s1", &[("cookie", "ecch-session=x")])
        .await;
    assert_eq!(cache_status(&r), "pass");
    assert_eq!(Calls::get(&s.calls.station), 6);
}

#[tokio::test]
async fn answers_that_set_a_cookie_are_not_stored_and_private_ones_are_not_either() {
    let s = Site::start(no_limits()).await;
    for _ in 0..3 {
        let r = s.get("/cookie").await;
        assert!(r.headers().contains_key("set-cookie"));
        assert_ne!(cache_status(&r), "hit");
        // No public policy on an answer that sets a cookie.
        assert!(!r.headers().contains_key("cache-control"));
    }
    assert_eq!(Calls::get(&s.calls.cookie), 3);
    for _ in 0..3 {
        s.get("/private").await;
    }
    assert_eq!(Calls::get(&s.calls.private), 3);
}

#[tokio::test]
async fn a_page_marked_private_by_default_is_cached_when_its_policy_overrides_it() {
    let s = Site::start(no_limits()).await;
    let first = s.get("/").await;
    assert_eq!(
        first.headers()["cache-control"],
        "public, max-age=0, s-maxage=60"
    );
    let second = s.get("/").await;
    assert_eq!(cache_status(&second), "hit");
    assert_eq!(Calls::get(&s.calls.page), 1);
}

#[tokio::test]
async fn invalidating_a_tag_drops_exactly_the_entries_that_carry_it() {
    let s = Site::start(no_limits()).await;
    for path in [
        "/api/v1/stations/london_1",
        "/api/v1/stations/paris_2",
        "/tagged",
    ] {
        s.get(path).await;
        assert_eq!(cache_status(&s.get(path).await), "hit", "{path}");
    }
    s.cache.invalidate_tags(&["station:london_1"]);
    let london = s.get("/api/v1/stations/london_1").await;
    assert_eq!(cache_status(&london), "miss");
    let v: serde_json::Value = london.json().await.unwrap();
    assert_eq!(v["id"], "london_1");
    assert_eq!(
        cache_status(&s.get("/api/v1/stations/paris_2").await),
        "hit"
    );
    assert_eq!(cache_status(&s.get("/tagged").await), "hit");

    // Tags the origin sent are used and never shown.
    let tagged = s.get("/tagged").await;
    assert!(!tagged.headers().contains_key("x-cache-tags"));
    s.cache.invalidate_tags(&["other"]);
    let again = s.get("/tagged").await;
    assert_eq!(cache_status(&again), "miss");
    assert_eq!(again.text().await.unwrap(), "tagged 1");

    // A tag shared by every station page drops them all.
    s.cache.invalidate_tags(&["stations"]);
    assert_eq!(
        cache_status(&s.get("/api/v1/stations/paris_2").await),
        "miss"
    );
}

#[tokio::test]
async fn an_invalidation_during_the_origin_call_is_not_lost() {
    let mut config = no_limits();
    let slow = config.cache.routes.iter_mut().find(|r| r.path == "/slow");
    slow.unwrap().tags = vec!["slow".into()];
    let s = Arc::new(Site::start(config).await);
    let s2 = s.clone();
    let filling = tokio::spawn(async move { s2.get("/slow").await.status() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The data change while the origin renders the old version.
    s.cache.invalidate_tags(&["slow"]);
    assert_eq!(filling.await.unwrap(), 200);
    let next = s.get("/slow").await;
    assert_eq!(
        cache_status(&next),
        "miss",
        "the entry made before the change is dropped"
    );
    assert_eq!(cache_status(&s.get("/slow").await), "hit");
}

#[tokio::test]
async fn fifty_concurrent_misses_make_one_origin_call() {
    let s = Arc::new(Site::start(no_limits()).await);
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let r = s.get("/slow").await;
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert_eq!(
        Calls::get(&s.calls.slow),
        1,
        "one origin call for 50 misses"
    );
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn a_stale_entry_is_served_at_once_and_refreshed_by_one_call() {
    let mut config = no_limits();
    config.cache.routes.insert(
        0,
        ecocityhub_edge::config::CacheRoute {
            s_maxage: Duration::from_secs(1),
            stale_while_revalidate: Duration::from_secs(30),
            ..policy("/api/v1/stations/{id}")
        },
    );
    let s = Site::start(config).await;
    let v = |r: reqwest::Response| async move {
        r.json::<serde_json::Value>().await.unwrap()["version"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(v(s.get("/api/v1/stations/a").await).await, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = s.get("/api/v1/stations/a").await;
    assert_eq!(cache_status(&stale), "stale");
    assert_eq!(v(stale).await, 0);
    // The refresh may already be done.
    let next = s.get("/api/v1/stations/a").await;
    assert!(["stale", "hit"].contains(&cache_status(&next).as_str()));
    for _ in 0..100 {
        if Calls::get(&s.calls.station) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = s.get("/api/v1/stations/a").await;
    assert_eq!(cache_status(&fresh), "hit");
    assert_eq!(v(fresh).await, 1);
    assert_eq!(
        Calls::get(&s.calls.station),
        2,
        "one refresh for two stale answers"
    );
}

#[tokio::test]
async fn a_streamed_answer_passes_through_uncached() {
    let s = Site::start(no_limits()).await;
    for _ in 0..2 {
        let r = s.get("/csv").await;
        assert_eq!(cache_status(&r), "pass");
        assert!(!r.headers().contains_key("etag"));
        let text = r.text().await.unwrap();
        assert_eq!(text.lines().count(), 2_000);
    }
    assert_eq!(Calls::get(&s.calls.csv), 2);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_bytes_and_skips_answers_too_large() {
    let mut config = no_limits();
    config.cache.max_bytes = 64 * 1024;
    config.cache.max_entry_bytes = 8 * 1024;
    let s = Site::start(config).await;
    for i in 0..100 {
        let r = s.get(&format!("/sized/{}", 4000 + i)).await;
        assert_eq!(r.bytes().await.unwrap().len(), 4000 + i);
    }
    let size = s.cache.weighted_size().await;
    assert!(size <= 64 * 1024, "{size} bytes held");
    assert!(s.cache.entry_count().await > 0);
    let big = s.get("/sized/20000").await;
    assert_eq!(cache_status(&big), "pass");
    assert_eq!(big.bytes().await.unwrap().len(), 20_000);
    let big = s.get("/sized/20000").await;
    assert_eq!(cache_status(&big), "pass");
}
