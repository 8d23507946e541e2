#!/usr/bin/env bash
# The main job on its built-in defaults: a small coupled run with all three roles in
# one launch -- 1 sim rank (wave solver), 1 train rank (a CNN trained on its fields)
# and 2 farm ranks (an active-learning xTB screen of QM9, 8 molecules) -- then the
# report (plots and report.md). A few minutes on 2 cores; creates or reuses .venv first.
# Extra arguments go to `tcoupled couple`, e.g. `bash run/local.sh --division space`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${repo}/run/bootstrap.sh"
# shellcheck source=run/env.sh
source "${repo}/run/env.sh"
cd "${repo}"
out="runs/quickstart"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do   # the report lands where --out says, if given
    case "${args[i]}" in
        --out) if ((i + 1 < ${#args[@]})); then out="${args[i + 1]}"; fi ;;
        --out=*) out="${args[i]#--out=}" ;;
    esac
done
"${repo}/.venv/bin/mpiexec" -n 4 "${repo}/.venv/bin/python" -m tcoupled couple \
    --sim-ranks 1 --train-ranks 1 --farm-ranks 2 --grid 65 65 --init gaussian \
    --cycles 8 --sim-steps 8 --train-iters 20 --farm-budget 8 --checkpoint-every 4 \
    --out "${out}" "$@"
case "${out}" in /*) where="${out}" ;; *) where="${repo}/${out}" ;; esac
echo "report: ${where}/report.md (plots beside it; summary.json, results.h5, run.log)"
