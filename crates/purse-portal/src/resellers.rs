//! A reseller's own page: its master wallet (what it holds, what it funded and for whom,
//! which customers' automatic recharges draw on it, who is told when it runs short), and
//! credit issued from it to a customer. The operator sees every reseller's page; a reseller
//! its own; customers none.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use purse_app::accounts::{live, transfer_command};
use purse_app::policy::Action;
use purse_core::recharge::{RechargeMethod, RechargeTarget};
use purse_core::{Account, AccountKind, Amount, Currency, Money, Party, PartyKind, Role, TransferKind};
use purse_store::{JournalQuery, PartyQuery};

use super::page::{self, error_for, field, money, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// Customers of a reseller read at most, for its page.
const CUSTOMERS_MAX: u32 = 2000;
/// Postings of the master wallet shown.
const FUNDED_ROWS: u32 = 25;

/// `/resellers`: the operator's list of resellers with their master wallets; a reseller goes
/// to its own page.
pub async fn list(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    if let Role::Reseller(me) = viewer.user.role {
        return Ok(Redirect::to(&format!("/resellers/{}", me.0)).into_response());
    }
    let rows = read(&state, move |s| {
        let reader = s.engine.reader();
        let query = PartyQuery { resellers: Some(true), limit: 1000, ..Default::default() };
        let mut rows = Vec::new();
        for party in reader.parties(query)? {
            let wallets = master_wallets(s, &party)?;
            rows.push((party, wallets));
        }
        Ok(rows)
    })
    .await?;
    let body = html! {
        div.scroll {
            table id="resellers" {
                thead { tr { th { "Reseller" } th.num { "Master wallet" } th.num { "Available" } } }
                tbody {
                    @for (party, wallets) in &rows {
                        tr {
                            td { a href=(format!("/resellers/{}", party.id.0)) { (party.name) } }
                            td.num { @for (w, _, c) in wallets { div { (money(*c, w.balance)) } } @if wallets.is_empty() { span.muted { "None" } } }
                            td.num { @for (_, available, c) in wallets { div.neg[*available < 0] { (money(*c, clamp(*available))) } } }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="3" .muted { "No resellers yet." } } }
                }
            }
        }
    };
    Ok(page::ok(page::layout("Resellers", Some(&viewer), &[("Resellers", "")], body)))
}

/// The reseller's master wallets as they stand now, with what each can spend.
fn master_wallets(s: &PortalState, party: &Party) -> Result<Vec<(Account, i128, Currency)>, PortalError> {
    let mut out = Vec::new();
    for a in s.engine.reader().accounts_of(party.id)? {
        if a.kind == AccountKind::MasterWallet {
            out.push(live(s, &a)?);
        }
    }
    Ok(out)
}

fn clamp(v: i128) -> Amount {
    Amount(i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX }))
}

pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render(state, Arc::new(viewer), id, HashMap::new(), Vec::new()).await
}

/// One posting of the master wallet: when, what, for whom, how much (signed).
struct Funded {
    at: purse_core::Timestamp,
    kind: &'static str,
    counterpart: String,
    amount: Amount,
    currency: Currency,
}

/// A customer whose automatic recharge draws on the master wallet.
struct Drawer {
    id: u64,
    name: String,
    rule: String,
}

struct Details {
    party: Party,
    wallets: Vec<(Account, i128, Currency)>,
    funded: Vec<Funded>,
    drawers: Vec<Drawer>,
    /// (customer id, name), for the issue form.
    customers: Vec<(String, String)>,
    email: Option<String>,
}

fn details(s: &PortalState, viewer: &Viewer, id: u64) -> Result<Details, PortalError> {
    let party = s.party_of_kind(&viewer.who, id, true)?;
    let reader = s.engine.reader();
    let wallets = master_wallets(s, &party)?;
    let query =
        PartyQuery { resellers: Some(false), reseller: Some(party.id), limit: CUSTOMERS_MAX, ..Default::default() };
    let children = reader.parties(query)?;
    let names: HashMap<u64, String> = children.iter().map(|p| (p.id.0, p.name.clone())).collect();
    let mut funded = Vec::new();
    for (w, _, currency) in &wallets {
        for t in reader.journal(JournalQuery { account: w.id, before: None, limit: FUNDED_ROWS })? {
            let out = t.debit == w.id;
            let other = if out { t.credit } else { t.debit };
            let counterpart = match reader.account(other)?.and_then(|a| a.party) {
                Some(p) if p == party.id => "Its own account".to_owned(),
                Some(p) => names.get(&p.0).cloned().unwrap_or_else(|| "The operator".to_owned()),
                None => "The operator".to_owned(),
            };
            let amount = if out { Amount(-t.amount.0) } else { t.amount };
            funded.push(Funded { at: t.posted_at, kind: t.kind.as_str(), counterpart, amount, currency: *currency });
        }
    }
    funded.sort_by_key(|f| std::cmp::Reverse(f.at));
    let mut drawers = Vec::new();
    for settings in s.payments.all_recharge_settings()? {
        if settings.method != RechargeMethod::MasterAccount || !settings.enabled {
            continue;
        }
        let Some(name) = names.get(&settings.party.0) else { continue };
        let Some(PartyKind::Customer { currency, .. }) =
            children.iter().find(|p| p.id == settings.party).map(|p| p.kind.clone())
        else {
            continue;
        };
        let c = s.currency("currency", currency)?;
        let rule = match settings.target {
            RechargeTarget::Amount(a) => format!("below {} by {}", money(c, settings.threshold), money(c, a)),
            RechargeTarget::Balance(t) => format!("below {} up to {}", money(c, settings.threshold), money(c, t)),
        };
        drawers.push(Drawer { id: settings.party.0, name: name.clone(), rule });
    }
    let customers = children.iter().map(|p| (p.id.0.to_string(), p.name.clone())).collect();
    let email = s.alerts.alert_settings(party.id)?.and_then(|a| a.email);
    Ok(Details { party, wallets, funded, drawers, customers, email })
}

