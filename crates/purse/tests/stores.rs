//! Store behaviour on both backends: one conformance story, the journal's immutability,
//! crash safety under SIGKILL, and two processes sharing one database.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};

use common::*;
use purse_core::{Command, HoldState, NewAccountKind, Outcome, Rejection, TransferKind};
use purse_store::JournalQuery;

/// The story every backend must tell the same way.
fn story(url: &str) {
    let h = Harness::on(url);
    let reseller = h.reseller();
    let Ok(Outcome::AccountOpened { account: master, .. }) = h.run(Command::OpenAccount {
        client_id: cid("master-1"),
        party: reseller,
        kind: NewAccountKind::MasterWallet { currency: h.usd.code },
    }) else {
        panic!("master wallet")
    };
    let prepaid = h.customer_of(Some(reseller), "0").1;
    let (postpaid_party, postpaid) = h.customer_party("50.00");
    let Ok(Outcome::AccountOpened { account: sub, .. }) = h.run(Command::OpenAccount {
        client_id: cid("sub-1"),
        party: postpaid_party,
        kind: NewAccountKind::SubscriberCredit { credit_limit: h.amount("10.00") },
    }) else {
        panic!("subscriber")
    };
    h.run(Command::SetThresholds { account: prepaid, thresholds: vec![h.amount("5.00")] }).unwrap();
    h.pay(master, "100.00").unwrap();
    h.pay(prepaid, "10.00").unwrap();
    let charge = h.charge_cmd(prepaid, "7.00", false);
    let Ok(Outcome::Posted { transfer: charged, .. }) = h.run(charge.clone()) else { panic!() };
    assert_eq!(rejected(&h.run(h.charge_cmd(prepaid, "3.01", true))), "insufficient_funds");
    let issue = Command::Transfer {
        client_id: cid("issue-1"),
        source: master,
        target: prepaid,
        money: h.usd("20.00"),
        kind: TransferKind::Issue,
        metadata: Some("{\"note\":\"goodwill\"}".into()),
        note: None,
    };
    h.run(issue.clone()).unwrap();
    let hold = Command::Hold {
        client_id: cid("hold-1"),
        account: postpaid,
        money: h.usd("30.00"),
        expires_at: h.now().plus_micros(600_000_000),
        service: Some("voice".into()),
        metadata: None,
    };
    let Ok(Outcome::HoldPlaced { hold: hold_id, .. }) = h.run(hold.clone()) else { panic!() };
    assert!(h.run(h.charge_cmd(sub, "10.00", true)).is_ok());
    assert_eq!(rejected(&h.run(h.charge_cmd(postpaid, "10.01", true))), "insufficient_funds");
    let capture = Command::Capture { client_id: cid("cap-1"), hold: hold_id, amount: Some(h.amount("12.34")) };
    h.run(capture.clone()).unwrap();
    let reverse = Command::Reverse { client_id: cid("rev-1"), transfer: charged, metadata: None, note: None };
    h.run(reverse.clone()).unwrap();

    let expect_parts = |h: &Harness| {
        assert_eq!(h.parts(prepaid), (3000, 0, 3000));
        assert_eq!(h.parts(master), (8000, 0, 8000));
        assert_eq!(h.parts(postpaid).0, -1234);
        // Available: 50 − 12.34 own − 10.00 drawn by the subscriber.
        assert_eq!(h.parts(postpaid).2, 2766);
        h.assert_consistent();
    };
    expect_parts(&h);
    let reader = h.engine.reader();
    let journal = reader.journal(JournalQuery { account: prepaid, before: None, limit: 10 }).unwrap();
    let kinds: Vec<TransferKind> = journal.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, vec![TransferKind::Reversal, TransferKind::Issue, TransferKind::Charge, TransferKind::Payment]);
    assert_eq!(journal[1].metadata.as_deref(), Some("{\"note\":\"goodwill\"}"));
    assert!(reader.outbox_count().unwrap() >= 1);
    drop(h);

    // After a restart everything is read back from the store: replays still replay, and
    // new ids continue where the old ones stopped.
    let h = Harness::on(url);
    expect_parts(&h);
    for command in [charge, issue, hold, capture, reverse] {
        let replay = h.run(command.clone());
        assert!(
            matches!(
                replay,
                Ok(Outcome::Posted { replayed: true, .. }
                    | Outcome::HoldPlaced { replayed: true, .. }
                    | Outcome::HoldCaptured { replayed: true, .. })
            ),
            "{command:?} -> {replay:?}"
        );
    }
    assert_eq!(
        h.run(Command::Release { client_id: cid("rel-1"), hold: hold_id }),
        Err(Rejection::HoldAlreadyResolved { state: HoldState::Captured })
    );
    let Ok(Outcome::Posted { transfer, .. }) = h.pay(prepaid, "1.00") else { panic!() };
    assert!(transfer.0 > charged.0);
    expect_parts_after_payment(&h, prepaid);
}

