//! The engine's own promises: bounded queue with back-pressure, bounded batches, answers
//! only after durability, and a failed store write that leaves nothing half-applied.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use purse_core::{AccountId, BatchOutput, ClientKey, Hold, HoldId, Item, Party, PartyId, Prior, Transfer, TransferId};
use purse_engine::{Engine, EngineConfig, EngineError, ManualClock};
use purse_store::{BaseState, Store, StoreError, StoreResult};

/// A store that can hold the writer at `begin`, fail the next `write`, and refuse (as a
/// database refuses a value it cannot store) any write holding a charge for the service
/// "poison".
struct Controlled {
    inner: Box<dyn Store>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

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
    let controlled = Controlled {
        inner: opened.store,
        gate: gate.clone(),
        waiting: waiting.clone(),
        fail_next_write: fail_next_write.clone(),
        refused: refused.clone(),
    };
    let clock = Arc::new(ManualClock::new(h.now()));
    let engine = Arc::new(Engine::start(Box::new(controlled), opened.reader, clock, config));
    Rig { engine, gate, waiting, fail_next_write, refused, h }
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
