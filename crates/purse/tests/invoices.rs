//! Invoices end to end (issue 8): a served API over each backend, a worker the test steps
//! with a clock it moves, e-mails to a real SMTP server (aiosmtpd) and PDFs read back with
//! poppler's `pdftotext`. Three months of usage, payments and overpayments against a
//! reference model; invoice numbering under concurrency and across restarts; the rules of
//! paying and voiding.

mod common;

use common::world::{MailTo, Portal};
use common::*;
use purse::client::Client;
use purse_app::notifier::AlertConfig;
use purse_core::{Role, Scope, Timestamp};
use purse_engine::Clock;
use serde_json::{json, Value};

const MINUTE: i64 = 60 * 1_000_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// Units of a 4-digit currency as the API writes them.
fn units(text: &str) -> i64 {
    let negative = text.starts_with('-');
    let (whole, frac) = text.trim_start_matches('-').split_once('.').unwrap_or((text, ""));
    let v = whole.parse::<i64>().unwrap() * 10_000 + format!("{frac:0<4}").parse::<i64>().unwrap();
    if negative {
        -v
    } else {
        v
    }
}

fn text(units: i64) -> String {
    format!("{}{}.{:04}", if units < 0 { "-" } else { "" }, units.abs() / 10_000, units.abs() % 10_000)
}

world!();

impl World {
    fn new(url: &str, start: Timestamp) -> World {
        World::evaluating_every(url, start, AlertConfig::default().evaluate_every_s)
    }

    fn evaluating_every(url: &str, start: Timestamp, evaluate_every_s: i64) -> World {
        let alerts = AlertConfig {
            from: "Purse <billing@purse.test>".into(),
            evaluate_every_s,
            allow_private_webhooks: true,
            ..AlertConfig::default()
        };
        let options = common::world::Options {
            start,
            alerts,
            mail: MailTo::Smtp,
            recharges: true,
            usd: false,
            ..Default::default()
        };
        World(common::world::World::with(url, options))
    }

    fn refused(&mut self, method: &str, path: &str, body: Value) -> (u16, String, String) {
        let reply = self.api.send(method, path, &body, &key()).unwrap();
        let v = reply.json();
        (
            reply.status,
            v["error"]["code"].as_str().unwrap_or("").to_owned(),
            v["error"]["field"].as_str().unwrap_or("").to_owned(),
        )
    }

    fn customer(&mut self, name: &str, reseller: Option<u64>) -> (u64, u64) {
        let mut body = json!({ "billing": "postpaid", "credit_limit": "100000" });
        if let Some(r) = reseller {
            body["reseller"] = json!(r);
        }
        let (id, wallet) = self.new_customer(name, body);
        self.billing_email(id, name);
        (id, wallet)
    }

    fn charge(&mut self, wallet: u64, amount: &str, service: &str) -> u64 {
        let posted = self.call(
            "POST",
            "/v1/charges",
            json!({ "client_id": key(), "account": wallet, "amount": amount, "currency": "USD", "service": service }),
        );
        posted["transfer"].as_u64().unwrap()
    }

    fn pay(&mut self, wallet: u64, amount: &str) -> u64 {
        self.payment(wallet, amount, "bank_transfer")["transfer"].as_u64().unwrap()
    }

    /// The customer's invoices, oldest first.
    fn invoices(&mut self, customer: u64) -> Vec<Value> {
        let mut all =
            self.get(&format!("/v1/invoices?customer={customer}&limit=500"))["data"].as_array().unwrap().clone();
        all.reverse();
        all
    }

    /// The e-mails received whose subject contains `what`, as received.
    fn mails(&self, what: &str) -> Vec<String> {
        self.messages().into_iter().filter(|m| m.subject.contains(what)).map(|m| m.raw).collect()
    }
}

