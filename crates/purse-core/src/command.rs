//! What callers ask of the ledger, and what it answers.

use crate::model::{
    AccountId, Billing, ClientId, GrantId, HoldId, PartyId, Rollover, SystemRole, Timestamp, TransferId, TransferKind,
};
use crate::money::{Amount, CurrencyCode};
use crate::rejection::Rejection;

/// Longest `service` text of a charge or hold.
pub const SERVICE_LEN_MAX: usize = 64;
/// Longest free `metadata` text (the API stores JSON here).
pub const METADATA_LEN_MAX: usize = 4096;
/// Longest party name.
pub const NAME_LEN_MAX: usize = 200;
/// Longest reason given for a change of settings.
pub const REASON_LEN_MAX: usize = 500;
/// Most thresholds one account may report crossings of.
pub const THRESHOLDS_MAX: usize = 16;

/// An amount together with the currency the caller believes it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount: Amount,
    pub currency: CurrencyCode,
}

/// How a payment reached the operator; it picks the system account that is debited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentMethod {
    Card,
    Cash,
    BankTransfer,
    Cheque,
}

impl PaymentMethod {
    pub fn clearing_role(self) -> SystemRole {
        match self {
            PaymentMethod::Card => SystemRole::CardClearing,
            PaymentMethod::Cash => SystemRole::CashClearing,
            PaymentMethod::BankTransfer | PaymentMethod::Cheque => SystemRole::BankClearing,
        }
    }
}

/// A rated usage charge: usage that already happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCharge {
    pub client_id: ClientId,
    pub account: AccountId,
    pub money: Money,
    pub service: Option<String>,
    /// Usage time; the batch's time when absent.
    pub at: Option<Timestamp>,
    pub metadata: Option<String>,
    /// Refuse instead of overdrawing when funds are insufficient.
    pub refuse_if_insufficient: bool,
}

/// Most services one grant's scope may name.
pub const GRANT_SCOPE_MAX: usize = 16;
/// The lowest priority a grant may have (1 is drawn first).
pub const GRANT_PRIORITY_MAX: u32 = 1000;
/// Longest grant kind.
pub const GRANT_KIND_LEN_MAX: usize = 32;

/// Credit given to an account (see [`crate::model::Grant`]): `funding` is the system account
/// the money comes from, the grants account for free credit or a clearing account for
/// credit the customer paid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGrant {
    pub client_id: ClientId,
    pub account: AccountId,
    pub money: Money,
    pub kind: String,
    pub funding: SystemRole,
    pub priority: u32,
    /// When it starts to count; the batch's time when absent.
    pub effective_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub scope: Vec<String>,
    pub rollover: Option<Rollover>,
    /// Who granted it and why (the reason is required).
    pub note: ChangeNote,
    pub metadata: Option<String>,
}

impl NewGrant {
    /// The grant this makes, known by `transfer`, the posting that brings its money in.
    pub fn made(&self, transfer: TransferId, now: Timestamp) -> crate::model::Grant {
        crate::model::Grant {
            id: GrantId(transfer.0),
            client_id: self.client_id.clone(),
            account: self.account,
            kind: self.kind.clone(),
            funding: self.funding,
            priority: self.priority,
            amount: self.money.amount,
            remaining: self.money.amount,
            reserved: crate::money::Amount::ZERO,
            effective_at: self.effective_at.unwrap_or(now),
            expires_at: self.expires_at,
            scope: self.scope.clone(),
            rollover: self.rollover,
            state: crate::model::GrantState::Open,
            used_up_at: None,
            transfer: Some(transfer),
            rolled_from: None,
            created_at: now,
            closed_at: None,
            by: self.note.by.clone(),
            reason: self.note.reason.clone(),
        }
    }
}

/// Who changed a setting, and why: kept in the credit limit history.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeNote {
    pub by: String,
    pub reason: Option<String>,
}

impl ChangeNote {
    pub fn by(by: impl Into<String>) -> ChangeNote {
        ChangeNote { by: by.into(), reason: None }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> ChangeNote {
        self.reason = Some(reason.into());
        self
    }
}

/// Which way an adjustment moves money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustDirection {
    /// Adds to the account's balance.
    Credit,
    /// Takes from the account's balance.
    Debit,
}

impl AdjustDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustDirection::Credit => "credit",
            AdjustDirection::Debit => "debit",
        }
    }
}

