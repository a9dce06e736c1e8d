#!/usr/bin/env bash
# `scripts/pyvenv.sh PACKAGE VERSION MODULE`: installs PACKAGE==VERSION from PyPI into
# .tools/PACKAGE-VERSION once (creating the virtual environment, and installing Debian's
# python3-venv if it is missing), checks that MODULE imports, and prints the path of the
# environment's python. Idempotent: a second run only prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE="$1" VERSION="$2" MODULE="$3"
VENV="$PWD/.tools/$PACKAGE-$VERSION"
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c "import $MODULE" 2>/dev/null; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "$PACKAGE==$VERSION" >&2
fi
"$PY" -c "import $MODULE" >/dev/null
echo "$PY"
