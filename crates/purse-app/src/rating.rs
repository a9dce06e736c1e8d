//! Rating: rate plans and their decks (CSV in and out), which plan a party is given, and
//! usage turned into rated charges. Lookups are in memory: each plan's deck is loaded once
//! and kept until the plan's version changes (this process's imports forget it at once;
//! another process's are seen within [`REFRESH`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purse_core::rating::{self, Deck, Increments, Prefix, Price, Rate};
use purse_core::{AccountId, Command, Currency, Money, NewCharge, PartyId, PartyKind, Role, Timestamp};
use purse_store::{PlanRole, RatePlan};

use crate::{App, AppError, AppResult, Code, Principal};

/// How long another process's change of plans or assignments may go unseen.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Most lines of one deck.
pub const DECK_LINES_MAX: usize = 1_000_000;
/// Longest description of a rate, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 200;

/// What this process knows of plans: every plan, who is given which, and the decks loaded.
#[derive(Default)]
pub struct RatingCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    loaded: Option<Instant>,
    plans: HashMap<u64, RatePlan>,
    assigned: HashMap<(PartyId, PlanRole), u64>,
    decks: HashMap<u64, (i64, Arc<Deck>)>,
}

impl App {
    fn rating_snapshot<T>(&self, force: bool, f: impl FnOnce(&Cached) -> T) -> AppResult<T> {
        let mut c = self.rating_cache.inner.lock().map_err(|_| AppError::Internal("rating cache poisoned".into()))?;
        if force || c.loaded.is_none_or(|t| t.elapsed() >= REFRESH) {
            let plans = self.rating.plans()?;
            let assigned = self.rating.all_assignments()?;
            c.plans = plans.into_iter().map(|p| (p.id, p)).collect();
            c.assigned = assigned.into_iter().map(|(party, role, plan)| ((party, role), plan)).collect();
            let mut decks = std::mem::take(&mut c.decks);
            decks.retain(|id, (version, _)| c.plans.get(id).is_some_and(|p| p.version == *version));
            c.decks = decks;
            c.loaded = Some(Instant::now());
        }
        Ok(f(&c))
    }

    /// The deck of `plan`, loading it if this process has not (or has an older version).
    pub fn deck(&self, plan: &RatePlan) -> AppResult<Arc<Deck>> {
        if let Some(d) = self.rating_snapshot(false, |c| {
            c.decks.get(&plan.id).filter(|(v, _)| *v >= plan.version).map(|(_, d)| d.clone())
        })? {
            return Ok(d);
        }
        let deck = Arc::new(Deck::new(self.rating.rates(plan.id, None, None)?));
        if let Ok(mut c) = self.rating_cache.inner.lock() {
            c.decks.insert(plan.id, (plan.version, deck.clone()));
        }
        Ok(deck)
    }

    /// The plan a customer pays by: its own, else its reseller's default for customers.
    pub fn customer_plan(&self, customer: PartyId) -> AppResult<Option<RatePlan>> {
        let reseller = self.reseller_of(customer)?;
        self.rating_snapshot(false, |c| {
            let own = c.assigned.get(&(customer, PlanRole::Pays));
            let default = reseller.and_then(|r| c.assigned.get(&(r, PlanRole::CustomersDefault)));
            own.or(default).and_then(|id| c.plans.get(id)).cloned()
        })
    }

    /// The plan a reseller pays the operator by, if it has one.
    pub fn reseller_plan(&self, reseller: PartyId) -> AppResult<Option<RatePlan>> {
        self.rating_snapshot(false, |c| {
            c.assigned.get(&(reseller, PlanRole::Pays)).and_then(|id| c.plans.get(id)).cloned()
        })
    }

    /// A reseller's plan for its customers that have none of their own.
    pub fn reseller_default_plan(&self, reseller: PartyId) -> AppResult<Option<RatePlan>> {
        self.rating_snapshot(false, |c| {
            c.assigned.get(&(reseller, PlanRole::CustomersDefault)).and_then(|id| c.plans.get(id)).cloned()
        })
    }

