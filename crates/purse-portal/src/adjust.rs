//! Staff reverse a posting in part or whole, with a reason: a disputed call given back, a
//! payment that bounced taken back. Each is an adjustment of the customer's balance against
//! the adjustments account (`purse_app::accounts::adjustment_command`), kept in the audit log
//! with who and why, and tied to the posting it reverses by its metadata.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use purse_app::accounts::{adjustment_command, Adjustment};
use purse_app::policy::Action;
use purse_core::{AdjustCategory, AdjustDirection, Amount, Money, PartyKind, Transfer, TransferKind};

use super::page::{self, error_for, field, money};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// The postings staff may reverse from the portal: what a customer was charged or paid.
pub fn reversible(kind: TransferKind) -> bool {
    matches!(kind, TransferKind::Charge | TransferKind::Payment | TransferKind::Recharge | TransferKind::Issue)
}

/// The posting, the customer account it touched, and which way a reversal moves money: a
/// charge is given back (credit), money received is taken back (debit).
struct Target {
    transfer: Transfer,
    account: purse_core::Account,
    currency: purse_core::Currency,
    direction: AdjustDirection,
    customer: (u64, String),
}

fn target(s: &PortalState, viewer: &Viewer, id: u64) -> Result<Target, PortalError> {
    let reader = s.engine.reader();
    let transfer = reader.transfer(purse_core::TransferId(id))?.ok_or(PortalError::NotFound)?;
    if !reversible(transfer.kind) {
        return Err(PortalError::NotFound);
    }
    let (account_id, direction) = match transfer.kind {
        TransferKind::Charge => (transfer.debit, AdjustDirection::Credit),
        _ => (transfer.credit, AdjustDirection::Debit),
    };
    let account = s.account_for(&viewer.who, account_id.0).map_err(|_| PortalError::NotFound)?;
    let party = account.party.ok_or(PortalError::NotFound)?;
    let customer = s.party_of_kind(&viewer.who, party.0, false).map_err(|_| PortalError::NotFound)?;
    let currency = s.currency("currency", account.currency)?;
    Ok(Target { transfer, account, currency, direction, customer: (customer.id.0, customer.name) })
}

/// Postings of an account read at most when adding up what was reversed of one of them.
const SCAN_MAX: usize = 200_000;

/// How much of the posting was already reversed: the adjustments made here that name it
/// (`{"reverses": id}`), and the ledger's own reversal of it (all of it). Blocking.
fn already_reversed(s: &PortalState, t: &Target) -> Result<i64, PortalError> {
    let reader = s.engine.reader();
    let mut total: i64 = 0;
    let mut before = None;
    let mut scanned = 0usize;
    loop {
        let page = reader.journal(purse_store::JournalQuery { account: t.account.id, before, limit: 512 })?;
        for p in &page {
            if p.id <= t.transfer.id {
                return Ok(total);
            }
            before = Some(p.id);
            scanned += 1;
            if p.reverses == Some(t.transfer.id) {
                total = total.saturating_add(p.amount.0);
            } else if p.kind == TransferKind::Adjustment {
                let names_it = p
                    .metadata
                    .as_deref()
                    .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                    .is_some_and(|m| m["reverses"].as_u64() == Some(t.transfer.id.0));
                if names_it {
                    total = total.saturating_add(p.amount.0);
                }
            }
        }
        if page.len() < 512 {
            return Ok(total);
        }
        if scanned >= SCAN_MAX {
            return Err(PortalError::field(
                "amount",
                "this posting is too far back in a busy journal to reverse here; adjust the balance instead",
            ));
        }
    }
}

pub async fn form(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render(state, Arc::new(viewer), id, HashMap::new(), Vec::new()).await
}

