//! Credit grants in the ledger (issue 21): draw-down order, scope, holds, expiry and
//! breakage, rollover, void, reversal, traceability, on both backends.

mod common;

use common::*;
use purse_core::command::NewGrant;
use purse_core::{
    AccountId, Amount, ChangeNote, Command, GrantId, GrantState, GrantUseKind, Outcome, Rejection, Rollover,
    SystemRole, Timestamp, TransferId,
};
use purse_store::GrantStore;

const DAY_US: i64 = 86_400_000_000;

struct Grants {
    h: Harness,
    store: std::sync::Arc<dyn GrantStore>,
}

impl Grants {
    fn on(url: &str) -> Grants {
        let h = Harness::on(url);
        let store = purse::open_side(url).expect("side opens").grants;
        Grants { h, store }
    }

    fn new_grant(&self, account: AccountId, amount: &str, priority: u32, expires_in_days: Option<i64>) -> NewGrant {
        NewGrant {
            client_id: self.h.next_id("grant"),
            account,
            money: self.h.usd(amount),
            kind: "promotional".into(),
            funding: SystemRole::Grants,
            priority,
            effective_at: None,
            expires_at: expires_in_days.map(|d| self.h.now().plus_micros(d * DAY_US)),
            scope: Vec::new(),
            rollover: None,
            note: ChangeNote { by: "user ann@example.com".into(), reason: Some("welcome".into()) },
            metadata: None,
        }
    }

    fn grant(&self, g: NewGrant) -> GrantId {
        match self.h.run(Command::Grant(g)) {
            Ok(Outcome::Posted { transfer, .. }) => GrantId(transfer.0),
            other => panic!("grant: {other:?}"),
        }
    }

    fn remaining(&self, g: GrantId) -> i64 {
        self.store.grant(g).unwrap().expect("grant stored").remaining.0
    }

    fn charge(&self, account: AccountId, amount: &str, service: &str, refuse: bool) -> Result<TransferId, Rejection> {
        let Command::Charge(mut c) = self.h.charge_cmd(account, amount, refuse) else { unreachable!() };
        c.service = Some(service.into());
        match self.h.run(Command::Charge(c))? {
            Outcome::Posted { transfer, .. } => Ok(transfer),
            other => panic!("charge: {other:?}"),
        }
    }

    fn paid_by(&self, t: TransferId) -> Vec<(GrantId, i64)> {
        let t = self.h.engine.reader().transfer(t).unwrap().expect("posted");
        t.grant_parts.into_iter().map(|(g, a)| (g, a.0)).collect()
    }

    fn uses_of(&self, g: GrantId) -> Vec<purse_core::GrantUse> {
        let grant = self.store.grant(g).unwrap().expect("grant stored");
        purse_store::grants::history(self.h.engine.reader().as_ref(), self.store.as_ref(), &grant, 1000).unwrap()
    }

    fn sweep(&self) {
        for g in self.store.expiring(self.h.now(), 100).unwrap() {
            self.h.run(Command::ExpireGrant { account: g.account, grant: g.id }).unwrap();
        }
    }

    fn available(&self, a: AccountId) -> i64 {
        self.h.parts(a).2
    }
}

fn each_backend(name: &str, test: impl Fn(&Grants)) {
    for url in both_backends(name) {
        let g = Grants::on(&url);
        test(&g);
        g.h.assert_consistent();
    }
}

