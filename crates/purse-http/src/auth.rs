//! API keys: `purse_` followed by 48 hex digits (192 random bits). A key is shown once,
//! when it is issued; only its SHA-256 hash is stored, with a 14-character prefix that lets
//! people tell keys apart. Keys are high-entropy, so a fast hash is the right one here
//! (slow hashes are for passwords).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use purse_core::{Role, Scope, Timestamp};
use purse_store::NewApiKey;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// Every key starts with this, so a leaked key is recognisable (and scannable).
pub const KEY_PREFIX: &str = "purse_";
const RANDOM_BYTES: usize = 24;
const SHOWN_PREFIX_LEN: usize = 14;

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` has the shape of a key (before any lookup).
pub fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() == RANDOM_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `N` random bytes from the kernel: for keys, session tokens and salts.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut random = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random)
}

/// A new key: the secret to show once, and the record to store.
pub fn issue_key(name: &str, role: Role, scope: Scope, now: Timestamp) -> std::io::Result<(String, NewApiKey)> {
    let hex: String = random_bytes::<RANDOM_BYTES>()?.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("{KEY_PREFIX}{hex}");
    let record = NewApiKey {
        prefix: secret[..SHOWN_PREFIX_LEN].to_owned(),
        hash: hash_key(&secret),
        name: name.to_owned(),
        role,
        scope,
        created_at: now,
    };
    Ok((secret, record))
}

/// Who is calling: the key's id (idempotency keys and rate limits are per key), its role
/// (what it may see) and its scope (whether it may change anything).
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
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Principal, ApiError> {
        parts.extensions.get::<Principal>().copied().ok_or(ApiError::Unauthenticated("no API key"))
    }
}

/// Keys verified recently, by hash, so that a request costs no store read for its key.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, Principal)>>,
}

/// Entries past which the cache starts over (a bound, not a tuning knob).
const CACHED_KEYS_MAX: usize = 100_000;

impl KeyCache {
    fn get(&self, hash: &str, ttl: std::time::Duration) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
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

    /// Forgets every cached key (after a revocation through this process).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
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
/// sees, the handlers ask the policy's tenancy rules). The principal goes into the request.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(secret) = bearer(request.headers()) else {
        return ApiError::Unauthenticated("send an API key as `Authorization: Bearer purse_...`").into_response();
    };
    if !looks_like_key(secret) {
        return ApiError::Unauthenticated("the API key is malformed").into_response();
    }
    let hash = hash_key(secret);
    let principal = match state.auth.get(&hash, state.settings.key_cache_ttl) {
        Some(p) => p,
        None => {
            let access = state.access.clone();
            let lookup = hash.clone();
            let found = tokio::task::spawn_blocking(move || access.key_by_hash(&lookup)).await;
            let record = match found {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => return ApiError::from(e).into_response(),
                Err(e) => return ApiError::Internal(e.to_string()).into_response(),
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
    let path = request.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_owned());
    if let Some(action) = path.and_then(|p| crate::routes::action_of(request.method(), &p)) {
        if let Err(refusal) = purse_app::policy::authorize(principal.role, principal.scope, action) {
            return ApiError::Forbidden(refusal.to_string()).into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_recognisable_and_stored_only_as_hashes() {
        let (a, record) = issue_key("ci", Role::Operator, Scope::Read, Timestamp(0)).unwrap();
        let (b, _) = issue_key("ci", Role::Operator, Scope::Read, Timestamp(0)).unwrap();
        assert_ne!(a, b);
        assert!(looks_like_key(&a) && !looks_like_key("purse_xyz") && !looks_like_key(&a[1..]));
        assert_eq!(record.hash, hash_key(&a));
        assert!(!record.hash.contains(&a[KEY_PREFIX.len()..]));
        assert_eq!(record.prefix, &a[..14]);
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
