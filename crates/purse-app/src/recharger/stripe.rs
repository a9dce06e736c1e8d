//! The part of Stripe's API Purse uses: customers, card payment methods, and PaymentIntents
//! created with an idempotency key, confirmed, and read back. Form-encoded requests with the
//! secret key as Bearer, to a configurable base URL (Stripe, or localstripe in tests).

use serde_json::Value;

use crate::cards::CardDetails;

use crate::outbound::{self, Target};
use crate::{AppError, AppResult};

/// Stripe's answer to a payment, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeError {
    /// The card was declined (HTTP 402): a final answer.
    Declined(String),
    /// Stripe refused the request (another 4xx): a final answer.
    Refused(String),
    /// No answer, or a 5xx: the outcome is unknown and must be read back later.
    Unknown(String),
}

impl From<StripeError> for AppError {
    fn from(e: StripeError) -> AppError {
        match e {
            StripeError::Declined(m) => AppError::PaymentDeclined(m),
            StripeError::Refused(m) => AppError::Upstream(format!("Stripe refused the request: {m}")),
            StripeError::Unknown(m) => AppError::Upstream(m),
        }
    }
}

impl StripeError {
    pub fn message(&self) -> &str {
        match self {
            StripeError::Declined(m) | StripeError::Refused(m) | StripeError::Unknown(m) => m,
        }
    }
}

/// A PaymentIntent as far as Purse cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: String,
    pub status: String,
    /// The last payment error's message, if any.
    pub error: Option<String>,
}

/// A saved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: String,
    pub brand: String,
    pub last4: String,
}

#[derive(Clone)]
pub struct Stripe {
    base: String,
    key: String,
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, String)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn intent_of(v: &Value) -> Result<Intent, StripeError> {
    let id = v["id"].as_str().ok_or_else(|| StripeError::Unknown(format!("Stripe answered without an id: {v}")))?;
    Ok(Intent {
        id: id.to_owned(),
        status: v["status"].as_str().unwrap_or("").to_owned(),
        error: v["last_payment_error"]["message"].as_str().map(str::to_owned),
    })
}

impl Stripe {
    /// `base` is e.g. `https://api.stripe.com` (no `/v1`).
    pub fn new(base: &str, key: &str) -> Stripe {
        Stripe { base: base.trim_end_matches('/').to_owned(), key: key.to_owned() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        fields: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let url = format!("{}{path}", self.base);
        let body = form(fields);
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Purse"),
        ];
        if let Some(k) = idempotency_key {
            headers.push(("Idempotency-Key", k));
        }
        let answer =
            outbound::send(method, &Target { url: &url, allow_private: true }, &headers, body.as_bytes(), false)
                .map_err(|e| StripeError::Unknown(format!("Stripe could not be reached: {e}")))?;
        let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let message = || {
            value["error"]["message"]
                .as_str()
                .map_or_else(|| format!("Stripe answered {}", answer.status), str::to_owned)
        };
        match answer.status {
            200..=299 => Ok(value),
            402 => Err(StripeError::Declined(message())),
            400..=499 => Err(StripeError::Refused(message())),
            _ => Err(StripeError::Unknown(message())),
        }
    }

