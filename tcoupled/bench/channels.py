"""Channels benchmark: one field from the producer's write to the consumer's read, end to end.

Every timed handoff is a whole transfer of one float32 ``n x n`` field: the producer
writes all of it (``fill``, a value that changes every handoff), hands it over, and the
consumer reads all of it (a sum over the received tensor, checked against the value
written). ``touch`` is the same write and read in one process with no channel in
between, timed in the same run: ``handoff_us / touch_us`` is what the channel adds.

* ``inproc`` (DLPack view, same process), ``np.save`` (``np.save``/``np.load``, one file
  per sample, in the page cache of a local disk -- not a parallel file system) and
  ``redis`` (redis-py ``SET``/``GET`` to a private local ``redis-server``), timed here;
* ``touch`` (on the producer's rank), ``touch-2proc`` (the write on one rank and the
  read on the other, in a shared window, signalled by one message each way: what two
  processes pay with no channel protocol), ``shm``, ``mpi`` and ``file`` (the channel
  protocol, READY/RELEASE messages included) and the MPI library's ping-pong, timed in
  one two-rank launch of :mod:`tcoupled.bench.channels_driver`.

Each row is the median of at least 5 handoffs lasting ``min_time`` together, with the
10th-90th percentile spread; ``bytes_copied`` is what the ledger (or the client) counted.
"""

from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.bench.timing import time_each

NAME = "channels"
DRIVER = "tcoupled.bench.channels_driver"
DTYPE = "float32"
ROUNDS = 3  # turns of the two-rank rows at the largest size (ratios within a round)
CHANNELS = ("touch", "touch-2proc", "inproc", "shm", "mpi", "file", "np.save", "redis")
LABELS = {"touch": "write + read in one process, no channel",
          "touch-2proc": "write on one rank, read on another in a shared window, one "
                         "message each way (no channel protocol): the two-process floor",
          "inproc": "DLPack view in the same process",
          "shm": "MPI shared-memory window, read in place by another rank",
          "mpi": "MPI Isend/Irecv to another rank", "file": "HDF5 file per cycle (page cache)",
          "np.save": "np.save/np.load, one file per sample (page cache, not a parallel FS)",
          "redis": "redis-py SET/GET to a private local redis-server"}


def write(array: np.ndarray, i: int) -> float:
    """The producer's write of the whole field; returns the value written."""
    value = float(1 + i % 7)
    array.fill(value)
    return value


def read(tensor: Any, value: float) -> None:
    """The consumer's read of the whole field (a sum at memory speed), checked.

    The sum runs in the field's own dtype: torch's float64-accumulating sum of float32
    is several times slower than the memory and would hide what a channel adds.
    """
    import torch

    tensor = torch.as_tensor(tensor)
    total = float(tensor.sum())
    if abs(total - value * tensor.numel()) > 1e-3 * value * tensor.numel():
        raise RuntimeError(f"channels bench: read {total}, wrote {value} everywhere")


