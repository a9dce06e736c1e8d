//! What notifications keep: Low Balance Profiles, parties' alert settings, the counters of
//! each rule, the outbox cursor, the notification log with one delivery per recipient,
//! webhook endpoints, and the scheduler's job runs.
//!
//! Everything that must happen once is decided by a compare-and-set inside one
//! transaction ([`AlertStore::record_alerts`], [`AlertStore::claim_deliveries`],
//! [`AlertStore::claim_job`]), so several processes on one database never double a
//! notification, a delivery or a daily sweep.

use purse_core::alerts::{AlertSettings, Counter, Profile, RuleKind};
use purse_core::{CurrencyCode, Event, PartyId, Timestamp};

use crate::StoreResult;

/// What a notification is about: a profile rule, or one of the party's warning thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Rule(RuleKind),
    Warning,
    /// About auto-recharge and payments.
    Payment(PaymentNotice),
}

/// The notices of auto-recharge and payments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentNotice {
    RechargeSucceeded,
    RechargeFailed,
    /// Auto-recharge turned itself off after failures in a row.
    RechargeDisabled,
    /// A top-up invoice was issued.
    TopUpInvoice,
    /// The reseller's master wallet could not fund a recharge.
    MasterFundsShort,
    /// A payment's receipt voucher.
    Receipt,
    /// A usage invoice was issued.
    Invoice,
    /// A charging session was closed by Purse: nothing heard from it within its time to live.
    SessionExpired,
    /// A credit grant expires soon with credit left.
    GrantExpiring,
    /// A credit grant was used up.
    GrantUsedUp,
    /// A daily or monthly cap held back an automatic recharge that was due.
    RechargeCapped,
    /// A usage invoice is overdue: a dunning reminder.
    InvoiceOverdue,
    /// The customer was suspended.
    Suspended,
    /// The customer's suspension was lifted.
    SuspensionLifted,
    /// A payment was refunded, in whole or in part.
    Refund,
}

