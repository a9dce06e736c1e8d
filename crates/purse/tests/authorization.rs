//! Issue 17: the authorization matrix. Every route of the API and every page and form of the
//! portal is called by every role and scope (the operator, two resellers, two customers of
//! each; read-only and read-write) on every tenant's objects, the caller's own and the
//! others'. The expected answer of each cell comes from the policy (`purse_app::policy`):
//! refused (403) when the role or scope may not take the action, not found when the object
//! is another tenant's, and otherwise answered on its merits. A route or a page whose action
//! has no rule does not compile; an action no route or page uses fails here. Both backends.
//!
//! Then each defect of issue 17 has its own regression test, on both backends.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::app::{Auth, InProcess, Reply};
use common::*;
use purse_app::policy::{self, Action, Requires};
use purse_core::{PartyId, PartyKind, Role, Scope};
use serde_json::{json, Value};

/// One tenant: a customer and its reseller, with an object of each kind.
#[derive(Clone, Debug)]
struct Tenant {
    reseller: u64,
    master: u64,
    customer: u64,
    wallet: u64,
    sub_debit: u64,
    sub_credit: u64,
    hold: u64,
    transfer: u64,
    profile: u64,
    endpoint: u64,
    invoice: u64,
    receipt: u64,
    refund: u64,
    credit_note: u64,
    plan: u64,
    session: u64,
    grant: u64,
    allowance: u64,
}

struct World {
    app: InProcess,
    op: Auth,
    tenants: Vec<Tenant>,
    class: u64,
    /// Who owns each party: for the visibility of items in lists.
    parties: HashMap<u64, (Option<u64>, bool)>,
}

fn ok(r: &Reply, what: &str) -> Value {
    assert!(r.status.is_success(), "{what}: {} {}", r.status, r.body);
    r.body.clone()
}

impl World {
    async fn new(url: &str) -> World {
        let app = InProcess::on(url);
        let op = app.operator();
        ok(&app.call(&op, "POST", "/v1/currencies", Some(&json!({ "code": "USD" }))).await, "currency");
        let class = ok(
            &app.call(
                &op,
                "POST",
                "/v1/customer-classes",
                Some(&json!({ "name": "Gold", "subscriber_transfers": true })),
            )
            .await,
            "class",
        )["id"]
            .as_u64()
            .unwrap();
        let mut world = World { app, op, tenants: Vec::new(), class, parties: HashMap::new() };
        for r in 0..2 {
            let reseller = world
                .post("/v1/resellers", json!({ "client_id": world.app.fresh("r"), "name": format!("Reseller {r}") }))
                .await["id"]
                .as_u64()
                .unwrap();
            world.parties.insert(reseller, (None, true));
            let master = world
                .post(
                    "/v1/accounts",
                    json!({ "client_id": world.app.fresh("m"), "party": reseller, "kind": "master_wallet", "currency": "USD" }),
                )
                .await["id"]
                .as_u64()
                .unwrap();
            world
                .post(
                    "/v1/payments",
                    json!({ "client_id": world.app.fresh("p"), "account": master, "amount": "1000.00", "currency": "USD", "method": "cash" }),
                )
                .await;
            let profile = world.post("/v1/low-balance-profiles", profile_body(&world.app, reseller)).await["id"]
                .as_u64()
                .unwrap();
            for _ in 0..2 {
                let t = world.tenant(reseller, master, profile).await;
                world.parties.insert(t.customer, (Some(reseller), false));
                world.tenants.push(t);
            }
        }
        world.receipts().await;
        world
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        ok(&self.app.call(&self.op, "POST", path, Some(&body)).await, path)
    }

    async fn tenant(&self, reseller: u64, master: u64, profile: u64) -> Tenant {
        let a = &self.app;
        let c = self
            .post("/v1/customers", json!({ "client_id": a.fresh("c"), "name": "Customer", "reseller": reseller, "billing": "postpaid", "currency": "USD", "credit_limit": "100.00" }))
            .await;
        let (customer, wallet) = (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap());
        let sub_debit = self
            .post("/v1/accounts", json!({ "client_id": a.fresh("s"), "party": customer, "kind": "subscriber_debit" }))
            .await["id"]
            .as_u64()
            .unwrap();
        let sub_credit = self
            .post(
                "/v1/accounts",
                json!({ "client_id": a.fresh("s"), "party": customer, "kind": "subscriber_credit", "credit_limit": "10.00" }),
            )
            .await["id"]
            .as_u64()
            .unwrap();
        self.post(
            "/v1/payments",
            json!({ "client_id": a.fresh("p"), "account": wallet, "amount": "50.00", "currency": "USD", "method": "cash" }),
        )
        .await;
        let hold = self
            .post(
                "/v1/holds",
                json!({ "client_id": a.fresh("h"), "account": wallet, "amount": "1.00", "currency": "USD" }),
            )
            .await["hold"]
            .as_u64()
            .unwrap();
        let transfer = self.charge(wallet).await;
        let invoice = self.post(&format!("/v1/customers/{customer}/invoices"), json!({})).await["id"].as_u64().unwrap();
        let plan = self
            .post("/v1/rate-plans", json!({ "name": a.fresh("Plan"), "currency": "USD", "owner": reseller }))
            .await["id"]
            .as_u64()
            .unwrap();
        self.post(
            &format!("/v1/rate-plans/{plan}/import"),
            json!({ "csv": "prefix,price\n*,0.01\n44,0.02", "service": "voice" }),
        )
        .await;
        ok(
            &a.call(&self.op, "PUT", &format!("/v1/customers/{customer}/rate-plan"), Some(&json!({ "plan": plan })))
                .await,
            "rate plan",
        );
        let session = self.session(wallet).await;
        let grant = self.grant(customer).await;
        let allowance = self
            .post("/v1/allowances", json!({ "customer": customer, "amount": "1.00", "reason": "monthly" }))
            .await["id"]
            .as_u64()
            .unwrap();
        let own = a.key(Role::Customer(PartyId(customer)), Scope::ReadWrite);
        let endpoint = ok(
            &a.call(
                &own,
                "POST",
                "/v1/webhook-endpoints",
                Some(&json!({ "url": format!("http://127.0.0.1:9/{}", a.fresh("hook")) })),
            )
            .await,
            "endpoint",
        )["id"]
            .as_u64()
            .unwrap();
        Tenant {
            reseller,
            master,
            customer,
            wallet,
            sub_debit,
            sub_credit,
            hold,
            transfer,
            profile,
            endpoint,
            invoice,
            receipt: 0,
            refund: 0,
            credit_note: 0,
            plan,
            session,
            grant,
            allowance,
        }
    }

