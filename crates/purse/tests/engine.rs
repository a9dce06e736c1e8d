//! The engine's own promises: bounded queue with back-pressure, bounded batches, answers
//! only after durability, and a failed store write that leaves nothing half-applied.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use purse_core::{
    AccountId, BatchOutput, ClientKey, Hold, HoldId, Item, Party, PartyId, Prior, Transfer,
    TransferId,
};
use purse_engine::{Engine, EngineConfig, EngineError, ManualClock};
use purse_store::{BaseState, Store, StoreError, StoreResult};

/// A store that can hold the writer at `begin` and fail the next `write`.
struct Controlled {
    inner: Box<dyn Store>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
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
        self.inner.write(output)?;
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            return Err(StoreError("injected failure after the rows were written".into()));
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
}

struct Rig {
    engine: Arc<Engine>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    fail_next_write: Arc<AtomicBool>,
    h: Harness,
}

fn rig(config: EngineConfig) -> Rig {
    // A harness to create the currency and customers, then a controlled engine on the same file.
    let h = Harness::sqlite();
    let path = h.url.strip_prefix("sqlite://").unwrap().to_owned();
    let (store, reader) = purse_store_sqlite::open(&path).unwrap();
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let waiting = Arc::new(AtomicBool::new(false));
    let fail_next_write = Arc::new(AtomicBool::new(false));
    let controlled = Controlled { inner: Box::new(store), gate: gate.clone(), waiting: waiting.clone(), fail_next_write: fail_next_write.clone() };
    let clock = Arc::new(ManualClock::new(h.now()));
    let engine = Arc::new(Engine::start(Box::new(controlled), Arc::new(reader), clock, config));
    Rig { engine, gate, waiting, fail_next_write, h }
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
