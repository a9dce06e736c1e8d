//! The ledger's features, through the real engine on SQLite.

mod common;

use common::*;
use purse_core::{
    Amount, ChangeNote, Command, Direction, HoldState, Item, NewAccountKind, Outcome, Rejection, Timestamp,
    TransferKind,
};
use purse_store::JournalQuery;

#[test]
fn charge_posts_even_when_it_overdraws_and_says_so() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "5.00").unwrap();
    assert_eq!(
        h.charge(a, "3.00"),
        Ok(Outcome::Posted { transfer: purse_core::TransferId(2), overdrawn: false, replayed: false })
    );
    let Ok(Outcome::Posted { overdrawn, .. }) = h.charge(a, "4.00") else { panic!() };
    assert!(overdrawn);
    assert_eq!(h.parts(a), (-200, 0, -200));
    // New authorizations are then refused.
    let hold = Command::Hold {
        client_id: h.next_id("hold"),
        account: a,
        money: h.usd("0.01"),
        expires_at: h.now().plus_micros(60_000_000),
        service: None,
        metadata: None,
    };
    assert_eq!(rejected(&h.run(hold)), "insufficient_funds");
    h.assert_consistent();
}

#[test]
fn a_charge_may_ask_to_be_refused_instead_of_overdrawing() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "5.00").unwrap();
    let refused = h.run(h.charge_cmd(a, "5.01", true));
    assert_eq!(refused, Err(Rejection::InsufficientFunds { available: Amount(500), currency: h.usd }));
    // Issue 23: the message says money at the currency's scale, not units.
    assert_eq!(refused.unwrap_err().to_string(), "insufficient funds: the available balance is 5.00 USD");
    assert!(h.run(h.charge_cmd(a, "5.00", true)).is_ok());
    assert_eq!(h.parts(a), (0, 0, 0));
}

#[test]
fn credit_limit_counts_in_the_available_balance() {
    let h = Harness::sqlite();
    let a = h.customer("100.00");
    assert_eq!(h.parts(a), (0, 0, 10_000));
    assert!(h.run(h.charge_cmd(a, "100.00", true)).is_ok());
    assert_eq!(rejected(&h.run(h.charge_cmd(a, "0.01", true))), "insufficient_funds");
    assert_eq!(h.parts(a), (-10_000, 0, 0));
}

#[test]
fn retrying_a_client_id_replays_and_a_different_body_is_refused() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    let charge = h.charge_cmd(a, "1.00", false);
    let first = h.run(charge.clone()).unwrap();
    let Outcome::Posted { transfer, .. } = first else { panic!() };
    assert_eq!(h.run(charge.clone()), Ok(Outcome::Posted { transfer, overdrawn: true, replayed: true }));
    // Same client id, other content: each difference is named.
    let Command::Charge(mut other) = charge.clone() else { panic!() };
    other.money = h.usd("2.00");
    assert_eq!(h.run(Command::Charge(other.clone())), Err(Rejection::ExistsWithDifferentAmount));
    other.money = h.usd("1.00");
    other.service = Some("sms".into());
    assert_eq!(h.run(Command::Charge(other)), Err(Rejection::ExistsWithDifferentService));
    // Within one batch too: the second is a replay, not a second posting.
    let twice = h.charge_cmd(a, "0.50", false);
    let results = h.submit(vec![Item::single(twice.clone()), Item::single(twice)]);
    assert!(matches!(results[1], Ok(Outcome::Posted { replayed: true, .. })));
    assert_eq!(h.parts(a).0, -150);
    assert_eq!(h.engine.reader().audit().unwrap().transfer_count, 2);
}

