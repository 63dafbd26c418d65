//! Sign-in through outside OpenID Connect providers, shaped like Cognito's hosted UI:
//! `GET /oauth2/authorize?identity_provider=NAME&…` (our client's usual code-flow request)
//! records a pending sign-in (random `state` and `nonce`, our PKCE verifier for the provider,
//! the client's request; ten minutes, single use) and sends the browser to the provider;
//! `GET /oauth2/idpresponse` takes it back, exchanges the provider's code, checks its ID token,
//! finds or creates the account (linked by the provider's subject, else by verified e-mail) and
//! answers the client's request with a code of ours, which it exchanges at `/oauth2/token` as
//! usual. `GET /api/v1/auth/providers` lists the configured providers.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use ecocityhub_identity::federation::{pkce_pair, ExternalIdentity};
use ecocityhub_identity::tokens::scopes;
use ecocityhub_identity::{account, password, secrets, Role};
use ecocityhub_store::identity::{FederatedIdentity, FederatedLogin, User};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::federation::{Federation, FederationFailure, Provider};
use crate::routes::oauth::{
    redirect, redirect_with_code, with_query, AuthorizeParams, ClientRequest,
};
use crate::state::AppState;

/// How long the user has to sign in at the provider.
const PENDING_FOR: chrono::Duration = chrono::Duration::minutes(10);

/// An outside identity provider users may sign in with.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderOut {
    /// What to pass as `identity_provider` to `/oauth2/authorize`.
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderOut>,
}

/// The outside OpenID Connect providers configured for sign-in.
#[utoipa::path(get, path = "/api/v1/auth/providers", tag = "auth",
    responses((status = 200, body = ProviderList)))]
pub async fn providers(State(app): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList {
        providers: app
            .identity()
            .federation
            .names()
            .map(|name| ProviderOut { name: name.into() })
            .collect(),
    })
}

/// Where providers send users back.
fn callback_url(app: &AppState) -> String {
    format!(
        "{}/oauth2/idpresponse",
        app.identity().config.tokens.issuer.trim_end_matches('/')
    )
}

/// An OAuth error for the client at its (already checked) redirect URI.
fn client_error(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect(with_query(redirect_uri, &pairs))
}

/// Sends the browser to the provider, for a client request that passed the checks of
/// `/oauth2/authorize` (`redirect_uri` is the checked one).
pub(crate) async fn start(
    app: &AppState,
    p: &AuthorizeParams,
    redirect_uri: String,
    provider_name: &str,
) -> ApiResult<Response> {
    let federation = &app.identity().federation;
    let Some(provider) = federation.provider(provider_name) else {
        return Ok(client_error(
            &redirect_uri,
            p.state.as_deref(),
            "invalid_request",
            &format!(
                "there is no identity provider {provider_name:?}; see GET /api/v1/auth/providers"
            ),
        ));
    };
    let metadata = match federation.metadata(provider).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = provider_name, error = %e, "identity provider unavailable");
            return Ok(client_error(
                &redirect_uri,
                p.state.as_deref(),
                e.oauth_error(),
                &e.to_string(),
            ));
        }
    };
    let state = secrets::token();
    let nonce = secrets::token();
    let (code_verifier, code_challenge) = pkce_pair();
    let now = Utc::now();
    app.store().purge_federated_logins(now).await?;
    app.store()
        .insert_federated_login(&FederatedLogin {
            state_hash: secrets::digest(&state),
            provider: provider.config.name.clone(),
            nonce: nonce.clone(),
            code_verifier,
            client_id: p.client_id.clone().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            client_state: p.state.clone(),
            client_nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone().unwrap_or_default(),
            expires_at: now + PENDING_FOR,
            client_scope: scopes::grant(p.scope.as_deref().unwrap_or_default()),
        })
        .await?;
    let to = match Federation::authorization_url(
        provider,
        &metadata,
        &callback_url(app),
        &state,
        &nonce,
        &code_challenge,
    ) {
        Ok(url) => url,
        Err(e) => {
            return Ok(client_error(
                &redirect_uri,
                p.state.as_deref(),
                e.oauth_error(),
                &e.to_string(),
            ))
        }
    };
    tracing::info!(provider = provider_name, "federated sign-in started");
    Ok(([(header::CACHE_CONTROL, "no-store")], redirect(to)).into_response())
}

/// What a provider sends back (RFC 6749 §4.1.2, RFC 9207's `iss`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdpResponseParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's error, such as `access_denied` when the user declined.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The provider's issuer (RFC 9207), checked when present.
    pub iss: Option<String>,
}

/// The provider sends the browser back here; the browser goes on to the client with a code of
/// ours, or with an OAuth error. A missing, unknown, expired or reused `state` is a 400.
#[utoipa::path(get, path = "/oauth2/idpresponse", tag = "auth", params(IdpResponseParams),
    responses((status = 303, description = "Back to the client with a code, or with an OAuth error"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json",
               description = "No sign-in is waiting for this state")))]
