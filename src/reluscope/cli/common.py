"""Options, parsers and error handling shared by the command-line modules."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.markup import escape

from reluscope.errors import InputError, ReluscopeError
from reluscope.io import atomic_write
from reluscope.nets.spec import infer_input_shape, load_model
from reluscope.nets.trace import trace

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
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


OUT_SUFFIXES = (".parquet", ".csv")


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
