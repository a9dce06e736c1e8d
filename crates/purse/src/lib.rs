//! The `purse` command and what it shares with the tests: choosing a store backend from a
//! database URL ([`open_store`]), configuration ([`Config`]), and the `demo`, `bench` and
//! `soak` programs.
//!
//! This is the only crate that knows both database drivers; it picks one, once, from the URL.

#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod demo;
pub mod error;
pub mod ids;
pub mod keys;
pub mod remote;
pub mod serve;
pub mod soak;
pub mod web;

use std::path::Path;
use std::sync::Arc;

use purse_engine::{Clock, Engine, EngineConfig};
use purse_store::{
    AccessStore, AlertStore, CreditStore, GrantStore, PaymentStore, RatingStore, Reader, Store, StoreError,
};
use serde::Deserialize;

pub use error::Error;

/// The database URL when none is configured: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://purse.db";

/// An opened store: the write side (for one engine), the shared read side, who may get in
/// (keys, users, sessions), and what notifications keep.
pub struct Opened {
    pub store: Box<dyn Store>,
    pub reader: Arc<dyn Reader>,
    pub access: Arc<dyn AccessStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub payments: Arc<dyn PaymentStore>,
    pub credit: Arc<dyn CreditStore>,
    pub rating: Arc<dyn RatingStore>,
    pub grants: Arc<dyn GrantStore>,
    pub url: String,
}

/// One more read-side connection, for a background worker.
pub struct Side {
    pub reader: Arc<dyn Reader>,
    pub access: Arc<dyn AccessStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub payments: Arc<dyn PaymentStore>,
    pub credit: Arc<dyn CreditStore>,
    pub rating: Arc<dyn RatingStore>,
    pub grants: Arc<dyn GrantStore>,
}

fn side<R: Reader + AccessStore + AlertStore + PaymentStore + CreditStore + RatingStore + GrantStore + 'static>(
    reader: R,
) -> Side {
    let reader = Arc::new(reader);
    Side {
        reader: reader.clone(),
        access: reader.clone(),
        alerts: reader.clone(),
        payments: reader.clone(),
        credit: reader.clone(),
        rating: reader.clone(),
        grants: reader,
    }
}

/// Opens the store named by `url` (`sqlite://PATH` or `postgres://...`) and migrates it.
pub fn open_store(url: &str) -> Result<Opened, StoreError> {
    let (store, shared): (Box<dyn Store>, Side) = if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Other("sqlite:// needs a file path, e.g. sqlite://purse.db".into()));
        }
        let (store, reader) = purse_store_sqlite::open(path)?;
        (Box::new(store), side(reader))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, reader) = purse_store_postgres::open(url)?;
        (Box::new(store), side(reader))
    } else {
        return Err(StoreError::Other(format!("database URL {url:?} must start with sqlite:// or postgres://")));
    };
    Ok(Opened {
        store,
        reader: shared.reader,
        access: shared.access,
        alerts: shared.alerts,
        payments: shared.payments,
        credit: shared.credit,
        rating: shared.rating,
        grants: shared.grants,
        url: url.to_owned(),
    })
}

/// A connection of its own to a store [`open_store`] opened.
pub fn open_side(url: &str) -> Result<Side, StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) => Ok(side(purse_store_sqlite::open_reader(path)?)),
        None => Ok(side(purse_store_postgres::open_reader(url)?)),
    }
}

/// Opens the store and starts an engine on it.
pub fn start_engine(url: &str, clock: Arc<dyn Clock>, config: EngineConfig) -> Result<Engine, StoreError> {
    let opened = open_store(url)?;
    Ok(Engine::start(opened.store, opened.reader, clock, config))
}

/// Settings from `purse.toml` (or `--config`), overridden by `PURSE_*` environment variables,
/// overridden by command-line flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: Option<String>,
    #[serde(default)]
    pub engine: EngineSettings,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// Read the time from this file (microseconds since the epoch) instead of the system
    /// clock, so that a simulation or a test can move every process's time at once.
    pub clock_file: Option<String>,
    /// For the client commands: the server's base URL and the API key to use.
    pub url: Option<String>,
    pub api_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address `purse serve` listens on (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// Requests per second per API key (0: unlimited).
    pub rate_per_key: Option<u32>,
    pub burst_per_key: Option<u32>,
    /// How long idempotent responses are kept and replayed.
    pub idempotency_retention_hours: Option<u64>,
    /// One JSON log line per request (default true).
    pub log_requests: Option<bool>,
    /// How long a portal login lasts (default 12).
    pub session_hours: Option<u64>,
    /// Mark portal cookies `Secure`.
    pub secure_cookies: Option<bool>,
    /// How long a connection may take to send a request's head, the wait between two
    /// requests on a kept-alive connection included, before it is closed (default 30).
    pub read_timeout_seconds: Option<u64>,
}

