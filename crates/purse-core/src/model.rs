//! The nouns of the ledger: ids, time, parties, accounts, transfers, holds and events.

use std::fmt;

use crate::money::{Amount, Currency, CurrencyCode};

/// Microseconds since the Unix epoch, UTC. The core never reads a clock: every
/// operation is given `now` by its caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MICROS_PER_S: i64 = 1_000_000;
    pub fn from_secs(s: i64) -> Timestamp {
        Timestamp(s.saturating_mul(Self::MICROS_PER_S))
    }
    pub fn plus_micros(self, us: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(us))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}
id_type!(
    /// A reseller or a customer.
    PartyId
);
id_type!(
    /// Any account: system, wallet, master wallet, subscriber.
    AccountId
);
id_type!(
    /// A posted journal entry.
    TransferId
);
id_type!(
    /// A reservation of funds.
    HoldId
);
id_type!(
    /// An outbox event.
    EventId
);
id_type!(
    /// A credit grant.
    GrantId
);

/// Whose namespace a client id lives in. Every tenant has its own, so two tenants never
/// collide on an id (nor learn of each other's through a collision): the tenant is a part
/// of the key, never of the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tenant {
    /// The operator, and Purse itself (recharges, invoice payments, the demo).
    #[default]
    Operator,
    Reseller(PartyId),
    Customer(PartyId),
}

/// The caller's own id for a command, within its tenant's namespace: the idempotency key
/// of the ledger. Retrying a command with the same client id never posts twice.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    tenant: Tenant,
    text: Box<str>,
}

impl ClientId {
    pub const LEN_MAX: usize = 128;

    /// An id in the operator's namespace: 1 to 128 bytes of one-line text (no control
    /// characters, [`crate::text::is_single_line`]).
    pub fn new(text: &str) -> Option<ClientId> {
        ClientId::scoped(Tenant::Operator, text)
    }

    /// An id in `tenant`'s namespace, with the same rules as [`ClientId::new`].
    pub fn scoped(tenant: Tenant, text: &str) -> Option<ClientId> {
        let ok = !text.is_empty() && text.len() <= Self::LEN_MAX && crate::text::is_single_line(text);
        ok.then(|| ClientId { tenant, text: text.into() })
    }

    /// A client id read back from the store, as it was stored: an id an earlier version
    /// accepted stays readable when the rules for new ones grow stricter (`None` only when
    /// empty, which no version stored).
    pub fn stored(tenant: Tenant, text: &str) -> Option<ClientId> {
        (!text.is_empty()).then(|| ClientId { tenant, text: text.into() })
    }

    /// The text as its caller sent it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn tenant(&self) -> Tenant {
        self.tenant
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tenant {
            Tenant::Operator => write!(f, "{:?}", &*self.text),
            Tenant::Reseller(p) => write!(f, "reseller {p} {:?}", &*self.text),
            Tenant::Customer(p) => write!(f, "customer {p} {:?}", &*self.text),
        }
    }
}

/// Prepaid customers spend what they paid; postpaid customers spend on credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    Prepaid,
    Postpaid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartyKind {
    Reseller,
    Customer { reseller: Option<PartyId>, billing: Billing, currency: CurrencyCode, wallet: AccountId },
}

/// A reseller or a customer. The operator is implicit: it owns the system accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub id: PartyId,
    pub client_id: ClientId,
    pub name: String,
    pub kind: PartyKind,
    pub created_at: Timestamp,
    /// A customer's subscriber accounts may transfer to each other: the effective setting
    /// (its own, else its class's), kept by `SetSubscriberTransfers` and checked by the ledger.
    pub subscriber_transfers: bool,
    /// The end of the period the customer's last usage invoice covered: a second invoice
    /// for the same period is refused, whoever asks.
    pub invoiced_until: Option<Timestamp>,
}

/// The operator's accounts that hold the other side of every movement, one per currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SystemRole {
    UsageRevenue,
    CardClearing,
    CashClearing,
    BankClearing,
    Adjustments,
    /// Where free credit comes from (promotional, goodwill, commitment grants): an expense.
    Grants,
    /// Where the unused remainder of an expired grant goes.
    Breakage,
    /// Where goodwill adjustments come from: an expense.
    Goodwill,
    /// Where written-off debts go: bad debt.
    WriteOffs,
    /// The tax customers owe on their invoices, until it is paid over.
    TaxPayable,
}

