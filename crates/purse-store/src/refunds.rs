//! Refunds of payments, written once for both backends over [`Db`]. A refund is reserved
//! against its receipt under the customer's lock ([`reserve`]), so refunds never add up to
//! more than the payment; it succeeds in the transaction of the ledger's `Refund` posting
//! ([`succeed`]), which numbers it and gives back what of the payment was allocated to
//! invoices beyond what is left of it.

use purse_core::{CurrencyCode, PartyId, Timestamp};

use crate::codec::{id_from_db, id_to_db};
use crate::credit::Value;
use crate::invoices::{allocate, lock_party, receipt_where, release, run_db, Db, Transact};
use crate::payments::ReceiptRecord;
use crate::{StoreError, StoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Asked for; counts against what is left to refund. A card refund waits for Stripe.
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> StoreResult<RefundStatus> {
        [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| StoreError::Other(format!("bad refund status {text:?}")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: u64,
    /// The receipt's issuer (`None`: the operator).
    pub issuer: Option<PartyId>,
    /// Given when it succeeds: 1, 2, 3… per issuer, without gaps.
    pub number: Option<u64>,
    pub party: PartyId,
    pub receipt: u64,
    pub amount: i64,
    pub currency: CurrencyCode,
    /// The payment's method: `card` goes back through Stripe.
    pub method: String,
    pub status: RefundStatus,
    pub stripe_refund: Option<String>,
    /// The ledger's refund posting.
    pub transfer: Option<u64>,
    pub reason: String,
    pub requested_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub failure: Option<String>,
}

impl RefundRecord {
    /// The number as printed: `RF-`, the issuer (`0`: the operator), the number.
    pub fn display_number(&self) -> Option<String> {
        self.number.map(|n| format!("RF-{}-{n:06}", self.issuer.map_or(0, |p| p.0)))
    }
}

const COLUMNS: &str = "id, issuer_id, number, party_id, receipt_id, amount, currency, method, status, stripe_refund, \
     transfer_id, reason, requested_by, created_at, finished_at, failure";

fn from_row(r: &[Value]) -> StoreResult<RefundRecord> {
    let issuer = r[1].int()?;
    let currency = r[6].text()?;
    Ok(RefundRecord {
        id: id_from_db(r[0].int()?),
        issuer: (issuer != 0).then(|| PartyId(id_from_db(issuer))),
        number: r[2].opt_int()?.map(id_from_db),
        party: PartyId(id_from_db(r[3].int()?)),
        receipt: id_from_db(r[4].int()?),
        amount: r[5].int()?,
        currency: CurrencyCode::parse(&currency).map_err(|_| StoreError::Other(format!("bad currency {currency}")))?,
        method: r[7].text()?,
        status: RefundStatus::parse(&r[8].text()?)?,
        stripe_refund: r[9].opt_text()?,
        transfer: r[10].opt_int()?.map(id_from_db),
        reason: r[11].text()?,
        requested_by: r[12].text()?,
        created_at: Timestamp(r[13].int()?),
        finished_at: r[14].opt_int()?.map(Timestamp),
        failure: r[15].opt_text()?,
    })
}

fn id(v: u64) -> Value {
    Value::from(id_to_db(v))
}

fn refunds_where(db: &mut dyn Db, clause: &str, params: &[Value]) -> StoreResult<Vec<RefundRecord>> {
    db.rows(&format!("SELECT {COLUMNS} FROM refunds {clause}"), params)?.iter().map(|r| from_row(r)).collect()
}

/// What is left to refund of a receipt: its amount less its refunds pending or succeeded.
fn left(db: &mut dyn Db, receipt: &ReceiptRecord) -> StoreResult<i64> {
    let taken = db.rows(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE receipt_id = $1 AND status IN ('pending', 'succeeded')",
        &[id(receipt.id)],
    )?;
    Ok(receipt.amount - taken.first().map_or(Ok(0), |r| r[0].int())?)
}

/// What a refund asks for.
#[derive(Clone, Debug)]
pub struct NewRefund<'a> {
    pub receipt: u64,
    pub amount: i64,
    pub reason: &'a str,
    pub by: &'a str,
    pub at: Timestamp,
    /// The request's Idempotency-Key: a repeat finds the refund it made.
    pub request_key: Option<&'a str>,
    /// No other process takes it over before this wall-clock time.
    pub lease_until: i64,
}

/// Asks for a refund of `amount` of `receipt`: a pending row, if that much is left to
/// refund (checked under the customer's lock); else what is left. A request repeated with
/// its key gets the refund it made.
pub fn reserve(db: &mut dyn Db, n: &NewRefund<'_>) -> StoreResult<Result<RefundRecord, i64>> {
    let (receipt, amount) = (n.receipt, n.amount);
    let Some(r) = receipt_where(db, "WHERE id = $1", &[id(receipt)])?.pop() else {
        return Err(StoreError::Other(format!("no receipt {receipt}")));
    };
    lock_party(db, r.party)?;
    if let Some(key) = n.request_key {
        let twin = refunds_where(
            db,
            "WHERE party_id = $1 AND request_key = $2",
            &[id(r.party.0), Value::from(key.to_owned())],
        )?;
        if let Some(twin) = twin.into_iter().next() {
            return Ok(Ok(twin));
        }
    }
    let left = if r.reversed_at.is_some() { 0 } else { left(db, &r)? };
    if amount > left {
        return Ok(Err(left.max(0)));
    }
    let row = db.rows(
        &format!(
            "INSERT INTO refunds (issuer_id, party_id, receipt_id, amount, currency, method, status, reason, requested_by, created_at, \
             request_key, lease_until) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
        ),
        &[
            Value::from(r.issuer.map_or(0, |p| id_to_db(p.0))),
            id(r.party.0),
            id(r.id),
            Value::from(amount),
            Value::from(r.currency.to_string()),
            Value::from(r.method.clone()),
            Value::from(n.reason.to_owned()),
            Value::from(n.by.to_owned()),
            Value::from(n.at.0),
            Value::from(n.request_key.map(str::to_owned)),
            Value::from(n.lease_until),
        ],
    )?;
    Ok(Ok(from_row(&row[0])?))
}

/// Records that a pending refund succeeded, in the transaction of its ledger posting: its
/// number, the receipt's refunded amount, and the receipt's allocations given back where
/// they exceed what is left of the payment (then the customer's payments are applied again).
/// Returns the refund as it now is, or `None` if it was not pending (a twin finished it).
pub fn succeed(
    db: &mut dyn Db,
    refund: u64,
    transfer: u64,
    stripe_refund: Option<&str>,
    at: Timestamp,
) -> StoreResult<Option<RefundRecord>> {
    let Some(r) = refunds_where(db, "WHERE id = $1 AND status = 'pending'", &[id(refund)])?.pop() else {
        return Ok(None);
    };
    lock_party(db, r.party)?;
    let number = db.rows(
        "INSERT INTO refund_numbers (issuer_id, last) VALUES ($1, 1) ON CONFLICT (issuer_id) DO UPDATE SET last = refund_numbers.last + 1 RETURNING last",
        &[Value::from(r.issuer.map_or(0, |p| id_to_db(p.0)))],
    )?[0][0]
        .int()?;
    let done = db.run(
        "UPDATE refunds SET status = 'succeeded', number = $1, transfer_id = $2, stripe_refund = COALESCE($3, stripe_refund), \
         finished_at = $4 WHERE id = $5 AND status = 'pending'",
        &[Value::from(number), id(transfer), Value::from(stripe_refund.map(str::to_owned)), Value::from(at.0), id(refund)],
    )?;
    if done == 0 {
        return Ok(None);
    }
    db.run("UPDATE receipts SET refunded = refunded + $1 WHERE id = $2", &[Value::from(r.amount), id(r.receipt)])?;
    if let Some(receipt) = receipt_where(db, "WHERE id = $1", &[id(r.receipt)])?.pop() {
        if receipt.allocated > receipt.net_left() {
            release(db, "receipt_id = $1", receipt.id, at, "refunded")?;
            allocate(db, receipt.party, at)?;
        }
    }
    Ok(refunds_where(db, "WHERE id = $1", &[id(refund)])?.pop())
}

/// The application's questions about refunds.
pub trait RefundStore: Send + Sync {
    fn refund(&self, id: u64) -> StoreResult<Option<RefundRecord>>;
    /// Newest first: a customer's, or all.
    fn refunds(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<RefundRecord>>;
    fn refunds_of_receipt(&self, receipt: u64) -> StoreResult<Vec<RefundRecord>>;
    fn refund_by_number(&self, issuer: Option<PartyId>, number: u64) -> StoreResult<Option<RefundRecord>>;
    /// See [`reserve`].
    fn reserve_refund(&self, new: &NewRefund<'_>) -> StoreResult<Result<RefundRecord, i64>>;
    /// Marks a pending refund failed: what it reserved is free again.
    fn fail_refund(&self, id: u64, failure: &str, at: Timestamp) -> StoreResult<()>;
    /// Remembers the Stripe refund made for it.
    fn set_stripe_refund(&self, id: u64, stripe_refund: &str) -> StoreResult<()>;
    /// Claims a pending refund until `lease_until` (wall clock), unless another process holds it.
    fn claim_refund(&self, id: u64, wall: i64, lease_until: i64) -> StoreResult<bool>;
    /// Pending refunds whose lease ran out (a process died working them).
    fn stale_refunds(&self, wall: i64, limit: u32) -> StoreResult<Vec<RefundRecord>>;
}

impl<T: Transact> RefundStore for T {
    fn refund(&self, refund: u64) -> StoreResult<Option<RefundRecord>> {
        run_db(self, false, |db| Ok(refunds_where(db, "WHERE id = $1", &[id(refund)])?.pop()))
    }

    fn refunds(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<RefundRecord>> {
        let limit = Value::from(i64::from(limit));
        run_db(self, false, |db| match party {
            Some(p) => refunds_where(db, "WHERE party_id = $1 ORDER BY id DESC LIMIT $2", &[id(p.0), limit.clone()]),
            None => refunds_where(db, "ORDER BY id DESC LIMIT $1", std::slice::from_ref(&limit)),
        })
    }

    fn refund_by_number(&self, issuer: Option<PartyId>, number: u64) -> StoreResult<Option<RefundRecord>> {
        let issuer = Value::from(issuer.map_or(0, |p| id_to_db(p.0)));
        run_db(self, false, |db| {
            Ok(refunds_where(
                db,
                "WHERE issuer_id = $1 AND number = $2",
                &[issuer.clone(), Value::from(id_to_db(number))],
            )?
            .pop())
        })
    }

    fn refunds_of_receipt(&self, receipt: u64) -> StoreResult<Vec<RefundRecord>> {
        run_db(self, false, |db| refunds_where(db, "WHERE receipt_id = $1 ORDER BY id", &[id(receipt)]))
    }

    fn reserve_refund(&self, new: &NewRefund<'_>) -> StoreResult<Result<RefundRecord, i64>> {
        run_db(self, true, |db| reserve(db, new))
    }

    fn fail_refund(&self, refund: u64, failure: &str, at: Timestamp) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE refunds SET status = 'failed', failure = $1, finished_at = $2 WHERE id = $3 AND status = 'pending'",
                &[Value::from(failure.to_owned()), Value::from(at.0), id(refund)],
            )?;
            Ok(())
        })
    }

    fn set_stripe_refund(&self, refund: u64, stripe_refund: &str) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE refunds SET stripe_refund = $1 WHERE id = $2",
                &[Value::from(stripe_refund.to_owned()), id(refund)],
            )?;
            Ok(())
        })
    }

    fn claim_refund(&self, refund: u64, wall: i64, lease_until: i64) -> StoreResult<bool> {
        run_db(self, true, |db| {
            Ok(db.run(
                "UPDATE refunds SET lease_until = $1 WHERE id = $2 AND status = 'pending' AND lease_until <= $3",
                &[Value::from(lease_until), id(refund), Value::from(wall)],
            )? == 1)
        })
    }

    fn stale_refunds(&self, wall: i64, limit: u32) -> StoreResult<Vec<RefundRecord>> {
        run_db(self, false, |db| {
            refunds_where(
                db,
                "WHERE status = 'pending' AND lease_until <= $1 ORDER BY id LIMIT $2",
                &[Value::from(wall), Value::from(i64::from(limit))],
            )
        })
    }
}
