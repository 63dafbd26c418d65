//! The citizen reports tables on both backends: reports with their photos and millisecond
//! times, idempotent creates, optimistic updates, the history with its internal notes, outbox
//! notices committed with their change, filters and pages, nearby reports, map pins, rate-limit
//! counts and followers.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ecocityhub_identity::Role;
use ecocityhub_store::identity::User;
use ecocityhub_store::notify::{MessageRow, NewDelivery};
use ecocityhub_store::reports::{
    OutboxNotice, ReportAssignee, ReportEventRow, ReportFilter, ReportPhotoRow, ReportRow,
};
use ecocityhub_store::{testing, IdentityStore, NotifyStore, ReportStore, SqlStore};

/// Berlin, Alexanderplatz.
const LAT: f64 = 52.52;
const LON: f64 = 13.405;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// `t` as the store keeps it: to the millisecond.
fn to_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

async fn user(store: &SqlStore, id: &str) {
    store
        .insert_user(&User {
            id: id.into(),
            email: format!("{id}@example.org"),
            password_hash: "x".into(),
            roles: vec![Role::Citizen],
            confirmed: true,
            created_at: t0(),
        })
        .await
        .unwrap();
}

fn photo(position: i64) -> ReportPhotoRow {
    ReportPhotoRow {
        position,
        key: format!("photos/p{position}.jpg"),
        thumbnail_key: format!("photos/p{position}.thumb.jpg"),
        width: 1600 + position,
        height: 1200,
        hidden: false,
    }
}

fn report(id: &str, reporter: &str, at: DateTime<Utc>) -> ReportRow {
    ReportRow {
        id: id.into(),
        reporter: reporter.into(),
        category: "noise".into(),
        title: format!("title {id}"),
        description: format!("description {id}"),
        lat: LAT,
        lon: LON,
        station_id: None,
        state: "submitted".into(),
        duplicate_of: None,
        assignee: None,
        hidden: false,
        version: 1,
        created_at: at,
        updated_at: at,
        photos: Vec::new(),
    }
}

fn event(report_id: &str, kind: &str, public: bool, at: DateTime<Utc>) -> ReportEventRow {
    ReportEventRow {
        id: 0,
        report_id: report_id.into(),
        author: Some("u1".into()),
        kind: kind.into(),
        public,
        body: format!("{kind} body"),
        changes: "{}".into(),
        created_at: at,
    }
}

fn notice(id: &str, to_user: &str) -> OutboxNotice {
    OutboxNotice {
        message: MessageRow {
            id: id.into(),
            topic_id: "report:rep_1".into(),
            channel: "topic".into(),
            recipient: "report:rep_1".into(),
            subject: format!("subject {id}"),
            body: format!("body {id}"),
            html: None,
            attributes: "{}".into(),
            payload: r#"{"kind":"report_update"}"#.into(),
            created_at: t0(),
        },
        deliveries: vec![NewDelivery {
            subscription_id: None,
            protocol: "live".into(),
            endpoint: to_user.into(),
            user_id: Some(to_user.into()),
            idempotency_key: Some(format!("{id}:{to_user}")),
            not_before_ms: t0().timestamp_millis(),
        }],
    }
}

/// The point `north_m` metres north and `east_m` metres east of (LAT, LON).
fn offset(north_m: f64, east_m: f64) -> (f64, f64) {
    let m_per_deg = 6_371_008.8_f64 * std::f64::consts::PI / 180.0;
    (
        LAT + north_m / m_per_deg,
        LON + east_m / (m_per_deg * LAT.to_radians().cos()),
    )
}

async fn create(store: &SqlStore, r: &ReportRow) {
    assert!(store
        .create_report(r, &event(&r.id, "filed", true, r.created_at), &[])
        .await
        .unwrap());
}

