//! Money back and collections through the API, on SQLite and PostgreSQL (issue 24):
//! adjustments by category against their own system accounts, dunning reminders, suspension
//! and its lifting.

mod common;

use common::*;
use purse_engine::Clock;
use serde_json::{json, Value};

world!();

impl World {
    fn new(url: &str) -> World {
        World(common::world::World::with(url, common::world::Options { credit: true, ..Default::default() }))
    }

    fn customer(&mut self, name: &str, billing: &str, limit: &str) -> (u64, u64) {
        let body =
            json!({ "client_id": name, "name": name, "billing": billing, "currency": "USD", "credit_limit": limit });
        let c = self.call("POST", "/v1/customers", body);
        (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap())
    }

    fn charge(&mut self, account: u64, amount: &str) -> (u16, Value) {
        self.send(
            "POST",
            "/v1/charges",
            json!({ "client_id": key(), "account": account, "amount": amount, "currency": "USD" }),
        )
    }

    fn balance(&mut self, account: u64) -> String {
        self.get(&format!("/v1/accounts/{account}"))["balance"].as_str().unwrap().to_owned()
    }

    fn adjust(&mut self, account: u64, direction: &str, category: &str, amount: &str, reason: &str) -> (u16, Value) {
        self.send(
            "POST",
            "/v1/adjustments",
            json!({ "client_id": key(), "account": account, "amount": amount, "currency": "USD",
                    "direction": direction, "category": category, "reason": reason }),
        )
    }

    /// The balance of the system account with `role`.
    fn system(&mut self, role: &str) -> String {
        let all = self.get("/v1/balances");
        let row = all["accounts"].as_array().unwrap().iter().find(|a| a["system_role"] == role).cloned();
        row.unwrap_or_else(|| panic!("no {role} account in {all}"))["balance"].as_str().unwrap().to_owned()
    }
}

/// The error's fields, in order.
fn fields(body: &Value) -> Vec<String> {
    body["error"]["errors"].as_array().map_or_else(
        || vec![body["error"]["field"].as_str().unwrap_or_default().to_owned()],
        |all| all.iter().map(|e| e["field"].as_str().unwrap_or_default().to_owned()).collect(),
    )
}

#[test]
fn issue_24_adjustments_are_booked_by_category_against_their_own_accounts_and_listed() {
    for url in both_backends("issue_24_adjustments") {
        let mut w = World::new(&url);
        let (customer, wallet) = w.customer("Initech", "postpaid", "100");
        assert_eq!(w.charge(wallet, "60.00").0, 201);
        assert_eq!(w.balance(wallet), "-60.00");

        // Goodwill raises the balance, booked against the goodwill account.
        let (status, body) = w.adjust(wallet, "credit", "goodwill", "5.00", "outage on 3 Dec");
        assert_eq!(status, 201, "{body}");
        assert_eq!((w.balance(wallet), w.system("goodwill")), ("-55.00".into(), "-5.00".into()));
        // Goodwill never lowers one.
        let (status, body) = w.adjust(wallet, "debit", "goodwill", "5.00", "taking it back");
        assert_eq!((status, fields(&body)), (422, vec!["direction".to_owned()]), "{body}");
        assert_eq!(body["error"]["code"], "category_only_raises");

        // A write-off gives up what is owed, at most down to zero.
        let (status, body) = w.adjust(wallet, "credit", "write_off", "100.00", "customer in liquidation");
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("above_what_is_owed")), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("55.00 USD"), "{body}");
        let (status, body) = w.adjust(wallet, "credit", "write_off", "55.00", "customer in liquidation");
        assert_eq!(status, 201, "{body}");
        assert_eq!((w.balance(wallet), w.system("write_offs")), ("0.00".into(), "-55.00".into()));
        let (status, body) = w.adjust(wallet, "credit", "write_off", "1.00", "again");
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("nothing_owed")), "{body}");

        // Every wrong field at once, and nothing posted.
        let (status, body) = w.send(
            "POST",
            "/v1/adjustments",
            json!({ "client_id": key(), "account": wallet, "amount": "abc", "currency": "USD",
                    "direction": "sideways", "category": "gift", "reason": " " }),
        );
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["amount", "category", "direction", "reason"], "{body}");
        assert_eq!(w.balance(wallet), "0.00");

        // A correction goes either way, against the adjustments account; no category is a correction.
        let (status, body) = w.send(
            "POST",
            "/v1/adjustments",
            json!({ "client_id": key(), "account": wallet, "amount": "3.00", "currency": "USD",
                    "direction": "debit", "reason": "usage posted late" }),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!((w.balance(wallet), w.system("adjustments")), ("-3.00".into(), "3.00".into()));

        // Listed newest first with who, why, which way and what category.
        let list = w.get(&format!("/v1/adjustments?customer={customer}"));
        let rows = list["data"].as_array().unwrap();
        let seen: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r["category"].as_str().unwrap(),
                    r["direction"].as_str().unwrap(),
                    r["amount"].as_str().unwrap(),
                    r["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("correction", "debit", "3.00", "usage posted late"),
                ("write_off", "credit", "55.00", "customer in liquidation"),
                ("goodwill", "credit", "5.00", "outage on 3 Dec"),
            ],
            "{list}"
        );
        assert!(rows.iter().all(|r| r["account"] == wallet && r["customer"] == customer), "{list}");
        // And each is in the audit log with its category.
        let log = w.get(&format!("/v1/audit-log?party={customer}&entity=transfer"));
        let categories: Vec<&str> =
            log["data"].as_array().unwrap().iter().map(|e| e["after"]["category"].as_str().unwrap()).collect();
        assert_eq!(categories, ["correction", "write_off", "goodwill"], "{log}");
        drop(w);
    }
}

impl World {
    fn billing(url: &str) -> World {
        World(common::world::World::with(
            url,
            common::world::Options { credit: true, recharges: true, ..Default::default() },
        ))
    }

