//! Postpaid credit control end to end through the API, on SQLite and PostgreSQL: temporary
//! increases that stop counting at *valid until* whatever the scheduler does, the maximum
//! possible increase (amounts, percentages, validity; class before reseller), the credit
//! limit history, subscriber-to-subscriber transfers under the class policy and the funds
//! check (also concurrently), the audit log, and bad input.

mod common;

use common::*;
use purse::client::Client;
use purse_core::{Role, Scope, Timestamp};
use purse_engine::Clock;
use serde_json::{json, Value};

const HOUR: i64 = 3600 * 1_000_000;
const DAY: i64 = 24 * HOUR;

world!();

fn iso_time(t: Timestamp) -> String {
    purse_core::time::format(t)
}

impl World {
    fn new(url: &str) -> World {
        World(common::world::World::with(url, common::world::Options { credit: true, ..Default::default() }))
    }

    /// Refused with 422: the error's (field, code, message).
    fn refused(&mut self, method: &str, path: &str, body: Value) -> (String, String, String) {
        let (status, reply) = self.send(method, path, body);
        assert_eq!(status, 422, "{method} {path}: {reply}");
        let e = &reply["error"];
        (
            e["field"].as_str().unwrap_or("").to_owned(),
            e["code"].as_str().unwrap().to_owned(),
            e["message"].as_str().unwrap().to_owned(),
        )
    }

    fn customer(&mut self, name: &str, billing: &str, limit: &str, reseller: Option<u64>) -> (u64, u64) {
        let mut body =
            json!({ "client_id": name, "name": name, "billing": billing, "currency": "USD", "credit_limit": limit });
        if let Some(r) = reseller {
            body["reseller"] = json!(r);
        }
        let c = self.call("POST", "/v1/customers", body);
        (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap())
    }

    fn charge(&mut self, account: u64, amount: &str) -> (u16, Value) {
        self.send("POST", "/v1/charges", json!({ "client_id": key(), "account": account, "amount": amount, "currency": "USD", "refuse_if_insufficient": true }))
    }

    fn account(&mut self, id: u64) -> Value {
        self.get(&format!("/v1/accounts/{id}"))
    }

    fn history(&mut self, account: u64) -> Vec<Value> {
        self.get(&format!("/v1/accounts/{account}/credit-history"))["data"].as_array().unwrap().clone()
    }
}

