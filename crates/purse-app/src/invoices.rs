//! Invoices (seeds 000, 002, 003): a usage invoice's lines from the journal, its allocations,
//! its payment (a top-up invoice whole, a usage invoice up to what is due), voiding, issuing
//! now, and a customer's billing cycle.

use purse_core::command::REASON_LEN_MAX;
use purse_core::invoice::{invoice_precision, CYCLE_DAY_MAX};
use purse_core::time;
use purse_core::{
    AccountId, AccountKind, Amount, ClientId, Command, Currency, Item, Money, Outcome, Party, PartyKind, PaymentMethod,
};
use purse_store::invoices::Line;
use purse_store::{AllocationRecord, BillingSettings, InvoiceKind, InvoiceRecord, InvoiceStatus, VoidRefusal};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::parse::{amount, currency_code};
use crate::payments::sees;
use crate::{App, AppError, AppResult, Code, Principal, Problems};

/// An invoice's lines, from the journal ([`purse_store::invoices::lines`]). Blocking.
pub fn invoice_lines(s: &App, i: &InvoiceRecord) -> Result<Vec<Line>, AppError> {
    let reader = s.engine.reader();
    Ok(purse_store::invoices::lines(reader.as_ref(), s.payments.as_ref(), i)?)
}

/// What credit grants paid of a usage invoice's charges, by kind of grant (kind, amount),
/// from its walk of the journal. Blocking.
pub fn credits_by_kind(
    reader: &dyn purse_store::Reader,
    store: &dyn purse_store::InvoiceStore,
    grants: &dyn purse_store::GrantStore,
    i: &InvoiceRecord,
) -> Result<Vec<(String, i64)>, AppError> {
    let mut by_kind: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (grant, amount) in purse_store::invoices::credits(reader, store, i)? {
        let kind = grants.grant(grant)?.map_or_else(|| "credit".to_owned(), |g| g.kind);
        *by_kind.entry(kind).or_default() += amount;
    }
    Ok(by_kind.into_iter().collect())
}

/// How an invoice names credit of a kind: purchased credit was paid in advance, and its use
/// is when that cash becomes revenue.
pub fn credit_label(kind: &str) -> String {
    match kind {
        "purchased" => "Purchased credit applied (paid in advance; revenue as it is used)".to_owned(),
        other => format!("{} credit applied", crate::grants::kind_label(other)),
    }
}

pub fn invoice_view(i: &InvoiceRecord, c: &Currency) -> Value {
    let f = |units: i64| c.format(Amount(units));
    json!({
        "id": i.id,
        "number": i.display_number(),
        "kind": i.kind.as_str(),
        "customer": i.party.0,
        "issuer": i.issuer.map(|p| p.0),
        "amount": f(i.amount),
        // The total as payable, at the currency's invoice precision.
        "total": purse_core::invoice::format_total(*c, i.amount),
        "currency": i.currency.to_string(),
        "status": i.status.as_str(),
        "created_at": time::format(i.created_at),
        // A usage invoice's due date: fixed when it was sent, else by the terms in force.
        "due_at": i.due_at.map(time::format),
        "paid_at": i.paid_at.map(time::format),
        "period_start": i.period.map(|p| time::format(p.0)),
        "period_end": i.period.map(|p| time::format(p.1)),
        "subtotal": f(i.subtotal),
        "rounding_carried_in": f(i.carry_in),
        "rounding_carried_out": f(i.carry_out),
        "allocated": f(i.allocated),
        // What was paid: a top-up invoice is paid whole by its payment (never allocated); a
        // usage invoice by the payments allocated to it.
        "paid": f(if i.kind == InvoiceKind::TopUp && i.paid_at.is_some() { i.amount } else { i.allocated }),
        "due": f(i.due()),
        "voided_at": i.voided_at.map(time::format),
        "void_reason": i.void_reason,
        "recharge": i.recharge,
        "transfer": i.transfer,
        // Net, the tax by rate and the gross (`amount`) of an invoice issued with a rate.
        "net": i.tax.as_ref().map(|t| f(t.net)),
        "tax": i.tax.as_ref().map(|t| json!({
            "name": t.name,
            "percent": crate::taxes::percent_text(t.rate),
            "inclusive": t.inclusive,
            "amount": f(t.amount),
        })),
    })
}

