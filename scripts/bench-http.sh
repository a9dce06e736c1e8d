#!/usr/bin/env bash
# The HTTP benchmark of BENCHMARKS.md: a release `purse serve` on a fresh SQLite file, and
# `purse bench --target` driving its API from the same machine (client and server share
# the cores). The request log is on, as by default (to a file); only the rate limit is off.
# Prints one JSON object per case; the last two ran at the same time.
# Usage: scripts/bench-http.sh [SINGLE_CHARGES] [BATCH_CHARGES]  (default 200,000 and 1,000,000)
# PURSE_BIN=path/to/purse runs another build (for A/B runs) instead of building this one.
set -euo pipefail
cd "$(dirname "$0")/.."
SINGLE="${1:-200000}"
BATCH="${2:-1000000}"
if [ -n "${PURSE_BIN:-}" ]; then
    PURSE="$PURSE_BIN"
else
    cargo build --release -p purse >&2
    PURSE="$PWD/target/release/purse"
fi
DIR="$(mktemp -d)"
PORT=18181
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT

KEY="$("$PURSE" keys create --database "sqlite://$DIR/h.db" --role operator --name bench 2>/dev/null | awk '{print $3}')"
PURSE_API_RATE_PER_KEY=0 \
    "$PURSE" serve --database "sqlite://$DIR/h.db" --listen "127.0.0.1:$PORT" 2>"$DIR/serve.log" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

run() {
    local name="$1"; shift
    printf '{"case":"%s","result":%s}\n' "$name" \
        "$("$PURSE" bench --json --target "http://127.0.0.1:$PORT" --key "$KEY" --accounts 1000 "$@")"
}
run http_single_64 --charges "$SINGLE" --batch 1 --concurrency 64
run http_batch_1000 --charges "$BATCH" --batch 1000 --concurrency 4
# Single charges while another client streams batches of 8,192, as a switch's charges beside
# a bulk import: the batches start a second earlier and, at the default sizes, outlast them.
"$PURSE" bench --json --target "http://127.0.0.1:$PORT" --key "$KEY" --accounts 1000 \
    --charges "$((BATCH * 2))" --batch 8192 --concurrency 1 >"$DIR/beside.json" &
BESIDE=$!
sleep 1
run http_single_64_beside_batches --charges "$((SINGLE / 2))" --batch 1 --concurrency 64
wait "$BESIDE"
printf '{"case":"%s","result":%s}\n' http_batch_8192_beside_singles "$(cat "$DIR/beside.json")"
