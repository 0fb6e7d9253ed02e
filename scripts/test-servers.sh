#!/usr/bin/env bash
# Create the virtual environments of the servers that connector integration tests start:
# .venvs/mlflow and .venvs/phoenix, with pinned versions (their dependencies conflict, so each
# gets its own). Idempotent: a venv whose pinned packages are all installed is left alone.
# openai in .venvs/mlflow: the must-show seeder calls the fake OpenAI server under
# mlflow.openai.autolog() (MLflow 3.17's autologging supports openai 2.2.0-2.47.0).
# Usage: scripts/test-servers.sh [mlflow] [phoenix]   (default: both)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${TRIMLOOP_VENVS:-$ROOT/.venvs}"
PYTHON="${PYTHON:-python3}"

MLFLOW_PINS="mlflow==3.17.2 openai==2.47.0"
PHOENIX_PINS="arize-phoenix==20.26.1"

installed() {  # installed VENV PIN: is exactly this version of the distribution there?
  local want="${2#*==}" dist="${2%%==*}"
  [[ "$("$1/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null)" == "$want" ]]
}

ensure() {  # ensure NAME BINARY MODULE "PIN [PIN...]"
  local name="$1" binary="$2" module="$3" venv="$VENVS/$1" pin missing=()
  read -r -a pins <<< "$4"
  for pin in "${pins[@]}"; do
    [[ -x "$venv/bin/$binary" ]] && installed "$venv" "$pin" || missing+=("$pin")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "test-servers: $name (${pins[*]}) already in $venv"
    return
  fi
  echo "test-servers: installing ${missing[*]} into $venv"
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "${pins[@]}"
  "$venv/bin/$binary" --version >/dev/null 2>&1 || "$venv/bin/python" -c "import $module"
  echo "test-servers: $name ready"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(mlflow phoenix)
for target in "${targets[@]}"; do
  case "$target" in
    mlflow) ensure mlflow mlflow mlflow "$MLFLOW_PINS" ;;
    phoenix) ensure phoenix phoenix phoenix "$PHOENIX_PINS" ;;
    *) echo "test-servers: unknown server '$target' (use mlflow or phoenix)" >&2; exit 2 ;;
  esac
done
