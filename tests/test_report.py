"""The report rebuilt from run directories: run metadata and provenance, the command that
reproduces a section, number descriptions, `reluscope report`, and the page in headless
Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.errors import InputError
from reluscope.experiments import get_experiment, run_experiment
from reluscope.experiments.provenance import describe_numbers, flatten, rerun_command
from reluscope.report.html import format_number, render_report
from reluscope.report.rundirs import collect

TOY = "toy_experiment:EXPERIMENT"
cli = CliRunner()


def test_outcome_json_holds_everything_the_report_shows(tmp_path):
    run_experiment(TOY, "quick", {"n": 40, "mean": 0.5}, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "outcome.json").read_text())
    experiment = get_experiment(TOY)
    assert saved["title"] == experiment.title and saved["description"] == experiment.description
    assert saved["paper_url"] == "https://arxiv.org/abs/2412.18283"
    assert saved["seeds"] == [0] and saved["config"]["n"] == 40 and saved["scale"] == "quick"
    assert saved["environment"]["python"] and "hostname" not in json.dumps(saved)
    assert saved["numbers"]["n"] == 40 and isinstance(saved["numbers"]["n"], int)
    started = dt.datetime.fromisoformat(saved["started"])
    finished = dt.datetime.fromisoformat(saved["finished"])
    assert 0 <= (finished - started).total_seconds() <= saved["elapsed_s"] + 1


def test_section_command_reproduces_the_run(tmp_path):
    """Running the section's command as written gives the same config and the same numbers."""
    run_experiment(TOY, "paper", {"n": 30, "mean": -1.5}, tmp_path / "a", progress=False)
    saved = json.loads((tmp_path / "a" / "outcome.json").read_text())
    args = shlex.split(saved["command"])
    assert args[:3] == ["reluscope", "run", TOY]
    args[args.index("--out") + 1] = str(tmp_path / "b")
    result = cli.invoke(app, args[1:])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "b" / "outcome.json").read_text())
    assert again["config"] == saved["config"] and again["numbers"] == saved["numbers"]
    assert again["scale"] == "paper"


def test_rerun_command_sets_only_the_changed_keys_nested_as_dotted():
    base = {"seed": 0, "train": {"lr": 0.1, "steps": 10}, "widths": [4, 4]}
    config = {"seed": 0, "train": {"lr": 0.01, "steps": 10}, "widths": [8, 8]}
    command = rerun_command("x", "quick", config, base, Path("runs/x"))
    assert command == "reluscope run x --set train.lr=0.01 --set 'widths=[8,8]' --out runs/x"
    assert flatten(config) == {"seed": 0, "train.lr": 0.01, "train.steps": 10, "widths": [8, 8]}


def test_number_descriptions_match_the_first_pattern():
    declared = {"lc_final.lambda_*": ("final LC at weight decay {0}", "1/unit"), "*": ("other", "")}
    described = describe_numbers({"lc_final.lambda_0.1": 1.0, "slope": 2.0}, declared)
    assert described == {
        "lc_final.lambda_0.1": {"description": "final LC at weight decay 0.1", "unit": "1/unit"},
        "slope": {"description": "other", "unit": ""},
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "yes"), (False, "no"), (None, "n/a"), (0.000123456, "0.0001235"), (7, "7")],
)
def test_numbers_are_shown_readably(value, text):
    assert format_number(value) == text


