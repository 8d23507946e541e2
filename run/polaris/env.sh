#!/usr/bin/env bash
# Environment for tcoupled on ALCF Polaris; sourced by the PBS scripts.
# The conda module provides torch (CUDA), CuPy and mpi4py built against cray-mpich.
# Never install the `mpich` wheel here: mpi4py would load it instead of cray-mpich
# (no Slingshot, no GPU-aware transfers). See the README, "Installing on Polaris".
module use /soft/modulefiles
module load conda
conda activate base
# A venv layered on the conda environment, made once by the install steps in the README.
venv="${TCOUPLED_VENV:-${HOME}/venvs/tcoupled}"
# shellcheck source=/dev/null
source "${venv}/bin/activate"

export MPICH_GPU_SUPPORT_ENABLED=1   # CUDA-aware cray-mpich: halos and fields move GPU to GPU
export OMP_NUM_THREADS=1             # one thread per rank (xTB workers oversubscribe otherwise)
export OMP_PLACES=threads
export OMP_PROC_BIND=spread
# torch's rendezvous: the first node of the job, on its high-speed interface
MASTER_ADDR="$(head -n 1 "${PBS_NODEFILE}")"
export MASTER_ADDR
