//! The one test world of the feature tests: `purse serve` in-process on a port of its own
//! (more servers on the same database at will), a clock the test moves, the notifier and
//! the recharge processor stepped by hand, an operator key and its client, and where mail
//! goes (a maildir, or a real SMTP server). Each feature file wraps it ([`world!`]) and adds
//! its own words (`customer`, `charge`, ...) beside the shared ones.

use std::path::PathBuf;
use std::sync::Arc;

use purse::client::Client;
use purse_app::notifier::{AlertConfig, MailConfig, Notifier, SmtpTls};
use purse_app::recharger::{PaymentConfig, Recharger};
use purse_core::{Role, Scope, Timestamp};
use purse_engine::{Clock, ManualClock};
use serde_json::{json, Value};

use super::{read_maildir, serve_options, Mail, Smtp, T0};

/// How a world is made.
pub struct Options {
    pub start: Timestamp,
    /// The notifier's settings (its mail as [`MailTo`] says).
    pub alerts: AlertConfig,
    pub mail: MailTo,
    pub payments: PaymentConfig,
    /// Reverts expired temporary increases (the credit store given to the notifier).
    pub credit: bool,
    /// The notifier starts automatic recharges and sends payment notices.
    pub recharges: bool,
    /// Create USD at its ISO scale (a test that wants another scale creates its own).
    pub usd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            start: Timestamp::from_secs(T0),
            alerts: AlertConfig { allow_private_webhooks: true, ..AlertConfig::default() },
            mail: MailTo::Maildir,
            payments: PaymentConfig::default(),
            credit: false,
            recharges: false,
            usd: true,
        }
    }
}

/// Where the world's e-mail goes.
pub enum MailTo {
    /// Straight into a maildir of the world's.
    Maildir,
    /// Through a real SMTP server (aiosmtpd) the world starts, into its maildir.
    Smtp,
    /// As `Options::alerts` says (the test runs the receiver).
    Configured,
}

pub struct World {
    pub servers: Vec<purse::serve::Server>,
    pub clock: Arc<ManualClock>,
    pub notifier: Notifier,
    pub recharger: Arc<Recharger>,
    pub api: Client,
    pub key_id: u64,
    pub secret: String,
    pub url: String,
    /// Where every e-mail lands: the maildir's `new` holds one file per message.
    pub maildir: PathBuf,
    payments: PaymentConfig,
    smtp: Option<Smtp>,
    /// The maildir the world made, removed with it.
    own_maildir: Option<PathBuf>,
}

impl World {
    /// A world on `url` with USD configured.
    pub fn new(url: &str) -> World {
        World::with(url, Options::default())
    }

    pub fn with(url: &str, o: Options) -> World {
        let opened = purse::open_store(url).unwrap();
        let (key_id, secret) = purse::keys::create(&opened, "test", Role::Operator, Scope::ReadWrite, o.start).unwrap();
        let clock = Arc::new(ManualClock::new(o.start));
        let server = purse::serve::start(opened, clock.clone(), serve_options(o.payments.clone())).unwrap();
        let own = || std::env::temp_dir().join(format!("purse-world-mail-{}-{}", std::process::id(), super::key()));
        let (mail, maildir, smtp) = match o.mail {
            MailTo::Maildir => {
                let dir = own();
                (MailConfig::Maildir(dir.clone()), dir, None)
            }
            MailTo::Smtp => {
                let smtp = Smtp::start();
                let port = smtp.port;
                let mail = MailConfig::Smtp {
                    host: "127.0.0.1".into(),
                    port,
                    tls: SmtpTls::None,
                    username: None,
                    password: None,
                };
                (mail, smtp.dir.clone(), Some(smtp))
            }
            MailTo::Configured => {
                let dir = match &o.alerts.mail {
                    MailConfig::Maildir(dir) => dir.clone(),
                    MailConfig::Smtp { .. } => own(),
                };
                (o.alerts.mail.clone(), dir, None)
            }
        };
        let side = purse::open_side(url).unwrap();
        let recharger = Arc::new(Recharger::new(
            server.engine.clone(),
            side.reader.clone(),
            side.alerts.clone(),
            side.payments,
            o.payments.clone(),
            o.alerts.operator_email.clone(),
        ));
        let config = AlertConfig { mail, ..o.alerts };
        let mut notifier = Notifier::new(server.engine.clone(), side.reader, side.alerts, side.access, config).unwrap();
        if o.recharges {
            notifier = notifier.with_payments(recharger.clone());
        }
        if o.credit {
            notifier = notifier.with_credit(side.credit);
        }
        let api = Client::new(&format!("http://{}", server.addr), Some(secret.clone())).unwrap();
        let own_maildir = matches!(o.mail, MailTo::Maildir).then(|| maildir.clone());
        let mut w = World {
            servers: vec![server],
            clock,
            notifier,
            recharger,
            api,
            key_id,
            secret,
            url: url.to_owned(),
            maildir,
            own_maildir,
            payments: o.payments,
            smtp,
        };
        if o.usd {
            w.call("POST", "/v1/currencies", json!({ "code": "USD" }));
        }
        w
    }

    /// One more server on the same database and clock.
    pub fn serve(&mut self) -> &purse::serve::Server {
        let opened = purse::open_store(&self.url).unwrap();
        let server = purse::serve::start(opened, self.clock.clone(), serve_options(self.payments.clone())).unwrap();
        self.servers.push(server);
        self.servers.last().unwrap()
    }

    /// The operator's client of server `n`.
    pub fn client(&self, n: usize) -> Client {
        Client::new(&format!("http://{}", self.servers[n].addr), Some(self.secret.clone())).unwrap()
    }

