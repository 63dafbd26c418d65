//! The page handlers, by audience: [`home`], [`station`], [`model`] and citizens' [`reports`]
//! (each one's page: [`report`]) for everyone, [`notify`] for whoever follows a link of a
//! notification message, [`account`] and [`alerts`] for users, [`admin`] for operators and
//! admins, with the reports' [`triage`] queue and [`monitoring`] (operators and admins) and
//! [`audit`] (admins). Handlers are thin: read the visitor, ask the policies, call the store, the identity
//! layer or the ML layer (often through the API's own handlers, so both front doors behave
//! alike), render a template.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod home;
pub mod model;
pub mod monitoring;
pub mod notify;
pub mod region_names;
pub mod report;
pub mod reports;
pub mod station;
pub mod triage;

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::WebResult;
use crate::WebState;

/// Every page route.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home::home))
        .route("/stations/{id}", get(station::station))
        .route("/models/{id}", get(model::model))
        .route(
            "/account/sign-up",
            get(account::sign_up_form).post(account::sign_up),
        )
        .route(
            "/account/confirm",
            get(account::confirm_form).post(account::confirm),
        )
        .route("/account/resend-code", post(account::resend_code))
        .route(
            "/account/sign-in",
            get(account::sign_in_form).post(account::sign_in),
        )
        .route("/account/sign-in/{provider}", get(account::sign_in_with))
        .route("/account/callback", get(account::callback))
        .route("/account/sign-out", post(account::sign_out))
        .route(
            "/account/forgot-password",
            get(account::forgot_form).post(account::forgot),
        )
        .route(
            "/account/reset-password",
            get(account::reset_form).post(account::reset),
        )
        .route("/account", get(account::profile))
        .route("/account/password", post(account::change_password))
        .route("/account/delete", post(account::delete_account))
        .route("/account/alerts", get(alerts::alerts))
        .route("/account/alerts/channels", post(alerts::add_channel))
        .route(
            "/account/alerts/channels/{id}/delete",
            post(alerts::delete_channel),
        )
        .route(
            "/account/alerts/channels/{id}/test",
            post(alerts::test_channel),
        )
        .route("/account/alerts/push", post(alerts::add_push))
        .route("/account/alerts/rules", post(alerts::add_rule))
        .route(
            "/account/alerts/rules/{id}/edit",
            get(alerts::edit_rule_form).post(alerts::edit_rule),
        )
        .route("/account/alerts/rules/{id}/pause", post(alerts::pause_rule))
        .route(
            "/account/alerts/rules/{id}/delete",
            post(alerts::delete_rule),
        )
        .route("/account/alerts/rules/{id}/test", post(alerts::test_rule))
        .route("/account/events", get(alerts::events))
        .route("/reports", get(reports::list))
        .route("/reports/new", get(reports::new_form).post(reports::file))
        .route("/reports/uploads", post(reports::sign_upload))
        .route("/reports/{id}", get(report::show))
        .route("/reports/{id}/follow", post(report::follow))
        .route("/reports/{id}/comments", post(report::comment))
        .route("/reports/{id}/triage", post(report::triage))
        .route("/reports/{id}/hide", post(report::hide))
        .route("/reports/{id}/photos/{n}", get(report::photo))
        .route("/reports/{id}/photos/{n}/hide", post(report::hide_photo))
        .route(
            "/notify/confirm",
            get(notify::confirm_form).post(notify::confirm),
        )
        .route(
            "/unsubscribe/{token}",
            get(notify::unsubscribe_form).post(notify::unsubscribe),
        )
        .route("/admin", get(admin::dashboard))
        .route(
            "/admin/stations",
            get(admin::stations).post(admin::create_station),
        )
        .route(
            "/admin/stations/{id}",
            get(admin::station).post(admin::update_station),
        )
        .route(
            "/admin/stations/{id}/readings/flag",
            post(admin::flag_reading),
        )
        .route("/admin/stations/{id}/keys", post(admin::create_key))
        .route(
            "/admin/stations/{id}/keys/{prefix}/revoke",
            post(admin::revoke_key),
        )
        .route("/admin/users", get(admin::users))
        .route("/admin/users/{id}", post(admin::update_user))
        .route("/admin/models", get(admin::models))
        .route("/admin/models/{id}/promote", post(admin::promote))
        .route("/admin/models/rollback", post(admin::rollback))
        .route("/admin/jobs", get(admin::jobs).post(admin::start_job))
        .route("/admin/jobs/{id}", get(admin::job))
        .route("/admin/jobs/{id}/status", get(admin::job_status))
        .route("/admin/deliveries", get(admin::deliveries))
        .route("/admin/deliveries/redrive", post(admin::redrive_all))
        .route("/admin/deliveries/{id}/redrive", post(admin::redrive))
        .route("/admin/reports", get(triage::queue))
        .route("/admin/reports/bulk", post(triage::bulk))
        .route("/admin/audit", get(audit::audit))
        .route("/admin/monitoring", get(monitoring::monitoring))
}

/// Renders a template as a 200 page.
pub fn page<T: Template>(template: T) -> WebResult<Response> {
    Ok(Html(template.render()?).into_response())
}
