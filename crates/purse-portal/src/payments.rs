//! Automatic recharge and Pay Now (seeds 000, 002, 004): a customer's recharge settings
//! (threshold, recharge amount or target, method, caps, e-mails), its saved card, Pay Now
//! with a receipt, and its recharges and top-up invoices. Staff and the customer's admin
//! share the page; the forms use the API's checks, and errors come back next to the field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use purse_core::{PartyKind, Role, Scope};
use serde_json::Value;

use super::alerts::list;
use super::page::error_for;
use super::page::{self, field, field_for};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::payments::{self as api, AutoRechargeBody, CardBody, PayNowBody, RechargeBody};

const FIELDS: [&str; 8] =
    ["enabled", "method", "threshold", "recharge_amount", "target_balance", "per_day_max", "month_cap", "emails"];

pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render(state, Arc::new(viewer), id, None, Vec::new()).await
}

async fn render(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (name, settings, due, recharges, caps) = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let PartyKind::Customer { currency, .. } = party.kind else { return Err(PortalError::NotFound) };
        let c = s.currency("currency", currency)?;
        let settings = api::settings_view(s, &party, &c)?;
        // Nothing due: the amount is left for the payer to write.
        let due = Some(api::amount_due(s, &party)?).filter(|d| d.is_positive()).map(|d| c.format(d));
        let recharges: Vec<Value> =
            s.payments.recharges(Some(party.id), 20)?.iter().map(|r| api::recharge_view(r, &c)).collect();
        let caps = api::caps_view(s, &party, &c)?;
        Ok((party.name, settings, due, recharges, caps))
    })
    .await?;
    let text = |k: &str| match &settings[k] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => {
            if *b {
                "on".into()
            } else {
                String::new()
            }
        }
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
        _ => String::new(),
    };
    // Only the submitted form's fields are in `entered`: the recharge form after a refused
    // Pay Now shows the saved settings.
    let value = |k: &str| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or_else(|| text(k));
    let writable = viewer.user.scope == Scope::ReadWrite;
    let configured = settings["card_payments_configured"] == true;
    let card = settings["card"]["last4"]
        .as_str()
        .map(|l| format!("{} ending {l}", card_brand(settings["card"]["brand"].as_str().unwrap_or(""))));
    let chosen = value("method");
    // The reseller's master wallet is the reseller's money (the one policy): who may not choose
    // it is not offered it, and where staff chose it, sees its amounts without editing them.
    let master = purse_core::recharge::RechargeMethod::MasterAccount.as_str();
    let staff_only = !purse_app::policy::may_set(viewer.user.role, purse_app::policy::Field::MasterAccountRecharge);
    let methods: Vec<_> = purse_core::recharge::RechargeMethod::ALL
        .into_iter()
        .filter(|m| !staff_only || m.as_str() != master || chosen == master)
        .collect();
    let locked = staff_only && text("method") == master;
    let locked_fields = [
        (format!("Automatic Recharge Threshold ({})", text("currency")), "threshold"),
        ("Automatic Recharge Amount".to_owned(), "recharge_amount"),
        ("…or recharge up to this balance instead".to_owned(), "target_balance"),
        ("Recharges per day at most".to_owned(), "per_day_max"),
        ("Monthly cap (optional)".to_owned(), "month_cap"),
    ];
    let action = format!("/customers/{id}/recharge");
    // Pay Now's own id: new each time the form is shown, also after a refused one.
    let request = page::new_request_id()?;
    let currency = text("currency");
    let body = html! {
        (page::summary(&error))
        @if let Some(reason) = settings["disabled_reason"].as_str() {
            p.notice.bad id="recharge-disabled" { "Auto-recharge is off: " (reason) }
        }
        @match caps["held_back"].as_str() {
            Some("daily_limit") => { p.notice.bad id="recharge-held" { (format!("No automatic recharge now: the limit of {} a day is reached. They start again tomorrow; Pay Now works meanwhile.", caps["per_day_max"])) } }
            Some(_) => { p.notice.bad id="recharge-held" { (format!("No automatic recharge now: this month's cap of {} {} is reached. They start again next month; Pay Now works meanwhile.", caps["month_cap"].as_str().unwrap_or(""), text("currency"))) } }
            None => {}
        }
        @if !configured { p.notice id="cards-not-configured" { "Card payments are not configured on this server (no Stripe endpoint): Pay Now and the card method are unavailable." } }
        h2 { "Pay Now" }
        @if writable && configured {
            form.card method="post" action=(format!("{action}/pay-now")) id="pay-now-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                // The form's own id: sent twice (a double click, the browser's resend), it pays once.
                input type="hidden" name="request" value=(request);
                (field(&match &due { Some(d) => format!("Amount ({currency}); amount due: {d}"), None => format!("Amount ({currency}); nothing is due") }, "amount", "text", &entered.as_ref().and_then(|e| e.get("amount").cloned()).or_else(|| due.clone()).unwrap_or_default(), error_for(&error, "amount")))
                @match &card {
                    Some(c) => p.muted id="saved-card" { "Pays with the saved " (c) "." },
                    None => {
                        p.muted { "No card is saved: this first online top-up saves it (details go to Stripe only)." }
                        (field_for("Card number", "card_number", "cc-number", "numeric", error_for(&error, "card.number").or(error_for(&error, "card"))))
                        (field_for("Expiry month", "card_exp_month", "cc-exp-month", "numeric", error_for(&error, "card.exp_month")))
                        (field_for("Expiry year", "card_exp_year", "cc-exp-year", "numeric", error_for(&error, "card.exp_year")))
                        (field_for("CVC", "card_cvc", "cc-csc", "numeric", error_for(&error, "card.cvc")))
                        (field("Then recharge automatically below (threshold, optional)", "auto_threshold", "text", "", error_for(&error, "auto_recharge.threshold")))
                        (field("by (recharge amount)", "auto_amount", "text", "", error_for(&error, "auto_recharge.recharge_amount")))
                    }
                }
                @if card.is_some() { @if let Some(e) = error_for(&error, "card") { p.error id="card-error" { (e) } } }
                button type="submit" id="pay-now" { "Pay Now" }
            }
        }
        h2 { "Automatic recharge" }
        @if writable {
            form.card method="post" action=(action.clone()) id="recharge-settings" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                div.field {
                    label { input type="checkbox" name="enabled" id="enabled" value="on" checked[value("enabled") == "on"]; " Enable auto-trigger" }
                }
                div.field.invalid[error_for(&error, "method").is_some()] {
                    label for="method" { "Payment method" }
                    select id="method" name="method" {
                        @for m in &methods { option value=(m.as_str()) selected[chosen == m.as_str()] { (m.title()) } }
                    }
                    @if let Some(e) = error_for(&error, "method") { p.error { (e) } }
                }
                @if locked {
                    p.muted id="set-by-reseller" { "Your reseller recharges this account from its master account and sets when and how much. You may turn it off, or change the e-mails." }
                    dl.facts id="reseller-recharge" {
                        @for (label, name) in &locked_fields {
                            dt { (label) } dd { @if text(name).is_empty() { "—" } @else { (text(name)) } }
                        }
                    }
                    @for (_, name) in &locked_fields { input type="hidden" name=(name) value=(text(name)); }
                } @else {
                    (field(&format!("Automatic Recharge Threshold ({currency})"), "threshold", "text", &value("threshold"), error_for(&error, "threshold")))
                    (field("Automatic Recharge Amount", "recharge_amount", "text", &value("recharge_amount"), error_for(&error, "recharge_amount")))
                    (field("…or recharge up to this balance instead", "target_balance", "text", &value("target_balance"), error_for(&error, "target_balance")))
                    (field("Recharges per day at most", "per_day_max", "text", &value("per_day_max"), error_for(&error, "per_day_max")))
                    (field("Monthly cap (optional)", "month_cap", "text", &value("month_cap"), error_for(&error, "month_cap")))
                }
                (field("E-mails to be alerted (comma-separated)", "emails", "text", &value("emails"), error_for(&error, "emails")))
                @if let Some(c) = &card { p.muted { "Saved card: " (c) } }
                button type="submit" id="save-recharge" { "Update" }
            }
        }
        h2 { "Recharges and card payments" }
        div.scroll {
            table id="recharges" {
                thead { tr { th { "#" } th { "Created" } th { "Method" } th { "Why" } th.num { "Amount" } th { "Status" } th { "Error" } } }
                tbody {
                    @for r in &recharges {
                        tr { td { (r["id"]) } td { (viewer.when_text(&r["created_at"])) } td { (page::words(r["method"].as_str().unwrap_or(""))) } td { (page::words(r["reason"].as_str().unwrap_or(""))) }
                             td.num { (r["amount"].as_str().unwrap_or("")) } td { (page::words(r["status"].as_str().unwrap_or(""))) } td { (r["error"].as_str().unwrap_or("")) } }
                    }
                    @if recharges.is_empty() { tr { td colspan="7" .muted { "No recharges yet." } } }
                }
            }
        }
        p { a.button.secondary href=(format!("/customers/{id}/invoices")) id="invoices-link" { "Invoices, payments and receipt vouchers" } }
    };
    let staff = !matches!(viewer.user.role, Role::Customer(_));
    let title = format!("Automatic recharge and Pay Now — {name}");
    let crumbs: Vec<(&str, String)> = if staff {
        vec![
            ("Customers", "/customers".into()),
            (name.as_str(), format!("/customers/{id}")),
            ("Payment settings", String::new()),
        ]
    } else {
        vec![
            ("Settings", "/settings".into()),
            ("Billing", "/settings/account/billing".into()),
            ("Balance Details", "/settings/account/billing/balance-details".into()),
            ("Pay Now", String::new()),
        ]
    };
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