#[test]
fn issue_21_charges_draw_grants_by_priority_then_soonest_expiry_then_age_within_their_scope() {
    each_backend("grants_order", |s| {
        let a = s.h.customer("0");
        s.h.pay(a, "10.00").unwrap();
        let later = s.grant(s.new_grant(a, "5.00", 10, Some(30)));
        let first = s.grant(s.new_grant(a, "3.00", 5, None));
        let sooner = s.grant(s.new_grant(a, "4.00", 10, Some(10)));
        let mut voice = s.new_grant(a, "2.00", 1, None);
        voice.scope = vec!["voice".into()];
        let voice = s.grant(voice);
        assert_eq!(s.available(a), 2_400, "cash and every grant in force");

        // An SMS may not use the voice grant: priority 5 first, then the sooner expiry.
        let t = s.charge(a, "6.00", "sms", false).unwrap();
        assert_eq!(s.paid_by(t), vec![(first, 300), (sooner, 300)]);
        assert_eq!(
            (s.remaining(first), s.remaining(sooner), s.remaining(later), s.remaining(voice)),
            (0, 100, 500, 200)
        );
        assert_eq!(s.store.grant(first).unwrap().unwrap().state, GrantState::UsedUp);
        // Voice: its own grant first (priority 1), then the sooner one, then the later one.
        let t = s.charge(a, "4.00", "voice", false).unwrap();
        assert_eq!(s.paid_by(t), vec![(voice, 200), (sooner, 100), (later, 100)], "in draw-down order");
        assert_eq!(s.available(a), 1_400);
        // The cash is untouched: 10.00 of the 14.00 left is the customer's own.
        assert_eq!(s.h.parts(a).0, 1_400);
        // Grant money never leaves by a transfer: only cash moves.
        let b = s.h.customer("0");
        assert_eq!(rejected(&s.h.transfer(a, b, "10.01")), "insufficient_funds");

        // What a grant paid, and what it was granted with.
        let uses = s.uses_of(sooner);
        assert_eq!(
            uses.iter().map(|u| (u.kind, u.amount.0)).collect::<Vec<_>>(),
            vec![(GrantUseKind::Charge, 300), (GrantUseKind::Charge, 100)]
        );
        let g = s.store.grant(later).unwrap().unwrap();
        assert_eq!(
            (g.kind.as_str(), g.by.as_str(), g.reason.as_deref()),
            ("promotional", "user ann@example.com", Some("welcome"))
        );
    });
}

#[test]
fn issue_21_an_expired_grant_never_counts_however_late_the_sweep_and_its_remainder_goes_to_breakage() {
    each_backend("grants_expiry", |s| {
        let a = s.h.customer("0");
        s.h.pay(a, "1.00").unwrap();
        let g = s.grant(s.new_grant(a, "5.00", 10, Some(1)));
        s.charge(a, "2.00", "voice", true).unwrap();
        assert_eq!(s.available(a), 400);
        // At the instant of expiry, before any sweep: only the cash is left.
        s.h.clock.set(s.h.now().plus_micros(DAY_US));
        assert_eq!(s.available(a), 100);
        assert_eq!(rejected(&s.h.run(s.h.charge_cmd(a, "1.01", true))), "insufficient_funds");
        s.charge(a, "1.00", "voice", true).unwrap();
        assert_eq!(s.remaining(g), 300, "the charge at expiry took nothing from the expired grant");
        // A restart at the expiry instant agrees (nothing cached).
        let url = s.h.url.clone();
        let restarted = Grants { h: Harness::on(&url), store: purse::open_side(&url).unwrap().grants };
        restarted.h.clock.set(s.h.now());
        assert_eq!(rejected(&restarted.h.run(restarted.h.charge_cmd(a, "0.01", true))), "insufficient_funds");
        restarted.h.engine.shutdown();
        // The sweep moves the remainder out; a second sweep does nothing.
        s.sweep();
        s.h.run(Command::ExpireGrant { account: a, grant: g }).unwrap();
        let closed = s.store.grant(g).unwrap().unwrap();
        assert_eq!((closed.state, closed.remaining.0), (GrantState::Expired, 0));
        let uses = s.uses_of(g);
        assert_eq!(uses.last().map(|u| (u.kind, u.amount.0)), Some((GrantUseKind::Expiry, 300)));
        assert_eq!(s.h.parts(a), (0, 0, 0));
    });
}