    async fn grant(&self, customer: u64) -> u64 {
        let body =
            json!({ "client_id": self.app.fresh("g"), "customer": customer, "amount": "1.00", "reason": "welcome" });
        self.post("/v1/grants", body).await["id"].as_u64().unwrap()
    }

    async fn session(&self, wallet: u64) -> u64 {
        self.post("/v1/sessions", json!({ "account": wallet, "service": "voice", "destination": "4420" })).await["id"]
            .as_u64()
            .unwrap()
    }

    async fn charge(&self, wallet: u64) -> u64 {
        self.post(
            "/v1/charges",
            json!({ "client_id": self.app.fresh("x"), "account": wallet, "amount": "2.00", "currency": "USD", "service": "voice" }),
        )
        .await["transfer"]
            .as_u64()
            .unwrap()
    }

    /// Receipt vouchers are made by the notifier's pass over the outbox.
    async fn receipts(&mut self) {
        let url = self.app.url.clone();
        let engine = self.app.state.engine.clone();
        let dir = std::env::temp_dir().join(self.app.fresh(&format!("maildir-{}", std::process::id())));
        tokio::task::spawn_blocking(move || {
            let side = purse::open_side(&url).unwrap();
            let config = purse_app::notifier::AlertConfig {
                mail: purse_app::notifier::MailConfig::Maildir(dir),
                ..Default::default()
            };
            let payments = std::sync::Arc::new(purse_app::recharger::Recharger::new(
                engine.clone(),
                side.reader.clone(),
                side.alerts.clone(),
                side.payments,
                purse_app::recharger::PaymentConfig::default(),
                None,
            ));
            let notifier = purse_app::notifier::Notifier::new(engine, side.reader, side.alerts, side.access, config)
                .unwrap()
                .with_payments(payments);
            notifier.step().unwrap();
        })
        .await
        .unwrap();
        for t in &mut self.tenants {
            let list = ok(
                &self.app.call(&self.op, "GET", &format!("/v1/receipts?customer={}", t.customer), None).await,
                "receipts",
            );
            t.receipt = list["data"][0]["id"].as_u64().expect("a receipt for the payment");
            let body = json!({ "receipt": t.receipt, "amount": "0.01", "reason": "matrix" });
            t.refund = ok(&self.app.call(&self.op, "POST", "/v1/refunds", Some(&body)).await, "refund")["id"]
                .as_u64()
                .unwrap();
            let body = json!({ "invoice": t.invoice, "amount": "0.01", "apply": "balance", "reason": "matrix" });
            t.credit_note = ok(&self.app.call(&self.op, "POST", "/v1/credit-notes", Some(&body)).await, "credit note")
                ["id"]
                .as_u64()
                .unwrap();
        }
    }

    /// The principals of the matrix: every role of every tenant, read-only and read-write.
    fn roles(&self) -> Vec<(String, Role)> {
        let mut roles = vec![("operator".to_owned(), Role::Operator)];
        for (i, r) in [self.tenants[0].reseller, self.tenants[2].reseller].into_iter().enumerate() {
            roles.push((format!("reseller {i}"), Role::Reseller(PartyId(r))));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            roles.push((format!("customer {i}"), Role::Customer(PartyId(t.customer))));
        }
        roles
    }

    fn party(&self, id: u64) -> purse_core::Party {
        let (reseller, is_reseller) = self.parties[&id];
        let kind = if is_reseller {
            PartyKind::Reseller
        } else {
            PartyKind::Customer {
                reseller: reseller.map(PartyId),
                billing: purse_core::Billing::Postpaid,
                currency: purse_core::CurrencyCode::parse("USD").unwrap(),
                wallet: purse_core::AccountId(0),
            }
        };
        purse_core::Party {
            id: PartyId(id),
            client_id: cid("x"),
            name: String::new(),
            kind,
            created_at: purse_core::Timestamp(0),
            subscriber_transfers: false,
            invoiced_until: None,
        }
    }

    fn sees(&self, role: Role, party: u64) -> bool {
        policy::sees_party(role, &self.party(party))
    }

    /// A fresh object of `t` for an action that consumes it (deleting, revoking, closing…).
    async fn fresh_target(&self, action: Action, t: &Tenant) -> Option<u64> {
        let a = &self.app;
        Some(match action {
            Action::DeleteLowBalanceProfile => {
                self.post("/v1/low-balance-profiles", profile_body(&self.app, t.reseller)).await["id"].as_u64().unwrap()
            }
            Action::DeleteWebhookEndpoint => {
                let own = a.key(Role::Customer(PartyId(t.customer)), Scope::ReadWrite);
                ok(
                    &a.call(
                        &own,
                        "POST",
                        "/v1/webhook-endpoints",
                        Some(&json!({ "url": format!("http://127.0.0.1:9/{}", a.fresh("hook")) })),
                    )
                    .await,
                    "endpoint",
                )["id"]
                    .as_u64()
                    .unwrap()
            }
            Action::CloseAccount => self
                .post(
                    "/v1/accounts",
                    json!({ "client_id": a.fresh("s"), "party": t.customer, "kind": "subscriber_debit" }),
                )
                .await["id"]
                .as_u64()
                .unwrap(),
            Action::CaptureHold | Action::ReleaseHold => self
                .post(
                    "/v1/holds",
                    json!({ "client_id": a.fresh("h"), "account": t.wallet, "amount": "0.10", "currency": "USD" }),
                )
                .await["hold"]
                .as_u64()
                .unwrap(),
            Action::UpdateSession | Action::TerminateSession => self.session(t.wallet).await,
            Action::VoidGrant => self.grant(t.customer).await,
            Action::RevokeApiKey => {
                let body = json!({ "name": "k", "role": "customer", "party": t.customer, "scope": "read" });
                self.post("/v1/api-keys", body).await["key"]["id"].as_u64().unwrap()
            }
            Action::DisableUser => {
                let body = json!({ "email": format!("{}@example.com", a.fresh("u")), "name": "U", "password": "a long password", "role": "customer", "party": t.customer, "scope": "read" });
                self.post("/v1/users", body).await["id"].as_u64().unwrap()
            }
            _ => return None,
        })
    }
}

