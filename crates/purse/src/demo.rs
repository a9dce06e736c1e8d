//! `purse demo`: a fresh SQLite database with two resellers, prepaid and postpaid customers
//! and subscriber accounts and a simulated day of usage; then (unless `--once`) API keys for
//! each role, the server, and live usage flowing so balances visibly move.

use std::sync::Arc;

use purse_core::{
    AccountId, Amount, Billing, ChangeNote, ClientId, Command, Currency, CurrencyCode, Item, Money, NewAccountKind,
    NewCharge, Outcome, PartyId, PaymentMethod, Timestamp, TransferKind,
};
use purse_engine::{Engine, EngineConfig, ManualClock};

use crate::ids::Rng;

/// The simulated day is yesterday (UTC), so that this month's Balance Details show it.
fn day_start_s() -> i64 {
    let today = i64::try_from(crate::ids::unix_ms() / 1000).unwrap_or(0) / 86_400;
    (today - 1) * 86_400
}
const HOUR_US: i64 = 3_600_000_000;

struct Demo {
    engine: Engine,
    clock: Arc<ManualClock>,
    usd: Currency,
    counter: u64,
}

impl Demo {
    fn id(&mut self, what: &str) -> ClientId {
        self.counter += 1;
        ClientId::new(&format!("demo-{what}-{}", self.counter)).expect("short")
    }

    fn run(&self, command: Command) -> crate::error::Result<Outcome> {
        match self.engine.execute(command).map_err(crate::Error::from)? {
            Ok(o) => Ok(o),
            Err(r) => Err(crate::Error::Failed(format!("demo command refused: {r}"))),
        }
    }

    fn money(&self, text: &str) -> Money {
        Money { amount: self.usd.parse(text).expect("demo amounts are valid"), currency: self.usd.code }
    }

    fn customer(
        &mut self,
        name: &str,
        reseller: Option<PartyId>,
        billing: Billing,
        limit: &str,
    ) -> crate::error::Result<(PartyId, AccountId)> {
        let client_id = self.id("customer");
        let credit_limit = self.usd.parse(limit).expect("valid");
        let command = Command::CreateCustomer {
            client_id,
            name: name.into(),
            reseller,
            billing,
            currency: self.usd.code,
            credit_limit,
        };
        match self.run(command)? {
            Outcome::PartyCreated { party, wallet: Some(w), .. } => Ok((party, w)),
            other => Err(crate::Error::Failed(format!("unexpected {other:?}"))),
        }
    }

    fn pay(&mut self, account: AccountId, amount: &str, method: PaymentMethod) -> crate::error::Result<()> {
        let client_id = self.id("payment");
        let money = self.money(amount);
        self.run(Command::Payment { client_id, account, money, method, metadata: None }).map(drop)
    }
}

/// What the seeded database holds, for the live part.
pub struct Seeded {
    pub report: String,
    pub resellers: Vec<PartyId>,
    /// (name, customer, wallet).
    pub customers: Vec<(String, PartyId, AccountId)>,
}

/// Seeds a fresh database at `path` with a simulated day and returns the report to print.
pub fn run(path: &str) -> crate::error::Result<String> {
    seed(path).map(|s| s.report)
}