#[test]
fn issue_21_holds_reserve_on_the_grants_that_apply_and_a_capture_draws_from_them() {
    each_backend("grants_holds", |s| {
        let a = s.h.customer("0");
        s.h.pay(a, "10.00").unwrap();
        let mut voice = s.new_grant(a, "10.00", 10, Some(30));
        voice.scope = vec!["voice".into()];
        let voice = s.grant(voice);
        let hold = Command::Hold {
            client_id: s.h.next_id("hold"),
            account: a,
            money: s.h.usd("8.00"),
            expires_at: s.h.now().plus_micros(60_000_000),
            service: Some("voice".into()),
            metadata: None,
        };
        let Ok(Outcome::HoldPlaced { hold, .. }) = s.h.run(hold) else { panic!("hold") };
        assert_eq!(s.store.grant(voice).unwrap().unwrap().reserved.0, 800);
        // The hold sits on the voice grant, so SMS can still spend all the cash.
        s.charge(a, "10.00", "sms", true).unwrap();
        assert_eq!(rejected(&s.h.run(s.h.charge_cmd(a, "2.01", true))), "insufficient_funds");
        let capture = Command::Capture { client_id: s.h.next_id("capture"), hold, amount: Some(s.h.amount("5.00")) };
        let Ok(Outcome::HoldCaptured { transfer, .. }) = s.h.run(capture) else { panic!("capture") };
        assert_eq!(s.paid_by(transfer), vec![(voice, 500)]);
        let g = s.store.grant(voice).unwrap().unwrap();
        assert_eq!((g.remaining.0, g.reserved.0), (500, 0));
    });
}

#[test]
fn issue_21_a_reversed_charge_gives_back_to_its_grants_and_staff_void_what_is_left() {
    each_backend("grants_void", |s| {
        let a = s.h.customer("0");
        let g = s.grant(s.new_grant(a, "5.00", 10, None));
        let t = s.charge(a, "2.00", "voice", false).unwrap();
        assert_eq!(s.remaining(g), 300);
        let reverse = Command::Reverse { client_id: s.h.next_id("rev"), transfer: t, metadata: None, note: None };
        s.h.run(reverse).unwrap();
        assert_eq!(s.remaining(g), 500);
        let note = ChangeNote { by: "user ann@example.com".into(), reason: Some("granted by mistake".into()) };
        let void = Command::VoidGrant { account: a, grant: g, note: note.clone() };
        assert!(matches!(s.h.run(void.clone()), Ok(Outcome::Posted { .. })));
        assert_eq!(s.h.parts(a), (0, 0, 0));
        assert_eq!(s.store.grant(g).unwrap().unwrap().state, GrantState::Voided);
        assert_eq!(s.h.run(void), Err(Rejection::GrantNotFound));
        // A grant's posting is not reversed: the grant is voided.
        let reverse =
            Command::Reverse { client_id: s.h.next_id("rev"), transfer: TransferId(g.0), metadata: None, note: None };
        assert_eq!(s.h.run(reverse), Err(Rejection::TransferKindNotAllowed));
        // Purchased credit is refunded, not voided.
        let mut bought = s.new_grant(a, "5.00", 10, None);
        bought.kind = "purchased".into();
        bought.funding = SystemRole::CardClearing;
        let bought = s.grant(bought);
        assert_eq!(s.h.run(Command::VoidGrant { account: a, grant: bought, note }), Err(Rejection::GrantNotVoidable));
    });
}

#[test]
fn issue_21_the_unused_part_rolls_over_up_to_its_maximum_and_the_rest_is_breakage() {
    each_backend("grants_rollover", |s| {
        let a = s.h.customer("0");
        let mut monthly = s.new_grant(a, "10.00", 10, Some(30));
        monthly.rollover = Some(Rollover { max: s.h.amount("4.00"), valid_for_us: 30 * DAY_US });
        let g = s.grant(monthly);
        s.charge(a, "3.00", "voice", false).unwrap();
        s.h.clock.set(s.h.now().plus_micros(30 * DAY_US));
        s.sweep();
        let open =
            s.store.grants(&purse_store::GrantQuery { accounts: vec![a], open_only: true, before: None, limit: 10 });
        let open = open.unwrap();
        assert_eq!(open.len(), 1);
        let rolled = &open[0];
        assert_eq!((rolled.remaining.0, rolled.rolled_from), (400, Some(g)));
        assert_eq!(rolled.expires_at, Some(Timestamp(s.h.now().0 + 30 * DAY_US)));
        assert_eq!(s.available(a), 400);
        let kinds: Vec<_> = s.uses_of(g).iter().map(|u| (u.kind, u.amount.0)).collect();
        assert_eq!(
            kinds,
            vec![(GrantUseKind::Charge, 300), (GrantUseKind::Expiry, 300), (GrantUseKind::Rollover, 400)]
        );
        // The rolled-over grant pays the next charge, and ids never collide after a restart.
        let t = s.charge(a, "1.00", "voice", false).unwrap();
        assert_eq!(s.paid_by(t), vec![(rolled.id, 100)]);
        assert!(t.0 > rolled.id.0);
    });
}