fn profile_body(app: &InProcess, reseller: u64) -> Value {
    json!({ "name": app.fresh("Low"), "reseller": reseller, "currency": "USD", "max_quantity": 1, "period_hours": 24 })
}

/// The object a path's `{id}` names for an action on `t`.
fn target(path: &str, action: Action, t: &Tenant, class: u64) -> u64 {
    let after = |prefix: &str| path.starts_with(prefix);
    match () {
        _ if after("/v1/resellers/") || after("/resellers/") => t.reseller,
        _ if after("/v1/customers/") || after("/customers/") => t.customer,
        _ if after("/v1/accounts/") => {
            if action == Action::UpdateAccount {
                t.sub_credit
            } else {
                t.wallet
            }
        }
        _ if after("/v1/transfers/") || after("/transfers/") => t.transfer,
        _ if after("/v1/holds/") => t.hold,
        _ if after("/v1/low-balance-profiles/") || after("/profiles/") => t.profile,
        _ if after("/v1/webhook-endpoints/") => t.endpoint,
        _ if after("/v1/invoices/") || after("/invoices/") => t.invoice,
        _ if after("/v1/receipts/") || after("/receipts/") => t.receipt,
        _ if after("/v1/refunds/") || after("/refunds/") => t.refund,
        _ if after("/v1/credit-notes/") || after("/credit-notes/") => t.credit_note,
        _ if after("/v1/customer-classes/") || after("/classes/") => class,
        _ if after("/v1/rate-plans/") || after("/rate-plans/") => t.plan,
        _ if after("/v1/sessions/") => t.session,
        _ if after("/v1/grants/") || after("/grants/") => t.grant,
        _ if after("/v1/allowances/") || after("/allowances/") => t.allowance,
        other => panic!("no target for {path}: {other:?}"),
    }
}

/// The body of an API action by `role` on tenant `t`.
fn body(app: &InProcess, action: Action, role: Role, t: &Tenant, fresh: Option<u64>) -> Option<Value> {
    let id = || app.fresh("m");
    Some(match action {
        Action::CreateCurrency => json!({ "code": "EUR" }),
        Action::CreateReseller => json!({ "client_id": id(), "name": "New" }),
        Action::CreateCustomer => {
            json!({ "client_id": id(), "name": "New", "reseller": t.reseller, "billing": "prepaid", "currency": "USD" })
        }
        Action::OpenAccount => json!({ "client_id": id(), "party": t.customer, "kind": "subscriber_debit" }),
        Action::UpdateAccount => json!({ "credit_limit": "5.00", "reason": "matrix" }),
        Action::PutDunningPolicy => json!({ "owner": format!("reseller:{}", t.reseller), "reminder_days": [3] }),
        Action::PutSuspension => json!({ "suspended": false, "reason": "matrix" }),
        Action::CreateRefund => json!({ "receipt": t.receipt, "amount": "0.01", "reason": "matrix" }),
        Action::CreateTaxRate => json!({ "name": "Matrix tax", "percent": "5" }),
        Action::PutCustomerTax => json!({ "tax_rate": null, "tax_id": "matrix", "address": "1 Matrix Way" }),
        Action::CreateCreditNote => {
            json!({ "invoice": t.invoice, "amount": "0.01", "apply": "balance", "reason": "matrix" })
        }
        Action::CreateCharge => json!({ "client_id": id(), "account": t.wallet, "amount": "0.01", "currency": "USD" }),
        Action::CreateChargeBatch => {
            json!({ "items": [{ "client_id": id(), "account": t.wallet, "amount": "0.01", "currency": "USD" }] })
        }
        Action::CreatePayment => {
            json!({ "client_id": id(), "account": t.wallet, "amount": "0.01", "currency": "USD", "method": "cash" })
        }
        Action::CreateTransfer => match role {
            Role::Customer(_) => {
                json!({ "client_id": id(), "source": t.wallet, "target": t.sub_debit, "amount": "0.01", "currency": "USD" })
            }
            _ => {
                json!({ "client_id": id(), "source": t.master, "target": t.wallet, "amount": "0.01", "currency": "USD", "kind": "issue" })
            }
        },
        Action::CreateReversal => {
            json!({ "client_id": id(), "transfer": fresh.expect("a charge to reverse"), "reason": "matrix" })
        }
        Action::CreateAdjustment => {
            json!({ "client_id": id(), "account": t.wallet, "amount": "0.01", "currency": "USD", "direction": "credit", "reason": "matrix" })
        }
        Action::CreateHold => json!({ "client_id": id(), "account": t.wallet, "amount": "0.01", "currency": "USD" }),
        Action::CaptureHold | Action::ReleaseHold => json!({ "client_id": id() }),
        Action::CreateLowBalanceProfile | Action::ReplaceLowBalanceProfile => profile_body(app, t.reseller),
        Action::PutCustomerAlertSettings => {
            json!({ "billing_email": "billing@example.com", "warning_thresholds": "10" })
        }
        Action::PutResellerAlertSettings => json!({ "billing_email": "reseller@example.com" }),
        Action::CreateWebhookEndpoint => json!({ "url": format!("http://127.0.0.1:9/{}", app.fresh("hook")) }),
        Action::PutRechargeSettings => {
            json!({ "enabled": false, "method": "invoice", "threshold": "1", "recharge_amount": "5" })
        }
        Action::SaveCard => json!({ "number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvc": "123" }),
        Action::PayNow => json!({ "amount": "1" }),
        Action::VoidInvoice => json!({ "reason": "matrix" }),
        Action::PayInvoice => json!({ "method": "cash", "amount": "0.01", "currency": "USD" }),
        Action::PutBillingSettings => json!({ "cycle_day": 5, "time_zone": "+03:00" }),
        Action::CreateCustomerClass | Action::ReplaceCustomerClass => {
            json!({ "name": "Silver", "subscriber_transfers": false })
        }
        Action::PutCustomerCreditSettings => json!({ "subscriber_transfers": "yes" }),
        Action::PutResellerCreditSettings => json!({ "maximum_increase": { "percent": 10 } }),
        Action::CreateApiKey => json!({ "name": "k", "role": "customer", "party": t.customer, "scope": "read" }),
        Action::CreateUser => {
            json!({ "email": format!("{}@example.com", id()), "name": "U", "password": "a long password", "role": "customer", "party": t.customer, "scope": "read" })
        }
        Action::CreateRatePlan => json!({ "name": app.fresh("Plan"), "currency": "USD", "owner": t.reseller }),
        Action::ImportRates => json!({ "csv": "prefix,price\n1,0.05", "service": "voice" }),
        Action::PutCustomerRatePlan => json!({ "plan": t.plan }),
        Action::PutResellerRatePlans => json!({ "customers_default": t.plan }),
        Action::CreateUsage => {
            json!({ "client_id": id(), "account": t.wallet, "service": "voice", "destination": "4420", "quantity": 60 })
        }
        Action::CreateUsageBatch => {
            json!({ "items": [{ "client_id": id(), "account": t.wallet, "service": "voice", "destination": "4420", "quantity": 60 }] })
        }
        Action::CreateSession => json!({ "account": t.wallet, "service": "voice", "destination": "4420" }),
        Action::UpdateSession => json!({ "sequence": 1, "used": 30 }),
        Action::TerminateSession => json!({ "used": 30 }),
        Action::CreateGrant => {
            json!({ "client_id": id(), "customer": t.customer, "amount": "0.50", "reason": "matrix" })
        }
        Action::VoidGrant => json!({ "reason": "matrix" }),
        Action::CreateAllowance => json!({ "customer": t.customer, "amount": "0.50", "reason": "matrix" }),
        Action::IssueInvoice
        | Action::EndAllowance
        | Action::EmailReceipt
        | Action::CloseAccount
        | Action::RevokeApiKey
        | Action::DisableUser => json!({}),
        _ => return None,
    })
}

