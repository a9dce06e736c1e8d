//! Credit notes: staff credit an issued usage invoice, for some of its lines or an amount,
//! with a reason. The credit raises the customer's balance (the ledger's adjustment against
//! usage revenue, category `credit_note`) and is taken off what the invoice still asks, or
//! left on the balance, as the staff member chooses; numbered `CN-{issuer}-000001` in the
//! posting's transaction, never adding up to more than the invoice.

use std::sync::{Arc, Mutex};

use purse_core::{
    AdjustCategory, AdjustDirection, Amount, ChangeNote, ClientId, Command, CommandResult, Item, Money, Outcome,
    PartyKind, Rejection,
};
use purse_store::credit_notes::{self as store, Applied, NewCreditNote, Refused};
use purse_store::{CreditNoteRecord, InvoiceKind, InvoiceStatus};
use serde_json::json;

use crate::{App, AppError, AppResult, Code, Principal, Problems};

/// A credit note as asked for: an amount, or the invoice lines (services) to credit whole.
#[derive(Clone, Debug, Default)]
pub struct CreditNoteRequest {
    pub invoice: u64,
    pub amount: Option<String>,
    pub lines: Vec<String>,
    /// `invoice` (the default), `unallocated`, `balance` or `refund`.
    pub apply: Option<String>,
    /// With `refund`: the receipt voucher of the payment the credit is given back through.
    pub receipt: Option<u64>,
    pub reason: String,
}

