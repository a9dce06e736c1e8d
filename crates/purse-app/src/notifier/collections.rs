//! The scheduler's collections: reminders for overdue usage invoices, suspending customers
//! the dunning policy says to, and lifting a suspension as soon as its cause is cleared.
//!
//! Lifting is checked at every step while a suspension is in force, so a payment that clears
//! what was overdue lifts it as soon as the payment's receipt is allocated (the same step).
//! Reminders and new suspensions are decided on the periodic evaluation. A reminder is claimed
//! as a job (`dunning_reminder`, invoice and day) before it is recorded, so several processes
//! send it once; a suspension is once-only by its unique row (see `crate::collections`).

use std::collections::HashMap;

use purse_core::{Account, AccountKind, Amount, Billing, Party, PartyId, PartyKind, Timestamp};
use purse_store::collections::Cause;
use purse_store::{AlertBatch, DunningPolicy, Fire, InvoiceRecord, PaymentNotice, Suspension};
use serde_json::json;

use super::{wall_us, Notifier, Report, MICROS};
use crate::collections::{change_standing, days_overdue, due_at, has_overdue, notice, policy_for, Change};
use crate::AppResult;

/// Most unpaid usage invoices one pass looks at.
const UNPAID_MAX: u32 = 10_000;
/// Who the audit log says acted.
const BY: &str = "scheduler";

