//! Invoices and payments (seeds 002, 003): a customer's invoices (usage and top-up) with
//! what is allocated and due, its payments with their receipt vouchers and allocations, the
//! unallocated payments, its billing cycle, and one page per invoice with its lines, its
//! allocations, its PDF, and (staff) its payment and voiding. The forms use the API's
//! checks; errors come back next to the field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use purse_core::{Amount, PartyKind, Role, Scope};
use purse_store::BillingSettings;
use serde_json::Value;

use super::page::error_for;
use super::page::{self, field};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::invoices::{self as api, BillingBody, InvoicePaymentBody};
use purse_app::payments as pay;

fn staff(viewer: &Viewer) -> bool {
    !matches!(viewer.user.role, Role::Customer(_))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An amount to subtract, as shown: `0.0022` becomes `-0.0022`, `-0.0010` becomes `0.0010`.
fn negated(v: &Value) -> String {
    let text = s(v);
    match text.strip_prefix('-') {
        Some(positive) => positive.to_owned(),
        None if text.trim_start_matches(['0', '.']).is_empty() => text.to_owned(),
        None => format!("-{text}"),
    }
}

/// `/customers/{id}/invoices`.
pub async fn list(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render_list(state, Arc::new(viewer), id, None, Vec::new()).await
}

async fn render_list(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (name, currency, invoices, receipts, unallocated, billing) = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let PartyKind::Customer { currency, .. } = party.kind else { return Err(PortalError::NotFound) };
        let c = s.currency("currency", currency)?;
        let invoices: Vec<Value> =
            s.payments.invoices(Some(party.id), 100)?.iter().map(|i| api::invoice_view(i, &c)).collect();
        let receipts = s
            .payments
            .receipts(Some(party.id), 100)?
            .iter()
            .map(|r| pay::receipt_view(s, r))
            .collect::<Result<Vec<_>, _>>()?;
        let unallocated = c.format(Amount(s.payments.unallocated(party.id)?));
        let billing = api::billing_view(
            &s.payments.billing_settings(party.id)?.unwrap_or_else(|| BillingSettings::default_for(party.id)),
            s,
        )?;
        Ok((party.name, c.code.to_string(), invoices, receipts, unallocated, billing))
    })
    .await?;
    let staff = staff(&viewer) && viewer.user.scope == Scope::ReadWrite;
    let writable = viewer.user.scope == Scope::ReadWrite;
    let value = |k: &str, shown: String| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or(shown);
    let body = html! {
        (page::summary(&error))
        div.figures {
            div.figure { div.label { "Unallocated payments" } div.value id="unallocated" { (unallocated) " " (currency) } }
            div.figure { div.label { "Billing cycle" } div.value id="billing-cycle" { "monthly, day " (billing["cycle_day"]) ", " (s(&billing["time_zone"])) } }
            div.figure { div.label { "Next invoice" } div.value id="next-invoice" { (viewer.date_text(&billing["next_invoice_at"])) } }
        }
        p.muted { "Payments are applied to open invoices oldest first; what is left is an unallocated payment, applied to the next invoices automatically. It is not a cash reserve: every payment was credited to the balance when it was received." }
        @if staff {
            form.card method="post" action=(format!("/customers/{id}/billing-settings")) id="billing-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("Cycle day (1-28)", "cycle_day", "text", &value("cycle_day", billing["cycle_day"].to_string()), error_for(&error, "cycle_day")))
                (page::zone_field("Time zone (e.g. Europe/Berlin; days, cycles and caps follow it)", "time_zone", &value("time_zone", s(&billing["time_zone"]).to_owned()), error_for(&error, "time_zone")))
                button type="submit" id="save-billing" { "Save billing cycle" }
            }
            form.inline method="post" action=(format!("/customers/{id}/invoices")) id="issue-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                button type="submit" id="issue-invoice" { "Issue invoice now (everything uninvoiced)" }
                @if let Some(e) = error_for(&error, "customer") { p.error id="issue-error" { (e) } }
            }
        }
        h2 { "Invoices" }
        div.scroll {
            table id="invoices" {
                thead { tr { th { "Number" } th { "Kind" } th { "Issued" } th { "Period" } th.num { "Total" } th.num { "Paid" } th.num { "Due" } th { "Status" } th { "PDF" } } }
                tbody {
                    @for i in &invoices {
                        tr {
                            td { a.invoice-link href=(format!("/invoices/{}", i["id"])) { (s(&i["number"])) } }
                            td { (page::words(s(&i["kind"]))) }
                            td { (viewer.date_text(&i["created_at"])) }
                            td { @if i["period_start"].is_string() { (viewer.date_text(&i["period_start"])) " – " (viewer.date_text(&i["period_end"])) } }
                            td.num { (s(&i["total"])) }
                            td.num { (s(&i["allocated"])) }
                            td.num { (s(&i["due"])) }
                            td.status { (page::words(s(&i["status"]))) }
                            td { a.invoice-pdf href=(format!("/invoices/{}/pdf", i["id"])) { "PDF" } }
                        }
                    }
                    @if invoices.is_empty() { tr { td colspan="9" .muted { "No invoices yet." } } }
                }
            }
        }
        h2 { "Payments and receipt vouchers" }
        div.scroll {
            table id="receipts" {
                thead { tr { th { "Receipt" } th { "Received" } th.num { "Amount" } th { "Paid by" } th.num { "Unallocated" } th { "Allocated to" } @if writable { th {} } } }
                tbody {
                    @for r in &receipts {
                        tr {
                            td { a.receipt-link href=(format!("/receipts/{}", r["id"])) { (s(&r["number"])) } " " a.receipt-pdf href=(format!("/receipts/{}/pdf", r["id"])) { "(PDF)" } }
                            td { (viewer.date_text(&r["paid_at"])) }
                            td.num { (s(&r["amount"])) }
                            td { (page::words(s(&r["method"]))) @if r["reversed_at"].is_string() { " " span.bad { "(reversed)" } } }
                            td.num { (s(&r["unallocated"])) }
                            td {
                                @for a in r["allocations"].as_array().into_iter().flatten() {
                                    div.allocation {
                                        (s(&a["amount"])) " → " a href=(format!("/invoices/{}", a["invoice"])) { (s(&a["invoice_number"])) }
                                        @if a["released_at"].is_string() { " " span.muted { "(released: " (s(&a["release_reason"])) ")" } }
                                    }
                                }
                            }
                            @if writable {
                                td {
                                    form.inline method="post" action=(format!("/receipts/{}/email", r["id"])) {
                                        input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                                        button.secondary type="submit" id=(format!("email-receipt-{}", r["id"])) { "E-mail again" }
                                    }
                                }
                            }
                        }
                    }
                    @if receipts.is_empty() { tr { td colspan="7" .muted { "No payments received yet." } } }
                }
            }
        }
    };
    let title = format!("Invoices and payments — {name}");
    let crumbs = crumbs(&viewer, &name, id, "Invoices and payments");
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

