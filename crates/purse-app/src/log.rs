//! Log lines: one JSON object per line on stderr. A line is serialized first and appended
//! whole to the lines pending, so lines of different threads never interleave (stderr is
//! unbuffered: printing a JSON value with `eprintln!` wrote each of its tokens apart, and the
//! request log alone cost about 60 % of a busy server's CPU). A thread of its own writes what
//! is pending at most [`FLUSH_DELAY`] after a line was made, with one `write` however many
//! lines there are: the request log's `write` on each response's way out cost a 16-connection
//! server about a tenth of its rate (BENCHMARKS.md). [`flush`] writes what is pending at once
//! (the CLI calls it before it exits); lines still pending when the process is killed are
//! lost, [`FLUSH_DELAY`]'s worth at most.

use serde::Serialize;
use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long a line may wait before it is written (lines made meanwhile go with it).
pub const FLUSH_DELAY: Duration = Duration::from_millis(2);

/// Pending past this many bytes, the line that crossed it writes them itself.
const PENDING_MAX: usize = 1 << 20;

/// Lines made and not yet written, and where they go.
struct Lines {
    pending: Mutex<Vec<u8>>,
    /// Signalled when a line is made while none was pending.
    made: Condvar,
    /// Held while pending lines are taken and written, so they leave in the order made.
    out: Mutex<Box<dyn Write + Send>>,
}

impl Lines {
    fn new(out: Box<dyn Write + Send>) -> Lines {
        Lines { pending: Mutex::new(Vec::new()), made: Condvar::new(), out: Mutex::new(out) }
    }

    /// Appends one line; true when it is the first pending (the writer is to be woken).
    fn add(&self, line: &[u8]) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let first = pending.is_empty();
        pending.extend_from_slice(line);
        let full = pending.len() >= PENDING_MAX;
        drop(pending);
        if full {
            self.flush();
        }
        first
    }

    /// Writes every pending line, in the order made.
    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !bytes.is_empty() {
            // A line that cannot be written is dropped.
            let _ = out.write_all(&bytes).and_then(|()| out.flush());
        }
    }

    /// The writer's loop: waits for a line, lets others join it for `delay`, writes them all.
    fn write_forever(&self, delay: Duration) {
        loop {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.is_empty() {
                pending = self.made.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(delay);
            self.flush();
        }
    }
}

/// The process's lines, to stderr, and whether their writer thread runs.
fn stderr_lines() -> &'static (Lines, bool) {
    static LINES: OnceLock<(Lines, bool)> = OnceLock::new();
    LINES.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("purse-log".into()).spawn(|| {
            // The thread starts after `LINES` is set: `get` waits for it.
            let lines = stderr_lines();
            lines.0.write_forever(FLUSH_DELAY);
        });
        (Lines::new(Box::new(std::io::stderr())), spawned.is_ok())
    })
}

/// Writes `line` as one JSON line on stderr, within [`FLUSH_DELAY`]; a line that cannot be
/// serialized or written is dropped.
pub fn line(line: &impl Serialize) {
    let Ok(mut bytes) = serde_json::to_vec(line) else { return };
    bytes.push(b'\n');
    let (lines, writer) = stderr_lines();
    if lines.add(&bytes) {
        match writer {
            true => lines.made.notify_one(),
            // No thread to be had: every line is written as it is made.
            false => lines.flush(),
        }
    }
}

/// Writes every pending line now (before the process exits).
pub fn flush() {
    stderr_lines().0.flush();
}

/// `{"level":"info","msg":…,"fields":…}`
pub fn info(msg: &str, fields: serde_json::Value) {
    line(&serde_json::json!({ "level": "info", "msg": msg, "fields": fields }));
}

/// `{"level":"warn","msg":…,"fields":…}`
pub fn warn(msg: &str, fields: serde_json::Value) {
    line(&serde_json::json!({ "level": "warn", "msg": msg, "fields": fields }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What a test's lines were written to, and in how many writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_of_many_threads_leave_whole_in_the_order_each_made_them_in_few_writes() {
        let sink = Sink::default();
        let lines = Arc::new(Lines::new(Box::new(sink.clone())));
        let writer = lines.clone();
        std::thread::spawn(move || writer.write_forever(Duration::from_millis(5)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for n in 0..2000 {
                        let line =
                            format!("{}\n", serde_json::json!({ "thread": t, "n": n, "pad": "x".repeat(n % 50) }));
                        if lines.add(line.as_bytes()) {
                            lines.made.notify_one();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // Written without a flush, within the delay (a generous wait for a busy machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().0.iter().filter(|&&b| b == b'\n').count() < 8000 {
            assert!(std::time::Instant::now() < deadline, "every line is written without a flush");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let mut next = [0u64; 4];
        for line in String::from_utf8(bytes).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
            let t = v["thread"].as_u64().unwrap() as usize;
            assert_eq!(v["n"].as_u64().unwrap(), next[t], "thread {t}'s lines in the order made");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4]);
        assert!(writes < 8000, "lines share writes: {writes} writes for 8,000 lines");
    }

    #[test]
    fn a_flush_writes_what_is_pending_at_once() {
        let sink = Sink::default();
        let lines = Lines::new(Box::new(sink.clone()));
        lines.add(b"{\"a\":1}\n");
        lines.add(b"{\"b\":2}\n");
        assert!(sink.0.lock().unwrap().0.is_empty(), "nothing is written before the writer's turn");
        lines.flush();
        assert_eq!(sink.0.lock().unwrap().clone(), (b"{\"a\":1}\n{\"b\":2}\n".to_vec(), 1));
        lines.flush();
        assert_eq!(sink.0.lock().unwrap().1, 1, "nothing pending, nothing written");
    }
}
