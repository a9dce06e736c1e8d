//! The Balance & Credits tab (seed 003) and the audit log. The tab shows a customer's
//! permanent credit limit, temporary increase and its valid until (postpaid only), the
//! maximum possible increase, the warning thresholds, unallocated payments, the credit
//! limit history and the subscriber-to-subscriber transfers setting; staff change the limits
//! and settings through the API's checks, and errors come back next to the field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use purse_core::{PartyId, PartyKind, Role, Scope};
use purse_store::collections::PolicyOwner;
use purse_store::AuditQuery;
use serde_json::Value;

use super::page::error_for;
use super::page::{self, field};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::credit::{self as api, CreditChange, CreditSettingsBody, IncreaseText};

pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render(state, Arc::new(viewer), id, None, Vec::new()).await
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

async fn render(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (name, view, history, classes, keys) = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let PartyKind::Customer { wallet, .. } = party.kind else { return Err(PortalError::NotFound) };
        let view = api::settings_view(s, &party)?;
        let history: Vec<Value> = s.credit.limit_history(wallet)?.iter().rev().map(api::history_view).collect();
        let classes: Vec<(u64, String)> = s.credit.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
        Ok((party.name, view, history, classes, key_names(s)?))
    })
    .await?;
    let postpaid = view["billing"] == "postpaid";
    let staff = !matches!(viewer.user.role, Role::Customer(_));
    let writable = staff && viewer.user.scope == Scope::ReadWrite;
    // Only the submitted form's fields are in `entered`: every other form shows what is saved.
    let value = |k: &str, saved: String| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or(saved);
    let currency = text(&view["currency"]);
    let increase = &view["temporary_increase"];
    let action = format!("/customers/{id}/credit");
    let transfers = view["subscriber_transfers"].as_str().unwrap_or("class").to_owned();
    let chosen_transfers = value("subscriber_transfers", transfers.clone());
    let class_now = view["class"]["id"].as_u64().map(|c| c.to_string()).unwrap_or_default();
    let chosen_class = value("class", class_now);
    let body = html! {
        (page::summary(&error))
        dl.figures id="credit-figures" {
            dt { "Permanent Credit Limit" } dd id="permanent-limit" { (text(&view["credit_limit"])) " " (currency) }
            @if postpaid {
                dt { "Temporary Credit Limit Increase" } dd id="temporary-increase" { @if increase.is_null() { "None" } @else { (text(&increase["amount"])) " " (currency) } }
                dt { "Valid Until" } dd id="valid-until" { @if increase.is_null() { "—" } @else { (viewer.when_text(&increase["valid_until"])) } }
                dt { "Effective credit limit" } dd id="effective-limit" { (text(&view["effective_credit_limit"])) " " (currency) }
            }
            dt { (if postpaid { "Credit Limit Warning Threshold" } else { "Low Funds Warning Threshold" }) }
            dd id="warning-thresholds" {
                @let w = text(&view["warning_thresholds"]);
                (if w.is_empty() { "None".to_owned() } else { w }) " · " a href=(format!("/customers/{id}/alerts")) { "change" }
            }
            dt { "Unallocated Payments" } dd id="unallocated" { (text(&view["unallocated_payments"])) " " (currency) }
            dt { "Customer class" } dd id="customer-class" { @if view["class"].is_null() { "None" } @else { (text(&view["class"]["name"])) } }
            dt { "Subscriber-to-Subscriber transfers allowed" }
            dd id="transfers-setting" {
                (match transfers.as_str() { "yes" => "Yes", "no" => "No", _ => "As defined by the customer class" })
                " (" (if view["subscriber_transfers_allowed"] == true { "allowed now" } else { "not allowed now" }) ")"
            }
        }
        @if postpaid {
            @if let Some(t) = view["maximum_increase"]["text"].as_str() { p.notice id="maximum-increase" { "Maximum possible increase: " (t) } }
        }
        @if writable {
            h2 { "Change the credit limit" }
            form.card method="post" action=(action.clone()) id="credit-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field(&format!("Permanent Credit Limit ({currency})"), "credit_limit", "text", &value("credit_limit", text(&view["credit_limit"])), error_for(&error, "credit_limit")))
                @if postpaid {
                    (field("Temporary Credit Limit Increase (amount; empty for none)", "increase_amount", "text", &value("increase_amount", text(&increase["amount"])), error_for(&error, "temporary_increase.amount").or(error_for(&error, "temporary_increase"))))
                    (field("…or as a percentage of the permanent limit", "increase_percent", "text", &value("increase_percent", String::new()), error_for(&error, "temporary_increase.percent")))
                    (field(&format!("Valid Until (date and time, {})", viewer.zone.name()), "valid_until", "datetime-local", &value("valid_until", increase["valid_until"].as_str().and_then(purse_core::time::parse).map(|t| viewer.zone.input_value(t)).unwrap_or_default()), error_for(&error, "temporary_increase.valid_until")))
                }
                (field("Reason (kept in the history)", "reason", "text", &value("reason", String::new()), error_for(&error, "reason")))
                button type="submit" id="save-credit" { "Update" }
            }
            h2 { "Class and transfers" }
            form.card method="post" action=(format!("{action}/settings")) id="credit-settings-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                div.field.invalid[error_for(&error, "class").is_some()] {
                    label for="class" { "Customer class" }
                    select id="class" name="class" {
                        option value="" selected[chosen_class.is_empty()] { "None" }
                        @for (cid, cname) in &classes { option value=(cid) selected[chosen_class == cid.to_string()] { (cname) } }
                    }
                    @if let Some(e) = error_for(&error, "class") { p.error { (e) } }
                }
                div.field.invalid[error_for(&error, "subscriber_transfers").is_some()] {
                    label for="subscriber_transfers" { "Subscriber-to-Subscriber transfers allowed" }
                    select id="subscriber_transfers" name="subscriber_transfers" {
                        option value="class" selected[chosen_transfers == "class"] { "As defined by the customer class" }
                        option value="yes" selected[chosen_transfers == "yes"] { "Yes" }
                        option value="no" selected[chosen_transfers == "no"] { "No" }
                    }
                    @if let Some(e) = error_for(&error, "subscriber_transfers") { p.error { (e) } }
                }
                button type="submit" id="save-credit-settings" { "Update" }
            }
        }
        @if postpaid {
            h2 { "Credit Limit History" }
            div.scroll {
                table id="credit-history" {
                    thead { tr { th { "When" } th { "Change" } th.num { "Old" } th.num { "New" } th { "By" } th { "Why" } } }
                    tbody {
                        @for h in &history {
                            tr {
                                td { (viewer.when_text(&h["at"])) }
                                td { (match h["kind"].as_str() { Some("permanent") => "Permanent limit", Some("temporary") => "Temporary increase", _ => "Automatic revert" }) }
                                td.num { (describe(&viewer, &h["old"])) }
                                td.num { (describe(&viewer, &h["new"])) }
                                td { (shown_actor(&keys, &text(&h["by"]))) }
                                td { (text(&h["reason"])) }
                            }
                        }
                        @if history.is_empty() { tr { td colspan="6" .muted { "No changes yet." } } }
                    }
                }
            }
        }
    };
    let title = format!("Balance & Credits — {name}");
    let crumbs = [
        ("Customers", "/customers".to_owned()),
        (name.as_str(), format!("/customers/{id}")),
        ("Balance & Credits", String::new()),
    ];
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

