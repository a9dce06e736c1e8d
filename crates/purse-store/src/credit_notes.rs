//! Credit notes against issued usage invoices, written once for both backends over [`Db`].
//! A credit note is recorded in the transaction of its ledger posting ([`record`]), under the
//! customer's lock: numbered without gaps per issuer, never above what is left of the invoice
//! (and, applied to the invoice, never above what it still asks).

use purse_core::{CurrencyCode, PartyId, Timestamp};

use crate::codec::{id_from_db, id_to_db};
use crate::credit::Value;
use crate::invoices::{invoice_where, lock_party, run_db, settle, Db, Transact};
use crate::{StoreError, StoreResult};

/// Where a credit note's money goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Off what the invoice still asks.
    Invoice,
    /// To the customer's balance, the invoice unchanged.
    Balance,
    /// An unallocated credit: the customer's invoices still due draw on it, oldest first, as
    /// they do on an unallocated payment (now and as later invoices are issued).
    Unallocated,
    /// Given back by a refund of one of the customer's payments.
    Refund,
}

impl Applied {
    pub const ALL: [Applied; 4] = [Applied::Invoice, Applied::Unallocated, Applied::Balance, Applied::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Invoice => "invoice",
            Applied::Balance => "balance",
            Applied::Unallocated => "unallocated",
            Applied::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<Applied> {
        Applied::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditNoteRecord {
    pub id: u64,
    /// The invoice's issuer (`None`: the operator).
    pub issuer: Option<PartyId>,
    pub number: u64,
    pub party: PartyId,
    pub invoice: u64,
    pub amount: i64,
    pub currency: CurrencyCode,
    /// The invoice lines (services) it credits; empty for an amount.
    pub lines: Vec<String>,
    pub applied: Applied,
    /// The ledger's posting that raised the balance.
    pub transfer: u64,
    pub reason: String,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The invoice's tax, credited with it: `amount` is the gross, `amount - tax` the net.
    pub tax: Option<crate::payments::InvoiceTax>,
    /// An unallocated credit: how much of it invoices have drawn.
    pub drawn: i64,
    /// Given back: the refund that did it.
    pub refund: Option<u64>,
}

impl CreditNoteRecord {
    /// The number as printed: `CN-`, the issuer (`0`: the operator), the number.
    pub fn display_number(&self) -> String {
        format!("CN-{}-{:06}", self.issuer.map_or(0, |p| p.0), self.number)
    }
}

/// A credit note to record.
#[derive(Clone, Debug)]
pub struct NewCreditNote {
    pub invoice: u64,
    /// The gross credited.
    pub amount: i64,
    /// The tax inside it, at the invoice's rate, with the carry it was worked out from (the
    /// customer's last credit note's) and the one it leaves.
    pub tax: Option<(i64, i64, i64)>,
    pub lines: Vec<String>,
    pub applied: Applied,
    pub transfer: u64,
    pub reason: String,
    pub at: Timestamp,
    pub by: String,
}

/// Why a credit note cannot be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Credit notes would add up to more than the invoice: what is left of it.
    AboveInvoice(i64),
    /// Applied to the invoice, more than it still asks: what it asks.
    AboveDue(i64),
    /// Another credit note changed the tax carried meanwhile: work it out again.
    CarryMoved,
}

const COLUMNS: &str = "id, issuer_id, number, party_id, invoice_id, amount, currency, lines, applied, transfer_id, \
     reason, created_at, created_by, tax_name, tax_rate, tax_inclusive, tax, drawn, refund_id";

fn from_row(r: &[Value]) -> StoreResult<CreditNoteRecord> {
    let issuer = r[1].int()?;
    let currency = r[6].text()?;
    let applied = r[8].text()?;
    Ok(CreditNoteRecord {
        id: id_from_db(r[0].int()?),
        issuer: (issuer != 0).then(|| PartyId(id_from_db(issuer))),
        number: id_from_db(r[2].int()?),
        party: PartyId(id_from_db(r[3].int()?)),
        invoice: id_from_db(r[4].int()?),
        amount: r[5].int()?,
        currency: CurrencyCode::parse(&currency).map_err(|_| StoreError::Other(format!("bad currency {currency}")))?,
        lines: r[7].text()?.split('\n').filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        applied: Applied::parse(&applied).ok_or_else(|| StoreError::Other(format!("bad applied {applied:?}")))?,
        transfer: id_from_db(r[9].int()?),
        reason: r[10].text()?,
        created_at: Timestamp(r[11].int()?),
        created_by: r[12].text()?,
        tax: match (r[13].opt_text()?, r[14].opt_int()?) {
            (Some(name), Some(rate)) => Some(crate::payments::InvoiceTax {
                name,
                rate,
                inclusive: r[15].int()? != 0,
                amount: r[16].int()?,
                net: r[5].int()? - r[16].int()?,
            }),
            _ => None,
        },
        drawn: r[17].int()?,
        refund: r[18].opt_int()?.map(id_from_db),
    })
}

/// The tax rounding difference a customer's last taxed credit note carried on.
pub fn carry(db: &mut dyn Db, party: PartyId) -> StoreResult<i64> {
    db.rows(
        "SELECT tax_carry FROM credit_notes WHERE party_id = $1 AND tax_name IS NOT NULL ORDER BY id DESC LIMIT 1",
        &[id(party.0)],
    )?
    .first()
    .map_or(Ok(0), |r| r[0].int())
}

fn id(v: u64) -> Value {
    Value::from(id_to_db(v))
}

fn notes_where(db: &mut dyn Db, clause: &str, params: &[Value]) -> StoreResult<Vec<CreditNoteRecord>> {
    db.rows(&format!("SELECT {COLUMNS} FROM credit_notes {clause}"), params)?.iter().map(|r| from_row(r)).collect()
}

/// What is left to credit of an invoice, and what it still asks.
pub fn room(db: &mut dyn Db, invoice: u64) -> StoreResult<Option<(i64, i64)>> {
    let Some(i) = invoice_where(db, "WHERE id = $1", &[id(invoice)])?.pop() else { return Ok(None) };
    let credited = db.rows(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_notes WHERE invoice_id = $1",
        &[id(invoice)],
    )?;
    let credited = credited.first().map_or(Ok(0), |r| r[0].int())?;
    Ok(Some((i.amount - credited, i.due())))
}

/// Records a credit note in the transaction of its posting, under the customer's lock.
pub fn record(db: &mut dyn Db, n: &NewCreditNote) -> StoreResult<Result<CreditNoteRecord, Refused>> {
    let Some(invoice) = invoice_where(db, "WHERE id = $1", &[id(n.invoice)])?.pop() else {
        return Err(StoreError::Other(format!("no invoice {}", n.invoice)));
    };
    lock_party(db, invoice.party)?;
    let (left, due) = room(db, n.invoice)?.unwrap_or((0, 0));
    if n.amount > left {
        return Ok(Err(Refused::AboveInvoice(left.max(0))));
    }
    if n.applied == Applied::Invoice && n.amount > due {
        return Ok(Err(Refused::AboveDue(due.max(0))));
    }
    if let Some((_, carry_in, _)) = n.tax {
        if carry_in != carry(db, invoice.party)? {
            return Ok(Err(Refused::CarryMoved));
        }
    }
    let taxed = invoice.tax.as_ref().filter(|_| n.tax.is_some());
    let issuer = Value::from(invoice.issuer.map_or(0, |p| id_to_db(p.0)));
    let number = db.rows(
        "INSERT INTO credit_note_numbers (issuer_id, last) VALUES ($1, 1) ON CONFLICT (issuer_id) DO UPDATE SET last = credit_note_numbers.last + 1 RETURNING last",
        std::slice::from_ref(&issuer),
    )?[0][0]
        .int()?;
    let row = db.rows(
        &format!(
            "INSERT INTO credit_notes (issuer_id, number, party_id, invoice_id, amount, currency, lines, applied, transfer_id, \
             reason, created_at, created_by, tax_name, tax_rate, tax_inclusive, tax, tax_carry) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING {COLUMNS}"
        ),
        &[
            issuer,
            Value::from(number),
            id(invoice.party.0),
            id(invoice.id),
            Value::from(n.amount),
            Value::from(invoice.currency.to_string()),
            Value::from(n.lines.join("\n")),
            Value::from(n.applied.as_str().to_owned()),
            id(n.transfer),
            Value::from(n.reason.clone()),
            Value::from(n.at.0),
            Value::from(n.by.clone()),
            Value::from(taxed.map(|t| t.name.clone())),
            Value::from(taxed.map(|t| t.rate)),
            Value::from(i64::from(taxed.is_some_and(|t| t.inclusive))),
            Value::from(n.tax.map_or(0, |t| t.0)),
            Value::from(n.tax.map_or(0, |t| t.2)),
        ],
    )?;
    match n.applied {
        Applied::Invoice => {
            db.run(
                "UPDATE invoices SET credited = credited + $1 WHERE id = $2",
                &[Value::from(n.amount), id(invoice.id)],
            )?;
            settle(db, invoice.id, n.at)?;
        }
        // What is due now draws on it at once.
        Applied::Unallocated => {
            crate::invoices::allocate(db, invoice.party, n.at)?;
        }
        Applied::Balance | Applied::Refund => {}
    }
    let made = from_row(&row[0])?;
    Ok(Ok(notes_where(db, "WHERE id = $1", &[id(made.id)])?.pop().unwrap_or(made)))
}

/// Lets the customer's invoices still due draw on its unallocated credit notes, oldest
/// first (after its payments were applied). Under the customer's lock, in a write
/// transaction. Returns how many applications were made.
pub fn draw(db: &mut dyn Db, party: PartyId, at: Timestamp) -> StoreResult<usize> {
    let p = id(party.0);
    let credits: Vec<purse_core::invoice::Unallocated> = notes_where(
        db,
        "WHERE party_id = $1 AND applied = 'unallocated' AND drawn < amount ORDER BY id",
        std::slice::from_ref(&p),
    )?
    .iter()
    .map(|n| purse_core::invoice::Unallocated { payment: n.id, remaining: n.amount - n.drawn, invoice: None })
    .collect();
    if credits.is_empty() {
        return Ok(0);
    }
    let dues: Vec<purse_core::invoice::Due> = invoice_where(
        db,
        "WHERE party_id = $1 AND kind = 'usage' AND status IN ('open', 'partially_paid') ORDER BY id",
        std::slice::from_ref(&p),
    )?
    .iter()
    .map(|i| purse_core::invoice::Due { invoice: i.id, due: i.due() })
    .collect();
    let made = purse_core::invoice::allocate(&credits, &dues);
    for a in &made {
        db.run(
            "INSERT INTO credit_applications (party_id, credit_note_id, invoice_id, amount, at) VALUES ($1, $2, $3, $4, $5)",
            &[p.clone(), id(a.payment), id(a.invoice), Value::from(a.amount), Value::from(at.0)],
        )?;
        db.run("UPDATE credit_notes SET drawn = drawn + $1 WHERE id = $2", &[Value::from(a.amount), id(a.payment)])?;
        db.run("UPDATE invoices SET credited = credited + $1 WHERE id = $2", &[Value::from(a.amount), id(a.invoice)])?;
        settle(db, a.invoice, at)?;
    }
    Ok(made.len())
}

/// Gives back to their credit notes what a voided invoice drew on them.
pub fn release_drawn(db: &mut dyn Db, invoice: u64, at: Timestamp) -> StoreResult<()> {
    let live = db.rows(
        "SELECT id, credit_note_id, amount FROM credit_applications WHERE invoice_id = $1 AND released_at IS NULL",
        &[id(invoice)],
    )?;
    for r in &live {
        let (application, note, amount) = (r[0].int()?, r[1].int()?, r[2].int()?);
        db.run("UPDATE credit_notes SET drawn = drawn - $1 WHERE id = $2", &[Value::from(amount), Value::from(note)])?;
        db.run("UPDATE invoices SET credited = credited - $1 WHERE id = $2", &[Value::from(amount), id(invoice)])?;
        db.run(
            "UPDATE credit_applications SET released_at = $1 WHERE id = $2",
            &[Value::from(at.0), Value::from(application)],
        )?;
    }
    Ok(())
}

/// What an invoice drew on unallocated credit notes: each credit note and the amount.
pub fn drawn_by(db: &mut dyn Db, invoice: u64) -> StoreResult<Vec<(CreditNoteRecord, i64)>> {
    let rows = db.rows(
        "SELECT credit_note_id, amount FROM credit_applications WHERE invoice_id = $1 AND released_at IS NULL ORDER BY id",
        &[id(invoice)],
    )?;
    let mut out = Vec::new();
    for r in &rows {
        if let Some(n) = notes_where(db, "WHERE id = $1", &[Value::from(r[0].int()?)])?.pop() {
            out.push((n, r[1].int()?));
        }
    }
    Ok(out)
}

/// The application's questions about credit notes.
pub trait CreditNoteStore: Send + Sync {
    fn credit_note(&self, id: u64) -> StoreResult<Option<CreditNoteRecord>>;
    fn credit_notes_of_invoice(&self, invoice: u64) -> StoreResult<Vec<CreditNoteRecord>>;
    /// Newest first: a customer's, or all.
    fn credit_notes(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<CreditNoteRecord>>;
    /// See [`room`].
    fn credit_room(&self, invoice: u64) -> StoreResult<Option<(i64, i64)>>;
    /// See [`carry`].
    fn credit_tax_carry(&self, party: PartyId) -> StoreResult<i64>;
    /// See [`drawn_by`].
    fn credits_drawn_by(&self, invoice: u64) -> StoreResult<Vec<(CreditNoteRecord, i64)>>;
    /// Records the refund that gave a credit note back.
    fn credit_note_refunded(&self, note: u64, refund: u64) -> StoreResult<()>;
}

impl<T: Transact> CreditNoteStore for T {
    fn credit_note(&self, note: u64) -> StoreResult<Option<CreditNoteRecord>> {
        run_db(self, false, |db| Ok(notes_where(db, "WHERE id = $1", &[id(note)])?.pop()))
    }

    fn credit_notes_of_invoice(&self, invoice: u64) -> StoreResult<Vec<CreditNoteRecord>> {
        run_db(self, false, |db| notes_where(db, "WHERE invoice_id = $1 ORDER BY id", &[id(invoice)]))
    }

    fn credit_notes(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<CreditNoteRecord>> {
        let limit = Value::from(i64::from(limit));
        run_db(self, false, |db| match party {
            Some(p) => notes_where(db, "WHERE party_id = $1 ORDER BY id DESC LIMIT $2", &[id(p.0), limit.clone()]),
            None => notes_where(db, "ORDER BY id DESC LIMIT $1", std::slice::from_ref(&limit)),
        })
    }

    fn credit_room(&self, invoice: u64) -> StoreResult<Option<(i64, i64)>> {
        run_db(self, false, |db| room(db, invoice))
    }

    fn credit_tax_carry(&self, party: PartyId) -> StoreResult<i64> {
        run_db(self, false, |db| carry(db, party))
    }

    fn credits_drawn_by(&self, invoice: u64) -> StoreResult<Vec<(CreditNoteRecord, i64)>> {
        run_db(self, false, |db| drawn_by(db, invoice))
    }

    fn credit_note_refunded(&self, note: u64, refund: u64) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run("UPDATE credit_notes SET refund_id = $1 WHERE id = $2", &[id(refund), id(note)]).map(drop)
        })
    }
}
