#!/usr/bin/env bash
# Install what `make bench` needs on Debian 12 (idempotent, run as root):
# nginx + libnginx-mod-nchan (the peer), libapache2-mod-php8.2 (scenario 6),
# gnuplot-nox (plot), redis-server (scenario 7: run by bench.py itself, never
# as the Debian service, which may run: it is left alone, bench.py's Redis
# has its own port), build-essential/apache2/apache2-dev/libjansson-dev/
# libhiredis-dev (the module itself). Debian's nginx and apache2 services
# must not be left running: a policy-rc.d denies service starts during the
# install, and if a service runs anyway it is stopped through its own
# pidfile.
set -euo pipefail

log() { echo "bench/deps.sh: $*" >&2; }

PKGS=(build-essential apache2 apache2-dev libjansson-dev libhiredis-dev curl
      nginx libnginx-mod-nchan libapache2-mod-php8.2 gnuplot-nox redis-server)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done

if [ "${#MISSING[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${MISSING[*]}; run as root"; exit 1
    fi
    log "installing: ${MISSING[*]}"
    POLICY=/usr/sbin/policy-rc.d
    OUR_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, written by mod_sse bench/deps.sh\nexit 101\n' > "$POLICY"
        chmod 755 "$POLICY"
        OUR_POLICY=1
    fi
    cleanup_policy() { if [ "$OUR_POLICY" = 1 ]; then rm -f "$POLICY"; fi; }
    trap cleanup_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${MISSING[@]}"
    cleanup_policy
    trap - EXIT
fi

# A Debian service started anyway: stop it through its init script, found by
# its pidfile only (never by process name).
for svc in nginx apache2; do
    for pidfile in /run/$svc.pid /run/$svc/$svc.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "stopping the Debian $svc service (pidfile $pidfile)"
            service "$svc" stop || true
            break
        fi
    done
done
log ok
