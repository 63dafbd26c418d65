//! `/.well-known/*`: the signing keys (JWKS) and the OpenID discovery document, so that API
//! Gateway's JWT authorizer or any OIDC client can verify EcoCityHub's tokens.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::state::AppState;

/// The public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWKS")))]
pub async fn jwks(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(app.identity().keys(app.store()).await?.jwks().clone()))
}

/// OpenID provider metadata of the built-in pool.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "auth", responses((status = 200, description = "OpenID provider metadata")))]
pub async fn openid_configuration(State(app): State<AppState>) -> Json<Value> {
    let issuer = app
        .identity()
        .config
        .tokens
        .issuer
        .trim_end_matches('/')
        .to_string();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["code"],
        "scopes_supported": ["openid", "email", "profile", "ecocityhub/api"],
        "claims_supported": ["sub", "iss", "aud", "email", "email_verified", "cognito:groups", "token_use", "auth_time", "exp", "iat", "jti"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}
