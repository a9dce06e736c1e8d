//! The OpenAPI 3.0 document, generated from the route table at start and served at
//! `/v1/openapi.json`. The schemas describe exactly what the handlers accept and answer.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::json::reply;
use crate::routes::{table, Access};

fn string() -> Value {
    json!({ "type": "string" })
}
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}
fn amount() -> Value {
    json!({ "type": "string", "pattern": "^-?[0-9]{1,19}(\\.[0-9]{1,9})?$", "description": "A decimal string at the currency's scale, e.g. \"12.50\"; never a JSON number." })
}
fn positive_amount() -> Value {
    json!({ "type": "string", "pattern": "^[0-9]{1,19}(\\.[0-9]{1,9})?$" })
}
fn id() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX })
}
fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}
fn boolean() -> Value {
    json!({ "type": "boolean" })
}
fn client_id() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 100, "description": "Your id for this operation: a retry with the same id never posts twice." })
}
fn currency() -> Value {
    json!({ "type": "string", "pattern": "^[A-Z]{3}$" })
}
fn metadata() -> Value {
    json!({ "type": "object", "nullable": true, "additionalProperties": true })
}
fn reason() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 500, "pattern": "^[^\\u0000-\\u001f\\u007f]*$", "description": "Why: kept in the audit log." })
}
fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}
fn list_of(item: Value) -> Value {
    json!({ "type": "array", "items": item })
}

/// An object schema: `required` fields must be present; `closed` objects (request bodies)
/// refuse unknown fields as the handlers do.
fn object(required: &[(&str, Value)], optional: &[(&str, Value)], closed: bool) -> Value {
    let mut properties = Map::new();
    for (name, schema) in required.iter().chain(optional) {
        properties.insert((*name).to_owned(), schema.clone());
    }
    let names: Vec<&str> = required.iter().map(|(n, _)| *n).collect();
    let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": !closed });
    if !names.is_empty() {
        schema["required"] = json!(names);
    }
    schema
}

