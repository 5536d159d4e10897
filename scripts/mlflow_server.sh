#!/usr/bin/env bash
# A local MLflow tracking server for fibroclass: runs, model registry and proxied artifacts in one folder,
# bound to the loopback interface (127.0.0.1) unless FIBROCLASS_MLFLOW_HOST says otherwise.
# See docs/mlflow_server.md.
#
# Usage: scripts/mlflow_server.sh [STORE_DIR] [extra `mlflow server` options...]
#   STORE_DIR                 holds mlflow.db (runs + registry) and artifacts/ (default: ./mlflow-server)
#   FIBROCLASS_MLFLOW_HOST    interface to bind (default 127.0.0.1: this machine only)
#   FIBROCLASS_MLFLOW_PORT    port (default 5000)
#   FIBROCLASS_MLFLOW_WORKERS server worker processes (default 2)
#   MLFLOW                    the mlflow executable (default: mlflow on PATH, e.g. .venv/bin/mlflow)
# Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and run `fibroclass train` / `fibroclass score`.
set -euo pipefail

store="${1:-${FIBROCLASS_MLFLOW_STORE:-mlflow-server}}"
[[ $# -gt 0 ]] && shift
host="${FIBROCLASS_MLFLOW_HOST:-127.0.0.1}"
port="${FIBROCLASS_MLFLOW_PORT:-5000}"
workers="${FIBROCLASS_MLFLOW_WORKERS:-2}"

mkdir -p "$store/artifacts"
store="$(cd "$store" && pwd)"
if [[ "$host" != "127.0.0.1" && "$host" != "localhost" && "$host" != "::1" ]]; then
  echo "warning: binding MLflow to $host exposes it beyond this machine; it has no authentication" >&2
fi
echo "MLflow server on http://$host:$port (store: $store)" >&2
exec "${MLFLOW:-mlflow}" server \
  --host "$host" \
  --port "$port" \
  --workers "$workers" \
  --backend-store-uri "sqlite:///$store/mlflow.db" \
  --artifacts-destination "$store/artifacts" \
  "$@"
