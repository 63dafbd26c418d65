//! `/api/v1/me/channels`, `/api/v1/me/alert-rules`, `/api/v1/me/events` and
//! `/api/v1/admin/deliveries`: a citizen's channels (e-mail, webhook, Web Push, live page) and
//! alert rules, the live event stream of the signed-in pages, and the admins' view of failed
//! deliveries. Handlers are thin: the notification layer (`ecocityhub-notify`) checks and does.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use ecocityhub_identity::{Action, Resource};
use ecocityhub_notify::channels::webpush::SubscriptionKeys;
use ecocityhub_notify::rules::RuleSpec;
use ecocityhub_notify::{Notifier, Protocol, Publisher, RuleEngine, SubscribeRequest, Topic};
use ecocityhub_store::notify::{AlertRuleRow, DeliveryRow, DeliveryStatus, SubscriptionRow};
use futures::stream::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::signed_in::SignedIn;
use crate::state::AppState;

/// How many channels and rules one person may keep.
const MAX_PER_USER: usize = 50;

type Problem = crate::error::Problem;

fn notifier(app: &AppState) -> ApiResult<&Arc<Notifier>> {
    app.notifier()
        .ok_or_else(|| ApiError::Unavailable("notifications are not set up on this server".into()))
}

fn engine(app: &AppState) -> ApiResult<&Arc<RuleEngine>> {
    app.rules()
        .ok_or_else(|| ApiError::Unavailable("alert rules are not set up on this server".into()))
}

/// The signed-in user may manage their own account's channels and rules.
fn own(app: &AppState, me: &SignedIn, action: Action) -> ApiResult<()> {
    me.authorize(app, action, &Resource::User(me.user_id().into()))
}

/// A channel as its owner sees it (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelOut {
    pub id: String,
    /// `email`, `webhook`, `webpush` or `live`.
    pub protocol: String,
    /// The address or URL (for `live`, empty).
    pub endpoint: String,
    /// `pending` until the link sent to it is followed (e-mail and webhooks), then `confirmed`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub filter_policy: Option<Value>,
    pub created_at: DateTime<Utc>,
}

impl From<&SubscriptionRow> for ChannelOut {
    fn from(s: &SubscriptionRow) -> Self {
        ChannelOut {
            id: s.id.clone(),
            protocol: s.protocol.clone(),
            endpoint: if s.protocol == Protocol::Live.as_str() {
                String::new()
            } else {
                s.endpoint.clone()
            },
            status: s.status.clone(),
            filter_policy: s
                .filter_policy
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            created_at: s.created_at,
        }
    }
}

/// A channel to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    /// `email`, `webhook` (an https URL), `webpush` (a browser's push subscription) or `live`.
    pub protocol: String,
    /// The e-mail address, webhook URL or push endpoint; not for `live`.
    #[serde(default)]
    pub endpoint: String,
    /// `webpush`: the browser's `p256dh` and `auth` keys.
    #[schema(value_type = Option<Object>)]
    pub keys: Option<SubscriptionKeys>,
    /// An SNS filter policy on message attributes (`station`, `parameter`, `aqi`, `category`,
    /// `type`…); without one, every message of the rules that use this channel.
    #[schema(value_type = Option<Object>)]
    pub filter_policy: Option<Value>,
}

/// A channel just added.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelCreated {
    pub channel: ChannelOut,
    /// A webhook's signing secret (`whsec_…`, Standard Webhooks): shown this once.
    pub secret: Option<String>,
    /// A confirmation message was sent to the endpoint; the channel stays `pending` until it
    /// is followed (within 3 days).
    pub confirmation_sent: bool,
}

/// The personal topic a user's channels belong to.
fn user_topic(user_id: &str) -> Topic {
    Topic {
        id: format!("user:{user_id}"),
        kind: ecocityhub_notify::TopicKind::AccountMail,
        name: "Personal alerts".into(),
    }
}

/// The signed-in user's channels.
#[utoipa::path(get, path = "/api/v1/me/channels", tag = "alerts", security(("bearer_jwt" = [])),
    responses((status = 200, body = [ChannelOut])))]
