#!/usr/bin/env bash
# Pack the charm with the REAL charmcraft 4.x (`charmcraft pack --destructive-mode`) from
# charmcraft.yaml, on a host that is not Ubuntu 24.04.
#
#   scripts/charmcraft-destructive-pack.sh [--out DIR] [--keep]
#
# charmcraft refuses a destructive build unless the host OS equals the build base
# ("Ubuntu 24.04 builds cannot be performed on this Debian 12 system.", exit 78). Its check
# reads /etc/os-release, so the build runs in a private mount namespace (`unshare --mount`)
# in which an Ubuntu 24.04 os-release is bind-mounted over /usr/lib/os-release (and
# /etc/os-release when that is a file rather than the usual symlink). Nothing outside the
# namespace sees the change, and it disappears with the process. On a real Ubuntu 24.04
# host no namespace is needed and none is used.
#
# What this proves: charmcraft.yaml is valid for charmcraft 4, the rust plugin builds the
# charm binary with system cargo (`cargo install --locked`), and organize/prime give the
# expected .charm layout. What it does not: the binary is built against the host's glibc,
# not Ubuntu 24.04's (fine as long as the host's is older; scripts/pack-charm checks).
#
# The project is copied (tracked and untracked-but-not-ignored files, so no target/) into a
# scratch directory so that charmcraft's parts/, stage/ and prime/ never land in the repo.
# Cargo's build directory is kept under the cache dir so that re-runs only rebuild the
# charm crate. Requires root (mount namespaces and bind mounts).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/redis-k8s

log() { echo "charmcraft-destructive-pack: $*" >&2; }

out_dir=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out)
            [ $# -ge 2 ] || { log "--out needs a directory"; exit 2; }
            out_dir=$2
            shift 2
            ;;
        --keep) keep=1; shift ;;
        -h | --help)
            sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
done
[ -n "$out_dir" ] || out_dir=$repo_root/target/charm

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it needs a mount namespace and bind mounts)"
    exit 1
fi
for tool in unshare mount git tar cargo rustc; do
    command -v "$tool" >/dev/null || { log "$tool not found"; exit 1; }
done

# shellcheck source=scripts/charmcraft-venv.sh
. "$script_dir/charmcraft-venv.sh"
CC_LOG_PREFIX=charmcraft-destructive-pack
ensure_charmcraft_venv "$repo_root" || exit 1

started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/redis-k8s-charmcraft.XXXXXX")
cleanup() {
    if [ "$keep" -eq 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# 1. A clean copy of the project: what git would commit, plus new files not yet added.
mkdir -p "$work/project"
(cd "$repo_root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -xf - -C "$work/project"
[ -f "$work/project/Cargo.lock" ] || { log "Cargo.lock is not in the project (cargo install --locked needs it)"; exit 1; }

# 2. The os-release charmcraft should see.
cat >"$work/os-release" <<'EOF'
PRETTY_NAME="Ubuntu 24.04 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
EOF
fake=1
if (. /etc/os-release && [ "${ID:-}" = ubuntu ] && [ "${VERSION_ID:-}" = 24.04 ]); then
    fake=0
fi

# 3. charmcraft pack in the namespace. PATH puts the venv first (the rust plugin's
#    override-build calls `craftctl`, which lives there) and keeps the host's cargo/rustc,
#    so the plugin skips rustup (rust-channel is unset in charmcraft.yaml).
mkdir -m 0700 "$work/run"
mkdir -p "$cache_dir/charmcraft-cargo-target"
export PATH="$CHARMCRAFT_VENV/bin:$PATH"
export XDG_RUNTIME_DIR="$work/run"
export CARGO_TARGET_DIR="$cache_dir/charmcraft-cargo-target"
export CRAFT_VERBOSITY_LEVEL=${CRAFT_VERBOSITY_LEVEL:-verbose}
# shellcheck disable=SC2016 # expanded by the inner shell, from its environment
inner='
set -e
if [ "$FAKE_OS" = 1 ]; then
    mount --bind "$WORK/os-release" /usr/lib/os-release
    if [ -f /etc/os-release ] && [ ! -L /etc/os-release ]; then
        mount --bind "$WORK/os-release" /etc/os-release
    fi
fi
. /etc/os-release
echo "charmcraft-destructive-pack: build host now reports: $PRETTY_NAME" >&2
cd "$WORK/project"
exec charmcraft pack --destructive-mode
'
log "charmcraft $("$CHARMCRAFT_VENV/bin/charmcraft" version 2>/dev/null | awk '{print $2}') packing in $work/project"
set +e
if [ "$fake" -eq 1 ]; then
    WORK=$work FAKE_OS=1 unshare --mount --propagation private bash -c "$inner"
else
    WORK=$work FAKE_OS=0 bash -c "$inner"
fi
status=$?
set -e
if [ $status -ne 0 ]; then
    log "charmcraft pack failed with exit code $status (log: ~/.local/state/charmcraft/log/)"
    keep=1
    exit $status
fi

# 4. Hand the .charm over and show its layout.
shopt -s nullglob
charms=("$work/project"/*.charm)
if [ ${#charms[@]} -ne 1 ]; then
    log "expected one .charm, found ${#charms[@]}"
    exit 1
fi
mkdir -p "$out_dir"
dest=$(cd "$out_dir" && pwd)/$(basename "${charms[0]}")
cp "${charms[0]}" "$dest"
"$CHARMCRAFT_VENV/bin/python" - "$dest" <<'EOF'
import stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        print(f"  {stat.filemode(info.external_attr >> 16)} {info.file_size:>10} {info.filename}")
EOF
echo "$dest ($(stat -c %s "$dest") bytes, $(($(date +%s) - started))s)"
