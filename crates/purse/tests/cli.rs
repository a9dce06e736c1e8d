//! The `purse` command as a user runs it: migrate, demo (the README's run command), bench,
//! and configuration from file and environment.

mod common;

use std::process::Command;

fn purse(args: &[&str]) -> (bool, String, String) {
    purse_with_env(args, &[])
}

fn purse_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!("purse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_purse"));
    command.args(args).current_dir(&dir).env_remove("PURSE_DATABASE_URL").env_remove("PURSE_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run purse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_creates_the_schema_on_both_backends_and_is_idempotent() {
    for url in [common::sqlite_url(), common::pg_url("cli_migrate")] {
        for _ in 0..2 {
            let (ok, stdout, stderr) = purse(&["migrate", "--database", &url]);
            assert!(ok, "{stderr}");
            assert!(stdout.starts_with("migrated"), "{stdout}");
        }
    }
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let (ok, _, stderr) = purse(&["migrate", "--database", "mysql://x"]);
    assert!(!ok);
    assert!(stderr.contains("must start with sqlite:// or postgres://"), "{stderr}");
}

#[test]
fn demo_seeds_simulates_a_day_and_balances_its_books() {
    let path = common::sqlite_url().trim_start_matches("sqlite://").to_owned();
    let (ok, stdout, stderr) = purse(&["demo", "--once", "--path", &path]);
    assert!(ok, "{stderr}");
    for name in ["Acme Call Center", "Globex SMS", "Initech Cloud", "Umbrella Voice"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(stdout.contains("books balance"), "{stdout}");
    // Thresholds were configured and crossed during the simulated day.
    assert!(!stdout.contains("; 0 threshold events"), "{stdout}");
    // Running it again starts from a fresh file.
    let (ok_again, again, _) = purse(&["demo", "--once", "--path", &path]);
    assert!(ok_again);
    assert_eq!(stdout, again, "the demo is deterministic");
}

#[test]
fn bench_reports_its_figures_as_json() {
    let url = common::sqlite_url();
    let (ok, stdout, stderr) = purse(&[
        "bench",
        "--database",
        &url,
        "--accounts",
        "20",
        "--charges",
        "500",
        "--batch",
        "50",
        "--concurrency",
        "2",
        "--ids",
        "random",
        "--hot-percent",
        "10",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    for field in ["charges_per_s", "p50_ms", "p99_ms", "peak_rss_mib"] {
        assert!(report[field].as_f64().is_some(), "{field} missing in {report}");
    }
    assert_eq!(report["charges"], 500);
    let reader = purse::open_store(&url).unwrap().reader;
    let audit = reader.audit().unwrap();
    assert!(audit.is_consistent());
    assert_eq!(audit.transfer_count, 500);
}

#[test]
fn bench_refuses_nonsense_options() {
    let (ok, _, stderr) = purse(&["bench", "--database", &common::sqlite_url(), "--hot-percent", "101"]);
    assert!(!ok);
    assert!(stderr.contains("--hot-percent"), "{stderr}");
}

#[test]
fn configuration_comes_from_the_file_then_the_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("purse-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let from_file = common::sqlite_url();
    let config = dir.join("purse.toml");
    std::fs::write(&config, format!("database_url = \"{from_file}\"\n[engine]\nbatch_size_max = 128\n")).unwrap();
    let config = config.to_str().unwrap();

    let (ok, stdout, _) = purse(&["migrate", "--config", config]);
    assert!(ok);
    assert_eq!(stdout.trim(), format!("migrated {from_file}"));

    let from_env = common::sqlite_url();
    let (ok, stdout, _) = purse_with_env(&["migrate", "--config", config], &[("PURSE_DATABASE_URL", &from_env)]);
    assert!(ok);
    assert_eq!(stdout.trim(), format!("migrated {from_env}"));

    let from_flag = common::sqlite_url();
    let (ok, stdout, _) = purse_with_env(
        &["migrate", "--config", config, "--database", &from_flag],
        &[("PURSE_DATABASE_URL", &from_env)],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), format!("migrated {from_flag}"));

    std::fs::write(dir.join("bad.toml"), "database_url = 5\n").unwrap();
    let (ok, _, stderr) = purse(&["migrate", "--config", dir.join("bad.toml").to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    let (ok, _, stderr) = purse_with_env(&["migrate", "--config", config], &[("PURSE_ENGINE_BATCH_SIZE_MAX", "many")]);
    assert!(!ok, "a malformed setting is refused, not ignored");
    assert!(stderr.contains("PURSE_ENGINE_BATCH_SIZE_MAX must be a whole number"), "{stderr}");
    // Issue 22: the writer's cache bound is a setting too; none at all is refused.
    let (ok, _, stderr) = purse_with_env(
        &["bench", "--config", config, "--accounts", "10", "--charges", "10"],
        &[("PURSE_ENGINE_CACHED_ACCOUNTS_MAX", "0")],
    );
    assert!(!ok, "a cache of no accounts is refused");
    assert!(stderr.contains("engine.cached_accounts_max must be at least 1"), "{stderr}");
}

#[test]
fn the_default_database_is_an_sqlite_file_in_the_working_directory() {
    let (ok, stdout, stderr) = purse(&["migrate"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "migrated sqlite://purse.db");
}

#[test]
fn keys_are_shown_once_listed_by_prefix_and_revoked() {
    let url = common::sqlite_url();
    let (ok, stdout, stderr) = purse(&["keys", "create", "--database", &url, "--role", "operator", "--name", "ops"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("cannot show it again"));
    let secret = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(purse_app::secrets::looks_like_key(&secret), "{stdout}");
    let (ok, listing, _) = purse(&["keys", "list", "--database", &url]);
    assert!(ok);
    assert!(listing.contains(&secret[..14]) && !listing.contains(&secret), "{listing}");
    assert!(listing.contains("operator") && listing.contains("active"));
    let (ok, stdout, _) = purse(&["keys", "revoke", "1", "--database", &url]);
    assert!(ok, "{stdout}");
    let (_, listing, _) = purse(&["keys", "list", "--database", &url]);
    assert!(listing.contains("revoked"));
    let (ok, _, stderr) = purse(&["keys", "revoke", "1", "--database", &url]);
    assert!(!ok && stderr.contains("no such active key"), "{stderr}");
}

#[test]
fn a_key_must_fit_its_party() {
    let url = common::sqlite_url();
    let cases: [(&[&str], &str); 3] = [
        (&["--role", "operator", "--party", "1"], "--party: an operator key belongs to no party"),
        (&["--role", "reseller"], "--party: a reseller or customer key needs"),
        (&["--role", "customer", "--party", "99"], "--party 99: no such party"),
    ];
    for (args, message) in cases {
        let mut all = vec!["keys", "create", "--database", &url, "--name", "k"];
        all.extend_from_slice(args);
        let (ok, _, stderr) = purse(&all);
        assert!(!ok && stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// Issue 22: `purse bench --target` whose load connections are refused after its set-up
/// (here a stand-in server that answers the set-up on one connection, then stops listening)
/// fails with the reason instead of waiting forever for connections that never open.
#[test]
fn issue_22_the_http_bench_fails_when_its_connections_are_refused() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        drop(listener); // every later connection is refused
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        // The currency, then the two customers.
        for answer in [r#"{"code":"USD"}"#, r#"{"id":1,"wallet":7}"#, r#"{"id":2,"wallet":8}"#] {
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            reader.by_ref().take(length).read_to_end(&mut Vec::new()).unwrap();
            write!(
                stream,
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
        }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_purse"))
        .args(["bench", "--target", &target, "--key", "purse_x", "--accounts", "2", "--charges", "10", "--batch", "1"])
        .args(["--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("purse bench still waits 30 s after its connections were refused");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    server.join().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}
