# shellcheck shell=bash
# Sourced by charmcraft-analyse.sh and charmcraft-destructive-pack.sh: provides
# `ensure_charmcraft_venv`, which creates (first time) or reuses a venv holding the real
# charmcraft 4.x from PyPI, and sets CHARMCRAFT_VENV to it.
#
# The venv lives OUTSIDE the repository (it is ~150 MB and machine-specific):
#   ${REDIS_K8S_CHARMCRAFT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s/charmcraft-venv}
# Creating it takes about half a minute; a venv that already imports charmcraft 4.x is reused
# as is (a couple of seconds to check).
#
# Why it is built this way (Debian 12 host):
# - charmcraft imports python-apt (`apt_pkg`), which is not on PyPI: the venv uses Debian's
#   /usr/bin/python3 with --system-site-packages so the python3-apt package is visible.
# - Debian's python3-openssl is too old for the cryptography that charmcraft pulls in, and the
#   system site-packages would otherwise win: pyOpenSSL is upgraded inside the venv.

CHARMCRAFT_SPEC=${REDIS_K8S_CHARMCRAFT_SPEC:-"charmcraft>=4,<5"}

_cc_log() { echo "${CC_LOG_PREFIX:-charmcraft-venv}: $*" >&2; }

# Debian packages the venv depends on; installed only when missing (CI runs as root).
_cc_ensure_system_packages() {
    local missing=()
    /usr/bin/python3 -c 'import apt_pkg' 2>/dev/null || missing+=(python3-apt)
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        _cc_log "missing ${missing[*]} and cannot apt-get install them (needs root on Debian/Ubuntu)"
        return 1
    fi
    _cc_log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# True when the venv has a charmcraft 4.x whose imports (python-apt, pyOpenSSL) work.
_cc_venv_ok() {
    [ -x "$CHARMCRAFT_VENV/bin/charmcraft" ] || return 1
    "$CHARMCRAFT_VENV/bin/python" -c '
import sys
from importlib.metadata import version
import apt_pkg, OpenSSL, charmcraft.application.main
sys.exit(0 if version("charmcraft").split(".")[0] == "4" else 1)
' 2>/dev/null
}

# ensure_charmcraft_venv REPO_ROOT: set CHARMCRAFT_VENV and make sure it is usable.
ensure_charmcraft_venv() {
    local repo_root=$1
    CHARMCRAFT_VENV=${REDIS_K8S_CHARMCRAFT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s/charmcraft-venv}
    case "$CHARMCRAFT_VENV/" in
        "$repo_root"/*)
            _cc_log "the venv ($CHARMCRAFT_VENV) must live outside the repository"
            return 1
            ;;
    esac
    if _cc_venv_ok; then
        return 0
    fi
    _cc_ensure_system_packages || return 1
    mkdir -p "$(dirname "$CHARMCRAFT_VENV")"
    # A lock so that two concurrent first runs don't build the venv over each other.
    exec 9>"$CHARMCRAFT_VENV.lock"
    flock 9
    if ! _cc_venv_ok; then
        _cc_log "creating $CHARMCRAFT_VENV with $CHARMCRAFT_SPEC (first run only)"
        rm -rf "$CHARMCRAFT_VENV"
        if ! {
            /usr/bin/python3 -m venv --system-site-packages "$CHARMCRAFT_VENV" &&
                "$CHARMCRAFT_VENV/bin/python" -m pip install -q --disable-pip-version-check "$CHARMCRAFT_SPEC" &&
                "$CHARMCRAFT_VENV/bin/python" -m pip install -q --disable-pip-version-check -U pyOpenSSL
        }; then
            _cc_log "creating the venv failed"
        fi
    fi
    flock -u 9
    exec 9>&-
    if ! _cc_venv_ok; then
        _cc_log "charmcraft in $CHARMCRAFT_VENV does not import; remove the venv and retry"
        return 1
    fi
}
