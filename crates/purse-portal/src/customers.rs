//! The customers list (operators and resellers) and a customer's page.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use purse_core::{Account, AccountKind, AccountStatus, Amount, Currency, Party, PartyId, PartyKind, Role, Transfer};
use purse_store::{JournalQuery, PartyQuery};

use super::page::{self, money, select};
use super::session::{Form, PathId, Viewer};
use super::{done, read, PortalError};
use crate::PortalState;
use purse_app::accounts::live;
use purse_app::parse::clamp;

/// Customers shown per page of the list, and parties read at most to fill one.
const PAGE_ROWS: usize = 50;
const SCAN_MAX: usize = 2_000;
/// Postings on a customer's page.
const RECENT_POSTINGS: u32 = 20;

/// How a customer's wallet stands, at a glance.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Ok,
    /// Available below the highest of its thresholds.
    Low,
    /// Nothing left to spend.
    Exhausted,
    /// Its customer is suspended: nothing is spent until it is lifted.
    Suspended,
    Closed,
}

impl Standing {
    pub const ALL: [Standing; 5] =
        [Standing::Ok, Standing::Low, Standing::Exhausted, Standing::Suspended, Standing::Closed];

    pub fn of(wallet: &Account, available: i128) -> Standing {
        if wallet.status == AccountStatus::Closed {
            Standing::Closed
        } else if wallet.status == AccountStatus::Suspended {
            Standing::Suspended
        } else if available <= 0 {
            Standing::Exhausted
        } else if wallet.thresholds.iter().any(|t| available < i128::from(t.0)) {
            Standing::Low
        } else {
            Standing::Ok
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Ok => "ok",
            Standing::Low => "low",
            Standing::Exhausted => "exhausted",
            Standing::Suspended => "suspended",
            Standing::Closed => "closed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Standing::Ok => "OK",
            Standing::Low => "Low",
            Standing::Exhausted => "No funds",
            Standing::Suspended => "Suspended",
            Standing::Closed => "Closed",
        }
    }

    pub fn badge(self) -> Markup {
        html! { span class=(format!("badge {}", self.as_str())) { (self.label()) } }
    }
}

struct Row {
    party: Party,
    wallet: Account,
    available: i128,
    currency: Currency,
    standing: Standing,
}

/// `/customers?q=&status=&after=`: search by name or client id, filter by standing.
pub async fn list(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    // The list is the staff's way in; a customer's own page is its home.
    if viewer.own_customer().is_some() {
        return Err(PortalError::NotFound);
    }
    let search = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let status_text = q.get("status").cloned().unwrap_or_default();
    let status = match status_text.as_str() {
        "" => Ok(None),
        s => Standing::ALL.into_iter().find(|x| x.as_str() == s).map(Some).ok_or("Choose one of the listed statuses."),
    };
    let after = match q.get("after").map(|a| a.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(a)) => Ok(Some(PartyId(a))),
        Some(Err(_)) => Err(PortalError::BadRequest("after must be a customer id".into())),
    }?;
    let reseller = match viewer.user.role {
        Role::Reseller(r) => Some(r),
        _ => None,
    };
    let wanted = *status.as_ref().unwrap_or(&None);
    let lowered = (!search.is_empty()).then(|| search.to_lowercase());
    let (rows, next) = read(&state, move |s| {
        let reader = s.engine.reader();
        let mut rows = Vec::new();
        let mut cursor = after;
        let mut scanned = 0;
        loop {
            let query =
                PartyQuery { resellers: Some(false), reseller, after: cursor, search: lowered.clone(), limit: 100 };
            let page = reader.parties(query)?;
            for party in &page {
                scanned += 1;
                cursor = Some(party.id);
                let PartyKind::Customer { wallet, .. } = party.kind else { continue };
                let Some(account) = reader.account(wallet)? else { continue };
                let (wallet, available, currency) = live(s, &account)?;
                let standing = Standing::of(&wallet, available);
                if wanted.is_none_or(|w| w == standing) {
                    rows.push(Row { party: party.clone(), wallet, available, currency, standing });
                    if rows.len() == PAGE_ROWS {
                        return Ok((rows, cursor));
                    }
                }
            }
            if page.len() < 100 {
                return Ok((rows, None));
            }
            if scanned >= SCAN_MAX {
                return Ok((rows, cursor));
            }
        }
    })
    .await?;
    let statuses: Vec<(&str, &str)> =
        std::iter::once(("", "Any status")).chain(Standing::ALL.iter().map(|s| (s.as_str(), s.label()))).collect();
    let next_link = next.map(|c| {
        let query = serde_urlencoded::to_string([
            ("q", search.as_str()),
            ("status", status_text.as_str()),
            ("after", &c.0.to_string()),
        ]);
        format!("/customers?{}", query.unwrap_or_default())
    });
    let body = html! {
        form.filters method="get" action="/customers" {
            (page::field("Search", "q", "search", &search, None))
            (select("Status", "status", &statuses, &status_text, status.err()))
            button type="submit" id="search" { "Search" }
        }
        div.scroll {
            table id="customers" {
                thead { tr {
                    th { "Customer" } th.optional { "Client id" } th { "Billing" }
                    th.num { "Balance" } th.num { "Available" } th { "Status" }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { a href=(format!("/customers/{}", r.party.id.0)) { (r.party.name) } }
                            td.optional { (viewer.who.shown_client_id(&r.party.client_id)) }
                            td { (billing(&r.party)) }
                            td.num.neg[r.wallet.balance.0 < 0] { (money(r.currency, r.wallet.balance)) }
                            td.num.neg[r.available < 0] { (money(r.currency, clamp(r.available))) }
                            td { (r.standing.badge()) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="6" .muted { "No customer matches." } } }
                }
            }
        }
        @if let Some(link) = next_link { div.pager { a href=(link) id="next" { "Next page →" } } }
    };
    Ok(page::ok(page::layout("Customers", Some(&viewer), &[], body)))
}

