#!/usr/bin/env bash
# Run the whole test suite (creates or reuses .venv first). Extra arguments go to pytest,
# e.g. `bash run/test.sh -k wave`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${repo}/run/bootstrap.sh"
# shellcheck source=run/env.sh
source "${repo}/run/env.sh"
cd "${repo}"
exec "${repo}/.venv/bin/python" -m pytest "$@"
