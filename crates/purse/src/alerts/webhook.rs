//! Sending signed webhooks, in the Standard Webhooks manner: headers `webhook-id` (the same
//! on every retry), `webhook-timestamp` (seconds) and `webhook-signature`
//! (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the base64 part of
//! the endpoint's `whsec_` secret).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use purse_http::webhooks::{check_addresses, parse_webhook_url};
use sha2::Sha256;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The signature of one message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(key).map_err(|_| "the endpoint's secret is not whsec_ and base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// Whether `header` (space-separated `v1,...` signatures) holds a valid signature of the message.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(expected) = sign(secret, id, timestamp, body) else { return false };
    header.split(' ').any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a delivery went: the status code, or why there was none.
pub enum Sent {
    Status(u16),
    Refused(String),
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// POSTs `body` to `url`, signed, and returns the response status.
pub fn post(url: &str, secret: &str, id: &str, timestamp: i64, body: &[u8], allow_private: bool) -> Sent {
    match try_post(url, secret, id, timestamp, body, allow_private) {
        Ok(status) => Sent::Status(status),
        Err(e) => Sent::Refused(e),
    }
}

fn try_post(url: &str, secret: &str, id: &str, timestamp: i64, body: &[u8], allow_private: bool) -> Result<u16, String> {
    let target = parse_webhook_url(url)?;
    let addresses: Vec<SocketAddr> = (target.host.as_str(), target.port).to_socket_addrs().map_err(|e| format!("{}: {e}", target.host))?.collect();
    let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
    check_addresses(&target.host, &ips, allow_private)?;
    let tcp = addresses
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, TIMEOUT).ok())
        .ok_or_else(|| format!("could not connect to {}:{}", target.host, target.port))?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Stream> = if target.https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let signature = sign(secret, id, timestamp, body)?;
    let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: Purse-Webhooks\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nwebhook-id: {id}\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: {signature}\r\n\
         Connection: close\r\n\r\n",
        target.path,
        target.port,
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).and_then(|()| stream.flush()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream.take(8192)).read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    status.ok_or_else(|| format!("not an HTTP response: {:?}", line.trim_end()))
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