    pub fn create_customer(
        &self,
        name: &str,
        email: Option<&str>,
        party: u64,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        let mut fields = vec![("name", name.to_owned()), ("metadata[purse_party]", party.to_string())];
        if let Some(e) = email {
            fields.push(("email", e.to_owned()));
        }
        let v = self.call("POST", "/v1/customers", &fields, Some(idempotency_key))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| StripeError::Unknown("Stripe made a customer without an id".into()))
    }

    /// Creates a card payment method and attaches it to `customer`.
    pub fn save_card(&self, customer: &str, card: &CardDetails) -> Result<Card, StripeError> {
        let fields = [
            ("type", "card".to_owned()),
            ("card[number]", card.number.clone()),
            ("card[exp_month]", card.exp_month.to_string()),
            ("card[exp_year]", card.exp_year.to_string()),
            ("card[cvc]", card.cvc.clone()),
        ];
        let v = self.call("POST", "/v1/payment_methods", &fields, None)?;
        let id =
            v["id"].as_str().ok_or_else(|| StripeError::Unknown("Stripe made a card without an id".into()))?.to_owned();
        self.call("POST", &format!("/v1/payment_methods/{id}/attach"), &[("customer", customer.to_owned())], None)?;
        Ok(Card {
            id,
            brand: v["card"]["brand"].as_str().unwrap_or("card").to_owned(),
            last4: v["card"]["last4"].as_str().unwrap_or("").to_owned(),
        })
    }

    /// Creates (unconfirmed) the PaymentIntent of recharge `recharge`. The same idempotency
    /// key after a crash gives back the same intent; an intent that is never confirmed
    /// never charges.
    pub fn create_intent(
        &self,
        amount: i64,
        currency: &str,
        customer: &str,
        payment_method: &str,
        recharge: u64,
        idempotency_key: &str,
    ) -> Result<Intent, StripeError> {
        let fields = [
            ("amount", amount.to_string()),
            ("currency", currency.to_ascii_lowercase()),
            ("customer", customer.to_owned()),
            ("payment_method", payment_method.to_owned()),
            ("metadata[purse_recharge]", recharge.to_string()),
        ];
        intent_of(&self.call("POST", "/v1/payment_intents", &fields, Some(idempotency_key))?)
    }

    /// Confirms the intent; the idempotency key makes a repeat answer the first outcome.
    pub fn confirm(&self, intent: &str, idempotency_key: &str) -> Result<Intent, StripeError> {
        intent_of(&self.call("POST", &format!("/v1/payment_intents/{intent}/confirm"), &[], Some(idempotency_key))?)
    }

    pub fn intent(&self, intent: &str) -> Result<Intent, StripeError> {
        intent_of(&self.call("GET", &format!("/v1/payment_intents/{intent}"), &[], None)?)
    }

    /// The refund made for Purse's refund `refund` of the intent's payment, if there is one
    /// (found by its metadata, so a refund made before a crash is never made again, whether
    /// or not Stripe kept the idempotency key).
    pub fn refund_made(&self, intent: &str, refund: u64) -> Result<Option<Intent>, StripeError> {
        let path = format!("/v1/refunds?payment_intent={}&limit=100", encode(intent));
        let list = self.call("GET", &path, &[], None)?;
        let mine = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["metadata"]["purse_refund"].as_str() == Some(refund.to_string().as_str()));
        mine.map(intent_of).transpose()
    }

    /// Refunds `amount` (Stripe's smallest units) of the intent's payment, tagged with Purse's
    /// refund id.
    pub fn refund(&self, intent: &str, amount: i64, refund: u64, idempotency_key: &str) -> Result<Intent, StripeError> {
        let fields = [
            ("payment_intent", intent.to_owned()),
            ("amount", amount.to_string()),
            ("metadata[purse_refund]", refund.to_string()),
        ];
        intent_of(&self.call("POST", "/v1/refunds", &fields, Some(idempotency_key))?)
    }
}

/// Digits of Stripe's smallest unit in `currency` (ISO 4217, with Stripe's zero-decimal list).
pub fn minor_digits(currency: &str) -> u8 {
    const ZERO: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];
    if ZERO.contains(&currency) {
        0
    } else if THREE.contains(&currency) {
        3
    } else {
        2
    }
}

/// `units` at Purse's `scale` in Stripe's smallest unit, exactly, or why not.
pub fn stripe_amount(units: i64, scale: u8, currency: &str) -> AppResult<i64> {
    let digits = minor_digits(currency);
    if scale >= digits {
        let factor = 10_i64.pow(u32::from(scale - digits));
        if units % factor != 0 {
            return Err(AppError::invalid(
                "amount",
                crate::Code::InvalidAmount,
                format!("card payments in {currency} have {digits} decimals; this amount has more"),
            ));
        }
        Ok(units / factor)
    } else {
        units
            .checked_mul(10_i64.pow(u32::from(digits - scale)))
            .ok_or_else(|| AppError::invalid("amount", crate::Code::InvalidAmount, "the amount is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_exactly_or_not_at_all() {
        assert_eq!(stripe_amount(5000, 2, "USD"), Ok(5000));
        assert_eq!(stripe_amount(50_000, 3, "USD"), Ok(5000));
        assert!(stripe_amount(50_001, 3, "USD").is_err());
        assert_eq!(stripe_amount(50, 0, "USD"), Ok(5000));
        assert_eq!(stripe_amount(500, 2, "JPY"), Ok(5));
        assert_eq!(stripe_amount(7, 3, "KWD"), Ok(7));
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(form(&[("metadata[a]", "x y&z".into())]), "metadata%5Ba%5D=x%20y%26z");
    }
}
