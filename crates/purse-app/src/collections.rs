//! Collections: dunning policies (when a usage invoice is due, when reminders go, when a
//! customer is suspended), suspending a customer and lifting it. The scheduler's side is in
//! `notifier::collections`; staff suspend and lift by hand here.
//!
//! A suspension is the ledger's `Suspend` command (every account of the customer stops
//! spending) and a row of the `suspensions` table, with its audit entry and its notification,
//! written in one transaction (`Engine::submit_with`): the ledger, the row and the log never
//! disagree, and the unique suspension in force per customer makes it once-only across
//! processes.

use std::sync::Arc;

use purse_core::{Command, Item, Party, PartyId, PartyKind, Role, Timestamp};
use purse_engine::Engine;
use purse_store::collections::{self as store, Cause};
use purse_store::{
    AlertBatch, AlertKind, AlertStore, DunningPolicy, Fire, InvoiceRecord, NewNotification, PaymentNotice, PolicyOwner,
    Reader, Suspension,
};
use serde_json::json;

use crate::{App, AppError, AppResult, Code, Principal, Problems};

/// Most reminder days in a policy.
pub const REMINDERS_MAX: usize = 10;
/// Longest payment terms, reminder delay or suspension delay, in days.
pub const DAYS_MAX: i64 = 365;
const DAY_US: i64 = 86_400 * 1_000_000;

/// A dunning policy as asked for.
#[derive(Clone, Debug, Default)]
pub struct PolicyInput {
    pub payment_terms_days: Option<i64>,
    pub reminder_days: Vec<i64>,
    /// Each reminder's own text, by step (see [`render_reminder`]); fewer than the reminders
    /// or empty: the default text for the rest.
    pub reminder_texts: Vec<String>,
    pub suspend_after_days: Option<i64>,
    pub suspend_below: Option<String>,
}

/// The policy that applies to a customer: its class's, else its reseller's, else the
/// operator's.
pub fn policy_for<'a>(policies: &'a [DunningPolicy], party: &Party, class: Option<u64>) -> Option<&'a DunningPolicy> {
    let find = |owner: PolicyOwner| policies.iter().find(|p| p.owner == owner);
    let reseller = match party.kind {
        PartyKind::Customer { reseller, .. } => reseller,
        PartyKind::Reseller => None,
    };
    class
        .and_then(|c| find(PolicyOwner::Class(c)))
        .or_else(|| reseller.and_then(|r| find(PolicyOwner::Reseller(r))))
        .or_else(|| find(PolicyOwner::Operator))
}

/// When a usage invoice is due: the date fixed when it was sent, else as `policy` says.
pub fn due_at(invoice: &InvoiceRecord, policy: &DunningPolicy) -> Timestamp {
    invoice.due_at.unwrap_or_else(|| terms_due(invoice, policy))
}

/// When a usage invoice is due under `policy`'s payment terms.
pub fn terms_due(invoice: &InvoiceRecord, policy: &DunningPolicy) -> Timestamp {
    Timestamp(invoice.created_at.0.saturating_add(i64::from(policy.payment_terms_days) * DAY_US))
}

/// A usage invoice's due date as the customer is told it: the date fixed when it was sent,
/// else what the policy in force says; none without a policy. Blocking.
pub fn invoice_due(
    store: &dyn purse_store::PaymentStore,
    credit: Option<&dyn purse_store::CreditStore>,
    party: &Party,
    invoice: &InvoiceRecord,
) -> AppResult<Option<Timestamp>> {
    if invoice.due_at.is_some() || invoice.kind != purse_store::InvoiceKind::Usage {
        return Ok(invoice.due_at);
    }
    let policies = store.dunning_policies()?;
    let class = match credit {
        Some(c) => c.credit_policy(party.id)?.and_then(|p| p.class),
        None => None,
    };
    Ok(policy_for(&policies, party, class).map(|p| terms_due(invoice, p)))
}

/// Whole days an invoice is overdue at `now` (0 on its due day; none before it is due).
pub fn days_overdue(invoice: &InvoiceRecord, policy: &DunningPolicy, now: Timestamp) -> Option<u32> {
    let due = due_at(invoice, policy);
    (now >= due).then(|| u32::try_from((now.0 - due.0) / DAY_US).unwrap_or(u32::MAX))
}

