//! Everything that moves money: charges (one or a batch), payments, transfers, reversals,
//! and holds (place, capture, release); and the reads of a transfer and a hold.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::{
    AccountId, AdjustCategory, AdjustDirection, ChangeNote, Command, CommandResult, HoldId, Item, Money, NewCharge,
    Outcome, PaymentMethod, Timestamp, TransferId, TransferKind,
};
use serde::{Deserialize, Serialize};

use super::{
    amount, created, currency_code, hold_view, json_parts, object_metadata, outcome, reason_text, time, timestamp,
    transfer_view,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::{reply, ApiJson, Id};
use crate::AppState;
use purse_app::accounts::Adjustment;
use purse_app::{AppError, Code, Principal, Problems};

/// Most items in one `POST /v1/charges/batch`.
pub const BATCH_ITEMS_MAX: usize = 8192;

/// Default life of a hold placed without `expires_at`.
const HOLD_TTL_DEFAULT_S: i64 = 3600;

#[derive(Serialize)]
pub struct Posted {
    transfer: u64,
    overdrawn: bool,
    replayed: bool,
}

fn posted(outcome: Outcome) -> Result<(StatusCode, Posted), ApiError> {
    match outcome {
        Outcome::Posted { transfer, overdrawn, replayed } => {
            Ok((created(replayed), Posted { transfer: transfer.0, overdrawn, replayed }))
        }
        Outcome::HoldCaptured { transfer, replayed, .. } => {
            Ok((created(replayed), Posted { transfer: transfer.0, overdrawn: false, replayed }))
        }
        other => Err(ApiError::App(AppError::Internal(format!("unexpected outcome {other:?}")))),
    }
}

pub(crate) fn render_posted(results: &[CommandResult]) -> Result<(StatusCode, Vec<u8>), ApiError> {
    let (status, body) = posted(outcome(results)?)?;
    json_parts(status, &body)
}

/// `amount` in the currency named (the ledger refuses it if the account's differs).
/// Blocking on the first use of a currency.
fn money(s: &AppState, amount_text: &str, currency_text: &str) -> Result<Money, ApiError> {
    let code = currency_code("currency", currency_text)?;
    let currency = s.currency("currency", code)?;
    Ok(Money { amount: amount("amount", amount_text, currency)?, currency: code })
}

// ------------------------------------------------------------------ charges

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    client_id: String,
    account: u64,
    amount: String,
    currency: String,
    service: Option<String>,
    /// RFC 3339 usage time; the time of posting when absent.
    at: Option<String>,
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    refuse_if_insufficient: bool,
}

/// Turns a charge request into a command, checking everything the edge can check. Blocking.
fn charge_command(s: &AppState, who: &Principal, r: ChargeRequest) -> Result<Command, ApiError> {
    s.check_account_field(who, "account", r.account)?;
    let money = money(s, &r.amount, &r.currency)?;
    Ok(Command::Charge(NewCharge {
        client_id: who.client_id("client_id", &r.client_id)?,
        account: AccountId(r.account),
        money,
        service: r.service,
        at: r.at.as_deref().map(|t| timestamp("at", t)).transpose()?,
        metadata: object_metadata(r.metadata)?,
        refuse_if_insufficient: r.refuse_if_insufficient,
    }))
}

/// Whether `text` has the shape the document gives positive amounts: 1–19 digits, then
/// optionally a point and 1–9 digits.
fn amount_shaped(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
    let digits = |t: &str, max: usize| (1..=max).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
    digits(whole, 19) && fraction.is_none_or(|f| digits(f, 9))
}

