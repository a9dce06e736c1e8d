//! Purse's SQLite store: the default, embedded backend (nothing to install).
//!
//! One file in WAL mode with `synchronous=FULL`, both checked when the store opens: a
//! committed batch survives a power cut. [`SqliteStore`] is the write side, used by one
//! engine thread; [`SqliteReader`] has its own connection for queries, which WAL lets run
//! beside the writer. The journal's immutability is enforced by triggers in the schema.

#![forbid(unsafe_code)]

mod credit;
mod db;
mod payments;

use std::sync::Mutex;

use purse_core::{
    Account, AccountId, Amount, BatchOutput, ClientKey, Currency, Hold, HoldId, HoldResolution, Party, PartyId,
    PartyKind, Prior, TemporaryIncrease, Timestamp, Transfer, TransferId,
};
use purse_store::codec::{self, id_from_db, id_to_db};
use purse_store::columns::{
    ACCOUNT_COLUMNS, ACCOUNT_SELECT, HOLD_COLUMNS, PARTY_COLUMNS, PARTY_SELECT, TRANSFER_COLUMNS,
};
use purse_store::{Audit, BaseState, JournalQuery, PartyQuery, Reader, Store, StoreError, StoreResult, StoredResponse};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

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
    ("0024_balance_tail", include_str!("../migrations/0024_balance_tail.sql")),
    ("0025_client_keys", include_str!("../migrations/0025_client_keys.sql")),
];

/// Page cache of the writer's connection: large enough that the balances and the hot
/// ends of the journal's indexes stay in memory.
const WRITER_CACHE_KIB: i64 = 128 * 1024;
/// Page cache of the reader's connection.
const READER_CACHE_KIB: i64 = 16 * 1024;
/// WAL pages before a checkpoint copies them into the database file (128 MiB of them with
/// [`PAGE_SIZE`]). Batches rewrite the same balance pages again and again; a longer WAL
/// copies each of them once, not per batch.
const WAL_PAGES_MAX: i64 = 16_384;

fn err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, ReadOnly, SystemIoFailure};
    let detail = format!("sqlite: {e}");
    match e.sqlite_error() {
        // The file system, not the request: retry when space or the disk is back.
        Some(f)
            if matches!(f.code, DiskFull | SystemIoFailure | CannotOpen | DatabaseBusy | DatabaseLocked | ReadOnly) =>
        {
            StoreError::Unavailable(detail)
        }
        Some(f)
            if matches!(
                f.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            StoreError::Conflict(detail)
        }
        _ => StoreError::Other(detail),
    }
}

