//! Notifications in the portal: Low Balance Profiles (list, create, edit, delete after a
//! confirmation), a customer's alert settings, and the notification log with each message
//! as sent (with no SMTP server configured, this is where e-mail is read).
//!
//! Forms are checked by the same functions as the API (`handlers::alerts`), so a rule is
//! written once; an error comes back next to the field the API names.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_core::alerts::{format_warning_levels, Profile, RuleKind};
use purse_core::{PartyKind, Role, Scope};

use super::page::{self, error_for, field, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::alerts::{self as api, ProfileBody, RuleBody, SettingsBody};

pub(super) fn list(text: &str) -> Vec<String> {
    text.split([',', '\n', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn textarea(label: &str, name: &str, value: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            textarea id=(name) name=(name) rows="6" aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("{name}-error"))] { (value) }
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

fn checkbox(label: &str, name: &str, checked: bool) -> Markup {
    html! {
        div.field { label { input type="checkbox" name=(name) value="on" checked[checked]; " " (label) } }
    }
}

/// The form's values, as entered or as stored.
fn values(form: &Form) -> HashMap<String, String> {
    let names = [
        "name",
        "reseller",
        "currency",
        "sort_order",
        "max_quantity",
        "period_hours",
        "subject",
        "body",
        "user_rule.threshold",
        "user_rule.notify",
        "user_rule.users",
        "user_rule.emails",
        "client_rule.threshold",
        "client_rule.notify",
        "client_rule.emails",
        "inactivity_rule.threshold",
        "inactivity_rule.notify",
        "inactivity_rule.emails",
        "inactivity_rule.inactivity_hours",
    ];
    names.iter().map(|n| ((*n).to_owned(), form.all(n).join(", "))).collect()
}

fn stored(p: &Profile, s: &PortalState) -> HashMap<String, String> {
    let c = s.currency("currency", p.currency).ok();
    let amount = |a| c.map_or_else(String::new, |c| c.format(a));
    let mut v: HashMap<String, String> = [
        ("name", p.name.clone()),
        ("reseller", p.reseller.map_or_else(String::new, |r| r.0.to_string())),
        ("currency", p.currency.to_string()),
        ("sort_order", p.sort_order.to_string()),
        ("max_quantity", p.max_quantity.to_string()),
        ("period_hours", (p.period_s / 3600).to_string()),
        ("subject", p.subject.clone()),
        ("body", p.body.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for r in &p.rules {
        let k = match r.kind {
            RuleKind::User => "user_rule",
            RuleKind::Client => "client_rule",
            RuleKind::Inactivity => "inactivity_rule",
        };
        v.insert(format!("{k}.threshold"), amount(r.threshold));
        v.insert(format!("{k}.notify"), if r.notify { "on".into() } else { String::new() });
        v.insert(format!("{k}.emails"), r.emails.join(", "));
        v.insert(format!("{k}.users"), r.users.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
        v.insert(format!("{k}.inactivity_hours"), (r.inactivity_s / 3600).to_string());
    }
    v
}

/// The body the form stands for, and what in it could not even be read (a number that is
/// not one): such a field takes a stand-in value so the rest is still checked, and the form
/// is not saved.
fn body_from(v: &HashMap<String, String>) -> (ProfileBody, page::Errors) {
    let mut errors = page::Errors::new();
    let get = |k: &str| v.get(k).map_or("", |s| s.trim());
    let mut number = |k: &str, empty: Option<i64>| -> i64 {
        match (get(k), empty) {
            ("", Some(n)) => n,
            (t, _) => t.parse().unwrap_or_else(|_| {
                errors.push((k.to_owned(), "a whole number".to_owned()));
                1
            }),
        }
    };
    let sort_order = number("sort_order", Some(0));
    let max_quantity = number("max_quantity", None);
    let period_hours = number("period_hours", None);
    let mut rule = |k: &str| -> Option<RuleBody> {
        let threshold = get(&format!("{k}.threshold"));
        if threshold.is_empty() {
            return None;
        }
        let users = list(get(&format!("{k}.users")))
            .iter()
            .filter_map(|u| match u.parse() {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push((format!("{k}.users"), "choose users from the list".to_owned()));
                    None
                }
            })
            .collect();
        let hours = get(&format!("{k}.inactivity_hours"));
        let inactivity_hours = if k == "inactivity_rule" && !hours.is_empty() {
            Some(hours.parse().unwrap_or_else(|_| {
                errors.push((format!("{k}.inactivity_hours"), "a whole number of hours".to_owned()));
                1
            }))
        } else {
            None
        };
        Some(RuleBody {
            threshold: threshold.to_owned(),
            notify: get(&format!("{k}.notify")) == "on",
            users,
            emails: list(get(&format!("{k}.emails"))),
            inactivity_hours,
        })
    };
    let (user_rule, client_rule, inactivity_rule) = (rule("user_rule"), rule("client_rule"), rule("inactivity_rule"));
    let reseller = match get("reseller") {
        "" => None,
        r => r.parse().map_or_else(
            |_| {
                errors.push(("reseller".to_owned(), "choose a reseller from the list".to_owned()));
                None
            },
            Some,
        ),
    };
    let body = ProfileBody {
        name: get("name").to_owned(),
        reseller,
        currency: get("currency").to_owned(),
        sort_order,
        max_quantity,
        period_hours,
        user_rule,
        client_rule,
        inactivity_rule,
        subject: Some(get("subject").to_owned()).filter(|s| !s.is_empty()),
        body: Some(v.get("body").cloned().unwrap_or_default()).filter(|s| !s.trim().is_empty()),
    };
    (body, errors)
}

/// What the profile form offers to choose from: resellers by name (operators only) and the
/// currencies, so nobody types an id or a code.
struct Choices {
    resellers: Vec<(String, String)>,
    currencies: Vec<String>,
    /// Portal users a user rule may notify, by owner: (owner's name, [(id, "name (e-mail)")]).
    users: Vec<(String, Vec<(String, String)>)>,
}

async fn choices(state: &PortalState, viewer: &Arc<Viewer>) -> Result<Choices, PortalError> {
    let operator = viewer.user.role == Role::Operator;
    let v = viewer.clone();
    read(state, move |s| {
        let mut resellers = vec![(String::new(), "None: the operator's own".to_owned())];
        if operator {
            let query = purse_store::PartyQuery { resellers: Some(true), limit: 1000, ..Default::default() };
            resellers.extend(s.engine.reader().parties(query)?.into_iter().map(|p| (p.id.0.to_string(), p.name)));
        }
        let currencies = s.engine.reader().currencies()?.into_iter().map(|c| c.code.to_string()).collect();
        let mut users: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for u in s.access.users()? {
            let owner = match (u.role, v.user.role) {
                (Role::Operator, Role::Operator) => "The operator".to_owned(),
                (Role::Reseller(r), Role::Operator) => resellers
                    .iter()
                    .find(|(id, _)| *id == r.0.to_string())
                    .map_or_else(|| "A former reseller".to_owned(), |(_, n)| n.clone()),
                (Role::Reseller(r), Role::Reseller(me)) if r == me => "Your users".to_owned(),
                _ => continue,
            };
            if u.disabled_at.is_some() {
                continue;
            }
            let label = format!("{} ({})", u.name, u.email);
            match users.iter_mut().find(|(o, _)| *o == owner) {
                Some((_, list)) => list.push((u.id.to_string(), label)),
                None => users.push((owner, vec![(u.id.to_string(), label)])),
            }
        }
        Ok(Choices { resellers, currencies, users })
    })
    .await
}

fn profile_form(
    viewer: &Viewer,
    action: &str,
    v: &HashMap<String, String>,
    error: &[(String, String)],
    choices: &Choices,
) -> Markup {
    let get = |k: &str| v.get(k).map_or("", String::as_str);
    let f = |label: &str, name: &str| field(label, name, "text", get(name), error_for(error, name));
    let resellers: Vec<(&str, &str)> = choices.resellers.iter().map(|(id, n)| (id.as_str(), n.as_str())).collect();
    let currencies: Vec<(&str, &str)> = choices.currencies.iter().map(|c| (c.as_str(), c.as_str())).collect();
    html! {
        form.card method="post" action=(action) id="profile-form" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            // Making one, sent twice, makes one (editing sends the same values again).
            @if action == "/profiles" { (crate::once::field()) }
            (page::summary(error))
            h3 { "General" }
            (f("Name", "name"))
            @if viewer.user.role == Role::Operator { (select("Reseller", "reseller", &resellers, get("reseller"), error_for(error, "reseller"))) }
            (select("Currency", "currency", &currencies, get("currency"), error_for(error, "currency")))
            (f("Sort order", "sort_order"))
            (f("Max quantity (per rule, until the balance is refilled)", "max_quantity"))
            (f("Period (hours between notifications of a rule)", "period_hours"))
            h3 { "User notification" }
            (f("Threshold (empty: no such rule)", "user_rule.threshold"))
            (checkbox("Notify the reseller's e-mail", "user_rule.notify", get("user_rule.notify") == "on"))
            (users_select(&choices.users, get("user_rule.users"), error_for(error, "user_rule.users")))
            (f("E-mails", "user_rule.emails"))
            h3 { "Client notification" }
            (f("Threshold", "client_rule.threshold"))
            (checkbox("Notify the client's billing e-mail", "client_rule.notify", get("client_rule.notify") == "on"))
            (f("E-mails", "client_rule.emails"))
            h3 { "Inactivity client notification" }
            (f("Threshold", "inactivity_rule.threshold"))
            (f("Inactivity (hours without charges)", "inactivity_rule.inactivity_hours"))
            (checkbox("Notify the client's billing e-mail", "inactivity_rule.notify", get("inactivity_rule.notify") == "on"))
            (f("E-mails", "inactivity_rule.emails"))
            h3 { "Message" }
            p.muted { "Placeholders: " (purse_core::alerts::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")) }
            (f("Subject", "subject"))
            (textarea("Body", "body", get("body"), error_for(error, "body")))
            button type="submit" id="save-profile" { "OK" }
        }
    }
}

/// The portal users a user rule notifies, chosen by name under their owner.
fn users_select(users: &[(String, Vec<(String, String)>)], chosen: &str, error: Option<&str>) -> Markup {
    let chosen = list(chosen);
    html! {
        div.field.invalid[error.is_some()] {
            label for="user_rule.users" { "Portal users to notify (hold Ctrl or ⌘ to choose several)" }
            select id="user_rule.users" name="user_rule.users" multiple size="4" aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| "user_rule.users-error")] {
                @for (owner, list) in users {
                    optgroup label=(owner) {
                        @for (id, label) in list { option value=(id) selected[chosen.contains(id)] { (label) } }
                    }
                }
            }
            @if let Some(e) = error { p.error id="user_rule.users-error" { (e) } }
        }
    }
}

fn profiles_page(viewer: &Viewer, profiles: &[(Profile, String)], form: Option<Markup>) -> Markup {
    let body = html! {
        div.scroll {
            table id="profiles" {
                thead { tr { th { "Name" } th { "Reseller" } th { "Currency" } th { "Sort order" } th { "Max qty" } th { "Period" } th { "Rules" } th {} } }
                tbody {
                    @for (p, owner) in profiles {
                        tr {
                            td { a href=(format!("/profiles/{}", p.id)) { (p.name) } }
                            td { (owner) }
                            td { (p.currency) }
                            td { (p.sort_order) }
                            td { (p.max_quantity) }
                            td { (p.period_s / 3600) " h" }
                            td { (p.rules.iter().map(|r| r.kind.title()).collect::<Vec<_>>().join(", ")) }
                            td { @if viewer.user.scope == Scope::ReadWrite { a.danger href=(format!("/profiles/{}/delete", p.id)) id=(format!("delete-{}", p.id)) { "Delete" } } }
                        }
                    }
                    @if profiles.is_empty() { tr { td colspan="8" .muted { "No Low Balance Profiles yet." } } }
                }
            }
        }
        @if let Some(form) = form { h2 { "New profile" } (form) }
    };
    page::layout("Low Balance Profiles", Some(viewer), &[("Settings", "/settings"), ("Low Balance Profiles", "")], body)
}

fn new_values() -> HashMap<String, String> {
    [
        ("currency", "USD"),
        ("sort_order", "0"),
        ("max_quantity", "3"),
        ("period_hours", "24"),
        ("client_rule.notify", "on"),
        ("user_rule.notify", "on"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The profiles the viewer sees, each with its owner's name (a reseller's, or the operator).
async fn visible_profiles(state: &PortalState, viewer: &Arc<Viewer>) -> Result<Vec<(Profile, String)>, PortalError> {
    let v = viewer.clone();
    read(state, move |s| {
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut visible = Vec::new();
        for p in s.alerts.profiles()? {
            if !(v.user.role == Role::Operator || matches!(v.user.role, Role::Reseller(r) if p.reseller == Some(r))) {
                continue;
            }
            let owner = match p.reseller {
                None => "The operator".to_owned(),
                Some(r) => match names.get(&r.0) {
                    Some(n) => n.clone(),
                    None => {
                        let name =
                            s.engine.reader().party(r)?.map_or_else(|| "A former reseller".to_owned(), |x| x.name);
                        names.insert(r.0, name.clone());
                        name
                    }
                },
            };
            visible.push((p, owner));
        }
        Ok(visible)
    })
    .await
}

pub async fn profiles(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    let viewer = Arc::new(viewer);
    let list = visible_profiles(&state, &viewer).await?;
    let choices = choices(&state, &viewer).await?;
    let form = (viewer.user.scope == Scope::ReadWrite)
        .then(|| profile_form(&viewer, "/profiles", &new_values(), &[], &choices));
    Ok(page::ok(profiles_page(&viewer, &list, form)))
}

/// Saves a profile from the form (`id`: replace); on a refusal the form comes back.
async fn save(state: PortalState, viewer: Viewer, id: Option<u64>, form: Form) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let v = values(&form);
    let viewer = Arc::new(viewer);
    let (body, mut unread) = body_from(&v);
    let who = viewer.who;
    let outcome = if unread.is_empty() {
        read(&state, move |s| api::save_profile(s, &who, id, body).map_err(PortalError::keep_field))
            .await
            .map(|(_, owners)| Some(owners))
    } else {
        // Something could not be read: nothing is saved, but the rest is checked too.
        read(&state, move |s| api::check_profile(s, &who, id, body).map_err(PortalError::keep_field))
            .await
            .map(|()| None)
    };
    let outcome = match outcome {
        Ok(Some(owners)) => {
            read(&state, move |s| Ok(api::sync_owners(s, owners)?)).await?;
            Ok(())
        }
        Ok(None) => Err(unread),
        Err(PortalError::Fields(errors)) => {
            for e in errors {
                if !unread.iter().any(|(f, _)| *f == e.0) {
                    unread.push(e);
                }
            }
            Err(unread)
        }
        Err(other) => return Err(other),
    };
    match outcome {
        Ok(()) => Ok(done("/profiles", "The Low Balance Profile was saved.")),
        Err(error) => {
            let action = id.map_or_else(|| "/profiles".to_owned(), |id| format!("/profiles/{id}"));
            let form = profile_form(&viewer, &action, &v, &error, &choices(&state, &viewer).await?);
            let page = if id.is_some() {
                page::layout(
                    "Edit profile",
                    Some(&viewer),
                    &[("Settings", "/settings"), ("Low Balance Profiles", "/profiles"), ("Edit", "")],
                    form,
                )
            } else {
                profiles_page(&viewer, &visible_profiles(&state, &viewer).await?, Some(form))
            };
            Ok(page::respond(StatusCode::UNPROCESSABLE_ENTITY, page))
        }
    }
}

pub async fn create(State(state): State<PortalState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
    save(state, viewer, None, form).await
}

pub async fn edit(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let viewer = Arc::new(viewer);
    let (p, _) =
        visible_profiles(&state, &viewer).await?.into_iter().find(|(p, _)| p.id == id).ok_or(PortalError::NotFound)?;
    let v = read(&state, move |s| Ok(stored(&p, s))).await?;
    let choices = choices(&state, &viewer).await?;
    let body = if viewer.user.scope == Scope::ReadWrite {
        profile_form(&viewer, &format!("/profiles/{id}"), &v, &[], &choices)
    } else {
        html! { p.muted { "Read-only access." } }
    };
    Ok(page::ok(page::layout(
        "Edit profile",
        Some(&viewer),
        &[("Settings", "/settings"), ("Low Balance Profiles", "/profiles"), ("Edit", "")],
        body,
    )))
}

pub async fn update(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    // Another owner's profile is not found, whatever the form holds.
    let v = Arc::new(viewer);
    visible_profiles(&state, &v).await?.into_iter().find(|(p, _)| p.id == id).ok_or(PortalError::NotFound)?;
    let viewer = Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone());
    save(state, viewer, Some(id), form).await
}

pub async fn confirm_delete(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let viewer = Arc::new(viewer);
    let (p, _) =
        visible_profiles(&state, &viewer).await?.into_iter().find(|(p, _)| p.id == id).ok_or(PortalError::NotFound)?;
    let body = html! {
        section.card.notice.bad id="confirm" {
            p { "Delete the Low Balance Profile " strong { (p.name) } "? Customers assigned to it fall back to their reseller's default profile for " (p.currency) "." }
            form.inline method="post" action=(format!("/profiles/{id}/delete")) {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button.danger type="submit" id="confirm-delete" { "Delete" }
            }
            " " a href="/profiles" { "Cancel" }
        }
    };
    Ok(page::ok(page::layout(
        "Delete profile",
        Some(&viewer),
        &[("Settings", "/settings"), ("Low Balance Profiles", "/profiles"), ("Delete", "")],
        body,
    )))
}

pub async fn delete(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let who = viewer.who;
    let owner = read(&state, move |s| Ok(api::remove_profile(s, &who, id)?)).await?;
    read(&state, move |s| Ok(api::sync_owners(s, vec![owner])?)).await?;
    Ok(done("/profiles", "The Low Balance Profile was deleted."))
}

/// A customer's alert settings: staff at `/customers/{id}/alerts`, a customer admin its own.
pub async fn settings(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    settings_page(state, Arc::new(viewer), id, None, Vec::new()).await
}

async fn settings_page(
    state: PortalState,
    viewer: Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let v = viewer.clone();
    let (party, view, profiles, warning_text) = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        if !matches!(party.kind, PartyKind::Customer { .. }) {
            return Err(PortalError::NotFound);
        }
        let view = api::settings_view(s, &party)?;
        let profiles: Vec<(String, String)> = s
            .alerts
            .profiles()?
            .into_iter()
            .filter(|p| matches!(party.kind, PartyKind::Customer { reseller, currency, .. } if p.reseller == reseller && p.currency == currency))
            .map(|p| (p.id.to_string(), p.name))
            .collect();
        let text = match (s.alerts.alert_settings(party.id)?, party.kind.clone()) {
            (Some(a), PartyKind::Customer { currency, .. }) => format_warning_levels(&a.warning, &s.currency("currency", currency)?),
            _ => String::new(),
        };
        Ok((party, serde_json::to_value(view).map_err(|e| PortalError::Internal(e.to_string()))?, profiles, text))
    })
    .await?;
    let stored = |k: &str| match k {
        "profile" => view["profile"].as_u64().map_or_else(String::new, |p| p.to_string()),
        "billing_email" => view["billing_email"].as_str().unwrap_or("").to_owned(),
        "alert_emails" => view["alert_emails"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        _ => warning_text.clone(),
    };
    let value = |k: &str| entered.as_ref().and_then(|e| e.get(k).cloned()).unwrap_or_else(|| stored(k));
    let staff = !matches!(viewer.user.role, Role::Customer(_));
    let mut options: Vec<(String, String)> = vec![(String::new(), "The reseller's default".to_owned())];
    options.extend(profiles);
    let chosen = value("profile");
    // The profile's name, never its id (the reseller's default is one of `options` too).
    let in_force = view["effective_profile"].as_u64().map_or_else(
        || "none".to_owned(),
        |p| {
            options
                .iter()
                .find(|(id, _)| *id == p.to_string())
                .map_or_else(|| "the default".to_owned(), |(_, n)| n.clone())
        },
    );
    let body = html! {
        (page::summary(&error))
        p.muted id="profile-in-force" { "Profile in force: " (in_force) "." }
        @if viewer.user.scope == Scope::ReadWrite {
            form.card method="post" action=(format!("/customers/{id}/alerts")) id="alert-settings" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                @if staff {
                    div.field.invalid[error_for(&error, "profile").is_some()] {
                        label for="profile" { "Low Balance Profile" }
                        select id="profile" name="profile" {
                            @for (v, label) in &options { option value=(v) selected[*v == chosen] { (label) } }
                        }
                        @if let Some(e) = error_for(&error, "profile") { p.error { (e) } }
                    }
                }
                (field("Billing e-mail", "billing_email", "text", &value("billing_email"), error_for(&error, "billing_email")))
                (field("E-mails to be alerted (comma-separated)", "alert_emails", "text", &value("alert_emails"), error_for(&error, "alert_emails")))
                (field("Low funds / credit limit warning thresholds (e.g. 100, 50, 10 or 10% for postpaid)", "warning_thresholds", "text", &value("warning_thresholds"), error_for(&error, "warning_thresholds")))
                button type="submit" id="save-alerts" { "Update" }
            }
        }
    };
    let title = format!("Alerts of {}", party.name);
    let crumbs: Vec<(&str, String)> = if staff {
        vec![
            ("Customers", "/customers".into()),
            (party.name.as_str(), format!("/customers/{id}")),
            ("Alerts", String::new()),
        ]
    } else {
        vec![("Settings", "/settings".into()), ("Alerts", String::new())]
    };
    let crumbs: Vec<(&str, &str)> = crumbs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let status = if !error.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page::respond(status, page::layout(&title, Some(&viewer), &crumbs, body)))
}

pub async fn save_settings(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered: HashMap<String, String> = ["profile", "billing_email", "alert_emails", "warning_thresholds"]
        .iter()
        .map(|k| ((*k).to_owned(), form.get(k).to_owned()))
        .collect();
    let viewer = Arc::new(viewer);
    let v = viewer.clone();
    let e = entered.clone();
    let saved = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let current = s.alerts.alert_settings(party.id)?.and_then(|a| a.profile);
        let profile = if matches!(v.user.role, Role::Customer(_)) {
            current
        } else {
            match e["profile"].trim() {
                "" => None,
                p => Some(p.parse().map_err(|_| PortalError::field("profile", "choose a profile"))?),
            }
        };
        let body = SettingsBody {
            profile,
            billing_email: Some(e["billing_email"].clone()),
            alert_emails: list(&e["alert_emails"]),
            warning_thresholds: e["warning_thresholds"].clone(),
        };
        api::save_settings(s, &v.who, &party, body).map_err(PortalError::keep_field)?;
        Ok(party.id)
    })
    .await;
    match saved {
        Ok(party) => {
            read(&state, move |s| Ok(api::sync_levels(s, None, Some(party))?)).await?;
            Ok(done(&format!("/customers/{id}/alerts"), "The alert settings were saved."))
        }
        Err(PortalError::Fields(errors)) => settings_page(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

/// The notification log: staff see their customers', customers their own.
pub async fn log(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    let viewer = Arc::new(viewer);
    let v = viewer.clone();
    let rows = read(&state, move |s| {
        let mut found = api::visible_notifications(s, &v.who, None, None, 200)?;
        // Newest first, by when it happened (ids follow insertion, not the clock).
        found.sort_by(|(a, _), (b, _)| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut rows = Vec::new();
        for (n, d) in &found {
            let name = match names.get(&n.party.0) {
                Some(name) => name.clone(),
                None => {
                    let name =
                        s.engine.reader().party(n.party)?.map_or_else(|| "A former customer".to_owned(), |p| p.name);
                    names.insert(n.party.0, name.clone());
                    name
                }
            };
            rows.push((api::notification_view(n, d, &s.currency("currency", n.currency)?), name, n.kind.words()));
        }
        Ok(rows)
    })
    .await?;
    let body = html! {
        p.muted { "Every notification, with each recipient's delivery. With no SMTP server configured, e-mail is written to a local maildir and read here." }
        div.scroll {
            table id="notifications" {
                thead { tr { th { "When" } th { "Customer" } th { "Rule" } th { "Threshold" } th { "Available" } th { "Deliveries" } th { "Message" } } }
                tbody {
                    @for (n, customer, kind) in &rows {
                        tr {
                            td { (viewer.when_text(&n["at"])) }
                            td { (customer) }
                            td { (kind) }
                            td { (n["threshold"].as_str().unwrap_or("")) " " (n["currency"].as_str().unwrap_or("")) }
                            td { (n["available"].as_str().unwrap_or("")) }
                            td {
                                @for d in n["deliveries"].as_array().into_iter().flatten() {
                                    div { span.badge.ok[d["status"] == "sent"].closed[d["status"] == "failed"] { (crate::sentence(d["status"].as_str().unwrap_or(""))) } " " (match d["channel"].as_str() { Some("email") => "e-mail to", Some("webhook") => "webhook to", _ => "" }) " " (d["target"].as_str().unwrap_or(""))
                                        @if let Some(e) = d["last_error"].as_str() { " — " span.muted { (e) } } }
                                }
                            }
                            td { details { summary { (n["subject"].as_str().unwrap_or("")) } pre { (n["body"].as_str().unwrap_or("")) } } }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="7" .muted { "No notifications yet." } } }
                }
            }
        }
    };
    Ok(page::ok(page::layout("Notifications", Some(&viewer), &[("Notifications", "")], body)))
}