impl ChargeRequest {
    /// What the document's schema says of a batch item, checked without the store: a
    /// request with a malformed item is refused whole (400, naming `items[i].field`), while
    /// what only the ledger knows (an unknown currency or account, funds) is that item's
    /// result.
    fn check_shape(&self, who: &Principal, i: usize) -> Result<(), ApiError> {
        let field = |name: &str| format!("items[{i}].{name}");
        if i64::try_from(self.account).is_err() {
            return Err(ApiError::invalid(
                field("account"),
                Code::InvalidId,
                format!("{} must be at most {}", field("account"), i64::MAX),
            ));
        }
        if !amount_shaped(&self.amount) {
            return Err(ApiError::invalid(
                field("amount"),
                Code::InvalidAmount,
                format!("{} must be a positive decimal string such as \"12.50\"", field("amount")),
            ));
        }
        currency_code(&field("currency"), &self.currency)?;
        who.client_id(&field("client_id"), &self.client_id)?;
        if self.service.as_ref().is_some_and(|s| s.chars().count() > purse_core::command::SERVICE_LEN_MAX) {
            let message =
                format!("{} must be at most {} characters", field("service"), purse_core::command::SERVICE_LEN_MAX);
            return Err(ApiError::invalid(field("service"), Code::InvalidService, message));
        }
        if self.service.as_deref().is_some_and(|s| !purse_core::text::is_single_line(s)) {
            let message = format!("{} must not contain control characters", field("service"));
            return Err(ApiError::invalid(field("service"), Code::TextNotPrintable, message));
        }
        if let Some(t) = &self.at {
            timestamp(&field("at"), t)?;
        }
        if !matches!(self.metadata, None | Some(serde_json::Value::Null | serde_json::Value::Object(_))) {
            return Err(ApiError::invalid(
                field("metadata"),
                Code::InvalidMetadata,
                format!("{} must be a JSON object", field("metadata")),
            ));
        }
        Ok(())
    }
}

pub async fn create_charge(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ChargeRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    // The hot path: an operator's charge in a known currency needs no store read at all.
    let command = if who.is_operator() && state.knows_currency(&body.currency) {
        charge_command(&state, &who, body)?
    } else {
        state.read(move |s| charge_command(s, &who, body)).await?
    };
    state.commit(&ctx, vec![Item::single(command)], render_posted).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeBatch {
    items: Vec<ChargeRequest>,
}

/// One result per item: the posting, or the error shape of that item alone.
#[derive(Serialize)]
#[serde(untagged)]
enum ItemResult {
    Posted(Posted),
    Failed { error: serde_json::Value },
}

fn item_error(e: ApiError) -> ItemResult {
    let (code, message, field) = match e {
        ApiError::App(AppError::Rejected(r)) => (r.code().to_owned(), r.to_string(), r.field().map(str::to_owned)),
        ApiError::App(AppError::Invalid { field, code, message }) => (code.as_str().to_owned(), message, Some(field)),
        other => ("internal".to_owned(), format!("{other:?}"), None),
    };
    ItemResult::Failed { error: serde_json::json!({ "code": code, "message": message, "field": field }) }
}

/// Every item is checked at the edge and answered on its own; the good ones go to the
/// engine as one request (each charge independent: one refusal spoils no other).
pub async fn create_charge_batch(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ChargeBatch>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    if body.items.is_empty() || body.items.len() > BATCH_ITEMS_MAX {
        return Err(ApiError::invalid(
            "items",
            Code::BatchSize,
            format!("items must hold 1 to {BATCH_ITEMS_MAX} charges"),
        ));
    }
    for (i, item) in body.items.iter().enumerate() {
        item.check_shape(&who, i)?;
    }
    let inline = who.is_operator() && body.items.iter().all(|r| state.knows_currency(&r.currency));
    let prepared: Vec<Result<Command, ApiError>> = if inline {
        body.items.into_iter().map(|r| charge_command(&state, &who, r)).collect()
    } else {
        state.read(move |s| Ok(body.items.into_iter().map(|r| charge_command(s, &who, r)).collect())).await?
    };
    commit_items(&state, &ctx, prepared).await
}

/// Commits the good items of a batch as one request; each item is answered on its own.
pub(crate) async fn commit_items(
    state: &AppState,
    ctx: &Ctx,
    prepared: Vec<Result<Command, ApiError>>,
) -> Result<Response, ApiError> {
    let mut commands = Vec::with_capacity(prepared.len());
    let mut slots = Vec::with_capacity(prepared.len());
    for p in prepared {
        match p {
            Ok(command) => {
                commands.push(Item::single(command));
                slots.push(None);
            }
            Err(e) => slots.push(Some(e)),
        }
    }
    let render = move |results: &[CommandResult]| {
        let mut results = results.iter();
        let items: Vec<ItemResult> = slots
            .iter()
            .map(|slot| match slot {
                Some(e) => item_error(e.clone()),
                None => match results.next() {
                    Some(Ok(o)) => posted(o.clone()).map_or_else(item_error, |(_, p)| ItemResult::Posted(p)),
                    Some(Err(r)) => item_error(ApiError::App(AppError::Rejected(r.clone()))),
                    None => item_error(ApiError::App(AppError::Internal("missing result".into()))),
                },
            })
            .collect();
        json_parts(StatusCode::OK, &serde_json::json!({ "results": items }))
    };
    state.commit(ctx, commands, render).await
}

// ------------------------------------------------------------------ payments

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    client_id: String,
    account: u64,
    amount: String,
    currency: String,
    method: MethodText,
    metadata: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MethodText {
    Card,
    Cash,
    BankTransfer,
    Cheque,
}

pub async fn create_payment(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(r): ApiJson<PaymentRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state
        .read(move |s| {
            s.check_account_field(&who, "account", r.account)?;
            let method = match r.method {
                MethodText::Card => PaymentMethod::Card,
                MethodText::Cash => PaymentMethod::Cash,
                MethodText::BankTransfer => PaymentMethod::BankTransfer,
                MethodText::Cheque => PaymentMethod::Cheque,
            };
            Ok(Command::Payment {
                client_id: who.client_id("client_id", &r.client_id)?,
                account: AccountId(r.account),
                money: money(s, &r.amount, &r.currency)?,
                method,
                metadata: object_metadata(r.metadata)?,
            })
        })
        .await?;
    state.commit(&ctx, vec![Item::single(command)], render_posted).await
}

// ------------------------------------------------------------------ transfers and reversals

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    client_id: String,
    source: u64,
    target: u64,
    amount: String,
    currency: String,
    /// `transfer` (default), `recharge` or `issue`.
    kind: Option<String>,
    metadata: Option<serde_json::Value>,
    /// Why, when the transfer is made for someone else (it goes to the audit log).
    reason: Option<String>,
}

