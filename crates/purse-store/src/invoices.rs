//! Invoices, receipts and allocations, written once for both backends over [`Db`], a
//! connection (or transaction) that runs the shared SQL with `$1` parameters.
//!
//! - A usage invoice is written by [`write_issues`] in the ledger batch's transaction that
//!   moved the uninvoiced amounts (`BatchOutput::invoices`): numbered per issuer without
//!   gaps (`usage_invoice_numbers`, under the ledger's write lock), rounded once with the
//!   customer's previous carry ([`purse_core::invoice::round_total`]), and with each
//!   account's place in its journal chain, so its lines are read back from the journal.
//! - Payments are the receipts (one per payment into a wallet). [`allocate`] applies what is
//!   left of them to the customer's open usage invoices oldest first (a payment made for an
//!   invoice goes there first); every allocation is a row, released (never deleted) when
//!   its invoice is voided or its payment reversed.
//! - Every change runs in one transaction, with the customer locked ([`Db::lock`]), so two
//!   processes never allocate the same money twice.

use purse_core::invoice::{self as rules, Due, Unallocated};
use purse_core::time::Zone;
use std::collections::BTreeMap;

use purse_core::{AccountId, InvoiceIssue, PartyId, Timestamp, TransferId, TransferKind};

use crate::codec::{currency_code, id_from_db, id_to_db};
use crate::credit::{AuditEntry, Value};
use crate::payments::{InvoiceKind, InvoiceRecord, InvoiceStatus, ReceiptRecord};
use crate::{StoreError, StoreResult};

/// A connection or transaction that runs the shared SQL.
pub trait Db {
    /// Runs a query and returns its rows (integers, texts and NULLs).
    fn rows(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Vec<Value>>>;
    /// Runs a statement and returns how many rows it changed.
    fn run(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64>;
    /// Holds a lock on `key` until the transaction ends (SQLite's write transaction is
    /// exclusive already).
    fn lock(&mut self, key: i64) -> StoreResult<()>;
    /// What a `SELECT` appends to lock the rows it reads until the transaction ends (with
    /// `skip_locked`: passing over rows another transaction holds); nothing on SQLite,
    /// whose write transaction is exclusive already.
    fn row_lock(&self, skip_locked: bool) -> &'static str;
}

/// A backend that runs a closure on its connection: `write` in one transaction that is
/// committed when the closure succeeds and rolled back when it fails.
pub trait Transact: Send + Sync {
    fn with_db(&self, write: bool, f: &mut dyn FnMut(&mut dyn Db) -> StoreResult<()>) -> StoreResult<()>;
}

pub(crate) fn run_db<T>(
    s: &(impl Transact + ?Sized),
    write: bool,
    mut f: impl FnMut(&mut dyn Db) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut out = None;
    s.with_db(write, &mut |db| {
        out = Some(f(db)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Other("transaction returned nothing".into()))
}

impl Value {
    pub fn int(&self) -> StoreResult<i64> {
        self.opt_int()?.ok_or_else(|| StoreError::Other("unexpected NULL".into()))
    }

    pub fn opt_int(&self) -> StoreResult<Option<i64>> {
        match self {
            Value::Int(v) => Ok(*v),
            Value::Text(None) => Ok(None),
            Value::Text(Some(t)) => Err(StoreError::Other(format!("expected an integer, got {t:?}"))),
        }
    }

    pub fn text(&self) -> StoreResult<String> {
        self.opt_text()?.ok_or_else(|| StoreError::Other("unexpected NULL".into()))
    }

    pub fn opt_text(&self) -> StoreResult<Option<String>> {
        match self {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(None) => Ok(None),
            Value::Int(Some(i)) => Err(StoreError::Other(format!("expected a text, got {i}"))),
        }
    }
}

fn id(v: u64) -> Value {
    Value::from(id_to_db(v))
}

fn party_value(p: Option<PartyId>) -> Value {
    Value::from(p.map_or(0, |p| id_to_db(p.0)))
}

/// What a customer's usage invoices follow: the day of the month each cycle starts
/// (1–28) and the customer's time zone, in which its days start (cycles, daily recharge caps,
/// Balance Details' days).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingSettings {
    pub party: PartyId,
    pub cycle_day: u8,
    pub time_zone: Zone,
    pub updated_at: Timestamp,
}

impl BillingSettings {
    /// Monthly on the 1st, UTC.
    pub fn default_for(party: PartyId) -> BillingSettings {
        BillingSettings { party, cycle_day: 1, time_zone: Zone::utc(), updated_at: Timestamp(0) }
    }
}

/// What one account brought to an invoice: the postings of its chain after `after` up to
/// and including `through` (see [`purse_core::InvoicedAccount`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvoiceAccount {
    pub account: AccountId,
    pub amount: i64,
    pub after: Option<TransferId>,
    pub through: Option<TransferId>,
}

/// `amount` of a payment (its receipt) applied to an invoice; released when the invoice
/// was voided or the payment reversed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationRecord {
    pub id: u64,
    pub party: PartyId,
    pub invoice: u64,
    pub receipt: u64,
    pub amount: i64,
    pub at: Timestamp,
    pub released_at: Option<Timestamp>,
    pub release_reason: Option<String>,
}

/// Why an invoice cannot be voided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoidRefusal {
    NotFound,
    AlreadyVoid,
    /// Paid in full: its payments must be reversed first.
    Paid,
}

