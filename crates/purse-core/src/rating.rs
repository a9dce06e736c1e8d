//! Rating: what usage costs. A rate plan's rates match a service and the longest prefix of a
//! destination number, each in force from an instant; a rate turns a quantity (seconds,
//! messages, bytes) into an exact amount at the currency's scale.
//!
//! Prices are decimals with up to [`PRICE_DECIMALS`] digits (finer than any currency's
//! scale), kept as integers. A charge is computed from integers and rounded once, up, to the
//! currency's scale: `max(minimum, ceil(connection fee + price × billed units / unit))`.

use std::collections::HashMap;
use std::fmt;

use crate::model::Timestamp;
use crate::money::Amount;

/// Digits after the point a price may have.
pub const PRICE_DECIMALS: u8 = 9;
const PRICE_ONE: i128 = 1_000_000_000;
/// The longest destination (E.164 allows 15 digits).
pub const DESTINATION_DIGITS_MAX: usize = 15;

/// A price in billionths of the currency's major unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub i64);

impl Price {
    pub const ZERO: Price = Price(0);
    /// The largest price: 9,223,372,036.854775807 in the currency's major unit.
    pub const MAX: Price = Price(i64::MAX);

    /// Parses a non-negative decimal with at most [`PRICE_DECIMALS`] digits after the point.
    pub fn parse(text: &str) -> Result<Price, RateError> {
        let t = text.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
            return Err(RateError::NotAPrice(text.to_owned()));
        }
        if frac.len() > usize::from(PRICE_DECIMALS) {
            return Err(RateError::TooPrecise(text.to_owned()));
        }
        let too_large = || RateError::TooLarge(text.to_owned());
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        let mut f: i64 =
            if frac.is_empty() { 0 } else { frac.parse().map_err(|_| RateError::NotAPrice(text.into()))? };
        for _ in frac.len()..usize::from(PRICE_DECIMALS) {
            f *= 10;
        }
        whole.checked_mul(PRICE_ONE as i64).and_then(|w| w.checked_add(f)).map(Price).ok_or_else(too_large)
    }

    /// The price as text, without trailing zeros past the currency's `scale`.
    pub fn format(self, scale: u8) -> String {
        let whole = self.0 / PRICE_ONE as i64;
        let frac = format!("{:09}", self.0 % PRICE_ONE as i64);
        let keep = frac.trim_end_matches('0').len().max(usize::from(scale));
        if keep == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{}", &frac[..keep])
        }
    }

    /// An amount at `scale` as a price.
    pub fn from_amount(amount: Amount, scale: u8) -> Price {
        Price(amount.0.saturating_mul(10_i64.pow(u32::from(PRICE_DECIMALS - scale.min(PRICE_DECIMALS)))))
    }
}

/// Why a rate or a deck line is refused. Each names the rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateError {
    NotAPrice(String),
    TooPrecise(String),
    /// Above the largest price a rate may hold, [`Price::MAX`].
    TooLarge(String),
    BadPrefix(String),
    BadIncrement(String),
    BadDestination(String),
    BadUnit(u32),
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::NotAPrice(t) => write!(f, "{t:?} is not a price (digits with an optional decimal point)"),
            RateError::TooPrecise(t) => write!(f, "{t:?} has more than {PRICE_DECIMALS} digits after the point"),
            RateError::TooLarge(t) => write!(f, "{t:?} is more than the largest price, {}", Price::MAX.format(0)),
            RateError::BadPrefix(t) => {
                write!(f, "{t:?} is not a prefix (1 to {DESTINATION_DIGITS_MAX} digits, or * for any destination)")
            }
            RateError::BadIncrement(t) => {
                write!(f, "{t:?} is not a pair of billing increments in units (e.g. 60/60, 30/6 or 1/1)")
            }
            RateError::BadDestination(t) => {
                write!(f, "{t:?} is not a destination number (1 to {DESTINATION_DIGITS_MAX} digits, an optional +)")
            }
            RateError::BadUnit(u) => write!(f, "{u} is not a unit size (a whole number from 1)"),
        }
    }
}

