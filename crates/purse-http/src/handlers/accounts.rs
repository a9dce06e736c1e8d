//! Accounts: opening, closing (their credit is `credit.rs`'s), and
//! every read of a balance: its parts, spendable now, as of a past time, the journal, and
//! the operator's snapshot of all balances.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::{
    Account, AccountId, AccountKind, Amount, Command, Item, NewAccountKind, Outcome, PartyId, PartyKind, TransferId,
    TransferKind,
};
use purse_store::JournalQuery;
use serde::{Deserialize, Serialize};

use super::{account_view, amount, clamp, created, currency_code, json_parts, outcome, positive, timestamp};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::Ctx;
use crate::json::{json_bytes, reply, ApiJson, Id, Params};
use crate::AppState;
use purse_app::accounts::live;
use purse_app::{AppError, Code};
use purse_core::time;

/// The account as of now: holds that expired since the last batch no longer count, so
/// `reserved` and `available` agree with the spendable query. Blocking.
fn current_view(s: &AppState, a: &Account) -> Result<super::AccountView, ApiError> {
    let (a, available, currency) = live(s, a)?;
    Ok(account_view(&a, available, currency))
}

/// An account as of now (expired holds discounted), its available balance, and its
/// currency: what every view of an account shows. Blocking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    client_id: String,
    party: u64,
    kind: KindText,
    /// Master wallets only (subscriber accounts take their customer's currency).
    currency: Option<String>,
    /// Credit subscriber accounts only: how far below zero it may draw on the wallet.
    credit_limit: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum KindText {
    MasterWallet,
    SubscriberDebit,
    SubscriberCredit,
}

#[derive(Serialize)]
struct Opened {
    id: u64,
    replayed: bool,
}

pub async fn open_account(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewAccount>,
) -> Result<Response, ApiError> {
    let who = ctx.principal;
    let party_id = body.party;
    let party = state
        .read(move |s| {
            s.party_for(&who, party_id).map_err(|_| {
                ApiError::invalid("party", Code::PartyNotFound, format!("party {party_id} does not exist"))
            })
        })
        .await?;
    let kind = match body.kind {
        KindText::MasterWallet => {
            if !purse_app::policy::may_set(who.role, purse_app::policy::Field::MasterWallet) {
                return Err(ApiError::App(AppError::ForbiddenField {
                    field: "kind",
                    message: "only the operator opens master wallets".into(),
                }));
            }
            let text = body.currency.as_deref().ok_or_else(|| {
                ApiError::invalid("currency", Code::MissingField, "a master wallet needs its currency")
            })?;
            NewAccountKind::MasterWallet { currency: currency_code("currency", text)? }
        }
        KindText::SubscriberDebit => NewAccountKind::SubscriberDebit,
        KindText::SubscriberCredit => {
            let PartyKind::Customer { currency, .. } = party.kind else {
                return Err(ApiError::App(AppError::Rejected(purse_core::Rejection::PartyKindMismatch)));
            };
            let currency = state.read(move |s| Ok(s.currency("currency", currency)?)).await?;
            let credit_limit = match &body.credit_limit {
                Some(text) => amount("credit_limit", text, currency)?,
                None => Amount::ZERO,
            };
            NewAccountKind::SubscriberCredit { credit_limit }
        }
    };
    if body.credit_limit.is_some() && !matches!(body.kind, KindText::SubscriberCredit) {
        return Err(ApiError::invalid(
            "credit_limit",
            Code::NotAllowed,
            "only credit subscriber accounts take a credit_limit here",
        ));
    }
    if body.currency.is_some() && !matches!(body.kind, KindText::MasterWallet) {
        return Err(ApiError::invalid(
            "currency",
            Code::NotAllowed,
            "subscriber accounts take their customer's currency",
        ));
    }
    let command = Command::OpenAccount {
        client_id: who.client_id("client_id", &body.client_id)?,
        party: PartyId(party_id),
        kind,
    };
    state
        .commit(&ctx, vec![Item::single(command)], |results| match outcome(results)? {
            Outcome::AccountOpened { account, replayed } => {
                json_parts(created(replayed), &Opened { id: account.0, replayed })
            }
            other => Err(ApiError::App(AppError::Internal(format!("unexpected outcome {other:?}")))),
        })
        .await
}