fn expect_parts_after_payment(h: &Harness, prepaid: purse_core::AccountId) {
    assert_eq!(h.parts(prepaid), (3100, 0, 3100));
    h.assert_consistent();
}

#[test]
fn conformance_story_on_sqlite() {
    story(&sqlite_url());
}

#[test]
fn conformance_story_on_postgres() {
    story(&pg_url("story"));
}

fn refuse_journal_edits(url: &str) {
    let h = Harness::on(url);
    let a = h.customer("0");
    h.pay(a, "1.00").unwrap();
    drop(h);
    for sql in ["UPDATE transfers SET amount = 1", "DELETE FROM transfers"] {
        let refused = match url.strip_prefix("sqlite://") {
            Some(path) => purse_store_sqlite::execute_raw(path, sql).map(|_| ()),
            None => purse_store_postgres::execute_raw(url, sql).map(|_| ()),
        };
        let message = refused.expect_err("the database must refuse").to_string();
        assert!(message.contains("immutable"), "{sql}: {message}");
    }
    if !url.starts_with("sqlite://") {
        // Refused by the trigger, or before it by the grants that reference the journal.
        let refused = purse_store_postgres::execute_raw(url, "TRUNCATE transfers").expect_err("refused").to_string();
        assert!(refused.contains("immutable") || refused.contains("foreign key"), "{refused}");
    }
}

#[test]
fn the_database_refuses_to_update_or_delete_journal_rows() {
    refuse_journal_edits(&sqlite_url());
    refuse_journal_edits(&pg_url("immutable"));
}

/// Issue 22: SQLite's journal keeps a canonical UUID client id as its 16 bytes and a charge's
/// kind as `c`. Rows posted before, with the id as text and the kind `charge`, read the same:
/// found by their client id after a restart, and a retry is answered, never posted twice.
#[test]
fn issue_22_journal_rows_written_before_the_compact_form_read_the_same() {
    let url = sqlite_url();
    let path = url.strip_prefix("sqlite://").unwrap().to_owned();
    let h = Harness::on(&url);
    let a = h.customer("0");
    h.pay(a, "10.00").unwrap();
    let uuid = "0190b1c2-d3e4-7f56-8a9b-0c1d2e3f4a5b";
    let Command::Charge(mut charge) = h.charge_cmd(a, "2.00", true) else { unreachable!() };
    charge.client_id = cid(uuid);
    let Ok(Outcome::Posted { transfer, replayed: false, .. }) = h.run(Command::Charge(charge.clone())) else {
        panic!("posted")
    };
    drop(h);
    let count = |sql: &str| purse_store_sqlite::execute_raw(&path, sql).unwrap();
    count("DROP TRIGGER transfers_are_immutable");
    assert_eq!(
        count(&format!(
            "UPDATE transfers SET client_id = '{uuid}', kind = 'charge' WHERE typeof(client_id) = 'blob' AND kind = 'c'"
        )),
        1,
        "the charge was kept compact"
    );
    count(
        "CREATE TRIGGER transfers_are_immutable BEFORE UPDATE ON transfers \
         BEGIN SELECT RAISE(ABORT, 'journal rows are immutable: post a reversal instead'); END",
    );
    let h = Harness::on(&url);
    let found = h.engine.reader().transfer_by_client_id(&cid(uuid)).unwrap().expect("found by its client id");
    assert_eq!((found.id, found.kind, found.client_id.as_str()), (transfer, TransferKind::Charge, uuid));
    assert!(matches!(
        h.run(Command::Charge(charge)),
        Ok(Outcome::Posted { transfer: t, replayed: true, .. }) if t == transfer
    ));
    assert_eq!(h.engine.reader().account(a).unwrap().unwrap().balance, h.amount("8.00"));
}

// ---------------------------------------------------------------- processes

fn soak(url: &str, prefix: &str, args: &[&str]) -> Child {
    Process::new(env!("CARGO_BIN_EXE_purse"))
        .args(["soak", "--database", url, "--prefix", prefix, "--accounts", "20"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn purse soak")
}

#[derive(Debug, PartialEq, Eq)]
enum Ack {
    Posted { kind: String, amount: i64 },
    Refused,
}

fn parse_ack(line: &str) -> (String, Ack) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["posted", id, kind, amount] => {
            ((*id).to_owned(), Ack::Posted { kind: (*kind).to_owned(), amount: amount.parse().unwrap() })
        }
        ["refused", id, _code] => ((*id).to_owned(), Ack::Refused),
        _ => panic!("unexpected soak line {line:?}"),
    }
}

/// Reads acknowledgements until `stop_after` of them (then SIGKILLs the child) or the end.
fn collect(mut child: Child, stop_after: Option<usize>) -> HashMap<String, Ack> {
    let stdout = child.stdout.take().unwrap();
    let mut acks = HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let (id, ack) = parse_ack(&line.unwrap());
        acks.insert(id, ack);
        if stop_after.is_some_and(|n| acks.len() >= n) {
            child.kill().expect("SIGKILL");
            break;
        }
    }
    let status = child.wait().unwrap();
    if stop_after.is_none() {
        assert!(status.success(), "soak failed: {status:?}");
    }
    acks
}

