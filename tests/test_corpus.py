"""A corpus of hostile inputs and faults (issue #14): every case must end in one clear line
that names what was wrong (InputError, or exit code 2 on the command line) and leave every
file that was already written exactly as it was.

The cases are tables: command lines run through typer's CliRunner, and Python calls. Files
are built once per module in one directory (``hostile``) whose every byte and timestamp is
compared before and after each case.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import reluscope as rs
from reluscope.bounds import compare, mlp_weights
from reluscope.cli import app
from reluscope.data import Dataset, load_data
from reluscope.errors import InputError
from reluscope.experiments import run_experiment
from reluscope.nets import load_model, mlp
from reluscope.reproduce import reproduce
from reluscope.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
TOY = "toy_experiment:EXPERIMENT"
GOOD = "mlp:2-4-1"


# --------------------------------------------------------------------------- the files
def _save(path: Path, obj) -> None:
    torch.save(obj, path)


class Mine:
    """A picklable object of our own: torch.save of it writes a pickle of a foreign class."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """The directory of hostile files every case refers to as ``{d}``."""
    d = tmp_path_factory.mktemp("hostile")
    good = mlp([2, 4, 1], seed=0)
    state = good.state_dict()
    _save(d / "good.pt", state)
    nan = {k: v.clone() for k, v in state.items()}
    nan["2.weight"][0, 0] = math.nan
    _save(d / "nan.pt", nan)
    inf = {k: v.clone() for k, v in state.items()}
    inf["0.bias"][1] = math.inf
    _save(d / "inf.pt", inf)
    _save(d / "object.pt", Mine())
    _save(d / "module.pt", good)
    _save(d / "wide.pt", mlp([2, 8, 1], seed=0).state_dict())
    _save(d / "renamed.pt", {"w" + k: v for k, v in state.items()})
    _save(d / "mixed.pt", {**state, "note": "text"})
    _save(d / "empty_dict.pt", {})
    raw = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "text.pt").write_text("this is not a torch file\n")
    (d / "empty.pt").write_bytes(b"")
    _save(d / "data_object.pt", {"x": torch.randn(5, 2), "y": Mine()})
    _save(d / "data_pickle.pt", Mine())
    # arrays
    x = np.random.default_rng(0).normal(size=(20, 2))
    y = np.arange(20) % 2
    np.savez(d / "good.npz", x=x, y=y)
    np.savez(d / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    raw = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    np.save(d / "bool.npy", np.ones((5, 2), dtype=bool))
    np.save(d / "complex.npy", np.ones((5, 2), dtype=complex))
    np.save(d / "flat.npy", np.ones(5))
    np.save(d / "empty.npy", np.ones((0, 2)))
    np.save(d / "nan.npy", np.array([[0.0, math.nan], [1.0, 1.0]]))
    np.save(d / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.savez(d / "neg_labels.npz", x=x, y=-y - 1)
    np.savez(d / "frac_labels.npz", x=x, y=y + 0.5)
    np.savez(d / "short_labels.npz", x=x, y=y[:5])
    np.savez(d / "wide_x.npz", x=np.ones((20, 3)), y=y)
    (d / "text.npz").write_text("not a zip archive")
    np.save(d / "points3.npy", np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    np.save(d / "points_complex.npy", np.array([[0.0, 1j]]))
    np.save(d / "points_bool.npy", np.array([[True, False]]))
    # things that are not regular files
    (d / "dir.pt").mkdir()
    (d / "dir.npz").mkdir()
    (d / "dir.npy").mkdir()
    os.mkfifo(d / "fifo.npy")
    os.mkfifo(d / "fifo.pt")
    os.mkfifo(d / "fifo.npz")
    os.symlink(d / "loop_b.npz", d / "loop_a.npz")
    os.symlink(d / "loop_a.npz", d / "loop_b.npz")
    os.symlink(d / "loop_b.pt", d / "loop_a.pt")
    os.symlink(d / "loop_a.pt", d / "loop_b.pt")
    os.symlink(d / "nowhere.pt", d / "dangling.pt")
    # an MNIST directory with a truncated gzip IDX file, and one with object arrays
    mnist_gz = d / "mnist_gz"
    mnist_gz.mkdir()
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    header = b"\0\0\x08\x03" + np.array([4, 28, 28], ">u4").tobytes()
    packed = gzip.compress(header + images.tobytes())
    (mnist_gz / "train-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    labels = b"\0\0\x08\x01" + np.array([4], ">u4").tobytes() + bytes(4)
    (mnist_gz / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    mnist_obj = d / "mnist_obj"
    mnist_obj.mkdir()
    np.savez(
        mnist_obj / "mnist.npz",
        x_train=np.array([None], dtype=object),
        y_train=np.zeros(1),
        x_test=np.zeros(1),
        y_test=np.zeros(1),
    )
    # output targets that must survive
    (d / "victim.pt").write_bytes(raw)
    (d / "victim.parquet.d").mkdir()
    (d / "out.parquet").mkdir()
    (d / "out.png").mkdir()
    (d / "a_file").write_text("a user's file\n")
    user = d / "userdir"
    user.mkdir()
    (user / "notes.txt").write_text("my thesis\n")
    web = d / "webdir"
    web.mkdir()
    (web / "config.json").write_text('{"theme": "dark"}')
    (web / "index.html").write_text("<html>my site</html>")
    sweep_user = d / "sweepout" / "toy"
    sweep_user.mkdir(parents=True)
    (sweep_user / "notes.txt").write_text("mine\n")
    # run directories: another config, a damaged stamp, a directory as stamp
    other = d / "other_run"
    rs_run = run_experiment(TOY, "quick", {"n": 50}, other, progress=False)
    assert not rs_run.reused
    damaged = d / "damaged_stamp"
    damaged.mkdir()
    (damaged / "config.json").write_text('{"experiment": "toy", "conf')
    (damaged / "records.parquet").write_bytes(b"PAR1")
    stamp_dir = d / "stamp_is_dir"
    (stamp_dir / "config.json").mkdir(parents=True)
    cut = d / "cut_outcome"
    cut.mkdir()
    (cut / "outcome.json").write_text('{"predictions": [')
    bad_predictions = d / "bad_predictions"
    bad_predictions.mkdir()
    (bad_predictions / "outcome.json").write_text('{"predictions": [1]}')
    wrong_stamp = d / "wrong_stamp"
    wrong_stamp.mkdir()
    (wrong_stamp / "config.json").write_text(json.dumps([1, 2, 3]))
    (d / "dir.html").mkdir()
    _hostile_run_directories(d, json.loads((other / "outcome.json").read_text()))
    return d


#: Run directories whose outcome.json (or a file read with it) points outside the run: the
#: report must refuse them by name and never embed what lies outside.
FIGURE_FILES = {
    "figure_up": "../../etc/passwd",
    "figure_parent": "../a_file",
    "figure_abs": "/etc/passwd",
    "figure_link": "hist.png",  # a symbolic link to ../a_file
    "figure_number": 5,
    "figure_empty": "",
}


def _hostile_run_directories(d: Path, outcome: dict) -> None:
    for name, file in FIGURE_FILES.items():
        run = d / name
        run.mkdir()
        figures = [{"file": file, "caption": "a figure"}]
        (run / "outcome.json").write_text(json.dumps({**outcome, "figures": figures}))
    os.symlink(d / "a_file", d / "figure_link" / "hist.png")
    flat = d / "figures_not_a_list"
    flat.mkdir()
    (flat / "outcome.json").write_text(json.dumps({**outcome, "figures": "hist.png"}))
    linked = d / "outcome_link"  # outcome.json itself a link to another run's
    linked.mkdir()
    os.symlink(d / "other_run" / "outcome.json", linked / "outcome.json")
    failed = d / "error_link"  # a failed run whose error.txt is a link to a user's file
    failed.mkdir()
    (failed / "config.json").write_text(json.dumps({"experiment": "toy", "config": {}}))
    os.symlink(d / "a_file", failed / "error.txt")
    collection = d / "provenance_link"  # a reproduce directory whose provenance is a link
    collection.mkdir()
    (collection / "run").mkdir()
    (collection / "run" / "outcome.json").write_text(json.dumps(outcome))
    os.symlink(d / "a_file", collection / "provenance.json")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, mtime and content hash of regular files."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            key = str(path.relative_to(root))
            if path.is_symlink() or not path.is_file():
                seen[key] = (info.st_mode, os.readlink(path) if path.is_symlink() else None)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[key] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return seen


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def cli_error(text: str) -> str:
    """The one error line of a command, or, for an option value the command line parser
    refuses before the command runs (a choice not among an option's choices), the text of its
    usage-error box prefixed with "error: "."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Usage:"):
        boxed = [line.strip("│ ").strip() for line in lines if line.startswith("│")]
        assert boxed, f"a usage error without its message:\n{text}"
        return "error: " + " ".join(boxed)
    return one_line(text)