async fn render(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let d = read(&state, move |s| details(s, &v, id)).await?;
    let value = |k: &str| entered.get(k).map_or("", String::as_str);
    let request = page::request_id(&entered)?;
    let issues = viewer.may(Action::IssueCredit) && !d.wallets.is_empty();
    let mut customers = vec![(String::new(), "Choose a customer".to_owned())];
    customers.extend(d.customers.iter().cloned());
    let customer_options: Vec<(&str, &str)> = customers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let body = html! {
        h2 { "Master wallet" }
        @if d.wallets.is_empty() {
            p.muted id="no-master-wallet" { "This reseller has no master wallet yet. The operator opens one (an account of kind master wallet) to fund its customers' recharges and credit." }
        }
        div.figures id="master-wallet" {
            @for (w, available, c) in &d.wallets {
                div.figure.main { div.label { "Balance (" (c.code) ")" } div.value { (money(*c, w.balance)) } }
                div.figure { div.label { "Available" } div.value.neg[*available < 0] { (money(*c, clamp(*available))) } }
            }
        }
        p.muted id="master-alert" {
            "When an automatic recharge finds the master wallet short, "
            @match &d.email { Some(e) => { "the reseller is told at " strong { (e) } "." }, None => { "the operator is told (the reseller has no alert e-mail)." } }
        }
        @if viewer.may(Action::PutResellerAlertSettings) {
            form.filters method="post" action=(format!("/resellers/{id}/alerts")) id="master-alert-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("Alert e-mail for the master wallet", "billing_email", "email", entered.get("billing_email").map_or_else(|| d.email.as_deref().unwrap_or(""), String::as_str), error_for(&error, "billing_email")))
                button type="submit" id="save-master-alert" { "Save" }
            }
        }
        @if issues {
            h2 { "Issue credit to a customer" }
            form.card method="post" action=(format!("/resellers/{id}/issue")) id="issue-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                input type="hidden" name="request" value=(request);
                (page::summary(&error.iter().filter(|(f, _)| f != "billing_email").cloned().collect::<Vec<_>>()))
                (select("Customer", "customer", &customer_options, value("customer"), error_for(&error, "customer").or(error_for(&error, "target"))))
                (field("Amount (in the customer's currency)", "amount", "text", value("amount"), error_for(&error, "amount").or(error_for(&error, "source"))))
                (field("Reason (kept in the audit log)", "reason", "text", value("reason"), error_for(&error, "reason")))
                button type="submit" id="issue" { "Issue credit" }
            }
        }
        h2 { "Customers whose recharges draw on it" }
        (drawers_table(&d.drawers))
        h2 { "What it funded" }
        (funded_table(&viewer, &d.funded))
    };
    let title = format!("{} — master wallet", d.party.name);
    let crumbs: Vec<(&str, &str)> = if viewer.user.role == Role::Operator {
        vec![("Resellers", "/resellers"), (d.party.name.as_str(), "")]
    } else {
        vec![(d.party.name.as_str(), "")]
    };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

fn drawers_table(drawers: &[Drawer]) -> Markup {
    html! {
        div.scroll {
            table id="drawers" {
                thead { tr { th { "Customer" } th { "Automatic recharge" } } }
                tbody {
                    @for c in drawers {
                        tr { td { a href=(format!("/customers/{}", c.id)) { (c.name) } } td { (c.rule) } }
                    }
                    @if drawers.is_empty() { tr { td colspan="2" .muted { "No customer recharges from the master wallet." } } }
                }
            }
        }
    }
}