fn conv<T>(r: StoreResult<T>) -> rusqlite::Result<T> {
    r.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Pages of a new database file (one made before keeps its own, 4,096 bytes; SQLite changes
/// it only by rewriting the whole file). A batch of charges rewrites balance rows all over
/// their table: twice the bytes per page, half the pages, WAL frames and write calls per
/// commit (BENCHMARKS.md, fourth session of issue 22).
const PAGE_SIZE: i64 = 8192;

/// Opens (creating if needed) the database file with durable settings, and verifies them.
fn connect(path: &str, cache_kib: i64) -> StoreResult<Connection> {
    // SQLite's own VFS, but a commit's WAL frames go out in a few write calls, not two each
    // (`purse-sqlite-wal`).
    purse_sqlite_wal::register().map_err(StoreError::Other)?;
    let conn = Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), purse_sqlite_wal::NAME)
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.execute_batch(&format!(
        "PRAGMA page_size={PAGE_SIZE}; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; \
         PRAGMA cache_size=-{cache_kib}; PRAGMA temp_store=MEMORY; \
         PRAGMA wal_autocheckpoint={WAL_PAGES_MAX};"
    ))
    .map_err(err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(err)?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(err)?;
    if mode != "wal" || sync != 2 {
        return Err(StoreError::Other(format!(
            "sqlite at {path} is not durable: journal_mode={mode}, synchronous={sync} (need wal and FULL=2)"
        )));
    }
    Ok(conn)
}

/// The write side of the SQLite store.
pub struct SqliteStore {
    conn: Connection,
    balances: Tail,
    keys: Tail,
    /// The highest client key in `client_keys` as far as this writer knows (None: to be read).
    /// Keys above it are appended there; the others wait in `client_key_tail`.
    keys_max: Option<i64>,
}

/// Rows each tail keeps before a batch folds some back, unless the database URL says
/// otherwise (`?tail_rows=N`).
pub const TAIL_ROWS: usize = 65_536;

/// A small table that takes the rows batches would otherwise write all over a big one
/// (migrations 0024 and 0025). Balances: a batch writes the rows it changed into
/// `balance_tail` instead of `balances_base`, where 8,192 accounts spread over a million
/// dirty nearly as many pages. Client keys: a key that is not above every key of
/// `client_keys` (a random UUID's, unlike a time-ordered one's) goes into `client_key_tail`
/// instead of the middle of that big B-tree. When a tail holds more than its bound, the batch
/// moves its next run of rows, in key order from where the last fold stopped, into the big
/// table in the same transaction: a contiguous range, so each big page is rewritten once per
/// lap of the tail rather than once per batch. Readers see both (the `balances` view; the
/// client-key look-ups search both tables), so nothing depends on what a tail holds.
struct Tail {
    /// The small table and its key column.
    table: &'static str,
    key: &'static str,
    /// Moves the tail's rows with keys between the two parameters into the big table.
    fold: &'static str,
    /// The most rows the tail keeps after a batch.
    max: usize,
    /// Rows counted at the last count or fold (None: not counted since opening or since a
    /// batch was rolled back).
    rows: Option<usize>,
    /// Rows written since then (an upper bound of the rows added).
    since: usize,
    /// The key the next fold starts from.
    cursor: i64,
}

impl Tail {
    fn new(table: &'static str, key: &'static str, fold: &'static str, max: usize) -> Tail {
        Tail { table, key, fold, max: max.max(1), rows: None, since: 0, cursor: i64::MIN }
    }

    /// After a batch wrote `written` rows into the tail: folds rows back when the tail may be
    /// past its bound.
    fn after_write(&mut self, c: &Connection, written: usize) -> rusqlite::Result<()> {
        self.since += written;
        if self.rows.is_some_and(|r| r + self.since <= self.max) {
            return Ok(());
        }
        let count = format!("SELECT count(*) FROM {}", self.table);
        let rows = c.prepare_cached(&count)?.query_row([], |r| r.get::<_, i64>(0))? as usize;
        self.since = 0;
        self.rows = Some(rows);
        if rows > self.max {
            // Down to three quarters, so the tail is counted again only after a quarter of
            // its bound is written.
            let folded = self.fold(c, rows - self.max * 3 / 4)?;
            self.rows = Some(rows.saturating_sub(folded));
        }
        Ok(())
    }

    /// Moves about `wanted` rows (or all there are) from the tail into the big table, from
    /// the cursor on, wrapping around once. Returns the rows moved.
    fn fold(&mut self, c: &Connection, wanted: usize) -> rusqlite::Result<usize> {
        let (table, key) = (self.table, self.key);
        let nth = format!("SELECT {key} FROM {table} WHERE {key} >= ? ORDER BY {key} LIMIT 1 OFFSET ?");
        let delete = format!("DELETE FROM {table} WHERE {key} BETWEEN ? AND ?");
        let mut moved = 0;
        for _ in 0..2 {
            if moved >= wanted {
                break;
            }
            let last: Option<i64> = c
                .prepare_cached(&nth)?
                .query_row(params![self.cursor, (wanted - moved - 1) as i64], |r| r.get(0))
                .optional()?;
            let to = last.unwrap_or(i64::MAX);
            c.prepare_cached(self.fold)?.execute(params![self.cursor, to])?;
            moved += c.prepare_cached(&delete)?.execute(params![self.cursor, to])?;
            self.cursor = match last {
                Some(l) if l < i64::MAX => l + 1,
                _ => i64::MIN,
            };
        }
        Ok(moved)
    }
}

/// Folds a run of `balance_tail` into `balances_base`. An upsert walks the tail's rows and
/// finds each base row by its key (an UPDATE … FROM would walk every base row in the range).
/// OR ROLLBACK, as every bulk insert of a batch (see [`BULK_INSERT`]).
const FOLD_BALANCES: &str = "INSERT OR ROLLBACK INTO balances_base (account_id, balance, reserved, children_balance, \
     last_charge_at, last_transfer_id, uninvoiced, grants) SELECT account_id, balance, reserved, children_balance, \
     last_charge_at, last_transfer_id, uninvoiced, grants FROM balance_tail WHERE account_id BETWEEN ? AND ? \
     ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance, reserved = excluded.reserved, \
     children_balance = excluded.children_balance, last_charge_at = excluded.last_charge_at, \
     last_transfer_id = excluded.last_transfer_id, uninvoiced = excluded.uninvoiced, \
     grants = coalesce(excluded.grants, balances_base.grants)";

/// Folds a run of `client_key_tail` into `client_keys` (OR ROLLBACK: see [`BULK_INSERT`]).
const FOLD_KEYS: &str = "INSERT OR ROLLBACK INTO client_keys (client_key, transfer_id) SELECT client_key, transfer_id \
     FROM client_key_tail WHERE client_key BETWEEN ? AND ? ORDER BY client_key, transfer_id";

impl SqliteStore {
    fn new(conn: Connection, tail_rows: usize) -> SqliteStore {
        SqliteStore {
            conn,
            balances: Tail::new("balance_tail", "account_id", FOLD_BALANCES, tail_rows),
            keys: Tail::new("client_key_tail", "client_key", FOLD_KEYS, tail_rows),
            keys_max: None,
        }
    }

    /// Indexes the client keys of a batch's postings: above every key `client_keys` holds,
    /// appended there; the others into `client_key_tail`.
    fn write_client_keys(&mut self, transfers: &[Transfer]) -> rusqlite::Result<()> {
        if transfers.is_empty() {
            return Ok(());
        }
        let c = &self.conn;
        let max = match self.keys_max {
            Some(m) => m,
            None => c
                .prepare_cached("SELECT max(client_key) FROM client_keys")?
                .query_row([], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or(i64::MIN),
        };
        let mut keys: Vec<(i64, i64)> =
            transfers.iter().map(|t| (codec::client_key(&t.client_id), id_to_db(t.id.0))).collect();
        keys.sort_unstable();
        let above = keys.partition_point(|&(k, _)| k <= max);
        let (inside, past) = keys.split_at(above);
        let row = |&(k, id): &(i64, i64)| [Value::Integer(k), Value::Integer(id)];
        insert_rows(
            c,
            &format!("{BULK_INSERT} client_key_tail (client_key, transfer_id) VALUES "),
            "",
            inside.iter().map(row),
        )?;
        insert_rows(
            c,
            &format!("{BULK_INSERT} client_keys (client_key, transfer_id) VALUES "),
            "",
            past.iter().map(row),
        )?;
        self.keys_max = Some(past.last().map_or(max, |&(k, _)| k));
        self.keys.after_write(c, inside.len())
    }
}

/// The read side of the SQLite store.
pub struct SqliteReader {
    conn: Mutex<Connection>,
}

/// Opens both sides and migrates the schema. `path` may end in `?tail_rows=N`, the rows each
/// tail keeps before batches fold them back (see `Tail`; tests set it low to fold often).
pub fn open(path: &str) -> StoreResult<(SqliteStore, SqliteReader)> {
    let (file, tail_rows) = file_and_options(path)?;
    let mut store = SqliteStore::new(connect(file, WRITER_CACHE_KIB)?, tail_rows);
    store.migrate()?;
    let reader = SqliteReader { conn: Mutex::new(connect(file, READER_CACHE_KIB)?) };
    Ok((store, reader))
}

/// Another read-side connection to a database [`open`] migrated (for a background worker,
/// so its scans never wait behind the API's reads).
pub fn open_reader(path: &str) -> StoreResult<SqliteReader> {
    let (file, _) = file_and_options(path)?;
    Ok(SqliteReader { conn: Mutex::new(connect(file, READER_CACHE_KIB)?) })
}

/// The file of a `sqlite://` URL's path and the one option it may carry.
fn file_and_options(path: &str) -> StoreResult<(&str, usize)> {
    let Some((file, options)) = path.split_once('?') else { return Ok((path, TAIL_ROWS)) };
    match options.strip_prefix("tail_rows=").map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => Ok((file, n)),
        _ => Err(StoreError::Other(format!(
            "sqlite URL option {options:?}: the only option is tail_rows=N, a whole number of rows above 0"
        ))),
    }
}

fn opt_id(v: Option<i64>) -> Option<u64> {
    v.map(id_from_db)
}

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let kind: String = r.get(3)?;
    let role: Option<String> = r.get(4)?;
    let parent = opt_id(r.get(5)?);
    let temp: Option<i64> = r.get(11)?;
    let until: Option<i64> = r.get(12)?;
    let client_id: Option<String> = r.get(1)?;
    Ok(Account {
        id: AccountId(id_from_db(r.get(0)?)),
        client_id: client_id.map(|c| conv(codec::client_id(&r.get::<_, String>(19)?, &c))).transpose()?,
        party: opt_id(r.get(2)?).map(PartyId),
        kind: conv(codec::parse_account_kind(&kind, role.as_deref(), parent))?,
        currency: conv(codec::currency_code(&r.get::<_, String>(6)?))?,
        status: conv(codec::parse_status(&r.get::<_, String>(7)?))?,
        balance: Amount(r.get(8)?),
        reserved: Amount(r.get(9)?),
        credit_limit: Amount(r.get(10)?),
        temporary_increase: temp
            .zip(until)
            .map(|(a, u)| TemporaryIncrease { amount: Amount(a), valid_until: Timestamp(u) }),
        children_balance: Amount(r.get(13)?),
        thresholds: conv(codec::parse_thresholds(&r.get::<_, String>(14)?))?,
        last_charge_at: r.get::<_, Option<i64>>(15)?.map(Timestamp),
        created_at: Timestamp(r.get(16)?),
        last_transfer: opt_id(r.get(17)?).map(TransferId),
        uninvoiced: Amount(r.get(18)?),
        grants: Vec::new(),
    })
}

