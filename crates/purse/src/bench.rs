//! `purse bench`: ingests charges through the engine and reports throughput, per-charge
//! latency and peak memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use purse_core::{AccountId, Amount, Billing, ClientId, Command, CurrencyCode, Item, Money, NewCharge, Outcome};
use purse_engine::{Engine, EngineConfig, SystemClock};

use crate::ids::{unix_ms, uuid_v4, uuid_v7, Rng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStyle {
    Time,
    Random,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub database_url: String,
    pub accounts: u64,
    pub charges: u64,
    /// Charges per request.
    pub batch: usize,
    /// Threads submitting requests at once.
    pub concurrency: usize,
    pub ids: IdStyle,
    /// Share of charges on one hot account.
    pub hot_percent: u64,
    /// Credit grants in force on every account.
    pub grants: u32,
    pub engine: EngineConfig,
    /// Drive a running server instead: its base URL and an operator key (read-write).
    pub target: Option<(String, String)>,
}

#[derive(Debug)]
pub struct BenchReport {
    pub charges: u64,
    pub seconds: f64,
    pub charges_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub peak_rss_mib: f64,
    pub setup_seconds: f64,
}

const CURRENCY: &str = "USD";
/// Accounts are created in requests of this many commands.
const SETUP_REQUEST_LEN: usize = 4096;

/// The resident-set high-water mark of this process, from /proc (Linux).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Creates the currency (if needed) and `n` prepaid customers; returns their wallets.
pub fn create_customers(engine: &Engine, prefix: &str, n: u64) -> crate::error::Result<Vec<AccountId>> {
    let usd = CurrencyCode::parse(CURRENCY).expect("valid code");
    // A replayed currency answers CurrencyExists: both mean "it is there".
    let _ = engine.execute(Command::CreateCurrency { code: usd, scale: 6 }).map_err(crate::Error::from)?;
    let mut wallets = Vec::with_capacity(n as usize);
    let mut i = 0;
    while i < n {
        let end = (i + SETUP_REQUEST_LEN as u64).min(n);
        let items = (i..end)
            .map(|k| {
                Item::single(Command::CreateCustomer {
                    client_id: ClientId::new(&format!("{prefix}-customer-{k}")).expect("short"),
                    name: format!("Customer {k}"),
                    reseller: None,
                    billing: Billing::Prepaid,
                    currency: usd,
                    credit_limit: Amount::ZERO,
                })
            })
            .collect();
        for result in engine.submit(items).map_err(crate::Error::from)? {
            match result {
                Ok(Outcome::PartyCreated { wallet: Some(w), .. }) => wallets.push(w),
                other => return Err(crate::Error::Failed(format!("creating a customer failed: {other:?}"))),
            }
        }
        i = end;
    }
    Ok(wallets)
}

/// Gives every wallet `n` grants in force for a year, large enough never to run out: the
/// first scoped to a service the bench's charges do not have, the others by priority.
pub fn give_grants(engine: &Engine, prefix: &str, wallets: &[AccountId], n: u32) -> crate::error::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let usd = CurrencyCode::parse(CURRENCY).expect("valid code");
    let now = purse_engine::Clock::now(&SystemClock);
    let all: Vec<(usize, u32)> = (0..wallets.len()).flat_map(|w| (0..n).map(move |g| (w, g))).collect();
    for chunk in all.chunks(SETUP_REQUEST_LEN) {
        let items = chunk
            .iter()
            .map(|&(w, g)| {
                Item::single(Command::Grant(purse_core::command::NewGrant {
                    client_id: ClientId::new(&format!("{prefix}-grant-{w}-{g}")).expect("short"),
                    account: wallets[w],
                    money: Money { amount: Amount(1_000_000_000_000), currency: usd },
                    kind: "promotional".into(),
                    funding: purse_core::SystemRole::Grants,
                    priority: g + 1,
                    effective_at: None,
                    expires_at: Some(now.plus_micros(365 * 86_400_000_000)),
                    scope: if g == 0 { vec!["roaming".into()] } else { Vec::new() },
                    rollover: None,
                    note: purse_core::ChangeNote { by: "bench".into(), reason: Some("bench".into()) },
                    metadata: None,
                }))
            })
            .collect();
        if let Some(bad) = engine.submit(items).map_err(crate::Error::from)?.into_iter().find(|r| r.is_err()) {
            return Err(crate::Error::Failed(format!("a grant was refused: {bad:?}")));
        }
    }
    Ok(())
}

