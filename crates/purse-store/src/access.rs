//! Who may get in, written once for both backends over [`Db`]: API keys, portal users,
//! their sessions, and failed logins. Any backend that can run the shared SQL
//! ([`Transact`]) keeps them.

use purse_core::Timestamp;

use crate::codec::{self, id_from_db, id_to_db};
use crate::columns::{API_KEY_COLUMNS, SESSION_COLUMNS, USER_COLUMNS};
use crate::credit::Value;
use crate::invoices::{run_db, Db, Transact};
use crate::{AccessStore, ApiKeyRecord, NewApiKey, NewUser, SessionRecord, StoreResult, UserRecord};

fn text(t: &str) -> Value {
    Value::from(t.to_owned())
}

fn id(v: u64) -> Value {
    Value::from(id_to_db(v))
}

fn party(p: Option<u64>) -> Value {
    Value::from(p.map(id_to_db))
}

fn opt_time(v: &Value) -> StoreResult<Option<Timestamp>> {
    Ok(v.opt_int()?.map(Timestamp))
}

fn key_from(r: &[Value]) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: id_from_db(r[0].int()?),
        prefix: r[1].text()?,
        hash: r[2].text()?,
        name: r[3].text()?,
        role: codec::parse_role(&r[4].text()?, r[5].opt_int()?.map(id_from_db))?,
        scope: codec::parse_scope(&r[6].text()?)?,
        created_at: Timestamp(r[7].int()?),
        revoked_at: opt_time(&r[8])?,
    })
}

fn user_from(r: &[Value]) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: id_from_db(r[0].int()?),
        email: r[1].text()?,
        name: r[2].text()?,
        password_hash: r[3].text()?,
        role: codec::parse_role(&r[4].text()?, r[5].opt_int()?.map(id_from_db))?,
        scope: codec::parse_scope(&r[6].text()?)?,
        created_at: Timestamp(r[7].int()?),
        disabled_at: opt_time(&r[8])?,
        lang: r[9].opt_text()?,
    })
}

fn session_from(r: &[Value]) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        hash: r[0].text()?,
        user_id: id_from_db(r[1].int()?),
        csrf: r[2].text()?,
        created_at: Timestamp(r[3].int()?),
        expires_at: Timestamp(r[4].int()?),
    })
}

fn failures_from(r: &[Value]) -> StoreResult<(u32, Timestamp)> {
    Ok((u32::try_from(r[0].int()?).unwrap_or(0), Timestamp(r[1].int()?)))
}

/// The rows of `sql`, each read by `from`.
fn all<T>(db: &mut dyn Db, sql: &str, params: &[Value], from: fn(&[Value]) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    db.rows(sql, params)?.iter().map(|r| from(r)).collect()
}

fn first<T>(
    db: &mut dyn Db,
    sql: &str,
    params: &[Value],
    from: fn(&[Value]) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    Ok(all(db, sql, params, from)?.into_iter().next())
}

fn one_int(db: &mut dyn Db, sql: &str, params: &[Value]) -> StoreResult<Option<i64>> {
    db.rows(sql, params)?.first().map(|r| r[0].int()).transpose()
}

/// Both backends keep who may get in on the reader's connection: that is not ledger state,
/// and a write simply waits while a batch holds the write lock.
impl<T: Transact> AccessStore for T {
    fn insert_key(&self, key: &NewApiKey) -> StoreResult<u64> {
        let (role, owner) = codec::role(key.role);
        let params = [
            text(&key.prefix),
            text(&key.hash),
            text(&key.name),
            text(role),
            party(owner),
            text(codec::scope(key.scope)),
            Value::from(key.created_at.0),
        ];
        run_db(self, true, |db| {
            let sql = "INSERT INTO api_keys (prefix, hash, name, role, party_id, scope, created_at) \
                       VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id";
            one_int(db, sql, &params)?.map(id_from_db).ok_or_else(|| crate::StoreError::Other("no id".into()))
        })
    }

    fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        run_db(self, false, |db| first(db, &sql, &[text(hash)], key_from))
    }

    fn keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY id");
        run_db(self, false, |db| all(db, &sql, &[], key_from))
    }

    fn revoke_key(&self, key: u64, at: Timestamp) -> StoreResult<bool> {
        let sql = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        run_db(self, true, |db| Ok(db.run(sql, &[Value::from(at.0), id(key)])? == 1))
    }

    fn insert_user(&self, user: &NewUser) -> StoreResult<Option<u64>> {
        let (role, owner) = codec::role(user.role);
        let params = [
            text(&user.email),
            text(&user.name),
            text(&user.password_hash),
            text(role),
            party(owner),
            text(codec::scope(user.scope)),
            Value::from(user.created_at.0),
        ];
        run_db(self, true, |db| {
            let sql = "INSERT INTO portal_users (email, name, password_hash, role, party_id, scope, created_at) \
                       VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (email) DO NOTHING RETURNING id";
            Ok(one_int(db, sql, &params)?.map(id_from_db))
        })
    }

    fn user(&self, user: u64) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM portal_users WHERE id = $1");
        run_db(self, false, |db| first(db, &sql, &[id(user)], user_from))
    }

    fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM portal_users WHERE email = $1");
        run_db(self, false, |db| first(db, &sql, &[text(email)], user_from))
    }

    fn users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM portal_users ORDER BY id");
        run_db(self, false, |db| all(db, &sql, &[], user_from))
    }

    fn disable_user(&self, user: u64, at: Timestamp) -> StoreResult<bool> {
        run_db(self, true, |db| {
            let changed = db.run(
                "UPDATE portal_users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL",
                &[Value::from(at.0), id(user)],
            )?;
            db.run("DELETE FROM portal_sessions WHERE user_id = $1", &[id(user)])?;
            Ok(changed == 1)
        })
    }

    fn set_user_lang(&self, user: u64, lang: Option<&str>) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE portal_users SET lang = $1 WHERE id = $2",
                &[Value::from(lang.map(str::to_owned)), id(user)],
            )?;
            Ok(())
        })
    }

    fn set_password(&self, user: u64, hash: &str, keep: Option<&str>) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run("UPDATE portal_users SET password_hash = $1 WHERE id = $2", &[text(hash), id(user)])?;
            match keep {
                Some(keep) => {
                    db.run("DELETE FROM portal_sessions WHERE user_id = $1 AND hash <> $2", &[id(user), text(keep)])?
                }
                None => db.run("DELETE FROM portal_sessions WHERE user_id = $1", &[id(user)])?,
            };
            Ok(())
        })
    }

    fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let sql = format!("INSERT INTO portal_sessions ({SESSION_COLUMNS}) VALUES ($1,$2,$3,$4,$5)");
        run_db(self, true, |db| {
            db.run("DELETE FROM portal_sessions WHERE expires_at <= $1", &[Value::from(session.created_at.0)])?;
            db.run(
                &sql,
                &[
                    text(&session.hash),
                    id(session.user_id),
                    text(&session.csrf),
                    Value::from(session.created_at.0),
                    Value::from(session.expires_at.0),
                ],
            )?;
            Ok(())
        })
    }

    fn session(&self, hash: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM portal_sessions WHERE hash = $1");
        run_db(self, false, |db| first(db, &sql, &[text(hash)], session_from))
    }

    fn delete_session(&self, hash: &str) -> StoreResult<bool> {
        run_db(self, true, |db| Ok(db.run("DELETE FROM portal_sessions WHERE hash = $1", &[text(hash)])? == 1))
    }

    fn login_failures(&self, email: &str) -> StoreResult<Option<(u32, Timestamp)>> {
        let sql = "SELECT failures, last_at FROM login_failures WHERE email = $1 AND failures > 0";
        run_db(self, false, |db| first(db, sql, &[text(email)], failures_from))
    }

    fn reserve_login(
        &self,
        email: &str,
        at: Timestamp,
        forget_before: Timestamp,
        wait_s: &dyn Fn(u32, Timestamp) -> i64,
    ) -> StoreResult<Result<u32, i64>> {
        run_db(self, true, |db| {
            db.run("DELETE FROM login_failures WHERE last_at < $1", &[Value::from(forget_before.0)])?;
            db.run(
                "INSERT INTO login_failures (email, failures, last_at) VALUES ($1, 0, 0) ON CONFLICT (email) DO NOTHING",
                &[text(email)],
            )?;
            // The e-mail's row, locked by an update that changes nothing (PostgreSQL; SQLite's
            // write transaction is exclusive already): concurrent attempts, from any process,
            // queue here and each sees the count of the one before.
            let (failures, last) = first(
                db,
                "UPDATE login_failures SET failures = failures WHERE email = $1 RETURNING failures, last_at",
                &[text(email)],
                failures_from,
            )?
            .unwrap_or((0, Timestamp(0)));
            let wait = if failures == 0 { 0 } else { wait_s(failures, last) };
            if wait > 0 {
                return Ok(Err(wait));
            }
            let count = one_int(
                db,
                "UPDATE login_failures SET failures = failures + 1, last_at = $2 WHERE email = $1 RETURNING failures",
                &[text(email), Value::from(at.0)],
            )?;
            Ok(Ok(count.map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))))
        })
    }

    fn clear_login_failures(&self, email: &str) -> StoreResult<()> {
        run_db(self, true, |db| db.run("DELETE FROM login_failures WHERE email = $1", &[text(email)]).map(drop))
    }
}
