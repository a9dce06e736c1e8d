"""Threshold crossed -> webhook request and SMTP hand-off, measured against a running `purse serve`.

Run by scripts/bench-alerts.sh, which starts the server; this script is the local receiver
(an HTTP server for the webhook and an SMTP server) and the client. Each round tops a customer
up to 100.00 USD, then charges 60.00 across its 50.00 warning threshold, and takes the time from
the charge's answer to the webhook's arrival and to the e-mail's hand-off (end of DATA).
Prints one JSON object.
"""

import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

API, KEY, SMTP_PORT, HOOK_PORT, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
arrived = {"hook": [], "mail": []}
lock = threading.Condition()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        now = time.monotonic()
        body = self.rfile.read(int(self.headers["content-length"]))
        if json.loads(body).get("data", {}).get("rule") == "warning":
            with lock:
                arrived["hook"].append(now)
                lock.notify_all()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Mail:
    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        if b"Low balance" in envelope.content:
            with lock:
                arrived["mail"].append(now)
                lock.notify_all()
        return "250 OK"


def call(method, path, body):
    request = urllib.request.Request(
        API + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"authorization": "Bearer " + KEY, "idempotency-key": str(uuid.uuid4()), "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode()}")


def main():
    hooks = ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Hook)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    smtp = Controller(Mail(), hostname="127.0.0.1", port=SMTP_PORT)
    smtp.start()
    call("POST", "/v1/currencies", {"code": "USD"})
    call("POST", "/v1/webhook-endpoints", {"url": f"http://127.0.0.1:{HOOK_PORT}/hook"})
    customer = call("POST", "/v1/customers", {"client_id": "alerted-" + uuid.uuid4().hex[:8], "name": "Alerted", "billing": "prepaid", "currency": "USD"})
    wallet = customer["wallet"]
    call("PUT", f"/v1/customers/{customer['id']}/alert-settings", {"billing_email": "alerted@bench.test", "warning_thresholds": "50"})
    to_hook, to_mail = [], []
    for n in range(ROUNDS):
        call("POST", "/v1/payments", {"client_id": str(uuid.uuid4()), "account": wallet, "amount": "100.00", "currency": "USD", "method": "cash"})
        time.sleep(0.05)  # the refill's own notice (a receipt) goes first
        call("POST", "/v1/charges", {"client_id": str(uuid.uuid4()), "account": wallet, "amount": "60.00", "currency": "USD"})
        answered = time.monotonic()
        with lock:
            if not lock.wait_for(lambda: len(arrived["hook"]) > n and len(arrived["mail"]) > n, timeout=10):
                sys.exit(f"round {n}: no webhook or e-mail within 10 s")
            to_hook.append((arrived["hook"][n] - answered) * 1000)
            to_mail.append((arrived["mail"][n] - answered) * 1000)
        # Back to 0: the next top-up crosses upwards again.
        call("POST", "/v1/charges", {"client_id": str(uuid.uuid4()), "account": wallet, "amount": "40.00", "currency": "USD"})
    smtp.stop()
    hooks.shutdown()

    def summary(ms):
        ms = sorted(ms)
        return {"p50_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2), "max_ms": round(ms[-1], 2)}

    print(json.dumps({"rounds": ROUNDS, "webhook": summary(to_hook), "smtp": summary(to_mail)}))


main()
