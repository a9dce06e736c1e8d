//! What auto-recharge and payments keep: each customer's recharge settings (with its saved
//! card's Stripe ids), every recharge and card payment as a small state machine, and top-up
//! invoices numbered without gaps per issuer.
//!
//! "One recharge in flight per customer" is a unique index, and the caps are counted in the
//! transaction that inserts the recharge, so several processes never start two. A recharge
//! moves money only through the ledger with a client id derived from its own id, so doing a
//! step again after a crash never posts twice.

use purse_core::recharge::{RechargeMethod, RechargeSettings, Used};
use purse_core::{CurrencyCode, PartyId, Timestamp};

use crate::alerts::NewNotification;
use crate::StoreResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RechargeStatus {
    /// Recorded; nothing asked of Stripe or the ledger yet (or not known to have been).
    Pending,
    /// A Stripe PaymentIntent exists (`intent`): its outcome decides.
    Processing,
    /// A top-up invoice is open for it.
    Invoiced,
    Succeeded,
    Failed,
}

impl RechargeStatus {
    pub const ALL: [RechargeStatus; 5] = [
        RechargeStatus::Pending,
        RechargeStatus::Processing,
        RechargeStatus::Invoiced,
        RechargeStatus::Succeeded,
        RechargeStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RechargeStatus::Pending => "pending",
            RechargeStatus::Processing => "processing",
            RechargeStatus::Invoiced => "invoiced",
            RechargeStatus::Succeeded => "succeeded",
            RechargeStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RechargeStatus> {
        RechargeStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn in_flight(self) -> bool {
        matches!(self, RechargeStatus::Pending | RechargeStatus::Processing | RechargeStatus::Invoiced)
    }
}

/// Why money is being taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RechargeReason {
    /// Auto-recharge: the balance fell below the threshold.
    Auto,
    /// A customer admin's Pay Now or online top-up with the card.
    PayNow,
}

impl RechargeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RechargeReason::Auto => "auto",
            RechargeReason::PayNow => "pay_now",
        }
    }

    pub fn parse(text: &str) -> Option<RechargeReason> {
        [RechargeReason::Auto, RechargeReason::PayNow].into_iter().find(|r| r.as_str() == text)
    }
}

/// One recharge or card payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RechargeRecord {
    pub id: u64,
    pub party: PartyId,
    pub method: RechargeMethod,
    pub reason: RechargeReason,
    pub amount: i64,
    pub currency: CurrencyCode,
    pub status: RechargeStatus,
    pub created_at: Timestamp,
    /// The local date (`YYYY-MM-DD`) it counts against for the daily cap.
    pub day: String,
    /// Stripe's PaymentIntent, once created.
    pub intent: Option<String>,
    /// The ledger transfer that credited the customer.
    pub transfer: Option<u64>,
    pub invoice: Option<u64>,
    pub error: Option<String>,
    pub finished_at: Option<Timestamp>,
}

/// A recharge to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecharge {
    pub party: PartyId,
    pub method: RechargeMethod,
    pub reason: RechargeReason,
    pub amount: i64,
    pub currency: CurrencyCode,
    pub at: Timestamp,
    /// The local date and month (`YYYY-MM`) the caps count in.
    pub day: String,
    pub month: String,
    /// For an automatic recharge: the caps, checked again in the inserting transaction.
    pub per_day_max: u32,
    pub month_cap: Option<i64>,
    /// For the invoice method: who issues the top-up invoice (`None`: the operator).
    pub issuer: Option<PartyId>,
    /// No other process claims it before this wall-clock time (a Pay Now runs at once in
    /// its request; 0 lets the worker take it).
    pub lease_until: i64,
    /// The Idempotency-Key of the API request that asked for it, or the id of the portal's
    /// Pay Now form: a second start with the same key returns the first recharge.
    pub request_key: Option<String>,
    /// Sent with the invoice, in the same transaction; `{invoice}` in its subject and body
    /// becomes the invoice's number.
    pub notice: Option<NewNotification>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    Open,
    /// Some of a usage invoice is allocated, not all.
    PartiallyPaid,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 4] =
        [InvoiceStatus::Open, InvoiceStatus::PartiallyPaid, InvoiceStatus::Paid, InvoiceStatus::Void];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Open => "open",
            InvoiceStatus::PartiallyPaid => "partially_paid",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(text: &str) -> Option<InvoiceStatus> {
        InvoiceStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A usage invoice (periodic, from uninvoiced usage) or a top-up invoice (a request for
/// prepayment made by the invoice recharge method, paid whole by its own payment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceKind {
    Usage,
    TopUp,
}

impl InvoiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Usage => "usage",
            InvoiceKind::TopUp => "top_up",
        }
    }

    pub fn parse(text: &str) -> Option<InvoiceKind> {
        [InvoiceKind::Usage, InvoiceKind::TopUp].into_iter().find(|k| k.as_str() == text)
    }
}