#[test]
fn bad_input_gets_its_own_rejection_and_changes_nothing() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    let b = h.customer("0");
    let Ok(Outcome::Posted { transfer: paid, .. }) = h.pay(a, "10.00") else { panic!() };
    // A reason goes to the audit log and to every page that shows it: one line of visible
    // text, whichever way the command came (the portal's reversal sent none through a check).
    let reason = |text: &str| Some(ChangeNote { by: "test".into(), reason: Some(text.into()) });
    let transfer = |note| Command::Transfer {
        client_id: h.next_id("t"),
        source: a,
        target: b,
        money: h.usd("1.00"),
        kind: TransferKind::Transfer,
        metadata: None,
        note,
    };
    let eur = purse_core::CurrencyCode::parse("EUR").unwrap();
    let cases: Vec<(Command, &str)> = vec![
        (h.charge_cmd(a, "0", false), "amount_must_be_positive"),
        (h.charge_cmd(a, "-1.00", false), "amount_must_be_positive"),
        (h.charge_cmd(purse_core::AccountId(999_999), "1.00", false), "account_not_found"),
        (h.charge_cmd(purse_core::AccountId(1), "1.00", false), "system_account_not_allowed"),
        (
            Command::Payment {
                client_id: h.next_id("p"),
                account: a,
                money: purse_core::Money { amount: Amount(100), currency: eur },
                method: purse_core::PaymentMethod::Card,
                metadata: None,
            },
            "currency_mismatch",
        ),
        (
            Command::Transfer {
                client_id: h.next_id("t"),
                source: a,
                target: a,
                money: h.usd("1.00"),
                kind: TransferKind::Transfer,
                metadata: None,
                note: None,
            },
            "accounts_must_differ",
        ),
        (
            Command::Transfer {
                client_id: h.next_id("t"),
                source: a,
                target: b,
                money: h.usd("10.01"),
                kind: TransferKind::Transfer,
                metadata: None,
                note: None,
            },
            "insufficient_funds",
        ),
        (
            Command::Transfer {
                client_id: h.next_id("t"),
                source: a,
                target: b,
                money: h.usd("1.00"),
                kind: TransferKind::Charge,
                metadata: None,
                note: None,
            },
            "transfer_kind_not_allowed",
        ),
        (transfer(reason("moved \u{202e}back")), "text_not_printable"),
        (transfer(reason("line\nbreak")), "text_not_printable"),
        (transfer(reason(&"x".repeat(501))), "text_too_long"),
        (
            Command::Reverse { client_id: h.next_id("rev"), transfer: paid, metadata: None, note: reason("a\u{0}b") },
            "text_not_printable",
        ),
        (
            Command::Refund {
                client_id: h.next_id("r"),
                account: a,
                money: h.usd("1.00"),
                method: purse_core::PaymentMethod::Card,
                metadata: None,
                note: reason("\u{1b}[31m"),
            },
            "text_not_printable",
        ),
        (Command::CreateCurrency { code: eur, scale: 10 }, "scale_too_large"),
        (
            Command::SetCreditLimit { account: a, credit_limit: h.amount("5.00"), note: ChangeNote::by("test") },
            "credit_limit_not_allowed_for_prepaid",
        ),
        (Command::CloseAccount { account: a }, "account_has_balance"),
    ];
    for (command, code) in cases {
        assert_eq!(rejected(&h.run(command.clone())), code, "{command:?}");
    }
    // Overflow: i64::MAX units cannot be added to a positive balance.
    let huge = Command::Payment {
        client_id: h.next_id("p"),
        account: a,
        money: purse_core::Money { amount: Amount(i64::MAX), currency: h.usd.code },
        method: purse_core::PaymentMethod::Card,
        metadata: None,
    };
    assert_eq!(rejected(&h.run(huge)), "amount_overflow");
    assert_eq!(h.parts(a), (1000, 0, 1000));
    assert_eq!(h.parts(b), (0, 0, 0));
    h.assert_consistent();
}

#[test]
fn closed_accounts_refuse_everything() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.run(Command::CloseAccount { account: a }).unwrap();
    assert_eq!(rejected(&h.pay(a, "1.00")), "account_closed");
    assert_eq!(rejected(&h.charge(a, "1.00")), "account_closed");
}

