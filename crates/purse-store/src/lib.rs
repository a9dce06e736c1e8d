//! The storage boundary of Purse: the [`Store`] trait the engine writes through, the
//! [`Reader`] trait queries go through, and the column codecs both SQL backends share.
//!
//! This crate knows no database driver and no SQL. Each backend (`purse-store-sqlite`,
//! `purse-store-postgres`) implements both traits with its own migrations.
//!
//! The write protocol is one transaction per engine batch:
//! [`Store::begin`] takes the ledger's write lock and returns the *epoch*, a counter every
//! committed batch of every process bumps. An engine whose cache was built at that epoch
//! knows nobody else wrote since and may trust its cache; otherwise it reloads.

#![forbid(unsafe_code)]

pub mod access;
pub mod alert_sql;
pub mod alerts;
pub mod collections;
pub mod credit;
pub mod credit_notes;
pub mod grants;
pub mod invoices;
pub mod payments;
pub mod rating;
pub mod refunds;
pub mod taxes;

use std::fmt;

use purse_core::{
    Account, AccountId, AccountKind, AccountStatus, Amount, BatchOutput, Billing, ClientKey, Currency, Direction, Hold,
    HoldId, HoldState, NextIds, Party, PartyId, PartyKind, Prior, Role, Scope, SystemRole, Tenant, Timestamp, Transfer,
    TransferId,
};

pub use alerts::{
    AlertBatch, AlertKind, AlertStore, Attempt, Channel, DeliveryRecord, DeliveryStatus, Fire, JobRun, NewNotification,
    NotificationQuery, NotificationRecord, PaymentNotice, WebhookEndpoint,
};
pub use collections::{CollectionStore, DunningPolicy, PolicyOwner, Suspension};
pub use credit::{
    AuditEntry, AuditQuery, ClassRecord, CreditPolicy, CreditStore, MaxIncrease, TransferSetting, Visible,
};
pub use credit_notes::{CreditNoteRecord, CreditNoteStore};
pub use grants::{Allowance, GrantNotice, GrantQuery, GrantStore};
pub use invoices::{AllocationRecord, BillingSettings, Db, InvoiceAccount, InvoiceStore, Transact, VoidRefusal};
pub use payments::{
    InvoiceKind, InvoiceRecord, InvoiceStatus, NewReceipt, NewRecharge, PaymentStore, ReceiptRecord, RechargeReason,
    RechargeRecord, RechargeStatus, RechargeUpdate,
};
pub use rating::{PlanRole, RatePlan, RatingStore, SessionQuery, SessionRow, UnratedUsage};
pub use refunds::{RefundRecord, RefundStatus, RefundStore};
pub use taxes::{CustomerTax, TaxRate, TaxStore, TaxedAt};