#[test]
fn issue_7_a_temporary_increase_lets_a_charge_through_until_valid_until_even_with_the_scheduler_late() {
    for url in both_backends("credit_increase") {
        let mut w = World::new(&url);
        let (customer, wallet) = w.customer("Initech", "postpaid", "100", None);
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/alert-settings"),
            json!({ "billing_email": "i@initech.test", "warning_thresholds": "120" }),
        );
        // The permanent limit refuses a charge of 150.
        let (status, body) = w.charge(wallet, "150");
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("insufficient_funds")), "{body}");

        let until = w.clock.now().plus_micros(DAY);
        let iso = iso_time(until);
        w.call(
            "PATCH",
            &format!("/v1/accounts/{wallet}"),
            json!({ "temporary_increase": { "amount": "60", "valid_until": iso }, "reason": "month-end traffic" }),
        );
        let (status, body) = w.charge(wallet, "150");
        assert_eq!(status, 201, "the increase lets it through: {body}");
        let first = body["transfer"].as_u64().unwrap();
        w.call("POST", "/v1/reversals", json!({ "client_id": "undo-1", "transfer": first }));
        assert_eq!(w.account(wallet)["balance"], "0.00");

        // One microsecond before valid until it still counts; at valid until it never does,
        // and the scheduler has not run (it is late).
        w.clock.set(until.plus_micros(-1));
        assert_eq!(w.get(&format!("/v1/accounts/{wallet}/spendable"))["available"], "160.00");
        w.clock.set(until);
        assert_eq!(w.get(&format!("/v1/accounts/{wallet}/spendable"))["available"], "100.00");
        let (status, body) = w.charge(wallet, "150");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("insufficient_funds")),
            "the same charge is refused after valid until: {body}"
        );
        w.clock.advance_micros(3 * HOUR);
        let (status, _) = w.charge(wallet, "150");
        assert_eq!(status, 422, "and three hours later, with the scheduler still late");
        assert_eq!(w.history(wallet).len(), 1, "no revert recorded before the scheduler runs");

        // The late scheduler records the revert as of valid until, once.
        let report = w.notifier.step().unwrap();
        assert_eq!(report.reverted, 1);
        assert_eq!(w.notifier.step().unwrap().reverted, 0, "a second pass reverts nothing");
        // Available fell from 160 to 100 at valid until: the warning at 120 fires for it (once
        // more after the charge's crossing and the reversal's way back up).
        let warnings = w.get(&format!("/v1/notifications?customer={customer}"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "warning" && n["threshold"] == "120.00")
            .count();
        assert_eq!(warnings, 2, "{}", w.get(&format!("/v1/notifications?customer={customer}")));
        let history = w.history(wallet);
        assert_eq!(history.len(), 2, "{history:?}");
        let revert = &history[1];
        assert_eq!(revert["kind"], "revert");
        assert_eq!(revert["at"], iso, "the revert is dated valid until");
        assert_eq!(revert["recorded_at"], iso_time(w.clock.now()), "and recorded when the scheduler ran");
        assert_eq!(revert["old"]["effective"], "160.00");
        assert_eq!(revert["new"]["effective"], "100.00");
        assert_eq!(revert["by"], "scheduler");
        assert!(w.account(wallet)["temporary_increase"].is_null());
        let (status, _) = w.charge(wallet, "150");
        assert_eq!(status, 422);
        drop(w);
    }
}

#[test]
fn issue_7_the_credit_limit_history_records_every_change_with_who_when_old_new_and_why() {
    let mut w = World::new(&sqlite_url());
    let (_, wallet) = w.customer("Globex", "postpaid", "100", None);
    let t1 = w.clock.now();
    w.call("PATCH", &format!("/v1/accounts/{wallet}"), json!({ "credit_limit": "200", "reason": "annual review" }));
    w.clock.advance_micros(60_000_000);
    let until = w.clock.now().plus_micros(2 * DAY);
    w.call(
        "PATCH",
        &format!("/v1/accounts/{wallet}"),
        json!({ "temporary_increase": { "percent": "25", "valid_until": iso_time(until) } }),
    );
    w.call(
        "PATCH",
        &format!("/v1/accounts/{wallet}"),
        json!({ "temporary_increase": null, "reason": "no longer needed" }),
    );
    // Setting what is already set records nothing.
    w.call("PATCH", &format!("/v1/accounts/{wallet}"), json!({ "credit_limit": "200" }));
    let h = w.history(wallet);
    assert_eq!(h.len(), 3, "{h:?}");
    let who = format!("key {}", w.key_id);
    assert_eq!((h[0]["kind"].as_str(), h[0]["at"].as_str()), (Some("permanent"), Some(iso_time(t1).as_str())));
    assert_eq!(
        (h[0]["old"]["credit_limit"].as_str(), h[0]["new"]["credit_limit"].as_str()),
        (Some("100.00"), Some("200.00"))
    );
    assert_eq!((h[0]["by"].as_str(), h[0]["reason"].as_str()), (Some(who.as_str()), Some("annual review")));
    assert_eq!(h[1]["kind"], "temporary");
    assert_eq!(h[1]["new"]["temporary_increase"]["amount"], "50.00", "25 % of the permanent 200");
    assert_eq!(h[1]["new"]["effective"], "250.00");
    assert!(h[1]["reason"].is_null());
    assert_eq!(
        (h[2]["kind"].as_str(), h[2]["new"]["effective"].as_str(), h[2]["reason"].as_str()),
        (Some("temporary"), Some("200.00"), Some("no longer needed"))
    );
    // The audit log holds the same changes.
    let audit = w.get("/v1/audit-log?entity=credit_limit");
    assert_eq!(audit["data"].as_array().unwrap().len(), 3, "{audit}");
    // An increase that ran out before the scheduler came is recorded as reverted (dated valid
    // until) when the next change arrives first; the scheduler then has nothing to do.
    let until = w.clock.now().plus_micros(HOUR);
    w.call(
        "PATCH",
        &format!("/v1/accounts/{wallet}"),
        json!({ "temporary_increase": { "amount": "20", "valid_until": iso_time(until) } }),
    );
    w.clock.set(until.plus_micros(5_000_000));
    let later = iso_time(w.clock.now().plus_micros(DAY));
    w.call(
        "PATCH",
        &format!("/v1/accounts/{wallet}"),
        json!({ "temporary_increase": { "amount": "30", "valid_until": later }, "reason": "again" }),
    );
    let h = w.history(wallet);
    let kinds: Vec<&str> = h.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["permanent", "temporary", "temporary", "temporary", "revert", "temporary"]);
    assert_eq!((h[4]["at"].as_str(), h[4]["by"].as_str()), (Some(iso_time(until).as_str()), Some("scheduler")));
    assert_eq!(
        (h[5]["old"]["effective"].as_str(), h[5]["new"]["effective"].as_str()),
        (Some("200.00"), Some("230.00"))
    );
    assert_eq!(w.notifier.step().unwrap().reverted, 0);
    assert_eq!(audit["data"][2]["before"]["credit_limit"], "100.00");
    assert_eq!(audit["data"][2]["after"]["credit_limit"], "200.00");
    drop(w);
}

