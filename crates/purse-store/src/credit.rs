//! What credit control keeps besides the ledger: customer classes, each party's credit
//! policy (a customer's class and subscriber-transfers setting, a reseller's maximum
//! possible increase), the credit limit history the ledger writes, and the audit log of
//! every settings change.
//!
//! The SQL lives here once, with `$1`-style parameters both backends accept (SQLite reads
//! `?1` for `$1`), and filters built from [`Value`]s, so the two backends only bind and run it.

use purse_core::{
    AccountId, Amount, Currency, CurrencyCode, LimitChange, LimitChangeKind, Party, PartyId, PartyKind,
    TemporaryIncrease, Timestamp,
};

use crate::codec::{id_from_db, id_to_db};
use crate::{StoreError, StoreResult};

/// The upper bound of a temporary credit limit increase. Each part is optional; with both an
/// amount and a percentage, the smaller bounds the increase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaxIncrease {
    /// A decimal amount in the customer's currency (`"500.00"`).
    pub amount: Option<String>,
    /// Whole percent of the positive permanent credit limit.
    pub percent: Option<u32>,
    /// Longest validity, in days from the time of the request.
    pub days: Option<u32>,
}

impl MaxIncrease {
    pub fn is_empty(&self) -> bool {
        self.amount.is_none() && self.percent.is_none() && self.days.is_none()
    }
}

/// Whether a customer's subscriber accounts may transfer funds to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TransferSetting {
    /// As defined by the customer class (no class: not allowed).
    #[default]
    Class,
    Yes,
    No,
}

impl TransferSetting {
    pub const ALL: [TransferSetting; 3] = [TransferSetting::Class, TransferSetting::Yes, TransferSetting::No];
    pub fn as_str(self) -> &'static str {
        match self {
            TransferSetting::Class => "class",
            TransferSetting::Yes => "yes",
            TransferSetting::No => "no",
        }
    }
    pub fn parse(text: &str) -> Option<TransferSetting> {
        TransferSetting::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A customer class: defaults its customers take unless they set their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRecord {
    /// 0 for a class not stored yet.
    pub id: u64,
    /// The reseller that owns it; `None` for the operator's.
    pub reseller: Option<PartyId>,
    pub name: String,
    pub transfers_allowed: bool,
    pub max: MaxIncrease,
    pub updated_at: Timestamp,
}

/// A party's credit policy: for a customer its class and transfers setting, for a reseller
/// the maximum possible increase of its customers without a class that sets one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditPolicy {
    pub party: PartyId,
    pub class: Option<u64>,
    pub transfers: TransferSetting,
    pub max: MaxIncrease,
    pub updated_at: Timestamp,
}

impl CreditPolicy {
    pub fn default_for(party: PartyId) -> CreditPolicy {
        CreditPolicy {
            party,
            class: None,
            transfers: TransferSetting::Class,
            max: MaxIncrease::default(),
            updated_at: Timestamp(0),
        }
    }
}

/// One settings change: who made it, when, to what, and the state before and after (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// 0 until stored.
    pub id: u64,
    pub at: Timestamp,
    /// `key 12`, `user ann@example.com`, `cli`, `scheduler`.
    pub actor: String,
    /// The customer or reseller the setting belongs to; `None` for the operator's own.
    pub party: Option<PartyId>,
    /// What kind of thing changed: `credit_limit`, `alert_settings`, `profile`, `user`, …
    pub entity: String,
    pub entity_id: String,
    /// `create`, `update`, `delete`, `revoke`, …
    pub action: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which audit entries a caller may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visible {
    All,
    /// A reseller's own entries and its customers'.
    Reseller(PartyId),
    Party(PartyId),
}

/// A page of the audit log, newest first, with optional filters.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub visible: Visible,
    pub party: Option<PartyId>,
    pub entity: Option<String>,
    /// What was done (`adjustment`, `update`, …).
    pub action: Option<String>,
    pub actor: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Entries with a smaller id than this (the previous page's last).
    pub before: Option<u64>,
    pub limit: u32,
}

/// A parameter value of the shared SQL (typed even when NULL, as PostgreSQL wants).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        Value::Text(v)
    }
}

/// Whether a customer's subscriber accounts may transfer to each other under its policy:
/// `yes`, `no`, or its class's default (no class: not allowed).
pub fn transfers_allowed(policy: Option<&CreditPolicy>, classes: &[ClassRecord]) -> bool {
    let Some(p) = policy else { return false };
    match p.transfers {
        TransferSetting::Yes => true,
        TransferSetting::No => false,
        TransferSetting::Class => p.class.is_some_and(|id| classes.iter().any(|c| c.id == id && c.transfers_allowed)),
    }
}

