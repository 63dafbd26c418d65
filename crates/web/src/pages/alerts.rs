//! "My alerts" (`/account/alerts`): a signed-in user's channels (e-mail, webhook, browser
//! notifications, this site while open) and alert rules (a station or an area, the AQI or a
//! pollutant's, a category threshold, time zone and quiet hours), with forms to add, change
//! (each rule's edit page), pause, resume, delete and test them; and `/account/events`, the
//! live stream of the signed-in pages. Every form goes through the API's handlers
//! (`/api/v1/me/…`), so the checks and the messages are the notification layer's own.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use chrono::NaiveTime;
use ecocityhub_api::extract::{ApiJson, ApiPath};
use ecocityhub_api::routes::alerts::{
    self as api_alerts, ChannelIn, ChannelOut, RuleIn, RuleOut, RulePatch,
};
use ecocityhub_api::ApiError;
use ecocityhub_domain::aqi::us_epa::{Category, Table};
use ecocityhub_domain::Parameter;
use ecocityhub_notify::channels::webpush::SubscriptionKeys;
use ecocityhub_notify::rules::{Measure, MAX_RADIUS_KM};
use ecocityhub_notify::rules::{QuietHours, RuleSpec, Target, Trigger};

use crate::error::{WebError, WebResult};
use crate::session::{CsrfForm, SessionUser, Visitor};
use crate::view::{self, say, Layout};
use crate::WebState;

use super::notify::protocol_name;

/// One option of a `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(crate) fn choices(
    items: impl IntoIterator<Item = (String, String)>,
    selected: &str,
) -> Vec<Choice> {
    items
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == selected,
            value,
            label,
        })
        .collect()
}

/// A channel as the page lists it.
pub struct ChannelRow {
    pub id: String,
    pub kind: &'static str,
    pub protocol: String,
    pub endpoint: String,
    pub confirmed: bool,
    pub status: String,
    /// Ticked in the new-rule form.
    pub checked: bool,
}

/// A rule as the page lists it.
pub struct RuleRow {
    pub id: String,
    pub label: String,
    pub description: String,
    pub threshold: String,
    pub when: String,
    pub channels: String,
    pub paused: bool,
}

/// What the visitor typed in the new-rule form (kept when it is answered with an error).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    /// `station` or `area`.
    pub target: String,
    pub station: String,
    pub lat: String,
    pub lon: String,
    pub radius_km: String,
    /// `aqi` or a pollutant (`pm25`…).
    pub measure: String,
    /// A category, snake case (`unhealthy_for_sensitive_groups`).
    pub threshold: String,
    /// `measured` or `forecast`.
    pub trigger: String,
    pub timezone: String,
    pub quiet_start: String,
    pub quiet_end: String,
    pub label: String,
    pub channels: Vec<String>,
}

impl Default for RuleDraft {
    fn default() -> Self {
        RuleDraft {
            target: "station".into(),
            station: String::new(),
            lat: String::new(),
            lon: String::new(),
            radius_km: "5".into(),
            measure: "aqi".into(),
            threshold: category_key(Category::UnhealthyForSensitiveGroups),
            trigger: "measured".into(),
            timezone: "UTC".into(),
            quiet_start: String::new(),
            quiet_end: String::new(),
            label: String::new(),
            channels: Vec::new(),
        }
    }
}

impl RuleDraft {
    /// The draft of a posted form (`channel` may repeat).
    pub fn from_fields(fields: &[(String, String)]) -> RuleDraft {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        RuleDraft {
            target: get("target"),
            station: get("station"),
            lat: get("lat"),
            lon: get("lon"),
            radius_km: get("radius_km"),
            measure: get("measure"),
            threshold: get("threshold"),
            trigger: get("trigger"),
            timezone: get("timezone"),
            quiet_start: get("quiet_start"),
            quiet_end: get("quiet_end"),
            label: get("label"),
            channels: fields
                .iter()
                .filter(|(k, _)| k == "channel")
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
        }
    }

