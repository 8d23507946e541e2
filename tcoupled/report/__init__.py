"""Reports: figures shared by all reports (:mod:`.figures`) and the report of a run.

Reads finished run directories only; may import any library layer, never :mod:`tcoupled.app`.
"""