/// A list's query naming tenant `t`, for lists that filter by party.
fn list_query(action: Action, t: &Tenant) -> Option<String> {
    Some(match action {
        Action::ListAccounts => format!("party={}", t.customer),
        Action::ListCustomers => format!("reseller={}", t.reseller),
        Action::ListNotifications | Action::ListRecharges | Action::ListInvoices | Action::ListReceipts => {
            format!("customer={}", t.customer)
        }
        Action::ListAuditLog => format!("party={}", t.customer),
        Action::ListSessions | Action::ListUnratedUsage => format!("customer={}", t.customer),
        Action::ListGrants
        | Action::ListAllowances
        | Action::ListAdjustments
        | Action::ListRefunds
        | Action::ListCreditNotes => {
            format!("customer={}", t.customer)
        }
        _ => return None,
    })
}

/// What the policy expects of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Refused,
    Hidden,
    Answered,
}

fn expect(role: Role, scope: Scope, action: Action, visible: bool) -> Expect {
    match policy::authorize(role, scope, action) {
        Err(_) => Expect::Refused,
        Ok(()) if !visible => Expect::Hidden,
        Ok(()) => Expect::Answered,
    }
}

/// Whether an answer is what the policy expects; lists are also checked for other tenants' items.
fn matches(world: &World, role: Role, expected: Expect, r: &Reply, portal: bool) -> bool {
    let (code, _) = r.error();
    let hidden = r.status == 404
        || (r.status == 422 && code.ends_with("_not_found"))
        || (r.status == 403 && code == "forbidden_field")
        || (r.status == 200 && r.body["data"].as_array().is_some_and(Vec::is_empty))
        || (r.status == 200
            && r.body["results"].as_array().is_some_and(|items| {
                items.iter().all(|i| i["error"]["code"].as_str().is_some_and(|c| c.ends_with("_not_found")))
            }));
    match expected {
        Expect::Refused => r.status == 403 && (portal || code == "forbidden"),
        Expect::Hidden => hidden,
        Expect::Answered => {
            let bad_body = ["malformed_json", "missing_field", "unknown_field", "invalid_type"].contains(&code);
            r.status.as_u16() < 500
                && ![401, 403, 404].contains(&r.status.as_u16())
                && (r.status != 422 || !code.ends_with("_not_found"))
                && !bad_body
                && leaks(world, role, &r.body).is_empty()
        }
    }
}

/// Parties of other tenants that a list answer names.
fn leaks(world: &World, role: Role, body: &Value) -> Vec<u64> {
    let Some(items) = body["data"].as_array() else { return Vec::new() };
    let mut seen = Vec::new();
    for item in items {
        for field in ["party", "customer", "reseller", "owner"] {
            if let Some(p) = item[field].as_u64() {
                if world.parties.contains_key(&p) && !world.sees(role, p) {
                    seen.push(p);
                }
            }
        }
    }
    seen
}

/// Runs `f` with a world on `url`, on a runtime of its own; the world (and its database
/// connections) is dropped outside the runtime, as PostgreSQL's blocking client wants.
fn with_world(url: &str, f: impl AsyncFnOnce(&World)) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = runtime.block_on(World::new(url));
    runtime.block_on(f(&world));
    drop(runtime);
    drop(world);
}

