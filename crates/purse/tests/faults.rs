//! Issue 18: faults stay with whoever caused them. A database that restarts costs seconds
//! of 503 and then work resumes by itself, for the writer, the readers and the workers, with
//! nothing acknowledged lost or doubled (one `purse serve` and two); one tenant's bad text is
//! refused naming its field and never fails another tenant's requests; concurrent login
//! guesses get the same five free tries as guesses in a row; a full disk is a 503 with
//! `storage_unavailable` and not-ready, and Purse recovers when space returns; and the
//! smaller inputs the issue names are refused naming their field.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::app::{off_runtime, Auth, InProcess};
use common::served::*;
use common::*;
use purse::client::Client;
use purse_core::{PartyId, Role, Scope};
use serde_json::{json, Value};

static IDS: AtomicU64 = AtomicU64::new(0);

fn id(what: &str) -> String {
    format!("{what}-{}-{}", std::process::id(), IDS.fetch_add(1, Ordering::SeqCst))
}

fn client(base: &str, key: &str) -> Client {
    Client::new(base, Some(key.to_owned())).unwrap().with_timeout(Duration::from_secs(20))
}

/// What the clients saw: every acknowledged posting, the 503s and when they came.
#[derive(Default)]
struct Seen {
    /// client id -> (amount in units, a payment rather than a charge)
    acknowledged: HashMap<String, (i64, bool)>,
    unavailable: Vec<Instant>,
    other_errors: Vec<String>,
}

