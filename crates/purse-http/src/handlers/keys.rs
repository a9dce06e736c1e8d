//! API keys and portal users, for the API (`/v1/api-keys`, `/v1/users`) and the portal alike:
//! who may issue, list, revoke and disable whose is the policy's `may_manage` (an operator
//! anyone's, a reseller its own and its customers', a customer admin its own party's).
//! Every change is audited. A key's secret is shown once, in the answer that creates it,
//! and never stored (so these requests take no Idempotency-Key: a stored answer would keep it).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_store::{ApiKeyRecord, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id};
use crate::AppState;
use purse_app::keys::*;
use purse_app::parse::{name, scope};
use purse_core::time;

pub fn key_view(k: &ApiKeyRecord) -> Value {
    let (role, party) = purse_store::codec::role(k.role);
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "role": role,
        "party": party,
        "scope": purse_store::codec::scope(k.scope),
        "created_at": time::format(k.created_at),
        "revoked_at": k.revoked_at.map(time::format),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    name: String,
    /// `operator`, `reseller` or `customer`; the caller's own when absent.
    role: Option<String>,
    /// The reseller or customer the key belongs to; the caller's own when absent.
    party: Option<u64>,
    scope: String,
}

pub async fn list_api_keys(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let keys = state.read(move |s| Ok(visible_keys(s, &who)?)).await?;
    Ok(reply(StatusCode::OK, &json!({ "data": keys.iter().map(key_view).collect::<Vec<_>>() })))
}

pub async fn create_api_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> Result<Response, ApiError> {
    let name = name("name", &body.name)?;
    let scope = scope("scope", &body.scope)?;
    let (key, secret) = state
        .read(move |s| {
            let role = target_role(s, &who, body.role.as_deref(), body.party)?;
            Ok(create_key(s, &who, &name, role, scope)?)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &json!({ "key": key_view(&key), "secret": secret })))
}

pub async fn revoke_api_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let key = state.read(move |s| Ok(revoke_key(s, &who, id)?)).await?;
    Ok(reply(StatusCode::OK, &key_view(&key)))
}

pub fn user_view(u: &UserRecord) -> Value {
    let (role, party) = purse_store::codec::role(u.role);
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": role,
        "party": party,
        "scope": purse_store::codec::scope(u.scope),
        "created_at": time::format(u.created_at),
        "disabled_at": u.disabled_at.map(time::format),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    email: String,
    name: String,
    password: String,
    role: Option<String>,
    party: Option<u64>,
    scope: String,
}

pub async fn list_users(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let users = state.read(move |s| Ok(visible_users(s, &who)?)).await?;
    Ok(reply(StatusCode::OK, &json!({ "data": users.iter().map(user_view).collect::<Vec<_>>() })))
}

pub async fn create_user_route(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(b): ApiJson<NewUserBody>,
) -> Result<Response, ApiError> {
    let input =
        UserInput { email: b.email, name: b.name, password: b.password, role: b.role, party: b.party, scope: b.scope };
    let user = state
        .read(move |s| {
            let (user, errors) = check_user(s, &who, &input)?;
            if let Some(e) = errors.into_iter().next() {
                return Err(e.into());
            }
            Ok(create_user(s, &who, user)?)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &user_view(&user)))
}

pub async fn disable_user_route(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let user = state.read(move |s| Ok(disable_user(s, &who, id)?)).await?;
    Ok(reply(StatusCode::OK, &user_view(&user)))
}
