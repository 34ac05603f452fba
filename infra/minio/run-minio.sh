#!/usr/bin/env bash
# Start a real MinIO server for mlplatform's artifact store and create the bucket.
#
#   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... infra/minio/run-minio.sh [--minio-port 9000]
#
# Needs a `minio` binary on PATH (see infra/minio/README.md). The keys become
# MinIO's root user and password; they are read from the environment or .env
# and never written to a file. Stop it with `mlplatform down`.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cli="$here/.venv/bin/mlplatform"
[ -x "$cli" ] || cli="$(command -v mlplatform || true)"
if [ -z "$cli" ]; then
  echo "mlplatform is not installed: run 'make install' (or 'make demo') in $here first" >&2
  exit 1
fi
exec "$cli" minio up "$@"
