//! Webhook endpoint addresses: their shape, and which network addresses they may reach.
//! An endpoint aimed at this host or a private network (loopback, RFC 1918, unique local,
//! link-local, carrier-grade NAT, unspecified, multicast) is refused unless the operator
//! allows it, both when it is registered and, after a fresh lookup, at every delivery, so a
//! name that later resolves to such an address gets nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URL may not receive Purse's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    TooLong,
    Scheme,
    Fragment,
    Credentials,
    Host,
    Port,
    DoesNotResolve { host: String },
    Forbidden { host: String, ip: IpAddr, why: &'static str },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::TooLong => write!(f, "a URL of at most {URL_LEN_MAX} characters without spaces"),
            AddressError::Scheme => f.write_str("must start with http:// or https://"),
            AddressError::Fragment => f.write_str("must not have a #fragment"),
            AddressError::Credentials => f.write_str("must not carry credentials"),
            AddressError::Host => f.write_str("needs a host name or address"),
            AddressError::Port => f.write_str("the port must be 1 to 65535"),
            AddressError::DoesNotResolve { host } => write!(f, "{host} does not resolve"),
            AddressError::Forbidden { host, ip, why } => write!(
                f,
                "{host} resolves to {ip}, {why}; webhooks to this host's or private networks are refused unless alerts.allow_private_webhooks is set"
            ),
        }
    }
}

impl std::error::Error for AddressError {}

/// A new signing secret: `whsec_` and 24 random bytes from the kernel, in base64.
pub fn new_secret() -> crate::AppResult<String> {
    use base64::Engine as _;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(crate::secrets::random_bytes::<24>()?)))
}

/// Longest endpoint URL.
pub const URL_LEN_MAX: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parses an `http://` or `https://` URL without credentials or fragment.
pub fn parse_webhook_url(text: &str) -> Result<WebhookUrl, AddressError> {
    if text.len() > URL_LEN_MAX || text.chars().any(|c| c.is_whitespace() || purse_core::text::is_control(c)) {
        return Err(AddressError::TooLong);
    }
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(AddressError::Scheme);
    };
    if text.contains('#') {
        return Err(AddressError::Fragment);
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(AddressError::Credentials);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(AddressError::Host)?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')) {
        return Err(AddressError::Host);
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(AddressError::Port)?,
        None if https => 443,
        None => 80,
    };
    Ok(WebhookUrl { https, host: host.to_ascii_lowercase(), port, path })
}

/// Why an address may not receive webhooks, if it may not.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        Some("not a unicast address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

/// Checks every address a host resolved to.
pub fn check_addresses(host: &str, addresses: &[IpAddr], allow_private: bool) -> Result<(), AddressError> {
    if addresses.is_empty() {
        return Err(AddressError::DoesNotResolve { host: host.to_owned() });
    }
    if allow_private {
        return Ok(());
    }
    match addresses.iter().find_map(|ip| forbidden_ip(*ip).map(|why| (ip, why))) {
        Some((ip, why)) => Err(AddressError::Forbidden { host: host.to_owned(), ip: *ip, why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_name_what_is_wrong() {
        let u = parse_webhook_url("https://Hooks.Example.com/purse?x=1").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port, u.path.as_str()), (true, "hooks.example.com", 443, "/purse?x=1"));
        let u = parse_webhook_url("http://127.0.0.1:9000").unwrap();
        assert_eq!((u.port, u.path.as_str()), (9000, "/"));
        assert_eq!(parse_webhook_url("http://[::1]:80/h").unwrap().host, "::1");
        assert!(parse_webhook_url("ftp://x").unwrap_err().to_string().contains("http://"));
        assert!(parse_webhook_url("https://u:p@x.com/").unwrap_err().to_string().contains("credentials"));
        assert!(parse_webhook_url("https://x.com:0/").unwrap_err().to_string().contains("port"));
        assert!(parse_webhook_url("https:///x").unwrap_err().to_string().contains("host"));
        assert!(parse_webhook_url("https://x.com/#f").unwrap_err().to_string().contains("fragment"));
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden_ip(bad.parse().unwrap()).is_some(), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert_eq!(forbidden_ip(good.parse().unwrap()), None, "{good}");
        }
        let local: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(check_addresses("localhost", &local, false).unwrap_err().to_string().contains("loopback"));
        assert!(check_addresses("localhost", &local, true).is_ok());
    }
}
