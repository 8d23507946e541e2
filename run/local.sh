#!/usr/bin/env bash
# The main job on its built-in defaults: a decomposed wave run on 4 ranks that
# prints its accuracy and speed (creates or reuses .venv first).
# Extra arguments go to `tcoupled wave`, e.g. `bash run/local.sh --grid 1025 1025`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${repo}/run/bootstrap.sh"
# shellcheck source=run/env.sh
source "${repo}/run/env.sh"
cd "${repo}"
ranks="${TCOUPLED_RANKS:-4}"
exec "${repo}/.venv/bin/mpiexec" -n "${ranks}" "${repo}/.venv/bin/python" -m tcoupled wave \
    --grid 513 513 --steps 1024 --init mode --mode 2 3 --out runs/quickstart "$@"