/// A database failure, by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database cannot be reached or cannot write right now (the connection was lost,
    /// the server is restarting, the disk is full): nothing was done; retry later.
    Unavailable(String),
    /// A unique key the write would have broken: another writer got there first.
    Conflict(String),
    /// Anything else: a driver error, a constraint the schema enforces, a corrupt row.
    Other(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the database, not the request, is at fault).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The detail, for the log (never for a caller: it may name tables and values).
    pub fn detail(&self) -> &str {
        match self {
            StoreError::Unavailable(d) | StoreError::Conflict(d) | StoreError::Other(d) => d,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(d) => write!(f, "storage unavailable: {d}"),
            StoreError::Conflict(d) | StoreError::Other(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the engine loads whenever its cache is (re)built: small, always-needed state.
#[derive(Debug, Default)]
pub struct BaseState {
    pub currencies: Vec<Currency>,
    /// The system accounts of every currency.
    pub system_accounts: Vec<Account>,
    pub open_holds: Vec<Hold>,
    pub next: NextIds,
}

/// The write side, used by exactly one engine thread.
pub trait Store: Send {
    /// Creates or upgrades the schema; idempotent.
    fn migrate(&mut self) -> StoreResult<()>;
    /// Starts the batch transaction holding the ledger's write lock; returns the epoch.
    fn begin(&mut self) -> StoreResult<u64>;
    fn load_base(&mut self) -> StoreResult<BaseState>;
    fn load_accounts(&mut self, ids: &[AccountId]) -> StoreResult<Vec<Account>>;
    fn load_parties(&mut self, ids: &[PartyId]) -> StoreResult<Vec<Party>>;
    fn load_holds(&mut self, ids: &[HoldId]) -> StoreResult<Vec<Hold>>;
    /// Transfers with the id of their reversal, if reversed.
    fn load_transfers(&mut self, ids: &[TransferId]) -> StoreResult<Vec<(Transfer, Option<TransferId>)>>;
    /// The earlier records of the client ids that were used before; absent ones are omitted.
    fn lookup_client_keys(&mut self, keys: &[ClientKey]) -> StoreResult<Vec<(ClientKey, Prior)>>;
    /// The largest [`codec::client_key`] of a posting the store holds, when this writer knows
    /// it from the open transaction and what it wrote since: a posting's client id whose key
    /// is above it was never used. `None` when not known (the engine then reads).
    fn client_keys_max(&self) -> Option<i64> {
        None
    }
    /// Writes a batch's output and bumps the epoch, inside the open transaction.
    fn write(&mut self, output: &BatchOutput) -> StoreResult<()>;
    /// Makes the batch durable. The engine answers callers only after this returns.
    fn commit(&mut self) -> StoreResult<()>;
    fn rollback(&mut self) -> StoreResult<()>;
    /// Keeps the responses of idempotent requests, inside the open transaction of the batch
    /// that executed them. A key some other process stored first is left as it is.
    fn write_responses(&mut self, responses: &[StoredResponse]) -> StoreResult<()>;
    /// The stored responses of these (API key, idempotency key) pairs that exist.
    fn stored_responses(&mut self, keys: &[(u64, &str)]) -> StoreResult<Vec<StoredResponse>>;
    /// Forgets stored responses created before `before`, inside the open transaction.
    fn purge_responses(&mut self, before: Timestamp) -> StoreResult<u64>;
    /// Runs `f` on the open batch transaction (rows written with a batch's commands).
    fn in_batch(&mut self, f: &mut dyn FnMut(&mut dyn Db) -> StoreResult<()>) -> StoreResult<()>;
    /// Puts each loaded account's open grants in it.
    fn attach_grants(&mut self, accounts: &mut [Account]) -> StoreResult<()> {
        if accounts.iter().all(Account::is_system) {
            return Ok(());
        }
        self.in_batch(&mut |db| grants::attach(db, accounts))
    }
}

/// The response to an API request made with an `Idempotency-Key`, kept so that a retry
/// with the same key and body gets exactly the same answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The API key the request was made with: idempotency keys are scoped to it.
    pub api_key: u64,
    pub key: String,
    /// SHA-256 (hex) of the method, path and body: another body under the same key is refused.
    pub request_hash: String,
    pub status: u16,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
}

/// Which parties to list, oldest first, a page at a time.
#[derive(Clone, Debug, Default)]
pub struct PartyQuery {
    /// Only resellers (`Some(true)`) or only customers (`Some(false)`).
    pub resellers: Option<bool>,
    /// Only the customers of this reseller.
    pub reseller: Option<PartyId>,
    /// Only parties with an id above this (the cursor of the previous page).
    pub after: Option<PartyId>,
    /// Only parties whose name or client id contains this, ignoring case (lowercase it).
    pub search: Option<String>,
    pub limit: u32,
}

/// An API key as stored: never the key itself, only its SHA-256 hash and a short prefix
/// that lets people tell keys apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: u64,
    pub prefix: String,
    pub hash: String,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A key to store (it has no id yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    pub prefix: String,
    pub hash: String,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: Timestamp,
}

/// A person who logs in to the web portal, with the role and scope of an API key. The
/// password is kept only as an argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: u64,
    /// Lowercase; unique.
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: Timestamp,
    /// When the user was disabled: it no longer logs in.
    pub disabled_at: Option<Timestamp>,
    /// The portal language the user chose (`en`, `ar`); `None`: the browser's.
    pub lang: Option<String>,
}

/// A user to store (it has no id yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: Timestamp,
}

/// A portal session: only the SHA-256 hash of its cookie is kept, with the CSRF token every
/// changing form of the session must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub hash: String,
    pub user_id: u64,
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Who may get in: API keys (created, found by hash on every request, listed, revoked),
/// portal users, their sessions, and failed logins.
pub trait AccessStore: Send + Sync {
    fn insert_key(&self, key: &NewApiKey) -> StoreResult<u64>;
    fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    fn keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key; `false` when there is no such key or it was already revoked.
    fn revoke_key(&self, id: u64, at: Timestamp) -> StoreResult<bool>;

    /// Stores a user; `None` when the e-mail is taken.
    fn insert_user(&self, user: &NewUser) -> StoreResult<Option<u64>>;
    fn user(&self, id: u64) -> StoreResult<Option<UserRecord>>;
    fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    fn users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Disables a user and ends its sessions; `false` when there is no such user or it was
    /// disabled already.
    fn disable_user(&self, user: u64, at: Timestamp) -> StoreResult<bool>;
    /// Sets a user's password hash and ends every session of the user except `keep`.
    fn set_password(&self, user: u64, hash: &str, keep: Option<&str>) -> StoreResult<()>;
    /// Sets the portal language a user chose (`None`: the browser's).
    fn set_user_lang(&self, user: u64, lang: Option<&str>) -> StoreResult<()>;