/// Seeds the database, then serves it on `listen` with keys printed and usage flowing,
/// until SIGTERM or Ctrl-C.
pub fn serve(
    path: &str,
    listen: &str,
    web: crate::web::WebSettings,
    mut alerts: purse_app::notifier::AlertConfig,
    payments: purse_app::recharger::PaymentConfig,
) -> crate::error::Result<()> {
    let seeded = seed(path)?;
    let cards = payments.stripe.as_ref().map(|(url, _)| url.clone());
    let opened = crate::open_store(&format!("sqlite://{path}")).map_err(crate::Error::from)?;
    let now = purse_engine::Clock::now(&purse_engine::SystemClock);
    let rw = purse_core::Scope::ReadWrite;
    let (_, operator) = crate::keys::create(&opened, "demo operator", purse_core::Role::Operator, rw, now)?;
    let (_, reseller) =
        crate::keys::create(&opened, "demo reseller", purse_core::Role::Reseller(seeded.resellers[0]), rw, now)?;
    let (_, customer) =
        crate::keys::create(&opened, "demo customer", purse_core::Role::Customer(seeded.customers[0].1), rw, now)?;
    let (first_name, first_customer, first_wallet) = &seeded.customers[0];
    let logins = [
        ("operator@demo.purse", "Olivia Operator", purse_core::Role::Operator, rw, "operator admin"),
        (
            "northwind@demo.purse",
            "Nadia Northwind",
            purse_core::Role::Reseller(seeded.resellers[0]),
            rw,
            "reseller admin",
        ),
        (
            "admin@customer.demo.purse",
            "Casey Customer",
            purse_core::Role::Customer(*first_customer),
            rw,
            "customer admin",
        ),
        (
            "viewer@customer.demo.purse",
            "Vic Viewer",
            purse_core::Role::Customer(*first_customer),
            purse_core::Scope::Read,
            "customer read-only",
        ),
    ];
    let mut printed = Vec::new();
    for (email, name, role, scope, what) in logins {
        let password = crate::keys::create_user(&opened, email, name, role, scope, now)?;
        printed.push(format!("    {what:<19} {email:<28} {password}"));
    }
    let maildir = format!("{path}.maildir");
    if matches!(alerts.mail, purse_app::notifier::MailConfig::Maildir(_)) {
        alerts.mail = purse_app::notifier::MailConfig::Maildir(maildir.clone().into());
    }
    let mail = match &alerts.mail {
        purse_app::notifier::MailConfig::Maildir(_) => {
            format!("written to the maildir {maildir}/new and shown in the portal under Notifications")
        }
        purse_app::notifier::MailConfig::Smtp { host, port, .. } => format!("sent through {host}:{port}"),
    };
    let options = crate::serve::ServeOptions {
        listen: listen.to_owned(),
        engine: EngineConfig::default(),
        web,
        alerts: Some(alerts),
        payments,
        read_timeout: crate::serve::READ_TIMEOUT,
    };
    let server = crate::serve::start(opened, Arc::new(purse_engine::SystemClock), options)?;
    let card_line = match &cards {
        Some(url) => match card_recharge(&server, &seeded) {
            Ok(()) => format!("by card through Stripe at {url} (Initech Cloud, test card 4242), "),
            Err(e) => format!("(no card recharge: {e}), "),
        },
        None => "(card payments are not configured: set PURSE_STRIPE_URL and PURSE_STRIPE_SECRET_KEY, e.g. to a localstripe), ".into(),
    };
    let base = format!("http://{}", server.addr);
    let rating = match seed_calls(&base, &operator, &seeded) {
        Ok(()) => "Northwind Voice (Acme Call Center's plan, with a call in progress) and Wholesale Voice".to_owned(),
        Err(e) => format!("not seeded ({e})"),
    };
    println!("{}", seeded.report);
    println!("Purse is serving {path} at {base}");
    println!("  Portal at {base}/ (logins shown once; only argon2id hashes are stored):");
    for line in &printed {
        println!("{line}");
    }
    println!("  Low-balance e-mails are {mail}.");
    println!("  Auto-recharge: from Northwind's master account (Acme Call Center), by top-up invoice (Globex SMS), {card_line}as usage flows.");
    println!("  Rate plans: {rating}.");
    println!("  API keys (shown once; only their hashes are stored):");
    println!("    operator              {operator}");
    println!("    reseller {:<12} {reseller}", "Northwind");
    println!("    customer {:<12} {customer}", first_name.split(' ').next().unwrap_or(""));
    println!("  Try:");
    println!("    curl -H 'Authorization: Bearer {operator}' {base}/v1/balances");
    println!("    curl -H 'Authorization: Bearer {customer}' {base}/v1/accounts/{first_wallet}");
    println!("    curl {base}/v1/openapi.json");
    println!("  Usage keeps flowing every half second; Ctrl-C stops.");
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let usage = {
        let (engine, running) = (server.engine.clone(), running.clone());
        let wallets: Vec<AccountId> = seeded.customers.iter().map(|c| c.2).collect();
        std::thread::spawn(move || live_usage(&engine, &wallets, &running))
    };
    let result = server.wait();
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = usage.join();
    result
}

