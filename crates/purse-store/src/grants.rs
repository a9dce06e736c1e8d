//! Credit grants and what moved their remainders, written once for both backends over
//! [`Db`]: the ledger's batch writes them in its transaction ([`write`]), the engine loads
//! an account's open grants with the account ([`open_of`]), and [`GrantStore`] answers the
//! application's questions.

use purse_core::{
    AccountId, Amount, BatchOutput, Grant, GrantId, GrantState, GrantUse, GrantUseKind, PartyId, Rollover, Timestamp,
    TransferId,
};

use crate::codec::{self, id_from_db, id_to_db};
use crate::credit::Value;
use crate::invoices::{run_db, Db, Transact};
use crate::{StoreError, StoreResult};

/// A grant is read joined with its balance; the order is [`grant_from`]'s.
/// An open grant's remainder is kept with its account's balance (`balances.grants`).
const GRANT_SELECT: &str = "SELECT g.id, g.client_id, g.client_tenant, g.account_id, g.kind, g.funding, g.priority, \
     g.amount, b.grants, g.used_up_at, g.effective_at, g.expires_at, g.scope, g.rollover_max, g.rollover_us, g.state, \
     g.transfer_id, g.rolled_from, g.created_at, g.closed_at, g.granted_by, g.reason \
     FROM grants g JOIN balances b ON b.account_id = g.account_id";
const GRANT_COLUMNS: &str = "id, client_id, client_tenant, account_id, kind, funding, priority, amount, used_up_at, \
     effective_at, expires_at, scope, rollover_max, rollover_us, state, transfer_id, rolled_from, created_at, closed_at, \
     granted_by, reason";
const GRANT_FIELDS: usize = 21;
const USE_COLUMNS: &str = "grant_id, account_id, transfer_id, kind, amount, at";
/// Rows per multi-row statement: a handful of sizes, so every statement stays prepared.
const ROWS: [usize; 4] = [64, 16, 4, 1];

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}

fn id(v: u64) -> Value {
    int(id_to_db(v))
}

fn text(t: &str) -> Value {
    Value::Text(Some(t.to_owned()))
}

fn bad(what: &str) -> StoreError {
    StoreError::Other(format!("grants: bad {what}"))
}

/// A grant's scope in one column: services are printable, so a line break separates them.
fn scope(services: &[String]) -> String {
    services.join("\n")
}

fn grant_row(g: &Grant) -> [Value; GRANT_FIELDS] {
    [
        id(g.id.0),
        text(g.client_id.as_str()),
        text(&codec::tenant(g.client_id.tenant())),
        id(g.account.0),
        text(&g.kind),
        text(codec::system_role(g.funding)),
        int(i64::from(g.priority)),
        int(g.amount.0),
        Value::Int(g.used_up_at.map(|t| t.0)),
        int(g.effective_at.0),
        Value::Int(g.expires_at.map(|t| t.0)),
        text(&scope(&g.scope)),
        Value::Int(g.rollover.map(|r| r.max.0)),
        Value::Int(g.rollover.map(|r| r.valid_for_us)),
        text(g.state.as_str()),
        Value::Int(g.transfer.map(|t| id_to_db(t.0))),
        Value::Int(g.rolled_from.map(|t| id_to_db(t.0))),
        int(g.created_at.0),
        Value::Int(g.closed_at.map(|t| t.0)),
        text(&g.by),
        Value::Text(g.reason.clone()),
    ]
}

fn grant_from(r: &[Value]) -> StoreResult<Grant> {
    let rollover = match (r[13].opt_int()?, r[14].opt_int()?) {
        (Some(max), Some(us)) => Some(Rollover { max: Amount(max), valid_for_us: us }),
        _ => None,
    };
    let services = r[12].text()?;
    let id = GrantId(id_from_db(r[0].int()?));
    let state = GrantState::parse(&r[15].text()?).ok_or_else(|| bad("state"))?;
    let (remaining, reserved) = if state == GrantState::Open {
        codec::grant_balance(r[8].opt_text()?.as_deref(), id)?
    } else {
        (Amount::ZERO, Amount::ZERO)
    };
    Ok(Grant {
        id,
        client_id: codec::client_id(&r[2].text()?, &r[1].text()?)?,
        account: AccountId(id_from_db(r[3].int()?)),
        kind: r[4].text()?,
        funding: codec::parse_system_role(&r[5].text()?)?,
        priority: u32::try_from(r[6].int()?).map_err(|_| bad("priority"))?,
        amount: Amount(r[7].int()?),
        remaining,
        reserved,
        used_up_at: r[9].opt_int()?.map(Timestamp),
        effective_at: Timestamp(r[10].int()?),
        expires_at: r[11].opt_int()?.map(Timestamp),
        scope: if services.is_empty() { Vec::new() } else { services.split('\n').map(str::to_owned).collect() },
        rollover,
        state,
        transfer: r[16].opt_int()?.map(|t| TransferId(id_from_db(t))),
        rolled_from: r[17].opt_int()?.map(|t| GrantId(id_from_db(t))),
        created_at: Timestamp(r[18].int()?),
        closed_at: r[19].opt_int()?.map(Timestamp),
        by: r[20].text()?,
        reason: r[21].opt_text()?,
    })
}