def test_report_from_sweep_and_reproduce_directories(tmp_path):
    """`reluscope report` finds runs one level (reproduce) or two levels (sweep) down, and the
    provenance box shows the wall time of the runs, not the time of rendering."""
    sweep = cli.invoke(app, ["sweep", TOY, "--grid", "n=20,30", "--out", str(tmp_path / "sweeps")])
    assert sweep.exit_code == 0, sweep.output
    result = cli.invoke(app, ["report", str(tmp_path / "sweeps")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "sweeps" / "index.html").read_text()
    assert page.count('<section id="toy-') == 2
    assert "file://" in result.output and str((tmp_path / "sweeps").resolve()) in result.output
    runs = collect([tmp_path / "sweeps"]).runs
    outcomes = [r.outcome for r in runs]
    span = max(dt.datetime.fromisoformat(o["finished"]) for o in outcomes) - min(
        dt.datetime.fromisoformat(o["started"]) for o in outcomes
    )
    assert f"<td>{span.total_seconds():.1f} s (" in page


def test_reproduce_writes_provenance_and_report_is_rebuilt_identically(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["reproduce", "--only", TOY, "--out", str(out), "--workers", "1"]
    monkeypatch.setattr("sys.argv", ["/usr/bin/reluscope", *args])
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["experiments"] == ["toy"] and provenance["reused"] == []
    assert provenance["wall_s"] > 0 and provenance["command_line"] == shlex.join(
        ["reluscope", *args]
    )
    page = (out / "index.html").read_text()
    shutil.copytree(out, tmp_path / "copy")
    cli.invoke(app, ["report", str(tmp_path / "copy")])
    rebuilt = (tmp_path / "copy" / "index.html").read_text()
    strip = re.compile(r"<tr><th>page rendered</th><td>[^<]*</td></tr>|/out/|/copy/")
    assert strip.sub("", rebuilt) == strip.sub("", page)
    again = cli.invoke(app, args)
    assert again.exit_code == 0
    assert json.loads((out / "provenance.json").read_text())["reused"] == ["toy"]
    assert "1 result(s) reused from earlier runs: toy" in (out / "index.html").read_text()


def test_report_of_a_directory_without_runs_is_refused(tmp_path):
    with pytest.raises(InputError, match="no runs found"):
        collect([tmp_path])
    result = cli.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "is not a directory" in result.output


def test_predictions_show_citation_seeds_and_sanity_checks_apart(tmp_path):
    run_experiment(TOY, "quick", {}, tmp_path / "run", progress=False)
    file = tmp_path / "run" / "outcome.json"
    saved = json.loads(file.read_text())
    saved["predictions"][0].update(
        source="Sec. 4.2, Fig. 3",
        url="https://arxiv.org/abs/2412.18283",
        seeds_passed=2,
        seeds_total=3,
        worst="seed 1: z = 4.5",
        passed=False,
    )
    saved["sanity_checks"] = [{**saved["predictions"][1], "claim": "identity <holds>"}]
    file.write_text(json.dumps(saved))
    page = render_report(collect([tmp_path]))
    assert '<a href="https://arxiv.org/abs/2412.18283">Sec. 4.2, Fig. 3</a>' in page
    assert "2 / 3 seeds" in page and "worst seed: seed 1: z = 4.5" in page
    assert 'title="FAIL: The sample mean is within 4 standard errors"' in page
    sanity = page.index("sanity checks (1 / 1 hold")
    assert page.index("identity &lt;holds&gt;") > sanity
    assert "1 / 2</span>" in page  # the sanity check is not counted among the predictions


def test_report_in_headless_chromium(tmp_path):
    """The page at 1400 and 400 px: no console errors, no requests leaving the file, no
    sideways scrolling of the body on a phone, every figure decoded."""
    from browser import Chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it"
        )
    run_experiment(TOY, "quick", {}, tmp_path / "run", progress=False)
    failing = tmp_path / "broken"
    failing.mkdir()
    (failing / "config.json").write_text(json.dumps({"experiment": "broken", "config": {}}))
    (failing / "error.txt").write_text("Traceback: RuntimeError('" + "x" * 300 + "')")
    page = tmp_path / "index.html"
    cli.invoke(app, ["report", str(tmp_path / "run"), str(failing), "--out", str(page)])
    checks = {
        "overflow": "document.documentElement.scrollWidth - document.documentElement.clientWidth",
        "images": "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.width])",
        "toggle_shown": "!document.querySelector('.toggle').hidden",
    }
    keep = os.environ.get("RELUSCOPE_SCREENSHOT_DIR")  # set it to look at the screenshots
    with Chromium(executable) as browser:
        for width in (1400, 400):
            shot = tmp_path / f"report-{width}.png"
            load = browser.load(page.as_uri(), width, 900, checks, shot)
            assert load.errors == [] and load.external_requests == []
            assert load.values["overflow"] <= 0, f"body scrolls sideways at {width} px"
            images = load.values["images"]
            assert images and all(
                done and w > 0 and h > 0 and shown > 0 for done, w, h, shown in images
            )
            assert load.values["toggle_shown"]
            assert shot.stat().st_size > 10_000
            if keep:
                shutil.copy(shot, Path(keep) / shot.name)