/// Charges every half second; wallets that run low are recharged by their auto-recharge settings.
fn live_usage(engine: &Engine, wallets: &[AccountId], running: &std::sync::atomic::AtomicBool) {
    let code = CurrencyCode::parse("USD").expect("valid");
    let mut rng = Rng::new(crate::ids::unix_ms());
    let mut n = 0u64;
    let mut id = |what: &str| {
        n += 1;
        ClientId::new(&format!("live-{what}-{}-{n}", std::process::id())).expect("short")
    };
    while running.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut items = Vec::new();
        for wallet in wallets {
            let (service, price) = if rng.chance(60) { ("voice", 4 * (1 + rng.below(300))) } else { ("sms", 75) };
            items.push(Item::single(Command::Charge(NewCharge {
                client_id: id("usage"),
                account: *wallet,
                money: Money { amount: Amount(price as i64), currency: code },
                service: Some(service.into()),
                at: None,
                metadata: None,
                refuse_if_insufficient: false,
            })));
        }
        if engine.submit(items).is_err() {
            return; // The engine is stopping.
        }
    }
}

/// Seeds a fresh database at `path` (removing any file there): resellers, customers,
/// subscriber accounts and a simulated day of usage.
pub fn seed(path: &str) -> crate::error::Result<Seeded> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let day_start_s = day_start_s();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(day_start_s)));
    let engine = crate::start_engine(&format!("sqlite://{path}"), clock.clone(), EngineConfig::default())
        .map_err(crate::Error::from)?;
    let code = CurrencyCode::parse("USD").expect("valid");
    let mut demo = Demo { engine, clock, usd: Currency { code, scale: 4 }, counter: 0 };
    demo.run(Command::CreateCurrency { code, scale: 4 })?;

    let mut resellers = Vec::new();
    for name in ["Northwind Telecom", "Blue Harbor Networks"] {
        let client_id = demo.id("reseller");
        let Outcome::PartyCreated { party, .. } = demo.run(Command::CreateReseller { client_id, name: name.into() })?
        else {
            return Err(crate::Error::Failed("reseller not created".into()));
        };
        let client_id = demo.id("master");
        let Outcome::AccountOpened { account, .. } =
            demo.run(Command::OpenAccount { client_id, party, kind: NewAccountKind::MasterWallet { currency: code } })?
        else {
            return Err(crate::Error::Failed("master wallet not opened".into()));
        };
        demo.pay(account, "5000", PaymentMethod::BankTransfer)?;
        resellers.push((party, account));
    }
    let mut wallets = Vec::new();
    let specs = [
        ("Acme Call Center", 0, Billing::Prepaid, "0", "30"),
        ("Globex SMS", 0, Billing::Prepaid, "0", "60"),
        ("Initech Cloud", 1, Billing::Postpaid, "500", "0"),
        ("Umbrella Voice", 1, Billing::Postpaid, "250", "0"),
    ];
    for (name, reseller, billing, limit, funding) in specs {
        let (party, wallet) = demo.customer(name, Some(resellers[reseller].0), billing, limit)?;
        if funding != "0" {
            demo.pay(wallet, funding, PaymentMethod::Card)?;
        }
        let thresholds = ["50", "20", "10"].map(|t| demo.usd.parse(t).expect("valid")).to_vec();
        demo.run(Command::SetThresholds { account: wallet, thresholds })?;
        wallets.push((name, party, wallet));
    }
    // A reseller issues credit from its master wallet; a postpaid customer gets subscriber accounts.
    let client_id = demo.id("issue");
    let money = demo.money("40");
    demo.run(Command::Transfer {
        client_id,
        source: resellers[0].1,
        target: wallets[1].2,
        money,
        kind: TransferKind::Issue,
        metadata: None,
        note: None,
    })?;
    let mut initech = vec![wallets[2].2];
    let client_id = demo.id("subscriber");
    let kind = NewAccountKind::SubscriberCredit { credit_limit: demo.usd.parse("100").expect("valid") };
    if let Outcome::AccountOpened { account, .. } =
        demo.run(Command::OpenAccount { client_id, party: wallets[2].1, kind })?
    {
        initech.push(account);
    }
    let client_id = demo.id("subscriber");
    if let Outcome::AccountOpened { account, .. } =
        demo.run(Command::OpenAccount { client_id, party: wallets[2].1, kind: NewAccountKind::SubscriberDebit })?
    {
        initech.push(account);
    }
    // Its class (Gold, below) lets its subscriber accounts transfer to each other.
    demo.run(Command::SetSubscriberTransfers { party: wallets[2].1, allowed: true })?;
    // Initech's credit limit history: raised once, then a temporary increase for a week.
    let note = |reason: &str| ChangeNote { by: "demo".into(), reason: Some(reason.into()) };
    demo.run(Command::SetCreditLimit {
        account: wallets[2].2,
        credit_limit: demo.usd.parse("600").expect("valid"),
        note: note("Annual review"),
    })?;
    let until = Timestamp::from_secs(day_start_s + 7 * 86_400);
    let increase = Some((demo.usd.parse("150").expect("valid"), until));
    demo.run(Command::SetTemporaryIncrease { account: wallets[2].2, increase, note: note("Seasonal peak") })?;

    // Umbrella got goodwill credit for voice after an outage, valid a month: its calls use it first.
    let client_id = demo.id("grant");
    let money = demo.money("25");
    demo.run(Command::Grant(purse_core::command::NewGrant {
        client_id,
        account: wallets[3].2,
        money,
        kind: "goodwill".into(),
        funding: purse_core::SystemRole::Grants,
        priority: 5,
        effective_at: None,
        expires_at: Some(Timestamp::from_secs(day_start_s + 30 * 86_400)),
        scope: vec!["voice".into()],
        rollover: None,
        note: note("Outage on the 3rd"),
        metadata: None,
    }))?;
    seed_alerts(path, &resellers, &wallets, demo.usd, Timestamp::from_secs(day_start_s))?;
    let events = simulate_day(&mut demo, &wallets, day_start_s)?;
    // Initech's usage so far is invoiced at once, and partly paid: the scheduler allocates
    // the payment to the invoice when `purse demo` serves.
    let period_end = purse_engine::Clock::now(demo.clock.as_ref());
    demo.run(Command::Invoice { party: wallets[2].1, accounts: initech, period_end })?;
    demo.pay(wallets[2].2, "5", PaymentMethod::BankTransfer)?;
    Ok(Seeded {
        report: report(&demo, &wallets, events)?,
        resellers: resellers.iter().map(|r| r.0).collect(),
        customers: wallets.iter().map(|(n, p, w)| ((*n).to_owned(), *p, *w)).collect(),
    })
}

