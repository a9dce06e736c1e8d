//! Auto-recharge and payments end to end, against localstripe (a stateful Stripe emulator
//! from PyPI, installed by `scripts/stripe.sh`): a simulated month of card recharges checked
//! against a reference model, failures injected at each step of a card recharge, 200
//! concurrent charges, two `purse serve` processes on one PostgreSQL database, declines and
//! auto-disable, top-up invoices, the master account, and bad input.

mod common;

use common::served::Served;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use purse::client::Client;
use purse_app::recharger::{Fault, PaymentConfig};
use purse_core::{Role, Scope, Timestamp};
use serde_json::{json, Value};

const HOUR: i64 = 3600 * 1_000_000;
const DAY: i64 = 24 * HOUR;
const VISA: &str = "4242424242424242";
/// Attaches, then every charge is declined.
const DECLINES: &str = "4000000000000341";

fn wall_us() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

world!();

fn payment_config(stripe: Option<&LocalStripe>) -> PaymentConfig {
    stripe.map_or_else(PaymentConfig::default, LocalStripe::config)
}

impl World {
    fn new(url: &str, stripe: Option<&LocalStripe>) -> World {
        let options =
            common::world::Options { payments: payment_config(stripe), recharges: true, ..Default::default() };
        World(common::world::World::with(url, options))
    }

    fn refused(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let reply =
            self.api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        (reply.status, reply.json())
    }

    fn customer(&mut self, name: &str, reseller: Option<u64>) -> (u64, u64) {
        let mut body = json!({ "billing": "prepaid" });
        if let Some(r) = reseller {
            body["reseller"] = json!(r);
        }
        let (id, wallet) = self.new_customer(name, body);
        self.billing_email(id, name);
        (id, wallet)
    }

    fn pay(&mut self, wallet: u64, amount: &str) {
        self.payment(wallet, amount, "cash");
    }

    fn charge(&mut self, wallet: u64, amount: &str) {
        let id = purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel());
        self.call(
            "POST",
            "/v1/charges",
            json!({ "client_id": id, "account": wallet, "amount": amount, "currency": "USD", "service": "calls" }),
        );
    }

    fn save_card(&mut self, customer: u64, number: &str) {
        self.call(
            "POST",
            &format!("/v1/customers/{customer}/card"),
            json!({ "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123" }),
        );
    }

    fn recharges(&mut self, customer: u64) -> Vec<Value> {
        let mut all =
            self.get(&format!("/v1/recharges?customer={customer}&limit=500"))["data"].as_array().unwrap().clone();
        all.reverse();
        all
    }

    fn balance(&mut self, wallet: u64) -> String {
        self.get(&format!("/v1/accounts/{wallet}"))["balance"].as_str().unwrap().to_owned()
    }

    fn stripe_customer(&self, customer: u64) -> String {
        // The Stripe customer id is never shown by the API; the store has it.
        let s = self.recharger.store().recharge_settings(purse_core::PartyId(customer)).unwrap().unwrap();
        s.card.unwrap().customer
    }

    fn mails(&self) -> Vec<String> {
        self.messages().into_iter().map(|m| m.raw).collect()
    }
}

fn units(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, "00"));
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    sign * (whole.trim_start_matches('-').parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap())
}

fn epoch_day(at: &str) -> i64 {
    purse_core::time::parse(at).unwrap().0.div_euclid(DAY)
}

/// Usage of hour `h` (of the month) in cents: heavier in the middle ten days.
fn usage(h: i64) -> i64 {
    let (day, hour) = (h / 24, h % 24);
    if !(9..18).contains(&hour) {
        return 0;
    }
    match day {
        0..=9 => 500,
        10..=19 => 800,
        _ => 150,
    }
}

#[test]
fn a_simulated_month_recharges_by_card_on_exactly_the_expected_days_and_to_target() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    let (fixed, fixed_wallet) = w.customer("fixed", None);
    let (target, target_wallet) = w.customer("target", None);
    for (c, wallet) in [(fixed, fixed_wallet), (target, target_wallet)] {
        w.pay(wallet, "60");
        w.save_card(c, VISA);
    }
    w.call(
        "PUT",
        &format!("/v1/customers/{fixed}/recharge-settings"),
        json!({ "enabled": true, "method": "card", "threshold": "20", "recharge_amount": "50" }),
    );
    w.call(
        "PUT",
        &format!("/v1/customers/{target}/recharge-settings"),
        json!({ "enabled": true, "method": "card", "threshold": "20", "target_balance": "100" }),
    );
    assert_eq!(
        w.get(&format!("/v1/accounts/{fixed_wallet}"))["thresholds"],
        json!(["20.00"]),
        "the ledger watches the recharge threshold"
    );
    // The reference model: the same usage, and one recharge a day at most when below 20.
    let mut model = [(6000_i64, Vec::new(), -1_i64), (6000, Vec::new(), -1)];
    let start = w.now();
    for h in 0..30 * 24 {
        let at = start.plus_micros(h * HOUR);
        w.clock.set(at);
        let u = usage(h);
        if u > 0 {
            w.charge(fixed_wallet, &format!("{}.{:02}", u / 100, u % 100));
            w.charge(target_wallet, &format!("{}.{:02}", u / 100, u % 100));
        }
        w.step();
        let day = at.0.div_euclid(DAY);
        for (i, m) in model.iter_mut().enumerate() {
            m.0 -= u;
            if m.0 < 2000 && m.2 != day {
                let amount = if i == 0 { 5000 } else { 10_000 - m.0 };
                m.0 += amount;
                m.1.push((day, amount));
                m.2 = day;
            }
        }
    }
    for (i, (c, wallet)) in [(fixed, fixed_wallet), (target, target_wallet)].into_iter().enumerate() {
        let got: Vec<(i64, i64)> = w
            .recharges(c)
            .iter()
            .map(|r| {
                assert_eq!(r["status"], "succeeded", "{r}");
                (epoch_day(r["created_at"].as_str().unwrap()), units(r["amount"].as_str().unwrap()))
            })
            .collect();
        assert_eq!(got, model[i].1, "customer {c}: recharges (day, amount) as the model says");
        assert!(got.len() >= 10, "the month needs many recharges: {got:?}");
        assert_eq!(units(&w.balance(wallet)), model[i].0, "the ledger balance equals the model's");
        let charges = stripe.charges(&w.stripe_customer(c));
        let succeeded: Vec<&Value> = charges.iter().filter(|ch| ch["status"] == "succeeded").collect();
        assert_eq!(succeeded.len(), got.len(), "Stripe charged once per recharge");
        let charged: i64 = succeeded.iter().map(|ch| ch["amount"].as_i64().unwrap()).sum();
        assert_eq!(charged, got.iter().map(|(_, a)| a).sum::<i64>(), "Stripe charged exactly what was credited");
    }
    // A successful recharge is told to the billing e-mail.
    assert!(w.mails().iter().any(|m| m.contains("Automatic recharge of 50.00 USD")), "a recharge notice was mailed");
}

