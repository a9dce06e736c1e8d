//! Rate plans: the list, a plan's rates (searched by prefix), importing and exporting its
//! deck; a customer's plan and its active calls (on the customer's page).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use purse_core::{PartyId, Role, Scope};
use purse_store::RatePlan;
use serde_json::Value;

use super::page::error_for;
use super::page::{self, field, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// Rates shown on a plan's page.
const RATES_SHOWN: u32 = 200;

fn staff_admin(viewer: &Viewer) -> bool {
    viewer.user.scope == Scope::ReadWrite && !matches!(viewer.user.role, Role::Customer(_))
}

/// `/rate-plans`: the plans the viewer sees, and a new one (staff).
pub async fn list(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    plans_page(state, Arc::new(viewer), None, Vec::new()).await
}

async fn plans_page(
    state: PortalState,
    viewer: Arc<Viewer>,
    entered: Option<(String, String)>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let (plans, owners, currencies) = read(&state, move |s| {
        let plans = s.list_plans(&who)?;
        let mut owners = std::collections::HashMap::new();
        for p in &plans {
            if let Some(o) = p.owner {
                if let Ok(party) = s.party_for(&who, o.0) {
                    owners.insert(o, party.name);
                }
            }
        }
        let currencies: Vec<String> = s.engine.reader().currencies()?.iter().map(|c| c.code.to_string()).collect();
        Ok((plans, owners, currencies))
    })
    .await?;
    let (name, currency) = entered.unwrap_or_default();
    let options: Vec<(&str, &str)> = currencies.iter().map(|c| (c.as_str(), c.as_str())).collect();
    let body = html! {
        (page::summary(&error))
        div.scroll {
            table id="rate-plans" {
                thead { tr { th { "Plan" } th { "Currency" } th { "Seller" } th.num { "Rates" } th { "Last changed" } } }
                tbody {
                    @for p in &plans {
                        tr {
                            td { a href=(format!("/rate-plans/{}", p.id)) { (p.name) } }
                            td { (p.currency) }
                            td { (seller(p, &owners, &viewer)) }
                            td.num { (page::grouped(&p.rates.to_string())) }
                            td { (viewer.when(p.updated_at)) }
                        }
                    }
                    @if plans.is_empty() { tr { td colspan="5" .muted { "No rate plans yet." } } }
                }
            }
        }
        @if staff_admin(&viewer) {
            h2 { "New rate plan" }
            form.card method="post" action="/rate-plans" id="plan-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                (field("Name", "name", "text", &name, error_for(&error, "name")))
                (select("Currency", "currency", &options, &currency, error_for(&error, "currency")))
                button type="submit" id="create-plan" { "Create" }
            }
        }
    };
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout("Rate plans", Some(&viewer), &[("Rate plans", "")], body)))
}

fn seller(p: &RatePlan, owners: &std::collections::HashMap<PartyId, String>, viewer: &Viewer) -> String {
    match p.owner {
        None => "Operator".to_owned(),
        Some(_) if matches!(viewer.user.role, Role::Customer(_)) => String::new(),
        Some(o) => owners.get(&o).cloned().unwrap_or_default(),
    }
}

