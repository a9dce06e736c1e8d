//! Low-balance notifications, as rules: Low Balance Profiles and their three rules (seed
//! 001), a party's alert settings with its warning thresholds (seed 003), which profile a
//! customer falls under, the levels the ledger must watch, when a rule is due, and the
//! message templates. No IO: the worker in `purse` reads, decides with these, and writes.

use std::collections::HashMap;

use crate::model::{Account, AccountId, Billing, Party, PartyId, PartyKind, Timestamp};
use crate::money::{Amount, Currency, CurrencyCode};

/// Most extra e-mail addresses (or users) on one rule or one party's alert list.
pub const RECIPIENTS_MAX: usize = 20;
/// Most warning thresholds one customer may list.
pub const WARNING_LEVELS_MAX: usize = 10;
/// Longest profile name.
pub const PROFILE_NAME_LEN_MAX: usize = 100;
/// Longest subject and body template, in bytes.
pub const SUBJECT_LEN_MAX: usize = 200;
pub const BODY_LEN_MAX: usize = 4000;
/// Longest period and inactivity duration: a year.
pub const DURATION_S_MAX: i64 = 366 * 24 * 3600;
/// Largest max quantity.
pub const MAX_QUANTITY_MAX: u32 = 1000;

/// Placeholders a template may use.
pub const PLACEHOLDERS: [&str; 8] =
    ["customer", "client_id", "balance", "available", "threshold", "currency", "rule", "portal_link"];

pub const DEFAULT_SUBJECT: &str = "Low balance: {customer} has {available} {currency} available";
pub const DEFAULT_BODY: &str =
    "Hello,\n\nThe available balance of {customer} ({client_id}) is {available} {currency}, \
below the threshold of {threshold} {currency} ({rule}).\nThe posted balance is {balance} {currency}.\n\n\
See Balance Details: {portal_link}\n\n-- Purse";

/// The three rules of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// Tells the reseller's e-mail, chosen users and extra e-mails.
    User,
    /// Tells the customer's billing e-mail and extra e-mails.
    Client,
    /// Like `Client`, but only after no charge for the inactivity duration.
    Inactivity,
}

impl RuleKind {
    pub const ALL: [RuleKind; 3] = [RuleKind::User, RuleKind::Client, RuleKind::Inactivity];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::User => "user",
            RuleKind::Client => "client",
            RuleKind::Inactivity => "inactivity",
        }
    }

    pub fn parse(text: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// How the rule is named in messages.
    pub fn title(self) -> &'static str {
        match self {
            RuleKind::User => "user notification",
            RuleKind::Client => "client notification",
            RuleKind::Inactivity => "inactivity notification",
        }
    }
}

/// One rule of a profile. It fires when the available balance is below `threshold` (and,
/// for inactivity, nothing was charged for `inactivity_s`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub threshold: Amount,
    /// User rule: the reseller's e-mail; client and inactivity rules: the billing e-mail.
    pub notify: bool,
    /// Portal users to tell (user rule only).
    pub users: Vec<u64>,
    pub emails: Vec<String>,
    /// Inactivity rule only; 0 otherwise.
    pub inactivity_s: i64,
}

/// A Low Balance Profile (seed 001).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: u64,
    pub name: String,
    /// The owner; `None` for the operator's own profiles (the default of customers without a reseller).
    pub reseller: Option<PartyId>,
    pub currency: CurrencyCode,
    pub sort_order: i64,
    /// Notifications per rule until the balance is refilled.
    pub max_quantity: u32,
    /// At most one notification per rule per customer in this many seconds.
    pub period_s: i64,
    /// At most one rule of each kind, in kind order.
    pub rules: Vec<Rule>,
    pub subject: String,
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Profile {
    pub fn rule(&self, kind: RuleKind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.kind == kind)
    }
}

/// The profile a customer falls under: the one assigned to it if it still exists, else its
/// reseller's default for its currency (the lowest sort order, then the oldest).
pub fn effective_profile(
    assigned: Option<u64>,
    reseller: Option<PartyId>,
    currency: CurrencyCode,
    profiles: &[Profile],
) -> Option<&Profile> {
    if let Some(p) = assigned.and_then(|id| profiles.iter().find(|p| p.id == id)) {
        return Some(p);
    }
    profiles.iter().filter(|p| p.reseller == reseller && p.currency == currency).min_by_key(|p| (p.sort_order, p.id))
}

/// A warning threshold (seed 003): an amount of available funds, or (postpaid) a share of
/// the permanent credit limit in hundredths of a percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningLevel {
    Amount(Amount),
    Percent(u32),
}