/// One client's loop: charges and payments with fresh client ids; a 503 is retried with the
/// same client id and Idempotency-Key until it is answered.
fn work(base: String, key: String, wallets: Vec<u64>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let mut c = client(&base, &key);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let wallet = wallets[(n as usize) % wallets.len()];
        let payment = n.is_multiple_of(5);
        let client_id = id("w");
        let (path, body) = if payment {
            (
                "/v1/payments",
                json!({ "client_id": client_id, "account": wallet, "amount": "2.00", "currency": "USD", "method": "cash" }),
            )
        } else {
            (
                "/v1/charges",
                json!({ "client_id": client_id, "account": wallet, "amount": "0.01", "currency": "USD", "service": "voice" }),
            )
        };
        loop {
            match c.send("POST", path, &body, &client_id) {
                Ok(r) if r.status == 201 || r.status == 200 => {
                    let units = if payment { 200 } else { 1 };
                    seen.lock().unwrap().acknowledged.insert(client_id.clone(), (units, payment));
                    break;
                }
                Ok(r) if r.status == 503 => {
                    assert_eq!(r.header("retry-after"), Some("1"), "a 503 says when to retry");
                    assert_eq!(r.json()["error"]["code"], "storage_unavailable", "{}", r.json());
                    seen.lock().unwrap().unavailable.push(Instant::now());
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(r) => {
                    seen.lock().unwrap().other_errors.push(format!("{} {}", r.status, r.json()));
                    break;
                }
                // The connection itself broke (the server is up: the database restarted): retry.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
            if stop.load(Ordering::SeqCst) && n > 0 {
                // An answer we never got: it may or may not have posted; checked below as "at most once".
                break;
            }
        }
    }
}

fn restart_under_load(servers: usize) {
    let pg = PrivatePostgres::start();
    let url = pg.database(&format!("restart_{servers}"));
    let maildir = std::env::temp_dir().join(id("maildir"));
    let maildir = maildir.display().to_string();
    let key = operator_key(&url);
    let env = [("PURSE_MAILDIR", maildir.as_str()), ("PURSE_ALERTS_TICK_MS", "20")];
    let served: Vec<Served> = (0..servers).map(|_| Served::start_with(&url, &env)).collect();
    let mut setup = client(&served[0].base(), &key);
    assert_eq!(setup.send("POST", "/v1/currencies", &json!({ "code": "USD" }), &id("i")).unwrap().status, 201);
    let wallets: Vec<u64> = (0..4)
        .map(|i| {
            let c = setup.send("POST", "/v1/customers", &json!({ "client_id": id("c"), "name": format!("Customer {i}"), "billing": "prepaid", "currency": "USD" }), &id("i")).unwrap();
            let wallet = c.json()["wallet"].as_u64().unwrap();
            let party = c.json()["id"].as_u64().unwrap();
            let settings = json!({ "billing_email": "billing@example.com", "warning_thresholds": "100, 50, 10" });
            assert_eq!(setup.request("PUT", &format!("/v1/customers/{party}/alert-settings"), Some(settings.to_string().as_bytes()), &[]).unwrap().status, 200);
            wallet
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (base, key, wallets, stop, seen) =
                (served[i % servers].base(), key.clone(), wallets.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || work(base, key, wallets, stop, seen))
        })
        .collect();
    wait_for(30, "load under way", || seen.lock().unwrap().acknowledged.len() >= 200);
    let before = seen.lock().unwrap().acknowledged.len();
    let restarted_at = Instant::now();
    pg.restart();
    // Work resumes by itself: new postings are acknowledged after the restart.
    wait_for(30, "postings acknowledged again after the restart", || {
        seen.lock().unwrap().acknowledged.len() > before + 50
    });
    wait_for(30, "the load keeps going", || seen.lock().unwrap().acknowledged.len() > before + 250);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client failed");
    }
    let seen = seen.lock().unwrap();
    assert!(seen.other_errors.is_empty(), "answers other than success or 503: {:?}", seen.other_errors);
    if let (Some(first), Some(last)) = (seen.unavailable.first(), seen.unavailable.last()) {
        let span = last.duration_since(*first);
        assert!(span < Duration::from_secs(20), "503s for {span:?}");
        assert!(*last >= restarted_at - Duration::from_secs(1));
    }
    eprintln!(
        "{servers} server(s): {} acknowledged, {} answers of 503",
        seen.acknowledged.len(),
        seen.unavailable.len()
    );
    // Every server is ready again, without a restart of its own.
    for s in &served {
        let mut c = client(&s.base(), &key);
        wait_for(10, "ready again", || c.get("/readyz").is_ok_and(|r| r.status == 200));
    }
    // Nothing acknowledged is lost, nothing is posted twice, and the books balance.
    let opened = purse::open_store(&url).unwrap();
    for (client_id, (units, _)) in &seen.acknowledged {
        let t = opened
            .reader
            .transfer_by_client_id(&cid(client_id))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {client_id} is missing"));
        assert_eq!(t.amount.0, *units);
    }
    let audit = opened.reader.audit().unwrap();
    assert!(audit.is_consistent(), "{audit:?}");
    assert_eq!(audit.duplicate_client_ids, 0);
    // The workers resumed too: every payment gets its receipt voucher.
    let payments: usize = seen.acknowledged.values().filter(|(_, payment)| *payment).count();
    assert!(payments > 10, "too few payments: {payments}");
    let mut c = client(&served[0].base(), &key);
    let receipts = |c: &mut Client| -> usize {
        wallets_customers(c, &wallets)
            .iter()
            .map(|party| {
                c.get(&format!("/v1/receipts?customer={party}&limit=500")).unwrap().json()["data"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum()
    };
    wait_for(30, "a receipt voucher for every payment, after the restart too", || receipts(&mut c) >= payments);
}

/// The customers whose wallets these are.
fn wallets_customers(c: &mut Client, wallets: &[u64]) -> Vec<u64> {
    wallets.iter().map(|w| c.get(&format!("/v1/accounts/{w}")).unwrap().json()["party"].as_u64().unwrap()).collect()
}

#[test]
fn issue_18_a_postgres_restart_under_load_costs_seconds_of_503_and_loses_nothing() {
    restart_under_load(1);
}

#[test]
fn issue_18_a_postgres_restart_under_load_with_two_serve_processes() {
    restart_under_load(2);
}

/// Issue 18, item 2: a NUL character in one tenant's text is refused naming its field, on
/// both backends alike, and the other tenant's valid requests, posted at the same time, all
/// succeed.
#[test]
fn issue_18_one_tenants_bad_text_never_fails_another_tenants_requests() {
    for url in both_backends("issue_18_poison") {
        let app = InProcess::on(&url);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let op = app.operator();
            let post = |auth: &Auth, path: &str, body: Value| {
                let (app, auth, path) = (&app, auth.clone(), path.to_owned());
                async move { app.call(&auth, "POST", &path, Some(&body)).await }
            };
            assert_eq!(post(&op, "/v1/currencies", json!({ "code": "USD" })).await.status, 201);
            let mut wallets = Vec::new();
            let mut resellers = Vec::new();
            for name in ["A", "B"] {
                let r = post(&op, "/v1/resellers", json!({ "client_id": id("r"), "name": name })).await.body["id"].as_u64().unwrap();
                let c = post(&op, "/v1/customers", json!({ "client_id": id("c"), "name": name, "reseller": r, "billing": "postpaid", "currency": "USD", "credit_limit": "1000.00" })).await;
                wallets.push(c.body["wallet"].as_u64().unwrap());
                resellers.push(app.key(Role::Reseller(PartyId(r)), Scope::ReadWrite));
            }
            let (good, bad) = (&resellers[0], &resellers[1]);
            let nul = "voice\u{0}";
            let poison: Vec<(&Auth, &str, Value, &str)> = vec![
                (bad, "/v1/charges", json!({ "client_id": id("x"), "account": wallets[1], "amount": "1.00", "currency": "USD", "service": nul }), "service"),
                (bad, "/v1/charges/batch", json!({ "items": [{ "client_id": id("x"), "account": wallets[1], "amount": "1.00", "currency": "USD", "service": nul }] }), "items[0].service"),
                (bad, "/v1/holds", json!({ "client_id": id("x"), "account": wallets[1], "amount": "1.00", "currency": "USD", "service": nul }), "service"),
                (bad, "/v1/customers", json!({ "client_id": id("x"), "name": "Bad\u{0}", "billing": "prepaid", "currency": "USD" }), "name"),
                (&op, "/v1/resellers", json!({ "client_id": id("x"), "name": "Bad\u{0}" }), "name"),
                (&op, "/v1/customer-classes", json!({ "name": "Bad\u{0}", "subscriber_transfers": true }), "name"),
                (bad, "/v1/adjustments", json!({ "client_id": id("x"), "account": wallets[1], "amount": "1.00", "currency": "USD", "direction": "credit", "reason": "why\u{0}" }), "reason"),
                (&op, "/v1/low-balance-profiles", json!({ "name": "Low\u{0}", "currency": "USD", "max_quantity": 1, "period_hours": 24 }), "name"),
            ];
            let goods = (0..200).map(|i| post(good, "/v1/charges", json!({ "client_id": id("g"), "account": wallets[0], "amount": "0.01", "currency": "USD", "service": format!("voice {i}") })));
            let bads = poison.iter().cycle().take(80).map(|(auth, path, body, _)| post(auth, path, body.clone()));
            let (goods, bads) = tokio::join!(futures_join(goods), futures_join(bads));
            assert!(goods.iter().all(|r| r.status == 201), "the other tenant's charges: {:?}", goods.iter().filter(|r| r.status != 201).map(|r| &r.body).collect::<Vec<_>>());
            for (r, (_, path, _, field)) in bads.iter().zip(poison.iter().cycle()) {
                assert!(r.status.is_client_error(), "{path}: {} {}", r.status, r.body);
                assert_eq!(r.error().1, *field, "{path}: {}", r.body);
            }
            let wallet = app.call(&op, "GET", &format!("/v1/accounts/{}", wallets[1]), None).await;
            assert_eq!(wallet.body["balance"], "0.00", "nothing of the bad tenant's was posted");
            let wallet = app.call(&op, "GET", &format!("/v1/accounts/{}", wallets[0]), None).await;
            assert_eq!(wallet.body["balance"], "-2.00");
        });
        drop(runtime);
        off_runtime(move || drop(app));
    }
}

/// Drives every future at once, on this task (the engine batches whatever arrives
/// together), and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// Issue 18, item 3: 30 (and 100) simultaneous wrong guesses for one e-mail check at most
/// five passwords; the rest are throttled before any check, and so is the right password
/// right after. (The right password used to be one of the guesses: when it happened to be
/// checked among the first five, the sign-in cleared the count and five more were checked,
/// as it should, for whoever knows the password; the test failed so in a clean-clone run.)
#[test]
fn issue_18_concurrent_login_guesses_check_at_most_five_passwords() {
    for url in both_backends("issue_18_login") {
        let app = InProcess::on(&url);
        let hash = purse_app::secrets::hash_password("the right password").unwrap();
        for (n, email) in [(30, "ana@example.com"), (100, "bo@example.com")] {
            let user = purse_store::NewUser {
                email: email.into(),
                name: "A".into(),
                password_hash: hash.clone(),
                role: Role::Operator,
                scope: Scope::ReadWrite,
                created_at: purse_core::Timestamp(0),
            };
            app.state.access.insert_user(&user).unwrap().unwrap();
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let statuses: Vec<u16> = runtime.block_on(async {
                let page = app.page(&Auth::Nobody, "GET", "/login", &[]).await;
                let cookie = page
                    .headers
                    .get_all("set-cookie")
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .find(|c| c.starts_with("purse_login="))
                    .unwrap();
                let token = cookie.trim_start_matches("purse_login=").split(';').next().unwrap().to_owned();
                let attempt = |password: String| {
                    let (app, token) = (&app, token.clone());
                    async move {
                        let form = format!(
                            "email={}&password={}&csrf={token}",
                            email.replace('@', "%40"),
                            password.replace(' ', "+")
                        );
                        let request = axum::http::Request::post("/login")
                            .header("content-type", "application/x-www-form-urlencoded")
                            .header("cookie", format!("purse_login={token}"))
                            .body(axum::body::Body::from(form))
                            .unwrap();
                        app.send(request).await.status.as_u16()
                    }
                };
                let mut statuses = futures_join((0..n).map(|i| attempt(format!("guess {i}")))).await;
                statuses.push(attempt("the right password".to_owned()).await);
                statuses
            });
            drop(runtime);
            // 401: a password checked and wrong; 303: checked and right; 429: throttled unchecked.
            let checked = statuses.iter().filter(|s| matches!(s, 401 | 303)).count();
            assert!(checked <= 5, "{url}: {n} guesses checked {checked} passwords: {statuses:?}");
            assert!(statuses.iter().all(|s| matches!(s, 401 | 429)), "{statuses:?}");
            assert_eq!(statuses.last(), Some(&429), "{url}: the right password right after is throttled too");
        }
        off_runtime(move || drop(app));
    }
}

/// The whole application on a fresh SQLite file, and a runtime to call it from.
fn in_process() -> (InProcess, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    (InProcess::on(&sqlite_url()), runtime)
}

/// USD and the customer `body` describes, made by the operator: its id and its wallet's.
async fn usd_customer(app: &InProcess, body: Value) -> (u64, u64) {
    let op = app.operator();
    app.call(&op, "POST", "/v1/currencies", Some(&json!({ "code": "USD" }))).await;
    let c = app.call(&op, "POST", "/v1/customers", Some(&body)).await;
    assert_eq!(c.status, 201, "{}", c.text());
    (c.body["id"].as_u64().unwrap(), c.body["wallet"].as_u64().unwrap())
}

/// Issue 18, item 5: the smaller inputs, refused naming their field, and a wrong method
/// answered in the error shape.
#[test]
fn issue_18_smaller_inputs_are_refused_naming_their_field() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let op = app.operator();
        app.call(&op, "POST", "/v1/currencies", Some(&json!({ "code": "USD" }))).await;
        let r = app.call(&op, "POST", "/v1/resellers", Some(&json!({ "client_id": "r", "name": "R" }))).await;
        let reseller = r.body["id"].as_u64().unwrap();
        let c = app.call(&op, "POST", "/v1/customers", Some(&json!({ "client_id": "c", "name": "C", "reseller": reseller, "billing": "prepaid", "currency": "USD" }))).await;
        let (customer, wallet) = (c.body["id"].as_u64().unwrap(), c.body["wallet"].as_u64().unwrap());
        // A wrong method: 405 in the error shape.
        let r = app.call(&op, "DELETE", "/v1/charges", None).await;
        assert_eq!((r.status.as_u16(), r.error().0), (405, "method_not_allowed"), "{}", r.body);
        // A customer's filter by a reseller it does not see finds nothing, instead of being ignored.
        let own = app.key(Role::Customer(PartyId(customer)), Scope::Read);
        let r = app.call(&own, "GET", &format!("/v1/customers?reseller={reseller}"), None).await;
        assert_eq!(r.status, 404, "{}", r.body);
        // A display name around an address is not an address.
        let r = app.call(&op, "PUT", &format!("/v1/customers/{customer}/alert-settings"), Some(&json!({ "billing_email": "<a@example.com>" }))).await;
        assert_eq!((r.status.as_u16(), r.error()), (422, ("invalid_email", "billing_email")), "{}", r.body);
        // Years 0000 and 9999 are typos, not usage times.
        for at in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let r = app.call(&op, "POST", "/v1/charges", Some(&json!({ "client_id": id("x"), "account": wallet, "amount": "1.00", "currency": "USD", "at": at }))).await;
            assert_eq!((r.status.as_u16(), r.error()), (422, ("invalid_time", "at")), "{at}: {}", r.body);
        }
        // A period of zero hours is no period.
        let r = app.call(&op, "POST", "/v1/low-balance-profiles", Some(&json!({ "name": "Low", "reseller": reseller, "currency": "USD", "max_quantity": 1, "period_hours": 0 }))).await;
        assert_eq!((r.status.as_u16(), r.error()), (422, ("out_of_range", "period_hours")), "{}", r.body);
    });
    drop(runtime);
}

