"""What every screen does first: load the search space and its (cached) fingerprints.

Shared by ``tcoupled screen`` (:mod:`tcoupled.workflow.screen`) and the farm role of
``couple`` (:mod:`.role`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcoupled.screening.loop import ScreenConfig

CONFIG_FILE = "config.json"


def prepare_space(config: ScreenConfig, log: Any, who: str) -> tuple[Any, np.ndarray, float]:
    """Load the search space and its (cached) fingerprints; return them and the seconds."""
    from tcoupled.screening.learner import cached_fingerprints, default_cache_dir
    from tcoupled.screening.space import load_space

    space = load_space(config.space)
    start = time.perf_counter()
    fingerprints, cached = cached_fingerprints(space.smiles, config.fp_radius, config.fp_bits,
                                               config.fp_cache or default_cache_dir())
    seconds = time.perf_counter() - start
    if config.task == "ie" and space.source is not None:
        space.fallback_geometry(0)  # read QM9's geometries now, not on the first submit
    invalid = int((~fingerprints.any(axis=1)).sum())
    log.info("%s: space %s, %d molecules (%d unparsable), fingerprints %s in %.2f s", who,
             space.name, len(space), invalid, "read from cache" if cached else "computed",
             seconds)
    return space, fingerprints, seconds
