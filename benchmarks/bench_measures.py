"""Local complexity: the exact and sketch methods against the full-Jacobian reference, side by side.

The reference is the authors' method: for every hidden layer l, ``vmap(jacfwd(x -> z_l(x)))``
of the noisy network (one JVP per input dimension, the whole Jacobian recomputed per layer),
then the kernel-weighted sum of the row norms. A second, stronger baseline ("reference_1pass")
computes the Jacobians of all layers in one forward-mode pass. All methods use the same points
and the same noise draws (same seed), float32 on the CPU, sigma = 0.01, theory preset.

Models: the paper's MNIST MLP (784 -> 4x200 -> 10) and CIFAR MLP (3072 -> 7x1000 -> 10) with
the authors' initialisation (weights N(0, 1/fan_in), zero biases, seeded), standard-normal
inputs; and ``reluscope.nets.resnet()`` (3x32x32 inputs, width 16, 2 blocks, BatchNorm folded).
Each measurement runs in its own process, one warm-up call on one point first; peak memory is
that process's ru_maxrss, also shown above the baseline of a process that only built the model
and the data. Each process uses one torch thread (``--threads``): on a small machine shared
with other jobs, torch's two-thread pool slowed small ops by up to 80x in our runs.

    python benchmarks/bench_measures.py                 # everything (about 3-5 min on 2 cores)
    python benchmarks/bench_measures.py --cifar-points 64 --cifar-reference-points 4
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import time

from harness import main, run_worker

SIGMA = 0.01
MLPS = {"mnist": [784] + [200] * 4 + [10], "cifar": [3072] + [1000] * 7 + [10]}


# ------------------------------------------------------------------ worker side
def build(case: str):
    """The PWLNet (float32) and 256 standard-normal inputs of a case, seeded."""
    import torch

    from reluscope.nets import mlp, resnet, trace

    gen = torch.Generator().manual_seed(0)
    if case == "resnet":
        net = trace(resnet(), (3, 32, 32))
        return net, torch.randn(256, 3, 32, 32, generator=gen)
    widths = MLPS[case]
    model = mlp(widths, seed=0)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                std = 1 / math.sqrt(layer.in_features)
                layer.weight.copy_(std * torch.randn(layer.weight.shape, generator=gen))
                layer.bias.zero_()
    return trace(model, (widths[0],)), torch.randn(256, widths[0], generator=gen)


def reference(net, x, sigma: float, one_pass: bool) -> float:
    """Theory-preset LC from full input Jacobians of the noisy network (vmap of jacfwd)."""
    import torch
    from torch.func import jacfwd, vmap

    from reluscope.measures.gradnorms import bias_noise
    from reluscope.nets.pwl import INPUT

    noise = bias_noise(net, len(x), sigma, torch.Generator().manual_seed(0))
    sites = [s.name for s in net.sites]

    def preacts(xi, eps, upto):
        values, out = {INPUT: xi[None]}, {}
        for n in net.nodes:
            ins = [values[a] for a in n.inputs]
            if n.is_site:
                out[n.name] = ins[0][0]
                if n.name == upto:
                    break
                values[n.name] = n.op.forward(ins[0] + eps[n.name][None])
            else:
                values[n.name] = n.op.forward(*ins)
        return out

    targets = [sites[-1]] if one_pass else sites
    total = 0.0
    for upto in targets:
        chunk = 8 if x[0].numel() > 1000 else 64
        for i in range(0, len(x), chunk):
            eps = {k: v[i : i + chunk] for k, v in noise.items()}

            def fn(xi, e, u=upto):
                out = preacts(xi, e, u)
                return out if one_pass else {u: out[u]}

            jac = vmap(jacfwd(fn))(x[i : i + chunk], eps)
            zbar = vmap(fn)(x[i : i + chunk], eps)
            for s in jac:
                k = torch.exp(-0.5 * (zbar[s] / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
                norms = jac[s].flatten(2).norm(dim=2)
                total += float((k * norms).sum(dtype=torch.float64))
    return total / len(x)


def worker(spec: dict) -> dict:
    import torch

    from reluscope.measures.local_complexity import local_complexity

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    net, x = build(spec["case"])
    x = x[: spec["points"]]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict = {"threads": torch.get_num_threads()}
    method = spec["method"]

    def call(points):
        if method in ("reference", "reference_1pass"):
            return {"value": reference(net, points, SIGMA, method == "reference_1pass")}
        kwargs = {"probes": spec["probes"]} if method == "sketch" else {}
        r = local_complexity(net, points, sigma=SIGMA, method=method, **kwargs)
        return {"value": r.value, "stderr": r.stderr, "extra": r.extra}

    if method != "baseline":
        call(x[:1])  # warm-up: lazy library initialisation
        start = time.perf_counter()
        out.update(call(x))
        out["seconds"] = time.perf_counter() - start
    else:
        out["seconds"] = 0.0
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["baseline_mib"] = baseline
    return out


# ------------------------------------------------------------------ driver side
def run(spec: dict) -> dict:
    result = run_worker(__file__, spec)
    print(
        f"  {spec['case']:7s} {spec['method']:16s} {spec['points']:4d} points "
        f"{result['seconds']:8.2f} s",
        file=sys.stderr,
    )
    return result


def plan(args) -> list[dict]:
    t = {"threads": args.threads}
    jobs = []
    for case, points, ref_points in (
        ("mnist", args.mnist_points, args.mnist_reference_points),
        ("cifar", args.cifar_points, args.cifar_reference_points),
    ):
        jobs += [
            {"case": case, "method": "baseline", "points": points} | t,
            {"case": case, "method": "exact", "points": points} | t,
            {"case": case, "method": "reference", "points": ref_points} | t,
            {"case": case, "method": "reference_1pass", "points": ref_points} | t,
        ]
        if ref_points != points:  # the exact value on the reference's points
            jobs.append({"case": case, "method": "exact", "points": ref_points} | t)
        jobs += [
            {"case": case, "method": "sketch", "points": points, "probes": k} | t
            for k in args.probes
        ]
    jobs += [
        {"case": "resnet", "method": "baseline", "points": args.resnet_points} | t,
        {"case": "resnet", "method": "sketch", "points": args.resnet_points, "probes": 64} | t,
        {"case": "resnet", "method": "exact", "points": args.resnet_exact_points} | t,
        {"case": "resnet", "method": "sketch", "points": args.resnet_exact_points, "probes": 64}
        | t,
    ]
    return jobs


def report(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Local complexity, sigma={SIGMA}, float32, CPU ({platform.machine()})")
    for col in (
        "model",
        "method",
        "points",
        "s / point",
        "vs reference",
        "value",
        "vs exact (rel.)",
        "peak MiB (+ over baseline)",
    ):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    for case in ("mnist", "cifar", "resnet"):
        rows = [r for r in results if r["case"] == case]
        base = next(r for r in rows if r["method"] == "baseline")
        ref = next((r for r in rows if r["method"] == "reference"), None)
        ref_speed = ref["seconds"] / ref["points"] if ref else None
        exact_by_points = {r["points"]: r for r in rows if r["method"] == "exact"}
        for r in rows:
            if r["method"] == "baseline":
                continue
            per_point = r["seconds"] / r["points"]
            ratio = f"{ref_speed / per_point:,.1f}x" if ref_speed else "-"
            name = r["method"] + (f" k={r['probes']}" if r["method"] == "sketch" else "")
            exact = exact_by_points.get(r["points"])
            if r["method"] == "exact":
                other = next(
                    (q for q in rows if q["method"] == "reference" and q["points"] == r["points"]),
                    None,
                )
                diff = f"{abs(r['value'] / other['value'] - 1):.1e} vs ref" if other else "-"
            elif r["method"] == "sketch" and exact:
                err = r["extra"]["probe_stderr"] / exact["value"]
                diff = f"{r['value'] / exact['value'] - 1:+.2%} ± {err:.2%}"
            elif r["method"].startswith("reference") and exact:
                diff = f"{abs(r['value'] / exact['value'] - 1):.1e}"
            else:
                diff = "-"
            peak = f"{r['peak_mib']:,.0f} (+{r['peak_mib'] - base['baseline_mib']:,.0f})"
            table.add_row(
                case,
                name,
                str(r["points"]),
                f"{per_point:.4f}",
                ratio,
                f"{r['value']:.6g}",
                diff,
                peak,
            )
    Console(width=160).print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (0: torch's default)"
    )
    parser.add_argument("--mnist-points", type=int, default=256)
    parser.add_argument("--mnist-reference-points", type=int, default=128)
    parser.add_argument("--cifar-points", type=int, default=256)
    parser.add_argument("--cifar-reference-points", type=int, default=8)
    parser.add_argument("--resnet-points", type=int, default=128)
    parser.add_argument("--resnet-exact-points", type=int, default=2)
    parser.add_argument("--probes", type=int, nargs="+", default=[8, 32])


if __name__ == "__main__":
    main(__doc__.splitlines()[0], add_arguments, worker, plan, run, report)
