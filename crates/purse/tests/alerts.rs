//! Low-balance notifications end to end: the API sets profiles and settings, the ledger
//! moves, the worker evaluates and delivers to a real SMTP server (aiosmtpd, installed by
//! `scripts/smtp.sh`) and a real HTTP receiver, with the clock moved by hand so a month
//! passes in seconds. Then real `purse serve` processes: two on one PostgreSQL database, and
//! one killed before it could deliver.

mod common;

use common::served::Served;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::world::MailTo;
use common::*;
use purse::client::Client;
use purse_app::notifier::{AlertConfig, MailConfig, SmtpTls};
use purse_core::{Role, Scope, Timestamp};
use serde_json::{json, Value};

const HOUR: i64 = 3600 * 1_000_000;
const DAY: i64 = 24 * HOUR;

world!();

fn alert_config(smtp_port: u16) -> AlertConfig {
    AlertConfig {
        mail: MailConfig::Smtp {
            host: "127.0.0.1".into(),
            port: smtp_port,
            tls: SmtpTls::None,
            username: None,
            password: None,
        },
        from: "Purse <alerts@purse.test>".into(),
        portal_url: "http://portal.test".into(),
        retry_base_s: 60,
        allow_private_webhooks: true,
        ..AlertConfig::default()
    }
}

impl World {
    fn new(url: &str, config: AlertConfig) -> World {
        let options = common::world::Options { alerts: config, mail: MailTo::Configured, ..Default::default() };
        World(common::world::World::with(url, options))
    }

    fn refused(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let reply = self.api.send(method, path, &body, "k").unwrap();
        (reply.status, reply.json())
    }

    fn customer(&mut self, name: &str, reseller: Option<u64>, billing: &str, limit: Option<&str>) -> (u64, u64) {
        let mut body = json!({ "billing": billing });
        if let Some(r) = reseller {
            body["reseller"] = json!(r);
        }
        if let Some(l) = limit {
            body["credit_limit"] = json!(l);
        }
        self.new_customer(name, body)
    }

    fn pay(&mut self, wallet: u64, amount: &str) {
        self.payment(wallet, amount, "cash");
    }

    fn charge(&mut self, wallet: u64, amount: &str) {
        let id = key();
        self.call(
            "POST",
            "/v1/charges",
            json!({ "client_id": id, "account": wallet, "amount": amount, "currency": "USD", "service": "sms" }),
        );
    }

    fn notifications(&mut self, customer: u64) -> Vec<Value> {
        let mut all =
            self.get(&format!("/v1/notifications?customer={customer}&limit=500"))["data"].as_array().unwrap().clone();
        all.reverse();
        all
    }
}

/// Days since T0 of each notification of `kind`.
fn days(notes: &[Value], kind: &str) -> Vec<i64> {
    notes
        .iter()
        .filter(|n| n["kind"] == kind)
        .map(|n| {
            let at = purse_core::time::parse(n["at"].as_str().unwrap()).unwrap();
            (at.0 - Timestamp::from_secs(T0).0) / DAY
        })
        .collect()
}

