"""Screening: active-learning search for molecules on the task farm.

Owns the search spaces (:mod:`.space`: QM9 or a SMILES file), fingerprints and learners
(:mod:`.learner`), the asynchronous screening loop and its journal (:mod:`.loop`), the
screen's results files (:mod:`.outputs`) and the farm role of ``couple`` (:mod:`.role`).
May import :mod:`tcoupled.farm`, :mod:`tcoupled.chemistry` and :mod:`tcoupled.runtime`.
"""
