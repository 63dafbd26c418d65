//! The JWT authorizer of API Gateway: [`require_access_token`] is a layer on the routes that
//! need a user, so that a request without a valid access token (signature against the key set,
//! issuer, client id, `token_use`, expiry, the `ecocityhub/api` scope) is answered 401 before
//! any handler runs; handlers take the verified caller as [`SignedIn`] and ask the Cedar
//! policies about their action with [`SignedIn::authorize`]. For users of the built-in pool the
//! roles the policies see are the user's current ones in the store (read again every few
//! seconds), so a token issued before a demotion or deletion loses its power at once.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ecocityhub_identity::{Action, Authorizer, Claims, Principal, Resource};
use ecocityhub_observe::audit::{Credential, UserIdentity};

use ecocityhub_store::identity::User;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The scope every API access token must carry.
pub const API_SCOPE: &str = ecocityhub_identity::tokens::scopes::API;
/// The scope the administration routes also require.
pub const ADMIN_SCOPE: &str = ecocityhub_identity::tokens::scopes::ADMIN;

/// A caller with a valid access token.
#[derive(Clone)]
pub struct SignedIn {
    pub claims: Claims,
    pub principal: Principal,
}

impl SignedIn {
    /// A caller signed in through a web session rather than a bearer token: the web layer
    /// checked the session's refresh token (unused, unrevoked, unexpired) and read the user;
    /// these are the claims an access token of that sign-in would carry (its groups and the
    /// scope it was granted), so the API's handlers and policies treat both alike.
    pub fn from_session(app: &AppState, user: &User, scope: &str) -> SignedIn {
        let now = chrono::Utc::now().timestamp();
        let groups: Vec<String> = user.roles.iter().map(|r| r.as_str().to_string()).collect();
        let claims = Claims {
            sub: user.id.clone(),
            iss: app.identity().config.tokens.issuer.clone(),
            token_use: ecocityhub_identity::TokenUse::Access,
            aud: None,
            client_id: Some(app.identity().config.tokens.client_id.clone()),
            groups,
            scope: Some(scope.to_string()),
            email: Some(user.email.clone()),
            email_verified: Some(user.confirmed),
            auth_time: now,
            iat: now,
            exp: now + 60,
            jti: String::new(),
            nonce: None,
        };
        let signed_in = SignedIn {
            principal: Principal::User {
                id: user.id.clone(),
                roles: user.roles.clone(),
            },
            claims,
        };
        crate::audit::note_identity(signed_in.audit_identity(Credential::Session));
        signed_in
    }

    /// Who this is, for the audit trail.
    pub fn audit_identity(&self, credential: Credential) -> UserIdentity {
        let roles = match &self.principal {
            Principal::User { roles, .. } => roles.iter().map(|r| r.as_str()).collect(),
            _ => Vec::new(),
        };
        let identity = UserIdentity::user(&self.claims.sub, &roles, credential);
        if self.claims.jti.is_empty() {
            identity
        } else {
            identity.with_credential_id(&self.claims.jti)
        }
    }

    /// Did the sign-in grant `scope`?
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }

    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    /// A 403 unless the policies allow `action` on `resource`.
    pub fn authorize(&self, app: &AppState, action: Action, resource: &Resource) -> ApiResult<()> {
        if app
            .identity()
            .authorizer
            .is_allowed(&self.principal, action, resource)
        {
            Ok(())
        } else {
            crate::audit::note_denied(&format!("{action:?}"));
            Err(ApiError::Forbidden(format!(
                "you may not {action:?} here; ask an administrator if you need to"
            )))
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        // Verified already by the layer in front of the route.
        if let Some(signed_in) = parts.extensions.get::<SignedIn>() {
            return Ok(signed_in.clone());
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
            .ok_or_else(|| ApiError::unauthorized("sign in first: send `Authorization: Bearer <access token>` (POST /api/v1/auth/sign-in)"))?;
        let claims = app
            .identity()
            .verify_access(app.store(), &token)
            .await
            .map_err(|e| ApiError::unauthorized(format!("{e}; sign in again")))?;
        if !claims.has_scope(API_SCOPE) {
            return Err(ApiError::Forbidden(format!(
                "the token lacks the {API_SCOPE} scope"
            )));
        }
        let roles = if claims.iss == app.identity().config.tokens.issuer {
            // A user of the built-in pool: what they may do is what the store says now, not
            // what it said when the token was issued (a demotion or deletion counts at once).
            app.identity()
                .current_roles(app.store(), &claims.sub)
                .await?
                .ok_or_else(|| {
                    ApiError::unauthorized("the account no longer exists; sign in again")
                })?
        } else {
            // A trusted outside pool (Cognito) keeps its users and groups itself.
            Authorizer::roles_of(&claims.groups)
        };
        let principal = Principal::User {
            id: claims.sub.clone(),
            roles,
        };
        let signed_in = SignedIn { claims, principal };
        crate::audit::note_identity(signed_in.audit_identity(Credential::AccessToken));
        Ok(signed_in)
    }
}

/// On a public route: `None` without credentials, the caller with valid ones, and a 401 for
/// bad ones (a wrong token is said, not taken for anonymous).
impl axum::extract::OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        let has_token = parts.extensions.get::<SignedIn>().is_some()
            || parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION);
        if !has_token {
            return Ok(None);
        }
        <SignedIn as FromRequestParts<AppState>>::from_request_parts(parts, app)
            .await
            .map(Some)
    }
}

/// The per-route scope check for administration routes, behind [`require_access_token`]: a
/// token granted to a client without `ecocityhub/admin` cannot reach them, whoever the user is.
pub async fn require_admin_scope(request: Request, next: Next) -> Result<Response, ApiError> {
    let granted = request
        .extensions()
        .get::<SignedIn>()
        .is_some_and(|s| s.claims.has_scope(ADMIN_SCOPE));
    if !granted {
        return Err(ApiError::Forbidden(format!(
            "this route needs the {ADMIN_SCOPE} scope, which the token was not granted; \
             sign in with it requested (scope=\"openid {API_SCOPE} {ADMIN_SCOPE}\")"
        )));
    }
    Ok(next.run(request).await)
}

/// The authorizer layer: verifies the access token and hands the caller to the handler.
pub async fn require_access_token(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let signed_in = SignedIn::from_request_parts(&mut parts, &app).await?;
    parts.extensions.insert(signed_in);
    Ok(next.run(Request::from_parts(parts, body)).await)
}