pub fn allocation_view(a: &AllocationRecord, c: &Currency, invoice: Option<&str>, receipt: Option<&str>) -> Value {
    json!({
        "id": a.id,
        "invoice": a.invoice,
        "invoice_number": invoice,
        "receipt": a.receipt,
        "receipt_number": receipt,
        "amount": c.format(Amount(a.amount)),
        "at": time::format(a.at),
        "released_at": a.released_at.map(time::format),
        "release_reason": a.release_reason,
    })
}

/// An invoice the caller may see. Blocking.
pub fn visible_invoice(s: &App, who: &Principal, id: u64) -> Result<InvoiceRecord, AppError> {
    s.payments.invoice(id)?.filter(|i| sees(s, who, i.party).unwrap_or(false)).ok_or(AppError::NotFound("invoice"))
}

/// An invoice with its lines and allocations. Blocking.
pub fn invoice_detail(s: &App, i: &InvoiceRecord) -> Result<Value, AppError> {
    let c = s.currency("currency", i.currency)?;
    let i = &with_due(s, i)?;
    let mut view = invoice_view(i, &c);
    let lines = invoice_lines(s, i)?;
    view["lines"] = lines
        .iter()
        .map(|l| json!({ "service": l.service, "quantity": l.count, "amount": c.format(Amount(l.amount)) }))
        .collect();
    // Usage, then the credits that paid part of it, by kind; the subtotal is what is left.
    let credits = credits_by_kind(s.engine.reader().as_ref(), s.payments.as_ref(), s.grants.as_ref(), i)?;
    view["usage"] = json!(c.format(Amount(lines.iter().map(|l| l.amount).sum())));
    view["credits"] = credits
        .iter()
        .map(|(kind, amount)| json!({ "kind": kind, "label": credit_label(kind), "amount": c.format(Amount(-amount)) }))
        .collect();
    let mut allocations = Vec::new();
    for a in s.payments.allocations(i.party, Some(i.id), None)? {
        let receipt = s.payments.receipt(a.receipt)?.map(|r| r.display_number());
        allocations.push(allocation_view(&a, &c, Some(&i.display_number()), receipt.as_deref()));
    }
    view["allocations"] = Value::Array(allocations);
    view["credited"] = json!(c.format(Amount(i.credited)));
    let notes: Result<Vec<Value>, AppError> =
        s.payments.credit_notes_of_invoice(i.id)?.iter().map(|n| crate::credit_notes::view(s, n)).collect();
    view["credit_notes"] = Value::Array(notes?);
    // What it drew on the customer's unallocated credit notes (of other invoices too).
    let c = s.currency("currency", i.currency)?;
    view["credits_drawn"] = s
        .payments
        .credits_drawn_by(i.id)?
        .iter()
        .map(|(n, amount)| json!({ "credit_note": n.id, "number": n.display_number(), "amount": c.format(Amount(*amount)) }))
        .collect();
    Ok(view)
}

/// The invoice with its due date as the customer is told it (see
/// [`crate::collections::invoice_due`]). Blocking.
fn with_due(s: &App, i: &InvoiceRecord) -> Result<InvoiceRecord, AppError> {
    let mut i = i.clone();
    if let Some(party) = s.engine.reader().party(i.party)? {
        i.due_at = crate::collections::invoice_due(s.payments.as_ref(), Some(s.credit.as_ref()), &party, &i)?;
    }
    Ok(i)
}

