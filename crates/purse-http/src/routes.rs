//! Every route of the API, in one table: the router is built from it and so is the OpenAPI
//! document, so neither can list a route the other lacks.

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use purse_app::policy::Action;

use crate::handlers::{
    self, accounts, alerts, collections, credit, grants, invoices, keys, parties, payments, postings, rating,
};
use crate::{auth, idempotency, metrics, openapi, ApiError, AppState};

/// Largest body of an ordinary request.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest body of a batch request (8,192 charges of about 300 bytes).
pub const BATCH_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest rate deck import (100,000 prefixes of about 80 bytes, with room).
pub const IMPORT_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What kind of request a route is, for the document and the idempotency guard. Who may
/// call it is the policy's to say ([`Action::rule`]); a test keeps the two in agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No key needed.
    Public,
    /// Any key; each sees its own tenants.
    Read,
    /// A read-write key of the roles named in the summary, and an Idempotency-Key.
    Write,
    /// A read-write key; changes settings, not money, so no Idempotency-Key (PUT and DELETE
    /// are idempotent by nature, and a repeated POST is refused as a duplicate).
    Settings,
}

/// A route and what the document says of it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// What the route does, in the authorization policy.
    pub action: Action,
    /// The document's operation id: the action's name.
    pub operation: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Names of query parameters (all optional unless the summary says otherwise).
    pub query: &'static [&'static str],
    /// Component schema of the body, if any.
    pub request: Option<&'static str>,
    /// Status and component schema of the success response.
    pub success: (u16, &'static str),
    pub handler: MethodRouter<AppState>,
}

/// One row of the table, in the order the table's columns read.
#[allow(clippy::too_many_arguments)]
fn route(
    method: Method,
    path: &'static str,
    action: Action,
    summary: &'static str,
    access: Access,
    query: &'static [&'static str],
    request: Option<&'static str>,
    success: (u16, &'static str),
    handler: MethodRouter<AppState>,
) -> Route {
    Route { method, path, action, operation: action.name(), summary, access, query, request, success, handler }
}