pub mod sql {
    pub const INVOICE_COLUMNS: &str =
        "id, issuer_id, number, party_id, kind, amount, currency, status, created_at, paid_at, recharge_id, \
         transfer_id, period_start, period_end, subtotal, carry_in, carry_out, allocated, voided_at, void_reason, credited, tax_name, tax_rate, tax_inclusive, tax, net, due_at";
    pub const RECEIPT_COLUMNS: &str = "id, issuer_id, number, party_id, transfer_id, amount, currency, method, paid_at, invoice_id, allocated, reversed_at, refunded, tax_name, tax_rate, tax";
    pub const ALLOCATION_COLUMNS: &str =
        "id, party_id, invoice_id, receipt_id, amount, at, released_at, release_reason";
}
use sql::{ALLOCATION_COLUMNS, INVOICE_COLUMNS, RECEIPT_COLUMNS};

fn invoice_from(r: &[Value]) -> StoreResult<InvoiceRecord> {
    let kind = r[4].text()?;
    let status = r[7].text()?;
    let period = match (r[12].opt_int()?, r[13].opt_int()?) {
        (Some(a), Some(b)) => Some((Timestamp(a), Timestamp(b))),
        _ => None,
    };
    let issuer = r[1].int()?;
    Ok(InvoiceRecord {
        id: id_from_db(r[0].int()?),
        issuer: (issuer != 0).then(|| PartyId(id_from_db(issuer))),
        number: id_from_db(r[2].int()?),
        party: PartyId(id_from_db(r[3].int()?)),
        kind: InvoiceKind::parse(&kind).ok_or_else(|| StoreError::Other(format!("unknown invoice kind {kind:?}")))?,
        amount: r[5].int()?,
        currency: currency_code(&r[6].text()?)?,
        status: InvoiceStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(format!("unknown invoice status {status:?}")))?,
        created_at: Timestamp(r[8].int()?),
        paid_at: r[9].opt_int()?.map(Timestamp),
        recharge: r[10].opt_int()?.map(id_from_db),
        transfer: r[11].opt_int()?.map(id_from_db),
        period,
        subtotal: r[14].int()?,
        carry_in: r[15].int()?,
        carry_out: r[16].int()?,
        allocated: r[17].int()?,
        voided_at: r[18].opt_int()?.map(Timestamp),
        void_reason: r[19].opt_text()?,
        credited: r[20].int()?,
        tax: match (r[21].opt_text()?, r[22].opt_int()?) {
            (Some(name), Some(rate)) => Some(crate::payments::InvoiceTax {
                name,
                rate,
                inclusive: r[23].int()? != 0,
                amount: r[24].int()?,
                net: r[25].opt_int()?.unwrap_or(0),
            }),
            _ => None,
        },
        due_at: r[26].opt_int()?.map(Timestamp),
    })
}

fn receipt_from(r: &[Value]) -> StoreResult<ReceiptRecord> {
    let issuer = r[1].int()?;
    Ok(ReceiptRecord {
        id: id_from_db(r[0].int()?),
        issuer: (issuer != 0).then(|| PartyId(id_from_db(issuer))),
        number: id_from_db(r[2].int()?),
        party: PartyId(id_from_db(r[3].int()?)),
        transfer: id_from_db(r[4].int()?),
        amount: r[5].int()?,
        currency: currency_code(&r[6].text()?)?,
        method: r[7].text()?,
        paid_at: Timestamp(r[8].int()?),
        invoice: r[9].opt_int()?.map(id_from_db),
        allocated: r[10].int()?,
        reversed_at: r[11].opt_int()?.map(Timestamp),
        refunded: r[12].int()?,
        tax_name: r[13].opt_text()?,
        tax_rate: r[14].opt_int()?.unwrap_or(0),
        tax: r[15].int()?,
    })
}

fn allocation_from(r: &[Value]) -> StoreResult<AllocationRecord> {
    Ok(AllocationRecord {
        id: id_from_db(r[0].int()?),
        party: PartyId(id_from_db(r[1].int()?)),
        invoice: id_from_db(r[2].int()?),
        receipt: id_from_db(r[3].int()?),
        amount: r[4].int()?,
        at: Timestamp(r[5].int()?),
        released_at: r[6].opt_int()?.map(Timestamp),
        release_reason: r[7].opt_text()?,
    })
}

fn collect<T>(rows: Vec<Vec<Value>>, f: impl Fn(&[Value]) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(|r| f(r)).collect()
}

fn first<T>(rows: Vec<Vec<Value>>, f: impl Fn(&[Value]) -> StoreResult<T>) -> StoreResult<Option<T>> {
    rows.first().map(|r| f(r)).transpose()
}