fn use_from(r: &[Value]) -> StoreResult<GrantUse> {
    Ok(GrantUse {
        grant: GrantId(id_from_db(r[0].int()?)),
        account: AccountId(id_from_db(r[1].int()?)),
        transfer: r[2].opt_int()?.map(|t| TransferId(id_from_db(t))),
        kind: GrantUseKind::parse(&r[3].text()?).ok_or_else(|| bad("use kind"))?,
        amount: Amount(r[4].int()?),
        at: Timestamp(r[5].int()?),
    })
}

/// `($1,…,$n),($n+1,…)`: `rows` tuples of `width` placeholders.
fn tuples(rows: usize, width: usize) -> String {
    let mut sql = String::new();
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 1..=width {
            if j > 1 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", i * width + j));
        }
        sql.push(')');
    }
    sql
}

/// Inserts rows with few statements of a handful of sizes.
fn insert_all<const N: usize>(db: &mut dyn Db, prefix: &str, suffix: &str, rows: &[[Value; N]]) -> StoreResult<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let size = ROWS.into_iter().find(|s| *s <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        let sql = format!("{prefix}{}{suffix}", tuples(size, N));
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        db.run(&sql, &params)?;
        rest = tail;
    }
    Ok(())
}

/// `$1,…,$n` for an `IN` list.
fn list(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

/// Runs `sql` (with `{}` where the `IN` list goes) over `ids` in chunks of a few sizes.
fn rows_in(db: &mut dyn Db, sql: &str, ids: &[u64]) -> StoreResult<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    let mut rest = ids;
    while !rest.is_empty() {
        let size = ROWS.into_iter().find(|s| *s <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        let params: Vec<Value> = chunk.iter().map(|i| id(*i)).collect();
        out.extend(db.rows(&sql.replace("{}", &list(size)), &params)?);
        rest = tail;
    }
    Ok(out)
}

/// Writes a batch's grants (made or changed) and their uses, in the batch's transaction.
pub fn write(db: &mut dyn Db, out: &BatchOutput) -> StoreResult<()> {
    if !out.grants.is_empty() {
        let rows: Vec<[Value; GRANT_FIELDS]> = out.grants.iter().map(grant_row).collect();
        insert_all(
            db,
            &format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES "),
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, closed_at = excluded.closed_at, \
             used_up_at = excluded.used_up_at",
            &rows,
        )?;
    }
    if !out.grant_uses.is_empty() {
        let rows: Vec<[Value; 6]> = out
            .grant_uses
            .iter()
            .map(|u| {
                [
                    id(u.grant.0),
                    id(u.account.0),
                    Value::Int(u.transfer.map(|t| id_to_db(t.0))),
                    text(u.kind.as_str()),
                    int(u.amount.0),
                    int(u.at.0),
                ]
            })
            .collect();
        insert_all(db, &format!("INSERT INTO grant_uses ({USE_COLUMNS}) VALUES "), "", &rows)?;
    }
    Ok(())
}

/// The open grants of these accounts, oldest first: what the ledger keeps with each.
pub fn open_of(db: &mut dyn Db, accounts: &[AccountId]) -> StoreResult<Vec<Grant>> {
    let ids: Vec<u64> = accounts.iter().map(|a| a.0).collect();
    let sql = format!("{GRANT_SELECT} WHERE g.state = 'open' AND g.account_id IN ({{}}) ORDER BY g.id");
    rows_in(db, &sql, &ids)?.iter().map(|r| grant_from(r)).collect()
}

/// Puts each account's open grants in it.
pub fn attach(db: &mut dyn Db, accounts: &mut [purse_core::Account]) -> StoreResult<()> {
    let ids: Vec<AccountId> = accounts.iter().filter(|a| !a.is_system()).map(|a| a.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    for g in open_of(db, &ids)? {
        if let Some(a) = accounts.iter_mut().find(|a| a.id == g.account) {
            a.add_grant(g);
        }
    }
    Ok(())
}

/// Everything that moved `grant`'s remainder, oldest first: the charges it paid (found on
/// its account's postings since it was made, newest first, at most `limit` of them) and its
/// returns, expiry, rollover or void.
pub fn history(
    reader: &dyn crate::Reader,
    grants: &dyn GrantStore,
    grant: &Grant,
    limit: usize,
) -> StoreResult<Vec<GrantUse>> {
    const PAGE: u32 = 500;
    let mut uses = grants.uses_of(grant.id)?;
    let mut paid = Vec::new();
    let mut before = None;
    'pages: loop {
        let page = reader.journal(crate::JournalQuery { account: grant.account, before, limit: PAGE })?;
        for t in &page {
            // A grant's id is in the postings' sequence: nothing before it can be its.
            if t.id.0 < grant.id.0 || paid.len() >= limit {
                break 'pages;
            }
            if let Some((_, amount)) = t.grant_parts.iter().find(|(g, _)| *g == grant.id) {
                paid.push(GrantUse {
                    grant: grant.id,
                    account: grant.account,
                    transfer: Some(t.id),
                    kind: GrantUseKind::Charge,
                    amount: *amount,
                    at: t.posted_at,
                });
            }
        }
        match page.last() {
            Some(t) if page.len() == PAGE as usize => before = Some(t.id),
            _ => break,
        }
    }
    uses.extend(paid);
    uses.sort_by_key(|u| (u.at, u.transfer.map_or(u64::MAX, |t| t.0)));
    Ok(uses)
}

/// Which grants to list.
#[derive(Clone, Debug, Default)]
pub struct GrantQuery {
    /// Only the grants of these accounts (a customer's wallet and subscriber accounts).
    pub accounts: Vec<AccountId>,
    /// Only open grants.
    pub open_only: bool,
    /// Only grants with an id below this (the cursor of the previous page), newest first.
    pub before: Option<GrantId>,
    pub limit: u32,
}

/// A recurring grant: `amount` at the start of every monthly period (on `day`, UTC), valid
/// until the next period starts, its unused part rolling over up to `rollover_max` for
/// `rollover_days`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub id: u64,
    pub party: PartyId,
    pub account: AccountId,
    pub amount: Amount,
    pub kind: String,
    pub priority: u32,
    pub scope: Vec<String>,
    pub day: u8,
    pub rollover_max: Option<Amount>,
    pub rollover_days: Option<u32>,
    /// When the next period's grant is due.
    pub next_at: Timestamp,
    pub created_at: Timestamp,
    pub by: String,
    pub reason: String,
    pub ended_at: Option<Timestamp>,
}