fn verify_acks(url: &str, acks: &HashMap<String, Ack>) {
    let reader = purse::open_store(url).unwrap().reader;
    for (id, ack) in acks {
        let stored = reader.transfer_by_client_id(&cid(id)).unwrap();
        match (ack, stored) {
            (Ack::Posted { amount, .. }, Some(t)) => assert_eq!(t.amount.0, *amount, "{id}"),
            (Ack::Posted { .. }, None) => panic!("acknowledged {id} is missing"),
            (Ack::Refused, None) => {}
            (Ack::Refused, Some(t)) => panic!("refused {id} was posted: {t:?}"),
        }
    }
    let audit = reader.audit().unwrap();
    assert!(audit.is_consistent(), "{audit:?}");
}

fn crash_and_recover(url: &str) {
    let mut all = HashMap::new();
    for round in 0..3 {
        let child = soak(url, &format!("crash{round}"), &["--seed", &round.to_string()]);
        let acks = collect(child, Some(400 + round * 300));
        verify_acks(url, &acks);
        all.extend(acks);
    }
    // A clean run after the crashes: the engine restarts and carries on.
    let acks = collect(soak(url, "after", &["--commands", "200"]), None);
    assert_eq!(acks.len(), 200);
    all.extend(acks);
    verify_acks(url, &all);
    // The audit counts client ids posted more than once: "present" means "present once".
    let reader = purse::open_store(url).unwrap().reader;
    let audit = reader.audit().unwrap();
    assert_eq!(audit.duplicate_client_ids, 0);
    let posted = all.values().filter(|a| matches!(a, Ack::Posted { .. })).count() as u64;
    // Funding payments (one per customer) are the only other postings.
    assert!(audit.transfer_count >= posted);
}

#[test]
fn sigkill_while_ingesting_loses_no_acknowledged_charge_on_sqlite() {
    crash_and_recover(&sqlite_url());
}

/// Issue 22: the same with tails of three rows, so the batches SIGKILL interrupts are
/// folding balances into `balances_base` and client keys into `client_keys`.
#[test]
fn issue_22_sigkill_while_folding_the_tails_loses_nothing_on_sqlite() {
    crash_and_recover(&format!("{}?tail_rows=3", sqlite_url()));
}

/// Issue 22: on SQLite a batch writes the balances it changed into a small tail and folds a
/// run of the tail back into the stored balances once it holds more than its bound. With a
/// bound of three nearly every batch folds: the tail never keeps more, the folded rows are
/// in `balances_base`, and every balance reads as the journal says, warm and after a restart.
#[test]
fn issue_22_balances_fold_back_from_a_bounded_tail_and_read_the_same() {
    let url = format!("{}?tail_rows=3", sqlite_url());
    let h = Harness::on(&url);
    let accounts: Vec<_> = (0..10).map(|_| h.customer("0")).collect();
    let db = rusqlite::Connection::open(url.trim_start_matches("sqlite://").trim_end_matches("?tail_rows=3")).unwrap();
    let tail_rows = || db.query_row("SELECT count(*) FROM balance_tail", [], |r| r.get::<_, i64>(0)).unwrap();
    for (i, a) in accounts.iter().enumerate() {
        h.pay(*a, &format!("{}.00", 10 + i)).unwrap();
        assert!(tail_rows() <= 3, "the tail keeps at most its bound");
    }
    for _ in 0..3 {
        for a in &accounts {
            h.charge(*a, "1.25").unwrap();
            assert!(tail_rows() <= 3, "the tail keeps at most its bound");
        }
    }
    let expected = |i: usize| (10 + i as i64) * 100 - 375;
    let folded: i64 = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            db.query_row(
                "SELECT count(*) FROM balances_base WHERE account_id = ? AND balance = ?",
                rusqlite::params![a.0 as i64, expected(i)],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        })
        .sum();
    assert!(folded >= 7, "all but the tail's three are folded back: {folded}");
    for (i, a) in accounts.iter().enumerate() {
        assert_eq!(h.parts(*a).0, expected(i));
    }
    h.assert_consistent();
    let h = h.restarted();
    for (i, a) in accounts.iter().enumerate() {
        assert_eq!(h.parts(*a).0, expected(i), "a cold engine reads the same");
        h.charge(*a, "0.25").unwrap();
        assert_eq!(h.parts(*a).0, expected(i) - 25);
    }
    h.assert_consistent();
    let wrong = purse::open_store(&format!("{}?tail=3", sqlite_url())).err().expect("an unknown option is refused");
    assert!(wrong.to_string().contains("tail_rows=N"), "{wrong}");
}

