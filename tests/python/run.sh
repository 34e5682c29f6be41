#!/usr/bin/env bash
# End-to-end tests: the official Dapr Python SDK against `outrigger run`.
#
#   tests/python/run.sh [extra pytest args]
#
# Environment:
#   OUTRIGGER_VENV  virtualenv to create/reuse (default: <repo>/.venv)
#   OUTRIGGER_BIN   outrigger binary under test (default: <repo>/target/debug/outrigger)
#   PYTHON          interpreter used to create the venv (default: python3)
#   REDIS_SERVER    redis-server binary (default: from PATH, then /usr/bin/redis-server)
#
# Needs python3 >= 3.9 with the venv module (Debian: apt-get install python3-venv) and
# redis-server (Debian: apt-get install redis-server). Nothing here uses a fixed port.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${OUTRIGGER_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.outrigger-tests-python.stamp"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "run.sh: creating virtualenv $venv" >&2
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
        echo "run.sh: '$python -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
        exit 1
    fi
fi

# Reinstall only when requirements.txt (or the venv's interpreter) changed.
want="$( { sha256sum "$requirements" | cut -d' ' -f1; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "run.sh: installing $requirements into $venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
    echo "$want" > "$stamp"
fi

cd "$repo"
exec "$venv/bin/python" -m pytest "$here" -q "$@"