/// A small deterministic generator for the simulation.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// What the reference model expects of payments and invoices: payments applied oldest
/// first to the oldest invoice due.
#[derive(Default)]
struct Model {
    /// Consumption posted since the last invoice, and in all.
    uninvoiced: i64,
    consumed: i64,
    /// Recharger with what is left of each, oldest first.
    payments: Vec<i64>,
    /// Invoices with their total and what is allocated, oldest first.
    invoices: Vec<(i64, i64)>,
}

impl Model {
    fn apply(&mut self) {
        for p in &mut self.payments {
            for (total, allocated) in &mut self.invoices {
                let take = (*total - *allocated).min(*p);
                *allocated += take;
                *p -= take;
            }
        }
    }

    fn unallocated(&self) -> i64 {
        self.payments.iter().sum()
    }
}

fn three_months(url: &str) {
    // 2026-01-10 12:00 UTC; the customer's cycle starts on the 5th at midnight, UTC+3.
    let start = purse_core::time::parse("2026-01-10T12:00:00Z").unwrap();
    let mut w = World::new(url, start);
    w.call("POST", "/v1/currencies", json!({ "code": "USD", "scale": 4 }));
    let (c, wallet) = w.customer("acme", None);
    let billing =
        w.call("PUT", &format!("/v1/customers/{c}/billing-settings"), json!({ "cycle_day": 5, "time_zone": "+03:00" }));
    assert_eq!((billing["cycle_day"].clone(), billing["time_zone"].clone()), (json!(5), json!("+03:00")));
    assert_eq!(billing["next_invoice_at"], "2026-02-04T21:00:00.000000Z");
    // A subscriber account's usage is the customer's too.
    let sub =
        w.call("POST", "/v1/accounts", json!({ "client_id": "acme-sub", "party": c, "kind": "subscriber_debit" }));
    let sub = sub["id"].as_u64().unwrap();
    w.pay(sub, "5000.0000");
    let mut model = Model::default();
    let mut rng = Lcg(8);
    let mut charges: Vec<(u64, i64)> = Vec::new();
    let mut reversed = 0;
    let services = ["calls", "sms", "data"];
    let mut boundaries = Vec::new();
    for day in 0..100 {
        w.clock.set(Timestamp(start.0 + day * DAY));
        for _ in 0..(3 + rng.next(6)) {
            let amount = 1 + rng.next(20_000) as i64; // 0.0001 to 2.0000
            let account = if rng.next(5) == 0 { sub } else { wallet };
            let t = w.charge(account, &text(amount), services[rng.next(3) as usize]);
            charges.push((t, amount));
            model.uninvoiced += amount;
            model.consumed += amount;
        }
        if day % 9 == 4 {
            // A real-time session: a hold, captured in part, is consumption too.
            let hold = w.call("POST", "/v1/holds", json!({ "client_id": key(), "account": wallet, "amount": "1.0000", "currency": "USD", "service": "calls" }));
            let captured = 1 + rng.next(10_000) as i64;
            let hold = hold["hold"].as_u64().unwrap();
            let done = w.call(
                "POST",
                &format!("/v1/holds/{hold}/capture"),
                json!({ "client_id": key(), "amount": text(captured) }),
            );
            charges.push((done["transfer"].as_u64().unwrap(), captured));
            model.uninvoiced += captured;
            model.consumed += captured;
        }
        if rng.next(8) == 0 && !charges.is_empty() {
            // Reverse an earlier charge, perhaps one invoiced already: a negative line now.
            let (t, amount) = charges.swap_remove(rng.next(charges.len() as u64) as usize);
            w.call("POST", "/v1/reversals", json!({ "client_id": key(), "transfer": t }));
            model.uninvoiced -= amount;
            model.consumed -= amount;
            reversed += 1;
        }
        // Recharger: a partial one, an overpayment, one between invoices, one on issue day.
        let paid = match day {
            20 => Some(80_000),    // 8.0000: part of the first invoice
            30 => Some(5_000_000), // 500.0000: the rest, and an overpayment
            55 => Some(1_234_567), // 123.4567
            85 => Some(2_000_000), // 200.0000
            _ => None,
        };
        if let Some(amount) = paid {
            w.pay(wallet, &text(amount));
            model.payments.push(amount);
        }
        let before = w.invoices(c).len();
        w.step();
        model.apply(); // the payments' receipts are recorded first in a step
        let after = w.invoices(c);
        if after.len() > before {
            assert_eq!(after.len(), before + 1, "one invoice per cycle");
            let i = &after[before];
            assert_eq!(
                units(i["subtotal"].as_str().unwrap()),
                model.uninvoiced,
                "day {day}: the invoice holds exactly what was posted since the last"
            );
            model.uninvoiced = 0;
            model.invoices.push((units(i["amount"].as_str().unwrap()), 0));
            model.apply(); // then the new invoice takes unallocated payments
            boundaries.push(i["period_end"].as_str().unwrap().to_owned());
        }
        let shown = w.invoices(c);
        for (i, (total, allocated)) in shown.iter().zip(&model.invoices) {
            assert_eq!(units(i["amount"].as_str().unwrap()), *total);
            assert_eq!(
                units(i["allocated"].as_str().unwrap()),
                *allocated,
                "day {day}: {} allocated oldest first",
                i["number"]
            );
            let status = if allocated == total {
                "paid"
            } else if *allocated > 0 {
                "partially_paid"
            } else {
                "open"
            };
            assert_eq!(i["status"], status, "day {day}: {}", i["number"]);
        }
        let credit = w.get(&format!("/v1/customers/{c}/credit-settings"));
        // The subscriber account's own payment is a payment into that account, not the wallet.
        assert_eq!(
            units(credit["unallocated_payments"].as_str().unwrap()),
            model.unallocated(),
            "day {day}: unallocated payments"
        );
    }
    assert!(reversed > 3, "the story reverses charges ({reversed})");
    // Three cycles: Feb 5, Mar 5 and Apr 5, midnight at UTC+3.
    assert_eq!(
        boundaries,
        ["2026-02-04T21:00:00.000000Z", "2026-03-04T21:00:00.000000Z", "2026-04-04T21:00:00.000000Z"]
    );
    let invoices = w.invoices(c);
    let numbers: Vec<&str> = invoices.iter().map(|i| i["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["INV-0-000001", "INV-0-000002", "INV-0-000003"], "numbered without gaps");
    // Each total is the subtotal plus the carry in less the carry out, rounded to cents;
    // the lines (walked from the journal) sum to the subtotal.
    let mut carry = 0;
    let mut invoiced = 0;
    for i in &invoices {
        let detail = w.get(&format!("/v1/invoices/{}", i["id"]));
        let lines: i64 = detail["lines"].as_array().unwrap().iter().map(|l| units(l["amount"].as_str().unwrap())).sum();
        let (subtotal, total) = (units(i["subtotal"].as_str().unwrap()), units(i["amount"].as_str().unwrap()));
        let (carry_in, carry_out) =
            (units(i["rounding_carried_in"].as_str().unwrap()), units(i["rounding_carried_out"].as_str().unwrap()));
        assert_eq!(lines, subtotal, "{}: lines", i["number"]);
        assert_eq!(carry_in, carry);
        assert_eq!(total, subtotal + carry_in - carry_out);
        assert_eq!(total % 100, 0, "{}: rounded to cents", i["number"]);
        assert!(carry_out.abs() <= 50);
        let services: Vec<&str> =
            detail["lines"].as_array().unwrap().iter().map(|l| l["service"].as_str().unwrap()).collect();
        assert_eq!(services, ["calls", "data", "sms"]);
        carry = carry_out;
        invoiced += total;
    }
    // Reconciliation: every invoice's total, the last carry and what is still uninvoiced
    // equal the journal's consumption to the last unit.
    let uninvoiced: i64 =
        [wallet, sub].iter().map(|a| units(w.get(&format!("/v1/accounts/{a}"))["uninvoiced"].as_str().unwrap())).sum();
    assert_eq!(uninvoiced, model.uninvoiced);
    assert_eq!(invoiced + carry + uninvoiced, model.consumed, "invoices + carry + uninvoiced = consumption");
    // Every allocation is recorded: the payments list shows where each payment went.
    let receipts = w.get(&format!("/v1/receipts?customer={c}&limit=100"))["data"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), 4, "one receipt per payment into the wallet");
    let allocated: i64 = receipts
        .iter()
        .flat_map(|r| r["allocations"].as_array().unwrap().clone())
        .map(|a| units(a["amount"].as_str().unwrap()))
        .sum();
    assert_eq!(allocated, model.invoices.iter().map(|(_, a)| a).sum::<i64>());
    // Each invoice was e-mailed once to the billing e-mail with its PDF, which names its
    // number and total.
    for i in &invoices {
        let number = i["number"].as_str().unwrap();
        let cents = units(i["amount"].as_str().unwrap()) / 100;
        let total = format!("{}.{:02} USD", cents / 100, cents % 100);
        let sent = w.mails(number);
        assert_eq!(sent.len(), 1, "{number} e-mailed once");
        assert!(sent[0].contains("acme@billing.test"));
        let (headers, pdf) = mail_attachment(&sent[0], "application/pdf").expect("the invoice attached");
        assert!(headers.contains(&format!("{number}.pdf")), "{headers}");
        let read = pdf_text(&pdf);
        assert!(read.contains(number) && read.contains(&total) && read.contains("acme"), "{number} {total}: {read}");
        // And through the API.
        let reply = w.api.get(&format!("/v1/invoices/{}/pdf", i["id"])).unwrap();
        assert_eq!((reply.status, reply.header("content-type")), (200, Some("application/pdf")));
        assert!(pdf_text(&reply.body).contains(&total));
    }
    w.step();
    assert_eq!(w.mails("Invoice INV-").len(), 3, "nothing is sent twice");
}

#[test]
fn issue_8_three_months_of_usage_payments_and_overpayments_reconcile_to_the_last_unit_on_sqlite() {
    three_months(&sqlite_url());
}

#[test]
fn issue_8_three_months_of_usage_payments_and_overpayments_reconcile_to_the_last_unit_on_postgres() {
    three_months(&pg_url("issue_8_three_months"));
}

fn numbering(url: &str) {
    let start = purse_core::time::parse("2026-05-10T00:00:00Z").unwrap();
    let mut w = World::new(url, start);
    w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
    let reseller =
        w.call("POST", "/v1/resellers", json!({ "client_id": "north", "name": "Northwind" }))["id"].as_u64().unwrap();
    let mut customers = Vec::new();
    for n in 0..16 {
        let (c, wallet) = w.customer(&format!("c{n}"), (n % 4 == 0).then_some(reseller));
        customers.push((c, wallet, n % 4 == 0));
    }
    // A second server on the same database: two processes' engines issue at once.
    w.serve();
    w.clock.advance_micros(MINUTE);
    let issue_all = |w: &mut World, round: usize| {
        for (_, wallet, _) in customers.clone() {
            w.charge(wallet, &format!("12.{:02}", 34 + round), "calls");
        }
        std::thread::scope(|scope| {
            for (k, chunk) in customers.chunks(4).enumerate() {
                let mut client = w.client(k % 2);
                let mut again = w.client((k + 1) % 2);
                scope.spawn(move || {
                    for (c, _, _) in chunk {
                        // Each customer asked twice at once, on both servers: one invoice.
                        let (a, b) = std::thread::scope(|s| {
                            let first = s.spawn(|| {
                                client
                                    .send("POST", &format!("/v1/customers/{c}/invoices"), &json!({}), &key())
                                    .unwrap()
                                    .status
                            });
                            let second = s.spawn(|| {
                                again
                                    .send("POST", &format!("/v1/customers/{c}/invoices"), &json!({}), &key())
                                    .unwrap()
                                    .status
                            });
                            (first.join().unwrap(), second.join().unwrap())
                        });
                        let mut statuses = [a, b];
                        statuses.sort_unstable();
                        assert_eq!(statuses, [201, 422], "customer {c}: one invoice, one nothing to invoice");
                    }
                });
            }
        });
    };
    issue_all(&mut w, 0);
    // Restart: both servers stop, a new one starts on the same database.
    for s in w.servers.drain(..) {
        s.stop().unwrap();
    }
    w.serve();
    w.serve();
    w.api = w.client(0);
    w.clock.advance_micros(MINUTE);
    issue_all(&mut w, 1);
    let mut operator = Vec::new();
    let mut northwind = Vec::new();
    for (c, _, theirs) in &customers {
        let invoices = w.invoices(*c);
        assert_eq!(invoices.len(), 2, "customer {c}: one invoice per round");
        for i in invoices {
            let number = i["number"].as_str().unwrap().to_owned();
            if *theirs {
                assert!(number.starts_with(&format!("INV-{reseller}-")), "{number}");
                northwind.push(number);
            } else {
                assert!(number.starts_with("INV-0-"), "{number}");
                operator.push(number);
            }
        }
    }
    let seq = |mut numbers: Vec<String>| {
        numbers.sort();
        numbers.iter().map(|n| n.rsplit('-').next().unwrap().parse::<u64>().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(seq(operator), (1..=24).collect::<Vec<_>>(), "the operator's numbers have no gaps and no twins");
    assert_eq!(seq(northwind), (1..=8).collect::<Vec<_>>(), "the reseller's own series has no gaps");
}

#[test]
fn issue_8_invoice_numbers_have_no_gaps_under_concurrency_and_across_restarts_on_sqlite() {
    numbering(&sqlite_url());
}

#[test]
fn issue_8_invoice_numbers_have_no_gaps_under_concurrency_and_across_restarts_on_postgres() {
    numbering(&pg_url("issue_8_numbering"));
}

/// A payment form sent twice (a double click on "Record payment", or the browser sending it
/// again after a slow answer) records one payment: the form carries its own id, and the
/// payment is posted under it. Before, once the first payment had been applied to the
/// invoice, the second was a payment of its own.
#[test]
fn a_payment_form_sent_twice_records_one_payment() {
    let mut w = World::new(&sqlite_url(), Timestamp::from_secs(T0));
    w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
    let (customer, wallet) = w.customer("Hooli", None);
    w.charge(wallet, "60", "voice");
    let invoice = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}))["id"].as_u64().unwrap();
    w.step();
    let path = format!("/invoices/{invoice}");
    let due = |w: &mut World| w.get(&format!("/v1{path}"))["due"].as_str().unwrap().to_owned();
    assert_eq!(due(&mut w), "60.00");
    let mut clerk = w.portal(Role::Operator, Scope::ReadWrite);
    let (_, page) = clerk.get(&path);
    let token = Portal::hidden(&page, "pay_request").expect("the payment form carries its own id");
    let form = [("amount", "20.00"), ("method", "bank_transfer"), ("pay_request", token.as_str())];
    for _ in 0..2 {
        let (status, body) = clerk.post(&format!("{path}/pay"), &form);
        assert_eq!(status, 303, "{body}");
        // Its receipt is made and applied to the invoice before the form comes again.
        w.step();
        assert_eq!(due(&mut w), "40.00", "one payment of 20.00");
    }
    assert_eq!(w.get(&format!("/v1/accounts/{wallet}"))["balance"], "-40.00");
    // A new form is a new payment.
    let (_, page) = clerk.get(&path);
    let fresh = Portal::hidden(&page, "pay_request").unwrap();
    assert_ne!(fresh, token);
    let (status, _) =
        clerk.post(&format!("{path}/pay"), &[("amount", "20.00"), ("method", "cash"), ("pay_request", &fresh)]);
    assert_eq!(status, 303);
    w.step();
    assert_eq!(due(&mut w), "20.00");
}

