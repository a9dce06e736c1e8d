//! The notifier and scheduler that run inside `purse serve`: low-balance notifications
//! (profiles, warning thresholds, inactivity), their delivery by e-mail and signed webhooks,
//! and the daily sweep.
//!
//! One step ([`Notifier::step`]) does, in order:
//! 1. the outbox: every event since the cursor (threshold crossings and refills) is
//!    evaluated at once, and the cursor moves in the same transaction as the notifications
//!    it caused, so a crash repeats or loses nothing;
//! 2. the periodic evaluation of every customer (a quiet account is still noticed: the
//!    period, the max quantity and inactivity are matters of time), also repairing the
//!    levels the ledger watches;
//! 3. the daily sweep, claimed per day in the database so one process runs it;
//! 4. deliveries that are due, leased so that one process sends each, retried with
//!    exponential backoff.
//!
//! Every decision comes from the engine's clock, so tests move time and a month passes in
//! seconds; only leases (how long a process may work on something) use the wall clock.

mod billing;
mod collections;
pub mod mail;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use purse_core::alerts::{self, AlertSettings, Counter, Profile, Rule, RuleKind};
use purse_core::recharge::{self, RechargeSettings};
use purse_core::{
    Account, AccountKind, Amount, Command, Currency, CurrencyCode, EventKind, Item, Party, PartyId, PartyKind,
    Timestamp,
};
use purse_engine::Engine;
use purse_store::{
    AccessStore, AlertBatch, AlertKind, AlertStore, Attempt, Channel, CreditStore, DeliveryRecord, Fire,
    NewNotification, NewReceipt, NotificationRecord, PartyQuery, PaymentNotice, Reader, WebhookEndpoint,
};
use serde_json::json;

pub use mail::{MailConfig, Mailer, SmtpTls};

use crate::recharger::Recharger;
use crate::{AppError, AppResult};

const MICROS: i64 = Timestamp::MICROS_PER_S;

/// Settings of notifications and the scheduler (`[alerts]` in the configuration).
#[derive(Clone, Debug)]
pub struct AlertConfig {
    pub mail: MailConfig,
    /// The sender of every e-mail.
    pub from: String,
    /// Where the portal is reached, for the `{portal_link}` placeholder.
    pub portal_url: String,
    /// Told by user rules of customers that have no reseller.
    pub operator_email: Option<String>,
    /// How often (real time) the worker looks for work.
    pub tick: Duration,
    /// How often (clock time) every customer is evaluated.
    pub evaluate_every_s: i64,
    /// The daily sweep's hour (0-23) in `zone`.
    pub daily_hour: u32,
    pub zone: purse_core::time::Zone,
    /// First retry after this many seconds, doubling each time up to six hours.
    pub retry_base_s: i64,
    /// Attempts per delivery before it is failed.
    pub attempts_max: u32,
    /// Failed attempts in a row after which an endpoint is disabled.
    pub webhook_failures_max: u32,
    /// Let webhooks reach loopback, private and link-local addresses.
    pub allow_private_webhooks: bool,
    /// How long (clock time) before a grant with credit left expires its customer is told.
    pub grant_notice_lead_s: i64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            mail: MailConfig::Maildir("purse-maildir".into()),
            from: "Purse <alerts@purse.localhost>".into(),
            portal_url: "http://127.0.0.1:8080".into(),
            operator_email: None,
            tick: Duration::from_millis(250),
            evaluate_every_s: 60,
            daily_hour: 6,
            zone: purse_core::time::Zone::utc(),
            retry_base_s: 30,
            attempts_max: 8,
            webhook_failures_max: 20,
            allow_private_webhooks: false,
            grant_notice_lead_s: 7 * 86_400,
        }
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: usize,
    pub notifications: usize,
    pub sent: usize,
    pub failed: usize,
    pub retried: usize,
    /// The key of the daily sweep this step ran.
    pub swept: Option<String>,
    /// Recharge steps run.
    pub recharges: usize,
    /// Temporary credit limit increases reverted.
    pub reverted: usize,
    /// Billing periods closed (usage invoices issued, or nothing to invoice).
    pub invoiced: usize,
    /// Usage invoices e-mailed.
    pub invoices_sent: usize,
    /// Grants swept at their expiry.
    pub grants_expired: usize,
    /// Recurring grants' grants made.
    pub grants_made: usize,
    /// Customers suspended and suspensions lifted by the dunning policy.
    pub suspended: usize,
    pub lifted: usize,
}

pub(crate) fn wall_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What an evaluation needs besides the accounts, read once per pass.
struct Context {
    profiles: Vec<Profile>,
    settings: HashMap<PartyId, AlertSettings>,
    counters: HashMap<(PartyId, RuleKind), Counter>,
    endpoints: Vec<WebhookEndpoint>,
    currencies: HashMap<CurrencyCode, Currency>,
    emails: HashMap<u64, String>,
    recharge: HashMap<PartyId, RechargeSettings>,
}

