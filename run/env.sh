#!/usr/bin/env bash
# Environment for local (single-node) runs and tests; sourced by the run/ scripts.
# Keep MPI and torch rendezvous traffic on loopback, one OpenMP thread per rank.
# On a cluster, use the site's launcher environment instead (see run/polaris/).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export UCX_NET_DEVICES="${UCX_NET_DEVICES:-lo}"
export MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
export GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}"
export PYTHONUNBUFFERED=1
