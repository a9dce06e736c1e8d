//! Prometheus metrics at `/metrics`, and the middleware that records every request (and
//! writes its structured log line, with a request id and never a key or a body).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Requests answered with one method and status on a route.
type Count = (Method, u16, u64);

#[derive(Default)]
pub struct Metrics {
    /// route → (method, status, count): looked up by the route's text, so recording a request
    /// allocates nothing once its route was seen.
    requests: Mutex<HashMap<String, Vec<Count>>>,
    /// Cumulative counts per bucket, then the +Inf count.
    durations: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    next_request_id: AtomicU64,
}

impl Metrics {
    fn record(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            let counts = match requests.get_mut(route) {
                Some(counts) => counts,
                None => requests.entry(route.to_owned()).or_default(),
            };
            match counts.iter_mut().find(|(m, s, _)| m == method && *s == status) {
                Some((_, _, n)) => *n += 1,
                None => counts.push((method.clone(), status, 1)),
            }
        }
        let bucket = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP purse_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE purse_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            let mut rows: Vec<(&str, &str, u16, u64)> = requests
                .iter()
                .flat_map(|(route, counts)| counts.iter().map(move |(m, s, n)| (m.as_str(), route.as_str(), *s, *n)))
                .collect();
            rows.sort_unstable();
            for (method, route, status, n) in rows {
                out.push_str(&format!(
                    "purse_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP purse_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE purse_http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.durations[i].load(Ordering::Relaxed);
            out.push_str(&format!("purse_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        cumulative += self.durations[BUCKETS.len()].load(Ordering::Relaxed);
        out.push_str(&format!("purse_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n"));
        let sum = self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!("purse_http_request_duration_seconds_sum {sum}\n"));
        out.push_str(&format!("purse_http_request_duration_seconds_count {cumulative}\n"));
        out.push_str("# HELP purse_engine_queued_requests Requests waiting for the ledger writer.\n");
        out.push_str("# TYPE purse_engine_queued_requests gauge\n");
        out.push_str(&format!("purse_engine_queued_requests {queued}\n"));
        out
    }
}

/// A caller's `X-Request-Id` if it is short and plain, else a new one.
fn request_id(request: &Request, metrics: &Metrics) -> String {
    let given = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            id.to_owned()
        }
        // The process id is read once: `getpid` is a system call each time, one per request.
        _ => {
            static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
            let pid = *PID.get_or_init(std::process::id);
            format!("req-{pid:x}-{:x}", metrics.next_request_id.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// The log line of one request.
#[derive(serde::Serialize)]
struct RequestLine<'a> {
    ts: String,
    level: &'static str,
    msg: &'static str,
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
    duration_us: u64,
}

/// Outermost middleware: request id, timing, metrics, one JSON log line per request. The
/// line holds the route pattern (not the raw path or query) and never a header or a body,
/// so no key, password or card number can reach the log.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request, &state.metrics);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.record(&method, route, status, seconds);
    if state.settings.log_requests {
        let now = purse_engine::Clock::now(&purse_engine::SystemClock);
        purse_app::log::line(&RequestLine {
            ts: purse_core::time::format(now),
            level: if status >= 500 { "error" } else { "info" },
            msg: "request",
            request_id: &id,
            method: method.as_str(),
            route,
            status,
            duration_us: (seconds * 1e6) as u64,
        });
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(state.engine.queued());
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
