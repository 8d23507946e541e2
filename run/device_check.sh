#!/usr/bin/env bash
# Every GPU path of tcoupled, checked once on a machine with one NVIDIA GPU (H100/H200), in
# at most 7 minutes. The machine's image has PyTorch, CuPy, h5py, CMake and nvcc; nothing is
# fetched. mpi4py needs an MPI library: carry the `mpich` and `mpi4py` wheels in .whl/ and
# they are installed under /tmp/mpi (a prefix, not --target, which drops MPICH's lib/).
# On the development machine, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl mpich==5.0.2 mpi4py==4.1.2
# Steps: build (the C library; kernels/wave.cu through nvcc for sm_90), tests/test_gpu.py and
# the fake-GPU tests, then `python -m tcoupled.bench.gpu_check`: copy bandwidth, the stencil
# at 8192^2 float32 as a fraction of it (the program's tile and 24 others), the DLPack
# handoff; with 2-4 ranks on the one GPU:
# the device halo with real neighbours (float64) against NumPy, `couple` in time division
# over CUDA IPC and in space division over mpi (one rank per member, and one member of two
# ranks sharing the GPU: DDP over gloo, as NCCL needs a GPU per rank; with two GPUs or more,
# DDP over NCCL too), each with the CPU run's data_digest, and the IPC handoff time at two
# sizes. Writes device_check.log,
# pytest.log, build.log, device_report.json (card, driver, date, every check ok/failed with
# its figure) and runs.tgz (every launch's log) to $OUT (default: a new temporary folder);
# copy the report to run/device_report.json to keep it.
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
"${py}" -c "from mpi4py import MPI; print('image mpi4py:', MPI.Get_library_version()[:60])" \
    2>&1 | tail -n 1
if compgen -G ".whl/*.whl" > /dev/null; then
    "${py}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --prefix /tmp/mpi .whl/*.whl || exit 1
    site=$("${py}" -c "import sys; print('/tmp/mpi/lib/python%d.%d/site-packages' % sys.version_info[:2])")
    export PYTHONPATH="${site}:${PYTHONPATH}" PATH="/tmp/mpi/bin:${PATH}"
    export LD_LIBRARY_PATH="/tmp/mpi/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
    export TCOUPLED_MPIEXEC=/tmp/mpi/bin/mpiexec
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
timeout 120 "${py}" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_paths.py \
    > "${OUT}/pytest.log" 2>&1 || tests=failed
tail -n 25 "${OUT}/pytest.log"

echo "== GPU checks"
# each MPI job's timeout is cut to this deadline, so the report is written within 7 minutes
export TCOUPLED_DEVICE_DEADLINE=$(( started + 380 ))
timeout 300 "${py}" -m tcoupled.bench.gpu_check "${OUT}" --build "${build}" --tests "${tests}"
status=$?
# at most 8 files come back from a device call: every launch's logs in one archive
tar czf "${OUT}/runs.tgz" --exclude='*.h5' --exclude='*.npy' -C "${OUT}" runs 2>/dev/null \
    && rm -rf "${OUT}/runs"
echo "device_check: $(( $(date +%s) - started )) s; exit ${status}; report in ${OUT}/device_report.json"
exit "${status}"
