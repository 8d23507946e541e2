#!/usr/bin/env bash
# Bind each rank to one GPU through CUDA_VISIBLE_DEVICES, by the rule `tcoupled plan` prints:
# ranks fill nodes in blocks of TCOUPLED_PPN; on each node the GPU ranks (sim and train,
# which come before all farm ranks) share the node's GPUs in contiguous blocks; farm ranks
# see no GPU. Usage: mpiexec ... gpu_affinity.sh python -m tcoupled couple ...
# Needs TCOUPLED_PPN, TCOUPLED_GPU_RANKS (sim + train ranks in the job) and, optionally,
# TCOUPLED_GPUS_PER_NODE (default 4, Polaris).
set -euo pipefail
rank="${PALS_RANKID:-${PMI_RANK:-0}}"
ppn="${TCOUPLED_PPN:?set TCOUPLED_PPN to the ranks per node}"
gpu_ranks="${TCOUPLED_GPU_RANKS:?set TCOUPLED_GPU_RANKS to sim + train ranks}"
gpus="${TCOUPLED_GPUS_PER_NODE:-4}"
node=$(( rank / ppn ))
local_rank=$(( rank % ppn ))
on_node=$(( gpu_ranks - node * ppn ))
(( on_node > ppn )) && on_node=${ppn}
if (( rank < gpu_ranks && on_node > 0 )); then
    CUDA_VISIBLE_DEVICES=$(( local_rank * gpus / on_node ))
else
    CUDA_VISIBLE_DEVICES=""
fi
export CUDA_VISIBLE_DEVICES
exec "$@"
