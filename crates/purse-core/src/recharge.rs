//! Auto-recharge, as rules (seeds 000 and 004): a customer's recharge settings, what makes
//! them valid, and when a recharge is due and for how much. No IO: the worker in `purse`
//! reads, decides with these, and writes.

use crate::model::{PartyId, Timestamp};
use crate::money::Amount;

/// Most recharges one customer may allow itself per day.
pub const PER_DAY_MAX: u32 = 24;
/// Most e-mail addresses to alert about recharges.
pub const EMAILS_MAX: usize = 20;

/// How a recharge is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RechargeMethod {
    /// An off-session charge of the customer's saved card through Stripe.
    Card,
    /// A top-up invoice, paid by cheque or telegraphic transfer.
    Invoice,
    /// A transfer from the reseller's master wallet.
    MasterAccount,
}

impl RechargeMethod {
    pub const ALL: [RechargeMethod; 3] = [RechargeMethod::Card, RechargeMethod::Invoice, RechargeMethod::MasterAccount];

    pub fn as_str(self) -> &'static str {
        match self {
            RechargeMethod::Card => "card",
            RechargeMethod::Invoice => "invoice",
            RechargeMethod::MasterAccount => "master_account",
        }
    }

    pub fn parse(text: &str) -> Option<RechargeMethod> {
        RechargeMethod::ALL.into_iter().find(|m| m.as_str() == text)
    }

    pub fn title(self) -> &'static str {
        match self {
            RechargeMethod::Card => "Online payment by card (Stripe)",
            RechargeMethod::Invoice => "Cheque or telegraphic transfer (top-up invoice)",
            RechargeMethod::MasterAccount => "Issue from the reseller's master account",
        }
    }
}

/// How much a recharge adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RechargeTarget {
    /// A fixed recharge amount.
    Amount(Amount),
    /// Enough to bring the available balance up to this.
    Balance(Amount),
}

/// A card saved at Stripe for a customer: ids only, never the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedCard {
    /// Stripe's customer id (`cus_…`).
    pub customer: String,
    /// Stripe's payment method id (`pm_…`).
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
}

/// A customer's recharge settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RechargeSettings {
    pub party: PartyId,
    pub enabled: bool,
    pub method: RechargeMethod,
    /// A recharge starts when the available balance is below this.
    pub threshold: Amount,
    pub target: RechargeTarget,
    /// Automatic recharges at most per day (seed 004: once).
    pub per_day_max: u32,
    /// Most recharged per calendar month, if set.
    pub month_cap: Option<Amount>,
    /// Told about recharges, declines and auto-disable (seed 000's "Emails to be alerted").
    pub emails: Vec<String>,
    pub card: Option<SavedCard>,
    /// Card recharges that failed in a row.
    pub failures: u32,
    /// Why auto-recharge turned itself off, while it is off for that reason.
    pub disabled_reason: Option<String>,
    pub updated_at: Timestamp,
}

impl RechargeSettings {
    /// Settings of a customer that never set any: off, by invoice.
    pub fn off(party: PartyId, now: Timestamp) -> RechargeSettings {
        RechargeSettings {
            party,
            enabled: false,
            method: RechargeMethod::Invoice,
            threshold: Amount::ZERO,
            target: RechargeTarget::Amount(Amount::ZERO),
            per_day_max: 1,
            month_cap: None,
            emails: Vec::new(),
            card: None,
            failures: 0,
            disabled_reason: None,
            updated_at: now,
        }
    }
}

/// Checks settings for a customer; the error names the field and the rule broken (the first
/// of [`settings_problems`]).
pub fn check_settings(s: &RechargeSettings, has_reseller: bool) -> Result<(), (&'static str, String)> {
    settings_problems(s, has_reseller).into_iter().next().map_or(Ok(()), Err)
}

