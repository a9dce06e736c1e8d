//! Credit grants: credit that is not cash (promotional, purchased, commitment, goodwill),
//! given by staff or by a recurring allowance, drawn before the customer's own money by the
//! ledger, and swept at expiry by the scheduler.

use purse_core::command::{NewGrant, GRANT_KIND_LEN_MAX, GRANT_PRIORITY_MAX, GRANT_SCOPE_MAX, SERVICE_LEN_MAX};
use purse_core::{
    Account, AccountId, AccountKind, ChangeNote, Command, Currency, Grant, GrantId, GrantUse, Item, Money, Party,
    PartyKind, Rollover, SystemRole, Timestamp,
};
use purse_store::{Allowance, GrantQuery};
use serde::Deserialize;

use crate::parse;
use crate::{App, AppError, AppResult, Code, Principal};

/// Most charges a grant's history lists.
pub const USES_SHOWN: usize = 1000;
/// The priority of a grant that names none.
pub const PRIORITY_DEFAULT: u32 = 10;
const DAY_US: i64 = 86_400_000_000;
/// Longest rollover validity.
const ROLLOVER_DAYS_MAX: u32 = 3660;

/// What a rolled-over remainder may keep.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverRequest {
    /// Most of the unused remainder that rolls over, in the customer's currency.
    pub max: String,
    /// How long the rolled-over credit stays valid.
    pub valid_for_days: u32,
}

/// A grant as staff ask for it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub client_id: String,
    pub customer: u64,
    /// One of the customer's subscriber accounts; its wallet when absent.
    pub account: Option<u64>,
    /// In the customer's currency.
    pub amount: String,
    /// `promotional` (the default), `purchased`, `commitment`, `goodwill`, or another word.
    pub kind: Option<String>,
    /// 1 is drawn first; 10 when absent.
    pub priority: Option<u32>,
    /// RFC 3339; now when absent.
    pub effective_at: Option<String>,
    /// RFC 3339; never when absent.
    pub expires_at: Option<String>,
    /// The services it may pay for; any when empty.
    #[serde(default)]
    pub scope: Vec<String>,
    pub rollover: Option<RolloverRequest>,
    /// How purchased credit was paid: `card`, `cash`, `bank_transfer` or `cheque` (only
    /// for kind `purchased`, which it requires).
    pub paid_by: Option<String>,
    /// Why: required, kept with the grant and in the audit log.
    pub reason: String,
}

/// A recurring grant as staff ask for it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowanceRequest {
    pub customer: u64,
    pub account: Option<u64>,
    /// Granted at the start of every period.
    pub amount: String,
    pub kind: Option<String>,
    pub priority: Option<u32>,
    #[serde(default)]
    pub scope: Vec<String>,
    /// The day of the month each period starts (1 to 28, UTC); today's when absent.
    pub day: Option<u8>,
    pub rollover: Option<RolloverRequest>,
    pub reason: String,
}

/// A grant with what the viewer needs around it.
pub struct GrantDetail {
    pub grant: Grant,
    pub customer: Party,
    pub currency: Currency,
}

fn invalid(field: &str, code: Code, message: impl Into<String>) -> AppError {
    AppError::invalid(field, code, message)
}

/// A kind as people read it: `goodwill` → "Goodwill".
pub fn kind_label(kind: &str) -> String {
    let words = kind.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// A grant's kind: a word of lowercase letters, digits and underscores.
pub fn kind(field: &str, text: Option<&str>) -> AppResult<String> {
    let kind = text.map(str::trim).filter(|k| !k.is_empty()).unwrap_or("promotional");
    let ok = kind.len() <= GRANT_KIND_LEN_MAX
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(invalid(
            field,
            Code::InvalidKind,
            format!("{field} must be 1 to {GRANT_KIND_LEN_MAX} lowercase letters, digits or underscores"),
        ));
    }
    Ok(kind.to_owned())
}

fn priority(value: Option<u32>) -> AppResult<u32> {
    let p = value.unwrap_or(PRIORITY_DEFAULT);
    if !(1..=GRANT_PRIORITY_MAX).contains(&p) {
        return Err(invalid(
            "priority",
            Code::OutOfRange,
            format!("priority must be from 1 (drawn first) to {GRANT_PRIORITY_MAX}"),
        ));
    }
    Ok(p)
}