/// `100.00 + 50.00 until 31 Dec 2026, 23:59` or `100.00`.
fn describe(viewer: &Viewer, state: &Value) -> String {
    let limit = text(&state["credit_limit"]);
    match state["temporary_increase"].as_object() {
        Some(i) => format!("{limit} + {} until {}", text(&i["amount"]), viewer.when_text(&i["valid_until"])),
        None => limit,
    }
}

const CREDIT_FIELDS: [&str; 5] = ["credit_limit", "increase_amount", "increase_percent", "valid_until", "reason"];

pub async fn save(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&CREDIT_FIELDS);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let items = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let PartyKind::Customer { wallet, billing, .. } = party.kind else { return Err(PortalError::NotFound) };
        let account = s.engine.reader().account(wallet)?.ok_or(PortalError::NotFound)?;
        let currency = s.currency("currency", account.currency)?;
        let opt = |k: &str| Some(e[k].clone()).filter(|t| !t.is_empty());
        // Only what differs from the stored state is a change.
        let credit_limit = opt("credit_limit").filter(|l| currency.parse(l).ok() != Some(account.credit_limit));
        let now = s.engine.clock().now();
        let current = account.temporary_increase.filter(|i| now < i.valid_until);
        let increase = if billing == purse_core::Billing::Prepaid {
            None
        } else {
            // Valid Until is entered in the viewer's zone (a date-time input, or a date for the
            // end of that day); what cannot be read is refused here in people's words.
            let until = match opt("valid_until") {
                Some(u) => match v.zone.parse_local(&u) {
                    Some(t) => Some(purse_core::time::format(t)),
                    None => {
                        let message =
                            format!("a date, or a date and time, such as 2026-12-31 18:00 ({})", v.zone.name());
                        return Err(PortalError::Fields(vec![("temporary_increase.valid_until".into(), message)]));
                    }
                },
                None => None,
            };
            let typed_amount =
                opt("increase_amount").filter(|a| current.is_none_or(|c| currency.parse(a).ok() != Some(c.amount)));
            if typed_amount.is_some() && opt("increase_percent").is_some() {
                let both = "give the increase as an amount or as a percentage, not both";
                return Err(PortalError::Fields(vec![
                    ("temporary_increase.amount".into(), both.into()),
                    ("temporary_increase.percent".into(), both.into()),
                ]));
            }
            match (opt("increase_amount"), opt("increase_percent"), until) {
                (None, None, _) => current.map(|_| None),
                (amount, percent, until) => {
                    let same = percent.is_none()
                        && current.is_some_and(|c| {
                            amount.as_deref().and_then(|a| currency.parse(a).ok()) == Some(c.amount)
                                && until.as_deref().and_then(purse_core::time::parse) == Some(c.valid_until)
                        });
                    (!same).then(|| {
                        Some(IncreaseText {
                            amount: amount.filter(|_| percent.is_none()),
                            percent,
                            valid_until: until.unwrap_or_default(),
                        })
                    })
                }
            }
        };
        let change = CreditChange { credit_limit, increase, reason: opt("reason") };
        if change.credit_limit.is_none() && change.increase.is_none() {
            return Ok(None);
        }
        api::credit_commands(s, &v.who, &account, &change).map(Some).map_err(PortalError::keep_field)
    })
    .await;
    match items {
        Ok(None) => {
            Ok(done(&format!("/customers/{id}/credit"), "Nothing was changed: the form holds the saved values."))
        }
        Ok(Some(items)) => {
            let results = state.engine.submit_async(items).await.map_err(|e| PortalError::Internal(e.to_string()))?;
            match purse_app::accounts::outcome(&results) {
                Ok(_) => Ok(done(
                    &format!("/customers/{id}/credit"),
                    "The credit limit was changed; the history below shows it.",
                )),
                Err(e) => match PortalError::keep_field(e) {
                    PortalError::Fields(errors) => render(state, viewer, id, Some(entered), errors).await,
                    other => Err(other),
                },
            }
        }
        Err(PortalError::Fields(errors)) => render(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

pub async fn save_settings(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["class", "subscriber_transfers"]);
    let viewer = Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let saved = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let class = match e["class"].as_str() {
            "" => None,
            t => Some(t.parse::<u64>().map_err(|_| PortalError::field("class", "choose a class"))?),
        };
        let body = CreditSettingsBody {
            class: Some(class),
            subscriber_transfers: Some(e["subscriber_transfers"].clone()),
            maximum_increase: None,
        };
        api::save_credit_settings(s, &v.who, &party, body).map_err(PortalError::keep_field)?;
        Ok(party.id)
    })
    .await;
    match saved {
        Ok(party) => {
            read(&state, move |s| Ok(api::sync_transfers(s, vec![party])?)).await?;
            Ok(done(&format!("/customers/{id}/credit"), "The class and transfer settings were saved."))
        }
        Err(PortalError::Fields(errors)) => render(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

// ------------------------------------------------------------------ audit log

#[derive(serde::Deserialize, Default)]
pub struct AuditFilter {
    #[serde(default)]
    entity: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    party: String,
    #[serde(default)]
    before: String,
}

pub async fn audit(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(f): Query<AuditFilter>,
) -> Result<Response, PortalError> {
    let party = match f.party.trim() {
        "" => None,
        t => Some(PartyId(t.parse().map_err(|_| PortalError::BadRequest("party must be a number".into()))?)),
    };
    let before = match f.before.trim() {
        "" => None,
        t => Some(t.parse().map_err(|_| PortalError::BadRequest("before must be a number".into()))?),
    };
    let query = AuditQuery {
        visible: api::visible(&viewer.who),
        party,
        entity: Some(f.entity.trim().to_owned()).filter(|e| !e.is_empty()),
        // People type an e-mail; the log says "user " before it.
        action: None,
        actor: Some(f.actor.trim().to_owned()).filter(|e| !e.is_empty()).map(|a| {
            if a.contains('@') && !a.starts_with("user ") {
                format!("user {a}")
            } else {
                a
            }
        }),
        from: None,
        to: None,
        before,
        limit: 50,
    };
    let who = viewer.who;
    let rows = read(&state, move |s| {
        if let Some(p) = query.party {
            s.party_for(&who, p.0)?;
        }
        let rows = s.credit.audit_log(&query)?;
        let parties = super::visible_parties(s, &who)?;
        let keys = key_names(s)?;
        let named = Named::read(s, &rows)?;
        Ok((rows, named, parties, keys))
    })
    .await?;
    let (rows, named, parties, keys) = rows;
    let mut party_options: Vec<(String, String)> = vec![(String::new(), "Anyone".to_owned())];
    party_options.extend(parties.iter().map(|p| (p.id.0.to_string(), p.name.clone())));
    let next = (rows.len() == 50).then(|| rows.last().map(|r| r.id)).flatten();
    let body = html! {
        form.filters method="get" action="/audit" id="audit-filter" {
            (page::select("What changed", "entity", &AUDITED.map(|(code, name)| (code, name)), f.entity.trim(), None))
            (field("Who (an e-mail such as ann@example.com, or scheduler)", "actor", "text", &f.actor, None))
            (page::select("Customer or reseller", "party", &party_options.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>(), f.party.trim(), None))
            button type="submit" id="filter" { "Filter" }
        }
        div.scroll {
            table id="audit-log" {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Customer or reseller" } th { "Action" } th { "Changes" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { (viewer.when(e.at)) }
                            td { (shown_actor(&keys, &e.actor)) }
                            td { (AUDITED.iter().find(|(code, _)| *code == e.entity).map_or_else(|| page::words(&e.entity), |(_, name)| (*name).to_owned())) }
                            td { (e.party.map_or_else(|| "The operator".to_owned(), |p| named.party(p.0))) }
                            td { (page::words(&e.action)) }
                            td {
                                ul.changes {
                                    @for (field, was, now) in changes(&viewer.zone, &named, &e.entity, e.before.as_deref(), e.after.as_deref()) {
                                        li { (field) ": "
                                            @if let Some(w) = was { span.was { (w) } " → " }
                                            (now.unwrap_or_else(|| "removed".into())) }
                                    }
                                }
                            }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="6" .muted { "No changes match." } } }
                }
            }
        }
        @if let Some(n) = next {
            p { a href=(format!("/audit?entity={}&actor={}&party={}&before={n}", enc(&f.entity), enc(&f.actor), enc(&f.party))) id="older" { "Older →" } }
        }
    };
    Ok(page::ok(page::layout("Audit log", Some(&viewer), &[("Settings", "/settings"), ("Audit log", "")], body)))
}

