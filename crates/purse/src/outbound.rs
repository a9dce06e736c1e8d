//! Requests Purse makes to others (webhook receivers, Stripe): one blocking HTTP/1.1
//! request per connection, plain or over rustls with the web's root certificates.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use purse_app::webhooks::{check_addresses, parse_webhook_url};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response body read.
const BODY_MAX: u64 = 4 * 1024 * 1024;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

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

/// Sends one request with `headers` (each `Name: value`) and `body`, and reads the answer
/// (the whole body unless `status_only`).
pub fn send(
    method: &str,
    target: &Target<'_>,
    headers: &[(&str, &str)],
    body: &[u8],
    status_only: bool,
) -> Result<Answer, String> {
    let url = parse_webhook_url(target.url)?;
    let addresses: Vec<SocketAddr> =
        (url.host.as_str(), url.port).to_socket_addrs().map_err(|e| format!("{}: {e}", url.host))?.collect();
    let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
    check_addresses(&url.host, &ips, target.allow_private)?;
    let tcp = addresses
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, TIMEOUT).ok())
        .ok_or_else(|| format!("could not connect to {}:{}", url.host, url.port))?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Stream> = if url.https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.port,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.take(BODY_MAX));
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", line.trim_end()))?;
    if status_only {
        return Ok(Answer { status, body: Vec::new() });
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| "a bad chunk size".to_owned())?;
            if size == 0 {
                break;
            }
            let start = out.len();
            out.resize(start + size, 0);
            reader.read_exact(&mut out[start..]).map_err(|e| e.to_string())?;
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        reader.read_exact(&mut out).map_err(|e| e.to_string())?;
    } else {
        reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
    }
    Ok(Answer { status, body: out })
}