def row(channel: str, n: int, times: list[float], copied: float) -> dict:
    """One row: median and spread of the handoff times, bytes copied per handoff."""
    ordered = sorted(times)
    return {"channel": channel, "n": n, "dtype": DTYPE,
            "bytes": n * n * np.dtype(DTYPE).itemsize,
            "handoff_us": statistics.median(times) * 1e6,
            "p10_us": ordered[len(ordered) // 10] * 1e6,
            "p90_us": ordered[(9 * len(ordered)) // 10] * 1e6,
            "repeats": len(times), "bytes_copied": copied}


def touch(n: int, min_time: float) -> dict:
    """Write and read the field in one process: the floor of any handoff."""
    import torch

    field = np.empty((n, n), dtype=DTYPE)
    tensor = torch.from_numpy(field)
    return row("touch", n, time_each(lambda i: read(tensor, write(field, i)), min_time), 0)


def inproc(n: int, min_time: float) -> dict:
    """``inproc`` channel: write into the slot, publish, receive the view, read, release."""
    from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel, slots_for

    spec = SlotSpec(1, (n, n), DTYPE)
    channel = open_channel("inproc", ChannelContext(slots=slots_for("time")), spec)
    sender = channel.sender(())
    receiver = channel.receiver(0, spec, 0)

    def handoff(i: int) -> None:
        value = write(sender.acquire(), i)
        sender.publish()
        read(receiver.receive(), value)
        receiver.release()

    times = time_each(handoff, min_time)
    copied = (sender.bytes_copied + receiver.bytes_copied) / sender.published
    return row("inproc", n, times, copied)


def npsave(n: int, folder: Path, min_time: float) -> dict:
    """``np.save`` of the field to its own file, ``np.load`` back, read."""
    field = np.empty((n, n), dtype=DTYPE)
    path = folder / f"sample_{n}.npy"

    def handoff(i: int) -> None:
        value = write(field, i)
        np.save(path, field)
        read(np.load(path), value)
        path.unlink()

    return row("np.save", n, time_each(handoff, min_time), 2 * field.nbytes)


def redis(client: Any, n: int, min_time: float) -> dict:
    """redis-py ``SET`` of the field's bytes, ``GET`` back into an array, read."""
    field = np.empty((n, n), dtype=DTYPE)

    def handoff(i: int) -> None:
        value = write(field, i)
        client.set("field", field.tobytes())
        read(np.frombuffer(client.get("field"), dtype=DTYPE).reshape(n, n), value)

    times = time_each(handoff, min_time)
    client.delete("field")
    return row("redis", n, times, 2 * field.nbytes)  # tobytes + GET's bytes (client side)


def in_process_rows(sizes: list[int], out: Path, min_time: float) -> tuple[list, str | None]:
    """``inproc``, ``np.save`` and Redis rows; why Redis was skipped, if it was."""
    import torch

    from tcoupled.bench import redis_server

    torch.set_num_threads(1)
    folder = out / "channels_scratch"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        rows += [inproc(n, min_time), npsave(n, folder, min_time)]
    skipped = redis_server.missing()
    if skipped is None:
        try:
            with redis_server.redis_server(folder / "redis") as client:
                rows.extend(redis(client, n, min_time) for n in sizes)
        except OSError as error:
            skipped = str(error)
    return rows, skipped


def mpi_rows(sizes: list[int], out: Path, min_time: float, rounds: int) -> dict:
    """Rows of the two-rank launch (touch, shm, mpi, file), its ping-pong and node load."""
    from tcoupled.bench.launch import run_driver

    staging = out / "channels_scratch" / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    return run_driver(DRIVER, 2, "--sizes", *map(str, sizes), "--staging", str(staging),
                      "--min-time", str(min_time), "--rounds", str(rounds), timeout=600)


def run(options: dict) -> dict:
    """Run the channels benchmark; ``options['quick']`` keeps two small sizes."""
    quick = options.get("quick", False)
    sizes = [64, 256] if quick else [64, 256, 1024, 2048, 4096]
    min_time = 0.05 if quick else 1.0
    out = Path(options.get("out", "."))
    rounds = 1 if quick else ROUNDS
    try:
        local, redis_skipped = in_process_rows(sizes, out, min_time)
        remote = mpi_rows(sizes, out, min_time, rounds)
    finally:
        shutil.rmtree(out / "channels_scratch", ignore_errors=True)
    rows = merge_rounds(remote["rows"]) + local
    rows.sort(key=lambda r: (CHANNELS.index(r["channel"]), r["n"]))
    touch_us = {r["n"]: r["handoff_us"] for r in rows if r["channel"] == "touch"}
    for item in rows:
        item["touch_us"] = touch_us[item["n"]]
    results = {"sizes": sizes, "dtype": DTYPE, "rows": rows, "labels": LABELS, "rounds": rounds,
               "round_ratios": round_ratios(remote["rows"]),
               "ping_pong": remote["ping_pong"], "mpi_library": remote["library"],
               "redis_skipped": redis_skipped, "node": remote["node"],
               "oversubscribed": remote["node"]["oversubscribed"]}
    results["headline"] = headline(results)
    return results


def merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per channel and size: the median of its rounds' medians, their spread.

    ``rounds_us`` keeps each round's median; ``p10_us``/``p90_us`` become the lowest
    10th and highest 90th percentile of the rounds.
    """
    merged: dict[tuple, dict] = {}
    for row in rows:
        key = (row["channel"], row["n"])
        if key not in merged:
            merged[key] = {**row, "rounds_us": [], "repeats": 0}
            merged[key].pop("round", None)
        into = merged[key]
        into["rounds_us"].append(row["handoff_us"])
        into["repeats"] += row["repeats"]
        into["p10_us"] = min(into["p10_us"], row["p10_us"])
        into["p90_us"] = max(into["p90_us"], row["p90_us"])
    for into in merged.values():
        into["handoff_us"] = statistics.median(into["rounds_us"])
    return list(merged.values())


def round_ratios(rows: list[dict]) -> dict[str, list[float]]:
    """Per channel, ``handoff_us / touch_us`` of each round at the size that had rounds."""
    rounds = [r for r in rows if "round" in r]
    if not rounds:
        return {}
    n = max(r["n"] for r in rounds)
    touch = {r["round"]: r["handoff_us"] for r in rounds if r["n"] == n
             and r["channel"] == "touch"}
    ratios: dict[str, list[float]] = {}
    for r in rounds:
        if r["n"] == n and r["channel"] != "touch" and r["round"] in touch:
            ratios.setdefault(r["channel"], []).append(r["handoff_us"] / touch[r["round"]])
    return ratios


def _at(rows: list[dict], channel: str, n: int) -> dict | None:
    return next((r for r in rows if r["channel"] == channel and r["n"] == n), None)


def headline(results: dict) -> dict:
    """``<channel>_over_touch`` at the largest size (``shm`` and ``mpi`` first).

    For the rows of the two-rank launch it is the median over the rounds of the ratio
    within each round (``<channel>_over_touch_rounds``); a slow spell of the machine
    then moves both sides of a ratio instead of one.
    """
    large = results["sizes"][-1]
    head: dict[str, Any] = {"n": large, "dtype": DTYPE, "rounds": results.get("rounds", 1)}
    per_round = results.get("round_ratios", {})
    for channel in CHANNELS[1:]:
        found = _at(results["rows"], channel, large)
        if found is not None:
            key = f"{channel.replace('.', '').replace('-', '_')}_over_touch"
            head[key] = found["handoff_us"] / found["touch_us"]
            if per_round.get(channel):
                head[key] = statistics.median(per_round[channel])
                head[f"{key}_rounds"] = per_round[channel]
    floor, shm = _at(results["rows"], "touch-2proc", large), _at(results["rows"], "shm", large)
    if floor is not None and shm is not None:  # what the channel protocol itself adds
        head["shm_over_touch_2proc"] = shm["handoff_us"] / floor["handoff_us"]
    return head


def table(results: dict) -> list[str]:
    """Microseconds per handoff (median): one row per size, one column per channel."""
    present = [c for c in CHANNELS if any(r["channel"] == c for r in results["rows"])]
    lines = [f"us per handoff, median (float32 n x n; producer writes all, consumer reads "
             f"all){' -- OVERSUBSCRIBED node' if results['oversubscribed'] else ''}",
             f"{'n':>6} " + " ".join(f"{c:>10}" for c in present) + f" {'ping-pong':>10}"]
    pings = {p["n"]: p for p in results["ping_pong"]}
    for n in results["sizes"]:
        cells = [_at(results["rows"], c, n) for c in present]
        lines.append(f"{n:>6} " + " ".join(f"{c['handoff_us']:>10,.0f}" if c else f"{'-':>10}"
                                           for c in cells)
                     + f" {pings[n]['seconds'] * 1e6:>10,.0f}")
    head = results["headline"]
    ratios = ", ".join(f"{k.removesuffix('_over_touch')} {v:.2f}"
                       for k, v in head.items() if k.endswith("_over_touch"))
    lines.append(f"handoff / touch at {head['n']}^2: {ratios}")
    lines.append(f"MPI one-way ping-pong ({results['mpi_library']}), for reference")
    if results["redis_skipped"]:
        lines.append(f"redis skipped: {results['redis_skipped']}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Microseconds per handoff against field bytes, log-log, one line per channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for channel in CHANNELS:
        pts = sorted((r["bytes"], r["handoff_us"]) for r in results["rows"]
                     if r["channel"] == channel)
        if pts:
            style = {"color": "k", "linewidth": 2} if channel == "touch" else {}
            ax.plot(*zip(*pts), marker="o", label=channel, **style)
    pings = sorted((p["bytes"], p["seconds"] * 1e6) for p in results["ping_pong"])
    ax.plot(*zip(*pings), "k--", label="MPI ping-pong (one way, no write/read)")
    ax.set(xscale="log", yscale="log", xlabel="field bytes (float32 n x n)",
           ylabel="us per handoff (write + hand over + read)",
           title="One field from the solver's write to the trainer's read")
    ticks = sorted({r["bytes"] for r in results["rows"]})
    ax.set_xticks(ticks, [f"{int(math.sqrt(b / 4))}²" for b in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
