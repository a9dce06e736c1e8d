//! The shared SQL ([`purse_store::Db`]) on a PostgreSQL client or transaction, and
//! [`Transact`] for the reader's connection.

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row};
use purse_store::credit::Value;
use purse_store::{Db, StoreError, StoreResult, Transact};

use crate::{err, PgReader};

pub(crate) struct Pg<'a, C: GenericClient>(pub &'a mut C);

pub(crate) fn bind(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| match v {
            Value::Int(i) => i as &(dyn ToSql + Sync),
            Value::Text(t) => t as &(dyn ToSql + Sync),
        })
        .collect()
}

impl<C: GenericClient> Db for Pg<'_, C> {
    fn rows(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Vec<Value>>> {
        let rows = self.0.query(sql, &bind(params)).map_err(err)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        let t = r.columns()[i].type_();
                        Ok(if *t == Type::INT8 {
                            Value::Int(r.get::<_, Option<i64>>(i))
                        } else if *t == Type::INT4 {
                            Value::Int(r.get::<_, Option<i32>>(i).map(i64::from))
                        } else if *t == Type::INT2 {
                            Value::Int(r.get::<_, Option<i16>>(i).map(i64::from))
                        } else if *t == Type::BOOL {
                            Value::Int(r.get::<_, Option<bool>>(i).map(i64::from))
                        } else if *t == Type::TEXT || *t == Type::VARCHAR {
                            Value::Text(r.get::<_, Option<String>>(i))
                        } else {
                            return Err(StoreError::Other(format!("postgres: unexpected type {t} in column {i}")));
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn run(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        self.0.execute(sql, &bind(params)).map_err(err)
    }

    fn lock(&mut self, key: i64) -> StoreResult<()> {
        self.0.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(err).map(|_| ())
    }

    fn row_lock(&self, skip_locked: bool) -> &'static str {
        if skip_locked {
            " FOR UPDATE SKIP LOCKED"
        } else {
            " FOR UPDATE"
        }
    }
}

impl Transact for PgReader {
    fn with_db(&self, write: bool, f: &mut dyn FnMut(&mut dyn Db) -> StoreResult<()>) -> StoreResult<()> {
        self.with(|c| {
            if !write {
                return f(&mut Pg(c));
            }
            let mut tx = c.transaction().map_err(err)?;
            f(&mut Pg(&mut tx))?;
            tx.commit().map_err(err)
        })
    }
}

pub(crate) fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Runs `f` in a transaction, committing when it returns `Ok(true)`.
pub(crate) fn atomically(
    c: &mut Client,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> StoreResult<bool>,
) -> StoreResult<bool> {
    let mut tx = c.transaction().map_err(err)?;
    if f(&mut tx)? {
        tx.commit().map_err(err)?;
        Ok(true)
    } else {
        Ok(false) // dropped: rolled back
    }
}
