//! Operator and admin pages: stations and their device keys (operators and admins), users and
//! their groups, forecast models, training jobs and the deliveries of notifications with their
//! dead letters (admins). The header shows these pages only to those groups, and every handler
//! asks the Cedar policies itself — through the API's own handlers where there is one — so a
//! hidden link is never the only guard.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use chrono::Utc;
use ecocityhub_api::device_auth;
use ecocityhub_api::extract::{ApiJson, ApiPath};
use ecocityhub_api::routes::{
    admin as api_admin, alerts as api_alerts, ml as api_ml, readings as api_readings,
};
use ecocityhub_domain::{GeoPoint, Parameter, Station, StationId};
use ecocityhub_identity::tokens::scopes;
use ecocityhub_identity::{Action, Resource, Role};
use ecocityhub_ml::data::FORECASTABLE;
use ecocityhub_ml::HorizonScores;
use serde::Deserialize;

use crate::error::{WebError, WebResult};
use crate::session::{CsrfForm, SessionUser, Visitor};
use crate::view::{self, Layout};
use crate::WebState;

/// The signed-in user, allowed `action` by the policies; admin actions also need a sign-in
/// that was granted the admin scope (as the API's admin routes do).
pub(crate) fn allowed<'a>(
    web: &WebState,
    visitor: &'a Visitor,
    action: Action,
) -> WebResult<&'a SessionUser> {
    let user = visitor.require()?;
    user.authorize(&web.app, action, &Resource::System)?;
    let admin_action = !matches!(action, Action::ManageStations | Action::ManageDevices);
    if admin_action && !user.signed_in(&web.app).has_scope(scopes::ADMIN) {
        return Err(WebError::Forbidden(format!(
            "This sign-in was not granted the {} scope; sign out and in again with your password.",
            scopes::ADMIN
        )));
    }
    Ok(user)
}

fn no_store(html: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

// ---- dashboard -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    is_admin: bool,
    stations: usize,
    users: usize,
    serving: usize,
    active_jobs: usize,
}

pub async fn dashboard(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    let user = allowed(&web, &visitor, Action::ManageStations)?;
    let is_admin = user.is_admin();
    let store = web.app.store();
    let (users, serving, active_jobs) = if is_admin {
        (
            store.users().await?.len(),
            store.serving_models().await?.len(),
            store
                .jobs(50)
                .await?
                .iter()
                .filter(|j| matches!(j.status.as_str(), "queued" | "running"))
                .count(),
        )
    } else {
        (0, 0, 0)
    };
    super::page(DashboardPage {
        layout: Layout::new(
            &web,
            &visitor,
            if is_admin {
                "Administration"
            } else {
                "Operations"
            },
        )
        .section("admin"),
        is_admin,
        stations: store.stations().await?.len(),
        users,
        serving,
        active_jobs,
    })
}

// ---- stations and device keys ----------------------------------------------------------------

struct StationRow {
    id: String,
    name: String,
    area: String,
    active: bool,
    last: String,
}

#[derive(Template)]
#[template(path = "admin/stations.html")]
struct StationsPage {
    layout: Layout,
    stations: Vec<StationRow>,
    new: NewStationForm,
}

pub async fn stations(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    allowed(&web, &visitor, Action::ManageStations)?;
    let layout = Layout::new(&web, &visitor, "Stations").section("admin");
    super::page(stations_page(&web, layout, NewStationForm::default()).await?)
}

