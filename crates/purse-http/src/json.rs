//! JSON in and out: an extractor whose every rejection is our error shape and names the
//! field, and a response helper.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;
use purse_app::{AppError, Code};

/// A JSON body, parsed strictly (request types deny unknown fields).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::of_body(&e))?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a body, turning serde's complaint into an error that names the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object: serde would otherwise read `[null, null]` as a struct's fields.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid("body", Code::InvalidType, "the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(inner.to_string());
        }
        field_error(&path, &inner.to_string())
    })?;
    de.end().map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

fn field_error(path: &str, message: &str) -> ApiError {
    // An unknown field is already the last segment of the path; a missing one is reported
    // at its parent, so its name is joined on.
    let quoted = message.split('`').nth(1).unwrap_or("");
    let join = |name: &str| if path == "." || path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    let message = message.split(" at line ").next().unwrap_or(message).to_owned();
    if message.starts_with("unknown field") {
        return ApiError::invalid(path, Code::UnknownField, message);
    }
    if message.starts_with("missing field") {
        return ApiError::invalid(join(quoted), Code::MissingField, message);
    }
    // A field given twice is reported at its object, like a missing one.
    if message.starts_with("duplicate field") {
        return ApiError::invalid(join(quoted), Code::DuplicateField, format!("{} is given twice", join(quoted)));
    }
    let field = if path == "." { String::new() } else { path.to_owned() };
    let money = ["amount", "price", "credit_limit"].iter().any(|m| field.ends_with(m));
    if money && message.starts_with("invalid type") {
        let message = format!("{field} must be a decimal string such as \"12.50\", never a JSON number");
        return ApiError::invalid(field, Code::InvalidAmount, message);
    }
    let message = type_message(if field.is_empty() { "the body" } else { &field }, &message);
    ApiError::invalid(field, Code::InvalidType, message)
}

/// serde's words for a value of the wrong type ("invalid type: string \"13\", expected u64")
/// in an API user's: "account must be a whole number from 0, not the string \"13\"".
fn type_message(field: &str, serde: &str) -> String {
    // "unknown variant `x`, expected one of `a`, `b`": the value is shown escaped and only when
    // short, so a control character or a long text sent is never echoed as it came.
    if let Some((got, expected)) = serde.strip_prefix("unknown variant `").and_then(|r| r.split_once("`, expected ")) {
        let expected = expected.replace('`', "");
        return match got.chars().count() {
            0..=40 => format!("{field} must be {expected}, not {got:?}"),
            _ => format!("{field} must be {expected}"),
        };
    }
    let Some((got, expected)) = serde.split_once(", expected ") else {
        return format!("{field}: {}", serde.replace('`', ""));
    };
    let Some(got) = got.strip_prefix("invalid type: ").or_else(|| got.strip_prefix("invalid value: ")) else {
        return format!("{field}: {}", serde.replace('`', ""));
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number from 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        e if e == "a map" || e.starts_with("struct ") => "an object",
        e => e,
    };
    let got = got.replace('`', "");
    let got = match got.split_once(' ') {
        Some(("integer" | "floating", rest)) => format!("the number {}", rest.trim_start_matches("point ")),
        Some(("string", rest)) => format!("the string {rest}"),
        Some(("boolean", rest)) => rest.to_owned(),
        _ if got == "map" => "an object".to_owned(),
        _ if got == "sequence" => "a list".to_owned(),
        _ => got,
    };
    format!("{field} must be {expected}, not {got}")
}

/// A JSON response with a status.
pub fn reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => ApiError::App(AppError::Internal(format!("serializing a response: {e}"))).into_response(),
    }
}

/// A response with a status and a JSON body serialized already.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The query string of a request as named parameters, each checked by name: unknown names
/// are refused, and every error names the parameter.
pub struct Params(std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Params, ApiError> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Params {
    /// A query string's parameters; malformed, or a name given twice, is refused.
    pub fn parse(query: &str) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
            ApiError::invalid("query", Code::InvalidQuery, format!("the query string is malformed: {e}"))
        })?;
        let mut map = std::collections::HashMap::new();
        for (name, value) in pairs {
            if map.insert(name.clone(), value).is_some() {
                return Err(ApiError::invalid(
                    name.clone(),
                    Code::DuplicateParameter,
                    format!("{name} is given twice"),
                ));
            }
        }
        Ok(Params(map))
    }

    /// Refuses any parameter not in `allowed` (a route's, from [`crate::routes::table`]).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let Some(k) = self.0.keys().find(|k| !allowed.contains(&k.as_str())) else { return Ok(()) };
        let expected = if allowed.is_empty() {
            "this takes none".to_owned()
        } else {
            format!("expected one of {}", allowed.join(", "))
        };
        Err(ApiError::invalid(k.clone(), Code::UnknownParameter, format!("unknown query parameter {k}; {expected}")))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `limit`, a page's size: 1 to [`purse_app::parse::PAGE_MAX`], the default when absent.
    /// Anything else, a number or not, is refused with that one rule.
    pub fn limit(&self) -> Result<u32, ApiError> {
        let asked = self.text("limit").map(|v| v.trim().parse::<u32>().unwrap_or(0));
        Ok(purse_app::parse::page_limit(asked)?)
    }

    /// A whole number from 0 to 2^63 − 1 (every id, and every count, fits).
    pub fn id(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        Code::InvalidType,
                        format!("{name} must be a whole number from 0 to {}", i64::MAX),
                    )
                })
            })
            .transpose()
    }
}

/// The `{id}` of a path. One that is not a whole number below 2^63 names nothing: 404.
pub struct Id(pub u64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Id, ApiError> {
        let axum::extract::Path(text) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::App(AppError::NotFound("resource")))?;
        text.parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Id)
            .ok_or(ApiError::App(AppError::NotFound("resource")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_the_wrong_type_is_named_in_an_api_users_words() {
        let said = |m: &str| type_message("account", m);
        assert_eq!(
            said("invalid type: string \"13\", expected u64"),
            "account must be a whole number from 0, not the string \"13\""
        );
        assert_eq!(
            said("invalid value: integer `-1`, expected u64"),
            "account must be a whole number from 0, not the number -1"
        );
        assert_eq!(
            said("invalid type: floating point `1.5`, expected i64"),
            "account must be a whole number, not the number 1.5"
        );
        assert_eq!(
            said("invalid type: integer `12`, expected a string"),
            "account must be a string, not the number 12"
        );
        assert_eq!(said("invalid type: map, expected a boolean"), "account must be true or false, not an object");
        assert_eq!(said("invalid type: boolean `true`, expected a sequence"), "account must be a list, not true");
        assert_eq!(said("unknown variant `x`, expected `a` or `b`"), "account must be a or b, not \"x\"");
        assert_eq!(
            said("unknown variant `a\u{202e}b`, expected one of `card`, `cash`"),
            "account must be one of card, cash, not \"a\\u{202e}b\""
        );
        assert_eq!(said(&format!("unknown variant `{}`, expected `a`", "x".repeat(41))), "account must be a");
        assert_eq!(said("invalid length 2, expected 3 elements"), "account: invalid length 2, expected 3 elements");
        for rust in ["u64", "i64", "`", "struct"] {
            assert!(!said("invalid type: null, expected struct Charge").contains(rust), "{rust}");
            assert!(!said("invalid type: string \"x\", expected u64").contains(rust), "{rust}");
        }
    }
}
