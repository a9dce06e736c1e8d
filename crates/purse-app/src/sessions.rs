//! Real-time charging sessions: Purse decides, before a call connects, how long it may last.
//!
//! A session is rated once, when it is authorized (the rate in force then holds for the whole
//! call). Each grant reserves its money with a ledger hold, so sessions on one account share
//! its balance exactly: the ledger refuses any hold the available balance cannot pay for,
//! and a refused grant is computed again from what the refusal says is available.
//! Each update charges what was used since the last one (cumulatively rated, so increments
//! and the minimum apply to the call, not to each slice), then grants the next slice; when
//! money runs out the grant is the last one (`final`). A session not heard from within its
//! time to live is closed by the expiry pass: what was granted (or last reported) is charged.
//!
//! Sessions are rows in the database, written with compare-and-set, so they survive a
//! restart and are shared by every process. Every ledger command a step sends has a client
//! id derived from the session and its sequence number: a step retried after a crash
//! replays instead of charging twice.

use purse_core::rating::Rate;
use purse_core::{
    AccountId, Amount, ClientId, Command, Currency, HoldId, Money, NewCharge, Outcome, Rejection, Role, Timestamp,
};
use purse_store::{SessionQuery, SessionRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::rating::RatedUsage;
use crate::{policy, App, AppError, AppResult, Code, Principal};

/// Units granted per slice unless the request says otherwise (a minute of voice).
pub const SLICE_DEFAULT: u64 = 60;
/// Longest a session may go unheard unless the request says otherwise.
pub const TTL_DEFAULT_S: i64 = 120;
/// Holds outlive the session's expiry by this much, so the expiry pass can still charge them.
const HOLD_GRACE_S: i64 = 600;
/// Attempts at a grant when other sessions take the money in between.
const GRANT_ATTEMPTS: usize = 8;

/// What is charged when a session expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// Everything granted (the switch may have used it all).
    Granted,
    /// What the last update reported.
    Reported,
}

/// A request to authorize a session.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    pub account: u64,
    pub service: String,
    pub destination: Option<String>,
    /// Units per grant (default 60).
    pub slice: Option<u64>,
    /// Most units the whole session may use.
    pub max_units: Option<u64>,
    /// Seconds without an update before Purse closes the session (default 120).
    pub ttl_seconds: Option<i64>,
    pub on_expiry: Option<OnExpiry>,
}

/// An update: the units used so far (cumulative), with the step's sequence number.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub sequence: u64,
    pub used: u64,
}

/// The end: the final units used (cumulative).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    pub used: u64,
    pub sequence: Option<u64>,
}

/// The rate a session was authorized with, kept with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeptRate {
    plan: u64,
    plan_name: String,
    prefix: String,
    price: i64,
    connection_fee: i64,
    minimum: i64,
    first: u32,
    next: u32,
    unit: u32,
    effective_from: i64,
}

impl KeptRate {
    fn rate(&self, service: &str) -> Rate {
        Rate {
            service: service.to_owned(),
            prefix: purse_core::rating::Prefix::parse(&self.prefix)
                .unwrap_or_else(|_| purse_core::rating::Prefix::parse("*").expect("* is a prefix")),
            description: String::new(),
            price: purse_core::rating::Price(self.price),
            connection_fee: purse_core::rating::Price(self.connection_fee),
            minimum: purse_core::rating::Price(self.minimum),
            increments: purse_core::rating::Increments { first: self.first, next: self.next },
            unit: self.unit,
            effective_from: Timestamp(self.effective_from),
        }
    }
}

/// What a session keeps between its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    tenant: i64,
    service: String,
    destination: Option<String>,
    currency: String,
    scale: u8,
    rate: KeptRate,
    slice: u64,
    max_units: u64,
    ttl_s: i64,
    on_expiry: OnExpiry,
    sequence: u64,
    /// Units reported used so far.
    used: u64,
    /// Units granted so far (cumulative).
    granted: u64,
    /// Money charged so far: the rated cost of `used`.
    charged: i64,
    hold: Option<u64>,
    held: i64,
    #[serde(rename = "final")]
    last: bool,
    transfers: Vec<u64>,
    /// The answer to the last step, for a replay.
    answer: Value,
}

