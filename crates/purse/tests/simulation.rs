//! Seeded simulation: random valid and invalid commands, of every kind the ledger has
//! (parties, accounts, settings, credit, thresholds, invoices, money), are applied to the
//! engine and to a tiny reference model; after every step the engine must agree with the
//! model and the books must hold their invariants.
//!
//! Every step runs on three engines in lockstep, each on its own database: one whose cache is
//! warm, one that forgets its whole cache before every batch, and one that forgets a random
//! half of it and is restarted now and then. Their answers and their stored state must be
//! identical: what the ledger answers never depends on what it had cached (issue 17).
//!
//! CI runs a fixed set of seeds. `PURSE_SIM_SEEDS=N` runs N more random ones;
//! `PURSE_SIM_SEED=S` replays exactly seed S. A failure prints its seed.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use purse::ids::Rng;
use purse_core::command::NewGrant;
use purse_core::{
    AccountId, AdjustCategory, AdjustDirection, Amount, Billing, ChangeNote, Command, CommandResult, CurrencyCode,
    GrantId, HoldId, Item, Money, NewAccountKind, NewCharge, Outcome, PartyId, PaymentMethod, Rejection, Rollover,
    SystemRole, Timestamp, TransferId, TransferKind,
};
use purse_engine::{EngineConfig, Eviction};

const FIXED_SEEDS: [u64; 6] = [1, 2, 3, 42, 2026, 0xDEAD_BEEF];
const STEPS: usize = 260;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Wallet { prepaid: bool },
    Master,
    SubDebit,
    SubCredit { parent: AccountId },
}

/// An account as the model keeps it: plain integers.
#[derive(Clone, Debug)]
struct MAccount {
    kind: Kind,
    party: PartyId,
    balance: i128,
    reserved: i128,
    limit: i128,
    /// A temporary increase: amount, valid until (microseconds).
    increase: Option<(i128, i64)>,
    open: bool,
    /// Its customer is suspended: it spends nothing (charges, holds, transfers out).
    suspended: bool,
    uninvoiced: i128,
    thresholds: Vec<i64>,
}

#[derive(Clone, Debug)]
struct MParty {
    reseller: bool,
    /// A customer's reseller.
    of: Option<PartyId>,
    transfers_allowed: bool,
    invoiced_until: Option<i64>,
}

/// A credit grant as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MGrant {
    account: AccountId,
    priority: u32,
    effective: i64,
    expires: Option<i64>,
    /// The one service it may pay for, or any.
    scope: Option<&'static str>,
    remaining: i128,
    reserved: i128,
    open: bool,
    /// Free credit (voidable), not purchased.
    free: bool,
    rollover: Option<(i128, i64)>,
}

/// What a spend may take from grants, as the ledger's `Spend`.
#[derive(Clone, Copy)]
enum Use {
    Shown,
    Service(Option<&'static str>),
    Cash,
}

/// The reference model: plain integers and maps, no cleverness.
#[derive(Default)]
struct Model {
    accounts: HashMap<AccountId, MAccount>,
    parties: HashMap<PartyId, MParty>,
    /// Open holds: account, amount, expiry.
    holds: HashMap<HoldId, (AccountId, i128, i64)>,
    resolved: HashMap<HoldId, &'static str>,
    /// Posted client ids and what the engine first answered for them.
    posted: HashMap<String, (Command, Outcome)>,
    /// Transfers that may be reversed.
    transfers: HashMap<TransferId, MTransfer>,
    posted_count: u64,
    /// Ids of the postings' sequence taken without a posting (rolled-over grants).
    silent_ids: u64,
    eur: bool,
    grants: BTreeMap<GrantId, MGrant>,
    /// What each hold reserved on grants, and each charge took from them.
    hold_parts: HashMap<HoldId, Vec<(GrantId, i128)>>,
    charge_parts: HashMap<TransferId, Vec<(GrantId, i128)>>,
    /// How many holds reserved on grants (for the run's summary).
    held_on_grants: u64,
    /// The service of each open hold.
    hold_service: HashMap<HoldId, Option<&'static str>>,
}

/// A posted transfer as the model keeps it: debit, credit, amount, reversed, is a charge.
type MTransfer = (Option<AccountId>, Option<AccountId>, i128, bool, bool);

impl Model {
    fn effective_limit(&self, a: &MAccount, now: i64) -> i128 {
        a.limit + a.increase.filter(|(_, until)| now < *until).map_or(0, |(amount, _)| amount)
    }

    fn children(&self, id: AccountId) -> i128 {
        self.accounts.values().filter(|a| a.kind == Kind::SubCredit { parent: id }).map(|a| a.balance).sum()
    }

    /// Holds on `id` that expired at `now` but are not released yet: they no longer count.
    fn expired_reserved(&self, id: AccountId, now: i64) -> i128 {
        self.holds.values().filter(|h| h.0 == id && h.2 <= now).map(|h| h.1).sum()
    }

    fn in_force(g: &MGrant, now: i64) -> bool {
        g.open && g.effective <= now && g.expires.is_none_or(|e| now < e)
    }

    fn usable(g: &MGrant, spend: Use) -> bool {
        match spend {
            Use::Shown => true,
            Use::Service(service) => g.scope.is_none() || g.scope == service,
            Use::Cash => false,
        }
    }

    /// The grant money of `id` a spend may not use.
    fn excluded(&self, id: AccountId, now: i64, spend: Use) -> i128 {
        self.grants
            .values()
            .filter(|g| g.account == id && g.open)
            .map(|g| {
                if !Self::in_force(g, now) {
                    g.remaining
                } else if !Self::usable(g, spend) {
                    g.remaining - g.reserved
                } else {
                    0
                }
            })
            .sum()
    }

    fn own(&self, id: AccountId, now: i64, spend: Use) -> i128 {
        let a = &self.accounts[&id];
        a.balance + self.children(id) - (a.reserved - self.expired_reserved(id, now)) + self.effective_limit(a, now)
            - self.excluded(id, now, spend)
    }

    /// The available balance shown.
    fn available(&self, id: AccountId, now: i64) -> i128 {
        self.available_for(id, now, Use::Shown)
    }

    fn available_for(&self, id: AccountId, now: i64, spend: Use) -> i128 {
        match self.accounts[&id].kind {
            Kind::SubCredit { parent } => self.own(id, now, spend).min(self.own(parent, now, Use::Cash)),
            _ => self.own(id, now, spend),
        }
    }

