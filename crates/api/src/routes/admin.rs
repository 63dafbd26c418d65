//! `/api/v1/admin/*`: user management, for admins only (the Cedar policies say so).

use axum::extract::State;
use axum::Json;
use ecocityhub_identity::account::echo;
use ecocityhub_identity::{Action, Resource, Role};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::auth::UserOut;
use crate::signed_in::SignedIn;
use crate::state::AppState;

/// Every user of the pool, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer_jwt" = [])),
    responses((status = 200, body = [UserOut]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    State(app): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<UserOut>>> {
    me.authorize(&app, Action::ListUsers, &Resource::System)?;
    Ok(Json(
        app.store()
            .users()
            .await?
            .iter()
            .map(UserOut::from)
            .collect(),
    ))
}

/// What an admin may change about a user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// The user's roles (groups): citizen, operator, admin. They count at once, also for tokens
    /// issued before; the user's sign-ins end and must be made again.
    pub roles: Option<Vec<String>>,
}

/// Changes a user's roles.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer_jwt" = [])),
    params(("id" = String, Path, description = "User id (the token's `sub`)")), request_body = UserPatch,
    responses((status = 200, body = UserOut),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update_user(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserOut>> {
    me.authorize(&app, Action::UpdateUser, &Resource::System)?;
    let mut user = app
        .store()
        .user(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no user {}", echo(&id))))?;
    let roles_before = user.roles.clone();
    if let Some(roles) = patch.roles {
        let mut parsed: Vec<Role> = roles
            .iter()
            .map(|r| r.parse().map_err(ApiError::BadRequest))
            .collect::<ApiResult<_>>()?;
        parsed.sort();
        parsed.dedup();
        if parsed.is_empty() {
            return Err(ApiError::BadRequest(
                "a user needs at least one role (citizen, operator, admin)".into(),
            ));
        }
        if user.id == me.user_id() && !parsed.contains(&Role::Admin) {
            return Err(ApiError::BadRequest(
                "you cannot take the admin role from yourself; ask another admin".into(),
            ));
        }
        user.roles = parsed;
    }
    app.store().update_user(&user).await?;
    if user.roles != roles_before {
        // The old roles live on in refresh tokens' next access tokens: end those sign-ins.
        app.store()
            .revoke_user_refresh_tokens(&user.id, chrono::Utc::now())
            .await?;
    }
    app.identity().forget_user(&user.id);
    tracing::info!(admin = %me.user_id(), user = %user.id, roles = ?user.roles, "roles changed");
    Ok(Json(UserOut::from(&user)))
}
