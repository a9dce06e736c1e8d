//! The one error of the application: every failure a caller can be told of, each with a
//! stable code. The API maps it to a status and a body in one place (`purse-http`'s
//! `error.rs`), the portal to a page; the ledger's own refusals stay `Rejection`s inside it.

use std::fmt;

use purse_core::Rejection;
use purse_engine::EngineError;
use purse_store::StoreError;

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $text:literal, )*) => {
        /// Why a field of a request is wrong: the stable codes of `AppError::Invalid`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $name, )*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$( Code::$name ),*];

            /// The code as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Code::$name => $text, )*
                }
            }
        }
    };
}

codes! {
    AboveMaximumIncrease = "above_maximum_increase",
    AboveRefundable = "above_refundable",
    AboveWhatIsOwed = "above_what_is_owed",
    CategoryOnlyRaises = "category_only_raises",
    InvalidCategory = "invalid_category",
    NothingOwed = "nothing_owed",
    AccountNotFound = "account_not_found",
    AmountMismatch = "amount_mismatch",
    AmountMustBePositive = "amount_must_be_positive",
    AmountOrPercent = "amount_or_percent",
    BatchSize = "batch_size",
    BatchTooLarge = "batch_too_large",
    CannotDisableSelf = "cannot_disable_self",
    ClassNotFound = "class_not_found",
    CurrencyMismatch = "currency_mismatch",
    CurrencyUnknown = "currency_unknown",
    Duplicate = "duplicate",
    DuplicateField = "duplicate_field",
    DuplicateParameter = "duplicate_parameter",
    EmailTaken = "email_taken",
    ForbiddenAddress = "forbidden_address",
    InvalidAmount = "invalid_amount",
    InvalidCard = "invalid_card",
    InvalidClientId = "invalid_client_id",
    InvalidCurrency = "invalid_currency",
    InvalidCycleDay = "invalid_cycle_day",
    InvalidDays = "invalid_days",
    InvalidDirection = "invalid_direction",
    InvalidEmail = "invalid_email",
    InvalidId = "invalid_id",
    InvalidKind = "invalid_kind",
    InvalidMetadata = "invalid_metadata",
    InvalidMethod = "invalid_method",
    InvalidName = "invalid_name",
    InvalidPageSize = "invalid_page_size",
    InvalidPassword = "invalid_password",
    InvalidPayment = "invalid_payment",
    InvalidPercent = "invalid_percent",
    InvalidQuery = "invalid_query",
    InvalidReason = "invalid_reason",
    InvalidRechargeSettings = "invalid_recharge_settings",
    InvalidRole = "invalid_role",
    InvalidScope = "invalid_scope",
    InvalidService = "invalid_service",
    InvalidSetting = "invalid_setting",
    InvalidTarget = "invalid_target",
    InvalidTemplate = "invalid_template",
    InvalidThresholds = "invalid_thresholds",
    InvalidTime = "invalid_time",
    InvalidTimeZone = "invalid_time_zone",
    InvalidType = "invalid_type",
    InvalidUrl = "invalid_url",
    InvoicePaid = "invoice_paid",
    InvoiceVoid = "invoice_void",
    MissingField = "missing_field",
    MissingParameter = "missing_parameter",
    NameTaken = "name_taken",
    NoBillingEmail = "no_billing_email",
    NotAllowed = "not_allowed",
    NothingToChange = "nothing_to_change",
    NothingToInvoice = "nothing_to_invoice",
    OutOfRange = "out_of_range",
    PartyNotAllowed = "party_not_allowed",
    PartyNotFound = "party_not_found",
    PartyRequired = "party_required",
    PercentNeedsPositiveLimit = "percent_needs_positive_limit",
    PrepaidCustomer = "prepaid_customer",
    ProfileNotFound = "profile_not_found",
    ReasonMustNotBeEmpty = "reason_must_not_be_empty",
    Required = "required",
    ResellerNotFound = "reseller_not_found",
    TemporaryIncreaseMustBePositive = "temporary_increase_must_be_positive",
    TextNotPrintable = "text_not_printable",
    TextTooLong = "text_too_long",
    TooMany = "too_many",
    UnknownField = "unknown_field",
    UnknownParameter = "unknown_parameter",
    UnknownPlaceholder = "unknown_placeholder",
    UnresolvableHost = "unresolvable_host",
    UserNotFound = "user_not_found",
    ValidUntilMustBeInFuture = "valid_until_must_be_in_future",
    AmountAboveDue = "amount_above_due",
    InvalidAllocation = "invalid_allocation",
    NoRatePlan = "no_rate_plan",
    NoRate = "no_rate",
    InvalidDeck = "invalid_deck",
    InvalidDestination = "invalid_destination",
    InvalidQuantity = "invalid_quantity",
    NotFound = "not_found",
    SessionEnded = "session_ended",
    StaleSequence = "stale_sequence",
    SessionBusy = "session_busy",
    InsufficientFunds = "insufficient_funds",
    NothingToCharge = "nothing_to_charge",
}