/// Writes the usage invoices a ledger batch issued, inside the batch's transaction.
pub fn write_issues(db: &mut dyn Db, issues: &[InvoiceIssue]) -> StoreResult<()> {
    for issue in issues {
        let party = Value::from(id_to_db(issue.party.0));
        let number = db.rows(
            "INSERT INTO usage_invoice_numbers (issuer_id, last) VALUES ($1, 1) \
             ON CONFLICT (issuer_id) DO UPDATE SET last = usage_invoice_numbers.last + 1 RETURNING last",
            &[party_value(issue.issuer)],
        )?[0][0]
            .int()?;
        let carry_in = db
            .rows(
                "SELECT carry_out FROM invoices WHERE party_id = $1 AND kind = 'usage' ORDER BY id DESC LIMIT 1",
                std::slice::from_ref(&party),
            )?
            .first()
            .map(|r| r[0].int())
            .transpose()?
            .unwrap_or(0);
        let precision = rules::invoice_precision(issue.currency);
        let (total, carry_out) = rules::round_total(issue.subtotal, carry_in, issue.currency.scale, precision);
        // The customer's tax rate as of now (taxed at invoice): exclusive tax is added to
        // what the invoice asks; the tax's rounding difference is carried like the total's.
        let code = issue.currency.code.to_string();
        let tax = crate::taxes::next_tax(db, "invoices", issue.party, crate::TaxedAt::Invoice, total, &code, false)?;
        let amount = tax.as_ref().map_or(total, |(_, t)| t.gross);
        let (status, paid_at) = if amount == 0 { ("paid", Some(issue.issued_at.0)) } else { ("open", None) };
        let invoice = db.rows(
            "INSERT INTO invoices (issuer_id, number, party_id, kind, amount, currency, status, created_at, paid_at, period_start, period_end, \
             subtotal, carry_in, carry_out, allocated, tax_name, tax_rate, tax_inclusive, tax, net, tax_carry) \
             VALUES ($1, $2, $3, 'usage', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16, $17, $18, $19) RETURNING id",
            &[
                party_value(issue.issuer),
                Value::from(number),
                party.clone(),
                Value::from(amount),
                Value::from(issue.currency.code.to_string()),
                Value::from(status.to_owned()),
                Value::from(issue.issued_at.0),
                Value::from(paid_at),
                Value::from(issue.period_start.0),
                Value::from(issue.period_end.0),
                Value::from(issue.subtotal),
                Value::from(carry_in),
                Value::from(carry_out),
                Value::from(tax.as_ref().map(|(r, _)| r.name.clone())),
                Value::from(tax.as_ref().map(|(r, _)| r.rate)),
                Value::from(i64::from(tax.as_ref().is_some_and(|(r, _)| r.inclusive))),
                Value::from(tax.as_ref().map_or(0, |(_, t)| t.tax)),
                Value::from(tax.as_ref().map(|(_, t)| t.net)),
                Value::from(tax.as_ref().map_or(0, |(_, t)| t.carry)),
            ],
        )?[0][0]
            .int()?;
        for a in &issue.accounts {
            let account = Value::from(id_to_db(a.account.0));
            let after = db
                .rows("SELECT through_transfer FROM invoice_accounts WHERE account_id = $1 ORDER BY invoice_id DESC LIMIT 1", std::slice::from_ref(&account))?
                .first()
                .map(|r| r[0].opt_int())
                .transpose()?
                .flatten();
            db.run(
                "INSERT INTO invoice_accounts (invoice_id, account_id, amount, after_transfer, through_transfer) VALUES ($1, $2, $3, $4, $5)",
                &[Value::from(invoice), account, Value::from(a.amount.0), Value::from(after), Value::from(a.through.map(|t| id_to_db(t.0)))],
            )?;
        }
    }
    Ok(())
}

pub(crate) fn invoice_where(db: &mut dyn Db, clause: &str, params: &[Value]) -> StoreResult<Vec<InvoiceRecord>> {
    collect(db.rows(&format!("SELECT {INVOICE_COLUMNS} FROM invoices {clause}"), params)?, invoice_from)
}

pub(crate) fn receipt_where(db: &mut dyn Db, clause: &str, params: &[Value]) -> StoreResult<Vec<ReceiptRecord>> {
    collect(db.rows(&format!("SELECT {RECEIPT_COLUMNS} FROM receipts {clause}"), params)?, receipt_from)
}

pub(crate) fn lock_party(db: &mut dyn Db, party: PartyId) -> StoreResult<()> {
    // A key of its own, apart from other advisory locks: "PRSE" then the party.
    db.lock(0x5052_5345_0000_0000 | (id_to_db(party.0) & 0xffff_ffff))
}

/// Applies the customer's unallocated payments to its open usage invoices; returns how
/// many allocations were made. Runs inside a write transaction.
pub fn allocate(db: &mut dyn Db, party: PartyId, at: Timestamp) -> StoreResult<usize> {
    lock_party(db, party)?;
    let p = Value::from(id_to_db(party.0));
    let payments = receipt_where(
        db,
        "WHERE party_id = $1 AND reversed_at IS NULL AND allocated + refunded < amount ORDER BY id",
        std::slice::from_ref(&p),
    )?;
    if payments.is_empty() {
        return crate::credit_notes::draw(db, party, at);
    }
    let invoices = invoice_where(
        db,
        "WHERE party_id = $1 AND kind = 'usage' AND status IN ('open', 'partially_paid') ORDER BY id",
        std::slice::from_ref(&p),
    )?;
    let payments: Vec<Unallocated> = payments
        .iter()
        .map(|r| Unallocated {
            payment: r.id,
            remaining: r.amount - r.tax - r.refunded - r.allocated,
            invoice: r.invoice,
        })
        .collect();
    let dues: Vec<Due> =
        invoices.iter().map(|i| Due { invoice: i.id, due: i.amount - i.credited - i.allocated }).collect();
    let made = rules::allocate(&payments, &dues);
    for a in &made {
        db.run(
            "INSERT INTO allocations (party_id, invoice_id, receipt_id, amount, at) VALUES ($1, $2, $3, $4, $5)",
            &[p.clone(), id(a.invoice), id(a.payment), Value::from(a.amount), Value::from(at.0)],
        )?;
        db.run(
            "UPDATE receipts SET allocated = allocated + $1 WHERE id = $2",
            &[Value::from(a.amount), id(a.payment)],
        )?;
        db.run(
            "UPDATE invoices SET allocated = allocated + $1 WHERE id = $2",
            &[Value::from(a.amount), id(a.invoice)],
        )?;
        settle(db, a.invoice, at)?;
    }
    // Then what is still due draws on the customer's unallocated credit notes.
    Ok(made.len() + crate::credit_notes::draw(db, party, at)?)
}

