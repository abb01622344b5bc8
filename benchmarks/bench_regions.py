"""Exact 2-D linear regions: reluscope against regioncam on identical MLPs, side by side.

Each measurement runs in its own process (so peak memory is that tool's alone): the same seeded
MLP, the square [-1, 1]^2, best wall time of ``--repeats`` runs after one warm-up on a tiny net.
Region counts must agree; the table gives regioncam's time over reluscope's (> 1: we are faster).

    python benchmarks/bench_regions.py            # 2-64x3, 2-256x3, 2-1000-700
    python benchmarks/bench_regions.py --quick    # skip 2-1000-700
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys

from rich.console import Console
from rich.table import Table

CONFIGS = {
    "2-64x3": [2, 64, 64, 64, 1],
    "2-256x3": [2, 256, 256, 256, 1],
    "2-1000-700": [2, 1000, 700, 1],
}

WORKER = r"""
import json, resource, sys, time
import torch
from reluscope.nets import mlp

widths, tool, repeats, device, dtype = json.loads(sys.argv[1])
model = mlp(widths, seed=0)
warm = mlp([2, 8, 8, 1], seed=1)

if tool == "reluscope":
    from reluscope.regions import plane
    dt = getattr(torch, dtype)
    model, warm = model.to(device), warm.to(device)
    def run(m):
        p = plane(m, dtype=dt)
        if device == "cuda":
            torch.cuda.synchronize()
        return p.num_regions
else:
    import regioncam
    def run(m):
        cam = regioncam.Regioncam(size=1.0)
        cam.add(m)
        return cam.num_faces

run(warm)
best, count = float("inf"), None
for _ in range(repeats):
    t = time.perf_counter()
    count = run(model)
    best = min(best, time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": best, "regions": count, "peak_mib": peak}))
"""


def measure(widths, tool, repeats, device="cpu", dtype="float64", memory_gib=16.0) -> dict:
    """Run one tool on one network in a fresh process capped at ``memory_gib`` of address space."""

    def cap() -> None:
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([widths, tool, repeats, device, dtype])],
        capture_output=True,
        text=True,
        preexec_fn=cap if device == "cpu" else None,
    )
    if out.returncode != 0:
        return {"failed": f"failed (exit {out.returncode}; over {memory_gib:g} GiB?)"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cells(result: dict) -> tuple[str, str]:
    if "failed" in result:
        return result["failed"], "-"
    return f"{result['seconds']:.3f}", f"{result['peak_mib']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 2-1000-700 network")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--memory-gib", type=float, default=16.0, help="address-space cap per run")
    args = parser.parse_args()

    configs = {k: v for k, v in CONFIGS.items() if not (args.quick and k == "2-1000-700")}
    table = Table(
        title=f"Exact 2-D regions on [-1,1]^2 ({platform.processor() or platform.machine()})"
    )
    for col in (
        "network",
        "regions",
        "equal",
        "reluscope s",
        "regioncam s",
        "ratio rc/ours",
        "reluscope MiB",
        "regioncam MiB",
    ):
        table.add_column(col, justify="right")
    for name, widths in configs.items():
        repeats = 1 if name == "2-1000-700" else args.repeats
        ours = measure(widths, "reluscope", repeats, args.device, args.dtype, args.memory_gib)
        theirs = measure(widths, "regioncam", repeats, memory_gib=args.memory_gib)
        if "failed" in ours or "failed" in theirs:
            equal, ratio = "-", "-"
        else:
            equal = "yes" if ours["regions"] == theirs["regions"] else f"NO ({theirs['regions']})"
            ratio = f"{theirs['seconds'] / ours['seconds']:.2f}"
        (our_s, our_mib), (their_s, their_mib) = _cells(ours), _cells(theirs)
        table.add_row(
            name, str(ours.get("regions", "-")), equal, our_s, their_s, ratio, our_mib, their_mib
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