#[test]
fn a_simulated_month_sends_exactly_the_expected_messages_and_a_payment_resets_the_count() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "north", "name": "Northwind" }))["id"].as_u64().unwrap();
    w.call(
        "PUT",
        &format!("/v1/resellers/{reseller}/alert-settings"),
        json!({ "billing_email": "billing@northwind.test" }),
    );
    let profile = w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({
            "name": "Standard", "reseller": reseller, "currency": "USD", "max_quantity": 3, "period_hours": 24,
            "user_rule": { "threshold": "20", "notify": true, "emails": ["noc@northwind.test"] },
            "client_rule": { "threshold": "20", "notify": true, "emails": ["cfo@acme.test"] },
            "subject": "{customer}: {available} {currency} left",
        }),
    );
    assert_eq!(profile["period_hours"], 24);
    let (acme, wallet) = w.customer("acme", Some(reseller), "prepaid", None);
    // No profile assigned: the reseller's default (lowest sort order) applies.
    let settings = w.call(
        "PUT",
        &format!("/v1/customers/{acme}/alert-settings"),
        json!({ "billing_email": "Billing@Acme.test", "alert_emails": ["ops@acme.test"] }),
    );
    assert_eq!(settings["effective_profile"], profile["id"]);
    w.pay(wallet, "100");
    w.step();
    // Day 1: a charge takes the available balance to 15, below 20: told at once.
    w.advance(DAY);
    w.charge(wallet, "85");
    w.step();
    assert_eq!(smtp.messages().len(), 5, "user rule: reseller + noc; client rule: billing + cfo + ops");
    // Then hour by hour to day 10: twice more (days 2 and 3), then max quantity holds.
    for _ in 0..(9 * 24) {
        w.advance(HOUR);
    }
    // Day 10: a payment refills; day 12 the balance falls below again.
    w.pay(wallet, "100");
    w.step();
    for _ in 0..48 {
        w.advance(HOUR);
    }
    w.charge(wallet, "101");
    w.step();
    for _ in 0..(18 * 24) {
        w.advance(HOUR);
    }
    let notes = w.notifications(acme);
    assert_eq!(days(&notes, "client"), vec![1, 2, 3, 12, 13, 14]);
    assert_eq!(days(&notes, "user"), vec![1, 2, 3, 12, 13, 14]);
    let expected: BTreeMap<String, usize> = [
        ("billing@acme.test", 6),
        ("billing@northwind.test", 6),
        ("cfo@acme.test", 6),
        ("noc@northwind.test", 6),
        ("ops@acme.test", 6),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(smtp.by_recipient(), expected);
    let first = &smtp.messages()[0];
    assert_eq!(first.subject, "acme: 15.00 USD left");
    assert!(
        notes.iter().all(|n| n["deliveries"].as_array().unwrap().iter().all(|d| d["status"] == "sent")),
        "{notes:?}"
    );
    // The customer's own log leaves out the staff-facing user rule.
    let user_link = smtp.messages().into_iter().find(|m| m.to == "noc@northwind.test").unwrap();
    assert!(user_link.body.contains(&format!("http://portal.test/customers/{acme}/balance")), "{}", user_link.body);
}

#[test]
fn the_inactivity_rule_fires_only_after_the_quiet_period() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({
            "name": "Quiet", "currency": "USD", "max_quantity": 1, "period_hours": 24,
            "inactivity_rule": { "threshold": "50", "inactivity_hours": 72, "notify": true },
        }),
    );
    let (c, wallet) = w.customer("idle", None, "prepaid", None);
    w.call("PUT", &format!("/v1/customers/{c}/alert-settings"), json!({ "billing_email": "idle@c.test" }));
    w.pay(wallet, "40");
    // Below 50 but charged every day for five days: never inactive.
    for _ in 0..5 {
        w.charge(wallet, "1");
        for _ in 0..24 {
            w.advance(HOUR);
        }
    }
    assert!(smtp.messages().is_empty(), "{:?}", smtp.messages());
    // The last charge was 24 hours ago; two more days and an hour is not yet 72 hours.
    for _ in 0..47 {
        w.advance(HOUR);
    }
    assert!(smtp.messages().is_empty());
    w.advance(HOUR);
    assert_eq!(smtp.by_recipient(), BTreeMap::from([("idle@c.test".to_owned(), 1)]));
    assert_eq!(days(&w.notifications(c), "inactivity"), vec![7]);
}

