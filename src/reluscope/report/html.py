"""The report of a set of experiment runs: one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import platform
from collections.abc import Sequence
from pathlib import Path

import jinja2

from reluscope.experiments.registry import PAPERS
from reluscope.experiments.runner import RunSummary
from reluscope.io import atomic_write

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reluscope.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _image(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _section(run: RunSummary) -> dict:
    outcome = run.outcome
    return {
        "name": run.experiment.name,
        "title": run.experiment.title,
        "description": run.experiment.description,
        "summary": outcome.summary,
        "scale": run.scale,
        "elapsed": f"{run.elapsed_s:.1f} s" + (" (earlier run, reused)" if run.reused else ""),
        "config": json.dumps(run.config.to_json(), indent=1),
        "numbers": [(k, _number(v)) for k, v in outcome.numbers.items()],
        "predictions": outcome.predictions,
        "figures": [
            {"src": _image(run.run_dir / f.file), "file": f.file, "caption": f.caption}
            for f in outcome.figures
        ],
        "run_dir": str(run.run_dir),
    }


def render_report(runs: Sequence[RunSummary], failures: Sequence[tuple[str, str]] = ()) -> str:
    """The HTML page for ``runs`` (grouped by paper) and the experiments that failed
    (``(name, error)`` pairs)."""
    groups = []
    for paper, citation in PAPERS.items():
        sections = [_section(r) for r in runs if r.experiment.paper == paper]
        if sections:
            groups.append({"paper": paper, "citation": citation, "sections": sections})
    predictions = [p for r in runs for p in r.outcome.predictions]
    return _ENV.get_template("report.html.j2").render(
        groups=groups,
        failures=list(failures),
        passed=sum(p.passed for p in predictions),
        total=len(predictions),
        created=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        machine=f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
        elapsed=f"{sum(r.elapsed_s for r in runs):.0f} s",
    )


def write_report(
    runs: Sequence[RunSummary], path: str | Path, failures: Sequence[tuple[str, str]] = ()
) -> Path:
    """Write the report of ``runs`` to ``path`` (an .html file), atomically."""
    text = render_report(runs, failures)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
