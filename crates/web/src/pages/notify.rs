//! The pages the links in notification messages open, without signing in (the token in the
//! link is the proof): `/notify/confirm?token=…` confirms a pending channel (e-mail or
//! webhook), `/unsubscribe/{token}` removes a subscription. Both pages only ask: the confirm
//! page's button, and the unsubscribe page's (or a mail client's RFC 8058 one-click `POST` with
//! `List-Unsubscribe=One-Click`), do it, so a link scanner following a link changes nothing.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use ecocityhub_api::routes::alerts::ChannelOut;
use ecocityhub_notify::notifier::CONFIRM_TTL_DAYS;
use ecocityhub_notify::Notifier;
use serde::Deserialize;

use crate::error::{WebError, WebResult};
use crate::session::Visitor;
use crate::view::Layout;
use crate::WebState;

/// The notification layer, or a 404 page on a server without one.
pub fn notifier(web: &WebState) -> WebResult<&Arc<Notifier>> {
    web.app
        .notifier()
        .ok_or_else(|| WebError::NotFound("Notifications are not set up on this server.".into()))
}

/// A page that must not be kept by caches (its URL holds a token).
fn private_page(status: StatusCode, html: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// What a protocol is called on the pages.
pub fn protocol_name(protocol: &str) -> &'static str {
    match protocol {
        "email" => "E-mail",
        "webhook" => "Webhook",
        "webpush" => "Browser notifications",
        "live" => "This site, while open",
        _ => "Channel",
    }
}

// ---- confirm a channel ---------------------------------------------------------------------

/// Where the confirmation page is.
enum Confirm {
    /// The link looks like one of ours: ask (the store cannot tell what a token confirms
    /// without confirming it, so the page does not say which channel).
    Ask { token: String },
    /// Confirmed now: what the channel is and where it goes.
    Done {
        kind: &'static str,
        endpoint: String,
    },
    /// The link is unknown, used or expired.
    Invalid,
}

#[derive(Template)]
#[template(path = "notify/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    state: Confirm,
    ttl_days: i64,
}

fn confirm_page(web: &WebState, visitor: &Visitor, state: Confirm) -> WebResult<Response> {
    let (status, title) = match state {
        Confirm::Ask { .. } => (StatusCode::OK, "Confirm this channel"),
        Confirm::Done { .. } => (StatusCode::OK, "Channel confirmed"),
        Confirm::Invalid => (StatusCode::NOT_FOUND, "This link does not work"),
    };
    let page = ConfirmPage {
        layout: Layout::new(web, visitor, title),
        state,
        ttl_days: CONFIRM_TTL_DAYS,
    };
    Ok(private_page(status, page.render()?))
}

