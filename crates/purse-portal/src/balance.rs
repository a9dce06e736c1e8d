//! Balance Details (seed 000): the balance parts now, and for a chosen period the
//! consumption by day and by service (with a chart), the payments and recharges, the
//! journal a page at a time, and a CSV export of the period.
//!
//! A period is whole UTC days, `from` to `to` inclusive, by posting time (as the journal's
//! filter is). Consumption is what charges took from the wallet; reversals show in the
//! journal, not as negative consumption.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use purse_core::{Account, Amount, Currency, PartyKind, Timestamp, Transfer, TransferKind};
use purse_store::JournalQuery;

use super::customers::{figures, journal_table};
use super::page::{self, money};
use super::session::{PathId, Viewer};
use super::{read, PortalError};
use crate::PortalState;
use purse_app::accounts::live;
use purse_core::time;

/// The longest period one page covers, and the postings read at most for it.
const PERIOD_DAYS_MAX: i64 = 366;
const PERIOD_SCAN_MAX: usize = 500_000;
/// Journal rows per page.
const JOURNAL_PAGE: usize = 25;

/// A period as entered, with a message per field that is wrong.
struct Period {
    from_text: String,
    to_text: String,
    /// Days since the epoch, inclusive.
    days: Option<(i64, i64)>,
    from_error: Option<String>,
    to_error: Option<String>,
}

impl Period {
    /// From the query, defaulting to this month so far; days are the customer's (`zone`).
    fn of(q: &HashMap<String, String>, now: Timestamp, zone: &time::Zone) -> Period {
        let today = zone.day_of(now);
        let from_text = q.get("from").cloned().unwrap_or_else(|| time::format_date(time::month_start(today)));
        let to_text = q.get("to").cloned().unwrap_or_else(|| time::format_date(today));
        let mut p = Period { from_text, to_text, days: None, from_error: None, to_error: None };
        let from = time::parse_date(p.from_text.trim());
        let to = time::parse_date(p.to_text.trim());
        if from.is_none() {
            p.from_error = Some("Enter a date as YYYY-MM-DD.".into());
        }
        if to.is_none() {
            p.to_error = Some("Enter a date as YYYY-MM-DD.".into());
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                p.to_error = Some("The end must not be before the start.".into());
            } else if t - f >= PERIOD_DAYS_MAX {
                p.to_error = Some(format!("A period is at most {PERIOD_DAYS_MAX} days."));
            } else {
                p.days = Some((f, t));
            }
        }
        p
    }

    fn query(&self) -> String {
        serde_urlencoded::to_string([("from", self.from_text.as_str()), ("to", self.to_text.as_str())])
            .unwrap_or_default()
    }
}

/// Everything posted to the wallet in a period, newest first, with what it adds up to.
struct Report {
    entries: Vec<Transfer>,
    /// Charges by day and by service.
    by_day: BTreeMap<i64, i64>,
    by_service: BTreeMap<String, (i64, u64)>,
    /// Rated usage (usage events and calls) by destination: the rate's description and prefix.
    by_destination: BTreeMap<String, (i64, u64)>,
    consumed: i64,
    /// Payments, recharges and credits issued to the wallet.
    credits: Vec<Transfer>,
    truncated: bool,
}

/// The destination a rated charge was for, as its rate names it: "United Kingdom (44)".
fn rated_destination(t: &Transfer) -> Option<String> {
    let meta: serde_json::Value = serde_json::from_str(t.metadata.as_deref()?).ok()?;
    let rated = meta.get("rated")?;
    let prefix = rated["prefix"].as_str()?;
    let prefix = if prefix == "*" { "any" } else { prefix };
    Some(match rated["description"].as_str().filter(|d| !d.is_empty()) {
        Some(d) => format!("{d} ({prefix})"),
        None => prefix.to_owned(),
    })
}

fn report(
    s: &PortalState,
    wallet: &Account,
    from: Timestamp,
    to: Timestamp,
    zone: &time::Zone,
) -> Result<Report, PortalError> {
    let reader = s.engine.reader();
    let mut r = Report {
        entries: Vec::new(),
        by_day: BTreeMap::new(),
        by_service: BTreeMap::new(),
        by_destination: BTreeMap::new(),
        consumed: 0,
        credits: Vec::new(),
        truncated: false,
    };
    let mut before = None;
    'pages: loop {
        let page = reader.journal(JournalQuery { account: wallet.id, before, limit: 512 })?;
        for t in &page {
            before = Some(t.id);
            if t.posted_at < from {
                break 'pages;
            }
            if t.posted_at >= to {
                continue;
            }
            if r.entries.len() == PERIOD_SCAN_MAX {
                r.truncated = true;
                break 'pages;
            }
            let debited = t.debit == wallet.id;
            if debited && t.kind == TransferKind::Charge {
                *r.by_day.entry(zone.day_of(t.posted_at)).or_default() += t.amount.0;
                let service =
                    r.by_service.entry(t.service.clone().unwrap_or_else(|| "(no service)".into())).or_default();
                service.0 += t.amount.0;
                service.1 += 1;
                if let Some(destination) = rated_destination(t) {
                    let d = r.by_destination.entry(destination).or_default();
                    d.0 += t.amount.0;
                    d.1 += 1;
                }
                r.consumed += t.amount.0;
            }
            if !debited && matches!(t.kind, TransferKind::Payment | TransferKind::Recharge | TransferKind::Issue) {
                r.credits.push(t.clone());
            }
            r.entries.push(t.clone());
        }
        if page.len() < 512 {
            break;
        }
    }
    Ok(r)
}