/// An invoice's and a receipt's PDF name the customer and the invoice a payment was for,
/// and the receipt's page shows no posting number: before, the PDFs read "Hooli (customer
/// 3)" and "Reference: payment 7", numbers a customer has never seen anywhere else.
#[test]
fn a_receipt_and_an_invoice_name_the_customer_and_the_invoice_paid_never_their_ids() {
    let mut w = World::new(&sqlite_url(), Timestamp::from_secs(T0));
    w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
    let (customer, wallet) = w.customer("Hooli", None);
    w.charge(wallet, "60", "voice");
    let invoice = w.call("POST", &format!("/v1/customers/{customer}/invoices"), json!({}));
    let number = invoice["number"].as_str().unwrap().to_owned();
    w.step();
    let pdf = w.api.get(&format!("/v1/invoices/{}/pdf", invoice["id"])).unwrap();
    let read = pdf_text(&pdf.body);
    assert!(read.contains("Hooli") && !read.contains("(customer"), "{read}");
    w.call(
        "POST",
        &format!("/v1/invoices/{}/payments", invoice["id"]),
        json!({ "amount": "20.00", "currency": "USD", "method": "bank_transfer" }),
    );
    w.step();
    w.step();
    let receipt = w.get(&format!("/v1/receipts?customer={customer}"))["data"][0].clone();
    let pdf = w.api.get(&format!("/v1/receipts/{}/pdf", receipt["id"])).unwrap();
    let read = pdf_text(&pdf.body);
    assert!(read.contains("Received from") && read.contains("Hooli"), "{read}");
    assert!(read.contains("For invoice") && read.contains(&number), "{read}");
    assert!(!read.contains("(customer") && !read.contains("payment "), "{read}");
    let mut clerk = w.portal(Role::Operator, Scope::ReadWrite);
    let (status, page) = clerk.get(&format!("/receipts/{}", receipt["id"]));
    assert_eq!(status, 200);
    assert!(page.contains(&number) && !page.contains("Reference"), "{page}");
}