/// `[alerts]`: notifications and the scheduler. With no `smtp_host`, e-mail goes to `maildir`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// Where e-mail goes without an SMTP server (default `purse-maildir`).
    pub maildir: Option<String>,
    pub from: Option<String>,
    /// The portal's address, for links in messages (default `http://` + the listen address).
    pub portal_url: Option<String>,
    pub operator_email: Option<String>,
    /// The daily sweep's hour, 0-23 (default 6), in `time_zone`.
    pub daily_hour: Option<u32>,
    /// The server's time zone (`Europe/Berlin`, `UTC`, `+03:00`; default UTC): the daily
    /// sweep's, and the caps' of customers without a zone of their own.
    pub time_zone: Option<String>,
    /// The same as a fixed offset (`+03:00`), as older settings files give it.
    pub utc_offset: Option<String>,
    /// Seconds of clock time between evaluations of every customer (default 60).
    pub evaluate_every_s: Option<i64>,
    /// Milliseconds of real time between the worker's passes (default 250).
    pub tick_ms: Option<u64>,
    pub retry_base_s: Option<i64>,
    pub attempts_max: Option<u32>,
    pub webhook_failures_max: Option<u32>,
    pub allow_private_webhooks: Option<bool>,
    /// Days before a credit grant with credit left expires that its customer is told (default 7).
    pub grant_notice_days: Option<i64>,
}

