//! Money back and collections through the API, on SQLite and PostgreSQL (issue 24):
//! adjustments by category against their own system accounts, dunning reminders, suspension
//! and its lifting.

mod common;

use common::*;
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
