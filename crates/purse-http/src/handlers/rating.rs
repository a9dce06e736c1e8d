//! Rate plans (decks in and out, who is given which), rated usage, and real-time charging
//! sessions. The workflows are `purse_app::rating` and `purse_app::sessions`'.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use purse_app::rating::UsageRequest;
use purse_app::sessions::{Authorize, Terminate, Update};
use purse_app::{AppError, Code};
use purse_core::rating::Rate;
use purse_core::{Command, CommandResult, Item, Timestamp};
use purse_store::RatePlan;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::{self, Ctx};
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;

/// Most usage events in one batch.
pub const USAGE_BATCH_MAX: usize = 8192;

fn plan_view(p: &RatePlan, customer: bool) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "currency": p.currency.as_str(),
        // Whose plan it is means nothing to a customer (and names its reseller).
        "owner": if customer { None } else { p.owner.map(|o| o.0) },
        "rates": p.rates,
        "version": p.version,
        "updated_at": purse_core::time::format(p.updated_at),
    })
}

fn rate_view(r: &Rate, scale: u8) -> Value {
    json!({
        "service": r.service,
        "prefix": r.prefix.as_str(),
        "description": r.description,
        "price": r.price.format(scale),
        "connection_fee": r.connection_fee.format(scale),
        "minimum": r.minimum.format(scale),
        "increments": r.increments.to_string(),
        "unit": r.unit,
        "effective_from": purse_core::time::format(r.effective_from),
    })
}

pub async fn list_plans(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let customer = matches!(who.role, purse_core::Role::Customer(_));
    let plans = state.read(move |s| Ok(s.list_plans(&who)?)).await?;
    let data: Vec<Value> = plans.iter().map(|p| plan_view(p, customer)).collect();
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    name: String,
    currency: String,
    /// The reseller that sells with it (operators only; a reseller's plans are its own).
    owner: Option<u64>,
}

