"""Farm: the MPI task farm (manager/worker) and its per-task process isolation.

Runs any importable ``module:function`` task; knows nothing of chemistry or learning.
May import :mod:`tcoupled.runtime` only.
"""
