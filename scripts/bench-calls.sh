#!/usr/bin/env bash
# The rating and sessions benchmark of BENCHMARKS.md: a release `purse serve` on a fresh
# SQLite file; `purse bench --calls` imports a deck of 100,000 prefixes through the API,
# measures in-process rate lookups on it, then runs complete calls (authorize, two updates,
# terminate) over 64 connections; then single charges over HTTP in the same run, as the
# reference. Prints one JSON object per case.
# Usage: scripts/bench-calls.sh [CALLS] [SINGLE_CHARGES]  (default 20,000 and 100,000)
# PURSE_BIN=path/to/purse runs another build (for A/B runs) instead of building this one.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-20000}"
SINGLE="${2:-100000}"
if [ -n "${PURSE_BIN:-}" ]; then
    PURSE="$PURSE_BIN"
else
    cargo build --release -p purse >&2
    PURSE="$PWD/target/release/purse"
fi
DIR="$(mktemp -d)"
PORT=18182
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT

KEY="$("$PURSE" keys create --database "sqlite://$DIR/c.db" --role operator --name bench 2>/dev/null | awk '{print $3}')"
PURSE_API_RATE_PER_KEY=0 \
    "$PURSE" serve --database "sqlite://$DIR/c.db" --listen "127.0.0.1:$PORT" 2>"$DIR/serve.log" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

printf '{"case":"calls_64","result":%s}\n' \
    "$("$PURSE" bench --target "http://127.0.0.1:$PORT" --key "$KEY" --calls "$CALLS" --concurrency 64 --deck 100000)"
printf '{"case":"http_single_64","result":%s}\n' \
    "$("$PURSE" bench --json --target "http://127.0.0.1:$PORT" --key "$KEY" --accounts 1000 --charges "$SINGLE" --batch 1 --concurrency 64)"