    /// The kinds in the customer's notification log, oldest first.
    fn notices(&mut self, customer: u64) -> Vec<String> {
        let log = self.get(&format!("/v1/notifications?customer={customer}"));
        let mut kinds: Vec<String> =
            log["data"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap().to_owned()).collect();
        kinds.reverse();
        kinds
    }

    fn days(&mut self, n: i64) {
        self.clock.advance_micros(n * DAY);
        self.step();
        self.step();
    }

    fn suspended(&mut self, customer: u64) -> Value {
        self.get(&format!("/v1/customers/{customer}/suspension"))
    }
}

const DAY: i64 = 86_400 * 1_000_000;

#[test]
fn issue_24_an_overdue_invoice_is_reminded_then_suspends_and_paying_it_lifts_the_suspension_at_once() {
    for url in both_backends("issue_24_dunning") {
        let mut w = World::billing(&url);
        let (customer, wallet) = w.customer("Hooli", "postpaid", "500");
        w.call("PUT", &format!("/v1/customers/{customer}/alert-settings"), json!({ "billing_email": "ap@hooli.test" }));
        // Bad policies are refused whole, naming each field, and nothing is saved.
        let (status, body) = w.send(
            "PUT",
            "/v1/dunning-policies",
            json!({ "owner": "operator", "payment_terms_days": 400, "reminder_days": [7, 3],
                    "reminder_texts": ["Dear {name}"], "suspend_after_days": 0, "suspend_below": "50" }),
        );
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(
            got,
            ["payment_terms_days", "reminder_days", "reminder_texts", "suspend_after_days", "suspend_below"],
            "{body}"
        );
        assert_eq!(w.get("/v1/dunning-policies")["data"], json!([]));
        // The first reminder has a text of its own; the second says the standard one.
        let first = "Dear {customer}, invoice {invoice} ({amount_due}) was due on {due_on}, {days_overdue} days ago. \
                     Suspension after {suspend_after} days.";
        let policy_of = |terms: u32| {
            json!({ "owner": "operator", "payment_terms_days": terms, "reminder_days": [3, 7],
                    "reminder_texts": [first], "suspend_after_days": 10 })
        };
        let policy = w.call("PUT", "/v1/dunning-policies", policy_of(14));
        assert_eq!(
            (policy["reminder_days"].clone(), policy["reminder_texts"][0].as_str()),
            (json!([3, 7]), Some(first))
        );

        assert_eq!(w.charge(wallet, "60.00").0, 201);
        let invoice = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        let invoice_id = invoice["id"].as_u64().unwrap();
        // Sent, its due date is fixed by the terms then: a later change of terms moves it not.
        w.step();
        let due_at = w.get(&format!("/v1/invoices/{invoice_id}"))["due_at"].as_str().unwrap().to_owned();
        let issued = purse_core::time::parse(invoice["created_at"].as_str().unwrap()).unwrap();
        assert_eq!(purse_core::time::parse(&due_at).unwrap().0 - issued.0, 14 * 86_400 * 1_000_000, "{due_at}");
        w.call("PUT", "/v1/dunning-policies", policy_of(30));
        assert_eq!(w.get(&format!("/v1/invoices/{invoice_id}"))["due_at"], due_at.as_str());
        w.call("PUT", "/v1/dunning-policies", policy_of(14));
        let sent = w.messages().into_iter().find(|m| m.subject.contains("Invoice INV-")).expect("the invoice e-mail");
        let text = sent.raw.replace("=\r\n", "").replace("=\n", "");
        assert!(text.contains(&format!("due on {}", &due_at[..10])), "{text}");
        w.days(14);
        assert!(!w.notices(customer).contains(&"invoice_overdue".to_owned()), "due today, not overdue yet");
        w.days(3);
        w.days(1);
        let reminders = |w: &mut World| w.notices(customer).iter().filter(|k| *k == "invoice_overdue").count();
        assert_eq!(reminders(&mut w), 1, "the 3-day reminder, once: {:?}", w.notices(customer));
        let unfolded = |w: &World| -> Vec<String> {
            w.messages()
                .into_iter()
                .filter(|m| m.subject.starts_with("Reminder:"))
                .map(|m| m.raw.replace("=\r\n", "").replace("=\n", ""))
                .collect()
        };
        let sent = unfolded(&w);
        let wanted = format!(
            "Dear Hooli, invoice {} (60.00 USD) was due on {}",
            invoice["number"].as_str().unwrap(),
            purse_core::time::format_short(purse_core::time::parse(&due_at).unwrap())
        );
        assert!(sent.len() == 1 && sent[0].contains(&wanted), "{wanted} in {sent:?}");
        assert!(sent[0].contains("3 days ago. Suspension after 10 days."), "{sent:?}");
        w.days(4);
        assert_eq!(reminders(&mut w), 2, "the 7-day reminder: {:?}", w.notices(customer));
        let sent = unfolded(&w);
        assert!(sent.iter().any(|m| m.contains("of it is still unpaid")), "the standard text: {sent:?}");
        assert_eq!(w.suspended(customer)["suspended"], false);

        // Ten days overdue: suspended; it spends nothing, but money still comes in.
        w.days(3);
        let standing = w.suspended(customer);
        assert_eq!(standing["suspended"], true, "{standing}");
        assert_eq!(standing["current"]["cause"], "overdue");
        assert!(standing["current"]["detail"].as_str().unwrap().ends_with("days overdue"), "{standing}");
        let (status, body) = w.charge(wallet, "1.00");
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("suspended")), "{body}");
        let expires = purse_core::time::format(w.clock.now().plus_micros(DAY));
        let (status, body) = w.send(
            "POST",
            "/v1/holds",
            json!({ "client_id": key(), "account": wallet, "amount": "1.00", "currency": "USD",
                    "expires_at": expires }),
        );
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("suspended")), "{body}");
        assert_eq!(w.get(&format!("/v1/accounts/{wallet}"))["status"], "suspended");
        w.days(1);
        assert_eq!(w.notices(customer).iter().filter(|k| *k == "suspended").count(), 1, "told once");

        // Paying the invoice lifts the suspension in the step that allocates the payment.
        w.call(
            "POST",
            &format!("/v1/invoices/{invoice_id}/payments"),
            json!({ "method": "bank_transfer", "amount": "60.00", "currency": "USD" }),
        );
        w.step();
        let standing = w.suspended(customer);
        assert_eq!(standing["suspended"], false, "{standing}");
        assert_eq!(standing["history"][0]["lift_reason"], "what was overdue is paid");
        assert_eq!(w.charge(wallet, "1.00").0, 201);
        let kinds = w.notices(customer);
        assert!(kinds.ends_with(&["suspension_lifted".to_owned()]) || kinds.contains(&"suspension_lifted".to_owned()));
        let log = w.get(&format!("/v1/audit-log?party={customer}&entity=suspension"));
        let actions: Vec<&str> =
            log["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["lift", "suspend"], "{log}");

        // Staff suspend by hand, with a reason; the scheduler does not lift that; staff do.
        let (status, body) =
            w.send("PUT", &format!("/v1/customers/{customer}/suspension"), json!({ "suspended": true, "reason": " " }));
        assert_eq!((status, fields(&body)), (422, vec!["reason".to_owned()]), "{body}");
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/suspension"),
            json!({ "suspended": true, "reason": "fraud check" }),
        );
        w.days(1);
        assert_eq!(w.suspended(customer)["current"]["cause"], "staff");
        assert_eq!(w.charge(wallet, "1.00").0, 422);
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/suspension"),
            json!({ "suspended": false, "reason": "cleared" }),
        );
        assert_eq!(w.charge(wallet, "1.00").0, 201);
        drop(w);
    }
}

