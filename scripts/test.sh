#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts the services the tests need
# (PostgreSQL, schemathesis for the OpenAPI fuzz test, Chromium and ChromeDriver for the
# portal's browser tests, aiosmtpd for the notification tests, localstripe for the payment tests, pdftotext to read the PDFs), then every test of every crate, on SQLite and PostgreSQL alike.
set -euo pipefail
cd "$(dirname "$0")/.."

PURSE_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
export PURSE_TEST_POSTGRES_URL
PURSE_SCHEMATHESIS="$(scripts/schemathesis.sh)"
export PURSE_SCHEMATHESIS
PURSE_CHROMEDRIVER="$(scripts/chromium.sh)"
export PURSE_CHROMEDRIVER
PURSE_AIOSMTPD_PYTHON="$(scripts/smtp.sh)"
export PURSE_AIOSMTPD_PYTHON
PURSE_LOCALSTRIPE_PYTHON="$(scripts/stripe.sh)"
export PURSE_LOCALSTRIPE_PYTHON
PURSE_PDFTOTEXT="$(scripts/poppler.sh)"
export PURSE_PDFTOTEXT

# Arguments narrow the run (e.g. `scripts/test.sh -p purse --test stores`); none runs all,
# after checking the formatting and the lints (warnings are errors).
if [ "$#" -eq 0 ]; then
    cargo fmt --all --check
    cargo clippy --locked --workspace --all-targets -- -D warnings
    set -- --workspace
fi
cargo test --locked "$@"