/// Which owner a policy's `owner` text names, if the caller may set it: the operator any,
/// a reseller only its own.
pub fn owner_for(s: &App, who: &Principal, text: &str) -> AppResult<PolicyOwner> {
    let owner = PolicyOwner::parse(text).ok_or_else(|| {
        AppError::invalid("owner", Code::InvalidTarget, "owner is operator, reseller:{id} or class:{id}")
    })?;
    let allowed = match (who.role, owner) {
        (Role::Operator, PolicyOwner::Operator) => true,
        (Role::Operator, PolicyOwner::Reseller(r)) => s.party_of_kind(who, r.0, true).is_ok(),
        (Role::Operator, PolicyOwner::Class(c)) => s.credit.classes()?.iter().any(|k| k.id == c),
        (Role::Reseller(me), PolicyOwner::Reseller(r)) => me == r,
        _ => false,
    };
    if !allowed {
        return Err(AppError::ForbiddenField {
            field: "owner",
            message: "the operator sets the default and a class's or a reseller's policy; a reseller only its own"
                .into(),
        });
    }
    Ok(owner)
}

/// The policies the caller may see: the operator all; a reseller the default, the classes'
/// and its own.
pub fn visible_policies(s: &App, who: &Principal) -> AppResult<Vec<DunningPolicy>> {
    let all = s.payments.dunning_policies()?;
    Ok(match who.role {
        Role::Operator => all,
        Role::Reseller(me) => {
            all.into_iter().filter(|p| !matches!(p.owner, PolicyOwner::Reseller(r) if r != me)).collect()
        }
        Role::Customer(_) => Vec::new(),
    })
}

/// Checks a policy whole (every wrong field at once) and saves it with its audit entry.
pub fn put_policy(s: &App, who: &Principal, owner: PolicyOwner, input: PolicyInput) -> AppResult<DunningPolicy> {
    let policy = check_policy(owner, input, s.now())?;
    save_policy(s, who, &policy)?;
    Ok(policy)
}

/// The policy `input` asks for, checked whole: every wrong field at once. Saves nothing.
pub fn check_policy(owner: PolicyOwner, input: PolicyInput, now: Timestamp) -> AppResult<DunningPolicy> {
    let mut problems = Problems::default();
    let days = |field: &'static str, v: i64, min: i64, what: &str| {
        if (min..=DAYS_MAX).contains(&v) {
            Ok(u32::try_from(v).unwrap_or(0))
        } else {
            Err(AppError::invalid(field, Code::OutOfRange, format!("{what} from {min} to {DAYS_MAX} days")))
        }
    };
    let terms =
        problems.check(days("payment_terms_days", input.payment_terms_days.unwrap_or(14), 0, "an invoice is due"));
    let mut reminders = Vec::new();
    if input.reminder_days.len() > REMINDERS_MAX {
        problems.note(AppError::invalid("reminder_days", Code::TooMany, format!("at most {REMINDERS_MAX} reminders")));
    }
    for d in &input.reminder_days {
        match days("reminder_days", *d, 0, "a reminder goes") {
            Ok(d) if reminders.last().is_some_and(|l| *l >= d) => problems.note(AppError::invalid(
                "reminder_days",
                Code::InvalidDays,
                "reminder days are ascending, each once (such as 3, 7, 14)",
            )),
            Ok(d) => reminders.push(d),
            Err(e) => problems.note(e),
        }
    }
    if input.reminder_texts.len() > input.reminder_days.len() {
        problems.note(AppError::invalid(
            "reminder_texts",
            Code::TooMany,
            "one text per reminder at most: there are more texts than reminder days",
        ));
    }
    let mut texts = Vec::new();
    for text in &input.reminder_texts {
        let text = text.replace("\r\n", "\n").trim().to_owned();
        match check_reminder_text(&text) {
            Ok(()) => texts.push(text),
            Err(e) => {
                problems.note(e);
                break;
            }
        }
    }
    while texts.last().is_some_and(String::is_empty) {
        texts.pop();
    }
    let suspend_after =
        input.suspend_after_days.map(|d| days("suspend_after_days", d, 1, "a customer is suspended")).transpose();
    let suspend_after = problems.check(suspend_after);
    let below = input.suspend_below.map(|b| b.trim().to_owned()).filter(|b| !b.is_empty());
    if let Some(b) = &below {
        // A decimal at most zero; it is read in each customer's own currency.
        let shaped = b.strip_prefix('-').unwrap_or(b);
        let (whole, fraction) = shaped.split_once('.').map_or((shaped, ""), |(w, f)| (w, f));
        let digits = |t: &str, max: usize| t.len() <= max && t.bytes().all(|c| c.is_ascii_digit());
        let zero = shaped.bytes().all(|c| c == b'0' || c == b'.');
        if whole.is_empty() || !digits(whole, 15) || !digits(fraction, 9) || (!b.starts_with('-') && !zero) {
            problems.note(AppError::invalid(
                "suspend_below",
                Code::InvalidAmount,
                "a balance of zero or less, such as -50.00",
            ));
        }
    }
    problems.finish()?;
    Ok(DunningPolicy {
        owner,
        payment_terms_days: terms.unwrap_or(14),
        reminder_days: reminders,
        reminder_texts: texts,
        suspend_after_days: suspend_after.flatten(),
        suspend_below: below,
        updated_at: now,
    })
}

