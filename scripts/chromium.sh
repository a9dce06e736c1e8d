#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the portal's browser tests if missing.
# Idempotent. Prints the chromedriver path the tests start (each test starts its own, on a
# free port, with a fresh profile).
set -euo pipefail

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi
command -v chromedriver