pub async fn create(State(state): State<PortalState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let (name, currency) = (form.get("name").trim().to_owned(), form.get("currency").trim().to_owned());
    let who = viewer.who;
    let (n, c) = (name.clone(), currency.clone());
    match read(&state, move |s| s.create_plan(&who, &n, &c, None).map_err(PortalError::keep_field)).await {
        Ok(plan) => Ok(done(&format!("/rate-plans/{}", plan.id), "The rate plan was created.")),
        Err(PortalError::Fields(errors)) => plans_page(state, Arc::new(viewer), Some((name, currency)), errors).await,
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
pub struct Search {
    prefix: Option<String>,
}

/// `/rate-plans/{id}`: the plan's rates (every version), searched by prefix; export; import.
pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    Query(q): Query<Search>,
) -> Result<Response, PortalError> {
    plan_page(state, Arc::new(viewer), id, q.prefix.unwrap_or_default(), None, Vec::new()).await
}

async fn plan_page(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    prefix: String,
    entered: Option<(String, String)>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let search = prefix.trim().to_owned();
    let (plan, rates, currency, resellers) = read(&state, move |s| {
        let wanted = (!search.is_empty()).then_some(search.as_str());
        let (plan, rates) = s.plan_rates(&who, id, wanted, RATES_SHOWN).map_err(PortalError::keep_field)?;
        let currency = s.currency("currency", plan.currency)?;
        let resellers: Vec<(u64, String)> = match who.role {
            Role::Operator => s
                .engine
                .reader()
                .parties(purse_store::PartyQuery { resellers: Some(true), limit: 500, ..Default::default() })?
                .into_iter()
                .map(|p| (p.id.0, p.name))
                .collect(),
            Role::Reseller(r) if plan.owner == Some(r) => vec![(r.0, s.party_for(&who, r.0)?.name)],
            _ => Vec::new(),
        };
        Ok((plan, rates, currency, resellers))
    })
    .await?;
    let owner = match viewer.user.role {
        Role::Operator => true,
        Role::Reseller(r) => plan.owner == Some(r),
        Role::Customer(_) => false,
    } && viewer.user.scope == Scope::ReadWrite;
    let (csv, service) = entered.unwrap_or_else(|| (String::new(), "voice".into()));
    let body = html! {
        p.muted { (plan.currency) " · " (page::grouped(&plan.rates.to_string())) " rates · changed " (viewer.when(plan.updated_at)) }
        (page::summary(&error))
        form.inline method="get" action=(format!("/rate-plans/{id}")) id="search" {
            (field("Prefix starts with", "prefix", "text", &prefix, error_for(&error, "prefix")))
            button type="submit" id="search-rates" { "Search" }
            " " a href=(format!("/rate-plans/{id}/export.csv")) id="export" { "Export CSV" }
        }
        div.scroll {
            table id="rates" {
                thead { tr { th { "Service" } th { "Prefix" } th { "Destination" } th.num { "Price" } th.num { "Connection fee" } th.num { "Minimum" } th { "Increments" } th { "Per" } th { "From" } } }
                tbody {
                    @for r in &rates {
                        tr {
                            td { (r.service) }
                            td { (r.prefix.as_str()) }
                            td { (r.description) }
                            td.num { (r.price.format(currency.scale)) }
                            td.num { (r.connection_fee.format(currency.scale)) }
                            td.num { (r.minimum.format(currency.scale)) }
                            td { (r.increments.to_string()) }
                            td { (unit_name(&r.service, r.unit)) }
                            td { (viewer.when(r.effective_from)) }
                        }
                    }
                    @if rates.is_empty() { tr { td colspan="9" .muted { "No rates match." } } }
                }
            }
        }
        @if rates.len() as u32 == RATES_SHOWN { p.muted { "The first " (RATES_SHOWN) " rates are shown; search by prefix to narrow." } }
        @if !resellers.is_empty() && viewer.user.scope == Scope::ReadWrite {
            h2 { "Give this plan to a reseller" }
            form.card method="post" action=(format!("/rate-plans/{id}/assign")) id="assign-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                @let options: Vec<(String, String)> = resellers.iter().map(|(r, n)| (r.to_string(), n.clone())).collect();
                @let options: Vec<(&str, &str)> = options.iter().map(|(v, t)| (v.as_str(), t.as_str())).collect();
                (select("Reseller", "reseller", &options, "", error_for(&error, "reseller")))
                @let roles: Vec<(&str, &str)> = if viewer.user.role == Role::Operator {
                    vec![("customers_default", "Its customers' default plan"), ("pays", "The plan it pays by")]
                } else {
                    vec![("customers_default", "My customers' default plan")]
                };
                (select("As", "role", &roles, "customers_default", error_for(&error, "pays")))
                button type="submit" id="assign" { "Give" }
            }
        }
        @if owner {
            h2 { "Import rates" }
            form.card method="post" action=(format!("/rate-plans/{id}/import")) id="import-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                (field("Service (for a deck without a service column)", "service", "text", &service, error_for(&error, "service")))
                div.field.invalid[error_for(&error, "csv").is_some()] {
                    label for="csv" { "Deck (CSV with a header line: prefix, description, price, connection_fee, minimum, increments, unit, effective_from)" }
                    textarea id="csv" name="csv" rows="8" { (csv) }
                    @if let Some(e) = error_for(&error, "csv") { p.error id="csv-error" { (e) } }
                }
                button type="submit" id="import" { "Import" }
            }
        }
    };
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(
        status,
        page::layout(&plan.name, Some(&viewer), &[("Rate plans", "/rate-plans"), (plan.name.as_str(), "")], body),
    ))
}

fn unit_name(service: &str, unit: u32) -> String {
    match (service, unit) {
        ("voice", 60) => "minute".into(),
        ("data", 1_000_000) => "MB".into(),
        ("voice", 1) => "second".into(),
        ("sms", 1) => "message".into(),
        (_, 1) => "unit".into(),
        (_, n) => format!("{n} units"),
    }
}

pub async fn import(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let (csv, service) = (form.get("csv").to_owned(), form.get("service").trim().to_owned());
    let who = viewer.who;
    let (c, sv) = (csv.clone(), service.clone());
    let outcome = read(&state, move |s| {
        let service = (!sv.is_empty()).then_some(sv.as_str());
        s.import_deck(&who, id, &c, service).map_err(PortalError::keep_field)
    })
    .await;
    match outcome {
        Ok((_, n)) => Ok(done(&format!("/rate-plans/{id}"), &format!("{n} rates were imported."))),
        Err(PortalError::Fields(errors)) => {
            plan_page(state, Arc::new(viewer), id, String::new(), Some((csv, service)), errors).await
        }
        Err(e) => Err(e),
    }
}

