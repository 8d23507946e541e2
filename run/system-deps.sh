#!/usr/bin/env bash
# Optional system programs used by some tests: shellcheck (lints run/), redis-server (the
# staging comparison of `bench channels`) and the `xtb`
# program (Debian package `xtb`, cross-checks the IPEA ionization energies). Installs with apt-get when run
# as root on Debian/Ubuntu; otherwise prints what to install. Tests that need a
# missing program are skipped.
set -uo pipefail
packages=(xtb shellcheck redis-server)
missing=()
for p in "${packages[@]}"; do
    command -v "${p}" >/dev/null 2>&1 || missing+=("${p}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null \
        && exit 0
    echo "system-deps: apt-get could not install ${missing[*]}; dependent tests will skip" >&2
else
    echo "system-deps: please install ${missing[*]} (e.g. apt-get install ${missing[*]})" >&2
fi
exit 0
