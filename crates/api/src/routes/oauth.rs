//! The OpenID Connect authorization-code flow with PKCE (S256), for browser apps and standard
//! OIDC clients: `GET /oauth2/authorize` shows a sign-in form, `POST /oauth2/authorize` checks
//! it and sends the browser back with a one-minute, single-use code, `POST /oauth2/token`
//! exchanges the code (with the PKCE verifier) or a refresh token for tokens. The token
//! endpoint answers errors the way RFC 6749 says (`{"error": …}`), which OIDC clients expect.
//! `identity_provider=NAME` on the authorization request signs in through an outside provider
//! instead (`routes::federation`); the client gets a code of ours either way.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use ecocityhub_identity::account::echo;
use ecocityhub_identity::secrets;
use ecocityhub_identity::tokens::scopes;
use ecocityhub_store::identity::AuthCode;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, ClientIp};
use crate::routes::auth::{check_credentials, rotate_refresh_token, tokens_for};
use crate::state::AppState;

/// The parameters of an authorization request (query of the GET, hidden fields of the POST).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    /// `code`
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// BASE64URL(SHA-256(code_verifier))
    pub code_challenge: Option<String>,
    /// `S256`
    pub code_challenge_method: Option<String>,
    /// Sign in through this outside OIDC provider (a configured name, see
    /// `GET /api/v1/auth/providers`) instead of the form, as with Cognito's hosted UI.
    pub identity_provider: Option<String>,
}

/// The sign-in form's fields: the request's parameters plus the credentials and the form's
/// CSRF token.
#[derive(Deserialize)]
pub struct AuthorizeForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub csrf: String,
}

/// Is `uri` a redirect URI the client may use? It is parsed as a URL, never compared as text:
/// a registered URI matches exactly; otherwise only a loopback URI as RFC 8252 §7.3 has it —
/// scheme `http`, host exactly `127.0.0.1` or `[::1]`, any port, no user-info. (`localhost` is
/// not accepted: §8.3, it may resolve elsewhere.) No URI with a fragment, whitespace or control
/// characters is accepted (RFC 6749 §3.1.2).
pub fn redirect_allowed(registered: &[String], uri: &str) -> bool {
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() {
        return false;
    }
    if registered.iter().any(|r| r == uri) {
        return true;
    }
    let loopback_host = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        _ => false,
    };
    // The host must also be written as parsed ("127.1" and "0x7f.0.0.1" parse as 127.0.0.1).
    let written_as_parsed = url.host_str().is_some_and(|host| {
        uri.strip_prefix("http://")
            .and_then(|rest| rest.strip_prefix(host))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
    });
    url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && loopback_host
        && written_as_parsed
}

/// Checks what must be right before anything is sent back to `redirect_uri`; errors here are
/// shown, never redirected (the URI is not trusted yet).
pub(crate) fn checked_redirect(app: &AppState, p: &AuthorizeParams) -> ApiResult<String> {
    if p.client_id.as_deref() != Some(app.identity().config.tokens.client_id.as_str()) {
        return Err(ApiError::BadRequest("unknown client_id".into()));
    }
    let uri = p
        .redirect_uri
        .clone()
        .ok_or_else(|| ApiError::BadRequest("redirect_uri is required".into()))?;
    if !redirect_allowed(&app.identity().config.redirect_uris, &uri) {
        return Err(ApiError::BadRequest(format!(
            "redirect_uri {:?} is not registered for this client (loopback clients use \
             http://127.0.0.1:PORT/… or http://[::1]:PORT/…)",
            echo(&uri)
        )));
    }
    Ok(uri)
}