/// Checks a credit note whole (every wrong field at once), posts it and records it. `request`
/// (the caller's idempotency key) makes a repeat find the first. Blocking.
pub fn issue(s: &App, who: &Principal, req: CreditNoteRequest, request: &str) -> AppResult<CreditNoteRecord> {
    let invoice = crate::invoices::visible_invoice(s, who, req.invoice)?;
    let c = s.currency("currency", invoice.currency)?;
    let client_id = ClientId::new(&format!("credit-note:{}:{request}", invoice.id))
        .ok_or_else(|| AppError::invalid("request", Code::InvalidClientId, "the request's key is too long"))?;
    // A repeated request finds the credit note it made, whatever was credited since (a tax
    // worked out again could differ by the carry another credit note moved).
    if let Some(t) = s.engine.reader().transfer_by_client_id(&client_id)? {
        if let Some(n) = s.payments.credit_notes_of_invoice(invoice.id)?.into_iter().find(|n| n.transfer == t.id.0) {
            return finish(s, who, n, req.receipt, c);
        }
    }
    let mut problems = Problems::default();
    if invoice.kind != InvoiceKind::Usage || invoice.status == InvoiceStatus::Void {
        problems.note(AppError::invalid(
            "invoice",
            Code::InvalidTarget,
            "a credit note is issued against a usage invoice that is not void",
        ));
    }
    let amount = match (&req.amount, req.lines.is_empty()) {
        (Some(_), false) => {
            problems.note(AppError::invalid("lines", Code::AmountOrPercent, "give an amount or lines, not both"));
            None
        }
        (Some(a), true) => problems.check(crate::parse::amount("amount", a, c).and_then(|a| {
            if a.is_positive() {
                Ok(a)
            } else {
                Err(AppError::invalid("amount", Code::AmountMustBePositive, "a credit note is an amount above zero"))
            }
        })),
        (None, false) => {
            let lines = crate::invoices::invoice_lines(s, &invoice)?;
            let mut sum = 0i64;
            for service in &req.lines {
                match lines.iter().find(|l| l.service == *service) {
                    Some(l) => sum = sum.saturating_add(l.amount),
                    None => problems.note(AppError::invalid(
                        "lines",
                        Code::InvalidService,
                        format!("the invoice has no line {service:?}"),
                    )),
                }
            }
            (sum > 0).then_some(Amount(sum))
        }
        (None, true) => {
            problems.note(AppError::invalid("amount", Code::Required, "give an amount or the lines to credit"));
            None
        }
    };
    let applied = match req.apply.as_deref() {
        None => Some(Applied::Invoice),
        Some(a) => Applied::parse(a).or_else(|| {
            problems.note(AppError::invalid(
                "apply",
                Code::InvalidTarget,
                "apply is invoice, unallocated, balance or refund",
            ));
            None
        }),
    };
    // Given back through a payment: one of the customer's, with that much left to refund.
    let receipt = match (applied, req.receipt) {
        (Some(Applied::Refund), None) => {
            problems.note(AppError::invalid(
                "receipt",
                Code::Required,
                "name the payment to refund the credit through",
            ));
            None
        }
        (Some(Applied::Refund), Some(r)) => match crate::refunds::visible_receipt(s, who, r) {
            Ok(r) if r.party == invoice.party && r.currency == invoice.currency => Some(r),
            _ => {
                problems.note(AppError::invalid("receipt", Code::NotFound, "no such payment of this customer"));
                None
            }
        },
        (_, Some(_)) => {
            problems.note(AppError::invalid(
                "receipt",
                Code::InvalidTarget,
                "a payment is named only to refund through",
            ));
            None
        }
        (_, None) => None,
    };
    let reason = problems.check(crate::parse::reason_text(Some(&req.reason)).and_then(|r| {
        r.ok_or_else(|| {
            AppError::invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept in the audit log")
        })
    }));
    // Against a taxed invoice the credit carries its tax: credited lines are priced as the
    // invoice's were (an exclusive rate adds the tax to them), an amount is a gross with the
    // tax inside; the tax is rounded with the difference carried from the customer's last
    // credit note, like invoices' own.
    let carry_in = if invoice.tax.is_some() { s.payments.credit_tax_carry(invoice.party)? } else { 0 };
    let taxed = match (amount, &invoice.tax) {
        (Some(a), Some(t)) => {
            let precision = purse_core::invoice::invoice_precision(c);
            let inclusive = t.inclusive || req.amount.is_some();
            Some(purse_core::invoice::tax_of(a.0, t.rate, inclusive, carry_in, c.scale, precision))
        }
        _ => None,
    };
    let amount = taxed.map_or(amount, |x| Some(Amount(x.gross)));
    if let (Some(a), Some(applied)) = (amount, applied) {
        if let Some((left, due)) = s.payments.credit_room(invoice.id)? {
            if let Err(e) = room_check(a.0, applied, left, due, c) {
                problems.note(e);
            }
        }
        if let Some(r) = &receipt {
            let left = crate::refunds::left_to_refund(s, r)?;
            if a.0 > left {
                problems.note(AppError::invalid(
                    "receipt",
                    Code::AboveRefundable,
                    format!(
                        "payment {} has {} {} left to refund",
                        r.display_number(),
                        c.format(Amount(left.max(0))),
                        c.code
                    ),
                ));
            }
        }
    }
    problems.finish()?;
    let (amount, applied, reason) =
        (amount.unwrap_or_default(), applied.unwrap_or(Applied::Invoice), reason.unwrap_or_default());
    let party = s.engine.reader().party(invoice.party)?.ok_or(AppError::NotFound("customer"))?;
    let PartyKind::Customer { wallet, .. } = party.kind else { return Err(AppError::NotFound("customer")) };
    let by = s.actor(who)?;
    // An added tax was booked as owed: its share comes back from there, the net from revenue.
    let tax_back = taxed.filter(|x| x.tax != 0 && invoice.tax.as_ref().is_some_and(|t| !t.inclusive));
    let metadata = Some(json!({ "credit_note_for": invoice.display_number() }).to_string());
    let adjust = |client_id: ClientId, amount: i64, category| Command::Adjust {
        client_id,
        account: wallet,
        money: Money { amount: Amount(amount), currency: invoice.currency },
        direction: AdjustDirection::Credit,
        category,
        note: ChangeNote { by: by.clone(), reason: Some(reason.clone()) },
        metadata: metadata.clone(),
    };
    let items = match tax_back {
        None => vec![Item::single(adjust(client_id, amount.0, AdjustCategory::CreditNote))],
        Some(x) => {
            let tax_id = ClientId::new(&format!("{}:tax", client_id.as_str()))
                .ok_or_else(|| AppError::invalid("request", Code::InvalidClientId, "the request's key is too long"))?;
            vec![
                Item { command: adjust(client_id, x.net, AdjustCategory::CreditNote), linked: true },
                Item::single(adjust(tax_id, x.tax, AdjustCategory::Tax)),
            ]
        }
    };
    let tax = taxed.map(|x| (x.tax, carry_in, x.carry));
    let recorded: Arc<Mutex<Option<Result<CreditNoteRecord, Refused>>>> = Arc::new(Mutex::new(None));
    let after = {
        let recorded = recorded.clone();
        let (invoice_id, lines, at) = (invoice.id, req.lines.clone(), s.now());
        Box::new(move |results: &[CommandResult], db: &mut dyn purse_store::Db| {
            let Some(Ok(Outcome::Posted { transfer, replayed: false, .. })) = results.first() else { return Ok(()) };
            let new = NewCreditNote {
                invoice: invoice_id,
                amount: amount.0,
                tax,
                lines: lines.clone(),
                applied,
                transfer: transfer.0,
                reason: reason.clone(),
                at,
                by: by.clone(),
            };
            let done = store::record(db, &new)?;
            let refused = done.is_err();
            *recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(done);
            if refused {
                // Another credit note got there first: nothing of this one is written.
                return Err(purse_store::StoreError::Conflict("the invoice has less left to credit".into()));
            }
            Ok(())
        }) as purse_engine::After
    };
    let results = match s.engine.submit_with(items, after) {
        Ok(r) => r,
        Err(purse_engine::EngineError::Store(purse_store::StoreError::Conflict(_))) => {
            let refused = recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(Err(r)) = refused {
                let (left, due) = match r {
                    Refused::AboveInvoice(left) => (left, i64::MAX),
                    Refused::AboveDue(due) => (i64::MAX, due),
                    // Another credit note for the customer at the same moment: ask again.
                    Refused::CarryMoved => return Err(AppError::Overloaded),
                };
                return Err(room_check(amount.0, applied, left, due, c).expect_err("refused"));
            }
            return Err(AppError::Overloaded);
        }
        Err(e) => return Err(e.into()),
    };
    let note = match results.into_iter().next() {
        Some(Ok(Outcome::Posted { transfer, .. })) => {
            match recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                Some(Ok(done)) => done,
                // A repeated request: the credit note its posting made.
                _ => s
                    .payments
                    .credit_notes_of_invoice(invoice.id)?
                    .into_iter()
                    .find(|n| n.transfer == transfer.0)
                    .ok_or(AppError::NotFound("credit note"))?,
            }
        }
        Some(Ok(_)) | None => return Err(AppError::Internal("no posting for the credit note".into())),
        Some(Err(Rejection::ExistsWithDifferentAmount)) => {
            return Err(AppError::invalid(
                "amount",
                Code::Duplicate,
                "this request made a credit note of another amount already",
            ))
        }
        Some(Err(r)) => return Err(AppError::Rejected(r)),
    };
    finish(s, who, note, req.receipt, c)
}