impl SystemRole {
    pub const ALL: [SystemRole; 10] = [
        SystemRole::UsageRevenue,
        SystemRole::CardClearing,
        SystemRole::CashClearing,
        SystemRole::BankClearing,
        SystemRole::Adjustments,
        SystemRole::Grants,
        SystemRole::Breakage,
        SystemRole::Goodwill,
        SystemRole::WriteOffs,
        SystemRole::TaxPayable,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// The operator's side of every movement; never limit-checked.
    System(SystemRole),
    /// A customer's own balance.
    Wallet,
    /// A reseller's balance, from which it recharges or credits its customers.
    MasterWallet,
    /// A subscriber account with its own balance.
    SubscriberDebit,
    /// A subscriber account that draws on its customer's wallet up to its own credit limit.
    SubscriberCredit { parent: AccountId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Open,
    /// Its customer is suspended (an overdue invoice, a balance too far below zero, or staff):
    /// nothing is spent from it (charges, holds, transfers out) until it is lifted; money
    /// still comes in.
    Suspended,
    Closed,
}

/// A temporary credit limit increase, in force strictly before `valid_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemporaryIncrease {
    pub amount: Amount,
    pub valid_until: Timestamp,
}

/// Which part of a credit limit a [`LimitChange`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitChangeKind {
    /// The permanent credit limit was set.
    Permanent,
    /// A temporary increase was set, changed or removed by hand.
    Temporary,
    /// A temporary increase reached its *valid until* and stopped counting.
    Revert,
}

impl LimitChangeKind {
    pub const ALL: [LimitChangeKind; 3] =
        [LimitChangeKind::Permanent, LimitChangeKind::Temporary, LimitChangeKind::Revert];
    pub fn as_str(self) -> &'static str {
        match self {
            LimitChangeKind::Permanent => "permanent",
            LimitChangeKind::Temporary => "temporary",
            LimitChangeKind::Revert => "revert",
        }
    }
    pub fn parse(text: &str) -> Option<LimitChangeKind> {
        LimitChangeKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A usage invoice issued by the ledger: every listed account's uninvoiced amount moved to
/// it. The store numbers it, rounds it and writes it in the batch's transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceIssue {
    pub party: PartyId,
    /// The customer's reseller (`None`: the operator) issues it.
    pub issuer: Option<PartyId>,
    pub currency: Currency,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    pub issued_at: Timestamp,
    pub accounts: Vec<InvoicedAccount>,
    /// The sum of the accounts' amounts, at the currency's scale, before rounding.
    pub subtotal: i64,
}

/// What one account contributed to an invoice: its uninvoiced amount, and the last posting
/// of its journal chain at that moment (the invoice covers the postings after the previous
/// invoice's `through`, up to and including this one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvoicedAccount {
    pub account: AccountId,
    pub amount: Amount,
    pub through: Option<TransferId>,
}

/// One change of an account's credit limit, written in the same transaction as the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitChange {
    pub account: AccountId,
    pub party: Option<PartyId>,
    pub currency: Currency,
    pub kind: LimitChangeKind,
    /// When the change took effect: the batch's time, or for a revert the *valid until*.
    pub at: Timestamp,
    /// When the ledger recorded it (later than `at` when the scheduler was late).
    pub recorded_at: Timestamp,
    pub old_limit: Amount,
    pub new_limit: Amount,
    pub old_increase: Option<TemporaryIncrease>,
    pub new_increase: Option<TemporaryIncrease>,
    /// Who made it (`key 12`, `user ann@example.com`, `scheduler`).
    pub by: String,
    pub reason: Option<String>,
}

