//! The scheduler's invoicing: issuing each customer's monthly usage invoice when its cycle
//! starts, e-mailing new invoices with their PDF once, and noticing reversed payments so
//! their allocations are released.
//!
//! Issuing is a ledger command ([`Command::Invoice`]) whose period ends at the cycle start;
//! the ledger refuses a second invoice for the same period, so several processes (or a
//! late or repeated pass) issue each invoice once.

use std::collections::HashMap;

use purse_core::invoice::{cycle_start, format_total, invoice_precision, next_cycle_start};
use purse_core::{Account, AccountKind, Amount, Command, Item, Party, PartyId, PartyKind, Rejection, Timestamp};
use purse_store::{AlertBatch, AlertKind, BillingSettings, InvoiceRecord, NewNotification, PaymentNotice};
use serde_json::json;

use super::Notifier;
use crate::{AppError, AppResult};

/// Most invoices issued in one ledger batch.
const ISSUE_BATCH: usize = 256;

impl Notifier {
    /// Every customer's billing settings, for [`Notifier::issue_due_invoices`] (empty without
    /// payments, which invoicing needs).
    pub(super) fn billing_settings(&self) -> AppResult<HashMap<PartyId, BillingSettings>> {
        let Some(p) = &self.payments else { return Ok(HashMap::new()) };
        Ok(p.store().all_billing_settings()?.into_iter().map(|s| (s.party, s)).collect())
    }

    /// Issues the usage invoice of each of `customers` (a page) whose billing cycle started
    /// since its last one (monthly, from its cycle day at midnight in its time zone). Returns
    /// how many periods were closed; `next` becomes the soonest start of a next cycle, which
    /// the caller remembers so that the step then issues at once instead of waiting for the
    /// periodic evaluation.
    pub fn issue_due_invoices(
        &self,
        customers: &[Party],
        accounts: &[Account],
        settings: &HashMap<PartyId, BillingSettings>,
        now: Timestamp,
        next: &mut Option<Timestamp>,
    ) -> AppResult<usize> {
        if self.payments.is_none() {
            return Ok(0);
        }
        let mut by_party: HashMap<PartyId, Vec<&Account>> = HashMap::new();
        for a in accounts {
            if let (Some(party), false) = (a.party, matches!(a.kind, AccountKind::System(_))) {
                by_party.entry(party).or_default().push(a);
            }
        }
        let mut items = Vec::new();
        for party in customers {
            let PartyKind::Customer { currency, .. } = party.kind else { continue };
            let s = settings.get(&party.id).cloned().unwrap_or_else(|| BillingSettings::default_for(party.id));
            let start = cycle_start(now, s.cycle_day, &s.time_zone);
            let following = next_cycle_start(start, s.cycle_day, &s.time_zone);
            *next = Some(next.map_or(following, |n| n.min(following)));
            if start <= party.created_at || party.invoiced_until.is_some_and(|u| u >= start) {
                continue;
            }
            let mine = by_party.get(&party.id).map(Vec::as_slice).unwrap_or_default();
            let accounts = mine.iter().filter(|a| a.currency == currency).map(|a| a.id).collect();
            items.push(Item::single(Command::Invoice { party: party.id, accounts, period_end: start }));
        }
        let mut closed = 0;
        for chunk in items.chunks(ISSUE_BATCH) {
            for result in self.engine.submit(chunk.to_vec())? {
                match result {
                    Ok(_) => closed += 1,
                    Err(Rejection::AlreadyInvoiced { .. }) => {} // another process was first
                    Err(r) => return Err(AppError::Rejected(r)),
                }
            }
        }
        Ok(closed)
    }

    /// Whether a customer's billing cycle has started since the last pass looked.
    pub(super) fn invoicing_due(&self, now: Timestamp) -> bool {
        self.next_invoicing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some_and(|n| now >= n)
    }