async fn created_reports_read_back_with_photos_and_ms_times(store: SqlStore) {
    user(&store, "u1").await;
    let at = t0() + Duration::nanoseconds(123_456_789);
    let mut r = report("rep_1", "u1", at);
    r.station_id = Some("s1".into());
    r.lat = 52.520_012_345_678;
    r.lon = -13.405_987_654_321;
    r.photos = vec![photo(2), photo(0), photo(1)];
    r.photos[1].hidden = true;
    assert!(store
        .create_report(
            &r,
            &event("rep_1", "filed", true, at),
            &[notice("m1", "u1")]
        )
        .await
        .unwrap());

    let stored = store.report("rep_1").await.unwrap().unwrap();
    assert_eq!(stored.created_at, to_ms(at));
    assert_eq!(stored.created_at.timestamp_subsec_millis(), 123);
    assert_eq!(stored.updated_at, to_ms(at));
    assert_eq!(
        stored.photos.iter().map(|p| p.position).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(stored.photos[0], {
        let mut p = photo(0);
        p.hidden = true;
        p
    });
    let mut expected = r.clone();
    expected.created_at = to_ms(at);
    expected.updated_at = to_ms(at);
    expected.photos.sort_by_key(|p| p.position);
    assert_eq!(stored, expected);
    assert!(store.report("rep_missing").await.unwrap().is_none());

    // A retried create writes nothing, whatever it carries.
    let mut retry = r.clone();
    retry.title = "another title".into();
    retry.photos = vec![photo(5)];
    assert!(!store
        .create_report(
            &retry,
            &event("rep_1", "filed", true, at),
            &[notice("m2", "u1")]
        )
        .await
        .unwrap());
    assert_eq!(store.report("rep_1").await.unwrap().unwrap(), expected);
    assert_eq!(store.report_events("rep_1", true).await.unwrap().len(), 1);
    assert!(store.message("m2").await.unwrap().is_none());
    assert_eq!(store.deliveries(None, None, 10).await.unwrap().len(), 1);
}

async fn notices_commit_with_their_change(store: SqlStore) {
    user(&store, "u1").await;
    user(&store, "u2").await;
    let r = report("rep_1", "u1", t0());
    store
        .create_report(
            &r,
            &event("rep_1", "filed", true, t0()),
            &[notice("m1", "u1"), notice("m2", "u2")],
        )
        .await
        .unwrap();
    assert_eq!(
        store.message("m1").await.unwrap().unwrap().subject,
        "subject m1"
    );
    let deliveries = store.deliveries(None, None, 10).await.unwrap();
    assert_eq!(deliveries.len(), 2);
    let mut to: Vec<_> = deliveries
        .iter()
        .map(|d| (d.message_id.as_str(), d.user_id.as_deref()))
        .collect();
    to.sort();
    assert_eq!(to, [("m1", Some("u1")), ("m2", Some("u2"))]);

    let mut changed = r.clone();
    changed.state = "confirmed".into();
    store
        .update_report(
            &changed,
            1,
            &event("rep_1", "state", true, t0()),
            &[notice("m3", "u2")],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(store.message("m3").await.unwrap().is_some());
    store
        .add_report_event(&event("rep_1", "update", true, t0()), &[notice("m4", "u2")])
        .await
        .unwrap()
        .unwrap();
    assert!(store.message("m4").await.unwrap().is_some());
    assert_eq!(store.delivery_counts().await.unwrap().pending, 4);

    // A notice that cannot be written (its subscription does not exist) takes its report down
    // with it: nothing of the write stays.
    let mut broken = notice("m5", "u1");
    broken.deliveries[0].subscription_id = Some("no-such-subscription".into());
    let failed = store
        .create_report(
            &report("rep_2", "u1", t0()),
            &event("rep_2", "filed", true, t0()),
            &[broken.clone()],
        )
        .await;
    assert!(failed.is_err());
    assert!(store.report("rep_2").await.unwrap().is_none());
    assert!(store.report_events("rep_2", true).await.unwrap().is_empty());
    assert!(store.message("m5").await.unwrap().is_none());
    // Nor does an update or an event.
    let mut closed = changed.clone();
    closed.state = "closed".into();
    assert!(store
        .update_report(
            &closed,
            2,
            &event("rep_1", "state", true, t0()),
            std::slice::from_ref(&broken)
        )
        .await
        .is_err());
    assert!(store
        .add_report_event(&event("rep_1", "update", true, t0()), &[broken])
        .await
        .is_err());
    let stored = store.report("rep_1").await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.version), ("confirmed", 2));
    assert_eq!(store.report_events("rep_1", true).await.unwrap().len(), 3);
    assert_eq!(store.delivery_counts().await.unwrap().pending, 4);
}

