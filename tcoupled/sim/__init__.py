"""Simulation: the domain-decomposed 2D wave solver.

Owns the solver's configuration (:mod:`.config`), the index arithmetic of the
decomposition (:mod:`.decomposition`, no MPI), the halo exchange plan (:mod:`.halo`),
initial conditions (:mod:`.initial`), the leapfrog solver (:mod:`.solver`) and the kernel
backends (:mod:`.backends`: numpy, c, cupy). Knows nothing of torch, chemistry or the
farm; may import :mod:`tcoupled.runtime` and :mod:`tcoupled.placement` only.
"""