impl App {
    fn session_client(&self, state: &State, id: u64, step: &str) -> ClientId {
        let tenant = match state.tenant {
            0 => purse_core::Tenant::Operator,
            t if t > 0 => purse_core::Tenant::Reseller(purse_core::PartyId(t as u64)),
            t => purse_core::Tenant::Customer(purse_core::PartyId(t.unsigned_abs())),
        };
        ClientId::scoped(tenant, &format!("session:{id}:{step}")).expect("a session client id is printable")
    }

    /// Authorizes a session: rates it, grants the first slice the money pays for and
    /// reserves it. `key` (the Idempotency-Key) makes a retry answer the same session.
    pub fn authorize_session(&self, who: &Principal, key: &str, r: Authorize) -> AppResult<(bool, Value)> {
        let account = self.account_field(who, r.account)?;
        let now = self.now();
        let usage = crate::rating::UsageRequest {
            client_id: String::new(),
            account: r.account,
            service: r.service.clone(),
            destination: r.destination.clone(),
            quantity: 1,
            at: None,
        }
        .usage(now)?;
        let slice = r.slice.unwrap_or(SLICE_DEFAULT);
        if slice == 0 || slice > 86_400 {
            return Err(AppError::invalid("slice", Code::InvalidQuantity, "slice must be 1 to 86,400 units"));
        }
        let max_units = r.max_units.unwrap_or(crate::rating::QUANTITY_MAX);
        if max_units == 0 || max_units > crate::rating::QUANTITY_MAX {
            return Err(AppError::invalid("max_units", Code::InvalidQuantity, "max_units must be 1 to 10^12"));
        }
        let ttl_s = r.ttl_seconds.unwrap_or(TTL_DEFAULT_S);
        if !(5..=86_400).contains(&ttl_s) {
            return Err(AppError::invalid("ttl_seconds", Code::InvalidQuantity, "ttl_seconds must be 5 to 86,400"));
        }
        let rated = self.rate_usage(&account, &usage)?;
        let tenant = tenant_number(who.role);
        let state = State {
            tenant,
            service: usage.service.clone(),
            destination: usage.destination.clone(),
            currency: rated.currency.code.to_string(),
            scale: rated.currency.scale,
            rate: kept(&rated),
            slice,
            max_units,
            ttl_s,
            on_expiry: r.on_expiry.unwrap_or(OnExpiry::Granted),
            sequence: 0,
            used: 0,
            granted: 0,
            charged: 0,
            hold: None,
            held: 0,
            last: false,
            transfers: Vec::new(),
            answer: Value::Null,
        };
        let party = account.party.ok_or(AppError::NotFound("account"))?;
        let row = SessionRow {
            id: 0,
            party,
            account: account.id.0,
            status: "authorizing".into(),
            expires_at: Timestamp(now.0 + ttl_s * 1_000_000),
            version: 1,
            state: encode(&state)?,
            created_at: now,
            updated_at: now,
        };
        let (row, _new) = self.rating.create_session(tenant, key, &row)?;
        let mut state: State = decode(&row.state)?;
        if row.status != "authorizing" {
            return answer_of(&row, &state);
        }
        let currency = Currency::new(purse_core::CurrencyCode::parse(&state.currency).map_err(internal)?, state.scale)
            .map_err(internal)?;
        let rate = state.rate.rate(&state.service);
        let wanted = state.slice.min(state.max_units);
        match self.grant(&row, &mut state, &rate, currency, wanted, "0")? {
            true => {
                let expires_at = Timestamp(now.0 + state.ttl_s * 1_000_000);
                state.answer = view(&row, &state, "active", expires_at);
                let row =
                    SessionRow { status: "active".into(), expires_at, state: encode(&state)?, updated_at: now, ..row };
                self.write_session(&row)?;
                Ok((true, state.answer))
            }
            false => {
                let one = rate.cost(u64::from(rate.increments.first), state.scale).amount;
                let available = self.available(AccountId(row.account))?;
                let message = format!(
                    "the available balance ({}) does not pay for the first increment ({} units for {} {})",
                    currency.format(available),
                    rate.increments.first,
                    currency.format(one),
                    currency.code
                );
                state.answer =
                    json!({ "error": { "code": "insufficient_funds", "message": message, "field": "account" } });
                let row = SessionRow { status: "refused".into(), state: encode(&state)?, updated_at: now, ..row };
                self.write_session(&row)?;
                Err(AppError::invalid("account", Code::InsufficientFunds, message))
            }
        }
    }

    fn available(&self, account: AccountId) -> AppResult<Amount> {
        Ok(self.engine.spendable(account, None)?.map_or(Amount::ZERO, |s| s.available))
    }

