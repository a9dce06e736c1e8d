#!/usr/bin/env bash
# Installs schemathesis (the OpenAPI fuzzer the test suite runs against `purse serve`) into
# a virtual environment under .tools/, once; prints the path of its `st` command.
# Idempotent: a second run only prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="4.32.5"
VENV="$PWD/.tools/schemathesis-$VERSION"
ST="$VENV/bin/st"
if [ ! -x "$ST" ]; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        # Debian ships venv separately.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
# CPython 3.11.7 turns a RecursionError inside ast.parse into "SystemError: AST constructor
# recursion depth mismatch"; hypothesis parses its own sources while schemathesis is deep in
# a schema walk, and the default limit of 1000 frames is sometimes reached. A higher limit
# removes the trigger (written every run, so an older install gets it too).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo 'import sys; sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))' > "$SITE/sitecustomize.py"
"$ST" --version >/dev/null
echo "$ST"
