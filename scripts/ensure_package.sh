#!/usr/bin/env bash
# ensure_package.sh PACKAGE CHECK...: install the Debian PACKAGE unless the command CHECK
# succeeds. `make test` uses it for what the suite drives but pip cannot install:
# chromium (the web page tests), postgresql (the feature store on a real server),
# prometheus (`mlplatform up --monitoring`), kubernetes-client (`kubectl kustomize`).
set -euo pipefail
package="$1"
shift
if "$@" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "$package is missing and this is not root: run 'sudo apt-get install -y $package'" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
"$@"