    /// Grants up to `wanted` more units beyond `state.used` and reserves their money; false
    /// when not even the next increment can be paid. The step's hold has a client id of its
    /// own per amount tried, so a retried step never meets its own earlier attempt.
    fn grant(
        &self,
        row: &SessionRow,
        state: &mut State,
        rate: &Rate,
        currency: Currency,
        wanted: u64,
        step: &str,
    ) -> AppResult<bool> {
        let account = AccountId(row.account);
        let mut available = self.available(account)?;
        for _ in 0..GRANT_ATTEMPTS {
            let Some((units, need)) = rate.grant(state.used, wanted, available, currency.scale) else {
                return Ok(false);
            };
            if need.0 == 0 {
                let units = units.min(state.max_units.saturating_sub(state.used));
                state.granted = state.used + units;
                state.hold = None;
                state.held = 0;
                state.last = units < wanted || state.granted >= state.max_units;
                return Ok(true);
            }
            let command = Command::Hold {
                client_id: self.session_client(state, row.id, &format!("{step}:h:{}", need.0)),
                account,
                money: Money { amount: need, currency: currency.code },
                expires_at: Timestamp(self.now().0 + (state.ttl_s + HOLD_GRACE_S) * 1_000_000),
                service: Some(state.service.clone()),
                metadata: Some(json!({ "session": row.id }).to_string()),
            };
            match self.engine.execute(command)? {
                Ok(Outcome::HoldPlaced { hold, .. }) => {
                    // A slice ends on a billing boundary, but never past the session's cap.
                    let units = units.min(state.max_units.saturating_sub(state.used));
                    state.granted = state.used + units;
                    state.hold = Some(hold.0);
                    state.held = need.0;
                    state.last = units < wanted || state.granted >= state.max_units;
                    return Ok(true);
                }
                Ok(other) => return Err(AppError::Internal(format!("unexpected outcome {other:?}"))),
                Err(Rejection::InsufficientFunds { available: now_available }) => available = now_available,
                Err(r) => return Err(AppError::Rejected(r)),
            }
        }
        Err(AppError::Overloaded)
    }

    /// Charges `used` (cumulative) so far: what it costs beyond what was charged, from the
    /// step's hold (the rest is released) and, past the grant, as a charge of its own.
    fn settle(&self, row: &SessionRow, state: &mut State, used: u64, step: &str) -> AppResult<()> {
        let rate = state.rate.rate(&state.service);
        let cost = rate.cost(used, state.scale).amount.0;
        let due = cost - state.charged;
        let currency = purse_core::CurrencyCode::parse(&state.currency).map_err(internal)?;
        let from_hold = due.min(state.held).max(0);
        if let Some(hold) = state.hold.take() {
            let command = if from_hold > 0 {
                Command::Capture {
                    client_id: self.session_client(state, row.id, &format!("{step}:c")),
                    hold: HoldId(hold),
                    amount: Some(Amount(from_hold)),
                }
            } else {
                Command::Release {
                    client_id: self.session_client(state, row.id, &format!("{step}:r")),
                    hold: HoldId(hold),
                }
            };
            match self.engine.execute(command)? {
                Ok(Outcome::HoldCaptured { transfer, .. }) => state.transfers.push(transfer.0),
                Ok(_) | Err(Rejection::HoldAlreadyResolved { .. }) => {}
                Err(Rejection::HoldExpired) if from_hold == 0 => {}
                Err(r) => return Err(AppError::Rejected(r)),
            }
        }
        state.held = 0;
        let beyond = due - from_hold;
        if beyond > 0 {
            let command = Command::Charge(NewCharge {
                client_id: self.session_client(state, row.id, &format!("{step}:x")),
                account: AccountId(row.account),
                money: Money { amount: Amount(beyond), currency },
                service: Some(state.service.clone()),
                at: None,
                metadata: Some(json!({ "session": row.id, "beyond_grant": true }).to_string()),
                refuse_if_insufficient: false,
            });
            match self.engine.execute(command)? {
                Ok(Outcome::Posted { transfer, .. }) => state.transfers.push(transfer.0),
                Ok(other) => return Err(AppError::Internal(format!("unexpected outcome {other:?}"))),
                Err(r) => return Err(AppError::Rejected(r)),
            }
        }
        state.used = used;
        state.charged = cost.max(state.charged);
        Ok(())
    }