/// The invoice as a PDF, with what it names read from the stores. Blocking.
pub fn invoice_pdf(s: &App, i: &InvoiceRecord) -> Result<Vec<u8>, AppError> {
    let c = s.currency("currency", i.currency)?;
    let i = &with_due(s, i)?;
    let reader = s.engine.reader();
    let customer = reader.party(i.party)?.ok_or(AppError::NotFound("customer"))?;
    let issuer = i.issuer.map(|r| reader.party(r)).transpose()?.flatten();
    let email = s.alerts.alert_settings(i.party)?.and_then(|a| a.email);
    let lines = invoice_lines(s, i)?;
    let credits = credits_by_kind(reader.as_ref(), s.payments.as_ref(), s.grants.as_ref(), i)?;
    let tax = s.payments.customer_tax(i.party)?;
    Ok(invoice_document(i, &lines, &credits, &customer, (issuer.as_ref(), email.as_deref(), tax.as_ref()), &c))
}

/// The invoice as a PDF, made in-process: issuer (the reseller, else the operator), number,
/// dates, period, status, whom it is billed to, its lines, the rounding, the total and what
/// is due.
pub fn invoice_document(
    i: &InvoiceRecord,
    lines: &[Line],
    credits: &[(String, i64)],
    customer: &Party,
    (issuer, email, tax): (Option<&Party>, Option<&str>, Option<&purse_store::CustomerTax>),
    c: &Currency,
) -> Vec<u8> {
    use crate::documents::{Pdf, MARGIN, RIGHT};
    let issuer = issuer.map_or_else(|| "Purse".to_owned(), |p| p.name.clone());
    let number = i.display_number();
    let day = |t: purse_core::Timestamp| time::format(t)[..10].to_owned();
    let f = |units: i64| c.format(Amount(units));
    let mut pdf = Pdf::new(&format!("Invoice {number}"));
    pdf.text(MARGIN, 18.0, true, &issuer);
    pdf.right(RIGHT, 18.0, true, "INVOICE");
    pdf.down(26.0);
    let status = match (i.paid_at, i.voided_at) {
        (_, Some(at)) => format!("void since {}", day(at)),
        (Some(at), _) => format!("paid on {}", day(at)),
        _ => i.status.as_str().replace('_', " "),
    };
    let period = i.period.map(|(a, b)| format!("{} to {}", time::format_short(a), time::format_short(b)));
    let mut facts = vec![("Invoice number", number.clone(), true), ("Issued", day(i.created_at), false)];
    facts.extend(period.map(|p| ("Billing period", p, false)));
    facts.extend(i.due_at.filter(|_| i.voided_at.is_none()).map(|d| ("Due on", day(d), true)));
    facts.push(("Status", status, false));
    for (label, value, bold) in &facts {
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, *bold, value);
        pdf.down(14.0);
    }
    pdf.down(14.0);
    pdf.text(MARGIN, 10.0, true, "Bill to");
    pdf.down(14.0);
    pdf.text(MARGIN, 10.0, false, &customer.name);
    if let Some(e) = email {
        pdf.down(14.0);
        pdf.text(MARGIN, 10.0, false, e);
    }
    if let Some(t) = tax {
        for line in t.address.lines().filter(|l| !l.trim().is_empty()) {
            pdf.down(14.0);
            pdf.text(MARGIN, 10.0, false, line);
        }
        if !t.tax_id.is_empty() {
            pdf.down(14.0);
            pdf.text(MARGIN, 10.0, false, &format!("Tax id: {}", t.tax_id));
        }
    }
    pdf.down(28.0);
    pdf.text(MARGIN, 10.0, true, "Description");
    pdf.right(RIGHT - 120.0, 10.0, true, "Quantity");
    pdf.right(RIGHT, 10.0, true, &format!("Amount ({})", c.code));
    pdf.rule();
    for l in lines {
        pdf.down(16.0);
        pdf.text(MARGIN, 10.0, false, &l.service);
        pdf.right(RIGHT - 120.0, 10.0, false, &l.count.to_string());
        pdf.right(RIGHT, 10.0, false, &f(l.amount));
    }
    for (kind, amount) in credits {
        pdf.down(16.0);
        pdf.text(MARGIN, 10.0, false, &credit_label(kind));
        pdf.right(RIGHT, 10.0, false, &f(-amount));
    }
    pdf.rule();
    let mut totals = Vec::new();
    if i.kind == InvoiceKind::Usage {
        totals.push(("Subtotal", f(i.subtotal)));
        if i.carry_in != 0 {
            totals.push(("Rounding carried from the previous invoice", f(i.carry_in)));
        }
        if i.carry_out != 0 {
            totals.push(("Rounding carried to the next invoice", f(-i.carry_out)));
        }
    }
    for (label, value) in totals {
        pdf.down(16.0);
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, false, &value);
    }
    let payable = |units: i64| format!("{} {}", purse_core::invoice::format_total(*c, units), c.code);
    if let Some(t) = &i.tax {
        let rate = format!(
            "{} {}%{}",
            t.name,
            crate::taxes::percent_text(t.rate),
            if t.inclusive { ", included" } else { "" }
        );
        for (label, value) in [("Net".to_owned(), payable(t.net)), (rate, payable(t.amount))] {
            pdf.down(16.0);
            pdf.text(MARGIN, 10.0, false, &label);
            pdf.right(RIGHT, 10.0, false, &value);
        }
    }
    pdf.down(18.0);
    pdf.text(MARGIN, 11.0, true, if i.tax.is_some() { "Total with tax" } else { "Total" });
    pdf.right(RIGHT, 11.0, true, &payable(i.amount));
    if i.kind == InvoiceKind::Usage && i.status != InvoiceStatus::Void {
        pdf.down(16.0);
        pdf.text(MARGIN, 10.0, false, "Paid (allocated payments)");
        pdf.right(RIGHT, 10.0, false, &f(i.allocated));
        pdf.down(16.0);
        pdf.text(MARGIN, 11.0, true, "Amount due");
        pdf.right(RIGHT, 11.0, true, &payable(i.due()));
    }
    pdf.down(36.0);
    let note = match i.kind {
        InvoiceKind::Usage => format!(
            "Usage as posted, by service. The total is rounded once to {} decimals; the difference is carried to the next invoice. Please quote {number}.",
            invoice_precision(*c)
        ),
        InvoiceKind::TopUp => format!("Please pay by bank transfer quoting {number}. The balance is credited once, when the payment is recorded."),
    };
    pdf.text(MARGIN, 9.0, false, &note);
    pdf.finish()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct InvoicePaymentBody {
    /// `bank_transfer`, `cheque`, `cash` or `card`.
    pub method: String,
    /// A top-up invoice is paid whole; a usage invoice up to what is due.
    pub amount: String,
    pub currency: String,
}

