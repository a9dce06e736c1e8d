//! API keys on every `/v1` route: `Authorization: Bearer purse_…`, looked up by their
//! SHA-256 (`purse_app::secrets`), cached a few seconds, rate limited per key, and the
//! policy asked whether the key's role and scope may take the route's action at all.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use purse_app::secrets::{hash_key, looks_like_key};
use purse_app::{AppError, Principal};

use crate::error::ApiError;
use crate::AppState;

/// The caller of an API route: the principal its key stands for.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts.extensions.get::<Principal>().copied().map(Caller).ok_or(ApiError::Unauthenticated("no API key"))
    }
}

/// Keys verified recently, by hash, so that a request costs no store read for its key.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, Principal)>>,
    /// The application's count of revocations when the cache was last cleared.
    revocations: std::sync::atomic::AtomicU64,
}

/// Entries past which the cache starts over (a bound, not a tuning knob).
const CACHED_KEYS_MAX: usize = 100_000;

impl KeyCache {
    fn get(&self, hash: &str, ttl: std::time::Duration, revocations: u64) -> Option<Principal> {
        let mut entries = self.entries.lock().ok()?;
        // A key revoked through this process stops at once.
        if self.revocations.swap(revocations, Ordering::SeqCst) != revocations {
            entries.clear();
        }
        entries.get(hash).filter(|(at, _)| at.elapsed() < ttl).map(|(_, p)| *p)
    }

    fn put(&self, hash: String, principal: Principal) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHED_KEYS_MAX {
                entries.clear();
            }
            entries.insert(hash, (Instant::now(), principal));
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware on every `/v1` route: the `Authorization: Bearer purse_...` key must exist and
/// not be revoked; then the key's rate limit applies, and the authorization policy decides
/// whether the key's role and scope may take the route's action at all (whose objects it
/// sees, the application asks the policy's tenancy rules). The principal goes into the request.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(secret) = bearer(request.headers()) else {
        return ApiError::Unauthenticated("send an API key as `Authorization: Bearer purse_...`").into_response();
    };
    if !looks_like_key(secret) {
        return ApiError::Unauthenticated("the API key is malformed").into_response();
    }
    let hash = hash_key(secret);
    let revocations = state.keys_revoked.load(Ordering::SeqCst);
    let principal = match state.auth.get(&hash, state.settings.key_cache_ttl, revocations) {
        Some(p) => p,
        None => {
            let access = state.access.clone();
            let lookup = hash.clone();
            let found = tokio::task::spawn_blocking(move || access.key_by_hash(&lookup)).await;
            let record = match found {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => return ApiError::from(e).into_response(),
                Err(e) => return ApiError::App(AppError::Internal(e.to_string())).into_response(),
            };
            match record {
                Some(k) if k.revoked_at.is_none() => {
                    let p = Principal { key_id: k.id, user_id: None, role: k.role, scope: k.scope };
                    state.auth.put(hash, p);
                    p
                }
                Some(_) => return ApiError::Unauthenticated("the API key has been revoked").into_response(),
                None => return ApiError::Unauthenticated("the API key is not known").into_response(),
            }
        }
    };
    if let Err(retry_after_s) = state.limiter.check(principal.key_id) {
        return ApiError::RateLimited { retry_after_s }.into_response();
    }
    // A method the path does not have has no action: the router answers it (405).
    let path = request.extensions().get::<axum::extract::MatchedPath>();
    if let Some(action) = path.and_then(|p| crate::routes::action_of(request.method(), p.as_str())) {
        if let Err(refusal) = purse_app::policy::authorize(principal.role, principal.scope, action) {
            return ApiError::App(AppError::Forbidden(refusal.to_string())).into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}
