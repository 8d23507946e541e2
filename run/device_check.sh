#!/usr/bin/env bash
# GPU check for a machine with one NVIDIA GPU whose image already has PyTorch, CuPy,
# mpi4py, CMake and nvcc (no network): installs nothing from the network, builds the
# kernels for the GPU, runs the GPU tests and times the GPU paths. Logs and
# device_report.json go to $OUT (default: a new temporary folder).
# Usage: bash run/device_check.sh        (run from the repository root)
set -uo pipefail
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "${OUT}"
exec > >(tee "${OUT}/device_check.log") 2>&1
py=python3
export OMP_NUM_THREADS=1 UCX_NET_DEVICES=lo GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"${py}" -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"

echo "== MPI"
if [ -d .whl ]; then  # an mpich wheel carried from the development machine
    "${py}" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:${PATH}"
fi
"${py}" -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])" \
    || echo "mpi4py finds no MPI library: carry the mpich wheel in .whl/"
command -v mpiexec || echo "no mpiexec: MPI tests will fail"

echo "== build"
export TCOUPLED_CMAKE_ARGS="-DTCOUPLED_CUDA_ARCH=90"
"${py}" -m pip install -q --no-deps --no-build-isolation -e . || exit 1

echo "== GPU tests"
timeout 240 "${py}" -m pytest -q tests/test_gpu.py \
    tests/test_channels.py::test_cuda_view_is_zero_copy_on_gpu \
    -p no:cacheprovider | tail -n 20

echo "== timings"
timeout 120 "${py}" -m tcoupled.bench.gpu_check "${OUT}"
echo "device_check: logs and device_report.json in ${OUT}"