/// An invoice. Amounts are in units of the currency's scale; a usage invoice's `amount` is
/// rounded to the invoice precision (`subtotal + carry_in - carry_out`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRecord {
    pub id: u64,
    /// `None`: the operator.
    pub issuer: Option<PartyId>,
    /// 1, 2, 3… per issuer and kind, without gaps.
    pub number: u64,
    pub party: PartyId,
    pub kind: InvoiceKind,
    pub amount: i64,
    pub currency: CurrencyCode,
    pub status: InvoiceStatus,
    pub created_at: Timestamp,
    pub paid_at: Option<Timestamp>,
    pub recharge: Option<u64>,
    /// A top-up invoice's payment.
    pub transfer: Option<u64>,
    /// A usage invoice's billing period.
    pub period: Option<(Timestamp, Timestamp)>,
    /// The usage the journal holds for it, before rounding.
    pub subtotal: i64,
    /// Rounding difference carried from the previous invoice, and to the next.
    pub carry_in: i64,
    pub carry_out: i64,
    /// What payments cover of it (usage invoices).
    pub allocated: i64,
    pub voided_at: Option<Timestamp>,
    pub void_reason: Option<String>,
    /// What credit notes took off what it asks.
    pub credited: i64,
    /// The tax of a usage invoice issued with a rate.
    pub tax: Option<InvoiceTax>,
    /// A usage invoice's due date, fixed when it is first sent (by the payment terms then).
    pub due_at: Option<Timestamp>,
}

/// A usage invoice's tax as issued: `amount` is the gross (net + tax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceTax {
    pub name: String,
    /// Millionths of the whole.
    pub rate: i64,
    pub inclusive: bool,
    pub amount: i64,
    pub net: i64,
}

impl InvoiceRecord {
    /// The number as printed: `INV-` (usage) or `TU-` (top-up), the issuer (`0` for the
    /// operator) and the number.
    pub fn display_number(&self) -> String {
        match self.kind {
            InvoiceKind::Usage => usage_number(self.issuer, self.number),
            InvoiceKind::TopUp => top_up_number(self.issuer, self.number),
        }
    }

    /// What is still to pay.
    pub fn due(&self) -> i64 {
        match (self.status, self.kind) {
            (InvoiceStatus::Void | InvoiceStatus::Paid, _) => 0,
            (_, InvoiceKind::Usage) => self.amount - self.credited - self.allocated,
            (_, InvoiceKind::TopUp) => self.amount,
        }
    }
}

/// A usage invoice's number as printed: `INV-`, the issuer (`0`: the operator), the number.
pub fn usage_number(issuer: Option<PartyId>, number: u64) -> String {
    format!("INV-{}-{number:06}", issuer.map_or(0, |p| p.0))
}

/// The first invoice number printed in `text` (a subject): its kind, issuer and number.
pub fn find_invoice_number(text: &str) -> Option<(InvoiceKind, Option<PartyId>, u64)> {
    [("INV-", InvoiceKind::Usage), ("TU-", InvoiceKind::TopUp)]
        .into_iter()
        .find_map(|(prefix, kind)| find_number(text, prefix).map(|(issuer, number)| (kind, issuer, number)))
}

fn find_number(text: &str, prefix: &str) -> Option<(Option<PartyId>, u64)> {
    text.match_indices(prefix).find_map(|(at, _)| {
        let (issuer, rest) = text[at + prefix.len()..].split_once('-')?;
        let issuer: u64 = issuer.parse().ok()?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(((issuer != 0).then_some(PartyId(issuer)), digits.parse().ok()?))
    })
}

/// A top-up invoice's number as printed: `TU-`, the issuer (`0`: the operator), the number.
pub fn top_up_number(issuer: Option<PartyId>, number: u64) -> String {
    format!("TU-{}-{number:06}", issuer.map_or(0, |p| p.0))
}

/// A receipt voucher: the numbered acknowledgement of one payment received (seed 002).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub id: u64,
    /// `None`: the operator.
    pub issuer: Option<PartyId>,
    /// 1, 2, 3… per issuer, without gaps.
    pub number: u64,
    pub party: PartyId,
    /// The payment's posting: one receipt per payment.
    pub transfer: u64,
    pub amount: i64,
    pub currency: CurrencyCode,
    /// How it was paid: `card`, `cash`, `bank_transfer` (cheques clear as bank transfers).
    pub method: String,
    /// When the payment was posted.
    pub paid_at: Timestamp,
    /// The invoice the payment was made for: allocated there first.
    pub invoice: Option<u64>,
    /// How much of it is allocated to invoices; the rest is an unallocated payment.
    pub allocated: i64,
    /// When the notifier saw the payment reversed (its allocations were released then).
    pub reversed_at: Option<Timestamp>,
    /// How much of it was given back by refunds that succeeded.
    pub refunded: i64,
    /// Taxed at top-up: the rate's name and millionths, and the tax inside the payment, owed
    /// (the rest, net, is what the balance gains).
    pub tax_name: Option<String>,
    pub tax_rate: i64,
    pub tax: i64,
}

