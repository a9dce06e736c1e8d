//! A form sent twice is done once. A double click, or the browser sending a form again after
//! a slow answer, sends the same form twice; every form that makes something or moves money
//! carries an id of its own (`once`, new each time the form is shown), and a second form with
//! the id and the values of one that was answered with a redirect gets that redirect again
//! (its one-time message and cookies too) instead of being done again. A second form that
//! arrives while the first is being done waits for its answer. The forms that move money also
//! post under an id of their own in the ledger (`request`), which holds across processes and
//! restarts; this holds within a process (a key, a profile, a user, a rate plan made twice).
//! Forms that set values (settings, a suspension, a language, edits) carry no id: sending one
//! again does no harm, and going back to an earlier page and sending it again must apply it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

/// The field every form carries.
pub const FIELD: &str = "once";
/// How long an answer is kept for a form sent again.
const KEPT: Duration = Duration::from_secs(600);
/// How long a form waits for the same form sent before it to be answered.
const WAIT: Duration = Duration::from_secs(60);
/// Answers kept at most (the oldest go first).
const KEPT_MAX: usize = 50_000;

/// The user, the form's id and a hash of all it sent: the same form sent back with other
/// values (after the browser's "back") is a form of its own.
type Key = (u64, String, u64);

enum Entry {
    Running,
    Answered { at: Instant, status: StatusCode, headers: Vec<(HeaderName, HeaderValue)> },
}

/// The forms of this process being done or answered lately, by user and form id.
#[derive(Default)]
pub struct Sent(Mutex<HashMap<Key, Entry>>);

/// The hidden field of a form's id: new each time the form is shown.
pub fn field() -> Markup {
    let id = purse_app::secrets::random_hex::<12>().unwrap_or_default();
    html! { input type="hidden" name=(FIELD) value=(id); }
}

/// The answer given to a form sent again: the first one's redirect.
#[derive(Debug)]
pub struct Replay {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl IntoResponse for Replay {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// A request's place in [`Sent`]: made by the portal's middleware for a signed-in user's
/// form, claimed by the form's extractor once it has read the form's id.
#[derive(Clone)]
pub struct Slot {
    sent: Arc<Sent>,
    user: u64,
    claimed: Arc<Mutex<Option<Key>>>,
}

impl Slot {
    pub fn new(sent: Arc<Sent>, user: u64) -> Slot {
        Slot { sent, user, claimed: Arc::default() }
    }

    /// Claims the form's id: `Err` with the first answer when the same form, with the same
    /// values (`sent`, as it came), was answered already (after waiting for it, when it is
    /// being done now).
    pub async fn claim(&self, id: &str, sent: &[u8]) -> Result<(), Replay> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(()); // a form without an id of ours is done as it comes
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hasher::write(&mut hasher, sent);
        let key = (self.user, id.to_owned(), std::hash::Hasher::finish(&hasher));
        let started = Instant::now();
        loop {
            {
                let mut sent = lock(&self.sent);
                match sent.get(&key) {
                    Some(Entry::Answered { at, status, headers }) if at.elapsed() < KEPT => {
                        return Err(Replay { status: *status, headers: headers.clone() });
                    }
                    Some(Entry::Running) if started.elapsed() < WAIT => {}
                    _ => {
                        sent.insert(key.clone(), Entry::Running);
                        *self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After the form's handler: a redirect is kept for the same form sent again; anything
    /// else (the form refused, nothing done) is forgotten, so the form may come again.
    pub fn answered(&self, response: &Response) {
        let Some(key) = self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() else { return };
        let mut sent = lock(&self.sent);
        if !response.status().is_redirection() {
            sent.remove(&key);
            return;
        }
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| **name == header::LOCATION || **name == header::SET_COOKIE)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if sent.len() >= KEPT_MAX {
            sent.retain(|_, e| {
                matches!(e, Entry::Answered { at, .. } if at.elapsed() < KEPT) || matches!(e, Entry::Running)
            });
            if sent.len() >= KEPT_MAX {
                sent.retain(|_, e| matches!(e, Entry::Running));
            }
        }
        sent.insert(key, Entry::Answered { at: Instant::now(), status: response.status(), headers });
    }
}

impl Drop for Slot {
    /// A handler that never answered (it panicked, or its request was dropped) leaves the
    /// form's id free again.
    fn drop(&mut self) {
        if Arc::strong_count(&self.claimed) > 1 {
            return; // a clone (the extractor's) goes; the middleware's copy still answers
        }
        if let Some(key) = self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let mut sent = lock(&self.sent);
            if matches!(sent.get(&key), Some(Entry::Running)) {
                sent.remove(&key);
            }
        }
    }
}

fn lock(sent: &Sent) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
    sent.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