/// Checks a payment of an invoice and makes its ledger command. `request` is the id of the
/// form that asks (the portal's): the same form sent twice records one payment. Without it
/// (the API, whose retries carry their Idempotency-Key), the same amount due replays.
/// Blocking.
pub fn invoice_payment(
    s: &App,
    who: &Principal,
    id: u64,
    body: &InvoicePaymentBody,
    request: Option<&str>,
) -> Result<(InvoiceRecord, Option<Command>, Currency), AppError> {
    let i = visible_invoice(s, who, id)?;
    let c = s.currency("currency", i.currency)?;
    let method = match body.method.as_str() {
        "bank_transfer" => PaymentMethod::BankTransfer,
        "cheque" => PaymentMethod::Cheque,
        "cash" => PaymentMethod::Cash,
        "card" => PaymentMethod::Card,
        _ => {
            return Err(AppError::invalid(
                "method",
                Code::InvalidMethod,
                "method must be bank_transfer, cheque, cash or card",
            ))
        }
    };
    let code = currency_code("currency", &body.currency)?;
    if code != i.currency {
        return Err(AppError::invalid(
            "currency",
            Code::CurrencyMismatch,
            format!("invoice {} is in {}, not {code}", i.display_number(), i.currency),
        ));
    }
    let paid = amount("amount", &body.amount, c)?;
    if i.status == InvoiceStatus::Void {
        return Err(AppError::invalid(
            "invoice",
            Code::InvoiceVoid,
            format!("invoice {} is void and cannot be paid", i.display_number()),
        ));
    }
    let client_id = match i.kind {
        InvoiceKind::TopUp => {
            if paid.0 != i.amount {
                return Err(AppError::invalid(
                    "amount",
                    Code::AmountMismatch,
                    format!("a top-up invoice is paid whole: {} {}", c.format(Amount(i.amount)), c.code),
                ));
            }
            if i.status == InvoiceStatus::Paid && i.transfer.is_some() {
                return Ok((i, None, c));
            }
            format!("invoice:{}", i.id)
        }
        InvoiceKind::Usage => {
            let asked = match request {
                Some(r) => {
                    who.client_id("request", r)?;
                    Some(format!("invoice:{}:{r}", i.id))
                }
                None => None,
            };
            // The same form sent again: the ledger answers with the payment it recorded,
            // whatever is due now.
            let again = match asked.as_deref().and_then(ClientId::new) {
                Some(id) => s.engine.reader().transfer_by_client_id(&id)?.is_some(),
                None => false,
            };
            if !again {
                if i.due() <= 0 {
                    return Err(AppError::invalid(
                        "invoice",
                        Code::InvoicePaid,
                        format!("invoice {} is paid: nothing is due", i.display_number()),
                    ));
                }
                if paid.0 <= 0 || paid.0 > i.due() {
                    return Err(AppError::invalid(
                        "amount",
                        Code::AmountAboveDue,
                        format!(
                            "amount must be more than 0 and at most the {} {} due on {}",
                            c.format(Amount(i.due())),
                            c.code,
                            i.display_number()
                        ),
                    ));
                }
            }
            // Without a form's id, the same payment of the same amount due replays; the next
            // one is new.
            asked.unwrap_or_else(|| format!("invoice:{}:{}", i.id, i.due()))
        }
    };
    let party = s.engine.reader().party(i.party)?.ok_or(AppError::NotFound("customer"))?;
    let PartyKind::Customer { wallet, .. } = party.kind else { return Err(AppError::NotFound("customer")) };
    let command = Command::Payment {
        client_id: ClientId::new(&client_id).ok_or_else(|| AppError::Internal("client id".into()))?,
        account: AccountId(wallet.0),
        money: Money { amount: paid, currency: i.currency },
        method,
        metadata: Some(json!({ "invoice": i.display_number() }).to_string()),
    };
    Ok((i, Some(command), c))
}