#[test]
fn a_crash_at_any_step_of_a_card_recharge_never_charges_twice_nor_loses_a_credit() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    const RUNS: usize = 50;
    for fault in Fault::ALL {
        let name = format!("{fault:?}").to_lowercase();
        let (c, wallet) = w.customer(&name, None);
        w.pay(wallet, "25");
        w.save_card(c, VISA);
        w.call(
            "PUT",
            &format!("/v1/customers/{c}/recharge-settings"),
            json!({ "enabled": true, "method": "card", "threshold": "20", "recharge_amount": "10" }),
        );
        for run in 0..RUNS {
            // A new day, a charge below the threshold, and the process "dies" at `fault`.
            w.clock.set(w.now().plus_micros(DAY));
            w.charge(wallet, "10");
            w.recharger.set_fault(Some(fault));
            w.step();
            let r = w.recharges(c).last().cloned().unwrap();
            assert_ne!(r["status"], "succeeded", "{fault:?} run {run}: the fault stopped it: {r}");
            // The restart: another process claims it once the lease is over.
            w.recharger.set_fault(None);
            w.recharger.work(wall_us() + 61 * 1_000_000).unwrap();
            let r = w.recharges(c).last().cloned().unwrap();
            assert_eq!(r["status"], "succeeded", "{fault:?} run {run}: finished after the restart: {r}");
        }
        let recharges = w.recharges(c);
        assert_eq!(recharges.len(), RUNS, "{fault:?}: one recharge per run");
        // The ledger: exactly one credit per recharge.
        let journal = w.get(&format!("/v1/accounts/{wallet}/journal?kind=payment&limit=500"));
        let credits: Vec<&str> = journal["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["client_id"].as_str())
            .filter(|id| id.starts_with("recharge:"))
            .collect();
        assert_eq!(credits.len(), RUNS, "{fault:?}: one credit per recharge");
        let mut unique = credits.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), RUNS);
        // Stripe: at most one successful charge per recharge, and one for each.
        let charges = stripe.charges(&w.stripe_customer(c));
        let mut per_intent: HashMap<String, usize> = HashMap::new();
        for ch in charges.iter().filter(|ch| ch["status"] == "succeeded") {
            *per_intent.entry(ch["payment_intent"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert_eq!(per_intent.len(), RUNS, "{fault:?}: one successful charge per recharge");
        assert!(per_intent.values().all(|n| *n == 1));
        let recorded: Vec<String> =
            recharges.iter().map(|r| r["payment_intent"].as_str().unwrap().to_owned()).collect();
        assert!(
            recorded.iter().all(|pi| per_intent.contains_key(pi)),
            "{fault:?}: each recharge's intent is the one charged"
        );
        // 25 + 50 × (−10 + 10).
        assert_eq!(w.balance(wallet), "25.00");
    }
}

#[test]
fn two_hundred_concurrent_charges_leave_at_most_one_recharge_in_flight_per_customer() {
    let mut w = World::new(&sqlite_url(), None);
    let mut wallets = Vec::new();
    for n in 0..20 {
        let (c, wallet) = w.customer(&format!("c{n}"), None);
        w.pay(wallet, "100");
        w.call("PUT", &format!("/v1/customers/{c}/recharge-settings"), json!({ "enabled": true, "method": "invoice", "threshold": "50", "recharge_amount": "100", "per_day_max": 24 }));
        wallets.push((c, wallet));
    }
    let addr = w.servers[0].addr;
    let key = {
        let opened = purse::open_store(&w.url).unwrap();
        purse::keys::create(&opened, "load", Role::Operator, Scope::ReadWrite, w.now()).unwrap().1
    };
    // Ten threads post 200 charges (10 of 6.00 per customer) while the worker evaluates.
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let (key, wallets) = (key.clone(), wallets.clone());
            std::thread::spawn(move || {
                let mut api = Client::new(&format!("http://{addr}"), Some(key)).unwrap();
                for i in 0..20 {
                    let (_, wallet) = wallets[(t * 20 + i) % 20];
                    let id = format!("load-{t}-{i}");
                    let r = api
                        .send(
                            "POST",
                            "/v1/charges",
                            &json!({ "client_id": id, "account": wallet, "amount": "6", "currency": "USD" }),
                            &id,
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.json());
                }
            })
        })
        .collect();
    while !threads.iter().all(std::thread::JoinHandle::is_finished) {
        w.step();
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
    for _ in 0..3 {
        w.step();
    }
    for (c, wallet) in &wallets {
        assert_eq!(w.balance(*wallet), "40.00");
        let recharges = w.recharges(*c);
        let in_flight = recharges.iter().filter(|r| r["status"] == "invoiced").count();
        assert_eq!(
            (recharges.len(), in_flight),
            (1, 1),
            "customer {c}: exactly one recharge, in flight: {recharges:?}"
        );
        let invoices = w.get(&format!("/v1/invoices?customer={c}"))["data"].as_array().unwrap().clone();
        assert_eq!(invoices.len(), 1, "one open top-up invoice");
    }
    // Invoice numbers have no gaps.
    let mut numbers: Vec<String> = w.get("/v1/invoices?limit=500")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=20).map(|n| format!("TU-0-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[test]
fn declines_notify_and_turn_auto_recharge_off_after_three_in_a_row() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    let (c, wallet) = w.customer("declined", None);
    w.save_card(c, DECLINES);
    w.call("PUT", &format!("/v1/customers/{c}/recharge-settings"), json!({ "enabled": true, "method": "card", "threshold": "20", "recharge_amount": "50", "emails": ["ops@declined.test"] }));
    w.charge(wallet, "5");
    for day in 0..4 {
        w.clock.set(w.now().plus_micros(DAY));
        w.step();
        let settings = w.get(&format!("/v1/customers/{c}/recharge-settings"));
        assert_eq!(settings["enabled"], day < 2, "day {day}: {settings}");
    }
    let recharges = w.recharges(c);
    assert_eq!(recharges.len(), 3, "one attempt a day until it turned itself off");
    assert!(
        recharges.iter().all(|r| r["status"] == "failed" && r["error"].as_str().unwrap().contains("declined")),
        "{recharges:?}"
    );
    assert_eq!(w.balance(wallet), "-5.00", "a decline credits nothing");
    let settings = w.get(&format!("/v1/customers/{c}/recharge-settings"));
    assert!(settings["disabled_reason"].as_str().unwrap().contains("3 failed card recharges"), "{settings}");
    let notes = w.get(&format!("/v1/notifications?customer={c}"))["data"].as_array().unwrap().clone();
    let kinds: Vec<&str> = notes.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "recharge_failed").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "recharge_disabled").count(), 1, "{kinds:?}");
    for _ in 0..3 {
        w.step();
    }
    let mails = w.mails();
    assert!(
        mails.iter().any(|m| m.contains("To: ops@declined.test") && m.contains("Auto-recharge turned off")),
        "the alert e-mails hear of it"
    );
    assert!(
        mails.iter().any(|m| m.contains("To: declined@billing.test") && m.contains("declined")),
        "the customer hears of the decline"
    );
    // Stripe charged nothing.
    assert!(stripe.charges(&w.stripe_customer(c)).iter().all(|ch| ch["status"] != "succeeded"));
}

