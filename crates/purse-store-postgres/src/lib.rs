//! Purse's PostgreSQL store: for production and for several Purse processes sharing one
//! database.
//!
//! A batch costs a handful of round trips whatever its size: reads use `= ANY($1)` over an
//! array of keys, writes use `unnest` over one array per column. The write lock of the
//! store protocol is a `SELECT ... FOR UPDATE` of the single `ledger_epoch` row, so batches
//! of different processes take turns and each sees the other's committed state.
//! `fsync` and `synchronous_commit` are checked to be on when the store opens.

#![forbid(unsafe_code)]

mod credit;
mod db;
mod payments;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Row};
use purse_core::{
    Account, AccountId, Amount, BatchOutput, ClientKey, Currency, Hold, HoldId, HoldResolution, Party, PartyId,
    PartyKind, Prior, TemporaryIncrease, Timestamp, Transfer, TransferId,
};
use purse_store::codec::{self, id_from_db, id_to_db};
use purse_store::columns::{
    ACCOUNT_COLUMNS, ACCOUNT_SELECT, HOLD_COLUMNS, PARTY_COLUMNS, PARTY_SELECT, TRANSFER_COLUMNS,
};
use purse_store::{Audit, BaseState, JournalQuery, PartyQuery, Reader, Store, StoreError, StoreResult, StoredResponse};

const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_ledger", include_str!("../migrations/0001_ledger.sql")),
    ("0002_api_keys", include_str!("../migrations/0002_api_keys.sql")),
    ("0003_api", include_str!("../migrations/0003_api.sql")),
    ("0004_uninvoiced", include_str!("../migrations/0004_uninvoiced.sql")),
    ("0005_portal", include_str!("../migrations/0005_portal.sql")),
    ("0006_alerts", include_str!("../migrations/0006_alerts.sql")),
    ("0007_recharge", include_str!("../migrations/0007_recharge.sql")),
    ("0008_credit", include_str!("../migrations/0008_credit.sql")),
    ("0009_receipts", include_str!("../migrations/0009_receipts.sql")),
    ("0010_invoices", include_str!("../migrations/0010_invoices.sql")),
    ("0011_tenancy", include_str!("../migrations/0011_tenancy.sql")),
    ("0012_user_disabled", include_str!("../migrations/0012_user_disabled.sql")),
    ("0013_rating", include_str!("../migrations/0013_rating.sql")),
    ("0014_grants", include_str!("../migrations/0014_grants.sql")),
    ("0015_time_zones", include_str!("../migrations/0015_time_zones.sql")),
    ("0016_user_lang", include_str!("../migrations/0016_user_lang.sql")),
    ("0017_adjustments_suspension", include_str!("../migrations/0017_adjustments_suspension.sql")),
    ("0018_refunds", include_str!("../migrations/0018_refunds.sql")),
    ("0019_credit_notes", include_str!("../migrations/0019_credit_notes.sql")),
    ("0020_taxes", include_str!("../migrations/0020_taxes.sql")),
    ("0021_tax_everywhere", include_str!("../migrations/0021_tax_everywhere.sql")),
    ("0022_credit_note_choices", include_str!("../migrations/0022_credit_note_choices.sql")),
    ("0023_due_dates", include_str!("../migrations/0023_due_dates.sql")),
];

/// Any arbitrary constant: the advisory lock that serializes concurrent migrations.
const MIGRATION_LOCK: i64 = 0x70_7572_7365; // "purse" in ASCII

fn err(e: postgres::Error) -> StoreError {
    // The server's message (constraint, trigger text) is in the source; keep it.
    let Some(db) = e.as_db_error() else {
        // No answer from the server at all: the connection is gone (or never came).
        return StoreError::Unavailable(format!("postgres: {e}"));
    };
    let detail = format!("postgres: {}", db.message());
    let code = db.code().code();
    // Class 08: connection exceptions; 57P0x: the server is shutting down or starting; 53:
    // insufficient resources (disk full, out of memory, too many connections).
    if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
        StoreError::Unavailable(detail)
    } else if code == "23505" {
        StoreError::Conflict(detail)
    } else {
        StoreError::Other(detail)
    }
}

/// How long a connection attempt may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait after a failed attempt to reconnect, doubled after each failure up to
/// [`RECONNECT_WAIT_MAX`]: a restarting server is not hammered, and work resumes within
/// about a second of its return.
const RECONNECT_WAIT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(1);

fn connect(url: &str) -> StoreResult<Client> {
    let config: postgres::Config = url.parse().map_err(|e| StoreError::Other(format!("postgres: bad URL: {e}")))?;
    let mut client = config.clone().connect_timeout(CONNECT_TIMEOUT).connect(NoTls).map_err(err)?;
    for setting in ["fsync", "synchronous_commit"] {
        let row = client.query_one(&format!("SHOW {setting}"), &[]).map_err(err)?;
        let value: String = row.get(0);
        if value != "on" {
            return Err(StoreError::Other(format!("postgres is not durable: {setting} = {value} (need on)")));
        }
    }
    Ok(client)
}

/// A connection that is made again when it was lost (the server restarted, a failover),
/// no more often than a doubling wait allows. Until it is back, its users are told the
/// store is unavailable; nobody has to restart Purse.
struct Link {
    url: String,
    /// The writer's connection only looks rows up by key (see [`Link::connect`]).
    writer: bool,
    client: Option<Client>,
    /// No attempt before this instant, after a failed one.
    retry_at: Option<Instant>,
    wait: Duration,
}