pub fn billing(party: &Party) -> &'static str {
    match party.kind {
        PartyKind::Customer { billing, .. } => match billing {
            purse_core::Billing::Prepaid => "Prepaid",
            purse_core::Billing::Postpaid => "Postpaid",
        },
        PartyKind::Reseller => "Reseller",
    }
}

pub fn kind_name(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Wallet => "Wallet",
        AccountKind::MasterWallet => "Master wallet",
        AccountKind::SubscriberDebit => "Subscriber (debit)",
        AccountKind::SubscriberCredit { .. } => "Subscriber (credit)",
        AccountKind::System(_) => "System",
    }
}

/// An account's balance parts, as the figures at the top of a page.
pub fn figures(viewer: &Viewer, a: &Account, available: i128, currency: Currency) -> Markup {
    let increase = a.temporary_increase.map(|t| t.amount).unwrap_or(Amount::ZERO);
    html! {
        div.figures id="figures" {
            div.figure.main { div.label { "Available balance" } div.value id="available" { (money(currency, clamp(available))) } }
            div.figure { div.label { "Balance" } div.value id="balance" { (money(currency, a.balance)) } }
            div.figure { div.label { "Reserved" } div.value id="reserved" { (money(currency, a.reserved)) } }
            div.figure { div.label { "Uninvoiced amount" } div.value id="uninvoiced" { (money(currency, a.uninvoiced)) } }
            div.figure { div.label { "Credit limit" } div.value id="credit-limit" { (money(currency, a.credit_limit)) } }
            @if let Some(t) = a.temporary_increase {
                div.figure { div.label { "Temporary increase" } div.value { (money(currency, increase)) } div.muted { "until " (viewer.when(t.valid_until)) } }
            }
        }
    }
}

/// Journal rows of `account`: time, kind, service, change, balance after.
pub fn journal_table(viewer: &Viewer, id: &str, account: &Account, currency: Currency, entries: &[Transfer]) -> Markup {
    html! {
        div.scroll {
            table id=(id) {
                @let staff = viewer.may(purse_app::policy::Action::CreateAdjustment);
                thead { tr { th { "Posted" } th { "Kind" } th.optional { "Service" } th.num { "Amount" } th.num { "Balance after" } @if staff { th {} } } }
                tbody {
                    @for t in entries {
                        @let debited = t.debit == account.id;
                        tr {
                            td { (viewer.when(t.posted_at)) }
                            td { (page::words(t.kind.as_str())) }
                            td.optional { (t.service.as_deref().unwrap_or("")) }
                            td.num.neg[debited] { (money(currency, if debited { Amount(-t.amount.0) } else { t.amount })) }
                            td.num { (money(currency, if debited { t.debit_balance } else { t.credit_balance })) }
                            @if staff {
                                td { @if crate::adjust::reversible(t.kind) { a href=(format!("/transfers/{}/adjust", t.id.0)) class="reverse-link" { "Reverse…" } } }
                            }
                        }
                    }
                    @if entries.is_empty() { tr { td colspan="6" .muted { "No postings." } } }
                }
            }
        }
    }
}

