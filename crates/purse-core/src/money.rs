//! Currencies and exact amounts.
//!
//! An amount is an `i64` count of the currency's smallest unit at the currency's *scale*
//! (digits after the point). There is no float anywhere and no unchecked arithmetic: every
//! operation that can overflow returns `None`/`Err`, and the callers turn that into a rejection.

use std::fmt;

/// The largest scale a currency may have. 10^9 units per major unit still leaves
/// 9.2 × 10^9 major units of head-room in an `i64`.
pub const SCALE_MAX: u8 = 9;

/// An ISO-4217-like code: exactly three ASCII upper-case letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    /// Parses `"USD"`; anything but three upper-case ASCII letters is refused.
    pub fn parse(text: &str) -> Result<CurrencyCode, AmountError> {
        let bytes = text.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(AmountError::BadCurrencyCode);
        }
        Ok(CurrencyCode([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Construction guarantees ASCII.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A currency the ledger knows: its code and its scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    pub code: CurrencyCode,
    pub scale: u8,
}

impl Currency {
    /// A currency at the given scale; scales above [`SCALE_MAX`] are refused.
    pub fn new(code: CurrencyCode, scale: u8) -> Result<Currency, AmountError> {
        if scale > SCALE_MAX {
            return Err(AmountError::ScaleTooLarge);
        }
        Ok(Currency { code, scale })
    }

    /// The ISO 4217 exponent for common currencies; 2 when unknown.
    pub fn iso_scale(code: CurrencyCode) -> u8 {
        match code.as_str() {
            "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "XOF" | "XAF" | "UGX" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    /// Parses a decimal string at this currency's scale.
    pub fn parse(&self, text: &str) -> Result<Amount, AmountError> {
        parse_units(text, self.scale).map(Amount)
    }

    /// Formats an amount at this currency's scale (`"-12.50"`).
    pub fn format(&self, amount: Amount) -> String {
        format_units(amount.0, self.scale)
    }
}

/// An exact amount in units of some currency's scale. It does not carry its currency:
/// every amount lives next to the account (and so the currency) it belongs to, and the
/// ledger checks currencies where two accounts meet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(pub i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn units(self) -> i64 {
        self.0
    }
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
    pub fn checked_neg(self) -> Option<Amount> {
        self.0.checked_neg().map(Amount)
    }
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// Why a text could not become an amount or a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain decimal: digits, at most one point, an optional leading minus.
    NotADecimal,
    /// More digits after the point than the currency's scale.
    TooPrecise {
        scale: u8,
    },
    /// Does not fit in 64-bit units at the currency's scale.
    Overflow,
    BadCurrencyCode,
    ScaleTooLarge,
}

/// What [`AmountError::NotADecimal`] says, for an API's callers (the portal says it in words).
pub const NOT_A_DECIMAL: &str = "must be a decimal string such as \"12.50\" (no exponent, no float)";

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::NotADecimal => f.write_str(NOT_A_DECIMAL),
            AmountError::TooPrecise { scale } => {
                write!(f, "has more than {scale} digits after the point")
            }
            AmountError::Overflow => f.write_str("is too large"),
            AmountError::BadCurrencyCode => f.write_str("must be three upper-case letters"),
            AmountError::ScaleTooLarge => write!(f, "scale must be at most {SCALE_MAX}"),
        }
    }
}

/// Parses `"-12.5"` at scale 2 into `-1250`. Refuses exponents, `+`, spaces, empty parts
/// (`"12."`, `".5"`), and more fractional digits than `scale` (even if they are zeros:
/// precision the caller claims must be precision we keep).
pub fn parse_units(text: &str, scale: u8) -> Result<i64, AmountError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err(AmountError::NotADecimal);
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > usize::from(scale) {
        return Err(AmountError::TooPrecise { scale });
    }
    let mut units: i64 = 0;
    let padded = fraction.bytes().chain(std::iter::repeat(b'0')).take(usize::from(scale));
    for digit in whole.bytes().chain(padded) {
        units =
            units.checked_mul(10).and_then(|u| u.checked_add(i64::from(digit - b'0'))).ok_or(AmountError::Overflow)?;
    }
    Ok(if negative { -units } else { units })
}

/// Formats units at a scale: `format_units(-1250, 2) == "-12.50"`.
pub fn format_units(units: i64, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        let cases = [("12.50", 2, 1250), ("-0.0004", 4, -4), ("7", 0, 7), ("0.1", 6, 100_000)];
        for (text, scale, units) in cases {
            assert_eq!(parse_units(text, scale), Ok(units), "{text}");
        }
        assert_eq!(format_units(1250, 2), "12.50");
        assert_eq!(format_units(-4, 4), "-0.0004");
        assert_eq!(format_units(7, 0), "7");
        assert_eq!(format_units(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn refuses_what_is_not_an_exact_decimal() {
        for bad in ["", "-", "1e3", "+1", "1.", ".5", " 1", "1,5", "NaN", "1.2.3", "0x10"] {
            assert_eq!(parse_units(bad, 2), Err(AmountError::NotADecimal), "{bad:?}");
        }
        assert_eq!(parse_units("1.005", 2), Err(AmountError::TooPrecise { scale: 2 }));
        assert_eq!(parse_units("1.50", 1), Err(AmountError::TooPrecise { scale: 1 }));
        assert_eq!(parse_units("92233720368547758.08", 2), Err(AmountError::Overflow));
        assert_eq!(parse_units("92233720368547758.07", 2), Ok(i64::MAX));
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!(CurrencyCode::parse("USD").is_ok());
        for bad in ["usd", "US", "USDT", "U$D"] {
            assert_eq!(CurrencyCode::parse(bad), Err(AmountError::BadCurrencyCode));
        }
        assert_eq!(Currency::iso_scale(CurrencyCode::parse("JPY").unwrap()), 0);
    }
}
