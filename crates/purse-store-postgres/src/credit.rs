//! [`CreditStore`] on PostgreSQL: the shared SQL of `purse_store::credit`.

use postgres::{GenericClient, Row};
use purse_core::{AccountId, LimitChange, PartyId, Timestamp};
use purse_store::codec::{id_from_db, id_to_db};
use purse_store::credit::{self, sql, AuditEntry, AuditQuery, ClassRecord, CreditPolicy, CreditStore, LimitRow, Value};
use purse_store::StoreResult;

use crate::db::bind;
use crate::db::{atomically, rows};
use crate::{err, PgReader};

fn run(c: &mut impl GenericClient, sql: &str, values: &[Value]) -> Result<u64, postgres::Error> {
    c.execute(sql, &bind(values))
}

fn query(c: &mut impl GenericClient, sql: &str, values: &[Value]) -> StoreResult<Vec<Row>> {
    c.query(sql, &bind(values)).map_err(err)
}

fn class_from_row(r: &Row) -> StoreResult<ClassRecord> {
    Ok(credit::class_from(r.get(0), r.get(1), r.get(2), r.get(3), (r.get(4), r.get(5), r.get(6)), r.get(7)))
}

fn policy_from_row(r: &Row) -> StoreResult<CreditPolicy> {
    credit::policy_from(r.get(0), r.get(1), r.get::<_, &str>(2), (r.get(3), r.get(4), r.get(5)), r.get(6))
}

fn audit_from_row(r: &Row) -> StoreResult<credit::AuditEntry> {
    Ok(credit::audit_from(r.get(0), r.get(1), r.get(2), r.get(3), (r.get(4), r.get(5), r.get(6)), r.get(7), r.get(8)))
}

fn limit_from_row(r: &Row) -> StoreResult<LimitChange> {
    credit::limit_from(LimitRow {
        account: r.get(0),
        party: r.get(1),
        currency: r.get(2),
        scale: r.get(3),
        kind: r.get(4),
        at: r.get(5),
        recorded_at: r.get(6),
        old_limit: r.get(7),
        new_limit: r.get(8),
        old_increase: r.get(9),
        old_until: r.get(10),
        new_increase: r.get(11),
        new_until: r.get(12),
        by: r.get(13),
        reason: r.get(14),
    })
}

fn insert_audit(c: &mut impl GenericClient, e: &AuditEntry) -> Result<u64, postgres::Error> {
    run(c, sql::INSERT_AUDIT, &credit::audit_params(e))
}

/// Writes a batch's credit limit changes and their audit entries (in the batch's transaction).
pub(crate) fn write_limit_changes(c: &mut impl GenericClient, changes: &[LimitChange]) -> Result<(), postgres::Error> {
    for change in changes {
        run(c, sql::INSERT_LIMIT, &credit::limit_params(change))?;
        insert_audit(c, &credit::limit_audit(change))?;
    }
    Ok(())
}

/// Writes the audit entries of postings made for someone else (in the batch's transaction).
pub(crate) fn write_money_notes(
    c: &mut impl GenericClient,
    notes: &[purse_core::MoneyNote],
) -> Result<(), postgres::Error> {
    for note in notes {
        insert_audit(c, &credit::note_audit(note))?;
    }
    Ok(())
}

impl CreditStore for PgReader {
    fn classes(&self) -> StoreResult<Vec<ClassRecord>> {
        self.with(|c| rows(query(c, sql::CLASSES, &[])?, class_from_row))
    }

    fn put_class(&self, class: &ClassRecord, audit: &AuditEntry) -> StoreResult<ClassRecord> {
        let mut stored = class.clone();
        self.with(|c| {
            atomically(c, |tx| {
                let mut values = credit::class_params(class);
                if class.id == 0 {
                    let row = query(tx, sql::INSERT_CLASS, &values)?;
                    stored.id = id_from_db(row[0].get(0));
                } else {
                    values.push(Value::from(id_to_db(class.id)));
                    run(tx, sql::UPDATE_CLASS, &values).map_err(err)?;
                }
                let mut audit = audit.clone();
                audit.entity_id = stored.id.to_string();
                insert_audit(tx, &audit).map_err(err)?;
                Ok(true)
            })
        })?;
        Ok(stored)
    }

    fn credit_policy(&self, party: PartyId) -> StoreResult<Option<CreditPolicy>> {
        self.with(|c| {
            query(c, sql::POLICY, &[Value::from(id_to_db(party.0))])?.first().map(policy_from_row).transpose()
        })
    }

    fn credit_policies(&self) -> StoreResult<Vec<CreditPolicy>> {
        self.with(|c| rows(query(c, sql::POLICIES, &[])?, policy_from_row))
    }

    fn put_credit_policy(&self, policy: &CreditPolicy, audit: &AuditEntry) -> StoreResult<()> {
        self.with(|c| {
            atomically(c, |tx| {
                run(tx, sql::PUT_POLICY, &credit::policy_params(policy)).map_err(err)?;
                insert_audit(tx, audit).map_err(err)?;
                Ok(true)
            })
        })?;
        Ok(())
    }

    fn limit_history(&self, account: AccountId) -> StoreResult<Vec<LimitChange>> {
        self.with(|c| rows(query(c, sql::LIMIT_HISTORY, &[Value::from(id_to_db(account.0))])?, limit_from_row))
    }

    fn expired_increases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<(AccountId, Timestamp)>> {
        self.with(|c| {
            let found = query(c, sql::EXPIRED, &[Value::from(now.0), Value::from(i64::from(limit))])?;
            Ok(found.iter().map(|r| (AccountId(id_from_db(r.get(0))), Timestamp(r.get(1)))).collect())
        })
    }

    fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.with(|c| insert_audit(c, entry).map(|_| ()).map_err(err))
    }

    fn audit_log(&self, query_: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let (text, values) = credit::audit_select(query_);
        self.with(|c| rows(query(c, &text, &values)?, audit_from_row))
    }
}