/// A bar per day of the period, drawn on the server as SVG.
fn chart(period: (i64, i64), by_day: &BTreeMap<i64, i64>, currency: Currency) -> Markup {
    let (from, to) = period;
    let days = (to - from + 1).max(1);
    let max = by_day.values().copied().max().unwrap_or(0).max(1);
    let (width, height, left, bottom) = (720i64, 220i64, 70i64, 24i64);
    let plot_w = width - left - 10;
    let plot_h = height - bottom - 12;
    let bar_w = (plot_w / days).max(1);
    html! {
        svg.chart id="consumption-chart" viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="Consumption by day" xmlns="http://www.w3.org/2000/svg" {
            line x1=(left) y1=(12) x2=(left) y2=(12 + plot_h) {}
            line x1=(left) y1=(12 + plot_h) x2=(width - 10) y2=(12 + plot_h) {}
            text x=(left - 6) y=(16) text-anchor="end" { (page::grouped(&currency.format(Amount(max)))) }
            text x=(left - 6) y=(12 + plot_h) text-anchor="end" { "0" }
            @for (day, amount) in by_day {
                @let x = left + (day - from) * plot_w / days;
                @let h = (i128::from(*amount) * i128::from(plot_h) / i128::from(max)) as i64;
                rect.bar x=(x + 1) y=(12 + plot_h - h) width=((bar_w - 2).max(1)) height=(h) {
                    title { (time::format_day(*day)) ": " (money(currency, Amount(*amount))) }
                }
            }
            text x=(left) y=(height - 6) { (time::format_day(from)) }
            text x=(width - 10) y=(height - 6) text-anchor="end" { (time::format_day(to)) }
        }
    }
}

struct Details {
    name: String,
    wallet: Account,
    available: i128,
    currency: Currency,
    report: Option<Report>,
    /// Usage invoices issued in the period (not void): how many, and their total.
    invoiced: (usize, i64),
    recharge: serde_json::Value,
    /// The credit grants in force.
    grants: Vec<purse_core::Grant>,
}

async fn load(
    state: &PortalState,
    viewer: &Viewer,
    id: u64,
    days: Option<(i64, i64)>,
    zone: time::Zone,
) -> Result<Details, PortalError> {
    let who = viewer.who;
    read(state, move |s| {
        let party = s.party_for(&who, id)?;
        let PartyKind::Customer { wallet, .. } = party.kind else { return Err(PortalError::NotFound) };
        let account = s.engine.reader().account(wallet)?.ok_or(PortalError::NotFound)?;
        let (wallet, available, currency) = live(s, &account)?;
        let (report, invoiced) = match days {
            Some((f, t)) => {
                let (from, to) = (zone.day_start(f), zone.day_start(t + 1));
                let issued: Vec<_> = s
                    .payments
                    .invoices(Some(party.id), 1000)?
                    .into_iter()
                    .filter(|i| {
                        i.kind == purse_store::InvoiceKind::Usage && i.status != purse_store::InvoiceStatus::Void
                    })
                    .filter(|i| i.created_at >= from && i.created_at < to)
                    .collect();
                (Some(report(s, &wallet, from, to, &zone)?), (issued.len(), issued.iter().map(|i| i.amount).sum()))
            }
            None => (None, (0, 0)),
        };
        let recharge = purse_app::payments::settings_view(s, &party, &currency)?;
        let grants = s.grants_of(&who, id, true, 50)?;
        Ok(Details { name: party.name, wallet, available, currency, report, invoiced, recharge, grants })
    })
    .await
}

/// `/customers/{id}/balance` for staff (and a customer admin's own id).
pub async fn details(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    render(&state, &viewer, id, &q).await
}

/// Settings → Account Settings → Billing → Balance Details, for a customer admin.
pub async fn own_details(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    let id = viewer.own_customer().ok_or(PortalError::NotFound)?;
    render(&state, &viewer, id, &q).await
}

