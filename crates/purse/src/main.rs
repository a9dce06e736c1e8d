//! The `purse` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use purse::bench::{BenchOptions, IdStyle};
use purse::soak::SoakOptions;
use purse::Config;

// glibc's allocator spent about a tenth of the writer's time in malloc/free churn
// (BENCHMARKS.md); mimalloc is measurably faster for the engine's small, short-lived values.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "purse", version, about = "Purse: balance and credit control for metered usage")]
struct Cli {
    /// Configuration file (default: ./purse.toml when it exists).
    #[arg(long, global = true, env = "PURSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Ids {
    Time,
    Random,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints the authorization policy as a Markdown table: who may do what.
    Policy,
    /// Creates or upgrades the database schema.
    Migrate {
        /// sqlite://PATH or postgres://USER@HOST/DB (default: sqlite://purse.db).
        #[arg(long)]
        database: Option<String>,
    },
    /// Seeds a fresh SQLite database (resellers, prepaid and postpaid customers, a simulated
    /// day of usage), prints API keys for each role, and serves it with usage flowing.
    Demo {
        /// The SQLite file to (re)create.
        #[arg(long, default_value = "purse-demo.db")]
        path: String,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Only seed and print the balances; do not serve.
        #[arg(long)]
        once: bool,
    },
    /// Ingests charges through the engine and reports charges/s and latency.
    Bench {
        #[arg(long)]
        database: Option<String>,
        #[arg(long, default_value_t = 100_000)]
        accounts: u64,
        #[arg(long, default_value_t = 1_000_000)]
        charges: u64,
        /// Charges per request.
        #[arg(long, default_value_t = 8192)]
        batch: usize,
        /// Threads submitting requests at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, value_enum, default_value = "time")]
        ids: Ids,
        /// Percentage of charges on one hot account.
        #[arg(long, default_value_t = 0)]
        hot_percent: u64,
        /// Credit grants in force on every account (priorities 1.., one scoped to a service
        /// the charges do not have): each charge is drawn from them.
        #[arg(long, default_value_t = 0)]
        grants: u32,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Drive a running server's API instead of an engine in this process:
        /// http://HOST:PORT (then --batch 1 posts single charges, more the batch endpoint,
        /// and --concurrency is the number of connections).
        #[arg(long)]
        target: Option<String>,
        /// An operator API key (read-write) for --target.
        #[arg(long, env = "PURSE_API_KEY")]
        key: Option<String>,
        /// With --target: run this many complete calls (authorize, two updates, terminate)
        /// over --concurrency connections instead of charges, after importing a deck.
        #[arg(long)]
        calls: Option<u64>,
        /// Prefixes in the deck of --calls.
        #[arg(long, default_value_t = 100_000)]
        deck: usize,
    },
    /// Serves the HTTP API until SIGTERM or Ctrl-C (then finishes in-flight work).
    Serve {
        #[arg(long)]
        database: Option<String>,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Issues, lists and revokes API keys, directly on the database.
    Keys {
        #[arg(long, global = true)]
        database: Option<String>,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Creates portal users directly on the database (the first operator's login).
    Users {
        #[arg(long, global = true)]
        database: Option<String>,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Customers of a running server: list, create.
    Customers {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: CustomerAction,
    },
    /// Accounts of a running server: open, show, list a party's.
    Accounts {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Adjustments of a running server: raise or lower a balance by category, list a customer's.
    Adjustments {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: AdjustmentAction,
    },
    /// Refunds of a running server: give back all or part of a payment, list a customer's.
    Refunds {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: RefundAction,
    },
    /// Credit notes of a running server: credit an invoice, list a customer's.
    CreditNotes {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: CreditNoteAction,
    },
    /// Taxes of a running server: rates, and a customer's rate, tax id and address.
    Taxes {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: TaxAction,
    },
    /// Collections of a running server: dunning policies, suspending and lifting customers.
    Collections {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: CollectionAction,
    },
    /// Credit grants of a running server: give, list a customer's, void.
    Grants {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: GrantAction,
    },
    /// Posts one charge.
    Charge {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        account: u64,
        /// A decimal string at the currency's scale, e.g. 0.0125.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        service: Option<String>,
        /// Your id for the charge (a retry with it never posts twice); a new UUID when absent.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Posts a CSV file of usage: priced charges (header: client_id,account,amount,currency
    /// [,service][,at]) or call-detail records rated by each customer's plan (header:
    /// client_id,account,service,quantity[,destination][,at]).
    Import {
        #[command(flatten)]
        remote: RemoteArgs,
        file: PathBuf,
    },
    /// Records a payment received by hand.
    Pay {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        account: u64,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        currency: String,
        /// card, cash, bank_transfer or cheque.
        #[arg(long, default_value = "bank_transfer")]
        method: String,
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Every balance with totals per currency (operator keys).
    Balances {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// An account's journal, newest first.
    Journal {
        #[command(flatten)]
        remote: RemoteArgs,
        account: u64,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this transfer id (the `more:` hint of the previous page).
        #[arg(long)]
        before: Option<u64>,
        /// Only these kinds, comma-separated (charge, payment, ...).
        #[arg(long)]
        kind: Option<String>,
    },
    /// A load generator printing every acknowledged command (used by the crash tests).
    #[command(hide = true)]
    Soak {
        #[arg(long)]
        database: Option<String>,
        #[arg(long, default_value_t = 50)]
        accounts: u64,
        #[arg(long, default_value = "soak")]
        accounts_prefix: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = u64::MAX)]
        commands: u64,
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        #[arg(long)]
        checked: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 100_000)]
        funding: i64,
    },
}

/// Where the server is and which key to use.
#[derive(clap::Args)]
struct RemoteArgs {
    /// Server base URL (else PURSE_URL, `url` in the configuration, http://127.0.0.1:8080).
    #[arg(long, global = true)]
    url: Option<String>,
    /// API key (else PURSE_API_KEY or `api_key` in the configuration).
    #[arg(long, global = true)]
    key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum CustomerAction {
    List {
        /// Only this reseller's customers (operator keys).
        #[arg(long)]
        reseller: Option<u64>,
    },
    Create {
        #[arg(long)]
        name: String,
        /// prepaid or postpaid.
        #[arg(long)]
        billing: String,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        reseller: Option<u64>,
        #[arg(long)]
        credit_limit: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum GrantAction {
    /// Gives a customer credit that is not cash, drawn before its own money.
    Give {
        #[arg(long)]
        customer: u64,
        /// In the customer's currency, e.g. 50.00.
        #[arg(long)]
        amount: String,
        /// promotional, purchased (with --paid-by), commitment, goodwill, or a word of yours.
        #[arg(long, default_value = "promotional")]
        kind: String,
        /// 1 is drawn first.
        #[arg(long)]
        priority: Option<u32>,
        /// RFC 3339; never when absent.
        #[arg(long)]
        expires_at: Option<String>,
        /// The services it may pay for, comma-separated; any when absent.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// card, cash, bank_transfer or cheque: how purchased credit was paid.
        #[arg(long)]
        paid_by: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        client_id: Option<String>,
    },
    /// A customer's grants with what remains.
    List {
        customer: u64,
        /// Closed grants too.
        #[arg(long)]
        all: bool,
    },
    /// Takes back what is left of a grant.
    Void {
        id: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AdjustmentAction {
    /// Raises (credit) or lowers (debit) an account's balance, with a category and a reason.
    Make {
        #[arg(long)]
        account: u64,
        /// credit (raise) or debit (lower).
        #[arg(long)]
        direction: String,
        /// goodwill, correction or write_off.
        #[arg(long, default_value = "correction")]
        category: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        client_id: Option<String>,
    },
    /// A customer's adjustments, newest first.
    List { customer: u64 },
}

#[derive(Subcommand)]
enum RefundAction {
    /// Refunds all or part of the payment of a receipt voucher (a card payment through Stripe).
    Create {
        #[arg(long)]
        receipt: u64,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: String,
    },
    /// A customer's refunds, newest first.
    List { customer: u64 },
}

#[derive(Subcommand)]
enum CreditNoteAction {
    /// Credits an issued usage invoice: an amount, or some of its lines whole.
    Create {
        #[arg(long)]
        invoice: u64,
        #[arg(long)]
        amount: Option<String>,
        /// Services of the invoice's lines, e.g. voice,sms.
        #[arg(long, value_delimiter = ',')]
        lines: Vec<String>,
        /// invoice (off what it asks), unallocated (credit for invoices due, now and later),
        /// balance, or refund (through the payment --receipt names).
        #[arg(long, default_value = "invoice")]
        apply: String,
        /// With --apply refund: the receipt voucher (id) of the payment to refund through.
        #[arg(long)]
        receipt: Option<u64>,
        #[arg(long)]
        reason: String,
    },
    /// A customer's credit notes, newest first.
    List { customer: u64 },
}

#[derive(Subcommand)]
enum TaxAction {
    /// The tax rates.
    Rates,
    /// Creates a tax rate: a percentage added to the prices, or included with --inclusive.
    CreateRate {
        #[arg(long)]
        name: String,
        #[arg(long)]
        percent: String,
        #[arg(long)]
        inclusive: bool,
    },
    /// Sets a customer's rate (none without --rate), when it is taxed (--taxed-at invoice, the
    /// default, or top_up), tax id and billing address.
    Set {
        customer: u64,
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long, default_value = "invoice")]
        taxed_at: String,
        #[arg(long, default_value = "")]
        tax_id: String,
        #[arg(long, default_value = "")]
        address: String,
    },
}

#[derive(Subcommand)]
enum CollectionAction {
    /// The dunning policies.
    Policies,
    /// Sets the policy of an owner: operator, reseller:{id} or class:{id}.
    SetPolicy {
        #[arg(long)]
        owner: String,
        /// Days from an invoice's issue to its due date.
        #[arg(long)]
        terms: Option<i64>,
        /// Days after the due date reminders go, e.g. 3,7,14.
        #[arg(long, value_delimiter = ',')]
        reminders: Vec<i64>,
        /// A reminder's own text, once per reminder in order ({customer}, {invoice},
        /// {amount_due}, {due_on}, {days_overdue}, {suspend_after} are filled in).
        #[arg(long = "reminder-text")]
        reminder_texts: Vec<String>,
        /// Days overdue after which the customer is suspended.
        #[arg(long)]
        suspend_after: Option<i64>,
        /// A prepaid balance below which the customer is suspended, e.g. -50.00.
        #[arg(long, allow_hyphen_values = true)]
        suspend_below: Option<String>,
    },
    /// Whether a customer is suspended, and why.
    Status { customer: u64 },
    /// Suspends a customer by hand.
    Suspend {
        customer: u64,
        #[arg(long)]
        reason: String,
    },
    /// Lifts a customer's suspension.
    Lift {
        customer: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    /// Opens a subscriber account (subscriber_debit, subscriber_credit) or a master wallet.
    Open {
        #[arg(long)]
        party: u64,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        credit_limit: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
    },
    Show {
        id: u64,
    },
    List {
        #[arg(long)]
        party: u64,
    },
}

fn remote(config: &Config, args: &RemoteArgs) -> purse::error::Result<purse::remote::Remote> {
    let url = args.url.clone().or_else(|| config.url.clone()).unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let key = args
        .key
        .clone()
        .or_else(|| config.api_key.clone())
        .ok_or_else(|| purse::Error::Usage("--key: an API key is needed (or PURSE_API_KEY)".into()))?;
    purse::remote::Remote::new(&url, &key, args.json)
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Operator,
    Reseller,
    Customer,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Read,
    ReadWrite,
}

#[derive(Subcommand)]
enum KeyAction {
    /// Issues a key and prints it once; only its hash is stored.
    Create {
        #[command(flatten)]
        grant: Grant,
        #[arg(long)]
        name: String,
    },
    /// Lists keys by prefix (the keys themselves are not stored).
    List,
    /// Revokes a key at once.
    Revoke { id: u64 },
}

/// What a new API key or portal user may do: its role, its party, its scope.
#[derive(Args)]
struct Grant {
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The reseller or customer it belongs to (not for operators).
    #[arg(long)]
    party: Option<u64>,
    #[arg(long, value_enum, default_value = "read-write")]
    scope: ScopeArg,
}

impl Grant {
    /// The role and scope to store, once the party is checked to fit the role.
    fn resolve(&self, opened: &purse::Opened) -> purse::error::Result<(purse_core::Role, purse_core::Scope)> {
        let name = match self.role {
            RoleArg::Operator => purse::keys::RoleName::Operator,
            RoleArg::Reseller => purse::keys::RoleName::Reseller,
            RoleArg::Customer => purse::keys::RoleName::Customer,
        };
        let scope = match self.scope {
            ScopeArg::Read => purse_core::Scope::Read,
            ScopeArg::ReadWrite => purse_core::Scope::ReadWrite,
        };
        Ok((purse::keys::role_for(opened, name, self.party)?, scope))
    }
}

#[derive(Subcommand)]
enum UserAction {
    /// Creates a user with a random password and prints it once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        grant: Grant,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    // Log lines are written a moment after they are made: none is left behind.
    purse_app::log::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("purse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> purse::error::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Cmd::Policy => print!("{}", purse_app::policy::markdown()),
        Cmd::Migrate { database } => {
            let url = config.database_url(database.as_deref());
            purse::open_store(&url).map_err(purse::Error::from)?;
            println!("migrated {url}");
        }
        Cmd::Demo { path, once: true, .. } => print!("{}", purse::demo::run(&path)?),
        Cmd::Demo { path, listen, once: false } => {
            let listen = config.listen(listen.as_deref());
            purse::demo::serve(
                &path,
                &listen,
                config.web_settings()?,
                config.alert_config(&listen)?,
                config.payment_config()?,
            )?
        }
        Cmd::Bench {
            database,
            accounts,
            charges,
            batch,
            concurrency,
            ids,
            hot_percent,
            grants,
            json,
            target,
            key,
            calls,
            deck,
        } => {
            let target = match (target, key.or(config.api_key.clone())) {
                (Some(url), Some(key)) => Some((url, key)),
                (Some(_), None) => return Err(purse::Error::Usage("--key: --target needs an operator API key".into())),
                (None, _) => None,
            };
            if let Some(calls) = calls {
                let Some((url, key)) = &target else {
                    return Err(purse::Error::Usage("--calls: needs --target and --key".into()));
                };
                let r = purse::bench::run_calls(url, key, calls, concurrency, deck)?;
                println!(
                    "{}",
                    serde_json::json!({
                        "deck_prefixes": r.deck_prefixes, "import_seconds": r.import_seconds,
                        "lookups_per_s": r.lookups_per_s.round(), "calls": r.calls, "seconds": r.seconds,
                        "calls_per_s": r.calls_per_s.round(), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                    })
                );
                return Ok(());
            }
            let options = BenchOptions {
                database_url: config.database_url(database.as_deref()),
                accounts,
                charges,
                batch,
                concurrency,
                ids: match ids {
                    Ids::Time => IdStyle::Time,
                    Ids::Random => IdStyle::Random,
                },
                hot_percent,
                grants,
                engine: config.engine_config()?,
                target,
            };
            let report = purse::bench::run(&options)?;
            if json {
                println!("{}", report.to_json(&options));
            } else {
                println!(
                    "{} charges in {:.2} s: {:.0} charges/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; peak RSS {:.0} MiB (setup {:.1} s)",
                    report.charges, report.seconds, report.charges_per_s, report.p50_ms, report.p99_ms,
                    report.max_ms, report.peak_rss_mib, report.setup_seconds
                );
            }
        }
        Cmd::Serve { database, listen } => {
            let opened = purse::open_store(&config.database_url(database.as_deref())).map_err(purse::Error::from)?;
            let listen = config.listen(listen.as_deref());
            let options = purse::serve::ServeOptions {
                alerts: Some(config.alert_config(&listen)?),
                payments: config.payment_config()?,
                listen,
                engine: config.engine_config()?,
                web: config.web_settings()?,
                read_timeout: config.read_timeout()?,
            };
            purse::serve::run(opened, config.clock()?, options)?;
        }
        Cmd::Keys { database, action } => {
            let opened = purse::open_store(&config.database_url(database.as_deref())).map_err(purse::Error::from)?;
            let now = purse_engine::Clock::now(&purse_engine::SystemClock);
            match action {
                KeyAction::Create { grant, name } => {
                    let (role, scope) = grant.resolve(&opened)?;
                    let (id, secret) = purse::keys::create(&opened, &name, role, scope, now)?;
                    println!("key {id}: {secret}");
                    eprintln!("Store it now: Purse keeps only its hash and cannot show it again.");
                }
                KeyAction::List => print!("{}", purse::keys::table(&opened.access.keys().map_err(purse::Error::from)?)),
                KeyAction::Revoke { id } => {
                    if !purse::keys::revoke(&opened, id, now)? {
                        return Err(purse::Error::Usage(format!("key {id}: no such active key")));
                    }
                    println!("key {id} revoked");
                }
            }
        }
        Cmd::Users { database, action: UserAction::Create { email, name, grant } } => {
            let opened = purse::open_store(&config.database_url(database.as_deref())).map_err(purse::Error::from)?;
            let now = purse_engine::Clock::now(&purse_engine::SystemClock);
            let (role, scope) = grant.resolve(&opened)?;
            let password = purse::keys::create_user(&opened, &email, &name, role, scope, now)?;
            println!("user {email}: password {password}");
            eprintln!("Store it now: Purse keeps only an argon2id hash. Change it under Settings → Change password.");
        }
        Cmd::Customers { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                CustomerAction::List { reseller } => {
                    let path = reseller.map_or("/v1/customers?limit=500".to_owned(), |id| {
                        format!("/v1/customers?limit=500&reseller={id}")
                    });
                    let v = r.get(&path)?;
                    r.show(&v, purse::remote::customers_table)
                }
                CustomerAction::Create { name, billing, currency, reseller, credit_limit, client_id } => {
                    let client_id = client_id.unwrap_or_else(|| r.fresh_id());
                    let body = serde_json::json!({ "client_id": client_id, "name": name, "billing": billing, "currency": currency, "reseller": reseller, "credit_limit": credit_limit });
                    let v = r.post("/v1/customers", &body)?;
                    r.show(&v, |v| format!("customer {} with wallet {}\n", v["id"], v["wallet"]))
                }
            };
            print!("{out}");
        }
        Cmd::Accounts { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                AccountAction::Open { party, kind, currency, credit_limit, client_id } => {
                    let client_id = client_id.unwrap_or_else(|| r.fresh_id());
                    let mut body =
                        serde_json::json!({ "client_id": client_id, "party": party, "kind": kind.replace('-', "_") });
                    if let Some(c) = currency {
                        body["currency"] = c.into();
                    }
                    if let Some(l) = credit_limit {
                        body["credit_limit"] = l.into();
                    }
                    let v = r.post("/v1/accounts", &body)?;
                    r.show(&v, |v| format!("account {}\n", v["id"]))
                }
                AccountAction::Show { id } => {
                    let v = r.get(&format!("/v1/accounts/{id}"))?;
                    r.show(&v, purse::remote::accounts_table)
                }
                AccountAction::List { party } => {
                    let v = r.get(&format!("/v1/accounts?party={party}"))?;
                    r.show(&v, purse::remote::accounts_table)
                }
            };
            print!("{out}");
        }
        Cmd::Adjustments { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                AdjustmentAction::Make { account, direction, category, amount, currency, reason, client_id } => {
                    let client_id = client_id.unwrap_or_else(|| r.fresh_id());
                    let body = serde_json::json!({
                        "client_id": client_id, "account": account, "direction": direction, "category": category,
                        "amount": amount, "currency": currency, "reason": reason,
                    });
                    let v = r.post("/v1/adjustments", &body)?;
                    r.show(&v, purse::remote::posted_line)
                }
                AdjustmentAction::List { customer } => {
                    let v = r.get(&format!("/v1/adjustments?customer={customer}"))?;
                    r.show(&v, purse::remote::adjustments_table)
                }
            };
            print!("{out}");
        }
        Cmd::Refunds { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                RefundAction::Create { receipt, amount, reason } => {
                    let body = serde_json::json!({ "receipt": receipt, "amount": amount, "reason": reason });
                    let v = r.post("/v1/refunds", &body)?;
                    r.show(&v, |v| {
                        format!(
                            "refund {} of {} {}: {}\n",
                            v["number"].as_str().unwrap_or("-"),
                            v["amount"].as_str().unwrap_or("?"),
                            v["currency"].as_str().unwrap_or(""),
                            v["status"].as_str().unwrap_or("?")
                        )
                    })
                }
                RefundAction::List { customer } => {
                    let v = r.get(&format!("/v1/refunds?customer={customer}"))?;
                    r.show(&v, purse::remote::refunds_table)
                }
            };
            print!("{out}");
        }
        Cmd::CreditNotes { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                CreditNoteAction::Create { invoice, amount, lines, apply, receipt, reason } => {
                    let mut body = serde_json::json!({ "invoice": invoice, "apply": apply, "reason": reason });
                    if let Some(r) = receipt {
                        body["receipt"] = serde_json::json!(r);
                    }
                    if let Some(a) = amount {
                        body["amount"] = serde_json::json!(a);
                    }
                    if !lines.is_empty() {
                        body["lines"] = serde_json::json!(lines);
                    }
                    let v = r.post("/v1/credit-notes", &body)?;
                    r.show(&v, |v| {
                        format!(
                            "credit note {} of {} {}\n",
                            v["number"].as_str().unwrap_or("?"),
                            v["amount"].as_str().unwrap_or("?"),
                            v["currency"].as_str().unwrap_or("")
                        )
                    })
                }
                CreditNoteAction::List { customer } => {
                    let v = r.get(&format!("/v1/credit-notes?customer={customer}"))?;
                    r.show(&v, purse::remote::credit_notes_table)
                }
            };
            print!("{out}");
        }
        Cmd::Taxes { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                TaxAction::Rates => {
                    let v = r.get("/v1/tax-rates")?;
                    r.show(&v, purse::remote::tax_rates_table)
                }
                TaxAction::CreateRate { name, percent, inclusive } => {
                    let body = serde_json::json!({ "name": name, "percent": percent, "inclusive": inclusive });
                    let v = r.post("/v1/tax-rates", &body)?;
                    r.show(&v, |v| format!("tax rate {} ({}%)\n", v["id"], v["percent"].as_str().unwrap_or("?")))
                }
                TaxAction::Set { customer, rate, taxed_at, tax_id, address } => {
                    let body = serde_json::json!({ "tax_rate": rate, "taxed_at": taxed_at, "tax_id": tax_id, "address": address });
                    let v = r.send("PUT", &format!("/v1/customers/{customer}/tax-settings"), &body)?;
                    r.show(&v, |v| {
                        let rate = v["tax_rate"]["name"].as_str().unwrap_or("no rate");
                        let at = if v["taxed_at"] == "top_up" { "taxed at top-up" } else { "taxed on invoices" };
                        format!(
                            "customer {}: {rate}, {at}, tax id {}\n",
                            v["customer"],
                            v["tax_id"].as_str().unwrap_or("")
                        )
                    })
                }
            };
            print!("{out}");
        }
        Cmd::Collections { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                CollectionAction::Policies => {
                    let v = r.get("/v1/dunning-policies")?;
                    r.show(&v, purse::remote::policies_table)
                }
                CollectionAction::SetPolicy {
                    owner,
                    terms,
                    reminders,
                    reminder_texts,
                    suspend_after,
                    suspend_below,
                } => {
                    let body = serde_json::json!({
                        "owner": owner, "payment_terms_days": terms, "reminder_days": reminders,
                        "reminder_texts": reminder_texts,
                        "suspend_after_days": suspend_after, "suspend_below": suspend_below,
                    });
                    let v = r.send("PUT", "/v1/dunning-policies", &body)?;
                    r.show(&v, |v| format!("policy of {} saved\n", v["owner"].as_str().unwrap_or("?")))
                }
                CollectionAction::Status { customer } => {
                    let v = r.get(&format!("/v1/customers/{customer}/suspension"))?;
                    r.show(&v, purse::remote::suspension_line)
                }
                CollectionAction::Suspend { customer, reason } => {
                    let body = serde_json::json!({ "suspended": true, "reason": reason });
                    let v = r.send("PUT", &format!("/v1/customers/{customer}/suspension"), &body)?;
                    r.show(&v, purse::remote::suspension_line)
                }
                CollectionAction::Lift { customer, reason } => {
                    let body = serde_json::json!({ "suspended": false, "reason": reason });
                    let v = r.send("PUT", &format!("/v1/customers/{customer}/suspension"), &body)?;
                    r.show(&v, purse::remote::suspension_line)
                }
            };
            print!("{out}");
        }
        Cmd::Grants { remote: args, action } => {
            let mut r = remote(&config, &args)?;
            let out = match action {
                GrantAction::Give {
                    customer,
                    amount,
                    kind,
                    priority,
                    expires_at,
                    scope,
                    paid_by,
                    reason,
                    client_id,
                } => {
                    let client_id = client_id.unwrap_or_else(|| r.fresh_id());
                    let body = serde_json::json!({
                        "client_id": client_id, "customer": customer, "amount": amount, "kind": kind,
                        "priority": priority, "expires_at": expires_at, "scope": scope, "paid_by": paid_by,
                        "reason": reason,
                    });
                    let v = r.post("/v1/grants", &body)?;
                    r.show(&v, |v| {
                        format!(
                            "grant {} of {} {}\n",
                            v["id"],
                            v["amount"].as_str().unwrap_or("?"),
                            v["currency"].as_str().unwrap_or("")
                        )
                    })
                }
                GrantAction::List { customer, all } => {
                    let state = if all { "all" } else { "open" };
                    let v = r.get(&format!("/v1/grants?customer={customer}&state={state}"))?;
                    r.show(&v, purse::remote::grants_table)
                }
                GrantAction::Void { id, reason } => {
                    let v = r.post(&format!("/v1/grants/{id}/void"), &serde_json::json!({ "reason": reason }))?;
                    r.show(&v, |v| format!("grant {} voided\n", v["id"]))
                }
            };
            print!("{out}");
        }
        Cmd::Charge { remote: args, account, amount, currency, service, client_id } => {
            let mut r = remote(&config, &args)?;
            let client_id = client_id.unwrap_or_else(|| r.fresh_id());
            let body = serde_json::json!({ "client_id": client_id, "account": account, "amount": amount, "currency": currency, "service": service });
            let v = r.post("/v1/charges", &body)?;
            print!("{}", r.show(&v, purse::remote::posted_line));
        }
        Cmd::Import { remote: args, file } => {
            let mut r = remote(&config, &args)?;
            let csv =
                std::fs::read_to_string(&file).map_err(|e| purse::Error::Usage(format!("{}: {e}", file.display())))?;
            print!("{}", purse::remote::import(&mut r, &csv)?);
        }
        Cmd::Pay { remote: args, account, amount, currency, method, client_id } => {
            let mut r = remote(&config, &args)?;
            let client_id = client_id.unwrap_or_else(|| r.fresh_id());
            let body = serde_json::json!({ "client_id": client_id, "account": account, "amount": amount, "currency": currency, "method": method });
            let v = r.post("/v1/payments", &body)?;
            print!("{}", r.show(&v, purse::remote::posted_line));
        }
        Cmd::Balances { remote: args } => {
            let mut r = remote(&config, &args)?;
            let v = r.get("/v1/balances")?;
            print!("{}", r.show(&v, purse::remote::balances_table));
        }
        Cmd::Journal { remote: args, account, limit, before, kind } => {
            let mut r = remote(&config, &args)?;
            let mut path = format!("/v1/accounts/{account}/journal?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            if let Some(k) = kind {
                path.push_str(&format!("&kind={k}"));
            }
            let v = r.get(&path)?;
            print!("{}", r.show(&v, purse::remote::journal_table));
        }
        Cmd::Soak { database, accounts, accounts_prefix, prefix, commands, seconds, checked, seed, funding } => {
            let options = SoakOptions {
                database_url: config.database_url(database.as_deref()),
                accounts,
                accounts_prefix,
                prefix,
                commands,
                seconds,
                checked,
                seed,
                funding,
            };
            purse::soak::run(&options)?;
        }
    }
    Ok(())
}
