//! The one error shape of the API, `{"error": {"code", "message", "field"}}`, and the one
//! place that maps every failure to a status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use purse_core::Rejection;
use purse_engine::EngineError;
use serde::Serialize;

/// Every failure a handler can answer with. Internal details are logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The body is not JSON at all.
    MalformedJson(String),
    /// JSON, but a field is missing, unknown, of the wrong type or out of its rules.
    InvalidField {
        field: String,
        code: &'static str,
        message: String,
    },
    /// A body of another content type.
    UnsupportedMediaType,
    /// The body is larger than the route accepts.
    PayloadTooLarge,
    /// The resource in the path does not exist (or belongs to another tenant).
    NotFound(&'static str),
    /// No API key, or one that is unknown, malformed or revoked.
    Unauthenticated(&'static str),
    /// The key's role or scope does not allow this.
    Forbidden(String),
    /// The key's role may not set this field.
    ForbiddenField {
        field: &'static str,
        message: String,
    },
    /// The key made more requests than its rate allows.
    RateLimited {
        retry_after_s: u64,
    },
    /// A request that changes something came without an `Idempotency-Key`.
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    /// The key was used before with another request.
    IdempotencyKeyReused,
    /// A request with the same key is still being processed.
    IdempotencyKeyInFlight,
    /// The ledger refused the command.
    Rejected(Rejection),
    /// The engine's queue is full; retry after a moment.
    Overloaded,
    Unavailable,
    /// The database cannot be reached or cannot write right now; nothing was done. Purse
    /// reconnects by itself: retry after `Retry-After`.
    StorageUnavailable,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The card was declined; nothing changed.
    PaymentDeclined(String),
    /// Stripe did not answer in time; the payment finishes in the background (retry with
    /// the same Idempotency-Key for its outcome).
    PaymentPending(String),
    /// No Stripe endpoint is configured.
    CardsNotConfigured,
    /// Something broke inside; the message sent is generic.
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    field: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField { field: field.into(), code, message: message.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenField { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyMissing | ApiError::IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ApiError::Rejected(r) if r.code().starts_with("exists_with_different") => StatusCode::CONFLICT,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded | ApiError::Unavailable | ApiError::StorageUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::PaymentPending(_) => StatusCode::ACCEPTED,
            ApiError::CardsNotConfigured => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Overloaded => ApiError::Overloaded,
            EngineError::BatchTooLarge { max } => {
                ApiError::invalid("items", "batch_too_large", format!("a batch may hold at most {max} items"))
            }
            EngineError::Stopped => ApiError::Unavailable,
            EngineError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<purse_store::StoreError> for ApiError {
    fn from(e: purse_store::StoreError) -> ApiError {
        match e {
            purse_store::StoreError::Unavailable(_) => ApiError::StorageUnavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            ApiError::Overloaded | ApiError::StorageUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    /// The status and the JSON body, as sent (and as stored for idempotent replays).
    pub fn parts(&self) -> (StatusCode, Vec<u8>) {
        let status = self.status();
        let (code, message, field): (&str, String, Option<&str>) = match &self {
            ApiError::MalformedJson(m) => ("malformed_json", format!("the body is not valid JSON: {m}"), None),
            ApiError::InvalidField { field, code, message } => (code, message.clone(), Some(field.as_str())),
            ApiError::UnsupportedMediaType => {
                ("unsupported_media_type", "send the body as application/json".into(), None)
            }
            ApiError::PayloadTooLarge => ("payload_too_large", "the body is larger than this route accepts".into(), None),
            ApiError::NotFound(what) => ("not_found", format!("no such {what}"), None),
            ApiError::Unauthenticated(why) => ("unauthenticated", (*why).to_owned(), None),
            ApiError::Forbidden(why) => ("forbidden", why.clone(), None),
            ApiError::ForbiddenField { field, message } => ("forbidden_field", message.clone(), Some(*field)),
            ApiError::RateLimited { retry_after_s } => {
                ("rate_limited", format!("this API key is over its rate limit; retry in {retry_after_s} s"), None)
            }
            ApiError::IdempotencyKeyMissing => (
                "idempotency_key_missing",
                "requests that change something need an Idempotency-Key header (a fresh UUID per operation)".into(),
                Some("Idempotency-Key"),
            ),
            ApiError::IdempotencyKeyInvalid => (
                "idempotency_key_invalid",
                "the Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                Some("Idempotency-Key"),
            ),
            ApiError::IdempotencyKeyReused => (
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request; use a new key for a new operation".into(),
                Some("Idempotency-Key"),
            ),
            ApiError::IdempotencyKeyInFlight => (
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly".into(),
                Some("Idempotency-Key"),
            ),
            ApiError::Rejected(r) => (r.code(), r.to_string(), r.field()),
            ApiError::Overloaded => ("overloaded", "too many requests in flight; retry shortly".into(), None),
            ApiError::Unavailable => ("unavailable", "the service is shutting down".into(), None),
            ApiError::StorageUnavailable => (
                "storage_unavailable",
                "the database cannot be reached or cannot write right now; nothing was done; retry shortly".into(),
                None,
            ),
            ApiError::MethodNotAllowed => ("method_not_allowed", "this path does not take this method; see /v1/openapi.json".into(), None),
            ApiError::PaymentDeclined(m) => ("card_declined", format!("the card was declined: {m}; nothing was charged"), Some("card")),
            ApiError::PaymentPending(m) => (
                "payment_pending",
                format!("{m}; it completes in the background: send the same request with the same Idempotency-Key for its outcome"),
                None,
            ),
            ApiError::CardsNotConfigured => {
                ("card_payments_not_configured", "card payments are not configured on this server (no Stripe endpoint)".into(), None)
            }
            ApiError::Internal(detail) => {
                // The detail may name tables or values: it goes to the log, not to the caller.
                eprintln!("internal error: {detail}");
                ("internal", "an internal error occurred; it has been logged".into(), None)
            }
        };
        let body = serde_json::to_vec(&Body { error: Detail { code, message, field } }).expect("serializable");
        (status, body)
    }
}