const ALLOWANCE_COLUMNS: &str = "id, party_id, account_id, amount, kind, priority, scope, day, rollover_max, \
     rollover_days, next_at, created_at, granted_by, reason, ended_at";

fn allowance_from(r: &[Value]) -> StoreResult<Allowance> {
    let services = r[6].text()?;
    Ok(Allowance {
        id: id_from_db(r[0].int()?),
        party: PartyId(id_from_db(r[1].int()?)),
        account: AccountId(id_from_db(r[2].int()?)),
        amount: Amount(r[3].int()?),
        kind: r[4].text()?,
        priority: u32::try_from(r[5].int()?).map_err(|_| bad("priority"))?,
        scope: if services.is_empty() { Vec::new() } else { services.split('\n').map(str::to_owned).collect() },
        day: u8::try_from(r[7].int()?).map_err(|_| bad("day"))?,
        rollover_max: r[8].opt_int()?.map(Amount),
        rollover_days: r[9].opt_int()?.map(|d| u32::try_from(d).unwrap_or(0)),
        next_at: Timestamp(r[10].int()?),
        created_at: Timestamp(r[11].int()?),
        by: r[12].text()?,
        reason: r[13].text()?,
        ended_at: r[14].opt_int()?.map(Timestamp),
    })
}

/// What the scheduler tells a customer about a grant, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantNotice {
    Expiring,
    UsedUp,
}

impl GrantNotice {
    fn column(self) -> &'static str {
        match self {
            GrantNotice::Expiring => "expiring_noticed_at",
            GrantNotice::UsedUp => "used_up_noticed_at",
        }
    }
}

