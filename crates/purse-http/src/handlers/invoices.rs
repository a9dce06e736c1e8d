//! Invoices (seeds 000, 002, 003): periodic usage invoices and top-up invoices, their lines
//! read back from the journal, their PDF, their payment and voiding, issuing one now, a
//! customer's billing cycle, and how payments are allocated to invoices.
//!
//! A usage invoice's lines are the journal itself (`purse_store::invoices::lines`); only
//! the total is rounded (`purse_core::invoice`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::command::REASON_LEN_MAX;
use purse_core::invoice::{invoice_precision, CYCLE_DAY_MAX};
use purse_core::{
    AccountId, AccountKind, Amount, ClientId, Command, Currency, Item, Money, Outcome, Party, PartyKind, PaymentMethod,
};
use purse_store::invoices::Line;
use purse_store::{AllocationRecord, BillingSettings, InvoiceKind, InvoiceRecord, InvoiceStatus, VoidRefusal};
use serde::Deserialize;
use serde_json::{json, Value};

use super::payments::{list_of, pdf_response, sees};
use super::{amount, currency_code};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::{time, AppState};

/// An invoice's lines, from the journal ([`purse_store::invoices::lines`]). Blocking.
pub(crate) fn invoice_lines(s: &AppState, i: &InvoiceRecord) -> Result<Vec<Line>, ApiError> {
    let reader = s.engine.reader();
    Ok(purse_store::invoices::lines(reader.as_ref(), s.payments.as_ref(), i)?)
}

pub(crate) fn invoice_view(i: &InvoiceRecord, c: &Currency) -> Value {
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
        "paid_at": i.paid_at.map(time::format),
        "period_start": i.period.map(|p| time::format(p.0)),
        "period_end": i.period.map(|p| time::format(p.1)),
        "subtotal": f(i.subtotal),
        "rounding_carried_in": f(i.carry_in),
        "rounding_carried_out": f(i.carry_out),
        "allocated": f(i.allocated),
        "due": f(i.due()),
        "voided_at": i.voided_at.map(time::format),
        "void_reason": i.void_reason,
        "recharge": i.recharge,
        "transfer": i.transfer,
    })
}

