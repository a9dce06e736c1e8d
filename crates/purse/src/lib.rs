//! The `purse` command and what it shares with the tests: choosing a store backend from a
//! database URL ([`open_store`]), configuration ([`Config`]), and the `demo`, `bench` and
//! `soak` programs.
//!
//! This is the only crate that knows both database drivers; it picks one, once, from the URL.

#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod demo;
pub mod ids;
pub mod keys;
pub mod remote;
pub mod serve;
pub mod soak;

use std::path::Path;
use std::sync::Arc;

use purse_engine::{Clock, Engine, EngineConfig};
use purse_store::{AccessStore, Reader, Store, StoreError};
use serde::Deserialize;

/// The database URL when none is configured: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://purse.db";

/// An opened store: the write side (for one engine), the shared read side, and who may get in (keys, users, sessions).
pub struct Opened {
    pub store: Box<dyn Store>,
    pub reader: Arc<dyn Reader>,
    pub access: Arc<dyn AccessStore>,
}

/// Opens the store named by `url` (`sqlite://PATH` or `postgres://...`) and migrates it.
pub fn open_store(url: &str) -> Result<Opened, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError("sqlite:// needs a file path, e.g. sqlite://purse.db".into()));
        }
        let (store, reader) = purse_store_sqlite::open(path)?;
        let reader = Arc::new(reader);
        Ok(Opened { store: Box::new(store), reader: reader.clone(), access: reader })
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, reader) = purse_store_postgres::open(url)?;
        let reader = Arc::new(reader);
        Ok(Opened { store: Box::new(store), reader: reader.clone(), access: reader })
    } else {
        Err(StoreError(format!("database URL {url:?} must start with sqlite:// or postgres://")))
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    pub queue_len_max: Option<usize>,
    pub batch_size_max: Option<usize>,
    pub batch_wait_us: Option<u64>,
}

impl Config {
    /// Reads the file if given (or `purse.toml` if it exists), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let default = Path::new("purse.toml");
        let path = path.or_else(|| default.exists().then_some(default));
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        if let Ok(url) = std::env::var("PURSE_DATABASE_URL") {
            config.database_url = Some(url);
        }
        let number = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) => v.parse().map(Some).map_err(|_| format!("{name} must be a whole number, got {v:?}")),
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
        if let Ok(listen) = std::env::var("PURSE_LISTEN") {
            config.api.listen = Some(listen);
        }
        if let Some(n) = number("PURSE_API_RATE_PER_KEY")? {
            config.api.rate_per_key = Some(u32::try_from(n).map_err(|_| "PURSE_API_RATE_PER_KEY is too large".to_owned())?);
        }
        if let Some(n) = number("PURSE_API_BURST_PER_KEY")? {
            config.api.burst_per_key = Some(u32::try_from(n).map_err(|_| "PURSE_API_BURST_PER_KEY is too large".to_owned())?);
        }
        if let Ok(v) = std::env::var("PURSE_API_LOG_REQUESTS") {
            config.api.log_requests = Some(!matches!(v.as_str(), "0" | "false" | "no"));
        }
        if let Ok(url) = std::env::var("PURSE_URL") {
            config.url = Some(url);
        }
        if let Ok(key) = std::env::var("PURSE_API_KEY") {
            config.api_key = Some(key);
        }
        Ok(config)
    }

    pub fn database_url(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned)
            .or_else(|| self.database_url.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
    }

    pub fn engine_config(&self) -> Result<EngineConfig, String> {
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
        if c.queue_len_max == 0 || c.batch_size_max == 0 {
            return Err("engine.queue_len_max and engine.batch_size_max must be at least 1".into());
        }
        if c.batch_wait > std::time::Duration::from_secs(1) {
            return Err("engine.batch_wait_us must be at most 1000000".into());
        }
        if let Some(hours) = self.api.idempotency_retention_hours {
            if hours == 0 || hours > 24 * 365 {
                return Err("api.idempotency_retention_hours must be 1 to 8760".into());
            }
            c.response_retention = std::time::Duration::from_secs(hours * 3600);
        }
        Ok(c)
    }

    pub fn api_settings(&self) -> Result<purse_http::ApiSettings, String> {
        let mut s = purse_http::ApiSettings::default();
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
                return Err(format!("api.session_hours must be 1 to 720, got {hours}"));
            }
            s.session_ttl = std::time::Duration::from_secs(hours * 3600);
        }
        if let Some(v) = self.api.secure_cookies {
            s.secure_cookies = v;
        }
        Ok(s)
    }

    /// The address to listen on: the flag, else the configuration, else 127.0.0.1:8080.
    pub fn listen(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned).or_else(|| self.api.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".to_owned())
    }
}
