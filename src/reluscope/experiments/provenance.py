"""Where and how a run was made: software versions, git state, hardware, the command line and
the command that reproduces one experiment alone. Written into each run directory so that the
report can be rebuilt from the directories without importing any experiment code.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reluscope.experiments.registry import Experiment


def package_version() -> str:
    """The installed reluscope version ('unknown' when it is not installed)."""
    try:
        return metadata.version("reluscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_state(where: Path | None = None) -> dict[str, Any]:
    """The git commit of the reluscope source tree and whether it has uncommitted changes
    (``{"commit": None, "dirty": None}`` outside a git checkout)."""
    where = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Software versions, git state and hardware of this process (no host name)."""
    import numpy
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "reluscope": package_version(),
        **git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def command_line() -> str:
    """The command line of this process, as a user would type it again."""
    program = Path(sys.argv[0]).name if sys.argv else "python"
    if program in ("__main__.py", "-c", ""):
        program = "reluscope"
    return shlex.join([program, *sys.argv[1:]])


def now() -> str:
    """The current time, ISO 8601 in UTC to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def rerun_command(
    name: str, scale: str, config: dict[str, Any], baseline: dict[str, Any], run_dir: Path
) -> str:
    """The ``reluscope run`` command that reproduces this run alone: the keys of ``config``
    that differ from ``baseline`` (the config at ``scale`` without overrides) as ``--set``."""
    args = ["reluscope", "run", name]
    if scale != "quick":
        args += ["--scale", scale]
    base = flatten(baseline)
    for key, value in flatten(config).items():
        if key not in base or base[key] != value:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            args += ["--set", f"{key}={text}"]
    return shlex.join([*args, "--out", str(run_dir)])


def describe_numbers(
    numbers: dict[str, Any], declared: dict[str, tuple[str, str]]
) -> dict[str, dict[str, str]]:
    """Each number's ``{"description", "unit"}`` from the first ``declared`` key or pattern
    that matches it (``*`` matches any text; ``{0}``, ``{1}``... in the description are
    replaced by what the stars matched, underscores read as spaces); numbers nothing matches
    are left out. The unit ``"yes/no"`` marks a flag saved as 1/0."""
    described = {}
    for key in numbers:
        for pattern, (description, unit) in declared.items():
            regex = "".join(
                "(.*)" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)
            )
            match = re.fullmatch(regex, key)
            if match:
                text = description.format(*(g.replace("_", " ") for g in match.groups()))
                described[key] = {"description": text, "unit": unit}
                break
    return described


def run_metadata(
    experiment: Experiment,
    config: dict[str, Any],
    baseline: dict[str, Any],
    scale: str,
    run_dir: Path,
    numbers: dict[str, Any],
    given_as: str | None = None,
) -> dict[str, Any]:
    """What the report needs to show a run without importing its experiment: the experiment's
    name, title, paper (citation and link), description, scale, seeds, config, the command
    that reproduces it alone, the descriptions of its key numbers and this process's
    environment. ``given_as`` is the name or ``package.module:ATTR`` the run was asked by."""
    from reluscope.experiments.registry import PAPER_URLS, PAPERS

    papers = list(PAPERS)
    first, count = config.get("seed"), config.get("seeds", 1)
    seeds = list(range(first, first + count)) if isinstance(first, int) else []
    return {
        "experiment": experiment.name,
        "title": experiment.title,
        "paper": experiment.paper,
        "paper_citation": PAPERS[experiment.paper],
        "paper_url": PAPER_URLS.get(experiment.paper, ""),
        "description": experiment.description,
        "report_order": [papers.index(experiment.paper), experiment.order, experiment.name],
        "scale": scale,
        "seeds": seeds,
        "config": config,
        "command": rerun_command(given_as or experiment.name, scale, config, baseline, run_dir),
        "command_line": command_line(),
        "number_info": describe_numbers(numbers, experiment.key_numbers),
        "environment": environment(),
    }
