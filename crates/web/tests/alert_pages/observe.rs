//! The audit trail and monitoring pages over HTTP: who may see them, the trail's records with
//! their filters and paging, and the dashboard before and after the first rollups, with an
//! alarm that went off.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ecocityhub_identity::Role;
use ecocityhub_observe::alarms::{AlarmEngine, LogSink};
use ecocityhub_observe::audit::{Audit, AuditEvent, Credential, Receipt, UserIdentity};
use ecocityhub_observe::names::{self, Kind};
use ecocityhub_observe::recorder::{Drained, SeriesKey};
use ecocityhub_observe::rollups::{align, RollupConfig, RollupWriter, Rollups};
use ecocityhub_observe::stats::StatSet;
use ecocityhub_observe::{Exposition, Telemetry};
use ecocityhub_store::observe::ObserveStore;
use reqwest::StatusCode;

use super::site;

fn observe_store(store: &Arc<dyn ecocityhub_store::Store>) -> Arc<dyn ObserveStore> {
    store.clone()
}

/// Writes a successful role change and a failed sign-in; returns their receipts.
async fn two_records(audit: &Audit) -> (Receipt, Receipt) {
    let changed = audit
        .record(
            AuditEvent::new(
                "web",
                "UpdateUser",
                UserIdentity::user("u-ada", &["admin"], Credential::Session)
                    .with_credential_id("sess-1"),
            )
            .parameters(serde_json::json!({"id": "u-bob", "roles": ["operator"]}))
            .response(serde_json::json!({"roles": ["operator"]})),
        )
        .await
        .unwrap();
    let mut failed = AuditEvent::new("web", "SignIn", UserIdentity::anonymous())
        .parameters(serde_json::json!({"email": "mallory@example.org"}))
        .failed("wrong_password", "the password is not right");
    failed.source_ip_address = Some("203.0.113.9".into());
    failed.request_id = Some("req-42".into());
    let failed = audit.record(failed).await.unwrap();
    (changed, failed)
}

