#!/usr/bin/env bash
# Create the virtual environments of the servers that connector integration tests start:
# .venvs/mlflow and .venvs/phoenix, with pinned versions (their dependencies conflict, so each
# gets its own). Idempotent: a venv whose pinned package is already installed is left alone.
# Usage: scripts/test-servers.sh [mlflow] [phoenix]   (default: both)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${TRIMLOOP_VENVS:-$ROOT/.venvs}"
PYTHON="${PYTHON:-python3}"

MLFLOW_PIN="mlflow==3.17.2"
PHOENIX_PIN="arize-phoenix==20.26.1"

ensure() {  # ensure NAME PIN BINARY
  local name="$1" pin="$2" binary="$3" venv="$VENVS/$1"
  local want="${pin#*==}" dist="${pin%%==*}"
  if [[ -x "$venv/bin/$binary" ]] && \
     [[ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null)" == "$want" ]]; then
    echo "test-servers: $name $want already in $venv"
    return
  fi
  echo "test-servers: installing $pin into $venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "$pin"
  "$venv/bin/$binary" --version >/dev/null 2>&1 || "$venv/bin/python" -c "import $4" 
  echo "test-servers: $name ready"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(mlflow phoenix)
for target in "${targets[@]}"; do
  case "$target" in
    mlflow) ensure mlflow "$MLFLOW_PIN" mlflow mlflow ;;
    phoenix) ensure phoenix "$PHOENIX_PIN" phoenix phoenix ;;
    *) echo "test-servers: unknown server '$target' (use mlflow or phoenix)" >&2; exit 2 ;;
  esac
done