/// A portal form edited by hand (or sent by a stale page) is refused naming its field, in
/// people's words, and changes nothing: a choice that is none of the form's options is never
/// read as one of them (an adjustment's direction or category, a tax rate's prices, a
/// suspension), and a date or an amount that cannot be read is not described in the API's
/// terms.
#[test]
fn hand_edited_portal_forms_are_refused_in_peoples_words() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let op = app.operator();
        let body = json!({ "client_id": "c", "name": "C", "billing": "prepaid", "currency": "USD" });
        let (customer, wallet) = usd_customer(&app, body).await;
        let balance =
            || async { app.call(&op, "GET", &format!("/v1/accounts/{wallet}"), None).await.body["balance"].clone() };
        let before = balance().await;
        let staff = app.session(Role::Operator, Scope::ReadWrite);
        let path = format!("/customers/{customer}/adjustments");
        for direction in ["raise", "", "CREDIT"] {
            let request = id("portal");
            let form = [
                ("request", request.as_str()),
                ("account", &wallet.to_string()),
                ("direction", direction),
                ("category", "correction"),
                ("amount", "5"),
                ("reason", "tampered"),
            ];
            let r = app.page(&staff, "POST", &path, &form).await;
            assert_eq!(r.status, 422, "{direction:?}: {}", r.text());
            assert!(r.text().contains("choose to raise or to lower the balance"), "the field is named: {}", r.text());
            assert_eq!(balance().await, before, "{direction:?} moved no money");
        }
        // Giving back part of a posting: a category that is neither offered is named too.
        let pay =
            json!({ "client_id": id("pay"), "account": wallet, "amount": "9.00", "currency": "USD", "method": "cash" });
        let paid = app.call(&op, "POST", "/v1/payments", Some(&pay)).await;
        let charge = json!({ "client_id": id("charge"), "account": wallet, "amount": "4.00", "currency": "USD" });
        let charged = app.call(&op, "POST", "/v1/charges", Some(&charge)).await;
        assert_eq!((paid.status.as_u16(), charged.status.as_u16()), (201, 201), "{} {}", paid.body, charged.body);
        let before = balance().await;
        let path = format!("/transfers/{}/adjust", charged.body["transfer"]);
        let request = id("portal");
        let form = [("request", request.as_str()), ("category", "bonus"), ("amount", "1"), ("reason", "tampered")];
        let r = app.page(&staff, "POST", &path, &form).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("choose correction or goodwill"), "the field is named: {}", r.text());
        assert_eq!(balance().await, before, "nothing was given back");
        // A Valid Until the browser would never send is refused in people's words.
        let body =
            json!({ "client_id": "p", "name": "P", "billing": "postpaid", "currency": "USD", "credit_limit": "100" });
        let postpaid = app.call(&op, "POST", "/v1/customers", Some(&body)).await.body["id"].as_u64().unwrap();
        let form =
            [("credit_limit", "100"), ("increase_amount", "10"), ("valid_until", "next friday"), ("reason", "x")];
        let r = app.page(&staff, "POST", &format!("/customers/{postpaid}/credit"), &form).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("such as 2026-12-31 18:00"), "{}", r.text());
        assert!(!r.text().contains("RFC 3339"), "no jargon: {}", r.text());
        // The application's messages lose the API's field paths and terms on the page.
        let form =
            [("credit_limit", "abc"), ("increase_amount", "1e3"), ("valid_until", "2031-01-01"), ("reason", "x")];
        let r = app.page(&staff, "POST", &format!("/customers/{postpaid}/credit"), &form).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("Credit limit: must be an amount such as 12.50"), "{}", r.text());
        for jargon in ["credit_limit must", "temporary_increase.amount", "no float"] {
            assert!(!r.text().contains(jargon), "{jargon}: {}", r.text());
        }
        // A tax rate whose prices are neither taxed on top nor inclusive is not made.
        let r = app.page(&staff, "POST", "/taxes", &[("name", "VAT"), ("percent", "20"), ("inclusive", "maybe")]).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("choose tax added on top or included in the price"), "{}", r.text());
        let rates = app.call(&op, "GET", "/v1/tax-rates", None).await;
        assert_eq!(rates.body["data"].as_array().map(Vec::len), Some(0), "{}", rates.body);
        let path = format!("/customers/{customer}/suspension");
        let r = app.page(&staff, "POST", &path, &[("suspended", "yes"), ("reason", "chargeback")]).await;
        assert_eq!(r.status, 303, "{}", r.text());
        let suspended = || async {
            app.call(&op, "GET", &format!("/v1/customers/{customer}/suspension"), None).await.body["suspended"].clone()
        };
        assert_eq!(suspended().await, json!(true));
        for value in ["", "maybe"] {
            let r = app.page(&staff, "POST", &path, &[("suspended", value), ("reason", "tampered")]).await;
            assert_eq!(r.status, 303, "{}", r.text());
            assert_eq!(suspended().await, json!(true), "{value:?} lifted nothing");
        }
    });
    drop(runtime);
}

