"""Channels benchmark: handoff cost per field against size, against today's staging.

Every row is one float32 ``n x n`` field handed from the producer to the consumer
(write + read) in one run:

* ``inproc`` (DLPack view, same process) and the ``np.save``/``np.load`` file per sample
  (the ALCF exercise's file-system staging) and a private local ``redis-server`` through
  ``redis-py`` (the in-memory store, SmartSim-style), timed in this process;
* ``shm``, ``mpi`` and ``file`` (the channel protocol, READY/RELEASE messages included)
  and the MPI library's own ping-pong, timed in one two-rank launch of
  :mod:`tcoupled.bench.channels_driver`.

Times are the best of the repeats (the machine is shared, and the best is the one the
noise did not inflate). Zero-copy channels must stay flat in size; ``mpi`` is compared
with the ping-pong bandwidth measured in the same launch.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.bench.timing import best_time

NAME = "channels"
DRIVER = "tcoupled.bench.channels_driver"
DTYPE = "float32"
METHODS = ("inproc", "shm", "mpi", "file", "np.save", "redis")


def inproc_handoff(n: int, min_time: float) -> dict:
    """Best seconds of one ``inproc`` handoff (acquire, publish, receive, release)."""
    from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel

    spec = SlotSpec(1, (n, n), DTYPE)
    channel = open_channel("inproc", ChannelContext(), spec)
    sender = channel.sender(())
    receiver = channel.receiver(0, spec, 0)

    def handoff() -> None:
        sender.acquire()
        sender.publish()
        receiver.receive()
        receiver.release()

    seconds = best_time(handoff, min_time)
    copied = (sender.bytes_copied + receiver.bytes_copied) / max(sender.published, 1)
    return _row("inproc", n, seconds, copied)


def npsave_handoff(n: int, folder: Path, min_time: float) -> dict:
    """Best seconds of ``np.save`` of a field to its own file and ``np.load`` back."""
    field = np.random.default_rng(0).standard_normal((n, n)).astype(DTYPE)
    path = folder / f"sample_{n}.npy"

    def handoff() -> None:
        np.save(path, field)
        np.load(path)
        path.unlink()

    return _row("np.save", n, best_time(handoff, min_time), 2 * field.nbytes)


def redis_handoff(client: Any, n: int, min_time: float) -> dict:
    """Best seconds of ``SET`` of a field's bytes and ``GET`` back into an array."""
    field = np.random.default_rng(0).standard_normal((n, n)).astype(DTYPE)

    def handoff() -> None:
        client.set("field", field.tobytes())
        np.frombuffer(client.get("field"), dtype=DTYPE).reshape(n, n)

    seconds = best_time(handoff, min_time)
    client.delete("field")
    return _row("redis", n, seconds, 2 * field.nbytes)


def _row(method: str, n: int, seconds: float, copied: float) -> dict:
    return {"method": method, "n": n, "bytes": n * n * np.dtype(DTYPE).itemsize,
            "seconds": seconds, "bytes_copied_per_handoff": copied}


def in_process_rows(sizes: list[int], out: Path, min_time: float) -> tuple[list, str | None]:
    """``inproc``, ``np.save`` and Redis rows; the reason Redis was skipped, if it was."""
    from tcoupled.bench import redis_server

    folder = out / "channels_scratch"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        rows.append(inproc_handoff(n, min_time))
        rows.append(npsave_handoff(n, folder, min_time))
    skipped = redis_server.missing()
    if skipped is None:
        try:
            with redis_server.redis_server(folder / "redis") as client:
                rows.extend(redis_handoff(client, n, min_time) for n in sizes)
        except OSError as error:
            skipped = str(error)
    return rows, skipped


def mpi_rows(sizes: list[int], out: Path, min_time: float) -> tuple[list, list, str]:
    """Rows of the two-rank launch (shm, mpi, file) and its ping-pong."""
    from tcoupled.bench.launch import run_driver

    staging = out / "channels_scratch" / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    result = run_driver(DRIVER, 2, "--sizes", *map(str, sizes), "--staging", str(staging),
                        "--min-time", str(min_time), timeout=600)
    rows = [{"method": r["channel"], "n": r["n"], "bytes": r["bytes"],
             "seconds": r["best_seconds"], "median_seconds": r["seconds"],
             "bytes_copied_per_handoff": r["bytes_copied_per_handoff"]}
            for r in result["rows"]]
    return rows, result["ping_pong"], result["library"]