/// Posts an invoice's payment made by [`invoice_payment`] and, for a top-up invoice, marks
/// it paid; returns the payment's transfer. For the API and the portal alike.
pub fn post_payment(state: &App, invoice: &InvoiceRecord, command: Command) -> Result<u64, AppError> {
    let results = state.engine.submit(vec![Item::single(command)])?;
    let transfer = match results.into_iter().next() {
        Some(Ok(Outcome::Posted { transfer, .. })) => transfer.0,
        Some(Err(r)) => return Err(AppError::Rejected(r)),
        _ => return Err(AppError::Internal("unexpected outcome of an invoice payment".into())),
    };
    if invoice.kind == InvoiceKind::TopUp {
        let (id, now) = (invoice.id, state.engine.clock().now());
        state.payments.invoice_paid(id, transfer, now)?;
    }
    Ok(transfer)
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    pub reason: String,
}

/// Voids an invoice (staff): one paid in full must have its payments reversed first; what
/// was allocated to it is released and applied to the customer's other invoices. Blocking.
pub fn void_invoice(s: &App, who: &Principal, id: u64, reason: &str) -> Result<InvoiceRecord, AppError> {
    let reason = reason.trim();
    if let Some(rule) = crate::parse::line_rule(reason, false, REASON_LEN_MAX, crate::parse::Count::Bytes) {
        return Err(AppError::invalid("reason", Code::InvalidReason, format!("reason {rule}")));
    }
    let i = visible_invoice(s, who, id)?;
    let before = json!({ "status": i.status.as_str(), "allocated": i.allocated });
    let after = json!({ "status": "void", "reason": reason });
    let audit = s.audit_entry(who, Some(i.party), "invoice", i.id, "void", Some(&before), Some(&after))?;
    let number = i.display_number();
    match s.payments.void_invoice(id, s.engine.clock().now(), reason, &audit)? {
        Ok(voided) => Ok(voided),
        Err(VoidRefusal::NotFound) => Err(AppError::NotFound("invoice")),
        Err(VoidRefusal::AlreadyVoid) => {
            Err(AppError::invalid("invoice", Code::InvoiceVoid, format!("invoice {number} is void already")))
        }
        Err(VoidRefusal::Paid) => Err(AppError::invalid(
            "invoice",
            Code::InvoicePaid,
            format!("invoice {number} is paid: reverse its payments first (a reversal releases their allocations)"),
        )),
    }
}