async fn render(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (t, done_before) = read(&state, move |s| {
        let t = target(s, &v, id)?;
        let done_before = already_reversed(s, &t).unwrap_or(0);
        Ok((t, done_before))
    })
    .await?;
    let left = Amount(t.transfer.amount.0.saturating_sub(done_before));
    let value = |k: &str, default: String| entered.get(k).cloned().unwrap_or(default);
    let request = page::request_id(&entered)?;
    let give_back = t.direction == AdjustDirection::Credit;
    let what = page::words(t.transfer.kind.as_str()).to_lowercase();
    let body = html! {
        section.card id="posting" {
            p { "The " (what) " of " strong { (money(t.currency, t.transfer.amount)) } " on " (viewer.when(t.transfer.posted_at))
                @if let Some(s) = &t.transfer.service { " for " (s) } ", " (t.customer.1) "." }
            @if done_before > 0 { p id="already-reversed" { (format!("Already reversed: {}; left to reverse: {}.", money(t.currency, Amount(done_before)), money(t.currency, left))) } }
            p.muted { @if give_back { "Reversing it gives the amount below back to the customer's balance." } @else { "Reversing it takes the amount below back from the customer's balance." }
                " It is an adjustment with your reason, kept in the audit log; the " (what) " itself stays in the journal." }
        }
        (page::summary(&error))
        form.card method="post" action=(format!("/transfers/{id}/adjust")) id="adjust-form" {
            input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
            input type="hidden" name="request" value=(request);
            (field(&format!("Amount ({}; all of it, or a part)", t.currency.code), "amount", "text", &value("amount", t.currency.format(left)), error_for(&error, "amount")))
            @if give_back {
                (page::select("Category", "category", &[("correction", "Correction"), ("goodwill", "Goodwill")], &value("category", "correction".into()), error_for(&error, "category")))
            }
            (field("Reason (kept in the audit log)", "reason", "text", &value("reason", String::new()), error_for(&error, "reason")))
            button.danger type="submit" id="save-adjust" { @if give_back { "Give back" } @else { "Take back" } }
            " " a href=(format!("/customers/{}/balance", t.customer.0)) { "Cancel" }
        }
        @if viewer.may(Action::CreateReversal) {
            h2 { "Or reverse it whole in the ledger" }
            form.card method="post" action=(format!("/transfers/{id}/reverse")) id="reverse-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                input type="hidden" name="request" value=(request);
                p.muted { "The ledger posts the exact opposite, linked to it. A payment reversed this way also leaves the invoices it paid, which can then be voided." }
                (field("Reason (kept in the audit log)", "whole_reason", "text", &value("whole_reason", String::new()), error_for(&error, "whole_reason")))
                button.danger type="submit" id="reverse-whole" { "Reverse it whole" }
            }
        }
    };
    let crumbs = [
        ("Customers", "/customers".to_owned()),
        (t.customer.1.as_str(), format!("/customers/{}", t.customer.0)),
        ("Balance Details", format!("/customers/{}/balance", t.customer.0)),
        ("Reverse", String::new()),
    ];
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(status, page::layout(&format!("Reverse a {what}"), Some(&viewer), &crumbs, body)))
}

const FIELDS: [&str; 4] = ["amount", "category", "reason", "request"];

/// The operator reverses a posting whole with the ledger's own reversal: the opposite
/// posting, linked to it; a payment's invoice allocations are released with it.
pub async fn reverse(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["whole_reason", "request"]);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let built = read(&state, move |s| {
        let t = target(s, &v, id)?;
        if already_reversed(s, &t)? > 0 {
            return Err(PortalError::field(
                "whole_reason",
                "part of it was reversed already: reverse the rest with an amount instead",
            ));
        }
        if let Some(problem) = super::reason_problem(&e["whole_reason"], true)? {
            return Err(PortalError::field("whole_reason", problem));
        }
        let command = purse_core::Command::Reverse {
            client_id: v.who.client_id("request", &format!("{}-whole", e["request"]))?,
            transfer: t.transfer.id,
            metadata: None,
            note: Some(purse_core::ChangeNote { by: s.actor(&v.who)?, reason: Some(e["whole_reason"].clone()) }),
        };
        let what = page::words(t.transfer.kind.as_str()).to_lowercase();
        Ok((
            command,
            format!("The {what} of {} was reversed whole.", money(t.currency, t.transfer.amount)),
            t.customer.0,
        ))
    })
    .await;
    let (command, message, customer) = match built {
        Ok(b) => b,
        Err(PortalError::Fields(errors)) => return render(state, viewer, id, entered, errors).await,
        Err(other) => return Err(other),
    };
    match super::submit(&state, command).await? {
        Ok(_) => Ok(done(&format!("/customers/{customer}/balance"), &message)),
        Err(purse_app::AppError::Rejected(r)) => {
            render(state, viewer, id, entered, vec![("whole_reason".into(), super::sentence(&r.to_string()))]).await
        }
        Err(other) => Err(other.into()),
    }
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
    let built = read(&state, move |s| {
        let t = target(s, &v, id)?;
        let c = t.currency;
        let mut errors = page::Errors::new();
        // What is left to reverse: partial reversals add up to the posting at most.
        let left = Amount(t.transfer.amount.0.saturating_sub(already_reversed(s, &t)?));
        let amount = match c.parse(&e["amount"]) {
            Ok(a) if a.is_positive() && a <= left => Some(a),
            Ok(a) if a.is_positive() && left.is_positive() => {
                errors.push(("amount".into(), format!("at most what is left to reverse, {}", money(c, left))));
                None
            }
            Ok(_) if !left.is_positive() => {
                errors.push(("amount".into(), "all of it was reversed already".into()));
                None
            }
            _ => {
                errors.push((
                    "amount".into(),
                    format!("an amount above zero in {} with at most {} decimals", c.code, c.scale),
                ));
                None
            }
        };
        // Taking back is a correction (goodwill only raises a balance): its form offers no choice.
        let category = match t.direction {
            AdjustDirection::Credit => AdjustCategory::parse(&e["category"]),
            AdjustDirection::Debit => Some(AdjustCategory::Correction),
        };
        if category.is_none() {
            errors.push(("category".into(), "choose correction or goodwill".into()));
        }
        if let Some(problem) = super::reason_problem(&e["reason"], true)? {
            errors.push(("reason".into(), problem));
        }
        let (Some(amount), Some(category)) = (amount.filter(|_| errors.is_empty()), category) else {
            return Err(PortalError::Fields(errors));
        };
        let metadata = serde_json::json!({ "reverses": t.transfer.id.0 }).to_string();
        let adjustment = Adjustment {
            account: t.account.id.0,
            money: Money { amount, currency: t.account.currency },
            direction: t.direction,
            category,
            reason: e["reason"].clone(),
            metadata: Some(metadata),
        };
        let command = adjustment_command(s, &v.who, v.who.client_id("request", &e["request"])?, adjustment)
            .map_err(PortalError::keep_field)?;
        let what = if t.direction == AdjustDirection::Credit { "given back to" } else { "taken back from" };
        Ok((command, format!("{} was {what} {}.", money(c, amount), t.customer.1), t.customer.0))
    })
    .await;
    let (command, message, customer) = match built {
        Ok(b) => b,
        Err(PortalError::Fields(errors)) => return render(state, viewer, id, entered, errors).await,
        Err(other) => return Err(other),
    };
    match super::submit(&state, command).await? {
        Ok(_) => Ok(done(&format!("/customers/{customer}/balance"), &message)),
        Err(purse_app::AppError::Rejected(r)) => {
            render(state, viewer, id, entered, vec![("amount".into(), super::sentence(&r.to_string()))]).await
        }
        Err(other) => Err(other.into()),
    }
}