/// The rest of the request's checks, as an OAuth error code and description.
fn request_error(p: &AuthorizeParams) -> Option<(&'static str, &'static str)> {
    if p.response_type.as_deref() != Some("code") {
        return Some((
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if p.code_challenge.as_deref().is_none_or(|c| c.len() < 43)
        || p.code_challenge_method.as_deref() != Some("S256")
    {
        return Some((
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    }
    if !p
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .any(|s| s == "openid")
    {
        return Some(("invalid_scope", "the scope must include openid"));
    }
    None
}

pub(crate) fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = uri.to_string();
    for (i, (k, v)) in pairs.iter().enumerate() {
        url.push(if i == 0 && !uri.contains('?') {
            '?'
        } else {
            '&'
        });
        url.push_str(k);
        url.push('=');
        url.push_str(&urlencode(v));
    }
    url
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn redirect(to: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The request's parameters that are set, as name/value pairs.
fn params_of(p: &AuthorizeParams) -> Vec<(&'static str, &str)> {
    [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("nonce", &p.nonce),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
    .collect()
}

/// The sign-in page, carrying the request's parameters in hidden fields, with a link for each
/// outside provider.
fn form_page(p: &AuthorizeParams, csrf: &str, error: Option<&str>, providers: &[&str]) -> String {
    let hidden: String = params_of(p)
        .iter()
        .map(|(name, v)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let others: String = providers
        .iter()
        .map(|name| {
            let mut pairs: Vec<(&str, &str)> = params_of(p);
            pairs.push(("identity_provider", name));
            format!(
                "<li><a href=\"{}\">Sign in with {}</a></li>",
                escape(&with_query("/oauth2/authorize", &pairs)),
                escape(name)
            )
        })
        .collect();
    let others = if others.is_empty() {
        others
    } else {
        format!("<nav aria-label=\"Other ways to sign in\"><ul>{others}</ul></nav>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Sign in · EcoCityHub</title></head><body><main><h1>Sign in to EcoCityHub</h1>{error}\
         <form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>E-mail <input type=\"email\" name=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>{others}</main></body></html>"
    )
}

/// Starts the code flow: shows the sign-in form, or with `identity_provider` sends the browser
/// to that outside provider (it comes back through `/oauth2/idpresponse`).
#[utoipa::path(get, path = "/oauth2/authorize", tag = "auth", params(AuthorizeParams),
    responses((status = 200, description = "The sign-in form (HTML)"),
              (status = 303, description = "Back to the client with an error, or on to the outside identity provider"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn authorize_form(
    State(app): State<AppState>,
    ApiQuery(p): ApiQuery<AuthorizeParams>,
) -> ApiResult<Response> {
    let uri = checked_redirect(&app, &p)?;
    if let Some((error, description)) = request_error(&p) {
        let mut pairs = vec![("error", error), ("error_description", description)];
        if let Some(state) = p.state.as_deref() {
            pairs.push(("state", state));
        }
        return Ok(redirect(with_query(&uri, &pairs)));
    }
    if let Some(name) = p.identity_provider.as_deref() {
        return crate::routes::federation::start(&app, &p, uri, name).await;
    }
    let csrf = secrets::token();
    let page = Html(form_page(&p, &csrf, None, &provider_names(&app)));
    let mut response = page_response(&app, &uri, StatusCode::OK, page);
    let cookie = format!(
        "{}={csrf}; Path=/; HttpOnly; SameSite=Strict{}",
        csrf_cookie(&app),
        if secure(&app) { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Is the service reached over HTTPS (its issuer)?
fn secure(app: &AppState) -> bool {
    app.identity().config.tokens.issuer.starts_with("https://")
}

/// The cookie holding the sign-in form's CSRF token (double submit).
fn csrf_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-ecch-authorize-csrf"
    } else {
        "ecch-authorize-csrf"
    }
}

/// The sign-in page with the site's security headers: no framing, no sniffing, no inline code,
/// and forms that may only post here and be redirected on to the client's own origin.
fn page_response(
    app: &AppState,
    redirect_uri: &str,
    status: StatusCode,
    page: Html<String>,
) -> Response {
    let client_origin = url::Url::parse(redirect_uri)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {client_origin}; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    );
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], page).into_response();
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if secure(app) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Refuses a sign-in form that did not come from the page this service served: a foreign
/// `Origin` (compared with the issuer's origin only, never the request's Host), a cross-site
/// fetch, or a CSRF token that differs from the form's cookie.
fn check_form_origin(app: &AppState, headers: &HeaderMap, sent_token: &str) -> ApiResult<()> {
    let own_origin = url::Url::parse(&app.identity().config.tokens.issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let foreign = headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() != own_origin.as_bytes());
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if foreign || cross_site {
        return Err(ApiError::Forbidden(
            "this sign-in form was sent from another site, so it was not accepted".into(),
        ));
    }
    let name = csrf_cookie(app);
    let expected = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let matches = !expected.is_empty()
        && expected.len() == sent_token.len()
        && bool::from(expected.as_bytes().ct_eq(sent_token.as_bytes()));
    if !matches {
        return Err(ApiError::BadRequest(
            "this sign-in form has expired or did not come from this site; go back to the \
             application and start signing in again"
                .into(),
        ));
    }
    Ok(())
}

fn provider_names(app: &AppState) -> Vec<&str> {
    app.identity().federation.names().collect()
}

/// The client's request that a code answers, as checked by [`checked_redirect`].
pub(crate) struct ClientRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub code_challenge: &'a str,
    /// The scopes granted: the supported ones among those asked for.
    pub scope: &'a str,
}

/// Issues a one-minute, single-use code for `user_id` and sends the browser back to the client.
pub(crate) async fn redirect_with_code(
    app: &AppState,
    request: &ClientRequest<'_>,
    user_id: &str,
) -> ApiResult<Response> {
    let code = secrets::token();
    app.store()
        .insert_auth_code(&AuthCode {
            code_hash: secrets::digest(&code),
            client_id: request.client_id.to_string(),
            redirect_uri: request.redirect_uri.to_string(),
            code_challenge: request.code_challenge.to_string(),
            nonce: request.nonce.map(str::to_string),
            user_id: user_id.to_string(),
            expires_at: Utc::now() + chrono::Duration::seconds(60),
            scope: request.scope.to_string(),
        })
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = request.state {
        pairs.push(("state", state));
    }
    Ok(redirect(with_query(request.redirect_uri, &pairs)))
}

/// Checks the form; sends the browser back to the client with a code.
#[utoipa::path(post, path = "/oauth2/authorize", tag = "auth",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "The sign-in form: the authorization request's parameters (as for GET), `email`, `password` and the form's `csrf` token"),
    responses((status = 303, description = "Back to the client with a code"),
              (status = 400, description = "The request or the form's token is not valid (problem+json)", body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 401, description = "Wrong credentials: the form again (HTML)"),
              (status = 403, description = "A form from another site (problem+json), or an unconfirmed account (the form again)", body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 429, description = "Too many attempts: the form again (HTML)"),
              (status = 503, description = "Busy hashing passwords (problem+json)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn authorize_submit(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<AuthorizeForm>, FormRejection>,
) -> ApiResult<Response> {
    let Form(form) = form.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_form_origin(&app, &headers, &form.csrf)?;
    let p = form.params;
    let uri = checked_redirect(&app, &p)?;
    if let Some((error, _)) = request_error(&p) {
        return Err(ApiError::BadRequest(format!(
            "the authorization request is not valid ({error})"
        )));
    }
    let user = match check_credentials(&app, ip, &form.email, form.password).await {
        Ok(user) => user,
        Err(
            e @ (ApiError::Unauthorized { .. }
            | ApiError::Forbidden(_)
            | ApiError::TooManyRequests(_)
            | ApiError::BadRequest(_)),
        ) => {
            let page = Html(form_page(
                &p,
                &form.csrf,
                Some(&e.to_string()),
                &provider_names(&app),
            ));
            return Ok(page_response(&app, &uri, e.status(), page));
        }
        Err(e) => return Err(e),
    };
    let granted = scopes::grant(p.scope.as_deref().unwrap_or_default());
    let request = ClientRequest {
        client_id: p.client_id.as_deref().unwrap_or_default(),
        redirect_uri: &uri,
        state: p.state.as_deref(),
        nonce: p.nonce.as_deref(),
        code_challenge: p.code_challenge.as_deref().unwrap_or_default(),
        scope: &granted,
    };
    redirect_with_code(&app, &request, &user.id).await
}

/// A token request (form-encoded, RFC 6749).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`
    pub grant_type: String,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Exchanges a code (with its PKCE verifier) or a refresh token for tokens.
#[utoipa::path(post, path = "/oauth2/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = crate::routes::auth::TokenSet), (status = 400, description = "RFC 6749 error")))]
pub async fn token(
    State(app): State<AppState>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(req)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send grant_type and its fields form-encoded",
        );
    };
    let invalid_grant = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
    match req.grant_type.as_str() {
        "authorization_code" => {
            let (Some(code), Some(verifier)) = (req.code.as_deref(), req.code_verifier.as_deref())
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code and code_verifier are required",
                );
            };
            let stored = match app.store().take_auth_code(&secrets::digest(code)).await {
                Ok(Some(c)) => c,
                Ok(None) => return invalid_grant("the code is unknown or was used already"),
                Err(e) => return ApiError::from(e).into_response(),
            };
            if stored.expires_at < Utc::now() {
                return invalid_grant("the code has expired");
            }
            if req.client_id.as_deref() != Some(stored.client_id.as_str())
                || req.redirect_uri.as_deref() != Some(stored.redirect_uri.as_str())
            {
                return invalid_grant(
                    "client_id or redirect_uri differ from the authorization request",
                );
            }
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != stored.code_challenge
            {
                return invalid_grant("the code_verifier does not match the code_challenge");
            }
            let user = match app.store().user(&stored.user_id).await {
                Ok(Some(u)) => u,
                Ok(None) => return invalid_grant("the account no longer exists"),
                Err(e) => return ApiError::from(e).into_response(),
            };
            match tokens_for(&app, &user, None, stored.nonce.as_deref(), &stored.scope).await {
                Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        "refresh_token" => {
            match rotate_refresh_token(&app, req.refresh_token.as_deref().unwrap_or("")).await {
                Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
                Err(ApiError::Unauthorized { detail }) => invalid_grant(&detail),
                Err(e) => e.into_response(),
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_parsed_not_prefix_matched() {
        let registered = vec!["https://app.example.org/callback".to_string()];
        for good in [
            "https://app.example.org/callback",
            "http://127.0.0.1:9999/callback",
            "http://127.0.0.1/cb?x=1",
            "http://[::1]:8080/cb",
        ] {
            assert!(redirect_allowed(&registered, good), "{good} refused");
        }
        for bad in [
            "http://127.0.0.1:1@evil.example/cb",
            "http://localhost:@evil.example/cb",
            "http://[::1]:@evil.example/cb",
            "http://127.0.0.1:1%40evil.example/cb",
            "http://localhost:8080/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://127.1:9999/cb",
            "https://127.0.0.1:9999/cb",
            "http://127.0.0.1:9999/cb#frag",
            "http://127.0.0.1:9999/cb\r\nSet-Cookie: x=1",
            "http://127.0.0.1:9999/c b",
            "https://app.example.org/callback/../steal",
            "https://app.example.org/callbackx",
            "https://evil.example/steal",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!redirect_allowed(&registered, bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn html_and_urls_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            with_query("https://app/cb", &[("code", "a b&c"), ("state", "s")]),
            "https://app/cb?code=a%20b%26c&state=s"
        );
        assert_eq!(
            with_query("https://app/cb?x=1", &[("code", "c")]),
            "https://app/cb?x=1&code=c"
        );
    }
}