/// What people read in the portal's audit log, Balance & Credits page and the trail above
/// each page: names, money and times in words; never an id, an internal code or an RFC 3339
/// time, and never a link to a page the viewer may not open.
#[test]
fn the_portal_names_people_and_things_never_ids_or_codes() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let op = app.operator();
        let post = |path: &'static str, body: Value| {
            let (app, op) = (&app, &op);
            async move {
                let r = app.call(op, "POST", path, Some(&body)).await;
                assert!(r.status.as_u16() < 300, "{path}: {}", r.text());
                r.body
            }
        };
        let body =
            json!({ "client_id": "acme", "name": "Acme Calls", "billing": "postpaid", "currency": "USD", "credit_limit": "100" });
        let (customer, wallet) = usd_customer(&app, body).await;
        let class = post(
            "/v1/customer-classes",
            json!({ "name": "Gold", "subscriber_transfers": false, "maximum_increase": { "amount": "50", "days": 30 } }),
        )
        .await["id"]
            .as_u64()
            .unwrap();
        let settings = json!({ "class": class });
        let r = app.call(&op, "PUT", &format!("/v1/customers/{customer}/credit-settings"), Some(&settings)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        post("/v1/api-keys", json!({ "name": "switch", "role": "customer", "party": customer, "scope": "read_write" }))
            .await;
        post(
            "/v1/adjustments",
            json!({ "client_id": id("adj"), "account": wallet, "amount": "5", "currency": "USD",
                    "direction": "credit", "category": "goodwill", "reason": "Outage on the 3rd" }),
        )
        .await;
        let plan = post("/v1/rate-plans", json!({ "name": "Retail Voice", "currency": "USD" })).await["id"].as_u64().unwrap();
        let r = app.call(&op, "PUT", &format!("/v1/customers/{customer}/rate-plan"), Some(&json!({ "plan": plan }))).await;
        assert_eq!(r.status, 200, "{}", r.text());

        let staff = app.session(Role::Operator, Scope::ReadWrite);
        let page = app.page(&staff, "GET", "/audit", &[]).await;
        assert_eq!(page.status, 200);
        let visible = |html: &str| {
            let mut text = String::new();
            let mut in_tag = false;
            for ch in html.chars() {
                match ch {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        text.push(' ');
                    }
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let log = visible(&page.text());
        for said in [
            "Party: Acme Calls",
            "Role: Customer",
            "Scope: Read and write",
            "Kind: Adjustment",
            "Credit: Acme Calls · Wallet",
            "Debit: The operator · Goodwill (USD)",
            "Category: Goodwill",
            "Plan: none → Retail Voice",
            "Class: Gold",
            "Subscriber transfers: As defined by the customer class",
        ] {
            assert!(log.contains(said), "the audit log says {said:?}: {log}");
        }
        for code in ["read_write", "Id:", &format!("Party: {customer} "), &format!("→ {plan} "), &format!("Class: {class} ")] {
            assert!(!log.contains(code), "the audit log shows {code:?}: {log}");
        }

        // A grant's page names who gave it.
        let grant = json!({ "client_id": "g1", "customer": customer, "amount": "5.00", "priority": 1, "reason": "Welcome" });
        let g = post("/v1/grants", grant).await["id"].as_u64().unwrap();
        let shown = visible(&app.page(&staff, "GET", &format!("/grants/{g}"), &[]).await.text());
        assert!(shown.contains("Granted by API key “test” on"), "{shown}");
        // The credit limit's history names who changed it, not the key's number.
        let change = json!({ "credit_limit": "150", "reason": "Good payer" });
        let r = app.call(&op, "PATCH", &format!("/v1/accounts/{wallet}"), Some(&change)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The maximum possible increase's last day reads as a time, not as RFC 3339.
        let credit = visible(&app.page(&staff, "GET", &format!("/customers/{customer}/credit"), &[]).await.text());
        assert!(credit.contains("API key “test” Good payer"), "{credit}");
        let words: Vec<&str> = credit.split_whitespace().collect();
        assert!(!words.windows(2).any(|w| w[0] == "key" && w[1].parse::<u64>().is_ok()), "{credit}");
        let said = credit.split("Maximum possible increase: ").nth(1).unwrap_or_default();
        assert!(said.starts_with("50.00 USD, for at most 30 days (until 20"), "{credit}");
        assert!(said.contains(" UTC), set by customer class Gold"), "{said}");

        // A customer's trail starts at its own page: the customer list is not for it.
        let own = app.session(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        for path in [format!("/customers/{customer}/credit"), "/settings/account/billing/balance-details".to_owned()] {
            let r = app.page(&own, "GET", &path, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            assert!(!r.text().contains(r#"href="/customers""#), "{path} links to a page its viewer may not open");
        }
        assert_eq!(app.page(&own, "GET", "/customers", &[]).await.status, 404);
        let r = app.page(&staff, "GET", &format!("/customers/{customer}/credit"), &[]).await;
        assert!(r.text().contains(r#"href="/customers""#), "staff keep the way back to the list");
    });
    off_runtime(move || drop(app));
    drop(runtime);
}

/// A portal form with several wrong fields names each of them at once, not one per try:
/// a billing cycle day and a time zone both wrong, a reseller's credit issue with neither a
/// customer nor an amount.
#[test]
fn every_wrong_field_of_a_portal_form_is_reported_at_once() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let op = app.operator();
        let body = json!({ "client_id": "c", "name": "C", "billing": "postpaid", "currency": "USD" });
        let (customer, _) = usd_customer(&app, body).await;
        let r = app.call(&op, "POST", "/v1/resellers", Some(&json!({ "client_id": "r", "name": "R" }))).await;
        let reseller = r.body["id"].as_u64().unwrap();
        let wallet = json!({ "client_id": "mw", "party": reseller, "kind": "master_wallet", "currency": "USD" });
        assert_eq!(app.call(&op, "POST", "/v1/accounts", Some(&wallet)).await.status, 201);
        let body =
            json!({ "client_id": "rc", "name": "RC", "billing": "prepaid", "currency": "USD", "reseller": reseller });
        let (theirs, theirs_wallet) = usd_customer(&app, body).await;
        let paid =
            json!({ "client_id": "p", "account": theirs_wallet, "amount": "30", "currency": "USD", "method": "cash" });
        let paid = app.call(&op, "POST", "/v1/payments", Some(&paid)).await;
        assert_eq!(paid.status, 201, "{}", paid.text());
        let payment = paid.body["transfer"].as_u64().unwrap();
        let staff = app.session(Role::Operator, Scope::ReadWrite);
        let theirs = theirs.to_string();
        // A reason with a direction override is reported with the rest, not after them alone.
        let cases = [
            (
                format!("/customers/{customer}/billing-settings"),
                vec![("cycle_day", "first"), ("time_zone", "Mars/Base")],
                vec!["cycle_day", "time_zone"],
            ),
            (
                format!("/resellers/{reseller}/issue"),
                vec![("request", "r1"), ("customer", ""), ("amount", "lots"), ("reason", "promo")],
                vec!["customer", "amount"],
            ),
            (
                format!("/resellers/{reseller}/issue"),
                vec![("request", "r2"), ("customer", ""), ("amount", "lots"), ("reason", "pro\u{202e}mo")],
                vec!["customer", "amount", "reason"],
            ),
            (
                format!("/resellers/{reseller}/issue"),
                vec![("request", "r3"), ("customer", &theirs), ("amount", "0"), ("reason", "pro\u{202e}mo")],
                vec!["amount", "reason"],
            ),
            (
                format!("/transfers/{payment}/adjust"),
                vec![("request", "a1"), ("amount", "lots"), ("reason", "wrong\u{1b}[31m")],
                vec!["amount", "reason"],
            ),
        ];
        // Taking part of a payment back: its form has no category to choose (a correction).
        let form = [("request", "a2"), ("amount", "5"), ("reason", "paid twice")];
        let r = app.page(&staff, "POST", &format!("/transfers/{payment}/adjust"), &form).await;
        assert_eq!(r.status, 303, "{}", r.text());
        let account = app.call(&op, "GET", &format!("/v1/accounts/{theirs_wallet}"), None).await;
        assert_eq!(account.body["balance"], "25.00", "{}", account.text());
        for (path, form, wrong) in cases {
            let r = app.page(&staff, "POST", &path, &form).await;
            assert_eq!(r.status, 422, "{path}: {}", r.text());
            for field in wrong {
                assert!(r.text().contains(&format!(r#"id="{field}-error""#)), "{path} names {field}: {}", r.text());
            }
        }
    });
    drop(runtime);
}

/// A customer admin makes a user of its own customer: the form offers no operator user and
/// chooses its customer; a form without a party is told so in words, never asked for an id.
#[test]
fn a_customer_admin_makes_a_user_of_its_own_customer_in_the_portal() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let body = json!({ "client_id": "c", "name": "Acme", "billing": "prepaid", "currency": "USD" });
        let (customer, _) = usd_customer(&app, body).await;
        let admin = app.session(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let page = app.page(&admin, "GET", "/users", &[]).await;
        assert!(!page.text().contains("an operator user"), "{}", page.text());
        let chosen = format!(r#"<option value="{customer}" selected>Acme (customer)</option>"#);
        assert!(page.text().contains(&chosen), "{}", page.text());
        let user = [
            ("email", "ann@example.com"),
            ("name", "Ann"),
            ("password", "correct-horse-battery"),
            ("role", "customer"),
        ];
        let mut form = user.to_vec();
        form.extend([("party", ""), ("scope", "read_write")]);
        let r = app.page(&admin, "POST", "/users", &form).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("choose the reseller or customer the user belongs to"), "{}", r.text());
        assert!(!r.text().contains("give the id"), "{}", r.text());
        let own = customer.to_string();
        let mut form = user.to_vec();
        form.extend([("party", own.as_str()), ("scope", "read_write")]);
        let r = app.page(&admin, "POST", "/users", &form).await;
        assert_eq!(r.status, 303, "{}", r.text());
    });
    drop(runtime);
}

/// A choice a form does not offer, or a deck with a column it does not know, is told in the
/// form's words: before, the page read "Taxed at: is invoice or top_up", "Owner: is
/// operator, reseller:{id} or class:{id}" and "Csv: csv: unknown column", the API's codes.
/// And on a page in Arabic, the field's name and its rule are both Arabic.
#[test]
fn a_choice_a_form_does_not_offer_is_told_in_the_form_s_words() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let op = app.operator();
        let body = json!({ "client_id": "c", "name": "C", "billing": "postpaid", "currency": "USD" });
        let (customer, _) = usd_customer(&app, body).await;
        let plan = app.call(&op, "POST", "/v1/rate-plans", Some(&json!({ "name": "Voice", "currency": "USD" }))).await;
        assert_eq!(plan.status, 201, "{}", plan.text());
        let plan = plan.body["id"].as_u64().unwrap();
        let staff = app.session(Role::Operator, Scope::ReadWrite);
        let cases = [
            (
                format!("/customers/{customer}/taxes"),
                vec![("tax_rate", ""), ("taxed_at", "zzz"), ("tax_id", ""), ("address", "")],
                "Taxed at: choose on its usage invoices or when it tops up",
                "is invoice or top_up",
            ),
            (
                "/dunning".to_owned(),
                vec![
                    ("owner", "zzz"),
                    ("payment_terms_days", "14"),
                    ("reminder_days", "3"),
                    ("suspend_after_days", "30"),
                ],
                "Owner: choose whom the policy is for from the list",
                "{id}",
            ),
            (
                format!("/rate-plans/{plan}/import"),
                vec![("service", "voice"), ("csv", "prefix,price,colour\n44,0.10,red")],
                "Deck: unknown column &quot;colour&quot;",
                "Csv: csv",
            ),
        ];
        for (path, form, told, not) in cases {
            let r = app.page(&staff, "POST", &path, &form).await;
            assert_eq!(r.status, 422, "{path}: {}", r.text());
            assert!(r.text().contains(told), "{path}: {}", r.text());
            assert!(!r.text().contains(not), "{path}: {}", r.text());
        }
        let arabic = app.session(Role::Operator, Scope::ReadWrite);
        assert_eq!(app.page(&arabic, "POST", "/settings/language", &[("lang", "ar")]).await.status, 303);
        let form = [("tax_rate", ""), ("taxed_at", "zzz"), ("tax_id", ""), ("address", "")];
        let r = app.page(&arabic, "POST", &format!("/customers/{customer}/taxes"), &form).await;
        assert!(r.text().contains("وقت فرض الضريبة: اختر في فواتير استخدامه أو عند الشحن"), "{}", r.text());
    });
    drop(runtime);
}

/// A client that opens connections and never finishes a request (its headers trickled, a
/// kept-alive connection left idle, or a body that stops arriving) is cut off after the read
/// timeout (`api.read_timeout_seconds`), and everyone else is answered meanwhile: such
/// connections cannot hold the process's file descriptors, or its handlers, from other callers.
#[test]
fn a_client_that_never_finishes_a_request_is_cut_off_and_holds_no_one_up() {
    use std::io::{Read, Write};
    let url = sqlite_url();
    let key = operator_key(&url);
    let served = Served::start_with(&url, &[("PURSE_API_READ_TIMEOUT_SECONDS", "1")]);
    // A charge whose body stops halfway: refused as a timeout, not as too large, and closed.
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(&served.listen).unwrap();
    let head = format!(
        "POST /v1/charges HTTP/1.1\r\nHost: purse\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: stalled-1\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"client_id\": "
    );
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A portal form whose body stops halfway is told so, and one too large is told that.
    let form = |length: usize, sent: &str| {
        let mut s = std::net::TcpStream::connect(&served.listen).unwrap();
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: purse\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n{sent}"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answered and closed");
        answer
    };
    let stalled = form(200, "email=a%40b.test&pass");
    assert!(stalled.contains("The form stopped arriving before it was whole"), "{stalled}");
    let large = "x".repeat(70 * 1024);
    let too_large = form(large.len() + 6, &format!("email={large}"));
    assert!(too_large.contains("The form is too large to be read"), "{too_large}");
    let healthz = || {
        let mut s = std::net::TcpStream::connect(&served.listen).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: purse\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let stalled: Vec<std::net::TcpStream> = (0..200)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&served.listen).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: purse\r\n").unwrap();
                // never finished
            }
            s
        })
        .collect();
    assert!(healthz().starts_with("HTTP/1.1 200"), "others are answered at once");
    std::thread::sleep(Duration::from_millis(2500));
    for (i, mut s) in stalled.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection {i} is still held open after the header timeout: {e}"),
        }
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 408"), "connection {i} was told: {rest}");
    }
    assert!(healthz().starts_with("HTTP/1.1 200"));
}