/// A token could be one of the notifier's (URL-safe base64 of a random value), so it is
/// worth a button; anything else is a broken link.
fn plausible_token(token: &str) -> bool {
    (20..=200).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /notify/confirm?token=…`: the link of a confirmation message. It only asks (mail
/// scanners and link previews fetch links): the page's button confirms.
pub async fn confirm_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<TokenQuery>,
) -> WebResult<Response> {
    notifier(&web)?;
    let token = q.token.as_deref().map(str::trim).unwrap_or_default();
    let state = if plausible_token(token) {
        Confirm::Ask {
            token: token.to_string(),
        }
    } else {
        Confirm::Invalid
    };
    confirm_page(&web, &visitor, state)
}

/// `POST /notify/confirm` (`token=…`, from the page's button): confirms the channel the link
/// was sent to. The token is the proof, so no session or CSRF token is asked for (as for
/// `POST /api/v1/notify/confirm`).
pub async fn confirm(
    State(web): State<WebState>,
    visitor: Visitor,
    body: Bytes,
) -> WebResult<Response> {
    let notifier = notifier(&web)?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    let confirmed = if plausible_token(token) {
        notifier.confirm(token).await.map_err(api_error)?
    } else {
        None
    };
    let state = match confirmed {
        Some(row) => {
            tracing::info!("a channel was confirmed through its link");
            let out = ChannelOut::from(&row);
            Confirm::Done {
                kind: protocol_name(&out.protocol),
                endpoint: out.endpoint,
            }
        }
        None => Confirm::Invalid,
    };
    confirm_page(&web, &visitor, state)
}

fn api_error(e: ecocityhub_notify::NotifyError) -> WebError {
    ecocityhub_api::ApiError::from(e).into()
}

// ---- unsubscribe ---------------------------------------------------------------------------

/// Where the unsubscribe page is.
enum Unsubscribe {
    /// The link is good and the subscription exists: ask.
    Ask { what: String },
    /// Done now.
    Done,
    /// The link is good but there is nothing (left) to remove.
    Gone,
    /// The link is not one of ours.
    Invalid,
}

#[derive(Template)]
#[template(path = "notify/unsubscribe.html")]
struct UnsubscribePage {
    layout: Layout,
    state: Unsubscribe,
    action: String,
}

fn unsubscribe_page(
    web: &WebState,
    visitor: &Visitor,
    token: &str,
    state: Unsubscribe,
) -> WebResult<Response> {
    let (status, title) = match state {
        Unsubscribe::Ask { .. } => (StatusCode::OK, "Unsubscribe"),
        Unsubscribe::Done => (StatusCode::OK, "You are unsubscribed"),
        Unsubscribe::Gone => (StatusCode::OK, "Already unsubscribed"),
        Unsubscribe::Invalid => (StatusCode::NOT_FOUND, "This link does not work"),
    };
    let page = UnsubscribePage {
        layout: Layout::new(web, visitor, title),
        state,
        action: format!("/unsubscribe/{}", crate::view::url_encode(token)),
    };
    Ok(private_page(status, page.render()?))
}

/// `GET /unsubscribe/{token}`: says what the link removes and asks (a GET changes nothing).
pub async fn unsubscribe_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(token): Path<String>,
) -> WebResult<Response> {
    let notifier = notifier(&web)?;
    let state = match notifier.unsubscribe.verify(&token) {
        None => Unsubscribe::Invalid,
        Some(id) => match web.app.store().subscription(&id).await? {
            None => Unsubscribe::Gone,
            Some(sub) => Unsubscribe::Ask {
                what: format!(
                    "{} notifications of “{}”",
                    protocol_name(&sub.protocol).to_lowercase(),
                    topic_name(&sub.topic_id)
                ),
            },
        },
    };
    unsubscribe_page(&web, &visitor, &token, state)
}

/// A topic id in words.
fn topic_name(topic: &str) -> String {
    match topic.split_once(':') {
        Some(("user", _)) => "your personal alerts".into(),
        Some(("station", s)) => format!("station {s}"),
        Some(("area", a)) => format!("the area {a}"),
        Some(("report", r)) => format!("report {r}"),
        _ => topic.replace('-', " "),
    }
}

/// `POST /unsubscribe/{token}`: removes the subscription. From the page's button (an HTML
/// answer) or a mail client's one-click request (`List-Unsubscribe=One-Click`, RFC 8058: a
/// plain 200, no redirect). The signed token is the proof, so no CSRF token is asked for.
pub async fn unsubscribe(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(token): Path<String>,
    body: Bytes,
) -> WebResult<Response> {
    let notifier = notifier(&web)?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let one_click = fields
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    let state = match notifier.unsubscribe.verify(&token) {
        None => Unsubscribe::Invalid,
        Some(_) => {
            if notifier.unsubscribe(&token).await.map_err(api_error)? {
                tracing::info!(one_click, "unsubscribed through a link");
                Unsubscribe::Done
            } else {
                Unsubscribe::Gone
            }
        }
    };
    if one_click {
        let (status, text) = match state {
            Unsubscribe::Invalid => (StatusCode::NOT_FOUND, "This unsubscribe link is not valid."),
            _ => (StatusCode::OK, "Unsubscribed."),
        };
        return Ok((
            status,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            text,
        )
            .into_response());
    }
    unsubscribe_page(&web, &visitor, &token, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_token_like_the_notifiers_gets_a_button() {
        assert!(plausible_token(&ecocityhub_notify::ids::token()));
        for bad in [
            "",
            "not-a-token",
            "a b c d e f g h i j k l m",
            &"x".repeat(201),
        ] {
            assert!(!plausible_token(bad), "{bad}");
        }
        assert!(!plausible_token("<script>alert(1)</script>-padding"));
    }
}