    /// The session `id`, if the caller sees it.
    fn session_for(&self, who: &Principal, id: u64) -> AppResult<(SessionRow, State)> {
        let row = self.rating.session(id)?.ok_or(AppError::NotFound("session"))?;
        let sees = self.ask(|reseller_of| policy::sees_owner(who.role, Some(row.party), reseller_of))?;
        if !sees {
            return Err(AppError::NotFound("session"));
        }
        let state = decode(&row.state)?;
        Ok((row, state))
    }

    /// Charges what was used since the last step and grants the next slice.
    pub fn update_session(&self, who: &Principal, id: u64, u: Update) -> AppResult<Value> {
        let (row, mut state) = self.session_for(who, id)?;
        if u.sequence == state.sequence && u.sequence > 0 {
            return Ok(state.answer);
        }
        if row.status != "active" {
            return Err(ended(&row));
        }
        if u.sequence < state.sequence {
            return Err(AppError::invalid(
                "sequence",
                Code::StaleSequence,
                format!("sequence: {} is older than the session's last step ({})", u.sequence, state.sequence),
            ));
        }
        if u.used > crate::rating::QUANTITY_MAX {
            return Err(crate::rating::quantity_error("used", u.used));
        }
        if u.used < state.used {
            return Err(AppError::invalid(
                "used",
                Code::InvalidQuantity,
                format!("used: {} is less than already reported ({}); used counts from the start", u.used, state.used),
            ));
        }
        let step = u.sequence.to_string();
        self.settle(&row, &mut state, u.used, &step)?;
        let rate = state.rate.rate(&state.service);
        let currency = Currency::new(purse_core::CurrencyCode::parse(&state.currency).map_err(internal)?, state.scale)
            .map_err(internal)?;
        let left = state.max_units.saturating_sub(state.used);
        let wanted = state.slice.min(left);
        let granted = wanted > 0 && self.grant(&row, &mut state, &rate, currency, wanted, &step)?;
        if !granted {
            state.granted = state.used;
            state.last = true;
        }
        state.sequence = u.sequence;
        let now = self.now();
        let expires_at = Timestamp(now.0 + state.ttl_s * 1_000_000);
        state.answer = view(&row, &state, "active", expires_at);
        let new = SessionRow { expires_at, state: encode(&state)?, updated_at: now, ..row.clone() };
        if !self.rating.update_session(&new, row.version)? {
            return Err(busy());
        }
        Ok(state.answer)
    }

    /// Ends a session with its final usage: the exact charge is posted, the rest released.
    pub fn terminate_session(&self, who: &Principal, id: u64, t: Terminate) -> AppResult<Value> {
        let (row, state) = self.session_for(who, id)?;
        if row.status == "ended" {
            return Ok(state.answer);
        }
        if row.status != "active" {
            return Err(ended(&row));
        }
        if t.used > crate::rating::QUANTITY_MAX {
            return Err(crate::rating::quantity_error("used", t.used));
        }
        if t.used < state.used {
            return Err(AppError::invalid(
                "used",
                Code::InvalidQuantity,
                format!("used: {} is less than already reported ({}); used counts from the start", t.used, state.used),
            ));
        }
        self.close(row, state, t.used, "ended").map(|(_, v)| v)
    }

    fn close(&self, row: SessionRow, mut state: State, used: u64, status: &str) -> AppResult<(SessionRow, Value)> {
        self.settle(&row, &mut state, used, "end")?;
        state.granted = state.used;
        state.last = true;
        let now = self.now();
        state.answer = view(&row, &state, status, now);
        let new = SessionRow {
            status: status.into(),
            expires_at: now,
            state: encode(&state)?,
            updated_at: now,
            ..row.clone()
        };
        if !self.rating.update_session(&new, row.version)? {
            return Err(busy());
        }
        Ok((new, state.answer))
    }

    pub fn get_session(&self, who: &Principal, id: u64) -> AppResult<Value> {
        let (row, state) = self.session_for(who, id)?;
        Ok(view(&row, &state, &row.status, row.expires_at))
    }

