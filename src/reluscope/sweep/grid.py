"""A sweep's grid: ``key=v1,v2,...`` strings read like ``--set`` values, and their expansion into
runs (every combination of the grid values, times seeds 0..K-1), each with a readable,
file-system-safe run id."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from reluscope.errors import InputError
from reluscope.validation import check_int
from reluscope.values import parse_value, split_assignment, split_values

UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
MAX_RUN_ID = 100


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its grid values with the seed last (``values``), every config
    override of the run (the fixed ones and ``values``), and ``run_id``, the name of its
    directory."""

    run_id: str
    values: dict[str, Any]
    overrides: dict[str, Any]


def parse_grid(pairs: list[str]) -> dict[str, list[Any]]:
    """``["lr=1e-3,1e-2", "widths=[64,64],[128]"]`` -> ``{"lr": [0.001, 0.01], "widths":
    [[64, 64], [128]]}``. Values are split at commas outside brackets and quotes, and each is
    read like a ``--set`` value (the grammar of :mod:`reluscope.values`); keys may be dotted
    (``train.lr=0.01,0.1``)."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, text = split_assignment(pair, "--grid key=v1,v2,...")
        if key in grid:
            raise InputError(
                f"--grid {key} is given twice; give all its values once: --grid {key}=v1,v2,..."
            )
        pieces = split_values(text)
        if not all(pieces):
            raise InputError(f"--grid {pair!r} has an empty value; expected key=v1,v2,...")
        grid[key] = [parse_value(piece) for piece in pieces]
    return grid


def expand_grid(
    grid: dict[str, list[Any]], seeds: int, overrides: dict[str, Any] | None = None
) -> list[SweepPoint]:
    """Every combination of the ``grid`` values (the last key varying fastest), each with seeds
    ``0..seeds-1`` (innermost), and the fixed ``overrides`` added to every run. The seed is set
    by ``seeds`` only: a ``seed`` grid key or override is an InputError, and so are an empty or
    repeated value list and a key given both in the grid and in ``overrides``."""
    check_int("seeds", seeds, minimum=1)
    fixed = dict(overrides or {})
    if "seed" in grid or "seed" in fixed:
        raise InputError(
            "seed cannot be a grid key or a fixed override: --seeds K runs seeds 0..K-1 "
            "at every grid point"
        )
    for key, values in grid.items():
        if key in fixed:
            raise InputError(f"{key} is both a grid key and a fixed override; give it once")
        if not isinstance(values, list | tuple) or not values:
            raise InputError(f"grid key {key} needs a non-empty list of values, got {values!r}")
        texts = [_canonical(v) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise InputError(f"grid key {key} repeats the value(s) {', '.join(repeated)}")
    keys = list(grid)
    points = []
    for combination in itertools.product(*(grid[k] for k in keys)):
        for seed in range(seeds):
            chosen = {**dict(zip(keys, combination, strict=True)), "seed": seed}
            points.append(SweepPoint(run_id(chosen), chosen, {**fixed, **chosen}))
    ids = [p.run_id for p in points]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise InputError(
            f"different grid values give the same run directory {clashes[0]!r}; "
            'write each value of a key in one way (e.g. not both 1 and "1")'
        )
    return points


def run_id(values: dict[str, Any]) -> str:
    """The directory name of a run: ``key=value`` pairs joined by commas, e.g.
    ``lr=0.001,wd=0.01,seed=1``. Characters other than letters, digits and ``._=,+-`` become
    ``_`` and a short hash of the values is then appended (so that the name stays unique); a
    name longer than 100 characters is replaced by ``run-`` and a hash."""
    text = ",".join(f"{k}={v if isinstance(v, str) else _canonical(v)}" for k, v in values.items())
    safe = UNSAFE.sub("_", text)
    digest = hashlib.sha1(_canonical(values).encode()).hexdigest()
    if safe != text:
        safe = f"{safe}-{digest[:6]}"
    return safe if len(safe) <= MAX_RUN_ID else f"run-{digest[:12]}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