impl Link {
    fn open(url: &str, writer: bool) -> StoreResult<Link> {
        let mut link = Link { url: url.to_owned(), writer, client: None, retry_at: None, wait: RECONNECT_WAIT_MIN };
        link.client = Some(link.connect()?);
        Ok(link)
    }

    fn connect(&self) -> StoreResult<Client> {
        let mut client = connect(&self.url)?;
        if self.writer {
            // The writer only looks rows up by key, under the ledger's write lock. With
            // statistics stale (a journal that grew faster than autovacuum analyses it), the
            // planner picks sequential scans that grow with the journal and stall every
            // process; forbid them.
            client.batch_execute("SET enable_seqscan = off").map_err(err)?;
        }
        Ok(client)
    }

    /// The connection, made again if it was lost.
    fn get(&mut self) -> StoreResult<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(StoreError::Unavailable("postgres: reconnecting".into()));
            }
            match self.connect() {
                Ok(c) => {
                    self.client = Some(c);
                    self.retry_at = None;
                    self.wait = RECONNECT_WAIT_MIN;
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + self.wait);
                    self.wait = (self.wait * 2).min(RECONNECT_WAIT_MAX);
                    return Err(match e {
                        StoreError::Other(d) | StoreError::Conflict(d) => StoreError::Unavailable(d),
                        unavailable => unavailable,
                    });
                }
            }
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Forgets the connection when `result` says it was lost, so the next use makes a new one.
    fn check<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        if result.as_ref().is_err_and(StoreError::is_unavailable) {
            self.client = None;
        }
        result
    }
}

/// The write side of the PostgreSQL store.
pub struct PgStore {
    link: Link,
}

/// The read side of the PostgreSQL store.
pub struct PgReader {
    link: Mutex<Link>,
}

/// Connects both sides and migrates the schema.
pub fn open(url: &str) -> StoreResult<(PgStore, PgReader)> {
    let mut store = PgStore { link: Link::open(url, true)? };
    store.migrate()?;
    Ok((store, open_reader(url)?))
}

/// Another read-side connection to a database [`open`] migrated (for a background worker,
/// so its scans never wait behind the API's reads).
pub fn open_reader(url: &str) -> StoreResult<PgReader> {
    Ok(PgReader { link: Mutex::new(Link::open(url, false)?) })
}

fn opt_id(v: Option<i64>) -> Option<u64> {
    v.map(id_from_db)
}

fn account_from_row(r: &Row) -> StoreResult<Account> {
    let kind: String = r.get(3);
    let role: Option<String> = r.get(4);
    let temp: Option<i64> = r.get(11);
    let until: Option<i64> = r.get(12);
    let client_id: Option<String> = r.get(1);
    Ok(Account {
        id: AccountId(id_from_db(r.get(0))),
        client_id: client_id.map(|c| codec::client_id(r.get(19), &c)).transpose()?,
        party: opt_id(r.get(2)).map(PartyId),
        kind: codec::parse_account_kind(&kind, role.as_deref(), opt_id(r.get(5)))?,
        currency: codec::currency_code(r.get(6))?,
        status: codec::parse_status(r.get(7))?,
        balance: Amount(r.get(8)),
        reserved: Amount(r.get(9)),
        credit_limit: Amount(r.get(10)),
        temporary_increase: temp
            .zip(until)
            .map(|(a, u)| TemporaryIncrease { amount: Amount(a), valid_until: Timestamp(u) }),
        children_balance: Amount(r.get(13)),
        thresholds: codec::parse_thresholds(r.get(14))?,
        last_charge_at: r.get::<_, Option<i64>>(15).map(Timestamp),
        created_at: Timestamp(r.get(16)),
        last_transfer: opt_id(r.get(17)).map(TransferId),
        uninvoiced: Amount(r.get(18)),
        grants: Vec::new(),
    })
}

fn party_from_row(r: &Row) -> StoreResult<Party> {
    let kind: &str = r.get(3);
    let kind = if kind == "reseller" {
        PartyKind::Reseller
    } else {
        PartyKind::Customer {
            reseller: opt_id(r.get(4)).map(PartyId),
            billing: codec::parse_billing(r.get(5))?,
            currency: codec::currency_code(r.get(6))?,
            wallet: AccountId(id_from_db(r.get(7))),
        }
    };
    Ok(Party {
        id: PartyId(id_from_db(r.get(0))),
        client_id: codec::client_id(r.get(11), r.get(1))?,
        name: r.get(2),
        kind,
        created_at: Timestamp(r.get(8)),
        subscriber_transfers: r.get(9),
        invoiced_until: r.get::<_, Option<i64>>(10).map(Timestamp),
    })
}

fn transfer_from_row(r: &Row) -> StoreResult<Transfer> {
    Ok(Transfer {
        id: TransferId(id_from_db(r.get(0))),
        client_id: codec::client_id(r.get(18), r.get(1))?,
        kind: codec::transfer_kind(r.get(2))?,
        debit: AccountId(id_from_db(r.get(3))),
        credit: AccountId(id_from_db(r.get(4))),
        amount: Amount(r.get(5)),
        currency: codec::currency_code(r.get(6))?,
        at: Timestamp(r.get(7)),
        posted_at: Timestamp(r.get(8)),
        service: r.get(9),
        metadata: r.get(10),
        hold: opt_id(r.get(11)).map(HoldId),
        reverses: opt_id(r.get(12)).map(TransferId),
        overdrawn: r.get(13),
        debit_prev: opt_id(r.get(14)).map(TransferId),
        credit_prev: opt_id(r.get(15)).map(TransferId),
        debit_balance: Amount(r.get(16)),
        credit_balance: Amount(r.get(17)),
        grant_parts: match r.get::<_, Option<&str>>(19) {
            Some(parts) => codec::parse_grant_parts(parts)?,
            None => Vec::new(),
        },
    })
}