/// Creating an API key in the portal answers with a redirect, as every form does, and the
/// page it leads to shows the secret once: reloading it neither shows the secret again nor
/// makes a second key. The keys list names whose each key is, never by number.
#[test]
fn an_api_key_made_in_the_portal_redirects_and_shows_its_secret_once() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let body = json!({ "client_id": "c", "name": "Acme Calls", "billing": "prepaid", "currency": "USD" });
        let (customer, _) = usd_customer(&app, body).await;
        let admin = app.session(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let Auth::Session { cookie: session, .. } = &admin else { unreachable!() };
        let made = app.page(&admin, "POST", "/keys", &[("name", "switch"), ("scope", "read")]).await;
        assert_eq!(made.status, 303, "{}", made.text());
        assert_eq!(made.headers["location"], "/keys");
        let cookies: Vec<String> =
            made.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let carried: Vec<String> = cookies.iter().map(|c| c.split(';').next().unwrap().to_owned()).collect();
        let secret =
            carried.iter().find_map(|c| c.strip_prefix("purse_new_key=")).expect("the secret crosses the redirect");
        assert!(secret.starts_with("purse_"), "{cookies:?}");
        let get = |extra: Vec<String>| {
            let cookie =
                std::iter::once(format!("purse_session={session}")).chain(extra).collect::<Vec<_>>().join("; ");
            app.send(
                axum::http::Request::get("/keys").header("cookie", cookie).body(axum::body::Body::empty()).unwrap(),
            )
        };
        let page = get(carried.clone()).await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains(secret), "shown on the page the form leads to");
        assert!(page.text().contains("The API key “switch” was created"), "{}", page.text());
        assert!(page.text().contains("Customer (Acme Calls)"), "whose key, by name: {}", page.text());
        let cleared = page.headers.get_all("set-cookie").iter().any(|v| {
            let v = v.to_str().unwrap();
            v.starts_with("purse_new_key=;") && v.contains("Max-Age=0")
        });
        assert!(cleared, "the page clears the secret's cookie");
        // Reloaded without it: no secret, and still one key.
        let again = get(Vec::new()).await;
        assert!(!again.text().contains(secret));
        assert_eq!(again.text().matches("<td>switch</td>").count(), 1, "{}", again.text());
        // A secret that is not one of the viewer's keys is never shown.
        let forged = get(vec!["purse_new_key=purse_0000000000000000000000000000000000000000000000000".into()]).await;
        assert!(!forged.text().contains("purse_0000"), "{}", forged.text());
    });
    drop(runtime);
}