#[test]
fn issue_21_bad_grants_are_refused_naming_the_rule() {
    let s = Grants::on(&sqlite_url());
    let a = s.h.customer("0");
    type Change = Box<dyn Fn(&mut NewGrant)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|g| g.kind = "Promo!".into()), "grant_kind_invalid"),
        (Box::new(|g| g.priority = 0), "grant_priority_out_of_range"),
        (Box::new(|g| g.expires_at = Some(Timestamp(1))), "grant_expiry_must_follow_effective"),
        (Box::new(|g| g.scope = vec![" ".into()]), "grant_scope_invalid"),
        (Box::new(|g| g.rollover = Some(Rollover { max: Amount(1), valid_for_us: 1 })), "grant_rollover_invalid"),
        (Box::new(|g| g.note.reason = None), "reason_must_not_be_empty"),
        (Box::new(|g| g.funding = SystemRole::UsageRevenue), "grant_funding_not_allowed"),
        (Box::new(|g| g.money.amount = Amount(0)), "amount_must_be_positive"),
    ];
    for (change, code) in cases {
        let mut g = s.new_grant(a, "1.00", 10, None);
        change(&mut g);
        assert_eq!(rejected(&s.h.run(Command::Grant(g))), code);
    }
    assert_eq!(s.h.parts(a), (0, 0, 0));
}

// ---------------------------------------------------------------- the API