#[test]
fn holds_reserve_capture_part_release_and_expire() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "10.00").unwrap();
    let place = |amount: &str, ttl_s: i64| Command::Hold {
        client_id: h.next_id("hold"),
        account: a,
        money: h.usd(amount),
        expires_at: h.now().plus_micros(ttl_s * 1_000_000),
        service: Some("voice".into()),
        metadata: None,
    };
    let Ok(Outcome::HoldPlaced { hold: h1, .. }) = h.run(place("6.00", 60)) else { panic!() };
    assert_eq!(h.parts(a), (1000, 600, 400));
    // More than available is refused with the available amount.
    assert_eq!(h.run(place("4.01", 60)), Err(Rejection::InsufficientFunds { available: Amount(400), currency: h.usd }));
    // Capture part: the rest is released at once.
    let capture = Command::Capture { client_id: h.next_id("cap"), hold: h1, amount: Some(h.amount("2.50")) };
    assert!(matches!(h.run(capture.clone()), Ok(Outcome::HoldCaptured { replayed: false, .. })));
    assert!(matches!(h.run(capture), Ok(Outcome::HoldCaptured { replayed: true, .. })));
    assert_eq!(h.parts(a), (750, 0, 750));
    // A hold resolves once.
    let again = Command::Release { client_id: h.next_id("rel"), hold: h1 };
    assert_eq!(h.run(again), Err(Rejection::HoldAlreadyResolved { state: HoldState::Captured }));
    let over = place("1.00", 60);
    let Ok(Outcome::HoldPlaced { hold: h2, .. }) = h.run(over) else { panic!() };
    let capture_too_much = Command::Capture { client_id: h.next_id("cap"), hold: h2, amount: Some(h.amount("1.01")) };
    assert_eq!(rejected(&h.run(capture_too_much)), "capture_exceeds_hold");
    let release = Command::Release { client_id: h.next_id("rel"), hold: h2 };
    assert!(matches!(h.run(release.clone()), Ok(Outcome::HoldReleased { replayed: false, .. })));
    assert!(matches!(h.run(release), Ok(Outcome::HoldReleased { replayed: true, .. })));
    // Expiry: the next batch after the expiry releases it by itself.
    let Ok(Outcome::HoldPlaced { hold: h3, .. }) = h.run(place("3.00", 30)) else { panic!() };
    assert_eq!(h.parts(a).1, 300);
    h.clock.advance_micros(31_000_000);
    let capture_late = Command::Capture { client_id: h.next_id("cap"), hold: h3, amount: None };
    assert_eq!(h.run(capture_late), Err(Rejection::HoldAlreadyResolved { state: HoldState::Expired }));
    assert_eq!(h.parts(a), (750, 0, 750));
    assert_eq!(h.engine.reader().hold(h3).unwrap().unwrap().state, HoldState::Expired);
    h.assert_consistent();
}

#[test]
fn reversal_posts_a_linked_transfer_once() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    let Ok(Outcome::Posted { transfer, .. }) = h.pay(a, "10.00") else { panic!() };
    let reverse = |id| Command::Reverse {
        client_id: h.next_id("rev"),
        transfer: id,
        metadata: Some("wrong customer".into()),
        note: None,
    };
    let Ok(Outcome::Posted { transfer: reversal, .. }) = h.run(reverse(transfer)) else { panic!() };
    assert_eq!(h.parts(a).0, 0);
    assert_eq!(h.run(reverse(transfer)), Err(Rejection::TransferAlreadyReversed { by: reversal }));
    assert_eq!(rejected(&h.run(reverse(reversal))), "reversal_cannot_be_reversed");
    assert_eq!(rejected(&h.run(reverse(purse_core::TransferId(12345)))), "transfer_not_found");
    let journal = h.engine.reader().journal(JournalQuery { account: a, before: None, limit: 10 }).unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].reverses, Some(transfer));
    h.assert_consistent();
}

#[test]
fn a_linked_chain_succeeds_or_fails_whole() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    let b = h.customer("0");
    h.pay(a, "5.00").unwrap();
    let t = |amount: &str| Command::Transfer {
        client_id: h.next_id("t"),
        source: a,
        target: b,
        money: h.usd(amount),
        kind: TransferKind::Transfer,
        metadata: None,
        note: None,
    };
    let chain = vec![
        Item { command: t("3.00"), linked: true },
        Item { command: t("3.00"), linked: false }, // fails: only 2.00 left
        Item::single(t("1.00")),                    // independent, succeeds
    ];
    let results = h.submit(chain);
    assert_eq!(results[0], Err(Rejection::LinkedCommandFailed));
    assert_eq!(rejected(&results[1]), "insufficient_funds");
    assert!(results[2].is_ok());
    assert_eq!(h.parts(a).0, 400);
    assert_eq!(h.parts(b).0, 100);
    // A chain left open at the end of a request fails whole, and never links into the
    // next caller's request.
    let open = vec![Item { command: t("1.00"), linked: true }];
    assert_eq!(h.submit(open), vec![Err(Rejection::LinkedChainOpen)]);
    assert_eq!(h.parts(a).0, 400);
    h.assert_consistent();
}