/// Sets a usage invoice's status from what is allocated to it.
pub(crate) fn settle(db: &mut dyn Db, invoice: u64, at: Timestamp) -> StoreResult<()> {
    db.run(
        "UPDATE invoices SET status = CASE WHEN allocated + credited >= amount THEN 'paid' \
         WHEN allocated + credited > 0 THEN 'partially_paid' ELSE 'open' END, \
         paid_at = CASE WHEN allocated + credited >= amount THEN CAST($1 AS BIGINT) ELSE NULL END WHERE id = $2 AND status <> 'void'",
        &[Value::from(at.0), id(invoice)],
    )?;
    Ok(())
}

/// Releases the live allocations `clause` selects (`invoice_id = $1` or `receipt_id = $1`).
pub(crate) fn release(db: &mut dyn Db, clause: &str, key: u64, at: Timestamp, reason: &str) -> StoreResult<()> {
    let live = collect(
        db.rows(
            &format!("SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE {clause} AND released_at IS NULL ORDER BY id"),
            &[id(key)],
        )?,
        allocation_from,
    )?;
    for a in live {
        db.run(
            "UPDATE allocations SET released_at = $1, release_reason = $2 WHERE id = $3",
            &[Value::from(at.0), Value::from(reason.to_owned()), id(a.id)],
        )?;
        db.run(
            "UPDATE receipts SET allocated = allocated - $1 WHERE id = $2",
            &[Value::from(a.amount), id(a.receipt)],
        )?;
        db.run(
            "UPDATE invoices SET allocated = allocated - $1 WHERE id = $2",
            &[Value::from(a.amount), id(a.invoice)],
        )?;
        settle(db, a.invoice, at)?;
    }
    Ok(())
}

/// Marks the receipts of payments that were reversed since, releases their allocations and
/// applies the customers' other payments again; returns the customers concerned.
pub fn sync_reversals(db: &mut dyn Db, at: Timestamp) -> StoreResult<Vec<PartyId>> {
    let found = db.rows(
        "SELECT r.id, r.party_id FROM receipts r JOIN transfers t ON t.reverses_id = r.transfer_id WHERE r.reversed_at IS NULL ORDER BY r.party_id, r.id",
        &[],
    )?;
    let mut parties = Vec::new();
    for row in found {
        let (receipt, party) = (id_from_db(row[0].int()?), PartyId(id_from_db(row[1].int()?)));
        lock_party(db, party)?;
        if db.run(
            "UPDATE receipts SET reversed_at = $1 WHERE id = $2 AND reversed_at IS NULL",
            &[Value::from(at.0), id(receipt)],
        )? == 1
        {
            release(db, "receipt_id = $1", receipt, at, "payment reversed")?;
            if !parties.contains(&party) {
                parties.push(party);
            }
        }
    }
    for party in &parties {
        allocate(db, *party, at)?;
    }
    Ok(parties)
}

/// Voids an invoice that is not paid in full: releases what was allocated to it (applied
/// again to the customer's other invoices) and, for a top-up invoice, ends its recharge.
pub fn void(
    db: &mut dyn Db,
    invoice: u64,
    at: Timestamp,
    reason: &str,
    audit: &AuditEntry,
) -> StoreResult<Result<InvoiceRecord, VoidRefusal>> {
    sync_reversals(db, at)?;
    let Some(found) = invoice_where(db, "WHERE id = $1", &[id(invoice)])?.pop() else {
        return Ok(Err(VoidRefusal::NotFound));
    };
    lock_party(db, found.party)?;
    // Read again under the lock: an allocation may have paid it meanwhile.
    let Some(found) = invoice_where(db, "WHERE id = $1", &[id(invoice)])?.pop() else {
        return Ok(Err(VoidRefusal::NotFound));
    };
    match found.status {
        InvoiceStatus::Void => return Ok(Err(VoidRefusal::AlreadyVoid)),
        InvoiceStatus::Paid => return Ok(Err(VoidRefusal::Paid)),
        InvoiceStatus::Open | InvoiceStatus::PartiallyPaid => {}
    }
    release(db, "invoice_id = $1", invoice, at, "invoice voided")?;
    crate::credit_notes::release_drawn(db, invoice, at)?;
    db.run(
        "UPDATE invoices SET status = 'void', voided_at = $1, void_reason = $2, paid_at = NULL WHERE id = $3",
        &[Value::from(at.0), Value::from(reason.to_owned()), id(invoice)],
    )?;
    db.run(
        "UPDATE recharges SET status = 'failed', error = 'invoice voided', finished_at = $1 WHERE invoice_id = $2 AND status = 'invoiced'",
        &[Value::from(at.0), id(invoice)],
    )?;
    crate::credit::insert_audit(db, audit)?;
    allocate(db, found.party, at)?;
    Ok(invoice_where(db, "WHERE id = $1", &[id(invoice)])?.pop().ok_or(VoidRefusal::NotFound))
}

