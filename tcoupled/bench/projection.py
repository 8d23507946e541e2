"""Scale on paper: one cycle of both divisions on a Polaris node and on 64 nodes.

Nothing here is measured on a Polaris node (the stencil's efficiency was measured on an
H200). Each unit cost of :class:`~tcoupled.coupling.costmodel.UnitCosts`
is derived from a hardware figure and an efficiency listed in :data:`ASSUMPTIONS`, then
fed to :func:`~tcoupled.coupling.costmodel.predict`, the arithmetic ``couple --division
auto`` uses. ``python -m tcoupled.bench.projection`` prints the README table.

Layouts (equal hardware and equal samples per cycle in both divisions): *time* gives
every GPU a square block, which it steps and then trains on in place (zero copy);
*space* gives half of the GPUs twice as large sim blocks and the other half the
training, each train GPU receiving one slot from a sim GPU of its node over NVLink.
The 64-node case is weak-scaled (the same block per GPU); DDP spans all train GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: name -> (value, where it comes from)
ASSUMPTIONS = {
    "hbm_bytes_per_s": (1.5e12, "A100 HBM2 (issue: 1.5 TB/s per GPU)"),
    "stencil_efficiency": (0.62, "fraction of HBM bandwidth the stencil reaches: the CUDA "
                                 "kernel moved 2.8-3.3 TB/s of an H200's 4.8 (median 0.62 "
                                 "of six timings, run/device_report.json and README)"),
    "stencil_bytes_per_point": (12, "float32: read u^n and u^(n-1), write u^(n+1) into "
                                    "the slot's frame (neighbours from cache, zero copy)"),
    "fp32_flops_per_s": (19.5e12, "A100 FP32 peak without tensor cores"),
    "conv_efficiency": (0.25, "fraction of FP32 peak for 3x3 convs with 1-16 channels "
                              "(assumed; few channels keep cuDNN far from peak)"),
    "train_flops_per_pixel": (3 * 2 * 9 * (1 * 8 + 8 * 16 + 16 * 8 + 8 * 1),
                              "3 x forward FLOPs of Conv 1->8->16->8->1, k=3"),
    "nvlink_bytes_per_s": (100e9, "one way between two GPUs of a node (assumed share "
                                  "of NVLink3), CUDA-aware MPI"),
    "nvlink_latency_s": (10e-6, "device-to-device message latency (assumed)"),
    "network_bytes_per_s": (25e9, "Slingshot 11, one NIC"),
    "network_latency_s": (15e-6, "GPU-aware MPI message between nodes (assumed)"),
    "allreduce_node_s": (20e-6, "NCCL allreduce of the 10 KB gradient over 2-4 GPUs "
                                "(latency-bound, assumed)"),
    "allreduce_64_nodes_s": (100e-6, "NCCL allreduce of 10 KB over 128-256 GPUs "
                                     "(latency-bound tree, assumed)"),
    "digest_bytes_per_s": (0.75e12, "slot digest on the GPU at half the HBM bandwidth "
                                    "(today it is a host sha256 of a copy: see notes)"),
}


def value(name: str) -> float:
    """The assumed value of ``name``."""
    return ASSUMPTIONS[name][0]


@dataclass(frozen=True)
class Case:
    """One projected workload: per-GPU block edge, steps, iterations, batch."""

    name: str
    block: int            # time division: each GPU steps a block x block square
    steps: int            # K
    iters: int            # M
    batch: int            # pairs per iteration and train GPU


CASES = (Case("training-heavy: 4096^2 per GPU, K=64, M=8, 4 pairs", 4096, 64, 8, 4),
         Case("balanced: 2048^2 per GPU, K=256, M=1, 1 pair", 2048, 256, 1, 1))
MACHINES = (("Polaris node (4 A100)", 1), ("64 Polaris nodes (256 A100)", 64))


def unit_costs(case: Case, division: str, nodes: int) -> object:
    """The :class:`UnitCosts` of ``case`` in ``division`` on ``nodes`` nodes."""
    from tcoupled.coupling.costmodel import UnitCosts

    points = case.block ** 2 * (2 if division == "space" else 1)
    step = (value("stencil_bytes_per_point") * points
            / (value("hbm_bytes_per_s") * value("stencil_efficiency")))
    edge_bytes = 4 * case.block
    if nodes == 1:
        halo = value("nvlink_latency_s") + edge_bytes / value("nvlink_bytes_per_s")
    else:
        halo = value("network_latency_s") + edge_bytes / value("network_bytes_per_s")
    pixels = case.batch * points
    iter_s = (pixels * value("train_flops_per_pixel")
              / (value("fp32_flops_per_s") * value("conv_efficiency")))
    slot = (case.steps + 1) * points * 4
    allreduce = value("allreduce_node_s" if nodes == 1 else "allreduce_64_nodes_s")
    gpus = 4 * nodes
    sims, trains = (gpus // 2, gpus // 2) if division == "space" else (gpus, gpus)
    return UnitCosts(sim_s=case.steps * (step + halo), iter_s=iter_s, allreduce_s=allreduce,
                     slot_bytes=slot, feeds=1, sources=1, warmup_s=0.0,
                     digest_s=slot / value("digest_bytes_per_s"), sim_ranks=sims,
                     train_ranks=trains, cores=0)


def project() -> list[dict]:
    """Predicted steady-state seconds per cycle of every case, machine and division."""
    from tcoupled.coupling.costmodel import SPACE_MARGIN, HandoffCost, predict

    links = {"time": HandoffCost(value("nvlink_latency_s")),        # zero copy in place
             "space": HandoffCost(value("nvlink_latency_s"), 1 / value("nvlink_bytes_per_s"))}
    rows = []
    for case in CASES:
        for machine, nodes in MACHINES:
            row = {"case": case.name, "machine": machine}
            for division in ("time", "space"):
                costs = unit_costs(case, division, nodes)
                parts = predict(costs, links[division], division, case.iters, cycles=10 ** 6)
                row[division] = {**parts, "slot_gb": costs.slot_bytes / 1e9}
            margin = row["time"]["cycle_s"] / row["space"]["cycle_s"] - 1
            row["margin"] = margin
            row["auto"] = "space" if margin >= SPACE_MARGIN else "time"
            rows.append(row)
    return rows


def markdown() -> str:
    """The README table and the assumptions under it."""
    lines = ["| workload | machine | time division s/cycle (sim + train) | space division "
             "s/cycle (produce / consume) | slot GB (time / space) | auto |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in project():
        t, s = r["time"], r["space"]
        lines.append(f"| {r['case']} | {r['machine']} | {t['cycle_s']:.3f} "
                     f"({t['sim_s']:.3f} + {t['train_s']:.3f}) | {s['cycle_s']:.3f} "
                     f"({s['produce_s']:.3f} / {s['consume_s']:.3f}) | "
                     f"{t['slot_gb']:.1f} / {s['slot_gb']:.1f} | {r['auto']} "
                     f"(space {r['margin']:+.0%}) |")
    lines.append("")
    lines.append("Assumptions (none measured on Polaris; the stencil's efficiency on an H200):")
    for name, (number, why) in ASSUMPTIONS.items():
        lines.append(f"- `{name}` = {number:g}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