#[test]
fn an_invoice_recharge_is_numbered_mailed_once_and_credited_when_paid() {
    let mut w = World::new(&sqlite_url(), None);
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "r", "name": "Reseller" }))["id"].as_u64().unwrap();
    let (c, wallet) = w.customer("invoiced", Some(reseller));
    w.call(
        "PUT",
        &format!("/v1/customers/{c}/recharge-settings"),
        json!({ "enabled": true, "method": "invoice", "threshold": "20", "recharge_amount": "75" }),
    );
    w.charge(wallet, "1");
    for _ in 0..3 {
        w.clock.set(w.now().plus_micros(DAY));
        w.step();
    }
    let invoices = w.get(&format!("/v1/invoices?customer={c}"))["data"].as_array().unwrap().clone();
    assert_eq!(invoices.len(), 1, "at most one open top-up invoice: {invoices:?}");
    let invoice = &invoices[0];
    assert_eq!(
        (invoice["number"].as_str(), invoice["amount"].as_str(), invoice["status"].as_str()),
        (Some(&*format!("TU-{reseller}-000001")), Some("75.00"), Some("open"))
    );
    w.step();
    let mails = w.mails();
    assert_eq!(
        mails.iter().filter(|m| m.contains(&format!("TU-{reseller}-000001"))).count(),
        1,
        "the invoice is mailed once"
    );
    // With the invoice attached as a PDF.
    let mail = mails.iter().find(|m| m.contains(&format!("TU-{reseller}-000001"))).unwrap();
    let (headers, pdf) = mail_attachment(mail, "application/pdf").expect("a PDF attachment");
    assert!(headers.contains(&format!("filename=\"TU-{reseller}-000001.pdf\"")), "{headers}");
    let text = pdf_text(&pdf);
    assert!(
        text.contains(&format!("TU-{reseller}-000001")) && text.contains("75.00 USD") && text.contains("open"),
        "{text}"
    );
    assert_eq!(w.balance(wallet), "-1.00", "nothing is credited before payment");
    let id = invoice["id"].as_u64().unwrap();
    let (status, body) = w.refused(
        "POST",
        &format!("/v1/invoices/{id}/payments"),
        json!({ "method": "cheque", "amount": "75", "currency": "EUR" }),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("currency")));
    let paid = w.call(
        "POST",
        &format!("/v1/invoices/{id}/payments"),
        json!({ "method": "cheque", "amount": "75", "currency": "USD" }),
    );
    assert_eq!(paid["status"], "paid");
    let again = w.call(
        "POST",
        &format!("/v1/invoices/{id}/payments"),
        json!({ "method": "cheque", "amount": "75", "currency": "USD" }),
    );
    assert_eq!(again["transfer"], paid["transfer"], "paying again credits nothing more");
    assert_eq!(w.balance(wallet), "74.00");
    assert_eq!(w.recharges(c)[0]["status"], "succeeded");
    // Issue 23: a paid top-up invoice says what was paid (it used to say 0.00: its payment is
    // never allocated, it is the top-up itself).
    let shown = w.get(&format!("/v1/invoices/{id}"));
    assert_eq!((shown["paid"].as_str(), shown["due"].as_str()), (Some("75.00"), Some("0.00")), "{shown}");
    // The invoice as a PDF, made in-process and read back by an independent parser.
    let reply = w.api.get(&format!("/v1/invoices/{id}/pdf")).unwrap();
    assert_eq!((reply.status, reply.header("content-type")), (200, Some("application/pdf")));
    assert!(reply.header("content-disposition").is_some_and(|d| d.contains(&format!("TU-{reseller}-000001.pdf"))));
    let text = pdf_text(&reply.body);
    for wanted in
        [format!("TU-{reseller}-000001"), "75.00 USD".into(), "invoiced".into(), "Reseller".into(), "paid on".into()]
    {
        assert!(text.contains(&wanted), "{wanted:?} in {text}");
    }
}

/// A reseller's empty master wallet and a customer of it whose master-account recharge is
/// due (and refused for want of funds after one step): (master wallet, customer, its wallet).
fn short_master_recharge(w: &mut World, reseller: u64) -> (u64, u64, u64) {
    let master = w.call(
        "POST",
        "/v1/accounts",
        json!({ "client_id": "mw", "party": reseller, "kind": "master_wallet", "currency": "USD" }),
    )["id"]
        .as_u64()
        .unwrap();
    let (c, wallet) = w.customer("child", Some(reseller));
    w.call(
        "PUT",
        &format!("/v1/customers/{c}/recharge-settings"),
        json!({ "enabled": true, "method": "master_account", "threshold": "20", "recharge_amount": "30" }),
    );
    w.charge(wallet, "1");
    w.step();
    (master, c, wallet)
}