fn crumbs<'a>(viewer: &Viewer, name: &'a str, id: u64, last: &'a str) -> Vec<(&'a str, String)> {
    if staff(viewer) {
        vec![("Customers", "/customers".into()), (name, format!("/customers/{id}")), (last, String::new())]
    } else {
        vec![("Settings", "/settings".into()), ("Billing", "/settings/account/billing".into()), (last, String::new())]
    }
}

/// Saves the billing cycle.
pub async fn save_billing(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["cycle_day", "time_zone"]);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let saved = read(&state, move |s| {
        let party = s.party_of_kind(&v.who, id, false)?;
        // Not a number: the application's own check refuses it beside the time zone's.
        let cycle_day = e["cycle_day"].trim().parse().unwrap_or(0);
        api::save_billing(s, &v.who, &party, &BillingBody { cycle_day, time_zone: e["time_zone"].clone() })
            .map_err(PortalError::keep_field)?;
        Ok(())
    })
    .await;
    match saved {
        Ok(()) => Ok(done(&format!("/customers/{id}/invoices"), "The billing settings were saved.")),
        Err(PortalError::Fields(errors)) => render_list(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

/// "Issue invoice now".
pub async fn issue(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let who = viewer.who;
    match read(&state, move |s| api::issue_now(s, who, id).map_err(PortalError::keep_field)).await? {
        Some(i) => Ok(done(&format!("/invoices/{}", i.id), &format!("Invoice {} was issued.", i.display_number()))),
        None => {
            let error = ("customer".to_owned(), "nothing to invoice: the customer has no uninvoiced usage".to_owned());
            render_list(state, Arc::new(viewer), id, None, vec![error]).await
        }
    }
}

/// `/invoices/{id}`: one invoice.
pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render_invoice(state, Arc::new(viewer), id, None, Vec::new()).await
}

async fn render_invoice(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (i, name, payments) = read(&state, move |s| {
        let i = api::visible_invoice(s, &who, id).map_err(|_| PortalError::NotFound)?;
        let name = s.engine.reader().party(i.party)?.map(|p| p.name).unwrap_or_default();
        // The payments a credit may be refunded through, by number, amount and date.
        let c = s.currency("currency", i.currency)?;
        let payments: Vec<(String, String)> = s
            .payments
            .receipts(Some(i.party), 50)?
            .iter()
            .filter(|r| r.reversed_at.is_none() && r.refunded < r.amount)
            .map(|r| {
                let when = purse_core::time::format(r.paid_at);
                let shown = format!(
                    "{} · {} {} · {}",
                    r.display_number(),
                    c.format(purse_core::Amount(r.amount)),
                    c.code,
                    &when[..10]
                );
                (r.id.to_string(), shown)
            })
            .collect();
        Ok((api::invoice_detail(s, &i)?, name, payments))
    })
    .await?;
    let customer = i["customer"].as_u64().unwrap_or(0);
    let currency = s(&i["currency"]).to_owned();
    let staff = staff(&viewer) && viewer.user.scope == Scope::ReadWrite;
    let open = matches!(s(&i["status"]), "open" | "partially_paid");
    let value =
        |k: &str, shown: &str| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or_else(|| shown.to_owned());
    let ids = (page::new_request_id()?, page::new_request_id()?);
    let credit_note_request = value("request", &ids.0);
    let pay_request = Some(value("pay_request", "")).filter(|r| !r.is_empty()).unwrap_or(ids.1);
    let body = html! {
        (page::summary(&error))
        dl.facts {
            dt { "Invoice number" } dd id="invoice-number" { (s(&i["number"])) }
            dt { "Kind" } dd { @if s(&i["kind"]) == "usage" { "Usage" } @else { "Top-up" } }
            dt { "Status" } dd id="invoice-status" { (page::words(s(&i["status"]))) @if let Some(r) = i["void_reason"].as_str() { " — " (r) } }
            dt { "Issued" } dd { (viewer.when_text(&i["created_at"])) }
            @if i["due_at"].is_string() && s(&i["status"]) != "void" { dt { "Due on" } dd id="invoice-due-on" { (viewer.when_text(&i["due_at"])) } }
            @if i["period_start"].is_string() { dt { "Billing period" } dd id="invoice-period" { (viewer.when_text(&i["period_start"])) " to " (viewer.when_text(&i["period_end"])) } }
        }
        p { a.button href=(format!("/invoices/{id}/pdf")) id="invoice-pdf" { "Download PDF" } }
        h2 { "Lines" }
        table id="lines" {
            thead { tr { th { "Service" } th.num { "Quantity" } th.num { "Amount (" (currency) ")" } } }
            tbody {
                @for l in i["lines"].as_array().into_iter().flatten() {
                    tr { td { (s(&l["service"])) } td.num { (l["quantity"]) } td.num { (s(&l["amount"])) } }
                }
            }
            tfoot {
                @for c in i["credits"].as_array().into_iter().flatten() {
                    tr.credit { td colspan="2" { (s(&c["label"])) } td.num { (s(&c["amount"])) } }
                }
                @if s(&i["kind"]) == "usage" {
                    tr { td colspan="2" { "Subtotal (as posted)" } td.num id="subtotal" { (s(&i["subtotal"])) } }
                    tr { td colspan="2" { "Rounding carried from the previous invoice" } td.num id="carry-in" { (s(&i["rounding_carried_in"])) } }
                    tr { td colspan="2" { "Rounding carried to the next invoice" } td.num id="carry-out" { (negated(&i["rounding_carried_out"])) } }
                }
                @if i["tax"].is_object() {
                    tr { td colspan="2" { "Net" } td.num id="invoice-net" { (s(&i["net"])) } }
                    tr { td colspan="2" { (s(&i["tax"]["name"])) " " (s(&i["tax"]["percent"])) "%" @if i["tax"]["inclusive"] == true { " (included)" } } td.num id="invoice-tax" { (s(&i["tax"]["amount"])) } }
                }
                tr { th colspan="2" { "Total" } th.num id="invoice-total" { (s(&i["total"])) " " (currency) } }
                tr { td colspan="2" { "Paid" } td.num id="invoice-allocated" { (s(&i["paid"])) } }
                @if i["credit_notes"].as_array().is_some_and(|n| !n.is_empty()) {
                    tr { td colspan="2" { "Credited by credit notes" } td.num id="invoice-credited" { (s(&i["credited"])) } }
                }
                tr { th colspan="2" { "Amount due" } th.num id="invoice-due" { (s(&i["due"])) " " (currency) } }
            }
        }
        h2 { "Payments allocated" }
        table id="allocations" {
            thead { tr { th { "Receipt" } th.num { "Amount" } th { "Allocated" } th { "Released" } } }
            tbody {
                @for a in i["allocations"].as_array().into_iter().flatten() {
                    tr {
                        td { (s(&a["receipt_number"])) }
                        td.num { (s(&a["amount"])) }
                        td { (viewer.when_text(&a["at"])) }
                        td { @if a["released_at"].is_string() { (viewer.when_text(&a["released_at"])) " (" (s(&a["release_reason"])) ")" } }
                    }
                }
                @if i["allocations"].as_array().is_none_or(Vec::is_empty) {
                    @if s(&i["kind"]) == "top_up" && i["paid_at"].is_string() {
                        tr { td colspan="4" id="paid-whole" { "Paid in full by its top-up payment on " (viewer.when_text(&i["paid_at"])) "." } }
                    } @else {
                        tr { td colspan="4" .muted { "No payment is allocated to this invoice." } }
                    }
                }
            }
        }
        @if s(&i["kind"]) == "usage" {
            h2 { "Credit notes" }
            table id="credit-notes" {
                thead { tr { th { "Credit note" } th.num { "Amount" } th { "Applied" } th { "Reason" } th { "Issued" } } }
                tbody {
                    @for n in i["credit_notes"].as_array().into_iter().flatten() {
                        tr {
                            td { a href=(format!("/credit-notes/{}/pdf", n["id"])) { (s(&n["number"])) } }
                            td.num { (s(&n["amount"])) }
                            td {
                                @match s(&n["apply"]) {
                                    "invoice" => { "Off this invoice" }
                                    "unallocated" => { "Credit for invoices due · " (s(&n["drawn"])) " drawn" }
                                    "refund" => { "Refunded" }
                                    _ => { "To the balance" }
                                }
                            }
                            td { (s(&n["reason"])) }
                            td { (viewer.when_text(&n["created_at"])) }
                        }
                    }
                    @if i["credit_notes"].as_array().is_none_or(Vec::is_empty) { tr { td colspan="5" .muted { "No credit note." } } }
                }
            }
            @if let Some(drawn) = i["credits_drawn"].as_array().filter(|d| !d.is_empty()) {
                p id="credits-drawn" {
                    "Credit drawn: "
                    @for (k, d) in drawn.iter().enumerate() {
                        @if k > 0 { ", " }
                        (s(&d["amount"])) " from " a href=(format!("/credit-notes/{}/pdf", d["credit_note"])) { (s(&d["number"])) }
                    }
                }
            }
            @if staff && viewer.may(purse_app::policy::Action::CreateCreditNote) && s(&i["status"]) != "void" {
                form.card method="post" action=(format!("/invoices/{id}/credit-note")) id="credit-note-form" {
                    input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                    input type="hidden" name="request" value=(credit_note_request);
                    (field(&format!("Amount to credit ({currency})"), "cn_amount", "text", &value("cn_amount", ""), error_for(&error, "cn_amount")))
                    @let chosen = value("cn_lines", "");
                    @let chosen: Vec<&str> = chosen.split('\n').collect();
                    @if i["lines"].as_array().is_some_and(|l| !l.is_empty()) {
                        fieldset id="credit-lines" {
                            legend { "Or credit whole lines (with their tax), leaving the amount empty" }
                            @for l in i["lines"].as_array().into_iter().flatten() {
                                div.field {
                                    label {
                                        input type="checkbox" name="cn_lines" value=(s(&l["service"])) checked[chosen.contains(&s(&l["service"]))];
                                        " " (s(&l["service"])) " · " (s(&l["amount"])) " " (currency)
                                    }
                                }
                            }
                        }
                    }
                    (page::select("Apply it", "apply", &[("invoice", "Off what this invoice asks"), ("unallocated", "As credit for the invoices still due, now and later"), ("balance", "To the customer's balance"), ("refund", "Refund it through a payment")], &value("apply", "invoice"), error_for(&error, "apply")))
                    @let choices: Vec<(&str, &str)> = std::iter::once(("", "None")).chain(payments.iter().map(|(a, b)| (a.as_str(), b.as_str()))).collect();
                    (page::select("Payment to refund it through (when refunding)", "cn_receipt", &choices, &value("cn_receipt", ""), error_for(&error, "cn_receipt")))
                    (field("Reason (kept in the audit log)", "cn_reason", "text", &value("cn_reason", ""), error_for(&error, "cn_reason")))
                    button type="submit" id="save-credit-note" { "Issue credit note" }
                }
            }
        }
        @if staff && open {
            h2 { "Record a payment" }
            form.card method="post" action=(format!("/invoices/{id}/pay")) id="pay-invoice-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                // The form's own id: sent twice (a double click, the browser's resend), it records one payment.
                input type="hidden" name="pay_request" value=(pay_request);
                (field(&format!("Amount ({currency})"), "amount", "text", &value("amount", s(&i["due"])), error_for(&error, "amount")))
                div.field {
                    label for="method" { "Method" }
                    select id="method" name="method" {
                        @for (m, label) in [("bank_transfer", "Bank transfer"), ("cheque", "Cheque"), ("cash", "Cash"), ("card", "Card")] { option value=(m) selected[value("method", "bank_transfer") == m] { (label) } }
                    }
                }
                button type="submit" id="pay-invoice" { "Record payment" }
            }
        }
        @if staff && s(&i["status"]) != "void" {
            h2 { "Void" }
            form.card method="post" action=(format!("/invoices/{id}/void")) id="void-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("Reason", "reason", "text", &value("reason", ""), error_for(&error, "reason").or(error_for(&error, "invoice"))))
                div.field.invalid[error_for(&error, "confirm").is_some()] {
                    label { input type="checkbox" name="confirm" value="yes" aria-describedby=[error_for(&error, "confirm").map(|_| "confirm-error")]; " I understand: a void invoice is no longer due, and this cannot be undone." }
                    @if let Some(e) = error_for(&error, "confirm") { p.error id="confirm-error" { (e) } }
                }
                button.danger type="submit" id="void-invoice" { "Void invoice" }
            }
        }
    };
    let title = format!("Invoice {}", s(&i["number"]));
    let number = s(&i["number"]).to_owned();
    let mut crumbs = crumbs(&viewer, &name, customer, "Invoices and payments");
    crumbs.last_mut().expect("crumbs end with the list").1 = format!("/customers/{customer}/invoices");
    crumbs.push((number.as_str(), String::new()));
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

