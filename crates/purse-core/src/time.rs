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

/// A time zone: `UTC`, a fixed offset (`+03:00`) or an IANA name (`Europe/Berlin`), whose
/// offset changes with daylight saving. Days, billing cycles and daily caps are counted in
/// a customer's zone; the database of zones is built in (`jiff`), nothing is read at run time.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone { name: "UTC".into(), tz: jiff::tz::TimeZone::UTC }
    }

    /// A fixed offset, minutes east of UTC.
    pub fn fixed(minutes: i32) -> Zone {
        match jiff::tz::Offset::from_seconds(minutes.saturating_mul(60)) {
            Ok(offset) if minutes != 0 => Zone { name: format_offset(minutes), tz: jiff::tz::TimeZone::fixed(offset) },
            _ => Zone::utc(),
        }
    }

    /// `UTC`, `Z`, `+03:00` or an IANA name such as `America/New_York`; `None` for anything
    /// else. Names are matched without regard to case and kept as the database spells them.
    pub fn parse(text: &str) -> Option<Zone> {
        let text = text.trim();
        if let Some(minutes) = parse_offset(text) {
            return Some(Zone::fixed(minutes));
        }
        if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let tz = jiff::tz::TimeZone::get(text).ok()?;
        let name = tz.iana_name().unwrap_or(text).to_owned();
        Some(Zone { name, tz })
    }

    /// As stored and shown: `UTC`, `+03:00`, `Europe/Berlin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds east of UTC at `t` (it changes with daylight saving).
    pub fn offset_s(&self, t: Timestamp) -> i64 {
        let at = jiff::Timestamp::from_microsecond(t.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        i64::from(self.tz.to_offset(at).seconds())
    }

    /// The local day (days since 1970-01-01 on the local calendar) `t` falls on.
    pub fn day_of(&self, t: Timestamp) -> i64 {
        (t.0 + self.offset_s(t) * 1_000_000).div_euclid(DAY_US)
    }

    /// The first instant of a local day: local midnight, or the first time after it where a
    /// daylight-saving change skips midnight.
    pub fn day_start(&self, day: i64) -> Timestamp {
        let start = civil(day)
            .and_then(|(y, m, d)| jiff::civil::Date::new(y, m, d).ok())
            .and_then(|date| date.to_zoned(self.tz.clone()).ok());
        match start {
            Some(z) => Timestamp(z.timestamp().as_microsecond()),
            None => day_start(day),
        }
    }

    /// A time for people in this zone: `6 Dec 2026, 15:24`.
    pub fn format(&self, t: Timestamp) -> String {
        let local = t.0 + self.offset_s(t) * 1_000_000;
        let secs = local.div_euclid(1_000_000);
        let rem = secs.rem_euclid(86_400);
        format!("{}, {:02}:{:02}", format_day(secs.div_euclid(86_400)), rem / 3600, rem % 3600 / 60)
    }

    /// The local date of `t` for people: `6 Dec 2026`.
    pub fn format_date(&self, t: Timestamp) -> String {
        format_day(self.day_of(t))
    }

    /// The local date and time of `t` as a date-time input shows it: `2026-12-06T15:24`.
    pub fn input_value(&self, t: Timestamp) -> String {
        let local = t.0 + self.offset_s(t) * 1_000_000;
        let secs = local.div_euclid(1_000_000);
        let rem = secs.rem_euclid(86_400);
        format!("{}T{:02}:{:02}", format_date(secs.div_euclid(86_400)), rem / 3600, rem % 3600 / 60)
    }

    /// A local date (`2026-12-31`) or date and time (`2026-12-31T18:00`, as a date-time
    /// input sends it) in this zone, or an RFC 3339 time; a date alone is the end of that day
    /// (the start of the next). `None` when it is none of these.
    pub fn parse_local(&self, text: &str) -> Option<Timestamp> {
        let text = text.trim();
        if let Some(day) = parse_date(text) {
            return Some(self.day_start(day + 1));
        }
        if let Some(t) = parse(text) {
            return Some(t);
        }
        let (date, clock) = text.split_once(['T', ' '])?;
        let day = parse_date(date)?;
        let b = clock.as_bytes();
        let (h, m, s): (i8, i8, i8) = match b.len() {
            5 if b[2] == b':' => (clock[..2].parse().ok()?, clock[3..5].parse().ok()?, 0),
            8 if b[2] == b':' && b[5] == b':' => {
                (clock[..2].parse().ok()?, clock[3..5].parse().ok()?, clock[6..8].parse().ok()?)
            }
            _ => return None,
        };
        let (y, mo, d) = civil(day)?;
        let local = jiff::civil::DateTime::new(y, mo, d, h, m, s, 0).ok()?;
        let z = local.to_zoned(self.tz.clone()).ok()?;
        Some(Timestamp(z.timestamp().as_microsecond()))
    }
}