/// A customer whose reseller recharges it from the master wallet sees what the reseller set,
/// not fields it may not change, and saves what is its own (the e-mails) with the form as
/// shown; a customer on invoice is not offered the master wallet at all.
#[test]
fn a_customer_keeps_its_resellers_master_account_recharge_and_changes_its_own_emails() {
    let mut w = World::new(&sqlite_url(), None);
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "m", "name": "Master" }))["id"].as_u64().unwrap();
    let (_, c, _) = short_master_recharge(&mut w, reseller);
    let mut admin = w.portal(Role::Customer(purse_core::PartyId(c)), Scope::ReadWrite);
    let path = format!("/customers/{c}/recharge");
    let (_, page) = admin.get(&path);
    assert!(page.contains(r#"id="set-by-reseller""#), "{page}");
    assert!(!page.contains(r#"name="threshold" type="text""#), "not offered to edit: {page}");
    let shown = |name: &str| common::world::Portal::hidden(&page, name).unwrap_or_default();
    let (threshold, amount, target, per_day, cap) = (
        shown("threshold"),
        shown("recharge_amount"),
        shown("target_balance"),
        shown("per_day_max"),
        shown("month_cap"),
    );
    let form = [
        ("enabled", "on"),
        ("method", "master_account"),
        ("threshold", threshold.as_str()),
        ("recharge_amount", amount.as_str()),
        ("target_balance", target.as_str()),
        ("per_day_max", per_day.as_str()),
        ("month_cap", cap.as_str()),
        ("emails", "ops@child.test"),
    ];
    let (status, body) = admin.post(&path, &form);
    assert_eq!(status, 303, "the form as shown, with its own e-mails: {body}");
    let saved = w.call("GET", &format!("/v1/customers/{c}/recharge-settings"), Value::Null);
    assert_eq!(saved["emails"], json!(["ops@child.test"]), "{saved}");
    assert_eq!(
        (saved["method"].as_str(), saved["threshold"].as_str()),
        (Some("master_account"), Some("20.00")),
        "{saved}"
    );
    // A customer that pays by invoice is not offered its reseller's money.
    let (other, _) = w.customer("other", Some(reseller));
    let mut admin = w.portal(Role::Customer(purse_core::PartyId(other)), Scope::ReadWrite);
    let (_, page) = admin.get(&format!("/customers/{other}/recharge"));
    assert!(page.contains(r#"id="recharge-settings""#) && !page.contains(r#"value="master_account""#), "{page}");
}

#[test]
fn the_master_account_recharges_with_funds_and_tells_the_reseller_without() {
    let mut w = World::new(&sqlite_url(), None);
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "m", "name": "Master" }))["id"].as_u64().unwrap();
    w.call(
        "PUT",
        &format!("/v1/resellers/{reseller}/alert-settings"),
        json!({ "billing_email": "wallet@master.test" }),
    );
    let (master, c, wallet) = short_master_recharge(&mut w, reseller);
    let r = w.recharges(c);
    assert_eq!((r.len(), r[0]["status"].as_str()), (1, Some("failed")), "{r:?}");
    assert_eq!(w.balance(wallet), "-1.00");
    let notes = w.get(&format!("/v1/notifications?customer={c}"))["data"].as_array().unwrap().clone();
    assert_eq!(notes[0]["kind"], "master_funds_short");
    w.step();
    assert!(
        w.mails().iter().any(|m| m.contains("To: wallet@master.test") && m.contains("master wallet")),
        "the reseller is told"
    );
    // With funds, the next day's recharge moves them in one transfer.
    w.pay(master, "100");
    w.clock.set(w.now().plus_micros(DAY));
    w.step();
    let r = w.recharges(c);
    assert_eq!(r[1]["status"], "succeeded", "{r:?}");
    assert_eq!((w.balance(wallet).as_str(), w.balance(master).as_str()), ("29.00", "70.00"));
    // A reseller issues credit by hand.
    w.call("POST", "/v1/transfers", json!({ "client_id": "by-hand", "source": master, "target": wallet, "amount": "5", "currency": "USD", "kind": "issue" }));
    assert_eq!(w.balance(wallet), "34.00");
}

/// Pay Now in the portal sent twice (a double click while the card is charged, or the
/// browser sending the form again) charges the card once: the form carries its own id, and
/// the payment is started under it. Before, each submission was a payment of its own.
#[test]
fn pay_now_sent_twice_from_the_portal_charges_the_card_once() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    let (c, wallet) = w.customer("hasty", None);
    w.save_card(c, VISA);
    let mut admin = w.portal(Role::Customer(purse_core::PartyId(c)), Scope::ReadWrite);
    let path = format!("/customers/{c}/recharge");
    let (_, page) = admin.get(&path);
    let token = common::world::Portal::hidden(&page, "request").expect("the Pay Now form carries its own id");
    assert!(page.contains("Pays with the saved Visa ending 4242."), "the brand as people write it: {page}");
    assert!(
        page.contains("nothing is due") && page.contains(r#"name="amount" type="text" value="""#),
        "nothing due, nothing filled in"
    );
    for _ in 0..2 {
        let (status, body) = admin.post(&format!("{path}/pay-now"), &[("amount", "7.00"), ("request", &token)]);
        assert_eq!(status, 303, "{body}");
    }
    let paid =
        |w: &World| stripe.charges(&w.stripe_customer(c)).iter().filter(|ch| ch["status"] == "succeeded").count();
    assert_eq!(paid(&w), 1, "one card payment");
    assert_eq!(w.balance(wallet), "7.00");
    // The next form is the next payment; a form changed by hand is refused, naming it.
    let (_, page) = admin.get(&path);
    let fresh = common::world::Portal::hidden(&page, "request").unwrap();
    assert_ne!(fresh, token);
    assert_eq!(admin.post(&format!("{path}/pay-now"), &[("amount", "3.00"), ("request", &fresh)]).0, 303);
    let (status, body) = admin.post(&format!("{path}/pay-now"), &[("amount", "3.00"), ("request", "a b")]);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("this form was changed"), "{body}");
    assert_eq!((paid(&w), w.balance(wallet).as_str()), (2, "10.00"));
}

#[test]
fn bad_recharge_settings_name_the_field_and_keep_the_previous_settings() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    let (c, _) = w.customer("careful", None);
    let path = format!("/v1/customers/{c}/recharge-settings");
    let good = json!({ "enabled": true, "method": "invoice", "threshold": "20", "recharge_amount": "50" });
    w.call("PUT", &path, good.clone());
    let before = w.get(&path);
    let with = |change: Value| {
        let mut body = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    for (body, field) in [
        (with(json!({ "recharge_amount": "-5" })), "recharge_amount"),
        (with(json!({ "recharge_amount": "0" })), "recharge_amount"),
        (with(json!({ "recharge_amount": null, "target_balance": "20" })), "target_balance"),
        (with(json!({ "currency": "EUR" })), "currency"),
        (with(json!({ "method": "card" })), "method"),
        (with(json!({ "method": "master_account" })), "method"),
        (with(json!({ "method": "cash" })), "method"),
        (with(json!({ "per_day_max": 0 })), "per_day_max"),
        (with(json!({ "threshold": "1.001" })), "threshold"),
        (with(json!({ "emails": ["not-an-address"] })), "emails[0]"),
    ] {
        let (status, answer) = w.refused("PUT", &path, body.clone());
        assert_eq!((status, answer["error"]["field"].as_str()), (422, Some(field)), "{body}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(w.get(&path), before, "the previous settings stay in force");
    }
    // Pay Now: no card saved, then a declined card, changes nothing.
    let (status, answer) = w.refused("POST", &format!("/v1/customers/{c}/pay-now"), json!({ "amount": "10" }));
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("card")), "{answer}");
    let (status, answer) = w.refused(
        "POST",
        &format!("/v1/customers/{c}/pay-now"),
        json!({ "amount": "10", "card": { "number": "4000000000000002", "exp_month": 1, "exp_year": 2035, "cvc": "123" } }),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (402, Some("card_declined")), "{answer}");
    assert_eq!(w.get(&path), before);
    // A first online top-up saves the card and the recharge settings (seed 004).
    let paid = w.call(
        "POST",
        &format!("/v1/customers/{c}/pay-now"),
        json!({ "amount": "10", "card": { "number": VISA, "exp_month": 1, "exp_year": 2035, "cvc": "123" }, "auto_recharge": { "threshold": "15", "recharge_amount": "40" } }),
    );
    assert_eq!(paid["status"], "succeeded");
    let now = w.get(&path);
    assert_eq!(
        (
            now["method"].as_str(),
            now["threshold"].as_str(),
            now["recharge_amount"].as_str(),
            now["card"]["last4"].as_str()
        ),
        (Some("card"), Some("15.00"), Some("40.00"), Some("4242"))
    );
    // The same Idempotency-Key answers the first payment and charges once.
    let key = "pay-now-once";
    let first =
        w.api.send("POST", &format!("/v1/customers/{c}/pay-now"), &json!({ "amount": "3" }), key).unwrap().json();
    let second =
        w.api.send("POST", &format!("/v1/customers/{c}/pay-now"), &json!({ "amount": "3" }), key).unwrap().json();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(stripe.charges(&w.stripe_customer(c)).iter().filter(|ch| ch["status"] == "succeeded").count(), 2);
}