pub struct Notifier {
    engine: Arc<Engine>,
    reader: Arc<dyn Reader>,
    alerts: Arc<dyn AlertStore>,
    access: Arc<dyn AccessStore>,
    mailer: Mailer,
    config: AlertConfig,
    /// Who claims jobs: host and process.
    name: String,
    last_evaluation: Mutex<Option<Timestamp>>,
    sweep_checked: Mutex<Option<(String, Instant)>>,
    /// Auto-recharge, evaluated with the notifications and run after them.
    payments: Option<Arc<Recharger>>,
    /// The version of the recharge settings last evaluated.
    recharge_seen: Mutex<Option<u64>>,
    /// Where expired temporary increases are found, to revert them.
    credit: Option<Arc<dyn CreditStore>>,
    /// When the next customer's billing cycle starts (as of the last invoicing pass).
    next_invoicing: Mutex<Option<Timestamp>>,
    /// Where expiring grants and due recurring grants are found.
    grants: Option<Arc<dyn purse_store::GrantStore>>,
}

impl Notifier {
    /// `reader`, `alerts` and `access` should be a connection of the worker's own.
    pub fn new(
        engine: Arc<Engine>,
        reader: Arc<dyn Reader>,
        alerts: Arc<dyn AlertStore>,
        access: Arc<dyn AccessStore>,
        config: AlertConfig,
    ) -> Result<Notifier, crate::ConfigError> {
        let mailer = Mailer::new(config.mail.clone(), &config.from)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name = format!("{}:{}", host.trim(), std::process::id());
        Ok(Notifier {
            engine,
            reader,
            alerts,
            access,
            mailer,
            config,
            name,
            last_evaluation: Mutex::new(None),
            sweep_checked: Mutex::new(None),
            payments: None,
            recharge_seen: Mutex::new(None),
            credit: None,
            next_invoicing: Mutex::new(None),
            grants: None,
        })
    }

    /// Reverts temporary credit limit increases that ran out, too.
    pub fn with_credit(mut self, credit: Arc<dyn CreditStore>) -> Notifier {
        self.credit = Some(credit);
        self
    }

    /// Records the revert of every temporary increase whose *valid until* has passed. The
    /// ledger never counts such an increase however late this runs; this only removes it
    /// and writes the history's revert (as of its *valid until*). Repeating it, or running it
    /// in several processes at once, reverts each increase once.
    pub fn revert_increases(&self, now: Timestamp) -> AppResult<usize> {
        let Some(credit) = &self.credit else { return Ok(0) };
        let mut reverted = 0;
        loop {
            let due = credit.expired_increases(now, 256)?;
            if due.is_empty() {
                return Ok(reverted);
            }
            let n = due.len();
            let items = due
                .into_iter()
                .map(|(account, valid_until)| Item::single(Command::RevertIncrease { account, valid_until }))
                .collect();
            self.engine.submit(items)?;
            reverted += n;
            if n < 256 {
                return Ok(reverted);
            }
        }
    }

    /// Sweeps expired grants and makes recurring grants' grants too.
    pub fn with_grants(mut self, grants: Arc<dyn purse_store::GrantStore>) -> Notifier {
        self.grants = Some(grants);
        self
    }

    /// Evaluates and runs auto-recharge too.
    pub fn with_payments(mut self, payments: Arc<Recharger>) -> Notifier {
        self.payments = Some(payments);
        self
    }

    pub fn payments(&self) -> Option<&Arc<Recharger>> {
        self.payments.as_ref()
    }

    pub fn describe_mail(&self) -> String {
        self.mailer.describe()
    }

    fn now(&self) -> Timestamp {
        self.engine.clock().now()
    }

