//! A small blocking HTTP/1.1 client for Purse's own API: the CLI's client commands, the
//! HTTP benchmark and the tests use it. Plain HTTP on a keep-alive connection (put a TLS
//! proxy in front of Purse for anything beyond loopback); enough for JSON with
//! `Content-Length`, which is all the API sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
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

pub struct Client {
    host: String,
    key: Option<String>,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// `base` is `http://HOST:PORT`.
    pub fn new(base: &str, key: Option<String>) -> Result<Client, String> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {base:?}: must start with http://"))?
            .trim_end_matches('/')
            .to_owned();
        if host.is_empty() || host.contains('/') {
            return Err(format!("--url {base:?}: expected http://HOST:PORT"));
        }
        Ok(Client { host, key, timeout: Duration::from_secs(30), conn: None })
    }

    /// How long to wait for a connection, a write or an answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    fn connect(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.host)?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let stream = TcpStream::connect_timeout(&addr, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// One request. A connection the server closed while idle is reopened once; the
    /// request is only resent when nothing of it can have been processed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        if let Some(key) = &self.key {
            head.push_str(&format!("authorization: Bearer {key}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
                head.push_str("content-type: application/json\r\n");
            }
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(body.unwrap_or_default());
        let reused = self.conn.is_some();
        match self.exchange(&message) {
            Ok(reply) => Ok(reply),
            Err(e)
                if reused
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                    ) =>
            {
                self.conn = None;
                self.exchange(&message)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn exchange(&mut self, message: &[u8]) -> std::io::Result<Reply> {
        let conn = self.connect()?;
        conn.get_mut().write_all(message)?;
        let reply = read_reply(conn);
        if reply.is_err() {
            self.conn = None;
        }
        reply
    }

    pub fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.request("GET", path, None, &[]).map_err(|e| format!("GET {path}: {e}"))
    }

    /// A changing request with its idempotency key.
    pub fn send(&mut self, method: &str, path: &str, body: &Value, idempotency_key: &str) -> Result<Reply, String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.request(method, path, Some(&bytes), &[("idempotency-key", idempotency_key)])
            .map_err(|e| format!("{method} {path}: {e}"))
    }
}

fn read_reply(conn: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    let mut length = None;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_owned();
            if name == "content-length" {
                length = value.parse::<usize>().ok();
            }
            headers.push((name, value));
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("response without content-length"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(Reply { status, headers, body })
}
