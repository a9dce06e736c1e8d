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

/// A store that can hold the writer at `begin`, run something just before a given `begin`,
/// fail the next `write`, refuse (as a database refuses a value it cannot store) any write
/// holding a charge for the service "poison", and any look-up of the client id "poison-read".
struct Controlled {
    inner: Box<dyn Store>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    before_begin: BeforeBegin,
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
    let controlled = Controlled {
        inner: opened.store,
        gate: gate.clone(),
        waiting: waiting.clone(),
        fail_next_write: fail_next_write.clone(),
        refused: refused.clone(),
        before_begin: before_begin.clone(),
    };
    let clock = Arc::new(ManualClock::new(h.now()));
    let engine = Arc::new(Engine::start(Box::new(controlled), opened.reader, clock, config));
    Rig { engine, gate, waiting, fail_next_write, refused, before_begin, h }
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
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut next = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let mut requests: Vec<Vec<Item>> = Vec::new();
            let mut reversals: Vec<(usize, usize)> = Vec::new();
            for req in 0..80u64 {
                if req % 9 == 4 {
                    let pay = Command::Payment {
                        client_id: cid(&format!("pay-{req}")),
                        account: prepaid,
                        money: r.h.usd("0.40"),
                        method: purse_core::PaymentMethod::Cash,
                        metadata: None,
                    };
                    requests.push(vec![Item::single(pay)]);
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
                    let earlier = requests.len().checked_sub(back).filter(|_| back > 0).map(|k| &requests[k]);
                    let charges: Vec<&purse_core::NewCharge> = earlier
                        .into_iter()
                        .flatten()
                        .filter_map(|i| match &i.command {
                            Command::Charge(c) => Some(c),
                            _ => None,
                        })
                        .collect();
                    if !charges.is_empty() {
                        let mut again = charges[next(charges.len() as u64) as usize].clone();
                        if next(3) == 0 {
                            again.money.amount.0 += 1;
                        }
                        command = Command::Charge(again);
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