/// How a category reads.
pub fn category_name(c: AdjustCategory) -> &'static str {
    match c {
        AdjustCategory::Goodwill => "Goodwill",
        AdjustCategory::Correction => "Correction",
        AdjustCategory::WriteOff => "Write-off",
        AdjustCategory::CreditNote => "Credit note",
        AdjustCategory::Tax => "Tax",
    }
}

const ADJUST_FIELDS: [&str; 6] = ["amount", "direction", "category", "reason", "request", "account"];

/// `/customers/{id}/adjustments`: the customer's adjustments, and for staff the form that
/// raises or lowers a balance with a category and a reason.
pub async fn list(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render_list(state, Arc::new(viewer), id, HashMap::new(), Vec::new()).await
}

async fn render_list(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (party, accounts, rows, keys) = read(&state, move |s| {
        let party = s.party_of_kind(&v.who, id, false)?;
        let accounts = s.engine.reader().accounts_of(party.id)?;
        let rows = purse_app::accounts::adjustments(s, &v.who, Some(id), None, 200)?;
        Ok((party, accounts, rows, super::credit::key_names(s)?))
    })
    .await?;
    let PartyKind::Customer { wallet, .. } = party.kind else { return Err(PortalError::NotFound) };
    let name_of = |account: u64| -> String {
        if account == wallet.0 {
            "Wallet".to_owned()
        } else {
            accounts
                .iter()
                .find(|a| a.id.0 == account)
                .and_then(|a| a.client_id.as_ref())
                .map_or_else(|| "Subscriber account".to_owned(), |c| viewer.who.shown_client_id(c))
        }
    };
    let value = |k: &str, default: &str| entered.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let request = page::request_id(&entered)?;
    let open: Vec<(String, String)> = accounts
        .iter()
        .filter(|a| a.status != purse_core::AccountStatus::Closed)
        .map(|a| (a.id.0.to_string(), name_of(a.id.0)))
        .collect();
    let open: Vec<(&str, &str)> = open.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let body = html! {
        @if viewer.may(Action::CreateAdjustment) {
            (page::summary(&error))
            form.card method="post" action=(format!("/customers/{id}/adjustments")) id="adjustment-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                input type="hidden" name="request" value=(request);
                @if open.len() > 1 {
                    (page::select("Account", "account", &open, &value("account", &wallet.0.to_string()), error_for(&error, "account")))
                } @else {
                    input type="hidden" name="account" value=(wallet.0);
                }
                (page::select("Direction", "direction", &[("credit", "Raise the balance"), ("debit", "Lower the balance")], &value("direction", "credit"), error_for(&error, "direction")))
                (page::select("Category", "category", &[("goodwill", "Goodwill"), ("correction", "Correction"), ("write_off", "Write-off")], &value("category", "correction"), error_for(&error, "category")))
                (field("Amount", "amount", "text", &value("amount", ""), error_for(&error, "amount")))
                (field("Reason (kept in the audit log)", "reason", "text", &value("reason", ""), error_for(&error, "reason")))
                p.muted { "Goodwill and write-offs only raise a balance; a write-off gives up what is owed, at most down to zero. Each category is booked against its own account." }
                button type="submit" id="save-adjustment" { "Adjust" }
            }
        }
        h2 { "Adjustments" }
        div.scroll {
            table id="adjustments" {
                thead { tr { th { "When" } th { "Account" } th { "Category" } th.num { "Amount" } th { "Reason" } th.optional { "By" } } }
                tbody {
                    @for a in &rows {
                        tr {
                            td { (viewer.when(a.at)) }
                            td { (name_of(a.account)) }
                            td { (category_name(a.category)) }
                            td.num.neg[a.direction == AdjustDirection::Debit] {
                                @if a.direction == AdjustDirection::Debit { "−" } (a.amount) " " (a.currency)
                            }
                            td { (a.reason) }
                            td.optional { (super::credit::shown_actor(&keys, &a.by)) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="6" .muted { "No adjustments." } } }
                }
            }
        }
    };
    let crumbs = [
        ("Customers", "/customers".to_owned()),
        (party.name.as_str(), format!("/customers/{id}")),
        ("Adjustments", String::new()),
    ];
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(status, page::layout("Adjustments", Some(&viewer), &crumbs, body)))
}

