//! Every reason the ledger refuses a command. Read the enum as the specification: each
//! variant names the rule that was broken.

use std::fmt;

use crate::model::{HoldState, TransferId};
use crate::money::{Amount, Currency, CurrencyCode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    // Amounts and currencies.
    AmountMustBePositive,
    /// An arithmetic result does not fit in 64-bit units.
    AmountOverflow,
    CurrencyMismatch {
        expected: CurrencyCode,
        actual: CurrencyCode,
    },
    CurrencyUnknown,
    CurrencyExists,
    ScaleTooLarge,
    CreditLimitMustNotBeNegative,
    /// Prepaid customers spend only what they paid.
    CreditLimitNotAllowedForPrepaid,
    TemporaryIncreaseMustBePositive,
    ValidUntilMustBeInFuture,
    ThresholdsTooMany {
        max: usize,
    },
    TextTooLong {
        field: &'static str,
        max: usize,
    },
    /// A NUL or another control character (a line break where one line is expected).
    TextNotPrintable {
        field: &'static str,
    },
    NameMustNotBeEmpty,

    // Parties and accounts.
    PartyNotFound,
    ResellerNotFound,
    /// Master wallets belong to resellers, subscriber accounts to customers.
    PartyKindMismatch,
    AccountNotFound,
    AccountClosed,
    /// The account's customer is suspended: it spends nothing until the suspension is lifted.
    Suspended,
    AccountHasBalance,
    AccountHasHolds,
    /// System accounts cannot be charged, paid into, or transferred from by a command.
    SystemAccountNotAllowed,
    AccountsMustDiffer,
    /// Subscriber accounts transfer only within their own customer.
    OtherCustomer,
    /// The customer does not allow subscriber-to-subscriber transfers.
    TransfersNotAllowed,
    /// A transfer between accounts is a transfer, an issue or a recharge; other kinds have
    /// commands of their own (charge, payment, reversal).
    TransferKindNotAllowed,
    /// Subscriber-credit accounts need their customer's wallet in the same currency.
    CurrencyMismatchWithCustomer,
    /// An issue or a recharge moves money from a reseller's master wallet.
    IssueNeedsMasterWallet,
    /// An issue or a recharge goes to a customer of the master wallet's reseller.
    NotResellersCustomer,
    /// A change made for someone else (an adjustment) says why.
    ReasonMustNotBeEmpty,

    // Funds.
    /// Spending would leave the available balance below zero. `available` is what was
    /// available (negative when already overdrawn), in `currency`.
    InsufficientFunds {
        available: Amount,
        currency: Currency,
    },

    // Holds.
    HoldNotFound,
    HoldAlreadyResolved {
        state: HoldState,
    },
    HoldExpired,
    HoldExpiryMustBeInFuture,
    CaptureExceedsHold {
        held: Amount,
        currency: Currency,
    },

    // Grants.
    /// A grant's kind is 1 to 32 lowercase letters, digits or underscores.
    GrantKindInvalid,
    /// A grant's priority is 1 (drawn first) to 1000.
    GrantPriorityOutOfRange,
    GrantExpiryMustFollowEffective,
    /// A grant's scope names at most 16 services, each non-empty.
    GrantScopeInvalid,
    /// A rollover keeps a non-negative amount for a positive time.
    GrantRolloverInvalid,
    /// Grants go to customers' wallets and subscriber accounts.
    GrantAccountKind,
    /// Grants are funded by the grants account or a clearing account (purchased credit).
    GrantFundingNotAllowed,
    GrantNotFound,
    /// The grant is not open: it was used up, expired or voided.
    GrantClosed,
    /// Purchased credit is refunded, not voided; a grant with open holds on it waits.
    GrantNotVoidable,

    // Reversals.
    TransferNotFound,
    TransferAlreadyReversed {
        by: TransferId,
    },
    ReversalCannotBeReversed,

    // Idempotency: the client id was used before with other content.
    ExistsWithDifferentKind,
    ExistsWithDifferentAccount,
    ExistsWithDifferentCounterparty,
    ExistsWithDifferentAmount,
    ExistsWithDifferentTime,
    ExistsWithDifferentService,
    ExistsWithDifferentMetadata,
    ExistsWithDifferentHold,
    ExistsWithDifferentExpiry,
    ExistsWithDifferentName,
    ExistsWithDifferentSettings,

    // Invoices.
    /// An invoice already covers the period asked for.
    AlreadyInvoiced {
        until: crate::model::Timestamp,
    },
    /// An invoice covers the customer's accounts only.
    AccountOfOtherParty,

    // Batches.
    /// Another command of the same linked chain failed, so this one was not applied.
    LinkedCommandFailed,
    /// The last command of a batch was marked as linked to a next one that does not exist.
    LinkedChainOpen,
}

