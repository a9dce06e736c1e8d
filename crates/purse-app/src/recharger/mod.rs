//! Auto-recharge and card payments: deciding that a customer's recharge is due, starting it
//! once, and carrying it through its method (a card through Stripe, a top-up invoice, or a
//! transfer from the reseller's master wallet); and the customer's own Pay Now.
//!
//! A card recharge is a small state machine kept in the database, so a crash at any step is
//! finished by whichever process claims it next:
//! 1. `pending`: create the PaymentIntent, unconfirmed, with the idempotency key
//!    `purse-recharge-{id}` (Stripe answers a repeat with the same intent; an intent that is
//!    never confirmed never charges), and record its id (`processing`);
//! 2. `processing`: read the intent back; confirm it if it waits for confirmation; when it
//!    succeeded, credit the wallet through the ledger with the client id `recharge:{id}`
//!    (a repeat replays, never posts twice), then record the success (the confirmation
//!    carries the idempotency key `purse-recharge-{id}-confirm`);
//!    when declined, record the failure and count it against auto-recharge.
//!
//! So Stripe never charges twice for one recharge, and a successful charge always ends in
//! exactly one credit.

pub mod stripe;

use std::sync::{Arc, Mutex};

use purse_core::recharge::{self, RechargeMethod, RechargeSettings, SavedCard};
use purse_core::{
    Account, AccountKind, Amount, ClientId, Command, Currency, Item, Money, Outcome, Party, PartyId, PartyKind,
    PaymentMethod, Rejection, Timestamp, TransferKind,
};
use purse_engine::Engine;
use purse_store::{
    AlertStore, NewNotification, NewRecharge, PaymentNotice, PaymentStore, Reader, RechargeReason, RechargeRecord,
    RechargeStatus, RechargeUpdate,
};
use serde_json::json;

pub use crate::cards::{CardDetails, PayError};

use crate::notifier::wall_us;
use crate::{AppError, AppResult};
pub use stripe::{Stripe, StripeError};

const MICROS: i64 = Timestamp::MICROS_PER_S;

/// Where a card recharge may be made to stop, as if the process died there (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Before the PaymentIntent is created.
    BeforeCreate,
    /// Stripe created the intent; its id is not recorded.
    AfterCreate,
    /// Stripe charged the card; the ledger has not credited it.
    AfterConfirm,
    /// The ledger credited it; the success is not recorded (nor answered).
    AfterCredit,
    /// Stripe refunded a card payment; the ledger has not booked it (refunds only).
    AfterRefund,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::BeforeCreate, Fault::AfterCreate, Fault::AfterConfirm, Fault::AfterCredit];

    pub fn parse(text: &str) -> Option<Fault> {
        Some(match text {
            "before_create" => Fault::BeforeCreate,
            "after_create" => Fault::AfterCreate,
            "after_confirm" => Fault::AfterConfirm,
            "after_credit" => Fault::AfterCredit,
            "after_refund" => Fault::AfterRefund,
            _ => return None,
        })
    }
}

/// Settings of payments (`[payments]` in the configuration).
#[derive(Clone, Debug)]
pub struct PaymentConfig {
    /// Stripe's base URL and secret key; card payments are off without them.
    pub stripe: Option<(String, String)>,
    /// Card recharges failing in a row before auto-recharge turns itself off.
    pub failures_max: u32,
    /// How long (wall clock) a process may work on a recharge before another takes it over.
    pub lease_s: i64,
    /// The offset of the days and months the caps count in.
    pub zone: purse_core::time::Zone,
    /// A step at which card recharges stop; `abort` kills the process there.
    pub fault: Option<(Fault, bool)>,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig { stripe: None, failures_max: 3, lease_s: 60, zone: purse_core::time::Zone::utc(), fault: None }
    }
}

pub struct Recharger {
    engine: Arc<Engine>,
    reader: Arc<dyn Reader>,
    alerts: Arc<dyn AlertStore>,
    store: Arc<dyn PaymentStore>,
    stripe: Option<Stripe>,
    config: PaymentConfig,
    /// Operator e-mail for notices about customers without a reseller.
    operator_email: Option<String>,
    fault: Mutex<Option<(Fault, bool)>>,
    /// Cap notices this process knows were told (`party:period`), so a periodic evaluation
    /// of a capped customer does not write to the database each time; the store's job claim
    /// stays the once-only guard across processes. Cleared when it grows past a bound.
    told_capped: Mutex<std::collections::HashSet<String>>,
}

