//! Collections in the portal: the banner a suspended customer's pages show (why, and how to
//! pay), staff suspending or lifting by hand, and the dunning policies page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_app::collections::{self, PolicyInput};
use purse_app::policy::Action;
use purse_core::Role;
use purse_store::{DunningPolicy, PolicyOwner, Suspension};

use super::page::{self, error_for, field};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

/// What a suspended customer's pages say: since when, why, and how to lift it. Staff also get
/// the form that suspends or lifts by hand.
pub fn banner(viewer: &Viewer, customer: u64, current: Option<&Suspension>) -> Markup {
    let staff = viewer.may(Action::PutSuspension);
    html! {
        @if let Some(s) = current {
            section.card.notice.bad id="suspended" role="alert" {
                p { strong { "Suspended" } " since " (viewer.when(s.started_at)) ": " (s.detail) "." }
                p { "Charges, holds and calls on its accounts are refused until the suspension is lifted. "
                    @if s.cause == purse_store::collections::Cause::Staff { "Staff suspended it; only staff lift it." }
                    @else { "Paying what is overdue lifts it at once: " a href=(format!("/customers/{customer}/invoices")) { "Invoices and payments →" } }
                }
                @if staff {
                    form.filters method="post" action=(format!("/customers/{customer}/suspension")) id="lift-form" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="suspended" value="no";
                        (field("Reason for lifting (kept in the audit log)", "reason", "text", "", None))
                        button type="submit" id="lift" { "Lift the suspension" }
                    }
                }
            }
        } @else if staff {
            details id="suspend" {
                summary { "Suspend this customer…" }
                form.card method="post" action=(format!("/customers/{customer}/suspension")) id="suspend-form" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    input type="hidden" name="suspended" value="yes";
                    p.muted { "Its charges, holds and calls are refused until staff lift it." }
                    (field("Reason (kept in the audit log)", "reason", "text", "", None))
                    button.danger type="submit" id="save-suspend" { "Suspend" }
                }
            }
        }
    }
}

