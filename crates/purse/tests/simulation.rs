//! Seeded simulation: random valid and invalid commands are applied to the engine (on
//! SQLite) and to a tiny reference model; after every step the engine must agree with the
//! model and the books must hold their invariants.
//!
//! CI runs a fixed set of seeds. `PURSE_SIM_SEEDS=N` runs N more random ones;
//! `PURSE_SIM_SEED=S` replays exactly seed S. A failure prints its seed.

mod common;

use std::collections::HashMap;

use common::*;
use purse::ids::Rng;
use purse_core::{
    AccountId, Amount, Command, CommandResult, HoldId, Item, NewCharge, Outcome, PaymentMethod,
    Rejection, TransferId, TransferKind,
};

const FIXED_SEEDS: [u64; 6] = [1, 2, 3, 42, 2026, 0xDEAD_BEEF];
const STEPS: usize = 220;
const ACCOUNTS: usize = 6;

/// The reference model: plain integers and maps, no cleverness.
#[derive(Default)]
struct Model {
    balance: HashMap<AccountId, i128>,
    reserved: HashMap<AccountId, i128>,
    limit: HashMap<AccountId, i128>,
    /// Open holds: account, amount, expiry.
    holds: HashMap<HoldId, (AccountId, i128, i64)>,
    resolved: HashMap<HoldId, &'static str>,
    /// Posted client ids and what the engine first answered for them.
    posted: HashMap<String, (Command, Outcome)>,
    /// Posted transfers that may be reversed: id -> (debit, credit, amount, reversed).
    transfers: HashMap<TransferId, (AccountId, AccountId, i128, bool)>,
    posted_count: u64,
}

impl Model {
    fn available(&self, a: AccountId) -> i128 {
        self.balance[&a] - self.reserved[&a] + self.limit[&a]
    }

    fn expire(&mut self, now: i64) {
        let expired: Vec<HoldId> = self.holds.iter().filter(|(_, h)| h.2 <= now).map(|(id, _)| *id).collect();
        for id in expired {
            let (a, amount, _) = self.holds.remove(&id).unwrap();
            *self.reserved.get_mut(&a).unwrap() -= amount;
            self.resolved.insert(id, "expired");
        }
    }

    fn post(&mut self, debit: Option<AccountId>, credit: Option<AccountId>, amount: i128) {
        if let Some(d) = debit {
            *self.balance.get_mut(&d).unwrap() -= amount;
        }
        if let Some(c) = credit {
            *self.balance.get_mut(&c).unwrap() += amount;
        }
        self.posted_count += 1;
    }
}

struct Sim {
    h: Harness,
    model: Model,
    rng: Rng,
    accounts: Vec<AccountId>,
    seed: u64,
    step: usize,
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("PURSE_SIM_SEED") {
        return vec![s.parse().expect("PURSE_SIM_SEED is a number")];
    }
    let mut seeds = FIXED_SEEDS.to_vec();
    let extra: u64 = std::env::var("PURSE_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut rng = Rng::new(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    seeds.extend((0..extra).map(|_| rng.next_u64()));
    seeds
}

#[test]
fn simulation_agrees_with_the_reference_model() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} on SQLite (replay with PURSE_SIM_SEED={seed})");
        run(seed, &sqlite_url());
    }
}

/// The same simulation on PostgreSQL, with fewer seeds (each step is a network round trip).
#[test]
fn simulation_agrees_with_the_reference_model_on_postgres() {
    for seed in &FIXED_SEEDS[..2] {
        eprintln!("simulation seed {seed} on PostgreSQL");
        run(*seed, &pg_url(&format!("simulation_{seed}")));
    }
}

fn run(seed: u64, url: &str) {
    let h = Harness::on(url);
    let mut model = Model::default();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let limit = if i % 2 == 0 { "0" } else { "20.00" };
        let a = h.customer(limit);
        model.balance.insert(a, 0);
        model.reserved.insert(a, 0);
        model.limit.insert(a, h.amount(limit).0.into());
        accounts.push(a);
    }
    let mut sim = Sim { h, model, rng: Rng::new(seed), accounts, seed, step: 0 };
    for step in 0..STEPS {
        sim.step = step;
        sim.one_step();
        sim.check_invariants();
    }
}

