//! The served API as a client sees it: a real `purse serve` process, on both backends,
//! raced, and killed with SIGKILL while clients work.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::served::*;
use common::*;
use purse::client::Client;
use serde_json::{json, Value};

static IDS: AtomicU64 = AtomicU64::new(0);

fn id(what: &str) -> String {
    format!("{what}-{}-{}", std::process::id(), IDS.fetch_add(1, Ordering::SeqCst))
}

fn post(client: &mut Client, path: &str, body: Value) -> (u16, Value) {
    let reply = client.send("POST", path, &body, &id("idem")).expect("answered");
    (reply.status, reply.json())
}

/// Creates USD and a customer with `paid` paid in; returns the wallet.
fn funded_customer(client: &mut Client, paid: &str, credit_limit: &str) -> u64 {
    let (status, _) = post(client, "/v1/currencies", json!({ "code": "USD" }));
    assert!(status == 201 || status == 422);
    let billing = if credit_limit == "0" { "prepaid" } else { "postpaid" };
    let (status, c) = post(
        client,
        "/v1/customers",
        json!({ "client_id": id("c"), "name": "Racer", "billing": billing, "currency": "USD", "credit_limit": credit_limit }),
    );
    assert_eq!(status, 201, "{c}");
    let wallet = c["wallet"].as_u64().unwrap();
    let (status, p) = post(
        client,
        "/v1/payments",
        json!({ "client_id": id("p"), "account": wallet, "amount": paid, "currency": "USD", "method": "cash" }),
    );
    assert_eq!(status, 201, "{p}");
    wallet
}

/// 50 concurrent debits of 10 against 100 paid: exactly 10 succeed with credit limit 0 and
/// 15 with credit limit 50, every round, with no 5xx.
fn overdraft_race(url: &str) {
    let server = Served::start(url);
    let key = operator_key(url);
    let mut setup = Client::new(&server.base(), Some(key.clone())).unwrap();
    for round in 0..4 {
        for (limit, expected) in [("0", 10), ("50.00", 15)] {
            let wallet = funded_customer(&mut setup, "100.00", limit);
            let barrier = Arc::new(Barrier::new(50));
            let threads: Vec<_> = (0..50)
                .map(|_| {
                    let (barrier, base, key) = (barrier.clone(), server.base(), key.clone());
                    std::thread::spawn(move || {
                        let mut client = Client::new(&base, Some(key)).unwrap();
                        client.get("/healthz").unwrap(); // connect before the start line
                        barrier.wait();
                        let body = json!({ "client_id": id("d"), "account": wallet, "amount": "10.00", "currency": "USD", "refuse_if_insufficient": true });
                        post(&mut client, "/v1/charges", body)
                    })
                })
                .collect();
            let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let ok = results.iter().filter(|(s, _)| *s == 201).count();
            assert!(
                results.iter().all(|(s, b)| *s == 201 || (*s == 422 && b["error"]["code"] == "insufficient_funds")),
                "{results:?}"
            );
            assert_eq!(ok, expected, "round {round}, limit {limit}");
            let account = setup.get(&format!("/v1/accounts/{wallet}")).unwrap().json();
            assert_eq!(account["balance"], format!("{}.00", 100 - 10 * expected as i64), "round {round}");
        }
    }
}

#[test]
fn overdraft_race_over_http_on_sqlite() {
    overdraft_race(&sqlite_url());
}

#[test]
fn overdraft_race_over_http_on_postgres() {
    overdraft_race(&pg_url("http_race"));
}

#[derive(Default)]
struct Ledgerbook {
    acknowledged: Vec<String>,
    refused: Vec<String>,
    unknown: Vec<String>,
    snapshots: u64,
}

const CUSTOMERS: u64 = 10;
const EACH: i64 = 1000;