fn schemas() -> Value {
    let party = object(
        &[
            ("id", id()),
            ("kind", json!({ "type": "string", "enum": ["reseller", "customer"] })),
            ("client_id", string()),
            ("name", string()),
            ("created_at", time()),
        ],
        &[
            ("reseller", nullable(id())),
            ("billing", json!({ "type": "string", "enum": ["prepaid", "postpaid"] })),
            ("currency", currency()),
            ("wallet", id()),
        ],
        false,
    );
    let system_role = json!({ "type": "string", "enum": ["usage_revenue", "card_clearing", "cash_clearing", "bank_clearing", "adjustments", "grants", "breakage", "goodwill", "write_offs", "tax_payable"], "description": "Of a system account: which side of which movements it holds." });
    let account = object(
        &[
            ("id", id()),
            ("kind", string()),
            ("party", nullable(id())),
            ("currency", currency()),
            ("status", json!({ "type": "string", "enum": ["open", "suspended", "closed"] })),
            ("balance", amount()),
            ("reserved", amount()),
            ("uninvoiced", amount()),
            ("credit_limit", amount()),
            ("temporary_increase", nullable(object(&[("amount", amount()), ("valid_until", time())], &[], false))),
            ("children_balance", amount()),
            ("available", amount()),
            ("thresholds", list_of(amount())),
            ("last_charge_at", nullable(time())),
            ("created_at", time()),
        ],
        &[("parent", id()), ("system_role", system_role.clone())],
        false,
    );
    let transfer_fields = [
        ("id", id()),
        ("client_id", string()),
        ("kind", string()),
        ("debit", id()),
        ("credit", id()),
        ("amount", amount()),
        ("currency", currency()),
        ("at", time()),
        ("posted_at", time()),
        ("service", nullable(string())),
        ("metadata", metadata()),
        ("hold", nullable(id())),
        ("reverses", nullable(id())),
        ("overdrawn", boolean()),
    ];
    let mut entry_fields = transfer_fields.to_vec();
    entry_fields.extend([("change", amount()), ("balance_after", amount()), ("counterparty", id())]);
    let posted = object(&[("transfer", id()), ("overdrawn", boolean()), ("replayed", boolean())], &[], false);
    let charge = object(
        &[("client_id", client_id()), ("account", id()), ("amount", positive_amount()), ("currency", currency())],
        &[
            ("service", nullable(json!({ "type": "string", "maxLength": 64 }))),
            ("at", nullable(time())),
            ("metadata", metadata()),
            ("refuse_if_insufficient", boolean()),
        ],
        true,
    );
    let mut all = json!({
        "Error": object(&[("error", object(
            &[("code", string()), ("message", string()), ("field", nullable(string()))],
            &[("errors", json!({ "type": "array", "items": object(&[("code", string()), ("message", string()), ("field", nullable(string()))], &[], false) }))],
            false,
        ))], &[], false),
        "Status": object(&[("status", string())], &[], false),
        "Text": string(),
        "Pdf": json!({ "type": "string", "format": "binary" }),
        "Any": json!({}),
        "NewCurrency": object(&[("code", currency())], &[("scale", nullable(json!({ "type": "integer", "minimum": 0, "maximum": 9 })))], true),
        "Currency": object(&[("code", currency()), ("scale", json!({ "type": "integer" }))], &[], false),
        "CurrencyList": object(&[("data", list_of(reference("Currency")))], &[], false),
        "NewReseller": object(&[("client_id", client_id()), ("name", json!({ "type": "string", "minLength": 1, "maxLength": 200 }))], &[], true),
        "NewCustomer": object(
            &[("client_id", client_id()), ("name", json!({ "type": "string", "minLength": 1, "maxLength": 200 })), ("billing", json!({ "type": "string", "enum": ["prepaid", "postpaid"] })), ("currency", currency())],
            &[("reseller", nullable(id())), ("credit_limit", nullable(positive_amount()))],
            true,
        ),
        "PartyCreated": object(&[("id", id()), ("replayed", boolean())], &[("wallet", id())], false),
        "Party": party,
        "PartyList": object(&[("data", list_of(reference("Party"))), ("next_after", nullable(id()))], &[], false),
        "NewAccount": object(
            &[("client_id", client_id()), ("party", id()), ("kind", json!({ "type": "string", "enum": ["master_wallet", "subscriber_debit", "subscriber_credit"] }))],
            &[("currency", nullable(currency())), ("credit_limit", nullable(positive_amount()))],
            true,
        ),
        "AccountOpened": object(&[("id", id()), ("replayed", boolean())], &[], false),
        "Account": account,
        "AccountList": object(&[("data", list_of(reference("Account")))], &[], false),
        "AccountChanges": object(
            &[],
            &[
                ("credit_limit", nullable(positive_amount())),
                (
                    "temporary_increase",
                    nullable(object(
                        &[("valid_until", time())],
                        &[("amount", positive_amount()), ("percent", json!({ "type": "string", "pattern": "^[0-9]{1,6}(\\.[0-9]{1,2})?$", "description": "Percent of the positive permanent credit limit; give amount or percent." }))],
                        true,
                    )),
                ),
                ("reason", nullable(json!({ "type": "string", "maxLength": 500 }))),
            ],
            true,
        ),
        "AccountUpdated": object(&[("id", id()), ("updated", boolean())], &[], false),
        "AccountClosed": object(&[("id", id()), ("status", string())], &[], false),
        "Spendable": object(&[("account", id()), ("currency", currency()), ("available", amount()), ("units", nullable(json!({ "type": "integer", "minimum": 0 })))], &[], false),
        "BalanceAt": object(&[("account", id()), ("currency", currency()), ("at", time()), ("balance", amount())], &[], false),
        "JournalEntry": object(&entry_fields, &[], false),
        "Journal": object(&[("data", list_of(reference("JournalEntry"))), ("next_before", nullable(id()))], &[], false),
        "Snapshot": object(
            &[
                ("as_of", time()),
                ("totals", json!({ "type": "object", "additionalProperties": object(&[("all_accounts", amount()), ("customer_accounts", amount()), ("reserved", amount()), ("accounts", json!({ "type": "integer" }))], &[], false) })),
                ("accounts", list_of(object(&[("id", id()), ("kind", string()), ("party", nullable(id())), ("currency", currency()), ("balance", amount()), ("reserved", amount()), ("available", amount())], &[("system_role", system_role)], false))),
            ],
            &[],
            false,
        ),
        "Charge": charge,
        "ChargeBatch": object(&[("items", json!({ "type": "array", "items": reference("Charge"), "minItems": 1, "maxItems": 8192 }))], &[], true),
        "Posted": posted,
        "BatchResults": object(&[("results", list_of(json!({ "oneOf": [reference("Posted"), reference("Error")] })))], &[], false),
        "Payment": object(
            &[("client_id", client_id()), ("account", id()), ("amount", positive_amount()), ("currency", currency()), ("method", json!({ "type": "string", "enum": ["card", "cash", "bank_transfer", "cheque"] }))],
            &[("metadata", metadata())],
            true,
        ),
        "TransferRequest": object(
            &[("client_id", client_id()), ("source", id()), ("target", id()), ("amount", positive_amount()), ("currency", currency())],
            &[("kind", nullable(json!({ "type": "string", "enum": ["transfer", "recharge", "issue"] }))), ("metadata", metadata()), ("reason", nullable(reason()))],
            true,
        ),

        "Transfer": object(&transfer_fields, &[], false),
        "Reversal": object(&[("client_id", client_id()), ("transfer", id())], &[("metadata", metadata()), ("reason", nullable(reason()))], true),
        "HoldRequest": object(
            &[("client_id", client_id()), ("account", id()), ("amount", positive_amount()), ("currency", currency())],
            &[("expires_at", nullable(time())), ("service", nullable(json!({ "type": "string", "maxLength": 64 }))), ("metadata", metadata())],
            true,
        ),
        "HoldAnswer": object(&[("hold", id()), ("state", string()), ("replayed", boolean())], &[("transfer", id())], false),
        "Hold": object(
            &[
                ("id", id()), ("client_id", string()), ("account", id()), ("amount", amount()), ("currency", currency()),
                ("created_at", time()), ("expires_at", time()), ("state", json!({ "type": "string", "enum": ["open", "captured", "released", "expired"] })),
                ("service", nullable(string())), ("metadata", metadata()), ("resolved_at", nullable(time())),
                ("captured", nullable(amount())), ("capture_transfer", nullable(id())),
            ],
            &[],
            false,
        ),
        "Capture": object(&[("client_id", client_id())], &[("amount", nullable(positive_amount()))], true),
        "Release": object(&[("client_id", client_id())], &[], true),
    });
    for (name, schema) in alert_schemas()
        .into_iter()
        .chain(payment_schemas())
        .chain(credit_schemas())
        .chain(access_schemas())
        .chain(rating_schemas())
        .chain(grant_schemas())
    {
        all[name] = schema;
    }
    all
}