    /// Whether the caller sees the plan: staff their own plans (the operator every plan), a
    /// reseller also the one it pays by, a customer the one it pays by.
    fn sees_plan(&self, who: &Principal, plan: &RatePlan) -> AppResult<bool> {
        Ok(match who.role {
            Role::Operator => true,
            Role::Reseller(r) => plan.owner == Some(r) || self.reseller_plan(r)?.is_some_and(|p| p.id == plan.id),
            Role::Customer(c) => self.customer_plan(c)?.is_some_and(|p| p.id == plan.id),
        })
    }

    /// The plan `id`, if the caller sees it.
    pub fn plan_for(&self, who: &Principal, id: u64) -> AppResult<RatePlan> {
        let plan = self.rating_snapshot(false, |c| c.plans.get(&id).cloned())?;
        let plan = match plan {
            Some(p) => p,
            None => self.rating.plan(id)?.ok_or(AppError::NotFound("rate plan"))?,
        };
        if self.sees_plan(who, &plan)? {
            Ok(plan)
        } else {
            Err(AppError::NotFound("rate plan"))
        }
    }

    /// The plan `id` if the caller may change it: the operator any, a reseller its own.
    fn own_plan(&self, who: &Principal, id: u64) -> AppResult<RatePlan> {
        let plan = self.plan_for(who, id)?;
        match who.role {
            Role::Operator => Ok(plan),
            Role::Reseller(r) if plan.owner == Some(r) => Ok(plan),
            _ => Err(AppError::Forbidden("only the plan's owner may change its rates".into())),
        }
    }

