//! Purse's engine: many concurrent callers in, one writer thread, one store transaction
//! per batch (group commit).
//!
//! Callers [`Engine::submit`] a request (one command or a batch). Requests wait in a
//! bounded queue; the writer takes as many as fit in [`EngineConfig::batch_size_max`]
//! commands, applies them with [`purse_core::Ledger`] against its in-memory cache, writes
//! the result through a [`purse_store::Store`] in one transaction, and answers each caller
//! only after the commit returned. A full queue blocks (or, with `try_submit`, refuses)
//! callers: back-pressure, never unbounded memory.
//!
//! While a batch of plain charges waits behind one being written, or arrives while it is
//! written, the ledger applies it on a second thread meanwhile (see `AheadRules` and
//! `wait_and_apply`); its output stands only if no one else committed in between.
//!
//! The cache is trusted only while the store's epoch is the one this engine last wrote; if
//! another process committed in between, the cache is dropped and reloaded, which is what
//! keeps several processes on one PostgreSQL database correct.
//!
//! This crate knows no database driver and no wire format.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use purse_core::{
    Account, AccountId, AccountKind, Amount, BatchOutput, ClientKey, Command, CommandResult, Item, Ledger, Lookups,
    Timestamp,
};
use purse_store::{Reader, Store, StoreError, StoredResponse};

/// The one source of time for the engine (and later the scheduler and the API).
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
/// A rendered response: its HTTP status and body.
type Response = (u16, Vec<u8>);

/// What the writer answers a sealed request whose key was used before, without applying it:
/// the stored response (`replayed`), or the seal's `reused` refusal (not a replay).
#[derive(Clone)]
struct Replay {
    response: Response,
    replayed: bool,
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}

/// A clock tests move by hand, so a month runs in a second.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.0))
    }
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
    pub fn advance_micros(&self, us: i64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Limits of the engine; every one is bounded, none means "unlimited".
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Requests waiting for the writer; callers block (or are refused) beyond it.
    pub queue_len_max: usize,
    /// Commands per batch (and so per store transaction); also the largest request.
    pub batch_size_max: usize,
    /// How long the writer waits for more requests once it has one. Zero: take what is
    /// queued and go (batches still form naturally while the previous one commits).
    pub batch_wait: Duration,
    /// Accounts kept in memory; past it the cache is emptied and refilled on demand. The
    /// default keeps an operator with a million subscribers warm (about 0.3 KiB each).
    pub cached_accounts_max: usize,
    /// Parties kept in memory. Charges never need them, so a bulk import of customers is
    /// dropped from memory right after it is written.
    pub cached_parties_max: usize,
    /// How long the responses of idempotent API requests are kept (and so replayed).
    pub response_retention: Duration,
    /// What the writer forgets of its cache before each batch: nothing in production; tests
    /// of cache independence make it forget everything, or a random part.
    pub eviction: Eviction,
    /// Commands a queued batch must have for the ledger to apply it on another thread while
    /// the batch before it is written (only batches of plain charges qualify; see
    /// `AheadRules`), and a batch must have for that thread to wait for the next one while it
    /// is written. Below it, a thread costs more than it saves.
    pub apply_ahead_min: usize,
}

/// What the writer forgets of its cache before each batch (see [`EngineConfig::eviction`]).
/// The ledger's answers must not depend on it: what a batch needs is loaded either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eviction {
    #[default]
    Nothing,
    /// Every account and party but the always-loaded base (currencies, system accounts,
    /// open holds): every batch starts cold.
    Everything,
    /// About half of the accounts and parties, chosen by a generator seeded with `seed`.
    Random { seed: u64 },
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            queue_len_max: 4096,
            batch_size_max: 8192,
            batch_wait: Duration::ZERO,
            cached_accounts_max: 2_000_000,
            cached_parties_max: 10_000,
            response_retention: Duration::from_secs(24 * 3600),
            eviction: Eviction::Nothing,
            apply_ahead_min: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The queue is full (only from `try_submit`).
    Overloaded,
    /// A request with more commands than `batch_size_max`.
    BatchTooLarge { max: usize },
    /// The engine has stopped.
    Stopped,
    /// The store failed; nothing of the request was applied. When it is
    /// `StoreError::Unavailable`, retrying later may succeed.
    Store(StoreError),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Overloaded => f.write_str("the engine's queue is full; retry later"),
            EngineError::BatchTooLarge { max } => write!(f, "a batch may hold at most {max} commands"),
            EngineError::Stopped => f.write_str("the engine has stopped"),
            EngineError::Store(e) => write!(f, "store failure: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

type Reply = Result<Vec<CommandResult>, EngineError>;

/// Turns a request's results into the response its caller will send. It may be called more
/// than once: a batch whose write failed is retried without the request that broke it.
pub type Render = Box<dyn Fn(&[CommandResult]) -> (u16, Vec<u8>) + Send>;

/// A request made with an idempotency key: its response is rendered by the writer and
/// stored in the same transaction as the commands, so a retry finds either nothing done
/// or the exact response, never one without the other.
///
/// The writer also answers retries: when the key was stored before, it sends the stored
/// response (same hash) or `reused` (another hash) and applies nothing of the request.
pub struct Seal {
    pub api_key: u64,
    pub key: String,
    pub request_hash: String,
    pub render: Render,
    /// The answer when the key was used before with another request.
    pub reused: (u16, Vec<u8>),
}

/// Rows a request writes with its commands, in the batch's own transaction: given the
/// request's results and the open transaction. An error fails the request alone (the others
/// of the batch commit without it) and undoes its commands. It may be called more than once.
pub type After = Box<dyn Fn(&[CommandResult], &mut dyn purse_store::Db) -> Result<(), StoreError> + Send>;

struct Request {
    items: Vec<Item>,
    seal: Option<Seal>,
    after: Option<After>,
    reply: flume::Sender<(Reply, Option<SealedResponse>)>,
}

/// The response of a sealed request: rendered now, or stored earlier and `replayed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub replayed: bool,
}