/// Records a payment of the invoice.
pub async fn pay(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["amount", "method", "pay_request"]);
    let viewer = Arc::new(viewer);
    let (who, e) = (viewer.who, entered.clone());
    let checked = read(&state, move |s| {
        let i = api::visible_invoice(s, &who, id).map_err(|_| PortalError::NotFound)?;
        let body = InvoicePaymentBody {
            method: e["method"].clone(),
            amount: e["amount"].clone(),
            currency: i.currency.to_string(),
        };
        api::invoice_payment(s, &who, id, &body, Some(e["pay_request"].as_str()).filter(|r| !r.is_empty()))
            .map_err(PortalError::keep_field)
    })
    .await;
    let (invoice, command) = match checked {
        Ok((i, command, _)) => (i, command),
        Err(PortalError::Fields(errors)) => return render_invoice(state, viewer, id, Some(entered), errors).await,
        Err(other) => return Err(other),
    };
    if let Some(command) = command {
        let posted = read(&state, move |s| Ok(api::post_payment(s, &invoice, command))).await?;
        match posted {
            Ok(_) => {}
            Err(purse_app::AppError::Rejected(r)) => {
                return render_invoice(
                    state,
                    viewer,
                    id,
                    Some(entered),
                    vec![(r.field().unwrap_or("amount").to_owned(), r.to_string())],
                )
                .await;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(done(&format!("/invoices/{id}"), "The payment was recorded."))
}

/// Voids the invoice.
pub async fn void(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let reason = form.get("reason").trim().to_owned();
    let viewer = Arc::new(viewer);
    if form.get("confirm") != "yes" {
        let mut error = Vec::new();
        if reason.is_empty() {
            error.push(("reason".to_owned(), "give a reason: it is kept with the invoice".to_owned()));
        }
        error.push(("confirm".to_owned(), "tick the box to confirm: voiding cannot be undone".to_owned()));
        return render_invoice(state, viewer, id, Some(HashMap::from([("reason".to_owned(), reason)])), error).await;
    }
    let (who, r) = (viewer.who, reason.clone());
    match read(&state, move |s| api::void_invoice(s, &who, id, &r).map_err(PortalError::keep_field)).await {
        Ok(_) => Ok(done(&format!("/invoices/{id}"), "The invoice was voided.")),
        Err(PortalError::Fields(errors)) => {
            render_invoice(state, viewer, id, Some(HashMap::from([("reason".to_owned(), reason)])), errors).await
        }
        Err(other) => Err(other),
    }
}

/// An invoice's PDF, for whoever may see its customer.
pub async fn pdf(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (number, bytes) = read(&state, move |s| {
        let i = api::visible_invoice(s, &who, id).map_err(|_| PortalError::NotFound)?;
        Ok((i.display_number(), api::invoice_pdf(s, &i)?))
    })
    .await?;
    Ok(page::pdf(&number, bytes))
}

/// `/receipts/{id}`: a receipt voucher (seed 002) with where its payment went.
pub async fn receipt(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render_receipt(state, std::sync::Arc::new(viewer), id, HashMap::new(), Vec::new()).await
}

async fn render_receipt(
    state: PortalState,
    viewer: std::sync::Arc<Viewer>,
    id: u64,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (r, name, refunds, left, cards) = read(&state, move |s| {
        let (r, _) = pay::visible_receipt(s, &who, id).map_err(|_| PortalError::NotFound)?;
        let name = s.engine.reader().party(r.party)?.map(|p| p.name).unwrap_or_default();
        let refunds = s.payments.refunds_of_receipt(r.id)?;
        let c = s.currency("currency", r.currency)?;
        let left = c.format(purse_core::Amount(purse_app::refunds::left_to_refund(s, &r)?.max(0)));
        let refunds: Vec<(purse_store::RefundRecord, String)> =
            refunds.into_iter().map(|x| (x.clone(), c.format(purse_core::Amount(x.amount)))).collect();
        let cards = s.cards.as_ref().is_some_and(|k| k.configured());
        Ok((pay::receipt_view(s, &r)?, name, refunds, left, cards))
    })
    .await?;
    let value = |k: &str, default: &str| entered.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let request = page::request_id(&entered)?;
    let customer = r["customer"].as_u64().unwrap_or(0);
    let writable = viewer.user.scope == Scope::ReadWrite;
    let body = html! {
        dl.facts {
            dt { "Receipt number" } dd id="receipt-number" { (s(&r["number"])) }
            dt { "Received from" } dd { (name) }
            dt { "Received on" } dd { (viewer.when_text(&r["paid_at"])) }
            dt { "Amount" } dd id="receipt-amount" { (s(&r["amount"])) " " (s(&r["currency"])) }
            dt { "Paid by" } dd { (page::words(s(&r["method"]))) }
            dt { "Unallocated" } dd id="receipt-unallocated" { (s(&r["unallocated"])) @if r["reversed_at"].is_string() { " " span.bad { "(reversed " (viewer.when_text(&r["reversed_at"])) ")" } } }
        }
        p {
            a.button href=(format!("/receipts/{id}/pdf")) id="receipt-pdf" { "Download PDF" }
            @if writable {
                " "
                form.inline method="post" action=(format!("/receipts/{id}/email")) {
                    input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                    button.secondary type="submit" id="email-receipt" { "E-mail again" }
                }
            }
        }
        h2 { "Allocated to" }
        table id="receipt-allocations" {
            thead { tr { th { "Invoice" } th.num { "Amount" } th { "Allocated" } th { "Released" } } }
            tbody {
                @for a in r["allocations"].as_array().into_iter().flatten() {
                    tr {
                        td { a href=(format!("/invoices/{}", a["invoice"])) { (s(&a["invoice_number"])) } }
                        td.num { (s(&a["amount"])) }
                        td { (viewer.when_text(&a["at"])) }
                        td { @if a["released_at"].is_string() { (viewer.when_text(&a["released_at"])) " (" (s(&a["release_reason"])) ")" } }
                    }
                }
                @if r["allocations"].as_array().is_none_or(Vec::is_empty) { tr { td colspan="4" .muted { "Not allocated to an invoice yet: an unallocated payment, applied to the next invoice." } } }
            }
        }
        h2 { "Refunds" }
        table id="receipt-refunds" {
            thead { tr { th { "Refund" } th.num { "Amount" } th { "Status" } th { "Reason" } th { "Asked" } } }
            tbody {
                @for (x, amount) in &refunds {
                    tr {
                        td { @match x.display_number() { Some(n) => { a href=(format!("/refunds/{}/pdf", x.id)) { (n) } }, None => { "—" } } }
                        td.num { (amount) " " (x.currency) }
                        td { (page::words(x.status.as_str())) @if let Some(f) = &x.failure { " (" (f) ")" } }
                        td { (x.reason) }
                        td { (viewer.when(x.created_at)) }
                    }
                }
                @if refunds.is_empty() { tr { td colspan="5" .muted { "Nothing of this payment was refunded." } } }
            }
        }
        // A card payment goes back through Stripe: without it, no form that could only fail.
        @if viewer.may(purse_app::policy::Action::CreateRefund) && r["reversed_at"].is_null() && s(&r["method"]) == "card" && !cards {
            p.notice id="refund-needs-cards" { "A card payment is refunded to the card through Stripe, and card payments are not configured on this server." }
        } @else if viewer.may(purse_app::policy::Action::CreateRefund) && r["reversed_at"].is_null() {
            (page::summary(&error))
            form.card method="post" action=(format!("/receipts/{id}/refund")) id="refund-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                input type="hidden" name="request" value=(request);
                p.muted { "Left to refund: " strong id="left-to-refund" { (left) " " (s(&r["currency"])) } ". "
                    @if s(&r["method"]) == "card" { "It goes back to the card through Stripe." } @else { "Give the money back the way it was paid; the balance is lowered now." } }
                (page::field("Amount", "amount", "text", &value("amount", &left), page::error_for(&error, "amount")))
                (page::field("Reason (kept in the audit log)", "reason", "text", &value("reason", ""), page::error_for(&error, "reason")))
                button.danger type="submit" id="save-refund" { "Refund" }
            }
        }
    };
    let title = format!("Receipt voucher {}", s(&r["number"]));
    let number = s(&r["number"]).to_owned();
    let mut crumbs = crumbs(&viewer, &name, customer, "Invoices and payments");
    crumbs.last_mut().expect("crumbs end with the list").1 = format!("/customers/{customer}/invoices");
    crumbs.push((number.as_str(), String::new()));
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status =
        if error.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

/// Staff refund all or part of the payment; a card payment goes back through Stripe.
pub async fn refund(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: super::session::Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["amount", "reason", "request"]);
    let viewer = std::sync::Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let key = format!("portal:{}:{}", v.who.key_id, e["request"]);
    let done = read(&state, move |s| {
        let req =
            purse_app::refunds::RefundRequest { receipt: id, amount: e["amount"].clone(), reason: e["reason"].clone() };
        purse_app::refunds::request(s, &v.who, req, Some(key)).map_err(PortalError::keep_field)
    })
    .await;
    match done {
        Ok(r) => {
            let message = match (r.status, r.display_number()) {
                (purse_store::RefundStatus::Succeeded, Some(n)) => format!("Refund {n} is made."),
                _ => "The refund is asked for; it completes in the background.".to_owned(),
            };
            Ok(super::done(&format!("/receipts/{id}"), &message))
        }
        Err(PortalError::Fields(errors)) => render_receipt(state, viewer, id, entered, errors).await,
        Err(other) => Err(other),
    }
}

/// Staff issue a credit note against the invoice.
pub async fn credit_note(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let mut entered = form.entered(&["cn_amount", "apply", "cn_receipt", "cn_reason", "request"]);
    let lines: Vec<String> = form.all("cn_lines").into_iter().map(str::to_owned).collect();
    entered.insert("cn_lines".into(), lines.join("\n"));
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let done = read(&state, move |s| {
        // Lines chosen with no amount credit the lines; an amount with lines is refused.
        let amount = (!e["cn_amount"].is_empty() || lines.is_empty()).then(|| e["cn_amount"].clone());
        let req = purse_app::credit_notes::CreditNoteRequest {
            invoice: id,
            amount,
            lines,
            apply: Some(e["apply"].clone()),
            receipt: e["cn_receipt"].parse().ok(),
            reason: e["cn_reason"].clone(),
        };
        let request = format!("portal:{}:{}", v.who.key_id, e["request"]);
        purse_app::credit_notes::issue(s, &v.who, req, &request).map_err(PortalError::keep_field)
    })
    .await;
    match done {
        Ok(n) => Ok(done_page(id, &format!("Credit note {} is issued.", n.display_number()))),
        Err(PortalError::Fields(errors)) => {
            // The page has other forms with an amount and a reason: the errors are this one's.
            let errors = errors
                .into_iter()
                .map(|(f, m)| {
                    let f = match f.as_str() {
                        "amount" | "lines" => "cn_amount",
                        "reason" => "cn_reason",
                        "receipt" => "cn_receipt",
                        "invoice" => "credit_note",
                        other => other,
                    };
                    (f.to_owned(), m)
                })
                .collect();
            render_invoice(state, viewer, id, Some(entered), errors).await
        }
        Err(other) => Err(other),
    }
}

fn done_page(id: u64, message: &str) -> Response {
    done(&format!("/invoices/{id}"), message)
}

/// The credit note's PDF.
pub async fn credit_note_pdf(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (number, bytes) = read(&state, move |s| {
        let n = purse_app::credit_notes::visible(s, &who, id).map_err(|_| PortalError::NotFound)?;
        Ok((n.display_number(), purse_app::credit_notes::document(s, &n)?))
    })
    .await?;
    Ok(page::pdf(&number, bytes))
}

/// The refund receipt's PDF.
pub async fn refund_pdf(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (number, bytes) = read(&state, move |s| {
        let r = purse_app::refunds::visible(s, &who, id).map_err(|_| PortalError::NotFound)?;
        let reader = s.engine.reader();
        let pdf = purse_app::refunds::document(reader.as_ref(), s.payments.as_ref(), &r)?;
        Ok((r.display_number().unwrap_or_else(|| format!("refund-{id}")), pdf))
    })
    .await?;
    Ok(page::pdf(&number, bytes))
}