pub(crate) fn allocation_view(
    a: &AllocationRecord,
    c: &Currency,
    invoice: Option<&str>,
    receipt: Option<&str>,
) -> Value {
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
pub(crate) fn visible_invoice(s: &AppState, who: &Principal, id: u64) -> Result<InvoiceRecord, ApiError> {
    s.payments.invoice(id)?.filter(|i| sees(s, who, i.party).unwrap_or(false)).ok_or(ApiError::NotFound("invoice"))
}

/// An invoice with its lines and allocations. Blocking.
pub(crate) fn invoice_detail(s: &AppState, i: &InvoiceRecord) -> Result<Value, ApiError> {
    let c = s.currency("currency", i.currency)?;
    let mut view = invoice_view(i, &c);
    view["lines"] = invoice_lines(s, i)?
        .iter()
        .map(|l| json!({ "service": l.service, "quantity": l.count, "amount": c.format(Amount(l.amount)) }))
        .collect();
    let mut allocations = Vec::new();
    for a in s.payments.allocations(i.party, Some(i.id), None)? {
        let receipt = s.payments.receipt(a.receipt)?.map(|r| r.display_number());
        allocations.push(allocation_view(&a, &c, Some(&i.display_number()), receipt.as_deref()));
    }
    view["allocations"] = Value::Array(allocations);
    Ok(view)
}

pub async fn list_invoices(
    State(state): State<AppState>,
    who: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    list_of(
        state,
        who,
        params,
        |s, p, n| Ok(s.payments.invoices(p, n)?),
        |s, i| Ok((i.party, invoice_view(i, &s.currency("currency", i.currency)?))),
    )
    .await
}

pub async fn get_invoice(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| invoice_detail(s, &visible_invoice(s, &who, id)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

/// The invoice as a PDF, with what it names read from the stores. Blocking.
pub(crate) fn invoice_pdf(s: &AppState, i: &InvoiceRecord) -> Result<Vec<u8>, ApiError> {
    let c = s.currency("currency", i.currency)?;
    let reader = s.engine.reader();
    let customer = reader.party(i.party)?.ok_or(ApiError::NotFound("customer"))?;
    let issuer = i.issuer.map(|r| reader.party(r)).transpose()?.flatten();
    let email = s.alerts.alert_settings(i.party)?.and_then(|a| a.email);
    let lines = invoice_lines(s, i)?;
    Ok(invoice_document(i, &lines, &customer, issuer.as_ref(), email.as_deref(), &c))
}

/// The invoice as a PDF, made in-process: issuer (the reseller, else the operator), number,
/// dates, period, status, whom it is billed to, its lines, the rounding, the total and what
/// is due.
pub fn invoice_document(
    i: &InvoiceRecord,
    lines: &[Line],
    customer: &Party,
    issuer: Option<&Party>,
    email: Option<&str>,
    c: &Currency,
) -> Vec<u8> {
    use crate::pdf::{Pdf, MARGIN, RIGHT};
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
    facts.push(("Status", status, false));
    for (label, value, bold) in &facts {
        pdf.text(MARGIN, 10.0, false, label);
        pdf.right(RIGHT, 10.0, *bold, value);
        pdf.down(14.0);
    }
    pdf.down(14.0);
    pdf.text(MARGIN, 10.0, true, "Bill to");
    pdf.down(14.0);
    pdf.text(MARGIN, 10.0, false, &format!("{} (customer {})", customer.name, customer.id));
    if let Some(e) = email {
        pdf.down(14.0);
        pdf.text(MARGIN, 10.0, false, e);
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
    pdf.down(18.0);
    pdf.text(MARGIN, 11.0, true, "Total");
    let payable = |units: i64| format!("{} {}", purse_core::invoice::format_total(*c, units), c.code);
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

/// `GET /v1/invoices/{id}/pdf`.
pub async fn get_invoice_pdf(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let (number, bytes) = state
        .read(move |s| {
            let i = visible_invoice(s, &who, id)?;
            Ok((i.display_number(), invoice_pdf(s, &i)?))
        })
        .await?;
    Ok(pdf_response(&number, bytes))
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

/// Checks a payment of an invoice and makes its ledger command. Blocking.
pub(crate) fn invoice_payment(
    s: &AppState,
    who: &Principal,
    id: u64,
    body: &InvoicePaymentBody,
) -> Result<(InvoiceRecord, Option<Command>, Currency), ApiError> {
    let i = visible_invoice(s, who, id)?;
    let c = s.currency("currency", i.currency)?;
    let method = match body.method.as_str() {
        "bank_transfer" => PaymentMethod::BankTransfer,
        "cheque" => PaymentMethod::Cheque,
        "cash" => PaymentMethod::Cash,
        "card" => PaymentMethod::Card,
        _ => {
            return Err(ApiError::invalid(
                "method",
                "invalid_method",
                "method must be bank_transfer, cheque, cash or card",
            ))
        }
    };
    let code = currency_code("currency", &body.currency)?;
    if code != i.currency {
        return Err(ApiError::invalid(
            "currency",
            "currency_mismatch",
            format!("invoice {} is in {}, not {code}", i.display_number(), i.currency),
        ));
    }
    let paid = amount("amount", &body.amount, c)?;
    if i.status == InvoiceStatus::Void {
        return Err(ApiError::invalid(
            "invoice",
            "invoice_void",
            format!("invoice {} is void and cannot be paid", i.display_number()),
        ));
    }
    let client_id = match i.kind {
        InvoiceKind::TopUp => {
            if paid.0 != i.amount {
                return Err(ApiError::invalid(
                    "amount",
                    "amount_mismatch",
                    format!("a top-up invoice is paid whole: {} {}", c.format(Amount(i.amount)), c.code),
                ));
            }
            if i.status == InvoiceStatus::Paid && i.transfer.is_some() {
                return Ok((i, None, c));
            }
            format!("invoice:{}", i.id)
        }
        InvoiceKind::Usage => {
            if i.due() <= 0 {
                return Err(ApiError::invalid(
                    "invoice",
                    "invoice_paid",
                    format!("invoice {} is paid: nothing is due", i.display_number()),
                ));
            }
            if paid.0 <= 0 || paid.0 > i.due() {
                return Err(ApiError::invalid(
                    "amount",
                    "amount_above_due",
                    format!(
                        "amount must be more than 0 and at most the {} {} due on {}",
                        c.format(Amount(i.due())),
                        c.code,
                        i.display_number()
                    ),
                ));
            }
            // The same payment of the same amount due replays; the next one is new.
            format!("invoice:{}:{}", i.id, i.due())
        }
    };
    let party = s.engine.reader().party(i.party)?.ok_or(ApiError::NotFound("customer"))?;
    let PartyKind::Customer { wallet, .. } = party.kind else { return Err(ApiError::NotFound("customer")) };
    let command = Command::Payment {
        client_id: ClientId::new(&client_id).ok_or_else(|| ApiError::Internal("client id".into()))?,
        account: AccountId(wallet.0),
        money: Money { amount: paid, currency: i.currency },
        method,
        metadata: Some(json!({ "invoice": i.display_number() }).to_string()),
    };
    Ok((i, Some(command), c))
}

/// Records the payment of an invoice (staff). A top-up invoice is paid whole and marked
/// paid at once; a usage invoice's payment is a payment like any other, made for this
/// invoice: it is allocated to it first when its receipt is recorded (the notifier's next
/// pass, within a second), then to the oldest invoices due.
pub async fn pay_invoice(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<InvoicePaymentBody>,
) -> Result<Response, ApiError> {
    let (invoice, command, c) = state.read(move |s| invoice_payment(s, &who, id, &body)).await?;
    let Some(command) = command else { return Ok(reply(StatusCode::OK, &invoice_view(&invoice, &c))) };
    let transfer = post_payment(&state, &invoice, command).await?;
    let mut view = state
        .read(move |s| {
            let i = s.payments.invoice(invoice.id)?.ok_or(ApiError::NotFound("invoice"))?;
            Ok(invoice_view(&i, &c))
        })
        .await?;
    view["payment"] = json!(transfer);
    Ok(reply(StatusCode::CREATED, &view))
}

/// Posts an invoice's payment made by [`invoice_payment`] and, for a top-up invoice, marks
/// it paid; returns the payment's transfer. For the API and the portal alike.
pub(crate) async fn post_payment(state: &AppState, invoice: &InvoiceRecord, command: Command) -> Result<u64, ApiError> {
    let results = state.engine.submit_async(vec![Item::single(command)]).await?;
    let transfer = match results.into_iter().next() {
        Some(Ok(Outcome::Posted { transfer, .. })) => transfer.0,
        Some(Err(r)) => return Err(ApiError::Rejected(r)),
        _ => return Err(ApiError::Internal("unexpected outcome of an invoice payment".into())),
    };
    if invoice.kind == InvoiceKind::TopUp {
        let (id, now) = (invoice.id, state.engine.clock().now());
        state.read(move |s| Ok(s.payments.invoice_paid(id, transfer, now)?)).await?;
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
pub(crate) fn void_invoice(s: &AppState, who: &Principal, id: u64, reason: &str) -> Result<InvoiceRecord, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > REASON_LEN_MAX || !purse_core::text::is_single_line(reason) {
        return Err(ApiError::invalid(
            "reason",
            "invalid_reason",
            format!("reason must say why, in 1 to {REASON_LEN_MAX} bytes"),
        ));
    }
    let i = visible_invoice(s, who, id)?;
    let before = json!({ "status": i.status.as_str(), "allocated": i.allocated });
    let after = json!({ "status": "void", "reason": reason });
    let audit = s.audit_entry(who, Some(i.party), "invoice", i.id, "void", Some(&before), Some(&after))?;
    let number = i.display_number();
    match s.payments.void_invoice(id, s.engine.clock().now(), reason, &audit)? {
        Ok(voided) => Ok(voided),
        Err(VoidRefusal::NotFound) => Err(ApiError::NotFound("invoice")),
        Err(VoidRefusal::AlreadyVoid) => Err(ApiError::invalid("invoice", "invoice_void", format!("invoice {number} is void already"))),
        Err(VoidRefusal::Paid) => Err(ApiError::invalid(
            "invoice",
            "invoice_paid",
            format!("invoice {number} is paid: reverse its payments first (POST /v1/reversals), which releases their allocations"),
        )),
    }
}

pub async fn post_void(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let i = void_invoice(s, &who, id, &body.reason)?;
            invoice_detail(s, &i)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

/// Issues the customer's usage invoice now (staff), for the period since its last one:
/// `None` when there was nothing to invoice.
pub(crate) async fn issue_now(state: &AppState, who: Principal, id: u64) -> Result<Option<InvoiceRecord>, ApiError> {
    let command = state
        .read(move |s| {
            let party = super::party_of_kind(s, &who, id, false)?;
            let PartyKind::Customer { currency, .. } = party.kind else { return Err(ApiError::NotFound("customer")) };
            let accounts = s
                .engine
                .reader()
                .accounts_of(party.id)?
                .into_iter()
                .filter(|a| a.currency == currency && !matches!(a.kind, AccountKind::System(_)))
                .map(|a| a.id)
                .collect();
            Ok(Command::Invoice { party: party.id, accounts, period_end: s.engine.clock().now() })
        })
        .await?;
    let Command::Invoice { party, .. } = &command else { unreachable!("made above") };
    let party = *party;
    match state.engine.submit_async(vec![Item::single(command)]).await?.into_iter().next() {
        Some(Ok(Outcome::Invoiced { issued: true, .. })) => {}
        Some(Ok(Outcome::Invoiced { issued: false, .. })) => return Ok(None),
        Some(Err(r)) => return Err(ApiError::Rejected(r)),
        _ => return Err(ApiError::Internal("unexpected outcome of an invoice".into())),
    }
    state
        .read(move |s| {
            let newest = s.payments.invoices(Some(party), 10)?.into_iter().find(|i| i.kind == InvoiceKind::Usage);
            newest.map(Some).ok_or_else(|| ApiError::Internal("the invoice issued is missing".into()))
        })
        .await
}

/// `POST /v1/customers/{id}/invoices`: issue the usage invoice now.
pub async fn post_issue(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    match issue_now(&state, who, id).await? {
        Some(i) => {
            let view = state.read(move |s| invoice_detail(s, &i)).await?;
            Ok(reply(StatusCode::CREATED, &view))
        }
        None => {
            Err(ApiError::invalid("customer", "nothing_to_invoice", "the customer has no uninvoiced usage to invoice"))
        }
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

pub(crate) fn billing_view(b: &BillingSettings, s: &AppState) -> Result<Value, ApiError> {
    let now = s.engine.clock().now();
    let start = purse_core::invoice::cycle_start(now, b.cycle_day, b.utc_offset_min);
    let next = purse_core::invoice::next_cycle_start(start, b.cycle_day, b.utc_offset_min);
    let party = s.engine.reader().party(b.party)?;
    Ok(json!({
        "customer": b.party.0,
        "frequency": "monthly",
        "cycle_day": b.cycle_day,
        "time_zone": time::format_offset(b.utc_offset_min),
        "current_cycle_start": time::format(start),
        "next_invoice_at": time::format(next),
        "invoiced_until": party.and_then(|p| p.invoiced_until).map(time::format),
    }))
}

/// Checks and stores a customer's billing cycle (staff), with an audit entry. Blocking.
pub(crate) fn save_billing(
    s: &AppState,
    who: &Principal,
    party: &Party,
    body: &BillingBody,
) -> Result<BillingSettings, ApiError> {
    if !(1..=i64::from(CYCLE_DAY_MAX)).contains(&body.cycle_day) {
        return Err(ApiError::invalid(
            "cycle_day",
            "invalid_cycle_day",
            format!("cycle_day must be between 1 and {CYCLE_DAY_MAX} (every month has it)"),
        ));
    }
    let offset = time::parse_offset(body.time_zone.trim()).ok_or_else(|| {
        ApiError::invalid(
            "time_zone",
            "invalid_time_zone",
            "time_zone must be UTC or an offset such as +03:00 or -05:30",
        )
    })?;
    let before = s.payments.billing_settings(party.id)?.unwrap_or_else(|| BillingSettings::default_for(party.id));
    let settings = BillingSettings {
        party: party.id,
        cycle_day: body.cycle_day as u8,
        utc_offset_min: offset,
        updated_at: s.engine.clock().now(),
    };
    let view =
        |b: &BillingSettings| json!({ "cycle_day": b.cycle_day, "time_zone": time::format_offset(b.utc_offset_min) });
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

pub async fn get_billing(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let party = super::party_of_kind(s, &who, id, false)?;
            billing_view(
                &s.payments.billing_settings(party.id)?.unwrap_or_else(|| BillingSettings::default_for(party.id)),
                s,
            )
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn put_billing(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<BillingBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let party = super::party_of_kind(s, &who, id, false)?;
            billing_view(&save_billing(s, &who, &party, &body)?, s)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}