#[test]
fn issue_24_a_prepaid_balance_below_the_floor_suspends_and_a_payment_lifts_it() {
    for url in both_backends("issue_24_floor") {
        let mut w = World::billing(&url);
        let (customer, wallet) = w.customer("Pied Piper", "prepaid", "0");
        w.call("PUT", "/v1/dunning-policies", json!({ "owner": "operator", "suspend_below": "-5.00" }));
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/alert-settings"),
            json!({ "billing_email": "ap@piedpiper.test" }),
        );
        w.call(
            "POST",
            "/v1/payments",
            json!({ "client_id": key(), "account": wallet, "amount": "10.00", "currency": "USD", "method": "cash" }),
        );
        // A late usage record may overdraw a prepaid balance; below the floor it suspends.
        assert_eq!(w.charge(wallet, "18.00").0, 201);
        w.days(1);
        assert_eq!(w.suspended(customer)["current"]["cause"], "negative_balance");
        assert_eq!(w.charge(wallet, "1.00").0, 422);
        // Suspended, it is still recharged automatically: that is how the money comes back.
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/recharge-settings"),
            json!({ "enabled": true, "method": "invoice", "threshold": "0", "recharge_amount": "20" }),
        );
        w.step();
        let recharges = w.get(&format!("/v1/recharges?customer={customer}"));
        assert_eq!(recharges["data"].as_array().unwrap().len(), 1, "a top-up invoice while suspended: {recharges}");
        w.call(
            "POST",
            "/v1/payments",
            json!({ "client_id": key(), "account": wallet, "amount": "20.00", "currency": "USD", "method": "cash" }),
        );
        w.step();
        assert_eq!(w.suspended(customer)["suspended"], false);
        assert_eq!(w.charge(wallet, "1.00").0, 201);
        drop(w);
    }
}

impl World {
    /// The receipt voucher of the customer's newest payment (made by the notifier's step).
    fn last_receipt(&mut self, customer: u64) -> Value {
        self.step();
        self.get(&format!("/v1/receipts?customer={customer}"))["data"][0].clone()
    }
}

