//! Request and response types and the handlers. Request types deny unknown fields; amounts
//! are decimal strings parsed at the account's currency scale; times are RFC 3339.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::{
    Account, AccountId, AccountKind, Amount, Billing, ClientId, Command, CommandResult, Currency,
    CurrencyCode, Item, Money, NewCharge, Outcome, PartyId, PaymentMethod,
};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::json::{reply, ApiJson};
use crate::{time, AppState};

/// Most items in one `POST /v1/charges/batch`.
pub const BATCH_ITEMS_MAX: usize = 8192;

// ------------------------------------------------------------------ shared helpers

fn client_id(text: &str) -> Result<ClientId, ApiError> {
    ClientId::new(text).ok_or_else(|| {
        ApiError::invalid("client_id", "invalid_client_id", "must be 1 to 128 printable characters")
    })
}

fn currency_code(field: &str, text: &str) -> Result<CurrencyCode, ApiError> {
    CurrencyCode::parse(text).map_err(|e| ApiError::invalid(field, "invalid_currency", format!("{field} {e}")))
}

/// Parses `text` as an amount of `currency`, naming `field` on failure.
fn amount(field: &str, text: &str, currency: Currency) -> Result<Amount, ApiError> {
    currency.parse(text).map_err(|e| ApiError::invalid(field, "invalid_amount", format!("{field} {e}")))
}

fn object_metadata(value: Option<serde_json::Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(ApiError::invalid("metadata", "invalid_metadata", "metadata must be a JSON object")),
    }
}

impl AppState {
    /// Runs a blocking store read off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state)).await.map_err(|e| ApiError::Internal(e.to_string()))?
    }

    /// The currency named by `code`, as the ledger knows it.
    fn currency(&self, field: &str, code: CurrencyCode) -> Result<Currency, ApiError> {
        let currencies = self.engine.reader().currencies()?;
        currencies.into_iter().find(|c| c.code == code).ok_or_else(|| {
            ApiError::invalid(field, "currency_unknown", format!("currency {code} is not configured"))
        })
    }

    fn account(&self, id: u64) -> Result<Account, ApiError> {
        self.engine.reader().account(AccountId(id))?.ok_or(ApiError::NotFound("account"))
    }

    async fn run(&self, command: Command) -> Result<Outcome, ApiError> {
        let mut results = self.engine.submit_async(vec![Item::single(command)]).await?;
        results.pop().expect("one result per item").map_err(ApiError::Rejected)
    }
}

// ------------------------------------------------------------------ health

pub async fn healthz() -> Response {
    reply(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.read(|s| Ok(s.engine.reader().currencies()?)).await {
        Ok(_) => reply(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "status": "unavailable" })),
    }
}

// ------------------------------------------------------------------ currencies

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

pub async fn create_currency(State(state): State<AppState>, ApiJson(body): ApiJson<NewCurrency>) -> Result<Response, ApiError> {
    let code = currency_code("code", &body.code)?;
    let scale = body.scale.unwrap_or_else(|| Currency::iso_scale(code));
    state.run(Command::CreateCurrency { code, scale }).await?;
    Ok(reply(StatusCode::CREATED, &CurrencyView { code: body.code, scale }))
}

pub async fn list_currencies(State(state): State<AppState>) -> Result<Response, ApiError> {
    let currencies = state.read(|s| Ok(s.engine.reader().currencies()?)).await?;
    let views: Vec<CurrencyView> =
        currencies.into_iter().map(|c| CurrencyView { code: c.code.to_string(), scale: c.scale }).collect();
    Ok(reply(StatusCode::OK, &serde_json::json!({ "data": views })))
}

// ------------------------------------------------------------------ customers

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    client_id: String,
    name: String,
    reseller: Option<u64>,
    billing: BillingText,
    currency: String,
    credit_limit: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum BillingText {
    Prepaid,
    Postpaid,
}

