//! Refunds of payments: staff give back all or part of a payment (by hand, by card, Pay Now,
//! a top-up invoice's payment), named by its receipt voucher.
//!
//! A refund is first reserved against its receipt under the customer's lock, so refunds
//! never add up to more than the payment. A payment made by hand is refunded at once: the
//! ledger's `Refund` posting (from the customer's balance to the method's clearing account)
//! and the refund's success, number and allocation changes are one transaction. A card
//! payment goes back through Stripe first (`Recharger::refund`): the refund is leased while
//! Stripe is asked, Stripe's refund carries Purse's refund id (found again after a crash, so
//! never made twice), and the ledger posts it only once Stripe has refunded, with the client
//! id `refund:{id}` (a repeat replays). A refund that Stripe made while the customer spent
//! the money meanwhile is still booked: as a correction that may overdraw, with the reason.

use std::sync::{Arc, Mutex};

use purse_core::{
    AdjustCategory, AdjustDirection, ChangeNote, ClientId, Command, CommandResult, Item, Money, Outcome, Party,
    PartyKind, PaymentMethod, Rejection, Timestamp,
};
use purse_engine::Engine;
use purse_store::{
    AlertBatch, AlertKind, AlertStore, Fire, NewNotification, PaymentNotice, Reader, ReceiptRecord, RefundRecord,
};
use serde_json::json;

use crate::{App, AppError, AppResult, Code, Principal, Problems};

/// How long a request works on its refund before a worker may take it over (wall clock).
const REQUEST_LEASE_S: i64 = 60;

/// A refund as asked for.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    /// The receipt voucher of the payment.
    pub receipt: u64,
    /// A decimal at the payment's currency's scale.
    pub amount: String,
    pub reason: String,
}

/// The ledger's method for a receipt's method.
pub fn method_of(receipt_method: &str) -> PaymentMethod {
    match receipt_method {
        "card" => PaymentMethod::Card,
        "cash" => PaymentMethod::Cash,
        "cheque" => PaymentMethod::Cheque,
        _ => PaymentMethod::BankTransfer,
    }
}

/// The receipt, if the caller may see it.
pub fn visible_receipt(s: &App, who: &Principal, id: u64) -> AppResult<ReceiptRecord> {
    let receipt = s.payments.receipt(id)?.ok_or(AppError::NotFound("receipt"))?;
    s.party_of_kind(who, receipt.party.0, false).map_err(|_| AppError::NotFound("receipt"))?;
    Ok(receipt)
}

/// What is left to refund of a receipt: its amount less its refunds pending or succeeded.
pub fn left_to_refund(s: &App, receipt: &ReceiptRecord) -> AppResult<i64> {
    let taken: i64 = s
        .payments
        .refunds_of_receipt(receipt.id)?
        .iter()
        .filter(|r| r.status != purse_store::RefundStatus::Failed)
        .map(|r| r.amount)
        .sum();
    Ok(if receipt.reversed_at.is_some() { 0 } else { receipt.amount - taken })
}