pub async fn save(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let saved = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let PartyKind::Customer { currency, .. } = party.kind else { return Err(PortalError::NotFound) };
        let c = s.currency("currency", currency)?;
        let opt = |k: &str| Some(e[k].clone()).filter(|t| !t.is_empty());
        // Not a number: zero, which the rules refuse by name along with every other field.
        let per_day = opt("per_day_max").map(|t| t.parse().unwrap_or(0));
        let body = RechargeBody {
            enabled: e["enabled"] == "on",
            method: e["method"].clone(),
            currency: None,
            threshold: e["threshold"].clone(),
            recharge_amount: opt("recharge_amount").filter(|_| opt("target_balance").is_none()),
            target_balance: opt("target_balance"),
            per_day_max: per_day,
            month_cap: opt("month_cap"),
            emails: list(&e["emails"]),
        };
        api::save_settings(s, &v.who, &party, &c, body).map_err(PortalError::keep_field)?;
        Ok(party.id)
    })
    .await;
    match saved {
        Ok(party) => {
            read(&state, move |s| Ok(purse_app::alerts::sync_levels(s, None, Some(party))?)).await?;
            Ok(done(&format!("/customers/{id}/recharge"), "The automatic recharge settings were saved."))
        }
        Err(PortalError::Fields(errors)) => render(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

pub async fn pay_now(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let amount = form.get("amount").trim().to_owned();
    // Payments are looked up by the form's id among the customer's own (see `NewRecharge`).
    let request = match form.get("request").trim() {
        "" => None,
        r if r.len() <= 100 && r.bytes().all(|b| b.is_ascii_graphic()) => Some(format!("portal:{r}")),
        _ => {
            let (entered, error) = (HashMap::from([("amount".to_owned(), amount)]), "this form was changed: pay again");
            return render(state, Arc::new(viewer), id, Some(entered), vec![("request".to_owned(), error.to_owned())])
                .await;
        }
    };
    let number = form.get("card_number").trim().to_owned();
    let card = if number.is_empty() {
        None
    } else {
        let month = form
            .get("card_exp_month")
            .trim()
            .parse()
            .map_err(|_| PortalError::field("card.exp_month", "the expiry month must be 1 to 12"));
        let year = form
            .get("card_exp_year")
            .trim()
            .parse()
            .map_err(|_| PortalError::field("card.exp_year", "the expiry year must be four digits"));
        match (month, year) {
            (Ok(exp_month), Ok(exp_year)) => {
                Some(CardBody { number, exp_month, exp_year, cvc: form.get("card_cvc").trim().to_owned() })
            }
            (month, year) => {
                let mut errors = Vec::new();
                for e in [month.err(), year.err()].into_iter().flatten() {
                    match e {
                        PortalError::Fields(each) => errors.extend(each),
                        other => return Err(other),
                    }
                }
                let entered = HashMap::from([("amount".to_owned(), amount)]);
                return render(state, Arc::new(viewer), id, Some(entered), errors).await;
            }
        }
    };
    let auto = match (form.get("auto_threshold").trim(), form.get("auto_amount").trim()) {
        ("", "") => None,
        (t, a) => Some(AutoRechargeBody { threshold: t.to_owned(), recharge_amount: a.to_owned() }),
    };
    let body = PayNowBody { amount: Some(amount.clone()).filter(|a| !a.is_empty()), card, auto_recharge: auto.clone() };
    let viewer = Arc::new(viewer);
    let v = viewer.clone();
    let paid = read(&state, move |s| {
        let (done, c) = api::pay_now(s, &v.who, id, body, request).map_err(PortalError::keep_field)?;
        Ok(api::recharge_view(&done, &c))
    })
    .await;
    match paid {
        Ok(receipt) => {
            if auto.is_some() {
                let customer = receipt["customer"].as_u64().map(purse_core::PartyId);
                read(&state, move |s| Ok(purse_app::alerts::sync_levels(s, None, customer)?)).await?;
            }
            // Post/redirect/get: reloading the page never offers to pay again.
            let message = format!(
                "Payment received: {} {} by card, credited to the balance. Its receipt voucher is e-mailed and listed under Invoices.",
                receipt["amount"].as_str().unwrap_or(""),
                receipt["currency"].as_str().unwrap_or("")
            );
            Ok(done(&format!("/customers/{id}/recharge"), &message))
        }
        Err(PortalError::Fields(errors)) => {
            let entered = HashMap::from([("amount".to_owned(), amount)]);
            render(state, viewer, id, Some(entered), errors).await
        }
        Err(other) => Err(other),
    }
}

/// A receipt voucher's PDF, for whoever may see its customer.
pub async fn receipt_pdf(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (r, pdf) = read(&state, move |s| api::visible_receipt(s, &who, id).map_err(|_| PortalError::NotFound)).await?;
    Ok(page::pdf(&r.display_number(), pdf))
}

/// "E-mail again": the receipt voucher goes to the billing e-mail once more.
pub async fn email_receipt(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let viewer = Arc::new(viewer);
    let who = viewer.who;
    let sent = read(&state, move |s| api::email_receipt(s, &who, id).map_err(PortalError::keep_field)).await;
    match sent {
        Ok((r, _)) => Ok(done(
            &format!("/customers/{}/invoices#receipts", r.party.0),
            "The receipt voucher was e-mailed again to the billing e-mail.",
        )),
        Err(PortalError::Fields(errors)) => {
            let party = read(&state, move |s| Ok(s.payments.receipt(id)?.map(|r| r.party.0)))
                .await?
                .ok_or(PortalError::NotFound)?;
            render(state, viewer, party, None, errors).await
        }
        Err(other) => Err(other),
    }
}

/// Shown on Balance Details: the recharge settings in brief and the Pay Now button.
pub(crate) fn summary(settings: &Value, id: u64) -> maud::Markup {
    let threshold = settings["threshold"].as_str().unwrap_or("");
    let method = page::words(settings["method"].as_str().unwrap_or("")).to_lowercase();
    let rule = match (settings["recharge_amount"].as_str(), settings["target_balance"].as_str()) {
        (Some(a), _) => format!("Automatic recharge: below {threshold}, recharge {a} by {method}."),
        (None, Some(t)) => format!("Automatic recharge: below {threshold}, recharge up to {t} by {method}."),
        _ => format!("Automatic recharge: below {threshold} by {method}."),
    };
    html! {
        div.card id="recharge-summary" {
            @if settings["enabled"] == true {
                p id="recharge-rule" { (rule) }
            } @else {
                p { "Automatic recharge is off." @if let Some(r) = settings["disabled_reason"].as_str() { " " span.bad { (r) } } }
            }
            a.button href=(format!("/customers/{id}/recharge")) id="pay-now-link" { "Pay Now" }
            " "
            a.button.secondary href=(format!("/customers/{id}/recharge#recharge-settings")) id="recharge-link" { "Automatic recharge settings" }
        }
    }
}

/// A card's brand as Stripe names it (`visa`, `amex`…), as people write it.
fn card_brand(brand: &str) -> &str {
    match brand {
        "visa" => "Visa",
        "mastercard" => "Mastercard",
        "amex" => "American Express",
        "discover" => "Discover",
        "diners" => "Diners Club",
        "jcb" => "JCB",
        "unionpay" => "UnionPay",
        "" | "unknown" => "card",
        other => other,
    }
}
