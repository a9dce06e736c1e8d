//! The one error shape of the API, `{"error": {"code", "message", "field"}}`, and the one
//! place that maps every failure to a status: the application's `AppError`, and what only
//! the transport can get wrong (a body that is not JSON, a missing key, an idempotency key
//! reused, a rate limit).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use purse_app::{AppError, Code};
use purse_engine::EngineError;
use serde::Serialize;

/// Every failure a handler can answer with. Internal details are logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// What the application refused or failed at.
    App(AppError),
    /// The body is not JSON at all.
    MalformedJson(String),
    /// A body of another content type.
    UnsupportedMediaType,
    /// The body is larger than the route accepts.
    PayloadTooLarge,
    /// The body stopped arriving before it was whole (see [`crate::body::Patient`]).
    BodyTimedOut,
    /// No API key, or one that is unknown, malformed or revoked.
    Unauthenticated(&'static str),
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
    /// The path exists but not with this method.
    MethodNotAllowed,
}

impl ApiError {
    /// Why a body could not be read: it stopped arriving, or it is larger than allowed.
    pub fn of_body(e: &(dyn std::error::Error + 'static)) -> ApiError {
        if crate::body::timed_out(e) {
            ApiError::BodyTimedOut
        } else {
            ApiError::PayloadTooLarge
        }
    }

    /// A field of the request breaks a rule.
    pub fn invalid(field: impl Into<String>, code: Code, message: impl Into<String>) -> ApiError {
        ApiError::App(AppError::invalid(field, code, message))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::App(e) => match e {
                AppError::Invalid { .. } | AppError::Fields(_) => StatusCode::UNPROCESSABLE_ENTITY,
                AppError::NotFound(_) => StatusCode::NOT_FOUND,
                AppError::Forbidden(_) | AppError::ForbiddenField { .. } => StatusCode::FORBIDDEN,
                AppError::Rejected(r) if r.code().starts_with("exists_with_different") => StatusCode::CONFLICT,
                AppError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
                AppError::Overloaded | AppError::Stopped | AppError::StorageUnavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                AppError::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
                AppError::PaymentPending(_) => StatusCode::ACCEPTED,
                AppError::CardsNotConfigured => StatusCode::CONFLICT,
                AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
            },
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyMissing | ApiError::IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable code, the message and the field, as the body carries them.
    fn detail(&self) -> (&str, String, Option<&str>) {
        let key = Some("Idempotency-Key");
        match self {
            ApiError::App(AppError::Internal(detail)) => {
                // The detail may name tables or values: it goes to the log, not to the caller.
                eprintln!("internal error: {detail}");
                ("internal", AppError::Internal(String::new()).to_string(), None)
            }
            ApiError::App(e) => (e.code(), e.to_string(), e.field()),
            ApiError::MalformedJson(m) => ("malformed_json", format!("the body is not valid JSON: {m}"), None),
            ApiError::UnsupportedMediaType => {
                ("unsupported_media_type", "send the body as application/json".into(), None)
            }
            ApiError::PayloadTooLarge => {
                ("payload_too_large", "the body is larger than this route accepts".into(), None)
            }
            ApiError::BodyTimedOut => (
                "body_timeout",
                "the body stopped arriving before it was whole; send it again without pausing".into(),
                None,
            ),
            ApiError::Unauthenticated(why) => ("unauthenticated", (*why).to_owned(), None),
            ApiError::RateLimited { retry_after_s } => {
                ("rate_limited", format!("this API key is over its rate limit; retry in {retry_after_s} s"), None)
            }
            ApiError::IdempotencyKeyMissing => (
                "idempotency_key_missing",
                "requests that change something need an Idempotency-Key header (a fresh UUID per operation)".into(),
                key,
            ),
            ApiError::IdempotencyKeyInvalid => {
                ("idempotency_key_invalid", "the Idempotency-Key must be 1 to 255 visible ASCII characters".into(), key)
            }
            ApiError::IdempotencyKeyReused => (
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request; use a new key for a new operation".into(),
                key,
            ),
            ApiError::IdempotencyKeyInFlight => (
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly".into(),
                key,
            ),
            ApiError::MethodNotAllowed => {
                ("method_not_allowed", "this path does not take this method; see /v1/openapi.json".into(), None)
            }
        }
    }

    /// The status and the JSON body, as sent (and as stored for idempotent replays).
    pub fn parts(&self) -> (StatusCode, Vec<u8>) {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: String,
            field: Option<&'a str>,
            /// Every wrong field when there are several (the first is also above).
            #[serde(skip_serializing_if = "Vec::is_empty")]
            errors: Vec<Each<'a>>,
        }
        #[derive(Serialize)]
        struct Each<'a> {
            code: &'a str,
            message: String,
            field: Option<&'a str>,
        }
        let (code, message, field) = self.detail();
        let errors = match self {
            ApiError::App(AppError::Fields(all)) => {
                all.iter().map(|e| Each { code: e.code(), message: e.to_string(), field: e.field() }).collect()
            }
            _ => Vec::new(),
        };
        let body = serde_json::to_vec(&Body { error: Detail { code, message, field, errors } }).expect("serializable");
        (self.status(), body)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        ApiError::App(e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::App(e.into())
    }
}

impl From<purse_store::StoreError> for ApiError {
    fn from(e: purse_store::StoreError) -> ApiError {
        ApiError::App(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            ApiError::App(AppError::Overloaded | AppError::StorageUnavailable) => {
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
