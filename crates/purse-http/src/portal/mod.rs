//! The web portal at `/`: server-rendered pages for the operator's and resellers' staff and
//! for customers' admins, served by the same process as the API. No JavaScript is needed:
//! forms post, charts are SVG drawn on the server, and nothing is fetched from elsewhere.
//!
//! A portal user has the role and scope of an API key, and every page reads through the
//! same tenancy checks as the API ([`crate::access`]): another tenant's page is "not found".
//! Sessions, passwords, CSRF and login throttling live in [`session`].

mod alerts;
mod balance;
mod credit;
mod customers;
mod invoices;
mod keys;
mod login;
mod payments;
pub mod page;
pub mod session;
pub mod users;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use crate::{ApiError, AppState};
use session::Viewer;

/// The portal's routes (merged with the API's by [`crate::app`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/assets/portal.css", get(page::css))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customers::show))
        .route("/customers/{id}/balance", get(balance::details))
        .route("/customers/{id}/balance.csv", get(balance::csv))
        .route("/settings", get(settings))
        .route("/settings/account", get(account_settings))
        .route("/settings/account/billing", get(billing))
        .route("/settings/account/billing/balance-details", get(balance::own_details))
        .route("/settings/password", get(users::password_form).post(users::change_password))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/users", get(users::list).post(users::create))
        .route("/profiles", get(alerts::profiles).post(alerts::create))
        .route("/profiles/{id}", get(alerts::edit).post(alerts::update))
        .route("/profiles/{id}/delete", get(alerts::confirm_delete).post(alerts::delete))
        .route("/customers/{id}/alerts", get(alerts::settings).post(alerts::save_settings))
        .route("/notifications", get(alerts::log))
        .route("/customers/{id}/recharge", get(payments::show).post(payments::save))
        .route("/customers/{id}/recharge/pay-now", post(payments::pay_now))
        .route("/customers/{id}/invoices", get(invoices::list).post(invoices::issue))
        .route("/customers/{id}/billing-settings", post(invoices::save_billing))
        .route("/invoices/{id}", get(invoices::show))
        .route("/invoices/{id}/pay", post(invoices::pay))
        .route("/invoices/{id}/void", post(invoices::void))
        .route("/invoices/{id}/pdf", get(invoices::pdf))
        .route("/receipts/{id}", get(invoices::receipt))
        .route("/receipts/{id}/pdf", get(payments::receipt_pdf))
        .route("/receipts/{id}/email", post(payments::email_receipt))
        .route("/customers/{id}/credit", get(credit::show).post(credit::save))
        .route("/customers/{id}/credit/settings", post(credit::save_settings))
        .route("/audit", get(credit::audit))
        .route("/classes", get(credit::classes).post(credit::save_class))
        .route("/classes/{id}", get(credit::edit_class).post(credit::save_class))
}

/// What a page can fail with; each renders as a page (or a redirect to the login).
#[derive(Debug)]
pub enum PortalError {
    /// No session, or an expired one: go to the login page, then back to this path.
    LoginRequired(String),
    /// The page does not exist, or belongs to another tenant.
    NotFound,
    Forbidden(String),
    /// A changing form without this session's CSRF token.
    Csrf,
    BadRequest(String),
    /// A form field breaks a rule: (field, message); the form comes back with it.
    Field(String, String),
    Internal(String),
}

impl PortalError {
    /// Keeps a field error of the API as a field error (other errors as usual).
    pub(crate) fn from_api_keep(e: ApiError) -> PortalError {
        match e {
            ApiError::InvalidField { field, message, .. } => PortalError::Field(field, message),
            ApiError::ForbiddenField { field, message } => PortalError::Field(field.to_owned(), message),
            ApiError::PaymentDeclined(m) => PortalError::Field("card".into(), format!("The card was declined ({m}). Nothing was charged.")),
            ApiError::PaymentPending(m) => PortalError::Field("card".into(), format!("{m}; it completes in the background.")),
            ApiError::CardsNotConfigured => PortalError::Field("card".into(), "card payments are not configured on this server".into()),
            other => other.into(),
        }
    }
}

impl From<ApiError> for PortalError {
    fn from(e: ApiError) -> PortalError {
        match e {
            ApiError::NotFound(_) => PortalError::NotFound,
            ApiError::Forbidden(m) => PortalError::Forbidden(m),
            ApiError::ForbiddenField { message, .. } => PortalError::Forbidden(message),
            ApiError::InvalidField { message, .. } => PortalError::BadRequest(message),
            ApiError::Internal(m) => PortalError::Internal(m),
            other => PortalError::Internal(format!("{other:?}")),
        }
    }
}

