//! Logging in and out.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use purse_core::Timestamp;

use super::page::{self, field};
use super::session::{self, cookie, set_cookie, Form, Viewer, LOGIN_COOKIE, SESSION_COOKIE};
use super::{read, see_other, PortalError};
use crate::PortalState;

#[derive(serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path of this site is followed after login (never `//elsewhere` or a full URL).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

fn login_page(status: StatusCode, token: &str, email: &str, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        div.login.card {
            @if let Some(e) = error { p.notice.bad id="login-error" role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                (field("E-mail", "email", "email", email, None))
                (field("Password", "password", "password", "", None))
                button type="submit" id="login" { "Log in" }
            }
            p.languages id="languages" {
                @for lang in crate::i18n::Lang::ALL {
                    a href=(format!("/login?lang={}", lang.code())) lang=(lang.code()) hreflang=(lang.code()) { (lang.name()) } " "
                }
            }
        }
    };
    page::respond(status, page::layout("Log in to Purse", None, &[], body))
}

/// The login form, with a fresh token that must come back both in the form and in a cookie.
pub async fn form(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Result<Response, PortalError> {
    let token = purse_app::secrets::random_hex::<16>()?;
    let mut response = login_page(StatusCode::OK, &token, "", safe_next(q.next.as_deref()), None);
    let cookie = set_cookie(&state, &headers, LOGIN_COOKIE, &token, 3600);
    response
        .headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| PortalError::Internal(e.to_string()))?);
    Ok(response)
}

enum Outcome {
    In(String),
    Wrong,
    Throttled(i64),
}

pub async fn submit(State(state): State<PortalState>, headers: HeaderMap, form: Form) -> Result<Response, PortalError> {
    let token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default().to_owned();
    if token.is_empty() || !session::same_secret(form.get("csrf"), &token) {
        return Err(PortalError::Csrf);
    }
    let email = form.get("email").trim().to_lowercase();
    let password = form.get("password").to_owned();
    let next = safe_next(Some(form.get("next"))).to_owned();
    let outcome = read(&state, move |s| {
        let now = s.engine.clock().now();
        // The attempt is reserved (counted) before the slow password check, atomically: 30
        // guesses at once get the same 5 free tries as 30 in a row.
        let forget = Timestamp(now.0 - session::FAILURES_REMEMBERED_S * 1_000_000);
        let wait = |failures: u32, last: Timestamp| session::lockout_s(failures) - (now.0 - last.0) / 1_000_000;
        if let Err(wait_s) = s.access.reserve_login(&email, now, forget, &wait)? {
            return Ok(Outcome::Throttled(wait_s));
        }
        let user = s.access.user_by_email(&email)?;
        let hash = user.as_ref().map_or(purse_app::secrets::decoy_hash(), |u| u.password_hash.as_str());
        let matches = purse_app::secrets::verify_password(&password, hash);
        match user {
            Some(user) if matches && user.disabled_at.is_none() => {
                s.access.clear_login_failures(&email)?;
                Ok(Outcome::In(session::start_session(s, &user, now)?))
            }
            // Counted already, when the attempt was reserved.
            _ => Ok(Outcome::Wrong),
        }
    })
    .await?;
    let email = form.get("email").trim();
    match outcome {
        Outcome::In(session_token) => {
            let mut response = see_other(&next);
            let max_age = i64::try_from(state.settings.session_ttl.as_secs()).unwrap_or(i64::MAX);
            let session_cookie = set_cookie(&state, &headers, SESSION_COOKIE, &session_token, max_age);
            let h = response.headers_mut();
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_str(&session_cookie).map_err(|e| PortalError::Internal(e.to_string()))?,
            );
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_str(&set_cookie(&state, &headers, LOGIN_COOKIE, "", 0))
                    .map_err(|e| PortalError::Internal(e.to_string()))?,
            );
            Ok(response)
        }
        Outcome::Wrong => {
            Ok(login_page(StatusCode::UNAUTHORIZED, &token, email, &next, Some("The e-mail or the password is wrong.")))
        }
        Outcome::Throttled(wait_s) => {
            let message = format!("Too many failed logins for this e-mail. Try again in {wait_s} seconds.");
            Ok(login_page(StatusCode::TOO_MANY_REQUESTS, &token, email, &next, Some(&message)))
        }
    }
}

/// Ends the session in the store (the cookie alone is worth nothing afterwards).
pub async fn logout(
    State(state): State<PortalState>,
    headers: HeaderMap,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let hash = viewer.session.clone();
    read(&state, move |s| Ok(s.access.delete_session(&hash)?)).await?;
    let mut response = see_other("/login");
    let cleared = set_cookie(&state, &headers, SESSION_COOKIE, "", 0);
    response
        .headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&cleared).map_err(|e| PortalError::Internal(e.to_string()))?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_of_this_site_are_followed_after_login() {
        assert_eq!(safe_next(Some("/customers?q=a")), "/customers?q=a");
        for bad in
            ["//evil.example", "https://evil.example", "/\\evil.example", "/x\r\nSet-Cookie: a=b", "", "customers"]
        {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