fn hold_from_row(r: &Row) -> StoreResult<Hold> {
    let resolved_at: Option<i64> = r.get(10);
    let resolution_client: Option<String> = r.get(11);
    let resolution = match resolved_at {
        Some(at) => Some(HoldResolution {
            at: Timestamp(at),
            client_id: resolution_client.as_deref().map(|c| codec::client_id(r.get(15), c)).transpose()?,
            captured: Amount(r.get(12)),
            transfer: opt_id(r.get(13)).map(TransferId),
        }),
        None => None,
    };
    Ok(Hold {
        id: HoldId(id_from_db(r.get(0))),
        client_id: codec::client_id(r.get(14), r.get(1))?,
        account: AccountId(id_from_db(r.get(2))),
        amount: Amount(r.get(3)),
        currency: codec::currency_code(r.get(4))?,
        created_at: Timestamp(r.get(5)),
        expires_at: Timestamp(r.get(6)),
        state: codec::parse_hold_state(r.get(7))?,
        service: r.get(8),
        metadata: r.get(9),
        resolution,
        grant_parts: codec::parse_grant_parts(r.get(16))?,
    })
}

fn rows<T>(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    client.query(sql, params).map_err(err)?.iter().map(f).collect()
}

fn ids<T: Copy>(ids: &[T], f: impl Fn(T) -> u64) -> Vec<i64> {
    ids.iter().map(|i| id_to_db(f(*i))).collect()
}

