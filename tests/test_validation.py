"""The shared validation module: one message template, declared constraints."""

from __future__ import annotations

import math

import pytest
import torch

from reluscope import validation as v
from reluscope.errors import InputError


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: v.check_int("n", 0, minimum=1), "n must be an integer >= 1; got 0"),
        (lambda: v.check_int("n", True), "n must be an integer; got True"),
        (lambda: v.check_int("n", 2.0), "n must be an integer; got 2.0"),
        (
            lambda: v.check_number("sigma", 0.0, minimum=0, strict=True),
            "sigma must be a finite number > 0; got 0.0",
        ),
        (
            lambda: v.check_number("tol", math.nan, minimum=0, allow_none=True),
            "tol must be a finite number >= 0 or None; got nan",
        ),
        (lambda: v.check_number("p", 2, maximum=1), "p must be a finite number <= 1; got 2"),
        (lambda: v.check_number("x", "1"), "x must be a finite number; got '1'"),
        (lambda: v.check_bool("flag", 1), "flag must be True or False; got 1"),
        (
            lambda: v.check_choice("method", "svd", ("auto", "fft")),
            "method must be one of ['auto', 'fft']; got 'svd'",
        ),
        (
            lambda: v.check_float_dtype("dtype", torch.int64),
            "dtype must be torch.float32 or torch.float64 or None; got torch.int64",
        ),
        (
            lambda: v.check_shape("input_shape", (1, 0)),
            "input_shape must be a non-empty sequence of positive integers, e.g. (1, 28, 28); "
            "got (1, 0)",
        ),
        (
            lambda: v.check_names("layers", ["9"], ["1", "3"], "the network's sites"),
            "layers must be a non-empty list of the network's sites ['1', '3']; got ['9']",
        ),
        (
            lambda: v.check_labels("labels", torch.tensor([0, 3]), 2, 3),
            "labels must be class indices in [0, 3) for a network with 3 classes; "
            "got values from 0 to 3",
        ),
        (
            lambda: v.check_labels("labels", torch.tensor([0.0, 1.0]), 2, 3),
            "labels must be integer class indices (convert with .long()); got Tensor of shape (2,) "
            "and dtype torch.float32",
        ),
        (
            lambda: v.check_labels("y", [1, 1], 2, 3, min_distinct=2),
            "y must be of at least 2 distinct classes; got 1",
        ),
        (
            lambda: v.check_finite("x", torch.tensor([1.0, math.inf])),
            "x must be finite (no NaN or inf); got 1 non-finite entries in Tensor of shape (2,) "
            "and dtype torch.float32",
        ),
    ],
)
def test_messages_follow_one_template(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert str(info.value) == message


def test_checks_return_canonical_values():
    assert v.check_int("n", 3, minimum=1) == 3
    assert v.check_int("n", None, allow_none=True) is None
    assert v.check_number("s", 2) == 2.0 and isinstance(v.check_number("s", 2), float)
    assert v.check_number("s", math.inf, finite=False) == math.inf
    assert v.check_shape("shape", [1, 28, 28]) == (1, 28, 28)
    assert v.check_names("layers", "1", ["1", "3"]) == ["1"]
    assert v.check_labels("y", [2, 0], 2, 3).dtype == torch.int64
    assert v.dtype_name(torch.float64) == "float64"


def test_did_you_mean_names_the_closest_choice_or_nothing():
    from enum import Enum

    from reluscope.errors import did_you_mean

    class Kernel(Enum):
        theory = "theory"
        paper_code = "paper_code"

    assert did_you_mean("lc-dynamic", ["lc-dynamics", "weight-decay"]) == (
        "; did you mean 'lc-dynamics'?"
    )
    assert did_you_mean("local_rank", ["lc", "local-rank"]) == "; did you mean 'local-rank'?"
    assert did_you_mean("THEORY", list(Kernel)) == "; did you mean 'theory'?"
    assert did_you_mean("paper-code", list(Kernel)) == "; did you mean 'paper_code'?"
    assert did_you_mean("bogus", ["random", "output"]) == ""
    assert did_you_mean(3, ["3"]) == "" and did_you_mean("", ["a"]) == ""
    with pytest.raises(InputError, match=r"got 'outptu'; did you mean 'output'\?$"):
        v.check_choice("color_by", "outptu", ["random", "output"])
    with pytest.raises(InputError, match=r"got \['lc', 'rnak'\]; did you mean 'rank'\?$"):
        v.check_names("measures", ["lc", "rnak"], ["lc", "rank"])
