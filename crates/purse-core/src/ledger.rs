//! The ledger state machine: applies a batch of commands to in-memory state and returns
//! each command's result plus everything that must be written, in one piece.
//!
//! The ledger holds a *cache*: whatever accounts, parties and holds its owner (the engine)
//! loaded. Before `apply`, the owner asks [`Ledger::client_keys`] and [`Ledger::missing`]
//! what to load and puts it in place; `apply` itself never needs anything it was not given.

use std::collections::{HashMap, HashSet};

use crate::command::{
    AdjustCategory, AdjustDirection, ChangeNote, Command, CommandResult, Item, Money, NewAccountKind, NewCharge,
    NewGrant, Outcome, PaymentMethod, GRANT_KIND_LEN_MAX, GRANT_PRIORITY_MAX, GRANT_SCOPE_MAX, METADATA_LEN_MAX,
    NAME_LEN_MAX, REASON_LEN_MAX, SERVICE_LEN_MAX, THRESHOLDS_MAX,
};
use crate::model::{
    Account, AccountId, AccountKind, AccountStatus, Billing, ClientId, Direction, Event, EventId, EventKind, Grant,
    GrantId, GrantState, GrantUse, GrantUseKind, Hold, HoldId, HoldResolution, HoldState, InvoiceIssue,
    InvoicedAccount, LimitChange, LimitChangeKind, Party, PartyId, PartyKind, SystemRole, TemporaryIncrease, Timestamp,
    Transfer, TransferId, TransferKind,
};
use crate::money::{Amount, Currency, CurrencyCode, SCALE_MAX};
use crate::rejection::Rejection;

/// The next id of each kind of record; the ledger hands them out in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextIds {
    pub party: u64,
    pub account: u64,
    pub transfer: u64,
    pub hold: u64,
    pub event: u64,
}

/// The namespace a client id is unique in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Charges, payments, transfers, captures and reversals.
    Transfer(ClientId),
    Hold(ClientId),
    /// The release of a hold.
    Release(ClientId),
    Party(ClientId),
    Account(ClientId),
}

/// What an earlier use of a client id produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prior {
    Transfer(Transfer),
    /// A hold placed, or released, under the client id.
    Hold(Hold),
    Party(Party),
    Account(Account),
    /// A transfer posted earlier in this batch: an index into `BatchOutput::transfers`.
    InBatch(usize),
}

/// Records the engine looked up for one batch.
#[derive(Debug, Default)]
pub struct Lookups {
    pub prior: FastMap<ClientKey, Prior>,
    /// Holds no longer open, referenced by captures or releases.
    pub holds: FastMap<HoldId, Hold>,
    /// Transfers referenced by reversals, with the id of their reversal if any.
    pub transfers: FastMap<TransferId, (Transfer, Option<TransferId>)>,
    /// Ids the engine looked up and found absent, so they are not asked for again.
    pub absent_holds: FastSet<HoldId>,
    pub absent_transfers: FastSet<TransferId>,
    pub absent_accounts: FastSet<AccountId>,
    pub absent_parties: FastSet<PartyId>,
}

/// What the engine must load before `apply` can run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    pub accounts: Vec<AccountId>,
    pub parties: Vec<PartyId>,
    pub holds: Vec<HoldId>,
    pub transfers: Vec<TransferId>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.parties.is_empty() && self.holds.is_empty() && self.transfers.is_empty()
    }
}

/// A record a command reads besides its own fields. [`needs`] declares them, once, for
/// every command: loading ([`Ledger::missing`]) follows the declaration, and in debug builds
/// `apply` refuses (panics on) any lookup outside it, so the two cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// An account (and, for a credit subscriber account, the wallet it draws on).
    Account(AccountId),
    /// An account and the party that owns it.
    AccountAndParty(AccountId),
    Party(PartyId),
    /// A party and, if it is a customer, its wallet.
    CustomerWallet(PartyId),
    /// A hold, open or resolved, and the account of an open one.
    Hold(HoldId),
    /// A posted transfer, whether it was reversed, and its two accounts.
    Transfer(TransferId),
}

/// What `command` reads from the ledger's state: the one declaration of it.
pub fn needs(command: &Command, out: &mut Vec<Need>) {
    match command {
        Command::CreateCurrency { .. } | Command::CreateReseller { .. } => {}
        Command::CreateCustomer { reseller, .. } => out.extend(reseller.map(Need::Party)),
        Command::OpenAccount { party, .. } => out.push(Need::CustomerWallet(*party)),
        Command::CloseAccount { account }
        | Command::RevertIncrease { account, .. }
        | Command::SetThresholds { account, .. }
        | Command::Charge(NewCharge { account, .. })
        | Command::Payment { account, .. }
        | Command::Refund { account, .. }
        | Command::Grant(NewGrant { account, .. })
        | Command::ExpireGrant { account, .. }
        | Command::VoidGrant { account, .. }
        | Command::Hold { account, .. } => out.push(Need::Account(*account)),
        // The wallet's customer says whether it is prepaid.
        Command::SetCreditLimit { account, .. }
        | Command::SetTemporaryIncrease { account, .. }
        | Command::Adjust { account, .. } => out.push(Need::AccountAndParty(*account)),
        // Both owners decide: subscriber transfers stay within a customer that allows them,
        // an issue goes from a reseller's master wallet to its own customer.
        Command::Transfer { source, target, .. } => {
            out.push(Need::AccountAndParty(*source));
            out.push(Need::AccountAndParty(*target));
        }
        Command::SetSubscriberTransfers { party, .. } => out.push(Need::Party(*party)),
        Command::Invoice { party, accounts, .. } | Command::Suspend { party, accounts, .. } => {
            out.push(Need::Party(*party));
            out.extend(accounts.iter().copied().map(Need::Account));
        }
        Command::Capture { hold, .. } | Command::Release { hold, .. } => out.push(Need::Hold(*hold)),
        Command::Reverse { transfer, .. } => out.push(Need::Transfer(*transfer)),
    }
}

/// A record [`Ledger::resolve`] found a batch will read.
#[derive(Clone, Copy, Debug)]
enum Want {
    Account(AccountId),
    Party(PartyId),
    Hold(HoldId),
    Transfer(TransferId),
}

/// The accounts and parties a batch declared (debug builds check every lookup against it).
#[cfg(debug_assertions)]
#[derive(Default)]
struct Declared {
    accounts: FastSet<AccountId>,
    parties: FastSet<PartyId>,
}

/// Everything one batch changed, to be written in one transaction.
#[derive(Debug, Default)]
pub struct BatchOutput {
    pub results: Vec<CommandResult>,
    pub currencies: Vec<Currency>,
    pub parties: Vec<Party>,
    /// Existing parties whose settings changed, in their final state.
    pub parties_changed: Vec<Party>,
    /// Accounts opened by this batch, in their final state.
    pub accounts_new: Vec<Account>,
    /// Existing accounts whose state changed, in their final state (one row per account,
    /// however many commands touched it).
    pub accounts_changed: Vec<Account>,
    /// Those of `accounts_changed` whose settings changed too (status, limits, thresholds);
    /// the others changed only their balance parts.
    pub settings_changed: Vec<AccountId>,
    pub transfers: Vec<Transfer>,
    /// Holds placed or resolved, in their final state.
    pub holds: Vec<Hold>,
    pub events: Vec<Event>,
    /// Changes of credit limits, for the credit limit history.
    pub limit_changes: Vec<LimitChange>,
    /// Usage invoices issued, for the store to number and write.
    pub invoices: Vec<InvoiceIssue>,
    /// Money a person moved for someone else (adjustments, reversals, staff transfers),
    /// for the audit log, written with the postings.
    pub notes: Vec<MoneyNote>,
    /// Grants made, or closed, in their final state.
    pub grants: Vec<Grant>,
    /// For each account whose grants changed, the remainder and reservation of each of its
    /// open grants (grant, remaining, reserved), kept with the account's balance.
    pub grant_balances: Vec<(AccountId, Vec<GrantBalance>)>,
    /// What moved each grant's remainder.
    pub grant_uses: Vec<GrantUse>,
}

/// A grant's remainder and what holds reserved of it: (grant, remaining, reserved).
pub type GrantBalance = (GrantId, Amount, Amount);

/// A posting a person made on someone else's behalf, with who and why: the store records
/// it in the audit log in the transaction that posts it, so neither exists without the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyNote {
    pub transfer: TransferId,
    pub kind: TransferKind,
    /// The party whose money moved: the debited account's owner, else the credited one's.
    pub party: Option<PartyId>,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub at: Timestamp,
    pub by: String,
    pub reason: Option<String>,
    /// Of an adjustment: its category, from the system account on its other side.
    pub category: Option<AdjustCategory>,
}

/// One entry of the undo log kept while a linked chain is applied.
enum Undo {
    Account(AccountId, Option<Account>),
    Party(PartyId),
    PartyChanged(Party),
    OpenHold(HoldId, Option<Hold>),
    ResolvedHold(HoldId),
    Prior(ClientKey),
    Reversal(TransferId),
    Currency(CurrencyCode),
}

struct Checkpoint {
    next: NextIds,
    transfers: usize,
    events: usize,
    limit_changes: usize,
    invoices: usize,
    notes: usize,
    grant_uses: usize,
    undo: Vec<Undo>,
}

#[derive(Default)]
struct Scratch {
    output: BatchOutput,
    dirty_accounts: FastSet<AccountId>,
    /// Accounts whose settings (not just balances) changed.
    settings_changed: FastSet<AccountId>,
    new_accounts: Vec<AccountId>,
    new_parties: Vec<PartyId>,
    changed_parties: Vec<PartyId>,
    dirty_holds: Vec<HoldId>,
    /// Accounts some grant of which changed its remainder or reservation.
    grant_accounts: Vec<AccountId>,
    /// Grants made or closed (their whole row is written).
    grant_rows: Vec<(AccountId, GrantId)>,
    new_currencies: Vec<CurrencyCode>,
    checkpoint: Option<Checkpoint>,
    #[cfg(debug_assertions)]
    declared: Declared,
}

/// The in-memory ledger. See the module documentation for the load-then-apply protocol.
#[derive(Default)]
pub struct Ledger {
    pub currencies: FastMap<CurrencyCode, Currency>,
    pub system_accounts: FastMap<(CurrencyCode, SystemRole), AccountId>,
    /// Boxed so that growing the map moves pointers, not accounts: with a million accounts
    /// cached, the peak of a resize is what bounds memory.
    pub accounts: FastMap<AccountId, Box<Account>>,
    pub parties: FastMap<PartyId, Party>,
    /// Every open hold (the engine keeps all of them loaded).
    pub open_holds: FastMap<HoldId, Hold>,
    pub next: NextIds,
    scratch: Scratch,
}

/// The one place that says whether an operation may overdraw its account. Every path
/// that spends goes through [`Ledger::check_spend`] unless this says it may overdraw.
fn may_overdraw(kind: TransferKind, refuse_if_insufficient: bool) -> bool {
    match kind {
        // Usage already happened: post it and say so, unless the caller asked otherwise.
        TransferKind::Charge => !refuse_if_insufficient,
        // Corrections restore the truth whatever it does to the balance.
        TransferKind::Reversal | TransferKind::Adjustment => true,
        // A grant's expiry or void takes exactly its remainder, which is in the balance:
        // the account's own money does not change.
        TransferKind::Expiry | TransferKind::Void => true,
        TransferKind::Grant
        | TransferKind::Payment
        | TransferKind::Recharge
        | TransferKind::Transfer
        | TransferKind::Issue
        | TransferKind::Refund => false,
    }
}

