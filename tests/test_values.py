"""The one value grammar of ``--set``, ``--grid`` and model / data specs."""

from __future__ import annotations

import math

import pytest

from reluscope.data.options import parse_spec
from reluscope.errors import InputError
from reluscope.experiments import get_experiment
from reluscope.nets.spec import load_model
from reluscope.sweep import parse_grid
from reluscope.values import merge, nest, parse_assignments, parse_value, split_values

CASES = [
    ("true", True),
    ("False", False),
    ("none", None),
    ("null", None),
    ("3", 3),
    ("-2", -2),
    ("0.5", 0.5),
    ("1e-3", 1e-3),
    ("8-16", (8, 16)),
    ("1-0.5", (1, 0.5)),
    ("[64, 32]", [64, 32]),
    ('{"a": [1, 2]}', {"a": [1, 2]}),
    ('"3"', "3"),
    ("leaky_relu", "leaky_relu"),
    ("a-b", "a-b"),
    ("mnist1d:n=2000", "mnist1d:n=2000"),
    ("x=y", "x=y"),
]


@pytest.mark.parametrize(("text", "value"), CASES)
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)
    assert math.isinf(parse_value("inf"))


@pytest.mark.parametrize(("text", "value"), CASES)
def test_set_grid_and_specs_read_a_value_alike(text, value):
    """The same text gives the same value in --set, --grid and a spec option."""
    assert parse_assignments([f"key={text}"]) == {"key": value}
    if "," not in text:
        assert parse_grid([f"key={text}"]) == {"key": [value]}
        assert parse_spec(f"name:key={text}")[1] == {"key": value}


def test_lists_split_outside_brackets_and_quotes():
    assert split_values('[64,64],[128], "a,b" ,x') == ["[64,64]", "[128]", '"a,b"', "x"]
    assert parse_grid(["widths=[64,64],[128]", "train.lr=0.1,1e-2"]) == {
        "widths": [[64, 64], [128]],
        "train.lr": [0.1, 0.01],
    }
    model, _ = load_model("mlp:2-8-1:slope=0.2,activation=leaky_relu")
    assert model[1].negative_slope == 0.2


def test_dotted_keys_nest_and_merge():
    flat = parse_assignments(["train.lr=0.1", "train.steps=5", "seed=2"])
    assert nest(flat) == {"train": {"lr": 0.1, "steps": 5}, "seed": 2}
    base = {"train": {"lr": 1.0, "steps": 9, "loss": "ce"}, "seed": 0}
    assert merge(base, nest(flat)) == {"train": {"lr": 0.1, "steps": 5, "loss": "ce"}, "seed": 2}
    assert base["train"]["lr"] == 1.0  # merge copies
    given = {"train": {"lr": 0.1}, "train.steps": 5}
    assert nest(given) == {"train": {"lr": 0.1, "steps": 5}}
    assert given == {"train": {"lr": 0.1}, "train.steps": 5}  # nest copies


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: parse_assignments(["lr"]), "key=value"),
        (lambda: parse_assignments(["1x=2"]), "key=value"),
        (lambda: parse_assignments(["a=1", "a=2"]), "given twice"),
        (lambda: parse_value("[1, 2"), "not valid JSON|is not"),
        (lambda: nest({"train": 1, "train.lr": 2}), "both as a value and as a section"),
        (lambda: parse_grid(["a=1,,2"]), "empty value"),
        (lambda: parse_spec("gaussian:n"), "key=value"),
    ],
)
def test_bad_text_is_a_clear_error(call, fragment):
    with pytest.raises(InputError, match=fragment):
        call()