/// The prefix a rate matches: digits of a destination, or every destination (`*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(text: &str) -> Result<Prefix, RateError> {
        let t = text.trim();
        if t == "*" || (!t.is_empty() && t.len() <= DESTINATION_DIGITS_MAX && t.bytes().all(|b| b.is_ascii_digit())) {
            Ok(Prefix(t.to_owned()))
        } else {
            Err(RateError::BadPrefix(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn key(&self) -> u64 {
        if self.0 == "*" {
            0
        } else {
            key_of(self.0.as_bytes())
        }
    }
}

/// A prefix as a number: its digits, and its length in the low four bits (so `4` and `04`
/// differ). `*` is 0.
fn key_of(digits: &[u8]) -> u64 {
    let mut v: u64 = 0;
    for d in digits {
        v = v * 10 + u64::from(d - b'0');
    }
    (v << 4) | digits.len() as u64
}

/// Parses a destination number: up to 15 digits with an optional leading `+`.
pub fn destination(text: &str) -> Result<String, RateError> {
    let t = text.trim().strip_prefix('+').unwrap_or(text.trim());
    if t.is_empty() || t.len() > DESTINATION_DIGITS_MAX || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RateError::BadDestination(text.to_owned()));
    }
    Ok(t.to_owned())
}

/// Billing increments: the first one, then each next (in the service's base units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Increments {
    pub first: u32,
    pub next: u32,
}

impl Increments {
    /// `60/60`, `30/6`, `1/1`; one number is both.
    pub fn parse(text: &str) -> Result<Increments, RateError> {
        let bad = || RateError::BadIncrement(text.to_owned());
        let t = text.trim();
        let (a, b) = t.split_once('/').unwrap_or((t, t));
        let first: u32 = a.trim().parse().map_err(|_| bad())?;
        let next: u32 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || next == 0 || first > 86_400 * 31 || next > 86_400 * 31 {
            return Err(bad());
        }
        Ok(Increments { first, next })
    }

    /// The units billed for `quantity` used: none for none; else the first increment, then
    /// whole next increments.
    pub fn billed(self, quantity: u64) -> u64 {
        let (first, next) = (u64::from(self.first), u64::from(self.next));
        if quantity == 0 {
            0
        } else if quantity <= first {
            first
        } else {
            first + (quantity - first).div_ceil(next) * next
        }
    }
}

impl fmt::Display for Increments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first, self.next)
    }
}

/// One rate of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    pub service: String,
    pub prefix: Prefix,
    pub description: String,
    /// Per `unit` base units (e.g. per 60 seconds, per message, per 1,000,000 bytes).
    pub price: Price,
    pub connection_fee: Price,
    pub minimum: Price,
    pub increments: Increments,
    /// Base units in one priced unit.
    pub unit: u32,
    pub effective_from: Timestamp,
}

/// The base units one priced unit has for a service: a minute of `voice`, a megabyte
/// (10^6 bytes) of `data`, one of anything else.
pub fn default_unit(service: &str) -> u32 {
    match service {
        "voice" => 60,
        "data" => 1_000_000,
        _ => 1,
    }
}

/// What a quantity costs under a rate, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rated {
    pub billed: u64,
    pub amount: Amount,
}

impl Rate {
    /// What `quantity` base units cost at the currency's `scale`: exact integers, rounded
    /// once, up. No usage costs nothing.
    pub fn cost(&self, quantity: u64, scale: u8) -> Rated {
        let billed = self.increments.billed(quantity);
        if billed == 0 {
            return Rated { billed, amount: Amount::ZERO };
        }
        let unit = i128::from(self.unit.max(1));
        let per_minor = 10_i128.pow(u32::from(PRICE_DECIMALS - scale.min(PRICE_DECIMALS)));
        let numerator = i128::from(self.connection_fee.0) * unit + i128::from(self.price.0) * i128::from(billed);
        let denominator = unit * per_minor;
        let usage = ceil_div(numerator, denominator);
        let minimum = ceil_div(i128::from(self.minimum.0), per_minor);
        let amount = usage.max(minimum).min(i128::from(i64::MAX)) as i64;
        Rated { billed, amount: Amount(amount) }
    }

