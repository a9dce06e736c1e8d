#!/usr/bin/env bash
# Threshold crossed → webhook and e-mail, with default settings: a release `purse serve` on a
# fresh SQLite file, and scripts/bench_alerts.py as client and local receivers (HTTP and SMTP).
# Prints one JSON object: milliseconds from the charge's answer to the webhook request and to the
# SMTP hand-off (p50, p90, max). Usage: scripts/bench-alerts.sh [ROUNDS]  (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-50}"
PYTHON="$(scripts/smtp.sh)"
if [ -z "${PURSE_BIN:-}" ]; then cargo build --release -p purse >&2; fi
PURSE="${PURSE_BIN:-$PWD/target/release/purse}"   # PURSE_BIN: another build, for A/B runs
DIR="$(mktemp -d)"
PORT=18191 SMTP=18192 HOOK=18193
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; cp "$DIR/serve.log" /tmp/bench-alerts-serve.log 2>/dev/null; rm -rf "$DIR"' EXIT

KEY="$("$PURSE" keys create --database "sqlite://$DIR/a.db" --role operator --name bench 2>/dev/null | awk '{print $3}')"
PURSE_API_LOG_REQUESTS=0 PURSE_SMTP_HOST=127.0.0.1 PURSE_SMTP_PORT="$SMTP" PURSE_SMTP_TLS=none PURSE_ALLOW_PRIVATE_WEBHOOKS=1 \
    "$PURSE" serve --database "sqlite://$DIR/a.db" --listen "127.0.0.1:$PORT" 2>"$DIR/serve.log" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
"$PYTHON" scripts/bench_alerts.py "http://127.0.0.1:$PORT" "$KEY" "$SMTP" "$HOOK" "$ROUNDS"
