//! The shared SQL ([`purse_store::Db`]) on a SQLite connection, and [`Transact`] for the
//! reader's connection (a write runs in `BEGIN IMMEDIATE`).

use purse_store::credit::Value;
use purse_store::{Db, StoreError, StoreResult, Transact};
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{params_from_iter, Connection};

use crate::{err, SqliteReader};

pub(crate) struct Lite<'a>(pub &'a Connection);

pub(crate) fn bind(values: &[Value]) -> impl Iterator<Item = Sql> + '_ {
    values.iter().map(|v| match v {
        Value::Int(Some(i)) => Sql::Integer(*i),
        Value::Text(Some(t)) => Sql::Text(t.clone()),
        Value::Int(None) | Value::Text(None) => Sql::Null,
    })
}

impl Db for Lite<'_> {
    fn rows(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Vec<Value>>> {
        let mut s = self.0.prepare_cached(&sql.replace('$', "?")).map_err(err)?;
        let n = s.column_count();
        let mut rows = s.query(params_from_iter(bind(params))).map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(err)? {
                    ValueRef::Integer(v) => Value::Int(Some(v)),
                    ValueRef::Null => Value::Int(None),
                    ValueRef::Text(t) => Value::Text(Some(String::from_utf8_lossy(t).into_owned())),
                    other => {
                        return Err(StoreError::Other(format!(
                            "sqlite: unexpected {:?} in column {i}",
                            other.data_type()
                        )))
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn run(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let changed = self
            .0
            .prepare_cached(&sql.replace('$', "?"))
            .map_err(err)?
            .execute(params_from_iter(bind(params)))
            .map_err(err)?;
        Ok(changed as u64)
    }

    fn lock(&mut self, _key: i64) -> StoreResult<()> {
        Ok(()) // the write transaction is exclusive
    }

    fn row_lock(&self, _skip_locked: bool) -> &'static str {
        ""
    }
}

impl Transact for SqliteReader {
    fn with_db(&self, write: bool, f: &mut dyn FnMut(&mut dyn Db) -> StoreResult<()>) -> StoreResult<()> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !write {
            return f(&mut Lite(&conn));
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        match f(&mut Lite(&conn)) {
            Ok(()) => conn.execute_batch("COMMIT").map_err(err),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing when it returns `Ok(true)`.
pub(crate) fn exclusive(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<bool>,
) -> rusqlite::Result<bool> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    match f(c) {
        Ok(true) => {
            c.execute_batch("COMMIT")?;
            Ok(true)
        }
        other => {
            c.execute_batch("ROLLBACK")?;
            other
        }
    }
}
