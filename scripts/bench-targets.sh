#!/usr/bin/env bash
# Issue 22's targets side by side with this machine's ceilings: each round runs the raw
# SQLite ceilings of ../shared/limits (built as it is, with fsync, and with this project's
# SQLite flags, fdatasync), then every case once on a release build; then prints each
# round's ratios and their medians. Ratios are taken within a round: the machine's speed
# drifts between runs, ratios much less. For HTTP it also prints the CPU a request costs the
# server and the load generator, which share this machine's cores, and the ratio that CPU
# would allow if every core were busy: a bound on the HTTP targets here.
# Usage: scripts/bench-targets.sh [ROUNDS]   (default 3; about a minute a round)
# LIMITS=path/to/limits overrides ../shared/limits; PURSE_BIN=path/to/purse runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ROUNDS="${1:-3}"
LIMITS="${LIMITS:-$ROOT/../shared/limits}"
[ -f "$LIMITS/Cargo.toml" ] || { echo "no limits crate at $LIMITS (set LIMITS=...)" >&2; exit 1; }
if [ -n "${PURSE_BIN:-}" ]; then
    PURSE="$PURSE_BIN"
else
    cargo build --release --locked -p purse >&2
    PURSE="$ROOT/target/release/purse"
fi
# Built outside this directory, the limits crate gets SQLite's defaults (fsync); from here,
# this project's .cargo/config.toml (fdatasync, as Purse commits).
(cd "$LIMITS" && CARGO_TARGET_DIR="$ROOT/target/limits" cargo build --release --quiet >&2)
CARGO_TARGET_DIR="$ROOT/target/limits-fds" cargo build --release --quiet --manifest-path "$LIMITS/Cargo.toml" >&2
DIR="$(mktemp -d)"
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT

ceiling() { # the keyed-time ceiling, transfers/s
    LIMITS_DIR="$DIR" "$ROOT/target/$1/release/limits" 1000000 8192 | awk '/keyed time/ {print $(NF-1)}'
}
engine() { # purse bench on a fresh SQLite file: its JSON line
    rm -f "$DIR"/b.db*
    "$PURSE" bench --json --database "sqlite://$DIR/b.db" "$@" 2>/dev/null
}
http() { # a fresh release server, a warm-up, then single charges on $1 connections
    rm -f "$DIR"/h.db*
    local port key
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    key="$("$PURSE" keys create --database "sqlite://$DIR/h.db" --role operator --name bench 2>/dev/null | awk '{print $3}')"
    PURSE_API_RATE_PER_KEY=0 "$PURSE" serve --database "sqlite://$DIR/h.db" --listen "127.0.0.1:$port" 2>"$DIR/serve.log" &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    "$PURSE" bench --json --target "http://127.0.0.1:$port" --key "$key" --accounts 1000 --charges 2000 --batch 1 --concurrency "$1" >/dev/null
    # The timed run, with the CPU the server (its /proc ticks) and the load generator (its
    # rusage) spend on it: they share this machine's cores.
    python3 -c '
import json, os, resource, subprocess, sys
def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
before = ticks(sys.argv[1])
line = json.loads(subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True, check=True).stdout)
line["server_cpu_s"] = round((ticks(sys.argv[1]) - before) / os.sysconf("SC_CLK_TCK"), 2)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
line["loadgen_cpu_s"] = round(used.ru_utime + used.ru_stime, 3)
print(json.dumps(line, separators=(",", ":")))
' "$SERVER" "$PURSE" bench --json --target "http://127.0.0.1:$port" --key "$key" --accounts 1000 --charges 100000 --batch 1 --concurrency "$1"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
}

for round in $(seq "$ROUNDS"); do
    printf '{"round":%d,"ceiling_fsync":%s,"ceiling_fdatasync":%s' "$round" "$(ceiling limits)" "$(ceiling limits-fds)"
    printf ',"engine":%s' "$(engine --accounts 100000 --charges 1000000 --batch 8192 --concurrency 2 --ids time)"
    printf ',"million":%s' "$(engine --accounts 1000000 --charges 1000000 --batch 8192 --concurrency 2 --ids time)"
    printf ',"random":%s' "$(engine --accounts 100000 --charges 1000000 --batch 8192 --concurrency 2 --ids random)"
    printf ',"engine_64":%s' "$(engine --accounts 1000 --charges 100000 --batch 1 --concurrency 64)"
    printf ',"engine_16":%s' "$(engine --accounts 1000 --charges 100000 --batch 1 --concurrency 16)"
    printf ',"http_64":%s' "$(http 64)"
    printf ',"http_16":%s}\n' "$(http 16)"
done | tee "$DIR/rounds.jsonl"

python3 - "$DIR/rounds.jsonl" <<'EOF'
import json, os, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
rate = lambda r, case: r[case]["charges_per_s"]
targets = [
    ("engine / keyed-time ceiling (fsync)", 0.7, lambda r: rate(r, "engine") / r["ceiling_fsync"]),
    ("engine / keyed-time ceiling (fdatasync)", 0.7, lambda r: rate(r, "engine") / r["ceiling_fdatasync"]),
    ("1,000,000 / 100,000 accounts", 0.7, lambda r: rate(r, "million") / rate(r, "engine")),
    ("HTTP 64 / engine 64", 0.7, lambda r: rate(r, "http_64") / rate(r, "engine_64")),
    ("HTTP 16 / engine 16", 0.8, lambda r: rate(r, "http_16") / rate(r, "engine_16")),
]
print(f"{'target':42} {'per round':34} median  goal")
for name, goal, ratio in targets:
    values = [ratio(r) for r in rounds]
    median = statistics.median(values)
    print(f"{name:42} {' '.join(f'{v:.2f}' for v in values):34} {median:.2f}   {goal} {'met' if median >= goal else 'not met'}")
randoms = [rate(r, "random") for r in rounds]
p99 = [r["http_64"]["p99_ms"] for r in rounds]
print(f"{'random ids, charges/s':42} {' '.join(f'{v / 1000:.0f}k' for v in randoms):34} {statistics.median(randoms) / 1000:.0f}k   100k")
print(f"{'HTTP 64 p99, ms':42} {' '.join(f'{v:.1f}' for v in p99):34} {statistics.median(p99):.1f}   10")
# What bounds the HTTP ratios on this machine: the CPU a request costs the server and the
# load generator together, on cores they share. At most cores / (that CPU) requests a second.
cores = os.cpu_count()
for case, engine in (("http_64", "engine_64"), ("http_16", "engine_16")):
    per = [(r[case]["server_cpu_s"] * 1e6 / r[case]["charges"], r[case]["loadgen_cpu_s"] * 1e6 / r[case]["charges"]) for r in rounds]
    bound = [cores * 1e6 / (s + l) / rate(r, engine) for (s, l), r in zip(per, rounds)]
    label = case.replace("http_", "HTTP ")
    print(f"{label + ' µs CPU a request (server+load gen)':42} {' '.join(f'{s:.0f}+{l:.0f}' for s, l in per):34}")
    print(f"{label + ' ratio if every core were busy':42} {' '.join(f'{b:.2f}' for b in bound):34} {statistics.median(bound):.2f}")
EOF
