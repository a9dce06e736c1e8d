//! `Idempotency-Key`: every request that changes something carries one. The same key and
//! body replay the first response exactly; the same key with another body is refused (422);
//! a request whose key is still in flight is refused (409). Keys are scoped to the API key.
//!
//! The response is stored by the engine's writer in the same transaction as the commands it
//! answers (see `purse_engine::Seal`), so there is never a posting without its stored
//! response or the reverse; the writer also looks the key up first, so a retry costs no
//! extra read here. Requests refused before reaching the ledger (bad input) store nothing:
//! a retry is checked again. Retention is the engine's `response_retention`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::routes::BATCH_BODY_BYTES_MAX;
use crate::AppState;
use purse_app::{AppError, Principal};

pub const HEADER: &str = "idempotency-key";
const KEY_LEN_MAX: usize = 255;

/// Keys being processed right now, per API key.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<(u64, String)>>);

struct Claim {
    set: Arc<InFlight>,
    entry: (u64, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.entry);
        }
    }
}

/// Holds `key` of API key `key_id` as if a request with it were in flight, until dropped
/// (for tests of the 409 answer).
#[doc(hidden)]
pub fn hold_in_flight(state: &AppState, key_id: u64, key: &str) -> impl Drop {
    let entry = (key_id, key.to_owned());
    state.idempotency.0.lock().expect("not poisoned").insert(entry.clone());
    Claim { set: state.idempotency.clone(), entry }
}

/// The idempotency key of the request being handled and the hash of what it asked.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What a changing handler needs besides its body: who calls, and the idempotency key.
pub struct Ctx {
    pub principal: Principal,
    pub idempotency: Option<Idempotency>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Ctx, ApiError> {
        let crate::auth::Caller(principal) = crate::auth::Caller::from_request_parts(parts, state).await?;
        Ok(Ctx { principal, idempotency: parts.extensions.get::<Idempotency>().cloned() })
    }
}

fn hash(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    purse_app::secrets::hex(&h.finalize())
}

/// Middleware (inside authentication): enforces the header on every request that is not a
/// read, and answers replays before the handler runs.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Only the routes that change something; anything else (a read, or a method the path
    // does not have, which the router answers with 405) passes.
    let route = request.extensions().get::<axum::extract::MatchedPath>();
    let changes = route
        .and_then(|path| changing_routes().get(path.as_str()))
        .is_some_and(|methods| methods.contains(request.method()));
    if !changes {
        return next.run(request).await;
    }
    match prepare(&state, request).await {
        Ok((request, _claim)) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The methods of each path that change something, from the route table.
fn changing_routes() -> &'static HashMap<&'static str, Vec<Method>> {
    static ROUTES: std::sync::OnceLock<HashMap<&'static str, Vec<Method>>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut routes: HashMap<&'static str, Vec<Method>> = HashMap::new();
        for r in crate::routes::table().into_iter().filter(|r| r.access == crate::routes::Access::Write) {
            routes.entry(r.path).or_default().push(r.method);
        }
        routes
    })
}

async fn prepare(state: &AppState, request: Request) -> Result<(Request, Claim), ApiError> {
    let principal = request.extensions().get::<Principal>().copied().ok_or(ApiError::Unauthenticated("no API key"))?;
    let key = match request.headers().get(HEADER) {
        None => return Err(ApiError::IdempotencyKeyMissing),
        Some(v) => v.to_str().map_err(|_| ApiError::IdempotencyKeyInvalid)?.to_owned(),
    };
    if key.is_empty() || key.len() > KEY_LEN_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::IdempotencyKeyInvalid);
    }
    let (mut parts, body) = request.into_parts();
    let bytes = to_bytes(body, BATCH_BODY_BYTES_MAX).await.map_err(|e| ApiError::of_body(&e))?;
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str()).to_owned();
    let request_hash = hash(&parts.method, &path, &bytes);
    let entry = (principal.key_id, key.clone());
    let claimed = state
        .idempotency
        .0
        .lock()
        .map_err(|_| ApiError::App(AppError::Internal("idempotency set poisoned".into())))?
        .insert(entry.clone());
    if !claimed {
        return Err(ApiError::IdempotencyKeyInFlight);
    }
    let claim = Claim { set: state.idempotency.clone(), entry };
    parts.extensions.insert(Idempotency { key, request_hash });
    Ok((Request::from_parts(parts, Body::from(bytes)), claim))
}
