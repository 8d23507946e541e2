#!/bin/bash
# Start or stop NVIDIA MPS on this node, as ALCF's enable_mps_polaris.sh and
# disable_mps_polaris.sh do ("Running multiple MPI applications on a node" in the ALCF
# docs). Run once per node: mpiexec -n NODES --ppn 1 mps.sh start|stop.
# Time division puts a sim rank and its train ranks on one GPU; MPS lets their kernels
# share the GPU instead of time-slicing whole contexts.
set -euo pipefail
export CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps
export CUDA_MPS_LOG_DIRECTORY=/tmp/nvidia-log
case "${1:-}" in
    start) CUDA_VISIBLE_DEVICES=0,1,2,3 nvidia-cuda-mps-control -d
           sleep 1
           echo "MPS control daemon started on $(hostname)" ;;
    stop)  echo quit | nvidia-cuda-mps-control ;;
    *)     echo "usage: mps.sh start|stop" >&2; exit 2 ;;
esac