async fn updates_need_the_version_they_read(store: SqlStore) {
    user(&store, "u1").await;
    let mut r = report("rep_1", "u1", t0());
    r.photos = vec![photo(0), photo(1)];
    create(&store, &r).await;

    let mut edit = store.report("rep_1").await.unwrap().unwrap();
    edit.category = "waste".into();
    edit.title = "Rubbish by the river".into();
    edit.description = "Bags of it".into();
    edit.lat = 52.5;
    edit.lon = 13.4;
    edit.station_id = Some("s2".into());
    edit.state = "duplicate".into();
    edit.duplicate_of = Some("rep_0".into());
    edit.assignee = Some("op1".into());
    edit.hidden = true;
    edit.updated_at = t0() + Duration::milliseconds(90_001);
    edit.photos[1].hidden = true;
    // Fields the update does not write.
    edit.reporter = "someone else".into();
    edit.created_at = t0() + Duration::days(9);
    edit.version = 99;
    let mut e = event("rep_1", "edit", true, edit.updated_at);
    e.changes = r#"{"category":["noise","waste"]}"#.into();
    let updated = store
        .update_report(&edit, 1, &e, &[])
        .await
        .unwrap()
        .expect("the version matched");
    let mut expected = edit.clone();
    expected.reporter = "u1".into();
    expected.created_at = t0();
    expected.version = 2;
    assert_eq!(updated, expected);
    assert_eq!(store.report("rep_1").await.unwrap().unwrap(), expected);

    // A writer that read version 1 too is refused, and writes nothing.
    let mut stale = r.clone();
    stale.title = "stale".into();
    stale.photos[1].hidden = false;
    assert!(store
        .update_report(
            &stale,
            1,
            &event("rep_1", "edit", true, t0()),
            &[notice("m1", "u1")]
        )
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.report("rep_1").await.unwrap().unwrap(), expected);
    assert_eq!(store.report_events("rep_1", true).await.unwrap().len(), 2);
    assert!(store.message("m1").await.unwrap().is_none());

    // A missing report neither.
    assert!(store
        .update_report(
            &report("rep_missing", "u1", t0()),
            1,
            &event("rep_missing", "edit", true, t0()),
            &[]
        )
        .await
        .unwrap()
        .is_none());

    // The next update goes from version 2.
    let mut again = expected.clone();
    again.state = "closed".into();
    let third = store
        .update_report(&again, 2, &event("rep_1", "state", true, t0()), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.state.as_str(), third.version), ("closed", 3));
}