/// A credit note made (or found again): one to refund that has no refund yet is refunded now.
fn finish(
    s: &App,
    who: &Principal,
    note: CreditNoteRecord,
    receipt: Option<u64>,
    c: purse_core::Currency,
) -> AppResult<CreditNoteRecord> {
    match (note.applied, note.refund, receipt) {
        (Applied::Refund, None, Some(receipt)) => give_back(s, who, note, receipt, c),
        _ => Ok(note),
    }
}

/// Refunds a credit note's credit through the payment named; a repeat of the request (its
/// refund keyed by the credit note) finishes a refund a failure left undone.
fn give_back(
    s: &App,
    who: &Principal,
    note: CreditNoteRecord,
    receipt: u64,
    c: purse_core::Currency,
) -> AppResult<CreditNoteRecord> {
    let number = note.display_number();
    let req = crate::refunds::RefundRequest {
        receipt,
        amount: c.format(Amount(note.amount)),
        reason: format!("the credit of credit note {number}"),
    };
    match crate::refunds::request(s, who, req, Some(format!("credit-note:{}", note.id))) {
        Ok(refund) if refund.status != purse_store::RefundStatus::Failed => {
            s.payments.credit_note_refunded(note.id, refund.id)?;
            s.payments.credit_note(note.id)?.ok_or(AppError::NotFound("credit note"))
        }
        Ok(refund) => Err(AppError::invalid(
            "receipt",
            Code::InvalidTarget,
            format!(
                "credit note {number} is issued and its credit is on the balance, but the refund failed ({}); send the same request again to retry",
                refund.failure.unwrap_or_default()
            ),
        )),
        Err(e) => Err(AppError::invalid(
            "receipt",
            Code::InvalidTarget,
            format!(
                "credit note {number} is issued and its credit is on the balance, but the refund failed ({}); send the same request again to retry",
                e.detail()
            ),
        )),
    }
}

fn room_check(amount: i64, applied: Applied, left: i64, due: i64, c: purse_core::Currency) -> Result<(), AppError> {
    let money = |v: i64| format!("{} {}", c.format(Amount(v.max(0))), c.code);
    if amount > left {
        return Err(AppError::invalid(
            "amount",
            Code::AboveRefundable,
            format!("credit notes add up to the invoice at most: {} is left to credit", money(left)),
        ));
    }
    if applied == Applied::Invoice && amount > due {
        return Err(AppError::invalid(
            "apply",
            Code::AmountAboveDue,
            format!("the invoice asks {} still: apply the rest to the balance", money(due)),
        ));
    }
    Ok(())
}

