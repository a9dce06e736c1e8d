//! The client commands of the `purse` CLI: each calls the HTTP API of a running server
//! (base URL and key from flags, `PURSE_URL`/`PURSE_API_KEY`, or `url`/`api_key` in the
//! configuration) and prints a table, or the API's JSON with `--json`.

use serde_json::{json, Value};

use crate::client::Client;
use crate::ids::{uuid_v4, Rng};

/// Rows per request when importing a CSV of usage.
pub const IMPORT_CHUNK: usize = 1000;

pub struct Remote {
    client: Client,
    rng: Rng,
    pub json: bool,
}

impl Remote {
    pub fn new(url: &str, key: &str, json: bool) -> crate::error::Result<Remote> {
        Ok(Remote { client: Client::new(url, Some(key.to_owned()))?, rng: Rng::from_kernel(), json })
    }

    pub fn fresh_id(&mut self) -> String {
        uuid_v4(&mut self.rng)
    }

    fn check(reply: crate::client::Reply) -> crate::error::Result<Value> {
        Self::refused(reply).map_err(Self::error)
    }

    /// A refusal as the CLI prints it: status, code, message and field.
    fn error((status, e): (u16, Value)) -> crate::Error {
        let field = e["field"].as_str().map(|f| format!(" (field {f})")).unwrap_or_default();
        crate::Error::Remote(format!(
            "{status} {}: {}{field}",
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("")
        ))
    }

    /// The body of a 2xx answer, or the status and the error object of any other.
    fn refused(reply: crate::client::Reply) -> Result<Value, (u16, Value)> {
        let body = reply.json();
        if (200..300).contains(&reply.status) {
            Ok(body)
        } else {
            Err((reply.status, body["error"].clone()))
        }
    }

    pub fn get(&mut self, path: &str) -> crate::error::Result<Value> {
        Self::check(self.client.get(path)?)
    }

    pub fn post(&mut self, path: &str, body: &Value) -> crate::error::Result<Value> {
        self.send("POST", path, body)
    }

    pub fn send(&mut self, method: &str, path: &str, body: &Value) -> crate::error::Result<Value> {
        self.try_send(method, path, body)?.map_err(Self::error)
    }