/// The customer's time zone, which its days are counted in (whose customer it is, `load`
/// checks).
async fn zone_of(state: &PortalState, id: u64) -> Result<time::Zone, PortalError> {
    read(state, move |s| Ok(s.zone_of(purse_core::PartyId(id))?)).await
}

async fn render(
    state: &PortalState,
    viewer: &Viewer,
    id: u64,
    q: &HashMap<String, String>,
) -> Result<Response, PortalError> {
    let zone = zone_of(state, id).await?;
    let period = Period::of(q, state.engine.clock().now(), &zone);
    let page_no = match q.get("page").map(|p| p.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n >= 1 => n - 1,
        Some(_) => return Err(PortalError::BadRequest("page must be a number from 1".into())),
    };
    let d = load(state, viewer, id, period.days, zone.clone()).await?;
    let own = viewer.own_customer() == Some(id);
    let base =
        if own { "/settings/account/billing/balance-details".to_owned() } else { format!("/customers/{id}/balance") };
    let c = d.currency;
    let body = html! {
        (figures(viewer, &d.wallet, d.available, c))
        (super::payments::summary(&d.recharge, id))
        @if !d.grants.is_empty() {
            h2 { "Credit grants in force" }
            p.muted { "Included in the available balance for the services they are for; each grant's page says what it paid." }
            (super::grants::table(viewer, "balance-grants", &d.grants, c))
        }
        form.filters method="get" action=(base) id="period" {
            (page::field("From", "from", "date", &period.from_text, period.from_error.as_deref()))
            (page::field("To", "to", "date", &period.to_text, period.to_error.as_deref()))
            button type="submit" id="show-period" { "Show" }
            @if period.days.is_some() {
                a.button.secondary href=(format!("/customers/{id}/balance.csv?{}", period.query())) id="export" download { "Export CSV" }
            }
        }
        @if let (Some(r), Some(days)) = (&d.report, period.days) {
            @if r.truncated { p.notice.bad { "This period has more postings than one page can add up; choose a shorter one." } }
            h2 { "Consumption" " " span.muted { (money(c, Amount(r.consumed))) } }
            ul.facts id="invoiced-period" {
                li { span { "Invoiced in this period" } " " strong id="invoiced" { (money(c, Amount(d.invoiced.1))) } " " span.muted { (if d.invoiced.0 == 1 { "1 invoice".to_owned() } else { format!("{} invoices", d.invoiced.0) }) } }
                li { span { "Uninvoiced now" } " " strong id="uninvoiced-now" { (money(c, d.wallet.uninvoiced)) } }
                li { a href=(format!("/customers/{id}/invoices")) id="invoices-link" { "Invoices and payments →" } }
            }
            (chart(days, &r.by_day, c))
            div.scroll {
                table id="by-service" {
                    thead { tr { th { "Service" } th.num { "Charges" } th.num { "Amount" } } }
                    tbody {
                        @for (service, (amount, count)) in &r.by_service {
                            tr { td { (service) } td.num { (count) } td.num { (money(c, Amount(*amount))) } }
                        }
                        @if r.by_service.is_empty() { tr { td colspan="3" .muted { "No consumption in this period." } } }
                    }
                }
            }
            @if !r.by_destination.is_empty() {
                h2 { "Rated usage by destination" }
                div.scroll {
                    table id="by-destination" {
                        thead { tr { th { "Destination" } th.num { "Charges" } th.num { "Amount" } } }
                        tbody {
                            @for (destination, (amount, count)) in &r.by_destination {
                                tr { td { (destination) } td.num { (count) } td.num { (money(c, Amount(*amount))) } }
                            }
                        }
                    }
                }
            }
            h2 { "By day" }
            div.scroll {
                table id="by-day" {
                    thead { tr { th { "Day" } th.num { "Amount" } } }
                    tbody {
                        @for (day, amount) in r.by_day.iter().rev() {
                            tr { td { (time::format_day(*day)) } td.num { (money(c, Amount(*amount))) } }
                        }
                    }
                }
            }
            h2 { "Payments and recharges" }
            div.scroll {
                table id="credits" {
                    thead { tr { th { "Posted" } th { "Kind" } th.num { "Amount" } } }
                    tbody {
                        @for t in &r.credits {
                            tr { td { (viewer.when(t.posted_at)) } td { (page::words(t.kind.as_str())) } td.num { (money(c, t.amount)) } }
                        }
                        @if r.credits.is_empty() { tr { td colspan="3" .muted { "No payments or recharges in this period." } } }
                    }
                }
            }
            @let pages = r.entries.len().div_ceil(JOURNAL_PAGE).max(1);
            @let shown = r.entries.iter().skip(page_no * JOURNAL_PAGE).take(JOURNAL_PAGE).cloned().collect::<Vec<_>>();
            h2 { "Journal " span.muted { (r.entries.len()) " postings" } }
            (journal_table(viewer, "journal", &d.wallet, c, &shown))
            div.pager {
                @if page_no > 0 { a id="prev" href=(format!("{base}?{}&page={}", period.query(), page_no)) { "← Newer" } }
                span.muted { "Page " (page_no + 1) " of " (pages) }
                @if page_no + 1 < pages { a id="older" href=(format!("{base}?{}&page={}", period.query(), page_no + 2)) { "Older →" } }
            }
        }
    };
    let crumbs: Vec<(&str, &str)> = if own {
        vec![
            ("Settings", "/settings"),
            ("Account Settings", "/settings/account"),
            ("Billing", "/settings/account/billing"),
            ("Balance Details", ""),
        ]
    } else {
        vec![("Customers", "/customers"), (d.name.as_str(), ""), ("Balance Details", "")]
    };
    let customer_link = format!("/customers/{id}");
    let crumbs: Vec<(&str, &str)> = crumbs
        .into_iter()
        .map(|(label, href)| if label == d.name { (label, customer_link.as_str()) } else { (label, href) })
        .collect();
    let title = if own { "Balance Details".to_owned() } else { format!("Balance Details · {}", d.name) };
    Ok(page::ok(page::layout(&title, Some(viewer), &crumbs, body)))
}