impl WarningLevel {
    /// The level of available balance it stands for under `permanent_limit`.
    pub fn resolve(self, permanent_limit: Amount) -> Amount {
        match self {
            WarningLevel::Amount(a) => a,
            // At most 100 % of an i64: fits, and rounds toward zero.
            WarningLevel::Percent(bp) => Amount((i128::from(permanent_limit.0) * i128::from(bp) / 10_000) as i64),
        }
    }

    pub fn format(self, currency: &Currency) -> String {
        match self {
            WarningLevel::Amount(a) => currency.format(a),
            WarningLevel::Percent(bp) if bp % 100 == 0 => format!("{}%", bp / 100),
            WarningLevel::Percent(bp) => format!("{}.{:02}", bp / 100, bp % 100).trim_end_matches('0').to_owned() + "%",
        }
    }
}

/// Formats a list as it is entered: `"100.00, 50.00, 10%"`.
pub fn format_warning_levels(levels: &[WarningLevel], currency: &Currency) -> String {
    levels.iter().map(|l| l.format(currency)).collect::<Vec<_>>().join(", ")
}

/// Which entry of a list of warning thresholds breaks which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThresholdError {
    /// The entry at this position (from 1) is empty.
    Empty(usize),
    PercentForPrepaid(String),
    PercentWithoutLimit(String),
    NotPercent(String),
    PercentRange(String),
    NotAmount {
        entry: String,
        currency: crate::CurrencyCode,
        scale: u8,
        why: String,
    },
    Negative(String),
    Twice(String),
    TooMany,
}

impl std::fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThresholdError::Empty(n) => write!(f, "entry {n} is empty; separate thresholds with single commas"),
            ThresholdError::PercentForPrepaid(e) => {
                write!(f, "{e:?}: a prepaid customer's thresholds are amounts of available funds, not percentages")
            }
            ThresholdError::PercentWithoutLimit(e) => {
                write!(f, "{e:?}: a percentage needs a positive permanent credit limit")
            }
            ThresholdError::NotPercent(e) => write!(f, "{e:?} is not a percentage like 10% or 12.5%"),
            ThresholdError::PercentRange(e) => write!(f, "{e:?}: a percentage is above 0 and at most 100"),
            ThresholdError::NotAmount { entry, currency, scale, why } => {
                write!(f, "{entry:?} is not an amount in {currency} with at most {scale} decimals ({why})")
            }
            ThresholdError::Negative(e) => write!(f, "{e:?}: a threshold is not negative"),
            ThresholdError::Twice(e) => write!(f, "{e:?} is listed twice"),
            ThresholdError::TooMany => write!(f, "at most {WARNING_LEVELS_MAX} thresholds"),
        }
    }
}

/// Parses a comma-separated list of warning thresholds. Prepaid customers list amounts of
/// available funds; postpaid ones amounts or percentages (`"10%"`, up to two decimals, at
/// most 100) of a positive permanent credit limit. Errors say which entry broke which rule.
pub fn parse_warning_levels(
    text: &str,
    currency: &Currency,
    billing: Billing,
    permanent_limit: Amount,
) -> Result<Vec<WarningLevel>, ThresholdError> {
    let mut levels = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let entry = raw.trim();
        let named = || entry.to_owned();
        if entry.is_empty() {
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            return Err(ThresholdError::Empty(i + 1));
        }
        let level = if let Some(number) = entry.strip_suffix('%') {
            if billing == Billing::Prepaid {
                return Err(ThresholdError::PercentForPrepaid(named()));
            }
            if permanent_limit.0 <= 0 {
                return Err(ThresholdError::PercentWithoutLimit(named()));
            }
            let bp = crate::money::parse_units(number.trim(), 2).map_err(|_| ThresholdError::NotPercent(named()))?;
            if !(1..=10_000).contains(&bp) {
                return Err(ThresholdError::PercentRange(named()));
            }
            WarningLevel::Percent(bp as u32)
        } else {
            let amount = currency.parse(entry).map_err(|e| ThresholdError::NotAmount {
                entry: named(),
                currency: currency.code,
                scale: currency.scale,
                why: e.to_string(),
            })?;
            if amount.0 < 0 {
                return Err(ThresholdError::Negative(named()));
            }
            WarningLevel::Amount(amount)
        };
        if levels.contains(&level) {
            return Err(ThresholdError::Twice(named()));
        }
        levels.push(level);
    }
    if levels.len() > WARNING_LEVELS_MAX {
        return Err(ThresholdError::TooMany);
    }
    Ok(levels)
}

/// A party's alert settings: its profile, its billing e-mail (for a reseller: the e-mail
/// its user rules notify), the extra "e-mails to be alerted" (seed 000), and its warning thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    pub party: PartyId,
    pub profile: Option<u64>,
    pub email: Option<String>,
    pub alert_emails: Vec<String>,
    pub warning: Vec<WarningLevel>,
    pub updated_at: Timestamp,
}

