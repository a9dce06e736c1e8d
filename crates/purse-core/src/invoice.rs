//! The arithmetic of usage invoices, with no IO: when a billing cycle starts, how an
//! invoice's total is rounded (once, with the difference carried), and how payments are
//! allocated to invoices.
//!
//! **Rounding.** Usage is posted at the currency's scale (telecom rates need 4–6 digits);
//! an invoice is payable at the currency's *invoice precision*, its ISO 4217 exponent (never
//! more than the scale). Lines are shown exactly as the journal holds them. Only the total
//! is rounded, half away from zero, after adding the difference carried from the customer's
//! previous invoice; what rounding left over is carried to the next one. So, for every
//! customer, the totals of all invoices plus the carry of the last equal the journal's
//! consumption to the last unit.

use crate::model::Timestamp;
use crate::money::Currency;
use crate::time::{civil_from_days, days_from_civil, Zone, DAY_US};

/// Longest cycle day: every month has it.
pub const CYCLE_DAY_MAX: u8 = 28;

/// The digits an invoice's total is payable in: the ISO 4217 exponent, at most the scale.
pub fn invoice_precision(currency: Currency) -> u8 {
    Currency::iso_scale(currency.code).min(currency.scale)
}

/// An invoice total as payable: at the invoice precision when it is a whole number of
/// its units (usage invoices always are), else at the currency's scale.
pub fn format_total(currency: Currency, units: i64) -> String {
    let precision = invoice_precision(currency);
    let step = 10i64.pow(u32::from(currency.scale - precision));
    if units % step == 0 {
        Currency { code: currency.code, scale: precision }.format(crate::money::Amount(units / step))
    } else {
        currency.format(crate::money::Amount(units))
    }
}

/// `(total, carry_out)`: `subtotal + carry_in` rounded half away from zero to `precision`
/// digits of a currency at `scale`, and what rounding left over (`subtotal + carry_in -
/// total`, less than half a unit of `precision`).
pub fn round_total(subtotal: i64, carry_in: i64, scale: u8, precision: u8) -> (i64, i64) {
    let exact = i128::from(subtotal) + i128::from(carry_in);
    let step = 10i128.pow(u32::from(scale.saturating_sub(precision)));
    let half = step / 2;
    let total = if step == 1 {
        exact
    } else if exact >= 0 {
        (exact + half) / step * step
    } else {
        (exact - half) / step * step
    };
    let total = i64::try_from(total).unwrap_or(if total > 0 { i64::MAX } else { i64::MIN });
    (total, i64::try_from(exact - i128::from(total)).unwrap_or(0))
}

/// A tax rate's percentage in millionths of the whole: 20 % is 200,000; 100 % is the most.
pub const TAX_WHOLE: i64 = 1_000_000;

/// A document's tax: net + tax = gross exactly, every figure payable, and what rounding the
/// tax left over to carry to the customer's next taxed document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taxed {
    pub net: i64,
    pub tax: i64,
    pub gross: i64,
    pub carry: i64,
}

/// Net, tax and gross of a total (at the invoice precision) under a rate of `rate`
/// millionths: an exclusive rate adds the tax to the total, an inclusive one finds it inside.
/// The rule is the invoice totals' own: the tax is first found at the currency's scale (half
/// away from zero), then rounded once to the invoice precision after adding the difference
/// carried from the customer's previous taxed document, and what rounding left over is
/// carried on. So the tax of all a customer's documents plus the last carry equals the sum
/// of their taxes at the scale, to the last unit.
pub fn tax_of(total: i64, rate: i64, inclusive: bool, carry_in: i64, scale: u8, precision: u8) -> Taxed {
    // num / den rounded half away from zero to a whole unit of the scale.
    let round = |num: i128, den: i128| -> i128 { (num.abs() * 2 + den) / (den * 2) * num.signum() };
    let (t, r) = (i128::from(total), i128::from(rate.clamp(0, TAX_WHOLE)));
    let whole = i128::from(TAX_WHOLE);
    let clamp = |v: i128| i64::try_from(v).unwrap_or(if v > 0 { i64::MAX } else { i64::MIN });
    let at_scale = if inclusive { t - round(t * whole, whole + r) } else { round(t * r, whole) };
    let (tax, carry) = round_total(clamp(at_scale), carry_in, scale, precision);
    if inclusive {
        Taxed { net: total.saturating_sub(tax), tax, gross: total, carry }
    } else {
        Taxed { net: total, tax, gross: total.saturating_add(tax), carry }
    }
}

/// The start (local midnight on `cycle_day` in `zone`, whatever its offset that day) of the
/// monthly billing cycle that `now` falls in.
pub fn cycle_start(now: Timestamp, cycle_day: u8, zone: &Zone) -> Timestamp {
    let (y, m, d) = civil_from_days(zone.day_of(now));
    let day = i64::from(cycle_day.clamp(1, CYCLE_DAY_MAX));
    let (y, m) = if d >= day {
        (y, m)
    } else if m == 1 {
        (y - 1, 12)
    } else {
        (y, m - 1)
    };
    zone.day_start(days_from_civil(y, m, day))
}

