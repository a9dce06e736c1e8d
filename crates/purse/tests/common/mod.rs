//! Shared test support: temporary databases on both backends and a small harness that
//! keeps feature tests to a few lines.
#![allow(dead_code)]

pub mod app;
pub mod served;
pub mod world;

/// Options of an in-process server for tests: quiet, no rate limit, webhooks to loopback
/// allowed, no worker (tests run theirs by hand), `payments` as given.
pub fn serve_options(payments: purse_app::recharger::PaymentConfig) -> purse::serve::ServeOptions {
    let mut web = purse::web::WebSettings::default();
    web.app.allow_private_webhooks = true;
    web.api.log_requests = false;
    web.api.rate_per_key = 0;
    purse::serve::ServeOptions {
        listen: "127.0.0.1:0".into(),
        engine: purse_engine::EngineConfig::default(),
        web,
        alerts: None,
        payments,
        read_timeout: purse::serve::READ_TIMEOUT,
    }
}

use std::io::{BufRead, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use purse_core::{
    AccountId, Amount, Billing, ClientId, Command, CommandResult, Currency, CurrencyCode, Item, Money, NewCharge,
    Outcome, PartyId, PaymentMethod, Timestamp, TransferKind,
};
use purse_engine::{Engine, EngineConfig, ManualClock};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh SQLite database file URL, unique to this test process and call.
pub fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join("purse-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let path = dir.join(format!("t-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

/// The PostgreSQL server the test script started. Never skipped: a missing server fails.
pub fn pg_admin_url() -> String {
    std::env::var("PURSE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PURSE_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts \
             PostgreSQL, or point it at a server whose role may create databases"
        )
    })
}

/// A fresh, empty PostgreSQL database named after the test; returns its URL.
pub fn pg_url(name: &str) -> String {
    let admin = pg_admin_url();
    let db = format!("purse_test_{name}");
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test server");
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).expect("drop");
    client.batch_execute(&format!("CREATE DATABASE {db}")).expect("create");
    let (base, _) = admin.rsplit_once('/').expect("URL has a database");
    format!("{base}/{db}")
}

/// Both backends, for stories that must hold on each.
pub fn both_backends(name: &str) -> Vec<String> {
    vec![sqlite_url(), pg_url(name)]
}

/// Waits until `done` holds, checking every 20 ms; fails the test with `what` after
/// `within_s` seconds. Tests synchronise with this, never with a bare sleep.
pub fn wait_for(within_s: u64, what: &str, done: impl FnMut() -> bool) {
    assert!(wait_until(within_s, done), "{what}: not within {within_s} s");
}

/// Waits until `done` holds, checking every 20 ms, for at most `within_s` seconds: whether
/// it did (for a test that says more than [`wait_for`] when it did not).
pub fn wait_until(within_s: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within_s);
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Checks that `holds` stays true for `during` (for "nothing more happens" after the
/// work a test waited for): fails the test at the first check where it does not.
pub fn stays(during: std::time::Duration, what: &str, mut holds: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + during;
    while std::time::Instant::now() < until {
        assert!(holds(), "{what}: no longer true");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits until something listens at `addr` (`host:port`).
pub fn wait_listening(addr: &str) {
    wait_for(30, &format!("{addr} listening"), || std::net::TcpStream::connect(addr).is_ok());
}

/// A fresh random id, for client ids and idempotency keys.
pub fn key() -> String {
    purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())
}

/// A real SMTP server storing every message in a maildir.
pub struct Smtp {
    child: std::process::Child,
    pub dir: std::path::PathBuf,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The whole message as received.
    pub raw: String,
}

impl Smtp {
    /// On a port the kernel gave it (see [`aiosmtpd`]).
    pub fn start() -> Smtp {
        let (child, dir, port) = aiosmtpd();
        Smtp { child, dir, port }
    }

    /// The balance notifications received, oldest first (receipt vouchers left out).
    pub fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.dir).into_iter().filter(|m| !m.subject.starts_with("Receipt voucher")).collect()
    }

    /// Messages per recipient.
    pub fn by_recipient(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for m in self.messages() {
            *counts.entry(m.to).or_insert(0) += 1;
        }
        counts
    }
}

