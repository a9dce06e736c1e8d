//! Auto-recharge and payments: a customer's recharge settings (seed 000's Balance Details,
//! seed 004's payment settings), saving a card, Pay Now (seed 002), the recharges made, and
//! receipt vouchers with the payments they record.

use purse_core::recharge::{self, RechargeMethod, RechargeSettings, RechargeTarget};
use purse_core::time;
use purse_core::{Amount, Currency, Party, PartyKind, Role};
use purse_store::{ReceiptRecord, RechargeRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::alerts::emails;
use crate::cards::{CardDetails, PayError};
use crate::parse::{amount, currency_code};
use crate::policy::{self, Field};
use crate::{App, AppError, AppResult, Code, Principal, Problems};

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RechargeBody {
    pub enabled: bool,
    /// `card`, `invoice` or `master_account`.
    pub method: String,
    /// The currency the amounts are in; must be the customer's (its currency when absent).
    pub currency: Option<String>,
    pub threshold: String,
    /// A fixed recharge amount; or `target_balance` to recharge up to it.
    pub recharge_amount: Option<String>,
    pub target_balance: Option<String>,
    /// Automatic recharges per day at most (default 1).
    pub per_day_max: Option<u32>,
    /// Most recharged per calendar month.
    pub month_cap: Option<String>,
    #[serde(default)]
    pub emails: Vec<String>,
}

/// The customer a path names, if the caller sees it.
pub fn customer(s: &App, who: &Principal, id: u64) -> Result<(Party, Currency), AppError> {
    let party = s.party_for(who, id)?;
    match party.kind {
        PartyKind::Customer { currency, .. } => {
            let c = s.currency("currency", currency)?;
            Ok((party, c))
        }
        PartyKind::Reseller => Err(AppError::NotFound("customer")),
    }
}

pub fn settings_view(s: &App, party: &Party, c: &Currency) -> Result<Value, AppError> {
    let settings =
        s.payments.recharge_settings(party.id)?.unwrap_or_else(|| RechargeSettings::off(party.id, party.created_at));
    let (amount, target) = match settings.target {
        RechargeTarget::Amount(a) => (Some(c.format(a)), None),
        RechargeTarget::Balance(t) => (None, Some(c.format(t))),
    };
    Ok(json!({
        "customer": party.id.0,
        "enabled": settings.enabled,
        "method": settings.method.as_str(),
        "currency": c.code.to_string(),
        "threshold": c.format(settings.threshold),
        "recharge_amount": amount,
        "target_balance": target,
        "per_day_max": settings.per_day_max,
        "month_cap": settings.month_cap.map(|m| c.format(m)),
        "emails": settings.emails,
        "card": settings.card.as_ref().map(|k| json!({ "brand": k.brand, "last4": k.last4 })),
        "consecutive_failures": settings.failures,
        "disabled_reason": settings.disabled_reason,
        "card_payments_configured": s.cards.as_ref().is_some_and(|k| k.configured()),
        "updated_at": time::format(settings.updated_at),
    }))
}

/// Checks and stores a customer's recharge settings (blocking); bad input changes nothing.
pub fn save_settings(
    s: &App,
    who: &Principal,
    party: &Party,
    c: &Currency,
    body: RechargeBody,
) -> Result<(), AppError> {
    let PartyKind::Customer { reseller, .. } = party.kind else { return Err(AppError::NotFound("customer")) };
    let mut problems = Problems::default();
    if let Some(text) = body.currency.as_deref() {
        if let Some(code) = problems.check(currency_code("currency", text)) {
            if code != c.code {
                problems.note(AppError::invalid(
                    "currency",
                    Code::CurrencyMismatch,
                    format!("the amounts must be in the customer's currency {}, not {code}", c.code),
                ));
            }
        }
    }
    let method = problems.check(RechargeMethod::parse(&body.method).ok_or_else(|| {
        AppError::invalid("method", Code::InvalidMethod, "choose card, invoice or the reseller's master account")
    }));
    let threshold = problems.check(amount("threshold", &body.threshold, *c));
    let target = match (&body.recharge_amount, &body.target_balance) {
        (Some(a), None) => problems.check(amount("recharge_amount", a, *c)).map(RechargeTarget::Amount),
        (None, Some(t)) => problems.check(amount("target_balance", t, *c)).map(RechargeTarget::Balance),
        _ => {
            problems.note(AppError::invalid(
                "recharge_amount",
                Code::InvalidTarget,
                "give either a recharge amount or a target balance",
            ));
            None
        }
    };
    let month_cap = problems.check(body.month_cap.as_deref().map(|m| amount("month_cap", m, *c)).transpose());
    let emails = problems.check(emails("emails", &body.emails));
    // What could not be read stands in as a harmless value, so the rules below are still
    // checked on everything else and one answer names every wrong field.
    let read_all = problems.is_empty();
    let method = method.unwrap_or(RechargeMethod::Invoice);
    let threshold = threshold.unwrap_or(Amount::ZERO);
    let target = target.unwrap_or(RechargeTarget::Amount(Amount(1)));
    let month_cap = month_cap.flatten();
    let emails = emails.unwrap_or_default();
    let old = s.payments.recharge_settings(party.id)?;
    // The reseller's master wallet is the reseller's money: only staff choose it, with its
    // threshold, amount and caps. A customer may turn such settings off, or leave them be.
    if read_all && method == RechargeMethod::MasterAccount && !policy::may_set(who.role, Field::MasterAccountRecharge) {
        let per_day_max = body.per_day_max.unwrap_or(1);
        let unchanged = old.as_ref().is_some_and(|o| {
            o.method == method
                && o.threshold == threshold
                && o.target == target
                && o.per_day_max == per_day_max
                && o.month_cap == month_cap
        });
        if !unchanged || (body.enabled && !old.as_ref().is_some_and(|o| o.enabled)) {
            return Err(AppError::ForbiddenField {
                field: "method",
                message: "only the operator's or the reseller's staff choose recharges from the reseller's master account; choose card or invoice".into(),
            });
        }
    }
    let now = s.engine.clock().now();
    let mut settings = old.clone().unwrap_or_else(|| RechargeSettings::off(party.id, now));
    settings.enabled = body.enabled;
    settings.method = method;
    settings.threshold = threshold;
    settings.target = target;
    settings.per_day_max = body.per_day_max.unwrap_or(1);
    settings.month_cap = month_cap;
    settings.emails = emails;
    settings.updated_at = now;
    if body.enabled {
        // Turning it on again clears what turned it off.
        settings.disabled_reason = None;
        settings.failures = 0;
    }
    for (field, m) in recharge::settings_problems(&settings, reseller.is_some()) {
        problems.note(AppError::invalid(field, Code::InvalidRechargeSettings, m));
    }
    problems.finish()?;
    let before = settings_view(s, party, c)?;
    s.payments.put_recharge_settings(&settings)?;
    s.audit(
        who,
        Some(party.id),
        "recharge_settings",
        party.id,
        "update",
        Some(&before),
        Some(&settings_view(s, party, c)?),
    )?;
    Ok(())
}

/// What a customer's automatic recharges used of their caps today and this month (in the
/// customer's time zone), and the cap that holds back a recharge due now, if one does:
/// `{"today", "per_day_max", "month", "month_cap", "held_back": null | "daily_limit" |
/// "monthly_cap"}`; `null` without settings. Blocking.
pub fn caps_view(s: &App, party: &Party, c: &Currency) -> AppResult<Value> {
    let Some(settings) = s.payments.recharge_settings(party.id)? else { return Ok(Value::Null) };
    let PartyKind::Customer { wallet, .. } = party.kind else { return Ok(Value::Null) };
    let now = s.engine.clock().now();
    let day = time::format_date(s.zone_of(party.id)?.day_of(now));
    let used = s.payments.recharges_used(party.id, &day, &day[..7])?;
    let available = match s.engine.reader().account(wallet)? {
        Some(account) => crate::accounts::live(s, &account)?.1,
        None => 0,
    };
    let held = recharge::cap_reached(&settings, available, used).map(|cap| match cap {
        recharge::Cap::Daily => "daily_limit",
        recharge::Cap::Monthly => "monthly_cap",
    });
    Ok(json!({
        "today": used.today,
        "per_day_max": settings.per_day_max,
        "month": c.format(Amount(i64::try_from(used.month).unwrap_or(i64::MAX))),
        "month_cap": settings.month_cap.map(|m| c.format(m)),
        "held_back": held,
    }))
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CardBody {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: String,
}

/// Checks card details as typed (Stripe checks the rest).
pub fn card_details(body: &CardBody) -> Result<CardDetails, AppError> {
    let number: String = body.number.chars().filter(|c| !c.is_whitespace()).collect();
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::invalid("card.number", Code::InvalidCard, "the card number must be 12 to 19 digits"));
    }
    if !(1..=12).contains(&body.exp_month) {
        return Err(AppError::invalid("card.exp_month", Code::InvalidCard, "the expiry month must be 1 to 12"));
    }
    if !(2000..=2100).contains(&body.exp_year) {
        return Err(AppError::invalid("card.exp_year", Code::InvalidCard, "the expiry year must be four digits"));
    }
    if !(3..=4).contains(&body.cvc.len()) || !body.cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::invalid("card.cvc", Code::InvalidCard, "the CVC must be 3 or 4 digits"));
    }
    Ok(CardDetails { number, exp_month: body.exp_month, exp_year: body.exp_year, cvc: body.cvc.clone() })
}