async fn history_in_order_with_internal_notes(store: SqlStore) {
    user(&store, "u1").await;
    let r = report("rep_1", "u1", t0());
    create(&store, &r).await;
    let update_at = t0() + Duration::minutes(5);
    let update = store
        .add_report_event(&event("rep_1", "update", true, update_at), &[])
        .await
        .unwrap()
        .unwrap();
    let after_update = store.report("rep_1").await.unwrap().unwrap();
    assert_eq!(after_update.updated_at, update_at);
    assert_eq!(after_update.version, 1, "an event is not an update");
    let note = store
        .add_report_event(
            &event("rep_1", "note", false, t0() + Duration::minutes(6)),
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(note > update);
    // An event stamped earlier does not move updated_at back.
    store
        .add_report_event(&event("rep_1", "note", false, t0()), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.report("rep_1").await.unwrap().unwrap().updated_at,
        t0() + Duration::minutes(6)
    );
    let mut changed = r.clone();
    changed.state = "investigating".into();
    changed.updated_at = t0() + Duration::minutes(7);
    let mut e = event("rep_1", "state", true, t0() + Duration::minutes(7));
    e.author = None;
    e.changes = r#"{"state":["submitted","investigating"]}"#.into();
    store
        .update_report(&changed, 1, &e, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .add_report_event(&event("rep_missing", "update", true, t0()), &[])
        .await
        .unwrap()
        .is_none());

    let all = store.report_events("rep_1", true).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["filed", "update", "note", "note", "state"]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[1].id, update);
    assert_eq!(all[2].id, note);
    assert!(!all[2].public);
    let last = all.last().unwrap();
    assert_eq!(last.author, None);
    assert_eq!(last.changes, r#"{"state":["submitted","investigating"]}"#);
    assert_eq!(last.created_at, t0() + Duration::minutes(7));
    assert_eq!(last.report_id, "rep_1");
    let public = store.report_events("rep_1", false).await.unwrap();
    assert_eq!(
        public.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["filed", "update", "state"]
    );
    assert!(store
        .report_events("rep_missing", true)
        .await
        .unwrap()
        .is_empty());
}

async fn filters_pages_and_totals(store: SqlStore) {
    user(&store, "u1").await;
    user(&store, "u2").await;
    // Ten reports, one an hour; every third a pothole, assigned to op1 when even.
    for i in 0..10 {
        let mut r = report(
            &format!("rep_{i}"),
            if i < 7 { "u1" } else { "u2" },
            t0() + Duration::hours(i),
        );
        if i % 3 == 0 {
            r.category = "pothole".into();
        }
        r.state = if i < 4 {
            "submitted"
        } else if i < 8 {
            "confirmed"
        } else {
            "fixed"
        }
        .into();
        r.assignee = (i % 2 == 0).then(|| "op1".into());
        r.lat = LAT + i as f64 * 0.01;
        r.photos = vec![photo(1), photo(0)];
        create(&store, &r).await;
    }
    let mut hidden = report("rep_hidden", "u1", t0() + Duration::hours(20));
    hidden.hidden = true;
    create(&store, &hidden).await;

    let ids = |page: &ecocityhub_store::reports::ReportPage| {
        page.reports
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    };
    // Newest first, hidden ones left out, photos in order.
    let all = store.reports(&ReportFilter::default()).await.unwrap();
    assert_eq!(all.total, 10);
    assert_eq!(
        ids(&all),
        (0..10)
            .rev()
            .map(|i| format!("rep_{i}"))
            .collect::<Vec<_>>()
    );
    assert!(all
        .reports
        .iter()
        .all(|r| r.photos.iter().map(|p| p.position).eq([0, 1])));
    let with_hidden = store
        .reports(&ReportFilter {
            include_hidden: true,
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(with_hidden.total, 11);
    assert_eq!(with_hidden.reports[0].id, "rep_hidden");

    // Limit and offset page; the total ignores them.
    let page = store
        .reports(&ReportFilter {
            limit: 3,
            offset: 2,
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 10);
    assert_eq!(ids(&page), ["rep_7", "rep_6", "rep_5"]);
    let past_the_end = store
        .reports(&ReportFilter {
            offset: 50,
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((past_the_end.total, past_the_end.reports.len()), (10, 0));

    let states = store
        .reports(&ReportFilter {
            states: vec!["submitted".into(), "fixed".into()],
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&states),
        ["rep_9", "rep_8", "rep_3", "rep_2", "rep_1", "rep_0"]
    );
    let potholes = store
        .reports(&ReportFilter {
            category: Some("pothole".into()),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&potholes), ["rep_9", "rep_6", "rep_3", "rep_0"]);
    let bbox = store
        .reports(&ReportFilter {
            bbox: Some([LAT + 0.015, LON - 0.1, LAT + 0.045, LON + 0.1]),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&bbox), ["rep_4", "rep_3", "rep_2"]);
    let elsewhere = store
        .reports(&ReportFilter {
            bbox: Some([LAT - 1.0, LON + 0.1, LAT + 1.0, LON + 0.2]),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(elsewhere.total, 0);
    let age = store
        .reports(&ReportFilter {
            created_after: Some(t0() + Duration::hours(2)),
            created_before: Some(t0() + Duration::hours(5)),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&age), ["rep_4", "rep_3", "rep_2"]);
    let unassigned = store
        .reports(&ReportFilter {
            assignee: ReportAssignee::Unassigned,
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&unassigned),
        ["rep_9", "rep_7", "rep_5", "rep_3", "rep_1"]
    );
    let op1 = store
        .reports(&ReportFilter {
            assignee: ReportAssignee::User("op1".into()),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&op1), ["rep_8", "rep_6", "rep_4", "rep_2", "rep_0"]);
    assert_eq!(
        store
            .reports(&ReportFilter {
                assignee: ReportAssignee::User("op2".into()),
                ..ReportFilter::default()
            })
            .await
            .unwrap()
            .total,
        0
    );
    let mine = store
        .reports(&ReportFilter {
            reporter: Some("u2".into()),
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&mine), ["rep_9", "rep_8", "rep_7"]);
    // Conditions combine.
    let combined = store
        .reports(&ReportFilter {
            states: vec!["confirmed".into()],
            category: Some("pothole".into()),
            assignee: ReportAssignee::User("op1".into()),
            reporter: Some("u1".into()),
            limit: 1,
            ..ReportFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (ids(&combined), combined.total),
        (vec!["rep_6".to_string()], 1)
    );
}

async fn nearby_reports_by_great_circle_distance(store: SqlStore) {
    user(&store, "u1").await;
    let place = |id: &str, north: f64, east: f64, category: &str| {
        let mut r = report(id, "u1", t0());
        (r.lat, r.lon) = offset(north, east);
        r.category = category.into();
        r
    };
    create(&store, &place("rep_30m", 30.0, 0.0, "noise")).await;
    create(&store, &place("rep_80m", 0.0, 80.0, "noise")).await;
    create(&store, &place("rep_10m", -6.0, 8.0, "noise")).await;
    create(&store, &place("rep_other", 5.0, 0.0, "waste")).await;
    // Inside the bounding box of a 50 m circle, but 56 m away along its diagonal.
    create(&store, &place("rep_corner", 40.0, 40.0, "noise")).await;
    let mut hidden = place("rep_hidden", 1.0, 1.0, "noise");
    hidden.hidden = true;
    create(&store, &hidden).await;
    let mut with_photo = place("rep_photo", 20.0, 0.0, "noise");
    with_photo.photos = vec![photo(1), photo(0)];
    create(&store, &with_photo).await;

    let near = store
        .reports_near(LAT, LON, 50.0, Some("noise"))
        .await
        .unwrap();
    assert_eq!(
        near.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["rep_10m", "rep_photo", "rep_30m"]
    );
    assert_eq!(
        near[1]
            .photos
            .iter()
            .map(|p| p.position)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let any = store.reports_near(LAT, LON, 50.0, None).await.unwrap();
    assert_eq!(
        any.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["rep_other", "rep_10m", "rep_photo", "rep_30m"]
    );
    let wide = store
        .reports_near(LAT, LON, 100.0, Some("noise"))
        .await
        .unwrap();
    assert_eq!(wide.len(), 5);
    assert_eq!(wide.last().unwrap().id, "rep_80m");
    assert!(store
        .reports_near(LAT, LON, 50.0, Some("graffiti"))
        .await
        .unwrap()
        .is_empty());

    // At most twenty, the nearest.
    for i in 0..25 {
        create(
            &store,
            &place(
                &format!("rep_ring_{i:02}"),
                0.0,
                -(100.0 + i as f64),
                "light",
            ),
        )
        .await;
    }
    let ring = store
        .reports_near(LAT, LON, 500.0, Some("light"))
        .await
        .unwrap();
    assert_eq!(ring.len(), 20);
    assert_eq!(ring[0].id, "rep_ring_00");
    assert_eq!(ring[19].id, "rep_ring_19");
}

async fn pins_counts_and_followers(store: SqlStore) {
    user(&store, "u1").await;
    user(&store, "u2").await;
    user(&store, "u3").await;
    for i in 0..3 {
        create(
            &store,
            &report(&format!("rep_{i}"), "u1", t0() + Duration::hours(i)),
        )
        .await;
    }
    let mut hidden = report("rep_hidden", "u1", t0() + Duration::hours(3));
    hidden.hidden = true;
    create(&store, &hidden).await;
    let mut theirs = report("rep_u2", "u2", t0() + Duration::hours(3));
    theirs.category = "waste".into();
    theirs.state = "fixed".into();
    (theirs.lat, theirs.lon) = (48.1, 11.5);
    create(&store, &theirs).await;

    let pins = store.report_pins().await.unwrap();
    assert_eq!(
        pins.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["rep_0", "rep_1", "rep_2", "rep_u2"]
    );
    let pin = &pins[3];
    assert_eq!(
        (
            pin.lat,
            pin.lon,
            pin.category.as_str(),
            pin.state.as_str(),
            pin.title.as_str()
        ),
        (48.1, 11.5, "waste", "fixed", "title rep_u2")
    );

    // Rate limits count every report filed at or after the time, hidden ones too.
    assert_eq!(store.count_reports_since("u1", t0()).await.unwrap(), 4);
    assert_eq!(
        store
            .count_reports_since("u1", t0() + Duration::hours(1))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_reports_since("u1", t0() + Duration::hours(1) + Duration::milliseconds(1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.count_reports_since("u2", t0()).await.unwrap(), 1);
    assert_eq!(store.count_reports_since("u3", t0()).await.unwrap(), 0);

    assert!(store.follow_report("rep_0", "u3", t0()).await.unwrap());
    assert!(store.follow_report("rep_0", "u2", t0()).await.unwrap());
    assert!(!store.follow_report("rep_0", "u3", t0()).await.unwrap());
    assert!(store.follow_report("rep_1", "u3", t0()).await.unwrap());
    assert_eq!(store.report_followers("rep_0").await.unwrap(), ["u2", "u3"]);
    assert!(store.follows("rep_0", "u3").await.unwrap());
    assert!(!store.follows("rep_2", "u3").await.unwrap());
    assert!(store.unfollow_report("rep_0", "u3").await.unwrap());
    assert!(!store.unfollow_report("rep_0", "u3").await.unwrap());
    assert!(!store.follows("rep_0", "u3").await.unwrap());
    assert_eq!(store.report_followers("rep_0").await.unwrap(), ["u2"]);
    assert_eq!(store.report_followers("rep_1").await.unwrap(), ["u3"]);
    assert!(store.report_followers("rep_2").await.unwrap().is_empty());
    // Only existing reports can be followed.
    assert!(store
        .follow_report("rep_missing", "u3", t0())
        .await
        .is_err());
}

/// A deleted account's reports stay (credited to the former-user account, which is not
/// listed and cannot sign in); its follows go with it.
async fn a_deleted_accounts_reports_stay(store: SqlStore) {
    use ecocityhub_store::identity::FORMER_USER;
    user(&store, "u1").await;
    user(&store, "u2").await;
    create(&store, &report("r1", "u1", t0())).await;
    create(&store, &report("r2", "u2", t0())).await;
    assert!(store.follow_report("r2", "u1", t0()).await.unwrap());
    assert!(store.delete_user("u1").await.unwrap());
    assert!(store.user("u1").await.unwrap().is_none());
    let kept = store.report("r1").await.unwrap().expect("the report stays");
    assert_eq!(kept.reporter, FORMER_USER);
    assert_eq!(kept.title, "title r1");
    assert_eq!(store.report("r2").await.unwrap().unwrap().reporter, "u2");
    assert!(store.report_followers("r2").await.unwrap().is_empty());
    let ids: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["u2"], "the former-user account is not listed");
    let former = store.user(FORMER_USER).await.unwrap().unwrap();
    assert!(!former.confirmed);
    // A second deletion reuses the same account.
    assert!(store.delete_user("u2").await.unwrap());
    assert_eq!(
        store.report("r2").await.unwrap().unwrap().reporter,
        FORMER_USER
    );
    assert!(store.users().await.unwrap().is_empty());
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use ecocityhub_store::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path())).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            use ecocityhub_store::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = super::testing::fresh_postgres_url().await else { return };
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    created_reports_read_back_with_photos_and_ms_times,
    notices_commit_with_their_change,
    updates_need_the_version_they_read,
    history_in_order_with_internal_notes,
    filters_pages_and_totals,
    nearby_reports_by_great_circle_distance,
    pins_counts_and_followers,
    a_deleted_accounts_reports_stay,
);
