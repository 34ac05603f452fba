#!/usr/bin/env bash
# The feature-store tests run against a throw-away PostgreSQL server the suite starts
# itself (Debian's postgresql: initdb + pg_ctl). Install it if missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "postgresql is missing and this is not root: run 'sudo apt-get install -y postgresql'" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
ls /usr/lib/postgresql/*/bin/pg_ctl