# --------------------------------------------------------------------------- CLI cases
M = ["measure", "--model", GOOD, "--data", "gaussian:n=20,d=2"]
B = ["bounds", "--model", "mlp:2-4-2", "--data", "gaussian:n=20,d=2,classes=2"]
P = ["regions", "plane", "--model", GOOD, "--out", "{d}/new.png"]
L = ["regions", "line", "--model", GOOD, "--start", "0,0", "--end", "1,1"]
R = ["run", TOY]


def models(prefix: list[str], spec_index: int) -> list[tuple[str, list[str], str]]:
    """The same bad models through one command."""
    bad = [
        ("unknown zoo", "foo", r"unknown model 'foo'"),
        ("one width", "mlp:2", r"bad mlp widths '2'"),
        ("zero width spec", "mlp:2-0-1", r"bad mlp widths '2-0-1'"),
        ("absurd width", "mlp:2-1000000000000-1", r"needs about [\d,.]+ GiB of memory"),
        ("word width", "mlp:2-a-1", r"bad mlp widths"),
        ("unknown option", "mlp:2-4-1:colour=red", r"unknown keyword argument.*colour"),
        ("bad bool", "mlp:2-4-1:bias=maybe", r"bias must be True or False"),
        (
            "unknown activation",
            "mlp:2-4-1:activation=gelu",
            r"activation must be one of \['relu', 'leaky_relu'\]; got 'gelu'",
        ),
        ("no module", "nosuch_module_xyz:f", r"cannot import module 'nosuch_module_xyz'"),
        ("no function", "math:nosuch", r"has no callable 'nosuch'"),
        ("returns dict", "hostile_models:as_dict", r"returned dict; expected a torch.nn.Module"),
        ("returns lambda", "hostile_models:as_lambda", r"returned function; expected"),
        ("meta device", "hostile_models:on_meta", r"'0.weight' is on the meta device"),
        ("float16", "hostile_models:in_half", r"'0.weight' is float16; expected float32"),
        ("bfloat16", "hostile_models:in_bfloat16", r"'0.weight' is bfloat16"),
        ("zero width layer", "hostile_models:zero_width", r"'0.weight' has shape \(0, 2\)"),
        ("nan weight", "hostile_models:nan_weight", r"'2.weight' holds 1 NaN value"),
        ("inf bias", "hostile_models:inf_bias", r"'0.bias' holds 1 inf value"),
        ("nan bn buffer", "hostile_models:nan_running_var", r"'1.running_var' holds 1 NaN"),
        (
            "gelu",
            "hostile_models:with_gelu",
            r"unsupported layer at '1' \(type GELU\): .*Supported: Linear",
        ),
        ("factory raises", "hostile_models:raising", r"failed: RuntimeError: the factory broke"),
        ("overflow", "hostile_models:overflowing", r"returns NaN or inf on random inputs"),
    ]
    cases = []
    for name, spec, expect in bad:
        args = list(prefix)
        args[spec_index] = spec
        cases.append(
            (
                f"{prefix[0]}-{prefix[1] if prefix[0] == 'regions' else 'model'}: {name}",
                args,
                expect,
            )
        )
    return cases


def weights(prefix: list[str]) -> list[tuple[str, list[str], str]]:
    bad = [
        ("missing", "{d}/missing.pt", r"weights file '.*missing.pt' does not exist"),
        ("directory", "{d}/dir.pt", r"weights file '.*dir.pt' is a directory"),
        ("fifo", "{d}/fifo.pt", r"'.*fifo.pt' is not a regular file"),
        ("symlink loop", "{d}/loop_a.pt", r"'.*loop_a.pt' is a loop of symbolic links"),
        ("dangling link", "{d}/dangling.pt", r"'.*dangling.pt' does not exist"),
        ("pickled object", "{d}/object.pt", r"holds pickled objects, which reluscope never"),
        ("pickled module", "{d}/module.pt", r"holds pickled objects, which reluscope never"),
        ("truncated", "{d}/truncated.pt", r"cannot read weights file '.*truncated.pt'"),
        ("text", "{d}/text.pt", r"cannot read weights file '.*text.pt'"),
        ("empty file", "{d}/empty.pt", r"cannot read weights file '.*empty.pt'"),
        ("nan", "{d}/nan.pt", r"'2.weight' holds 1 NaN value"),
        ("inf", "{d}/inf.pt", r"'0.bias' holds 1 inf value"),
        ("wrong shapes", "{d}/wide.pt", r"shape mismatches \[0.weight: file \(8, 2\)"),
        ("renamed keys", "{d}/renamed.pt", r"missing keys \['0.bias'"),
        ("non-tensor value", "{d}/mixed.pt", r"holds dict; expected a state dict of tensors"),
        ("empty dict", "{d}/empty_dict.pt", r"missing keys"),
    ]
    return [
        (f"{prefix[0]}-weights: {name}", [*prefix, "--weights", path], expect)
        for name, path, expect in bad
    ]


def data(prefix: list[str], index: int, labelled: bool) -> list[tuple[str, list[str], str]]:
    bad = [
        ("unknown set", "nosuchset", r"unknown data set 'nosuchset'"),
        ("bad option", "gaussian:colour=1", r"unknown option\(s\) \['colour'\]"),
        ("missing file", "{d}/missing.npz", r"data file '.*missing.npz' does not exist"),
        ("directory", "{d}/dir.npz", r"'.*dir.npz' is a directory"),
        ("fifo", "{d}/fifo.npy", r"'.*fifo.npy' is not a regular file"),
        ("symlink loop", "{d}/loop_a.npz", r"'.*loop_a.npz' is a loop of symbolic links"),
        ("object arrays npz", "{d}/objects.npz", r"holds pickled objects, which reluscope never"),
        ("object arrays npy", "{d}/objects.npy", r"holds pickled objects, which reluscope never"),
        ("truncated npz", "{d}/truncated.npz", r"cannot read data file '.*truncated.npz': Bad"),
        ("text npz", "{d}/text.npz", r"'.*text.npz': it is not a NumPy .npy/.npz file"),
        ("pickled pt", "{d}/data_pickle.pt", r"holds pickled objects"),
        ("pickled labels", "{d}/data_object.pt", r"holds pickled objects"),
        ("bool array", "{d}/bool.npy", r"dtype torch.bool; expected a non-empty real array"),
        ("complex array", "{d}/complex.npy", r"dtype torch.complex128"),
        ("1-d array", "{d}/flat.npy", r"shape \(5,\).*reshape 1-D data"),
        ("empty array", "{d}/empty.npy", r"shape \(0, 2\)"),
        ("nan array", "{d}/nan.npy", r"x contains NaN or inf"),
        ("wrong width", "{d}/wide_x.npz", r"points of shape \(3,\), but model .* \(2,\)"),
        ("mnist no dir", "mnist", r"mnist is read from a local directory"),
        ("truncated gz", "mnist", r"damaged or truncated gzip file"),
        ("mnist objects", "mnist", r"holds pickled objects"),
    ]
    if labelled:
        bad += [
            ("negative labels", "{d}/neg_labels.npz", r"non-negative integer class labels"),
            ("fractional labels", "{d}/frac_labels.npz", r"non-negative integer class labels"),
            ("short labels", "{d}/short_labels.npz", r"y has shape \(5,\); expected 20"),
            ("no labels", "uniform:n=20,d=2", r"has no labels"),
        ]
    cases = []
    for name, spec, expect in bad:
        args = list(prefix)
        args[index] = spec
        if name == "truncated gz":
            args += ["--data-dir", "{d}/mnist_gz"]
        elif name == "mnist objects":
            args += ["--data-dir", "{d}/mnist_obj"]
        cases.append((f"{prefix[0]}-data: {name}", args, expect))
    return cases