/// Invoices, receipts, allocations and billing settings, for any backend that can run the
/// shared SQL.
pub trait InvoiceStore: Send + Sync {
    fn invoice(&self, id: u64) -> StoreResult<Option<InvoiceRecord>>;
    /// Fixes a usage invoice's due date, unless it has one.
    fn set_due_at(&self, invoice: u64, due_at: Timestamp) -> StoreResult<()>;
    /// Newest first; `None`: every party's.
    fn invoices(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<InvoiceRecord>>;
    fn invoice_by_number(
        &self,
        kind: InvoiceKind,
        issuer: Option<PartyId>,
        number: u64,
    ) -> StoreResult<Option<InvoiceRecord>>;
    fn invoice_accounts(&self, invoice: u64) -> StoreResult<Vec<InvoiceAccount>>;
    /// The lines kept for an invoice (none until [`lines`] first read them).
    fn stored_lines(&self, invoice: u64) -> StoreResult<Vec<Line>>;
    /// Keeps an invoice's lines (once: lines kept already stay as they are).
    /// Keeps an invoice's lines and what grants paid of it (by grant), in one transaction.
    fn store_lines(&self, invoice: u64, lines: &[Line], credits: &[(purse_core::GrantId, i64)]) -> StoreResult<()>;
    /// What grants paid of a usage invoice's charges, by grant (kept with its lines).
    fn stored_credits(&self, invoice: u64) -> StoreResult<Vec<(purse_core::GrantId, i64)>>;
    /// Usage invoices not e-mailed yet, oldest first.
    fn unsent_invoices(&self, limit: u32) -> StoreResult<Vec<InvoiceRecord>>;
    fn receipt(&self, id: u64) -> StoreResult<Option<ReceiptRecord>>;
    fn receipt_by_number(&self, issuer: Option<PartyId>, number: u64) -> StoreResult<Option<ReceiptRecord>>;
    /// Receipts (one per payment), newest first.
    fn receipts(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<ReceiptRecord>>;
    /// Allocations (live and released) of a customer, an invoice or a receipt, oldest first.
    fn allocations(
        &self,
        party: PartyId,
        invoice: Option<u64>,
        receipt: Option<u64>,
    ) -> StoreResult<Vec<AllocationRecord>>;
    /// What the customer paid that no invoice has taken yet (payments not reversed).
    fn unallocated(&self, party: PartyId) -> StoreResult<i64>;
    /// Applies the customer's unallocated payments to its open invoices.
    fn allocate(&self, party: PartyId, at: Timestamp) -> StoreResult<usize>;
    fn sync_reversals(&self, at: Timestamp) -> StoreResult<Vec<PartyId>>;
    fn void_invoice(
        &self,
        id: u64,
        at: Timestamp,
        reason: &str,
        audit: &AuditEntry,
    ) -> StoreResult<Result<InvoiceRecord, VoidRefusal>>;
    fn billing_settings(&self, party: PartyId) -> StoreResult<Option<BillingSettings>>;
    fn all_billing_settings(&self) -> StoreResult<Vec<BillingSettings>>;
    /// Stores settings and records `audit` in the same transaction.
    fn put_billing_settings(&self, settings: &BillingSettings, audit: &AuditEntry) -> StoreResult<()>;
}

fn billing_from(r: &[Value]) -> StoreResult<BillingSettings> {
    Ok(BillingSettings {
        party: PartyId(id_from_db(r[0].int()?)),
        cycle_day: u8::try_from(r[1].int()?).map_err(|_| StoreError::Other("bad cycle day".into()))?,
        // Settings saved before named zones have only the offset (migration 0015).
        time_zone: match r[4].opt_text()? {
            Some(name) => Zone::parse(&name).ok_or_else(|| StoreError::Other(format!("unknown time zone {name:?}")))?,
            None => Zone::fixed(i32::try_from(r[2].int()?).map_err(|_| StoreError::Other("bad offset".into()))?),
        },
        updated_at: Timestamp(r[3].int()?),
    })
}

impl<T: Transact> InvoiceStore for T {
    fn set_due_at(&self, invoice: u64, due_at: Timestamp) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE invoices SET due_at = $1 WHERE id = $2 AND due_at IS NULL",
                &[Value::from(due_at.0), id(invoice)],
            )
            .map(drop)
        })
    }

    fn invoice(&self, invoice: u64) -> StoreResult<Option<InvoiceRecord>> {
        run_db(self, false, |db| Ok(invoice_where(db, "WHERE id = $1", &[id(invoice)])?.pop()))
    }

    fn invoices(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<InvoiceRecord>> {
        run_db(self, false, |db| match party {
            Some(p) => invoice_where(
                db,
                "WHERE party_id = $1 ORDER BY id DESC LIMIT $2",
                &[id(p.0), Value::from(i64::from(limit))],
            ),
            None => invoice_where(db, "ORDER BY id DESC LIMIT $1", &[Value::from(i64::from(limit))]),
        })
    }

    fn invoice_by_number(
        &self,
        kind: InvoiceKind,
        issuer: Option<PartyId>,
        number: u64,
    ) -> StoreResult<Option<InvoiceRecord>> {
        run_db(self, false, |db| {
            Ok(invoice_where(
                db,
                "WHERE kind = $1 AND issuer_id = $2 AND number = $3",
                &[Value::from(kind.as_str().to_owned()), party_value(issuer), id(number)],
            )?
            .pop())
        })
    }

    fn invoice_accounts(&self, invoice: u64) -> StoreResult<Vec<InvoiceAccount>> {
        run_db(self, false, |db| {
            collect(
                db.rows("SELECT account_id, amount, after_transfer, through_transfer FROM invoice_accounts WHERE invoice_id = $1 ORDER BY account_id", &[id(invoice)])?,
                |r| {
                    Ok(InvoiceAccount {
                        account: AccountId(id_from_db(r[0].int()?)),
                        amount: r[1].int()?,
                        after: r[2].opt_int()?.map(|t| TransferId(id_from_db(t))),
                        through: r[3].opt_int()?.map(|t| TransferId(id_from_db(t))),
                    })
                },
            )
        })
    }

    fn stored_lines(&self, invoice: u64) -> StoreResult<Vec<Line>> {
        run_db(self, false, |db| {
            collect(
                db.rows(
                    "SELECT service, quantity, amount FROM invoice_lines WHERE invoice_id = $1 ORDER BY service",
                    &[id(invoice)],
                )?,
                |r| Ok(Line { service: r[0].text()?, count: r[1].int()?, amount: r[2].int()? }),
            )
        })
    }

    fn store_lines(&self, invoice: u64, lines: &[Line], credits: &[(purse_core::GrantId, i64)]) -> StoreResult<()> {
        run_db(self, true, |db| {
            for l in lines {
                db.run(
                    "INSERT INTO invoice_lines (invoice_id, service, quantity, amount) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[id(invoice), Value::from(l.service.clone()), Value::from(l.count), Value::from(l.amount)],
                )?;
            }
            for (grant, amount) in credits {
                db.run(
                    "INSERT INTO invoice_credits (invoice_id, grant_id, amount) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[id(invoice), id(grant.0), Value::from(*amount)],
                )?;
            }
            Ok(())
        })
    }

    fn stored_credits(&self, invoice: u64) -> StoreResult<Vec<(purse_core::GrantId, i64)>> {
        run_db(self, false, |db| {
            collect(
                db.rows(
                    "SELECT grant_id, amount FROM invoice_credits WHERE invoice_id = $1 ORDER BY grant_id",
                    &[id(invoice)],
                )?,
                |r| Ok((purse_core::GrantId(id_from_db(r[0].int()?)), r[1].int()?)),
            )
        })
    }

    fn unsent_invoices(&self, limit: u32) -> StoreResult<Vec<InvoiceRecord>> {
        run_db(self, false, |db| {
            invoice_where(
                db,
                "WHERE kind = 'usage' AND notified_at IS NULL ORDER BY id LIMIT $1",
                &[Value::from(i64::from(limit))],
            )
        })
    }

    fn receipt(&self, receipt: u64) -> StoreResult<Option<ReceiptRecord>> {
        run_db(self, false, |db| Ok(receipt_where(db, "WHERE id = $1", &[id(receipt)])?.pop()))
    }

    fn receipt_by_number(&self, issuer: Option<PartyId>, number: u64) -> StoreResult<Option<ReceiptRecord>> {
        run_db(self, false, |db| {
            Ok(receipt_where(db, "WHERE issuer_id = $1 AND number = $2", &[party_value(issuer), id(number)])?.pop())
        })
    }

    fn receipts(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<ReceiptRecord>> {
        run_db(self, false, |db| match party {
            Some(p) => receipt_where(
                db,
                "WHERE party_id = $1 ORDER BY id DESC LIMIT $2",
                &[id(p.0), Value::from(i64::from(limit))],
            ),
            None => receipt_where(db, "ORDER BY id DESC LIMIT $1", &[Value::from(i64::from(limit))]),
        })
    }

    fn allocations(
        &self,
        party: PartyId,
        invoice: Option<u64>,
        receipt: Option<u64>,
    ) -> StoreResult<Vec<AllocationRecord>> {
        run_db(self, false, |db| {
            let (clause, key) = match (invoice, receipt) {
                (Some(i), _) => ("invoice_id", i),
                (None, Some(r)) => ("receipt_id", r),
                (None, None) => ("party_id", party.0),
            };
            collect(
                db.rows(&format!("SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE {clause} = $1 AND party_id = $2 ORDER BY id"), &[id(key), id(party.0)])?,
                allocation_from,
            )
        })
    }

    fn unallocated(&self, party: PartyId) -> StoreResult<i64> {
        run_db(self, false, |db| {
            let rows = db.rows("SELECT amount, allocated, refunded FROM receipts WHERE party_id = $1 AND reversed_at IS NULL AND allocated + refunded < amount", &[id(party.0)])?;
            rows.iter().try_fold(0i64, |sum, r| Ok(sum.saturating_add(r[0].int()? - r[1].int()? - r[2].int()?)))
        })
    }

    fn allocate(&self, party: PartyId, at: Timestamp) -> StoreResult<usize> {
        run_db(self, true, |db| allocate(db, party, at))
    }

    fn sync_reversals(&self, at: Timestamp) -> StoreResult<Vec<PartyId>> {
        run_db(self, true, |db| sync_reversals(db, at))
    }

    fn void_invoice(
        &self,
        invoice: u64,
        at: Timestamp,
        reason: &str,
        audit: &AuditEntry,
    ) -> StoreResult<Result<InvoiceRecord, VoidRefusal>> {
        run_db(self, true, |db| void(db, invoice, at, reason, audit))
    }

    fn billing_settings(&self, party: PartyId) -> StoreResult<Option<BillingSettings>> {
        run_db(self, false, |db| {
            first(
                db.rows(
                    "SELECT party_id, cycle_day, utc_offset_min, updated_at, time_zone FROM billing_settings WHERE party_id = $1",
                    &[id(party.0)],
                )?,
                billing_from,
            )
        })
    }

    fn all_billing_settings(&self) -> StoreResult<Vec<BillingSettings>> {
        run_db(self, false, |db| {
            collect(
                db.rows(
                    "SELECT party_id, cycle_day, utc_offset_min, updated_at, time_zone FROM billing_settings ORDER BY party_id",
                    &[],
                )?,
                billing_from,
            )
        })
    }

    fn put_billing_settings(&self, s: &BillingSettings, audit: &AuditEntry) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "INSERT INTO billing_settings (party_id, cycle_day, utc_offset_min, updated_at, time_zone) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (party_id) DO UPDATE SET cycle_day = excluded.cycle_day, utc_offset_min = excluded.utc_offset_min, \
                 updated_at = excluded.updated_at, time_zone = excluded.time_zone",
                &[
                    id(s.party.0),
                    Value::from(i64::from(s.cycle_day)),
                    // The offset in force when saved, for readers of the table; the zone rules.
                    Value::from(s.time_zone.offset_s(s.updated_at).div_euclid(60).clamp(-840, 840)),
                    Value::from(s.updated_at.0),
                    Value::from(s.time_zone.name().to_owned()),
                ],
            )?;
            crate::credit::insert_audit(db, audit)
        })
    }
}