#[test]
fn issue_24_a_payment_is_refunded_in_part_never_above_what_was_paid_and_its_allocations_follow() {
    for url in both_backends("issue_24_refunds") {
        let mut w = World::billing(&url);
        let (customer, wallet) = w.customer("Umbrella", "postpaid", "100");
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/alert-settings"),
            json!({ "billing_email": "ap@umbrella.test" }),
        );
        assert_eq!(w.charge(wallet, "30.00").0, 201);
        let invoice = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        let invoice_id = invoice["id"].as_u64().unwrap();
        w.call(
            "POST",
            "/v1/payments",
            json!({ "client_id": key(), "account": wallet, "amount": "50.00", "currency": "USD", "method": "bank_transfer" }),
        );
        let receipt = w.last_receipt(customer);
        let receipt_id = receipt["id"].as_u64().unwrap();
        assert_eq!(w.get(&format!("/v1/invoices/{invoice_id}"))["status"], "paid");

        // Bad input: every wrong field at once, nothing changed.
        let (status, body) =
            w.send("POST", "/v1/refunds", json!({ "receipt": receipt_id, "amount": "abc", "reason": " " }));
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["amount", "reason"], "{body}");
        let (status, body) =
            w.send("POST", "/v1/refunds", json!({ "receipt": receipt_id, "amount": "50.01", "reason": "too much" }));
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("above_refundable")), "{body}");
        assert_eq!(w.balance(wallet), "20.00");

        // 25.00 back: the balance, the number, and the invoice's allocation (only 25.00 of the
        // payment is left, the invoice was paid with 30.00 of it).
        let key = "refund-once";
        let body = json!({ "receipt": receipt_id, "amount": "25.00", "reason": "double payment" });
        let first = w.api.send("POST", "/v1/refunds", &body, key).unwrap();
        assert_eq!(first.status, 201, "{}", first.json());
        let refund = first.json();
        assert_eq!((refund["status"].as_str(), refund["number"].as_str()), (Some("succeeded"), Some("RF-0-000001")));
        let again = w.api.send("POST", "/v1/refunds", &body, key).unwrap().json();
        assert_eq!(again["id"], refund["id"], "a repeated request is the same refund");
        assert_eq!(w.balance(wallet), "-5.00");
        w.step();
        let invoice = w.get(&format!("/v1/invoices/{invoice_id}"));
        assert_eq!(
            (invoice["status"].as_str(), invoice["due"].as_str()),
            (Some("partially_paid"), Some("5.00")),
            "{invoice}"
        );
        // What is left to refund is 25.00: more is refused, naming it.
        let (status, body) =
            w.send("POST", "/v1/refunds", json!({ "receipt": receipt_id, "amount": "25.01", "reason": "again" }));
        assert_eq!(status, 422, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("25.00 USD"), "{body}");
        let list = w.get(&format!("/v1/refunds?customer={customer}"));
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
        assert!(w.notices(customer).contains(&"refund".to_owned()));
        // The ledger's posting: a refund from the wallet to the bank clearing account, audited.
        let journal = w.get(&format!("/v1/accounts/{wallet}/journal?kind=refund"));
        assert_eq!(journal["data"].as_array().unwrap().len(), 1, "{journal}");
        let log = w.get(&format!("/v1/audit-log?party={customer}&entity=transfer"));
        assert!(log["data"].as_array().unwrap().iter().any(|e| e["action"] == "refund"), "{log}");
        // The refund receipt: a PDF, e-mailed to the billing e-mail with it attached.
        let pdf = w.api.get(&format!("/v1/refunds/{}/pdf", refund["id"])).unwrap();
        assert!(pdf.status == 200 && pdf.body.starts_with(b"%PDF"), "a PDF");
        w.step();
        let mail = w.messages().into_iter().find(|m| m.subject.starts_with("Refund RF-0-000001"));
        let mail = mail.unwrap_or_else(|| {
            panic!("the refund's e-mail: {:?}", w.messages().iter().map(|m| m.subject.clone()).collect::<Vec<_>>())
        });
        assert!(mail.raw.contains("RF-0-000001.pdf"), "with its PDF attached");
        drop(w);
    }
}

#[test]
fn issue_24_credit_notes_credit_an_invoice_by_lines_or_amount_never_above_it_and_go_where_staff_say() {
    for url in both_backends("issue_24_credit_notes") {
        let mut w = World::billing(&url);
        let (customer, wallet) = w.customer("Soylent", "postpaid", "100");
        for (amount, service) in [("20.00", "voice"), ("10.00", "sms")] {
            let body = json!({ "client_id": key(), "account": wallet, "amount": amount, "currency": "USD", "service": service });
            w.call("POST", "/v1/charges", body);
        }
        let invoice = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        let invoice_id = invoice["id"].as_u64().unwrap();
        assert_eq!(invoice["amount"], "30.00");

        // Every wrong field at once; nothing credited.
        let (status, body) = w.send(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": invoice_id, "lines": ["fax"], "apply": "sideways", "reason": " " }),
        );
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["apply", "lines", "reason"], "{body}");

        // The SMS line, off what the invoice asks: numbered, the balance raised.
        let note = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": invoice_id, "lines": ["sms"], "reason": "SMS gateway outage" }),
        );
        assert_eq!((note["number"].as_str(), note["amount"].as_str()), (Some("CN-0-000001"), Some("10.00")), "{note}");
        assert_eq!(w.balance(wallet), "-20.00");
        let shown = w.get(&format!("/v1/invoices/{invoice_id}"));
        assert_eq!((shown["due"].as_str(), shown["credited"].as_str()), (Some("20.00"), Some("10.00")), "{shown}");

        // Never above what is left of the invoice, nor above what it asks when applied to it.
        let (status, body) =
            w.send("POST", "/v1/credit-notes", json!({ "invoice": invoice_id, "amount": "20.01", "reason": "x" }));
        assert_eq!((status, fields(&body)), (422, vec!["amount".to_owned()]), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("20.00 USD is left"), "{body}");
        w.call("POST", "/v1/credit-notes", json!({ "invoice": invoice_id, "amount": "15.00", "reason": "goodwill" }));
        let (status, body) = w.send(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": invoice_id, "amount": "5.01", "reason": "x", "apply": "balance" }),
        );
        assert_eq!((status, fields(&body)), (422, vec!["amount".to_owned()]), "{body}");
        // The rest to the balance: the invoice still asks 5.00, the balance shows the credit.
        let last = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": invoice_id, "amount": "5.00", "apply": "balance", "reason": "rounding" }),
        );
        assert_eq!(last["number"], "CN-0-000003");
        assert_eq!(w.balance(wallet), "0.00", "-30.00 + 10.00 + 15.00 + 5.00");
        let shown = w.get(&format!("/v1/invoices/{invoice_id}"));
        assert_eq!(
            (shown["due"].as_str(), shown["status"].as_str()),
            (Some("5.00"), Some("partially_paid")),
            "{shown}"
        );
        assert_eq!(shown["credit_notes"].as_array().unwrap().len(), 3);
        let (status, body) =
            w.send("POST", "/v1/credit-notes", json!({ "invoice": invoice_id, "amount": "0.01", "reason": "x" }));
        assert_eq!(status, 422, "{body}");
        // Its PDF.
        let pdf = w.api.get(&format!("/v1/credit-notes/{}/pdf", note["id"])).unwrap();
        assert_eq!(pdf.status, 200);
        assert!(pdf.body.starts_with(b"%PDF"), "a PDF");
        // A payment of what is left pays it.
        w.call(
            "POST",
            &format!("/v1/invoices/{invoice_id}/payments"),
            json!({ "method": "cash", "amount": "5.00", "currency": "USD" }),
        );
        w.step();
        assert_eq!(w.get(&format!("/v1/invoices/{invoice_id}"))["status"], "paid");
        drop(w);
    }
}