/// Every rule the settings break, each with its field, in the form's order.
pub fn settings_problems(s: &RechargeSettings, has_reseller: bool) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match s.method {
        RechargeMethod::Card if s.card.is_none() => {
            problems.push(("method", "the card method needs a saved card: make an online top-up first".into()));
        }
        RechargeMethod::MasterAccount if !has_reseller => {
            problems.push(("method", "the master account method needs a customer with a reseller".into()));
        }
        _ => {}
    }
    if s.threshold.0 < 0 {
        problems.push(("threshold", "the threshold must not be negative".into()));
    }
    match s.target {
        RechargeTarget::Amount(a) if !a.is_positive() => {
            problems.push(("recharge_amount", "the recharge amount must be more than zero".into()));
        }
        RechargeTarget::Balance(t) if t <= s.threshold => {
            problems.push(("target_balance", "the target balance must be above the threshold".into()));
        }
        _ => {}
    }
    if s.per_day_max == 0 || s.per_day_max > PER_DAY_MAX {
        problems.push(("per_day_max", format!("recharges per day must be 1 to {PER_DAY_MAX}")));
    }
    if s.month_cap.is_some_and(|c| !c.is_positive()) {
        problems.push(("month_cap", "the monthly cap must be more than zero".into()));
    } else if let (Some(cap), RechargeTarget::Amount(amount)) = (s.month_cap, s.target) {
        if cap < amount {
            problems.push((
                "month_cap",
                "the monthly cap must be at least the recharge amount, or no recharge could ever run".into(),
            ));
        }
    }
    if s.emails.len() > EMAILS_MAX {
        problems.push(("emails", format!("at most {EMAILS_MAX} e-mail addresses")));
    }
    problems
}

/// The thresholds of enabled auto-recharge, which the ledger must report crossings of.
pub fn watched(settings: &[RechargeSettings]) -> std::collections::HashMap<PartyId, Amount> {
    settings.iter().filter(|s| s.enabled).map(|s| (s.party, s.threshold)).collect()
}

/// What a customer's recharges already used of its caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used {
    /// Automatic recharges started today (whatever became of them).
    pub today: u32,
    /// Amount of this month's automatic recharges that did not fail.
    pub month: i128,
}

/// The amount of the recharge due now, if one is: enabled, the available balance below the
/// threshold, and the caps allow it. The caller checks that none is in flight.
pub fn recharge_due(s: &RechargeSettings, available: i128, used: Used) -> Option<Amount> {
    if !s.enabled || available >= i128::from(s.threshold.0) || used.today >= s.per_day_max {
        return None;
    }
    let amount = match s.target {
        RechargeTarget::Amount(a) => i128::from(a.0),
        RechargeTarget::Balance(t) => i128::from(t.0) - available,
    };
    if amount <= 0 {
        return None;
    }
    if let Some(cap) = s.month_cap {
        if used.month + amount > i128::from(cap.0) {
            return None;
        }
    }
    i64::try_from(amount).ok().map(Amount)
}

/// A cap that holds back a recharge that would otherwise be due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Recharges per day are used up.
    Daily,
    /// The month's cap would be passed.
    Monthly,
}

