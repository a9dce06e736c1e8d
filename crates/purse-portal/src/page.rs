//! The portal's frame: the page layout and navigation, the stylesheet, error pages, and
//! how amounts, times and form fields are shown.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use purse_core::{Amount, Currency, Role};

use super::session::Viewer;

const CSS: &str = include_str!("portal.css");

pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

/// An amount as people read it: `1,234.50 USD`, grouped by thousands, at the currency's scale.
pub fn money(currency: Currency, amount: Amount) -> String {
    format!("{} {}", grouped(&currency.format(amount)), currency.code)
}

/// Thousands separators in a decimal string.
pub fn grouped(decimal: &str) -> String {
    let (sign, digits) = decimal.strip_prefix('-').map_or(("", decimal), |d| ("-", d));
    let (whole, frac) = digits.split_once('.').map_or((digits, None), |(w, f)| (w, Some(f)));
    let mut out = String::with_capacity(decimal.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A page of the portal, with the navigation of the viewer's role.
pub fn layout(title: &str, viewer: Option<&Viewer>, crumbs: &[(&str, &str)], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Purse" }
                link rel="stylesheet" href="/assets/portal.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Purse" }
                    @if let Some(v) = viewer {
                        nav { (nav(v)) }
                        div.me {
                            span.who { (v.user.name) " · " (role_name(v)) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.link type="submit" id="logout" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" {
                    // The customer list is the staff's way in (`customers::list`): a customer's
                    // trail starts at its own page.
                    @let crumbs: Vec<_> = crumbs
                        .iter()
                        .filter(|(_, href)| *href != "/customers" || viewer.is_none_or(|v| v.own_customer().is_none()))
                        .collect();
                    @if !crumbs.is_empty() {
                        ol.crumbs {
                            @for (label, href) in crumbs {
                                li { @if href.is_empty() { (label) } @else { a href=(href) { (label) } } }
                            }
                        }
                    }
                    h1 { (title) }
                    @if let Some(message) = viewer.and_then(|v| v.flash.as_deref()) {
                        p.notice.good id="flash" role="status" { (message) }
                    }
                    (body)
                }
                @if let Some(v) = viewer {
                    footer.muted id="zone" { (format!("Times are shown in {}.", v.zone.name())) }
                }
            }
        }
    }
}

fn nav(v: &Viewer) -> Markup {
    html! {
        @match v.user.role {
            Role::Customer(p) => {
                a href=(format!("/customers/{}", p.0)) { "Overview" }
                a href="/settings" { "Settings" }
                a href="/settings/account/billing/balance-details" { "Balance Details" }
                a href=(format!("/customers/{}/alerts", p.0)) { "Alerts" }
                a href="/notifications" { "Notifications" }
            }
            Role::Reseller(me) => {
                a href="/customers" { "Customers" }
                a href=(format!("/resellers/{}", me.0)) id="nav-master-wallet" { "Master wallet" }
                a href="/users" { "Users" }
                a href="/profiles" { "Low Balance Profiles" }
                a href="/rate-plans" { "Rate plans" }
                a href="/notifications" { "Notifications" }
                a href="/settings" { "Settings" }
            }
            Role::Operator => {
                a href="/customers" { "Customers" }
                a href="/resellers" id="nav-resellers" { "Resellers" }
                a href="/users" { "Users" }
                a href="/profiles" { "Low Balance Profiles" }
                a href="/rate-plans" { "Rate plans" }
                a href="/notifications" { "Notifications" }
                a href="/settings" { "Settings" }
            }
        }
        a href="/keys" { "API keys" }
    }
}

/// "Operator admin", "Reseller read-only (Northwind)", ...
pub fn role_name(v: &Viewer) -> String {
    let role = match v.user.role {
        Role::Operator => "Operator",
        Role::Reseller(_) => "Reseller",
        Role::Customer(_) => "Customer",
    };
    let scope = match v.user.scope {
        purse_core::Scope::ReadWrite => "admin",
        purse_core::Scope::Read => "read-only",
    };
    match &v.party {
        Some(p) => format!("{role} {scope} ({})", p.name),
        None => format!("{role} {scope}"),
    }
}

/// What is wrong with a form: each wrong field with its message, in the form's order.
pub type Errors = Vec<(String, String)>;

/// The message of a wrong field (or of one of its items, `emails[2]` for `emails`).
pub fn error_for<'a>(errors: &'a [(String, String)], name: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(f, _)| f == name || f.strip_prefix(name).is_some_and(|rest| rest.starts_with('[')))
        .map(|(_, m)| m.as_str())
}

/// The summary above a form that was refused: every wrong field at once, each named in words
/// and linked to its input.
pub fn summary(errors: &[(String, String)]) -> Markup {
    html! {
        @if let [(f, m)] = errors {
            p.notice.bad id="form-error" role="alert" { (field_name(f)) ": " (m) }
        } @else if !errors.is_empty() {
            div.notice.bad id="form-error" role="alert" {
                p { (errors.len()) " fields need a change:" }
                ul {
                    @for (f, m) in errors { li { (field_name(f)) ": " (m) } }
                }
            }
        }
    }
}

/// A labelled input that shows its error next to it and keeps what was entered.
pub fn field(label: &str, name: &str, kind: &str, value: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(value) aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("{name}-error"))];
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