pub(crate) fn pay_error(e: PayError) -> AppError {
    match e {
        PayError::NotConfigured => AppError::CardsNotConfigured,
        PayError::Invalid { field, message } => AppError::invalid(field, Code::InvalidPayment, message),
        PayError::Declined(m) => AppError::PaymentDeclined(m),
        PayError::Pending(m) => AppError::PaymentPending(m),
        PayError::Internal(m) => AppError::Internal(m),
    }
}

/// Saves a card at Stripe for the customer and records the change (blocking).
pub fn saved_card(
    s: &App,
    who: &Principal,
    party: &Party,
    c: &Currency,
    details: &CardDetails,
) -> Result<(), AppError> {
    let cards = s.cards.as_ref().filter(|k| k.configured()).ok_or(AppError::CardsNotConfigured)?;
    let email = s.alerts.alert_settings(party.id)?.and_then(|a| a.email);
    let before = settings_view(s, party, c)?;
    cards.save_card(party, email.as_deref(), details).map_err(|e| match e {
        // Nothing finishes a card's saving in the background: say so, and that a retry is safe.
        PayError::Pending(m) => AppError::Upstream(format!("{m}; the card was not saved")),
        other => pay_error(other),
    })?;
    s.audit(
        who,
        Some(party.id),
        "card",
        party.id,
        "save",
        Some(&before["card"]),
        Some(&settings_view(s, party, c)?["card"]),
    )?;
    Ok(())
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PayNowBody {
    /// What to pay; the amount due when absent.
    pub amount: Option<String>,
    /// A new card to save first (the first online top-up); the saved card when absent.
    pub card: Option<CardBody>,
    /// Saves auto-recharge by card with this threshold and amount once the payment succeeds
    /// (seed 004: the first online top-up sets them).
    pub auto_recharge: Option<AutoRechargeBody>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AutoRechargeBody {
    pub threshold: String,
    pub recharge_amount: String,
}

/// What the customer owes: the posted balance below zero.
pub fn amount_due(s: &App, party: &Party) -> Result<Amount, AppError> {
    let PartyKind::Customer { wallet, .. } = party.kind else { return Ok(Amount::ZERO) };
    let w = s.engine.reader().account(wallet)?.ok_or(AppError::NotFound("account"))?;
    Ok(Amount(w.balance.0.min(0).saturating_neg()))
}

pub fn recharge_view(r: &RechargeRecord, c: &Currency) -> Value {
    json!({
        "id": r.id,
        "customer": r.party.0,
        "method": r.method.as_str(),
        "reason": r.reason.as_str(),
        "amount": c.format(Amount(r.amount)),
        "currency": r.currency.to_string(),
        "status": r.status.as_str(),
        "created_at": time::format(r.created_at),
        "finished_at": r.finished_at.map(time::format),
        "payment_intent": r.intent,
        "transfer": r.transfer,
        "invoice": r.invoice,
        "error": r.error,
    })
}

/// Pay Now (blocking): saves a new card if given, charges, and on success may save
/// auto-recharge settings. Shared with the portal.
pub fn pay_now(
    s: &App,
    who: &Principal,
    id: u64,
    body: PayNowBody,
    request_key: Option<String>,
) -> Result<(RechargeRecord, Currency), AppError> {
    let (party, c) = customer(s, who, id)?;
    let cards = s.cards.as_ref().filter(|k| k.configured()).ok_or(AppError::CardsNotConfigured)?;
    let amount = match &body.amount {
        Some(a) => amount("amount", a, c)?,
        None => amount_due(s, &party)?,
    };
    if !amount.is_positive() {
        return Err(AppError::invalid(
            "amount",
            Code::InvalidAmount,
            "the amount must be more than zero (nothing is due: give an amount)",
        ));
    }
    let auto = match &body.auto_recharge {
        Some(a) => {
            let body = RechargeBody {
                enabled: true,
                method: "card".into(),
                threshold: a.threshold.clone(),
                recharge_amount: Some(a.recharge_amount.clone()),
                ..RechargeBody::default()
            };
            crate::parse::amount("auto_recharge.threshold", &body.threshold, c)?;
            let recharge_amount = crate::parse::amount("auto_recharge.recharge_amount", &a.recharge_amount, c)?;
            if !recharge_amount.is_positive() {
                return Err(AppError::invalid(
                    "auto_recharge.recharge_amount",
                    Code::InvalidRechargeSettings,
                    "the recharge amount must be more than zero",
                ));
            }
            Some(body)
        }
        None => None,
    };
    let details = body.card.as_ref().map(card_details).transpose()?;
    if let Some(details) = &details {
        saved_card(s, who, &party, &c, details)?;
    }
    let done = cards.pay_now(&party, amount, request_key).map_err(pay_error)?;
    if let Some(auto) = auto {
        save_settings(s, who, &party, &c, auto)?;
    }
    Ok((done, c))
}

pub fn visible_customer(
    s: &App,
    who: &Principal,
    customer_id: Option<u64>,
) -> Result<Option<purse_core::PartyId>, AppError> {
    match (customer_id, who.role) {
        (Some(id), _) => Ok(Some(customer(s, who, id)?.0.id)),
        (None, Role::Customer(me)) => Ok(Some(me)),
        (None, _) => Ok(None),
    }
}

pub fn sees(s: &App, who: &Principal, party: purse_core::PartyId) -> Result<bool, AppError> {
    Ok(match s.engine.reader().party(party)? {
        Some(p) => who.sees_party(&p),
        None => false,
    })
}

/// A payment's receipt voucher as a PDF (seed 002): issuer, number, date, who paid, how,
/// the invoice it paid (its number, when it was made for one) and the amount received.
pub fn receipt_document(
    r: &ReceiptRecord,
    customer: &Party,
    issuer: Option<&Party>,
    invoice: Option<&str>,
    c: &Currency,
) -> Vec<u8> {
    use crate::documents::{Pdf, MARGIN, RIGHT};
    let issuer = issuer.map_or_else(|| "Purse".to_owned(), |p| p.name.clone());
    let number = r.display_number();
    let amount = format!("{} {}", c.format(Amount(r.amount)), c.code);
    let mut pdf = Pdf::new(&format!("Receipt voucher {number}"));
    pdf.text(MARGIN, 18.0, true, &issuer);
    pdf.right(RIGHT, 18.0, true, "RECEIPT VOUCHER");
    pdf.down(26.0);
    let paid = time::format(r.paid_at);
    let method = r.method.replace('_', " ");
    let mut facts = vec![
        ("Receipt number", number.as_str()),
        ("Received on", &paid[..10]),
        ("Received from", &customer.name),
        ("Paid by", &method),
    ];
    facts.extend(invoice.map(|i| ("For invoice", i)));
    for (label, value) in facts {
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, label == "Receipt number", value);
        pdf.down(14.0);
    }
    pdf.rule();
    pdf.down(20.0);
    if let Some(name) = r.tax_name.as_deref().filter(|_| r.tax != 0) {
        // Taxed at top-up: the tax is inside what was received; the net is what it buys.
        let money = |v: i64| format!("{} {}", c.format(Amount(v)), c.code);
        for (label, value) in [
            ("Net", money(r.amount - r.tax)),
            (format!("{name} {}%", crate::taxes::percent_text(r.tax_rate)).as_str(), money(r.tax)),
        ] {
            pdf.text(MARGIN, 10.0, false, label);
            pdf.right(RIGHT, 10.0, false, &value);
            pdf.down(14.0);
        }
        pdf.down(6.0);
    }
    pdf.text(MARGIN, 12.0, true, "Amount received");
    pdf.right(RIGHT, 12.0, true, &amount);
    pdf.down(36.0);
    pdf.text(
        MARGIN,
        9.0,
        false,
        if r.tax != 0 {
            "The amount less its tax was credited to the balance when it was received."
        } else {
            "The amount was credited to the balance when it was received."
        },
    );
    pdf.finish()
}

/// A payment's receipt with what of it is allocated, and to which invoices. Blocking.
pub fn receipt_view(s: &App, r: &ReceiptRecord) -> Result<Value, AppError> {
    let c = s.currency("currency", r.currency)?;
    let mut allocations = Vec::new();
    for a in s.payments.allocations(r.party, None, Some(r.id))? {
        let number = s.payments.invoice(a.invoice)?.map(|i| i.display_number());
        allocations.push(super::invoices::allocation_view(&a, &c, number.as_deref(), Some(&r.display_number())));
    }
    let mut view = receipt_summary(r, &c);
    view["allocations"] = Value::Array(allocations);
    Ok(view)
}

pub fn receipt_summary(r: &ReceiptRecord, c: &Currency) -> Value {
    let unallocated = if r.reversed_at.is_some() { 0 } else { r.net_left() - r.allocated };
    json!({
        // Taxed at top-up: the tax inside the payment (owed) and the net the balance gained.
        "net": r.tax_name.as_ref().map(|_| c.format(Amount(r.amount - r.tax))),
        "tax": r.tax_name.as_ref().map(|name| json!({
            "name": name,
            "percent": crate::taxes::percent_text(r.tax_rate),
            "amount": c.format(Amount(r.tax)),
        })),
        "allocated": c.format(Amount(r.allocated)),
        "unallocated": c.format(Amount(unallocated)),
        "reversed_at": r.reversed_at.map(time::format),
        "id": r.id,
        "number": r.display_number(),
        "customer": r.party.0,
        "issuer": r.issuer.map(|p| p.0),
        "transfer": r.transfer,
        "amount": c.format(Amount(r.amount)),
        "currency": r.currency.to_string(),
        "method": r.method,
        "paid_at": time::format(r.paid_at),
    })
}

/// A receipt the caller may see, with its PDF. Blocking.
pub fn visible_receipt(s: &App, who: &Principal, id: u64) -> Result<(ReceiptRecord, Vec<u8>), AppError> {
    let r = s
        .payments
        .receipt(id)?
        .filter(|r| sees(s, who, r.party).unwrap_or(false))
        .ok_or(AppError::NotFound("receipt"))?;
    let reader = s.engine.reader();
    let customer = reader.party(r.party)?.ok_or(AppError::NotFound("customer"))?;
    let issuer = r.issuer.map(|i| reader.party(i)).transpose()?.flatten();
    let c = s.currency("currency", r.currency)?;
    let invoice = r.invoice.map(|i| s.payments.invoice(i)).transpose()?.flatten().map(|i| i.display_number());
    let pdf = receipt_document(&r, &customer, issuer.as_ref(), invoice.as_deref(), &c);
    Ok((r, pdf))
}

/// E-mails a receipt voucher again to the customer's billing e-mail, with its PDF (staff
/// and the customer's admin). Blocking.
pub fn email_receipt(s: &App, who: &Principal, id: u64) -> Result<(ReceiptRecord, String), AppError> {
    let (r, _) = visible_receipt(s, who, id)?;
    let to = s.alerts.alert_settings(r.party)?.and_then(|a| a.email).ok_or_else(|| {
        AppError::invalid(
            "billing_email",
            Code::NoBillingEmail,
            "the customer has no billing e-mail to send the receipt to",
        )
    })?;
    let c = s.currency("currency", r.currency)?;
    let customer = s.engine.reader().party(r.party)?.ok_or(AppError::NotFound("customer"))?;
    let number = r.display_number();
    let now = s.engine.clock().now();
    let notification = purse_store::NewNotification {
        party: r.party,
        kind: purse_store::AlertKind::Payment(purse_store::PaymentNotice::Receipt),
        threshold: r.amount,
        available: 0,
        currency: r.currency,
        at: now,
        subject: format!("Receipt voucher {number}: {} {} received from {} (copy)", c.format(Amount(r.amount)), c.code, customer.name),
        body: format!("Hello,\n\nAs asked, here is receipt voucher {number} again: {} {} received on {}.\n\n-- Purse", c.format(Amount(r.amount)), c.code, &time::format(r.paid_at)[..10]),
        payload: json!({ "type": "payment.receipt", "timestamp": time::format(now), "data": { "customer": r.party.0, "receipt": number } }).to_string(),
        emails: vec![to.clone()],
        endpoints: Vec::new(),
    };
    let batch = purse_store::AlertBatch {
        fires: vec![purse_store::Fire { counter: None, notification }],
        ..purse_store::AlertBatch::default()
    };
    s.alerts.record_alerts(&batch, now)?;
    Ok((r, to))
}