    /// The plans the caller sees.
    pub fn list_plans(&self, who: &Principal) -> AppResult<Vec<RatePlan>> {
        let all = self.rating_snapshot(true, |c| {
            let mut v: Vec<RatePlan> = c.plans.values().cloned().collect();
            v.sort_by_key(|p| p.id);
            v
        })?;
        let mut out = Vec::new();
        for p in all {
            if self.sees_plan(who, &p)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Creates a plan: the operator's or a reseller's (a reseller's own only).
    pub fn create_plan(&self, who: &Principal, name: &str, currency: &str, owner: Option<u64>) -> AppResult<RatePlan> {
        let name = crate::parse::name("name", name)?;
        let code = crate::parse::currency_code("currency", currency)?;
        self.currency("currency", code)?;
        let owner = match (who.role, owner) {
            (Role::Reseller(r), None) => Some(r),
            (Role::Reseller(r), Some(o)) if o != r.0 => {
                return Err(AppError::invalid(
                    "owner",
                    Code::ResellerNotFound,
                    format!("owner: reseller {o} does not exist"),
                ))
            }
            (_, Some(o)) => {
                let party = self.party_for(who, o).map_err(|_| {
                    AppError::invalid("owner", Code::ResellerNotFound, format!("owner: reseller {o} does not exist"))
                })?;
                if !matches!(party.kind, PartyKind::Reseller) {
                    return Err(AppError::invalid(
                        "owner",
                        Code::ResellerNotFound,
                        format!("owner: {o} is not a reseller"),
                    ));
                }
                Some(party.id)
            }
            (_, None) => None,
        };
        let plan = self.rating.create_plan(&name, code, owner, self.now())?;
        self.rating_snapshot(true, |_| ())?;
        Ok(plan)
    }

    /// Imports a deck into a plan, all or nothing: every bad line is named.
    pub fn import_deck(
        &self,
        who: &Principal,
        plan: u64,
        csv: &str,
        service: Option<&str>,
    ) -> AppResult<(RatePlan, usize)> {
        let plan = self.own_plan(who, plan)?;
        let rates = parse_deck(csv, service, self.now())?;
        let plan = self.rating.import_rates(plan.id, &rates, self.now())?;
        self.rating_snapshot(true, |_| ())?;
        Ok((plan, rates.len()))
    }

    /// The plan's rates, every version, as a deck in the format [`App::import_deck`] reads.
    pub fn export_deck(&self, who: &Principal, plan: u64) -> AppResult<String> {
        let plan = self.plan_for(who, plan)?;
        let currency = self.currency("currency", plan.currency)?;
        let rates = self.rating.rates(plan.id, None, None)?;
        Ok(write_deck(&rates, currency))
    }

    /// The plan's rates whose prefix starts with `prefix`.
    pub fn plan_rates(
        &self,
        who: &Principal,
        plan: u64,
        prefix: Option<&str>,
        limit: u32,
    ) -> AppResult<(RatePlan, Vec<Rate>)> {
        let plan = self.plan_for(who, plan)?;
        if let Some(p) = prefix.filter(|p| *p != "*") {
            if !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > rating::DESTINATION_DIGITS_MAX {
                return Err(AppError::invalid("prefix", Code::InvalidQuery, "prefix must be digits"));
            }
        }
        let rates = self.rating.rates(plan.id, prefix, Some(limit))?;
        Ok((plan, rates))
    }

    /// Gives a customer a plan (staff: the operator's plans or, for a reseller, its own).
    pub fn assign_customer_plan(&self, who: &Principal, customer: u64, plan: Option<u64>) -> AppResult<()> {
        let party = self.party_of_kind(who, customer, false)?;
        if let Some(plan) = plan {
            let p = self.assignable(who, plan)?;
            if let PartyKind::Customer { currency, .. } = party.kind {
                if currency != p.currency {
                    return Err(AppError::invalid(
                        "plan",
                        Code::CurrencyMismatch,
                        format!("plan: the plan is in {}, the customer's wallet in {currency}", p.currency),
                    ));
                }
            }
        }
        self.assign(who, party.id, PlanRole::Pays, plan)
    }

    /// Sets a reseller's plans: what it pays (operators only) and its customers' default.
    pub fn assign_reseller_plans(
        &self,
        who: &Principal,
        reseller: u64,
        pays: Option<Option<u64>>,
        customers_default: Option<Option<u64>>,
    ) -> AppResult<()> {
        let party = self.party_of_kind(who, reseller, true)?;
        if pays.is_some() && !who.is_operator() {
            return Err(AppError::ForbiddenField {
                field: "pays",
                message: "only the operator sets the plan a reseller pays by".into(),
            });
        }
        if let Some(plan) = pays {
            if let Some(p) = plan {
                self.assignable(who, p)?;
            }
            self.assign(who, party.id, PlanRole::Pays, plan)?;
        }
        if let Some(plan) = customers_default {
            if let Some(p) = plan {
                self.assignable(who, p)?;
            }
            self.assign(who, party.id, PlanRole::CustomersDefault, plan)?;
        }
        Ok(())
    }

    fn assignable(&self, who: &Principal, plan: u64) -> AppResult<RatePlan> {
        let not_found = || AppError::invalid("plan", Code::NotFound, format!("plan: rate plan {plan} does not exist"));
        let p = self.plan_for(who, plan).map_err(|_| not_found())?;
        match who.role {
            Role::Operator => Ok(p),
            Role::Reseller(r) if p.owner == Some(r) => Ok(p),
            _ => Err(not_found()),
        }
    }

    fn assign(&self, who: &Principal, party: PartyId, role: PlanRole, plan: Option<u64>) -> AppResult<()> {
        let before = self.rating_snapshot(true, |c| c.assigned.get(&(party, role)).copied())?;
        self.rating.assign_plan(party, role, plan, self.now())?;
        let view = |p: Option<u64>| serde_json::json!({ "role": role.as_str(), "plan": p });
        self.audit(who, Some(party), "rate_plan", party.0, "assign", Some(&view(before)), Some(&view(plan)))?;
        self.rating_snapshot(true, |_| ())?;
        Ok(())
    }

    /// Rates one usage event for the customer that owns `account`: the rate in force at the
    /// usage's time, the customer's charge and (with a reseller's plan) the reseller's cost.
    pub fn rate_usage(&self, account: &AccountFacts, usage: &Usage) -> AppResult<RatedUsage> {
        let customer = account.party.ok_or_else(|| {
            AppError::invalid("account", Code::AccountNotFound, "account: usage is rated on a customer's account")
        })?;
        let plan = self.customer_plan(customer)?.ok_or_else(|| {
            AppError::invalid(
                "account",
                Code::NoRatePlan,
                "account: the customer has no rate plan, nor its reseller a default",
            )
        })?;
        if plan.currency != account.currency {
            return Err(AppError::invalid(
                "account",
                Code::CurrencyMismatch,
                format!("account: the rate plan is in {}, the account in {}", plan.currency, account.currency),
            ));
        }
        let currency = self.currency("currency", plan.currency)?;
        let deck = self.deck(&plan)?;
        let rate =
            deck.lookup(&usage.service, usage.destination.as_deref(), usage.at).ok_or_else(|| no_rate(&plan, usage))?;
        let rated = rate.cost(usage.quantity, currency.scale);
        let reseller_rate = match self.reseller_of(customer)? {
            Some(r) => match self.reseller_plan(r)? {
                Some(p) if p.currency == plan.currency => {
                    self.deck(&p)?.lookup(&usage.service, usage.destination.as_deref(), usage.at).cloned()
                }
                _ => None,
            },
            None => None,
        };
        Ok(RatedUsage {
            plan,
            rate: rate.clone(),
            billed: rated.billed,
            amount: rated.amount,
            reseller_cost: reseller_rate.as_ref().map(|r| r.cost(usage.quantity, currency.scale).amount),
            reseller_rate,
            currency,
        })
    }

    /// Usage no rate matched, newest first: a customer's own, or every customer the caller sees.
    pub fn unrated_usage(&self, who: &Principal, customer: Option<u64>) -> AppResult<Vec<purse_store::UnratedUsage>> {
        let party = match (who.role, customer) {
            (_, Some(c)) => Some(self.party_of_kind(who, c, false)?.id),
            (Role::Customer(c), None) => Some(c),
            _ => None,
        };
        let mut out = Vec::new();
        for u in self.rating.unrated(party, 500)? {
            if party.is_some() || self.ask(|r| crate::policy::sees_owner(who.role, Some(u.party), r))? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// What a reseller sold and what it cost it, from rated usage (usage events and calls) of
    /// its customers posted in [`from`, `to`): by customer and in total, per currency.
    pub fn reseller_margin(
        &self,
        who: &Principal,
        reseller: u64,
        from: Timestamp,
        to: Timestamp,
    ) -> AppResult<serde_json::Value> {
        let reseller = self.party_of_kind(who, reseller, true)?;
        let reader = self.engine.reader();
        let mut customers = Vec::new();
        let mut after = None;
        loop {
            let page = reader.parties(purse_store::PartyQuery {
                resellers: Some(false),
                reseller: Some(reseller.id),
                after,
                search: None,
                limit: 500,
            })?;
            after = page.last().map(|p| p.id);
            let done = page.len() < 500;
            customers.extend(page);
            if done {
                break;
            }
        }
        let mut rows = Vec::new();
        let mut totals: std::collections::BTreeMap<String, (i64, i64, Currency)> = std::collections::BTreeMap::new();
        for c in &customers {
            let (mut sold, mut cost, mut events) = (0_i64, 0_i64, 0_u64);
            let mut currency = None;
            for account in reader.accounts_of(c.id)? {
                let cur = self.currency("currency", account.currency)?;
                currency = Some(cur);
                let mut before = None;
                'journal: loop {
                    let page = reader.journal(purse_store::JournalQuery { account: account.id, before, limit: 500 })?;
                    for t in &page {
                        before = Some(t.id);
                        if t.posted_at < from {
                            break 'journal;
                        }
                        if t.posted_at >= to || t.debit != account.id || t.kind != purse_core::TransferKind::Charge {
                            continue;
                        }
                        let Some(meta) =
                            t.metadata.as_deref().and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                        else {
                            continue;
                        };
                        // Calls are counted from their sessions, below.
                        if meta.get("session").is_some() || meta.get("rated").is_none() {
                            continue;
                        }
                        sold += t.amount.0;
                        events += 1;
                        if let Some(rc) = meta["rated"]["reseller_cost"].as_str() {
                            cost += cur.parse(rc).map(|a| a.0).unwrap_or(0);
                        }
                    }
                    if page.len() < 500 {
                        break;
                    }
                }
            }
            for (charged, reseller_cost, at) in self.session_money(c.id)? {
                if at >= from && at < to {
                    sold += charged;
                    cost += reseller_cost;
                    events += 1;
                }
            }
            let Some(cur) = currency else { continue };
            if events == 0 {
                continue;
            }
            let total = totals.entry(cur.code.to_string()).or_insert((0, 0, cur));
            total.0 += sold;
            total.1 += cost;
            rows.push(serde_json::json!({
                "customer": c.id.0, "name": c.name, "currency": cur.code.to_string(), "rated": events,
                "sold": cur.format(purse_core::Amount(sold)), "cost": cur.format(purse_core::Amount(cost)),
                "margin": cur.format(purse_core::Amount(sold - cost)),
            }));
        }
        let totals: Vec<serde_json::Value> = totals
            .into_iter()
            .map(|(code, (sold, cost, cur))| {
                serde_json::json!({
                    "currency": code, "sold": cur.format(purse_core::Amount(sold)),
                    "cost": cur.format(purse_core::Amount(cost)), "margin": cur.format(purse_core::Amount(sold - cost)),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "reseller": reseller.id.0, "from": purse_core::time::format(from), "to": purse_core::time::format(to),
            "totals": totals, "data": rows,
        }))
    }

    /// What never changes of the account a body's `account` field names, if the caller
    /// sees it (cached: its owner and currency are fixed when it is opened).
    pub fn account_field(&self, who: &Principal, id: u64) -> AppResult<AccountFacts> {
        self.check_account_field(who, "account", id)?;
        if let Some(f) = self.account_facts.lock().ok().and_then(|m| m.get(&id).copied()) {
            return Ok(f);
        }
        let a = self.engine.reader().account(AccountId(id))?.ok_or_else(|| {
            AppError::invalid("account", Code::AccountNotFound, format!("account: account {id} does not exist"))
        })?;
        let facts = AccountFacts { id: a.id, party: a.party, currency: a.currency };
        crate::remember(&self.account_facts, id, facts);
        Ok(facts)
    }

    /// The charge command of one usage event. Blocking.
    pub fn usage_command(&self, who: &Principal, r: UsageRequest) -> AppResult<Command> {
        let account = self.account_field(who, r.account)?;
        let client_id = who.client_id("client_id", &r.client_id)?;
        let usage = r.usage(self.now())?;
        let rated = match self.rate_usage(&account, &usage) {
            Ok(rated) => rated,
            // Usage no rate matches is refused, and kept where staff and the customer see it.
            Err(AppError::Invalid { field, code: code @ (Code::NoRate | Code::NoRatePlan), message }) => {
                if let Some(party) = account.party {
                    self.rating.record_unrated(&purse_store::UnratedUsage {
                        party,
                        client_id: r.client_id.clone(),
                        account: account.id.0,
                        service: usage.service.clone(),
                        destination: usage.destination.clone(),
                        quantity: usage.quantity,
                        at: usage.at,
                        reason: message.clone(),
                        recorded_at: self.now(),
                    })?;
                }
                return Err(AppError::Invalid { field, code, message });
            }
            Err(e) => return Err(e),
        };
        if !rated.amount.is_positive() {
            return Err(AppError::invalid(
                "quantity",
                Code::NothingToCharge,
                format!(
                    "quantity: the usage costs nothing at rate {} of plan {}; nothing was posted",
                    rated.rate.prefix.as_str(),
                    rated.plan.name
                ),
            ));
        }
        Ok(Command::Charge(NewCharge {
            client_id,
            account: account.id,
            money: Money { amount: rated.amount, currency: rated.currency.code },
            service: Some(usage.service.clone()),
            at: r.at.is_some().then_some(usage.at),
            metadata: Some(rated.metadata(&usage).to_string()),
            refuse_if_insufficient: false,
        }))
    }
}

fn no_rate(plan: &RatePlan, usage: &Usage) -> AppError {
    let (field, what) = match &usage.destination {
        Some(d) => ("destination", format!("service {} and destination {d}", usage.service)),
        None => ("service", format!("service {} (no destination)", usage.service)),
    };
    AppError::invalid(
        field,
        Code::NoRate,
        format!("{field}: no rate of plan {} matches {what} at {}", plan.name, purse_core::time::format(usage.at)),
    )
}

/// A usage event as sent: quantities, not money.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    pub client_id: String,
    pub account: u64,
    pub service: String,
    pub destination: Option<String>,
    /// Seconds, messages or bytes: the service's base units.
    pub quantity: u64,
    /// RFC 3339; now when absent.
    pub at: Option<String>,
}

/// A usage event, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub service: String,
    pub destination: Option<String>,
    pub quantity: u64,
    pub at: Timestamp,
}

impl UsageRequest {
    pub fn usage(&self, now: Timestamp) -> AppResult<Usage> {
        let service = service_name("service", &self.service)?;
        let destination = self
            .destination
            .as_deref()
            .map(|d| {
                rating::destination(d).map_err(|e| {
                    AppError::invalid("destination", Code::InvalidDestination, format!("destination: {e}"))
                })
            })
            .transpose()?;
        if self.quantity == 0 {
            return Err(AppError::invalid(
                "quantity",
                Code::InvalidQuantity,
                "quantity: usage of nothing is not charged",
            ));
        }
        if self.quantity > QUANTITY_MAX {
            return Err(quantity_error("quantity", self.quantity));
        }
        let at = self.at.as_deref().map(|t| crate::parse::timestamp("at", t)).transpose()?.unwrap_or(now);
        Ok(Usage { service, destination, quantity: self.quantity, at })
    }
}

/// Most base units of one usage event or session (10^12: 31,000 years of seconds).
pub const QUANTITY_MAX: u64 = 1_000_000_000_000;

pub fn quantity_error(field: &str, q: u64) -> AppError {
    AppError::invalid(
        field,
        Code::InvalidQuantity,
        format!("{field}: {q} is above the most one event may have ({QUANTITY_MAX})"),
    )
}

/// A service name: 1 to 64 printable characters without spaces.
pub fn service_name(field: &str, text: &str) -> AppResult<String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(
            field,
            Code::InvalidService,
            format!("{field} must be 1 to 64 printable characters without spaces, such as voice, sms or data"),
        ));
    }
    Ok(t.to_owned())
}