/// The levels of available balance the ledger must report crossings of for a customer:
/// its warning thresholds and its profile's rule thresholds, highest first, each once.
pub fn watch_levels(profile: Option<&Profile>, warning: &[WarningLevel], permanent_limit: Amount) -> Vec<Amount> {
    let mut levels: Vec<Amount> = warning.iter().map(|w| w.resolve(permanent_limit)).collect();
    if let Some(p) = profile {
        levels.extend(p.rules.iter().map(|r| r.threshold));
    }
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    levels
}

/// The profile of a customer party under its settings, if it has one.
pub fn profile_of<'a>(party: &Party, settings: Option<&AlertSettings>, profiles: &'a [Profile]) -> Option<&'a Profile> {
    let PartyKind::Customer { reseller, currency, .. } = party.kind else { return None };
    effective_profile(settings.and_then(|s| s.profile), reseller, currency, profiles)
}

/// The customers' wallets whose watched levels differ from what their settings, profile and
/// enabled auto-recharge threshold (`recharge`) ask for, with the levels they should have.
pub fn level_changes<'a>(
    customers: impl IntoIterator<Item = (&'a Party, &'a Account)>,
    settings: &HashMap<PartyId, AlertSettings>,
    profiles: &[Profile],
    recharge: &HashMap<PartyId, Amount>,
) -> Vec<(AccountId, Vec<Amount>)> {
    customers
        .into_iter()
        .filter_map(|(party, wallet)| {
            let mine = settings.get(&party.id);
            let profile = profile_of(party, mine, profiles);
            let warning = mine.map_or(&[][..], |s| &s.warning[..]);
            let mut levels = watch_levels(profile, warning, wallet.credit_limit);
            if let Some(t) = recharge.get(&party.id).filter(|t| !levels.contains(t)) {
                let at = levels.iter().position(|l| l < t).unwrap_or(levels.len());
                levels.insert(at, *t);
            }
            (levels != wallet.thresholds).then_some((wallet.id, levels))
        })
        .collect()
}

/// How often a rule has fired for a customer since the last refill, and when it last did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub count: u32,
    pub last_at: Option<Timestamp>,
}

/// Whether `rule` of `profile` is due for a customer now: available below the threshold,
/// (inactivity) no charge since `quiet_since` for the duration, fewer than max quantity
/// since the last refill, and at least a period since the last one.
pub fn rule_due(
    profile: &Profile,
    rule: &Rule,
    available: i128,
    quiet_since: Timestamp,
    counter: Counter,
    now: Timestamp,
) -> bool {
    let s = |secs: i64| secs.saturating_mul(Timestamp::MICROS_PER_S);
    available < i128::from(rule.threshold.0)
        && (rule.kind != RuleKind::Inactivity || now.0.saturating_sub(quiet_since.0) >= s(rule.inactivity_s))
        && counter.count < profile.max_quantity
        && counter.last_at.is_none_or(|last| now.0.saturating_sub(last.0) >= s(profile.period_s))
}

/// Replaces each `{name}` of `values` (such as [`PLACEHOLDERS`]) with its value.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((name, close)) if values.iter().any(|(n, _)| *n == name) => {
                let (_, value) = values.iter().find(|(n, _)| *n == name).expect("checked");
                out.push_str(value);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first `{name}` in `template` that is not a placeholder, if any.
pub fn unknown_placeholder(template: &str) -> Option<String> {
    unknown_of(template, &PLACEHOLDERS)
}