/// The credit note, if the caller may see it.
pub fn visible(s: &App, who: &Principal, id: u64) -> AppResult<CreditNoteRecord> {
    let n = s.payments.credit_note(id)?.ok_or(AppError::NotFound("credit note"))?;
    s.party_of_kind(who, n.party.0, false).map_err(|_| AppError::NotFound("credit note"))?;
    Ok(n)
}

/// A credit note as a PDF. Blocking.
pub fn document(s: &App, n: &CreditNoteRecord) -> AppResult<Vec<u8>> {
    use crate::documents::{Pdf, MARGIN, RIGHT};
    let reader = s.engine.reader();
    let customer = reader.party(n.party)?.map(|p| p.name).unwrap_or_default();
    let issuer =
        n.issuer.map(|p| reader.party(p)).transpose()?.flatten().map_or_else(|| "Purse".to_owned(), |p| p.name);
    let invoice = s.payments.invoice(n.invoice)?.map(|i| i.display_number()).unwrap_or_default();
    let c = s.currency("currency", n.currency)?;
    let number = n.display_number();
    let mut pdf = Pdf::new(&format!("Credit note {number}"));
    pdf.text(MARGIN, 18.0, true, &issuer);
    pdf.right(RIGHT, 18.0, true, "CREDIT NOTE");
    pdf.down(26.0);
    let date = purse_core::time::format(n.created_at);
    let applied = match n.applied {
        Applied::Invoice => format!("taken off invoice {invoice}"),
        Applied::Balance => "added to the balance".to_owned(),
        Applied::Unallocated => "kept as credit for invoices still due".to_owned(),
        Applied::Refund => "refunded to the payment".to_owned(),
    };
    let lines = if n.lines.is_empty() { "an amount".to_owned() } else { n.lines.join(", ") };
    for (label, value) in [
        ("Credit note number", number.as_str()),
        ("Issued on", &date[..10]),
        ("Customer", customer.as_str()),
        ("Against invoice", invoice.as_str()),
        ("Credits", lines.as_str()),
        ("Applied", applied.as_str()),
        ("Reason", n.reason.as_str()),
    ] {
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, label == "Credit note number", value);
        pdf.down(14.0);
    }
    pdf.rule();
    pdf.down(20.0);
    if let Some(t) = &n.tax {
        let money = |v: i64| format!("{} {}", c.format(Amount(v)), c.code);
        let rate = format!(
            "{} {}%{}",
            t.name,
            crate::taxes::percent_text(t.rate),
            if t.inclusive { " (included)" } else { "" }
        );
        for (label, value) in [("Net", money(t.net)), (rate.as_str(), money(t.amount))] {
            pdf.text(MARGIN, 10.0, false, label);
            pdf.right(RIGHT, 10.0, false, &value);
            pdf.down(14.0);
        }
        pdf.down(6.0);
    }
    pdf.text(MARGIN, 12.0, true, if n.tax.is_some() { "Amount credited with tax" } else { "Amount credited" });
    pdf.right(RIGHT, 12.0, true, &format!("{} {}", c.format(Amount(n.amount)), c.code));
    Ok(pdf.finish())
}

/// A credit note as the API shows it. Blocking.
pub fn view(s: &App, n: &CreditNoteRecord) -> AppResult<serde_json::Value> {
    let c = s.currency("currency", n.currency)?;
    let invoice = s.payments.invoice(n.invoice)?.map(|i| i.display_number());
    Ok(json!({
        "id": n.id,
        "number": n.display_number(),
        "customer": n.party.0,
        "invoice": n.invoice,
        "invoice_number": invoice,
        "amount": c.format(Amount(n.amount)),
        "net": n.tax.as_ref().map(|t| c.format(Amount(t.net))),
        "tax": n.tax.as_ref().map(|t| json!({
            "name": t.name,
            "percent": crate::taxes::percent_text(t.rate),
            "inclusive": t.inclusive,
            "amount": c.format(Amount(t.amount)),
        })),
        "currency": c.code.as_str(),
        "lines": n.lines,
        "apply": n.applied.as_str(),
        // An unallocated credit: what invoices drew on it; refunded: the refund.
        "drawn": c.format(Amount(n.drawn)),
        "refund": n.refund,
        "reason": n.reason,
        "created_at": purse_core::time::format(n.created_at),
        "created_by": n.created_by,
    }))
}