def options(prefix: list[str], table: list[tuple[str, list[str], str]]):
    return [
        (f"{prefix[0]}-option: {name}", [*prefix, *extra], expect) for name, extra, expect in table
    ]


MEASURE_OPTIONS = [
    ("unknown measure", ["--measures", "bogus"], r"unknown measure\(s\) \['bogus'\]"),
    ("neighborhood no radius", ["--measures", "neighborhood"], r"needs --radius"),
    ("sigma zero", ["--sigma", "0"], r"sigma must be a finite number > 0"),
    ("sigma negative", ["--sigma", "-1"], r"sigma must be a finite number > 0"),
    ("sigma nan", ["--sigma", "nan"], r"sigma must be a finite number > 0"),
    ("sigma inf", ["--sigma", "inf"], r"sigma must be a finite number > 0"),
    ("preset", ["--preset", "bogus"], r"--preset.*'bogus' is not one of 'theory', 'paper_code'"),
    ("method", ["--method", "bogus"], r"--method.*'bogus' is not one of 'exact', 'sketch'"),
    ("atol", ["--measures", "local-rank", "--atol", "-1"], r"atol"),
    ("tv output", ["--measures", "tv", "--output", "bogus"], r"output"),
    ("tv output index", ["--measures", "tv", "--output", "7"], r"output"),
    ("radius", ["--measures", "neighborhood", "--radius", "-1"], r"radius"),
    (
        "vertices",
        ["--measures", "neighborhood", "--radius", "1", "--n-vertices", "0"],
        r"n_vertices",
    ),
    ("dtype", ["--dtype", "float16"], r"--dtype must be one of \['float32', 'float64'\]"),
    ("device bogus", ["--device", "bogus"], r"device must be one of cpu, cuda, cuda:N or mps"),
    ("device meta", ["--device", "meta"], r"device must be one of .*got 'meta'"),
    ("device cuda", ["--device", "cuda:7"], r"device 'cuda:7' asked for"),
    ("n zero", ["--n", "0"], r"\bn\b|subsample|points"),
    (
        "out suffix pt",
        ["--out", "{d}/victim.pt"],
        r"--out .*victim.pt must end in .parquet or .csv",
    ),
    ("out suffix txt", ["--out", "{d}/a_file"], r"must end in .parquet or .csv"),
    ("out directory", ["--out", "{d}/out.parquet"], r"out.parquet is a directory"),
    ("out missing dir", ["--out", "{d}/nodir/r.parquet"], r"nodir does not exist"),
    ("out under a file", ["--out", "{d}/a_file/r.parquet"], r"a_file is not a directory"),
]
BOUNDS_OPTIONS = [
    ("rtol negative", ["--ranks", "numerical", "--rtol=-1"], r"rtol must be a finite number >= 0"),
    ("rtol nan", ["--ranks", "numerical", "--rtol", "nan"], r"rtol must be a finite number"),
    ("delta zero", ["--delta", "0"], r"delta must be a number in the open interval"),
    ("delta big", ["--delta", "1.5"], r"delta must be a number in the open interval"),
    ("margin negative", ["--margin", "-1"], r"margin must be a finite number > 0"),
    ("margin zero", ["--margin", "0"], r"margin must be a finite number > 0"),
    ("margin inf", ["--margin", "inf"], r"margin must be a finite number > 0"),
    (
        "ranks word",
        ["--ranks", "some"],
        r"--ranks must be 'exact', 'numerical' or comma-separated integers >= 0; got 'some'$",
    ),
    ("ranks negative", ["--ranks", "-1,2"], r"--ranks must be"),
    ("ranks count", ["--ranks", "1,1,1"], r"ranks"),
    ("bounds name", ["--bounds", "bogus"], r"bogus"),
    ("biases", ["--biases", "bogus"], r"biases must be one of"),
    ("mc draws", ["--mc-draws", "-1"], r"estimate_draws must be an integer >= 0"),
    ("out suffix", ["--out", "{d}/victim.pt"], r"must end in .parquet or .csv"),
    ("out png", ["--out", "{d}/x.png"], r"must end in .parquet or .csv"),
]
PLANE_OPTIONS = [
    ("out pt", ["--out", "{d}/victim.pt"], r"--out .*victim.pt must end in .png"),
    ("out csv", ["--out", "{d}/x.csv"], r"must end in .png"),
    ("out dir", ["--out", "{d}/out.png"], r"out.png is a directory"),
    ("out missing dir", ["--out", "{d}/nodir/r.png"], r"nodir does not exist"),
    ("extent short", ["--extent", "1,2"], r"extent"),
    ("extent words", ["--extent", "a,b,c,d"], r"--extent must be comma-separated numbers"),
    ("extent inverted", ["--extent", "1,-1,0,1"], r"extent"),
    ("extent nan", ["--extent", "nan,1,0,1"], r"extent"),
    (
        "color",
        ["--color-by", "bogus"],
        r"color_by must be one of \['random', 'output'\]; got 'bogus'",
    ),
    ("dtype", ["--dtype", "int8"], r"--dtype must be one of"),
    ("device", ["--device", "bogus"], r"device must be one of"),
    ("device cuda", ["--device", "cuda"], r"device 'cuda' asked for"),
    ("input shape zero", ["--input-shape", "0"], r"input_shape"),
    (
        "through two points",
        ["--through", "0,0;1,1"],
        r"plane_through needs exactly 3 points, got 2",
    ),
    ("through fifo", ["--through", "{d}/fifo.npy"], r"'.*fifo.npy' is not a regular file"),
    ("through loop", ["--through", "{d}/loop_a.npz"], r"loop of symbolic links"),
    ("through objects", ["--through", "{d}/objects.npz"], r"holds pickled objects"),
    ("through pickle", ["--through", "{d}/data_pickle.pt"], r"holds pickled objects"),
    (
        "through complex",
        ["--through", "{d}/points_complex.npy"],
        r"must be real numbers.*got dtype complex128",
    ),
    ("through bool", ["--through", "{d}/points_bool.npy"], r"must be real numbers.*got dtype bool"),
    ("through missing", ["--through", "{d}/none.npy"], r"'.*none.npy' does not exist"),
    ("origin dims", ["--origin", "1,2,3"], r"origin"),
    ("max regions zero", ["--max-regions", "0"], r"max_regions must be an integer >= 1"),
    ("memory budget nan", ["--memory-budget", "nan"], r"--memory-budget \(GiB\) must be"),
    ("memory budget negative", ["--memory-budget", "-1"], r"--memory-budget \(GiB\) must be"),
    ("u zero", ["--u", "0,0", "--v", "0,1"], r"\bu\b"),
]
LINE_OPTIONS = [
    ("out pt", ["--out", "{d}/victim.pt"], r"must end in .png"),
    ("same points", ["--end", "0,0"], r"start and end"),
    ("dims", ["--end", "1,1,1"], r"end"),
    ("words", ["--start", "a,b"], r"--start must be comma-separated numbers"),
    ("device", ["--device", "bogus"], r"device must be one of"),
    ("start file fifo", ["--start", "{d}/fifo.npy"], r"is not a regular file"),
]
RUN_OPTIONS = [
    ("set infinity", ["--set", "mean=Infinity"], r"mean: .*finite"),
    ("set nan", ["--set", "mean=NaN"], r"mean: .*finite"),
    ("set minus infinity", ["--set", "mean=-Infinity"], r"mean: .*finite"),
    ("set small n", ["--set", "n=1"], r"n: .*greater than or equal to 2"),
    ("set unknown key", ["--set", "nokey=1"], r"unknown config key\(s\) nokey"),
    ("set no value", ["--set", "=3"], r"expected --set key=value; got"),
    ("set no equals", ["--set", "n"], r"expected --set key=value; got"),
    ("set device", ["--set", "device=bogus"], r"device: .*expected cpu, cuda"),
    ("set device cuda", ["--set", "device=cuda"], r"device 'cuda' asked for"),
    ("set seed", ["--set", "seed=-1"], r"seed: .*greater than or equal to 0"),
    ("scale", ["--scale", "huge"], r"--scale.*'huge' is not one of 'quick', 'paper'"),
    (
        "out foreign dir",
        ["--out", "{d}/userdir"],
        r"holds files that reluscope did not write \(notes.txt\).*--force",
    ),
    ("out a file", ["--out", "{d}/a_file"], r"a_file is a file; expected a directory"),
    (
        "out other config",
        ["--out", "{d}/other_run"],
        r"holds a run of 'toy' with another config \(n: 50 there, 100 now\)",
    ),
    (
        "out damaged stamp",
        ["--out", "{d}/damaged_stamp"],
        r"config stamp '.*config.json' is damaged",
    ),
    ("out stamp is dir", ["--out", "{d}/stamp_is_dir"], r"config.json' is a directory"),
    (
        "out wrong stamp",
        ["--out", "{d}/wrong_stamp"],
        r"config.json' is damaged \(not an experiment.*delete it",
    ),
]
OTHER_CLI = [
    ("run: unknown experiment", ["run", "nosuch"], r"nosuch"),
    ("reproduce: unknown only", ["reproduce", "--only", "nosuch", "--out", "{d}/rep"], r"nosuch"),
    (
        "reproduce: workers",
        ["reproduce", "--only", TOY, "--workers", "-1", "--out", "{d}/rep"],
        r"workers must be an integer >= 1; got -1",
    ),
    (
        "reproduce: scale",
        ["reproduce", "--scale", "huge", "--out", "{d}/rep"],
        r"'huge' is not one of",
    ),
    (
        "reproduce: foreign out",
        ["reproduce", "--only", TOY, "--out", "{d}/userdir"],
        r"holds files that reluscope did not write",
    ),
    (
        "reproduce: a web site as out",
        ["reproduce", "--only", TOY, "--out", "{d}/webdir"],
        r"holds files that reluscope did not write \(config.json, index.html\)",
    ),
    (
        "run: an infinite train key",
        ["run", "weight-decay", "--set", "train.lr=Infinity", "--out", "{d}/wd"],
        r"train.lr: Input should be a finite number \(got inf\)",
    ),
    (
        "run: a NaN train key",
        ["run", "weight-decay", "--set", "train.weight_decay=NaN", "--out", "{d}/wd"],
        r"train.weight_decay: Input should be a finite number \(got nan\)",
    ),
    (
        "reproduce: out a file",
        ["reproduce", "--only", TOY, "--out", "{d}/a_file"],
        r"is a file; expected a directory",
    ),
    (
        "sweep: foreign out",
        ["sweep", TOY, "--grid", "n=10,20", "--out", "{d}/sweepout"],
        r"holds files that reluscope did not write",
    ),
    ("sweep: bad grid", ["sweep", TOY, "--grid", "n", "--out", "{d}/sw"], r"grid"),
    ("sweep: seeds", ["sweep", TOY, "--seeds", "0", "--out", "{d}/sw"], r"seeds"),
    (
        "sweep: backend",
        ["sweep", TOY, "--backend", "bogus", "--out", "{d}/sw"],
        r"backend must be one of \['local', 'ray'\]",
    ),
    ("sweep: infinity", ["sweep", TOY, "--set", "mean=Infinity", "--out", "{d}/sw"], r"finite"),
]