/// The first `{name}` in `template` that is not one of `known`, if any.
pub fn unknown_of(template: &str, known: &[&str]) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !known.contains(&name) {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::new(CurrencyCode::parse("USD").unwrap(), 2).unwrap()
    }

    fn profile(id: u64, reseller: Option<u64>, sort_order: i64) -> Profile {
        Profile {
            id,
            name: format!("p{id}"),
            reseller: reseller.map(PartyId),
            currency: CurrencyCode::parse("USD").unwrap(),
            sort_order,
            max_quantity: 3,
            period_s: 24 * 3600,
            rules: vec![Rule {
                kind: RuleKind::Client,
                threshold: Amount(2000),
                notify: true,
                users: vec![],
                emails: vec![],
                inactivity_s: 0,
            }],
            subject: DEFAULT_SUBJECT.into(),
            body: DEFAULT_BODY.into(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn warning_thresholds_parse_with_the_rules_named() {
        let usd = usd();
        let pre = |t: &str| parse_warning_levels(t, &usd, Billing::Prepaid, Amount(0));
        let post = |t: &str| parse_warning_levels(t, &usd, Billing::Postpaid, Amount(100_000));
        assert_eq!(
            pre("100, 50,10").unwrap(),
            vec![
                WarningLevel::Amount(Amount(10_000)),
                WarningLevel::Amount(Amount(5_000)),
                WarningLevel::Amount(Amount(1_000))
            ]
        );
        assert_eq!(pre("  ").unwrap(), vec![]);
        assert!(pre("10%").unwrap_err().to_string().contains("not percentages"));
        assert!(pre("10,,5").unwrap_err().to_string().contains("entry 2 is empty"));
        assert!(pre("1.234").unwrap_err().to_string().contains("at most 2 decimals"));
        assert!(pre("-5").unwrap_err().to_string().contains("not negative"));
        assert!(pre("abc").unwrap_err().to_string().contains("\"abc\" is not an amount"));
        assert!(pre("5, 5.00").unwrap_err().to_string().contains("twice"));
        assert!(pre(&["1"; 11].iter().enumerate().map(|(i, _)| i.to_string()).collect::<Vec<_>>().join(","))
            .unwrap_err()
            .to_string()
            .contains("at most 10"));
        let levels = post("10%, 12.5%, 200").unwrap();
        assert_eq!(
            levels,
            vec![WarningLevel::Percent(1000), WarningLevel::Percent(1250), WarningLevel::Amount(Amount(20_000))]
        );
        assert_eq!(levels[1].resolve(Amount(100_000)), Amount(12_500));
        assert_eq!(format_warning_levels(&levels, &usd), "10%, 12.5%, 200.00");
        assert!(post("101%").unwrap_err().to_string().contains("at most 100"));
        assert!(parse_warning_levels("10%", &usd, Billing::Postpaid, Amount(0))
            .unwrap_err()
            .to_string()
            .contains("positive permanent credit limit"));
    }

    #[test]
    fn a_customer_falls_back_to_its_resellers_lowest_sort_order() {
        let usd = CurrencyCode::parse("USD").unwrap();
        let profiles =
            vec![profile(1, Some(7), 5), profile(2, Some(7), 1), profile(3, Some(8), 0), profile(4, None, 0)];
        assert_eq!(effective_profile(None, Some(PartyId(7)), usd, &profiles).map(|p| p.id), Some(2));
        assert_eq!(effective_profile(Some(1), Some(PartyId(7)), usd, &profiles).map(|p| p.id), Some(1));
        assert_eq!(
            effective_profile(Some(99), Some(PartyId(7)), usd, &profiles).map(|p| p.id),
            Some(2),
            "a deleted profile falls back"
        );
        assert_eq!(effective_profile(None, None, usd, &profiles).map(|p| p.id), Some(4));
        assert_eq!(effective_profile(None, Some(PartyId(7)), CurrencyCode::parse("EUR").unwrap(), &profiles), None);
    }

    #[test]
    fn a_rule_is_due_below_its_threshold_once_a_period_up_to_max_quantity() {
        let p = profile(1, None, 0);
        let rule = &p.rules[0];
        let day = 24 * 3600 * Timestamp::MICROS_PER_S;
        let now = Timestamp(10 * day);
        let fresh = Counter::default();
        assert!(rule_due(&p, rule, 1999, Timestamp(0), fresh, now));
        assert!(!rule_due(&p, rule, 2000, Timestamp(0), fresh, now), "at the threshold is not below it");
        assert!(!rule_due(
            &p,
            rule,
            0,
            Timestamp(0),
            Counter { count: 1, last_at: Some(Timestamp(now.0 - day + 1)) },
            now
        ));
        assert!(rule_due(&p, rule, 0, Timestamp(0), Counter { count: 1, last_at: Some(Timestamp(now.0 - day)) }, now));
        assert!(!rule_due(&p, rule, 0, Timestamp(0), Counter { count: 3, last_at: Some(Timestamp(0)) }, now));
        let idle = Rule { kind: RuleKind::Inactivity, inactivity_s: 3 * 24 * 3600, ..rule.clone() };
        assert!(!rule_due(&p, &idle, 0, Timestamp(now.0 - 3 * day + 1), fresh, now));
        assert!(rule_due(&p, &idle, 0, Timestamp(now.0 - 3 * day), fresh, now));
    }

    #[test]
    fn templates_fill_known_placeholders_and_name_unknown_ones() {
        let text = render(
            "{customer} has {available} {currency} {x} {",
            &[("customer", "Acme".into()), ("available", "1.00".into()), ("currency", "USD".into())],
        );
        assert_eq!(text, "Acme has 1.00 USD {x} {");
        assert_eq!(unknown_placeholder(DEFAULT_BODY), None);
        assert_eq!(unknown_placeholder(DEFAULT_SUBJECT), None);
        assert_eq!(unknown_placeholder("hi {custmer}"), Some("custmer".into()));
    }
}