/// What never changes of an account: which it is, its owner, its currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: AccountId,
    pub party: Option<PartyId>,
    pub currency: purse_core::CurrencyCode,
}

/// What a usage event costs and why.
#[derive(Clone, Debug)]
pub struct RatedUsage {
    pub plan: RatePlan,
    pub rate: Rate,
    pub billed: u64,
    pub amount: purse_core::Amount,
    pub reseller_cost: Option<purse_core::Amount>,
    /// The rate the customer's reseller pays for this usage, when it pays by a plan.
    pub reseller_rate: Option<Rate>,
    pub currency: Currency,
}

impl RatedUsage {
    /// The posting's metadata: which rate, how many units were billed, and why.
    pub fn metadata(&self, usage: &Usage) -> serde_json::Value {
        let scale = self.currency.scale;
        let mut rated = serde_json::json!({
            "plan": self.plan.name,
            "prefix": self.rate.prefix.as_str(),
            "destination": usage.destination,
            "description": self.rate.description,
            "price": self.rate.price.format(scale),
            "unit": self.rate.unit,
            "increments": self.rate.increments.to_string(),
            "quantity": usage.quantity,
            "billed": self.billed,
            "rate_from": purse_core::time::format(self.rate.effective_from),
        });
        if let Some(c) = self.reseller_cost {
            rated["reseller_cost"] = self.currency.format(c).into();
        }
        serde_json::json!({ "rated": rated })
    }
}