/// Cap notices remembered per process before the memory starts over.
const TOLD_CAPPED_MAX: usize = 100_000;

impl Recharger {
    pub fn new(
        engine: Arc<Engine>,
        reader: Arc<dyn Reader>,
        alerts: Arc<dyn AlertStore>,
        store: Arc<dyn PaymentStore>,
        config: PaymentConfig,
        operator_email: Option<String>,
    ) -> Recharger {
        let stripe = config.stripe.as_ref().map(|(url, key)| Stripe::new(url, key));
        let fault = Mutex::new(config.fault);
        Recharger {
            engine,
            reader,
            alerts,
            store,
            stripe,
            config,
            operator_email,
            fault,
            told_capped: Mutex::default(),
        }
    }

    /// Whether card payments can be made.
    pub fn card_configured(&self) -> bool {
        self.stripe.is_some()
    }

    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.store
    }

    /// Makes card recharges stop at `fault` (tests); `None` lets them run.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fault.map(|f| (f, false));
    }

    fn at_fault(&self, here: Fault) -> AppResult<()> {
        let fault = *self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match fault {
            Some((f, true)) if f == here => {
                crate::log::line(
                    &json!({ "level": "error", "msg": "injected fault: aborting", "fields": { "fault": format!("{here:?}") } }),
                );
                std::process::abort()
            }
            Some((f, false)) if f == here => Err(AppError::Internal(format!("injected fault {here:?}"))),
            _ => Ok(()),
        }
    }

    /// The date and month of `now` in the customer's time zone (its billing settings', else
    /// the server's), which the daily and monthly caps count in.
    pub fn day_month(&self, party: PartyId, now: Timestamp) -> AppResult<(String, String)> {
        let zone = self.store.billing_settings(party)?.map_or_else(|| self.config.zone.clone(), |b| b.time_zone);
        let day = purse_core::time::format_date(zone.day_of(now));
        let month = day[..7].to_owned();
        Ok((day, month))
    }

    fn currency(&self, code: purse_core::CurrencyCode) -> AppResult<Currency> {
        self.reader
            .currencies()?
            .into_iter()
            .find(|c| c.code == code)
            .ok_or_else(|| AppError::Internal(format!("no currency {code}")))
    }

    /// Starts the customer's automatic recharge if one is due at `available`; the store
    /// refuses it while another is in flight or the caps are used up.
    pub fn evaluate(
        &self,
        party: &Party,
        wallet: &Account,
        available: i128,
        settings: Option<&RechargeSettings>,
        now: Timestamp,
    ) -> AppResult<Option<RechargeRecord>> {
        let Some(s) = settings.filter(|s| s.enabled) else { return Ok(None) };
        let PartyKind::Customer { reseller, currency, .. } = party.kind else { return Ok(None) };
        if wallet.status == purse_core::AccountStatus::Closed
            || (s.method == RechargeMethod::Card && self.stripe.is_none())
        {
            return Ok(None);
        }
        let (day, month) = self.day_month(party.id, now)?;
        let used = self.store.recharges_used(party.id, &day, &month)?;
        let Some(amount) = recharge::recharge_due(s, available, used) else {
            if let Some(cap) = recharge::cap_reached(s, available, used) {
                self.tell_capped(
                    party,
                    s,
                    cap,
                    available,
                    if cap == recharge::Cap::Daily { &day } else { &month },
                    now,
                )?;
            }
            return Ok(None);
        };
        let c = self.currency(currency)?;
        let notice = (s.method == RechargeMethod::Invoice).then(|| {
            let text = format!(
                "Hello,\n\nTop-up invoice {{invoice}} for {} {} has been issued to {}, because the available balance ({} {}) fell below \
                 the recharge threshold of {} {}.\nPay it by cheque or telegraphic transfer, quoting the invoice number; the balance is \
                 credited when the payment is recorded.\n\n-- Purse",
                c.format(amount),
                c.code,
                party.name,
                c.format(clamp(available)),
                c.code,
                c.format(s.threshold),
                c.code
            );
            self.notice(party, s, PaymentNotice::TopUpInvoice, amount, available, &c, format!("Top-up invoice {{invoice}}: {} {} for {}", c.format(amount), c.code, party.name), text, now)
        });
        let new = NewRecharge {
            party: party.id,
            method: s.method,
            reason: RechargeReason::Auto,
            amount: amount.0,
            currency,
            at: now,
            day,
            month,
            per_day_max: s.per_day_max,
            month_cap: s.month_cap.map(|c| c.0),
            issuer: reseller,
            notice: notice.transpose()?,
            lease_until: 0,
            request_key: None,
        };
        let started = self.store.start_recharge(&new)?;
        if let Some(r) = &started {
            crate::log::info(
                "recharge started",
                json!({ "recharge": r.id, "customer": party.id.0, "method": s.method.as_str(), "amount": c.format(amount) }),
            );
        }
        Ok(started)
    }

    /// Tells the customer (and its alert e-mails) once per day or month, across processes,
    /// that a cap held back a recharge that was due: nobody is left wondering why the balance
    /// was not topped up. Not while a recharge is still in flight (it may yet succeed).
    fn tell_capped(
        &self,
        party: &Party,
        s: &RechargeSettings,
        cap: recharge::Cap,
        available: i128,
        period: &str,
        now: Timestamp,
    ) -> AppResult<()> {
        let key = format!("{}:{period}", party.id.0);
        let told = |key: &str| {
            let mut told = self.told_capped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if told.len() >= TOLD_CAPPED_MAX {
                told.clear();
            }
            told.insert(key.to_owned())
        };
        if self.told_capped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&key)
            || self.store.recharges(Some(party.id), 3)?.iter().any(|r| r.status.in_flight())
        {
            return Ok(());
        }
        let wall = wall_us();
        if !self.alerts.claim_job("recharge_capped", &key, "recharger", now, wall, wall + 300 * MICROS)? {
            // Another process told it, or is telling it now.
            told(&key);
            return Ok(());
        }
        let PartyKind::Customer { currency, .. } = party.kind else { return Ok(()) };
        let c = self.currency(currency)?;
        let (which, until) = match cap {
            recharge::Cap::Daily => (format!("its limit of {} recharges a day", s.per_day_max), "tomorrow"),
            recharge::Cap::Monthly => (
                format!("its monthly cap of {} {}", s.month_cap.map(|m| c.format(m)).unwrap_or_default(), c.code),
                "next month",
            ),
        };
        let subject = format!("Automatic recharge held back for {}: {which} is reached", party.name);
        let body = format!(
            "Hello,\n\nThe available balance of {} is {} {}, below the recharge threshold of {} {}, but no automatic \
             recharge was made: {which} is reached. Recharges start again {until}, or pay now in the portal (Balance \
             Details → Pay Now), or raise the limit in the automatic recharge settings.\n\n-- Purse",
            party.name,
            c.format(clamp(available)),
            c.code,
            c.format(s.threshold),
            c.code,
        );
        let notification =
            self.notice(party, s, PaymentNotice::RechargeCapped, s.threshold, available, &c, subject, body, now)?;
        let batch = purse_store::AlertBatch {
            fires: vec![purse_store::Fire { counter: None, notification }],
            ..purse_store::AlertBatch::default()
        };
        self.alerts.record_alerts(&batch, now)?;
        self.alerts.finish_job("recharge_capped", &key, now, "told")?;
        told(&key);
        crate::log::info("recharge held back by a cap", json!({ "customer": party.id.0, "cap": format!("{cap:?}") }));
        Ok(())
    }

    /// Runs every recharge that is waiting and that no live lease holds, as of wall time `wall`.
    pub fn work(&self, wall: i64) -> AppResult<usize> {
        let mut done = 0;
        loop {
            let claimed = self.store.claim_recharges(wall, wall + self.config.lease_s * MICROS, 20)?;
            if claimed.is_empty() {
                return Ok(done);
            }
            for r in claimed {
                match self.run(&r) {
                    Ok(_) => done += 1,
                    Err(e) => {
                        crate::log::info("recharge step failed", json!({ "recharge": r.id, "error": e.detail() }))
                    }
                }
            }
        }
    }

    /// Waiting recharges and refunds, now.
    pub fn step(&self) -> AppResult<usize> {
        let wall = wall_us();
        Ok(self.work(wall)? + self.finish_refunds(wall)?)
    }

    /// Carries a recharge as far as it can go now.
    pub fn run(&self, r: &RechargeRecord) -> AppResult<RechargeRecord> {
        match r.method {
            RechargeMethod::Card => self.run_card(r)?,
            RechargeMethod::MasterAccount => self.run_master(r)?,
            RechargeMethod::Invoice => {}
        }
        self.store.recharge(r.id)?.ok_or_else(|| AppError::Internal(format!("recharge {} is gone", r.id)))
    }

    fn customer(&self, id: PartyId) -> AppResult<(Party, Account)> {
        let party = self.reader.party(id)?.ok_or_else(|| AppError::Internal(format!("no customer {id}")))?;
        let PartyKind::Customer { wallet, .. } = party.kind else {
            return Err(AppError::NotFound("customer"));
        };
        let wallet =
            self.reader.account(wallet)?.ok_or_else(|| AppError::Internal(format!("no wallet of customer {id}")))?;
        Ok((party, wallet))
    }

    fn credit(&self, r: &RechargeRecord, command: Command) -> AppResult<Result<u64, Rejection>> {
        let results = self.engine.submit(vec![Item::single(command)])?;
        Ok(match results.into_iter().next() {
            Some(Ok(Outcome::Posted { transfer, .. })) => Ok(transfer.0),
            Some(Ok(other)) => {
                return Err(AppError::Internal(format!("recharge {}: unexpected outcome {other:?}", r.id)))
            }
            Some(Err(rejection)) => Err(rejection),
            None => return Err(AppError::Internal("the engine answered nothing".into())),
        })
    }

    fn client_id(r: &RechargeRecord) -> ClientId {
        ClientId::new(&format!("recharge:{}", r.id)).unwrap_or_else(|| unreachable!("a short printable id"))
    }

    fn run_master(&self, r: &RechargeRecord) -> AppResult<()> {
        let (party, wallet) = self.customer(r.party)?;
        let PartyKind::Customer { reseller: Some(reseller), .. } = party.kind else {
            return self.finish(r, RechargeUpdate::Failed { error: "the customer has no reseller".into() }, None);
        };
        let master = self
            .reader
            .accounts_of(reseller)?
            .into_iter()
            .find(|a| a.kind == AccountKind::MasterWallet && a.currency == r.currency);
        let c = self.currency(r.currency)?;
        let settings =
            self.store.recharge_settings(r.party)?.unwrap_or_else(|| RechargeSettings::off(r.party, r.created_at));
        // The reseller is told what its wallet holds; the customer's record says only that it was short.
        let short = |why: String| -> AppResult<()> {
            let now = self.engine.clock().now();
            let subject = format!("Recharge refused: master wallet short for {}", party.name);
            let body = format!(
                "Hello,\n\nThe automatic recharge of {} {} for {} could not be issued from your master account: {why}.\nTop up the \
                 master wallet, or issue credit to the customer by hand.\n\n-- Purse",
                c.format(Amount(r.amount)),
                c.code,
                party.name
            );
            let n = self.notice(
                &party,
                &settings,
                PaymentNotice::MasterFundsShort,
                Amount(r.amount),
                0,
                &c,
                subject,
                body,
                now,
            )?;
            let error = "the reseller's master wallet could not fund the recharge".to_owned();
            self.finish(r, RechargeUpdate::Failed { error }, Some(&n))
        };
        let Some(master) = master else { return short(format!("the reseller has no master wallet in {}", r.currency)) };
        let metadata = json!({ "recharge": r.id }).to_string();
        let command = Command::Transfer {
            client_id: Self::client_id(r),
            source: master.id,
            target: wallet.id,
            money: Money { amount: Amount(r.amount), currency: r.currency },
            kind: TransferKind::Recharge,
            metadata: Some(metadata),
            note: None,
        };
        match self.credit(r, command)? {
            Ok(transfer) => self.succeeded(r, &party, &wallet, &settings, transfer, &c),
            Err(Rejection::InsufficientFunds { available, .. }) => {
                short(format!("the master wallet has {} {} available", c.format(available), c.code))
            }
            Err(other) => self.finish(r, RechargeUpdate::Failed { error: other.to_string() }, None),
        }
    }

    fn succeeded(
        &self,
        r: &RechargeRecord,
        party: &Party,
        wallet: &Account,
        s: &RechargeSettings,
        transfer: u64,
        c: &Currency,
    ) -> AppResult<()> {
        let now = self.engine.clock().now();
        let after = self.reader.account(wallet.id)?.map_or(0, |w| w.own_available(now));
        let what = if r.reason == RechargeReason::Auto { "Automatic recharge" } else { "Payment" };
        let subject = format!("{what} of {} {} for {}", c.format(Amount(r.amount)), c.code, party.name);
        let body = format!(
            "Hello,\n\n{what} of {} {} ({}) was credited to {}.\nThe available balance is now {} {}.\n\n-- Purse",
            c.format(Amount(r.amount)),
            c.code,
            r.method.title(),
            party.name,
            c.format(clamp(after)),
            c.code
        );
        let n =
            self.notice(party, s, PaymentNotice::RechargeSucceeded, Amount(r.amount), after, c, subject, body, now)?;
        self.finish(r, RechargeUpdate::Succeeded { transfer }, Some(&n))
    }

    fn finish(&self, r: &RechargeRecord, update: RechargeUpdate, n: Option<&NewNotification>) -> AppResult<()> {
        let now = self.engine.clock().now();
        self.store.update_recharge(r.id, &update, now, n)?;
        crate::log::info("recharge finished", json!({ "recharge": r.id, "update": format!("{update:?}") }));
        Ok(())
    }

    fn run_card(&self, r: &RechargeRecord) -> AppResult<()> {
        let Some(stripe) = &self.stripe else { return Err(AppError::CardsNotConfigured) };
        let (party, wallet) = self.customer(r.party)?;
        let settings =
            self.store.recharge_settings(r.party)?.unwrap_or_else(|| RechargeSettings::off(r.party, r.created_at));
        let c = self.currency(r.currency)?;
        let mut intent_id = r.intent.clone();
        if intent_id.is_none() {
            let Some(card) = &settings.card else {
                return self.card_failed(r, &party, &settings, &c, "no card is saved".into());
            };
            let amount = match stripe::stripe_amount(r.amount, c.scale, r.currency.as_str()) {
                Ok(a) => a,
                Err(e) => return self.card_failed(r, &party, &settings, &c, e.to_string()),
            };
            self.at_fault(Fault::BeforeCreate)?;
            let key = format!("purse-recharge-{}", r.id);
            let intent = match stripe.create_intent(
                amount,
                r.currency.as_str(),
                &card.customer,
                &card.payment_method,
                r.id,
                &key,
            ) {
                Ok(i) => i,
                Err(StripeError::Unknown(e)) => return Err(AppError::Upstream(e)),
                Err(e) => return self.card_failed(r, &party, &settings, &c, e.message().to_owned()),
            };
            self.at_fault(Fault::AfterCreate)?;
            self.store.update_recharge(
                r.id,
                &RechargeUpdate::Intent(intent.id.clone()),
                self.engine.clock().now(),
                None,
            )?;
            intent_id = Some(intent.id);
        }
        let id = intent_id.unwrap_or_default();
        let mut intent = stripe.intent(&id)?;
        if intent.status == "requires_confirmation" {
            intent = match stripe.confirm(&id, &format!("purse-recharge-{}-confirm", r.id)) {
                Ok(i) => i,
                Err(StripeError::Declined(m)) => return self.card_failed(r, &party, &settings, &c, m),
                Err(e) => {
                    // The answer is unknown or refused: what Stripe holds decides.
                    let read = stripe.intent(&id).map_err(|_| AppError::from(e.clone()))?;
                    if read.status == "requires_confirmation" {
                        return Err(e.into());
                    }
                    read
                }
            };
        }
        match intent.status.as_str() {
            "succeeded" => {
                self.at_fault(Fault::AfterConfirm)?;
                let metadata = json!({ "recharge": r.id, "payment_intent": id }).to_string();
                let command = Command::Payment {
                    client_id: Self::client_id(r),
                    account: wallet.id,
                    money: Money { amount: Amount(r.amount), currency: r.currency },
                    method: PaymentMethod::Card,
                    metadata: Some(metadata),
                };
                let transfer = self.credit(r, command)?.map_err(AppError::Rejected)?;
                self.at_fault(Fault::AfterCredit)?;
                if r.reason == RechargeReason::Auto {
                    self.store.card_result(
                        r.party,
                        true,
                        self.config.failures_max,
                        "",
                        self.engine.clock().now(),
                        None,
                    )?;
                }
                self.succeeded(r, &party, &wallet, &settings, transfer, &c)
            }
            "processing" => Ok(()), // read again at the next claim
            "requires_action" => self.card_failed(
                r,
                &party,
                &settings,
                &c,
                "the card asks for authentication, which an off-session charge cannot give".into(),
            ),
            "canceled" => self.card_failed(r, &party, &settings, &c, "the payment was canceled at Stripe".into()),
            _ => self.card_failed(
                r,
                &party,
                &settings,
                &c,
                intent.error.unwrap_or_else(|| "the card was declined".into()),
            ),
        }
    }

    fn card_failed(
        &self,
        r: &RechargeRecord,
        party: &Party,
        s: &RechargeSettings,
        c: &Currency,
        error: String,
    ) -> AppResult<()> {
        let now = self.engine.clock().now();
        let available = self
            .reader
            .account(match party.kind {
                PartyKind::Customer { wallet, .. } => wallet,
                PartyKind::Reseller => return Err(AppError::NotFound("customer")),
            })?
            .map_or(0, |w| w.own_available(now));
        if r.reason != RechargeReason::Auto {
            return self.finish(r, RechargeUpdate::Failed { error }, None);
        }
        let subject = format!("Automatic recharge declined for {}", party.name);
        let body = format!(
            "Hello,\n\nThe automatic recharge of {} {} for {} by card ending {} failed: {error}.\nThe available balance is {} {}. \
             Update the card or pay now from Balance Details.\n\n-- Purse",
            c.format(Amount(r.amount)),
            c.code,
            party.name,
            s.card.as_ref().map_or("-", |k| k.last4.as_str()),
            c.format(clamp(available)),
            c.code
        );
        let n =
            self.notice(party, s, PaymentNotice::RechargeFailed, Amount(r.amount), available, c, subject, body, now)?;
        self.finish(r, RechargeUpdate::Failed { error: error.clone() }, Some(&n))?;
        let reason =
            format!("turned off after {} failed card recharges in a row (last: {error})", self.config.failures_max);
        let subject = format!("Auto-recharge turned off for {}", party.name);
        let body = format!(
            "Hello,\n\nAuto-recharge of {} has been turned off: {reason}.\nSave a working card and turn it on again in Balance \
             Details.\n\n-- Purse",
            party.name
        );
        let off =
            self.notice(party, s, PaymentNotice::RechargeDisabled, Amount(r.amount), available, c, subject, body, now)?;
        if self.store.card_result(r.party, false, self.config.failures_max, &reason, now, Some(&off))? {
            crate::log::info("auto-recharge disabled", json!({ "customer": party.id.0, "reason": reason }));
        }
        Ok(())
    }

    /// A notice about a customer's payments: to its billing e-mail and the recharge e-mails
    /// (for a master wallet short of funds: the reseller's e-mail, or the operator's when it has
    /// none or there is no reseller), and
    /// to the webhook endpoints that see the customer.
    #[allow(clippy::too_many_arguments)]
    fn notice(
        &self,
        party: &Party,
        s: &RechargeSettings,
        kind: PaymentNotice,
        amount: Amount,
        available: i128,
        c: &Currency,
        subject: String,
        body: String,
        at: Timestamp,
    ) -> AppResult<NewNotification> {
        let reseller = match party.kind {
            PartyKind::Customer { reseller, .. } => reseller,
            PartyKind::Reseller => None,
        };
        let staff = kind == PaymentNotice::MasterFundsShort;
        let mut emails: Vec<String> = Vec::new();
        if staff {
            if let Some(r) = reseller {
                emails.extend(self.alerts.alert_settings(r)?.and_then(|a| a.email));
            }
            // A reseller without an e-mail (or no reseller): the operator is told instead of nobody.
            if emails.is_empty() {
                emails.extend(self.operator_email.clone());
            }
        } else {
            emails.extend(self.alerts.alert_settings(party.id)?.and_then(|a| a.email));
            emails.extend(s.emails.iter().cloned());
        }
        let mut seen = std::collections::HashSet::new();
        emails.retain(|e| seen.insert(e.to_ascii_lowercase()));
        let endpoints = self
            .alerts
            .endpoints()?
            .into_iter()
            .filter(|e| {
                e.enabled && (e.owner.is_none() || e.owner == reseller || (e.owner == Some(party.id) && !staff))
            })
            .map(|e| (e.id, e.url))
            .collect();
        let payload = json!({
            "type": kind.event_type(),
            "timestamp": purse_core::time::format(at),
            "data": {
                "customer": party.id.0,
                "client_id": party.client_id.as_str(),
                "name": party.name,
                "amount": c.format(amount),
                "available": c.format(clamp(available)),
                "currency": c.code.to_string(),
                "message": subject,
            }
        })
        .to_string();
        Ok(NewNotification {
            party: party.id,
            kind: purse_store::AlertKind::Payment(kind),
            threshold: amount.0,
            available: clamp(available).0,
            currency: c.code,
            at,
            subject,
            body,
            payload,
            emails,
            endpoints,
        })
    }

    /// Saves a card for the customer at Stripe (creating its Stripe customer the first
    /// time) and in its recharge settings. A declined card changes nothing.
    pub fn save_card(&self, party: &Party, email: Option<&str>, details: &CardDetails) -> Result<SavedCard, PayError> {
        let Some(stripe) = &self.stripe else { return Err(PayError::NotConfigured) };
        let now = self.engine.clock().now();
        let current = self.store.recharge_settings(party.id).map_err(|e| PayError::Internal(e.to_string()))?;
        let customer = match current.as_ref().and_then(|s| s.card.as_ref()) {
            Some(card) => card.customer.clone(),
            None => stripe
                .create_customer(&party.name, email, party.id.0, &format!("purse-customer-{}", party.id))
                .map_err(pay_error)?,
        };
        let card = stripe.save_card(&customer, details).map_err(pay_error)?;
        let saved = SavedCard { customer, payment_method: card.id, brand: card.brand, last4: card.last4 };
        let mut settings = current.unwrap_or_else(|| RechargeSettings::off(party.id, now));
        settings.card = Some(saved.clone());
        settings.updated_at = now;
        self.store.put_recharge_settings(&settings).map_err(|e| PayError::Internal(e.to_string()))?;
        Ok(saved)
    }

    /// Charges the saved card `amount` at once and credits the balance on success.
    pub fn pay_now(
        &self,
        party: &Party,
        amount: Amount,
        request_key: Option<String>,
    ) -> Result<RechargeRecord, PayError> {
        if self.stripe.is_none() {
            return Err(PayError::NotConfigured);
        }
        let PartyKind::Customer { currency, .. } = party.kind else {
            return Err(PayError::Internal("not a customer".into()));
        };
        let settings = self.store.recharge_settings(party.id).map_err(|e| PayError::Internal(e.to_string()))?;
        if settings.as_ref().and_then(|s| s.card.as_ref()).is_none() {
            return Err(PayError::Invalid {
                field: "card",
                message: "no card is saved: give the card's details".into(),
            });
        }
        let c = self.currency(currency).map_err(|e| PayError::Internal(e.detail()))?;
        stripe::stripe_amount(amount.0, c.scale, currency.as_str())
            .map_err(|e| PayError::Invalid { field: "amount", message: e.to_string() })?;
        let now = self.engine.clock().now();
        let (day, month) = self.day_month(party.id, now).map_err(|e| PayError::Internal(e.detail()))?;
        let new = NewRecharge {
            party: party.id,
            method: RechargeMethod::Card,
            reason: RechargeReason::PayNow,
            amount: amount.0,
            currency,
            at: now,
            day,
            month,
            per_day_max: u32::MAX,
            month_cap: None,
            issuer: None,
            notice: None,
            lease_until: wall_us() + self.config.lease_s * MICROS,
            request_key,
        };
        let r = self
            .store
            .start_recharge(&new)
            .map_err(|e| PayError::Internal(e.to_string()))?
            .ok_or_else(|| PayError::Internal("the payment was not recorded".into()))?;
        let done = self.run(&r).map_err(|e| PayError::Pending(e.to_string()))?;
        match done.status {
            RechargeStatus::Succeeded => Ok(done),
            RechargeStatus::Failed => {
                Err(PayError::Declined(done.error.unwrap_or_else(|| "the card was declined".into())))
            }
            _ => Err(PayError::Pending(format!("payment {} is still being processed", done.id))),
        }
    }
}

