//! Invoices (seeds 000, 002, 003): periodic usage invoices and top-up invoices, their lines
//! read back from the journal, their PDF, their payment and voiding, issuing one now, a
//! customer's billing cycle, and how payments are allocated to invoices.
//!
//! A usage invoice's lines are the journal itself (`purse_store::invoices::lines`); only
//! the total is rounded (`purse_core::invoice`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_store::BillingSettings;
use serde_json::json;

use super::payments::{list_of, pdf_response};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::AppState;
use purse_app::invoices::*;
use purse_app::{AppError, Code};

pub async fn list_invoices(
    State(state): State<AppState>,
    Caller(who): Caller,
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

pub async fn get_invoice(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| Ok(invoice_detail(s, &visible_invoice(s, &who, id)?)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

/// `GET /v1/invoices/{id}/pdf`.
pub async fn get_invoice_pdf(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let (number, bytes) = state
        .read(move |s| {
            let i = visible_invoice(s, &who, id)?;
            Ok((i.display_number(), invoice_pdf(s, &i)?))
        })
        .await?;
    Ok(pdf_response(&number, bytes))
}

/// Records the payment of an invoice (staff). A top-up invoice is paid whole and marked
/// paid at once; a usage invoice's payment is a payment like any other, made for this
/// invoice: it is allocated to it first when its receipt is recorded (the notifier's next
/// pass, within a second), then to the oldest invoices due.
pub async fn pay_invoice(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<InvoicePaymentBody>,
) -> Result<Response, ApiError> {
    let (invoice, command, c) = state.read(move |s| Ok(invoice_payment(s, &who, id, &body, None)?)).await?;
    let Some(command) = command else { return Ok(reply(StatusCode::OK, &invoice_view(&invoice, &c))) };
    let view = state
        .read(move |s| {
            let transfer = post_payment(s, &invoice, command)?;
            let i = s.payments.invoice(invoice.id)?.ok_or(ApiError::App(AppError::NotFound("invoice")))?;
            let mut view = invoice_view(&i, &c);
            view["payment"] = json!(transfer);
            Ok(view)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &view))
}

pub async fn post_void(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let i = void_invoice(s, &who, id, &body.reason)?;
            Ok(invoice_detail(s, &i)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

/// `POST /v1/customers/{id}/invoices`: issue the usage invoice now.
pub async fn post_issue(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    match state.read(move |s| Ok(issue_now(s, who, id)?)).await? {
        Some(i) => {
            let view = state.read(move |s| Ok(invoice_detail(s, &i)?)).await?;
            Ok(reply(StatusCode::CREATED, &view))
        }
        None => Err(ApiError::invalid(
            "customer",
            Code::NothingToInvoice,
            "the customer has no uninvoiced usage to invoice",
        )),
    }
}

pub async fn get_billing(State(state): State<AppState>, Caller(who): Caller, Id(id): Id) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let party = s.party_of_kind(&who, id, false)?;
            Ok(billing_view(
                &s.payments.billing_settings(party.id)?.unwrap_or_else(|| BillingSettings::default_for(party.id)),
                s,
            )?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn put_billing(
    State(state): State<AppState>,
    Caller(who): Caller,
    Id(id): Id,
    ApiJson(body): ApiJson<BillingBody>,
) -> Result<Response, ApiError> {
    let view = state
        .read(move |s| {
            let party = s.party_of_kind(&who, id, false)?;
            Ok(billing_view(&save_billing(s, &who, &party, &body)?, s)?)
        })
        .await?;
    Ok(reply(StatusCode::OK, &view))
}