fn party_from_row(r: &Row<'_>) -> rusqlite::Result<Party> {
    let kind: String = r.get(3)?;
    let kind = if kind == "reseller" {
        PartyKind::Reseller
    } else {
        PartyKind::Customer {
            reseller: opt_id(r.get(4)?).map(PartyId),
            billing: conv(codec::parse_billing(&r.get::<_, String>(5)?))?,
            currency: conv(codec::currency_code(&r.get::<_, String>(6)?))?,
            wallet: AccountId(id_from_db(r.get(7)?)),
        }
    };
    Ok(Party {
        id: PartyId(id_from_db(r.get(0)?)),
        client_id: conv(codec::client_id(&r.get::<_, String>(11)?, &r.get::<_, String>(1)?))?,
        name: r.get(2)?,
        kind,
        created_at: Timestamp(r.get(8)?),
        subscriber_transfers: r.get(9)?,
        invoiced_until: r.get::<_, Option<i64>>(10)?.map(Timestamp),
    })
}

/// How the journal spells two columns in fewer bytes (SQLite only; every row is read back
/// exactly as it was posted, and rows written before are read as they are):
/// - `client_id`: a canonical UUID (36 lowercase hex digits and hyphens, what most callers
///   send) is kept as its 16 bytes, a BLOB; any other text as TEXT;
/// - `kind`: a charge, most of the journal, is `c`; other kinds keep their names.
///
/// 25 bytes less per charge (BENCHMARKS.md).
mod compact {
    use purse_core::TransferKind;
    use rusqlite::types::{Value, ValueRef};

    const CHARGE: &str = "c";

    pub fn client_id(text: &str) -> Value {
        uuid_bytes(text).map_or_else(|| Value::Text(text.to_owned()), |b| Value::Blob(b.to_vec()))
    }

    pub fn client_id_text(value: ValueRef<'_>) -> rusqlite::Result<String> {
        match value {
            ValueRef::Blob(b) if b.len() == 16 => Ok(uuid_text(b)),
            other => other.as_str().map(str::to_owned).map_err(Into::into),
        }
    }

    pub fn kind(kind: TransferKind) -> &'static str {
        if kind == TransferKind::Charge {
            CHARGE
        } else {
            kind.as_str()
        }
    }

    pub fn kind_text(stored: &str) -> &str {
        if stored == CHARGE {
            TransferKind::Charge.as_str()
        } else {
            stored
        }
    }

    /// The 16 bytes of `text` when it is a UUID in canonical form (so that it reads back
    /// as the same text).
    fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
        // Where each byte's two digits start, past the hyphens at 8, 13, 18 and 23. Read by
        // position and table: this runs once per posting, on the writer's thread.
        const PAIRS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        use purse_core::text::HEX_VALUES as DIGITS;
        let t = text.as_bytes();
        if t.len() != 36 || t[8] != b'-' || t[13] != b'-' || t[18] != b'-' || t[23] != b'-' {
            return None;
        }
        let mut out = [0u8; 16];
        for (byte, &at) in out.iter_mut().zip(&PAIRS) {
            let (high, low) = (DIGITS[usize::from(t[at])], DIGITS[usize::from(t[at + 1])]);
            // Lowercase only (uppercase reads above 15): the text must read back the same.
            if (high | low) > 15 {
                return None;
            }
            *byte = high << 4 | low;
        }
        Some(out)
    }

    fn uuid_text(b: &[u8]) -> String {
        let hex = purse_core::text::hex(b);
        format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn uuids_in_canonical_form_take_16_bytes_and_read_back_the_same() {
            let id = "0190b1c2-d3e4-7f56-8a9b-0c1d2e3f4a5b";
            let Value::Blob(b) = client_id(id) else { panic!("a canonical UUID is kept as bytes") };
            assert_eq!(client_id_text(ValueRef::Blob(&b)).unwrap(), id);
            for text in [
                "0190B1C2-D3E4-7F56-8A9B-0C1D2E3F4A5B",
                "0190b1c2d3e47f568a9b0c1d2e3f4a5b",
                "order-17",
                "0190b1c2-d3e4-7f56-8a9b-0c1d2e3f4a5g",
            ] {
                assert_eq!(client_id(text), Value::Text(text.to_owned()), "{text}");
            }
            assert_eq!(client_id_text(ValueRef::Text(b"order-17")).unwrap(), "order-17");
            for kind in TransferKind::ALL {
                assert_eq!(kind_text(self::kind(kind)), kind.as_str());
            }
        }
    }
}

fn transfer_from_row(r: &Row<'_>) -> rusqlite::Result<Transfer> {
    Ok(Transfer {
        id: TransferId(id_from_db(r.get(0)?)),
        client_id: conv(codec::client_id(&r.get::<_, String>(18)?, &compact::client_id_text(r.get_ref(1)?)?))?,
        kind: conv(codec::transfer_kind(compact::kind_text(&r.get::<_, String>(2)?)))?,
        debit: AccountId(id_from_db(r.get(3)?)),
        credit: AccountId(id_from_db(r.get(4)?)),
        amount: Amount(r.get(5)?),
        currency: conv(codec::currency_code(&r.get::<_, String>(6)?))?,
        at: Timestamp(r.get(7)?),
        posted_at: Timestamp(r.get(8)?),
        service: r.get(9)?,
        metadata: r.get(10)?,
        hold: opt_id(r.get(11)?).map(HoldId),
        reverses: opt_id(r.get(12)?).map(TransferId),
        overdrawn: r.get(13)?,
        debit_prev: opt_id(r.get(14)?).map(TransferId),
        credit_prev: opt_id(r.get(15)?).map(TransferId),
        debit_balance: Amount(r.get(16)?),
        credit_balance: Amount(r.get(17)?),
        grant_parts: match r.get::<_, Option<String>>(19)? {
            Some(parts) => conv(codec::parse_grant_parts(&parts))?,
            None => Vec::new(),
        },
    })
}