/// Every message of a maildir, oldest first.
pub fn read_maildir(dir: &std::path::Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir.join("new")) else { return Vec::new() };
    let mut out: Vec<(std::time::SystemTime, Mail)> = entries
        .flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let header = |name: &str| {
                head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
            };
            (
                e.metadata().unwrap().modified().unwrap(),
                Mail {
                    to: header("To:"),
                    subject: header("Subject:"),
                    body: body.replace("\r\n", "\n"),
                    raw: text.clone(),
                },
            )
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, m)| m).collect()
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const T0: i64 = 1_790_000_000; // seconds; any fixed instant will do

pub fn cid(text: &str) -> ClientId {
    ClientId::new(text).expect("valid client id")
}

pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub usd: Currency,
    pub url: String,
    pub config: EngineConfig,
    n: AtomicU64,
}

impl Harness {
    pub fn sqlite() -> Harness {
        Harness::on(&sqlite_url())
    }

    pub fn on(url: &str) -> Harness {
        Harness::with_config(url, EngineConfig::default())
    }

    pub fn with_config(url: &str, config: EngineConfig) -> Harness {
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(T0)));
        let engine = purse::start_engine(url, clock.clone(), config.clone()).expect("engine starts");
        let usd = Currency { code: CurrencyCode::parse("USD").unwrap(), scale: 2 };
        let h = Harness { engine, clock, usd, url: url.to_owned(), config, n: AtomicU64::new(0) };
        let created = h.run(Command::CreateCurrency { code: usd.code, scale: 2 });
        assert!(matches!(created, Ok(Outcome::CurrencyCreated) | Err(purse_core::Rejection::CurrencyExists)));
        h
    }

    /// The same database and clock behind a new engine, as after a restart: nothing cached.
    pub fn restarted(self) -> Harness {
        let Harness { engine, clock, usd, url, config, n } = self;
        engine.shutdown();
        let engine = purse::start_engine(&url, clock.clone(), config.clone()).expect("engine restarts");
        Harness { engine, clock, usd, url, config, n }
    }

    pub fn next_id(&self, what: &str) -> ClientId {
        cid(&format!("{what}-{}", self.n.fetch_add(1, Ordering::SeqCst)))
    }

    pub fn run(&self, command: Command) -> CommandResult {
        self.engine.execute(command).expect("engine answers")
    }

    pub fn submit(&self, items: Vec<Item>) -> Vec<CommandResult> {
        self.engine.submit(items).expect("engine answers")
    }

    pub fn usd(&self, text: &str) -> Money {
        Money { amount: self.usd.parse(text).expect("valid amount"), currency: self.usd.code }
    }

    pub fn amount(&self, text: &str) -> Amount {
        self.usd.parse(text).expect("valid amount")
    }

    pub fn now(&self) -> Timestamp {
        purse_engine::Clock::now(self.clock.as_ref())
    }

    pub fn reseller(&self) -> PartyId {
        match self.run(Command::CreateReseller { client_id: self.next_id("reseller"), name: "Reseller".into() }) {
            Ok(Outcome::PartyCreated { party, .. }) => party,
            other => panic!("reseller: {other:?}"),
        }
    }

    /// A customer's wallet; prepaid when `limit` is "0".
    pub fn customer(&self, limit: &str) -> AccountId {
        self.customer_party(limit).1
    }

    pub fn customer_party(&self, limit: &str) -> (PartyId, AccountId) {
        self.customer_of(None, limit)
    }

    /// A customer of `reseller` (none: the operator's own) and its wallet.
    pub fn customer_of(&self, reseller: Option<PartyId>, limit: &str) -> (PartyId, AccountId) {
        let billing = if limit == "0" { Billing::Prepaid } else { Billing::Postpaid };
        let command = Command::CreateCustomer {
            client_id: self.next_id("customer"),
            name: "Customer".into(),
            reseller,
            billing,
            currency: self.usd.code,
            credit_limit: self.amount(limit),
        };
        match self.run(command) {
            Ok(Outcome::PartyCreated { party, wallet: Some(w), .. }) => (party, w),
            other => panic!("customer: {other:?}"),
        }
    }

    pub fn pay(&self, account: AccountId, amount: &str) -> CommandResult {
        self.run(Command::Payment {
            client_id: self.next_id("pay"),
            account,
            money: self.usd(amount),
            method: PaymentMethod::Cash,
            metadata: None,
        })
    }

    pub fn charge_cmd(&self, account: AccountId, amount: &str, refuse: bool) -> Command {
        Command::Charge(NewCharge {
            client_id: self.next_id("charge"),
            account,
            money: self.usd(amount),
            service: Some("voice".into()),
            at: None,
            metadata: None,
            refuse_if_insufficient: refuse,
        })
    }

    pub fn charge(&self, account: AccountId, amount: &str) -> CommandResult {
        self.run(self.charge_cmd(account, amount, false))
    }

    pub fn transfer(&self, source: AccountId, target: AccountId, amount: &str) -> CommandResult {
        self.run(Command::Transfer {
            client_id: self.next_id("transfer"),
            source,
            target,
            money: self.usd(amount),
            kind: TransferKind::Transfer,
            metadata: None,
            note: None,
        })
    }

    /// (balance, reserved, available) in units, from the store.
    pub fn parts(&self, account: AccountId) -> (i64, i64, i64) {
        let a = self.engine.reader().account(account).unwrap().expect("account exists");
        let available = self.engine.spendable(account, None).unwrap().unwrap().available.0;
        (a.balance.0, a.reserved.0, available)
    }

    pub fn assert_consistent(&self) {
        let audit = self.engine.reader().audit().unwrap();
        assert!(audit.is_consistent(), "books inconsistent: {audit:?}");
    }
}

