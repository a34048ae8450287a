#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks for this project's tests:
#   - Debian packages: Dovecot (core, imapd, lmtpd), kcat, Lua 5.4 and
#     luacheck, and Java 17 plus Maven for the Kafka broker of scripts/kafka.sh;
#   - the Kafka broker jars (scripts/kafka.sh install);
#   - the Go modules of go.mod (go mod download).
#
# Safe to run again: each step checks first and does nothing when it is done
# already, so a second run takes about a second. Quiet unless it installs
# something or fails; a failing step prints its log. Runs as root (or through
# sudo) with no standard input, as in CI.
#
# Go itself is not installed here: go.mod needs a newer Go than Debian 12
# packages, so it must already be on PATH.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

# Debian packages the tests use.
APT_PACKAGES=(
    dovecot-core dovecot-imapd dovecot-lmtpd # a private Dovecot per test run
    kcat                                     # Kafka client for tests and broker checks
    lua5.4 lua-check                         # Lua scripts and their linter
    openjdk-17-jre-headless maven            # the Kafka broker and resolving its jars
    ca-certificates                          # HTTPS to the package registries
    gcc libc6-dev                            # cgo, for the librdkafka based Kafka client
)

say() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

t0=$SECONDS

# Root, or sudo when it is at hand.
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "run as root (apt-get needs it) or install sudo"
    SUDO=(sudo -n)
fi

# Run a command quietly: its output goes to a log that is shown only if it fails.
quiet() { # description command...
    local what=$1 log
    shift
    log=$(mktemp /tmp/install-deps.XXXXXX.log)
    if ! "$@" </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "$what failed"
    fi
    rm -f "$log"
}

# ---------------------------------------------------------------- apt

installed() { # package
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

dovecot_installed_now=0
if ((${#missing[@]} > 0)); then
    say "installing Debian packages: ${missing[*]}"
    quiet "apt-get update" "${SUDO[@]}" apt-get update -q
    quiet "apt-get install" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
    for pkg in "${missing[@]}"; do
        [[ "$pkg" == dovecot-* ]] && dovecot_installed_now=1
    done
fi

# The tests run their own private Dovecot; the system service that the
# package may have started must not be left running (it would hold the
# standard ports and the default base_dir). Only the system instance is
# touched: the init script stops the pid in /run/dovecot/master.pid.
if ((dovecot_installed_now)) || [[ -s /run/dovecot/master.pid ]]; then
    if command -v service >/dev/null; then
        "${SUDO[@]}" service dovecot stop </dev/null >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/dovecot ]]; then
        "${SUDO[@]}" /etc/init.d/dovecot stop </dev/null >/dev/null 2>&1 || true
    fi
fi

# ---------------------------------------------------------------- Kafka jars

# Quiet and fast when the jars are already in the cache.
"$ROOT/scripts/kafka.sh" install </dev/null

# ---------------------------------------------------------------- Go modules

if [[ -f "$ROOT/go.mod" ]]; then
    command -v go >/dev/null || die "go not found on PATH (go.mod needs $(sed -n 's/^go //p' "$ROOT/go.mod") or newer)"
    go_download() (cd "$ROOT" && go mod download)
    quiet "go mod download" go_download
fi

say "done in $((SECONDS - t0))s"