/// The bank test: 8 clients move money between 10 wallets and read snapshots while the
/// server is SIGKILLed and restarted 5 times, each time after the clients got at least
/// `PURSE_BANK_ACKS` (500) more transfers acknowledged, and once more after the last restart.
/// Then every promise is checked against the database itself.
fn bank(url: &str) {
    let acks: usize = std::env::var("PURSE_BANK_ACKS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let mut server = Served::start(url);
    let key = operator_key(url);
    let mut setup = Client::new(&server.base(), Some(key.clone())).unwrap();
    let wallets: Vec<u64> = (0..CUSTOMERS).map(|_| funded_customer(&mut setup, &format!("{EACH}.00"), "0")).collect();
    let total = format!("{}.00", EACH * CUSTOMERS as i64);
    let book = Arc::new(Mutex::new(Ledgerbook::default()));
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..8u64)
        .map(|n| {
            let (book, running, base, key, wallets, total) =
                (book.clone(), running.clone(), server.base(), key.clone(), wallets.clone(), total.clone());
            std::thread::spawn(move || {
                let mut rng = purse::ids::Rng::new(n + 1);
                let mut client = Client::new(&base, Some(key)).unwrap().with_timeout(Duration::from_secs(2));
                while running.load(Ordering::SeqCst) {
                    if rng.below(10) == 0 {
                        // A snapshot: whatever moment it shows, the money is all there.
                        if let Ok(r) = client.request("GET", "/v1/balances", None, &[]) {
                            if r.status == 200 {
                                let s = r.json();
                                assert_eq!(s["totals"]["USD"]["customer_accounts"], total.as_str(), "snapshot sum");
                                assert_eq!(s["totals"]["USD"]["all_accounts"], "0.00");
                                for a in s["accounts"].as_array().unwrap() {
                                    if a["kind"] == "wallet" {
                                        assert!(!a["balance"].as_str().unwrap().starts_with('-'), "below its limit: {a}");
                                    }
                                }
                                book.lock().unwrap().snapshots += 1;
                            }
                        }
                        continue;
                    }
                    let from = wallets[rng.below(wallets.len() as u64) as usize];
                    let to = wallets[rng.below(wallets.len() as u64) as usize];
                    if from == to {
                        continue;
                    }
                    let client_id = id("bank");
                    let amount = format!("{}.{:02}", rng.below(60), rng.below(100));
                    if amount == "0.00" {
                        continue;
                    }
                    let body = json!({ "client_id": client_id, "source": from, "target": to, "amount": amount, "currency": "USD" });
                    let bytes = serde_json::to_vec(&body).unwrap();
                    let answer = client.request("POST", "/v1/transfers", Some(&bytes), &[("idempotency-key", &client_id)]);
                    let mut b = book.lock().unwrap();
                    match answer {
                        Ok(r) if r.status == 201 => b.acknowledged.push(client_id),
                        Ok(r) if r.status == 422 => {
                            assert_eq!(r.json()["error"]["code"], "insufficient_funds");
                            b.refused.push(client_id);
                        }
                        Ok(r) if r.status >= 500 && r.status != 503 => panic!("a 5xx: {} {}", r.status, String::from_utf8_lossy(&r.body)),
                        Ok(r) if r.status == 503 => b.unknown.push(client_id), // refused before the queue; still "at most once"
                        Ok(r) => panic!("unexpected {} {}", r.status, String::from_utf8_lossy(&r.body)),
                        Err(_) => {
                            b.unknown.push(client_id);
                            drop(b);
                            std::thread::sleep(Duration::from_millis(20)); // the server is restarting
                        }
                    }
                }
            })
        })
        .collect();
    let acknowledged = || book.lock().unwrap().acknowledged.len();
    for round in 0..=5 {
        let before = acknowledged();
        wait_for(120, &format!("{acks} more transfers acknowledged in round {round}"), || {
            acknowledged() >= before + acks
        });
        if round < 5 {
            server.kill();
            server.spawn();
        }
    }
    running.store(false, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client failed");
    }
    server.stop();

    let book = book.lock().unwrap();
    assert!(
        book.acknowledged.len() > 100 && book.snapshots > 5,
        "too little happened: {} acknowledged, {} snapshots",
        book.acknowledged.len(),
        book.snapshots
    );
    let opened = purse::open_store(url).unwrap();
    let audit = opened.reader.audit().unwrap();
    assert!(audit.is_consistent(), "{audit:?}");
    for client_id in &book.acknowledged {
        assert!(
            opened.reader.transfer_by_client_id(&cid(client_id)).unwrap().is_some(),
            "acknowledged {client_id} is missing"
        );
    }
    for client_id in &book.refused {
        assert!(
            opened.reader.transfer_by_client_id(&cid(client_id)).unwrap().is_none(),
            "refused {client_id} was posted"
        );
    }
    let acknowledged: HashSet<&String> = book.acknowledged.iter().collect();
    assert_eq!(acknowledged.len(), book.acknowledged.len());
    let sum: i64 =
        wallets.iter().map(|w| opened.reader.account(purse_core::AccountId(*w)).unwrap().unwrap().balance.0).sum();
    assert_eq!(sum, EACH * CUSTOMERS as i64 * 100);
    eprintln!(
        "bank on {}: {} acknowledged, {} refused, {} unknown, {} snapshots, {} transfers stored",
        if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        book.acknowledged.len(),
        book.refused.len(),
        book.unknown.len(),
        book.snapshots,
        audit.transfer_count
    );
}