pub async fn list_channels(
    State(app): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<ChannelOut>>> {
    own(&app, &me, Action::ReadAccount)?;
    let subs = app.store().subscriptions_of(me.user_id()).await?;
    Ok(Json(subs.iter().map(ChannelOut::from).collect()))
}

/// Adds a channel. E-mail to the account's own confirmed address, Web Push and live pages are
/// confirmed at once; other e-mail addresses and webhooks get a confirmation link first.
#[utoipa::path(post, path = "/api/v1/me/channels", tag = "alerts", security(("bearer_jwt" = [])),
    request_body = ChannelIn,
    responses((status = 201, body = ChannelCreated),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_channel(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(input): ApiJson<ChannelIn>,
) -> ApiResult<(StatusCode, Json<ChannelCreated>)> {
    own(&app, &me, Action::UpdateAccount)?;
    let notifier = notifier(&app)?;
    let protocol = Protocol::parse(&input.protocol).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown protocol {:?}: use email, webhook, webpush or live",
            input.protocol
        ))
    })?;
    if app.store().subscriptions_of(me.user_id()).await?.len() >= MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "you have {MAX_PER_USER} channels already; delete one first"
        )));
    }
    let account = app.store().user(me.user_id()).await?;
    let endpoint_verified = protocol == Protocol::Email
        && account
            .is_some_and(|u| u.confirmed && u.email.eq_ignore_ascii_case(input.endpoint.trim()));
    let made = notifier
        .subscribe(&SubscribeRequest {
            topic: user_topic(me.user_id()),
            owner: Some(me.user_id().into()),
            protocol,
            endpoint: input.endpoint,
            filter_policy: input.filter_policy,
            push_keys: input.keys,
            endpoint_verified,
        })
        .await?;
    let out = ChannelCreated {
        channel: ChannelOut::from(&made.subscription),
        secret: made.secret,
        confirmation_sent: made.confirmation_sent,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// One of the signed-in user's channels, or a 404 (also for someone else's).
async fn my_channel(app: &AppState, me: &SignedIn, id: &str) -> ApiResult<SubscriptionRow> {
    match app.store().subscription(id).await? {
        Some(s) if s.owner.as_deref() == Some(me.user_id()) => Ok(s),
        _ => Err(ApiError::NotFound(format!(
            "you have no channel {}",
            ecocityhub_identity::account::echo(id)
        ))),
    }
}

/// Deletes a channel (rules that used it keep their other channels).
#[utoipa::path(delete, path = "/api/v1/me/channels/{id}", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_channel(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    own(&app, &me, Action::UpdateAccount)?;
    my_channel(&app, &me, &id).await?;
    app.store().delete_subscription(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a "send a test" queued.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestSent {
    pub message_id: String,
    /// Deliveries queued (0 when the channels are not confirmed yet).
    pub deliveries: u64,
}

/// Sends a test message to one channel now.
#[utoipa::path(post, path = "/api/v1/me/channels/{id}/test", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = TestSent), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn test_channel(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    own(&app, &me, Action::UpdateAccount)?;
    let channel = my_channel(&app, &me, &id).await?;
    let receipt = notifier(&app)?.send_test(&channel).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            message_id: receipt.message_id,
            deliveries: receipt.deliveries,
        }),
    ))
}

/// A webhook's new signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewSecret {
    /// Shown this once; the previous secret keeps signing for 24 hours beside it.
    pub secret: String,
}

/// Rotates a webhook channel's signing secret.
#[utoipa::path(post, path = "/api/v1/me/channels/{id}/rotate-secret", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = NewSecret), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_channel_secret(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<NewSecret>> {
    own(&app, &me, Action::UpdateAccount)?;
    my_channel(&app, &me, &id).await?;
    let secret = notifier(&app)?.rotate_secret(&id).await?;
    Ok(Json(NewSecret { secret }))
}

