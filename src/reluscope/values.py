"""The one grammar of values written as text: ``--set key=value``, ``--grid key=v1,v2,...``,
and the ``key=value`` options of model and data specs (``mlp:2-64-1:slope=0.2``).

A value is read as the first of these that fits::

    true, false (any case)            bool
    none, null (any case)             None
    3, -2, 0.5, 1e-3, inf             int, else float
    [64, 64], {"a": 1}, "text"        JSON (a list, an object or a quoted string)
    8-16, 1-0.5                       a tuple of numbers joined by '-'
    anything else                     the text itself (e.g. leaky_relu, mnist1d:n=2000)

Lists of values (``--grid``, spec options) are split at the commas outside brackets, braces
and double quotes, so ``widths=[64,64],[128]`` holds two values. Keys are identifiers, joined
by dots to reach a nested config (``train.lr=0.01``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from reluscope.errors import InputError

KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_value(text: str) -> Any:
    """The value written as ``text`` (see the module's grammar)."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    number = _number(text)
    if number is not None:
        return number
    if text[:1] in ("[", "{", '"'):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"value {text!r} starts like JSON but is not: {exc}") from None
    parts = text.split("-")
    if len(parts) > 1:
        numbers = [_number(p) for p in parts]
        if all(n is not None for n in numbers):
            return tuple(numbers)
    return text


def split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and double quotes, each piece
    stripped."""
    pieces: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    pieces.append("".join(current).strip())
    return pieces


def split_assignment(pair: str, expected: str, dotted: bool = True) -> tuple[str, str]:
    """``"key=text"`` -> ``(key, text)``; InputError saying ``expected`` when there is no ``=``
    or the key is not an identifier (dotted identifiers when ``dotted``)."""
    key, sep, text = pair.partition("=")
    key = key.strip()
    valid = KEY.fullmatch(key) if dotted else key.isidentifier()
    if not sep or not valid:
        raise InputError(f"expected {expected}; got {pair!r}")
    return key, text


def parse_assignments(pairs: list[str], option: str = "--set") -> dict[str, Any]:
    """``["lr=1e-3", "train.steps=500", "widths=[64,64]"]`` -> ``{"lr": 0.001, "train.steps":
    500, "widths": [64, 64]}`` (keys kept as written; see :func:`nest` for dotted keys). A key
    given twice is an InputError."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, text = split_assignment(pair, f"{option} key=value")
        if key in values:
            raise InputError(f"{option} {key} is given twice; give it once")
        values[key] = parse_value(text)
    return values


def parse_options(
    text: str, spec: str, kind: str = "model", noun: str = "option"
) -> dict[str, Any]:
    """The ``k=v,k=v`` options of a ``kind`` spec (``spec`` is the whole spec, for messages)."""
    options: dict[str, Any] = {}
    for item in split_values(text):
        key, value = split_assignment(
            item, f"{noun}s key=value,... in {kind} spec {spec!r}", dotted=False
        )
        if not value.strip():
            raise InputError(f"{noun} {key!r} has no value in {kind} spec {spec!r}")
        if key in options:
            raise InputError(f"{noun} {key!r} given twice in {kind} spec {spec!r}")
        options[key] = parse_value(value)
    return options


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested dicts: ``{"train.lr": 0.1, "seed": 1}`` -> ``{"train": {"lr":
    0.1}, "seed": 1}``; dict values (``{"train": {"lr": 0.1}}``) are merged with dotted keys of
    the same section. A key that is both a value and a section is an InputError."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = nested
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError(
                    f"{'.'.join(parents[: i + 1])} is given both as a value and "
                    f"as a section ({key})"
                )
            node = child
        earlier = node.get(last)
        if isinstance(earlier, dict) and not isinstance(value, dict):
            raise InputError(f"{key} is given both as a value and as a section")
        if isinstance(value, dict):  # merged into a copy: the caller's dicts stay as they are
            value = merge(earlier if isinstance(earlier, dict) else {}, value)
        node[last] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, nested dicts merged key by key (neither is changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lookup(values: dict[str, Any], key: str) -> Any:
    """The value of a dotted ``key`` (``"train.lr"``) in nested ``values``."""
    for part in key.split("."):
        values = values[part]
    return values


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None