/// A Low Balance Profile per reseller (user and client rules at 20 USD, three a day at
/// most), billing e-mails, and warning thresholds of 50, 20 and 10 for every customer.
fn seed_alerts(
    path: &str,
    resellers: &[(PartyId, AccountId)],
    wallets: &[(&str, PartyId, AccountId)],
    usd: Currency,
    now: Timestamp,
) -> crate::error::Result<()> {
    use purse_core::alerts::{AlertSettings, Profile, Rule, RuleKind, WarningLevel};
    let side = crate::open_side(&format!("sqlite://{path}")).map_err(crate::Error::from)?;
    let slug = |name: &str| name.split_whitespace().next().unwrap_or("x").to_ascii_lowercase();
    let twenty = usd.parse("20").expect("valid");
    for (n, (reseller, _)) in resellers.iter().enumerate() {
        let rule = |kind| Rule {
            kind,
            threshold: twenty,
            notify: true,
            users: Vec::new(),
            emails: Vec::new(),
            inactivity_s: 0,
        };
        let profile = Profile {
            id: 0,
            name: "Standard".into(),
            reseller: Some(*reseller),
            currency: usd.code,
            sort_order: 0,
            max_quantity: 3,
            period_s: 24 * 3600,
            rules: vec![rule(RuleKind::User), rule(RuleKind::Client)],
            subject: purse_core::alerts::DEFAULT_SUBJECT.into(),
            body: purse_core::alerts::DEFAULT_BODY.into(),
            created_at: now,
            updated_at: now,
        };
        side.alerts.insert_profile(&profile).map_err(crate::Error::from)?;
        let email = format!("billing@{}.demo", ["northwind", "blueharbor"][n.min(1)]);
        let settings = AlertSettings {
            party: *reseller,
            profile: None,
            email: Some(email),
            alert_emails: Vec::new(),
            warning: Vec::new(),
            updated_at: now,
        };
        side.alerts.put_alert_settings(&settings).map_err(crate::Error::from)?;
    }
    for (name, party, _) in wallets {
        let warning = ["50", "20", "10"].map(|t| WarningLevel::Amount(usd.parse(t).expect("valid"))).to_vec();
        let settings = AlertSettings {
            party: *party,
            profile: None,
            email: Some(format!("billing@{}.demo", slug(name))),
            alert_emails: vec![format!("finance@{}.demo", slug(name))],
            warning,
            updated_at: now,
        };
        side.alerts.put_alert_settings(&settings).map_err(crate::Error::from)?;
    }
    // Auto-recharge: Acme from Northwind's master account below 20, Globex by top-up invoice
    // below 150 (so the demo opens with an invoice).
    use purse_core::recharge::{RechargeMethod, RechargeSettings, RechargeTarget};
    for ((_, party, _), method, threshold, amount) in
        [(&wallets[0], RechargeMethod::MasterAccount, "20", "50"), (&wallets[1], RechargeMethod::Invoice, "150", "100")]
    {
        let settings = RechargeSettings {
            enabled: true,
            method,
            threshold: usd.parse(threshold).expect("valid"),
            target: RechargeTarget::Amount(usd.parse(amount).expect("valid")),
            per_day_max: 24,
            emails: vec![format!("finance@{}.demo", slug(wallets.iter().find(|w| w.1 == *party).map_or("x", |w| w.0)))],
            ..RechargeSettings::off(*party, now)
        };
        side.payments.put_recharge_settings(&settings).map_err(crate::Error::from)?;
    }
    // Credit control: a Gold class (subscriber transfers, increases up to 50 % for 30 days)
    // for Initech, and Blue Harbor's own bound of 200 for its other customers.
    use purse_store::{AuditEntry, ClassRecord, CreditPolicy, MaxIncrease, TransferSetting};
    let audit = |entity: &str, party: Option<PartyId>| AuditEntry {
        id: 0,
        at: now,
        actor: "demo".into(),
        party,
        entity: entity.into(),
        entity_id: String::new(),
        action: "create".into(),
        before: None,
        after: None,
    };
    let gold = ClassRecord {
        id: 0,
        reseller: None,
        name: "Gold".into(),
        transfers_allowed: true,
        max: MaxIncrease { amount: None, percent: Some(50), days: Some(30) },
        updated_at: now,
    };
    let gold = side.credit.put_class(&gold, &audit("customer_class", None)).map_err(crate::Error::from)?;
    let initech = CreditPolicy { class: Some(gold.id), ..CreditPolicy::default_for(wallets[2].1) };
    side.credit
        .put_credit_policy(&initech, &audit("credit_settings", Some(initech.party)))
        .map_err(crate::Error::from)?;
    let max = MaxIncrease { amount: Some("200".into()), percent: None, days: Some(14) };
    let harbor = CreditPolicy { max, transfers: TransferSetting::No, ..CreditPolicy::default_for(resellers[1].0) };
    side.credit
        .put_credit_policy(&harbor, &audit("credit_settings", Some(harbor.party)))
        .map_err(crate::Error::from)?;
    Ok(())
}