/// A notice that reaches nobody (no e-mail, no webhook) is logged and waits its period, but
/// is not one of the rule's max quantity (notices sent): a billing e-mail given later still
/// gets them. Before, two days without an address used up a max quantity of two.
#[test]
fn a_notice_to_nobody_is_logged_but_not_one_of_the_max_quantity() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "Twice", "currency": "USD", "max_quantity": 2, "period_hours": 24,
                "client_rule": { "threshold": "20", "notify": true } }),
    );
    let (c, wallet) = w.customer("mute", None, "prepaid", None);
    w.pay(wallet, "30");
    w.charge(wallet, "15");
    for _ in 0..(2 * 24) {
        w.advance(HOUR);
    }
    assert!(smtp.messages().is_empty());
    let nobody = days(&w.notifications(c), "client");
    assert_eq!(nobody.len(), 2, "logged once a period: {nobody:?}");
    w.call("PUT", &format!("/v1/customers/{c}/alert-settings"), json!({ "billing_email": "mute@c.test" }));
    for _ in 0..(4 * 24) {
        w.advance(HOUR);
    }
    assert_eq!(smtp.by_recipient(), BTreeMap::from([("mute@c.test".to_owned(), 2)]), "max quantity: two sent");
    assert_eq!(days(&w.notifications(c), "client").len(), 4);
}

