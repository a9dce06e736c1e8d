//! The API through `app(state).oneshot(..)`: shapes, codes and bad input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use purse_core::Timestamp;
use purse_engine::{Engine, EngineConfig, ManualClock};
use purse_http::{app, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    state: AppState,
}

impl Api {
    fn new() -> Api {
        let dir = std::env::temp_dir().join("purse-http-tests");
        std::fs::create_dir_all(&dir).unwrap();
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.join(format!("api-{}-{n}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let (store, reader) = purse_store_sqlite::open(path.to_str().unwrap()).unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_790_000_000)));
        let engine = Engine::start(Box::new(store), Arc::new(reader), clock, EngineConfig::default());
        Api { state: AppState { engine: Arc::new(engine) } }
    }

    async fn raw(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.raw(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post_text(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::post(uri).header("content-type", "application/json").body(Body::from(body.to_owned()));
        self.raw(request.unwrap()).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.post_text(uri, &body.to_string()).await
    }

    /// A USD prepaid customer with 10.00 paid in; returns its wallet id.
    async fn funded_wallet(&self) -> u64 {
        let (status, _) = self.post("/v1/currencies", json!({ "code": "USD" })).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = self
            .post("/v1/customers", json!({ "client_id": "c-1", "name": "Acme", "billing": "prepaid", "currency": "USD" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let wallet = body["wallet"].as_u64().unwrap();
        let pay = json!({ "client_id": "p-1", "account": wallet, "amount": "10.00", "currency": "USD", "method": "cash" });
        assert_eq!(self.post("/v1/payments", pay).await.0, StatusCode::CREATED);
        wallet
    }
}

fn error_of(body: &Value) -> (&str, &str) {
    (body["error"]["code"].as_str().unwrap_or("?"), body["error"]["field"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn health_and_readiness() {
    let api = Api::new();
    assert_eq!(api.get("/healthz").await, (StatusCode::OK, json!({ "status": "ok" })));
    assert_eq!(api.get("/readyz").await, (StatusCode::OK, json!({ "status": "ready" })));
}

#[tokio::test]
async fn a_charge_moves_the_balance_and_a_retry_replays_it() {
    let api = Api::new();
    let wallet = api.funded_wallet().await;
    let charge = json!({
        "client_id": "call-1", "account": wallet, "amount": "2.50", "currency": "USD",
        "service": "voice", "at": "2026-11-22T10:15:30Z", "metadata": { "cdr": "A1" }
    });
    let (status, first) = api.post("/v1/charges", charge.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["overdrawn"], false);
    let (status, again) = api.post("/v1/charges", charge.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((again["transfer"].clone(), again["replayed"].clone()), (first["transfer"].clone(), json!(true)));
    let mut other = charge;
    other["amount"] = json!("2.51");
    let (status, body) = api.post("/v1/charges", other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&body), ("exists_with_different_amount", "amount"));

    let (status, account) = api.get(&format!("/v1/accounts/{wallet}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["balance"], "7.50");
    assert_eq!(account["available"], "7.50");
    assert_eq!(account["currency"], "USD");
    assert_eq!(account["last_charge_at"], "2026-11-22T10:15:30.000000Z");
    let (_, spendable) = api.get(&format!("/v1/accounts/{wallet}/spendable?price=0.25")).await;
    assert_eq!((spendable["available"].clone(), spendable["units"].clone()), (json!("7.50"), json!(30)));
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_naming_the_field() {
    let api = Api::new();
    let wallet = api.funded_wallet().await;
    let base = json!({ "client_id": "x-1", "account": wallet, "amount": "1.00", "currency": "USD" });
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        b[key] = value;
        b
    };
    let cases = [
        (with("amount", json!(1.5)), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount"),
        (with("amount", json!(2)), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount"),
        (with("amount", json!("1.005")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount"),
        (with("amount", json!("1e3")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount"),
        (with("amount", json!("99999999999999999999")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount"),
        (with("amount", json!("0")), StatusCode::UNPROCESSABLE_ENTITY, "amount_must_be_positive", "amount"),
        (with("bogus", json!(1)), StatusCode::UNPROCESSABLE_ENTITY, "unknown_field", "bogus"),
        (with("account", json!("seven")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", "account"),
        (with("account", json!(424242)), StatusCode::UNPROCESSABLE_ENTITY, "account_not_found", "account"),
        (with("currency", json!("EUR")), StatusCode::UNPROCESSABLE_ENTITY, "currency_mismatch", "currency"),
        (with("currency", json!("usd")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_currency", "currency"),
        (with("at", json!("yesterday")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_time", "at"),
        (with("metadata", json!([1, 2])), StatusCode::UNPROCESSABLE_ENTITY, "invalid_metadata", "metadata"),
        (with("client_id", json!("")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_id", "client_id"),
    ];
    for (body, status, code, field) in cases {
        let (got, response) = api.post("/v1/charges", body.clone()).await;
        assert_eq!((got, error_of(&response)), (status, (code, field)), "{body}");
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("amount");
    let (status, body) = api.post("/v1/charges", missing).await;
    assert_eq!((status, error_of(&body)), (StatusCode::UNPROCESSABLE_ENTITY, ("missing_field", "amount")));
    let (status, body) = api.post_text("/v1/charges", "{\"client_id\": ").await;
    assert_eq!((status, error_of(&body).0), (StatusCode::BAD_REQUEST, "malformed_json"));
    let plain = Request::post("/v1/charges").header("content-type", "text/plain").body(Body::from(base.to_string()));
    let (status, body) = api.raw(plain.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let huge = with("service", json!("x".repeat(100_000)));
    let (status, body) = api.post("/v1/charges", huge).await;
    assert_eq!((status, error_of(&body).0), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let (status, body) = api.get("/v1/accounts/987654").await;
    assert_eq!((status, error_of(&body).0), (StatusCode::NOT_FOUND, "not_found"));
    // None of it touched the balance.
    let (_, account) = api.get(&format!("/v1/accounts/{wallet}")).await;
    assert_eq!(account["balance"], "10.00");
}

#[tokio::test]
async fn a_batch_answers_each_item_and_one_bad_item_spoils_nothing() {
    let api = Api::new();
    let wallet = api.funded_wallet().await;
    let item = |id: &str, amount: Value| json!({ "client_id": id, "account": wallet, "amount": amount, "currency": "USD" });
    let batch = json!({ "items": [item("b-1", json!("1.00")), item("b-2", json!(1.0)), item("b-3", json!("20.00")), item("b-1", json!("1.00"))] });
    let (status, body) = api.post("/v1/charges/batch", batch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a float anywhere is refused before anything runs: {body}");
    assert_eq!(error_of(&body), ("invalid_amount", "items[1].amount"));

    let batch = json!({ "items": [item("b-1", json!("1.00")), item("b-2", json!("1.001")), item("b-3", json!("20.00")), item("b-1", json!("1.00"))] });
    let (status, body) = api.post("/v1/charges/batch", batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["replayed"], false);
    assert_eq!(results[1]["error"]["code"], "invalid_amount");
    assert_eq!(results[2]["overdrawn"], true);
    assert_eq!((results[3]["replayed"].clone(), results[3]["transfer"].clone()), (json!(true), results[0]["transfer"].clone()));
    let (_, account) = api.get(&format!("/v1/accounts/{wallet}")).await;
    assert_eq!(account["balance"], "-11.00");
    let (status, body) = api.post("/v1/charges/batch", json!({ "items": [] })).await;
    assert_eq!((status, error_of(&body).0), (StatusCode::UNPROCESSABLE_ENTITY, "batch_size"));
}