/// The start of the cycle after the one starting at `start`.
pub fn next_cycle_start(start: Timestamp, cycle_day: u8, zone: &Zone) -> Timestamp {
    // 32 days on from any cycle start lands in the next cycle, never the one after.
    cycle_start(Timestamp(start.0 + 32 * DAY_US), cycle_day, zone)
}

/// A payment with what is left of it to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unallocated {
    pub payment: u64,
    pub remaining: i64,
    /// The invoice it was made for, if any: it is applied there first.
    pub invoice: Option<u64>,
}

/// An invoice with what is still due on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub invoice: u64,
    pub due: i64,
}

/// One allocation: `amount` of `payment` applied to `invoice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub payment: u64,
    pub invoice: u64,
    pub amount: i64,
}

/// Applies payments (oldest first, as given) to invoices: a payment made for an invoice
/// goes there first while it is due; everything else goes to the oldest invoice still due
/// (invoices as given, oldest first). What cannot be applied stays unallocated.
pub fn allocate(payments: &[Unallocated], invoices: &[Due]) -> Vec<Allocation> {
    let mut due: Vec<Due> = invoices.iter().copied().filter(|d| d.due > 0).collect();
    let mut out = Vec::new();
    for p in payments {
        let mut left = p.remaining;
        let targeted = p.invoice.and_then(|id| due.iter().position(|d| d.invoice == id));
        let order = targeted.into_iter().chain(0..due.len());
        for i in order {
            if left <= 0 {
                break;
            }
            let take = left.min(due[i].due);
            if take > 0 {
                due[i].due -= take;
                left -= take;
                out.push(Allocation { payment: p.payment, invoice: due[i].invoice, amount: take });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::CurrencyCode;
    use crate::time::{format, parse};

    #[test]
    fn the_total_is_rounded_once_and_the_difference_carried() {
        // 4-digit USD: 12.3456 → 12.35, carry −0.0044; next 1.0044 − 0.0044 = 1.0000.
        assert_eq!(round_total(123_456, 0, 4, 2), (123_500, -44));
        assert_eq!(round_total(10_044, -44, 4, 2), (10_000, 0));
        assert_eq!(round_total(50, 0, 4, 2), (100, -50)); // half away from zero
        assert_eq!(round_total(49, 0, 4, 2), (0, 49));
        assert_eq!(round_total(-150, 0, 4, 2), (-200, 50));
        assert_eq!(round_total(1234, 0, 2, 2), (1234, 0));
        let usd = Currency::new(CurrencyCode::parse("USD").unwrap(), 6).unwrap();
        let jpy = Currency::new(CurrencyCode::parse("JPY").unwrap(), 2).unwrap();
        assert_eq!((invoice_precision(usd), invoice_precision(jpy)), (2, 0));
        assert_eq!(
            (format_total(usd, 12_350_000), format_total(usd, 12_345_678), format_total(jpy, 1200)),
            ("12.35".into(), "12.345678".into(), "12".into())
        );
        // Over many invoices the totals plus the last carry equal the usage exactly.
        let (mut carry, mut invoiced, mut used) = (0i64, 0i64, 0i64);
        for i in 0..1000i64 {
            let usage = (i * 7919) % 100_003;
            let (total, c) = round_total(usage, carry, 4, 2);
            assert_eq!(total % 100, 0);
            assert!(c.abs() <= 50);
            (carry, invoiced, used) = (c, invoiced + total, used + usage);
        }
        assert_eq!(invoiced + carry, used);
    }

    #[test]
    fn cycles_start_at_local_midnight_of_the_cycle_day() {
        let t = |s: &str| parse(s).unwrap();
        let (utc, plus3, minus5) = (Zone::utc(), Zone::fixed(180), Zone::fixed(-300));
        assert_eq!(format(cycle_start(t("2026-03-15T10:00:00Z"), 1, &utc)), "2026-03-01T00:00:00.000000Z");
        assert_eq!(format(cycle_start(t("2026-03-15T10:00:00Z"), 20, &utc)), "2026-02-20T00:00:00.000000Z");
        assert_eq!(format(cycle_start(t("2026-01-05T00:00:00Z"), 28, &utc)), "2025-12-28T00:00:00.000000Z");
        // At +03:00 the cycle of the 1st starts at 21:00 UTC the day before.
        assert_eq!(format(cycle_start(t("2026-02-28T21:30:00Z"), 1, &plus3)), "2026-02-28T21:00:00.000000Z");
        assert_eq!(format(cycle_start(t("2026-02-28T20:30:00Z"), 1, &plus3)), "2026-01-31T21:00:00.000000Z");
        assert_eq!(format(cycle_start(t("2026-03-01T04:00:00Z"), 1, &minus5)), "2026-02-01T05:00:00.000000Z");
        let start = cycle_start(t("2026-12-10T00:00:00Z"), 5, &utc);
        assert_eq!(format(next_cycle_start(start, 5, &utc)), "2027-01-05T00:00:00.000000Z");
        assert_eq!(format(next_cycle_start(t("2026-01-28T00:00:00Z"), 28, &utc)), "2026-02-28T00:00:00.000000Z");
    }

    #[test]
    fn issue_23_cycles_follow_daylight_saving_in_a_named_zone() {
        let t = |s: &str| parse(s).unwrap();
        let ny = Zone::parse("America/New_York").unwrap();
        // New York leaves standard time (-05:00) on 8 March 2026 and returns on 1 November.
        let march = cycle_start(t("2026-03-15T10:00:00Z"), 1, &ny);
        assert_eq!(format(march), "2026-03-01T05:00:00.000000Z", "midnight EST");
        let april = next_cycle_start(march, 1, &ny);
        assert_eq!(format(april), "2026-04-01T04:00:00.000000Z", "midnight EDT: an hour earlier in UTC");
        let november = cycle_start(t("2026-11-20T00:00:00Z"), 1, &ny);
        assert_eq!(format(november), "2026-11-01T04:00:00.000000Z", "1 November starts in EDT");
        assert_eq!(format(next_cycle_start(november, 1, &ny)), "2026-12-01T05:00:00.000000Z");
        // A fixed offset would have drifted by the hour: -05:00 all year puts April's start at 05:00Z.
        assert_eq!(
            format(cycle_start(t("2026-04-15T00:00:00Z"), 1, &Zone::fixed(-300))),
            "2026-04-01T05:00:00.000000Z"
        );
        // Where a change skips midnight (Santiago, 6 September 2026), the day starts at 01:00.
        let santiago = Zone::parse("America/Santiago").unwrap();
        assert_eq!(format(cycle_start(t("2026-09-10T12:00:00Z"), 6, &santiago)), "2026-09-06T04:00:00.000000Z");
    }

    #[test]
    fn payments_go_to_their_invoice_then_to_the_oldest_due() {
        let p = |payment, remaining, invoice| Unallocated { payment, remaining, invoice };
        let d = |invoice, due| Due { invoice, due };
        let a = |payment, invoice, amount| Allocation { payment, invoice, amount };
        assert_eq!(allocate(&[p(1, 150, None)], &[d(10, 100), d(11, 100)]), vec![a(1, 10, 100), a(1, 11, 50)]);
        assert_eq!(
            allocate(&[p(1, 150, Some(11)), p(2, 80, None)], &[d(10, 100), d(11, 100)]),
            vec![a(1, 11, 100), a(1, 10, 50), a(2, 10, 50)]
        );
        assert_eq!(allocate(&[p(1, 30, None)], &[d(10, 0), d(11, 20)]), vec![a(1, 11, 20)]);
        assert!(allocate(&[p(1, 30, None)], &[]).is_empty());
    }

    #[test]
    fn issue_24_tax_is_exact_and_payable_whether_added_or_inside() {
        let t = |net, tax, gross, carry| Taxed { net, tax, gross, carry };
        // 20 % on 100.00 USD (scale 4, precision 2): 20.00 added, gross 120.00.
        assert_eq!(tax_of(1_000_000, 200_000, false, 0, 4, 2), t(1_000_000, 200_000, 1_200_000, 0));
        // Inside 120.00: net 100.00, tax 20.00.
        assert_eq!(tax_of(1_200_000, 200_000, true, 0, 4, 2), t(1_000_000, 200_000, 1_200_000, 0));
        // 7.25 % on 33.33: 2.416425 → 2.4164 at the scale → 2.42, carrying −0.0036.
        assert_eq!(tax_of(333_300, 72_500, false, 0, 4, 2), t(333_300, 24_200, 357_500, -36));
        // Inside 10.00 at 7.25 %: net 9.3240… → tax 0.6760 at the scale → 0.68; net + tax = gross.
        assert_eq!(tax_of(100_000, 72_500, true, 0, 4, 2), t(93_200, 6_800, 100_000, -40));
        // A negative total (a credit) rounds away from zero too.
        assert_eq!(tax_of(-1_000_000, 200_000, false, 0, 4, 2), t(-1_000_000, -200_000, -1_200_000, 0));
        assert_eq!(tax_of(1_000_000, 0, false, 0, 4, 2), t(1_000_000, 0, 1_000_000, 0));
        // The carry comes in: 2.4164 − 0.0036 = 2.4128 → 2.41, carrying 0.0028.
        assert_eq!(tax_of(333_300, 72_500, false, -36, 4, 2), t(333_300, 24_100, 357_400, 28));
        // Over many documents the taxes plus the last carry equal the taxes at the scale exactly.
        let (mut carry, mut taxed, mut exact) = (0i64, 0i64, 0i64);
        for i in 0..1000i64 {
            let total = (i * 7919) % 100_003 * 100;
            let inclusive = i % 3 == 0;
            let x = tax_of(total, 72_500 + i, inclusive, carry, 4, 2);
            assert_eq!((x.tax % 100, x.net + x.tax), (0, x.gross));
            assert!(x.carry.abs() <= 50);
            exact += tax_of(total, 72_500 + i, inclusive, 0, 4, 4).tax;
            (carry, taxed) = (x.carry, taxed + x.tax);
        }
        assert_eq!(taxed + carry, exact);
    }
}
