//! RFC 3339 timestamps at the edge (`2026-11-22T10:15:30Z`, `...30.25+02:00`), to and from
//! the core's microseconds since the Unix epoch. Small enough not to need a date crate.

use crate::model::Timestamp;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses an RFC 3339 date-time; `None` when it is not one.
pub fn parse(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return None;
        }
        micros = frac[..digits].parse::<i64>().ok()? * 10_i64.pow(6 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let (oh, om) = (rest[1..3].parse::<i64>().ok()?, rest[4..6].parse::<i64>().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None; // 2026-02-30 and the like
    }
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some(Timestamp(secs.checked_mul(1_000_000)?.checked_add(micros)?))
}

/// Formats as RFC 3339 in UTC with microseconds: `2026-11-22T10:15:30.000000Z`.
pub fn format(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1_000_000);
    let micros = t.0.rem_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// The UTC day (days since 1970-01-01) a time falls on.
pub fn day_of(t: Timestamp) -> i64 {
    t.0.div_euclid(DAY_US)
}

/// The start of a UTC day.
pub fn day_start(day: i64) -> Timestamp {
    Timestamp(day.saturating_mul(DAY_US))
}

/// Parses a calendar date `2026-11-22` to its UTC day; `None` when it is not one.
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &text[r];
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let days = days_from_civil(y, m, d);
    (civil_from_days(days) == (y, m, d) && (1..=12).contains(&m)).then_some(days)
}

/// A UTC day as `2026-11-22`.
pub fn format_date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The first day of the month `day` falls in.
pub fn month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// `+03:00`, `-05:30`, `UTC`, `Z` as minutes east of UTC (at most 14 hours); `None` when
/// it is none of these.
pub fn parse_offset(text: &str) -> Option<i32> {
    if matches!(text, "UTC" | "Z") {
        return Some(0);
    }
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' || !b[1..3].iter().chain(&b[4..6]).all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m): (i32, i32) = (text[1..3].parse().ok()?, text[4..6].parse().ok()?);
    (h <= 14 && m <= 59).then_some(sign * (h * 60 + m))
}

/// Minutes east of UTC as `+03:00` (`UTC` for zero).
pub fn format_offset(minutes: i32) -> String {
    if minutes == 0 {
        return "UTC".into();
    }
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// A time for people: `2026-11-22 10:15 UTC`.
pub fn format_short(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1_000_000);
    let rem = secs.rem_euclid(86_400);
    format!("{} {:02}:{:02}", format_date(secs.div_euclid(86_400)), rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_rfc_3339() {
        let t = parse("2026-11-22T10:15:30.25+02:00").unwrap();
        assert_eq!(format(t), "2026-11-22T08:15:30.250000Z");
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(parse("2024-02-29T00:00:00Z").map(format).as_deref(), Some("2024-02-29T00:00:00.000000Z"));
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-22 10:15:30Z",
            "2026-11-22T10:15:30",
            "1700000000",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_utc_days() {
        let day = parse_date("2026-11-22").unwrap();
        assert_eq!(format_date(day), "2026-11-22");
        assert_eq!(day_start(day), parse("2026-11-22T00:00:00Z").unwrap());
        assert_eq!(day_of(parse("2026-11-22T23:59:59Z").unwrap()), day);
        assert_eq!(format_date(month_start(day)), "2026-11-01");
        assert_eq!(format_short(parse("2026-11-22T10:15:30Z").unwrap()), "2026-11-22 10:15");
        assert_eq!(
            (parse_offset("+03:00"), parse_offset("-05:30"), parse_offset("UTC")),
            (Some(180), Some(-330), Some(0))
        );
        for bad in ["+3:00", "+15:00", "03:00", "+03:60", "+03-00", "UTC+1"] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert_eq!(
            (format_offset(180), format_offset(-330), format_offset(0)),
            ("+03:00".to_owned(), "-05:30".to_owned(), "UTC".to_owned())
        );
        for bad in ["2026-02-30", "2026-13-01", "26-11-22", "2026/11/22", "2026-11-2x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