    /// Sessions the caller sees, newest first; `customer` narrows to one.
    pub fn list_sessions(&self, who: &Principal, customer: Option<u64>, active_only: bool) -> AppResult<Vec<Value>> {
        let party = match (who.role, customer) {
            (_, Some(c)) => Some(self.party_for(who, c)?.id),
            (Role::Customer(c), None) => Some(c),
            _ => None,
        };
        let rows = self.rating.sessions(&SessionQuery { party, active_only, limit: 200 })?;
        let mut out = Vec::new();
        for row in rows {
            if self.ask(|reseller_of| policy::sees_owner(who.role, Some(row.party), reseller_of))? {
                let state: State = decode(&row.state)?;
                out.push(view(&row, &state, &row.status, row.expires_at));
            }
        }
        Ok(out)
    }

    /// Closes every active session not heard from within its time to live: charges what
    /// was granted (or last reported) and reports each (webhook `session.expired`).
    /// Returns the sessions closed.
    pub fn expire_sessions(&self) -> AppResult<Vec<(SessionRow, Value)>> {
        let now = self.now();
        let mut closed = Vec::new();
        for row in self.rating.expired_sessions(now, 200)? {
            let state: State = decode(&row.state)?;
            let used = match state.on_expiry {
                OnExpiry::Granted => state.granted.max(state.used),
                OnExpiry::Reported => state.used,
            };
            match self.close(row, state, used, "expired") {
                Ok(done) => closed.push(done),
                Err(AppError::Invalid { code: Code::SessionBusy, .. }) => {} // another process closed it
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }
}

fn kept(r: &RatedUsage) -> KeptRate {
    KeptRate {
        plan: r.plan.id,
        plan_name: r.plan.name.clone(),
        prefix: r.rate.prefix.as_str().to_owned(),
        price: r.rate.price.0,
        connection_fee: r.rate.connection_fee.0,
        minimum: r.rate.minimum.0,
        first: r.rate.increments.first,
        next: r.rate.increments.next,
        unit: r.rate.unit,
        effective_from: r.rate.effective_from.0,
    }
}

/// A tenant as a number for the session's key: 0 the operator, +id a reseller, −id a customer.
fn tenant_number(role: Role) -> i64 {
    match role {
        Role::Operator => 0,
        Role::Reseller(p) => p.0 as i64,
        Role::Customer(p) => -(p.0 as i64),
    }
}

fn encode(state: &State) -> AppResult<String> {
    serde_json::to_string(state).map_err(internal)
}

fn decode(text: &str) -> AppResult<State> {
    serde_json::from_str(text).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("session: {e}"))
}

fn busy() -> AppError {
    AppError::invalid("sequence", Code::SessionBusy, "sequence: another step of this session is under way; retry it")
}

fn ended(row: &SessionRow) -> AppError {
    AppError::invalid("session", Code::SessionEnded, format!("session: the session is {}", row.status))
}

/// A replayed authorization: the first answer again (or its refusal).
fn answer_of(row: &SessionRow, state: &State) -> AppResult<(bool, Value)> {
    if row.status == "refused" {
        let message = state.answer["error"]["message"].as_str().unwrap_or("insufficient funds").to_owned();
        return Err(AppError::invalid("account", Code::InsufficientFunds, message));
    }
    Ok((
        false,
        if state.answer.is_null() { view(row, state, &row.status, row.expires_at) } else { state.answer.clone() },
    ))
}

fn view(row: &SessionRow, state: &State, status: &str, expires_at: Timestamp) -> Value {
    let money = |units: i64| purse_core::money::format_units(units, state.scale);
    json!({
        "id": row.id,
        "customer": row.party.0,
        "account": row.account,
        "status": status,
        "service": state.service,
        "destination": state.destination,
        "currency": state.currency,
        "rate": {
            "plan": state.rate.plan_name,
            "prefix": state.rate.prefix,
            "price": purse_core::rating::Price(state.rate.price).format(state.scale),
            "increments": format!("{}/{}", state.rate.first, state.rate.next),
            "unit": state.rate.unit,
        },
        "sequence": state.sequence,
        "used": state.used,
        "granted": state.granted,
        "grant": state.granted.saturating_sub(state.used),
        "final": state.last,
        "charged": money(state.charged),
        "reserved": money(state.held),
        "transfers": state.transfers,
        "expires_at": purse_core::time::format(expires_at),
        "started_at": purse_core::time::format(row.created_at),
    })
}

impl App {
    fn write_session(&self, row: &SessionRow) -> AppResult<()> {
        let current = self.rating.session(row.id)?.ok_or(AppError::NotFound("session"))?;
        if !self.rating.update_session(row, current.version)? {
            return Err(busy());
        }
        Ok(())
    }
}