/// What a reminder's text may say of the invoice and the customer.
pub const REMINDER_FIELDS: [&str; 6] = ["customer", "invoice", "amount_due", "due_on", "days_overdue", "suspend_after"];
/// The longest reminder text.
pub const REMINDER_TEXT_MAX: usize = 2000;

/// A reminder's text is printable (lines and tabs allowed), at most 2,000 bytes, and names
/// only the fields of [`REMINDER_FIELDS`] in braces.
fn check_reminder_text(text: &str) -> AppResult<()> {
    let field = "reminder_texts";
    if text.len() > REMINDER_TEXT_MAX {
        let message = format!("a reminder's text is at most {REMINDER_TEXT_MAX} bytes");
        return Err(AppError::invalid(field, Code::TextTooLong, message));
    }
    if !purse_core::text::is_multi_line(text) {
        return Err(AppError::invalid(field, Code::TextNotPrintable, "a reminder's text has a control character"));
    }
    match purse_core::alerts::unknown_of(text, &REMINDER_FIELDS) {
        Some(unknown) => Err(AppError::invalid(
            field,
            Code::UnknownPlaceholder,
            format!(
                "{{{unknown}}} is not a placeholder; use {}",
                REMINDER_FIELDS.map(|p| format!("{{{p}}}")).join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Saves a checked policy with its audit entry (the state before and after).
pub fn save_policy(s: &App, who: &Principal, policy: &DunningPolicy) -> AppResult<()> {
    let owner = policy.owner;
    let before = s.payments.dunning_policies()?.into_iter().find(|p| p.owner == owner).map(|p| policy_json(&p));
    let party = match owner {
        PolicyOwner::Reseller(r) => Some(r),
        _ => None,
    };
    let after = policy_json(policy);
    let audit = s.audit_entry(who, party, "dunning_policy", owner.key(), "put", before.as_ref(), Some(&after))?;
    s.payments.put_dunning_policy(policy, &audit)?;
    Ok(())
}

/// Deletes a policy; its customers fall back to the next one.
pub fn delete_policy(s: &App, who: &Principal, owner: PolicyOwner) -> AppResult<()> {
    let before = s.payments.dunning_policies()?.into_iter().find(|p| p.owner == owner).map(|p| policy_json(&p));
    let party = match owner {
        PolicyOwner::Reseller(r) => Some(r),
        _ => None,
    };
    let audit = s.audit_entry(who, party, "dunning_policy", owner.key(), "delete", before.as_ref(), None)?;
    if !s.payments.delete_dunning_policy(owner, &audit)? {
        return Err(AppError::NotFound("dunning policy"));
    }
    Ok(())
}

pub fn policy_json(p: &DunningPolicy) -> serde_json::Value {
    json!({
        "owner": p.owner.key(),
        "payment_terms_days": p.payment_terms_days,
        "reminder_days": p.reminder_days,
        "reminder_texts": p.reminder_texts,
        "suspend_after_days": p.suspend_after_days,
        "suspend_below": p.suspend_below,
        "updated_at": purse_core::time::format(p.updated_at),
    })
}

/// A change of a customer's standing.
#[derive(Clone, Debug)]
pub enum Change {
    Suspend { cause: Cause, detail: String },
    Lift { reason: String },
}

/// E-mail addresses, and webhook endpoints with their URLs.
pub type Recipients = (Vec<String>, Vec<(u64, String)>);

/// Who hears about a customer's billing: its billing e-mail, and the enabled webhook
/// endpoints of the operator, its reseller and itself.
pub fn billing_recipients(alerts: &dyn AlertStore, party: &Party) -> AppResult<Recipients> {
    let emails = alerts.alert_settings(party.id)?.and_then(|a| a.email).into_iter().collect();
    let reseller = match party.kind {
        PartyKind::Customer { reseller, .. } => reseller,
        PartyKind::Reseller => None,
    };
    let endpoints = alerts
        .endpoints()?
        .into_iter()
        .filter(|e| e.enabled && (e.owner.is_none() || e.owner == reseller || e.owner == Some(party.id)))
        .map(|e| (e.id, e.url))
        .collect();
    Ok((emails, endpoints))
}

/// A collections notice about `party` to its billing recipients (none when nobody listens).
#[allow(clippy::too_many_arguments)]
pub fn notice(
    alerts: &dyn AlertStore,
    party: &Party,
    kind: PaymentNotice,
    amount: i64,
    subject: String,
    body: String,
    data: serde_json::Value,
    now: Timestamp,
) -> AppResult<Option<NewNotification>> {
    let PartyKind::Customer { currency, .. } = party.kind else { return Ok(None) };
    let (emails, endpoints) = billing_recipients(alerts, party)?;
    if emails.is_empty() && endpoints.is_empty() {
        return Ok(None);
    }
    let payload =
        json!({ "type": kind.event_type(), "timestamp": purse_core::time::format(now), "data": data }).to_string();
    Ok(Some(NewNotification {
        party: party.id,
        kind: AlertKind::Payment(kind),
        threshold: amount,
        available: amount,
        currency,
        at: now,
        subject,
        body,
        payload,
        emails,
        endpoints,
    }))
}

/// Suspends a customer or lifts its suspension: the ledger's `Suspend` on every account of
/// the customer, the suspension's row and audit entry, and its notice, in one transaction.
/// Returns whether this call changed the customer's standing (another process or an earlier
/// call may have done it). Blocking.
pub fn change_standing(
    engine: &Engine,
    reader: &dyn Reader,
    alerts: &dyn AlertStore,
    party: &Party,
    change: Change,
    by: &str,
    now: Timestamp,
) -> AppResult<bool> {
    let accounts: Vec<_> = reader.accounts_of(party.id)?.into_iter().map(|a| a.id).collect();
    let (suspended, note) = match &change {
        Change::Suspend { detail, .. } => {
            let subject = format!("{} is suspended: {detail}", party.name);
            let body = format!(
                "Hello,\n\n{} is suspended: {detail}.\nUntil it is lifted, charges, holds and calls on its accounts are \
                 refused. Paying what is overdue lifts it at once: pay in the portal (Invoices and payments) or ask your \
                 account manager.\n\n-- Purse",
                party.name
            );
            let data = json!({ "customer": party.id.0, "reason": detail });
            (true, notice(alerts, party, PaymentNotice::Suspended, 0, subject, body, data, now)?)
        }
        Change::Lift { reason } => {
            let subject = format!("{} is no longer suspended", party.name);
            let body = format!(
                "Hello,\n\nThe suspension of {} is lifted: {reason}. Its accounts can be charged again.\n\n-- Purse",
                party.name
            );
            let data = json!({ "customer": party.id.0, "reason": reason });
            (false, notice(alerts, party, PaymentNotice::SuspensionLifted, 0, subject, body, data, now)?)
        }
    };
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let after = {
        let (party_id, change, by, changed) = (party.id, change.clone(), by.to_owned(), changed.clone());
        Box::new(move |results: &[purse_core::CommandResult], db: &mut dyn purse_store::Db| {
            if !results.iter().all(Result::is_ok) {
                return Ok(());
            }
            let did = match &change {
                Change::Suspend { cause, detail } => store::start(db, party_id, *cause, detail, now, &by)?,
                Change::Lift { reason } => store::lift(db, party_id, now, &by, reason)?.is_some(),
            };
            if did {
                if let Some(n) = &note {
                    let fires = vec![Fire { counter: None, notification: n.clone() }];
                    purse_store::alert_sql::record(db, &AlertBatch { fires, ..AlertBatch::default() }, now)?;
                }
                changed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }) as purse_engine::After
    };
    let command = Command::Suspend { party: party.id, accounts, suspended };
    let results = engine.submit_with(vec![Item::single(command)], after)?;
    if let Some(Err(r)) = results.into_iter().next() {
        return Err(AppError::Rejected(r));
    }
    Ok(changed.load(std::sync::atomic::Ordering::SeqCst))
}

/// A customer's standing as the caller may see it: the suspension in force and the past ones.
pub fn standing(s: &App, who: &Principal, customer: u64) -> AppResult<(Party, Option<Suspension>, Vec<Suspension>)> {
    let party = s.party_of_kind(who, customer, false)?;
    let history = s.payments.suspensions(party.id, 50)?;
    let current = history.iter().find(|x| x.lifted_at.is_none()).cloned();
    Ok((party, current, history))
}

/// Staff suspend a customer by hand (with a reason) or lift its suspension, whatever its cause.
pub fn set_standing(s: &App, who: &Principal, customer: u64, suspend: bool, reason: &str) -> AppResult<bool> {
    let party = s.party_of_kind(who, customer, false)?;
    let reason = crate::parse::reason_text(Some(reason))?.ok_or_else(|| {
        AppError::invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept in the audit log")
    })?;
    let change =
        if suspend { Change::Suspend { cause: Cause::Staff, detail: reason } } else { Change::Lift { reason } };
    let reader = s.engine.reader();
    change_standing(&s.engine, reader.as_ref(), s.alerts.as_ref(), &party, change, &s.actor(who)?, s.now())
}

/// Whether `party` still has an overdue invoice among `unpaid` under its policy.
pub fn has_overdue(unpaid: &[InvoiceRecord], party: PartyId, policy: Option<&DunningPolicy>, now: Timestamp) -> bool {
    let Some(policy) = policy else { return false };
    unpaid.iter().any(|i| i.party == party && days_overdue(i, policy, now).is_some())
}
