#!/usr/bin/env bash
# Installs Debian's poppler-utils (pdftotext) if missing: the tests read the PDFs Purse makes
# with it, an independent PDF parser. Idempotent. Prints the pdftotext path.
set -euo pipefail

if ! command -v pdftotext >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >&2
fi
command -v pdftotext