/// Issue 24's story, on both backends: three months of a postpaid customer with usage,
/// invoices with VAT, a card payment refunded in part through localstripe, a credit note
/// (with its VAT) applied to the next invoice, a goodwill adjustment, an invoice going
/// overdue → reminder → suspension → payment → lifted; the balance, the tax owed, the
/// invoices and Stripe reconciled against a model kept here to the last cent.
#[test]
fn issue_24_three_months_of_money_back_and_collections_reconcile_to_the_cent() {
    let stripe = LocalStripe::start();
    for url in both_backends("issue_24_story") {
        let options =
            common::world::Options { payments: stripe.config(), recharges: true, credit: true, ..Default::default() };
        let mut w = World(common::world::World::with(&url, options));
        let at = |text: &str| purse_core::time::parse(text).unwrap();
        // The model: the balance and the tax owed in cents, each movement as the story makes it.
        let (mut model, mut owed): (i64, i64) = (0, 0);
        let cents = |v: &Value| -> i64 { v.as_str().unwrap().replace('.', "").parse().unwrap() };
        let (customer, wallet) = w.customer("Story Inc", "postpaid", "500");
        w.call("PUT", &format!("/v1/customers/{customer}/alert-settings"), json!({ "billing_email": "ap@story.test" }));
        w.call(
            "PUT",
            "/v1/dunning-policies",
            json!({ "owner": "operator", "payment_terms_days": 10, "reminder_days": [3], "suspend_after_days": 7 }),
        );
        // 10 % VAT added to its invoices.
        let vat = w.call("POST", "/v1/tax-rates", json!({ "name": "VAT", "percent": "10" }));
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/tax-settings"),
            json!({ "tax_rate": vat["id"], "tax_id": "GB999", "address": "1 Story Street" }),
        );
        // Month 1: a card payment of 50.00 and 150.00 of usage.
        w.call(
            "POST",
            &format!("/v1/customers/{customer}/card"),
            json!({ "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123" }),
        );
        w.call("POST", &format!("/v1/customers/{customer}/pay-now"), json!({ "amount": "50" }));
        model += 5000;
        for (amount, service) in [("120.00", "voice"), ("30.00", "sms")] {
            let body = json!({ "client_id": key(), "account": wallet, "amount": amount, "currency": "USD", "service": service });
            w.call("POST", "/v1/charges", body);
        }
        model -= 15000;
        // Month 2: the first invoice, 150.00 and 15.00 VAT; the card payment goes to it.
        w.clock.set(at("2026-10-01T00:01:00Z"));
        w.step();
        w.step();
        let i1 = w.get(&format!("/v1/invoices?customer={customer}"))["data"][0].clone();
        let i1_id = i1["id"].as_u64().unwrap();
        assert_eq!(
            (i1["net"].as_str(), i1["tax"]["amount"].as_str(), i1["amount"].as_str(), i1["due"].as_str()),
            (Some("150.00"), Some("15.00"), Some("165.00"), Some("115.00")),
            "{i1}"
        );
        (model, owed) = (model - 1500, owed + 1500);
        // 20.00 of the card payment back through Stripe: the invoice asks 20.00 more.
        let receipt = w.get(&format!("/v1/receipts?customer={customer}"))["data"][0]["id"].as_u64().unwrap();
        let refund =
            w.call("POST", "/v1/refunds", json!({ "receipt": receipt, "amount": "20.00", "reason": "partly unused" }));
        assert_eq!(refund["status"], "succeeded", "{refund}");
        model -= 2000;
        // A goodwill adjustment; the invoice paid by bank transfer.
        w.call(
            "POST",
            "/v1/adjustments",
            json!({ "client_id": key(), "account": wallet, "amount": "10.00", "currency": "USD", "direction": "credit",
                    "category": "goodwill", "reason": "sorry" }),
        );
        model += 1000;
        w.step();
        let shown = w.get(&format!("/v1/invoices/{i1_id}"));
        assert_eq!(shown["due"], "135.00", "165.00 − 30.00 left of the card payment: {shown}");
        w.call(
            "POST",
            &format!("/v1/invoices/{i1_id}/payments"),
            json!({ "method": "bank_transfer", "amount": "135.00", "currency": "USD" }),
        );
        model += 13500;
        w.step();
        assert_eq!(w.get(&format!("/v1/invoices/{i1_id}"))["status"], "paid");
        // A credit note for the paid invoice's SMS line with its VAT, 33.00, kept as credit:
        // the next invoice draws on it.
        let note = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": i1_id, "lines": ["sms"], "apply": "unallocated", "reason": "SMS outage" }),
        );
        assert_eq!((note["amount"].as_str(), note["tax"]["amount"].as_str()), (Some("33.00"), Some("3.00")), "{note}");
        (model, owed) = (model + 3300, owed - 300);
        // Month 2's usage; month 3's invoice, 88.00 with VAT less the 33.00 credit, goes unpaid:
        // due on the 11th, reminded on the 14th, suspended on the 18th; paying lifts it.
        w.call(
            "POST",
            "/v1/charges",
            json!({ "client_id": key(), "account": wallet, "amount": "80.00", "currency": "USD", "service": "voice" }),
        );
        model -= 8000;
        w.clock.set(at("2026-11-01T00:01:00Z"));
        w.step();
        w.step();
        let i2 = w.get(&format!("/v1/invoices?customer={customer}"))["data"][0].clone();
        let i2_id = i2["id"].as_u64().unwrap();
        (model, owed) = (model - 800, owed + 800);
        let i2 = w.get(&format!("/v1/invoices/{i2_id}"));
        assert_eq!(
            (i2["amount"].as_str(), i2["due"].as_str(), i2["credits_drawn"][0]["amount"].as_str()),
            (Some("88.00"), Some("55.00"), Some("33.00")),
            "{i2}"
        );
        w.clock.set(at("2026-11-14T09:00:00Z"));
        w.step();
        assert!(w.notices(customer).contains(&"invoice_overdue".to_owned()));
        assert_eq!(w.suspended(customer)["suspended"], false);
        w.clock.set(at("2026-11-18T09:00:00Z"));
        w.step();
        assert_eq!(w.suspended(customer)["suspended"], true);
        assert_eq!(w.charge(wallet, "1.00").0, 422);
        w.call(
            "POST",
            &format!("/v1/invoices/{i2_id}/payments"),
            json!({ "method": "bank_transfer", "amount": "55.00", "currency": "USD" }),
        );
        model += 5500;
        w.step();
        assert_eq!(w.suspended(customer)["suspended"], false);
        assert_eq!(w.get(&format!("/v1/invoices/{i2_id}"))["status"], "paid");
        // Reconciled: the balance to the cent, every account summing to zero, Stripe's refund.
        assert_eq!(cents(&json!(w.balance(wallet))), model, "the balance is the model's");
        assert_eq!(cents(&json!(w.system("tax_payable"))), owed, "the tax owed is the model's");
        let all = w.get("/v1/balances");
        assert_eq!(all["totals"]["USD"]["all_accounts"], "0.00", "double entry: {}", all["totals"]);
        let intent = w.get(&format!("/v1/recharges?customer={customer}"))["data"][0]["payment_intent"]
            .as_str()
            .unwrap()
            .to_owned();
        let refunds = stripe.get(&format!("/v1/refunds?payment_intent={intent}&limit=100"));
        let at_stripe: Vec<i64> =
            refunds["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
        assert_eq!(at_stripe, [2000], "one refund of 20.00 at Stripe");
        let kinds = w.notices(customer);
        for kind in ["refund", "invoice_overdue", "suspended", "suspension_lifted"] {
            assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
        }
        drop(w);
    }
}