    /// Sends a request with a fresh idempotency key: its status and body.
    pub fn send(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let reply = self.api.send(method, path, &body, &super::key()).unwrap();
        (reply.status, reply.json())
    }

    /// A request that must succeed: its body.
    pub fn call(&mut self, method: &str, path: &str, body: Value) -> Value {
        let (status, reply) = self.send(method, path, body);
        assert!(status < 300, "{method} {path}: {status} {reply}");
        reply
    }

    /// A read that must answer 200: its body.
    pub fn get(&mut self, path: &str) -> Value {
        let reply = self.api.get(path).unwrap();
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.json());
        reply.json()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// One step of the notifier (and the recharges it starts).
    pub fn step(&mut self) {
        self.notifier.step().expect("the worker steps");
    }

    /// Moves the clock and lets the worker catch up.
    pub fn advance(&mut self, micros: i64) {
        self.clock.set(self.now().plus_micros(micros));
        self.step();
    }

    /// Creates a customer from `body` (`client_id`, `name` and `currency` default to `name`,
    /// `name` and USD): its id and wallet.
    pub fn new_customer(&mut self, name: &str, mut body: Value) -> (u64, u64) {
        for (field, value) in [("client_id", json!(name)), ("name", json!(name)), ("currency", json!("USD"))] {
            if body.get(field).is_none() {
                body[field] = value;
            }
        }
        let c = self.call("POST", "/v1/customers", body);
        (c["id"].as_u64().unwrap(), c["wallet"].as_u64().unwrap())
    }

    /// Gives a customer a billing e-mail (`{name}@billing.test`).
    pub fn billing_email(&mut self, customer: u64, name: &str) {
        let body = json!({ "billing_email": format!("{name}@billing.test") });
        self.call("PUT", &format!("/v1/customers/{customer}/alert-settings"), body);
    }

    /// Posts a payment into a wallet (`method`: cash, bank_transfer, ...): the posting.
    pub fn payment(&mut self, wallet: u64, amount: &str, method: &str) -> Value {
        let body = json!({ "client_id": super::key(), "account": wallet, "amount": amount, "currency": "USD", "method": method });
        self.call("POST", "/v1/payments", body)
    }

    /// The e-mails received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.maildir)
    }

    /// A portal user of `role` and `scope`, signed in on server 0 (its session made in the
    /// store, as signing in does).
    pub fn portal(&self, role: Role, scope: Scope) -> Portal {
        let access = purse::open_side(&self.url).unwrap().access;
        let email = format!("{}@portal.test", super::key());
        let user = purse_store::NewUser {
            email,
            name: "Clerk".into(),
            password_hash: "x".into(),
            role,
            scope,
            created_at: Timestamp(0),
        };
        let user_id = access.insert_user(&user).unwrap().expect("a fresh e-mail");
        let (cookie, csrf) = (super::key(), super::key());
        let record = purse_store::SessionRecord {
            hash: purse_app::secrets::hash_key(&cookie),
            user_id,
            csrf: csrf.clone(),
            created_at: self.now(),
            expires_at: self.now().plus_micros(365 * 86_400 * 1_000_000),
        };
        access.insert_session(&record).unwrap();
        let client = Client::new(&format!("http://{}", self.servers[0].addr), None).unwrap();
        Portal { client, cookies: vec![("purse_session".into(), cookie)], csrf }
    }
}

/// A signed-in portal user: pages and forms, as a browser without scripts sends them (the
/// cookies the portal sets, such as a form's one-time message, are sent back).
pub struct Portal {
    client: Client,
    cookies: Vec<(String, String)>,
    csrf: String,
}

impl Portal {
    /// A page: its status and HTML.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        let cookie = self.cookie();
        let reply = self.client.request("GET", path, None, &[("cookie", &cookie)]).unwrap();
        self.keep(&reply);
        (reply.status, String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn cookie(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Keeps the cookies a reply sets, and forgets those it clears.
    fn keep(&mut self, reply: &purse::client::Reply) {
        for (_, set) in reply.headers.iter().filter(|(n, _)| n == "set-cookie") {
            let pair = set.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else { continue };
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !set.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    /// Sends a form (with the session's CSRF token): its status and HTML (empty for a redirect).
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut pairs: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        pairs.push(("csrf".into(), self.csrf.clone()));
        let body = super::app::form_body(&pairs);
        let cookie = self.cookie();
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let reply = self.client.request("POST", path, Some(body.as_bytes()), &headers).unwrap();
        self.keep(&reply);
        (reply.status, String::from_utf8_lossy(&reply.body).into_owned())
    }

    /// The value of the hidden field `name` of the page's forms (the first).
    pub fn hidden(page: &str, name: &str) -> Option<String> {
        let at = page.find(&format!(r#"name="{name}" value=""#))?;
        let rest = &page[at + name.len() + 15..];
        rest.split('"').next().map(str::to_owned)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.servers.clear();
        self.smtp.take();
        if let Some(dir) = self.own_maildir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Declares a feature file's `World`: the shared world, dereferenced, beside which the file
/// writes its own `impl World`.
#[macro_export]
macro_rules! world {
    () => {
        struct World(common::world::World);

        impl std::ops::Deref for World {
            type Target = common::world::World;

            fn deref(&self) -> &common::world::World {
                &self.0
            }
        }

        impl std::ops::DerefMut for World {
            fn deref_mut(&mut self) -> &mut common::world::World {
                &mut self.0
            }
        }
    };
}