/// A form sent twice (a double click, or the browser sending it again after a slow answer)
/// is done once: every form carries an id of its own, and the same form with the same values
/// gets the first answer again, also while the first is still being done. The same form sent
/// back with other values (after "back"), or after it was refused, is done as it comes.
#[test]
fn a_form_sent_twice_is_done_once() {
    let (app, runtime) = in_process();
    runtime.block_on(async {
        let body = json!({ "client_id": "c", "name": "Acme Calls", "billing": "prepaid", "currency": "USD" });
        let (customer, _) = usd_customer(&app, body).await;
        let admin = app.session(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let once = |page: &str| {
            page.split(r#"name="once" value=""#).nth(1).and_then(|r| r.split('"').next()).map(str::to_owned)
        };
        let keys = |page: &str, name: &str| page.matches(&format!("<td>{name}</td>")).count();
        let page = app.page(&admin, "GET", "/keys", &[]).await.text();
        let id = once(&page).expect("every form carries an id of its own");
        let form = [("name", "switch"), ("scope", "read"), ("once", id.as_str())];
        // Sent twice at once: the second waits for the first and gets its answer.
        let (first, second) =
            tokio::join!(app.page(&admin, "POST", "/keys", &form), app.page(&admin, "POST", "/keys", &form));
        let secret = |r: &common::app::Reply| {
            r.headers.get_all("set-cookie").iter().find_map(|v| {
                v.to_str().unwrap().strip_prefix("purse_new_key=").map(|c| c.split(';').next().unwrap().to_owned())
            })
        };
        assert_eq!((first.status.as_u16(), second.status.as_u16()), (303, 303), "{}", second.text());
        assert_eq!(second.headers["location"], "/keys");
        assert!(secret(&first).is_some());
        assert_eq!(secret(&first), secret(&second), "the same key's secret, once made");
        // Sent again later: the same answer, still one key.
        let third = app.page(&admin, "POST", "/keys", &form).await;
        assert_eq!((third.status.as_u16(), secret(&third)), (303, secret(&first)));
        let listed = app.page(&admin, "GET", "/keys", &[]).await.text();
        assert_eq!(keys(&listed, "switch"), 1, "{listed}");
        // The same form sent back with another name is a form of its own.
        let other = [("name", "billing"), ("scope", "read"), ("once", id.as_str())];
        assert_eq!(app.page(&admin, "POST", "/keys", &other).await.status, 303);
        // A refused form is not kept: sent again, corrected, it is done.
        let id = once(&app.page(&admin, "GET", "/keys", &[]).await.text()).unwrap();
        let refused =
            app.page(&admin, "POST", "/keys", &[("name", ""), ("scope", "read"), ("once", id.as_str())]).await;
        assert_eq!(refused.status, 422);
        let again = app.page(&admin, "POST", "/keys", &[("name", ""), ("scope", "read"), ("once", id.as_str())]).await;
        assert_eq!(again.status, 422, "refused again, not replayed");
        let listed = app.page(&admin, "GET", "/keys", &[]).await.text();
        assert_eq!((keys(&listed, "switch"), keys(&listed, "billing")), (1, 1), "{listed}");
        // Another user's form with the same id is that user's own.
        let colleague = app.session(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let theirs = app.page(&colleague, "POST", "/keys", &form).await;
        assert_eq!(theirs.status, 303);
        assert_ne!(secret(&theirs), secret(&first));
        // A form that sets values (here the language) carries no id: going back to an earlier
        // page and choosing again always applies the choice.
        let settings = app.page(&admin, "GET", "/settings", &[]).await.text();
        let language_form =
            settings.split(r#"id="language-form""#).nth(1).and_then(|f| f.split("</form>").next()).unwrap();
        assert!(!language_form.contains(r#"name="once""#), "{language_form}");
        for lang in ["ar", "en", "ar"] {
            assert_eq!(app.page(&admin, "POST", "/settings/language", &[("lang", lang)]).await.status, 303);
        }
        assert!(
            app.page(&admin, "GET", "/settings", &[]).await.text().contains(r#"lang="ar""#),
            "the last choice holds"
        );
    });
    drop(runtime);
}

/// Issue 18, item 4: with the SQLite file on a full file system, writes answer 503
/// `storage_unavailable` with `Retry-After`, `/readyz` says not ready (while `/healthz` says
/// alive), the log says so once, and Purse recovers by itself when space returns. The test
/// mounts a small tmpfs (it runs as root, as the test script does).
#[test]
fn issue_18_a_full_disk_is_a_503_and_purse_recovers_when_space_returns() {
    let dir = std::env::temp_dir().join(id("full-disk"));
    std::fs::create_dir_all(&dir).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mount.success(), "mounting a tmpfs for the disk-full test needs root (scripts/test.sh runs as root in CI)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").args(["-l", self.0.to_str().unwrap()]).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let url = format!("sqlite://{}", dir.join("purse.db").display());
    let key = operator_key(&url);
    let mut served = Served::start_with(&url, &[("PURSE_MAILDIR", dir.join("mail").to_str().unwrap())]);
    let log = served.collect_log();
    let mut c = client(&served.base(), &key);
    assert_eq!(c.send("POST", "/v1/currencies", &json!({ "code": "USD" }), &id("i")).unwrap().status, 201);
    let customer = c.send("POST", "/v1/customers", &json!({ "client_id": "c", "name": "C", "billing": "postpaid", "currency": "USD", "credit_limit": "100000.00" }), &id("i")).unwrap();
    let wallet = customer.json()["wallet"].as_u64().unwrap();
    // Fill the file system to the last byte.
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    let mut small = vec![0u8; 1024];
    while std::io::Write::write_all(&mut f, &small[..]).is_ok() {}
    small.truncate(1);
    while std::io::Write::write_all(&mut f, &small[..]).is_ok() {}
    drop(f);
    let charge = |c: &mut Client| {
        c.send("POST", "/v1/charges", &json!({ "client_id": id("x"), "account": wallet, "amount": "0.01", "currency": "USD", "service": "voice".repeat(12) }), &id("i")).unwrap()
    };
    let mut refused = None;
    for _ in 0..2000 {
        let r = charge(&mut c);
        if r.status != 201 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the disk filled up");
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (503, Some("storage_unavailable")), "{}", r.json());
    assert_eq!(r.header("retry-after"), Some("1"));
    for _ in 0..5 {
        assert_eq!(charge(&mut c).status, 503);
    }
    assert_eq!(c.get("/readyz").unwrap().status, 503, "not ready while writes fail");
    assert_eq!(c.get("/healthz").unwrap().status, 200, "alive all the same");
    // Space returns: Purse recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_for(10, "ready once space returns", || c.get("/readyz").is_ok_and(|r| r.status == 200));
    assert_eq!(charge(&mut c).status, 201);
    served.stop();
    let log = log.lock().unwrap();
    let said = log.iter().filter(|l| l.contains("storage unavailable")).count();
    assert_eq!(said, 1, "logged once, not per request: {log:?}");
    let opened = purse::open_store(&url).unwrap();
    assert!(opened.reader.audit().unwrap().is_consistent());
}