pub fn rejected(result: &CommandResult) -> &'static str {
    match result {
        Err(r) => r.code(),
        Ok(o) => panic!("expected a rejection, got {o:?}"),
    }
}

/// A localstripe process of the test's own (a stateful Stripe emulator; `scripts/stripe.sh`
/// installs it and `scripts/test.sh` says where). It listens on a port the kernel chose for
/// it, which it prints: a port picked free beforehand could be taken by another test's
/// emulator first, whose answers then passed for ours until that test ended and took its
/// emulator away (how `a_crash_at_any_step_of_a_card_recharge_never_charges_twice_nor_loses_a_credit`
/// failed in a clean-clone run: "Stripe could not be reached: Connection refused").
pub struct LocalStripe {
    child: std::process::Child,
    pub url: String,
}

impl LocalStripe {
    pub fn start() -> LocalStripe {
        let python = std::env::var("PURSE_LOCALSTRIPE_PYTHON").unwrap_or_else(|_| {
            panic!("PURSE_LOCALSTRIPE_PYTHON is not set: run the tests with scripts/test.sh, which installs localstripe (scripts/stripe.sh)")
        });
        // What `python -m localstripe --from-scratch` does, on a socket bound to port 0.
        const SERVE: &str = "import os, socket
from aiohttp import web
from localstripe.server import app
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(('127.0.0.1', 0))
print(sock.getsockname()[1], flush=True)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
web.run_app(app, sock=sock, access_log=None, print=None)
";
        let mut child = std::process::Command::new(python)
            .args(["-c", SERVE])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("localstripe printed no port: {line:?}"));
        wait_for(30, "localstripe listening", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        LocalStripe { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// Recharger configured to pay through this emulator.
    pub fn config(&self) -> purse_app::recharger::PaymentConfig {
        purse_app::recharger::PaymentConfig {
            stripe: Some((self.url.clone(), "sk_test_purse".to_owned())),
            failures_max: 3,
            ..purse_app::recharger::PaymentConfig::default()
        }
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let answer = purse_app::outbound::send(
            "GET",
            &purse_app::outbound::Target { url: &format!("{}{path}", self.url), allow_private: true },
            &[("Authorization", "Bearer sk_test_purse")],
            b"",
            false,
        )
        .unwrap();
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// Every charge of a Stripe customer.
    pub fn charges(&self, customer: &str) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.get(&format!("/v1/charges?customer={customer}&limit=100{after}"));
            let data = page["data"].as_array().unwrap().clone();
            let Some(last) = data.last().map(|c| c["id"].as_str().unwrap().to_owned()) else {
                break;
            };
            all.extend(data);
            if page["has_more"] != serde_json::json!(true) {
                break;
            }
            after = format!("&starting_after={last}");
        }
        all
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of a PDF as poppler's `pdftotext` reads it (installed by `scripts/poppler.sh`):
/// an independent parser, so a PDF it reads is a valid one. Never skipped: without it, fails.
pub fn pdf_text(bytes: &[u8]) -> String {
    let tool = std::env::var("PURSE_PDFTOTEXT")
        .unwrap_or_else(|_| panic!("PURSE_PDFTOTEXT is not set: run the tests with scripts/test.sh, which installs pdftotext (scripts/poppler.sh)"));
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF: {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(64)]));
    let path = std::env::temp_dir().join(format!(
        "purse-test-{}-{}.pdf",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, bytes).expect("write the PDF");
    let out = std::process::Command::new(tool)
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("run pdftotext");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "pdftotext refused the PDF: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "pdftotext complained: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The attachment of an e-mail (as written to a maildir) with this content type: its
/// headers and its decoded bytes.
pub fn mail_attachment(mail: &str, content_type: &str) -> Option<(String, Vec<u8>)> {
    let mail = mail.replace("\r\n", "\n");
    let at = mail.find(&format!("Content-Type: {content_type}"))?;
    // The part starts after its boundary line; its headers run to the first blank line.
    let start = mail[..at].rfind("\n--").map_or(0, |i| i + 1);
    let part = mail[start..].split_once('\n')?.1;
    let (headers, rest) = part.split_once("\n\n")?;
    let body = rest.split("\n--").next()?;
    Some((headers.to_owned(), base64_decode(body)))
}

/// A real SMTP server (aiosmtpd, installed by `scripts/smtp.sh`) storing every message in a
/// fresh maildir; never skipped: without it, fails. It listens on a port the kernel chose for
/// it, which it prints: a port picked free beforehand could be taken by another test's server
/// by the time aiosmtpd binds it, and the greeting then was the other server's, which got this
/// test's mail (how `a_process_killed_before_delivering_loses_no_notification` failed under
/// load). Returns the process, its maildir and the port.
pub fn aiosmtpd() -> (std::process::Child, std::path::PathBuf, u16) {
    use std::process::{Command, Stdio};

    const SERVE: &str = "import asyncio, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

async def main():
    handler = Mailbox(sys.argv[1])
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
";
    static N: AtomicU64 = AtomicU64::new(0);
    let python = std::env::var("PURSE_AIOSMTPD_PYTHON").expect("PURSE_AIOSMTPD_PYTHON (scripts/test.sh)");
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("purse-smtp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(python)
        .args(["-c", SERVE])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd printed no port: {line:?}"));
    (child, dir, port)
}

/// A request a [`Receiver`] got: its headers (names lowercased), its body, and the status
/// it was answered with.
pub type Received = (std::collections::BTreeMap<String, String>, Vec<u8>, u16);

/// A real HTTP receiver: answers each request with the next status of `script` (then 200)
/// and records the headers and body of each.
pub struct Receiver {
    pub url: String,
    pub seen: Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(script: Vec<u16>) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut headers = std::collections::BTreeMap::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    let (k, v) = line.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                let len: usize = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let status = script.get(n).copied().unwrap_or(200);
                log.lock().unwrap().push((headers, body, status));
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, seen }
    }
}
