//! Credit control (seed 003's Balance & Credits): changing credit limits and temporary
//! increases within the maximum possible increase, the credit limit history, customer
//! classes, a customer's credit settings (class, subscriber-to-subscriber transfers), a
//! reseller's maximum possible increase, the rules of subscriber transfers, and the audit log.
//!
//! The checks live here once for the API and the portal. Classes and maximums are the
//! operator's to set (a reseller could otherwise lift its own bound); a customer's class and
//! transfers setting are staff's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::PartyId;
use purse_store::AuditQuery;
use serde::Deserialize;
use serde_json::json;

use super::{json_parts, outcome, timestamp};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;
use purse_app::credit::*;
use purse_app::Principal;

/// `PATCH /v1/accounts/{id}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChanges {
    credit_limit: Option<String>,
    /// An object sets the increase; `null` removes it.
    #[serde(default, deserialize_with = "some")]
    temporary_increase: Option<Option<IncreaseText>>,
    /// Why: kept in the credit limit history.
    reason: Option<String>,
}

pub async fn update_account(
    State(state): State<AppState>,
    ctx: Ctx,
    Id(id): Id,
    ApiJson(body): ApiJson<AccountChanges>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let change =
        CreditChange { credit_limit: body.credit_limit, increase: body.temporary_increase, reason: body.reason };
    let items = state
        .read(move |s| {
            let account = s.account_for(&who, id)?;
            Ok(credit_commands(s, &who, &account, &change)?)
        })
        .await?;
    state
        .commit(&ctx, items, move |results| {
            outcome(results)?;
            json_parts(StatusCode::OK, &json!({ "id": id, "updated": true }))
        })
        .await
}

pub async fn credit_history(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let a = s.account_for(&who, id)?;
            let rows = s.credit.limit_history(a.id)?;
            Ok(json!({ "account": id, "data": rows.iter().map(history_view).collect::<Vec<_>>() }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

pub async fn list_classes(State(state): State<AppState>, _: Caller) -> Result<Response, ApiError> {
    let body =
        state.read(|s| Ok(json!({ "data": s.credit.classes()?.iter().map(class_view).collect::<Vec<_>>() }))).await?;
    Ok(reply(StatusCode::OK, &body))
}

pub async fn create_class(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ClassBody>,
) -> Result<Response, ApiError> {
    let (class, _) = state.read(move |s| Ok(save_class(s, &who, 0, body)?)).await?;
    Ok(reply(StatusCode::CREATED, &class_view(&class)))
}

pub async fn replace_class(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<ClassBody>,
) -> Result<Response, ApiError> {
    let (class, members) = state.read(move |s| Ok(save_class(s, &who, id, body)?)).await?;
    state.read(move |s| Ok(sync_transfers(s, members)?)).await?;
    Ok(reply(StatusCode::OK, &class_view(&class)))
}

async fn get_settings(state: AppState, who: Principal, id: u64, reseller: bool) -> Result<Response, ApiError> {
    let body = state.read(move |s| Ok(settings_view(s, &s.party_of_kind(&who, id, reseller)?)?)).await?;
    Ok(reply(StatusCode::OK, &body))
}

async fn put_settings(
    state: AppState,
    who: Principal,
    id: u64,
    reseller: bool,
    body: CreditSettingsBody,
) -> Result<Response, ApiError> {
    let party = state
        .read(move |s| {
            let party = s.party_of_kind(&who, id, reseller)?;
            save_credit_settings(s, &who, &party, body)?;
            Ok(party.id)
        })
        .await?;
    state.read(move |s| Ok(sync_transfers(s, vec![party])?)).await?;
    get_settings(state, who, id, reseller).await
}

pub async fn get_customer_credit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, false).await
}

pub async fn put_customer_credit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<CreditSettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, false, body).await
}

pub async fn get_reseller_credit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, true).await
}

pub async fn put_reseller_credit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<CreditSettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, true, body).await
}

/// `GET /v1/audit-log?party=&entity=&actor=&from=&to=&before=&limit=`: newest first.
pub async fn audit_log(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let query = AuditQuery {
        visible: visible(&who),
        party: params.id("party")?.map(PartyId),
        entity: params.text("entity").map(str::to_owned),
        action: None,
        actor: params.text("actor").map(str::to_owned),
        from: params.text("from").map(|t| timestamp("from", t)).transpose()?,
        to: params.text("to").map(|t| timestamp("to", t)).transpose()?,
        before: params.id("before")?,
        limit,
    };
    let body = state
        .read(move |s| {
            if let Some(p) = query.party {
                s.party_for(&who, p.0)?;
            }
            let rows = s.credit.audit_log(&query)?;
            let next = (rows.len() == query.limit as usize).then(|| rows.last().map(|r| r.id)).flatten();
            Ok(json!({ "data": rows.iter().map(audit_view).collect::<Vec<_>>(), "next_before": next }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}
