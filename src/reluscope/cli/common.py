"""Options, parsers and error handling shared by the command-line modules."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import numpy as np
import torch
import typer
from rich.console import Console
from rich.markup import escape

from reluscope.devices import DEVICE_HELP, resolve_device
from reluscope.errors import InputError, ReluscopeError, did_you_mean
from reluscope.io import atomic_write, check_writable_dir, load_tensors, read_arrays
from reluscope.nets.checks import check_real_inputs
from reluscope.nets.spec import load_model
from reluscope.nets.trace import infer_input_shape, trace
from reluscope.validation import check_choice, invalid

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
DeviceOpt = Annotated[str, typer.Option(help=f"{DEVICE_HELP}.")]
ForceOpt = Annotated[
    bool,
    typer.Option(help="Write into an existing directory even if it holds files of others."),
]

OUT_SUFFIXES = (".parquet", ".csv")
POINT_FILE_SUFFIXES = (".npy", ".npz", ".pt")


class Scale(str, Enum):
    """The scale of an experiment: quick (minutes, on generated data) or the paper's."""

    quick = "quick"
    paper = "paper"


class Preset(str, Enum):
    """The kernel of local complexity."""

    theory = "theory"
    paper_code = "paper_code"


class Method(str, Enum):
    """How local complexity computes gradient norms."""

    exact = "exact"
    sketch = "sketch"


E = TypeVar("E", bound=Enum)


def choice_option(kind: type[E], help: str, *names: str) -> Any:
    """A typer option taking one of the values of the enum ``kind``: ``--help`` lists them,
    and a mistyped value is refused with the closest one suggested ("did you mean ...")."""
    values = [str(member.value) for member in kind]

    def parse(text: object) -> E:
        if isinstance(text, kind):
            return text
        try:
            return kind(text)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is not one of {', '.join(map(repr, values))}{did_you_mean(text, values)}"
            ) from None

    return typer.Option(
        *names,
        parser=parse,
        metavar=f"<{'|'.join(values)}>",
        help=help,
        autocompletion=lambda incomplete: [v for v in values if v.startswith(incomplete)],
    )


def parse_numbers(text: str, name: str) -> list[float]:
    """Comma-separated numbers, e.g. '0.5,-1'."""
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise invalid(f"--{name}", "comma-separated numbers", text) from None


def parse_points(text: str, name: str) -> torch.Tensor:
    """Points given inline ('1,2;3,4') or as a .npy, .npz (first array) or .pt file."""
    path = Path(text)
    if path.suffix not in POINT_FILE_SUFFIXES:
        rows = [parse_numbers(row, name) for row in text.split(";")]
        return torch.tensor(rows, dtype=torch.float64)
    what = f"--{name} file"
    data = load_tensors(path, what) if path.suffix == ".pt" else read_arrays(path, what)
    if isinstance(data, dict):  # an .npz archive: its first array
        data = next(iter(data.values()), None)
    try:
        points = torch.as_tensor(np.asarray(data))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{what} {str(path)!r} does not hold a numeric array ({exc})") from None
    return check_real_inputs(points, f"the points in {what} {str(path)!r}").to(torch.float64)


def _dtype(name: str) -> torch.dtype:
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    return dtypes[check_choice("--dtype", name, sorted(dtypes))]


def _load(model: str, weights: Path | None, seed: int, input_shape: str | None, device: str):
    target = resolve_device(device)
    module, shape = load_model(model, weights, seed=seed)
    if input_shape is not None:
        shape = tuple(int(s) for s in parse_numbers(input_shape, "input-shape"))
    shape = shape or infer_input_shape(module)
    if shape is None:
        raise InputError(
            f"cannot tell the input shape of {model!r}: pass --input-shape, e.g. 1,28,28"
        )
    return trace(module.to(target), shape)


def _run(fn) -> None:
    """Run a command's body: a ReluscopeError (the user's mistake) becomes one line ``error:
    ...`` and exit code 2; any other exception one line ``internal error: ... please report``
    and exit code 1, with the traceback only under ``reluscope --debug``."""
    try:
        fn()
    except ReluscopeError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException):
        raise
    except Exception as exc:
        if debugging():
            console.print_exception()
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        hint = "" if debugging() else " (`reluscope --debug ...` shows the traceback)"
        console.print(
            f"[bold red]internal error:[/] {escape(reason)}; please report it to the "
            f"reluscope developers{hint}"
        )
        raise typer.Exit(1) from None


_DEBUG = {"on": False}


def set_debug(on: bool) -> None:
    """Show the full traceback of internal errors (``reluscope --debug``)."""
    _DEBUG["on"] = on


def debugging() -> bool:
    """Whether ``--debug`` was given, or the environment sets RELUSCOPE_DEBUG=1."""
    return _DEBUG["on"] or os.environ.get("RELUSCOPE_DEBUG", "") not in ("", "0")


def _check_output_file(out: Path, suffixes: tuple[str, ...] = OUT_SUFFIXES) -> None:
    """Fail before any computation when ``out`` cannot be written as a file ending in one of
    ``suffixes`` (so that a slip never overwrites another kind of file)."""
    if out.suffix.lower() not in suffixes:
        raise InputError(f"--out {out} must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; expected a file name")
    check_writable_dir(out.parent, f"the directory of --out {out}:")


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