fn hold_from_row(r: &Row<'_>) -> rusqlite::Result<Hold> {
    let resolved_at: Option<i64> = r.get(10)?;
    let resolution_client: Option<String> = r.get(11)?;
    let resolution = resolved_at.map(|at| -> rusqlite::Result<HoldResolution> {
        Ok(HoldResolution {
            at: Timestamp(at),
            client_id: resolution_client
                .as_deref()
                .map(|c| conv(codec::client_id(&r.get::<_, String>(15)?, c)))
                .transpose()?,
            captured: Amount(r.get(12)?),
            transfer: opt_id(r.get(13)?).map(TransferId),
        })
    });
    Ok(Hold {
        id: HoldId(id_from_db(r.get(0)?)),
        client_id: conv(codec::client_id(&r.get::<_, String>(14)?, &r.get::<_, String>(1)?))?,
        account: AccountId(id_from_db(r.get(2)?)),
        amount: Amount(r.get(3)?),
        currency: conv(codec::currency_code(&r.get::<_, String>(4)?))?,
        created_at: Timestamp(r.get(5)?),
        expires_at: Timestamp(r.get(6)?),
        state: conv(codec::parse_hold_state(&r.get::<_, String>(7)?))?,
        service: r.get(8)?,
        metadata: r.get(9)?,
        resolution: resolution.transpose()?,
        grant_parts: conv(codec::parse_grant_parts(&r.get::<_, String>(16)?))?,
    })
}

fn by_id<T>(
    conn: &Connection,
    sql: &str,
    ids: impl IntoIterator<Item = u64>,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(err)?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(v) = stmt.query_row([id_to_db(id)], f).optional().map_err(err)? {
            out.push(v);
        }
    }
    Ok(out)
}

impl SqliteStore {
    fn apply_migrations(c: &mut Connection) -> StoreResult<()> {
        for (name, sql) in MIGRATIONS {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
            let done: Option<String> = tx
                .query_row("SELECT name FROM schema_migrations WHERE name = ?", [name], |r| r.get(0))
                .optional()
                .map_err(err)?;
            if done.is_none() {
                tx.execute_batch(sql).map_err(err)?;
                tx.execute("INSERT INTO schema_migrations VALUES (?, strftime('%s','now'))", [name]).map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn migrate(&mut self) -> StoreResult<()> {
        let c = &mut self.conn;
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .map_err(err)?;
        // SQLite changes a constraint by rebuilding the table, which its foreign keys would
        // refuse midway: they are off while migrating (the pragma is a no-op inside a
        // transaction) and checked whole before they are on again.
        c.execute_batch("PRAGMA foreign_keys = OFF").map_err(err)?;
        let migrated = Self::apply_migrations(c);
        let violations: rusqlite::Result<i64> =
            c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0));
        c.execute_batch("PRAGMA foreign_keys = ON").map_err(err)?;
        migrated?;
        match violations.map_err(err)? {
            0 => Ok(()),
            n => Err(StoreError::Other(format!("sqlite: the migrated schema has {n} foreign key violations"))),
        }
    }

    fn begin(&mut self) -> StoreResult<u64> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let epoch: i64 = self
            .conn
            .prepare_cached("SELECT epoch FROM ledger_epoch WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(err)?;
        Ok(epoch as u64)
    }

    fn load_base(&mut self) -> StoreResult<BaseState> {
        let c = &self.conn;
        let currencies = c
            .prepare("SELECT code, scale FROM currencies")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let code: String = r.get(0)?;
                    Ok(Currency { code: conv(codec::currency_code(&code))?, scale: r.get(1)? })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(err)?;
        let system_accounts = c
            .prepare(&format!("{ACCOUNT_SELECT} WHERE a.kind = 'system'"))
            .and_then(|mut s| s.query_map([], account_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        let open_holds = c
            .prepare(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE state = 'open'"))
            .and_then(|mut s| s.query_map([], hold_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        let next = |table: &str| -> StoreResult<u64> {
            let max: Option<i64> =
                c.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0)).map_err(err)?;
            Ok(max.map_or(1, |m| id_from_db(m) + 1))
        };
        let next = purse_core::NextIds {
            party: next("parties")?,
            account: next("accounts")?,
            // Grants are numbered in the postings' sequence (a rolled-over one takes an id no
            // posting has).
            transfer: next("transfers")?.max(next("grants")?),
            hold: next("holds")?,
            event: next("outbox")?,
        };
        Ok(BaseState { currencies, system_accounts, open_holds, next })
    }

    fn load_accounts(&mut self, ids: &[AccountId]) -> StoreResult<Vec<Account>> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.id = ?");
        by_id(&self.conn, &sql, ids.iter().map(|i| i.0), account_from_row)
    }

    fn load_parties(&mut self, ids: &[PartyId]) -> StoreResult<Vec<Party>> {
        let sql = format!("SELECT {PARTY_SELECT} FROM parties WHERE id = ?");
        by_id(&self.conn, &sql, ids.iter().map(|i| i.0), party_from_row)
    }

    fn load_holds(&mut self, ids: &[HoldId]) -> StoreResult<Vec<Hold>> {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?");
        by_id(&self.conn, &sql, ids.iter().map(|i| i.0), hold_from_row)
    }

    fn load_transfers(&mut self, ids: &[TransferId]) -> StoreResult<Vec<(Transfer, Option<TransferId>)>> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?");
        let transfers = by_id(&self.conn, &sql, ids.iter().map(|i| i.0), transfer_from_row)?;
        let mut stmt = self.conn.prepare_cached("SELECT id FROM transfers WHERE reverses_id = ?").map_err(err)?;
        transfers
            .into_iter()
            .map(|t| {
                let by: Option<i64> = stmt.query_row([id_to_db(t.id.0)], |r| r.get(0)).optional().map_err(err)?;
                Ok((t, by.map(|b| TransferId(id_from_db(b)))))
            })
            .collect()
    }

    fn lookup_client_keys(&mut self, keys: &[ClientKey]) -> StoreResult<Vec<(ClientKey, Prior)>> {
        let c = &self.conn;
        let mut found = Vec::new();
        // Every stored key is at most the largest of `client_keys` (a key goes to the tail
        // only when it is not above it, and nothing is deleted), so a key above it was never
        // stored: a time-ordered id's, nearly always. Read in the writer's transaction, so a
        // key another process stored is counted.
        let max: i64 = c
            .prepare_cached("SELECT max(client_key) FROM client_keys")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, Option<i64>>(0)))
            .map_err(err)?
            .unwrap_or(i64::MIN);
        self.keys_max = Some(max);
        let transfer_ids: Vec<&purse_core::ClientId> = keys
            .iter()
            .filter_map(|k| match k {
                ClientKey::Transfer(id) if codec::client_key(id) <= max => Some(id),
                _ => None,
            })
            .collect();
        let wanted: std::collections::HashSet<&purse_core::ClientId> = transfer_ids.iter().copied().collect();
        let mut rest = transfer_ids.as_slice();
        for size in statement_sizes(rest.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            // A key is in one of the two tables (see `Tail`).
            for table in ["client_keys", "client_key_tail"] {
                let sql = format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id IN \
                     (SELECT transfer_id FROM {table} WHERE client_key IN ({}))",
                    vec!["?"; chunk.len()].join(",")
                );
                let mut stmt = c.prepare_cached(&sql).map_err(err)?;
                let keys = chunk.iter().map(|id| codec::client_key(id));
                let rows = stmt.query_map(rusqlite::params_from_iter(keys), transfer_from_row).map_err(err)?;
                for t in rows {
                    let t = t.map_err(err)?;
                    // Keys may collide: only exact client ids are earlier uses.
                    if wanted.contains(&t.client_id) {
                        found.push((ClientKey::Transfer(t.client_id.clone()), Prior::Transfer(t)));
                    }
                }
            }
        }
        for key in keys {
            let prior = match key {
                ClientKey::Transfer(_) => None,
                ClientKey::Hold(id) => {
                    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE client_tenant = ? AND client_id = ?");
                    let mut s = c.prepare_cached(&sql).map_err(err)?;
                    s.query_row(params![codec::tenant(id.tenant()), id.as_str()], hold_from_row)
                        .optional()
                        .map_err(err)?
                        .map(Prior::Hold)
                }
                ClientKey::Release(id) => {
                    let sql = format!(
                        "SELECT {HOLD_COLUMNS} FROM holds WHERE resolution_client_tenant = ? AND resolution_client_id = ? AND state = 'released'"
                    );
                    let mut s = c.prepare_cached(&sql).map_err(err)?;
                    s.query_row(params![codec::tenant(id.tenant()), id.as_str()], hold_from_row)
                        .optional()
                        .map_err(err)?
                        .map(Prior::Hold)
                }
                ClientKey::Party(id) => {
                    let sql = format!("SELECT {PARTY_SELECT} FROM parties WHERE client_tenant = ? AND client_id = ?");
                    let mut s = c.prepare_cached(&sql).map_err(err)?;
                    s.query_row(params![codec::tenant(id.tenant()), id.as_str()], party_from_row)
                        .optional()
                        .map_err(err)?
                        .map(Prior::Party)
                }
                ClientKey::Account(id) => {
                    let sql = format!("{ACCOUNT_SELECT} WHERE a.client_tenant = ? AND a.client_id = ?");
                    let mut s = c.prepare_cached(&sql).map_err(err)?;
                    s.query_row(params![codec::tenant(id.tenant()), id.as_str()], account_from_row)
                        .optional()
                        .map_err(err)?
                        .map(Prior::Account)
                }
            };
            if let Some(p) = prior {
                found.push((key.clone(), p));
            }
        }
        Ok(found)
    }

    fn client_keys_max(&self) -> Option<i64> {
        self.keys_max
    }

    fn write(&mut self, out: &BatchOutput) -> StoreResult<()> {
        write_output(&self.conn, out).map_err(err)?;
        self.balances.after_write(&self.conn, out.accounts_changed.len()).map_err(err)?;
        self.write_client_keys(&out.transfers).map_err(err)?;
        purse_store::grants::write(&mut db::Lite(&self.conn), out)?;
        purse_store::invoices::write_issues(&mut db::Lite(&self.conn), &out.invoices)
    }

    fn commit(&mut self) -> StoreResult<()> {
        self.conn.execute_batch("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> StoreResult<()> {
        self.balances.rows = None;
        self.keys.rows = None;
        self.keys_max = None;
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(err)
    }

    fn in_batch(&mut self, f: &mut dyn FnMut(&mut dyn purse_store::Db) -> StoreResult<()>) -> StoreResult<()> {
        f(&mut crate::db::Lite(&self.conn))
    }

    fn write_responses(&mut self, responses: &[StoredResponse]) -> StoreResult<()> {
        let rows = responses.iter().map(|r| {
            [
                Value::Integer(id_to_db(r.api_key)),
                Value::Text(r.key.clone()),
                Value::Text(r.request_hash.clone()),
                Value::Integer(i64::from(r.status)),
                Value::Blob(r.body.clone()),
                Value::Integer(r.created_at.0),
            ]
        });
        insert_rows(
            &self.conn,
            &format!(
                "{BULK_INSERT} idempotent_responses (api_key_id, key, request_hash, status, body, created_at) VALUES "
            ),
            " ON CONFLICT DO NOTHING",
            rows,
        )
        .map_err(err)
    }

    fn stored_responses(&mut self, keys: &[(u64, &str)]) -> StoreResult<Vec<StoredResponse>> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT request_hash, status, body, created_at FROM idempotent_responses WHERE api_key_id = ? AND key = ?",
            )
            .map_err(err)?;
        let mut found = Vec::new();
        for (api_key, key) in keys {
            let row = s
                .query_row(params![id_to_db(*api_key), key], |r| {
                    Ok(StoredResponse {
                        api_key: *api_key,
                        key: (*key).to_owned(),
                        request_hash: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                    })
                })
                .optional()
                .map_err(err)?;
            found.extend(row);
        }
        Ok(found)
    }

    fn purge_responses(&mut self, before: Timestamp) -> StoreResult<u64> {
        self.conn
            .execute("DELETE FROM idempotent_responses WHERE created_at < ?", [before.0])
            .map(|n| n as u64)
            .map_err(err)
    }
}