/// A `purse serve` process with a clock file, paying through `stripe`.
fn serve(url: &str, clock: &Path, stripe: &LocalStripe, maildir: &Path) -> Served {
    let env = [
        ("PURSE_CLOCK_FILE", clock.to_str().unwrap()),
        ("PURSE_MAILDIR", maildir.to_str().unwrap()),
        ("PURSE_STRIPE_URL", stripe.url.as_str()),
        ("PURSE_STRIPE_SECRET_KEY", "sk_test_purse"),
        ("PURSE_ALERTS_TICK_MS", "20"),
    ];
    Served::start_with(url, &env)
}

#[test]
fn two_serve_processes_on_one_postgresql_recharge_each_customer_once() {
    let url = pg_url("recharge_two");
    let stripe = LocalStripe::start();
    let dir = std::env::temp_dir().join(format!("purse-recharge-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let clock = dir.join("clock");
    let start = Timestamp::from_secs(T0);
    purse::FileClock::set(&clock, start).unwrap();
    let key = {
        let opened = purse::open_store(&url).unwrap();
        purse::keys::create(&opened, "t", Role::Operator, Scope::ReadWrite, start).unwrap().1
    };
    let servers: Vec<Served> = (0..2).map(|_| serve(&url, &clock, &stripe, &dir.join("mail"))).collect();
    let mut api = Client::new(&servers[0].base(), Some(key)).unwrap();
    let mut call = |method: &str, path: &str, body: Value| {
        let r = api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        assert!(r.status < 300, "{path}: {}", r.json());
        r.json()
    };
    call("POST", "/v1/currencies", json!({ "code": "USD" }));
    let mut customers = BTreeMap::new();
    for n in 0..5 {
        let c = call(
            "POST",
            "/v1/customers",
            json!({ "client_id": format!("c{n}"), "name": format!("C{n}"), "billing": "prepaid", "currency": "USD" }),
        );
        let (id, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
        call(
            "POST",
            &format!("/v1/customers/{id}/card"),
            json!({ "number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123" }),
        );
        call(
            "PUT",
            &format!("/v1/customers/{id}/recharge-settings"),
            json!({ "enabled": true, "method": "card", "threshold": "20", "recharge_amount": "50" }),
        );
        call(
            "POST",
            "/v1/charges",
            json!({ "client_id": format!("ch{n}"), "account": wallet, "amount": "5", "currency": "USD" }),
        );
        customers.insert(id, wallet);
    }
    let recharged = |call: &mut dyn FnMut(&str, &str, Value) -> Value| {
        customers.values().all(|w| call("GET", &format!("/v1/accounts/{w}"), json!({}))["balance"] == "45.00")
    };
    common::wait_for(60, "the recharges", || recharged(&mut call));
    // Both workers keep running a while: nothing more happens on the same day.
    stays(Duration::from_secs(2), "no second recharge", || recharged(&mut call));
    for (id, wallet) in &customers {
        assert_eq!(call("GET", &format!("/v1/accounts/{wallet}"), json!({}))["balance"], "45.00");
        let recharges =
            call("GET", &format!("/v1/recharges?customer={id}"), json!({}))["data"].as_array().unwrap().clone();
        assert_eq!(recharges.len(), 1, "customer {id}: {recharges:?}");
        let intent = recharges[0]["payment_intent"].as_str().unwrap().to_owned();
        let pi = stripe.get(&format!("/v1/payment_intents/{intent}"));
        assert_eq!(pi["status"], "succeeded");
        let charges = stripe.charges(pi["customer"].as_str().unwrap());
        assert_eq!(
            charges.iter().filter(|ch| ch["status"] == "succeeded").count(),
            1,
            "customer {id}: Stripe charged once"
        );
    }
}

#[test]
fn a_serve_process_killed_after_stripe_charged_is_reconciled_on_restart_with_one_credit() {
    let url = sqlite_url();
    let stripe = LocalStripe::start();
    let key = {
        let opened = purse::open_store(&url).unwrap();
        purse::keys::create(&opened, "t", Role::Operator, Scope::ReadWrite, Timestamp::from_secs(T0)).unwrap().1
    };
    let maildir = std::env::temp_dir().join(format!("purse-recharge-abort-{}", std::process::id()));
    let env = [
        ("PURSE_MAILDIR", maildir.to_str().unwrap()),
        ("PURSE_STRIPE_URL", stripe.url.as_str()),
        ("PURSE_STRIPE_SECRET_KEY", "sk_test_purse"),
        ("PURSE_ALERTS_TICK_MS", "20"),
        ("PURSE_RECHARGE_LEASE_S", "0"),
        ("PURSE_RECHARGE_FAULT", "after_confirm"),
    ];
    // Stripe charges the card, then the process dies before the ledger credits it.
    let mut served = Served::start_with(&url, &env);
    let mut api = Client::new(&served.base(), Some(key.clone())).unwrap();
    let call = |api: &mut Client, method: &str, path: &str, body: Value| {
        let r = api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        assert!(r.status < 300, "{path}: {}", r.json());
        r.json()
    };
    call(&mut api, "POST", "/v1/currencies", json!({ "code": "USD" }));
    let c = call(
        &mut api,
        "POST",
        "/v1/customers",
        json!({ "client_id": "k", "name": "K", "billing": "prepaid", "currency": "USD" }),
    );
    let (id, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    // A busy Stripe emulator may answer too late: the card is then not saved (502, "try
    // again"), and saving it again is safe.
    let card = json!({ "number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123" });
    let mut saved = None;
    let mut tries = Vec::new();
    for _ in 0..20 {
        let key = purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel());
        let r = api.send("POST", &format!("/v1/customers/{id}/card"), &card, &key).unwrap();
        if r.status == 200 {
            saved = Some(r.json());
            break;
        }
        assert!(r.status == 502 || r.status == 503, "saving the card: {} {}", r.status, r.json());
        tries.push(r.json()["error"]["message"].to_string());
        // The emulator is busy with the other tests' requests: give it a moment.
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(saved.is_some_and(|s| s["card"]["last4"].is_string()), "the card is saved: {tries:?}");
    call(
        &mut api,
        "PUT",
        &format!("/v1/customers/{id}/recharge-settings"),
        json!({ "enabled": true, "method": "card", "threshold": "20", "recharge_amount": "50" }),
    );
    common::wait_for(30, "the process stopped at the fault", || {
        served.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_some())
    });
    let intent_customer = {
        let opened = purse::open_store(&url).unwrap();
        opened.payments.recharge_settings(purse_core::PartyId(id)).unwrap().unwrap().card.unwrap().customer
    };
    let charged = |s: &LocalStripe| s.charges(&intent_customer).iter().filter(|ch| ch["status"] == "succeeded").count();
    assert_eq!(charged(&stripe), 1, "Stripe charged before the crash");
    // The restart finds the charge and credits it, once.
    served.env.retain(|(k, _)| k != "PURSE_RECHARGE_FAULT");
    served.kill();
    served.spawn();
    let mut api = Client::new(&served.base(), Some(key)).unwrap();
    common::wait_for(30, "the restart credited the charge", || {
        call(&mut api, "GET", &format!("/v1/accounts/{wallet}"), json!({}))["balance"] == "50.00"
    });
    stays(Duration::from_millis(500), "credited once", || {
        call(&mut api, "GET", &format!("/v1/accounts/{wallet}"), json!({}))["balance"] == "50.00"
    });
    let recharges =
        call(&mut api, "GET", &format!("/v1/recharges?customer={id}"), json!({}))["data"].as_array().unwrap().clone();
    assert_eq!((recharges.len(), recharges[0]["status"].as_str()), (1, Some("succeeded")), "{recharges:?}");
    assert_eq!(call(&mut api, "GET", &format!("/v1/accounts/{wallet}"), json!({}))["balance"], "50.00");
    assert_eq!(charged(&stripe), 1, "no second charge");
    drop(served);
    let _ = std::fs::remove_dir_all(&maildir);
}

#[test]
fn issue_8_every_payment_gets_a_numbered_receipt_voucher_emailed_with_its_pdf_and_again_by_hand() {
    let mut w = World::new(&sqlite_url(), None);
    let (c, wallet) = w.customer("receipted", None);
    w.pay(wallet, "10");
    w.call("POST", "/v1/payments", json!({ "client_id": "bank-1", "account": wallet, "amount": "20.50", "currency": "USD", "method": "bank_transfer" }));
    w.step();
    w.step();
    w.step();
    let receipts = w.get(&format!("/v1/receipts?customer={c}"))["data"].as_array().unwrap().clone();
    let shown: Vec<(&str, &str, &str)> = receipts
        .iter()
        .map(|r| (r["number"].as_str().unwrap(), r["amount"].as_str().unwrap(), r["method"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shown,
        [("RV-0-000002", "20.50", "bank_transfer"), ("RV-0-000001", "10.00", "cash")],
        "numbered in order, newest first"
    );
    // Each is e-mailed once to the billing e-mail, with its PDF.
    let mails = w.mails();
    for (number, amount) in [("RV-0-000001", "10.00 USD"), ("RV-0-000002", "20.50 USD")] {
        let sent: Vec<&String> = mails.iter().filter(|m| m.contains(number)).collect();
        assert_eq!(sent.len(), 1, "{number} mailed once");
        assert!(sent[0].contains("receipted@billing.test"));
        let (headers, pdf) = mail_attachment(sent[0], "application/pdf").expect("the voucher attached");
        assert!(headers.contains(&format!("{number}.pdf")), "{headers}");
        let text = pdf_text(&pdf);
        assert!(text.contains(number) && text.contains(amount) && text.contains("receipted"), "{text}");
    }
    // Nothing is receipted twice; the staff (or the customer's admin) send one again by hand.
    w.step();
    assert_eq!(w.get(&format!("/v1/receipts?customer={c}"))["data"].as_array().unwrap().len(), 2);
    let id = receipts[0]["id"].as_u64().unwrap();
    let again = w.call("POST", &format!("/v1/receipts/{id}/email"), json!({}));
    assert_eq!(again["emailed_to"], "receipted@billing.test");
    w.step();
    let copies: Vec<String> = w.mails().into_iter().filter(|m| m.contains("RV-0-000002")).collect();
    assert_eq!(copies.len(), 2, "the original and the copy");
    assert!(copies.iter().all(|m| mail_attachment(m, "application/pdf").is_some()));
    // An old receipt, behind fifty newer ones, is sent again with its PDF too.
    for n in 0..50 {
        w.call("POST", "/v1/payments", json!({ "client_id": format!("many-{n}"), "account": wallet, "amount": "1", "currency": "USD", "method": "cash" }));
    }
    w.step();
    let first = receipts[1]["id"].as_u64().unwrap();
    w.call("POST", &format!("/v1/receipts/{first}/email"), json!({}));
    w.step();
    let copies: Vec<String> = w.mails().into_iter().filter(|m| m.contains("RV-0-000001")).collect();
    assert_eq!(copies.len(), 2, "the original and the copy");
    assert!(
        copies.iter().all(|m| mail_attachment(m, "application/pdf").is_some()),
        "the copy of an old receipt carries its PDF"
    );
    // And as a PDF through the API.
    let reply = w.api.get(&format!("/v1/receipts/{id}/pdf")).unwrap();
    assert_eq!((reply.status, reply.header("content-type")), (200, Some("application/pdf")));
    assert!(pdf_text(&reply.body).contains("RV-0-000002"));
    // Another tenant's receipt is not found.
    let (other, _) = w.customer("other", None);
    let opened = purse::open_store(&w.url).unwrap();
    let (_, secret) =
        purse::keys::create(&opened, "theirs", Role::Customer(purse_core::PartyId(other)), Scope::ReadWrite, w.now())
            .unwrap();
    let mut theirs = Client::new(&format!("http://{}", w.servers[0].addr), Some(secret)).unwrap();
    assert_eq!(theirs.get(&format!("/v1/receipts/{id}/pdf")).unwrap().status, 404);
    assert_eq!(theirs.send("POST", &format!("/v1/receipts/{id}/email"), &json!({}), "k").unwrap().status, 404);
}

/// Issue 20's story: a prepaid call centre with 5.00 at 0.10 a minute (60/60) calls five
/// minutes at a time. Its calls' reservations and charges cross the auto-recharge threshold
/// (2.00) like any charge: its card is charged 10.00, and the next call is granted in full.
#[test]
fn issue_20_a_call_centre_calls_on_through_auto_recharge_by_card() {
    let stripe = LocalStripe::start();
    let mut w = World::new(&sqlite_url(), Some(&stripe));
    let (c, wallet) = w.customer("callcentre", None);
    w.pay(wallet, "5.00");
    w.save_card(c, VISA);
    w.call(
        "PUT",
        &format!("/v1/customers/{c}/recharge-settings"),
        json!({ "enabled": true, "method": "card", "threshold": "2", "recharge_amount": "10" }),
    );
    let plan = w.call("POST", "/v1/rate-plans", json!({ "name": "Voice", "currency": "USD" }))["id"].as_u64().unwrap();
    w.call(
        "POST",
        &format!("/v1/rate-plans/{plan}/import"),
        json!({ "csv": "prefix,price,increments\n*,0.10,60/60", "service": "voice" }),
    );
    w.call("PUT", &format!("/v1/customers/{c}/rate-plan"), json!({ "plan": plan }));
    for call in 0..15 {
        let mut s = w.call("POST", "/v1/sessions", json!({ "account": wallet, "service": "voice", "max_units": 300 }));
        let id = s["id"].as_u64().unwrap();
        let mut sequence = 0;
        while !s["final"].as_bool().unwrap() {
            sequence += 1;
            let used = s["granted"].as_u64().unwrap();
            s = w.call("POST", &format!("/v1/sessions/{id}/update"), json!({ "sequence": sequence, "used": used }));
        }
        assert_eq!(s["granted"], 300, "call {call} is granted its five minutes: {s}");
        w.call("POST", &format!("/v1/sessions/{id}/terminate"), json!({ "used": 300 }));
        // Between calls the worker sees the balance below the threshold and recharges.
        w.step();
    }
    let recharges = w.recharges(c);
    assert!(!recharges.is_empty() && recharges.iter().all(|r| r["status"] == "succeeded"), "{recharges:?}");
    // 5.00 paid, 15 calls of 0.50, and 10.00 per recharge.
    let expected = 500 - 15 * 50 + 1000 * recharges.len() as i64;
    assert_eq!(units(&w.balance(wallet)), expected);
}

/// Issue 23: a reseller with no e-mail of its own does not leave the master-wallet notice
/// undelivered: the operator's address is told instead.
#[test]
fn issue_23_a_master_wallet_notice_of_a_reseller_without_e_mail_goes_to_the_operator() {
    let options = common::world::Options {
        alerts: purse_app::notifier::AlertConfig {
            operator_email: Some("ops@operator.test".into()),
            ..purse_app::notifier::AlertConfig::default()
        },
        recharges: true,
        ..Default::default()
    };
    let mut w = World(common::world::World::with(&sqlite_url(), options));
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "quiet", "name": "Quiet" }))["id"].as_u64().unwrap();
    short_master_recharge(&mut w, reseller);
    w.step();
    assert!(
        w.mails().iter().any(|m| m.contains("To: ops@operator.test") && m.contains("master wallet")),
        "the operator is told: {:?}",
        w.mails()
    );
}

#[test]
fn issue_23_a_cap_that_holds_back_a_due_recharge_is_told_once_a_day() {
    let mut w = World::new(&sqlite_url(), None);
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "capped", "name": "Capped" }))["id"].as_u64().unwrap();
    let (master, c, wallet) = short_master_recharge(&mut w, reseller);
    w.call("PUT", &format!("/v1/customers/{c}/alert-settings"), json!({ "billing_email": "child@capped.test" }));
    w.pay(master, "100");
    w.clock.set(w.now().plus_micros(DAY));
    w.step();
    assert_eq!(w.balance(wallet), "29.00", "one recharge today: {:?}", w.recharges(c));
    let capped = |w: &mut World| {
        w.get(&format!("/v1/notifications?customer={c}"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "recharge_capped")
            .count()
    };
    assert_eq!(capped(&mut w), 0);
    // Below the threshold again the same day: the daily limit of one holds the recharge back,
    // and the customer is told why, once.
    w.charge(wallet, "20");
    w.step();
    w.charge(wallet, "1");
    w.step();
    assert_eq!(w.balance(wallet), "8.00", "no second recharge today");
    // The settings say which cap holds it back, and what is used of each.
    let caps = w.get(&format!("/v1/customers/{c}/recharge-settings"))["caps"].clone();
    assert_eq!(
        (caps["held_back"].as_str(), caps["today"].as_u64(), caps["per_day_max"].as_u64()),
        (Some("daily_limit"), Some(1), Some(1)),
        "{caps}"
    );
    assert_eq!(capped(&mut w), 1, "told once: {}", w.get(&format!("/v1/notifications?customer={c}")));
    w.step();
    assert!(
        w.mails().iter().any(|m| m.contains("To: child@capped.test") && m.contains("held back")),
        "the e-mail says why: {:?}",
        w.mails()
    );
    // The next day the recharge runs again.
    w.clock.set(w.now().plus_micros(DAY));
    w.charge(wallet, "1");
    w.step();
    assert_eq!(w.balance(wallet), "37.00", "{:?}", w.recharges(c));
    assert_eq!(capped(&mut w), 1);
}

