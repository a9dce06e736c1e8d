//! Resellers and customers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::{Amount, Billing, Command, Item, Outcome, PartyId, Role};
use purse_store::PartyQuery;
use serde::{Deserialize, Serialize};

use super::{amount, created, currency_code, json_parts, outcome, party_view};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;
use purse_app::{AppError, Principal};

#[derive(Serialize)]
struct Created {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet: Option<u64>,
    replayed: bool,
}

fn created_party(results: &[purse_core::CommandResult]) -> Result<(StatusCode, Vec<u8>), ApiError> {
    match outcome(results)? {
        Outcome::PartyCreated { party, wallet, replayed } => {
            json_parts(created(replayed), &Created { id: party.0, wallet: wallet.map(|w| w.0), replayed })
        }
        other => Err(ApiError::App(AppError::Internal(format!("unexpected outcome {other:?}")))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReseller {
    client_id: String,
    name: String,
}

pub async fn create_reseller(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewReseller>,
) -> Result<Response, ApiError> {
    let command =
        Command::CreateReseller { client_id: ctx.principal.client_id("client_id", &body.client_id)?, name: body.name };
    state.commit(&ctx, vec![Item::single(command)], created_party).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    client_id: String,
    name: String,
    /// The reseller the customer belongs to; a reseller's key may only name itself.
    reseller: Option<u64>,
    billing: BillingText,
    currency: String,
    /// Postpaid only: how far below zero the wallet may go.
    credit_limit: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum BillingText {
    Prepaid,
    Postpaid,
}

pub async fn create_customer(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewCustomer>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let reseller = match (who.role, body.reseller) {
        (Role::Reseller(me), None) => Some(me),
        (Role::Reseller(me), Some(r)) if r == me.0 => Some(me),
        (role, Some(_)) if !purse_app::policy::may_set(role, purse_app::policy::Field::CustomerReseller) => {
            return Err(ApiError::App(AppError::ForbiddenField {
                field: "reseller",
                message: "a reseller's key creates customers only under that reseller".into(),
            }))
        }
        (_, r) => r.map(PartyId),
    };
    let code = currency_code("currency", &body.currency)?;
    let currency = state.read(move |s| Ok(s.currency("currency", code)?)).await?;
    let credit_limit = match &body.credit_limit {
        Some(text) => amount("credit_limit", text, currency)?,
        None => Amount::ZERO,
    };
    let billing = match body.billing {
        BillingText::Prepaid => Billing::Prepaid,
        BillingText::Postpaid => Billing::Postpaid,
    };
    let command = Command::CreateCustomer {
        client_id: who.client_id("client_id", &body.client_id)?,
        name: body.name,
        reseller,
        billing,
        currency: code,
        credit_limit,
    };
    state.commit(&ctx, vec![Item::single(command)], created_party).await
}

/// `limit`, `after` (the last id of the previous page) and, for customers, `reseller`.
struct ListQuery {
    limit: u32,
    after: Option<u64>,
    reseller: Option<u64>,
}

impl ListQuery {
    fn from(params: &Params) -> Result<ListQuery, ApiError> {
        Ok(ListQuery { limit: params.limit()?, after: params.id("after")?, reseller: params.id("reseller")? })
    }
}

async fn list(state: AppState, who: Principal, resellers: bool, params: Params) -> Result<Response, ApiError> {
    let q = ListQuery::from(&params)?;
    let limit = q.limit;
    let query =
        PartyQuery { resellers: Some(resellers), reseller: None, after: q.after.map(PartyId), search: None, limit };
    let page = state
        .read(move |s| {
            // A filter names a reseller the caller sees, or nothing is found.
            if let Some(r) = q.reseller {
                if !matches!(s.party_for(&who, r).map(|p| p.kind), Ok(purse_core::PartyKind::Reseller)) {
                    return Err(ApiError::App(AppError::NotFound("reseller")));
                }
            }
            let reader = s.engine.reader();
            Ok(match who.role {
                Role::Operator => reader.parties(PartyQuery { reseller: q.reseller.map(PartyId), ..query })?,
                // A reseller lists itself, or its own customers.
                Role::Reseller(me) if resellers => {
                    reader.party(me)?.into_iter().filter(|p| q.after.is_none_or(|a| p.id.0 > a)).collect()
                }
                Role::Reseller(me) => {
                    if q.reseller.is_some_and(|r| r != me.0) {
                        Vec::new()
                    } else {
                        reader.parties(PartyQuery { reseller: Some(me), ..query })?
                    }
                }
                Role::Customer(me) if !resellers => {
                    reader.party(me)?.into_iter().filter(|p| q.after.is_none_or(|a| p.id.0 > a)).collect()
                }
                Role::Customer(_) => Vec::new(),
            })
        })
        .await?;
    let next_after = (page.len() == limit as usize).then(|| page.last().map(|p| p.id.0)).flatten();
    let data: Vec<_> = page.iter().map(|p| party_view(&who, p)).collect();
    Ok(reply(StatusCode::OK, &serde_json::json!({ "data": data, "next_after": next_after })))
}

pub async fn list_resellers(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    list(state, who, true, params).await
}

pub async fn list_customers(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    list(state, who, false, params).await
}

async fn get(state: AppState, who: Principal, id: u64, reseller: bool) -> Result<Response, ApiError> {
    let party = state.read(move |s| Ok(s.party_for(&who, id)?)).await?;
    if matches!(party.kind, purse_core::PartyKind::Reseller) != reseller {
        return Err(ApiError::App(AppError::NotFound(if reseller { "reseller" } else { "customer" })));
    }
    Ok(reply(StatusCode::OK, &party_view(&who, &party)))
}

pub async fn get_reseller(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get(state, who, id, true).await
}

pub async fn get_customer(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get(state, who, id, false).await
}
