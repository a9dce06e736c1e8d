//! Dunning policies and customers' suspensions. The workflows are `purse_app::collections`'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_app::collections::{self, PolicyInput};
use purse_store::Suspension;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;

fn time(t: purse_core::Timestamp) -> String {
    purse_core::time::format(t)
}

fn suspension_view(s: &Suspension) -> Value {
    json!({
        "id": s.id,
        "customer": s.party.0,
        "cause": s.cause.as_str(),
        "detail": s.detail,
        "started_at": time(s.started_at),
        "started_by": s.started_by,
        "lifted_at": s.lifted_at.map(time),
        "lifted_by": s.lifted_by,
        "lift_reason": s.lift_reason,
    })
}

/// `GET /v1/dunning-policies`.
pub async fn list_policies(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let all = collections::visible_policies(s, &who)?;
            Ok(json!({ "data": all.iter().map(collections::policy_json).collect::<Vec<_>>() }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// `operator`, `reseller:{id}` or `class:{id}`.
    owner: String,
    payment_terms_days: Option<i64>,
    #[serde(default)]
    reminder_days: Vec<i64>,
    /// Each reminder's own text, by step: placeholders `{customer}`, `{invoice}`,
    /// `{amount_due}`, `{due_on}`, `{days_overdue}`, `{suspend_after}`.
    #[serde(default)]
    reminder_texts: Vec<String>,
    suspend_after_days: Option<i64>,
    suspend_below: Option<String>,
}

/// `PUT /v1/dunning-policies`: creates or replaces the owner's policy, all or nothing.
pub async fn put_policy(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let owner = collections::owner_for(s, &who, &body.owner)?;
            let input = PolicyInput {
                payment_terms_days: body.payment_terms_days,
                reminder_days: body.reminder_days,
                reminder_texts: body.reminder_texts,
                suspend_after_days: body.suspend_after_days,
                suspend_below: body.suspend_below,
            };
            Ok(collections::policy_json(&collections::put_policy(s, &who, owner, input)?))
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

/// `DELETE /v1/dunning-policies?owner=`: its customers fall back to the next policy.
pub async fn delete_policy(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let owner = params.text("owner").unwrap_or_default().to_owned();
    let owner = state
        .read(move |s| {
            let owner = collections::owner_for(s, &who, &owner)?;
            collections::delete_policy(s, &who, owner)?;
            Ok(owner.key())
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "owner": owner, "deleted": true })))
}

/// `GET /v1/customers/{id}/suspension`: whether the customer is suspended, why, and before.
pub async fn get_suspension(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let body = state.read(move |s| standing_view(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &body))
}

fn standing_view(s: &purse_app::App, who: &purse_app::Principal, id: u64) -> Result<Value, ApiError> {
    let (party, current, history) = collections::standing(s, who, id)?;
    Ok(json!({
        "customer": party.id.0,
        "suspended": current.is_some(),
        "current": current.as_ref().map(suspension_view),
        "history": history.iter().map(suspension_view).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspensionBody {
    suspended: bool,
    /// Why: required, kept in the audit log.
    reason: String,
}

/// `PUT /v1/customers/{id}/suspension`: staff suspend a customer or lift its suspension.
pub async fn put_suspension(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<SuspensionBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            collections::set_standing(s, &who, id, body.suspended, &body.reason)?;
            standing_view(s, &who, id)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

fn refund_view(s: &purse_app::App, r: &purse_store::RefundRecord) -> Result<Value, ApiError> {
    let c = s.currency("currency", r.currency)?;
    let receipt = s.payments.receipt(r.receipt)?.map(|x| x.display_number());
    Ok(json!({
        "id": r.id,
        "number": r.display_number(),
        "customer": r.party.0,
        "receipt": r.receipt,
        "receipt_number": receipt,
        "amount": c.format(purse_core::Amount(r.amount)),
        "currency": c.code.as_str(),
        "method": r.method,
        "status": r.status.as_str(),
        "reason": r.reason,
        "requested_by": r.requested_by,
        "transfer": r.transfer,
        "created_at": time(r.created_at),
        "finished_at": r.finished_at.map(time),
        "failure": r.failure,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The receipt voucher of the payment to refund.
    receipt: u64,
    amount: String,
    /// Why: required, kept in the audit log.
    reason: String,
}

/// `POST /v1/refunds`: gives back all or part of a payment; a card payment through Stripe.
pub async fn create_refund(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, ApiError> {
    let key =
        headers.get(crate::idempotency::HEADER).and_then(|v| v.to_str().ok()).map(|k| format!("{}:{k}", who.key_id));
    let view = state
        .read(move |s| {
            let req =
                purse_app::refunds::RefundRequest { receipt: body.receipt, amount: body.amount, reason: body.reason };
            let done = purse_app::refunds::request(s, &who, req, key)?;
            refund_view(s, &done)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &view))
}

/// `GET /v1/refunds?customer=&limit=`: newest first.
pub async fn list_refunds(state: State<AppState>, who: Caller, params: Params) -> Result<Response, ApiError> {
    customer_list(state, who, params, |s, party, limit| {
        let rows = s.payments.refunds(party, limit)?;
        rows.iter().map(|r| Ok((r.party, refund_view(s, r)?))).collect()
    })
    .await
}

/// Reads a page of a customer's things (all customers' for `None`), each with its customer.
type Fetch =
    fn(&purse_app::App, Option<purse_core::PartyId>, u32) -> Result<Vec<(purse_core::PartyId, Value)>, ApiError>;

/// A list of a customer's things (`?customer=&limit=`), or of every customer the caller sees.
async fn customer_list(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
    fetch: Fetch,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let customer = params.id("customer")?;
    let body = state
        .read(move |s| {
            let party = purse_app::payments::visible_customer(s, &who, customer)?;
            let data: Vec<Value> = fetch(s, party, limit)?
                .into_iter()
                .filter(|(p, _)| party.is_some() || s.party_of_kind(&who, p.0, false).is_ok())
                .map(|(_, v)| v)
                .collect();
            Ok(json!({ "data": data }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// `GET /v1/refunds/{id}`.
pub async fn get_refund(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let r = s.payments.refund(id)?.ok_or(ApiError::App(purse_app::AppError::NotFound("refund")))?;
            s.party_of_kind(&who, r.party.0, false)
                .map_err(|_| ApiError::App(purse_app::AppError::NotFound("refund")))?;
            refund_view(s, &r)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteBody {
    invoice: u64,
    amount: Option<String>,
    #[serde(default)]
    lines: Vec<String>,
    /// `invoice` (the default), `unallocated`, `balance` or `refund`.
    apply: Option<String>,
    /// With `refund`: the receipt voucher of the payment to refund the credit through.
    receipt: Option<u64>,
    /// Why: required, kept in the audit log.
    reason: String,
}

/// `POST /v1/credit-notes`.
pub async fn create_credit_note(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<CreditNoteBody>,
) -> Result<Response, ApiError> {
    let key = headers.get(crate::idempotency::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let view = state
        .read(move |s| {
            let req = purse_app::credit_notes::CreditNoteRequest {
                invoice: body.invoice,
                amount: body.amount,
                lines: body.lines,
                apply: body.apply,
                receipt: body.receipt,
                reason: body.reason,
            };
            let request = format!("{}:{key}", who.key_id);
            let n = purse_app::credit_notes::issue(s, &who, req, &request)?;
            Ok(purse_app::credit_notes::view(s, &n)?)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &view))
}

/// `GET /v1/credit-notes?customer=&limit=`: newest first.
pub async fn list_credit_notes(state: State<AppState>, who: Caller, params: Params) -> Result<Response, ApiError> {
    customer_list(state, who, params, |s, party, limit| {
        let rows = s.payments.credit_notes(party, limit)?;
        rows.iter().map(|n| Ok((n.party, purse_app::credit_notes::view(s, n)?))).collect()
    })
    .await
}

/// `GET /v1/credit-notes/{id}`.
pub async fn get_credit_note(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let n = purse_app::credit_notes::visible(s, &who, id)?;
            Ok(purse_app::credit_notes::view(s, &n)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// `GET /v1/credit-notes/{id}/pdf`.
pub async fn get_credit_note_pdf(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let (number, pdf) = state
        .read(move |s| {
            let n = purse_app::credit_notes::visible(s, &who, id)?;
            Ok((n.display_number(), purse_app::credit_notes::document(s, &n)?))
        })
        .await?;
    Ok(super::payments::pdf_response(&number, pdf))
}

/// `GET /v1/refunds/{id}/pdf`: the refund receipt.
pub async fn get_refund_pdf(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let (number, pdf) = state
        .read(move |s| {
            let r = purse_app::refunds::visible(s, &who, id)?;
            let reader = s.engine.reader();
            let pdf = purse_app::refunds::document(reader.as_ref(), s.payments.as_ref(), &r)?;
            Ok((r.display_number().unwrap_or_else(|| format!("refund-{id}")), pdf))
        })
        .await?;
    Ok(super::payments::pdf_response(&number, pdf))
}

/// `GET /v1/tax-rates`.
pub async fn list_tax_rates(State(state): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let rates = purse_app::taxes::visible_rates(s, &who)?;
            Ok(json!({ "data": rates.iter().map(purse_app::taxes::rate_json).collect::<Vec<_>>() }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRateBody {
    name: String,
    /// A percentage: `20`, `7.25`.
    percent: String,
    /// Inside the prices (else added to them).
    #[serde(default)]
    inclusive: bool,
    owner: Option<u64>,
}

/// `POST /v1/tax-rates`.
pub async fn create_tax_rate(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<TaxRateBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let made = purse_app::taxes::create_rate(s, &who, &body.name, &body.percent, body.inclusive, body.owner)?;
            Ok(purse_app::taxes::rate_json(&made))
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &view))
}

/// `GET /v1/customers/{id}/tax-settings`.
pub async fn get_customer_tax(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let t = purse_app::taxes::customer_tax(s, &who, id)?;
            Ok(purse_app::taxes::customer_tax_json(s, &t)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// `PUT /v1/customers/{id}/tax-settings`.
pub async fn put_customer_tax(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<purse_app::taxes::TaxSettingsBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let t = purse_app::taxes::put_customer_tax(s, &who, id, &body)?;
            Ok(purse_app::taxes::customer_tax_json(s, &t)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}
