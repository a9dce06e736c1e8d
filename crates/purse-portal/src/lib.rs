//! The web portal at `/`: server-rendered pages for the operator's and resellers' staff and
//! for customers' admins, served by the same process as the API. No JavaScript is needed:
//! forms post, charts are SVG drawn on the server, and nothing is fetched from elsewhere.
//!
//! A portal user has the role and scope of an API key, and every page reads through the
//! same tenancy checks as the API (`purse_app::tenancy`): another tenant's page is "not found".
//! Sessions, passwords, CSRF and login throttling live in [`session`].

mod adjust;
mod alerts;
mod balance;
mod collections;
mod credit;
mod customers;
mod grants;
pub mod i18n;
mod invoices;
mod keys;
mod login;
pub mod once;
pub mod page;
mod payments;
mod rating;
mod resellers;
pub mod session;
mod taxes;
pub mod users;

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use maud::html;
use purse_app::policy::{self, Action, Requires};

use purse_app::{App, AppError};
use session::Viewer;

/// Settings of the portal.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// How long a portal session lasts after login, whatever its cookie says.
    pub session_ttl: std::time::Duration,
    /// Mark session cookies `Secure` (set when Purse is served over TLS; a proxy in front can
    /// say so per request with `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings { session_ttl: std::time::Duration::from_secs(12 * 3600), secure_cookies: false }
    }
}

/// What every page shares: the application and the portal's settings. It dereferences to
/// the [`App`].
#[derive(Clone)]
pub struct PortalState {
    pub app: Arc<App>,
    pub settings: Arc<PortalSettings>,
    /// Forms done lately, for the same form sent again (see [`once`]).
    pub sent: Arc<once::Sent>,
}

impl PortalState {
    pub fn new(app: Arc<App>, settings: PortalSettings) -> PortalState {
        PortalState { app, settings: Arc::new(settings), sent: Arc::default() }
    }
}

impl std::ops::Deref for PortalState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// A page or a form of the portal and its action in the authorization policy.
pub struct Page {
    pub method: Method,
    pub path: &'static str,
    pub action: Action,
    pub handler: MethodRouter<PortalState>,
}

fn page(method: Method, path: &'static str, action: Action, handler: MethodRouter<PortalState>) -> Page {
    Page { method, path, action, handler }
}