fn funded_table(viewer: &Viewer, funded: &[Funded]) -> Markup {
    html! {
        div.scroll {
            table id="funded" {
                thead { tr { th { "When" } th { "What" } th { "Customer" } th.num { "Amount" } } }
                tbody {
                    @for f in funded {
                        tr {
                            td { (viewer.when(f.at)) }
                            td { (page::words(f.kind)) }
                            td { (f.counterpart) }
                            td.num.neg[f.amount.0 < 0] { (money(f.currency, f.amount)) }
                        }
                    }
                    @if funded.is_empty() { tr { td colspan="4" .muted { "Nothing yet." } } }
                }
            }
        }
    }
}

const ISSUE_FIELDS: [&str; 4] = ["customer", "amount", "reason", "request"];

/// Issues credit from the reseller's master wallet to one of its customers' wallets.
pub async fn issue(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&ISSUE_FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let built = read(&state, move |s| {
        let reseller = s.party_of_kind(&v.who, id, true)?;
        let mut errors = page::Errors::new();
        let customer = match e["customer"].parse::<u64>().ok().and_then(|c| s.party_of_kind(&v.who, c, false).ok()) {
            Some(c) if matches!(c.kind, PartyKind::Customer { reseller: Some(r), .. } if r == reseller.id) => Some(c),
            _ => {
                errors.push(("customer".into(), "choose one of the reseller's customers".into()));
                None
            }
        };
        if let Some(problem) = super::reason_problem(&e["reason"], false)? {
            errors.push(("reason".into(), problem));
        }
        let reason = Some(e["reason"].trim().to_owned()).filter(|r| !r.is_empty());
        let Some(customer) = customer else {
            // The amount's decimals depend on the customer's currency; that it is an amount
            // above zero at all is said at once.
            if !purse_core::money::parse_units(&e["amount"], purse_core::money::SCALE_MAX).is_ok_and(|a| a > 0) {
                errors.push(("amount".into(), "an amount above zero".into()));
            }
            return Err(PortalError::Fields(errors));
        };
        let PartyKind::Customer { wallet, currency, .. } = customer.kind else { return Err(PortalError::NotFound) };
        let c = s.currency("currency", currency)?;
        let Some((master, _, _)) = master_wallets(s, &reseller)?.into_iter().find(|(w, _, _)| w.currency == currency)
        else {
            errors.push(("customer".into(), format!("the master wallet holds no {currency}")));
            return Err(PortalError::Fields(errors));
        };
        let amount = match c.parse(&e["amount"]) {
            Ok(a) if a.is_positive() => Some(a),
            _ => {
                let rule = format!("an amount above zero in {} with at most {} decimals", c.code, c.scale);
                errors.push(("amount".into(), rule));
                None
            }
        };
        let Some(amount) = amount.filter(|_| errors.is_empty()) else { return Err(PortalError::Fields(errors)) };
        let client_id = v.who.client_id("request", &e["request"])?;
        let command = transfer_command(
            s,
            &v.who,
            client_id,
            master.id.0,
            wallet.0,
            Money { amount, currency },
            TransferKind::Issue,
            reason,
            None,
        )
        .map_err(PortalError::keep_field)?;
        Ok((command, money(c, amount), customer.name))
    })
    .await;
    let (command, shown, name) = match built {
        Ok(b) => b,
        Err(PortalError::Fields(errors)) => return render(state, viewer, id, entered, errors).await,
        Err(other) => return Err(other),
    };
    match super::submit(&state, command).await? {
        Ok(_) => {
            Ok(done(&format!("/resellers/{id}"), &format!("{shown} was issued to {name} from the master wallet.")))
        }
        Err(purse_app::AppError::Rejected(r)) => {
            render(state, viewer, id, entered, vec![("amount".into(), super::sentence(&r.to_string()))]).await
        }
        Err(other) => Err(other.into()),
    }
}

/// Who is told when the master wallet runs short: the reseller's alert e-mail.
pub async fn save_alerts(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let email = form.get("billing_email").trim().to_owned();
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), email.clone());
    let saved = read(&state, move |s| {
        let party = s.party_of_kind(&v.who, id, true)?;
        // Only the e-mail changes; the reseller's other alert addresses stay as they are.
        let kept = s.alerts.alert_settings(party.id)?.map(|a| a.alert_emails).unwrap_or_default();
        let body = purse_app::alerts::SettingsBody {
            billing_email: Some(e).filter(|e| !e.is_empty()),
            alert_emails: kept,
            ..Default::default()
        };
        purse_app::alerts::save_settings(s, &v.who, &party, body).map_err(PortalError::keep_field)
    })
    .await;
    match saved {
        Ok(()) => Ok(done(&format!("/resellers/{id}"), "The master wallet's alert e-mail was saved.")),
        Err(PortalError::Fields(errors)) => {
            render(state, viewer, id, HashMap::from([("billing_email".to_owned(), email)]), errors).await
        }
        Err(other) => Err(other),
    }
}