pub async fn idp_response(
    State(app): State<AppState>,
    ApiQuery(r): ApiQuery<IdpResponseParams>,
) -> ApiResult<Response> {
    let unknown = || {
        ApiError::BadRequest(
            "no sign-in is waiting for this state: it is unknown, has expired (10 minutes) or \
             was used already; start the sign-in again from the app"
                .into(),
        )
    };
    let state = r
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest("the identity provider's answer has no state".into())
        })?;
    let Some(login) = app
        .store()
        .take_federated_login(&secrets::digest(state))
        .await?
    else {
        tracing::warn!("federated sign-in answer with an unknown or reused state");
        return Err(unknown());
    };
    if login.expires_at < Utc::now() {
        tracing::warn!(provider = %login.provider, "federated sign-in answer after expiry");
        return Err(unknown());
    }
    let back = |error: &str, description: &str| {
        client_error(
            &login.redirect_uri,
            login.client_state.as_deref(),
            error,
            description,
        )
    };
    let federation = &app.identity().federation;
    let Some(provider) = federation.provider(&login.provider) else {
        return Ok(back(
            "temporarily_unavailable",
            "the identity provider of this sign-in is no longer configured",
        ));
    };
    if let Some(error) = r.error.as_deref() {
        tracing::info!(provider = %login.provider, error, "identity provider returned an error");
        let description = format!(
            "the identity provider {} answered {error}{}",
            login.provider,
            r.error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        let error = match error {
            "temporarily_unavailable" | "server_error" => "temporarily_unavailable",
            _ => "access_denied",
        };
        return Ok(back(error, &description));
    }
    match finish(&app, federation, provider, &login, &r).await {
        Ok(user) => {
            let request = ClientRequest {
                client_id: &login.client_id,
                redirect_uri: &login.redirect_uri,
                state: login.client_state.as_deref(),
                nonce: login.client_nonce.as_deref(),
                code_challenge: &login.code_challenge,
                scope: &login.client_scope,
            };
            redirect_with_code(&app, &request, &user.id).await
        }
        Err(Finish::Failure(e)) => {
            tracing::warn!(provider = %login.provider, error = %e, "federated sign-in refused");
            Ok(back(e.oauth_error(), &e.to_string()))
        }
        Err(Finish::Api(e)) => Err(e),
    }
}

/// Why [`finish`] stopped: the provider's side (told to the client) or ours.
enum Finish {
    Failure(FederationFailure),
    Api(ApiError),
}

impl From<FederationFailure> for Finish {
    fn from(e: FederationFailure) -> Self {
        Finish::Failure(e)
    }
}

impl From<ApiError> for Finish {
    fn from(e: ApiError) -> Self {
        Finish::Api(e)
    }
}

impl From<ecocityhub_store::StoreError> for Finish {
    fn from(e: ecocityhub_store::StoreError) -> Self {
        Finish::Api(e.into())
    }
}

/// Exchanges the provider's code, checks its ID token and finds or creates the account.
async fn finish(
    app: &AppState,
    federation: &Federation,
    provider: &Provider,
    login: &FederatedLogin,
    r: &IdpResponseParams,
) -> Result<User, Finish> {
    let metadata = federation.metadata(provider).await?;
    let refused = |reason: &str| FederationFailure::Refused {
        provider: provider.config.name.clone(),
        reason: reason.into(),
    };
    if r.iss.as_deref().is_some_and(|iss| iss != metadata.issuer) {
        return Err(refused("the answer names another issuer (RFC 9207)").into());
    }
    let code = r
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refused("the answer has neither a code nor an error"))?;
    let id_token = federation
        .exchange_code(
            provider,
            &metadata,
            code,
            &login.code_verifier,
            &callback_url(app),
        )
        .await?;
    let identity = federation
        .verify_id_token(provider, &metadata, &id_token, &login.nonce)
        .await?;
    account_for(app, provider, &identity).await
}

/// The account of an outside identity: the one linked to it; else the one with its verified
/// e-mail address, now linked; else a new citizen account without a password, linked.
async fn account_for(
    app: &AppState,
    provider: &Provider,
    identity: &ExternalIdentity,
) -> Result<User, Finish> {
    let store = app.store();
    let name = provider.config.name.as_str();
    if let Some(link) = store.federated_identity(name, &identity.subject).await? {
        if let Some(user) = store.user(&link.user_id).await? {
            tracing::info!(provider = name, user = %user.id, "federated sign-in");
            return Ok(user);
        }
    }
    let email = identity
        .verified_email(provider.config.assume_email_verified)
        .map_err(|source| FederationFailure::Rejected {
            provider: name.into(),
            source,
        })?;
    let now = Utc::now();
    let user = match store.user_by_email(&email).await? {
        Some(mut user) => {
            if !user.confirmed {
                // Someone signed up with this address and never proved it: the provider just
                // did. Whoever chose that password may not own the address, so it goes.
                user.password_hash = password::NO_PASSWORD.into();
                user.confirmed = true;
                store.update_user(&user).await?;
                store.revoke_user_refresh_tokens(&user.id, now).await?;
                tracing::info!(provider = name, user = %user.id, "unconfirmed account taken over by its verified owner: password removed");
            }
            tracing::info!(provider = name, user = %user.id, "outside identity linked by verified e-mail");
            user
        }
        None => {
            let user = User {
                id: account::new_user_id(),
                email: email.clone(),
                password_hash: password::NO_PASSWORD.into(),
                roles: vec![Role::Citizen],
                confirmed: true,
                created_at: now,
            };
            if store.insert_user(&user).await? {
                tracing::info!(provider = name, user = %user.id, "account created by federated sign-in");
                user
            } else {
                // Created a moment ago by another request.
                store
                    .user_by_email(&email)
                    .await?
                    .ok_or_else(|| ApiError::Internal("a user vanished while linking".into()))?
            }
        }
    };
    let link = FederatedIdentity {
        provider: name.into(),
        subject: identity.subject.clone(),
        user_id: user.id.clone(),
        email,
        linked_at: now,
    };
    if !store.insert_federated_identity(&link).await? {
        // Linked a moment ago by another request: that link wins.
        if let Some(existing) = store.federated_identity(name, &identity.subject).await? {
            if let Some(linked) = store.user(&existing.user_id).await? {
                return Ok(linked);
            }
        }
    }
    Ok(user)
}