#[test]
fn thresholds_report_each_crossing_down_and_up() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "100.00").unwrap();
    let levels = vec![h.amount("50.00"), h.amount("20.00")];
    h.run(Command::SetThresholds { account: a, thresholds: levels }).unwrap();
    h.charge(a, "40.00").unwrap(); // 60: nothing crossed
    h.charge(a, "45.00").unwrap(); // 15: crosses 50 and 20 downward
    h.charge(a, "1.00").unwrap(); // 14: nothing new (once per crossing)
    h.pay(a, "10.00").unwrap(); // 24: crosses 20 upward
    let events = outbox(&h);
    let expected = vec![(5000, Direction::Down), (2000, Direction::Down), (2000, Direction::Up)];
    assert_eq!(events, expected);
}

fn outbox(h: &Harness) -> Vec<(i64, Direction)> {
    // Read through a second SQLite connection: the outbox is part of the durable state.
    let path = h.url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut s =
        conn.prepare("SELECT threshold, direction FROM outbox WHERE kind = 'threshold_crossed' ORDER BY id").unwrap();
    let rows = s.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).unwrap();
    rows.map(|r| {
        let (t, d) = r.unwrap();
        (t, if d == "down" { Direction::Down } else { Direction::Up })
    })
    .collect()
}

#[test]
fn spendable_now_answers_available_and_units_of_a_price() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "1.00").unwrap();
    let price = h.usd.parse("0.30").unwrap();
    let s = h.engine.spendable(a, Some(price)).unwrap().unwrap();
    assert_eq!((s.available, s.units), (Amount(100), Some(3)));
    h.charge(a, "2.00").unwrap();
    let s = h.engine.spendable(a, Some(price)).unwrap().unwrap();
    assert_eq!((s.available, s.units), (Amount(-100), Some(0)));
    assert_eq!(h.engine.spendable(purse_core::AccountId(424242), None).unwrap(), None);
}

#[test]
fn subscriber_credit_accounts_draw_on_the_customer_up_to_their_own_limit() {
    let h = Harness::sqlite();
    let (customer, wallet) = h.customer_party("50.00");
    let open = |kind| Command::OpenAccount { client_id: h.next_id("sub"), party: customer, kind };
    let Ok(Outcome::AccountOpened { account: credit, .. }) =
        h.run(open(NewAccountKind::SubscriberCredit { credit_limit: h.amount("30.00") }))
    else {
        panic!()
    };
    let Ok(Outcome::AccountOpened { account: debit, .. }) = h.run(open(NewAccountKind::SubscriberDebit)) else {
        panic!()
    };
    assert_eq!(h.parts(credit).2, 3000);
    assert!(h.run(h.charge_cmd(credit, "25.00", true)).is_ok());
    // Its own limit: 5.00 left.
    assert_eq!(rejected(&h.run(h.charge_cmd(credit, "5.01", true))), "insufficient_funds");
    // The customer's wallet sees the drawing: 50 - 25 = 25 available.
    assert_eq!(h.parts(wallet).2, 2500);
    h.charge(wallet, "22.00").unwrap();
    // Now the customer has 3.00 left, which caps the subscriber too.
    assert_eq!(h.parts(credit).2, 300);
    assert_eq!(rejected(&h.run(h.charge_cmd(credit, "3.01", true))), "insufficient_funds");
    // A debit subscriber account has its own balance only.
    assert_eq!(h.parts(debit).2, 0);
    h.assert_consistent();
}

#[test]
fn temporary_increase_is_never_in_force_after_valid_until() {
    let h = Harness::sqlite();
    let a = h.customer("100.00");
    let until = h.now().plus_micros(3_600_000_000);
    h.run(Command::SetTemporaryIncrease {
        account: a,
        increase: Some((h.amount("50.00"), until)),
        note: ChangeNote::by("test"),
    })
    .unwrap();
    assert_eq!(h.parts(a).2, 15_000);
    assert!(h.run(h.charge_cmd(a, "120.00", true)).is_ok());
    h.clock.set(until);
    // No job ran: the increase is simply not counted any more.
    assert_eq!(h.parts(a).2, -2000);
    assert_eq!(rejected(&h.run(h.charge_cmd(a, "0.01", true))), "insufficient_funds");
    let prepaid = h.customer("0");
    let later = h.now().plus_micros(1_000_000);
    let refused = h.run(Command::SetTemporaryIncrease {
        account: prepaid,
        increase: Some((h.amount("1.00"), later)),
        note: ChangeNote::by("test"),
    });
    assert_eq!(rejected(&refused), "credit_limit_not_allowed_for_prepaid");
    let past = h.run(Command::SetTemporaryIncrease {
        account: a,
        increase: Some((h.amount("1.00"), Timestamp(0))),
        note: ChangeNote::by("test"),
    });
    assert_eq!(rejected(&past), "valid_until_must_be_in_future");
}