pub async fn create_customer(State(state): State<AppState>, ApiJson(body): ApiJson<NewCustomer>) -> Result<Response, ApiError> {
    let code = currency_code("currency", &body.currency)?;
    let currency = state.read(move |s| s.currency("currency", code)).await?;
    let credit_limit = match &body.credit_limit {
        Some(text) => amount("credit_limit", text, currency)?,
        None => Amount::ZERO,
    };
    let billing = match body.billing {
        BillingText::Prepaid => Billing::Prepaid,
        BillingText::Postpaid => Billing::Postpaid,
    };
    let command = Command::CreateCustomer {
        client_id: client_id(&body.client_id)?,
        name: body.name,
        reseller: body.reseller.map(PartyId),
        billing,
        currency: code,
        credit_limit,
    };
    match state.run(command).await? {
        Outcome::PartyCreated { party, wallet, replayed } => {
            let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
            Ok(reply(status, &serde_json::json!({ "id": party.0, "wallet": wallet.map(|w| w.0), "replayed": replayed })))
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

// ------------------------------------------------------------------ accounts

/// An account with its balance parts, amounts as decimal strings.
#[derive(Serialize)]
pub struct AccountView {
    id: u64,
    kind: &'static str,
    party: Option<u64>,
    currency: String,
    status: &'static str,
    balance: String,
    reserved: String,
    credit_limit: String,
    temporary_increase: Option<TemporaryIncreaseView>,
    available: String,
    last_charge_at: Option<String>,
}

#[derive(Serialize)]
struct TemporaryIncreaseView {
    amount: String,
    valid_until: String,
}

fn account_view(a: &Account, parent: Option<&Account>, currency: Currency, now: purse_core::Timestamp) -> AccountView {
    let available = purse_core::ledger::available(a, parent, now);
    let clamp = |v: i128| Amount(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
    AccountView {
        id: a.id.0,
        kind: purse_store::codec::account_kind(a.kind).0,
        party: a.party.map(|p| p.0),
        currency: a.currency.to_string(),
        status: purse_store::codec::status(a.status),
        balance: currency.format(a.balance),
        reserved: currency.format(a.reserved),
        credit_limit: currency.format(a.credit_limit),
        temporary_increase: a.temporary_increase.map(|t| TemporaryIncreaseView {
            amount: currency.format(t.amount),
            valid_until: time::format(t.valid_until),
        }),
        available: currency.format(clamp(available)),
        last_charge_at: a.last_charge_at.map(time::format),
    }
}

pub async fn get_account(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let now = purse_engine::Clock::now(s.engine.clock().as_ref());
            let a = s.account(id)?;
            let parent = match a.kind {
                AccountKind::SubscriberCredit { parent } => Some(s.account(parent.0)?),
                _ => None,
            };
            let currency = s.currency("currency", a.currency)?;
            let mut view = account_view(&a, parent.as_ref(), currency, now);
            // The same figure the spendable query gives, expired holds discounted.
            if let Some(sp) = s.engine.spendable(a.id, None)? {
                view.available = currency.format(sp.available);
            }
            Ok(view)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendableQuery {
    price: Option<String>,
}

pub async fn spendable(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(query): Query<SpendableQuery>,
) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let a = s.account(id)?;
            let currency = s.currency("currency", a.currency)?;
            let price = query.price.as_deref().map(|p| amount("price", p, currency)).transpose()?;
            if price.is_some_and(|p| !p.is_positive()) {
                return Err(ApiError::invalid("price", "amount_must_be_positive", "price must be positive"));
            }
            let sp = s.engine.spendable(a.id, price)?.ok_or(ApiError::NotFound("account"))?;
            Ok(serde_json::json!({
                "account": id,
                "currency": a.currency.to_string(),
                "available": currency.format(sp.available),
                "units": sp.units,
            }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

// ------------------------------------------------------------------ charges and payments

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

#[derive(Serialize)]
pub struct Posted {
    transfer: u64,
    overdrawn: bool,
    replayed: bool,
}

/// Turns a charge request into a command, checking everything the edge can check.
fn charge_command(s: &AppState, r: ChargeRequest) -> Result<Command, ApiError> {
    let code = currency_code("currency", &r.currency)?;
    let account = s.account(r.account).map_err(|_| {
        ApiError::invalid("account", "account_not_found", format!("account {} does not exist", r.account))
    })?;
    if account.currency != code {
        return Err(ApiError::Rejected(purse_core::Rejection::CurrencyMismatch { expected: account.currency, actual: code }));
    }
    let currency = s.currency("currency", code)?;
    let at = match &r.at {
        Some(text) => Some(time::parse(text).ok_or_else(|| {
            ApiError::invalid("at", "invalid_time", "at must be an RFC 3339 date-time such as 2026-11-22T10:15:30Z")
        })?),
        None => None,
    };
    Ok(Command::Charge(NewCharge {
        client_id: client_id(&r.client_id)?,
        account: AccountId(r.account),
        money: Money { amount: amount("amount", &r.amount, currency)?, currency: code },
        service: r.service,
        at,
        metadata: object_metadata(r.metadata)?,
        refuse_if_insufficient: r.refuse_if_insufficient,
    }))
}

fn posted(outcome: Outcome) -> Result<(StatusCode, Posted), ApiError> {
    match outcome {
        Outcome::Posted { transfer, overdrawn, replayed } => {
            let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Posted { transfer: transfer.0, overdrawn, replayed }))
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn create_charge(State(state): State<AppState>, ApiJson(body): ApiJson<ChargeRequest>) -> Result<Response, ApiError> {
    let command = state.read(move |s| charge_command(s, body)).await?;
    let (status, body) = posted(state.run(command).await?)?;
    Ok(reply(status, &body))
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
        ApiError::Rejected(r) => (r.code().to_owned(), r.to_string(), r.field().map(str::to_owned)),
        ApiError::InvalidField { field, code, message } => (code.to_owned(), message, Some(field)),
        other => ("internal".to_owned(), format!("{other:?}"), None),
    };
    ItemResult::Failed { error: serde_json::json!({ "code": code, "message": message, "field": field }) }
}

pub async fn create_charge_batch(State(state): State<AppState>, ApiJson(body): ApiJson<ChargeBatch>) -> Result<Response, ApiError> {
    if body.items.is_empty() || body.items.len() > BATCH_ITEMS_MAX {
        return Err(ApiError::invalid("items", "batch_size", format!("items must hold 1 to {BATCH_ITEMS_MAX} charges")));
    }
    // Items that fail at the edge get their error; the rest go to the engine in one request.
    let prepared: Vec<Result<Command, ApiError>> =
        state.read(move |s| Ok(body.items.into_iter().map(|r| charge_command(s, r)).collect())).await?;
    let commands: Vec<Item> = prepared.iter().filter_map(|p| p.as_ref().ok()).cloned().map(Item::single).collect();
    let mut results: std::vec::IntoIter<CommandResult> = if commands.is_empty() {
        Vec::new().into_iter()
    } else {
        state.engine.submit_async(commands).await?.into_iter()
    };
    let items: Vec<ItemResult> = prepared
        .into_iter()
        .map(|p| match p {
            Err(e) => item_error(e),
            Ok(_) => match results.next().expect("one result per submitted item") {
                Ok(outcome) => match posted(outcome) {
                    Ok((_, posted)) => ItemResult::Posted(posted),
                    Err(e) => item_error(e),
                },
                Err(r) => item_error(ApiError::Rejected(r)),
            },
        })
        .collect();
    Ok(reply(StatusCode::OK, &serde_json::json!({ "results": items })))
}

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

pub async fn create_payment(State(state): State<AppState>, ApiJson(r): ApiJson<PaymentRequest>) -> Result<Response, ApiError> {
    let command = state
        .read(move |s| {
            let code = currency_code("currency", &r.currency)?;
            let currency = s.currency("currency", code)?;
            let method = match r.method {
                MethodText::Card => PaymentMethod::Card,
                MethodText::Cash => PaymentMethod::Cash,
                MethodText::BankTransfer => PaymentMethod::BankTransfer,
                MethodText::Cheque => PaymentMethod::Cheque,
            };
            Ok(Command::Payment {
                client_id: client_id(&r.client_id)?,
                account: AccountId(r.account),
                money: Money { amount: amount("amount", &r.amount, currency)?, currency: code },
                method,
                metadata: object_metadata(r.metadata)?,
            })
        })
        .await?;
    let (status, body) = posted(state.run(command).await?)?;
    Ok(reply(status, &body))
}
