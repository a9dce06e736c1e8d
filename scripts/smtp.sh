#!/usr/bin/env bash
# Installs aiosmtpd (the real SMTP server the notification tests deliver to) into a virtual
# environment under .tools/, once; prints the path of its python. Tests start their own
# server with it: `PYTHON -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`.
# Idempotent: a second run only prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="1.4.6"
VENV="$PWD/.tools/aiosmtpd-$VERSION"
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import aiosmtpd' 2>/dev/null; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "aiosmtpd==$VERSION" >&2
fi
"$PY" -c 'import aiosmtpd' >/dev/null
echo "$PY"
