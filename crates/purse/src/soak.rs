//! `purse soak`: a load generator that prints one line per acknowledged command, flushed
//! as soon as the engine answered. The crash and multi-process tests read these lines to
//! know exactly what was acknowledged before a process was killed.
//!
//! Output lines (stdout): `posted CLIENT_ID KIND AMOUNT_UNITS` or `refused CLIENT_ID CODE`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use purse_core::{
    AccountId, Amount, ClientId, Command, CurrencyCode, Item, Money, NewCharge, Outcome, PaymentMethod, TransferKind,
};
use purse_engine::{EngineConfig, SystemClock};

use crate::bench::create_customers;
use crate::ids::Rng;

#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub database_url: String,
    /// Customers shared by every soak process with the same `accounts_prefix`.
    pub accounts: u64,
    pub accounts_prefix: String,
    /// Prefix of this process's client ids.
    pub prefix: String,
    pub commands: u64,
    pub seconds: u64,
    /// Charges refuse instead of overdrawing, and transfers are mixed in.
    pub checked: bool,
    pub seed: u64,
    /// Units each customer is funded with once.
    pub funding: i64,
}

const REQUEST_LEN_MAX: u64 = 32;

pub fn run(options: &SoakOptions) -> crate::error::Result<()> {
    let engine = crate::start_engine(&options.database_url, Arc::new(SystemClock), EngineConfig::default())
        .map_err(crate::Error::from)?;
    let usd = CurrencyCode::parse("USD").expect("valid");
    let wallets = create_customers(&engine, &options.accounts_prefix, options.accounts)?;
    let funding: Vec<Item> = wallets
        .iter()
        .enumerate()
        .map(|(k, w)| {
            Item::single(Command::Payment {
                client_id: ClientId::new(&format!("{}-funding-{k}", options.accounts_prefix)).expect("short"),
                account: *w,
                money: Money { amount: Amount(options.funding), currency: usd },
                method: PaymentMethod::BankTransfer,
                metadata: None,
            })
        })
        .collect();
    for chunk in funding.chunks(4096) {
        for result in engine.submit(chunk.to_vec()).map_err(crate::Error::from)? {
            if let Err(r) = result {
                return Err(crate::Error::Failed(format!(
                    "funding the soak customers was refused: {r} (same --accounts-prefix, other --funding?)"
                )));
            }
        }
    }
    let mut rng = Rng::new(options.seed);
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut n = 0;
    while n < options.commands && Instant::now() < deadline {
        let len = (1 + rng.below(REQUEST_LEN_MAX)).min(options.commands - n);
        let items: Vec<Item> = (0..len).map(|k| command(&mut rng, options, &wallets, n + k, usd)).collect();
        let ids: Vec<String> = items.iter().map(|i| client_id_of(&i.command)).collect();
        let results = engine.submit(items.clone()).map_err(crate::Error::from)?;
        let mut out = stdout.lock();
        for ((item, id), result) in items.iter().zip(&ids).zip(results) {
            let line = match result {
                Ok(Outcome::Posted { .. }) => {
                    format!("posted {id} {} {}", kind_of(&item.command), amount_of(&item.command))
                }
                Ok(other) => return Err(crate::Error::Failed(format!("unexpected outcome {other:?}"))),
                Err(r) => format!("refused {id} {}", r.code()),
            };
            writeln!(out, "{line}").map_err(crate::Error::from)?;
        }
        out.flush().map_err(crate::Error::from)?;
        n += len;
    }
    engine.shutdown();
    Ok(())
}

fn command(rng: &mut Rng, o: &SoakOptions, wallets: &[AccountId], n: u64, usd: CurrencyCode) -> Item {
    let client_id = ClientId::new(&format!("{}-{n}", o.prefix)).expect("short");
    let pick = |rng: &mut Rng| wallets[rng.below(wallets.len() as u64) as usize];
    let money = Money { amount: Amount(1 + rng.below(400) as i64), currency: usd };
    let command = if o.checked && wallets.len() > 1 && rng.chance(40) {
        let source = pick(rng);
        let mut target = pick(rng);
        while target == source {
            target = pick(rng);
        }
        Command::Transfer { client_id, source, target, money, kind: TransferKind::Transfer, metadata: None, note: None }
    } else {
        Command::Charge(NewCharge {
            client_id,
            account: pick(rng),
            money,
            service: Some("soak".into()),
            at: None,
            metadata: None,
            refuse_if_insufficient: o.checked,
        })
    };
    Item::single(command)
}

fn client_id_of(c: &Command) -> String {
    match c {
        Command::Charge(c) => c.client_id.as_str().to_owned(),
        Command::Transfer { client_id, .. } => client_id.as_str().to_owned(),
        _ => unreachable!("soak issues charges and transfers only"),
    }
}

fn kind_of(c: &Command) -> &'static str {
    match c {
        Command::Charge(_) => "charge",
        _ => "transfer",
    }
}

fn amount_of(c: &Command) -> i64 {
    match c {
        Command::Charge(c) => c.money.amount.0,
        Command::Transfer { money, .. } => money.amount.0,
        _ => 0,
    }
}
