#!/usr/bin/env bash
# Start a local httpd with mod_sse and the demo page, in the foreground.
#
#   scripts/run.sh            (normally via `make run`, which builds first)
#   PORT=8081 scripts/run.sh
#
# Generates run/httpd.conf from conf/httpd-demo.conf.in (a standalone
# configuration: nothing under /etc/apache2 is read) and execs
# `apache2 -DFOREGROUND`, so Ctrl-C stops the server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PORT:-8080}
APACHE2=${APACHE2:-/usr/sbin/apache2}
TEMPLATE="$ROOT/conf/httpd-demo.conf.in"
RUNDIR="$ROOT/run"
CONF="$RUNDIR/httpd.conf"

die() { echo "run.sh: $*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65536 )) \
    || die "PORT must be a TCP port number, got '$PORT'"
[[ -x "$APACHE2" ]] || die "$APACHE2 not found (apt-get install apache2)"
[[ -f "$ROOT/.libs/mod_sse.so" ]] \
    || die "$ROOT/.libs/mod_sse.so not built; run 'make' (or 'make run')"
[[ -f "$TEMPLATE" ]] || die "$TEMPLATE missing"
# sed below uses | as its delimiter
[[ "$ROOT" != *"|"* && "$ROOT" != *"&"* ]] \
    || die "repository path must not contain '|' or '&': $ROOT"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$PORT; try PORT=$((PORT + 1)) make run"
fi

# As root, httpd's children run as www-data (they must be able to read
# conf/demo); otherwise they keep the caller's identity.
if [[ $(id -u) -eq 0 ]]; then
    user_prefix=""
    if command -v runuser >/dev/null \
       && ! runuser -u www-data -- test -r "$ROOT/conf/demo/index.html" 2>/dev/null; then
        echo "run.sh: warning: www-data cannot read $ROOT/conf/demo;" \
             "the demo page will answer 403" >&2
    fi
else
    user_prefix="# not started as root: "
fi

mkdir -p "$RUNDIR"
# Placeholders are replaced outside comment lines only.
sed -e "/^[[:space:]]*#/!{ s|@ROOT@|$ROOT|g; s|@PORT@|$PORT|g; s|@USER@|$user_prefix|g; }" \
    "$TEMPLATE" > "$CONF.tmp"
mv "$CONF.tmp" "$CONF"

if ! out=$("$APACHE2" -t -f "$CONF" 2>&1); then
    echo "$out" >&2
    die "configuration test failed for $CONF"
fi

url="http://127.0.0.1:$PORT"
cat <<MSG
mod_sse demo: $url/   (config: run/httpd.conf, access log: run/access.log)

  Subscribe:  curl -N '$url/events?channel=demo'
  Publish:    curl -d channel=demo -d event=greeting -d data=hello $url/publish
              curl -H 'Content-Type: application/json' \\
                   -d '{"channel":"demo","data":{"n":1}}' $url/publish
  Channel:    curl '$url/publish?channel=demo'
  Workers:    $url/server-status

Press Ctrl-C to stop.
MSG

exec "$APACHE2" -f "$CONF" -DFOREGROUND