/// Issue 22: on SQLite a batch's bulk inserts (journal rows, balances, client keys) say OR
/// ROLLBACK, so SQLite keeps no statement journal for them. A constraint one of them breaks
/// rolls the batch's whole transaction back at once, rows written before it in the batch
/// included: the write fails, the store's rollback finds nothing left open, nothing of the
/// batch is kept, and the next batch commits as usual.
#[test]
fn issue_22_a_constraint_broken_in_a_bulk_insert_rolls_the_whole_batch_back_and_the_next_commits() {
    use purse_core::{AccountId, Amount, BatchOutput, ClientId, CurrencyCode, Timestamp, Transfer, TransferId};
    let url = sqlite_url();
    let mut opened = purse::open_store(&url).unwrap();
    let posting = |id: u64, amount: i64| Transfer {
        id: TransferId(id),
        client_id: ClientId::new(&format!("posting-{id}")).unwrap(),
        kind: TransferKind::Charge,
        debit: AccountId(7),
        credit: AccountId(8),
        amount: Amount(amount),
        currency: CurrencyCode::parse("USD").unwrap(),
        at: Timestamp(1),
        posted_at: Timestamp(1),
        service: None,
        metadata: None,
        hold: None,
        reverses: None,
        overdrawn: false,
        debit_prev: None,
        credit_prev: None,
        debit_balance: Amount(-amount),
        credit_balance: Amount(amount),
        grant_parts: Vec::new(),
    };
    let batch = |transfers: Vec<Transfer>| BatchOutput { transfers, ..Default::default() };
    let store = &mut opened.store;
    // 300 good rows (a full multi-row statement, then more), then one whose amount breaks
    // CHECK (amount > 0).
    let mut broken: Vec<Transfer> = (1..=300).map(|id| posting(id, 5)).collect();
    broken.push(posting(301, 0));
    store.begin().unwrap();
    let error = store.write(&batch(broken)).expect_err("an amount of zero breaks the journal's check");
    assert!(error.to_string().to_lowercase().contains("constraint"), "{error}");
    // Already rolled back by SQLite, before the store's rollback: another connection may
    // write at once (with a statement journal the batch's transaction, and its lock, would
    // still be open here).
    let other = rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; ROLLBACK").expect("the broken batch holds no lock");
    store.rollback().expect("nothing is left open to roll back");
    store.begin().unwrap();
    store.write(&batch(vec![posting(302, 5)])).unwrap();
    store.commit().unwrap();
    for id in 1..=301 {
        assert!(opened.reader.transfer(TransferId(id)).unwrap().is_none(), "posting {id} of the broken batch");
    }
    assert_eq!(opened.reader.transfer(TransferId(302)).unwrap().map(|t| t.amount), Some(Amount(5)));
}

/// Issue 22: on SQLite a client key that is not above every indexed key (a random UUID's,
/// or a hashed text id's) waits in `client_key_tail` until a batch folds it into
/// `client_keys`. With a tail of three rows nearly every batch folds, and every client id
/// sent again (however old, before and after its key moved, warm and cold) is answered with
/// its first posting, never posted twice.
#[test]
fn issue_22_a_client_id_sent_again_after_its_key_moved_is_replayed_never_posted_twice() {
    let url = format!("{}?tail_rows=3", sqlite_url());
    let h = Harness::on(&url);
    let account = h.customer("0");
    h.pay(account, "1000.00").unwrap();
    let db = rusqlite::Connection::open(url.trim_start_matches("sqlite://").trim_end_matches("?tail_rows=3")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    // UUIDv4 texts (their key is their high bits, so random) and hashed text ids.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let ids: Vec<String> = (0..40)
        .map(|i| {
            let (a, b) = (next(), next());
            if i % 2 == 0 {
                format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    a >> 32,
                    a & 0xffff,
                    b >> 52,
                    (b >> 40) & 0xfff,
                    b & 0xffff_ffff_ffff
                )
            } else {
                format!("order-{a:x}")
            }
        })
        .collect();
    let charge = |h: &Harness, id: &str| {
        let mut c = h.charge_cmd(account, "0.10", false);
        if let Command::Charge(ref mut n) = c {
            n.client_id = cid(id);
        }
        c
    };
    let mut first = Vec::new();
    for id in &ids {
        let Ok(Outcome::Posted { transfer, replayed: false, .. }) = h.run(charge(&h, id)) else { panic!("{id}") };
        first.push(transfer);
        assert!(count("SELECT count(*) FROM client_key_tail") <= 3, "the tail keeps at most its bound");
    }
    assert!(count("SELECT count(*) FROM client_key_tail") > 0, "keys inside the range wait in the tail");
    assert_eq!(
        count("SELECT count(*) FROM client_keys") + count("SELECT count(*) FROM client_key_tail"),
        count("SELECT count(*) FROM transfers"),
        "every posting's key is in one of the two"
    );
    let again = |h: &Harness| {
        for (id, t) in ids.iter().zip(&first) {
            assert!(
                matches!(h.run(charge(h, id)), Ok(Outcome::Posted { transfer, replayed: true, .. }) if transfer == *t),
                "{id} is replayed"
            );
            assert_eq!(h.engine.reader().transfer_by_client_id(&cid(id)).unwrap().map(|t| t.id), Some(*t), "{id}");
        }
    };
    again(&h);
    let h = h.restarted();
    again(&h);
    assert_eq!(h.parts(account).0, 100_000 - 40 * 10, "each charge once");
    let audit = h.engine.reader().audit().unwrap();
    assert_eq!(audit.duplicate_client_ids, 0);
    assert!(audit.is_consistent(), "{audit:?}");
}