impl LimitChange {
    /// The account's credit before and after, as the audit log's JSON objects:
    /// `{"credit_limit": "100.00", "temporary_increase": {"amount": …, "valid_until": …}}`.
    pub fn states(&self) -> (String, String) {
        let state = |limit: Amount, increase: Option<TemporaryIncrease>| {
            let increase = match increase {
                Some(i) => format!(
                    "{{\"amount\":\"{}\",\"valid_until\":\"{}\"}}",
                    self.currency.format(i.amount),
                    crate::time::format(i.valid_until)
                ),
                None => "null".to_owned(),
            };
            format!("{{\"credit_limit\":\"{}\",\"temporary_increase\":{increase}}}", self.currency.format(limit))
        };
        (state(self.old_limit, self.old_increase), state(self.new_limit, self.new_increase))
    }
}

/// An account and its balance parts. `balance` is credits minus debits of its postings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub client_id: Option<ClientId>,
    pub party: Option<PartyId>,
    pub kind: AccountKind,
    pub currency: CurrencyCode,
    pub status: AccountStatus,
    pub balance: Amount,
    /// Sum of open holds.
    pub reserved: Amount,
    /// How far below zero the balance may go (0 for prepaid).
    pub credit_limit: Amount,
    pub temporary_increase: Option<TemporaryIncrease>,
    /// Sum of the balances of credit subscriber accounts drawing on this one.
    pub children_balance: Amount,
    /// Levels of available balance whose crossing is reported, highest first.
    pub thresholds: Vec<Amount>,
    pub last_charge_at: Option<Timestamp>,
    /// Consumption posted since the account's last invoice that the account's own money paid:
    /// charges (captures included) less what credit grants paid of them, less the charges
    /// reversed. Invoicing sets it back to zero.
    pub uninvoiced: Amount,
    /// The account's most recent posting: the head of its chain in the journal.
    pub last_transfer: Option<TransferId>,
    pub created_at: Timestamp,
    /// The credit grants not yet closed, in draw-down order ([`Grant::draw_order`]). Their
    /// remainders are part of `balance`; what they may pay for is decided by
    /// [`Account::grants_excluded`].
    pub grants: Vec<Grant>,
}

impl Account {
    pub fn is_system(&self) -> bool {
        matches!(self.kind, AccountKind::System(_))
    }

    /// The permanent limit plus the temporary increase while it is in force.
    /// An expired increase is never counted, however late the scheduler is.
    pub fn effective_credit_limit(&self, now: Timestamp) -> i128 {
        let increase = match self.temporary_increase {
            Some(t) if now < t.valid_until => t.amount.0,
            _ => 0,
        };
        i128::from(self.credit_limit.0) + i128::from(increase)
    }

    /// balance + children − reserved + effective credit limit − the grant money that may not
    /// be spent now ([`Account::grants_excluded`] with every grant that is in force usable):
    /// the available balance shown and watched by thresholds. Exact in i128.
    pub fn own_available(&self, now: Timestamp) -> i128 {
        self.available_for(now, &|_| true)
    }

    /// The available balance for a spend that grants for which `usable` is true may pay.
    pub fn available_for(&self, now: Timestamp, usable: &dyn Fn(&Grant) -> bool) -> i128 {
        i128::from(self.balance.0) + i128::from(self.children_balance.0) - i128::from(self.reserved.0)
            + self.effective_credit_limit(now)
            - self.grants_excluded(now, usable)
    }

    /// How much of `balance` a spend may not use: the whole remainder of a grant that is not
    /// in force (not yet effective, or at or after its expiry, however late the sweep is),
    /// and the free part of one in force that may not pay for it (`usable` false; its
    /// reservations already count in `reserved`).
    pub fn grants_excluded(&self, now: Timestamp, usable: &dyn Fn(&Grant) -> bool) -> i128 {
        self.grants
            .iter()
            .map(|g| {
                if !g.in_force(now) {
                    i128::from(g.remaining.0)
                } else if !usable(g) {
                    i128::from(g.remaining.0) - i128::from(g.reserved.0)
                } else {
                    0
                }
            })
            .sum()
    }

    /// Keeps `grant` with the account, in draw-down order.
    pub fn add_grant(&mut self, grant: Grant) {
        let at = self.grants.partition_point(|g| g.draw_order() < grant.draw_order());
        self.grants.insert(at, grant);
    }
}