#[test]
fn reseller_issues_credit_from_its_master_wallet() {
    let h = Harness::sqlite();
    let reseller = h.reseller();
    let open = Command::OpenAccount {
        client_id: h.next_id("master"),
        party: reseller,
        kind: NewAccountKind::MasterWallet { currency: h.usd.code },
    };
    let Ok(Outcome::AccountOpened { account: master, .. }) = h.run(open) else { panic!() };
    let customer = h.customer_of(Some(reseller), "0").1;
    let issue = |amount: &str| Command::Transfer {
        client_id: h.next_id("issue"),
        source: master,
        target: customer,
        money: h.usd(amount),
        kind: TransferKind::Issue,
        metadata: None,
        note: None,
    };
    assert_eq!(rejected(&h.run(issue("1.00"))), "insufficient_funds");
    h.pay(master, "20.00").unwrap();
    assert!(h.run(issue("15.00")).is_ok());
    assert_eq!((h.parts(master).0, h.parts(customer).0), (500, 1500));
    let Ok(Outcome::Posted { transfer, .. }) = h.run(issue("5.00")) else { panic!() };
    let t = h.engine.reader().journal(JournalQuery { account: customer, before: None, limit: 1 }).unwrap();
    assert_eq!((t[0].id, t[0].kind), (transfer, TransferKind::Issue));
}

#[test]
fn journal_pages_back_and_balance_at_a_past_time_is_exact() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    let mut times = Vec::new();
    for i in 1..=7 {
        h.clock.advance_micros(1_000_000);
        times.push(h.now());
        h.pay(a, &format!("{i}.00")).unwrap();
    }
    let reader = h.engine.reader();
    let page1 = reader.journal(JournalQuery { account: a, before: None, limit: 3 }).unwrap();
    let page2 = reader.journal(JournalQuery { account: a, before: Some(page1[2].id), limit: 3 }).unwrap();
    let page3 = reader.journal(JournalQuery { account: a, before: Some(page2[2].id), limit: 3 }).unwrap();
    let amounts: Vec<i64> = [page1, page2, page3].concat().iter().map(|t| t.amount.0).collect();
    assert_eq!(amounts, vec![700, 600, 500, 400, 300, 200, 100]);
    assert_eq!(reader.balance_at(a, times[2]).unwrap(), 600);
    assert_eq!(reader.balance_at(a, Timestamp(0)).unwrap(), 0);
    assert_eq!(reader.balance_at(a, times[6]).unwrap(), 2800);
}

#[test]
fn threshold_events_carry_the_transfer_that_caused_them() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.run(Command::SetThresholds { account: a, thresholds: vec![h.amount("1.00")] }).unwrap();
    let Ok(Outcome::Posted { transfer, .. }) = h.pay(a, "2.00") else { panic!() };
    let path = h.url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let (cause, before, after): (i64, i64, i64) = conn
        .query_row(
            "SELECT transfer_id, available_before, available_after FROM outbox WHERE kind = 'threshold_crossed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((cause as u64, before, after), (transfer.0, 0, 200));
}

#[test]
fn spendable_now_does_not_count_holds_that_expired_while_the_engine_was_idle() {
    let h = Harness::sqlite();
    let a = h.customer("0");
    h.pay(a, "10.00").unwrap();
    let hold = Command::Hold {
        client_id: h.next_id("hold"),
        account: a,
        money: h.usd("4.00"),
        expires_at: h.now().plus_micros(30_000_000),
        service: None,
        metadata: None,
    };
    h.run(hold).unwrap();
    assert_eq!(h.engine.spendable(a, None).unwrap().unwrap().available, Amount(600));
    h.clock.advance_micros(30_000_000);
    // No command has run since: the stored reservation is stale, the answer is not.
    assert_eq!(h.engine.reader().account(a).unwrap().unwrap().reserved, Amount(400));
    assert_eq!(h.engine.spendable(a, None).unwrap().unwrap().available, Amount(1000));
}