#[test]
fn issue_24_invoices_carry_tax_added_or_included_and_the_balance_owes_exactly_it() {
    for url in both_backends("issue_24_taxes") {
        let mut w = World::billing(&url);
        // Bad rates are refused naming each field.
        let (status, body) = w.send("POST", "/v1/tax-rates", json!({ "name": " ", "percent": "150" }));
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["name", "percent"], "{body}");
        let vat = w.call("POST", "/v1/tax-rates", json!({ "name": "VAT", "percent": "20" }));
        let gst = w.call("POST", "/v1/tax-rates", json!({ "name": "GST", "percent": "7.25", "inclusive": true }));
        assert_eq!((vat["percent"].as_str(), gst["percent"].as_str()), (Some("20"), Some("7.25")));
        let (added, wallet_a) = w.customer("Added Ltd", "postpaid", "500");
        let (inside, wallet_b) = w.customer("Inside Ltd", "postpaid", "500");
        let (status, body) = w.send(
            "PUT",
            &format!("/v1/customers/{added}/tax-settings"),
            json!({ "tax_rate": 999, "tax_id": "GB\u{0}1", "address": "1 High St" }),
        );
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["tax_id", "tax_rate"], "{body}");
        w.call(
            "PUT",
            &format!("/v1/customers/{added}/tax-settings"),
            json!({ "tax_rate": vat["id"], "tax_id": "GB123456789", "address": "1 High Street\nLondon" }),
        );
        w.call("PUT", &format!("/v1/customers/{inside}/tax-settings"), json!({ "tax_rate": gst["id"] }));
        w.charge(wallet_a, "100.00");
        w.charge(wallet_b, "10.00");

        // Added: 100.00 net, 20.00 VAT, 120.00 asked; the balance owes the tax too, once.
        let a = w.call("POST", &format!("/v1/customers/{added}/invoices"), json!({}));
        assert_eq!(
            (a["net"].as_str(), a["tax"]["amount"].as_str(), a["amount"].as_str(), a["due"].as_str()),
            (Some("100.00"), Some("20.00"), Some("120.00"), Some("120.00")),
            "{a}"
        );
        w.step();
        w.step();
        assert_eq!(w.balance(wallet_a), "-120.00", "usage and the tax it adds");
        let journal = w.get(&format!("/v1/accounts/{wallet_a}/journal?kind=adjustment"));
        assert_eq!(journal["data"].as_array().unwrap().len(), 1, "the tax is booked once: {journal}");
        // Inside: 10.00 asked, of which 0.68 GST on a net of 9.32.
        let b = w.call("POST", &format!("/v1/customers/{inside}/invoices"), json!({}));
        assert_eq!(
            (b["net"].as_str(), b["tax"]["amount"].as_str(), b["amount"].as_str()),
            (Some("9.32"), Some("0.68"), Some("10.00")),
            "{b}"
        );
        w.step();
        assert_eq!(w.balance(wallet_b), "-10.00", "inclusive tax is inside the usage");
        // Paying the gross clears the balance to zero; the tax payable account holds 20.00.
        w.call(
            "POST",
            &format!("/v1/invoices/{}/payments", a["id"]),
            json!({ "method": "bank_transfer", "amount": "120.00", "currency": "USD" }),
        );
        w.step();
        assert_eq!(w.balance(wallet_a), "0.00");
        assert_eq!(w.get(&format!("/v1/invoices/{}", a["id"]))["status"], "paid");
        assert_eq!(w.system("tax_payable"), "20.00");
        // The PDF carries the address, the tax id and the tax line.
        let pdf = w.api.get(&format!("/v1/invoices/{}/pdf", a["id"])).unwrap();
        let text = String::from_utf8_lossy(&pdf.body).to_string();
        for wanted in ["GB123456789", "High Street", "VAT 20%", "Total with tax"] {
            assert!(text.contains(wanted), "{wanted} in the PDF");
        }
        drop(w);
    }
}

