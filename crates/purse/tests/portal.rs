//! The web portal in a real browser: Debian's Chromium, headless, driven over WebDriver by
//! ChromeDriver (both installed by `scripts/chromium.sh`), against a served demo database.
//! The run writes screenshots of the main screens to `docs/screenshots/`, which the README
//! shows.

mod common;

use common::served::free_port;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use purse::client::Client;
use purse_core::{Role, Scope};
use serde_json::{json, Value};

/// The ChromeDriver the test script installed. Never skipped: a missing one fails.
fn chromedriver() -> String {
    std::env::var("PURSE_CHROMEDRIVER").unwrap_or_else(|_| {
        panic!("PURSE_CHROMEDRIVER is not set: run the tests with scripts/test.sh, which installs Chromium and ChromeDriver")
    })
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium with a fresh profile, through its own ChromeDriver.
struct Browser {
    driver: Child,
    http: Client,
    session: String,
    profile: std::path::PathBuf,
    base: String,
}

impl Browser {
    fn start(base: &str) -> Browser {
        let (driver, http, port) = Browser::driver();
        let profile = std::env::temp_dir().join(format!("purse-chromium-{}-{port}", std::process::id()));
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } } } });
        let mut browser = Browser { driver, http, session: String::new(), profile, base: base.to_owned() };
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    /// A ChromeDriver ready on a free port. The port is picked before the driver binds it,
    /// so another process may take it first: the driver then exits, and another port is tried.
    fn driver() -> (Child, Client, u16) {
        for _ in 0..5 {
            let port = free_port();
            let mut driver = Command::new(chromedriver())
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let mut http =
                Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap().with_timeout(Duration::from_secs(60));
            let mut exited = false;
            common::wait_for(30, "chromedriver ready", || {
                exited = driver.try_wait().expect("chromedriver's status").is_some();
                exited || http.get("/status").is_ok_and(|r| r.json()["value"]["ready"] == json!(true))
            });
            if !exited {
                return (driver, http, port);
            }
        }
        panic!("chromedriver exited five times on ports picked free")
    }

    fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let reply =
            self.http.request(method, path, bytes.as_deref(), &[]).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v = reply.json();
        assert_eq!(reply.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn cmd(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
    }

    fn open(&mut self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&mut self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn source(&mut self) -> String {
        self.cmd("GET", "/source", None).as_str().unwrap().to_owned()
    }

    fn find(&mut self, css: &str) -> String {
        let path = format!("/session/{}/element", self.session);
        let body = serde_json::to_vec(&json!({ "using": "css selector", "value": css })).unwrap();
        let reply = self.http.request("POST", &path, Some(&body), &[]).expect("chromedriver answers");
        if reply.status != 200 {
            let (url, source) = (self.url(), self.source());
            panic!("no element {css} on {url}:\n{source}");
        }
        reply.json()["value"][ELEMENT].as_str().expect("an element id").to_owned()
    }

    fn count(&mut self, css: &str) -> usize {
        self.cmd("POST", "/elements", Some(json!({ "using": "css selector", "value": css })))
            .as_array()
            .map_or(0, Vec::len)
    }

    fn text(&mut self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None).as_str().unwrap().to_owned()
    }

    fn type_into(&mut self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    /// Clicks a link or a button and waits until the page it leads to has loaded.
    fn click(&mut self, css: &str) {
        let id = self.find(css);
        self.script("window.purseOldPage = true;");
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
        let path = format!("/session/{}/execute/sync", self.session);
        let probe = serde_json::to_vec(&json!({
            "script": "return !window.purseOldPage && document.readyState === 'complete';", "args": [] }))
        .unwrap();
        // While the old page unloads the probe may fail; that is "not yet".
        let http = &mut self.http;
        common::wait_for(20, &format!("a new page after clicking {css}"), || {
            http.request("POST", &path, Some(&probe), &[]).is_ok_and(|r| r.json()["value"] == json!(true))
        });
    }

    fn script(&mut self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    fn cookie(&mut self, name: &str) -> Option<String> {
        let all = self.cmd("GET", "/cookie", None);
        all.as_array()?.iter().find(|c| c["name"] == name).map(|c| c["value"].as_str().unwrap().to_owned())
    }

    fn set_cookie(&mut self, name: &str, value: &str) {
        self.cmd("POST", "/cookie", Some(json!({ "cookie": { "name": name, "value": value, "path": "/" } })));
    }

    fn login(&mut self, email: &str, password: &str) {
        self.open("/login");
        self.type_into("#email", email);
        self.type_into("#password", password);
        self.click("#login");
    }

    fn logout(&mut self) {
        self.click("#logout");
        assert!(self.url().ends_with("/login"), "logged out to the login page");
    }

    /// Writes a PNG of the page to `docs/screenshots/NAME.png`.
    fn screenshot(&mut self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = common::base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    fn resize(&mut self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({ "width": width, "height": height })));
    }

    /// Issue 23: at a phone's 390 px the page is as wide as the screen (nothing overflows
    /// sideways but tables, which scroll in their box), the header menu is one line, and
    /// every link of the menu is at least 24 px tall.
    fn assert_fits_a_phone(&mut self, what: &str) {
        self.resize(390, 844);
        let fit = self.script(
            "const w = document.documentElement.clientWidth;
             const wide = [...document.querySelectorAll('main input, main select, main button, main textarea')]
               .filter(e => e.offsetParent && e.getBoundingClientRect().right > w + 1).map(e => e.name || e.id);
             const links = [...document.querySelectorAll('header nav a')].map(a => a.getBoundingClientRect().height);
             return { page: document.documentElement.scrollWidth - w, wide,
                      header: document.querySelector('header.top').getBoundingClientRect().height,
                      shortest: Math.min(...links) };",
        );
        assert_eq!(fit["page"], json!(0), "{what}: the page scrolls sideways: {fit}");
        assert_eq!(fit["wide"], json!([]), "{what}: fields wider than the screen: {fit}");
        assert!(fit["header"].as_f64().unwrap() <= 70.0, "{what}: the header wraps: {fit}");
        assert!(fit["shortest"].as_f64().unwrap() >= 24.0, "{what}: a menu link under 24 px: {fit}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.http.request("DELETE", &path, None, &[]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A served demo database with a login per role and an operator key.
struct Site {
    server: purse::serve::Server,
    base: String,
    operator_key: String,
    seeded: purse::demo::Seeded,
    /// (email, password) by role.
    operator: (String, String),
    reseller: (String, String),
    customer: (String, String),
    viewer: (String, String),
}

fn site() -> Site {
    site_with(None)
}

fn site_with(alerts: Option<purse_app::notifier::AlertConfig>) -> Site {
    site_paying(alerts, purse_app::recharger::PaymentConfig::default())
}

fn site_paying(
    alerts: Option<purse_app::notifier::AlertConfig>,
    payments: purse_app::recharger::PaymentConfig,
) -> Site {
    let url = common::sqlite_url();
    let path = url.strip_prefix("sqlite://").unwrap().to_owned();
    let seeded = purse::demo::seed(&path).expect("seeded");
    let opened = purse::open_store(&url).unwrap();
    let now = purse_engine::Clock::now(&purse_engine::SystemClock);
    let user = |email: &str, role: Role, scope: Scope| {
        let password = purse::keys::create_user(&opened, email, "Test User", role, scope, now).expect("user");
        (email.to_owned(), password)
    };
    let operator = user("operator@test.purse", Role::Operator, Scope::ReadWrite);
    let reseller = user("reseller@test.purse", Role::Reseller(seeded.resellers[0]), Scope::ReadWrite);
    let customer = user("customer@test.purse", Role::Customer(seeded.customers[0].1), Scope::ReadWrite);
    let viewer = user("viewer@test.purse", Role::Customer(seeded.customers[0].1), Scope::Read);
    let (_, operator_key) = purse::keys::create(&opened, "portal test", Role::Operator, Scope::ReadWrite, now).unwrap();
    let options = purse::serve::ServeOptions { alerts, ..common::serve_options(payments) };
    let server = purse::serve::start(opened, Arc::new(purse_engine::SystemClock), options).expect("serves");
    let base = format!("http://{}", server.addr);
    Site { server, base, operator_key, seeded, operator, reseller, customer, viewer }
}

#[test]
fn each_role_logs_in_and_sees_only_its_own_pages() {
    let site = site();
    let mut b = Browser::start(&site.base);
    let (acme, _, _) = &site.seeded.customers[0];
    let other_reseller_customer = site.seeded.customers[2].1 .0; // Initech, under the second reseller

    // The operator sees every customer, with balances and a status at a glance.
    b.login(&site.operator.0, &site.operator.1);
    assert!(b.url().ends_with("/customers"), "operators start at the customers list");
    assert_eq!(b.count("#customers tbody tr"), 4, "{}", b.source());
    assert!(b.text("#customers").contains(acme.as_str()));
    b.screenshot("customers");
    b.type_into("#q", "initech");
    b.click("#search");
    assert_eq!(b.count("#customers tbody tr"), 1);
    assert!(b.text("#customers").contains("Initech Cloud"));
    // A user form with mistakes comes back with the values and a message next to each field.
    b.open("/users");
    b.type_into("#email", "nadia@localhost");
    b.type_into("#name", "Nadia");
    b.type_into("#password", "short");
    b.click("#create");
    assert!(b.text("#email-error").contains("e-mail address"));
    assert!(b.text("#password-error").contains("10 to 256"));
    let kept = b.script("return [document.querySelector('#email').value, document.querySelector('#name').value];");
    assert_eq!(kept, json!(["nadia@localhost", "Nadia"]));
    // Corrected, the operator creates a reseller user, who logs in and changes its password.
    b.type_into("#email", "nadia@northwind.example");
    b.type_into("#password", "first password 123");
    b.script("document.querySelector('#role').value = 'reseller';");
    // Issue 23: whose user it is, chosen by name.
    let offered = b.script("return [...document.querySelectorAll('#party option')].map(o => o.text).join('|');");
    assert!(offered.as_str().unwrap().contains("Northwind Telecom (reseller)"), "{offered}");
    b.script(&format!("document.querySelector('#party').value = '{}';", site.seeded.resellers[0].0));
    b.click("#create");
    assert!(b.text("#flash").contains("nadia@northwind.example"), "{}", b.source());
    assert!(b.text("#users").contains("Reseller · Northwind Telecom"), "{}", b.source());
    assert!(b.text("#users").contains("nadia@northwind.example"));
    b.logout();
    b.login("nadia@northwind.example", "first password 123");
    assert!(b.url().ends_with("/customers"), "the new reseller user logs in");
    b.open("/settings/password");
    b.type_into("#current", "not my password");
    b.type_into("#new", "second password 456");
    b.type_into("#confirm", "second password 456");
    b.click("#change");
    assert!(b.text("#current-error").contains("not your current password"));
    b.type_into("#current", "first password 123");
    b.type_into("#new", "second password 456");
    b.type_into("#confirm", "second password 456");
    b.click("#change");
    assert_eq!(b.count("#changed"), 1);
    b.logout();
    b.login("nadia@northwind.example", "first password 123");
    assert!(b.text("#login-error").contains("wrong"), "the old password no longer works");
    b.login("nadia@northwind.example", "second password 456");
    assert!(b.url().ends_with("/customers"));
    b.logout();

    // A reseller sees its own customers only; another reseller's customer is not found.
    b.login(&site.reseller.0, &site.reseller.1);
    assert_eq!(b.count("#customers tbody tr"), 2, "{}", b.source());
    b.open(&format!("/customers/{other_reseller_customer}"));
    assert!(b.source().contains("There is no such page"), "another reseller's customer is not found");
    b.open("/customers");
    b.logout();

    // A customer admin walks Settings → Account Settings → Billing → Balance Details.
    b.login(&site.customer.0, &site.customer.1);
    let own = site.seeded.customers[0].1 .0;
    assert!(b.url().ends_with(&format!("/customers/{own}")), "customers start at their overview");
    assert!(b.text("h1").contains(acme.as_str()));
    b.screenshot("customer-overview");
    b.click("header nav a[href='/settings']");
    b.click("a[href='/settings/account']");
    b.click("a[href='/settings/account/billing']");
    b.click("a[href='/settings/account/billing/balance-details']");
    assert_eq!(b.text("h1"), "Balance Details");
    assert!(b.text("ol.crumbs").contains("Settings"));
    for id in ["#available", "#balance", "#reserved", "#uninvoiced", "#credit-limit"] {
        assert!(b.text(id).ends_with("USD"), "{id} shows an amount");
    }
    assert_eq!(b.count("#consumption-chart"), 1, "a chart of consumption");
    b.screenshot("balance-details");
    b.assert_fits_a_phone("Balance Details");
    b.screenshot("balance-details-phone");
    b.resize(1280, 900);
    // Another customer's pages answer "not found", by overview, Balance Details and export.
    let other = site.seeded.customers[1].1 .0;
    for path in [
        format!("/customers/{other}"),
        format!("/customers/{other}/balance"),
        format!("/customers/{other}/balance.csv"),
    ] {
        b.open(&path);
        assert!(b.source().contains("There is no such page"), "{path} is not found for another customer");
    }
    b.open("/customers");
    assert!(b.source().contains("There is no such page"), "customers do not list customers");
    b.open("/settings");
    b.logout();

    // The read-only customer sees the pages but no form that changes anything.
    b.login(&site.viewer.0, &site.viewer.1);
    b.open("/keys");
    assert_eq!(b.count("#create-key"), 0, "read-only users get no create form");
    drop(site.server);
}

#[test]
fn a_charge_posted_through_the_api_appears_in_balance_details() {
    let site = site();
    let mut b = Browser::start(&site.base);
    let (_, _, wallet) = site.seeded.customers[0];
    b.login(&site.customer.0, &site.customer.1);
    b.open("/settings/account/billing/balance-details");
    assert!(!b.text("#by-service").contains("video-conference"));

    let mut api = Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let charge = json!({ "client_id": "portal-charge-1", "account": wallet.0, "amount": "12.3456", "currency": "USD", "service": "video-conference" });
    let reply = api.send("POST", "/v1/charges", &charge, "portal-charge-1").unwrap();
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));

    b.open("/settings/account/billing/balance-details");
    let by_service = b.text("#by-service");
    assert!(by_service.contains("video-conference") && by_service.contains("12.3456 USD"), "{by_service}");
    assert!(b.text("#journal").contains("-12.3456 USD"), "the newest posting leads the journal");

    // The export of the period carries it too (fetched with the browser's session).
    let session = b.cookie("purse_session").expect("a session cookie");
    let own = site.seeded.customers[0].1 .0;
    let export = b.find("#export");
    let href = b.cmd("GET", &format!("/element/{export}/attribute/href"), None).as_str().unwrap().to_owned();
    let path = href.strip_prefix(&site.base).unwrap_or(&href).to_owned();
    assert!(path.starts_with(&format!("/customers/{own}/balance.csv?")), "{path}");
    let mut http = Client::new(&site.base, None).unwrap();
    let cookie = format!("purse_session={session}");
    let csv = http.request("GET", &path, None, &[("cookie", &cookie)]).unwrap();
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").unwrap().starts_with("attachment"));
    let text = String::from_utf8(csv.body).unwrap();
    assert!(text.starts_with("transfer_id,posted_at,at,kind,service,client_id,amount,balance_after,currency\n"));
    assert!(text.lines().last().unwrap().contains(",charge,video-conference,portal-charge-1,-12.3456,"), "{text}");
    drop(site.server);
}

#[test]
fn sessions_csrf_and_login_throttling_hold() {
    let site = site();
    let mut b = Browser::start(&site.base);

    // A wrong password is refused; after five, even the right one waits.
    b.login(&site.operator.0, "wrong password 1");
    assert!(b.text("#login-error").contains("wrong"));
    assert!(b.url().ends_with("/login"));
    b.screenshot("login");
    for n in 2..=5 {
        b.login(&site.operator.0, &format!("wrong password {n}"));
        assert!(b.text("#login-error").contains("wrong"), "attempt {n}");
    }
    b.login(&site.operator.0, &site.operator.1);
    assert!(b.text("#login-error").contains("Too many failed logins"), "{}", b.source());
    assert!(b.cookie("purse_session").is_none(), "no session while throttled");
    // Another user is not throttled by it.
    b.login(&site.reseller.0, &site.reseller.1);
    assert!(b.url().ends_with("/customers"));

    // A form without its CSRF token is refused and changes nothing.
    b.open("/keys");
    let keys_before = b.count("#keys tbody tr");
    b.type_into("#name", "sneaky");
    b.script("document.querySelector('#create-key input[name=csrf]').remove();");
    b.click("#create");
    assert!(b.source().contains("Form refused"), "{}", b.source());
    b.open("/keys");
    assert_eq!(b.count("#keys tbody tr"), keys_before);
    assert!(!b.text("#keys").contains("sneaky"));

    // With it, the key is created and its secret shown once.
    b.type_into("#name", "billing robot");
    b.click("#create");
    let secret = b.text("#secret");
    assert!(secret.starts_with("purse_") && secret.len() == 54, "{secret}");
    b.screenshot("api-keys");
    b.open("/keys");
    assert!(!b.source().contains(&secret), "the secret is shown once");
    let mut api = Client::new(&site.base, Some(secret.clone())).unwrap();
    assert_eq!(api.get(&format!("/v1/resellers/{}", site.seeded.resellers[0].0)).unwrap().status, 200);
    // Issue 23: revoking asks first, naming the key; cancelling changes nothing.
    let revoke = b.script(
        "return [...document.querySelectorAll('#keys tr')].find(r => r.textContent.includes('billing robot')).querySelector('a.danger').id;",
    );
    b.click(&format!("#{}", revoke.as_str().unwrap()));
    assert!(b.text("#confirm").contains("billing robot"), "{}", b.source());
    b.click("#confirm a");
    assert!(b.url().ends_with("/keys"), "{}", b.url());
    assert_eq!(api.get(&format!("/v1/resellers/{}", site.seeded.resellers[0].0)).unwrap().status, 200);
    b.click(&format!("#{}", revoke.as_str().unwrap()));
    b.click("#confirm-revoke");
    assert!(b.text("#flash").contains("revoked"), "{}", b.source());
    assert_eq!(api.get(&format!("/v1/resellers/{}", site.seeded.resellers[0].0)).unwrap().status, 401);

    // Logout ends the session in the store: the old cookie is worth nothing.
    let session = b.cookie("purse_session").expect("a session cookie");
    b.logout();
    b.set_cookie("purse_session", &session);
    b.open("/customers");
    assert!(b.url().contains("/login?next=%2Fcustomers"), "{}", b.url());
    drop(site.server);
}

#[test]
fn staff_manage_low_balance_profiles_and_customers_their_alerts_and_read_the_notification_log() {
    let maildir = std::env::temp_dir().join(format!("purse-portal-mail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&maildir);
    let config = purse_app::notifier::AlertConfig {
        mail: purse_app::notifier::MailConfig::Maildir(maildir.clone()),
        ..purse_app::notifier::AlertConfig::default()
    };
    let site = site_with(Some(config));
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open("/profiles");
    assert_eq!(b.count("#profiles tbody tr"), 2, "the demo's profile of each reseller: {}", b.source());
    // Issue 23: each profile's owner by name, not an id.
    assert!(b.text("#profiles").contains("Northwind Telecom"), "{}", b.source());
    let reseller = site.seeded.resellers[0].0.to_string();
    b.type_into("[name='name']", "Gold");
    // Issue 23: resellers and currencies are chosen by name, not typed as ids or codes.
    let offered = b.script("return [...document.querySelectorAll('#reseller option')].map(o => o.text).join('|');");
    assert!(offered.as_str().unwrap().contains("None: the operator's own"), "{offered}");
    assert!(!offered.as_str().unwrap().chars().any(|c| c.is_ascii_digit()), "names, not ids: {offered}");
    assert_eq!(b.script("return document.querySelector('#currency').tagName;"), json!("SELECT"));
    b.script(&format!("document.querySelector('#reseller').value = '{reseller}';"));
    // Issue 23: nine wrong fields are told at once, each next to its field.
    b.type_into("[name='max_quantity']", "lots");
    b.type_into("[name='period_hours']", "-1");
    b.type_into("[name='user_rule.threshold']", "abc");
    b.type_into("[name='user_rule.emails']", "nobody");
    b.type_into("[name='client_rule.threshold']", "1.23456");
    b.type_into("[name='client_rule.emails']", "x@y.test, bad");
    b.type_into("[name='inactivity_rule.threshold']", "5");
    b.type_into("[name='inactivity_rule.inactivity_hours']", "soon");
    b.type_into("[name='subject']", "Hi {nobody}");
    b.click("#save-profile");
    let summary = b.text("#form-error");
    for name in [
        "Max quantity",
        "Period hours",
        "User rule threshold",
        "User rule emails",
        "Client rule threshold",
        "Client rule emails",
        "Inactivity rule inactivity hours",
        "Subject",
    ] {
        assert!(summary.contains(name), "{name} in {summary}");
    }
    assert!(summary.contains("fields need a change"), "{summary}");
    assert!(b.count(".field.invalid") >= 8, "{}", b.source());
    assert_eq!(b.count("#profiles tbody tr"), 2, "nothing was saved");
    // The user rule's portal users are chosen by name from the owner's users.
    let users = b
        .script("return [...document.querySelectorAll('[id=\"user_rule.users\"] option')].map(o => o.text).join('|');");
    assert!(users.as_str().unwrap().contains('@'), "users by name and e-mail: {users}");
    for (name, value) in [
        ("max_quantity", "3"),
        ("user_rule.threshold", ""),
        ("user_rule.emails", ""),
        ("client_rule.threshold", "100"),
        ("client_rule.emails", ""),
        ("inactivity_rule.threshold", ""),
        ("inactivity_rule.inactivity_hours", ""),
        ("subject", ""),
    ] {
        b.type_into(&format!("[name='{name}']"), value);
    }
    b.type_into("[name='period_hours']", "-1");
    b.type_into("[name='client_rule.threshold']", "100");
    b.click("#save-profile");
    assert!(b.text("#form-error").contains("Period hours"), "{}", b.source());
    assert_eq!(b.count(".field.invalid [name='period_hours']"), 1, "the error sits next to its field");
    assert_eq!(
        b.script("return document.querySelector(\"[name='name']\").value;"),
        json!("Gold"),
        "what was entered comes back"
    );
    b.type_into("[name='period_hours']", "24");
    b.click("#save-profile");
    assert!(b.url().ends_with("/profiles"), "{}", b.url());
    assert!(b.text("#flash").contains("The Low Balance Profile was saved"), "{}", b.source());
    assert_eq!(b.count("#profiles tbody tr"), 3);
    b.screenshot("profiles");
    let gold = b.script("return [...document.querySelectorAll('#profiles tbody tr')].find(r => r.textContent.includes('Gold')).querySelector('a.danger').id;");
    b.click(&format!("#{}", gold.as_str().unwrap()));
    assert!(b.text("#confirm").contains("Gold"), "deleting asks first");
    b.click("#confirm-delete");
    assert_eq!(b.count("#profiles tbody tr"), 2);
    b.logout();

    // A customer admin sets its own warning thresholds; a bad list comes back with its error.
    let own = site.seeded.customers[0].1 .0;
    b.login(&site.customer.0, &site.customer.1);
    b.open(&format!("/customers/{own}/alerts"));
    assert_eq!(b.count("#profile"), 0, "the profile is the reseller's choice");
    // Issue 23: the profile in force by its name, not an id.
    let in_force = b.text("#profile-in-force");
    assert!(!in_force.contains('#') && !in_force.contains("none"), "{in_force}");
    b.type_into("[name='warning_thresholds']", "100, lots");
    // Issue 23: every wrong field at once.
    let saved_email = b.script("return document.querySelector(\"[name='billing_email']\").value;");
    let saved_alerts = b.script("return document.querySelector(\"[name='alert_emails']\").value;");
    b.type_into("[name='billing_email']", "not an address");
    b.type_into("[name='alert_emails']", "ok@acme.demo, nope");
    b.click("#save-alerts");
    let summary = b.text("#form-error");
    for name in ["Warning thresholds", "Billing email", "Alert emails"] {
        assert!(summary.contains(name), "{name} in {summary}");
    }
    b.type_into("[name='billing_email']", saved_email.as_str().unwrap());
    b.type_into("[name='alert_emails']", saved_alerts.as_str().unwrap());
    b.type_into("[name='warning_thresholds']", "100, 50");
    b.click("#save-alerts");
    assert_eq!(
        b.script("return document.querySelector(\"[name='warning_thresholds']\").value;"),
        json!("100.0000, 50.0000")
    );
    // Another customer's alerts are not found.
    let other = site.seeded.customers[1].1 .0;
    b.open(&format!("/customers/{other}/alerts"));
    assert!(b.source().contains("no such page"), "{}", b.source());

    // The worker has turned the demo day's crossings into warnings; the log shows them, with
    // the e-mail written to the maildir.
    common::wait_for(30, "a sent notification in the log", || {
        b.open("/notifications");
        b.text("#notifications").contains("Sent e-mail to")
    });
    assert!(b.text("#notifications").contains("billing@acme.demo"), "{}", b.source());
    // Issue 23: the customer by name, the notice in words, newest first.
    let first_customer = b.text("#notifications tbody tr:first-child td:nth-child(2)");
    assert!(!first_customer.chars().all(|c| c.is_ascii_digit()), "a name, not an id: {first_customer}");
    assert!(b.text("#notifications").contains("Warning threshold reached"), "{}", b.source());
    let times: Vec<String> = serde_json::from_value(b.script(
        "return [...document.querySelectorAll('#notifications tbody tr td:first-child')].map(td => td.textContent);",
    ))
    .unwrap();
    assert!(times.iter().all(|t| !t.contains('T') && !t.contains('Z')), "people's dates: {times:?}");
    b.screenshot("notifications");
    assert!(std::fs::read_dir(maildir.join("new")).unwrap().count() >= 1, "the maildir holds the e-mail");
    drop(site.server);
}

#[test]
fn a_customer_admin_pays_now_from_balance_details_and_a_declined_card_changes_nothing() {
    let stripe = common::LocalStripe::start();
    let site = site_paying(None, stripe.config());
    let (_, customer, wallet) = site.seeded.customers[0].clone();
    let mut api = purse::client::Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let mut balance =
        || api.get(&format!("/v1/accounts/{}", wallet.0)).unwrap().json()["balance"].as_str().unwrap().to_owned();
    let before = balance();
    let mut b = Browser::start(&site.base);
    b.login(&site.customer.0, &site.customer.1);
    b.open("/settings/account/billing/balance-details");
    assert!(b.text("#recharge-summary").contains("Automatic recharge"), "{}", b.source());
    b.click("#pay-now-link");
    assert!(b.url().ends_with(&format!("/customers/{}/recharge", customer.0)), "{}", b.url());
    // Issue 23: the card fields tell the browser and a phone's keyboard what they hold.
    assert_eq!(b.count("[name='card_number'][autocomplete='cc-number'][inputmode='numeric']"), 1, "{}", b.source());
    assert_eq!(b.count("[name='card_cvc'][autocomplete='cc-csc']"), 1);
    // A declined card: a clear message, the amount kept, nothing charged.
    b.type_into("[name='amount']", "25");
    b.type_into("[name='card_number']", "4000000000000002");
    b.type_into("[name='card_exp_month']", "12");
    b.type_into("[name='card_exp_year']", "2034");
    b.type_into("[name='card_cvc']", "123");
    b.click("#pay-now");
    assert!(b.text("#form-error").contains("declined"), "{}", b.source());
    assert!(b.text("#form-error").contains("Nothing was charged"), "{}", b.source());
    assert_eq!(b.script("return document.querySelector(\"[name='amount']\").value;"), json!("25"));
    assert_eq!(balance(), before, "a declined card changes nothing");
    assert_eq!(b.count("#saved-card"), 0, "no card was saved");
    // A good card: a receipt, the balance credited, the card and auto-recharge saved.
    b.type_into("[name='amount']", "25");
    b.type_into("[name='card_number']", "4242424242424242");
    b.type_into("[name='card_exp_month']", "12");
    b.type_into("[name='card_exp_year']", "2034");
    b.type_into("[name='card_cvc']", "123");
    b.type_into("[name='auto_threshold']", "10");
    b.type_into("[name='auto_amount']", "30");
    b.click("#pay-now");
    assert!(b.text("#flash").contains("Payment received"), "{}", b.source());
    assert!(b.text("#flash").contains("25.0000"), "{}", b.source());
    // Post/redirect/get: the page was reached by a redirect, and a reload shows no message again.
    b.open(&format!("/customers/{}/recharge", customer.0));
    assert_eq!(b.count("#flash"), 0, "the message is shown once");
    let units = |text: &str| text.replace('.', "").parse::<i64>().unwrap();
    assert_eq!(units(&balance()) - units(&before), 250_000, "credited 25.0000");
    assert!(b.text("#saved-card").contains("4242"), "{}", b.source());
    assert_eq!(b.script("return document.querySelector(\"[name='threshold']\").value;"), json!("10.0000"));
    assert_eq!(b.script("return document.querySelector(\"[name='method']\").value;"), json!("card"));
    b.screenshot("pay-now");
    // Issue 23: a refused Pay Now leaves the recharge form showing the saved settings.
    b.type_into("[name='amount']", "-3");
    b.click("#pay-now");
    assert_eq!(b.count(".field.invalid [name='amount']"), 1, "{}", b.source());
    assert_eq!(b.script("return document.querySelector(\"[name='threshold']\").value;"), json!("10.0000"));
    assert_eq!(b.script("return document.querySelector(\"[name='method']\").value;"), json!("card"));
    // The saved card pays again without its details; a bad recharge setting is refused in place.
    b.type_into("[name='amount']", "5");
    b.click("#pay-now");
    assert!(b.text("#flash").contains("5.0000"), "{}", b.source());
    b.type_into("[name='recharge_amount']", "0");
    // Issue 23: every wrong field of the form at once.
    b.type_into("[name='threshold']", "-1");
    b.type_into("[name='per_day_max']", "many");
    b.type_into("[name='emails']", "not-an-address");
    b.click("#save-recharge");
    let summary = b.text("#form-error");
    for name in ["Recharge amount", "Threshold", "Recharges per day at most", "Emails"] {
        assert!(summary.contains(name), "{name} in {summary}");
    }
    assert_eq!(b.count(".field.invalid [name='recharge_amount']"), 1);
    drop(site.server);
}

#[test]
fn issue_7_staff_change_credit_limits_on_balance_and_credits_within_the_maximum_and_the_audit_log_shows_it() {
    let site = site();
    let (_, initech, _) = site.seeded.customers[2].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    // Customer classes: a bad maximum comes back next to its field; a good class is listed.
    b.open("/settings");
    b.click("#classes-link");
    assert!(b.text("#classes").contains("Gold"), "{}", b.source());
    b.type_into("[name='name']", "Platinum");
    b.type_into("[name='max_percent']", "2000");
    // Issue 23: every wrong field of the class at once.
    b.type_into("[name='max_days']", "many");
    b.type_into("[name='max_amount']", "-5");
    b.click("#save-class");
    let summary = b.text("#form-error");
    for name in ["Maximum increase percent", "Maximum increase days", "Maximum increase amount"] {
        assert!(summary.contains(name), "{name} in {summary}");
    }
    b.type_into("[name='max_days']", "");
    b.type_into("[name='max_amount']", "");
    b.click("#save-class");
    assert!(b.text("#form-error").contains("Maximum increase percent"), "{}", b.source());
    assert_eq!(b.count(".field.invalid [name='max_percent']"), 1);
    b.type_into("[name='max_percent']", "60");
    b.click("#save-class");
    assert!(b.url().ends_with("/classes"), "{}", b.url());
    assert!(b.text("#classes").contains("Platinum") && b.text("#classes").contains("60%"), "{}", b.source());
    b.open(&format!("/customers/{}", initech.0));
    b.click("#balance-credits");
    assert!(b.url().ends_with(&format!("/customers/{}/credit", initech.0)), "{}", b.url());
    // The demo's Initech: permanent 600, a temporary 150 for a week, class Gold (50 %, 30 days).
    assert!(b.text("#permanent-limit").contains("600.0000"), "{}", b.source());
    assert!(b.text("#temporary-increase").contains("150.0000"), "{}", b.source());
    assert!(b.text("#effective-limit").contains("750.0000"));
    assert!(b.text("#maximum-increase").contains("300.0000"), "{}", b.source());
    assert!(b.text("#customer-class").contains("Gold"));
    assert!(b.text("#transfers-setting").contains("As defined by the customer class"));
    assert!(b.text("#transfers-setting").contains("(allowed now)"), "{}", b.source());
    assert!(b.text("#unallocated").contains("0.0000"));
    assert!(b.text("#warning-thresholds").contains("50"), "{}", b.source());
    assert_eq!(b.count("#credit-history tbody tr"), 2, "the demo's two changes: {}", b.source());
    assert!(b.text("#credit-history").contains("Seasonal peak"));

    // Issue 23: a wrong limit and an increase above the maximum are told at once.
    let saved_limit = b.script("return document.querySelector(\"[name='credit_limit']\").value;");
    b.type_into("[name='credit_limit']", "lots");
    b.type_into("[name='increase_amount']", "400");
    b.click("#save-credit");
    let summary = b.text("#form-error");
    assert!(summary.contains("Credit limit") && summary.contains("Temporary increase amount"), "{summary}");
    b.type_into("[name='credit_limit']", saved_limit.as_str().unwrap());
    // Above the maximum: refused next to the field, stating the maximum; nothing changes.
    b.type_into("[name='increase_amount']", "400");
    b.type_into("[name='reason']", "too much");
    b.click("#save-credit");
    // Issue 23: one plain sentence (it used to say "is above the maximum … is 300.0000").
    assert!(
        b.text("#form-error").contains("400.0000 USD is above the maximum possible increase: 300.0000 USD"),
        "{}",
        b.source()
    );
    assert!(b.text("#form-error").contains("300.0000"), "{}", b.source());
    assert_eq!(b.count(".field.invalid [name='increase_amount']"), 1);
    // Issue 23: the error is announced and tied to its field for screen readers; a skip link
    // comes first.
    assert_eq!(b.count("#form-error[role='alert']"), 1);
    assert_eq!(b.count("[name='increase_amount'][aria-describedby='increase_amount-error']"), 1);
    assert_eq!(b.count("#increase_amount-error"), 1);
    assert_eq!(b.count("a.skip[href='#main']"), 1);
    assert_eq!(
        b.script("return document.querySelector(\"[name='increase_amount']\").value;"),
        json!("400"),
        "what was entered comes back"
    );
    // Issue 23: the page's other forms still show what is saved, so the class form's Update
    // after a refused change keeps the class (it used to come back as "None" and remove it).
    assert_eq!(b.script("return document.querySelector('#class').selectedOptions[0].text;"), json!("Gold"));
    b.click("#save-credit-settings");
    assert!(b.text("#customer-class").contains("Gold"), "{}", b.source());
    // Issue 23: the form answers with a redirect and says once what happened.
    assert!(b.text("#flash").contains("The class and transfer settings were saved"), "{}", b.source());
    // A percentage within it is accepted and lands in the history with who and why.
    b.type_into("[name='increase_amount']", "");
    b.type_into("[name='increase_percent']", "30");
    b.type_into("[name='reason']", "Busy week");
    b.click("#save-credit");
    assert!(b.url().ends_with("/credit"), "{}", b.source());
    assert!(b.text("#temporary-increase").contains("180.0000"), "{}", b.source());
    assert_eq!(b.count("#credit-history tbody tr"), 3);
    let newest = b.text("#credit-history tbody tr:first-child");
    // Who: the user by e-mail, as the audit log names people.
    assert!(newest.contains("Busy week") && newest.contains("operator@test.purse"), "{newest}");
    assert!(!newest.contains("user operator"), "{newest}");
    // The transfers setting.
    b.script("document.querySelector('#subscriber_transfers').value = 'no';");
    b.click("#save-credit-settings");
    assert!(b.text("#transfers-setting").contains("No"), "{}", b.source());
    assert!(b.text("#transfers-setting").contains("(not allowed now)"));
    b.screenshot("balance-credits");
    b.assert_fits_a_phone("Balance & Credits with its forms");
    b.screenshot("balance-credits-phone");
    b.resize(1280, 900);

    // The audit log shows both changes made in the portal, filterable by what changed.
    b.open("/settings");
    b.click("#audit-link");
    // Issue 23: what changed in words, the customer by name, each change as "field: was → now".
    assert!(b.text("#audit-log").contains("Class and transfers"), "{}", b.source());
    assert!(!b.text("#audit-log").contains('{'), "no raw JSON: {}", b.source());
    b.script("document.querySelector('#entity').value = 'credit_limit';");
    b.click("#filter");
    let log = b.text("#audit-log");
    assert!(log.contains("Credit limit") && log.contains("operator@test.purse"), "{log}");
    let words: Vec<&str> = log.split_whitespace().collect();
    assert!(
        !words.windows(2).any(|w| w[0] == "key" && w[1].chars().all(|c| c.is_ascii_digit())),
        "API keys by name, not number: {log}"
    );
    assert!(log.contains("Initech"), "the customer by name: {log}");
    assert!(log.contains("→"), "before and after: {log}");
    assert!(!log.contains("Class and transfers"), "filtered: {log}");
    b.screenshot("audit-log");
    // A customer admin reads its own Balance & Credits but has no forms.
    b.logout();
    b.login(&site.customer.0, &site.customer.1);
    let own = site.seeded.customers[0].1 .0;
    b.open(&format!("/customers/{own}/credit"));
    assert_eq!(b.count("#credit-form"), 0);
    assert!(b.text("#credit-figures").contains("Low Funds Warning Threshold"), "prepaid wording: {}", b.source());
    b.open(&format!("/customers/{}/credit", initech.0));
    assert!(b.source().contains("no such page"), "another customer's tab is not found");
    drop(site.server);
}

#[test]
fn issue_8_staff_see_invoices_with_lines_and_allocations_and_a_customer_admin_only_its_own() {
    let maildir = std::env::temp_dir().join(format!("purse-portal-invoices-{}", std::process::id()));
    let config = purse_app::notifier::AlertConfig {
        mail: purse_app::notifier::MailConfig::Maildir(maildir),
        ..purse_app::notifier::AlertConfig::default()
    };
    let site = site_with(Some(config));
    let (_, initech, _) = site.seeded.customers[2].clone();
    let reseller = site.seeded.resellers[1].0;
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open(&format!("/customers/{}", initech.0));
    b.click("#invoices");
    // The demo invoiced Initech's usage and recorded a payment of 5: the scheduler applies it.
    let number = format!("INV-{reseller}-000001");
    common::wait_for(20, "the payment allocated", || {
        b.open(&format!("/customers/{}/invoices", initech.0));
        b.text("#invoices").contains("Partially paid")
    });
    assert!(b.text("#invoices").contains(&number), "{}", b.source());
    assert!(
        b.text("#receipts").contains(&format!("5.0000 → {number}")),
        "the payment shows where it went: {}",
        b.source()
    );
    // A cycle day outside 1-28 comes back next to its field; a good one is saved.
    b.type_into("[name='cycle_day']", "31");
    b.click("#save-billing");
    assert!(b.text("#form-error").contains("Cycle day"), "{}", b.source());
    assert_eq!(b.count(".field.invalid [name='cycle_day']"), 1);
    b.type_into("[name='cycle_day']", "15");
    // Issue 23: a named zone, offered from the time zone database.
    b.type_into("[name='time_zone']", "Mars/Olympus");
    b.click("#save-billing");
    assert_eq!(b.count(".field.invalid [name='time_zone']"), 1, "{}", b.source());
    assert!(b.count("#time-zones option[value='America/New_York']") == 1, "{}", b.source());
    b.type_into("[name='time_zone']", "America/New_York");
    b.click("#save-billing");
    assert!(b.text("#billing-cycle").contains("day 15, America/New_York"), "{}", b.source());
    // The invoice's page: its lines by service from the journal, totals, the allocation.
    b.click(".invoice-link");
    assert_eq!(b.text("#invoice-number"), number);
    let lines = b.text("#lines");
    assert!(lines.contains("voice") && lines.contains("sms"), "{lines}");
    assert!(b.text("#invoice-status").contains("Partially paid"));
    assert_eq!(b.text("#invoice-allocated"), "5.0000");
    assert!(b.text("#allocations").contains("RV-"), "{}", b.source());
    // A payment above what is due, and a void without a reason: refused next to the field.
    b.type_into("[name='amount']", "100000");
    b.click("#pay-invoice");
    assert!(b.text("#form-error").contains("at most"), "{}", b.source());
    assert_eq!(b.count(".field.invalid [name='amount']"), 1);
    b.click("#void-invoice");
    assert!(b.text("#form-error").to_lowercase().contains("reason"), "{}", b.source());
    // Issue 23: voiding asks to confirm first.
    assert!(b.text("#form-error").contains("cannot be undone"), "{}", b.source());
    assert!(b.text("#invoice-status").contains("Partially paid"), "nothing changed");
    b.type_into("#void-form [name='reason']", "Billed twice");
    b.click("#void-invoice");
    assert!(b.text("#form-error").contains("Confirm"), "{}", b.source());
    assert!(b.text("#invoice-status").contains("Partially paid"), "nothing changed without the tick");
    b.screenshot("invoice");
    // The PDF link serves the invoice.
    let href = b.script("return document.querySelector('#invoice-pdf').href;");
    assert!(href.as_str().unwrap().ends_with("/pdf"), "{href}");
    // The receipt voucher's page shows where its payment went.
    b.open(&format!("/customers/{}/invoices", initech.0));
    b.click(".receipt-link");
    assert!(b.text("#receipt-number").starts_with("RV-"), "{}", b.source());
    assert!(b.text("#receipt-allocations").contains(&number), "{}", b.source());
    assert_eq!(b.text("#receipt-unallocated"), "0.0000");
    // Balance Details shows what the period invoiced and what is uninvoiced now.
    let today = purse_core::time::day_of(purse_engine::Clock::now(&purse_engine::SystemClock));
    let (from, to) = (purse_core::time::format_date(today - 2), purse_core::time::format_date(today));
    b.open(&format!("/customers/{}/balance?from={from}&to={to}", initech.0));
    assert!(b.text("#invoiced-period").contains("1 invoice"), "{}", b.source());
    assert_ne!(b.text("#invoiced"), "0.0000 USD");
    assert!(!b.text("#uninvoiced-now").is_empty());
    // A customer admin sees its own invoices page without staff forms, not Initech's.
    b.logout();
    b.login(&site.customer.0, &site.customer.1);
    b.open("/settings/account/billing");
    b.click("#own-invoices");
    assert_eq!(b.count("#billing-form"), 0);
    assert_eq!(b.count("#issue-form"), 0);
    b.open(&format!("/customers/{}/invoices", initech.0));
    assert!(b.source().contains("no such page"), "another customer's invoices are not found");
    drop(site.server);
}

/// Issue 20 in the portal: rate plans (list, new, import with every bad line named, search by
/// prefix, export), a customer's plan and its calls in progress, rated usage by destination.
#[test]
fn issue_20_staff_manage_rate_plans_and_see_calls_in_progress_and_usage_by_destination() {
    let site = site();
    purse::demo::seed_calls(&site.base, &site.operator_key, &site.seeded).expect("rating seeded");
    let (_, acme, _) = site.seeded.customers[0].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open("/rate-plans");
    let plans = b.text("#rate-plans");
    assert!(plans.contains("Northwind Voice") && plans.contains("Wholesale Voice"), "{plans}");
    // A plan without a name is refused next to the field; with one, its page opens.
    b.click("#create-plan");
    assert!(b.text("#form-error").to_lowercase().contains("name"), "{}", b.source());
    b.type_into("[name='name']", "Test plan");
    b.click("#create-plan");
    assert!(b.source().contains("No rates match."), "{}", b.source());
    // A deck with a bad line imports nothing and names the line; a good one shows its rates.
    b.type_into("#csv", "prefix,price\n44x,0.10\n");
    b.click("#import");
    assert!(b.text("#form-error").contains("line 2: prefix"), "{}", b.source());
    assert!(b.source().contains("No rates match."), "nothing was imported");
    b.type_into("#csv", "prefix,description,price,increments\n44,United Kingdom,0.10,60/60\n");
    b.click("#import");
    assert!(b.text("#rates").contains("United Kingdom"), "{}", b.source());
    // Northwind's deck, searched by prefix.
    b.open("/rate-plans");
    let href = b.script(
        "return [...document.querySelectorAll('#rate-plans a')].find(a => a.textContent === 'Northwind Voice').getAttribute('href');",
    );
    b.open(&format!("{}?prefix=447", href.as_str().unwrap()));
    let rates = b.text("#rates");
    assert!(rates.contains("United Kingdom mobile") && !rates.contains("Germany"), "{rates}");
    assert_eq!(b.count("#export"), 1);
    b.screenshot("rate-plan");
    // Acme's page: its plan and its call in progress; Balance Details by destination.
    b.open(&format!("/customers/{}", acme.0));
    assert!(b.text("#rate-plan").contains("Northwind Voice"), "{}", b.source());
    assert!(b.text("#sessions").contains("447700900456"), "{}", b.source());
    b.open(&format!("/customers/{}/balance", acme.0));
    let by_destination = b.text("#by-destination");
    assert!(by_destination.contains("United Kingdom mobile (447)"), "{by_destination}");
    drop(site.server);
}

#[test]
fn issue_21_operator_staff_give_and_void_credit_and_the_customer_sees_what_each_grant_paid() {
    let site = site();
    let (_, acme, wallet) = site.seeded.customers[0].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open(&format!("/customers/{}", acme.0));
    b.click("#grants-link");
    // An empty form is refused, naming what is missing; nothing is granted.
    b.click("#give-credit");
    assert!(b.text("#form-error").to_lowercase().contains("amount"), "{}", b.source());
    // Issue 23: every wrong field at once: amount, priority, expiry and reason.
    b.type_into("[name='priority']", "0");
    b.script("document.querySelector(\"[name='expires_on']\").value = '2020-01-01';");
    b.click("#give-credit");
    let summary = b.text("#form-error");
    for name in ["Amount", "Priority", "Expires at", "Reason"] {
        assert!(summary.contains(name), "{name} in {summary}");
    }
    b.type_into("[name='priority']", "");
    b.script("document.querySelector(\"[name='expires_on']\").value = '';");
    b.type_into("[name='amount']", "10.00");
    b.type_into("[name='reason']", "Welcome offer");
    b.type_into("[name='scope']", "video-conference");
    b.click("#give-credit");
    assert!(b.text("#flash").contains("Credit granted"), "{}", b.source());
    let grants = b.text("#grants");
    assert!(
        grants.contains("Promotional") && grants.contains("10.0000 USD") && grants.contains("video-conference"),
        "{grants}"
    );
    b.screenshot("credit-grants");
    // A charge for that service is paid by the grant; its page says so.
    let mut api = Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let charge = json!({ "client_id": "grant-charge", "account": wallet.0, "amount": "2.50", "currency": "USD", "service": "video-conference" });
    assert_eq!(api.send("POST", "/v1/charges", &charge, "grant-charge").unwrap().status, 201);
    b.open(&format!("/customers/{}", acme.0));
    assert!(b.text("#customer-grants").contains("7.5000 USD"), "{}", b.source());
    b.open(&format!("/customers/{}/balance", acme.0));
    assert!(b.text("#balance-grants").contains("7.5000 USD"), "{}", b.source());
    b.open(&format!("/customers/{}/grants", acme.0));
    b.click("#grants a");
    assert!(b.text("#grant-uses").contains("2.5000 USD"), "{}", b.source());
    // Void: without a reason it is refused; with one, what is left goes back.
    b.click("#void-grant");
    assert!(b.text("#form-error").to_lowercase().contains("reason"), "{}", b.source());
    b.type_into("[name='reason']", "Offer withdrawn");
    b.click("#void-grant");
    assert!(b.text("#flash").contains("voided"), "{}", b.source());
    assert_eq!(b.text("#state"), "Voided");
    b.logout();
    // The customer's admin sees its grants, and no form to give itself credit.
    b.login(&site.customer.0, &site.customer.1);
    b.open(&format!("/customers/{}/grants", acme.0));
    assert!(b.text("#closed-grants").contains("Voided"), "{}", b.source());
    assert_eq!(b.count("#grant-form"), 0);
    drop(site.server);
}

#[test]
fn issue_23_a_reseller_sees_its_master_wallet_and_issues_credit_and_staff_reverse_a_charge_in_part() {
    let site = site();
    let (acme, customer, wallet) = site.seeded.customers[0].clone();
    let mut api = Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let balance = |api: &mut Client| api.get(&format!("/v1/accounts/{}", wallet.0)).unwrap().json()["balance"].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.reseller.0, &site.reseller.1);
    b.click("#nav-master-wallet");
    assert!(b.text("h1").contains("master wallet"), "{}", b.source());
    assert!(b.text("#master-wallet").contains("USD"), "{}", b.source());
    assert!(b.text("#drawers").contains(acme.as_str()), "Acme recharges from it: {}", b.source());
    assert!(b.text("#funded tbody").contains("Globex SMS"), "what it funded, by customer: {}", b.source());
    assert!(b.text("#master-alert").contains("told"), "{}", b.source());
    // Issuing credit: every wrong field at once, then credit lands on the customer's balance.
    let before = balance(&mut api);
    b.type_into("#issue-form [name='amount']", "-3");
    b.click("#issue");
    assert!(b.text("#form-error").contains("Customer"), "{}", b.source());
    assert_eq!(balance(&mut api), before, "nothing moved");
    b.script(&format!("document.querySelector('#customer').value = '{}';", customer.0));
    b.type_into("#issue-form [name='amount']", "5");
    b.type_into("#issue-form [name='reason']", "Goodwill");
    b.click("#issue");
    assert!(b.text("#flash").contains(&format!("5.0000 USD was issued to {acme}")), "{}", b.source());
    let units = |v: &serde_json::Value| v.as_str().unwrap().replace('.', "").parse::<i64>().unwrap();
    assert_eq!(units(&balance(&mut api)) - units(&before), 50_000);
    assert!(b.text("#funded tbody tr:first-child").contains(acme.as_str()), "{}", b.source());
    b.screenshot("master-wallet");
    b.assert_fits_a_phone("the master wallet page");
    b.resize(1280, 900);

    // A disputed call: staff give part of a charge back, with a reason; too much is refused.
    let charge = json!({ "client_id": "disputed-call", "account": wallet.0, "amount": "2", "currency": "USD", "service": "voice" });
    let reply = api.send("POST", "/v1/charges", &charge, "disputed-call").unwrap();
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    let transfer = reply.json()["transfer"].as_u64().unwrap();
    b.open(&format!("/customers/{}/balance", customer.0));
    assert!(b.count(&format!("a[href='/transfers/{transfer}/adjust']")) == 1, "{}", b.source());
    b.click(&format!("a[href='/transfers/{transfer}/adjust']"));
    assert!(b.text("#posting").contains("2.0000 USD"), "{}", b.source());
    b.type_into("[name='amount']", "2.5");
    b.click("#save-adjust");
    let summary = b.text("#form-error");
    assert!(summary.contains("Amount") && summary.contains("Reason"), "both at once: {summary}");
    let before = balance(&mut api);
    b.type_into("[name='amount']", "0.5");
    b.type_into("[name='reason']", "Disputed call");
    b.click("#save-adjust");
    assert!(b.text("#flash").contains(&format!("0.5000 USD was given back to {acme}")), "{}", b.source());
    assert_eq!(units(&balance(&mut api)) - units(&before), 5_000);
    // Partial reversals add up to the posting at most.
    b.open(&format!("/transfers/{transfer}/adjust"));
    assert!(b.text("#already-reversed").contains("1.5000 USD"), "{}", b.source());
    b.type_into("[name='amount']", "1.6");
    b.type_into("[name='reason']", "Disputed again");
    b.click("#save-adjust");
    assert!(b.text("#form-error").contains("at most what is left to reverse, 1.5000 USD"), "{}", b.source());
    assert_eq!(units(&balance(&mut api)) - units(&before), 5_000, "nothing moved");
    b.open(&format!("/transfers/{transfer}/adjust"));
    assert_eq!(b.count("#reverse-form"), 0, "a reseller does not reverse in the ledger");
    // The operator reverses a posting whole in the ledger, with a reason.
    b.logout();
    b.login(&site.operator.0, &site.operator.1);
    let charge =
        json!({ "client_id": "wrong-call", "account": wallet.0, "amount": "3", "currency": "USD", "service": "voice" });
    let reply = api.send("POST", "/v1/charges", &charge, "wrong-call").unwrap();
    let wrong = reply.json()["transfer"].as_u64().unwrap();
    let before = balance(&mut api);
    b.open(&format!("/transfers/{wrong}/adjust"));
    b.click("#reverse-whole");
    assert!(b.text("#form-error").contains("Reason"), "a reason is required: {}", b.source());
    assert_eq!(b.count("#reverse-form .field.invalid [name='whole_reason']"), 1);
    b.type_into("[name='whole_reason']", "Rated twice");
    b.click("#reverse-whole");
    assert!(b.text("#flash").contains("The charge of 3.0000 USD was reversed whole"), "{}", b.source());
    assert_eq!(units(&balance(&mut api)) - units(&before), 30_000);
    // A customer admin has no such page.
    b.logout();
    b.login(&site.customer.0, &site.customer.1);
    b.open(&format!("/transfers/{transfer}/adjust"));
    assert!(b.source().contains("Not allowed") || b.source().contains("no such page"), "{}", b.source());
    b.open("/resellers");
    assert!(b.source().contains("Not allowed"), "the policy refuses customers: {}", b.source());
    drop(site.server);
}

#[test]
fn issue_23_a_customer_admin_reads_the_portal_in_arabic_right_to_left() {
    let site = site();
    // Before login the browser's language decides (here by its Accept-Language header).
    let mut http = Client::new(&site.base, None).unwrap();
    let login = http.request("GET", "/login", None, &[("accept-language", "ar-EG,ar;q=0.9,en;q=0.5")]).unwrap();
    let text = String::from_utf8_lossy(&login.body).to_string();
    assert!(text.contains("<html lang=\"ar\" dir=\"rtl\">"), "{text}");
    assert!(text.contains("تسجيل الدخول"), "{text}");
    let english = http.request("GET", "/login", None, &[("accept-language", "en-GB,en")]).unwrap();
    assert!(String::from_utf8_lossy(&english.body).contains("<html lang=\"en\">"));

    // ?lang=ar chooses it in the browser, kept by a cookie through the login.
    let mut b = Browser::start(&site.base);
    b.open("/login?lang=ar");
    assert_eq!(b.script("return document.documentElement.dir;"), json!("rtl"));
    assert_eq!(b.text("#login"), "تسجيل الدخول");
    b.type_into("#email", &site.customer.0);
    b.type_into("#password", &site.customer.1);
    b.click("#login");
    assert_eq!(b.script("return document.documentElement.lang;"), json!("ar"), "{}", b.source());
    assert_eq!(b.text("header nav a[href='/settings']"), "الإعدادات");
    b.click("header nav a[href='/settings/account/billing/balance-details']");
    assert_eq!(b.text("h1"), "تفاصيل الرصيد");
    let available = b.text("#available");
    assert!(available.ends_with("USD") && available.chars().any(|c| ('٠'..='٩').contains(&c)), "{available}");
    assert!(!available.chars().any(|c| c.is_ascii_digit()), "Arabic digits: {available}");
    let headers = b.script("return [...document.querySelectorAll('main th')].map(t => t.textContent).join('|');");
    assert!(
        !headers.as_str().unwrap().chars().any(|c| c.is_ascii_alphabetic()),
        "every column header in Arabic: {headers}"
    );
    // Right to left: the menu starts at the right edge.
    let nav = b.script(
        "const r = document.querySelector('header .brand').getBoundingClientRect(); return r.left > window.innerWidth / 2;",
    );
    assert_eq!(nav, json!(true), "the brand sits on the right");
    b.screenshot("arabic-balance-details");
    b.assert_fits_a_phone("Balance Details in Arabic");
    b.screenshot("arabic-balance-details-phone");
    b.resize(1280, 900);

    // Each user keeps a language of its own: this one chooses English in Settings.
    b.click("header nav a[href='/settings']");
    b.script("document.querySelector('#lang').value = 'en';");
    b.click("#save-language");
    assert_eq!(b.script("return document.documentElement.lang;"), json!("en"), "{}", b.source());
    assert!(b.text("#flash").contains("The language was saved"), "{}", b.source());
    b.open("/settings/account/billing/balance-details?lang=ar");
    assert_eq!(b.text("h1"), "Balance Details", "the user's own choice wins over the cookie");
    drop(site.server);
}

#[test]
fn issue_23_staff_pages_in_arabic_have_their_labels_translated() {
    let site = site();
    let mut b = Browser::start(&site.base);
    b.open("/login?lang=ar");
    b.type_into("#email", &site.operator.0);
    b.type_into("#password", &site.operator.1);
    b.click("#login");
    let (_, acme, _) = site.seeded.customers[0].clone();
    let (_, initech, _) = site.seeded.customers[2].clone();
    let pages = [
        "/customers".to_owned(),
        format!("/customers/{}", acme.0),
        format!("/customers/{}/balance", acme.0),
        format!("/customers/{}/credit", initech.0),
        format!("/customers/{}/invoices", initech.0),
        format!("/customers/{}/recharge", acme.0),
        format!("/customers/{}/alerts", acme.0),
        format!("/customers/{}/grants", acme.0),
        format!("/customers/{}/adjustments", acme.0),
        format!("/customers/{}/taxes", acme.0),
        "/dunning".to_owned(),
        "/taxes".to_owned(),
        "/profiles".to_owned(),
        "/notifications".to_owned(),
        "/rate-plans".to_owned(),
        "/users".to_owned(),
        "/keys".to_owned(),
        "/settings".to_owned(),
        "/audit".to_owned(),
        "/classes".to_owned(),
        "/resellers".to_owned(),
        format!("/resellers/{}", site.seeded.resellers[0].0),
    ];
    let mut untranslated = Vec::new();
    for path in &pages {
        b.open(path);
        // Headings, column headers, labels, buttons and the menu: what the page itself says.
        let found = b.script(
            "const allowed = /^(Purse|USD|PDF|CSV|API|CVC|SMTP|Stripe|Webhook|UTC|[A-Z]{2,5}-?)$/;
             return [...document.querySelectorAll('h1, h2, h3, th, label, button, header nav a, .figure .label, legend, option')]
               .map(e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join(' ').trim())
               .filter(t => t && t.split(/\\s+/).some(w => /[A-Za-z]{2,}/.test(w) && !allowed.test(w.replace(/[()]/g, ''))));",
        );
        for text in found.as_array().unwrap() {
            untranslated.push(format!("{path}: {}", text.as_str().unwrap()));
        }
    }
    // What is left are names people gave (customers, resellers, users, profiles, a class)
    // and examples of what to type: take those out, and no English word may remain.
    let data = [
        "Acme Call Center",
        "Blue Harbor Networks",
        "Globex SMS",
        "Initech Cloud",
        "Northwind Telecom",
        "Umbrella Voice",
        "Test User",
        "Standard",
        "Gold",
        "English",
        "Europe/Berlin",
        "user ann@example.com",
        "key",
        "scheduler",
        "Ctrl",
    ];
    let left: Vec<String> = untranslated
        .iter()
        .filter(|u| {
            let mut text = u.split_once(": ").map_or("", |(_, t)| t).to_owned();
            for d in data {
                text = text.replace(d, "");
            }
            text.split_whitespace()
                .any(|w| w.chars().filter(char::is_ascii_alphabetic).count() >= 2 && !w.contains('@'))
        })
        .cloned()
        .collect();
    assert!(left.is_empty(), "texts without a translation: {left:#?}");
    drop(site.server);
}

#[test]
fn issue_24_staff_adjust_by_category_set_a_dunning_policy_and_suspend_and_the_customer_sees_why() {
    // A scheduler, so payments get their receipt vouchers.
    let maildir = std::env::temp_dir().join(format!("purse-portal-refunds-{}", std::process::id()));
    let config = purse_app::notifier::AlertConfig {
        mail: purse_app::notifier::MailConfig::Maildir(maildir),
        ..purse_app::notifier::AlertConfig::default()
    };
    let site = site_with(Some(config));
    let (acme, customer, wallet) = site.seeded.customers[0].clone();
    let mut api = Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let balance = |api: &mut Client| api.get(&format!("/v1/accounts/{}", wallet.0)).unwrap().json()["balance"].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);

    // Adjustments: every wrong field at once, then a goodwill credit listed with its reason.
    b.open(&format!("/customers/{}", customer.0));
    b.click("#adjustments-link");
    let before = balance(&mut api);
    b.script(
        "document.querySelector('#direction').value = 'debit'; document.querySelector('#category').value = 'goodwill';",
    );
    b.type_into("#adjustment-form [name='amount']", "x");
    b.click("#save-adjustment");
    let summary = b.text("#form-error");
    assert!(summary.contains("Amount") && summary.contains("Reason") && summary.contains("Direction"), "{summary}");
    assert_eq!(balance(&mut api), before, "nothing moved");
    b.script("document.querySelector('#direction').value = 'credit';");
    b.type_into("#adjustment-form [name='amount']", "2");
    b.type_into("#adjustment-form [name='reason']", "Outage on Monday");
    b.click("#save-adjustment");
    assert!(
        b.text("#flash").contains(&format!("{acme}'s balance was raised by 2.0000 USD (goodwill)")),
        "{}",
        b.source()
    );
    assert!(b.text("#adjustments tbody tr:first-child").contains("Goodwill"), "{}", b.source());
    assert!(b.text("#adjustments tbody tr:first-child").contains("Outage on Monday"), "{}", b.source());
    b.screenshot("adjustments");

    // A dunning policy: every wrong field at once, then saved and listed in words.
    b.open("/settings");
    b.click("#dunning-link");
    b.type_into("#policy-form [name='payment_terms_days']", "400");
    b.type_into("#policy-form [name='reminder_days']", "7, 3");
    b.type_into("#policy-form [name='suspend_below']", "50");
    b.type_into("#reminder_texts", "Dear {name}");
    b.click("#save-policy");
    let summary = b.text("#form-error");
    assert!(
        summary.contains("Due after")
            && summary.contains("Reminders")
            && summary.contains("Suspend a prepaid")
            && summary.contains("Reminder texts"),
        "{summary}"
    );
    assert!(b.text("#policies").contains("No policy"), "nothing was saved: {}", b.source());
    b.type_into("#policy-form [name='payment_terms_days']", "14");
    b.type_into("#policy-form [name='reminder_days']", "3, 7, 14");
    b.type_into("#policy-form [name='suspend_after_days']", "21");
    b.type_into("#policy-form [name='suspend_below']", "");
    b.type_into(
        "#reminder_texts",
        "Dear {customer}, {invoice} is {days_overdue} days late.\n---\nFinal notice for {invoice}.",
    );
    b.click("#save-policy");
    assert!(b.text("#flash").contains("The dunning policy is saved"), "{}", b.source());
    assert!(
        b.text("#policies").contains("3, 7, 14") && b.text("#policies").contains("21 days overdue"),
        "{}",
        b.source()
    );
    assert!(b.text("#policies").contains("2 with their own text"), "{}", b.source());

    // Staff suspend by hand; the customer's page says why and how to lift it.
    b.open(&format!("/customers/{}", customer.0));
    b.script("document.querySelector('#suspend').open = true;");
    b.type_into("#suspend-form [name='reason']", "Card chargeback under review");
    b.click("#save-suspend");
    assert!(b.text("#flash").contains(&format!("{acme} is suspended")), "{}", b.source());
    assert!(b.text("#suspended").contains("Card chargeback under review"), "{}", b.source());
    let charge = json!({ "client_id": "while-suspended", "account": wallet.0, "amount": "1", "currency": "USD" });
    let reply = api.send("POST", "/v1/charges", &charge, "while-suspended").unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].clone()), (422, json!("suspended")));
    b.logout();
    b.login(&site.customer.0, &site.customer.1);
    assert!(b.text("#suspended").contains("refused"), "the customer sees why: {}", b.source());
    assert_eq!(b.count("#lift-form"), 0, "and cannot lift it");
    b.screenshot("suspended");
    b.logout();
    b.login(&site.operator.0, &site.operator.1);
    b.open(&format!("/customers/{}", customer.0));
    b.type_into("#lift-form [name='reason']", "Chargeback won");
    b.click("#lift");
    assert!(b.text("#flash").contains("is lifted"), "{}", b.source());
    assert_eq!(b.count("#suspended"), 0);
    let reply = api
        .send(
            "POST",
            "/v1/charges",
            &json!({ "client_id": "after-lift", "account": wallet.0, "amount": "1", "currency": "USD" }),
            "after-lift",
        )
        .unwrap();
    assert_eq!(reply.status, 201);

    // A refund from the receipt voucher: too much is refused naming the amount, then a part.
    let paid =
        json!({ "client_id": "paid-by-hand", "account": wallet.0, "amount": "3", "currency": "USD", "method": "cash" });
    assert_eq!(api.send("POST", "/v1/payments", &paid, "paid-by-hand").unwrap().status, 201);
    let mut receipt = json!(null);
    common::wait_for(20, "the payment's receipt voucher", || {
        let receipts = api.get(&format!("/v1/receipts?customer={}", customer.0)).unwrap().json();
        receipt =
            receipts["data"].as_array().unwrap().iter().find(|r| r["method"] == "cash").cloned().unwrap_or_default();
        !receipt.is_null()
    });
    b.open(&format!("/receipts/{}", receipt["id"]));
    let left = b.text("#left-to-refund");
    b.type_into("#refund-form [name='amount']", "100000");
    b.type_into("#refund-form [name='reason']", "");
    b.click("#save-refund");
    let summary = b.text("#form-error");
    assert!(summary.contains("Amount") && summary.contains("Reason"), "{summary}");
    assert!(summary.contains(left.split_whitespace().next().unwrap()), "it says what is left: {summary}");
    b.type_into("#refund-form [name='amount']", "0.5");
    b.type_into("#refund-form [name='reason']", "Paid twice by mistake");
    b.click("#save-refund");
    assert!(b.text("#flash").contains("Refund RF-") && b.text("#flash").contains("is made"), "{}", b.source());
    assert!(b.text("#receipt-refunds").contains("Paid twice by mistake"), "{}", b.source());

    // A credit note from a usage invoice's page: too much is refused, then a part is credited.
    let (_, initech, _) = site.seeded.customers[2].clone();
    let invoices = api.get(&format!("/v1/invoices?customer={}", initech.0)).unwrap().json();
    let invoice =
        invoices["data"].as_array().unwrap().iter().find(|i| i["kind"] == "usage" && i["status"] != "void").cloned();
    let invoice = invoice.unwrap_or_else(|| panic!("a usage invoice: {invoices}"));
    b.open(&format!("/invoices/{}", invoice["id"]));
    b.type_into("#credit-note-form [name='cn_amount']", "100000");
    b.click("#save-credit-note");
    let summary = b.text("#form-error");
    assert!(summary.contains("Amount to credit") && summary.contains("Reason"), "{summary}");
    assert_eq!(b.count("#cn_amount-error") + b.count("#cn_reason-error"), 2, "beside the credit note's fields");
    assert_eq!(b.count("#amount-error") + b.count("#reason-error"), 0, "not beside the payment's or the void's");
    b.type_into("#credit-note-form [name='cn_amount']", "0.5");
    b.type_into("#credit-note-form [name='cn_reason']", "Calls dropped on Monday");
    b.click("#save-credit-note");
    assert!(b.text("#flash").contains("Credit note CN-") && b.text("#flash").contains("is issued"), "{}", b.source());
    assert!(b.text("#credit-notes").contains("Calls dropped on Monday"), "{}", b.source());
    // Whole lines, chosen by ticking them: an amount with them is refused, then the line alone
    // is credited, to the balance.
    let detail = api.get(&format!("/v1/invoices/{}", invoice["id"])).unwrap().json();
    let line = detail["lines"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|l| l["amount"].as_str().unwrap().replace('.', "").parse::<i64>().unwrap());
    let service = line.unwrap()["service"].as_str().unwrap().to_owned();
    b.script(&format!("document.querySelector(\"#credit-lines input[value='{service}']\").checked = true;"));
    b.type_into("#credit-note-form [name='cn_amount']", "1");
    b.type_into("#credit-note-form [name='cn_reason']", "Line billed twice");
    b.click("#save-credit-note");
    assert!(b.text("#form-error").contains("not both"), "{}", b.source());
    assert_eq!(b.count(&format!("#credit-lines input[value='{service}']:checked")), 1, "the choice is kept");
    b.type_into("#credit-note-form [name='cn_amount']", "");
    b.script("document.querySelector('#apply').value = 'balance';");
    b.click("#save-credit-note");
    assert!(b.text("#flash").contains("is issued"), "{}", b.source());
    assert!(b.text("#credit-notes").contains("Line billed twice"), "{}", b.source());
    drop(site.server);
}

