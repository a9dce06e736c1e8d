//! Credit control (seed 003's Balance & Credits): changing credit limits and temporary
//! increases within the maximum possible increase, the credit limit history, customer
//! classes, a customer's credit settings (class, subscriber-to-subscriber transfers), a
//! reseller's maximum possible increase, the rules of subscriber transfers, and the audit log.
//! Classes and maximums are the operator's to set (a reseller could otherwise lift its own
//! bound); a customer's class and transfers setting are staff's.

use purse_core::money::parse_units;
use purse_core::time;
use purse_core::{
    Account, AccountKind, Amount, Billing, ChangeNote, Command, Currency, Item, LimitChange, Party, PartyId, PartyKind,
    Role, TemporaryIncrease, Timestamp,
};
use purse_store::{AuditEntry, ClassRecord, CreditPolicy, MaxIncrease, TransferSetting, Visible};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::parse::{amount, timestamp};
use crate::{App, AppError, AppResult, Code, Principal};

/// Longest a class or reseller may allow a temporary increase to last.
pub const MAX_DAYS_LIMIT: u32 = 3650;
const DAY_US: i64 = 86_400 * 1_000_000;

// ------------------------------------------------------------ maximum possible increase

/// The maximum possible increase of one customer, resolved to amounts and times.
#[derive(Clone, Debug)]
pub struct Bound {
    /// The largest increase (the smaller of the amount and the percentage when both are set).
    pub amount: Option<Amount>,
    /// The latest *valid until*.
    pub until: Option<Timestamp>,
    /// Where it comes from: `class Gold`, `reseller Acme`.
    pub source: String,
    /// As the refusal states it.
    pub text: String,
}

/// The maximum that applies to a customer: its class's if the class sets one, else its
/// reseller's; `None` when neither sets one. Blocking.
pub fn maximum_of(s: &App, party: &Party) -> Result<Option<(MaxIncrease, String)>, AppError> {
    let PartyKind::Customer { reseller, .. } = party.kind else { return Ok(None) };
    let policy = s.credit.credit_policy(party.id)?;
    if let Some(class) = policy.as_ref().and_then(|p| p.class) {
        let classes = s.credit.classes()?;
        if let Some(c) = classes.into_iter().find(|c| c.id == class).filter(|c| !c.max.is_empty()) {
            return Ok(Some((c.max, format!("customer class {}", c.name))));
        }
    }
    if let Some(r) = reseller {
        if let Some(p) = s.credit.credit_policy(r)?.filter(|p| !p.max.is_empty()) {
            let name = s.engine.reader().party(r)?.map_or_else(|| r.to_string(), |p| p.name);
            return Ok(Some((p.max, format!("reseller {name}"))));
        }
    }
    Ok(None)
}

