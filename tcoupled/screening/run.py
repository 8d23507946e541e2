"""What every screen does first: load the search space and its (cached) fingerprints.

Shared by ``tcoupled screen`` (:mod:`tcoupled.workflow.screen`) and the farm role of
``couple`` (:mod:`.role`).
"""

from __future__ import annotations

import time
from typing import Any

from tcoupled.screening.loop import ScreenConfig

CONFIG_FILE = "config.json"


def policy_features(policy: str, smiles: list[str], config: ScreenConfig) -> tuple[Any, bool]:
    """Return the (cached) fingerprints the policy needs, and whether they were cached.

    ``count``: sparse Morgan counts of radius ``count_radius`` (the GP policies);
    ``morgan``: packed Morgan bits of ``fp_radius`` and ``fp_bits`` (the kNN policies).
    """
    from tcoupled.screening.learner import cached_fingerprints, default_cache_dir
    from tcoupled.screening.policies import FEATURES

    cache = config.fp_cache or default_cache_dir()
    if FEATURES[policy] == "count":
        from tcoupled.screening.gp import cached_count_fingerprints

        return cached_count_fingerprints(smiles, config.count_radius, cache)
    return cached_fingerprints(smiles, config.fp_radius, config.fp_bits, cache)


def prepare_space(config: ScreenConfig, log: Any, who: str) -> tuple[Any, Any, float]:
    """Load the search space and the policy's (cached) fingerprints; return them and seconds."""
    from tcoupled.screening.policies import valid_mask
    from tcoupled.screening.space import load_space

    space = load_space(config.space)
    start = time.perf_counter()
    features, cached = policy_features(config.policy, space.smiles, config)
    seconds = time.perf_counter() - start
    if config.task == "ie" and space.source is not None:
        space.fallback_geometry(0)  # read QM9's geometries now, not on the first submit
    invalid = int((~valid_mask(features)).sum())
    log.info("%s: space %s, %d molecules (%d unparsable), fingerprints %s in %.2f s", who,
             space.name, len(space), invalid, "read from cache" if cached else "computed",
             seconds)
    return space, features, seconds