impl AlertsConfig {
    /// The server's zone: `time_zone`, else `utc_offset`, else none given.
    fn zone(&self) -> crate::error::Result<Option<purse_core::time::Zone>> {
        match (&self.time_zone, &self.utc_offset) {
            (Some(z), _) => parse_zone("alerts.time_zone", z).map(Some),
            (None, Some(o)) => parse_zone("alerts.utc_offset", o).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// `[payments]`: Stripe and auto-recharge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Stripe's base URL, e.g. `https://api.stripe.com`, or a localstripe's.
    pub stripe_url: Option<String>,
    /// Stripe's secret key (`sk_...`).
    pub stripe_secret_key: Option<String>,
    /// Card recharges failing in a row before auto-recharge turns itself off (default 3).
    pub failures_max: Option<u32>,
    /// Seconds a process may work on a recharge before another takes it over (default 60).
    pub lease_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    pub queue_len_max: Option<usize>,
    pub batch_size_max: Option<usize>,
    pub batch_wait_us: Option<u64>,
    pub cached_accounts_max: Option<usize>,
}

impl Config {
    /// Reads the file if given (or `purse.toml` if it exists), then the environment.
    pub fn load(path: Option<&Path>) -> crate::error::Result<Config> {
        let default = Path::new("purse.toml");
        let path = path.or_else(|| default.exists().then_some(default));
        let mut config = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| crate::Error::Usage(format!("{}: {e}", p.display())))?;
                toml::from_str(&text).map_err(|e| crate::Error::Usage(format!("{}: {e}", p.display())))?
            }
            None => Config::default(),
        };
        if let Ok(url) = std::env::var("PURSE_DATABASE_URL") {
            config.database_url = Some(url);
        }
        let number = |name: &str| -> crate::error::Result<Option<u64>> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| crate::Error::Usage(format!("{name} must be a whole number, got {v:?}"))),
                Err(_) => Ok(None),
            }
        };
        if let Some(n) = number("PURSE_ENGINE_QUEUE_LEN_MAX")? {
            config.engine.queue_len_max = Some(n as usize);
        }
        if let Some(n) = number("PURSE_ENGINE_BATCH_SIZE_MAX")? {
            config.engine.batch_size_max = Some(n as usize);
        }
        if let Some(n) = number("PURSE_ENGINE_BATCH_WAIT_US")? {
            config.engine.batch_wait_us = Some(n);
        }
        if let Some(n) = number("PURSE_ENGINE_CACHED_ACCOUNTS_MAX")? {
            config.engine.cached_accounts_max = Some(n as usize);
        }
        if let Ok(listen) = std::env::var("PURSE_LISTEN") {
            config.api.listen = Some(listen);
        }
        if let Some(n) = number("PURSE_API_RATE_PER_KEY")? {
            config.api.rate_per_key = Some(
                u32::try_from(n).map_err(|_| crate::Error::Usage("PURSE_API_RATE_PER_KEY is too large".to_owned()))?,
            );
        }
        if let Some(n) = number("PURSE_API_BURST_PER_KEY")? {
            config.api.burst_per_key = Some(
                u32::try_from(n).map_err(|_| crate::Error::Usage("PURSE_API_BURST_PER_KEY is too large".to_owned()))?,
            );
        }
        if let Some(n) = number("PURSE_API_READ_TIMEOUT_SECONDS")? {
            config.api.read_timeout_seconds = Some(n);
        }
        if let Ok(v) = std::env::var("PURSE_API_LOG_REQUESTS") {
            config.api.log_requests = Some(!matches!(v.as_str(), "0" | "false" | "no"));
        }
        let text = |name: &str| std::env::var(name).ok();
        if let Some(v) = text("PURSE_CLOCK_FILE") {
            config.clock_file = Some(v);
        }
        let a = &mut config.alerts;
        for (name, slot) in [
            ("PURSE_SMTP_HOST", &mut a.smtp_host),
            ("PURSE_SMTP_TLS", &mut a.smtp_tls),
            ("PURSE_SMTP_USERNAME", &mut a.smtp_username),
            ("PURSE_SMTP_PASSWORD", &mut a.smtp_password),
            ("PURSE_MAILDIR", &mut a.maildir),
            ("PURSE_PORTAL_URL", &mut a.portal_url),
        ] {
            if let Some(v) = text(name) {
                *slot = Some(v);
            }
        }
        if let Some(n) = number("PURSE_SMTP_PORT")? {
            a.smtp_port = Some(
                u16::try_from(n).map_err(|_| crate::Error::Usage("PURSE_SMTP_PORT must be 1 to 65535".to_owned()))?,
            );
        }
        if let Some(n) = number("PURSE_ALERTS_TICK_MS")? {
            a.tick_ms = Some(n);
        }
        if let Some(n) = number("PURSE_ALERTS_RETRY_BASE_S")? {
            a.retry_base_s = Some(n as i64);
        }
        if let Some(n) = number("PURSE_ALERTS_EVALUATE_EVERY_S")? {
            a.evaluate_every_s = Some(n as i64);
        }
        if let Some(v) = text("PURSE_ALLOW_PRIVATE_WEBHOOKS") {
            a.allow_private_webhooks = Some(!matches!(v.as_str(), "0" | "false" | "no"));
        }
        let p = &mut config.payments;
        for (name, slot) in
            [("PURSE_STRIPE_URL", &mut p.stripe_url), ("PURSE_STRIPE_SECRET_KEY", &mut p.stripe_secret_key)]
        {
            if let Some(v) = text(name) {
                *slot = Some(v);
            }
        }
        if let Some(n) = number("PURSE_RECHARGE_FAILURES_MAX")? {
            p.failures_max = Some(
                u32::try_from(n)
                    .map_err(|_| crate::Error::Usage("PURSE_RECHARGE_FAILURES_MAX is too large".to_owned()))?,
            );
        }
        if let Some(n) = number("PURSE_RECHARGE_LEASE_S")? {
            p.lease_s = Some(n as i64);
        }
        if let Ok(url) = std::env::var("PURSE_URL") {
            config.url = Some(url);
        }
        if let Ok(key) = std::env::var("PURSE_API_KEY") {
            config.api_key = Some(key);
        }
        Ok(config)
    }

    /// Recharger as configured. `PURSE_RECHARGE_FAULT` (tests only) makes the process abort
    /// at a step of card recharges.
    pub fn payment_config(&self) -> crate::error::Result<purse_app::recharger::PaymentConfig> {
        let p = &self.payments;
        let stripe = match (&p.stripe_url, &p.stripe_secret_key) {
            (Some(url), Some(key)) => {
                purse_app::webhooks::parse_webhook_url(url)
                    .map_err(|e| crate::Error::Usage(format!("payments.stripe_url: {e}")))?;
                Some((url.clone(), key.clone()))
            }
            (None, None) => None,
            _ => {
                return Err(crate::Error::Usage(
                    "payments: give both stripe_url and stripe_secret_key, or neither".into(),
                ))
            }
        };
        let mut c = purse_app::recharger::PaymentConfig { stripe, ..Default::default() };
        if let Some(n) = p.failures_max {
            if !(1..=100).contains(&n) {
                return Err(crate::Error::Usage(format!("payments.failures_max must be 1 to 100, got {n}")));
            }
            c.failures_max = n;
        }
        if let Some(s) = p.lease_s {
            if !(0..=3600).contains(&s) {
                return Err(crate::Error::Usage(format!("payments.lease_s must be 0 to 3600, got {s}")));
            }
            c.lease_s = s;
        }
        if let Some(zone) = self.alerts.zone()? {
            c.zone = zone;
        }
        if let Ok(f) = std::env::var("PURSE_RECHARGE_FAULT") {
            let fault = purse_app::recharger::Fault::parse(&f)
                .ok_or_else(|| crate::Error::Usage(format!("PURSE_RECHARGE_FAULT: unknown step {f:?}")))?;
            c.fault = Some((fault, true));
        }
        Ok(c)
    }

    pub fn database_url(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned).or_else(|| self.database_url.clone()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
    }

    pub fn engine_config(&self) -> crate::error::Result<EngineConfig> {
        let mut c = EngineConfig::default();
        if let Some(n) = self.engine.queue_len_max {
            c.queue_len_max = n;
        }
        if let Some(n) = self.engine.batch_size_max {
            c.batch_size_max = n;
        }
        if let Some(us) = self.engine.batch_wait_us {
            c.batch_wait = std::time::Duration::from_micros(us);
        }
        if let Some(n) = self.engine.cached_accounts_max {
            c.cached_accounts_max = n;
        }
        for (name, n) in [
            ("queue_len_max", c.queue_len_max),
            ("batch_size_max", c.batch_size_max),
            ("cached_accounts_max", c.cached_accounts_max),
        ] {
            if n == 0 {
                return Err(crate::Error::Usage(format!("engine.{name} must be at least 1")));
            }
        }
        if c.batch_wait > std::time::Duration::from_secs(1) {
            return Err(crate::Error::Usage("engine.batch_wait_us must be at most 1000000".into()));
        }
        if let Some(hours) = self.api.idempotency_retention_hours {
            if hours == 0 || hours > 24 * 365 {
                return Err(crate::Error::Usage("api.idempotency_retention_hours must be 1 to 8760".into()));
            }
            c.response_retention = std::time::Duration::from_secs(hours * 3600);
        }
        Ok(c)
    }

    /// The application's, the API's and the portal's settings.
    pub fn web_settings(&self) -> crate::error::Result<web::WebSettings> {
        let mut w = web::WebSettings::default();
        w.app.allow_private_webhooks = self.alerts.allow_private_webhooks.unwrap_or(false);
        if let Some(zone) = self.alerts.zone()? {
            w.app.zone = zone;
        }
        let s = &mut w.api;
        if let Some(n) = self.api.rate_per_key {
            s.rate_per_key = n;
        }
        if let Some(n) = self.api.burst_per_key {
            s.burst_per_key = n;
        } else if let Some(n) = self.api.rate_per_key {
            s.burst_per_key = n.saturating_mul(2);
        }
        if let Some(v) = self.api.log_requests {
            s.log_requests = v;
        }
        if let Some(hours) = self.api.session_hours {
            if !(1..=24 * 30).contains(&hours) {
                return Err(crate::Error::Usage(format!("api.session_hours must be 1 to 720, got {hours}")));
            }
            w.portal.session_ttl = std::time::Duration::from_secs(hours * 3600);
        }
        if let Some(v) = self.api.secure_cookies {
            w.portal.secure_cookies = v;
        }
        Ok(w)
    }

    /// Notifications and the scheduler for a server listening at `listen`.
    pub fn alert_config(&self, listen: &str) -> crate::error::Result<purse_app::notifier::AlertConfig> {
        let a = &self.alerts;
        let mail = match &a.smtp_host {
            Some(host) => purse_app::notifier::MailConfig::Smtp {
                host: host.clone(),
                port: a.smtp_port.unwrap_or(587),
                tls: purse_app::notifier::SmtpTls::parse(a.smtp_tls.as_deref().unwrap_or("starttls"))
                    .map_err(crate::Error::from)?,
                username: a.smtp_username.clone(),
                password: a.smtp_password.clone(),
            },
            None => purse_app::notifier::MailConfig::Maildir(
                a.maildir.clone().unwrap_or_else(|| "purse-maildir".into()).into(),
            ),
        };
        let mut c = purse_app::notifier::AlertConfig { mail, ..Default::default() };
        if let Some(from) = &a.from {
            c.from = from.clone();
        }
        c.portal_url = a.portal_url.clone().unwrap_or_else(|| format!("http://{listen}"));
        c.operator_email = a.operator_email.clone();
        if let Some(h) = a.daily_hour {
            if h > 23 {
                return Err(crate::Error::Usage(format!("alerts.daily_hour must be 0 to 23, got {h}")));
            }
            c.daily_hour = h;
        }
        if let Some(zone) = a.zone()? {
            c.zone = zone;
        }
        if let Some(d) = a.grant_notice_days {
            if !(0..=365).contains(&d) {
                return Err(crate::Error::Usage(format!("alerts.grant_notice_days must be 0 to 365, got {d}")));
            }
            c.grant_notice_lead_s = d * 86_400;
        }
        if let Some(s) = a.evaluate_every_s {
            if !(1..=86_400).contains(&s) {
                return Err(crate::Error::Usage(format!("alerts.evaluate_every_s must be 1 to 86400, got {s}")));
            }
            c.evaluate_every_s = s;
        }
        if let Some(ms) = a.tick_ms {
            if !(10..=60_000).contains(&ms) {
                return Err(crate::Error::Usage(format!("alerts.tick_ms must be 10 to 60000, got {ms}")));
            }
            c.tick = std::time::Duration::from_millis(ms);
        }
        if let Some(s) = a.retry_base_s {
            if !(0..=86_400).contains(&s) {
                return Err(crate::Error::Usage(format!("alerts.retry_base_s must be 0 to 86400, got {s}")));
            }
            c.retry_base_s = s;
        }
        if let Some(n) = a.attempts_max {
            if !(1..=100).contains(&n) {
                return Err(crate::Error::Usage(format!("alerts.attempts_max must be 1 to 100, got {n}")));
            }
            c.attempts_max = n;
        }
        if let Some(n) = a.webhook_failures_max {
            if n == 0 {
                return Err(crate::Error::Usage("alerts.webhook_failures_max must be at least 1".into()));
            }
            c.webhook_failures_max = n;
        }
        c.allow_private_webhooks = a.allow_private_webhooks.unwrap_or(false);
        Ok(c)
    }

    /// The clock every decision is made by: the system's, or the configured file's.
    pub fn clock(&self) -> crate::error::Result<Arc<dyn Clock>> {
        match &self.clock_file {
            Some(path) => Ok(Arc::new(FileClock::open(path)?)),
            None => Ok(Arc::new(purse_engine::SystemClock)),
        }
    }

    /// The address to listen on: the flag, else the configuration, else 127.0.0.1:8080.
    /// `[api] read_timeout_seconds`: at least a second.
    pub fn read_timeout(&self) -> crate::error::Result<std::time::Duration> {
        match self.api.read_timeout_seconds {
            None => Ok(serve::READ_TIMEOUT),
            Some(0) => Err(crate::Error::Usage("api.read_timeout_seconds must be at least 1".to_owned())),
            Some(n) => Ok(std::time::Duration::from_secs(n)),
        }
    }

    pub fn listen(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned).or_else(|| self.api.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".to_owned())
    }
}