/// A day as jiff's (year, month, day), when it is in jiff's range.
fn civil(day: i64) -> Option<(i16, i8, i8)> {
    let (y, m, d) = civil_from_days(day);
    Some((i16::try_from(y).ok()?, i8::try_from(m).ok()?, i8::try_from(d).ok()?))
}

/// Every IANA time zone name the built-in database knows, sorted (for choosers).
pub fn zone_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_owned())
            .filter(|n| {
                n.contains('/') && !n.starts_with("Etc/") && !n.starts_with("posix/") && !n.starts_with("right/")
            })
            .collect();
        names.sort();
        names.dedup();
        names.insert(0, "UTC".into());
        names
    })
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A day for people: `6 Dec 2026`.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    let month = usize::try_from(m).unwrap_or(1).clamp(1, 12);
    format!("{d} {} {y}", MONTHS[month - 1])
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
    fn issue_23_zones_are_named_or_fixed_and_days_follow_daylight_saving() {
        assert_eq!(Zone::parse("utc").unwrap().name(), "UTC", "names are kept as the database spells them");
        assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
        assert_eq!(Zone::parse("+03:00").unwrap().name(), "+03:00");
        assert_eq!(Zone::parse("europe/berlin").unwrap().name(), "Europe/Berlin");
        assert!(Zone::parse("Mars/Olympus").is_none());
        assert!(Zone::parse("Europe/Berlin\n").is_some(), "trimmed");
        assert!(Zone::parse("../../etc/passwd").is_none());
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Berlin moves to summer time at 01:00 UTC on 29 March 2026: 23:30 UTC the 28th is
        // still the 28th locally (+01:00), 22:30 UTC the 29th is already the 30th (+02:00).
        let t = |s: &str| parse(s).unwrap();
        assert_eq!(format_date(berlin.day_of(t("2026-03-28T22:30:00Z"))), "2026-03-28");
        assert_eq!(format_date(berlin.day_of(t("2026-03-29T22:30:00Z"))), "2026-03-30");
        assert_eq!(format(berlin.day_start(berlin.day_of(t("2026-03-30T12:00:00Z")))), "2026-03-29T22:00:00.000000Z");
        assert_eq!(format(berlin.day_start(berlin.day_of(t("2026-03-28T12:00:00Z")))), "2026-03-27T23:00:00.000000Z");
        assert_eq!(berlin.format(t("2026-07-01T10:05:00Z")), "1 Jul 2026, 12:05");
        assert_eq!(berlin.format(t("2026-12-01T10:05:00Z")), "1 Dec 2026, 11:05");
        assert_eq!(berlin.input_value(t("2026-07-01T10:05:00Z")), "2026-07-01T12:05");
        assert_eq!(berlin.parse_local("2026-07-01T12:05"), Some(t("2026-07-01T10:05:00Z")));
        assert_eq!(berlin.parse_local("2026-12-31"), Some(t("2026-12-31T23:00:00Z")), "a date: the end of that day");
        assert_eq!(berlin.parse_local("2026-12-31T23:59:00Z"), Some(t("2026-12-31T23:59:00Z")));
        assert_eq!(berlin.parse_local("31/12/2026"), None);
    }

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