#[test]
fn issue_24_a_credit_note_form_sent_twice_makes_one_credit_note_even_after_another_moved_the_tax() {
    let site = site_with(None);
    let (_, initech, wallet) = site.seeded.customers[2].clone();
    let mut api = Client::new(&site.base, Some(site.operator_key.clone())).unwrap();
    let mut call = |method: &str, path: &str, body: Value, key: &str| {
        let reply = api.send(method, path, &body, key).unwrap();
        assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        reply.json()
    };
    // A taxed invoice: 7.25 % added, so credits carry a rounding difference to the next.
    let rate = call("POST", "/v1/tax-rates", json!({ "name": "Sales tax", "percent": "7.25" }), "twice-rate");
    let settings = json!({ "tax_rate": rate["id"] });
    call("PUT", &format!("/v1/customers/{}/tax-settings", initech.0), settings, "twice-tax");
    let charge = json!({ "client_id": "twice-usage", "account": wallet.0, "amount": "33.33", "currency": "USD" });
    call("POST", "/v1/charges", charge, "twice-charge");
    let invoice = call("POST", &format!("/v1/customers/{}/invoices", initech.0), json!({}), "twice-invoice");
    assert!(invoice["tax"].is_object(), "{invoice}");

    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open(&format!("/invoices/{}", invoice["id"]));
    let request = b.script("return document.querySelector('#credit-note-form [name=request]').value;");
    b.type_into("#credit-note-form [name='cn_amount']", "3.33");
    b.type_into("#credit-note-form [name='cn_reason']", "Dropped calls");
    b.click("#save-credit-note");
    let first = b.text("#flash");
    assert!(first.contains("is issued"), "{}", b.source());
    // Another credit note moves the customer's tax carry: 3.33 has 0.2251 of tax at the
    // scale, 0.23 with a carry of 0; after 1.04 the carry is -0.0046, and 0.2205 rounds to 0.22.
    let other = json!({ "invoice": invoice["id"], "amount": "1.04", "apply": "balance", "reason": "goodwill" });
    call("POST", "/v1/credit-notes", other, "twice-other");
    // The first form sent again (its request id, as a second click would send it): the same
    // credit note, not a new one, and no error.
    b.script(&format!("document.querySelector('#credit-note-form [name=request]').value = {request};"));
    b.type_into("#credit-note-form [name='cn_amount']", "3.33");
    b.type_into("#credit-note-form [name='cn_reason']", "Dropped calls");
    b.click("#save-credit-note");
    assert_eq!(b.text("#flash"), first, "{}", b.source());
    let notes = api.get(&format!("/v1/credit-notes?customer={}", initech.0)).unwrap().json();
    let against = notes["data"].as_array().unwrap().iter().filter(|n| n["invoice"] == invoice["id"]).count();
    assert_eq!(against, 2, "one from the form, one from the API: {notes}");
    drop(site.server);
}

