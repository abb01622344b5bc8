"""The report of a set of experiment runs: one self-contained HTML page (figures embedded),
built from run directories alone (see :mod:`reluscope.report.rundirs`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from reluscope.io import atomic_write
from reluscope.report.rundirs import FailedRun, RunDir, RunSet, collect

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reluscope.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _image(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


#: The unit of a key number that is a flag (saved as a boolean or as 1/0).
FLAG_UNIT = "yes/no"


def format_number(value: object, unit: str = "") -> str:
    """A key number as the report shows it: booleans, and 1/0 in the unit ``FLAG_UNIT``, as
    yes/no, floats to 4 significant digits, missing values (None, NaN saved as null) as
    'n/a'."""
    if isinstance(value, bool) or (unit == FLAG_UNIT and value in (0, 1)):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _label(key: str) -> str:
    """A readable fallback name for an undescribed key: 'lc_final.lambda_0.001' -> 'lc final,
    lambda 0.001'."""
    return re.sub(r"(?<=[a-zA-Z])\.(?=[a-zA-Z])", ", ", key).replace("_", " ")


def _number(key: str, value: object, info: dict[str, str]) -> dict[str, str]:
    """One row of the key-number table: description (or the readable key), value, unit."""
    unit = info.get("unit", "")
    return {
        "key": key,
        "label": info.get("description") or _label(key),
        "unit": "" if unit == FLAG_UNIT else unit,
        "value": format_number(value, unit),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return (
        f"{minutes} min {rest:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _time(stamp: str | None) -> str:
    if not stamp:
        return ""
    return dt.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def _prediction(p: dict[str, Any]) -> dict[str, Any]:
    total = p.get("seeds_total")
    seeds = f"{p.get('seeds_passed')} / {total} seeds" if total else ""
    return {
        "claim": p["claim"],
        "passed": bool(p["passed"]),
        "measured": p.get("measured", ""),
        "source": p.get("source", ""),
        "url": p.get("url", ""),
        "threshold": p.get("threshold", ""),
        "seeds": seeds,
        "worst": p.get("worst", "") if total else "",
        "explanation": p.get("explanation", ""),
    }


def _section(run: RunDir, anchor: str) -> dict[str, Any]:
    o = run.outcome
    info = o.get("number_info", {})
    predictions = [_prediction(p) for p in o["predictions"]]
    return {
        "id": anchor,
        "name": run.name,
        "title": o.get("title", run.name),
        "description": o.get("description", ""),
        "summary": o.get("summary", ""),
        "scale": o.get("scale", "n/a"),
        "seeds": ", ".join(str(s) for s in o.get("seeds", [])) or "n/a",
        # the experiments report their key numbers of the first seed
        "numbers_seed": o["seeds"][0] if len(o.get("seeds", [])) > 1 else None,
        "elapsed": _duration(o.get("elapsed_s")),
        "finished": _time(o.get("finished")),
        "command": o.get("command", ""),
        "config": json.dumps(o.get("config", {}), indent=1),
        "numbers": [
            _number(key, value, info.get(key, {})) for key, value in o.get("numbers", {}).items()
        ],
        "predictions": predictions,
        "sanity": [_prediction(p) for p in o.get("sanity_checks", [])],
        "passed": sum(p["passed"] for p in predictions),
        "total": len(predictions),
        "figures": [
            {"src": _image(run.path / f["file"]), "file": f["file"], "caption": f["caption"]}
            for f in o.get("figures", [])
        ],
        "run_dir": str(run.path),
    }


def _anchors(runs: Sequence[RunDir]) -> list[str]:
    """Unique ids: the experiment name, or name-DIRECTORY where an experiment appears twice."""
    names = [r.name for r in runs]
    return [
        n if names.count(n) == 1 else re.sub(r"[^\w-]", "-", f"{n}-{r.path.name}")
        for n, r in zip(names, runs, strict=True)
    ]


def _authors(citation: str) -> str:
    """The authors of a citation 'A, B & C, Title (Venue)' -> 'A, B & C' (else the citation)."""
    match = re.match(r"[^&]*&[^,]*", citation)
    return match.group(0).strip() if match else citation


def _groups(runs: Sequence[RunDir]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for run, anchor in zip(runs, _anchors(runs), strict=True):
        o = run.outcome
        paper = o.get("paper", "other")
        group = groups.setdefault(
            paper,
            {
                "id": f"paper-{paper}",
                "citation": o.get("paper_citation", paper),
                "url": o.get("paper_url", ""),
                "sections": [],
            },
        )
        group["sections"].append(_section(run, anchor))
        group["short"] = _authors(group["citation"])
    for group in groups.values():
        group["passed"] = sum(s["passed"] for s in group["sections"])
        group["total"] = sum(s["total"] for s in group["sections"])
    return list(groups.values())


def _provenance(runset: RunSet) -> dict[str, Any]:
    """The provenance box: from the run-level provenance.json, else from the runs themselves
    (wall time = first start to last finish)."""
    runs = [r.outcome for r in runset.runs]
    given = runset.provenance
    env = given or next((o["environment"] for o in runs if o.get("environment")), {})
    started = [o["started"] for o in runs if o.get("started")]
    finished = [o["finished"] for o in runs if o.get("finished")]
    if given.get("wall_s") is not None:
        wall = given["wall_s"]
    elif started and finished:
        span = dt.datetime.fromisoformat(max(finished)) - dt.datetime.fromisoformat(min(started))
        wall = span.total_seconds()
    else:
        wall = None
    reused = given.get("reused", [])
    commands = list(dict.fromkeys(o["command_line"] for o in runs if o.get("command_line")))
    commit = env.get("commit")
    hardware = env.get("gpu") or env.get("cpu", "n/a")
    if not env.get("gpu") and env.get("cpu_count"):
        hardware += f", {env['cpu_count']} cores"
    threads = given.get("threads") or env.get("torch_threads")
    return {
        "version": env.get("reluscope", "n/a"),
        "commit": (commit[:12] + (" (dirty: uncommitted changes)" if env.get("dirty") else ""))
        if commit
        else "not a git checkout",
        "software": f"Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
        f"numpy {env.get('numpy', '?')}",
        "hardware": hardware + (f"; {threads} torch thread(s) per run" if threads else ""),
        "command": given.get("command_line") or "; ".join(commands[:3]),
        "scale": ", ".join(sorted({str(o.get("scale", "n/a")) for o in runs})) or "n/a",
        "seeds": ", ".join(sorted({str(s) for o in runs for s in o.get("seeds", [])})) or "n/a",
        "wall": _duration(wall),
        "period": f"{_time(min(started))} to {_time(max(finished))}"
        if started and finished
        else "",
        "reused": reused,
        "rendered": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render_report(runset: RunSet) -> str:
    """The HTML page of ``runset``: its runs grouped by paper, its failed runs and its
    provenance."""
    groups = _groups(runset.runs)
    return _ENV.get_template("report.html.j2").render(
        groups=groups,
        failures=[_failure(f) for f in runset.failures],
        passed=sum(g["passed"] for g in groups),
        total=sum(g["total"] for g in groups),
        provenance=_provenance(runset),
    )


def _failure(failure: FailedRun) -> dict[str, str]:
    return {
        "id": re.sub(r"[^\w-]", "-", failure.name),
        "name": failure.name,
        "error": failure.error,
        "run_dir": str(failure.path or ""),
    }


def write_report(runset: RunSet, path: str | Path) -> Path:
    """Write the report of ``runset`` to ``path`` (an .html file), atomically."""
    text = render_report(runset)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def report_directories(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write to ``out`` the report of every run in or below ``paths`` (run, reproduce or
    sweep directories)."""
    return write_report(collect([Path(p) for p in paths]), out)
