#!/usr/bin/env bash
# Runs every engine benchmark case of BENCHMARKS.md on a release build and prints one
# JSON object per case. Needs PostgreSQL for the postgres case (started like the tests).
# Usage: scripts/bench.sh [CHARGES]   (default 1,000,000 charges per case)
set -euo pipefail
cd "$(dirname "$0")/.."
CHARGES="${1:-1000000}"
cargo build --release -p purse >&2
PURSE=target/release/purse
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT

PG_ADMIN="$(scripts/postgres.sh)"
PG_BENCH="${PG_ADMIN%/*}/purse_bench"
fresh_pg() {
    su postgres -c "psql -qc 'DROP DATABASE IF EXISTS purse_bench WITH (FORCE)'" >&2
    su postgres -c "psql -qc 'CREATE DATABASE purse_bench OWNER purse'" >&2
}

run() {
    local name="$1"; shift
    rm -f "$DIR"/b.db*
    printf '{"case":"%s","result":%s}\n' "$name" "$("$PURSE" bench --json "$@")"
}

run sqlite_time_8192      --database "sqlite://$DIR/b.db" --accounts 100000 --charges "$CHARGES" --batch 8192 --concurrency 2 --ids time
run sqlite_time_8192_c1   --database "sqlite://$DIR/b.db" --accounts 100000 --charges "$CHARGES" --batch 8192 --concurrency 1 --ids time
run sqlite_random_8192    --database "sqlite://$DIR/b.db" --accounts 100000 --charges "$CHARGES" --batch 8192 --concurrency 2 --ids random
run sqlite_single_64      --database "sqlite://$DIR/b.db" --accounts 100000 --charges "$((CHARGES / 4))" --batch 1 --concurrency 64 --ids time
run sqlite_hot10_8192     --database "sqlite://$DIR/b.db" --accounts 100000 --charges "$CHARGES" --batch 8192 --concurrency 2 --ids time --hot-percent 10
run sqlite_1m_accounts    --database "sqlite://$DIR/b.db" --accounts 1000000 --charges "$CHARGES" --batch 8192 --concurrency 2 --ids time
fresh_pg
run postgres_time_8192    --database "$PG_BENCH" --accounts 100000 --charges "$CHARGES" --batch 8192 --concurrency 2 --ids time
