//! Taxes in the portal: the tax rates (and the form that adds one), and a customer's tax
//! settings: its rate, when it is taxed, its tax id and billing address.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use purse_app::policy::Action;
use purse_app::taxes::{self, TaxSettingsBody};
use purse_store::{TaxRate, TaxedAt};

use super::page::{self, error_for, field};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// How a rate reads: "VAT 20%", "GST 7.25% (included in prices)".
fn rate_name(r: &TaxRate) -> String {
    let inside = if r.inclusive { " (included in prices)" } else { "" };
    format!("{} {}%{inside}", r.name, taxes::percent_text(r.rate))
}

const RATE_FIELDS: [&str; 3] = ["name", "percent", "inclusive"];

/// `/taxes`: the rates the viewer may use, and the form that adds one.
pub async fn rates(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    render_rates(state, Arc::new(viewer), HashMap::new(), Vec::new()).await
}

async fn render_rates(
    state: PortalState,
    viewer: Arc<Viewer>,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (list, owners) = read(&state, move |s| {
        let owners: HashMap<u64, String> =
            super::visible_parties(s, &v.who)?.into_iter().map(|p| (p.id.0, p.name)).collect();
        Ok((taxes::visible_rates(s, &v.who)?, owners))
    })
    .await?;
    let value = |k: &str, default: &str| entered.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let body = html! {
        p.muted { "A customer's invoices (or, for a customer taxed at top-up, its top-ups and payments) take its rate. An added rate is asked on top of the prices; an included one is inside them." }
        div.scroll {
            table id="tax-rates" {
                thead { tr { th { "Name" } th.num { "Rate" } th { "Prices" } th { "Whose" } th.optional { "Since" } } }
                tbody {
                    @for r in &list {
                        tr {
                            td { (r.name) }
                            td.num { (taxes::percent_text(r.rate)) "%" }
                            td { @if r.inclusive { "Include the tax" } @else { "Tax added on top" } }
                            td { @match r.owner { None => { "Everyone's" } Some(p) => { (owners.get(&p.0).cloned().unwrap_or_else(|| "A reseller".into())) } } }
                            td.optional { (viewer.when(r.created_at)) }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="5" .muted { "No tax rates yet: invoices carry no tax." } } }
                }
            }
        }
        @if viewer.may(Action::CreateTaxRate) {
            h2 { "Add a tax rate" }
            (page::summary(&error))
            form.card method="post" action="/taxes" id="tax-rate-form" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                (field("Name (as invoices print it, such as VAT)", "name", "text", &value("name", ""), error_for(&error, "name")))
                (field("Percentage (such as 20 or 7.25)", "percent", "text", &value("percent", ""), error_for(&error, "percent")))
                (page::select("Prices", "inclusive", &[("no", "Tax added on top"), ("yes", "Include the tax")], &value("inclusive", "no"), error_for(&error, "inclusive")))
                button type="submit" id="save-tax-rate" { "Add rate" }
            }
        }
    };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(
        status,
        page::layout("Tax rates", Some(&viewer), &[("Settings", "/settings"), ("Tax rates", "")], body),
    ))
}

/// Adds a rate, every wrong field named at once.
pub async fn create_rate(
    State(state): State<PortalState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&RATE_FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let made = read(&state, move |s| {
        let inclusive = match e["inclusive"].as_str() {
            "yes" => true,
            "no" => false,
            _ => {
                let choose = "choose tax added on top or included in the price";
                return Err(PortalError::Fields(vec![("inclusive".into(), choose.into())]));
            }
        };
        let made = taxes::create_rate(s, &v.who, &e["name"], &e["percent"], inclusive, None);
        match made {
            Ok(r) => Ok(rate_name(&r)),
            Err(err) => PortalError::with_app(Vec::new(), Err(err)).map(|()| String::new()),
        }
    })
    .await;
    match made {
        Ok(name) => Ok(done("/taxes", &format!("The tax rate {name} is added."))),
        Err(PortalError::Fields(errors)) => render_rates(state, viewer, entered, errors).await,
        Err(other) => Err(other),
    }
}

const SETTINGS_FIELDS: [&str; 4] = ["tax_rate", "taxed_at", "tax_id", "address"];

/// `/customers/{id}/taxes`: the customer's tax settings, and (staff) the form that sets them.
pub async fn settings(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render_settings(state, Arc::new(viewer), id, None, Vec::new()).await
}

