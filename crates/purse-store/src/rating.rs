//! Rate plans, their rates and who uses which, and real-time charging sessions: written once
//! for both backends over [`Db`].

use purse_core::rating::{Increments, Prefix, Price, Rate};
use purse_core::{CurrencyCode, PartyId, Timestamp};

use crate::codec::{self, id_from_db, id_to_db};
use crate::credit::Value;
use crate::invoices::{run_db, Db, Transact};
use crate::{StoreError, StoreResult};

/// A rate plan: rates in one currency, owned by the operator or a reseller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatePlan {
    pub id: u64,
    pub name: String,
    pub currency: CurrencyCode,
    /// The reseller that owns it (sells with it); the operator's when absent.
    pub owner: Option<PartyId>,
    /// How many rates it holds (every version).
    pub rates: u64,
    /// Bumped by every change of its rates: a cached deck of an older version is stale.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which plan a party is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanRole {
    /// What the party pays for usage: a customer's price plan, a reseller's cost plan.
    Pays,
    /// A reseller's plan for its customers that have none of their own.
    CustomersDefault,
}

impl PlanRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanRole::Pays => "pays",
            PlanRole::CustomersDefault => "customers_default",
        }
    }

    pub fn parse(text: &str) -> Option<PlanRole> {
        [PlanRole::Pays, PlanRole::CustomersDefault].into_iter().find(|r| r.as_str() == text)
    }
}

/// A real-time charging session as stored: the columns queries filter on, and the state the
/// application keeps (its own encoding) with a version for compare-and-set writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: u64,
    pub party: PartyId,
    pub account: u64,
    pub status: String,
    /// When Purse closes the session itself unless it hears from it.
    pub expires_at: Timestamp,
    pub version: i64,
    pub state: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub party: Option<PartyId>,
    pub active_only: bool,
    pub limit: u32,
}

/// A usage event no rate matched: refused, and kept to be seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnratedUsage {
    pub party: PartyId,
    /// The client id as its caller sent it.
    pub client_id: String,
    pub account: u64,
    pub service: String,
    pub destination: Option<String>,
    pub quantity: u64,
    pub at: Timestamp,
    /// Why no rate matched, as the refusal said.
    pub reason: String,
    pub recorded_at: Timestamp,
}

