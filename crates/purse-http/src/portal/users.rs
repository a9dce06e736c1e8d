//! Portal users: operators create users of any role, resellers users of themselves and of
//! their customers; everyone changes their own password.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_core::{PartyId, PartyKind, Role, Scope};
use purse_store::{NewUser, UserRecord};

use super::page::{self, field, select};
use super::session::{hash_password, verify_password, Form, Viewer, PASSWORD_LEN_MAX, PASSWORD_LEN_MIN};
use super::{read, PortalError};
use crate::AppState;

const NAME_LEN_MAX: usize = 100;
const EMAIL_LEN_MAX: usize = 254;
const ROLES: [(&str, &str); 3] = [("customer", "Customer"), ("reseller", "Reseller"), ("operator", "Operator")];
const SCOPES: [(&str, &str); 2] = [("read_write", "Admin (read and write)"), ("read", "Read only")];

/// Whether `email` has the shape of an address (delivery proves the rest).
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= EMAIL_LEN_MAX
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn password_rule(password: &str) -> Option<String> {
    let n = password.chars().count();
    (!(PASSWORD_LEN_MIN..=PASSWORD_LEN_MAX).contains(&n))
        .then(|| format!("A password is {PASSWORD_LEN_MIN} to {PASSWORD_LEN_MAX} characters."))
}

/// The users `viewer` may see. Blocking.
fn visible(s: &AppState, viewer: &Viewer) -> Result<Vec<UserRecord>, PortalError> {
    let users = s.access.users()?;
    Ok(users
        .into_iter()
        .filter(|u| match (viewer.user.role, u.role) {
            (Role::Operator, _) => true,
            (Role::Reseller(r), Role::Reseller(p)) => r == p,
            (Role::Reseller(_), Role::Customer(c)) => s.party_for(&viewer.who, c.0).is_ok(),
            _ => false,
        })
        .collect())
}

fn role_text(role: Role) -> String {
    match role {
        Role::Operator => "Operator".into(),
        Role::Reseller(p) => format!("Reseller {}", p.0),
        Role::Customer(p) => format!("Customer {}", p.0),
    }
}

fn users_page(viewer: &Viewer, users: &[UserRecord], entered: &HashMap<&str, String>, errors: &HashMap<&str, String>, created: Option<&str>) -> Markup {
    let value = |k: &str| entered.get(k).map_or("", String::as_str);
    let error = |k: &str| errors.get(k).map(String::as_str);
    let roles: Vec<(&str, &str)> = ROLES.iter().copied().filter(|(r, _)| viewer.who.is_operator() || *r != "operator").collect();
    let body = html! {
        @if let Some(email) = created { p.notice.good id="created" { "User " (email) " created." } }
        div.scroll {
            table id="users" {
                thead { tr { th { "Name" } th { "E-mail" } th { "Role" } th { "Access" } th.optional { "Created" } } }
                tbody {
                    @for u in users {
                        tr {
                            td { (u.name) } td { (u.email) } td { (role_text(u.role)) }
                            td { @if u.scope == Scope::Read { "Read only" } @else { "Admin" } }
                            td.optional { (crate::time::format_short(u.created_at)) }
                        }
                    }
                }
            }
        }
        @if viewer.user.scope == Scope::ReadWrite {
            h2 { "Create a user" }
            form.card method="post" action="/users" id="create-user" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("E-mail", "email", "email", value("email"), error("email")))
                (field("Name", "name", "text", value("name"), error("name")))
                (field("Password", "password", "password", "", error("password")))
                (select("Role", "role", &roles, value("role"), error("role")))
                (field("Reseller or customer id", "party", "text", value("party"), error("party")))
                (select("Access", "scope", &SCOPES, value("scope"), error("scope")))
                button type="submit" id="create" { "Create user" }
            }
        }
    };
    page::layout("Users", Some(viewer), &[("Settings", "/settings"), ("Users", "")], body)
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    if !viewer.is_staff() {
        return Err(PortalError::NotFound);
    }
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let users = read(&state, move |s| visible(s, &v)).await?;
    let entered = HashMap::from([("role", "customer".to_owned()), ("scope", "read_write".to_owned())]);
    Ok(page::ok(users_page(&viewer, &users, &entered, &HashMap::new(), None)))
}

