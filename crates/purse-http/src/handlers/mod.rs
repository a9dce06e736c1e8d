//! Request and response types and the handlers, by resource. Request types deny unknown
//! fields; amounts are decimal strings parsed at the currency's scale; times are RFC 3339.
//!
//! Every handler that changes something sends its commands to the engine together with a
//! render function ([`AppState::commit`]): the response is rendered from the commands'
//! results by the writer and stored with them under the request's idempotency key.

pub mod accounts;
pub mod alerts;
pub mod collections;
pub mod credit;
pub mod grants;
pub mod invoices;
pub mod keys;
pub mod parties;
pub mod payments;
pub mod postings;
pub mod rating;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use purse_core::{Account, CommandResult, Currency, Hold, Item, Outcome, Party, PartyKind, Timestamp, Transfer};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::reply;
use crate::AppState;
pub(crate) use purse_app::parse::*;
use purse_app::{AppError, Principal};
pub(crate) use purse_core::time;

fn metadata_value(text: &Option<String>) -> serde_json::Value {
    match text {
        None => serde_json::Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.clone())),
    }
}

/// A JSON body already serialized, with its status.
pub(crate) fn json_parts<T: Serialize>(status: StatusCode, body: &T) -> Result<(StatusCode, Vec<u8>), ApiError> {
    serde_json::to_vec(body)
        .map(|b| (status, b))
        .map_err(|e| ApiError::App(AppError::Internal(format!("serializing: {e}"))))
}

/// The first failure among `results`, or the outcome of the first command.
pub(crate) fn outcome(results: &[CommandResult]) -> Result<Outcome, ApiError> {
    Ok(purse_app::accounts::outcome(results)?)
}

