"""The linter (ruff) and the type checker (mypy) pass on the code with zero errors.

Both run as subprocesses from the repository root with the settings in pyproject.toml; a test
is skipped, with a message, where its tool is not installed (it is in the ``dev`` extra).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -e '.[dev]' to run this check")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_finds_nothing():
    result = _run_tool("ruff", "check", "src", "tests")
    assert result.returncode == 0, f"ruff check src tests:\n{result.stdout}{result.stderr}"


def test_mypy_finds_nothing():
    result = _run_tool("mypy", "src")
    assert result.returncode == 0, f"mypy src:\n{result.stdout}{result.stderr}"