    /// Issues the invoices due now, between periodic evaluations.
    pub(super) fn issue_now_due(&self, now: Timestamp) -> AppResult<usize> {
        let settings = self.billing_settings()?;
        let mut next = None;
        let mut closed = 0;
        self.each_customer_page(|customers, accounts| {
            closed += self.issue_due_invoices(customers, accounts, &settings, now, &mut next)?;
            Ok(())
        })?;
        *self.next_invoicing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(closed)
    }

    /// E-mails each usage invoice not sent yet to the customer's billing e-mail, after
    /// applying the customer's unallocated payments to it; marks it sent in the transaction
    /// that records the e-mail, so it goes once. Returns how many were sent.
    pub fn send_invoices(&self, now: Timestamp) -> AppResult<usize> {
        let Some(p) = &self.payments else { return Ok(0) };
        let store = p.store();
        let mut sent = 0;
        loop {
            let unsent = store.unsent_invoices(100)?;
            let n = unsent.len();
            for i in unsent {
                // The tax it adds is owed before anything is applied to it.
                if let Err(e) = crate::invoices::post_tax(&self.engine, self.reader.as_ref(), &i) {
                    crate::log::warn(
                        "invoice tax not booked",
                        json!({ "invoice": i.display_number(), "error": e.detail() }),
                    );
                }
                store.allocate(i.party, now)?;
                // Its due date is fixed now, by the payment terms in force.
                if let Some(party) = self.reader.party(i.party)? {
                    let credit = self.credit.as_deref();
                    if let Some(due) = crate::collections::invoice_due(store.as_ref(), credit, &party, &i)? {
                        store.set_due_at(i.id, due)?;
                    }
                }
                let Some(i) = store.invoice(i.id)? else { continue };
                let notice = self.invoice_notice(&i, now)?;
                let batch = AlertBatch { sent_invoices: vec![(i.id, notice)], ..AlertBatch::default() };
                if self.alerts.record_alerts(&batch, now)? {
                    sent += 1;
                }
            }
            if n < 100 {
                return Ok(sent);
            }
        }
    }

    /// Books the tax inside each payment of a customer taxed at top-up as owed: an adjustment
    /// (category `tax`) from its wallet with the client id `tax:receipt:{id}`, so it is booked
    /// once whoever gets there first; then marks the receipt. Returns how many were booked.
    pub fn book_receipt_taxes(&self, now: Timestamp) -> AppResult<usize> {
        let Some(p) = &self.payments else { return Ok(0) };
        let store = p.store();
        let mut booked = 0;
        for purse_store::taxes::UnbookedTax { receipt, party, tax, currency, name } in
            store.unbooked_receipt_taxes(100)?
        {
            let Some(c) = self.reader.currencies()?.into_iter().find(|c| c.code.as_str() == currency) else { continue };
            let number = store.receipt(receipt)?.map(|r| r.display_number()).unwrap_or_default();
            let money = purse_core::Money { amount: purse_core::Amount(tax), currency: c.code };
            let reason = format!("{name} inside the payment on receipt voucher {number}");
            let metadata = json!({ "tax_for": number }).to_string();
            match crate::invoices::book_tax(
                &self.engine,
                self.reader.as_ref(),
                party,
                &format!("tax:receipt:{receipt}"),
                money,
                reason,
                metadata,
            ) {
                Ok(()) => {
                    store.receipt_tax_booked(receipt, now)?;
                    booked += 1;
                }
                Err(e) => crate::log::warn("receipt tax not booked", json!({ "receipt": number, "error": e.detail() })),
            }
        }
        Ok(booked)
    }

    /// The enabled webhook endpoints told about a customer's invoices and payments: the
    /// operator's, its reseller's and its own.
    pub(super) fn billing_endpoints(&self, party: &Party) -> AppResult<Vec<(u64, String)>> {
        Ok(crate::collections::billing_recipients(self.alerts.as_ref(), party)?.1)
    }

