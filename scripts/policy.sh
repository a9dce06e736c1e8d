#!/usr/bin/env bash
# Writes the authorization policy's table (`purse policy`) into README.md and
# docs/authorization.md, in place of the table they carry (a test keeps them equal).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p purse -- policy > target/policy.md
python3 - <<'PY'
new = open('target/policy.md').read().rstrip('\n').split('\n')
for f in ['README.md', 'docs/authorization.md']:
    lines = open(f).read().split('\n')
    start = lines.index(new[0])
    end = start
    while end < len(lines) and lines[end].startswith('|'):
        end += 1
    lines[start:end] = new
    open(f, 'w').write('\n'.join(lines))
PY