impl PaymentNotice {
    pub const ALL: [PaymentNotice; 15] = [
        PaymentNotice::RechargeSucceeded,
        PaymentNotice::RechargeFailed,
        PaymentNotice::RechargeDisabled,
        PaymentNotice::TopUpInvoice,
        PaymentNotice::MasterFundsShort,
        PaymentNotice::Receipt,
        PaymentNotice::Invoice,
        PaymentNotice::SessionExpired,
        PaymentNotice::GrantExpiring,
        PaymentNotice::GrantUsedUp,
        PaymentNotice::RechargeCapped,
        PaymentNotice::InvoiceOverdue,
        PaymentNotice::Suspended,
        PaymentNotice::SuspensionLifted,
        PaymentNotice::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentNotice::RechargeSucceeded => "recharge_succeeded",
            PaymentNotice::RechargeFailed => "recharge_failed",
            PaymentNotice::RechargeDisabled => "recharge_disabled",
            PaymentNotice::TopUpInvoice => "top_up_invoice",
            PaymentNotice::MasterFundsShort => "master_funds_short",
            PaymentNotice::Receipt => "receipt",
            PaymentNotice::Invoice => "invoice",
            PaymentNotice::SessionExpired => "session_expired",
            PaymentNotice::GrantExpiring => "grant_expiring",
            PaymentNotice::GrantUsedUp => "grant_used_up",
            PaymentNotice::RechargeCapped => "recharge_capped",
            PaymentNotice::InvoiceOverdue => "invoice_overdue",
            PaymentNotice::Suspended => "suspended",
            PaymentNotice::SuspensionLifted => "suspension_lifted",
            PaymentNotice::Refund => "refund",
        }
    }

    pub fn event_type(self) -> &'static str {
        match self {
            PaymentNotice::RechargeSucceeded => "recharge.succeeded",
            PaymentNotice::RechargeFailed => "recharge.failed",
            PaymentNotice::RechargeDisabled => "recharge.disabled",
            PaymentNotice::TopUpInvoice => "invoice.issued",
            PaymentNotice::MasterFundsShort => "recharge.refused",
            PaymentNotice::Receipt => "payment.receipt",
            PaymentNotice::Invoice => "invoice.usage_issued",
            PaymentNotice::SessionExpired => "session.expired",
            PaymentNotice::GrantExpiring => "grant.expiring",
            PaymentNotice::GrantUsedUp => "grant.used_up",
            PaymentNotice::RechargeCapped => "recharge.capped",
            PaymentNotice::InvoiceOverdue => "invoice.overdue",
            PaymentNotice::Suspended => "customer.suspended",
            PaymentNotice::SuspensionLifted => "customer.suspension_lifted",
            PaymentNotice::Refund => "payment.refunded",
        }
    }
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Rule(k) => k.as_str(),
            AlertKind::Warning => "warning",
            AlertKind::Payment(n) => n.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        if text == "warning" {
            return Some(AlertKind::Warning);
        }
        RuleKind::parse(text)
            .map(AlertKind::Rule)
            .or_else(|| PaymentNotice::ALL.into_iter().find(|n| n.as_str() == text).map(AlertKind::Payment))
    }

    /// What it is, for people.
    pub fn words(self) -> &'static str {
        match self {
            AlertKind::Rule(RuleKind::User) => "Low balance (to staff)",
            AlertKind::Rule(RuleKind::Client) => "Low balance",
            AlertKind::Rule(RuleKind::Inactivity) => "Low balance, no usage",
            AlertKind::Warning => "Warning threshold reached",
            AlertKind::Payment(n) => match n {
                PaymentNotice::RechargeSucceeded => "Automatic recharge made",
                PaymentNotice::RechargeFailed => "Automatic recharge failed",
                PaymentNotice::RechargeDisabled => "Automatic recharge turned off",
                PaymentNotice::TopUpInvoice => "Top-up invoice issued",
                PaymentNotice::MasterFundsShort => "Reseller's master wallet short",
                PaymentNotice::Receipt => "Receipt voucher",
                PaymentNotice::Invoice => "Usage invoice issued",
                PaymentNotice::SessionExpired => "Session ended unused",
                PaymentNotice::GrantExpiring => "Credit grant expiring",
                PaymentNotice::GrantUsedUp => "Credit grant used up",
                PaymentNotice::RechargeCapped => "Automatic recharge held back by its cap",
                PaymentNotice::InvoiceOverdue => "Overdue invoice reminder",
                PaymentNotice::Suspended => "Customer suspended",
                PaymentNotice::SuspensionLifted => "Suspension lifted",
                PaymentNotice::Refund => "Refund",
            },
        }
    }

    /// The webhook event type.
    pub fn event_type(self) -> &'static str {
        match self {
            AlertKind::Rule(RuleKind::Inactivity) => "balance.inactive",
            AlertKind::Rule(_) => "balance.low",
            AlertKind::Warning => "balance.warning_threshold",
            AlertKind::Payment(n) => n.event_type(),
        }
    }
}

/// One firing: its message as rendered, and its deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: u64,
    pub party: PartyId,
    pub kind: AlertKind,
    pub threshold: i64,
    pub available: i64,
    pub currency: CurrencyCode,
    pub at: Timestamp,
    pub subject: String,
    pub body: String,
    /// The webhook body (JSON).
    pub payload: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Sent, DeliveryStatus::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// One recipient of a notification: an e-mail address or a webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: u64,
    pub notification: u64,
    pub channel: Channel,
    /// The address, or the endpoint's URL when the delivery was made.
    pub target: String,
    pub endpoint: Option<u64>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_at: Timestamp,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
}

/// A notification to record, with its recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    pub party: PartyId,
    pub kind: AlertKind,
    pub threshold: i64,
    pub available: i64,
    pub currency: CurrencyCode,
    pub at: Timestamp,
    pub subject: String,
    pub body: String,
    pub payload: String,
    pub emails: Vec<String>,
    /// Endpoints with their URLs.
    pub endpoints: Vec<(u64, String)>,
}

/// A rule that fired: the counter it expects to find (so a rival process that fired first
/// makes this one fail) and its notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    pub counter: Option<(RuleKind, Counter)>,
    pub notification: NewNotification,
}