/// Resolves a maximum against a permanent limit and the time now.
pub fn bound(max: &MaxIncrease, source: String, c: Currency, permanent: Amount, now: Timestamp) -> Bound {
    let by_amount = max.amount.as_deref().and_then(|a| c.parse(a).ok());
    let by_percent = max.percent.map(|p| Amount(percent_of(permanent, i64::from(p) * 100)));
    let amount = match (by_amount, by_percent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let until = max.days.map(|d| now.plus_micros(i64::from(d) * DAY_US));
    let mut parts = Vec::new();
    if let Some(a) = amount {
        let mut t = format!("{} {}", c.format(a), c.code);
        if let Some(p) = max.percent {
            t.push_str(&format!(" ({p}% of the permanent credit limit {}", c.format(permanent)));
            if let Some(x) = &max.amount {
                t.push_str(&format!(", at most {x}"));
            }
            t.push(')');
        }
        parts.push(t);
    }
    if let (Some(u), Some(d)) = (until, max.days) {
        parts.push(format!("for at most {d} days (until {} UTC)", time::format_short(u)));
    }
    Bound { amount, until, text: format!("{}, set by {source}", parts.join(", ")), source }
}

/// `permanent` × `basis_points` / 10 000, rounded down to the currency's unit.
fn percent_of(permanent: Amount, basis_points: i64) -> i64 {
    let v = i128::from(permanent.0) * i128::from(basis_points) / 10_000;
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A temporary increase as asked: an amount, or a percentage of the positive permanent limit.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct IncreaseText {
    pub amount: Option<String>,
    /// Percent of the permanent credit limit, up to two decimals (`"25"`, `"12.5"`).
    pub percent: Option<String>,
    pub valid_until: String,
}

/// What a change of credit asks for (the API's PATCH body and the portal's form alike).
#[derive(Clone, Debug, Default)]
pub struct CreditChange {
    pub credit_limit: Option<String>,
    /// `Some(None)` removes the increase.
    pub increase: Option<Option<IncreaseText>>,
    pub reason: Option<String>,
}

/// Whether this caller may change the credit of `account`: operators always; resellers for
/// their customers' accounts (not their own master wallet); customers only the sub-limit of
/// their own credit subscriber accounts (never their wallet's limit).
fn may_set_credit(who: &Principal, a: &Account) -> bool {
    crate::policy::may_change_credit(who.role, a)
}

/// Checks a change of credit and turns it into the ledger's linked commands (all or
/// nothing), each carrying who asked and why. Blocking.
pub fn credit_commands(
    s: &App,
    who: &Principal,
    account: &Account,
    change: &CreditChange,
) -> Result<Vec<Item>, AppError> {
    if change.credit_limit.is_none() && change.increase.is_none() {
        return Err(AppError::invalid("", Code::NothingToChange, "send credit_limit or temporary_increase"));
    }
    if !may_set_credit(who, account) {
        let field = if change.credit_limit.is_some() { "credit_limit" } else { "temporary_increase" };
        return Err(AppError::ForbiddenField {
            field,
            message: format!("this key may not change the {field} of account {}", account.id),
        });
    }
    // Every wrong field is told at once; nothing is sent unless all are right.
    let mut problems = crate::Problems::default();
    let reason = problems.check(crate::parse::reason_text(change.reason.as_deref())).flatten();
    let note = ChangeNote { by: s.actor(who)?, reason };
    let c = s.currency("currency", account.currency)?;
    let party = account.party.map(|p| s.engine.reader().party(p)).transpose()?.flatten();
    let now = s.engine.clock().now();
    let mut commands = Vec::new();
    let mut permanent = account.credit_limit;
    if let Some(text) = &change.credit_limit {
        if let Some(limit) = problems.check(amount("credit_limit", text, c)) {
            permanent = limit;
            commands.push(Command::SetCreditLimit { account: account.id, credit_limit: permanent, note: note.clone() });
        }
    }
    if let Some(increase) = &change.increase {
        let increase = match increase {
            None => Some(None),
            Some(i) => {
                let prepaid =
                    matches!(&party, Some(Party { kind: PartyKind::Customer { billing: Billing::Prepaid, .. }, .. }))
                        && account.kind == AccountKind::Wallet;
                if prepaid {
                    problems.note(AppError::invalid(
                        "temporary_increase",
                        Code::PrepaidCustomer,
                        "a temporary credit limit increase is for postpaid customers only",
                    ));
                }
                let value = match (&i.amount, &i.percent) {
                    (Some(a), None) => problems.check(amount("temporary_increase.amount", a, c)),
                    (None, Some(p)) => match parse_units(p, 2).ok().filter(|bp| *bp > 0) {
                        None => {
                            problems.note(AppError::invalid(
                                "temporary_increase.percent",
                                Code::InvalidPercent,
                                "percent must be a positive number with at most two decimals",
                            ));
                            None
                        }
                        Some(_) if !permanent.is_positive() => {
                            problems.note(AppError::invalid(
                                "temporary_increase.percent",
                                Code::PercentNeedsPositiveLimit,
                                format!(
                                    "a percentage increase needs a positive permanent credit limit; it is {}",
                                    c.format(permanent)
                                ),
                            ));
                            None
                        }
                        Some(bp) => Some(Amount(percent_of(permanent, bp))),
                    },
                    _ => {
                        problems.note(AppError::invalid(
                            "temporary_increase.amount",
                            Code::AmountOrPercent,
                            "give either amount or percent",
                        ));
                        None
                    }
                };
                let value = value.filter(|v| {
                    let positive = v.is_positive();
                    if !positive {
                        problems.note(AppError::invalid(
                            "temporary_increase.amount",
                            Code::TemporaryIncreaseMustBePositive,
                            "the increase must be positive",
                        ));
                    }
                    positive
                });
                let until = problems.check(timestamp("temporary_increase.valid_until", &i.valid_until)).filter(|u| {
                    let future = *u > now;
                    if !future {
                        problems.note(AppError::invalid(
                            "temporary_increase.valid_until",
                            Code::ValidUntilMustBeInFuture,
                            "must be in the future",
                        ));
                    }
                    future
                });
                if let Some((max, source)) = party.as_ref().map(|p| maximum_of(s, p)).transpose()?.flatten() {
                    let b = bound(&max, source, c, permanent, now);
                    if let Some(value) = value.filter(|v| b.amount.is_some_and(|m| *v > m)) {
                        problems.note(AppError::invalid(
                            "temporary_increase.amount",
                            Code::AboveMaximumIncrease,
                            format!(
                                "{} {} is above the maximum possible increase: {}",
                                c.format(value),
                                c.code,
                                b.text
                            ),
                        ));
                    }
                    if until.is_some_and(|u| b.until.is_some_and(|m| u > m)) {
                        problems.note(AppError::invalid(
                            "temporary_increase.valid_until",
                            Code::AboveMaximumIncrease,
                            format!("is later than the maximum possible increase allows: {}", b.text),
                        ));
                    }
                }
                value.zip(until).map(Some)
            }
        };
        if let Some(increase) = increase {
            commands.push(Command::SetTemporaryIncrease { account: account.id, increase, note });
        }
    }
    problems.finish()?;
    let last = commands.len() - 1;
    Ok(commands.into_iter().enumerate().map(|(i, command)| Item { command, linked: i < last }).collect())
}

pub fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

// ------------------------------------------------------------------ history

fn increase_view(c: &Currency, i: Option<TemporaryIncrease>) -> Value {
    i.map_or(Value::Null, |i| json!({ "amount": c.format(i.amount), "valid_until": time::format(i.valid_until) }))
}

pub fn history_view(h: &LimitChange) -> Value {
    let c = &h.currency;
    let effective = |limit: Amount, i: Option<TemporaryIncrease>| {
        c.format(Amount(limit.0.saturating_add(i.map_or(0, |i| i.amount.0))))
    };
    json!({
        "kind": h.kind.as_str(),
        "at": time::format(h.at),
        "recorded_at": time::format(h.recorded_at),
        "old": { "credit_limit": c.format(h.old_limit), "temporary_increase": increase_view(c, h.old_increase), "effective": effective(h.old_limit, h.old_increase) },
        "new": { "credit_limit": c.format(h.new_limit), "temporary_increase": increase_view(c, h.new_increase), "effective": effective(h.new_limit, h.new_increase) },
        "by": h.by,
        "reason": h.reason,
    })
}

// ------------------------------------------------------------------ classes

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct MaxText {
    pub amount: Option<String>,
    pub percent: Option<u32>,
    pub days: Option<u32>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClassBody {
    pub name: String,
    /// Whether its customers' subscriber accounts may transfer to each other by default.
    pub subscriber_transfers: bool,
    #[serde(default)]
    pub maximum_increase: Option<MaxText>,
}

/// Checks a maximum possible increase as typed. The amount is checked as a decimal here and
/// against each customer's currency when used.
pub fn check_max(field: &str, m: Option<&MaxText>) -> Result<MaxIncrease, AppError> {
    let Some(m) = m else { return Ok(MaxIncrease::default()) };
    let mut problems = crate::Problems::default();
    if let Some(a) = m.amount.as_deref() {
        match parse_units(a, purse_core::money::SCALE_MAX) {
            Err(e) => problems.note(AppError::invalid(format!("{field}.amount"), Code::InvalidAmount, e.to_string())),
            Ok(units) if units <= 0 => problems.note(AppError::invalid(
                format!("{field}.amount"),
                Code::AmountMustBePositive,
                "must be positive",
            )),
            Ok(_) => {}
        }
    }
    if m.percent.is_some_and(|p| !(1..=1000).contains(&p)) {
        problems.note(AppError::invalid(format!("{field}.percent"), Code::InvalidPercent, "must be 1 to 1000"));
    }
    if m.days.is_some_and(|d| !(1..=MAX_DAYS_LIMIT).contains(&d)) {
        problems.note(AppError::invalid(
            format!("{field}.days"),
            Code::InvalidDays,
            format!("must be 1 to {MAX_DAYS_LIMIT} days"),
        ));
    }
    problems.finish()?;
    Ok(MaxIncrease { amount: m.amount.clone(), percent: m.percent, days: m.days })
}

fn max_view(m: &MaxIncrease) -> Value {
    if m.is_empty() {
        return Value::Null;
    }
    json!({ "amount": m.amount, "percent": m.percent, "days": m.days })
}

pub fn class_view(c: &ClassRecord) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "subscriber_transfers": c.transfers_allowed,
        "maximum_increase": max_view(&c.max),
        "updated_at": time::format(c.updated_at),
    })
}

