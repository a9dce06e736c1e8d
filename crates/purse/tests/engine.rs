//! The engine's own promises: bounded queue with back-pressure, bounded batches, answers
//! only after durability, and a failed store write that leaves nothing half-applied.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use purse_core::{
    AccountId, BatchOutput, ClientKey, Command, Hold, HoldId, Item, Party, PartyId, Prior, Transfer, TransferId,
};
use purse_engine::{Engine, EngineConfig, EngineError, ManualClock};
use purse_store::{BaseState, Store, StoreError, StoreResult};

/// A store that can hold the writer at `begin`, run something just before a given `begin`
/// and at the start of each `write`, fail the next `write`, refuse (as a database refuses a value it
/// cannot store) any write holding a charge for the service "poison", and any look-up of the
/// client id "poison-read".
struct Controlled {
    inner: Box<dyn Store>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    before_begin: BeforeBegin,
    on_write: OnWrite,
}

/// What to run at the start of every `write` of a batch's rows.
type OnWrite = Arc<Mutex<Option<Box<dyn FnMut() + Send>>>>;

/// The engine's clock, counting who asks it the time: while the writer waits in a store call,
/// only the ledger's other thread does.
struct CountingClock {
    inner: ManualClock,
    calls: Arc<AtomicU64>,
}

impl purse_engine::Clock for CountingClock {
    fn now(&self) -> purse_core::Timestamp {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.now()
    }
}

/// What to run just before the n-th `begin` (counted from 1), and the begins counted so far.
type BeforeBegin = Arc<Mutex<(u64, Option<(u64, Box<dyn FnOnce() + Send>)>)>>;

impl Store for Controlled {
    fn migrate(&mut self) -> StoreResult<()> {
        self.inner.migrate()
    }
    fn begin(&mut self) -> StoreResult<u64> {
        let (open, changed) = &*self.gate;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            self.waiting.store(true, Ordering::SeqCst);
            is_open = changed.wait(is_open).unwrap();
        }
        drop(is_open);
        let due = {
            let mut hook = self.before_begin.lock().unwrap();
            hook.0 += 1;
            let n = hook.0;
            if hook.1.as_ref().is_some_and(|(at, _)| *at == n) {
                hook.1.take().map(|(_, f)| f)
            } else {
                None
            }
        };
        if let Some(f) = due {
            f();
        }
        self.inner.begin()
    }
    fn load_base(&mut self) -> StoreResult<BaseState> {
        self.inner.load_base()
    }
    fn load_accounts(&mut self, ids: &[AccountId]) -> StoreResult<Vec<purse_core::Account>> {
        self.inner.load_accounts(ids)
    }
    fn load_parties(&mut self, ids: &[PartyId]) -> StoreResult<Vec<Party>> {
        self.inner.load_parties(ids)
    }
    fn load_holds(&mut self, ids: &[HoldId]) -> StoreResult<Vec<Hold>> {
        self.inner.load_holds(ids)
    }
    fn load_transfers(&mut self, ids: &[TransferId]) -> StoreResult<Vec<(Transfer, Option<TransferId>)>> {
        self.inner.load_transfers(ids)
    }
    fn lookup_client_keys(&mut self, keys: &[ClientKey]) -> StoreResult<Vec<(ClientKey, Prior)>> {
        if keys.iter().any(|k| matches!(k, ClientKey::Transfer(id) if id.as_str() == "poison-read")) {
            return Err(StoreError::Other("the database refused to read a value of the batch".into()));
        }
        self.inner.lookup_client_keys(keys)
    }
    fn write(&mut self, output: &BatchOutput) -> StoreResult<()> {
        if let Some(f) = self.on_write.lock().unwrap().as_mut() {
            f();
        }
        if output.transfers.iter().any(|t| t.service.as_deref() == Some("poison")) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Other("the database refused a value of the batch".into()));
        }
        self.inner.write(output)?;
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Other("injected failure after the rows were written".into()));
        }
        Ok(())
    }
    fn commit(&mut self) -> StoreResult<()> {
        self.inner.commit()
    }
    fn client_keys_max(&self) -> Option<i64> {
        self.inner.client_keys_max()
    }
    fn rollback(&mut self) -> StoreResult<()> {
        self.inner.rollback()
    }
    fn write_responses(&mut self, responses: &[purse_store::StoredResponse]) -> StoreResult<()> {
        self.inner.write_responses(responses)
    }
    fn stored_responses(&mut self, keys: &[(u64, &str)]) -> StoreResult<Vec<purse_store::StoredResponse>> {
        self.inner.stored_responses(keys)
    }
    fn purge_responses(&mut self, before: purse_core::Timestamp) -> StoreResult<u64> {
        self.inner.purge_responses(before)
    }

    fn in_batch(
        &mut self,
        f: &mut dyn FnMut(&mut dyn purse_store::Db) -> Result<(), purse_store::StoreError>,
    ) -> Result<(), purse_store::StoreError> {
        self.inner.in_batch(f)
    }
}

