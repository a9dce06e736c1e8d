//! API keys in the portal: list the keys of one's own tenant, create one (its secret is
//! shown once, on the page the form redirects to), revoke one.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use purse_core::{Role, Scope};
use purse_store::ApiKeyRecord;

use super::page::{self, field, select};
use super::session::{self, Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

const SCOPES: [(&str, &str); 2] = [("read_write", "Read and write"), ("read", "Read only")];

/// The keys `viewer` manages (the policy's rule). Blocking.
fn visible(s: &PortalState, viewer: &Viewer) -> Result<Vec<ApiKeyRecord>, PortalError> {
    Ok(purse_app::keys::visible_keys(s, &viewer.who)?)
}

/// The cookie that carries a new key's secret across the form's redirect, to the one page
/// that shows it (and clears it): the secret is never stored, so it cannot be shown again.
const NEW_KEY_COOKIE: &str = "purse_new_key";

/// A key's role as people read it, its reseller or customer by name.
fn role_text(role: Role, names: &HashMap<u64, String>) -> String {
    let name = |p: purse_core::PartyId| names.get(&p.0).cloned().unwrap_or_else(|| "a former party".to_owned());
    match role {
        Role::Operator => "Operator".into(),
        Role::Reseller(p) => format!("Reseller ({})", name(p)),
        Role::Customer(p) => format!("Customer ({})", name(p)),
    }
}

/// The keys `viewer` manages, and the names of the parties they belong to. Blocking.
fn visible_named(s: &PortalState, viewer: &Viewer) -> Result<(Vec<ApiKeyRecord>, HashMap<u64, String>), PortalError> {
    let keys = visible(s, viewer)?;
    let mut names = HashMap::new();
    for k in &keys {
        if let Role::Reseller(p) | Role::Customer(p) = k.role {
            if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(p.0) {
                if let Some(party) = s.engine.reader().party(p)? {
                    slot.insert(party.name);
                }
            }
        }
    }
    Ok((keys, names))
}

struct Entered<'a> {
    name: &'a str,
    scope: &'a str,
    name_error: Option<&'a str>,
    scope_error: Option<&'a str>,
}

fn keys_page(
    viewer: &Viewer,
    (keys, names): &(Vec<ApiKeyRecord>, HashMap<u64, String>),
    entered: &Entered<'_>,
    created: Option<&str>,
) -> Markup {
    let body = html! {
        @if let Some(secret) = created {
            section.card.notice.good id="new-key" {
                p { strong { "Your new API key. Copy it now: it is not stored and will not be shown again." } }
                p.secret id="secret" { (secret) }
            }
        }
        div.scroll {
            table id="keys" {
                thead { tr { th { "Name" } th { "Prefix" } th.optional { "Role" } th { "Access" } th.optional { "Created" } th { "Status" } th {} } }
                tbody {
                    @for k in keys {
                        tr {
                            td { (k.name) }
                            td { code { (k.prefix) "…" } }
                            td.optional { (role_text(k.role, names)) }
                            td { @if k.scope == Scope::Read { "Read only" } @else { "Read and write" } }
                            td.optional { (viewer.when(k.created_at)) }
                            td { @if let Some(at) = k.revoked_at { span.badge.closed { "Revoked " (viewer.when(at)) } } @else { span.badge.ok { "Active" } } }
                            td {
                                @if k.revoked_at.is_none() && viewer.user.scope == Scope::ReadWrite {
                                    a.danger href=(format!("/keys/{}/revoke", k.id)) id=(format!("revoke-{}", k.id)) { "Revoke" }
                                }
                            }
                        }
                    }
                    @if keys.is_empty() { tr { td colspan="7" .muted { "No API keys yet." } } }
                }
            }
        }
        @if viewer.user.scope == Scope::ReadWrite {
            h2 { "Create a key" }
            form.card method="post" action="/keys" id="create-key" {
                input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
                (field("Name", "name", "text", entered.name, entered.name_error))
                (select("Access", "scope", &SCOPES, entered.scope, entered.scope_error))
                p.muted { "The key acts as " (page::role_name(viewer)) " does: it sees what you see." }
                button type="submit" id="create" { "Create key" }
            }
        }
    };
    page::layout("API keys", Some(viewer), &[("Settings", "/settings"), ("API keys", "")], body)
}