/// Checks a refund whole (every wrong field at once), reserves it and carries it out: a
/// payment by hand at once, a card payment through Stripe. Blocking.
pub fn request(s: &App, who: &Principal, req: RefundRequest, request_key: Option<String>) -> AppResult<RefundRecord> {
    let receipt = visible_receipt(s, who, req.receipt)?;
    let currency = s.currency("currency", receipt.currency)?;
    let mut problems = Problems::default();
    let amount = problems.check(crate::parse::amount("amount", &req.amount, currency).and_then(|a| {
        if a.is_positive() {
            Ok(a)
        } else {
            Err(AppError::invalid("amount", Code::AmountMustBePositive, "a refund is an amount above zero"))
        }
    }));
    let reason = problems.check(crate::parse::reason_text(Some(&req.reason)).and_then(|r| {
        r.ok_or_else(|| {
            AppError::invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept in the audit log")
        })
    }));
    let left = left_to_refund(s, &receipt)?;
    if amount.is_some_and(|a| a.0 > left) {
        problems.note(AppError::invalid(
            "amount",
            Code::AboveRefundable,
            format!(
                "at most what is left to refund of the payment, {} {}",
                currency.format(purse_core::Amount(left.max(0))),
                currency.code
            ),
        ));
    }
    problems.finish()?;
    let (amount, reason) = (amount.unwrap_or_default(), reason.unwrap_or_default());
    let card = method_of(&receipt.method) == PaymentMethod::Card;
    let cards = match (&s.cards, card) {
        (Some(c), true) if c.configured() => Some(c.clone()),
        (_, true) => return Err(AppError::CardsNotConfigured),
        _ => None,
    };
    let by = s.actor(who)?;
    let wall = crate::notifier::wall_us();
    let new = purse_store::refunds::NewRefund {
        receipt: receipt.id,
        amount: amount.0,
        reason: &reason,
        by: &by,
        at: s.now(),
        request_key: request_key.as_deref(),
        // This request carries it through; another process takes it over only after a crash.
        lease_until: wall + REQUEST_LEASE_S * 1_000_000,
    };
    let refund = match s.payments.reserve_refund(&new)? {
        // A repeated request: the refund it made, as it is now.
        Ok(r) if r.status != purse_store::RefundStatus::Pending || r.created_at != new.at => return Ok(r),
        Ok(r) => r,
        Err(left) => {
            return Err(AppError::invalid(
                "amount",
                Code::AboveRefundable,
                format!(
                    "at most what is left to refund of the payment, {} {}",
                    currency.format(purse_core::Amount(left)),
                    currency.code
                ),
            ))
        }
    };
    match cards {
        Some(c) => c.refund_claimed(&refund).map_err(crate::payments::pay_error),
        None => {
            let reader = s.engine.reader();
            settle(&s.engine, reader.as_ref(), s.alerts.as_ref(), &s.payments, &refund, None, s.now())
        }
    }
}

/// Books a refund in the ledger and records its success in the same transaction: the
/// `Refund` posting (client id `refund:{id}`, so a repeat replays), or, when the money was
/// spent meanwhile and Stripe has refunded already, a correction that may overdraw. A refund
/// by hand that the ledger refuses fails, and what it reserved is free again. Blocking.
pub fn settle(
    engine: &Engine,
    reader: &dyn Reader,
    alerts: &dyn AlertStore,
    store: &Arc<dyn purse_store::PaymentStore>,
    r: &RefundRecord,
    stripe_refund: Option<&str>,
    now: Timestamp,
) -> AppResult<RefundRecord> {
    let party = reader.party(r.party)?.ok_or(AppError::NotFound("customer"))?;
    let PartyKind::Customer { wallet, .. } = party.kind else { return Err(AppError::NotFound("customer")) };
    let client_id = ClientId::new(&format!("refund:{}", r.id)).ok_or_else(|| AppError::Internal("refund id".into()))?;
    let note = ChangeNote { by: r.requested_by.clone(), reason: Some(r.reason.clone()) };
    let metadata = Some(json!({ "refund": r.id, "receipt": r.receipt }).to_string());
    let money = Money { amount: purse_core::Amount(r.amount), currency: r.currency };
    let refund = Command::Refund {
        client_id: client_id.clone(),
        account: wallet,
        money,
        method: method_of(&r.method),
        metadata: metadata.clone(),
        note: Some(note.clone()),
    };
    let currency = reader
        .currencies()?
        .into_iter()
        .find(|c| c.code == r.currency)
        .ok_or_else(|| AppError::Internal(format!("unknown currency {}", r.currency)))?;
    let paid = store.receipt(r.receipt)?;
    let receipt = paid.as_ref().map(|x| x.display_number()).unwrap_or_default();
    // A payment taxed at top-up left only its net on the balance: the tax inside what is given
    // back comes back from what is owed, in the same chain.
    let tax = paid.as_ref().map_or(0, |p| tax_inside(p, r.amount));
    let with_tax = |command: Command| -> AppResult<Vec<Item>> {
        if tax == 0 {
            return Ok(vec![Item::single(command)]);
        }
        let back = Command::Adjust {
            client_id: ClientId::new(&format!("refund:{}:tax", r.id))
                .ok_or_else(|| AppError::Internal("refund id".into()))?,
            account: wallet,
            money: Money { amount: purse_core::Amount(tax), currency: r.currency },
            direction: AdjustDirection::Credit,
            category: AdjustCategory::Tax,
            note: ChangeNote { by: r.requested_by.clone(), reason: Some(format!("tax inside refund {}", r.id)) },
            metadata: metadata.clone(),
        };
        Ok(vec![Item { command: back, linked: true }, Item::single(command)])
    };
    let told = Told { party: &party, currency, receipt: &receipt };
    let mut settled = book(engine, alerts, &told, r, with_tax(refund)?, stripe_refund, now)?;
    if let Err(Rejection::InsufficientFunds { .. }) = &settled.0 {
        if stripe_refund.is_some() {
            // The card has the money back already: the books must say so.
            let reason = format!("card refund {} made at Stripe after the balance was spent: {}", r.id, r.reason);
            let correction = Command::Adjust {
                client_id: ClientId::new(&format!("refund:{}:correction", r.id))
                    .ok_or_else(|| AppError::Internal("refund id".into()))?,
                account: wallet,
                money,
                direction: AdjustDirection::Debit,
                category: AdjustCategory::Correction,
                note: ChangeNote { by: r.requested_by.clone(), reason: Some(reason) },
                metadata: metadata.clone(),
            };
            settled = book(engine, alerts, &told, r, with_tax(correction)?, stripe_refund, now)?;
        }
    }
    match settled {
        (Ok(_), Some(done)) => Ok(done),
        // A twin (a retry, another process) recorded it first.
        (Ok(_), None) => store.refund(r.id)?.ok_or(AppError::NotFound("refund")),
        (Err(rejection), _) => {
            store.fail_refund(r.id, &rejection.to_string(), now)?;
            Err(AppError::Rejected(rejection))
        }
    }
}

