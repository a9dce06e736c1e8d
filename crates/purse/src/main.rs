//! The `purse` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The reseller or customer the key belongs to (not for operator keys).
        #[arg(long)]
        party: Option<u64>,
        #[arg(long, value_enum, default_value = "read-write")]
        scope: ScopeArg,
        #[arg(long)]
        name: String,
    },
    /// Lists keys by prefix (the keys themselves are not stored).
    List,
    /// Revokes a key at once.
    Revoke { id: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("purse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Cmd::Migrate { database } => {
            let url = config.database_url(database.as_deref());
            purse::open_store(&url).map_err(|e| e.to_string())?;
            println!("migrated {url}");
        }
        Cmd::Demo { path, once: true, .. } => print!("{}", purse::demo::run(&path)?),
        Cmd::Demo { path, listen, once: false } => purse::demo::serve(&path, &config.listen(listen.as_deref()), config.api_settings())?,
        Cmd::Bench { database, accounts, charges, batch, concurrency, ids, hot_percent, json, target, key } => {
            let target = match (target, key.or(config.api_key.clone())) {
                (Some(url), Some(key)) => Some((url, key)),
                (Some(_), None) => return Err("--key: --target needs an operator API key".into()),
                (None, _) => None,
            };
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
            let opened = purse::open_store(&config.database_url(database.as_deref())).map_err(|e| e.to_string())?;
            let options = purse::serve::ServeOptions {
                listen: config.listen(listen.as_deref()),
                engine: config.engine_config()?,
                api: config.api_settings(),
            };
            purse::serve::run(opened, options)?;
        }
        Cmd::Keys { database, action } => {
            let opened = purse::open_store(&config.database_url(database.as_deref())).map_err(|e| e.to_string())?;
            let now = purse_engine::Clock::now(&purse_engine::SystemClock);
            match action {
                KeyAction::Create { role, party, scope, name } => {
                    let role = match role {
                        RoleArg::Operator => purse::keys::RoleName::Operator,
                        RoleArg::Reseller => purse::keys::RoleName::Reseller,
                        RoleArg::Customer => purse::keys::RoleName::Customer,
                    };
                    let role = purse::keys::role_for(&opened, role, party)?;
                    let scope = match scope {
                        ScopeArg::Read => purse_core::Scope::Read,
                        ScopeArg::ReadWrite => purse_core::Scope::ReadWrite,
                    };
                    let (id, secret) = purse::keys::create(&opened, &name, role, scope, now)?;
                    println!("key {id}: {secret}");
                    eprintln!("Store it now: Purse keeps only its hash and cannot show it again.");
                }
                KeyAction::List => print!("{}", purse::keys::table(&opened.keys.keys().map_err(|e| e.to_string())?)),
                KeyAction::Revoke { id } => {
                    if !opened.keys.revoke_key(id, now).map_err(|e| e.to_string())? {
                        return Err(format!("key {id}: no such active key"));
                    }
                    println!("key {id} revoked");
                }
            }
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