/// With Stripe configured: Initech (postpaid, limit 500) saves the test card 4242 and
/// recharges 200 by card whenever its available credit falls below 500, i.e. it owes.
fn card_recharge(server: &crate::serve::Server, seeded: &Seeded) -> crate::error::Result<()> {
    use purse_core::recharge::{RechargeMethod, RechargeTarget};
    let url = server.url.clone();
    let side = crate::open_side(&url).map_err(crate::Error::from)?;
    let (_, party, _) = &seeded.customers[2];
    let party = side
        .reader
        .party(*party)
        .map_err(crate::Error::from)?
        .ok_or_else(|| crate::Error::Failed("no Initech".into()))?;
    let payments = purse_app::recharger::Recharger::new(
        server.engine.clone(),
        side.reader.clone(),
        side.alerts.clone(),
        side.payments.clone(),
        server.payments.clone(),
        None,
    );
    let card = purse_app::cards::CardDetails {
        number: "4242424242424242".into(),
        exp_month: 12,
        exp_year: 2034,
        cvc: "123".into(),
    };
    payments
        .save_card(&party, Some("billing@initech.demo"), &card)
        .map_err(|e| crate::Error::Failed(format!("saving the demo card at Stripe: {e:?}")))?;
    let mut settings = side
        .payments
        .recharge_settings(party.id)
        .map_err(crate::Error::from)?
        .ok_or_else(|| crate::Error::Failed("no settings".into()))?;
    let usd = purse_core::Currency { code: CurrencyCode::parse("USD").expect("valid"), scale: 4 };
    settings.enabled = true;
    settings.method = RechargeMethod::Card;
    settings.threshold = usd.parse("500").expect("valid");
    settings.target = RechargeTarget::Amount(usd.parse("200").expect("valid"));
    settings.per_day_max = 24;
    side.payments.put_recharge_settings(&settings).map_err(crate::Error::from)?;
    Ok(())
}