impl Rejection {
    /// A stable, machine-readable code (`insufficient_funds`), used by the API.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            AmountMustBePositive => "amount_must_be_positive",
            AmountOverflow => "amount_overflow",
            CurrencyMismatch { .. } => "currency_mismatch",
            CurrencyUnknown => "currency_unknown",
            CurrencyExists => "currency_exists",
            ScaleTooLarge => "scale_too_large",
            CreditLimitMustNotBeNegative => "credit_limit_must_not_be_negative",
            CreditLimitNotAllowedForPrepaid => "credit_limit_not_allowed_for_prepaid",
            TemporaryIncreaseMustBePositive => "temporary_increase_must_be_positive",
            ValidUntilMustBeInFuture => "valid_until_must_be_in_future",
            ThresholdsTooMany { .. } => "thresholds_too_many",
            TextTooLong { .. } => "text_too_long",
            TextNotPrintable { .. } => "text_not_printable",
            NameMustNotBeEmpty => "name_must_not_be_empty",
            PartyNotFound => "party_not_found",
            ResellerNotFound => "reseller_not_found",
            PartyKindMismatch => "party_kind_mismatch",
            AccountNotFound => "account_not_found",
            AccountClosed => "account_closed",
            Suspended => "suspended",
            AccountHasBalance => "account_has_balance",
            AccountHasHolds => "account_has_holds",
            SystemAccountNotAllowed => "system_account_not_allowed",
            AccountsMustDiffer => "accounts_must_differ",
            OtherCustomer => "other_customer",
            TransfersNotAllowed => "transfers_not_allowed",
            TransferKindNotAllowed => "transfer_kind_not_allowed",
            CurrencyMismatchWithCustomer => "currency_mismatch_with_customer",
            IssueNeedsMasterWallet => "issue_needs_master_wallet",
            NotResellersCustomer => "not_resellers_customer",
            ReasonMustNotBeEmpty => "reason_must_not_be_empty",
            InsufficientFunds { .. } => "insufficient_funds",
            HoldNotFound => "hold_not_found",
            HoldAlreadyResolved { .. } => "hold_already_resolved",
            HoldExpired => "hold_expired",
            HoldExpiryMustBeInFuture => "hold_expiry_must_be_in_future",
            CaptureExceedsHold { .. } => "capture_exceeds_hold",
            GrantKindInvalid => "grant_kind_invalid",
            GrantPriorityOutOfRange => "grant_priority_out_of_range",
            GrantExpiryMustFollowEffective => "grant_expiry_must_follow_effective",
            GrantScopeInvalid => "grant_scope_invalid",
            GrantRolloverInvalid => "grant_rollover_invalid",
            GrantAccountKind => "grant_account_kind",
            GrantFundingNotAllowed => "grant_funding_not_allowed",
            GrantNotFound => "grant_not_found",
            GrantClosed => "grant_closed",
            GrantNotVoidable => "grant_not_voidable",
            TransferNotFound => "transfer_not_found",
            TransferAlreadyReversed { .. } => "transfer_already_reversed",
            ReversalCannotBeReversed => "reversal_cannot_be_reversed",
            ExistsWithDifferentKind => "exists_with_different_kind",
            ExistsWithDifferentAccount => "exists_with_different_account",
            ExistsWithDifferentCounterparty => "exists_with_different_counterparty",
            ExistsWithDifferentAmount => "exists_with_different_amount",
            ExistsWithDifferentTime => "exists_with_different_time",
            ExistsWithDifferentService => "exists_with_different_service",
            ExistsWithDifferentMetadata => "exists_with_different_metadata",
            ExistsWithDifferentHold => "exists_with_different_hold",
            ExistsWithDifferentExpiry => "exists_with_different_expiry",
            ExistsWithDifferentName => "exists_with_different_name",
            ExistsWithDifferentSettings => "exists_with_different_settings",
            AlreadyInvoiced { .. } => "already_invoiced",
            AccountOfOtherParty => "account_of_other_party",
            LinkedCommandFailed => "linked_command_failed",
            LinkedChainOpen => "linked_chain_open",
        }
    }

    /// The command field the rejection is about, for the API's error shape.
    pub fn field(&self) -> Option<&'static str> {
        use Rejection::*;
        Some(match self {
            AmountMustBePositive | AmountOverflow | InsufficientFunds { .. } => "amount",
            CaptureExceedsHold { .. } | ExistsWithDifferentAmount => "amount",
            CurrencyMismatch { .. } | CurrencyUnknown | CurrencyExists => "currency",
            ScaleTooLarge => "scale",
            CreditLimitMustNotBeNegative | CreditLimitNotAllowedForPrepaid => "credit_limit",
            TemporaryIncreaseMustBePositive => "increase",
            ValidUntilMustBeInFuture => "valid_until",
            ThresholdsTooMany { .. } => "thresholds",
            TextTooLong { field, .. } | TextNotPrintable { field } => field,
            NameMustNotBeEmpty | ExistsWithDifferentName => "name",
            PartyNotFound | PartyKindMismatch => "party",
            ResellerNotFound => "reseller",
            AccountNotFound | AccountClosed | AccountHasBalance | AccountHasHolds | Suspended => "account",
            SystemAccountNotAllowed | ExistsWithDifferentAccount => "account",
            CurrencyMismatchWithCustomer => "currency",
            IssueNeedsMasterWallet => "source",
            NotResellersCustomer => "target",
            ReasonMustNotBeEmpty => "reason",
            AccountsMustDiffer | ExistsWithDifferentCounterparty | OtherCustomer => "target",
            TransfersNotAllowed => "source",
            HoldNotFound | HoldAlreadyResolved { .. } | HoldExpired => "hold",
            ExistsWithDifferentHold => "hold",
            HoldExpiryMustBeInFuture | ExistsWithDifferentExpiry => "expires_at",
            GrantKindInvalid | GrantFundingNotAllowed => "kind",
            GrantPriorityOutOfRange => "priority",
            GrantExpiryMustFollowEffective => "expires_at",
            GrantScopeInvalid => "scope",
            GrantRolloverInvalid => "rollover",
            GrantAccountKind => "account",
            GrantNotFound | GrantClosed | GrantNotVoidable => "grant",
            TransferNotFound | TransferAlreadyReversed { .. } => "transfer",
            ReversalCannotBeReversed => "transfer",
            ExistsWithDifferentKind | TransferKindNotAllowed => "kind",
            ExistsWithDifferentTime => "at",
            ExistsWithDifferentService => "service",
            ExistsWithDifferentMetadata => "metadata",
            ExistsWithDifferentSettings => "client_id",
            AlreadyInvoiced { .. } => "period_end",
            AccountOfOtherParty => "accounts",
            LinkedCommandFailed | LinkedChainOpen => "linked",
        })
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Rejection::*;
        match self {
            CurrencyMismatch { expected, actual } => {
                write!(f, "currency {actual} does not match the account's currency {expected}")
            }
            InsufficientFunds { available, currency } => write!(
                f,
                "insufficient funds: the available balance is {} {}",
                currency.format(*available),
                currency.code
            ),
            ThresholdsTooMany { max } => write!(f, "at most {max} thresholds per account"),
            TextTooLong { field, max } => write!(f, "{field} must be at most {max} bytes"),
            TextNotPrintable { field } => write!(f, "{field} must not contain control characters"),
            HoldAlreadyResolved { state } => f.write_str(match state {
                HoldState::Open => "the hold is still open",
                HoldState::Captured => "the hold was already captured",
                HoldState::Released => "the hold was already released",
                HoldState::Expired => "the hold has already expired",
            }),
            CaptureExceedsHold { held, currency } => {
                write!(f, "the capture is more than the held amount of {} {}", currency.format(*held), currency.code)
            }
            TransferAlreadyReversed { by } => write!(f, "transfer already reversed by {by}"),
            AlreadyInvoiced { until } => {
                write!(f, "an invoice already covers the period until {}", crate::time::format(*until))
            }
            OtherCustomer => f.write_str("a subscriber account transfers only within its own customer's accounts"),
            TransfersNotAllowed => f.write_str("subscriber-to-subscriber transfers are not allowed for this customer"),
            IssueNeedsMasterWallet => f.write_str("an issue or a recharge moves money from a reseller's master wallet"),
            NotResellersCustomer => {
                f.write_str("an issue or a recharge goes to a customer of the master wallet's reseller")
            }
            ReasonMustNotBeEmpty => f.write_str("give a reason: it is kept in the audit log"),
            Suspended => f.write_str(
                "the customer is suspended: nothing is spent from its accounts until what is overdue is paid",
            ),
            GrantKindInvalid => f.write_str("a grant's kind is 1 to 32 lowercase letters, digits or underscores"),
            GrantPriorityOutOfRange => f.write_str("a grant's priority is from 1 (drawn first) to 1000"),
            GrantExpiryMustFollowEffective => f.write_str("a grant expires after it takes effect, and in the future"),
            GrantScopeInvalid => f.write_str("a grant's scope names at most 16 services, each non-empty"),
            GrantRolloverInvalid => f.write_str("a rollover keeps a non-negative amount for a positive time"),
            GrantAccountKind => f.write_str("grants go to a customer's wallet or subscriber accounts"),
            GrantFundingNotAllowed => {
                f.write_str("a grant is funded by the grants account, or a clearing account when purchased")
            }
            GrantClosed => f.write_str("the grant was used up, expired or voided"),
            GrantNotVoidable => {
                f.write_str("purchased credit is refunded, not voided; a grant with open holds on it cannot be voided")
            }
            other => {
                // The code is the sentence: "account_not_found" -> "account not found".
                f.write_str(&other.code().replace('_', " "))
            }
        }
    }
}

impl std::error::Error for Rejection {}
