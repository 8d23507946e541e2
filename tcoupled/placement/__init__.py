"""Placement: which rank runs which role on which node, GPU and cores.

:mod:`.plan` holds the pure plan (``plan_ranks``, ``RoleCounts``; no MPI, no GPU, tested
serially), :mod:`.affinity` the GPU and core rule of a node (arithmetic, ALCF's Polaris
table), and :mod:`.layout` the one place that splits ``COMM_WORLD`` into role
communicators and binds each rank to its GPU. May import :mod:`tcoupled.runtime` only.
"""
