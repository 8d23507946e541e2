"""Runtime: the ground floor every role stands on.

Owns MPI start-up (:mod:`.mpienv`: ``mpi4py.rc`` before ``MPI``, the one place the
environment is read), the error types (:mod:`.errors`), fault injection for tests
(:mod:`.faults`), the SIGTERM stop vote (:mod:`.stopping`), the run store with atomic
writes (:mod:`.store`), phase timers and logging (:mod:`.telemetry`) and the one
place system programs are located (:mod:`.sysprog`, which ``TCOUPLED_NO_SYSTEM_PROGRAMS=1`` hides).
Imports nothing else from tcoupled.
"""
