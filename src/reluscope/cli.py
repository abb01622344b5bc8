"""The ``reluscope`` command line."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from reluscope.errors import InputError, ReluscopeError
from reluscope.io import atomic_write
from reluscope.nets.spec import infer_input_shape, load_model
from reluscope.nets.trace import trace

app = typer.Typer(help="Look inside piecewise-linear (ReLU) networks.", no_args_is_help=True)
regions_app = typer.Typer(help="Exact linear regions on lines and planes.", no_args_is_help=True)
app.add_typer(regions_app, name="regions")
console = Console(soft_wrap=True)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Zoo spec (mlp:2-64-64-1) or package.module:factory.")
]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="State dict (.pt), loaded with weights_only=True.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the zoo model and of random plane directions.")]
ShapeOpt = Annotated[str | None, typer.Option(help="Input shape without batch, e.g. 1,28,28.")]
DtypeOpt = Annotated[str, typer.Option(help="float64 (default) or float32.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]


def parse_numbers(text: str, name: str) -> list[float]:
    """Comma-separated numbers, e.g. '0.5,-1'."""
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def parse_points(text: str, name: str) -> torch.Tensor:
    """Points given inline ('1,2;3,4') or as a .npy, .npz (first array) or .pt file."""
    path = Path(text)
    if path.suffix in (".npy", ".npz", ".pt"):
        if not path.exists():
            raise InputError(f"--{name}: file {path} does not exist")
        try:
            if path.suffix == ".pt":
                data = torch.load(path, map_location="cpu", weights_only=True)
            else:
                data = np.load(path)
                if isinstance(data, np.lib.npyio.NpzFile):
                    data = data[data.files[0]]
        except Exception as exc:
            raise InputError(f"--{name}: cannot read {path}: {exc}") from exc
        return torch.as_tensor(np.asarray(data), dtype=torch.float64)
    return torch.tensor([parse_numbers(row, name) for row in text.split(";")], dtype=torch.float64)


def _dtype(name: str) -> torch.dtype:
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    if name not in dtypes:
        raise InputError(f"--dtype must be one of {sorted(dtypes)}, got {name!r}")
    return dtypes[name]


def _load(model: str, weights: Path | None, seed: int, input_shape: str | None, device: str):
    module, shape = load_model(model, weights, seed=seed)
    if input_shape is not None:
        shape = tuple(int(s) for s in parse_numbers(input_shape, "input-shape"))
    shape = shape or infer_input_shape(module)
    if shape is None:
        raise InputError(
            f"cannot tell the input shape of {model!r}: pass --input-shape, e.g. 1,28,28"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but CUDA is not available here")
    return trace(module.to(device), shape)


def _check_writable(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"output directory {parent} does not exist: create it or choose another --out"
        )


def _run(fn) -> None:
    try:
        fn()
    except ReluscopeError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


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
) -> None:
    """Exact 2-D linear regions of a model on a plane, drawn to a PNG."""

    def go() -> None:
        from reluscope.regions import plane, plane_through

        _check_writable(out)
        net = _load(model, weights, seed, input_shape, device)
        dt = _dtype(dtype)
        start = time.perf_counter()
        if through is not None:
            part = plane_through(net, parse_points(through, "through"), dtype=dt)
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
            part = plane(net, *vecs, extent=parse_numbers(extent, "extent"), dtype=dt)
        elapsed = time.perf_counter() - start
        part.plot(out, color_by=color_by)
        console.print(
            f"[bold]{part.num_regions}[/] linear regions, {part.num_vertices} vertices "
            f"({elapsed:.3f} s, {model} on extent {part.extent})"
        )
        console.print(f"wrote {out}")

    _run(go)


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
) -> None:
    """Exact linear pieces of a model along a segment."""

    def go() -> None:
        from reluscope.regions import line
        from reluscope.regions.plot import plot_line

        if out is not None:
            _check_writable(out)
        net = _load(model, weights, seed, input_shape, device)
        a, b = parse_points(start, "start").reshape(-1), parse_points(end, "end").reshape(-1)
        t0 = time.perf_counter()
        part = line(net, a, b, dtype=_dtype(dtype))
        elapsed = time.perf_counter() - t0
        console.print(
            f"[bold]{part.num_pieces}[/] linear pieces along a segment of length "
            f"{part.length:.4g} ({elapsed:.3f} s)"
        )
        if out is not None:
            plot_line(part, out)
            console.print(f"wrote {out}")

    _run(go)


MEASURES = ("lc", "neighborhood", "local-rank", "tv")
OUT_SUFFIXES = (".parquet", ".csv")


def _parse_measures(text: str, radius: float | None) -> list[str]:
    """The requested measure names, checked, in order and without repeats."""
    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in names if m not in MEASURES]
    if unknown or not names:
        raise InputError(
            f"unknown measure(s) {unknown or text!r} in --measures; valid: {', '.join(MEASURES)}"
        )
    if "neighborhood" in names and radius is None:
        raise InputError(
            "the neighborhood measure needs --radius R (the cross-polytope radius, in input units)"
        )
    return names


def _check_output_file(out: Path) -> None:
    """Fail before any computation when ``out`` cannot be written as .parquet or .csv."""
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out {out} must end in {' or '.join(OUT_SUFFIXES)}")
    _check_writable(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; expected a file name")
    if not os.access(out.parent if str(out.parent) else Path("."), os.W_OK):
        raise InputError(f"cannot write to the directory of --out {out}: permission denied")


def _write_records(frame, out: Path) -> None:
    """Write ``frame`` to ``out`` (Parquet, or CSV for .csv) atomically, so that a failure
    leaves any existing ``out`` untouched."""
    if out.suffix.lower() == ".csv":
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        atomic_write(out, lambda tmp: frame.to_parquet(tmp, index=False))


def _fit_data(net_shape: tuple[int, ...] | None, data_shape: tuple[int, ...], model, data) -> None:
    """InputError naming both shapes when the data's points do not fit the model's input."""
    if net_shape is None or tuple(net_shape) == tuple(data_shape):
        return
    hint = ""
    if int(np.prod(net_shape)) == int(np.prod(data_shape)):
        flat = "true" if len(net_shape) == 1 else "false"
        hint = f" (same size: try flatten={flat} in the spec of digits, mnist or cifar10)"
    raise InputError(
        f"data {data!r} has points of shape {tuple(data_shape)}, but model {model!r} expects "
        f"inputs of shape {tuple(net_shape)}{hint}"
    )


def _format(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6g}"


@app.command("measure")
def measure(
    model: ModelOpt,
    data: Annotated[
        str,
        typer.Option(
            help="gaussian[:n=..,d=..,classes=..], uniform, digits, mnist1d, modular[:p=97], "
            "mnist, cifar10 (from --data-dir), or a .npz/.npy/.pt file."
        ),
    ],
    measures: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(MEASURES)}.")
    ] = "lc",
    weights: WeightsOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory holding local MNIST / CIFAR-10 files.")
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Measure on a random subsample of N points.")
    ] = None,
    sigma: Annotated[float, typer.Option(help="Bias-noise scale of lc and tv.")] = 0.01,
    preset: Annotated[str, typer.Option(help="lc kernel: theory or paper_code.")] = "theory",
    method: Annotated[str, typer.Option(help="lc gradient norms: exact or sketch.")] = "exact",
    radius: Annotated[
        float | None, typer.Option(help="Cross-polytope radius of neighborhood (input units).")
    ] = None,
    n_vertices: Annotated[int, typer.Option(help="Cross-polytope vertices of neighborhood.")] = 50,
    atol: Annotated[float, typer.Option(help="Rank tolerance of local-rank.")] = 0.01,
    output: Annotated[
        str, typer.Option(help="tv output: logits, norm, predicted, or an output index.")
    ] = "logits",
    seed: Annotated[int, typer.Option(help="Seed of the model, the data and the measures.")] = 0,
    dtype: DtypeOpt = "float64",
    device: DeviceOpt = "cpu",
    out: Annotated[
        Path | None, typer.Option(help="Write tidy records to this .parquet (or .csv) file.")
    ] = None,
) -> None:
    """Measure a model on data: local complexity, neighbourhood complexity, local rank, total
    variation. Prints a table and optionally writes tidy records (model, data, seed, metric,
    layer, value, stderr)."""

    def go() -> None:
        import pandas as pd

        from reluscope.data import load_data, subsample
        from reluscope.measures import (
            local_complexity,
            local_rank,
            neighborhood_complexity,
            total_variation,
        )

        names = _parse_measures(measures, radius)
        if out is not None:
            _check_output_file(out)
        dt = _dtype(dtype)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"--device {device} asked for, but CUDA is not available here")
        dataset = load_data(data, seed=seed, data_dir=data_dir)
        if n is not None:
            dataset = subsample(dataset, n, seed)
        module, shape = load_model(model, weights, seed=seed)
        _fit_data(shape or infer_input_shape(module), dataset.input_shape, model, data)
        net = trace(module.to(device), dataset.input_shape)
        tv_output = int(output) if output.lstrip("-").isdigit() else output
        runs = {
            "lc": lambda x: local_complexity(
                net, x, sigma, preset=preset, method=method, seed=seed, dtype=dt
            ),
            "neighborhood": lambda x: neighborhood_complexity(
                net, x, radius, n_vertices, seed, dtype=dt
            ),
            "local-rank": lambda x: local_rank(net, x, atol, dtype=dt),
            "tv": lambda x: total_variation(net, x, tv_output, sigma=sigma, dtype=dt),
        }
        for name in names:  # a one-point dry run of each measure checks its options first
            runs[name](dataset.x[:1])
        records, timings = [], []
        for i, name in enumerate(names, 1):
            with console.status(f"[{i}/{len(names)}] {name} on {len(dataset)} points"):
                start = time.perf_counter()
                result = runs[name](dataset.x)
                timings.append(f"{name} {time.perf_counter() - start:.2f} s")
            records += result.to_records(model=model, data=data, seed=seed)
        table = Table("measure", "layer", "value", "stderr", caption=", ".join(timings))
        for row in records:
            table.add_row(
                row["metric"], row["layer"] or "", _format(row["value"]), _format(row["stderr"])
            )
        console.print(table)
        if out is not None:
            _write_records(pd.DataFrame(records), out)
            console.print(f"wrote {len(records)} records to {out}")

    _run(go)


def main() -> None:
    app()