/// 201 for something new, 200 for a replay of a client id used before.
pub(crate) fn created(replayed: bool) -> StatusCode {
    if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

impl AppState {
    /// Runs a blocking store read off the async runtime.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| ApiError::App(AppError::Internal(e.to_string())))?
    }

    /// Sends commands to the engine; `render` turns their results into the response, which
    /// the writer stores with them under the request's idempotency key.
    pub(crate) async fn commit(
        &self,
        ctx: &Ctx,
        items: Vec<Item>,
        render: impl Fn(&[CommandResult]) -> Result<(StatusCode, Vec<u8>), ApiError> + Send + 'static,
    ) -> Result<Response, ApiError> {
        let render = move |results: &[CommandResult]| match render(results) {
            Ok((status, body)) => (status.as_u16(), body),
            Err(e) => {
                let (status, body) = e.parts();
                (status.as_u16(), body)
            }
        };
        let (status, body, replayed) = match &ctx.idempotency {
            Some(idem) => {
                let seal = purse_engine::Seal {
                    api_key: ctx.principal.key_id,
                    key: idem.key.clone(),
                    request_hash: idem.request_hash.clone(),
                    render: Box::new(render),
                    reused: {
                        let (status, body) = ApiError::IdempotencyKeyReused.parts();
                        (status.as_u16(), body)
                    },
                };
                let sealed = self.engine.submit_sealed(items, seal).await?;
                (sealed.status, sealed.body, sealed.replayed)
            }
            None => {
                let (status, body) = render(&self.engine.submit_async(items).await?);
                (status, body, false)
            }
        };
        let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if replayed {
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        Ok(response)
    }
}

// ------------------------------------------------------------------ views

#[derive(Serialize)]
pub struct PartyView {
    pub id: u64,
    pub kind: &'static str,
    pub client_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reseller: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet: Option<u64>,
    pub created_at: String,
}

pub(crate) fn party_view(who: &Principal, p: &Party) -> PartyView {
    let mut view = PartyView {
        id: p.id.0,
        kind: "reseller",
        client_id: who.shown_client_id(&p.client_id),
        name: p.name.clone(),
        reseller: None,
        billing: None,
        currency: None,
        wallet: None,
        created_at: time::format(p.created_at),
    };
    if let PartyKind::Customer { reseller, billing, currency, wallet } = &p.kind {
        view.kind = "customer";
        view.reseller = reseller.map(|r| r.0);
        view.billing = Some(purse_store::codec::billing(*billing));
        view.currency = Some(currency.to_string());
        view.wallet = Some(wallet.0);
    }
    view
}

/// An account with its balance parts, amounts as decimal strings.
#[derive(Serialize)]
pub struct AccountView {
    pub id: u64,
    pub kind: &'static str,
    /// Of a system account: its role (`goodwill`, `write_offs`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_role: Option<&'static str>,
    pub party: Option<u64>,
    /// The wallet a credit subscriber account draws on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    pub currency: String,
    pub status: &'static str,
    /// Posted balance: credits minus debits.
    pub balance: String,
    /// Sum of open holds.
    pub reserved: String,
    /// Consumption posted since the last invoice.
    pub uninvoiced: String,
    pub credit_limit: String,
    pub temporary_increase: Option<TemporaryIncreaseView>,
    /// Balance of the credit subscriber accounts drawing on this one.
    pub children_balance: String,
    /// What can be spent now: balance + children − reserved + credit limit in force.
    pub available: String,
    pub thresholds: Vec<String>,
    pub last_charge_at: Option<String>,
    pub created_at: String,
}

#[derive(Serialize)]
pub struct TemporaryIncreaseView {
    pub amount: String,
    pub valid_until: String,
}

pub(crate) fn account_view(a: &Account, available: i128, currency: Currency) -> AccountView {
    let parent = match a.kind {
        purse_core::AccountKind::SubscriberCredit { parent } => Some(parent.0),
        _ => None,
    };
    AccountView {
        id: a.id.0,
        kind: purse_store::codec::account_kind(a.kind).0,
        system_role: purse_store::codec::account_kind(a.kind).1,
        party: a.party.map(|p| p.0),
        parent,
        currency: a.currency.to_string(),
        status: purse_store::codec::status(a.status),
        balance: currency.format(a.balance),
        reserved: currency.format(a.reserved),
        uninvoiced: currency.format(a.uninvoiced),
        credit_limit: currency.format(a.credit_limit),
        temporary_increase: a.temporary_increase.map(|t| TemporaryIncreaseView {
            amount: currency.format(t.amount),
            valid_until: time::format(t.valid_until),
        }),
        children_balance: currency.format(a.children_balance),
        available: currency.format(clamp(available)),
        thresholds: a.thresholds.iter().map(|t| currency.format(*t)).collect(),
        last_charge_at: a.last_charge_at.map(time::format),
        created_at: time::format(a.created_at),
    }
}

#[derive(Serialize)]
pub struct TransferView {
    pub id: u64,
    pub client_id: String,
    pub kind: &'static str,
    pub debit: u64,
    pub credit: u64,
    pub amount: String,
    pub currency: String,
    pub at: String,
    pub posted_at: String,
    pub service: Option<String>,
    pub metadata: serde_json::Value,
    pub hold: Option<u64>,
    pub reverses: Option<u64>,
    pub overdrawn: bool,
}

pub(crate) fn transfer_view(who: &Principal, t: &Transfer, currency: Currency) -> TransferView {
    TransferView {
        id: t.id.0,
        client_id: who.shown_client_id(&t.client_id),
        kind: t.kind.as_str(),
        debit: t.debit.0,
        credit: t.credit.0,
        amount: currency.format(t.amount),
        currency: t.currency.to_string(),
        at: time::format(t.at),
        posted_at: time::format(t.posted_at),
        service: t.service.clone(),
        metadata: metadata_value(&t.metadata),
        hold: t.hold.map(|h| h.0),
        reverses: t.reverses.map(|r| r.0),
        overdrawn: t.overdrawn,
    }
}

#[derive(Serialize)]
pub struct HoldView {
    pub id: u64,
    pub client_id: String,
    pub account: u64,
    pub amount: String,
    pub currency: String,
    pub created_at: String,
    pub expires_at: String,
    pub state: &'static str,
    pub service: Option<String>,
    pub metadata: serde_json::Value,
    pub resolved_at: Option<String>,
    pub captured: Option<String>,
    pub capture_transfer: Option<u64>,
}

pub(crate) fn hold_view(who: &Principal, h: &Hold, currency: Currency, now: Timestamp) -> HoldView {
    // A hold past its expiry is expired, whether or not a batch has recorded it yet.
    let state = if h.state == purse_core::HoldState::Open && h.expires_at <= now {
        "expired"
    } else {
        purse_store::codec::hold_state(h.state)
    };
    HoldView {
        id: h.id.0,
        client_id: who.shown_client_id(&h.client_id),
        account: h.account.0,
        amount: currency.format(h.amount),
        currency: h.currency.to_string(),
        created_at: time::format(h.created_at),
        expires_at: time::format(h.expires_at),
        state,
        service: h.service.clone(),
        metadata: metadata_value(&h.metadata),
        resolved_at: h.resolution.as_ref().map(|r| time::format(r.at)),
        captured: h.resolution.as_ref().map(|r| currency.format(r.captured)),
        capture_transfer: h.resolution.as_ref().and_then(|r| r.transfer.map(|t| t.0)),
    }
}

// ------------------------------------------------------------------ health and currencies

pub async fn healthz() -> Response {
    reply(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers reads and takes writes. While the last batch failed to
/// reach the store (a lost connection, a full disk), an empty batch probes it again.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let reads = state.read(|s| Ok(s.engine.reader().currencies()?)).await;
    let writes = if state.engine.writable() { Ok(()) } else { state.engine.probe().await };
    match (reads, writes) {
        (Ok(_), Ok(())) => reply(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        (reads, _) => {
            let reason =
                if reads.is_err() { "the database does not answer" } else { "the database does not take writes" };
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "status": "unavailable", "reason": reason }),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCurrency {
    code: String,
    /// Digits after the point; the ISO 4217 exponent when absent.
    scale: Option<u8>,
}

#[derive(Serialize)]
pub struct CurrencyView {
    code: String,
    scale: u8,
}

pub async fn create_currency(
    State(state): State<AppState>,
    ctx: Ctx,
    crate::json::ApiJson(body): crate::json::ApiJson<NewCurrency>,
) -> Result<Response, ApiError> {
    let code = currency_code("code", &body.code)?;
    let scale = body.scale.unwrap_or_else(|| Currency::iso_scale(code));
    let command = purse_core::Command::CreateCurrency { code, scale };
    state
        .commit(&ctx, vec![Item::single(command)], move |results| {
            outcome(results)?;
            json_parts(StatusCode::CREATED, &CurrencyView { code: code.to_string(), scale })
        })
        .await
}

pub async fn list_currencies(State(state): State<AppState>, _: Caller) -> Result<Response, ApiError> {
    let currencies = state.read(|s| Ok(s.engine.reader().currencies()?)).await?;
    let views: Vec<CurrencyView> =
        currencies.into_iter().map(|c| CurrencyView { code: c.code.to_string(), scale: c.scale }).collect();
    Ok(reply(StatusCode::OK, &serde_json::json!({ "data": views })))
}
