//! Tax rates and customers' tax settings, written once for both backends over [`Db`]. A
//! usage invoice takes its customer's rate when it is issued ([`of_party`], read in the
//! issuing transaction), so a later change of rate never changes an issued invoice.

use purse_core::{PartyId, Timestamp};

use crate::codec::{id_from_db, id_to_db};
use crate::credit::{insert_audit, AuditEntry, Value};
use crate::invoices::{run_db, Db, Transact};
use crate::StoreResult;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaxRate {
    pub id: u64,
    /// `None`: the operator's.
    pub owner: Option<PartyId>,
    pub name: String,
    /// Millionths of the whole: 20 % is 200,000.
    pub rate: i64,
    /// The tax is inside the prices (else added to them).
    pub inclusive: bool,
    pub created_at: Timestamp,
}

/// When a customer's usage is taxed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaxedAt {
    /// On its usage invoices (the default).
    #[default]
    Invoice,
    /// When money comes in: top-up invoices ask the tax, and every payment has its tax inside
    /// it booked as owed, so only the net is left to spend; usage invoices carry none.
    TopUp,
}

impl TaxedAt {
    pub fn as_str(self) -> &'static str {
        match self {
            TaxedAt::Invoice => "invoice",
            TaxedAt::TopUp => "top_up",
        }
    }

    pub fn parse(text: &str) -> Option<TaxedAt> {
        [TaxedAt::Invoice, TaxedAt::TopUp].into_iter().find(|t| t.as_str() == text)
    }
}

/// A customer's tax settings: its rate, when it is taxed, tax id and billing address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerTax {
    pub party: PartyId,
    pub rate: Option<u64>,
    pub taxed_at: TaxedAt,
    pub tax_id: String,
    pub address: String,
    pub updated_at: Timestamp,
}

const RATE_COLUMNS: &str = "id, owner_id, name, rate, inclusive, created_at";

fn rate_from(r: &[Value]) -> StoreResult<TaxRate> {
    let owner = r[1].int()?;
    Ok(TaxRate {
        id: id_from_db(r[0].int()?),
        owner: (owner != 0).then(|| PartyId(id_from_db(owner))),
        name: r[2].text()?,
        rate: r[3].int()?,
        inclusive: r[4].int()? != 0,
        created_at: Timestamp(r[5].int()?),
    })
}

/// The rate a customer's documents take now, if it has one, when it is taxed `at`.
pub fn of_party(db: &mut dyn Db, party: PartyId, at: TaxedAt) -> StoreResult<Option<TaxRate>> {
    let rows = db.rows(
        &format!(
            "SELECT {} FROM tax_rates t JOIN customer_tax c ON c.tax_rate_id = t.id WHERE c.party_id = $1 AND c.taxed_at = $2",
            RATE_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
        ),
        &[Value::from(id_to_db(party.0)), Value::from(at.as_str().to_owned())],
    )?;
    rows.first().map(|r| rate_from(r)).transpose()
}

/// A currency as the database holds it (its code and scale).
pub fn currency_of(db: &mut dyn Db, code: &str) -> StoreResult<purse_core::Currency> {
    let rows = db.rows("SELECT scale FROM currencies WHERE code = $1", &[Value::from(code.to_owned())])?;
    let scale = u8::try_from(rows.first().map_or(Ok(0), |r| r[0].int())?).unwrap_or(0);
    let code =
        purse_core::CurrencyCode::parse(code).map_err(|_| crate::StoreError::Other(format!("bad currency {code}")))?;
    Ok(purse_core::Currency { code, scale })
}