impl From<purse_store::StoreError> for PortalError {
    fn from(e: purse_store::StoreError) -> PortalError {
        PortalError::Internal(e.0)
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PortalError::LoginRequired(next) => {
                let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                return Redirect::to(&format!("/login?{query}")).into_response();
            }
            PortalError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is no such page, or it is not yours to see.".to_owned()),
            PortalError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PortalError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was not sent from your current Purse session (its security token is missing or stale). Reload the page and try again.".to_owned(),
            ),
            PortalError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PortalError::Field(f, m) => (StatusCode::UNPROCESSABLE_ENTITY, "Refused", format!("{f}: {m}")),
            PortalError::Internal(detail) => {
                eprintln!("{{\"level\":\"error\",\"portal\":{}}}", serde_json::Value::String(detail));
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The error was logged. Try again in a moment.".to_owned())
            }
        };
        let body = html! {
            section.card.notice.bad id="error" { p { (message) } }
            p { a href="/" { "Back to the start" } }
        };
        page::respond(status, page::layout(title, None, &[], body))
    }
}

/// The HTML "not found" page for paths outside `/v1`.
pub fn not_found() -> Response {
    PortalError::NotFound.into_response()
}

/// Runs blocking store reads off the async runtime.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&AppState) -> Result<T, PortalError> + Send + 'static,
) -> Result<T, PortalError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state)).await.map_err(|e| PortalError::Internal(e.to_string()))?
}

/// The start page of each role: staff see their customers, a customer admin its overview.
async fn home(viewer: Viewer) -> Response {
    match viewer.own_customer() {
        Some(id) => Redirect::to(&format!("/customers/{id}")).into_response(),
        None => Redirect::to("/customers").into_response(),
    }
}

/// Settings, as seed 000 walks it: Settings → Account Settings → Billing → Balance Details.
async fn settings(viewer: Viewer) -> Response {
    let body = html! {
        ul.sections.card {
            @if viewer.own_customer().is_some() {
                li { a href="/settings/account" { "Account Settings" } " — billing, balance, auto-recharge" }
            }
            li { a href="/settings/password" { "Change password" } }
            li { a href="/keys" { "API keys" } }
            @if viewer.is_staff() { li { a href="/users" { "Users" } } }
            li { a href="/audit" id="audit-link" { "Audit log" } " — every settings change: who, when, before, after" }
            @if viewer.is_staff() { li { a href="/classes" id="classes-link" { "Customer classes" } " — subscriber transfers and the maximum possible increase" } }
        }
    };
    page::ok(page::layout("Settings", Some(&viewer), &[("Settings", "")], body))
}

async fn account_settings(viewer: Viewer) -> Result<Response, PortalError> {
    viewer.own_customer().ok_or(PortalError::NotFound)?;
    let body = html! {
        ul.sections.card {
            li { a href="/settings/account/billing" { "Billing" } }
        }
    };
    Ok(page::ok(page::layout("Account Settings", Some(&viewer), &[("Settings", "/settings"), ("Account Settings", "")], body)))
}

async fn billing(viewer: Viewer) -> Result<Response, PortalError> {
    viewer.own_customer().ok_or(PortalError::NotFound)?;
    let body = html! {
        ul.sections.card {
            li { a href="/settings/account/billing/balance-details" { "Balance Details" } " — balance, uninvoiced amount, consumption, payments, CSV export" }
            @if let Some(c) = viewer.own_customer() { li { a href=(format!("/customers/{c}/credit")) id="own-credit" { "Balance & Credits" } " — credit limits, warning thresholds, credit limit history" } }
            @if let Some(c) = viewer.own_customer() { li { a href=(format!("/customers/{c}/invoices")) id="own-invoices" { "Invoices and payments" } " — invoices with their PDF, payments, receipt vouchers, unallocated payments" } }
        }
    };
    let crumbs = [("Settings", "/settings"), ("Account Settings", "/settings/account"), ("Billing", "")];
    Ok(page::ok(page::layout("Billing", Some(&viewer), &crumbs, body)))
}

/// Redirects back to a page after a change, as HTTP's "see other".
pub(crate) fn see_other(path: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, path.to_owned())]).into_response()
}