pub async fn create_plan(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<Response, ApiError> {
    let plan = state.read(move |s| Ok(s.create_plan(&who, &body.name, &body.currency, body.owner)?)).await?;
    Ok(reply(StatusCode::CREATED, &plan_view(&plan, false)))
}

pub async fn get_plan(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    params: Params,
) -> Result<Response, ApiError> {
    let prefix = params.text("prefix").map(str::to_owned);
    let limit = params.limit()?;
    let customer = matches!(who.role, purse_core::Role::Customer(_));
    let body = state
        .read(move |s| {
            let (plan, rates) = s.plan_rates(&who, id, prefix.as_deref(), limit)?;
            let scale = s.currency("currency", plan.currency)?.scale;
            let mut v = plan_view(&plan, customer);
            v["data"] = rates.iter().map(|r| rate_view(r, scale)).collect();
            Ok(v)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The deck: a header line, then one rate a line.
    csv: String,
    /// The service of a deck without a `service` column.
    service: Option<String>,
}

pub async fn import_rates(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<Response, ApiError> {
    let (plan, n) = state.read(move |s| Ok(s.import_deck(&who, id, &body.csv, body.service.as_deref())?)).await?;
    let mut v = plan_view(&plan, false);
    v["imported"] = n.into();
    Ok(reply(StatusCode::OK, &v))
}

pub async fn export_rates(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let text = state.read(move |s| Ok(s.export_deck(&who, id)?)).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"rate-plan-{id}.csv\"")),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerPlanBody {
    /// The plan, or null to take it away (the reseller's default applies).
    plan: Option<u64>,
}

pub async fn put_customer_plan(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<CustomerPlanBody>,
) -> Result<Response, ApiError> {
    let plan = state
        .read(move |s| {
            s.assign_customer_plan(&who, id, body.plan)?;
            Ok(s.customer_plan(purse_core::PartyId(id))?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "customer": id, "plan": plan.map(|p| plan_view(&p, false)) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResellerPlansBody {
    /// The plan the reseller pays the operator by (operators only); null takes it away.
    #[serde(default, with = "double_option")]
    pays: Option<Option<u64>>,
    /// The plan of its customers that have none of their own; null takes it away.
    #[serde(default, with = "double_option")]
    customers_default: Option<Option<u64>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }
}

pub async fn put_reseller_plans(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<ResellerPlansBody>,
) -> Result<Response, ApiError> {
    let reseller = purse_core::PartyId(id);
    let (pays, default) = state
        .read(move |s| {
            s.assign_reseller_plans(&who, id, body.pays, body.customers_default)?;
            Ok((s.reseller_plan(reseller)?, s.reseller_default_plan(reseller)?))
        })
        .await?;
    Ok(reply(
        StatusCode::OK,
        &json!({
            "reseller": id,
            "pays": pays.map(|p| plan_view(&p, false)),
            "customers_default": default.map(|p| plan_view(&p, false)),
        }),
    ))
}

pub async fn get_margin(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    params: Params,
) -> Result<Response, ApiError> {
    let from = params.text("from").map(|t| purse_app::parse::timestamp("from", t)).transpose()?;
    let to = params.text("to").map(|t| purse_app::parse::timestamp("to", t)).transpose()?;
    let body = state
        .read(move |s| {
            let now = s.now();
            let from = from.unwrap_or_else(|| {
                purse_core::time::day_start(purse_core::time::month_start(purse_core::time::day_of(now)))
            });
            Ok(s.reseller_margin(&who, id, from, to.unwrap_or(Timestamp(now.0 + 1)))?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

// ------------------------------------------------------------------ usage

fn render_usage(results: &[CommandResult]) -> Result<(StatusCode, Vec<u8>), ApiError> {
    super::postings::render_posted(results)
}

pub async fn create_usage(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<UsageRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state.read(move |s| Ok(s.usage_command(&who, body)?)).await?;
    state.commit(&ctx, vec![Item::single(command)], render_usage).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    items: Vec<UsageRequest>,
}

pub async fn create_usage_batch(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<UsageBatch>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    if body.items.is_empty() || body.items.len() > USAGE_BATCH_MAX {
        return Err(ApiError::invalid(
            "items",
            Code::BatchSize,
            format!("items must hold 1 to {USAGE_BATCH_MAX} usage events"),
        ));
    }
    let prepared: Vec<Result<Command, ApiError>> = state
        .read(move |s| {
            Ok(body
                .items
                .into_iter()
                .enumerate()
                .map(|(i, r)| s.usage_command(&who, r).map_err(|e| ApiError::App(item_field(e, i))))
                .collect())
        })
        .await?;
    super::postings::commit_items(&state, &ctx, prepared).await
}

/// An item's error names its place in the batch (`items[3].destination`).
fn item_field(e: AppError, i: usize) -> AppError {
    match e {
        AppError::Invalid { field, code, message } => {
            AppError::Invalid { field: format!("items[{i}].{field}"), code, message: format!("items[{i}].{message}") }
        }
        other => other,
    }
}

pub async fn list_unrated(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let customer = params.id("customer")?;
    let data = state
        .read(move |s| {
            Ok(s.unrated_usage(&who, customer)?
                .iter()
                .map(|u| {
                    json!({
                        "customer": u.party.0, "client_id": u.client_id, "account": u.account, "service": u.service,
                        "destination": u.destination, "quantity": u.quantity, "at": purse_core::time::format(u.at),
                        "reason": u.reason, "recorded_at": purse_core::time::format(u.recorded_at),
                    })
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

// ------------------------------------------------------------------ sessions

pub async fn create_session(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Authorize>,
) -> Result<Response, ApiError> {
    let key = headers.get(idempotency::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = format!("{}:{key}", who.key_id);
    let (new, view) = state.read(move |s| Ok(s.authorize_session(&who, &key, body)?)).await?;
    Ok(reply(if new { StatusCode::CREATED } else { StatusCode::OK }, &view))
}

pub async fn update_session(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<Update>,
) -> Result<Response, ApiError> {
    let view = state.read(move |s| Ok(s.update_session(&who, id, body)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn terminate_session(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<Terminate>,
) -> Result<Response, ApiError> {
    let view = state.read(move |s| Ok(s.terminate_session(&who, id, body)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn get_session(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| Ok(s.get_session(&who, id)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn list_sessions(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let customer = params.id("customer")?;
    let active = match params.text("active") {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::invalid("active", Code::InvalidQuery, "active must be true or false")),
    };
    let data = state.read(move |s| Ok(s.list_sessions(&who, customer, active)?)).await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}