/// Issue 24: a card payment is refunded in part through Stripe; a process that dies after
/// Stripe refunded and before the ledger booked it is finished by the next, which finds
/// Stripe's refund instead of making another: one refund at Stripe, one posting, per refund.
#[test]
fn issue_24_a_card_payment_is_refunded_through_stripe_once_even_when_the_process_dies_after_stripe() {
    let stripe = LocalStripe::start();
    for dies in [false, true] {
        for url in both_backends(&format!("issue_24_card_refund_{dies}")) {
            // The server's own card payments stop after Stripe refunded when `dies`.
            let mut payments = stripe.config();
            payments.fault = dies.then_some((Fault::AfterRefund, false));
            let options = common::world::Options { payments, recharges: true, ..Default::default() };
            let mut w = World(common::world::World::with(&url, options));
            w.recharger.set_fault(None);
            let (c, wallet) = w.customer(if dies { "refund-dies" } else { "refund-card" }, None);
            w.save_card(c, VISA);
            w.call("POST", &format!("/v1/customers/{c}/pay-now"), json!({ "amount": "30" }));
            w.step();
            let receipt = w.get(&format!("/v1/receipts?customer={c}"))["data"][0].clone();
            assert_eq!(receipt["method"], "card", "{receipt}");
            let receipt_id = receipt["id"].as_u64().unwrap();
            let intent = w.recharges(c).last().unwrap()["payment_intent"].as_str().unwrap().to_owned();
            let at_stripe = || {
                stripe.get(&format!("/v1/refunds?payment_intent={intent}&limit=100"))["data"]
                    .as_array()
                    .unwrap()
                    .clone()
            };
            let (status, refund) = w.refused(
                "POST",
                "/v1/refunds",
                json!({ "receipt": receipt_id, "amount": "10.00", "reason": "unused" }),
            );
            assert_eq!(at_stripe().len(), 1, "Stripe refunded");
            assert_eq!(at_stripe()[0]["amount"], 1000, "10.00 is 1000 cents");
            if dies {
                assert_eq!(status, 500, "{refund}");
                assert_eq!(w.balance(wallet), "30.00", "not booked before the ledger knows Stripe's refund");
                // While it is pending it counts: 20.00 is left to refund, not 30.00.
                let (status, body) = w.refused(
                    "POST",
                    "/v1/refunds",
                    json!({ "receipt": receipt_id, "amount": "20.01", "reason": "too much" }),
                );
                assert_eq!((status, body["error"]["code"].as_str()), (422, Some("above_refundable")), "{body}");
                // The next process, once the lease is over, finds Stripe's refund and books it once.
                assert_eq!(w.recharger.finish_refunds(wall_us() + 61 * 1_000_000).unwrap(), 1);
                assert_eq!(w.recharger.finish_refunds(wall_us() + 122 * 1_000_000).unwrap(), 0);
            } else {
                assert_eq!((status, refund["status"].as_str()), (201, Some("succeeded")), "{refund}");
            }
            assert_eq!(w.balance(wallet), "20.00");
            assert_eq!(at_stripe().len(), 1, "never refunded twice at Stripe");
            let list = w.get(&format!("/v1/refunds?customer={c}"));
            assert_eq!(list["data"][0]["status"], "succeeded", "{list}");
            let journal = w.get(&format!("/v1/accounts/{wallet}/journal?kind=refund"));
            assert_eq!(journal["data"].as_array().unwrap().len(), 1, "one posting: {journal}");
            drop(w);
        }
    }
}