#[test]
fn issue_24_tax_rounding_is_carried_and_a_credit_note_gives_back_its_tax() {
    for url in both_backends("issue_24_tax_carry") {
        // USD kept to 4 digits, as telecom rates are; invoices are payable in cents.
        let options = common::world::Options { credit: true, recharges: true, usd: false, ..Default::default() };
        let mut w = World(common::world::World::with(&url, options));
        w.call("POST", "/v1/currencies", json!({ "code": "USD", "scale": 4 }));
        let rate = w.call("POST", "/v1/tax-rates", json!({ "name": "Sales tax", "percent": "7.25" }));
        let (customer, wallet) = w.customer("Carry Co", "postpaid", "500");
        w.call("PUT", &format!("/v1/customers/{customer}/tax-settings"), json!({ "tax_rate": rate["id"] }));
        // 7.25 % of 33.33 is 2.416425: 2.42 on the first invoice, carrying -0.0036 (at the
        // scale of 4: 2.4164), so the second asks 2.41 and the two add up to the taxes exactly.
        let mut taxes = Vec::new();
        for _ in 0..2 {
            w.charge(wallet, "33.33");
            let i = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
            taxes.push((i["tax"]["amount"].as_str().unwrap().to_owned(), i["amount"].as_str().unwrap().to_owned()));
            w.days(1);
        }
        assert_eq!(
            taxes,
            [("2.4200".to_owned(), "35.7500".to_owned()), ("2.4100".to_owned(), "35.7400".to_owned())],
            "the tax's rounding difference is carried"
        );
        w.step();
        assert_eq!(w.balance(wallet), "-71.4900", "usage 66.66 and tax 4.83");
        assert_eq!(w.system("tax_payable"), "4.8300");

        // A credit note for the first invoice's line: the line and its tax come back, the tax
        // from what is owed.
        let first = w.get(&format!("/v1/invoices?customer={customer}"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["tax"]["amount"] == "2.4200")
            .cloned()
            .unwrap();
        let service =
            w.get(&format!("/v1/invoices/{}", first["id"]))["lines"][0]["service"].as_str().unwrap().to_owned();
        let note = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": first["id"], "lines": [service], "reason": "line billed in error" }),
        );
        assert_eq!(
            (note["amount"].as_str(), note["net"].as_str(), note["tax"]["amount"].as_str()),
            (Some("35.7500"), Some("33.3300"), Some("2.4200")),
            "{note}"
        );
        assert_eq!(w.get(&format!("/v1/invoices/{}", first["id"]))["status"], "paid", "credited whole");
        assert_eq!(w.balance(wallet), "-35.7400");
        assert_eq!(w.system("tax_payable"), "2.4100");
        // An amount is a gross with the tax inside: of 10.00, 0.6760 at the scale, less the
        // -0.0036 the first credit note carried, is 0.67 tax and 9.33 net.
        let second = w.get(&format!("/v1/invoices?customer={customer}"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["tax"]["amount"] == "2.4100")
            .cloned()
            .unwrap();
        let note = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": second["id"], "amount": "10.00", "reason": "goodwill" }),
        );
        assert_eq!((note["net"].as_str(), note["tax"]["amount"].as_str()), (Some("9.3300"), Some("0.6700")), "{note}");
        assert_eq!(w.balance(wallet), "-25.7400");
        assert_eq!(w.system("tax_payable"), "1.7400");
        let pdf = w.api.get(&format!("/v1/credit-notes/{}/pdf", note["id"])).unwrap();
        let text = String::from_utf8_lossy(&pdf.body).to_string();
        for wanted in ["Net", "Sales tax 7.25%", "Amount credited with tax"] {
            assert!(text.contains(wanted), "{wanted} in the credit note's PDF");
        }
        drop(w);
    }
}