/// Every failure a workflow can answer with. Internal details go to the log, never to a
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppError {
    /// A field of the request breaks a rule.
    Invalid { field: String, code: Code, message: String },
    /// Several fields break rules: each is an `Invalid`, in the order of the form. Forms are
    /// checked whole, so one submit tells every wrong field at once.
    Fields(Vec<AppError>),
    /// The caller's role may not set this field.
    ForbiddenField { field: &'static str, message: String },
    /// The caller's role or scope may not take the action.
    Forbidden(String),
    /// The object does not exist, or is another tenant's.
    NotFound(&'static str),
    /// The ledger refused the command.
    Rejected(Rejection),
    /// The card was declined; nothing changed.
    PaymentDeclined(String),
    /// Stripe did not answer in time; the payment finishes in the background.
    PaymentPending(String),
    /// No Stripe endpoint is configured.
    CardsNotConfigured,
    /// The engine's queue is full; retry after a moment.
    Overloaded,
    /// The engine is stopping.
    Stopped,
    /// The database cannot be reached or cannot write right now; nothing was done.
    StorageUnavailable,
    /// Something broke inside; callers are told only that.
    Internal(String),
    /// A service Purse calls (Stripe, a mail server) failed or did not answer; nothing is
    /// known to have happened there.
    Upstream(String),
}

/// What a whole form or body breaks, gathered so that one answer names every wrong field:
/// `check` keeps the value of a check that passed and notes a field error; any other error
/// (a database that cannot be read) wins over field errors and is answered alone.
#[derive(Default, Debug)]
pub struct Problems {
    fields: Vec<AppError>,
    other: Option<AppError>,
}

impl Problems {
    pub fn check<T>(&mut self, result: Result<T, AppError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.note(e);
                None
            }
        }
    }

    /// Notes an error; a field already wrong keeps its first message.
    pub fn note(&mut self, e: AppError) {
        match e {
            AppError::Invalid { .. } | AppError::ForbiddenField { .. } => {
                if !self.fields.iter().any(|f| f.field() == e.field()) {
                    self.fields.push(e);
                }
            }
            AppError::Fields(all) => all.into_iter().for_each(|e| self.note(e)),
            other => {
                self.other.get_or_insert(other);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.other.is_none()
    }

    /// Nothing wrong, or the one error that says everything that was.
    pub fn finish(mut self) -> Result<(), AppError> {
        if let Some(e) = self.other {
            return Err(e);
        }
        match self.fields.len() {
            0 => Ok(()),
            1 => Err(self.fields.remove(0)),
            _ => Err(AppError::Fields(self.fields)),
        }
    }
}

/// A setting that cannot be used, found when a worker or a server starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl AppError {
    pub fn invalid(field: impl Into<String>, code: Code, message: impl Into<String>) -> AppError {
        AppError::Invalid { field: field.into(), code, message: message.into() }
    }

    /// Each wrong field on its own: one for `Invalid`, all of `Fields`, none for the rest.
    pub fn each_field(&self) -> Vec<&AppError> {
        match self {
            AppError::Fields(all) => all.iter().collect(),
            AppError::Invalid { .. } | AppError::ForbiddenField { .. } => vec![self],
            _ => Vec::new(),
        }
    }

    /// The stable code callers branch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { code, .. } => code.as_str(),
            AppError::Fields(all) => all.first().map_or("invalid", AppError::code),
            AppError::ForbiddenField { .. } => "forbidden_field",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Rejected(r) => r.code(),
            AppError::PaymentDeclined(_) => "card_declined",
            AppError::PaymentPending(_) => "payment_pending",
            AppError::CardsNotConfigured => "card_payments_not_configured",
            AppError::Overloaded => "overloaded",
            AppError::Stopped => "unavailable",
            AppError::StorageUnavailable => "storage_unavailable",
            AppError::Internal(_) => "internal",
            AppError::Upstream(_) => "upstream_unavailable",
        }
    }

    /// The whole text, an internal error's detail too: for logs, never for callers.
    pub fn detail(&self) -> String {
        match self {
            AppError::Internal(detail) => format!("internal: {detail}"),
            other => other.to_string(),
        }
    }

    /// The field the error is about, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Invalid { field, .. } => Some(field),
            AppError::Fields(all) => all.first().and_then(AppError::field),
            AppError::ForbiddenField { field, .. } => Some(field),
            AppError::Rejected(r) => r.field(),
            AppError::PaymentDeclined(_) => Some("card"),
            _ => None,
        }
    }
}

impl fmt::Display for AppError {
    /// The message a caller reads (an internal error's detail is not in it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Invalid { message, .. } | AppError::ForbiddenField { message, .. } => f.write_str(message),
            AppError::Fields(all) => match all.first() {
                Some(first) => write!(f, "{first}"),
                None => f.write_str("the request is invalid"),
            },
            AppError::Forbidden(why) => f.write_str(why),
            AppError::NotFound(what) => write!(f, "no such {what}"),
            AppError::Rejected(r) => write!(f, "{r}"),
            AppError::PaymentDeclined(m) => write!(f, "the card was declined: {m}; nothing was charged"),
            AppError::PaymentPending(m) => write!(
                f,
                "{m}; it completes in the background: send the same request with the same Idempotency-Key for its outcome"
            ),
            AppError::CardsNotConfigured => {
                f.write_str("card payments are not configured on this server (no Stripe endpoint)")
            }
            AppError::Overloaded => f.write_str("too many requests in flight; retry shortly"),
            AppError::Stopped => f.write_str("the service is shutting down"),
            AppError::StorageUnavailable => {
                f.write_str("the database cannot be reached or cannot write right now; nothing was done; retry shortly")
            }
            AppError::Internal(_) => f.write_str("an internal error occurred; it has been logged"),
            AppError::Upstream(why) => write!(f, "{why}; retry shortly"),
        }
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::Unavailable(_) => AppError::StorageUnavailable,
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> AppError {
        match e {
            EngineError::Overloaded => AppError::Overloaded,
            EngineError::BatchTooLarge { max } => {
                AppError::invalid("items", Code::BatchTooLarge, format!("a batch may hold at most {max} items"))
            }
            EngineError::Stopped => AppError::Stopped,
            EngineError::Store(e) => AppError::from(e),
        }
    }
}

impl From<Rejection> for AppError {
    fn from(r: Rejection) -> AppError {
        AppError::Rejected(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_words() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{text}");
        }
    }
}