/// Gives the plan to a reseller: as its customers' default, or (operators) as what it pays by.
pub async fn assign(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let reseller: u64 =
        form.get("reseller").trim().parse().map_err(|_| PortalError::field("reseller", "choose a reseller"))?;
    let role = form.get("role").to_owned();
    let who = viewer.who;
    let outcome = read(&state, move |s| {
        let (pays, default) = match role.as_str() {
            "pays" => (Some(Some(id)), None),
            _ => (None, Some(Some(id))),
        };
        s.assign_reseller_plans(&who, reseller, pays, default).map_err(PortalError::keep_field)
    })
    .await;
    match outcome {
        Ok(()) => Ok(done(&format!("/rate-plans/{id}"), "The reseller's plans were saved.")),
        Err(PortalError::Fields(errors)) => plan_page(state, Arc::new(viewer), id, String::new(), None, errors).await,
        Err(e) => Err(e),
    }
}

pub async fn export(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let text = read(&state, move |s| Ok(s.export_deck(&who, id)?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"rate-plan-{id}.csv\"")),
        ],
        text,
    )
        .into_response())
}

/// On a customer's page: its rate plan (staff may change it) and its active calls.
pub fn customer_section(
    viewer: &Viewer,
    customer: u64,
    plan: Option<&RatePlan>,
    plans: &[RatePlan],
    sessions: &[Value],
    unrated: &[purse_store::UnratedUsage],
) -> Markup {
    let chosen = plan.map(|p| p.id.to_string()).unwrap_or_default();
    let options: Vec<(String, String)> = std::iter::once((String::new(), "None (the reseller's default)".to_owned()))
        .chain(plans.iter().map(|p| (p.id.to_string(), format!("{} ({})", p.name, p.currency))))
        .collect();
    let options: Vec<(&str, &str)> = options.iter().map(|(v, t)| (v.as_str(), t.as_str())).collect();
    html! {
        h2 { "Rating" }
        p id="rate-plan" {
            "Rate plan: "
            @match plan {
                Some(p) => a href=(format!("/rate-plans/{}", p.id)) { (p.name) },
                None => span.muted { "none" },
            }
        }
        @if staff_admin(viewer) {
            form.inline method="post" action=(format!("/customers/{customer}/rate-plan")) id="plan-choice" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (select("Rate plan", "plan", &options, &chosen, None))
                button type="submit" id="save-plan" { "Save" }
            }
        }
        h2 { "Calls in progress" }
        div.scroll {
            table id="sessions" {
                thead { tr { th { "Started" } th { "Service" } th { "Destination" } th.num { "Used" } th.num { "Granted" } th.num { "Charged" } th.num { "Reserved" } } }
                tbody {
                    @for s in sessions {
                        tr {
                            td { (viewer.when_text(&s["started_at"])) }
                            td { (s["service"].as_str().unwrap_or_default()) }
                            td { (s["destination"].as_str().unwrap_or("—")) }
                            td.num { (s["used"]) }
                            td.num { (s["granted"]) (if s["final"].as_bool() == Some(true) { " (last)" } else { "" }) }
                            td.num { (s["charged"].as_str().unwrap_or_default()) " " (s["currency"].as_str().unwrap_or_default()) }
                            td.num { (s["reserved"].as_str().unwrap_or_default()) " " (s["currency"].as_str().unwrap_or_default()) }
                        }
                    }
                    @if sessions.is_empty() { tr { td colspan="7" .muted { "No calls in progress." } } }
                }
            }
        }
        @if !unrated.is_empty() {
            h2 { "Usage no rate matched" }
            p.muted { "Refused, and kept here as a log: post it again with the same client id once a rate covers it." }
            div.scroll {
                table id="unrated" {
                    thead { tr { th { "When" } th { "Service" } th { "Destination" } th.num { "Quantity" } th { "Why" } } }
                    tbody {
                        @for u in unrated.iter().take(20) {
                            tr {
                                td { (viewer.when(u.at)) }
                                td { (u.service) }
                                td { (u.destination.as_deref().unwrap_or("—")) }
                                td.num { (u.quantity) }
                                td { (u.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn save_customer_plan(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let plan = match form.get("plan").trim() {
        "" => None,
        t => Some(t.parse::<u64>().map_err(|_| PortalError::field("plan", "choose a plan from the list"))?),
    };
    let who = viewer.who;
    read(&state, move |s| s.assign_customer_plan(&who, id, plan).map_err(PortalError::keep_field)).await?;
    Ok(done(&format!("/customers/{id}"), "The customer's rate plan was changed."))
}
