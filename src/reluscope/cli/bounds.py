"""``reluscope bounds``: generalisation bounds of an MLP on a labelled data set, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from reluscope.cli.common import (
    ModelOpt,
    WeightsOpt,
    _check_output_file,
    _fit_data,
    _run,
    _write_records,
    console,
    parse_numbers,
)
from reluscope.errors import InputError, did_you_mean


def _log(value: float) -> str:
    """A log10 value with two decimals."""
    return "" if value != value else f"{value:.2f}"


def _parse_ranks(text: str) -> str | list[int]:
    if text in ("exact", "numerical"):
        return text
    try:
        numbers = parse_numbers(text, "ranks")
    except InputError:
        numbers = []
    if not numbers or any(not r.is_integer() or r < 0 for r in numbers):
        raise InputError(
            f"--ranks must be 'exact', 'numerical' or comma-separated integers >= 0; got "
            f"{text!r}{did_you_mean(text, ('exact', 'numerical'))}"
        )
    return [int(r) for r in numbers]


def bounds(
    model: ModelOpt,
    data: Annotated[
        str,
        typer.Option(
            help="A labelled data set: gaussian[:n=..,d=..,classes=..], digits, mnist1d, "
            "modular[:p=97], mnist, cifar10 (from --data-dir), or a .npz/.pt file with x and y."
        ),
    ],
    weights: WeightsOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory holding local MNIST / CIFAR-10 files.")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="Margin gamma in output units; default: the 10% quantile of the positive "
            "margins on the data."
        ),
    ] = None,
    delta: Annotated[
        float, typer.Option(help="The bounds hold with probability 1 - delta.")
    ] = 0.05,
    n: Annotated[
        int | None, typer.Option("--n", help="Use a random subsample of N points.")
    ] = None,
    which: Annotated[
        str,
        typer.Option(
            "--bounds",
            help="Comma-separated, from: low-rank, low-rank-post-hoc, grs, bft, nbs, nts.",
        ),
    ] = "low-rank,low-rank-post-hoc,grs,bft,nbs,nts",
    ranks: Annotated[
        str,
        typer.Option(help="Ranks r_l: exact, numerical (see --rtol), or one integer per layer."),
    ] = "exact",
    rtol: Annotated[
        float | None, typer.Option(help="Relative tolerance of numerical ranks (default 1e-3).")
    ] = None,
    c1: Annotated[float, typer.Option("--c1", help="Maurer's chain-rule constant C1.")] = 1.0,
    c2: Annotated[float, typer.Option("--c2", help="Maurer's chain-rule constant C2.")] = 1.0,
    biases: Annotated[str, typer.Option(help="absorb (exact) or error.")] = "absorb",
    mc_draws: Annotated[
        int, typer.Option(help="Draws of the Monte Carlo Gaussian complexity estimate (0: none).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the model, the data and the estimate.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write one row per bound to this .parquet (or .csv) file.")
    ] = None,
) -> None:
    """Generalisation bounds of an MLP on labelled data: the low-rank chain-rule bound and the
    prior norm-based bounds, in log10, with their parts (product of spectral norms vs rank or
    width factor), their rank-substituted forms and the empirical margin risk."""

    def go() -> None:
        from reluscope.bounds import compare, default_margin, mlp_weights
        from reluscope.data import load_data, subsample
        from reluscope.nets.spec import load_model
        from reluscope.nets.trace import infer_input_shape

        rank_option = _parse_ranks(ranks)
        if out is not None:
            _check_output_file(out)
        dataset = load_data(data, seed=seed, data_dir=data_dir)
        if dataset.y is None:
            raise InputError(f"data {data!r} has no labels; the bounds need a labelled data set")
        if n is not None:
            dataset = subsample(dataset, n, seed)
        module, shape = load_model(model, weights, seed=seed)
        _fit_data(shape or infer_input_shape(module), dataset.input_shape, model, data)
        gamma = margin
        if gamma is None:
            outputs = mlp_weights(module, dataset.input_shape, biases=biases)(dataset.x)
            gamma = default_margin(outputs, dataset.labels)
        with console.status(f"bounds on {len(dataset)} points"):
            result = compare(
                module,
                dataset.x,
                dataset.labels,
                margin=gamma,
                delta=delta,
                bounds=which,
                ranks=rank_option,
                rtol=rtol,
                C1=c1,
                C2=c2,
                biases=biases,
                estimate_draws=mc_draws,
                seed=seed,
            )
        stats = result.margins
        caption = (
            "main = prefactor · ΠB · rank factor (complexity term); risk = empirical margin "
            f"risk. n={stats.n}, margin={stats.margin:.4g}, margin risk={stats.risk:.4g}, "
            f"error={stats.error:.4g}, ranks={list(result.norms.ranks)}, C1={c1:g}, C2={c2:g}"
            + (", biases absorbed" if result.params["biases_absorbed"] else "")
        )
        table = Table(box=box.SIMPLE, caption=caption)
        table.add_column("bound", no_wrap=True)
        for header in ("log10 bound", "risk", "log10 main", "log10 ΠB", "log10 rank"):
            table.add_column(header, justify="right")
        table.add_column("rank form", no_wrap=True)
        table.add_column("log10 main in ranks", justify="right")
        for r in result.results:
            table.add_row(
                r.name,
                _log(r.log10_value),
                f"{r.margin_risk:.3g}",
                _log(r.log10_main),
                _log(r.log10_norm_product),
                _log(r.log10_rank_factor),
                r.rank_form,
                _log(r.log10_main_substituted),
            )
        console.print(table)
        if result.estimate is not None:
            e = result.estimate
            console.print(
                f"Gaussian complexity of the low-rank class: Monte Carlo {e.value:.4g} "
                f"(± {e.stderr:.2g}), bound {e.bound:.4g}, looseness {e.looseness:.3g}"
            )
        if out is not None:
            frame = result.summary(model=model, data=data, seed=seed)
            _write_records(frame, out)
            console.print(f"wrote {len(frame)} records to {out}")

    _run(go)