/// Marks a usage invoice e-mailed (once: `false` when it already was), inside the
/// transaction that records its notification.
pub fn mark_sent(db: &mut dyn Db, invoice: u64, at: Timestamp) -> StoreResult<bool> {
    Ok(db.run(
        "UPDATE invoices SET notified_at = $1 WHERE id = $2 AND notified_at IS NULL",
        &[Value::from(at.0), id(invoice)],
    )? == 1)
}

/// Records a payment's receipt voucher, numbered per issuer without gaps; `None` when the
/// payment has one already, else its e-mail with the number filled in (if it has one).
pub fn insert_receipt(db: &mut dyn Db, r: &crate::NewReceipt) -> StoreResult<Option<Option<crate::NewNotification>>> {
    let transfer = id(r.transfer);
    if !db.rows("SELECT id FROM receipts WHERE transfer_id = $1", std::slice::from_ref(&transfer))?.is_empty() {
        return Ok(None);
    }
    let number = db.rows(
        "INSERT INTO receipt_numbers (issuer_id, last) VALUES ($1, 1) ON CONFLICT (issuer_id) DO UPDATE SET last = receipt_numbers.last + 1 RETURNING last",
        &[party_value(r.issuer)],
    )?[0][0]
        .int()?;
    // Taxed at top-up: the tax inside the payment is owed (a top-up invoice's as it asked).
    let currency = r.currency.to_string();
    let invoiced = match r.invoice {
        Some(i) => invoice_where(db, "WHERE id = $1 AND kind = 'top_up' AND tax_name IS NOT NULL", &[id(i)])?.pop(),
        None => None,
    };
    let tax = match invoiced.and_then(|i| i.tax.filter(|_| i.amount == r.amount)) {
        Some(t) => {
            let carry = db
                .rows(
                    "SELECT tax_carry FROM receipts WHERE party_id = $1 AND tax_name IS NOT NULL ORDER BY id DESC LIMIT 1",
                    &[id(r.party.0)],
                )?
                .first()
                .map_or(Ok(0), |row| row[0].int())?;
            Some((t.name, t.rate, t.amount, carry))
        }
        None => crate::taxes::next_tax(db, "receipts", r.party, crate::TaxedAt::TopUp, r.amount, &currency, true)?
            .map(|(rate, t)| (rate.name, rate.rate, t.tax, t.carry)),
    };
    db.run(
        "INSERT INTO receipts (issuer_id, number, party_id, transfer_id, amount, currency, method, paid_at, invoice_id, \
         tax_name, tax_rate, tax, tax_carry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            party_value(r.issuer),
            Value::from(number),
            id(r.party.0),
            transfer,
            Value::from(r.amount),
            Value::from(r.currency.to_string()),
            Value::from(r.method.clone()),
            Value::from(r.paid_at.0),
            Value::from(r.invoice.map(id_to_db)),
            Value::from(tax.as_ref().map(|t| t.0.clone())),
            Value::from(tax.as_ref().map(|t| t.1)),
            Value::from(tax.as_ref().map_or(0, |t| t.2)),
            Value::from(tax.as_ref().map_or(0, |t| t.3)),
        ],
    )?;
    let line = match &tax {
        Some((name, rate, tax, _)) if *tax != 0 => {
            let c = crate::taxes::currency_of(db, &currency)?;
            let f = |v: i64| rules::format_total(c, v);
            Some(format!(
                "Of which {name} {}%: {} {currency}; {} {currency} is added to the balance.",
                crate::taxes::percent_text(*rate),
                f(*tax),
                f(r.amount - tax)
            ))
        }
        _ => None,
    };
    Ok(Some(r.notice.clone().map(|mut n| {
        let shown = crate::payments::receipt_number(r.issuer, id_from_db(number));
        n.subject = n.subject.replace("{receipt}", &shown);
        n.body = n.body.replace("{receipt}", &shown);
        if let Some(line) = &line {
            n.body = crate::taxes::with_tax_line(&n.body, line);
        }
        n
    })))
}