/// An alert rule as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleOut {
    pub id: String,
    /// What the rule watches and when it fires (see `RuleIn.rule`).
    #[schema(value_type = Object)]
    pub rule: Value,
    /// In words, as messages name it.
    pub description: String,
    /// The channel ids it sends to.
    pub channels: Vec<String>,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RuleOut {
    fn of(row: &AlertRuleRow) -> ApiResult<RuleOut> {
        let spec: RuleSpec = serde_json::from_str(&row.spec)
            .map_err(|e| ApiError::Internal(format!("rule {}: {e}", row.id)))?;
        Ok(RuleOut {
            id: row.id.clone(),
            rule: serde_json::to_value(&spec).expect("plain struct"),
            description: spec.describe(),
            channels: row.channels.clone(),
            paused: row.paused,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A rule to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    /// `{"target": {"station": "ID"} | {"area": {"lat", "lon", "radius_km"}}, "measure": "aqi" |
    /// {"pollutant": "pm25"}, "threshold": "unhealthy_for_sensitive_groups", "trigger":
    /// {"measured": {"hold_minutes": 60, "clear_minutes": 60, "notify_clear": false,
    /// "cooldown_minutes": 180}} | {"forecast": {"days_ahead": 1}}, "timezone": "Europe/London",
    /// "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_at": "08:00", "label": "Home"}`
    #[schema(value_type = Object)]
    pub rule: RuleSpec,
    /// Channel ids (the caller's own) the rule sends to.
    pub channels: Vec<String>,
    #[serde(default)]
    pub paused: bool,
}

/// The signed-in user's alert rules.
#[utoipa::path(get, path = "/api/v1/me/alert-rules", tag = "alerts", security(("bearer_jwt" = [])),
    responses((status = 200, body = [RuleOut])))]
pub async fn list_rules(
    State(app): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<RuleOut>>> {
    own(&app, &me, Action::ReadAccount)?;
    let rows = app.store().rules_of(me.user_id()).await?;
    Ok(Json(
        rows.iter().map(RuleOut::of).collect::<ApiResult<_>>()?,
    ))
}

/// Makes an alert rule (checked: a known station, a radius within 100 km, a real time zone,
/// the caller's own channels).
#[utoipa::path(post, path = "/api/v1/me/alert-rules", tag = "alerts", security(("bearer_jwt" = [])),
    request_body = RuleIn,
    responses((status = 201, body = RuleOut),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_rule(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(input): ApiJson<RuleIn>,
) -> ApiResult<(StatusCode, Json<RuleOut>)> {
    own(&app, &me, Action::UpdateAccount)?;
    let engine = engine(&app)?;
    engine
        .check_rule(me.user_id(), &input.rule, &input.channels)
        .await?;
    if app.store().rules_of(me.user_id()).await?.len() >= MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "you have {MAX_PER_USER} alert rules already; delete one first"
        )));
    }
    let now = Utc::now();
    let row = AlertRuleRow {
        id: ecocityhub_notify::ids::new_id("rule_"),
        user_id: me.user_id().into(),
        spec: serde_json::to_string(&input.rule).expect("plain struct"),
        channels: input.channels,
        paused: input.paused,
        state: "{}".into(),
        created_at: now,
        updated_at: now,
    };
    app.store().insert_rule(&row).await?;
    engine.reload().await?;
    Ok((StatusCode::CREATED, Json(RuleOut::of(&row)?)))
}

/// What may change about a rule.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[schema(value_type = Option<Object>)]
    pub rule: Option<RuleSpec>,
    pub channels: Option<Vec<String>>,
    /// Paused rules are not evaluated; resuming starts from the current air.
    pub paused: Option<bool>,
}

async fn my_rule(app: &AppState, me: &SignedIn, id: &str) -> ApiResult<AlertRuleRow> {
    match app.store().rule(id).await? {
        Some(r) if r.user_id == me.user_id() => Ok(r),
        _ => Err(ApiError::NotFound(format!(
            "you have no alert rule {}",
            ecocityhub_identity::account::echo(id)
        ))),
    }
}

/// Changes, pauses or resumes a rule. A changed condition starts a new evaluation.
#[utoipa::path(patch, path = "/api/v1/me/alert-rules/{id}", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)), request_body = RulePatch,
    responses((status = 200, body = RuleOut),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_rule(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<RulePatch>,
) -> ApiResult<Json<RuleOut>> {
    own(&app, &me, Action::UpdateAccount)?;
    let engine = engine(&app)?;
    let mut row = my_rule(&app, &me, &id).await?;
    let spec: RuleSpec = match patch.rule {
        Some(spec) => {
            row.state = "{}".into();
            spec
        }
        None => serde_json::from_str(&row.spec)
            .map_err(|e| ApiError::Internal(format!("rule {id}: {e}")))?,
    };
    let channels = patch.channels.unwrap_or_else(|| row.channels.clone());
    engine.check_rule(me.user_id(), &spec, &channels).await?;
    row.spec = serde_json::to_string(&spec).expect("plain struct");
    row.channels = channels;
    row.paused = patch.paused.unwrap_or(row.paused);
    row.updated_at = Utc::now();
    app.store().update_rule(&row).await?;
    engine.reload().await?;
    Ok(Json(RuleOut::of(&row)?))
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/api/v1/me/alert-rules/{id}", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_rule(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    own(&app, &me, Action::UpdateAccount)?;
    let engine = engine(&app)?;
    my_rule(&app, &me, &id).await?;
    app.store().delete_rule(&id).await?;
    engine.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test message to each of a rule's channels now.
#[utoipa::path(post, path = "/api/v1/me/alert-rules/{id}/test", tag = "alerts", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = TestSent), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn test_rule(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    own(&app, &me, Action::UpdateAccount)?;
    let row = my_rule(&app, &me, &id).await?;
    let receipt = engine(&app)?.send_test(&row).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            message_id: receipt.message_id,
            deliveries: receipt.deliveries,
        }),
    ))
}

/// The live events of the signed-in user (`text/event-stream`): the messages the user's
/// `live` channels receive, each with its delivery id as the event id. A client that
/// reconnects with `Last-Event-ID` first gets what it missed.
#[utoipa::path(get, path = "/api/v1/me/events", tag = "alerts", security(("bearer_jwt" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, description = "The last event id seen")),
    responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream")))]