    /// The draft of a stored rule, for its edit form.
    pub fn from_rule(spec: &RuleSpec, channels: &[String]) -> RuleDraft {
        let hhmm = |t: NaiveTime| t.format("%H:%M").to_string();
        let mut draft = RuleDraft {
            measure: match spec.measure {
                Measure::Aqi => "aqi".into(),
                Measure::Pollutant(p) => p.as_str().into(),
            },
            threshold: category_key(spec.threshold),
            trigger: match spec.trigger {
                Trigger::Measured { .. } => "measured".into(),
                Trigger::Forecast { .. } => "forecast".into(),
            },
            timezone: spec.timezone.clone(),
            quiet_start: spec.quiet_hours.map(|q| hhmm(q.start)).unwrap_or_default(),
            quiet_end: spec.quiet_hours.map(|q| hhmm(q.end)).unwrap_or_default(),
            label: spec.label.clone().unwrap_or_default(),
            channels: channels.to_vec(),
            ..RuleDraft::default()
        };
        match &spec.target {
            Target::Station(id) => draft.station = id.clone(),
            Target::Area {
                lat,
                lon,
                radius_km,
            } => {
                draft.target = "area".into();
                draft.lat = lat.to_string();
                draft.lon = lon.to_string();
                draft.radius_km = radius_km.to_string();
            }
        }
        draft
    }

    /// The rule the form describes with at least one channel to send to, or what is wrong.
    pub fn to_rule(&self) -> Result<RuleSpec, String> {
        let spec = self.to_spec()?;
        if self.channels.is_empty() {
            return Err(
                "Choose at least one channel for the alerts (add one first if you have none)."
                    .into(),
            );
        }
        Ok(spec)
    }

    /// The rule the form describes; what cannot be read is said in a sentence. (The rest — a
    /// known station, the radius, the time zone — the notification layer checks.)
    pub fn to_spec(&self) -> Result<RuleSpec, String> {
        let number = |what: &str, v: &str, example: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("The {what} must be a number, like {example}."))
        };
        let target = match self.target.as_str() {
            "station" | "" => {
                if self.station.is_empty() {
                    return Err("Choose a station.".into());
                }
                Target::Station(self.station.clone())
            }
            "area" => Target::Area {
                lat: number("latitude", &self.lat, "52.52")?,
                lon: number("longitude", &self.lon, "13.40")?,
                radius_km: number(
                    &format!("radius (up to {MAX_RADIUS_KM} km)"),
                    &self.radius_km,
                    "5",
                )?,
            },
            other => return Err(format!("{other:?} is neither a station nor an area.")),
        };
        let measure = match self.measure.as_str() {
            "aqi" | "" => Measure::Aqi,
            p => Measure::Pollutant(
                p.parse::<Parameter>()
                    .map_err(|_| format!("{p:?} is not a pollutant."))?,
            ),
        };
        let threshold: Category =
            serde_json::from_value(serde_json::Value::String(self.threshold.clone()))
                .map_err(|_| "Choose the category at which the alert starts.".to_string())?;
        let trigger = match self.trigger.as_str() {
            "measured" | "" => Trigger::default(),
            "forecast" => Trigger::Forecast { days_ahead: 1 },
            other => return Err(format!("{other:?} is neither measured nor forecast.")),
        };
        let time = |v: &str| {
            NaiveTime::parse_from_str(v, "%H:%M")
                .map_err(|_| format!("{v:?} is not a time like 22:00."))
        };
        let quiet_hours = match (self.quiet_start.as_str(), self.quiet_end.as_str()) {
            ("", "") => None,
            ("", _) | (_, "") => {
                return Err(
                    "Give both the start and the end of the quiet hours, or neither.".into(),
                )
            }
            (start, end) => Some(QuietHours {
                start: time(start)?,
                end: time(end)?,
            }),
        };
        if self.label.chars().count() > 80 {
            return Err("The name may be at most 80 characters long.".into());
        }
        Ok(RuleSpec {
            target,
            measure,
            threshold,
            trigger,
            timezone: if self.timezone.is_empty() {
                "UTC".into()
            } else {
                self.timezone.clone()
            },
            quiet_hours,
            digest_at: None,
            label: Some(self.label.clone()).filter(|l| !l.is_empty()),
        })
    }
}

/// `edited` with what the form does not show kept from the `stored` rule: the hold, clear and
/// cooldown times of a measured trigger, how many days ahead a forecast looks (while the kind
/// of trigger stays), and the daily digest.
pub fn keep_unshown(mut edited: RuleSpec, stored: &RuleSpec) -> RuleSpec {
    edited.trigger = match (edited.trigger, stored.trigger) {
        (Trigger::Measured { .. }, kept @ Trigger::Measured { .. })
        | (Trigger::Forecast { .. }, kept @ Trigger::Forecast { .. }) => kept,
        (changed, _) => changed,
    };
    edited.digest_at = stored.digest_at;
    edited
}

