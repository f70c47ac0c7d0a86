#!/usr/bin/env bash
# Create (first run) or reuse a Python venv holding `ops` from PyPI, for the Python ops
# charm that the end-to-end test tests/e2e_ops_client.rs deploys next to ours
# (tests/ops_client_charm). Prints the venv's directory on stdout; progress goes to stderr.
#
# The venv lives OUTSIDE the repository (machine-specific, and the local model copies the
# charm dir into each unit):
#   ${REDIS_K8S_OPS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s/ops-venv}
# Creating it needs PyPI and takes a few seconds; a venv that already imports the pinned
# ops is reused as is.
#
# ops is pinned to the last 2.x release: 2.x is what most published charms still run and
# supports the Python 3.11 that Debian 12 ships. Override with REDIS_K8S_OPS_SPEC.
set -euo pipefail

OPS_SPEC=${REDIS_K8S_OPS_SPEC:-"ops==2.23.6"}
OPS_WANT=${OPS_SPEC#ops==}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
venv=${REDIS_K8S_OPS_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/redis-k8s/ops-venv}

log() { echo "ops-venv: $*" >&2; }

case "$venv/" in
    "$repo_root"/*)
        log "the venv ($venv) must live outside the repository"
        exit 1
        ;;
esac

# True when the venv imports ops at the pinned version (any 2.x when the spec is a range).
venv_ok() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$OPS_WANT" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import ops  # noqa: F401  (the import itself is the check)
want = sys.argv[1]
have = version("ops")
ok = have == want if want[:1].isdigit() else have.split(".")[0] == "2"
sys.exit(0 if ok else 1)
EOF
}

# A python3 that can make venvs: Debian's, else whatever python3.11/python3 is on PATH
# (pyenv). On Debian/Ubuntu as root, python3-venv is installed when missing.
pick_python() {
    local p
    for p in /usr/bin/python3 "$(command -v python3.11 || true)" "$(command -v python3 || true)"; do
        if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import venv, ensurepip' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    if [ -x /usr/bin/python3 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        log "installing python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q python3-venv >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; }
        if /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
            echo /usr/bin/python3
            return 0
        fi
    fi
    log "no python3 with the venv module (install python3-venv)"
    return 1
}

if ! venv_ok; then
    mkdir -p "$(dirname "$venv")"
    # A lock so that two concurrent first runs don't build the venv over each other.
    exec 9>"$venv.lock"
    flock 9
    if ! venv_ok; then
        python=$(pick_python)
        log "creating $venv with $OPS_SPEC ($python, first run only)"
        # Run from / so that nothing in the caller's cwd shadows a module (`-m` puts cwd
        # first on sys.path); one retry, for a flaky ensurepip or network.
        for try in 1 2; do
            rm -rf "$venv"
            if (cd / && "$python" -m venv "$venv" >&2 &&
                "$venv/bin/python" -m pip install -q --disable-pip-version-check "$OPS_SPEC" >&2); then
                break
            fi
            log "creating the venv failed (try $try)"
        done
    fi
    flock -u 9
    exec 9>&-
    if ! venv_ok; then
        log "ops ($OPS_SPEC) does not import in $venv; remove the venv and retry"
        exit 1
    fi
fi
echo "$venv"
