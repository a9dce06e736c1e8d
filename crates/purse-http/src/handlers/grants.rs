//! Credit grants and recurring grants. The workflows are `purse_app::grants`'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_app::grants::{AllowanceRequest, GrantRequest};
use purse_app::{AppError, Code, Principal};
use purse_core::{Currency, Grant, GrantUse, Item, Role};
use purse_store::Allowance;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{created, json_parts, outcome};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;

fn time(t: purse_core::Timestamp) -> String {
    purse_core::time::format(t)
}

/// A grant as the API shows it; who granted it only to the operator's staff.
pub(crate) fn grant_view(who: &Principal, customer: u64, g: &Grant, c: Currency) -> Value {
    let mut v = json!({
        "id": g.id.0,
        "customer": customer,
        "account": g.account.0,
        "kind": g.kind,
        "amount": c.format(g.amount),
        "remaining": c.format(g.remaining),
        "reserved": c.format(g.reserved),
        "currency": c.code.as_str(),
        "priority": g.priority,
        "effective_at": time(g.effective_at),
        "expires_at": g.expires_at.map(time),
        "scope": g.scope,
        "rollover": g.rollover.map(|r| json!({
            "max": c.format(r.max),
            "valid_for_days": r.valid_for_us / 86_400_000_000,
        })),
        "state": g.state.as_str(),
        "rolled_from": g.rolled_from.map(|r| r.0),
        "reason": g.reason,
        "created_at": time(g.created_at),
        "closed_at": g.closed_at.map(time),
    });
    if who.role == Role::Operator {
        v["granted_by"] = json!(g.by);
    }
    v
}

/// One movement of a grant's remainder.
pub(crate) fn use_view(u: &GrantUse, c: Currency) -> Value {
    json!({
        "grant": u.grant.0,
        "kind": u.kind.as_str(),
        "amount": c.format(u.amount),
        "transfer": u.transfer.map(|t| t.0),
        "at": time(u.at),
    })
}

pub async fn create_grant(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let customer = body.customer;
    let (g, currency) = state
        .read(move |s| {
            let purse_core::Command::Grant(g) = s.grant_command(&who, &body)? else { unreachable!("a grant command") };
            let currency = s.currency("currency", g.money.currency)?;
            Ok((g, currency))
        })
        .await?;
    let command = purse_core::Command::Grant(g.clone());
    let render = move |results: &[purse_core::CommandResult]| {
        let purse_core::Outcome::Posted { transfer, replayed, .. } = outcome(results)? else {
            return Err(ApiError::App(AppError::Internal("a grant posts".into())));
        };
        // The grant as made: the answer of a replay too (GET shows it as it stands now).
        let grant = g.made(transfer, purse_core::Timestamp(0));
        let mut view = grant_view(&who, customer, &grant, currency);
        view["transfer"] = json!(transfer.0);
        view["replayed"] = json!(replayed);
        if g.effective_at.is_none() {
            view["effective_at"] = Value::Null;
        }
        view.as_object_mut().map(|o| o.remove("created_at"));
        json_parts(created(replayed), &view)
    };
    state.commit(&ctx, vec![Item::single(command)], render).await
}

/// The `customer` a list is of: a customer's own when it names none.
fn customer_param(params: &Params, who: &Principal) -> Result<u64, ApiError> {
    match (params.id("customer")?, who.role) {
        (Some(c), _) => Ok(c),
        (None, Role::Customer(me)) => Ok(me.0),
        (None, _) => Err(ApiError::invalid("customer", Code::MissingParameter, "name the customer: ?customer=ID")),
    }
}

pub async fn list_grants(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let customer = customer_param(&params, &who)?;
    let open_only = match params.text("state") {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::invalid("state", Code::InvalidQuery, "state must be open or all")),
    };
    let limit = params.limit()?;
    let data = state
        .read(move |s| {
            let grants = s.grants_of(&who, customer, open_only, limit)?;
            let mut out = Vec::new();
            for g in &grants {
                let account = s.engine.reader().account(g.account)?;
                let code = account.map(|a| a.currency).ok_or(AppError::NotFound("account"))?;
                out.push(grant_view(&who, customer, g, s.currency("currency", code)?));
            }
            Ok(out)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

fn detail_view(s: &AppState, who: &Principal, id: u64) -> Result<Value, ApiError> {
    let d = s.grant_for(who, id)?;
    let mut v = grant_view(who, d.customer.id.0, &d.grant, d.currency);
    let uses = s.grant_uses(who, id)?;
    v["uses"] = uses.iter().map(|u| use_view(u, d.currency)).collect();
    Ok(v)
}

pub async fn get_grant(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| detail_view(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    reason: String,
}

pub async fn void_grant(
    State(state): State<AppState>,
    ctx: Ctx,
    Id(id): Id,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state.read(move |s| Ok(s.void_grant_command(&who, id, &body.reason)?)).await?;
    let response = state.commit(&ctx, vec![Item::single(command)], super::postings::render_posted).await?;
    if !response.status().is_success() {
        return Ok(response);
    }
    let view = state.read(move |s| detail_view(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &view))
}

fn allowance_view(a: &Allowance, c: Currency) -> Value {
    json!({
        "id": a.id,
        "customer": a.party.0,
        "account": a.account.0,
        "amount": c.format(a.amount),
        "currency": c.code.as_str(),
        "kind": a.kind,
        "priority": a.priority,
        "scope": a.scope,
        "day": a.day,
        "rollover": a.rollover_max.zip(a.rollover_days).map(|(max, days)| json!({
            "max": c.format(max), "valid_for_days": days,
        })),
        "next_at": time(a.next_at),
        "reason": a.reason,
        "created_at": time(a.created_at),
        "ended_at": a.ended_at.map(time),
    })
}

fn allowance_currency(s: &AppState, a: &Allowance) -> Result<Currency, ApiError> {
    let code = s.engine.reader().account(a.account)?.map(|a| a.currency).ok_or(AppError::NotFound("account"))?;
    Ok(s.currency("currency", code)?)
}

pub async fn create_allowance(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<AllowanceRequest>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let a = s.create_allowance(&who, &body)?;
            Ok(allowance_view(&a, allowance_currency(s, &a)?))
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &view))
}

pub async fn list_allowances(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let customer = customer_param(&params, &who)?;
    let data = state
        .read(move |s| {
            let mut out = Vec::new();
            for a in s.allowances_of(&who, customer)? {
                out.push(allowance_view(&a, allowance_currency(s, &a)?));
            }
            Ok(out)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

pub async fn end_allowance(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let a = s.end_allowance(&who, id)?;
            Ok(allowance_view(&a, allowance_currency(s, &a)?))
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}