def run(options: dict) -> dict:
    """Run the channels benchmark; ``options['quick']`` keeps two small sizes."""
    quick = options.get("quick", False)
    sizes = [64, 256] if quick else [64, 256, 1024, 2048, 4096]
    min_time = 0.05 if quick else 0.3
    out = Path(options.get("out", "."))
    try:
        local, redis_skipped = in_process_rows(sizes, out, min_time)
        remote, pings, library = mpi_rows(sizes, out, min_time)
    finally:
        shutil.rmtree(out / "channels_scratch", ignore_errors=True)
    rows = sorted(local + remote, key=lambda r: (METHODS.index(r["method"]), r["n"]))
    for row in rows:
        row["us"] = row["seconds"] * 1e6
        row["GBps"] = row["bytes"] / row["seconds"] / 1e9
    results = {"sizes": sizes, "dtype": DTYPE, "rows": rows, "ping_pong": pings,
               "mpi_library": library, "redis_skipped": redis_skipped}
    results["headline"] = headline(results)
    return results


def _by(rows: list[dict], method: str) -> dict[int, dict]:
    return {r["n"]: r for r in rows if r["method"] == method}


def headline(results: dict) -> dict:
    """Flatness of zero-copy channels, mpi against ping-pong, and staging ratios."""
    rows, small, large = results["rows"], results["sizes"][0], results["sizes"][-1]
    head: dict[str, Any] = {"small_n": small, "large_n": large}
    for method in ("inproc", "shm"):
        by = _by(rows, method)
        head[f"{method}_large_over_small"] = by[large]["seconds"] / by[small]["seconds"]
    ping = {p["n"]: p for p in results["ping_pong"]}[large]
    mpi = _by(rows, "mpi")[large]
    head["mpi_GBps"] = mpi["GBps"]
    head["ping_pong_GBps"] = ping["GBps"]
    head["mpi_fraction_of_ping_pong"] = mpi["GBps"] / ping["GBps"]
    for reference in ("np.save", "redis"):
        ref = _by(rows, reference).get(large)
        if ref is None:
            continue
        for method in ("inproc", "shm", "mpi", "file"):
            key = f"{reference}_over_{method}".replace(".", "")
            head[key] = ref["seconds"] / _by(rows, method)[large]["seconds"]
    return head


def table(results: dict) -> list[str]:
    """Microseconds per handoff: one row per size, one column per method."""
    methods = [m for m in METHODS if any(r["method"] == m for r in results["rows"])]
    lines = ["us per handoff (float32 n x n, write + read); ping-pong = MPI one-way",
             f"{'n':>6} " + " ".join(f"{m:>10}" for m in methods) + f" {'ping-pong':>10}"]
    pings = {p["n"]: p for p in results["ping_pong"]}
    for n in results["sizes"]:
        cells = [_by(results["rows"], m).get(n) for m in methods]
        lines.append(f"{n:>6} " + " ".join(f"{c['us']:>10,.0f}" if c else f"{'-':>10}"
                                           for c in cells)
                     + f" {pings[n]['seconds'] * 1e6:>10,.0f}")
    head = results["headline"]
    lines.append(f"mpi at {head['large_n']}^2: {head['mpi_GBps']:.2f} GB/s = "
                 f"{head['mpi_fraction_of_ping_pong']:.0%} of ping-pong "
                 f"({head['ping_pong_GBps']:.2f} GB/s, {results['mpi_library']})")
    lines.append(f"inproc / shm cost at {head['large_n']}^2 over {head['small_n']}^2: "
                 f"{head['inproc_large_over_small']:.2f} / {head['shm_large_over_small']:.2f}")
    if results["redis_skipped"]:
        lines.append(f"redis skipped: {results['redis_skipped']}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Seconds per handoff against field bytes, log-log, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        pts = sorted((r["bytes"], r["us"]) for r in results["rows"] if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=method)
    pings = sorted((p["bytes"], p["seconds"] * 1e6) for p in results["ping_pong"])
    ax.plot(*zip(*pings), "k--", label="MPI ping-pong (one way)")
    ax.set(xscale="log", yscale="log", xlabel="field bytes (float32 n x n)",
           ylabel="us per handoff", title="Handing one field from solver to trainer")
    ticks = [r["bytes"] for r in results["rows"] if r["method"] == "inproc"]
    ax.set_xticks(ticks, [f"{int(math.sqrt(b / 4))}²" for b in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