def test_experiment_overrides_reach_the_nested_training_section():
    config = get_experiment("lc-dynamics").config
    quick = config.build("quick")
    changed = config.build("quick", parse_assignments(["train.lr=0.01", "hidden=[8,8]"]))
    assert changed.train.lr == 0.01 and changed.hidden == [8, 8]
    assert changed.train.model_copy(update={"lr": quick.train.lr}) == quick.train
    assert config.build("quick", {"train": {"lr": 0.01}}) == changed.model_copy(
        update={"hidden": quick.hidden}
    )
    paper = config.build("paper", {"train.steps": 50})
    assert paper.train.lr == 1e-4 and paper.train.steps == 50  # PAPER keeps its train values
    with pytest.raises(InputError, match="train.seed and train.device"):
        config.build("quick", {"train.seed": 3})
    with pytest.raises(InputError, match="unknown config key.*train.colour"):
        config.build("quick", {"train.colour": 3})


def test_old_init_scale_keys_name_their_new_names():
    with pytest.raises(InputError, match="param_scale.*init_multiplier.*init_std"):
        get_experiment("grokking").config.build("quick", {"init_scale": 2.0})
    with pytest.raises(InputError, match="param_scales"):
        get_experiment("init-scale").config.build("quick", {"init_scales": [1.0, 2.0]})
    with pytest.raises(InputError, match="init_std"):
        get_experiment("bias-free-equivalence").config.build("quick", {"init_scale": 2.0})
    with pytest.raises(InputError, match="init_multiplier"):
        load_model("mlp:2-8-1:init_scale=2")
    from pydantic import ValidationError

    from reluscope.train import TrainConfig

    with pytest.raises(ValidationError, match="param_scale"):
        TrainConfig(init_scale=2.0)


def test_training_takes_the_experiments_seed_and_device_then_the_experiments_values():
    from reluscope.experiments import training

    config = get_experiment("bound-tracking").config.build("quick", {"seed": 4, "train.lr": 0.5})
    made = training(config, checkpoint_every=7)
    assert made == config.train.model_copy(update={"seed": 4, "checkpoint_every": 7})
    assert made.device == config.device and made.lr == 0.5 and made.optimizer == "adam"
    with pytest.raises(ValueError, match="momentum"):
        training(config, momentum=2.0)
    # a key the experiment sets itself cannot be changed by the user (it would be ignored)
    weight_decay = get_experiment("weight-decay").config
    assert training(weight_decay.build("quick"), weight_decay=0.1).weight_decay == 0.1
    swept = weight_decay.build("quick", {"train.weight_decay": 0.3})
    with pytest.raises(InputError, match="train.weight_decay cannot be set"):
        training(swept, weight_decay=0.1)


def test_train_keys_from_the_command_line_reach_the_trainer(tmp_path):
    """``--set train.*`` and ``--grid train.*`` change what the Trainer gets; the training
    seed is the experiment's."""
    import json

    from typer.testing import CliRunner

    from reluscope.cli import app

    toy = "train_toy_experiment:EXPERIMENT"
    cli = CliRunner()
    args = ["run", toy, "--set", "train.lr=0.5", "--set", "seed=2", "--out", str(tmp_path / "r")]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    numbers = json.loads((tmp_path / "r" / "outcome.json").read_text())["numbers"]
    assert numbers == {"lr": 0.5, "steps": 3.0, "seed": 2.0}
    result = cli.invoke(app, ["run", toy, "--scale", "paper", "--out", str(tmp_path / "p")])
    assert json.loads((tmp_path / "p" / "outcome.json").read_text())["numbers"]["steps"] == 7.0
    args = ["sweep", toy, "--grid", "train.lr=0.01,0.2", "--set", "train.steps=2"]
    result = cli.invoke(app, [*args, "--workers", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    for lr in ("0.01", "0.2"):
        run_dir = tmp_path / "s" / "train-toy" / f"train.lr={lr},seed=0"
        numbers = json.loads((run_dir / "outcome.json").read_text())["numbers"]
        assert numbers == {"lr": float(lr), "steps": 2.0, "seed": 0.0}
    bad = cli.invoke(app, ["run", toy, "--set", "train.seed=1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "seed=" in bad.output
