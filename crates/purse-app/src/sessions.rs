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
    AccountId, Amount, ClientId, Command, CommandResult, HoldId, Item, Money, NewCharge, Outcome, Rejection, Role,
    Timestamp,
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
/// Most sessions one process remembers (a bound, not a tuning knob).
const LIVE_SESSIONS_MAX: usize = 1_000_000;
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
    #[serde(default)]
    description: String,
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
    /// The session's name in its commands' client ids (a hash of the authorizing request's key).
    reference: String,
    service: String,
    destination: Option<String>,
    currency: String,
    scale: u8,
    rate: KeptRate,
    /// The rate the customer's reseller pays, when it pays by a plan.
    #[serde(default)]
    reseller_rate: Option<KeptRate>,
    /// What the usage charged so far costs the reseller.
    #[serde(default)]
    reseller_cost: i64,
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
    fn session_client(&self, state: &State, step: &str) -> ClientId {
        let tenant = match state.tenant {
            0 => purse_core::Tenant::Operator,
            t if t > 0 => purse_core::Tenant::Reseller(purse_core::PartyId(t as u64)),
            t => purse_core::Tenant::Customer(purse_core::PartyId(t.unsigned_abs())),
        };
        ClientId::scoped(tenant, &format!("session:{}:{step}", state.reference))
            .expect("a session client id is printable")
    }

    /// Authorizes a session: rates it, grants the first slice the money pays for and
    /// reserves it. `key` (the caller's Idempotency-Key) makes a retry answer the same session.
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
            return Err(AppError::invalid("max_units", Code::InvalidQuantity, "must be 1 to 10^12"));
        }
        let ttl_s = r.ttl_seconds.unwrap_or(TTL_DEFAULT_S);
        if !(5..=86_400).contains(&ttl_s) {
            return Err(AppError::invalid("ttl_seconds", Code::InvalidQuantity, "must be 5 to 86,400 seconds"));
        }
        let tenant = tenant_number(who.role);
        let rated = self.rate_usage(&account, &usage)?;
        let state = State {
            tenant,
            reference: reference(tenant, key),
            service: usage.service.clone(),
            destination: usage.destination.clone(),
            currency: rated.currency.code.to_string(),
            scale: rated.currency.scale,
            rate: kept(&rated, &rated.rate),
            reseller_rate: rated.reseller_rate.as_ref().map(|r| kept(&rated, r)),
            reseller_cost: 0,
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
        let template = SessionRow {
            id: 0,
            party,
            account: account.id.0,
            status: String::new(),
            expires_at: now,
            version: 1,
            state: String::new(),
            created_at: now,
            updated_at: now,
        };
        let wanted = slice.min(max_units);
        let written = match self.step(&template, state, 0, wanted, "0", Persist::Create { tenant, key: key.to_owned() })
        {
            Ok(written) => written,
            // A twin of this request made the session first: its answer.
            Err(AppError::Invalid { code: Code::SessionBusy, .. }) => {
                let row = self.rating.session_by_key(tenant, key)?.ok_or_else(busy)?;
                return answer_of(&row, &decode(&row.state)?);
            }
            Err(e) => return Err(e),
        };
        answer_of(&written, &decode(&written.state)?).map(|(_, answer)| (true, answer))
    }

    /// One step of a session: charges what `used` (cumulative) costs beyond what was charged
    /// (from the step's hold, whose rest is released, and past the grant as a charge of its
    /// own), grants up to `wanted` more units the money pays for and reserves them with a
    /// hold, and writes the session as it then is, in the ledger's transaction: the
    /// session and its money change together or not at all. Every command's client id is the
    /// session's and the step's, so a retried step replays; a hold's also names its amount.
    ///
    /// The whole slice is asked for first: most accounts pay for it, and a refusal says what
    /// is available once this step's charges are posted (the ledger applies a batch in
    /// order), so the grant is computed again from that, the step's charges already made.
    fn step(
        &self,
        row: &SessionRow,
        mut state: State,
        used: u64,
        wanted: u64,
        step: &str,
        persist: Persist,
    ) -> AppResult<SessionRow> {
        let rate = state.rate.rate(&state.service);
        let currency = purse_core::CurrencyCode::parse(&state.currency).map_err(internal)?;
        let account = AccountId(row.account);
        let cost = rate.cost(used, state.scale).amount.0;
        let due = cost - state.charged;
        let from_hold = due.min(state.held).max(0);
        let beyond = due - from_hold;
        let mut items = Vec::new();
        if let Some(hold) = state.hold {
            items.push(Item::single(if from_hold > 0 {
                Command::Capture {
                    client_id: self.session_client(&state, &format!("{step}:c")),
                    hold: HoldId(hold),
                    amount: Some(Amount(from_hold)),
                }
            } else {
                Command::Release { client_id: self.session_client(&state, &format!("{step}:r")), hold: HoldId(hold) }
            }));
        }
        if beyond > 0 {
            items.push(Item::single(Command::Charge(NewCharge {
                client_id: self.session_client(&state, &format!("{step}:x")),
                account,
                money: Money { amount: Amount(beyond), currency },
                service: Some(state.service.clone()),
                at: None,
                metadata: Some(session_metadata(&state, true)),
                refuse_if_insufficient: false,
            })));
        }
        let mut plan = Plan { settling: items.len(), from_hold, used, cost, wanted, candidate: None };
        let mut available = Amount(i64::MAX);
        for _ in 0..GRANT_ATTEMPTS {
            plan.candidate = if wanted > 0 { rate.grant(used, wanted, available, state.scale) } else { None };
            if let Some((_, need)) = plan.candidate.filter(|(_, need)| need.is_positive()) {
                items.push(Item::single(Command::Hold {
                    client_id: self.session_client(&state, &format!("{step}:h:{}", need.0)),
                    account,
                    money: Money { amount: need, currency },
                    expires_at: Timestamp(self.now().0 + (state.ttl_s + HOLD_GRACE_S) * 1_000_000),
                    service: Some(state.service.clone()),
                    metadata: Some(session_metadata(&state, false)),
                }));
            }
            let written = std::sync::Arc::new(std::sync::Mutex::new(None));
            let after = {
                let (before, plan, row, persist, written) =
                    (state.clone(), plan.clone(), row.clone(), persist.clone(), written.clone());
                let now = self.now();
                Box::new(move |results: &[CommandResult], db: &mut dyn purse_store::Db| {
                    let Advanced::Done(state) = advance(&before, results, &plan).map_err(|e| match e {
                        // A twin of this step (a retry, another process) got there first.
                        AppError::Rejected(r) if r.code().starts_with("exists_with_different") => {
                            purse_store::StoreError::Conflict(format!("a twin of this session step: {r}"))
                        }
                        e => purse_store::StoreError::Other(format!("a session step was refused: {e}")),
                    })?
                    else {
                        return Ok(()); // the grant is tried again; nothing of the session changes yet
                    };
                    let new = persist.write(db, &row, state, now)?;
                    *written.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(new);
                    Ok(())
                }) as purse_engine::After
            };
            let results = match self.engine.submit_with(std::mem::take(&mut items), after) {
                Ok(results) => results,
                Err(purse_engine::EngineError::Store(purse_store::StoreError::Conflict(_))) => return Err(busy()),
                Err(e) => return Err(e.into()),
            };
            if let Some(new) = written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                self.remember_session(&new);
                return Ok(new);
            }
            match advance(&state, &results, &plan)? {
                Advanced::Done(_) => return Err(AppError::Internal("a session step was not written".into())),
                Advanced::Short { settled, available: now } => {
                    state = settled;
                    available = now;
                    plan.settling = 0;
                    plan.from_hold = 0;
                }
            }
        }
        Err(AppError::Overloaded)
    }

    /// The session `id`, if the caller sees it.
    fn session_for(&self, who: &Principal, id: u64) -> AppResult<(SessionRow, State)> {
        let cached = self.live_sessions.lock().ok().and_then(|m| m.get(&id).cloned());
        let row = match cached {
            Some(row) => row,
            None => self.rating.session(id)?.ok_or(AppError::NotFound("session"))?,
        };
        let sees = self.ask(|reseller_of| policy::sees_owner(who.role, Some(row.party), reseller_of))?;
        if !sees {
            return Err(AppError::NotFound("session"));
        }
        let state = decode(&row.state)?;
        Ok((row, state))
    }

    /// Remembers an active session as this process last wrote it, or forgets it. A step
    /// taken on a copy another process has since changed fails its compare-and-set in the
    /// ledger's transaction (nothing of it is applied) and is taken again from the database.
    fn remember_session(&self, row: &SessionRow) {
        if let Ok(mut m) = self.live_sessions.lock() {
            if row.status == "active" {
                if m.len() >= LIVE_SESSIONS_MAX {
                    m.clear();
                }
                m.insert(row.id, row.clone());
            } else {
                m.remove(&row.id);
            }
        }
    }

    fn forget_session(&self, id: u64) {
        if let Ok(mut m) = self.live_sessions.lock() {
            m.remove(&id);
        }
    }

    /// Runs a step on the session as this process knows it, and once more from the
    /// database if another process changed it meanwhile.
    fn with_session<T>(
        &self,
        who: &Principal,
        id: u64,
        mut f: impl FnMut(SessionRow, State) -> AppResult<T>,
    ) -> AppResult<T> {
        let (row, state) = self.session_for(who, id)?;
        match f(row, state) {
            Err(AppError::Invalid { code: Code::SessionBusy, .. }) => {
                self.forget_session(id);
                let (row, state) = self.session_for(who, id)?;
                f(row, state)
            }
            other => other,
        }
    }

    /// Charges what was used since the last step and grants the next slice.
    pub fn update_session(&self, who: &Principal, id: u64, u: Update) -> AppResult<Value> {
        self.with_session(who, id, |row, state| self.update_step(row, state, &u))
    }

    fn update_step(&self, row: SessionRow, mut state: State, u: &Update) -> AppResult<Value> {
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
        let wanted = state.slice.min(state.max_units.saturating_sub(u.used));
        state.sequence = u.sequence;
        let version = row.version;
        let new = self.step(
            &row,
            state,
            u.used,
            wanted,
            &u.sequence.to_string(),
            Persist::Update { version, status: "active", tell: Vec::new() },
        )?;
        Ok(decode(&new.state)?.answer)
    }

    /// Ends a session with its final usage: the exact charge is posted, the rest released.
    pub fn terminate_session(&self, who: &Principal, id: u64, t: Terminate) -> AppResult<Value> {
        self.with_session(who, id, |row, state| self.terminate_step(row, state, &t))
    }

    fn terminate_step(&self, row: SessionRow, state: State, t: &Terminate) -> AppResult<Value> {
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

    fn close(&self, row: SessionRow, state: State, used: u64, status: &'static str) -> AppResult<(SessionRow, Value)> {
        let version = row.version;
        let tell = if status == "expired" { self.session_endpoints(row.party)? } else { Vec::new() };
        let new = self.step(&row, state, used, 0, "end", Persist::Update { version, status, tell })?;
        let answer = decode(&new.state)?.answer;
        Ok((new, answer))
    }

    /// Each session of a customer: what it charged, what that cost its reseller, and when it started.
    pub fn session_money(&self, customer: purse_core::PartyId) -> AppResult<Vec<(i64, i64, Timestamp)>> {
        let rows = self.rating.sessions(&SessionQuery { party: Some(customer), active_only: false, limit: 1000 })?;
        rows.iter()
            .map(|row| {
                let state: State = decode(&row.state)?;
                Ok((state.charged, state.reseller_cost, row.created_at))
            })
            .collect()
    }

    /// The enabled webhook endpoints told about a customer's sessions: the operator's, its
    /// reseller's and its own.
    fn session_endpoints(&self, customer: purse_core::PartyId) -> AppResult<Vec<(u64, String)>> {
        let reseller = self.reseller_of(customer)?;
        Ok(self
            .alerts
            .endpoints()?
            .into_iter()
            .filter(|e| e.enabled && (e.owner.is_none() || e.owner == reseller || e.owner == Some(customer)))
            .map(|e| (e.id, e.url))
            .collect())
    }

    /// The session as the database has it (another process may have taken its last step).
    pub fn get_session(&self, who: &Principal, id: u64) -> AppResult<Value> {
        let row = self.rating.session(id)?.ok_or(AppError::NotFound("session"))?;
        if !self.ask(|reseller_of| policy::sees_owner(who.role, Some(row.party), reseller_of))? {
            return Err(AppError::NotFound("session"));
        }
        let state = decode(&row.state)?;
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

/// How a step writes its session.
#[derive(Clone, Debug)]
enum Persist {
    /// Makes the session of (`tenant`, `key`); a twin made first is a conflict.
    Create { tenant: i64, key: String },
    /// Replaces the session if it is still at `version`, with `status`; `tell` are the webhook
    /// endpoints told that Purse closed it (`session.expired`), in the same transaction.
    Update { version: i64, status: &'static str, tell: Vec<(u64, String)> },
}

impl Persist {
    /// Writes `row` with `state` as the step leaves it, in the ledger's open transaction.
    fn write(
        &self,
        db: &mut dyn purse_store::Db,
        row: &SessionRow,
        mut state: State,
        now: Timestamp,
    ) -> Result<SessionRow, purse_store::StoreError> {
        let conflict = || purse_store::StoreError::Conflict("the session changed under this step".into());
        let status = match self {
            Persist::Create { .. } if state.granted == 0 && state.last => "refused",
            Persist::Create { .. } => "active",
            Persist::Update { status, .. } => status,
        };
        let expires_at = if status == "active" { Timestamp(now.0 + state.ttl_s * 1_000_000) } else { now };
        state.answer = match status {
            "refused" => {
                let rate = state.rate.rate(&state.service);
                let one = rate.cost(u64::from(rate.increments.first), state.scale).amount;
                let message = format!(
                    "the available balance does not pay for the first increment ({} units for {} {})",
                    rate.increments.first,
                    purse_core::money::format_units(one.0, state.scale),
                    state.currency
                );
                json!({ "error": { "code": "insufficient_funds", "message": message, "field": "account" } })
            }
            _ => view(row, &state, status, expires_at),
        };
        let mut new = SessionRow {
            status: status.to_owned(),
            expires_at,
            state: serde_json::to_string(&state).map_err(|e| purse_store::StoreError::Other(e.to_string()))?,
            updated_at: now,
            ..row.clone()
        };
        match self {
            Persist::Create { tenant, key } => {
                let (made, fresh) = purse_store::rating::create_session(db, *tenant, key, &new)?;
                if !fresh {
                    return Err(conflict());
                }
                Ok(made)
            }
            Persist::Update { version, tell, .. } => {
                if !purse_store::rating::update_session(db, &new, *version)? {
                    return Err(conflict());
                }
                if status == "expired" && !tell.is_empty() {
                    expired_notice(db, &new, &state, tell.clone(), now)?;
                }
                new.version = version + 1;
                Ok(new)
            }
        }
    }
}

/// Records the `session.expired` webhook of a session Purse closed, in the transaction
/// that closes it; the notifier delivers it.
fn expired_notice(
    db: &mut dyn purse_store::Db,
    row: &SessionRow,
    state: &State,
    endpoints: Vec<(u64, String)>,
    now: Timestamp,
) -> Result<(), purse_store::StoreError> {
    use purse_store::{AlertBatch, AlertKind, Fire, NewNotification, PaymentNotice};
    let kind = PaymentNotice::SessionExpired;
    let currency =
        purse_core::CurrencyCode::parse(&state.currency).map_err(|e| purse_store::StoreError::Other(e.to_string()))?;
    let charged = purse_core::money::format_units(state.charged, state.scale);
    let notification = NewNotification {
        party: row.party,
        kind: AlertKind::Payment(kind),
        threshold: state.charged,
        available: 0,
        currency,
        at: now,
        subject: format!("Call {} closed: not heard from in {} s", row.id, state.ttl_s),
        body: format!(
            "Purse closed session {} ({} to {}) after {} s without an update and charged {} {} for {} units.",
            row.id,
            state.service,
            state.destination.as_deref().unwrap_or("no destination"),
            state.ttl_s,
            charged,
            state.currency,
            state.used
        ),
        payload: json!({
            "type": kind.event_type(),
            "timestamp": purse_core::time::format(now),
            "data": {
                "session": row.id, "customer": row.party.0, "account": row.account, "service": state.service,
                "destination": state.destination, "used": state.used, "charged": charged, "currency": state.currency,
                "on_expiry": state.on_expiry,
            }
        })
        .to_string(),
        emails: Vec::new(),
        endpoints,
    };
    let batch = AlertBatch { fires: vec![Fire { counter: None, notification }], ..AlertBatch::default() };
    purse_store::alert_sql::record(db, &batch, now)?;
    Ok(())
}

/// What a step sends, for reading its results.
#[derive(Clone, Debug)]
struct Plan {
    /// Commands before the hold that settle what was used.
    settling: usize,
    from_hold: i64,
    used: u64,
    cost: i64,
    wanted: u64,
    /// The grant asked for: units beyond `used`, and the money they need.
    candidate: Option<(u64, Amount)>,
}

/// What a step's results make of the session.
enum Advanced {
    /// The step is complete: the session as it now is.
    Done(State),
    /// The hold was refused for funds: the session with this step's charges made, and what
    /// the ledger says is available.
    Short { settled: State, available: Amount },
}

fn advance(before: &State, results: &[CommandResult], plan: &Plan) -> AppResult<Advanced> {
    let mut state = before.clone();
    let (settled, hold) = results.split_at(plan.settling.min(results.len()));
    for r in settled {
        match r {
            Ok(Outcome::HoldCaptured { transfer, .. } | Outcome::Posted { transfer, .. }) => {
                state.transfers.push(transfer.0)
            }
            Ok(_) | Err(Rejection::HoldAlreadyResolved { .. }) => {}
            Err(Rejection::HoldExpired) if plan.from_hold == 0 => {}
            Err(r) => return Err(AppError::Rejected(r.clone())),
        }
    }
    if plan.settling > 0 || state.used != plan.used {
        state.hold = None;
        state.held = 0;
    }
    state.used = plan.used;
    state.charged = plan.cost.max(state.charged);
    if let Some(r) = &state.reseller_rate {
        state.reseller_cost = r.rate(&state.service).cost(plan.used, state.scale).amount.0;
    }
    let Some((units, need)) = plan.candidate else {
        state.granted = plan.used;
        state.last = true;
        return Ok(Advanced::Done(state));
    };
    match hold.first() {
        None => {}
        Some(Ok(Outcome::HoldPlaced { hold, .. })) => {
            state.hold = Some(hold.0);
            state.held = need.0;
        }
        Some(Err(Rejection::InsufficientFunds { available, .. })) => {
            // Overdrawn already: nothing to grant.
            return Ok(Advanced::Short { settled: state, available: (*available).max(purse_core::Amount(0)) });
        }
        Some(Err(r)) => return Err(AppError::Rejected(r.clone())),
        Some(Ok(other)) => return Err(AppError::Internal(format!("unexpected outcome {other:?}"))),
    }
    // A slice ends on a billing boundary, but never past the session's cap.
    let units = units.min(state.max_units.saturating_sub(plan.used));
    state.granted = plan.used + units;
    state.last = units < plan.wanted || state.granted >= state.max_units;
    Ok(Advanced::Done(state))
}

/// The metadata of a session's postings: the session, and the rate and destination, as a
/// usage event's postings have them.
fn session_metadata(state: &State, beyond_grant: bool) -> String {
    let mut m = json!({
        "session": state.reference,
        "rated": {
            "plan": state.rate.plan_name,
            "prefix": state.rate.prefix,
            "description": state.rate.description,
            "destination": state.destination,
        },
    });
    if beyond_grant {
        m["beyond_grant"] = true.into();
    }
    m.to_string()
}

fn kept(r: &RatedUsage, rate: &Rate) -> KeptRate {
    KeptRate {
        plan: r.plan.id,
        plan_name: r.plan.name.clone(),
        prefix: rate.prefix.as_str().to_owned(),
        description: rate.description.clone(),
        price: rate.price.0,
        connection_fee: rate.connection_fee.0,
        minimum: rate.minimum.0,
        first: rate.increments.first,
        next: rate.increments.next,
        unit: rate.unit,
        effective_from: rate.effective_from.0,
    }
}

/// The name of the session authorized with `key` by `tenant`: 32 hex digits of a hash.
fn reference(tenant: i64, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{tenant}:{key}").as_bytes());
    crate::secrets::hex(&digest[..16])
}

/// A tenant as a number for the session's key: 0 the operator, +id a reseller, −id a customer.
fn tenant_number(role: Role) -> i64 {
    match role {
        Role::Operator => 0,
        Role::Reseller(p) => p.0 as i64,
        Role::Customer(p) => -(p.0 as i64),
    }
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
    let mut answer =
        if state.answer.is_null() { view(row, state, &row.status, row.expires_at) } else { state.answer.clone() };
    answer["id"] = row.id.into();
    Ok((false, answer))
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