/// 24 simulated hours of calls and SMS, rated per minute and per message.
fn simulate_day(
    demo: &mut Demo,
    wallets: &[(&str, PartyId, AccountId)],
    day_start_s: i64,
) -> crate::error::Result<u64> {
    let mut rng = Rng::new(2026);
    for hour in 0..24 {
        demo.clock.set(Timestamp::from_secs(day_start_s).plus_micros(hour * HOUR_US));
        let mut items = Vec::new();
        for (_, _, wallet) in wallets {
            for _ in 0..(5 + rng.below(20)) {
                let (service, units) = if rng.chance(60) { ("voice", 1 + rng.below(300)) } else { ("sms", 1) };
                // Voice at 0.0004 per second, SMS at 0.0075 each: the 4-digit scale at work.
                let price = if service == "voice" { 4 * units } else { 75 };
                items.push(Item::single(Command::Charge(NewCharge {
                    client_id: demo.id("usage"),
                    account: *wallet,
                    money: Money { amount: Amount(price as i64), currency: demo.usd.code },
                    service: Some(service.into()),
                    at: None,
                    metadata: None,
                    refuse_if_insufficient: false,
                })));
            }
        }
        let results = demo.engine.submit(items).map_err(crate::Error::from)?;
        if let Some(Err(r)) = results.iter().find(|r| r.is_err()) {
            return Err(crate::Error::Failed(format!("a demo charge was refused: {r}")));
        }
    }
    // A real-time session: hold, then capture part of it.
    let client_id = demo.id("hold");
    let money = demo.money("2");
    let expires_at = demo.clock.now_plus(HOUR_US);
    if let Outcome::HoldPlaced { hold, .. } = demo.run(Command::Hold {
        client_id,
        account: wallets[0].2,
        money,
        expires_at,
        service: Some("voice".into()),
        metadata: None,
    })? {
        let client_id = demo.id("capture");
        demo.run(Command::Capture { client_id, hold, amount: Some(demo.usd.parse("1.2").expect("valid")) })?;
    }
    demo.engine.reader().outbox_count().map_err(crate::Error::from)
}

trait NowPlus {
    fn now_plus(&self, us: i64) -> Timestamp;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, us: i64) -> Timestamp {
        purse_engine::Clock::now(self).plus_micros(us)
    }
}

fn report(demo: &Demo, wallets: &[(&str, PartyId, AccountId)], events: u64) -> crate::error::Result<String> {
    let reader = demo.engine.reader();
    let now = purse_engine::Clock::now(demo.clock.as_ref());
    let mut out = String::from("Purse demo: one simulated day of usage\n\n");
    out.push_str(&format!(
        "{:<22} {:>12} {:>12} {:>12} {:>12}\n",
        "customer", "balance", "reserved", "credit limit", "available"
    ));
    for (name, _, wallet) in wallets {
        let a = reader
            .account(*wallet)
            .map_err(crate::Error::from)?
            .ok_or_else(|| crate::Error::Failed("wallet missing".into()))?;
        let available = purse_core::ledger::available(&a, None, now);
        let f = |x: i64| demo.usd.format(Amount(x));
        out.push_str(&format!(
            "{:<22} {:>12} {:>12} {:>12} {:>12}\n",
            name,
            f(a.balance.0),
            f(a.reserved.0),
            f(a.credit_limit.0),
            f(available.clamp(i64::MIN.into(), i64::MAX.into()) as i64),
        ));
    }
    let audit = reader.audit().map_err(crate::Error::from)?;
    out.push_str(&format!(
        "\n{} transfers posted; {} threshold events in the outbox; books {}.\n",
        audit.transfer_count,
        events,
        if audit.is_consistent() { "balance (every currency sums to zero)" } else { "DO NOT BALANCE" }
    ));
    Ok(out)
}