#[test]
fn issue_7_the_maximum_possible_increase_is_enforced_for_amounts_percentages_and_validity() {
    for url in both_backends("credit_maximum") {
        let mut w = World::new(&url);
        let reseller = w.call("POST", "/v1/resellers", json!({ "client_id": "north", "name": "Northwind" }))["id"]
            .as_u64()
            .unwrap();
        let (customer, wallet) = w.customer("Umbrella", "postpaid", "200", Some(reseller));
        w.call(
            "PUT",
            &format!("/v1/resellers/{reseller}/credit-settings"),
            json!({ "maximum_increase": { "amount": "80", "days": 10 } }),
        );
        let soon = iso_time(w.clock.now().plus_micros(DAY));
        let path = format!("/v1/accounts/{wallet}");

        let (field, code, message) =
            w.refused("PATCH", &path, json!({ "temporary_increase": { "amount": "80.01", "valid_until": soon } }));
        assert_eq!((field.as_str(), code.as_str()), ("temporary_increase.amount", "above_maximum_increase"));
        assert!(
            message.contains("80.00 USD") && message.contains("reseller Northwind"),
            "the refusal states the maximum: {message}"
        );
        let (field, _, message) =
            w.refused("PATCH", &path, json!({ "temporary_increase": { "percent": "40.01", "valid_until": soon } }));
        assert_eq!(field, "temporary_increase.amount", "40.01 % of 200 is 80.02: {message}");
        let late = iso_time(w.clock.now().plus_micros(10 * DAY + 1_000_000));
        let (field, code, message) =
            w.refused("PATCH", &path, json!({ "temporary_increase": { "amount": "10", "valid_until": late } }));
        assert_eq!((field.as_str(), code.as_str()), ("temporary_increase.valid_until", "above_maximum_increase"));
        assert!(message.contains("10 days"), "{message}");
        assert!(w.account(wallet)["temporary_increase"].is_null(), "refusals change nothing");
        assert!(w.history(wallet).is_empty());
        // At the maximum it is accepted (40 % of 200 = 80).
        w.call("PATCH", &path, json!({ "temporary_increase": { "percent": "40", "valid_until": soon } }));
        assert_eq!(w.account(wallet)["temporary_increase"]["amount"], "80.00");

        // A class that sets a maximum comes before the reseller's.
        let class = w.call(
            "POST",
            "/v1/customer-classes",
            json!({ "name": "Silver", "subscriber_transfers": false, "maximum_increase": { "percent": 25 } }),
        );
        w.call("PUT", &format!("/v1/customers/{customer}/credit-settings"), json!({ "class": class["id"] }));
        let (_, code, message) =
            w.refused("PATCH", &path, json!({ "temporary_increase": { "amount": "51", "valid_until": soon } }));
        assert_eq!(code, "above_maximum_increase");
        assert!(
            message.contains("50.00 USD") && message.contains("25%") && message.contains("customer class Silver"),
            "{message}"
        );
        w.call("PATCH", &path, json!({ "temporary_increase": { "amount": "50", "valid_until": late } }));
        let settings = w.get(&format!("/v1/customers/{customer}/credit-settings"));
        assert_eq!(settings["maximum_increase"]["amount"], "50.00", "{settings}");
        assert_eq!(settings["effective_credit_limit"], "250.00");
        assert_eq!(settings["class"]["name"], "Silver");

        // Bad input names its field and rule, and changes nothing.
        let (zero_customer, zero) = w.customer("Zero", "postpaid", "0", None);
        let (field, code, _) = w.refused(
            "PATCH",
            &format!("/v1/accounts/{zero}"),
            json!({ "temporary_increase": { "percent": "10", "valid_until": soon } }),
        );
        assert_eq!((field.as_str(), code.as_str()), ("temporary_increase.percent", "percent_needs_positive_limit"));
        let (_, prepaid) = w.customer("Prepaid", "prepaid", "0", None);
        let (field, code, _) = w.refused(
            "PATCH",
            &format!("/v1/accounts/{prepaid}"),
            json!({ "temporary_increase": { "amount": "10", "valid_until": soon } }),
        );
        assert_eq!((field.as_str(), code.as_str()), ("temporary_increase", "prepaid_customer"));
        let past = iso_time(w.clock.now().plus_micros(-1));
        let (field, code, _) =
            w.refused("PATCH", &path, json!({ "temporary_increase": { "amount": "10", "valid_until": past } }));
        assert_eq!(
            (field.as_str(), code.as_str()),
            ("temporary_increase.valid_until", "valid_until_must_be_in_future")
        );
        let (field, code, _) = w.refused(
            "PATCH",
            &path,
            json!({ "temporary_increase": { "amount": "10", "percent": "5", "valid_until": soon } }),
        );
        assert_eq!((field.as_str(), code.as_str()), ("temporary_increase.amount", "amount_or_percent"));
        let (field, _, _) = w.refused(
            "PUT",
            &format!("/v1/resellers/{reseller}/credit-settings"),
            json!({ "maximum_increase": { "percent": 0 } }),
        );
        assert_eq!(field, "maximum_increase.percent");
        let (field, _, _) = w.refused(
            "PUT",
            &format!("/v1/customers/{zero_customer}/credit-settings"),
            json!({ "subscriber_transfers": "maybe" }),
        );
        assert_eq!(field, "subscriber_transfers");
        assert_eq!(w.account(wallet)["temporary_increase"]["amount"], "50.00", "nothing accepted before was changed");
        drop(w);
    }
}