#[test]
fn comma_separated_warning_thresholds_fire_once_per_downward_crossing() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    let (c, wallet) = w.customer("warned", None, "prepaid", None);
    // Bad input is refused with the field named, and the settings stay as they were.
    for (body, field) in [
        (json!({ "warning_thresholds": "100, fifty" }), "warning_thresholds"),
        (json!({ "warning_thresholds": "10%" }), "warning_thresholds"),
        (json!({ "billing_email": "not-an-address" }), "billing_email"),
        (json!({ "alert_emails": ["a@b.test", "nope"] }), "alert_emails[1]"),
        (json!({ "profile": 999 }), "profile"),
    ] {
        let (status, reply) = w.refused("PUT", &format!("/v1/customers/{c}/alert-settings"), body);
        assert_eq!((status, reply["error"]["field"].as_str().unwrap()), (422, field), "{reply}");
    }
    w.call(
        "PUT",
        &format!("/v1/customers/{c}/alert-settings"),
        json!({ "billing_email": "w@c.test", "warning_thresholds": "100, 50,10" }),
    );
    let shown = w.get(&format!("/v1/customers/{c}/alert-settings"));
    assert_eq!(shown["warning_thresholds"], "100.00, 50.00, 10.00");
    w.pay(wallet, "150");
    for amount in ["60", "30", "5", "50", "1"] {
        // 90 (crosses 100), 60, 55, 5 (crosses 50 and 10), 4: three warnings.
        w.charge(wallet, amount);
        w.advance(HOUR);
    }
    let warnings = |w: &mut World| -> Vec<String> {
        w.notifications(c)
            .iter()
            .filter(|n| n["kind"] == "warning")
            .map(|n| n["threshold"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(warnings(&mut w), vec!["100.00", "50.00", "10.00"]);
    // Days pass below every level: nothing more. A refill and a new fall warn again.
    for _ in 0..3 {
        w.advance(DAY);
    }
    w.pay(wallet, "200");
    w.charge(wallet, "150");
    w.advance(HOUR);
    assert_eq!(warnings(&mut w), vec!["100.00", "50.00", "10.00", "100.00"]);
    assert_eq!(smtp.messages().len(), 4);
    // Postpaid: a percentage of the permanent credit limit.
    let (p, pw) = w.customer("post", None, "postpaid", Some("1000"));
    w.call(
        "PUT",
        &format!("/v1/customers/{p}/alert-settings"),
        json!({ "billing_email": "p@c.test", "warning_thresholds": "50%" }),
    );
    assert_eq!(w.get(&format!("/v1/customers/{p}/alert-settings"))["warning_levels"], json!(["500.00"]));
    w.charge(pw, "499");
    w.advance(HOUR);
    assert!(warnings_of(&mut w, p).is_empty());
    w.charge(pw, "2");
    w.advance(HOUR);
    assert_eq!(warnings_of(&mut w, p), vec!["500.00"]);
}

fn warnings_of(w: &mut World, c: u64) -> Vec<String> {
    w.notifications(c)
        .iter()
        .filter(|n| n["kind"] == "warning")
        .map(|n| n["threshold"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn webhooks_are_signed_retried_with_one_id_and_an_endpoint_answering_410_is_disabled() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    // Bad URLs are refused with the field named.
    for bad in ["ftp://x.test/", "not a url", "http://u:p@x.test/"] {
        let (status, reply) = w.refused("POST", "/v1/webhook-endpoints", json!({ "url": bad }));
        assert_eq!((status, reply["error"]["field"].as_str().unwrap()), (422, "url"), "{bad}: {reply}");
    }
    let flaky = Receiver::start(vec![500, 503]);
    let gone = Receiver::start(vec![410]);
    let endpoint = w.call("POST", "/v1/webhook-endpoints", json!({ "url": flaky.url }));
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    w.call("POST", "/v1/webhook-endpoints", json!({ "url": gone.url }));
    w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "Hooks", "currency": "USD", "max_quantity": 1, "period_hours": 24, "client_rule": { "threshold": "10", "notify": false } }),
    );
    let (_, wallet) = w.customer("hooked", None, "prepaid", None);
    w.pay(wallet, "20");
    w.charge(wallet, "15");
    w.step(); // the first attempt: 500
    for _ in 0..4 {
        w.advance(60 * 1_000_000); // retries after 60 s, then 120 s
        w.advance(60 * 1_000_000);
    }
    let seen = flaky.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(_, _, s)| *s).collect::<Vec<_>>(),
        vec![500, 503, 200],
        "one event, delivered once after two failures"
    );
    let ids: Vec<&String> = seen.iter().map(|(h, _, _)| &h["webhook-id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "the same id on every attempt: {ids:?}");
    for (headers, body, _) in &seen {
        let ts: i64 = headers["webhook-timestamp"].parse().unwrap();
        assert!(purse_app::notifier::webhook::verify(
            &secret,
            &headers["webhook-id"],
            ts,
            body,
            &headers["webhook-signature"]
        ));
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert!(!purse_app::notifier::webhook::verify(
            &secret,
            &headers["webhook-id"],
            ts,
            &tampered,
            &headers["webhook-signature"]
        ));
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!((event["type"].as_str(), event["data"]["available"].as_str()), (Some("balance.low"), Some("5.00")));
    }
    assert_eq!(gone.seen.lock().unwrap().len(), 1);
    let endpoints = w.get("/v1/webhook-endpoints");
    let states: Vec<(bool, Value)> = endpoints["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["enabled"].as_bool().unwrap(), e["disabled_reason"].clone()))
        .collect();
    assert_eq!(states[0], (true, Value::Null));
    assert!(!states[1].0 && states[1].1.as_str().unwrap().contains("410"), "{states:?}");
}

#[test]
fn profiles_refuse_bad_input_naming_the_field_and_deleting_one_falls_back_to_the_default() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    let base = json!({ "name": "P", "currency": "USD", "max_quantity": 3, "period_hours": 24, "client_rule": { "threshold": "20" } });
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (with(json!({ "period_hours": -1 })), "period_hours"),
        (with(json!({ "max_quantity": -2 })), "max_quantity"),
        (with(json!({ "currency": "EUR" })), "currency"),
        (with(json!({ "client_rule": { "threshold": "1.234" } })), "client_rule.threshold"),
        (with(json!({ "client_rule": { "threshold": "1", "emails": ["x@y.test", "bad"] } })), "client_rule.emails[1]"),
        (with(json!({ "inactivity_rule": { "threshold": "1" } })), "inactivity_rule.inactivity_hours"),
        (with(json!({ "subject": "Hello {nobody}" })), "subject"),
        (with(json!({ "name": "" })), "name"),
    ] {
        let (status, reply) = w.refused("POST", "/v1/low-balance-profiles", body);
        assert_eq!((status, reply["error"]["field"].as_str().unwrap_or("")), (422, field), "{reply}");
    }
    // Issue 23: every wrong field at once, in the form's order; nothing is saved.
    let all_wrong = with(json!({
        "name": "", "max_quantity": -2, "period_hours": -1,
        "client_rule": { "threshold": "1.234", "emails": ["bad"] },
        "inactivity_rule": { "threshold": "1" }, "subject": "Hello {nobody}",
    }));
    let (status, reply) = w.refused("POST", "/v1/low-balance-profiles", all_wrong);
    let fields: Vec<&str> =
        reply["error"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(
        (status, fields),
        (
            422,
            vec![
                "name",
                "max_quantity",
                "period_hours",
                "client_rule.threshold",
                "client_rule.emails[0]",
                "inactivity_rule.inactivity_hours",
                "subject"
            ]
        ),
        "{reply}"
    );
    assert_eq!(reply["error"]["field"], "name", "the first is also the error's own field");
    assert_eq!(w.get("/v1/low-balance-profiles")["data"].as_array().map(Vec::len), Some(0), "nothing was saved");
    let first = w.call("POST", "/v1/low-balance-profiles", with(json!({ "name": "Default", "sort_order": 1 })))["id"]
        .as_u64()
        .unwrap();
    let second = w.call(
        "POST",
        "/v1/low-balance-profiles",
        with(json!({ "name": "Strict", "sort_order": 5, "client_rule": { "threshold": "500" } })),
    )["id"]
        .as_u64()
        .unwrap();
    let (status, _) = w.refused("POST", "/v1/low-balance-profiles", with(json!({ "name": "default" })));
    assert_eq!(status, 422, "a name is unique per owner");
    let (c, wallet) = w.customer("assigned", None, "prepaid", None);
    w.call("PUT", &format!("/v1/customers/{c}/alert-settings"), json!({ "profile": second }));
    let account = w.get(&format!("/v1/accounts/{wallet}"));
    assert_eq!(account["thresholds"], json!(["500.00"]), "the ledger watches the assigned profile's levels");
    w.call("DELETE", &format!("/v1/low-balance-profiles/{second}"), json!({}));
    let settings = w.get(&format!("/v1/customers/{c}/alert-settings"));
    assert_eq!((settings["profile"].clone(), settings["effective_profile"].as_u64()), (Value::Null, Some(first)));
    assert_eq!(w.get(&format!("/v1/accounts/{wallet}"))["thresholds"], json!(["20.00"]));
}

/// A `purse serve` process with a clock file, e-mail to `smtp_port`.
fn serve(url: &str, clock: &Path, smtp_port: u16) -> Served {
    let port = smtp_port.to_string();
    let env = [
        ("PURSE_CLOCK_FILE", clock.to_str().unwrap()),
        ("PURSE_SMTP_HOST", "127.0.0.1"),
        ("PURSE_SMTP_PORT", port.as_str()),
        ("PURSE_SMTP_TLS", "none"),
        ("PURSE_ALERTS_TICK_MS", "50"),
        ("PURSE_ALERTS_RETRY_BASE_S", "1"),
    ];
    Served::start_with(url, &env)
}

/// A port a connection to is refused at once: a privileged one nothing listens on. (A port
/// the kernel handed out and freed is in the ephemeral range: a connection to it can be
/// given it as its own source port and connect to itself, or another test's server can
/// take it, and an SMTP client then waits 20 s for a greeting.)
fn refused_port() -> u16 {
    (1..1024)
        .find(|p| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *p));
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .expect("a privileged port nothing listens on")
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    common::wait_for(60, what, done);
}