REPORT_AND_MORE = [
    ("report: missing dir", ["report", "{d}/nosuchdir"], r"nosuchdir is not a directory"),
    ("report: a file", ["report", "{d}/a_file"], r"a_file is not a directory"),
    ("report: foreign dir", ["report", "{d}/userdir"], r"no runs found in .*userdir"),
    (
        "report: unfinished run",
        ["report", "{d}/damaged_stamp"],
        r"damaged_stamp holds a run that has not finished \(a config.json but no outcome.json\)",
    ),
    ("report: truncated outcome", ["report", "{d}/cut_outcome"], r"cannot read .*outcome.json"),
    (
        "report: damaged predictions",
        ["report", "{d}/bad_predictions"],
        r"outcome.json is damaged: 'predictions' must be a list",
    ),
    ("experiments: bogus name", ["experiments", "bogus-name"], r"unknown experiment 'bogus-name'"),
    ("sweep: empty grid value", ["sweep", TOY, "--grid", "n=", "--out", "{d}/sw"], r"empty value"),
    (
        "report: out suffix pt",
        ["report", "{d}/other_run", "--out", "{d}/victim.pt"],
        r"--out .*victim.pt must end in .html",
    ),
    ("report: out png", ["report", "{d}/other_run", "--out", "{d}/x.png"], r"must end in .html"),
    ("report: out no suffix", ["report", "{d}/other_run", "--out", "{d}/a_file"], r"\.html"),
    ("report: out a directory", ["report", "{d}/other_run", "--out", "{d}/dir.html"], r"dir.html"),
    (
        "report: out missing dir",
        ["report", "{d}/other_run", "--out", "{d}/nodir/r.html"],
        r"nodir does not exist",
    ),
    (
        "report: figure up and out",
        ["report", "{d}/figure_up"],
        r"figure file in .*figure_up/outcome.json '../../etc/passwd' leads outside .*figure_up$",
    ),
    (
        "report: figure in the parent",
        ["report", "{d}/figure_parent"],
        r"figure file in .*outcome.json '../a_file' leads outside",
    ),
    (
        "report: figure absolute",
        ["report", "{d}/figure_abs"],
        r"figure file in .*outcome.json '/etc/passwd' is an absolute path; expected one inside",
    ),
    (
        "report: figure a link out",
        ["report", "{d}/figure_link"],
        r"'hist.png' leads outside .*figure_link \(a symbolic link to .*a_file\)",
    ),
    (
        "report: figure a number",
        ["report", "{d}/figure_number"],
        r"figure file in .*outcome.json must be a file name relative to .*; got 5",
    ),
    ("report: figure empty", ["report", "{d}/figure_empty"], r"must be a file name.*; got ''"),
    (
        "report: figures not a list",
        ["report", "{d}/figures_not_a_list"],
        r"outcome.json is damaged: 'figures' must be a list of objects with 'file' and 'caption'",
    ),
    (
        "report: outcome a link out",
        ["report", "{d}/outcome_link"],
        r"file 'outcome.json' leads outside .*outcome_link \(a symbolic link to .*other_run",
    ),
    (
        "report: error.txt a link out",
        ["report", "{d}/error_link"],
        r"file 'error.txt' leads outside .*error_link \(a symbolic link to .*a_file\)",
    ),
    (
        "report: provenance a link out",
        ["report", "{d}/provenance_link"],
        r"file 'provenance.json' leads outside .*provenance_link",
    ),
    (
        "measure: resnet without classes",
        ["measure", "--model", "resnet18:num_classes=0", "--data", "gaussian:n=4,d=2"],
        r"num_classes must be an integer >= 1; got 0",
    ),
    (
        "measure: resnet18 a billion times wider",
        ["measure", "--model", "resnet18:width_mult=1e9", "--data", "gaussian:n=4,d=2"],
        r"'resnet18:width_mult=1e9' \(its tensor sizes overflow: over 2\*\*63 bytes\) needs "
        r"about [\d,.]+ GiB of memory, but only [\d,.]+ GiB are available; choose smaller",
    ),
    (
        "measure: vgg11_bn a thousand times wider",
        ["measure", "--model", "vgg11_bn:width_mult=1e3", "--data", "gaussian:n=4,d=2"],
        r"\([\d,]+ parameters; one input of shape \(3, 224, 224\).* needs about [\d,.]+ GiB",
    ),
    (
        "measure: resnet18 on million-pixel-wide images",
        ["measure", "--model", "resnet18:image_size=1000000", "--data", "gaussian:n=4,d=2"],
        r"\(11,689,512 parameters; one input of shape \(3, 1000000, 1000000\) and its largest "
        r"layer output hold [\d,]+ values\) needs about [\d,.]+ GiB of memory",
    ),
    (
        "regions: mobilenet_v2 on huge images",
        ["regions", "plane", "--model", "mobilenet_v2:image_size=100000", "--out", "{d}/m.png"],
        r"'mobilenet_v2:image_size=100000' \([\d,]+ parameters; .* needs about [\d,.]+ GiB",
    ),
    (
        "measure: resnet of one pixel on 2-d data",
        ["measure", "--model", "resnet18:image_size=1", "--data", "gaussian:n=4,d=2"],
        r"expects inputs of shape \(3, 1, 1\)",
    ),
]