#[test]
fn bank_over_http_with_five_sigkills_on_sqlite() {
    bank(&sqlite_url());
}

/// Issue 22: the same with tails of three rows, so the snapshots read balances while batches
/// fold them, and the SIGKILLs land in folds.
#[test]
fn issue_22_bank_over_http_with_five_sigkills_on_sqlite_with_small_tails() {
    bank(&format!("{}?tail_rows=3", sqlite_url()));
}

#[test]
fn bank_over_http_with_five_sigkills_on_postgres() {
    bank(&pg_url("http_bank"));
}

/// `purse demo` (the README's run command): seeds, prints a key per role, serves, and
/// balances move while it runs; SIGTERM stops it cleanly.
#[test]
fn the_demo_serves_with_keys_for_each_role_and_usage_flowing() {
    let path = sqlite_url().trim_start_matches("sqlite://").to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_purse"))
        .args(["demo", "--path", &path, "--listen", &listen])
        .env("PURSE_API_LOG_REQUESTS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut keys = Vec::new();
    let mut logins = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(key) = line.split_whitespace().find(|w| w.starts_with("purse_") && w.len() == 54) {
            keys.push(key.to_owned());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| w.ends_with("demo.purse")) {
            logins.push((words[at].to_owned(), words[at + 1].to_owned()));
        }
        if line.contains("Usage keeps flowing") {
            break;
        }
    }
    assert_eq!(keys.len(), 3, "a key for the operator, a reseller and a customer");
    let base = format!("http://{listen}");
    let mut operator = Client::new(&base, Some(keys[0].clone())).unwrap();
    let first = operator.get("/v1/balances").unwrap().json();
    let mut later = first.clone();
    wait_for(30, "balances move", || {
        later = operator.get("/v1/balances").unwrap().json();
        later["accounts"] != first["accounts"]
    });
    assert_eq!(later["totals"]["USD"]["all_accounts"], "0.0000");
    assert_ne!(first["accounts"], later["accounts"], "balances move");
    let mut customer = Client::new(&base, Some(keys[2].clone())).unwrap();
    let mine = customer.get("/v1/customers").unwrap().json();
    assert_eq!(mine["data"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(customer.get("/v1/balances").unwrap().status, 403);
    // A portal login for each role, and each one works.
    assert_eq!(logins.len(), 4, "operator, reseller, customer admin, customer read-only: {logins:?}");
    for (email, password) in &logins {
        let mut web = Client::new(&base, None).unwrap();
        let form = web.get("/login").unwrap();
        let cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        let token = cookie.split_once('=').unwrap().1.to_owned();
        let body = format!("csrf={token}&email={}&password={password}&next=%2F", email.replace('@', "%40"));
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let reply = web.request("POST", "/login", Some(body.as_bytes()), &headers).unwrap();
        assert_eq!(reply.status, 303, "{email} logs in");
        assert!(reply.header("set-cookie").unwrap().starts_with("purse_session="), "{email} gets a session");
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

/// The CLI as a client of the API: tables by default, `--json` for scripts, CSV import
/// that is safe to re-run.
#[test]
fn the_cli_drives_the_api() {
    let url = sqlite_url();
    let server = Served::start(&url);
    let key = operator_key(&url);
    let base = server.base();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_purse"))
            .args(args)
            .env("PURSE_URL", &base)
            .env("PURSE_API_KEY", &key)
            .output()
            .unwrap()
    };
    let cli = |args: &[&str]| -> String {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let mut setup = Client::new(&base, Some(key.clone())).unwrap();
    post(&mut setup, "/v1/currencies", json!({ "code": "USD" }));
    let created =
        cli(&["customers", "create", "--name", "Acme", "--billing", "prepaid", "--currency", "USD", "--json"]);
    let created: Value = serde_json::from_str(&created).unwrap();
    let (customer, wallet) = (created["id"].as_u64().unwrap(), created["wallet"].as_u64().unwrap());
    assert!(cli(&["customers", "list"]).contains("Acme"));
    let opened = cli(&["accounts", "open", "--party", &customer.to_string(), "--kind", "subscriber-debit"]);
    assert!(opened.starts_with("account "), "{opened}");
    assert!(cli(&[
        "pay",
        "--account",
        &wallet.to_string(),
        "--amount",
        "20.00",
        "--currency",
        "USD",
        "--method",
        "cash"
    ])
    .starts_with("posted transfer"));
    assert!(cli(&[
        "charge",
        "--account",
        &wallet.to_string(),
        "--amount",
        "1.25",
        "--currency",
        "USD",
        "--service",
        "voice"
    ])
    .starts_with("posted transfer"));
    let dir = std::env::temp_dir().join(format!("purse-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("usage.csv");
    std::fs::write(&csv, format!("client_id,account,amount,currency,service\nu-1,{wallet},0.50,USD,sms\nu-2,{wallet},0.505,USD,sms\n\"u-3\",{wallet},2.00,USD,\"voice, intl\"\n")).unwrap();
    let first = cli(&["import", csv.to_str().unwrap()]);
    assert!(first.starts_with("2 posted, 0 already posted, 1 refused"), "{first}");
    assert!(first.contains("line 3: invalid_amount"), "{first}");
    let again = cli(&["import", csv.to_str().unwrap()]);
    assert!(again.starts_with("0 posted, 2 already posted, 1 refused"), "{again}");
    // A malformed row refuses its whole request: it is named by its line, and nothing moves.
    let failing = |args: &[&str]| -> String {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} fails");
        String::from_utf8(out.stderr).unwrap()
    };
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, format!("client_id,account,amount,currency\nb-1,{wallet},0.50,USD\nb-2,{wallet},-1,USD\n"))
        .unwrap();
    let refused = failing(&["import", bad.to_str().unwrap()]);
    assert!(refused.contains("line 3: amount: invalid_amount: amount must be a positive decimal"), "{refused}");
    assert!(refused.contains("Nothing from line 2 on was posted"), "{refused}");
    std::fs::write(&bad, format!("client_id,account,amount,amount,currency\nb-3,{wallet},0.50,9.00,USD\n")).unwrap();
    let refused = failing(&["import", bad.to_str().unwrap()]);
    assert!(refused.contains("line 1: the column amount is given twice"), "{refused}");
    let shown = cli(&["accounts", "show", &wallet.to_string()]);
    assert!(shown.contains("16.25"), "{shown}");
    let journal: Value =
        serde_json::from_str(&cli(&["journal", &wallet.to_string(), "--json", "--kind", "charge"])).unwrap();
    assert_eq!(journal["data"].as_array().unwrap().len(), 3);
    assert_eq!(journal["data"][0]["service"], "voice, intl");
    let balances = cli(&["balances"]);
    assert!(balances.contains("customer_accounts") && balances.contains("16.25"), "{balances}");
    // Call-detail records (quantities) are rated with the customer's plan (issue 20).
    let plan =
        post(&mut setup, "/v1/rate-plans", json!({ "name": "Voice", "currency": "USD" })).1["id"].as_u64().unwrap();
    post(
        &mut setup,
        &format!("/v1/rate-plans/{plan}/import"),
        json!({ "csv": "prefix,price,increments\n44,0.10,60/60\n*,1.00,60/60", "service": "voice" }),
    );
    let given =
        setup.send("PUT", &format!("/v1/customers/{customer}/rate-plan"), &json!({ "plan": plan }), "p").unwrap();
    assert_eq!(given.status, 200);
    let cdr = dir.join("calls.csv");
    std::fs::write(&cdr, format!("client_id,account,service,destination,quantity\nc-1,{wallet},voice,+442071234567,61\nc-2,{wallet},voice,44x,60\nc-3,{wallet},voice,12125550100,30\n")).unwrap();
    let rated = cli(&["import", cdr.to_str().unwrap()]);
    assert!(rated.starts_with("2 posted, 0 already posted, 1 refused"), "{rated}");
    assert!(rated.contains("line 3: invalid_destination"), "{rated}");
    let shown = cli(&["accounts", "show", &wallet.to_string()]);
    assert!(shown.contains("15.05"), "16.25 less 0.20 (two minutes to 44) and 1.00 (a minute elsewhere): {shown}");
    // Credit grants (issue 21): give, list, void.
    let given = cli(&[
        "grants",
        "give",
        "--customer",
        &customer.to_string(),
        "--amount",
        "5.00",
        "--scope",
        "voice,sms",
        "--priority",
        "1",
        "--reason",
        "welcome",
    ]);
    assert!(given.starts_with("grant ") && given.contains("5.00 USD"), "{given}");
    let listed = cli(&["grants", "list", &customer.to_string()]);
    assert!(listed.contains("promotional") && listed.contains("5.00"), "{listed}");
    let id = given.split_whitespace().nth(1).unwrap();
    assert!(cli(&["grants", "void", id, "--reason", "withdrawn"]).contains("voided"));
    assert!(cli(&["grants", "list", &customer.to_string(), "--all", "--json"]).contains("\"voided\""));
    // Adjustments by category and collections (issue 24).
    let made = cli(&[
        "adjustments",
        "make",
        "--account",
        &wallet.to_string(),
        "--direction",
        "credit",
        "--category",
        "goodwill",
        "--amount",
        "1.00",
        "--currency",
        "USD",
        "--reason",
        "late fix",
    ]);
    assert!(made.starts_with("posted transfer"), "{made}");
    let listed = cli(&["adjustments", "list", &customer.to_string()]);
    assert!(listed.contains("goodwill") && listed.contains("late fix"), "{listed}");
    let set =
        cli(&["collections", "set-policy", "--owner", "operator", "--reminders", "3,7", "--suspend-below", "-5.00"]);
    assert!(set.contains("policy of operator saved"), "{set}");
    assert!(cli(&["collections", "policies"]).contains("3,7") || cli(&["collections", "policies"]).contains("[3,7]"));
    let suspended = cli(&["collections", "suspend", &customer.to_string(), "--reason", "fraud check"]);
    assert!(suspended.contains("is suspended since") && suspended.contains("fraud check"), "{suspended}");
    let lifted = cli(&["collections", "lift", &customer.to_string(), "--reason", "cleared"]);
    assert!(lifted.contains("is not suspended"), "{lifted}");
    let receipt = cli(&["refunds", "list", &customer.to_string(), "--json"]);
    assert!(receipt.contains("\"data\":[]"), "{receipt}");
    let invoice = post(&mut setup, &format!("/v1/customers/{customer}/invoices"), json!({})).1;
    let invoice = invoice["id"].as_u64().unwrap_or_else(|| panic!("an invoice: {invoice}"));
    let noted = cli(&[
        "credit-notes",
        "create",
        "--invoice",
        &invoice.to_string(),
        "--amount",
        "0.50",
        "--apply",
        "balance",
        "--reason",
        "dropped calls",
    ]);
    assert!(noted.starts_with("credit note CN-"), "{noted}");
    assert!(cli(&["credit-notes", "list", &customer.to_string()]).contains("dropped calls"));
    let rate = cli(&["taxes", "create-rate", "--name", "VAT", "--percent", "20"]);
    assert!(rate.starts_with("tax rate ") && rate.contains("(20%)"), "{rate}");
    let id = rate.split_whitespace().nth(2).unwrap();
    assert!(cli(&["taxes", "rates"]).contains("VAT"));
    let set = cli(&["taxes", "set", &customer.to_string(), "--rate", id, "--tax-id", "GB1"]);
    assert!(set.contains("VAT") && set.contains("GB1"), "{set}");
    let out = Command::new(env!("CARGO_BIN_EXE_purse"))
        .args(["charge", "--account", "999999", "--amount", "1", "--currency", "USD"])
        .env("PURSE_URL", &base)
        .env("PURSE_API_KEY", &key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("account_not_found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// schemathesis (installed by scripts/schemathesis.sh) fuzzes every operation of the served
/// OpenAPI document, time-boxed: no 5xx, and no response that contradicts the document.
/// (`positive_data_acceptance` is left out: a schema-valid id that names nothing is rightly
/// a 404 or 422, which that check counts as a failure.)
#[test]
fn schemathesis_finds_no_5xx_and_nothing_contradicting_the_document() {
    let st = std::env::var("PURSE_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("PURSE_SCHEMATHESIS is not set: run the tests with scripts/test.sh, which installs schemathesis")
    });
    let seconds = std::env::var("PURSE_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "60".into());
    let url = sqlite_url();
    let server = Served::start(&url);
    let key = operator_key(&url);
    let mut setup = Client::new(&server.base(), Some(key.clone())).unwrap();
    let wallet = funded_customer(&mut setup, "100.00", "0");
    post(
        &mut setup,
        "/v1/charges",
        json!({ "client_id": id("c"), "account": wallet, "amount": "1.00", "currency": "USD" }),
    );
    let run = || {
        Command::new(&st)
            .args(["run", &format!("{}/v1/openapi.json", server.base()), "-H", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-time",
                &seconds,
                "--workers",
                "2",
            ])
            .args(["--seed", "20261122"])
            .env("NO_COLOR", "1")
            .current_dir(std::env::temp_dir()) // its cache goes there, not into the repository
            .output()
            .expect("schemathesis runs")
    };
    let mut out = run();
    // A crash of the tool itself (a Python error while generating, no finding about Purse)
    // is run again, up to twice; any failure it reports about the API fails the test at once.
    let crashed = |text: &str| text.contains("Runtime Error") && !text.contains("FAILURES");
    for _ in 0..2 {
        if out.status.success() || !crashed(&String::from_utf8_lossy(&out.stdout)) {
            break;
        }
        eprintln!("schemathesis crashed inside itself; running it again:\n{}", String::from_utf8_lossy(&out.stdout));
        out = run();
    }
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("passed"), "{report}");
}

/// One JSON log line per request, with a request id; never the key, a body or a card number.
#[test]
fn request_logs_carry_a_request_id_and_no_secret() {
    let url = sqlite_url();
    let key = operator_key(&url);
    let log = std::env::temp_dir().join(format!("purse-log-{}.txt", std::process::id()));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_purse"))
        .args(["serve", "--database", &url, "--listen", &listen])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let mut client = Client::new(&base, Some(key.clone())).unwrap();
    wait_for(30, "the server answers", || client.get("/healthz").is_ok());
    let wallet = funded_customer(&mut client, "10.00", "0");
    let card = "4242424242424242";
    let body = json!({ "client_id": id("c"), "account": wallet, "amount": "1.00", "currency": "USD", "metadata": { "card": card } });
    let reply = client
        .request(
            "POST",
            "/v1/charges",
            Some(body.to_string().as_bytes()),
            &[("idempotency-key", "log-1"), ("x-request-id", "trace-abc")],
        )
        .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("x-request-id"), Some("trace-abc"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("trace-abc")).expect("the request's line");
    let parsed: Value = serde_json::from_str(line).unwrap();
    assert_eq!((parsed["route"].as_str(), parsed["status"].as_u64()), (Some("/v1/charges"), Some(201)));
    assert!(!text.contains(&key[6..]) && !text.contains(card) && !text.contains("metadata"), "{text}");
}

/// Issue 22: `purse bench --target` drives a real server from one thread's event loop: single
/// charges, batches and rated calls, each counted once in the server's journal.
#[test]
fn issue_22_the_http_bench_drives_a_server_from_one_event_loop() {
    let url = sqlite_url();
    let key = operator_key(&url);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_purse"))
        .args(["serve", "--database", &url, "--listen", &listen])
        .env("PURSE_API_RATE_PER_KEY", "0")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let mut client = Client::new(&base, Some(key.clone())).unwrap();
    wait_for(30, "the server answers", || client.get("/healthz").is_ok());
    let bench = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_purse"))
            .args(["bench", "--json", "--target", &base, "--key", &key])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };
    let single = bench(&["--accounts", "5", "--charges", "300", "--batch", "1", "--concurrency", "16"]);
    assert_eq!((single["charges"].as_u64(), single["backend"].as_str()), (Some(300), Some("http")));
    let batched =
        bench(&["--accounts", "5", "--charges", "400", "--batch", "50", "--concurrency", "3", "--ids", "random"]);
    assert_eq!(batched["charges"].as_u64(), Some(400));
    let calls = bench(&["--calls", "12", "--concurrency", "4", "--deck", "50"]);
    assert_eq!(calls["calls"].as_u64(), Some(12), "{calls}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let reader = purse::open_store(&url).unwrap().reader;
    let audit = reader.audit().unwrap();
    assert!(audit.is_consistent(), "{audit:?}");
    assert_eq!(audit.duplicate_client_ids, 0);
    // 700 charges, 4 callers' payments and 12 calls of three postings (two updates and the
    // terminate each post what was used); nothing else posts.
    assert_eq!(audit.transfer_count, 700 + 4 + 12 * 3, "{audit:?}");
    // Each request's idempotency key is in the style `--ids` asks for (UUIDv7 or UUIDv4).
    let db = rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap();
    let keys = |version: &str| -> i64 {
        db.query_row("SELECT count(*) FROM idempotent_responses WHERE substr(key, 15, 1) = ?", [version], |r| r.get(0))
            .unwrap()
    };
    // Time-ordered: the 300 single charges' alone; the batches' are random (as are the set-up
    // requests'; the calls' steps store no response).
    assert_eq!(keys("7"), 300);
    assert!(keys("4") >= 400 / 50);
}