fn operator_key(url: &str) -> String {
    let opened = purse::open_store(url).unwrap();
    purse::keys::create(&opened, "t", Role::Operator, Scope::ReadWrite, Timestamp::from_secs(T0)).unwrap().1
}

#[test]
fn two_processes_on_one_postgresql_send_each_notification_once_and_run_each_daily_sweep_once() {
    let url = pg_url("alerts_two");
    let smtp = Smtp::start();
    let dir = std::env::temp_dir().join(format!("purse-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = dir.join("clock");
    let start = Timestamp::from_secs(T0);
    purse::FileClock::set(&clock, start).unwrap();
    let key = operator_key(&url);
    let servers: Vec<Served> = (0..2).map(|_| serve(&url, &clock, smtp.port)).collect();
    let mut api = Client::new(&servers[0].base(), Some(key)).unwrap();
    let mut call = |method: &str, path: &str, body: Value| {
        let r = api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        assert!(r.status < 300, "{path}: {}", r.json());
        r.json()
    };
    call("POST", "/v1/currencies", json!({ "code": "USD" }));
    call(
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "Daily", "currency": "USD", "max_quantity": 3, "period_hours": 24, "client_rule": { "threshold": "20", "notify": true } }),
    );
    let mut wallets = Vec::new();
    for n in 0..5 {
        let c = call(
            "POST",
            "/v1/customers",
            json!({ "client_id": format!("c{n}"), "name": format!("C{n}"), "billing": "prepaid", "currency": "USD" }),
        );
        let id = c["id"].as_u64().unwrap();
        call(
            "PUT",
            &format!("/v1/customers/{id}/alert-settings"),
            json!({ "billing_email": format!("c{n}@two.test") }),
        );
        wallets.push(c["wallet"].as_u64().unwrap());
    }
    for (n, w) in wallets.iter().enumerate() {
        call(
            "POST",
            "/v1/payments",
            json!({ "client_id": format!("p{n}"), "account": w, "amount": "30", "currency": "USD", "method": "cash" }),
        );
        call(
            "POST",
            "/v1/charges",
            json!({ "client_id": format!("ch{n}"), "account": w, "amount": "25", "currency": "USD" }),
        );
    }
    // Five days in steps of six hours, each step waited out by both processes.
    for step in 1..=20 {
        purse::FileClock::set(&clock, start.plus_micros(step * 6 * HOUR)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for("15 messages", || smtp.messages().len() >= 15);
    stays(Duration::from_secs(1), "no message beyond the 15", || smtp.messages().len() == 15);
    let counts = smtp.by_recipient();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|n| *n == 3), "each customer exactly max quantity: {counts:?}");
    let runs = api.get("/v1/scheduler/runs?limit=100").unwrap().json();
    let keys: Vec<&str> = runs["data"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "each day's sweep once: {runs}");
    assert!(keys.len() >= 5, "a sweep every simulated day: {runs}");
}

