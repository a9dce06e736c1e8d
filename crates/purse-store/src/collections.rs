//! Collections, written once for both backends over [`Db`]: dunning policies (when an
//! invoice is due, when reminders go, when a customer is suspended) and customers'
//! suspensions. A suspension's row is written in the same transaction as the ledger's
//! `Suspend` command ([`start`], [`lift`]), so the two never disagree.

use purse_core::{PartyId, Timestamp};

use crate::codec::{id_from_db, id_to_db};
use crate::credit::{insert_audit, json_string, AuditEntry, Value};
use crate::invoices::{run_db, Db, Transact};
use crate::payments::InvoiceRecord;
use crate::{StoreError, StoreResult};

/// Whose policy it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyOwner {
    /// The default for every customer without another.
    Operator,
    Reseller(PartyId),
    /// A customer class (`customer_classes.id`).
    Class(u64),
}

impl PolicyOwner {
    pub fn key(self) -> String {
        match self {
            PolicyOwner::Operator => "operator".into(),
            PolicyOwner::Reseller(p) => format!("reseller:{}", p.0),
            PolicyOwner::Class(c) => format!("class:{c}"),
        }
    }

    pub fn parse(key: &str) -> Option<PolicyOwner> {
        match key.split_once(':') {
            None if key == "operator" => Some(PolicyOwner::Operator),
            Some(("reseller", id)) => id.parse().ok().map(|id| PolicyOwner::Reseller(PartyId(id))),
            Some(("class", id)) => id.parse().ok().map(PolicyOwner::Class),
            _ => None,
        }
    }
}

/// When a usage invoice is due, when reminders go after that, and when the customer is
/// suspended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DunningPolicy {
    pub owner: PolicyOwner,
    /// Days from an invoice's issue to its due date.
    pub payment_terms_days: u32,
    /// Days after the due date a reminder goes, ascending.
    pub reminder_days: Vec<u32>,
    /// Each reminder's own text, a template (`{customer}`, `{invoice}`, ...), by step; a step
    /// without one (or an empty one) says the default.
    pub reminder_texts: Vec<String>,
    /// Days overdue after which the customer is suspended (none: never for that).
    pub suspend_after_days: Option<u32>,
    /// A prepaid customer whose balance is below this (a decimal in its currency, zero or
    /// less) is suspended.
    pub suspend_below: Option<String>,
    pub updated_at: Timestamp,
}

