#!/usr/bin/env bash
# Install what building, running and testing mod_sse needs on Debian 12.
# Idempotent: only what is missing is installed. Run as root.
#
#   scripts/deps.sh          everything `make test` needs
#   scripts/deps.sh --run    only what `make run` needs
#   scripts/deps.sh --deb    only what `make deb` needs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE="test"
for arg in "$@"; do
    case "$arg" in
        --run) MODE="run" ;;
        --deb) MODE="deb" ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { echo "deps.sh: $*" >&2; }

# Building the module. build-essential: apxs needs a C compiler and make
# (absent on minimal images).
# libhiredis-dev: the Redis client of the SSERedis store (sse_store_redis.c).
# libjwt-dev, libssl-dev: the Mercure hub's JWT verification (sse_jwt.c):
# libjwt checks signatures, libcrypto reads the public keys.
BUILD=(build-essential apache2-dev libjansson-dev libhiredis-dev libjwt-dev libssl-dev)
# Packaging (`make deb`, and tests/test_deb.py in `make test`): debhelper
# (compat 13). dh_apache2 comes with apache2-dev, which provides the
# virtual dh-apache2 of debian/control's Build-Depends; dpkg-buildpackage
# comes with build-essential (dpkg-dev). No fakeroot: the package declares
# Rules-Requires-Root: no.
PACKAGING=(debhelper)
# Packages for `make run`; `make test` adds packaging and the test clients.
case "$MODE" in
    deb) PKGS=("${BUILD[@]}" "${PACKAGING[@]}") ;;
    run) PKGS=("${BUILD[@]}" apache2 curl) ;;
    test) PKGS=("${BUILD[@]}" apache2 curl "${PACKAGING[@]}") ;;
esac
if [ "$MODE" = test ]; then
    # php-cli: the PHP publishing example is exercised with the real php binary.
    # php-cgi, php-fpm, libapache2-mod-php: the PHP publishers run under
    # mod_cgid, mod_proxy_fcgi (an FPM the tests start themselves) and mod_php
    # (tests/test_php.py). Their Debian services are not wanted: the
    # policy-rc.d below keeps them from starting, and the loop after the
    # install stops them if they run anyway.
    # chromium: the browser tests drive Debian's build through the npm
    # playwright-core package (never `npx playwright install`).
    # nghttp2-client: h2 tools for the HTTP/2 tests; openssl makes their
    # self-signed certificate.
    # clang, libclang-rt-14-dev: the unit tests' ThreadSanitizer builds.
    # prometheus: promtool checks the sse-status exposition, and a real
    # Prometheus scrapes it (tests/test_metrics.py starts its own; the
    # Debian service is kept from starting like the others, and stopped
    # below if it runs anyway).
    # redis-server: tests/test_redis.py starts its own (Debian's service is
    # kept from starting like the others, and stopped below if it runs).
    # php-symfony-mercure: the Mercure publisher of tests/test_mercure_php.py;
    # python3-jwt: a second reader of the tokens its tests mint.
    PKGS+=(python3-pytest nodejs npm php-cli chromium nghttp2-client openssl redis-server
           php-cgi php-fpm libapache2-mod-php clang libclang-rt-14-dev prometheus
           php-symfony-mercure python3-jwt)
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

MISSING=()
for p in "${PKGS[@]}"; do
    case "$p" in
        # Node.js may come from NodeSource (whose nodejs bundles npm and
        # conflicts with Debian's npm package): accept any working binary.
        nodejs) if installed nodejs || command -v node >/dev/null 2>&1; then continue; fi ;;
        npm)    if installed npm || command -v npm >/dev/null 2>&1; then continue; fi ;;
    esac
    installed "$p" || MISSING+=("$p")
done

if [ "${#MISSING[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${MISSING[*]}; run this script as root"
        exit 1
    fi
    log "installing: ${MISSING[*]}"
    # Keep Debian's apache2 service from starting on port 80 during the
    # install: a policy-rc.d that denies every start, unless one exists.
    POLICY=/usr/sbin/policy-rc.d
    OUR_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, written by mod_sse scripts/deps.sh\nexit 101\n' > "$POLICY"
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

# If the Debian service is running anyway (started by a policy that allowed
# it), stop it through its own init script: identified by its pidfile only.
# Not for `make deb`: building a package must leave a serving Apache alone.
if [ "$MODE" != deb ]; then
    for pidfile in /var/run/apache2/apache2.pid /run/apache2/apache2.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "stopping the Debian apache2 service (pidfile $pidfile)"
            service apache2 stop || true
            break
        fi
    done
    # The same for Debian's PHP-FPM service (the tests start their own FPM).
    for pidfile in /run/php/php*-fpm.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            svc=$(basename "$pidfile" .pid)
            log "stopping the Debian $svc service (pidfile $pidfile)"
            service "$svc" stop || true
        fi
    done
fi

# The same for Debian's Prometheus service (the tests start their own).
if [ "$MODE" = test ] && [ -s /run/prometheus/prometheus.pid ] \
   && kill -0 "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null; then
    log "stopping the Debian prometheus service"
    service prometheus stop || true
fi

# The same for Debian's Redis service (tests/test_redis.py starts its own).
if [ "$MODE" = test ] && [ -s /run/redis/redis-server.pid ] \
   && kill -0 "$(cat /run/redis/redis-server.pid)" 2>/dev/null; then
    log "stopping the Debian redis-server service"
    service redis-server stop || true
fi

if [ "$MODE" = test ]; then
    NODE_DIR="$ROOT/tests/node"
    if [ ! -d "$NODE_DIR/node_modules/eventsource" ] || [ ! -d "$NODE_DIR/node_modules/eventsource-parser" ] \
       || [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
        log "installing npm packages in tests/node"
        cd "$NODE_DIR"
        if [ -f package-lock.json ]; then
            npm ci --no-audit --no-fund
        else
            npm install --no-audit --no-fund
        fi
    fi
fi

log "ok ($MODE)"