#[test]
fn issue_8_paying_and_voiding_follow_the_rules_and_bad_input_names_the_rule() {
    let start = purse_core::time::parse("2026-06-10T09:00:00Z").unwrap();
    let mut w = World::new(&sqlite_url(), start);
    w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
    w.call("POST", "/v1/currencies", json!({ "code": "EUR" }));
    let (c, wallet) = w.customer("rules", None);
    // A cycle day outside 1-28, a time zone that is none: refused, nothing changed.
    for (body, field) in [
        (json!({ "cycle_day": 0, "time_zone": "UTC" }), "cycle_day"),
        (json!({ "cycle_day": 29, "time_zone": "UTC" }), "cycle_day"),
        (json!({ "cycle_day": 5, "time_zone": "Mars/Olympus" }), "time_zone"),
    ] {
        let (status, code, named) = w.refused("PUT", &format!("/v1/customers/{c}/billing-settings"), body);
        assert_eq!((status, named.as_str()), (422, field), "{code}");
    }
    let billing = w.get(&format!("/v1/customers/{c}/billing-settings"));
    assert_eq!(
        (billing["cycle_day"].clone(), billing["time_zone"].clone()),
        (json!(1), json!("UTC")),
        "the default stays"
    );
    // Nothing to invoice yet.
    let (status, code, _) = w.refused("POST", &format!("/v1/customers/{c}/invoices"), json!({}));
    assert_eq!((status, code.as_str()), (422, "nothing_to_invoice"));
    let (status, code, field) = w.refused("POST", &format!("/v1/customers/{c}/invoices"), json!({}));
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "already_invoiced", "period_end"),
        "that instant is covered now"
    );
    w.clock.advance_micros(MINUTE);
    w.charge(wallet, "30.00", "calls");
    let first = w.call("POST", &format!("/v1/customers/{c}/invoices"), json!({}));
    assert_eq!((first["amount"].clone(), first["status"].clone()), (json!("30.00"), json!("open")));
    let first_id = first["id"].as_u64().unwrap();
    let pay = format!("/v1/invoices/{first_id}/payments");
    // A payment in another currency, or above what is due: refused.
    let (status, code, field) =
        w.refused("POST", &pay, json!({ "method": "cash", "amount": "10.00", "currency": "EUR" }));
    assert_eq!((status, code.as_str(), field.as_str()), (422, "currency_mismatch", "currency"));
    let (status, code, field) =
        w.refused("POST", &pay, json!({ "method": "cash", "amount": "30.01", "currency": "USD" }));
    assert_eq!((status, code.as_str(), field.as_str()), (422, "amount_above_due", "amount"));
    let paid = w.call("POST", &pay, json!({ "method": "cash", "amount": "10.00", "currency": "USD" }));
    let payment = paid["payment"].as_u64().unwrap();
    w.clock.advance_micros(MINUTE);
    w.step();
    let first = w.get(&format!("/v1/invoices/{first_id}"));
    assert_eq!(
        (first["status"].clone(), first["allocated"].clone(), first["due"].clone()),
        (json!("partially_paid"), json!("10.00"), json!("20.00"))
    );
    // A second invoice; then the first is voided: its 10.00 goes to the second.
    w.charge(wallet, "5.00", "sms");
    w.clock.advance_micros(MINUTE);
    let second = w.call("POST", &format!("/v1/customers/{c}/invoices"), json!({}));
    let second_id = second["id"].as_u64().unwrap();
    assert_eq!(second["number"], "INV-0-000002");
    let (status, code, field) = w.refused("POST", &format!("/v1/invoices/{first_id}/void"), json!({ "reason": " " }));
    assert_eq!((status, code.as_str(), field.as_str()), (422, "invalid_reason", "reason"));
    let voided = w.call("POST", &format!("/v1/invoices/{first_id}/void"), json!({ "reason": "billed in error" }));
    assert_eq!(
        (voided["status"].clone(), voided["allocated"].clone(), voided["void_reason"].clone()),
        (json!("void"), json!("0.00"), json!("billed in error"))
    );
    let released = &voided["allocations"][0];
    assert_eq!(
        (released["amount"].clone(), released["release_reason"].clone()),
        (json!("10.00"), json!("invoice voided"))
    );
    let second = w.get(&format!("/v1/invoices/{second_id}"));
    assert_eq!(
        (second["status"].clone(), second["allocated"].clone()),
        (json!("paid"), json!("5.00")),
        "the released payment pays the next invoice"
    );
    let credit = w.get(&format!("/v1/customers/{c}/credit-settings"));
    assert_eq!(credit["unallocated_payments"], "5.00");
    // Paying a void invoice, voiding it again, voiding a paid one: refused with the rule.
    let (status, code, _) = w.refused("POST", &pay, json!({ "method": "cash", "amount": "1.00", "currency": "USD" }));
    assert_eq!((status, code.as_str()), (422, "invoice_void"));
    let (status, code, _) = w.refused("POST", &format!("/v1/invoices/{first_id}/void"), json!({ "reason": "again" }));
    assert_eq!((status, code.as_str()), (422, "invoice_void"));
    let reply =
        w.api.send("POST", &format!("/v1/invoices/{second_id}/void"), &json!({ "reason": "mistake" }), &key()).unwrap();
    let refusal = reply.json();
    assert_eq!((reply.status, refusal["error"]["code"].as_str()), (422, Some("invoice_paid")));
    assert!(refusal["error"]["message"].as_str().unwrap().contains("reverse its payments first"), "{refusal}");
    // Reverse the payment: its allocations are released, and then the invoice may be voided.
    w.call("POST", "/v1/reversals", json!({ "client_id": "undo-payment", "transfer": payment }));
    w.clock.advance_micros(2 * MINUTE);
    w.step();
    let second = w.get(&format!("/v1/invoices/{second_id}"));
    assert_eq!((second["status"].clone(), second["allocated"].clone()), (json!("open"), json!("0.00")));
    let receipt = &w.get(&format!("/v1/receipts?customer={c}"))["data"][0];
    assert!(receipt["reversed_at"].is_string());
    assert_eq!(receipt["unallocated"], "0.00");
    let reasons: Vec<Value> =
        receipt["allocations"].as_array().unwrap().iter().map(|a| a["release_reason"].clone()).collect();
    assert_eq!(reasons, [json!("invoice voided"), json!("payment reversed")], "every allocation is kept and explained");
    assert_eq!(w.get(&format!("/v1/customers/{c}/credit-settings"))["unallocated_payments"], "0.00");
    let voided = w.call("POST", &format!("/v1/invoices/{second_id}/void"), json!({ "reason": "mistake" }));
    assert_eq!(voided["status"], "void");
    // The audit log has both voids; a customer's admin may not void.
    let audit = w.get(&format!("/v1/audit-log?entity=invoice&party={c}"));
    assert_eq!(audit["data"].as_array().unwrap().len(), 2);
    let opened = purse::open_store(&w.url).unwrap();
    let (_, secret) =
        purse::keys::create(&opened, "admin", Role::Customer(purse_core::PartyId(c)), Scope::ReadWrite, w.clock.now())
            .unwrap();
    let mut admin = Client::new(&format!("http://{}", w.servers[0].addr), Some(secret)).unwrap();
    w.charge(wallet, "1.00", "calls");
    w.clock.advance_micros(MINUTE);
    let third = w.call("POST", &format!("/v1/customers/{c}/invoices"), json!({}));
    assert_eq!(
        admin
            .send("POST", &format!("/v1/invoices/{}/void", third["id"]), &json!({ "reason": "x" }), "k1")
            .unwrap()
            .status,
        403
    );
    assert_eq!(admin.get(&format!("/v1/invoices/{}", third["id"])).unwrap().status, 200, "but sees its invoice");
}

