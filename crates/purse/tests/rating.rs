//! Issue 20: rating and real-time charging sessions, through the API, on both backends.
//!
//! - Rating agrees with a reference model (longest prefix in force, increments, minimum,
//!   connection fee, one rounding up) on random decks and usage.
//! - A deck with bad lines imports nothing and names every bad line; export reads back.
//! - 50 sessions started at once on a balance that pays for ten minutes get at most ten
//!   minutes in total, and the money charged is exactly what was used.
//! - A prepaid call centre with 5.00 at 0.10/min (60/60) calls until the balance stops the
//!   last call on time; sessions are in the database, so they carry on after a restart.
//! - A session not heard from is closed by the expiry pass and charged what was granted.

mod common;

use std::sync::Arc;

use common::app::{Auth, InProcess, Reply};
use common::served::{operator_key, Served};
use common::*;
use purse_core::{PartyId, Role, Scope};
use serde_json::{json, Value};

/// Runs `f` with a shop on `url`, on a runtime of its own; the shop (and its database
/// connections) is dropped after the runtime, as PostgreSQL's blocking client needs.
fn with_shop<T>(url: &str, f: impl AsyncFnOnce(Arc<Shop>) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let shop = Arc::new(Shop::new(url));
    let out = runtime.block_on(f(shop.clone()));
    drop(runtime);
    drop(shop);
    out
}

fn ok(r: &Reply, what: &str) -> Value {
    assert!(r.status.is_success(), "{what}: {} {}", r.status, r.body);
    r.body.clone()
}

struct Shop {
    app: Arc<InProcess>,
    op: Auth,
}