/// The form key of a category (`unhealthy_for_sensitive_groups`).
fn category_key(c: Category) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What the new-channel form holds.
#[derive(Debug, Clone, Default)]
pub struct ChannelDraft {
    pub protocol: String,
    pub endpoint: String,
}

#[derive(Template)]
#[template(path = "account/alerts.html")]
pub struct AlertsPage {
    pub layout: Layout,
    /// The server has a notification layer and alert rules.
    pub available: bool,
    pub channels: Vec<ChannelRow>,
    pub rules: Vec<RuleRow>,
    /// The new-rule form.
    pub form: RuleForm,
    pub protocols: Vec<Choice>,
    pub channel_endpoint: String,
    /// A webhook's signing secret, shown once.
    pub new_secret: Option<String>,
    /// The VAPID public key browsers subscribe with, when Web Push is set up.
    pub push_key: Option<String>,
}

/// A rule's edit page (`/account/alerts/rules/{id}/edit`).
#[derive(Template)]
#[template(path = "account/rule_edit.html")]
pub struct EditRulePage {
    pub layout: Layout,
    /// The rule as it is stored.
    pub rule: RuleRow,
    pub form: RuleForm,
}

/// The rule form — the new-rule form of "My alerts" and a rule's edit page draw the same one
/// (`account/rule_form.html`), filled in from a [`RuleDraft`].
pub struct RuleForm {
    /// Where it is posted.
    pub action: String,
    /// The words of its button.
    pub submit: &'static str,
    /// An edit page's form (with a way back).
    pub editing: bool,
    pub draft: RuleDraft,
    pub stations: Vec<Choice>,
    pub measures: Vec<Choice>,
    pub thresholds: Vec<Choice>,
    /// The channels to tick.
    pub channels: Vec<ChannelRow>,
}

/// Which rule form: the new-rule one, or the edit form of the rule with this id.
#[derive(Clone, Copy)]
enum FormFor<'a> {
    New,
    Edit(&'a str),
}

/// The server has a notification layer and alert rules.
fn available(web: &WebState) -> bool {
    web.app.notifier().is_some() && web.app.rules().is_some()
}

/// The signed-in user's channels, through the API's handler.
async fn my_channels(web: &WebState, user: &SessionUser) -> WebResult<Vec<ChannelOut>> {
    let Json(channels) =
        api_alerts::list_channels(State(web.app.clone()), user.signed_in(&web.app))
            .await
            .map_err(WebError::from)?;
    Ok(channels)
}

/// The signed-in user's rules, through the API's handler.
async fn my_rules(web: &WebState, user: &SessionUser) -> WebResult<Vec<RuleOut>> {
    let Json(rules) = api_alerts::list_rules(State(web.app.clone()), user.signed_in(&web.app))
        .await
        .map_err(WebError::from)?;
    Ok(rules)
}

/// One of the signed-in user's rules, or a 404 page (also for someone else's).
async fn my_rule(web: &WebState, user: &SessionUser, id: &str) -> WebResult<RuleOut> {
    my_rules(web, user)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| WebError::NotFound("You have no such alert.".into()))
}

/// A stored rule's condition.
fn stored_spec(rule: &RuleOut) -> WebResult<RuleSpec> {
    serde_json::from_value(rule.rule.clone())
        .map_err(|e| WebError::Internal(format!("rule {}: {e}", rule.id)))
}

/// How the channels of a rule are named: the channel's words, or "a deleted channel".
fn channel_namer(channels: &[ChannelOut]) -> impl Fn(&str) -> String + '_ {
    |id| {
        channels
            .iter()
            .find(|c| c.id == id)
            .map(channel_words)
            .unwrap_or_else(|| "a deleted channel".into())
    }
}

fn channel_rows(channels: &[ChannelOut], ticked: impl Fn(&ChannelOut) -> bool) -> Vec<ChannelRow> {
    channels
        .iter()
        .map(|c| ChannelRow {
            checked: ticked(c),
            id: c.id.clone(),
            kind: protocol_name(&c.protocol),
            protocol: c.protocol.clone(),
            endpoint: c.endpoint.clone(),
            confirmed: c.status == "confirmed",
            status: c.status.clone(),
        })
        .collect()
}

