"""The on-paper scaling of data-parallel training in benchmarks/SCALING.md, from measured figures.

A ring all-reduce of S bytes over N nodes sends and receives 2 (N - 1) / N * S bytes per node and
takes 2 (N - 1) steps, so per training step it costs
    comm(N) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency.
No overlap with the backward pass is counted (a pessimistic bound: DDP does overlap some).
Two ways to add nodes:
    global batch fixed (--batch-size unchanged): compute(N) = compute(1) / N
    batch per node fixed (--batch-size times N):  compute(N) = compute(1)

    python -m benchmarks.experiments.e2026_11_25_data_parallel.scaling_model
"""

from __future__ import annotations

LATENCY = 30e-6  # seconds per message on a TCP network (an assumption, not measured here)
# shape: (bytes all-reduced per step, measured (benchmarks/results/ddp_scaling.jsonl); compute seconds per step
# on one node: the tokens/s of benchmarks/RESULTS.md (its run at commit 2b751c0), 2 threads)
SHAPES = {
    "char 2 x 512 (batch 64 x 128)": (14_492_428, 64 * 128 / 11_137),
    "word 2 x 650 (batch 20 x 35)": (79_121_600, 20 * 35 / 2_164),
}
NETWORKS = {"10 Gb/s": 10e9 / 8, "100 Gb/s": 100e9 / 8}
NODES = (2, 4, 8, 16, 32, 64)


def comm_seconds(size: int, nodes: int, bandwidth: float) -> float:
    return 2 * (nodes - 1) / nodes * size / bandwidth + 2 * (nodes - 1) * LATENCY


def break_even(size: int, compute: float, bandwidth: float) -> int | None:
    """The fewest nodes at which, with the global batch fixed, communication costs as much as compute."""
    for nodes in range(2, 4097):
        if comm_seconds(size, nodes, bandwidth) >= compute / nodes:
            return nodes
    return None


def main() -> None:
    print("| shape | network | " + " | ".join(f"N={n}" for n in NODES) + " | comm = compute at |")
    print("|---|---|" + "---|" * len(NODES) + "---|")
    for name, (size, compute) in SHAPES.items():
        for network, bandwidth in NETWORKS.items():
            cells = []
            for nodes in NODES:
                comm = comm_seconds(size, nodes, bandwidth)
                strong = (compute / nodes) / (compute / nodes + comm)  # fraction of a step spent computing
                weak = compute / (compute + comm)
                cells.append(f"{1000 * comm:.1f} ms; {nodes * strong:.1f}x / {nodes * weak:.1f}x")
            print(f"| {name} | {network} | " + " | ".join(cells) + f" | N = {break_even(size, compute, bandwidth)} |")


if __name__ == "__main__":
    main()