/// The table: every route the server answers.
#[allow(clippy::too_many_lines)]
pub fn table() -> Vec<Route> {
    use Access::*;
    let page: &[&str] = &["limit", "after"];
    vec![
        route(Method::GET, "/healthz", Action::Healthz, "Liveness: the process answers.", Public, &[], None, (200, "Status"), get(handlers::healthz)),
        route(Method::GET, "/readyz", Action::Readyz, "Readiness: the database answers.", Public, &[], None, (200, "Status"), get(handlers::readyz)),
        route(Method::GET, "/metrics", Action::Metrics, "Prometheus metrics (text format).", Public, &[], None, (200, "Text"), get(metrics::metrics)),
        route(Method::GET, "/v1/openapi.json", Action::OpenApi, "This document.", Public, &[], None, (200, "Any"), get(openapi::serve)),
        route(Method::POST, "/v1/currencies", Action::CreateCurrency, "Configure a currency and its scale (operators).", Write, &[], Some("NewCurrency"), (201, "Currency"), post(handlers::create_currency)),
        route(Method::GET, "/v1/currencies", Action::ListCurrencies, "List the configured currencies.", Read, &[], None, (200, "CurrencyList"), get(handlers::list_currencies)),
        route(Method::POST, "/v1/resellers", Action::CreateReseller, "Create a reseller (operators).", Write, &[], Some("NewReseller"), (201, "PartyCreated"), post(parties::create_reseller)),
        route(Method::GET, "/v1/resellers", Action::ListResellers, "List resellers (a reseller sees itself).", Read, page, None, (200, "PartyList"), get(parties::list_resellers)),
        route(Method::GET, "/v1/resellers/{id}", Action::GetReseller, "One reseller.", Read, &[], None, (200, "Party"), get(parties::get_reseller)),
        route(Method::POST, "/v1/customers", Action::CreateCustomer, "Create a prepaid or postpaid customer with its wallet (operators, resellers under themselves).", Write, &[], Some("NewCustomer"), (201, "PartyCreated"), post(parties::create_customer)),
        route(Method::GET, "/v1/customers", Action::ListCustomers, "List customers: all (operators), a reseller's own, a customer itself.", Read, &["limit", "after", "reseller"], None, (200, "PartyList"), get(parties::list_customers)),
        route(Method::GET, "/v1/customers/{id}", Action::GetCustomer, "One customer.", Read, &[], None, (200, "Party"), get(parties::get_customer)),
        route(Method::POST, "/v1/accounts", Action::OpenAccount, "Open a master wallet (operators) or a subscriber account.", Write, &[], Some("NewAccount"), (201, "AccountOpened"), post(accounts::open_account)),
        route(Method::GET, "/v1/accounts", Action::ListAccounts, "The accounts of a party (`party` is required).", Read, &["party"], None, (200, "AccountList"), get(accounts::list_accounts)),
        route(Method::GET, "/v1/accounts/{id}", Action::GetAccount, "An account with its balance parts.", Read, &[], None, (200, "Account"), get(accounts::get_account)),
        route(Method::PATCH, "/v1/accounts/{id}", Action::UpdateAccount, "Change the credit limit or the temporary increase (an amount or a percent of the permanent limit, within the maximum possible increase), with a reason; all or nothing.", Write, &[], Some("AccountChanges"), (200, "AccountUpdated"), axum::routing::patch(credit::update_account)),
        route(Method::GET, "/v1/accounts/{id}/credit-history", Action::GetCreditHistory, "Every change of the account's credit limit (permanent, temporary, revert): who, when, old, new, why.", Read, &[], None, (200, "CreditHistory"), get(credit::credit_history)),
        route(Method::POST, "/v1/accounts/{id}/close", Action::CloseAccount, "Close an account with nothing on it (operators, resellers).", Write, &[], None, (200, "AccountClosed"), post(accounts::close_account)),
        route(Method::GET, "/v1/accounts/{id}/spendable", Action::GetSpendable, "What the account can spend now, and how many units of `price` that buys; with `service`, counting only the credit grants that may pay for it.", Read, &["price", "service"], None, (200, "Spendable"), get(accounts::spendable)),
        route(Method::GET, "/v1/accounts/{id}/balance", Action::GetBalanceAt, "The posted balance as of a time (`at`, RFC 3339; now when absent).", Read, &["at"], None, (200, "BalanceAt"), get(accounts::balance_at)),
        route(Method::GET, "/v1/accounts/{id}/journal", Action::GetJournal, "The account's postings, newest first, filtered by posting time (`from`, `to`) and `kind`.", Read, &["limit", "before", "from", "to", "kind"], None, (200, "Journal"), get(accounts::journal)),
        route(Method::GET, "/v1/balances", Action::GetBalances, "Every balance from one consistent read, with totals per currency (operators).", Read, &[], None, (200, "Snapshot"), get(accounts::balances)),
        route(Method::POST, "/v1/charges", Action::CreateCharge, "Post one rated usage charge (operators, resellers).", Write, &[], Some("Charge"), (201, "Posted"), post(postings::create_charge)),
        route(Method::POST, "/v1/charges/batch", Action::CreateChargeBatch, "Post up to 8,192 charges; one result per item.", Write, &[], Some("ChargeBatch"), (200, "BatchResults"), post(postings::create_charge_batch).layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX))),
        route(Method::POST, "/v1/payments", Action::CreatePayment, "Record a payment received by hand (operators).", Write, &[], Some("Payment"), (201, "Posted"), post(postings::create_payment)),
        route(Method::POST, "/v1/transfers", Action::CreateTransfer, "Move funds between two accounts the caller sees (transfer, recharge, issue).", Write, &[], Some("TransferRequest"), (201, "Posted"), post(postings::create_transfer)),
        route(Method::GET, "/v1/transfers/{id}", Action::GetTransfer, "One posted transfer.", Read, &[], None, (200, "Transfer"), get(postings::get_transfer)),
        route(Method::POST, "/v1/reversals", Action::CreateReversal, "Reverse a posted transfer, once (operators).", Write, &[], Some("Reversal"), (201, "Posted"), post(postings::create_reversal)),
        route(Method::POST, "/v1/adjustments", Action::CreateAdjustment, "Raise or lower a customer's balance with a reason and a category (goodwill, correction, write_off), against that category's system account (operators, the customer's reseller); audited. Goodwill and write-offs only raise a balance; a write-off at most to zero.", Write, &[], Some("Adjustment"), (201, "Posted"), post(postings::create_adjustment)),
        route(Method::GET, "/v1/adjustments", Action::ListAdjustments, "Adjustments, newest first: who, when, why, which way, what category (`customer` narrows).", Read, &["customer", "before", "limit"], None, (200, "AdjustmentList"), get(postings::list_adjustments)),
        route(Method::POST, "/v1/holds", Action::CreateHold, "Reserve funds until `expires_at` (operators, resellers).", Write, &[], Some("HoldRequest"), (201, "HoldAnswer"), post(postings::create_hold)),
        route(Method::GET, "/v1/holds/{id}", Action::GetHold, "One hold.", Read, &[], None, (200, "Hold"), get(postings::get_hold)),
        route(Method::POST, "/v1/holds/{id}/capture", Action::CaptureHold, "Charge all or part of a hold; the rest is released.", Write, &[], Some("Capture"), (201, "HoldAnswer"), post(postings::capture_hold)),
        route(Method::POST, "/v1/holds/{id}/release", Action::ReleaseHold, "Release a hold.", Write, &[], Some("Release"), (201, "HoldAnswer"), post(postings::release_hold)),
        route(Method::GET, "/v1/low-balance-profiles", Action::ListLowBalanceProfiles, "Low Balance Profiles: all (operators), a reseller's own.", Read, &[], None, (200, "LowBalanceProfileList"), get(alerts::list_profiles)),
        route(Method::POST, "/v1/low-balance-profiles", Action::CreateLowBalanceProfile, "Create a Low Balance Profile with its user, client and inactivity rules (operators, resellers).", Settings, &[], Some("LowBalanceProfileBody"), (201, "LowBalanceProfile"), post(alerts::create_profile)),
        route(Method::GET, "/v1/low-balance-profiles/{id}", Action::GetLowBalanceProfile, "One Low Balance Profile.", Read, &[], None, (200, "LowBalanceProfile"), get(alerts::get_profile)),
        route(Method::PUT, "/v1/low-balance-profiles/{id}", Action::ReplaceLowBalanceProfile, "Replace a profile's fields and rules, all or nothing.", Settings, &[], Some("LowBalanceProfileBody"), (200, "LowBalanceProfile"), axum::routing::put(alerts::replace_profile)),
        route(Method::DELETE, "/v1/low-balance-profiles/{id}", Action::DeleteLowBalanceProfile, "Delete a profile; its customers fall back to their reseller's default.", Settings, &[], None, (200, "Deleted"), axum::routing::delete(alerts::delete_profile)),
        route(Method::GET, "/v1/customers/{id}/alert-settings", Action::GetCustomerAlertSettings, "A customer's profile, billing e-mail, e-mails to be alerted and warning thresholds.", Read, &[], None, (200, "AlertSettings"), get(alerts::get_customer_settings)),
        route(Method::PUT, "/v1/customers/{id}/alert-settings", Action::PutCustomerAlertSettings, "Set a customer's alert settings, all or nothing (its profile: staff only).", Settings, &[], Some("AlertSettingsBody"), (200, "AlertSettings"), axum::routing::put(alerts::put_customer_settings)),
        route(Method::GET, "/v1/resellers/{id}/alert-settings", Action::GetResellerAlertSettings, "The e-mail a reseller's user rules notify.", Read, &[], None, (200, "AlertSettings"), get(alerts::get_reseller_settings)),
        route(Method::PUT, "/v1/resellers/{id}/alert-settings", Action::PutResellerAlertSettings, "Set the e-mail a reseller's user rules notify (operators, resellers).", Settings, &[], Some("AlertSettingsBody"), (200, "AlertSettings"), axum::routing::put(alerts::put_reseller_settings)),
        route(Method::GET, "/v1/webhook-endpoints", Action::ListWebhookEndpoints, "The caller's webhook endpoints (operators: all).", Read, &[], None, (200, "WebhookEndpointList"), get(alerts::list_endpoints)),
        route(Method::POST, "/v1/webhook-endpoints", Action::CreateWebhookEndpoint, "Register an endpoint for the caller's tenant; the signing secret is shown once here.", Settings, &[], Some("WebhookEndpointBody"), (201, "WebhookEndpoint"), post(alerts::create_endpoint)),
        route(Method::DELETE, "/v1/webhook-endpoints/{id}", Action::DeleteWebhookEndpoint, "Remove an endpoint.", Settings, &[], None, (200, "Deleted"), axum::routing::delete(alerts::delete_endpoint)),
        route(Method::GET, "/v1/notifications", Action::ListNotifications, "The notification log, newest first, with each delivery's status.", Read, &["customer", "before", "limit"], None, (200, "NotificationList"), get(alerts::list_notifications)),
        route(Method::GET, "/v1/customers/{id}/recharge-settings", Action::GetRechargeSettings, "A customer's auto-recharge settings, saved card and why auto-recharge is off.", Read, &[], None, (200, "RechargeSettings"), get(payments::get_recharge_settings)),
        route(Method::PUT, "/v1/customers/{id}/recharge-settings", Action::PutRechargeSettings, "Set a customer's auto-recharge: method, threshold, amount or target, caps, e-mails; all or nothing.", Settings, &[], Some("RechargeSettingsBody"), (200, "RechargeSettings"), axum::routing::put(payments::put_recharge_settings)),
        route(Method::POST, "/v1/customers/{id}/card", Action::SaveCard, "Save a card at Stripe for the customer (details go to Stripe, never kept).", Settings, &[], Some("CardBody"), (200, "RechargeSettings"), post(payments::save_card)),
        route(Method::POST, "/v1/customers/{id}/pay-now", Action::PayNow, "Pay Now: charge the saved (or a new) card at once and credit the balance; a declined card changes nothing.", Write, &[], Some("PayNowBody"), (201, "Recharge"), post(payments::create_pay_now)),
        route(Method::GET, "/v1/recharges", Action::ListRecharges, "Recharges and card payments, newest first.", Read, &["customer", "limit"], None, (200, "RechargeList"), get(payments::list_recharges)),
        route(Method::GET, "/v1/invoices", Action::ListInvoices, "Usage and top-up invoices, newest first.", Read, &["customer", "limit"], None, (200, "InvoiceList"), get(invoices::list_invoices)),
        route(Method::GET, "/v1/invoices/{id}", Action::GetInvoice, "One invoice with its lines (from the journal) and the payments allocated to it.", Read, &[], None, (200, "Invoice"), get(invoices::get_invoice)),
        route(Method::POST, "/v1/invoices/{id}/void", Action::VoidInvoice, "Void an invoice that is not paid in full (operators, resellers); its allocations are released and applied to other invoices.", Write, &[], Some("InvoiceVoid"), (200, "Invoice"), post(invoices::post_void)),
        route(Method::POST, "/v1/customers/{id}/invoices", Action::IssueInvoice, "Issue the customer's usage invoice now, for everything uninvoiced (operators, resellers).", Write, &[], None, (201, "Invoice"), post(invoices::post_issue)),
        route(Method::GET, "/v1/customers/{id}/billing-settings", Action::GetBillingSettings, "The customer's billing cycle: monthly, from its cycle day at midnight in its time zone.", Read, &[], None, (200, "BillingSettings"), get(invoices::get_billing)),
        route(Method::PUT, "/v1/customers/{id}/billing-settings", Action::PutBillingSettings, "Set the customer's cycle day (1-28) and time zone (operators, resellers).", Settings, &[], Some("BillingSettingsBody"), (200, "BillingSettings"), axum::routing::put(invoices::put_billing)),
        route(Method::GET, "/v1/tax-rates", Action::ListTaxRates, "Tax rates: the operator's, and a reseller's own.", Read, &[], None, (200, "TaxRateList"), get(collections::list_tax_rates)),
        route(Method::POST, "/v1/tax-rates", Action::CreateTaxRate, "Create a tax rate: a name, a percentage (above 0, at most 100, 4 decimals) and whether it is inside the prices (`inclusive`) or added to them.", Settings, &[], Some("TaxRateBody"), (201, "TaxRate"), post(collections::create_tax_rate)),
        route(Method::GET, "/v1/customers/{id}/tax-settings", Action::GetCustomerTax, "A customer's tax rate, tax id and billing address.", Read, &[], None, (200, "TaxSettings"), get(collections::get_customer_tax)),
        route(Method::PUT, "/v1/customers/{id}/tax-settings", Action::PutCustomerTax, "Set a customer's tax rate, whether it is taxed on usage invoices or when money comes in (top-up), tax id and billing address; all or nothing.", Settings, &[], Some("TaxSettingsBody"), (200, "TaxSettings"), axum::routing::put(collections::put_customer_tax)),
        route(Method::GET, "/v1/dunning-policies", Action::ListDunningPolicies, "Dunning policies: payment terms, reminder days after the due date, and when a customer is suspended (days overdue, or a prepaid balance below a floor); a class's policy wins over its reseller's, a reseller's over the operator's default.", Read, &[], None, (200, "DunningPolicyList"), get(collections::list_policies)),
        route(Method::PUT, "/v1/dunning-policies", Action::PutDunningPolicy, "Create or replace the policy of `owner` (`operator`, `reseller:{id}`, `class:{id}`; resellers: their own), all or nothing.", Settings, &[], Some("DunningPolicyBody"), (200, "DunningPolicy"), axum::routing::put(collections::put_policy)),
        route(Method::DELETE, "/v1/dunning-policies", Action::DeleteDunningPolicy, "Delete the policy of `owner`; its customers fall back to the next one.", Settings, &["owner"], None, (200, "PolicyDeleted"), axum::routing::delete(collections::delete_policy)),
        route(Method::GET, "/v1/customers/{id}/suspension", Action::GetSuspension, "Whether the customer is suspended (its charges, holds and sessions refused with `suspended`), why, since when, and its past suspensions.", Read, &[], None, (200, "Suspension"), get(collections::get_suspension)),
        route(Method::PUT, "/v1/customers/{id}/suspension", Action::PutSuspension, "Suspend the customer by hand or lift its suspension, whatever its cause, with a reason (operators, resellers); audited and notified.", Settings, &[], Some("SuspensionBody"), (200, "Suspension"), axum::routing::put(collections::put_suspension)),
        route(Method::GET, "/v1/receipts", Action::ListReceipts, "Receipt vouchers, one per payment received, newest first.", Read, &["customer", "limit"], None, (200, "ReceiptList"), get(payments::list_receipts)),
        route(Method::GET, "/v1/receipts/{id}", Action::GetReceipt, "A receipt voucher: the payment, what of it is allocated and to which invoices.", Read, &[], None, (200, "Receipt"), get(payments::get_receipt)),
        route(Method::GET, "/v1/receipts/{id}/pdf", Action::GetReceiptPdf, "A receipt voucher as a PDF.", Read, &[], None, (200, "Pdf"), get(payments::get_receipt_pdf)),
        route(Method::POST, "/v1/receipts/{id}/email", Action::EmailReceipt, "E-mail a receipt voucher again to the billing e-mail, with its PDF.", Settings, &[], None, (200, "Receipt"), post(payments::send_receipt)),
        route(Method::POST, "/v1/refunds", Action::CreateRefund, "Refund all or part of a payment, named by its receipt voucher, with a reason (operators, resellers): refunds never add up to more than the payment; a card payment goes back through Stripe first and is booked once Stripe has refunded (crash-safe, never twice); the balance and the payment's invoice allocations change with it, and the refund gets its number (RF-{issuer}-000001) and e-mail.", Write, &[], Some("RefundBody"), (201, "Refund"), post(collections::create_refund)),
        route(Method::GET, "/v1/refunds", Action::ListRefunds, "Refunds, newest first.", Read, &["customer", "limit"], None, (200, "RefundList"), get(collections::list_refunds)),
        route(Method::GET, "/v1/refunds/{id}", Action::GetRefund, "One refund.", Read, &[], None, (200, "Refund"), get(collections::get_refund)),
        route(Method::GET, "/v1/refunds/{id}/pdf", Action::GetRefundPdf, "A refund receipt as a PDF.", Read, &[], None, (200, "Pdf"), get(collections::get_refund_pdf)),
        route(Method::POST, "/v1/credit-notes", Action::CreateCreditNote, "Credit an issued usage invoice for some of its lines or an amount, with a reason (operators, resellers): the balance is raised (an adjustment against usage revenue), and the credit is taken off what the invoice still asks (`apply`: invoice, the default) or left on the balance (`balance`); numbered CN-{issuer}-000001; credit notes never add up to more than the invoice.", Write, &[], Some("CreditNoteBody"), (201, "CreditNote"), post(collections::create_credit_note)),
        route(Method::GET, "/v1/credit-notes", Action::ListCreditNotes, "Credit notes, newest first.", Read, &["customer", "limit"], None, (200, "CreditNoteList"), get(collections::list_credit_notes)),
        route(Method::GET, "/v1/credit-notes/{id}", Action::GetCreditNote, "One credit note.", Read, &[], None, (200, "CreditNote"), get(collections::get_credit_note)),
        route(Method::GET, "/v1/credit-notes/{id}/pdf", Action::GetCreditNotePdf, "A credit note as a PDF.", Read, &[], None, (200, "Pdf"), get(collections::get_credit_note_pdf)),
        route(Method::GET, "/v1/invoices/{id}/pdf", Action::GetInvoicePdf, "The invoice as a PDF (made in-process).", Read, &[], None, (200, "Pdf"), get(invoices::get_invoice_pdf)),
        route(Method::POST, "/v1/invoices/{id}/payments", Action::PayInvoice, "Record a payment of an invoice (operators, resellers): credits the balance once; a top-up invoice is paid whole, a usage invoice up to what is due (allocated to it first).", Write, &[], Some("InvoicePayment"), (201, "Invoice"), post(invoices::pay_invoice)),
        route(Method::GET, "/v1/customer-classes", Action::ListCustomerClasses, "Customer classes: subscriber transfers default and maximum possible increase.", Read, &[], None, (200, "CustomerClassList"), get(credit::list_classes)),
        route(Method::POST, "/v1/customer-classes", Action::CreateCustomerClass, "Create a customer class (operators).", Settings, &[], Some("CustomerClassBody"), (201, "CustomerClass"), post(credit::create_class)),
        route(Method::PUT, "/v1/customer-classes/{id}", Action::ReplaceCustomerClass, "Replace a customer class (operators).", Settings, &[], Some("CustomerClassBody"), (200, "CustomerClass"), axum::routing::put(credit::replace_class)),
        route(Method::GET, "/v1/customers/{id}/credit-settings", Action::GetCustomerCreditSettings, "Balance & Credits: limits, temporary increase, maximum possible increase, class, subscriber transfers.", Read, &[], None, (200, "CreditSettings"), get(credit::get_customer_credit)),
        route(Method::PUT, "/v1/customers/{id}/credit-settings", Action::PutCustomerCreditSettings, "Set a customer's class and subscriber-to-subscriber transfers (class, yes, no) (operators, resellers).", Settings, &[], Some("CreditSettingsBody"), (200, "CreditSettings"), axum::routing::put(credit::put_customer_credit)),
        route(Method::GET, "/v1/resellers/{id}/credit-settings", Action::GetResellerCreditSettings, "A reseller's maximum possible increase for its customers.", Read, &[], None, (200, "CreditSettings"), get(credit::get_reseller_credit)),
        route(Method::PUT, "/v1/resellers/{id}/credit-settings", Action::PutResellerCreditSettings, "Set a reseller's maximum possible increase (operators).", Settings, &[], Some("CreditSettingsBody"), (200, "CreditSettings"), axum::routing::put(credit::put_reseller_credit)),
        route(Method::GET, "/v1/audit-log", Action::ListAuditLog, "Every settings change the caller may see, newest first: who, when, what, before, after.", Read, &["party", "entity", "actor", "from", "to", "before", "limit"], None, (200, "AuditLog"), get(credit::audit_log)),
        route(Method::GET, "/v1/api-keys", Action::ListApiKeys, "The API keys the caller manages (operators: all; resellers: their own and their customers'; customers: their own).", Read, &[], None, (200, "ApiKeyList"), get(keys::list_api_keys)),
        route(Method::POST, "/v1/api-keys", Action::CreateApiKey, "Issue an API key for the caller's tenant or one it manages; the secret is shown once, here (no Idempotency-Key: it is never stored).", Settings, &[], Some("NewApiKey"), (201, "ApiKeyCreated"), post(keys::create_api_key)),
        route(Method::POST, "/v1/api-keys/{id}/revoke", Action::RevokeApiKey, "Revoke an API key the caller manages; it stops working at once.", Settings, &[], None, (200, "ApiKey"), post(keys::revoke_api_key)),
        route(Method::GET, "/v1/users", Action::ListUsers, "The portal users the caller manages.", Read, &[], None, (200, "UserList"), get(keys::list_users)),
        route(Method::POST, "/v1/users", Action::CreateUser, "Create a portal user for the caller's tenant or one it manages.", Settings, &[], Some("NewUser"), (201, "User"), post(keys::create_user_route)),
        route(Method::POST, "/v1/users/{id}/disable", Action::DisableUser, "Disable a portal user the caller manages: it no longer logs in and its sessions end.", Settings, &[], None, (200, "User"), post(keys::disable_user_route)),
        route(Method::POST, "/v1/grants", Action::CreateGrant, "Give a customer credit that is not cash (promotional, purchased, commitment, goodwill): drawn before its own money by priority, then soonest expiry, then age, for the services in its scope.", Write, &[], Some("GrantBody"), (201, "Grant"), post(grants::create_grant)),
        route(Method::GET, "/v1/grants", Action::ListGrants, "A customer's grants, newest first, with what remains and when they expire (`state`: open, the default, or all).", Read, &["customer", "state", "limit"], None, (200, "GrantList"), get(grants::list_grants)),
        route(Method::GET, "/v1/grants/{id}", Action::GetGrant, "A grant and every movement of its remainder: the charges it paid, what reversals gave back, its expiry or void.", Read, &[], None, (200, "Grant"), get(grants::get_grant)),
        route(Method::POST, "/v1/grants/{id}/void", Action::VoidGrant, "Take back what is left of a grant (not purchased credit, no open holds on it), with a reason kept in the audit log.", Write, &[], Some("GrantVoid"), (200, "Grant"), post(grants::void_grant)),
        route(Method::POST, "/v1/allowances", Action::CreateAllowance, "Start a recurring grant: `amount` at the start of every monthly period (on `day`), valid until the next, its unused part rolling over as `rollover` says.", Settings, &[], Some("AllowanceBody"), (201, "Allowance"), post(grants::create_allowance)),
        route(Method::GET, "/v1/allowances", Action::ListAllowances, "A customer's recurring grants.", Read, &["customer"], None, (200, "AllowanceList"), get(grants::list_allowances)),
        route(Method::POST, "/v1/allowances/{id}/end", Action::EndAllowance, "Stop a recurring grant; the grants it made keep running.", Settings, &[], None, (200, "Allowance"), post(grants::end_allowance)),
        route(Method::GET, "/v1/rate-plans", Action::ListRatePlans, "Rate plans: all (operators); a reseller's own and the one it pays by; a customer's own.", Read, &[], None, (200, "RatePlanList"), get(rating::list_plans)),
        route(Method::POST, "/v1/rate-plans", Action::CreateRatePlan, "Create a rate plan in a currency (operators: their own or a reseller's; resellers: their own).", Settings, &[], Some("RatePlanBody"), (201, "RatePlan"), post(rating::create_plan)),
        route(Method::GET, "/v1/rate-plans/{id}", Action::GetRatePlan, "A rate plan with its rates (every version), narrowed by `prefix`.", Read, &["prefix", "limit"], None, (200, "RatePlan"), get(rating::get_plan)),
        route(Method::POST, "/v1/rate-plans/{id}/import", Action::ImportRates, "Import a rate deck (CSV: prefix, description, price, connection_fee, minimum, increments, unit, effective_from), all or nothing; every bad line is named.", Settings, &[], Some("RateImport"), (200, "RatePlan"), post(rating::import_rates).layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES_MAX))),
        route(Method::GET, "/v1/rate-plans/{id}/export", Action::ExportRates, "The plan's rates as a CSV deck, in the format import reads.", Read, &[], None, (200, "Csv"), get(rating::export_rates)),
        route(Method::PUT, "/v1/customers/{id}/rate-plan", Action::PutCustomerRatePlan, "Give a customer a rate plan (null: its reseller's default applies).", Settings, &[], Some("CustomerRatePlan"), (200, "CustomerRatePlanView"), axum::routing::put(rating::put_customer_plan)),
        route(Method::PUT, "/v1/resellers/{id}/rate-plans", Action::PutResellerRatePlans, "Set the plan a reseller pays by (operators) and its customers' default plan.", Settings, &[], Some("ResellerRatePlans"), (200, "ResellerRatePlansView"), axum::routing::put(rating::put_reseller_plans)),
        route(Method::GET, "/v1/resellers/{id}/margin", Action::GetResellerMargin, "What a reseller sold and what it cost it, from its customers' rated usage and calls started in [`from`, `to`) (default: this month so far), by customer.", Read, &["from", "to"], None, (200, "Margin"), get(rating::get_margin)),
        route(Method::POST, "/v1/usage", Action::CreateUsage, "Post one usage event (service, destination, quantity): rated with the customer's plan at the usage's time and charged.", Write, &[], Some("Usage"), (201, "Posted"), post(rating::create_usage)),
        route(Method::POST, "/v1/usage/batch", Action::CreateUsageBatch, "Post up to 8,192 usage events; one result per item.", Write, &[], Some("UsageBatch"), (200, "BatchResults"), post(rating::create_usage_batch).layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX))),
        route(Method::GET, "/v1/usage/unrated", Action::ListUnratedUsage, "Usage refused because no rate matched it, newest first, with why.", Read, &["customer"], None, (200, "UnratedUsageList"), get(rating::list_unrated)),
        route(Method::POST, "/v1/sessions", Action::CreateSession, "Authorize a real-time session: the units granted (what the balance pays for, up to a slice) are reserved.", Write, &[], Some("SessionAuthorize"), (201, "Session"), post(rating::create_session)),
        route(Method::GET, "/v1/sessions", Action::ListSessions, "Charging sessions, newest first (`active`: only active ones, the default).", Read, &["customer", "active"], None, (200, "SessionList"), get(rating::list_sessions)),
        route(Method::GET, "/v1/sessions/{id}", Action::GetSession, "One charging session.", Read, &[], None, (200, "Session"), get(rating::get_session)),
        route(Method::POST, "/v1/sessions/{id}/update", Action::UpdateSession, "Report the units used so far: what they cost is charged and the next slice granted (`final` when money runs out).", Write, &[], Some("SessionUpdate"), (200, "Session"), post(rating::update_session)),
        route(Method::POST, "/v1/sessions/{id}/terminate", Action::TerminateSession, "End a session with its final usage: the exact charge is posted, the rest released.", Write, &[], Some("SessionTerminate"), (200, "Session"), post(rating::terminate_session)),
        route(Method::GET, "/v1/scheduler/runs", Action::ListSchedulerRuns, "The scheduler's job runs, newest first (operators).", Read, &["limit"], None, (200, "JobRunList"), get(alerts::list_job_runs)),
    ]
}