pub async fn create_transfer(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(r): ApiJson<TransferRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let kind = match r.kind.as_deref() {
        None | Some("transfer") => TransferKind::Transfer,
        Some("recharge") => TransferKind::Recharge,
        Some("issue") => TransferKind::Issue,
        Some(other) => {
            return Err(ApiError::invalid(
                "kind",
                Code::InvalidKind,
                format!("kind {other:?} is not one of transfer, recharge, issue"),
            ))
        }
    };
    let reason = reason_text(r.reason.as_deref())?;
    let command = state
        .read(move |s| {
            Ok(purse_app::accounts::transfer_command(
                s,
                &who,
                who.client_id("client_id", &r.client_id)?,
                r.source,
                r.target,
                money(s, &r.amount, &r.currency)?,
                kind,
                reason,
                object_metadata(r.metadata)?,
            )?)
        })
        .await?;
    state.commit(&ctx, vec![Item::single(command)], render_posted).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalRequest {
    client_id: String,
    transfer: u64,
    metadata: Option<serde_json::Value>,
    /// Why (it goes to the audit log with the reversal).
    reason: Option<String>,
}

pub async fn create_reversal(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(r): ApiJson<ReversalRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let reason = reason_text(r.reason.as_deref())?;
    let by = state.read(move |s| Ok(s.actor(&who)?)).await?;
    let command = Command::Reverse {
        client_id: who.client_id("client_id", &r.client_id)?,
        transfer: TransferId(r.transfer),
        metadata: object_metadata(r.metadata)?,
        note: Some(ChangeNote { by, reason }),
    };
    state.commit(&ctx, vec![Item::single(command)], render_posted).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    client_id: String,
    account: u64,
    amount: String,
    currency: String,
    /// `credit` adds to the balance, `debit` takes from it.
    direction: String,
    /// `goodwill`, `correction` (the default) or `write_off`.
    category: Option<String>,
    /// Why: required, kept in the audit log.
    reason: String,
    metadata: Option<serde_json::Value>,
}

/// A staff member raises or lowers a balance against the adjustments account, with a
/// reason; the posting and its audit entry are written together.
pub async fn create_adjustment(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(r): ApiJson<AdjustmentRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state
        .read(move |s| {
            let mut problems = Problems::default();
            let client_id = problems.check(who.client_id("client_id", &r.client_id));
            let direction = match r.direction.as_str() {
                "credit" => Some(AdjustDirection::Credit),
                "debit" => Some(AdjustDirection::Debit),
                _ => {
                    problems.note(AppError::invalid(
                        "direction",
                        Code::InvalidDirection,
                        "direction must be credit or debit",
                    ));
                    None
                }
            };
            let category = match r.category.as_deref() {
                None => Some(AdjustCategory::Correction),
                Some(c) => AdjustCategory::parse(c).or_else(|| {
                    problems.note(AppError::invalid(
                        "category",
                        Code::InvalidCategory,
                        "category must be goodwill, correction or write_off",
                    ));
                    None
                }),
            };
            let money = problems.check((|| {
                let code = currency_code("currency", &r.currency)?;
                let currency = s.currency("currency", code)?;
                Ok::<_, AppError>(Money { amount: amount("amount", &r.amount, currency)?, currency: code })
            })());
            let metadata = problems.check(object_metadata(r.metadata));
            let adjustment = match (client_id, direction, category, money, metadata) {
                (Some(client_id), Some(direction), Some(category), Some(money), Some(metadata)) => {
                    let a = Adjustment {
                        account: r.account,
                        money,
                        direction,
                        category,
                        reason: r.reason.clone(),
                        metadata,
                    };
                    Some((client_id, a))
                }
                _ => None,
            };
            // The command's own checks run even when a field above is wrong, so every
            // wrong field is named at once.
            match adjustment {
                Some((client_id, a)) => match purse_app::accounts::adjustment_command(s, &who, client_id, a) {
                    Ok(c) => {
                        problems.finish()?;
                        Ok(c)
                    }
                    Err(e) => {
                        problems.note(e);
                        Err(problems.finish().expect_err("an error was noted").into())
                    }
                },
                None => {
                    if r.reason.trim().is_empty() {
                        problems.note(AppError::invalid(
                            "reason",
                            Code::ReasonMustNotBeEmpty,
                            "give a reason: it is kept in the audit log",
                        ));
                    }
                    Err(problems.finish().expect_err("a field was wrong").into())
                }
            }
        })
        .await?;
    state.commit(&ctx, vec![Item::single(command)], render_posted).await
}

pub async fn get_transfer(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let t = s.engine.reader().transfer(TransferId(id))?.ok_or(ApiError::App(AppError::NotFound("transfer")))?;
            let visible = s.account_for(&who, t.debit.0).is_ok() || s.account_for(&who, t.credit.0).is_ok();
            if !visible {
                return Err(ApiError::App(AppError::NotFound("transfer")));
            }
            let currency = s.currency("currency", t.currency)?;
            let mut view = serde_json::to_value(transfer_view(&who, &t, currency))
                .map_err(|e| ApiError::App(AppError::Internal(e.to_string())))?;
            // For a charge: which grants paid how much of it (the rest was the account's own).
            if t.kind == purse_core::TransferKind::Charge {
                view["paid_by_grants"] = t
                    .grant_parts
                    .iter()
                    .map(|(g, amount)| serde_json::json!({ "grant": g.0, "amount": currency.format(*amount) }))
                    .collect();
            }
            Ok(view)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

// ------------------------------------------------------------------ holds

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    client_id: String,
    account: u64,
    amount: String,
    currency: String,
    /// RFC 3339; an hour from now when absent.
    expires_at: Option<String>,
    service: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct HoldAnswer {
    hold: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<u64>,
    state: &'static str,
    replayed: bool,
}

fn render_hold(results: &[CommandResult]) -> Result<(StatusCode, Vec<u8>), ApiError> {
    let (hold, transfer, state, replayed) = match outcome(results)? {
        Outcome::HoldPlaced { hold, replayed } => (hold, None, "open", replayed),
        Outcome::HoldCaptured { hold, transfer, replayed } => (hold, Some(transfer.0), "captured", replayed),
        Outcome::HoldReleased { hold, replayed } => (hold, None, "released", replayed),
        other => return Err(ApiError::App(AppError::Internal(format!("unexpected outcome {other:?}")))),
    };
    json_parts(created(replayed), &HoldAnswer { hold: hold.0, transfer, state, replayed })
}

pub async fn create_hold(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(r): ApiJson<HoldRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state
        .read(move |s| {
            s.check_account_field(&who, "account", r.account)?;
            let now = purse_engine::Clock::now(s.engine.clock().as_ref());
            let expires_at = match r.expires_at.as_deref() {
                Some(t) => timestamp("expires_at", t)?,
                None => now.plus_micros(HOLD_TTL_DEFAULT_S * Timestamp::MICROS_PER_S),
            };
            Ok(Command::Hold {
                client_id: who.client_id("client_id", &r.client_id)?,
                money: money(s, &r.amount, &r.currency)?,
                account: AccountId(r.account),
                expires_at,
                service: r.service,
                metadata: object_metadata(r.metadata)?,
            })
        })
        .await?;
    state.commit(&ctx, vec![Item::single(command)], render_hold).await
}

/// The hold, if the caller sees its account. Blocking.
fn hold_for(s: &AppState, who: &Principal, id: u64) -> Result<purse_core::Hold, ApiError> {
    let hold = s.engine.reader().hold(HoldId(id))?.ok_or(ApiError::App(AppError::NotFound("hold")))?;
    s.account_for(who, hold.account.0).map_err(|_| ApiError::App(AppError::NotFound("hold")))?;
    Ok(hold)
}

pub async fn get_hold(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let hold = hold_for(s, &who, id)?;
            let now = purse_engine::Clock::now(s.engine.clock().as_ref());
            Ok(hold_view(&who, &hold, s.currency("currency", hold.currency)?, now))
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    client_id: String,
    /// Part of the hold to charge; all of it when absent. The rest is released.
    amount: Option<String>,
}

pub async fn capture_hold(
    State(state): State<AppState>,
    ctx: Ctx,
    Id(id): Id,
    ApiJson(r): ApiJson<CaptureRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let command = state
        .read(move |s| {
            let hold = hold_for(s, &who, id)?;
            let currency = s.currency("currency", hold.currency)?;
            Ok(Command::Capture {
                client_id: who.client_id("client_id", &r.client_id)?,
                hold: hold.id,
                amount: r.amount.as_deref().map(|a| amount("amount", a, currency)).transpose()?,
            })
        })
        .await?;
    state.commit(&ctx, vec![Item::single(command)], render_hold).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    client_id: String,
}

pub async fn release_hold(
    State(state): State<AppState>,
    ctx: Ctx,
    Id(id): Id,
    ApiJson(r): ApiJson<ReleaseRequest>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    state.read(move |s| hold_for(s, &who, id)).await?;
    let command = Command::Release { client_id: who.client_id("client_id", &r.client_id)?, hold: HoldId(id) };
    state.commit(&ctx, vec![Item::single(command)], render_hold).await
}

/// `GET /v1/adjustments?customer=&before=&limit=`: newest first, from the audit log.
pub async fn list_adjustments(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: crate::json::Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let (customer, before) = (params.id("customer")?, params.id("before")?);
    let body = state
        .read(move |s| {
            let rows = purse_app::accounts::adjustments(s, &who, customer, before, limit)?;
            let next = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.id)).flatten();
            let data: Vec<_> = rows
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "id": a.id,
                        "transfer": a.transfer,
                        "at": time::format(a.at),
                        "by": a.by,
                        "customer": a.customer.map(|p| p.0),
                        "account": a.account,
                        "direction": a.direction.as_str(),
                        "category": a.category.as_str(),
                        "amount": a.amount,
                        "currency": a.currency,
                        "reason": a.reason,
                    })
                })
                .collect();
            Ok(serde_json::json!({ "data": data, "next_before": next }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}