/// Checks and stores a class (new when `id` is 0), with its audit entry; returns it and the
/// customers in it, whose transfers setting may follow. Blocking.
pub fn save_class(s: &App, who: &Principal, id: u64, body: ClassBody) -> Result<(ClassRecord, Vec<PartyId>), AppError> {
    let name = body.name.trim();
    let mut problems = crate::Problems::default();
    if let Some(rule) = crate::parse::line_rule(name, false, 100, crate::parse::Count::Bytes) {
        problems.note(AppError::invalid("name", Code::InvalidName, format!("name {rule}")));
    }
    let max = problems.check(check_max("maximum_increase", body.maximum_increase.as_ref()));
    let classes = s.credit.classes()?;
    if classes.iter().any(|c| c.name == name && c.id != id) {
        problems.note(AppError::invalid("name", Code::NameTaken, format!("a class named {name:?} exists")));
    }
    problems.finish()?;
    let Some(max) = max else { return Err(AppError::Internal("a class passed its checks without a value".into())) };
    let before = if id == 0 {
        None
    } else {
        Some(classes.iter().find(|c| c.id == id).ok_or(AppError::NotFound("customer class"))?)
    };
    let class = ClassRecord {
        id,
        reseller: None,
        name: name.to_owned(),
        transfers_allowed: body.subscriber_transfers,
        max,
        updated_at: s.engine.clock().now(),
    };
    let after = class_view(&class);
    let audit = s.audit_entry(
        who,
        None,
        "customer_class",
        id,
        if id == 0 { "create" } else { "update" },
        before.map(class_view).as_ref(),
        Some(&after),
    )?;
    let class = s.credit.put_class(&class, &audit)?;
    let members =
        s.credit.credit_policies()?.into_iter().filter(|p| p.class == Some(class.id)).map(|p| p.party).collect();
    Ok((class, members))
}