impl Sim {
    fn ctx(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    fn pick(&mut self) -> AccountId {
        self.accounts[self.rng.below(self.accounts.len() as u64) as usize]
    }

    fn amount(&mut self) -> i64 {
        1 + self.rng.below(1500) as i64
    }

    fn money(&self, units: i64) -> purse_core::Money {
        purse_core::Money { amount: Amount(units), currency: self.h.usd.code }
    }

    fn one_step(&mut self) {
        let roll = self.rng.below(100);
        if roll < 6 {
            // Time passes: holds may expire at the next batch.
            self.h.clock.advance_micros((1 + self.rng.below(90)) as i64 * 1_000_000);
            return;
        }
        let now = self.h.now().0;
        self.model.expire(now);
        let command = self.generate(roll, now);
        let result = self.h.run(command.clone());
        self.check_and_apply(&command, &result, now);
    }

    fn generate(&mut self, roll: u64, now: i64) -> Command {
        let id = self.h.next_id("sim");
        match roll {
            6..=29 => {
                let (account, units) = (self.pick(), self.amount());
                let refuse = self.rng.chance(50);
                Command::Charge(NewCharge {
                    client_id: id,
                    account,
                    money: self.money(units),
                    service: Some("voice".into()),
                    at: None,
                    metadata: None,
                    refuse_if_insufficient: refuse,
                })
            }
            30..=41 => {
                let (account, units) = (self.pick(), self.amount());
                Command::Payment { client_id: id, account, money: self.money(units), method: PaymentMethod::Card, metadata: None }
            }
            42..=55 => {
                let (source, target, units) = (self.pick(), self.pick(), self.amount());
                Command::Transfer { client_id: id, source, target, money: self.money(units), kind: TransferKind::Transfer, metadata: None }
            }
            56..=67 => {
                let (account, units) = (self.pick(), self.amount());
                let ttl = (5 + self.rng.below(120)) as i64 * 1_000_000;
                Command::Hold { client_id: id, account, money: self.money(units), expires_at: purse_core::Timestamp(now + ttl), service: None, metadata: None }
            }
            68..=77 => {
                let hold = self.some_hold();
                if self.rng.chance(50) {
                    Command::Release { client_id: id, hold }
                } else {
                    let part = self.rng.chance(50).then(|| Amount(1 + self.rng.below(1600) as i64));
                    Command::Capture { client_id: id, hold, amount: part }
                }
            }
            78..=83 => {
                let known: Vec<TransferId> = self.model.transfers.keys().copied().collect();
                let transfer = if known.is_empty() || self.rng.chance(10) {
                    TransferId(987_654)
                } else {
                    let mut sorted = known;
                    sorted.sort();
                    sorted[self.rng.below(sorted.len() as u64) as usize]
                };
                Command::Reverse { client_id: id, transfer, metadata: None }
            }
            84..=93 => self.retry(),
            _ => {
                // Invalid on purpose: zero amount, or an account that does not exist.
                let account = if self.rng.chance(50) { AccountId(777_777) } else { self.pick() };
                let units = if account == AccountId(777_777) { 100 } else { 0 };
                Command::Charge(NewCharge {
                    client_id: id,
                    account,
                    money: self.money(units),
                    service: None,
                    at: None,
                    metadata: None,
                    refuse_if_insufficient: false,
                })
            }
        }
    }

    fn some_hold(&mut self) -> HoldId {
        let mut ids: Vec<HoldId> = self.model.holds.keys().chain(self.model.resolved.keys()).copied().collect();
        ids.sort();
        if ids.is_empty() || self.rng.chance(5) {
            return HoldId(555_555);
        }
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    /// A retry of an earlier posted command: same content (must replay) or, half the time
    /// for charges, a different amount (must be refused as a conflict).
    fn retry(&mut self) -> Command {
        let mut keys: Vec<String> = self.model.posted.keys().cloned().collect();
        if keys.is_empty() {
            let account = self.pick();
            return Command::Payment { client_id: self.h.next_id("sim"), account, money: self.money(1), method: PaymentMethod::Cash, metadata: None };
        }
        keys.sort();
        let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let (command, _) = self.model.posted[&key].clone();
        match command {
            Command::Charge(mut c) if self.rng.chance(50) => {
                c.money.amount = Amount(c.money.amount.0 + 1);
                Command::Charge(c)
            }
            other => other,
        }
    }

    fn client_key(command: &Command) -> Option<String> {
        match command {
            Command::Charge(c) => Some(c.client_id.as_str().to_owned()),
            Command::Payment { client_id, .. }
            | Command::Transfer { client_id, .. }
            | Command::Hold { client_id, .. }
            | Command::Capture { client_id, .. }
            | Command::Release { client_id, .. }
            | Command::Reverse { client_id, .. } => Some(client_id.as_str().to_owned()),
            _ => None,
        }
    }

    fn check_and_apply(&mut self, command: &Command, result: &CommandResult, now: i64) {
        let ctx = self.ctx();
        let key = Self::client_key(command).expect("simulated commands carry client ids");
        if let Some((original, first)) = self.model.posted.get(&key).cloned() {
            if &original == command {
                let replay = with_replayed(first);
                assert_eq!(result, &Ok(replay), "{ctx}: a retry must replay the first outcome");
            } else {
                assert!(
                    matches!(result, Err(r) if r.code().starts_with("exists_with_different")),
                    "{ctx}: a conflicting retry must be refused, got {result:?}"
                );
            }
            return;
        }
        let expected = self.predict(command, now);
        match (&expected, result) {
            (Ok(()), Ok(outcome)) => {
                self.apply(command, outcome);
                self.model.posted.insert(key, (command.clone(), outcome.clone()));
            }
            (Err(code), Err(r)) => assert_eq!(*code, r.code(), "{ctx}: {command:?}"),
            _ => panic!("{ctx}: model expected {expected:?}, engine answered {result:?} for {command:?}"),
        }
    }

    /// What the model says must happen: `Ok` to post, or the rejection code.
    fn predict(&self, command: &Command, now: i64) -> Result<(), &'static str> {
        let m = &self.model;
        let known = |a: &AccountId| m.balance.contains_key(a);
        match command {
            Command::Charge(c) => {
                if !known(&c.account) {
                    return Err("account_not_found");
                }
                if c.money.amount.0 <= 0 {
                    return Err("amount_must_be_positive");
                }
                if c.refuse_if_insufficient && m.available(c.account) < c.money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Payment { .. } => Ok(()),
            Command::Transfer { source, target, money, .. } => {
                if source == target {
                    return Err("accounts_must_differ");
                }
                if m.available(*source) < money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Hold { account, money, .. } => {
                if m.available(*account) < money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Capture { hold, amount, .. } => {
                let Some((_, held, expires)) = m.holds.get(hold) else {
                    return Err(if m.resolved.contains_key(hold) { "hold_already_resolved" } else { "hold_not_found" });
                };
                assert!(*expires > now, "expired holds were removed from the model");
                match amount {
                    Some(a) if i128::from(a.0) > *held => Err("capture_exceeds_hold"),
                    _ => Ok(()),
                }
            }
            Command::Release { hold, .. } => {
                if m.holds.contains_key(hold) {
                    Ok(())
                } else if m.resolved.contains_key(hold) {
                    Err("hold_already_resolved")
                } else {
                    Err("hold_not_found")
                }
            }
            Command::Reverse { transfer, .. } => match m.transfers.get(transfer) {
                None => Err("transfer_not_found"),
                Some((.., true)) => Err("transfer_already_reversed"),
                Some(_) => Ok(()),
            },
            other => panic!("not simulated: {other:?}"),
        }
    }

    fn apply(&mut self, command: &Command, outcome: &Outcome) {
        let m = &mut self.model;
        match (command, outcome) {
            (Command::Charge(c), Outcome::Posted { transfer, .. }) => {
                m.post(Some(c.account), None, c.money.amount.0.into());
                m.transfers.insert(*transfer, (c.account, AccountId(0), c.money.amount.0.into(), false));
            }
            (Command::Payment { account, money, .. }, Outcome::Posted { transfer, .. }) => {
                m.post(None, Some(*account), money.amount.0.into());
                m.transfers.insert(*transfer, (AccountId(0), *account, money.amount.0.into(), false));
            }
            (Command::Transfer { source, target, money, .. }, Outcome::Posted { transfer, .. }) => {
                m.post(Some(*source), Some(*target), money.amount.0.into());
                m.transfers.insert(*transfer, (*source, *target, money.amount.0.into(), false));
            }
            (Command::Hold { account, money, expires_at, .. }, Outcome::HoldPlaced { hold, .. }) => {
                *m.reserved.get_mut(account).unwrap() += i128::from(money.amount.0);
                m.holds.insert(*hold, (*account, money.amount.0.into(), expires_at.0));
            }
            (Command::Capture { hold, amount, .. }, Outcome::HoldCaptured { transfer, .. }) => {
                let (a, held, _) = m.holds.remove(hold).unwrap();
                *m.reserved.get_mut(&a).unwrap() -= held;
                let captured = amount.map_or(held, |x| x.0.into());
                m.post(Some(a), None, captured);
                m.transfers.insert(*transfer, (a, AccountId(0), captured, false));
                assert!(m.resolved.insert(*hold, "captured").is_none(), "a hold resolves once");
            }
            (Command::Release { hold, .. }, Outcome::HoldReleased { .. }) => {
                let (a, held, _) = m.holds.remove(hold).unwrap();
                *m.reserved.get_mut(&a).unwrap() -= held;
                assert!(m.resolved.insert(*hold, "released").is_none(), "a hold resolves once");
            }
            (Command::Reverse { transfer, .. }, Outcome::Posted { .. }) => {
                let entry = m.transfers.get_mut(transfer).unwrap();
                entry.3 = true;
                let (debit, credit, amount, _) = *entry;
                let known = |a: AccountId| (a != AccountId(0)).then_some(a);
                m.post(known(credit), known(debit), amount);
            }
            other => panic!("{}: unexpected pair {other:?}", self.ctx()),
        }
    }

    fn check_invariants(&self) {
        let ctx = self.ctx();
        let reader = self.h.engine.reader();
        let audit = reader.audit().unwrap();
        assert!(audit.is_consistent(), "{ctx}: {audit:?}");
        // Setup posted nothing; every posting since is in the model, once.
        assert_eq!(audit.transfer_count, self.model.posted_count, "{ctx}: postings");
        for a in &self.accounts {
            let stored = reader.account(*a).unwrap().unwrap();
            assert_eq!(i128::from(stored.balance.0), self.model.balance[a], "{ctx}: balance of {a}");
            assert_eq!(i128::from(stored.reserved.0), self.model.reserved[a], "{ctx}: reserved of {a}");
        }
        for (hold, state) in &self.model.resolved {
            let stored = reader.hold(*hold).unwrap().unwrap();
            assert_eq!(purse_store::codec::hold_state(stored.state), *state, "{ctx}: hold {hold}");
        }
    }
}

fn with_replayed(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Posted { transfer, overdrawn, .. } => Outcome::Posted { transfer, overdrawn, replayed: true },
        Outcome::HoldPlaced { hold, .. } => Outcome::HoldPlaced { hold, replayed: true },
        Outcome::HoldCaptured { hold, transfer, .. } => Outcome::HoldCaptured { hold, transfer, replayed: true },
        Outcome::HoldReleased { hold, .. } => Outcome::HoldReleased { hold, replayed: true },
        other => other,
    }
}

#[test]
fn checked_operations_never_leave_available_below_zero_in_one_batch() {
    // Many transfers out of one account in a single batch: the batch sees its own effects.
    let h = Harness::sqlite();
    let a = h.customer("0");
    let b = h.customer("0");
    h.pay(a, "1.00").unwrap();
    let items: Vec<Item> = (0..50)
        .map(|_| {
            Item::single(Command::Transfer {
                client_id: h.next_id("t"),
                source: a,
                target: b,
                money: h.usd("0.10"),
                kind: TransferKind::Transfer,
                metadata: None,
            })
        })
        .collect();
    let results = h.submit(items);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Rejection::InsufficientFunds { .. }))));
    assert_eq!(h.parts(a), (0, 0, 0));
}
