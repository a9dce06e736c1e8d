//! Credit grants: a customer's grants (remaining, expiry, what each paid), giving credit and
//! taking it back (the operator's staff). The workflows are `purse_app::grants`'.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_app::grants::GrantRequest;
use purse_core::{Currency, Grant, GrantState, PartyKind, Role, Scope};

use super::page::{self, field, money, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// The kinds offered in the form (the API takes any word).
const KINDS: [(&str, &str); 4] = [
    ("promotional", "Promotional"),
    ("goodwill", "Goodwill"),
    ("commitment", "Commitment"),
    ("purchased", "Purchased"),
];

fn may_grant(viewer: &Viewer) -> bool {
    viewer.user.role == Role::Operator && viewer.user.scope == Scope::ReadWrite
}

fn state_name(s: GrantState) -> &'static str {
    match s {
        GrantState::Open => "In force",
        GrantState::UsedUp => "Used up",
        GrantState::Expired => "Expired",
        GrantState::Voided => "Voided",
    }
}

fn expires(viewer: &Viewer, g: &Grant) -> String {
    g.expires_at.map_or_else(|| "Never".to_owned(), |t| viewer.when(t))
}

/// A table of grants: kind, granted, remaining, expiry, scope, state; each links to its page.
pub fn table(viewer: &Viewer, id: &str, grants: &[Grant], currency: Currency) -> Markup {
    html! {
        div.scroll {
            table id=(id) {
                thead { tr { th { "Grant" } th.num { "Granted" } th.num { "Remaining" } th { "Expires" } th { "For" } th.num { "Priority" } th { "State" } } }
                tbody {
                    @for g in grants {
                        tr {
                            td { a href=(format!("/grants/{}", g.id)) { (purse_app::grants::kind_label(&g.kind)) } }
                            td.num { (money(currency, g.amount)) }
                            td.num { (money(currency, g.remaining)) }
                            td { (expires(viewer, g)) }
                            td { @if g.scope.is_empty() { "Any service" } @else { (g.scope.join(", ")) } }
                            td.num { (g.priority) }
                            td { (state_name(g.state)) }
                        }
                    }
                    @if grants.is_empty() { tr { td colspan="7" .muted { "No credit grants." } } }
                }
            }
        }
    }
}

/// `/customers/{id}/grants`: the customer's grants, and (operator staff) a form to give credit.
pub async fn list(
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
    let who = viewer.who;
    let (party, grants, currency) = read(&state, move |s| {
        let party = s.party_of_kind(&who, id, false)?;
        let PartyKind::Customer { currency, .. } = party.kind else { return Err(PortalError::NotFound) };
        let grants = s.grants_of(&who, id, false, 200)?;
        Ok((party, grants, s.currency("currency", currency)?))
    })
    .await?;
    let err = |name: &str| page::error_for(&error, name);
    let value = |name: &str| entered.get(name).map(String::as_str).unwrap_or_default();
    let in_force: Vec<Grant> = grants.iter().filter(|g| g.state == GrantState::Open).cloned().collect();
    let closed: Vec<Grant> = grants.iter().filter(|g| g.state != GrantState::Open).cloned().collect();
    let remaining: i64 = in_force.iter().map(|g| g.remaining.0).sum();
    // The form's own id, so that submitting it twice grants once.
    let request = page::request_id(&entered)?;
    let body = html! {
        (page::summary(&error))
        p.muted {
            "Credit that is not cash: it pays for the services it is for before the customer's own money, "
            "lowest priority number first, then the soonest to expire, then the oldest. What is left at its expiry is breakage."
        }
        p id="grants-total" { "In force: " strong { (money(currency, purse_core::Amount(remaining))) } }
        (table(&viewer, "grants", &in_force, currency))
        @if !closed.is_empty() {
            h2 { "Used up, expired and voided" }
            (table(&viewer, "closed-grants", &closed, currency))
        }
        @if may_grant(&viewer) {
            h2 { "Give credit" }
            form.card method="post" action=(format!("/customers/{id}/grants")) id="grant-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                input type="hidden" name="request" value=(request);
                (field(&format!("Amount ({})", currency.code), "amount", "text", value("amount"), err("amount")))
                (select("Kind", "kind", &KINDS, if value("kind").is_empty() { "promotional" } else { value("kind") }, err("kind")))
                (select("Paid by (purchased credit)", "paid_by", &[("", "Not purchased"), ("card", "Card"), ("cash", "Cash"), ("bank_transfer", "Bank transfer"), ("cheque", "Cheque")], value("paid_by"), err("paid_by")))
                (field("Priority (1 is used first)", "priority", "number", if value("priority").is_empty() { "10" } else { value("priority") }, err("priority")))
                (field("Valid through (date; empty: never expires)", "expires_on", "date", value("expires_on"), err("expires_at")))
                (field("Only for services (comma-separated; empty: any)", "scope", "text", value("scope"), err("scope")))
                (field("Reason", "reason", "text", value("reason"), err("reason")))
                button type="submit" id="give-credit" { "Give credit" }
            }
        }
    };
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let back = format!("/customers/{id}");
    let crumbs: Vec<(&str, &str)> = if viewer.own_customer().is_none() {
        vec![("Customers", "/customers"), (party.name.as_str(), back.as_str()), ("Credit grants", "")]
    } else {
        vec![(party.name.as_str(), back.as_str()), ("Credit grants", "")]
    };
    Ok(page::respond(status, page::layout("Credit grants", Some(&viewer), &crumbs, body)))
}