    /// Stores a session and forgets every session expired at its creation.
    fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    fn session(&self, hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session; `false` when there was none.
    fn delete_session(&self, hash: &str) -> StoreResult<bool>;

    /// Failed logins for this e-mail since the last success, and when the last one was.
    fn login_failures(&self, email: &str) -> StoreResult<Option<(u32, Timestamp)>>;
    /// Reserves one login attempt for `email` at `at`, atomically, before any password is
    /// checked: refused with the seconds to wait while `wait_s(failures, last attempt)` is
    /// positive; otherwise counted as a failure at once (a success clears it), so concurrent
    /// guesses cannot all slip under the limit. Returns the count with this attempt.
    /// Failures before `forget_before` no longer count, and their rows (of every e-mail) are
    /// deleted, so the table holds only recent failures however many addresses are tried.
    fn reserve_login(
        &self,
        email: &str,
        at: Timestamp,
        forget_before: Timestamp,
        wait_s: &dyn Fn(u32, Timestamp) -> i64,
    ) -> StoreResult<Result<u32, i64>>;
    fn clear_login_failures(&self, email: &str) -> StoreResult<()>;
}

/// The totals that prove the books are consistent, computed by the database.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Per currency, the sum of all stored balances (must be zero).
    pub balance_sums: Vec<(String, i128)>,
    /// Accounts whose stored balance differs from the sum of their postings: (id, stored, computed).
    pub balance_mismatches: Vec<(AccountId, i64, i128)>,
    /// Accounts whose `reserved` differs from the sum of their open holds.
    pub reserved_mismatches: Vec<(AccountId, i64, i128)>,
    /// Credit subscriber parents whose `children_balance` differs from their children's sum.
    pub children_mismatches: Vec<(AccountId, i64, i128)>,
    /// Client ids posted more than once (must be zero).
    pub duplicate_client_ids: u64,
    pub transfer_count: u64,
}

impl Audit {
    pub fn is_consistent(&self) -> bool {
        self.balance_sums.iter().all(|(_, s)| *s == 0)
            && self.balance_mismatches.is_empty()
            && self.reserved_mismatches.is_empty()
            && self.children_mismatches.is_empty()
            && self.duplicate_client_ids == 0
    }
}

/// A page of an account's journal, newest first.
#[derive(Debug, Clone, Copy)]
pub struct JournalQuery {
    pub account: AccountId,
    /// Only transfers with an id below this (the cursor of the previous page).
    pub before: Option<TransferId>,
    pub limit: u32,
}

/// The read side: safe to share between threads; never takes the write lock.
pub trait Reader: Send + Sync {
    fn currencies(&self) -> StoreResult<Vec<Currency>>;
    fn account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    fn accounts(&self) -> StoreResult<Vec<Account>>;
    /// The accounts the given parties own (a page of customers' accounts, for the workers
    /// that go through every customer without holding them all at once), by id.
    fn accounts_of_parties(&self, parties: &[PartyId]) -> StoreResult<Vec<Account>>;
    fn party(&self, id: PartyId) -> StoreResult<Option<Party>>;
    fn parties(&self, query: PartyQuery) -> StoreResult<Vec<Party>>;
    /// The accounts a party owns, oldest first.
    fn accounts_of(&self, party: PartyId) -> StoreResult<Vec<Account>>;
    fn transfer(&self, id: TransferId) -> StoreResult<Option<Transfer>>;
    fn hold(&self, id: HoldId) -> StoreResult<Option<Hold>>;
    fn transfer_by_client_id(&self, client_id: &purse_core::ClientId) -> StoreResult<Option<Transfer>>;
    fn journal(&self, query: JournalQuery) -> StoreResult<Vec<Transfer>>;
    /// The balance right after the last posting at or before `at` (by posting time): walks
    /// the account's journal back, page by page, to the balance-after it recorded.
    fn balance_at(&self, account: AccountId, at: purse_core::Timestamp) -> StoreResult<i128> {
        const PAGE: u32 = 256;
        let mut before = None;
        loop {
            let page = self.journal(JournalQuery { account, before, limit: PAGE })?;
            if let Some(t) = page.iter().find(|t| t.posted_at <= at) {
                let after = if t.debit == account { t.debit_balance } else { t.credit_balance };
                return Ok(i128::from(after.0));
            }
            match page.last() {
                Some(t) if page.len() == PAGE as usize => before = Some(t.id),
                _ => return Ok(0),
            }
        }
    }
    /// The amount of the account's holds that are still open in the store but expired at
    /// `now` (the engine releases them with its next batch; answers must not wait for it).
    fn expired_reservations(&self, account: AccountId, now: purse_core::Timestamp) -> StoreResult<i64>;
    fn audit(&self) -> StoreResult<Audit>;
    fn outbox_count(&self) -> StoreResult<u64>;
}