/// The active stations by name, and `keep` (a rule's station that is no longer active) too.
async fn station_choices(web: &WebState, keep: &str) -> WebResult<Vec<(String, String)>> {
    let mut stations: Vec<(String, String)> = web
        .app
        .store()
        .stations()
        .await?
        .into_iter()
        .filter(|s| s.active || s.id.as_str() == keep)
        .map(|s| (s.id.to_string(), format!("{} ({})", s.name, s.id)))
        .collect();
    stations.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(stations)
}

fn measure_choices() -> Vec<(String, String)> {
    let mut measures = vec![("aqi".to_string(), "AQI (the highest pollutant)".to_string())];
    measures.extend(
        Parameter::ALL
            .iter()
            .filter(|p| Table::for_charts(**p).is_some())
            .map(|p| (p.as_str().to_string(), format!("{} AQI", p.display_name()))),
    );
    measures
}

fn threshold_choices() -> impl Iterator<Item = (String, String)> {
    Category::UPPER_BOUNDS
        .iter()
        .skip(1)
        .map(|(c, _)| (category_key(*c), format!("{} or worse", c.label())))
}

/// The rule form filled in from `draft`. The new-rule form ticks every confirmed channel until
/// the visitor chose; an edit form ticks the rule's own.
async fn rule_form(
    web: &WebState,
    channels: &[ChannelOut],
    draft: RuleDraft,
    form_for: FormFor<'_>,
) -> WebResult<RuleForm> {
    let fresh = matches!(form_for, FormFor::New) && draft.channels.is_empty();
    let channels = channel_rows(channels, |c| {
        if fresh {
            c.status == "confirmed"
        } else {
            draft.channels.contains(&c.id)
        }
    });
    let (action, submit) = match form_for {
        FormFor::New => ("/account/alerts/rules".to_string(), "Add alert"),
        FormFor::Edit(id) => (edit_path(id), "Save changes"),
    };
    Ok(RuleForm {
        action,
        submit,
        editing: matches!(form_for, FormFor::Edit(_)),
        stations: choices(station_choices(web, &draft.station).await?, &draft.station),
        measures: choices(measure_choices(), &draft.measure),
        thresholds: choices(threshold_choices(), &draft.threshold),
        channels,
        draft,
    })
}

/// Where a rule's edit page is.
fn edit_path(id: &str) -> String {
    format!("/account/alerts/rules/{}/edit", view::url_encode(id))
}

fn protocol_choices(chosen: &str) -> Vec<Choice> {
    let protocols = [
        ("email", "E-mail"),
        ("webhook", "Webhook (an https URL)"),
        ("live", "This site, while it is open"),
    ]
    .map(|(v, l)| (v.to_string(), l.to_string()));
    choices(protocols, if chosen.is_empty() { "email" } else { chosen })
}

/// The view model of "My alerts": the user's channels and rules (through the API's handlers),
/// the stations to choose from, and the forms as the visitor left them.
pub async fn alerts_view(
    web: &WebState,
    user: &SessionUser,
    layout: Layout,
    draft: RuleDraft,
    channel: ChannelDraft,
    new_secret: Option<String>,
) -> WebResult<AlertsPage> {
    let channels = my_channels(web, user).await?;
    let name_of = channel_namer(&channels);
    let rules = my_rules(web, user).await?;
    Ok(AlertsPage {
        layout,
        available: available(web),
        rules: rules.iter().map(|r| rule_row(r, &name_of)).collect(),
        form: rule_form(web, &channels, draft, FormFor::New).await?,
        channels: channel_rows(&channels, |_| false),
        protocols: protocol_choices(&channel.protocol),
        channel_endpoint: if channel.protocol.is_empty() {
            user.email.clone()
        } else {
            channel.endpoint
        },
        new_secret,
        push_key: web
            .app
            .notifier()
            .and_then(|n| n.vapid_public_key())
            .map(str::to_string),
    })
}

/// The view model of a rule's edit page: the rule as stored, its form filled in from `draft`.
pub async fn edit_view(
    web: &WebState,
    user: &SessionUser,
    layout: Layout,
    rule: &RuleOut,
    draft: RuleDraft,
) -> WebResult<EditRulePage> {
    let channels = my_channels(web, user).await?;
    let row = rule_row(rule, &channel_namer(&channels));
    Ok(EditRulePage {
        layout,
        rule: row,
        form: rule_form(web, &channels, draft, FormFor::Edit(&rule.id)).await?,
    })
}