/// Adjustments, API keys and portal users.
fn access_schemas() -> Vec<(&'static str, Value)> {
    let role = json!({ "type": "string", "enum": ["operator", "reseller", "customer"] });
    let scope = json!({ "type": "string", "enum": ["read", "read_write"] });
    let key = object(
        &[
            ("id", id()),
            ("name", string()),
            ("prefix", string()),
            ("role", role.clone()),
            ("scope", scope.clone()),
            ("created_at", time()),
        ],
        &[("party", nullable(id())), ("revoked_at", nullable(time()))],
        false,
    );
    let user = object(
        &[
            ("id", id()),
            ("email", string()),
            ("name", string()),
            ("role", role.clone()),
            ("scope", scope.clone()),
            ("created_at", time()),
        ],
        &[("party", nullable(id())), ("disabled_at", nullable(time()))],
        false,
    );
    let adjustment = object(
        &[
            ("client_id", client_id()),
            ("account", id()),
            ("amount", positive_amount()),
            ("currency", currency()),
            ("direction", json!({ "type": "string", "enum": ["credit", "debit"] })),
            ("reason", reason()),
        ],
        &[
            ("metadata", metadata()),
            (
                "category",
                json!({ "type": "string", "enum": ["goodwill", "correction", "write_off"], "default": "correction" }),
            ),
        ],
        true,
    );
    let adjustment_entry = object(
        &[
            ("id", id()),
            ("transfer", id()),
            ("at", string()),
            ("by", string()),
            ("customer", nullable(id())),
            ("account", id()),
            ("direction", json!({ "type": "string", "enum": ["credit", "debit"] })),
            (
                "category",
                json!({ "type": "string", "enum": ["goodwill", "correction", "write_off", "credit_note", "tax"] }),
            ),
            ("amount", string()),
            ("currency", string()),
            ("reason", string()),
        ],
        &[],
        false,
    );
    let days = json!({ "type": "integer", "minimum": 0, "maximum": 365 });
    let dunning = object(
        &[
            ("owner", string()),
            ("payment_terms_days", days.clone()),
            ("reminder_days", list_of(days.clone())),
            ("suspend_after_days", nullable(days.clone())),
            ("suspend_below", nullable(string())),
            ("updated_at", string()),
        ],
        &[("reminder_texts", list_of(string()))],
        false,
    );
    let suspension = object(
        &[
            ("id", id()),
            ("customer", id()),
            ("cause", json!({ "type": "string", "enum": ["overdue", "negative_balance", "staff"] })),
            ("detail", string()),
            ("started_at", string()),
            ("started_by", string()),
            ("lifted_at", nullable(string())),
            ("lifted_by", nullable(string())),
            ("lift_reason", nullable(string())),
        ],
        &[],
        false,
    );
    let tax_rate = object(
        &[
            ("id", id()),
            ("owner", nullable(id())),
            ("name", string()),
            ("percent", string()),
            ("inclusive", boolean()),
            ("created_at", string()),
        ],
        &[],
        false,
    );
    let credit_note = object(
        &[
            ("id", id()),
            ("number", string()),
            ("customer", id()),
            ("invoice", id()),
            ("invoice_number", nullable(string())),
            ("amount", string()),
            ("currency", string()),
            ("lines", list_of(string())),
            ("apply", json!({ "type": "string", "enum": ["invoice", "unallocated", "balance", "refund"] })),
            ("reason", string()),
            ("created_at", string()),
            ("created_by", string()),
        ],
        &[
            ("net", nullable(string())),
            ("tax", nullable(json!({ "type": "object" }))),
            ("drawn", string()),
            ("refund", nullable(id())),
        ],
        false,
    );
    let refund = object(
        &[
            ("id", id()),
            ("number", nullable(string())),
            ("customer", id()),
            ("receipt", id()),
            ("receipt_number", nullable(string())),
            ("amount", string()),
            ("currency", string()),
            ("method", string()),
            ("status", json!({ "type": "string", "enum": ["pending", "succeeded", "failed"] })),
            ("reason", string()),
            ("requested_by", string()),
            ("transfer", nullable(id())),
            ("created_at", string()),
            ("finished_at", nullable(string())),
            ("failure", nullable(string())),
        ],
        &[],
        false,
    );
    let name = json!({ "type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f]*$" });
    vec![
        ("Adjustment", adjustment),
        ("AdjustmentList", object(&[("data", list_of(adjustment_entry)), ("next_before", nullable(id()))], &[], false)),
        ("DunningPolicy", dunning.clone()),
        ("DunningPolicyList", object(&[("data", list_of(dunning))], &[], false)),
        (
            "DunningPolicyBody",
            object(
                &[("owner", json!({ "type": "string", "pattern": "^(operator|reseller:[0-9]+|class:[0-9]+)$" }))],
                &[
                    ("payment_terms_days", nullable(days.clone())),
                    ("reminder_days", json!({ "type": "array", "maxItems": 10, "items": days.clone() })),
                    (
                        "reminder_texts",
                        json!({ "type": "array", "maxItems": 10, "items": { "type": "string", "maxLength": 2000 } }),
                    ),
                    ("suspend_after_days", nullable(days.clone())),
                    (
                        "suspend_below",
                        nullable(json!({ "type": "string", "pattern": "^(-[0-9]+(\\.[0-9]+)?|0+(\\.0+)?)$" })),
                    ),
                ],
                true,
            ),
        ),
        (
            "Suspension",
            object(
                &[
                    ("customer", id()),
                    ("suspended", boolean()),
                    ("current", nullable(suspension.clone())),
                    ("history", list_of(suspension)),
                ],
                &[],
                false,
            ),
        ),
        ("SuspensionBody", object(&[("suspended", boolean()), ("reason", reason())], &[], true)),
        ("TaxRate", tax_rate.clone()),
        ("TaxRateList", object(&[("data", list_of(tax_rate))], &[], false)),
        (
            "TaxRateBody",
            object(
                &[
                    ("name", json!({ "type": "string", "minLength": 1, "maxLength": 100 })),
                    ("percent", json!({ "type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]{1,4})?$" })),
                ],
                &[("inclusive", boolean()), ("owner", nullable(id()))],
                true,
            ),
        ),
        (
            "TaxSettings",
            object(
                &[
                    ("customer", id()),
                    ("tax_rate", nullable(json!({ "type": "object" }))),
                    ("taxed_at", json!({ "type": "string", "enum": ["invoice", "top_up"] })),
                    ("tax_id", string()),
                    ("address", string()),
                ],
                &[],
                false,
            ),
        ),
        (
            "TaxSettingsBody",
            object(
                &[],
                &[
                    ("tax_rate", nullable(id())),
                    ("taxed_at", json!({ "type": "string", "enum": ["invoice", "top_up"] })),
                    ("tax_id", json!({ "type": "string", "maxLength": 64 })),
                    ("address", json!({ "type": "string", "maxLength": 500 })),
                ],
                true,
            ),
        ),
        ("RefundBody", object(&[("receipt", id()), ("amount", positive_amount()), ("reason", reason())], &[], true)),
        (
            "CreditNoteBody",
            object(
                &[("invoice", id()), ("reason", reason())],
                &[
                    ("amount", positive_amount()),
                    (
                        "lines",
                        json!({ "type": "array", "maxItems": 100, "items": { "type": "string", "minLength": 1, "maxLength": 100 } }),
                    ),
                    ("apply", json!({ "type": "string", "enum": ["invoice", "unallocated", "balance", "refund"] })),
                    ("receipt", id()),
                ],
                true,
            ),
        ),
        ("CreditNote", credit_note.clone()),
        ("CreditNoteList", object(&[("data", list_of(credit_note))], &[], false)),
        ("Refund", refund.clone()),
        ("RefundList", object(&[("data", list_of(refund))], &[], false)),
        ("ApiKey", key),
        ("ApiKeyList", object(&[("data", list_of(reference("ApiKey")))], &[], false)),
        ("ApiKeyCreated", object(&[("key", reference("ApiKey")), ("secret", string())], &[], false)),
        (
            "NewApiKey",
            object(
                &[("name", name.clone()), ("role", role.clone()), ("scope", scope.clone())],
                &[("party", nullable(id()))],
                true,
            ),
        ),
        ("User", user),
        ("UserList", object(&[("data", list_of(reference("User")))], &[], false)),
        (
            "NewUser",
            object(
                &[
                    ("email", json!({ "type": "string", "format": "email", "maxLength": 254 })),
                    ("name", name),
                    ("password", json!({ "type": "string", "minLength": 12, "maxLength": 200 })),
                    ("role", role),
                    ("scope", scope),
                ],
                &[("party", nullable(id()))],
                true,
            ),
        ),
    ]
}