/// Why a customer is suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// An invoice is overdue longer than the policy allows.
    Overdue,
    /// A prepaid balance fell below the policy's floor.
    NegativeBalance,
    /// A staff member suspended it by hand.
    Staff,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Overdue => "overdue",
            Cause::NegativeBalance => "negative_balance",
            Cause::Staff => "staff",
        }
    }

    pub fn parse(text: &str) -> Option<Cause> {
        [Cause::Overdue, Cause::NegativeBalance, Cause::Staff].into_iter().find(|c| c.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspension {
    pub id: u64,
    pub party: PartyId,
    pub cause: Cause,
    /// In words: which invoice, how many days, what balance.
    pub detail: String,
    pub started_at: Timestamp,
    pub started_by: String,
    pub lifted_at: Option<Timestamp>,
    pub lifted_by: Option<String>,
    pub lift_reason: Option<String>,
}

const POLICY_COLUMNS: &str =
    "owner, payment_terms_days, reminder_days, suspend_after_days, suspend_below, updated_at, reminder_texts";
/// Between reminder texts in their column: no text holds it.
const TEXTS_SEPARATOR: char = '\u{1e}';
const SUSPENSION_COLUMNS: &str =
    "id, party_id, cause, detail, started_at, started_by, lifted_at, lifted_by, lift_reason";

fn policy_from(r: &[Value]) -> StoreResult<DunningPolicy> {
    let owner = r[0].text()?;
    let days = |v: i64| u32::try_from(v).map_err(|_| StoreError::Other(format!("bad days {v}")));
    Ok(DunningPolicy {
        owner: PolicyOwner::parse(&owner).ok_or_else(|| StoreError::Other(format!("bad policy owner {owner:?}")))?,
        payment_terms_days: days(r[1].int()?)?,
        reminder_days: r[2]
            .text()?
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().map_err(|_| StoreError::Other(format!("bad reminder day {d:?}"))))
            .collect::<StoreResult<_>>()?,
        suspend_after_days: r[3].opt_int()?.map(days).transpose()?,
        suspend_below: r[4].opt_text()?,
        updated_at: Timestamp(r[5].int()?),
        reminder_texts: {
            let texts = r[6].text()?;
            if texts.is_empty() {
                Vec::new()
            } else {
                texts.split(TEXTS_SEPARATOR).map(str::to_owned).collect()
            }
        },
    })
}

fn suspension_from(r: &[Value]) -> StoreResult<Suspension> {
    let cause = r[2].text()?;
    Ok(Suspension {
        id: id_from_db(r[0].int()?),
        party: PartyId(id_from_db(r[1].int()?)),
        cause: Cause::parse(&cause).ok_or_else(|| StoreError::Other(format!("bad cause {cause:?}")))?,
        detail: r[3].text()?,
        started_at: Timestamp(r[4].int()?),
        started_by: r[5].text()?,
        lifted_at: r[6].opt_int()?.map(Timestamp),
        lifted_by: r[7].opt_text()?,
        lift_reason: r[8].opt_text()?,
    })
}

fn suspensions_where(db: &mut dyn Db, clause: &str, params: &[Value]) -> StoreResult<Vec<Suspension>> {
    db.rows(&format!("SELECT {SUSPENSION_COLUMNS} FROM suspensions {clause}"), params)?
        .iter()
        .map(|r| suspension_from(r))
        .collect()
}

/// Suspends `party` unless a suspension is already in force, with its audit entry; in the
/// transaction of the ledger's `Suspend`. Returns whether this one started it.
pub fn start(
    db: &mut dyn Db,
    party: PartyId,
    cause: Cause,
    detail: &str,
    at: Timestamp,
    by: &str,
) -> StoreResult<bool> {
    let started = db.rows(
        "INSERT INTO suspensions (party_id, cause, detail, started_at, started_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING RETURNING id",
        &[
            Value::from(id_to_db(party.0)),
            Value::from(cause.as_str().to_owned()),
            Value::from(detail.to_owned()),
            Value::from(at.0),
            Value::from(by.to_owned()),
        ],
    )?;
    let Some(row) = started.first() else { return Ok(false) };
    let after = format!("{{\"cause\":\"{}\",\"detail\":{}}}", cause.as_str(), json_string(detail));
    insert_audit(db, &audit(party, id_from_db(row[0].int()?), "suspend", at, by, None, Some(after)))?;
    Ok(true)
}

/// Lifts `party`'s suspension in force, with its audit entry; in the transaction of the
/// ledger's `Suspend`. Returns the suspension lifted, if there was one.
pub fn lift(db: &mut dyn Db, party: PartyId, at: Timestamp, by: &str, reason: &str) -> StoreResult<Option<Suspension>> {
    let Some(found) =
        suspensions_where(db, "WHERE party_id = $1 AND lifted_at IS NULL", &[Value::from(id_to_db(party.0))])?.pop()
    else {
        return Ok(None);
    };
    let n = db.run(
        "UPDATE suspensions SET lifted_at = $1, lifted_by = $2, lift_reason = $3 WHERE id = $4 AND lifted_at IS NULL",
        &[
            Value::from(at.0),
            Value::from(by.to_owned()),
            Value::from(reason.to_owned()),
            Value::from(id_to_db(found.id)),
        ],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let before = format!("{{\"cause\":\"{}\",\"detail\":{}}}", found.cause.as_str(), json_string(&found.detail));
    let after = format!("{{\"lifted\":{}}}", json_string(reason));
    insert_audit(db, &audit(party, found.id, "lift", at, by, Some(before), Some(after)))?;
    Ok(Some(found))
}

fn audit(
    party: PartyId,
    id: u64,
    action: &str,
    at: Timestamp,
    by: &str,
    before: Option<String>,
    after: Option<String>,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: by.to_owned(),
        party: Some(party),
        entity: "suspension".into(),
        entity_id: id.to_string(),
        action: action.into(),
        before,
        after,
    }
}

/// The application's questions about collections.
pub trait CollectionStore: Send + Sync {
    fn dunning_policies(&self) -> StoreResult<Vec<DunningPolicy>>;
    /// Creates or replaces the owner's policy, with its audit entry.
    fn put_dunning_policy(&self, policy: &DunningPolicy, audit: &AuditEntry) -> StoreResult<()>;
    /// Whether there was one to delete.
    fn delete_dunning_policy(&self, owner: PolicyOwner, audit: &AuditEntry) -> StoreResult<bool>;
    /// The customer's suspension in force.
    fn suspension(&self, party: PartyId) -> StoreResult<Option<Suspension>>;
    /// Its suspensions, newest first.
    fn suspensions(&self, party: PartyId, limit: u32) -> StoreResult<Vec<Suspension>>;
    /// Every suspension in force.
    fn suspensions_in_force(&self) -> StoreResult<Vec<Suspension>>;
    /// Usage invoices not paid in full (nor void) issued before `before`, oldest first.
    fn unpaid_usage_invoices(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<InvoiceRecord>>;
}

impl<T: Transact> CollectionStore for T {
    fn dunning_policies(&self) -> StoreResult<Vec<DunningPolicy>> {
        run_db(self, false, |db| {
            db.rows(&format!("SELECT {POLICY_COLUMNS} FROM dunning_policies ORDER BY owner"), &[])?
                .iter()
                .map(|r| policy_from(r))
                .collect()
        })
    }

    fn put_dunning_policy(&self, p: &DunningPolicy, audit: &AuditEntry) -> StoreResult<()> {
        let days: Vec<String> = p.reminder_days.iter().map(u32::to_string).collect();
        run_db(self, true, |db| {
            db.run(
                "INSERT INTO dunning_policies (owner, payment_terms_days, reminder_days, suspend_after_days, suspend_below, updated_at, \
                 reminder_texts) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner) DO UPDATE SET \
                 payment_terms_days = excluded.payment_terms_days, reminder_days = excluded.reminder_days, \
                 suspend_after_days = excluded.suspend_after_days, suspend_below = excluded.suspend_below, \
                 updated_at = excluded.updated_at, reminder_texts = excluded.reminder_texts",
                &[
                    Value::from(p.owner.key()),
                    Value::from(i64::from(p.payment_terms_days)),
                    Value::from(days.join(",")),
                    Value::from(p.suspend_after_days.map(i64::from)),
                    Value::from(p.suspend_below.clone()),
                    Value::from(p.updated_at.0),
                    Value::from(p.reminder_texts.join(&TEXTS_SEPARATOR.to_string())),
                ],
            )?;
            insert_audit(db, audit)
        })
    }

    fn delete_dunning_policy(&self, owner: PolicyOwner, audit: &AuditEntry) -> StoreResult<bool> {
        run_db(self, true, |db| {
            let n = db.run("DELETE FROM dunning_policies WHERE owner = $1", &[Value::from(owner.key())])?;
            if n > 0 {
                insert_audit(db, audit)?;
            }
            Ok(n > 0)
        })
    }

    fn suspension(&self, party: PartyId) -> StoreResult<Option<Suspension>> {
        run_db(self, false, |db| {
            Ok(suspensions_where(db, "WHERE party_id = $1 AND lifted_at IS NULL", &[Value::from(id_to_db(party.0))])?
                .pop())
        })
    }

    fn suspensions(&self, party: PartyId, limit: u32) -> StoreResult<Vec<Suspension>> {
        run_db(self, false, |db| {
            suspensions_where(
                db,
                "WHERE party_id = $1 ORDER BY id DESC LIMIT $2",
                &[Value::from(id_to_db(party.0)), Value::from(i64::from(limit))],
            )
        })
    }

    fn suspensions_in_force(&self) -> StoreResult<Vec<Suspension>> {
        run_db(self, false, |db| suspensions_where(db, "WHERE lifted_at IS NULL ORDER BY party_id", &[]))
    }

    fn unpaid_usage_invoices(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<InvoiceRecord>> {
        run_db(self, false, |db| {
            crate::invoices::invoice_where(
                db,
                "WHERE kind = 'usage' AND status IN ('open', 'partially_paid') AND created_at < $1 ORDER BY id LIMIT $2",
                &[Value::from(before.0), Value::from(i64::from(limit))],
            )
        })
    }
}