    fn invoice_notice(&self, i: &InvoiceRecord, now: Timestamp) -> AppResult<Option<NewNotification>> {
        let Some(party) = self.reader.party(i.party)? else { return Ok(None) };
        let emails: Vec<String> = self.alerts.alert_settings(i.party)?.and_then(|a| a.email).into_iter().collect();
        let endpoints = self.billing_endpoints(&party)?;
        if emails.is_empty() && endpoints.is_empty() {
            return Ok(None);
        }
        let Some(c) = self.reader.currencies()?.into_iter().find(|c| c.code == i.currency) else {
            return Ok(None);
        };
        let number = i.display_number();
        let f = |units: i64| c.format(Amount(units));
        let period = i
            .period
            .map(|(a, b)| format!("{} to {}", purse_core::time::format_short(a), purse_core::time::format_short(b)))
            .unwrap_or_default();
        Ok(Some(NewNotification {
            party: i.party,
            kind: AlertKind::Payment(PaymentNotice::Invoice),
            threshold: i.amount,
            available: i.due(),
            currency: i.currency,
            at: now,
            subject: format!("Invoice {number}: {} {} for {}", format_total(c, i.amount), c.code, party.name),
            body: format!(
                "Hello,\n\nInvoice {number} for {} covers the usage from {period}: {} {} (rounded to {} decimals).\n\
                 Payments already received cover {} {}; the amount due is {} {}{}.\nThe invoice is attached as a PDF.\n\n-- Purse",
                party.name,
                format_total(c, i.amount),
                c.code,
                invoice_precision(c),
                f(i.allocated),
                c.code,
                format_total(c, i.due()),
                c.code,
                i.due_at.map(|d| format!(", due on {}", &purse_core::time::format(d)[..10])).unwrap_or_default(),
            ),
            payload: json!({
                "type": PaymentNotice::Invoice.event_type(),
                "timestamp": purse_core::time::format(now),
                "data": { "customer": i.party.0, "invoice": number, "amount": f(i.amount), "due": f(i.due()), "currency": c.code.to_string(),
                          "due_at": i.due_at.map(purse_core::time::format) }
            })
            .to_string(),
            emails,
            endpoints,
        }))
    }

    /// Releases the allocations of payments that were reversed (and applies the customers'
    /// other payments again).
    pub fn sync_reversals(&self, now: Timestamp) -> AppResult<usize> {
        let Some(p) = &self.payments else { return Ok(0) };
        Ok(p.store().sync_reversals(now)?.len())
    }

    /// The PDF of the invoice an invoice e-mail names, made again at each attempt.
    pub(super) fn invoice_attachment(&self, party: PartyId, subject: &str) -> AppResult<Option<(String, Vec<u8>)>> {
        let Some(p) = &self.payments else { return Ok(None) };
        let Some((kind, issuer, number)) = purse_store::payments::find_invoice_number(subject) else { return Ok(None) };
        let Some(invoice) = p.store().invoice_by_number(kind, issuer, number)?.filter(|i| i.party == party) else {
            return Ok(None);
        };
        let Some(customer) = self.reader.party(party)? else { return Ok(None) };
        let issuer = invoice.issuer.map(|r| self.reader.party(r)).transpose()?.flatten();
        let email = self.alerts.alert_settings(party)?.and_then(|a| a.email);
        let Some(c) = self.reader.currencies()?.into_iter().find(|c| c.code == invoice.currency) else {
            return Ok(None);
        };
        let lines = purse_store::invoices::lines(self.reader.as_ref(), p.store().as_ref(), &invoice)?;
        let credits = match &self.grants {
            Some(g) => {
                crate::invoices::credits_by_kind(self.reader.as_ref(), p.store().as_ref(), g.as_ref(), &invoice)?
            }
            None => Vec::new(),
        };
        let tax = p.store().customer_tax(party)?;
        let pdf = crate::invoices::invoice_document(
            &invoice,
            &lines,
            &credits,
            &customer,
            (issuer.as_ref(), email.as_deref(), tax.as_ref()),
            &c,
        );
        Ok(Some((format!("{}.pdf", invoice.display_number()), pdf)))
    }
}
