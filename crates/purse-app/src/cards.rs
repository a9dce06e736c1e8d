//! What the API and the portal ask of card payments, which `purse` provides with Stripe:
//! saving a customer's card and Pay Now. A trait, because only `purse` talks to Stripe.

use purse_core::recharge::SavedCard;
use purse_core::{Amount, Party};
use purse_store::RechargeRecord;

/// Card details typed by a customer admin, passed straight on to Stripe and never kept.
pub struct CardDetails {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: String,
}

/// Why a Pay Now or a saved card did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayError {
    /// Card payments are not configured.
    NotConfigured,
    /// A field of the request is wrong.
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The card was declined: nothing changed.
    Declined(String),
    /// Stripe did not answer; the payment is finished in the background.
    Pending(String),
    Internal(String),
}

pub trait Cards: Send + Sync {
    /// Whether a Stripe endpoint is configured.
    fn configured(&self) -> bool;
    /// Saves a card at Stripe for the customer and in its recharge settings.
    fn save_card(&self, party: &Party, email: Option<&str>, card: &CardDetails) -> Result<SavedCard, PayError>;
    /// Charges the saved card at once; `request_key` makes a repeat return the first payment.
    fn pay_now(&self, party: &Party, amount: Amount, request_key: Option<String>) -> Result<RechargeRecord, PayError>;
    /// Refunds a reserved card refund, which the caller holds the lease of, through Stripe,
    /// then books it; crash-safe.
    fn refund_claimed(&self, refund: &purse_store::RefundRecord) -> Result<purse_store::RefundRecord, PayError>;
}
