//! A small blocking client for Purse's own API, over `ureq`: the CLI's client commands, the
//! HTTP benchmark and the tests use it. Keep-alive connections are pooled; proxies from the
//! environment and redirects are not followed. Plain HTTP (put a TLS proxy in front of Purse
//! for anything beyond loopback).

use std::time::Duration;

use serde_json::Value;

/// A response: status, headers (names lowercased) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Largest answer read (a full page of the journal as CSV fits many times).
const BODY_MAX: u64 = 256 * 1024 * 1024;

pub struct Client {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

/// An agent whose every step (connecting, sending, waiting for the answer, reading it) may
/// take `timeout`. No overall deadline: with one, ureq resolves each request's host on a
/// thread of its own, which costs more than the request to a local server.
fn agent(timeout: Duration) -> ureq::Agent {
    let step = Some(timeout);
    ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_connect(step)
        .timeout_send_request(step)
        .timeout_send_body(step)
        .timeout_recv_response(step)
        .timeout_recv_body(step)
        .build()
        .new_agent()
}

impl Client {
    /// `base` is `http://HOST:PORT`.
    pub fn new(base: &str, key: Option<String>) -> crate::error::Result<Client> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| crate::Error::Usage(format!("--url {base:?}: must start with http://")))?
            .trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(crate::Error::Usage(format!("--url {base:?}: expected http://HOST:PORT")));
        }
        Ok(Client { base: format!("http://{host}"), key, agent: agent(Duration::from_secs(30)) })
    }

    /// How long each step of a request may take: connecting, sending, the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.agent = agent(timeout);
        self
    }

    /// One request (JSON unless `headers` say otherwise). A request safe to repeat (a read,
    /// or one with an idempotency key) is sent once more if the connection broke under it:
    /// a pooled keep-alive connection the server had closed fails only when used.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ureq::Error> {
        let safe = method == "GET" || headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"));
        match self.request_once(method, path, body, headers) {
            Err(ureq::Error::Io(_)) if safe => self.request_once(method, path, body, headers),
            other => other,
        }
    }

    fn request_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ureq::Error> {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = match body {
            Some(body) => {
                if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
                    request = request.header("content-type", "application/json");
                }
                self.agent.run(request.body(body)?)?
            }
            None => self.agent.run(request.body(())?)?,
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let body = response.body_mut().with_config().limit(BODY_MAX).read_to_vec()?;
        Ok(Reply { status, headers, body })
    }

    pub fn get(&mut self, path: &str) -> crate::error::Result<Reply> {
        self.request("GET", path, None, &[]).map_err(|e| crate::Error::Remote(format!("GET {path}: {e}")))
    }

    /// A changing request with its idempotency key.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> crate::error::Result<Reply> {
        let bytes = serde_json::to_vec(body)?;
        self.request(method, path, Some(&bytes), &[("idempotency-key", idempotency_key)])
            .map_err(|e| crate::Error::Remote(format!("{method} {path}: {e}")))
    }
}