/// Staff suspend or lift by hand, with a reason.
pub async fn save_suspension(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    // The two buttons' forms say yes or no; anything else is a form edited by hand.
    let choice = match form.get("suspended") {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    };
    let suspend = choice == Some(true);
    let reason = form.get("reason").trim().to_owned();
    let who = viewer.who;
    let outcome = read(&state, move |s| {
        let name = s.party_of_kind(&who, id, false)?.name;
        let Some(suspend) = choice else {
            return Ok(Err("choose to suspend the customer or to lift its suspension".to_owned()));
        };
        match collections::set_standing(s, &who, id, suspend, &reason) {
            Ok(changed) => Ok(Ok((name, changed))),
            Err(purse_app::AppError::Invalid { message, .. }) => Ok(Err(message)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let path = format!("/customers/{id}");
    Ok(match outcome {
        Ok((name, true)) if suspend => done(&path, &format!("{name} is suspended.")),
        Ok((name, true)) => done(&path, &format!("The suspension of {name} is lifted.")),
        Ok((name, false)) if suspend => done(&path, &format!("{name} was suspended already.")),
        Ok((name, false)) => done(&path, &format!("{name} was not suspended.")),
        Err(message) => done(&path, &format!("Nothing changed: {message}.")),
    })
}

/// The reminder texts of the form's text area: separated by a line of `---`.
fn split_texts(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut texts = vec![String::new()];
    for line in text.lines() {
        if line.trim() == TEXTS_BETWEEN {
            texts.push(String::new());
        } else if let Some(last) = texts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    texts.iter().map(|t| t.trim().to_owned()).collect()
}

/// How a policy's owner reads.
fn owner_name(owner: PolicyOwner, names: &HashMap<String, String>) -> String {
    match owner {
        PolicyOwner::Operator => "Default (every customer without another)".to_owned(),
        other => names.get(&other.key()).cloned().unwrap_or_else(|| "A former reseller or class".to_owned()),
    }
}

const FIELDS: [&str; 6] =
    ["owner", "payment_terms_days", "reminder_days", "reminder_texts", "suspend_after_days", "suspend_below"];

/// Between reminder texts in the form's one text area: a line of its own.
const TEXTS_BETWEEN: &str = "---";

/// `/dunning`: the dunning policies, and the form that sets one.
pub async fn policies(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    render(state, Arc::new(viewer), HashMap::new(), Vec::new()).await
}

async fn render(
    state: PortalState,
    viewer: Arc<Viewer>,
    entered: HashMap<String, String>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (list, owners) = read(&state, move |s| {
        let list = collections::visible_policies(s, &v.who)?;
        // Whose policy the viewer may set, by name.
        let mut owners: Vec<(String, String)> = Vec::new();
        if v.who.role == Role::Operator {
            owners.push(("operator".into(), "Default (every customer without another)".into()));
            for c in s.credit.classes()? {
                owners.push((PolicyOwner::Class(c.id).key(), format!("Class · {}", c.name)));
            }
        }
        for p in super::visible_parties(s, &v.who)? {
            if matches!(p.kind, purse_core::PartyKind::Reseller) {
                owners.push((PolicyOwner::Reseller(p.id).key(), format!("Reseller · {}", p.name)));
            }
        }
        Ok((list, owners))
    })
    .await?;
    let names: HashMap<String, String> = owners.iter().cloned().collect();
    let value = |k: &str, default: &str| entered.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let options: Vec<(&str, &str)> = owners.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let days = |p: &DunningPolicy| p.reminder_days.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let body = html! {
        p.muted { "When a usage invoice is due, when reminders go after that, and when a customer is suspended. A class's policy applies before its reseller's, a reseller's before the default." }
        div.scroll {
            table id="policies" {
                thead { tr { th { "For" } th.num { "Due after" } th { "Reminders (days overdue)" } th { "Suspended" } } }
                tbody {
                    @for p in &list {
                        tr {
                            td { (owner_name(p.owner, &names)) }
                            td.num { (p.payment_terms_days) " days" }
                            td {
                                @if p.reminder_days.is_empty() { "None" } @else { (days(p)) }
                                @if !p.reminder_texts.is_empty() { " · " (p.reminder_texts.len()) " with their own text" }
                            }
                            td {
                                @match (p.suspend_after_days, &p.suspend_below) {
                                    (None, None) => { "Never" }
                                    (Some(d), None) => { (d) " days overdue" }
                                    (None, Some(b)) => { "Prepaid balance below " (b) }
                                    (Some(d), Some(b)) => { (d) " days overdue, or a prepaid balance below " (b) }
                                }
                            }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="4" .muted { "No policy: invoices are never dunned and nobody is suspended for them." } } }
                }
            }
        }
        @if viewer.may(Action::PutDunningPolicy) && !options.is_empty() {
            h2 { "Set a policy" }
            (page::summary(&error))
            form.card method="post" action="/dunning" id="policy-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (page::select("For", "owner", &options, &value("owner", options[0].0), error_for(&error, "owner")))
                (field("Due after (days from the invoice)", "payment_terms_days", "number", &value("payment_terms_days", "14"), error_for(&error, "payment_terms_days")))
                (field("Reminders (days after the due date, such as 3, 7, 14)", "reminder_days", "text", &value("reminder_days", "3, 7, 14"), error_for(&error, "reminder_days")))
                @let texts_error = error_for(&error, "reminder_texts");
                div.field.invalid[texts_error.is_some()] {
                    label for="reminder_texts" { "Each reminder's own text, in order, separated by a line of --- (empty: the standard text)" }
                    textarea id="reminder_texts" name="reminder_texts" rows="6" aria-invalid=[texts_error.map(|_| "true")]
                        aria-describedby=[texts_error.map(|_| "reminder_texts-error")] { (value("reminder_texts", "")) }
                    p.muted { "Filled in: {customer}, {invoice}, {amount_due}, {due_on}, {days_overdue}, {suspend_after}." }
                    @if let Some(e) = texts_error { p.error id="reminder_texts-error" { (e) } }
                }
                (field("Suspend after (days overdue; empty: never)", "suspend_after_days", "number", &value("suspend_after_days", ""), error_for(&error, "suspend_after_days")))
                (field("Suspend a prepaid customer below (a balance such as -50.00; empty: never)", "suspend_below", "text", &value("suspend_below", ""), error_for(&error, "suspend_below")))
                button type="submit" id="save-policy" { "Save policy" }
            }
        }
    };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(
        status,
        page::layout("Dunning policies", Some(&viewer), &[("Settings", "/settings"), ("Dunning policies", "")], body),
    ))
}

/// Saves a policy, every wrong field named at once.
pub async fn save_policy(
    State(state): State<PortalState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let saved = read(&state, move |s| {
        let mut errors = page::Errors::new();
        let number = |field: &str, errors: &mut page::Errors| -> Option<i64> {
            let text = e[field].as_str();
            if text.is_empty() {
                return None;
            }
            text.parse().map_or_else(
                |_| {
                    errors.push((field.to_owned(), "a whole number of days".into()));
                    None
                },
                Some,
            )
        };
        let terms = number("payment_terms_days", &mut errors);
        let after = number("suspend_after_days", &mut errors);
        let mut reminders = Vec::new();
        for part in e["reminder_days"].split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse() {
                Ok(d) => reminders.push(d),
                Err(_) => {
                    errors.push(("reminder_days".into(), "whole numbers of days separated by commas".into()));
                    break;
                }
            }
        }
        // An owner the form does not offer is told as the form words it, not as the API's codes.
        if PolicyOwner::parse(&e["owner"]).is_none() {
            errors.push(("owner".into(), "choose whom the policy is for from the list".into()));
        }
        let owner = collections::owner_for(s, &v.who, &e["owner"]);
        let input = PolicyInput {
            payment_terms_days: terms,
            reminder_days: reminders,
            reminder_texts: split_texts(&e["reminder_texts"]),
            suspend_after_days: after,
            suspend_below: Some(e["suspend_below"].clone()),
        };
        // The application checks the rest, so every wrong field is named at once; nothing
        // is saved unless all of it is right.
        let checked = owner.and_then(|owner| collections::check_policy(owner, input, s.now()));
        match checked {
            Ok(policy) => {
                PortalError::with_app(errors, Ok(()))?;
                Ok(collections::save_policy(s, &v.who, &policy)?)
            }
            Err(e) => PortalError::with_app(errors, Err(e)),
        }
    })
    .await;
    match saved {
        Ok(()) => Ok(done("/dunning", "The dunning policy is saved.")),
        Err(PortalError::Fields(errors)) => render(state, viewer, entered, errors).await,
        Err(other) => Err(other),
    }
}