/// A text field the browser and a phone's keyboard know the purpose of: `autocomplete` (e.g.
/// `cc-number`) and `inputmode` (e.g. `numeric`).
pub fn field_for(label: &str, name: &str, autocomplete: &str, inputmode: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            input id=(name) name=(name) type="text" value="" autocomplete=(autocomplete) inputmode=(inputmode)
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| format!("{name}-error"))];
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

/// A field's name as people read it in an error summary: `temporary_increase.amount` is
/// "Temporary increase amount", `alert_emails[1]` is "Alert emails (the 2nd)".
pub fn field_name(path: &str) -> String {
    let (base, index) = match path.split_once('[') {
        Some((b, rest)) => (b, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (path, None),
    };
    // Names a form uses twice on one page (two reasons) read as the one word.
    let base = match base {
        "whole_reason" | "cn_reason" => "reason",
        // The credit note form's fields, beside the payment form's on an invoice's page.
        "cn_amount" => "amount to credit",
        "cn_receipt" => "payment to refund through",
        // The dunning policy's fields, as its form names them.
        "payment_terms_days" => "due after",
        "reminder_days" => "reminders",
        "suspend_after_days" => "suspend after",
        "suspend_below" => "suspend a prepaid customer below",
        // The automatic recharge's fields, as its form names them.
        "target_balance" => "recharge up to this balance",
        "per_day_max" => "recharges per day at most",
        "month_cap" => "monthly cap",
        // A rate deck's text, as its form names it.
        "csv" => "deck",
        other => other,
    };
    let words = base.replace(['_', '.'], " ");
    let mut name = crate::sentence(words.trim());
    if let Some(i) = index {
        let n = i + 1;
        let suffix = match (n % 10, n % 100) {
            (1, 11) | (2, 12) | (3, 13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        name.push_str(&format!(" (the {n}{suffix})"));
    }
    name
}

/// An internal code as people read it: `master_account` is "Reseller's master account",
/// `partially_paid` is "Partially paid".
pub fn words(code: &str) -> String {
    let known = match code {
        "master_account" => "Reseller's master account",
        "top_up" => "Top-up",
        "pay_now" => "Pay Now",
        "auto" | "automatic" => "Automatic",
        "manual" => "By hand",
        "card" => "Card",
        "invoice" => "Top-up invoice",
        "bank_transfer" => "Bank transfer",
        "cheque" => "Cheque",
        "in_flight" | "pending" => "In progress",
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        _ => "",
    };
    if known.is_empty() {
        crate::sentence(&code.replace('_', " "))
    } else {
        known.to_owned()
    }
}

/// A time zone field: typed, with every IANA name offered as the viewer types.
pub fn zone_field(label: &str, name: &str, value: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            input id=(name) name=(name) type="text" value=(value) list="time-zones" autocomplete="off"
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| format!("{name}-error"))];
            datalist id="time-zones" {
                @for zone in purse_core::time::zone_names() { option value=(zone) {} }
            }
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

/// A `<select>` with the chosen option kept.
pub fn select(label: &str, name: &str, options: &[(&str, &str)], chosen: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            select id=(name) name=(name) aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("{name}-error"))] {
                @for (value, text) in options {
                    option value=(value) selected[*value == chosen] { (text) }
                }
            }
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

/// A whole page as a response.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    let mut response = (status, Html(page.into_string())).into_response();
    // Pages show balances and secrets (a new API key): never kept by a shared cache.
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response.headers_mut().insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

pub fn ok(page: Markup) -> Response {
    respond(StatusCode::OK, page)
}

/// A PDF document to download as `{name}.pdf`.
pub fn pdf(name: &str, bytes: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}.pdf\"");
    ([(header::CONTENT_TYPE, "application/pdf".to_owned()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response()
}

/// A form's own id (its `request` field as entered, else a new one), so that submitting the
/// same form twice posts once.
pub fn request_id(entered: &std::collections::HashMap<String, String>) -> Result<String, crate::PortalError> {
    match entered.get("request").map(String::as_str) {
        None | Some("") => new_request_id(),
        Some(r) => Ok(r.to_owned()),
    }
}

/// A new id for a form that moves money (never a shared one: without the kernel's
/// randomness the page fails rather than give two forms the same id).
pub fn new_request_id() -> Result<String, crate::PortalError> {
    Ok(format!("portal-{}", purse_app::secrets::random_hex::<12>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands_at_the_currency_scale() {
        let usd = Currency::new(purse_core::CurrencyCode::parse("USD").unwrap(), 2).unwrap();
        assert_eq!(money(usd, Amount(123_456_789)), "1,234,567.89 USD");
        assert_eq!(money(usd, Amount(-100_050)), "-1,000.50 USD");
        assert_eq!(money(usd, Amount(5)), "0.05 USD");
        assert_eq!(grouped("123"), "123");
        assert_eq!(grouped("1234"), "1,234");
    }

    #[test]
    fn field_paths_read_as_words() {
        assert_eq!(field_name("temporary_increase.amount"), "Temporary increase amount");
        assert_eq!(field_name("alert_emails[1]"), "Alert emails (the 2nd)");
        assert_eq!(field_name("items[10]"), "Items (the 11th)");
        assert_eq!(field_name("name"), "Name");
        // A form's own words where the field's name would read otherwise.
        assert_eq!(field_name("per_day_max"), "Recharges per day at most");
        assert_eq!(field_name("month_cap"), "Monthly cap");
    }
}
