#!/usr/bin/env bash
# Guardian's reverse proxy (nginx from Debian's packages), run from a folder of its own.
#
#   ops/proxy.sh render RUN   write RUN/nginx.conf from ops/nginx.conf.template
#   ops/proxy.sh start RUN    render, then run nginx in the foreground (a supervisor's, or `&`)
#   ops/proxy.sh stop RUN     graceful stop of the nginx started in RUN
#
# From the environment: GUARDIAN_PROXY_LISTEN (host:port, default 0.0.0.0:8080),
# GUARDIAN_PHONES_UPSTREAM and GUARDIAN_ALERTS_UPSTREAM (host:port of the phones and the alerts
# process), and the servers' GUARDIAN_MAX_FRAME_BYTES, GUARDIAN_MAX_UPLOAD_BYTES and
# GUARDIAN_KEEPALIVE_INTERVAL_S (their defaults otherwise). Give the servers the proxy's address
# in GUARDIAN_FORWARDED_ALLOW_IPS (the default, 127.0.0.1, is a proxy on the same host).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command=${1:?usage: ops/proxy.sh render|start|stop RUN}
run=${2:?usage: ops/proxy.sh render|start|stop RUN}
mkdir -p "$run"
run=$(cd "$run" && pwd)
nginx=${NGINX:-/usr/sbin/nginx}

render() {
  local listen=${GUARDIAN_PROXY_LISTEN:-0.0.0.0:8080}
  local phones=${GUARDIAN_PHONES_UPSTREAM:?GUARDIAN_PHONES_UPSTREAM (host:port) is needed}
  local alerts=${GUARDIAN_ALERTS_UPSTREAM:?GUARDIAN_ALERTS_UPSTREAM (host:port) is needed}
  local body=${GUARDIAN_MAX_FRAME_BYTES:-65536} upload=${GUARDIAN_MAX_UPLOAD_BYTES:-6291456}
  local interval=${GUARDIAN_KEEPALIVE_INTERVAL_S:-20}
  # Three keepalive intervals, and never under a minute.
  local timeout
  timeout=$(awk -v i="$interval" 'BEGIN { t = int(3 * i + 0.999); print (t < 60 ? 60 : t) }')
  # As root, nginx's workers drop to nobody (Debian has no group "nobody"); otherwise they run
  # as whoever started it, and the directive would only draw a warning.
  local user=""
  if [[ $(id -u) -eq 0 ]]; then
    user="user nobody nogroup;"
    chmod 755 "$run"  # the workers write request bodies under it
  fi
  sed -e "s|@USER@|$user|" -e "s|@RUN@|$run|g" -e "s|@LISTEN@|$listen|" -e "s|@PHONES@|$phones|" \
      -e "s|@ALERTS@|$alerts|" -e "s|@MAX_BODY_BYTES@|$body|g" -e "s|@MAX_UPLOAD_BYTES@|$upload|" \
      -e "s|@SOCKET_TIMEOUT_S@|$timeout|g" "$here/nginx.conf.template" > "$run/nginx.conf"
  "$nginx" -t -q -p "$run" -c "$run/nginx.conf" -g 'daemon off;'
}

case $command in
  render) render ;;
  start) render; exec "$nginx" -p "$run" -c "$run/nginx.conf" -g 'daemon off;' ;;
  stop) exec "$nginx" -p "$run" -c "$run/nginx.conf" -g 'daemon off;' -s quit ;;
  *) echo "usage: ops/proxy.sh render|start|stop RUN" >&2; exit 2 ;;
esac