async fn render_settings(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (name, current, rates) = read(&state, move |s| {
        let party = s.party_of_kind(&v.who, id, false)?;
        let current = taxes::customer_tax(s, &v.who, id)?;
        let rates = if v.may(Action::PutCustomerTax) {
            taxes::visible_rates(s, &v.who)?
        } else {
            // A customer sees the rate it has, not the others.
            s.payments.tax_rates()?.into_iter().filter(|r| Some(r.id) == current.rate).collect()
        };
        Ok((party.name, current, rates))
    })
    .await?;
    let now: HashMap<String, String> = [
        ("tax_rate", current.rate.map_or_else(String::new, |r| r.to_string())),
        ("taxed_at", current.taxed_at.as_str().to_owned()),
        ("tax_id", current.tax_id.clone()),
        ("address", current.address.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let entered = entered.unwrap_or(now);
    let value = |k: &str| entered.get(k).cloned().unwrap_or_default();
    let rate = current.rate.and_then(|r| rates.iter().find(|x| x.id == r));
    let choices: Vec<(String, String)> = std::iter::once((String::new(), "No tax".to_owned()))
        .chain(rates.iter().map(|r| (r.id.to_string(), rate_name(r))))
        .collect();
    let choices: Vec<(&str, &str)> = choices.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let when = [
        (TaxedAt::Invoice.as_str(), "On its usage invoices"),
        (TaxedAt::TopUp.as_str(), "When it tops up (prepaid): top-up invoices and payments carry the tax"),
    ];
    let body = html! {
        section.card id="tax-now" {
            dl.facts {
                dt { "Tax rate" } dd { @match rate { Some(r) => { (rate_name(r)) } None => { "No tax" } } }
                dt { "Taxed" } dd { @if current.taxed_at == TaxedAt::TopUp { "When it tops up" } @else { "On its usage invoices" } }
                dt { "Tax id" } dd { @if current.tax_id.is_empty() { "None given" } @else { (current.tax_id) } }
                dt { "Billing address" } dd { @if current.address.is_empty() { "None given" } @else { @for line in current.address.lines() { (line) br; } } }
            }
        }
        @if viewer.may(Action::PutCustomerTax) {
            h2 { "Change the tax settings" }
            (page::summary(&error))
            form.card method="post" action=(format!("/customers/{id}/taxes")) id="tax-settings-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (page::select("Tax rate", "tax_rate", &choices, &value("tax_rate"), error_for(&error, "tax_rate")))
                (page::select("Taxed", "taxed_at", &when, &value("taxed_at"), error_for(&error, "taxed_at")))
                (field("Tax id (such as a VAT number)", "tax_id", "text", &value("tax_id"), error_for(&error, "tax_id")))
                @let address_error = error_for(&error, "address");
                div.field.invalid[address_error.is_some()] {
                    label for="address" { "Billing address (printed on invoices)" }
                    textarea id="address" name="address" rows="4" aria-invalid=[address_error.map(|_| "true")]
                        aria-describedby=[address_error.map(|_| "address-error")] { (value("address")) }
                    @if let Some(e) = address_error { p.error id="address-error" { (e) } }
                }
                p.muted { "A new rate applies to invoices issued from now on; issued invoices keep theirs." }
                button type="submit" id="save-tax-settings" { "Save tax settings" }
            }
        }
    };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let customer = format!("/customers/{id}");
    Ok(page::respond(
        status,
        page::layout(
            &format!("Taxes · {name}"),
            Some(&viewer),
            &[("Customers", "/customers"), (&name, &customer), ("Taxes", "")],
            body,
        ),
    ))
}

/// Saves a customer's tax settings, every wrong field named at once.
pub async fn save_settings(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&SETTINGS_FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let saved = read(&state, move |s| {
        let mut errors = page::Errors::new();
        let rate = match e["tax_rate"].trim() {
            "" => None,
            text => text.parse::<u64>().map_or_else(
                |_| {
                    errors.push(("tax_rate".into(), "choose one of the tax rates".into()));
                    None
                },
                Some,
            ),
        };
        // A choice the form does not offer is told as the form words it, not as the API's codes.
        if ![TaxedAt::Invoice, TaxedAt::TopUp].iter().any(|t| t.as_str() == e["taxed_at"]) {
            errors.push(("taxed_at".into(), "choose on its usage invoices or when it tops up".into()));
        }
        let body = TaxSettingsBody {
            tax_rate: rate,
            taxed_at: Some(e["taxed_at"].clone()),
            tax_id: e["tax_id"].clone(),
            address: e["address"].clone(),
        };
        match taxes::put_customer_tax(s, &v.who, id, &body) {
            Ok(_) => {
                PortalError::with_app(errors, Ok(()))?;
                Ok(s.party_of_kind(&v.who, id, false)?.name)
            }
            Err(err) => PortalError::with_app(errors, Err(err)).map(|()| String::new()),
        }
    })
    .await;
    match saved {
        Ok(name) => Ok(done(&format!("/customers/{id}/taxes"), &format!("The tax settings of {name} are saved."))),
        Err(PortalError::Fields(errors)) => render_settings(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}