/// Issues the customer's usage invoice now (staff), for the period since its last one:
/// `None` when there was nothing to invoice.
pub fn issue_now(state: &App, who: Principal, id: u64) -> Result<Option<InvoiceRecord>, AppError> {
    let command = (move |s: &App| -> AppResult<_> {
        let party = s.party_of_kind(&who, id, false)?;
        let PartyKind::Customer { currency, .. } = party.kind else { return Err(AppError::NotFound("customer")) };
        let accounts = s
            .engine
            .reader()
            .accounts_of(party.id)?
            .into_iter()
            .filter(|a| a.currency == currency && !matches!(a.kind, AccountKind::System(_)))
            .map(|a| a.id)
            .collect();
        Ok(Command::Invoice { party: party.id, accounts, period_end: s.engine.clock().now() })
    })(state)?;
    let Command::Invoice { party, .. } = &command else { unreachable!("made above") };
    let party = *party;
    match state.engine.submit(vec![Item::single(command)])?.into_iter().next() {
        Some(Ok(Outcome::Invoiced { issued: true, .. })) => {}
        Some(Ok(Outcome::Invoiced { issued: false, .. })) => return Ok(None),
        Some(Err(r)) => return Err(AppError::Rejected(r)),
        _ => return Err(AppError::Internal("unexpected outcome of an invoice".into())),
    }
    (move |s: &App| -> AppResult<_> {
        let newest = s.payments.invoices(Some(party), 10)?.into_iter().find(|i| i.kind == InvoiceKind::Usage);
        let newest = newest.ok_or_else(|| AppError::Internal("the invoice issued is missing".into()))?;
        post_tax(&s.engine, s.engine.reader().as_ref(), &newest)?;
        Ok(Some(newest))
    })(state)
}

/// Books the tax an invoice adds (an exclusive rate) as owed by the customer: an adjustment
/// (category `tax`) from its wallet to the tax payable account, with the client id
/// `tax:{invoice}`, so whoever books it first (the request that issued it, the scheduler that
/// sends it, another process) books it once. Inclusive tax is inside the prices already.
pub fn post_tax(engine: &purse_engine::Engine, reader: &dyn purse_store::Reader, i: &InvoiceRecord) -> AppResult<()> {
    let Some(tax) = i.tax.as_ref().filter(|t| !t.inclusive && t.amount > 0 && i.kind == InvoiceKind::Usage) else {
        return Ok(());
    };
    let money = purse_core::Money { amount: Amount(tax.amount), currency: i.currency };
    let reason = format!("{} on invoice {}", tax.name, i.display_number());
    let metadata = json!({ "tax_for": i.display_number() }).to_string();
    book_tax(engine, reader, i.party, &format!("tax:{}", i.id), money, reason, metadata)
}