/// The tax inside `amount` given back of a payment taxed at top-up, counted on what was
/// refunded before so that refunding it all gives back its tax exactly.
fn tax_inside(p: &purse_store::ReceiptRecord, amount: i64) -> i64 {
    p.tax_share(p.refunded.saturating_add(amount)) - p.tax_share(p.refunded)
}

/// What the refund's notice names.
struct Told<'a> {
    party: &'a Party,
    currency: purse_core::Currency,
    /// The receipt voucher's number.
    receipt: &'a str,
}

/// The ledger's commands for the refund (the posting last) and, in their transaction, the
/// refund's success and notice.
fn book(
    engine: &Engine,
    alerts: &dyn AlertStore,
    told: &Told<'_>,
    r: &RefundRecord,
    items: Vec<Item>,
    stripe_refund: Option<&str>,
    now: Timestamp,
) -> AppResult<(Result<Outcome, Rejection>, Option<RefundRecord>)> {
    let (emails, endpoints) = crate::collections::billing_recipients(alerts, told.party)?;
    let done: Arc<Mutex<Option<RefundRecord>>> = Arc::new(Mutex::new(None));
    let after = {
        let (id, stripe, done) = (r.id, stripe_refund.map(str::to_owned), done.clone());
        let (name, currency, receipt) = (told.party.name.clone(), told.currency, told.receipt.to_owned());
        Box::new(move |results: &[CommandResult], db: &mut dyn purse_store::Db| {
            let Some(Ok(Outcome::Posted { transfer, .. })) = results.last() else { return Ok(()) };
            let Some(rec) = purse_store::refunds::succeed(db, id, transfer.0, stripe.as_deref(), now)? else {
                return Ok(());
            };
            if !emails.is_empty() || !endpoints.is_empty() {
                let n = notice(&rec, (&name, currency, &receipt), emails.clone(), endpoints.clone(), now);
                let fires = vec![Fire { counter: None, notification: n }];
                purse_store::alert_sql::record(db, &AlertBatch { fires, ..AlertBatch::default() }, now)?;
            }
            *done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rec);
            Ok(())
        }) as purse_engine::After
    };
    let results = engine.submit_with(items, after)?;
    // A chain that failed says why at the command that failed; the others say "linked".
    let failed = results.iter().find_map(|r| r.clone().err().filter(|e| *e != Rejection::LinkedCommandFailed));
    let outcome = match (failed, results.into_iter().last()) {
        (Some(e), _) => Err(e),
        (None, Some(o)) => o,
        (None, None) => return Err(AppError::Internal("no result".into())),
    };
    let done = done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    Ok((outcome, done))
}

