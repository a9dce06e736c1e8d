//! Every route of the API, in one place.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::handlers;
use crate::AppState;

/// Largest body of an ordinary request.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest body of a batch request (8,192 charges of about 300 bytes).
pub const BATCH_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The whole application, for `purse serve` and for tests that call it without a socket.
pub fn app(state: AppState) -> Router {
    let batch = Router::new()
        .route("/v1/charges/batch", post(handlers::create_charge_batch))
        .layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/v1/currencies", post(handlers::create_currency).get(handlers::list_currencies))
        .route("/v1/customers", post(handlers::create_customer))
        .route("/v1/accounts/{id}", get(handlers::get_account))
        .route("/v1/accounts/{id}/spendable", get(handlers::spendable))
        .route("/v1/charges", post(handlers::create_charge))
        .route("/v1/payments", post(handlers::create_payment))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .merge(batch)
        .with_state(state)
}