    /// The most base units, up to the first billing boundary at or past `used + wanted`, that
    /// a session which has used `used` can be granted when `available` more money may be
    /// spent on it: the largest billing boundary whose cost above `cost(used)` fits. `None` when not even the next boundary
    /// fits. Returns (units granted beyond `used`, the money they need beyond `cost(used)`).
    pub fn grant(&self, used: u64, wanted: u64, available: Amount, scale: u8) -> Option<(u64, Amount)> {
        let paid = self.cost(used, scale).amount.0;
        let fits = |b: u64| self.cost(b, scale).amount.0 - paid <= available.0;
        let (first, next) = (u64::from(self.increments.first), u64::from(self.increments.next));
        // Billing boundaries are first, first + next, first + 2·next, …; the k-th is above `used`.
        let boundary = |k: u64| first + k * next;
        let limit = used.saturating_add(wanted);
        let k0 = if used < first { 0 } else { (used - first) / next + 1 };
        // The slice ends on the first boundary at or past `used + wanted`.
        let k_max = if limit <= first { 0 } else { (limit - first).div_ceil(next) };
        if k0 > k_max || !fits(boundary(k0)) {
            return None;
        }
        let (mut lo, mut hi) = (k0, k_max);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(boundary(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let b = boundary(lo);
        Some((b - used, Amount(self.cost(b, scale).amount.0 - paid)))
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    debug_assert!(n >= 0 && d > 0);
    (n + d - 1) / d
}

/// A plan's rates, ready for lookups: per service, each prefix's versions by effective time.
#[derive(Clone, Debug, Default)]
pub struct Deck {
    services: HashMap<String, Service>,
}

#[derive(Clone, Debug, Default)]
struct Service {
    rates: HashMap<u64, Vec<Rate>>,
    longest: usize,
}

impl Deck {
    pub fn new(rates: impl IntoIterator<Item = Rate>) -> Deck {
        let mut deck = Deck::default();
        for rate in rates {
            let service = deck.services.entry(rate.service.clone()).or_default();
            service.longest = service.longest.max(if rate.prefix.0 == "*" { 0 } else { rate.prefix.0.len() });
            service.rates.entry(rate.prefix.key()).or_default().push(rate);
        }
        for service in deck.services.values_mut() {
            for versions in service.rates.values_mut() {
                versions.sort_by_key(|r| r.effective_from);
            }
        }
        deck
    }

    /// How many rates (versions included) the deck holds.
    pub fn len(&self) -> usize {
        self.services.values().map(|s| s.rates.values().map(Vec::len).sum::<usize>()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rate in force at `at` for `service` whose prefix is the longest one matching
    /// `destination` (digits only), `*` failing that.
    pub fn lookup(&self, service: &str, destination: Option<&str>, at: Timestamp) -> Option<&Rate> {
        let s = self.services.get(service)?;
        let in_force = |key: u64| {
            let versions = s.rates.get(&key)?;
            let i = versions.partition_point(|r| r.effective_from <= at);
            i.checked_sub(1).map(|i| &versions[i])
        };
        if let Some(d) = destination {
            let d = d.as_bytes();
            for len in (1..=s.longest.min(d.len())).rev() {
                if let Some(r) = in_force(key_of(&d[..len])) {
                    return Some(r);
                }
            }
        }
        in_force(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(prefix: &str, price: &str, inc: &str, from: i64) -> Rate {
        Rate {
            service: "voice".into(),
            prefix: Prefix::parse(prefix).unwrap(),
            description: String::new(),
            price: Price::parse(price).unwrap(),
            connection_fee: Price::ZERO,
            minimum: Price::ZERO,
            increments: Increments::parse(inc).unwrap(),
            unit: 60,
            effective_from: Timestamp(from),
        }
    }

    #[test]
    fn prices_parse_exactly_and_refuse_what_is_not_one() {
        assert_eq!(Price::parse("0.1").unwrap(), Price(100_000_000));
        assert_eq!(Price::parse("12.000000001").unwrap(), Price(12_000_000_001));
        assert_eq!(Price::parse("3").unwrap().format(2), "3.00");
        assert_eq!(Price::parse("0.0125").unwrap().format(2), "0.0125");
        for bad in ["", "-1", "1.", ".5", "1e3", "0.0000000001", "1,5", "NaN"] {
            assert!(Price::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_price_above_the_largest_says_so() {
        for big in ["9223372037", "99999999999999999999999", "999999999999.999999999", "9223372036.854775808"] {
            assert_eq!(Price::parse(big), Err(RateError::TooLarge(big.to_owned())), "{big}");
        }
        assert_eq!(Price::parse("9223372036.854775807"), Ok(Price::MAX));
        assert_eq!(
            RateError::TooLarge("1e99".into()).to_string(),
            "\"1e99\" is more than the largest price, 9223372036.854775807"
        );
    }

    #[test]
    fn increments_bill_the_first_then_each_next() {
        let i = Increments::parse("30/6").unwrap();
        assert_eq!([0, 1, 30, 31, 36, 37].map(|q| i.billed(q)), [0, 30, 30, 36, 36, 42]);
        let i = Increments::parse("60").unwrap();
        assert_eq!([59, 60, 61].map(|q| i.billed(q)), [60, 60, 120]);
        assert!(Increments::parse("0/1").is_err() && Increments::parse("a/b").is_err());
    }

    #[test]
    fn a_call_is_rated_with_fee_and_minimum_and_rounded_once_up() {
        let mut r = rate("44", "0.10", "60/60", 0);
        assert_eq!(r.cost(61, 2).amount, Amount(20));
        assert_eq!(r.cost(0, 2).amount, Amount(0));
        r.increments = Increments::parse("1/1").unwrap();
        // 0.10 per minute for 7 s = 0.011666… → 0.02 at scale 2, 0.0117 at scale 4.
        assert_eq!(r.cost(7, 2).amount, Amount(2));
        assert_eq!(r.cost(7, 4).amount, Amount(117));
        r.connection_fee = Price::parse("0.005").unwrap();
        assert_eq!(r.cost(7, 4).amount, Amount(167));
        r.minimum = Price::parse("0.05").unwrap();
        assert_eq!(r.cost(7, 4).amount, Amount(500));
    }

    #[test]
    fn the_longest_prefix_in_force_wins() {
        let deck = Deck::new([
            rate("*", "1", "1/1", 0),
            rate("44", "0.10", "1/1", 0),
            rate("447", "0.20", "1/1", 0),
            rate("447", "0.30", "1/1", 1_000),
            rate("4477", "0.40", "1/1", 2_000),
        ]);
        let price = |d: &str, at| deck.lookup("voice", Some(d), Timestamp(at)).unwrap().price.format(2);
        assert_eq!(price("4420", 5), "0.10");
        assert_eq!(price("4479", 5), "0.20");
        assert_eq!(price("4479", 1_000), "0.30");
        assert_eq!(price("4477123", 1_999), "0.30");
        assert_eq!(price("4477123", 2_000), "0.40");
        assert_eq!(price("1", 0), "1.00");
        assert!(deck.lookup("sms", Some("44"), Timestamp(0)).is_none());
        assert_eq!(deck.len(), 5);
    }

    #[test]
    fn a_grant_is_the_largest_boundary_the_money_pays_for() {
        let r = rate("44", "0.10", "60/60", 0);
        // 0.35 pays for three minutes.
        assert_eq!(r.grant(0, 600, Amount(35), 2), Some((180, Amount(30))));
        assert_eq!(r.grant(0, 120, Amount(35), 2), Some((120, Amount(20))));
        assert_eq!(r.grant(0, 600, Amount(9), 2), None);
        // 45 s used (a minute paid): the rest of that minute is free, then one more.
        assert_eq!(r.grant(45, 600, Amount(10), 2), Some((75, Amount(10))));
        assert_eq!(r.grant(45, 600, Amount(0), 2), Some((15, Amount(0))));
        assert_eq!(r.grant(60, 600, Amount(0), 2), None);
    }

    /// The reference model: rating by counting, increment by increment, in rationals.
    #[test]
    fn rating_agrees_with_a_model_that_counts_on_random_rates() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..20_000 {
            let scale = next(7) as u8;
            let r = Rate {
                price: Price(next(5_000_000_000) as i64),
                connection_fee: Price(next(3) as i64 * next(100_000_000) as i64),
                minimum: Price(next(2) as i64 * next(200_000_000) as i64),
                increments: Increments { first: 1 + next(90) as u32, next: 1 + next(60) as u32 },
                unit: [1, 60, 1_000_000][next(3) as usize],
                ..rate("1", "0", "1/1", 0)
            };
            let q = next(4_000);
            // Model: billed units by stepping, amount as a rational rounded up once.
            let mut billed = 0;
            if q > 0 {
                billed = u64::from(r.increments.first);
                while billed < q {
                    billed += u64::from(r.increments.next);
                }
            }
            let got = r.cost(q, scale);
            assert_eq!(got.billed, billed);
            let want = if billed == 0 {
                0
            } else {
                // Exact in i128: (fee·unit + price·billed)·10^scale / (unit·10^9), ceil.
                let n = (i128::from(r.connection_fee.0) * i128::from(r.unit) + i128::from(r.price.0) * billed as i128)
                    * 10_i128.pow(u32::from(scale));
                let d = i128::from(r.unit) * PRICE_ONE;
                let usage = n / d + i128::from(n % d != 0);
                let min = (i128::from(r.minimum.0) * 10_i128.pow(u32::from(scale)) + PRICE_ONE - 1) / PRICE_ONE;
                usage.max(min) as i64
            };
            assert_eq!(got.amount, Amount(want), "{r:?} q={q} scale={scale}");
            // A grant never costs more than the money, and one more boundary would.
            let money = Amount(next(1_000) as i64);
            let used = next(300);
            if let Some((units, need)) = r.grant(used, 600, money, scale) {
                assert!(need <= money && need.0 == r.cost(used + units, scale).amount.0 - r.cost(used, scale).amount.0);
                let more = r.increments.billed(used + units + 1);
                assert!(
                    more > r.increments.billed(used + 600)
                        || r.cost(more, scale).amount.0 - r.cost(used, scale).amount.0 > money.0
                );
            }
        }
    }
}