/// What an audit entry's values refer to by id, by name: read once for a page of the log,
/// so that people see names where the entry keeps ids.
#[derive(Default)]
struct Named {
    parties: HashMap<u64, String>,
    accounts: HashMap<u64, String>,
    plans: HashMap<u64, String>,
    classes: HashMap<u64, String>,
    users: HashMap<u64, String>,
}

/// What an audit value refers to by id, by its key (the last part of its path).
#[derive(Clone, Copy, PartialEq)]
enum Refers {
    Party,
    Account,
    Plan,
    Class,
    User,
}

fn refers(entity: &str, key: &str) -> Option<Refers> {
    match key.rsplit('.').next().unwrap_or(key) {
        "party" | "owner" | "reseller" | "customer" => Some(Refers::Party),
        // A posting's two sides (elsewhere `credit…` names a credit limit).
        "debit" | "credit" if entity == "transfer" => Some(Refers::Account),
        "plan" => Some(Refers::Plan),
        "class" => Some(Refers::Class),
        "users" => Some(Refers::User),
        _ => None,
    }
}

/// An audit entry's values, path by path (`temporary_increase.amount`).
fn flat(prefix: &str, v: Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                flat(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}

fn flat_json(text: Option<&str>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(v) = text.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        flat("", v, &mut out);
    }
    out
}