impl Shop {
    fn new(url: &str) -> Shop {
        let app = Arc::new(InProcess::on(url));
        let op = app.operator();
        Shop { app, op }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Reply {
        self.app.call(&self.op, method, path, if method == "GET" { None } else { Some(&body) }).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        ok(&self.call("POST", path, body).await, path)
    }

    async fn setup(&self, scale: u32) {
        let r = self.call("POST", "/v1/currencies", json!({ "code": "USD", "scale": scale })).await;
        assert!(r.status.is_success() || r.status == 409 || r.status == 422, "{}", r.body);
    }

    /// A prepaid customer with `funds`, and its wallet.
    async fn customer(&self, funds: &str) -> (u64, u64) {
        let c = self
            .post("/v1/customers", json!({ "client_id": self.app.fresh("c"), "name": "Call centre", "billing": "prepaid", "currency": "USD" }))
            .await;
        let (id, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
        if funds != "0" {
            self.post(
                "/v1/payments",
                json!({ "client_id": self.app.fresh("p"), "account": wallet, "amount": funds, "currency": "USD", "method": "cash" }),
            )
            .await;
        }
        (id, wallet)
    }

    async fn plan(&self, csv: &str, service: &str) -> u64 {
        let plan = self.post("/v1/rate-plans", json!({ "name": self.app.fresh("Plan"), "currency": "USD" })).await;
        let id = plan["id"].as_u64().unwrap();
        self.post(&format!("/v1/rate-plans/{id}/import"), json!({ "csv": csv, "service": service })).await;
        id
    }

    async fn give(&self, customer: u64, plan: u64) {
        ok(
            &self.call("PUT", &format!("/v1/customers/{customer}/rate-plan"), json!({ "plan": plan })).await,
            "give plan",
        );
    }

    async fn available(&self, wallet: u64) -> String {
        ok(&self.call("GET", &format!("/v1/accounts/{wallet}/spendable"), Value::Null).await, "spendable")["available"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

// ------------------------------------------------------------------ the reference model

#[derive(Clone, Debug)]
struct ModelRate {
    prefix: String,
    /// Billionths.
    price: i128,
    fee: i128,
    minimum: i128,
    first: u64,
    next: u64,
    from: i64,
}

/// The model: the longest prefix with a version in force, by comparing strings; units billed
/// by stepping one increment at a time; the amount as a rational rounded up once.
fn model_cost(deck: &[ModelRate], destination: &str, at: i64, quantity: u64, unit: u64, scale: u32) -> Option<i64> {
    let rate = deck
        .iter()
        .filter(|r| (r.prefix == "*" || destination.starts_with(&r.prefix)) && r.from <= at)
        .max_by_key(|r| (if r.prefix == "*" { 0 } else { r.prefix.len() }, r.from))?;
    let mut billed = 0;
    if quantity > 0 {
        billed = rate.first;
        while billed < quantity {
            billed += rate.next;
        }
    }
    if billed == 0 {
        return Some(0);
    }
    let per_minor = 10_i128.pow(9 - scale);
    let n = rate.fee * i128::from(unit) + rate.price * i128::from(billed);
    let d = i128::from(unit) * per_minor;
    let usage = (n + d - 1) / d;
    let minimum = (rate.minimum + per_minor - 1) / per_minor;
    Some(usage.max(minimum) as i64)
}

fn decimal(billionths: i128) -> String {
    format!("{}.{:09}", billionths / 1_000_000_000, billionths % 1_000_000_000)
}

fn issue_20_rating_agrees_with_the_model(url: &str) {
    with_shop(url, async |shop| {
        shop.setup(4).await;
        let t0 = shop.app.state.now().0 / 1_000_000;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ url.len() as u64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        // A random deck: prefixes of 1–6 digits, some with a later version, a fallback.
        let mut deck = Vec::new();
        let mut csv = String::from("prefix,description,price,connection_fee,minimum,increments,effective_from\n");
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let prefix = if i == 0 {
                "*".to_owned()
            } else {
                let len = 1 + rnd(6) as usize;
                (0..len).map(|_| char::from(b'0' + rnd(10) as u8)).collect()
            };
            let versions = 1 + rnd(2);
            for v in 0..versions {
                let from = t0 - 86_400 + (v as i64) * (rnd(3) as i64 + 1) * 3_600;
                if !seen.insert((prefix.clone(), from)) {
                    continue;
                }
                let r = ModelRate {
                    prefix: prefix.clone(),
                    price: 1 + i128::from(rnd(300_000_000)),
                    fee: i128::from(rnd(2) * rnd(50_000_000)),
                    minimum: i128::from(rnd(2) * rnd(80_000_000)),
                    first: [1, 30, 60][rnd(3) as usize],
                    next: [1, 6, 60][rnd(3) as usize],
                    from,
                };
                csv.push_str(&format!(
                    "{},Zone {i},{},{},{},{}/{},{}\n",
                    r.prefix,
                    decimal(r.price),
                    decimal(r.fee),
                    decimal(r.minimum),
                    r.first,
                    r.next,
                    purse_core::time::format(purse_core::Timestamp::from_secs(r.from))
                ));
                deck.push(r);
            }
        }
        let plan = shop.plan(&csv, "voice").await;
        let (customer, wallet) = shop.customer("100000").await;
        shop.give(customer, plan).await;
        for _ in 0..150 {
            let destination: String = (0..(3 + rnd(10))).map(|_| char::from(b'0' + rnd(10) as u8)).collect();
            let at = t0 - 86_400 + rnd(86_400 + 10_000) as i64;
            let quantity = 1 + rnd(4) * rnd(1_000);
            let want = model_cost(&deck, &destination, at, quantity, 60, 4).expect("the fallback matches");
            let r = shop
                .post(
                    "/v1/usage",
                    json!({
                        "client_id": shop.app.fresh("u"), "account": wallet, "service": "voice",
                        "destination": format!("+{destination}"), "quantity": quantity,
                        "at": purse_core::time::format(purse_core::Timestamp::from_secs(at)),
                    }),
                )
                .await;
            let t = ok(&shop.call("GET", &format!("/v1/transfers/{}", r["transfer"]), Value::Null).await, "transfer");
            let got = purse_core::money::parse_units(t["amount"].as_str().unwrap(), 4).unwrap();
            assert_eq!(got, want, "{destination} at {at}, {quantity} s: {}", t["metadata"]);
            let rated = &t["metadata"]["rated"];
            assert_eq!(rated["quantity"], quantity);
        }
        // Usage that matches no rate (another service) is refused, naming why.
        let r = shop
            .call("POST", "/v1/usage", json!({ "client_id": shop.app.fresh("u"), "account": wallet, "service": "sms", "destination": "44", "quantity": 1 }))
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.error().0, "no_rate");
        assert_eq!(r.body["error"]["field"], "destination");
        // …and kept, where staff and the customer see it.
        let unrated =
            ok(&shop.call("GET", &format!("/v1/usage/unrated?customer={customer}"), Value::Null).await, "unrated");
        assert_eq!(unrated["data"].as_array().unwrap().len(), 1, "{unrated}");
        assert_eq!(unrated["data"][0]["service"], "sms");
        assert!(unrated["data"][0]["reason"].as_str().unwrap().contains("no rate of plan"), "{unrated}");
    });
}

#[test]
fn issue_20_rating_agrees_with_a_reference_model_on_sqlite() {
    issue_20_rating_agrees_with_the_model(&sqlite_url());
}

#[test]
fn issue_20_rating_agrees_with_a_reference_model_on_postgres() {
    issue_20_rating_agrees_with_the_model(&pg_url("rating_model"));
}

#[test]
fn issue_20_a_deck_with_bad_lines_imports_nothing_and_names_each_line() {
    with_shop(&sqlite_url(), async |shop| {
        shop.setup(2).await;
        let plan = shop.plan("prefix,price,increments\n44,0.10,60/60\n", "voice").await;
        let bad = "prefix,price,increments\n447,0.20,60/60\n44x,0.10,1/1\n448,-1,1/1\n449,0.1,0/5\n450,0.1\n";
        let r = shop
            .call("POST", &format!("/v1/rate-plans/{plan}/import"), json!({ "csv": bad, "service": "voice" }))
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap().to_owned();
        for needle in [
            "line 3: prefix",
            "line 4: price",
            "line 5: increments",
            "line 6: it has 2 fields where the header line has 3",
            "nothing was imported",
        ] {
            assert!(message.contains(needle), "{needle} not in {message}");
        }
        // A column named twice is refused, not read from one of the two.
        let twice = "prefix,price,Price,increments\n447,0.10,0.20,60/60\n";
        let r = shop
            .call("POST", &format!("/v1/rate-plans/{plan}/import"), json!({ "csv": twice, "service": "voice" }))
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("\"Price\" is named twice"), "{}", r.body);
        let p = ok(&shop.call("GET", &format!("/v1/rate-plans/{plan}"), Value::Null).await, "plan");
        assert_eq!(p["rates"], 1, "nothing of the bad decks was kept");
        // Export reads back as the same rates.
        let r = shop.app.call(&shop.op, "GET", &format!("/v1/rate-plans/{plan}/export"), None).await;
        let text = r.text();
        assert!(text.starts_with("service,prefix,description,price"), "{text}");
        let again = shop.plan(&text, "voice").await;
        let a = ok(&shop.call("GET", &format!("/v1/rate-plans/{plan}"), Value::Null).await, "a")["data"].clone();
        let b = ok(&shop.call("GET", &format!("/v1/rate-plans/{again}"), Value::Null).await, "b")["data"].clone();
        assert_eq!(a, b);
        // A customer sees its own plan, not another's; it may not import.
        let (customer, _) = shop.customer("0").await;
        shop.give(customer, plan).await;
        let own = shop.app.key(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        assert_eq!(shop.app.call(&own, "GET", &format!("/v1/rate-plans/{plan}"), None).await.status, 200);
        assert_eq!(shop.app.call(&own, "GET", &format!("/v1/rate-plans/{again}"), None).await.status, 404);
        let r = shop
            .app
            .call(&own, "POST", &format!("/v1/rate-plans/{plan}/import"), Some(&json!({ "csv": "prefix,price\n1,1" })))
            .await;
        assert_eq!(r.status, 403);
    });
}

/// Runs a session to its end: updates every `step` units until the grant is final, then
/// terminates with what was granted. Returns the units used.
async fn call_until_final(shop: &Shop, session: Value, step: u64) -> u64 {
    let id = session["id"].as_u64().unwrap();
    let mut s = session;
    let mut sequence = 0;
    while !s["final"].as_bool().unwrap() {
        sequence += 1;
        let used = s["granted"].as_u64().unwrap().min(s["used"].as_u64().unwrap() + step);
        s = ok(
            &shop
                .call("POST", &format!("/v1/sessions/{id}/update"), json!({ "sequence": sequence, "used": used }))
                .await,
            "update",
        );
    }
    let used = s["granted"].as_u64().unwrap();
    let end =
        ok(&shop.call("POST", &format!("/v1/sessions/{id}/terminate"), json!({ "used": used })).await, "terminate");
    assert_eq!(end["status"], "ended");
    used
}

fn issue_20_fifty_calls(url: &str) {
    with_shop(url, async |shop| {
        shop.setup(2).await;
        let plan = shop.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let (customer, wallet) = shop.customer("1.00").await;
        shop.give(customer, plan).await;
        let mut calls = Vec::new();
        for _ in 0..50 {
            let shop = shop.clone();
            calls.push(tokio::spawn(async move {
                let r = shop
                    .call(
                        "POST",
                        "/v1/sessions",
                        json!({ "account": wallet, "service": "voice", "destination": "4420" }),
                    )
                    .await;
                if r.status == 422 {
                    assert_eq!(r.error().0, "insufficient_funds", "{}", r.body);
                    return 0;
                }
                let s = ok(&r, "authorize");
                call_until_final(&shop, s, 60).await
            }));
        }
        let mut total = 0;
        for c in calls {
            total += c.await.unwrap();
        }
        assert!(total <= 600, "{total} s granted and used on a balance that pays for 600");
        assert_eq!(total, 600, "the whole balance is used");
        assert_eq!(shop.available(wallet).await, "0.00");
    });
}

#[test]
fn issue_20_fifty_calls_at_once_share_a_balance_that_pays_for_ten_minutes_on_sqlite() {
    issue_20_fifty_calls(&sqlite_url());
}

#[test]
fn issue_20_fifty_calls_at_once_share_a_balance_that_pays_for_ten_minutes_on_postgres() {
    issue_20_fifty_calls(&pg_url("rating_fifty"));
}

#[test]
fn issue_20_a_prepaid_call_centre_calls_until_the_balance_stops_the_last_call_on_time() {
    let url = sqlite_url();
    let (wallet, session) = with_shop(&url, async |shop| {
        shop.setup(2).await;
        let plan = shop.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let (customer, wallet) = shop.customer("5.00").await;
        shop.give(customer, plan).await;
        // Nine calls of five minutes, each updated every minute: 4.50.
        for _ in 0..9 {
            let s = shop
                .post(
                    "/v1/sessions",
                    json!({ "account": wallet, "service": "voice", "destination": "4420", "max_units": 300 }),
                )
                .await;
            assert_eq!(call_until_final(&shop, s, 60).await, 300);
        }
        assert_eq!(shop.available(wallet).await, "0.50");
        // The tenth call wants ten minutes; the money pays for five: the fifth grant is final.
        let s =
            shop.post("/v1/sessions", json!({ "account": wallet, "service": "voice", "destination": "4420" })).await;
        let id = s["id"].as_u64().unwrap();
        let s = ok(
            &shop.call("POST", &format!("/v1/sessions/{id}/update"), json!({ "sequence": 1, "used": 45 })).await,
            "update",
        );
        assert_eq!(s["charged"], "0.10");
        assert_eq!(s["granted"], 120);
        (wallet, id)
    });
    // Sessions are in the database: a new process carries the call on.
    with_shop(&url, async |shop| {
        let mut sequence = 1;
        let mut s = ok(&shop.call("GET", &format!("/v1/sessions/{session}"), Value::Null).await, "session");
        while !s["final"].as_bool().unwrap() {
            sequence += 1;
            let used = s["granted"].as_u64().unwrap();
            s = ok(
                &shop
                    .call(
                        "POST",
                        &format!("/v1/sessions/{session}/update"),
                        json!({ "sequence": sequence, "used": used }),
                    )
                    .await,
                "update",
            );
        }
        assert_eq!(s["granted"], 300, "five minutes in all: {s}");
        // A repeated update replays; an older one is refused.
        let again = ok(
            &shop
                .call("POST", &format!("/v1/sessions/{session}/update"), json!({ "sequence": sequence, "used": 300 }))
                .await,
            "replay",
        );
        assert_eq!(again, s);
        let r =
            shop.call("POST", &format!("/v1/sessions/{session}/update"), json!({ "sequence": 1, "used": 300 })).await;
        assert_eq!(r.error().0, "stale_sequence");
        let end =
            ok(&shop.call("POST", &format!("/v1/sessions/{session}/terminate"), json!({ "used": 300 })).await, "end");
        assert_eq!(end["charged"], "0.50");
        assert_eq!(shop.available(wallet).await, "0.00");
        // The next call is refused: not even the first minute is paid for.
        let r = shop
            .call("POST", "/v1/sessions", json!({ "account": wallet, "service": "voice", "destination": "4420" }))
            .await;
        assert_eq!(r.status, 422);
        assert_eq!(r.error().0, "insufficient_funds");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("0.10"), "{}", r.body);
    });
}

#[test]
fn issue_20_a_session_not_heard_from_is_closed_and_charged_what_was_granted() {
    with_shop(&sqlite_url(), async |shop| {
        shop.setup(2).await;
        let plan = shop.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let (customer, wallet) = shop.customer("1.00").await;
        shop.give(customer, plan).await;
        // The customer's webhook endpoint is told when Purse closes one of its calls.
        let own = shop.app.key(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let hook = json!({ "url": "http://127.0.0.1:9/calls" });
        assert_eq!(shop.app.call(&own, "POST", "/v1/webhook-endpoints", Some(&hook)).await.status, 201);
        let granted = shop
            .post("/v1/sessions", json!({ "account": wallet, "service": "voice", "ttl_seconds": 30, "slice": 120 }))
            .await;
        let reported = shop
            .post(
                "/v1/sessions",
                json!({ "account": wallet, "service": "voice", "ttl_seconds": 30, "on_expiry": "reported" }),
            )
            .await;
        assert_eq!(shop.available(wallet).await, "0.70");
        let app = shop.app.state.clone();
        let closed = tokio::task::spawn_blocking(move || app.expire_sessions().unwrap().len()).await.unwrap();
        assert_eq!(closed, 0, "nothing expires before its time");
        shop.app.clock.advance_micros(31_000_000);
        let app = shop.app.state.clone();
        let closed = tokio::task::spawn_blocking(move || app.expire_sessions().unwrap().len()).await.unwrap();
        assert_eq!(closed, 2);
        let g = ok(&shop.call("GET", &format!("/v1/sessions/{}", granted["id"]), Value::Null).await, "granted");
        assert_eq!((g["status"].as_str(), g["charged"].as_str()), (Some("expired"), Some("0.20")));
        let r = ok(&shop.call("GET", &format!("/v1/sessions/{}", reported["id"]), Value::Null).await, "reported");
        assert_eq!((r["status"].as_str(), r["charged"].as_str()), (Some("expired"), Some("0.00")));
        assert_eq!(shop.available(wallet).await, "0.80");
        let list = ok(&shop.call("GET", &format!("/v1/sessions?customer={customer}"), Value::Null).await, "list");
        assert_eq!(list["data"].as_array().unwrap().len(), 0, "no active session is left");
        let log = ok(&shop.call("GET", &format!("/v1/notifications?customer={customer}"), Value::Null).await, "log");
        let expired: Vec<&Value> =
            log["data"].as_array().unwrap().iter().filter(|n| n["kind"] == "session_expired").collect();
        assert_eq!(expired.len(), 2, "{log}");
        assert_eq!(expired[0]["deliveries"].as_array().unwrap().len(), 1, "one webhook to deliver: {log}");
    });
}

#[test]
fn issue_20_a_retried_authorization_answers_the_same_session_and_reserves_once() {
    with_shop(&sqlite_url(), async |shop| {
        shop.setup(2).await;
        let plan = shop.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let (customer, wallet) = shop.customer("1.00").await;
        shop.give(customer, plan).await;
        let body = json!({ "account": wallet, "service": "voice", "destination": "4420", "slice": 120 });
        let first = shop.app.call_with_key(&shop.op, "POST", "/v1/sessions", Some(&body), Some("call-1")).await;
        assert_eq!(first.status, 201, "{}", first.body);
        let again = shop.app.call_with_key(&shop.op, "POST", "/v1/sessions", Some(&body), Some("call-1")).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.body["id"], first.body["id"]);
        assert_eq!(again.body["granted"], 120);
        assert_eq!(shop.available(wallet).await, "0.80", "reserved once");
    });
}

/// Two processes take turns on one session; each step is taken on the session as the
/// database has it, whatever the process last saw itself.
fn issue_20_two_processes(url: &str) {
    let (session, wallet) = with_shop(url, async |a| {
        a.setup(2).await;
        let plan = a.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let (customer, wallet) = a.customer("5.00").await;
        a.give(customer, plan).await;
        let s = a.post("/v1/sessions", json!({ "account": wallet, "service": "voice" })).await;
        (s["id"].as_u64().unwrap(), wallet)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (a, b) = (Shop::new(url), Shop::new(url));
    async fn update(shop: &Shop, session: u64, sequence: u64, used: u64) -> Value {
        let body = json!({ "sequence": sequence, "used": used });
        ok(&shop.call("POST", &format!("/v1/sessions/{session}/update"), body).await, "update")
    }
    runtime.block_on(async {
        assert_eq!(update(&a, session, 1, 60).await["charged"], "0.10");
        assert_eq!(update(&b, session, 2, 120).await["charged"], "0.20");
        // `a` last wrote the session at its first step; its copy is stale.
        assert_eq!(update(&a, session, 3, 180).await["charged"], "0.30");
        assert_eq!(update(&b, session, 4, 240).await["charged"], "0.40");
        let end =
            ok(&a.call("POST", &format!("/v1/sessions/{session}/terminate"), json!({ "used": 250 })).await, "end");
        assert_eq!(end["charged"], "0.50");
        assert_eq!(a.available(wallet).await, "4.50");
        assert_eq!(b.available(wallet).await, "4.50");
    });
    drop(runtime);
}

#[test]
fn issue_20_two_processes_take_turns_on_one_session_on_sqlite() {
    issue_20_two_processes(&sqlite_url());
}

#[test]
fn issue_20_two_processes_take_turns_on_one_session_on_postgres() {
    issue_20_two_processes(&pg_url("rating_two"));
}

/// A `purse serve` killed with SIGKILL in the middle of calls: the sessions carry on in the
/// restarted process, and what they charge is exact.
#[test]
fn issue_20_sessions_survive_a_sigkill_of_purse_serve() {
    use purse::client::Client;
    let url = sqlite_url();
    let key = operator_key(&url);
    let mut served = Served::start(&url);
    let mut api = Client::new(&served.base(), Some(key.clone())).unwrap();
    let mut n = 0;
    let mut call = |api: &mut Client, method: &str, path: &str, body: Value| {
        n += 1;
        let r = api.send(method, path, &body, &format!("k{n}")).unwrap();
        assert!(r.status < 300, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        r.json()
    };
    call(&mut api, "POST", "/v1/currencies", json!({ "code": "USD", "scale": 2 }));
    let plan =
        call(&mut api, "POST", "/v1/rate-plans", json!({ "name": "Voice", "currency": "USD" }))["id"].as_u64().unwrap();
    call(
        &mut api,
        "POST",
        &format!("/v1/rate-plans/{plan}/import"),
        json!({ "csv": "prefix,price,increments\n*,0.10,60/60", "service": "voice" }),
    );
    let c = call(
        &mut api,
        "POST",
        "/v1/customers",
        json!({ "client_id": "c", "name": "C", "billing": "prepaid", "currency": "USD" }),
    );
    let (customer, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    call(
        &mut api,
        "POST",
        "/v1/payments",
        json!({ "client_id": "p", "account": wallet, "amount": "3.00", "currency": "USD", "method": "cash" }),
    );
    call(&mut api, "PUT", &format!("/v1/customers/{customer}/rate-plan"), json!({ "plan": plan }));
    let sessions: Vec<u64> = (0..3)
        .map(|_| {
            call(&mut api, "POST", "/v1/sessions", json!({ "account": wallet, "service": "voice" }))["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for s in &sessions {
        call(&mut api, "POST", &format!("/v1/sessions/{s}/update"), json!({ "sequence": 1, "used": 60 }));
    }
    served.kill();
    served.spawn();
    let mut api = Client::new(&served.base(), Some(key)).unwrap();
    let listed = call(&mut api, "GET", &format!("/v1/sessions?customer={customer}"), Value::Null);
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "the active sessions are still there");
    for s in &sessions {
        let r = call(&mut api, "POST", &format!("/v1/sessions/{s}/update"), json!({ "sequence": 2, "used": 120 }));
        assert_eq!(r["charged"], "0.20");
        let r = call(&mut api, "POST", &format!("/v1/sessions/{s}/terminate"), json!({ "used": 130 }));
        assert_eq!(r["charged"], "0.30");
    }
    let spendable = call(&mut api, "GET", &format!("/v1/accounts/{wallet}/spendable"), Value::Null);
    assert_eq!(spendable["available"], "2.10");
    served.stop();
}

/// One usage event yields the customer's charge and its reseller's cost; the margin per
/// reseller is the operator's and the reseller's to see.
#[test]
fn issue_20_a_reseller_sees_what_it_sold_what_it_cost_and_its_margin() {
    with_shop(&sqlite_url(), async |shop| {
        shop.setup(2).await;
        let reseller =
            shop.post("/v1/resellers", json!({ "client_id": "r", "name": "Northwind" })).await["id"].as_u64().unwrap();
        let other =
            shop.post("/v1/resellers", json!({ "client_id": "o", "name": "Other" })).await["id"].as_u64().unwrap();
        let retail = shop.plan("prefix,price,increments\n*,0.10,60/60\n", "voice").await;
        let wholesale = shop.plan("prefix,price,increments\n*,0.05,60/60\n", "voice").await;
        let plans = json!({ "pays": wholesale, "customers_default": retail });
        ok(&shop.call("PUT", &format!("/v1/resellers/{reseller}/rate-plans"), plans).await, "plans");
        let c = shop
            .post("/v1/customers", json!({ "client_id": "c", "name": "Acme", "reseller": reseller, "billing": "prepaid", "currency": "USD" }))
            .await;
        let wallet = c["wallet"].as_u64().unwrap();
        shop.post(
            "/v1/payments",
            json!({ "client_id": "p", "account": wallet, "amount": "10.00", "currency": "USD", "method": "cash" }),
        )
        .await;
        // The customer has no plan of its own: its reseller's default rates it.
        let u = shop
            .post("/v1/usage", json!({ "client_id": "u1", "account": wallet, "service": "voice", "destination": "4420", "quantity": 120 }))
            .await;
        let t = ok(&shop.call("GET", &format!("/v1/transfers/{}", u["transfer"]), Value::Null).await, "transfer");
        assert_eq!(t["amount"], "0.20");
        assert_eq!(t["metadata"]["rated"]["reseller_cost"], "0.10");
        let s = shop.post("/v1/sessions", json!({ "account": wallet, "service": "voice" })).await;
        ok(&shop.call("POST", &format!("/v1/sessions/{}/terminate", s["id"]), json!({ "used": 60 })).await, "end");
        let margin = ok(&shop.call("GET", &format!("/v1/resellers/{reseller}/margin"), Value::Null).await, "margin");
        assert_eq!(margin["totals"][0]["sold"], "0.30", "{margin}");
        assert_eq!(margin["totals"][0]["cost"], "0.15", "{margin}");
        assert_eq!(margin["totals"][0]["margin"], "0.15", "{margin}");
        assert_eq!(margin["data"][0]["name"], "Acme");
        let own = shop.app.key(Role::Reseller(PartyId(reseller)), Scope::Read);
        let theirs = shop.app.key(Role::Reseller(PartyId(other)), Scope::Read);
        let customer = shop.app.key(Role::Customer(PartyId(c["id"].as_u64().unwrap())), Scope::Read);
        let path = format!("/v1/resellers/{reseller}/margin");
        assert_eq!(shop.app.call(&own, "GET", &path, None).await.body["totals"][0]["margin"], "0.15");
        assert_eq!(shop.app.call(&theirs, "GET", &path, None).await.status, 404);
        assert_eq!(shop.app.call(&customer, "GET", &path, None).await.status, 403);
    });
}