/// The application's questions about grants.
pub trait GrantStore: Send + Sync {
    fn grant(&self, id: GrantId) -> StoreResult<Option<Grant>>;
    fn grant_by_transfer(&self, transfer: TransferId) -> StoreResult<Option<Grant>>;
    /// Newest first.
    fn grants(&self, query: &GrantQuery) -> StoreResult<Vec<Grant>>;
    /// What moved the grant's remainder besides the charges it paid (those are on the
    /// postings: see [`history`]), oldest first.
    fn uses_of(&self, grant: GrantId) -> StoreResult<Vec<GrantUse>>;
    /// Open grants whose expiry is at or before `at`, soonest first: the sweep's work.
    fn expiring(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<Grant>>;

    /// Grants to tell about: open ones with credit left that expire within `lead_us` of
    /// `now` (not told yet), and used-up ones (not told yet).
    fn due_notices(&self, now: Timestamp, lead_us: i64, limit: u32) -> StoreResult<Vec<(Grant, GrantNotice)>>;
    /// Marks the grant told about `notice` and records `batch` (its notification) in the
    /// same transaction; `false` when another process told first.
    fn tell(&self, grant: GrantId, notice: GrantNotice, now: Timestamp, batch: &crate::AlertBatch)
        -> StoreResult<bool>;

    /// Stores a recurring grant (its `id` is chosen by the store).
    fn create_allowance(&self, allowance: &Allowance) -> StoreResult<Allowance>;
    fn allowance(&self, id: u64) -> StoreResult<Option<Allowance>>;
    /// A customer's recurring grants, oldest first (ended ones too).
    fn allowances_of(&self, party: PartyId) -> StoreResult<Vec<Allowance>>;
    /// Recurring grants whose next period is due at `now`.
    fn due_allowances(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Allowance>>;
    /// Moves a recurring grant's next period on from `from` to `to`; `false` when another
    /// process moved it first.
    fn advance_allowance(&self, id: u64, from: Timestamp, to: Timestamp) -> StoreResult<bool>;
    /// Stops a recurring grant; `false` when it had ended already.
    fn end_allowance(&self, id: u64, at: Timestamp) -> StoreResult<bool>;
}

impl<T: Transact> GrantStore for T {
    fn grant(&self, grant: GrantId) -> StoreResult<Option<Grant>> {
        run_db(self, false, |db| {
            let sql = format!("{GRANT_SELECT} WHERE g.id = $1");
            db.rows(&sql, &[id(grant.0)])?.first().map(|r| grant_from(r)).transpose()
        })
    }

    fn grant_by_transfer(&self, transfer: TransferId) -> StoreResult<Option<Grant>> {
        run_db(self, false, |db| {
            let sql = format!("{GRANT_SELECT} WHERE g.transfer_id = $1");
            db.rows(&sql, &[id(transfer.0)])?.first().map(|r| grant_from(r)).transpose()
        })
    }

    fn grants(&self, q: &GrantQuery) -> StoreResult<Vec<Grant>> {
        if q.accounts.is_empty() {
            return Ok(Vec::new());
        }
        run_db(self, false, |db| {
            let n = q.accounts.len();
            let mut params: Vec<Value> = q.accounts.iter().map(|a| id(a.0)).collect();
            let mut sql = format!("{GRANT_SELECT} WHERE g.account_id IN ({})", list(n));
            if q.open_only {
                sql.push_str(" AND g.state = 'open'");
            }
            if let Some(before) = q.before {
                params.push(id(before.0));
                sql.push_str(&format!(" AND g.id < ${}", params.len()));
            }
            params.push(int(i64::from(q.limit)));
            sql.push_str(&format!(" ORDER BY g.id DESC LIMIT ${}", params.len()));
            db.rows(&sql, &params)?.iter().map(|r| grant_from(r)).collect()
        })
    }

    fn uses_of(&self, grant: GrantId) -> StoreResult<Vec<GrantUse>> {
        run_db(self, false, |db| {
            let sql =
                format!("SELECT {USE_COLUMNS} FROM grant_uses WHERE grant_id = $1 ORDER BY at, transfer_id NULLS LAST");
            db.rows(&sql, &[id(grant.0)])?.iter().map(|r| use_from(r)).collect()
        })
    }

    fn expiring(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<Grant>> {
        run_db(self, false, |db| {
            let sql = format!(
                "{GRANT_SELECT} WHERE g.state = 'open' AND g.expires_at <= $1 ORDER BY g.expires_at, g.id LIMIT $2"
            );
            db.rows(&sql, &[int(at.0), int(i64::from(limit))])?.iter().map(|r| grant_from(r)).collect()
        })
    }

    fn due_notices(&self, now: Timestamp, lead_us: i64, limit: u32) -> StoreResult<Vec<(Grant, GrantNotice)>> {
        run_db(self, false, |db| {
            let expiring = format!(
                "{GRANT_SELECT} WHERE g.state = 'open' AND g.expiring_noticed_at IS NULL AND g.expires_at > $1 \
                 AND g.expires_at <= $2 ORDER BY g.expires_at, g.id LIMIT $3"
            );
            let used_up = format!(
                "{GRANT_SELECT} WHERE g.used_up_at IS NOT NULL AND g.used_up_noticed_at IS NULL \
                 AND g.state IN ('open', 'used_up') ORDER BY g.id LIMIT $1"
            );
            let mut out = Vec::new();
            let params = [int(now.0), int(now.0.saturating_add(lead_us)), int(i64::from(limit))];
            for r in db.rows(&expiring, &params)? {
                let g = grant_from(&r)?;
                if g.remaining.is_positive() {
                    out.push((g, GrantNotice::Expiring));
                }
            }
            for r in db.rows(&used_up, &[int(i64::from(limit))])? {
                out.push((grant_from(&r)?, GrantNotice::UsedUp));
            }
            Ok(out)
        })
    }

    fn tell(
        &self,
        grant: GrantId,
        notice: GrantNotice,
        now: Timestamp,
        batch: &crate::AlertBatch,
    ) -> StoreResult<bool> {
        run_db(self, true, |db| {
            let sql = format!("UPDATE grants SET {0} = $1 WHERE id = $2 AND {0} IS NULL", notice.column());
            if db.run(&sql, &[int(now.0), id(grant.0)])? != 1 {
                return Ok(false);
            }
            crate::alert_sql::record(db, batch, now)?;
            Ok(true)
        })
    }

    fn create_allowance(&self, a: &Allowance) -> StoreResult<Allowance> {
        run_db(self, true, |db| {
            let rows = db.rows(
                "INSERT INTO allowances (party_id, account_id, amount, kind, priority, scope, day, rollover_max, \
                 rollover_days, next_at, created_at, granted_by, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                &[
                    id(a.party.0),
                    id(a.account.0),
                    int(a.amount.0),
                    text(&a.kind),
                    int(i64::from(a.priority)),
                    text(&scope(&a.scope)),
                    int(i64::from(a.day)),
                    Value::Int(a.rollover_max.map(|m| m.0)),
                    Value::Int(a.rollover_days.map(i64::from)),
                    int(a.next_at.0),
                    int(a.created_at.0),
                    text(&a.by),
                    text(&a.reason),
                ],
            )?;
            let new = rows.first().ok_or_else(|| bad("allowance id"))?[0].int()?;
            Ok(Allowance { id: id_from_db(new), ..a.clone() })
        })
    }

    fn allowance(&self, allowance: u64) -> StoreResult<Option<Allowance>> {
        run_db(self, false, |db| {
            let sql = format!("SELECT {ALLOWANCE_COLUMNS} FROM allowances WHERE id = $1");
            db.rows(&sql, &[id(allowance)])?.first().map(|r| allowance_from(r)).transpose()
        })
    }

    fn allowances_of(&self, party: PartyId) -> StoreResult<Vec<Allowance>> {
        run_db(self, false, |db| {
            let sql = format!("SELECT {ALLOWANCE_COLUMNS} FROM allowances WHERE party_id = $1 ORDER BY id");
            db.rows(&sql, &[id(party.0)])?.iter().map(|r| allowance_from(r)).collect()
        })
    }

    fn due_allowances(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Allowance>> {
        run_db(self, false, |db| {
            let sql = format!(
                "SELECT {ALLOWANCE_COLUMNS} FROM allowances WHERE ended_at IS NULL AND next_at <= $1 \
                 ORDER BY next_at, id LIMIT $2"
            );
            db.rows(&sql, &[int(now.0), int(i64::from(limit))])?.iter().map(|r| allowance_from(r)).collect()
        })
    }

    fn advance_allowance(&self, allowance: u64, from: Timestamp, to: Timestamp) -> StoreResult<bool> {
        run_db(self, true, |db| {
            let sql = "UPDATE allowances SET next_at = $1 WHERE id = $2 AND next_at = $3";
            Ok(db.run(sql, &[int(to.0), id(allowance), int(from.0)])? == 1)
        })
    }

    fn end_allowance(&self, allowance: u64, at: Timestamp) -> StoreResult<bool> {
        run_db(self, true, |db| {
            let sql = "UPDATE allowances SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL";
            Ok(db.run(sql, &[int(at.0), id(allowance)])? == 1)
        })
    }
}
