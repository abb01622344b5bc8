"""The shared harness of the benchmarks: every measurement runs in a fresh process (so peak
memory and warm-up are its own), and each script has the same command line around its
``plan`` -> ``worker`` -> ``report`` steps."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class WorkerFailed(RuntimeError):
    """A measurement's process exited with an error (its stderr is the message)."""


def run_worker(script: str, spec: dict) -> dict:
    """``spec`` and the result ``script --worker SPEC`` prints last as JSON, run with this
    checkout's ``src`` first on the path; raises :class:`WorkerFailed` when it fails."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, script, "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise WorkerFailed(done.stderr.strip())
    return spec | json.loads(done.stdout.strip().splitlines()[-1])


def main(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    worker: Callable[[dict], dict],
    plan: Callable[[argparse.Namespace], list[dict]],
    run: Callable[[dict], dict],
    report: Callable[[list[dict]], None],
) -> None:
    """The benchmark command line: ``--worker SPEC`` (internal) measures one spec and prints its
    JSON; otherwise every spec of ``plan`` is ``run`` and the results reported (and written
    with ``--json FILE``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_arguments(parser)
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    results = [run(spec) for spec in plan(args)]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    report(results)