fn notice(
    r: &RefundRecord,
    (customer, c, receipt): (&str, purse_core::Currency, &str),
    emails: Vec<String>,
    endpoints: Vec<(u64, String)>,
    now: Timestamp,
) -> NewNotification {
    let number = r.display_number().unwrap_or_default();
    let amount = c.format(purse_core::Amount(r.amount));
    NewNotification {
        party: r.party,
        kind: AlertKind::Payment(PaymentNotice::Refund),
        threshold: r.amount,
        available: r.amount,
        currency: r.currency,
        at: now,
        subject: format!("Refund {number} for {customer}: {amount} {}", c.code),
        body: format!(
            "Hello,\n\nRefund {number} gives back {amount} {} of the payment on receipt voucher {receipt}, {}.\nReason: {}\n\n-- Purse",
            c.code,
            if r.method == "card" { "to the card it was paid with" } else { "as it was paid" },
            r.reason
        ),
        payload: json!({
            "type": PaymentNotice::Refund.event_type(),
            "timestamp": purse_core::time::format(now),
            "data": { "customer": r.party.0, "refund": number, "receipt": receipt, "amount": amount,
                      "currency": c.code.to_string(), "method": r.method, "reason": r.reason }
        })
        .to_string(),
        emails,
        endpoints,
    }
}

/// A refund as a PDF: the refund receipt. Blocking.
pub fn document(reader: &dyn Reader, store: &dyn purse_store::PaymentStore, r: &RefundRecord) -> AppResult<Vec<u8>> {
    use crate::documents::{Pdf, MARGIN, RIGHT};
    let customer = reader.party(r.party)?.map(|p| p.name).unwrap_or_default();
    let issuer =
        r.issuer.map(|p| reader.party(p)).transpose()?.flatten().map_or_else(|| "Purse".to_owned(), |p| p.name);
    let c = reader
        .currencies()?
        .into_iter()
        .find(|c| c.code == r.currency)
        .ok_or_else(|| AppError::Internal(format!("unknown currency {}", r.currency)))?;
    let receipt = store.receipt(r.receipt)?.map(|x| x.display_number()).unwrap_or_default();
    let number = r.display_number().unwrap_or_else(|| "(pending)".to_owned());
    let mut pdf = Pdf::new(&format!("Refund {number}"));
    pdf.text(MARGIN, 18.0, true, &issuer);
    pdf.right(RIGHT, 18.0, true, "REFUND");
    pdf.down(26.0);
    let date = purse_core::time::format(r.finished_at.unwrap_or(r.created_at));
    let method =
        if r.method == "card" { "to the card it was paid with".to_owned() } else { r.method.replace('_', " ") };
    for (label, value) in [
        ("Refund number", number.as_str()),
        ("Refunded on", &date[..10]),
        ("Refunded to", customer.as_str()),
        ("Of the payment on", receipt.as_str()),
        ("Paid back", method.as_str()),
        ("Reason", r.reason.as_str()),
    ] {
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, label == "Refund number", value);
        pdf.down(14.0);
    }
    pdf.rule();
    pdf.down(20.0);
    pdf.text(MARGIN, 12.0, true, "Amount refunded");
    pdf.right(RIGHT, 12.0, true, &format!("{} {}", c.format(purse_core::Amount(r.amount)), c.code));
    Ok(pdf.finish())
}

/// The refund, if the caller may see it.
pub fn visible(s: &App, who: &Principal, id: u64) -> AppResult<RefundRecord> {
    let r = s.payments.refund(id)?.ok_or(AppError::NotFound("refund"))?;
    s.party_of_kind(who, r.party.0, false).map_err(|_| AppError::NotFound("refund"))?;
    Ok(r)
}
