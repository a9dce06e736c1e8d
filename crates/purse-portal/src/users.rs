//! Portal users: operators create users of any role, resellers users of themselves and of
//! their customers; everyone changes their own password.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_app::policy::Action;
use purse_core::{Role, Scope};
use purse_store::UserRecord;

use super::page::{self, field, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::keys;
use purse_app::parse::password_rule;
use purse_app::secrets::{hash_password, verify_password};
use purse_app::AppError;

const ROLES: [(&str, &str); 3] = [("customer", "Customer"), ("reseller", "Reseller"), ("operator", "Operator")];
const SCOPES: [(&str, &str); 2] = [("read_write", "Admin (read and write)"), ("read", "Read only")];

pub use purse_app::parse::valid_email;

/// A user's role with whose it is, by name: "Reseller · Northwind Telecom".
fn role_text(role: Role, names: &HashMap<u64, String>) -> String {
    let name = |p: purse_core::PartyId| names.get(&p.0).cloned().unwrap_or_else(|| "a former party".to_owned());
    match role {
        Role::Operator => "Operator".into(),
        Role::Reseller(p) => format!("Reseller · {}", name(p)),
        Role::Customer(p) => format!("Customer · {}", name(p)),
    }
}

fn users_page(
    viewer: &Viewer,
    users: &[UserRecord],
    parties: &[purse_core::Party],
    entered: &HashMap<&str, String>,
    errors: &HashMap<String, String>,
) -> Markup {
    let names: HashMap<u64, String> = parties.iter().map(|p| (p.id.0, p.name.clone())).collect();
    // Only an operator makes operator users; anyone else's users belong to a party it manages.
    let mut party_options: Vec<(String, String)> = match viewer.user.role {
        Role::Operator => vec![(String::new(), "None (an operator user)".to_owned())],
        _ => Vec::new(),
    };
    party_options.extend(parties.iter().map(|p| {
        let kind = if matches!(p.kind, purse_core::PartyKind::Reseller) { "reseller" } else { "customer" };
        (p.id.0.to_string(), format!("{} ({kind})", p.name))
    }));
    let party_options: Vec<(&str, &str)> = party_options.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let value = |k: &str| entered.get(k).map_or("", String::as_str);
    let error = |k: &str| errors.get(k).map(String::as_str);
    let offered = |r: &str| match viewer.user.role {
        Role::Operator => true,
        Role::Reseller(_) => r != "operator",
        Role::Customer(_) => r == "customer",
    };
    let roles: Vec<(&str, &str)> = ROLES.iter().copied().filter(|(r, _)| offered(r)).collect();
    let body = html! {
        div.scroll {
            table id="users" {
                thead { tr { th { "Name" } th { "E-mail" } th { "Role" } th { "Access" } th.optional { "Created" } th { "Status" } th {} } }
                tbody {
                    @for u in users {
                        tr {
                            td { (u.name) } td { (u.email) } td { (role_text(u.role, &names)) }
                            td { @if u.scope == Scope::Read { "Read only" } @else { "Admin" } }
                            td.optional { (viewer.when(u.created_at)) }
                            td { @if let Some(at) = u.disabled_at { span.badge.closed { "Disabled " (viewer.when(at)) } } @else { span.badge.ok { "Active" } } }
                            td {
                                @if u.disabled_at.is_none() && u.id != viewer.user.id && viewer.may(Action::DisableUser) {
                                    form.inline method="post" action=(format!("/users/{}/disable", u.id)) {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button.danger type="submit" id=(format!("disable-{}", u.id)) { "Disable" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if viewer.user.scope == Scope::ReadWrite {
            h2 { "Create a user" }
            form.card method="post" action="/users" id="create-user" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                (field("E-mail", "email", "email", value("email"), error("email")))
                (field("Name", "name", "text", value("name"), error("name")))
                (field("Password", "password", "password", "", error("password")))
                (select("Role", "role", &roles, value("role"), error("role")))
                (select("Reseller or customer it belongs to", "party", &party_options, value("party"), error("party")))
                (select("Access", "scope", &SCOPES, value("scope"), error("scope")))
                button type="submit" id="create" { "Create user" }
            }
        }
    };
    page::layout("Users", Some(viewer), &[("Settings", "/settings"), ("Users", "")], body)
}

pub async fn list(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let (users, parties) =
        read(&state, move |s| Ok((keys::visible_users(s, &v.who)?, super::visible_parties(s, &v.who)?))).await?;
    let mut entered = HashMap::from([("role", "customer".to_owned()), ("scope", "read_write".to_owned())]);
    // A customer user of the first customer the viewer manages, unless an operator user is the
    // operator's to make.
    if viewer.user.role != Role::Operator {
        let customer = parties.iter().find(|p| matches!(p.kind, purse_core::PartyKind::Customer { .. }));
        if let Some(c) = customer {
            entered.insert("party", c.id.0.to_string());
        }
    }
    Ok(page::ok(users_page(&viewer, &users, &parties, &entered, &HashMap::new())))
}

/// A refusal of the form's fields as the page says it: the party by its name, never its id.
fn in_words(e: &AppError) -> String {
    use purse_app::Code;
    match e {
        AppError::Invalid { code: Code::PartyRequired, .. } => {
            "choose the reseller or customer the user belongs to".to_owned()
        }
        AppError::Invalid { code: Code::PartyNotFound, .. } => {
            "choose one of the resellers or customers you manage, of the role chosen".to_owned()
        }
        AppError::Invalid { code: Code::PartyNotAllowed, .. } => {
            "an operator user belongs to no reseller or customer: choose None".to_owned()
        }
        other => other.to_string(),
    }
}

/// Validates the whole form first and saves nothing unless every field is right.
pub async fn create(State(state): State<PortalState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let party_text = form.get("party").trim();
    let party = if party_text.is_empty() { None } else { party_text.parse::<u64>().ok().or(Some(u64::MAX)) };
    let input = keys::UserInput {
        email: form.get("email").to_owned(),
        name: form.get("name").to_owned(),
        password: form.get("password").to_owned(),
        role: Some(form.get("role").to_owned()).filter(|r| !r.is_empty()),
        party,
        scope: form.get("scope").to_owned(),
    };
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let (created, errors, users, parties) = read(&state, move |s| {
        let (user, errors) = keys::check_user(s, &v.who, &input)?;
        let mut errors: HashMap<String, String> =
            errors.iter().map(|e| (e.field().unwrap_or("email").to_owned(), in_words(e))).collect();
        let mut created = None;
        if errors.is_empty() {
            match keys::create_user(s, &v.who, user) {
                Ok(u) => created = Some(u.email),
                Err(AppError::Invalid { message, .. }) => {
                    errors.insert("email".to_owned(), format!("{}.", crate::sentence(&message)));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok((created, errors, keys::visible_users(s, &v.who)?, super::visible_parties(s, &v.who)?))
    })
    .await?;
    if let Some(email) = created {
        return Ok(done("/users", &format!("The user {email} was created.")));
    }
    let keep = |k: &'static str| (k, form.get(k).to_owned());
    let entered: HashMap<&str, String> =
        HashMap::from([keep("email"), keep("name"), keep("role"), keep("party"), keep("scope")]);
    Ok(page::respond(StatusCode::UNPROCESSABLE_ENTITY, users_page(&viewer, &users, &parties, &entered, &errors)))
}

/// Disables a user: it no longer logs in, and its sessions end.
pub async fn disable(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    read(&state, move |s| Ok(keys::disable_user(s, &viewer.who, id)?)).await?;
    Ok(done("/users", "The user was disabled: it can no longer log in."))
}

fn password_page(viewer: &Viewer, errors: &HashMap<&str, String>, changed: bool) -> Markup {
    let error = |k: &str| errors.get(k).map(String::as_str);
    let body = html! {
        @if changed { p.notice.good id="changed" { "Your password is changed. Your other sessions have been ended." } }
        form.card method="post" action="/settings/password" id="password-form" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            (field("Current password", "current", "password", "", error("current")))
            (field("New password", "new", "password", "", error("new")))
            (field("New password again", "confirm", "password", "", error("confirm")))
            button type="submit" id="change" { "Change password" }
        }
    };
    page::layout("Change password", Some(viewer), &[("Settings", "/settings"), ("Change password", "")], body)
}

pub async fn password_form(viewer: Viewer) -> Response {
    page::ok(password_page(&viewer, &HashMap::new(), false))
}

pub async fn change_password(
    State(state): State<PortalState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let mut errors: HashMap<&str, String> = HashMap::new();
    if !verify_password(form.get("current"), &viewer.user.password_hash) {
        errors.insert("current", "This is not your current password.".into());
    }
    if let Some(rule) = password_rule(form.get("new")) {
        errors.insert("new", rule);
    } else if form.get("new") != form.get("confirm") {
        errors.insert("confirm", "The two new passwords differ.".into());
    }
    if !errors.is_empty() {
        return Ok(page::respond(StatusCode::UNPROCESSABLE_ENTITY, password_page(&viewer, &errors, false)));
    }
    let (user, keep, new, who) = (viewer.user.id, viewer.session.clone(), form.get("new").to_owned(), viewer.who);
    let party = purse_app::audit::access_view(viewer.user.role, viewer.user.scope).1;
    read(&state, move |s| {
        s.access.set_password(user, &hash_password(&new)?, Some(&keep))?;
        Ok(s.audit(&who, party, "user", user, "password_change", None, None)?)
    })
    .await?;
    Ok(page::ok(password_page(&viewer, &errors, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["ana@example.com", "a.b+c@mail.example.org"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@example",
            "ana@.com",
            "ana@example.com.",
            "a na@example.com",
            "a@b@c.com",
            "<a@example.com>",
            "Ana <a@example.com>",
            "a@exa mple.com",
            "a@ex\u{0}ample.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