fn grant_schemas() -> Vec<(&'static str, Value)> {
    let service = json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[!-~]+$" });
    let scope = json!({ "type": "array", "items": service, "maxItems": 16 });
    let kind = json!({ "type": "string", "pattern": "^[a-z0-9_]{1,32}$", "description": "promotional (the default), purchased, commitment, goodwill, or a word of your own." });
    let priority =
        json!({ "type": "integer", "minimum": 1, "maximum": 1000, "description": "1 is drawn first; 10 when absent." });
    let rollover = object(
        &[("max", positive_amount()), ("valid_for_days", json!({ "type": "integer", "minimum": 1, "maximum": 3660 }))],
        &[],
        true,
    );
    let grant = object(
        &[
            ("id", id()),
            ("customer", id()),
            ("account", id()),
            ("kind", string()),
            ("amount", amount()),
            ("remaining", amount()),
            ("reserved", amount()),
            ("currency", currency()),
            ("priority", json!({ "type": "integer" })),
            ("state", json!({ "type": "string", "enum": ["open", "used_up", "expired", "voided"] })),
        ],
        &[
            ("effective_at", nullable(time())),
            ("expires_at", nullable(time())),
            ("scope", list_of(string())),
            ("rollover", json!({ "type": "object", "nullable": true })),
            ("rolled_from", nullable(id())),
            ("reason", nullable(string())),
            ("granted_by", string()),
            ("created_at", time()),
            ("closed_at", nullable(time())),
            ("transfer", id()),
            ("replayed", boolean()),
            ("uses", list_of(json!({ "type": "object" }))),
        ],
        false,
    );
    let allowance = object(
        &[
            ("id", id()),
            ("customer", id()),
            ("account", id()),
            ("amount", amount()),
            ("day", json!({ "type": "integer" })),
        ],
        &[("next_at", time()), ("ended_at", nullable(time()))],
        false,
    );
    vec![
        (
            "GrantBody",
            object(
                &[("client_id", client_id()), ("customer", id()), ("amount", positive_amount()), ("reason", reason())],
                &[
                    ("account", nullable(id())),
                    ("kind", nullable(kind.clone())),
                    ("priority", nullable(priority.clone())),
                    ("effective_at", nullable(time())),
                    ("expires_at", nullable(time())),
                    ("scope", scope.clone()),
                    ("rollover", nullable(rollover.clone())),
                    (
                        "paid_by",
                        nullable(json!({ "type": "string", "enum": ["card", "cash", "bank_transfer", "cheque"] })),
                    ),
                ],
                true,
            ),
        ),
        ("Grant", grant),
        ("GrantList", object(&[("data", list_of(reference("Grant")))], &[], false)),
        ("GrantVoid", object(&[("reason", reason())], &[], true)),
        (
            "AllowanceBody",
            object(
                &[("customer", id()), ("amount", positive_amount()), ("reason", reason())],
                &[
                    ("account", nullable(id())),
                    ("kind", nullable(kind)),
                    ("priority", nullable(priority)),
                    ("scope", scope),
                    ("day", nullable(json!({ "type": "integer", "minimum": 1, "maximum": 28 }))),
                    ("rollover", nullable(rollover)),
                ],
                true,
            ),
        ),
        ("Allowance", allowance),
        ("AllowanceList", object(&[("data", list_of(reference("Allowance")))], &[], false)),
    ]
}