fn pay_error(e: StripeError) -> PayError {
    match e {
        StripeError::Declined(m) => PayError::Declined(m),
        StripeError::Refused(m) => {
            PayError::Invalid { field: "card", message: format!("Stripe refused the card: {m}") }
        }
        StripeError::Unknown(m) => PayError::Pending(m),
    }
}

fn clamp(v: i128) -> Amount {
    Amount(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

impl crate::cards::Cards for Recharger {
    fn configured(&self) -> bool {
        self.card_configured()
    }

    fn save_card(&self, party: &Party, email: Option<&str>, card: &CardDetails) -> Result<SavedCard, PayError> {
        Recharger::save_card(self, party, email, card)
    }

    fn pay_now(&self, party: &Party, amount: Amount, request_key: Option<String>) -> Result<RechargeRecord, PayError> {
        Recharger::pay_now(self, party, amount, request_key)
    }

    fn refund_claimed(&self, refund: &purse_store::RefundRecord) -> Result<purse_store::RefundRecord, PayError> {
        self.run_refund(refund)
    }
}

fn internal(e: impl std::fmt::Display) -> PayError {
    PayError::Internal(e.to_string())
}

impl Recharger {
    /// Carries a claimed refund through: by hand, booked at once; by card, Stripe's refund
    /// (found again by its metadata if a crash came after it, else made), then booked.
    fn run_refund(&self, r: &purse_store::RefundRecord) -> Result<purse_store::RefundRecord, PayError> {
        let now = self.engine.clock().now();
        if r.method != "card" {
            return crate::refunds::settle(
                &self.engine,
                self.reader.as_ref(),
                self.alerts.as_ref(),
                &self.store,
                r,
                None,
                now,
            )
            .map_err(|e| PayError::Internal(e.detail()));
        }
        let stripe = self.stripe.as_ref().ok_or(PayError::NotConfigured)?;
        let receipt =
            self.store.receipt(r.receipt).map_err(internal)?.ok_or_else(|| internal("the receipt is gone"))?;
        let intent = self
            .store
            .recharges(Some(r.party), 1000)
            .map_err(internal)?
            .into_iter()
            .find(|x| x.transfer == Some(receipt.transfer))
            .and_then(|x| x.intent);
        let Some(intent) = intent else {
            let why = "no card payment at Stripe was found for this receipt";
            self.store.fail_refund(r.id, why, now).map_err(internal)?;
            return Err(PayError::Invalid { field: "receipt", message: why.into() });
        };
        let currency = self.currency(r.currency).map_err(|e| PayError::Internal(e.detail()))?;
        let units = stripe::stripe_amount(r.amount, currency.scale, r.currency.as_str())
            .map_err(|e| PayError::Internal(e.detail()))?;
        let made = match stripe.refund_made(&intent, r.id).map_err(pay_error)? {
            Some(made) => made,
            None => match stripe.refund(&intent, units, r.id, &format!("purse-refund-{}", r.id)) {
                Ok(made) => made,
                Err(StripeError::Declined(m) | StripeError::Refused(m)) => {
                    self.store.fail_refund(r.id, &m, now).map_err(internal)?;
                    crate::log::info("card refund refused", json!({ "refund": r.id, "error": m }));
                    return Err(PayError::Declined(m));
                }
                Err(e) => return Err(pay_error(e)),
            },
        };
        if made.status != "succeeded" && made.status != "pending" {
            self.store.fail_refund(r.id, &format!("Stripe's refund is {}", made.status), now).map_err(internal)?;
            return Err(PayError::Declined(format!("Stripe's refund is {}", made.status)));
        }
        self.store.set_stripe_refund(r.id, &made.id).map_err(internal)?;
        self.at_fault(Fault::AfterRefund).map_err(|e| PayError::Internal(e.detail()))?;
        crate::refunds::settle(
            &self.engine,
            self.reader.as_ref(),
            self.alerts.as_ref(),
            &self.store,
            r,
            Some(&made.id),
            now,
        )
        .map_err(|e| PayError::Internal(e.detail()))
    }

    /// Refunds a process left pending (it died, or Stripe did not answer): each claimed and
    /// carried through again. Returns how many were finished.
    pub fn finish_refunds(&self, wall: i64) -> AppResult<usize> {
        let mut done = 0;
        for r in self.store.stale_refunds(wall, 20)? {
            if !self.store.claim_refund(r.id, wall, wall + self.config.lease_s * MICROS)? {
                continue;
            }
            match self.run_refund(&r) {
                Ok(_) => done += 1,
                Err(e) => crate::log::info("refund step failed", json!({ "refund": r.id, "error": format!("{e:?}") })),
            }
        }
        Ok(done)
    }
}
