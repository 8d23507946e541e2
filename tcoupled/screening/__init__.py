"""Screening: active-learning search for molecules on the task farm.

Owns the search spaces (:mod:`.space`: QM9 or a SMILES file), fingerprints and learners
(:mod:`.learner`: the Jaccard kNN; :mod:`.gp`: the Tanimoto GP), the policies and their
ranked queues (:mod:`.policies`), the asynchronous screening loop and its journal
(:mod:`.loop`), its replay against a table of known results (:mod:`.replay`), the
screen's results files (:mod:`.outputs`) and the farm role of ``couple`` (:mod:`.role`).
May import :mod:`tcoupled.farm`, :mod:`tcoupled.chemistry` and :mod:`tcoupled.runtime`.
"""