async fn api_story(url: &str) -> common::app::InProcess {
    use common::app::InProcess;
    use serde_json::json;
    let app = InProcess::on(url);
    let op = app.operator();
    let ok = |r: &common::app::Reply, what: &str| {
        assert!(r.status.is_success(), "{what}: {} {}", r.status, r.body);
        r.body.clone()
    };
    ok(&app.call(&op, "POST", "/v1/currencies", Some(&json!({ "code": "USD" }))).await, "currency");
    let c = ok(
        &app.call(
            &op,
            "POST",
            "/v1/customers",
            Some(&json!({ "client_id": "c", "name": "Ann", "billing": "prepaid", "currency": "USD" })),
        )
        .await,
        "customer",
    );
    let (customer, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    let pay = json!({ "client_id": "p", "account": wallet, "amount": "10.00", "currency": "USD", "method": "cash" });
    ok(&app.call(&op, "POST", "/v1/payments", Some(&pay)).await, "payment");
    let expires = purse_core::time::format(Timestamp(purse_engine::Clock::now(app.clock.as_ref()).0 + 30 * DAY_US));
    let grant = json!({
        "client_id": "g1", "customer": customer, "amount": "5.00", "priority": 1, "expires_at": expires,
        "scope": ["voice"], "reason": "welcome offer"
    });

    // Bad input names the field and changes nothing.
    let bad = [
        ("amount", json!({ "amount": "5.001" })),
        ("amount", json!({ "amount": "-1.00" })),
        ("kind", json!({ "kind": "Welcome!" })),
        ("priority", json!({ "priority": 0 })),
        ("expires_at", json!({ "expires_at": "2001-01-01T00:00:00Z" })),
        ("scope", json!({ "scope": [""] })),
        ("paid_by", json!({ "paid_by": "card" })),
        ("paid_by", json!({ "kind": "purchased" })),
        ("rollover", json!({ "expires_at": null, "rollover": { "max": "1.00", "valid_for_days": 30 } })),
        ("rollover.valid_for_days", json!({ "rollover": { "max": "1.00", "valid_for_days": 0 } })),
        ("reason", json!({ "reason": "  " })),
        ("customer", json!({ "customer": 999_999 })),
    ];
    for (field, change) in bad {
        let mut body = grant.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        body["client_id"] = json!(app.fresh("bad"));
        let r = app.call(&op, "POST", "/v1/grants", Some(&body)).await;
        assert_eq!((r.status.as_u16(), r.error().1), (422, field), "{change}: {}", r.body);
    }
    let account = ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}"), None).await, "account");
    assert_eq!(account["balance"], "10.00");

    let made = app.call(&op, "POST", "/v1/grants", Some(&grant)).await;
    assert_eq!(made.status.as_u16(), 201, "{}", made.body);
    let id = made.body["id"].as_u64().unwrap();
    assert_eq!((made.body["remaining"].clone(), made.body["state"].clone()), (json!("5.00"), json!("open")));
    let again = app.call(&op, "POST", "/v1/grants", Some(&grant)).await;
    assert_eq!((again.status.as_u16(), again.body["id"].as_u64()), (200, Some(id)), "a retry replays");

    // A voice charge is paid by the grant first; GET /v1/transfers says so.
    let charge =
        json!({ "client_id": "ch", "account": wallet, "amount": "3.00", "currency": "USD", "service": "voice" });
    let t = ok(&app.call(&op, "POST", "/v1/charges", Some(&charge)).await, "charge")["transfer"].as_u64().unwrap();
    let transfer = ok(&app.call(&op, "GET", &format!("/v1/transfers/{t}"), None).await, "transfer");
    assert_eq!(transfer["paid_by_grants"], json!([{ "grant": id, "amount": "3.00" }]));
    let account = ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}"), None).await, "account");
    assert_eq!((account["balance"].clone(), account["available"].clone()), (json!("12.00"), json!("12.00")));

    // What it can spend on voice counts the voice grant; on SMS, not.
    let voice =
        ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}/spendable?service=voice"), None).await, "spendable");
    let sms =
        ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}/spendable?service=sms"), None).await, "spendable");
    assert_eq!((voice["available"].clone(), sms["available"].clone()), (json!("12.00"), json!("10.00")));
    // The customer sees its grants (not who on the operator's staff granted them).
    let own = app.key(purse_core::Role::Customer(purse_core::PartyId(customer)), purse_core::Scope::Read);
    let list = ok(&app.call(&own, "GET", "/v1/grants", None).await, "grants");
    assert_eq!(list["data"][0]["remaining"], "2.00");
    assert!(list["data"][0].get("granted_by").is_none());
    let detail = ok(&app.call(&op, "GET", &format!("/v1/grants/{id}"), None).await, "grant");
    assert_eq!(detail["uses"][0]["amount"], "3.00");
    assert!(detail["granted_by"].as_str().unwrap().starts_with("key "));
    // Customers do not give themselves credit.
    let own_rw = app.key(purse_core::Role::Customer(purse_core::PartyId(customer)), purse_core::Scope::ReadWrite);
    let r = app
        .call(
            &own_rw,
            "POST",
            "/v1/grants",
            Some(&json!({ "client_id": "x", "customer": customer, "amount": "100.00", "reason": "me" })),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403);

    // Void what is left: the customer's own money is untouched.
    let voided = ok(
        &app.call(&op, "POST", &format!("/v1/grants/{id}/void"), Some(&json!({ "reason": "offer withdrawn" }))).await,
        "void",
    );
    assert_eq!((voided["state"].clone(), voided["remaining"].clone()), (json!("voided"), json!("0.00")));
    let account = ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}"), None).await, "account");
    assert_eq!(account["balance"], "10.00");
    let audit = ok(&app.call(&op, "GET", &format!("/v1/audit-log?party={customer}"), None).await, "audit");
    let text = audit.to_string();
    assert!(text.contains("welcome offer") && text.contains("offer withdrawn"), "{text}");

    // A monthly allowance: made once per period whoever runs the scheduler, rolling over.
    let allowance = json!({ "customer": customer, "amount": "20.00", "day": 1, "scope": ["voice"], "rollover": { "max": "5.00", "valid_for_days": 10 }, "reason": "plan minutes" });
    let a = ok(&app.call(&op, "POST", "/v1/allowances", Some(&allowance)).await, "allowance");
    assert_eq!(a["day"], 1);
    let run = |app: &InProcess| {
        let (engine, grants, now) =
            (app.state.engine.clone(), app.state.grants.clone(), purse_engine::Clock::now(app.clock.as_ref()));
        common::app::off_runtime(move || {
            let s = purse_app::grants::GrantScheduler { engine: &engine, grants: grants.as_ref() };
            (s.sweep(now).unwrap(), s.allowances(now).unwrap())
        })
    };
    assert_eq!(run(&app), (0, 1));
    assert_eq!(run(&app), (0, 0), "once per period");
    let open = ok(&app.call(&op, "GET", &format!("/v1/grants?customer={customer}"), None).await, "grants");
    assert_eq!(open["data"].as_array().unwrap().len(), 1);
    let monthly = open["data"][0].clone();
    assert_eq!((monthly["amount"].clone(), monthly["kind"].clone()), (json!("20.00"), json!("promotional")));
    let period_end = purse_core::time::parse(monthly["expires_at"].as_str().unwrap()).unwrap();
    let charge =
        json!({ "client_id": "ch2", "account": wallet, "amount": "12.00", "currency": "USD", "service": "voice" });
    ok(&app.call(&op, "POST", "/v1/charges", Some(&charge)).await, "charge");
    app.clock.set(period_end);
    assert_eq!(run(&app), (1, 1), "the first period's grant expires, the second's is made");
    let open = ok(&app.call(&op, "GET", &format!("/v1/grants?customer={customer}"), None).await, "grants");
    let remaining: Vec<&str> =
        open["data"].as_array().unwrap().iter().map(|g| g["remaining"].as_str().unwrap()).collect();
    assert_eq!(remaining, vec!["20.00", "5.00"], "the new period's grant and 5.00 of the 8.00 left rolled over");
    let account = ok(&app.call(&op, "GET", &format!("/v1/accounts/{wallet}"), None).await, "account");
    assert_eq!(account["balance"], "35.00", "10.00 of its own, 25.00 of grants; 3.00 went to breakage");
    let ended = ok(&app.call(&op, "POST", &format!("/v1/allowances/{}/end", a["id"]), None).await, "end");
    assert!(ended["ended_at"].is_string());

    // An invoice shows usage, then the credits that paid part of it by kind, then what is due.
    let c = ok(
        &app.call(&op, "POST", "/v1/customers", Some(&json!({ "client_id": "pp", "name": "Bob", "billing": "postpaid", "currency": "USD", "credit_limit": "100.00" })))
            .await,
        "postpaid customer",
    );
    let (bob, bob_wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
    let promo = json!({ "client_id": "g-bob", "customer": bob, "amount": "5.00", "reason": "welcome" });
    ok(&app.call(&op, "POST", "/v1/grants", Some(&promo)).await, "grant");
    let bought = json!({ "client_id": "g-bob-2", "customer": bob, "amount": "1.00", "kind": "purchased", "paid_by": "card", "priority": 20, "reason": "top-up bundle" });
    ok(&app.call(&op, "POST", "/v1/grants", Some(&bought)).await, "purchased grant");
    let charge =
        json!({ "client_id": "bob-1", "account": bob_wallet, "amount": "8.00", "currency": "USD", "service": "voice" });
    ok(&app.call(&op, "POST", "/v1/charges", Some(&charge)).await, "charge");
    let invoice =
        ok(&app.call(&op, "POST", &format!("/v1/customers/{bob}/invoices"), Some(&json!({}))).await, "invoice");
    let invoice = ok(&app.call(&op, "GET", &format!("/v1/invoices/{}", invoice["id"]), None).await, "invoice");
    assert_eq!(invoice["usage"], "8.00");
    assert_eq!(invoice["credits"][0]["kind"], "promotional");
    assert_eq!(invoice["credits"][0]["amount"], "-5.00");
    assert_eq!(invoice["credits"][1]["kind"], "purchased");
    assert!(invoice["credits"][1]["label"].as_str().unwrap().contains("revenue as it is used"));
    assert_eq!((invoice["subtotal"].clone(), invoice["due"].clone()), (json!("2.00"), json!("2.00")), "{invoice}");

    // Customers are told once that credit expires soon, and that a grant was used up.
    let tell = |app: &InProcess| {
        let (engine, grants, alerts) = (app.state.engine.clone(), app.state.grants.clone(), app.state.alerts.clone());
        let now = purse_engine::Clock::now(app.clock.as_ref());
        common::app::off_runtime(move || {
            let s = purse_app::grants::GrantScheduler { engine: &engine, grants: grants.as_ref() };
            s.notices(alerts.as_ref(), now, 30 * DAY_US).unwrap()
        })
    };
    assert!(tell(&app) >= 3, "Ann's two grants expire within 30 days; Bob's welcome credit is used up");
    assert_eq!(tell(&app), 0, "told once");
    let kinds = |customer: u64| {
        let app = &app;
        async move {
            let log = app.call(&app.operator(), "GET", &format!("/v1/notifications?customer={customer}"), None).await;
            log.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["kind"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert!(kinds(customer).await.iter().any(|k| k == "grant_expiring"));
    assert!(kinds(bob).await.iter().any(|k| k == "grant_used_up"));
    app
}

/// Runs the story, then drops the application outside the runtime (PostgreSQL's blocking
/// client may not be dropped inside one).
fn run_api_story(url: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(api_story(url));
    drop(runtime);
    drop(app);
}

#[test]
fn issue_21_grants_over_the_api_on_sqlite() {
    run_api_story(&sqlite_url());
}

#[test]
fn issue_21_grants_over_the_api_on_postgres() {
    run_api_story(&pg_url("grants_api"));
}

#[test]
fn issue_21_charges_racing_an_expiry_never_spend_expired_credit() {
    for url in both_backends("grants_race") {
        let s = Grants::on(&url);
        let a = s.h.customer("0");
        let expires = s.h.now().plus_micros(2_000_000);
        let mut g = s.new_grant(a, "100.00", 10, None);
        g.expires_at = Some(expires);
        let grant = s.grant(g);
        let accepted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..150 {
                        if s.h.run(s.h.charge_cmd(a, "0.10", true)).is_ok() {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
            // Time runs past the expiry while the charges flow.
            scope.spawn(|| {
                for _ in 0..40 {
                    s.h.clock.advance_micros(100_000);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
        });
        assert!(s.h.now() >= expires, "the race crossed the expiry");
        // The account has no money of its own: every accepted charge was paid by the grant,
        // before its expiry, and none after.
        let journal = s.h.engine.reader().journal(purse_store::JournalQuery { account: a, before: None, limit: 1000 });
        let charges: Vec<_> =
            journal.unwrap().into_iter().filter(|t| t.kind == purse_core::TransferKind::Charge).collect();
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(charges.len() as u64, n);
        assert!(n > 0, "some charges came before the expiry");
        for t in &charges {
            assert!(t.posted_at < expires, "a charge at {:?} spent credit that expired at {expires:?}", t.posted_at);
            assert_eq!(t.grant_parts, vec![(grant, Amount(10))]);
        }
        s.sweep();
        let uses = s.uses_of(grant);
        let breakage: i64 = uses.iter().filter(|u| u.kind == GrantUseKind::Expiry).map(|u| u.amount.0).sum();
        assert_eq!(breakage + n as i64 * 10, 10_000, "what was used and what expired make the grant");
        assert_eq!(s.h.parts(a), (0, 0, 0));
        s.h.assert_consistent();
    }
}