/// The column lists both backends' schemas share, in the order their row readers expect.
pub mod columns {
    /// Accounts are read joined with their balances; the order is the row readers'.
    pub const ACCOUNT_SELECT: &str = "SELECT a.id, a.client_id, a.party_id, a.kind, a.system_role, a.parent_id, \
         a.currency, a.status, b.balance, b.reserved, a.credit_limit, a.temp_increase, a.temp_valid_until, \
         b.children_balance, a.thresholds, b.last_charge_at, a.created_at, b.last_transfer_id, b.uninvoiced, \
         a.client_tenant FROM accounts a JOIN balances b ON b.account_id = a.id";
    pub const ACCOUNT_COLUMNS: &str = "id, client_id, party_id, kind, system_role, parent_id, currency, status, \
         credit_limit, temp_increase, temp_valid_until, thresholds, created_at, client_tenant";
    /// The columns a new party is inserted with.
    pub const PARTY_COLUMNS: &str =
        "id, client_id, name, kind, reseller_id, billing, currency, wallet_id, created_at, client_tenant";
    /// The columns a party is read with (set later: `subscriber_transfers`).
    pub const PARTY_SELECT: &str = "id, client_id, name, kind, reseller_id, billing, currency, wallet_id, created_at, subscriber_transfers, invoiced_until, client_tenant";
    pub const TRANSFER_COLUMNS: &str = "id, client_id, kind, debit_account_id, credit_account_id, amount, currency, \
         at, posted_at, service, metadata, hold_id, reverses_id, overdrawn, debit_prev_id, credit_prev_id, \
         debit_balance, credit_balance, client_tenant, grant_parts";
    pub const API_KEY_COLUMNS: &str = "id, prefix, hash, name, role, party_id, scope, created_at, revoked_at";
    pub const USER_COLUMNS: &str =
        "id, email, name, password_hash, role, party_id, scope, created_at, disabled_at, lang";
    pub const SESSION_COLUMNS: &str = "hash, user_id, csrf, created_at, expires_at";
    pub const OUTBOX_COLUMNS: &str =
        "id, at, account_id, kind, threshold, direction, available_before, available_after, transfer_id, amount";
    pub const PROFILE_COLUMNS: &str =
        "id, name, reseller_id, currency, sort_order, max_quantity, period_s, subject, body, created_at, updated_at";
    pub const RULE_COLUMNS: &str = "profile_id, kind, threshold, notify, users, emails, inactivity_s";
    pub const ALERT_SETTINGS_COLUMNS: &str = "party_id, profile_id, email, alert_emails, warning, updated_at";
    pub const NOTIFICATION_COLUMNS: &str =
        "id, party_id, kind, threshold, available, currency, at, subject, body, payload";
    pub const DELIVERY_COLUMNS: &str =
        "id, notification_id, channel, target, endpoint_id, status, attempts, next_at, last_error, sent_at";
    pub const ENDPOINT_COLUMNS: &str = "id, owner_id, url, secret, enabled, disabled_reason, failures, created_at";
    pub const JOB_RUN_COLUMNS: &str = "job, key, claimed_by, started_at, finished_at, summary";
    pub const RECHARGE_SETTINGS_COLUMNS: &str =
        "party_id, enabled, method, threshold, amount, target, per_day_max, month_cap, \
         emails, stripe_customer, payment_method, card_brand, card_last4, failures, disabled_reason, updated_at";
    pub const RECHARGE_COLUMNS: &str =
        "id, party_id, method, reason, amount, currency, status, created_at, day, intent, transfer_id, invoice_id, error, finished_at";
    pub const HOLD_COLUMNS: &str = "id, client_id, account_id, amount, currency, created_at, expires_at, state, \
         service, metadata, resolved_at, resolution_client_id, captured, capture_transfer_id, client_tenant, resolution_client_tenant, \
         grant_parts";
}

/// How records are spelled in database columns, shared by every backend so that both
/// read and write the same words.
pub mod codec {
    use super::*;

    use purse_core::alerts::WarningLevel;
    use purse_core::{Event, EventId, EventKind};

    pub fn account_kind(kind: AccountKind) -> (&'static str, Option<&'static str>, Option<u64>) {
        match kind {
            AccountKind::System(role) => ("system", Some(system_role(role)), None),
            AccountKind::Wallet => ("wallet", None, None),
            AccountKind::MasterWallet => ("master_wallet", None, None),
            AccountKind::SubscriberDebit => ("subscriber_debit", None, None),
            AccountKind::SubscriberCredit { parent } => ("subscriber_credit", None, Some(parent.0)),
        }
    }

    pub fn parse_account_kind(kind: &str, role: Option<&str>, parent: Option<u64>) -> StoreResult<AccountKind> {
        Ok(match (kind, role, parent) {
            ("system", Some(role), _) => AccountKind::System(parse_system_role(role)?),
            ("wallet", ..) => AccountKind::Wallet,
            ("master_wallet", ..) => AccountKind::MasterWallet,
            ("subscriber_debit", ..) => AccountKind::SubscriberDebit,
            ("subscriber_credit", _, Some(p)) => AccountKind::SubscriberCredit { parent: AccountId(p) },
            _ => return Err(StoreError::Other(format!("unknown account kind {kind:?}"))),
        })
    }