#[test]
fn issue_7_subscriber_transfers_obey_the_class_policy_and_the_funds_check_also_concurrently() {
    for url in both_backends("credit_transfers") {
        let mut w = World::new(&url);
        let (customer, wallet) = w.customer("Hooli", "prepaid", "0", None);
        let open = |w: &mut World, name: &str, kind: &str| {
            w.call("POST", "/v1/accounts", json!({ "client_id": name, "party": customer, "kind": kind }))["id"]
                .as_u64()
                .unwrap()
        };
        let a = open(&mut w, "sub-a", "subscriber_debit");
        let b = open(&mut w, "sub-b", "subscriber_debit");
        let c = w.call(
            "POST",
            "/v1/accounts",
            json!({ "client_id": "sub-c", "party": customer, "kind": "subscriber_credit", "credit_limit": "30" }),
        )["id"]
            .as_u64()
            .unwrap();
        w.call(
            "POST",
            "/v1/payments",
            json!({ "client_id": "fund-a", "account": a, "amount": "100", "currency": "USD", "method": "cash" }),
        );
        w.call("POST", "/v1/payments", json!({ "client_id": "fund-wallet", "account": wallet, "amount": "100", "currency": "USD", "method": "cash" }));
        let transfer = |w: &mut World, source: u64, target: u64, amount: &str| {
            w.send(
                "POST",
                "/v1/transfers",
                json!({ "client_id": key(), "source": source, "target": target, "amount": amount, "currency": "USD" }),
            )
        };

        // No class, "as defined by the customer class": not allowed.
        let (status, body) = transfer(&mut w, a, b, "10");
        assert_eq!(
            (status, body["error"]["code"].as_str(), body["error"]["field"].as_str()),
            (422, Some("transfers_not_allowed"), Some("source")),
            "{body}"
        );
        let class = w.call("POST", "/v1/customer-classes", json!({ "name": "Family", "subscriber_transfers": true }));
        w.call("PUT", &format!("/v1/customers/{customer}/credit-settings"), json!({ "class": class["id"] }));
        assert_eq!(transfer(&mut w, a, b, "10").0, 201, "the class allows it");
        w.call("PUT", &format!("/v1/customers/{customer}/credit-settings"), json!({ "subscriber_transfers": "no" }));
        assert_eq!(transfer(&mut w, a, b, "10").0, 422, "the customer's No overrides the class");
        w.call(
            "PUT",
            &format!("/v1/customer-classes/{}", class["id"]),
            json!({ "name": "Family", "subscriber_transfers": false }),
        );
        w.call("PUT", &format!("/v1/customers/{customer}/credit-settings"), json!({ "subscriber_transfers": "yes" }));
        assert_eq!(transfer(&mut w, a, b, "10").0, 201, "the customer's Yes overrides the class");
        // A credit account with its own limit sends and receives too (it draws on the wallet).
        assert_eq!(transfer(&mut w, c, b, "30").0, 201);
        let (status, body) = transfer(&mut w, c, b, "0.01");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("insufficient_funds")),
            "past its own limit: {body}"
        );

        // Another customer's account, another currency: refused, naming the field.
        let (_, other_wallet) = w.customer("Other", "prepaid", "0", None);
        let (status, body) = transfer(&mut w, a, other_wallet, "1");
        assert_eq!(
            (status, body["error"]["field"].as_str(), body["error"]["code"].as_str()),
            (422, Some("target"), Some("other_customer")),
            "{body}"
        );
        w.call("POST", "/v1/currencies", json!({ "code": "EUR" }));
        let (status, body) = w.send(
            "POST",
            "/v1/transfers",
            json!({ "client_id": key(), "source": a, "target": b, "amount": "1", "currency": "EUR" }),
        );
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("currency_mismatch")), "{body}");
        assert_eq!(w.account(a)["balance"], "80.00", "refused transfers change nothing");
        assert_eq!(w.account(b)["balance"], "50.00");

        // The ledger applies the setting and the transfers in order: in one batch, a transfer
        // after "not allowed" is refused and one after "allowed" passes.
        let engine = w.servers[0].engine.clone();
        let money = purse_core::Money {
            amount: purse_core::Amount(100),
            currency: purse_core::CurrencyCode::parse("USD").unwrap(),
        };
        let transfer_cmd = |n: &str| purse_core::Command::Transfer {
            client_id: cid(n),
            source: purse_core::AccountId(a),
            target: purse_core::AccountId(b),
            money,
            kind: purse_core::TransferKind::Transfer,
            metadata: None,
            note: None,
        };
        let party = purse_core::PartyId(customer);
        let results = engine
            .submit(vec![
                purse_core::Item::single(purse_core::Command::SetSubscriberTransfers { party, allowed: false }),
                purse_core::Item::single(transfer_cmd("in-order-1")),
                purse_core::Item::single(purse_core::Command::SetSubscriberTransfers { party, allowed: true }),
                purse_core::Item::single(transfer_cmd("in-order-2")),
            ])
            .unwrap();
        assert_eq!(rejected(&results[1]), "transfers_not_allowed");
        assert!(results[3].is_ok(), "{:?}", results[3]);
        assert_eq!(w.account(a)["balance"], "79.00");
        assert_eq!(w.account(b)["balance"], "51.00");
        w.call(
            "POST",
            "/v1/transfers",
            json!({ "client_id": "back", "source": b, "target": a, "amount": "1", "currency": "USD" }),
        );

        // 40 concurrent transfers of 5 from 80: exactly 16 pass, the rest are refused.
        let base = format!("http://{}", w.servers[0].addr);
        let secret = w.secret.clone();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (base, secret) = (base.clone(), secret.clone());
                std::thread::spawn(move || {
                    let mut api = Client::new(&base, Some(secret)).unwrap();
                    let mut ok = 0;
                    for i in 0..5 {
                        let body = json!({ "client_id": format!("race-{t}-{i}"), "source": a, "target": b, "amount": "5", "currency": "USD" });
                        let reply = api.send("POST", "/v1/transfers", &body, &key()).unwrap();
                        match reply.status {
                            201 => ok += 1,
                            422 => assert_eq!(reply.json()["error"]["code"], "insufficient_funds"),
                            s => panic!("unexpected {s}: {}", reply.json()),
                        }
                    }
                    ok
                })
            })
            .collect();
        let passed: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(passed, 16);
        assert_eq!(w.account(a)["balance"], "0.00");
        assert_eq!(w.account(b)["balance"], "130.00");
        drop(w);
    }
}

