#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv in the repository root and
# install tcoupled into it with pinned CPU wheels. Safe to run again: it only
# reinstalls when the pins, setup.py or the kernels changed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${repo}/.venv"
python="${PYTHON:-python3}"

if [ ! -x "${venv}/bin/python" ]; then
    echo "bootstrap: creating ${venv}"
    "${python}" -m venv "${venv}"
fi

stamp="${venv}/.tcoupled-installed"
want="$(cat "${repo}/run/requirements-cpu.txt" "${repo}/setup.py" "${repo}/CMakeLists.txt" \
        "${repo}"/kernels/* | sha256sum | cut -d' ' -f1)"
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ] \
   && "${venv}/bin/python" -c "import tcoupled" 2>/dev/null; then
    exit 0
fi

echo "bootstrap: installing pinned dependencies (CPU torch, mpich, mpi4py, xTB, RDKit, ...)"
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet -r "${repo}/run/requirements-cpu.txt"
echo "bootstrap: installing tcoupled (builds the C kernel with CMake)"
"${venv}/bin/python" -m pip install --quiet --no-build-isolation -e "${repo}"
echo "${want}" > "${stamp}"
echo "bootstrap: ready (${venv})"
