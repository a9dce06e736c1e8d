//! Low-balance notifications: Low Balance Profiles, parties' alert settings (billing
//! e-mail, e-mails to be alerted, warning thresholds, profile), webhook endpoints, the
//! notification log, and the scheduler's runs.
//!
//! These are settings, not money: they change no balance and carry no Idempotency-Key.
//! PUT and DELETE are idempotent by nature; a POST retried after a lost answer is refused
//! as a duplicate (a profile's name is unique per owner, an endpoint's URL per owner).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::{Currency, CurrencyCode, Role};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;
use purse_app::alerts::*;
use purse_app::{AppError, Principal};
use purse_core::time;

pub async fn list_profiles(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    if matches!(who.role, Role::Customer(_)) {
        return Err(ApiError::App(AppError::Forbidden("a customer key may not list Low Balance Profiles".into())));
    }
    let data = state
        .read(move |s| {
            let mut data = Vec::new();
            for p in s.alerts.profiles()?.iter().filter(|p| sees_profile(&who, p)) {
                data.push(profile_view(p, &s.currency("currency", p.currency)?));
            }
            Ok(data)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

pub async fn get_profile(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| {
        let p = visible_profile(s, &who, id)?;
        Ok(profile_view(&p, &s.currency("currency", p.currency)?))
    });
    Ok(reply(StatusCode::OK, &view.await?))
}

pub async fn create_profile(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Response, ApiError> {
    let (p, owners) = state.read(move |s| Ok(save_profile(s, &who, None, body)?)).await?;
    state.read(move |s| Ok(sync_owners(s, owners)?)).await?;
    let currency = state.read(move |s| Ok(s.currency("currency", p.currency).map(|c| profile_view(&p, &c))?)).await?;
    Ok(reply(StatusCode::CREATED, &currency))
}

pub async fn replace_profile(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Response, ApiError> {
    let (p, owners) = state.read(move |s| Ok(save_profile(s, &who, Some(id), body)?)).await?;
    state.read(move |s| Ok(sync_owners(s, owners)?)).await?;
    let view = state.read(move |s| Ok(s.currency("currency", p.currency).map(|c| profile_view(&p, &c))?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn delete_profile(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let owner = state.read(move |s| Ok(remove_profile(s, &who, id)?)).await?;
    state.read(move |s| Ok(sync_owners(s, vec![owner])?)).await?;
    Ok(reply(StatusCode::OK, &json!({ "id": id, "deleted": true })))
}

async fn put_settings(
    state: AppState,
    who: Principal,
    id: u64,
    reseller: bool,
    body: SettingsBody,
) -> Result<Response, ApiError> {
    let party = state.read(move |s| Ok(s.party_of_kind(&who, id, reseller)?)).await?;
    let p = party.clone();
    state.read(move |s| Ok(save_settings(s, &who, &p, body)?)).await?;
    if !reseller {
        state.read(move |s| Ok(sync_levels(s, None, Some(party.id))?)).await?;
    }
    let view = state.read(move |s| Ok(settings_view(s, &party)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

async fn get_settings(state: AppState, who: Principal, id: u64, reseller: bool) -> Result<Response, ApiError> {
    let view = state.read(move |s| Ok(settings_view(s, &s.party_of_kind(&who, id, reseller)?)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn get_customer_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, false).await
}

pub async fn put_customer_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, false, body).await
}

pub async fn get_reseller_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, true).await
}

pub async fn put_reseller_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, true, body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    pub url: String,
}

pub async fn create_endpoint(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<Response, ApiError> {
    let e = state.read(move |s| Ok(add_endpoint(s, &who, &body.url)?)).await?;
    let mut view = endpoint_view(&e);
    view["secret"] = json!(e.secret);
    Ok(reply(StatusCode::CREATED, &view))
}

pub async fn list_endpoints(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let data = state
        .read(move |s| {
            Ok(s.alerts.endpoints()?.iter().filter(|e| sees_endpoint(&who, e)).map(endpoint_view).collect::<Vec<_>>())
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

pub async fn delete_endpoint(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    state.read(move |s| Ok(remove_endpoint(s, &who, id)?)).await?;
    Ok(reply(StatusCode::OK, &json!({ "id": id, "deleted": true })))
}

pub async fn list_notifications(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let (customer, before) = (params.id("customer")?, params.id("before")?);
    let data = state
        .read(move |s| {
            let found = visible_notifications(s, &who, customer, before, limit)?;
            let mut currencies: HashMap<CurrencyCode, Currency> = HashMap::new();
            let mut data = Vec::new();
            for (n, d) in &found {
                if let std::collections::hash_map::Entry::Vacant(e) = currencies.entry(n.currency) {
                    e.insert(s.currency("currency", n.currency)?);
                }
                data.push(notification_view(n, d, &currencies[&n.currency]));
            }
            Ok((data, (found.len() == limit as usize).then(|| found.last().map(|(n, _)| n.id)).flatten()))
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data.0, "next_before": data.1 })))
}

pub async fn list_job_runs(State(state): State<AppState>, _: Caller, params: Params) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let runs = state.read(move |s| Ok(s.alerts.job_runs(limit)?)).await?;
    let data: Vec<Value> = runs
        .iter()
        .map(|r| json!({ "job": r.job, "key": r.key, "claimed_by": r.claimed_by, "started_at": time::format(r.started_at), "finished_at": r.finished_at.map(time::format), "summary": r.summary }))
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}