fn rating_schemas() -> Vec<(&'static str, Value)> {
    let name = json!({ "type": "string", "minLength": 1, "maxLength": 200 });
    let service = json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[!-~]+$" });
    let destination = json!({ "type": "string", "pattern": "^\\+?[0-9]{1,15}$" });
    let quantity = json!({ "type": "integer", "minimum": 0, "maximum": 1_000_000_000_000_i64 });
    let plan = object(
        &[
            ("id", id()),
            ("name", string()),
            ("currency", currency()),
            ("owner", nullable(id())),
            ("rates", json!({ "type": "integer" })),
            ("version", json!({ "type": "integer" })),
            ("updated_at", time()),
        ],
        &[("data", list_of(json!({ "type": "object" }))), ("imported", json!({ "type": "integer" }))],
        false,
    );
    let usage = object(
        &[("client_id", client_id()), ("account", id()), ("service", service.clone()), ("quantity", quantity.clone())],
        &[("destination", nullable(destination.clone())), ("at", nullable(time()))],
        true,
    );
    let session = object(
        &[("id", id()), ("status", string()), ("granted", json!({ "type": "integer" })), ("final", boolean())],
        &[],
        false,
    );
    vec![
        ("Csv", string()),
        ("UnratedUsageList", object(&[("data", list_of(json!({ "type": "object" })))], &[], false)),
        (
            "Margin",
            object(
                &[
                    ("reseller", id()),
                    ("totals", list_of(json!({ "type": "object" }))),
                    ("data", list_of(json!({ "type": "object" }))),
                ],
                &[],
                false,
            ),
        ),
        ("RatePlan", plan),
        ("RatePlanList", object(&[("data", list_of(reference("RatePlan")))], &[], false)),
        ("RatePlanBody", object(&[("name", name), ("currency", currency())], &[("owner", nullable(id()))], true)),
        (
            "RateImport",
            object(
                &[(
                    "csv",
                    json!({ "type": "string", "description": "A header line naming the columns, then one rate a line." }),
                )],
                &[("service", nullable(service.clone()))],
                true,
            ),
        ),
        ("CustomerRatePlan", object(&[], &[("plan", nullable(id()))], true)),
        (
            "CustomerRatePlanView",
            object(&[("customer", id())], &[("plan", json!({ "type": "object", "nullable": true }))], false),
        ),
        ("ResellerRatePlans", object(&[], &[("pays", nullable(id())), ("customers_default", nullable(id()))], true)),
        ("ResellerRatePlansView", object(&[("reseller", id())], &[], false)),
        ("Usage", usage),
        (
            "UsageBatch",
            object(
                &[("items", json!({ "type": "array", "items": reference("Usage"), "minItems": 1, "maxItems": 8192 }))],
                &[],
                true,
            ),
        ),
        (
            "SessionAuthorize",
            object(
                &[("account", id()), ("service", service)],
                &[
                    ("destination", nullable(destination)),
                    ("slice", nullable(json!({ "type": "integer", "minimum": 1, "maximum": 86_400 }))),
                    (
                        "max_units",
                        nullable(json!({ "type": "integer", "minimum": 1, "maximum": 1_000_000_000_000_i64 })),
                    ),
                    ("ttl_seconds", nullable(json!({ "type": "integer", "minimum": 5, "maximum": 86_400 }))),
                    ("on_expiry", nullable(json!({ "type": "string", "enum": ["granted", "reported"] }))),
                ],
                true,
            ),
        ),
        (
            "SessionUpdate",
            object(
                &[
                    ("sequence", json!({ "type": "integer", "minimum": 1, "maximum": i64::MAX })),
                    ("used", quantity.clone()),
                ],
                &[],
                true,
            ),
        ),
        (
            "SessionTerminate",
            object(
                &[("used", quantity)],
                &[("sequence", nullable(json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX })))],
                true,
            ),
        ),
        ("Session", session),
        ("SessionList", object(&[("data", list_of(reference("Session")))], &[], false)),
    ]
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": reference("Error") } } })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in table() {
        let mut parameters = Vec::new();
        if r.path.contains("{id}") {
            parameters.push(json!({ "name": "id", "in": "path", "required": true, "schema": id() }));
        }
        for q in r.query {
            // Only the accounts list cannot do without its party.
            let required = *q == "party" && r.operation == "listAccounts";
            let schema = match *q {
                "limit" => json!({ "type": "integer", "minimum": 1, "maximum": crate::handlers::PAGE_MAX }),
                "after" | "before" | "party" | "reseller" | "customer" => id(),
                "from" | "to" | "at" => time(),
                "price" => positive_amount(),
                _ => string(),
            };
            parameters.push(json!({ "name": q, "in": "query", "required": required, "schema": schema }));
        }
        let (status, schema) = r.success;
        let content_type = match schema {
            "Text" => "text/plain",
            "Csv" => "text/csv",
            "Pdf" => "application/pdf",
            _ => "application/json",
        };
        let mut responses = Map::new();
        responses.insert(
            status.to_string(),
            json!({ "description": "Success", "content": { content_type: { "schema": reference(schema) } } }),
        );
        if r.access != Access::Public {
            if r.access == Access::Write {
                // A replay of a client id used before answers 200 with the first outcome.
                if status == 201 {
                    responses.insert("200".into(), json!({ "description": "Replay of a client id used before", "content": { "application/json": { "schema": reference(schema) } } }));
                }
                parameters.push(json!({ "name": "Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" } }));
                responses.insert(
                    "409".into(),
                    error_response("Idempotency key in flight, or a client id used before with other content"),
                );
                responses.insert("503".into(), error_response("Overloaded or shutting down; retry after Retry-After"));
            }
            if r.request.is_some() {
                responses.insert("408".into(), error_response("The body stopped arriving before it was whole"));
                responses.insert("413".into(), error_response("Body too large"));
                responses.insert("415".into(), error_response("Body is not application/json"));
            }
            if matches!(r.operation, "payNow" | "saveCard") {
                responses.insert("402".into(), error_response("The card was declined; nothing changed"));
                responses.insert(
                    "202".into(),
                    error_response("Stripe did not answer in time; the payment completes in the background"),
                );
                responses.insert(
                    "409".into(),
                    error_response("Card payments are not configured (no Stripe endpoint), or a request in flight"),
                );
            }
            responses.insert("400".into(), error_response("Malformed request"));
            responses.insert("401".into(), error_response("Missing, unknown or revoked API key"));
            responses.insert("403".into(), error_response("The key's role or scope does not allow this"));
            responses.insert("404".into(), error_response("No such resource (or another tenant's)"));
            responses.insert("422".into(), error_response("A field breaks a rule; `field` names it"));
            responses.insert("429".into(), error_response("Rate limit; retry after Retry-After"));
        } else if r.path == "/readyz" {
            responses.insert("503".into(), json!({ "description": "Not ready", "content": { "application/json": { "schema": reference("Status") } } }));
        }
        let mut operation = json!({
            "operationId": r.operation,
            "summary": r.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if r.access == Access::Public {
            operation["security"] = json!([]);
        }
        if let Some(body) = r.request {
            operation["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": reference(body) } } });
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Purse",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Balance and credit control. Amounts are decimal strings; times RFC 3339; every request that changes something needs an Idempotency-Key.",
        },
        "servers": [{ "url": "/" }],
        "security": [{ "apiKey": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key: purse_ followed by 48 hex digits." } },
            "schemas": schemas(),
        },
    })
}