#[test]
fn issue_24_prepaid_usage_taxed_at_top_up_leaves_the_net_to_spend_and_invoices_untaxed() {
    for url in both_backends("issue_24_tax_top_up") {
        let mut w = World::billing(&url);
        let vat = w.call("POST", "/v1/tax-rates", json!({ "name": "VAT", "percent": "20" }));
        let (customer, wallet) = w.customer("Prepaid Plc", "prepaid", "0");
        w.billing_email(customer, "prepaid");
        let (status, body) = w.send(
            "PUT",
            &format!("/v1/customers/{customer}/tax-settings"),
            json!({ "tax_rate": vat["id"], "taxed_at": "later" }),
        );
        assert_eq!((status, fields(&body)), (422, vec!["taxed_at".to_owned()]), "{body}");
        let set = w.call(
            "PUT",
            &format!("/v1/customers/{customer}/tax-settings"),
            json!({ "tax_rate": vat["id"], "taxed_at": "top_up" }),
        );
        assert_eq!(set["taxed_at"], "top_up");
        // 120.00 paid by hand: 20.00 of it is VAT, owed; 100.00 is left to spend.
        w.call(
            "POST",
            "/v1/payments",
            json!({ "client_id": key(), "account": wallet, "amount": "120.00", "currency": "USD", "method": "cash" }),
        );
        let receipt = w.last_receipt(customer);
        assert_eq!((receipt["net"].as_str(), receipt["tax"]["amount"].as_str()), (Some("100.00"), Some("20.00")));
        w.step();
        assert_eq!(w.balance(wallet), "100.00");
        assert_eq!(w.system("tax_payable"), "20.00");
        w.step();
        assert_eq!(w.system("tax_payable"), "20.00", "booked once");
        let pdf = w.api.get(&format!("/v1/receipts/{}/pdf", receipt["id"])).unwrap();
        let text = String::from_utf8_lossy(&pdf.body).to_string();
        assert!(text.contains("VAT 20%") && text.contains("Net"), "the receipt shows its tax");

        // Its usage invoice carries no tax: it was paid at top-up.
        w.charge(wallet, "30.00");
        let i = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        assert_eq!((i["amount"].as_str(), i["tax"].is_null()), (Some("30.00"), true), "{i}");

        // A top-up invoice for 50.00 asks 60.00 with its VAT; paid, the balance gains 50.00.
        w.call(
            "PUT",
            &format!("/v1/customers/{customer}/recharge-settings"),
            json!({ "enabled": true, "method": "invoice", "threshold": "80", "recharge_amount": "50" }),
        );
        w.step();
        let top_up = w.get(&format!("/v1/invoices?customer={customer}"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "top_up")
            .cloned()
            .expect("a top-up invoice");
        assert_eq!(
            (top_up["net"].as_str(), top_up["tax"]["amount"].as_str(), top_up["amount"].as_str()),
            (Some("50.00"), Some("10.00"), Some("60.00")),
            "{top_up}"
        );
        let pdf = w.api.get(&format!("/v1/invoices/{}/pdf", top_up["id"])).unwrap();
        let text = String::from_utf8_lossy(&pdf.body).to_string();
        for wanted in ["VAT 20%", "Total with tax", "60.00"] {
            assert!(text.contains(wanted), "{wanted} in the top-up invoice's PDF");
        }
        let mail = w.messages().into_iter().find(|m| m.subject.contains("Top-up invoice")).expect("its e-mail");
        let body = mail.raw.replace("=\r\n", "").replace("=\n", "");
        assert!(body.contains("VAT 20%: 10.00 USD, to pay 60.00 USD"), "{body}");
        let receipts: Vec<String> = w
            .messages()
            .into_iter()
            .filter(|m| m.subject.contains("RV-"))
            .map(|m| m.raw.replace("=\r\n", "").replace("=\n", ""))
            .collect();
        assert!(
            receipts.iter().any(|r| r.contains("Of which VAT 20%: 20.00 USD; 100.00 USD is added to the balance.")),
            "{receipts:?}"
        );
        w.call(
            "POST",
            &format!("/v1/invoices/{}/payments", top_up["id"]),
            json!({ "method": "bank_transfer", "amount": "60.00", "currency": "USD" }),
        );
        w.step();
        w.step();
        assert_eq!(w.balance(wallet), "120.00", "100.00 - 30.00 + 50.00");
        assert_eq!(w.system("tax_payable"), "30.00");

        // Refunding half the first payment gives back 60.00: 50.00 off the balance, 10.00 of tax.
        let refund =
            w.call("POST", "/v1/refunds", json!({ "receipt": receipt["id"], "amount": "60.00", "reason": "overpaid" }));
        assert_eq!(refund["status"], "succeeded", "{refund}");
        assert_eq!(w.balance(wallet), "70.00");
        assert_eq!(w.system("tax_payable"), "20.00");
        drop(w);
    }
}

#[test]
fn issue_24_a_credit_note_becomes_credit_for_later_invoices_or_is_refunded_through_a_payment() {
    for url in both_backends("issue_24_credit_note_choices") {
        let mut w = World::billing(&url);
        let (customer, wallet) = w.customer("Hooli", "postpaid", "500");
        w.charge(wallet, "30.00");
        let first = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        w.call(
            "POST",
            &format!("/v1/invoices/{}/payments", first["id"]),
            json!({ "method": "cash", "amount": "30.00", "currency": "USD" }),
        );
        w.step();
        assert_eq!(w.get(&format!("/v1/invoices/{}", first["id"]))["status"], "paid");

        // Nothing is due: kept as credit, drawn by the next invoice when it is issued.
        let credit = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": first["id"], "amount": "10.00", "apply": "unallocated", "reason": "outage" }),
        );
        assert_eq!((credit["apply"].as_str(), credit["drawn"].as_str()), (Some("unallocated"), Some("0.00")));
        w.days(1);
        w.charge(wallet, "25.00");
        let second = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
        w.step();
        let shown = w.get(&format!("/v1/invoices/{}", second["id"]));
        assert_eq!(
            (shown["due"].as_str(), shown["status"].as_str(), shown["credits_drawn"][0]["amount"].as_str()),
            (Some("15.00"), Some("partially_paid"), Some("10.00")),
            "{shown}"
        );
        assert_eq!(w.get(&format!("/v1/credit-notes/{}", credit["id"]))["drawn"], "10.00");
        assert_eq!(w.balance(wallet), "-15.00", "-30 + 30 + 10 - 25");

        // Refunded through the payment: every wrong field at once, nothing credited.
        let receipt = w.get(&format!("/v1/receipts?customer={customer}"))["data"][0]["id"].as_u64().unwrap();
        let (status, body) = w.send(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": first["id"], "amount": "5.00", "apply": "refund", "reason": "x" }),
        );
        assert_eq!((status, fields(&body)), (422, vec!["receipt".to_owned()]), "{body}");
        let (status, body) = w.send(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": second["id"], "amount": "15.00", "apply": "refund", "receipt": receipt, "reason": "x",
                    "lines": ["voice"] }),
        );
        assert_eq!(status, 422, "{body}");
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, ["lines"], "{body}");
        assert_eq!(w.balance(wallet), "-15.00", "nothing credited");
        let back = w.call(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": first["id"], "amount": "5.00", "apply": "refund", "receipt": receipt,
                    "reason": "price dispute settled in cash" }),
        );
        assert!(back["refund"].is_u64(), "{back}");
        let refund = w.get(&format!("/v1/refunds/{}", back["refund"]));
        assert_eq!((refund["status"].as_str(), refund["amount"].as_str()), (Some("succeeded"), Some("5.00")));
        assert_eq!(w.balance(wallet), "-15.00", "credited 5.00 and given back 5.00");
        // Never above what is left of the payment to refund.
        let (status, body) = w.send(
            "POST",
            "/v1/credit-notes",
            json!({ "invoice": second["id"], "amount": "25.01", "apply": "refund", "receipt": receipt, "reason": "x" }),
        );
        assert_eq!(status, 422, "{body}");
        assert!(fields(&body).contains(&"receipt".to_owned()), "{body}");
        drop(w);
    }
}