/// Books tax the customer owes: an adjustment (category `tax`) from its wallet to the tax
/// payable account under `client_id`, so a repeat books nothing more.
pub fn book_tax(
    engine: &purse_engine::Engine,
    reader: &dyn purse_store::Reader,
    party: purse_core::PartyId,
    client_id: &str,
    money: purse_core::Money,
    reason: String,
    metadata: String,
) -> AppResult<()> {
    let Some(party) = reader.party(party)? else { return Ok(()) };
    let PartyKind::Customer { wallet, .. } = party.kind else { return Ok(()) };
    let client_id = purse_core::ClientId::new(client_id).ok_or_else(|| AppError::Internal("tax client id".into()))?;
    let command = Command::Adjust {
        client_id,
        account: wallet,
        money,
        direction: purse_core::AdjustDirection::Debit,
        category: purse_core::AdjustCategory::Tax,
        note: purse_core::ChangeNote::by("scheduler").with_reason(reason),
        metadata: Some(metadata),
    };
    match engine.submit(vec![Item::single(command)])?.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err(r)) => Err(AppError::Rejected(r)),
        None => Err(AppError::Internal("no result".into())),
    }
}

// ------------------------------------------------------------------ billing settings

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct BillingBody {
    /// The day of the month each monthly cycle starts, 1–28.
    pub cycle_day: i64,
    /// The cycle starts at midnight here: `UTC` or an offset such as `+03:00`.
    pub time_zone: String,
}

pub fn billing_view(b: &BillingSettings, s: &App) -> Result<Value, AppError> {
    let now = s.engine.clock().now();
    let start = purse_core::invoice::cycle_start(now, b.cycle_day, &b.time_zone);
    let next = purse_core::invoice::next_cycle_start(start, b.cycle_day, &b.time_zone);
    let party = s.engine.reader().party(b.party)?;
    Ok(json!({
        "customer": b.party.0,
        "frequency": "monthly",
        "cycle_day": b.cycle_day,
        "time_zone": b.time_zone.name(),
        "current_cycle_start": time::format(start),
        "next_invoice_at": time::format(next),
        "invoiced_until": party.and_then(|p| p.invoiced_until).map(time::format),
    }))
}

/// Checks and stores a customer's billing cycle (staff), with an audit entry. Blocking.
pub fn save_billing(s: &App, who: &Principal, party: &Party, body: &BillingBody) -> Result<BillingSettings, AppError> {
    let mut problems = Problems::default();
    if !(1..=i64::from(CYCLE_DAY_MAX)).contains(&body.cycle_day) {
        problems.note(AppError::invalid(
            "cycle_day",
            Code::InvalidCycleDay,
            format!("must be a day from 1 to {CYCLE_DAY_MAX} (every month has it)"),
        ));
    }
    let zone = time::Zone::parse(&body.time_zone);
    if zone.is_none() {
        problems.note(AppError::invalid(
            "time_zone",
            Code::InvalidTimeZone,
            "a time zone such as Europe/Berlin or America/New_York, UTC, or a fixed offset such as +03:00",
        ));
    }
    problems.finish()?;
    let Some(zone) = zone else { return Err(AppError::Internal("a zone passed its check without a value".into())) };
    let before = s.payments.billing_settings(party.id)?.unwrap_or_else(|| BillingSettings::default_for(party.id));
    let settings = BillingSettings {
        party: party.id,
        cycle_day: body.cycle_day as u8,
        time_zone: zone,
        updated_at: s.engine.clock().now(),
    };
    let view = |b: &BillingSettings| json!({ "cycle_day": b.cycle_day, "time_zone": b.time_zone.name() });
    let audit = s.audit_entry(
        who,
        Some(party.id),
        "billing_settings",
        party.id,
        "update",
        Some(&view(&before)),
        Some(&view(&settings)),
    )?;
    s.payments.put_billing_settings(&settings, &audit)?;
    Ok(settings)
}