/// Brings the ledger's subscriber-transfers flag of `parties` in line with their policy and
/// class, so the ledger, which checks every transfer, enforces what was just saved. (The
/// scheduler repairs any flag a crash left behind.)
pub fn sync_transfers(state: &App, parties: Vec<PartyId>) -> Result<(), AppError> {
    if parties.is_empty() {
        return Ok(());
    }
    let items = (move |s: &App| -> AppResult<_> {
        let reader = s.engine.reader();
        let customers = parties.iter().filter_map(|p| reader.party(*p).transpose()).collect::<Result<Vec<_>, _>>()?;
        let changes =
            purse_store::credit::transfer_changes(&customers, &s.credit.credit_policies()?, &s.credit.classes()?);
        Ok(changes
            .into_iter()
            .map(|(party, allowed)| Item::single(Command::SetSubscriberTransfers { party, allowed }))
            .collect::<Vec<_>>())
    })(state)?;
    if items.is_empty() {
        return Ok(());
    }
    for result in state.engine.submit(items)? {
        result.map_err(AppError::Rejected)?;
    }
    Ok(())
}

// ------------------------------------------------------------ credit settings

/// A customer's Balance & Credits figures and settings, or a reseller's maximum. Blocking.
pub fn settings_view(s: &App, party: &Party) -> Result<Value, AppError> {
    let policy = s.credit.credit_policy(party.id)?.unwrap_or_else(|| CreditPolicy::default_for(party.id));
    let PartyKind::Customer { billing, currency, wallet, .. } = party.kind else {
        return Ok(
            json!({ "reseller": party.id.0, "maximum_increase": max_view(&policy.max), "updated_at": changed_at(&policy) }),
        );
    };
    let c = s.currency("currency", currency)?;
    let now = s.engine.clock().now();
    let w = s.engine.reader().account(wallet)?.ok_or(AppError::NotFound("account"))?;
    let increase = w.temporary_increase.filter(|i| now < i.valid_until);
    let classes = s.credit.classes()?;
    let class = policy.class.and_then(|id| classes.iter().find(|c| c.id == id));
    let maximum = maximum_of(s, party)?.map(|(m, source)| {
        let b = bound(&m, source.clone(), c, w.credit_limit, now);
        json!({ "amount": b.amount.map(|a| c.format(a)), "valid_until": b.until.map(time::format), "source": source, "text": b.text })
    });
    let warning = s
        .alerts
        .alert_settings(party.id)?
        .map(|a| purse_core::alerts::format_warning_levels(&a.warning, &c))
        .unwrap_or_default();
    Ok(json!({
        "customer": party.id.0,
        "billing": if billing == Billing::Prepaid { "prepaid" } else { "postpaid" },
        "currency": c.code.to_string(),
        "credit_limit": c.format(w.credit_limit),
        "temporary_increase": increase_view(&c, increase),
        "effective_credit_limit": c.format(Amount(crate::parse::clamp(w.effective_credit_limit(now)).0)),
        "maximum_increase": maximum,
        "warning_thresholds": warning,
        "unallocated_payments": c.format(Amount(s.payments.unallocated(party.id)?)),
        "class": class.map(|c| json!({ "id": c.id, "name": c.name })),
        "subscriber_transfers": policy.transfers.as_str(),
        // What the ledger enforces now.
        "subscriber_transfers_allowed": party.subscriber_transfers,
        "updated_at": changed_at(&policy),
    }))
}