    /// The account's grants in force for `service`, in draw-down order.
    fn draw_order(&self, id: AccountId, now: i64, service: Option<&'static str>) -> Vec<GrantId> {
        let mut ids: Vec<GrantId> = self
            .grants
            .iter()
            .filter(|(_, g)| g.account == id && Self::in_force(g, now) && Self::usable(g, Use::Service(service)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_by_key(|g| {
            let grant = &self.grants[g];
            (grant.priority, grant.expires.unwrap_or(i64::MAX), g.0)
        });
        ids
    }

    /// Takes `amount` from the grants (free part), or reserves it (`reserve`), in order.
    fn draw(
        &mut self,
        id: AccountId,
        amount: i128,
        service: Option<&'static str>,
        now: i64,
        reserve: bool,
    ) -> Vec<(GrantId, i128)> {
        let mut left = amount;
        let mut parts = Vec::new();
        for g in self.draw_order(id, now, service) {
            let grant = self.grants.get_mut(&g).unwrap();
            let take = (grant.remaining - grant.reserved).min(left);
            if left == 0 || take <= 0 {
                continue;
            }
            left -= take;
            if reserve {
                grant.reserved += take;
            } else {
                grant.remaining -= take;
                if grant.remaining == 0 && grant.reserved == 0 && grant.expires.is_none() {
                    grant.open = false;
                }
            }
            parts.push((g, take));
        }
        parts
    }

    fn unreserve(&mut self, hold: HoldId) {
        for (g, part) in self.hold_parts.remove(&hold).unwrap_or_default() {
            let grant = self.grants.get_mut(&g).unwrap();
            if grant.open {
                grant.reserved -= part.min(grant.reserved);
            }
        }
        self.hold_service.remove(&hold);
    }

    fn expire(&mut self, now: i64) {
        let mut expired: Vec<HoldId> = self.holds.iter().filter(|(_, h)| h.2 <= now).map(|(id, _)| *id).collect();
        expired.sort();
        for id in expired {
            let (a, amount, _) = self.holds.remove(&id).unwrap();
            self.accounts.get_mut(&a).unwrap().reserved -= amount;
            self.unreserve(id);
            self.resolved.insert(id, "expired");
        }
    }

    fn post(&mut self, debit: Option<AccountId>, credit: Option<AccountId>, amount: i128) {
        if let Some(d) = debit {
            self.accounts.get_mut(&d).unwrap().balance -= amount;
        }
        if let Some(c) = credit {
            self.accounts.get_mut(&c).unwrap().balance += amount;
        }
        self.posted_count += 1;
    }

    /// Whether the account exists and is open, or the rejection saying why not.
    fn open_account(&self, id: AccountId) -> Result<&MAccount, &'static str> {
        match self.accounts.get(&id) {
            None => Err("account_not_found"),
            Some(a) if !a.open => Err("account_closed"),
            Some(a) => Ok(a),
        }
    }

    /// The checks of an account money is spent from or paid into.
    fn spendable(&self, id: AccountId, amount: i64) -> Result<&MAccount, &'static str> {
        let a = self.open_account(id)?;
        if amount <= 0 {
            return Err("amount_must_be_positive");
        }
        Ok(a)
    }

    /// The checks of an account money is spent from: not suspended either.
    fn spending(&self, id: AccountId, amount: i64) -> Result<&MAccount, &'static str> {
        let a = self.spendable(id, amount)?;
        if a.suspended {
            return Err("suspended");
        }
        Ok(a)
    }

    fn prepaid(&self, id: AccountId) -> bool {
        matches!(self.accounts[&id].kind, Kind::Wallet { prepaid: true })
    }

    /// Removes an increase that ran out, as every change of a limit does first.
    fn revert_expired(&mut self, id: AccountId, now: i64) {
        let a = self.accounts.get_mut(&id).unwrap();
        if a.increase.is_some_and(|(_, until)| until <= now) {
            a.increase = None;
        }
    }
}

/// Three engines in lockstep over three databases: warm, cold, and randomly evicted (and
/// bounded to a dozen accounts, and on SQLite to two unfolded balances) with restarts. Each
/// step's answer must be the same from all three.
struct Engines {
    warm: Harness,
    cold: Harness,
    chaos: Option<Harness>,
    /// Each engine's grants, read from its database.
    grants: Vec<std::sync::Arc<dyn purse_store::GrantStore>>,
}

impl Engines {
    fn new(url: impl Fn(&str) -> String, seed: u64) -> Engines {
        let cold = EngineConfig { eviction: Eviction::Everything, ..EngineConfig::default() };
        // The chaos engine also keeps at most a dozen accounts and three parties, so the
        // emptying of the cache past its bound runs at most batches.
        let chaos = EngineConfig {
            eviction: Eviction::Random { seed },
            cached_accounts_max: 12,
            cached_parties_max: 3,
            ..EngineConfig::default()
        };
        let warm = Harness::on(&url("warm"));
        let cold = Harness::with_config(&url("cold"), cold);
        // On SQLite it also keeps at most two recent balances unfolded (issue 22), so nearly
        // every batch folds balances back from the tail.
        let chaos_url = match url("chaos") {
            u if u.starts_with("sqlite://") => format!("{u}?tail_rows=2"),
            u => u,
        };
        let chaos = Harness::with_config(&chaos_url, chaos);
        let grants = [&warm, &cold, &chaos].iter().map(|h| purse::open_side(&h.url).expect("side").grants).collect();
        Engines { warm, cold, chaos: Some(chaos), grants }
    }

    fn all(&self) -> [&Harness; 3] {
        [&self.warm, &self.cold, self.chaos.as_ref().expect("running")]
    }

    fn run(&self, command: &Command, ctx: &str) -> CommandResult {
        let [warm, cold, chaos] = self.all().map(|h| h.run(command.clone()));
        assert_eq!(warm, cold, "{ctx}: a cold cache answered otherwise for {command:?}");
        assert_eq!(warm, chaos, "{ctx}: an evicted cache answered otherwise for {command:?}");
        warm
    }

    fn advance(&self, us: i64) {
        for h in self.all() {
            h.clock.advance_micros(us);
        }
    }

    fn restart_chaos(&mut self) {
        let h = self.chaos.take().expect("running");
        self.chaos = Some(h.restarted());
    }
}

struct Sim {
    engines: Engines,
    model: Model,
    rng: Rng,
    seed: u64,
    step: usize,
    usd: CurrencyCode,
    n: u64,
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("PURSE_SIM_SEED") {
        return vec![s.parse().expect("PURSE_SIM_SEED is a number")];
    }
    let mut seeds = FIXED_SEEDS.to_vec();
    let extra: u64 = std::env::var("PURSE_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut rng =
        Rng::new(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    seeds.extend((0..extra).map(|_| rng.next_u64()));
    seeds
}

#[test]
fn simulation_agrees_with_the_reference_model_whatever_the_cache_holds() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} on SQLite (replay with PURSE_SIM_SEED={seed})");
        run(seed, |_| sqlite_url());
    }
}

/// The same simulation on PostgreSQL, with fewer seeds (each step is a network round trip).
#[test]
fn simulation_agrees_with_the_reference_model_on_postgres() {
    for seed in &FIXED_SEEDS[..2] {
        eprintln!("simulation seed {seed} on PostgreSQL");
        run(*seed, |which| pg_url(&format!("simulation_{seed}_{which}")));
    }
}

