#!/usr/bin/env bash
# Every GPU path of tcoupled, checked once on a machine with one NVIDIA GPU (H100/H200), in
# at most 8 minutes. The machine's image has PyTorch, CuPy, h5py, CMake and nvcc; nothing is
# fetched. mpi4py needs an MPI library: carry the `mpich` and `mpi4py` wheels in .whl/ and
# they are installed into /tmp/site. On the development machine, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl mpich==5.0.2 mpi4py==4.1.2
# Steps: build (the C library; kernels/wave.cu through nvcc for sm_90), tests/test_gpu.py and
# the fake-GPU tests, then `python -m tcoupled.bench.gpu_check`: copy bandwidth, the stencil
# at 8192^2 float32 as a fraction of it, the DLPack handoff; with 2-4 ranks on the one GPU:
# the device halo with real neighbours (float64) against NumPy, `couple` in time division
# over CUDA IPC and in space division over mpi with NCCL, each with the CPU run's
# data_digest, and the IPC handoff time. Writes device_check.log and device_report.json
# (card, driver, date, every check ok/failed with its figure) to $OUT (default: a new
# temporary folder); copy the report to run/device_report.json to keep it.
# Usage, from anywhere: bash run/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "${OUT}"
exec > >(tee "${OUT}/device_check.log") 2>&1
py=python3
export OMP_NUM_THREADS=1 UCX_NET_DEVICES=lo GLOO_SOCKET_IFNAME=lo PYTHONUNBUFFERED=1
export PYTHONPATH="${PWD}"
started=$(date +%s)

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"${py}" -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"

echo "== MPI"
if compgen -G ".whl/*.whl" > /dev/null; then
    "${py}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH}" PATH="/tmp/site/bin:${PATH}"
fi
if ! "${py}" -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"; then
    echo "device_check: mpi4py finds no MPI library; carry the mpich and mpi4py wheels in .whl/"
    exit 1
fi
command -v mpiexec || { echo "device_check: no mpiexec on PATH"; exit 1; }

echo "== build"
build=ok
rm -rf build/device
if cmake -S . -B build/device -DTCOUPLED_OUTPUT_DIR="${PWD}/build/device/lib" \
        -DTCOUPLED_CUDA_ARCH=90 > "${OUT}/build.log" 2>&1 \
        && cmake --build build/device -j 8 >> "${OUT}/build.log" 2>&1; then
    rm -f tcoupled/_lib/libtcoupled_wave*.so
    cp build/device/lib/libtcoupled_wave*.so tcoupled/_lib/
    grep -h "tcoupled:" "${OUT}/build.log" || true
else
    build=failed
    tail -n 30 "${OUT}/build.log"
fi

echo "== GPU tests"
tests=ok
timeout 150 "${py}" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_paths.py \
    | tail -n 25 || tests=failed

echo "== GPU checks"
# each MPI job's timeout is cut to this deadline, so the report is written within 8 minutes
export TCOUPLED_DEVICE_DEADLINE=$(( started + 450 ))
timeout 330 "${py}" -m tcoupled.bench.gpu_check "${OUT}" --build "${build}" --tests "${tests}"
status=$?
echo "device_check: $(( $(date +%s) - started )) s; exit ${status}; report in ${OUT}/device_report.json"
exit "${status}"