pub trait RatingStore: Send + Sync {
    fn create_plan(
        &self,
        name: &str,
        currency: CurrencyCode,
        owner: Option<PartyId>,
        now: Timestamp,
    ) -> StoreResult<RatePlan>;
    fn plans(&self) -> StoreResult<Vec<RatePlan>>;
    fn plan(&self, id: u64) -> StoreResult<Option<RatePlan>>;
    /// Adds `rates` to the plan, replacing a version with the same service, prefix and
    /// effective time; all or nothing. Returns the plan as it now is.
    fn import_rates(&self, plan: u64, rates: &[Rate], now: Timestamp) -> StoreResult<RatePlan>;
    /// The plan's rates, every version, by service, prefix and effective time; `prefix`
    /// narrows to prefixes starting with it.
    fn rates(&self, plan: u64, prefix: Option<&str>, limit: Option<u32>) -> StoreResult<Vec<Rate>>;
    /// Gives `party` the plan for `role` (none: takes it away).
    fn assign_plan(&self, party: PartyId, role: PlanRole, plan: Option<u64>, now: Timestamp) -> StoreResult<()>;
    fn assigned_plans(&self, party: PartyId) -> StoreResult<Vec<(PlanRole, u64)>>;
    /// Every assignment: (party, role, plan).
    fn all_assignments(&self) -> StoreResult<Vec<(PartyId, PlanRole, u64)>>;
    fn session(&self, id: u64) -> StoreResult<Option<SessionRow>>;
    fn session_by_key(&self, tenant: i64, client_key: &str) -> StoreResult<Option<SessionRow>>;
    fn sessions(&self, query: &SessionQuery) -> StoreResult<Vec<SessionRow>>;
    /// Keeps a usage event no rate matched (the same client id again replaces it).
    fn record_unrated(&self, usage: &UnratedUsage) -> StoreResult<()>;
    /// Unrated usage, newest first (of one party, or every party's).
    fn unrated(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<UnratedUsage>>;
    /// Active sessions whose expiry is at or before `now`, oldest first.
    fn expired_sessions(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<SessionRow>>;
}

const PLAN_COLUMNS: &str = "p.id, p.name, p.currency, p.owner_id, \
    (SELECT COUNT(*) FROM rates r WHERE r.plan_id = p.id), p.version, p.created_at, p.updated_at";
const RATE_COLUMNS: &str =
    "service, prefix, description, price, connection_fee, minimum, first_increment, next_increment, unit, effective_from";
const SESSION_COLUMNS: &str = "id, party_id, account_id, status, expires_at, version, state, created_at, updated_at";

fn int(v: i64) -> Value {
    Value::from(v)
}

fn text(t: &str) -> Value {
    Value::from(t.to_owned())
}

fn bad(what: &str) -> StoreError {
    StoreError::Other(format!("a stored {what} is not valid"))
}

fn plan_from(r: &[Value]) -> StoreResult<RatePlan> {
    Ok(RatePlan {
        id: id_from_db(r[0].int()?),
        name: r[1].text()?,
        currency: codec::currency_code(&r[2].text()?)?,
        owner: r[3].opt_int()?.map(|p| PartyId(id_from_db(p))),
        rates: r[4].int()?.max(0) as u64,
        version: r[5].int()?,
        created_at: Timestamp(r[6].int()?),
        updated_at: Timestamp(r[7].int()?),
    })
}

fn rate_from(r: &[Value]) -> StoreResult<Rate> {
    let small = |v: &Value| u32::try_from(v.int()?).map_err(|_| bad("increment"));
    Ok(Rate {
        service: r[0].text()?,
        prefix: Prefix::parse(&r[1].text()?).map_err(|_| bad("prefix"))?,
        description: r[2].text()?,
        price: Price(r[3].int()?),
        connection_fee: Price(r[4].int()?),
        minimum: Price(r[5].int()?),
        increments: Increments { first: small(&r[6])?, next: small(&r[7])? },
        unit: small(&r[8])?,
        effective_from: Timestamp(r[9].int()?),
    })
}

fn session_from(r: &[Value]) -> StoreResult<SessionRow> {
    Ok(SessionRow {
        id: id_from_db(r[0].int()?),
        party: PartyId(id_from_db(r[1].int()?)),
        account: id_from_db(r[2].int()?),
        status: r[3].text()?,
        expires_at: Timestamp(r[4].int()?),
        version: r[5].int()?,
        state: r[6].text()?,
        created_at: Timestamp(r[7].int()?),
        updated_at: Timestamp(r[8].int()?),
    })
}

fn one_plan(db: &mut dyn Db, id: u64) -> StoreResult<Option<RatePlan>> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM rate_plans p WHERE p.id = $1");
    db.rows(&sql, &[int(id_to_db(id))])?.first().map(|r| plan_from(r)).transpose()
}

/// Creates the session of (`tenant`, `client_key`) unless it exists; returns it and whether it
/// is new.
pub fn create_session(
    db: &mut dyn Db,
    tenant: i64,
    client_key: &str,
    row: &SessionRow,
) -> StoreResult<(SessionRow, bool)> {
    let inserted = db.rows(
        "INSERT INTO charging_sessions (client_tenant, client_key, party_id, account_id, status, expires_at, \
                 version, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $8) \
                 ON CONFLICT (client_tenant, client_key) DO NOTHING RETURNING id",
        &[
            int(tenant),
            text(client_key),
            int(id_to_db(row.party.0)),
            int(id_to_db(row.account)),
            text(&row.status),
            int(row.expires_at.0),
            text(&row.state),
            int(row.created_at.0),
        ],
    )?;
    let (sql, params, new) = match inserted.first() {
        Some(r) => (format!("SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE id = $1"), vec![r[0].clone()], true),
        None => (
            format!("SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE client_tenant = $1 AND client_key = $2"),
            vec![int(tenant), text(client_key)],
            false,
        ),
    };
    let row = db.rows(&sql, &params)?.first().map(|r| session_from(r)).transpose()?;
    Ok((row.ok_or_else(|| bad("session"))?, new))
}

/// Replaces the session if its version is still `version`; false when it is not.
pub fn update_session(db: &mut dyn Db, row: &SessionRow, version: i64) -> StoreResult<bool> {
    let n = db.run(
        "UPDATE charging_sessions SET status = $3, expires_at = $4, state = $5, updated_at = $6, \
                 version = version + 1 WHERE id = $1 AND version = $2",
        &[
            int(id_to_db(row.id)),
            int(version),
            text(&row.status),
            int(row.expires_at.0),
            text(&row.state),
            int(row.updated_at.0),
        ],
    )?;
    Ok(n == 1)
}

/// Rows per multi-row insert: few statements, well under PostgreSQL's 65,535 parameters.
const INSERT_ROWS: usize = 500;

impl<T: Transact> RatingStore for T {
    fn create_plan(
        &self,
        name: &str,
        currency: CurrencyCode,
        owner: Option<PartyId>,
        now: Timestamp,
    ) -> StoreResult<RatePlan> {
        run_db(self, true, |db| {
            let rows = db.rows(
                "INSERT INTO rate_plans (name, currency, owner_id, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $4) RETURNING id",
                &[text(name), text(currency.as_str()), Value::from(owner.map(|p| id_to_db(p.0))), int(now.0)],
            )?;
            let id = rows.first().ok_or_else(|| bad("plan id"))?[0].int()?;
            one_plan(db, id_from_db(id))?.ok_or_else(|| bad("plan"))
        })
    }

