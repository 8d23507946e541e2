"""Benchmarks: each measures against a physical limit and a competing tool in one run.

Each benchmark module exposes ``NAME``, ``run(options) -> dict`` (JSON-ready
results with a ``rows`` list for the table) and ``plot(results, path)``.
"""

BENCHMARKS = {
    "stencil": "tcoupled.bench.stencil",
    "channels": "tcoupled.bench.channels",
    "ddp": "tcoupled.bench.ddp",
    "farm": "tcoupled.bench.farm",
    "model": "tcoupled.bench.model",
    "al": "tcoupled.bench.al",
}