#: A mistyped name or choice, wherever one is typed, is refused with the closest valid one.
MISTYPED = [
    ("run: experiment", ["run", "lc-dynamic"], "lc-dynamics"),
    ("run: experiment case", ["run", "Weight-Decay"], "weight-decay"),
    ("experiments: name", ["experiments", "nueral-collapse"], "neural-collapse"),
    ("reproduce: only", ["reproduce", "--only", "weight-decy", "--out", "{d}/rep"], "weight-decay"),
    (
        "reproduce: one of only",
        ["reproduce", "--only", "lc-dynamics,grokkin", "--out", "{d}/rep"],
        "grokking",
    ),
    ("sweep: experiment", ["sweep", "init-scal", "--out", "{d}/sw"], "init-scale"),
    ("sweep: grid key", ["sweep", TOY, "--grid", "men=1,2", "--out", "{d}/sw"], "mean"),
    ("sweep: backend", ["sweep", TOY, "--backend", "rey", "--out", "{d}/sw"], "ray"),
    ("run: set key", ["run", TOY, "--set", "meen=1"], "meen' -> 'mean"),
    (
        "run: set nested key",
        ["run", "weight-decay", "--set", "train.lrr=1"],
        "train.lrr' -> 'train.lr",
    ),
    ("run: set choice", ["run", "weight-decay", "--set", "train.schedule=cosin"], "cosine"),
    ("run: set loss", ["run", "weight-decay", "--set", "train.loss=mes"], "mse"),
    ("run: set data", ["run", "lc-dynamics", "--set", "data=digit", "--out", "{d}/x"], "digits"),
    ("run: scale", ["run", TOY, "--scale", "quik"], "quick"),
    ("reproduce: scale", ["reproduce", "--scale", "papr", "--out", "{d}/rep"], "paper"),
    ("sweep: scale", ["sweep", TOY, "--scale", "paperr", "--out", "{d}/sw"], "paper"),
    ("measure: zoo model", [*M[:2], "mpl:2-4-1", *M[3:]], "mlp"),
    ("measure: zoo model alone", [*M[:2], "resnet19", *M[3:]], "resnet18"),
    ("measure: zoo keyword", [*M[:2], "mlp:2-4-1:activaton=relu", *M[3:]], "activation"),
    ("measure: data set", [*M[:4], "gausian:n=20,d=2"], "gaussian"),
    ("measure: data option", [*M[:4], "gaussian:nn=20,d=2"], "n"),
    ("measure: measure", [*M, "--measures", "lc,local_rank"], "local-rank"),
    ("measure: preset", [*M, "--preset", "theroy"], "theory"),
    ("measure: preset paper", [*M, "--preset", "paper-code"], "paper_code"),
    ("measure: method", [*M, "--method", "sketsh"], "sketch"),
    ("measure: dtype", [*M, "--dtype", "float46"], "float64"),
    ("measure: device", [*M, "--device", "cpuu"], "cpu"),
    ("measure: tv output", [*M, "--measures", "tv", "--output", "logit"], "logits"),
    ("bounds: bound", [*B, "--bounds", "lowrank"], "low-rank"),
    ("bounds: ranks", [*B, "--ranks", "exat"], "exact"),
    ("bounds: biases", [*B, "--biases", "absorbb"], "absorb"),
    ("bounds: zoo model", [*B[:2], "mlpp:2-4-2", *B[3:]], "mlp"),
    ("plane: colour", [*P, "--color-by", "outptu"], "output"),
    ("plane: device", [*P, "--device", "cdua:0"], "cuda:0"),
    ("line: zoo model", [*L[:3], "mpl:2-4-1", *L[4:]], "mlp"),
]

CLI_CASES = (
    models(P, 3)
    + models(M, 2)
    + models(B, 2)[:12]
    + weights(P)
    + weights(M)
    + data(M, 4, labelled=False)
    + data(B, 4, labelled=True)
    + options(M, MEASURE_OPTIONS)
    + options(B, BOUNDS_OPTIONS)
    + options(P, PLANE_OPTIONS)
    + options(L, LINE_OPTIONS)
    + options(R, RUN_OPTIONS)
    + OTHER_CLI
    + REPORT_AND_MORE
    + [
        (f"did you mean, {name}", args, rf"did you mean '{re.escape(hint)}'")
        for name, args, hint in MISTYPED
    ]
)