pub async fn serve() -> Response {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    reply(StatusCode::OK, DOCUMENT.get_or_init(document))
}

/// The schemas of notifications' routes.
fn alert_schemas() -> Vec<(&'static str, Value)> {
    let emails = json!({ "type": "array", "maxItems": 20, "items": { "type": "string", "maxLength": 254 } });
    let hours = json!({ "type": "integer", "format": "int64" });
    let rule = |inactivity: bool| {
        let mut optional = vec![
            ("notify", boolean()),
            ("users", json!({ "type": "array", "maxItems": 20, "items": id() })),
            ("emails", emails.clone()),
        ];
        if inactivity {
            optional.push(("inactivity_hours", nullable(hours.clone())));
        }
        nullable(object(&[("threshold", json!({ "type": "string", "maxLength": 40 }))], &optional, true))
    };
    let profile_body = object(
        &[
            ("name", json!({ "type": "string", "maxLength": 200 })),
            ("currency", currency()),
            ("max_quantity", hours.clone()),
            ("period_hours", hours.clone()),
        ],
        &[
            ("reseller", nullable(id())),
            ("sort_order", hours.clone()),
            ("user_rule", rule(false)),
            ("client_rule", rule(false)),
            ("inactivity_rule", rule(true)),
            ("subject", nullable(json!({ "type": "string", "maxLength": 400 }))),
            ("body", nullable(json!({ "type": "string", "maxLength": 8000 }))),
        ],
        true,
    );
    let thresholds = json!({ "type": "string", "maxLength": 400, "description": "Comma-separated amounts, or for postpaid percentages of the permanent credit limit: \"100, 50, 10%\"" });
    vec![
        ("Deleted", object(&[("id", id()), ("deleted", boolean())], &[], false)),
        ("PolicyDeleted", object(&[("owner", string()), ("deleted", boolean())], &[], false)),
        ("LowBalanceProfileBody", profile_body),
        (
            "LowBalanceProfile",
            object(
                &[
                    ("id", id()),
                    ("name", string()),
                    ("currency", currency()),
                    ("max_quantity", json!({ "type": "integer" })),
                    ("period_hours", json!({ "type": "integer" })),
                ],
                &[],
                false,
            ),
        ),
        ("LowBalanceProfileList", object(&[("data", list_of(reference("LowBalanceProfile")))], &[], false)),
        (
            "AlertSettingsBody",
            object(
                &[],
                &[
                    ("profile", nullable(id())),
                    ("billing_email", nullable(json!({ "type": "string", "maxLength": 254 }))),
                    ("alert_emails", emails.clone()),
                    ("warning_thresholds", thresholds),
                ],
                true,
            ),
        ),
        (
            "AlertSettings",
            object(
                &[("party", id()), ("alert_emails", list_of(string())), ("warning_thresholds", string())],
                &[],
                false,
            ),
        ),
        ("WebhookEndpointBody", object(&[("url", json!({ "type": "string", "maxLength": 2000 }))], &[], true)),
        (
            "WebhookEndpoint",
            object(&[("id", id()), ("url", string()), ("enabled", boolean())], &[("secret", string())], false),
        ),
        ("WebhookEndpointList", object(&[("data", list_of(reference("WebhookEndpoint")))], &[], false)),
        (
            "NotificationList",
            object(
                &[(
                    "data",
                    list_of(object(
                        &[("id", id()), ("kind", string()), ("deliveries", list_of(json!({ "type": "object" })))],
                        &[],
                        false,
                    )),
                )],
                &[],
                false,
            ),
        ),
        (
            "JobRunList",
            object(&[("data", list_of(object(&[("job", string()), ("key", string())], &[], false)))], &[], false),
        ),
    ]
}