struct Rig {
    engine: Arc<Engine>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    before_begin: BeforeBegin,
    on_write: OnWrite,
    clock_calls: Arc<AtomicU64>,
    h: Harness,
}

fn rig(config: EngineConfig) -> Rig {
    rig_on(&sqlite_url(), config)
}

fn rig_on(url: &str, config: EngineConfig) -> Rig {
    // A harness to create the currency and customers, then a controlled engine on the same database.
    let h = Harness::on(url);
    let opened = purse::open_store(url).unwrap();
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let waiting = Arc::new(AtomicBool::new(false));
    let fail_next_write = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let before_begin: BeforeBegin = Arc::new(Mutex::new((0, None)));
    let on_write: OnWrite = Arc::new(Mutex::new(None));
    let controlled = Controlled {
        inner: opened.store,
        gate: gate.clone(),
        waiting: waiting.clone(),
        fail_next_write: fail_next_write.clone(),
        refused: refused.clone(),
        before_begin: before_begin.clone(),
        on_write: on_write.clone(),
    };
    let clock_calls = Arc::new(AtomicU64::new(0));
    let clock = Arc::new(CountingClock { inner: ManualClock::new(h.now()), calls: clock_calls.clone() });
    let engine = Arc::new(Engine::start(Box::new(controlled), opened.reader, clock, config));
    Rig { engine, gate, waiting, fail_next_write, refused, before_begin, on_write, clock_calls, h }
}

fn set_gate(gate: &(Mutex<bool>, Condvar), open: bool) {
    *gate.0.lock().unwrap() = open;
    gate.1.notify_all();
}

#[test]
fn a_full_queue_pushes_back_instead_of_growing() {
    let config = EngineConfig { queue_len_max: 2, ..EngineConfig::default() };
    let r = rig(config);
    let a = r.h.customer("0");
    set_gate(&r.gate, false);
    let submit = |engine: Arc<Engine>, cmd| std::thread::spawn(move || engine.submit(vec![Item::single(cmd)]));
    // The writer takes the first request and blocks in `begin`.
    let first = submit(r.engine.clone(), r.h.charge_cmd(a, "1.00", false));
    while !r.waiting.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // Two more fill the queue.
    let queued: Vec<_> = (0..2).map(|_| submit(r.engine.clone(), r.h.charge_cmd(a, "1.00", false))).collect();
    while r.engine.queued() < 2 {
        std::thread::yield_now();
    }
    assert_eq!(r.engine.try_submit(vec![Item::single(r.h.charge_cmd(a, "1.00", false))]), Err(EngineError::Overloaded));
    set_gate(&r.gate, true);
    assert!(first.join().unwrap().unwrap()[0].is_ok());
    for q in queued {
        assert!(q.join().unwrap().unwrap()[0].is_ok());
    }
    assert_eq!(r.engine.reader().account(a).unwrap().unwrap().balance.0, -300);
}

#[test]
fn a_request_larger_than_a_batch_is_refused_whole() {
    let r = rig(EngineConfig { batch_size_max: 4, ..EngineConfig::default() });
    let a = r.h.customer("0");
    let items: Vec<Item> = (0..5).map(|_| Item::single(r.h.charge_cmd(a, "1.00", false))).collect();
    assert_eq!(r.engine.submit(items), Err(EngineError::BatchTooLarge { max: 4 }));
    assert_eq!(r.engine.reader().account(a).unwrap().unwrap().balance.0, 0);
}

