#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts the services the tests need
# (PostgreSQL, and schemathesis for the OpenAPI fuzz test), then every test of every
# crate, on SQLite and PostgreSQL alike.
set -euo pipefail
cd "$(dirname "$0")/.."

PURSE_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
export PURSE_TEST_POSTGRES_URL
PURSE_SCHEMATHESIS="$(scripts/schemathesis.sh)"
export PURSE_SCHEMATHESIS

# Arguments narrow the run (e.g. `scripts/test.sh -p purse --test stores`); none runs all.
if [ "$#" -eq 0 ]; then
    set -- --workspace
fi
cargo test --locked "$@"