/// The stations list with the form for a new one (kept as typed when it was refused).
async fn stations_page(
    web: &WebState,
    layout: Layout,
    new: NewStationForm,
) -> WebResult<StationsPage> {
    let store = web.app.store();
    let series = store.series().await?;
    let now = Utc::now();
    let mut rows: Vec<StationRow> = store
        .stations()
        .await?
        .into_iter()
        .map(|s| {
            let last = series
                .iter()
                .filter(|x| x.station == s.id)
                .filter_map(|x| x.last)
                .max();
            StationRow {
                id: s.id.to_string(),
                name: s.name,
                area: s.area.unwrap_or_default(),
                active: s.active,
                last: last
                    .map(|t| view::ago(t, now))
                    .unwrap_or_else(|| "never".into()),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(StationsPage {
        layout,
        stations: rows,
        new,
    })
}

/// A place from a form's latitude and longitude fields, or what to correct.
fn place(lat: &str, lon: &str) -> Result<GeoPoint, String> {
    let degrees = |what: &str, v: &str| {
        v.trim()
            .parse::<f64>()
            .map_err(|_| format!("The {what} must be a number in degrees, like 52.52."))
    };
    GeoPoint::new(degrees("latitude", lat)?, degrees("longitude", lon)?).map_err(|e| e.to_string())
}

/// The new-station form, as typed.
#[derive(Deserialize, Default)]
pub struct NewStationForm {
    id: String,
    name: String,
    lat: String,
    lon: String,
    #[serde(default)]
    area: String,
    #[serde(default)]
    timezone: String,
}

impl NewStationForm {
    /// The station the form describes, or what to correct.
    fn station(&self) -> Result<Station, String> {
        let id = StationId::parse(self.id.trim()).map_err(|e| e.to_string())?;
        let location = place(&self.lat, &self.lon)?;
        let area = Some(self.area.trim().to_string()).filter(|a| !a.is_empty());
        let timezone = match self.timezone.trim() {
            "" => "UTC",
            tz => tz,
        };
        Station::new(id, self.name.trim(), location, area, timezone).map_err(|e| e.to_string())
    }
}

/// Creates a station from the form on the stations page (operators and admins), then shows
/// its page, where device keys are made.
pub async fn create_station(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<NewStationForm>,
) -> WebResult<Response> {
    let user = allowed(&web, &visitor, Action::ManageStations)?;
    let refused = |status: StatusCode, why: String, form: NewStationForm| {
        let web = web.clone();
        let layout = Layout::new(&web, &visitor, "Stations")
            .section("admin")
            .error(why);
        async move {
            let page = stations_page(&web, layout, form).await?;
            Ok::<_, WebError>((status, Html(page.render()?)).into_response())
        }
    };
    let station = match form.station() {
        Ok(station) => station,
        Err(why) => return refused(StatusCode::BAD_REQUEST, why, form).await,
    };
    if web.app.store().station(&station.id).await?.is_some() {
        let why = format!(
            "There is a station {} already; choose another id, or edit it from the list.",
            station.id
        );
        return refused(StatusCode::CONFLICT, why, form).await;
    }
    web.app.store().upsert_station(&station).await?;
    web.app.readings_changed();
    tracing::info!(user = %user.id, station = %station.id, "station created");
    Ok(Redirect::to(&format!("/admin/stations/{}", station.id)).into_response())
}

struct KeyRow {
    prefix: String,
    label: String,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "admin/station.html")]
struct StationPage {
    layout: Layout,
    id: String,
    name: String,
    area: String,
    lat: String,
    lon: String,
    active: bool,
    may_manage_devices: bool,
    keys: Vec<KeyRow>,
    new_key: Option<String>,
    flagged: Vec<FlaggedRow>,
    /// Older findings than those shown exist.
    flagged_cut: bool,
}

/// A reading the anomaly checks found suspect, with the flag it has now (an operator may have
/// confirmed it valid or marked it invalid since).
struct FlaggedRow {
    parameter: &'static str,
    parameter_name: &'static str,
    /// RFC 3339, for the form.
    time: String,
    shown_time: String,
    value: String,
    unit: String,
    /// What the checks found (`spike: 24× the median deviation…`).
    why: String,
    flag: &'static str,
}

/// The anomaly findings read for a station's page, newest first (a reading may have several).
const FLAGGED_SHOWN: i64 = 50;

async fn station_or_404(web: &WebState, id: &str) -> WebResult<Station> {
    let not_found = || WebError::NotFound(format!("There is no station {id:?}."));
    let sid = StationId::parse(id).map_err(|_| not_found())?;
    web.app.store().station(&sid).await?.ok_or_else(not_found)
}

async fn station_page(
    web: &WebState,
    visitor: &Visitor,
    station: &Station,
    layout: Layout,
    new_key: Option<String>,
) -> WebResult<StationPage> {
    let user = visitor.require()?;
    let may_manage_devices = web.app.identity().authorizer.is_allowed(
        &user.principal,
        Action::ManageDevices,
        &Resource::System,
    );
    let keys = if may_manage_devices {
        web.app
            .store()
            .device_keys(&station.id)
            .await?
            .into_iter()
            .map(|k| KeyRow {
                prefix: k.prefix,
                label: k.label.unwrap_or_default(),
                created: view::fmt_time(k.created_at),
                last_used: k
                    .last_used_at
                    .map(view::fmt_time)
                    .unwrap_or_else(|| "never".into()),
                revoked: k.revoked_at.is_some(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let (flagged, flagged_cut) = flagged_readings(web, &station.id).await?;
    Ok(StationPage {
        layout,
        id: station.id.to_string(),
        name: station.name.clone(),
        area: station.area.clone().unwrap_or_default(),
        lat: station.location.lat.to_string(),
        lon: station.location.lon.to_string(),
        active: station.active,
        may_manage_devices,
        keys,
        new_key,
        flagged,
        flagged_cut,
    })
}

/// The station's readings the anomaly checks flagged, one row per reading (its findings
/// joined), with the flag each has now.
/// Also says whether older findings were left out.
async fn flagged_readings(
    web: &WebState,
    station: &StationId,
) -> WebResult<(Vec<FlaggedRow>, bool)> {
    let store = web.app.store();
    let found = store
        .anomalies(station, i64::MIN, i64::MAX, FLAGGED_SHOWN)
        .await?;
    let cut = found.len() as i64 == FLAGGED_SHOWN;
    let mut rows: Vec<FlaggedRow> = Vec::new();
    for a in found {
        let time = a.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let finding = format!("{}: {}", a.kind, a.detail);
        if let Some(row) = rows
            .iter_mut()
            .find(|r| r.parameter == a.parameter.as_str() && r.time == time)
        {
            row.why = format!("{}; {finding}", row.why);
            continue;
        }
        let ts = a.time.timestamp();
        let now = store
            .readings(station, a.parameter, ts, ts + 1, 1)
            .await?
            .first()
            .map(|p| p.flag);
        let Some(flag) = now else { continue }; // the reading is gone (retention)
        rows.push(FlaggedRow {
            parameter: a.parameter.as_str(),
            parameter_name: a.parameter.display_name(),
            time,
            shown_time: view::fmt_time(a.time),
            value: view::fmt_value(a.value),
            unit: a.parameter.canonical_unit().to_string(),
            why: finding,
            flag: flag.as_str(),
        });
    }
    Ok((rows, cut))
}

#[derive(Deserialize)]
pub struct FlagForm {
    parameter: String,
    time: String,
    flag: String,
}

/// An operator's verdict on a flagged reading (through the API's own handler, so both front
/// doors check and audit alike): `valid` makes it count again, `invalid` keeps it out.
pub async fn flag_reading(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<FlagForm>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageStations)?;
    let station = station_or_404(&web, &id).await?;
    let result = api_readings::set_flag(
        State(web.app.clone()),
        me.signed_in(&web.app),
        ApiPath(id),
        ApiJson(api_readings::FlagChange {
            parameter: form.parameter,
            time: form.time,
            flag: form.flag,
        }),
    )
    .await;
    let layout = Layout::new(&web, &visitor, format!("Station {}", station.name)).section("admin");
    let (status, layout) = match result {
        Ok(Json(changed)) => (
            StatusCode::OK,
            layout.flash(format!(
                "The {} reading of {} is now {} (it was {}).",
                changed.parameter.display_name(),
                view::fmt_time(changed.time),
                changed.flag.as_str(),
                changed.previous.as_str()
            )),
        ),
        Err(e) if !e.status().is_server_error() => (e.status(), layout.error(view::say(&e))),
        Err(e) => return Err(e.into()),
    };
    let page = station_page(&web, &visitor, &station, layout, None).await?;
    Ok((status, Html(page.render()?)).into_response())
}

pub async fn station(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> WebResult<Response> {
    allowed(&web, &visitor, Action::ManageStations)?;
    let station = station_or_404(&web, &id).await?;
    let layout = Layout::new(&web, &visitor, format!("Station {}", station.name)).section("admin");
    super::page(station_page(&web, &visitor, &station, layout, None).await?)
}

#[derive(Deserialize)]
pub struct StationForm {
    name: String,
    area: String,
    lat: String,
    lon: String,
    active: Option<String>,
}

pub async fn update_station(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<StationForm>,
) -> WebResult<Response> {
    let user = allowed(&web, &visitor, Action::ManageStations)?;
    let mut station = station_or_404(&web, &id).await?;
    let updated = (|| {
        let location = place(&form.lat, &form.lon)?;
        let mut s = station.clone();
        s.name = form.name.trim().to_string();
        s.area = Some(form.area.trim().to_string()).filter(|a| !a.is_empty());
        s.location = location;
        s.active = form.active.is_some();
        s.validate().map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    })();
    let layout = Layout::new(&web, &visitor, format!("Station {}", station.name)).section("admin");
    match updated {
        Ok(s) => {
            web.app.store().upsert_station(&s).await?;
            web.app.readings_changed();
            tracing::info!(user = %user.id, station = %s.id, "station edited");
            station = s;
            let layout = layout.flash("The station is saved.");
            super::page(station_page(&web, &visitor, &station, layout, None).await?)
        }
        Err(why) => {
            let page = station_page(&web, &visitor, &station, layout.error(why), None).await?;
            Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct KeyForm {
    label: String,
}

/// Makes a device key and shows it once (only its hash is kept).
pub async fn create_key(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<KeyForm>,
) -> WebResult<Response> {
    let user = allowed(&web, &visitor, Action::ManageDevices)?;
    let station = station_or_404(&web, &id).await?;
    let label = Some(form.label.trim().to_string()).filter(|l| !l.is_empty());
    let (plain, record) = device_auth::generate(&station.id, label, Utc::now());
    web.app.store().insert_device_key(&record).await?;
    tracing::info!(user = %user.id, station = %station.id, key = %record.prefix, "device key created");
    let layout = Layout::new(&web, &visitor, format!("Station {}", station.name))
        .section("admin")
        .flash("A new device key is made. Copy it now: it is shown only this once.");
    let page = station_page(&web, &visitor, &station, layout, Some(plain)).await?;
    Ok(no_store(page.render()?))
}

pub async fn revoke_key(
    State(web): State<WebState>,
    visitor: Visitor,
    Path((id, prefix)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let user = allowed(&web, &visitor, Action::ManageDevices)?;
    let station = station_or_404(&web, &id).await?;
    let belongs = web
        .app
        .store()
        .device_key(&prefix)
        .await?
        .is_some_and(|k| k.station == station.id);
    if !belongs
        || !web
            .app
            .store()
            .revoke_device_key(&prefix, Utc::now())
            .await?
    {
        return Err(WebError::NotFound(format!(
            "{} has no active key {prefix}.",
            station.name
        )));
    }
    tracing::info!(user = %user.id, station = %station.id, key = %prefix, "device key revoked");
    let layout = Layout::new(&web, &visitor, format!("Station {}", station.name))
        .section("admin")
        .flash(format!(
            "Key {prefix} is revoked; the device can no longer send readings."
        ));
    super::page(station_page(&web, &visitor, &station, layout, None).await?)
}

// ---- users ---------------------------------------------------------------------------------

struct UserRow {
    id: String,
    email: String,
    citizen: bool,
    operator: bool,
    admin: bool,
    confirmed: bool,
    created: String,
    is_me: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
}

async fn users_page(web: &WebState, visitor: &Visitor, layout: Layout) -> WebResult<UsersPage> {
    let me = allowed(web, visitor, Action::ListUsers)?;
    let Json(users) = api_admin::list_users(State(web.app.clone()), me.signed_in(&web.app))
        .await
        .map_err(WebError::from)?;
    Ok(UsersPage {
        layout,
        users: users
            .into_iter()
            .map(|u| UserRow {
                is_me: u.id == me.id,
                citizen: u.roles.contains(&Role::Citizen),
                operator: u.roles.contains(&Role::Operator),
                admin: u.roles.contains(&Role::Admin),
                id: u.id,
                email: u.email,
                confirmed: u.confirmed,
                created: view::fmt_time(u.created_at),
            })
            .collect(),
    })
}

pub async fn users(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    let layout = Layout::new(&web, &visitor, "Users").section("admin");
    super::page(users_page(&web, &visitor, layout).await?)
}

#[derive(Deserialize)]
pub struct RolesForm {
    citizen: Option<String>,
    operator: Option<String>,
    admin: Option<String>,
}

pub async fn update_user(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RolesForm>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::UpdateUser)?;
    let roles: Vec<String> = [
        (form.citizen.is_some(), "citizen"),
        (form.operator.is_some(), "operator"),
        (form.admin.is_some(), "admin"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, r)| r.to_string())
    .collect();
    let result = api_admin::update_user(
        State(web.app.clone()),
        me.signed_in(&web.app),
        ApiPath(id),
        ApiJson(api_admin::UserPatch { roles: Some(roles) }),
    )
    .await;
    let layout = Layout::new(&web, &visitor, "Users").section("admin");
    match result {
        Ok(Json(u)) => {
            let layout = layout.flash(format!("The groups of {} are saved.", u.email));
            super::page(users_page(&web, &visitor, layout).await?)
        }
        Err(e @ ecocityhub_api::ApiError::BadRequest(_)) => {
            let layout = layout.error(view::say(&e));
            let page = users_page(&web, &visitor, layout).await?;
            Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---- models --------------------------------------------------------------------------------

struct ModelRow {
    id: i64,
    station: String,
    parameter: &'static str,
    parameter_key: &'static str,
    version: i64,
    status: String,
    created: String,
    trained_to: String,
    skill: String,
    can_promote: bool,
    can_roll_back: bool,
}

#[derive(Template)]
#[template(path = "admin/models.html")]
struct ModelsPage {
    layout: Layout,
    models: Vec<ModelRow>,
}

/// "MAE 6.0 at 24 h (14% less error than persistence)" from held-out scores.
fn skill_words(metrics: &str) -> String {
    let scores: Vec<HorizonScores> = serde_json::from_str(metrics).unwrap_or_default();
    match scores
        .iter()
        .filter(|s| s.horizon <= 24)
        .max_by_key(|s| s.horizon)
    {
        Some(s) => {
            let pct = s.skill_vs_persistence * 100.0;
            let versus = if pct >= 0.0 {
                format!("{pct:.0}% less error than persistence")
            } else {
                format!("{:.0}% more error than persistence", -pct)
            };
            format!("MAE {:.1} at {} h ({versus})", s.model.mae, s.horizon)
        }
        None => "no scores".into(),
    }
}

async fn models_page(web: &WebState, visitor: &Visitor, layout: Layout) -> WebResult<ModelsPage> {
    allowed(web, visitor, Action::ManageModels)?;
    let models = web.app.store().models(None, None).await?;
    // A series can roll back when an earlier version served before its current one.
    let rows = models
        .iter()
        .map(|m| {
            let series_has_retired = models.iter().any(|o| {
                o.station == m.station
                    && o.parameter == m.parameter
                    && o.id != m.id
                    && o.promoted_at.is_some()
                    && o.status != "serving"
            });
            ModelRow {
                id: m.id,
                station: m.station.to_string(),
                parameter: m.parameter.display_name(),
                parameter_key: m.parameter.as_str(),
                version: m.version,
                status: m.status.clone(),
                created: view::fmt_time(m.created_at),
                trained_to: view::fmt_time(m.training_to),
                skill: skill_words(&m.metrics),
                can_promote: m.status != "serving",
                can_roll_back: m.status == "serving" && series_has_retired,
            }
        })
        .collect();
    Ok(ModelsPage {
        layout,
        models: rows,
    })
}

pub async fn models(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    let layout = Layout::new(&web, &visitor, "Forecast models").section("admin");
    super::page(models_page(&web, &visitor, layout).await?)
}

pub async fn promote(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageModels)?;
    let result =
        api_ml::promote_model(State(web.app.clone()), me.signed_in(&web.app), ApiPath(id)).await;
    let layout = Layout::new(&web, &visitor, "Forecast models").section("admin");
    let layout = match result {
        Ok(Json(m)) => layout.flash(format!(
            "Version {} now serves the {} forecasts of {}.",
            m.version, m.parameter, m.station
        )),
        Err(e) if !e.status().is_server_error() => layout.error(view::say(&e)),
        Err(e) => return Err(e.into()),
    };
    super::page(models_page(&web, &visitor, layout).await?)
}

#[derive(Deserialize)]
pub struct RollbackForm {
    station: String,
    parameter: String,
}

pub async fn rollback(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<RollbackForm>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageModels)?;
    let parameter: Parameter = form
        .parameter
        .parse()
        .map_err(|_| WebError::BadRequest(format!("{:?} is not a parameter.", form.parameter)))?;
    let result = api_ml::rollback_model(
        State(web.app.clone()),
        me.signed_in(&web.app),
        ApiJson(api_ml::RollbackRequest {
            station: form.station,
            parameter,
        }),
    )
    .await;
    let layout = Layout::new(&web, &visitor, "Forecast models").section("admin");
    let layout = match result {
        Ok(Json(m)) => layout.flash(format!(
            "Rolled back: version {} serves the {} forecasts of {} again.",
            m.version, m.parameter, m.station
        )),
        Err(e) if !e.status().is_server_error() => layout.error(view::say(&e)),
        Err(e) => return Err(e.into()),
    };
    super::page(models_page(&web, &visitor, layout).await?)
}

// ---- training jobs -------------------------------------------------------------------------

struct JobRow {
    id: i64,
    status: &'static str,
    progress: String,
    what: String,
    created: String,
    by: String,
}

struct Option2 {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "admin/jobs.html")]
struct JobsPage {
    layout: Layout,
    jobs: Vec<JobRow>,
    stations: Vec<Option2>,
    parameters: Vec<Option2>,
}

fn describe(request: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(request).unwrap_or_default();
    let list = |k: &str| {
        let items: Vec<String> = v[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "all".to_string()
        } else {
            items.join(", ")
        }
    };
    format!(
        "stations: {}; parameters: {}{}",
        list("stations"),
        list("parameters"),
        if v["promote"].as_bool() == Some(true) {
            "; promote"
        } else {
            ""
        }
    )
}

async fn jobs_page(web: &WebState, visitor: &Visitor, layout: Layout) -> WebResult<JobsPage> {
    let me = allowed(web, visitor, Action::ManageModels)?;
    let Json(jobs) = api_ml::list_jobs(State(web.app.clone()), me.signed_in(&web.app))
        .await
        .map_err(WebError::from)?;
    let mut stations: Vec<Option2> = web
        .app
        .store()
        .series()
        .await?
        .into_iter()
        .filter(|s| FORECASTABLE.contains(&s.parameter))
        .map(|s| Option2 {
            value: s.station.to_string(),
            label: s.station.to_string(),
        })
        .collect();
    stations.dedup_by(|a, b| a.value == b.value);
    Ok(JobsPage {
        layout,
        jobs: jobs
            .into_iter()
            .map(|j| JobRow {
                id: j.id,
                status: status_str(&j.status),
                progress: format!("{:.0}%", j.progress * 100.0),
                what: describe(&j.request.to_string()),
                created: j.created_at.replace('T', " ").replace('Z', " UTC"),
                by: j.created_by.unwrap_or_default(),
            })
            .collect(),
        stations,
        parameters: FORECASTABLE
            .iter()
            .map(|p| Option2 {
                value: p.as_str().into(),
                label: p.display_name().into(),
            })
            .collect(),
    })
}

fn status_str(s: &str) -> &'static str {
    match s {
        "queued" => "queued",
        "running" => "running",
        "succeeded" => "succeeded",
        "failed" => "failed",
        "cancelled" => "cancelled",
        _ => "unknown",
    }
}

pub async fn jobs(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    let layout = Layout::new(&web, &visitor, "Training jobs").section("admin");
    super::page(jobs_page(&web, &visitor, layout).await?)
}

#[derive(Deserialize)]
pub struct JobForm {
    station: String,
    parameter: String,
    promote: Option<String>,
}

pub async fn start_job(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<JobForm>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageModels)?;
    let parameters = match form.parameter.as_str() {
        "" | "all" => Vec::new(),
        p => vec![p
            .parse::<Parameter>()
            .map_err(|_| WebError::BadRequest(format!("{p:?} is not a parameter.")))?],
    };
    let stations = match form.station.as_str() {
        "" | "all" => Vec::new(),
        s => vec![s.to_string()],
    };
    let result = api_ml::create_job(
        State(web.app.clone()),
        me.signed_in(&web.app),
        ApiJson(api_ml::JobRequest {
            stations,
            parameters,
            promote: form.promote.is_some(),
        }),
    )
    .await;
    match result {
        Ok(response) => {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .map(str::to_string)
                .ok_or_else(|| WebError::Internal("a queued job has a location".into()))?;
            Ok(Redirect::to(&format!("/admin/jobs/{location}")).into_response())
        }
        Err(e) if !e.status().is_server_error() => {
            let layout = Layout::new(&web, &visitor, "Training jobs")
                .section("admin")
                .error(view::say(&e));
            let page = jobs_page(&web, &visitor, layout).await?;
            Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "admin/job.html")]
struct JobPage {
    layout: Layout,
    id: i64,
    status: &'static str,
    progress: f64,
    percent: String,
    message: String,
    log: String,
    what: String,
    finished: bool,
}

pub async fn job(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageModels)?;
    let Json(j) = api_ml::get_job(State(web.app.clone()), me.signed_in(&web.app), ApiPath(id))
        .await
        .map_err(WebError::from)?;
    let status = status_str(&j.status);
    super::page(JobPage {
        layout: Layout::new(&web, &visitor, format!("Training job {id}")).section("admin"),
        id,
        status,
        progress: j.progress,
        percent: format!("{:.0}%", j.progress * 100.0),
        message: j.message.unwrap_or_default(),
        log: j.log,
        what: describe(&j.request.to_string()),
        finished: !matches!(status, "queued" | "running"),
    })
}

/// The job as JSON for the page's live progress (the session's cookie is the credential).
pub async fn job_status(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageModels)?;
    let job = api_ml::get_job(State(web.app.clone()), me.signed_in(&web.app), ApiPath(id))
        .await
        .map_err(WebError::from)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], job).into_response())
}

// ---- deliveries of notifications -------------------------------------------------------------

struct DeliveryView {
    id: i64,
    message_id: String,
    subject: String,
    protocol: String,
    endpoint: String,
    user: String,
    status: String,
    attempts: i64,
    last_error: String,
    created: String,
    finished: String,
    dead: bool,
}

#[derive(Template)]
#[template(path = "admin/deliveries.html")]
struct DeliveriesPage {
    layout: Layout,
    deliveries: Vec<DeliveryView>,
    status: String,
    statuses: Vec<Option2>,
    has_dead: bool,
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
}

/// The page of deliveries with `status` (`dead` by default, `all`…); an unknown status is said
/// on the page.
async fn deliveries_page(
    web: &WebState,
    visitor: &Visitor,
    layout: Layout,
    status: &str,
) -> WebResult<(StatusCode, DeliveriesPage)> {
    let me = allowed(web, visitor, Action::ManageNotifications)?;
    let result = api_alerts::list_deliveries(
        State(web.app.clone()),
        me.signed_in(&web.app),
        ecocityhub_api::extract::ApiQuery(api_alerts::DeliveryQuery {
            status: Some(status.to_string()),
            before: None,
            limit: Some(200),
        }),
    )
    .await;
    let (code, layout, rows) = match result {
        Ok(Json(rows)) => (StatusCode::OK, layout, rows),
        Err(e) if !e.status().is_server_error() => (
            StatusCode::BAD_REQUEST,
            layout.error(view::say(&e)),
            Vec::new(),
        ),
        Err(e) => return Err(e.into()),
    };
    let deliveries: Vec<DeliveryView> = rows
        .into_iter()
        .map(|d| DeliveryView {
            dead: d.status == "dead",
            id: d.id,
            message_id: d.message_id,
            subject: d.subject,
            protocol: d.protocol,
            endpoint: d.endpoint,
            user: d.user_id.unwrap_or_default(),
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error.unwrap_or_default(),
            created: view::fmt_time(d.created_at),
            finished: d.finished_at.map(view::fmt_time).unwrap_or_default(),
        })
        .collect();
    let has_dead = deliveries.iter().any(|d| d.dead);
    Ok((
        code,
        DeliveriesPage {
            layout,
            deliveries,
            status: status.to_string(),
            statuses: [
                ("dead", "Dead letters"),
                ("pending", "Pending"),
                ("delivered", "Delivered"),
                ("discarded", "Discarded"),
                ("all", "All"),
            ]
            .iter()
            .map(|(value, label)| Option2 {
                value: value.to_string(),
                label: label.to_string(),
            })
            .collect(),
            has_dead,
        },
    ))
}

fn deliveries_answer((code, page): (StatusCode, DeliveriesPage)) -> WebResult<Response> {
    Ok((code, no_store(page.render()?)).into_response())
}

/// `GET /admin/deliveries?status=dead`.
pub async fn deliveries(
    State(web): State<WebState>,
    visitor: Visitor,
    axum::extract::Query(q): axum::extract::Query<DeliveriesQuery>,
) -> WebResult<Response> {
    let layout = Layout::new(&web, &visitor, "Deliveries").section("admin");
    let status = q.status.unwrap_or_else(|| "dead".into());
    deliveries_answer(deliveries_page(&web, &visitor, layout, status.trim()).await?)
}

/// `POST /admin/deliveries/{id}/redrive`: one dead letter is due again.
pub async fn redrive(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageNotifications)?;
    let result =
        api_alerts::redrive_delivery(State(web.app.clone()), me.signed_in(&web.app), ApiPath(id))
            .await;
    let layout = Layout::new(&web, &visitor, "Deliveries").section("admin");
    let layout = match result {
        Ok(_) => {
            tracing::info!(user = %me.id, delivery = id, "dead letter re-driven");
            layout.flash(format!("Delivery {id} is due again."))
        }
        Err(e) if !e.status().is_server_error() => layout.error(view::say(&e)),
        Err(e) => return Err(e.into()),
    };
    deliveries_answer(deliveries_page(&web, &visitor, layout, "dead").await?)
}

/// `POST /admin/deliveries/redrive`: every dead letter is due again.
pub async fn redrive_all(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let me = allowed(&web, &visitor, Action::ManageNotifications)?;
    let Json(done) = api_alerts::redrive_all(State(web.app.clone()), me.signed_in(&web.app))
        .await
        .map_err(WebError::from)?;
    tracing::info!(user = %me.id, redriven = done.redriven, "dead letters re-driven");
    let layout = Layout::new(&web, &visitor, "Deliveries")
        .section("admin")
        .flash(match done.redriven {
            0 => "There were no dead letters.".to_string(),
            1 => "1 dead letter is due again.".to_string(),
            n => format!("{n} dead letters are due again."),
        });
    deliveries_answer(deliveries_page(&web, &visitor, layout, "dead").await?)
}