/// On a server without card payments, a card payment's receipt offers no refund form that
/// could only fail: it says why. A cash payment's receipt still offers it.
#[test]
fn a_card_refund_is_not_offered_where_card_payments_are_not_configured() {
    let mut w = World::new(&sqlite_url(), None);
    let (c, wallet) = w.customer("paid", None);
    for (method, id) in [("card", "by-card"), ("cash", "by-cash")] {
        let payment =
            json!({ "client_id": id, "account": wallet, "amount": "10", "currency": "USD", "method": method });
        w.call("POST", "/v1/payments", payment);
    }
    w.step();
    let receipts = w.call("GET", &format!("/v1/receipts?customer={c}"), Value::Null);
    let mut staff = w.portal(Role::Operator, Scope::ReadWrite);
    let mut seen = Vec::new();
    for receipt in receipts["data"].as_array().unwrap() {
        let (status, page) = staff.get(&format!("/receipts/{}", receipt["id"]));
        assert_eq!(status, 200, "{page}");
        let offered = (page.contains(r#"id="refund-form""#), page.contains(r#"id="refund-needs-cards""#));
        seen.push((receipt["method"].as_str().unwrap().to_owned(), offered));
    }
    seen.sort();
    assert_eq!(seen, [("card".to_owned(), (false, true)), ("cash".to_owned(), (true, false))]);
}