fn channel_words(c: &ChannelOut) -> String {
    let kind = protocol_name(&c.protocol);
    if c.endpoint.is_empty() || c.protocol == "webpush" {
        kind.to_string()
    } else {
        format!("{kind} {}", c.endpoint)
    }
}

fn rule_row(r: &RuleOut, name_of: &dyn Fn(&str) -> String) -> RuleRow {
    let spec: Option<RuleSpec> = serde_json::from_value(r.rule.clone()).ok();
    let threshold = spec
        .as_ref()
        .map(|s| format!("{} or worse", s.threshold.label()))
        .unwrap_or_default();
    let when = spec
        .as_ref()
        .map(|s| {
            let mut w = match s.trigger {
                Trigger::Measured { .. } => "when measured".to_string(),
                Trigger::Forecast { days_ahead } => match days_ahead {
                    0 => "when forecast for today".to_string(),
                    1 => "when forecast for tomorrow".to_string(),
                    n => format!("when forecast {n} days ahead"),
                },
            };
            if let Some(q) = s.quiet_hours {
                w.push_str(&format!(
                    "; quiet {}–{} {}",
                    q.start.format("%H:%M"),
                    q.end.format("%H:%M"),
                    s.timezone
                ));
            }
            w
        })
        .unwrap_or_default();
    RuleRow {
        id: r.id.clone(),
        label: spec.and_then(|s| s.label).unwrap_or_default(),
        description: r.description.clone(),
        threshold,
        when,
        channels: if r.channels.is_empty() {
            "no channel".into()
        } else {
            r.channels
                .iter()
                .map(|c| name_of(c))
                .collect::<Vec<_>>()
                .join(", ")
        },
        paused: r.paused,
    }
}

fn layout(web: &WebState, visitor: &Visitor) -> Layout {
    Layout::new(web, visitor, "My alerts").section("account")
}

