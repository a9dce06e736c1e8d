#!/usr/bin/env bash
# Measures invoicing on a release build: one customer with N charges (default 100,000) in a
# month, its invoice issued (one ledger batch, then its lines walked once from the journal
# and kept), read again, and made as a PDF. Prints what it measured.
# Usage: scripts/bench_invoice.sh [CHARGES]
set -euo pipefail
cd "$(dirname "$0")/.."
CHARGES="${1:-100000}"
cargo build --release -p purse >&2
PURSE="$PWD/target/release/purse"
DIR="$(mktemp -d)"
DB="sqlite://$DIR/bench.db"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PURSE" migrate --database "$DB" >/dev/null
KEY=$("$PURSE" keys create --database "$DB" --role operator --name bench 2>&1 | grep -o 'purse_[A-Za-z0-9_]*' | head -1)
"$PURSE" serve --database "$DB" --listen "127.0.0.1:$PORT" >"$DIR/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
python3 - "$PORT" "$KEY" "$CHARGES" <<'PY'
import json, sys, time, urllib.request, uuid
port, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())})
    with urllib.request.urlopen(r) as f:
        return json.load(f) if f.headers.get("content-type", "").startswith("application/json") else f.read()
call("POST", "/v1/currencies", {"code": "USD", "scale": 4})
c = call("POST", "/v1/customers", {"client_id": "heavy", "name": "Heavy", "billing": "postpaid", "currency": "USD", "credit_limit": "1000000"})
for b in range(n // 1000):
    call("POST", "/v1/charges/batch", {"items": [{"client_id": str(uuid.uuid4()), "account": c["wallet"], "amount": "0.0123", "currency": "USD",
        "service": ["calls", "sms", "data"][i % 3]} for i in range(1000)]})
t = time.time(); i = call("POST", f"/v1/customers/{c['id']}/invoices"); issue = time.time() - t
reads = []
for _ in range(5):
    t = time.time(); call("GET", f"/v1/invoices/{i['id']}"); reads.append(time.time() - t)
t = time.time(); pdf = call("GET", f"/v1/invoices/{i['id']}/pdf"); made = time.time() - t
print(json.dumps({"charges": n, "total": i["total"], "lines": len(i["lines"]), "issue_and_first_walk_ms": round(issue * 1000, 1),
    "read_ms_median": round(sorted(reads)[2] * 1000, 2), "pdf_ms": round(made * 1000, 2), "pdf_bytes": len(pdf)}))
PY