impl ReceiptRecord {
    /// The number as printed: `RV-`, the issuer (`0`: the operator), the number.
    pub fn display_number(&self) -> String {
        receipt_number(self.issuer, self.number)
    }

    /// The tax inside `part` of the payment (taxed at top-up): its share of the payment's
    /// tax, half away from zero, so that all of it holds all the tax.
    pub fn tax_share(&self, part: i64) -> i64 {
        if self.tax == 0 || self.amount <= 0 {
            return 0;
        }
        let (num, den) = (i128::from(part.min(self.amount)) * i128::from(self.tax), i128::from(self.amount));
        i64::try_from((num.abs() * 2 + den) / (den * 2) * num.signum()).unwrap_or(0)
    }

    /// What the payment put on the balance and is still there to apply to invoices: what
    /// was paid less what was refunded, less the tax still inside it.
    pub fn net_left(&self) -> i64 {
        let left = self.amount - self.refunded;
        left - (self.tax - self.tax_share(self.refunded))
    }
}

/// A receipt voucher's number as printed: `RV-`, the issuer (`0`: the operator), the number.
pub fn receipt_number(issuer: Option<PartyId>, number: u64) -> String {
    format!("RV-{}-{number:06}", issuer.map_or(0, |p| p.0))
}

/// The first receipt number printed in `text` (a subject): its issuer and number.
pub fn find_receipt_number(text: &str) -> Option<(Option<PartyId>, u64)> {
    find_number(text, "RV-")
}

/// The first refund number printed in `text` (a subject): its issuer and number.
pub fn find_refund_number(text: &str) -> Option<(Option<PartyId>, u64)> {
    find_number(text, "RF-")
}

/// A receipt to record for a payment, with the e-mail that sends it (`{receipt}` in its
/// subject and body becomes the number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReceipt {
    pub party: PartyId,
    pub issuer: Option<PartyId>,
    pub transfer: u64,
    pub amount: i64,
    pub currency: CurrencyCode,
    pub method: String,
    pub paid_at: Timestamp,
    /// The invoice the payment was made for (its client id is `invoice:{id}…`).
    pub invoice: Option<u64>,
    pub notice: Option<NewNotification>,
}

/// How a step of a recharge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RechargeUpdate {
    /// Stripe created the PaymentIntent.
    Intent(String),
    /// The ledger credited the customer with this transfer.
    Succeeded {
        transfer: u64,
    },
    Failed {
        error: String,
    },
}

pub trait PaymentStore:
    crate::invoices::InvoiceStore
    + crate::collections::CollectionStore
    + crate::refunds::RefundStore
    + crate::credit_notes::CreditNoteStore
    + crate::taxes::TaxStore
{
    fn recharge_settings(&self, party: PartyId) -> StoreResult<Option<RechargeSettings>>;
    fn all_recharge_settings(&self) -> StoreResult<Vec<RechargeSettings>>;
    /// Stores settings as given (the failure count and disabled reason included).
    fn put_recharge_settings(&self, settings: &RechargeSettings) -> StoreResult<()>;

    /// Automatic recharges of a party counted against its caps on `day` and in `month`.
    fn recharges_used(&self, party: PartyId, day: &str, month: &str) -> StoreResult<Used>;
    /// Records a recharge, and for the invoice method its numbered invoice and notice, in one
    /// transaction. An automatic one is refused (`None`) while another of the party's is in
    /// flight or when its caps are used up.
    fn start_recharge(&self, new: &NewRecharge) -> StoreResult<Option<RechargeRecord>>;
    /// Takes recharges that are pending or processing (card or master account) and that no
    /// live lease holds, leasing them until `lease_until` (wall-clock microseconds).
    fn claim_recharges(&self, wall: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<RechargeRecord>>;
    /// Records a step; the end of a recharge also releases its lease and may record a notice.
    /// Returns `false` when the recharge had already ended.
    fn update_recharge(
        &self,
        id: u64,
        update: &RechargeUpdate,
        at: Timestamp,
        notice: Option<&NewNotification>,
    ) -> StoreResult<bool>;
    fn recharge(&self, id: u64) -> StoreResult<Option<RechargeRecord>>;
    /// Newest first; `None`: every party's.
    fn recharges(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<RechargeRecord>>;

    /// Counts a card result in the party's settings: success clears the failures; a failure
    /// counts one more and at `failures_max` turns auto-recharge off with `reason`. Returns
    /// whether this call turned it off, and then records `notice` in the same transaction.
    fn card_result(
        &self,
        party: PartyId,
        ok: bool,
        failures_max: u32,
        reason: &str,
        at: Timestamp,
        notice: Option<&NewNotification>,
    ) -> StoreResult<bool>;

    /// Marks an open invoice paid by `transfer`, and its recharge succeeded, in one
    /// transaction; `false` when it was not open.
    fn invoice_paid(&self, id: u64, transfer: u64, at: Timestamp) -> StoreResult<bool>;
}