/// The page, drawn with a status (and `no-store` when it shows a secret).
fn answer(status: StatusCode, page: AlertsPage) -> WebResult<Response> {
    let html = page.render()?;
    let no_store = page.new_secret.is_some();
    let mut response = (status, Html(html)).into_response();
    if no_store {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

fn status_of(e: &ApiError) -> StatusCode {
    match e.status() {
        s if s.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        s => s,
    }
}

/// The page after an action: its message on success, the API's words (and status) on a
/// mistake of the visitor's; faults of ours are error pages.
async fn after<T>(
    web: &WebState,
    visitor: &Visitor,
    user: &SessionUser,
    result: Result<T, ApiError>,
    ok: impl FnOnce(T) -> String,
) -> WebResult<Response> {
    match result {
        Ok(v) => {
            let layout = layout(web, visitor).flash(ok(v));
            let page = alerts_view(
                web,
                user,
                layout,
                RuleDraft::default(),
                ChannelDraft::default(),
                None,
            )
            .await?;
            answer(StatusCode::OK, page)
        }
        Err(e) if !e.status().is_server_error() => {
            let layout = layout(web, visitor).error(say(&e));
            let page = alerts_view(
                web,
                user,
                layout,
                RuleDraft::default(),
                ChannelDraft::default(),
                None,
            )
            .await?;
            answer(status_of(&e), page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct AlertsQuery {
    /// The rule just changed on its edit page (the redirect back here).
    changed: Option<String>,
}

/// `GET /account/alerts` (`?changed=ID` after a rule's edit page saved it).
pub async fn alerts(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<AlertsQuery>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let mut page = alerts_view(
        &web,
        user,
        layout(&web, &visitor),
        RuleDraft::default(),
        ChannelDraft::default(),
        None,
    )
    .await?;
    if let Some(id) = q.changed {
        let text = match page.rules.iter().find(|r| r.id == id) {
            Some(r) => format!(
                "The alert is changed: {} ({}).",
                r.description,
                r.threshold.to_lowercase()
            ),
            None => "The alert is changed.".into(),
        };
        page.layout = page.layout.flash(text);
    }
    answer(StatusCode::OK, page)
}

// ---- channels ------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
pub struct ChannelForm {
    protocol: String,
    #[serde(default)]
    endpoint: String,
}

/// `POST /account/alerts/channels`: adds an e-mail, webhook or live channel.
pub async fn add_channel(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<ChannelForm>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let protocol = form.protocol.trim().to_string();
    if protocol == "webpush" {
        return Err(WebError::BadRequest(
            "Browser notifications are turned on with their button on the My alerts page.".into(),
        ));
    }
    let endpoint = if protocol == "live" {
        String::new()
    } else {
        form.endpoint.trim().to_string()
    };
    let result = api_alerts::create_channel(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiJson(ChannelIn {
            protocol: protocol.clone(),
            endpoint: endpoint.clone(),
            keys: None,
            filter_policy: None,
        }),
    )
    .await;
    match result {
        Ok((_, Json(made))) => {
            let kind = protocol_name(&made.channel.protocol);
            let text = if made.confirmation_sent && made.channel.protocol == "webhook" {
                format!(
                    "The webhook is added. It was sent a confirmation event: the channel starts once its confirm_url is opened (within {} days).",
                    ecocityhub_notify::notifier::CONFIRM_TTL_DAYS
                )
            } else if made.confirmation_sent {
                format!(
                    "A confirmation link is on its way to {}. The channel starts once it is followed (within {} days).",
                    made.channel.endpoint,
                    ecocityhub_notify::notifier::CONFIRM_TTL_DAYS
                )
            } else {
                format!("{kind} is added as a channel.")
            };
            let mut layout = layout(&web, &visitor).flash(text);
            if made.secret.is_some() {
                layout = layout.flash(
                    "The webhook is added. Copy its signing secret now: it is shown only this once.",
                );
            }
            let page = alerts_view(
                &web,
                user,
                layout,
                RuleDraft::default(),
                ChannelDraft::default(),
                made.secret,
            )
            .await?;
            answer(StatusCode::OK, page)
        }
        Err(e) if !e.status().is_server_error() => {
            let page = alerts_view(
                &web,
                user,
                layout(&web, &visitor).error(say(&e)),
                RuleDraft::default(),
                ChannelDraft { protocol, endpoint },
                None,
            )
            .await?;
            answer(status_of(&e), page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct PushForm {
    endpoint: String,
    p256dh: String,
    auth: String,
}

/// `POST /account/alerts/push`: the browser's push subscription, sent by the page's script
/// after the visitor allowed notifications (a form post with the CSRF token).
pub async fn add_push(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<PushForm>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::create_channel(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiJson(ChannelIn {
            protocol: "webpush".into(),
            endpoint: form.endpoint.trim().to_string(),
            keys: Some(SubscriptionKeys {
                p256dh: form.p256dh.trim().to_string(),
                auth: form.auth.trim().to_string(),
            }),
            filter_policy: None,
        }),
    )
    .await;
    after(&web, &visitor, user, result, |_| {
        "Browser notifications are on for this browser.".into()
    })
    .await
}

/// `POST /account/alerts/channels/{id}/delete`.
pub async fn delete_channel(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::delete_channel(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiPath(id),
    )
    .await;
    after(&web, &visitor, user, result, |_| {
        "The channel is deleted.".into()
    })
    .await
}

fn test_words(deliveries: u64) -> String {
    if deliveries == 0 {
        "Nothing was sent: no confirmed channel to send to yet.".into()
    } else if deliveries == 1 {
        "A test message is on its way.".into()
    } else {
        format!("{deliveries} test messages are on their way.")
    }
}

/// `POST /account/alerts/channels/{id}/test`.
pub async fn test_channel(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::test_channel(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiPath(id),
    )
    .await;
    after(&web, &visitor, user, result, |(_, Json(t))| {
        test_words(t.deliveries)
    })
    .await
}

// ---- rules ---------------------------------------------------------------------------------

/// An API error as a form answers it: the API's words and status for a mistake of the
/// visitor's; a fault of ours keeps its detail (for the error page and the log).
fn mistake(e: ApiError) -> (StatusCode, String) {
    if e.status().is_server_error() {
        (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    } else {
        (status_of(&e), say(&e))
    }
}

/// `POST /account/alerts/rules`: adds a rule; a mistake is said on the page, with the form as
/// it was filled in.
pub async fn add_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let draft = RuleDraft::from_fields(&fields);
    let result = match draft.to_rule() {
        Err(why) => Err((StatusCode::BAD_REQUEST, why)),
        Ok(spec) => api_alerts::create_rule(
            State(web.app.clone()),
            user.signed_in(&web.app),
            ApiJson(RuleIn {
                rule: spec,
                channels: draft.channels.clone(),
                paused: false,
            }),
        )
        .await
        .map_err(mistake),
    };
    let (layout, draft, status) = match result {
        Ok((_, Json(rule))) => (
            layout(&web, &visitor).flash(format!("The alert is saved: {}.", rule.description)),
            RuleDraft::default(),
            StatusCode::OK,
        ),
        Err((status, detail)) if status.is_server_error() => {
            return Err(WebError::Internal(detail))
        }
        Err((status, why)) => (layout(&web, &visitor).error(why), draft, status),
    };
    let page = alerts_view(&web, user, layout, draft, ChannelDraft::default(), None).await?;
    answer(status, page)
}

fn edit_layout(web: &WebState, visitor: &Visitor) -> Layout {
    Layout::new(web, visitor, "Change an alert").section("account")
}

/// `GET /account/alerts/rules/{id}/edit`: the rule form, filled in from the stored rule.
pub async fn edit_rule_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    if !available(&web) {
        return Err(WebError::NotFound(
            "Alerts are not set up on this server.".into(),
        ));
    }
    let rule = my_rule(&web, user, &id).await?;
    let draft = RuleDraft::from_rule(&stored_spec(&rule)?, &rule.channels);
    let page = edit_view(&web, user, edit_layout(&web, &visitor), &rule, draft).await?;
    Ok(Html(page.render()?).into_response())
}

/// `POST /account/alerts/rules/{id}/edit`: saves the changed rule (a changed condition starts
/// a new evaluation) and goes back to "My alerts"; a mistake is said on the edit page, with the
/// form as it was filled in.
pub async fn edit_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let rule = my_rule(&web, user, &id).await?;
    let stored = stored_spec(&rule)?;
    let draft = RuleDraft::from_fields(&fields);
    let result = match draft.to_rule() {
        Err(why) => Err((StatusCode::BAD_REQUEST, why)),
        Ok(spec) => {
            let spec = keep_unshown(spec, &stored);
            api_alerts::update_rule(
                State(web.app.clone()),
                user.signed_in(&web.app),
                ApiPath(id),
                ApiJson(RulePatch {
                    rule: (spec != stored).then_some(spec),
                    channels: Some(draft.channels.clone()),
                    paused: None,
                }),
            )
            .await
            .map_err(mistake)
        }
    };
    match result {
        Ok(Json(saved)) => Ok(Redirect::to(&format!(
            "/account/alerts?changed={}",
            view::url_encode(&saved.id)
        ))
        .into_response()),
        Err((status, detail)) if status.is_server_error() => Err(WebError::Internal(detail)),
        Err((status, why)) => {
            let layout = edit_layout(&web, &visitor).error(why);
            let page = edit_view(&web, user, layout, &rule, draft).await?;
            Ok((status, Html(page.render()?)).into_response())
        }
    }
}

#[derive(serde::Deserialize)]
pub struct PauseForm {
    /// `true` to pause, `false` to resume.
    paused: bool,
}

/// `POST /account/alerts/rules/{id}/pause` (`paused=true|false`).
pub async fn pause_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<PauseForm>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::update_rule(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiPath(id),
        ApiJson(RulePatch {
            rule: None,
            channels: None,
            paused: Some(form.paused),
        }),
    )
    .await;
    after(&web, &visitor, user, result, |Json(r)| {
        if r.paused {
            format!("Paused: {}.", r.description)
        } else {
            format!("Resumed: {}.", r.description)
        }
    })
    .await
}

/// `POST /account/alerts/rules/{id}/delete`.
pub async fn delete_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::delete_rule(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiPath(id),
    )
    .await;
    after(&web, &visitor, user, result, |_| {
        "The alert is deleted.".into()
    })
    .await
}

/// `POST /account/alerts/rules/{id}/test`: a test message to each of the rule's channels.
pub async fn test_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::account::Empty>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_alerts::test_rule(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiPath(id),
    )
    .await;
    after(&web, &visitor, user, result, |(_, Json(t))| {
        test_words(t.deliveries)
    })
    .await
}

// ---- live ----------------------------------------------------------------------------------

/// `GET /account/events`: the signed-in user's live alerts as Server-Sent Events (the session
/// cookie is the credential; `Last-Event-ID` replays what a reconnecting page missed). A 401,
/// not a redirect, without a session: an `EventSource` cannot follow one to a sign-in page.
pub async fn events(State(web): State<WebState>, visitor: Visitor, headers: HeaderMap) -> Response {
    let Some(user) = &visitor.user else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            "sign in to receive live alerts",
        )
            .into_response();
    };
    match api_alerts::live_stream(&web.app, &user.id, &headers).await {
        Ok(sse) => sse.into_response(),
        Err(e) => {
            let status = e.status();
            if status.is_server_error() {
                tracing::warn!(error = %e, "the live stream could not start");
            }
            (status, [(header::CACHE_CONTROL, "no-store")], view::say(&e)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_filled_in_form_is_a_rule_and_a_bad_one_a_sentence() {
        let draft = RuleDraft::from_fields(&fields(&[
            ("target", "area"),
            ("lat", "52.52"),
            ("lon", "13.4"),
            ("radius_km", "3"),
            ("measure", "pm25"),
            ("threshold", "unhealthy"),
            ("trigger", "forecast"),
            ("timezone", ""),
            ("quiet_start", "22:00"),
            ("quiet_end", "07:00"),
            ("label", " Home "),
            ("channel", "sub_a"),
            ("channel", "sub_b"),
        ]));
        assert_eq!(draft.channels, ["sub_a", "sub_b"]);
        let spec = draft.to_spec().unwrap();
        assert_eq!(
            spec.target,
            Target::Area {
                lat: 52.52,
                lon: 13.4,
                radius_km: 3.0
            }
        );
        assert_eq!(spec.measure, Measure::Pollutant(Parameter::Pm25));
        assert_eq!(spec.threshold, Category::Unhealthy);
        assert_eq!(spec.trigger, Trigger::Forecast { days_ahead: 1 });
        assert_eq!(spec.timezone, "UTC");
        assert_eq!(spec.label.as_deref(), Some("Home"));
        assert!(spec.quiet_hours.is_some());

        let mut bad = draft.clone();
        bad.lat = "north".into();
        assert!(bad.to_spec().unwrap_err().contains("latitude"));
        let mut bad = draft.clone();
        bad.quiet_end.clear();
        assert!(bad.to_spec().unwrap_err().contains("quiet hours"));
        let mut bad = draft.clone();
        bad.quiet_start = "25:99".into();
        assert!(bad.to_spec().unwrap_err().contains("not a time"));
        let mut bad = draft;
        bad.target = "station".into();
        assert_eq!(bad.to_spec().unwrap_err(), "Choose a station.");
        let defaults = RuleDraft::default();
        assert_eq!(defaults.threshold, "unhealthy_for_sensitive_groups");
    }

    #[test]
    fn a_stored_rule_fills_in_the_form_it_came_from_and_keeps_what_the_form_does_not_show() {
        let draft = RuleDraft::from_fields(&fields(&[
            ("target", "area"),
            ("lat", "52.52"),
            ("lon", "13.4"),
            ("radius_km", "2.5"),
            ("measure", "o3"),
            ("threshold", "very_unhealthy"),
            ("trigger", "forecast"),
            ("timezone", "Europe/Berlin"),
            ("quiet_start", "22:00"),
            ("quiet_end", "07:30"),
            ("label", "Home"),
            ("channel", "sub_a"),
        ]));
        let spec = draft.to_rule().unwrap();
        assert_eq!(RuleDraft::from_rule(&spec, &draft.channels), draft);
        let station = RuleSpec {
            target: Target::Station("s1".into()),
            ..spec.clone()
        };
        let back = RuleDraft::from_rule(&station, &[]);
        assert_eq!(
            (back.target.as_str(), back.station.as_str()),
            ("station", "s1")
        );
        assert_eq!(back.to_spec().unwrap(), station);
        assert_eq!(
            back.to_rule().unwrap_err(),
            "Choose at least one channel for the alerts (add one first if you have none)."
        );

        let stored = RuleSpec {
            trigger: Trigger::Measured {
                hold_minutes: 30,
                clear_minutes: 90,
                notify_clear: true,
                cooldown_minutes: 240,
            },
            digest_at: NaiveTime::from_hms_opt(8, 0, 0),
            ..station.clone()
        };
        let edited = RuleDraft::from_rule(&stored, &[]).to_spec().unwrap();
        assert_eq!(edited.trigger, Trigger::default());
        assert_eq!(keep_unshown(edited, &stored), stored);
        // A changed kind of trigger is the form's; a forecast keeps how far it looks ahead.
        assert_eq!(keep_unshown(spec.clone(), &stored).trigger, spec.trigger);
        let far = RuleSpec {
            trigger: Trigger::Forecast { days_ahead: 2 },
            ..spec.clone()
        };
        assert_eq!(keep_unshown(spec, &far).trigger, far.trigger);
    }
}
