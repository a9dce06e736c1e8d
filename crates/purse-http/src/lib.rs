//! Purse's HTTP JSON API under `/v1`: request and response types (they live here, never in
//! the core), the one error shape (`{"error": {"code", "message", "field"}}`), a strict JSON
//! extractor, API-key authentication and tenancy, idempotency keys, rate limits, metrics,
//! and the routes, all listed once in [`routes::table`] (which also yields the OpenAPI
//! document).
//!
//! Amounts cross this boundary as decimal strings parsed at the currency's scale, never as
//! JSON numbers; times as RFC 3339. Handlers turn requests into `purse_core::Command`s for
//! the engine and read committed state through the store's `Reader`, off the async runtime.

#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod cards;
pub mod error;
pub mod handlers;
pub mod idempotency;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pdf;
pub mod portal;
pub mod routes;
pub mod time;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use purse_engine::Engine;
use purse_store::{AccessStore, AlertStore};

pub use error::ApiError;
pub use routes::app;

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
    /// How long a portal session lasts after login.
    pub session_ttl: Duration,
    /// Mark portal cookies `Secure` (when Purse is served over TLS by a proxy that does not
    /// send `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// Let webhook endpoints be registered at loopback, private and link-local addresses.
    pub allow_private_webhooks: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            rate_per_key: 1000,
            burst_per_key: 2000,
            key_cache_ttl: Duration::from_secs(5),
            log_requests: true,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            allow_private_webhooks: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// API keys, portal users and their sessions.
    pub access: Arc<dyn AccessStore>,
    /// Low Balance Profiles, alert settings, the notification log, webhook endpoints.
    pub alerts: Arc<dyn AlertStore>,
    /// Recharge settings, recharges and top-up invoices.
    pub payments: Arc<dyn purse_store::PaymentStore>,
    /// Customer classes, credit policies, the credit limit history and the audit log.
    pub credit: Arc<dyn purse_store::CreditStore>,
    /// Card payments through Stripe, when `purse` provides them.
    pub cards: Option<Arc<dyn cards::Cards>>,
    pub settings: Arc<ApiSettings>,
    pub(crate) auth: Arc<auth::KeyCache>,
    pub(crate) limiter: Arc<limits::RateLimiter>,
    pub(crate) idempotency: Arc<idempotency::InFlight>,
    pub metrics: Arc<metrics::Metrics>,
    /// Which party owns an account, and which reseller a party belongs to: facts that
    /// never change, cached for tenancy checks.
    pub(crate) owners: Arc<std::sync::Mutex<std::collections::HashMap<u64, Option<purse_core::PartyId>>>>,
    pub(crate) resellers:
        Arc<std::sync::Mutex<std::collections::HashMap<purse_core::PartyId, Option<purse_core::PartyId>>>>,
    pub(crate) currencies:
        Arc<std::sync::RwLock<std::collections::HashMap<purse_core::CurrencyCode, purse_core::Currency>>>,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        access: Arc<dyn AccessStore>,
        alerts: Arc<dyn AlertStore>,
        payments: Arc<dyn purse_store::PaymentStore>,
        credit: Arc<dyn purse_store::CreditStore>,
        settings: ApiSettings,
    ) -> AppState {
        AppState {
            engine,
            access,
            alerts,
            payments,
            credit,
            cards: None,
            limiter: Arc::new(limits::RateLimiter::new(settings.rate_per_key, settings.burst_per_key)),
            auth: Arc::new(auth::KeyCache::default()),
            idempotency: Arc::new(idempotency::InFlight::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            currencies: Arc::default(),
            owners: Arc::default(),
            resellers: Arc::default(),
            settings: Arc::new(settings),
        }
    }

    /// Card payments (Pay Now, saving a card) go through `cards`.
    pub fn with_cards(mut self, cards: Arc<dyn cards::Cards>) -> AppState {
        self.cards = Some(cards);
        self
    }
}

impl AppState {
    /// Who a principal is, as the audit log and the credit limit history name it:
    /// `user ann@example.com` for a portal session, `key 12` for an API key. Blocking.
    pub fn actor(&self, who: &auth::Principal) -> Result<String, ApiError> {
        if let Some(id) = who.user_id {
            let user = self.access.user(id)?;
            return Ok(user.map_or_else(|| format!("user {id}"), |u| format!("user {}", u.email)));
        }
        Ok(format!("key {}", who.key_id))
    }

    /// Records a settings change in the audit log, with the state before and after as JSON.
    /// Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn audit(
        &self,
        who: &auth::Principal,
        party: Option<purse_core::PartyId>,
        entity: &str,
        entity_id: impl ToString,
        action: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<(), ApiError> {
        let entry = self.audit_entry(who, party, entity, entity_id, action, before, after)?;
        self.credit.record_audit(&entry)?;
        Ok(())
    }

    /// How the audit log shows a key's or user's role and scope, and the party it belongs to.
    pub fn access_view(
        role: purse_core::Role,
        scope: purse_core::Scope,
    ) -> (serde_json::Value, Option<purse_core::PartyId>) {
        let (kind, party) = purse_store::codec::role(role);
        (
            serde_json::json!({ "role": kind, "party": party, "scope": purse_store::codec::scope(scope) }),
            party.map(purse_core::PartyId),
        )
    }

    /// The audit entry of a change made now by `who`. Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn audit_entry(
        &self,
        who: &auth::Principal,
        party: Option<purse_core::PartyId>,
        entity: &str,
        entity_id: impl ToString,
        action: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<purse_store::AuditEntry, ApiError> {
        Ok(purse_store::AuditEntry {
            id: 0,
            at: self.engine.clock().now(),
            actor: self.actor(who)?,
            party,
            entity: entity.to_owned(),
            entity_id: entity_id.to_string(),
            action: action.to_owned(),
            before: before.map(ToString::to_string),
            after: after.map(ToString::to_string),
        })
    }
}