/// Why staff adjust a balance. Each category has a system account of its own, so the books
/// keep goodwill given, corrections made and debts written off apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdjustCategory {
    /// A gesture to the customer: raises the balance, an expense.
    Goodwill,
    /// Puts a wrong balance right, either way.
    Correction,
    /// Gives up what a customer owes: raises a balance below zero, at most to zero.
    WriteOff,
    /// A credit note against an invoice: revenue given back, raising the balance.
    CreditNote,
    /// The tax an invoice adds, owed by the customer: lowers the balance.
    Tax,
}

impl AdjustCategory {
    pub const ALL: [AdjustCategory; 5] = [
        AdjustCategory::Goodwill,
        AdjustCategory::Correction,
        AdjustCategory::WriteOff,
        AdjustCategory::CreditNote,
        AdjustCategory::Tax,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustCategory::Goodwill => "goodwill",
            AdjustCategory::Correction => "correction",
            AdjustCategory::WriteOff => "write_off",
            AdjustCategory::CreditNote => "credit_note",
            AdjustCategory::Tax => "tax",
        }
    }
    pub fn parse(text: &str) -> Option<AdjustCategory> {
        AdjustCategory::ALL.into_iter().find(|c| c.as_str() == text)
    }
    /// The system account on the other side of the adjustment.
    pub fn role(self) -> SystemRole {
        match self {
            AdjustCategory::Goodwill => SystemRole::Goodwill,
            AdjustCategory::Correction => SystemRole::Adjustments,
            AdjustCategory::WriteOff => SystemRole::WriteOffs,
            AdjustCategory::CreditNote => SystemRole::UsageRevenue,
            AdjustCategory::Tax => SystemRole::TaxPayable,
        }
    }
    /// The category of an adjustment posted against `role`, if it is one.
    pub fn of_role(role: SystemRole) -> Option<AdjustCategory> {
        AdjustCategory::ALL.into_iter().find(|c| c.role() == role)
    }
    /// Whether the category only ever raises a balance.
    pub fn credits_only(self) -> bool {
        !matches!(self, AdjustCategory::Correction | AdjustCategory::Tax)
    }
}

