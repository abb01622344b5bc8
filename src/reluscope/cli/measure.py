"""``reluscope measure``: local complexity, neighbourhood complexity, local rank, TV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reluscope.cli.common import (
    DeviceOpt,
    DtypeOpt,
    Method,
    ModelOpt,
    Preset,
    WeightsOpt,
    _check_output_file,
    _dtype,
    _fit_data,
    _run,
    _write_records,
    choice_option,
    console,
)
from reluscope.devices import resolve_device
from reluscope.errors import InputError, did_you_mean
from reluscope.nets.spec import load_model
from reluscope.nets.trace import infer_input_shape, trace

MEASURES = ("lc", "neighborhood", "local-rank", "tv")


def _parse_measures(text: str, radius: float | None) -> list[str]:
    """The requested measure names, checked, in order and without repeats."""
    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in names if m not in MEASURES]
    if unknown or not names:
        hint = did_you_mean(unknown[0], MEASURES) if unknown else ""
        raise InputError(
            f"unknown measure(s) {unknown or text!r} in --measures; valid: "
            f"{', '.join(MEASURES)}{hint}"
        )
    if "neighborhood" in names:
        _radius(radius)
    return names


def _radius(radius: float | None) -> float:
    """The --radius of the neighborhood measure; an InputError when it was not given."""
    if radius is None:
        raise InputError(
            "the neighborhood measure needs --radius R (the cross-polytope radius, in input units)"
        )
    return radius


def _format(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6g}"


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
    preset: Annotated[Preset, choice_option(Preset, "lc kernel.")] = Preset.theory,
    method: Annotated[Method, choice_option(Method, "lc gradient norms.")] = Method.exact,
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
        from reluscope.data import load_data, subsample
        from reluscope.measures import (
            local_complexity,
            local_rank,
            neighborhood_complexity,
            total_variation,
        )
        from reluscope.records import frame

        names = _parse_measures(measures, radius)
        if out is not None:
            _check_output_file(out)
        dt = _dtype(dtype)
        target = resolve_device(device)
        dataset = load_data(data, seed=seed, data_dir=data_dir)
        if n is not None:
            dataset = subsample(dataset, n, seed)
        module, shape = load_model(model, weights, seed=seed)
        _fit_data(shape or infer_input_shape(module), dataset.input_shape, model, data)
        net = trace(module.to(target), dataset.input_shape)
        tv_output = int(output) if output.lstrip("-").isdigit() else output
        runs = {
            "lc": lambda x: local_complexity(
                net, x, sigma=sigma, preset=preset.value, method=method.value, seed=seed, dtype=dt
            ),
            "neighborhood": lambda x: neighborhood_complexity(
                net, x, radius=_radius(radius), n_vertices=n_vertices, seed=seed, dtype=dt
            ),
            "local-rank": lambda x: local_rank(net, x, atol=atol, dtype=dt),
            "tv": lambda x: total_variation(net, x, output=tv_output, sigma=sigma, dtype=dt),
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
            _write_records(frame(records), out)
            console.print(f"wrote {len(records)} records to {out}")

    _run(go)
