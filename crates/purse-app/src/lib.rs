//! Purse's application layer: between the ledger (`purse-core`, `purse-engine`,
//! `purse-store`) and its edges (the HTTP API, the portal, the command line).
//!
//! [`App`] owns every workflow with typed inputs and the one error, [`AppError`]: settings
//! changes, credit control, recharges and Pay Now, invoices and receipts, documents, keys and
//! users, the audit log. [`policy`] is the one authorization policy: every route of the API
//! and every page and form of the portal is an [`policy::Action`], and the policy alone says
//! who may take it, on whose objects, and which fields each role may set. The edges parse,
//! ask the application, and render; they decide nothing.
//!
//! Its functions block on the store: call them off an async runtime. This crate knows no
//! HTTP, no HTML and no SQL.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod cards;
pub mod collections;
pub mod credit;
pub mod credit_notes;
pub mod documents;
pub mod error;
pub mod grants;
pub mod invoices;
pub mod keys;
pub mod log;
pub mod notifier;
pub mod outbound;
pub mod parse;
pub mod payments;
pub mod policy;
pub mod rating;
pub mod recharger;
pub mod refunds;
pub mod secrets;
pub mod sessions;
pub mod taxes;
pub mod tenancy;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use purse_core::{Currency, CurrencyCode, PartyId, Role, Scope};
use purse_engine::Engine;
use purse_store::{AccessStore, AlertStore, CreditStore, GrantStore, PaymentStore, RatingStore};

pub use error::{AppError, Code, ConfigError, Problems};

/// What the application's functions answer.
pub type AppResult<T> = Result<T, AppError>;

/// Who is asking: an API key's or a portal user's role (what it may see) and scope (whether
/// it may change anything), and which key or user it is (idempotency keys and rate limits
/// are per key; the audit log names the user or key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: u64,
    /// The portal user behind a session (none for an API key).
    pub user_id: Option<u64>,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// A portal user's principal: the same role and scope rules as a key's. It has no key,
    /// so no idempotency keys or rate limit of its own (`key_id` 0 is never a key's id).
    pub fn for_user(role: Role, scope: Scope, user_id: u64) -> Principal {
        Principal { key_id: 0, user_id: Some(user_id), role, scope }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// Settings of the application.
#[derive(Clone, Debug, Default)]
pub struct AppConfig {
    /// Let webhook endpoints be registered at loopback, private and link-local addresses.
    pub allow_private_webhooks: bool,
    /// The server's time zone: the days of customers without a zone of their own.
    pub zone: purse_core::time::Zone,
}

/// Entries past which the caches of facts that never change start over (a bound, not a
/// tuning knob).
const CACHED_FACTS_MAX: usize = 1_000_000;

/// The application: the engine, the stores, card payments when configured, and caches of
/// facts that never change (an account's owner, a customer's reseller, a currency's scale).
pub struct App {
    pub engine: Arc<Engine>,
    /// API keys, portal users and their sessions.
    pub access: Arc<dyn AccessStore>,
    /// Low Balance Profiles, alert settings, the notification log, webhook endpoints.
    pub alerts: Arc<dyn AlertStore>,
    /// Recharge settings, recharges, invoices and receipts.
    pub payments: Arc<dyn PaymentStore>,
    /// Customer classes, credit policies, the credit limit history and the audit log.
    pub credit: Arc<dyn CreditStore>,
    /// Rate plans, their rates and assignments, and charging sessions.
    pub rating: Arc<dyn RatingStore>,
    /// Credit grants, what they paid, recurring grants.
    pub grants: Arc<dyn GrantStore>,
    /// Card payments through Stripe, when configured.
    pub cards: Option<Arc<dyn cards::Cards>>,
    pub config: AppConfig,
    /// Bumped by every revocation of an API key through this process, so that an edge that
    /// caches verified keys forgets them at once.
    pub keys_revoked: std::sync::atomic::AtomicU64,
    owners: Mutex<HashMap<u64, Option<PartyId>>>,
    account_facts: Mutex<HashMap<u64, rating::AccountFacts>>,
    resellers: Mutex<HashMap<PartyId, Option<PartyId>>>,
    currencies: RwLock<HashMap<CurrencyCode, Currency>>,
    rating_cache: rating::RatingCache,
    /// Active sessions as this process last wrote them (see `sessions`).
    live_sessions: Mutex<HashMap<u64, purse_store::SessionRow>>,
}

/// The stores the application reads and writes besides the engine's ledger.
pub struct Stores {
    pub access: Arc<dyn AccessStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub payments: Arc<dyn PaymentStore>,
    pub credit: Arc<dyn CreditStore>,
    pub rating: Arc<dyn RatingStore>,
    pub grants: Arc<dyn GrantStore>,
}

impl App {
    /// The time zone a customer's days are counted in: its billing settings', else the
    /// server's. Blocking.
    pub fn zone_of(&self, party: PartyId) -> AppResult<purse_core::time::Zone> {
        Ok(self.payments.billing_settings(party)?.map_or_else(|| self.config.zone.clone(), |b| b.time_zone))
    }

    pub fn new(engine: Arc<Engine>, stores: Stores, config: AppConfig) -> App {
        let Stores { access, alerts, payments, credit, rating, grants } = stores;
        App {
            engine,
            access,
            alerts,
            payments,
            credit,
            rating,
            grants,
            cards: None,
            config,
            keys_revoked: std::sync::atomic::AtomicU64::new(0),
            owners: Mutex::default(),
            account_facts: Mutex::default(),
            resellers: Mutex::default(),
            currencies: RwLock::default(),
            rating_cache: rating::RatingCache::default(),
            live_sessions: Mutex::default(),
        }
    }

    /// Card payments (Pay Now, saving a card) go through `cards`.
    pub fn with_cards(mut self, cards: Arc<dyn cards::Cards>) -> App {
        self.cards = Some(cards);
        self
    }

    /// The time now, by the engine's clock (the one clock of the whole process).
    pub fn now(&self) -> purse_core::Timestamp {
        self.engine.clock().now()
    }

    /// The currency named by `code`, as the ledger knows it. Currencies never change once
    /// created, so they are cached. Blocking on a miss.
    pub fn currency(&self, field: &str, code: CurrencyCode) -> AppResult<Currency> {
        if let Some(c) = self.currencies.read().ok().and_then(|m| m.get(&code).copied()) {
            return Ok(c);
        }
        let all = self.engine.reader().currencies()?;
        if let Ok(mut cache) = self.currencies.write() {
            cache.extend(all.iter().map(|c| (c.code, *c)));
        }
        all.into_iter().find(|c| c.code == code).ok_or_else(|| {
            AppError::invalid(field, Code::CurrencyUnknown, format!("currency {code} is not configured"))
        })
    }

    /// Whether `code` is a currency already in the cache (so reading it cannot block).
    pub fn knows_currency(&self, code: &str) -> bool {
        CurrencyCode::parse(code).is_ok_and(|c| self.currencies.read().is_ok_and(|m| m.contains_key(&c)))
    }
}

/// Inserts into a cache of facts, starting it over when full.
fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<HashMap<K, V>>, key: K, value: V) {
    if let Ok(mut m) = cache.lock() {
        if m.len() >= CACHED_FACTS_MAX {
            m.clear();
        }
        m.insert(key, value);
    }
}
