"""``reluscope regions plane|line``: exact linear regions drawn to PNG files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from reluscope.cli.common import (
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    SeedOpt,
    ShapeOpt,
    WeightsOpt,
    _check_output_file,
    _dtype,
    _load,
    _run,
    console,
    parse_numbers,
    parse_points,
)
from reluscope.validation import check_number

regions_app = typer.Typer(help="Exact linear regions on lines and planes.", no_args_is_help=True)


MaxRegionsOpt = Annotated[
    int, typer.Option(help="Stop with an error beyond this many regions (pieces of a line).")
]
MemoryBudgetOpt = Annotated[
    float,
    typer.Option(help="GiB the vertex tables may use; a larger partition is computed in chunks."),
]


def _budget_bytes(memory_budget: float) -> int:
    """``--memory-budget`` (GiB) in bytes."""
    return int(check_number("--memory-budget (GiB)", memory_budget, minimum=0, strict=True) * 2**30)


@regions_app.command("plane")
def regions_plane(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("regions.png"),
    weights: WeightsOpt = None,
    seed: SeedOpt = 0,
    extent: Annotated[str, typer.Option(help="s_min,s_max,t_min,t_max")] = "-1,1,-1,1",
    origin: Annotated[
        str | None, typer.Option(help="Plane origin: numbers or a .npy/.pt file.")
    ] = None,
    u: Annotated[str | None, typer.Option(help="First direction (default e1, or random).")] = None,
    v: Annotated[str | None, typer.Option(help="Second direction (default e2, or random).")] = None,
    through: Annotated[
        str | None, typer.Option(help="Three points '1,2;3,4;5,6' or a file: plane through them.")
    ] = None,
    input_shape: ShapeOpt = None,
    color_by: Annotated[str, typer.Option(help="random or output")] = "random",
    dtype: DtypeOpt = "float64",
    device: DeviceOpt = "cpu",
    max_regions: MaxRegionsOpt = 5_000_000,
    memory_budget: MemoryBudgetOpt = 4.0,
) -> None:
    """Exact 2-D linear regions of a model on a plane, drawn to a PNG."""

    def go() -> None:
        from reluscope.regions import plane, plane_through

        _check_output_file(out, (".png",))
        net = _load(model, weights, seed, input_shape, device)
        dt = _dtype(dtype)
        start = time.perf_counter()
        limits = dict(
            max_regions=max_regions,
            memory_budget=_budget_bytes(memory_budget),
            progress=_progress_printer(start),
        )
        if through is not None:
            part = plane_through(net, parse_points(through, "through"), dtype=dt, **limits)
        else:
            vecs = [
                None if t is None else parse_points(t, n).reshape(-1)
                for t, n in ((origin, "origin"), (u, "u"), (v, "v"))
            ]
            if vecs[1] is None and vecs[2] is None and net.input_dim != 2:
                gen = torch.Generator().manual_seed(seed)
                q, _ = torch.linalg.qr(
                    torch.randn(net.input_dim, 2, generator=gen, dtype=torch.float64)
                )
                vecs[1], vecs[2] = q[:, 0], q[:, 1]
            at, along_u, along_v = vecs
            part = plane(
                net,
                at,
                along_u,
                along_v,
                extent=parse_numbers(extent, "extent"),
                dtype=dt,
                **limits,
            )
        elapsed = time.perf_counter() - start
        part.plot(out, color_by=color_by)
        console.print(
            f"[bold]{part.num_regions}[/] linear regions, {part.num_vertices} vertices "
            f"({elapsed:.3f} s, {model} on extent {part.extent})"
        )
        console.print(f"wrote {out}")

    _run(go)


def _progress_printer(start: float, every: float = 2.0):
    """A progress callback printing the region count at most every ``every`` seconds."""
    last = [start]

    def report(regions: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            console.print(f"  {regions} regions so far ({now - start:.0f} s)", highlight=False)

    return report


@regions_app.command("line")
def regions_line(
    model: ModelOpt,
    start: Annotated[str, typer.Option(help="Segment start: numbers or a .npy/.pt file.")],
    end: Annotated[str, typer.Option(help="Segment end: numbers or a .npy/.pt file.")],
    out: Annotated[
        Path | None, typer.Option(help="Optional PNG of the output along the line.")
    ] = None,
    weights: WeightsOpt = None,
    seed: SeedOpt = 0,
    input_shape: ShapeOpt = None,
    dtype: DtypeOpt = "float64",
    device: DeviceOpt = "cpu",
    max_regions: MaxRegionsOpt = 5_000_000,
    memory_budget: MemoryBudgetOpt = 4.0,
) -> None:
    """Exact linear pieces of a model along a segment."""

    def go() -> None:
        from reluscope.regions import line
        from reluscope.regions.plot import plot_line

        if out is not None:
            _check_output_file(out, (".png",))
        net = _load(model, weights, seed, input_shape, device)
        a, b = parse_points(start, "start").reshape(-1), parse_points(end, "end").reshape(-1)
        t0 = time.perf_counter()
        part = line(
            net,
            a,
            b,
            dtype=_dtype(dtype),
            max_regions=max_regions,
            memory_budget=_budget_bytes(memory_budget),
        )
        elapsed = time.perf_counter() - t0
        console.print(
            f"[bold]{part.num_pieces}[/] linear pieces along a segment of length "
            f"{part.length:.4g} ({elapsed:.3f} s)"
        )
        if out is not None:
            plot_line(part, out)
            console.print(f"wrote {out}")

    _run(go)