/// Gives credit from the form.
pub async fn create(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let names = ["amount", "kind", "paid_by", "priority", "expires_on", "scope", "reason", "request"];
    let entered = form.entered(&names);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let made = read(&state, move |s| {
        let opt = |k: &str| Some(e[k].clone()).filter(|x| !x.is_empty());
        // What cannot be read is told with what the rules refuse, all at once.
        let mut unread = page::Errors::new();
        let priority = opt("priority").map(|p| {
            p.parse::<u32>().unwrap_or_else(|_| {
                unread.push(("priority".into(), "a whole number from 1 to 1000".into()));
                1
            })
        });
        let expires_at = opt("expires_on").and_then(|d| match purse_core::time::parse_date(&d) {
            // Valid through the whole day in the viewer's zone: it expires when the next starts.
            Some(day) => Some(purse_core::time::format(v.zone.day_start(day + 1))),
            None => {
                unread.push(("expires_at".into(), "choose a date such as 2027-01-31".into()));
                None
            }
        });
        let request = GrantRequest {
            // The form's own id: a second submit of the same form grants once.
            client_id: match opt("request") {
                Some(r) => r,
                None => format!("portal-{}", purse_app::secrets::random_hex::<12>()?),
            },
            customer: id,
            account: None,
            amount: e["amount"].clone(),
            kind: opt("kind"),
            priority,
            effective_at: None,
            expires_at,
            scope: e["scope"].split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect(),
            rollover: None,
            paid_by: opt("paid_by"),
            reason: e["reason"].clone(),
        };
        match s.grant_command(&v.who, &request).map_err(PortalError::keep_field) {
            Ok(command) if unread.is_empty() => Ok(command),
            Ok(_) => Err(PortalError::Fields(unread)),
            Err(PortalError::Fields(more)) => {
                for e in more {
                    if !unread.iter().any(|(f, _)| *f == e.0) {
                        unread.push(e);
                    }
                }
                Err(PortalError::Fields(unread))
            }
            Err(other) => Err(other),
        }
    })
    .await;
    let command = match made {
        Ok(c) => c,
        Err(PortalError::Fields(errors)) => return render(state, viewer, id, entered, errors).await,
        Err(other) => return Err(other),
    };
    match super::submit(&state, command).await? {
        Ok(_) => Ok(done(&format!("/customers/{id}/grants"), "Credit granted.")),
        Err(e) => match PortalError::keep_field(e) {
            PortalError::Fields(errors) => render(state, viewer, id, entered, errors).await,
            other => Err(other),
        },
    }
}