pub async fn events(
    State(app): State<AppState>,
    me: SignedIn,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    own(&app, &me, Action::ReadAccount)?;
    live_stream(&app, me.user_id(), &headers).await
}

/// The SSE answer for one user, shared by the API and the web pages (session cookie).
pub async fn live_stream(
    app: &AppState,
    user_id: &str,
    headers: &HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?,
        ),
    };
    let notifier = notifier(app)?;
    let store: Arc<dyn ecocityhub_store::NotifyStore> = app.store_arc();
    let stream = notifier.live.stream(store, user_id, last).await?;
    let events = stream.map(|e| {
        Ok(Event::default()
            .id(e.id.to_string())
            .event(e.kind)
            .data(e.data))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A delivery as an admin sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    pub id: i64,
    /// Stable across retries and re-drives; receivers dedupe by it.
    pub message_id: String,
    pub topic: String,
    pub subject: String,
    pub protocol: String,
    pub endpoint: String,
    pub user_id: Option<String>,
    /// `pending`, `delivered`, `dead` or `discarded`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&DeliveryRow> for DeliveryOut {
    fn from(d: &DeliveryRow) -> Self {
        DeliveryOut {
            id: d.id,
            message_id: d.message_id.clone(),
            topic: d.topic_id.clone(),
            subject: d.subject.clone(),
            protocol: d.protocol.clone(),
            endpoint: d.endpoint.clone(),
            user_id: d.user_id.clone(),
            status: d.status.as_str().into(),
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| DateTime::from_timestamp_millis(d.next_attempt_ms))
                .flatten(),
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            finished_at: d.finished_at,
        }
    }
}

/// Which deliveries to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered`, `dead` (the default) or `discarded`; `all` for every one.
    pub status: Option<String>,
    /// Only deliveries with a smaller id (the last id of the previous page).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<u32>,
}

/// Deliveries, newest first: by default the dead letters, which an admin may re-drive.
#[utoipa::path(get, path = "/api/v1/admin/deliveries", tag = "admin", security(("bearer_jwt" = [])),
    params(DeliveryQuery),
    responses((status = 200, body = [DeliveryOut]),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    me: SignedIn,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    me.authorize(&app, Action::ManageNotifications, &Resource::System)?;
    let status = match q.status.as_deref().unwrap_or("dead") {
        "all" => None,
        s => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status {:?}: use pending, delivered, dead, discarded or all",
                ecocityhub_identity::account::echo(s)
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let rows = app.store().deliveries(status, q.before, limit).await?;
    Ok(Json(rows.iter().map(DeliveryOut::from).collect()))
}

/// How many dead letters were made due again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Redriven {
    pub redriven: u64,
}

/// Makes one dead letter due again (same message id).
#[utoipa::path(post, path = "/api/v1/admin/deliveries/{id}/redrive", tag = "admin", security(("bearer_jwt" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Redriven),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn redrive_delivery(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Redriven>> {
    me.authorize(&app, Action::ManageNotifications, &Resource::System)?;
    if !notifier(&app)?.redrive(id).await? {
        return Err(ApiError::Conflict(format!(
            "delivery {id} is not a dead letter"
        )));
    }
    Ok(Json(Redriven { redriven: 1 }))
}

/// Makes every dead letter due again.
#[utoipa::path(post, path = "/api/v1/admin/deliveries/redrive", tag = "admin", security(("bearer_jwt" = [])),
    responses((status = 200, body = Redriven), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn redrive_all(State(app): State<AppState>, me: SignedIn) -> ApiResult<Json<Redriven>> {
    me.authorize(&app, Action::ManageNotifications, &Resource::System)?;
    let redriven = notifier(&app)?.redrive_all().await?;
    Ok(Json(Redriven { redriven }))
}

/// A confirmation link's token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmIn {
    pub token: String,
}

/// Confirms a pending channel by the token of the link sent to it (no sign-in: the token is
/// the proof). Webhook receivers may call this with the token from the confirmation event.
#[utoipa::path(post, path = "/api/v1/notify/confirm", tag = "alerts", request_body = ConfirmIn,
    responses((status = 200, body = ChannelOut),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn confirm(
    State(app): State<AppState>,
    ApiJson(input): ApiJson<ConfirmIn>,
) -> ApiResult<Json<ChannelOut>> {
    match notifier(&app)?.confirm(input.token.trim()).await? {
        Some(s) => Ok(Json(ChannelOut::from(&s))),
        None => Err(ApiError::NotFound(
            "the confirmation link is unknown, used or expired (links last 3 days); add the channel again".into(),
        )),
    }
}