fn payment_schemas() -> Vec<(&'static str, Value)> {
    let emails = json!({ "type": "array", "maxItems": 20, "items": { "type": "string", "maxLength": 254 } });
    let card = object(
        &[
            ("number", json!({ "type": "string", "pattern": "^[0-9 ]{12,23}$" })),
            ("exp_month", json!({ "type": "integer", "minimum": 1, "maximum": 12 })),
            ("exp_year", json!({ "type": "integer", "minimum": 2000, "maximum": 2100 })),
            ("cvc", json!({ "type": "string", "pattern": "^[0-9]{3,4}$" })),
        ],
        &[],
        true,
    );
    let recharge = object(
        &[
            ("id", id()),
            ("customer", id()),
            ("method", string()),
            ("reason", string()),
            ("amount", amount()),
            ("currency", currency()),
            ("status", string()),
        ],
        &[],
        false,
    );
    let allocation = object(
        &[("id", id()), ("invoice", id()), ("receipt", id()), ("amount", amount()), ("at", time())],
        &[
            ("invoice_number", nullable(string())),
            ("receipt_number", nullable(string())),
            ("released_at", nullable(time())),
            ("release_reason", nullable(string())),
        ],
        false,
    );
    let receipt = object(
        &[
            ("id", id()),
            ("number", string()),
            ("customer", id()),
            ("transfer", id()),
            ("amount", amount()),
            ("currency", currency()),
            ("method", string()),
            ("paid_at", time()),
            ("allocated", amount()),
            ("unallocated", amount()),
            ("reversed_at", nullable(time())),
            ("allocations", list_of(allocation.clone())),
        ],
        &[("emailed_to", string()), ("net", nullable(amount())), ("tax", nullable(json!({ "type": "object" })))],
        false,
    );
    let invoice = object(
        &[
            ("id", id()),
            ("number", string()),
            ("kind", json!({ "type": "string", "enum": ["usage", "top_up"] })),
            ("customer", id()),
            ("amount", amount()),
            ("total", amount()),
            ("currency", currency()),
            ("status", json!({ "type": "string", "enum": ["open", "partially_paid", "paid", "void"] })),
            ("created_at", time()),
            ("due_at", nullable(time())),
            ("subtotal", amount()),
            ("rounding_carried_in", amount()),
            ("rounding_carried_out", amount()),
            ("allocated", amount()),
            ("paid", amount()),
            ("due", amount()),
        ],
        &[
            ("period_start", nullable(time())),
            ("period_end", nullable(time())),
            ("paid_at", nullable(time())),
            ("voided_at", nullable(time())),
            ("void_reason", nullable(string())),
            ("payment", id()),
            (
                "lines",
                list_of(object(
                    &[("service", string()), ("quantity", json!({ "type": "integer" })), ("amount", amount())],
                    &[],
                    false,
                )),
            ),
            ("allocations", list_of(allocation)),
            ("credited", amount()),
            ("credit_notes", list_of(json!({ "type": "object" }))),
            ("net", nullable(amount())),
            ("tax", nullable(json!({ "type": "object" }))),
        ],
        false,
    );
    vec![
        (
            "RechargeSettingsBody",
            object(
                &[
                    ("enabled", boolean()),
                    ("method", json!({ "type": "string", "enum": ["card", "invoice", "master_account"] })),
                    ("threshold", amount()),
                ],
                &[
                    ("currency", nullable(currency())),
                    ("recharge_amount", nullable(positive_amount())),
                    ("target_balance", nullable(amount())),
                    ("per_day_max", nullable(json!({ "type": "integer", "minimum": 1, "maximum": 24 }))),
                    ("month_cap", nullable(positive_amount())),
                    ("emails", emails),
                ],
                true,
            ),
        ),
        (
            "RechargeSettings",
            object(
                &[
                    ("customer", id()),
                    ("enabled", boolean()),
                    ("method", string()),
                    ("threshold", amount()),
                    ("per_day_max", json!({ "type": "integer" })),
                ],
                &[],
                false,
            ),
        ),
        ("CardBody", card.clone()),
        (
            "PayNowBody",
            object(
                &[],
                &[
                    ("amount", nullable(positive_amount())),
                    ("card", nullable(card)),
                    (
                        "auto_recharge",
                        nullable(object(&[("threshold", amount()), ("recharge_amount", positive_amount())], &[], true)),
                    ),
                ],
                true,
            ),
        ),
        ("Receipt", receipt.clone()),
        ("ReceiptList", object(&[("data", list_of(receipt))], &[], false)),
        ("Recharge", recharge.clone()),
        ("RechargeList", object(&[("data", list_of(recharge))], &[], false)),
        ("Invoice", invoice.clone()),
        ("InvoiceList", object(&[("data", list_of(invoice))], &[], false)),
        (
            "InvoiceVoid",
            object(&[("reason", json!({ "type": "string", "minLength": 1, "maxLength": 500 }))], &[], true),
        ),
        (
            "BillingSettingsBody",
            object(
                &[
                    ("cycle_day", json!({ "type": "integer", "minimum": 1, "maximum": 28 })),
                    (
                        "time_zone",
                        json!({ "type": "string", "maxLength": 64, "description": "An IANA time zone (Europe/Berlin), UTC, or a fixed offset (+03:00)" }),
                    ),
                ],
                &[],
                true,
            ),
        ),
        (
            "BillingSettings",
            object(
                &[
                    ("customer", id()),
                    ("frequency", string()),
                    ("cycle_day", json!({ "type": "integer" })),
                    ("time_zone", string()),
                    ("current_cycle_start", time()),
                    ("next_invoice_at", time()),
                ],
                &[("invoiced_until", nullable(time()))],
                false,
            ),
        ),
        (
            "InvoicePayment",
            object(
                &[
                    ("method", json!({ "type": "string", "enum": ["bank_transfer", "cheque", "cash", "card"] })),
                    ("amount", positive_amount()),
                    ("currency", currency()),
                ],
                &[],
                true,
            ),
        ),
    ]
}