@pytest.mark.parametrize(
    ("args", "expect"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_case(hostile: Path, args: list[str], expect: str):
    before = snapshot(hostile)
    argv = [a.replace("{d}", str(hostile)) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    line = cli_error(result.output)
    assert line.startswith("error: "), line
    assert re.search(expect, line), line
    assert snapshot(hostile) == before


# --------------------------------------------------------------------------- API cases
def _x(n: int = 8, d: int = 2) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def _model(name: str) -> nn.Module:
    import hostile_models

    return getattr(hostile_models, name)()


def _nan_pwlnet():
    net = rs.trace(mlp([2, 4, 1], seed=0), (2,))
    net.nodes[-1].op.weight[0, 0] = math.nan
    return net


BROKEN = {
    "nan_weight": r"'2.weight' holds 1 NaN",
    "inf_bias": r"'0.bias' holds 1 inf",
    "nan_running_var": r"'1.running_var' holds 1 NaN",
    "on_meta": r"is on the meta device",
    "in_half": r"is float16; expected float32 or float64",
    "in_bfloat16": r"is bfloat16",
    "zero_width": r"has shape \(0, 2\), a layer of zero width",
    "overflowing": r"returns NaN or inf on random inputs",
}
CALLS: dict[str, Callable] = {
    "trace": lambda m: rs.trace(m, (2,)),
    "local_complexity": lambda m: rs.local_complexity(m, _x()),
    "local_rank": lambda m: rs.local_rank(m, _x()),
    "total_variation": lambda m: rs.total_variation(m, _x()),
    "neighborhood": lambda m: rs.neighborhood_complexity(m, _x(), radius=0.1, n_vertices=4),
    "plane": lambda m: rs.plane(m),
    "bounds": lambda m: compare(m, _x(), torch.zeros(8, dtype=torch.long), margin=1.0),
    "weight_ranks": lambda m: rs.weight_ranks(m),
    "neural_collapse": lambda m: rs.neural_collapse(m, _x(), labels=torch.arange(8) % 2),
}
#: what a call does not refuse: the bounds' MLPs have no BatchNorm; weight ranks are computed
#: in float64 from any floating dtype and never evaluate the network
ACCEPTED = {
    ("bounds", "nan_running_var"),
    ("weight_ranks", "in_half"),
    ("weight_ranks", "in_bfloat16"),
    ("weight_ranks", "overflowing"),
}
API_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    (f"{call} of {model}", (lambda d, c=call, m=model: CALLS[c](_model(m))), expect)
    for call in CALLS
    for model, expect in BROKEN.items()
    if (call, model) not in ACCEPTED
]


def _overflowing_tv(d: Path):
    """TV of a traced network whose float32 outputs overflow to inf on the data."""
    model = mlp([2, 4, 1], seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    net = rs.trace(model, (2,), check=False)
    return rs.total_variation(net, torch.ones(3, 2))


def _labels(n: int = 8) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


def _toy_data() -> Dataset:
    return load_data("gaussian:n=10,d=2")


API_CASES += [
    ("trace of a dict", lambda d: rs.trace({"w": 1}, (2,)), r"must be a torch.nn.Module; got dict"),
    ("trace of a lambda", lambda d: rs.trace(lambda x: x, (2,)), r"got function"),
    ("trace of None", lambda d: rs.trace(None, (2,)), r"got NoneType"),
    ("measure of a dict", lambda d: rs.local_rank({"w": 1}, _x(), input_shape=(2,)), r"got dict"),
    (
        "bounds of a mutated PWLNet",
        lambda d: mlp_weights(_nan_pwlnet(), (2,)),
        r"'2.weight' holds 1 NaN",
    ),
    (
        "lc on bool inputs",
        lambda d: rs.local_complexity(mlp([2, 4, 1]), torch.ones(4, 2, dtype=torch.bool)),
        r"inputs must be real numbers \(a floating or integer tensor\); got dtype bool",
    ),
    (
        "rank on complex inputs",
        lambda d: rs.local_rank(mlp([2, 4, 1]), torch.ones(4, 2, dtype=torch.complex64)),
        r"inputs must be real numbers.*; got dtype complex64",
    ),
    (
        "tv on complex inputs",
        lambda d: rs.total_variation(mlp([2, 4, 1]), torch.ones(4, 2) * 1j),
        r"inputs must be real numbers.*; got dtype complex64",
    ),
    (
        "neighborhood on bool inputs",
        lambda d: rs.neighborhood_complexity(
            mlp([2, 4, 1]), torch.ones(4, 2) > 0, radius=0.1, n_vertices=4
        ),
        r"inputs must be real numbers.*; got dtype bool",
    ),
    (
        "lc on nan inputs",
        lambda d: rs.local_complexity(mlp([2, 4, 1]), torch.full((3, 2), math.nan)),
        r"inputs contain NaN or inf",
    ),
    ("lc on no inputs", lambda d: rs.local_complexity(mlp([2, 4, 1]), torch.ones(0, 2)), r"empty"),
    ("tv of inf outputs", _overflowing_tv, r"returns NaN or inf at 3 of 3 inputs"),
    (
        "sketch with absurd probes",
        lambda d: rs.local_complexity(mlp([2, 4, 1]), _x(), method="sketch", probes=10**15),
        r"the sketch with probes=10+ needs about [\d,.]+ GiB",
    ),
    (
        "bounds rtol",
        lambda d: compare(mlp([2, 4, 2]), _x(), _labels(), margin=1.0, ranks="numerical", rtol=-1),
        r"rtol must be a finite number >= 0",
    ),
    (
        "nan weights file into a model",
        lambda d: load_model(GOOD, d / "nan.pt"),
        r"'2.weight' holds 1 NaN",
    ),
    (
        "load_data of object arrays",
        lambda d: load_data(d / "objects.npz"),
        r"holds pickled objects",
    ),
    ("load_data of a fifo", lambda d: load_data(d / "fifo.npz"), r"not a regular file"),
    ("load_data of a loop", lambda d: load_data(d / "loop_a.npz"), r"symbolic links"),
    (
        "mnist with a truncated gz",
        lambda d: load_data("mnist", data_dir=d / "mnist_gz"),
        r"truncated gzip",
    ),
    (
        "experiment on a missing cuda",
        lambda d: run_experiment(TOY, overrides={"device": "cuda:3"}, run_dir=d / "x"),
        r"device 'cuda:3' asked for",
    ),
    (
        "experiment with an infinite float",
        lambda d: run_experiment(TOY, overrides={"mean": math.inf}, run_dir=d / "x"),
        r"mean: Input should be a finite number",
    ),
    (
        "train config with inf",
        lambda d: Trainer(mlp([2, 4, 2]), _toy_data(), None, {"lr": math.inf}),
        r"finite number",
    ),
    (
        "trainer of a dict",
        lambda d: Trainer({"w": 1}, _toy_data(), None, {"steps": 1}),
        r"model must be a torch.nn.Module; got dict",
    ),
    (
        "trainer on a bogus device",
        lambda d: Trainer(mlp([2, 4, 2]), _toy_data(), None, {"device": "tpu"}),
        r"device must be one of",
    ),
    (
        "experiment into a foreign directory",
        lambda d: run_experiment(TOY, run_dir=d / "userdir"),
        r"holds files that reluscope did not write",
    ),
    (
        "reproduce into a foreign directory",
        lambda d: reproduce([TOY], out=d / "userdir"),
        r"holds files that reluscope did not write",
    ),
]


def _nan_prelu() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 4), nn.PReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[1].weight.fill_(math.nan)
    return model


def _resnet_nan_running_var() -> nn.Module:
    model, _ = load_model("resnet18:num_classes=2,image_size=8,width_mult=0.125")
    with torch.no_grad():
        model.bn1.running_var[0] = math.nan
    return model.eval()


def _meters() -> tuple:
    from reluscope.measures.local_rank import LocalRankMeter

    net = rs.trace(mlp([2, 4, 1], seed=0), (2,))
    return LocalRankMeter(net), LocalRankMeter(net, atol=0.5)


API_CASES += [
    ("trace of a NaN PReLU", lambda d: rs.trace(_nan_prelu(), (2,)), r"'1.weight' holds 1 NaN"),
    (
        "lc of a NaN PReLU",
        lambda d: rs.local_complexity(_nan_prelu(), _x()),
        r"'1.weight' holds 1 NaN",
    ),
    (
        "lc of a resnet with a NaN running_var",
        lambda d: rs.local_complexity(_resnet_nan_running_var(), torch.randn(2, 3, 8, 8)),
        r"\(ResNet\): 'bn1.running_var' holds 1 NaN",
    ),
    (
        "merge of meters with other options",
        lambda d: _meters()[0].merge(_meters()[1]),
        r"cannot merge meters with different options: \{'atol'",
    ),
    (
        "merge with a non-meter",
        lambda d: _meters()[0].merge(5),
        r"LocalRankMeter.merge needs another LocalRankMeter; got int",
    ),
    ("plane with max_regions < 1", lambda d: rs.plane(mlp([2, 4, 1]), max_regions=-3), r"max_"),
    (
        "plane with a tiny memory budget",
        lambda d: rs.plane(mlp([2, 4, 1]), memory_budget=0),
        r"memory_budget \(bytes\) must be an integer >= 1048576; got 0",
    ),
]


DTYPE_CALLS: dict[str, Callable] = {
    "local_complexity": lambda dt: rs.local_complexity(mlp([2, 4, 1]), _x(), dtype=dt),
    "local_rank": lambda dt: rs.local_rank(mlp([2, 4, 1]), _x(), dtype=dt),
    "total_variation": lambda dt: rs.total_variation(mlp([2, 4, 1]), _x(), dtype=dt),
    "neighborhood": lambda dt: rs.neighborhood_complexity(
        mlp([2, 4, 1]), _x(), radius=0.1, n_vertices=4, dtype=dt
    ),
    "plane": lambda dt: rs.plane(mlp([2, 4, 1]), dtype=dt),
    "line": lambda dt: rs.line(mlp([2, 4, 1]), [0, 0], [1, 1], dtype=dt),
}
API_CASES += [
    (
        f"{call} in {dtype}",
        (lambda d, c=call, dt=dtype: DTYPE_CALLS[c](dt)),
        r"dtype must be torch.float32 or torch.float64",
    )
    for call in DTYPE_CALLS
    for dtype in (torch.float16, torch.bfloat16, "float32")
]
API_CASES += [
    (
        "line through complex points",
        lambda d: rs.line(mlp([2, 4, 1]), torch.tensor([0, 1j]), [1, 1]),
        r"start must be real numbers.*got dtype complex64",
    ),
    (
        "plane with a bool origin",
        lambda d: rs.plane(mlp([2, 4, 1]), origin=torch.tensor([True, False])),
        r"origin must be real numbers.*got dtype bool",
    ),
]


@pytest.mark.parametrize(
    ("call", "expect"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_api_case(hostile: Path, call, expect: str):
    before = snapshot(hostile)
    with pytest.raises(InputError) as info:
        call(hostile)
    message = str(info.value)
    assert "\n" not in message.strip(), message
    assert re.search(expect, message), message
    assert snapshot(hostile) == before
    assert not (hostile / "x").exists()


def test_the_corpus_has_at_least_150_cases():
    assert len(CLI_CASES) + len(API_CASES) >= 150


def test_the_corpus_counts():
    """The size of the corpus, all tables together (CLI, API, missing tensorboard, Lightning)."""
    extras = len(TENSORBOARD_CLI) + len(TENSORBOARD_API) + len(LIGHTNING_CASES)
    assert len(CLI_CASES) + len(API_CASES) + extras >= 330


# --------------------------------------------------------------------------- missing extras
NO_TENSORBOARD = r"TensorBoard logging .* needs the tensorboard package, which is not installed"
TENSORBOARD_CLI = [
    ("run", ["run", TOY, "--tensorboard", "--out", "{d}/tb"]),
    ("run into a finished run", ["run", TOY, "--tensorboard", "--out", "{d}/other_run"]),
    ("sweep", ["sweep", TOY, "--tensorboard", "--grid", "n=10,20", "--out", "{d}/tb"]),
    ("sweep of seeds", ["sweep", TOY, "--tensorboard", "--seeds", "2", "--out", "{d}/tb"]),
]
TENSORBOARD_API: list[tuple[str, Callable[[Path], object]]] = [
    ("run_experiment", lambda d: run_experiment(TOY, run_dir=d / "x", tensorboard=True)),
    (
        "Trainer",
        lambda d: Trainer(
            mlp([2, 4, 2]), _toy_data(), None, {"steps": 1}, run_dir=d / "x", tensorboard=True
        ),
    ),
    ("Trainer in a tensorboard_logging block", lambda d: _trainer_logging_to_tensorboard(d)),
]


def _trainer_logging_to_tensorboard(d: Path) -> Trainer:
    from reluscope.train.display import tensorboard_logging

    with tensorboard_logging(True):
        return Trainer(mlp([2, 4, 2]), _toy_data(), None, {"steps": 1}, run_dir=d / "x")


@pytest.fixture
def no_tensorboard(monkeypatch):
    """The environment of a user without the tensorboard package: importing it fails."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


@pytest.mark.usefixtures("no_tensorboard")
@pytest.mark.parametrize(
    "args", [c[1] for c in TENSORBOARD_CLI], ids=[c[0] for c in TENSORBOARD_CLI]
)
def test_tensorboard_option_without_tensorboard(hostile: Path, args: list[str]):
    before = snapshot(hostile)
    result = runner.invoke(app, [a.replace("{d}", str(hostile)) for a in args])
    assert result.exit_code == 2, result.output
    assert re.search(NO_TENSORBOARD, one_line(result.output)), result.output
    assert snapshot(hostile) == before
    assert not (hostile / "tb").exists()


@pytest.mark.usefixtures("no_tensorboard")
@pytest.mark.parametrize(
    "call", [c[1] for c in TENSORBOARD_API], ids=[c[0] for c in TENSORBOARD_API]
)
def test_tensorboard_logging_without_tensorboard(hostile: Path, call):
    before = snapshot(hostile)
    with pytest.raises(InputError, match=NO_TENSORBOARD) as info:
        call(hostile)
    assert "\n" not in str(info.value)
    assert snapshot(hostile) == before
    assert not (hostile / "x").exists()


def _callback(probe_list: object = "default", train: object = "default", **options) -> Callable:
    """A call building a Lightning ProbeCallback with these arguments (defaults: one probe,
    a small labelled training set)."""

    def build():
        from reluscope.train import probes
        from reluscope.train.lightning import ProbeCallback

        x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
        chosen = [probes.accuracy_loss()] if probe_list == "default" else probe_list
        data = (x, torch.arange(12) % 3) if train == "default" else train
        return ProbeCallback(chosen, data, **options)

    return build


LIGHTNING_CASES = [
    ("probes None", _callback(None), r"probes must be a list of Probe objects; got None"),
    ("probes a string", _callback("accuracy"), r"probes must be a list of Probe objects"),
    ("probes of strings", _callback(["accuracy"]), r"probes must be Probe objects; got str"),
    ("no training set", _callback(train=None), r"the training set must be .*; got NoneType"),
    ("training set a name", _callback(train="digits"), r"the training set must be .*; got str"),
    ("test set a number", _callback(test=5), r"the test set must be .*; got int"),
    ("labels too short", _callback(train=(torch.ones(12, 4), torch.zeros(3))), r"labels"),
    ("seed negative", _callback(seed=-1), r"seed must be an integer >= 0; got -1"),
    ("seed a word", _callback(seed="a"), r"seed must be an integer >= 0; got 'a'"),
    ("loss mistyped", _callback(loss="mse2"), r"loss must be one of .*; did you mean 'mse'\?"),
    ("schedule a list", _callback(schedule=[1, 2]), r"schedule must be a Schedule"),
    ("run name a number", _callback(run_name=3), r"run_name must be a non-empty string; got 3"),
    ("run name empty", _callback(run_name=""), r"run_name must be a non-empty string; got ''"),
    ("log a word", _callback(log="yes"), r"log must be True or False; got 'yes'"),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("call", "expect"), [c[1:] for c in LIGHTNING_CASES], ids=[c[0] for c in LIGHTNING_CASES]
)
def test_lightning_callback_with_bad_options(call, expect: str):
    pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message.strip(), message
    assert re.search(expect, message), message


# --------------------------------------------------------------------------- faults
def test_an_internal_error_is_one_line_and_its_traceback_needs_debug(monkeypatch):
    command = sys.modules["reluscope.cli.measure"]  # the package exports a function of that name

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug on purpose")

    monkeypatch.setattr(command, "load_model", broken)
    args = ["measure", "--model", GOOD, "--data", "gaussian:n=5,d=2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    line = one_line(result.output)
    assert line.startswith("internal error: ZeroDivisionError: a bug on purpose; please report")
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == 1
    assert "Traceback" in debug.output and "a bug on purpose" in debug.output


def test_an_eof_error_is_not_reported_as_aborted(monkeypatch):
    def truncated(*args, **kwargs):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr("reluscope.data.load_data", truncated)
    result = runner.invoke(app, ["measure", "--model", GOOD, "--data", "gaussian:n=5,d=2"])
    assert result.exit_code == 1
    assert "Aborted" not in result.output
    assert one_line(result.output).startswith("internal error: EOFError: Compressed file")


def test_atomic_write_on_a_read_only_file_system_reports_the_real_error(tmp_path, monkeypatch):
    from reluscope.io import atomic_write

    target = tmp_path / "records.parquet"
    target.write_bytes(b"old")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(InputError, match=r"cannot write .*records.parquet: Read-only file system"):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    monkeypatch.undo()
    assert target.read_bytes() == b"old"


def test_a_short_write_under_a_file_size_limit_is_one_clear_error(tmp_path):
    script = (
        "import resource, torch\n"
        "from reluscope.io import atomic_write\n"
        "from reluscope.errors import InputError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
        "try:\n"
        f"    atomic_write({str(tmp_path / 'big.pt')!r}, lambda t: torch.save(torch.ones(10**6), t))\n"
        "except InputError as exc:\n"
        "    print('InputError:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(rs.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"InputError: cannot write .*big.pt: .+\n", done.stdout), done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left


def test_checkpoint_and_data_loaders_explain_refused_pickles(hostile: Path):
    from reluscope.train.checkpoint import load_checkpoint

    with pytest.raises(InputError, match=r"holds pickled objects, which reluscope never loads"):
        load_checkpoint(hostile / "object.pt", torch.device("cpu"))
    with pytest.raises(InputError) as info:
        load_model(GOOD, hostile / "module.pt")
    assert "weights_only=False" not in str(info.value)


def test_a_locked_run_directory_refuses_a_second_writer(tmp_path):
    from reluscope.rundir import locked

    with locked(tmp_path / "run"):
        with pytest.raises(InputError, match=r"is being written by another process \(pid \d+\)"):
            run_experiment(TOY, run_dir=tmp_path / "run", progress=False)
    summary = run_experiment(TOY, run_dir=tmp_path / "run", progress=False)  # the lock ended
    assert not summary.reused


def test_the_stamp_is_written_only_once_the_run_starts(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="toy failure"):
        run_experiment(TOY, overrides={"fail": True}, run_dir=run_dir, progress=False)
    assert not (run_dir / "config.json").exists()
    summary = run_experiment(TOY, overrides={"n": 30}, run_dir=run_dir, progress=False)
    assert summary.config.n == 30 and (run_dir / "config.json").exists()


def test_an_infinite_override_is_refused_before_anything_is_written(tmp_path):
    result = runner.invoke(
        app, ["run", TOY, "--set", "mean=Infinity", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert re.search(r"mean: Input should be a finite number", one_line(result.output))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "damage", ["truncated outcome", "truncated records", "no outcome", "figure outside"]
)
def test_a_damaged_finished_run_is_computed_again(tmp_path, damage: str):
    run_dir = tmp_path / "run"
    first = run_experiment(TOY, run_dir=run_dir, progress=False)
    if damage == "truncated outcome":
        text = (run_dir / "outcome.json").read_text()
        (run_dir / "outcome.json").write_text(text[: len(text) // 2])
    elif damage == "figure outside":
        outcome = json.loads((run_dir / "outcome.json").read_text())
        outcome["figures"][0]["file"] = "../../etc/passwd"
        (run_dir / "outcome.json").write_text(json.dumps(outcome))
    elif damage == "truncated records":
        raw = (run_dir / "records.parquet").read_bytes()
        (run_dir / "records.parquet").write_bytes(raw[: len(raw) // 2])
    else:
        (run_dir / "outcome.json").unlink()
    again = run_experiment(TOY, run_dir=run_dir, progress=False)
    assert not again.reused
    assert again.outcome.numbers == first.outcome.numbers
    assert run_experiment(TOY, run_dir=run_dir, progress=False).reused


def test_a_directory_in_place_of_the_outcome_is_refused_by_name(tmp_path):
    run_dir = tmp_path / "run"
    run_experiment(TOY, run_dir=run_dir, progress=False)
    (run_dir / "outcome.json").unlink()
    (run_dir / "outcome.json").mkdir()
    with pytest.raises(
        InputError, match=r"cannot write .*outcome.json: a directory is in its place"
    ):
        run_experiment(TOY, run_dir=run_dir, progress=False)


def test_force_writes_into_a_foreign_directory_and_keeps_its_files(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    args = ["run", TOY, "--out", str(user)]
    assert runner.invoke(app, args).exit_code == 2
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert (user / "notes.txt").read_text() == "keep me" and (user / "outcome.json").exists()
    assert runner.invoke(app, args).exit_code == 0  # now it holds our stamp


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_end_with_their_parent_after_kill_9(tmp_path):
    """A sweep's worker process stops writing into its run directory when its parent is killed
    with SIGKILL (which no handler of the parent sees)."""
    pid_file, run_dir = tmp_path / "worker.pid", tmp_path / "run"
    tests = Path(__file__).parent
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "from reluscope.sweep.local import run_local\n"
        "from reluscope.sweep.task import RunTask\n"
        f"task = RunTask('hostile_models:SLOW', 'quick', {{'pid_file': {str(pid_file)!r}}}, "
        f"{str(run_dir)!r}, 'slow')\n"
        "for result in run_local([task], 1):\n"
        "    print(result)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(rs.__file__).parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()):
            assert parent.poll() is None, "the sweep ended before its worker started"
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        assert _alive(worker)
    finally:
        parent.kill()  # SIGKILL
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its parent"
    beat = (run_dir / "heartbeat.txt").read_text()
    time.sleep(0.5)
    assert (run_dir / "heartbeat.txt").read_text() == beat


def test_directories_written_by_reluscope_are_recognised(tmp_path):
    from reluscope.rundir import is_ours

    report = tmp_path / "report"  # a report written before reluscope marked its directories
    run_experiment(TOY, run_dir=report / "toy", progress=False)
    (report / "index.html").write_text("<html></html>")
    (report / "failed").mkdir()
    (report / "failed" / "error.txt").write_text("Traceback ...")
    assert is_ours(report, collection=True)
    assert is_ours(report / "toy") and is_ours(report / "failed")
    assert not is_ours(report)  # a report is not a run directory
    (report / "toy" / "notes.txt").write_text("mine")
    assert is_ours(report, collection=True)  # the run has its stamp
    (report / "notes.txt").write_text("mine")
    assert not is_ours(report, collection=True)


def test_a_run_that_failed_before_writing_does_not_block_the_corrected_command(tmp_path):
    """The paper scale without --data-dir fails before the run writes anything: the next
    command, with another config, gets the same error, not "holds a run of another config"."""
    out = str(tmp_path / "lc")
    first = runner.invoke(app, ["run", "lc-dynamics", "--scale", "paper", "--out", out])
    assert first.exit_code == 2
    assert "pass --data-dir DIR" in one_line(first.output)
    assert not (tmp_path / "lc").exists()  # the run directory it created is gone again
    again = ["run", "lc-dynamics", "--scale", "paper", "--set", "seed=1", "--out", out]
    second = runner.invoke(app, again)
    assert second.exit_code == 2
    assert "pass --data-dir DIR" in one_line(second.output)