#[test]
fn a_failed_store_write_applies_nothing_and_the_engine_recovers() {
    let r = rig(EngineConfig::default());
    let a = r.h.customer("0");
    let charge = r.h.charge_cmd(a, "2.50", false);
    r.fail_next_write.store(true, Ordering::SeqCst);
    let failed = r.engine.submit(vec![Item::single(charge.clone())]);
    assert!(matches!(failed, Err(EngineError::Store(_))), "{failed:?}");
    let reader = r.engine.reader();
    assert_eq!(reader.account(a).unwrap().unwrap().balance.0, 0);
    assert_eq!(reader.transfer_by_client_id(client_id(&charge)).unwrap(), None);
    // The same command again posts once (the in-memory state was not trusted).
    let again = r.engine.submit(vec![Item::single(charge.clone())]).unwrap();
    assert!(matches!(again[0], Ok(purse_core::Outcome::Posted { replayed: false, .. })));
    assert_eq!(reader.account(a).unwrap().unwrap().balance.0, -250);
    assert!(reader.audit().unwrap().is_consistent());
}

fn client_id(command: &purse_core::Command) -> &purse_core::ClientId {
    match command {
        purse_core::Command::Charge(c) => &c.client_id,
        _ => unreachable!(),
    }
}

#[test]
fn many_callers_are_grouped_into_few_batches_and_all_answered() {
    let r = rig(EngineConfig::default());
    let a = r.h.customer("0");
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let engine = r.engine.clone();
            let commands: Vec<_> = (0..50).map(|_| r.h.charge_cmd(a, "0.01", false)).collect();
            std::thread::spawn(move || {
                for c in commands {
                    assert!(engine.execute(c).unwrap().is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(r.engine.reader().account(a).unwrap().unwrap().balance.0, -800);
    assert!(r.engine.reader().audit().unwrap().is_consistent());
}

/// Issue 18: a request whose write the database refuses fails alone. The batch it arrived in,
/// busy with another tenant's requests, is retried without it (halving until it is found),
/// and every other request is committed; on both backends.
#[test]
fn issue_18_a_request_the_database_refuses_fails_alone_and_every_other_is_committed() {
    for url in both_backends("issue_18_isolation") {
        let r = rig_on(&url, EngineConfig::default());
        let (theirs, mine) = (r.h.customer("1000.00"), r.h.customer("1000.00"));
        // Hold the writer on a first request, so that everything after it forms one batch.
        set_gate(&r.gate, false);
        let engine = r.engine.clone();
        let first = r.h.charge_cmd(mine, "0.01", false);
        let first = std::thread::spawn(move || engine.submit(vec![Item::single(first)]));
        while !r.waiting.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let submit = |command| {
            let engine = r.engine.clone();
            std::thread::spawn(move || engine.submit(vec![Item::single(command)]))
        };
        let mut poison = r.h.charge_cmd(theirs, "1.00", false);
        if let purse_core::Command::Charge(c) = &mut poison {
            c.service = Some("poison".into());
        }
        let mut good = Vec::new();
        for i in 0..100 {
            good.push(submit(r.h.charge_cmd(mine, "0.01", false)));
            if i == 37 {
                good.push(submit(poison.clone()));
            }
        }
        while r.engine.queued() < 101 {
            std::thread::yield_now();
        }
        set_gate(&r.gate, true);
        assert!(first.join().unwrap().unwrap()[0].is_ok());
        let poisoned = good.remove(38).join().unwrap();
        assert!(matches!(poisoned, Err(EngineError::Store(StoreError::Other(_)))), "{url}: {poisoned:?}");
        for g in good {
            assert!(g.join().unwrap().unwrap()[0].is_ok(), "{url}: another tenant's request failed");
        }
        assert!(r.refused.load(Ordering::SeqCst) > 1, "the batch was retried without the request that broke it");
        let reader = r.engine.reader();
        assert_eq!(reader.account(mine).unwrap().unwrap().balance.0, -101);
        assert_eq!(reader.account(theirs).unwrap().unwrap().balance.0, 0);
        assert!(reader.audit().unwrap().is_consistent());
    }
}

/// Holds the writer at `begin` on a first charge, queues `requests` in this order (each its
/// own batch when it fills `batch_size_max`), lets the writer go, and returns the first
/// charge's answer and each request's.
#[allow(clippy::type_complexity)]
fn queued_in_order(r: &Rig, first: AccountId, requests: Vec<Vec<Item>>) -> (Reply, Vec<Reply>) {
    set_gate(&r.gate, false);
    r.waiting.store(false, Ordering::SeqCst);
    let engine = r.engine.clone();
    let held = r.h.charge_cmd(first, "0.01", false);
    let held = std::thread::spawn(move || engine.submit(vec![Item::single(held)]));
    while !r.waiting.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let mut answers = Vec::new();
    for (n, items) in requests.into_iter().enumerate() {
        let engine = r.engine.clone();
        answers.push(std::thread::spawn(move || engine.submit(items)));
        while r.engine.queued() < n + 1 {
            std::thread::yield_now();
        }
    }
    set_gate(&r.gate, true);
    (held.join().unwrap(), answers.into_iter().map(|a| a.join().unwrap()).collect())
}

type Reply = Result<Vec<purse_core::CommandResult>, EngineError>;

fn charge_with(h: &Harness, client_id: &str, account: AccountId, amount: &str, refuse: bool) -> Command {
    let mut c = h.charge_cmd(account, amount, refuse);
    if let Command::Charge(charge) = &mut c {
        charge.client_id = cid(client_id);
    }
    c
}

/// A cash payment of `amount` into `account`.
fn cash(h: &Harness, client_id: &str, account: AccountId, amount: &str) -> Command {
    Command::Payment {
        client_id: cid(client_id),
        account,
        money: h.usd(amount),
        method: purse_core::PaymentMethod::Cash,
        metadata: None,
    }
}

/// A reproducible generator: each call gives a number below its argument (xorshift64).
fn xorshift(mut x: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

/// A charge of the request `back` requests before the end of `requests` (none when `back` is
/// 0 or it has none), picked with `next`: as it was (a replay) or, one time in three, its
/// client id with one more cent.
fn sent_again(requests: &[Vec<Item>], back: usize, next: &mut impl FnMut(u64) -> u64) -> Option<Command> {
    let earlier = requests.len().checked_sub(back).filter(|_| back > 0).map(|k| &requests[k]);
    let charges: Vec<&purse_core::NewCharge> = earlier
        .into_iter()
        .flatten()
        .filter_map(|i| match &i.command {
            Command::Charge(c) => Some(c),
            _ => None,
        })
        .collect();
    if charges.is_empty() {
        return None;
    }
    let mut again = charges[next(charges.len() as u64) as usize].clone();
    if next(3) == 0 {
        again.money.amount.0 += 1;
    }
    Some(Command::Charge(again))
}

/// Issue 22: while a batch is written, the writer has the ledger apply the next batch of
/// charges on another thread. The answers, balances and journal must be exactly those of
/// the same queue applied one batch after another: charges refused for want of money,
/// linked chains that fail whole, client ids used again (in the batch before, two batches
/// before, with other fields), unknown accounts, and payments in between.
#[test]
fn issue_22_charges_applied_while_the_batch_before_is_written_answer_as_one_after_another() {
    for backend in ["sqlite", "postgres"] {
        let mut runs = Vec::new();
        for ahead in [true, false] {
            let url = if backend == "sqlite" { sqlite_url() } else { pg_url(&format!("issue_22_ahead_{ahead}")) };
            let config = EngineConfig {
                batch_size_max: 8,
                apply_ahead_min: if ahead { 1 } else { usize::MAX },
                ..EngineConfig::default()
            };
            let r = rig_on(&url, config);
            let prepaid = r.h.customer("0");
            assert!(r.h.pay(prepaid, "2.00").is_ok());
            let postpaid = r.h.customer("1.50");
            let empty = r.h.customer("0");
            let accounts = [prepaid, postpaid, empty, AccountId(999_999)];
            let journal =
                |a| r.engine.reader().journal(purse_store::JournalQuery { account: a, before: None, limit: 1 });
            let first_posting = journal(prepaid).unwrap()[0].id.0 + 2;
            let mut next = xorshift(0x2545_f491_4f6c_dd1d);
            let mut requests: Vec<Vec<Item>> = Vec::new();
            let mut reversals: Vec<(usize, usize)> = Vec::new();
            for req in 0..80u64 {
                if req % 9 == 4 {
                    requests.push(vec![Item::single(cash(&r.h, &format!("pay-{req}"), prepaid, "0.40"))]);
                    continue;
                }
                let mut items = Vec::new();
                for i in 0..(1 + next(7)) {
                    let account = accounts[next(4) as usize];
                    let amount = format!("0.{:02}", 1 + next(30));
                    let mut command = charge_with(&r.h, &format!("c-{req}-{i}"), account, &amount, next(2) == 0);
                    // Now and then a charge of the request before, or of two before: sent
                    // again as it was (a replay), or its client id with another amount.
                    let back = match next(24) {
                        0 => 1,
                        1..=3 => 2,
                        _ => 0,
                    };
                    if let Some(again) = sent_again(&requests, back, &mut next) {
                        command = again;
                    }
                    let linked = next(5) == 0;
                    items.push(Item { command, linked });
                }
                // Now and then a reversal of a recent posting: perhaps one of the request
                // before, which is in no store yet while this one would be applied ahead.
                if next(4) == 0 {
                    let recent = first_posting + (27 * req / 20).saturating_sub(next(4));
                    let reverse = Command::Reverse {
                        client_id: cid(&format!("reverse-{req}")),
                        transfer: purse_core::TransferId(recent),
                        metadata: None,
                        note: None,
                    };
                    reversals.push((requests.len(), items.len()));
                    items.push(Item::single(reverse));
                }
                // A chain never reaches past the end of its request.
                items.last_mut().unwrap().linked = false;
                requests.push(items);
            }
            let (held, answers) = queued_in_order(&r, prepaid, requests);
            assert!(held.is_ok());
            let answers: Vec<_> = answers.into_iter().map(|a| a.expect("the engine answers")).collect();
            let reader = r.engine.reader();
            let balances: Vec<i64> =
                accounts[..3].iter().map(|a| reader.account(*a).unwrap().unwrap().balance.0).collect();
            let journal: Vec<_> = accounts[..3]
                .iter()
                .map(|a| reader.journal(purse_store::JournalQuery { account: *a, before: None, limit: 1000 }).unwrap())
                .collect();
            assert!(reader.audit().unwrap().is_consistent(), "{backend}");
            if ahead {
                assert!(
                    r.engine.applied_ahead() >= 10,
                    "{backend}: batches were applied ahead: {}",
                    r.engine.applied_ahead()
                );
                eprintln!("{backend}: {} batches applied ahead", r.engine.applied_ahead());
            } else {
                assert_eq!(r.engine.applied_ahead(), 0);
            }
            let reversed = reversals.iter().filter(|(req, item)| answers[*req][*item].is_ok()).count();
            assert!(reversed >= 3, "{backend}: {reversed} postings were reversed");
            runs.push((answers, balances, journal));
        }
        let (sequential, ahead) = (runs.pop().unwrap(), runs.pop().unwrap());
        assert_eq!(ahead.0, sequential.0, "{backend}: the answers differ");
        assert_eq!(ahead.1, sequential.1, "{backend}: the balances differ");
        assert_eq!(ahead.2, sequential.2, "{backend}: the journals differ");
        assert!(ahead.0.iter().flatten().any(|a| a.is_err()), "{backend}: some charges were refused");
        assert!(ahead.0.iter().flatten().any(|a| matches!(a, Ok(purse_core::Outcome::Posted { replayed: true, .. }))));
    }
}

/// Issue 22: when the store refuses the batch before, what the ledger made of the next batch
/// on top of it is thrown away: the next batch is applied again to what the store holds.
#[test]
fn issue_22_a_batch_applied_on_top_of_one_the_store_refused_is_applied_again() {
    for url in both_backends("issue_22_refused") {
        let r = rig_on(&url, EngineConfig { batch_size_max: 300, apply_ahead_min: 1, ..EngineConfig::default() });
        let wallet = r.h.customer("0");
        assert!(r.h.pay(wallet, "5.00").is_ok());
        // 3.00 of charges, then one the store refuses: the whole request fails.
        let mut refused: Vec<Item> = (0..299).map(|_| Item::single(r.h.charge_cmd(wallet, "0.01", true))).collect();
        let mut poison = r.h.charge_cmd(wallet, "0.01", true);
        if let Command::Charge(c) = &mut poison {
            c.service = Some("poison".into());
        }
        refused.push(Item::single(poison));
        // 4.00 that fits only if the refused 3.00 never happened.
        let after: Vec<Item> = (0..200).map(|_| Item::single(r.h.charge_cmd(wallet, "0.02", true))).collect();
        let (held, answers) = queued_in_order(&r, wallet, vec![refused, after]);
        assert!(held.is_ok());
        assert!(r.engine.applied_ahead() >= 1, "{url}: the second request was applied ahead");
        assert!(matches!(answers[0], Err(EngineError::Store(_))), "{url}: {:?}", answers[0]);
        let after = answers[1].as_ref().expect("the second request is answered");
        assert!(after.iter().all(|a| a.is_ok()), "{url}: a charge was refused as if the refused request had spent");
        let reader = r.engine.reader();
        assert_eq!(reader.account(wallet).unwrap().unwrap().balance.0, 500 - 1 - 400);
        assert!(reader.audit().unwrap().is_consistent());
    }
}

/// Issue 22: when another process commits between the batch before and the next one, what
/// the ledger made of the next batch ahead is thrown away: it is applied again to what the
/// store holds now, and spends no money the other process took.
#[test]
fn issue_22_a_batch_applied_ahead_is_applied_again_when_another_process_wrote_meanwhile() {
    for url in both_backends("issue_22_other_process") {
        let r = rig_on(&url, EngineConfig { batch_size_max: 100, apply_ahead_min: 1, ..EngineConfig::default() });
        let wallet = r.h.customer("0");
        assert!(r.h.pay(wallet, "5.00").is_ok());
        let first: Vec<Item> = (0..100).map(|_| Item::single(r.h.charge_cmd(wallet, "0.01", true))).collect();
        let second: Vec<Item> = (0..100).map(|_| Item::single(r.h.charge_cmd(wallet, "0.01", true))).collect();
        // Just before the third transaction (the second request's), another process spends
        // 3.50 of what is left (4.00 - 0.01 held - 1.00 first).
        let other = r.h.charge_cmd(wallet, "3.50", true);
        let other_engine = purse::start_engine(&url, r.h.clock.clone(), EngineConfig::default()).unwrap();
        let other_engine = Arc::new(other_engine);
        let by_other = other_engine.clone();
        let mut hook = r.before_begin.lock().unwrap();
        hook.1 = Some((hook.0 + 3, Box::new(move || assert!(by_other.execute(other).unwrap().is_ok()))));
        drop(hook);
        let (held, answers) = queued_in_order(&r, wallet, vec![first, second]);
        assert!(held.is_ok());
        assert!(r.engine.applied_ahead() >= 2, "{url}: both requests were applied ahead");
        assert!(answers[0].as_ref().unwrap().iter().all(|a| a.is_ok()));
        let second = answers[1].as_ref().unwrap();
        let posted = second.iter().filter(|a| a.is_ok()).count();
        // 5.00 - 0.01 - 1.00 - 3.50 = 0.49 left for the second request.
        assert_eq!(posted, 49, "{url}: the second request spent money the other process took");
        let reader = r.engine.reader();
        assert_eq!(reader.account(wallet).unwrap().unwrap().balance.0, 0);
        assert!(reader.audit().unwrap().is_consistent());
    }
}

/// Issue 22: the reads for a batch taken ahead are made in the transaction of the batch before
/// it. When they fail, the batch before is committed on its own and the batch taken ahead
/// fails alone: one caller's input never fails another's request.
#[test]
fn issue_22_reads_for_the_batch_taken_ahead_that_fail_fail_that_batch_alone() {
    for url in both_backends("issue_22_ahead_read") {
        let r = rig_on(&url, EngineConfig { batch_size_max: 100, apply_ahead_min: 1, ..EngineConfig::default() });
        let wallet = r.h.customer("0");
        assert!(r.h.pay(wallet, "5.00").is_ok());
        let mine: Vec<Item> = (0..100).map(|_| Item::single(r.h.charge_cmd(wallet, "0.01", true))).collect();
        let mut theirs: Vec<Item> = (0..99).map(|_| Item::single(r.h.charge_cmd(wallet, "0.01", true))).collect();
        theirs.push(Item::single(charge_with(&r.h, "poison-read", wallet, "0.01", true)));
        let (held, answers) = queued_in_order(&r, wallet, vec![mine, theirs]);
        assert!(held.is_ok(), "{url}: {held:?}");
        let mine = answers[0].as_ref().expect("the first request is committed, whatever the second reads");
        assert!(mine.iter().all(|a| a.is_ok()), "{url}");
        assert!(matches!(answers[1], Err(EngineError::Store(_))), "{url}: {:?}", answers[1]);
        let reader = r.engine.reader();
        assert_eq!(reader.account(wallet).unwrap().unwrap().balance.0, 500 - 1 - 100);
        assert!(reader.audit().unwrap().is_consistent());
    }
}

/// Sends each request at the start of the write of the batch before it, as a caller answered
/// one batch ago does while the next is written, and returns the answers in order, and how
/// many requests the ledger's other thread took. With `late`, each write waits until that
/// thread has taken the request (it asks the clock the time) or, when it does not wait for
/// it, 50 ms; without, until the request is queued.
fn arriving_during_writes(r: &Rig, requests: Vec<Vec<Item>>, late: bool) -> (Vec<Reply>, u64) {
    let count = requests.len();
    let mut pending: std::collections::VecDeque<Vec<Item>> = requests.into();
    let first = pending.pop_front().expect("a request");
    type Sent = Arc<Mutex<Vec<Option<std::thread::JoinHandle<Reply>>>>>;
    let sent: Sent = Arc::default();
    let taken = Arc::new(AtomicU64::new(0));
    let (engine, calls, handles, took) = (r.engine.clone(), r.clock_calls.clone(), sent.clone(), taken.clone());
    *r.on_write.lock().unwrap() = Some(Box::new(move || {
        let Some(items) = pending.pop_front() else { return };
        let before = calls.load(Ordering::SeqCst);
        let submitter = engine.clone();
        handles.lock().unwrap().push(Some(std::thread::spawn(move || submitter.submit(items))));
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(5) {
            if late && calls.load(Ordering::SeqCst) > before {
                took.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if engine.queued() > 0 && (!late || start.elapsed() > std::time::Duration::from_millis(50)) {
                break;
            }
            std::thread::yield_now();
        }
    }));
    let mut answers = vec![r.engine.submit(first)];
    for k in 0..count - 1 {
        wait_for(30, "the next request to be sent", || sent.lock().unwrap().len() > k);
        let handle = sent.lock().unwrap()[k].take().unwrap();
        answers.push(handle.join().unwrap());
    }
    *r.on_write.lock().unwrap() = None; // The hook holds the engine.
    (answers, taken.load(Ordering::SeqCst))
}

/// A canonical UUID whose high 64 bits grow with `n`, as a time-ordered (v7) id's do, from
/// above nearly every hashed client id's key.
fn time_id(n: u64) -> String {
    let high = 0x7ff0_0000_0000_0000u64 + (n << 4);
    format!("{:08x}-{:04x}-{:04x}-8000-{:012x}", high >> 32, (high >> 16) & 0xffff, high & 0xffff, n)
}

/// Issue 22: a batch of charges that arrives while the batch before it is written (its caller
/// was answered one batch ago) is applied meanwhile by the ledger's other thread, when it needs
/// nothing read: its accounts in memory and its client ids' keys above every stored one. The
/// answers, balances and journal must be exactly those of the same requests applied one after
/// another: client ids used again one, two or more batches before (a stored key is never
/// above the largest, so those are read), an unknown account, refusals for want of money,
/// and payments in between. SQLite only: the PostgreSQL store does not keep the largest key.
#[test]
fn issue_22_a_batch_arriving_while_the_one_before_is_written_answers_as_one_after_another() {
    let mut runs = Vec::new();
    for late in [true, false] {
        // The writer forgets about half its accounts before each batch it reads for: a batch
        // applied meanwhile finds some of its accounts missing and goes the usual way.
        let config = EngineConfig {
            apply_ahead_min: if late { 1 } else { usize::MAX },
            eviction: if late { purse_engine::Eviction::Random { seed: 7 } } else { purse_engine::Eviction::Nothing },
            ..EngineConfig::default()
        };
        let r = rig_on(&sqlite_url(), config);
        let prepaid = r.h.customer("0");
        assert!(r.h.pay(prepaid, "2.00").is_ok());
        let postpaid = r.h.customer("1.50");
        let empty = r.h.customer("0");
        let accounts = [prepaid, postpaid, empty, AccountId(999_999)];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut requests: Vec<Vec<Item>> = Vec::new();
        let mut replays = 0;
        for req in 0..80u64 {
            if req % 9 == 4 {
                requests.push(vec![Item::single(cash(&r.h, &time_id(req * 16), prepaid, "0.40"))]);
                continue;
            }
            let mut items = Vec::new();
            for i in 0..(1 + next(6)) {
                // Mostly the three customers; now and then an account that does not exist.
                let account = accounts[if next(12) == 0 { 3 } else { next(3) as usize }];
                let amount = format!("0.{:02}", 1 + next(30));
                let mut command = charge_with(&r.h, &time_id(req * 16 + i), account, &amount, next(2) == 0);
                let back = match next(16) {
                    0..=2 => 1,
                    3 => 2,
                    4 => 3 + next(5) as usize,
                    _ => 0,
                };
                if let Some(again) = sent_again(&requests, back, &mut next) {
                    command = again;
                    replays += 1;
                }
                items.push(Item::single(command));
            }
            requests.push(items);
        }
        assert!(replays >= 15, "{replays} client ids used again");
        let (answers, _) = arriving_during_writes(&r, requests, late);
        let answers: Vec<_> = answers.into_iter().map(|a| a.expect("the engine answers")).collect();
        let reader = r.engine.reader();
        let balances: Vec<i64> = accounts[..3].iter().map(|a| reader.account(*a).unwrap().unwrap().balance.0).collect();
        let journal: Vec<_> = accounts[..3]
            .iter()
            .map(|a| reader.journal(purse_store::JournalQuery { account: *a, before: None, limit: 1000 }).unwrap())
            .collect();
        assert!(reader.audit().unwrap().is_consistent());
        if late {
            eprintln!("{} batches applied while the one before was written", r.engine.applied_ahead());
            assert!(r.engine.applied_ahead() >= 6, "batches applied ahead: {}", r.engine.applied_ahead());
        } else {
            assert_eq!(r.engine.applied_ahead(), 0);
        }
        runs.push((answers, balances, journal));
    }
    let (sequential, late) = (runs.pop().unwrap(), runs.pop().unwrap());
    assert_eq!(late.0, sequential.0, "the answers differ");
    assert_eq!(late.1, sequential.1, "the balances differ");
    assert_eq!(late.2, sequential.2, "the journals differ");
    assert!(late.0.iter().flatten().any(|a| a.is_err()), "some charges were refused");
    let replayed =
        late.0.iter().flatten().filter(|a| matches!(a, Ok(purse_core::Outcome::Posted { replayed: true, .. })));
    assert!(replayed.count() >= 5, "charges sent again were answered as replays");
}

/// Issue 22: when the store refuses a batch while the ledger's other thread applied the next
/// one, taken from the queue meanwhile, on top of it, that is thrown away: the next batch is
/// applied again to what the store holds.
#[test]
fn issue_22_a_batch_taken_while_the_one_before_is_written_is_applied_again_when_that_one_is_refused() {
    let r = rig_on(&sqlite_url(), EngineConfig { batch_size_max: 300, apply_ahead_min: 1, ..EngineConfig::default() });
    let wallet = r.h.customer("0");
    assert!(r.h.pay(wallet, "5.00").is_ok());
    // 3.00 of charges, then one the store refuses: the whole request fails.
    let charge = |n: u64, amount| Item::single(charge_with(&r.h, &time_id(n), wallet, amount, true));
    let mut refused: Vec<Item> = (0..299).map(|n| charge(n, "0.01")).collect();
    let mut poison = charge_with(&r.h, &time_id(299), wallet, "0.01", true);
    if let Command::Charge(c) = &mut poison {
        c.service = Some("poison".into());
    }
    refused.push(Item::single(poison));
    // 4.00 that fits only if the refused 3.00 never happened.
    let after: Vec<Item> = (300..500).map(|n| charge(n, "0.02")).collect();
    let (answers, taken) = arriving_during_writes(&r, vec![refused, after], true);
    assert_eq!(taken, 1, "the second request was taken while the first was written");
    assert!(matches!(answers[0], Err(EngineError::Store(_))), "{:?}", answers[0]);
    let after = answers[1].as_ref().expect("the second request is answered");
    assert!(after.iter().all(|a| a.is_ok()), "a charge was refused as if the refused request had spent");
    let reader = r.engine.reader();
    assert_eq!(reader.account(wallet).unwrap().unwrap().balance.0, 500 - 400);
    assert!(reader.audit().unwrap().is_consistent());
}