impl Named {
    /// The names of every party, account, plan, class and user `rows` refer to. Blocking.
    fn read(s: &PortalState, rows: &[purse_store::AuditEntry]) -> Result<Named, PortalError> {
        let mut wanted: Vec<(Refers, u64)> = Vec::new();
        for e in rows {
            wanted.extend(e.party.map(|p| (Refers::Party, p.0)));
            for (key, v) in flat_json(e.before.as_deref()).into_iter().chain(flat_json(e.after.as_deref())) {
                let Some(r) = refers(&e.entity, &key) else { continue };
                match (&v, v.as_str().and_then(PolicyOwner::parse)) {
                    (_, Some(PolicyOwner::Reseller(p))) => wanted.push((Refers::Party, p.0)),
                    (_, Some(PolicyOwner::Class(c))) => wanted.push((Refers::Class, c)),
                    (Value::Array(items), _) => wanted.extend(items.iter().filter_map(Value::as_u64).map(|id| (r, id))),
                    _ => wanted.extend(v.as_u64().map(|id| (r, id))),
                }
            }
        }
        wanted.sort_unstable_by_key(|&(r, id)| (r as u8, id));
        wanted.dedup();
        let reader = s.engine.reader();
        let mut named = Named::default();
        if wanted.iter().any(|(r, _)| *r == Refers::Class) {
            named.classes = s.credit.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
        }
        for (r, id) in wanted {
            match r {
                Refers::Party => {
                    if let Some(p) = reader.party(PartyId(id))? {
                        named.parties.insert(id, p.name);
                    }
                }
                Refers::Account => {
                    if let Some(a) = reader.account(purse_core::AccountId(id))? {
                        let owner = match a.party {
                            Some(p) => reader.party(p)?.map_or_else(|| "A former customer".to_owned(), |p| p.name),
                            None => "The operator".to_owned(),
                        };
                        let what = match a.kind {
                            purse_core::AccountKind::System(role) => {
                                format!("{} ({})", page::words(purse_store::codec::system_role(role)), a.currency)
                            }
                            kind => super::customers::kind_name(kind).to_owned(),
                        };
                        named.accounts.insert(id, format!("{owner} · {what}"));
                    }
                }
                Refers::Plan => {
                    if let Some(p) = s.rating.plan(id)? {
                        named.plans.insert(id, p.name);
                    }
                }
                Refers::User => {
                    if let Some(u) = s.access.user(id)? {
                        named.users.insert(id, format!("{} ({})", u.name, u.email));
                    }
                }
                Refers::Class => {}
            }
        }
        Ok(named)
    }