/// The answer to "how much can this account spend now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spendable {
    pub available: Amount,
    /// Whole units of `price` the available balance buys (0 when it is not positive).
    pub units: Option<u64>,
}

/// A running engine. Dropping it (or [`Engine::shutdown`]) finishes queued batches first.
pub struct Engine {
    queue: Option<flume::Sender<Request>>,
    reader: Arc<dyn Reader>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    writer: Option<JoinHandle<()>>,
    writable: Arc<AtomicBool>,
    events: Arc<Committed>,
    applied_ahead: Arc<AtomicU64>,
}

/// Counts the committed batches that recorded outbox events (threshold crossings, refills),
/// so that a worker waits for the next one instead of polling the outbox.
#[derive(Default)]
struct Committed {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Committed {
    fn bump(&self) {
        let mut count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *count += 1;
        self.changed.notify_all();
    }
}

impl Engine {
    /// Starts the writer thread over `store`. The store must be migrated.
    pub fn start(
        store: Box<dyn Store>,
        reader: Arc<dyn Reader>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Engine {
        let (queue, requests) = flume::bounded(config.queue_len_max);
        let writable = Arc::new(AtomicBool::new(true));
        let events = Arc::new(Committed::default());
        let applied_ahead = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            applied_ahead: applied_ahead.clone(),
            bin: Bin::start(),
            events: events.clone(),
            store,
            ledger: Ledger::default(),
            cache_epoch: None,
            trace: std::env::var_os("PURSE_TRACE").is_some(),
            clock: clock.clone(),
            config: config.clone(),
            purged_at: None,
            evictions: 0,
            writable: writable.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("purse-writer".into())
            .spawn(move || writer.run(requests))
            .expect("spawning the writer thread");
        Engine { queue: Some(queue), reader, clock, config, writer: Some(handle), writable, events, applied_ahead }
    }

    /// Batches the ledger applied while the batch before them was written (see
    /// [`EngineConfig::apply_ahead_min`]).
    pub fn applied_ahead(&self) -> u64 {
        self.applied_ahead.load(Ordering::Relaxed)
    }

    pub fn reader(&self) -> &Arc<dyn Reader> {
        &self.reader
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn request(&self, items: Vec<Item>, seal: Option<Seal>) -> Result<(Request, Answer), EngineError> {
        if items.len() > self.config.batch_size_max {
            return Err(EngineError::BatchTooLarge { max: self.config.batch_size_max });
        }
        let (reply, answer) = flume::bounded(1);
        Ok((Request { items, seal, after: None, reply }, answer))
    }

    fn queue(&self) -> Result<&flume::Sender<Request>, EngineError> {
        self.queue.as_ref().ok_or(EngineError::Stopped)
    }

    /// Whether the store took the last batch: false while it is unavailable (a lost
    /// database, a full disk), true again once a batch commits.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    /// Runs an empty batch through the store (it takes the write lock and commits), to learn
    /// whether writes work again after a failure.
    pub async fn probe(&self) -> Result<(), EngineError> {
        self.submit_async(Vec::new()).await.map(drop)
    }

    /// How many committed batches of this process recorded outbox events so far.
    pub fn events_committed(&self) -> u64 {
        *self.events.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a batch with outbox events commits after `seen` (a value of
    /// [`Engine::events_committed`]) or `timeout` passes; returns the count then. Another
    /// process's commits are not seen: whoever waits still looks at the outbox every `timeout`.
    pub fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64 {
        let count = self.events.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (count, _) = self
            .events
            .changed
            .wait_timeout_while(count, timeout, |c| *c == seen)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *count
    }

    /// Requests waiting for the writer right now (a gauge for metrics and tests).
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    /// Submits a request and waits until its batch is durable. Blocks while the queue is full.
    pub fn submit(&self, items: Vec<Item>) -> Reply {
        let (request, answer) = self.request(items, None)?;
        self.queue()?.send(request).map_err(|_| EngineError::Stopped)?;
        answer.recv().map_err(|_| EngineError::Stopped)?.0
    }

    /// Like [`Engine::submit`], and `after` writes rows of the caller's in the same
    /// transaction as the commands: both are committed, or neither.
    pub fn submit_with(&self, items: Vec<Item>, after: After) -> Reply {
        let (mut request, answer) = self.request(items, None)?;
        request.after = Some(after);
        self.queue()?.send(request).map_err(|_| EngineError::Stopped)?;
        answer.recv().map_err(|_| EngineError::Stopped)?.0
    }

    /// Like [`Engine::submit`] but refuses at once with `Overloaded` when the queue is full.
    pub fn try_submit(&self, items: Vec<Item>) -> Reply {
        let (request, answer) = self.request(items, None)?;
        self.queue()?.try_send(request).map_err(|e| match e {
            flume::TrySendError::Full(_) => EngineError::Overloaded,
            flume::TrySendError::Disconnected(_) => EngineError::Stopped,
        })?;
        answer.recv().map_err(|_| EngineError::Stopped)?.0
    }

    /// The async form of [`Engine::submit`], for callers on an async runtime.
    pub async fn submit_async(&self, items: Vec<Item>) -> Reply {
        let (request, answer) = self.request(items, None)?;
        self.queue()?.send_async(request).await.map_err(|_| EngineError::Stopped)?;
        answer.recv_async().await.map_err(|_| EngineError::Stopped)?.0
    }

    /// Submits a request whose response is stored with it (see [`Seal`]) and returns that
    /// response once durable. Refuses at once with `Overloaded` when the queue is full: an
    /// API caller is better told to retry than left waiting.
    pub async fn submit_sealed(&self, items: Vec<Item>, seal: Seal) -> Result<SealedResponse, EngineError> {
        let (request, answer) = self.request(items, Some(seal))?;
        self.queue()?.try_send(request).map_err(|e| match e {
            flume::TrySendError::Full(_) => EngineError::Overloaded,
            flume::TrySendError::Disconnected(_) => EngineError::Stopped,
        })?;
        let (reply, response) = answer.recv_async().await.map_err(|_| EngineError::Stopped)?;
        reply?;
        response.ok_or_else(|| {
            EngineError::Store(StoreError::Other("a sealed request came back without its response".into()))
        })
    }

    /// One command, one result.
    pub fn execute(&self, command: Command) -> Result<CommandResult, EngineError> {
        let mut results = self.submit(vec![Item::single(command)])?;
        Ok(results.pop().expect("one result per item"))
    }

    /// How much the account can spend now, and how many units of `price` that buys.
    /// A read of committed state: it never waits for the writer.
    pub fn spendable(&self, account: AccountId, price: Option<Amount>) -> Result<Option<Spendable>, EngineError> {
        self.spendable_for(account, price, None)
    }

    /// Like [`Engine::spendable`], for a charge of `service`: only the credit grants that may
    /// pay for it count (`None`: every grant in force, as the available balance shown).
    pub fn spendable_for(
        &self,
        account: AccountId,
        price: Option<Amount>,
        service: Option<&str>,
    ) -> Result<Option<Spendable>, EngineError> {
        let now = self.clock.now();
        let Some(acc) = self.current(account, now)? else { return Ok(None) };
        let parent: Option<Account> = match acc.kind {
            AccountKind::SubscriberCredit { parent } => self.current(parent, now)?,
            _ => None,
        };
        let spend = match service {
            Some(s) => purse_core::ledger::Spend::Service(Some(s)),
            None => purse_core::ledger::Spend::Shown,
        };
        let available = spend.available(&acc, parent.as_ref(), now);
        let units = price.filter(|p| p.is_positive()).map(|p| {
            if available <= 0 {
                0
            } else {
                u64::try_from(available / i128::from(p.0)).unwrap_or(u64::MAX)
            }
        });
        let available = Amount(available.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
        Ok(Some(Spendable { available, units }))
    }

    /// The committed account as of `now`: holds that expired since the last batch no longer
    /// count as reserved, whether or not a batch has run to release them.
    pub fn current(&self, account: AccountId, now: Timestamp) -> Result<Option<Account>, EngineError> {
        let found = self.reader.account(account).map_err(EngineError::Store)?;
        found.map(|acc| self.as_of(acc, now)).transpose()
    }

    /// An account already read, as of `now` (see [`Engine::current`]).
    pub fn as_of(&self, mut acc: Account, now: Timestamp) -> Result<Account, EngineError> {
        if acc.reserved.is_positive() {
            let expired = self.reader.expired_reservations(acc.id, now).map_err(EngineError::Store)?;
            acc.reserved = Amount(acc.reserved.0 - expired);
        }
        Ok(acc)
    }

    /// Stops taking requests, finishes every queued one, and waits for the writer.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.queue.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

type Answer = flume::Receiver<(Reply, Option<SealedResponse>)>;

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread's state: the store's write side and the ledger cache.
struct Writer {
    store: Box<dyn Store>,
    ledger: Ledger,
    /// The epoch the cache reflects; `None` when it must be rebuilt.
    cache_epoch: Option<u64>,
    /// `PURSE_TRACE` was set at start: print each batch's phase timings.
    trace: bool,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    /// When stored responses were last purged.
    purged_at: Option<Timestamp>,
    /// Batches evicted so far (the random eviction's sequence number).
    evictions: u64,
    /// Whether the last batch reached the store (false while it is unavailable).
    writable: Arc<AtomicBool>,
    /// Bumped after each commit of a batch with outbox events.
    events: Arc<Committed>,
    /// Batches applied while the one before them was written.
    applied_ahead: Arc<AtomicU64>,
    /// Where a large batch's requests and rows go once answered (see [`Bin`]).
    bin: Bin,
}

/// Frees what large batches leave behind on a thread of its own: 8,192 requests and their
/// postings are some 50,000 allocations, made by the callers' threads, and freeing them took
/// the writer about a twentieth of its time between two commits (BENCHMARKS.md).
struct Bin(Option<flume::Sender<Box<dyn Send>>>);

impl Bin {
    /// Below this many commands a batch is freed where it is: a hand-off costs more.
    const ITEMS_MIN: usize = 256;

    fn start() -> Bin {
        let (litter, bin) = flume::unbounded::<Box<dyn Send>>();
        // No thread to be had: everything is freed by the writer, as before.
        let spawned = std::thread::Builder::new().name("purse-free".into()).spawn(move || bin.iter().for_each(drop));
        Bin(spawned.ok().map(|_| litter))
    }

    /// Frees `litter` on the bin's thread when the batch is large (its `items`), here if not.
    fn throw<T: Send + 'static>(&self, items: usize, litter: T) {
        match &self.0 {
            Some(bin) if items >= Self::ITEMS_MIN => {
                let _ = bin.send(Box::new(litter));
            }
            _ => drop(litter),
        }
    }
}

/// How often the writer forgets stored responses past their retention.
const PURGE_INTERVAL_US: i64 = 60 * Timestamp::MICROS_PER_S;

/// The requests waiting for the writer, and the one that did not fit in the last batch.
struct Queue {
    requests: flume::Receiver<Request>,
    carried: Option<Request>,
}

impl Queue {
    /// The next batch: as many queued requests as fit in `max` commands. With `wait`, blocks
    /// for the first one (and up to `batch_wait` for more); `None` when every sender is gone
    /// and the queue is drained. Without, `None` when nothing is queued.
    fn take(&mut self, max: usize, batch_wait: Duration, wait: bool) -> Option<Vec<Request>> {
        let first = match self.carried.take() {
            Some(r) => r,
            None if wait => self.requests.recv().ok()?,
            None => self.requests.try_recv().ok()?,
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + batch_wait;
        self.top_up(&mut batch, max, if wait && !batch_wait.is_zero() { Some(deadline) } else { None });
        Some(batch)
    }

    /// Adds queued requests to `batch` while they fit in `max` commands, waiting for them
    /// until `deadline` if there is one.
    fn top_up(&mut self, batch: &mut Vec<Request>, max: usize, deadline: Option<Instant>) {
        if self.carried.is_some() {
            return; // The batch was already cut where the next request did not fit.
        }
        let mut count: usize = batch.iter().map(|r| r.items.len()).sum();
        while count < max {
            let next = match (self.requests.try_recv(), deadline) {
                (Ok(r), _) => r,
                (Err(_), None) => break,
                (Err(_), Some(deadline)) => match self.requests.recv_deadline(deadline) {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            if count + next.items.len() > max {
                self.carried = Some(next);
                break;
            }
            count += next.items.len();
            batch.push(next);
        }
    }
}

/// A batch taken from the queue while the one before it was being written, with what the
/// ledger made of it meanwhile (see [`AheadRules`]); `applied` is `None` when it
/// goes the usual way.
struct Ahead {
    batch: Vec<Request>,
    applied: Option<Applied>,
}

/// A batch's ledger output, computed before its own transaction began: it stands only if the
/// store's epoch at that `begin` is the one the batch before it left.
struct Applied {
    now: Timestamp,
    output: BatchOutput,
}

/// Per request: its commands' results, and the response its seal rendered or replayed.
type Answers = Vec<(Vec<CommandResult>, Option<SealedResponse>)>;

/// Why a batch was not committed, and the batch taken ahead of it, if any (not applied).
struct Failed {
    error: StoreError,
    taken: Option<Vec<Request>>,
    /// What failed was reading for the batch taken ahead, not this batch: it is committed
    /// again without looking ahead, and the other fails (or not) on its own.
    ahead_read: bool,
}

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Failed {
        Failed { error, taken: None, ahead_read: false }
    }
}

/// Whether a batch taken from the queue while `batch` is written may be applied meanwhile,
/// on top of what the ledger made of `batch`, without reads made after `batch` is written.
struct AheadRules {
    /// [`EngineConfig::apply_ahead_min`].
    min: usize,
    /// The client ids of `batch`.
    keys: std::collections::HashSet<ClientKey>,
}

impl AheadRules {
    /// For a batch that writes no rows of its own (no request with an `after`, whose rows a
    /// batch applied ahead could not see).
    fn new(batch: &[&[Item]], min: usize) -> AheadRules {
        AheadRules { min, keys: Ledger::client_keys(batch).into_iter().collect() }
    }

    /// Whether `next` may be applied while the batch is written, from reads made before it
    /// is written. It may when what it reads is either in the ledger's memory as the batch
    /// left it, or in the store and not written by the batch: every command is a charge
    /// (which reads its account, the account's parent and grants, and its client id), no
    /// request is sealed (its stored response would be read) or writes rows of its own, no
    /// client id is in both, and `next` is large enough to be worth a thread.
    fn allow(&self, next: &[Request]) -> bool {
        plain_charges(next, self.min) && {
            let theirs = all_items(next);
            !Ledger::client_keys(&theirs).iter().any(|k| self.keys.contains(k))
        }
    }
}

/// Whether `next` is at least `min` commands, all charges, of requests that are not sealed
/// and write no rows of their own.
fn plain_charges(next: &[Request], min: usize) -> bool {
    let plain = |r: &Request| r.seal.is_none() && r.after.is_none();
    let size: usize = next.iter().map(|r| r.items.len()).sum();
    size >= min
        && next.iter().all(plain)
        && next.iter().flat_map(|r| &r.items).all(|i| matches!(i.command, Command::Charge(_)))
}

/// A batch the ledger's thread took from the queue itself, while the batch before it was
/// written, and the request that did not fit in it.
struct Taken {
    ahead: Ahead,
    carried: Option<Request>,
}

/// Waits for the next batch while `written` is written (until `stop` is dropped), and applies
/// it when [`AheadRules::allow`] and it needs no read at all: every account it charges is in
/// the ledger's memory and every client id's key is above `keys_max`, the largest the store
/// held before `written` (whose own ids the rules exclude). Returns the ledger, and the
/// batch if one came.
#[allow(clippy::too_many_arguments)]
fn wait_and_apply(
    mut ledger: Ledger,
    requests: flume::Receiver<Request>,
    stop: flume::Receiver<()>,
    written: &[&[Item]],
    config: &EngineConfig,
    keys_max: i64,
    clock: &dyn Clock,
) -> (Ledger, Option<Taken>) {
    let first = flume::Selector::new().recv(&requests, Result::ok).recv(&stop, |_| None).wait();
    let Some(first) = first else { return (ledger, None) };
    let mut queue = Queue { requests, carried: None };
    let mut batch = vec![first];
    queue.top_up(&mut batch, config.batch_size_max, None);
    let now = clock.now();
    let applied = {
        let items = all_items(&batch);
        let mut lookups = Lookups::default();
        let unused =
            |k: &ClientKey| matches!(k, ClientKey::Transfer(id) if purse_store::codec::client_key(id) > keys_max);
        let ready = plain_charges(&batch, config.apply_ahead_min)
            && AheadRules::new(written, config.apply_ahead_min).allow(&batch)
            && Ledger::client_keys(&items).iter().all(unused)
            && ledger.missing(&items, now, &lookups).is_empty();
        ready.then(|| Applied { now, output: ledger.apply(&items, now, &mut lookups) })
    };
    (ledger, Some(Taken { ahead: Ahead { batch, applied }, carried: queue.carried }))
}

/// The items of every request of `batch`.
fn all_items(batch: &[Request]) -> Vec<&[Item]> {
    batch.iter().map(|r| r.items.as_slice()).collect()
}

/// The items each request of `batch` has the ledger apply (none for a replayed one).
fn items<'a>(batch: &'a [Request], replayed: &[Option<Replay>]) -> Vec<&'a [Item]> {
    batch.iter().zip(replayed).map(|(r, done)| if done.is_some() { &[][..] } else { r.items.as_slice() }).collect()
}

impl Writer {
    fn run(&mut self, requests: flume::Receiver<Request>) {
        let mut queue = Queue { requests, carried: None };
        let mut ahead: Option<Ahead> = None;
        loop {
            let (batch, applied) = match ahead.take() {
                Some(Ahead { batch, applied: Some(applied) }) => (batch, Some(applied)),
                // Taken early but not applied: what arrived since joins it, as it would have.
                Some(Ahead { mut batch, applied: None }) => {
                    queue.top_up(&mut batch, self.config.batch_size_max, None);
                    (batch, None)
                }
                None => match queue.take(self.config.batch_size_max, self.config.batch_wait, true) {
                    Some(b) => (b, None),
                    None => return, // Every sender is gone and the queue is drained.
                },
            };
            ahead = self.process(batch, applied, Some(&mut queue));
        }
    }

    /// Commits the batch and answers its callers. With `queue`, may take the next batch and
    /// apply it while this one is written; returns it, to be committed next.
    fn process(&mut self, batch: Vec<Request>, applied: Option<Applied>, queue: Option<&mut Queue>) -> Option<Ahead> {
        let now = applied.as_ref().map_or_else(|| self.clock.now(), |a| a.now);
        match self.apply_durably(&batch, now, applied, queue) {
            Ok(ahead) => {
                self.bin.throw(batch.iter().map(|r| r.items.len()).sum(), batch);
                ahead
            }
            Err(Failed { error: e, taken, ahead_read }) => {
                // The cache may hold changes that never reached the store: forget it. A batch
                // taken ahead goes the usual way next.
                self.cache_epoch = None;
                let _ = self.store.rollback();
                let ahead = taken.map(|batch| Ahead { batch, applied: None });
                if ahead_read {
                    // Another batch's reads failed, not this one: commit it on its own.
                    self.process(batch, None, None);
                    return ahead;
                }
                if e.is_unavailable() || batch.len() == 1 {
                    // The database, not a request, is at fault (or the request is alone):
                    // nothing of it was applied, and its callers are told so.
                    self.writable(e.is_unavailable().then_some(&e));
                    for request in &batch {
                        let _ = request.reply.send((Err(EngineError::Store(e.clone())), None));
                    }
                    return ahead;
                }
                // One request's input broke the write: commit the others without it. Halving
                // finds it in a logarithmic number of tries; no caller fails another's.
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                self.process(first, None, None);
                self.process(second, None, None);
                ahead
            }
        }
    }

    /// Records whether the store takes writes, and says so once when it changes.
    fn writable(&mut self, failure: Option<&StoreError>) {
        let was = self.writable.swap(failure.is_none(), Ordering::SeqCst);
        match (was, failure) {
            (true, Some(e)) => eprintln!("{{\"level\":\"error\",\"msg\":\"storage unavailable; writes are refused until it is back\",\"detail\":{:?}}}", e.detail()),
            (false, None) => eprintln!("{{\"level\":\"info\",\"msg\":\"storage available again\"}}"),
            _ => {}
        }
    }

    /// What the store holds of the batch's client ids, with what the batch references loaded
    /// into the ledger (read in the open transaction).
    fn lookups(&mut self, requests: &[&[Item]], now: Timestamp) -> Result<Lookups, StoreError> {
        let mut lookups = Lookups::default();
        let keys = Ledger::client_keys(requests);
        // Every posting of the batch adds its key: grown once, not rehashed as it fills.
        lookups.prior.reserve(keys.len());
        for (key, prior) in self.store.lookup_client_keys(&keys)? {
            lookups.prior.insert(key, prior);
        }
        self.load_missing(requests, now, &mut lookups)?;
        Ok(lookups)
    }

    /// Applies and commits the batch, and answers its callers: per request, its commands'
    /// results and the response its seal rendered (stored in the same transaction) or
    /// replayed. With `queue`, also has the ledger apply the next batch on another thread
    /// while this one is written and committed: one already queued when
    /// [`AheadRules::allow`] (its reads made first, in this transaction), else the first to
    /// arrive meanwhile if it needs no read (see [`wait_and_apply`]). Returns the next batch
    /// taken; on failure, also the batch taken.
    fn apply_durably(
        &mut self,
        batch: &[Request],
        now: Timestamp,
        applied: Option<Applied>,
        queue: Option<&mut Queue>,
    ) -> Result<Option<Ahead>, Failed> {
        let t0 = Instant::now();
        let epoch = self.store.begin()?;
        let tb = Instant::now();
        // What the ledger made of the batch ahead stands only while the store holds what the
        // ledger does: no other process committed since the batch before it.
        let (replayed, output, ahead_of_time) = match applied.filter(|_| self.cache_epoch == Some(epoch)) {
            Some(a) => (vec![None; batch.len()], a.output, true),
            None => {
                let (replayed, output) = self.prepare_and_apply(batch, now, epoch)?;
                (replayed, output, false)
            }
        };
        let t3 = Instant::now();
        let min = self.config.apply_ahead_min;
        let size: usize = batch.iter().map(|r| r.items.len()).sum();
        let plain = batch.iter().all(|r| r.after.is_none());
        let (finished, ahead, lost_cache) = match queue {
            Some(queue) if plain => match queue.take(self.config.batch_size_max, Duration::ZERO, false) {
                Some(next) if plain_charges(&next, min) && AheadRules::new(&all_items(batch), min).allow(&next) => {
                    let next_now = self.clock.now();
                    let requests = all_items(&next);
                    let lookups = match self.lookups(&requests, next_now) {
                        Ok(l) => l,
                        Err(error) => return Err(Failed { error, taken: Some(next), ahead_read: true }),
                    };
                    drop(requests);
                    self.finish_applying_ahead(batch, &replayed, output, now, next, next_now, lookups)
                }
                // Nothing queued yet: the next batch of a large one usually arrives while it
                // is written (its caller was answered one batch ago).
                None if size >= min => match self.store.client_keys_max() {
                    Some(keys_max) => self.finish_waiting(batch, &replayed, output, now, queue, keys_max),
                    None => (self.finish(batch, &replayed, output, now), None, false),
                },
                next => (
                    self.finish(batch, &replayed, output, now),
                    next.map(|batch| Ahead { batch, applied: None }),
                    false,
                ),
            },
            Some(queue) => {
                let next = queue.take(self.config.batch_size_max, Duration::ZERO, false);
                (self.finish(batch, &replayed, output, now), next.map(|batch| Ahead { batch, applied: None }), false)
            }
            None => (self.finish(batch, &replayed, output, now), None, false),
        };
        if let Err(error) = finished {
            // What the ledger made of the batch taken ahead is thrown away with the cache.
            return Err(Failed { error, taken: ahead.map(|a| a.batch), ahead_read: false });
        }
        if ahead.as_ref().is_some_and(|a| a.applied.is_some()) {
            self.applied_ahead.fetch_add(1, Ordering::Relaxed);
        }
        if self.trace {
            eprintln!(
                "begin {:?} {} {:?} write and commit {:?}",
                tb - t0,
                if ahead_of_time { "applied ahead, checked" } else { "read and applied" },
                t3 - tb,
                t3.elapsed()
            );
        }
        self.cache_epoch = Some(epoch + 1);
        if lost_cache || self.ledger.accounts.len() > self.config.cached_accounts_max {
            self.cache_epoch = None;
        }
        if self.ledger.parties.len() > self.config.cached_parties_max {
            // Parties are loaded on demand (see `Ledger::missing`); forgetting them is safe.
            self.ledger.parties = Default::default();
        }
        Ok(ahead)
    }

    /// Writes and commits the batch (answering its callers) while the ledger applies `next`,
    /// read for already, on another thread. Returns the commit's result, `next` with what the
    /// ledger made of it, and whether the ledger was lost (no thread to be had).
    #[allow(clippy::too_many_arguments)]
    fn finish_applying_ahead(
        &mut self,
        batch: &[Request],
        replayed: &[Option<Replay>],
        output: BatchOutput,
        now: Timestamp,
        next: Vec<Request>,
        next_now: Timestamp,
        mut lookups: Lookups,
    ) -> (Result<(), StoreError>, Option<Ahead>, bool) {
        let ledger = std::mem::take(&mut self.ledger);
        let (finished, applied) = std::thread::scope(|s| {
            let requests = all_items(&next);
            let apply = std::thread::Builder::new().name("purse-apply".into()).spawn_scoped(s, move || {
                let mut ledger = ledger;
                let output = ledger.apply(&requests, next_now, &mut lookups);
                (ledger, output)
            });
            let finished = self.finish(batch, replayed, output, now);
            // No thread to be had (the system's limit): the ledger went with the closure, and
            // is loaded again for the next batch, which goes the usual way.
            let applied = apply.ok().map(|a| a.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            (finished, applied)
        });
        match applied {
            Some((ledger, output)) => {
                self.ledger = ledger;
                (finished, Some(Ahead { batch: next, applied: Some(Applied { now: next_now, output }) }), false)
            }
            None => (finished, Some(Ahead { batch: next, applied: None }), true),
        }
    }

    /// Writes and commits the batch (answering its callers) while the ledger's thread waits
    /// for the next batch and applies it if it can without reading (see [`wait_and_apply`]).
    #[allow(clippy::too_many_arguments)]
    fn finish_waiting(
        &mut self,
        batch: &[Request],
        replayed: &[Option<Replay>],
        output: BatchOutput,
        now: Timestamp,
        queue: &mut Queue,
        keys_max: i64,
    ) -> (Result<(), StoreError>, Option<Ahead>, bool) {
        let ledger = std::mem::take(&mut self.ledger);
        let (requests, clock, config) = (queue.requests.clone(), self.clock.clone(), self.config.clone());
        let (finished, waited) = std::thread::scope(|s| {
            let (stop, stopped) = flume::bounded::<()>(0);
            // The client ids of this batch are gathered by the other thread, and only if a
            // batch comes: the writer's time is the write's.
            let written = all_items(batch);
            let wait = std::thread::Builder::new().name("purse-apply".into()).spawn_scoped(s, move || {
                wait_and_apply(ledger, requests, stopped, &written, &config, keys_max, clock.as_ref())
            });
            let finished = self.finish(batch, replayed, output, now);
            drop(stop);
            let waited = wait.ok().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            (finished, waited)
        });
        match waited {
            Some((ledger, taken)) => {
                self.ledger = ledger;
                let ahead = taken.map(|Taken { ahead, carried }| {
                    queue.carried = carried;
                    ahead
                });
                (finished, ahead, false)
            }
            None => (finished, None, true),
        }
    }

    /// Reads what the batch needs in the open transaction (`epoch`) and applies it.
    fn prepare_and_apply(
        &mut self,
        batch: &[Request],
        now: Timestamp,
        epoch: u64,
    ) -> Result<(Vec<Option<Replay>>, BatchOutput), StoreError> {
        if self.cache_epoch != Some(epoch) {
            self.reload()?;
        }
        self.evict();
        // Retries of sealed requests answered before: their stored response, nothing applied.
        let replayed = self.replays(batch)?;
        let requests = items(batch, &replayed);
        let mut lookups = self.lookups(&requests, now)?;
        let output = self.ledger.apply(&requests, now, &mut lookups);
        Ok((replayed, output))
    }

    /// Writes the batch's output and its requests' rows and responses, commits, and answers
    /// the batch's callers.
    fn finish(
        &mut self,
        batch: &[Request],
        replayed: &[Option<Replay>],
        mut output: BatchOutput,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let evented = !output.events.is_empty();
        self.store.write(&output)?;
        self.after(batch, replayed, &output.results)?;
        let responses = self.seal(batch, replayed, &output.results, now)?;
        let mut results = std::mem::take(&mut output.results).into_iter();
        let answers: Answers = items(batch, replayed)
            .iter()
            .zip(responses.into_iter().zip(replayed.iter().cloned()))
            .map(|(items, (rendered, replay))| {
                let answer = match replay {
                    Some(Replay { response: (status, body), replayed }) => {
                        Some(SealedResponse { status, body, replayed })
                    }
                    None => rendered.map(|(status, body)| SealedResponse { status, body, replayed: false }),
                };
                (results.by_ref().take(items.len()).collect(), answer)
            })
            .collect();
        self.store.commit()?;
        if evented {
            self.events.bump();
        }
        self.writable(None);
        for (request, (mine, response)) in batch.iter().zip(answers) {
            let _ = request.reply.send((Ok(mine), response));
        }
        self.bin.throw(output.transfers.len(), output);
        Ok(())
    }

    /// For each sealed request whose key was stored before: the stored response when the
    /// request is the same, its `reused` answer when not.
    fn replays(&mut self, batch: &[Request]) -> Result<Vec<Option<Replay>>, StoreError> {
        let keys: Vec<(u64, &str)> =
            batch.iter().filter_map(|r| r.seal.as_ref()).map(|s| (s.api_key, s.key.as_str())).collect();
        let mut answers = vec![None; batch.len()];
        if keys.is_empty() {
            return Ok(answers);
        }
        let stored = self.store.stored_responses(&keys)?;
        if stored.is_empty() {
            return Ok(answers);
        }
        for (answer, request) in answers.iter_mut().zip(batch) {
            let Some(seal) = &request.seal else { continue };
            if let Some(r) = stored.iter().find(|r| r.api_key == seal.api_key && r.key == seal.key) {
                *answer = Some(if r.request_hash == seal.request_hash {
                    Replay { response: (r.status, r.body.clone()), replayed: true }
                } else {
                    Replay { response: seal.reused.clone(), replayed: false }
                });
            }
        }
        Ok(answers)
    }

    /// Writes the rows of requests that carry them, in the open transaction.
    fn after(
        &mut self,
        batch: &[Request],
        replayed: &[Option<Replay>],
        results: &[CommandResult],
    ) -> Result<(), StoreError> {
        let mut offset = 0;
        for (request, replay) in batch.iter().zip(replayed) {
            let len = if replay.is_some() { 0 } else { request.items.len() };
            let mine = &results[offset..offset + len];
            offset += len;
            if let (Some(after), None) = (&request.after, replay) {
                self.store.in_batch(&mut |db| after(mine, db))?;
            }
        }
        Ok(())
    }

    /// Renders the responses of sealed requests not replayed and stores them in the open
    /// transaction; now and then also forgets those past their retention.
    fn seal(
        &mut self,
        batch: &[Request],
        replayed: &[Option<Replay>],
        results: &[CommandResult],
        now: Timestamp,
    ) -> Result<Vec<Option<Response>>, StoreError> {
        let mut rendered = Vec::with_capacity(batch.len());
        let mut stored = Vec::new();
        let mut offset = 0;
        for (request, replay) in batch.iter().zip(replayed) {
            let seal = request.seal.as_ref().filter(|_| replay.is_none());
            let len = if replay.is_some() { 0 } else { request.items.len() };
            let mine = &results[offset..offset + len];
            offset += len;
            rendered.push(seal.map(|seal| {
                let (status, body) = (seal.render)(mine);
                stored.push(StoredResponse {
                    api_key: seal.api_key,
                    key: seal.key.clone(),
                    request_hash: seal.request_hash.clone(),
                    status,
                    body: body.clone(),
                    created_at: now,
                });
                (status, body)
            }));
        }
        if !stored.is_empty() {
            self.store.write_responses(&stored)?;
        }
        if self.purged_at.is_none_or(|at| now.0 - at.0 >= PURGE_INTERVAL_US) {
            let retention = i64::try_from(self.config.response_retention.as_micros()).unwrap_or(i64::MAX);
            self.store.purge_responses(Timestamp(now.0.saturating_sub(retention)))?;
            self.purged_at = Some(now);
        }
        Ok(rendered)
    }

    /// Loads what the batch references until nothing is missing. Each round can reveal
    /// more (a reversal's accounts, a credit account's parent); three rounds suffice.
    fn load_missing(&mut self, requests: &[&[Item]], now: Timestamp, lookups: &mut Lookups) -> Result<(), StoreError> {
        for _ in 0..4 {
            let missing = self.ledger.missing(requests, now, lookups);
            if missing.is_empty() {
                return Ok(());
            }
            let mut accounts = self.store.load_accounts(&missing.accounts)?;
            self.store.attach_grants(&mut accounts)?;
            let found: purse_core::ledger::FastSet<AccountId> = accounts.iter().map(|a| a.id).collect();
            lookups.absent_accounts.extend(missing.accounts.iter().filter(|id| !found.contains(id)));
            self.ledger.accounts.extend(accounts.into_iter().map(|a| (a.id, Box::new(a))));
            let parties = self.store.load_parties(&missing.parties)?;
            let found: purse_core::ledger::FastSet<_> = parties.iter().map(|p| p.id).collect();
            lookups.absent_parties.extend(missing.parties.iter().filter(|id| !found.contains(id)));
            self.ledger.parties.extend(parties.into_iter().map(|p| (p.id, p)));
            let holds = self.store.load_holds(&missing.holds)?;
            let found: purse_core::ledger::FastSet<_> = holds.iter().map(|h| h.id).collect();
            lookups.absent_holds.extend(missing.holds.iter().filter(|id| !found.contains(id)));
            lookups.holds.extend(holds.into_iter().map(|h| (h.id, h)));
            let transfers = self.store.load_transfers(&missing.transfers)?;
            let found: purse_core::ledger::FastSet<_> = transfers.iter().map(|(t, _)| t.id).collect();
            lookups.absent_transfers.extend(missing.transfers.iter().filter(|id| !found.contains(id)));
            lookups.transfers.extend(transfers.into_iter().map(|(t, by)| (t.id, (t, by))));
        }
        Err(StoreError::Other("references did not resolve in four rounds".into()))
    }

    /// Forgets what [`EngineConfig::eviction`] says: never anything in production.
    fn evict(&mut self) {
        let seed = match self.config.eviction {
            Eviction::Nothing => return,
            Eviction::Everything => None,
            Eviction::Random { seed } => Some(seed),
        };
        self.evictions += 1;
        let mut state = seed.map(|s| s ^ self.evictions.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut keep = move || match state.as_mut() {
            None => false,
            Some(x) => {
                // xorshift64: a coin per record, reproducible from the seed.
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x & 1 == 0
            }
        };
        self.ledger.accounts.retain(|_, a| a.is_system() || keep());
        self.ledger.parties.retain(|_, _| keep());
    }

    fn reload(&mut self) -> Result<(), StoreError> {
        let base = self.store.load_base()?;
        let mut ledger = Ledger::default();
        ledger.next = base.next;
        for c in base.currencies {
            ledger.currencies.insert(c.code, c);
        }
        for a in base.system_accounts {
            if let AccountKind::System(role) = a.kind {
                ledger.system_accounts.insert((a.currency, role), a.id);
            }
            ledger.accounts.insert(a.id, Box::new(a));
        }
        ledger.open_holds = base.open_holds.into_iter().map(|h| (h.id, h)).collect();
        self.ledger = ledger;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Bin;
    use std::sync::mpsc;

    /// Says on which thread it was dropped.
    struct Tell(mpsc::Sender<Option<String>>);

    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[test]
    fn a_large_batch_is_freed_on_the_bins_thread_and_a_small_one_where_it_is() {
        let bin = Bin::start();
        let (told, tells) = mpsc::channel();
        bin.throw(Bin::ITEMS_MIN, Tell(told.clone()));
        assert_eq!(tells.recv().unwrap().as_deref(), Some("purse-free"));
        bin.throw(Bin::ITEMS_MIN - 1, Tell(told));
        assert_eq!(tells.recv().unwrap(), std::thread::current().name().map(str::to_owned));
    }
}