    fn plans(&self) -> StoreResult<Vec<RatePlan>> {
        run_db(self, false, |db| {
            let sql = format!("SELECT {PLAN_COLUMNS} FROM rate_plans p ORDER BY p.id");
            db.rows(&sql, &[])?.iter().map(|r| plan_from(r)).collect()
        })
    }

    fn plan(&self, id: u64) -> StoreResult<Option<RatePlan>> {
        run_db(self, false, |db| one_plan(db, id))
    }

    fn import_rates(&self, plan: u64, rates: &[Rate], now: Timestamp) -> StoreResult<RatePlan> {
        run_db(self, true, |db| {
            // Two imports into one plan at once would lock the same rows in different orders.
            db.lock(0x5241_5445_0000_0000 | (id_to_db(plan) & 0xffff_ffff))?;
            let plan_id = int(id_to_db(plan));
            for chunk in rates.chunks(INSERT_ROWS) {
                let mut sql = format!("INSERT INTO rates (plan_id, {RATE_COLUMNS}) VALUES ");
                let mut params = Vec::with_capacity(chunk.len() * 11);
                for (i, r) in chunk.iter().enumerate() {
                    let b = i * 11;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('(');
                    for j in 1..=11 {
                        if j > 1 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("${}", b + j));
                    }
                    sql.push(')');
                    params.extend([
                        plan_id.clone(),
                        text(&r.service),
                        text(r.prefix.as_str()),
                        text(&r.description),
                        int(r.price.0),
                        int(r.connection_fee.0),
                        int(r.minimum.0),
                        int(i64::from(r.increments.first)),
                        int(i64::from(r.increments.next)),
                        int(i64::from(r.unit)),
                        int(r.effective_from.0),
                    ]);
                }
                sql.push_str(
                    " ON CONFLICT (plan_id, service, prefix, effective_from) DO UPDATE SET \
                     description = excluded.description, price = excluded.price, \
                     connection_fee = excluded.connection_fee, minimum = excluded.minimum, \
                     first_increment = excluded.first_increment, next_increment = excluded.next_increment, \
                     unit = excluded.unit",
                );
                db.run(&sql, &params)?;
            }
            db.run(
                "UPDATE rate_plans SET version = version + 1, updated_at = $2 WHERE id = $1",
                &[plan_id.clone(), int(now.0)],
            )?;
            one_plan(db, plan)?.ok_or_else(|| bad("plan"))
        })
    }

    fn rates(&self, plan: u64, prefix: Option<&str>, limit: Option<u32>) -> StoreResult<Vec<Rate>> {
        run_db(self, false, |db| {
            let mut sql = format!("SELECT {RATE_COLUMNS} FROM rates WHERE plan_id = $1");
            let mut params = vec![int(id_to_db(plan))];
            if let Some(p) = prefix {
                // Prefixes are digits or `*` (checked before they are stored), so no escaping.
                sql.push_str(" AND prefix LIKE $2");
                params.push(text(&format!("{p}%")));
            }
            sql.push_str(" ORDER BY service, prefix, effective_from");
            if let Some(l) = limit {
                sql.push_str(&format!(" LIMIT {l}"));
            }
            db.rows(&sql, &params)?.iter().map(|r| rate_from(r)).collect()
        })
    }

    fn assign_plan(&self, party: PartyId, role: PlanRole, plan: Option<u64>, now: Timestamp) -> StoreResult<()> {
        run_db(self, true, |db| {
            let key = [int(id_to_db(party.0)), text(role.as_str())];
            db.run("DELETE FROM rate_assignments WHERE party_id = $1 AND role = $2", &key)?;
            if let Some(plan) = plan {
                db.run(
                    "INSERT INTO rate_assignments (party_id, role, plan_id, assigned_at) VALUES ($1, $2, $3, $4)",
                    &[key[0].clone(), key[1].clone(), int(id_to_db(plan)), int(now.0)],
                )?;
            }
            Ok(())
        })
    }