/// Latencies in bounded memory, whatever the number recorded: log-linear buckets of a
/// sixty-fourth of a power of two (1.6 % resolution) from 1 µs, and the exact maximum.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < 64 {
            return us as usize;
        }
        let high = 63 - us.leading_zeros() as usize;
        (high - 5) * 64 + ((us >> (high - 6)) & 63) as usize
    }

    fn lower_us(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        ((64 + (i % 64)) as u64) << (i / 64 - 1)
    }

    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    pub fn record_n(&mut self, d: Duration, n: u64) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = Self::bucket(us);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
        self.total += n;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The latency below which a fraction `p` of the recorded ones fall, in milliseconds
    /// (its bucket's lower bound; `p` = 1 is the exact maximum).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        if p >= 1.0 {
            return self.max_us as f64 / 1000.0;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower_us(i) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

pub fn run(options: &BenchOptions) -> crate::error::Result<BenchReport> {
    if options.accounts == 0 || options.charges == 0 || options.batch == 0 || options.concurrency == 0 {
        return Err(crate::Error::Failed(
            "--accounts, --charges, --batch and --concurrency must each be at least 1".into(),
        ));
    }
    if options.hot_percent > 100 {
        return Err(crate::Error::Failed("--hot-percent must be between 0 and 100".into()));
    }
    if let Some((url, key)) = &options.target {
        return run_http(options, url, key);
    }
    let mut engine_config = options.engine.clone();
    engine_config.batch_size_max = engine_config.batch_size_max.max(options.batch);
    let engine =
        crate::start_engine(&options.database_url, Arc::new(SystemClock), engine_config).map_err(crate::Error::from)?;
    let setup = Instant::now();
    let prefix = format!("bench-{:x}", Rng::from_kernel().next_u64() & 0xFFFF_FFFF);
    let wallets = Arc::new(create_customers(&engine, &prefix, options.accounts)?);
    give_grants(&engine, &prefix, &wallets, options.grants)?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    if std::env::var_os("PURSE_TRACE").is_some() {
        eprintln!("peak RSS after setup: {:.0} MiB", peak_rss_mib());
    }

    let engine = Arc::new(engine);
    let next_charge = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(options.concurrency + 1));
    let usd = CurrencyCode::parse(CURRENCY).expect("valid code");
    let threads: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (engine, wallets, next, barrier) =
                (engine.clone(), wallets.clone(), next_charge.clone(), barrier.clone());
            let options = options.clone();
            std::thread::spawn(move || -> crate::error::Result<Histogram> {
                let mut rng = Rng::from_kernel();
                let mut latencies = Histogram::default();
                barrier.wait();
                loop {
                    let start = next.fetch_add(options.batch as u64, Ordering::Relaxed);
                    if start >= options.charges {
                        return Ok(latencies);
                    }
                    let len = (options.charges - start).min(options.batch as u64) as usize;
                    let items = (0..len).map(|_| charge(&mut rng, &options, &wallets, usd)).collect();
                    let began = Instant::now();
                    let results = engine.submit(items).map_err(crate::Error::from)?;
                    let took = began.elapsed();
                    if let Some(bad) = results.iter().find(|r| r.is_err()) {
                        return Err(crate::Error::Failed(format!("a charge was refused: {bad:?}")));
                    }
                    latencies.record_n(took, len as u64);
                }
            })
        })
        .collect();
    measure(&barrier, threads, options.charges, setup_seconds)
}

type BenchThread = std::thread::JoinHandle<crate::error::Result<Histogram>>;