/// A customer's own user moves funds between its accounts in the portal (seed 003's
/// subscriber-to-subscriber transfers): refused naming the account while they are not
/// allowed; moved once allowed, and once even when the form is sent twice; above what is
/// available, refused naming the amount. Staff are not offered the form, and are refused it.
#[test]
fn a_customer_moves_funds_between_its_own_accounts_in_the_portal() {
    let mut w = World::new(&sqlite_url());
    let (customer, _) = w.customer("Hooli", "prepaid", "0", None);
    let open = |w: &mut World, name: &str| {
        let body = json!({ "client_id": name, "party": customer, "kind": "subscriber_debit" });
        w.call("POST", "/v1/accounts", body)["id"].as_u64().unwrap()
    };
    let (a, b) = (open(&mut w, "sub-a"), open(&mut w, "sub-b"));
    w.call(
        "POST",
        "/v1/payments",
        json!({ "client_id": "fund-a", "account": a, "amount": "100", "currency": "USD", "method": "cash" }),
    );
    let balance =
        |w: &mut World, account: u64| w.get(&format!("/v1/accounts/{account}"))["balance"].as_str().unwrap().to_owned();
    let mut admin = w.portal(Role::Customer(purse_core::PartyId(customer)), Scope::ReadWrite);
    let path = format!("/customers/{customer}");
    let (_, page) = admin.get(&path);
    assert!(page.contains("Move funds between accounts") && page.contains(">sub-a<"), "{page}");
    let request = common::world::Portal::hidden(&page, "request").unwrap();
    let (a_text, b_text) = (a.to_string(), b.to_string());
    let form = |amount: &'static str, request: &str| {
        vec![
            ("from", a_text.clone()),
            ("to", b_text.clone()),
            ("amount", amount.to_owned()),
            ("request", request.to_owned()),
        ]
    };
    let send = |admin: &mut common::world::Portal, fields: Vec<(&'static str, String)>| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        admin.post(&format!("{path}/transfers"), &fields)
    };
    let (status, body) = send(&mut admin, form("10", &request));
    assert_eq!(status, 422, "not allowed yet: {body}");
    assert!(body.contains(r#"id="from-error""#) && body.contains(r#"value="10""#), "{body}");
    w.call("PUT", &format!("/v1/customers/{customer}/credit-settings"), json!({ "subscriber_transfers": "yes" }));
    for _ in 0..2 {
        let (status, body) = send(&mut admin, form("10", &request));
        assert_eq!(status, 303, "{body}");
    }
    assert_eq!((balance(&mut w, a), balance(&mut w, b)), ("90.00".to_owned(), "10.00".to_owned()), "moved once");
    let (_, page) = admin.get(&path);
    assert!(page.contains("Moved 10.00 USD from sub-a to sub-b."), "{page}");
    let fresh = common::world::Portal::hidden(&page, "request").unwrap();
    let (status, body) = send(&mut admin, form("1000", &fresh));
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="amount-error""#) && body.contains("insufficient funds"), "{body}");
    let (status, body) = send(
        &mut admin,
        vec![("from", a_text.clone()), ("to", a_text.clone()), ("amount", "x".into()), ("request", fresh.clone())],
    );
    assert_eq!(status, 422);
    assert!(
        body.contains(r#"id="to-error""#) && body.contains(r#"id="amount-error""#),
        "every wrong field at once: {body}"
    );
    // The operator may, on the customer's behalf, with a reason (checked with the rest).
    let mut operator = w.portal(Role::Operator, Scope::ReadWrite);
    let (_, page) = operator.get(&path);
    assert!(page.contains("Move funds between accounts") && page.contains(r#"name="reason""#), "{page}");
    let on_behalf = |amount: &'static str, reason: &'static str| {
        vec![
            ("from", a_text.clone()),
            ("to", b_text.clone()),
            ("amount", amount.to_owned()),
            ("reason", reason.to_owned()),
            ("request", format!("op-{amount}")),
        ]
    };
    let (status, body) = send(&mut operator, on_behalf("x", "bell\u{7}"));
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="amount-error""#) && body.contains(r#"id="reason-error""#), "{body}");
    assert_eq!(send(&mut operator, on_behalf("5", "moved at the customer's call")).0, 303);
    assert_eq!((balance(&mut w, a), balance(&mut w, b)), ("85.00".to_owned(), "15.00".to_owned()));
    // A reseller never moves money out of its customer's accounts (the policy's
    // `may_move_from`): no form, and refused naming the account.
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "north", "name": "North" }))["id"].as_u64().unwrap();
    let (theirs, _) = w.customer("Initech", "prepaid", "0", Some(reseller));
    let body = json!({ "client_id": "sub-i", "party": theirs, "kind": "subscriber_debit" });
    let i = w.call("POST", "/v1/accounts", body)["id"].as_u64().unwrap();
    let mut partner = w.portal(Role::Reseller(purse_core::PartyId(reseller)), Scope::ReadWrite);
    let theirs_path = format!("/customers/{theirs}");
    assert!(!partner.get(&theirs_path).1.contains("Move funds between accounts"));
    let wallet_i = w.get(&format!("/v1/customers/{theirs}"))["wallet"].as_u64().unwrap();
    let (i_text, wallet_text) = (i.to_string(), wallet_i.to_string());
    let fields = [("from", i_text.as_str()), ("to", wallet_text.as_str()), ("amount", "1"), ("request", "r-1")];
    let (status, body) = partner.post(&format!("{theirs_path}/transfers"), &fields);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("From: money leaves a customer's account only by the customer's own transfer"), "{body}");
    // Another reseller's customer is not found.
    assert_eq!(partner.post(&format!("{path}/transfers"), &fields).0, 404);
    assert_eq!(balance(&mut w, a), "85.00");
}