fn clamp(value: i128) -> Amount {
    Amount(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// A text field's rules: at most `max` bytes, and printable (metadata may span lines,
/// everything else is one line), so both backends store exactly what was accepted.
fn check_text(value: &Option<String>, field: &'static str, max: usize) -> Result<(), Rejection> {
    let Some(v) = value else { return Ok(()) };
    if v.len() > max {
        return Err(Rejection::TextTooLong { field, max });
    }
    let printable = if field == "metadata" { crate::text::is_multi_line(v) } else { crate::text::is_single_line(v) };
    if !printable {
        return Err(Rejection::TextNotPrintable { field });
    }
    Ok(())
}

impl Ledger {
    // ---------------------------------------------------------------- loading protocol

    /// The client ids of a batch, to be looked up in the store before `apply`.
    pub fn client_keys(requests: &[&[Item]]) -> Vec<ClientKey> {
        requests
            .iter()
            .flat_map(|r| r.iter())
            .filter_map(|item| match &item.command {
                Command::Charge(c) => Some(ClientKey::Transfer(c.client_id.clone())),
                Command::Grant(g) => Some(ClientKey::Transfer(g.client_id.clone())),
                Command::Payment { client_id, .. }
                | Command::Refund { client_id, .. }
                | Command::Transfer { client_id, .. }
                | Command::Adjust { client_id, .. }
                | Command::Capture { client_id, .. }
                | Command::Reverse { client_id, .. } => Some(ClientKey::Transfer(client_id.clone())),
                Command::Hold { client_id, .. } => Some(ClientKey::Hold(client_id.clone())),
                Command::Release { client_id, .. } => Some(ClientKey::Release(client_id.clone())),
                Command::CreateReseller { client_id, .. } | Command::CreateCustomer { client_id, .. } => {
                    Some(ClientKey::Party(client_id.clone()))
                }
                Command::OpenAccount { client_id, .. } => Some(ClientKey::Account(client_id.clone())),
                Command::CreateCurrency { .. }
                | Command::CloseAccount { .. }
                | Command::SetCreditLimit { .. }
                | Command::SetTemporaryIncrease { .. }
                | Command::RevertIncrease { .. }
                | Command::SetSubscriberTransfers { .. }
                | Command::Invoice { .. }
                | Command::Suspend { .. }
                | Command::ExpireGrant { .. }
                | Command::VoidGrant { .. }
                | Command::SetThresholds { .. } => None,
            })
            .collect()
    }

    /// Calls `want` with every record the batch will read, as far as what is loaded already
    /// reveals (a party reveals its wallet, a transfer its accounts): the declared needs of
    /// every command ([`needs`]) and the accounts of the holds that expire at `now`.
    fn resolve(&self, requests: &[&[Item]], now: Timestamp, lookups: &Lookups, want: &mut dyn FnMut(Want)) {
        let account = |id: AccountId, want: &mut dyn FnMut(Want)| {
            want(Want::Account(id));
            if let Some(AccountKind::SubscriberCredit { parent }) = self.accounts.get(&id).map(|a| a.kind) {
                want(Want::Account(parent));
            }
        };
        for hold in self.open_holds.values() {
            if hold.expires_at <= now {
                account(hold.account, want);
            }
        }
        let mut declared = Vec::new();
        for item in requests.iter().flat_map(|r| r.iter()) {
            declared.clear();
            needs(&item.command, &mut declared);
            for need in &declared {
                match *need {
                    Need::Account(id) => account(id, want),
                    Need::AccountAndParty(id) => {
                        account(id, want);
                        if let Some(p) = self.accounts.get(&id).and_then(|a| a.party) {
                            want(Want::Party(p));
                        }
                    }
                    Need::Party(p) => want(Want::Party(p)),
                    Need::CustomerWallet(p) => {
                        want(Want::Party(p));
                        if let Some(PartyKind::Customer { wallet, .. }) = self.parties.get(&p).map(|p| &p.kind) {
                            account(*wallet, want);
                        }
                    }
                    Need::Hold(h) => match self.open_holds.get(&h) {
                        Some(hold) => account(hold.account, want),
                        None => want(Want::Hold(h)),
                    },
                    Need::Transfer(t) => {
                        want(Want::Transfer(t));
                        if let Some((t, _)) = lookups.transfers.get(&t) {
                            account(t.debit, want);
                            account(t.credit, want);
                        }
                    }
                }
            }
        }
    }

    /// What is referenced by the batch (or by holds expiring at `now`) and neither loaded
    /// nor known to be absent. Call repeatedly, loading what it names, until it is empty:
    /// loading a transfer or a party can reveal accounts to load.
    pub fn missing(&self, requests: &[&[Item]], now: Timestamp, lookups: &Lookups) -> Missing {
        let mut missing = Missing::default();
        self.resolve(requests, now, lookups, &mut |w| match w {
            Want::Account(id) => {
                if !self.accounts.contains_key(&id) && !lookups.absent_accounts.contains(&id) {
                    missing.accounts.push(id);
                }
            }
            Want::Party(id) => {
                if !self.parties.contains_key(&id) && !lookups.absent_parties.contains(&id) {
                    missing.parties.push(id);
                }
            }
            Want::Hold(id) => {
                if !lookups.holds.contains_key(&id) && !lookups.absent_holds.contains(&id) {
                    missing.holds.push(id);
                }
            }
            Want::Transfer(id) => {
                if !lookups.transfers.contains_key(&id) && !lookups.absent_transfers.contains(&id) {
                    missing.transfers.push(id);
                }
            }
        });
        missing.accounts.sort_unstable();
        missing.accounts.dedup();
        missing.parties.sort_unstable();
        missing.parties.dedup();
        missing.holds.sort_unstable();
        missing.holds.dedup();
        missing.transfers.sort_unstable();
        missing.transfers.dedup();
        missing
    }

    /// In debug builds, remembers what the batch declared (see [`needs`]), so that every
    /// lookup `apply` makes can be checked against it: a lookup of anything undeclared is a
    /// bug in `needs`, caught whatever the cache holds, instead of an answer that depends on it.
    #[cfg(debug_assertions)]
    fn declare(&mut self, requests: &[&[Item]], now: Timestamp, lookups: &Lookups) {
        let mut declared = Declared::default();
        self.resolve(requests, now, lookups, &mut |w| match w {
            Want::Account(id) => {
                declared.accounts.insert(id);
            }
            Want::Party(id) => {
                declared.parties.insert(id);
            }
            Want::Hold(_) | Want::Transfer(_) => {}
        });
        for id in &declared.accounts {
            let ok = self.accounts.contains_key(id) || lookups.absent_accounts.contains(id);
            assert!(
                ok,
                "account {id} was declared but neither loaded nor proven absent: the owner broke the loading protocol"
            );
        }
        for id in &declared.parties {
            let ok = self.parties.contains_key(id) || lookups.absent_parties.contains(id);
            assert!(
                ok,
                "party {id} was declared but neither loaded nor proven absent: the owner broke the loading protocol"
            );
        }
        self.scratch.declared = declared;
    }

    /// The account `id`, for `apply`: it must have been declared by the batch's commands (or
    /// be a system account, or created by this batch). `None` means it does not exist.
    fn account(&self, id: AccountId) -> Option<&Account> {
        let found = self.accounts.get(&id).map(|a| &**a);
        #[cfg(debug_assertions)]
        {
            let ok = self.scratch.declared.accounts.contains(&id)
                || self.scratch.new_accounts.contains(&id)
                || found.is_some_and(Account::is_system);
            assert!(ok, "account {id} was looked up but not declared by `needs`: its answer would depend on the cache");
        }
        found
    }

    /// The party `id`, for `apply`, under the same rule as [`Ledger::account`].
    fn party(&self, id: PartyId) -> Option<&Party> {
        let found = self.parties.get(&id);
        #[cfg(debug_assertions)]
        {
            let ok = self.scratch.declared.parties.contains(&id) || self.scratch.new_parties.contains(&id);
            assert!(ok, "party {id} was looked up but not declared by `needs`: its answer would depend on the cache");
        }
        found
    }

    // ---------------------------------------------------------------- queries

    /// The available balance: what the account can spend now. For a credit subscriber
    /// account, the lesser of its own and its customer's.
    fn available(&self, id: AccountId, now: Timestamp) -> Option<i128> {
        self.available_for(id, now, Spend::Shown)
    }

    fn available_for(&self, id: AccountId, now: Timestamp, spend: Spend<'_>) -> Option<i128> {
        let account = self.account(id)?;
        let parent = match account.kind {
            AccountKind::SubscriberCredit { parent } => Some(self.account(parent)?),
            _ => None,
        };
        Some(spend.available(account, parent, now))
    }

    /// A currency the ledger knows (every account's is: it was checked when it opened).
    fn currency(&self, code: CurrencyCode) -> Result<Currency, Rejection> {
        self.currencies.get(&code).copied().ok_or(Rejection::CurrencyUnknown)
    }

    /// Whether `amount` may be spent from the account now, by a spend of this kind.
    fn check_spend(&self, id: AccountId, amount: Amount, now: Timestamp, spend: Spend<'_>) -> Result<(), Rejection> {
        let account = self.account(id).ok_or(Rejection::AccountNotFound)?;
        if account.is_system() {
            return Ok(());
        }
        let available = self.available_for(id, now, spend).ok_or(Rejection::AccountNotFound)?;
        if available < i128::from(amount.0) {
            let currency = self.currency(account.currency)?;
            return Err(Rejection::InsufficientFunds { available: clamp(available), currency });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- apply

    /// Applies a batch made of several callers' requests. Each item gets a result, in
    /// order; one failing item never affects another, except within a linked chain, which
    /// succeeds or fails whole. A chain never reaches past the end of its request.
    pub fn apply(&mut self, requests: &[&[Item]], now: Timestamp, lookups: &mut Lookups) -> BatchOutput {
        self.scratch = Scratch::default();
        #[cfg(debug_assertions)]
        self.declare(requests, now, lookups);
        self.expire_holds(now, lookups);
        for items in requests {
            self.apply_request(items, now, lookups);
        }
        self.finish_output(lookups)
    }

    fn apply_request(&mut self, items: &[Item], now: Timestamp, lookups: &mut Lookups) {
        let mut i = 0;
        while i < items.len() {
            let chain_end = (i..items.len()).find(|&j| !items[j].linked);
            if chain_end == Some(i) {
                let result = self.apply_one(&items[i].command, now, lookups);
                self.scratch.output.results.push(result);
                i += 1;
                continue;
            }
            let end = chain_end.unwrap_or(items.len() - 1);
            self.apply_chain(&items[i..=end], chain_end.is_none(), now, lookups);
            i = end + 1;
        }
    }

    fn apply_chain(&mut self, chain: &[Item], open: bool, now: Timestamp, lookups: &mut Lookups) {
        self.scratch.checkpoint = Some(Checkpoint {
            next: self.next,
            transfers: self.scratch.output.transfers.len(),
            events: self.scratch.output.events.len(),
            limit_changes: self.scratch.output.limit_changes.len(),
            invoices: self.scratch.output.invoices.len(),
            notes: self.scratch.output.notes.len(),
            grant_uses: self.scratch.output.grant_uses.len(),
            undo: Vec::new(),
        });
        let first = self.scratch.output.results.len();
        let mut failed = None;
        for (k, item) in chain.iter().enumerate() {
            let result = self.apply_one(&item.command, now, lookups);
            let is_err = result.is_err();
            self.scratch.output.results.push(result);
            if is_err {
                failed = Some(k);
                break;
            }
        }
        if open && failed.is_none() {
            let last = self.scratch.output.results.len() - 1;
            self.scratch.output.results[last] = Err(Rejection::LinkedChainOpen);
            failed = Some(chain.len() - 1);
        }
        let checkpoint = self.scratch.checkpoint.take().expect("checkpoint set above");
        let Some(failed) = failed else { return };
        self.roll_back(checkpoint, lookups);
        for k in 0..chain.len() {
            let rejection = Err(Rejection::LinkedCommandFailed);
            if k < failed {
                self.scratch.output.results[first + k] = rejection;
            } else if k > failed {
                self.scratch.output.results.push(rejection);
            }
        }
    }

    fn roll_back(&mut self, checkpoint: Checkpoint, lookups: &mut Lookups) {
        self.next = checkpoint.next;
        self.scratch.output.transfers.truncate(checkpoint.transfers);
        self.scratch.output.events.truncate(checkpoint.events);
        self.scratch.output.limit_changes.truncate(checkpoint.limit_changes);
        self.scratch.output.invoices.truncate(checkpoint.invoices);
        self.scratch.output.notes.truncate(checkpoint.notes);
        self.scratch.output.grant_uses.truncate(checkpoint.grant_uses);
        for undo in checkpoint.undo.into_iter().rev() {
            match undo {
                Undo::Account(id, Some(old)) => {
                    self.accounts.insert(id, Box::new(old));
                }
                Undo::Account(id, None) => {
                    self.accounts.remove(&id);
                }
                Undo::Party(id) => {
                    self.parties.remove(&id);
                }
                Undo::PartyChanged(old) => {
                    self.parties.insert(old.id, old);
                }
                Undo::OpenHold(id, Some(old)) => {
                    self.open_holds.insert(id, old);
                }
                Undo::OpenHold(id, None) => {
                    self.open_holds.remove(&id);
                }
                Undo::ResolvedHold(id) => {
                    lookups.holds.remove(&id);
                }
                Undo::Prior(key) => {
                    lookups.prior.remove(&key);
                }
                Undo::Reversal(id) => {
                    if let Some(entry) = lookups.transfers.get_mut(&id) {
                        entry.1 = None;
                    }
                }
                Undo::Currency(code) => {
                    self.currencies.remove(&code);
                    self.system_accounts.retain(|(c, _), _| *c != code);
                }
            }
        }
    }

    fn finish_output(&mut self, lookups: &Lookups) -> BatchOutput {
        let mut scratch = std::mem::take(&mut self.scratch);
        let out = &mut scratch.output;
        let mut seen = FastSet::default();
        for code in scratch.new_currencies {
            if let Some(c) = self.currencies.get(&code) {
                if seen.insert(code.as_str().to_owned()) {
                    out.currencies.push(*c);
                }
            }
        }
        let mut row_ids = FastSet::default();
        for (account, grant) in &scratch.grant_rows {
            let Some(a) = self.accounts.get(account) else { continue };
            if let Some(g) = a.grants.iter().find(|g| g.id == *grant) {
                if row_ids.insert(*grant) {
                    out.grants.push(g.clone());
                }
            }
        }
        for g in &out.grants {
            if g.state != GrantState::Open {
                if let Some(a) = self.accounts.get_mut(&g.account) {
                    a.grants.retain(|x| x.id != g.id);
                }
            }
        }
        let mut grant_accounts = FastSet::default();
        for account in scratch.grant_accounts.iter().chain(scratch.grant_rows.iter().map(|(a, _)| a)) {
            if !grant_accounts.insert(*account) {
                continue;
            }
            if let Some(a) = self.accounts.get(account) {
                out.grant_balances.push((*account, a.grants.iter().map(|g| (g.id, g.remaining, g.reserved)).collect()));
            }
        }
        let mut new_ids = FastSet::default();
        for id in scratch.new_accounts {
            if let Some(a) = self.accounts.get(&id) {
                if new_ids.insert(id) {
                    out.accounts_new.push((**a).clone());
                }
            }
        }
        let mut changed: Vec<AccountId> =
            scratch.dirty_accounts.into_iter().filter(|id| !new_ids.contains(id)).collect();
        changed.sort_unstable();
        out.settings_changed = changed.iter().copied().filter(|id| scratch.settings_changed.contains(id)).collect();
        // The store writes an account's balance parts and settings; its grants go apart.
        out.accounts_changed = changed
            .into_iter()
            .filter_map(|id| {
                let a = self.accounts.get(&id)?;
                if a.grants.is_empty() {
                    return Some((**a).clone());
                }
                let a = self.accounts.get_mut(&id)?;
                let grants = std::mem::take(&mut a.grants);
                let copy = (**a).clone();
                a.grants = grants;
                Some(copy)
            })
            .collect();
        let mut party_ids = FastSet::default();
        for id in scratch.new_parties {
            if let Some(p) = self.parties.get(&id) {
                if party_ids.insert(id) {
                    out.parties.push(p.clone());
                }
            }
        }
        for id in scratch.changed_parties {
            if let Some(p) = self.parties.get(&id) {
                if party_ids.insert(id) {
                    out.parties_changed.push(p.clone());
                }
            }
        }
        let mut hold_ids = FastSet::default();
        for id in scratch.dirty_holds {
            let hold = self.open_holds.get(&id).or_else(|| lookups.holds.get(&id));
            if let Some(h) = hold {
                if hold_ids.insert(id) {
                    out.holds.push(h.clone());
                }
            }
        }
        scratch.output
    }

    // ---------------------------------------------------------------- mutation helpers

    fn remember(&mut self, undo: impl FnOnce(&Self) -> Undo) {
        if self.scratch.checkpoint.is_none() {
            return;
        }
        let entry = undo(self);
        if let Some(checkpoint) = self.scratch.checkpoint.as_mut() {
            checkpoint.undo.push(entry);
        }
    }

    fn account_mut(&mut self, id: AccountId) -> &mut Account {
        self.remember(|l| Undo::Account(id, l.accounts.get(&id).map(|a| (**a).clone())));
        self.scratch.dirty_accounts.insert(id);
        self.accounts.get_mut(&id).expect("validated before mutation")
    }

    /// Like `account_mut`, for changes of settings rather than balances.
    fn settings_mut(&mut self, id: AccountId) -> &mut Account {
        self.scratch.settings_changed.insert(id);
        self.account_mut(id)
    }

    fn insert_account(&mut self, account: Account) {
        let id = account.id;
        self.remember(|_| Undo::Account(id, None));
        self.scratch.new_accounts.push(id);
        self.accounts.insert(id, Box::new(account));
    }

    fn insert_prior(&mut self, lookups: &mut Lookups, key: ClientKey, prior: Prior) {
        if self.scratch.checkpoint.is_some() {
            self.remember(|_| Undo::Prior(key.clone()));
        }
        lookups.prior.insert(key, prior);
    }

    fn set_open_hold(&mut self, id: HoldId, hold: Option<Hold>) {
        self.remember(|l| Undo::OpenHold(id, l.open_holds.get(&id).cloned()));
        self.scratch.dirty_holds.push(id);
        match hold {
            Some(h) => self.open_holds.insert(id, h),
            None => self.open_holds.remove(&id),
        };
    }

    /// Moves an open hold to its resolved state.
    fn resolve_hold(&mut self, mut hold: Hold, state: HoldState, resolution: HoldResolution, lookups: &mut Lookups) {
        self.set_open_hold(hold.id, None);
        hold.state = state;
        hold.resolution = Some(resolution);
        self.remember(|_| Undo::ResolvedHold(hold.id));
        lookups.holds.insert(hold.id, hold);
    }

    fn next_id(counter: &mut u64) -> u64 {
        let id = *counter;
        *counter += 1;
        id
    }

    /// Applies a change of available balance to `id`, reporting threshold crossings.
    fn emit_crossings(&mut self, id: AccountId, before: i128, now: Timestamp, transfer: Option<TransferId>) {
        let Some(after) = self.available(id, now) else { return };
        if after == before {
            return;
        }
        let account = &self.accounts[&id];
        if account.thresholds.is_empty() {
            return;
        }
        let crossings: Vec<(Amount, Direction)> = account
            .thresholds
            .iter()
            .filter_map(|t| {
                let t128 = i128::from(t.0);
                if before >= t128 && after < t128 {
                    Some((*t, Direction::Down))
                } else if before < t128 && after >= t128 {
                    Some((*t, Direction::Up))
                } else {
                    None
                }
            })
            .collect();
        for (threshold, direction) in crossings {
            let event = Event {
                id: EventId(Self::next_id(&mut self.next.event)),
                at: now,
                account: id,
                kind: EventKind::ThresholdCrossed {
                    threshold,
                    direction,
                    available_before: clamp(before),
                    available_after: clamp(after),
                    transfer,
                },
            };
            self.scratch.output.events.push(event);
        }
    }

    /// Accounts whose available balance moves when `id`'s balance or reservation does.
    fn watched(&self, id: AccountId) -> [Option<AccountId>; 2] {
        let parent = match self.accounts.get(&id).map(|a| a.kind) {
            Some(AccountKind::SubscriberCredit { parent }) => Some(parent),
            _ => None,
        };
        [Some(id), parent]
    }

    fn availability(&self, ids: &[Option<AccountId>], now: Timestamp) -> Vec<(AccountId, i128)> {
        ids.iter()
            .flatten()
            .filter(|id| !self.accounts[id].thresholds.is_empty())
            .filter_map(|id| Some((*id, self.available(*id, now)?)))
            .collect()
    }

    /// Posts a validated transfer: moves the balances (overflow-checked before any change)
    /// and reports threshold crossings.
    fn post(&mut self, mut transfer: Transfer, now: Timestamp) -> Result<(), Rejection> {
        let (debit, credit, amount) = (transfer.debit, transfer.credit, transfer.amount);
        let new_debit = self.accounts[&debit].balance.checked_sub(amount);
        let new_credit = self.accounts[&credit].balance.checked_add(amount);
        let (Some(new_debit), Some(new_credit)) = (new_debit, new_credit) else {
            return Err(Rejection::AmountOverflow);
        };
        let parent_delta = |l: &Self, id: AccountId, delta: i128| match l.accounts[&id].kind {
            AccountKind::SubscriberCredit { parent } => Some((parent, delta)),
            _ => None,
        };
        let parents =
            [parent_delta(self, debit, -i128::from(amount.0)), parent_delta(self, credit, i128::from(amount.0))];
        for (parent, delta) in parents.iter().flatten() {
            let now_children = i128::from(self.accounts[parent].children_balance.0);
            if i64::try_from(now_children + delta).is_err() {
                return Err(Rejection::AmountOverflow);
            }
        }
        let [a, b] = self.watched(debit);
        let [c, d] = self.watched(credit);
        let before = self.availability(&[a, b, c, d], now);
        let account = self.account_mut(debit);
        account.balance = new_debit;
        transfer.debit_prev = account.last_transfer.replace(transfer.id);
        transfer.debit_balance = new_debit;
        let account = self.account_mut(credit);
        account.balance = new_credit;
        transfer.credit_prev = account.last_transfer.replace(transfer.id);
        transfer.credit_balance = new_credit;
        for (parent, delta) in parents.into_iter().flatten() {
            let p = self.account_mut(parent);
            p.children_balance = Amount((i128::from(p.children_balance.0) + delta) as i64);
        }
        for (id, before) in before {
            self.emit_crossings(id, before, now, Some(transfer.id));
        }
        let refill = matches!(transfer.kind, TransferKind::Payment | TransferKind::Recharge | TransferKind::Issue);
        if refill && self.accounts[&credit].kind == AccountKind::Wallet {
            let available_after = self.available(credit, now).map_or(Amount::ZERO, clamp);
            let kind = EventKind::Refilled { amount, available_after, transfer: transfer.id };
            let event = Event { id: EventId(Self::next_id(&mut self.next.event)), at: now, account: credit, kind };
            self.scratch.output.events.push(event);
        }
        self.scratch.output.transfers.push(transfer);
        Ok(())
    }

    fn change_reserved(&mut self, id: AccountId, delta: i128, now: Timestamp) -> Result<(), Rejection> {
        let current = i128::from(self.accounts[&id].reserved.0);
        let new = i64::try_from(current + delta).map_err(|_| Rejection::AmountOverflow)?;
        let [a, b] = self.watched(id);
        let before = self.availability(&[a, b], now);
        self.account_mut(id).reserved = Amount(new);
        for (id, before) in before {
            self.emit_crossings(id, before, now, None);
        }
        Ok(())
    }

    fn expire_holds(&mut self, now: Timestamp, lookups: &mut Lookups) {
        let mut expired: Vec<HoldId> = self.open_holds.values().filter(|h| h.expires_at <= now).map(|h| h.id).collect();
        expired.sort_unstable();
        for id in expired {
            let hold = self.open_holds[&id].clone();
            if self.account(hold.account).is_none() {
                continue; // Cannot happen: a hold's account exists, and it was declared.
            }
            if self.change_reserved(hold.account, -i128::from(hold.amount.0), now).is_err() {
                continue;
            }
            self.unreserve(hold.account, &hold.grant_parts);
            let resolution = HoldResolution { at: now, client_id: None, captured: Amount::ZERO, transfer: None };
            self.resolve_hold(hold, HoldState::Expired, resolution, lookups);
        }
    }

    // ---------------------------------------------------------------- validation helpers

    fn open_account(&self, id: AccountId) -> Result<&Account, Rejection> {
        let account = self.account(id).ok_or(Rejection::AccountNotFound)?;
        if account.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed);
        }
        Ok(account)
    }

    /// An account money is spent from (a charge, a hold, a transfer out): open, not suspended.
    fn spending_account(&self, id: AccountId, money: Money) -> Result<&Account, Rejection> {
        let account = self.spendable_account(id, money)?;
        if account.status == AccountStatus::Suspended {
            return Err(Rejection::Suspended);
        }
        Ok(account)
    }

    /// A non-system, open account in the money's currency, for a positive amount.
    fn spendable_account(&self, id: AccountId, money: Money) -> Result<&Account, Rejection> {
        let account = self.open_account(id)?;
        if account.is_system() {
            return Err(Rejection::SystemAccountNotAllowed);
        }
        if account.currency != money.currency {
            return Err(Rejection::CurrencyMismatch { expected: account.currency, actual: money.currency });
        }
        if !money.amount.is_positive() {
            return Err(Rejection::AmountMustBePositive);
        }
        Ok(account)
    }

    fn system_account(&self, currency: CurrencyCode, role: SystemRole) -> Result<AccountId, Rejection> {
        self.system_accounts.get(&(currency, role)).copied().ok_or(Rejection::CurrencyUnknown)
    }

    // ---------------------------------------------------------------- commands

    fn apply_one(&mut self, command: &Command, now: Timestamp, lookups: &mut Lookups) -> CommandResult {
        match command {
            Command::CreateCurrency { code, scale } => self.create_currency(*code, *scale, now),
            Command::CreateReseller { client_id, name } => {
                let prior = lookups.prior.get(&ClientKey::Party(client_id.clone()));
                let same = |k: &PartyKind| *k == PartyKind::Reseller;
                if let Some(replay) = Self::replay_party(prior, name, same) {
                    return replay;
                }
                Self::check_name(name)?;
                self.create_party(client_id, name, PartyKind::Reseller, None, now, lookups)
            }
            Command::CreateCustomer { client_id, name, reseller, billing, currency, credit_limit } => {
                self.create_customer(client_id, name, *reseller, *billing, *currency, *credit_limit, now, lookups)
            }
            Command::OpenAccount { client_id, party, kind } => {
                self.open_subaccount(client_id, *party, *kind, now, lookups)
            }
            Command::CloseAccount { account } => self.close_account(*account),
            Command::SetCreditLimit { account, credit_limit, note } => {
                self.set_credit_limit(*account, *credit_limit, note, now)
            }
            Command::SetTemporaryIncrease { account, increase, note } => {
                self.set_temporary_increase(*account, *increase, note, now)
            }
            Command::RevertIncrease { account, valid_until } => {
                // Closed accounts too: an increase left on one still runs out.
                self.account(*account).ok_or(Rejection::AccountNotFound)?;
                self.revert_expired(*account, Some(*valid_until), now);
                Ok(Outcome::AccountUpdated { account: *account })
            }
            Command::SetThresholds { account, thresholds } => self.set_thresholds(*account, thresholds),
            Command::SetSubscriberTransfers { party, allowed } => {
                let p = self.party(*party).ok_or(Rejection::PartyNotFound)?;
                if p.kind == PartyKind::Reseller {
                    return Err(Rejection::PartyKindMismatch);
                }
                if p.subscriber_transfers != *allowed {
                    let old = p.clone();
                    self.remember(|_| Undo::PartyChanged(old));
                    self.scratch.changed_parties.push(*party);
                    if let Some(p) = self.parties.get_mut(party) {
                        p.subscriber_transfers = *allowed;
                    }
                }
                Ok(Outcome::PartyUpdated { party: *party })
            }
            Command::Invoice { party, accounts, period_end } => self.invoice(*party, accounts, *period_end, now),
            Command::Suspend { party, accounts, suspended } => self.suspend(*party, accounts, *suspended),
            Command::Charge(charge) => self.charge(charge, now, lookups),
            Command::Payment { client_id, account, money, method, metadata } => {
                self.payment(client_id, TransferKind::Payment, *account, *money, *method, metadata, now, lookups)
            }
            Command::Refund { client_id, account, money, method, metadata, note } => {
                self.check_note(client_id, note.as_ref(), lookups)?;
                let kind = TransferKind::Refund;
                let t = self.payment(client_id, kind, *account, *money, *method, metadata, now, lookups)?;
                self.note_posting(&t, note.as_ref());
                Ok(t)
            }
            Command::Transfer { client_id, source, target, money, kind, metadata, note } => {
                self.check_note(client_id, note.as_ref(), lookups)?;
                let t = self.transfer(client_id, *source, *target, *money, *kind, metadata, now, lookups)?;
                self.note_posting(&t, note.as_ref());
                Ok(t)
            }
            Command::Adjust { client_id, account, money, direction, category, note, metadata } => {
                let t =
                    self.adjust(client_id, *account, (*money, *direction, *category), note, metadata, now, lookups)?;
                self.note_posting(&t, Some(note));
                Ok(t)
            }
            Command::Hold { client_id, account, money, expires_at, service, metadata } => {
                self.hold(client_id, *account, *money, *expires_at, service, metadata, now, lookups)
            }
            Command::Capture { client_id, hold, amount } => self.capture(client_id, *hold, *amount, now, lookups),
            Command::Release { client_id, hold } => self.release(client_id, *hold, now, lookups),
            Command::Grant(g) => {
                let t = self.grant(g, now, lookups)?;
                self.note_posting(&t, Some(&g.note));
                Ok(t)
            }
            Command::ExpireGrant { account, grant } => self.expire_grant(*account, *grant, now, lookups),
            Command::VoidGrant { account, grant, note } => {
                let t = self.void_grant(*account, *grant, note, now, lookups)?;
                self.note_posting(&t, Some(note));
                Ok(t)
            }
            Command::Reverse { client_id, transfer, metadata, note } => {
                self.check_note(client_id, note.as_ref(), lookups)?;
                let t = self.reverse(client_id, *transfer, metadata, now, lookups)?;
                self.note_posting(&t, note.as_ref());
                Ok(t)
            }
        }
    }

    fn create_currency(&mut self, code: CurrencyCode, scale: u8, now: Timestamp) -> CommandResult {
        if scale > SCALE_MAX {
            return Err(Rejection::ScaleTooLarge);
        }
        if self.currencies.contains_key(&code) {
            return Err(Rejection::CurrencyExists);
        }
        self.remember(|_| Undo::Currency(code));
        self.currencies.insert(code, Currency { code, scale });
        self.scratch.new_currencies.push(code);
        for role in SystemRole::ALL {
            let id = AccountId(Self::next_id(&mut self.next.account));
            self.insert_account(new_account(id, None, None, AccountKind::System(role), code, now));
            self.system_accounts.insert((code, role), id);
        }
        Ok(Outcome::CurrencyCreated)
    }

    fn replay_party(
        prior: Option<&Prior>,
        name: &str,
        kind_matches: impl Fn(&PartyKind) -> bool,
    ) -> Option<CommandResult> {
        let Some(Prior::Party(p)) = prior else { return None };
        Some(if p.name != name {
            Err(Rejection::ExistsWithDifferentName)
        } else if !kind_matches(&p.kind) {
            Err(Rejection::ExistsWithDifferentSettings)
        } else {
            let wallet = match p.kind {
                PartyKind::Customer { wallet, .. } => Some(wallet),
                PartyKind::Reseller => None,
            };
            Ok(Outcome::PartyCreated { party: p.id, wallet, replayed: true })
        })
    }

    fn check_name(name: &str) -> Result<(), Rejection> {
        if name.trim().is_empty() {
            return Err(Rejection::NameMustNotBeEmpty);
        }
        check_text(&Some(name.to_owned()), "name", NAME_LEN_MAX)
    }

    fn create_party(
        &mut self,
        client_id: &ClientId,
        name: &str,
        kind: PartyKind,
        wallet: Option<Account>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let key = ClientKey::Party(client_id.clone());
        let id = PartyId(Self::next_id(&mut self.next.party));
        let party = Party {
            id,
            client_id: client_id.clone(),
            name: name.to_owned(),
            kind,
            created_at: now,
            subscriber_transfers: false,
            invoiced_until: None,
        };
        self.remember(|_| Undo::Party(id));
        self.parties.insert(id, party.clone());
        self.scratch.new_parties.push(id);
        let wallet_id = wallet.as_ref().map(|w| w.id);
        if let Some(w) = wallet {
            self.insert_account(w);
        }
        self.insert_prior(lookups, key, Prior::Party(party));
        Ok(Outcome::PartyCreated { party: id, wallet: wallet_id, replayed: false })
    }

    #[allow(clippy::too_many_arguments)]
    fn create_customer(
        &mut self,
        client_id: &ClientId,
        name: &str,
        reseller: Option<PartyId>,
        billing: Billing,
        currency: CurrencyCode,
        credit_limit: Amount,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let prior = lookups.prior.get(&ClientKey::Party(client_id.clone()));
        let same = |k: &PartyKind| {
            matches!(k, PartyKind::Customer { reseller: r, billing: b, currency: c, .. }
                if *r == reseller && *b == billing && *c == currency)
        };
        if let Some(replay) = Self::replay_party(prior, name, same) {
            return replay;
        }
        Self::check_name(name)?;
        if !self.currencies.contains_key(&currency) {
            return Err(Rejection::CurrencyUnknown);
        }
        if let Some(r) = reseller {
            match self.party(r) {
                Some(p) if p.kind == PartyKind::Reseller => {}
                _ => return Err(Rejection::ResellerNotFound),
            }
        }
        check_credit_limit(billing, credit_limit)?;
        let wallet_id = AccountId(Self::next_id(&mut self.next.account));
        let party_id = PartyId(self.next.party);
        let mut wallet = new_account(wallet_id, None, Some(party_id), AccountKind::Wallet, currency, now);
        wallet.credit_limit = credit_limit;
        let kind = PartyKind::Customer { reseller, billing, currency, wallet: wallet_id };
        self.create_party(client_id, name, kind, Some(wallet), now, lookups)
    }

    fn open_subaccount(
        &mut self,
        client_id: &ClientId,
        party_id: PartyId,
        kind: NewAccountKind,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let key = ClientKey::Account(client_id.clone());
        if let Some(Prior::Account(a)) = lookups.prior.get(&key) {
            return if a.party != Some(party_id) {
                Err(Rejection::ExistsWithDifferentSettings)
            } else {
                Ok(Outcome::AccountOpened { account: a.id, replayed: true })
            };
        }
        let party = self.party(party_id).ok_or(Rejection::PartyNotFound)?;
        let (account_kind, currency, limit) = match (kind, &party.kind) {
            (NewAccountKind::MasterWallet { currency }, PartyKind::Reseller) => {
                (AccountKind::MasterWallet, currency, Amount::ZERO)
            }
            (NewAccountKind::SubscriberDebit, PartyKind::Customer { currency, .. }) => {
                (AccountKind::SubscriberDebit, *currency, Amount::ZERO)
            }
            (NewAccountKind::SubscriberCredit { credit_limit }, PartyKind::Customer { currency, wallet, .. }) => {
                if credit_limit.0 < 0 {
                    return Err(Rejection::CreditLimitMustNotBeNegative);
                }
                self.open_account(*wallet)?;
                (AccountKind::SubscriberCredit { parent: *wallet }, *currency, credit_limit)
            }
            _ => return Err(Rejection::PartyKindMismatch),
        };
        // A suspended customer's new account is suspended with the rest.
        let suspended = match &party.kind {
            PartyKind::Customer { wallet, .. } => {
                self.account(*wallet).is_some_and(|w| w.status == AccountStatus::Suspended)
            }
            PartyKind::Reseller => false,
        };
        if !self.currencies.contains_key(&currency) {
            return Err(Rejection::CurrencyUnknown);
        }
        let id = AccountId(Self::next_id(&mut self.next.account));
        let mut account = new_account(id, Some(client_id.clone()), Some(party_id), account_kind, currency, now);
        account.credit_limit = limit;
        if suspended {
            account.status = AccountStatus::Suspended;
        }
        self.insert_prior(lookups, key, Prior::Account(account.clone()));
        self.insert_account(account);
        Ok(Outcome::AccountOpened { account: id, replayed: false })
    }

    fn close_account(&mut self, id: AccountId) -> CommandResult {
        let account = self.open_account(id)?;
        if account.is_system() {
            return Err(Rejection::SystemAccountNotAllowed);
        }
        if account.balance != Amount::ZERO || account.children_balance != Amount::ZERO {
            return Err(Rejection::AccountHasBalance);
        }
        if account.reserved != Amount::ZERO {
            return Err(Rejection::AccountHasHolds);
        }
        self.settings_mut(id).status = AccountStatus::Closed;
        Ok(Outcome::AccountUpdated { account: id })
    }

    fn billing_of(&self, account: &Account) -> Billing {
        let customer = account.party.and_then(|p| self.party(p));
        match customer.map(|p| &p.kind) {
            Some(PartyKind::Customer { billing, .. }) if account.kind == AccountKind::Wallet => *billing,
            // Subscriber credit accounts and master wallets carry limits of their own.
            _ => Billing::Postpaid,
        }
    }

    fn set_credit_limit(&mut self, id: AccountId, limit: Amount, note: &ChangeNote, now: Timestamp) -> CommandResult {
        let account = self.open_account(id)?;
        if account.is_system() {
            return Err(Rejection::SystemAccountNotAllowed);
        }
        if account.kind == AccountKind::Wallet && account.party.is_some_and(|p| self.party(p).is_none()) {
            return Err(Rejection::PartyNotFound);
        }
        check_credit_limit(self.billing_of(account), limit)?;
        check_text(&note.reason, "reason", REASON_LEN_MAX)?;
        self.revert_expired(id, None, now);
        let [a, b] = self.watched(id);
        let before = self.availability(&[a, b], now);
        let old = self.accounts[&id].credit_limit;
        self.settings_mut(id).credit_limit = limit;
        if old != limit {
            self.record_limit_change(id, LimitChangeKind::Permanent, (old, limit), None, note, now);
        }
        for (id, before) in before {
            self.emit_crossings(id, before, now, None);
        }
        Ok(Outcome::AccountUpdated { account: id })
    }

    fn set_temporary_increase(
        &mut self,
        id: AccountId,
        increase: Option<(Amount, Timestamp)>,
        note: &ChangeNote,
        now: Timestamp,
    ) -> CommandResult {
        let account = self.open_account(id)?;
        if account.is_system() {
            return Err(Rejection::SystemAccountNotAllowed);
        }
        if let Some((amount, until)) = increase {
            if self.billing_of(account) == Billing::Prepaid {
                return Err(Rejection::CreditLimitNotAllowedForPrepaid);
            }
            if !amount.is_positive() {
                return Err(Rejection::TemporaryIncreaseMustBePositive);
            }
            if until <= now {
                return Err(Rejection::ValidUntilMustBeInFuture);
            }
        }
        check_text(&note.reason, "reason", REASON_LEN_MAX)?;
        self.revert_expired(id, None, now);
        let [a, b] = self.watched(id);
        let before = self.availability(&[a, b], now);
        let new = increase.map(|(amount, valid_until)| TemporaryIncrease { amount, valid_until });
        let old = self.accounts[&id].temporary_increase;
        self.settings_mut(id).temporary_increase = new;
        if old != new {
            let limit = self.accounts[&id].credit_limit;
            self.record_limit_change(id, LimitChangeKind::Temporary, (limit, limit), Some((old, new)), note, now);
        }
        for (id, before) in before {
            self.emit_crossings(id, before, now, None);
        }
        Ok(Outcome::AccountUpdated { account: id })
    }

    /// Removes the account's temporary increase if it ran out (and, with `only`, is the one
    /// valid until then), recording the revert as of its *valid until*. Every change of a
    /// limit calls this first, so the history never misses a revert the scheduler has not
    /// made yet.
    fn revert_expired(&mut self, id: AccountId, only: Option<Timestamp>, now: Timestamp) {
        let Some(increase) = self.accounts.get(&id).and_then(|a| a.temporary_increase) else { return };
        if increase.valid_until > now || only.is_some_and(|u| u != increase.valid_until) {
            return;
        }
        // The drop in available balance happened at valid until; report its crossings now.
        let [a, b] = self.watched(id);
        let before = self.availability(&[a, b], increase.valid_until.plus_micros(-1));
        self.settings_mut(id).temporary_increase = None;
        let limit = self.accounts[&id].credit_limit;
        let note = ChangeNote { by: "scheduler".into(), reason: Some("valid until reached".into()) };
        self.record_limit_change(id, LimitChangeKind::Revert, (limit, limit), Some((Some(increase), None)), &note, now);
        for (id, before) in before {
            self.emit_crossings(id, before, now, None);
        }
    }

    fn record_limit_change(
        &mut self,
        id: AccountId,
        kind: LimitChangeKind,
        (old_limit, new_limit): (Amount, Amount),
        increase: Option<(Option<TemporaryIncrease>, Option<TemporaryIncrease>)>,
        note: &ChangeNote,
        now: Timestamp,
    ) {
        let account = &self.accounts[&id];
        let (old_increase, new_increase) = increase.unwrap_or((account.temporary_increase, account.temporary_increase));
        let at = match (kind, old_increase) {
            (LimitChangeKind::Revert, Some(i)) => i.valid_until,
            _ => now,
        };
        let currency =
            self.currencies.get(&account.currency).copied().unwrap_or(Currency { code: account.currency, scale: 0 });
        self.scratch.output.limit_changes.push(LimitChange {
            account: id,
            party: account.party,
            currency,
            kind,
            at,
            recorded_at: now,
            old_limit,
            new_limit,
            old_increase,
            new_increase,
            by: note.by.clone(),
            reason: note.reason.clone(),
        });
    }

    /// Suspends a customer's accounts or lifts the suspension (see [`Command::Suspend`]).
    fn suspend(&mut self, party: PartyId, accounts: &[AccountId], suspended: bool) -> CommandResult {
        let p = self.party(party).ok_or(Rejection::PartyNotFound)?;
        if !matches!(p.kind, PartyKind::Customer { .. }) {
            return Err(Rejection::PartyKindMismatch);
        }
        for id in accounts {
            let a = self.account(*id).ok_or(Rejection::AccountNotFound)?;
            if a.party != Some(party) {
                return Err(Rejection::AccountOfOtherParty);
            }
        }
        let (from, to) = if suspended {
            (AccountStatus::Open, AccountStatus::Suspended)
        } else {
            (AccountStatus::Suspended, AccountStatus::Open)
        };
        for id in accounts {
            if self.account(*id).is_some_and(|a| a.status == from) {
                self.settings_mut(*id).status = to;
            }
        }
        Ok(Outcome::PartyUpdated { party })
    }

    /// Moves the accounts' uninvoiced amounts to a usage invoice (see [`Command::Invoice`]).
    fn invoice(
        &mut self,
        party: PartyId,
        accounts: &[AccountId],
        period_end: Timestamp,
        now: Timestamp,
    ) -> CommandResult {
        let p = self.party(party).ok_or(Rejection::PartyNotFound)?;
        let PartyKind::Customer { reseller, currency, .. } = p.kind else { return Err(Rejection::PartyKindMismatch) };
        if let Some(until) = p.invoiced_until.filter(|u| *u >= period_end) {
            return Err(Rejection::AlreadyInvoiced { until });
        }
        let period_start = p.invoiced_until.unwrap_or(p.created_at);
        let mut ids = accounts.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut subtotal = 0i128;
        for id in &ids {
            let a = self.account(*id).ok_or(Rejection::AccountNotFound)?;
            if a.party != Some(party) || a.currency != currency {
                return Err(Rejection::AccountOfOtherParty);
            }
            subtotal += i128::from(a.uninvoiced.0);
        }
        let subtotal = i64::try_from(subtotal).map_err(|_| Rejection::AmountOverflow)?;
        // Everything is checked before anything changes: a single command has no undo.
        let currency = self.currencies.get(&currency).copied().ok_or(Rejection::CurrencyUnknown)?;
        let old = p.clone();
        self.remember(|_| Undo::PartyChanged(old));
        self.scratch.changed_parties.push(party);
        if let Some(p) = self.parties.get_mut(&party) {
            p.invoiced_until = Some(period_end);
        }
        if subtotal <= 0 {
            // Nothing to invoice (or reversals exceed usage): it stays uninvoiced.
            return Ok(Outcome::Invoiced { party, issued: false });
        }
        let mut lines = Vec::with_capacity(ids.len());
        for id in ids {
            let a = self.account_mut(id);
            lines.push(InvoicedAccount { account: id, amount: a.uninvoiced, through: a.last_transfer });
            a.uninvoiced = Amount::ZERO;
        }
        self.scratch.output.invoices.push(InvoiceIssue {
            party,
            issuer: reseller,
            currency,
            period_start,
            period_end,
            issued_at: now,
            accounts: lines,
            subtotal,
        });
        Ok(Outcome::Invoiced { party, issued: true })
    }

    /// Two subscriber accounts move funds only within one customer, and only if it allows it.
    fn check_subscriber_transfer(&self, source: AccountId, target: AccountId) -> Result<(), Rejection> {
        let subscriber = |id: &AccountId| {
            let a = &self.accounts[id];
            matches!(a.kind, AccountKind::SubscriberDebit | AccountKind::SubscriberCredit { .. }).then_some(a.party)
        };
        let (Some(from), Some(to)) = (subscriber(&source), subscriber(&target)) else { return Ok(()) };
        if from != to {
            return Err(Rejection::OtherCustomer);
        }
        let party = from.and_then(|p| self.party(p)).ok_or(Rejection::PartyNotFound)?;
        if !party.subscriber_transfers {
            return Err(Rejection::TransfersNotAllowed);
        }
        Ok(())
    }

    /// An issue or a recharge moves money from a reseller's master wallet to an account of
    /// one of that reseller's customers, never between two customers.
    fn check_issue(&self, source: AccountId, target: AccountId) -> Result<(), Rejection> {
        let from = self.account(source).ok_or(Rejection::AccountNotFound)?;
        if from.kind != AccountKind::MasterWallet {
            return Err(Rejection::IssueNeedsMasterWallet);
        }
        let to = self.account(target).ok_or(Rejection::AccountNotFound)?;
        let customer = to.party.and_then(|p| self.party(p)).map(|p| &p.kind);
        match customer {
            Some(PartyKind::Customer { reseller: Some(r), .. }) if Some(*r) == from.party => Ok(()),
            _ => Err(Rejection::NotResellersCustomer),
        }
    }

    /// The reason of a note for a new posting follows the text rules, whichever way the command
    /// came (the API, the portal, a worker); a replay is answered as the posting it repeats was.
    fn check_note(&self, client_id: &ClientId, note: Option<&ChangeNote>, lookups: &Lookups) -> Result<(), Rejection> {
        let Some(note) = note else { return Ok(()) };
        match lookups.prior.get(&ClientKey::Transfer(client_id.clone())) {
            Some(Prior::Transfer(_) | Prior::InBatch(_)) => Ok(()),
            _ => check_text(&note.reason, "reason", REASON_LEN_MAX),
        }
    }

    /// Puts a new posting made for someone else in the audit log (a replay adds nothing).
    fn note_posting(&mut self, outcome: &Outcome, note: Option<&ChangeNote>) {
        let (Some(note), Outcome::Posted { transfer, replayed: false, .. }) = (note, outcome) else { return };
        let Some(t) = self.scratch.output.transfers.iter().rev().find(|t| t.id == *transfer) else { return };
        let owner = |id: AccountId| self.accounts.get(&id).and_then(|a| a.party);
        let role = |id: AccountId| match self.accounts.get(&id).map(|a| a.kind) {
            Some(AccountKind::System(role)) => Some(role),
            _ => None,
        };
        let category = (t.kind == TransferKind::Adjustment)
            .then(|| role(t.debit).or_else(|| role(t.credit)).and_then(AdjustCategory::of_role))
            .flatten();
        let currency = self.currencies.get(&t.currency).copied().unwrap_or(Currency { code: t.currency, scale: 0 });
        let entry = MoneyNote {
            transfer: t.id,
            kind: t.kind,
            party: owner(t.debit).or_else(|| owner(t.credit)),
            debit: t.debit,
            credit: t.credit,
            amount: t.amount,
            currency,
            at: t.posted_at,
            by: note.by.clone(),
            reason: note.reason.clone(),
            category,
        };
        self.scratch.output.notes.push(entry);
    }

    fn set_thresholds(&mut self, id: AccountId, thresholds: &[Amount]) -> CommandResult {
        self.open_account(id)?;
        if thresholds.len() > THRESHOLDS_MAX {
            return Err(Rejection::ThresholdsTooMany { max: THRESHOLDS_MAX });
        }
        let mut sorted = thresholds.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        self.settings_mut(id).thresholds = sorted;
        Ok(Outcome::AccountUpdated { account: id })
    }

    /// Looks for an earlier transfer under the same client id. `Some` is the replayed
    /// outcome (or the rejection naming what differs).
    fn replay_transfer(
        &self,
        lookups: &Lookups,
        client_id: &ClientId,
        expect: &TransferExpectation<'_>,
    ) -> Option<CommandResult> {
        let prior = lookups.prior.get(&ClientKey::Transfer(client_id.clone()))?;
        let t = match prior {
            Prior::Transfer(t) => t,
            Prior::InBatch(i) => &self.scratch.output.transfers[*i],
            _ => return None,
        };
        Some(expect.compare(t).map(|()| match t.hold {
            Some(hold) if t.kind == TransferKind::Charge => {
                Outcome::HoldCaptured { hold, transfer: t.id, replayed: true }
            }
            _ => Outcome::Posted { transfer: t.id, overdrawn: t.overdrawn, replayed: true },
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn post_new(
        &mut self,
        lookups: &mut Lookups,
        client_id: &ClientId,
        kind: TransferKind,
        (debit, credit): (AccountId, AccountId),
        money: Money,
        at: Timestamp,
        details: (Option<String>, Option<String>, Option<HoldId>, Option<TransferId>),
        now: Timestamp,
    ) -> Result<Posted, Rejection> {
        let (service, metadata, hold, reverses) = details;
        let id = TransferId(self.next.transfer);
        let transfer = Transfer {
            id,
            client_id: client_id.clone(),
            kind,
            debit,
            credit,
            amount: money.amount,
            currency: money.currency,
            at,
            posted_at: now,
            service,
            metadata,
            hold,
            reverses,
            overdrawn: false,
            debit_prev: None,
            credit_prev: None,
            debit_balance: Amount::ZERO,
            credit_balance: Amount::ZERO,
            grant_parts: Vec::new(),
        };
        self.post(transfer, now)?;
        self.next.transfer += 1;
        let index = self.scratch.output.transfers.len() - 1;
        let overdrawn = kind == TransferKind::Charge && {
            let service = self.scratch.output.transfers[index].service.as_deref();
            self.available_for(debit, now, Spend::Service(service)).is_some_and(|a| a < 0)
        };
        self.scratch.output.transfers[index].overdrawn = overdrawn;
        self.insert_prior(lookups, ClientKey::Transfer(client_id.clone()), Prior::InBatch(index));
        Ok(Posted { id, overdrawn })
    }

    fn charge(&mut self, c: &NewCharge, now: Timestamp, lookups: &mut Lookups) -> CommandResult {
        let expect = TransferExpectation {
            kind: TransferKind::Charge,
            debit: c.account,
            credit: None,
            amount: c.money.amount,
            at: c.at,
            service: c.service.as_deref(),
            metadata: c.metadata.as_deref(),
        };
        if let Some(replay) = self.replay_transfer(lookups, &c.client_id, &expect) {
            return replay;
        }
        check_text(&c.service, "service", SERVICE_LEN_MAX)?;
        check_text(&c.metadata, "metadata", METADATA_LEN_MAX)?;
        self.spending_account(c.account, c.money)?;
        if !may_overdraw(TransferKind::Charge, c.refuse_if_insufficient) {
            self.check_spend(c.account, c.money.amount, now, Spend::Service(c.service.as_deref()))?;
        }
        let revenue = self.system_account(c.money.currency, SystemRole::UsageRevenue)?;
        let at = c.at.unwrap_or(now);
        let details = (c.service.clone(), c.metadata.clone(), None, None);
        let t = self.post_new(
            lookups,
            &c.client_id,
            TransferKind::Charge,
            (c.account, revenue),
            c.money,
            at,
            details,
            now,
        )?;
        let account = self.account_mut(c.account);
        account.last_charge_at = Some(account.last_charge_at.map_or(at, |l| l.max(at)));
        account.uninvoiced = Amount(account.uninvoiced.0.saturating_add(c.money.amount.0));
        self.draw(c.account, c.money.amount, c.service.as_deref(), now, t.id);
        Ok(Outcome::Posted { transfer: t.id, overdrawn: t.overdrawn, replayed: false })
    }

    /// Money received (`Payment`: from the method's clearing account into `account`) or given
    /// back (`Refund`: out of `account`'s own money, never below what it may spend, into it).
    #[allow(clippy::too_many_arguments)]
    fn payment(
        &mut self,
        client_id: &ClientId,
        kind: TransferKind,
        account: AccountId,
        money: Money,
        method: PaymentMethod,
        metadata: &Option<String>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let clearing = self.system_account(money.currency, method.clearing_role());
        let system = *clearing.as_ref().unwrap_or(&AccountId(u64::MAX));
        let sides = if kind == TransferKind::Refund { (account, system) } else { (system, account) };
        let expect = TransferExpectation::movement(kind, sides, money.amount, metadata);
        if let Some(replay) = self.replay_transfer(lookups, client_id, &expect) {
            return replay;
        }
        check_text(metadata, "metadata", METADATA_LEN_MAX)?;
        self.spendable_account(account, money)?;
        let clearing = clearing?;
        let sides = if kind == TransferKind::Refund { (account, clearing) } else { (clearing, account) };
        if !may_overdraw(kind, false) && kind == TransferKind::Refund {
            self.check_spend(account, money.amount, now, Spend::Cash)?;
        }
        let details = (None, metadata.clone(), None, None);
        let t = self.post_new(lookups, client_id, kind, sides, money, now, details, now)?;
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        client_id: &ClientId,
        source: AccountId,
        target: AccountId,
        money: Money,
        kind: TransferKind,
        metadata: &Option<String>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let expect = TransferExpectation::movement(kind, (source, target), money.amount, metadata);
        if let Some(replay) = self.replay_transfer(lookups, client_id, &expect) {
            return replay;
        }
        if !matches!(kind, TransferKind::Transfer | TransferKind::Issue | TransferKind::Recharge) {
            return Err(Rejection::TransferKindNotAllowed);
        }
        check_text(metadata, "metadata", METADATA_LEN_MAX)?;
        if source == target {
            return Err(Rejection::AccountsMustDiffer);
        }
        self.spending_account(source, money)?;
        self.spendable_account(target, money)?;
        self.check_subscriber_transfer(source, target)?;
        if matches!(kind, TransferKind::Issue | TransferKind::Recharge) {
            self.check_issue(source, target)?;
        }
        if !may_overdraw(kind, false) {
            self.check_spend(source, money.amount, now, Spend::Cash)?;
        }
        let details = (None, metadata.clone(), None, None);
        let t = self.post_new(lookups, client_id, kind, (source, target), money, now, details, now)?;
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }

    #[allow(clippy::too_many_arguments)]
    fn adjust(
        &mut self,
        client_id: &ClientId,
        account: AccountId,
        (money, direction, category): (Money, AdjustDirection, AdjustCategory),
        note: &ChangeNote,
        metadata: &Option<String>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let adjustments = self.system_account(money.currency, category.role());
        let system = *adjustments.as_ref().unwrap_or(&AccountId(u64::MAX));
        let sides = match direction {
            AdjustDirection::Credit => (system, account),
            AdjustDirection::Debit => (account, system),
        };
        let expect = TransferExpectation::movement(TransferKind::Adjustment, sides, money.amount, metadata);
        if let Some(replay) = self.replay_transfer(lookups, client_id, &expect) {
            return replay;
        }
        if note.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(Rejection::ReasonMustNotBeEmpty);
        }
        check_text(&note.reason, "reason", REASON_LEN_MAX)?;
        check_text(metadata, "metadata", METADATA_LEN_MAX)?;
        self.spendable_account(account, money)?;
        adjustments?;
        debug_assert!(may_overdraw(TransferKind::Adjustment, false));
        let details = (None, metadata.clone(), None, None);
        let t = self.post_new(lookups, client_id, TransferKind::Adjustment, sides, money, now, details, now)?;
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        client_id: &ClientId,
        account: AccountId,
        money: Money,
        expires_at: Timestamp,
        service: &Option<String>,
        metadata: &Option<String>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let key = ClientKey::Hold(client_id.clone());
        if let Some(Prior::Hold(h)) = lookups.prior.get(&key) {
            return if h.account != account {
                Err(Rejection::ExistsWithDifferentAccount)
            } else if h.amount != money.amount {
                Err(Rejection::ExistsWithDifferentAmount)
            } else if h.expires_at != expires_at {
                Err(Rejection::ExistsWithDifferentExpiry)
            } else if h.service != *service {
                Err(Rejection::ExistsWithDifferentService)
            } else if h.metadata != *metadata {
                Err(Rejection::ExistsWithDifferentMetadata)
            } else {
                Ok(Outcome::HoldPlaced { hold: h.id, replayed: true })
            };
        }
        check_text(service, "service", SERVICE_LEN_MAX)?;
        check_text(metadata, "metadata", METADATA_LEN_MAX)?;
        self.spending_account(account, money)?;
        if expires_at <= now {
            return Err(Rejection::HoldExpiryMustBeInFuture);
        }
        self.check_spend(account, money.amount, now, Spend::Service(service.as_deref()))?;
        self.change_reserved(account, i128::from(money.amount.0), now)?;
        let grant_parts = self.reserve(account, money.amount, service.as_deref(), now);
        let id = HoldId(Self::next_id(&mut self.next.hold));
        let hold = Hold {
            id,
            client_id: client_id.clone(),
            account,
            amount: money.amount,
            currency: money.currency,
            created_at: now,
            expires_at,
            state: HoldState::Open,
            service: service.clone(),
            metadata: metadata.clone(),
            resolution: None,
            grant_parts,
        };
        self.insert_prior(lookups, key, Prior::Hold(hold.clone()));
        self.set_open_hold(id, Some(hold));
        Ok(Outcome::HoldPlaced { hold: id, replayed: false })
    }

    /// The open hold `id`, or the rejection saying why it cannot be resolved.
    fn resolvable_hold(&self, id: HoldId, now: Timestamp, lookups: &Lookups) -> Result<Hold, Rejection> {
        if let Some(h) = self.open_holds.get(&id) {
            if h.expires_at <= now {
                return Err(Rejection::HoldExpired);
            }
            return Ok(h.clone());
        }
        match lookups.holds.get(&id) {
            Some(h) => Err(Rejection::HoldAlreadyResolved { state: h.state }),
            None => Err(Rejection::HoldNotFound),
        }
    }

    fn capture(
        &mut self,
        client_id: &ClientId,
        hold_id: HoldId,
        amount: Option<Amount>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let known = self.open_holds.get(&hold_id).or_else(|| lookups.holds.get(&hold_id));
        if let Some(h) = known {
            let expect = TransferExpectation {
                kind: TransferKind::Charge,
                debit: h.account,
                credit: None,
                amount: amount.unwrap_or(h.amount),
                at: None,
                service: h.service.as_deref(),
                metadata: h.metadata.as_deref(),
            };
            if let Some(replay) = self.replay_transfer(lookups, client_id, &expect) {
                return replay.and_then(|o| match o {
                    Outcome::HoldCaptured { hold, .. } if hold == hold_id => Ok(o),
                    _ => Err(Rejection::ExistsWithDifferentHold),
                });
            }
        } else if lookups.prior.contains_key(&ClientKey::Transfer(client_id.clone())) {
            return Err(Rejection::ExistsWithDifferentHold);
        }
        let hold = self.resolvable_hold(hold_id, now, lookups)?;
        let captured = amount.unwrap_or(hold.amount);
        if !captured.is_positive() {
            return Err(Rejection::AmountMustBePositive);
        }
        if captured > hold.amount {
            return Err(Rejection::CaptureExceedsHold { held: hold.amount, currency: self.currency(hold.currency)? });
        }
        self.open_account(hold.account)?;
        let revenue = self.system_account(hold.currency, SystemRole::UsageRevenue)?;
        self.change_reserved(hold.account, -i128::from(hold.amount.0), now)?;
        self.unreserve(hold.account, &hold.grant_parts);
        let money = Money { amount: captured, currency: hold.currency };
        let details = (hold.service.clone(), hold.metadata.clone(), Some(hold_id), None);
        let t =
            self.post_new(lookups, client_id, TransferKind::Charge, (hold.account, revenue), money, now, details, now)?;
        let account = self.account_mut(hold.account);
        account.last_charge_at = Some(account.last_charge_at.map_or(now, |l| l.max(now)));
        account.uninvoiced = Amount(account.uninvoiced.0.saturating_add(captured.0));
        self.draw(hold.account, captured, hold.service.as_deref(), now, t.id);
        let resolution = HoldResolution { at: now, client_id: Some(client_id.clone()), captured, transfer: Some(t.id) };
        self.resolve_hold(hold, HoldState::Captured, resolution, lookups);
        Ok(Outcome::HoldCaptured { hold: hold_id, transfer: t.id, replayed: false })
    }

    fn release(
        &mut self,
        client_id: &ClientId,
        hold_id: HoldId,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let key = ClientKey::Release(client_id.clone());
        if let Some(Prior::Hold(h)) = lookups.prior.get(&key) {
            return if h.id == hold_id {
                Ok(Outcome::HoldReleased { hold: hold_id, replayed: true })
            } else {
                Err(Rejection::ExistsWithDifferentHold)
            };
        }
        let hold = self.resolvable_hold(hold_id, now, lookups)?;
        self.change_reserved(hold.account, -i128::from(hold.amount.0), now)?;
        self.unreserve(hold.account, &hold.grant_parts);
        let resolution =
            HoldResolution { at: now, client_id: Some(client_id.clone()), captured: Amount::ZERO, transfer: None };
        self.resolve_hold(hold, HoldState::Released, resolution, lookups);
        let resolved = lookups.holds[&hold_id].clone();
        self.insert_prior(lookups, key, Prior::Hold(resolved));
        Ok(Outcome::HoldReleased { hold: hold_id, replayed: false })
    }

    fn reverse(
        &mut self,
        client_id: &ClientId,
        original_id: TransferId,
        metadata: &Option<String>,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        let original = lookups.transfers.get(&original_id).map(|(t, by)| (t.clone(), *by));
        if let Some(Prior::Transfer(_) | Prior::InBatch(_)) = lookups.prior.get(&ClientKey::Transfer(client_id.clone()))
        {
            let Some((t, _)) = &original else { return Err(Rejection::ExistsWithDifferentCounterparty) };
            let expect = TransferExpectation::movement(TransferKind::Reversal, (t.credit, t.debit), t.amount, metadata);
            return self.replay_transfer(lookups, client_id, &expect).expect("prior exists");
        }
        check_text(metadata, "metadata", METADATA_LEN_MAX)?;
        let (original, reversed_by) = original.ok_or(Rejection::TransferNotFound)?;
        if original.kind == TransferKind::Reversal {
            return Err(Rejection::ReversalCannotBeReversed);
        }
        if matches!(original.kind, TransferKind::Grant | TransferKind::Expiry | TransferKind::Void) {
            // A grant's money moves with the grant: it is voided, not reversed.
            return Err(Rejection::TransferKindNotAllowed);
        }
        if let Some(by) = reversed_by {
            return Err(Rejection::TransferAlreadyReversed { by });
        }
        self.account(original.debit).ok_or(Rejection::AccountNotFound)?;
        self.account(original.credit).ok_or(Rejection::AccountNotFound)?;
        debug_assert!(may_overdraw(TransferKind::Reversal, false));
        let money = Money { amount: original.amount, currency: original.currency };
        let details = (None, metadata.clone(), None, Some(original_id));
        let t = self.post_new(
            lookups,
            client_id,
            TransferKind::Reversal,
            (original.credit, original.debit),
            money,
            now,
            details,
            now,
        )?;
        self.remember(|_| Undo::Reversal(original_id));
        if original.kind == TransferKind::Charge {
            // A reversed charge is no longer consumption to invoice.
            let account = self.account_mut(original.debit);
            // What grants paid was never to invoice.
            let paid: i64 = original.grant_parts.iter().map(|(_, a)| a.0).sum();
            account.uninvoiced = Amount(account.uninvoiced.0.saturating_sub(original.amount.0 - paid));
            if !original.grant_parts.is_empty() {
                self.give_back(original.debit, &original.grant_parts, now, t.id);
            }
        }
        if let Some(entry) = lookups.transfers.get_mut(&original_id) {
            entry.1 = Some(t.id);
        }
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }
}

impl Ledger {
    // ---------------------------------------------------------------- grants

    fn touch_grant(&mut self, account: AccountId) {
        self.scratch.grant_accounts.push(account);
    }

    /// A grant made or closed: its whole row is written.
    fn touch_grant_row(&mut self, account: AccountId, grant: GrantId) {
        self.scratch.grant_rows.push((account, grant));
    }

    fn record_use(
        &mut self,
        (account, grant): (AccountId, GrantId),
        transfer: Option<TransferId>,
        kind: GrantUseKind,
        amount: i64,
        now: Timestamp,
    ) {
        self.scratch.grant_accounts.push(account);
        self.scratch.output.grant_uses.push(GrantUse {
            grant,
            account,
            transfer,
            kind,
            amount: Amount(amount),
            at: now,
        });
    }

    /// Takes `amount` from the free part of the account's grants that may pay for
    /// `service`, in draw-down order: spends it (`reserve` false) or reserves it for a hold.
    /// Returns what each grant gave; the rest is the account's own money.
    fn take(
        &mut self,
        id: AccountId,
        amount: Amount,
        service: Option<&str>,
        now: Timestamp,
        reserve: bool,
    ) -> Vec<(GrantId, Amount)> {
        if self.accounts[&id].grants.is_empty() {
            return Vec::new();
        }
        let mut left = amount.0;
        let mut parts = Vec::new();
        let mut used_up = Vec::new();
        let account = self.account_mut(id);
        // `grants` is kept in draw-down order.
        for g in &mut account.grants {
            if left == 0 {
                break;
            }
            if !g.in_force(now) || !g.applies(service) {
                continue;
            }
            let take = g.free().min(left);
            if take <= 0 {
                continue;
            }
            left -= take;
            if reserve {
                g.reserved = Amount(g.reserved.0 + take);
            } else {
                g.remaining = Amount(g.remaining.0 - take);
                if g.remaining.0 == 0 && g.reserved.0 == 0 {
                    // Used up: one without an expiry closes; one with stays open until it, so
                    // that a reversed charge can give back what it took.
                    g.used_up_at = Some(now);
                    if g.expires_at.is_none() {
                        g.state = GrantState::UsedUp;
                        g.closed_at = Some(now);
                    }
                    used_up.push(g.id);
                }
            }
            parts.push((g.id, Amount(take)));
        }
        if !parts.is_empty() {
            self.touch_grant(id);
        }
        for g in used_up {
            self.touch_grant_row(id, g);
        }
        parts
    }

    /// Says which grants paid `amount` of the posting `transfer`, the batch's last (the
    /// balance already moved): the posting itself records it.
    fn draw(&mut self, id: AccountId, amount: Amount, service: Option<&str>, now: Timestamp, transfer: TransferId) {
        let parts = self.take(id, amount, service, now, false);
        if parts.is_empty() {
            return;
        }
        // What grants paid is not the customer's to pay: it is not invoiced.
        let paid: i64 = parts.iter().map(|(_, a)| a.0).sum();
        let account = self.account_mut(id);
        account.uninvoiced = Amount(account.uninvoiced.0.saturating_sub(paid));
        if let Some(t) = self.scratch.output.transfers.last_mut().filter(|t| t.id == transfer) {
            t.grant_parts = parts;
        }
    }

    /// Reserves `amount` of a hold on the grants that may pay for it.
    fn reserve(
        &mut self,
        id: AccountId,
        amount: Amount,
        service: Option<&str>,
        now: Timestamp,
    ) -> Vec<(GrantId, Amount)> {
        self.take(id, amount, service, now, true)
    }

    /// Gives back what a hold reserved on grants still open (a swept grant's reservations
    /// went with it).
    fn unreserve(&mut self, id: AccountId, parts: &[(GrantId, Amount)]) {
        if parts.is_empty() {
            return;
        }
        let account = self.account_mut(id);
        for (grant, amount) in parts {
            if let Some(g) = account.grants.iter_mut().find(|g| g.id == *grant && g.state == GrantState::Open) {
                g.reserved = Amount(g.reserved.0 - amount.0.min(g.reserved.0));
            }
        }
        self.touch_grant(id);
    }

    /// A reversed charge gives back to each grant still open what it paid; what a closed
    /// grant paid comes back as the account's own money.
    fn give_back(&mut self, id: AccountId, parts: &[(GrantId, Amount)], now: Timestamp, transfer: TransferId) {
        let account = self.account_mut(id);
        let mut back = Vec::new();
        for (grant, amount) in parts {
            if let Some(g) = account.grants.iter_mut().find(|g| g.id == *grant && g.state == GrantState::Open) {
                g.remaining = Amount(g.remaining.0.saturating_add(amount.0));
                g.used_up_at = None;
                back.push((g.id, amount.0));
            }
        }
        for (g, amount) in back {
            self.touch_grant_row(id, g);
            self.record_use((id, g), Some(transfer), GrantUseKind::Return, -amount, now);
        }
    }

    fn check_grant(g: &NewGrant, now: Timestamp) -> Result<(), Rejection> {
        let kind_ok = !g.kind.is_empty()
            && g.kind.len() <= GRANT_KIND_LEN_MAX
            && g.kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            return Err(Rejection::GrantKindInvalid);
        }
        if !(1..=GRANT_PRIORITY_MAX).contains(&g.priority) {
            return Err(Rejection::GrantPriorityOutOfRange);
        }
        let effective = g.effective_at.unwrap_or(now);
        if g.expires_at.is_some_and(|e| e <= effective || e <= now) {
            return Err(Rejection::GrantExpiryMustFollowEffective);
        }
        if g.scope.len() > GRANT_SCOPE_MAX || g.scope.iter().any(|s| s.trim().is_empty()) {
            return Err(Rejection::GrantScopeInvalid);
        }
        for service in &g.scope {
            check_text(&Some(service.clone()), "scope", SERVICE_LEN_MAX)?;
        }
        if let Some(r) = g.rollover {
            if r.max.0 < 0 || r.valid_for_us <= 0 || g.expires_at.is_none() {
                return Err(Rejection::GrantRolloverInvalid);
            }
        }
        if g.note.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(Rejection::ReasonMustNotBeEmpty);
        }
        check_text(&g.note.reason, "reason", REASON_LEN_MAX)?;
        check_text(&g.metadata, "metadata", METADATA_LEN_MAX)?;
        let funding_ok = matches!(
            g.funding,
            SystemRole::Grants | SystemRole::CardClearing | SystemRole::CashClearing | SystemRole::BankClearing
        );
        if !funding_ok {
            return Err(Rejection::GrantFundingNotAllowed);
        }
        Ok(())
    }

    fn grant(&mut self, g: &NewGrant, now: Timestamp, lookups: &mut Lookups) -> CommandResult {
        let funding = self.system_account(g.money.currency, g.funding);
        let debit = *funding.as_ref().unwrap_or(&AccountId(u64::MAX));
        let expect =
            TransferExpectation::movement(TransferKind::Grant, (debit, g.account), g.money.amount, &g.metadata);
        if let Some(replay) = self.replay_transfer(lookups, &g.client_id, &expect) {
            return replay;
        }
        Self::check_grant(g, now)?;
        let account = self.spendable_account(g.account, g.money)?;
        if !matches!(
            account.kind,
            AccountKind::Wallet | AccountKind::SubscriberDebit | AccountKind::SubscriberCredit { .. }
        ) {
            return Err(Rejection::GrantAccountKind);
        }
        let funding = funding?;
        let details = (None, g.metadata.clone(), None, None);
        let t = self.post_new(
            lookups,
            &g.client_id,
            TransferKind::Grant,
            (funding, g.account),
            g.money,
            now,
            details,
            now,
        )?;
        // A grant is known by the posting that made it.
        let grant = g.made(t.id, now);
        self.touch_grant_row(g.account, grant.id);
        self.account_mut(g.account).add_grant(grant);
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }

    /// A client id of Purse's own for a posting a grant causes.
    fn grant_client_id(grant: GrantId, what: &str) -> ClientId {
        ClientId::new(&format!("purse:grant:{grant}:{what}")).expect("printable and short")
    }

    fn expire_grant(&mut self, id: AccountId, grant: GrantId, now: Timestamp, lookups: &mut Lookups) -> CommandResult {
        let account = self.account(id).ok_or(Rejection::AccountNotFound)?;
        let unchanged = Ok(Outcome::AccountUpdated { account: id });
        let Some(i) = account.grants.iter().position(|g| g.id == grant && g.state == GrantState::Open) else {
            return unchanged;
        };
        let g = account.grants[i].clone();
        let Some(expires_at) = g.expires_at.filter(|e| *e <= now) else { return unchanged };
        // What the account could spend just before the expiry, for the thresholds it crossed.
        let before = self.available(id, now).map(|a| a + i128::from(g.remaining.0));
        let rolled = g.rollover.map_or(0, |r| r.max.0.min(g.remaining.0));
        let breakage = g.remaining.0 - rolled;
        let mut transfer = None;
        if breakage > 0 {
            let sink = self.system_account(account.currency, SystemRole::Breakage)?;
            let money = Money { amount: Amount(breakage), currency: account.currency };
            let cid = Self::grant_client_id(grant, "expiry");
            let details = (None, None, None, None);
            let t = self.post_new(lookups, &cid, TransferKind::Expiry, (id, sink), money, expires_at, details, now)?;
            transfer = Some(t.id);
        }
        let account = self.account_mut(id);
        let closed = &mut account.grants[i];
        closed.state = if g.remaining.0 == 0 { GrantState::UsedUp } else { GrantState::Expired };
        closed.remaining = Amount::ZERO;
        closed.reserved = Amount::ZERO;
        closed.closed_at = Some(now);
        self.touch_grant_row(id, grant);
        if breakage > 0 {
            self.record_use((id, grant), transfer, GrantUseKind::Expiry, breakage, now);
        }
        if let (Some(r), true) = (g.rollover, rolled > 0) {
            self.record_use((id, grant), None, GrantUseKind::Rollover, rolled, now);
            let next = Grant {
                // An id of the postings' sequence that no posting takes, as every grant's is.
                id: GrantId(Self::next_id(&mut self.next.transfer)),
                client_id: Self::grant_client_id(grant, "rollover"),
                amount: Amount(rolled),
                remaining: Amount(rolled),
                reserved: Amount::ZERO,
                effective_at: expires_at,
                expires_at: Some(expires_at.plus_micros(r.valid_for_us)),
                rollover: None,
                state: GrantState::Open,
                used_up_at: None,
                transfer: None,
                rolled_from: Some(grant),
                created_at: now,
                closed_at: None,
                by: "scheduler".to_owned(),
                reason: Some(format!("rollover of grant {grant}")),
                ..g
            };
            self.touch_grant_row(id, next.id);
            self.account_mut(id).add_grant(next);
        }
        if let Some(before) = before {
            self.emit_crossings(id, before, now, transfer);
        }
        unchanged
    }

    fn void_grant(
        &mut self,
        id: AccountId,
        grant: GrantId,
        note: &ChangeNote,
        now: Timestamp,
        lookups: &mut Lookups,
    ) -> CommandResult {
        if note.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(Rejection::ReasonMustNotBeEmpty);
        }
        check_text(&note.reason, "reason", REASON_LEN_MAX)?;
        let account = self.open_account(id)?;
        let currency = account.currency;
        let i = account.grants.iter().position(|g| g.id == grant).ok_or(Rejection::GrantNotFound)?;
        let g = &account.grants[i];
        if g.state != GrantState::Open || g.remaining.0 == 0 {
            return Err(Rejection::GrantClosed);
        }
        if g.funding != SystemRole::Grants || g.reserved.is_positive() {
            return Err(Rejection::GrantNotVoidable);
        }
        let remaining = g.remaining;
        let source = self.system_account(currency, g.funding)?;
        let money = Money { amount: remaining, currency };
        let cid = Self::grant_client_id(grant, "void");
        let t =
            self.post_new(lookups, &cid, TransferKind::Void, (id, source), money, now, (None, None, None, None), now)?;
        let account = self.account_mut(id);
        let voided = &mut account.grants[i];
        voided.state = GrantState::Voided;
        voided.remaining = Amount::ZERO;
        voided.closed_at = Some(now);
        self.touch_grant_row(id, grant);
        self.record_use((id, grant), Some(t.id), GrantUseKind::Void, remaining.0, now);
        Ok(Outcome::Posted { transfer: t.id, overdrawn: false, replayed: false })
    }
}

/// What a spend may take from an account's grants.
#[derive(Clone, Copy, Debug)]
pub enum Spend<'a> {
    /// The available balance shown, and watched by thresholds: every grant in force.
    Shown,
    /// A charge or a hold for a service: the grants in force that apply to it.
    Service(Option<&'a str>),
    /// Money moved to another account: never a grant's.
    Cash,
}

impl Spend<'_> {
    fn usable(self, g: &Grant) -> bool {
        match self {
            Spend::Shown => true,
            Spend::Service(service) => g.applies(service),
            Spend::Cash => false,
        }
    }

    /// What the account can spend so: its own available balance, and for a credit
    /// subscriber account no more than its customer's own money (`parent`) either, whose
    /// grants are the customer's, not the subscriber's.
    pub fn available(self, account: &Account, parent: Option<&Account>, now: Timestamp) -> i128 {
        let own = account.available_for(now, &|g| self.usable(g));
        parent.map_or(own, |p| own.min(p.available_for(now, &|_| false)))
    }
}

/// What `post_new` reports about the transfer it posted.
struct Posted {
    id: TransferId,
    overdrawn: bool,
}

/// What a retried transfer must match to be a replay rather than a conflict.
struct TransferExpectation<'a> {
    kind: TransferKind,
    debit: AccountId,
    /// `None`: the system side, decided by the ledger.
    credit: Option<AccountId>,
    amount: Amount,
    /// `None`: the caller left the time to the ledger.
    at: Option<Timestamp>,
    service: Option<&'a str>,
    metadata: Option<&'a str>,
}

