//! Log lines: one JSON object per line on stderr. A line is serialized first and written
//! with one `write`, so lines of different threads never interleave and a line costs one
//! system call (stderr is unbuffered: printing a JSON value with `eprintln!` wrote each of
//! its tokens apart, and the request log alone cost about 60 % of a busy server's CPU).

use serde::Serialize;
use std::io::Write;

/// Writes `line` as one JSON line on stderr; a line that cannot be written is dropped.
pub fn line(line: &impl Serialize) {
    let Ok(mut bytes) = serde_json::to_vec(line) else { return };
    bytes.push(b'\n');
    let _ = std::io::stderr().write_all(&bytes);
}

/// `{"level":"info","msg":…,"fields":…}`
pub fn info(msg: &str, fields: serde_json::Value) {
    line(&serde_json::json!({ "level": "info", "msg": msg, "fields": fields }));
}

/// `{"level":"warn","msg":…,"fields":…}`
pub fn warn(msg: &str, fields: serde_json::Value) {
    line(&serde_json::json!({ "level": "warn", "msg": msg, "fields": fields }));
}