/// The action of the route `path` (as matched, `/v1/accounts/{id}`) answers for `method`,
/// and the query parameters it takes. HEAD is answered by the GET route.
fn route_of(method: &Method, path: &str) -> Option<(Action, &'static [&'static str])> {
    type Routes = std::collections::HashMap<&'static str, Vec<(Method, Action, &'static [&'static str])>>;
    static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let mut routes = Routes::new();
        for r in table() {
            routes.entry(r.path).or_default().push((r.method, r.action, r.query));
        }
        routes
    });
    let method = if method == Method::HEAD { &Method::GET } else { method };
    routes.get(path)?.iter().find(|(m, _, _)| m == method).map(|(_, a, q)| (*a, *q))
}

/// The action of the route `path` (as matched, `/v1/accounts/{id}`) answers for `method`.
pub fn action_of(method: &Method, path: &str) -> Option<Action> {
    route_of(method, path).map(|(action, _)| action)
}

/// Refuses a query parameter the route does not take (the table's `query`), or one given
/// twice, before the handler runs: one check for every route, so none ignores a typo.
async fn query_guard(request: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    if let Some(query) = request.uri().query() {
        let path = request.extensions().get::<axum::extract::MatchedPath>().map(axum::extract::MatchedPath::as_str);
        let allowed = path.and_then(|p| route_of(request.method(), p)).map_or(&[][..], |(_, q)| q);
        if let Err(e) = crate::json::Params::parse(query).and_then(|p| p.only(allowed)) {
            return e.into_response();
        }
    }
    next.run(request).await
}

/// The API's routes with their authentication and idempotency layers. Paths it
/// does not know are for whoever merges it (`purse::router` adds the portal and answers
/// unknown `/v1/` paths with [`not_found`]; it measures both with [`metrics::observe`]).
pub fn api(state: AppState) -> Router {
    let mut public = Router::new();
    let mut private = Router::new();
    for r in table() {
        if r.access == Access::Public {
            public = public.route(r.path, r.handler);
        } else {
            private = private.route(r.path, r.handler);
        }
    }
    let public = public.route_layer(middleware::from_fn(query_guard));
    let private = private
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::guard))
        .route_layer(middleware::from_fn(query_guard))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    public.merge(private).layer(DefaultBodyLimit::max(BODY_BYTES_MAX)).with_state(state)
}

/// Whether `path` is the API's (so its errors are JSON), rather than a page's.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/v1/") || ["/healthz", "/readyz", "/metrics"].contains(&path)
}

/// The answer to a path of the API that does not exist.
pub fn not_found() -> axum::response::Response {
    ApiError::App(purse_app::AppError::NotFound("route")).into_response()
}

/// The answer to a path of the API that exists, but not with this method.
pub fn method_not_allowed() -> axum::response::Response {
    ApiError::MethodNotAllowed.into_response()
}