/// Everything one evaluation decided, written all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertBatch {
    /// The outbox cursor moves from the first to the second value.
    pub cursor: Option<(u64, u64)>,
    /// Parties whose counters start over (a refill), before the fires are checked.
    pub resets: Vec<PartyId>,
    pub fires: Vec<Fire>,
    /// Receipt vouchers of payments, numbered when written (a payment that has one already
    /// is skipped).
    pub receipts: Vec<crate::NewReceipt>,
    /// Usage invoices e-mailed by this pass, with their e-mail (marked sent once).
    pub sent_invoices: Vec<(u64, Option<NewNotification>)>,
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Sent { at: Timestamp },
    Retry { at: Timestamp, error: String },
    Failed { error: String },
}

/// A webhook endpoint. The signing secret is kept as is: it must sign every message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: u64,
    /// `None`: the operator's, told about every customer; else a reseller's or customer's.
    pub owner: Option<PartyId>,
    pub url: String,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    pub created_at: Timestamp,
}

/// One run of a scheduled job (the daily sweep of a day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRun {
    pub job: String,
    pub key: String,
    pub claimed_by: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub summary: String,
}

/// A page of the notification log, newest first.
#[derive(Clone, Debug, Default)]
pub struct NotificationQuery {
    /// Only these parties (`None`: all).
    pub parties: Option<Vec<PartyId>>,
    pub before: Option<u64>,
    pub limit: u32,
}

pub trait AlertStore: Send + Sync {
    fn profiles(&self) -> StoreResult<Vec<Profile>>;
    /// Stores a new profile (its id is ignored) and returns its id.
    fn insert_profile(&self, profile: &Profile) -> StoreResult<u64>;
    /// Replaces a profile's fields and rules; `false` when there is none.
    fn update_profile(&self, profile: &Profile) -> StoreResult<bool>;
    /// Deletes a profile; customers assigned to it fall back to their default.
    fn delete_profile(&self, id: u64) -> StoreResult<bool>;

    fn alert_settings(&self, party: PartyId) -> StoreResult<Option<AlertSettings>>;
    fn all_alert_settings(&self) -> StoreResult<Vec<AlertSettings>>;
    fn put_alert_settings(&self, settings: &AlertSettings) -> StoreResult<()>;

    fn counters(&self) -> StoreResult<Vec<(PartyId, RuleKind, Counter)>>;

    /// The outbox position notifications have been evaluated up to.
    fn outbox_cursor(&self) -> StoreResult<u64>;
    fn events_after(&self, after: u64, limit: u32) -> StoreResult<Vec<Event>>;
    /// Writes a batch in one transaction; `false` (and nothing written) when the cursor or a
    /// counter is not what the batch expected: another process got there first.
    fn record_alerts(&self, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool>;

    /// Takes up to `limit` pending deliveries due at `now` that no live lease holds, leasing
    /// them until `lease_until` (wall-clock microseconds) and counting the attempt.
    fn claim_deliveries(
        &self,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    fn finish_delivery(&self, id: u64, attempt: &Attempt) -> StoreResult<()>;
    fn notification(&self, id: u64) -> StoreResult<Option<NotificationRecord>>;
    fn notifications(&self, query: &NotificationQuery) -> StoreResult<Vec<(NotificationRecord, Vec<DeliveryRecord>)>>;

    fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> StoreResult<u64>;
    fn endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    fn delete_endpoint(&self, id: u64) -> StoreResult<bool>;
    /// Records an attempt's result: success clears the failures; a failure counts one more
    /// and disables the endpoint at `failures_max`; `disable` disables it at once (a 410).
    fn endpoint_attempt(&self, id: u64, ok: bool, disable: Option<&str>, failures_max: u32) -> StoreResult<()>;

    /// Claims run `key` of `job` for `by` until `lease_until` (wall clock), unless it
    /// finished or another live claim holds it.
    fn claim_job(
        &self,
        job: &str,
        key: &str,
        by: &str,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
    ) -> StoreResult<bool>;
    fn finish_job(&self, job: &str, key: &str, at: Timestamp, summary: &str) -> StoreResult<()>;
    fn job_runs(&self, limit: u32) -> StoreResult<Vec<JobRun>>;
}
