//! Reading what callers send, naming the field and the rule on failure: amounts at a
//! currency's scale, currency codes, times, metadata, reasons, page sizes, e-mail addresses,
//! names, scopes and passwords. Both the API and the portal parse with these.

use purse_core::time;
use purse_core::{Amount, Currency, CurrencyCode, Scope, Timestamp};

use crate::secrets::{PASSWORD_LEN_MAX, PASSWORD_LEN_MIN};
use crate::{AppError, Code};

/// Default and largest page of every list.
pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 500;

pub fn currency_code(field: &str, text: &str) -> Result<CurrencyCode, AppError> {
    CurrencyCode::parse(text).map_err(|e| AppError::invalid(field, Code::InvalidCurrency, format!("{field} {e}")))
}

/// Parses `text` as an amount of `currency`, naming `field` on failure.
pub fn amount(field: &str, text: &str, currency: Currency) -> Result<Amount, AppError> {
    currency.parse(text).map_err(|e| AppError::invalid(field, Code::InvalidAmount, format!("{field} {e}")))
}

pub fn positive(field: &str, value: Amount) -> Result<Amount, AppError> {
    if value.is_positive() {
        Ok(value)
    } else {
        Err(AppError::invalid(field, Code::AmountMustBePositive, format!("{field} must be positive")))
    }
}

/// The first instant after the years an API time may name (2101-01-01T00:00:00Z).
const TIME_END: Timestamp = Timestamp(4_133_980_800_000_000);

/// An RFC 3339 time from 1970 to 2100 (a year 0000 or 9999 is a typo, not a time).
pub fn timestamp(field: &str, text: &str) -> Result<Timestamp, AppError> {
    let t = time::parse(text).ok_or_else(|| {
        AppError::invalid(
            field,
            Code::InvalidTime,
            format!("{field} must be an RFC 3339 date-time such as 2026-11-22T10:15:30Z"),
        )
    })?;
    if t < Timestamp(0) || t >= TIME_END {
        return Err(AppError::invalid(field, Code::InvalidTime, format!("{field} must be a time from 1970 to 2100")));
    }
    Ok(t)
}

pub fn object_metadata(value: Option<serde_json::Value>) -> Result<Option<String>, AppError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(AppError::invalid("metadata", Code::InvalidMetadata, "metadata must be a JSON object")),
    }
}

/// An optional reason: trimmed, printable, at most `REASON_LEN_MAX` bytes (`None` when blank).
pub fn reason_text(text: Option<&str>) -> Result<Option<String>, AppError> {
    let max = purse_core::command::REASON_LEN_MAX;
    let Some(reason) = text.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(None) };
    if reason.len() > max {
        return Err(AppError::invalid("reason", Code::TextTooLong, format!("reason must be at most {max} bytes")));
    }
    if !purse_core::text::is_single_line(reason) {
        return Err(AppError::invalid("reason", Code::TextNotPrintable, "reason must not contain control characters"));
    }
    Ok(Some(reason.to_owned()))
}

/// `limit` of a list: 1 to [`PAGE_MAX`], [`PAGE_DEFAULT`] when absent.
pub fn page_limit(limit: Option<u32>) -> Result<u32, AppError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(_) => Err(AppError::invalid("limit", Code::InvalidPageSize, format!("limit must be 1 to {PAGE_MAX}"))),
    }
}