impl Store for PgStore {
    fn migrate(&mut self) -> StoreResult<()> {
        let c = self.link.get()?;
        c.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            .or_else(|e| {
                // Two processes creating the table at once: the loser sees a duplicate; fine.
                if e.as_db_error().is_some() { Ok(()) } else { Err(e) }
            })
            .map_err(err)?;
        for (name, sql) in MIGRATIONS {
            let mut tx = c.transaction().map_err(err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(err)?;
            let done = tx.query_opt("SELECT name FROM schema_migrations WHERE name = $1", &[name]).map_err(err)?;
            if done.is_none() {
                tx.batch_execute(sql).map_err(err)?;
                tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name]).map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    fn begin(&mut self) -> StoreResult<u64> {
        let result = self.link.get().and_then(|c| {
            c.batch_execute("BEGIN").map_err(err)?;
            c.query_one("SELECT epoch FROM ledger_epoch WHERE id = 1 FOR UPDATE", &[]).map_err(err)
        });
        let row = self.link.check(result)?;
        Ok(id_from_db(row.get(0)))
    }

    fn load_base(&mut self) -> StoreResult<BaseState> {
        let c = self.link.get()?;
        let currencies = c
            .query("SELECT code, scale FROM currencies", &[])
            .map_err(err)?
            .iter()
            .map(|r| {
                let scale: i16 = r.get(1);
                Ok(Currency { code: codec::currency_code(r.get(0))?, scale: scale as u8 })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let system_accounts = rows(c, &format!("{ACCOUNT_SELECT} WHERE a.kind = 'system'"), &[], account_from_row)?;
        let open_holds =
            rows(c, &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE state = 'open'"), &[], hold_from_row)?;
        let row = c
            .query_one(
                "SELECT (SELECT max(id) FROM parties), (SELECT max(id) FROM accounts), \
                 (SELECT GREATEST(max(id), (SELECT max(id) FROM grants)) FROM transfers), (SELECT max(id) FROM holds), \
                 (SELECT max(id) FROM outbox)",
                &[],
            )
            .map_err(err)?;
        let next = |i: usize| row.get::<_, Option<i64>>(i).map_or(1, |m| id_from_db(m) + 1);
        let next =
            purse_core::NextIds { party: next(0), account: next(1), transfer: next(2), hold: next(3), event: next(4) };
        Ok(BaseState { currencies, system_accounts, open_holds, next })
    }

    fn load_accounts(&mut self, list: &[AccountId]) -> StoreResult<Vec<Account>> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.id = ANY($1)");
        rows(self.link.get()?, &sql, &[&ids(list, |i| i.0)], account_from_row)
    }

    fn load_parties(&mut self, list: &[PartyId]) -> StoreResult<Vec<Party>> {
        let sql = format!("SELECT {PARTY_SELECT} FROM parties WHERE id = ANY($1)");
        rows(self.link.get()?, &sql, &[&ids(list, |i| i.0)], party_from_row)
    }

    fn load_holds(&mut self, list: &[HoldId]) -> StoreResult<Vec<Hold>> {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1)");
        rows(self.link.get()?, &sql, &[&ids(list, |i| i.0)], hold_from_row)
    }

    fn load_transfers(&mut self, list: &[TransferId]) -> StoreResult<Vec<(Transfer, Option<TransferId>)>> {
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS}, (SELECT r.id FROM transfers r WHERE r.reverses_id = t.id) \
             FROM transfers t WHERE id = ANY($1)"
        );
        let found = self.link.get()?.query(&sql, &[&ids(list, |i| i.0)]).map_err(err)?;
        found.iter().map(|r| Ok((transfer_from_row(r)?, opt_id(r.get(20)).map(TransferId)))).collect()
    }

    #[allow(clippy::type_complexity)]
    fn lookup_client_keys(&mut self, keys: &[ClientKey]) -> StoreResult<Vec<(ClientKey, Prior)>> {
        let mut wanted: [Vec<&str>; 5] = Default::default();
        let exact: std::collections::HashSet<&ClientKey> = keys.iter().collect();
        for key in keys {
            let (slot, id) = match key {
                ClientKey::Transfer(id) => (0, id),
                ClientKey::Hold(id) => (1, id),
                ClientKey::Release(id) => (2, id),
                ClientKey::Party(id) => (3, id),
                ClientKey::Account(id) => (4, id),
            };
            wanted[slot].push(id.as_str());
        }
        let c = self.link.get()?;
        let mut found = Vec::new();
        let query = |c: &mut Client, sql: &str, list: &Vec<&str>| -> StoreResult<Vec<Row>> {
            if list.is_empty() {
                return Ok(Vec::new());
            }
            c.query(sql, &[list]).map_err(err)
        };
        if !wanted[0].is_empty() {
            let keys: Vec<i64> = keys
                .iter()
                .filter_map(|k| match k {
                    ClientKey::Transfer(id) => Some(codec::client_key(id)),
                    _ => None,
                })
                .collect();
            let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE client_key = ANY($1)");
            for r in c.query(&sql, &[&keys]).map_err(err)? {
                let t = transfer_from_row(&r)?;
                found.push((ClientKey::Transfer(t.client_id.clone()), Prior::Transfer(t)));
            }
        }
        // The text alone is asked for; ids of other tenants (and colliding keys) are dropped below.
        for r in query(c, &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE client_id = ANY($1)"), &wanted[1])? {
            let h = hold_from_row(&r)?;
            found.push((ClientKey::Hold(h.client_id.clone()), Prior::Hold(h)));
        }
        let sql =
            format!("SELECT {HOLD_COLUMNS} FROM holds WHERE resolution_client_id = ANY($1) AND state = 'released'");
        for r in query(c, &sql, &wanted[2])? {
            let h = hold_from_row(&r)?;
            let key =
                h.resolution.as_ref().and_then(|r| r.client_id.clone()).expect("released holds keep their client id");
            found.push((ClientKey::Release(key), Prior::Hold(h)));
        }
        for r in query(c, &format!("SELECT {PARTY_SELECT} FROM parties WHERE client_id = ANY($1)"), &wanted[3])? {
            let p = party_from_row(&r)?;
            found.push((ClientKey::Party(p.client_id.clone()), Prior::Party(p)));
        }
        for r in query(c, &format!("{ACCOUNT_SELECT} WHERE a.client_id = ANY($1)"), &wanted[4])? {
            let a = account_from_row(&r)?;
            let key = a.client_id.clone().expect("queried by client id");
            found.push((ClientKey::Account(key), Prior::Account(a)));
        }
        // Only exact client ids, tenant included, are earlier uses.
        found.retain(|(key, _)| exact.contains(key));
        Ok(found)
    }

    fn write(&mut self, out: &BatchOutput) -> StoreResult<()> {
        let c = self.link.get()?;
        write_output(c, out).map_err(err)?;
        purse_store::grants::write(&mut db::Pg(c), out)?;
        purse_store::invoices::write_issues(&mut db::Pg(c), &out.invoices)
    }

    fn commit(&mut self) -> StoreResult<()> {
        let result = self.link.get().and_then(|c| c.batch_execute("COMMIT").map_err(err));
        self.link.check(result)
    }

    fn rollback(&mut self) -> StoreResult<()> {
        // A lost connection rolled back by itself; the next batch makes a new one.
        let result = self.link.get().and_then(|c| c.batch_execute("ROLLBACK").map_err(err));
        if result.is_err() {
            self.link.client = None;
        }
        result
    }

    fn in_batch(&mut self, f: &mut dyn FnMut(&mut dyn purse_store::Db) -> StoreResult<()>) -> StoreResult<()> {
        let result = self.link.get().and_then(|c| f(&mut crate::db::Pg(c)));
        self.link.check(result)
    }

    fn write_responses(&mut self, responses: &[StoredResponse]) -> StoreResult<()> {
        if responses.is_empty() {
            return Ok(());
        }
        let (mut keys, mut names, mut hashes, mut statuses, mut bodies, mut times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in responses {
            keys.push(id_to_db(r.api_key));
            names.push(r.key.as_str());
            hashes.push(r.request_hash.as_str());
            statuses.push(i32::from(r.status));
            bodies.push(r.body.as_slice());
            times.push(r.created_at.0);
        }
        self.link
            .get()?
            .execute(
                "INSERT INTO idempotent_responses (api_key_id, key, request_hash, status, body, created_at) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::bigint[]) \
                 ON CONFLICT DO NOTHING",
                &[&keys, &names, &hashes, &statuses, &bodies, &times],
            )
            .map_err(err)?;
        Ok(())
    }

    fn stored_responses(&mut self, keys: &[(u64, &str)]) -> StoreResult<Vec<StoredResponse>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = keys.iter().map(|(k, _)| id_to_db(*k)).collect();
        let names: Vec<&str> = keys.iter().map(|(_, n)| *n).collect();
        let rows = self
            .link
            .get()?
            .query(
                "SELECT r.api_key_id, r.key, r.request_hash, r.status, r.body, r.created_at FROM idempotent_responses r \
                 JOIN unnest($1::bigint[], $2::text[]) AS k(api_key_id, key) ON r.api_key_id = k.api_key_id AND r.key = k.key",
                &[&ids, &names],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| StoredResponse {
                api_key: id_from_db(r.get(0)),
                key: r.get(1),
                request_hash: r.get(2),
                status: r.get::<_, i32>(3) as u16,
                body: r.get(4),
                created_at: Timestamp(r.get(5)),
            })
            .collect())
    }

    fn purge_responses(&mut self, before: Timestamp) -> StoreResult<u64> {
        self.link.get()?.execute("DELETE FROM idempotent_responses WHERE created_at < $1", &[&before.0]).map_err(err)
    }
}