#[test]
fn issue_17_every_route_and_page_answers_every_role_as_the_policy_says_on_sqlite() {
    with_world(&sqlite_url(), async |world| matrix(world).await);
}

#[test]
fn issue_17_every_route_and_page_answers_every_role_as_the_policy_says_on_postgres() {
    with_world(&pg_url("authorization_matrix"), async |world| matrix(world).await);
}

async fn matrix(world: &World) {
    let url = &world.app.url;
    let (api, pages) = (api_matrix(world).await, portal_matrix(world).await);
    let used: BTreeSet<Action> = purse_http::routes::table()
        .iter()
        .map(|r| r.action)
        .chain(purse_portal::pages().iter().map(|p| p.action))
        .collect();
    let unused: Vec<&Action> = Action::ALL.iter().filter(|a| !used.contains(a)).collect();
    assert!(unused.is_empty(), "actions no route or page uses: {unused:?}");
    eprintln!("authorization matrix on {url}: {api} API cells, {pages} portal cells");
    assert!(api > 2_000 && pages > 1_000, "{api} API cells, {pages} portal cells");
}

async fn api_matrix(world: &World) -> usize {
    let app = &world.app;
    let mut cells = 0;
    let mut wrong = Vec::new();
    for route in purse_http::routes::table() {
        // The route's kind and the policy agree on who needs a key.
        assert_eq!(
            route.access == purse_http::routes::Access::Public,
            route.action.rule().requires == Requires::Public,
            "{}",
            route.path
        );
        for (name, role) in world.roles() {
            for scope in [Scope::ReadWrite, Scope::Read] {
                let auth = app.key(role, scope);
                for t in &world.tenants {
                    let fresh = match route.action {
                        Action::CreateReversal => Some(world.charge(t.wallet).await),
                        other => world.fresh_target(other, t).await,
                    };
                    let (path, visible) = if route.path.contains("{id}") {
                        let id = fresh
                            .filter(|_| route.action != Action::CreateReversal)
                            .unwrap_or_else(|| target(route.path, route.action, t, world.class));
                        let owner = if route.path.starts_with("/v1/resellers/") { t.reseller } else { t.customer };
                        let global = route.path.starts_with("/v1/customer-classes/");
                        // A webhook endpoint is its own tenant's alone, not its reseller's.
                        let own_only = route.path.starts_with("/v1/webhook-endpoints/");
                        let visible = global
                            || if own_only {
                                matches!(role, Role::Operator) || role == Role::Customer(PartyId(owner))
                            } else {
                                world.sees(role, owner)
                            };
                        (route.path.replace("{id}", &id.to_string()), visible)
                    } else if let Some(q) = list_query(route.action, t) {
                        let owner = if route.action == Action::ListCustomers { t.reseller } else { t.customer };
                        (format!("{}?{q}", route.path), world.sees(role, owner))
                    } else {
                        // Bodies that name the tenant's objects; operator-level or own objects otherwise.
                        let names_tenant = body(app, route.action, role, t, Some(0)).is_some_and(|b| b != json!({}))
                            && !matches!(
                                route.action,
                                Action::CreateCurrency
                                    | Action::CreateReseller
                                    | Action::CreateWebhookEndpoint
                                    | Action::CreateCustomerClass
                                    | Action::CreateTaxRate
                            );
                        let visible = !names_tenant
                            || world.sees(
                                role,
                                if route.action == Action::CreateCustomer { t.reseller } else { t.customer },
                            );
                        (route.path.to_owned(), visible)
                    };
                    let method = route.method.as_str();
                    let body = if method == "GET" {
                        None
                    } else {
                        Some(body(app, route.action, role, t, fresh).unwrap_or(json!({})))
                    };
                    let reply = app.call(&auth, method, &path, body.as_ref()).await;
                    cells += 1;
                    let expected = expect(role, scope, route.action, visible);
                    if !matches(world, role, expected, &reply, false) {
                        wrong.push(format!(
                            "{name} {scope:?} {method} {path}: expected {expected:?}, got {} {}",
                            reply.status, reply.body
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells disagree with the policy:\n{}", wrong.len(), wrong.join("\n"));
    cells
}

/// Form fields of a portal form.
fn fields(action: Action, t: &Tenant) -> Vec<(&'static str, String)> {
    let v = |pairs: &[(&'static str, &str)]| pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    match action {
        Action::CreateApiKey => v(&[("name", "k"), ("scope", "read")]),
        Action::CreateUser => vec![
            ("email", format!("form-{}@example.com", t.receipt * 1000 + t.customer)),
            ("name", "U".into()),
            ("password", "a long password".into()),
            ("role", "customer".into()),
            ("party", t.customer.to_string()),
            ("scope", "read".into()),
        ],
        Action::ChangeOwnPassword => v(&[("current", "x"), ("new", "short"), ("confirm", "short")]),
        Action::PutRechargeSettings => v(&[
            ("enabled", ""),
            ("method", "invoice"),
            ("threshold", "1"),
            ("amount_kind", "amount"),
            ("recharge_amount", "5"),
        ]),
        Action::UpdateAccount => {
            v(&[("account", &t.sub_credit.to_string()), ("credit_limit", "5.00"), ("reason", "matrix")])
        }
        Action::CreateRatePlan => v(&[("name", "Portal plan"), ("currency", "USD")]),
        Action::ImportRates => v(&[("csv", "prefix,price\n9,0.01"), ("service", "voice")]),
        Action::PutCustomerRatePlan => vec![("plan", t.plan.to_string())],
        Action::PutResellerRatePlans => {
            vec![("reseller", t.reseller.to_string()), ("role", "customers_default".into())]
        }
        Action::CreateGrant => v(&[("amount", "0.50"), ("kind", "goodwill"), ("reason", "matrix")]),
        Action::VoidGrant => v(&[("reason", "matrix")]),
        Action::CreateCreditNote => v(&[("cn_amount", "0.01"), ("apply", "balance"), ("cn_reason", "matrix")]),
        _ => Vec::new(),
    }
}

async fn portal_matrix(world: &World) -> usize {
    let app = &world.app;
    let mut cells = 0;
    let mut wrong = Vec::new();
    for page in purse_portal::pages() {
        if page.action.rule().requires == Requires::Public || page.action == Action::Logout {
            continue; // The login page and the stylesheet; logging out ends the session the cells share.
        }
        for (name, role) in world.roles() {
            for scope in [Scope::ReadWrite, Scope::Read] {
                let auth = app.session(role, scope);
                for t in &world.tenants {
                    let fresh = world.fresh_target(page.action, t).await;
                    let (path, visible) = if page.path.contains("{id}") {
                        let id = fresh.unwrap_or_else(|| target(page.path, page.action, t, world.class));
                        let global = page.path.starts_with("/classes/");
                        (page.path.replace("{id}", &id.to_string()), global || world.sees(role, t.customer))
                    } else {
                        (page.path.to_owned(), true)
                    };
                    let form = fields(page.action, t);
                    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let reply = app.page(&auth, page.method.as_str(), &path, &form).await;
                    cells += 1;
                    let mut expected = expect(role, scope, page.action, visible);
                    // A customer's way in is its own page: the staff's list of customers is not found.
                    if page.path == "/customers" && matches!(role, Role::Customer(_)) && expected == Expect::Answered {
                        expected = Expect::Hidden;
                    }
                    // Account settings are a customer's own pages.
                    if page.path.starts_with("/settings/account") && !matches!(role, Role::Customer(_)) {
                        expected = Expect::Hidden;
                    }
                    if !matches(world, role, expected, &reply, true) {
                        let text = reply.text();
                        let excerpt: String = text.chars().take(300).collect();
                        wrong.push(format!(
                            "{name} {scope:?} {} {path}: expected {expected:?}, got {} {excerpt}",
                            page.method, reply.status
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} portal cells disagree with the policy:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    cells
}

// ------------------------------------------------------------------ the defects, one by one

fn both(name: &str) -> Vec<String> {
    common::app::off_runtime(|| both_backends(name))
}

/// Issue 17, defect 1: a customer could choose its reseller's master wallet as its recharge
/// method and drain it; and the refusal told it how much the reseller's wallet held.
#[test]
fn issue_17_a_customer_may_not_recharge_from_its_resellers_master_wallet() {
    for url in both("issue_17_master_recharge") {
        with_world(&url, async |world| {
            let t = &world.tenants[0];
            let customer = world.app.key(Role::Customer(PartyId(t.customer)), Scope::ReadWrite);
            let path = format!("/v1/customers/{}/recharge-settings", t.customer);
            let drain = json!({ "enabled": true, "method": "master_account", "threshold": "100000", "recharge_amount": "400", "per_day_max": 24 });
            let r = world.app.call(&customer, "PUT", &path, Some(&drain)).await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "method")), "{}", r.body);
            let settings = ok(&world.app.call(&customer, "GET", &path, None).await, "settings");
            assert_eq!(
                (settings["enabled"].as_bool(), settings["method"].as_str()),
                (Some(false), Some("invoice")),
                "nothing changed"
            );
            // Card or invoice are the customer's own choice.
            let own = json!({ "enabled": true, "method": "invoice", "threshold": "10", "recharge_amount": "40" });
            ok(&world.app.call(&customer, "PUT", &path, Some(&own)).await, "invoice recharge");
            // Staff may choose the master account; the customer may then turn it off, not change it.
            let reseller = world.app.key(Role::Reseller(PartyId(t.reseller)), Scope::ReadWrite);
            let staff =
                json!({ "enabled": true, "method": "master_account", "threshold": "10", "recharge_amount": "40" });
            ok(&world.app.call(&reseller, "PUT", &path, Some(&staff)).await, "staff's master account recharge");
            let raise =
                json!({ "enabled": true, "method": "master_account", "threshold": "10", "recharge_amount": "400" });
            let r = world.app.call(&customer, "PUT", &path, Some(&raise)).await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "method")), "{}", r.body);
            let off =
                json!({ "enabled": false, "method": "master_account", "threshold": "10", "recharge_amount": "40" });
            ok(&world.app.call(&customer, "PUT", &path, Some(&off)).await, "turning it off");
        });
    }
}

/// Issue 17, defect 2: a reseller could take money out of its customers' wallets with a
/// transfer, and move money between two customers with `kind: recharge`; none of it was audited.
#[test]
fn issue_17_a_reseller_may_not_take_its_customers_money() {
    for url in both("issue_17_reseller_transfer") {
        with_world(&url, async |world| {
            let (t, u) = (&world.tenants[0], &world.tenants[1]);
            let reseller = world.app.key(Role::Reseller(PartyId(t.reseller)), Scope::ReadWrite);
            let before =
                ok(&world.app.call(&world.op, "GET", &format!("/v1/accounts/{}", t.wallet), None).await, "wallet");
            let pull = json!({ "client_id": "pull", "source": t.wallet, "target": t.master, "amount": "5.00", "currency": "USD" });
            let r = world.app.call(&reseller, "POST", "/v1/transfers", Some(&pull)).await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "source")), "{}", r.body);
            let between = json!({ "client_id": "between", "source": t.wallet, "target": u.wallet, "amount": "5.00", "currency": "USD", "kind": "recharge" });
            let r = world.app.call(&reseller, "POST", "/v1/transfers", Some(&between)).await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "source")), "{}", r.body);
            // Even the operator cannot make a recharge between two customers: the ledger refuses it.
            let r = world.app.call(&world.op, "POST", "/v1/transfers", Some(&between)).await;
            assert_eq!((r.status.as_u16(), r.error()), (422, ("issue_needs_master_wallet", "source")), "{}", r.body);
            let after =
                ok(&world.app.call(&world.op, "GET", &format!("/v1/accounts/{}", t.wallet), None).await, "wallet");
            assert_eq!(before["balance"], after["balance"]);
            // Taking money back is an adjustment with a reason, and it is in the audit log.
            let adjust = json!({ "client_id": "adj", "account": t.wallet, "amount": "5.00", "currency": "USD", "direction": "debit", "reason": "duplicate top-up" });
            let r = world.app.call(&reseller, "POST", "/v1/adjustments", Some(&adjust)).await;
            let transfer = ok(&r, "adjustment")["transfer"].as_u64().unwrap();
            let no_reason = json!({ "client_id": "adj-2", "account": t.wallet, "amount": "5.00", "currency": "USD", "direction": "debit", "reason": " " });
            let r = world.app.call(&reseller, "POST", "/v1/adjustments", Some(&no_reason)).await;
            assert_eq!((r.status.as_u16(), r.error()), (422, ("reason_must_not_be_empty", "reason")), "{}", r.body);
            let own_master = json!({ "client_id": "adj-3", "account": t.master, "amount": "5.00", "currency": "USD", "direction": "credit", "reason": "gift to myself" });
            let r = world.app.call(&reseller, "POST", "/v1/adjustments", Some(&own_master)).await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "account")), "{}", r.body);
            let log = ok(
                &world
                    .app
                    .call(&world.op, "GET", &format!("/v1/audit-log?party={}&entity=transfer", t.customer), None)
                    .await,
                "audit",
            );
            let entry = log["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["entity_id"] == json!(transfer.to_string()))
                .expect("the adjustment is audited");
            assert_eq!(entry["action"], "adjustment");
            assert!(entry["after"].to_string().contains("duplicate top-up"), "{entry}");
            // A staff issue from the master wallet is audited too, with who made it.
            let issue = json!({ "client_id": "give", "source": t.master, "target": t.wallet, "amount": "1.00", "currency": "USD", "kind": "issue", "reason": "goodwill" });
            let given = ok(&world.app.call(&reseller, "POST", "/v1/transfers", Some(&issue)).await, "issue")
                ["transfer"]
                .as_u64()
                .unwrap();
            let log = ok(&world.app.call(&world.op, "GET", "/v1/audit-log?entity=transfer", None).await, "audit");
            assert!(
                log["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["entity_id"] == json!(given.to_string()) && e["action"] == "issue"),
                "{log}"
            );
        });
    }
}

/// Issue 17, defect 4: client ids are scoped by the tenant as a part of the key: an
/// operator's `c34:x` and customer 34's `x` are two ids, with two postings.
#[test]
fn issue_17_client_ids_of_two_tenants_never_collide() {
    for url in both("issue_17_client_ids") {
        with_world(&url, async |world| {
            let t = &world.tenants[0];
            let reseller = world.app.key(Role::Reseller(PartyId(t.reseller)), Scope::ReadWrite);
            let theirs = json!({ "client_id": "x", "account": t.wallet, "amount": "1.00", "currency": "USD" });
            let first = ok(&world.app.call(&reseller, "POST", "/v1/charges", Some(&theirs)).await, "reseller's charge");
            let prefixed = json!({ "client_id": format!("r{}:x", t.reseller), "account": t.wallet, "amount": "2.00", "currency": "USD" });
            let second = world.app.call(&world.op, "POST", "/v1/charges", Some(&prefixed)).await;
            assert_eq!(second.status, 201, "the operator's id is its own: {}", second.body);
            assert_ne!(second.body["transfer"], first["transfer"]);
            let plain = json!({ "client_id": "x", "account": t.wallet, "amount": "3.00", "currency": "USD" });
            let third = world.app.call(&world.op, "POST", "/v1/charges", Some(&plain)).await;
            assert_eq!(third.status, 201, "{}", third.body);
            // Each tenant replays its own.
            let again = ok(&world.app.call(&reseller, "POST", "/v1/charges", Some(&theirs)).await, "replay");
            assert_eq!(
                (again["transfer"].clone(), again["replayed"].as_bool()),
                (first["transfer"].clone(), Some(true))
            );
            let shown = ok(
                &world.app.call(&reseller, "GET", &format!("/v1/transfers/{}", first["transfer"]), None).await,
                "transfer",
            );
            assert_eq!(shown["client_id"], "x");
        });
    }
}

/// Issue 17, defect 5: customers do not see customer classes and their maximum increases.
#[test]
fn issue_17_customers_do_not_list_customer_classes() {
    for url in both("issue_17_classes") {
        with_world(&url, async |world| {
            let t = &world.tenants[0];
            let customer = world.app.key(Role::Customer(PartyId(t.customer)), Scope::ReadWrite);
            let r = world.app.call(&customer, "GET", "/v1/customer-classes", None).await;
            assert_eq!((r.status.as_u16(), r.error().0), (403, "forbidden"), "{}", r.body);
            let session = world.app.session(Role::Customer(PartyId(t.customer)), Scope::ReadWrite);
            assert_eq!(world.app.page(&session, "GET", "/classes", &[]).await.status, 403);
            let reseller = world.app.key(Role::Reseller(PartyId(t.reseller)), Scope::Read);
            assert_eq!(world.app.call(&reseller, "GET", "/v1/customer-classes", None).await.status, 200);
        });
    }
}

/// Issue 17, defect 6: API keys and portal users over the API, under the same policy.
#[test]
fn issue_17_keys_and_users_are_managed_over_the_api_within_the_tenant() {
    for url in both("issue_17_keys_users") {
        with_world(&url, async |world| {
            let (t, u) = (&world.tenants[0], &world.tenants[2]);
            let reseller = world.app.key(Role::Reseller(PartyId(t.reseller)), Scope::ReadWrite);
            // A reseller issues a key for its customer; the secret works at once and is shown once.
            let made = ok(
                &world
                    .app
                    .call(
                        &reseller,
                        "POST",
                        "/v1/api-keys",
                        Some(&json!({ "name": "switch", "role": "customer", "party": t.customer, "scope": "read" })),
                    )
                    .await,
                "key",
            );
            let secret = made["secret"].as_str().unwrap().to_owned();
            let key = Auth::Key(secret.clone());
            assert_eq!(world.app.call(&key, "GET", &format!("/v1/customers/{}", t.customer), None).await.status, 200);
            let listed = ok(&world.app.call(&reseller, "GET", "/v1/api-keys", None).await, "keys");
            assert!(listed["data"].as_array().unwrap().iter().any(|k| k["id"] == made["key"]["id"]));
            assert!(!listed.to_string().contains(&secret), "a secret is never listed");
            // Not for another reseller's customer, nor an operator key.
            let r = world
                .app
                .call(
                    &reseller,
                    "POST",
                    "/v1/api-keys",
                    Some(&json!({ "name": "x", "role": "customer", "party": u.customer, "scope": "read" })),
                )
                .await;
            assert_eq!((r.status.as_u16(), r.error()), (422, ("party_not_found", "party")), "{}", r.body);
            let r = world
                .app
                .call(
                    &reseller,
                    "POST",
                    "/v1/api-keys",
                    Some(&json!({ "name": "x", "role": "operator", "scope": "read" })),
                )
                .await;
            assert_eq!((r.status.as_u16(), r.error()), (403, ("forbidden_field", "role")), "{}", r.body);
            // Revoked: it stops at once; and the revocation is audited.
            let id = made["key"]["id"].as_u64().unwrap();
            ok(&world.app.call(&reseller, "POST", &format!("/v1/api-keys/{id}/revoke"), None).await, "revoke");
            assert_eq!(world.app.call(&key, "GET", &format!("/v1/customers/{}", t.customer), None).await.status, 401);
            // A customer admin manages its own party's users, and only those.
            let admin = world.app.key(Role::Customer(PartyId(t.customer)), Scope::ReadWrite);
            let user = json!({ "email": "clerk@example.com", "name": "Clerk", "password": "a long password", "scope": "read" });
            let made = ok(&world.app.call(&admin, "POST", "/v1/users", Some(&user)).await, "user");
            assert_eq!((made["role"].as_str(), made["party"].as_u64()), (Some("customer"), Some(t.customer)));
            let r = world.app.call(&admin, "POST", "/v1/users", Some(&json!({ "email": "x@example.com", "name": "X", "password": "a long password", "role": "reseller", "party": t.reseller, "scope": "read" }))).await;
            assert_eq!(r.status, 422, "a customer does not see its reseller: {}", r.body);
            let id = made["id"].as_u64().unwrap();
            let disabled =
                ok(&world.app.call(&admin, "POST", &format!("/v1/users/{id}/disable"), None).await, "disable");
            assert!(disabled["disabled_at"].is_string());
            let other = world.app.key(Role::Customer(PartyId(u.customer)), Scope::ReadWrite);
            assert_eq!(world.app.call(&other, "POST", &format!("/v1/users/{id}/disable"), None).await.status, 404);
            let log = ok(&world.app.call(&world.op, "GET", "/v1/audit-log?entity=user", None).await, "audit");
            assert!(log["data"].as_array().unwrap().iter().any(|e| e["action"] == "disable"), "{log}");
            // Bad input names its field and creates nothing.
            let r = world
                .app
                .call(
                    &admin,
                    "POST",
                    "/v1/users",
                    Some(&json!({ "email": "not an address", "name": "X", "password": "a long password", "scope": "read" })),
                )
                .await;
            assert_eq!((r.status.as_u16(), r.error().1), (422, "email"));
        });
    }
}

/// The policy's table in the README and docs is the code's own.
#[test]
fn issue_17_the_documented_policy_is_the_codes() {
    let table = policy::markdown();
    for file in ["../../README.md", "../../docs/authorization.md"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        assert!(text.contains(&table), "{file} does not carry the policy's table: run scripts/policy.sh");
    }
}

/// Issue 17, defect 3: changing a customer wallet's permanent credit limit failed with
/// `party_not_found` whenever the customer was not in the ledger's cache (after a restart,
/// so always in `purse demo`); the portal's Balance & Credits showed a 500.
#[test]
fn issue_17_a_wallets_credit_limit_changes_after_a_restart() {
    for url in both("issue_17_credit_after_restart") {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let world = runtime.block_on(World::new(&url));
        let t = world.tenants[0].clone();
        drop(world);
        // A new process: nothing of the customer is cached.
        let app = InProcess::on(&url);
        runtime.block_on(async {
            let op = app.operator();
            let r = app
                .call(
                    &op,
                    "PATCH",
                    &format!("/v1/accounts/{}", t.wallet),
                    Some(&json!({ "credit_limit": "700.00", "reason": "x" })),
                )
                .await;
            assert_eq!(r.status, 200, "{url}: {}", r.body);
            assert_eq!(
                ok(&app.call(&op, "GET", &format!("/v1/accounts/{}", t.wallet), None).await, "wallet")["credit_limit"],
                "700.00"
            );
            let app2 = InProcess::on(&url);
            let staff = app2.session(Role::Reseller(PartyId(t.reseller)), Scope::ReadWrite);
            let r = app2
                .page(
                    &staff,
                    "POST",
                    &format!("/customers/{}/credit", t.customer),
                    &[("account", &t.wallet.to_string()), ("credit_limit", "650.00"), ("reason", "y")],
                )
                .await;
            assert!(
                r.status.is_redirection() || r.status.is_success(),
                "{url}: {} {}",
                r.status,
                r.text().chars().take(400).collect::<String>()
            );
            assert_eq!(
                ok(&app2.call(&op, "GET", &format!("/v1/accounts/{}", t.wallet), None).await, "wallet")["credit_limit"],
                "650.00"
            );
            common::app::off_runtime(move || drop((app, app2)));
        });
    }
}