/// The kinds of account a caller may open (system accounts come with their currency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewAccountKind {
    /// A reseller's master wallet in a currency.
    MasterWallet { currency: CurrencyCode },
    /// A subscriber account of a customer with its own balance.
    SubscriberDebit,
    /// A subscriber account drawing on its customer's wallet up to `credit_limit`.
    SubscriberCredit { credit_limit: Amount },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Registers a currency and opens its system accounts.
    CreateCurrency {
        code: CurrencyCode,
        scale: u8,
    },
    CreateReseller {
        client_id: ClientId,
        name: String,
    },
    /// Creates a customer and its wallet in one step.
    CreateCustomer {
        client_id: ClientId,
        name: String,
        reseller: Option<PartyId>,
        billing: Billing,
        currency: CurrencyCode,
        credit_limit: Amount,
    },
    OpenAccount {
        client_id: ClientId,
        party: PartyId,
        kind: NewAccountKind,
    },
    /// Closes an account with nothing on it.
    CloseAccount {
        account: AccountId,
    },
    SetCreditLimit {
        account: AccountId,
        credit_limit: Amount,
        note: ChangeNote,
    },
    /// Sets (or with `None`, removes) a temporary credit limit increase.
    SetTemporaryIncrease {
        account: AccountId,
        increase: Option<(Amount, Timestamp)>,
        note: ChangeNote,
    },
    /// Records that the account's temporary increase valid until `valid_until` has run out
    /// and removes it (the scheduler's revert). Does nothing if that increase is no longer
    /// there or has not run out yet: a late or repeated revert is harmless.
    RevertIncrease {
        account: AccountId,
        valid_until: Timestamp,
    },
    /// Suspends the customer (`suspended`) or lifts its suspension: each of `accounts` (the
    /// customer's open ones) refuses to spend while suspended. Subscriber accounts opened
    /// while the wallet is suspended start suspended.
    Suspend {
        party: PartyId,
        accounts: Vec<AccountId>,
        suspended: bool,
    },
    /// Whether the customer's subscriber accounts may transfer to each other.
    SetSubscriberTransfers {
        party: PartyId,
        allowed: bool,
    },
    /// Issues the customer's usage invoice for the period ending at `period_end`: moves the
    /// uninvoiced amount of each of `accounts` (the customer's) to it. Refused when an
    /// invoice already covers `period_end`; when there is nothing (or less than nothing) to
    /// invoice, the period is marked covered and no invoice is made.
    Invoice {
        party: PartyId,
        accounts: Vec<AccountId>,
        period_end: Timestamp,
    },
    /// Replaces the levels of available balance whose crossings are reported.
    SetThresholds {
        account: AccountId,
        thresholds: Vec<Amount>,
    },
    Charge(NewCharge),
    /// Money received: credits the account from the method's clearing account.
    Payment {
        client_id: ClientId,
        account: AccountId,
        money: Money,
        method: PaymentMethod,
        metadata: Option<String>,
    },
    /// Money given back to whoever paid: debits the account (its own money, never a grant's,
    /// and never below what it may spend) and credits the method's clearing account. Which
    /// payment it refunds, and that refunds never add up to more than it, is the
    /// application's (its refunds are counted in the same transaction).
    Refund {
        client_id: ClientId,
        account: AccountId,
        money: Money,
        method: PaymentMethod,
        metadata: Option<String>,
        note: Option<ChangeNote>,
    },
    /// Moves funds between two non-system accounts, checked against the source. An
    /// `Issue` or a `Recharge` goes from a reseller's master wallet to one of its customers.
    /// A `note` (a person acting for someone else) puts the transfer in the audit log.
    Transfer {
        client_id: ClientId,
        source: AccountId,
        target: AccountId,
        money: Money,
        kind: TransferKind,
        metadata: Option<String>,
        note: Option<ChangeNote>,
    },
    /// A staff member's correction of a balance, with a reason (required) that goes to the
    /// audit log with the posting: credits or debits the account against the currency's
    /// adjustments account. It may overdraw: it restores the truth.
    Adjust {
        client_id: ClientId,
        account: AccountId,
        money: Money,
        direction: AdjustDirection,
        /// Which system account is the other side.
        category: AdjustCategory,
        note: ChangeNote,
        metadata: Option<String>,
    },
    Hold {
        client_id: ClientId,
        account: AccountId,
        money: Money,
        expires_at: Timestamp,
        service: Option<String>,
        metadata: Option<String>,
    },
    /// Captures all (`None`) or part of a hold as a charge; the rest is released.
    Capture {
        client_id: ClientId,
        hold: HoldId,
        amount: Option<Amount>,
    },
    Release {
        client_id: ClientId,
        hold: HoldId,
    },
    /// Gives credit to an account.
    Grant(NewGrant),
    /// The scheduler's sweep: if the grant has reached its expiry, its remainder goes to
    /// breakage (or, up to its rollover, into a new grant). Does nothing otherwise, or if it
    /// is closed already: a late or repeated sweep is harmless.
    ExpireGrant {
        account: AccountId,
        grant: GrantId,
    },
    /// Staff take back what is left of a grant (not purchased, no open holds on it): it goes
    /// back to the account it came from, with the reason in the audit log.
    VoidGrant {
        account: AccountId,
        grant: GrantId,
        note: ChangeNote,
    },
    /// Posts a new transfer that undoes a posted one; a `note` puts it in the audit log.
    Reverse {
        client_id: ClientId,
        transfer: TransferId,
        metadata: Option<String>,
        note: Option<ChangeNote>,
    },
}

/// A command in a batch. `linked` ties it to the next one: the chain succeeds or fails whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub command: Command,
    pub linked: bool,
}

impl Item {
    pub fn single(command: Command) -> Item {
        Item { command, linked: false }
    }
}

/// What an accepted command did. `replayed` is true when the client id had already been
/// used with the same content: nothing new was posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    CurrencyCreated,
    PartyCreated {
        party: PartyId,
        wallet: Option<AccountId>,
        replayed: bool,
    },
    AccountOpened {
        account: AccountId,
        replayed: bool,
    },
    AccountUpdated {
        account: AccountId,
    },
    PartyUpdated {
        party: PartyId,
    },
    /// An invoice was issued (`true`), or the period had nothing to invoice.
    Invoiced {
        party: PartyId,
        issued: bool,
    },
    Posted {
        transfer: TransferId,
        overdrawn: bool,
        replayed: bool,
    },
    HoldPlaced {
        hold: HoldId,
        replayed: bool,
    },
    HoldCaptured {
        hold: HoldId,
        transfer: TransferId,
        replayed: bool,
    },
    HoldReleased {
        hold: HoldId,
        replayed: bool,
    },
}

pub type CommandResult = Result<Outcome, Rejection>;
