"""Vision models: sketch local complexity on ResNet-18, exact regions through CNN planes.

(a) Sketch LC (``method="sketch"``, random-probe JVPs) on the zoo's ``resnet18`` (torchvision's
    ResNet-18 structure, 11.2 M parameters, BatchNorm folded) at 3x32x32, float32, sigma 0.01:
    points per second, wall and CPU time.
(b) Exact 2-D regions of planes through small CNNs: regions per second and peak memory. On the
    zoo's ``cnn`` (conv 3x3 -> ReLU -> AvgPool2d(2), twice, then Linear) regioncam runs side by
    side: it has no convolution or windowed max pooling, so each affine stretch between two
    ReLUs is given to it as its dense matrix on the plane (the plane's embedding folded into
    the first), and the region counts must agree. A CNN with max pooling, ReLU6 and Hardtanh
    and a narrow ResNet-18 at 16x16 run with reluscope alone.

Each measurement runs in its own process with one torch thread, after a warm-up; peak memory is
that process's ru_maxrss (resource.getrusage), also shown above the process's own baseline after
building the model (``peak_mib``, ``baseline_mib``). Wall and CPU time (time.process_time) are
both given: on a shared machine the CPU time is the steadier figure.

    python benchmarks/bench_vision.py                   # both parts, a few minutes on 2 cores
    python benchmarks/bench_vision.py --lc-points 8 --probes 4 --skip-resnet-plane
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time

from harness import WorkerFailed, main, run_worker

SIGMA = 0.01

#: The planes of part (b): model builder, input shape, half-width of the square around the origin.
PLANES = {
    "cnn 1x12x12 (4, 8)": ("cnn", (1, 12, 12), 8.0),
    "maxpool/ReLU6/Hardtanh CNN 1x12x12": ("vision_cnn", (1, 12, 12), 4.0),
    "resnet18 width_mult=0.125 3x16x16": ("resnet18_small", (3, 16, 16), 10.0),
}


# ------------------------------------------------------------------ worker side
def build(name: str):
    """The torch module of a case (eval mode, float64 for regions, float32 for LC)."""
    import torch
    from torch import nn

    from reluscope.nets import cnn
    from reluscope.nets.spec import load_model

    if name == "resnet18":
        return load_model("resnet18:num_classes=10,image_size=32", seed=0)[0]
    if name == "resnet18_small":
        spec = "resnet18:num_classes=10,image_size=16,width_mult=0.125"
        return load_model(spec, seed=0)[0].double()
    if name == "cnn":
        return cnn(in_channels=1, image_size=12, channels=(4, 8), num_classes=3, seed=0).double()
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU6(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.Hardtanh(-0.5, 0.5),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(72, 3),
        )
        .double()
        .eval()
    )


def plane_basis(shape: tuple[int, ...]):
    """A seeded origin and orthonormal directions u, v of the input space."""
    import torch

    gen = torch.Generator().manual_seed(1)
    d = 1
    for s in shape:
        d *= s
    origin = torch.randn(d, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(d, 2, generator=gen, dtype=torch.float64))
    return origin, q[:, 0], q[:, 1]


def dense_stretches(model, shape: tuple[int, ...], origin, u, v) -> list:
    """regioncam layers for a Sequential of affine modules and ReLUs: every affine stretch
    between two ReLUs as its dense (in, out) matrix (in float32, regioncam's only dtype), the first one composed with the plane's
    embedding (s, t) -> origin + s u + t v."""
    import regioncam
    import torch
    from torch import nn

    stretches: list[list] = [[]]
    for module in model:
        if isinstance(module, nn.ReLU):
            stretches.append([])
        else:
            stretches[-1].append(module)
    layers = []
    x = origin.reshape((1,) + shape)
    with torch.no_grad():
        for i, modules in enumerate(stretches):
            seq = nn.Sequential(*modules)
            if i == 0:  # the points origin, origin + u, origin + v
                points = torch.stack([origin, origin + u, origin + v]).reshape((3,) + shape)
            else:  # 0 and the unit vectors of the stretch's input
                n, rest = x[0].numel(), tuple(x.shape[1:])
                eye = torch.eye(n, dtype=x.dtype).reshape((n,) + rest)
                points = torch.cat([torch.zeros((1,) + rest, dtype=x.dtype), eye])
            y = seq(points).reshape(len(points), -1)
            weight, bias = y[1:] - y[0], y[0]
            layers.append(regioncam.nn.Linear(weight.float().numpy(), bias.float().numpy()))
            if i < len(stretches) - 1:
                layers.append(regioncam.nn.ReLU())
            x = torch.relu(seq(x))
    return layers


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    out: dict = {"threads": torch.get_num_threads()}
    model = build(spec["model"])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if spec["part"] == "lc":
        from reluscope.measures.local_complexity import local_complexity
        from reluscope.nets import trace

        net = trace(model, (3, 32, 32))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(spec["points"], 3, 32, 32, generator=gen)

        def call():
            return local_complexity(net, x, sigma=SIGMA, method="sketch", probes=spec["probes"])

        local_complexity(net, x[:1], sigma=SIGMA, method="sketch", probes=spec["probes"])  # warm-up
    else:
        shape = tuple(spec["shape"])
        origin, u, v = plane_basis(shape)
        r = spec["half_width"]
        extent = (-r, r, -r, r)
        if spec["tool"] == "reluscope":
            from reluscope.regions import plane

            def call():
                return plane(model, origin, u, v, extent, input_shape=shape)

            plane(model, origin, u, v, (-0.01, 0.01, -0.01, 0.01), input_shape=shape)
        else:
            import regioncam

            layers = dense_stretches(model, shape, origin, u, v)

            def call():
                cam = regioncam.Regioncam(size=r)
                cam.add(layers)
                return cam

    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    out["seconds"] = time.perf_counter() - wall
    out["cpu_seconds"] = time.process_time() - cpu
    if spec["part"] == "lc":
        out["value"], out["probe_stderr"] = result.value, result.extra["probe_stderr"]
    elif spec["tool"] == "reluscope":
        out["regions"] = result.num_regions
    else:
        out["regions"] = result.num_faces
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["baseline_mib"] = baseline
    return out


# ------------------------------------------------------------------ driver side
def run(spec: dict) -> dict:
    try:
        result = run_worker(__file__, spec)
    except WorkerFailed as failed:
        return spec | {"failed": str(failed).splitlines()[-1][:200]}
    print(f"  {spec.get('case', spec['model'])}: {result['seconds']:.2f} s", file=sys.stderr)
    return result


def plan(args) -> list[dict]:
    t = {"threads": args.threads}
    jobs = [
        {"part": "lc", "model": "resnet18", "points": args.lc_points, "probes": args.probes} | t
    ]
    try:
        import regioncam  # noqa: F401

        have_regioncam = True
    except ImportError:
        have_regioncam = False
    for case, (model, shape, half_width) in PLANES.items():
        if args.skip_resnet_plane and model == "resnet18_small":
            continue
        base = {"part": "plane", "case": case, "model": model, "shape": shape} | t
        base["half_width"] = half_width
        jobs.append(base | {"tool": "reluscope"})
        if model == "cnn" and have_regioncam:
            jobs.append(base | {"tool": "regioncam"})
    return jobs


def report(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    lc = Table(title=f"Sketch LC, resnet18 at 3x32x32, float32, CPU ({platform.machine()})")
    for col in ("points", "probes", "wall s", "CPU s", "points/s", "value", "peak MiB (+)"):
        lc.add_column(col, justify="right")
    regions = Table(title="Exact regions through CNN planes, float64")
    for col in ("plane", "tool", "regions", "wall s", "CPU s", "regions/s", "peak MiB (+)"):
        regions.add_column(col, justify="left" if col in ("plane", "tool") else "right")
    for r in results:
        if "failed" in r:
            console.print(f"{r}: FAILED {r['failed']}")
            continue
        peak = f"{r['peak_mib']:,.0f} (+{r['peak_mib'] - r['baseline_mib']:,.0f})"
        if r["part"] == "lc":
            lc.add_row(
                str(r["points"]),
                str(r["probes"]),
                f"{r['seconds']:.2f}",
                f"{r['cpu_seconds']:.2f}",
                f"{r['points'] / r['seconds']:.2f}",
                f"{r['value']:.6g} ± {r['probe_stderr']:.3g}",
                peak,
            )
        else:
            regions.add_row(
                r["case"],
                r["tool"],
                f"{r['regions']:,}",
                f"{r['seconds']:.3f}",
                f"{r['cpu_seconds']:.3f}",
                f"{r['regions'] / r['seconds']:,.0f}",
                peak,
            )
    console.print(lc)
    console.print(regions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--lc-points", type=int, default=32)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--skip-resnet-plane", action="store_true")


if __name__ == "__main__":
    main(__doc__.splitlines()[0], add_arguments, worker, plan, run, report)