impl Notifier {
    /// Lifts what is cleared and, when `periodic`, reminds and suspends.
    pub(super) fn collect(&self, now: Timestamp, periodic: bool, report: &mut Report) -> AppResult<()> {
        let Some(p) = &self.payments else { return Ok(()) };
        let store = p.store();
        let in_force = store.suspensions_in_force()?;
        if in_force.is_empty() && !periodic {
            return Ok(());
        }
        let policies = store.dunning_policies()?;
        if policies.is_empty() && in_force.iter().all(|s| s.cause == Cause::Staff) {
            return Ok(());
        }
        let classes: HashMap<PartyId, Option<u64>> = match &self.credit {
            Some(c) => c.credit_policies()?.into_iter().map(|p| (p.party, p.class)).collect(),
            None => HashMap::new(),
        };
        let unpaid = store.unpaid_usage_invoices(now, UNPAID_MAX)?;
        let mut parties: HashMap<PartyId, Party> = HashMap::new();
        let mut party = |id: PartyId| -> AppResult<Option<Party>> {
            if let Some(p) = parties.get(&id) {
                return Ok(Some(p.clone()));
            }
            let found = self.reader.party(id)?;
            if let Some(p) = &found {
                parties.insert(id, p.clone());
            }
            Ok(found)
        };
        for s in &in_force {
            let Some(customer) = party(s.party)? else { continue };
            let policy = policy_for(&policies, &customer, classes.get(&s.party).copied().flatten());
            if let Some(reason) = self.cleared(s, &customer, policy, &unpaid, now)? {
                let change = Change::Lift { reason };
                if self.change(&customer, change, now)? {
                    report.lifted += 1;
                }
            }
        }
        if !periodic || policies.is_empty() {
            return Ok(());
        }
        let suspended: Vec<PartyId> = in_force.iter().map(|s| s.party).collect();
        for invoice in &unpaid {
            let Some(customer) = party(invoice.party)? else { continue };
            let Some(policy) = policy_for(&policies, &customer, classes.get(&invoice.party).copied().flatten()) else {
                continue;
            };
            let Some(days) = days_overdue(invoice, policy, now) else { continue };
            report.notifications += self.remind(invoice, &customer, policy, days, now)?;
            let over = policy.suspend_after_days.is_some_and(|n| days >= n);
            if over && !suspended.contains(&invoice.party) {
                let detail = format!("invoice {} is {days} days overdue", invoice.display_number());
                let change = Change::Suspend { cause: Cause::Overdue, detail };
                if self.change(&customer, change, now)? {
                    report.suspended += 1;
                }
            }
        }
        if policies.iter().any(|p| p.suspend_below.is_some()) {
            self.each_customer_page(|customers, accounts| {
                let wallets: HashMap<PartyId, &Account> = accounts
                    .iter()
                    .filter(|a| a.kind == AccountKind::Wallet)
                    .filter_map(|a| a.party.map(|p| (p, a)))
                    .collect();
                for customer in customers {
                    let PartyKind::Customer { billing: Billing::Prepaid, .. } = customer.kind else { continue };
                    let (Some(wallet), false) = (wallets.get(&customer.id), suspended.contains(&customer.id)) else {
                        continue;
                    };
                    let policy = policy_for(&policies, customer, classes.get(&customer.id).copied().flatten());
                    let Some(floor) = self.floor(policy, wallet)? else { continue };
                    if wallet.balance < floor {
                        let c = self.currency_of(wallet)?;
                        let detail = format!(
                            "the balance of {} {} is below {} {}",
                            c.format(wallet.balance),
                            c.code,
                            c.format(floor),
                            c.code
                        );
                        let change = Change::Suspend { cause: Cause::NegativeBalance, detail };
                        if self.change(customer, change, now)? {
                            report.suspended += 1;
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Suspends or lifts as the scheduler; whether this call changed the customer's standing.
    fn change(&self, customer: &Party, change: Change, now: Timestamp) -> AppResult<bool> {
        change_standing(&self.engine, self.reader.as_ref(), self.alerts.as_ref(), customer, change, BY, now)
    }

    /// Why a suspension can be lifted now, if it can: nothing overdue any more, or the
    /// balance back at or above the floor. A staff suspension is lifted by staff only.
    fn cleared(
        &self,
        s: &Suspension,
        customer: &Party,
        policy: Option<&DunningPolicy>,
        unpaid: &[InvoiceRecord],
        now: Timestamp,
    ) -> AppResult<Option<String>> {
        Ok(match s.cause {
            Cause::Staff => None,
            Cause::Overdue => {
                (!has_overdue(unpaid, customer.id, policy, now)).then(|| "what was overdue is paid".to_owned())
            }
            Cause::NegativeBalance => {
                let PartyKind::Customer { wallet, .. } = customer.kind else { return Ok(None) };
                let Some(wallet) = self.reader.account(wallet)? else { return Ok(None) };
                match self.floor(policy, &wallet)? {
                    Some(floor) if wallet.balance < floor => None,
                    _ => Some("the balance is back above the suspension floor".to_owned()),
                }
            }
        })
    }

    /// The balance below which the policy suspends a prepaid customer, in its currency.
    fn floor(&self, policy: Option<&DunningPolicy>, wallet: &Account) -> AppResult<Option<Amount>> {
        let Some(text) = policy.and_then(|p| p.suspend_below.as_deref()) else { return Ok(None) };
        // A floor with more decimals than the currency has is not usable for it.
        Ok(self.currency_of(wallet)?.parse(text).ok())
    }

    fn currency_of(&self, a: &Account) -> AppResult<purse_core::Currency> {
        self.reader
            .currencies()?
            .into_iter()
            .find(|c| c.code == a.currency)
            .ok_or_else(|| crate::AppError::Internal(format!("unknown currency {}", a.currency)))
    }

    /// Sends the latest reminder `days` overdue reaches, once across processes (the earlier
    /// ones, if this pass is late, are marked as passed). Returns the notifications recorded.
    fn remind(
        &self,
        invoice: &InvoiceRecord,
        customer: &Party,
        policy: &DunningPolicy,
        days: u32,
        now: Timestamp,
    ) -> AppResult<usize> {
        let reached: Vec<u32> = policy.reminder_days.iter().copied().filter(|d| *d <= days).collect();
        let Some(latest) = reached.last().copied() else { return Ok(0) };
        let wall = wall_us();
        let key = |d: u32| format!("{}:{d}", invoice.id);
        if !self.alerts.claim_job("dunning_reminder", &key(latest), &self.name, now, wall, wall + 300 * MICROS)? {
            return Ok(0); // sent already, or being sent by another process
        }
        let mut recorded = 0;
        if let Some(c) = self.reader.currencies()?.into_iter().find(|c| c.code == invoice.currency) {
            let number = invoice.display_number();
            let due = purse_core::invoice::format_total(c, invoice.due());
            let due_on = purse_core::time::format_short(due_at(invoice, policy));
            let subject = format!("Reminder: invoice {number} for {} is {days} days overdue", customer.name);
            // The step's own text, if the policy gives one; else the default.
            let step = policy.reminder_days.iter().position(|d| *d == latest).unwrap_or(0);
            let own = policy.reminder_texts.get(step).filter(|t| !t.is_empty());
            let mut body = match own {
                Some(text) => {
                    let (amount, days_text) = (format!("{due} {}", c.code), days.to_string());
                    let after = policy.suspend_after_days.map(|n| n.to_string()).unwrap_or_default();
                    let values: Vec<(&str, String)> = crate::collections::REMINDER_FIELDS
                        .into_iter()
                        .zip([customer.name.clone(), number.clone(), amount, due_on.clone(), days_text, after])
                        .collect();
                    purse_core::alerts::render(text, &values)
                }
                None => {
                    let mut body = format!(
                        "Hello,\n\nInvoice {number} for {} was due on {due_on}; {due} {} of it is still unpaid.\nPlease pay it \
                         in the portal (Invoices and payments) or by bank transfer quoting {number}.",
                        customer.name, c.code
                    );
                    if let Some(n) = policy.suspend_after_days.filter(|n| *n > days) {
                        body.push_str(&format!(
                            "\nIf it is still unpaid {n} days after its due date, the account is suspended: charges and calls \
                             are refused until it is paid."
                        ));
                    }
                    body
                }
            };
            body.push_str("\n\n-- Purse");
            let data = json!({ "customer": customer.id.0, "invoice": number, "due": due, "currency": c.code.to_string(),
                               "due_at": purse_core::time::format(due_at(invoice, policy)), "days_overdue": days,
                               "reminder": step + 1 });
            let n = notice(
                self.alerts.as_ref(),
                customer,
                PaymentNotice::InvoiceOverdue,
                invoice.due(),
                subject,
                body,
                data,
                now,
            )?;
            if let Some(notification) = n {
                let batch = AlertBatch { fires: vec![Fire { counter: None, notification }], ..AlertBatch::default() };
                if self.alerts.record_alerts(&batch, now)? {
                    recorded += 1;
                }
            }
        }
        self.alerts.finish_job("dunning_reminder", &key(latest), now, "sent")?;
        for d in reached.iter().rev().skip(1) {
            if self.alerts.claim_job("dunning_reminder", &key(*d), &self.name, now, wall, wall + 300 * MICROS)? {
                self.alerts.finish_job("dunning_reminder", &key(*d), now, "passed: a later reminder was sent")?;
            }
        }
        Ok(recorded)
    }
}