fn write_output(c: &Connection, out: &BatchOutput) -> rusqlite::Result<()> {
    for cur in &out.currencies {
        c.execute("INSERT INTO currencies (code, scale) VALUES (?, ?)", params![cur.code.as_str(), cur.scale])?;
    }
    for p in &out.parties {
        let (kind, reseller, billing, currency, wallet) = codec::party_columns(&p.kind);
        c.prepare_cached(&format!("INSERT INTO parties ({PARTY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"))?.execute(
            params![
                id_to_db(p.id.0),
                p.client_id.as_str(),
                p.name,
                kind,
                reseller,
                billing,
                currency,
                wallet,
                p.created_at.0,
                codec::tenant(p.client_id.tenant())
            ],
        )?;
    }
    // The remainders of the grants of the accounts whose grants changed ('' when none is
    // left); the other accounts keep what is stored.
    let mut grant_text: purse_core::ledger::FastMap<AccountId, String> =
        out.grant_balances.iter().map(|(a, g)| (*a, codec::grant_balances(g))).collect();
    let grants_of = |text: &mut purse_core::ledger::FastMap<AccountId, String>, id: AccountId| {
        text.remove(&id).map_or(Value::Null, Value::Text)
    };
    if !out.accounts_new.is_empty() {
        let mut insert = c.prepare_cached(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        ))?;
        let mut balances = c.prepare_cached("INSERT INTO balances_base (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced, grants) VALUES (?,?,?,?,?,?,?,?)")?;
        for a in &out.accounts_new {
            let (kind, role, parent) = codec::account_kind(a.kind);
            insert.execute(params![
                id_to_db(a.id.0),
                a.client_id.as_ref().map(|c| c.as_str()),
                a.party.map(|p| id_to_db(p.0)),
                kind,
                role,
                parent.map(id_to_db),
                a.currency.as_str(),
                codec::status(a.status),
                a.credit_limit.0,
                a.temporary_increase.map(|t| t.amount.0),
                a.temporary_increase.map(|t| t.valid_until.0),
                codec::thresholds(&a.thresholds),
                a.created_at.0,
                a.client_id.as_ref().map_or_else(String::new, |c| codec::tenant(c.tenant())),
            ])?;
            balances.execute(params![
                id_to_db(a.id.0),
                a.balance.0,
                a.reserved.0,
                a.children_balance.0,
                a.last_charge_at.map(|t| t.0),
                a.last_transfer.map(|t| id_to_db(t.0)),
                a.uninvoiced.0,
                grants_of(&mut grant_text, a.id),
            ])?;
        }
    }
    // Changed balances go to the tail (see `Tail`). Accounts whose grants changed
    // also write their grants' remainders; the others keep what is stored.
    let balance = |a: &Account| {
        [
            Value::Integer(id_to_db(a.id.0)),
            Value::Integer(a.balance.0),
            Value::Integer(a.reserved.0),
            Value::Integer(a.children_balance.0),
            a.last_charge_at.map_or(Value::Null, |t| Value::Integer(t.0)),
            a.last_transfer.map_or(Value::Null, |t| Value::Integer(id_to_db(t.0))),
            Value::Integer(a.uninvoiced.0),
        ]
    };
    const BALANCE_SET: &str = " ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance, \
         reserved = excluded.reserved, children_balance = excluded.children_balance, \
         last_charge_at = excluded.last_charge_at, last_transfer_id = excluded.last_transfer_id, \
         uninvoiced = excluded.uninvoiced";
    let (with_grants, plain): (Vec<&Account>, Vec<&Account>) =
        out.accounts_changed.iter().partition(|a| grant_text.contains_key(&a.id));
    insert_rows(
        c,
        &format!("{BULK_INSERT} balance_tail (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced) VALUES "),
        BALANCE_SET,
        plain.into_iter().map(balance),
    )?;
    let rows = with_grants.into_iter().map(|a| {
        let [a0, a1, a2, a3, a4, a5, a6] = balance(a);
        [a0, a1, a2, a3, a4, a5, a6, grants_of(&mut grant_text, a.id)]
    });
    insert_rows(
        c,
        &format!("{BULK_INSERT} balance_tail (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced, grants) VALUES "),
        &format!("{BALANCE_SET}, grants = excluded.grants"),
        rows,
    )?;
    let mut settings = c.prepare_cached(
        "UPDATE accounts SET status = ?, credit_limit = ?, temp_increase = ?, temp_valid_until = ?, \
         thresholds = ? WHERE id = ?",
    )?;
    // Settings rarely change: the accounts are looked up only when some did.
    let changed: purse_core::ledger::FastMap<AccountId, &Account> = match out.settings_changed.is_empty() {
        true => Default::default(),
        false => out.accounts_changed.iter().map(|a| (a.id, a)).collect(),
    };
    for id in &out.settings_changed {
        let a = changed[id];
        settings.execute(params![
            codec::status(a.status),
            a.credit_limit.0,
            a.temporary_increase.map(|t| t.amount.0),
            a.temporary_increase.map(|t| t.valid_until.0),
            codec::thresholds(&a.thresholds),
            id_to_db(a.id.0),
        ])?;
    }
    let text = |t: Option<&str>| t.map_or(Value::Null, |t| Value::Text(t.to_owned()));
    let int = |i: Option<u64>| i.map_or(Value::Null, |i| Value::Integer(id_to_db(i)));
    let transfer = |t: &Transfer| {
        [
            Value::Integer(id_to_db(t.id.0)),
            compact::client_id(t.client_id.as_str()),
            Value::Text(compact::kind(t.kind).to_owned()),
            Value::Integer(id_to_db(t.debit.0)),
            Value::Integer(id_to_db(t.credit.0)),
            Value::Integer(t.amount.0),
            Value::Text(t.currency.as_str().to_owned()),
            Value::Integer(t.at.0),
            Value::Integer(t.posted_at.0),
            text(t.service.as_deref()),
            text(t.metadata.as_deref()),
            int(t.hold.map(|h| h.0)),
            int(t.reverses.map(|r| r.0)),
            Value::Integer(i64::from(t.overdrawn)),
            int(t.debit_prev.map(|p| p.0)),
            int(t.credit_prev.map(|p| p.0)),
            Value::Integer(t.debit_balance.0),
            Value::Integer(t.credit_balance.0),
            Value::Text(codec::tenant(t.client_id.tenant())),
            // The key lives in `client_keys` or `client_key_tail` (migration 0025); a zero
            // here costs no byte of the row.
            Value::Integer(0),
        ]
    };
    // Most postings no grant paid: they leave `grant_parts` out (NULL). Runs are written in
    // order (a reversal names a posting before it).
    let columns = TRANSFER_COLUMNS.trim_end_matches(", grant_parts");
    for run in out.transfers.chunk_by(|a, b| a.grant_parts.is_empty() == b.grant_parts.is_empty()) {
        if run[0].grant_parts.is_empty() {
            insert_rows(
                c,
                &format!("{BULK_INSERT} transfers ({columns}, client_key) VALUES "),
                "",
                run.iter().map(transfer),
            )?;
        } else {
            let rows = run.iter().map(|t| -> [Value; 21] {
                let mut row = transfer(t).to_vec();
                row.push(Value::Text(codec::grant_parts(&t.grant_parts)));
                row.try_into().expect("21 columns")
            });
            insert_rows(c, &format!("{BULK_INSERT} transfers ({columns}, client_key, grant_parts) VALUES "), "", rows)?;
        }
    }

    for h in &out.holds {
        let r = h.resolution.as_ref();
        c.prepare_cached(&format!(
            "INSERT INTO holds ({HOLD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, resolved_at = excluded.resolved_at, \
             resolution_client_id = excluded.resolution_client_id, captured = excluded.captured, \
             capture_transfer_id = excluded.capture_transfer_id, \
             resolution_client_tenant = excluded.resolution_client_tenant"
        ))?
        .execute(params![
            id_to_db(h.id.0),
            h.client_id.as_str(),
            id_to_db(h.account.0),
            h.amount.0,
            h.currency.as_str(),
            h.created_at.0,
            h.expires_at.0,
            codec::hold_state(h.state),
            h.service,
            h.metadata,
            r.map(|r| r.at.0),
            r.and_then(|r| r.client_id.as_ref().map(|c| c.as_str())),
            r.map_or(0, |r| r.captured.0),
            r.and_then(|r| r.transfer.map(|t| id_to_db(t.0))),
            codec::tenant(h.client_id.tenant()),
            r.and_then(|r| r.client_id.as_ref()).map_or_else(String::new, |c| codec::tenant(c.tenant())),
            codec::grant_parts(&h.grant_parts),
        ])?;
    }
    let mut event = c.prepare_cached(
        "INSERT INTO outbox (id, at, account_id, kind, threshold, direction, available_before, available_after, transfer_id, amount) \
         VALUES (?,?,?,?,?,?,?,?,?,?)",
    )?;
    for e in &out.events {
        let (kind, threshold, direction, before, after, transfer, amount) = codec::event_columns(&e.kind);
        event.execute(params![
            id_to_db(e.id.0),
            e.at.0,
            id_to_db(e.account.0),
            kind,
            threshold,
            direction,
            before,
            after,
            transfer,
            amount
        ])?;
    }
    for p in &out.parties_changed {
        c.prepare_cached("UPDATE parties SET subscriber_transfers = ?, invoiced_until = ? WHERE id = ?")?
            .execute(params![p.subscriber_transfers, p.invoiced_until.map(|t| t.0), id_to_db(p.id.0)])?;
    }
    credit::write_limit_changes(c, &out.limit_changes)?;
    credit::write_money_notes(c, &out.notes)?;
    c.prepare_cached("UPDATE ledger_epoch SET epoch = epoch + 1 WHERE id = 1")?.execute([])?;
    Ok(())
}

