#!/usr/bin/env bash
# Installs what Guardian needs and is missing: Debian packages (as root) and the .venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
# chromium runs the browser tests; npm installs the console's front-end packages (a Node.js
# that brings its own npm, as NodeSource's does, is used as it is).
# nginx is the production layout's proxy (ops/proxy.sh runs it from a folder of its own): the
# system's nginx service is never started nor enabled.
DEBIAN_PACKAGES=(postgresql-15 postgresql-15-postgis-3 postgresql-15-partman redis-server python3.11-venv chromium
                 nginx)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: as root, run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts a service when its package is installed: not nginx's (it would take port 80).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n[ "$1" = nginx ] && exit 101\nexit 0\n' > $policy
    chmod 755 $policy
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Installed by this run: not enabled either (an nginx the host had before is left alone).
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

if ! command -v "$PYTHON" >/dev/null; then
  PYTHON=/usr/bin/python3.11
fi
# The console's Leaflet comes from the npm registry at set-up, never from the internet at run time.
web=server/web
web_stamp=$web/node_modules/.installed-$(cat $web/package.json $web/package-lock.json | sha256sum | cut -c1-16)
if [[ ! -f $web_stamp ]]; then
  (cd $web && npm ci --no-audit --no-fund --loglevel=error)
  touch "$web_stamp"
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
