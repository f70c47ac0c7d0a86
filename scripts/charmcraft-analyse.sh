#!/usr/bin/env bash
# Run the real charmcraft 4.x linters (`charmcraft analyse`) on a packed .charm and fail when
# any check reports an error.
#
#   scripts/charmcraft-analyse.sh target/charm/redis-k8s_ubuntu@24.04-amd64.charm
#
# charmcraft comes from PyPI into a venv kept OUTSIDE the repository (it is ~150 MB and
# machine-specific):
#   ${REDIS_K8S_CHARMCRAFT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s/charmcraft-venv}
# The first run creates it (about half a minute); later runs reuse it when it already holds
# an importable charmcraft 4.x, so the cost in CI is the analysis itself (a few seconds).
#
# Why the venv is built this way (Debian 12 host):
# - charmcraft imports python-apt (`apt_pkg`), which is not on PyPI: the venv uses Debian's
#   /usr/bin/python3 with --system-site-packages so the python3-apt package is visible.
# - Debian's python3-openssl is too old for the cryptography that charmcraft pulls in, and
#   the system site-packages would otherwise win: pyOpenSSL is upgraded inside the venv.
#
# Exit codes: 0 no check reported an error (warnings and non-applicable results are printed
# and accepted); 1 a check reported error/fatal, or charmcraft failed; 2 usage.
set -euo pipefail

CHARMCRAFT_SPEC=${REDIS_K8S_CHARMCRAFT_SPEC:-"charmcraft>=4,<5"}

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
venv=${REDIS_K8S_CHARMCRAFT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s/charmcraft-venv}
case "$venv/" in
    "$repo_root"/*)
        log "the venv ($venv) must live outside the repository"
        exit 2
        ;;
esac

# Debian packages the venv depends on; installed only when missing (CI runs as root).
ensure_system_packages() {
    local missing=()
    /usr/bin/python3 -c 'import apt_pkg' 2>/dev/null || missing+=(python3-apt)
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        log "missing ${missing[*]} and cannot apt-get install them (needs root on Debian/Ubuntu)"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# True when the venv has a charmcraft 4.x whose imports (python-apt, pyOpenSSL) work.
venv_ok() {
    [ -x "$venv/bin/charmcraft" ] || return 1
    "$venv/bin/python" -c '
import sys
from importlib.metadata import version
import apt_pkg, OpenSSL, charmcraft.application.main
sys.exit(0 if version("charmcraft").split(".")[0] == "4" else 1)
' 2>/dev/null
}

ensure_venv() {
    if venv_ok; then
        return 0
    fi
    ensure_system_packages
    mkdir -p "$(dirname "$venv")"
    # A lock so that two concurrent first runs don't build the venv over each other.
    exec 9>"$venv.lock"
    flock 9
    if ! venv_ok; then
        log "creating $venv with $CHARMCRAFT_SPEC (first run only)"
        rm -rf "$venv"
        /usr/bin/python3 -m venv --system-site-packages "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$CHARMCRAFT_SPEC"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pyOpenSSL
    fi
    flock -u 9
    exec 9>&-
    if ! venv_ok; then
        log "charmcraft in $venv does not import; remove the venv and retry"
        exit 1
    fi
}

ensure_venv
# craft-cli wants a runtime dir for its logs; CI has none.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
log "$("$venv/bin/charmcraft" version 2>/dev/null): analysing $charm"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
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
