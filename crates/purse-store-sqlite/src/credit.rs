//! [`CreditStore`] on SQLite: the shared SQL of `purse_store::credit`, with `?1` for `$1`.

use purse_core::{AccountId, LimitChange, PartyId, Timestamp};
use purse_store::codec::{id_from_db, id_to_db};
use purse_store::credit::{self, sql, AuditEntry, AuditQuery, ClassRecord, CreditPolicy, CreditStore, LimitRow, Value};
use purse_store::StoreResult;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

use crate::db::bind;
use crate::db::exclusive;
use crate::{conv, SqliteReader};

/// The shared SQL with SQLite's numbered parameters.
fn q(sql: &str) -> String {
    sql.replace('$', "?")
}

fn class_from_row(r: &Row<'_>) -> rusqlite::Result<ClassRecord> {
    Ok(credit::class_from(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, (r.get(4)?, r.get(5)?, r.get(6)?), r.get(7)?))
}

fn policy_from_row(r: &Row<'_>) -> rusqlite::Result<CreditPolicy> {
    conv(credit::policy_from(
        r.get(0)?,
        r.get(1)?,
        &r.get::<_, String>(2)?,
        (r.get(3)?, r.get(4)?, r.get(5)?),
        r.get(6)?,
    ))
}

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(credit::audit_from(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        (r.get(4)?, r.get(5)?, r.get(6)?),
        r.get(7)?,
        r.get(8)?,
    ))
}

fn limit_from_row(r: &Row<'_>) -> rusqlite::Result<LimitChange> {
    conv(credit::limit_from(LimitRow {
        account: r.get(0)?,
        party: r.get(1)?,
        currency: r.get(2)?,
        scale: r.get(3)?,
        kind: r.get(4)?,
        at: r.get(5)?,
        recorded_at: r.get(6)?,
        old_limit: r.get(7)?,
        new_limit: r.get(8)?,
        old_increase: r.get(9)?,
        old_until: r.get(10)?,
        new_increase: r.get(11)?,
        new_until: r.get(12)?,
        by: r.get(13)?,
        reason: r.get(14)?,
    }))
}

pub(crate) fn insert_audit(c: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    c.prepare_cached(&q(sql::INSERT_AUDIT))?.execute(params_from_iter(bind(&credit::audit_params(e))))?;
    Ok(())
}

/// Writes a batch's credit limit changes and their audit entries (in the batch's transaction).
pub(crate) fn write_limit_changes(c: &Connection, changes: &[LimitChange]) -> rusqlite::Result<()> {
    for change in changes {
        c.prepare_cached(&q(sql::INSERT_LIMIT))?.execute(params_from_iter(bind(&credit::limit_params(change))))?;
        insert_audit(c, &credit::limit_audit(change))?;
    }
    Ok(())
}

/// Writes the audit entries of postings made for someone else (in the batch's transaction).
pub(crate) fn write_money_notes(c: &Connection, notes: &[purse_core::MoneyNote]) -> rusqlite::Result<()> {
    for note in notes {
        insert_audit(c, &credit::note_audit(note))?;
    }
    Ok(())
}

impl CreditStore for SqliteReader {
    fn classes(&self) -> StoreResult<Vec<ClassRecord>> {
        self.with(|c| c.prepare_cached(sql::CLASSES)?.query_map([], class_from_row)?.collect())
    }

    fn put_class(&self, class: &ClassRecord, audit: &AuditEntry) -> StoreResult<ClassRecord> {
        let mut stored = class.clone();
        self.with(|c| {
            exclusive(c, |c| {
                let mut values = credit::class_params(class);
                if class.id == 0 {
                    let id: i64 = c
                        .prepare_cached(&q(sql::INSERT_CLASS))?
                        .query_row(params_from_iter(bind(&values)), |r| r.get(0))?;
                    stored.id = id_from_db(id);
                } else {
                    values.push(Value::from(id_to_db(class.id)));
                    c.prepare_cached(&q(sql::UPDATE_CLASS))?.execute(params_from_iter(bind(&values)))?;
                }
                let mut audit = audit.clone();
                audit.entity_id = stored.id.to_string();
                insert_audit(c, &audit)?;
                Ok(true)
            })
        })?;
        Ok(stored)
    }

    fn credit_policy(&self, party: PartyId) -> StoreResult<Option<CreditPolicy>> {
        self.with(|c| c.prepare_cached(&q(sql::POLICY))?.query_row([id_to_db(party.0)], policy_from_row).optional())
    }

    fn credit_policies(&self) -> StoreResult<Vec<CreditPolicy>> {
        self.with(|c| c.prepare_cached(sql::POLICIES)?.query_map([], policy_from_row)?.collect())
    }

    fn put_credit_policy(&self, policy: &CreditPolicy, audit: &AuditEntry) -> StoreResult<()> {
        self.with(|c| {
            exclusive(c, |c| {
                c.prepare_cached(&q(sql::PUT_POLICY))?
                    .execute(params_from_iter(bind(&credit::policy_params(policy))))?;
                insert_audit(c, audit)?;
                Ok(true)
            })
        })?;
        Ok(())
    }

    fn limit_history(&self, account: AccountId) -> StoreResult<Vec<LimitChange>> {
        self.with(|c| {
            c.prepare_cached(&q(sql::LIMIT_HISTORY))?.query_map([id_to_db(account.0)], limit_from_row)?.collect()
        })
    }

    fn expired_increases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<(AccountId, Timestamp)>> {
        self.with(|c| {
            c.prepare_cached(&q(sql::EXPIRED))?
                .query_map(rusqlite::params![now.0, limit], |r| {
                    Ok((AccountId(id_from_db(r.get(0)?)), Timestamp(r.get(1)?)))
                })?
                .collect()
        })
    }

    fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.with(|c| insert_audit(c, entry))
    }

    fn audit_log(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let (text, values) = credit::audit_select(query);
        self.with(|c| c.prepare(&q(&text))?.query_map(params_from_iter(bind(&values)), audit_from_row)?.collect())
    }
}