/// The demo's rate decks: what Northwind sells voice for, and (cheaper) what it pays.
const DEMO_DECK: &str = "prefix,description,price,connection_fee,increments
*,Rest of world,0.25,0,60/60
1,United States,0.012,0,6/6
44,United Kingdom,0.018,0,1/1
447,United Kingdom mobile,0.045,0.01,1/1
49,Germany,0.02,0,1/1
4915,Germany mobile,0.06,0,1/1
971,United Arab Emirates,0.11,0,60/60
";

/// Rating on a served demo, through its API: Northwind's voice plan (its customers' default,
/// Acme's own) and the operator's wholesale plan Northwind pays by; a dozen rated calls for
/// Acme and one call still in progress.
pub fn seed_calls(base: &str, operator_key: &str, seeded: &Seeded) -> crate::error::Result<()> {
    let mut api = crate::client::Client::new(base, Some(operator_key.to_owned()))?;
    let mut n = 0;
    let mut call = |method: &str, path: &str, body: serde_json::Value| -> crate::error::Result<serde_json::Value> {
        n += 1;
        let r = api.send(method, path, &body, &format!("demo-rating-{n}"))?;
        if r.status >= 300 {
            return Err(crate::Error::Failed(format!("{path}: {} {}", r.status, String::from_utf8_lossy(&r.body))));
        }
        Ok(r.json())
    };
    let id = |v: serde_json::Value| v["id"].as_u64().unwrap_or(0);
    let northwind = seeded.resellers[0].0;
    let retail = id(call(
        "POST",
        "/v1/rate-plans",
        serde_json::json!({ "name": "Northwind Voice", "currency": "USD", "owner": northwind }),
    )?);
    call(
        "POST",
        &format!("/v1/rate-plans/{retail}/import"),
        serde_json::json!({ "csv": DEMO_DECK, "service": "voice" }),
    )?;
    let wholesale =
        id(call("POST", "/v1/rate-plans", serde_json::json!({ "name": "Wholesale Voice", "currency": "USD" }))?);
    let cheaper = DEMO_DECK.replace("0.018", "0.009").replace("0.045", "0.021").replace("0.06,", "0.03,");
    call(
        "POST",
        &format!("/v1/rate-plans/{wholesale}/import"),
        serde_json::json!({ "csv": cheaper, "service": "voice" }),
    )?;
    call(
        "PUT",
        &format!("/v1/resellers/{northwind}/rate-plans"),
        serde_json::json!({ "pays": wholesale, "customers_default": retail }),
    )?;
    let (_, acme, wallet) = &seeded.customers[0];
    call("PUT", &format!("/v1/customers/{}/rate-plan", acme.0), serde_json::json!({ "plan": retail }))?;
    let destinations = ["447700900123", "442079460000", "12125550100", "4915112345678", "97145550000", "33142680000"];
    for (i, d) in destinations.iter().cycle().take(12).enumerate() {
        let body = serde_json::json!({
            "client_id": format!("demo-call-{i}"), "account": wallet.0, "service": "voice",
            "destination": d, "quantity": 30 + (i as u64 * 47) % 400,
        });
        call("POST", "/v1/usage", body)?;
    }
    let s = call(
        "POST",
        "/v1/sessions",
        serde_json::json!({ "account": wallet.0, "service": "voice", "destination": "447700900456", "ttl_seconds": 86_400 }),
    )?;
    call("POST", &format!("/v1/sessions/{}/update", id(s)), serde_json::json!({ "sequence": 1, "used": 42 }))?;
    Ok(())
}
