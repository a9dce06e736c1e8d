//! The whole application in-process: the API and the portal answered by `router.oneshot`,
//! without a socket, on either backend, with a clock the test moves. Keys and portal sessions
//! are made directly in the store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use purse_app::{App, AppConfig};
use purse_core::{Role, Scope, Timestamp};
use purse_engine::{Engine, EngineConfig, ManualClock};
use purse_http::ApiSettings;
use purse_store::{NewUser, SessionRecord};
use serde_json::Value;
use tower::ServiceExt;

use super::T0;

/// How a request is signed: an API key, or a portal session with its CSRF token.
#[derive(Clone, Debug)]
pub enum Auth {
    Key(String),
    Session { cookie: String, csrf: String },
    Nobody,
}

/// An answer: status, headers, and the body as JSON (text bodies become a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code and field of an error answer ("" when absent).
    pub fn error(&self) -> (&str, &str) {
        let e = &self.body["error"];
        (e["code"].as_str().unwrap_or(""), e["field"].as_str().unwrap_or(""))
    }

    /// The body as text (HTML pages).
    pub fn text(&self) -> String {
        self.body.as_str().map_or_else(|| self.body.to_string(), str::to_owned)
    }
}

pub struct InProcess {
    pub state: Arc<App>,
    router: axum::Router,
    pub clock: Arc<ManualClock>,
    pub url: String,
    n: std::sync::atomic::AtomicU64,
}

/// Runs blocking store code on a thread of its own, so that it may be called from async
/// tests too (PostgreSQL's blocking client refuses to run inside a runtime).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("the blocking call panicked"))
}

impl InProcess {
    pub fn on(url: &str) -> InProcess {
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(T0)));
        let opened = off_runtime(|| purse::open_store(url).expect("store opens"));
        let engine = Engine::start(opened.store, opened.reader.clone(), clock.clone(), EngineConfig::default());
        let config = AppConfig { allow_private_webhooks: true, ..AppConfig::default() };
        let stores = purse_app::Stores {
            access: opened.access,
            alerts: opened.alerts,
            payments: opened.payments,
            credit: opened.credit,
            rating: opened.rating,
            grants: opened.grants,
        };
        let state = Arc::new(App::new(Arc::new(engine), stores, config));
        let api = ApiSettings { log_requests: false, rate_per_key: 0, ..ApiSettings::default() };
        let router = purse::web::router(state.clone(), api, Default::default());
        InProcess { state, router, clock, url: url.to_owned(), n: std::sync::atomic::AtomicU64::new(0) }
    }

    /// A unique text, for client ids, names and e-mails.
    pub fn fresh(&self, what: &str) -> String {
        format!("{what}-{}", self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    /// A new API key of `role` and `scope`.
    pub fn key(&self, role: Role, scope: Scope) -> Auth {
        let (secret, record) = purse_app::secrets::issue_key("test", role, scope, Timestamp(0)).unwrap();
        off_runtime(|| self.state.access.insert_key(&record).unwrap());
        Auth::Key(secret)
    }

    /// A new portal user of `role` and `scope`, signed in.
    pub fn session(&self, role: Role, scope: Scope) -> Auth {
        let email = format!("{}@example.com", self.fresh("user"));
        let user =
            NewUser { email, name: "Test".into(), password_hash: "x".into(), role, scope, created_at: Timestamp(0) };
        let id = off_runtime(|| self.state.access.insert_user(&user).unwrap().expect("a fresh e-mail"));
        let cookie = self.fresh("cookie-secret-of-at-least-some-length");
        let csrf = self.fresh("csrf");
        let record = SessionRecord {
            hash: purse_app::secrets::hash_key(&cookie),
            user_id: id,
            csrf: csrf.clone(),
            created_at: Timestamp::from_secs(T0),
            expires_at: Timestamp::from_secs(T0 + 365 * 86_400),
        };
        off_runtime(|| self.state.access.insert_session(&record).unwrap());
        Auth::Session { cookie, csrf }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, headers, body }
    }

    /// An API call; changing methods carry a fresh Idempotency-Key.
    pub async fn call(&self, auth: &Auth, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let key = (method != "GET").then(|| self.fresh("idem"));
        self.call_with_key(auth, method, path, body, key.as_deref()).await
    }

    /// An API call with the Idempotency-Key given (a retry sends the same one).
    pub async fn call_with_key(
        &self,
        auth: &Auth,
        method: &str,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Auth::Key(k) = auth {
            request = request.header("authorization", format!("Bearer {k}"));
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// A portal request: a page (GET) or a form (POST, with the session's CSRF token).
    pub async fn page(&self, auth: &Auth, method: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        let mut form: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Auth::Session { cookie, csrf } = auth {
            request = request.header("cookie", format!("purse_session={cookie}"));
            form.push(("csrf".into(), csrf.clone()));
        }
        let body = if method == "GET" {
            Body::empty()
        } else {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            Body::from(form_body(&form))
        };
        self.send(request.body(body).unwrap()).await
    }

    /// The operator's read-write key, made once per call site that needs it.
    pub fn operator(&self) -> Auth {
        self.key(Role::Operator, Scope::ReadWrite)
    }
}

/// A form's fields as `application/x-www-form-urlencoded`.
pub fn form_body(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}