impl<'a> TransferExpectation<'a> {
    /// A movement between two known accounts, at the ledger's time, without a service.
    fn movement(
        kind: TransferKind,
        (debit, credit): (AccountId, AccountId),
        amount: Amount,
        metadata: &'a Option<String>,
    ) -> Self {
        TransferExpectation {
            kind,
            debit,
            credit: Some(credit),
            amount,
            at: None,
            service: None,
            metadata: metadata.as_deref(),
        }
    }

    fn compare(&self, t: &Transfer) -> Result<(), Rejection> {
        if t.kind != self.kind {
            return Err(Rejection::ExistsWithDifferentKind);
        }
        if t.debit != self.debit {
            return Err(Rejection::ExistsWithDifferentAccount);
        }
        if self.credit.is_some_and(|c| c != t.credit) {
            return Err(Rejection::ExistsWithDifferentCounterparty);
        }
        if t.amount != self.amount {
            return Err(Rejection::ExistsWithDifferentAmount);
        }
        if self.at.is_some_and(|at| at != t.at) {
            return Err(Rejection::ExistsWithDifferentTime);
        }
        if t.service.as_deref() != self.service {
            return Err(Rejection::ExistsWithDifferentService);
        }
        if t.metadata.as_deref() != self.metadata {
            return Err(Rejection::ExistsWithDifferentMetadata);
        }
        Ok(())
    }
}

