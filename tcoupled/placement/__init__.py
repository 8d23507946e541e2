"""Placement: which rank runs which role on which node and GPU.

:mod:`.layout` holds the pure plan (``plan_ranks``, ``RoleCounts``; no MPI, no GPU, tested
serially) and the one function that splits ``COMM_WORLD`` into role communicators.
May import :mod:`tcoupled.runtime` only.
"""