/// `+03:00`, `-05:30`, `UTC` or `Z` as minutes east of UTC.
/// A time zone of the settings file, naming its key when it is not one.
pub fn parse_zone(key: &str, text: &str) -> crate::error::Result<purse_core::time::Zone> {
    purse_core::time::Zone::parse(text).ok_or_else(|| {
        crate::Error::Usage(format!(
            "{key} must be a time zone such as Europe/Berlin, UTC or a fixed offset such as +03:00, got {text:?}"
        ))
    })
}

/// A clock read from a file holding microseconds since the epoch: every process pointed at
/// the file shares one time, which a test or simulation moves by rewriting it.
pub struct FileClock {
    path: std::path::PathBuf,
    last: std::sync::atomic::AtomicI64,
}

impl FileClock {
    pub fn open(path: &str) -> crate::error::Result<FileClock> {
        let clock = FileClock { path: path.into(), last: std::sync::atomic::AtomicI64::new(0) };
        clock.read().map_err(|e| crate::Error::Usage(format!("clock_file {path}: {e}")))?;
        Ok(clock)
    }

    fn read(&self) -> crate::error::Result<i64> {
        let text = std::fs::read_to_string(&self.path).map_err(crate::Error::from)?;
        let t = text
            .trim()
            .parse::<i64>()
            .map_err(|_| crate::Error::Usage(format!("{:?} is not microseconds since the epoch", text.trim())))?;
        self.last.store(t, std::sync::atomic::Ordering::Relaxed);
        Ok(t)
    }

    /// Sets the time of every process reading `path` (written whole, then renamed).
    pub fn set(path: &std::path::Path, t: purse_core::Timestamp) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, t.0.to_string())?;
        std::fs::rename(tmp, path)
    }
}

impl Clock for FileClock {
    fn now(&self) -> purse_core::Timestamp {
        // A file being replaced is read again next time; meanwhile the last time holds.
        purse_core::Timestamp(self.read().unwrap_or_else(|_| self.last.load(std::sync::atomic::Ordering::Relaxed)))
    }
}