    fn party(&self, id: u64) -> String {
        self.parties.get(&id).cloned().unwrap_or_else(|| "A former customer or reseller".to_owned())
    }

    /// `v`, a value of what `r` refers to, by name.
    fn of(&self, r: Refers, v: &Value) -> Option<String> {
        let one = |id: u64| match r {
            Refers::Party => self.party(id),
            Refers::Account => self.accounts.get(&id).cloned().unwrap_or_else(|| "An account".to_owned()),
            Refers::Plan => self.plans.get(&id).cloned().unwrap_or_else(|| "A former rate plan".to_owned()),
            Refers::Class => self.classes.get(&id).cloned().unwrap_or_else(|| "A former customer class".to_owned()),
            Refers::User => self.users.get(&id).cloned().unwrap_or_else(|| "A former user".to_owned()),
        };
        match v {
            Value::Null if r == Refers::Party => Some("The operator".to_owned()),
            Value::Null => Some("none".to_owned()),
            Value::Number(n) => n.as_u64().map(one),
            Value::Array(items) if items.is_empty() => Some("none".to_owned()),
            Value::Array(items) => Some(items.iter().filter_map(Value::as_u64).map(one).collect::<Vec<_>>().join(", ")),
            Value::String(key) => PolicyOwner::parse(key).map(|o| match o {
                PolicyOwner::Operator => "The operator".to_owned(),
                PolicyOwner::Reseller(p) => self.party(p.0),
                PolicyOwner::Class(c) => match self.classes.get(&c) {
                    Some(name) => format!("Customer class {name}"),
                    None => "A former customer class".to_owned(),
                },
            }),
            _ => None,
        }
    }
}

