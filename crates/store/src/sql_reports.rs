//! [`ReportStore`] on SQLite and PostgreSQL, in the SQL both understand (see `sql.rs`).
//!
//! Each write is one transaction holding the report change, its history event and its outbox
//! notices (written by the notify layer's helpers), so a notification is sent exactly when its
//! cause commits. Updates are a compare-and-set on the version. Lists load their photos in one
//! extra query; nearby reports are a bounding box on the `(lat, lon)` index, refined in Rust.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::reports::{
    OutboxNotice, ReportAssignee, ReportEventRow, ReportFilter, ReportPage, ReportPhotoRow,
    ReportPin, ReportRow, ReportStore,
};
use crate::sql_notify::{insert_deliveries, insert_message, placeholders};
use crate::{Result, SqlStore, StoreError};

const REPORT_COLUMNS: &str = "id, reporter, category, title, description, lat, lon, station_id, \
     state, duplicate_of, assignee, hidden, version, created_at, updated_at";
const PHOTO_COLUMNS: &str = "report_id, position, key, thumbnail_key, width, height, hidden";
const EVENT_COLUMNS: &str = "id, report_id, author, kind, public, body, changes, created_at";

/// The mean earth radius (IUGG), in metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// The most reports [`ReportStore::reports_near`] answers.
const NEAR_LIMIT: usize = 20;

fn ms_time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms out of range")))
}

fn report_from_row(r: &AnyRow) -> Result<ReportRow> {
    Ok(ReportRow {
        id: r.try_get("id")?,
        reporter: r.try_get("reporter")?,
        category: r.try_get("category")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        lat: r.try_get("lat")?,
        lon: r.try_get("lon")?,
        station_id: r.try_get("station_id")?,
        state: r.try_get("state")?,
        duplicate_of: r.try_get("duplicate_of")?,
        assignee: r.try_get("assignee")?,
        hidden: r.try_get::<i64, _>("hidden")? != 0,
        version: r.try_get("version")?,
        created_at: ms_time(r.try_get("created_at")?)?,
        updated_at: ms_time(r.try_get("updated_at")?)?,
        photos: Vec::new(),
    })
}

fn photo_from_row(r: &AnyRow) -> Result<ReportPhotoRow> {
    Ok(ReportPhotoRow {
        position: r.try_get("position")?,
        key: r.try_get("key")?,
        thumbnail_key: r.try_get("thumbnail_key")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        hidden: r.try_get::<i64, _>("hidden")? != 0,
    })
}

fn event_from_row(r: &AnyRow) -> Result<ReportEventRow> {
    Ok(ReportEventRow {
        id: r.try_get("id")?,
        report_id: r.try_get("report_id")?,
        author: r.try_get("author")?,
        kind: r.try_get("kind")?,
        public: r.try_get::<i64, _>("public")? != 0,
        body: r.try_get("body")?,
        changes: r.try_get("changes")?,
        created_at: ms_time(r.try_get("created_at")?)?,
    })
}

/// A value for a query built at run time.
enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
}

/// The conditions of a query built at run time and their values, numbered in order.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// The placeholder of a new value.
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn push(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// `lon` within `[min, max]`, or, when `min > max`, across the antimeridian.
    fn lon_between(&mut self, min: f64, max: f64) {
        let (a, b) = (self.arg(Arg::Real(min)), self.arg(Arg::Real(max)));
        if min <= max {
            self.push(format!("lon BETWEEN {a} AND {b}"));
        } else {
            self.push(format!("(lon >= {a} OR lon <= {b})"));
        }
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
                Arg::Real(f) => q.bind(*f),
            };
        }
        q
    }
}

