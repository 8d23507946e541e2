#!/bin/bash
# Bind each rank to one GPU through CUDA_VISIBLE_DEVICES, by the rule `tcoupled plan` prints
# (tcoupled/placement/affinity.py): ranks fill nodes in blocks of TCOUPLED_PPN; the k-th of
# the n GPU ranks of a node (sim and train ranks, which come before every farm rank) uses
# GPU G-1 - k*G/n, the GPU nearest the cores `plan --cpu-bind` binds it to (ALCF, "Using
# GPUs on Polaris": GPU 0 is nearest cores 24-31, GPU 3 nearest cores 0-7; their
# set_affinity_gpu_polaris.sh gives local rank r GPU 3 - r mod 4). Farm ranks see no GPU.
# Usage: mpiexec ... gpu_affinity.sh python -m tcoupled couple ...
# Needs TCOUPLED_PPN, TCOUPLED_GPU_RANKS (sim + train ranks in the job) and, optionally,
# TCOUPLED_GPUS_PER_NODE (default 4, Polaris).
set -euo pipefail
rank="${PALS_RANKID:-${PMI_RANK:-0}}"
ppn="${TCOUPLED_PPN:?set TCOUPLED_PPN to the ranks per node}"
gpu_ranks="${TCOUPLED_GPU_RANKS:?set TCOUPLED_GPU_RANKS to sim + train ranks}"
gpus="${TCOUPLED_GPUS_PER_NODE:-4}"
node=$(( rank / ppn ))
local_rank="${PALS_LOCAL_RANKID:-$(( rank % ppn ))}"
on_node=$(( gpu_ranks - node * ppn ))
if (( on_node > ppn )); then on_node=${ppn}; fi
if (( rank < gpu_ranks && on_node > 0 )); then
    CUDA_VISIBLE_DEVICES=$(( gpus - 1 - local_rank * gpus / on_node ))
else
    CUDA_VISIBLE_DEVICES=""
fi
export CUDA_VISIBLE_DEVICES
exec "$@"
