//! Requests Purse makes to others (webhook receivers, Stripe), through `ureq`: blocking,
//! rustls with the web's root certificates, keep-alive connections pooled per process, no
//! proxy from the environment, no redirect followed, one deadline for the whole call.
//!
//! Names are resolved by [`Checked`], which refuses loopback, private and link-local
//! addresses unless the target allows them, so the address checked is the address
//! connected to (a name that resolves elsewhere later gets nothing either).

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

use crate::webhooks::{check_addresses, parse_webhook_url, AddressError};

/// The deadline of one call: connecting, sending and reading the answer.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response body read.
const BODY_MAX: u64 = 4 * 1024 * 1024;

/// A request's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Where a request goes, and whether private addresses may be reached (the receivers of
/// tenants' webhooks may not; the operator's own Stripe endpoint may).
pub struct Target<'a> {
    pub url: &'a str,
    pub allow_private: bool,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum OutboundError {
    /// The URL, or an address its host resolves to, may not be reached.
    Address(AddressError),
    /// No connection, a timeout, TLS, or not HTTP.
    Failed(String),
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundError::Address(e) => write!(f, "{e}"),
            OutboundError::Failed(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for OutboundError {}

impl From<ureq::Error> for OutboundError {
    fn from(e: ureq::Error) -> OutboundError {
        if let ureq::Error::Io(io) = &e {
            if let Some(refused) = io.get_ref().and_then(|inner| inner.downcast_ref::<AddressError>()) {
                return OutboundError::Address(refused.clone());
            }
        }
        OutboundError::Failed(e.to_string())
    }
}

/// The system resolver, with every address it answers checked.
#[derive(Debug)]
struct Checked {
    allow_private: bool,
}

impl Resolver for Checked {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addresses = DefaultResolver::default().resolve(uri, config, timeout)?;
        let ips: Vec<IpAddr> = addresses.iter().map(|a| a.ip()).collect();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        check_addresses(host, &ips, self.allow_private)
            .map_err(|refused| ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, refused)))?;
        Ok(addresses)
    }
}

/// The process's agent for targets that may (or may not) be private.
fn agent(allow_private: bool) -> &'static Agent {
    static PUBLIC: OnceLock<Agent> = OnceLock::new();
    static ANY: OnceLock<Agent> = OnceLock::new();
    let make = || {
        let config = Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent("Purse")
            .build();
        Agent::with_parts(config, DefaultConnector::default(), Checked { allow_private })
    };
    if allow_private {
        ANY.get_or_init(make)
    } else {
        PUBLIC.get_or_init(make)
    }
}

/// Sends one request with `headers` and `body`, and reads the answer (the whole body
/// unless `status_only`).
pub fn send(
    method: &str,
    target: &Target<'_>,
    headers: &[(&str, &str)],
    body: &[u8],
    status_only: bool,
) -> Result<Answer, OutboundError> {
    parse_webhook_url(target.url).map_err(OutboundError::Address)?;
    let mut request = ureq::http::Request::builder().method(method).uri(target.url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let agent = agent(target.allow_private);
    let invalid = |e: ureq::http::Error| OutboundError::Failed(e.to_string());
    let mut response = if body.is_empty() {
        agent.run(request.body(()).map_err(invalid)?)?
    } else {
        agent.run(request.body(body).map_err(invalid)?)?
    };
    let status = response.status().as_u16();
    let body =
        if status_only { Vec::new() } else { response.body_mut().with_config().limit(BODY_MAX).read_to_vec()? };
    Ok(Answer { status, body })
}