/// Issue 22: a client key above the highest stored one is not looked up (a time-ordered id's,
/// nearly always). The highest is read in the writer's transaction, not remembered: an id
/// another process posted above every key this one wrote is found when it is sent here again.
#[test]
fn issue_22_a_time_ordered_id_another_process_posted_is_replayed_when_sent_again() {
    let url = format!("{}?tail_rows=3", sqlite_url());
    let first = Harness::on(&url);
    let account = first.customer("0");
    first.pay(account, "1000.00").unwrap();
    // UUIDv7-like texts: their key is their high bits, so it grows with n.
    let id = |n: u32| format!("{:08x}-0000-7000-8000-000000000000", 0x0190_0000 + n);
    let charge = |h: &Harness, n: u32| {
        let mut c = h.charge_cmd(account, "0.10", false);
        if let Command::Charge(ref mut c) = c {
            c.client_id = cid(&id(n));
        }
        h.run(c)
    };
    let posted = |h: &Harness, range: std::ops::Range<u32>| -> Vec<purse_core::TransferId> {
        range
            .map(|n| match charge(h, n) {
                Ok(Outcome::Posted { transfer, replayed: false, .. }) => transfer,
                other => panic!("{}: {other:?}", id(n)),
            })
            .collect()
    };
    let replayed = |h: &Harness, range: std::ops::Range<u32>, firsts: &[purse_core::TransferId]| {
        for (n, t) in range.zip(firsts) {
            assert!(
                matches!(charge(h, n), Ok(Outcome::Posted { transfer, replayed: true, .. }) if transfer == *t),
                "{} is replayed with its first posting",
                id(n)
            );
        }
    };
    let by_first = posted(&first, 0..10);
    let second = Harness::on(&url);
    let by_second = posted(&second, 10..20);
    // The first process last wrote id 9's key; the second's are all above it.
    replayed(&first, 10..20, &by_second);
    replayed(&second, 0..10, &by_first);
    replayed(&first, 0..10, &by_first);
    let audit = first.engine.reader().audit().unwrap();
    assert_eq!(audit.duplicate_client_ids, 0);
    assert!(audit.is_consistent(), "{audit:?}");
    assert_eq!(first.parts(account).0, 100_000 - 20 * 10, "each charge once");
}

#[test]
fn sigkill_while_ingesting_loses_no_acknowledged_charge_on_postgres() {
    crash_and_recover(&pg_url("crash"));
}

/// One number from the database behind `url`, read without Purse.
fn scalar(url: &str, sql: &str) -> i64 {
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let file = path.split('?').next().unwrap();
            rusqlite::Connection::open(file).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
        }
        None => postgres::Client::connect(url, postgres::NoTls).unwrap().query_one(sql, &[]).unwrap().get(0),
    }
}

fn two_processes(url: &str) {
    // Both processes create (or replay) the same 20 customers and funding.
    collect(soak(url, "setup", &["--commands", "0", "--funding", "2000"]), None);
    let first = soak(url, "p1", &["--commands", "1500", "--checked", "--seed", "11", "--funding", "2000"]);
    let second = soak(url, "p2", &["--commands", "1500", "--checked", "--seed", "22", "--funding", "2000"]);
    let (a, b) = (collect(first, None), collect(second, None));
    assert_eq!((a.len(), b.len()), (1500, 1500));
    let mut all = a;
    all.extend(b);
    verify_acks(url, &all);
    let refused = all.values().filter(|a| **a == Ack::Refused).count();
    assert!(refused > 0, "the funding is small enough that some spending must be refused");

    for prefix in ["p1", "p2"] {
        let stored = scalar(url, &format!("SELECT count(*) FROM transfers WHERE client_id LIKE '{prefix}-%'"));
        let posted = all
            .iter()
            .filter(|(id, a)| id.starts_with(&format!("{prefix}-")) && matches!(a, Ack::Posted { .. }))
            .count();
        assert_eq!(stored as usize, posted, "{prefix}: no posting lost or duplicated");
    }
    // Prepaid wallets, only checked spending: no balance may be below zero.
    let negative = scalar(
        url,
        "SELECT count(*) FROM balances b JOIN accounts a ON a.id = b.account_id \
         WHERE a.kind = 'wallet' AND b.balance - b.reserved < 0",
    );
    assert_eq!(negative, 0);
    let charged: i64 = all
        .values()
        .filter_map(|a| match a {
            Ack::Posted { kind, amount } if kind == "charge" => Some(*amount),
            _ => None,
        })
        .sum();
    let revenue = scalar(
        url,
        "SELECT b.balance FROM balances b JOIN accounts a ON a.id = b.account_id WHERE a.system_role = 'usage_revenue'",
    );
    assert_eq!(revenue, charged, "revenue equals the acknowledged charges exactly");
}