struct Overview {
    party: Party,
    wallet: Option<(Account, i128, Currency)>,
    subscribers: Vec<(Account, i128, Currency)>,
    recent: Vec<Transfer>,
    /// Its credit grants in force.
    grants: Vec<purse_core::Grant>,
    /// Its suspension in force.
    suspension: Option<purse_store::Suspension>,
    /// Its rate plan, the plans the viewer may give it, its calls in progress.
    #[allow(clippy::type_complexity)]
    rating: (
        Option<purse_store::RatePlan>,
        Vec<purse_store::RatePlan>,
        Vec<serde_json::Value>,
        Vec<purse_store::UnratedUsage>,
    ),
}

/// `/customers/{id}`: overview, subscriber accounts, recent journal.
pub async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
) -> Result<Response, PortalError> {
    render(state, std::sync::Arc::new(viewer), id, None, Vec::new()).await
}

/// The customer's page; after a refused transfer, with what was entered and what is wrong.
async fn render(
    state: PortalState,
    viewer: std::sync::Arc<Viewer>,
    id: u64,
    entered: Option<HashMap<String, String>>,
    error: page::Errors,
) -> Result<Response, PortalError> {
    let who = viewer.who;
    let o = read(&state, move |s| {
        let party = s.party_for(&who, id)?;
        let PartyKind::Customer { wallet, .. } = party.kind else { return Err(PortalError::NotFound) };
        let plan = s.customer_plan(party.id)?;
        let plans = if who.is_operator() || matches!(who.role, Role::Reseller(_)) {
            s.list_plans(&who)?
                .into_iter()
                .filter(|p| who.is_operator() || matches!(who.role, Role::Reseller(r) if p.owner == Some(r)))
                .collect()
        } else {
            Vec::new()
        };
        let sessions = s.list_sessions(&who, Some(id), true)?;
        let unrated = s.unrated_usage(&who, Some(id))?;
        let mut overview = Overview {
            party,
            wallet: None,
            subscribers: Vec::new(),
            recent: Vec::new(),
            grants: s.grants_of(&who, id, true, 50)?,
            rating: (plan, plans, sessions, unrated),
            suspension: s.payments.suspension(PartyId(id))?,
        };
        for a in s.engine.reader().accounts_of(PartyId(id))? {
            let live = live(s, &a)?;
            if a.id == wallet {
                overview.recent =
                    s.engine.reader().journal(JournalQuery { account: a.id, before: None, limit: RECENT_POSTINGS })?;
                overview.wallet = Some(live);
            } else {
                overview.subscribers.push(live);
            }
        }
        Ok(overview)
    })
    .await?;
    let Some((wallet, available, currency)) = &o.wallet else { return Err(PortalError::NotFound) };
    let details = if viewer.own_customer().is_some() {
        "/settings/account/billing/balance-details".to_owned()
    } else {
        format!("/customers/{id}/balance")
    };
    // Offered to whoever the policy lets move money out of the customer's accounts.
    let transfers = viewer.may(purse_app::policy::Action::CreateTransfer)
        && purse_app::policy::may_move_from(viewer.user.role, wallet)
        && !o.subscribers.is_empty();
    let body = html! {
        (page::summary(&error))
        p.muted {
            (billing(&o.party)) " customer · " (currency.code) " · client id " (viewer.who.shown_client_id(&o.party.client_id))
            " · " (Standing::of(wallet, *available).badge())
        }
        (crate::collections::banner(&viewer, id, o.suspension.as_ref()))
        (figures(&viewer, wallet, *available, *currency))
        p { a href=(details) id="balance-details" { "Balance Details →" } " · " a href=(format!("/customers/{id}/alerts")) id="alerts" { "Alerts and warning thresholds →" } " · " a href=(format!("/customers/{id}/recharge")) id="payment-settings" { "Payment settings and Pay Now →" } " · " a href=(format!("/customers/{id}/credit")) id="balance-credits" { "Balance & Credits →" } " · " a href=(format!("/customers/{id}/invoices")) id="invoices" { "Invoices and payments →" } " · " a href=(format!("/customers/{id}/grants")) id="grants-link" { "Credit grants →" } " · " a href=(format!("/customers/{id}/adjustments")) id="adjustments-link" { "Adjustments →" } " · " a href=(format!("/customers/{id}/taxes")) id="taxes-link" { "Taxes →" } }
        h2 { "Subscriber accounts" }
        div.scroll {
            table id="subscribers" {
                thead { tr { th { "Account" } th { "Kind" } th { "Status" } th.num { "Balance" } th.num { "Available" } } }
                tbody {
                    @for (a, available, c) in &o.subscribers {
                        tr {
                            td { (a.client_id.as_ref().map_or_else(|| a.id.0.to_string(), |c| viewer.who.shown_client_id(c))) }
                            td { (kind_name(a.kind)) }
                            td { (match a.status { AccountStatus::Open => "Open", AccountStatus::Suspended => "Suspended", AccountStatus::Closed => "Closed" }) }
                            td.num { (money(*c, a.balance)) }
                            td.num { (money(*c, clamp(*available))) }
                        }
                    }
                    @if o.subscribers.is_empty() { tr { td colspan="5" .muted { "No subscriber accounts." } } }
                }
            }
        }
        @if transfers {
            (transfer_form(&viewer, id, wallet, &o.subscribers, *currency, entered.as_ref(), &error)?)
        }
        @if !o.grants.is_empty() {
            h2 { "Credit grants in force" }
            (crate::grants::table(&viewer, "customer-grants", &o.grants, *currency))
        }
        (crate::rating::customer_section(&viewer, id, o.rating.0.as_ref(), &o.rating.1, &o.rating.2, &o.rating.3))
        h2 { "Recent postings" }
        (journal_table(&viewer, "recent", wallet, *currency, &o.recent))
    };
    let crumbs: Vec<(&str, &str)> = if viewer.own_customer().is_none() {
        vec![("Customers", "/customers"), (o.party.name.as_str(), "")]
    } else {
        Vec::new()
    };
    let response = page::layout(&o.party.name, Some(&viewer), &crumbs, body);
    Ok(if error.is_empty() { page::ok(response) } else { page::respond(StatusCode::UNPROCESSABLE_ENTITY, response) })
}