/// Uninvoiced consumption: charges and captures add to it, a reversed charge takes its
/// amount back off; it is stored with the balance on both backends.
#[test]
fn uninvoiced_counts_charges_and_captures_less_reversed_charges() {
    for url in both_backends("ledger_uninvoiced") {
        let h = Harness::on(&url);
        let wallet = h.customer("0");
        h.pay(wallet, "20.00").unwrap();
        let Ok(Outcome::Posted { transfer: charge, .. }) = h.charge(wallet, "2.00") else { panic!("charge") };
        let hold = h.run(Command::Hold {
            client_id: h.next_id("hold"),
            account: wallet,
            money: h.usd("5.00"),
            expires_at: h.now().plus_micros(60_000_000),
            service: None,
            metadata: None,
        });
        let Ok(Outcome::HoldPlaced { hold, .. }) = hold else { panic!("hold: {hold:?}") };
        h.run(Command::Capture { client_id: h.next_id("capture"), hold, amount: Some(h.amount("3.00")) }).unwrap();
        h.run(Command::Reverse { client_id: h.next_id("reverse"), transfer: charge, metadata: None, note: None })
            .unwrap();
        let stored = h.engine.reader().account(wallet).unwrap().unwrap();
        assert_eq!(stored.uninvoiced, h.amount("3.00"), "{url}");
        assert_eq!(stored.balance, h.amount("17.00"), "{url}");
    }
}

/// Issue 17: an issue or a recharge moves money from a reseller's master wallet to one of
/// that reseller's customers, never between two customers or to another reseller's.
#[test]
fn issue_17_issues_and_recharges_go_from_a_master_wallet_to_its_own_customers() {
    let h = Harness::sqlite();
    let (ours, theirs) = (h.reseller(), h.reseller());
    let open = |reseller| Command::OpenAccount {
        client_id: h.next_id("master"),
        party: reseller,
        kind: NewAccountKind::MasterWallet { currency: h.usd.code },
    };
    let Ok(Outcome::AccountOpened { account: master, .. }) = h.run(open(ours)) else { panic!() };
    h.pay(master, "50.00").unwrap();
    let mine = h.customer_of(Some(ours), "0").1;
    let other = h.customer_of(Some(theirs), "0").1;
    h.pay(mine, "10.00").unwrap();
    let move_money = |source, target, kind| Command::Transfer {
        client_id: h.next_id("t"),
        source,
        target,
        money: h.usd("1.00"),
        kind,
        metadata: None,
        note: None,
    };
    for kind in [TransferKind::Issue, TransferKind::Recharge] {
        assert_eq!(rejected(&h.run(move_money(mine, other, kind))), "issue_needs_master_wallet");
        assert_eq!(rejected(&h.run(move_money(master, other, kind))), "not_resellers_customer");
        assert!(h.run(move_money(master, mine, kind)).is_ok());
    }
    assert_eq!((h.parts(mine).0, h.parts(other).0, h.parts(master).0), (1200, 0, 4800));
    h.assert_consistent();
}

/// Issue 17: a wallet's permanent credit limit changes whatever the ledger's cache holds
/// (it was refused with `party_not_found` whenever the customer was not cached, e.g. after a
/// restart), and every command answers the same with a cold cache.
#[test]
fn issue_17_a_wallets_credit_limit_changes_whatever_the_cache_holds() {
    let url = sqlite_url();
    let warm = Harness::on(&url);
    let (wallet, prepaid) = (warm.customer("100.00"), warm.customer("0"));
    drop(warm);
    // A new process: nothing is cached, and every batch forgets what the last one loaded.
    let cold = Harness::with_config(
        &url,
        purse_engine::EngineConfig { eviction: purse_engine::Eviction::Everything, ..Default::default() },
    );
    let note = ChangeNote { by: "test".into(), reason: Some("x".into()) };
    let limit = |amount: &str| Command::SetCreditLimit {
        account: wallet,
        credit_limit: cold.amount(amount),
        note: note.clone(),
    };
    assert_eq!(cold.run(limit("700.00")), Ok(Outcome::AccountUpdated { account: wallet }));
    let until = cold.now().plus_micros(3_600_000_000);
    let increase = Command::SetTemporaryIncrease {
        account: wallet,
        increase: Some((cold.amount("50.00"), until)),
        note: note.clone(),
    };
    assert_eq!(cold.run(increase), Ok(Outcome::AccountUpdated { account: wallet }));
    assert_eq!(cold.parts(wallet).2, 75_000);
    let refused = Command::SetCreditLimit { account: prepaid, credit_limit: cold.amount("1.00"), note };
    assert_eq!(rejected(&cold.run(refused)), "credit_limit_not_allowed_for_prepaid");
}