    /// A request whose refusal (status and error object) the caller reads itself.
    fn try_send(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> crate::error::Result<Result<Value, (u16, Value)>> {
        let key = self.fresh_id();
        Ok(Self::refused(self.client.send(method, path, body, &key)?))
    }

    /// The JSON as the API answered, or `table` of it.
    pub fn show(&self, value: &Value, table: impl FnOnce(&Value) -> String) -> String {
        if self.json {
            format!("{value}\n")
        } else {
            table(value)
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain table: a header and one line per row, columns padded to their widest cell.
pub fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| (*c).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn rows(value: &Value, key: &str, fields: &[&str]) -> Vec<Vec<String>> {
    value[key]
        .as_array()
        .map_or_else(Vec::new, |items| items.iter().map(|i| fields.iter().map(|f| text(&i[*f])).collect()).collect())
}

pub fn customers_table(v: &Value) -> String {
    let fields = ["id", "name", "billing", "currency", "reseller", "wallet"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn grants_table(v: &Value) -> String {
    let fields = ["id", "kind", "amount", "remaining", "currency", "priority", "expires_at", "state"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn accounts_table(v: &Value) -> String {
    let fields = ["id", "kind", "party", "currency", "balance", "reserved", "credit_limit", "available", "status"];
    let list = if v.get("data").is_some() {
        rows(v, "data", &fields)
    } else {
        vec![fields.iter().map(|f| text(&v[*f])).collect()]
    };
    table(&fields, &list)
}

pub fn journal_table(v: &Value) -> String {
    let fields = ["id", "posted_at", "kind", "change", "balance_after", "service", "counterparty", "client_id"];
    let mut out = table(&fields, &rows(v, "data", &fields));
    if let Some(next) = v["next_before"].as_u64() {
        out.push_str(&format!("(more: --before {next})\n"));
    }
    out
}

pub fn balances_table(v: &Value) -> String {
    let fields = ["id", "kind", "party", "currency", "balance", "reserved", "available"];
    let mut out = table(&fields, &rows(v, "accounts", &fields));
    out.push_str(&format!("\nas of {}\n", text(&v["as_of"])));
    if let Some(totals) = v["totals"].as_object() {
        let rows: Vec<Vec<String>> = totals
            .iter()
            .map(|(c, t)| {
                vec![
                    c.clone(),
                    text(&t["customer_accounts"]),
                    text(&t["reserved"]),
                    text(&t["all_accounts"]),
                    text(&t["accounts"]),
                ]
            })
            .collect();
        out.push_str(&table(&["currency", "customer_accounts", "reserved", "all_accounts", "accounts"], &rows));
    }
    out
}

pub fn posted_line(v: &Value) -> String {
    let replayed = if v["replayed"] == json!(true) { " (replayed: already posted)" } else { "" };
    let overdrawn = if v["overdrawn"] == json!(true) { ", overdrawn" } else { "" };
    format!("posted transfer {}{overdrawn}{replayed}\n", text(&v["transfer"]))
}

/// What a usage file holds, by its header: priced charges or call-detail records.
struct ImportKind {
    endpoint: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    /// Columns whose values are whole numbers.
    numbers: &'static [&'static str],
}

const CHARGES: ImportKind = ImportKind {
    endpoint: "/v1/charges/batch",
    required: &["client_id", "account", "amount", "currency"],
    optional: &["service", "at"],
    numbers: &["account"],
};

/// Call-detail records: quantities, rated by the customer's plan.
const RECORDS: ImportKind = ImportKind {
    endpoint: "/v1/usage/batch",
    required: &["client_id", "account", "service", "quantity"],
    optional: &["destination", "at"],
    numbers: &["account", "quantity"],
};

/// Posts a CSV of usage through a batch endpoint. The header names the columns: priced
/// charges (`client_id,account,amount,currency` and optionally `service`, `at`) or
/// call-detail records (`client_id,account,service,quantity` and optionally `destination`,
/// `at`), rated with each customer's plan. Client ids make a re-run safe: rows already
/// posted are replayed, not posted twice.
pub fn import(remote: &mut Remote, csv: &str) -> crate::error::Result<String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| crate::Error::Remote(format!("line 1: {e}")))?
        .iter()
        .map(str::to_ascii_lowercase)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(crate::Error::Remote("the file is empty".into()));
    }
    let kind = if columns.iter().any(|c| c == "quantity") { &RECORDS } else { &CHARGES };
    for required in kind.required {
        if !columns.iter().any(|c| c == required) {
            return Err(crate::Error::Remote(format!("line 1: the header lacks the column {required}")));
        }
    }
    if let Some(unknown) =
        columns.iter().find(|c| !kind.required.contains(&c.as_str()) && !kind.optional.contains(&c.as_str()))
    {
        return Err(crate::Error::Remote(format!("line 1: unknown column {unknown}")));
    }
    if let Some((i, twice)) = columns.iter().enumerate().find(|(i, c)| columns[..*i].contains(c)) {
        return Err(crate::Error::Remote(format!("line 1: the column {twice} is given twice (column {})", i + 1)));
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            crate::Error::Remote(format!("line {line}: {}", purse_app::parse::csv_line_error(&e)))
        })?;
        let n = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let mut item = serde_json::Map::new();
        for (column, value) in columns.iter().zip(record.iter()) {
            let v = if kind.numbers.contains(&column.as_str()) {
                json!(value
                    .parse::<u64>()
                    .map_err(|_| crate::Error::Remote(format!("line {n}: {column} {value:?} is not a whole number")))?)
            } else {
                json!(value)
            };
            if !(value.is_empty() && kind.optional.contains(&column.as_str())) {
                item.insert(column.clone(), v);
            }
        }
        items.push((n, Value::Object(item)));
    }
    let (mut posted, mut replayed, mut failed) = (0, 0, Vec::new());
    for chunk in items.chunks(IMPORT_CHUNK) {
        let body = json!({ "items": chunk.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>() });
        let answer = match remote.try_send("POST", kind.endpoint, &body)? {
            Ok(answer) => answer,
            // A malformed row refuses its whole request: named by its line, not its place in it.
            Err((status, e)) => return Err(refused_rows(status, &e, chunk, posted + replayed + failed.len())),
        };
        let results =
            answer["results"].as_array().ok_or_else(|| crate::Error::Remote("no results in the answer".into()))?;
        for ((line, _), r) in chunk.iter().zip(results) {
            if r.get("error").is_some() {
                failed.push(format!("line {line}: {} {}", text(&r["error"]["code"]), text(&r["error"]["message"])));
            } else if r["replayed"] == json!(true) {
                replayed += 1;
            } else {
                posted += 1;
            }
        }
    }
    let mut out = format!("{posted} posted, {replayed} already posted, {} refused\n", failed.len());
    for f in &failed {
        out.push_str(f);
        out.push('\n');
    }
    Ok(out)
}

/// The error of a request of rows refused whole, naming the row's line when the API names
/// the item (`items[i].field`), and what was and was not posted.
fn refused_rows(status: u16, e: &Value, chunk: &[(u64, Value)], before: usize) -> crate::Error {
    let (code, field) = (text(&e["code"]), e["field"].as_str().unwrap_or(""));
    let mut message = e["message"].as_str().unwrap_or("").to_owned();
    let item = field
        .strip_prefix("items[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.trim_start_matches('.'))));
    let at = match item.and_then(|(i, column)| Some((chunk.get(i)?.0, column, i))) {
        Some((line, column, i)) => {
            message = message.replace(&format!("items[{i}]."), "");
            format!("line {line}: {column}: ")
        }
        None => format!("{status} "),
    };
    let first = chunk.first().map_or(0, |(line, _)| *line);
    let earlier = if before > 0 { format!(" ({before} rows before it were)") } else { String::new() };
    crate::Error::Remote(format!(
        "{at}{code}: {message}\nNothing from line {first} on was posted{earlier}. Fix the line and run the import \
         again: rows posted already are replayed, not posted twice."
    ))
}

pub fn adjustments_table(v: &Value) -> String {
    let fields = ["at", "account", "category", "direction", "amount", "currency", "reason", "by"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn refunds_table(v: &Value) -> String {
    let fields = ["number", "receipt_number", "amount", "currency", "method", "status", "reason", "created_at"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn credit_notes_table(v: &Value) -> String {
    let fields = ["number", "invoice_number", "amount", "currency", "apply", "reason", "created_at"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn tax_rates_table(v: &Value) -> String {
    let fields = ["id", "name", "percent", "inclusive", "owner"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn policies_table(v: &Value) -> String {
    let fields = ["owner", "payment_terms_days", "reminder_days", "suspend_after_days", "suspend_below"];
    table(&fields, &rows(v, "data", &fields))
}

pub fn suspension_line(v: &Value) -> String {
    match v["current"].as_object() {
        Some(c) => format!(
            "customer {} is suspended since {}: {} ({})\n",
            v["customer"],
            text(&c["started_at"]),
            text(&c["detail"]),
            text(&c["cause"])
        ),
        None => format!("customer {} is not suspended\n", v["customer"]),
    }
}

#[cfg(test)]
mod tests {
    use super::Remote;

    /// Two CLI runs in the same millisecond (or in adjacent ones with adjacent process ids)
    /// once drew the same idempotency keys, so a re-run of `purse import` was answered with
    /// the first run's stored response. Keys come from the kernel's randomness now.
    #[test]
    fn idempotency_keys_differ_between_clients_made_at_the_same_moment() {
        let mut a = Remote::new("http://127.0.0.1:1", "k", false).unwrap();
        let mut b = Remote::new("http://127.0.0.1:1", "k", false).unwrap();
        assert_ne!(a.fresh_id(), b.fresh_id());
    }

    /// A line with fewer or more fields than the header is named, with its number and in
    /// words, before anything is sent.
    #[test]
    fn a_ragged_line_is_named_before_anything_is_sent() {
        let mut r = Remote::new("http://127.0.0.1:1", "k", false).unwrap();
        let csv = "client_id,account,amount,currency\nc1,3,1.00,USD\nc2,3\n";
        let e = super::import(&mut r, csv).unwrap_err().to_string();
        assert!(e.contains("line 3: it has 2 fields where the header line has 4"), "{e}");
    }
}