pub fn clamp(v: i128) -> Amount {
    Amount(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Longest name of a key or a user.
pub const NAME_LEN_MAX: usize = 100;
const EMAIL_LEN_MAX: usize = 254;

/// Whether `email` has the shape of a plain address, `local@domain.tld` (delivery proves
/// the rest): the local part of the characters RFC 5322 allows unquoted, the domain of
/// letters, digits, hyphens and dots; no display name, brackets or comments.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    let local_ok = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let domain_ok = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    !local.is_empty()
        && local.chars().all(local_ok)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && domain.contains('.')
        && domain.chars().all(domain_ok)
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && email.len() <= EMAIL_LEN_MAX
}

/// The rule a password breaks, if any.
pub fn password_rule(password: &str) -> Option<String> {
    let n = password.chars().count();
    (!(PASSWORD_LEN_MIN..=PASSWORD_LEN_MAX).contains(&n))
        .then(|| format!("A password is {PASSWORD_LEN_MIN} to {PASSWORD_LEN_MAX} characters."))
}

/// A name of a key or a user: trimmed, 1 to 100 characters, none of them control characters.
pub fn name(field: &str, text: &str) -> Result<String, AppError> {
    match line_rule(text, false, NAME_LEN_MAX, Count::Chars) {
        Some(rule) => Err(AppError::invalid(field, Code::InvalidName, format!("{field} {rule}"))),
        None => Ok(text.trim().to_owned()),
    }
}

/// How a length limit counts: characters for what people name and describe, bytes where the
/// ledger's own limit is in bytes (a reason, a service).
#[derive(Clone, Copy, Debug)]
pub enum Count {
    Chars,
    Bytes,
}

/// The rule one line of text breaks once trimmed, in words that follow its field's name
/// ("name is empty: …"), or `None`: blank (unless `blank_ok`), longer than `max`, or holding a
/// control character. Each rule is said on its own, so people read which one to fix.
pub fn line_rule(text: &str, blank_ok: bool, max: usize, count: Count) -> Option<String> {
    let text = text.trim();
    let (length, unit) = match count {
        Count::Chars => (text.chars().count(), "characters"),
        Count::Bytes => (text.len(), "bytes"),
    };
    if text.is_empty() && !blank_ok {
        Some(format!("is empty: write 1 to {max} {unit}"))
    } else if length > max {
        Some(format!("is {length} {unit} long: at most {max}"))
    } else if !purse_core::text::is_single_line(text) {
        Some(
            "has a control character (a line break, a tab, an escape or a text-direction override): \
             write one line of visible text"
                .to_owned(),
        )
    } else {
        None
    }
}

/// What is wrong with a line of a CSV file, in people's words (without the line: each caller
/// says which).
pub fn csv_line_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("it has {len} fields where the header line has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "it is not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

pub fn scope(field: &str, text: &str) -> Result<Scope, AppError> {
    match text {
        "read_write" => Ok(Scope::ReadWrite),
        "read" => Ok(Scope::Read),
        _ => Err(AppError::invalid(field, Code::InvalidScope, format!("{field} must be read or read_write"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_text_is_told_which_rule_it_breaks() {
        assert_eq!(line_rule("  Acme  ", false, 10, Count::Chars), None);
        assert_eq!(line_rule("", true, 10, Count::Chars), None);
        assert_eq!(line_rule("   ", false, 10, Count::Chars).unwrap(), "is empty: write 1 to 10 characters");
        assert_eq!(line_rule("ليلى", false, 4, Count::Chars), None);
        assert_eq!(line_rule("ليلى", false, 4, Count::Bytes).unwrap(), "is 8 bytes long: at most 4");
        assert_eq!(
            line_rule(&"x".repeat(201), true, 200, Count::Chars).unwrap(),
            "is 201 characters long: at most 200"
        );
        for control in ["U\u{0}S", "a\nb", "\u{1b}[31mred", "\u{202e}SU"] {
            let rule = line_rule(control, false, 200, Count::Chars).unwrap();
            assert!(rule.starts_with("has a control character"), "{control:?}: {rule}");
        }
        let name = name("name", "a\tb").unwrap_err().to_string();
        assert!(name.contains("name has a control character"), "{name}");
    }

    #[test]
    fn a_client_id_is_told_which_rule_it_breaks() {
        use purse_core::Role;
        let said = |text: &str| crate::tenancy::client_id(Role::Operator, "client_id", text).unwrap_err().to_string();
        assert!(said("").contains("client_id is empty: write 1 to 100 bytes"));
        assert!(said(&"x".repeat(101)).contains("client_id is 101 bytes long: at most 100"));
        assert!(said("a\u{202e}b").contains("client_id has a control character"));
        assert!(said("a\u{0}b").contains("client_id has a control character"));
        // What was accepted before still is (a client id is not trimmed).
        assert!(crate::tenancy::client_id(Role::Operator, "client_id", " spaced ").is_ok());
        assert!(crate::tenancy::client_id(Role::Operator, "client_id", &"x".repeat(100)).is_ok());
    }
}
