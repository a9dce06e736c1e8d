//! Auto-recharge and payments: a customer's recharge settings (seed 000's Balance Details,
//! seed 004's payment settings), saving a card, Pay Now (seed 002), the recharges made, and
//! top-up invoices with the payment that settles each.
//!
//! Pay Now and an invoice's payment move money, so they carry an Idempotency-Key; each is
//! made idempotent by its own id (the key is the Pay Now's `request_key`, the invoice's
//! payment posts with the client id `invoice:{id}`), so a retry answers the first outcome.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::{idempotency, AppState};
use purse_app::alerts::sync_levels;
use purse_app::payments::*;
use purse_app::{AppError, Principal};

pub async fn get_recharge_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let (party, c) = customer(s, &who, id)?;
            let mut view = settings_view(s, &party, &c)?;
            // What the caps allow now: not part of the settings (nor of their audit entries).
            view["caps"] = caps_view(s, &party, &c)?;
            Ok(view)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn put_recharge_settings(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<RechargeBody>,
) -> Result<Response, ApiError> {
    let (party, c) = state
        .read(move |s| {
            let (party, c) = customer(s, &who, id)?;
            save_settings(s, &who, &party, &c, body)?;
            Ok((party, c))
        })
        .await?;
    state.read(move |s| Ok(sync_levels(s, None, Some(party.id))?)).await?;
    let view = state.read(move |s| Ok(settings_view(s, &party, &c)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn save_card(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<CardBody>,
) -> Result<Response, ApiError> {
    let details = card_details(&body)?;
    let view = state
        .read(move |s| {
            let (party, c) = customer(s, &who, id)?;
            saved_card(s, &who, &party, &c, &details)?;
            Ok(settings_view(s, &party, &c)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn create_pay_now(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    Id(id): Id,
    ApiJson(body): ApiJson<PayNowBody>,
) -> Result<Response, ApiError> {
    let key = headers.get(idempotency::HEADER).and_then(|v| v.to_str().ok()).map(|k| format!("{}:{k}", who.key_id));
    let auto = body.auto_recharge.is_some();
    let (done, c) = state.read(move |s| Ok(pay_now(s, &who, id, body, key)?)).await?;
    if auto {
        state.read(move |s| Ok(sync_levels(s, None, Some(done.party))?)).await?;
    }
    Ok(reply(StatusCode::CREATED, &recharge_view(&done, &c)))
}

pub async fn list_recharges(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let customer_id = params.id("customer")?;
    let data = state
        .read(move |s| {
            let party = visible_customer(s, &who, customer_id)?;
            let list = s.payments.recharges(party, limit)?;
            let mut out = Vec::new();
            for r in list {
                if party.is_none() && !sees(s, &who, r.party)? {
                    continue;
                }
                out.push(recharge_view(&r, &s.currency("currency", r.currency)?));
            }
            Ok(out)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

/// Reads up to `limit` documents of a customer (all customers' when none), newest first.
type Rows<T> = fn(&AppState, Option<purse_core::PartyId>, u32) -> Result<Vec<T>, ApiError>;
/// A document's owner and how it is shown.
type View<T> = fn(&AppState, &T) -> Result<(purse_core::PartyId, Value), ApiError>;

/// A list of a customer's documents (`?customer=&limit=`), newest first: what `rows` reads,
/// kept to what the caller sees, each shown by `view`.
pub(crate) async fn list_of<T: 'static>(
    state: AppState,
    who: Principal,
    params: Params,
    rows: Rows<T>,
    view: View<T>,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let customer_id = params.id("customer")?;
    let data = state
        .read(move |s| {
            let party = visible_customer(s, &who, customer_id)?;
            let mut out = Vec::new();
            for row in rows(s, party, limit)? {
                let (owner, shown) = view(s, &row)?;
                if party.is_some() || sees(s, &who, owner)? {
                    out.push(shown);
                }
            }
            Ok(out)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

/// `GET /v1/receipts/{id}`: a payment's receipt with its allocations.
pub async fn get_receipt(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let r = s
                .payments
                .receipt(id)?
                .filter(|r| sees(s, &who, r.party).unwrap_or(false))
                .ok_or(ApiError::App(AppError::NotFound("receipt")))?;
            Ok(receipt_view(s, &r)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn list_receipts(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    list_of(state, who, params, |s, p, n| Ok(s.payments.receipts(p, n)?), |s, r| Ok((r.party, receipt_view(s, r)?)))
        .await
}

pub async fn get_receipt_pdf(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let (r, pdf) = state.read(move |s| Ok(visible_receipt(s, &who, id)?)).await?;
    Ok(pdf_response(&r.display_number(), pdf))
}

pub async fn send_receipt(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let (r, to) = email_receipt(s, &who, id)?;
            let mut view = receipt_view(s, &r)?;
            view["emailed_to"] = json!(to);
            Ok(view)
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// A PDF download named `{name}.pdf`.
pub(crate) fn pdf_response(name: &str, bytes: Vec<u8>) -> Response {
    use axum::response::IntoResponse;
    let disposition = format!("attachment; filename=\"{name}.pdf\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/pdf".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}