    pub fn system_role(role: SystemRole) -> &'static str {
        match role {
            SystemRole::UsageRevenue => "usage_revenue",
            SystemRole::CardClearing => "card_clearing",
            SystemRole::CashClearing => "cash_clearing",
            SystemRole::BankClearing => "bank_clearing",
            SystemRole::Adjustments => "adjustments",
            SystemRole::Grants => "grants",
            SystemRole::Breakage => "breakage",
            SystemRole::Goodwill => "goodwill",
            SystemRole::WriteOffs => "write_offs",
            SystemRole::TaxPayable => "tax_payable",
        }
    }

    pub fn parse_system_role(text: &str) -> StoreResult<SystemRole> {
        SystemRole::ALL
            .into_iter()
            .find(|r| system_role(*r) == text)
            .ok_or_else(|| StoreError::Other(format!("unknown system role {text:?}")))
    }

    pub fn status(status: AccountStatus) -> &'static str {
        match status {
            AccountStatus::Open => "open",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse_status(text: &str) -> StoreResult<AccountStatus> {
        match text {
            "open" => Ok(AccountStatus::Open),
            "suspended" => Ok(AccountStatus::Suspended),
            "closed" => Ok(AccountStatus::Closed),
            _ => Err(StoreError::Other(format!("unknown account status {text:?}"))),
        }
    }

    pub fn billing(billing: Billing) -> &'static str {
        match billing {
            Billing::Prepaid => "prepaid",
            Billing::Postpaid => "postpaid",
        }
    }

    pub fn parse_billing(text: &str) -> StoreResult<Billing> {
        match text {
            "prepaid" => Ok(Billing::Prepaid),
            "postpaid" => Ok(Billing::Postpaid),
            _ => Err(StoreError::Other(format!("unknown billing {text:?}"))),
        }
    }

    pub fn hold_state(state: HoldState) -> &'static str {
        match state {
            HoldState::Open => "open",
            HoldState::Captured => "captured",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    pub fn parse_hold_state(text: &str) -> StoreResult<HoldState> {
        match text {
            "open" => Ok(HoldState::Open),
            "captured" => Ok(HoldState::Captured),
            "released" => Ok(HoldState::Released),
            "expired" => Ok(HoldState::Expired),
            _ => Err(StoreError::Other(format!("unknown hold state {text:?}"))),
        }
    }

    /// An event's columns: kind, threshold, direction, available before and after, transfer, amount.
    #[allow(clippy::type_complexity)]
    pub fn event_columns(
        kind: &EventKind,
    ) -> (&'static str, Option<i64>, Option<&'static str>, Option<i64>, i64, Option<i64>, Option<i64>) {
        match kind {
            EventKind::ThresholdCrossed { threshold, direction: d, available_before, available_after, transfer } => (
                "threshold_crossed",
                Some(threshold.0),
                Some(direction(*d)),
                Some(available_before.0),
                available_after.0,
                transfer.map(|t| id_to_db(t.0)),
                None,
            ),
            EventKind::Refilled { amount, available_after, transfer } => {
                ("refilled", None, None, None, available_after.0, Some(id_to_db(transfer.0)), Some(amount.0))
            }
        }
    }

    /// An event from the columns [`event_columns`] wrote.
    #[allow(clippy::too_many_arguments)]
    pub fn parse_event(
        id: i64,
        at: i64,
        account: i64,
        kind: &str,
        threshold: Option<i64>,
        direction: Option<&str>,
        before: Option<i64>,
        after: Option<i64>,
        transfer: Option<i64>,
        amount: Option<i64>,
    ) -> StoreResult<Event> {
        let after = Amount(after.unwrap_or(0));
        let transfer = transfer.map(|t| TransferId(id_from_db(t)));
        let kind = match kind {
            "threshold_crossed" => EventKind::ThresholdCrossed {
                threshold: Amount(threshold.unwrap_or(0)),
                direction: if direction == Some("up") { Direction::Up } else { Direction::Down },
                available_before: Amount(before.unwrap_or(0)),
                available_after: after,
                transfer,
            },
            "refilled" => EventKind::Refilled {
                amount: Amount(amount.unwrap_or(0)),
                available_after: after,
                transfer: transfer
                    .ok_or_else(|| StoreError::Other(format!("refilled event {id} without a transfer")))?,
            },
            other => return Err(StoreError::Other(format!("unknown event kind {other:?}"))),
        };
        Ok(Event { id: EventId(id_from_db(id)), at: Timestamp(at), account: AccountId(id_from_db(account)), kind })
    }

    /// Warning thresholds as one column: `a1000` for an amount, `p1250` for 12.50 %.
    pub fn warning_levels(levels: &[WarningLevel]) -> String {
        let one = |l: &WarningLevel| match l {
            WarningLevel::Amount(a) => format!("a{}", a.0),
            WarningLevel::Percent(bp) => format!("p{bp}"),
        };
        levels.iter().map(one).collect::<Vec<_>>().join(",")
    }

    pub fn parse_warning_levels(text: &str) -> StoreResult<Vec<WarningLevel>> {
        let bad = || StoreError::Other(format!("bad warning levels {text:?}"));
        text.split(',')
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_at(1) {
                ("a", n) => n.parse().map(|n| WarningLevel::Amount(Amount(n))).map_err(|_| bad()),
                ("p", n) => n.parse().map(WarningLevel::Percent).map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect()
    }

    /// A list of e-mail addresses as one column, one per line.
    pub fn emails(list: &[String]) -> String {
        list.join("\n")
    }

    pub fn parse_emails(text: &str) -> Vec<String> {
        text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    /// A list of ids as one column.
    pub fn ids(list: &[u64]) -> String {
        list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }

    pub fn parse_ids(text: &str) -> StoreResult<Vec<u64>> {
        text.split(',')
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().map_err(|_| StoreError::Other(format!("bad id list {text:?}"))))
            .collect()
    }

    pub fn direction(direction: Direction) -> &'static str {
        match direction {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }

    /// A party's kind as its columns: kind, reseller, billing, currency, wallet.
    pub fn party_columns(
        kind: &PartyKind,
    ) -> (&'static str, Option<i64>, Option<&'static str>, Option<&str>, Option<i64>) {
        match kind {
            PartyKind::Reseller => ("reseller", None, None, None, None),
            PartyKind::Customer { reseller, billing: b, currency, wallet } => (
                "customer",
                reseller.map(|r| id_to_db(r.0)),
                Some(billing(*b)),
                Some(currency.as_str()),
                Some(id_to_db(wallet.0)),
            ),
        }
    }

    pub fn role(role: Role) -> (&'static str, Option<u64>) {
        match role {
            Role::Operator => ("operator", None),
            Role::Reseller(p) => ("reseller", Some(p.0)),
            Role::Customer(p) => ("customer", Some(p.0)),
        }
    }

    pub fn parse_role(text: &str, party: Option<u64>) -> StoreResult<Role> {
        match (text, party) {
            ("operator", None) => Ok(Role::Operator),
            ("reseller", Some(p)) => Ok(Role::Reseller(PartyId(p))),
            ("customer", Some(p)) => Ok(Role::Customer(PartyId(p))),
            _ => Err(StoreError::Other(format!("bad role {text:?} with party {party:?}"))),
        }
    }

    pub fn scope(scope: Scope) -> &'static str {
        match scope {
            Scope::Read => "read",
            Scope::ReadWrite => "read_write",
        }
    }

    pub fn parse_scope(text: &str) -> StoreResult<Scope> {
        match text {
            "read" => Ok(Scope::Read),
            "read_write" => Ok(Scope::ReadWrite),
            _ => Err(StoreError::Other(format!("bad scope {text:?}"))),
        }
    }

    /// Thresholds as comma-separated units: `"10000,5000"`.
    /// An account's open grants' remainders and reservations, as one column:
    /// `12:500:0,14:250:100`.
    pub fn grant_balances(grants: &[(purse_core::GrantId, Amount, Amount)]) -> String {
        use std::fmt::Write;
        let mut text = String::with_capacity(grants.len() * 24);
        for (i, (g, r, h)) in grants.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(text, "{sep}{}:{}:{}", g.0, r.0, h.0);
        }
        text
    }

    /// The remainder and reservation of `grant` in an account's `grants` column.
    pub fn grant_balance(text: Option<&str>, grant: purse_core::GrantId) -> StoreResult<(Amount, Amount)> {
        let bad = || StoreError::Other(format!("bad grant balances {text:?}"));
        for part in text.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
            let mut fields = part.split(':').map(str::parse::<i64>);
            let (Some(Ok(g)), Some(Ok(r)), Some(Ok(h))) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad());
            };
            if g == id_to_db(grant.0) {
                return Ok((Amount(r), Amount(h)));
            }
        }
        Ok((Amount::ZERO, Amount::ZERO))
    }

    /// What a hold reserved on grants, as one column: `12:500,14:250`.
    pub fn grant_parts(parts: &[(purse_core::GrantId, Amount)]) -> String {
        let parts: Vec<String> = parts.iter().map(|(g, a)| format!("{}:{}", g.0, a.0)).collect();
        parts.join(",")
    }

    pub fn parse_grant_parts(text: &str) -> StoreResult<Vec<(purse_core::GrantId, Amount)>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|p| {
                let (g, a) = p.split_once(':').ok_or_else(|| StoreError::Other(format!("bad grant parts {text:?}")))?;
                match (g.parse::<u64>(), a.parse::<i64>()) {
                    (Ok(g), Ok(a)) => Ok((purse_core::GrantId(g), Amount(a))),
                    _ => Err(StoreError::Other(format!("bad grant parts {text:?}"))),
                }
            })
            .collect()
    }

    pub fn thresholds(values: &[Amount]) -> String {
        let parts: Vec<String> = values.iter().map(|a| a.0.to_string()).collect();
        parts.join(",")
    }

    pub fn parse_thresholds(text: &str) -> StoreResult<Vec<Amount>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|p| p.parse::<i64>().map(Amount).map_err(|_| StoreError::Other(format!("bad thresholds {text:?}"))))
            .collect()
    }

    pub fn currency_code(text: &str) -> StoreResult<purse_core::CurrencyCode> {
        purse_core::CurrencyCode::parse(text).map_err(|_| StoreError::Other(format!("bad currency {text:?}")))
    }

    /// A client id from its tenant column and its text column.
    pub fn client_id(tenant_text: &str, text: &str) -> StoreResult<purse_core::ClientId> {
        purse_core::ClientId::stored(parse_tenant(tenant_text)?, text)
            .ok_or_else(|| StoreError::Other(format!("bad client id {text:?}")))
    }

    /// How a tenant is spelled in `client_tenant` columns: `''` the operator, `r12`, `c34`.
    pub fn tenant(tenant: Tenant) -> String {
        match tenant {
            Tenant::Operator => String::new(),
            Tenant::Reseller(p) => format!("r{p}"),
            Tenant::Customer(p) => format!("c{p}"),
        }
    }

    pub fn parse_tenant(text: &str) -> StoreResult<Tenant> {
        let bad = || StoreError::Other(format!("bad client tenant {text:?}"));
        if text.is_empty() {
            return Ok(Tenant::Operator);
        }
        let (kind, digits) = text.split_at(1);
        let id = PartyId(digits.parse().map_err(|_| bad())?);
        match kind {
            "r" => Ok(Tenant::Reseller(id)),
            "c" => Ok(Tenant::Customer(id)),
            _ => Err(bad()),
        }
    }

    pub fn transfer_kind(text: &str) -> StoreResult<purse_core::TransferKind> {
        purse_core::TransferKind::parse(text)
            .ok_or_else(|| StoreError::Other(format!("unknown transfer kind {text:?}")))
    }

    /// The 64-bit index key of a client id. An operator's canonical UUID keeps its high 64
    /// bits, so time-ordered (v7) ids stay ordered and their index grows at its end; other
    /// text is hashed (FNV-1a), a tenant's after its tenant and a colon (`c34:` then the
    /// text: the key ids had when the tenant was a prefix of the text, so rows stored then
    /// keep theirs). Keys may collide: the index on them is not unique, and every lookup
    /// compares the full client id, tenant included.
    pub fn client_key(client_id: &purse_core::ClientId) -> i64 {
        let text = client_id.as_str();
        let prefix = match client_id.tenant() {
            Tenant::Operator => {
                if let Some(high) = uuid_high_bits(text) {
                    return high as i64;
                }
                String::new()
            }
            other => format!("{}:", tenant(other)),
        };
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in prefix.bytes().chain(text.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h as i64
    }

    fn uuid_high_bits(text: &str) -> Option<u64> {
        let b = text.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        // The 16 digits before the third hyphen, by position and table (once per posting, on
        // the writer's thread); either case, as `char::to_digit` read them before.
        const AT: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17];
        let mut high: u64 = 0;
        for at in AT {
            let digit = purse_core::text::HEX_VALUES[usize::from(b[at])];
            if digit == u8::MAX {
                return None;
            }
            high = (high << 4) | u64::from(digit & 15);
        }
        Some(high)
    }

    /// Ids are `u64` in the core and signed 64-bit in both databases. The ledger never
    /// assigns one at or above 2^63, so such an id (a caller's typo or probe) names no row:
    /// it maps to -1, which matches nothing, instead of failing the lookup.
    pub fn id_to_db(id: u64) -> i64 {
        i64::try_from(id).unwrap_or(-1)
    }

    pub fn id_from_db(id: i64) -> u64 {
        u64::try_from(id).expect("ids are never negative")
    }

    /// A recharge settings row, as read in column order ([`super::columns::RECHARGE_SETTINGS_COLUMNS`]).
    pub struct SettingsRow {
        pub party: i64,
        pub enabled: bool,
        pub method: String,
        pub threshold: i64,
        pub amount: Option<i64>,
        pub target: Option<i64>,
        pub per_day_max: i64,
        pub month_cap: Option<i64>,
        pub emails: String,
        pub stripe_customer: Option<String>,
        pub payment_method: Option<String>,
        pub card_brand: Option<String>,
        pub card_last4: Option<String>,
        pub failures: i64,
        pub disabled_reason: Option<String>,
        pub updated_at: i64,
    }

    pub fn recharge_settings(r: SettingsRow) -> StoreResult<purse_core::recharge::RechargeSettings> {
        use purse_core::recharge::{RechargeMethod, RechargeSettings, RechargeTarget, SavedCard};
        let method = RechargeMethod::parse(&r.method)
            .ok_or_else(|| StoreError::Other(format!("unknown recharge method {:?}", r.method)))?;
        let target = match (r.amount, r.target) {
            (Some(a), _) => RechargeTarget::Amount(Amount(a)),
            (None, Some(t)) => RechargeTarget::Balance(Amount(t)),
            (None, None) => return Err(StoreError::Other("recharge settings without amount or target".into())),
        };
        let card = match (r.stripe_customer, r.payment_method) {
            (Some(customer), Some(payment_method)) => Some(SavedCard {
                customer,
                payment_method,
                brand: r.card_brand.unwrap_or_default(),
                last4: r.card_last4.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(RechargeSettings {
            party: PartyId(id_from_db(r.party)),
            enabled: r.enabled,
            method,
            threshold: Amount(r.threshold),
            target,
            per_day_max: u32::try_from(r.per_day_max).unwrap_or(1),
            month_cap: r.month_cap.map(Amount),
            emails: parse_emails(&r.emails),
            card,
            failures: u32::try_from(r.failures).unwrap_or(0),
            disabled_reason: r.disabled_reason,
            updated_at: Timestamp(r.updated_at),
        })
    }

    /// The amount and target columns of a recharge target.
    pub fn recharge_target(t: purse_core::recharge::RechargeTarget) -> (Option<i64>, Option<i64>) {
        match t {
            purse_core::recharge::RechargeTarget::Amount(a) => (Some(a.0), None),
            purse_core::recharge::RechargeTarget::Balance(b) => (None, Some(b.0)),
        }
    }

    /// A recharge row in column order ([`super::columns::RECHARGE_COLUMNS`]).
    #[allow(clippy::too_many_arguments)]
    pub fn recharge(
        id: i64,
        party: i64,
        method: &str,
        reason: &str,
        amount: i64,
        currency: &str,
        status: &str,
        created_at: i64,
        day: String,
        intent: Option<String>,
        transfer: Option<i64>,
        invoice: Option<i64>,
        error: Option<String>,
        finished_at: Option<i64>,
    ) -> StoreResult<crate::RechargeRecord> {
        let bad = |what: &str, text: &str| StoreError::Other(format!("unknown {what} {text:?}"));
        Ok(crate::RechargeRecord {
            id: id_from_db(id),
            party: PartyId(id_from_db(party)),
            method: purse_core::recharge::RechargeMethod::parse(method)
                .ok_or_else(|| bad("recharge method", method))?,
            reason: crate::RechargeReason::parse(reason).ok_or_else(|| bad("recharge reason", reason))?,
            amount,
            currency: currency_code(currency)?,
            status: crate::RechargeStatus::parse(status).ok_or_else(|| bad("recharge status", status))?,
            created_at: Timestamp(created_at),
            day,
            intent,
            transfer: transfer.map(id_from_db),
            invoice: invoice.map(id_from_db),
            error,
            finished_at: finished_at.map(Timestamp),
        })
    }

    #[cfg(test)]
    mod tests {
        use purse_core::{ClientId, PartyId, Tenant};

        fn key(tenant: Tenant, text: &str) -> i64 {
            super::client_key(&ClientId::scoped(tenant, text).unwrap())
        }

        #[test]
        fn uuid_keys_keep_their_order_and_other_text_is_hashed() {
            let a = key(Tenant::Operator, "0190a5c3-0000-7000-8000-000000000000");
            let b = key(Tenant::Operator, "0190a5c3-0001-7000-8000-000000000000");
            assert!(a < b);
            assert_eq!(a, 0x0190_a5c3_0000_7000);
            assert_eq!(key(Tenant::Operator, "0190A5C3-0000-7000-8000-000000000000"), a, "either case");
            // Not a UUID (a 'g' among the first 16 digits, a hyphen misplaced): hashed.
            let fnv = |text: &str| {
                text.bytes()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
                    as i64
            };
            for text in ["0190a5c3-0000-7g00-8000-000000000000", "0190a5c30-000-7000-8000-000000000000"] {
                assert_eq!(key(Tenant::Operator, text), fnv(text), "{text}");
            }
            assert_ne!(key(Tenant::Operator, "call-1"), key(Tenant::Operator, "call-2"));
            assert_eq!(key(Tenant::Operator, "call-1"), key(Tenant::Operator, "call-1"));
        }

        #[test]
        fn a_tenants_key_is_the_key_its_prefixed_text_had() {
            // Rows stored when the tenant was a prefix of the text keep their index key.
            assert_eq!(key(Tenant::Customer(PartyId(34)), "x"), key(Tenant::Operator, "c34:x"));
            assert_eq!(
                key(Tenant::Reseller(PartyId(12)), "0190a5c3-0000-7000-8000-000000000000"),
                key(Tenant::Operator, "r12:0190a5c3-0000-7000-8000-000000000000")
            );
            for t in [Tenant::Operator, Tenant::Reseller(PartyId(7)), Tenant::Customer(PartyId(7))] {
                assert_eq!(super::parse_tenant(&super::tenant(t)).unwrap(), t);
            }
            assert!(super::parse_tenant("x1").is_err() && super::parse_tenant("r").is_err());
        }

        #[test]
        fn a_client_id_stored_under_looser_rules_reads_back_as_it_was() {
            // A direction override was accepted before text refused it: such rows stay readable.
            let text = "call-\u{202E}1";
            assert!(ClientId::scoped(Tenant::Operator, text).is_none(), "refused as new input");
            let read = super::client_id("c34", text).expect("readable");
            assert_eq!((read.as_str(), read.tenant()), (text, Tenant::Customer(PartyId(34))));
            assert!(super::client_id("", "").is_err());
        }
    }
}