/// Every page and form of the portal, with what it does in the policy's terms: the router is
/// built from this table and the policy is asked for each before its handler runs.
#[allow(clippy::too_many_lines)]
pub fn pages() -> Vec<Page> {
    use Action as A;
    use Method as M;
    vec![
        page(M::GET, "/", A::Home, get(home)),
        page(M::GET, "/assets/portal.css", A::PortalAssets, get(page::css)),
        page(M::GET, "/login", A::LoginPage, get(login::form)),
        page(M::POST, "/login", A::Login, post(login::submit)),
        page(M::POST, "/logout", A::Logout, post(login::logout)),
        page(M::GET, "/customers", A::ListCustomers, get(customers::list)),
        page(M::GET, "/customers/{id}", A::GetCustomer, get(customers::show)),
        page(M::POST, "/customers/{id}/transfers", A::CreateTransfer, post(customers::transfer)),
        page(M::GET, "/customers/{id}/balance", A::GetJournal, get(balance::details)),
        page(M::GET, "/customers/{id}/balance.csv", A::GetJournal, get(balance::csv)),
        page(M::GET, "/settings", A::Home, get(settings)),
        page(M::GET, "/settings/account", A::Home, get(account_settings)),
        page(M::GET, "/settings/account/billing", A::Home, get(billing)),
        page(M::GET, "/settings/account/billing/balance-details", A::GetJournal, get(balance::own_details)),
        page(M::GET, "/settings/password", A::ChangeOwnPassword, get(users::password_form)),
        page(M::POST, "/settings/password", A::ChangeOwnPassword, post(users::change_password)),
        page(M::POST, "/settings/language", A::ChooseOwnLanguage, post(choose_language)),
        page(M::GET, "/keys", A::ListApiKeys, get(keys::list)),
        page(M::POST, "/keys", A::CreateApiKey, post(keys::create)),
        page(M::GET, "/keys/{id}/revoke", A::RevokeApiKey, get(keys::confirm_revoke)),
        page(M::POST, "/keys/{id}/revoke", A::RevokeApiKey, post(keys::revoke)),
        page(M::GET, "/users", A::ListUsers, get(users::list)),
        page(M::POST, "/users", A::CreateUser, post(users::create)),
        page(M::POST, "/users/{id}/disable", A::DisableUser, post(users::disable)),
        page(M::GET, "/profiles", A::ListLowBalanceProfiles, get(alerts::profiles)),
        page(M::POST, "/profiles", A::CreateLowBalanceProfile, post(alerts::create)),
        page(M::GET, "/profiles/{id}", A::GetLowBalanceProfile, get(alerts::edit)),
        page(M::POST, "/profiles/{id}", A::ReplaceLowBalanceProfile, post(alerts::update)),
        page(M::GET, "/profiles/{id}/delete", A::DeleteLowBalanceProfile, get(alerts::confirm_delete)),
        page(M::POST, "/profiles/{id}/delete", A::DeleteLowBalanceProfile, post(alerts::delete)),
        page(M::GET, "/customers/{id}/alerts", A::GetCustomerAlertSettings, get(alerts::settings)),
        page(M::POST, "/customers/{id}/alerts", A::PutCustomerAlertSettings, post(alerts::save_settings)),
        page(M::GET, "/notifications", A::ListNotifications, get(alerts::log)),
        page(M::GET, "/customers/{id}/recharge", A::GetRechargeSettings, get(payments::show)),
        page(M::POST, "/customers/{id}/recharge", A::PutRechargeSettings, post(payments::save)),
        page(M::POST, "/customers/{id}/recharge/pay-now", A::PayNow, post(payments::pay_now)),
        page(M::GET, "/customers/{id}/invoices", A::ListInvoices, get(invoices::list)),
        page(M::POST, "/customers/{id}/invoices", A::IssueInvoice, post(invoices::issue)),
        page(M::POST, "/customers/{id}/billing-settings", A::PutBillingSettings, post(invoices::save_billing)),
        page(M::GET, "/invoices/{id}", A::GetInvoice, get(invoices::show)),
        page(M::POST, "/invoices/{id}/pay", A::PayInvoice, post(invoices::pay)),
        page(M::POST, "/invoices/{id}/void", A::VoidInvoice, post(invoices::void)),
        page(M::POST, "/invoices/{id}/credit-note", A::CreateCreditNote, post(invoices::credit_note)),
        page(M::GET, "/credit-notes/{id}/pdf", A::GetCreditNotePdf, get(invoices::credit_note_pdf)),
        page(M::GET, "/invoices/{id}/pdf", A::GetInvoicePdf, get(invoices::pdf)),
        page(M::GET, "/receipts/{id}", A::GetReceipt, get(invoices::receipt)),
        page(M::GET, "/receipts/{id}/pdf", A::GetReceiptPdf, get(payments::receipt_pdf)),
        page(M::POST, "/receipts/{id}/refund", A::CreateRefund, post(invoices::refund)),
        page(M::GET, "/refunds/{id}/pdf", A::GetRefundPdf, get(invoices::refund_pdf)),
        page(M::POST, "/receipts/{id}/email", A::EmailReceipt, post(payments::email_receipt)),
        page(M::GET, "/customers/{id}/credit", A::GetCustomerCreditSettings, get(credit::show)),
        page(M::POST, "/customers/{id}/credit", A::UpdateAccount, post(credit::save)),
        page(M::POST, "/customers/{id}/credit/settings", A::PutCustomerCreditSettings, post(credit::save_settings)),
        page(M::GET, "/audit", A::ListAuditLog, get(credit::audit)),
        page(M::GET, "/classes", A::ListCustomerClasses, get(credit::classes)),
        page(M::POST, "/classes", A::CreateCustomerClass, post(credit::save_class)),
        page(M::GET, "/classes/{id}", A::ListCustomerClasses, get(credit::edit_class)),
        page(M::POST, "/classes/{id}", A::ReplaceCustomerClass, post(credit::save_class)),
        page(M::GET, "/rate-plans", A::ListRatePlans, get(rating::list)),
        page(M::POST, "/rate-plans", A::CreateRatePlan, post(rating::create)),
        page(M::GET, "/rate-plans/{id}", A::GetRatePlan, get(rating::show)),
        page(M::POST, "/rate-plans/{id}/import", A::ImportRates, post(rating::import)),
        page(M::POST, "/rate-plans/{id}/assign", A::PutResellerRatePlans, post(rating::assign)),
        page(M::GET, "/rate-plans/{id}/export.csv", A::ExportRates, get(rating::export)),
        page(M::POST, "/customers/{id}/rate-plan", A::PutCustomerRatePlan, post(rating::save_customer_plan)),
        page(M::GET, "/transfers/{id}/adjust", A::CreateAdjustment, get(adjust::form)),
        page(M::POST, "/transfers/{id}/adjust", A::CreateAdjustment, post(adjust::save)),
        page(M::POST, "/transfers/{id}/reverse", A::CreateReversal, post(adjust::reverse)),
        page(M::GET, "/customers/{id}/adjustments", A::ListAdjustments, get(adjust::list)),
        page(M::POST, "/customers/{id}/suspension", A::PutSuspension, post(collections::save_suspension)),
        page(M::GET, "/dunning", A::ListDunningPolicies, get(collections::policies)),
        page(M::POST, "/dunning", A::PutDunningPolicy, post(collections::save_policy)),
        page(M::GET, "/taxes", A::ListTaxRates, get(taxes::rates)),
        page(M::POST, "/taxes", A::CreateTaxRate, post(taxes::create_rate)),
        page(M::GET, "/customers/{id}/taxes", A::GetCustomerTax, get(taxes::settings)),
        page(M::POST, "/customers/{id}/taxes", A::PutCustomerTax, post(taxes::save_settings)),
        page(M::POST, "/customers/{id}/adjustments", A::CreateAdjustment, post(adjust::create)),
        page(M::GET, "/resellers", A::GetMasterWallet, get(resellers::list)),
        page(M::GET, "/resellers/{id}", A::GetMasterWallet, get(resellers::show)),
        page(M::POST, "/resellers/{id}/issue", A::IssueCredit, post(resellers::issue)),
        page(M::POST, "/resellers/{id}/alerts", A::PutResellerAlertSettings, post(resellers::save_alerts)),
        page(M::GET, "/customers/{id}/grants", A::ListGrants, get(grants::list)),
        page(M::POST, "/customers/{id}/grants", A::CreateGrant, post(grants::create)),
        page(M::GET, "/grants/{id}", A::GetGrant, get(grants::show)),
        page(M::POST, "/grants/{id}/void", A::VoidGrant, post(grants::void)),
    ]
}