#[tokio::test]
async fn only_admins_search_the_audit_trail_by_event_outcome_and_time() {
    let site = site().await;
    let audit = Audit::start(observe_store(&site.store));
    let (changed, failed) = two_records(&audit).await;
    let row = |r: &Receipt| format!("id=\"record-{}\"", r.seq);

    let (mut citizen, _) = site.signed_in("cid@example.org", &[Role::Citizen]).await;
    assert_eq!(citizen.get("/admin/audit").await.0, StatusCode::FORBIDDEN);
    let (mut operator, _) = site.signed_in("opa@example.org", &[Role::Operator]).await;
    assert_eq!(operator.get("/admin/audit").await.0, StatusCode::FORBIDDEN);
    let (_, dashboard) = operator.get("/admin").await;
    assert!(!dashboard.contains("href=\"/admin/audit\""));

    let (mut admin, _) = site.signed_in("ada@example.org", &[Role::Admin]).await;
    let (_, dashboard) = admin.get("/admin").await;
    assert!(dashboard.contains("href=\"/admin/audit\""));
    let (status, page) = admin.get("/admin/audit").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&row(&changed)) && page.contains(&row(&failed)));
    // Newest first; who, where from, the outcome and the request id; the JSON behind <details>.
    assert!(page.find(&row(&failed)) < page.find(&row(&changed)));
    assert!(page.contains("User u-ada") && page.contains("session (sess-1)"));
    assert!(page.contains("203.0.113.9") && page.contains("req-42"));
    assert!(page.contains("wrong_password: the password is not right"));
    assert!(page.contains("<details>") && page.contains("requestParameters"));
    assert!(page.contains("responseElements") && page.contains("mallory@example.org"));

    let (_, page) = admin.get("/admin/audit?event=UpdateUser").await;
    assert!(page.contains(&row(&changed)) && !page.contains(&row(&failed)));
    let (_, page) = admin.get("/admin/audit?outcome=error").await;
    assert!(!page.contains(&row(&changed)) && page.contains(&row(&failed)));
    let (_, page) = admin.get("/admin/audit?outcome=success&user=u-ada").await;
    assert!(page.contains(&row(&changed)) && !page.contains(&row(&failed)));
    let (_, page) = admin.get("/admin/audit?to=2000-01-01").await;
    assert!(page.contains("No records match"));
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let (_, page) = admin.get(&format!("/admin/audit?from={today}")).await;
    assert!(page.contains(&row(&changed)));

    let (status, page) = admin.get("/admin/audit?from=last+tuesday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("is not a time"), "{page}");
    assert!(
        page.contains("value=\"last tuesday\""),
        "the form keeps what was typed"
    );
    let (status, page) = admin.get("/admin/audit?outcome=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("no outcome"), "{page}");
    audit.close().await;
}

#[tokio::test]
async fn the_audit_trail_pages_to_older_records() {
    let site = site().await;
    let audit = Audit::start(observe_store(&site.store));
    let (first, _) = two_records(&audit).await;
    for i in 0..50 {
        let event = AuditEvent::new("api", "CreateDeviceKey", UserIdentity::system("jobs"))
            .parameters(serde_json::json!({ "n": i }));
        audit.record(event).await.unwrap();
    }
    let (mut admin, _) = site.signed_in("ada@example.org", &[Role::Admin]).await;
    let (_, page) = admin.get("/admin/audit").await;
    let first_row = format!("id=\"record-{}\"", first.seq);
    assert!(!page.contains(&first_row));
    let at = page.find("rel=\"next\"").expect("an older page");
    let href_start = page[..at].rfind("href=\"").unwrap() + 6;
    let href = page[href_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(href.starts_with("/admin/audit?before="), "{href}");
    let (status, older) = admin.get(&href).await;
    assert_eq!(status, StatusCode::OK);
    assert!(older.contains(&first_row) && older.contains("Newest records"));
    assert!(!older.contains("rel=\"next\""));
    audit.close().await;
}

fn counter(name: &str, labels: &[(&str, &str)], n: u64) -> Drained {
    let mut stats = StatSet::default();
    stats.record(1.0, n);
    Drained {
        key: SeriesKey::new(name, labels),
        kind: Kind::Counter,
        stats,
    }
}

/// A minute of traffic: 100 requests of which 10 failed with a 5xx, 40 ms each.
fn bad_minute() -> Vec<Drained> {
    let route = ("route", "/api/v1/latest");
    let mut latency = StatSet::default();
    latency.record(0.040, 100);
    vec![
        counter(
            names::HTTP_REQUESTS.name,
            &[route, ("status_class", "2xx")],
            90,
        ),
        counter(
            names::HTTP_REQUESTS.name,
            &[route, ("status_class", "5xx")],
            10,
        ),
        counter(
            names::READINGS.name,
            &[("outcome", "accepted"), ("reason", "")],
            30,
        ),
        Drained {
            key: SeriesKey::new(names::HTTP_DURATION.name, &[route, ("status_class", "2xx")]),
            kind: Kind::Histogram,
            stats: latency,
        },
    ]
}

#[tokio::test]
async fn operators_see_no_data_then_charts_and_an_alarm_in_alarm() {
    let site = site().await;
    let (mut citizen, _) = site.signed_in("cid@example.org", &[Role::Citizen]).await;
    assert_eq!(
        citizen.get("/admin/monitoring").await.0,
        StatusCode::FORBIDDEN
    );

    let (mut operator, _) = site.signed_in("opa@example.org", &[Role::Operator]).await;
    let (_, dashboard) = operator.get("/admin").await;
    assert!(dashboard.contains("href=\"/admin/monitoring\""));
    let (status, page) = operator.get("/admin/monitoring").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("id=\"no-metrics\"") && !page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("No alarms are defined yet"));
    assert!(
        page.contains("0 of 2 active stations report recent data"),
        "{page}"
    );
    let (status, _) = operator.get("/admin/monitoring?range=decade").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Five bad minutes ending a few minutes ago, and the alarms evaluated over them.
    let store = observe_store(&site.store);
    let base = align(Utc::now().timestamp() - 10 * 60, 60);
    let telemetry = Telemetry::build(Exposition::None).0;
    let mut writer = RollupWriter::new(store.clone(), telemetry, RollupConfig::default());
    for i in 0..5 {
        writer.write(base + 60 * i, bad_minute()).await.unwrap();
    }
    let rollups = Rollups::new(store.clone(), RollupConfig::default());
    let engine = AlarmEngine::new(store, rollups, Arc::new(LogSink));
    engine.install(&[], Utc::now()).await.unwrap();
    let end = base + 5 * 60;
    engine
        .evaluate(end, Utc.timestamp_opt(end, 0).unwrap())
        .await
        .unwrap();

    let (status, page) = operator.get("/admin/monitoring").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("id=\"no-metrics\""));
    assert!(
        page.contains("id=\"chart-requests\"") && page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("id=\"chart-errors\"") && page.contains("id=\"chart-latency\""));
    assert!(page.contains("id=\"chart-readings\""));
    let alarm = &page[page
        .find("id=\"alarm-http-5xx-rate\"")
        .expect("the 5xx alarm")..];
    let alarm = &alarm[..alarm.find("</tr>").unwrap()];
    assert!(alarm.contains(">ALARM<"), "{alarm}");
    assert!(page.contains(" in alarm</span>"), "{page}");
    let (mut admin, _) = site.signed_in("ada@example.org", &[Role::Admin]).await;
    let (status, page) = admin.get("/admin/monitoring?range=week").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"chart-requests\""));
    assert!(page.contains("<option value=\"week\" selected>"));
}