#[test]
fn a_process_killed_before_delivering_loses_no_notification() {
    let url = sqlite_url();
    let dir = std::env::temp_dir().join(format!("purse-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = dir.join("clock");
    purse::FileClock::set(&clock, Timestamp::from_secs(T0)).unwrap();
    let key = operator_key(&url);
    // Nothing listens on this port: the notifications are recorded, not delivered.
    let dead = refused_port();
    let mut served = serve(&url, &clock, dead);
    // The day's sweep first: run after the customer below is made and before its e-mails
    // are set (a busy machine), it records a notice to nobody that uses the profile's one
    // notice a day, and the charge's crossing below then sends none.
    let said = served.collect_log();
    wait_for("the day's sweep", || said.lock().unwrap().iter().any(|l| l.contains("daily sweep")));
    let mut api = Client::new(&served.base(), Some(key)).unwrap();
    let call = |api: &mut Client, method: &str, path: &str, body: Value| {
        let r = api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        assert!(r.status < 300, "{path}: {}", r.json());
        r.json()
    };
    call(&mut api, "POST", "/v1/currencies", json!({ "code": "USD" }));
    call(
        &mut api,
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "K", "currency": "USD", "max_quantity": 1, "period_hours": 24, "client_rule": { "threshold": "20", "notify": true } }),
    );
    let c = call(
        &mut api,
        "POST",
        "/v1/customers",
        json!({ "client_id": "k", "name": "K", "billing": "prepaid", "currency": "USD" }),
    );
    let (id, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    call(
        &mut api,
        "PUT",
        &format!("/v1/customers/{id}/alert-settings"),
        json!({ "billing_email": "k@kill.test", "alert_emails": ["k2@kill.test"] }),
    );
    call(
        &mut api,
        "POST",
        "/v1/payments",
        json!({ "client_id": "p", "account": wallet, "amount": "30", "currency": "USD", "method": "cash" }),
    );
    call(
        &mut api,
        "POST",
        "/v1/charges",
        json!({ "client_id": "c", "account": wallet, "amount": "25", "currency": "USD" }),
    );
    // The low-balance notice recorded and every delivery's attempt finished (its error
    // recorded): a delivery claimed but not yet tried stays leased to the killed process for
    // two minutes, which this test is not about. (Waiting for the deliveries there were
    // let the payment's receipt alone pass before the notice existed: the notice's deliveries
    // were then killed mid-attempt, leased past the wait below.)
    let mut log = Value::Null;
    let attempted = common::wait_until(60, || {
        log = api.get(&format!("/v1/notifications?customer={id}")).unwrap().json();
        log["data"].as_array().is_some_and(|d| {
            let notice =
                d.iter().any(|n| n["event_type"] == "balance.low" && n["deliveries"].as_array().unwrap().len() == 2);
            let deliveries: Vec<&Value> = d.iter().flat_map(|n| n["deliveries"].as_array().unwrap()).collect();
            notice && deliveries.iter().all(|d| d["last_error"].is_string())
        })
    });
    assert!(
        attempted,
        "a failed attempt of each delivery of the low-balance notice: not within 60 s; the notifications: {log}; the process said:\n{}",
        served.collect_log().lock().unwrap().join("\n")
    );
    served.kill();
    // The mail server comes up on a port of its own, told to the restarted process: reusing
    // the dead port raced other tests' servers for it (a port free at the start may be
    // taken by the time the mail server binds it).
    let smtp = Smtp::start();
    for (k, v) in &mut served.env {
        if k == "PURSE_SMTP_PORT" {
            *v = smtp.port.to_string();
        }
    }
    purse::FileClock::set(&clock, Timestamp::from_secs(T0).plus_micros(HOUR)).unwrap();
    served.spawn();
    // The clock moves on while waiting, so an attempt that fails while the machine is busy is
    // retried (a frozen clock would leave its retry never due).
    let mut moved = 0;
    let log = served.collect_log();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while smtp.messages().len() < 2 {
        // What the restarted process said and what its deliveries hold, should the messages
        // never come.
        if std::time::Instant::now() >= deadline {
            let deliveries = api.get(&format!("/v1/notifications?customer={id}")).map(|r| r.json());
            panic!(
                "both messages: not within 60 s ({} received); the deliveries: {deliveries:?}; the processes said:\n{}",
                smtp.messages().len(),
                log.lock().unwrap().join("\n")
            );
        }
        moved += 1;
        purse::FileClock::set(&clock, Timestamp::from_secs(T0 + 2 * moved).plus_micros(HOUR)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    stays(Duration::from_millis(500), "no message sent twice", || smtp.messages().len() == 2);
    assert_eq!(smtp.by_recipient(), BTreeMap::from([("k2@kill.test".to_owned(), 1), ("k@kill.test".to_owned(), 1)]));
}

/// Issue 22: a threshold crossed in a process wakes that process's notifier at once. The
/// worker's tick here is a minute, so a message that arrives within the 20 s waited below
/// came from the event, not from a poll. (How fast is measured by `scripts/bench-alerts.sh`,
/// never asserted.)
#[test]
fn issue_22_a_threshold_crossing_wakes_the_notifier_without_waiting_for_its_tick() {
    let url = sqlite_url();
    let smtp = Smtp::start();
    let hooks = Receiver::start(Vec::new());
    let key = operator_key(&url);
    let port = smtp.port.to_string();
    let env = [
        ("PURSE_SMTP_HOST", "127.0.0.1"),
        ("PURSE_SMTP_PORT", port.as_str()),
        ("PURSE_SMTP_TLS", "none"),
        ("PURSE_ALERTS_TICK_MS", "60000"),
        ("PURSE_ALLOW_PRIVATE_WEBHOOKS", "1"),
    ];
    let served = Served::start_with(&url, &env);
    let mut api = Client::new(&served.base(), Some(key)).unwrap();
    let mut call = |method: &str, path: &str, body: Value| {
        let r = api.send(method, path, &body, &purse::ids::uuid_v4(&mut purse::ids::Rng::from_kernel())).unwrap();
        assert!(r.status < 300, "{path}: {}", r.json());
        r.json()
    };
    call("POST", "/v1/currencies", json!({ "code": "USD" }));
    call("POST", "/v1/webhook-endpoints", json!({ "url": hooks.url }));
    let c = call(
        "POST",
        "/v1/customers",
        json!({ "client_id": "woken", "name": "Woken", "billing": "prepaid", "currency": "USD" }),
    );
    let (id, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    call(
        "PUT",
        &format!("/v1/customers/{id}/alert-settings"),
        json!({ "billing_email": "woken@wake.test", "warning_thresholds": "50" }),
    );
    call(
        "POST",
        "/v1/payments",
        json!({ "client_id": "p", "account": wallet, "amount": "100", "currency": "USD", "method": "cash" }),
    );
    call("POST", "/v1/charges", json!({ "client_id": "c", "account": wallet, "amount": "60", "currency": "USD" }));
    common::wait_for(20, "the warning by e-mail and webhook", || {
        smtp.messages().len() == 1 && !hooks.seen.lock().unwrap().is_empty()
    });
    assert!(smtp.messages()[0].subject.starts_with("Low balance: Woken"), "{}", smtp.messages()[0].subject);
    let event: Value = serde_json::from_slice(&hooks.seen.lock().unwrap()[0].1).unwrap();
    assert_eq!((event["data"]["rule"].as_str(), event["data"]["available"].as_str()), (Some("warning"), Some("40.00")));
}

/// Issue 22: the periodic evaluation takes customers a page (1,000) at a time with their
/// accounts, so a million customers never sit in memory at once; every page is evaluated.
#[test]
fn issue_22_the_periodic_evaluation_reaches_customers_on_every_page() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    let customers: Vec<u64> = (0..1_003).map(|n| w.customer(&format!("paged-{n}"), None, "prepaid", None).0).collect();
    // The profile comes after the customers, at zero balance: nothing crosses, so only the
    // periodic evaluation can notice them.
    w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "Paged", "currency": "USD", "max_quantity": 1, "period_hours": 24, "client_rule": { "threshold": "10", "notify": false } }),
    );
    w.advance(2 * 60 * 1_000_000);
    for c in [customers[0], customers[999], customers[1_000], customers[1_002]] {
        let kinds: Vec<Value> = w.notifications(c).iter().map(|n| n["kind"].clone()).collect();
        assert_eq!(kinds, vec![json!("client")], "customer {c}");
    }
}

/// Issue 23: Low Balance Profiles are listed in their sort order (the order the one in force
/// is chosen in), not in the order they were made.
#[test]
fn issue_23_profiles_are_listed_by_their_sort_order() {
    let smtp = Smtp::start();
    let mut w = World::new(&sqlite_url(), alert_config(smtp.port));
    for (name, order) in [("Late", 5), ("Early", 1), ("Middle", 3)] {
        w.call(
            "POST",
            "/v1/low-balance-profiles",
            json!({ "name": name, "currency": "USD", "sort_order": order, "max_quantity": 1, "period_hours": 24, "client_rule": { "threshold": "10", "notify": true } }),
        );
    }
    let names: Vec<String> = w.get("/v1/low-balance-profiles")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .filter(|n| ["Late", "Early", "Middle"].contains(&n.as_str()))
        .collect();
    assert_eq!(names, vec!["Early", "Middle", "Late"]);
}