/// When the settings were last saved; null when never (the defaults were never changed).
fn changed_at(policy: &CreditPolicy) -> Value {
    if policy.updated_at.0 == 0 {
        Value::Null
    } else {
        json!(time::format(policy.updated_at))
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct CreditSettingsBody {
    /// Customers: the class (`null` for none).
    #[serde(default, deserialize_with = "some")]
    pub class: Option<Option<u64>>,
    /// Customers: `class` (as defined by the customer class), `yes` or `no`.
    pub subscriber_transfers: Option<String>,
    /// Resellers: the maximum possible increase of their customers (`null` for none).
    #[serde(default, deserialize_with = "some")]
    pub maximum_increase: Option<Option<MaxText>>,
}

/// Checks and stores a party's credit settings, with its audit entry. Blocking.
pub fn save_credit_settings(s: &App, who: &Principal, party: &Party, body: CreditSettingsBody) -> Result<(), AppError> {
    let old = s.credit.credit_policy(party.id)?;
    let mut policy = old.clone().unwrap_or_else(|| CreditPolicy::default_for(party.id));
    match party.kind {
        PartyKind::Customer { .. } => {
            if body.maximum_increase.is_some() {
                return Err(AppError::invalid(
                    "maximum_increase",
                    Code::NotAllowed,
                    "a customer's maximum comes from its class or reseller",
                ));
            }
            if let Some(class) = body.class {
                if let Some(id) = class {
                    if !s.credit.classes()?.iter().any(|c| c.id == id) {
                        return Err(AppError::invalid(
                            "class",
                            Code::ClassNotFound,
                            format!("customer class {id} does not exist"),
                        ));
                    }
                }
                policy.class = class;
            }
            if let Some(t) = &body.subscriber_transfers {
                policy.transfers = TransferSetting::parse(t).ok_or_else(|| {
                    AppError::invalid(
                        "subscriber_transfers",
                        Code::InvalidSetting,
                        "choose as the class says, yes or no",
                    )
                })?;
            }
        }
        PartyKind::Reseller => {
            if body.class.is_some() || body.subscriber_transfers.is_some() {
                let field = if body.class.is_some() { "class" } else { "subscriber_transfers" };
                return Err(AppError::invalid(
                    field,
                    Code::NotAllowed,
                    "classes and transfers are a customer's settings",
                ));
            }
            if let Some(m) = &body.maximum_increase {
                policy.max = check_max("maximum_increase", m.as_ref())?;
            }
        }
    }
    policy.updated_at = s.engine.clock().now();
    let view = |p: &CreditPolicy| json!({ "class": p.class, "subscriber_transfers": p.transfers.as_str(), "maximum_increase": max_view(&p.max) });
    let audit = s.audit_entry(
        who,
        Some(party.id),
        "credit_settings",
        party.id,
        "update",
        old.as_ref().map(view).as_ref(),
        Some(&view(&policy)),
    )?;
    s.credit.put_credit_policy(&policy, &audit)?;
    Ok(())
}

// ------------------------------------------------------------------ transfers

/// A transfer that involves a subscriber account stays within its customer. (Between two
/// subscriber accounts the ledger checks this too, with the customer's transfers setting,
/// in the batch that posts it.)
pub fn check_subscriber_transfer(source: &Account, target: &Account) -> Result<(), AppError> {
    let subscriber =
        |a: &Account| matches!(a.kind, AccountKind::SubscriberDebit | AccountKind::SubscriberCredit { .. });
    if (subscriber(source) || subscriber(target)) && source.party != target.party {
        return Err(AppError::Rejected(purse_core::Rejection::OtherCustomer));
    }
    Ok(())
}

// ------------------------------------------------------------------ audit log

pub fn audit_view(e: &AuditEntry) -> Value {
    let parse =
        |t: &Option<String>| t.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()).unwrap_or(Value::Null);
    json!({
        "id": e.id,
        "at": time::format(e.at),
        "actor": e.actor,
        "party": e.party.map(|p| p.0),
        "entity": e.entity,
        "entity_id": e.entity_id,
        "action": e.action,
        "before": parse(&e.before),
        "after": parse(&e.after),
    })
}

/// What a caller may see of the audit log.
pub fn visible(who: &Principal) -> Visible {
    match who.role {
        Role::Operator => Visible::All,
        Role::Reseller(r) => Visible::Reseller(r),
        Role::Customer(c) => Visible::Party(c),
    }
}