pub async fn get_account(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| current_view(s, &s.account_for(&who, id)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

/// `GET /v1/accounts?party=ID`: the accounts of a party the caller sees.
pub async fn list_accounts(
    State(state): State<AppState>,
    Caller(who): Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let party =
        params.id("party")?.ok_or_else(|| ApiError::invalid("party", Code::MissingParameter, "party is required"))?;
    let views = state
        .read(move |s| {
            s.party_for(&who, party)?;
            let accounts = s.engine.reader().accounts_of(PartyId(party))?;
            accounts.iter().map(|a| current_view(s, a)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(reply(StatusCode::OK, &serde_json::json!({ "data": views })))
}

pub async fn close_account(State(state): State<AppState>, ctx: Ctx, Id(id): Id) -> Result<Response, ApiError> {
    let who = ctx.principal;
    state.read(move |s| Ok(s.account_for(&who, id)?)).await?;
    let command = Command::CloseAccount { account: AccountId(id) };
    state
        .commit(&ctx, vec![Item::single(command)], move |results| {
            outcome(results)?;
            json_parts(StatusCode::OK, &serde_json::json!({ "id": id, "status": "closed" }))
        })
        .await
}

pub async fn spendable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    params: Params,
) -> Result<Response, ApiError> {
    let price = params.text("price").map(str::to_owned);
    let service = params.text("service").map(str::to_owned);
    let body = state
        .read(move |s| {
            let a = s.account_for(&who, id)?;
            let currency = s.currency("currency", a.currency)?;
            let price = price
                .as_deref()
                .map(|p| amount("price", p, currency).and_then(|p| positive("price", p)))
                .transpose()?;
            let sp = s
                .engine
                .spendable_for(a.id, price, service.as_deref())?
                .ok_or(ApiError::App(AppError::NotFound("account")))?;
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

/// `GET /v1/accounts/{id}/balance?at=...`: the posted balance right after the last posting
/// at or before `at` (now when absent).
pub async fn balance_at(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    params: Params,
) -> Result<Response, ApiError> {
    let at = params.text("at").map(|t| timestamp("at", t)).transpose()?;
    let body = state
        .read(move |s| {
            let a = s.account_for(&who, id)?;
            let currency = s.currency("currency", a.currency)?;
            let now = purse_engine::Clock::now(s.engine.clock().as_ref());
            let at = at.unwrap_or(now);
            let balance = if at >= now { i128::from(a.balance.0) } else { s.engine.reader().balance_at(a.id, at)? };
            Ok(serde_json::json!({
                "account": id,
                "currency": a.currency.to_string(),
                "at": time::format(at),
                "balance": currency.format(clamp(balance)),
            }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// Most postings one journal request reads while filtering, so a filter that matches
/// little cannot make one request walk a whole history; the cursor continues from there.
const JOURNAL_SCAN_MAX: usize = 10_000;

#[derive(Serialize)]
struct JournalEntry {
    #[serde(flatten)]
    transfer: super::TransferView,
    /// Signed from this account's side: negative when it was debited.
    change: String,
    /// This account's balance right after the posting.
    balance_after: String,
    counterparty: u64,
}

/// `GET /v1/accounts/{id}/journal?limit=&before=&from=&to=&kind=`: postings newest first.
/// `from`/`to` bound the posting time (`from` inclusive, `to` exclusive); `kind` is a
/// comma-separated list; `before` is the `next_before` of the previous page.
pub async fn journal(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()? as usize;
    let before = params.id("before")?.map(TransferId);
    let from = params.text("from").map(|t| timestamp("from", t)).transpose()?;
    let to = params.text("to").map(|t| timestamp("to", t)).transpose()?;
    let kinds = match params.text("kind") {
        None => None,
        Some(text) => Some(
            text.split(',')
                .map(|k| {
                    TransferKind::parse(k.trim()).ok_or_else(|| {
                        ApiError::invalid("kind", Code::InvalidKind, format!("kind {k:?} is not one of charge, payment, recharge, transfer, issue, refund, reversal, adjustment"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let body = state
        .read(move |s| {
            let a = s.account_for(&who, id)?;
            let currency = s.currency("currency", a.currency)?;
            let reader = s.engine.reader();
            let mut entries = Vec::new();
            let mut cursor = before;
            let mut scanned = 0;
            let mut exhausted = false;
            'pages: while entries.len() < limit && scanned < JOURNAL_SCAN_MAX {
                let page = reader.journal(JournalQuery { account: a.id, before: cursor, limit: 256 })?;
                if page.is_empty() {
                    exhausted = true;
                    break;
                }
                for t in &page {
                    scanned += 1;
                    cursor = Some(t.id);
                    if from.is_some_and(|f| t.posted_at < f) {
                        exhausted = true; // Older postings only from here on.
                        break 'pages;
                    }
                    let in_range = to.is_none_or(|to| t.posted_at < to);
                    let kind_ok = kinds.as_ref().is_none_or(|ks| ks.contains(&t.kind));
                    if in_range && kind_ok {
                        let debited = t.debit == a.id;
                        let change = if debited { Amount(-t.amount.0) } else { t.amount };
                        entries.push(JournalEntry {
                            transfer: super::transfer_view(&who, t, currency),
                            change: currency.format(change),
                            balance_after: currency.format(if debited { t.debit_balance } else { t.credit_balance }),
                            counterparty: if debited { t.credit.0 } else { t.debit.0 },
                        });
                        if entries.len() == limit {
                            break 'pages;
                        }
                    }
                }
                if page.len() < 256 {
                    exhausted = true;
                    break;
                }
            }
            let next_before = if exhausted && entries.len() < limit { None } else { cursor.map(|c| c.0) };
            Ok(serde_json::json!({ "data": entries, "next_before": next_before }))
        })
        .await?;
    Ok(reply(StatusCode::OK, &body))
}

/// Fields in alphabetical order, as the snapshot has always listed them.
#[derive(Serialize)]
struct SnapshotRow<'a> {
    available: String,
    balance: String,
    currency: &'a str,
    id: u64,
    kind: &'static str,
    party: Option<u64>,
    reserved: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_role: Option<&'static str>,
}

/// Fields in alphabetical order, as the snapshot has always listed them.
#[derive(Serialize, Default)]
struct Totals {
    accounts: u64,
    /// Sum over every account, the operator's system accounts included: always zero.
    all_accounts: String,
    /// Sum over customer, reseller and subscriber accounts: what the operator owes them
    /// (positive) or is owed (negative).
    customer_accounts: String,
    /// Sum of open holds.
    reserved: String,
}

/// The body of `GET /v1/balances`. Each account's row is made as it is written out, so a
/// million accounts cost their JSON, not a copy of every row before it.
#[derive(Serialize)]
struct Snapshot<'a> {
    accounts: SnapshotRows<'a>,
    as_of: String,
    totals: BTreeMap<String, Totals>,
}

struct SnapshotRows<'a> {
    accounts: &'a [Account],
    by_id: std::collections::HashMap<AccountId, &'a Account>,
    currencies: std::collections::HashMap<purse_core::CurrencyCode, (String, purse_core::Currency)>,
    now: purse_core::Timestamp,
}

impl Serialize for SnapshotRows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.accounts.len()))?;
        for a in self.accounts {
            let (code, currency) = self.currencies.get(&a.currency).ok_or_else(|| S::Error::custom("a currency"))?;
            let parent = match a.kind {
                AccountKind::SubscriberCredit { parent } => self.by_id.get(&parent).copied(),
                _ => None,
            };
            let (kind, system_role, _) = purse_store::codec::account_kind(a.kind);
            seq.serialize_element(&SnapshotRow {
                id: a.id.0,
                kind,
                system_role,
                party: a.party.map(|p| p.0),
                currency: code,
                balance: currency.format(a.balance),
                reserved: currency.format(a.reserved),
                available: currency.format(clamp(purse_core::ledger::available(a, parent, self.now))),
            })?;
        }
        seq.end()
    }
}

/// `GET /v1/balances` (operators): every account's balance from one consistent read, with
/// totals per currency.
pub async fn balances(State(state): State<AppState>, _: Caller) -> Result<Response, ApiError> {
    let body = state
        .read(move |s| {
            let now = purse_engine::Clock::now(s.engine.clock().as_ref());
            let accounts = s.engine.reader().accounts()?;
            let mut currencies = std::collections::HashMap::new();
            let mut sums: std::collections::HashMap<purse_core::CurrencyCode, (i128, i128, i128, u64)> =
                std::collections::HashMap::new();
            for a in &accounts {
                if let std::collections::hash_map::Entry::Vacant(new) = currencies.entry(a.currency) {
                    new.insert((a.currency.to_string(), s.currency("currency", a.currency)?));
                }
                let sum = sums.entry(a.currency).or_default();
                sum.0 += i128::from(a.balance.0);
                if !a.is_system() {
                    sum.1 += i128::from(a.balance.0);
                }
                sum.2 += i128::from(a.reserved.0);
                sum.3 += 1;
            }
            let totals: BTreeMap<String, Totals> = sums
                .into_iter()
                .map(|(code, (all, customers, reserved, n))| {
                    let (name, currency) = &currencies[&code];
                    let totals = Totals {
                        all_accounts: currency.format(clamp(all)),
                        customer_accounts: currency.format(clamp(customers)),
                        reserved: currency.format(clamp(reserved)),
                        accounts: n,
                    };
                    (name.clone(), totals)
                })
                .collect();
            let by_id = accounts.iter().map(|a| (a.id, a)).collect();
            let rows = SnapshotRows { accounts: &accounts, by_id, currencies, now };
            serde_json::to_vec(&Snapshot { accounts: rows, as_of: time::format(now), totals })
                .map_err(|e| ApiError::App(AppError::Internal(format!("serializing the balances: {e}"))))
        })
        .await?;
    Ok(json_bytes(StatusCode::OK, body))
}