    fn assigned_plans(&self, party: PartyId) -> StoreResult<Vec<(PlanRole, u64)>> {
        run_db(self, false, |db| {
            let rows =
                db.rows("SELECT role, plan_id FROM rate_assignments WHERE party_id = $1", &[int(id_to_db(party.0))])?;
            rows.iter()
                .map(|r| {
                    let role = PlanRole::parse(&r[0].text()?).ok_or_else(|| bad("plan role"))?;
                    Ok((role, id_from_db(r[1].int()?)))
                })
                .collect()
        })
    }

    fn all_assignments(&self) -> StoreResult<Vec<(PartyId, PlanRole, u64)>> {
        run_db(self, false, |db| {
            let rows = db.rows("SELECT party_id, role, plan_id FROM rate_assignments", &[])?;
            rows.iter()
                .map(|r| {
                    let role = PlanRole::parse(&r[1].text()?).ok_or_else(|| bad("plan role"))?;
                    Ok((PartyId(id_from_db(r[0].int()?)), role, id_from_db(r[2].int()?)))
                })
                .collect()
        })
    }

    fn session(&self, id: u64) -> StoreResult<Option<SessionRow>> {
        run_db(self, false, |db| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE id = $1");
            db.rows(&sql, &[int(id_to_db(id))])?.first().map(|r| session_from(r)).transpose()
        })
    }

    fn session_by_key(&self, tenant: i64, client_key: &str) -> StoreResult<Option<SessionRow>> {
        run_db(self, false, |db| {
            let sql =
                format!("SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE client_tenant = $1 AND client_key = $2");
            db.rows(&sql, &[int(tenant), text(client_key)])?.first().map(|r| session_from(r)).transpose()
        })
    }

    fn sessions(&self, query: &SessionQuery) -> StoreResult<Vec<SessionRow>> {
        run_db(self, false, |db| {
            let mut sql = format!("SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE 1 = 1");
            let mut params = Vec::new();
            if let Some(p) = query.party {
                params.push(int(id_to_db(p.0)));
                sql.push_str(&format!(" AND party_id = ${}", params.len()));
            }
            if query.active_only {
                sql.push_str(" AND status = 'active'");
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", query.limit.clamp(1, 1000)));
            db.rows(&sql, &params)?.iter().map(|r| session_from(r)).collect()
        })
    }

    fn record_unrated(&self, u: &UnratedUsage) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "INSERT INTO unrated_usage (party_id, client_id, account_id, service, destination, quantity, at, reason, \
                 recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (party_id, client_id) DO UPDATE SET \
                 account_id = excluded.account_id, service = excluded.service, destination = excluded.destination, \
                 quantity = excluded.quantity, at = excluded.at, reason = excluded.reason, recorded_at = excluded.recorded_at",
                &[
                    int(id_to_db(u.party.0)),
                    text(&u.client_id),
                    int(id_to_db(u.account)),
                    text(&u.service),
                    Value::from(u.destination.clone()),
                    int(i64::try_from(u.quantity).unwrap_or(i64::MAX)),
                    int(u.at.0),
                    text(&u.reason),
                    int(u.recorded_at.0),
                ],
            )?;
            Ok(())
        })
    }

    fn unrated(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<UnratedUsage>> {
        run_db(self, false, |db| {
            let mut sql =
                "SELECT party_id, client_id, account_id, service, destination, quantity, at, reason, recorded_at \
                           FROM unrated_usage"
                    .to_owned();
            let mut params = Vec::new();
            if let Some(p) = party {
                sql.push_str(" WHERE party_id = $1");
                params.push(int(id_to_db(p.0)));
            }
            sql.push_str(&format!(" ORDER BY recorded_at DESC LIMIT {}", limit.clamp(1, 1000)));
            db.rows(&sql, &params)?
                .iter()
                .map(|r| {
                    Ok(UnratedUsage {
                        party: PartyId(id_from_db(r[0].int()?)),
                        client_id: r[1].text()?,
                        account: id_from_db(r[2].int()?),
                        service: r[3].text()?,
                        destination: r[4].opt_text()?,
                        quantity: r[5].int()?.max(0) as u64,
                        at: Timestamp(r[6].int()?),
                        reason: r[7].text()?,
                        recorded_at: Timestamp(r[8].int()?),
                    })
                })
                .collect()
        })
    }

    fn expired_sessions(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<SessionRow>> {
        run_db(self, false, |db| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE status = 'active' AND expires_at <= $1 \
                 ORDER BY expires_at LIMIT {}",
                limit.clamp(1, 1000)
            );
            db.rows(&sql, &[int(now.0)])?.iter().map(|r| session_from(r)).collect()
        })
    }
}