/// `/grants/{id}`: a grant, what it paid, and (operator staff) voiding what is left.
pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    show_page(state, Arc::new(viewer), id, None).await
}

async fn show_page(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    error: Option<String>,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (detail, uses, keys) =
        read(&state, move |s| Ok((s.grant_for(&who, id)?, s.grant_uses(&who, id)?, super::credit::key_names(s)?)))
            .await?;
    let (g, c) = (&detail.grant, detail.currency);
    let customer = detail.customer.id.0;
    let use_name = |k: purse_core::GrantUseKind| match k {
        purse_core::GrantUseKind::Charge => "Paid usage",
        purse_core::GrantUseKind::Return => "Given back (usage reversed)",
        purse_core::GrantUseKind::Expiry => "Expired (breakage)",
        purse_core::GrantUseKind::Rollover => "Rolled over to a new grant",
        purse_core::GrantUseKind::Void => "Voided",
    };
    let body = html! {
        @if let Some(m) = &error { p.notice.bad role="alert" id="form-error" role="alert" { (m) } }
        dl.figures {
            div { dt { "Kind" } dd { (purse_app::grants::kind_label(&g.kind)) } }
            div { dt { "Granted" } dd { (money(c, g.amount)) } }
            div { dt { "Remaining" } dd id="remaining" { (money(c, g.remaining)) } }
            div { dt { "Held for calls" } dd { (money(c, g.reserved)) } }
            div { dt { "State" } dd id="state" { (state_name(g.state)) } }
        }
        p {
            "In force from " (viewer.when(g.effective_at)) "; expires: " (expires(&viewer, g)) ". "
            "For: " @if g.scope.is_empty() { "any service" } @else { (g.scope.join(", ")) } ". Priority " (g.priority) "."
        }
        @if let Some(r) = &g.reason { p { "Why: " (r) } }
        @if viewer.user.role == Role::Operator { p.muted { "Granted by " (super::credit::shown_actor(&keys, &g.by)) " on " (viewer.when(g.created_at)) "." } }
        h2 { "What it paid" }
        div.scroll {
            table id="grant-uses" {
                thead { tr { th { "When" } th { "What" } th.num { "Amount" } } }
                tbody {
                    @for u in &uses {
                        tr {
                            td { (viewer.when(u.at)) }
                            td { (use_name(u.kind)) }
                            td.num { (money(c, u.amount)) }
                        }
                    }
                    @if uses.is_empty() { tr { td colspan="3" .muted { "Nothing yet." } } }
                }
            }
        }
        @if may_grant(&viewer) && g.state == GrantState::Open && g.remaining.is_positive() {
            h2 { "Void" }
            form.card method="post" action=(format!("/grants/{id}/void")) id="void-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("Reason", "reason", "text", "", None))
                button.danger type="submit" id="void-grant" { "Void what is left (" (money(c, g.remaining)) ")" }
            }
        }
    };
    let back = format!("/customers/{customer}/grants");
    let customer_page = format!("/customers/{customer}");
    let crumbs: Vec<(&str, &str)> =
        vec![(detail.customer.name.as_str(), customer_page.as_str()), ("Credit grants", back.as_str()), ("Grant", "")];
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout("Credit grant", Some(&viewer), &crumbs, body)))
}

pub async fn void(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let viewer = Arc::new(viewer);
    let (v, reason) = (viewer.clone(), form.get("reason").to_owned());
    let command =
        match read(&state, move |s| s.void_grant_command(&v.who, id, &reason).map_err(PortalError::keep_field)).await {
            Ok(c) => c,
            Err(PortalError::Fields(errors)) => {
                let message = errors.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ");
                return show_page(state, viewer, id, Some(message)).await;
            }
            Err(other) => return Err(other),
        };
    match super::submit(&state, command).await? {
        Ok(_) => Ok(done(&format!("/grants/{id}"), "The grant was voided: what was left went back.")),
        Err(purse_app::AppError::Rejected(r)) => show_page(state, viewer, id, Some(r.to_string())).await,
        Err(e) => Err(PortalError::from(e)),
    }
}