/// Raises or lowers one of the customer's balances with a category and a reason.
pub async fn create(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&ADJUST_FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let built = read(&state, move |s| {
        let party = s.party_of_kind(&v.who, id, false)?;
        let PartyKind::Customer { wallet, currency, .. } = party.kind else { return Err(PortalError::NotFound) };
        let c = s.currency("currency", currency)?;
        let mut errors = page::Errors::new();
        let account = match e["account"].parse::<u64>() {
            Ok(a)
                if s.engine.reader().account(purse_core::AccountId(a))?.is_some_and(|x| x.party == Some(party.id)) =>
            {
                a
            }
            _ => {
                errors.push(("account".into(), "choose one of the customer's accounts".into()));
                wallet.0
            }
        };
        let direction = match e["direction"].as_str() {
            "debit" => AdjustDirection::Debit,
            "credit" => AdjustDirection::Credit,
            _ => {
                errors.push(("direction".into(), "choose to raise or to lower the balance".into()));
                AdjustDirection::Credit
            }
        };
        let category = AdjustCategory::parse(&e["category"]).unwrap_or_else(|| {
            errors.push(("category".into(), "choose goodwill, correction or write-off".into()));
            AdjustCategory::Correction
        });
        let amount = match c.parse(&e["amount"]) {
            Ok(a) if a.is_positive() => a,
            _ => {
                errors.push((
                    "amount".into(),
                    format!("an amount above zero in {} with at most {} decimals", c.code, c.scale),
                ));
                Amount(1)
            }
        };
        let adjustment = Adjustment {
            account,
            money: Money { amount, currency },
            direction,
            category,
            reason: e["reason"].clone(),
            metadata: None,
        };
        // The application's own checks run too, so every wrong field is named at once.
        let command = adjustment_command(s, &v.who, v.who.client_id("request", &e["request"])?, adjustment);
        let command = match command {
            Ok(c) => {
                PortalError::with_app(errors, Ok(()))?;
                c
            }
            Err(e) => return Err(PortalError::with_app(errors, Err(e)).expect_err("an error was found")),
        };
        let which = if direction == AdjustDirection::Credit { "raised" } else { "lowered" };
        let message = format!(
            "{}'s balance was {which} by {} ({}).",
            party.name,
            money(c, amount),
            category_name(category).to_lowercase()
        );
        Ok((command, message))
    })
    .await;
    let (command, message) = match built {
        Ok(b) => b,
        Err(PortalError::Fields(errors)) => return render_list(state, viewer, id, entered, errors).await,
        Err(other) => return Err(other),
    };
    match super::submit(&state, command).await? {
        Ok(_) => Ok(done(&format!("/customers/{id}/adjustments"), &message)),
        Err(purse_app::AppError::Rejected(r)) => {
            render_list(state, viewer, id, entered, vec![("amount".into(), super::sentence(&r.to_string()))]).await
        }
        Err(other) => Err(other.into()),
    }
}
