//! The API end to end: the real router served on a random port, talked to over HTTP, on an
//! SQLite file and on a fresh PostgreSQL database (each test runs on both).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;

use chrono::{Duration, DurationRound, Utc};
use ecocityhub_domain::{Parameter, QualityFlag, Reading, StationId};
use ecocityhub_store::{testing, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ---- ingestion -------------------------------------------------------------------------------

async fn a_json_batch_is_stored_and_resending_it_changes_nothing(app: TestApp) {
    let body = json!([
        {"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": 12.5},
        {"parameter": "no2", "time": "2024-03-01T00:00:00Z", "value": 20, "unit": "ppb"},
        {"parameter": "temperature", "time": "2024-03-01T00:00:00Z", "value": 50, "unit": "°F", "station": "s1"},
    ]);
    let resp = app.post_json(body.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["received"], 3);
    assert_eq!(summary["accepted"], 3);
    assert_eq!(summary["unchanged"], 0);
    assert_eq!(summary["rejected"], json!([]));
    assert_eq!(app.store.count_readings().await.unwrap(), 3);

    let again = app.post_json(body).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["accepted"], 3);
    assert_eq!(
        again["unchanged"], 3,
        "a re-sent batch changes nothing: {again}"
    );
    assert_eq!(
        app.store.count_readings().await.unwrap(),
        3,
        "re-sending is idempotent"
    );
    // A corrected value replaces the old one, and only it counts as changed.
    let fixed = app
        .post_json(json!([
            {"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": 13.0},
            {"parameter": "no2", "time": "2024-03-01T00:00:00Z", "value": 20, "unit": "ppb"},
        ]))
        .await;
    let fixed: Value = fixed.json().await.unwrap();
    assert_eq!(
        (fixed["accepted"].as_u64(), fixed["unchanged"].as_u64()),
        (Some(2), Some(1)),
        "{fixed}"
    );
    let pm25: Value = app.get_json("/api/v1/stations/s1/readings?parameter=pm25&from=2024-03-01T00:00:00Z&to=2024-03-02T00:00:00Z").await;
    assert_eq!(pm25["readings"][0]["value"], 13.0);
    assert_eq!(app.store.count_readings().await.unwrap(), 3);

    // Units were converted to the canonical ones: 20 ppb NO2 ≈ 37.6 µg/m³, 50 °F = 10 °C.
    let no2 = app.get("/api/v1/stations/s1/readings?parameter=no2&from=2024-03-01T00:00:00Z&to=2024-03-02T00:00:00Z").await;
    let no2: Value = no2.json().await.unwrap();
    let v = no2["readings"][0]["value"].as_f64().unwrap();
    assert!((v - 37.6).abs() < 0.2, "{v}");
    assert_eq!(no2["unit"], "µg/m³");
    let temp: Value = app.get_json("/api/v1/stations/s1/readings?parameter=temperature&from=2024-03-01T00:00:00Z&to=2024-03-02T00:00:00Z").await;
    assert!((temp["readings"][0]["value"].as_f64().unwrap() - 10.0).abs() < 1e-9);
}

async fn ndjson_and_csv_batches_are_accepted(app: TestApp) {
    let nd = "{\"parameter\":\"o3\",\"time\":\"2024-03-01T00:00:00Z\",\"value\":40}\n{\"parameter\":\"o3\",\"time\":\"2024-03-01T01:00:00Z\",\"value\":41}\n";
    let resp = app.post(Some(&app.key), "application/x-ndjson", nd).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 2);

    let csv =
        "time,parameter,value,unit\n2024-03-01T02:00:00Z,o3,20,ppb\n2024-03-01T03:00:00Z,o3,,ppb\n";
    let resp = app.post(Some(&app.key), "text/csv", csv).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["accepted"], 1);
    assert_eq!(summary["rejected"][0]["index"], 1);
    assert!(summary["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("value"));
    assert_eq!(app.store.count_readings().await.unwrap(), 3);
}

async fn bad_rows_are_listed_and_good_rows_kept(app: TestApp) {
    let future = iso(Utc::now() + Duration::minutes(30));
    let soon = iso(Utc::now() + Duration::minutes(5));
    let body = json!([
        {"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": 10},
        {"parameter": "pm25", "time": "2024-03-01T01:00:00Z", "value": -3},
        {"parameter": "relativehumidity", "time": "2024-03-01T00:00:00Z", "value": 140},
        {"parameter": "pm25", "time": future, "value": 10},
        {"parameter": "pm25", "time": soon, "value": 11},
        {"parameter": "radon", "time": "2024-03-01T00:00:00Z", "value": 1},
        {"parameter": "no2", "time": "2024-03-01T00:00:00Z", "value": 1, "unit": "furlongs"},
        {"parameter": "pm25", "time": "yesterday", "value": 1},
    ]);
    let resp = app.post_json(body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["received"], 8);
    assert_eq!(summary["accepted"], 2, "{summary}");
    let rejected = summary["rejected"].as_array().unwrap();
    let indices: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, vec![1, 2, 3, 5, 6, 7]);
    let reason = |i: usize| rejected[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(2).contains("future"), "{}", reason(2));
    assert!(reason(3).contains("radon"), "{}", reason(3));
    assert_eq!(app.store.count_readings().await.unwrap(), 2);

    // A batch of nothing but bad rows stores nothing and says why, row by row.
    let resp = app
        .post_json(json!([{"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": -1}]))
        .await;
    let body = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["index"], 0);
}