#[allow(clippy::type_complexity)] // one vector per column, spelled out beside the SQL
fn write_output(c: &mut Client, out: &BatchOutput) -> Result<(), postgres::Error> {
    for cur in &out.currencies {
        c.execute(
            "INSERT INTO currencies (code, scale) VALUES ($1, $2)",
            &[&cur.code.as_str(), &i16::from(cur.scale)],
        )?;
    }
    if !out.parties.is_empty() {
        let mut cols: (
            Vec<i64>,
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
            Vec<Option<i64>>,
            Vec<Option<&str>>,
            Vec<Option<&str>>,
            Vec<Option<i64>>,
            Vec<i64>,
        ) = Default::default();
        let tenants: Vec<String> = out.parties.iter().map(|p| codec::tenant(p.client_id.tenant())).collect();
        for p in &out.parties {
            let (kind, reseller, billing, currency, wallet) = codec::party_columns(&p.kind);
            cols.0.push(id_to_db(p.id.0));
            cols.1.push(p.client_id.as_str());
            cols.2.push(&p.name);
            cols.3.push(kind);
            cols.4.push(reseller);
            cols.5.push(billing);
            cols.6.push(currency);
            cols.7.push(wallet);
            cols.8.push(p.created_at.0);
        }
        c.execute(
            &format!(
                "INSERT INTO parties ({PARTY_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], \
                 $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[])"
            ),
            &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8, &tenants],
        )?;
    }
    // The remainders of the grants of the accounts whose grants changed ('' when none is
    // left); the other accounts keep what is stored.
    let grants: std::collections::HashMap<AccountId, String> =
        out.grant_balances.iter().map(|(a, g)| (*a, codec::grant_balances(g))).collect();
    write_accounts(c, &out.accounts_new, true, &[], &grants)?;
    write_accounts(c, &out.accounts_changed, false, &out.settings_changed, &grants)?;
    write_transfers(c, &out.transfers)?;
    for h in &out.holds {
        let r = h.resolution.as_ref();
        c.execute(
            &format!(
                "INSERT INTO holds ({HOLD_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, resolved_at = excluded.resolved_at, \
                 resolution_client_id = excluded.resolution_client_id, captured = excluded.captured, \
                 capture_transfer_id = excluded.capture_transfer_id, \
                 resolution_client_tenant = excluded.resolution_client_tenant"
            ),
            &[
                &id_to_db(h.id.0),
                &h.client_id.as_str(),
                &id_to_db(h.account.0),
                &h.amount.0,
                &h.currency.as_str(),
                &h.created_at.0,
                &h.expires_at.0,
                &codec::hold_state(h.state),
                &h.service,
                &h.metadata,
                &r.map(|r| r.at.0),
                &r.and_then(|r| r.client_id.as_ref().map(|c| c.as_str())),
                &r.map_or(0, |r| r.captured.0),
                &r.and_then(|r| r.transfer.map(|t| id_to_db(t.0))),
                &codec::tenant(h.client_id.tenant()),
                &r.and_then(|r| r.client_id.as_ref()).map_or_else(String::new, |c| codec::tenant(c.tenant())),
                &codec::grant_parts(&h.grant_parts),
            ],
        )?;
    }
    if !out.events.is_empty() {
        #[allow(clippy::type_complexity)]
        let mut cols: (
            Vec<i64>,
            Vec<i64>,
            Vec<i64>,
            Vec<&str>,
            Vec<Option<i64>>,
            Vec<Option<&str>>,
            Vec<Option<i64>>,
            Vec<i64>,
            Vec<Option<i64>>,
            Vec<Option<i64>>,
        ) = Default::default();
        for e in &out.events {
            let (kind, threshold, direction, before, after, transfer, amount) = codec::event_columns(&e.kind);
            cols.0.push(id_to_db(e.id.0));
            cols.1.push(e.at.0);
            cols.2.push(id_to_db(e.account.0));
            cols.3.push(kind);
            cols.4.push(threshold);
            cols.5.push(direction);
            cols.6.push(before);
            cols.7.push(after);
            cols.8.push(transfer);
            cols.9.push(amount);
        }
        c.execute(
            "INSERT INTO outbox (id, at, account_id, kind, threshold, direction, available_before, available_after, transfer_id, amount) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])",
            &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8, &cols.9],
        )?;
    }
    for p in &out.parties_changed {
        c.execute(
            "UPDATE parties SET subscriber_transfers = $1, invoiced_until = $2 WHERE id = $3",
            &[&p.subscriber_transfers, &p.invoiced_until.map(|t| t.0), &id_to_db(p.id.0)],
        )?;
    }
    credit::write_limit_changes(c, &out.limit_changes)?;
    credit::write_money_notes(c, &out.notes)?;
    c.execute("UPDATE ledger_epoch SET epoch = epoch + 1 WHERE id = 1", &[])?;
    Ok(())
}