    /// One pass of everything due. Errors are reported; the next pass tries again.
    pub fn step(&self) -> AppResult<Report> {
        let mut report = Report::default();
        self.drain_outbox(&mut report)?;
        let now = self.now();
        report.reverted = self.revert_increases(now)?;
        if let Some(grants) = &self.grants {
            let scheduler = crate::grants::GrantScheduler { engine: &self.engine, grants: grants.as_ref() };
            report.grants_expired = scheduler.sweep(now)?;
            report.grants_made = scheduler.allowances(now)?;
        }
        let mut due = {
            let last = self.last_evaluation.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            last.is_none_or(|l| now.0.saturating_sub(l.0) >= self.config.evaluate_every_s * MICROS || now < l)
        };
        // Changed recharge settings (or a newly saved card) are evaluated at once: a customer
        // already below its new threshold crosses nothing, so the outbox would not tell.
        let recharge_version = match &self.payments {
            Some(p) => Some(settings_version(&p.store().all_recharge_settings()?)),
            None => None,
        };
        if recharge_version != *self.recharge_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            due = true;
        }
        if due {
            if let Some(grants) = &self.grants {
                let scheduler = crate::grants::GrantScheduler { engine: &self.engine, grants: grants.as_ref() };
                let lead_us = self.config.grant_notice_lead_s.saturating_mul(MICROS);
                report.notifications += scheduler.notices(self.alerts.as_ref(), now, lead_us)?;
            }
            self.sync_reversals(now)?;
            let (notifications, invoiced) = self.evaluate_all(now)?;
            report.notifications += notifications;
            report.invoiced += invoiced;
            *self.last_evaluation.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
            *self.recharge_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = recharge_version;
        }
        if !due && self.invoicing_due(now) {
            report.invoiced += self.issue_now_due(now)?;
        }
        report.invoices_sent = self.send_invoices(now)?;
        self.book_receipt_taxes(now)?;
        self.collect(now, due, &mut report)?;
        self.daily_sweep(now, &mut report)?;
        if let Some(p) = &self.payments {
            report.recharges += p.step()?;
        }
        self.deliver(&mut report)?;
        Ok(report)
    }

    fn context(&self) -> AppResult<Context> {
        let settings = self.alerts.all_alert_settings()?.into_iter().map(|s| (s.party, s)).collect();
        let counters = self.alerts.counters()?.into_iter().map(|(p, k, c)| ((p, k), c)).collect();
        Ok(Context {
            profiles: self.alerts.profiles()?,
            settings,
            counters,
            endpoints: self.alerts.endpoints()?,
            currencies: self.reader.currencies()?.into_iter().map(|c| (c.code, c)).collect(),
            emails: self.access.users()?.into_iter().map(|u| (u.id, u.email)).collect(),
            recharge: match &self.payments {
                Some(p) => p.store().all_recharge_settings()?.into_iter().map(|s| (s.party, s)).collect(),
                None => HashMap::new(),
            },
        })
    }

    /// The wallet's available balance now, not counting holds that expired since the last batch.
    fn available(&self, wallet: &Account, now: Timestamp) -> AppResult<i128> {
        let expired =
            if wallet.reserved.is_positive() { self.reader.expired_reservations(wallet.id, now)? } else { 0 };
        Ok(wallet.own_available(now) + i128::from(expired))
    }

    /// Evaluates every outbox event since the cursor, in batches.
    fn drain_outbox(&self, report: &mut Report) -> AppResult<()> {
        for _ in 0..1000 {
            let cursor = self.alerts.outbox_cursor()?;
            let events = self.alerts.events_after(cursor, 500)?;
            let Some(last) = events.last().map(|e| e.id.0) else { return Ok(()) };
            let ctx = self.context()?;
            let now = self.now();
            let mut batch = AlertBatch { cursor: Some((cursor, last)), ..AlertBatch::default() };
            let mut touched: Vec<(Party, Account)> = Vec::new();
            let mut counters = ctx.counters.clone();
            for event in &events {
                let Some(wallet) = self.reader.account(event.account)? else { continue };
                let (Some(party_id), AccountKind::Wallet) = (wallet.party, wallet.kind) else { continue };
                let Some(party) = self.reader.party(party_id)? else { continue };
                match &event.kind {
                    EventKind::Refilled { transfer, .. } => {
                        batch.receipts.extend(self.receipt(&ctx, &party, &wallet, *transfer)?);
                        if !batch.resets.contains(&party_id) {
                            batch.resets.push(party_id);
                        }
                        for kind in RuleKind::ALL {
                            if let Some(c) = counters.get_mut(&(party_id, kind)) {
                                c.count = 0;
                            }
                        }
                    }
                    EventKind::ThresholdCrossed {
                        threshold,
                        direction: purse_core::Direction::Down,
                        available_after,
                        ..
                    } => {
                        let settings = ctx.settings.get(&party_id);
                        let warned = settings
                            .is_some_and(|s| s.warning.iter().any(|w| w.resolve(wallet.credit_limit) == *threshold));
                        if warned {
                            let n = self.notification(
                                &ctx,
                                &party,
                                &wallet,
                                AlertKind::Warning,
                                None,
                                *threshold,
                                i128::from(available_after.0),
                                event.at,
                            );
                            batch.fires.push(Fire { counter: None, notification: n });
                        }
                    }
                    EventKind::ThresholdCrossed { .. } => {}
                }
                if !touched.iter().any(|(p, _)| p.id == party_id) {
                    touched.push((party, wallet));
                }
            }
            for (party, wallet) in &touched {
                batch.fires.extend(self.rule_fires(&ctx, &counters, party, wallet, now)?);
                self.recharge(&ctx, party, wallet, now)?;
            }
            let fired = batch.fires.len();
            if self.alerts.record_alerts(&batch, now)? {
                report.events += events.len();
                report.notifications += fired;
            }
            // Otherwise another process moved first: read again.
        }
        Ok(())
    }

    /// The rules of the customer's profile that are due now.
    fn rule_fires(
        &self,
        ctx: &Context,
        counters: &HashMap<(PartyId, RuleKind), Counter>,
        party: &Party,
        wallet: &Account,
        now: Timestamp,
    ) -> AppResult<Vec<Fire>> {
        let Some(profile) = alerts::profile_of(party, ctx.settings.get(&party.id), &ctx.profiles) else {
            return Ok(Vec::new());
        };
        if wallet.status == purse_core::AccountStatus::Closed {
            return Ok(Vec::new());
        }
        let available = self.available(wallet, now)?;
        let quiet_since = wallet.last_charge_at.unwrap_or(wallet.created_at);
        let mut fires = Vec::new();
        for rule in &profile.rules {
            let counter = counters.get(&(party.id, rule.kind)).copied().unwrap_or_default();
            if alerts::rule_due(profile, rule, available, quiet_since, counter, now) {
                let n = self.notification(
                    ctx,
                    party,
                    wallet,
                    AlertKind::Rule(rule.kind),
                    Some((profile, rule)),
                    rule.threshold,
                    available,
                    now,
                );
                fires.push(Fire { counter: Some((rule.kind, counter)), notification: n });
            }
        }
        Ok(fires)
    }

    /// Evaluates every customer, and repairs the levels the ledger watches for them.
    /// Returns the notifications recorded.
    /// Evaluates every customer: notifications and recharges due, and the usage invoices of
    /// cycles that started. Returns (notifications recorded, billing periods closed).
    ///
    /// Customers are taken a page at a time with their accounts, so memory stays bounded
    /// however many there are; what is the same for all (profiles, settings, counters, billing
    /// settings, credit policies) is read once per pass, and again only when a compare-and-set
    /// on the counters finds that another process recorded meanwhile.
    pub fn evaluate_all(&self, now: Timestamp) -> AppResult<(usize, usize)> {
        let billing = self.billing_settings()?;
        let policies = match &self.credit {
            Some(credit) => Some((credit.credit_policies()?, credit.classes()?)),
            None => None,
        };
        let mut ctx = self.context()?;
        let (mut recorded, mut invoiced, mut next) = (0, 0, None);
        self.each_customer_page(|customers, all| {
            if let Some((policies, classes)) = &policies {
                self.sync_transfers(customers, policies, classes)?;
            }
            invoiced += self.issue_due_invoices(customers, all, &billing, now, &mut next)?;
            let accounts: HashMap<_, _> = all.iter().map(|a| (a.id, a)).collect();
            let pairs: Vec<(&Party, &Account)> = customers
                .iter()
                .filter_map(|p| match p.kind {
                    PartyKind::Customer { wallet, .. } => accounts.get(&wallet).map(|w| (p, *w)),
                    PartyKind::Reseller => None,
                })
                .collect();
            recorded += self.evaluate(&mut ctx, &pairs, now)?;
            Ok(())
        })?;
        *self.next_invoicing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok((recorded, invoiced))
    }

    /// Runs `f` on every customer, a page at a time, with the accounts the page's customers own.
    pub(super) fn each_customer_page(&self, mut f: impl FnMut(&[Party], &[Account]) -> AppResult<()>) -> AppResult<()> {
        let mut after = None;
        loop {
            let page = self.reader.parties(PartyQuery {
                resellers: Some(false),
                after,
                limit: 1000,
                ..PartyQuery::default()
            })?;
            let Some(last) = page.last().map(|p| p.id) else { return Ok(()) };
            let ids: Vec<PartyId> = page.iter().map(|p| p.id).collect();
            let accounts = self.reader.accounts_of_parties(&ids)?;
            f(&page, &accounts)?;
            after = Some(last);
        }
    }

    /// Evaluates the rules of `pairs` (customers and their wallets), records what fires and
    /// starts the recharges that are due. Returns how many notifications were recorded.
    fn evaluate(&self, ctx: &mut Context, pairs: &[(&Party, &Account)], now: Timestamp) -> AppResult<usize> {
        let mut recorded = 0;
        for chunk in pairs.chunks(200) {
            for attempt in 0.. {
                if attempt > 0 {
                    *ctx = self.context()?;
                } else {
                    self.sync_levels(ctx, chunk)?;
                }
                let mut batch = AlertBatch::default();
                for (party, wallet) in chunk {
                    batch.fires.extend(self.rule_fires(ctx, &ctx.counters, party, wallet, now)?);
                    if attempt == 0 {
                        self.recharge(ctx, party, wallet, now)?;
                    }
                }
                if batch.fires.is_empty() {
                    break;
                }
                let n = batch.fires.len();
                if self.alerts.record_alerts(&batch, now)? {
                    // The snapshot's counters are now behind what was recorded; a later
                    // chunk that shares one fails its compare-and-set and reads them again.
                    recorded += n;
                    break;
                }
                if attempt >= 5 {
                    return Err(AppError::Internal("notification counters kept changing under the evaluation".into()));
                }
            }
        }
        Ok(recorded)
    }

    /// Starts the customer's automatic recharge if it is due (the store refuses a second one
    /// in flight, so evaluating twice is harmless).
    fn recharge(&self, ctx: &Context, party: &Party, wallet: &Account, now: Timestamp) -> AppResult<()> {
        let (Some(p), Some(s)) = (&self.payments, ctx.recharge.get(&party.id)) else { return Ok(()) };
        if !s.enabled {
            return Ok(());
        }
        let available = self.available(wallet, now)?;
        p.evaluate(party, wallet, available, Some(s), now).map(drop)
    }

    /// Repairs the ledger's subscriber-transfers flags that differ from the customers'
    /// policies (a process that stopped between saving a policy and setting the flag).
    /// Policies are read after the parties, so a change saved meanwhile is applied, not undone.
    fn sync_transfers(
        &self,
        customers: &[Party],
        policies: &[purse_store::CreditPolicy],
        classes: &[purse_store::ClassRecord],
    ) -> AppResult<()> {
        let changes = purse_store::credit::transfer_changes(customers, policies, classes);
        if changes.is_empty() {
            return Ok(());
        }
        let items = changes
            .into_iter()
            .map(|(party, allowed)| Item::single(Command::SetSubscriberTransfers { party, allowed }))
            .collect();
        self.engine.submit(items).map(drop).map_err(AppError::from)
    }

    /// Sets the levels the ledger reports crossings of where they differ from the settings.
    fn sync_levels(&self, ctx: &Context, customers: &[(&Party, &Account)]) -> AppResult<()> {
        let enabled: Vec<RechargeSettings> = ctx.recharge.values().cloned().collect();
        let changes = alerts::level_changes(
            customers.iter().copied(),
            &ctx.settings,
            &ctx.profiles,
            &recharge::watched(&enabled),
        );
        if changes.is_empty() {
            return Ok(());
        }
        let items = changes
            .into_iter()
            .map(|(account, thresholds)| Item::single(Command::SetThresholds { account, thresholds }))
            .collect();
        self.engine.submit(items).map(drop).map_err(AppError::from)
    }

    fn recipients(&self, ctx: &Context, party: &Party, kind: AlertKind, rule: Option<&Rule>) -> Vec<String> {
        let mine = ctx.settings.get(&party.id);
        let mut list: Vec<String> = Vec::new();
        match (kind, rule) {
            (AlertKind::Rule(RuleKind::User), Some(rule)) => {
                if rule.notify {
                    let reseller = match party.kind {
                        PartyKind::Customer { reseller, .. } => reseller,
                        PartyKind::Reseller => None,
                    };
                    let email = match reseller {
                        Some(r) => ctx.settings.get(&r).and_then(|s| s.email.clone()),
                        None => self.config.operator_email.clone(),
                    };
                    list.extend(email);
                }
                list.extend(rule.users.iter().filter_map(|u| ctx.emails.get(u).cloned()));
                list.extend(rule.emails.iter().cloned());
            }
            (_, rule) => {
                if rule.is_none_or(|r| r.notify) {
                    list.extend(mine.and_then(|s| s.email.clone()));
                }
                list.extend(rule.iter().flat_map(|r| r.emails.iter().cloned()));
                list.extend(mine.iter().flat_map(|s| s.alert_emails.iter().cloned()));
            }
        }
        let mut seen = HashSet::new();
        list.retain(|e| seen.insert(e.to_ascii_lowercase()));
        list
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &self,
        ctx: &Context,
        party: &Party,
        wallet: &Account,
        kind: AlertKind,
        rule: Option<(&Profile, &Rule)>,
        threshold: Amount,
        available: i128,
        at: Timestamp,
    ) -> NewNotification {
        let currency =
            ctx.currencies.get(&wallet.currency).copied().unwrap_or(Currency { code: wallet.currency, scale: 0 });
        let shown = |v: i128| currency.format(Amount(v.clamp(i64::MIN.into(), i64::MAX.into()) as i64));
        let staff = kind == AlertKind::Rule(RuleKind::User);
        let link = if staff {
            format!("{}/customers/{}/balance", self.config.portal_url.trim_end_matches('/'), party.id)
        } else {
            format!("{}/settings/account/billing/balance-details", self.config.portal_url.trim_end_matches('/'))
        };
        let rule_title = match kind {
            AlertKind::Rule(k) => k.title(),
            AlertKind::Warning => "warning threshold",
            AlertKind::Payment(_) => "payment",
        };
        let values = [
            ("customer", party.name.clone()),
            ("client_id", party.client_id.as_str().to_owned()),
            ("balance", currency.format(wallet.balance)),
            ("available", shown(available)),
            ("threshold", currency.format(threshold)),
            ("currency", currency.code.to_string()),
            ("rule", rule_title.to_owned()),
            ("portal_link", link),
        ];
        let profile =
            rule.map(|(p, _)| p).or_else(|| alerts::profile_of(party, ctx.settings.get(&party.id), &ctx.profiles));
        let subject = alerts::render(profile.map_or(alerts::DEFAULT_SUBJECT, |p| &p.subject), &values);
        let body = alerts::render(profile.map_or(alerts::DEFAULT_BODY, |p| &p.body), &values);
        let payload = json!({
            "type": kind.event_type(),
            "timestamp": purse_core::time::format(at),
            "data": {
                "customer": party.id.0,
                "client_id": party.client_id.as_str(),
                "name": party.name,
                "rule": kind.as_str(),
                "threshold": currency.format(threshold),
                "available": shown(available),
                "balance": currency.format(wallet.balance),
                "currency": currency.code.to_string(),
            }
        })
        .to_string();
        let reseller = match party.kind {
            PartyKind::Customer { reseller, .. } => reseller,
            PartyKind::Reseller => None,
        };
        let endpoints = ctx
            .endpoints
            .iter()
            .filter(|e| {
                e.enabled && (e.owner.is_none() || e.owner == reseller || (e.owner == Some(party.id) && !staff))
            })
            .map(|e| (e.id, e.url.clone()))
            .collect();
        NewNotification {
            party: party.id,
            kind,
            threshold: threshold.0,
            available: available.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            currency: wallet.currency,
            at,
            subject,
            body,
            payload,
            emails: self.recipients(ctx, party, kind, rule.map(|(_, r)| r)),
            endpoints,
        }
    }

    /// The key of the latest daily sweep due at `now`: the local date whose sweep hour has passed.
    pub fn sweep_key(&self, now: Timestamp) -> String {
        let zone = &self.config.zone;
        let mut day = zone.day_of(now);
        if now.0 - zone.day_start(day).0 < i64::from(self.config.daily_hour) * 3600 * MICROS {
            day -= 1;
        }
        purse_core::time::format_date(day)
    }

    fn daily_sweep(&self, now: Timestamp, report: &mut Report) -> AppResult<()> {
        let key = self.sweep_key(now);
        {
            let checked = self.sweep_checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((k, at)) = &*checked {
                if *k == key && at.elapsed() < Duration::from_secs(5) {
                    return Ok(());
                }
            }
        }
        let wall = wall_us();
        let claimed = self.alerts.claim_job("daily_sweep", &key, &self.name, now, wall, wall + 600 * MICROS)?;
        *self.sweep_checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((key.clone(), Instant::now()));
        if !claimed {
            return Ok(());
        }
        let (fired, invoiced) = self.evaluate_all(now)?;
        *self.last_evaluation.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
        report.notifications += fired;
        report.invoiced += invoiced;
        let summary = format!("evaluated every customer; {fired} notifications, {invoiced} billing periods closed");
        self.alerts.finish_job("daily_sweep", &key, now, &summary)?;
        crate::log::info("daily sweep", json!({ "key": key, "summary": summary, "by": self.name }));
        report.swept = Some(key);
        Ok(())
    }

    /// Sends every due delivery.
    fn deliver(&self, report: &mut Report) -> AppResult<()> {
        loop {
            let now = self.now();
            let wall = wall_us();
            let due = self.alerts.claim_deliveries(now, wall, wall + 120 * MICROS, 20)?;
            if due.is_empty() {
                return Ok(());
            }
            for d in due {
                let attempt = self.attempt(&d, now)?;
                match &attempt {
                    Attempt::Sent { .. } => report.sent += 1,
                    Attempt::Retry { .. } => report.retried += 1,
                    Attempt::Failed { error } => {
                        report.failed += 1;
                        crate::log::info(
                            "delivery failed",
                            json!({ "delivery": d.id, "channel": d.channel.as_str(), "target": d.target, "error": error }),
                        );
                    }
                }
                self.alerts.finish_delivery(d.id, &attempt)?;
            }
        }
    }

    /// The receipt voucher of a payment that reached a customer's wallet (none for recharges
    /// from a master wallet or issued credit: nothing was received), with its e-mail to the
    /// billing e-mail.
    fn receipt(
        &self,
        ctx: &Context,
        party: &Party,
        wallet: &Account,
        transfer: purse_core::TransferId,
    ) -> AppResult<Option<NewReceipt>> {
        let Some(t) = self.reader.transfer(transfer)? else { return Ok(None) };
        if t.kind != purse_core::TransferKind::Payment || t.credit != wallet.id {
            return Ok(None);
        }
        let method = match self.reader.account(t.debit)?.map(|a| a.kind) {
            Some(AccountKind::System(purse_core::SystemRole::CardClearing)) => "card",
            Some(AccountKind::System(purse_core::SystemRole::CashClearing)) => "cash",
            _ => "bank_transfer",
        };
        let PartyKind::Customer { reseller, .. } = party.kind else { return Ok(None) };
        let Some(c) = ctx.currencies.get(&wallet.currency) else { return Ok(None) };
        // Receipts go by e-mail only: the payments were posted by the callers themselves.
        let email = ctx.settings.get(&party.id).and_then(|s| s.email.clone());
        let notice = email.map(|to| NewNotification {
            party: party.id,
            kind: AlertKind::Payment(PaymentNotice::Receipt),
            threshold: t.amount.0,
            available: wallet.balance.0,
            currency: c.code,
            at: t.posted_at,
            subject: format!("Receipt voucher {{receipt}}: {} {} received from {}", c.format(t.amount), c.code, party.name),
            body: format!(
                "Hello,\n\nWe received {} {} from {} ({}) on {}. Receipt voucher {{receipt}} is attached.\n\n-- Purse",
                c.format(t.amount),
                c.code,
                party.name,
                method.replace('_', " "),
                &purse_core::time::format(t.posted_at)[..10]
            ),
            payload: json!({
                "type": PaymentNotice::Receipt.event_type(),
                "timestamp": purse_core::time::format(t.posted_at),
                "data": { "customer": party.id.0, "transfer": t.id.0, "amount": c.format(t.amount), "currency": c.code.to_string() }
            })
            .to_string(),
            emails: vec![to],
            endpoints: Vec::new(),
        });
        Ok(Some(NewReceipt {
            party: party.id,
            issuer: reseller,
            transfer: t.id.0,
            amount: t.amount.0,
            currency: c.code,
            method: method.to_owned(),
            paid_at: t.posted_at,
            invoice: made_for(t.client_id.as_str()),
            notice,
        }))
    }

    /// The PDF an e-mail carries: a top-up invoice's notice carries the invoice, a receipt's
    /// the voucher (made again at each attempt).
    fn attachment(&self, n: &NotificationRecord) -> AppResult<Option<(String, Vec<u8>)>> {
        let Some(p) = &self.payments else { return Ok(None) };
        if n.kind == AlertKind::Payment(PaymentNotice::Receipt) {
            let Some((issuer, number)) = purse_store::payments::find_receipt_number(&n.subject) else {
                return Ok(None);
            };
            let Some(r) = p.store().receipt_by_number(issuer, number)?.filter(|r| r.party == n.party) else {
                return Ok(None);
            };
            let Some(customer) = self.reader.party(n.party)? else { return Ok(None) };
            let issuer = r.issuer.map(|i| self.reader.party(i)).transpose()?.flatten();
            let Some(c) = self.reader.currencies()?.into_iter().find(|c| c.code == r.currency) else {
                return Ok(None);
            };
            let invoice = r.invoice.map(|i| p.store().invoice(i)).transpose()?.flatten().map(|i| i.display_number());
            let pdf = crate::payments::receipt_document(&r, &customer, issuer.as_ref(), invoice.as_deref(), &c);
            return Ok(Some((format!("{}.pdf", r.display_number()), pdf)));
        }
        if matches!(n.kind, AlertKind::Payment(PaymentNotice::TopUpInvoice | PaymentNotice::Invoice)) {
            return self.invoice_attachment(n.party, &n.subject);
        }
        if n.kind == AlertKind::Payment(PaymentNotice::Refund) {
            let Some((issuer, number)) = purse_store::payments::find_refund_number(&n.subject) else { return Ok(None) };
            let Some(r) = p.store().refund_by_number(issuer, number)?.filter(|r| r.party == n.party) else {
                return Ok(None);
            };
            let pdf = crate::refunds::document(self.reader.as_ref(), p.store().as_ref(), &r)?;
            return Ok(Some((format!("{}.pdf", r.display_number().unwrap_or_default()), pdf)));
        }
        Ok(None)
    }

    fn attempt(&self, d: &DeliveryRecord, now: Timestamp) -> AppResult<Attempt> {
        let Some(n) = self.alerts.notification(d.notification)? else {
            return Ok(Attempt::Failed { error: "the notification is gone".into() });
        };
        let retry = |error: String| {
            if d.attempts >= self.config.attempts_max {
                Attempt::Failed { error: format!("{error} (after {} attempts)", d.attempts) }
            } else {
                let delay =
                    self.config.retry_base_s.saturating_mul(1 << (d.attempts.saturating_sub(1)).min(20)).min(6 * 3600);
                Attempt::Retry { at: now.plus_micros(delay * MICROS), error }
            }
        };
        match d.channel {
            Channel::Email => {
                let message_id = format!("<purse.n{}.d{}@purse>", n.id, d.id);
                let attachment = self.attachment(&n)?;
                let attachment =
                    attachment.as_ref().map(|(name, bytes)| (name.as_str(), "application/pdf", bytes.clone()));
                Ok(match self.mailer.send(&d.target, &n.subject, &n.body, &message_id, attachment) {
                    Ok(()) => Attempt::Sent { at: now },
                    Err(e) if e.permanent => Attempt::Failed { error: e.message },
                    Err(e) => retry(e.message),
                })
            }
            Channel::Webhook => {
                let endpoint = d.endpoint.and_then(|id| self.alerts.endpoints().ok()?.into_iter().find(|e| e.id == id));
                let Some(endpoint) = endpoint else {
                    return Ok(Attempt::Failed { error: "the endpoint was deleted".into() });
                };
                if !endpoint.enabled {
                    let why = endpoint.disabled_reason.unwrap_or_default();
                    return Ok(Attempt::Failed { error: format!("the endpoint is disabled: {why}") });
                }
                let id = format!("msg_{}", n.id);
                let sent = webhook::post(
                    &endpoint.url,
                    &endpoint.secret,
                    &id,
                    now.0 / MICROS,
                    n.payload.as_bytes(),
                    self.config.allow_private_webhooks,
                );
                let (attempt, ok, disable) = match sent {
                    webhook::Sent::Status(s) if (200..300).contains(&s) => (Attempt::Sent { at: now }, true, None),
                    webhook::Sent::Status(410) => (
                        Attempt::Failed { error: "410 Gone: the endpoint was disabled".into() },
                        false,
                        Some("the receiver answered 410 Gone"),
                    ),
                    webhook::Sent::Status(s) => (retry(format!("the receiver answered {s}")), false, None),
                    webhook::Sent::BadSecret => {
                        (retry("the endpoint's secret is not whsec_ and base64".into()), false, None)
                    }
                    webhook::Sent::Failed(e) => (retry(e.to_string()), false, None),
                };
                self.alerts.endpoint_attempt(endpoint.id, ok, disable, self.config.webhook_failures_max)?;
                Ok(attempt)
            }
        }
    }

    /// Runs steps on a thread of its own until the handle is stopped: at once after a batch of
    /// this process's engine recorded outbox events, else every `tick`.
    pub fn spawn(self: Arc<Self>) -> AppResult<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("purse-alerts".into())
            .spawn(move || {
                // A failing step is logged once, not at every tick of an outage (a database
                // restarting); the step after it resumes by itself.
                let mut failing = false;
                let mut seen = self.engine.events_committed();
                while !flag.load(Ordering::Relaxed) {
                    match self.step() {
                        Err(e) if !failing => {
                            crate::log::info("alerts step failed; retrying every tick", json!({ "error": e.detail() }));
                            failing = true;
                        }
                        Ok(_) if failing => {
                            crate::log::info("alerts steps succeed again", json!({}));
                            failing = false;
                        }
                        _ => {}
                    }
                    // A threshold crossed or a refill in this process wakes the worker at once
                    // (an event, not a poll); the tick remains for time-driven work and for
                    // other processes' commits.
                    if failing {
                        std::thread::sleep(self.config.tick);
                        seen = self.engine.events_committed();
                    } else {
                        seen = self.engine.wait_for_events(seen, self.config.tick);
                    }
                }
            })
            .map_err(|e| AppError::Internal(format!("starting the alerts thread: {e}")))?;
        Ok(Worker { stop, thread: Some(thread) })
    }
}

/// A hash of what in recharge settings can make a recharge due.
/// The invoice a payment was made for: its client id is `invoice:{id}` or `invoice:{id}:…`.
fn made_for(client_id: &str) -> Option<u64> {
    client_id.strip_prefix("invoice:")?.split(':').next()?.parse().ok()
}

fn settings_version(all: &[RechargeSettings]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in all {
        (
            s.party.0,
            s.enabled,
            s.method.as_str(),
            s.threshold.0,
            s.updated_at.0,
            s.card.as_ref().map(|c| &c.payment_method),
        )
            .hash(&mut h);
    }
    h.finish()
}

/// The worker thread; dropping it stops it after its current step.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
