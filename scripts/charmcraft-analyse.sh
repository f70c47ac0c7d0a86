#!/usr/bin/env bash
# Run the real charmcraft 4.x linters (`charmcraft analyse`) on a packed .charm and fail when
# any check reports an error.
#
#   scripts/charmcraft-analyse.sh target/charm/redis-k8s_ubuntu@24.04-amd64.charm
#
# charmcraft comes from PyPI into a venv kept outside the repository (see
# scripts/charmcraft-venv.sh): created on the first run (about half a minute), reused after,
# so the cost in CI is the analysis itself (a few seconds).
#
# Exit codes: 0 no check reported an error (warnings and non-applicable results are printed
# and accepted); 1 a check reported error/fatal, or charmcraft failed; 2 usage.
set -euo pipefail

log() { echo "charmcraft-analyse: $*" >&2; }

if [ $# -ne 1 ]; then
    echo "usage: $0 <file.charm>" >&2
    exit 2
fi
charm=$1
if [ ! -f "$charm" ]; then
    log "$charm: no such file"
    exit 2
fi
charm=$(cd "$(dirname "$charm")" && pwd)/$(basename "$charm")

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=scripts/charmcraft-venv.sh
. "$script_dir/charmcraft-venv.sh"
CC_LOG_PREFIX=charmcraft-analyse
ensure_charmcraft_venv "$repo_root" || exit 1
venv=$CHARMCRAFT_VENV

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
# platformdirs (via craft-cli) wants a private runtime dir; CI has none.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    mkdir -m 0700 "$workdir/run"
    export XDG_RUNTIME_DIR=$workdir/run
fi
log "$("$venv/bin/charmcraft" version 2>/dev/null): analysing $charm"
# charmcraft's exit code is the worst result's: 0 ok/non-applicable, 3 warning, 2 error,
# 1 fatal (or a crash). The JSON results decide, and the exit code must agree with them.
set +e
(cd "$workdir" && "$venv/bin/charmcraft" analyse --format json "$charm") \
    >"$workdir/out.json" 2>"$workdir/err.txt"
status=$?
set -e

judge='
import json, sys
path, status = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as fh:
        results = json.load(fh)
except ValueError as exc:
    print(f"charmcraft-analyse: no JSON results (exit {status}): {exc}", file=sys.stderr)
    sys.exit(1)
if not isinstance(results, list) or not results:
    print("charmcraft-analyse: charmcraft returned no results", file=sys.stderr)
    sys.exit(1)
bad = []
for item in results:
    kind, name, result = item.get("check_type", "?"), item.get("name", "?"), item.get("result")
    print(f"{kind:9} {name:20} {result}")
    if result in ("error", "errors", "fatal"):
        bad.append(item)
        text = item.get("text")
        if text:
            print(f"    {text}")
if bad:
    print(f"charmcraft-analyse: {len(bad)} check(s) failed", file=sys.stderr)
    sys.exit(1)
if status not in (0, 3):
    print(f"charmcraft-analyse: charmcraft exited {status} with no error result", file=sys.stderr)
    sys.exit(1)
'
if ! "$venv/bin/python" -c "$judge" "$workdir/out.json" "$status"; then
    cat "$workdir/err.txt" >&2
    exit 1
fi
log "no errors (charmcraft exit $status)"