/// Where a grant stands. Only `Open` grants are kept with their account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantState {
    Open,
    /// Spent to the last unit (a grant without an expiry closes so; one with an expiry
    /// stays open until it, so that a reversed charge can give back what it took).
    UsedUp,
    /// Reached its expiry: the remainder went to breakage (or rolled over).
    Expired,
    /// Taken back by staff before it was used up.
    Voided,
}

impl GrantState {
    pub const ALL: [GrantState; 4] = [GrantState::Open, GrantState::UsedUp, GrantState::Expired, GrantState::Voided];
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Open => "open",
            GrantState::UsedUp => "used_up",
            GrantState::Expired => "expired",
            GrantState::Voided => "voided",
        }
    }
    pub fn parse(text: &str) -> Option<GrantState> {
        GrantState::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// What happens to a grant's remainder at its expiry: up to `max` becomes a new grant,
/// valid for `valid_for_us` more; the rest goes to breakage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollover {
    pub max: Amount,
    pub valid_for_us: i64,
}

/// Credit given to an account that is not cash: promotional, purchased, a commitment, a
/// goodwill gesture. It pays for the charges it applies to before the account's own money,
/// in a fixed order (lower `priority` first, then soonest expiry, then oldest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub client_id: ClientId,
    pub account: AccountId,
    /// `promotional`, `purchased`, `commitment`, `goodwill`, or a word the operator chose.
    pub kind: String,
    /// The system account the money came from (and goes back to if voided).
    pub funding: SystemRole,
    pub priority: u32,
    pub amount: Amount,
    pub remaining: Amount,
    /// Of `remaining`, what open holds reserved.
    pub reserved: Amount,
    pub effective_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The services it may pay for; empty: any.
    pub scope: Vec<String>,
    pub rollover: Option<Rollover>,
    pub state: GrantState,
    /// When its remainder last reached zero (cleared when a reversal gives some back).
    pub used_up_at: Option<Timestamp>,
    /// The posting that brought the money in (none for a rolled-over remainder).
    pub transfer: Option<TransferId>,
    pub rolled_from: Option<GrantId>,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub by: String,
    pub reason: Option<String>,
}

impl Grant {
    /// Counts now: open, effective, and strictly before its expiry.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.state == GrantState::Open && self.effective_at <= now && self.expires_at.is_none_or(|e| now < e)
    }

    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Whether it may pay for a spend on `service` (a charge without a service: only
    /// grants without a scope).
    pub fn applies(&self, service: Option<&str>) -> bool {
        self.scope.is_empty() || service.is_some_and(|s| self.scope.iter().any(|x| x == s))
    }

    /// Unreserved remainder.
    pub fn free(&self) -> i64 {
        self.remaining.0 - self.reserved.0
    }

    /// Priority, then soonest expiry (none last), then oldest.
    pub fn draw_order(&self) -> (u32, i64, u64) {
        (self.priority, self.expires_at.map_or(i64::MAX, |e| e.0), self.id.0)
    }
}

/// What moved a grant's remainder: a posting paid by it, a reversal that gave back, its
/// expiry, its rollover into a new grant, or its void.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantUseKind {
    Charge,
    Return,
    Expiry,
    Rollover,
    Void,
}

impl GrantUseKind {
    pub const ALL: [GrantUseKind; 5] =
        [GrantUseKind::Charge, GrantUseKind::Return, GrantUseKind::Expiry, GrantUseKind::Rollover, GrantUseKind::Void];
    pub fn as_str(self) -> &'static str {
        match self {
            GrantUseKind::Charge => "charge",
            GrantUseKind::Return => "return",
            GrantUseKind::Expiry => "expiry",
            GrantUseKind::Rollover => "rollover",
            GrantUseKind::Void => "void",
        }
    }
    pub fn parse(text: &str) -> Option<GrantUseKind> {
        GrantUseKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One movement of a grant's remainder: `amount` left the grant (negative: came back),
/// by the posting `transfer` (a charge or capture it paid, a reversal, an expiry, a void;
/// none for a rollover, which moves no money).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantUse {
    pub grant: GrantId,
    pub account: AccountId,
    pub transfer: Option<TransferId>,
    pub kind: GrantUseKind,
    pub amount: Amount,
    pub at: Timestamp,
}

