#!/usr/bin/env bash
# Starts a local PostgreSQL 15 for the tests (installing it if missing) and makes sure the
# test role exists. Idempotent: safe to run again and again. Prints the admin URL the tests
# use to create their own databases.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >&2
fi
if ! pg_lsclusters --no-header 2>/dev/null | grep -q '^15 \+main'; then
    pg_createcluster 15 main >&2
fi
if ! pg_ctlcluster 15 main status >/dev/null 2>&1; then
    pg_ctlcluster 15 main start >&2
fi
for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "postgres did not become ready" >&2; exit 1; }

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = 'purse'")" != "1" ]; then
    psql_admin "CREATE ROLE purse LOGIN CREATEDB PASSWORD 'purse'" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'purse_test'")" != "1" ]; then
    psql_admin "CREATE DATABASE purse_test OWNER purse" >&2
fi
echo "postgres://purse:purse@127.0.0.1:5432/purse_test"
