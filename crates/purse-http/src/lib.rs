//! Purse's HTTP JSON API under `/v1`: request and response types (they live here, never in
//! the core), the one error shape (`{"error": {"code", "message", "field"}}`), a strict JSON
//! extractor, API-key authentication, idempotency keys, rate limits, metrics, and the
//! routes, all listed once in [`routes::table`] (which also yields the OpenAPI document).
//! Handlers parse, ask the application (`purse_app::App`) and render; the policy decides
//! who may do what, the application what happens.
//!
//! Amounts cross this boundary as decimal strings parsed at the currency's scale, never as
//! JSON numbers; times as RFC 3339. Handlers turn requests into `purse_core::Command`s for
//! the engine and read committed state through the store's `Reader`, off the async runtime.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod error;
pub mod handlers;
pub mod idempotency;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use purse_app::App;

pub use error::ApiError;
pub use routes::api;

/// Settings of the API layer.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Requests per second each API key may make on average (0: unlimited).
    pub rate_per_key: u32,
    /// Requests a key may make at once above its rate.
    pub burst_per_key: u32,
    /// How long a verified key is trusted before it is looked up again (so a key revoked
    /// elsewhere stops working within this time; one revoked through this process stops at once).
    pub key_cache_ttl: Duration,
    /// Write one JSON line per request to standard error.
    pub log_requests: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            rate_per_key: 1000,
            burst_per_key: 2000,
            key_cache_ttl: Duration::from_secs(5),
            log_requests: true,
        }
    }
}

/// What every handler shares: the application, and what only the API keeps (verified
/// keys, rate limits, idempotency keys in flight, metrics). One `Arc`, because axum clones
/// the state for every extractor of every request. It dereferences to [`Shared`] and so to
/// the [`App`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`].
pub struct Shared {
    pub app: Arc<App>,
    pub settings: Arc<ApiSettings>,
    pub(crate) auth: Arc<auth::KeyCache>,
    pub(crate) limiter: Arc<limits::RateLimiter>,
    pub(crate) idempotency: Arc<idempotency::InFlight>,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(app: Arc<App>, settings: ApiSettings) -> AppState {
        AppState(Arc::new(Shared {
            app,
            limiter: Arc::new(limits::RateLimiter::new(settings.rate_per_key, settings.burst_per_key)),
            auth: Arc::new(auth::KeyCache::default()),
            idempotency: Arc::new(idempotency::InFlight::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            settings: Arc::new(settings),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
