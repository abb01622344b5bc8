"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors, numbers, strings, lists and dicts: the model's and optimiser's
state dicts, the step, whether that step's probes ran, torch's global random states (as
tensors), the records so far, the probe names and the TrainConfig as a JSON string.

Internal to reluscope.train: not part of the public API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from reluscope.errors import InputError
from reluscope.io import atomic_write, load_tensors
from reluscope.train.config import TrainConfig

FORMAT = 1
CHECKPOINT = "checkpoint.pt"
RECORDS = "records.parquet"
#: Config keys that may change on resume: they do not change what is computed.
RESUMABLE_KEYS = frozenset({"device", "checkpoint_every"})


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format number) to ``path`` atomically."""
    payload = {"format": FORMAT, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, device: torch.device) -> dict[str, Any]:
    """The checkpoint at ``path``, its tensors mapped to ``device``; InputError if unreadable."""
    try:
        state = load_tensors(path, "the checkpoint", map_location=device)
    except InputError as exc:  # a truncated file, foreign pickles, ...
        raise InputError(f"{exc}. Delete it to start the run over.") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path} is not a reluscope training checkpoint (format {FORMAT})")
    return state


def config_differences(saved_json: str, config: TrainConfig) -> list[str]:
    """The config keys whose values differ between a saved config and ``config`` (except
    RESUMABLE_KEYS), as "key: saved -> now" strings."""
    saved = json.loads(saved_json)
    now = config.model_dump(mode="json")
    keys = sorted((set(saved) | set(now)) - RESUMABLE_KEYS)
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