/// An audit value in words: names for ids, words for codes, times in the viewer's zone.
fn shown(zone: &purse_core::time::Zone, named: &Named, entity: &str, key: &str, v: &Value) -> String {
    if let Some(name) = refers(entity, key).and_then(|r| named.of(r, v)) {
        return name;
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    match v {
        Value::Null => "none".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(code) if CODED.contains(&last) => match (last, code.as_str()) {
            ("scope", "read") => "Read only".into(),
            ("scope", "read_write") => "Read and write".into(),
            ("role", "customers_default") => "Its customers' default plan".into(),
            ("role", "pays") => "The plan it pays by".into(),
            ("subscriber_transfers", "class") => "As defined by the customer class".into(),
            _ => page::words(code),
        },
        Value::String(s) => purse_core::time::parse(s)
            .filter(|_| s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T'))
            .map_or_else(|| s.clone(), |t| zone.format(t)),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(|i| shown(zone, named, entity, key, i)).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// The keys whose text values are codes, shown as words.
const CODED: [&str; 9] =
    ["role", "scope", "kind", "category", "status", "cause", "subscriber_transfers", "taxed_at", "frequency"];

/// What an audit entry changed, field by field in words: (field, before, after); a field
/// that is new has no before, one that went has no after. An entity's own id is left out:
/// the page names what changed.
fn changes(
    zone: &purse_core::time::Zone,
    named: &Named,
    entity: &str,
    before: Option<&str>,
    after: Option<&str>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let read = |text: Option<&str>| -> Vec<(String, String)> {
        flat_json(text)
            .into_iter()
            .filter(|(k, _)| k.rsplit('.').next() != Some("id"))
            .map(|(k, v)| {
                let shown = shown(zone, named, entity, &k, &v);
                (k, shown)
            })
            .collect()
    };
    let (was, now) = (read(before), read(after));
    let mut out = Vec::new();
    for (k, v) in &now {
        let old = was.iter().find(|(w, _)| w == k).map(|(_, x)| x.clone());
        if old.as_ref() != Some(v) {
            out.push((page::field_name(k), old, Some(v.clone())));
        }
    }
    for (k, v) in &was {
        if !now.iter().any(|(n, _)| n == k) && after.is_some() {
            out.push((page::field_name(k), Some(v.clone()), None));
        }
    }
    if after.is_none() {
        out = was.into_iter().map(|(k, v)| (page::field_name(&k), Some(v), None)).collect();
    }
    out
}

/// What the audit log records changes of, as the filter offers them.
const AUDITED: [(&str, &str); 16] = [
    ("", "Anything"),
    ("credit_limit", "Credit limit"),
    ("credit_settings", "Class and transfers"),
    ("customer_class", "Customer class"),
    ("alert_settings", "Alert settings"),
    ("profile", "Low Balance Profile"),
    ("recharge_settings", "Automatic recharge"),
    ("card", "Saved card"),
    ("billing_settings", "Billing cycle"),
    ("invoice", "Invoice"),
    ("transfer", "Money moved by staff"),
    ("rate_plan", "Rate plan"),
    ("user", "Portal user"),
    ("api_key", "API key"),
    ("webhook_endpoint", "Webhook endpoint"),
    ("grant", "Credit grant"),
];

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ------------------------------------------------------------------ customer classes

/// Customer classes (operators change them; everyone may read them): each one's default for
/// subscriber transfers and its maximum possible increase. `/classes` lists and creates,
/// `/classes/{id}` edits.
pub async fn classes(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    classes_page(state, Arc::new(viewer), None, None, Vec::new()).await
}

pub async fn edit_class(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    classes_page(state, Arc::new(viewer), Some(id), None, Vec::new()).await
}

const CLASS_FIELDS: [&str; 5] = ["name", "subscriber_transfers", "max_amount", "max_percent", "max_days"];

async fn classes_page(
    state: PortalState,
    viewer: Arc<Viewer>,
    editing: Option<u64>,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let list = read(&state, |s| Ok(s.credit.classes()?)).await?;
    let current = match editing {
        Some(id) => Some(list.iter().find(|c| c.id == id).cloned().ok_or(PortalError::NotFound)?),
        None => None,
    };
    let stored = |k: &str| -> String {
        let Some(c) = &current else { return String::new() };
        match k {
            "name" => c.name.clone(),
            "subscriber_transfers" => {
                if c.transfers_allowed {
                    "on".into()
                } else {
                    String::new()
                }
            }
            "max_amount" => c.max.amount.clone().unwrap_or_default(),
            "max_percent" => c.max.percent.map(|p| p.to_string()).unwrap_or_default(),
            _ => c.max.days.map(|d| d.to_string()).unwrap_or_default(),
        }
    };
    let value = |k: &str| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or_else(|| stored(k));
    let operator = viewer.user.role == Role::Operator && viewer.user.scope == Scope::ReadWrite;
    let action = editing.map_or_else(|| "/classes".to_owned(), |id| format!("/classes/{id}"));
    let body = html! {
        (page::summary(&error))
        div.scroll {
            table id="classes" {
                thead { tr { th { "Class" } th { "Subscriber transfers" } th { "Maximum possible increase" } @if operator { th {} } } }
                tbody {
                    @for c in &list {
                        tr {
                            td { (c.name) }
                            td { (if c.transfers_allowed { "Yes" } else { "No" }) }
                            td {
                                @let parts: Vec<String> = [c.max.amount.clone(), c.max.percent.map(|p| format!("{p}%")), c.max.days.map(|d| format!("{d} days"))].into_iter().flatten().collect();
                                (if parts.is_empty() { "None".to_owned() } else { parts.join(", ") })
                            }
                            @if operator { td { a href=(format!("/classes/{}", c.id)) id=(format!("edit-class-{}", c.id)) { "Edit" } } }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="4" .muted { "No customer classes yet." } } }
                }
            }
        }
        @if operator {
            h2 { (if editing.is_some() { "Edit the class" } else { "New class" }) }
            form.card method="post" action=(action) id="class-form" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                @if editing.is_none() { (crate::once::field()) }
                (field("Name", "name", "text", &value("name"), error_for(&error, "name")))
                div.field { label { input type="checkbox" name="subscriber_transfers" id="subscriber_transfers" value="on" checked[value("subscriber_transfers") == "on"]; " Subscriber-to-subscriber transfers allowed" } }
                (field("Maximum possible increase: amount (in the customer's currency)", "max_amount", "text", &value("max_amount"), error_for(&error, "maximum_increase.amount")))
                (field("…and/or percent of the permanent limit", "max_percent", "text", &value("max_percent"), error_for(&error, "maximum_increase.percent")))
                (field("Longest validity (days)", "max_days", "text", &value("max_days"), error_for(&error, "maximum_increase.days")))
                button type="submit" id="save-class" { "Save" }
            }
        }
    };
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(
        status,
        page::layout("Customer classes", Some(&viewer), &[("Settings", "/settings"), ("Customer classes", "")], body),
    ))
}

pub async fn save_class(
    State(state): State<PortalState>,
    viewer: Viewer,
    path: Option<axum::extract::Path<String>>,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let id: u64 = match path {
        Some(axum::extract::Path(id)) => id.parse().map_err(|_| PortalError::NotFound)?,
        None => 0,
    };
    let entered = form.entered(&CLASS_FIELDS);
    // Not a number: zero, which the rules refuse by name along with every other field.
    let number = |k: &str| -> Option<u32> {
        match entered[k].as_str() {
            "" => None,
            t => Some(t.parse().unwrap_or(0)),
        }
    };
    let viewer = Arc::new(viewer);
    let parsed: Result<_, PortalError> = Ok((number("max_percent"), number("max_days")));
    let saved = match parsed {
        Err(e) => Err(e),
        Ok((percent, days)) => {
            let amount = Some(entered["max_amount"].clone()).filter(|a| !a.is_empty());
            let max = (amount.is_some() || percent.is_some() || days.is_some()).then_some(api::MaxText {
                amount,
                percent,
                days,
            });
            let body = api::ClassBody {
                name: entered["name"].clone(),
                subscriber_transfers: entered["subscriber_transfers"] == "on",
                maximum_increase: max,
            };
            let who = viewer.who;
            read(&state, move |s| {
                api::save_class(s, &who, id, body).map(|(_, members)| members).map_err(PortalError::keep_field)
            })
            .await
        }
    };
    match saved {
        Ok(members) => {
            read(&state, move |s| Ok(api::sync_transfers(s, members)?)).await?;
            Ok(done("/classes", "The customer class was saved."))
        }
        Err(PortalError::Fields(errors)) => {
            classes_page(state, viewer, (id != 0).then_some(id), Some(entered), errors).await
        }
        Err(other) => Err(other),
    }
}

/// Actors as the audit log names them (`key 12`) against the names people see. Blocking.
pub(crate) fn key_names(s: &PortalState) -> Result<HashMap<String, String>, PortalError> {
    Ok(s.access.keys()?.into_iter().map(|k| (format!("key {}", k.id), format!("API key “{}”", k.name))).collect())
}

/// An actor as people read it: an API key by its name, a user by e-mail, Purse's own
/// workers and commands in words.
pub(crate) fn shown_actor(keys: &HashMap<String, String>, actor: &str) -> String {
    match actor {
        "scheduler" => "The scheduler".to_owned(),
        "cli" => "The command line (purse keys, purse users)".to_owned(),
        _ => keys.get(actor).cloned().unwrap_or_else(|| actor.strip_prefix("user ").unwrap_or(actor).to_owned()),
    }
}