#[test]
fn issue_24_staff_add_a_tax_rate_and_set_a_customer_s_taxes_and_the_customer_sees_them() {
    let site = site_with(None);
    let (acme, customer, _) = site.seeded.customers[0].clone();
    let mut b = Browser::start(&site.base);
    b.login(&site.operator.0, &site.operator.1);
    b.open("/settings");
    b.click("#taxes-link");
    // Every wrong field at once; nothing added.
    b.type_into("#tax-rate-form [name='name']", " ");
    b.type_into("#tax-rate-form [name='percent']", "150");
    b.click("#save-tax-rate");
    let summary = b.text("#form-error");
    assert!(summary.contains("Name") && summary.contains("Percent"), "{summary}");
    assert!(b.text("#tax-rates").contains("No tax rates yet"), "nothing was added: {}", b.source());
    b.type_into("#tax-rate-form [name='name']", "VAT");
    b.type_into("#tax-rate-form [name='percent']", "20");
    b.click("#save-tax-rate");
    assert!(b.text("#flash").contains("The tax rate VAT 20% is added"), "{}", b.source());
    assert!(b.text("#tax-rates").contains("Tax added on top"), "{}", b.source());

    // The customer's settings: chosen by name, a bad tax id refused with nothing saved.
    b.open(&format!("/customers/{}", customer.0));
    b.click("#taxes-link");
    let vat = b.script(
        "return [...document.querySelectorAll('#tax_rate option')].find(o => o.textContent.startsWith('VAT')).value;",
    );
    b.script(&format!("document.querySelector('#tax_rate').value = {vat};"));
    b.script("document.querySelector('#taxed_at').value = 'top_up';");
    b.type_into("#tax-settings-form [name='tax_id']", &"X".repeat(65));
    b.type_into("#address", "1 High Street\nLondon");
    b.click("#save-tax-settings");
    assert!(b.text("#form-error").contains("Tax id"), "{}", b.source());
    assert!(b.text("#tax-now").contains("No tax"), "nothing was saved: {}", b.source());
    b.type_into("#tax-settings-form [name='tax_id']", "GB123456789");
    b.click("#save-tax-settings");
    assert!(b.text("#flash").contains(&format!("The tax settings of {acme} are saved")), "{}", b.source());
    let now = b.text("#tax-now");
    for wanted in ["VAT 20%", "When it tops up", "GB123456789", "High Street"] {
        assert!(now.contains(wanted), "{wanted} in {now}");
    }
    b.screenshot("taxes");

    // The customer sees its own, without the form.
    b.logout();
    b.login(&site.customer.0, &site.customer.1);
    b.open(&format!("/customers/{}/taxes", customer.0));
    assert!(b.text("#tax-now").contains("VAT 20%"), "{}", b.source());
    assert_eq!(b.count("#tax-settings-form"), 0);
    drop(site.server);
}