/// How a batch's bulk inserts begin. OR ROLLBACK: a constraint broken there rolls the
/// batch's whole transaction back, as the engine does anyway on any failed write (and then
/// commits the batch in halves), so SQLite keeps no statement journal for them. Otherwise each
/// multi-row statement first copied every page it was about to change, in case it alone had
/// to be undone: some 7 % of the writer's time on large batches (BENCHMARKS.md).
const BULK_INSERT: &str = "INSERT OR ROLLBACK INTO";

/// Rows per multi-row statement: statement overhead (step, halt) dominates single-row
/// inserts, and 256 rows of 21 columns (5,376 variables) stay far below SQLite's
/// bound-variable limit (32,766). 256 rather than 64: an upsert's statement still keeps a
/// statement journal (SQLite codes its DO UPDATE to abort on a broken constraint), which
/// copies each page the statement changes once; fewer, larger statements copy fewer
/// (BENCHMARKS.md).
const ROWS_PER_STATEMENT: usize = 256;

/// Splits `n` rows into statement sizes: full [`ROWS_PER_STATEMENT`] chunks, then powers
/// of two. Every size is one of nine, so every statement stays in the prepared cache.
fn statement_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = if n >= ROWS_PER_STATEMENT { ROWS_PER_STATEMENT } else { 1 << n.checked_ilog2()? };
        n -= size;
        Some(size)
    })
}

