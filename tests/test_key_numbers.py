"""Every key number an experiment reports has a description and a unit: the matching of
declared keys and patterns, the yes/no display of flags, and, for every registered experiment
run at a tiny size, each number its code actually puts in ``Outcome.numbers`` (the full set of
13 experiments is marked slow; four of them run in the default suite)."""

from __future__ import annotations

import pytest
import tiny_configs

from reluscope.experiments import experiments, run_experiment
from reluscope.experiments.provenance import describe_numbers
from reluscope.report.html import FLAG_UNIT, format_number

#: The shared tiny sizes, with lc-dynamics trained until it interpolates (so its numbers at
#: the interpolation step appear too) and grokking's delayed run smaller still.
TINY = {
    **tiny_configs.TINY,
    "lc-dynamics": {
        **tiny_configs.TINY["lc-dynamics"],
        "n_train": 60,
        "train.steps": 150,
        "train.lr": 0.01,
        "n_points": 16,
    },
    "grokking": {**tiny_configs.TINY["grokking"], "delayed_hidden": [8], "delayed_train.steps": 12},
}

#: One experiment of each paper (and lc-dynamics, whose numbers depend on interpolation)
#: runs in the default suite; the rest are slow.
DEFAULT = {"lc-dynamics", "weight-decay", "depth-sweep", "depth-gap"}


def test_patterns_fill_in_what_the_stars_matched():
    declared = {
        "lc_final.lambda_*": ("final LC at weight decay {0}", "1 / input unit"),
        "gap.*_noise_*": ("gap of the {0} network at noise {1}", "fraction"),
        "slope": ("slope", "LC"),
        "*": ("anything else", "other"),
    }
    numbers = {"lc_final.lambda_0.01": 1.0, "gap.low_rank_noise_0.3": 0.1, "slope": 2.0, "x": 3}
    assert describe_numbers(numbers, declared) == {
        "lc_final.lambda_0.01": {
            "description": "final LC at weight decay 0.01",
            "unit": "1 / input unit",
        },
        "gap.low_rank_noise_0.3": {
            "description": "gap of the low rank network at noise 0.3",
            "unit": "fraction",
        },
        "slope": {"description": "slope", "unit": "LC"},
        "x": {"description": "anything else", "unit": "other"},
    }


def test_the_first_matching_entry_wins_and_unmatched_keys_are_left_out():
    declared = {"nc1_drop": ("drop", "ratio"), "nc1_*": ("NC1 at {0}", "ratio")}
    described = describe_numbers({"nc1_drop": 2.0, "nc1_end": 0.1, "cdnv_end": 0.3}, declared)
    assert described == {
        "nc1_drop": {"description": "drop", "unit": "ratio"},
        "nc1_end": {"description": "NC1 at end", "unit": "ratio"},
    }


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.0, FLAG_UNIT, "yes"),
        (0.0, FLAG_UNIT, "no"),
        (1, FLAG_UNIT, "yes"),
        (True, "", "yes"),
        (1.0, "fraction", "1"),
        (0.5, FLAG_UNIT, "0.5"),
        (None, FLAG_UNIT, "n/a"),
    ],
)
def test_flags_read_yes_or_no(value, unit, text):
    assert format_number(value, unit) == text


def test_every_declaration_has_a_description_and_a_unit():
    for experiment in experiments():
        for key, (description, unit) in experiment.key_numbers.items():
            assert description.strip() and unit.strip(), (experiment.name, key)


def test_the_tiny_sizes_cover_every_registered_experiment():
    assert set(TINY) == {e.name for e in experiments()}


@pytest.mark.parametrize(
    "name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in TINY]
)
@pytest.mark.usefixtures("one_thread")
def test_every_number_is_described(name, tmp_path):
    summary = run_experiment(name, "quick", {"seeds": 1, **TINY[name]}, tmp_path, progress=False)
    numbers = summary.outcome.numbers
    experiment = next(e for e in experiments() if e.name == name)
    described = describe_numbers(numbers, experiment.key_numbers)
    assert numbers and sorted(set(numbers) - set(described)) == []
    for key, info in described.items():
        if info["unit"] == FLAG_UNIT:
            assert numbers[key] in (0, 1), (key, numbers[key])
            assert format_number(numbers[key], info["unit"]) in ("yes", "no")