/// The receipts and invoice e-mails of an outbox pass, written in its transaction: each
/// receipt once (then the customer's payments are allocated), each invoice marked sent
/// once. Returns the notifications to record.
pub fn record_payments(
    db: &mut dyn Db,
    batch: &crate::AlertBatch,
    now: Timestamp,
) -> StoreResult<Vec<crate::NewNotification>> {
    let mut notices = Vec::new();
    let mut parties: Vec<PartyId> = Vec::new();
    for r in &batch.receipts {
        if let Some(notice) = insert_receipt(db, r)? {
            notices.extend(notice);
            if !parties.contains(&r.party) {
                parties.push(r.party);
            }
        }
    }
    // Customers are locked in one order everywhere, so two transactions never wait on each other.
    parties.sort_unstable();
    for party in parties {
        allocate(db, party, now)?;
    }
    for (invoice, notice) in &batch.sent_invoices {
        if mark_sent(db, *invoice, now)? {
            notices.extend(notice.clone());
        }
    }
    Ok(notices)
}

/// One line of a usage invoice: a service's charges (less reversed ones) in the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub service: String,
    /// Charges counted (a reversal counts one less).
    pub count: i64,
    pub amount: i64,
}

/// An invoice's lines. A usage invoice's are walked from each account's journal chain
/// between the previous invoice and this one, so they are the journal itself: a service's
/// charges less the reversals of its charges. The walk checks that each account's lines sum
/// to what the ledger moved to the invoice, and all of them to its subtotal; the lines are
/// then kept, so the walk (one keyed read per posting) is made once per invoice.
pub fn lines(reader: &dyn crate::Reader, store: &dyn InvoiceStore, i: &InvoiceRecord) -> StoreResult<Vec<Line>> {
    if i.kind != InvoiceKind::Usage {
        return Ok(vec![Line {
            service: "Top-up of the balance (automatic recharge by invoice)".into(),
            count: 1,
            amount: i.amount,
        }]);
    }
    let kept = store.stored_lines(i.id)?;
    if !kept.is_empty() {
        return Ok(kept);
    }
    let (walked, credits) = walk_lines(reader, store, i)?;
    store.store_lines(i.id, &walked, &credits)?;
    Ok(walked)
}