/// `/customers/{id}/balance.csv?from=&to=`: every posting of the period, oldest first.
pub async fn csv(
    State(state): State<PortalState>,
    viewer: Viewer,
    PathId(id): PathId,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    let zone = zone_of(&state, id).await?;
    let period = Period::of(&q, state.engine.clock().now(), &zone);
    let Some(days) = period.days else {
        let message = period.from_error.or(period.to_error).unwrap_or_default();
        return Err(PortalError::BadRequest(format!("from/to: {message}")));
    };
    let d = load(&state, &viewer, id, Some(days), zone).await?;
    let report = d.report.ok_or(PortalError::NotFound)?;
    if report.truncated {
        return Err(PortalError::BadRequest(
            "The period has too many postings for one export; choose a shorter one.".into(),
        ));
    }
    let (c, wallet, who) = (d.currency, d.wallet.id, viewer.who);
    // Up to PERIOD_SCAN_MAX lines: written on the blocking pool like the scan, so an export
    // never holds the runtime's worker that answers charges (one on 2 cores).
    let out = read(&state, move |_| {
        let mut out = String::from("transfer_id,posted_at,at,kind,service,client_id,amount,balance_after,currency\n");
        for t in report.entries.iter().rev() {
            let debited = t.debit == wallet;
            let change = if debited { Amount(-t.amount.0) } else { t.amount };
            let after = if debited { t.debit_balance } else { t.credit_balance };
            let fields = [
                t.id.0.to_string(),
                time::format(t.posted_at),
                time::format(t.at),
                t.kind.as_str().to_owned(),
                t.service.clone().unwrap_or_default(),
                who.shown_client_id(&t.client_id),
                c.format(change),
                c.format(after),
                c.code.to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        Ok(out)
    })
    .await?;
    let name = format!("balance-{id}-{}-{}.csv", time::format_date(days.0), time::format_date(days.1));
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| PortalError::Internal(e.to_string()))?;
    response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A CSV field, quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(text: &str) -> String {
    let guarded =
        if text.starts_with(['=', '+', '@', '\t', '\r']) || (text.starts_with('-') && text.parse::<f64>().is_err()) {
            format!("'{text}")
        } else {
            text.to_owned()
        };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-12.50"), "-12.50");
        assert_eq!(csv_field("-cmd"), "'-cmd");
    }

    #[test]
    fn periods_are_validated_per_field() {
        let now = time::parse("2026-11-22T10:00:00Z").unwrap();
        let q = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>()
        };
        let p = Period::of(&q(&[]), now, &time::Zone::utc());
        assert_eq!((p.from_text.as_str(), p.to_text.as_str()), ("2026-11-01", "2026-11-22"));
        assert!(p.days.is_some());
        let p = Period::of(&q(&[("from", "2026-11-30"), ("to", "2026-11-01")]), now, &time::Zone::utc());
        assert!(p.days.is_none() && p.to_error.is_some() && p.from_error.is_none());
        let p = Period::of(&q(&[("from", "nope"), ("to", "2026-11-01")]), now, &time::Zone::utc());
        assert!(p.from_error.is_some() && p.to_error.is_none());
        let p = Period::of(&q(&[("from", "2024-01-01"), ("to", "2026-01-01")]), now, &time::Zone::utc());
        assert!(p.to_error.unwrap().contains("366"));
    }
}
