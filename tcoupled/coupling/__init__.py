"""Coupling: how fields travel from the solver to the trainers, and what that costs.

Owns the channels (:mod:`.channels`: inproc, shm, mpi, file), the time/space division
schedules (:mod:`.schedule`), the coupled sim/train rank (:mod:`.rank`), checkpoint and
resume (:mod:`.checkpoint`, :mod:`.resume`) and the cost model (:mod:`.costmodel`).
May import :mod:`tcoupled.sim`, :mod:`tcoupled.training`, :mod:`tcoupled.placement` and
:mod:`tcoupled.runtime`; never the farm, screening or chemistry.
"""