/// The available balance shown: what the account can spend now, its grants in force
/// included, and for a credit subscriber account no more than its customer's own money.
pub fn available(account: &Account, parent: Option<&Account>, now: Timestamp) -> i128 {
    Spend::Shown.available(account, parent, now)
}

fn check_credit_limit(billing: Billing, limit: Amount) -> Result<(), Rejection> {
    if limit.0 < 0 {
        return Err(Rejection::CreditLimitMustNotBeNegative);
    }
    if billing == Billing::Prepaid && limit.0 != 0 {
        return Err(Rejection::CreditLimitNotAllowedForPrepaid);
    }
    Ok(())
}

fn new_account(
    id: AccountId,
    client_id: Option<ClientId>,
    party: Option<PartyId>,
    kind: AccountKind,
    currency: CurrencyCode,
    now: Timestamp,
) -> Account {
    Account {
        id,
        client_id,
        party,
        kind,
        currency,
        status: AccountStatus::Open,
        balance: Amount::ZERO,
        reserved: Amount::ZERO,
        credit_limit: Amount::ZERO,
        temporary_increase: None,
        children_balance: Amount::ZERO,
        thresholds: Vec::new(),
        last_charge_at: None,
        uninvoiced: Amount::ZERO,
        last_transfer: None,
        created_at: now,
        grants: Vec::new(),
    }
}

/// A fast, non-cryptographic hasher (the multiply-rotate scheme of rustc's FxHash) for the
/// ledger's in-memory maps. Their keys are ids and client ids of authenticated callers;
/// SipHash's flood resistance costs a third of a batch's time and buys nothing here.
#[derive(Clone, Copy, Default)]
pub struct FastHasher(u64);

const FAST_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for b in chunks.remainder() {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(FAST_HASH_K);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown takes its control bits from the top.
        self.0.rotate_left(26)
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;
