//! Who is looking at a page: portal users, passwords, sessions, CSRF tokens and login
//! throttling.
//!
//! - Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, the OWASP
//!   recommendation) and a random salt; only the PHC string is stored.
//! - A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure`
//!   when served over TLS); the store keeps only its SHA-256. Login always makes a new
//!   session, logout deletes it from the store, and it expires after
//!   [`crate::PortalSettings::session_ttl`] whatever the cookie says.
//! - Every form that changes something carries the session's CSRF token; the login form,
//!   before any session exists, carries a token that must equal a cookie set with it.
//! - Failed logins are counted per e-mail in the store (so every process sees them): after
//!   [`FREE_FAILURES`] the next attempt must wait, twice as long after each further failure,
//!   up to [`LOCKOUT_S_MAX`]; a correct password, or [`FAILURES_REMEMBERED_S`] without a
//!   failure, resets the count.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use purse_core::{Party, Role, Timestamp};
use purse_store::{SessionRecord, UserRecord};

use super::PortalError;
use crate::PortalState;
use purse_app::secrets::{hash_key, random_hex};
use purse_app::Principal;

pub const SESSION_COOKIE: &str = "purse_session";
pub const LOGIN_COOKIE: &str = "purse_login";
/// Failed logins allowed before attempts are slowed down.
pub const FREE_FAILURES: u32 = 5;
pub const LOCKOUT_S_MIN: i64 = 30;
pub const LOCKOUT_S_MAX: i64 = 900;
/// A failure older than this no longer counts (an hour without failures starts over).
pub const FAILURES_REMEMBERED_S: i64 = 3600;

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
pub fn set_cookie(state: &PortalState, headers: &HeaderMap, name: &str, value: &str, max_age_s: i64) -> String {
    let forwarded_tls = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if state.settings.secure_cookies || forwarded_tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
}

/// Adds a `Set-Cookie` of `cookie` (a [`set_cookie`] value) to `response`. The values made
/// here are ASCII; one that is not a valid header is left out rather than fail the page.
pub fn add_cookie(response: &mut axum::response::Response, cookie: &str) {
    if let Ok(v) = axum::http::HeaderValue::from_str(cookie) {
        response.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
}

/// Starts a new session for `user`; returns the cookie token (only its hash is stored).
pub fn start_session(state: &PortalState, user: &UserRecord, now: Timestamp) -> Result<String, PortalError> {
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
    /// What the form submitted just before this page did (post/redirect/get), shown once.
    pub flash: Option<String>,
    /// The zone times are shown and entered in: a customer's own, else the server's.
    pub zone: purse_core::time::Zone,
}

/// The cookie that carries a form's outcome across its redirect, for one page.
pub const FLASH_COOKIE: &str = "purse_flash";

/// The one-time message a request carries, if any.
pub fn flash(headers: &HeaderMap) -> Option<String> {
    let value = cookie(headers, FLASH_COOKIE).filter(|v| !v.is_empty())?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("m={value}")).ok()?;
    pairs.into_iter().next().map(|(_, m)| m).filter(|m| !m.is_empty())
}

impl Viewer {
    /// A time as people read it, in the viewer's zone: `6 Dec 2026, 15:24`.
    pub fn when(&self, t: purse_core::Timestamp) -> String {
        self.zone.format(t)
    }

    /// The same for a time the API layer gave as RFC 3339 text ("" when there is none).
    pub fn when_text(&self, v: &serde_json::Value) -> String {
        v.as_str().and_then(purse_core::time::parse).map(|t| self.when(t)).unwrap_or_default()
    }

    /// A date as people read it, in the viewer's zone: `6 Dec 2026`.
    pub fn date(&self, t: purse_core::Timestamp) -> String {
        self.zone.format_date(t)
    }

    /// The same for RFC 3339 text.
    pub fn date_text(&self, v: &serde_json::Value) -> String {
        v.as_str().and_then(purse_core::time::parse).map(|t| self.date(t)).unwrap_or_default()
    }

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

/// The `{id}` of a page's path: a number, or the page is not found.
pub struct PathId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<PathId, PortalError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| PortalError::NotFound)?;
        text.parse().map(PathId).map_err(|_| PortalError::NotFound)
    }
}

impl FromRequestParts<PortalState> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &PortalState) -> Result<Viewer, PortalError> {
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
            let zone = match user.role {
                Role::Customer(p) => state.zone_of(p)?,
                _ => state.config.zone.clone(),
            };
            Ok(Some(Viewer { user, who, csrf: session.csrf, session: session.hash, party, flash: None, zone }))
        })
        .await
        .map_err(|e| PortalError::Internal(e.to_string()))??;
        let mut viewer = found.ok_or_else(login)?;
        viewer.flash = flash(&parts.headers);
        Ok(viewer)
    }
}

/// A submitted form (`application/x-www-form-urlencoded`).
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// What was entered in the fields `names`, trimmed, by name.
    pub fn entered(&self, names: &[&str]) -> std::collections::HashMap<String, String> {
        names.iter().map(|k| ((*k).to_owned(), self.get(k).trim().to_owned())).collect()
    }

    /// Every value of `name` (a multiple choice sends one per option chosen).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

impl FromRequest<PortalState> for Form {
    type Rejection = PortalError;

    async fn from_request(request: Request, state: &PortalState) -> Result<Form, PortalError> {
        let urlencoded = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err(PortalError::BadRequest("Forms are sent as application/x-www-form-urlencoded.".into()));
        }
        let slot = request.extensions().get::<crate::once::Slot>().cloned();
        // Too large, or it stopped arriving before it was whole (`purse serve` times a body out).
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            PortalError::BadRequest(if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                "The form is too large to be read: shorten what was entered and send it again.".into()
            } else {
                "The form stopped arriving before it was whole: send it again.".into()
            })
        })?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|_| PortalError::BadRequest("The form is malformed.".into()))?;
        if let Some(slot) = slot {
            slot.claim(form.get(crate::once::FIELD), &bytes).await.map_err(PortalError::Replay)?;
        }
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
