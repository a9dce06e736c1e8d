//! Purse's HTTP JSON API under `/v1`: request and response types (they live here, never in
//! the core), the one error shape (`{"error": {"code", "message", "field"}}`), a strict JSON
//! extractor, and the routes, all listed in [`router::app`].
//!
//! Amounts cross this boundary as decimal strings parsed at the currency's scale, never as
//! JSON numbers; times as RFC 3339. Handlers turn requests into `purse_core::Command`s for
//! the engine and read committed state through the store's `Reader`, off the async runtime.
//!
//! Work in progress (issue 3): API keys and tenancy, idempotency keys, the remaining
//! resources, OpenAPI, rate limits and metrics come next; until API keys exist nothing here
//! is served by the `purse` binary.

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod handlers;
pub mod json;
pub mod router;
pub mod time;

use std::sync::Arc;

use purse_engine::Engine;

pub use error::ApiError;
pub use router::app;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}