/// What credit grants paid of a usage invoice's charges, by grant: the walk of its lines
/// finds them ([`lines`]).
pub fn credits(
    reader: &dyn crate::Reader,
    store: &dyn InvoiceStore,
    i: &InvoiceRecord,
) -> StoreResult<Vec<(purse_core::GrantId, i64)>> {
    if i.kind != InvoiceKind::Usage {
        return Ok(Vec::new());
    }
    lines(reader, store, i)?;
    store.stored_credits(i.id)
}

/// An invoice's lines (charges at their full amount) and, by grant, what grants paid of
/// them: each account's charges less what grants paid reconcile with what the ledger moved.
#[allow(clippy::type_complexity)]
fn walk_lines(
    reader: &dyn crate::Reader,
    store: &dyn InvoiceStore,
    i: &InvoiceRecord,
) -> StoreResult<(Vec<Line>, Vec<(purse_core::GrantId, i64)>)> {
    let mut lines: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut credits: BTreeMap<purse_core::GrantId, i64> = BTreeMap::new();
    let mut total = 0i128;
    for part in store.invoice_accounts(i.id)? {
        let mut sum = 0i128;
        let mut next = part.through;
        while let Some(id) = next.filter(|id| Some(*id) != part.after) {
            let t = reader
                .transfer(id)?
                .ok_or_else(|| StoreError::Other(format!("transfer {id} of invoice {} is missing", i.id)))?;
            let counted = if t.kind == TransferKind::Charge && t.debit == part.account {
                Some((t.service.clone(), 1, t.amount.0, t.grant_parts.clone()))
            } else if t.kind == TransferKind::Reversal && t.credit == part.account {
                let original = t.reverses.map(|o| reader.transfer(o)).transpose()?.flatten();
                original.filter(|o| o.kind == TransferKind::Charge && o.debit == part.account).map(|o| {
                    let back = o.grant_parts.iter().map(|(g, a)| (*g, purse_core::Amount(-a.0))).collect();
                    (o.service, -1, -t.amount.0, back)
                })
            } else {
                None
            };
            if let Some((service, count, amount, parts)) = counted {
                let line = lines.entry(service.unwrap_or_else(|| "usage".into())).or_default();
                line.0 += count;
                line.1 += amount;
                let paid: i64 = parts.iter().map(|(_, a)| a.0).sum();
                for (g, a) in parts {
                    *credits.entry(g).or_default() += a.0;
                }
                sum += i128::from(amount - paid);
            }
            next = if t.debit == part.account { t.debit_prev } else { t.credit_prev };
        }
        if sum != i128::from(part.amount) {
            return Err(StoreError::Other(format!(
                "invoice {} does not reconcile with the journal of account {}",
                i.id, part.account
            )));
        }
        total += sum;
    }
    if total != i128::from(i.subtotal) {
        return Err(StoreError::Other(format!("the lines of invoice {} do not sum to its subtotal", i.id)));
    }
    let lines = lines.into_iter().map(|(service, (count, amount))| Line { service, count, amount }).collect();
    Ok((lines, credits.into_iter().filter(|(_, a)| *a != 0).collect()))
}
