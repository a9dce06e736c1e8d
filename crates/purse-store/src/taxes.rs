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

/// A customer's tax settings: its rate, tax id and billing address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerTax {
    pub party: PartyId,
    pub rate: Option<u64>,
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

/// The rate a customer's invoices take now, if it has one.
pub fn of_party(db: &mut dyn Db, party: PartyId) -> StoreResult<Option<TaxRate>> {
    let rows = db.rows(
        &format!(
            "SELECT {} FROM tax_rates t JOIN customer_tax c ON c.tax_rate_id = t.id WHERE c.party_id = $1",
            RATE_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
        ),
        &[Value::from(id_to_db(party.0))],
    )?;
    rows.first().map(|r| rate_from(r)).transpose()
}

pub trait TaxStore: Send + Sync {
    fn tax_rates(&self) -> StoreResult<Vec<TaxRate>>;
    fn create_tax_rate(&self, rate: &TaxRate, audit: &AuditEntry) -> StoreResult<TaxRate>;
    fn customer_tax(&self, party: PartyId) -> StoreResult<Option<CustomerTax>>;
    fn put_customer_tax(&self, tax: &CustomerTax, audit: &AuditEntry) -> StoreResult<()>;
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
                "SELECT party_id, tax_rate_id, tax_id, address, updated_at FROM customer_tax WHERE party_id = $1",
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
                    })
                })
                .transpose()
        })
    }

    fn put_customer_tax(&self, t: &CustomerTax, audit: &AuditEntry) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "INSERT INTO customer_tax (party_id, tax_rate_id, tax_id, address, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (party_id) DO UPDATE SET tax_rate_id = excluded.tax_rate_id, tax_id = excluded.tax_id, \
                 address = excluded.address, updated_at = excluded.updated_at",
                &[
                    Value::from(id_to_db(t.party.0)),
                    Value::from(t.rate.map(id_to_db)),
                    Value::from(t.tax_id.clone()),
                    Value::from(t.address.clone()),
                    Value::from(t.updated_at.0),
                ],
            )?;
            insert_audit(db, audit)
        })
    }
}