/// Great-circle distance in metres (haversine).
fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Adds to `w` a bounding box holding every point within `radius_m` of `(lat, lon)`: the
/// latitude band, and unless it reaches a pole the longitudes of the circle's tangents
/// (wrapping across the antimeridian as needed).
fn near_box(w: &mut Where, lat: f64, lon: f64, radius_m: f64) {
    let angle = radius_m / EARTH_RADIUS_M;
    let dlat = angle.to_degrees();
    let (min_lat, max_lat) = (lat - dlat, lat + dlat);
    let (a, b) = (w.arg(Arg::Real(min_lat)), w.arg(Arg::Real(max_lat)));
    w.push(format!("lat BETWEEN {a} AND {b}"));
    let ratio = angle.sin() / lat.to_radians().cos();
    if max_lat >= 90.0 || min_lat <= -90.0 || ratio.is_nan() || ratio >= 1.0 {
        return;
    }
    let dlon = ratio.asin().to_degrees();
    let (mut min_lon, mut max_lon) = (lon - dlon, lon + dlon);
    if min_lon < -180.0 {
        min_lon += 360.0;
    }
    if max_lon > 180.0 {
        max_lon -= 360.0;
    }
    w.lon_between(min_lon, max_lon);
}

/// The photos of the reports, by report, in position order.
async fn photos_of(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<ReportPhotoRow>>> {
    let mut out: HashMap<String, Vec<ReportPhotoRow>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT {PHOTO_COLUMNS} FROM report_photos WHERE report_id IN ({}) \
             ORDER BY report_id, position",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.entry(row.try_get("report_id")?)
                .or_default()
                .push(photo_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Gives each report its photos.
async fn with_photos(conn: &mut AnyConnection, reports: &mut [ReportRow]) -> Result<()> {
    if reports.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    let mut photos = photos_of(conn, &ids).await?;
    for r in reports.iter_mut() {
        r.photos = photos.remove(&r.id).unwrap_or_default();
    }
    Ok(())
}

async fn load_report(conn: &mut AnyConnection, id: &str) -> Result<Option<ReportRow>> {
    let row = sqlx::query(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut report = [report_from_row(&row)?];
    with_photos(conn, &mut report).await?;
    let [report] = report;
    Ok(Some(report))
}

/// Appends the event to `report_id`'s history; returns its id.
async fn insert_event(
    tx: &mut Transaction<'_, Any>,
    report_id: &str,
    e: &ReportEventRow,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO report_events (report_id, author, kind, public, body, changes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(report_id)
    .bind(e.author.as_deref())
    .bind(&e.kind)
    .bind(i64::from(e.public))
    .bind(&e.body)
    .bind(&e.changes)
    .bind(e.created_at.timestamp_millis())
    .fetch_one(&mut **tx)
    .await?)
}

async fn insert_notices(tx: &mut Transaction<'_, Any>, notices: &[OutboxNotice]) -> Result<()> {
    for n in notices {
        let outbox_id = insert_message(tx, &n.message).await?;
        insert_deliveries(
            tx,
            outbox_id,
            &n.deliveries,
            n.message.created_at.timestamp(),
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl ReportStore for SqlStore {
    async fn create_report(
        &self,
        r: &ReportRow,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(&format!(
            "INSERT INTO reports ({REPORT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&r.id)
        .bind(&r.reporter)
        .bind(&r.category)
        .bind(&r.title)
        .bind(&r.description)
        .bind(r.lat)
        .bind(r.lon)
        .bind(r.station_id.as_deref())
        .bind(&r.state)
        .bind(r.duplicate_of.as_deref())
        .bind(r.assignee.as_deref())
        .bind(i64::from(r.hidden))
        .bind(r.version)
        .bind(r.created_at.timestamp_millis())
        .bind(r.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !created {
            tx.rollback().await?;
            return Ok(false);
        }
        for p in &r.photos {
            sqlx::query(&format!(
                "INSERT INTO report_photos ({PHOTO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&r.id)
            .bind(p.position)
            .bind(&p.key)
            .bind(&p.thumbnail_key)
            .bind(p.width)
            .bind(p.height)
            .bind(i64::from(p.hidden))
            .execute(&mut *tx)
            .await?;
        }
        insert_event(&mut tx, &r.id, event).await?;
        insert_notices(&mut tx, notices).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn report(&self, id: &str) -> Result<Option<ReportRow>> {
        let mut conn = self.pool.acquire().await?;
        load_report(&mut conn, id).await
    }

    async fn update_report(
        &self,
        r: &ReportRow,
        expected_version: i64,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<Option<ReportRow>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE reports SET category = $1, title = $2, description = $3, lat = $4, lon = $5, \
             station_id = $6, state = $7, duplicate_of = $8, assignee = $9, hidden = $10, \
             updated_at = $11, version = version + 1 WHERE id = $12 AND version = $13",
        )
        .bind(&r.category)
        .bind(&r.title)
        .bind(&r.description)
        .bind(r.lat)
        .bind(r.lon)
        .bind(r.station_id.as_deref())
        .bind(&r.state)
        .bind(r.duplicate_of.as_deref())
        .bind(r.assignee.as_deref())
        .bind(i64::from(r.hidden))
        .bind(r.updated_at.timestamp_millis())
        .bind(&r.id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !updated {
            tx.rollback().await?;
            return Ok(None);
        }
        for p in &r.photos {
            sqlx::query(
                "UPDATE report_photos SET hidden = $1 WHERE report_id = $2 AND position = $3",
            )
            .bind(i64::from(p.hidden))
            .bind(&r.id)
            .bind(p.position)
            .execute(&mut *tx)
            .await?;
        }
        insert_event(&mut tx, &r.id, event).await?;
        insert_notices(&mut tx, notices).await?;
        let stored = load_report(&mut tx, &r.id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn add_report_event(
        &self,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<Option<i64>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE reports SET updated_at = CASE WHEN updated_at > $1 THEN updated_at ELSE $1 END \
             WHERE id = $2",
        )
        .bind(event.created_at.timestamp_millis())
        .bind(&event.report_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !found {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = insert_event(&mut tx, &event.report_id, event).await?;
        insert_notices(&mut tx, notices).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn report_events(
        &self,
        report_id: &str,
        include_internal: bool,
    ) -> Result<Vec<ReportEventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM report_events WHERE report_id = $1 \
             AND (public = 1 OR $2 = 1) ORDER BY id"
        ))
        .bind(report_id)
        .bind(i64::from(include_internal))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn reports(&self, f: &ReportFilter) -> Result<ReportPage> {
        let mut w = Where::default();
        if !f.states.is_empty() {
            let list = f
                .states
                .iter()
                .map(|s| w.arg(Arg::Text(s.clone())))
                .collect::<Vec<_>>()
                .join(", ");
            w.push(format!("state IN ({list})"));
        }
        if let Some(c) = &f.category {
            let p = w.arg(Arg::Text(c.clone()));
            w.push(format!("category = {p}"));
        }
        if let Some([min_lat, min_lon, max_lat, max_lon]) = f.bbox {
            let (a, b) = (w.arg(Arg::Real(min_lat)), w.arg(Arg::Real(max_lat)));
            w.push(format!("lat BETWEEN {a} AND {b}"));
            w.lon_between(min_lon, max_lon);
        }
        if let Some(t) = f.created_after {
            let p = w.arg(Arg::Int(t.timestamp_millis()));
            w.push(format!("created_at >= {p}"));
        }
        if let Some(t) = f.created_before {
            let p = w.arg(Arg::Int(t.timestamp_millis()));
            w.push(format!("created_at < {p}"));
        }
        match &f.assignee {
            ReportAssignee::Anyone => {}
            ReportAssignee::Unassigned => w.push("assignee IS NULL".into()),
            ReportAssignee::User(u) => {
                let p = w.arg(Arg::Text(u.clone()));
                w.push(format!("assignee = {p}"));
            }
        }
        if let Some(u) = &f.reporter {
            let p = w.arg(Arg::Text(u.clone()));
            w.push(format!("reporter = {p}"));
        }
        if !f.include_hidden {
            w.push("hidden = 0".into());
        }
        let mut conn = self.pool.acquire().await?;
        let count_sql = format!("SELECT COUNT(*) AS n FROM reports{}", w.sql());
        let total: i64 = w
            .bind(sqlx::query(&count_sql))
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
        let n = w.args.len();
        let list_sql = format!(
            "SELECT {REPORT_COLUMNS} FROM reports{} ORDER BY created_at DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            w.sql(),
            n + 1,
            n + 2
        );
        let rows = w
            .bind(sqlx::query(&list_sql))
            .bind(i64::from(f.limit))
            .bind(i64::from(f.offset))
            .fetch_all(&mut *conn)
            .await?;
        let mut reports = rows
            .iter()
            .map(report_from_row)
            .collect::<Result<Vec<_>>>()?;
        with_photos(&mut conn, &mut reports).await?;
        Ok(ReportPage {
            reports,
            total: total as u64,
        })
    }

    async fn reports_near(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
        category: Option<&str>,
    ) -> Result<Vec<ReportRow>> {
        if radius_m.is_nan() || radius_m < 0.0 || !lat.is_finite() || !lon.is_finite() {
            return Ok(Vec::new());
        }
        let mut w = Where::default();
        near_box(&mut w, lat, lon, radius_m);
        if let Some(c) = category {
            let p = w.arg(Arg::Text(c.to_string()));
            w.push(format!("category = {p}"));
        }
        w.push("hidden = 0".into());
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports{}", w.sql());
        let mut conn = self.pool.acquire().await?;
        let rows = w.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
        let mut near = Vec::new();
        for row in &rows {
            let r = report_from_row(row)?;
            let d = distance_m(lat, lon, r.lat, r.lon);
            if d <= radius_m {
                near.push((d, r));
            }
        }
        near.sort_by(|(a, ra), (b, rb)| a.total_cmp(b).then_with(|| ra.id.cmp(&rb.id)));
        near.truncate(NEAR_LIMIT);
        let mut reports: Vec<ReportRow> = near.into_iter().map(|(_, r)| r).collect();
        with_photos(&mut conn, &mut reports).await?;
        Ok(reports)
    }

    async fn report_pins(&self) -> Result<Vec<ReportPin>> {
        let rows = sqlx::query(
            "SELECT id, lat, lon, category, state, title FROM reports WHERE hidden = 0 ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportPin {
                    id: r.try_get("id")?,
                    lat: r.try_get("lat")?,
                    lon: r.try_get("lon")?,
                    category: r.try_get("category")?,
                    state: r.try_get("state")?,
                    title: r.try_get("title")?,
                })
            })
            .collect()
    }

    async fn count_reports_since(&self, reporter: &str, since: DateTime<Utc>) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reports WHERE reporter = $1 AND created_at >= $2",
        )
        .bind(reporter)
        .bind(since.timestamp_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn follow_report(
        &self,
        report_id: &str,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO report_followers (report_id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (report_id, user_id) DO NOTHING",
        )
        .bind(report_id)
        .bind(user_id)
        .bind(at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn unfollow_report(&self, report_id: &str, user_id: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("DELETE FROM report_followers WHERE report_id = $1 AND user_id = $2")
                .bind(report_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn report_followers(&self, report_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM report_followers WHERE report_id = $1 ORDER BY user_id",
        )
        .bind(report_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn follows(&self, report_id: &str, user_id: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM report_followers WHERE report_id = $1 AND user_id = $2",
        )
        .bind(report_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circle() {
        // One degree of latitude is ~111.2 km on the mean sphere.
        let d = distance_m(52.0, 13.0, 53.0, 13.0);
        assert!((d - 111_195.0).abs() < 1.0, "{d}");
        assert_eq!(distance_m(10.0, 20.0, 10.0, 20.0), 0.0);
    }

    #[test]
    fn the_near_box_wraps_at_the_antimeridian_and_opens_at_poles() {
        let mut w = Where::default();
        near_box(&mut w, 0.0, 179.9999, 1_000.0);
        assert!(w.sql().contains("lon >= $3 OR lon <= $4"), "{}", w.sql());
        let mut w = Where::default();
        near_box(&mut w, 89.999, 0.0, 1_000.0);
        assert!(!w.sql().contains("lon"), "{}", w.sql());
    }
}