/// An account of the customer as its users know it: the wallet, or a subscriber account by
/// its client id.
fn account_name(viewer: &Viewer, a: &Account) -> String {
    match (a.kind, &a.client_id) {
        (AccountKind::Wallet, _) => "Main wallet".to_owned(),
        (_, Some(c)) => viewer.who.shown_client_id(c),
        (kind, None) => kind_name(kind).to_owned(),
    }
}

/// Moving funds between the customer's own accounts (seed 003's subscriber-to-subscriber
/// transfers, when its class or its settings allow them).
fn transfer_form(
    viewer: &Viewer,
    id: u64,
    wallet: &Account,
    subscribers: &[(Account, i128, Currency)],
    currency: Currency,
    entered: Option<&HashMap<String, String>>,
    error: &page::Errors,
) -> Result<Markup, PortalError> {
    let value = |k: &str| entered.and_then(|e| e.get(k).cloned()).unwrap_or_default();
    let request = page::request_id(&entered.cloned().unwrap_or_default())?;
    let choices: Vec<(String, String)> = std::iter::once(wallet)
        .chain(subscribers.iter().map(|(a, _, _)| a))
        .filter(|a| a.status == AccountStatus::Open && a.currency == currency.code)
        .map(|a| (a.id.0.to_string(), account_name(viewer, a)))
        .collect();
    let options: Vec<(&str, &str)> =
        std::iter::once(("", "Choose…")).chain(choices.iter().map(|(v, l)| (v.as_str(), l.as_str()))).collect();
    let error_for = |f: &str| error.iter().find(|(k, _)| k == f).map(|(_, m)| m.as_str());
    Ok(html! {
        h2 { "Move funds between accounts" }
        form.card method="post" action=(format!("/customers/{id}/transfers")) id="transfer-form" {
            input type="hidden" name="csrf" value=(viewer.csrf); (crate::once::field())
            input type="hidden" name="request" value=(request);
            (select("From", "from", &options, &value("from"), error_for("from")))
            (select("To", "to", &options, &value("to"), error_for("to")))
            (page::field(&format!("Amount ({})", currency.code), "amount", "text", &value("amount"), error_for("amount")))
            @if viewer.own_customer() != Some(id) {
                (page::field("Reason (kept in the audit log)", "reason", "text", &value("reason"), error_for("reason")))
            }
            p.muted { "The account the funds leave needs them available; transfers between subscriber accounts follow the customer's class or its own setting." }
            button type="submit" id="transfer" { "Move funds" }
        }
    })
}