fn run(seed: u64, url: impl Fn(&str) -> String) {
    let engines = Engines::new(url, seed);
    let usd = engines.warm.usd.code;
    let mut sim = Sim { engines, model: Model::default(), rng: Rng::new(seed), seed, step: 0, usd, n: 0 };
    // A few parties to start from; the simulation makes more.
    for _ in 0..2 {
        sim.step_with(Sim::new_reseller);
    }
    for _ in 0..4 {
        sim.step_with(Sim::new_customer);
    }
    for step in 0..STEPS {
        sim.step = step;
        sim.one_step();
        sim.check();
        if sim.rng.chance(3) {
            sim.engines.restart_chaos();
        }
    }
    let m = &sim.model;
    eprintln!(
        "seed {seed}: {} grants ({} closed, {} rolled over), {} charges paid by grants, {} holds on grants",
        m.grants.len(),
        m.grants.values().filter(|g| !g.open).count(),
        m.silent_ids,
        m.charge_parts.values().filter(|p| !p.is_empty()).count(),
        m.held_on_grants,
    );
}

impl Sim {
    fn ctx(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    fn id(&mut self) -> purse_core::ClientId {
        self.n += 1;
        cid(&format!("sim-{}", self.n))
    }

    fn money(&self, units: i64) -> Money {
        Money { amount: Amount(units), currency: self.usd }
    }

    fn now(&self) -> i64 {
        self.engines.warm.now().0
    }

    fn step_with(&mut self, make: fn(&mut Sim) -> Command) {
        let now = self.now();
        self.model.expire(now);
        let command = make(self);
        let result = self.engines.run(&command, &self.ctx());
        self.check_and_apply(&command, &result, now);
    }

    fn pick(&mut self, filter: impl Fn(&MAccount) -> bool) -> AccountId {
        let mut ids: Vec<AccountId> =
            self.model.accounts.iter().filter(|(_, a)| filter(a)).map(|(id, _)| *id).collect();
        ids.sort();
        if ids.is_empty() || self.rng.chance(3) {
            return AccountId(777_777);
        }
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    fn any_account(&mut self) -> AccountId {
        self.pick(|_| true)
    }

    fn party(&mut self, reseller: bool) -> PartyId {
        let mut ids: Vec<PartyId> =
            self.model.parties.iter().filter(|(_, p)| p.reseller == reseller).map(|(id, _)| *id).collect();
        ids.sort();
        if ids.is_empty() || self.rng.chance(3) {
            return PartyId(888_888);
        }
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    fn amount(&mut self) -> i64 {
        1 + self.rng.below(1500) as i64
    }

    fn note(&mut self) -> ChangeNote {
        ChangeNote { by: "sim".into(), reason: self.rng.chance(50).then(|| "simulated".into()) }
    }

    /// A note for a posting made for someone else: now and then with a reason that breaks the
    /// text rules (a direction override), which the ledger refuses however the command came.
    fn posting_note(&mut self) -> ChangeNote {
        match self.rng.chance(10) {
            true => ChangeNote { by: "sim".into(), reason: Some("moved \u{202e}back".into()) },
            false => self.note(),
        }
    }

    fn new_reseller(&mut self) -> Command {
        Command::CreateReseller { client_id: self.id(), name: "Reseller".into() }
    }

    fn new_customer(&mut self) -> Command {
        let reseller = self.rng.chance(60).then(|| self.party(true));
        let billing = if self.rng.chance(50) { Billing::Prepaid } else { Billing::Postpaid };
        let credit_limit =
            Amount(if billing == Billing::Postpaid || self.rng.chance(5) { self.rng.below(3000) as i64 } else { 0 });
        Command::CreateCustomer {
            client_id: self.id(),
            name: "Customer".into(),
            reseller,
            billing,
            currency: self.usd,
            credit_limit,
        }
    }

    fn one_step(&mut self) {
        let roll = self.rng.below(100);
        if roll < 5 {
            // Time passes: holds expire, temporary increases and grants run out. Now and
            // then to the very instant a grant expires, with a restart there.
            let now = self.now();
            let next_expiry =
                self.model.grants.values().filter(|g| g.open).filter_map(|g| g.expires).filter(|e| *e > now).min();
            match next_expiry {
                Some(e) if self.rng.chance(40) => {
                    self.engines.advance(e - now);
                    self.engines.restart_chaos();
                }
                _ => self.engines.advance((1 + self.rng.below(90)) as i64 * 1_000_000),
            }
            return;
        }
        let now = self.now();
        self.model.expire(now);
        let command = self.generate(roll, now);
        let result = self.engines.run(&command, &self.ctx());
        self.check_and_apply(&command, &result, now);
    }

    #[allow(clippy::too_many_lines)]
    fn generate(&mut self, roll: u64, now: i64) -> Command {
        match roll {
            5..=6 => self.new_reseller(),
            7..=9 => self.new_customer(),
            10..=12 => {
                let (party, kind) = match self.rng.below(3) {
                    0 => (self.party(true), NewAccountKind::MasterWallet { currency: self.usd }),
                    1 => (self.party(false), NewAccountKind::SubscriberDebit),
                    _ => (
                        self.party(false),
                        NewAccountKind::SubscriberCredit { credit_limit: Amount(self.rng.below(2000) as i64) },
                    ),
                };
                Command::OpenAccount { client_id: self.id(), party, kind }
            }
            13 => Command::CloseAccount { account: self.any_account() },
            14..=15 => {
                let limit = if self.rng.chance(10) { -1 } else { self.rng.below(3000) as i64 };
                let note = self.note();
                Command::SetCreditLimit { account: self.any_account(), credit_limit: Amount(limit), note }
            }
            16..=17 => {
                let until = now + (self.rng.below(120) as i64 - 10) * 1_000_000;
                let increase = (!self.rng.chance(15)).then(|| (Amount(self.rng.below(2000) as i64), Timestamp(until)));
                let note = self.note();
                Command::SetTemporaryIncrease { account: self.any_account(), increase, note }
            }
            18 => {
                let account = self.any_account();
                let until = self.model.accounts.get(&account).and_then(|a| a.increase).map_or(now, |(_, u)| u);
                Command::RevertIncrease { account, valid_until: Timestamp(until) }
            }
            19 => {
                let n = if self.rng.chance(5) { 17 } else { self.rng.below(4) as usize };
                let thresholds = (0..n).map(|_| Amount(self.rng.below(2000) as i64 - 500)).collect();
                Command::SetThresholds { account: self.any_account(), thresholds }
            }
            20 => Command::SetSubscriberTransfers { party: self.party(false), allowed: self.rng.chance(60) },
            22 | 98 => {
                let party = self.party(false);
                let mut accounts: Vec<AccountId> =
                    self.model.accounts.iter().filter(|(_, a)| a.party == party).map(|(id, _)| *id).collect();
                accounts.sort();
                if self.rng.chance(10) {
                    accounts.push(self.any_account());
                }
                Command::Suspend { party, accounts, suspended: self.rng.chance(60) }
            }
            21 => {
                let party = self.party(false);
                let mut accounts: Vec<AccountId> =
                    self.model.accounts.iter().filter(|(_, a)| a.party == party).map(|(id, _)| *id).collect();
                accounts.sort();
                if self.rng.chance(10) {
                    accounts.push(self.any_account());
                }
                let period_end = Timestamp(now - self.rng.below(3) as i64 * 1_000_000);
                Command::Invoice { party, accounts, period_end }
            }
            23 => Command::CreateCurrency { code: CurrencyCode::parse("EUR").unwrap(), scale: 2 },
            24..=42 => {
                let account = self.pick(|a| !matches!(a.kind, Kind::Master));
                let units = if self.rng.chance(4) { 0 } else { self.amount() };
                let refuse = self.rng.chance(50);
                let service = self.service();
                Command::Charge(NewCharge {
                    client_id: self.id(),
                    account,
                    money: self.money(units),
                    service: service.map(str::to_owned),
                    at: None,
                    metadata: None,
                    refuse_if_insufficient: refuse,
                })
            }
            50..=52 => {
                let account = self.any_account();
                let units = self.amount();
                let method = if self.rng.chance(50) { PaymentMethod::Card } else { PaymentMethod::Cash };
                let note = self.rng.chance(50).then(|| self.posting_note());
                Command::Refund {
                    client_id: self.id(),
                    account,
                    money: self.money(units),
                    method,
                    metadata: None,
                    note,
                }
            }
            43..=49 => {
                let account = self.any_account();
                let units = self.amount();
                Command::Payment {
                    client_id: self.id(),
                    account,
                    money: self.money(units),
                    method: PaymentMethod::Card,
                    metadata: None,
                }
            }
            53..=62 => {
                let kind = match self.rng.below(4) {
                    0 => TransferKind::Issue,
                    1 => TransferKind::Recharge,
                    _ => TransferKind::Transfer,
                };
                let source = if kind == TransferKind::Transfer {
                    self.any_account()
                } else {
                    self.pick(|a| a.kind == Kind::Master)
                };
                let target = self.any_account();
                let units = self.amount();
                Command::Transfer {
                    client_id: self.id(),
                    source,
                    target,
                    money: self.money(units),
                    kind,
                    metadata: None,
                    note: None,
                }
            }
            63..=65 => {
                let account = self.any_account();
                let units = self.amount();
                let direction = if self.rng.chance(50) { AdjustDirection::Credit } else { AdjustDirection::Debit };
                let reason = (!self.rng.chance(10)).then(|| "correction".to_owned());
                let category = AdjustCategory::ALL[self.rng.below(AdjustCategory::ALL.len() as u64) as usize];
                Command::Adjust {
                    client_id: self.id(),
                    account,
                    money: self.money(units),
                    direction,
                    category,
                    note: ChangeNote { by: "sim".into(), reason },
                    metadata: None,
                }
            }
            66..=74 => {
                let account = self.any_account();
                let units = self.amount();
                let ttl = (self.rng.below(120) as i64 - 5) * 1_000_000;
                let service = self.service();
                Command::Hold {
                    client_id: self.id(),
                    account,
                    money: self.money(units),
                    expires_at: Timestamp(now + ttl),
                    service: service.map(str::to_owned),
                    metadata: None,
                }
            }
            75..=81 => {
                let hold = self.some_hold();
                if self.rng.chance(50) {
                    Command::Release { client_id: self.id(), hold }
                } else {
                    let part = self.rng.chance(50).then(|| Amount(1 + self.rng.below(1600) as i64));
                    Command::Capture { client_id: self.id(), hold, amount: part }
                }
            }
            82..=86 => {
                let mut known: Vec<TransferId> = self.model.transfers.keys().copied().collect();
                known.sort();
                let transfer = if known.is_empty() || self.rng.chance(10) {
                    TransferId(987_654)
                } else {
                    known[self.rng.below(known.len() as u64) as usize]
                };
                let note = self.rng.chance(30).then(|| self.posting_note());
                Command::Reverse { client_id: self.id(), transfer, metadata: None, note }
            }
            87..=94 => self.new_grant(now),
            95..=96 => {
                let (account, grant) = self.some_grant();
                Command::ExpireGrant { account, grant }
            }
            97 => {
                let (account, grant) = self.some_grant();
                let reason = (!self.rng.chance(10)).then(|| "granted by mistake".to_owned());
                Command::VoidGrant { account, grant, note: ChangeNote { by: "sim".into(), reason } }
            }
            _ => self.retry(),
        }
    }

    /// The service of a charge or hold: voice mostly, SMS, or none.
    fn service(&mut self) -> Option<&'static str> {
        match self.rng.below(8) {
            0..=4 => Some("voice"),
            5..=6 => Some("sms"),
            _ => None,
        }
    }

    fn new_grant(&mut self, now: i64) -> Command {
        let account = self.any_account();
        let units = if self.rng.chance(5) { 0 } else { self.amount() };
        let priority = if self.rng.chance(4) { 0 } else { 1 + self.rng.below(3) as u32 * 5 };
        let effective_at = self.rng.chance(20).then(|| Timestamp(now + self.rng.below(60) as i64 * 1_000_000));
        let expires_at = self.rng.chance(75).then(|| Timestamp(now + (self.rng.below(300) as i64 - 5) * 1_000_000));
        let scope = match self.rng.below(3) {
            0 => vec!["voice".to_owned()],
            1 => vec!["sms".to_owned()],
            _ => Vec::new(),
        };
        let rollover = (expires_at.is_some() && self.rng.chance(30)).then(|| Rollover {
            max: Amount(self.rng.below(1000) as i64),
            valid_for_us: (1 + self.rng.below(120) as i64) * 1_000_000,
        });
        let purchased = self.rng.chance(20);
        let reason = (!self.rng.chance(5)).then(|| "welcome".to_owned());
        Command::Grant(NewGrant {
            client_id: self.id(),
            account,
            money: self.money(units),
            kind: if purchased { "purchased" } else { "promotional" }.into(),
            funding: if purchased { SystemRole::CardClearing } else { SystemRole::Grants },
            priority,
            effective_at,
            expires_at,
            scope,
            rollover,
            note: ChangeNote { by: "sim".into(), reason },
            metadata: None,
        })
    }

    fn some_grant(&mut self) -> (AccountId, GrantId) {
        let mut ids: Vec<(GrantId, AccountId)> = self.model.grants.iter().map(|(id, g)| (*id, g.account)).collect();
        ids.sort();
        if ids.is_empty() || self.rng.chance(8) {
            return (self.any_account(), GrantId(999_999));
        }
        let (grant, account) = ids[self.rng.below(ids.len() as u64) as usize];
        (account, grant)
    }

    fn some_hold(&mut self) -> HoldId {
        let mut ids: Vec<HoldId> = self.model.holds.keys().chain(self.model.resolved.keys()).copied().collect();
        ids.sort();
        if ids.is_empty() || self.rng.chance(5) {
            return HoldId(555_555);
        }
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    /// A retry of an earlier command: same content (must replay) or, half the time for
    /// charges, a different amount (must be refused as a conflict).
    fn retry(&mut self) -> Command {
        let mut keys: Vec<String> = self.model.posted.keys().cloned().collect();
        if keys.is_empty() {
            return self.new_reseller();
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
            Command::Grant(g) => Some(g.client_id.as_str().to_owned()),
            Command::Payment { client_id, .. }
            | Command::Refund { client_id, .. }
            | Command::Transfer { client_id, .. }
            | Command::Adjust { client_id, .. }
            | Command::Hold { client_id, .. }
            | Command::Capture { client_id, .. }
            | Command::Release { client_id, .. }
            | Command::Reverse { client_id, .. }
            | Command::CreateReseller { client_id, .. }
            | Command::CreateCustomer { client_id, .. }
            | Command::OpenAccount { client_id, .. } => Some(client_id.as_str().to_owned()),
            _ => None,
        }
    }

    fn check_and_apply(&mut self, command: &Command, result: &CommandResult, now: i64) {
        let ctx = self.ctx();
        let key = Self::client_key(command);
        if let Some((original, first)) = key.as_ref().and_then(|k| self.model.posted.get(k)).cloned() {
            if &original == command {
                assert_eq!(result, &Ok(with_replayed(first)), "{ctx}: a retry must replay the first outcome");
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
                self.apply(command, outcome, now);
                if let Some(k) = key {
                    self.model.posted.insert(k, (command.clone(), outcome.clone()));
                }
            }
            (Err(code), Err(r)) => assert_eq!(*code, r.code(), "{ctx}: {command:?}"),
            _ => panic!("{ctx}: model expected {expected:?}, engine answered {result:?} for {command:?}"),
        }
    }

    /// What the model says must happen: `Ok` to apply, or the rejection code, checked in the
    /// ledger's order.
    #[allow(clippy::too_many_lines)]
    fn predict(&self, command: &Command, now: i64) -> Result<(), &'static str> {
        let m = &self.model;
        match command {
            Command::CreateCurrency { .. } => {
                if m.eur {
                    Err("currency_exists")
                } else {
                    Ok(())
                }
            }
            Command::CreateReseller { .. } => Ok(()),
            Command::CreateCustomer { reseller, billing, credit_limit, .. } => {
                if reseller.is_some_and(|r| !m.parties.get(&r).is_some_and(|p| p.reseller)) {
                    return Err("reseller_not_found");
                }
                if credit_limit.0 < 0 {
                    return Err("credit_limit_must_not_be_negative");
                }
                if *billing == Billing::Prepaid && credit_limit.0 != 0 {
                    return Err("credit_limit_not_allowed_for_prepaid");
                }
                Ok(())
            }
            Command::OpenAccount { party, kind, .. } => {
                let p = m.parties.get(party).ok_or("party_not_found")?;
                match (kind, p.reseller) {
                    (NewAccountKind::MasterWallet { .. }, true) | (NewAccountKind::SubscriberDebit, false) => Ok(()),
                    (NewAccountKind::SubscriberCredit { credit_limit }, false) => {
                        if credit_limit.0 < 0 {
                            return Err("credit_limit_must_not_be_negative");
                        }
                        let wallet = m
                            .accounts
                            .iter()
                            .find(|(_, a)| a.party == *party && matches!(a.kind, Kind::Wallet { .. }))
                            .map(|(id, _)| *id)
                            .unwrap();
                        m.open_account(wallet).map(|_| ())
                    }
                    _ => Err("party_kind_mismatch"),
                }
            }
            Command::CloseAccount { account } => {
                let a = m.open_account(*account)?;
                if a.balance != 0 || m.children(*account) != 0 {
                    return Err("account_has_balance");
                }
                if a.reserved != 0 {
                    return Err("account_has_holds");
                }
                Ok(())
            }
            Command::SetCreditLimit { account, credit_limit, .. } => {
                m.open_account(*account)?;
                if credit_limit.0 < 0 {
                    return Err("credit_limit_must_not_be_negative");
                }
                if m.prepaid(*account) && credit_limit.0 != 0 {
                    return Err("credit_limit_not_allowed_for_prepaid");
                }
                Ok(())
            }
            Command::SetTemporaryIncrease { account, increase, .. } => {
                m.open_account(*account)?;
                if let Some((amount, until)) = increase {
                    if m.prepaid(*account) {
                        return Err("credit_limit_not_allowed_for_prepaid");
                    }
                    if !amount.is_positive() {
                        return Err("temporary_increase_must_be_positive");
                    }
                    if until.0 <= now {
                        return Err("valid_until_must_be_in_future");
                    }
                }
                Ok(())
            }
            Command::RevertIncrease { account, .. } => m.accounts.get(account).map(|_| ()).ok_or("account_not_found"),
            Command::SetThresholds { account, thresholds } => {
                m.open_account(*account)?;
                if thresholds.len() > purse_core::command::THRESHOLDS_MAX {
                    return Err("thresholds_too_many");
                }
                Ok(())
            }
            Command::SetSubscriberTransfers { party, .. } => match m.parties.get(party) {
                None => Err("party_not_found"),
                Some(p) if p.reseller => Err("party_kind_mismatch"),
                Some(_) => Ok(()),
            },
            Command::Invoice { party, accounts, period_end } => {
                let p = m.parties.get(party).ok_or("party_not_found")?;
                if p.reseller {
                    return Err("party_kind_mismatch");
                }
                if p.invoiced_until.is_some_and(|u| u >= period_end.0) {
                    return Err("already_invoiced");
                }
                for id in accounts {
                    match m.accounts.get(id) {
                        None => return Err("account_not_found"),
                        Some(a) if a.party != *party => return Err("account_of_other_party"),
                        Some(_) => {}
                    }
                }
                Ok(())
            }
            Command::Suspend { party, accounts, .. } => {
                let p = m.parties.get(party).ok_or("party_not_found")?;
                if p.reseller {
                    return Err("party_kind_mismatch");
                }
                for id in accounts {
                    match m.accounts.get(id) {
                        None => return Err("account_not_found"),
                        Some(a) if a.party != *party => return Err("account_of_other_party"),
                        Some(_) => {}
                    }
                }
                Ok(())
            }
            Command::Charge(c) => {
                m.spending(c.account, c.money.amount.0)?;
                let spend = Use::Service(service_of(&c.service));
                if c.refuse_if_insufficient && m.available_for(c.account, now, spend) < c.money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Grant(g) => {
                if !(1..=1000).contains(&g.priority) {
                    return Err("grant_priority_out_of_range");
                }
                let effective = g.effective_at.map_or(now, |t| t.0);
                if g.expires_at.is_some_and(|e| e.0 <= effective || e.0 <= now) {
                    return Err("grant_expiry_must_follow_effective");
                }
                if g.note.reason.is_none() {
                    return Err("reason_must_not_be_empty");
                }
                let a = m.spendable(g.account, g.money.amount.0)?;
                if a.kind == Kind::Master {
                    return Err("grant_account_kind");
                }
                Ok(())
            }
            Command::ExpireGrant { account, .. } => m.accounts.get(account).map(|_| ()).ok_or("account_not_found"),
            Command::VoidGrant { account, grant, note } => {
                if note.reason.is_none() {
                    return Err("reason_must_not_be_empty");
                }
                m.open_account(*account)?;
                let g = m.grants.get(grant).filter(|g| g.account == *account && g.open).ok_or("grant_not_found")?;
                if g.remaining == 0 {
                    return Err("grant_closed");
                }
                if !g.free || g.reserved > 0 {
                    return Err("grant_not_voidable");
                }
                Ok(())
            }
            Command::Payment { account, money, .. } => m.spendable(*account, money.amount.0).map(|_| ()),
            Command::Refund { account, money, note, .. } => {
                readable(note.as_ref())?;
                m.spendable(*account, money.amount.0)?;
                if m.available_for(*account, now, Use::Cash) < money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Transfer { source, target, money, kind, .. } => {
                if source == target {
                    return Err("accounts_must_differ");
                }
                let from = m.spending(*source, money.amount.0)?;
                let to = m.spendable(*target, money.amount.0)?;
                let subscriber = |a: &MAccount| matches!(a.kind, Kind::SubDebit | Kind::SubCredit { .. });
                if subscriber(from) && subscriber(to) {
                    if from.party != to.party {
                        return Err("other_customer");
                    }
                    if !m.parties[&from.party].transfers_allowed {
                        return Err("transfers_not_allowed");
                    }
                }
                if *kind != TransferKind::Transfer {
                    if from.kind != Kind::Master {
                        return Err("issue_needs_master_wallet");
                    }
                    let customer = &m.parties[&to.party];
                    if customer.reseller || customer.of != Some(from.party) {
                        return Err("not_resellers_customer");
                    }
                }
                if m.available_for(*source, now, Use::Cash) < money.amount.0.into() {
                    return Err("insufficient_funds");
                }
                Ok(())
            }
            Command::Adjust { account, money, note, .. } => {
                if note.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err("reason_must_not_be_empty");
                }
                m.spendable(*account, money.amount.0).map(|_| ())
            }
            Command::Hold { account, money, expires_at, service, .. } => {
                m.spending(*account, money.amount.0)?;
                if expires_at.0 <= now {
                    return Err("hold_expiry_must_be_in_future");
                }
                if m.available_for(*account, now, Use::Service(service_of(service))) < money.amount.0.into() {
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
                    Some(a) if a.0 <= 0 => Err("amount_must_be_positive"),
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
            Command::Reverse { transfer, note, .. } => {
                readable(note.as_ref())?;
                match m.transfers.get(transfer) {
                    None => Err("transfer_not_found"),
                    Some((.., true, _)) => Err("transfer_already_reversed"),
                    Some(_) => Ok(()),
                }
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    fn apply(&mut self, command: &Command, outcome: &Outcome, now: i64) {
        let ctx = self.ctx();
        let m = &mut self.model;
        let account = |party, kind| MAccount {
            kind,
            party,
            balance: 0,
            reserved: 0,
            limit: 0,
            increase: None,
            open: true,
            suspended: false,
            uninvoiced: 0,
            thresholds: Vec::new(),
        };
        match (command, outcome) {
            (Command::CreateCurrency { .. }, Outcome::CurrencyCreated) => m.eur = true,
            (Command::CreateReseller { .. }, Outcome::PartyCreated { party, .. }) => {
                m.parties.insert(
                    *party,
                    MParty { reseller: true, of: None, transfers_allowed: false, invoiced_until: None },
                );
            }
            (
                Command::CreateCustomer { reseller, billing, credit_limit, .. },
                Outcome::PartyCreated { party, wallet: Some(w), .. },
            ) => {
                m.parties.insert(
                    *party,
                    MParty { reseller: false, of: *reseller, transfers_allowed: false, invoiced_until: None },
                );
                let mut a = account(*party, Kind::Wallet { prepaid: *billing == Billing::Prepaid });
                a.limit = credit_limit.0.into();
                m.accounts.insert(*w, a);
            }
            (Command::OpenAccount { party, kind, .. }, Outcome::AccountOpened { account: id, .. }) => {
                let (k, limit) = match kind {
                    NewAccountKind::MasterWallet { .. } => (Kind::Master, 0),
                    NewAccountKind::SubscriberDebit => (Kind::SubDebit, 0),
                    NewAccountKind::SubscriberCredit { credit_limit } => {
                        let wallet = m
                            .accounts
                            .iter()
                            .find(|(_, a)| a.party == *party && matches!(a.kind, Kind::Wallet { .. }))
                            .map(|(id, _)| *id)
                            .unwrap();
                        (Kind::SubCredit { parent: wallet }, i128::from(credit_limit.0))
                    }
                };
                let mut a = account(*party, k);
                a.limit = limit;
                // A suspended customer's new account starts suspended.
                a.suspended = m
                    .accounts
                    .values()
                    .any(|w| w.party == *party && matches!(w.kind, Kind::Wallet { .. }) && w.suspended);
                m.accounts.insert(*id, a);
            }
            (Command::CloseAccount { account: id }, Outcome::AccountUpdated { .. }) => {
                let a = m.accounts.get_mut(id).unwrap();
                (a.open, a.suspended) = (false, false);
            }
            (Command::Suspend { accounts, suspended, .. }, Outcome::PartyUpdated { .. }) => {
                for id in accounts {
                    let a = m.accounts.get_mut(id).unwrap();
                    if a.open {
                        a.suspended = *suspended;
                    }
                }
            }
            (Command::SetCreditLimit { account: id, credit_limit, .. }, Outcome::AccountUpdated { .. }) => {
                m.revert_expired(*id, now);
                m.accounts.get_mut(id).unwrap().limit = credit_limit.0.into();
            }
            (Command::SetTemporaryIncrease { account: id, increase, .. }, Outcome::AccountUpdated { .. }) => {
                m.revert_expired(*id, now);
                m.accounts.get_mut(id).unwrap().increase = increase.map(|(a, u)| (i128::from(a.0), u.0));
            }
            (Command::RevertIncrease { account: id, valid_until }, Outcome::AccountUpdated { .. }) => {
                let a = m.accounts.get_mut(id).unwrap();
                if a.increase.is_some_and(|(_, until)| until <= now && until == valid_until.0) {
                    a.increase = None;
                }
            }
            (Command::SetThresholds { account: id, thresholds }, Outcome::AccountUpdated { .. }) => {
                let mut sorted: Vec<i64> = thresholds.iter().map(|t| t.0).collect();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                sorted.dedup();
                m.accounts.get_mut(id).unwrap().thresholds = sorted;
            }
            (Command::SetSubscriberTransfers { party, allowed }, Outcome::PartyUpdated { .. }) => {
                m.parties.get_mut(party).unwrap().transfers_allowed = *allowed
            }
            (Command::Invoice { party, accounts, period_end }, Outcome::Invoiced { issued, .. }) => {
                m.parties.get_mut(party).unwrap().invoiced_until = Some(period_end.0);
                let subtotal: i128 = {
                    let mut ids = accounts.clone();
                    ids.sort();
                    ids.dedup();
                    ids.iter().map(|id| m.accounts[id].uninvoiced).sum()
                };
                assert_eq!(*issued, subtotal > 0, "{ctx}: an invoice is issued when there is something to invoice");
                if *issued {
                    for id in accounts {
                        m.accounts.get_mut(id).unwrap().uninvoiced = 0;
                    }
                }
            }
            (Command::Charge(c), Outcome::Posted { transfer, .. }) => {
                m.post(Some(c.account), None, c.money.amount.0.into());
                m.accounts.get_mut(&c.account).unwrap().uninvoiced += i128::from(c.money.amount.0);
                m.transfers.insert(*transfer, (Some(c.account), None, c.money.amount.0.into(), false, true));
                let parts = m.draw(c.account, c.money.amount.0.into(), service_of(&c.service), now, false);
                m.accounts.get_mut(&c.account).unwrap().uninvoiced -= parts.iter().map(|p| p.1).sum::<i128>();
                m.charge_parts.insert(*transfer, parts);
            }
            (Command::Grant(g), Outcome::Posted { transfer, .. }) => {
                assert_eq!(transfer.0, m.posted_count + m.silent_ids + 1, "{ctx}: postings are numbered in order");
                m.post(None, Some(g.account), g.money.amount.0.into());
                let grant = MGrant {
                    account: g.account,
                    priority: g.priority,
                    effective: g.effective_at.map_or(now, |t| t.0),
                    expires: g.expires_at.map(|t| t.0),
                    scope: g.scope.first().map(|s| service_of(&Some(s.clone())).expect("a known service")),
                    remaining: g.money.amount.0.into(),
                    reserved: 0,
                    open: true,
                    free: g.funding == SystemRole::Grants,
                    rollover: g.rollover.map(|r| (i128::from(r.max.0), r.valid_for_us)),
                };
                m.grants.insert(GrantId(transfer.0), grant);
            }
            (Command::ExpireGrant { account, grant }, Outcome::AccountUpdated { .. }) => {
                let due = m
                    .grants
                    .get(grant)
                    .filter(|g| g.account == *account && g.open && g.expires.is_some_and(|e| e <= now));
                if let Some(g) = due.cloned() {
                    let rolled = g.rollover.map_or(0, |(max, _)| max.min(g.remaining));
                    let breakage = g.remaining - rolled;
                    if breakage > 0 {
                        m.post(Some(*account), None, breakage);
                    }
                    let closed = m.grants.get_mut(grant).unwrap();
                    (closed.open, closed.remaining, closed.reserved) = (false, 0, 0);
                    if let (Some((_, valid_for)), true) = (g.rollover, rolled > 0) {
                        let id = GrantId(m.posted_count + m.silent_ids + 1);
                        m.silent_ids += 1;
                        let expires = g.expires.unwrap();
                        let next = MGrant {
                            effective: expires,
                            expires: Some(expires + valid_for),
                            remaining: rolled,
                            reserved: 0,
                            open: true,
                            rollover: None,
                            ..g
                        };
                        m.grants.insert(id, next);
                    }
                }
            }
            (Command::VoidGrant { account, grant, .. }, Outcome::Posted { .. }) => {
                let g = m.grants.get_mut(grant).unwrap();
                let remaining = g.remaining;
                (g.open, g.remaining) = (false, 0);
                m.post(Some(*account), None, remaining);
            }
            (Command::Payment { account, money, .. }, Outcome::Posted { transfer, .. }) => {
                m.post(None, Some(*account), money.amount.0.into());
                m.transfers.insert(*transfer, (None, Some(*account), money.amount.0.into(), false, false));
            }
            (Command::Refund { account, money, .. }, Outcome::Posted { transfer, .. }) => {
                m.post(Some(*account), None, money.amount.0.into());
                m.transfers.insert(*transfer, (Some(*account), None, money.amount.0.into(), false, false));
            }
            (Command::Transfer { source, target, money, .. }, Outcome::Posted { transfer, .. }) => {
                m.post(Some(*source), Some(*target), money.amount.0.into());
                m.transfers.insert(*transfer, (Some(*source), Some(*target), money.amount.0.into(), false, false));
            }
            (Command::Adjust { account, money, direction, .. }, Outcome::Posted { transfer, .. }) => {
                let (debit, credit) = match direction {
                    AdjustDirection::Credit => (None, Some(*account)),
                    AdjustDirection::Debit => (Some(*account), None),
                };
                m.post(debit, credit, money.amount.0.into());
                m.transfers.insert(*transfer, (debit, credit, money.amount.0.into(), false, false));
            }
            (Command::Hold { account, money, expires_at, service, .. }, Outcome::HoldPlaced { hold, .. }) => {
                m.accounts.get_mut(account).unwrap().reserved += i128::from(money.amount.0);
                m.holds.insert(*hold, (*account, money.amount.0.into(), expires_at.0));
                let service = service_of(service);
                let parts = m.draw(*account, money.amount.0.into(), service, now, true);
                m.held_on_grants += u64::from(!parts.is_empty());
                m.hold_parts.insert(*hold, parts);
                m.hold_service.insert(*hold, service);
            }
            (Command::Capture { hold, amount, .. }, Outcome::HoldCaptured { transfer, .. }) => {
                let (a, held, _) = m.holds.remove(hold).unwrap();
                let service = m.hold_service.get(hold).copied().flatten();
                m.unreserve(*hold);
                m.accounts.get_mut(&a).unwrap().reserved -= held;
                let captured = amount.map_or(held, |x| x.0.into());
                m.post(Some(a), None, captured);
                m.accounts.get_mut(&a).unwrap().uninvoiced += captured;
                m.transfers.insert(*transfer, (Some(a), None, captured, false, true));
                let parts = m.draw(a, captured, service, now, false);
                m.accounts.get_mut(&a).unwrap().uninvoiced -= parts.iter().map(|p| p.1).sum::<i128>();
                m.charge_parts.insert(*transfer, parts);
                assert!(m.resolved.insert(*hold, "captured").is_none(), "a hold resolves once");
            }
            (Command::Release { hold, .. }, Outcome::HoldReleased { .. }) => {
                let (a, held, _) = m.holds.remove(hold).unwrap();
                m.unreserve(*hold);
                m.accounts.get_mut(&a).unwrap().reserved -= held;
                assert!(m.resolved.insert(*hold, "released").is_none(), "a hold resolves once");
            }
            (Command::Reverse { transfer, .. }, Outcome::Posted { .. }) => {
                let entry = m.transfers.get_mut(transfer).unwrap();
                entry.3 = true;
                let (debit, credit, amount, _, charge) = *entry;
                m.post(credit, debit, amount);
                if let (true, Some(d)) = (charge, debit) {
                    let a = m.accounts.get_mut(&d).unwrap();
                    let paid: i128 = m.charge_parts.get(transfer).map_or(0, |p| p.iter().map(|x| x.1).sum());
                    a.uninvoiced = (a.uninvoiced - (amount - paid)).max(i128::from(i64::MIN));
                    for (g, part) in m.charge_parts.get(transfer).cloned().unwrap_or_default() {
                        let grant = m.grants.get_mut(&g).unwrap();
                        if grant.open {
                            grant.remaining += part;
                        }
                    }
                }
            }
            other => panic!("{ctx}: unexpected pair {other:?}"),
        }
    }

    /// The books hold their invariants, every account is as the model says, and the three
    /// engines stored exactly the same.
    fn check(&self) {
        let ctx = self.ctx();
        let now = self.now();
        let mut snapshots = Vec::new();
        for h in self.engines.all() {
            let reader = h.engine.reader();
            let audit = reader.audit().unwrap();
            assert!(audit.is_consistent(), "{ctx}: {audit:?}");
            assert_eq!(audit.transfer_count, self.model.posted_count, "{ctx}: postings");
            let accounts = reader.accounts().unwrap();
            let parties = reader.parties(purse_store::PartyQuery { limit: 500, ..Default::default() }).unwrap();
            let holds: Vec<_> = (1..=self.model.holds.len() + self.model.resolved.len() + 1)
                .map(|i| reader.hold(HoldId(i as u64)).unwrap())
                .collect();
            snapshots.push(format!("{accounts:?}\n{parties:?}\n{holds:?}"));
        }
        assert!(snapshots.windows(2).all(|w| w[0] == w[1]), "{ctx}: the engines stored different states");
        let mut ids: Vec<AccountId> = self.model.accounts.keys().copied().collect();
        ids.sort();
        let query = purse_store::GrantQuery { accounts: ids, open_only: false, before: None, limit: 100_000 };
        let stored: Vec<_> = self.engines.grants.iter().map(|g| g.grants(&query).unwrap()).collect();
        assert!(stored.windows(2).all(|w| w[0] == w[1]), "{ctx}: the engines stored different grants");
        let got: BTreeMap<GrantId, (AccountId, i128, i128, bool)> = stored[0]
            .iter()
            .map(|g| {
                let open = g.state == purse_core::GrantState::Open;
                (g.id, (g.account, i128::from(g.remaining.0), i128::from(g.reserved.0), open))
            })
            .collect();
        let want: BTreeMap<GrantId, (AccountId, i128, i128, bool)> =
            self.model.grants.iter().map(|(id, g)| (*id, (g.account, g.remaining, g.reserved, g.open))).collect();
        assert_eq!(got, want, "{ctx}: grants");
        let reader = self.engines.warm.engine.reader();
        for (id, a) in &self.model.accounts {
            let stored = reader.account(*id).unwrap().unwrap();
            let increase = stored.temporary_increase.map(|t| (i128::from(t.amount.0), t.valid_until.0));
            let thresholds: Vec<i64> = stored.thresholds.iter().map(|t| t.0).collect();
            let got = (
                i128::from(stored.balance.0),
                i128::from(stored.reserved.0),
                i128::from(stored.credit_limit.0),
                increase,
                stored.status,
                i128::from(stored.uninvoiced.0),
                thresholds,
            );
            let status = match (a.open, a.suspended) {
                (false, _) => purse_core::AccountStatus::Closed,
                (true, true) => purse_core::AccountStatus::Suspended,
                (true, false) => purse_core::AccountStatus::Open,
            };
            let want = (a.balance, a.reserved, a.limit, a.increase, status, a.uninvoiced, a.thresholds.clone());
            assert_eq!(got, want, "{ctx}: account {id}");
            let spendable = self.engines.warm.engine.spendable(*id, None).unwrap().unwrap().available.0;
            assert_eq!(
                i128::from(spendable),
                self.model.available(*id, now),
                "{ctx}: available of {id}: {stored:?} {a:?} children {}",
                self.model.children(*id)
            );
        }
        for (id, p) in &self.model.parties {
            let stored = reader.party(*id).unwrap().unwrap();
            assert_eq!(
                (stored.subscriber_transfers, stored.invoiced_until.map(|t| t.0)),
                (p.transfers_allowed, p.invoiced_until),
                "{ctx}: party {id}"
            );
        }
        for (hold, state) in &self.model.resolved {
            let stored = reader.hold(*hold).unwrap().unwrap();
            assert_eq!(purse_store::codec::hold_state(stored.state), *state, "{ctx}: hold {hold}");
        }
    }
}

/// A command's service as one of the model's words.
/// The model's own text rule for a note's reason: no control character and no direction
/// embedding, override or isolate.
fn readable(note: Option<&ChangeNote>) -> Result<(), &'static str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    match note.and_then(|n| n.reason.as_deref()).is_some_and(|r| r.chars().any(bad)) {
        true => Err("text_not_printable"),
        false => Ok(()),
    }
}

fn service_of(service: &Option<String>) -> Option<&'static str> {
    match service.as_deref() {
        None => None,
        Some("voice") => Some("voice"),
        Some("sms") => Some("sms"),
        Some(other) => panic!("the simulation has no service {other:?}"),
    }
}

fn with_replayed(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Posted { transfer, overdrawn, .. } => Outcome::Posted { transfer, overdrawn, replayed: true },
        Outcome::HoldPlaced { hold, .. } => Outcome::HoldPlaced { hold, replayed: true },
        Outcome::HoldCaptured { hold, transfer, .. } => Outcome::HoldCaptured { hold, transfer, replayed: true },
        Outcome::HoldReleased { hold, .. } => Outcome::HoldReleased { hold, replayed: true },
        Outcome::PartyCreated { party, wallet, .. } => Outcome::PartyCreated { party, wallet, replayed: true },
        Outcome::AccountOpened { account, .. } => Outcome::AccountOpened { account, replayed: true },
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
                note: None,
            })
        })
        .collect();
    let results = h.submit(items);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Rejection::InsufficientFunds { .. }))));
    assert_eq!(h.parts(a), (0, 0, 0));
}