#[test]
fn issue_7_the_audit_log_records_settings_changes_made_through_the_api_with_before_and_after() {
    let mut w = World::new(&sqlite_url());
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "north", "name": "Northwind" }))["id"].as_u64().unwrap();
    let (customer, _) = w.customer("Initech", "postpaid", "100", Some(reseller));
    let (other, _) = w.customer("Other", "postpaid", "100", None);
    w.call(
        "PUT",
        &format!("/v1/customers/{customer}/alert-settings"),
        json!({ "billing_email": "a@initech.test", "warning_thresholds": "50" }),
    );
    w.call(
        "PUT",
        &format!("/v1/customers/{customer}/alert-settings"),
        json!({ "billing_email": "b@initech.test", "warning_thresholds": "50, 20" }),
    );
    w.call(
        "PUT",
        &format!("/v1/customers/{customer}/recharge-settings"),
        json!({ "enabled": false, "method": "invoice", "threshold": "10", "recharge_amount": "50" }),
    );
    w.call(
        "POST",
        "/v1/low-balance-profiles",
        json!({ "name": "Std", "reseller": reseller, "currency": "USD", "max_quantity": 1, "period_hours": 24 }),
    );
    w.call("PUT", &format!("/v1/customers/{other}/alert-settings"), json!({ "billing_email": "x@other.test" }));

    let log = w.get(&format!("/v1/audit-log?party={customer}&entity=alert_settings"));
    let rows = log["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log}");
    assert_eq!(rows[0]["actor"], format!("key {}", w.key_id));
    assert_eq!(rows[0]["before"]["billing_email"], "a@initech.test", "newest first, with before");
    assert_eq!(rows[0]["after"]["billing_email"], "b@initech.test", "and after");
    assert_eq!(rows[0]["after"]["warning_thresholds"], "50.00, 20.00");
    let all = w.get("/v1/audit-log?limit=500");
    let entities: Vec<&str> = all["data"].as_array().unwrap().iter().map(|e| e["entity"].as_str().unwrap()).collect();
    for e in ["alert_settings", "recharge_settings", "profile"] {
        assert!(entities.contains(&e), "{e} in {entities:?}");
    }
    // Pages continue from next_before; a filter by actor finds them all.
    let page = w.get("/v1/audit-log?limit=2");
    let next = page["next_before"].as_u64().expect("more pages");
    let rest = w.get(&format!("/v1/audit-log?limit=500&before={next}"));
    assert_eq!(rest["data"].as_array().unwrap().len() + 2, entities.len());
    let actor = format!("key {}", w.key_id);
    let by_key = all["data"].as_array().unwrap().iter().filter(|e| e["actor"] == actor.as_str()).count();
    let key_id = w.key_id;
    let mine = w.get(&format!("/v1/audit-log?limit=500&actor=key%20{key_id}"));
    assert_eq!(mine["data"].as_array().unwrap().len(), by_key);
    assert!(by_key >= 5, "{all}");
    // The key this test made on the command line is in it too, made by `cli`.
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "cli" && e["entity"] == "api_key" && e["after"]["role"] == "operator"),
        "{all}"
    );

    // A reseller's key sees its own customers' changes, not another's.
    let opened = purse::open_store(&w.servers[0].url).unwrap();
    let (_, secret) = purse::keys::create(
        &opened,
        "reseller",
        Role::Reseller(purse_core::PartyId(reseller)),
        Scope::Read,
        w.clock.now(),
    )
    .unwrap();
    let mut theirs = Client::new(&format!("http://{}", w.servers[0].addr), Some(secret)).unwrap();
    let seen = theirs.get("/v1/audit-log?limit=500").unwrap().json();
    let parties: Vec<u64> = seen["data"].as_array().unwrap().iter().filter_map(|e| e["party"].as_u64()).collect();
    assert!(!parties.is_empty() && parties.iter().all(|p| *p == customer || *p == reseller), "{seen}");
    assert_eq!(
        theirs.get(&format!("/v1/audit-log?party={other}")).unwrap().status,
        404,
        "another tenant's party is not found"
    );
    drop(w);
}
