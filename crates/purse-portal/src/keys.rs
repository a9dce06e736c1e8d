//! API keys in the portal: list the keys of one's own tenant, create one (its secret is
//! shown once, on the page that answers the form), revoke one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_core::{Role, Scope};
use purse_store::ApiKeyRecord;

use super::page::{self, field, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;

const SCOPES: [(&str, &str); 2] = [("read_write", "Read and write"), ("read", "Read only")];

/// The keys `viewer` manages (the policy's rule). Blocking.
fn visible(s: &PortalState, viewer: &Viewer) -> Result<Vec<ApiKeyRecord>, PortalError> {
    Ok(purse_app::keys::visible_keys(s, &viewer.who)?)
}

fn role_text(role: Role) -> String {
    match role {
        Role::Operator => "operator".into(),
        Role::Reseller(p) => format!("reseller {}", p.0),
        Role::Customer(p) => format!("customer {}", p.0),
    }
}

struct Entered<'a> {
    name: &'a str,
    scope: &'a str,
    name_error: Option<&'a str>,
    scope_error: Option<&'a str>,
}

fn keys_page(viewer: &Viewer, keys: &[ApiKeyRecord], entered: &Entered<'_>, created: Option<&str>) -> Markup {
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
                            td.optional { (role_text(k.role)) }
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
                input type="hidden" name="csrf" value=(viewer.csrf);
                (field("Name", "name", "text", entered.name, entered.name_error))
                (select("Access", "scope", &SCOPES, entered.scope, entered.scope_error))
                p.muted { "The key acts as " (page::role_name(viewer)) " does: it sees what you see." }
                button type="submit" id="create" { "Create key" }
            }
        }
    };
    page::layout("API keys", Some(viewer), &[("Settings", "/settings"), ("API keys", "")], body)
}

pub async fn list(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    let viewer = std::sync::Arc::new(viewer);
    let v = viewer.clone();
    let keys = read(&state, move |s| visible(s, &v)).await?;
    let entered = Entered { name: "", scope: "read_write", name_error: None, scope_error: None };
    Ok(page::ok(keys_page(&viewer, &keys, &entered, None)))
}

pub async fn create(State(state): State<PortalState>, viewer: Viewer, form: Form) -> Result<Response, PortalError> {
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
    let v = viewer.clone();
    let keys = read(&state, move |s| visible(s, &v)).await?;
    let status = if created.is_some() { StatusCode::CREATED } else { StatusCode::UNPROCESSABLE_ENTITY };
    let entered = if created.is_some() {
        Entered { name: "", scope: "read_write", name_error: None, scope_error: None }
    } else {
        Entered { name, scope: scope_text, name_error, scope_error }
    };
    Ok(page::respond(status, keys_page(&viewer, &keys, &entered, created.as_deref())))
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
