//! Sending signed webhooks, in the Standard Webhooks manner: headers `webhook-id` (the same
//! on every retry), `webhook-timestamp` (seconds) and `webhook-signature`
//! (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the base64 part of
//! the endpoint's `whsec_` secret).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature of one message; none when the secret is not `whsec_` and base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(key).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// Whether `header` (space-separated `v1,...` signatures) holds a valid signature of the message.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(expected) = sign(secret, id, timestamp, body) else { return false };
    header.split(' ').any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a delivery went: the status code, or why there was none.
pub enum Sent {
    Status(u16),
    /// The endpoint's secret is unusable.
    BadSecret,
    Failed(crate::outbound::OutboundError),
}

/// POSTs `body` to `url`, signed, and returns the response status.
pub fn post(url: &str, secret: &str, id: &str, timestamp: i64, body: &[u8], allow_private: bool) -> Sent {
    let Some(signature) = sign(secret, id, timestamp, body) else { return Sent::BadSecret };
    let timestamp = timestamp.to_string();
    let headers = [
        ("User-Agent", "Purse-Webhooks"),
        ("Content-Type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    match crate::outbound::send("POST", &crate::outbound::Target { url, allow_private }, &headers, body, true) {
        Ok(answer) => Sent::Status(answer.status),
        Err(e) => Sent::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example_and_refuse_a_tampered_body() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &format!("v1,other {sig}")));
        assert!(!verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232315}"#, &sig));
    }
}