fn write_accounts(
    c: &mut Client,
    accounts: &[Account],
    insert: bool,
    settings: &[AccountId],
    grants: &std::collections::HashMap<AccountId, String>,
) -> Result<(), postgres::Error> {
    if accounts.is_empty() {
        return Ok(());
    }
    let id: Vec<i64> = accounts.iter().map(|a| id_to_db(a.id.0)).collect();
    let balance: Vec<i64> = accounts.iter().map(|a| a.balance.0).collect();
    let reserved: Vec<i64> = accounts.iter().map(|a| a.reserved.0).collect();
    let children: Vec<i64> = accounts.iter().map(|a| a.children_balance.0).collect();
    let last_charge: Vec<Option<i64>> = accounts.iter().map(|a| a.last_charge_at.map(|t| t.0)).collect();
    let last_transfer: Vec<Option<i64>> = accounts.iter().map(|a| a.last_transfer.map(|t| id_to_db(t.0))).collect();
    let uninvoiced: Vec<i64> = accounts.iter().map(|a| a.uninvoiced.0).collect();
    let grant_text: Vec<Option<&str>> = accounts.iter().map(|a| grants.get(&a.id).map(String::as_str)).collect();
    let with_settings: Vec<&Account> =
        if insert { accounts.iter().collect() } else { accounts.iter().filter(|a| settings.contains(&a.id)).collect() };
    if insert {
        insert_account_settings(c, &with_settings)?;
        c.execute(
            "INSERT INTO balances (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced, grants) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])",
            &[&id, &balance, &reserved, &children, &last_charge, &last_transfer, &uninvoiced, &grant_text],
        )?;
        return Ok(());
    }
    c.execute(
        "UPDATE balances b SET balance = u.balance, reserved = u.reserved, children_balance = u.children, \
         last_charge_at = u.last_charge, last_transfer_id = u.last_transfer, uninvoiced = u.uninvoiced, \
         grants = COALESCE(u.grants, b.grants) FROM \
         unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[]) \
         AS u(id, balance, reserved, children, last_charge, last_transfer, uninvoiced, grants) WHERE b.account_id = u.id",
        &[&id, &balance, &reserved, &children, &last_charge, &last_transfer, &uninvoiced, &grant_text],
    )?;
    for a in with_settings {
        c.execute(
            "UPDATE accounts SET status = $1, credit_limit = $2, temp_increase = $3, temp_valid_until = $4, \
             thresholds = $5 WHERE id = $6",
            &[
                &codec::status(a.status),
                &a.credit_limit.0,
                &a.temporary_increase.map(|t| t.amount.0),
                &a.temporary_increase.map(|t| t.valid_until.0),
                &codec::thresholds(&a.thresholds),
                &id_to_db(a.id.0),
            ],
        )?;
    }
    Ok(())
}

fn insert_account_settings(c: &mut Client, accounts: &[&Account]) -> Result<(), postgres::Error> {
    let id: Vec<i64> = accounts.iter().map(|a| id_to_db(a.id.0)).collect();
    let client_id: Vec<Option<&str>> = accounts.iter().map(|a| a.client_id.as_ref().map(|c| c.as_str())).collect();
    let party: Vec<Option<i64>> = accounts.iter().map(|a| a.party.map(|p| id_to_db(p.0))).collect();
    let kinds: Vec<_> = accounts.iter().map(|a| codec::account_kind(a.kind)).collect();
    let kind: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    let role: Vec<Option<&str>> = kinds.iter().map(|k| k.1).collect();
    let parent: Vec<Option<i64>> = kinds.iter().map(|k| k.2.map(id_to_db)).collect();
    let currency: Vec<&str> = accounts.iter().map(|a| a.currency.as_str()).collect();
    let status: Vec<&str> = accounts.iter().map(|a| codec::status(a.status)).collect();
    let limit: Vec<i64> = accounts.iter().map(|a| a.credit_limit.0).collect();
    let temp: Vec<Option<i64>> = accounts.iter().map(|a| a.temporary_increase.map(|t| t.amount.0)).collect();
    let until: Vec<Option<i64>> = accounts.iter().map(|a| a.temporary_increase.map(|t| t.valid_until.0)).collect();
    let thresholds: Vec<String> = accounts.iter().map(|a| codec::thresholds(&a.thresholds)).collect();
    let created: Vec<i64> = accounts.iter().map(|a| a.created_at.0).collect();
    let tenant: Vec<String> =
        accounts.iter().map(|a| a.client_id.as_ref().map_or_else(String::new, |c| codec::tenant(c.tenant()))).collect();
    c.execute(
        &format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], \
             $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], \
             $12::text[], $13::bigint[], $14::text[])"
        ),
        &[
            &id,
            &client_id,
            &party,
            &kind,
            &role,
            &parent,
            &currency,
            &status,
            &limit,
            &temp,
            &until,
            &thresholds,
            &created,
            &tenant,
        ],
    )?;
    Ok(())
}

/// Journal rows go in with binary `COPY`: about twice as fast as an `unnest` insert, and
/// the journal never needs `ON CONFLICT`.
fn write_transfers(c: &mut Client, transfers: &[Transfer]) -> Result<(), postgres::Error> {
    if transfers.is_empty() {
        return Ok(());
    }
    let (int, text, boolean) = (Type::INT8, Type::TEXT, Type::BOOL);
    let types = [
        int.clone(),
        text.clone(),
        text.clone(),
        int.clone(),
        int.clone(),
        int.clone(),
        text.clone(),
        int.clone(),
        int.clone(),
        text.clone(),
        text.clone(),
        int.clone(),
        int.clone(),
        boolean,
        int.clone(),
        int.clone(),
        int.clone(),
        int.clone(),
        text.clone(),
        text,
        int,
    ];
    let sink = c.copy_in(&format!("COPY transfers ({TRANSFER_COLUMNS}, client_key) FROM STDIN (FORMAT binary)"))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for t in transfers {
        writer.write(&[
            &id_to_db(t.id.0),
            &t.client_id.as_str(),
            &t.kind.as_str(),
            &id_to_db(t.debit.0),
            &id_to_db(t.credit.0),
            &t.amount.0,
            &t.currency.as_str(),
            &t.at.0,
            &t.posted_at.0,
            &t.service.as_deref(),
            &t.metadata.as_deref(),
            &t.hold.map(|h| id_to_db(h.0)),
            &t.reverses.map(|r| id_to_db(r.0)),
            &t.overdrawn,
            &t.debit_prev.map(|p| id_to_db(p.0)),
            &t.credit_prev.map(|p| id_to_db(p.0)),
            &t.debit_balance.0,
            &t.credit_balance.0,
            &codec::tenant(t.client_id.tenant()),
            &(!t.grant_parts.is_empty()).then(|| codec::grant_parts(&t.grant_parts)),
            &codec::client_key(&t.client_id),
        ])?;
    }
    writer.finish()?;
    Ok(())
}