#[test]
fn issue_8_an_invoice_is_issued_when_the_cycle_starts_not_at_the_next_periodic_evaluation() {
    // The periodic evaluation runs once a day here; the cycle starts an hour after the start.
    let start = purse_core::time::parse("2026-06-30T23:00:00Z").unwrap();
    let mut w = World::evaluating_every(&sqlite_url(), start, 86_400);
    w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
    let (c, wallet) = w.customer("punctual", None);
    let hooks = Receiver::start(Vec::new());
    w.call("POST", "/v1/webhook-endpoints", json!({ "url": hooks.url }));
    w.charge(wallet, "12.00", "calls");
    w.step(); // the first pass evaluates, and learns when the next cycle starts
    assert!(w.invoices(c).is_empty());
    w.clock.set(purse_core::time::parse("2026-06-30T23:59:59Z").unwrap());
    w.step();
    assert!(w.invoices(c).is_empty(), "not before the cycle starts");
    w.clock.set(purse_core::time::parse("2026-07-01T00:00:01Z").unwrap());
    w.step();
    let invoices = w.invoices(c);
    assert_eq!(invoices.len(), 1, "issued at the next step after the cycle start");
    assert_eq!(
        (invoices[0]["period_end"].clone(), invoices[0]["total"].clone()),
        (json!("2026-07-01T00:00:00.000000Z"), json!("12.00"))
    );
    assert_eq!(w.mails("Invoice INV-0-000001").len(), 1, "and e-mailed in the same step");
    let events: Vec<Value> =
        hooks.seen.lock().unwrap().iter().map(|(_, body, _)| serde_json::from_slice(body).unwrap()).collect();
    assert_eq!(events.len(), 1, "and told to the webhook endpoint: {events:?}");
    assert_eq!(
        (events[0]["type"].clone(), events[0]["data"]["invoice"].clone(), events[0]["data"]["amount"].clone()),
        (json!("invoice.usage_issued"), json!("INV-0-000001"), json!("12.00"))
    );
    w.step();
    assert_eq!(w.invoices(c).len(), 1);
}