#[test]
fn two_processes_on_one_postgres_database_keep_every_limit_and_every_posting() {
    two_processes(&pg_url("two_processes"));
}

/// Issue 22: two processes on one SQLite file, each folding the tails (three rows) the other
/// writes into, each with its own idea of the highest client key.
#[test]
fn issue_22_two_processes_on_one_sqlite_file_with_small_tails_keep_every_limit_and_every_posting() {
    two_processes(&format!("{}?tail_rows=3", sqlite_url()));
}

fn key_story(url: &str) {
    use purse_core::{Role, Scope, Timestamp};
    let h = Harness::on(url);
    let (customer, _) = h.customer_party("0");
    drop(h);
    let opened = purse::open_store(url).unwrap();
    let (secret, record) =
        purse_app::secrets::issue_key("billing bot", Role::Customer(customer), Scope::Read, Timestamp(7)).unwrap();
    let id = opened.access.insert_key(&record).unwrap();
    let found = opened.access.key_by_hash(&purse_app::secrets::hash_key(&secret)).unwrap().expect("found by hash");
    assert_eq!(
        (found.id, found.role, found.scope, found.revoked_at),
        (id, Role::Customer(customer), Scope::Read, None)
    );
    assert_eq!(opened.access.key_by_hash(&purse_app::secrets::hash_key("purse_nope")).unwrap(), None);
    // The same hash twice is refused by the database.
    assert!(opened.access.insert_key(&record).is_err());
    // A second key, an operator's, revoked once and only once.
    let (_, operator_key) =
        purse_app::secrets::issue_key("ops", Role::Operator, Scope::ReadWrite, Timestamp(7)).unwrap();
    let operator = opened.access.insert_key(&operator_key).unwrap();
    assert!(opened.access.revoke_key(operator, Timestamp(9)).unwrap());
    assert!(!opened.access.revoke_key(operator, Timestamp(10)).unwrap(), "revoking twice changes nothing");
    let keys = opened.access.keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].revoked_at, Some(Timestamp(9)));
    assert!(keys.iter().all(|k| !k.hash.contains(&secret[6..]) && k.prefix.len() == 14));
}

#[test]
fn api_keys_are_stored_as_hashes_and_revocable_on_both_backends() {
    key_story(&sqlite_url());
    key_story(&pg_url("keys"));
}