/// The customers whose ledger flag (`Party::subscriber_transfers`) differs from what their
/// policy says, with the value it should have.
pub fn transfer_changes<'a>(
    customers: impl IntoIterator<Item = &'a Party>,
    policies: &[CreditPolicy],
    classes: &[ClassRecord],
) -> Vec<(PartyId, bool)> {
    let policies: std::collections::HashMap<PartyId, &CreditPolicy> = policies.iter().map(|x| (x.party, x)).collect();
    customers
        .into_iter()
        .filter(|p| matches!(p.kind, PartyKind::Customer { .. }))
        .filter_map(|p| {
            let allowed = transfers_allowed(policies.get(&p.id).copied(), classes);
            (allowed != p.subscriber_transfers).then_some((p.id, allowed))
        })
        .collect()
}

pub trait CreditStore: Send + Sync {
    fn classes(&self) -> StoreResult<Vec<ClassRecord>>;
    /// Every party's credit policy.
    fn credit_policies(&self) -> StoreResult<Vec<CreditPolicy>>;
    /// Inserts (id 0) or replaces a class and records `audit` in the same transaction.
    fn put_class(&self, class: &ClassRecord, audit: &AuditEntry) -> StoreResult<ClassRecord>;
    fn credit_policy(&self, party: PartyId) -> StoreResult<Option<CreditPolicy>>;
    /// Stores a policy and records `audit` in the same transaction.
    fn put_credit_policy(&self, policy: &CreditPolicy, audit: &AuditEntry) -> StoreResult<()>;
    /// The credit limit history of an account, oldest first.
    fn limit_history(&self, account: AccountId) -> StoreResult<Vec<LimitChange>>;
    /// Accounts whose temporary increase ran out at or before `now`: (account, valid until).
    fn expired_increases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<(AccountId, Timestamp)>>;
    fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    fn audit_log(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
}

/// The shared SQL.
pub mod sql {
    pub const CLASSES: &str = "SELECT id, reseller_id, name, transfers_allowed, max_amount, max_percent, max_days, updated_at FROM customer_classes ORDER BY id";
    pub const INSERT_CLASS: &str = "INSERT INTO customer_classes (reseller_id, name, transfers_allowed, max_amount, max_percent, max_days, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
    pub const UPDATE_CLASS: &str =
        "UPDATE customer_classes SET reseller_id = $1, name = $2, transfers_allowed = $3, max_amount = $4, \
         max_percent = $5, max_days = $6, updated_at = $7 WHERE id = $8";
    pub const POLICY: &str = "SELECT party_id, class_id, transfers, max_amount, max_percent, max_days, updated_at FROM credit_policies WHERE party_id = $1";
    pub const POLICIES: &str = "SELECT party_id, class_id, transfers, max_amount, max_percent, max_days, updated_at FROM credit_policies ORDER BY party_id";
    pub const PUT_POLICY: &str =
        "INSERT INTO credit_policies (party_id, class_id, transfers, max_amount, max_percent, max_days, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (party_id) DO UPDATE SET class_id = excluded.class_id, \
         transfers = excluded.transfers, max_amount = excluded.max_amount, max_percent = excluded.max_percent, \
         max_days = excluded.max_days, updated_at = excluded.updated_at";
    pub const LIMIT_COLUMNS: &str =
        "account_id, party_id, currency, scale, kind, at, recorded_at, old_limit, new_limit, \
         old_increase, old_until, new_increase, new_until, changed_by, reason";
    pub const INSERT_LIMIT: &str = "INSERT INTO limit_changes (account_id, party_id, currency, scale, kind, at, recorded_at, old_limit, new_limit, \
         old_increase, old_until, new_increase, new_until, changed_by, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    pub const LIMIT_HISTORY: &str = "SELECT account_id, party_id, currency, scale, kind, at, recorded_at, old_limit, new_limit, \
         old_increase, old_until, new_increase, new_until, changed_by, reason FROM limit_changes WHERE account_id = $1 ORDER BY id";
    pub const EXPIRED: &str =
        "SELECT id, temp_valid_until FROM accounts WHERE temp_valid_until IS NOT NULL AND temp_valid_until <= $1 \
         ORDER BY temp_valid_until LIMIT $2";
    pub const INSERT_AUDIT: &str =
        "INSERT INTO audit_log (at, actor, party_id, entity, entity_id, action, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub const AUDIT_COLUMNS: &str = "id, at, actor, party_id, entity, entity_id, action, before, after";
}

/// Records an audit entry on a connection running the shared SQL.
pub fn insert_audit(db: &mut dyn crate::invoices::Db, e: &AuditEntry) -> StoreResult<()> {
    db.run(sql::INSERT_AUDIT, &audit_params(e)).map(|_| ())
}

/// The parameters of [`sql::INSERT_LIMIT`] for one change.
pub fn limit_params(c: &LimitChange) -> Vec<Value> {
    let inc =
        |i: Option<TemporaryIncrease>| (Value::from(i.map(|i| i.amount.0)), Value::from(i.map(|i| i.valid_until.0)));
    let (old_increase, old_until) = inc(c.old_increase);
    let (new_increase, new_until) = inc(c.new_increase);
    vec![
        Value::from(id_to_db(c.account.0)),
        Value::from(c.party.map(|p| id_to_db(p.0))),
        Value::from(c.currency.code.to_string()),
        Value::from(i64::from(c.currency.scale)),
        Value::from(c.kind.as_str().to_owned()),
        Value::from(c.at.0),
        Value::from(c.recorded_at.0),
        Value::from(c.old_limit.0),
        Value::from(c.new_limit.0),
        old_increase,
        old_until,
        new_increase,
        new_until,
        Value::from(c.by.clone()),
        Value::from(c.reason.clone()),
    ]
}

/// The audit entry of a credit limit change, written with it.
pub fn limit_audit(c: &LimitChange) -> AuditEntry {
    let (before, after) = c.states();
    AuditEntry {
        id: 0,
        at: c.recorded_at,
        actor: c.by.clone(),
        party: c.party,
        entity: "credit_limit".into(),
        entity_id: c.account.to_string(),
        action: c.kind.as_str().into(),
        before: Some(before),
        after: Some(after),
    }
}

/// The audit entry of a posting made for someone else (an adjustment, a reversal, a staff
/// transfer): who, when, and in `after` the movement and the reason given.
pub fn note_audit(n: &purse_core::MoneyNote) -> AuditEntry {
    let reason = n.reason.as_deref().map_or_else(|| "null".to_owned(), json_string);
    let category = n.category.map(|c| format!(",\"category\":\"{}\"", c.as_str())).unwrap_or_default();
    let after = format!(
        "{{\"kind\":\"{}\",\"amount\":\"{}\",\"currency\":\"{}\",\"debit\":{},\"credit\":{},\"reason\":{reason}{category}}}",
        n.kind.as_str(),
        n.currency.format(n.amount),
        n.currency.code,
        n.debit,
        n.credit,
    );
    AuditEntry {
        id: 0,
        at: n.at,
        actor: n.by.clone(),
        party: n.party,
        entity: "transfer".into(),
        entity_id: n.transfer.to_string(),
        action: n.kind.as_str().into(),
        before: None,
        after: Some(after),
    }
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn audit_params(e: &AuditEntry) -> Vec<Value> {
    vec![
        Value::from(e.at.0),
        Value::from(e.actor.clone()),
        Value::from(e.party.map(|p| id_to_db(p.0))),
        Value::from(e.entity.clone()),
        Value::from(e.entity_id.clone()),
        Value::from(e.action.clone()),
        Value::from(e.before.clone()),
        Value::from(e.after.clone()),
    ]
}

/// The SELECT of an audit page with its parameters.
pub fn audit_select(q: &AuditQuery) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {} FROM audit_log WHERE 1 = 1", sql::AUDIT_COLUMNS);
    let mut values = Vec::new();
    let mut add = |cond: &str, v: Value, sql: &mut String| {
        values.push(v);
        sql.push_str(&cond.replace("$n", &format!("${}", values.len())));
    };
    match q.visible {
        Visible::All => {}
        Visible::Party(p) => add(" AND party_id = $n", Value::from(id_to_db(p.0)), &mut sql),
        Visible::Reseller(r) => {
            add(" AND (party_id = $n", Value::from(id_to_db(r.0)), &mut sql);
            add(
                " OR party_id IN (SELECT id FROM parties WHERE reseller_id = $n))",
                Value::from(id_to_db(r.0)),
                &mut sql,
            );
        }
    }
    if let Some(p) = q.party {
        add(" AND party_id = $n", Value::from(id_to_db(p.0)), &mut sql);
    }
    if let Some(e) = &q.entity {
        add(" AND entity = $n", Value::from(e.clone()), &mut sql);
    }
    if let Some(a) = &q.action {
        add(" AND action = $n", Value::from(a.clone()), &mut sql);
    }
    if let Some(a) = &q.actor {
        add(" AND actor = $n", Value::from(a.clone()), &mut sql);
    }
    if let Some(f) = q.from {
        add(" AND at >= $n", Value::from(f.0), &mut sql);
    }
    if let Some(t) = q.to {
        add(" AND at < $n", Value::from(t.0), &mut sql);
    }
    if let Some(b) = q.before {
        add(" AND id < $n", Value::from(id_to_db(b)), &mut sql);
    }
    add(" ORDER BY id DESC LIMIT $n", Value::from(i64::from(q.limit)), &mut sql);
    (sql, values)
}

fn to_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

pub fn class_from(
    id: i64,
    reseller: Option<i64>,
    name: String,
    transfers: i64,
    (amount, percent, days): (Option<String>, Option<i64>, Option<i64>),
    updated_at: i64,
) -> ClassRecord {
    ClassRecord {
        id: id_from_db(id),
        reseller: reseller.map(|r| PartyId(id_from_db(r))),
        name,
        transfers_allowed: transfers != 0,
        max: MaxIncrease { amount, percent: to_u32(percent), days: to_u32(days) },
        updated_at: Timestamp(updated_at),
    }
}

/// Parameters 1–7 of [`sql::INSERT_CLASS`] and [`sql::UPDATE_CLASS`].
pub fn class_params(c: &ClassRecord) -> Vec<Value> {
    vec![
        Value::from(c.reseller.map(|r| id_to_db(r.0))),
        Value::from(c.name.clone()),
        Value::from(i64::from(c.transfers_allowed)),
        Value::from(c.max.amount.clone()),
        Value::from(c.max.percent.map(i64::from)),
        Value::from(c.max.days.map(i64::from)),
        Value::from(c.updated_at.0),
    ]
}

pub fn policy_from(
    party: i64,
    class: Option<i64>,
    transfers: &str,
    (amount, percent, days): (Option<String>, Option<i64>, Option<i64>),
    updated_at: i64,
) -> StoreResult<CreditPolicy> {
    Ok(CreditPolicy {
        party: PartyId(id_from_db(party)),
        class: class.map(id_from_db),
        transfers: TransferSetting::parse(transfers)
            .ok_or_else(|| StoreError::Other(format!("unknown transfers setting {transfers:?}")))?,
        max: MaxIncrease { amount, percent: to_u32(percent), days: to_u32(days) },
        updated_at: Timestamp(updated_at),
    })
}

pub fn policy_params(p: &CreditPolicy) -> Vec<Value> {
    vec![
        Value::from(id_to_db(p.party.0)),
        Value::from(p.class.map(id_to_db)),
        Value::from(p.transfers.as_str().to_owned()),
        Value::from(p.max.amount.clone()),
        Value::from(p.max.percent.map(i64::from)),
        Value::from(p.max.days.map(i64::from)),
        Value::from(p.updated_at.0),
    ]
}

/// One row of [`sql::LIMIT_HISTORY`], in its column order.
pub struct LimitRow {
    pub account: i64,
    pub party: Option<i64>,
    pub currency: String,
    pub scale: i64,
    pub kind: String,
    pub at: i64,
    pub recorded_at: i64,
    pub old_limit: i64,
    pub new_limit: i64,
    pub old_increase: Option<i64>,
    pub old_until: Option<i64>,
    pub new_increase: Option<i64>,
    pub new_until: Option<i64>,
    pub by: String,
    pub reason: Option<String>,
}

pub fn limit_from(r: LimitRow) -> StoreResult<LimitChange> {
    let bad = |what: &str| StoreError::Other(format!("bad {what} in limit_changes"));
    let code = CurrencyCode::parse(&r.currency).map_err(|_| bad("currency"))?;
    let scale = u8::try_from(r.scale).map_err(|_| bad("scale"))?;
    let inc = |a: Option<i64>, u: Option<i64>| match (a, u) {
        (Some(a), Some(u)) => Some(TemporaryIncrease { amount: Amount(a), valid_until: Timestamp(u) }),
        _ => None,
    };
    Ok(LimitChange {
        account: AccountId(id_from_db(r.account)),
        party: r.party.map(|p| PartyId(id_from_db(p))),
        currency: Currency { code, scale },
        kind: LimitChangeKind::parse(&r.kind).ok_or_else(|| bad("kind"))?,
        at: Timestamp(r.at),
        recorded_at: Timestamp(r.recorded_at),
        old_limit: Amount(r.old_limit),
        new_limit: Amount(r.new_limit),
        old_increase: inc(r.old_increase, r.old_until),
        new_increase: inc(r.new_increase, r.new_until),
        by: r.by,
        reason: r.reason,
    })
}

pub fn audit_from(
    id: i64,
    at: i64,
    actor: String,
    party: Option<i64>,
    (entity, entity_id, action): (String, String, String),
    before: Option<String>,
    after: Option<String>,
) -> AuditEntry {
    AuditEntry {
        id: id_from_db(id),
        at: Timestamp(at),
        actor,
        party: party.map(|p| PartyId(id_from_db(p))),
        entity,
        entity_id,
        action,
        before,
        after,
    }
}