/// The kinds of movement in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    Charge,
    Payment,
    Recharge,
    Transfer,
    Issue,
    Refund,
    Reversal,
    Adjustment,
    /// Credit granted from a system account.
    Grant,
    /// A grant's unused remainder moved to breakage at its expiry.
    Expiry,
    /// A grant's remainder taken back before use.
    Void,
}

impl TransferKind {
    pub const ALL: [TransferKind; 11] = [
        TransferKind::Charge,
        TransferKind::Payment,
        TransferKind::Recharge,
        TransferKind::Transfer,
        TransferKind::Issue,
        TransferKind::Refund,
        TransferKind::Reversal,
        TransferKind::Adjustment,
        TransferKind::Grant,
        TransferKind::Expiry,
        TransferKind::Void,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Charge => "charge",
            TransferKind::Payment => "payment",
            TransferKind::Recharge => "recharge",
            TransferKind::Transfer => "transfer",
            TransferKind::Issue => "issue",
            TransferKind::Refund => "refund",
            TransferKind::Reversal => "reversal",
            TransferKind::Adjustment => "adjustment",
            TransferKind::Grant => "grant",
            TransferKind::Expiry => "expiry",
            TransferKind::Void => "void",
        }
    }
    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One immutable journal entry: `amount` moves from `debit` to `credit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub client_id: ClientId,
    pub kind: TransferKind,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Amount,
    pub currency: CurrencyCode,
    /// When the movement happened in the caller's world (usage time for a charge).
    pub at: Timestamp,
    /// When the ledger posted it.
    pub posted_at: Timestamp,
    pub service: Option<String>,
    pub metadata: Option<String>,
    pub hold: Option<HoldId>,
    pub reverses: Option<TransferId>,
    /// The charge left the debited account's available balance below zero.
    pub overdrawn: bool,
    /// The previous posting of the debited account: each account's postings form a chain
    /// from its `last_transfer` backwards, so reading an account's journal needs no index.
    pub debit_prev: Option<TransferId>,
    pub credit_prev: Option<TransferId>,
    /// The debited account's balance right after this posting.
    pub debit_balance: Amount,
    /// The credited account's balance right after this posting.
    pub credit_balance: Amount,
    /// Of a charge: what each credit grant paid of it (the rest was the account's own money).
    pub grant_parts: Vec<(GrantId, Amount)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    Open,
    Captured,
    Released,
    Expired,
}

/// A reservation of funds on an account until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub id: HoldId,
    pub client_id: ClientId,
    pub account: AccountId,
    pub amount: Amount,
    pub currency: CurrencyCode,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: HoldState,
    pub service: Option<String>,
    pub metadata: Option<String>,
    /// Set once, when the hold leaves `Open`.
    pub resolution: Option<HoldResolution>,
    /// What of `amount` it reserved on which grants (the rest on the account's own money).
    pub grant_parts: Vec<(GrantId, Amount)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldResolution {
    pub at: Timestamp,
    /// The client id of the capture or release; `None` for expiry.
    pub client_id: Option<ClientId>,
    pub captured: Amount,
    pub transfer: Option<TransferId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Down,
    Up,
}

/// Something consumers downstream (notifications, auto-recharge) must react to. Written to
/// the outbox in the same transaction as the change that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub at: Timestamp,
    pub account: AccountId,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The available balance crossed a configured threshold.
    ThresholdCrossed {
        threshold: Amount,
        direction: Direction,
        available_before: Amount,
        available_after: Amount,
        transfer: Option<TransferId>,
    },
    /// A payment, recharge or issued credit reached a customer's wallet: notification
    /// counters start over.
    Refilled { amount: Amount, available_after: Amount, transfer: TransferId },
}

/// Who a caller is, for tenancy: each sees only its own scope of parties and accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs Purse: sees everything.
    Operator,
    /// A reseller: sees itself and its customers.
    Reseller(PartyId),
    /// A customer: sees only itself.
    Customer(PartyId),
}

/// What a caller may do within its role's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Read,
    ReadWrite,
}