fn user_story(url: &str) {
    use purse_core::{Role, Scope, Timestamp};
    use purse_store::{NewUser, PartyQuery, SessionRecord};
    let h = Harness::on(url);
    let (customer, _) = h.customer_party("0");
    drop(h);
    let opened = purse::open_store(url).unwrap();
    let s = &opened.access;
    let user = NewUser {
        email: "ana@example.com".into(),
        name: "Ana".into(),
        password_hash: "$argon2id$v=19$stand-in".into(),
        role: Role::Customer(customer),
        scope: Scope::Read,
        created_at: Timestamp(5),
    };
    let id = s.insert_user(&user).unwrap().expect("stored");
    assert_eq!(s.insert_user(&user).unwrap(), None, "an e-mail is taken once");
    let found = s.user_by_email("ana@example.com").unwrap().expect("found by e-mail");
    assert_eq!(
        (found.id, found.role, found.scope, found.name.as_str()),
        (id, Role::Customer(customer), Scope::Read, "Ana")
    );
    assert_eq!(s.user(id).unwrap(), Some(found));
    assert_eq!(s.users().unwrap().len(), 1);

    // Sessions: found by hash, expired ones forgotten when a new one starts, a password
    // change ends every session but the one kept.
    let session = |hash: &str, created: i64, expires: i64| SessionRecord {
        hash: hash.into(),
        user_id: id,
        csrf: "token".into(),
        created_at: Timestamp(created),
        expires_at: Timestamp(expires),
    };
    s.insert_session(&session("old", 1, 10)).unwrap();
    s.insert_session(&session("a", 20, 100)).unwrap();
    assert_eq!(s.session("old").unwrap(), None, "expired at the next login");
    s.insert_session(&session("b", 21, 100)).unwrap();
    assert_eq!(s.session("a").unwrap().map(|x| x.csrf), Some("token".into()));
    s.set_password(id, "$argon2id$v=19$new", Some("b")).unwrap();
    assert_eq!(s.session("a").unwrap(), None);
    assert!(s.session("b").unwrap().is_some());
    assert_eq!(s.user(id).unwrap().unwrap().password_hash, "$argon2id$v=19$new");
    assert!(s.delete_session("b").unwrap());
    assert!(!s.delete_session("b").unwrap(), "logout twice changes nothing");

    // Login attempts are reserved per e-mail, counted until cleared, and refused while the
    // rule says to wait.
    let never = |_: u32, _: Timestamp| 0;
    let after_two = |failures: u32, _: Timestamp| if failures >= 2 { 7 } else { 0 };
    assert_eq!(s.login_failures("ana@example.com").unwrap(), None);
    assert_eq!(s.reserve_login("ana@example.com", Timestamp(30), Timestamp(0), &never).unwrap(), Ok(1));
    assert_eq!(s.reserve_login("ana@example.com", Timestamp(31), Timestamp(0), &after_two).unwrap(), Ok(2));
    assert_eq!(
        s.reserve_login("ana@example.com", Timestamp(32), Timestamp(0), &after_two).unwrap(),
        Err(7),
        "refused: not counted"
    );
    assert_eq!(s.reserve_login("bo@example.com", Timestamp(32), Timestamp(0), &never).unwrap(), Ok(1));
    assert_eq!(s.login_failures("ana@example.com").unwrap(), Some((2, Timestamp(31))));
    s.clear_login_failures("ana@example.com").unwrap();
    assert_eq!(s.login_failures("ana@example.com").unwrap(), None);
    // Old failures are forgotten: the count starts over and old rows go.
    assert_eq!(s.reserve_login("ana@example.com", Timestamp(40), Timestamp(0), &never).unwrap(), Ok(1));
    assert_eq!(s.reserve_login("ana@example.com", Timestamp(500), Timestamp(41), &never).unwrap(), Ok(1));
    assert_eq!(s.login_failures("bo@example.com").unwrap(), None, "other e-mails' old failures are deleted too");

    // Customers are searched by name or client id, ignoring case.
    let found = opened
        .reader
        .parties(PartyQuery { search: Some("customer".into()), limit: 10, ..PartyQuery::default() })
        .unwrap();
    assert!(found.iter().any(|p| p.id == customer));
    let none = opened
        .reader
        .parties(PartyQuery { search: Some("no such name".into()), limit: 10, ..PartyQuery::default() })
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn portal_users_sessions_and_login_failures_on_both_backends() {
    user_story(&sqlite_url());
    user_story(&pg_url("users"));
}

/// The schema as it was before issue 17 (migrations 0001 to 0010), with ids stored the old
/// way: a reseller's or customer's client id carried its tenant as a text prefix (`c2:x`),
/// an operator's as sent, even when it looked like a prefix (`c999:y`, `c2-not-a-prefix`).
fn legacy_database(url: &str) {
    let backend = if url.starts_with("sqlite://") { "sqlite" } else { "postgres" };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../purse-store-{backend}/migrations"));
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let applied = if backend == "sqlite" { "INTEGER NOT NULL DEFAULT 0" } else { "TIMESTAMPTZ NOT NULL DEFAULT now()" };
    let mut sql = format!("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at {applied});\n");
    for name in names.iter().filter(|n| n.as_str() < "0011") {
        sql.push_str(&std::fs::read_to_string(dir.join(name)).unwrap());
        sql.push_str(&format!(
            ";\nINSERT INTO schema_migrations (name) VALUES ('{}');\n",
            name.trim_end_matches(".sql")
        ));
    }
    let key = |text: &str| purse_store::codec::client_key(&cid(text));
    let roles = ["usage_revenue", "card_clearing", "cash_clearing", "bank_clearing", "adjustments"];
    sql.push_str("INSERT INTO currencies (code, scale) VALUES ('USD', 2);\n");
    for (i, role) in roles.iter().enumerate() {
        let id = i + 1;
        let balance = if *role == "cash_clearing" { -700 } else { 0 };
        sql.push_str(&format!(
            "INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit, thresholds, created_at) \
             VALUES ({id}, NULL, NULL, 'system', '{role}', NULL, 'USD', 'open', 0, '', 0);\n\
             INSERT INTO balances (account_id, balance, reserved, children_balance, uninvoiced) VALUES ({id}, {balance}, 0, 0, 0);\n"
        ));
    }
    sql.push_str(
        "INSERT INTO parties (id, client_id, name, kind, created_at) VALUES (1, 'op-reseller', 'Reseller', 'reseller', 0);\n\
         INSERT INTO parties (id, client_id, name, kind, reseller_id, billing, currency, wallet_id, created_at) VALUES (2, 'r1:cust', 'Customer', 'customer', 1, 'prepaid', 'USD', 6, 0);\n\
         INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit, thresholds, created_at) \
             VALUES (6, NULL, 2, 'wallet', NULL, NULL, 'USD', 'open', 0, '', 0);\n\
         INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit, thresholds, created_at) \
             VALUES (7, 'c2:sub', 2, 'subscriber_debit', NULL, NULL, 'USD', 'open', 0, '', 0);\n\
         INSERT INTO balances (account_id, balance, reserved, children_balance, last_transfer_id, uninvoiced) VALUES (6, 700, 0, 0, 3, 0);\n\
         INSERT INTO balances (account_id, balance, reserved, children_balance, uninvoiced) VALUES (7, 0, 0, 0, 0);\n",
    );
    let transfer = |id: u64, client_id: &str, amount: i64, prev: &str, after: i64| {
        format!(
            "INSERT INTO transfers (id, client_id, client_key, kind, debit_account_id, credit_account_id, amount, currency, at, posted_at, overdrawn, \
             debit_prev_id, credit_prev_id, debit_balance, credit_balance) VALUES ({id}, '{client_id}', {}, 'payment', 3, 6, {amount}, 'USD', 0, 0, {f}, \
             NULL, {prev}, 0, {after});\n",
            key(client_id),
            f = if backend == "sqlite" { "0" } else { "false" },
        )
    };
    sql.push_str(&transfer(1, "c2:x", 500, "NULL", 500));
    sql.push_str(&transfer(2, "c999:y", 100, "1", 600));
    sql.push_str(&transfer(3, "c2-not-a-prefix", 100, "2", 700));
    if backend == "sqlite" {
        rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap().execute_batch(&sql).unwrap();
    } else {
        postgres::Client::connect(url, postgres::NoTls).unwrap().batch_execute(&sql).unwrap();
    }
}

/// Issue 17: the migration that makes the tenant a part of every client id's key keeps
/// every existing id and its replay, on both backends.
#[test]
fn issue_17_the_tenancy_migration_keeps_every_id_and_its_replay() {
    use purse_core::{ClientId, Money, PartyId, PaymentMethod, Tenant};
    for url in both_backends("issue_17_migration") {
        legacy_database(&url);
        let h = Harness::on(&url);
        let reader = h.engine.reader();
        let customer = |text: &str| ClientId::scoped(Tenant::Customer(PartyId(2)), text).unwrap();
        assert_eq!(reader.transfer_by_client_id(&customer("x")).unwrap().map(|t| t.id.0), Some(1), "{url}");
        assert_eq!(reader.transfer_by_client_id(&cid("c2:x")).unwrap(), None, "the prefix moved out of the text");
        assert_eq!(
            reader.transfer_by_client_id(&cid("c999:y")).unwrap().map(|t| t.id.0),
            Some(2),
            "no party 999: the operator's"
        );
        assert_eq!(reader.transfer_by_client_id(&cid("c2-not-a-prefix")).unwrap().map(|t| t.id.0), Some(3));
        let party = reader.party(PartyId(2)).unwrap().unwrap();
        assert_eq!(party.client_id, ClientId::scoped(Tenant::Reseller(PartyId(1)), "cust").unwrap());
        let sub = reader.account(purse_core::AccountId(7)).unwrap().unwrap();
        assert_eq!(sub.client_id, Some(customer("sub")));
        // The customer's retry replays its first posting; the same text is free for the operator.
        let pay = |client_id: ClientId, units| Command::Payment {
            client_id,
            account: purse_core::AccountId(6),
            money: Money { amount: purse_core::Amount(units), currency: h.usd.code },
            method: PaymentMethod::Cash,
            metadata: None,
        };
        let replay = h.run(pay(customer("x"), 500));
        assert_eq!(
            replay,
            Ok(Outcome::Posted { transfer: purse_core::TransferId(1), overdrawn: false, replayed: true }),
            "{url}"
        );
        assert!(matches!(h.run(pay(cid("x"), 5)), Ok(Outcome::Posted { replayed: false, .. })));
        assert!(matches!(h.run(pay(cid("c999:y"), 100)), Ok(Outcome::Posted { replayed: true, .. })));
        h.assert_consistent();
    }
}

/// Issue 22: a new SQLite file has 8 KiB pages (half the pages, WAL frames and writes per
/// batch); a file made before with 4 KiB pages keeps them, opens, takes charges and reads
/// them back, before and after a restart.
#[test]
fn issue_22_a_new_sqlite_file_has_8_kib_pages_and_one_made_before_keeps_its_own() {
    let page_size = |url: &str| {
        let db = rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap();
        db.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let new = sqlite_url();
    let h = Harness::on(&new);
    let a = h.customer("0");
    h.pay(a, "5.00").unwrap();
    assert_eq!(page_size(&new), 8192);
    drop(h);
    let old = sqlite_url();
    {
        // An empty file as earlier versions made it: 4 KiB pages, WAL.
        let db = rusqlite::Connection::open(old.trim_start_matches("sqlite://")).unwrap();
        db.execute_batch("PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE made_before (x)").unwrap();
    }
    let h = Harness::on(&old);
    let a = h.customer("0");
    h.pay(a, "5.00").unwrap();
    h.charge(a, "1.25").unwrap();
    assert_eq!(h.parts(a).0, 375);
    let h = h.restarted();
    h.charge(a, "0.25").unwrap();
    assert_eq!(h.parts(a).0, 350);
    h.assert_consistent();
    assert_eq!(page_size(&old), 4096);
}