impl PgReader {
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> StoreResult<T>) -> StoreResult<T> {
        let mut link = self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner); // a panicking reader leaves it usable
        let result = link.get().and_then(f);
        link.check(result)
    }

    /// Accounts read by `f` with their open grants, from one snapshot.
    fn with_grants(&self, f: impl FnOnce(&mut Client) -> StoreResult<Vec<Account>>) -> StoreResult<Vec<Account>> {
        self.with(|c| {
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").map_err(err)?;
            let read = f(c).and_then(|mut accounts| {
                purse_store::grants::attach(&mut db::Pg(c), &mut accounts)?;
                Ok(accounts)
            });
            let end = c.batch_execute(if read.is_ok() { "COMMIT" } else { "ROLLBACK" }).map_err(err);
            let accounts = read?;
            end?;
            Ok(accounts)
        })
    }
}

fn mismatches(c: &mut Client, sql: &str) -> StoreResult<Vec<(AccountId, i64, i128)>> {
    c.query(sql, &[])
        .map_err(err)?
        .iter()
        .map(|r| {
            let computed: String = r.get(2);
            let computed = computed.parse::<i128>().map_err(|_| StoreError::Other(format!("bad sum {computed}")))?;
            Ok((AccountId(id_from_db(r.get(0))), r.get::<_, i64>(1), computed))
        })
        .collect()
}

impl Reader for PgReader {
    fn currencies(&self) -> StoreResult<Vec<Currency>> {
        self.with(|c| {
            c.query("SELECT code, scale FROM currencies ORDER BY code", &[])
                .map_err(err)?
                .iter()
                .map(|r| Ok(Currency { code: codec::currency_code(r.get(0))?, scale: r.get::<_, i16>(1) as u8 }))
                .collect()
        })
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.with_grants(|c| {
            let sql = format!("{ACCOUNT_SELECT} WHERE a.id = $1");
            let found =
                c.query_opt(&sql, &[&id_to_db(id.0)]).map_err(err)?.as_ref().map(account_from_row).transpose()?;
            Ok(found.into_iter().collect())
        })
        .map(|mut v| v.pop())
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        self.with(|c| rows(c, &format!("{ACCOUNT_SELECT} ORDER BY a.id"), &[], account_from_row))
    }

    fn accounts_of_parties(&self, parties: &[PartyId]) -> StoreResult<Vec<Account>> {
        let list = ids(parties, |p| p.0);
        self.with(|c| {
            rows(c, &format!("{ACCOUNT_SELECT} WHERE a.party_id = ANY($1) ORDER BY a.id"), &[&list], account_from_row)
        })
    }

    fn party(&self, id: PartyId) -> StoreResult<Option<Party>> {
        self.with(|c| {
            let sql = format!("SELECT {PARTY_SELECT} FROM parties WHERE id = $1");
            c.query_opt(&sql, &[&id_to_db(id.0)]).map_err(err)?.as_ref().map(party_from_row).transpose()
        })
    }