/// The deck's columns, in the order they are written.
pub const DECK_COLUMNS: [&str; 9] =
    ["service", "prefix", "description", "price", "connection_fee", "minimum", "increments", "unit", "effective_from"];

/// Reads a deck: a header line naming the columns (`prefix` and `price` required; the
/// others default: `service` to `service`, `increments` to 1/1, fees to 0, `unit` to the
/// service's, `effective_from` to now). Every bad line is named, with its number.
pub fn parse_deck(text: &str, service: Option<&str>, now: Timestamp) -> AppResult<Vec<Rate>> {
    let deck_error = |m: String| AppError::invalid("csv", Code::InvalidDeck, m);
    let service = service.map(|s| service_name("service", s)).transpose()?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| deck_error(format!("csv: the header line: {e}")))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    for h in headers.iter() {
        if !DECK_COLUMNS.iter().any(|c| c.eq_ignore_ascii_case(h)) {
            return Err(deck_error(format!("csv: unknown column {h:?}; the columns are {}", DECK_COLUMNS.join(", "))));
        }
    }
    // A column named twice would be read from one of the two, silently: a price among them.
    if let Some((i, twice)) =
        headers.iter().enumerate().find(|(i, h)| headers.iter().take(*i).any(|e| e.eq_ignore_ascii_case(h)))
    {
        return Err(deck_error(format!("csv: the column {twice:?} is named twice (column {})", i + 1)));
    }
    let (Some(prefix_at), Some(price_at)) = (column("prefix"), column("price")) else {
        return Err(deck_error("csv: the header line must name at least prefix and price".into()));
    };
    if column("service").is_none() && service.is_none() {
        return Err(deck_error("csv: name the service in a service column or in the service field".into()));
    }
    let mut rates = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, String, i64), usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        if rates.len() + errors.len() >= DECK_LINES_MAX {
            errors.push(format!("line {line}: a deck has at most {DECK_LINES_MAX} lines"));
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {}", crate::parse::csv_line_error(&e)));
                continue;
            }
        };
        let columns: HashMap<&str, usize> = DECK_COLUMNS.iter().filter_map(|c| Some((*c, column(c)?))).collect();
        match deck_line(&record, &columns, prefix_at, price_at, service.as_deref(), now) {
            Ok(rate) => {
                let key = (rate.service.clone(), rate.prefix.as_str().to_owned(), rate.effective_from.0);
                if let Some(first) = seen.insert(key, line) {
                    errors.push(format!("line {line}: the same service, prefix and effective_from as line {first}"));
                } else {
                    rates.push(rate);
                }
            }
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
        if errors.len() >= 100 {
            errors.push("…and maybe more: fix these first".into());
            break;
        }
    }
    if !errors.is_empty() {
        return Err(deck_error(format!("csv: nothing was imported; {} wrong: {}", errors.len(), errors.join("; "))));
    }
    if rates.is_empty() {
        return Err(deck_error("csv: the deck has no rates".into()));
    }
    Ok(rates)
}