/// The tax of a customer's next document of `table` (`invoices` or `receipts`): its rate
/// when it is taxed `at`, and the figures with the difference carried from the customer's
/// previous taxed document there. `inclusive`: the rate's own setting, or always for money
/// received (the tax is inside what was paid).
pub fn next_tax(
    db: &mut dyn Db,
    table: &str,
    party: PartyId,
    at: TaxedAt,
    total: i64,
    currency: &str,
    received: bool,
) -> StoreResult<Option<(TaxRate, purse_core::invoice::Taxed)>> {
    let Some(rate) = of_party(db, party, at)? else { return Ok(None) };
    let c = currency_of(db, currency)?;
    let (scale, precision) = (c.scale, purse_core::invoice::invoice_precision(c));
    let carry = db
        .rows(
            &format!(
                "SELECT tax_carry FROM {table} WHERE party_id = $1 AND tax_name IS NOT NULL ORDER BY id DESC LIMIT 1"
            ),
            &[Value::from(id_to_db(party.0))],
        )?
        .first()
        .map_or(Ok(0), |r| r[0].int())?;
    let taxed = purse_core::invoice::tax_of(total, rate.rate, rate.inclusive || received, carry, scale, precision);
    Ok(Some((rate, taxed)))
}

/// Puts the tax on a top-up invoice just made (its customer taxed at top-up): an exclusive
/// rate is added to what it asks, an inclusive one is inside. Returns the line its e-mail
/// gains, if it is taxed. Inside the transaction that made it.
pub fn tax_top_up_invoice(db: &mut dyn Db, invoice: i64) -> StoreResult<Option<String>> {
    let row = db.rows("SELECT party_id, amount, currency FROM invoices WHERE id = $1", &[Value::from(invoice)])?;
    let Some(row) = row.first() else { return Ok(None) };
    let (party, amount, currency) = (PartyId(id_from_db(row[0].int()?)), row[1].int()?, row[2].text()?);
    let Some((rate, t)) = next_tax(db, "invoices", party, TaxedAt::TopUp, amount, &currency, false)? else {
        return Ok(None);
    };
    db.run(
        "UPDATE invoices SET amount = $1, tax_name = $2, tax_rate = $3, tax_inclusive = $4, tax = $5, net = $6, tax_carry = $7 WHERE id = $8",
        &[
            Value::from(t.gross),
            Value::from(rate.name.clone()),
            Value::from(rate.rate),
            Value::from(i64::from(rate.inclusive)),
            Value::from(t.tax),
            Value::from(t.net),
            Value::from(t.carry),
            Value::from(invoice),
        ],
    )?;
    let c = currency_of(db, &currency)?;
    let f = |v: i64| purse_core::invoice::format_total(c, v);
    Ok(Some(format!(
        "Net {} {currency}, {} {}%: {} {currency}, to pay {} {currency}.",
        f(t.net),
        rate.name,
        percent_text(rate.rate),
        f(t.tax),
        f(t.gross)
    )))
}

/// An e-mail's text with the tax line added as a paragraph before its signature.
pub fn with_tax_line(body: &str, line: &str) -> String {
    match body.rfind("\n\n") {
        Some(at) => format!("{}\n\n{line}{}", &body[..at], &body[at..]),
        None => format!("{body}\n\n{line}"),
    }
}

/// A rate's percentage as people write it (`20`, `7.25`), from millionths.
pub fn percent_text(rate: i64) -> String {
    let whole = rate / 10_000;
    let part = format!("{:04}", (rate % 10_000).abs());
    let part = part.trim_end_matches('0');
    if part.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{part}")
    }
}

/// A receipt's tax (taxed at top-up) not yet booked as owed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnbookedTax {
    pub receipt: u64,
    pub party: PartyId,
    pub tax: i64,
    pub currency: String,
    pub name: String,
}

/// Receipts whose tax (taxed at top-up) is not yet booked as owed, oldest first.
pub fn unbooked(db: &mut dyn Db, limit: u32) -> StoreResult<Vec<UnbookedTax>> {
    db.rows(
        "SELECT id, party_id, tax, currency, tax_name FROM receipts WHERE tax <> 0 AND tax_booked_at IS NULL ORDER BY id LIMIT $1",
        &[Value::from(i64::from(limit))],
    )?
    .iter()
    .map(|r| {
        Ok(UnbookedTax {
            receipt: id_from_db(r[0].int()?),
            party: PartyId(id_from_db(r[1].int()?)),
            tax: r[2].int()?,
            currency: r[3].text()?,
            name: r[4].text()?,
        })
    })
    .collect()
}

