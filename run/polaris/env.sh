# shellcheck shell=bash
# Environment for tcoupled on ALCF Polaris; sourced by the PBS scripts (README, "Running on
# Polaris"). The conda module provides torch (CUDA), CuPy and mpi4py built against
# cray-mpich; never install the `mpich` wheel here (mpi4py would load it instead of
# cray-mpich: no Slingshot, no GPU-aware transfers).

# conda's activation scripts read unset variables, so nounset (-u) is off while the
# environment is set up and restored after (ALCF docs, "Python"; the PBS scripts keep
# `set -euo pipefail` everywhere else).
_tcoupled_flags="$-"
set +u
module use /soft/modulefiles
# the conda module the venv was built with (README: change it when you rebuild the venv)
module load "${TCOUPLED_CONDA_MODULE:-conda/2024-04-29}"
conda activate base
# a venv layered on the conda environment, made once by the install steps in the README
# shellcheck source=/dev/null
source "${TCOUPLED_VENV:-${HOME}/venvs/tcoupled}/bin/activate"
case "${_tcoupled_flags}" in *u*) set -u ;; esac
unset _tcoupled_flags

export MPICH_GPU_SUPPORT_ENABLED=1   # CUDA-aware cray-mpich: halos and fields move GPU to GPU
export OMP_NUM_THREADS=1             # one thread per rank (xTB workers oversubscribe otherwise)
export OMP_PLACES=threads
export OMP_PROC_BIND=spread
export TMPDIR=/tmp                   # ALCF "Known issues": a long TMPDIR gives "AF_UNIX path too long"

# NCCL across nodes (ALCF docs, "NCCL"): the aws-ofi-nccl plugin over Slingshot.
# Fallback if a job hangs in NCCL set-up or its first all-reduce: submit with
# `qsub -v TCOUPLED_NCCL=fallback ...`, which leaves the plugin and its libfabric settings
# out (NCCL then uses its own socket transport: slower across nodes, same results).
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_CROSS_NIC=1
if [ "${TCOUPLED_NCCL:-plugin}" != "fallback" ]; then
    export NCCL_COLLNET_ENABLE=1
    export NCCL_NET="AWS Libfabric"
    export LD_LIBRARY_PATH="${TCOUPLED_AWS_OFI_NCCL:-/soft/libraries/aws-ofi-nccl/v1.9.1-aws}/lib:/soft/libraries/hwloc/lib:${LD_LIBRARY_PATH:-}"
    export FI_CXI_DISABLE_HOST_REGISTER=1
    export FI_MR_CACHE_MONITOR=userfaultfd
    export FI_CXI_DEFAULT_CQ_SIZE=131072
fi
