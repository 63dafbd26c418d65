//! Sessions and CSRF protection of the web pages, on the identity layer.
//!
//! A web session *is* a sign-in of the user pool: signing in through a page (password or an
//! outside OIDC provider) makes the same refresh-token family the API's sign-in makes, and the
//! session cookie holds that opaque refresh token (HttpOnly, SameSite=Lax, `Secure` and
//! `__Host-` prefixed over HTTPS). A request's session is valid while its token is unused,
//! unrevoked and unexpired, so signing out, a password change or reset, and a refresh-token
//! theft detected by the API all end it. The user's groups are read from the store on each
//! request and handed to the same Cedar policies the API asks.
//!
//! Every form carries a CSRF token that must equal the one in the visitor's CSRF cookie
//! (double submit; a cross-site page can neither read the cookie nor set a `__Host-` one), and a
//! form posted from another origin is refused outright.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use chrono::Utc;
use ecocityhub_api::signed_in::SignedIn;
use ecocityhub_api::AppState;
use ecocityhub_identity::{secrets, Action, Principal, Resource, Role};
use ecocityhub_store::identity::User;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::error::{WebError, WebResult};
use crate::WebState;

/// The session cookie's name: `__Host-` prefixed when cookies are `Secure`.
pub fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-ecch-session"
    } else {
        "ecch-session"
    }
}

/// The CSRF cookie's name.
pub fn csrf_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-ecch-csrf"
    } else {
        "ecch-csrf"
    }
}

/// The cookie holding a pending "sign in with" attempt (state and PKCE verifier).
pub fn oauth_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-ecch-oauth"
    } else {
        "ecch-oauth"
    }
}

/// A cookie with the attributes every cookie of the site has.
pub fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build()
}

/// A cookie that removes `name`.
pub fn removal(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut c = cookie(name, String::new(), secure);
    c.make_removal();
    c
}

/// A signed-in user of a page request.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub roles: Vec<Role>,
    pub principal: Principal,
    /// The refresh-token family of this sign-in (signing out revokes it).
    pub family: String,
    /// The scopes the sign-in was granted.
    pub scope: String,
    pub user: User,
}

impl SessionUser {
    /// The caller as the API's handlers take it, to do what the page asks through them.
    pub fn signed_in(&self, app: &AppState) -> SignedIn {
        SignedIn::from_session(app, &self.user, &self.scope)
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Operators run stations and devices; admins may do everything operators may.
    pub fn is_operator(&self) -> bool {
        self.roles.contains(&Role::Operator) || self.is_admin()
    }

    /// A 403 page unless the policies allow `action`.
    pub fn authorize(&self, app: &AppState, action: Action, resource: &Resource) -> WebResult<()> {
        if app
            .identity()
            .authorizer
            .is_allowed(&self.principal, action, resource)
        {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "Your account may not do this. Ask an administrator if you need to.".into(),
            ))
        }
    }
}

/// Whoever asks for a page: maybe a signed-in user, always a CSRF token for its forms.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub user: Option<SessionUser>,
    pub csrf: String,
    /// The path asked for, to come back to after signing in.
    pub path: String,
}

impl Visitor {
    /// The user, or a redirect to the sign-in page (and back here afterwards).
    pub fn require(&self) -> WebResult<&SessionUser> {
        self.user.as_ref().ok_or_else(|| WebError::SignIn {
            next: self.path.clone(),
        })
    }
}

/// The CSRF token of this request (from its cookie, or new).
#[derive(Debug, Clone)]
struct CsrfToken(String);

/// The user a session token opens, if the session is still valid.
pub async fn session_user(app: &AppState, token: &str) -> WebResult<Option<SessionUser>> {
    let Some(stored) = app
        .store()
        .refresh_token(&secrets::digest(token.trim()))
        .await?
    else {
        return Ok(None);
    };
    if stored.revoked_at.is_some() || stored.used_at.is_some() || stored.expires_at < Utc::now() {
        return Ok(None);
    }
    let Some(user) = app.store().user(&stored.user_id).await? else {
        return Ok(None);
    };
    if !user.confirmed {
        return Ok(None);
    }
    Ok(Some(SessionUser {
        principal: Principal::User {
            id: user.id.clone(),
            roles: user.roles.clone(),
        },
        id: user.id.clone(),
        email: user.email.clone(),
        roles: user.roles.clone(),
        family: stored.family,
        scope: stored.scope,
        user,
    }))
}

impl FromRequestParts<WebState> for Visitor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, web: &WebState) -> Result<Self, WebError> {
        let secure = web.config.secure_cookies();
        let jar = CookieJar::from_headers(&parts.headers);
        let user = match jar.get(session_cookie(secure)) {
            Some(c) if !c.value().is_empty() => session_user(&web.app, c.value()).await?,
            _ => None,
        };
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Visitor { user, csrf, path })
    }
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Gives every page request a CSRF token: the one of its cookie, or a new one that the
/// response sets.
pub async fn ensure_csrf_cookie(
    State(web): State<WebState>,
    mut request: Request,
    next: Next,
) -> Response {
    let secure = web.config.secure_cookies();
    let existing = CookieJar::from_headers(request.headers())
        .get(csrf_cookie(secure))
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 32);
    let (token, new) = match existing {
        Some(t) => (t, false),
        None => (new_token(), true),
    };
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(request).await;
    if new {
        let c = cookie(csrf_cookie(secure), token, secure);
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The largest form a page accepts.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form posted from one of the site's own pages: same origin, with the visitor's CSRF token
/// in its `csrf` field; its fields deserialized into `T`.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<WebState> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, web: &WebState) -> Result<Self, WebError> {
        let (parts, body) = request.into_parts();
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        // Compared with the configured public origin only: the Host header is the client's
        // to choose (a DNS-rebinding page sends its own name there).
        let foreign_origin = parts
            .headers
            .get(header::ORIGIN)
            .is_some_and(|o| o.as_bytes() != web.config.origin().as_bytes());
        if cross_site || foreign_origin {
            return Err(WebError::Forbidden(
                "This form was sent from another site, so it was not accepted.".into(),
            ));
        }
        let expected = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| WebError::BadRequest("The form is too large.".into()))?;
        check_csrf(&bytes, &expected)?;
        let value = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| WebError::BadRequest(format!("The form could not be read: {e}.")))?;
        Ok(CsrfForm(value))
    }
}

fn check_csrf(body: &Bytes, expected: &str) -> WebResult<()> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let ok = !expected.is_empty()
        && sent.len() == expected.len()
        && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "This form has expired or did not come from this site. Reload the page and try again."
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_passes_only_with_the_cookie_token() {
        let token = new_token();
        let body = Bytes::from(format!("csrf={token}&email=a%40b.c"));
        assert!(check_csrf(&body, &token).is_ok());
        assert!(check_csrf(&body, &new_token()).is_err());
        assert!(check_csrf(&Bytes::from("email=a%40b.c"), &token).is_err());
        assert!(check_csrf(&Bytes::from("csrf="), "").is_err());
    }

    #[test]
    fn cookies_are_httponly_lax_and_secure_over_https() {
        let c = cookie(session_cookie(true), "v".into(), true).to_string();
        assert!(c.starts_with("__Host-ecch-session=v"));
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(c.contains("Path=/"));
        let plain = cookie(session_cookie(false), "v".into(), false).to_string();
        assert!(!plain.contains("Secure") && plain.contains("HttpOnly"));
    }
}