fn deck_line(
    record: &csv::StringRecord,
    columns: &HashMap<&str, usize>,
    prefix_at: usize,
    price_at: usize,
    service: Option<&str>,
    now: Timestamp,
) -> Result<Rate, String> {
    let get = |name: &str| columns.get(name).and_then(|c| record.get(*c)).filter(|v| !v.is_empty());
    let service = match get("service") {
        Some(s) => service_name("service", s).map_err(|e| e.to_string())?,
        None => service.ok_or("service is empty")?.to_owned(),
    };
    let prefix = Prefix::parse(record.get(prefix_at).unwrap_or("")).map_err(|e| format!("prefix: {e}"))?;
    let price = Price::parse(record.get(price_at).unwrap_or("")).map_err(|e| format!("price: {e}"))?;
    let fee = get("connection_fee").map(Price::parse).transpose().map_err(|e| format!("connection_fee: {e}"))?;
    let minimum = get("minimum").map(Price::parse).transpose().map_err(|e| format!("minimum: {e}"))?;
    let increments = get("increments").map(Increments::parse).transpose().map_err(|e| format!("increments: {e}"))?;
    let unit = match get("unit") {
        Some(u) => u
            .parse::<u32>()
            .ok()
            .filter(|u| *u > 0)
            .ok_or_else(|| format!("unit: {u:?} is not a whole number from 1"))?,
        None => rating::default_unit(&service),
    };
    let effective_from = match get("effective_from") {
        Some(t) => effective_time(t)
            .ok_or_else(|| format!("effective_from: {t:?} is not a date (2027-01-31) or an RFC 3339 time"))?,
        None => now,
    };
    let description = get("description").unwrap_or("").to_owned();
    if let Some(rule) = crate::parse::line_rule(&description, true, DESCRIPTION_LEN_MAX, crate::parse::Count::Chars) {
        return Err(format!("description {rule}"));
    }
    Ok(Rate {
        service,
        prefix,
        description,
        price,
        connection_fee: fee.unwrap_or(Price::ZERO),
        minimum: minimum.unwrap_or(Price::ZERO),
        increments: increments.unwrap_or(Increments { first: 1, next: 1 }),
        unit,
        effective_from,
    })
}