/// The keys page; right after a key was made, with its secret, once.
pub async fn list(
    State(state): State<PortalState>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, PortalError> {
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let keys = read(&state, move |s| visible_named(s, &v)).await?;
    // Shown only if it is the secret of a key this viewer manages that is still active.
    let created = session::cookie(&headers, NEW_KEY_COOKIE).filter(|secret| {
        let hash = purse_app::secrets::hash_key(secret);
        keys.0.iter().any(|k| k.revoked_at.is_none() && k.hash == hash)
    });
    let entered = Entered { name: "", scope: "read_write", name_error: None, scope_error: None };
    let mut response = page::ok(keys_page(&viewer, &keys, &entered, created));
    if session::cookie(&headers, NEW_KEY_COOKIE).is_some() {
        session::add_cookie(&mut response, &session::set_cookie(&state, &headers, NEW_KEY_COOKIE, "", 0));
    }
    Ok(response)
}

/// Makes a key and answers with a redirect to the keys page, which shows its secret once
/// (post/redirect/get: reloading that page makes no second key).
pub async fn create(
    State(state): State<PortalState>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let name = form.get("name").trim();
    let scope_text = form.get("scope");
    let name_error = if purse_app::parse::name("name", name).is_err() {
        Some("A name is 1 to 100 characters, none of them control characters.")
    } else {
        None
    };
    let scope = match scope_text {
        "read_write" => Some(Scope::ReadWrite),
        "read" => Some(Scope::Read),
        _ => None,
    };
    let scope_error = scope.is_none().then_some("Choose read and write, or read only.");
    let viewer = std::sync::Arc::new(viewer);
    let (v, owned_name) = (viewer.clone(), name.to_owned());
    let created = match (name_error, scope) {
        (None, Some(scope)) => Some(
            read(&state, move |s| Ok(purse_app::keys::create_key(s, &v.who, &owned_name, v.user.role, scope)?.1))
                .await?,
        ),
        _ => None,
    };
    if let Some(secret) = created {
        let mut response = done("/keys", &format!("The API key “{name}” was created: copy its secret now."));
        session::add_cookie(&mut response, &session::set_cookie(&state, &headers, NEW_KEY_COOKIE, &secret, 120));
        return Ok(response);
    }
    let v = viewer.clone();
    let keys = read(&state, move |s| visible_named(s, &v)).await?;
    let entered = Entered { name, scope: scope_text, name_error, scope_error };
    Ok(page::respond(StatusCode::UNPROCESSABLE_ENTITY, keys_page(&viewer, &keys, &entered, None)))
}

/// "Revoke this key?": what stops working, before anything is done.
pub async fn confirm_revoke(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let key = read(&state, move |s| visible(s, &v))
        .await?
        .into_iter()
        .find(|k| k.id == id && k.revoked_at.is_none())
        .ok_or(PortalError::NotFound)?;
    let body = html! {
        section.card.notice.bad id="confirm" {
            p { "Revoke the API key " strong { (key.name) } " (" code { (key.prefix) "…" } ")? Every program using it is refused from now on. This cannot be undone: a new key would have to be created and given to them." }
            form.inline method="post" action=(format!("/keys/{id}/revoke")) {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button.danger type="submit" id="confirm-revoke" { "Revoke" }
            }
            " " a href="/keys" { "Cancel" }
        }
    };
    Ok(page::ok(page::layout("Revoke API key", Some(&viewer), &[("API keys", "/keys"), ("Revoke", "")], body)))
}

pub async fn revoke(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    read(&state, move |s| Ok(purse_app::keys::revoke_key(s, &viewer.who, id)?)).await?;
    Ok(done("/keys", "The API key was revoked: it no longer works."))
}