/// Validates the whole form first and saves nothing unless every field is right.
pub async fn create(State(state): State<AppState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
    if !viewer.is_staff() {
        return Err(PortalError::NotFound);
    }
    viewer.check(&form)?;
    viewer.require_admin()?;
    let email = form.get("email").trim().to_lowercase();
    let name = form.get("name").trim().to_owned();
    let password = form.get("password").to_owned();
    let mut errors: HashMap<&str, String> = HashMap::new();
    if !valid_email(&email) {
        errors.insert("email", "Enter an e-mail address such as ana@example.com.".into());
    }
    if name.is_empty() || name.chars().count() > NAME_LEN_MAX {
        errors.insert("name", format!("A name is 1 to {NAME_LEN_MAX} characters."));
    }
    if let Some(rule) = password_rule(&password) {
        errors.insert("password", rule);
    }
    let scope = match form.get("scope") {
        "read_write" => Some(Scope::ReadWrite),
        "read" => Some(Scope::Read),
        _ => {
            errors.insert("scope", "Choose admin or read only.".into());
            None
        }
    };
    let party_text = form.get("party").trim().to_owned();
    let role_text = form.get("role").to_owned();
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let (result, users) = read(&state, move |s| {
        let role = match chosen_role(s, &v, &role_text, &party_text) {
            Ok(role) => Some(role),
            Err((field, message)) => {
                errors.insert(field, message);
                None
            }
        };
        let mut created = None;
        if let (true, Some(role), Some(scope)) = (errors.is_empty(), role, scope) {
            let record = NewUser { email: email.clone(), name, password_hash: hash_password(&password)?, role, scope, created_at: s.engine.clock().now() };
            match s.access.insert_user(&record)? {
                Some(id) => {
                    let (mut after, party) = AppState::access_view(record.role, record.scope);
                    after["email"] = serde_json::json!(record.email);
                    after["name"] = serde_json::json!(record.name);
                    s.audit(&v.who, party, "user", id, "create", None, Some(&after))?;
                    created = Some(email)
                }
                None => {
                    errors.insert("email", "A user with this e-mail exists.".into());
                }
            }
        }
        Ok(((created, errors), visible(s, &v)?))
    })
    .await?;
    let (created, errors) = result;
    let keep = |k: &'static str| (k, form.get(k).to_owned());
    let entered: HashMap<&str, String> = match created {
        Some(_) => HashMap::from([("role", "customer".to_owned()), ("scope", "read_write".to_owned())]),
        None => HashMap::from([keep("email"), keep("name"), keep("role"), keep("party"), keep("scope")]),
    };
    let status = if created.is_some() { StatusCode::CREATED } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(page::respond(status, users_page(&viewer, &users, &entered, &errors, created.as_deref())))
}

/// The role a new user gets, if the viewer may give it. Blocking.
fn chosen_role(s: &AppState, viewer: &Viewer, role: &str, party: &str) -> Result<Role, (&'static str, String)> {
    let party_id = || -> Result<u64, (&'static str, String)> {
        party.parse::<u64>().map_err(|_| ("party", "Enter the id of the reseller or customer the user belongs to.".to_owned()))
    };
    let not_found = |id: u64| ("party", format!("There is no {role} {id} that you manage."));
    match role {
        "operator" if viewer.who.is_operator() => Ok(Role::Operator),
        "operator" => Err(("role", "Only an operator creates operator users.".into())),
        "reseller" | "customer" => {
            let id = party_id()?;
            let found = s.party_for(&viewer.who, id).map_err(|_| not_found(id))?;
            let fits = matches!((role, &found.kind), ("reseller", PartyKind::Reseller) | ("customer", PartyKind::Customer { .. }));
            if !fits {
                return Err(not_found(id));
            }
            Ok(if role == "reseller" { Role::Reseller(PartyId(id)) } else { Role::Customer(PartyId(id)) })
        }
        _ => Err(("role", "Choose customer, reseller or operator.".into())),
    }
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

pub async fn change_password(State(state): State<AppState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
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
    let party = AppState::access_view(viewer.user.role, viewer.user.scope).1;
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
        for bad in ["", "ana", "@example.com", "ana@example", "ana@.com", "ana@example.com.", "a na@example.com", "a@b@c.com"] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