/// A grant's scope: services, each printable and non-empty, at most 16.
pub fn scope(services: &[String]) -> AppResult<Vec<String>> {
    if services.len() > GRANT_SCOPE_MAX {
        return Err(invalid("scope", Code::TooMany, format!("scope names at most {GRANT_SCOPE_MAX} services")));
    }
    let mut out: Vec<String> = Vec::new();
    for s in services {
        let s = s.trim();
        if s.is_empty() || s.len() > SERVICE_LEN_MAX || !purse_core::text::is_single_line(s) {
            return Err(invalid(
                "scope",
                Code::InvalidService,
                format!("each service of scope is 1 to {SERVICE_LEN_MAX} printable characters"),
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

fn rollover(r: Option<&RolloverRequest>, currency: Currency) -> AppResult<Option<Rollover>> {
    let Some(r) = r else { return Ok(None) };
    let max = parse::amount("rollover.max", &r.max, currency)?;
    if max.0 < 0 {
        return Err(invalid("rollover.max", Code::OutOfRange, "rollover.max must not be negative"));
    }
    if !(1..=ROLLOVER_DAYS_MAX).contains(&r.valid_for_days) {
        return Err(invalid(
            "rollover.valid_for_days",
            Code::InvalidDays,
            format!("must be 1 to {ROLLOVER_DAYS_MAX} days"),
        ));
    }
    Ok(Some(Rollover { max, valid_for_us: i64::from(r.valid_for_days) * DAY_US }))
}

fn reason(text: &str) -> AppResult<String> {
    parse::reason_text(Some(text))?
        .ok_or_else(|| invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept with the grant"))
}

impl App {
    /// The customer a grant is for and the account it goes to (the wallet, or one of its
    /// subscriber accounts), if the caller sees it.
    fn grant_target(&self, who: &Principal, customer: u64, account: Option<u64>) -> AppResult<(Party, Account)> {
        let party = self
            .party_for(who, customer)
            .map_err(|_| invalid("customer", Code::PartyNotFound, format!("customer {customer} does not exist")))?;
        let PartyKind::Customer { wallet, .. } = party.kind else {
            return Err(invalid("customer", Code::PartyNotFound, format!("customer {customer} does not exist")));
        };
        let id = account.map_or(wallet, AccountId);
        let not_found = || invalid("account", Code::AccountNotFound, format!("account {} is not the customer's", id.0));
        let acc = self.engine.reader().account(id)?.ok_or_else(not_found)?;
        let allowed = matches!(
            acc.kind,
            AccountKind::Wallet | AccountKind::SubscriberDebit | AccountKind::SubscriberCredit { .. }
        );
        if acc.party != Some(party.id) || !allowed {
            return Err(not_found());
        }
        Ok((party, acc))
    }

    /// The ledger command for a grant staff asked for; every wrong field is told at once.
    pub fn grant_command(&self, who: &Principal, r: &GrantRequest) -> AppResult<Command> {
        let (_, account) = self.grant_target(who, r.customer, r.account)?;
        let currency = self.currency("currency", account.currency)?;
        let mut problems = crate::Problems::default();
        let amount =
            problems.check(parse::amount("amount", &r.amount, currency).and_then(|a| parse::positive("amount", a)));
        let kind = problems.check(kind("kind", r.kind.as_deref()));
        let funding = match (kind.as_deref(), r.paid_by.as_deref()) {
            (Some("purchased"), Some(method)) => problems.check(payment_method(method)).map(|m| m.clearing_role()),
            (Some("purchased"), None) => {
                problems.note(invalid("paid_by", Code::Required, "purchased credit says how it was paid"));
                None
            }
            (_, None) => Some(SystemRole::Grants),
            (_, Some(_)) => {
                problems.note(invalid("paid_by", Code::NotAllowed, "only purchased credit is paid for"));
                None
            }
        };
        let now = self.now();
        let effective_at =
            problems.check(r.effective_at.as_deref().map(|t| parse::timestamp("effective_at", t)).transpose());
        let expires_at = problems.check(r.expires_at.as_deref().map(|t| parse::timestamp("expires_at", t)).transpose());
        if let (Some(Some(e)), Some(effective_at)) = (expires_at, effective_at) {
            if e <= effective_at.unwrap_or(now).max(now) {
                problems.note(invalid(
                    "expires_at",
                    Code::InvalidTime,
                    "the expiry must be in the future and after the grant takes effect",
                ));
            }
        }
        let rollover = problems.check(rollover(r.rollover.as_ref(), currency));
        if matches!(rollover, Some(Some(_))) && matches!(expires_at, Some(None)) {
            problems.note(invalid("rollover", Code::NotAllowed, "only a grant that expires rolls over"));
        }
        let priority = problems.check(priority(r.priority));
        let scope = problems.check(scope(&r.scope));
        let reason = problems.check(reason(&r.reason));
        let client_id = problems.check(who.client_id("client_id", &r.client_id));
        problems.finish()?;
        let (
            Some(amount),
            Some(kind),
            Some(funding),
            Some(effective_at),
            Some(expires_at),
            Some(rollover),
            Some(priority),
            Some(scope),
            Some(reason),
            Some(client_id),
        ) = (amount, kind, funding, effective_at, expires_at, rollover, priority, scope, reason, client_id)
        else {
            return Err(AppError::Internal("a grant passed its checks without a value".into()));
        };
        Ok(Command::Grant(NewGrant {
            client_id,
            account: account.id,
            money: Money { amount, currency: account.currency },
            kind,
            funding,
            priority,
            effective_at,
            expires_at,
            scope,
            rollover,
            note: ChangeNote { by: self.actor(who)?, reason: Some(reason) },
            metadata: None,
        }))
    }

    /// The grant, if the caller sees its customer.
    pub fn grant_for(&self, who: &Principal, id: u64) -> AppResult<GrantDetail> {
        let grant = self.grants.grant(GrantId(id))?.ok_or(AppError::NotFound("grant"))?;
        let account = self.engine.reader().account(grant.account)?.ok_or(AppError::NotFound("grant"))?;
        let customer = account.party.ok_or(AppError::NotFound("grant"))?;
        let customer = self.party_for(who, customer.0).map_err(|_| AppError::NotFound("grant"))?;
        let currency = self.currency("currency", account.currency)?;
        Ok(GrantDetail { grant, customer, currency })
    }

    /// The command that voids what is left of a grant.
    pub fn void_grant_command(&self, who: &Principal, id: u64, reason_text: &str) -> AppResult<Command> {
        let detail = self.grant_for(who, id)?;
        let note = ChangeNote { by: self.actor(who)?, reason: Some(reason(reason_text)?) };
        Ok(Command::VoidGrant { account: detail.grant.account, grant: detail.grant.id, note })
    }

    /// A customer's grants (its wallet's and its subscriber accounts'), newest first.
    pub fn grants_of(&self, who: &Principal, customer: u64, open_only: bool, limit: u32) -> AppResult<Vec<Grant>> {
        let party = self.party_of_kind(who, customer, false)?;
        let accounts = self.engine.reader().accounts_of(party.id)?.iter().map(|a| a.id).collect();
        Ok(self.grants.grants(&GrantQuery { accounts, open_only, before: None, limit })?)
    }

    /// What moved the grant's remainder, oldest first (the latest charges it paid, up to
    /// [`USES_SHOWN`]).
    pub fn grant_uses(&self, who: &Principal, id: u64) -> AppResult<Vec<GrantUse>> {
        let detail = self.grant_for(who, id)?;
        Ok(purse_store::grants::history(
            self.engine.reader().as_ref(),
            self.grants.as_ref(),
            &detail.grant,
            USES_SHOWN,
        )?)
    }

    /// Starts a recurring grant; its first period's grant is made by the scheduler's next pass.
    pub fn create_allowance(&self, who: &Principal, r: &AllowanceRequest) -> AppResult<Allowance> {
        let (party, account) = self.grant_target(who, r.customer, r.account)?;
        let currency = self.currency("currency", account.currency)?;
        let amount = parse::positive("amount", parse::amount("amount", &r.amount, currency)?)?;
        let now = self.now();
        let today = purse_core::time::format_date(purse_core::time::day_of(now));
        let today: u8 = today[8..10].parse().unwrap_or(1);
        let day = r.day.unwrap_or(today.min(28));
        if !(1..=28).contains(&day) {
            return Err(invalid("day", Code::InvalidCycleDay, "day must be 1 to 28: every month has it"));
        }
        let rollover = rollover(r.rollover.as_ref(), currency)?;
        let allowance = Allowance {
            id: 0,
            party: party.id,
            account: account.id,
            amount,
            kind: kind("kind", r.kind.as_deref())?,
            priority: priority(r.priority)?,
            scope: scope(&r.scope)?,
            day,
            rollover_max: rollover.map(|r| r.max),
            rollover_days: r.rollover.as_ref().map(|r| r.valid_for_days),
            next_at: now,
            created_at: now,
            by: self.actor(who)?,
            reason: reason(&r.reason)?,
            ended_at: None,
        };
        Ok(self.grants.create_allowance(&allowance)?)
    }

    /// A customer's recurring grants.
    pub fn allowances_of(&self, who: &Principal, customer: u64) -> AppResult<Vec<Allowance>> {
        let party = self.party_of_kind(who, customer, false)?;
        Ok(self.grants.allowances_of(party.id)?)
    }

    /// Stops a recurring grant (grants already made keep running).
    pub fn end_allowance(&self, who: &Principal, id: u64) -> AppResult<Allowance> {
        let a = self.grants.allowance(id)?.ok_or(AppError::NotFound("allowance"))?;
        self.party_for(who, a.party.0).map_err(|_| AppError::NotFound("allowance"))?;
        self.grants.end_allowance(id, self.now())?;
        Ok(self.grants.allowance(id)?.unwrap_or(a))
    }
}

fn payment_method(text: &str) -> AppResult<purse_core::PaymentMethod> {
    use purse_core::PaymentMethod::*;
    Ok(match text {
        "card" => Card,
        "cash" => Cash,
        "bank_transfer" => BankTransfer,
        "cheque" => Cheque,
        _ => return Err(invalid("paid_by", Code::InvalidMethod, "choose card, cash, bank transfer or cheque")),
    })
}

/// The scheduler's work on grants: sweeps expired ones and makes each recurring grant's
/// grant for the period that started. Once only across processes: the sweep is idempotent in
/// the ledger, and a period's grant has a client id of its own.
pub struct GrantScheduler<'a> {
    pub engine: &'a purse_engine::Engine,
    pub grants: &'a dyn purse_store::GrantStore,
}

impl GrantScheduler<'_> {
    /// Moves the remainder of every grant at or past its expiry to breakage (or rollover).
    pub fn sweep(&self, now: Timestamp) -> AppResult<usize> {
        let mut swept = 0;
        loop {
            let due = self.grants.expiring(now, 256)?;
            let n = due.len();
            if n == 0 {
                return Ok(swept);
            }
            let items = due
                .into_iter()
                .map(|g| Item::single(Command::ExpireGrant { account: g.account, grant: g.id }))
                .collect();
            self.engine.submit(items)?;
            swept += n;
            if n < 256 {
                return Ok(swept);
            }
        }
    }

    /// Tells each customer (its alert e-mail, and the webhooks of the operator, its reseller
    /// and its own) once that a grant with credit left expires within `lead_us`, and once
    /// that a grant was used up.
    pub fn notices(&self, alerts: &dyn purse_store::AlertStore, now: Timestamp, lead_us: i64) -> AppResult<usize> {
        use purse_store::{AlertBatch, AlertKind, Fire, GrantNotice, NewNotification, PaymentNotice};
        let reader = self.engine.reader();
        let mut told = 0;
        for (g, notice) in self.grants.due_notices(now, lead_us, 256)? {
            let Some(account) = reader.account(g.account)? else { continue };
            let Some(party) = account.party.map(|p| reader.party(p)).transpose()?.flatten() else { continue };
            let Some(c) = reader.currencies()?.into_iter().find(|c| c.code == account.currency) else { continue };
            let kind_label = kind_label(&g.kind);
            let (kind, subject, body) = match notice {
                GrantNotice::Expiring => {
                    let when = g.expires_at.map(purse_core::time::format_short).unwrap_or_default();
                    (
                        PaymentNotice::GrantExpiring,
                        format!("{kind_label} credit of {} {} expires {when}", c.format(g.remaining), c.code),
                        format!(
                            "{}: {} {} of your {kind_label} credit is left and expires {when} UTC. Credit left then is not kept.",
                            party.name,
                            c.format(g.remaining),
                            c.code
                        ),
                    )
                }
                GrantNotice::UsedUp => (
                    PaymentNotice::GrantUsedUp,
                    format!("{kind_label} credit of {} {} used up", c.format(g.amount), c.code),
                    format!(
                        "{}: your {kind_label} credit of {} {} is used up; usage is now paid from your balance.",
                        party.name,
                        c.format(g.amount),
                        c.code
                    ),
                ),
            };
            let endpoints = crate::collections::billing_recipients(alerts, &party)?.1;
            let payload = serde_json::json!({
                "type": kind.event_type(),
                "timestamp": purse_core::time::format(now),
                "data": {
                    "customer": party.id.0, "grant": g.id.0, "kind": g.kind, "amount": c.format(g.amount),
                    "remaining": c.format(g.remaining), "currency": c.code.to_string(),
                    "expires_at": g.expires_at.map(purse_core::time::format),
                }
            })
            .to_string();
            let notification = NewNotification {
                party: party.id,
                kind: AlertKind::Payment(kind),
                threshold: g.remaining.0,
                available: g.remaining.0,
                currency: c.code,
                at: now,
                subject,
                body,
                payload,
                emails: alerts.alert_settings(party.id)?.and_then(|a| a.email).into_iter().collect(),
                endpoints,
            };
            let batch = AlertBatch { fires: vec![Fire { counter: None, notification }], ..AlertBatch::default() };
            if self.grants.tell(g.id, notice, now, &batch)? {
                told += 1;
            }
        }
        Ok(told)
    }

    /// Makes the grant of every recurring grant whose period started. A period missed
    /// entirely (the scheduler was down past its end) is skipped, not granted late.
    pub fn allowances(&self, now: Timestamp) -> AppResult<usize> {
        let mut made = 0;
        for a in self.grants.due_allowances(now, 256)? {
            let utc = purse_core::time::Zone::utc();
            let start = purse_core::invoice::cycle_start(a.next_at, a.day, &utc);
            let end = purse_core::invoice::next_cycle_start(start, a.day, &utc);
            let account = self.engine.reader().account(a.account)?;
            if let Some(account) = account.filter(|_| end > now) {
                let client_id = purse_core::ClientId::new(&format!("purse:allowance:{}:{}", a.id, end.0))
                    .ok_or_else(|| AppError::Internal("allowance client id".into()))?;
                let command = Command::Grant(NewGrant {
                    client_id,
                    account: a.account,
                    money: Money { amount: a.amount, currency: account.currency },
                    kind: a.kind.clone(),
                    funding: SystemRole::Grants,
                    priority: a.priority,
                    effective_at: Some(a.next_at),
                    expires_at: Some(end),
                    scope: a.scope.clone(),
                    rollover: a
                        .rollover_max
                        .zip(a.rollover_days)
                        .map(|(max, days)| Rollover { max, valid_for_us: i64::from(days) * DAY_US }),
                    note: ChangeNote { by: format!("allowance {}", a.id), reason: Some(a.reason.clone()) },
                    metadata: None,
                });
                match self.engine.execute(command)? {
                    Ok(_) => made += 1,
                    // A closed account or the like: this period is skipped, and said so.
                    Err(rejection) => crate::log::warn(
                        "a recurring grant was refused",
                        serde_json::json!({ "allowance": a.id, "code": rejection.code() }),
                    ),
                }
            }
            self.grants.advance_allowance(a.id, a.next_at, end)?;
        }
        Ok(made)
    }
}
