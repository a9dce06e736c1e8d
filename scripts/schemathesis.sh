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
# recursion depth mismatch"; hypothesis parses its own sources (to describe a lambda) while
# schemathesis is deep in a schema walk. A higher limit removes most of it; what is left (seen
# on the first runs after a fresh install) is parsed again on a thread of its own, whose stack
# starts empty. Written every run, so an older install gets it too.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/sitecustomize.py" <<'PY'
import ast
import sys
import threading

sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
_parse = ast.parse


def _parse_on_a_fresh_stack(*args, **kwargs):
    try:
        return _parse(*args, **kwargs)
    except SystemError:
        out = {}

        def run():
            try:
                out["tree"] = _parse(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                out["error"] = e

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["tree"]


ast.parse = _parse_on_a_fresh_stack
PY
"$ST" --version >/dev/null
echo "$ST"