fn credit_schemas() -> Vec<(&'static str, Value)> {
    let max = object(
        &[],
        &[
            ("amount", nullable(positive_amount())),
            ("percent", nullable(json!({ "type": "integer", "minimum": 1, "maximum": 1000 }))),
            ("days", nullable(json!({ "type": "integer", "minimum": 1, "maximum": 3650 }))),
        ],
        true,
    );
    let state = object(
        &[
            ("credit_limit", amount()),
            ("temporary_increase", json!({ "type": "object", "nullable": true })),
            ("effective", amount()),
        ],
        &[],
        false,
    );
    let change = object(
        &[
            ("kind", json!({ "type": "string", "enum": ["permanent", "temporary", "revert"] })),
            ("at", time()),
            ("recorded_at", time()),
            ("old", state.clone()),
            ("new", state),
            ("by", string()),
            ("reason", nullable(string())),
        ],
        &[],
        false,
    );
    let class = object(
        &[
            ("id", id()),
            ("name", string()),
            ("subscriber_transfers", boolean()),
            ("maximum_increase", json!({ "type": "object", "nullable": true })),
        ],
        &[],
        false,
    );
    let entry = object(
        &[
            ("id", id()),
            ("at", time()),
            ("actor", string()),
            ("party", nullable(id())),
            ("entity", string()),
            ("entity_id", string()),
            ("action", string()),
        ],
        &[("before", json!({ "nullable": true })), ("after", json!({ "nullable": true }))],
        false,
    );
    vec![
        ("CreditHistory", object(&[("account", id()), ("data", list_of(change))], &[], false)),
        (
            "CustomerClassBody",
            object(
                &[
                    ("name", json!({ "type": "string", "minLength": 1, "maxLength": 100 })),
                    ("subscriber_transfers", boolean()),
                ],
                &[("maximum_increase", nullable(max.clone()))],
                true,
            ),
        ),
        ("CustomerClass", class.clone()),
        ("CustomerClassList", object(&[("data", list_of(class))], &[], false)),
        (
            "CreditSettingsBody",
            object(
                &[],
                &[
                    ("class", nullable(id())),
                    ("subscriber_transfers", json!({ "type": "string", "enum": ["class", "yes", "no"] })),
                    ("maximum_increase", nullable(max)),
                ],
                true,
            ),
        ),
        (
            "CreditSettings",
            json!({ "type": "object", "additionalProperties": true, "description": "A customer's Balance & Credits (credit_limit, temporary_increase, effective_credit_limit, maximum_increase, warning_thresholds, unallocated_payments, class, subscriber_transfers) or a reseller's maximum_increase." }),
        ),
        ("AuditLog", object(&[("data", list_of(entry)), ("next_before", nullable(id()))], &[], false)),
    ]
}