/// Inserts rows with few, cached, multi-row statements. `suffix` may carry `ON CONFLICT`.
/// Rows are made as they are bound, a statement's worth at a time: a batch's rows are never
/// all in memory at once (8,192 journal rows would be 5 MB of fresh pages per batch).
fn insert_rows<const N: usize>(
    c: &Connection,
    prefix: &str,
    suffix: &str,
    mut rows: impl ExactSizeIterator<Item = [Value; N]>,
) -> rusqlite::Result<()> {
    let n = rows.len();
    let one = format!("({})", vec!["?"; N].join(","));
    let sql = |size: usize| format!("{prefix}{}{suffix}", vec![one.as_str(); size].join(","));
    let mut chunk: Vec<[Value; N]> = Vec::with_capacity(n.min(ROWS_PER_STATEMENT));
    // The full-size statement is written and looked up once per call, not once per chunk
    // (a batch of 8,192 journal rows is 128 of them).
    let full = n / ROWS_PER_STATEMENT;
    if full > 0 {
        let mut statement = c.prepare_cached(&sql(ROWS_PER_STATEMENT))?;
        for _ in 0..full {
            chunk.clear();
            chunk.extend(rows.by_ref().take(ROWS_PER_STATEMENT));
            statement.execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        }
    }
    for size in statement_sizes(n - full * ROWS_PER_STATEMENT) {
        chunk.clear();
        chunk.extend(rows.by_ref().take(size));
        c.prepare_cached(&sql(size))?.execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
    }
    Ok(())
}

impl SqliteReader {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner); // a panicking reader leaves it usable
        f(&conn).map_err(err)
    }

    /// Accounts read by `f` with their open grants, from one snapshot.
    fn with_grants(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<Vec<Account>>) -> StoreResult<Vec<Account>> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.execute_batch("BEGIN").map_err(err)?;
        let read = f(&conn).map_err(err).and_then(|mut accounts| {
            purse_store::grants::attach(&mut db::Lite(&conn), &mut accounts)?;
            Ok(accounts)
        });
        conn.execute_batch("COMMIT").map_err(err)?;
        read
    }

    fn mismatches(c: &Connection, sql: &str) -> rusqlite::Result<Vec<(AccountId, i64, i128)>> {
        let mut s = c.prepare(sql)?;
        let rows = s.query_map([], |r| {
            Ok((AccountId(id_from_db(r.get(0)?)), r.get::<_, i64>(1)?, i128::from(r.get::<_, i64>(2)?)))
        })?;
        rows.collect()
    }
}

impl Reader for SqliteReader {
    fn currencies(&self) -> StoreResult<Vec<Currency>> {
        self.with(|c| {
            let mut s = c.prepare_cached("SELECT code, scale FROM currencies ORDER BY code")?;
            let rows = s.query_map([], |r| {
                let code: String = r.get(0)?;
                Ok(Currency { code: conv(codec::currency_code(&code))?, scale: r.get(1)? })
            })?;
            rows.collect()
        })
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.with_grants(|c| {
            let found = c
                .prepare_cached(&format!("{ACCOUNT_SELECT} WHERE a.id = ?"))?
                .query_row([id_to_db(id.0)], account_from_row)
                .optional()?;
            Ok(found.into_iter().collect())
        })
        .map(|mut v| v.pop())
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        self.with(|c| {
            let mut s = c.prepare_cached(&format!("{ACCOUNT_SELECT} ORDER BY a.id"))?;
            let rows = s.query_map([], account_from_row)?;
            rows.collect()
        })
    }