async fn malformed_bodies_are_refused_without_losing_data(app: TestApp) {
    assert_eq!(
        app.post_json(json!([{"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": 10}]))
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        app.post(Some(&app.key), "application/json", "[{\"parameter\":")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.post(Some(&app.key), "application/json", "{\"a\":1}")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.post(Some(&app.key), "text/plain", "hello").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        app.post(Some(&app.key), "text/csv", "a,b\n1,2\n").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let huge = "x".repeat(ecocityhub_api::ingest::MAX_BATCH_BYTES + 1);
    problem(
        app.post(Some(&app.key), "application/json", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let mut many = String::from("time,parameter,value\n");
    for i in 0..=ecocityhub_api::ingest::MAX_BATCH_ROWS {
        many.push_str(&format!("2024-01-01T00:00:{:02}Z,pm25,{i}\n", i % 60));
    }
    problem(
        app.post(Some(&app.key), "text/csv", many).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(
        app.store.count_readings().await.unwrap(),
        1,
        "refused requests lose nothing already stored"
    );
}

async fn keys_are_checked(app: TestApp) {
    let row =
        json!([{"parameter": "pm25", "time": "2024-03-01T00:00:00Z", "value": 10}]).to_string();
    problem(
        app.post(None, "application/json", row.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // The last character changed (to one it is not: a key ending in `x` stays wrong too).
    let last = if app.key.ends_with('x') { 'y' } else { 'x' };
    let wrong_secret = format!("{}{last}", &app.key[..app.key.len() - 1]);
    problem(
        app.post(Some(&wrong_secret), "application/json", row.clone())
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(Some("not-a-key"), "application/json", row.clone())
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // X-Api-Key works as well as a bearer token.
    let resp = app
        .client
        .post(app.url("/api/v1/readings"))
        .header("content-type", "application/json")
        .header("x-api-key", &app.key)
        .body(row.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The key of station s2 may not write readings of s1.
    let for_s1 = json!([{"station": "s1", "parameter": "pm25", "time": "2024-03-01T01:00:00Z", "value": 10}]).to_string();
    let body = problem(
        app.post(Some(&app.other_key), "application/json", for_s1)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("s2"));

    // A revoked key stops working at once.
    let prefix = app.other_key.split('_').nth(1).unwrap();
    assert!(app
        .store
        .revoke_device_key(prefix, Utc::now())
        .await
        .unwrap());
    problem(
        app.post(Some(&app.other_key), "application/json", row)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(app.store.count_readings().await.unwrap(), 1);
}

// ---- reading -----------------------------------------------------------------------------------

async fn stations_list_filters_and_speaks_geojson(app: TestApp) {
    app.seed_hourly("s1", Parameter::Pm25, t0(), &[Some(10.0)])
        .await;
    let all: Value = app.get_json("/api/v1/stations").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["id"], "s1");
    assert_eq!(all[0]["parameters"][0]["parameter"], "pm25");

    let pm: Value = app.get_json("/api/v1/stations?parameter=pm25").await;
    assert_eq!(pm.as_array().unwrap().len(), 1);
    let berlin: Value = app.get_json("/api/v1/stations?bbox=13,52,14,53").await;
    assert_eq!(berlin[0]["id"], "s2");
    assert_eq!(berlin.as_array().unwrap().len(), 1);

    let geo = app
        .client
        .get(app.url("/api/v1/stations"))
        .header("accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    assert_eq!(geo.headers()["content-type"], "application/geo+json");
    let geo: Value = geo.json().await.unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    assert_eq!(
        geo["features"][0]["geometry"]["coordinates"],
        json!([-0.15, 51.5])
    );
    let by_param: Value = app.get_json("/api/v1/stations?format=geojson").await;
    assert_eq!(by_param["features"].as_array().unwrap().len(), 2);

    problem(
        app.get("/api/v1/stations?bbox=1,2,3").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get("/api/v1/stations?parameter=radon").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get("/api/v1/stations?format=xml").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let one: Value = app.get_json("/api/v1/stations/s2").await;
    assert_eq!(one["name"], "Station s2");
    problem(
        app.get("/api/v1/stations/nope").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn latest_shows_values_and_the_aqi(app: TestApp) {
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    // A day of PM2.5 at 40 µg/m³: NowCast 40 → AQI 112 ("Unhealthy for Sensitive Groups"),
    // and a 24-hour mean of 40 → EAQI "Moderate".
    app.seed_hourly(
        "s1",
        Parameter::Pm25,
        now - Duration::hours(23),
        &[Some(40.0); 24],
    )
    .await;
    let latest: Value = app.get_json("/api/v1/latest").await;
    let s1 = latest
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["station"] == "s1")
        .unwrap();
    assert_eq!(s1["values"][0]["parameter"], "pm25");
    assert_eq!(s1["values"][0]["value"], 40.0);
    assert_eq!(s1["stale"], false);
    assert_eq!(s1["aqi"]["aqi"], 112, "{s1}");
    assert_eq!(s1["eaqi"]["dominant"], "pm25", "{s1}");
    assert_eq!(s1["eaqi"]["label"], "Moderate");
    assert_eq!(s1["eaqi"]["sub_levels"][0]["concentration"], 40.0);
    let s2 = latest
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["station"] == "s2")
        .unwrap();
    assert!(s2["aqi"].is_null());
    assert_eq!(s2["stale"], true);

    // A reading arriving through the API shows at once.
    let resp = app
        .post_json(
            json!([{"parameter": "pm25", "time": iso(now + Duration::minutes(1)), "value": 300}]),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let one: Value = app.get_json("/api/v1/latest?station=s1").await;
    assert_eq!(one[0]["values"][0]["value"], 300.0);
    problem(
        app.get("/api/v1/latest?station=ghost").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn history_pages_through_raw_readings(app: TestApp) {
    let values: Vec<Option<f64>> = (0..250).map(|i| Some(i as f64)).collect();
    app.seed_hourly("s1", Parameter::Pm10, t0(), &values).await;
    let mut path = format!(
        "/api/v1/stations/s1/readings?parameter=pm10&from={}&to={}&limit=100",
        iso(t0()),
        iso(t0() + Duration::days(30))
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = app.get_json(&path).await;
        pages += 1;
        seen.extend(
            page["readings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["value"].as_f64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..250).map(|i| i as f64).collect::<Vec<_>>());

    let base = "/api/v1/stations/s1/readings";
    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("?parameter=pm10&limit=0", StatusCode::BAD_REQUEST),
        ("?parameter=pm10&limit=100000", StatusCode::BAD_REQUEST),
        ("?parameter=pm10&cursor=garbage", StatusCode::BAD_REQUEST),
        (
            "?parameter=pm10&from=2024-03-02T00:00:00Z&to=2024-03-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
        ),
        ("?parameter=pm10&from=last+week", StatusCode::BAD_REQUEST),
        ("?parameter=pm10&interval=5m", StatusCode::BAD_REQUEST),
        ("?parameter=pm10&agg=max", StatusCode::BAD_REQUEST),
    ] {
        problem(app.get(&format!("{base}{query}")).await, status).await;
    }
    problem(
        app.get("/api/v1/stations/ghost/readings?parameter=pm10")
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn daily_aggregates_state_period_and_coverage(app: TestApp) {
    // Day 1 complete (24 h), day 2 with 12 of 24 hours: its mean is marked insufficient.
    let mut values: Vec<Option<f64>> = vec![Some(10.0); 24];
    values.extend((0..24).map(|h| (h % 2 == 0).then_some(30.0)));
    app.seed_hourly("s1", Parameter::No2, t0(), &values).await;
    let page: Value = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=no2&interval=1d&agg=avg&from={}&to={}",
            iso(t0()),
            iso(t0() + Duration::days(2))
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["period_seconds"], 86400);
    assert_eq!(page["aggregate"], "avg");
    assert_eq!(page["min_coverage"], 0.75);
    let b = page["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["value"], 10.0);
    assert_eq!(b[0]["count"], 24);
    assert_eq!(b[0]["expected"], 24);
    assert_eq!(b[0]["sufficient"], true);
    assert_eq!(b[1]["count"], 12);
    assert_eq!(b[1]["coverage"], 0.5);
    assert_eq!(b[1]["sufficient"], false);

    // Asked about day 2 alone, its gaps must not pass for a two-hour sampling step.
    let day2: Value = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=no2&interval=1d&from={}&to={}",
            iso(t0() + Duration::days(1)),
            iso(t0() + Duration::days(2))
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(day2["step_seconds"], 3600);
    assert_eq!(day2["buckets"][0]["expected"], 24);
    assert_eq!(day2["buckets"][0]["sufficient"], false);

    let max: Value = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=no2&interval=1h&agg=max&from={}&to={}",
            iso(t0()),
            iso(t0() + Duration::hours(3))
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(max["buckets"].as_array().unwrap().len(), 3);
    assert_eq!(max["period_seconds"], 3600);
}

async fn csv_export_streams_the_whole_range(app: TestApp) {
    let values: Vec<Option<f64>> = (0..24 * 400).map(|i| Some((i % 50) as f64)).collect();
    app.seed_hourly("s1", Parameter::Pm25, t0(), &values).await;
    let resp = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=pm25&format=csv&from={}&to={}",
            iso(t0()),
            iso(t0() + Duration::days(400))
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("s1_pm25_raw.csv"));
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "time,value,unit,flag");
    assert_eq!(
        lines.len(),
        1 + 24 * 400,
        "every reading, beyond any page size"
    );
    assert_eq!(lines[1], "2024-03-01T00:00:00Z,0,µg/m³,valid");

    let daily = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=pm25&format=csv&interval=1d&from={}&to={}",
            iso(t0()),
            iso(t0() + Duration::days(3))
        ))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = daily.lines().collect();
    assert_eq!(
        lines[0],
        "start,end,value,unit,aggregate,count,expected,coverage,sufficient"
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[1].ends_with(",avg,24,24,1.000,true"), "{}", lines[1]);
}

/// The export is sent while the range is still being read: chunked, with no length, its first
/// bytes before the end of the range is read — and when reading fails half-way, the answer ends
/// as a broken body rather than looking like a complete file.
async fn csv_export_is_sent_while_it_is_read_and_a_failure_mid_way_shows(app: TestApp) {
    let minutes = 600_000;
    let readings: Vec<Reading> = (0..minutes)
        .map(|i| Reading {
            station: StationId::parse("s1").unwrap(),
            parameter: Parameter::Pm25,
            time: t0() + Duration::minutes(i),
            value: (i % 97) as f64,
            flag: QualityFlag::Valid,
        })
        .collect();
    for chunk in readings.chunks(50_000) {
        app.store.insert_readings(chunk).await.unwrap();
    }
    let mut resp = app
        .get(&format!(
            "/api/v1/stations/s1/readings?parameter=pm25&format=csv&from={}&to={}",
            iso(t0()),
            iso(t0() + Duration::minutes(minutes))
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.headers().get("content-length").is_none());
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    assert!(first.starts_with(b"time,value,unit,flag\n"));
    // The rest of the range cannot be read any more.
    let renamed = rename_table(&app, "readings", "readings_away").await;
    let mut received = first.len();
    let failed = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => received += bytes.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    rename_table(&app, "readings_away", "readings").await;
    assert!(renamed);
    assert!(
        failed,
        "the export ended as if complete after {received} bytes"
    );
    assert!(
        received < 600_000 * 30,
        "the whole range had been read before the first bytes went out ({received} bytes)"
    );
}

/// Renames a table through the store's own connection pool (the test's stand-in for a
/// database failing half-way through a long read).
async fn rename_table(app: &TestApp, from: &str, to: &str) -> bool {
    app.sql(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .await
        .is_ok()
}

/// Devices re-sending overlapping batches at once: every batch is stored whole (no deadlock,
/// no error), and every reading ends with a value one of the batches sent.
async fn overlapping_batches_for_the_same_rows_land_whole(app: TestApp) {
    let rows = 2_000;
    let batch = |k: usize| {
        // Each batch in its own order, so that row locks are asked for in different orders.
        let mut items: Vec<Value> = (0..rows)
            .map(|i| {
                json!({"parameter": "pm25", "time": iso(t0() + Duration::hours(i as i64)), "value": k as f64})
            })
            .collect();
        items.rotate_left(k * rows / 8);
        if k % 2 == 1 {
            items.reverse();
        }
        Value::Array(items)
    };
    let posts = (0..8).map(|k| app.post_json(batch(k)));
    for resp in futures::future::join_all(posts).await {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], rows);
    }
    assert_eq!(app.store.count_readings().await.unwrap(), rows as u64);
    let stored = app
        .store
        .readings(
            &StationId::parse("s1").unwrap(),
            Parameter::Pm25,
            0,
            i64::MAX,
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), rows);
    assert!(stored
        .iter()
        .all(|p| (0.0..8.0).contains(&p.value) && p.value.fract() == 0.0));
}

/// Two refreshes with one refresh token at the same moment: exactly one gets tokens, and the
/// other is taken as a replay, which ends the sign-in — the winner's new refresh token too.
async fn two_refreshes_with_one_token_let_one_through_and_end_the_sign_in(app: TestApp) {
    app.sign_up_confirmed("ray@example.org").await;
    for round in 0..5 {
        let tokens = app.tokens("ray@example.org").await;
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let (a, b) = tokio::join!(
            app.post_auth("refresh", body.clone()),
            app.post_auth("refresh", body.clone())
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::UNAUTHORIZED],
            "round {round}"
        );
        let winner = if a.status() == StatusCode::OK { a } else { b };
        let new: Value = winner.json().await.unwrap();
        let next = app
            .post_auth("refresh", json!({"refresh_token": new["refresh_token"]}))
            .await;
        problem(next, StatusCode::UNAUTHORIZED).await;
    }
}

async fn meta_endpoints_answer(app: TestApp) {
    let health: Value = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], app.store.backend().name());
    let doc: Value = app.get_json("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/readings",
        "/api/v1/latest",
        "/api/v1/stations",
        "/api/v1/stations/{id}/readings",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let params: Value = app.get_json("/api/v1/parameters").await;
    assert_eq!(params.as_array().unwrap().len(), Parameter::ALL.len());
    problem(app.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND).await;
    problem(
        app.client
            .delete(app.url("/api/v1/stations"))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

// ---- identity ----------------------------------------------------------------------------------

async fn a_citizen_signs_up_confirms_signs_in_and_refreshes(app: TestApp) {
    problem(
        app.post_auth(
            "sign-up",
            json!({"email": "not-an-address", "password": PASSWORD}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let weak = problem(
        app.post_auth(
            "sign-up",
            json!({"email": "ann@example.org", "password": "password"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        weak["detail"].as_str().unwrap().contains("upper-case"),
        "{weak}"
    );
    problem(
        app.post_auth("sign-up", json!({"email": "ann@example.org"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    assert_eq!(
        app.post_auth(
            "sign-up",
            json!({"email": "Ann@Example.org", "password": PASSWORD})
        )
        .await
        .status(),
        StatusCode::ACCEPTED
    );
    let before = problem(
        app.sign_in("ann@example.org", PASSWORD).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(before["detail"].as_str().unwrap().contains("confirm"));
    problem(
        app.post_auth(
            "confirm",
            json!({"email": "ann@example.org", "code": "000000x"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let code = app.last_code("ann@example.org").await;
    assert_eq!(
        app.post_auth("confirm", json!({"email": "ann@example.org", "code": code}))
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        app.post_auth("confirm", json!({"email": "ann@example.org", "code": code}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let t = app.tokens("ANN@example.org").await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let access = t["access_token"].as_str().unwrap();
    let me: Value = app.get_as(access, "/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["email"], "ann@example.org");
    assert_eq!(me["roles"], json!(["citizen"]));
    assert_eq!(me["confirmed"], true);
    let claims = jwt_part(access, 1);
    assert_eq!(claims["sub"], me["id"]);
    assert_eq!(claims["iss"], format!("http://{}", app.addr));
    assert_eq!(claims["token_use"], "access");

    // Tokens verify against the published keys and discovery document.
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["kid"], jwt_part(access, 0)["kid"]);
    let discovery: Value = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], claims["iss"]);

    // The ID token is not an access token; no token is no access.
    problem(
        app.get_as(t["id_token"].as_str().unwrap(), "/api/v1/me")
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(app.get("/api/v1/me").await, StatusCode::UNAUTHORIZED).await;

    // Refresh rotates; replaying a used refresh token ends the whole sign-in.
    let first = t["refresh_token"].as_str().unwrap();
    let r1: Value = app
        .post_auth("refresh", json!({"refresh_token": first}))
        .await
        .json()
        .await
        .unwrap();
    let second = r1["refresh_token"].as_str().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        app.get_as(r1["access_token"].as_str().unwrap(), "/api/v1/me")
            .await
            .status(),
        StatusCode::OK
    );
    let replay = problem(
        app.post_auth("refresh", json!({"refresh_token": first}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(replay["detail"].as_str().unwrap().contains("already used"));
    problem(
        app.post_auth("refresh", json!({"refresh_token": second}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Sign-out ends a sign-in.
    let t2 = app.tokens("ann@example.org").await;
    assert_eq!(
        app.post_auth("sign-out", json!({"refresh_token": t2["refresh_token"]}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    problem(
        app.post_auth("refresh", json!({"refresh_token": t2["refresh_token"]}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Change the password, then delete the account.
    let t3 = app.tokens("ann@example.org").await;
    let access = t3["access_token"].as_str().unwrap();
    let change = |old: &str, new: &str| {
        app.client
            .post(app.url("/api/v1/auth/change-password"))
            .bearer_auth(access)
            .json(&json!({"old_password": old, "new_password": new}))
            .send()
    };
    problem(
        change("wrong", "N3w-Passw0rd!").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        change(PASSWORD, "N3w-Passw0rd!").await.unwrap().status(),
        StatusCode::OK
    );
    problem(
        app.post_auth("refresh", json!({"refresh_token": t3["refresh_token"]}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.sign_in("ann@example.org", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.sign_in("ann@example.org", "N3w-Passw0rd!")
            .await
            .status(),
        StatusCode::OK
    );
    let gone = app
        .client
        .delete(app.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    problem(
        app.get_as(access, "/api/v1/me").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn sign_in_tells_no_one_who_has_an_account_and_locks_out_guessers(app: TestApp) {
    app.sign_up_confirmed("bob@example.org").await;
    let unknown = problem(
        app.sign_in("nobody@example.org", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let wrong = problem(
        app.sign_in("bob@example.org", "Wr0ng-password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(unknown["detail"], wrong["detail"]);

    let again: Value = app
        .post_auth(
            "sign-up",
            json!({"email": "bob@example.org", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    let fresh: Value = app
        .post_auth(
            "sign-up",
            json!({"email": "carol@example.org", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, fresh);
    let messages_before = app.store.outbox("bob@example.org").await.unwrap().len();
    let forgot_known: Value = app
        .post_auth("forgot-password", json!({"email": "bob@example.org"}))
        .await
        .json()
        .await
        .unwrap();
    let forgot_unknown: Value = app
        .post_auth("forgot-password", json!({"email": "nobody@example.org"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(forgot_known, forgot_unknown);
    // The code goes out after the answer.
    for _ in 0..100 {
        if app.store.outbox("bob@example.org").await.unwrap().len() > messages_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(app
        .store
        .outbox("nobody@example.org")
        .await
        .unwrap()
        .is_empty());
    let reset_code = app.last_code("bob@example.org").await;

    // Four more wrong passwords (five in all) lock the account, even for the right password.
    for _ in 0..4 {
        problem(
            app.sign_in("bob@example.org", "Wr0ng-password").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    problem(
        app.sign_in("bob@example.org", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;

    // The reset code sets a new password and lifts the lock.
    problem(
        app.post_auth(
            "reset-password",
            json!({"email": "bob@example.org", "code": reset_code, "new_password": "weak"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let reset = app.post_auth("reset-password", json!({"email": "bob@example.org", "code": reset_code, "new_password": "An0ther-Passw0rd"})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(
        app.sign_in("bob@example.org", "An0ther-Passw0rd")
            .await
            .status(),
        StatusCode::OK
    );
    problem(app.post_auth("reset-password", json!({"email": "bob@example.org", "code": reset_code, "new_password": "Th1rd-Passw0rd"})).await, StatusCode::BAD_REQUEST).await;

    // One client address gets 12 attempts a minute here, whatever the accounts: 8 were made
    // above, so 4 more are answered and every one after them is refused.
    let mut answers = Vec::new();
    for i in 0..8 {
        answers.push(
            app.sign_in(&format!("guess{i}@example.org"), PASSWORD)
                .await
                .status(),
        );
    }
    let mut expected = vec![StatusCode::UNAUTHORIZED; 4];
    expected.extend([StatusCode::TOO_MANY_REQUESTS; 4]);
    assert_eq!(answers, expected);
}

async fn only_admins_manage_users(app: TestApp) {
    use ecocityhub_identity::{password, Role};
    use ecocityhub_store::identity::User;
    let admin = User {
        id: "admin-1".into(),
        email: "root@example.org".into(),
        password_hash: password::hash(PASSWORD),
        roles: vec![Role::Admin],
        confirmed: true,
        created_at: Utc::now(),
    };
    assert!(app.store.insert_user(&admin).await.unwrap());
    app.sign_up_confirmed("dave@example.org").await;
    let root = app.tokens("root@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let dave = app.tokens("dave@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let users: Value = app
        .get_as(&root, "/api/v1/admin/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);
    problem(
        app.get_as(&dave, "/api/v1/admin/users").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let dave_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "dave@example.org")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let patch = |token: &str, id: &str, body: Value| {
        app.client
            .patch(app.url(&format!("/api/v1/admin/users/{id}")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    problem(
        patch(&dave, &dave_id, json!({"roles": ["admin"]}))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        patch(&root, &dave_id, json!({"roles": ["root"]}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        patch(&root, &dave_id, json!({"roles": []})).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        patch(&root, "nobody", json!({"roles": ["citizen"]}))
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        patch(&root, "admin-1", json!({"roles": ["citizen"]}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let promoted: Value = patch(&root, &dave_id, json!({"roles": ["operator", "citizen"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["roles"], json!(["citizen", "operator"]));
    // The new roles travel in the next tokens.
    let claims = jwt_part(
        app.tokens("dave@example.org").await["access_token"]
            .as_str()
            .unwrap(),
        1,
    );
    assert_eq!(claims["cognito:groups"], json!(["citizen", "operator"]));
    // The authorizer layer answers before the handler reads anything.
    let unsigned = app
        .client
        .patch(app.url("/api/v1/admin/users/x"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(unsigned, StatusCode::UNAUTHORIZED).await;
    // Users are not devices: no token writes readings.
    let resp = app
        .client
        .post(app.url("/api/v1/readings"))
        .bearer_auth(&root)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNAUTHORIZED).await;
}

async fn keys_rotated_elsewhere_take_over_and_retired_keys_stop_verifying(app: TestApp) {
    use ecocityhub_identity::SigningKey;
    app.sign_up_confirmed("eve@example.org").await;
    let old = app.tokens("eve@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = jwt_part(&old, 0)["kid"].as_str().unwrap().to_string();
    // What `ecocityhub keys rotate` does, from another process.
    let key = SigningKey::generate(Utc::now() + Duration::seconds(1));
    app.store.insert_signing_key(&key).await.unwrap();
    let new = app.tokens("eve@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(jwt_part(&new, 0)["kid"], key.kid);
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get_as(&old, "/api/v1/me").await.status(),
        StatusCode::OK,
        "tokens outlive a rotation"
    );
    app.store
        .retire_signing_key(&old_kid, Utc::now())
        .await
        .unwrap();
    problem(
        app.get_as(&old, "/api/v1/me").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.get_as(&new, "/api/v1/me").await.status(),
        StatusCode::OK
    );
}

async fn a_browser_app_signs_in_with_the_oidc_code_flow_and_pkce(app: TestApp) {
    use base64::Engine;
    use sha2::Digest;
    app.sign_up_confirmed("fay@example.org").await;
    let browser = browser();
    let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk-extra-entropy-here";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let callback = "http://127.0.0.1:9999/callback";
    let params = [
        ("response_type", "code"),
        ("client_id", "ecocityhub-web"),
        ("redirect_uri", callback),
        ("scope", "openid email ecocityhub/api"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let authorize = app.url("/oauth2/authorize");
    // The form, and its refusals: an unregistered redirect is shown, never followed.
    let page = browser.get(&authorize).query(&params).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("name=\"code_challenge\""));
    let mut evil = params.to_vec();
    evil[2] = ("redirect_uri", "https://evil.example/steal");
    problem(
        browser.get(&authorize).query(&evil).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let mut no_pkce = params.to_vec();
    no_pkce.retain(|(k, _)| !k.starts_with("code_challenge"));
    let back = browser
        .get(&authorize)
        .query(&no_pkce)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let location = back.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(callback)
            && location.contains("error=invalid_request")
            && location.contains("state=st-123"),
        "{location}"
    );

    // Wrong password: the form again, with the same message as the API's.
    let csrf = app.authorize_page(&browser, &params).await;
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("csrf", &csrf));
    form.push(("email", "fay@example.org"));
    form.push(("password", "Wr0ng-password"));
    let wrong = browser.post(&authorize).form(&form).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("incorrect e-mail address or password"));
    form.pop();
    form.push(("password", PASSWORD));
    let ok = browser.post(&authorize).form(&form).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let location = ok.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{callback}?code=")) && location.ends_with("&state=st-123"),
        "{location}"
    );
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();

    let token = app.url("/oauth2/token");
    let exchange = |code: String, verifier: &'static str| {
        browser
            .post(&token)
            .form(&[
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", callback.to_string()),
                ("client_id", "ecocityhub-web".to_string()),
                ("code_verifier", verifier.to_string()),
            ])
            .send()
    };
    let bad = exchange(
        code.clone(),
        "not-the-verifier-not-the-verifier-not-the-verifier",
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // A failed exchange used the code up: a stolen code with a guessed verifier is worth nothing.
    let reused = exchange(code, verifier).await.unwrap();
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let ok = browser.post(&authorize).form(&form).send().await.unwrap();
    let location = ok.headers()["location"].to_str().unwrap().to_string();
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let tokens: Value = exchange(code, verifier)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwt_part(tokens["id_token"].as_str().unwrap(), 1)["nonce"],
        "n-456"
    );
    assert_eq!(
        jwt_part(tokens["access_token"].as_str().unwrap(), 1)["scope"],
        "openid email ecocityhub/api",
        "granted what was asked for"
    );
    assert_eq!(
        app.get_as(tokens["access_token"].as_str().unwrap(), "/api/v1/me")
            .await
            .status(),
        StatusCode::OK
    );
    let refreshed = browser
        .post(&token)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let unsupported = browser
        .post(&token)
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsupported.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let discovery: Value = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery["token_endpoint"],
        format!("http://{}/oauth2/token", app.addr)
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
}

// ---- federation with an outside OpenID provider ------------------------------------------------

/// A real OpenID provider, independently written: the OpenID-certified `oidc-provider` package
/// from npm, run by the machine's Node.js (`tests/oidc-provider/provider.mjs`). Stopped when
/// dropped.
struct OutsideProvider {
    issuer: String,
    _process: tokio::process::Child,
}

const IDP_NAME: &str = "test-idp";
const IDP_POST_NAME: &str = "test-idp-post";
const IDP_CLIENT_ID: &str = "ecocityhub-at-test-idp";
const IDP_CLIENT_SECRET: &str = "a-secret: with/odd+characters";
const CLIENT_CALLBACK: &str = "http://127.0.0.1:9999/callback";
const CLIENT_VERIFIER: &str = "federated-client-verifier-0123456789-abcdefghijklmnop";

/// Starts the provider for an app that will listen at `app_addr`. `None` (with a message on
/// the terminal) when its npm packages are not installed and this is not CI; under CI a
/// provider that cannot start fails the test.
async fn start_outside_provider(app_addr: SocketAddr) -> Option<OutsideProvider> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
    if !ecocityhub_testkit::require_that(
        dir.join("node_modules/oidc-provider").exists(),
        "the test OpenID provider (npm's oidc-provider)",
        &format!("run `npm ci` in {} (scripts/test does)", dir.display()),
    ) {
        return None;
    }
    let mut child = tokio::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env(
            "REDIRECT_URI",
            format!("http://{app_addr}/oauth2/idpresponse"),
        )
        .env("CLIENT_ID", IDP_CLIENT_ID)
        .env("CLIENT_SECRET", IDP_CLIENT_SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("Node.js runs (`node` on the PATH): the federation test needs it");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await;
    let Ok(Ok(Some(line))) = ready else {
        let _ = child.start_kill();
        let mut errors = String::new();
        let _ = child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut errors)
            .await;
        panic!("the test OpenID provider did not start ({ready:?}):\n{errors}");
    };
    // Keep its output drained (a closed pipe would end it at its next log line) and out of
    // the test output.
    let mut stdout = lines.into_inner();
    let mut stderr = child.stderr.take().unwrap();
    tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await });
    tokio::spawn(async move { tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await });
    let issuer = line
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("unexpected first line from the provider: {line}"))
        .to_string();
    Some(OutsideProvider {
        issuer,
        _process: child,
    })
}

/// The app with the outside provider configured as `test-idp`, and a browser with cookies.
struct Federated {
    app: TestApp,
    idp: OutsideProvider,
    browser: reqwest::Client,
}

async fn spawn_federated(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) -> Option<Federated> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = start_outside_provider(listener.local_addr().unwrap()).await?;
    use ecocityhub_api::federation::{OidcProviderConfig, TokenAuthMethod};
    let basic = OidcProviderConfig::new(IDP_NAME, &idp.issuer, IDP_CLIENT_ID, IDP_CLIENT_SECRET);
    // The same provider through its other client, which sends the secret in the form.
    let mut post = OidcProviderConfig::new(
        IDP_POST_NAME,
        &idp.issuer,
        format!("{IDP_CLIENT_ID}-post"),
        IDP_CLIENT_SECRET,
    );
    post.token_endpoint_auth_method = Some(TokenAuthMethod::ClientSecretPost);
    let app = spawn_app_on(listener, store, dir, |c| {
        c.identity.oidc_providers = vec![basic, post]
    })
    .await;
    Some(Federated {
        app,
        idp,
        browser: browser_with_cookies(),
    })
}

/// A browser of its own: cookies kept, redirects followed by hand.
fn browser_with_cookies() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The query parameters of a URL.
fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Federated {
    /// Our client's authorization request through `provider`; returns where the browser is sent.
    async fn start(&self, provider: &str, client_state: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(CLIENT_VERIFIER.as_bytes()));
        let resp = self
            .browser
            .get(self.app.url("/oauth2/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", "ecocityhub-web"),
                ("redirect_uri", CLIENT_CALLBACK),
                ("scope", "openid email ecocityhub/api"),
                ("state", client_state),
                ("nonce", "client-nonce"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("identity_provider", provider),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        resp.headers()["location"].to_str().unwrap().to_string()
    }

    /// Follows the browser from `url` through the provider's sign-in page (as `login`, any
    /// password) and consent page until it is sent to a URL starting with `stop_at`.
    async fn follow(&self, mut url: String, login: &str, stop_at: &str) -> String {
        for _ in 0..20 {
            if url.starts_with(stop_at) {
                return url;
            }
            let resp = self.browser.get(&url).send().await.unwrap();
            let resp = if resp.status().is_redirection() {
                resp
            } else {
                assert_eq!(resp.status(), StatusCode::OK, "at {url}");
                let at = resp.url().clone();
                let page = resp.text().await.unwrap();
                let action = page
                    .split("action=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("no form on the provider's page: {page}"));
                let form: Vec<(&str, &str)> = if page.contains("value=\"login\"") {
                    vec![("prompt", "login"), ("login", login), ("password", "any")]
                } else if page.contains("value=\"consent\"") {
                    vec![("prompt", "consent")]
                } else {
                    panic!("an unexpected page at the provider: {page}")
                };
                self.browser
                    .post(at.join(action).unwrap())
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
            };
            assert!(resp.status().is_redirection(), "{} at {url}", resp.status());
            let location = resp.headers()["location"].to_str().unwrap();
            url = resp.url().join(location).unwrap().to_string();
        }
        panic!("the browser never reached {stop_at}");
    }

    /// Another person at another browser (the provider remembers who signed in at this one).
    fn next_browser(&mut self) {
        self.browser = browser_with_cookies();
    }

    /// A whole sign-in through `provider` as `login`; returns the client's callback URL.
    async fn sign_in_with(&self, provider: &str, login: &str, client_state: &str) -> String {
        let to_provider = self.start(provider, client_state).await;
        self.follow(to_provider, login, CLIENT_CALLBACK).await
    }

    /// A whole sign-in through `test-idp` as `login`; returns the client's callback URL.
    async fn sign_in(&self, login: &str, client_state: &str) -> String {
        let to_provider = self.start(IDP_NAME, client_state).await;
        self.follow(to_provider, login, CLIENT_CALLBACK).await
    }

    /// The client's last step: our code for our tokens.
    async fn exchange(&self, callback: &str) -> Value {
        let code = query_of(callback)["code"].clone();
        let resp = self
            .browser
            .post(self.app.url("/oauth2/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CLIENT_CALLBACK),
                ("client_id", "ecocityhub-web"),
                ("code_verifier", CLIENT_VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// `GET /api/v1/me` with the access token of `tokens`.
    async fn me(&self, tokens: &Value) -> Value {
        let resp = self
            .app
            .get_as(tokens["access_token"].as_str().unwrap(), "/api/v1/me")
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }
}

async fn a_new_user_signs_in_through_an_outside_oidc_provider(f: Federated) {
    let doc: Value = f.app.get_json("/api/openapi.json").await;
    for path in ["/oauth2/idpresponse", "/api/v1/auth/providers"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} is documented"
        );
    }
    assert!(doc["paths"]["/oauth2/authorize"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "identity_provider"));
    assert_eq!(
        f.app.get_json("/api/v1/auth/providers").await,
        json!({"providers": [{"name": IDP_NAME}, {"name": IDP_POST_NAME}]})
    );
    let form = f
        .app
        .get("/oauth2/authorize?response_type=code&client_id=ecocityhub-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjtZyBxkM&code_challenge_method=S256")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("Sign in with test-idp") && form.contains("identity_provider=test-idp"),
        "{form}"
    );

    // Sent to the provider with the code flow's parameters, PKCE, state and nonce of our own.
    let to_provider = f.start(IDP_NAME, "client-state-1").await;
    assert!(
        to_provider.starts_with(&format!("{}/auth?", f.idp.issuer)),
        "{to_provider}"
    );
    let sent = query_of(&to_provider);
    assert_eq!(sent["client_id"], IDP_CLIENT_ID);
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["redirect_uri"], f.app.url("/oauth2/idpresponse"));
    assert!(sent["state"].len() >= 43 && sent["nonce"].len() >= 43);
    assert_ne!(
        sent["state"], "client-state-1",
        "the client's state stays with us"
    );

    // Signed in there, back at the client with a code of ours and its own state.
    let callback = f.follow(to_provider, "fay", CLIENT_CALLBACK).await;
    let back = query_of(&callback);
    assert_eq!(back["state"], "client-state-1", "{callback}");
    let tokens = f.exchange(&callback).await;
    assert_eq!(
        jwt_part(tokens["id_token"].as_str().unwrap(), 1)["nonce"],
        "client-nonce"
    );
    let me = f.me(&tokens).await;
    assert_eq!(me["email"], "fay@example.org");
    assert_eq!(me["confirmed"], true);
    assert_eq!(me["roles"], json!(["citizen"]));
    let id = me["id"].as_str().unwrap().to_string();
    let links = f.app.store.federated_identities_of(&id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].provider.as_str(), links[0].subject.as_str()),
        (IDP_NAME, "fay")
    );

    // The account has no password to sign in with.
    problem(
        f.app.sign_in("fay@example.org", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Again (the provider remembers the session): the same account, through the link.
    let again = f.sign_in("fay", "client-state-2").await;
    assert_eq!(query_of(&again)["state"], "client-state-2");
    assert_eq!(f.me(&f.exchange(&again).await).await["id"], id.as_str());
    assert_eq!(f.app.store.users().await.unwrap().len(), 1);
}

async fn an_existing_account_is_linked_by_its_verified_email(mut f: Federated) {
    // A confirmed account: the same user, and the password keeps working.
    f.app.sign_up_confirmed("gus@example.org").await;
    let local = f.me(&f.app.tokens("gus@example.org").await).await;
    let callback = f.sign_in("gus", "s1").await;
    let federated = f.me(&f.exchange(&callback).await).await;
    assert_eq!(federated["id"], local["id"]);
    assert_eq!(
        f.app.sign_in("gus@example.org", PASSWORD).await.status(),
        StatusCode::OK
    );

    // An account someone signed up for and never confirmed: the provider's verified owner gets
    // it, and the password chosen by whoever signed up stops working.
    assert_eq!(
        f.app
            .post_auth(
                "sign-up",
                json!({"email": "hal@example.org", "password": PASSWORD})
            )
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let squatted = f
        .app
        .store
        .user_by_email("hal@example.org")
        .await
        .unwrap()
        .unwrap();
    f.next_browser();
    // (Through the provider's other client: the secret goes in the form this time.)
    let callback = f.sign_in_with(IDP_POST_NAME, "hal", "s2").await;
    let owner = f.me(&f.exchange(&callback).await).await;
    assert_eq!(owner["id"], squatted.id.as_str());
    assert_eq!(owner["confirmed"], true);
    problem(
        f.app.sign_in("hal@example.org", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn replayed_forged_and_refused_answers_never_sign_anyone_in(mut f: Federated) {
    // The provider's answer, caught before our /oauth2/idpresponse takes it.
    let idp_response = f.app.url("/oauth2/idpresponse");
    let to_provider = f.start(IDP_NAME, "s1").await;
    let answer = f.follow(to_provider, "ida", &idp_response).await;
    assert_eq!(query_of(&answer)["iss"], f.idp.issuer, "RFC 9207 iss");
    let first = f.browser.get(&answer).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let callback = first.headers()["location"].to_str().unwrap().to_string();
    assert!(query_of(&callback).contains_key("code"), "{callback}");

    // The same answer again, a made-up state, no state: refused, nothing issued.
    let replayed = problem(
        f.browser.get(&answer).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(replayed["detail"]
        .as_str()
        .unwrap()
        .contains("start the sign-in again"));
    let mut forged = reqwest::Url::parse(&answer).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged-state".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    problem(
        f.browser.get(forged.as_str()).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        f.browser
            .get(format!("{idp_response}?code=abc"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        f.browser
            .get(format!("{idp_response}?error=access_denied&state=unknown"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Someone cancels at the provider: the client hears access_denied, with its state.
    f.next_browser();
    let to_provider = f.start(IDP_NAME, "s2").await;
    let interaction = f.browser.get(&to_provider).send().await.unwrap();
    let interaction = interaction
        .url()
        .join(interaction.headers()["location"].to_str().unwrap())
        .unwrap();
    assert!(
        interaction.path().starts_with("/interaction/"),
        "{interaction}"
    );
    let cancelled = f
        .follow(format!("{interaction}/abort"), "ida", CLIENT_CALLBACK)
        .await;
    let back = query_of(&cancelled);
    assert_eq!(back["error"], "access_denied", "{cancelled}");
    assert_eq!(back["state"], "s2");
    assert!(!back.contains_key("code"));

    // An address the provider has not verified: refused, no account made.
    let unverified = f.sign_in("unverified-joe", "s3").await;
    let back = query_of(&unverified);
    assert_eq!(back["error"], "access_denied", "{unverified}");
    assert!(
        back["error_description"].contains("verified"),
        "{unverified}"
    );
    assert!(f
        .app
        .store
        .user_by_email("unverified-joe@example.org")
        .await
        .unwrap()
        .is_none());

    // A provider that is not configured.
    let unknown = query_of(&f.start("myspace", "s4").await);
    assert_eq!(unknown["error"], "invalid_request");
    assert_eq!(unknown["state"], "s4");
    assert_eq!(f.app.store.users().await.unwrap().len(), 1, "only ida's");
}

macro_rules! both_backends_with_outside_provider {
    ($($name:ident),* $(,)?) => {
        mod federation {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $name() {
                        let dir = tempfile::tempdir().unwrap();
                        let store = ecocityhub_store::connect(&super::super::testing::sqlite_url(dir.path())).await.unwrap();
                        let Some(f) = super::super::spawn_federated(std::sync::Arc::new(store), Some(dir)).await else { return };
                        super::super::$name(f).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test]
                    async fn $name() {
                        let Some(store) = crate::common::postgres_store().await else { return };
                        let Some(f) = super::super::spawn_federated(std::sync::Arc::new(store), None).await else { return };
                        super::super::$name(f).await;
                    }
                )*
            }
        }
    };
}

both_backends_with_outside_provider!(
    a_new_user_signs_in_through_an_outside_oidc_provider,
    an_existing_account_is_linked_by_its_verified_email,
    replayed_forged_and_refused_answers_never_sign_anyone_in,
);

// ---- forecasts and models ---------------------------------------------------------------------

async fn forecasts_are_trained_served_promoted_and_rolled_back(app: TestApp) {
    app.insert_pm25_history().await;
    let forecast_url = "/api/v1/stations/s1/forecast?parameter=pm25";
    let none = problem(app.get(forecast_url).await, StatusCode::NOT_FOUND).await;
    assert!(none["detail"].as_str().unwrap().contains("no model serves"));
    problem(
        app.get("/api/v1/stations/s1/forecast?parameter=temperature")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get("/api/v1/stations/nope/forecast?parameter=pm25")
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Training is for admins only.
    app.sign_up_confirmed("carol@example.org").await;
    let carol = app.tokens("carol@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    problem(
        app.post_as(&carol, "/api/v1/ml/jobs", json!({})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let root = app.admin_token().await;
    let unknown = problem(
        app.post_as(&root, "/api/v1/ml/jobs", json!({"stations": ["nope"]}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(unknown["detail"].as_str().unwrap().contains("nope"));

    // The first model of a series serves at once.
    let job = app
        .train(&root, json!({"stations": ["s1"], "parameters": ["pm25"]}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["log"].as_str().unwrap().contains("s1/pm25 v1"), "{job}");
    assert_eq!(job["progress"], 1.0);
    let forecast: Value = app.get_json(forecast_url).await;
    let hours = forecast["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(forecast["stale"], false);
    assert_eq!(forecast["model"]["version"], 1);
    for h in hours {
        let (lo, v, hi) = (
            h["lower"].as_f64().unwrap(),
            h["value"].as_f64().unwrap(),
            h["upper"].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi && v > 0.0 && v < 200.0, "{h}");
        assert!(h["aqi"]["aqi"].as_u64().is_some(), "{h}");
    }
    assert_eq!(
        forecast["model"]["holdout_scores"]
            .as_array()
            .unwrap()
            .len(),
        24
    );

    // The registry and the report are public.
    let models: Value = app.get_json("/api/v1/ml/models?station=s1").await;
    assert_eq!(models[0]["status"], "serving");
    let v1 = models[0]["id"].as_i64().unwrap();
    let report = app.get(&format!("/api/v1/ml/models/{v1}/report")).await;
    assert!(report.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let markdown = report.text().await.unwrap();
    assert!(
        markdown.contains("## Error by horizon") && markdown.contains("| 24 h |"),
        "{markdown}"
    );
    let chart = app
        .get(&format!(
            "/api/v1/ml/models/{v1}/report/error-by-horizon.svg"
        ))
        .await;
    assert_eq!(chart.headers()["content-type"], "image/svg+xml");
    assert!(chart.text().await.unwrap().contains("<svg"));
    problem(
        app.get(&format!("/api/v1/ml/models/{v1}/report/..%2Fmodel.json"))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A retrained model waits as a candidate; a damaged artifact is never promoted.
    let job = app.train(&root, json!({"stations": ["s1"]})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let v2: Value = app.get_json("/api/v1/ml/models?station=s1").await;
    assert_eq!(v2[0]["version"], 2);
    assert_eq!(v2[0]["status"], "candidate");
    let v2_id = v2[0]["id"].as_i64().unwrap();
    let record = app.store.model(v2_id).await.unwrap().unwrap();
    let original = app.blobs.get(&record.artifact_key).await.unwrap().unwrap();
    app.blobs
        .put(
            &record.artifact_key,
            bytes::Bytes::from_static(b"{\"meta\": 1"),
        )
        .await
        .unwrap();
    problem(
        app.post_as(
            &carol,
            &format!("/api/v1/ml/models/{v2_id}/promote"),
            json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let damaged = problem(
        app.post_as(
            &root,
            &format!("/api/v1/ml/models/{v2_id}/promote"),
            json!({}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        damaged["detail"].as_str().unwrap().contains("checksum"),
        "{damaged}"
    );
    let forecast: Value = app.get_json(forecast_url).await;
    assert_eq!(forecast["model"]["version"], 1, "the serving model stays");

    // Repaired, it serves; a rollback brings v1 back, and there is nothing before v1.
    app.blobs.put(&record.artifact_key, original).await.unwrap();
    let promoted: Value = app
        .post_as(
            &root,
            &format!("/api/v1/ml/models/{v2_id}/promote"),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["status"], "serving");
    assert_eq!(app.get_json(forecast_url).await["model"]["version"], 2);
    let back: Value = app
        .post_as(
            &root,
            "/api/v1/ml/models/rollback",
            json!({"station": "s1", "parameter": "pm25"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["version"], 1);
    assert_eq!(app.get_json(forecast_url).await["model"]["version"], 1);
    problem(
        app.post_as(
            &root,
            "/api/v1/ml/models/rollback",
            json!({"station": "s1", "parameter": "pm25"}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;

    // Jobs: listed for admins, a finished one cannot be cancelled.
    let jobs: Value = app
        .get_as(&root, "/api/v1/ml/jobs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    let first = jobs[1]["id"].as_i64().unwrap();
    problem(
        app.post_as(&root, &format!("/api/v1/ml/jobs/{first}/cancel"), json!({}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        app.get_as(&carol, "/api/v1/ml/jobs").await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

async fn suspect_readings_are_flagged_explained_and_kept(app: TestApp) {
    // Two days of an ordinary hourly series, then a spike, then back to normal.
    let start = t0();
    let rows: Vec<Value> = (0..50)
        .map(|h| {
            let value = if h == 40 {
                480.0
            } else {
                30.0 + (h % 6) as f64
            };
            json!({"parameter": "pm25", "time": iso(start + Duration::hours(h)), "value": value})
        })
        .collect();
    let resp = app.post_json(Value::Array(rows)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 50);

    let mut found = Value::Null;
    for _ in 0..100 {
        found = app.get_json("/api/v1/stations/s1/anomalies").await;
        if !found.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], "spike");
    assert_eq!(found[0]["time"], iso(start + Duration::hours(40)));
    assert!(found[0]["detail"].as_str().unwrap().contains("median"));

    // The reading is kept, marked suspect; its neighbours are not.
    let history: Value = app
        .get_json(&format!(
            "/api/v1/stations/s1/readings?parameter=pm25&from={}&to={}",
            iso(start + Duration::hours(39)),
            iso(start + Duration::hours(42))
        ))
        .await;
    let flags: Vec<&str> = history["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flag"].as_str().unwrap())
        .collect();
    assert_eq!(flags, ["valid", "suspect", "valid"]);
    assert_eq!(history["readings"][1]["value"], 480.0);
    problem(
        app.get("/api/v1/stations/nope/anomalies").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/v1/stations/s1/anomalies?from=yesterday")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

async fn each_route_checks_the_scope_the_client_was_granted(app: TestApp) {
    let admin_password_token = app.admin_token().await;
    let admin = "ml-admin@example.org";
    // EcoCityHub's own sign-in grants every scope: the admin reaches the admin routes.
    assert_eq!(
        app.get_as(&admin_password_token, "/api/v1/admin/users")
            .await
            .status(),
        StatusCode::OK
    );
    // A client that asked only for the API scope cannot, although the user is an admin.
    let narrow = app
        .code_flow(admin, "openid ecocityhub/api evil/everything")
        .await;
    let access = narrow["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(access, 1)["scope"], "openid ecocityhub/api");
    assert_eq!(
        app.get_as(access, "/api/v1/me").await.status(),
        StatusCode::OK
    );
    for path in ["/api/v1/admin/users", "/api/v1/ml/jobs"] {
        let refused = problem(app.get_as(access, path).await, StatusCode::FORBIDDEN).await;
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("ecocityhub/admin"),
            "{refused}"
        );
    }
    // Refreshing keeps the grant: it never widens.
    let refreshed: Value = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrow["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(access, 1)["scope"], "openid ecocityhub/api");
    problem(
        app.get_as(access, "/api/v1/admin/users").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Without the API scope, not even the user's own account.
    let openid_only = app.code_flow(admin, "openid").await;
    problem(
        app.get_as(openid_only["access_token"].as_str().unwrap(), "/api/v1/me")
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Asked for, the admin scope is granted.
    let wide = app
        .code_flow(admin, "openid ecocityhub/api ecocityhub/admin")
        .await;
    assert_eq!(
        app.get_as(
            wide["access_token"].as_str().unwrap(),
            "/api/v1/admin/users"
        )
        .await
        .status(),
        StatusCode::OK
    );
}

/// An address without an account locks after the same failures, with the same answer: the
/// lock-out does not tell which addresses have accounts.
async fn addresses_without_accounts_lock_out_alike(app: TestApp) {
    app.sign_up_confirmed("erin@example.org").await;
    let mut answers = Vec::new();
    for email in ["erin@example.org", "nobody@example.org"] {
        for _ in 0..5 {
            problem(
                app.sign_in(email, "Wr0ng-password").await,
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
        let locked = problem(
            app.sign_in(email, PASSWORD).await,
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
        answers.push(
            locked["detail"]
                .as_str()
                .unwrap()
                .split(" after ")
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(answers[0], answers[1]);
}

/// Operators make and change stations through the API; citizens may not; bad places,
/// ids and time zones are 400s and an existing id a 409.
async fn operators_make_and_change_stations(app: TestApp) {
    use ecocityhub_identity::{password, Role};
    use ecocityhub_store::identity::User;
    let operator = User {
        id: "op-1".into(),
        email: "op@example.org".into(),
        password_hash: password::hash(PASSWORD),
        roles: vec![Role::Operator],
        confirmed: true,
        created_at: Utc::now(),
    };
    assert!(app.store.insert_user(&operator).await.unwrap());
    let op = app.tokens("op@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.sign_up_confirmed("cit@example.org").await;
    let citizen = app.tokens("cit@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let harbour = json!({"id": "harbour", "name": "Harbour", "lat": 53.55, "lon": -9.99,
                         "timezone": "Europe/Dublin", "metadata": {"operator": "City"}});
    problem(
        app.post_as(&citizen, "/api/v1/stations", harbour.clone())
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let resp = app.post_as(&op, "/api/v1/stations", harbour.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["timezone"], "Europe/Dublin");
    assert_eq!(made["metadata"]["operator"], "City");
    problem(
        app.post_as(&op, "/api/v1/stations", harbour).await,
        StatusCode::CONFLICT,
    )
    .await;
    for bad in [
        json!({"id": "x1", "name": "X", "lat": 95.0, "lon": 0.0}),
        json!({"id": "Bad Id", "name": "X", "lat": 1.0, "lon": 0.0}),
        json!({"id": "x2", "name": "", "lat": 1.0, "lon": 0.0}),
        json!({"id": "x3", "name": "X", "lat": 1.0, "lon": 0.0, "timezone": "Mars"}),
        json!({"id": "x4", "name": "X", "lat": 1.0}),
    ] {
        let resp = app.post_as(&op, "/api/v1/stations", bad.clone()).await;
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{bad}");
    }
    let listed = app.get_json("/api/v1/stations").await;
    assert!(listed.to_string().contains("harbour"), "{listed}");

    let resp = app
        .client
        .patch(app.url("/api/v1/stations/harbour"))
        .bearer_auth(&op)
        .json(&json!({"name": "Harbour Quay", "active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let station = app.get_json("/api/v1/stations/harbour").await;
    assert_eq!(station["name"], "Harbour Quay");
    assert_eq!(station["active"], false);
    let resp = app
        .client
        .patch(app.url("/api/v1/stations/harbour"))
        .bearer_auth(&op)
        .json(&json!({"lon": 200.0}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST).await;
    let resp = app
        .client
        .patch(app.url("/api/v1/stations/nowhere"))
        .bearer_auth(&op)
        .json(&json!({"name": "N"}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::NOT_FOUND).await;
}

/// A spike the anomaly checks flagged stays stored and shown, but does not drive the index
/// until an operator confirms it valid (and marking it invalid takes it out again).
async fn suspect_readings_leave_the_index_until_an_operator_confirms_them(app: TestApp) {
    use ecocityhub_domain::{QualityFlag, Reading, StationId};
    use ecocityhub_identity::{password, Role};
    use ecocityhub_store::identity::User;
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    app.seed_hourly(
        "s1",
        Parameter::Pm25,
        now - Duration::hours(23),
        &[Some(10.0); 23],
    )
    .await;
    let spike = Reading {
        station: StationId::parse("s1").unwrap(),
        parameter: Parameter::Pm25,
        time: now,
        value: 480.0,
        flag: QualityFlag::Suspect,
    };
    app.store.insert_readings(&[spike]).await.unwrap();
    let aqi_of_s1 = |latest: Value| {
        let s1 = latest
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["station"] == "s1")
            .cloned()
            .unwrap();
        (s1["aqi"]["aqi"].as_u64().unwrap(), s1["values"][0].clone())
    };
    let (aqi, newest) = aqi_of_s1(app.get_json("/api/v1/latest").await);
    assert!(aqi < 60, "the suspect spike drove the AQI to {aqi}");
    assert_eq!(newest["value"], 480.0, "the reading is still shown");
    assert_eq!(newest["flag"], "suspect");

    let operator = User {
        id: "op-1".into(),
        email: "op@example.org".into(),
        password_hash: password::hash(PASSWORD),
        roles: vec![Role::Operator],
        confirmed: true,
        created_at: Utc::now(),
    };
    assert!(app.store.insert_user(&operator).await.unwrap());
    let op = app.tokens("op@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.sign_up_confirmed("cit@example.org").await;
    let citizen = app.tokens("cit@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let verdict = json!({"parameter": "pm25", "time": iso(now), "flag": "valid"});
    let path = "/api/v1/stations/s1/readings/flag";
    problem(
        app.post_as(&citizen, path, verdict.clone()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let resp = app.post_as(&op, path, verdict).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["previous"], "suspect");
    let (confirmed, _) = aqi_of_s1(app.get_json("/api/v1/latest").await);
    assert!(
        confirmed > aqi + 50,
        "confirmed valid, the spike counts: {confirmed}"
    );
    let invalid = json!({"parameter": "pm25", "time": iso(now), "flag": "invalid"});
    assert_eq!(
        app.post_as(&op, path, invalid).await.status(),
        StatusCode::OK
    );
    assert_eq!(aqi_of_s1(app.get_json("/api/v1/latest").await).0, aqi);
    for (body, status) in [
        (
            json!({"parameter": "pm25", "time": iso(now - Duration::days(400)), "flag": "valid"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"parameter": "pm25", "time": iso(now), "flag": "fine"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parameter": "smog", "time": iso(now), "flag": "valid"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        problem(app.post_as(&op, path, body).await, status).await;
    }
}

both_backends!(
    suspect_readings_leave_the_index_until_an_operator_confirms_them,
    operators_make_and_change_stations,
    a_json_batch_is_stored_and_resending_it_changes_nothing,
    ndjson_and_csv_batches_are_accepted,
    bad_rows_are_listed_and_good_rows_kept,
    malformed_bodies_are_refused_without_losing_data,
    keys_are_checked,
    stations_list_filters_and_speaks_geojson,
    latest_shows_values_and_the_aqi,
    history_pages_through_raw_readings,
    daily_aggregates_state_period_and_coverage,
    csv_export_streams_the_whole_range,
    csv_export_is_sent_while_it_is_read_and_a_failure_mid_way_shows,
    overlapping_batches_for_the_same_rows_land_whole,
    two_refreshes_with_one_token_let_one_through_and_end_the_sign_in,
    meta_endpoints_answer,
    a_citizen_signs_up_confirms_signs_in_and_refreshes,
    sign_in_tells_no_one_who_has_an_account_and_locks_out_guessers,
    only_admins_manage_users,
    keys_rotated_elsewhere_take_over_and_retired_keys_stop_verifying,
    a_browser_app_signs_in_with_the_oidc_code_flow_and_pkce,
    forecasts_are_trained_served_promoted_and_rolled_back,
    suspect_readings_are_flagged_explained_and_kept,
    each_route_checks_the_scope_the_client_was_granted,
    addresses_without_accounts_lock_out_alike,
);

/// A stand-in for a Cognito user pool: its own RSA key set, served as a JWKS on loopback, and
/// access tokens shaped like Cognito's signed with it.
#[tokio::test]
async fn tokens_of_a_trusted_cognito_pool_are_accepted_by_the_same_authorizer() {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let rsa_key = |kid: &str| {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let jwk = json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": b64(&private.n().to_bytes_be()), "e": b64(&private.e().to_bytes_be())});
        (EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk)
    };
    let (key1, jwk1) = rsa_key("cognito-key-1");
    let published = Arc::new(std::sync::Mutex::new(vec![jwk1]));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (counter, keys) = (fetches.clone(), published.clone());
    let pool = axum::Router::new().route(
        "/eu-west-1_TEST/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, SeqCst);
            let body = json!({"keys": *keys.lock().unwrap()});
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/eu-west-1_TEST", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, pool).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let store = ecocityhub_store::connect(&testing::sqlite_url(dir.path()))
        .await
        .unwrap();
    let mut trusted =
        ecocityhub_api::identity::TrustedIssuer::cognito(&issuer, "cognito-app-client");
    trusted.refetch_after = std::time::Duration::from_millis(300);
    let app = spawn_app_with(Arc::new(store), Some(dir), |c| {
        c.identity.trusted_issuer = Some(trusted)
    })
    .await;

    let token = |key: &EncodingKey, kid: &str, groups: &[&str], client: &str, exp_in: i64| {
        let now = Utc::now().timestamp();
        let claims = json!({"sub": "cognito-user-1", "iss": issuer, "token_use": "access", "client_id": client,
            "cognito:groups": groups, "scope": "openid ecocityhub/api ecocityhub/admin", "auth_time": now, "iat": now,
            "exp": now + exp_in, "jti": "j1", "username": "cognito-user-1", "event_id": "e1"});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let users = "/api/v1/admin/users";
    let admin = token(
        &key1,
        "cognito-key-1",
        &["admin"],
        "cognito-app-client",
        300,
    );
    assert_eq!(app.get_as(&admin, users).await.status(), StatusCode::OK);
    // The pool's app client must be granted the resource server's admin scope too.
    let narrow = {
        let now = Utc::now().timestamp();
        let claims = json!({"sub": "cognito-user-1", "iss": issuer, "token_use": "access", "client_id": "cognito-app-client",
            "cognito:groups": ["admin"], "scope": "openid ecocityhub/api", "auth_time": now, "iat": now,
            "exp": now + 300, "jti": "j2", "username": "cognito-user-1", "event_id": "e2"});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("cognito-key-1".into());
        jsonwebtoken::encode(&header, &claims, &key1).unwrap()
    };
    let refused = problem(app.get_as(&narrow, users).await, StatusCode::FORBIDDEN).await;
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("ecocityhub/admin"));
    let citizen = token(
        &key1,
        "cognito-key-1",
        &["citizen"],
        "cognito-app-client",
        300,
    );
    problem(app.get_as(&citizen, users).await, StatusCode::FORBIDDEN).await;
    let other_client = token(&key1, "cognito-key-1", &["admin"], "another-client", 300);
    problem(
        app.get_as(&other_client, users).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let expired = token(
        &key1,
        "cognito-key-1",
        &["admin"],
        "cognito-app-client",
        -300,
    );
    problem(app.get_as(&expired, users).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        fetches.load(SeqCst),
        1,
        "the JWKS is fetched once and cached"
    );

    // The pool rotates: a token with the new kid makes one fetch and is accepted.
    let (key2, jwk2) = rsa_key("cognito-key-2");
    published.lock().unwrap().push(jwk2);
    let rotated = token(
        &key2,
        "cognito-key-2",
        &["admin"],
        "cognito-app-client",
        300,
    );
    // Accepted once the least time between two fetches (300 ms here) has passed; tries before
    // that are refused without reaching the pool.
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..250 {
        status = app.get_as(&rotated, users).await.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetches.load(SeqCst), 2);
    // Made-up kids within the interval do not reach the pool.
    for i in 0..5 {
        let forged = token(
            &key2,
            &format!("made-up-{i}"),
            &["admin"],
            "cognito-app-client",
            300,
        );
        problem(app.get_as(&forged, users).await, StatusCode::UNAUTHORIZED).await;
    }
    assert!(fetches.load(SeqCst) <= 3, "{}", fetches.load(SeqCst));
    // A token of the pool's issuer signed with a key it never published.
    let (stranger, _) = rsa_key("cognito-key-1");
    problem(
        app.get_as(
            &token(
                &stranger,
                "cognito-key-1",
                &["admin"],
                "cognito-app-client",
                300,
            ),
            users,
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The built-in pool's tokens still work beside it.
    app.sign_up_confirmed("local@example.org").await;
    let local = app.tokens("local@example.org").await;
    assert_eq!(
        app.get_as(local["access_token"].as_str().unwrap(), "/api/v1/me")
            .await
            .status(),
        StatusCode::OK
    );
}
