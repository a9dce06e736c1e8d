//! Real processes for the tests that need them: `purse serve` on a port of its own
//! (restartable after a kill), the `purse` command, and a private PostgreSQL server the
//! test may restart, stop and start at will.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the `purse` command.
pub fn purse(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_purse")).args(args).output().expect("purse runs")
}

/// A new operator key on the database at `url`, made with the `purse` command.
pub fn operator_key(url: &str) -> String {
    let out = purse(&["keys", "create", "--database", url, "--role", "operator", "--name", "test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().split_whitespace().last().unwrap().to_owned()
}

/// A `purse serve` process on a port of its own, the same after a restart.
pub struct Served {
    pub url: String,
    pub listen: String,
    pub child: Option<Child>,
    /// The extra environment each start of the process gets.
    pub env: Vec<(String, String)>,
    /// What the process wrote to standard error, line by line.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    pub fn start(url: &str) -> Served {
        Served::start_with(url, &[])
    }

    /// With extra environment (configuration) for the process.
    pub fn start_with(url: &str, env: &[(&str, &str)]) -> Served {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut s = Served {
            url: url.to_owned(),
            // The kernel's choice, which the first start reports and every restart keeps: a
            // port picked free beforehand could be bound by another test's server first.
            listen: "127.0.0.1:0".to_owned(),
            child: None,
            env,
            log: Default::default(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_purse"))
            .args(["serve", "--database", &self.url, "--listen", &self.listen])
            .env("PURSE_API_LOG_REQUESTS", "0")
            .env("PURSE_API_RATE_PER_KEY", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().expect("a line").expect("readable");
        assert!(first.contains("listening"), "serve said: {first}");
        let said: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
        self.listen = said["addr"].as_str().expect("the address it listens on").to_owned();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
    }

    /// The lines the process has written to standard error so far (and goes on adding).
    pub fn collect_log(&self) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
        self.log.clone()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM: the graceful way.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let status = c.wait().unwrap();
            assert!(status.success(), "graceful stop: {status}");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL 15 server of the test's own, in a temporary directory on a free port, so
/// that the test can restart or stop it without touching anyone else's databases.
/// `scripts/postgres.sh` installs PostgreSQL; this fails, never skips, without it.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs a PostgreSQL program as the `postgres` user (the server refuses to run as root).
fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let path = format!("{PG_BIN}/{program}");
    let output = if root {
        let line = std::iter::once(path.as_str())
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &line]).output()
    } else {
        Command::new(&path).args(args).output()
    };
    output.unwrap_or_else(|e| {
        panic!("{path} did not run ({e}): run the tests with scripts/test.sh, which installs PostgreSQL 15")
    })
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = std::env::temp_dir().join(format!("purse-pg-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status();
        let data = dir.join("data");
        let out = as_postgres("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "purse", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        // The port is picked before the server binds it, so another process may take it
        // first: the server then does not start, and another port is tried. (A restart keeps
        // the port: the test's URLs name it.)
        let mut pg = PrivatePostgres { dir, port: free_port() };
        for _ in 0..4 {
            if pg.try_start_server().status.success() {
                return pg;
            }
            pg.port = free_port();
        }
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn options(&self) -> String {
        format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display())
    }

    fn try_start_server(&self) -> std::process::Output {
        let log = self.dir.join("log").display().to_string();
        as_postgres("pg_ctl", &["-D", &self.data(), "-o", &self.options(), "-l", &log, "-w", "-t", "60", "start"])
    }

    fn start_server(&self) {
        let out = self.try_start_server();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh database on this server; returns its URL.
    pub fn database(&self, name: &str) -> String {
        let admin = format!("postgres://purse@127.0.0.1:{}/postgres", self.port);
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the private server");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create");
        format!("postgres://purse@127.0.0.1:{}/{name}", self.port)
    }

    /// Restarts the server (fast shutdown: connections are cut, as in a failover).
    pub fn restart(&self) {
        // With its log in a file: the new server must not hold this call's output open.
        let log = self.dir.join("log").display().to_string();
        let out = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-o", &self.options(), "-l", &log, "-m", "fast", "-w", "-t", "60", "restart"],
        );
        assert!(out.status.success(), "pg_ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn stop(&self) {
        let _ = as_postgres("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