/// Moves funds between two of the customer's own accounts: as its own user asked, or on its
/// behalf by whoever the policy lets move them (with a reason, kept in the audit log).
pub async fn transfer(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    form: Form,
) -> Result<Response, PortalError> {
    viewer.check(&form)?;
    let entered = form.entered(&["from", "to", "amount", "reason", "request"]);
    let viewer = std::sync::Arc::new(viewer);
    let (v, e) = (viewer.clone(), entered.clone());
    let moved = read(&state, move |s| {
        let party = s.party_for(&v.who, id)?;
        let accounts = s.engine.reader().accounts_of(party.id)?;
        let pick = |field: &str| e[field].parse::<u64>().ok().and_then(|n| accounts.iter().find(|a| a.id.0 == n));
        let (from, to) = (pick("from"), pick("to"));
        let mut errors: page::Errors = Vec::new();
        if from.is_none() {
            errors.push(("from".into(), "choose the account the funds leave".into()));
        }
        match (from, to) {
            (_, None) => errors.push(("to".into(), "choose the account the funds go to".into())),
            (Some(f), Some(t)) if f.id == t.id => {
                errors.push(("to".into(), "choose another account than the one the funds leave".into()));
            }
            _ => {}
        }
        let wallet = accounts.iter().find(|a| a.kind == AccountKind::Wallet).ok_or(PortalError::NotFound)?;
        let c = s.currency("currency", wallet.currency)?;
        // Each field's own rule, in people's words; every wrong field is told at once.
        let amount = noted(
            purse_app::parse::amount("amount", &e["amount"], c).and_then(|a| purse_app::parse::positive("amount", a)),
            &mut errors,
        )?;
        let reason = noted(purse_app::parse::reason_text(Some(&e["reason"])), &mut errors)?.flatten();
        let (Some(from), Some(to), Some(amount), true) = (from, to, amount, errors.is_empty()) else {
            return Err(PortalError::Fields(errors));
        };
        let client_id = v.who.client_id("request", &e["request"]).map_err(PortalError::keep_field)?;
        let money = purse_core::Money { amount, currency: wallet.currency };
        let command = purse_app::accounts::transfer_command(
            s,
            &v.who,
            client_id,
            from.id.0,
            to.id.0,
            money,
            purse_core::TransferKind::Transfer,
            reason,
            None,
        )
        .map_err(|err| match err {
            purse_app::AppError::Rejected(r) => PortalError::field(form_field(r.field()), r.to_string()),
            other => match PortalError::keep_field(other) {
                PortalError::Fields(each) => {
                    PortalError::Fields(each.into_iter().map(|(f, m)| (form_field(Some(&f)).to_owned(), m)).collect())
                }
                other => other,
            },
        })?;
        let results = s.engine.submit(vec![purse_core::Item::single(command)]).map_err(purse_app::AppError::from)?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(format!(
                "Moved {} from {} to {}.",
                page::money(c, amount),
                account_name(&v, from),
                account_name(&v, to)
            )),
            Some(Err(r)) => Err(PortalError::field(form_field(r.field()), r.to_string())),
            None => Err(PortalError::Internal("the engine answered nothing".into())),
        }
    })
    .await;
    match moved {
        Ok(message) => Ok(done(&format!("/customers/{id}"), &message)),
        Err(PortalError::Fields(errors)) => render(state, viewer, id, Some(entered), errors).await,
        Err(other) => Err(other),
    }
}

/// A field's value, or its error added to `errors` (in people's words).
fn noted<T>(result: Result<T, purse_app::AppError>, errors: &mut page::Errors) -> Result<Option<T>, PortalError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(err) => match PortalError::keep_field(err) {
            PortalError::Fields(each) => {
                errors.extend(each);
                Ok(None)
            }
            other => Err(other),
        },
    }
}

/// The form's field for what the application or the ledger says is wrong.
fn form_field(field: Option<&str>) -> &'static str {
    match field {
        Some("source" | "account" | "from") => "from",
        Some("target" | "to") => "to",
        Some("reason") => "reason",
        _ => "amount",
    }
}