    fn accounts_of_parties(&self, parties: &[PartyId]) -> StoreResult<Vec<Account>> {
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let marks = vec!["?"; parties.len()].join(",");
            let mut s = c.prepare(&format!("{ACCOUNT_SELECT} WHERE a.party_id IN ({marks}) ORDER BY a.id"))?;
            let rows =
                s.query_map(rusqlite::params_from_iter(parties.iter().map(|p| id_to_db(p.0))), account_from_row)?;
            rows.collect()
        })
    }

    fn party(&self, id: PartyId) -> StoreResult<Option<Party>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {PARTY_SELECT} FROM parties WHERE id = ?"))?
                .query_row([id_to_db(id.0)], party_from_row)
                .optional()
        })
    }

    fn parties(&self, q: PartyQuery) -> StoreResult<Vec<Party>> {
        self.with(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {PARTY_SELECT} FROM parties WHERE (?1 IS NULL OR (kind = 'reseller') = ?1) \
                 AND (?2 IS NULL OR reseller_id = ?2) AND id > ?3 \
                 AND (?5 IS NULL OR instr(lower(name), ?5) > 0 OR instr(lower(client_id), ?5) > 0) ORDER BY id LIMIT ?4"
            ))?;
            let rows = s.query_map(
                params![
                    q.resellers,
                    q.reseller.map(|p| id_to_db(p.0)),
                    id_to_db(q.after.map_or(0, |p| p.0)),
                    q.limit,
                    q.search
                ],
                party_from_row,
            )?;
            rows.collect()
        })
    }

    fn accounts_of(&self, party: PartyId) -> StoreResult<Vec<Account>> {
        self.with_grants(|c| {
            let mut s = c.prepare_cached(&format!("{ACCOUNT_SELECT} WHERE a.party_id = ? ORDER BY a.id"))?;
            let rows = s.query_map([id_to_db(party.0)], account_from_row)?;
            rows.collect()
        })
    }

    fn transfer(&self, id: TransferId) -> StoreResult<Option<Transfer>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?"))?
                .query_row([id_to_db(id.0)], transfer_from_row)
                .optional()
        })
    }

    fn hold(&self, id: HoldId) -> StoreResult<Option<Hold>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?"))?
                .query_row([id_to_db(id.0)], hold_from_row)
                .optional()
        })
    }

    fn transfer_by_client_id(&self, client_id: &purse_core::ClientId) -> StoreResult<Option<Transfer>> {
        // By the key, then the id compared as read (keys may collide, and a UUID is stored as
        // text or as bytes depending on when it was posted).
        self.with(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE client_tenant = ?2 AND id IN \
                 (SELECT transfer_id FROM client_keys WHERE client_key = ?1 \
                  UNION ALL SELECT transfer_id FROM client_key_tail WHERE client_key = ?1)"
            ))?;
            let rows = s.query_map(
                params![codec::client_key(client_id), codec::tenant(client_id.tenant())],
                transfer_from_row,
            )?;
            for t in rows {
                let t = t?;
                if t.client_id == *client_id {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        })
    }

    fn journal(&self, q: JournalQuery) -> StoreResult<Vec<Transfer>> {
        self.with(|c| {
            let mut by_id = c.prepare_cached(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?"))?;
            let mut next = match q.before {
                None => c
                    .prepare_cached("SELECT last_transfer_id FROM balances WHERE account_id = ?")?
                    .query_row([id_to_db(q.account.0)], |r| r.get::<_, Option<i64>>(0))
                    .optional()?
                    .flatten(),
                Some(cursor) => {
                    let t = by_id.query_row([id_to_db(cursor.0)], transfer_from_row).optional()?;
                    t.and_then(|t| previous(&t, q.account)).map(|p| id_to_db(p.0))
                }
            };
            let mut page = Vec::new();
            while let (Some(id), true) = (next, page.len() < q.limit as usize) {
                let t = by_id.query_row([id], transfer_from_row)?;
                next = previous(&t, q.account).map(|p| id_to_db(p.0));
                page.push(t);
            }
            Ok(page)
        })
    }

    fn expired_reservations(&self, account: AccountId, now: Timestamp) -> StoreResult<i64> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT COALESCE(SUM(amount), 0) FROM holds WHERE account_id = ? AND state = 'open' AND expires_at <= ?",
            )?
            .query_row(params![id_to_db(account.0), now.0], |r| r.get(0))
        })
    }

    fn audit(&self) -> StoreResult<Audit> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT a.currency, SUM(b.balance) FROM accounts a JOIN balances b ON b.account_id = a.id \
                 GROUP BY a.currency ORDER BY a.currency",
            )?;
            let balance_sums = s
                .query_map([], |r| Ok((r.get::<_, String>(0)?, i128::from(r.get::<_, i64>(1)?))))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let balance_mismatches = Self::mismatches(
                c,
                "SELECT a.account_id, a.balance, COALESCE(cr.s, 0) - COALESCE(db.s, 0) FROM balances a
                 LEFT JOIN (SELECT credit_account_id id, SUM(amount) s FROM transfers GROUP BY credit_account_id) cr ON cr.id = a.account_id
                 LEFT JOIN (SELECT debit_account_id id, SUM(amount) s FROM transfers GROUP BY debit_account_id) db ON db.id = a.account_id
                 WHERE a.balance != COALESCE(cr.s, 0) - COALESCE(db.s, 0)",
            )?;
            let reserved_mismatches = Self::mismatches(
                c,
                "SELECT a.account_id, a.reserved, COALESCE(h.s, 0) FROM balances a
                 LEFT JOIN (SELECT account_id id, SUM(amount) s FROM holds WHERE state = 'open' GROUP BY account_id) h ON h.id = a.account_id
                 WHERE a.reserved != COALESCE(h.s, 0)",
            )?;
            let children_mismatches = Self::mismatches(
                c,
                "SELECT p.account_id, p.children_balance, COALESCE(k.s, 0) FROM balances p
                 LEFT JOIN (SELECT a.parent_id id, SUM(b.balance) s FROM accounts a JOIN balances b ON b.account_id = a.id
                            WHERE a.kind = 'subscriber_credit' GROUP BY a.parent_id) k ON k.id = p.account_id
                 WHERE p.children_balance != COALESCE(k.s, 0)",
            )?;
            let transfer_count: i64 = c.query_row("SELECT count(*) FROM transfers", [], |r| r.get(0))?;
            let duplicates: i64 = c.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM transfers GROUP BY client_tenant, client_id HAVING count(*) > 1)",
                [],
                |r| r.get(0),
            )?;
            Ok(Audit {
                balance_sums,
                balance_mismatches,
                reserved_mismatches,
                children_mismatches,
                duplicate_client_ids: duplicates as u64,
                transfer_count: transfer_count as u64,
            })
        })
    }

    fn outbox_count(&self) -> StoreResult<u64> {
        self.with(|c| c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0)).map(|n| n as u64))
    }
}

/// The posting before `t` in `account`'s chain.
fn previous(t: &Transfer, account: AccountId) -> Option<TransferId> {
    if t.debit == account {
        t.debit_prev
    } else {
        t.credit_prev
    }
}

/// Runs raw SQL on a fresh connection: for tests that prove the schema refuses things.
pub fn execute_raw(path: &str, sql: &str) -> StoreResult<usize> {
    let conn = connect(path, READER_CACHE_KIB)?;
    conn.execute(sql, []).map_err(err)
}

#[cfg(test)]
mod tests {
    /// The store's connections write their WAL through `purse-sqlite-wal` (a new file's
    /// migrations commit through it; without it, nothing in this process would).
    #[test]
    fn the_store_writes_its_wal_through_the_gathering_vfs() {
        let dir = std::env::temp_dir().join(format!("purse-store-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let before = purse_sqlite_wal::wal_writes();
        let opened = super::open(dir.join("db").to_str().unwrap());
        assert!(opened.is_ok());
        assert!(purse_sqlite_wal::wal_writes() > before, "no WAL write went through the VFS");
        drop(opened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