/// Releases the threads waiting at `barrier`, times them to the end, and reports.
fn measure(
    barrier: &Barrier,
    threads: Vec<BenchThread>,
    charges: u64,
    setup_seconds: f64,
) -> crate::error::Result<BenchReport> {
    barrier.wait();
    let began = Instant::now();
    let mut latencies = Histogram::default();
    for t in threads {
        latencies.merge(&t.join().map_err(|_| crate::Error::Failed("a bench thread panicked".to_string()))??);
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok(BenchReport {
        charges,
        seconds,
        charges_per_s: charges as f64 / seconds,
        p50_ms: latencies.percentile_ms(0.50),
        p99_ms: latencies.percentile_ms(0.99),
        max_ms: latencies.percentile_ms(1.0),
        peak_rss_mib: peak_rss_mib(),
        setup_seconds,
    })
}

fn pick<T: Copy>(rng: &mut Rng, options: &BenchOptions, wallets: &[T]) -> T {
    if options.hot_percent > 0 && rng.chance(options.hot_percent) {
        wallets[0]
    } else {
        wallets[rng.below(wallets.len() as u64) as usize]
    }
}

/// A client id (or, over HTTP, an idempotency key) in the style `--ids` asks for.
fn new_id(style: IdStyle, rng: &mut Rng) -> String {
    match style {
        IdStyle::Time => uuid_v7(unix_ms(), rng),
        IdStyle::Random => uuid_v4(rng),
    }
}

fn charge(rng: &mut Rng, options: &BenchOptions, wallets: &[AccountId], usd: CurrencyCode) -> Item {
    let account = pick(rng, options, wallets);
    let id = new_id(options.ids, rng);
    Item::single(Command::Charge(NewCharge {
        client_id: ClientId::new(&id).expect("uuid fits"),
        account,
        money: Money { amount: Amount(1 + rng.below(5_000) as i64), currency: usd },
        service: None,
        at: None,
        metadata: None,
        refuse_if_insufficient: false,
    }))
}

impl BenchReport {
    pub fn to_json(&self, options: &BenchOptions) -> serde_json::Value {
        serde_json::json!({
            "charges": self.charges,
            "seconds": round(self.seconds),
            "charges_per_s": self.charges_per_s.round(),
            "p50_ms": round(self.p50_ms),
            "p99_ms": round(self.p99_ms),
            "max_ms": round(self.max_ms),
            "peak_rss_mib": self.peak_rss_mib.round(),
            "setup_seconds": round(self.setup_seconds),
            "accounts": options.accounts,
            "batch": options.batch,
            "concurrency": options.concurrency,
            "ids": match options.ids { IdStyle::Time => "time", IdStyle::Random => "random" },
            "hot_percent": options.hot_percent,
            "grants": options.grants,
            "backend": if options.target.is_some() { "http" } else { options.database_url.split("://").next().unwrap_or("") },
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The load generator of `--target`: keep-alive HTTP/1.1 connections that POST JSON and
/// read answers with a `Content-Length` (all the API sends), every one on the same thread's
/// event loop. It is not the CLI's client (`client::Client`, over ureq) on purpose: on a
/// machine whose cores the server shares, the load generator must cost less than what it
/// measures. ureq costs 1.45 times the CPU per request, and a blocking thread per connection
/// made each answer wake a thread that took the core from the server (BENCHMARKS.md).
struct Loader {
    host: String,
    key: String,
    conn: tokio::io::BufReader<tokio::net::TcpStream>,
}

/// How long the load generator waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

impl Loader {
    async fn connect(url: &str, key: &str) -> std::io::Result<Loader> {
        let host = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/').to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Loader { host, key: key.to_owned(), conn: tokio::io::BufReader::with_capacity(64 * 1024, stream) })
    }

    async fn post(&mut self, path: &str, body: &[u8], idempotency_key: &str) -> std::io::Result<(u16, Vec<u8>)> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.exchange(path, body, idempotency_key)).await {
            Ok(answer) => answer,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 60 s")),
        }
    }

    async fn exchange(&mut self, path: &str, body: &[u8], idempotency_key: &str) -> std::io::Result<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\nidempotency-key: {idempotency_key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            self.key,
            body.len()
        );
        let mut message = head.into_bytes();
        message.extend_from_slice(body);
        self.conn.get_mut().write_all(&message).await?;
        let mut line = String::new();
        self.conn.read_line(&mut line).await?;
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
        let status = status.ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            self.conn.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut reply = vec![0; length.ok_or_else(|| std::io::Error::other("an answer without content-length"))?];
        self.conn.read_exact(&mut reply).await?;
        Ok((status, reply))
    }
}

/// Opens `connections` loaders and, once `barrier` is passed, runs `task` on each, all on one
/// thread's event loop; the thread answers with their latencies merged.
fn on_one_thread<F, Fut>(url: &str, key: &str, connections: usize, barrier: Arc<Barrier>, task: F) -> BenchThread
where
    F: Fn(usize, Loader) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = crate::error::Result<Histogram>> + Send + 'static,
{
    let (url, key) = (url.to_owned(), key.to_owned());
    std::thread::spawn(move || -> crate::error::Result<Histogram> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut loaders = Vec::with_capacity(connections);
            let mut failed = None;
            for _ in 0..connections {
                match Loader::connect(&url, &key).await {
                    Ok(loader) => loaders.push(loader),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // Passed even when a connection failed: the measuring thread waits on it too.
            barrier.wait();
            if let Some(e) = failed {
                return Err(e.into());
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (n, loader) in loaders.into_iter().enumerate() {
                tasks.spawn(task(n, loader));
            }
            let mut latencies = Histogram::default();
            while let Some(done) = tasks.join_next().await {
                latencies.merge(&done.map_err(|_| crate::Error::Failed("a bench connection panicked".into()))??);
            }
            Ok(latencies)
        })
    })
}

/// One connection's share of the charges: posts until `next` passes `options.charges`.
async fn drive(
    mut client: Loader,
    options: Arc<BenchOptions>,
    wallets: Arc<Vec<u64>>,
    next: Arc<AtomicU64>,
) -> crate::error::Result<Histogram> {
    let mut rng = Rng::from_kernel();
    let mut latencies = Histogram::default();
    let mut body = Vec::with_capacity(options.batch * 128);
    loop {
        let start = next.fetch_add(options.batch as u64, Ordering::Relaxed);
        if start >= options.charges {
            return Ok(latencies);
        }
        let len = (options.charges - start).min(options.batch as u64) as usize;
        body.clear();
        body.extend_from_slice(if options.batch == 1 { b"" } else { b"{\"items\":[" });
        for i in 0..len {
            if i > 0 {
                body.push(b',');
            }
            let amount = 1 + rng.below(5_000);
            let item = format!(
                "{{\"client_id\":\"{}\",\"account\":{},\"amount\":\"{}.{:02}\",\"currency\":\"{CURRENCY}\"}}",
                new_id(options.ids, &mut rng),
                pick(&mut rng, &options, &wallets),
                amount / 100,
                amount % 100
            );
            body.extend_from_slice(item.as_bytes());
        }
        if options.batch > 1 {
            body.extend_from_slice(b"]}");
        }
        let path = if options.batch == 1 { "/v1/charges" } else { "/v1/charges/batch" };
        let idempotency_key = new_id(options.ids, &mut rng);
        let began = Instant::now();
        let (status, reply) = client
            .post(path, &body, &idempotency_key)
            .await
            .map_err(|e| crate::Error::Failed(format!("POST {path}: {e}")))?;
        latencies.record(began.elapsed());
        let ok = match status {
            201 => true,
            200 => !String::from_utf8_lossy(&reply).contains("\"error\""),
            _ => false,
        };
        if !ok {
            return Err(crate::Error::Failed(format!("POST {path}: {status} {}", String::from_utf8_lossy(&reply))));
        }
    }
}

/// The same measurement through the real API of a running server: `--batch 1` posts one
/// charge per `POST /v1/charges`, more posts `POST /v1/charges/batch`; `--concurrency`
/// connections, all on one thread's event loop. Latency is per request.
fn run_http(options: &BenchOptions, url: &str, key: &str) -> crate::error::Result<BenchReport> {
    use crate::client::Client;
    if options.batch > 8192 {
        return Err(crate::Error::Failed("--batch: the batch endpoint takes at most 8192 charges".into()));
    }
    let setup = Instant::now();
    let mut client = Client::new(url, Some(key.to_owned()))?;
    let mut rng = Rng::from_kernel();
    let mut post =
        |client: &mut Client, path: &str, body: serde_json::Value| -> crate::error::Result<serde_json::Value> {
            let reply = client.send("POST", path, &body, &uuid_v4(&mut rng))?;
            match reply.status {
                200 | 201 => Ok(reply.json()),
                s => Err(crate::Error::Failed(format!("POST {path}: {s} {}", String::from_utf8_lossy(&reply.body)))),
            }
        };
    if let Err(e) = post(&mut client, "/v1/currencies", serde_json::json!({ "code": CURRENCY })) {
        if !e.to_string().contains("currency_exists") {
            return Err(e);
        }
    }
    let prefix = format!("hbench-{:x}", Rng::from_kernel().next_u64() & 0xFFFF_FFFF);
    let mut wallets = Vec::with_capacity(options.accounts as usize);
    for n in 0..options.accounts {
        let body = serde_json::json!({ "client_id": format!("{prefix}-{n}"), "name": format!("Bench {n}"), "billing": "prepaid", "currency": CURRENCY });
        let created = post(&mut client, "/v1/customers", body)?;
        wallets.push(created["wallet"].as_u64().ok_or_else(|| crate::Error::Failed("no wallet in the answer".into()))?);
    }
    let setup_seconds = setup.elapsed().as_secs_f64();
    let wallets = Arc::new(wallets);
    let arc_options = Arc::new(options.clone());
    let next_charge = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let thread = on_one_thread(url, key, options.concurrency, barrier.clone(), move |_, loader| {
        drive(loader, arc_options.clone(), wallets.clone(), next_charge.clone())
    });
    measure(&barrier, vec![thread], options.charges, setup_seconds)
}

/// One request of a rated call: its answer as JSON, or why it failed.
async fn call_step(
    loader: &mut Loader,
    rng: &mut Rng,
    path: &str,
    body: String,
) -> crate::error::Result<serde_json::Value> {
    let (status, reply) = loader
        .post(path, body.as_bytes(), &uuid_v7(unix_ms(), rng))
        .await
        .map_err(|e| crate::Error::Failed(format!("POST {path}: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(crate::Error::Failed(format!("POST {path}: {status} {}", String::from_utf8_lossy(&reply))));
    }
    serde_json::from_slice(&reply).map_err(|e| crate::Error::Failed(format!("POST {path}: {e}")))
}

/// What `purse bench --calls` measured.
#[derive(Debug, Clone)]
pub struct CallsReport {
    pub deck_prefixes: usize,
    /// Importing the deck through the API (one request, all or nothing).
    pub import_seconds: f64,
    /// Rate lookups per second on the deck, in this process (one thread).
    pub lookups_per_s: f64,
    pub calls: u64,
    pub seconds: f64,
    pub calls_per_s: f64,
    /// Per request (authorize, update, update, terminate).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A random deck of `n` voice prefixes (2 to 7 digits) with a fallback, as CSV. Prices are
/// 0.0200 to 0.9999 a minute, billed by the second: from 0.02 a minute up, each step of a
/// bench call (60, 120, then 150 seconds used) costs at least a cent more than the one before,
/// so every call posts three times (a cheaper rate would round some steps to nothing).
fn random_deck(n: usize, rng: &mut Rng) -> (String, Vec<String>) {
    let mut csv = String::from("prefix,description,price,increments\n*,Rest of world,0.50,60/60\n");
    let mut seen = std::collections::HashSet::new();
    let mut prefixes = Vec::with_capacity(n);
    while prefixes.len() < n {
        let len = 2 + rng.below(6) as usize;
        let p: String = (0..len).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
        if seen.insert(p.clone()) {
            csv.push_str(&format!("{p},Zone {},0.{:04},1/1\n", prefixes.len(), 200 + rng.below(9_800)));
            prefixes.push(p);
        }
    }
    (csv, prefixes)
}

/// `purse bench --calls N --target URL`: imports a deck of `deck` prefixes into a new plan,
/// measures in-process lookups on it, then runs `N` complete calls (authorize, two updates,
/// terminate) over `concurrency` connections against the running server.
pub fn run_calls(
    url: &str,
    key: &str,
    calls: u64,
    concurrency: usize,
    deck: usize,
) -> crate::error::Result<CallsReport> {
    use crate::client::Client;
    let mut client = Client::new(url, Some(key.to_owned()))?.with_timeout(Duration::from_secs(300));
    let mut rng = Rng::from_kernel();
    let mut post =
        |client: &mut Client, path: &str, body: serde_json::Value| -> crate::error::Result<serde_json::Value> {
            let reply = client.send("POST", path, &body, &uuid_v4(&mut rng))?;
            match reply.status {
                200 | 201 => Ok(reply.json()),
                s => Err(crate::Error::Failed(format!("POST {path}: {s} {}", String::from_utf8_lossy(&reply.body)))),
            }
        };
    if let Err(e) = post(&mut client, "/v1/currencies", serde_json::json!({ "code": CURRENCY })) {
        if !e.to_string().contains("currency_exists") {
            return Err(e);
        }
    }
    let mut deck_rng = Rng::from_kernel();
    let (csv, prefixes) = random_deck(deck, &mut deck_rng);
    let plan = post(&mut client, "/v1/rate-plans", serde_json::json!({ "name": "Bench deck", "currency": CURRENCY }))?;
    let plan = plan["id"].as_u64().ok_or_else(|| crate::Error::Failed("no plan id".into()))?;
    let began = Instant::now();
    post(&mut client, &format!("/v1/rate-plans/{plan}/import"), serde_json::json!({ "csv": csv, "service": "voice" }))?;
    let import_seconds = began.elapsed().as_secs_f64();
    // Lookups: the same deck, parsed here, on random destinations.
    let now = purse_core::Timestamp::from_secs(unix_ms() as i64 / 1000);
    let rates = purse_app::rating::parse_deck(&csv, Some("voice"), purse_core::Timestamp(0))
        .map_err(|e| crate::Error::Failed(e.to_string()))?;
    let table = purse_core::rating::Deck::new(rates);
    let destinations: Vec<String> = (0..100_000)
        .map(|i| {
            let p = &prefixes[deck_rng.below(prefixes.len() as u64) as usize];
            format!("{p}{:06}", i % 1_000_000)
        })
        .collect();
    let began = Instant::now();
    let mut found = 0_u64;
    for _ in 0..20 {
        for d in &destinations {
            found += u64::from(table.lookup("voice", Some(d), now).is_some());
        }
    }
    let lookups_per_s = (20 * destinations.len()) as f64 / began.elapsed().as_secs_f64();
    std::hint::black_box(found);
    // Customers with money, given the plan.
    let mut wallets = Vec::new();
    let tag = format!("cbench-{:x}", rng_tag());
    for n in 0..concurrency.max(1) {
        let body = serde_json::json!({ "client_id": format!("{tag}-{n}"), "name": format!("Caller {n}"), "billing": "prepaid", "currency": CURRENCY });
        let c = post(&mut client, "/v1/customers", body)?;
        let (id, wallet) = (c["id"].as_u64().unwrap_or(0), c["wallet"].as_u64().unwrap_or(0));
        post(
            &mut client,
            "/v1/payments",
            serde_json::json!({ "client_id": format!("{tag}-p{n}"), "account": wallet, "amount": "100000000", "currency": CURRENCY, "method": "cash" }),
        )?;
        let reply = client.send(
            "PUT",
            &format!("/v1/customers/{id}/rate-plan"),
            &serde_json::json!({ "plan": plan }),
            "put",
        )?;
        if reply.status != 200 {
            return Err(crate::Error::Failed(format!("rate plan: {}", reply.status)));
        }
        wallets.push(wallet);
    }
    let (prefixes, wallets) = (Arc::new(prefixes), Arc::new(wallets));
    let next = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let thread = on_one_thread(url, key, wallets.len(), barrier.clone(), move |caller, mut loader| {
        let (prefixes, next, wallet) = (prefixes.clone(), next.clone(), wallets[caller]);
        async move {
            let mut rng = Rng::from_kernel();
            let mut latencies = Histogram::default();
            let mut n = 0_u64;
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                n += 1;
                let destination = format!("{}{:04}", prefixes[(n as usize * 7919) % prefixes.len()], n % 10_000);
                let mut step = async |path: &str, body: String| {
                    let began = Instant::now();
                    let answer = call_step(&mut loader, &mut rng, path, body).await;
                    latencies.record(began.elapsed());
                    answer
                };
                let s = step(
                    "/v1/sessions",
                    format!("{{\"account\":{wallet},\"service\":\"voice\",\"destination\":\"{destination}\"}}"),
                )
                .await?;
                let id = s["id"].as_u64().unwrap_or(0);
                step(&format!("/v1/sessions/{id}/update"), "{\"sequence\":1,\"used\":60}".into()).await?;
                step(&format!("/v1/sessions/{id}/update"), "{\"sequence\":2,\"used\":120}".into()).await?;
                step(&format!("/v1/sessions/{id}/terminate"), "{\"used\":150}".into()).await?;
            }
            Ok(latencies)
        }
    });
    let threads = vec![thread];
    barrier.wait();
    let began = Instant::now();
    let mut latencies = Histogram::default();
    for t in threads {
        latencies.merge(&t.join().map_err(|_| crate::Error::Failed("a caller thread panicked".into()))??);
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok(CallsReport {
        deck_prefixes: deck,
        import_seconds,
        lookups_per_s,
        calls,
        seconds,
        calls_per_s: calls as f64 / seconds,
        p50_ms: latencies.percentile_ms(0.50),
        p99_ms: latencies.percentile_ms(0.99),
    })
}

fn rng_tag() -> u64 {
    Rng::from_kernel().next_u64() & 0xFFFF_FFFF
}

#[cfg(test)]
mod histogram_tests {
    use super::Histogram;
    use std::time::Duration;

    #[test]
    fn percentiles_are_within_two_percent_in_bounded_memory() {
        let mut h = Histogram::default();
        for us in 1..=100_000_u64 {
            h.record(Duration::from_micros(us));
        }
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.02;
        assert!(near(h.percentile_ms(0.50), 50.0), "{}", h.percentile_ms(0.50));
        assert!(near(h.percentile_ms(0.99), 99.0), "{}", h.percentile_ms(0.99));
        assert_eq!(h.percentile_ms(1.0), 100.0);
        assert!(h.counts.len() < 1_000, "{} buckets for 100,000 latencies", h.counts.len());
        // Each bucket's lower bound maps back to that bucket, in order.
        for i in 0..h.counts.len() {
            assert_eq!(Histogram::bucket(Histogram::lower_us(i)), i);
        }
    }
}

#[cfg(test)]
mod deck_tests {
    use super::random_deck;
    use crate::ids::Rng;

    /// The calls bench expects three postings a call (the HTTP bench test counts them): every
    /// step of its calls must cost more than the one before, whatever the deck drew.
    #[test]
    fn every_step_of_a_bench_call_costs_more_than_the_one_before_on_any_deck() {
        for seed in 0..200 {
            let (csv, _) = random_deck(50, &mut Rng::new(seed));
            let rates = purse_app::rating::parse_deck(&csv, Some("voice"), purse_core::Timestamp(0)).unwrap();
            assert_eq!(rates.len(), 51, "50 prefixes and the fallback");
            for rate in &rates {
                let cost = |used: u64| rate.cost(used, 2).amount.0;
                assert!(0 < cost(60) && cost(60) < cost(120) && cost(120) < cost(150), "seed {seed}: {rate:?}");
            }
        }
    }
}
