//! "My alerts" (`/account/alerts`): a signed-in user's channels (e-mail, webhook, browser
//! notifications, this site while open) and alert rules (a station or an area, the AQI or a
//! pollutant's, a category threshold, time zone and quiet hours), with forms to add, pause,
//! resume, delete and test them; and `/account/events`, the live stream of the signed-in pages.
//! Every form goes through the API's handlers (`/api/v1/me/…`), so the checks and the messages
//! are the notification layer's own.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
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

fn choices(items: impl IntoIterator<Item = (String, String)>, selected: &str) -> Vec<Choice> {
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
    pub stations: Vec<Choice>,
    pub measures: Vec<Choice>,
    pub thresholds: Vec<Choice>,
    pub protocols: Vec<Choice>,
    pub draft: RuleDraft,
    pub channel_endpoint: String,
    /// A webhook's signing secret, shown once.
    pub new_secret: Option<String>,
    /// The VAPID public key browsers subscribe with, when Web Push is set up.
    pub push_key: Option<String>,
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
    let me = user.signed_in(&web.app);
    let Json(channels) = api_alerts::list_channels(State(web.app.clone()), me.clone())
        .await
        .map_err(WebError::from)?;
    let Json(rules) = api_alerts::list_rules(State(web.app.clone()), me)
        .await
        .map_err(WebError::from)?;
    let name_of = |id: &str| {
        channels
            .iter()
            .find(|c| c.id == id)
            .map(channel_words)
            .unwrap_or_else(|| "a deleted channel".into())
    };
    let rules: Vec<RuleRow> = rules.iter().map(|r| rule_row(r, &name_of)).collect();
    // A new rule goes to every confirmed channel unless the visitor chose.
    let ticked = |c: &ChannelOut| {
        if draft.channels.is_empty() {
            c.status == "confirmed"
        } else {
            draft.channels.contains(&c.id)
        }
    };
    let channels: Vec<ChannelRow> = channels
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
        .collect();
    let mut stations: Vec<(String, String)> = web
        .app
        .store()
        .stations()
        .await?
        .into_iter()
        .filter(|s| s.active)
        .map(|s| (s.id.to_string(), format!("{} ({})", s.name, s.id)))
        .collect();
    stations.sort_by(|a, b| a.1.cmp(&b.1));
    let mut measures = vec![("aqi".to_string(), "AQI (the highest pollutant)".to_string())];
    measures.extend(
        Parameter::ALL
            .iter()
            .filter(|p| Table::for_charts(**p).is_some())
            .map(|p| (p.as_str().to_string(), format!("{} AQI", p.display_name()))),
    );
    let thresholds = Category::UPPER_BOUNDS
        .iter()
        .skip(1)
        .map(|(c, _)| (category_key(*c), format!("{} or worse", c.label())));
    let protocol = if channel.protocol.is_empty() {
        "email"
    } else {
        channel.protocol.as_str()
    };
    let protocols = [
        ("email", "E-mail"),
        ("webhook", "Webhook (an https URL)"),
        ("live", "This site, while it is open"),
    ]
    .map(|(v, l)| (v.to_string(), l.to_string()));
    Ok(AlertsPage {
        layout,
        available: web.app.notifier().is_some() && web.app.rules().is_some(),
        channels,
        rules,
        stations: choices(stations, &draft.station),
        measures: choices(measures, &draft.measure),
        thresholds: choices(thresholds, &draft.threshold),
        protocols: choices(protocols, protocol),
        channel_endpoint: if channel.protocol.is_empty() {
            user.email.clone()
        } else {
            channel.endpoint
        },
        draft,
        new_secret,
        push_key: web
            .app
            .notifier()
            .and_then(|n| n.vapid_public_key())
            .map(str::to_string),
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

/// `GET /account/alerts`.
pub async fn alerts(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    let user = visitor.require()?;
    let page = alerts_view(
        &web,
        user,
        layout(&web, &visitor),
        RuleDraft::default(),
        ChannelDraft::default(),
        None,
    )
    .await?;
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

/// `POST /account/alerts/rules`: adds a rule; a mistake is said on the page, with the form as
/// it was filled in.
pub async fn add_rule(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let draft = RuleDraft::from_fields(&fields);
    let spec = draft.to_spec();
    let result = match spec {
        Err(why) => Err((StatusCode::BAD_REQUEST, why)),
        Ok(_) if draft.channels.is_empty() => Err((
            StatusCode::BAD_REQUEST,
            "Choose at least one channel for the alerts (add one first if you have none).".into(),
        )),
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
        .map_err(|e| {
            if e.status().is_server_error() {
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            } else {
                (status_of(&e), say(&e))
            }
        }),
    };
    match result {
        Ok((_, Json(rule))) => {
            let layout =
                layout(&web, &visitor).flash(format!("The alert is saved: {}.", rule.description));
            let page = alerts_view(
                &web,
                user,
                layout,
                RuleDraft::default(),
                ChannelDraft::default(),
                None,
            )
            .await?;
            answer(StatusCode::OK, page)
        }
        Err((status, detail)) if status.is_server_error() => Err(WebError::Internal(detail)),
        Err((status, why)) => {
            let page = alerts_view(
                &web,
                user,
                layout(&web, &visitor).error(why),
                draft,
                ChannelDraft::default(),
                None,
            )
            .await?;
            answer(status, page)
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
}
