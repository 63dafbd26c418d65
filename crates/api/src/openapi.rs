//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `GET /api/openapi.json` (and rendered as a page at `GET /api/docs`, see [`crate::api_docs`]).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "EcoCityHub API",
        description = "Air quality and weather readings of a city's sensor stations, with the US EPA AQI and the European Air Quality Index. Errors are RFC 9457 problem+json.",
        license(name = "MIT")
    ),
    paths(
        document,
        crate::api_docs::page,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::parameters,
        routes::stations::list,
        routes::stations::get,
        routes::stations::create,
        routes::stations::update,
        routes::latest::latest,
        routes::readings::history,
        routes::ingest::post_readings,
        routes::auth::sign_up,
        routes::auth::confirm,
        routes::auth::resend_code,
        routes::auth::sign_in,
        routes::auth::refresh,
        routes::auth::sign_out,
        routes::auth::forgot_password,
        routes::auth::reset_password,
        routes::auth::change_password,
        routes::auth::me,
        routes::auth::delete_me,
        routes::admin::list_users,
        routes::admin::update_user,
        routes::oauth::authorize_form,
        routes::oauth::authorize_submit,
        routes::oauth::token,
        routes::federation::idp_response,
        routes::federation::providers,
        routes::well_known::jwks,
        routes::well_known::openid_configuration,
        routes::ml::station_forecast,
        routes::ml::station_anomalies,
        routes::ml::list_models,
        routes::ml::get_model,
        routes::ml::model_report,
        routes::ml::model_report_file,
        routes::ml::promote_model,
        routes::ml::rollback_model,
        routes::ml::create_job,
        routes::ml::list_jobs,
        routes::ml::get_job,
        routes::ml::cancel_job,
        routes::alerts::list_channels,
        routes::alerts::create_channel,
        routes::alerts::delete_channel,
        routes::alerts::test_channel,
        routes::alerts::rotate_channel_secret,
        routes::alerts::list_rules,
        routes::alerts::create_rule,
        routes::alerts::update_rule,
        routes::alerts::delete_rule,
        routes::alerts::test_rule,
        routes::alerts::events,
        routes::alerts::confirm,
        routes::alerts::list_deliveries,
        routes::alerts::redrive_delivery,
        routes::alerts::redrive_all,
        routes::readings::set_flag,
        routes::reports::categories,
        routes::reports::list,
        routes::reports::pins,
        routes::reports::nearby,
        routes::reports::get,
        routes::reports::photo,
        routes::reports::create,
        routes::reports::update,
        routes::reports::comment,
        routes::reports::follow,
        routes::reports::unfollow,
        routes::reports::bulk,
        routes::reports::watch,
        routes::reports::sign_upload,
        routes::reports::put_upload,
    ),
    components(schemas(crate::error::Problem, crate::error::RowProblem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "stations", description = "Stations and what they measure"),
        (name = "readings", description = "Latest values, history and ingestion"),
        (name = "meta", description = "Health"),
        (name = "auth", description = "The built-in user pool: sign-up, sign-in, tokens, keys, sign-in through outside OIDC providers"),
        (name = "admin", description = "User management (admins)"),
        (name = "forecasts", description = "Hourly forecasts per station with intervals and AQI"),
        (name = "alerts", description = "A person's channels (e-mail, webhooks, Web Push, live pages) and alert rules on stations and areas (the SNS layer)"),
        (name = "reports", description = "Citizens' reports of environmental problems with photos, operators' triage, and presigned photo uploads (the S3 layer)"),
        (name = "ml", description = "Forecast models: registry, reports, training jobs (the SageMaker layer)"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "device_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A station's device API key (`ecocityhub device create --station ID`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from POST /api/v1/auth/sign-in (ES256, Cognito-shaped claims)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}