/// The action of the portal page `path` (as matched) answers for `method`.
pub fn action_of(method: &Method, path: &str) -> Option<Action> {
    static ACTIONS: std::sync::OnceLock<Vec<(Method, &'static str, Action)>> = std::sync::OnceLock::new();
    let actions = ACTIONS.get_or_init(|| pages().into_iter().map(|p| (p.method, p.path, p.action)).collect());
    actions.iter().find(|(m, p, _)| m == method && *p == path).map(|(_, _, a)| *a)
}

/// The portal's routes (merged with the API's by `purse::router`): every page of [`pages`],
/// each behind the policy.
pub fn routes(state: PortalState) -> Router {
    let mut router = Router::new();
    for p in pages() {
        router = router.route(p.path, p.handler);
    }
    router.route_layer(axum::middleware::from_fn_with_state(state.clone(), authorize)).with_state(state)
}

/// Middleware on every page: a page that is not public needs a signed-in user whose role
/// and scope the policy allows to take the page's action; the user goes into the request.
async fn authorize(State(state): State<PortalState>, request: Request, next: Next) -> Response {
    let (asked, by_query) = i18n::Lang::requested(request.uri().query(), request.headers());
    let mut response = checked(state, request, next, asked).await;
    if by_query {
        if let Some(v) = i18n::cookie(asked) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The policy's check of a page, and the page in the language of its viewer: the user's own
/// choice, else what the request asked for (`asked`).
async fn checked(state: PortalState, request: Request, next: Next, asked: i18n::Lang) -> Response {
    let path = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let Some(action) = path.and_then(|p| action_of(request.method(), &p)) else { return next.run(request).await };
    if action.rule().requires == Requires::Public {
        return i18n::localize(next.run(request).await, asked).await;
    }
    let (mut parts, body) = request.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &state).await {
        Ok(v) => v,
        Err(e) => return i18n::localize(e.into_response(), asked).await,
    };
    let lang = viewer.user.lang.as_deref().and_then(i18n::Lang::parse).unwrap_or(asked);
    if let Err(refusal) = policy::authorize(viewer.user.role, viewer.user.scope, action) {
        let message = match refusal {
            policy::Refusal::ReadOnly => "Your user is read-only.".to_owned(),
            other => format!("{}.", capitalized(&other.to_string())),
        };
        return i18n::localize(PortalError::Forbidden(message).into_response(), lang).await;
    }
    let shown = viewer.flash.is_some();
    // A form's id is claimed when its form is read, and its answer kept after it.
    let slot = (parts.method == Method::POST).then(|| once::Slot::new(state.sent.clone(), viewer.user.id));
    if let Some(slot) = &slot {
        parts.extensions.insert(slot.clone());
    }
    parts.extensions.insert(viewer);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(slot) = &slot {
        slot.answered(&response);
    }
    // The message was shown on this page (not on a redirect): once is enough.
    if shown && !response.status().is_redirection() {
        session::add_cookie(
            &mut response,
            &format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0", session::FLASH_COOKIE),
        );
    }
    i18n::localize(response, lang).await
}

/// What is wrong with the reason a form gives for a change of money, if anything: none given
/// when one is `required`, or the rule of reasons it breaks (said with the form's other wrong
/// fields, before the ledger would refuse it alone).
pub(crate) fn reason_problem(text: &str, required: bool) -> Result<Option<String>, PortalError> {
    match purse_app::parse::reason_text(Some(text)) {
        Ok(None) if required => Ok(Some("give a reason: it is kept in the audit log".to_owned())),
        Ok(_) => Ok(None),
        Err(AppError::Invalid { message, .. }) => Ok(Some(message)),
        Err(other) => Err(other.into()),
    }
}

/// `text` as a sentence: capitalized.
pub(crate) fn sentence(text: &str) -> String {
    capitalized(text)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
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
    /// Form fields break rules: (field, message) each; the form comes back with them.
    Fields(page::Errors),
    /// The ledger or a rule refused what was asked, as a sentence.
    Refused(String),
    /// The database cannot be reached or write right now.
    Unavailable,
    Internal(String),
    /// The same form was sent before and answered: that answer again.
    Replay(once::Replay),
}

impl PortalError {
    /// One field breaks a rule.
    pub(crate) fn field(name: impl Into<String>, message: impl Into<String>) -> PortalError {
        PortalError::Fields(vec![(name.into(), message.into())])
    }

    /// Keeps a field error of the application as a field error (others as usual).
    /// The fields the form found wrong itself, with what the application found too (a field
    /// already wrong keeps its first message): every wrong field at once. An error about no
    /// field is the answer when the form found nothing.
    pub(crate) fn with_app(mut errors: page::Errors, result: Result<(), AppError>) -> Result<(), PortalError> {
        if let Err(e) = result {
            match PortalError::keep_field(e) {
                PortalError::Fields(more) => {
                    for (f, m) in more {
                        if !errors.iter().any(|(g, _)| *g == f) {
                            errors.push((f, m));
                        }
                    }
                }
                other if errors.is_empty() => return Err(other),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PortalError::Fields(errors))
        }
    }

    pub(crate) fn keep_field(e: AppError) -> PortalError {
        match e {
            AppError::Invalid { field, message, .. } => {
                let message = in_words(&field, &message);
                PortalError::field(field, message)
            }
            AppError::ForbiddenField { field, message } => PortalError::field(field.to_owned(), message),
            AppError::Fields(all) => PortalError::Fields(
                all.iter()
                    .map(|e| {
                        let field = e.field().unwrap_or_default().to_owned();
                        let message = in_words(&field, &e.to_string());
                        (field, message)
                    })
                    .collect(),
            ),
            AppError::PaymentDeclined(m) => {
                PortalError::field("card", format!("The card was declined ({m}). Nothing was charged."))
            }
            AppError::PaymentPending(m) => PortalError::field("card", format!("{m}; it completes in the background.")),
            AppError::CardsNotConfigured => {
                PortalError::field("card", "card payments are not configured on this server")
            }
            other => other.into(),
        }
    }
}

/// An application's message about `field` as people read it beside the field: without the
/// field's path the application put first for an API's callers (`credit_limit must be …`;
/// the page names the field in words), and an amount's rule without the API's terms.
fn in_words(field: &str, message: &str) -> String {
    let rest = message.strip_prefix(field);
    let message = rest.and_then(|r| r.strip_prefix(' ').or_else(|| r.strip_prefix(": "))).unwrap_or(message);
    message.replace(purse_core::money::NOT_A_DECIMAL, "must be an amount such as 12.50")
}

impl From<AppError> for PortalError {
    fn from(e: AppError) -> PortalError {
        match e {
            AppError::NotFound(_) => PortalError::NotFound,
            AppError::Forbidden(m) => PortalError::Forbidden(m),
            AppError::ForbiddenField { message, .. } => PortalError::Forbidden(message),
            AppError::Invalid { message, .. } => PortalError::Refused(message),
            e @ AppError::Fields(_) => PortalError::Refused(e.to_string()),
            AppError::Rejected(r) => PortalError::Refused(r.to_string()),
            AppError::StorageUnavailable | AppError::Overloaded | AppError::Stopped => PortalError::Unavailable,
            AppError::Internal(m) => PortalError::Internal(m),
            other => PortalError::Refused(other.to_string()),
        }
    }
}

impl From<purse_store::StoreError> for PortalError {
    fn from(e: purse_store::StoreError) -> PortalError {
        AppError::from(e).into()
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PortalError::LoginRequired(next) => {
                let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                return Redirect::to(&format!("/login?{query}")).into_response();
            }
            PortalError::Replay(first) => return first.into_response(),
            PortalError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is no such page, or it is not yours to see.".to_owned()),
            PortalError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PortalError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was not sent from your current Purse session (its security token is missing or stale). Reload the page and try again.".to_owned(),
            ),
            PortalError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PortalError::Fields(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused",
                errors.iter().map(|(f, m)| format!("{}: {m}.", page::field_name(f))).collect::<Vec<_>>().join(" "),
            ),
            PortalError::Refused(m) => (StatusCode::UNPROCESSABLE_ENTITY, "Refused", format!("{}.", capitalized(m.trim_end_matches('.')))),
            PortalError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "Purse cannot reach its database right now. Nothing was changed. It reconnects by itself; try again in a few seconds.".to_owned(),
            ),
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

/// The HTML answer to a method a page does not take.
pub fn method_not_allowed() -> Response {
    let body = html! {
        section.card.notice.bad id="error" { p { "This page cannot be used that way. Open it from a link or a form." } }
        p { a href="/" { "Back to the start" } }
    };
    page::respond(StatusCode::METHOD_NOT_ALLOWED, page::layout("Not allowed", None, &[], body))
}

/// The HTML "not found" page for paths outside `/v1`.
pub fn not_found() -> Response {
    PortalError::NotFound.into_response()
}

/// Sends one ledger command and says how it ended: posted, or why the ledger refused it.
pub(crate) async fn submit(
    state: &PortalState,
    command: purse_core::Command,
) -> Result<Result<purse_core::Outcome, AppError>, PortalError> {
    let results = state
        .engine
        .submit_async(vec![purse_core::Item::single(command)])
        .await
        .map_err(|e| PortalError::Internal(e.to_string()))?;
    Ok(purse_app::accounts::outcome(&results))
}

/// The resellers and customers a principal may name in a form (at most 1,000), by name.
/// Blocking.
pub(crate) fn visible_parties(
    s: &PortalState,
    who: &purse_app::Principal,
) -> Result<Vec<purse_core::Party>, PortalError> {
    let reader = s.engine.reader();
    let (reseller, own) = match who.role {
        purse_core::Role::Operator => (None, None),
        purse_core::Role::Reseller(me) => (Some(me), Some(me)),
        purse_core::Role::Customer(me) => return Ok(reader.party(me)?.into_iter().collect()),
    };
    let mut parties: Vec<purse_core::Party> =
        own.map(|me| reader.party(me)).transpose()?.flatten().into_iter().collect();
    let query = purse_store::PartyQuery { reseller, limit: 1000, ..Default::default() };
    parties.extend(reader.parties(query)?.into_iter().filter(|p| who.sees_party(p)));
    Ok(parties)
}

/// Runs blocking store reads off the async runtime.
pub(crate) async fn read<T: Send + 'static>(
    state: &PortalState,
    f: impl FnOnce(&PortalState) -> Result<T, PortalError> + Send + 'static,
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
            li {
                form.filters method="post" action="/settings/language" id="language-form" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    @let chosen = viewer.user.lang.clone().unwrap_or_default();
                    @let options: Vec<(&str, &str)> = std::iter::once(("", "As the browser prefers"))
                        .chain(i18n::Lang::ALL.iter().map(|l| (l.code(), l.name())))
                        .collect();
                    (page::select("Language", "lang", &options, &chosen, None))
                    button type="submit" id="save-language" { "Save language" }
                }
            }
            li { a href="/keys" { "API keys" } }
            @if viewer.may(Action::ListUsers) { li { a href="/users" { "Users" } } }
            li { a href="/audit" id="audit-link" { "Audit log" } " — every settings change: who, when, before, after" }
            @if viewer.may(Action::ListCustomerClasses) { li { a href="/classes" id="classes-link" { "Customer classes" } " — subscriber transfers and the maximum possible increase" } }
            @if viewer.may(Action::ListDunningPolicies) { li { a href="/dunning" id="dunning-link" { "Dunning policies" } " — when invoices are due, reminders, suspension" } }
            @if viewer.may(Action::CreateTaxRate) { li { a href="/taxes" id="taxes-link" { "Tax rates" } " — the rates invoices and top-ups carry" } }
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
    Ok(page::ok(page::layout(
        "Account Settings",
        Some(&viewer),
        &[("Settings", "/settings"), ("Account Settings", "")],
        body,
    )))
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

/// Settings → Language: the portal's language for this user, kept with the user.
async fn choose_language(
    State(state): State<PortalState>,
    viewer: Viewer,
    form: session::Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let lang = match form.get("lang") {
        "" => None,
        code => {
            Some(i18n::Lang::parse(code).ok_or_else(|| PortalError::field("lang", "choose a language from the list"))?)
        }
    };
    let user = viewer.user.id;
    read(&state, move |s| Ok(s.access.set_user_lang(user, lang.map(i18n::Lang::code))?)).await?;
    Ok(done("/settings", "The language was saved."))
}

/// Redirects back to a page after a change, as HTTP's "see other".
pub(crate) fn see_other(path: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, path.to_owned())]).into_response()
}

/// The answer to a form that worked: back to `path` (post/redirect/get, so reloading the page
/// submits nothing again), where `message` says once what happened.
pub(crate) fn done(path: &str, message: &str) -> Response {
    let value = serde_urlencoded::to_string([("m", message)]).unwrap_or_default();
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=300",
        session::FLASH_COOKIE,
        value.strip_prefix("m=").unwrap_or("")
    );
    let mut response = see_other(path);
    session::add_cookie(&mut response, &cookie);
    response
}