/// A date (midnight UTC) or an RFC 3339 time.
fn effective_time(text: &str) -> Option<Timestamp> {
    purse_core::time::parse(text).or_else(|| purse_core::time::parse_date(text).map(purse_core::time::day_start))
}

/// Writes rates as a deck with every column.
pub fn write_deck(rates: &[Rate], currency: Currency) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(DECK_COLUMNS);
    for r in rates {
        let _ = w.write_record([
            r.service.as_str(),
            r.prefix.as_str(),
            r.description.as_str(),
            &r.price.format(currency.scale),
            &r.connection_fee.format(currency.scale),
            &r.minimum.format(currency.scale),
            &r.increments.to_string(),
            &r.unit.to_string(),
            &purse_core::time::format(r.effective_from),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one wrong line of a deck, as the deck's error says it.
    fn wrong(line: &str) -> String {
        let deck = format!("prefix,description,price\n{line}\n");
        match parse_deck(&deck, Some("voice"), Timestamp(0)) {
            Err(AppError::Invalid { message, .. }) => message,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_deck_line_is_told_the_rule_its_text_or_price_breaks() {
        assert!(wrong("1,U\u{0}S,0.01").ends_with("line 2: description has a control character (a line break, a tab, an escape or a text-direction override): write one line of visible text"));
        assert!(wrong("1,\u{202e}SU,0.01").contains("line 2: description has a control character"));
        assert!(wrong(&format!("1,{},0.01", "x".repeat(250)))
            .ends_with("line 2: description is 250 characters long: at most 200"));
        assert!(wrong("1,US,999999999999.999999999").ends_with(
            "line 2: price: \"999999999999.999999999\" is more than the largest price, 9223372036.854775807"
        ));
        assert!(wrong("1,US,1e-3")
            .ends_with("line 2: price: \"1e-3\" is not a price (digits with an optional decimal point)"));
        assert!(parse_deck(
            "prefix,description,price\n1,Zürich — mobile 🙂,9223372036.854775807\n",
            Some("voice"),
            Timestamp(0)
        )
        .is_ok());
    }
}