pub trait TaxStore: Send + Sync {
    fn tax_rates(&self) -> StoreResult<Vec<TaxRate>>;
    fn create_tax_rate(&self, rate: &TaxRate, audit: &AuditEntry) -> StoreResult<TaxRate>;
    fn customer_tax(&self, party: PartyId) -> StoreResult<Option<CustomerTax>>;
    fn put_customer_tax(&self, tax: &CustomerTax, audit: &AuditEntry) -> StoreResult<()>;
    /// See [`unbooked`].
    fn unbooked_receipt_taxes(&self, limit: u32) -> StoreResult<Vec<UnbookedTax>>;
    /// Marks a receipt's tax booked.
    fn receipt_tax_booked(&self, receipt: u64, at: Timestamp) -> StoreResult<()>;
}

impl<T: Transact> TaxStore for T {
    fn tax_rates(&self) -> StoreResult<Vec<TaxRate>> {
        run_db(self, false, |db| {
            db.rows(&format!("SELECT {RATE_COLUMNS} FROM tax_rates ORDER BY id"), &[])?
                .iter()
                .map(|r| rate_from(r))
                .collect()
        })
    }

    fn create_tax_rate(&self, t: &TaxRate, audit: &AuditEntry) -> StoreResult<TaxRate> {
        run_db(self, true, |db| {
            let row = db.rows(
                &format!(
                    "INSERT INTO tax_rates (owner_id, name, rate, inclusive, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING {RATE_COLUMNS}"
                ),
                &[
                    Value::from(t.owner.map_or(0, |p| id_to_db(p.0))),
                    Value::from(t.name.clone()),
                    Value::from(t.rate),
                    Value::from(i64::from(t.inclusive)),
                    Value::from(t.created_at.0),
                ],
            )?;
            let made = rate_from(&row[0])?;
            let mut audit = audit.clone();
            audit.entity_id = made.id.to_string();
            insert_audit(db, &audit)?;
            Ok(made)
        })
    }

    fn customer_tax(&self, party: PartyId) -> StoreResult<Option<CustomerTax>> {
        run_db(self, false, |db| {
            let rows = db.rows(
                "SELECT party_id, tax_rate_id, tax_id, address, updated_at, taxed_at FROM customer_tax WHERE party_id = $1",
                &[Value::from(id_to_db(party.0))],
            )?;
            rows.first()
                .map(|r| {
                    Ok(CustomerTax {
                        party: PartyId(id_from_db(r[0].int()?)),
                        rate: r[1].opt_int()?.map(id_from_db),
                        tax_id: r[2].text()?,
                        address: r[3].text()?,
                        updated_at: Timestamp(r[4].int()?),
                        taxed_at: TaxedAt::parse(&r[5].text()?).unwrap_or_default(),
                    })
                })
                .transpose()
        })
    }

    fn put_customer_tax(&self, t: &CustomerTax, audit: &AuditEntry) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "INSERT INTO customer_tax (party_id, tax_rate_id, tax_id, address, updated_at, taxed_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (party_id) DO UPDATE SET tax_rate_id = excluded.tax_rate_id, tax_id = excluded.tax_id, \
                 address = excluded.address, updated_at = excluded.updated_at, taxed_at = excluded.taxed_at",
                &[
                    Value::from(id_to_db(t.party.0)),
                    Value::from(t.rate.map(id_to_db)),
                    Value::from(t.tax_id.clone()),
                    Value::from(t.address.clone()),
                    Value::from(t.updated_at.0),
                    Value::from(t.taxed_at.as_str().to_owned()),
                ],
            )?;
            insert_audit(db, audit)
        })
    }

    fn unbooked_receipt_taxes(&self, limit: u32) -> StoreResult<Vec<UnbookedTax>> {
        run_db(self, false, |db| unbooked(db, limit))
    }

    fn receipt_tax_booked(&self, receipt: u64, at: Timestamp) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE receipts SET tax_booked_at = $1 WHERE id = $2 AND tax_booked_at IS NULL",
                &[Value::from(at.0), Value::from(id_to_db(receipt))],
            )
            .map(drop)
        })
    }
}
