//! Who is looking at a page: portal users, passwords, sessions, CSRF tokens and login
//! throttling.
//!
//! - Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, the OWASP
//!   recommendation) and a random salt; only the PHC string is stored.
//! - A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure`
//!   when served over TLS); the store keeps only its SHA-256. Login always makes a new
//!   session, logout deletes it from the store, and it expires after
//!   [`crate::ApiSettings::session_ttl`] whatever the cookie says.
//! - Every form that changes something carries the session's CSRF token; the login form,
//!   before any session exists, carries a token that must equal a cookie set with it.
//! - Failed logins are counted per e-mail in the store (so every process sees them): after
//!   [`FREE_FAILURES`] the next attempt must wait, twice as long after each further failure,
//!   up to [`LOCKOUT_S_MAX`]; a correct password, or [`FAILURES_REMEMBERED_S`] without a
//!   failure, resets the count.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use purse_core::{Party, Role, Timestamp};
use purse_store::{SessionRecord, UserRecord};

use super::PortalError;
use crate::auth::{hash_key, random_bytes, Principal};
use crate::AppState;

pub const SESSION_COOKIE: &str = "purse_session";
pub const LOGIN_COOKIE: &str = "purse_login";
/// Failed logins allowed before attempts are slowed down.
pub const FREE_FAILURES: u32 = 5;
pub const LOCKOUT_S_MIN: i64 = 30;
pub const LOCKOUT_S_MAX: i64 = 900;
/// A failure older than this no longer counts (an hour without failures starts over).
pub const FAILURES_REMEMBERED_S: i64 = 3600;
pub const PASSWORD_LEN_MIN: usize = 10;
pub const PASSWORD_LEN_MAX: usize = 256;

fn random<const N: usize>() -> Result<[u8; N], PortalError> {
    random_bytes::<N>().map_err(|e| PortalError::Internal(format!("reading /dev/urandom: {e}")))
}

/// `N` random bytes as lowercase hex.
pub fn random_hex<const N: usize>() -> Result<String, PortalError> {
    Ok(random::<N>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, PortalError> {
    let salt = random::<16>()?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PortalError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PortalError::Internal(e.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash with the cost of a real one, verified against when the e-mail is unknown so that
/// a wrong e-mail takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never a real one").unwrap_or_default())
}

/// How long the next login for an e-mail with `failures` must wait after the last one.
pub fn lockout_s(failures: u32) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(10);
    (LOCKOUT_S_MIN << doublings).min(LOCKOUT_S_MAX)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Secure` when the request came over TLS
/// (directly configured, or as a proxy in front says with `X-Forwarded-Proto: https`).
pub fn set_cookie(state: &AppState, headers: &HeaderMap, name: &str, value: &str, max_age_s: i64) -> String {
    let forwarded_tls = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if state.settings.secure_cookies || forwarded_tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
}

/// Starts a new session for `user`; returns the cookie token (only its hash is stored).
pub fn start_session(state: &AppState, user: &UserRecord, now: Timestamp) -> Result<String, PortalError> {
    let token = random_hex::<32>()?;
    let ttl_us = i64::try_from(state.settings.session_ttl.as_micros()).unwrap_or(i64::MAX);
    let record = SessionRecord {
        hash: hash_key(&token),
        user_id: user.id,
        csrf: random_hex::<32>()?,
        created_at: now,
        expires_at: Timestamp(now.0.saturating_add(ttl_us)),
    };
    state.access.insert_session(&record)?;
    Ok(token)
}

/// The signed-in user of a page, with what the API would call their principal.
#[derive(Clone)]
pub struct Viewer {
    pub user: UserRecord,
    pub who: Principal,
    /// The token every changing form of this session carries.
    pub csrf: String,
    /// The stored hash of the session cookie.
    pub session: String,
    /// The reseller or customer the user belongs to.
    pub party: Option<Party>,
}

impl Viewer {
    /// Refuses a form without this session's CSRF token.
    pub fn check(&self, form: &Form) -> Result<(), PortalError> {
        if same_secret(form.get("csrf"), &self.csrf) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }

    /// Whether the policy lets this user take `action` (for what a page offers).
    pub fn may(&self, action: purse_app::policy::Action) -> bool {
        purse_app::policy::authorize(self.user.role, self.user.scope, action).is_ok()
    }

    /// The customer a customer admin belongs to.
    pub fn own_customer(&self) -> Option<u64> {
        match self.user.role {
            Role::Customer(p) => Some(p.0),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, PortalError> {
        // The policy's middleware found the user already.
        if let Some(viewer) = parts.extensions.get::<Viewer>() {
            return Ok(viewer.clone());
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let login = || PortalError::LoginRequired(path.clone());
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(login)?;
        let hash = hash_key(token);
        let state = state.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<Viewer>, PortalError> {
            let now = state.engine.clock().now();
            let Some(session) = state.access.session(&hash)?.filter(|s| s.expires_at > now) else { return Ok(None) };
            let Some(user) = state.access.user(session.user_id)?.filter(|u| u.disabled_at.is_none()) else {
                return Ok(None);
            };
            let party = match user.role {
                Role::Operator => None,
                Role::Reseller(p) | Role::Customer(p) => state.engine.reader().party(p)?,
            };
            let who = Principal::for_user(user.role, user.scope, user.id);
            Ok(Some(Viewer { user, who, csrf: session.csrf, session: session.hash, party }))
        })
        .await
        .map_err(|e| PortalError::Internal(e.to_string()))??;
        found.ok_or_else(login)
    }
}

/// A submitted form (`application/x-www-form-urlencoded`).
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

impl FromRequest<AppState> for Form {
    type Rejection = PortalError;

    async fn from_request(request: Request, state: &AppState) -> Result<Form, PortalError> {
        let urlencoded = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err(PortalError::BadRequest("Forms are sent as application/x-www-form-urlencoded.".into()));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| PortalError::BadRequest("The form is too large.".into()))?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|_| PortalError::BadRequest("The form is malformed.".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn lockouts_grow_after_the_free_failures_and_are_capped() {
        assert_eq!(lockout_s(0), 0);
        assert_eq!(lockout_s(FREE_FAILURES - 1), 0);
        assert_eq!(lockout_s(FREE_FAILURES), LOCKOUT_S_MIN);
        assert_eq!(lockout_s(FREE_FAILURES + 1), 2 * LOCKOUT_S_MIN);
        assert_eq!(lockout_s(u32::MAX), LOCKOUT_S_MAX);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; purse_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "purse"), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