/// The cap that stops a recharge now, when one is below its threshold and enabled.
pub fn cap_reached(s: &RechargeSettings, available: i128, used: Used) -> Option<Cap> {
    if !s.enabled || available >= i128::from(s.threshold.0) {
        return None;
    }
    if used.today >= s.per_day_max {
        return Some(Cap::Daily);
    }
    let amount = match s.target {
        RechargeTarget::Amount(a) => i128::from(a.0),
        RechargeTarget::Balance(t) => i128::from(t.0) - available,
    };
    match s.month_cap {
        Some(cap) if amount > 0 && used.month + amount > i128::from(cap.0) => Some(Cap::Monthly),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_23_a_cap_that_holds_back_a_due_recharge_is_named() {
        let mut s = RechargeSettings {
            enabled: true,
            threshold: Amount(2000),
            target: RechargeTarget::Amount(Amount(5000)),
            per_day_max: 2,
            month_cap: Some(Amount(12_000)),
            ..RechargeSettings::off(PartyId(1), Timestamp(0))
        };
        let used = |today, month| Used { today, month };
        assert_eq!(cap_reached(&s, 1000, used(1, 5000)), None, "a recharge is due");
        assert!(recharge_due(&s, 1000, used(1, 5000)).is_some());
        assert_eq!(cap_reached(&s, 1000, used(2, 5000)), Some(Cap::Daily));
        assert_eq!(cap_reached(&s, 1000, used(1, 10_000)), Some(Cap::Monthly));
        assert!(recharge_due(&s, 1000, used(1, 10_000)).is_none());
        assert_eq!(cap_reached(&s, 3000, used(2, 10_000)), None, "above the threshold nothing is held back");
        s.enabled = false;
        assert_eq!(cap_reached(&s, 1000, used(2, 10_000)), None);
    }

    fn settings(target: RechargeTarget) -> RechargeSettings {
        RechargeSettings {
            enabled: true,
            threshold: Amount(2000),
            target,
            ..RechargeSettings::off(PartyId(1), Timestamp(0))
        }
    }

    /// Issue 23: settings that could never work are refused, naming the field.
    #[test]
    fn a_negative_threshold_and_a_monthly_cap_below_the_recharge_amount_are_refused() {
        let ok = RechargeSettings { method: RechargeMethod::Invoice, ..settings(RechargeTarget::Amount(Amount(5000))) };
        assert_eq!(check_settings(&ok, false), Ok(()));
        let negative = RechargeSettings { threshold: Amount(-1), ..ok.clone() };
        assert_eq!(check_settings(&negative, false).unwrap_err().0, "threshold");
        let below = RechargeSettings { month_cap: Some(Amount(4999)), ..ok.clone() };
        assert_eq!(check_settings(&below, false).unwrap_err().0, "month_cap");
        let equal = RechargeSettings { month_cap: Some(Amount(5000)), ..ok };
        assert_eq!(check_settings(&equal, false), Ok(()));
    }

    #[test]
    fn due_below_the_threshold_within_the_caps() {
        let s = settings(RechargeTarget::Amount(Amount(5000)));
        assert_eq!(recharge_due(&s, 1999, Used::default()), Some(Amount(5000)));
        assert_eq!(recharge_due(&s, 2000, Used::default()), None);
        assert_eq!(recharge_due(&s, 10, Used { today: 1, month: 0 }), None);
        let capped = RechargeSettings { month_cap: Some(Amount(12_000)), ..s.clone() };
        assert_eq!(recharge_due(&capped, 10, Used { today: 0, month: 5000 }), Some(Amount(5000)));
        assert_eq!(recharge_due(&capped, 10, Used { today: 0, month: 10_000 }), None);
        let off = RechargeSettings { enabled: false, ..s };
        assert_eq!(recharge_due(&off, 10, Used::default()), None);
    }

    #[test]
    fn recharge_to_target_tops_up_to_the_target() {
        let s = settings(RechargeTarget::Balance(Amount(10_000)));
        assert_eq!(recharge_due(&s, 1500, Used::default()), Some(Amount(8500)));
        assert_eq!(recharge_due(&s, -500, Used::default()), Some(Amount(10_500)));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let field = |s: &RechargeSettings, r: bool| check_settings(s, r).unwrap_err().0;
        assert_eq!(field(&settings(RechargeTarget::Amount(Amount(0))), true), "recharge_amount");
        assert_eq!(field(&settings(RechargeTarget::Amount(Amount(-1))), true), "recharge_amount");
        assert_eq!(field(&settings(RechargeTarget::Balance(Amount(2000))), true), "target_balance");
        let ok = settings(RechargeTarget::Amount(Amount(1)));
        assert_eq!(field(&RechargeSettings { per_day_max: 0, ..ok.clone() }, true), "per_day_max");
        assert_eq!(field(&RechargeSettings { month_cap: Some(Amount(0)), ..ok.clone() }, true), "month_cap");
        assert_eq!(field(&RechargeSettings { method: RechargeMethod::Card, ..ok.clone() }, true), "method");
        assert_eq!(field(&RechargeSettings { method: RechargeMethod::MasterAccount, ..ok.clone() }, false), "method");
        assert!(check_settings(&RechargeSettings { method: RechargeMethod::MasterAccount, ..ok }, true).is_ok());
    }
}