    fn parties(&self, q: PartyQuery) -> StoreResult<Vec<Party>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {PARTY_SELECT} FROM parties WHERE ($1::bool IS NULL OR (kind = 'reseller') = $1) \
                 AND ($2::bigint IS NULL OR reseller_id = $2) AND id > $3 \
                 AND ($5::text IS NULL OR strpos(lower(name), $5) > 0 OR strpos(lower(client_id), $5) > 0) ORDER BY id LIMIT $4"
            );
            let reseller = q.reseller.map(|p| id_to_db(p.0));
            let after = id_to_db(q.after.map_or(0, |p| p.0));
            rows(c, &sql, &[&q.resellers, &reseller, &after, &i64::from(q.limit), &q.search], party_from_row)
        })
    }

    fn accounts_of(&self, party: PartyId) -> StoreResult<Vec<Account>> {
        self.with_grants(|c| {
            rows(
                c,
                &format!("{ACCOUNT_SELECT} WHERE a.party_id = $1 ORDER BY a.id"),
                &[&id_to_db(party.0)],
                account_from_row,
            )
        })
    }

    fn transfer(&self, id: TransferId) -> StoreResult<Option<Transfer>> {
        self.with(|c| {
            let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1");
            c.query_opt(&sql, &[&id_to_db(id.0)]).map_err(err)?.as_ref().map(transfer_from_row).transpose()
        })
    }

    fn hold(&self, id: HoldId) -> StoreResult<Option<Hold>> {
        self.with(|c| {
            let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1");
            c.query_opt(&sql, &[&id_to_db(id.0)]).map_err(err)?.as_ref().map(hold_from_row).transpose()
        })
    }

    fn transfer_by_client_id(&self, client_id: &purse_core::ClientId) -> StoreResult<Option<Transfer>> {
        self.with(|c| {
            let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE client_key = $1 AND client_tenant = $2 AND client_id = $3");
            let tenant = codec::tenant(client_id.tenant());
            c.query_opt(&sql, &[&codec::client_key(client_id), &tenant, &client_id.as_str()]).map_err(err)?.as_ref().map(transfer_from_row).transpose()
        })
    }

    fn journal(&self, q: JournalQuery) -> StoreResult<Vec<Transfer>> {
        self.with(|c| {
            // Walks the account's chain backwards, one indexed lookup per posting.
            let sql = format!(
                "WITH RECURSIVE chain(id, n) AS (
                   SELECT CASE WHEN $2::bigint IS NULL
                               THEN (SELECT last_transfer_id FROM balances WHERE account_id = $1)
                               ELSE (SELECT CASE WHEN debit_account_id = $1 THEN debit_prev_id ELSE credit_prev_id END
                                     FROM transfers WHERE id = $2) END, 1::bigint
                   UNION ALL
                   SELECT CASE WHEN t.debit_account_id = $1 THEN t.debit_prev_id ELSE t.credit_prev_id END, chain.n + 1
                   FROM chain JOIN transfers t ON t.id = chain.id WHERE chain.n < $3::bigint)
                 SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id IN (SELECT id FROM chain WHERE id IS NOT NULL)
                 ORDER BY id DESC"
            );
            let before = q.before.map(|t| id_to_db(t.0));
            rows(c, &sql, &[&id_to_db(q.account.0), &before, &i64::from(q.limit)], transfer_from_row)
        })
    }

    fn expired_reservations(&self, account: AccountId, now: Timestamp) -> StoreResult<i64> {
        self.with(|c| {
            let row = c
                .query_one(
                    "SELECT COALESCE(SUM(amount), 0)::bigint FROM holds \
                     WHERE account_id = $1 AND state = 'open' AND expires_at <= $2",
                    &[&id_to_db(account.0), &now.0],
                )
                .map_err(err)?;
            Ok(row.get(0))
        })
    }

    fn audit(&self) -> StoreResult<Audit> {
        self.with(|c| {
            let balance_sums = c
                .query("SELECT a.currency, SUM(b.balance)::text FROM accounts a JOIN balances b ON b.account_id = a.id \
                   GROUP BY a.currency ORDER BY a.currency", &[])
                .map_err(err)?
                .iter()
                .map(|r| {
                    let sum: String = r.get(1);
                    Ok((r.get::<_, String>(0), sum.parse::<i128>().map_err(|_| StoreError::Other(format!("bad sum {sum}")))?))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let balance_mismatches = mismatches(
                c,
                "SELECT a.account_id, a.balance, (COALESCE(cr.s, 0) - COALESCE(db.s, 0))::text FROM balances a
                 LEFT JOIN (SELECT credit_account_id id, SUM(amount) s FROM transfers GROUP BY credit_account_id) cr ON cr.id = a.account_id
                 LEFT JOIN (SELECT debit_account_id id, SUM(amount) s FROM transfers GROUP BY debit_account_id) db ON db.id = a.account_id
                 WHERE a.balance != COALESCE(cr.s, 0) - COALESCE(db.s, 0)",
            )?;
            let reserved_mismatches = mismatches(
                c,
                "SELECT a.account_id, a.reserved, COALESCE(h.s, 0)::text FROM balances a
                 LEFT JOIN (SELECT account_id id, SUM(amount) s FROM holds WHERE state = 'open' GROUP BY account_id) h ON h.id = a.account_id
                 WHERE a.reserved != COALESCE(h.s, 0)",
            )?;
            let children_mismatches = mismatches(
                c,
                "SELECT p.account_id, p.children_balance, COALESCE(k.s, 0)::text FROM balances p
                 LEFT JOIN (SELECT a.parent_id id, SUM(b.balance) s FROM accounts a JOIN balances b ON b.account_id = a.id
                            WHERE a.kind = 'subscriber_credit' GROUP BY a.parent_id) k ON k.id = p.account_id
                 WHERE p.children_balance != COALESCE(k.s, 0)",
            )?;
            let count: i64 = c.query_one("SELECT count(*) FROM transfers", &[]).map_err(err)?.get(0);
            let duplicates: i64 = c
                .query_one("SELECT count(*) FROM (SELECT 1 FROM transfers GROUP BY client_tenant, client_id HAVING count(*) > 1) d", &[])
                .map_err(err)?
                .get(0);
            Ok(Audit {
                balance_sums,
                balance_mismatches,
                reserved_mismatches,
                children_mismatches,
                duplicate_client_ids: duplicates as u64,
                transfer_count: count as u64,
            })
        })
    }

    fn outbox_count(&self) -> StoreResult<u64> {
        self.with(|c| Ok(c.query_one("SELECT count(*) FROM outbox", &[]).map_err(err)?.get::<_, i64>(0) as u64))
    }
}

/// Runs raw SQL on a fresh connection: for tests that prove the schema refuses things.
pub fn execute_raw(url: &str, sql: &str) -> StoreResult<u64> {
    let mut client = connect(url)?;
    client.execute(sql, &[]).map_err(err)
}

/// Drops every Purse table: for tests that need an empty database. Refuses unless the
/// database name says it is a test database.
pub fn reset_test_database(url: &str) -> StoreResult<()> {
    let mut client = connect(url)?;
    let name: String = client.query_one("SELECT current_database()", &[]).map_err(err)?.get(0);
    if !name.contains("test") {
        return Err(StoreError::Other(format!("refusing to reset database {name:?}: its name lacks \"test\"")));
    }
    client
        .batch_execute(
            "DO $$ DECLARE t record; BEGIN
                 FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
                     EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(t.tablename) || ' CASCADE';
                 END LOOP;
             END $$;
             DROP FUNCTION IF EXISTS purse_refuse_journal_change() CASCADE;",
        )
        .map_err(err)?;
    Ok(())
}
